// The login back-off (AuthGate) against the real servers: a wrong password costs the account the
// refused logins the back-off allows and no more, counted where the servers count them (Dovecot's
// auth, which also checks Postfix's SASL logins); `mailprobed run` shows the hold in /metrics,
// /status.json and the status page, and recovers when a reload fixes the password; `mailprobed
// check` makes one refused login for the whole platform.

#include <signal.h>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "tests/fakes/mail_env.h"
#include "tests/fakes/mail_env_config.h"
#include "tests/fakes/notify_listener.h"
#include "tests/fakes/subprocess.h"

namespace mailprobe {
namespace {

using namespace std::chrono_literals;
using testing::MailEnv;
using testing::MailEnvChange;
using testing::Subprocess;

// The most refused logins one account can collect in `window` seconds under the back-off: one,
// then one more each time a whole hold (initial, times factor, at most max) has passed.
int maxRefusals(double window, double initial, double factor, double max) {
  int n = 1;
  double t = 0;
  double hold = initial;
  while (t + hold <= window) {
    t += hold;
    ++n;
    hold = std::min(hold * factor, max);
  }
  return n;
}

TEST(AuthBackoffBound, CountsWholeHolds) {
  EXPECT_EQ(maxRefusals(1.9, 2, 2, 8), 1);
  EXPECT_EQ(maxRefusals(2, 2, 2, 8), 2);
  EXPECT_EQ(maxRefusals(12, 2, 2, 8), 3);  // 2 + 4 = 6; + 8 = 14 > 12
  EXPECT_EQ(maxRefusals(30, 2, 2, 8), 6);  // 2 + 4 + 8 + 8 + 8 = 30
}

// The values of the exposition lines in `lines`.
std::vector<double> values(const std::string& lines) {
  std::vector<double> out;
  std::istringstream in(lines);
  for (std::string line; std::getline(in, line);) {
    out.push_back(std::stod(line.substr(line.rfind(' ') + 1)));
  }
  return out;
}

// The lines of `text` that contain `needle`.
std::string linesWith(const std::string& text, const std::string& needle) {
  std::string out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (line.find(needle) != std::string::npos) {
      out += line + "\n";
    }
  }
  return out;
}

class AuthBackoffTest : public testing::MailEnvSuite {
 protected:
  void SetUp() override {
    MailEnvSuite::SetUp();
    if (IsSkipped() || HasFatalFailure()) {
      return;
    }
    wrong_password_file_ = env()->dir() + "/wrong-password";
    std::ofstream(wrong_password_file_) << "not-the-password\n";
    std::filesystem::permissions(wrong_password_file_, std::filesystem::perms::owner_read |
                                                           std::filesystem::perms::owner_write);
  }

  // The platform's endpoints that require a login, IMAP and SMTP, with the password in `file`.
  std::string daemonConfig(uint16_t port, const std::string& password_file) const {
    std::string t = "[daemon]\nlisten = \"127.0.0.1:" + std::to_string(port) +
                    "\"\nlog_level = \"debug\"\n"
                    "auth_backoff_initial = \"2s\"\nauth_backoff_max = \"8s\"\n"
                    "auth_backoff_factor = 2\n\n"
                    "[defaults]\ninterval = \"1s\"\ntimeout = \"10s\"\nphase_timeout = \"3s\"\n"
                    "ca_file = \"" +
                    env()->caFile() +
                    "\"\nsource_address = \"127.0.0.2\"\n\n"
                    "[account]\nuser = \"" +
                    env()->user() + "\"\npassword_file = \"" + password_file +
                    "\"\n\n[[host]]\nname = \"localhost\"\naddresses = [\"127.0.0.1\"]\n";
    for (auto [service, p, security] : {std::tuple{"imap", env()->imapStarttlsPort(), "starttls"},
                                        std::tuple{"imap", env()->imapsPort(), "tls"},
                                        std::tuple{"smtp", env()->smtpsPort(), "tls"},
                                        std::tuple{"smtp", env()->submissionPort(), "starttls"}}) {
      t += std::string("  [[host.endpoint]]\n  service = \"") + service +
           "\"\n  port = " + std::to_string(p) + "\n  security = \"" + security + "\"\n";
    }
    return t;
  }

  std::string wrong_password_file_;
};

// The daemon with a wrong password, probing four endpoints every second with a back-off of 2 s
// doubling up to 8 s, and Dovecot answering refusals at once (auth_failure_delay = 0). Without
// the gate that is 14 refused logins a second (4 IMAP mechanisms on 143 and 993, 3 SMTP ones on
// 465 and 587); with it, one and then one per hold. A reload with the right password turns every
// endpoint green and the refusals stop.
TEST_F(AuthBackoffTest, DaemonRefusalsFollowTheBackoffAndAReloadWithTheRightPasswordRecovers) {
  ASSERT_TRUE(env()->doveconf({"auth_failure_delay = 0"})) << env()->lastError();
  MailEnvChange restore(env(), [](MailEnv* e) { return e->doveconf({"auth_failure_delay = 2s"}); });

  const uint16_t port = testing::freeLoopbackPort();
  const std::string config = env()->dir() + "/backoff-" + std::to_string(port) + ".toml";
  std::ofstream(config) << daemonConfig(port, wrong_password_file_);
  testing::NotifyListener notify;
  const size_t before = env()->refusedLogins();
  const auto started = std::chrono::steady_clock::now();
  Subprocess daemon({MAILPROBED_BIN, "run", "--config", config},
                    {"NOTIFY_SOCKET=" + notify.notifySocket()},
                    env()->dir() + "/backoff-" + std::to_string(port) + ".log");
  ASSERT_TRUE(daemon.started());
  ASSERT_TRUE(notify.waitFor("READY=1", 10s)) << daemon.output();

  // Held back: the endpoints say auth_backoff, with the time left, wherever one looks.
  nlohmann::json status;
  auto held = [](const nlohmann::json& j) {
    for (const auto& e : j.value("endpoint_states", nlohmann::json::array())) {
      for (const auto& b : e["auth_backoff"]) {
        if (b["seconds_left"].get<double>() > 0) {
          return true;
        }
      }
    }
    return false;
  };
  ASSERT_TRUE(testing::waitForStatusJson(port, held, 10s, &status)) << status.dump(2);
  int backoff_endpoints = 0;
  for (const auto& e : status["endpoints"]) {
    if (e["reason"] == "auth_backoff") {
      ++backoff_endpoints;
      EXPECT_EQ(e["phase"], "auth");
      EXPECT_NE(e["detail"].get<std::string>().find("login held back after "), std::string::npos)
          << e.dump();
    } else {
      EXPECT_EQ(e["reason"], "auth_failed") << e.dump();
    }
  }
  const std::string metrics = testing::httpGet(port, "/metrics").body;
  const std::string backoff = linesWith(metrics, "mailprobe_auth_backoff_seconds{");
  const std::vector<double> left = values(backoff);
  EXPECT_EQ(left.size(), 14u) << backoff;  // every mechanism of every endpoint
  EXPECT_GT(*std::max_element(left.begin(), left.end()), 0) << backoff;
  EXPECT_LE(*std::max_element(left.begin(), left.end()), 8) << backoff;
  EXPECT_EQ(metrics.find("not-the-password"), std::string::npos);
  EXPECT_EQ(metrics.find(env()->user()), std::string::npos);  // endpoints, not accounts
  const std::string page = testing::httpGet(port, "/").body;
  EXPECT_NE(page.find("<dt>Login back-off</dt>"), std::string::npos);
  EXPECT_EQ(page.find("not-the-password"), std::string::npos);

  // The refusals the servers saw follow the back-off.
  const double bound_window = 12;
  std::this_thread::sleep_until(started + std::chrono::seconds(static_cast<int>(bound_window)));
  const size_t refused = env()->refusedLogins() - before;
  const double window =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  EXPECT_GE(refused, 2u) << "the hold ended and the next login went";
  EXPECT_LE(refused, static_cast<size_t>(maxRefusals(window, 2, 2, 8))) << "in " << window << " s\n"
                                                                        << daemon.output();
  std::cerr << "[ figures  ] " << refused << " refused logins in " << window << " s (bound "
            << maxRefusals(window, 2, 2, 8) << "), " << backoff_endpoints
            << " endpoints showing auth_backoff\n";

  // The right password, by reload: every endpoint logs in again and the refusals stop.
  std::ofstream(config) << daemonConfig(port, env()->dir() + "/password");
  const auto reloaded = std::chrono::steady_clock::now();
  ASSERT_TRUE(daemon.signal(SIGHUP));
  auto all_up = [](const nlohmann::json& j) {
    if (!j.contains("endpoints") || j["endpoints"].size() != 4) {
      return false;
    }
    return std::all_of(j["endpoints"].begin(), j["endpoints"].end(),
                       [](const auto& e) { return e["success"] == true; });
  };
  ASSERT_TRUE(testing::waitForStatusJson(port, all_up, 15s, &status)) << status.dump(2);
  std::cerr << "[ figures  ] green again "
            << std::chrono::duration<double>(std::chrono::steady_clock::now() - reloaded).count()
            << " s after the reload\n";
  const size_t after_fix = env()->refusedLogins();
  std::this_thread::sleep_for(3s);
  EXPECT_EQ(env()->refusedLogins(), after_fix);
  ASSERT_TRUE(testing::waitForStatusJson(
      port, [&](const nlohmann::json& j) { return !held(j) && all_up(j); }, 5s, &status))
      << status.dump(2);
  const std::string after =
      linesWith(testing::httpGet(port, "/metrics").body, "mailprobe_auth_backoff_seconds{");
  EXPECT_EQ(values(after), std::vector<double>(14, 0.0)) << after;
  EXPECT_NE(daemon.output().find("UP again: "), std::string::npos) << daemon.output();
  EXPECT_EQ(daemon.output().find("not-the-password"), std::string::npos);

  ASSERT_TRUE(daemon.signal(SIGTERM));
  EXPECT_EQ(daemon.wait(6s).value_or(-1), 0) << daemon.output();
}

// `check` with a wrong password on the platform's five endpoints of one account: one refused
// login in all, the other endpoints held back with auth_backoff, in JSON and in text.
TEST_F(AuthBackoffTest, CheckWithAWrongPasswordMakesOneRefusedLogin) {
  std::string toml = testing::platformConfigToml(*env(), "127.0.0.1",
                                                 "timeout = \"20s\"\nphase_timeout = \"8s\"\n");
  const std::string right = "\"" + env()->dir() + "/password\"";
  ASSERT_NE(toml.find(right), std::string::npos);
  toml.replace(toml.find(right), right.size(), "\"" + wrong_password_file_ + "\"");
  const std::string config = env()->dir() + "/check-wrong-password.toml";
  std::ofstream(config) << toml;

  for (const std::string format : {"json", "text"}) {
    SCOPED_TRACE(format);
    const size_t before = env()->refusedLogins();
    Subprocess check(
        {MAILPROBED_BIN, "check", "--config", config, "--format", format, "--no-version-scan"}, {},
        env()->dir() + "/check-wrong-password." + format);
    const int code = check.wait(60s).value_or(-1);
    const std::string out = check.output();
    EXPECT_EQ(code, 2) << out;
    EXPECT_EQ(env()->refusedLogins() - before, 1u) << out;
    EXPECT_EQ(out.find("not-the-password"), std::string::npos);
    if (format == "text") {
      EXPECT_NE(out.find("login held back after 1 refused login; next attempt in "),
                std::string::npos)
          << out;
      continue;
    }
    // Warnings (stderr) may come before the JSON in the output.
    const size_t json_begin = out.rfind('{', 0) == 0 ? 0 : out.find("\n{");
    ASSERT_NE(json_begin, std::string::npos) << out;
    nlohmann::json j =
        nlohmann::json::parse(out.substr(json_begin, out.rfind('}') - json_begin + 1));
    ASSERT_EQ(j["endpoints"].size(), 5u) << j.dump(2);
    int refused = 0;
    int backoff = 0;
    for (const auto& e : j["endpoints"]) {
      EXPECT_EQ(e["success"], false) << e.dump();
      EXPECT_EQ(e["phase"], "auth") << e.dump();
      for (const auto& a : e["auth"]) {
        if (a["reason"] == "auth_failed") {
          ++refused;
        } else {
          EXPECT_EQ(a["reason"], "auth_backoff") << a.dump();
        }
      }
      backoff += e["reason"] == "auth_backoff" ? 1 : 0;
    }
    EXPECT_EQ(refused, 1) << j["endpoints"].dump(2);
    EXPECT_EQ(backoff, 4) << j["endpoints"].dump(2);
  }
}

}  // namespace
}  // namespace mailprobe
