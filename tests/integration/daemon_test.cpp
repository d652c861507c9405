// `mailprobed run` as systemd runs it: the real binary, a real sd_notify socket, real Dovecot and
// Postfix on loopback, scraped over HTTP. Reload, outage and stop are driven from outside.

#include <signal.h>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <fstream>
#include <thread>

#include "tests/fakes/mail_env.h"
#include "tests/fakes/notify_listener.h"
#include "tests/fakes/subprocess.h"

namespace mailprobe {
namespace {

using namespace std::chrono_literals;
using testing::freeLoopbackPort;
using testing::httpGet;
using testing::MailEnv;
using testing::Subprocess;

class DaemonTest : public testing::MailEnvSuite {
 protected:
  void SetUp() override {
    MailEnvSuite::SetUp();
    if (IsSkipped() || HasFatalFailure()) {
      return;
    }
    port_ = freeLoopbackPort();
    config_path_ = env()->dir() + "/daemon-" + std::to_string(port_) + ".toml";
    writeConfig(goodConfig());
  }

  std::string goodConfig() const {
    return "[daemon]\nlisten = \"127.0.0.1:" + std::to_string(port_) +
           "\"\nlog_level = \"debug\"\n\n"
           "[defaults]\ninterval = \"2s\"\ntimeout = \"10s\"\nphase_timeout = \"3s\"\n"
           "ca_file = \"" +
           env()->caFile() +
           "\"\nsource_address = \"127.0.0.2\"\n\n"
           "[account]\nuser = \"" +
           env()->user() + "\"\npassword_file = \"" + env()->dir() +
           "/password\"\n\n"
           "[[host]]\nname = \"localhost\"\naddresses = [\"127.0.0.1\"]\n"
           "  [[host.endpoint]]\n  service = \"imap\"\n  port = " +
           std::to_string(env()->imapsPort()) + "\n  security = \"tls\"\n" +
           "  [[host.endpoint]]\n  service = \"smtp\"\n  port = " +
           std::to_string(env()->submissionPort()) + "\n  security = \"starttls\"\n";
  }

  void writeConfig(const std::string& text) const { std::ofstream(config_path_) << text; }

  std::unique_ptr<Subprocess> startDaemon(const std::string& notify_socket) {
    auto p = std::make_unique<Subprocess>(
        std::vector<std::string>{MAILPROBED_BIN, "run", "--config", config_path_},
        std::vector<std::string>{"NOTIFY_SOCKET=" + notify_socket, "WATCHDOG_USEC=1000000"},
        env()->dir() + "/daemon-" + std::to_string(port_) + ".log");
    return p;
  }

  // Polls /status.json until `pred` holds or the timeout passes.
  template <typename Pred>
  bool waitForStatus(Pred pred, std::chrono::milliseconds timeout, nlohmann::json* last) {
    return testing::waitForStatusJson(port_, pred, timeout, last);
  }

  static bool allEndpoints(const nlohmann::json& j, bool success) {
    if (!j.contains("endpoints") || j["endpoints"].size() != 2) {
      return false;
    }
    for (const auto& e : j["endpoints"]) {
      if (e.value("success", !success) != success) {
        return false;
      }
    }
    return true;
  }

  uint16_t port_ = 0;
  std::string config_path_;
};

std::string linesWith(const std::string& text, const std::string& needle) {
  std::string out;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    std::string line = text.substr(pos, end == std::string::npos ? std::string::npos : end - pos);
    if (line.find(needle) != std::string::npos) {
      out += line + "\n";
    }
    pos = end == std::string::npos ? text.size() : end + 1;
  }
  return out;
}

TEST_F(DaemonTest, NotifiesSystemdServesMetricsReloadsAndStops) {
  testing::NotifyListener notify;
  auto daemon = startDaemon(notify.notifySocket());
  ASSERT_TRUE(daemon->started());
  ASSERT_TRUE(notify.waitFor("READY=1", 10s)) << daemon->output();
  EXPECT_TRUE(notify.waitFor("WATCHDOG=1", 3s));

  nlohmann::json status;
  ASSERT_TRUE(waitForStatus([](const auto& j) { return allEndpoints(j, true); }, 15s, &status))
      << status.dump(2) << daemon->output();

  auto metrics = httpGet(port_, "/metrics");
  ASSERT_EQ(metrics.status, 200);
  EXPECT_NE(metrics.body.find("mailprobe_endpoint_up{"), std::string::npos);
  EXPECT_NE(metrics.body.find("mailprobe_tls_cert_not_after_timestamp_seconds{"),
            std::string::npos);
  EXPECT_NE(metrics.body.find("mailprobe_config_last_reload_successful 1"), std::string::npos);
  EXPECT_EQ(metrics.body.find(env()->password()), std::string::npos);
  auto page = httpGet(port_, "/");
  EXPECT_EQ(page.status, 200);
  EXPECT_NE(page.body.find("localhost"), std::string::npos);
  EXPECT_EQ(page.body.find(env()->password()), std::string::npos);
  EXPECT_EQ(httpGet(port_, "/healthz").status, 200);

  // A broken config on reload: refused, the old one keeps probing, the metric says so.
  writeConfig(goodConfig() + "\n[defaults]\nintervall = \"5s\"\n");
  ASSERT_TRUE(daemon->signal(SIGHUP));
  EXPECT_TRUE(notify.waitFor("RELOADING=1", 5s));
  std::this_thread::sleep_for(1500ms);
  metrics = httpGet(port_, "/metrics");
  EXPECT_NE(metrics.body.find("mailprobe_config_last_reload_successful 0"), std::string::npos)
      << metrics.body.substr(0, 2000);
  ASSERT_TRUE(waitForStatus([](const auto& j) { return allEndpoints(j, true); }, 10s, &status));
  EXPECT_TRUE(daemon->running());
  EXPECT_NE(daemon->output().find("reload refused"), std::string::npos);

  // A good config again: accepted.
  writeConfig(goodConfig());
  ASSERT_TRUE(daemon->signal(SIGHUP));
  std::this_thread::sleep_for(1500ms);
  metrics = httpGet(port_, "/metrics");
  EXPECT_NE(metrics.body.find("mailprobe_config_last_reload_successful 1"), std::string::npos);

  ASSERT_TRUE(daemon->signal(SIGTERM));
  EXPECT_TRUE(notify.waitFor("STOPPING=1", 5s));
  auto code = daemon->wait(6s);
  ASSERT_TRUE(code.has_value()) << "did not stop within the bound";
  EXPECT_EQ(*code, 0) << daemon->output();
}

TEST_F(DaemonTest, AnOutageTurnsRedWithinAnIntervalPlusTheDeadlineAndGreenAgain) {
  testing::NotifyListener notify;
  auto daemon = startDaemon(notify.notifySocket());
  ASSERT_TRUE(notify.waitFor("READY=1", 10s)) << daemon->output();
  nlohmann::json status;
  ASSERT_TRUE(waitForStatus([](const auto& j) { return allEndpoints(j, true); }, 15s, &status))
      << status.dump(2);

  // Postfix goes away; Dovecot stays. (Stopping Dovecot would take Postfix's SASL with it, and
  // Postfix throttles a service whose processes die: a real cascade, but not this test's point.)
  ASSERT_TRUE(env()->stopService("postfix"));
  auto smtp_down_imap_up = [](const nlohmann::json& j) {
    bool smtp_down = false, imap_up = false;
    for (const auto& e : j["endpoints"]) {
      if (e["service"] == "smtp") {
        smtp_down = e["success"] == false && e["reason"] == "connect_refused";
      } else {
        imap_up = e["success"] == true;
      }
    }
    return smtp_down && imap_up;
  };
  // One interval (2 s, plus jitter) and the deadline (10 s) at most.
  bool red = waitForStatus(smtp_down_imap_up, 14s, &status);
  ASSERT_TRUE(env()->startService("postfix"));
  ASSERT_TRUE(red) << status.dump(2);
  auto metrics = httpGet(port_, "/metrics");
  EXPECT_NE(metrics.body.find("reason=\"connect_refused\""), std::string::npos);

  EXPECT_TRUE(waitForStatus([](const auto& j) { return allEndpoints(j, true); }, 20s, &status))
      << status.dump(2);
  EXPECT_NE(daemon->output().find("DOWN: smtp"), std::string::npos);
  EXPECT_NE(daemon->output().find("UP again: smtp"), std::string::npos);
  daemon->signal(SIGTERM);
  EXPECT_EQ(daemon->wait(6s).value_or(-1), 0);
}

TEST_F(DaemonTest, TwoBackendsOfOneNameAreTwoEndpointsAndAnExpiredCertificateKeepsItsMetrics) {
  writeConfig(goodConfig() + "[[host]]\nname = \"localhost\"\naddresses = [\"127.0.0.4\"]\n" +
              "  [[host.endpoint]]\n  service = \"imap\"\n  port = " +
              std::to_string(env()->imapsPort()) + "\n  security = \"tls\"\n");
  testing::NotifyListener notify;
  auto daemon = startDaemon(notify.notifySocket());
  ASSERT_TRUE(notify.waitFor("READY=1", 10s)) << daemon->output();
  nlohmann::json status;
  auto three_ran = [](const nlohmann::json& j) {
    return j.contains("endpoints") && j["endpoints"].size() == 3;
  };
  ASSERT_TRUE(waitForStatus(three_ran, 15s, &status)) << status.dump(2);
  int expired = 0;
  for (const auto& e : status["endpoints"]) {
    if (e["address"] == "127.0.0.4") {
      ++expired;
      EXPECT_EQ(e["reason"], "cert_expired");
      EXPECT_EQ(e["tls"]["verify"], "cert_expired");
      EXPECT_EQ(e["tls"]["accept_all_ok"], true);
    } else {
      EXPECT_EQ(e["success"], true) << e.dump();
    }
  }
  EXPECT_EQ(expired, 1);
  auto metrics = httpGet(port_, "/metrics").body;
  // The certificate facts stay exported exactly when the certificate is invalid.
  std::string expired_host = "host=\"localhost@127.0.0.4\"";
  std::string verify =
      linesWith(linesWith(metrics, "mailprobe_tls_cert_verify_info{"), expired_host);
  EXPECT_NE(verify.find("reason=\"cert_expired\"} 1"), std::string::npos) << verify;
  std::string not_after = linesWith(
      linesWith(metrics, "mailprobe_tls_cert_not_after_timestamp_seconds{"), expired_host);
  EXPECT_NE(not_after.find("} 1609459200"), std::string::npos) << not_after;  // 2021-01-01
  std::string up = linesWith(linesWith(metrics, "mailprobe_endpoint_up{"), expired_host);
  EXPECT_NE(up.find("} 0"), std::string::npos) << up;
  EXPECT_NE(daemon->output().find("DOWN: imap"), std::string::npos);
  daemon->signal(SIGTERM);
  EXPECT_EQ(daemon->wait(6s).value_or(-1), 0);
}

TEST_F(DaemonTest, ABadConfigAtStartIsFatalBeforeReady) {
  writeConfig("[daemon]\nlisten = \"127.0.0.1:" + std::to_string(port_) + "\"\n[[host]]\n");
  testing::NotifyListener notify;
  auto daemon = startDaemon(notify.notifySocket());
  auto code = daemon->wait(5s);
  ASSERT_TRUE(code.has_value());
  EXPECT_EQ(*code, 3);
  EXPECT_FALSE(notify.waitFor("READY=1", 200ms));
  EXPECT_NE(daemon->output().find(config_path_ + ":"), std::string::npos) << daemon->output();
}

}  // namespace
}  // namespace mailprobe
