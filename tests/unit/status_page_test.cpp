#include "daemon/status_page.h"

#include <gtest/gtest.h>

namespace mailprobe {
namespace {

constexpr int64_t kNow = 1'800'000'000;  // 2027-01-15 08:00:00 UTC

ProbeResult ok(const EndpointState& e, const std::string& address) {
  ProbeResult r;
  r.host = e.host;
  r.address = address;
  r.port = e.port;
  r.service = e.service;
  r.security = e.security;
  r.success = true;
  r.sentence = "IMAP on " + e.host + " port " + std::to_string(e.port) + " works.";
  return r;
}

// imap 993 up with a certificate 10 days from expiry; smtp 465 down on a failed login whose
// server reply carries markup; imap 143 not run yet.
Snapshot snapshot() {
  Snapshot s;
  s.taken_at = kNow;
  s.daemon.version = "1.2.3";

  EndpointState up{.host = "mail.example.org",
                   .port = 993,
                   .service = Service::Imap,
                   .security = Security::Tls,
                   .interval_seconds = 60};
  ProbeResult r = ok(up, "192.0.2.1");
  r.tls = TlsFacts{};
  r.tls->version = "TLSv1.3";
  r.tls->cipher = "TLS_AES_128_GCM_SHA256";
  r.tls->leaf_not_after = kNow + 10 * 86400 + 3600;
  r.tls->chain_not_after = kNow + 10 * 86400 + 3600;
  r.tls->accept_all_ok = true;
  r.auth = {{"PLAIN", true, FailureReason::None, ""}};
  r.auth_after_tls = {"PLAIN", "LOGIN"};
  up.last = {r};
  up.last_run_timestamp = kNow - 30;
  up.last_success_timestamp = kNow - 30;

  EndpointState down{.host = "mail.example.org",
                     .port = 465,
                     .service = Service::Smtp,
                     .security = Security::Tls,
                     .interval_seconds = 60};
  ProbeResult d = ok(down, "192.0.2.1");
  d.success = false;
  d.reason = FailureReason::AuthFailed;
  d.phase = Phase::Auth;
  d.detail = "535 <script>alert(1)</script> & \"bad\"";
  d.sentence = "Sending through mail.example.org:465 fails: the login is refused <b>now</b>.";
  d.auth = {{"PLAIN", false, FailureReason::AuthFailed, "535 5.7.8 <i>no</i>"}};
  ProbeResult d6 = d;
  d6.address = "2001:db8::1";
  down.last = {d, d6};
  down.last_run_timestamp = kNow - 20;
  down.last_success_timestamp = kNow - 14 * 60;

  EndpointState pending{.host = "mx.example.org",
                        .port = 143,
                        .service = Service::Imap,
                        .security = Security::StartTls,
                        .interval_seconds = 60};

  s.endpoints = {up, down, pending};
  return s;
}

TEST(StatusPage, OverallLineCountsUpDownAndPending) {
  const std::string page = renderStatusPage(snapshot(), kNow);
  EXPECT_NE(page.find(">1 of 3 endpoints down, 1 pending<"), std::string::npos) << page;
  EXPECT_NE(page.find("<title>1 of 3 endpoints down, 1 pending"), std::string::npos);

  Snapshot all_up = snapshot();
  all_up.endpoints.resize(1);
  EXPECT_NE(renderStatusPage(all_up, kNow).find(">The endpoint is up<"), std::string::npos);
  Snapshot none = snapshot();
  none.endpoints.clear();
  EXPECT_NE(renderStatusPage(none, kNow).find("No endpoints configured"), std::string::npos);
}

TEST(StatusPage, ShowsEveryEndpointWithItsState) {
  const std::string page = renderStatusPage(snapshot(), kNow);
  EXPECT_NE(page.find("class=\"ep up\" id=\"ep-0\""), std::string::npos);
  EXPECT_NE(page.find("class=\"ep down\" id=\"ep-1\""), std::string::npos);
  EXPECT_NE(page.find("class=\"ep pending\" id=\"ep-2\""), std::string::npos);
  EXPECT_NE(page.find("Not probed yet."), std::string::npos);
  EXPECT_NE(page.find("<h3>mail.example.org</h3>"), std::string::npos);
  EXPECT_NE(page.find("<h3>mx.example.org</h3>"), std::string::npos);
  // The down one: reason and phase, last success absolute and relative, per-address rows.
  EXPECT_NE(page.find("<code>auth_failed</code> at <code>auth</code>"), std::string::npos);
  EXPECT_NE(page.find(utcTime(kNow - 14 * 60) + " (14 min ago)"), std::string::npos);
  EXPECT_NE(page.find("<td>2001:db8::1</td>"), std::string::npos);
  EXPECT_NE(page.find("<section id=\"problems\">"), std::string::npos);
  // The pending one says so; it was never run.
  EXPECT_NE(page.find("<dt>Last success</dt><dd>never</dd>"), std::string::npos);
  // No profile grid or relay matrix until the snapshot carries them.
  EXPECT_EQ(page.find("id=\"profiles\""), std::string::npos);
  EXPECT_EQ(page.find("id=\"relay\""), std::string::npos);
}

TEST(StatusPage, EscapesEverythingAServerSaid) {
  const std::string page = renderStatusPage(snapshot(), kNow);
  EXPECT_EQ(page.find("<script>"), std::string::npos);
  EXPECT_EQ(page.find("<b>now</b>"), std::string::npos);
  EXPECT_EQ(page.find("<i>no</i>"), std::string::npos);
  EXPECT_NE(page.find("535 &lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;bad&quot;"),
            std::string::npos);
  EXPECT_NE(page.find("the login is refused &lt;b&gt;now&lt;/b&gt;."), std::string::npos);
  EXPECT_EQ(htmlEscape("<a href='x'>&</a>"), "&lt;a href=&#39;x&#39;&gt;&amp;&lt;/a&gt;");
}

TEST(StatusPage, CertificateDaysLeftAndVerifyOutcome) {
  Snapshot s = snapshot();
  std::string page = renderStatusPage(s, kNow);
  EXPECT_NE(page.find("<dd class=\"warn\">10 days left (until " +
                      utcTime(kNow + 10 * 86400 + 3600) + "), verified</dd>"),
            std::string::npos)
      << page;

  std::vector<ProbeResult> last = s.endpoints[0].last.items();
  TlsFacts& t = *last[0].tls;
  t.verify = FailureReason::CertExpired;
  t.verify_detail = "certificate has expired";
  t.leaf_not_after = kNow - 2 * 86400 - 10;
  t.chain_not_after = t.leaf_not_after;
  s.endpoints[0].last = std::move(last);
  page = renderStatusPage(s, kNow);
  EXPECT_NE(page.find("expired 3 days ago"), std::string::npos);
  EXPECT_NE(page.find("not verified: <code>cert_expired</code>"), std::string::npos);
  EXPECT_NE(page.find("clients that accept all certificates still connect"), std::string::npos);
}

// The failing address stopped before TLS: the card still shows what the working one learnt.
TEST(StatusPage, FactsComeFromAnotherAddressWhenTheFailingOneStoppedEarly) {
  Snapshot s = snapshot();
  EndpointState& e = s.endpoints[0];
  ProbeResult v6 = e.last[0];
  v6.address = "2001:db8::1";
  v6.success = false;
  v6.reason = FailureReason::ConnectTimeout;
  v6.phase = Phase::Connect;
  v6.tls.reset();
  v6.auth.clear();
  v6.auth_after_tls.clear();
  std::vector<ProbeResult> last = e.last.items();
  last.push_back(v6);
  e.last = std::move(last);
  const std::string page = renderStatusPage(s, kNow);
  const size_t card = page.find("id=\"ep-0\"");
  const size_t next = page.find("id=\"ep-1\"");
  ASSERT_NE(card, std::string::npos);
  const std::string html = page.substr(card, next - card);
  EXPECT_NE(html.find("<code>connect_timeout</code> at <code>connect</code> on 2001:db8::1"),
            std::string::npos)
      << html;
  EXPECT_NE(html.find("<dt>Certificate</dt>"), std::string::npos);
  EXPECT_NE(html.find("PLAIN <span class=\"ok\">ok</span>"), std::string::npos);
  EXPECT_NE(html.find("<dt>AUTH offered</dt><dd>PLAIN LOGIN</dd>"), std::string::npos);
  EXPECT_NE(html.find("<td>192.0.2.1</td>"), std::string::npos);
}

TEST(StatusPage, IsSelfContainedAndPhoneReadable) {
  const std::string page = renderStatusPage(snapshot(), kNow);
  EXPECT_NE(page.find("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"),
            std::string::npos);
  EXPECT_NE(page.find("@media (max-width:600px)"), std::string::npos);
  EXPECT_EQ(page.find("<script"), std::string::npos);
  EXPECT_EQ(page.find("<link"), std::string::npos);
  EXPECT_EQ(page.find("src="), std::string::npos);
  EXPECT_EQ(page.find("http://"), std::string::npos);
  EXPECT_EQ(page.find("https://"), std::string::npos);
}

TEST(StatusPage, ReloadFailureIsShown) {
  Snapshot s = snapshot();
  s.daemon.config_last_reload_successful = false;
  s.daemon.config_last_reload_error = "mailprobed.toml:4:7: unknown key \"<x>\"";
  const std::string page = renderStatusPage(s, kNow);
  EXPECT_NE(page.find("The last configuration reload was refused"), std::string::npos);
  EXPECT_NE(page.find("mailprobed.toml:4:7: unknown key &quot;&lt;x&gt;&quot;"), std::string::npos);
}

TEST(StatusPage, AgoText) {
  EXPECT_EQ(agoText(0, kNow), "never");
  EXPECT_EQ(agoText(kNow, kNow), "just now");
  EXPECT_EQ(agoText(kNow - 42, kNow), "42 s ago");
  EXPECT_EQ(agoText(kNow - 14 * 60 - 5, kNow), "14 min ago");
  EXPECT_EQ(agoText(kNow - 3 * 3600 - 5 * 60, kNow), "3 h 5 min ago");
  EXPECT_EQ(agoText(kNow - 2 * 86400 - 4 * 3600, kNow), "2 d 4 h ago");
  EXPECT_EQ(utcTime(kNow), "2027-01-15 08:00:00 UTC");
}

TEST(StatusJson, ReportShapePlusDaemonAndTimestamps) {
  const nlohmann::json j = statusJson(snapshot(), kNow);
  ASSERT_TRUE(j.contains("endpoints"));
  ASSERT_EQ(j["endpoints"].size(), 3u);  // one entry per probed address
  EXPECT_TRUE(j["relay"].is_array());
  EXPECT_TRUE(j["profiles"].is_array());
  const auto& first = j["endpoints"][0];
  EXPECT_EQ(first["port"], 993);
  EXPECT_EQ(first["tls"]["days_left"], 10);
  EXPECT_EQ(first["last_success_timestamp"], kNow - 30);
  const auto& down = j["endpoints"][1];
  EXPECT_EQ(down["reason"], "auth_failed");
  EXPECT_EQ(down["last_success"], "2027-01-15T07:46:00Z");
  EXPECT_EQ(down["detail"], "535 <script>alert(1)</script> & \"bad\"");  // JSON, not HTML

  ASSERT_EQ(j["endpoint_states"].size(), 3u);
  EXPECT_EQ(j["endpoint_states"][2]["state"], "pending");
  EXPECT_TRUE(j["endpoint_states"][2]["last_run"].is_null());
  EXPECT_EQ(j["endpoint_states"][1]["state"], "down");
  EXPECT_EQ(j["endpoint_states"][1]["addresses"], 2);
  EXPECT_EQ(j["summary"]["down"], 1);
  EXPECT_EQ(j["summary"]["pending"], 1);
  EXPECT_EQ(j["daemon"]["version"], "1.2.3");
  EXPECT_EQ(j["daemon"]["config"]["last_reload_successful"], true);
  EXPECT_EQ(j["daemon"]["probes_in_flight"], 0);
}

TEST(StatusPage, LoginBackoffIsShownWhileItLastsAndInTheJson) {
  Snapshot s = snapshot();
  s.endpoints[1].auth_backoff = {
      {"PLAIN", 240, 3, "login held back after 3 refused logins; next attempt in 4m00s"},
      {"LOGIN", 240, 3, "login held back after 3 refused logins; next attempt in 4m00s"},
      {"CRAM-MD5", 0, 0, ""}};
  s.endpoints[0].auth_backoff = {{"PLAIN", 0, 0, ""}};
  const std::string page = renderStatusPage(s, kNow);
  const std::string row =
      "<dt>Login back-off</dt><dd class=\"bad\">login held back after 3 refused logins; next "
      "attempt in 4m00s</dd>";
  EXPECT_NE(page.find(row), std::string::npos) << page;
  EXPECT_EQ(page.find("Login back-off"), page.rfind("Login back-off"));  // the down one only

  const nlohmann::json j = statusJson(s, kNow);
  const auto& backoff = j["endpoint_states"][1]["auth_backoff"];
  ASSERT_EQ(backoff.size(), 3u);
  EXPECT_EQ(backoff[0]["mechanism"], "PLAIN");
  EXPECT_EQ(backoff[0]["seconds_left"], 240);
  EXPECT_EQ(backoff[0]["refused_in_a_row"], 3);
  EXPECT_EQ(backoff[0]["detail"], "login held back after 3 refused logins; next attempt in 4m00s");
  EXPECT_EQ(backoff[2]["seconds_left"], 0);
  EXPECT_EQ(j["endpoint_states"][2]["auth_backoff"], nlohmann::json::array());
}

// mx.example.org 25 checked from a trusted and an untrusted vantage: the untrusted one relays to
// the outside (open relay); the trusted one is refused for the outside recipient, with markup in
// the server's reply. 587 has not been checked yet.
Snapshot relaySnapshot() {
  Snapshot s = snapshot();
  const RelayVantage office{"office", "192.0.2.200", true};
  const RelayVantage outside{"outside", "198.51.100.7", false};
  RelaySpec spec;
  spec.endpoint.host = "mx.example.org";
  spec.endpoint.port = 25;
  spec.endpoint.security = Security::StartTls;
  spec.policy = mxRelayPolicy();
  auto conversation = [&](const RelayVantage& v, bool local_ok, int outside_code,
                          const std::string& outside_text) {
    ConnectionOutcome o;
    o.relay_local = RecipientVerdict{local_ok, local_ok ? 250 : 550, "", "250 ok", false};
    o.relay_outside =
        RecipientVerdict{outside_code / 100 == 2, outside_code, "5.7.1", outside_text, false};
    return relayCells(spec, "192.0.2.25", v, RelayAuth::None, o);
  };
  RelayState mx{.host = "mx.example.org",
                .port = 25,
                .security = Security::StartTls,
                .interval_seconds = 300,
                .vantages = {office, outside}};
  std::vector<RelayCell> cells;
  for (const auto& pair : {conversation(office, true, 554, "554 5.7.1 <b>Relay access denied</b>"),
                           conversation(outside, true, 250, "250 2.1.5 Ok")}) {
    cells.insert(cells.end(), pair.begin(), pair.end());
  }
  mx.last = std::move(cells);
  mx.last_run_timestamp = kNow - 90;
  mx.runs_total = 1;
  RelayState later{.host = "mx.example.org",
                   .port = 587,
                   .security = Security::StartTls,
                   .interval_seconds = 300,
                   .vantages = {office, outside}};
  s.relay = {mx, later};
  return s;
}

TEST(StatusPage, RelayMatrixShowsEveryCellAndAnOpenRelayLoudly) {
  const std::string page = renderStatusPage(relaySnapshot(), kNow);
  EXPECT_NE(page.find("<section id=\"relay\">"), std::string::npos);
  EXPECT_NE(page.find("<title>OPEN RELAY · "), std::string::npos);
  // At the top, before any endpoint: the summary line and the open relay in words.
  const size_t alert = page.find("id=\"open-relay\"");
  ASSERT_NE(alert, std::string::npos);
  EXPECT_LT(alert, page.find("<main>"));
  EXPECT_NE(page.find(">Relay rules: 2 of 4 cells as expected</p>"), std::string::npos);
  // The matrix: one row per vantage and sign-in state, local and outside side by side.
  EXPECT_NE(page.find("<td>office <small>192.0.2.200, trusted</small></td><td>none</td>"),
            std::string::npos);
  EXPECT_NE(page.find("<td>outside <small>198.51.100.7, untrusted</small></td><td>none</td>"),
            std::string::npos);
  EXPECT_NE(page.find("<td class=\"bad open\""), std::string::npos);
  EXPECT_NE(page.find("<strong>OPEN RELAY: accept</strong>"), std::string::npos);
  EXPECT_NE(page.find("expected refuse · <code>open_relay</code>"), std::string::npos);
  EXPECT_NE(page.find("expected accept · <code>trusted_relay_denied</code>"), std::string::npos);
  EXPECT_NE(page.find("<td class=\"ok\">accept <small>250</small></td>"), std::string::npos);
  // What the server said is escaped; the unchecked port says so.
  EXPECT_EQ(page.find("<b>Relay access denied</b>"), std::string::npos);
  EXPECT_NE(page.find("&lt;b&gt;Relay access denied&lt;/b&gt;"), std::string::npos);
  EXPECT_NE(page.find("Not checked yet."), std::string::npos);
}

TEST(StatusJson, RelayCellsHaveTheContractShape) {
  const nlohmann::json j = statusJson(relaySnapshot(), kNow);
  ASSERT_EQ(j["relay"].size(), 4u);
  for (const auto& c : j["relay"]) {
    for (const char* key : {"host", "port", "vantage", "trusted", "auth", "recipient", "expected",
                            "observed", "code", "reason"}) {
      EXPECT_TRUE(c.contains(key)) << key << " in " << c.dump();
    }
  }
  const auto& open = j["relay"][3];
  EXPECT_EQ(open["host"], "mx.example.org");
  EXPECT_EQ(open["port"], 25);
  EXPECT_EQ(open["vantage"], "outside");
  EXPECT_EQ(open["trusted"], false);
  EXPECT_EQ(open["auth"], "none");
  EXPECT_EQ(open["recipient"], "outside");
  EXPECT_EQ(open["expected"], "refuse");
  EXPECT_EQ(open["observed"], "accept");
  EXPECT_EQ(open["code"], 250);
  EXPECT_EQ(open["reason"], "open_relay");
  EXPECT_EQ(j["relay"][1]["reason"], "trusted_relay_denied");
  EXPECT_EQ(j["relay"][1]["temporary"], false);
  ASSERT_EQ(j["relay_states"].size(), 2u);
  EXPECT_EQ(j["relay_states"][0]["state"], "failing");
  EXPECT_EQ(j["relay_states"][0]["open_relay"], true);
  EXPECT_EQ(j["relay_states"][0]["cells_ok"], 2);
  EXPECT_EQ(j["relay_states"][1]["state"], "pending");
  EXPECT_TRUE(j["relay_states"][1]["last_run"].is_null());
}

}  // namespace
}  // namespace mailprobe

namespace mailprobe {
namespace {

TEST(StatusPage, ClientGridComesFirstWithWorksFailsAndUnknown) {
  Snapshot s;
  s.taken_at = 1'800'000'000;
  Verdict read;
  read.profile = "android-guide";
  read.direction = Direction::Incoming;
  read.known = true;
  read.ok = true;
  read.sentence = "android-guide can read mail: imap 993 (tls) works";
  Verdict send = read;
  send.direction = Direction::Outgoing;
  send.ok = false;
  send.reason = FailureReason::AuthMechanismMissing;
  send.sentence = "android-guide cannot send: smtp 465 <refuses> AUTH PLAIN";
  Verdict legacy = read;
  legacy.profile = "legacy-tls10";
  legacy.known = false;
  legacy.sentence = "legacy-tls10: no version scan yet";
  s.verdicts = {read, send, legacy};
  const std::string page = renderStatusPage(s, s.taken_at);
  size_t grid = page.find("<section id=\"profiles\">");
  ASSERT_NE(grid, std::string::npos);
  EXPECT_LT(grid, page.find("<h2>Endpoints")) << "the grid must come before the endpoints";
  EXPECT_NE(page.find("data-state=\"ok\""), std::string::npos);
  EXPECT_NE(page.find("data-state=\"fails\""), std::string::npos);
  EXPECT_NE(page.find("data-state=\"unknown\""), std::string::npos);
  EXPECT_NE(page.find("<code>auth_mechanism_missing</code>"), std::string::npos);
  EXPECT_NE(page.find("smtp 465 &lt;refuses&gt; AUTH PLAIN"), std::string::npos);
  EXPECT_EQ(page.find("<refuses>"), std::string::npos);
}

}  // namespace
}  // namespace mailprobe
