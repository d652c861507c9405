// The password never shows, whatever path the daemon takes: one test runs every command and
// every output with known, distinctive passwords, given from a password file and inline, and
// looks for them (and their base64 forms, as AUTH PLAIN and AUTH LOGIN send them) in everything
// a person, a script or a scraper can see:
//   - `mailprobed validate`, `check` (text with perfdata, JSON, and the ad-hoc form);
//   - `mailprobed run` at log level debug: its whole stderr (what the journal gets), the status
//     page, /status.json, /metrics, /healthz and a 404, and a reload with a broken config;
//   - the errors of failed logins: a wrong password against the real Dovecot and Postfix SASL,
//     a relay check that signs in with it, and a server that quotes every line of the login
//     back in its refusal (the fault server's echo_login), given the right password;
//   - config errors on and around the password line, at validate, check and run.

#include <signal.h>
#include <sys/stat.h>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <fstream>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "tests/fakes/mail_env.h"
#include "tests/fakes/secret_scan.h"
#include "tests/fakes/subprocess.h"
#include "tests/fault/fault_server.h"

namespace mailprobe {
namespace {

using namespace std::chrono_literals;
using testing::FaultServer;
using testing::Subprocess;

struct CliRun {
  int code = -1;
  std::string output;
};

std::string quoted(const std::string& s) {
  return "\"" + s + "\"";
}

std::string readFile(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

class SecretsTest : public testing::MailEnvSuite {
 protected:
  void SetUp() override {
    MailEnvSuite::SetUp();
    if (IsSkipped() || HasFatalFailure()) {
      return;
    }
    // A wrong password nobody could mistake for anything else, and the real one.
    wrong_ = "Wrong-Secret-For-The-Leak-Test-5d1e8a3f";
    right_ = env()->password();
    ASSERT_FALSE(right_.empty());
    wrong_file_ = env()->dir() + "/secrets-wrong-password";
    { std::ofstream(wrong_file_) << wrong_ << "\n"; }
    ::chmod(wrong_file_.c_str(), 0600);
    other_user_ = env()->value("OTHER_USER");
    ASSERT_FALSE(other_user_.empty());
    // The AUTH PLAIN message holds the user too: one set of forms per user and password sent.
    using Sent = std::tuple<std::string, std::string, std::string>;  // user, password, name
    for (const auto& [user, password, name] :
         {Sent{env()->user(), right_, ""}, Sent{kEchoUser, right_, "echo "},
          Sent{other_user_, wrong_, "wrong "}, Sent{env()->user(), wrong_, "wrong "}}) {
      for (auto& f : testing::passwordForms(user, password)) {
        f.name = name + f.name;
        forms_.push_back(std::move(f));
      }
    }
    // Servers that quote the login back, with the mail servers' own valid certificate.
    for (auto [protocol, via_starttls] : {std::pair{testing::FaultProtocol::Smtp, false},
                                          std::pair{testing::FaultProtocol::Imap, true}}) {
      testing::FaultOptions o;
      o.protocol = protocol;
      o.fault = testing::Fault::EchoLogin;
      o.via_starttls = via_starttls;
      o.address = kEchoAddress;
      o.tls.key_pem = readFile(env()->dir() + "/certs/valid.key");
      o.tls.cert_pem = readFile(env()->dir() + "/certs/valid.crt");
      ASSERT_FALSE(o.tls.key_pem.empty() || o.tls.cert_pem.empty());
      echo_.push_back(std::make_unique<FaultServer>(o));
    }
  }

  // How an account gives its password: a file, or inline in the config.
  enum class Source { File, Inline };

  // The probe account, or another `user`; the right password, or the wrong one.
  std::string account(const std::string& table, Source source, bool wrong,
                      const std::string& user = "") const {
    std::string t = "[" + table + "]\nuser = " + quoted(user.empty() ? env()->user() : user) + "\n";
    if (source == Source::File) {
      return t + "password_file = " + quoted(wrong ? wrong_file_ : env()->dir() + "/password") +
             "\n";
    }
    return t + "password = " + quoted(wrong ? wrong_ : right_) + "\n";
  }

  static std::string endpoint(const char* service, uint16_t port, const char* security,
                              const std::string& extra = "") {
    return std::string("  [[host.endpoint]]\n  service = ") + quoted(service) +
           "\n  port = " + std::to_string(port) + "\n  security = " + quoted(security) + "\n" +
           extra;
  }

  // Three hosts, all "localhost" (the certificates' name), each with its own account, so that
  // refused logins on one never hold back the logins of another (the back-off is per account):
  //  1. at 127.0.0.1, the probe account with the right password, logging in on Dovecot 143 and
  //     Postfix 25 and 465;
  //  2. at 127.0.0.10, the two servers that quote the login back (SMTP over implicit TLS, IMAP
  //     after STARTTLS), given the right password for a user of their own;
  //  3. resolved, IPv4 only, from 127.0.0.9 (exempt from Dovecot's auth penalty): the other
  //     user of the mail servers with the wrong password on Dovecot 993 and Postfix 587, two
  //     mechanisms each (every refusal still costs Dovecot's 2 s auth_failure_delay), with the
  //     relay rules of 587 checked signed in with it from there too (from anywhere else the
  //     penalty grows with each refusal, up to 15 s a login).
  std::string config(Source source, uint16_t listen) const {
    std::string t = "[daemon]\nlisten = \"127.0.0.1:" + std::to_string(listen) +
                    "\"\nlog_level = \"debug\"\n\n"
                    "[defaults]\ninterval = \"2s\"\ntimeout = \"40s\"\nphase_timeout = \"15s\"\n"
                    "ca_file = " +
                    quoted(env()->caFile()) + "\nsource_address = \"127.0.0.2\"\n\n" +
                    account("account", source, false) +
                    "\n[[host]]\nname = \"localhost\"\naddresses = [\"127.0.0.1\"]\n" +
                    endpoint("imap", env()->imapStarttlsPort(), "starttls") +
                    endpoint("smtp", env()->smtpPort(), "starttls",
                             "  starttls_required = false\n  auth = \"optional\"\n") +
                    endpoint("smtp", env()->smtpsPort(), "tls");
    t += std::string("\n[[host]]\nname = \"localhost\"\naddresses = [\"") + kEchoAddress + "\"]\n" +
         account("host.account", source, false, kEchoUser) +
         endpoint("smtp", echo_[0]->port(), "tls") + endpoint("imap", echo_[1]->port(), "starttls");
    t += "\n[[host]]\nname = \"localhost\"\nfamily = \"ipv4\"\nsource_address = \"127.0.0.9\"\n" +
         account("host.account", source, true, other_user_) +
         endpoint("imap", env()->imapsPort(), "tls",
                  "  mechanisms = [\"PLAIN\", \"LOGIN-COMMAND\"]\n") +
         endpoint("smtp", env()->submissionPort(), "starttls",
                  "  mechanisms = [\"PLAIN\", \"LOGIN\"]\n") +
         "  [host.relay]\n  local_recipient = " + quoted(env()->user()) + "\n  ports = [" +
         std::to_string(env()->submissionPort()) +
         "]\n  interval = \"10s\"\n"
         "    [[host.relay.vantage]]\n    name = \"outside\"\n    source_address = \"127.0.0.9\"\n";
    return t;
  }

  std::string write(const std::string& name, const std::string& text, mode_t mode = 0600) const {
    std::string path = env()->dir() + "/" + name;
    std::ofstream(path) << text;
    ::chmod(path.c_str(), mode);
    return path;
  }

  CliRun cli(std::vector<std::string> args) {
    args.insert(args.begin(), MAILPROBED_BIN);
    Subprocess p(args, {}, env()->dir() + "/secrets-" + std::to_string(++runs_) + ".out");
    CliRun r;
    r.code = p.wait(120s).value_or(-1);
    r.output = p.output();
    return r;
  }

  // Everything seen so far, by where it was seen; scanned once at the end.
  void saw(const std::string& where, const std::string& text) {
    seen_.push_back({where, text});
    bytes_seen_ += text.size();
    if (std::getenv("MAILPROBE_SECRETS_TRACE") != nullptr) {
      std::printf("%6.1f s  %s\n",
                  std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count(),
                  where.c_str());
    }
  }
  std::chrono::steady_clock::time_point t0_ = std::chrono::steady_clock::now();

  std::string leaks() const {
    std::string out;
    for (const auto& [where, text] : seen_) {
      out += testing::findSecrets(where, text, forms_);
    }
    return out;
  }

  void runDaemon(Source source, const std::string& name);
  struct Refusals expectedRefusals() const;

  static constexpr const char* kEchoUser = "echo@fault.test";
  static constexpr const char* kEchoAddress = "127.0.0.10";
  std::string right_, wrong_, wrong_file_, other_user_;
  std::vector<testing::SecretForm> forms_;
  std::vector<std::unique_ptr<FaultServer>> echo_;
  std::vector<std::pair<std::string, std::string>> seen_;
  size_t bytes_seen_ = 0;
  int runs_ = 0;
};

bool hasAuthFailedWith(const nlohmann::json& endpoint, const std::string& said) {
  if (endpoint.value("reason", "") != "auth_failed") {
    return false;
  }
  for (const auto& a : endpoint["auth"]) {
    if (a.value("reason", "") == "auth_failed" &&
        a.value("detail", "").find(said) != std::string::npos) {
      return true;
    }
  }
  return false;
}

// The endpoints whose logins are refused, and which of them were seen refused as planned: the
// echoing servers with their quote (redacted: they refuse with a temporary failure, which the
// login gate does not count against the password, so every login reaches them), the wrong
// password by the real servers.
struct Refusals {
  std::set<uint16_t> echo, wrong;
  std::set<uint16_t> seen;
  bool wrong_refused = false;  // a wrong-password login (endpoint or relay) was refused
};

// Every endpoint ran and came out as planned: the right password works on the real servers,
// each refused endpoint was seen refused, and the relay check ran.
bool everyPathRan(const nlohmann::json& j, Refusals& r) {
  if (!j.contains("endpoints") || j["endpoints"].size() != 7) {
    return false;
  }
  bool ok = j.contains("relay") && !j["relay"].empty();
  // The relay check signs in with the wrong password too, and may be the login that is refused.
  for (const auto& c : j.value("relay", nlohmann::json::array())) {
    r.wrong_refused = r.wrong_refused || c.value("reason", "") == "auth_failed";
  }
  // A refused run can be replaced by a held-back one between two polls: the login gate's count
  // of refusals in a row, shown per endpoint, says a refusal happened all the same.
  for (const auto& s : j.value("endpoint_states", nlohmann::json::array())) {
    if (r.wrong.count(s.value("port", uint16_t{0})) != 0) {
      for (const auto& b : s.value("auth_backoff", nlohmann::json::array())) {
        r.wrong_refused = r.wrong_refused || b.value("refused_in_a_row", 0) > 0;
      }
    }
  }
  for (const auto& e : j["endpoints"]) {
    uint16_t port = e["port"].get<uint16_t>();
    if (r.echo.count(port) != 0) {
      if (hasAuthFailedWith(e, "Authentication failed for")) {
        r.seen.insert(port);
      }
    } else if (r.wrong.count(port) != 0) {
      // One login of the account is refused; the gate holds the others back (auth_backoff).
      const std::string reason = e.value("reason", "");
      if (reason == "auth_failed" || reason == "auth_backoff") {
        r.seen.insert(port);
      }
      // The refused one may be any mechanism's connection, the endpoint's reason another's.
      for (const auto& a : e["auth"]) {
        r.wrong_refused = r.wrong_refused || a.value("reason", "") == "auth_failed";
      }
    } else {
      ok = ok && e.value("success", false) == true;
    }
  }
  return ok && r.wrong_refused && r.seen.size() == r.echo.size() + r.wrong.size();
}

Refusals SecretsTest::expectedRefusals() const {
  Refusals r;
  r.echo = {echo_[0]->port(), echo_[1]->port()};
  r.wrong = {env()->imapsPort(), env()->submissionPort()};
  return r;
}

void SecretsTest::runDaemon(Source source, const std::string& name) {
  const uint16_t port = testing::freeLoopbackPort();
  const std::string path = write("secrets-run-" + name + ".toml", config(source, port));
  Subprocess daemon({MAILPROBED_BIN, "run", "--config", path}, {},
                    env()->dir() + "/secrets-run-" + name + ".log");
  ASSERT_TRUE(daemon.started());
  nlohmann::json status;
  Refusals refusals = expectedRefusals();
  bool ran = testing::waitForStatusJson(
      port, [&](const nlohmann::json& j) { return everyPathRan(j, refusals); }, 90s, &status);
  EXPECT_TRUE(ran) << status.dump(2) << daemon.output();
  for (const char* page : {"/", "/status.json", "/metrics", "/healthz", "/no-such-page"}) {
    testing::HttpReply reply = testing::httpGet(port, page);
    EXPECT_NE(reply.status, 0) << page;
    saw("run " + name + " GET " + page, reply.body);
  }
  // A reload with a syntax error on the password line: refused, said in one line, no value.
  std::string broken = config(source, port);
  broken.replace(broken.find("\nuser = "), 1, "\npassword = \"" + right_ + "\" oops\n");
  write("secrets-run-" + name + ".toml", broken);
  ASSERT_TRUE(daemon.signal(SIGHUP));
  auto deadline = std::chrono::steady_clock::now() + 10s;
  while (daemon.output().find("reload refused") == std::string::npos &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(100ms);
  }
  saw("run " + name + " /status.json after the refused reload",
      testing::httpGet(port, "/status.json").body);
  ASSERT_TRUE(daemon.signal(SIGTERM));
  EXPECT_EQ(daemon.wait(10s).value_or(-1), 0);
  const std::string log = daemon.output();
  EXPECT_NE(log.find("reload refused"), std::string::npos) << log;
  EXPECT_NE(log.find("DOWN: "), std::string::npos) << "the failed logins are logged" << log;
  saw("run " + name + " stderr", log);
}

TEST_F(SecretsTest, NoPathShowsThePassword) {
  for (Source source : {Source::File, Source::Inline}) {
    const std::string name = source == Source::File ? "file" : "inline";
    SCOPED_TRACE(name);
    // Readable by others: with an inline password that is one more warning, never the value.
    const std::string path = write("secrets-" + name + ".toml", config(source, 9), 0644);

    CliRun validate = cli({"validate", "--config", path});
    EXPECT_EQ(validate.code, 0) << validate.output;
    saw("validate " + name, validate.output);
    if (source == Source::Inline) {
      EXPECT_NE(validate.output.find("an inline password can be read by anyone"), std::string::npos)
          << validate.output;
      EXPECT_NE(validate.output.find("holds an inline password and is readable by every user"),
                std::string::npos)
          << validate.output;
    }

    CliRun text = cli({"check", "--config", path, "--perfdata"});
    EXPECT_EQ(text.code, 2) << text.output;  // the wrong password fails, as it should
    EXPECT_NE(text.output.find("Authentication failed for"), std::string::npos) << text.output;
    saw("check text " + name, text.output);

    CliRun json = cli({"check", "--config", path, "--format", "json"});
    EXPECT_EQ(json.code, 2);
    // The config's warnings come first, on stderr (here in the same file): the JSON follows.
    size_t json_start = json.output.starts_with("{") ? 0 : json.output.find("\n{") + 1;
    auto j = nlohmann::json::parse(json.output.substr(json_start), nullptr, false);
    ASSERT_FALSE(j.is_discarded()) << json.output;
    Refusals refusals = expectedRefusals();
    EXPECT_TRUE(everyPathRan(j, refusals)) << j.dump(2);
    saw("check json " + name, json.output);

    runDaemon(source, name);
  }

  // The ad-hoc form, its password from a file: the wrong one against Postfix's submission port.
  CliRun adhoc = cli({"check",
                      "--host",
                      "localhost",
                      "--address",
                      "127.0.0.1",
                      "--port",
                      std::to_string(env()->submissionPort()),
                      "--service",
                      "smtp",
                      "--security",
                      "starttls",
                      "--user",
                      env()->user(),
                      "--password-file",
                      wrong_file_,
                      "--ca-file",
                      env()->caFile(),
                      "--source-address",
                      "127.0.0.9",
                      "--format",
                      "json"});
  EXPECT_EQ(adhoc.code, 2) << adhoc.output;
  EXPECT_NE(adhoc.output.find("auth_failed"), std::string::npos) << adhoc.output;
  saw("check ad-hoc", adhoc.output);

  // Config errors on and around the password line, at validate, check and run.
  const std::string account_head = "[account]\nuser = " + quoted(env()->user()) + "\n";
  const std::string tail = "\n[[host]]\nname = \"localhost\"\n";
  const std::vector<std::string> broken{
      account_head + "password = \"" + wrong_ + "\" trailing\n" + tail,
      account_head + "password = \"" + wrong_ + "\n" + tail,
      account_head + "password = " + wrong_ + "\n" + tail,
      account_head + "password = \"" + wrong_ + "\"\npassword = \"" + wrong_ + "\"\n" + tail,
      account_head + "password = [\"" + wrong_ + "\"]\n" + tail,
      account_head + "password = \"" + wrong_ + "\"\npassword_file = \"" + wrong_file_ + "\"\n" +
          tail,
      "[account]\nuser = \"" + env()->user() + "\" password = \"" + wrong_ + "\"\n" + tail,
      "[account]\nuser = [\npassword = \"" + wrong_ + "\"\n" + tail,
      "[account]\nuser = { password = \"" + wrong_ + "\" }\n" + tail,
      account_head + "pasword = \"" + wrong_ + "\"\n" + tail,
      "[daemon]\nlisten = \"127.0.0.1:" + std::to_string(testing::freeLoopbackPort()) +
          "\"\nlog_level = \"debug\"\n" + account_head + "password = \"" + wrong_ + "\" = 1\n" +
          tail,
  };
  for (size_t i = 0; i < broken.size(); ++i) {
    const std::string path = write("secrets-broken-" + std::to_string(i) + ".toml", broken[i]);
    for (const std::vector<std::string>& args :
         {std::vector<std::string>{"validate", "--config", path},
          std::vector<std::string>{"check", "--config", path},
          std::vector<std::string>{"run", "--config", path}}) {
      CliRun r = cli(args);
      EXPECT_EQ(r.code, 3) << args[0] << " " << i << ": " << r.output;
      // Each error is located: the file, the line, the column.
      EXPECT_NE(r.output.find(path + ":"), std::string::npos) << r.output;
      saw(args[0] + " of broken config " + std::to_string(i), r.output);
    }
  }

  EXPECT_EQ(leaks(), "");
  std::printf("secrets: %zu outputs, %zu KiB looked through for %zu forms of 2 passwords\n",
              seen_.size(), bytes_seen_ / 1024, forms_.size());
}

}  // namespace
}  // namespace mailprobe
