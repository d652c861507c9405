// The push of client verdicts to a real Alertmanager (Debian's prometheus-alertmanager), all on
// loopback: `mailprobed run` against the loopback Dovecot and Postfix, whose endpoints on
// 127.0.0.4 serve an expired certificate, so that Thunderbird (strict certificates) cannot read
// or send mail while the platform guide's Android phones (accept all certificates) can.
// Alertmanager runs on 127.0.0.1 on a port of the test's, with its storage in a temporary
// directory and no cluster, and routes every alert to a webhook the test listens on
// (send_resolved):
//
//   - the two alerts appear in Alertmanager with the rule's name, the labels and annotations
//     the README promises, the verdicts' own sentences and startsAt = the verdicts' since;
//   - Alertmanager restarted empty gets them again within a resend interval, and the daemon
//     logs the outage once however many pushes failed;
//   - once the daemon is reloaded onto the valid certificate the alerts are resolved: gone from
//     Alertmanager, and its webhook says "resolved" with an endsAt earlier than the one the
//     firing alerts had (so they were resolved by the push, not left to expire);
//   - the URL's password shows nowhere (log, /metrics, /status.json); a reload without
//     [alertmanager] stops the push and the daemon still stops at once;
//   - a hung Alertmanager holds one connection, not the probes or the stop;
//   - over https with basic authentication, nothing goes to a certificate that does not verify,
//     a wrong password gets 401, the right one delivers.
// Alertmanager and the daemon are killed and the directories removed even when a check fails.

#include <crypt.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <ctime>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <thread>

#include "daemon/alertmanager.h"
#include "daemon/profiles.h"
#include "tests/fakes/http_listener.h"
#include "tests/fakes/mail_env.h"
#include "tests/fakes/mail_env_config.h"
#include "tests/fakes/subprocess.h"
#include "tests/fakes/test_certs.h"

namespace mailprobe {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;
using testing::httpGet;
using testing::Subprocess;
using SteadyClock = std::chrono::steady_clock;

const std::string kPassword = "Am-pw-7Hq2-s3cr3t";

// An executable named `name` on $PATH; "" if none.
std::string findOnPath(const std::string& name) {
  const char* path = std::getenv("PATH");
  std::string dirs = path != nullptr ? path : "/usr/bin:/bin";
  for (size_t start = 0; start <= dirs.size();) {
    size_t end = dirs.find(':', start);
    if (end == std::string::npos) {
      end = dirs.size();
    }
    std::string candidate = dirs.substr(start, end - start) + "/" + name;
    if (::access(candidate.c_str(), X_OK) == 0) {
      return candidate;
    }
    start = end + 1;
  }
  return "";
}

// "2026-11-26T18:16:45.000Z" or "2026-11-26T18:16:45Z" -> unix seconds; 0 if unreadable.
int64_t unixOf(const std::string& iso) {
  std::tm tm{};
  if (iso.size() < 19 ||
      ::strptime(iso.substr(0, 19).c_str(), "%Y-%m-%dT%H:%M:%S", &tm) == nullptr) {
    return 0;
  }
  return static_cast<int64_t>(::timegm(&tm));
}

bool waitFor(const std::function<bool()>& pred, std::chrono::milliseconds limit) {
  auto deadline = SteadyClock::now() + limit;
  while (!pred()) {
    if (SteadyClock::now() >= deadline) {
      return false;
    }
    std::this_thread::sleep_for(200ms);
  }
  return true;
}

size_t count(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) {
    ++n;
  }
  return n;
}

// prometheus-alertmanager on 127.0.0.1:port, routing everything to a webhook; every start()
// gets a fresh storage directory (a restart after a crash, nothing remembered).
class RealAlertmanager {
 public:
  // Served over https with HTTP basic authentication (--web.config.file): the certificate and
  // key files, the CA that signed it, the one user and its password.
  struct Web {
    std::string cert_file, key_file, ca_file;
    std::string user, password;
  };

  RealAlertmanager(std::string binary, std::string dir, uint16_t webhook_port,
                   std::optional<Web> web = std::nullopt)
      : binary_(std::move(binary)),
        dir_(std::move(dir)),
        webhook_port_(webhook_port),
        web_(std::move(web)) {}
  ~RealAlertmanager() { stop(); }

  uint16_t port() const { return port_; }

  // Starts it and waits for /-/ready; the same port as before once one was chosen.
  bool start(std::string* error) {
    const std::string config = dir_ + "/alertmanager.yml";
    std::ofstream(config) << "route:\n"
                             "  receiver: hook\n"
                             "  group_by: [alertname, profile, direction, reason]\n"
                             "  group_wait: 1s\n"
                             "  group_interval: 1s\n"
                             "  repeat_interval: 1h\n"
                             "receivers:\n"
                             "  - name: hook\n"
                             "    webhook_configs:\n"
                             "      - url: http://127.0.0.1:"
                          << webhook_port_ << "/hook\n        send_resolved: true\n";
    std::vector<std::string> extra;
    if (web_) {
      const std::string web_config = dir_ + "/web.yml";
      std::ofstream(web_config) << "tls_server_config:\n  cert_file: " << web_->cert_file
                                << "\n  key_file: " << web_->key_file << "\nbasic_auth_users:\n  "
                                << web_->user << ": " << bcrypt(web_->password) << "\n";
      extra.push_back("--web.config.file=" + web_config);
    }
    bool fixed = port_ != 0;
    for (int attempt = 0; attempt < 3; ++attempt) {
      if (!fixed) {
        port_ = testing::freeLoopbackPort();
      }
      const std::string storage = dir_ + "/data-" + std::to_string(++starts_);
      std::vector<std::string> argv{binary_,
                                    "--config.file=" + config,
                                    "--storage.path=" + storage,
                                    "--web.listen-address=127.0.0.1:" + std::to_string(port_),
                                    "--cluster.listen-address=",
                                    "--log.level=warn"};
      argv.insert(argv.end(), extra.begin(), extra.end());
      process_ =
          std::make_unique<Subprocess>(argv, std::vector<std::string>{},
                                       dir_ + "/alertmanager-" + std::to_string(starts_) + ".log");
      bool ready =
          waitFor([&] { return !process_->running() || get("/-/ready").has_value(); }, 15s);
      if (ready && process_->running()) {
        return true;
      }
      *error = "alertmanager did not start on 127.0.0.1:" + std::to_string(port_) + ":\n" +
               process_->output();
      stop();
      if (fixed) {
        break;  // the port must stay the same: the daemon's config names it
      }
    }
    return false;
  }

  void stop() {
    if (process_ && process_->running()) {
      process_->signal(SIGTERM);
      if (!process_->wait(5s)) {
        process_->signal(SIGKILL);
        process_->wait(5s);
      }
    }
    process_.reset();
  }

  // GET `path`: the body of a 200 answer; nullopt otherwise. Over https with the user's
  // credentials, curl does it.
  std::optional<std::string> get(const std::string& path) const {
    if (!web_) {
      testing::HttpReply r = httpGet(port_, path, 2s);
      return r.status == 200 ? std::optional(r.body) : std::nullopt;
    }
    Subprocess curl(
        {"/bin/sh", "-c",
         "exec curl -sS --fail --max-time 5 --cacert \"$AM_CA\" -u \"$AM_USER:$AM_PASS\" "
         "https://127.0.0.1:" +
             std::to_string(port_) + path},
        {"AM_CA=" + web_->ca_file, "AM_USER=" + web_->user, "AM_PASS=" + web_->password},
        dir_ + "/curl.out");
    return curl.wait(10s) == 0 ? std::optional(curl.output()) : std::nullopt;
  }

  // GET /api/v2/alerts (active ones; Alertmanager drops resolved alerts from it).
  json alerts() const {
    json j = json::parse(get("/api/v2/alerts").value_or(""), nullptr, false);
    return j.is_array() ? j : json::array();
  }

  // Those of our rule for `profile`, by direction.
  std::map<std::string, json> clientAlerts(const std::string& profile) const {
    std::map<std::string, json> out;
    for (const json& a : alerts()) {
      if (a["labels"].value("alertname", "") == kClientAlertName &&
          a["labels"].value("profile", "") == profile) {
        out[a["labels"].value("direction", "")] = a;
      }
    }
    return out;
  }

  std::string logs() const { return process_ ? process_->output() : std::string(); }

 private:
  // Alertmanager's basic_auth_users want a bcrypt hash (libxcrypt's $2b$, cost 4: a test).
  static std::string bcrypt(const std::string& password) {
    char salt[CRYPT_GENSALT_OUTPUT_SIZE];
    crypt_data data{};
    if (crypt_gensalt_rn("$2b$", 4, nullptr, 0, salt, sizeof salt) == nullptr) {
      ADD_FAILURE() << "crypt_gensalt_rn: no bcrypt in libcrypt";
      return "";
    }
    const char* hash = crypt_r(password.c_str(), salt, &data);
    return hash != nullptr && hash[0] == '$' ? hash : "";
  }

  std::string binary_;
  std::string dir_;
  uint16_t webhook_port_;
  std::optional<Web> web_;
  uint16_t port_ = 0;
  int starts_ = 0;
  std::unique_ptr<Subprocess> process_;
};

// The webhook notifications Alertmanager sent: (status of the alert, direction) -> the alert.
std::multimap<std::pair<std::string, std::string>, json> notifications(
    const testing::HttpListener& hook) {
  std::multimap<std::pair<std::string, std::string>, json> out;
  for (const std::string& body : hook.bodies()) {
    json n = json::parse(body, nullptr, false);
    if (n.is_discarded()) {
      continue;
    }
    for (const json& a : n["alerts"]) {
      out.emplace(std::pair(a.value("status", ""), a["labels"].value("direction", "")), a);
    }
  }
  return out;
}

// Whether the webhook has had `status` ("firing", "resolved") for both directions.
bool notifiedBoth(const testing::HttpListener& hook, const std::string& status) {
  auto n = notifications(hook);
  return n.count({status, "incoming"}) > 0 && n.count({status, "outgoing"}) > 0;
}

// The value of one series in /metrics text; -1 if absent.
double metricValue(const std::string& text, const std::string& series) {
  size_t at = text.find("\n" + series + " ");
  return at == std::string::npos ? -1 : std::stod(text.substr(at + series.size() + 2));
}

class AlertmanagerPushTest : public testing::MailEnvSuite {
 protected:
  void SetUp() override {
    MailEnvSuite::SetUp();
    if (IsSkipped() || HasFatalFailure()) {
      return;
    }
    binary_ = findOnPath("prometheus-alertmanager");
    if (binary_.empty()) {
      GTEST_SKIP() << "prometheus-alertmanager is not installed (tests/deps.sh installs it): "
                      "the push is tested against a real Alertmanager only";
    }
  }

  // [alertmanager] pushing to 127.0.0.1:port as `user:password`, resent every 3 s, with
  // `extra` lines.
  static std::string pushTo(uint16_t port, const std::string& scheme = "http",
                            const std::string& password = kPassword,
                            const std::string& extra = "timeout = \"2s\"\n") {
    return "[alertmanager]\nurls = [\"" + scheme + "://pusher:" + password +
           "@127.0.0.1:" + std::to_string(port) +
           "\"]\nresend_interval = \"3s\"\nlabels = { team = \"mail\" }\n" + extra + "\n";
  }

  // The daemon's config: the platform on `address`, Thunderbird and the guide's Android setup,
  // and `alertmanager` (pushTo(), or "" for no push).
  std::string config(uint16_t listen_port, const std::string& address,
                     const std::string& alertmanager) const {
    std::vector<ClientProfile> profiles{*findBuiltinProfile("android-guide"),
                                        *findBuiltinProfile("thunderbird")};
    std::string t =
        "[daemon]\nlisten = \"127.0.0.1:" + std::to_string(listen_port) + "\"\n\n" + alertmanager;
    return t +
           testing::platformConfigToml(
               *env(), address, "interval = \"2s\"\ntimeout = \"10s\"\nphase_timeout = \"3s\"\n") +
           "\n[profiles]\ndisable = [\"ios-mail\", \"outlook\", \"legacy-tls10\"]\n" +
           testing::profilesToml(*env(), profiles);
  }

  std::string binary_;
};

TEST_F(AlertmanagerPushTest, AFailingClientFiresComesBackAfterARestartAndResolves) {
  testing::TempDir dir;
  testing::HttpListener hook(testing::HttpListener::Mode::Answer,
                             "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
  RealAlertmanager am(binary_, dir.path(), hook.port());
  std::string error;
  ASSERT_TRUE(am.start(&error)) << error;

  const uint16_t port = testing::freeLoopbackPort();
  const std::string path = dir.path() + "/mailprobed.toml";
  std::ofstream(path) << config(port, env()->value("EXPIRED_IP"), pushTo(am.port()));
  ::chmod(path.c_str(), 0600);
  Subprocess daemon({MAILPROBED_BIN, "run", "--config", path}, {}, dir.path() + "/mailprobed.log");
  ASSERT_TRUE(daemon.started());

  // 1. Thunderbird fails both ways with cert_expired; the guide's phones work.
  json status;
  auto judged = [](const json& j) {
    if (!j.contains("profiles") || j["profiles"].size() != 4) {
      return false;
    }
    for (const auto& v : j["profiles"]) {
      if (!v["known"].get<bool>()) {
        return false;
      }
    }
    return true;
  };
  ASSERT_TRUE(testing::waitForStatusJson(port, judged, 30s, &status))
      << status.dump(2) << daemon.output();
  std::map<std::string, json> verdicts;  // thunderbird's, by direction
  for (const auto& v : status["profiles"]) {
    if (v["profile"] == "thunderbird") {
      ASSERT_FALSE(v["ok"].get<bool>()) << v.dump();
      ASSERT_EQ(v["reason"], "cert_expired") << v.dump();
      verdicts[v["direction"]] = v;
    } else {
      ASSERT_TRUE(v["ok"].get<bool>()) << v.dump();
    }
  }
  ASSERT_EQ(verdicts.size(), 2u);

  // 2. In Alertmanager: one alert per direction, as the README says.
  std::map<std::string, json> firing;
  ASSERT_TRUE(waitFor([&] { return (firing = am.clientAlerts("thunderbird")).size() == 2; }, 20s))
      << am.alerts().dump(2) << daemon.output() << am.logs();
  for (const auto& [direction, alert] : firing) {
    SCOPED_TRACE(direction);
    const std::map<std::string, std::string> labels{{"alertname", "MailClientConfigFailing"},
                                                    {"profile", "thunderbird"},
                                                    {"direction", direction},
                                                    {"reason", "cert_expired"},
                                                    {"severity", "critical"},
                                                    {"instance", localHostName()},
                                                    {"job", "mailprobed"},
                                                    {"team", "mail"}};
    EXPECT_EQ((alert["labels"].get<std::map<std::string, std::string>>()), labels);
    const std::map<std::string, std::string> annotations{
        {"summary", std::string("thunderbird clients cannot ") +
                        (direction == "incoming" ? "read" : "send") + " mail"},
        {"description", verdicts[direction]["sentence"]},
        {"runbook_url", kClientAlertRunbook}};
    EXPECT_EQ((alert["annotations"].get<std::map<std::string, std::string>>()), annotations);
    EXPECT_EQ(unixOf(alert["startsAt"]), unixOf(verdicts[direction]["since"]));
    EXPECT_GT(unixOf(alert["endsAt"]), unixOf(alert["startsAt"]));
    EXPECT_EQ(alert["status"]["state"], "active");
  }
  EXPECT_TRUE(am.clientAlerts("android-guide").empty());
  // Alertmanager notified on-call (its webhook here), once per group.
  ASSERT_TRUE(waitFor([&] { return notifiedBoth(hook, "firing"); }, 15s))
      << hook.bodies().size() << " notifications\n"
      << am.logs();

  // 3. Alertmanager goes away for two resend intervals and comes back empty: the alerts are
  // there again within an interval; the daemon said so once, not once per failed push.
  am.stop();
  std::this_thread::sleep_for(7s);
  ASSERT_TRUE(am.start(&error)) << error;
  EXPECT_TRUE(waitFor([&] { return am.clientAlerts("thunderbird").size() == 2; }, 10s))
      << am.alerts().dump(2) << daemon.output();
  std::string log = daemon.output();
  EXPECT_EQ(count(log, "cannot push alerts: connect_failed"), 1u) << log;
  EXPECT_EQ(count(log, "alerts pushed again"), 1u) << log;
  const std::string url = "http://***@127.0.0.1:" + std::to_string(am.port());
  testing::HttpReply metrics = httpGet(port, "/metrics");
  ASSERT_EQ(metrics.status, 200);
  EXPECT_GE(metricValue(metrics.body, "mailprobe_alertmanager_push_total{alertmanager=\"" + url +
                                          "\",result=\"connect_failed\"}"),
            2)
      << metrics.body;
  EXPECT_GE(metricValue(metrics.body, "mailprobe_alertmanager_push_total{alertmanager=\"" + url +
                                          "\",result=\"ok\"}"),
            2);

  // 4. The valid certificate (a reload): the alerts are resolved, not left to expire.
  int64_t last_firing_end = 0;
  for (const auto& [direction, alert] : am.clientAlerts("thunderbird")) {
    last_firing_end = std::max(last_firing_end, unixOf(alert["endsAt"]));
  }
  std::ofstream(path) << config(port, "127.0.0.1", pushTo(am.port()));
  const int64_t reloaded_at = static_cast<int64_t>(::time(nullptr));
  ASSERT_TRUE(daemon.signal(SIGHUP));
  EXPECT_TRUE(waitFor([&] { return am.clientAlerts("thunderbird").empty(); }, 20s))
      << am.alerts().dump(2) << daemon.output();
  ASSERT_TRUE(waitFor([&] { return notifiedBoth(hook, "resolved"); }, 15s))
      << hook.bodies().size() << " notifications\n"
      << am.logs();
  for (const auto& [key, alert] : notifications(hook)) {
    if (key.first != "resolved") {
      continue;
    }
    SCOPED_TRACE(key.second);
    int64_t ended = unixOf(alert["endsAt"]);
    EXPECT_GE(ended, reloaded_at - 1);
    EXPECT_LT(ended, last_firing_end) << "expired instead of resolved";
    EXPECT_EQ(alert["labels"].value("reason", ""), "cert_expired");
  }
  EXPECT_TRUE(testing::waitForStatusJson(
      port,
      [](const json& j) {
        for (const auto& v : j["profiles"]) {
          if (!v["known"].get<bool>() || !v["ok"].get<bool>()) {
            return false;
          }
        }
        return true;
      },
      30s, &status))
      << status.dump(2);

  // 5. The password shows nowhere.
  for (const char* where : {"/metrics", "/status.json", "/"}) {
    EXPECT_EQ(httpGet(port, where).body.find(kPassword), std::string::npos) << where;
  }
  log = daemon.output();
  EXPECT_EQ(log.find(kPassword), std::string::npos) << log;
  EXPECT_NE(log.find("client alerts pushed to " + url), std::string::npos) << log;

  // 6. A reload without [alertmanager] stops the push; the stop is as prompt as ever.
  std::ofstream(path) << config(port, "127.0.0.1", "");
  ASSERT_TRUE(daemon.signal(SIGHUP));
  EXPECT_TRUE(waitFor(
      [&] { return daemon.output().find("alerts are no longer pushed") != std::string::npos; },
      10s))
      << daemon.output();
  ASSERT_TRUE(daemon.signal(SIGTERM));
  std::optional<int> code = daemon.wait(6s);
  ASSERT_TRUE(code.has_value()) << "the daemon did not stop within 6 s";
  EXPECT_EQ(*code, 0) << daemon.output();
}

// An Alertmanager that accepts and never answers (hung), with a push timeout of 30 s: the
// probes go on at their pace meanwhile, and the daemon stops cleanly (exit 0, not its 5 s stop
// bound) with the push still in flight.
TEST_F(AlertmanagerPushTest, AHungAlertmanagerDelaysNothing) {
  testing::TempDir dir;
  testing::HttpListener hung(testing::HttpListener::Mode::Silent, "");
  const uint16_t port = testing::freeLoopbackPort();
  const std::string path = dir.path() + "/mailprobed.toml";
  std::ofstream(path) << config(port, env()->value("EXPIRED_IP"),
                                pushTo(hung.port(), "http", kPassword, "timeout = \"30s\"\n"));
  ::chmod(path.c_str(), 0600);
  Subprocess daemon({MAILPROBED_BIN, "run", "--config", path}, {}, dir.path() + "/mailprobed.log");
  ASSERT_TRUE(daemon.started());
  // Thunderbird fails: a push starts, and hangs.
  ASSERT_TRUE(waitFor([&] { return hung.openConnections() == 1; }, 30s)) << daemon.output();
  // The loop keeps its pace and the probes go on (every 2 s).
  json before, after;
  ASSERT_TRUE(testing::waitForStatusJson(
      port, [](const json&) { return true; }, 5s, &before));
  std::this_thread::sleep_for(5s);
  ASSERT_TRUE(testing::waitForStatusJson(
      port, [](const json&) { return true; }, 5s, &after));
  EXPECT_LT(after["daemon"]["loop_lag_seconds"].get<double>(), 0.5) << after["daemon"].dump();
  ASSERT_EQ(before["endpoint_states"].size(), after["endpoint_states"].size());
  for (size_t i = 0; i < after["endpoint_states"].size(); ++i) {
    EXPECT_GE(after["endpoint_states"][i]["runs_total"].get<int>(),
              before["endpoint_states"][i]["runs_total"].get<int>() + 1)
        << after["endpoint_states"][i].dump();
  }
  // Still the one push in flight: the changes and resends meanwhile did not pile up.
  EXPECT_EQ(hung.connections(), 1);
  EXPECT_EQ(hung.openConnections(), 1);
  ASSERT_TRUE(daemon.signal(SIGTERM));
  std::optional<int> code = daemon.wait(6s);
  ASSERT_TRUE(code.has_value()) << "the daemon did not stop within 6 s";
  EXPECT_EQ(*code, 0) << "the stop bound forced the exit\n" << daemon.output();
  EXPECT_EQ(daemon.output().find("stop took too long"), std::string::npos);
  EXPECT_TRUE(waitFor([&] { return hung.openConnections() == 0; }, 2s));
}

// Alertmanager over https with basic authentication (--web.config.file), as one runs it
// exposed: without the CA that signed its certificate, nothing is sent (tls_failed); with the
// CA and a wrong password, Alertmanager answers 401 (http_error); with the right one, the alerts
// arrive. Neither password shows anywhere.
TEST_F(AlertmanagerPushTest, HttpsWithBasicAuthSendsOnlyToAVerifiedServerWithTheRightPassword) {
  testing::TempDir dir;
  testing::KeyCert ca = testing::makeSelfSigned({.is_ca = true, .common_name = "alertmanager CA"});
  testing::KeyCert leaf = testing::makeSigned({.ip_addresses = {"127.0.0.1"}}, ca);
  RealAlertmanager::Web web{.cert_file = dir.write("am-cert.pem", leaf.cert_pem),
                            .key_file = dir.write("am-key.pem", leaf.key_pem),
                            .ca_file = dir.write("ca.pem", ca.cert_pem),
                            .user = "pusher",
                            .password = kPassword};
  testing::HttpListener hook(testing::HttpListener::Mode::Answer,
                             "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
  RealAlertmanager am(binary_, dir.path(), hook.port(), web);
  std::string error;
  ASSERT_TRUE(am.start(&error)) << error;

  const uint16_t port = testing::freeLoopbackPort();
  const std::string path = dir.path() + "/mailprobed.toml";
  const std::string wrong = "Wrong-pw-4Kd9-s3cr3t";
  auto write = [&](const std::string& alertmanager) {
    std::ofstream(path) << config(port, env()->value("EXPIRED_IP"), alertmanager);
    ::chmod(path.c_str(), 0600);
  };
  const std::string url = "https://***@127.0.0.1:" + std::to_string(am.port());
  auto pushes = [&](const std::string& result) {
    return metricValue(httpGet(port, "/metrics").body,
                       "mailprobe_alertmanager_push_total{alertmanager=\"" + url + "\",result=\"" +
                           result + "\"}");
  };

  // 1. The system store does not know the test CA.
  write(pushTo(am.port(), "https"));
  Subprocess daemon({MAILPROBED_BIN, "run", "--config", path}, {}, dir.path() + "/mailprobed.log");
  ASSERT_TRUE(daemon.started());
  ASSERT_TRUE(waitFor([&] { return pushes("tls_failed") >= 1; }, 30s)) << daemon.output();
  EXPECT_NE(daemon.output().find("cannot push alerts: tls_failed: the certificate of 127.0.0.1:" +
                                 std::to_string(am.port()) + " does not verify"),
            std::string::npos)
      << daemon.output();
  EXPECT_TRUE(am.alerts().empty());

  // 2. The CA, a wrong password: 401.
  write(pushTo(am.port(), "https", wrong, "timeout = \"2s\"\nca_file = \"" + web.ca_file + "\"\n"));
  ASSERT_TRUE(daemon.signal(SIGHUP));
  ASSERT_TRUE(waitFor([&] { return pushes("http_error") >= 1; }, 15s)) << daemon.output();
  EXPECT_NE(daemon.output().find("cannot push alerts: http_error: HTTP 401"), std::string::npos)
      << daemon.output();
  EXPECT_TRUE(am.alerts().empty());

  // 3. The right password: the alerts arrive.
  write(pushTo(am.port(), "https", kPassword,
               "timeout = \"2s\"\nca_file = \"" + web.ca_file + "\"\n"));
  ASSERT_TRUE(daemon.signal(SIGHUP));
  EXPECT_TRUE(waitFor([&] { return am.clientAlerts("thunderbird").size() == 2; }, 15s))
      << am.alerts().dump(2) << daemon.output() << am.logs();
  // The answer is counted (the metric follows within a publish, 1 s).
  EXPECT_TRUE(waitFor([&] { return pushes("ok") >= 1; }, 5s)) << daemon.output();
  EXPECT_NE(daemon.output().find("alerts pushed again"), std::string::npos) << daemon.output();

  for (const std::string& secret : {kPassword, wrong}) {
    for (const char* where : {"/metrics", "/status.json", "/"}) {
      EXPECT_EQ(httpGet(port, where).body.find(secret), std::string::npos) << where;
    }
    EXPECT_EQ(daemon.output().find(secret), std::string::npos) << daemon.output();
  }
  ASSERT_TRUE(daemon.signal(SIGTERM));
  std::optional<int> code = daemon.wait(6s);
  ASSERT_TRUE(code.has_value()) << "the daemon did not stop within 6 s";
  EXPECT_EQ(*code, 0) << daemon.output();
}

}  // namespace
}  // namespace mailprobe
