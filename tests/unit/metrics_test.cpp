#include "daemon/metrics.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include <prometheus/text_serializer.h>

#include "daemon/process_stats.h"

namespace mailprobe {
namespace {

using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;

constexpr int64_t kNow = 1'800'000'000;

// Strings that only a server or the network could have produced: none may reach the exposition.
const std::vector<std::string> kNeverExported = {
    "DETAIL-SENTINEL",  "SENTENCE-SENTINEL",      "VERIFY-DETAIL-SENTINEL",
    "SUBJECT-SENTINEL", "ISSUER-SENTINEL",        "AUTH-DETAIL-SENTINEL",
    "X-UNKNOWN-MECH",   "CAPA-SENTINEL",          "hunter2-password",
    "192.0.2.10",       "2001:db8::25",           "198.51.100.7",
    "203.0.113.9",      "relay-test@example.com", "BACKOFF-DETAIL-SENTINEL",
};

// One relay cell of mx.example.org 25 from 192.0.2.10.
RelayCell cell(const RelayVantage& v, RelayAuth auth, RelayRecipient recipient,
               RelayVerdict expected, RelayVerdict observed, int code, FailureReason reason) {
  RelayCell c;
  c.host = "mx.example.org";
  c.address = "192.0.2.10";
  c.port = 25;
  c.security = Security::StartTls;
  c.vantage = v.name;
  c.source_address = v.source_address;
  c.trusted = v.trusted;
  c.auth = auth;
  c.recipient = recipient;
  c.expected = expected;
  c.observed = observed;
  c.code = code;
  c.enhanced = code == 250 ? "2.1.5" : "4.7.1";
  c.reason = reason;
  c.detail = "DETAIL-SENTINEL " + std::to_string(code) + " relay-test@example.com";
  c.sentence = "SENTENCE-SENTINEL relay";
  return c;
}

ProbeResult result(const std::string& host, const std::string& address, uint16_t port,
                   Service service, Security security) {
  ProbeResult r;
  r.host = host;
  r.address = address;
  r.port = port;
  r.service = service;
  r.security = security;
  r.success = true;
  r.sentence = "SENTENCE-SENTINEL " + host;
  r.started_at = kNow - 10;
  r.duration_seconds = 0.4;
  r.timings = {{Phase::Connect, 0.01}, {Phase::Greeting, 0.02}};
  r.capabilities_before_tls = {"IMAP4rev1", "CAPA-SENTINEL"};
  return r;
}

TlsFacts goodTls() {
  TlsFacts t;
  t.version = "TLSv1.3";
  t.cipher = "TLS_AES_256_GCM_SHA384";
  t.leaf_not_before = kNow - 86400 * 30;
  t.leaf_not_after = kNow + 86400 * 60;
  t.chain_not_after = kNow + 86400 * 40;
  t.subject = "CN=SUBJECT-SENTINEL";
  t.issuer = "CN=ISSUER-SENTINEL";
  t.accept_all_ok = true;
  return t;
}

// Every kind of series: dual stack with one family down, an expired certificate, AUTH before and
// after TLS, a pending endpoint, a name that does not resolve, every failure reason counted.
Snapshot richSnapshot() {
  Snapshot s;
  s.taken_at = kNow;
  s.daemon.version = "9.9.9";
  s.daemon.start_timestamp = kNow - 3600;
  s.daemon.config_path = "/etc/mailprobed/mailprobed.toml";
  s.daemon.config_last_reload_successful = false;
  s.daemon.config_last_reload_success_timestamp = kNow - 1800;
  s.daemon.config_reloads_total = 3;
  s.daemon.config_reload_failures_total = 1;
  s.daemon.config_last_reload_error = "mailprobed.toml:3:1: unknown key";
  s.daemon.probes_in_flight = 2;
  s.daemon.max_probes_in_flight = 8;
  s.daemon.loop_lag_seconds = 0.002;
  AlertmanagerStats am{.url = "http://***@alertmanager.example.org:9093", .pushes = {}};
  for (PushResult r : kPushResults) {
    am.pushes[r] = 0;
  }
  am.pushes[PushResult::Ok] = 12;
  am.pushes[PushResult::Timeout] = 2;
  s.daemon.alertmanagers.push_back(am);
  for (double delay : {0.0005, 0.003, 0.003, 0.04, 0.3, 12.0, -0.001}) {
    s.daemon.recordScheduleDelay(delay);
  }

  // imap.example.org 993 tls: IPv4 works, IPv6 times out.
  EndpointState imaps{.host = "imap.example.org",
                      .port = 993,
                      .service = Service::Imap,
                      .security = Security::Tls,
                      .interval_seconds = 60};
  ProbeResult v4 = result("imap.example.org", "192.0.2.10", 993, Service::Imap, Security::Tls);
  v4.tls = goodTls();
  v4.timings.push_back({Phase::TlsHandshake, 0.05});
  v4.timings.push_back({Phase::Auth, 0.2});
  v4.auth_after_tls = {"PLAIN", "login", "X-UNKNOWN-MECH"};
  v4.auth = {{"PLAIN", true, FailureReason::None, "AUTH-DETAIL-SENTINEL ok"},
             {"LOGIN", true, FailureReason::None, ""}};
  ProbeResult v6 = result("imap.example.org", "2001:db8::25", 993, Service::Imap, Security::Tls);
  v6.success = false;
  v6.reason = FailureReason::ConnectTimeout;
  v6.phase = Phase::Connect;
  v6.detail = "DETAIL-SENTINEL connect timed out";
  v6.timings = {{Phase::Connect, 5.0}};
  imaps.last = {v4, v6};
  imaps.last_run_timestamp = kNow - 30;
  imaps.last_success_timestamp = kNow - 3600;
  imaps.runs_total = 10;
  for (FailureReason r : allFailureReasons()) {
    if (r != FailureReason::None) {
      imaps.failures_total[r] = 1;
    }
  }
  imaps.duration_buckets = {0, 0, 0, 0, 1, 2, 5, 7, 8, 9, 10, 10};
  imaps.duration_sum = 12.5;

  // smtp.example.org 587 starttls: the certificate has expired; the password is refused.
  EndpointState submission{.host = "smtp.example.org",
                           .port = 587,
                           .service = Service::Smtp,
                           .security = Security::StartTls,
                           .interval_seconds = 60};
  ProbeResult sub =
      result("smtp.example.org", "198.51.100.7", 587, Service::Smtp, Security::StartTls);
  sub.success = false;
  sub.reason = FailureReason::CertExpired;
  sub.phase = Phase::TlsHandshake;
  sub.detail = "DETAIL-SENTINEL 535 5.7.8 hunter2-password rejected";
  sub.tls = goodTls();
  sub.tls->verify = FailureReason::CertExpired;
  sub.tls->verify_detail = "VERIFY-DETAIL-SENTINEL certificate has expired";
  sub.tls->leaf_not_after = kNow - 86400 * 3;
  sub.tls->chain_not_after = kNow - 86400 * 3;
  sub.starttls_offered = true;
  sub.plaintext_login_refused = true;
  sub.auth_before_tls = {"X-UNKNOWN-MECH"};
  sub.auth_after_tls = {"PLAIN", "LOGIN", "CRAM-MD5"};
  sub.auth = {{"PLAIN", false, FailureReason::AuthFailed, "AUTH-DETAIL-SENTINEL 535"}};
  submission.last = {sub};
  submission.last_run_timestamp = kNow - 20;
  submission.runs_total = 4;
  submission.failures_total[FailureReason::CertExpired] = 4;
  submission.duration_buckets = {0, 0, 0, 0, 0, 1, 4, 4, 4, 4, 4, 4};
  submission.duration_sum = 1.6;
  // The probe account is backing off after 3 refused logins.
  std::vector<AuthBackoffState> held, free;
  for (const char* m : {"PLAIN", "LOGIN", "CRAM-MD5"}) {
    held.push_back({m, 240, 3, "BACKOFF-DETAIL-SENTINEL 4m00s"});
  }
  for (const char* m : {"PLAIN", "LOGIN", "CRAM-MD5", "LOGIN-COMMAND"}) {
    free.push_back({m, 0, 0, ""});
  }
  submission.auth_backoff = held;
  imaps.auth_backoff = free;

  // imap.example.org 143 starttls: never run yet.
  EndpointState pending{.host = "imap.example.org",
                        .port = 143,
                        .service = Service::Imap,
                        .security = Security::StartTls,
                        .interval_seconds = 60};
  pending.in_flight = true;

  // gone.example.org 465 tls: the name does not resolve.
  EndpointState gone{.host = "gone.example.org",
                     .port = 465,
                     .service = Service::Smtp,
                     .security = Security::Tls,
                     .interval_seconds = 60};
  ProbeResult nx = result("gone.example.org", "", 465, Service::Smtp, Security::Tls);
  nx.success = false;
  nx.reason = FailureReason::ResolveFailed;
  nx.phase = Phase::Resolve;
  nx.detail = "DETAIL-SENTINEL NXDOMAIN";
  nx.timings = {{Phase::Resolve, 0.03}};
  gone.last = {nx};
  gone.last_run_timestamp = kNow - 5;
  gone.runs_total = 1;
  gone.failures_total[FailureReason::ResolveFailed] = 1;
  gone.duration_buckets = {0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1};
  gone.duration_sum = 0.03;

  s.endpoints = {imaps, submission, pending, gone};

  // mx.example.org 25: an open relay from outside; signed in, the outside recipient is refused.
  const RelayVantage office{"office", "198.51.100.7", true};
  const RelayVantage outside{"outside", "203.0.113.9", false};
  const auto A = RelayVerdict::Accept;
  const auto R = RelayVerdict::Refuse;
  const auto none = RelayAuth::None;
  const auto in = RelayAuth::SignedIn;
  const auto local = RelayRecipient::Local;
  const auto out = RelayRecipient::Outside;
  const auto ok = FailureReason::None;
  RelayState mx{.host = "mx.example.org",
                .port = 25,
                .security = Security::StartTls,
                .interval_seconds = 300,
                .vantages = {office, outside}};
  mx.last = {cell(office, none, local, A, A, 250, ok),
             cell(office, none, out, A, A, 250, ok),
             cell(office, in, local, A, A, 250, ok),
             cell(office, in, out, A, A, 250, ok),
             cell(outside, none, local, A, A, 250, ok),
             cell(outside, none, out, R, A, 250, FailureReason::OpenRelay),
             cell(outside, in, local, A, A, 250, ok),
             cell(outside, in, out, A, R, 454, FailureReason::AuthRelayDenied)};
  mx.last_run_timestamp = kNow - 60;
  mx.runs_total = 3;
  mx.failures_total[FailureReason::OpenRelay] = 2;
  mx.failures_total[FailureReason::AuthRelayDenied] = 1;
  // mx.example.org 587: not run yet.
  RelayState later{.host = "mx.example.org",
                   .port = 587,
                   .security = Security::StartTls,
                   .interval_seconds = 300,
                   .vantages = {office, outside}};
  later.in_flight = true;
  s.relay = {mx, later};

  // Client verdicts: one working, one failing, one the results cannot tell.
  Verdict works;
  works.profile = "android-guide";
  works.direction = Direction::Incoming;
  works.known = true;
  works.ok = true;
  works.since = kNow - 600;
  Verdict fails = works;
  fails.direction = Direction::Outgoing;
  fails.ok = false;
  fails.reason = FailureReason::AuthMechanismMissing;
  fails.phase = Phase::Auth;
  Verdict unknown = works;
  unknown.profile = "legacy-tls10";
  unknown.known = false;
  s.verdicts = {works, fails, unknown};
  return s;
}

std::vector<MetricFamily> allFamilies(const Snapshot& s) {
  auto families = buildMetrics(s);
  auto p = readProcessStats();
  EXPECT_TRUE(p.has_value()) << "/proc/self unreadable";
  if (p) {
    for (auto& f : buildProcessMetrics(*p)) {
      families.push_back(std::move(f));
    }
  }
  return families;
}

const MetricFamily* findFamily(const std::vector<MetricFamily>& families, const std::string& name) {
  for (const auto& f : families) {
    if (f.name == name) {
      return &f;
    }
  }
  return nullptr;
}

std::string labelValue(const ClientMetric& m, const std::string& name) {
  for (const auto& l : m.label) {
    if (l.name == name) {
      return l.value;
    }
  }
  return "<absent>";
}

// Series of `name` whose labels include every pair of `want`.
std::vector<const ClientMetric*> series(const std::vector<MetricFamily>& families,
                                        const std::string& name,
                                        const std::map<std::string, std::string>& want) {
  std::vector<const ClientMetric*> out;
  const MetricFamily* f = findFamily(families, name);
  if (f == nullptr) {
    return out;
  }
  for (const auto& m : f->metric) {
    bool match = true;
    for (const auto& [k, v] : want) {
      match = match && labelValue(m, k) == v;
    }
    if (match) {
      out.push_back(&m);
    }
  }
  return out;
}

double gaugeOf(const std::vector<MetricFamily>& families, const std::string& name,
               const std::map<std::string, std::string>& want) {
  auto found = series(families, name, want);
  EXPECT_EQ(found.size(), 1u) << name;
  return found.size() == 1 ? found[0]->gauge.value : NAN;
}

// name -> type from the README table between the metrics markers.
std::map<std::string, std::string> readmeTable() {
  std::ifstream in(std::string(MAILPROBE_SOURCE_DIR) + "/README.md");
  EXPECT_TRUE(in.good()) << "README.md not found under " << MAILPROBE_SOURCE_DIR;
  std::map<std::string, std::string> out;
  bool inside = false;
  for (std::string line; std::getline(in, line);) {
    if (line.find("<!-- metrics:begin -->") != std::string::npos) {
      inside = true;
      continue;
    }
    if (line.find("<!-- metrics:end -->") != std::string::npos) {
      break;
    }
    if (!inside || line.rfind("| `", 0) != 0) {
      continue;
    }
    const size_t a = 3;
    const size_t b = line.find('`', a);
    const size_t c1 = line.find('|', b);
    const size_t c2 = line.find('|', c1 + 1);
    std::string type = line.substr(c1 + 1, c2 - c1 - 1);
    type.erase(0, type.find_first_not_of(' '));
    type.erase(type.find_last_not_of(' ') + 1);
    out[line.substr(a, b - a)] = type;
  }
  return out;
}

TEST(Metrics, EveryExportedFamilyIsInTheReadmeTableAndBack) {
  const auto families = allFamilies(richSnapshot());
  const auto table = readmeTable();
  ASSERT_FALSE(table.empty()) << "no metric table between the README markers";
  for (const auto& f : families) {
    auto it = table.find(f.name);
    ASSERT_NE(it, table.end()) << f.name << " is exported but missing from README.md's table";
    EXPECT_EQ(it->second, metricTypeName(f.type)) << f.name;
  }
  // And the table documents nothing that is not exported (the rich snapshot shows every family).
  for (const auto& [name, type] : table) {
    EXPECT_NE(findFamily(families, name), nullptr) << name << " is documented but not exported";
  }
}

TEST(Metrics, AuthBackoffIsPerEndpointAndMechanismForEveryEndpointThatLogsIn) {
  const auto families = buildMetrics(richSnapshot());
  const std::string name = "mailprobe_auth_backoff_seconds";
  // 3 SMTP mechanisms on 587 and 4 IMAP ones on 993; nothing where the endpoint never logs in.
  EXPECT_EQ(series(families, name, {}).size(), 7u);
  EXPECT_EQ(gaugeOf(families, name,
                    {{"host", "smtp.example.org"},
                     {"port", "587"},
                     {"service", "smtp"},
                     {"security", "starttls"},
                     {"mechanism", "CRAM-MD5"}}),
            240);
  EXPECT_EQ(
      gaugeOf(families, name,
              {{"host", "imap.example.org"}, {"port", "993"}, {"mechanism", "LOGIN-COMMAND"}}),
      0);
  EXPECT_TRUE(series(families, name, {{"host", "imap.example.org"}, {"port", "143"}}).empty());
  EXPECT_TRUE(series(families, name, {{"host", "gone.example.org"}}).empty());
}

TEST(Metrics, ClientVerdictsAreExportedOnlyWhenKnownWithTheirReason) {
  auto families = buildMetrics(richSnapshot());
  const MetricFamily* ok = findFamily(families, "mailprobe_client_config_ok");
  ASSERT_NE(ok, nullptr);
  ASSERT_EQ(ok->metric.size(), 2u);  // legacy-tls10 is unknown: no series
  std::string text = serializeMetrics(families);
  EXPECT_NE(
      text.find("mailprobe_client_config_ok{profile=\"android-guide\",direction=\"outgoing\"} 0"),
      std::string::npos);
  EXPECT_NE(
      text.find("mailprobe_client_config_ok{profile=\"android-guide\",direction=\"incoming\"} 1"),
      std::string::npos);
  EXPECT_NE(text.find("mailprobe_client_config_failure_info{profile=\"android-guide\",direction="
                      "\"outgoing\",reason=\"auth_mechanism_missing\",phase=\"auth\"} 1"),
            std::string::npos)
      << text;
  EXPECT_EQ(text.find("legacy-tls10"), std::string::npos);
}

TEST(Metrics, FamilyNamesAreUniqueAndEveryFamilyHasHelp) {
  const auto families = allFamilies(richSnapshot());
  std::set<std::string> names;
  for (const auto& f : families) {
    EXPECT_TRUE(names.insert(f.name).second) << "duplicate family " << f.name;
    EXPECT_FALSE(f.help.empty()) << f.name;
    EXPECT_FALSE(f.metric.empty()) << f.name;
    EXPECT_NE(f.name.rfind("exposer_", 0), 0u) << f.name;
    const bool prefixed = f.name.rfind("mailprobe_", 0) == 0 || f.name.rfind("process_", 0) == 0;
    EXPECT_TRUE(prefixed) << f.name;
    const bool total = f.name.size() > 6 && f.name.substr(f.name.size() - 6) == "_total";
    EXPECT_EQ(total, f.type == MetricType::Counter) << f.name;
    for (const auto& m : f.metric) {
      EXPECT_EQ(m.timestamp_ms, 0) << f.name << ": exporters set no sample timestamps";
    }
  }
}

TEST(Metrics, KnownSeriesArePreCreatedBeforeTheFirstRun) {
  const auto families = buildMetrics(richSnapshot());
  const std::map<std::string, std::string> pending = {{"host", "imap.example.org"},
                                                      {"port", "143"}};
  for (FailureReason r : allFailureReasons()) {
    auto found = series(
        families, "mailprobe_endpoint_failures_total",
        {{"host", "imap.example.org"}, {"port", "143"}, {"reason", std::string(toString(r))}});
    if (r == FailureReason::None) {
      EXPECT_TRUE(found.empty()) << "none is not a failure";
      continue;
    }
    ASSERT_EQ(found.size(), 1u) << toString(r);
    EXPECT_EQ(found[0]->counter.value, 0) << toString(r);
  }
  ASSERT_EQ(series(families, "mailprobe_endpoint_runs_total", pending).size(), 1u);
  EXPECT_EQ(series(families, "mailprobe_endpoint_runs_total", pending)[0]->counter.value, 0);
  EXPECT_EQ(series(families, "mailprobe_endpoint_probe_duration_seconds", pending).size(), 1u);
  EXPECT_EQ(gaugeOf(families, "mailprobe_endpoint_last_run_timestamp_seconds", pending), 0);
  EXPECT_EQ(gaugeOf(families, "mailprobe_endpoint_interval_seconds", pending), 60);
  // Nothing is known of the last run yet: no up series rather than a false 0.
  EXPECT_TRUE(series(families, "mailprobe_endpoint_up", pending).empty());
  // The counts of a running endpoint come through.
  EXPECT_EQ(series(families, "mailprobe_endpoint_failures_total",
                   {{"port", "587"}, {"reason", "cert_expired"}})[0]
                ->counter.value,
            4);
}

TEST(Metrics, UpIsPerAddressFamilyAndFailureInfoSaysWhy) {
  const auto families = buildMetrics(richSnapshot());
  EXPECT_EQ(gaugeOf(families, "mailprobe_endpoint_up", {{"port", "993"}, {"family", "ipv4"}}), 1);
  EXPECT_EQ(gaugeOf(families, "mailprobe_endpoint_up", {{"port", "993"}, {"family", "ipv6"}}), 0);
  auto why = series(families, "mailprobe_endpoint_failure_info", {{"port", "993"}});
  ASSERT_EQ(why.size(), 1u);
  EXPECT_EQ(labelValue(*why[0], "family"), "ipv6");
  EXPECT_EQ(labelValue(*why[0], "reason"), "connect_timeout");
  EXPECT_EQ(labelValue(*why[0], "phase"), "connect");
  EXPECT_EQ(gaugeOf(families, "mailprobe_endpoint_phase_duration_seconds",
                    {{"port", "993"}, {"family", "ipv6"}, {"phase", "connect"}}),
            5.0);
  // A name that does not resolve has no address: family "none", still a 0.
  EXPECT_EQ(gaugeOf(families, "mailprobe_endpoint_up", {{"port", "465"}, {"family", "none"}}), 0);
  EXPECT_EQ(labelValue(*series(families, "mailprobe_endpoint_failure_info", {{"port", "465"}})[0],
                       "reason"),
            "resolve_failed");
}

TEST(Metrics, InvalidCertificateStillExportsItsFacts) {
  const auto families = buildMetrics(richSnapshot());
  const std::map<std::string, std::string> sub = {{"port", "587"}, {"family", "ipv4"}};
  EXPECT_EQ(gaugeOf(families, "mailprobe_tls_cert_not_after_timestamp_seconds", sub),
            static_cast<double>(kNow - 86400 * 3));
  EXPECT_EQ(gaugeOf(families, "mailprobe_tls_chain_not_after_timestamp_seconds", sub),
            static_cast<double>(kNow - 86400 * 3));
  EXPECT_EQ(gaugeOf(families, "mailprobe_tls_cert_verify_ok", sub), 0);
  auto info = series(families, "mailprobe_tls_cert_verify_info", sub);
  ASSERT_EQ(info.size(), 1u);
  EXPECT_EQ(labelValue(*info[0], "reason"), "cert_expired");
  EXPECT_EQ(gaugeOf(families, "mailprobe_tls_accept_all_ok", sub), 1);
  EXPECT_EQ(series(families, "mailprobe_tls_info", sub).size(), 1u);
  // And the valid one says so.
  const std::map<std::string, std::string> ok = {{"port", "993"}, {"family", "ipv4"}};
  EXPECT_EQ(gaugeOf(families, "mailprobe_tls_cert_verify_ok", ok), 1);
  EXPECT_EQ(labelValue(*series(families, "mailprobe_tls_cert_verify_info", ok)[0], "reason"),
            "none");
  EXPECT_EQ(gaugeOf(families, "mailprobe_tls_cert_not_after_timestamp_seconds", ok),
            static_cast<double>(kNow + 86400 * 60));
}

TEST(Metrics, AuthMechanismsAreBoundedAndPerStage) {
  const auto families = buildMetrics(richSnapshot());
  EXPECT_EQ(gaugeOf(families, "mailprobe_auth_mechanism_advertised",
                    {{"port", "993"}, {"mechanism", "LOGIN"}, {"stage", "after_tls"}}),
            1);
  EXPECT_EQ(gaugeOf(families, "mailprobe_auth_mechanism_advertised",
                    {{"port", "587"}, {"mechanism", "CRAM-MD5"}, {"stage", "after_tls"}}),
            1);
  // The only mechanism 587 offered before TLS is not in the bounded set: no series at all.
  EXPECT_TRUE(series(families, "mailprobe_auth_mechanism_advertised",
                     {{"port", "587"}, {"stage", "before_tls"}})
                  .empty());
  EXPECT_EQ(gaugeOf(families, "mailprobe_auth_mechanism_success",
                    {{"port", "993"}, {"mechanism", "PLAIN"}}),
            1);
  EXPECT_EQ(gaugeOf(families, "mailprobe_auth_mechanism_success",
                    {{"port", "587"}, {"mechanism", "PLAIN"}}),
            0);
  EXPECT_EQ(gaugeOf(families, "mailprobe_plaintext_login_refused", {{"port", "587"}}), 1);
  EXPECT_TRUE(series(families, "mailprobe_plaintext_login_refused", {{"port", "993"}}).empty());

  EXPECT_EQ(mechanismLabel("plain"), "PLAIN");
  EXPECT_EQ(mechanismLabel("LOGIN-COMMAND"), "LOGIN-COMMAND");
  EXPECT_EQ(mechanismLabel("X-UNKNOWN-MECH"), "");
  EXPECT_EQ(mechanismLabel("PLAIN\"} 1\nevil"), "");
}

TEST(Metrics, NoServerTextAddressOrSecretBecomesALabel) {
  const std::string text = serializeMetrics(buildMetrics(richSnapshot()));
  for (const auto& s : kNeverExported) {
    EXPECT_EQ(text.find(s), std::string::npos) << s << " leaked into the exposition";
  }
  // Every label value is one of the bounded sets or a configured identity.
  const std::set<std::string> identity = {"imap.example.org",
                                          "smtp.example.org",
                                          "gone.example.org",
                                          "993",
                                          "587",
                                          "143",
                                          "465",
                                          "9.9.9",
                                          "mx.example.org",
                                          "25",
                                          "office",
                                          "outside",
                                          "android-guide",
                                          "http://***@alertmanager.example.org:9093"};
  std::set<std::string> bounded(identity);
  for (auto r : kPushResults) {
    bounded.insert(std::string(toString(r)));
  }
  for (auto v : {"imap", "smtp", "none", "starttls", "tls", "ipv4", "ipv6", "before_tls",
                 "after_tls", "TLSv1.3", "TLS_AES_256_GCM_SHA384", "signed_in", "local", "accept",
                 "refuse", "true", "false", "incoming", "outgoing"}) {
    bounded.insert(v);
  }
  for (auto r : allFailureReasons()) {
    bounded.insert(std::string(toString(r)));
  }
  for (auto p : allPhases()) {
    bounded.insert(std::string(toString(p)));
  }
  for (const auto& m : knownMechanisms()) {
    bounded.insert(m);
  }
  for (const auto& f : buildMetrics(richSnapshot())) {
    for (const auto& m : f.metric) {
      for (const auto& l : m.label) {
        EXPECT_TRUE(bounded.count(l.value))
            << f.name << "{" << l.name << "=\"" << l.value << "\"} is not from a bounded set";
      }
    }
  }
}

TEST(Metrics, RelayCellsSayWhatWasExpectedWhatCameAndAnOpenRelayHasItsOwnSeries) {
  const auto f = allFamilies(richSnapshot());
  const std::map<std::string, std::string> mx{{"host", "mx.example.org"}, {"port", "25"}};
  auto with = [&](std::map<std::string, std::string> more) {
    more.insert(mx.begin(), mx.end());
    return more;
  };
  EXPECT_EQ(gaugeOf(f, "mailprobe_relay_open", with({{"vantage", "outside"}})), 1);
  EXPECT_EQ(gaugeOf(f, "mailprobe_relay_open", with({{"vantage", "office"}})), 0);
  EXPECT_EQ(gaugeOf(f, "mailprobe_relay_cell_ok",
                    with({{"vantage", "outside"}, {"auth", "none"}, {"recipient", "outside"}})),
            0);
  EXPECT_EQ(gaugeOf(f, "mailprobe_relay_cell_ok",
                    with({{"vantage", "office"}, {"auth", "none"}, {"recipient", "outside"}})),
            1);
  EXPECT_EQ(gaugeOf(f, "mailprobe_relay_cell_info",
                    with({{"vantage", "outside"},
                          {"auth", "none"},
                          {"recipient", "outside"},
                          {"trusted", "false"},
                          {"expected", "refuse"},
                          {"observed", "accept"},
                          {"reason", "open_relay"}})),
            1);
  EXPECT_EQ(
      gaugeOf(f, "mailprobe_relay_reply_code",
              with({{"vantage", "outside"}, {"auth", "signed_in"}, {"recipient", "outside"}})),
      454);
  EXPECT_EQ(series(f, "mailprobe_relay_cell_ok", mx).size(), 8u);
  auto open_count = series(f, "mailprobe_relay_failures_total", with({{"reason", "open_relay"}}));
  ASSERT_EQ(open_count.size(), 1u);
  EXPECT_EQ(open_count[0]->counter.value, 2);
  EXPECT_EQ(series(f, "mailprobe_relay_failures_total", mx).size(), allFailureReasons().size() - 1);
  // A check that has not run yet: its schedule and counters, no verdict.
  const std::map<std::string, std::string> later{{"host", "mx.example.org"}, {"port", "587"}};
  EXPECT_EQ(gaugeOf(f, "mailprobe_relay_interval_seconds", later), 300);
  EXPECT_EQ(gaugeOf(f, "mailprobe_relay_last_run_timestamp_seconds", later), 0);
  EXPECT_TRUE(series(f, "mailprobe_relay_open", later).empty());
  EXPECT_TRUE(series(f, "mailprobe_relay_cell_ok", later).empty());
}

TEST(Metrics, HistogramIsConsistent) {
  const auto families = buildMetrics(richSnapshot());
  const MetricFamily* h = findFamily(families, "mailprobe_endpoint_probe_duration_seconds");
  ASSERT_NE(h, nullptr);
  EXPECT_EQ(h->type, MetricType::Histogram);
  ASSERT_EQ(h->metric.size(), 4u);
  for (const auto& m : h->metric) {
    const auto& b = m.histogram.bucket;
    ASSERT_EQ(b.size(), kDurationBuckets.size() + 1);
    EXPECT_TRUE(std::isinf(b.back().upper_bound));
    EXPECT_EQ(b.back().cumulative_count, m.histogram.sample_count);
    for (size_t i = 1; i < b.size(); ++i) {
      EXPECT_LE(b[i - 1].cumulative_count, b[i].cumulative_count);
      EXPECT_LT(b[i - 1].upper_bound, b[i].upper_bound);
    }
  }
  // Cumulative counts are passed through as they are, not summed again.
  auto imaps = series(families, "mailprobe_endpoint_probe_duration_seconds", {{"port", "993"}});
  ASSERT_EQ(imaps.size(), 1u);
  EXPECT_EQ(imaps[0]->histogram.bucket[6].cumulative_count, 5u);  // le=0.5
  EXPECT_EQ(imaps[0]->histogram.sample_count, 10u);
  EXPECT_DOUBLE_EQ(imaps[0]->histogram.sample_sum, 12.5);

  // In the text: exactly one +Inf bucket per series, equal to _count.
  const std::string text = serializeMetrics(families);
  std::map<std::string, std::string> inf;
  std::map<std::string, std::string> count;
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);) {
    const std::string prefix = "mailprobe_endpoint_probe_duration_seconds_";
    if (line.rfind(prefix, 0) != 0) {
      continue;
    }
    const std::string value = line.substr(line.rfind(' ') + 1);
    const size_t port = line.find("port=\"");
    const std::string key = line.substr(port, line.find('"', port + 6) - port);
    if (line.find("le=\"+Inf\"") != std::string::npos) {
      EXPECT_TRUE(inf.emplace(key, value).second) << "two +Inf buckets for " << key;
    } else if (line.rfind(prefix + "count", 0) == 0) {
      count[key] = value;
    }
  }
  EXPECT_EQ(inf.size(), 4u);
  EXPECT_EQ(inf, count);
}

TEST(Metrics, DaemonFamiliesComeFromTheSnapshot) {
  const auto families = buildMetrics(richSnapshot());
  EXPECT_EQ(gaugeOf(families, "mailprobe_build_info", {{"version", "9.9.9"}}), 1);
  EXPECT_EQ(gaugeOf(families, "mailprobe_config_last_reload_successful", {}), 0);
  EXPECT_EQ(gaugeOf(families, "mailprobe_probes_in_flight", {}), 2);
  EXPECT_EQ(gaugeOf(families, "mailprobe_probes_in_flight_max", {}), 8);
  EXPECT_EQ(series(families, "mailprobe_config_reload_failures_total", {})[0]->counter.value, 1);
  EXPECT_EQ(series(families, "mailprobe_config_reloads_total", {})[0]->counter.value, 3);
}

// Actual minus planned start of every run: a histogram of its own, a negative delay (a timer
// that fired a hair early on the loop's cached clock) counted as 0.
TEST(Metrics, ScheduleDelayIsAHistogramOfEveryRunStarted) {
  const auto families = buildMetrics(richSnapshot());
  const MetricFamily* f = findFamily(families, "mailprobe_schedule_delay_seconds");
  ASSERT_NE(f, nullptr);
  EXPECT_EQ(f->type, MetricType::Histogram);
  ASSERT_EQ(f->metric.size(), 1u);
  const ClientMetric::Histogram& h = f->metric[0].histogram;
  EXPECT_EQ(h.sample_count, 7u);
  EXPECT_DOUBLE_EQ(h.sample_sum, 0.0005 + 0.003 + 0.003 + 0.04 + 0.3 + 12.0);
  std::map<double, uint64_t> le;
  for (const auto& b : h.bucket) {
    le[b.upper_bound] = b.cumulative_count;
  }
  EXPECT_EQ(le.size(), kScheduleDelayBuckets.size() + 1);
  EXPECT_EQ(le[0.001], 2u);  // 0.0005 and the negative one
  EXPECT_EQ(le[0.005], 4u);
  EXPECT_EQ(le[0.05], 5u);
  EXPECT_EQ(le[0.25], 5u);
  EXPECT_EQ(le[0.5], 6u);
  EXPECT_EQ(le[10], 6u);  // 12 s is past the last bound
  EXPECT_EQ(le[std::numeric_limits<double>::infinity()], 7u);
  const std::string text = serializeMetrics(families);
  EXPECT_NE(text.find("mailprobe_schedule_delay_seconds_bucket{le=\"0.05\"} 5\n"),
            std::string::npos)
      << text.substr(0, 3000);
  EXPECT_NE(text.find("mailprobe_schedule_delay_seconds_count 7\n"), std::string::npos);
}

TEST(Metrics, ProcessStatsComeFromProc) {
  auto p = readProcessStats();
  ASSERT_TRUE(p.has_value());
  EXPECT_GT(p->resident_memory_bytes, 0);
  EXPECT_GE(p->virtual_memory_bytes, p->resident_memory_bytes);
  EXPECT_GE(p->threads, 1);
  EXPECT_GE(p->open_fds, 3);  // at least stdin, stdout, stderr
  EXPECT_GT(p->max_fds, 0);
  EXPECT_GT(p->start_time_seconds, 1.6e9);
  EXPECT_LE(p->start_time_seconds, static_cast<double>(::time(nullptr)) + 1);
}

TEST(Metrics, CollectableServesThePublishedSnapshot) {
  SnapshotCollectable c;
  auto before = c.Collect();
  EXPECT_EQ(findFamily(before, "mailprobe_endpoint_up"), nullptr);
  EXPECT_NE(findFamily(before, "process_cpu_seconds_total"), nullptr);
  c.publish(std::make_shared<const Snapshot>(richSnapshot()));
  auto after = c.Collect();
  EXPECT_NE(findFamily(after, "mailprobe_endpoint_up"), nullptr);
  EXPECT_NE(findFamily(after, "process_cpu_seconds_total"), nullptr);
  EXPECT_EQ(c.current()->taken_at, kNow);
}

// /metrics writes its text straight from the snapshot (renderMetrics); the families the other
// tests look into, serialized by prometheus-cpp itself, must give the same bytes.
TEST(Metrics, DirectTextIsWhatPrometheusCppWritesForTheFamilies) {
  const Snapshot s = richSnapshot();
  const auto families = buildMetrics(s);
  std::ostringstream reference;
  prometheus::TextSerializer().Serialize(reference, families);
  ASSERT_GT(reference.str().size(), 1000u);
  EXPECT_EQ(serializeMetrics(families), reference.str());

  // renderMetrics adds the process_* families, read at its own moment: compare up to them.
  const std::string rendered = renderMetrics(&s);
  const size_t process = rendered.find("# HELP process_");
  ASSERT_NE(process, std::string::npos);
  EXPECT_EQ(rendered.substr(0, process), reference.str());
  EXPECT_NE(rendered.find("\nprocess_resident_memory_bytes "), std::string::npos);
  // Without a snapshot only the process_* series are served.
  EXPECT_EQ(renderMetrics(nullptr).rfind("# HELP process_", 0), 0u);
}

// An endpoint's host, port, service and security are written once per scrape and copied into
// each of its lines: escaped as every other label value.
TEST(Metrics, EndpointLabelsWrittenOnceAreEscapedLikeTheOthers) {
  Snapshot s = richSnapshot();
  s.endpoints.front().host = "q\"uote\\back\nline.example.org";
  std::ostringstream reference;
  prometheus::TextSerializer().Serialize(reference, buildMetrics(s));
  const std::string rendered = renderMetrics(&s);
  EXPECT_EQ(rendered.substr(0, rendered.find("# HELP process_")), reference.str());
  EXPECT_NE(rendered.find("host=\"q\\\"uote\\\\back\\nline.example.org\""), std::string::npos);
}

TEST(Metrics, TextFormatsValuesAndEscapesLabelsAsPrometheusCpp) {
  MetricFamily f{"mailprobe_test_values", "Some values.", MetricType::Gauge, {}};
  for (double v : {0.0, -0.0, 1.0, -3.0, 0.1, 1e-7, 123456789012345.0, 1234567890123456.0, 1e21,
                   2.5e-3, 1.0 / 3.0, std::nan(""), HUGE_VAL, -HUGE_VAL}) {
    ClientMetric m;
    m.label = {{"value", "q\"uote\\back\nline"}};
    m.gauge.value = v;
    f.metric.push_back(m);
  }
  MetricFamily h{"mailprobe_test_histogram", "Buckets.", MetricType::Histogram, {}};
  ClientMetric hm;
  hm.histogram.sample_count = 7;
  hm.histogram.sample_sum = 0.75;
  hm.histogram.bucket = {{1, 0.005}, {5, 0.25}};  // no +Inf bucket: the serializer adds it
  h.metric.push_back(hm);
  std::ostringstream reference;
  prometheus::TextSerializer().Serialize(reference, {f, h});
  EXPECT_EQ(serializeMetrics({f, h}), reference.str());

  // HELP text is escaped as the format says (prometheus-cpp 1.0.1 does not; ours has no such
  // character anyway).
  MetricFamily help{"mailprobe_test_help", "A \\ and a\nnewline.", MetricType::Gauge, {{}}};
  EXPECT_EQ(serializeMetrics({help}),
            "# HELP mailprobe_test_help A \\\\ and a\\nnewline.\n"
            "# TYPE mailprobe_test_help gauge\nmailprobe_test_help 0\n");
}

// The real linter Prometheus ships: any complaint (suffixes, units, duplicate HELP) fails.
TEST(Metrics, PromtoolCheckMetricsIsClean) {
  const char* promtool = "/usr/bin/promtool";
  if (::access(promtool, X_OK) != 0) {
    GTEST_SKIP() << "promtool not installed (apt-get install prometheus)";
  }
  const std::string text = serializeMetrics(allFamilies(richSnapshot()));
  char path[] = "/tmp/mailprobe-metrics-XXXXXX";
  const int fd = ::mkstemp(path);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::write(fd, text.data(), text.size()), static_cast<ssize_t>(text.size()));
  ::close(fd);
  const std::string cmd = std::string(promtool) + " check metrics < " + path + " 2>&1";
  FILE* p = ::popen(cmd.c_str(), "r");
  ASSERT_NE(p, nullptr);
  std::string output;
  char buf[512];
  while (size_t n = std::fread(buf, 1, sizeof buf, p)) {
    output.append(buf, n);
  }
  const int status = ::pclose(p);
  ::unlink(path);
  EXPECT_EQ(status, 0) << output;
  EXPECT_EQ(output, "") << "promtool complained:\n" << output << "\non:\n" << text;
}

}  // namespace
}  // namespace mailprobe
