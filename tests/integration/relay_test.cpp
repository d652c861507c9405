// The relay rules against real Postfix (tests/integration/mailenv.sh: mynetworks = 127.0.0.2/32,
// local domain example.org, Dovecot SASL), probed from 127.0.0.2 (trusted) and 127.0.0.3
// (untrusted): the platform's policy holds in every cell; Postfix reconfigured into an open
// relay, a mynetworks without the trusted address, and a submission port that lets mynetworks
// relay without sign-in each give their reason; the CLI and the daemon report them. After every
// test, Postfix's queue holds nothing and its log never counted a DATA.

#include <signal.h>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <fstream>
#include <sstream>
#include <thread>

#include "daemon/config.h"
#include "daemon/one_shot.h"
#include "tests/fakes/mail_env.h"
#include "tests/fakes/notify_listener.h"
#include "tests/fakes/subprocess.h"

namespace mailprobe {
namespace {

using namespace std::chrono_literals;
using testing::httpGet;
using testing::MailEnv;
using testing::Subprocess;

constexpr const char* kTrusted = "127.0.0.2";    // in mailenv's mynetworks
constexpr const char* kUntrusted = "127.0.0.3";  // not
constexpr const char* kMynetworks = "mynetworks = 127.0.0.2/32";

std::string readAll(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// Undoes a Postfix change when the test ends, even after a failed assertion.
using PostfixChange = testing::MailEnvChange;

class RelayTest : public testing::MailEnvSuite {
 protected:
  void TearDown() override {
    if (env() != nullptr) {
      // Nothing may ever wait for delivery, least of all to an outside domain.
      std::string queue = env()->queue();
      EXPECT_EQ(queue.find("example.com"), std::string::npos) << queue;
      EXPECT_NE(queue.find("Mail queue is empty"), std::string::npos) << queue;
    }
    MailEnvSuite::TearDown();
  }

  // mynetworks = `value` until the returned guard goes.
  [[nodiscard]] static std::unique_ptr<PostfixChange> setMynetworks(const std::string& value) {
    EXPECT_TRUE(env()->postconf({"mynetworks = " + value})) << env()->lastError();
    return std::make_unique<PostfixChange>(env(),
                                           [](MailEnv* e) { return e->postconf({kMynetworks}); });
  }

  static EndpointSpec endpoint(uint16_t port, Security security, AuthPolicy auth) {
    EndpointSpec s;
    s.host = "localhost";
    s.addresses = {"127.0.0.1"};
    s.port = port;
    s.service = Service::Smtp;
    s.security = security;
    s.starttls_required = auth != AuthPolicy::Optional;
    s.auth = auth;
    s.tls.ca_file = env()->caFile();
    s.timeouts.phase = 8s;
    s.timeouts.total = 30s;
    return s;
  }

  static RelaySpec relay(const EndpointSpec& e) {
    RelaySpec r;
    r.endpoint = e;
    r.vantages = {{"office", kTrusted, true}, {"outside", kUntrusted, false}};
    r.local_recipient = env()->user();  // probe@example.org, a mailbox of the local domain
    r.policy = defaultRelayPolicy(e);
    return r;
  }

  // The platform's three SMTP endpoints on mailenv's ports: the MX (login optional), smtps and
  // submission (login required).
  static std::vector<RelaySpec> platform() {
    return {relay(endpoint(env()->smtpPort(), Security::StartTls, AuthPolicy::Optional)),
            relay(endpoint(env()->smtpsPort(), Security::Tls, AuthPolicy::Required)),
            relay(endpoint(env()->submissionPort(), Security::StartTls, AuthPolicy::Required))};
  }

  static std::vector<RelayCell> check(const std::vector<RelaySpec>& specs) {
    std::vector<RelayJob> jobs;
    for (const auto& s : specs) {
      jobs.push_back({s, {env()->user(), env()->password()}});
    }
    return runAllOnce({}, jobs).relay;
  }

  static const RelayCell* find(const std::vector<RelayCell>& cells, uint16_t port,
                               const std::string& vantage, RelayAuth auth,
                               RelayRecipient recipient) {
    for (const auto& c : cells) {
      if (c.port == port && c.vantage == vantage && c.auth == auth && c.recipient == recipient) {
        return &c;
      }
    }
    return nullptr;
  }

  static std::string dump(const std::vector<RelayCell>& cells) {
    std::string out;
    for (const auto& c : cells) {
      out += c.sentence + " [" + std::string(toString(c.reason)) + ": " + c.detail + "]\n";
    }
    return out;
  }

  // A config with the three SMTP endpoints and [host.relay] from both vantages.
  static std::string configText(uint16_t listen_port, const std::string& relay_extra = "") {
    std::string port = std::to_string(listen_port);
    std::string text;
    if (listen_port != 0) {
      text += "[daemon]\nlisten = \"127.0.0.1:" + port + "\"\nlog_level = \"debug\"\n\n";
    }
    text += "[defaults]\ninterval = \"2s\"\ntimeout = \"20s\"\nphase_timeout = \"5s\"\n";
    text += "ca_file = \"" + env()->caFile() + "\"\nsource_address = \"" + kTrusted + "\"\n\n";
    text += "[account]\nuser = \"" + env()->user() + "\"\npassword_file = \"" + env()->dir() +
            "/password\"\n\n";
    text += "[[host]]\nname = \"localhost\"\naddresses = [\"127.0.0.1\"]\n";
    text +=
        "  [[host.endpoint]]\n  service = \"smtp\"\n  port = " + std::to_string(env()->smtpPort()) +
        "\n  security = \"starttls\"\n  starttls_required = false\n  auth = \"optional\"\n";
    text += "  [[host.endpoint]]\n  service = \"smtp\"\n  port = " +
            std::to_string(env()->smtpsPort()) + "\n  security = \"tls\"\n";
    text += "  [[host.endpoint]]\n  service = \"smtp\"\n  port = " +
            std::to_string(env()->submissionPort()) + "\n  security = \"starttls\"\n";
    text += "  [host.relay]\n  local_recipient = \"" + env()->user() + "\"\n" + relay_extra;
    text += "    [[host.relay.vantage]]\n    name = \"office\"\n    source_address = \"" +
            std::string(kTrusted) + "\"\n    trusted = true\n";
    text += "    [[host.relay.vantage]]\n    name = \"outside\"\n    source_address = \"" +
            std::string(kUntrusted) + "\"\n";
    return text;
  }

  static std::string writeConfig(const std::string& name, const std::string& text) {
    std::string path = env()->dir() + "/" + name;
    std::ofstream(path) << text;
    return path;
  }

  struct Run {
    int code = -1;
    std::string output;
  };
  static Run cli(std::vector<std::string> args) {
    static int n = 0;
    args.insert(args.begin(), MAILPROBED_BIN);
    Subprocess p(args, {}, env()->dir() + "/relay-cli-" + std::to_string(++n) + ".out");
    Run r;
    r.code = p.wait(90s).value_or(-1);
    r.output = p.output();
    return r;
  }
};

TEST_F(RelayTest, ThePlatformsPolicyHoldsInEveryCell) {
  auto started = std::chrono::steady_clock::now();
  std::vector<RelayCell> cells = check(platform());
  double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  std::printf(
      "[ relay    ] %zu cells (2 vantages x 3 ports x 2 sign-in states x 2 recipients) "
      "in %.2f s\n",
      cells.size(), seconds);
  ASSERT_EQ(cells.size(), 24u) << dump(cells);
  for (const auto& c : cells) {
    SCOPED_TRACE(c.sentence + " " + c.detail);
    EXPECT_TRUE(c.ok());
    ASSERT_TRUE(c.observed.has_value());
    EXPECT_EQ(*c.observed, c.expected);
    EXPECT_EQ(c.address, "127.0.0.1");
  }
  const uint16_t mx = env()->smtpPort();
  const uint16_t submission = env()->submissionPort();
  const auto none = RelayAuth::None;
  const auto in = RelayAuth::SignedIn;
  const auto local = RelayRecipient::Local;
  const auto outside = RelayRecipient::Outside;
  // 25 from outside: the local domain yes, relaying no (Postfix: 554 5.7.1 Relay access denied).
  const RelayCell* c = find(cells, mx, "outside", none, outside);
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(c->observed, RelayVerdict::Refuse);
  EXPECT_EQ(c->code, 554);
  EXPECT_EQ(c->enhanced, "5.7.1");
  EXPECT_NE(c->detail.find("Relay access denied"), std::string::npos) << c->detail;
  EXPECT_EQ(find(cells, mx, "outside", none, local)->observed, RelayVerdict::Accept);
  // 25 from "Mes réseaux", or signed in: anyone.
  EXPECT_EQ(find(cells, mx, "office", none, outside)->observed, RelayVerdict::Accept);
  EXPECT_EQ(find(cells, mx, "outside", in, outside)->observed, RelayVerdict::Accept);
  // 587 without sign-in: nobody, not even from mynetworks; signed in: anyone.
  EXPECT_EQ(find(cells, submission, "office", none, outside)->observed, RelayVerdict::Refuse);
  EXPECT_EQ(find(cells, submission, "office", none, local)->observed, RelayVerdict::Refuse);
  EXPECT_EQ(find(cells, submission, "outside", in, outside)->observed, RelayVerdict::Accept);
}

TEST_F(RelayTest, AWidenedMynetworksIsAnOpenRelayFromTheUntrustedVantage) {
  auto restore = setMynetworks("127.0.0.0/8");
  std::vector<RelayCell> cells = check(platform());
  ASSERT_EQ(cells.size(), 24u) << dump(cells);
  const RelayCell* open =
      find(cells, env()->smtpPort(), "outside", RelayAuth::None, RelayRecipient::Outside);
  ASSERT_NE(open, nullptr);
  EXPECT_EQ(open->reason, FailureReason::OpenRelay) << dump(cells);
  EXPECT_EQ(open->observed, RelayVerdict::Accept);
  EXPECT_EQ(open->code, 250);
  EXPECT_EQ(open->sentence.rfind("OPEN RELAY: ", 0), 0u) << open->sentence;
  // That is the only broken cell: 465 and 587 do not take mynetworks into account.
  size_t broken = 0;
  for (const auto& c : cells) {
    broken += c.ok() ? 0 : 1;
  }
  EXPECT_EQ(broken, 1u) << dump(cells);
}

TEST_F(RelayTest, AMynetworksWithoutTheTrustedAddressDeniesTheTrustedVantage) {
  auto restore = setMynetworks("127.0.0.9/32");
  std::vector<RelayCell> cells = check({platform()[0]});
  ASSERT_EQ(cells.size(), 8u) << dump(cells);
  const RelayCell* denied =
      find(cells, env()->smtpPort(), "office", RelayAuth::None, RelayRecipient::Outside);
  ASSERT_NE(denied, nullptr);
  EXPECT_EQ(denied->reason, FailureReason::TrustedRelayDenied) << dump(cells);
  EXPECT_EQ(denied->observed, RelayVerdict::Refuse);
  EXPECT_EQ(denied->code, 554);
  EXPECT_FALSE(denied->temporary());
  // The printers lose relaying, not local delivery; signed-in users still send.
  EXPECT_TRUE(
      find(cells, env()->smtpPort(), "office", RelayAuth::None, RelayRecipient::Local)->ok());
  EXPECT_TRUE(
      find(cells, env()->smtpPort(), "office", RelayAuth::SignedIn, RelayRecipient::Outside)->ok());
}

TEST_F(RelayTest, SubmissionRelayingForMynetworksWithoutSignInIsUnauthSubmissionAccepted) {
  // The classic mistake: permit_mynetworks in the submission service's restrictions.
  const std::string service = "127.0.0.1:" + std::to_string(env()->submissionPort()) + "/inet/";
  const std::string strict = "permit_sasl_authenticated,reject";
  const std::string lax = "permit_mynetworks,permit_sasl_authenticated,reject";
  ASSERT_TRUE(env()->postconfMaster({service + "smtpd_relay_restrictions=" + lax,
                                     service + "smtpd_recipient_restrictions=" + lax}))
      << env()->lastError();
  PostfixChange restore(env(), [service, strict](MailEnv* e) {
    return e->postconfMaster({service + "smtpd_relay_restrictions=" + strict,
                              service + "smtpd_recipient_restrictions=" + strict});
  });
  std::vector<RelayCell> cells = check({platform()[2]});
  ASSERT_EQ(cells.size(), 8u) << dump(cells);
  const uint16_t port = env()->submissionPort();
  for (RelayRecipient r : {RelayRecipient::Local, RelayRecipient::Outside}) {
    const RelayCell* c = find(cells, port, "office", RelayAuth::None, r);
    ASSERT_NE(c, nullptr);
    EXPECT_EQ(c->reason, FailureReason::UnauthSubmissionAccepted) << dump(cells);
    EXPECT_EQ(c->observed, RelayVerdict::Accept);
    // From outside mynetworks sign-in is still enforced.
    EXPECT_TRUE(find(cells, port, "outside", RelayAuth::None, r)->ok()) << dump(cells);
  }
}

TEST_F(RelayTest, AVantageTheMachineLacksIsAConfigErrorAtValidateAndAtStart) {
  std::string text = configText(testing::freeLoopbackPort());
  const std::string vantage = std::string("source_address = \"") + kUntrusted + "\"";
  size_t at = text.find(vantage);
  ASSERT_NE(at, std::string::npos);
  text.replace(at, vantage.size(), "source_address = \"192.0.2.1\"");
  std::string path = writeConfig("relay-absent-vantage.toml", text);
  // Line and column of the value, as the file has them.
  size_t line = 1 + static_cast<size_t>(std::count(text.begin(), text.begin() + at, '\n'));
  size_t column = at - text.rfind('\n', at) + std::string("source_address = ").size();
  std::string message = path + ":" + std::to_string(line) + ":" + std::to_string(column) +
                        ": source_address: 192.0.2.1 is not an address of this machine (Cannot "
                        "assign requested address); a vantage is a local address the probe "
                        "sends from";

  LoadResult loaded = loadConfig(path);
  ASSERT_EQ(loaded.errors.size(), 1u);
  EXPECT_EQ(loaded.errors[0].format(), message);

  Run validate = cli({"validate", "--config", path});
  EXPECT_EQ(validate.code, 3);
  EXPECT_NE(validate.output.find(message), std::string::npos) << validate.output;

  Subprocess daemon({MAILPROBED_BIN, "run", "--config", path}, {},
                    env()->dir() + "/relay-absent-vantage.log");
  auto code = daemon.wait(10s);
  ASSERT_TRUE(code.has_value()) << "the daemon started with a vantage the machine lacks";
  EXPECT_EQ(*code, 3);
  EXPECT_NE(daemon.output().find(message), std::string::npos) << daemon.output();

  // With the address the machine has, the same file is fine.
  Run ok = cli({"validate", "--config", writeConfig("relay-good.toml", configText(0))});
  EXPECT_EQ(ok.code, 0) << ok.output;
  EXPECT_NE(ok.output.find("relay rules on 3 smtp endpoints"), std::string::npos) << ok.output;
}

TEST_F(RelayTest, CheckReportsTheRelayMatrixAndAnOpenRelayExitsCritical) {
  std::string path = writeConfig("relay-check.toml", configText(0));
  Run good = cli({"check", "--config", path, "--format", "json"});
  ASSERT_EQ(good.code, 0) << good.output;
  auto j = nlohmann::json::parse(good.output, nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << good.output;
  EXPECT_EQ(j["endpoints"].size(), 3u);
  ASSERT_EQ(j["relay"].size(), 24u);
  for (const auto& c : j["relay"]) {
    for (const char* key : {"host", "port", "vantage", "trusted", "auth", "recipient", "expected",
                            "observed", "code", "reason"}) {
      EXPECT_TRUE(c.contains(key)) << key;
    }
    EXPECT_EQ(c["reason"], "none") << c.dump();
    EXPECT_EQ(c["observed"], c["expected"]) << c.dump();
    EXPECT_EQ(c["host"], "localhost");
  }
  EXPECT_EQ(good.output.find(env()->password()), std::string::npos);

  auto restore = setMynetworks("127.0.0.0/8");
  Run open = cli({"check", "--config", path});
  EXPECT_EQ(open.code, 2) << open.output;
  EXPECT_NE(open.output.find("OPEN RELAY: smtp " + std::to_string(env()->smtpPort())),
            std::string::npos)
      << open.output;
  EXPECT_NE(open.output.find("CRITICAL: 3 of 3 endpoints work, 23 of 24 relay cells as "
                             "expected; OPEN RELAY"),
            std::string::npos)
      << open.output;
  EXPECT_NE(open.output.find("outside (untrusted), none: local accept 250 2.1.5; outside "
                             "ACCEPT 250 2.1.5 (expected refuse)"),
            std::string::npos)
      << open.output;
}

TEST_F(RelayTest, TheDaemonShowsTheRelayMatrixInStatusJsonMetricsAndThePage) {
  uint16_t port = testing::freeLoopbackPort();
  std::string path = writeConfig("relay-daemon.toml", configText(port, "  interval = \"2s\"\n"));
  testing::NotifyListener notify;
  Subprocess daemon({MAILPROBED_BIN, "run", "--config", path},
                    {"NOTIFY_SOCKET=" + notify.notifySocket()}, env()->dir() + "/relay-daemon.log");
  ASSERT_TRUE(notify.waitFor("READY=1", 10s)) << daemon.output();

  auto waitFor = [&](auto pred, std::chrono::milliseconds timeout, nlohmann::json* last) {
    return testing::waitForStatusJson(port, pred, timeout, last);
  };
  auto allAsExpected = [](const nlohmann::json& j) {
    if (!j.contains("relay") || j["relay"].size() != 24) {
      return false;
    }
    for (const auto& c : j["relay"]) {
      if (c["reason"] != "none") {
        return false;
      }
    }
    return true;
  };
  nlohmann::json status;
  ASSERT_TRUE(waitFor(allAsExpected, 20s, &status)) << status.dump(2) << daemon.output();
  ASSERT_EQ(status["relay_states"].size(), 3u);
  EXPECT_EQ(status["relay_states"][0]["state"], "ok");
  std::string metrics = httpGet(port, "/metrics").body;
  const std::string mx =
      "host=\"localhost@127.0.0.1\",port=\"" + std::to_string(env()->smtpPort()) + "\"";
  EXPECT_NE(metrics.find("mailprobe_relay_open{" + mx + ",vantage=\"outside\"} 0"),
            std::string::npos)
      << metrics;
  EXPECT_NE(metrics.find("mailprobe_relay_cell_ok{" + mx +
                         ",vantage=\"outside\",auth=\"none\",recipient=\"outside\"} 1"),
            std::string::npos);
  EXPECT_NE(metrics.find("mailprobe_relay_reply_code{" + mx +
                         ",vantage=\"outside\",auth=\"none\",recipient=\"outside\"} 554"),
            std::string::npos);
  EXPECT_EQ(metrics.find(env()->password()), std::string::npos);

  // Widen mynetworks: within an interval or two the daemon says open relay, everywhere.
  {
    auto restore = setMynetworks("127.0.0.0/8");
    auto open = [](const nlohmann::json& j) {
      for (const auto& c : j.value("relay", nlohmann::json::array())) {
        if (c["reason"] == "open_relay" && c["vantage"] == "outside") {
          return true;
        }
      }
      return false;
    };
    ASSERT_TRUE(waitFor(open, 20s, &status)) << status.dump(2);
    metrics = httpGet(port, "/metrics").body;
    EXPECT_NE(metrics.find("mailprobe_relay_open{" + mx + ",vantage=\"outside\"} 1"),
              std::string::npos)
        << metrics;
    EXPECT_NE(metrics.find("observed=\"accept\",reason=\"open_relay\"} 1"), std::string::npos);
    std::string page = httpGet(port, "/").body;
    EXPECT_NE(page.find("<title>OPEN RELAY"), std::string::npos);
    EXPECT_NE(page.find("id=\"open-relay\""), std::string::npos);
    EXPECT_NE(daemon.output().find("RELAY: OPEN RELAY: smtp"), std::string::npos)
        << daemon.output();
  }
  // Restored: all cells as expected again, and it is said once.
  ASSERT_TRUE(waitFor(allAsExpected, 20s, &status)) << status.dump(2);
  EXPECT_NE(daemon.output().find("RELAY OK again: relay rules of smtp"), std::string::npos);
  ASSERT_TRUE(daemon.signal(SIGTERM));
  EXPECT_EQ(daemon.wait(6s).value_or(-1), 0) << daemon.output();
}

// A wrong password: the first signed-in conversation fails its login, and the run tries no other
// login (the account must never be locked out by the probe); the cells without sign-in still
// hold. Postfix saw exactly one failed login.
TEST_F(RelayTest, AFailedLoginIsNotRetriedInTheSameRun) {
  auto failedLogins = [] {
    std::string log = readAll(env()->value("MAILLOG"));
    size_t n = 0;
    for (size_t at = log.find("authentication failed"); at != std::string::npos;
         at = log.find("authentication failed", at + 1)) {
      ++n;
    }
    return n;
  };
  size_t before = failedLogins();
  std::vector<RelayCell> cells =
      runAllOnce({}, {{platform()[2], {env()->user(), "not-the-password"}}}).relay;
  ASSERT_EQ(cells.size(), 8u) << dump(cells);
  const uint16_t port = env()->submissionPort();
  for (RelayRecipient r : {RelayRecipient::Local, RelayRecipient::Outside}) {
    EXPECT_TRUE(find(cells, port, "office", RelayAuth::None, r)->ok()) << dump(cells);
    EXPECT_TRUE(find(cells, port, "outside", RelayAuth::None, r)->ok()) << dump(cells);
    EXPECT_EQ(find(cells, port, "office", RelayAuth::SignedIn, r)->reason,
              FailureReason::AuthFailed);
    EXPECT_EQ(find(cells, port, "outside", RelayAuth::SignedIn, r)->reason,
              FailureReason::AuthBackoff);
  }
  EXPECT_EQ(failedLogins() - before, 1u);
}

// Postfix counts every command of every session in its "disconnect from" log line: after all
// of the above, RCPT was counted many times and DATA (or BDAT) never.
TEST_F(RelayTest, PostfixNeverSawADataCommand) {
  check({platform()[0]});
  std::string log = readAll(env()->value("MAILLOG"));
  ASSERT_FALSE(log.empty()) << "no Postfix log at " << env()->value("MAILLOG");
  size_t rcpt_sessions = 0;
  std::istringstream lines(log);
  for (std::string line; std::getline(lines, line);) {
    if (line.find("disconnect from") == std::string::npos) {
      continue;
    }
    EXPECT_EQ(line.find(" data="), std::string::npos) << line;
    EXPECT_EQ(line.find(" bdat="), std::string::npos) << line;
    rcpt_sessions += line.find(" rcpt=") != std::string::npos ? 1 : 0;
  }
  EXPECT_GE(rcpt_sessions, 4u) << log.substr(0, 4000);
}

}  // namespace
}  // namespace mailprobe
