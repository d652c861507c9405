// Alerts pushed to Alertmanager, without a socket: the URL (credentials never shown), the JSON
// payload of POST /api/v2/alerts (escaping, labels, times), the book of firing and resolved
// alerts over time, and [alertmanager] in the config with its errors at file:line:col.

#include "daemon/alertmanager.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>

#include "daemon/config.h"

namespace mailprobe {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;

const std::string kSecret = "Pw-9f3kQ-s3cr3t";

// ---------------------------------------------------------------------------------------------
// The URL.

TEST(AlertmanagerUrl, ParsesSchemeHostPortAndBasePath) {
  struct Case {
    const char* text;
    bool https;
    const char* host;
    uint16_t port;
    const char* path;
    const char* redacted;
  };
  const Case cases[] = {
      {"http://127.0.0.1:9093", false, "127.0.0.1", 9093, "", "http://127.0.0.1:9093"},
      {"http://127.0.0.1:9093/", false, "127.0.0.1", 9093, "", "http://127.0.0.1:9093"},
      {"HTTPS://am.example.org", true, "am.example.org", 443, "", "https://am.example.org:443"},
      {"http://am.example.org", false, "am.example.org", 80, "", "http://am.example.org:80"},
      {"http://[::1]:9093/alertmanager/", false, "::1", 9093, "/alertmanager",
       "http://[::1]:9093/alertmanager"},
      {"https://[2001:db8::1]", true, "2001:db8::1", 443, "", "https://[2001:db8::1]:443"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.text);
    std::string error;
    auto url = parseAlertmanagerUrl(c.text, &error);
    ASSERT_TRUE(url) << error;
    EXPECT_EQ(url->https, c.https);
    EXPECT_EQ(url->host, c.host);
    EXPECT_EQ(url->port, c.port);
    EXPECT_EQ(url->path, c.path);
    EXPECT_EQ(url->redacted(), c.redacted);
    EXPECT_EQ(url->alertsPath(), std::string(c.path) + "/api/v2/alerts");
    EXPECT_FALSE(url->hasCredentials());
    EXPECT_EQ(url->authorization(), "");
  }
}

TEST(AlertmanagerUrl, CredentialsAreDecodedSentAsBasicAuthAndNeverShown) {
  std::string error;
  auto url = parseAlertmanagerUrl("http://push%40ops:" + kSecret + "%2F%3A@127.0.0.1:9093", &error);
  ASSERT_TRUE(url) << error;
  EXPECT_EQ(url->user, "push@ops");
  EXPECT_EQ(url->password, kSecret + "/:");
  EXPECT_EQ(url->redacted(), "http://***@127.0.0.1:9093");
  // RFC 7617: base64 of "user:password".
  EXPECT_EQ(url->authorization(), "Basic cHVzaEBvcHM6UHctOWYza1EtczNjcjN0Lzo=");
  EXPECT_EQ(url->hostHeader(), "127.0.0.1:9093");

  // A user alone is credentials too; the user name is hidden as well.
  url = parseAlertmanagerUrl("http://pusher@am.example.org:9093", &error);
  ASSERT_TRUE(url) << error;
  EXPECT_EQ(url->authorization(), "Basic cHVzaGVyOg==");
  EXPECT_EQ(url->redacted(), "http://***@am.example.org:9093");
}

TEST(AlertmanagerUrl, EachMistakeSaysWhatIsWrongWithoutTheCredentials) {
  const std::pair<std::string, std::string> cases[] = {
      {"127.0.0.1:9093", "\"127.0.0.1:9093\" is not an http:// or https:// URL"},
      {"ftp://127.0.0.1", "\"ftp://127.0.0.1\" is not an http:// or https:// URL"},
      {"http://127.0.0.1:9093/?x=1",
       "\"http://127.0.0.1:9093/?x=1\": an Alertmanager URL has no query or fragment"},
      {"http://:9093", "\"http://:9093\": no host"},
      {"http://am example.org:9093",
       "\"http://am example.org:9093\": \"am example.org\" is not a host name or IP address (an "
       "IPv6 address goes in brackets, as in http://[::1]:9093)"},
      {"http://::1:9093",
       "\"http://::1:9093\": \"::1\" is not a host name or IP address (an IPv6 address goes in "
       "brackets, as in http://[::1]:9093)"},
      {"http://[::g]:9093",
       "\"http://[::g]:9093\": the address in brackets is not an IPv6 address"},
      {"http://[::1]9093", "\"http://[::1]9093\": expected ':port' after the IPv6 address"},
      {"http://127.0.0.1:99999",
       "\"http://127.0.0.1:99999\": the port must be a number from 1 to 65535"},
      {"http://127.0.0.1:", "\"http://127.0.0.1:\": the port must be a number from 1 to 65535"},
      {"http://127.0.0.1:9093/api/v2/alerts",
       "\"http://127.0.0.1:9093/api/v2/alerts\": give the Alertmanager's base URL, as in "
       "\"http://127.0.0.1:9093\"; /api/v2/alerts is added to it"},
      {"http://127.0.0.1:9093/a b",
       "\"http://127.0.0.1:9093/a b\": the path holds characters a URL cannot carry "
       "(percent-encode them)"},
      {"http://127.0.0.1:9093/a\r\nX-Injected: 1",
       "\"http://127.0.0.1:9093/a\\u000D\\u000AX-Injected: 1\": the path holds characters a URL "
       "cannot carry (percent-encode them)"},
      // With credentials: the message shows "***" where they were.
      {"http://u:" + kSecret + " x@127.0.0.1:9093",
       "\"http://***@127.0.0.1:9093\": the user or password is not valid in a URL "
       "(percent-encode it: '@' as %40, '/' as %2F, ':' in the user as %3A)"},
      {"http://u:" + kSecret + "%zz@127.0.0.1:9093",
       "\"http://***@127.0.0.1:9093\": the user or password is not valid in a URL "
       "(percent-encode it: '@' as %40, '/' as %2F, ':' in the user as %3A)"},
      {"http://:" + kSecret + "@127.0.0.1:9093",
       "\"http://***@127.0.0.1:9093\": credentials without a user name"},
      // An unencoded '/' in the password ends the authority early: still hidden.
      {"http://u:" + kSecret + "/x@127.0.0.1:9093",
       "\"http://***@127.0.0.1:9093\": the port must be a number from 1 to 65535"},
      {"u:" + kSecret + "@127.0.0.1:9093",
       "\"***@127.0.0.1:9093\" is not an http:// or https:// URL"},
  };
  for (const auto& [text, expected] : cases) {
    SCOPED_TRACE(text);
    std::string error;
    EXPECT_FALSE(parseAlertmanagerUrl(text, &error));
    EXPECT_EQ(error, expected);
    EXPECT_EQ(error.find(kSecret), std::string::npos);
  }
}

// ---------------------------------------------------------------------------------------------
// The payload.

Verdict failing(const std::string& profile, Direction d, FailureReason reason, int64_t since,
                int64_t now) {
  Verdict v;
  v.profile = profile;
  v.direction = d;
  v.known = true;
  v.ok = false;
  v.reason = reason;
  v.phase = Phase::Auth;
  v.explanation = "smtp 465 (tls) refuses AUTH PLAIN";
  v.judged_at = now;
  v.since = since;
  v.sentence = sentenceFor(v, since);
  return v;
}

Verdict working(const std::string& profile, Direction d, int64_t now) {
  Verdict v;
  v.profile = profile;
  v.direction = d;
  v.known = true;
  v.ok = true;
  v.explanation = "smtp 465 (tls) works with AUTH PLAIN";
  v.judged_at = now;
  v.since = now;
  v.sentence = sentenceFor(v, now);
  return v;
}

AlertSettings settings() {
  AlertSettings s;
  s.labels = {{"instance", "probe-1"}, {"job", "mailprobed"}, {"severity", "critical"}};
  s.resend_interval = 60s;
  return s;
}

constexpr int64_t kT0 = 1772331240;  // 2026-03-01T02:14:00Z

TEST(AlertmanagerPayload, TimesAreRfc3339InUtc) {
  EXPECT_EQ(rfc3339(0), "1970-01-01T00:00:00Z");
  EXPECT_EQ(rfc3339(kT0), "2026-03-01T02:14:00Z");
  EXPECT_EQ(rfc3339(kT0 + 86399), "2026-03-02T02:13:59Z");
}

TEST(AlertmanagerPayload, AFailingVerdictIsTheRulesAlertWithItsSentence) {
  Verdict v = failing("android-guide", Direction::Outgoing, FailureReason::AuthMechanismMissing,
                      kT0, kT0 + 300);
  Alert a = clientAlert(v, settings(), kT0 + 300);
  const std::map<std::string, std::string> labels{{"alertname", "MailClientConfigFailing"},
                                                  {"profile", "android-guide"},
                                                  {"direction", "outgoing"},
                                                  {"reason", "auth_mechanism_missing"},
                                                  {"severity", "critical"},
                                                  {"instance", "probe-1"},
                                                  {"job", "mailprobed"}};
  EXPECT_EQ(a.labels, labels);
  EXPECT_EQ(a.annotations.at("summary"), "android-guide clients cannot send mail");
  EXPECT_EQ(a.annotations.at("description"),
            "android-guide cannot send: smtp 465 (tls) refuses AUTH PLAIN since 02:14 UTC");
  EXPECT_EQ(a.annotations.at("runbook_url"), kClientAlertRunbook);
  EXPECT_EQ(a.starts_at, kT0);
  EXPECT_EQ(a.ends_at, kT0 + 300 + 4 * 60);  // four resend intervals ahead

  Verdict in = failing("ios-mail", Direction::Incoming, FailureReason::CertExpired, kT0, kT0);
  EXPECT_EQ(clientAlert(in, settings(), kT0).annotations.at("summary"),
            "ios-mail clients cannot read mail");
}

TEST(AlertmanagerPayload, TheJsonIsAnArrayOfAlertsAsApiV2Reads) {
  Verdict v =
      failing("android-guide", Direction::Outgoing, FailureReason::AuthMechanismMissing, kT0, kT0);
  Alert a = clientAlert(v, settings(), kT0);
  a.annotations["description"] = "quote \" backslash \\ newline \n tab \t bell \x07 é";
  a.labels["site"] = "Zürich";
  std::string body = alertsJson({a});
  json parsed = json::parse(body);
  ASSERT_TRUE(parsed.is_array());
  ASSERT_EQ(parsed.size(), 1u);
  const json& alert = parsed[0];
  std::set<std::string> keys;
  for (const auto& [k, _] : alert.items()) {
    keys.insert(k);
  }
  EXPECT_EQ(keys, (std::set<std::string>{"labels", "annotations", "startsAt", "endsAt"}));
  EXPECT_EQ(alert["startsAt"], "2026-03-01T02:14:00Z");
  EXPECT_EQ(alert["endsAt"], "2026-03-01T02:18:00Z");
  EXPECT_EQ(alert["labels"]["alertname"], "MailClientConfigFailing");
  EXPECT_EQ(alert["labels"]["site"], "Zürich");
  EXPECT_EQ(alert["annotations"]["description"], a.annotations["description"]);
  // Escaped on the wire: one line, no raw control character.
  EXPECT_EQ(body.find('\n'), std::string::npos);
  EXPECT_EQ(body.find('\x07'), std::string::npos);
  EXPECT_NE(body.find("quote \\\" backslash \\\\ newline \\n tab \\t bell \\u0007"),
            std::string::npos)
      << body;

  // Invalid UTF-8 (from a config value, say) is replaced, not thrown.
  a.annotations["description"] = "bad \xff\xfe byte";
  EXPECT_NO_THROW(json::parse(alertsJson({a})));
  EXPECT_EQ(alertsJson({}), "[]");
}

TEST(AlertmanagerPayload, TheRunbookAndAlertNameAreTheRulesOwn) {
  std::ifstream in(std::string(MAILPROBE_SOURCE_DIR) + "/etc/prometheus/mailprobed.rules.yml");
  ASSERT_TRUE(in.good());
  std::stringstream text;
  text << in.rdbuf();
  const std::string rules = text.str();
  size_t at = rules.find(std::string("- alert: ") + kClientAlertName);
  ASSERT_NE(at, std::string::npos) << "no rule named " << kClientAlertName;
  size_t next = rules.find("- alert:", at + 1);
  std::string rule = rules.substr(at, next - at);
  EXPECT_NE(rule.find(std::string("runbook_url: ") + kClientAlertRunbook), std::string::npos)
      << rule;
  EXPECT_NE(rule.find("severity: critical"), std::string::npos) << rule;
}

// ---------------------------------------------------------------------------------------------
// The book.

TEST(AlertBook, AFailureFiresIsResentAndResolvesWhenItWorksAgain) {
  AlertBook book(settings());
  const Verdict ok_out = working("android-guide", Direction::Outgoing, kT0);
  EXPECT_FALSE(book.update({ok_out}, kT0));
  EXPECT_TRUE(book.toSend(kT0).empty());

  Verdict bad =
      failing("android-guide", Direction::Outgoing, FailureReason::AuthFailed, kT0 + 60, kT0 + 60);
  EXPECT_TRUE(book.update({bad}, kT0 + 60));
  std::vector<Alert> sent = book.toSend(kT0 + 60);
  ASSERT_EQ(sent.size(), 1u);
  EXPECT_EQ(sent[0].starts_at, kT0 + 60);
  EXPECT_EQ(sent[0].ends_at, kT0 + 60 + 240);

  // Judged again, unchanged: no push due now; the next resend moves endsAt on.
  bad.judged_at = kT0 + 120;
  EXPECT_FALSE(book.update({bad}, kT0 + 120));
  sent = book.toSend(kT0 + 120);
  ASSERT_EQ(sent.size(), 1u);
  EXPECT_EQ(sent[0].starts_at, kT0 + 60);
  EXPECT_EQ(sent[0].ends_at, kT0 + 120 + 240);

  // Works again: resolved now, sent with endsAt = that moment.
  EXPECT_TRUE(book.update({working("android-guide", Direction::Outgoing, kT0 + 180)}, kT0 + 180));
  EXPECT_EQ(book.firing(), 0u);
  sent = book.toSend(kT0 + 200);
  ASSERT_EQ(sent.size(), 1u);
  EXPECT_EQ(sent[0].starts_at, kT0 + 60);
  EXPECT_EQ(sent[0].ends_at, kT0 + 180);
  EXPECT_EQ(sent[0].labels.at("reason"), "auth_failed");

  // Resolved alerts are sent for 15 minutes (an Alertmanager that restarted hears of them),
  // then forgotten.
  EXPECT_EQ(book.toSend(kT0 + 180 + kResolvedRetentionSeconds).size(), 1u);
  EXPECT_TRUE(book.toSend(kT0 + 181 + kResolvedRetentionSeconds).empty());
  EXPECT_EQ(book.resolved(), 0u);
}

TEST(AlertBook, ANewReasonResolvesTheOldAlertAndFiresANewOne) {
  AlertBook book(settings());
  EXPECT_TRUE(book.update(
      {failing("ios-mail", Direction::Incoming, FailureReason::CertExpired, kT0, kT0)}, kT0));
  EXPECT_TRUE(book.update(
      {failing("ios-mail", Direction::Incoming, FailureReason::ConnectRefused, kT0 + 60, kT0 + 60)},
      kT0 + 60));
  std::vector<Alert> sent = book.toSend(kT0 + 60);
  ASSERT_EQ(sent.size(), 2u);
  std::map<std::string, const Alert*> by_reason;
  for (const Alert& a : sent) {
    by_reason[a.labels.at("reason")] = &a;
  }
  ASSERT_EQ(by_reason.count("cert_expired"), 1u);
  ASSERT_EQ(by_reason.count("connect_refused"), 1u);
  EXPECT_EQ(by_reason["cert_expired"]->ends_at, kT0 + 60);  // resolved
  EXPECT_EQ(by_reason["connect_refused"]->starts_at, kT0 + 60);
  EXPECT_EQ(by_reason["connect_refused"]->ends_at, kT0 + 60 + 240);  // firing
}

TEST(AlertBook, UnknownOrRemovedVerdictsResolveAndARefireStartsAnew) {
  AlertBook book(settings());
  Verdict bad = failing("outlook", Direction::Outgoing, FailureReason::Timeout, kT0, kT0);
  EXPECT_TRUE(book.update({bad}, kT0));
  Verdict unknown = bad;
  unknown.known = false;
  EXPECT_TRUE(book.update({unknown}, kT0 + 10));
  EXPECT_EQ(book.firing(), 0u);
  EXPECT_EQ(book.resolved(), 1u);
  // Failing again: the resolved entry gives way to a firing one.
  bad.since = kT0 + 20;
  EXPECT_TRUE(book.update({bad}, kT0 + 20));
  std::vector<Alert> sent = book.toSend(kT0 + 20);
  ASSERT_EQ(sent.size(), 1u);
  EXPECT_EQ(sent[0].starts_at, kT0 + 20);
  EXPECT_GT(sent[0].ends_at, kT0 + 20);
  // The profile gone from the config: resolved.
  EXPECT_TRUE(book.update({}, kT0 + 30));
  sent = book.toSend(kT0 + 30);
  ASSERT_EQ(sent.size(), 1u);
  EXPECT_EQ(sent[0].ends_at, kT0 + 30);
}

TEST(AlertBook, HoldWaitsBeforeFiringAndNewLabelsReplaceTheOldSet) {
  AlertSettings s = settings();
  s.hold = 5min;
  AlertBook book(s);
  Verdict bad = failing("thunderbird", Direction::Incoming, FailureReason::CertExpired, kT0, kT0);
  EXPECT_FALSE(book.update({bad}, kT0));
  EXPECT_FALSE(book.update({bad}, kT0 + 299));
  EXPECT_TRUE(book.toSend(kT0 + 299).empty());
  EXPECT_TRUE(book.update({bad}, kT0 + 300));
  std::vector<Alert> sent = book.toSend(kT0 + 300);
  ASSERT_EQ(sent.size(), 1u);
  EXPECT_EQ(sent[0].starts_at, kT0);  // since the verdict failed, as Prometheus' activeAt

  // A reload adds a label: the old label set is resolved, the new one fires.
  s.labels["team"] = "mail";
  book.setSettings(s);
  EXPECT_TRUE(book.update({bad}, kT0 + 310));
  sent = book.toSend(kT0 + 310);
  ASSERT_EQ(sent.size(), 2u);
  int resolved = 0;
  for (const Alert& a : sent) {
    if (a.labels.count("team") == 0) {
      ++resolved;
      EXPECT_EQ(a.ends_at, kT0 + 310);
    } else {
      EXPECT_GT(a.ends_at, kT0 + 310);
    }
  }
  EXPECT_EQ(resolved, 1);
}

// ---------------------------------------------------------------------------------------------
// [alertmanager] in the config.

const char* kHost = R"(
[[host]]
name = "mail.example.org"
  [[host.endpoint]]
  service = "imap"
  port = 993
  auth = "none"
)";

LoadResult load(const std::string& alertmanager) {
  return loadConfigFromString(alertmanager + kHost, "am.toml", processEnv(),
                              [](const std::string&) { return std::string(); });
}

std::string errorsOf(const LoadResult& r) {
  std::string out;
  for (const auto& e : r.errors) {
    out += e.format() + "\n";
  }
  return out;
}

TEST(AlertmanagerConfig, AbsentMeansNoPush) {
  LoadResult r = load("");
  ASSERT_TRUE(r.ok()) << errorsOf(r);
  EXPECT_FALSE(r.config->alertmanager.enabled());
}

TEST(AlertmanagerConfig, EveryKeyWithItsDefaults) {
  LoadResult r = load("[alertmanager]\nurls = [\"http://127.0.0.1:9093\"]\n");
  ASSERT_TRUE(r.ok()) << errorsOf(r);
  const AlertmanagerConfig& am = r.config->alertmanager;
  ASSERT_TRUE(am.enabled());
  EXPECT_EQ(am.urls[0].redacted(), "http://127.0.0.1:9093");
  EXPECT_EQ(am.timeout, 10s);
  EXPECT_EQ(am.alerts.resend_interval, 60s);
  EXPECT_EQ(am.alerts.hold, 0s);
  EXPECT_EQ(am.ca_file, "");
  const std::map<std::string, std::string> labels{
      {"instance", localHostName()}, {"job", "mailprobed"}, {"severity", "critical"}};
  EXPECT_EQ(am.alerts.labels, labels);

  r = load(R"([alertmanager]
urls = ["http://127.0.0.1:9093", "https://am2.example.org:9093/am"]
timeout = "3s"
resend_interval = "30s"
for = "5m"
labels = { instance = "mail-monitor", team = "mail", severity = "warning" }
)");
  ASSERT_TRUE(r.ok()) << errorsOf(r);
  const AlertmanagerConfig& two = r.config->alertmanager;
  ASSERT_EQ(two.urls.size(), 2u);
  EXPECT_TRUE(two.urls[1].https);
  EXPECT_EQ(two.timeout, 3s);
  EXPECT_EQ(two.alerts.resend_interval, 30s);
  EXPECT_EQ(two.alerts.hold, 5min);
  const std::map<std::string, std::string> custom{{"instance", "mail-monitor"},
                                                  {"job", "mailprobed"},
                                                  {"severity", "warning"},
                                                  {"team", "mail"}};
  EXPECT_EQ(two.alerts.labels, custom);

  EXPECT_EQ(load("[alertmanager]\nurls = [\"http://a:9093\"]\nfor = 0\n")
                .config->alertmanager.alerts.hold,
            0s);
  EXPECT_EQ(load("[alertmanager]\nurls = [\"http://a:9093\"]\nfor = \"0s\"\n")
                .config->alertmanager.alerts.hold,
            0s);
}

// The commented [alertmanager] example of the reference config, uncommented, loads and writes
// out the built-in defaults.
TEST(AlertmanagerConfig, TheReferenceConfigsExampleLoadsWithTheDefaults) {
  std::ifstream in(std::string(MAILPROBE_SOURCE_DIR) + "/etc/mailprobed.toml");
  ASSERT_TRUE(in.good());
  std::string example;
  bool inside = false;
  for (std::string line; std::getline(in, line);) {
    if (line == "#   [alertmanager]") {
      inside = true;
    } else if (inside && !line.starts_with("#   ")) {
      break;
    }
    if (inside && !line.starts_with("#   #")) {
      example += line.substr(4) + "\n";
    }
  }
  ASSERT_NE(example.find("urls = "), std::string::npos) << example;
  LoadResult r = load(example);
  ASSERT_TRUE(r.ok()) << errorsOf(r) << example;
  const AlertmanagerConfig& am = r.config->alertmanager;
  AlertmanagerConfig defaults;
  EXPECT_EQ(am.timeout, defaults.timeout);
  EXPECT_EQ(am.alerts.resend_interval, defaults.alerts.resend_interval);
  EXPECT_EQ(am.alerts.hold, defaults.alerts.hold);
  EXPECT_EQ(am.ca_file, defaults.ca_file);
  EXPECT_EQ(am.alerts.labels.at("team"), "mail");
  EXPECT_EQ(am.alerts.labels.at("severity"), "critical");
}

TEST(AlertmanagerConfig, EachErrorAtItsPlace) {
  const std::pair<std::string, std::string> cases[] = {
      {"[alertmanager]\ntimeout = \"5s\"\n",
       "am.toml:1:1: [alertmanager]: no urls; say where to push, e.g. urls = "
       "[\"http://127.0.0.1:9093\"]"},
      {"[alertmanager]\nurls = []\n",
       "am.toml:2:8: urls: empty list; remove [alertmanager] to push no alert"},
      {"[alertmanager]\nurls = \"http://127.0.0.1:9093\"\n",
       "am.toml:2:8: urls: expected an array of URLs such as [\"http://127.0.0.1:9093\"], got "
       "string \"http://127.0.0.1:9093\""},
      {"[alertmanager]\nurls = [9093]\n",
       "am.toml:2:9: urls: expected a URL string, got integer 9093"},
      {"[alertmanager]\nurls = [\"http://127.0.0.1:9093\",\n  \"127.0.0.1:9094\"]\n",
       "am.toml:3:3: urls: \"127.0.0.1:9094\" is not an http:// or https:// URL"},
      {"[alertmanager]\nurls = [\"http://127.0.0.1:9093\", \"http://127.0.0.1:9093/\"]\n",
       "am.toml:2:34: urls: \"http://127.0.0.1:9093\" is listed twice"},
      {"[alertmanager]\nurls = [\"http://a:9093\"]\ntimeout = \"0s\"\n",
       "am.toml:3:11: timeout: must be longer than zero, got \"0s\""},
      {"[alertmanager]\nurls = [\"http://a:9093\"]\nresend_interval = \"1x\"\n",
       "am.toml:3:19: resend_interval: \"1x\" is not a duration: write a number and a unit (ms, s, "
       "m, h), e.g. \"30s\" or \"1m30s\""},
      {"[alertmanager]\nurls = [\"http://a:9093\"]\nfor = -1\n",
       "am.toml:3:7: for: must not be negative, got -1"},
      {"[alertmanager]\nurls = [\"http://a:9093\"]\nca_file = \"/nonexistent/ca.pem\"\n",
       "am.toml:3:11: ca_file: cannot read /nonexistent/ca.pem: No such file or directory"},
      {"[alertmanager]\nurls = [\"http://a:9093\"]\nlabels = { \"2team\" = \"x\" }\n",
       "am.toml:3:12: labels: \"2team\" is not a label name (letters, digits and '_', not "
       "starting with a digit or \"__\")"},
      {"[alertmanager]\nurls = [\"http://a:9093\"]\nlabels = { __name__ = \"x\" }\n",
       "am.toml:3:12: labels: \"__name__\" is not a label name (letters, digits and '_', not "
       "starting with a digit or \"__\")"},
      {"[alertmanager]\nurls = [\"http://a:9093\"]\nlabels = { profile = \"x\" }\n",
       "am.toml:3:12: labels: profile is set by mailprobed on each alert; choose another label "
       "name"},
      {"[alertmanager]\nurls = [\"http://a:9093\"]\nlabels = { team = \"\" }\n",
       "am.toml:3:19: labels.team: empty; remove the label instead"},
      {"[alertmanager]\nurls = [\"http://a:9093\"]\nlabels = { team = 1 }\n",
       "am.toml:3:19: labels.team: expected a string, got integer 1"},
      {"[alertmanager]\nurls = [\"http://a:9093\"]\nlabels = \"team\"\n",
       "am.toml:3:10: labels: expected a table of label names and values, such as { team = "
       "\"mail\" }, got string \"team\""},
      {"[alertmanager]\nurl = [\"http://a:9093\"]\n",
       "am.toml:2:1: unknown key 'url' in [alertmanager]; did you mean 'urls'?"},
      {"alertmanager = \"http://a:9093\"\n",
       "am.toml:1:16: alertmanager: expected a table [alertmanager], got string "
       "\"http://a:9093\""},
      {"[alertmanger]\nurls = [\"http://a:9093\"]\n",
       "am.toml:1:2: unknown table [alertmanger]; did you mean [alertmanager]?"},
  };
  for (const auto& [text, expected] : cases) {
    SCOPED_TRACE(text);
    LoadResult r = load(text);
    EXPECT_FALSE(r.ok());
    ASSERT_EQ(r.errors.size(), 1u) << errorsOf(r);
    EXPECT_EQ(r.errors[0].format(), expected);
  }
}

TEST(AlertmanagerConfig, CredentialsInAUrlNeverShowInErrorsOrWarnings) {
  // Loads: the password is kept for the Authorization header only.
  LoadResult ok =
      load("[alertmanager]\nurls = [\"http://pusher:" + kSecret + "@127.0.0.1:9093\"]\n");
  ASSERT_TRUE(ok.ok()) << errorsOf(ok);
  EXPECT_EQ(ok.config->alertmanager.urls[0].password, kSecret);
  for (const auto& w : ok.config->warnings) {
    EXPECT_EQ(w.find(kSecret), std::string::npos) << w;
  }
  // Fails in every way around it.
  const std::string bad[] = {
      "[alertmanager]\nurls = [\"http://pusher:" + kSecret + "@127.0.0.1:99999\"]\n",
      "[alertmanager]\nurls = [\"http://pusher:" + kSecret + " @127.0.0.1:9093\"]\n",
      "[alertmanager]\nurls = [\"http://pusher:" + kSecret + "@127.0.0.1:9093/api/v2/alerts\"]\n",
      "[alertmanager]\nurls = [\"http://pusher:" + kSecret + "@a:1\", \"http://pusher:" + kSecret +
          "@a:1\"]\n",
      "[alertmanager]\nurls = \"http://pusher:" + kSecret + "@127.0.0.1:9093\"\n",  // wrong type
      "[alertmanager]\nurls = [\"http://pusher:" + kSecret + "\\q@127.0.0.1:9093\"]\n",  // syntax
      "[alertmanager]\nurls = [\"http://pusher:" + kSecret + "@127.0.0.1:9093]\n",       // syntax
      "[alertmanager]\nurls = [\"http://pusher:" + kSecret + "@127.0.0.1:9093\"]\nx = 1\n",
  };
  for (const std::string& text : bad) {
    SCOPED_TRACE(text);
    LoadResult r = load(text);
    EXPECT_FALSE(r.ok());
    ASSERT_FALSE(r.errors.empty());
    for (const auto& e : r.errors) {
      EXPECT_EQ(e.format().find(kSecret), std::string::npos) << e.format();
    }
  }
  // A file others can read that holds such a URL gives a warning, without the password.
  char dir_template[] = "/tmp/mailprobe-am-XXXXXX";
  std::string dir = ::mkdtemp(dir_template);
  const std::string path = dir + "/mailprobed.toml";
  std::ofstream(path) << "[alertmanager]\nurls = [\"http://pusher:" + kSecret +
                             "@127.0.0.1:9093\"]\n"
                      << kHost;
  for (mode_t mode : {0600, 0640, 0644}) {
    ::chmod(path.c_str(), mode);
    LoadResult r = loadConfig(path, processEnv(), [](const std::string&) { return std::string(); });
    ASSERT_TRUE(r.ok()) << errorsOf(r);
    if (mode == 0600) {
      EXPECT_TRUE(r.config->warnings.empty());
      continue;
    }
    ASSERT_EQ(r.config->warnings.size(), 1u);
    EXPECT_EQ(
        r.config->warnings[0],
        path + ":2:9: this file holds the password of an Alertmanager URL and is readable by " +
            (mode == 0644 ? "every user (mode 0644)" : "its group (mode 0640)") + "; chmod 600 it");
  }
  std::filesystem::remove_all(dir);

  // Control: a value without credentials is quoted in its error, so the check above can fail.
  LoadResult control = load("[alertmanager]\nurls = [\"http://" + kSecret + "x:1:2\"]\n");
  ASSERT_FALSE(control.errors.empty());
  EXPECT_NE(control.errors[0].format().find(kSecret), std::string::npos);
}

}  // namespace
}  // namespace mailprobe
