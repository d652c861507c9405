#include "daemon/status_page.h"

#include <algorithm>
#include <cstdio>
#include <ctime>

#include "daemon/report.h"

namespace mailprobe {
namespace {

// Escaped text: every string that reaches the page goes through one of these two.
std::string esc(std::string_view s) {
  return htmlEscape(s);
}

// "IMAP 993 · tls"
std::string endpointTitle(const EndpointState& e) {
  return std::string(e.service == Service::Imap ? "IMAP" : "SMTP") + " " + std::to_string(e.port) +
         " · " + std::string(toString(e.security));
}

std::string whenText(int64_t t, int64_t now) {
  if (t == 0) {
    return "never";
  }
  return utcTime(t) + " (" + agoText(t, now) + ")";
}

struct Counts {
  size_t up = 0;
  size_t down = 0;
  size_t pending = 0;
  size_t total() const { return up + down + pending; }
};

Counts count(const Snapshot& s) {
  Counts c;
  for (const auto& e : s.endpoints) {
    switch (endpointStatus(e)) {
      case EndpointStatus::Up:
        ++c.up;
        break;
      case EndpointStatus::Down:
        ++c.down;
        break;
      case EndpointStatus::Pending:
        ++c.pending;
        break;
    }
  }
  return c;
}

std::string plural(size_t n, std::string_view word) {
  return std::to_string(n) + " " + std::string(word) + (n == 1 ? "" : "s");
}

// The one line at the top.
std::string overallLine(const Counts& c) {
  if (c.total() == 0) {
    return "No endpoints configured";
  }
  std::string line;
  if (c.down > 0) {
    line = std::to_string(c.down) + " of " + plural(c.total(), "endpoint") + " down";
  } else if (c.pending == c.total()) {
    return "No run yet: " + plural(c.total(), "endpoint") + " pending";
  } else if (c.pending == 0) {
    return c.total() == 1 ? "The endpoint is up" : "All " + plural(c.total(), "endpoint") + " up";
  } else {
    line = std::to_string(c.up) + " of " + plural(c.total(), "endpoint") + " up";
  }
  if (c.pending > 0) {
    line += ", " + std::to_string(c.pending) + " pending";
  }
  return line;
}

std::string_view overallClass(const Counts& c) {
  if (c.down > 0) {
    return "down";
  }
  return c.up > 0 ? "up" : "pending";
}

// The result to summarise one aspect of an endpoint by: the worst result if it shows that
// aspect (the failing address may have stopped before TLS or login), else the first that does.
template <typename Pred>
const ProbeResult* sourceFor(const EndpointState& e, Pred shows) {
  const ProbeResult* w = e.worst();
  if (w != nullptr && shows(*w)) {
    return w;
  }
  for (const auto& r : e.last) {
    if (shows(r)) {
      return &r;
    }
  }
  return nullptr;
}

std::string certificateText(const TlsFacts& t, int64_t now, std::string* css_class) {
  const Thresholds th;
  std::string out;
  if (t.chain_not_after != 0 || t.leaf_not_after != 0) {
    const int64_t days = daysLeft(t, now);
    *css_class = days < th.crit_days ? "bad" : (days < th.warn_days ? "warn" : "");
    out = days >= 0 ? plural(static_cast<size_t>(days), "day") + " left"
                    : "expired " + plural(static_cast<size_t>(-days), "day") + " ago";
    const int64_t not_after = t.chain_not_after != 0 ? t.chain_not_after : t.leaf_not_after;
    out += " (until " + esc(utcTime(not_after)) + ")";
  } else {
    out = "expiry unknown";
  }
  if (t.resumed) {
    out += ", resumed session (certificate as of its full handshake)";
  }
  if (t.verify == FailureReason::None) {
    out += ", verified";
  } else {
    *css_class = "bad";
    out += ", <strong>not verified: <code>" + esc(toString(t.verify)) + "</code></strong>";
    if (!t.verify_detail.empty()) {
      out += " (" + esc(t.verify_detail) + ")";
    }
    out += t.accept_all_ok ? "; clients that accept all certificates still connect"
                           : "; even clients that accept all certificates fail";
  }
  return out;
}

std::string joinEscaped(const std::vector<std::string>& items) {
  if (items.empty()) {
    return "none";
  }
  std::string out;
  for (const auto& i : items) {
    out += (out.empty() ? "" : " ") + esc(i);
  }
  return out;
}

std::string authText(const std::vector<AuthAttempt>& auth) {
  std::string out;
  for (const auto& a : auth) {
    if (!out.empty()) {
      out += " · ";
    }
    out += esc(a.mechanism) + " ";
    if (a.success) {
      out += "<span class=\"ok\">ok</span>";
    } else {
      out += "<span class=\"bad\">failed: <code>" + esc(toString(a.reason)) + "</code></span>";
      if (!a.detail.empty()) {
        out += " (" + esc(a.detail) + ")";
      }
    }
  }
  return out;
}

void row(std::string& out, std::string_view term, const std::string& html,
         std::string_view css_class = "") {
  out += "<dt>" + std::string(term) + "</dt><dd";
  if (!css_class.empty()) {
    out += " class=\"" + std::string(css_class) + "\"";
  }
  out += ">" + html + "</dd>";
}

// A table with one row per probed address, when the last run probed more than one.
void addressTable(std::string& out, const EndpointState& e, int64_t now) {
  out +=
      "<div class=\"scroll\"><table><thead><tr><th>Address</th><th>State</th><th>Reason</th>"
      "<th>Certificate</th><th>Time</th></tr></thead><tbody>";
  for (const auto& r : e.last) {
    out += "<tr class=\"" + std::string(r.success ? "up" : "down") + "\"><td>" +
           esc(r.address.empty() ? "(unresolved)" : r.address) + "</td><td>" +
           (r.success ? "up" : "<strong>down</strong>") + "</td><td>";
    out += r.success ? ""
                     : "<code>" + esc(toString(r.reason)) + "</code> at " + esc(toString(r.phase));
    out += "</td><td>";
    if (r.tls && (r.tls->chain_not_after != 0 || r.tls->leaf_not_after != 0)) {
      out += std::to_string(daysLeft(*r.tls, now)) + " d";
      if (r.tls->verify != FailureReason::None) {
        out += ", <code>" + esc(toString(r.tls->verify)) + "</code>";
      }
    }
    char secs[32];
    std::snprintf(secs, sizeof secs, "%.3f s", r.duration_seconds);
    out += "</td><td>" + std::string(secs) + "</td></tr>";
  }
  out += "</tbody></table></div>";
}

void endpointCard(std::string& out, const EndpointState& e, size_t index, int64_t now) {
  const EndpointStatus st = endpointStatus(e);
  const ProbeResult* w = e.worst();
  out += "<article class=\"ep " + std::string(toString(st)) + "\" id=\"ep-" +
         std::to_string(index) + "\"><h4><span class=\"badge\">" + std::string(toString(st)) +
         "</span> " + esc(endpointTitle(e)) + (e.in_flight ? " <small>(probing now)</small>" : "") +
         "</h4>";
  if (w == nullptr) {
    out += "<p class=\"sentence\">Not probed yet.</p>";
  } else {
    out += "<p class=\"sentence\">" + esc(w->sentence) + "</p>";
  }
  out += "<dl>";
  if (w != nullptr && !w->success) {
    row(out, "Reason",
        "<code>" + esc(toString(w->reason)) + "</code> at <code>" + esc(toString(w->phase)) +
            "</code>" + (w->address.empty() ? "" : " on " + esc(w->address)),
        "bad");
    if (!w->detail.empty()) {
      row(out, "Server said", "<samp>" + esc(w->detail) + "</samp>");
    }
  }
  row(out, "Last success", esc(whenText(e.last_success_timestamp, now)),
      st == EndpointStatus::Down ? "bad" : "");
  row(out, "Last run", esc(whenText(e.last_run_timestamp, now)));
  if (const ProbeResult* t = sourceFor(e, [](const ProbeResult& r) { return r.tls.has_value(); })) {
    std::string css;
    const std::string cert = certificateText(*t->tls, now, &css);
    row(out, "Certificate", cert, css);
    row(out, "TLS", esc(t->tls->version) + " " + esc(t->tls->cipher));
  }
  if (auto* a = sourceFor(e, [](const ProbeResult& r) { return !r.auth.empty(); })) {
    row(out, "Login", authText(a->auth));
  }
  if (const AuthBackoffState* b = e.longestBackoff()) {
    // Said now, not as of the last run: the wait shrinks between runs.
    row(out, "Login back-off", esc(b->detail), "bad");
  }
  if (auto* a = sourceFor(e, [](const ProbeResult& r) {
        return !r.auth_before_tls.empty() || !r.auth_after_tls.empty();
      })) {
    row(out, "AUTH offered",
        e.security == Security::Tls ? joinEscaped(a->auth_after_tls)
                                    : "before TLS: " + joinEscaped(a->auth_before_tls) +
                                          "; after TLS: " + joinEscaped(a->auth_after_tls));
  }
  if (auto* p = sourceFor(
          e, [](const ProbeResult& r) { return r.plaintext_login_refused.has_value(); })) {
    const bool refused = *p->plaintext_login_refused;
    row(out, "Login before TLS", refused ? "refused or not offered" : "<strong>accepted</strong>",
        refused ? "" : "bad");
  }
  out += "</dl>";
  if (e.last.size() > 1) {
    addressTable(out, e, now);
  }
  out += "</article>";
}

// The answer before anything else: could users set up like each client profile read and send
// mail now? One row per profile, a cell per direction.
void profilesSection(std::string& out, const Snapshot& s) {
  if (s.verdicts.empty()) {
    return;
  }
  std::vector<std::string> order;
  for (const auto& v : s.verdicts) {
    if (std::find(order.begin(), order.end(), v.profile) == order.end()) {
      order.push_back(v.profile);
    }
  }
  out +=
      "<section id=\"profiles\"><h2>Client configurations</h2><table class=\"grid\">"
      "<thead><tr><th>Profile</th><th>Read mail</th><th>Send mail</th></tr></thead><tbody>";
  for (const auto& id : order) {
    out += "<tr><th scope=\"row\">" + esc(id) + "</th>";
    for (Direction d : {Direction::Incoming, Direction::Outgoing}) {
      const Verdict* v = nullptr;
      for (const auto& candidate : s.verdicts) {
        if (candidate.profile == id && candidate.direction == d) {
          v = &candidate;
        }
      }
      if (v == nullptr) {
        out += "<td class=\"na\">—</td>";
      } else if (!v->known) {
        out += "<td class=\"pending\" data-state=\"unknown\">unknown<br><small>" +
               esc(v->sentence) + "</small></td>";
      } else if (v->ok) {
        out += "<td class=\"ok\" data-state=\"ok\">works<br><small>" + esc(v->sentence) +
               "</small></td>";
      } else {
        out += "<td class=\"bad\" data-state=\"fails\"><strong>fails</strong> <code>" +
               esc(toString(v->reason)) + "</code><br><small>" + esc(v->sentence) + "</small></td>";
      }
    }
    out += "</tr>";
  }
  out += "</tbody></table></section>";
}

// Under the overall line: how the relay rules stand, and every open relay, loudly.
void relaySummary(std::string& out, const Snapshot& s) {
  size_t cells = 0;
  size_t ok = 0;
  for (const RelayState& r : s.relay) {
    cells += r.last.size();
    ok += static_cast<size_t>(
        std::count_if(r.last.begin(), r.last.end(), [](const RelayCell& c) { return c.ok(); }));
  }
  if (cells == 0) {
    return;
  }
  out += "<p class=\"overall " + std::string(ok == cells ? "up" : "down") +
         "\" id=\"relay-summary\">Relay rules: " + std::to_string(ok) + " of " +
         std::to_string(cells) + " cells as expected</p>";
  for (const RelayState& r : s.relay) {
    for (const RelayCell& c : r.last) {
      if (c.reason == FailureReason::OpenRelay) {
        out += "<p class=\"alert open\" id=\"open-relay\"><strong>OPEN RELAY</strong>: " +
               esc(c.sentence) + "</p>";
      }
    }
  }
}

// One cell of the relay matrix: what the server answered, against what the policy expects.
std::string relayCellHtml(const RelayCell& c) {
  std::string verdict = c.observed ? std::string(toString(*c.observed)) : "not asked";
  std::string code = c.code != 0 ? " <small>" + std::to_string(c.code) +
                                       (c.enhanced.empty() ? "" : " " + esc(c.enhanced)) +
                                       (c.at_mail_from ? " at MAIL FROM" : "") + "</small>"
                                 : "";
  if (c.ok()) {
    return "<td class=\"ok\">" + esc(verdict) + code + "</td>";
  }
  std::string css = c.reason == FailureReason::OpenRelay ? "bad open" : "bad";
  return "<td class=\"" + css + "\" title=\"" + esc(c.sentence) + "\"><strong>" +
         (c.reason == FailureReason::OpenRelay ? "OPEN RELAY: " : "") + esc(verdict) + "</strong>" +
         code + "<br><small>expected " + esc(toString(c.expected)) + " · <code>" +
         esc(toString(c.reason)) + "</code></small></td>";
}

// The relay matrix (vantage × auth × recipient) of each relay check, one table per checked
// address; only when the snapshot carries relay checks. An open relay is said first, loudly.
void relaySection(std::string& out, const Snapshot& s, int64_t now) {
  if (s.relay.empty()) {
    return;
  }
  out += "<section id=\"relay\"><h2>Relay rules</h2>";
  for (const RelayState& r : s.relay) {
    const bool pending = r.last.empty();
    const std::string_view st = pending ? "pending" : (r.everyCellOk() ? "up" : "down");
    out += "<article class=\"ep " + std::string(st) + "\"><h4><span class=\"badge\">" +
           std::string(st == "up" ? "ok" : (st == "down" ? "fail" : "pending")) + "</span> SMTP " +
           std::to_string(r.port) + " · " + esc(toString(r.security)) + " on " + esc(r.host) +
           (r.in_flight ? " <small>(checking now)</small>" : "") + "</h4>";
    out += "<p class=\"meta\">Last run " +
           esc(r.last_run_timestamp == 0 ? std::string("never")
                                         : utcTime(r.last_run_timestamp) + " (" +
                                               agoText(r.last_run_timestamp, now) + ")") +
           "</p>";
    if (pending) {
      out += "<p class=\"sentence\">Not checked yet.</p></article>";
      continue;
    }
    std::vector<std::string> addresses;
    for (const RelayCell& c : r.last) {
      if (std::find(addresses.begin(), addresses.end(), c.address) == addresses.end()) {
        addresses.push_back(c.address);
      }
    }
    for (const std::string& address : addresses) {
      out +=
          "<div class=\"scroll\"><table class=\"relay\"><thead><tr><th>Vantage</th>"
          "<th>Sign-in</th><th>Local recipient</th><th>Outside recipient</th></tr></thead>"
          "<tbody>";
      if (!address.empty() && addresses.size() > 1) {
        out += "<tr><th colspan=\"4\">" + esc(address) + "</th></tr>";
      }
      // Cells come in pairs (local, outside) per vantage and auth state.
      for (size_t i = 0; i + 1 < r.last.size(); i += 2) {
        const RelayCell& local = r.last[i];
        const RelayCell& outside = r.last[i + 1];
        if (local.address != address) {
          continue;
        }
        out += "<tr><td>" + esc(local.vantage) + " <small>" + esc(local.source_address) + ", " +
               (local.trusted ? "trusted" : "untrusted") + "</small></td><td>" +
               (local.auth == RelayAuth::SignedIn ? "signed in" : "none") + "</td>" +
               relayCellHtml(local) + relayCellHtml(outside) + "</tr>";
      }
      out += "</tbody></table></div>";
    }
    for (const RelayCell& c : r.last) {
      if (!c.ok() && c.reason != FailureReason::OpenRelay) {
        out += "<p class=\"bad\">" + esc(c.sentence) +
               (c.detail.empty() ? "" : " <samp>" + esc(c.detail) + "</samp>") + "</p>";
      }
    }
    out += "</article>";
  }
  out += "</section>\n";
}

constexpr std::string_view kStyle = R"css(
:root{color-scheme:light dark;--fg:#1b1b1b;--muted:#5f6368;--bg:#f6f7f8;--card:#fff;--line:#d9dce0;
--up:#1e7b34;--down:#c5221f;--pending:#80868b;--warn:#b06000;--upbg:#e6f4ea;--downbg:#fce8e6;--pendingbg:#eceff1}
@media (prefers-color-scheme:dark){:root{--fg:#e8eaed;--muted:#9aa0a6;--bg:#17181a;--card:#202124;
--line:#3c4043;--up:#81c995;--down:#f28b82;--pending:#9aa0a6;--warn:#fdd663;--upbg:#1e3a27;--downbg:#4a1f1c;--pendingbg:#2d2f31}}
*{box-sizing:border-box}
body{margin:0 auto;max-width:72rem;padding:0 1rem 2rem;font:16px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--fg);background:var(--bg)}
h1{font-size:1.2rem;margin:1rem 0 .4rem}h2{font-size:1.1rem;margin:1.4rem 0 .5rem}h3{font-size:1rem;margin:1.2rem 0 .4rem;overflow-wrap:anywhere}
h4{font-size:1rem;margin:0 0 .3rem}
.overall{font-size:1.35rem;font-weight:650;margin:.3rem 0;padding:.6rem .8rem;border-radius:6px}
.overall.up{background:var(--upbg);color:var(--up)}.overall.down{background:var(--downbg);color:var(--down)}
.overall.pending{background:var(--pendingbg)}
.meta{color:var(--muted);font-size:.9rem;margin:.2rem 0}
.alert{background:var(--downbg);border-radius:6px;padding:.5rem .8rem}
.eps{display:grid;grid-template-columns:repeat(auto-fill,minmax(26rem,1fr));gap:.8rem}
@media (max-width:600px){.eps{grid-template-columns:1fr}}
.ep{background:var(--card);border:1px solid var(--line);border-left:6px solid var(--pending);border-radius:6px;padding:.6rem .8rem;min-width:0}
.ep.up{border-left-color:var(--up)}.ep.down{border-left-color:var(--down)}
.badge{display:inline-block;font-size:.75rem;font-weight:700;text-transform:uppercase;padding:.05rem .4rem;border-radius:4px;color:#fff;background:var(--pending)}
.up .badge{background:var(--up)}.down .badge{background:var(--down)}
@media (prefers-color-scheme:dark){.badge{color:#000}}
.sentence{margin:.2rem 0 .4rem;font-weight:500}
dl{display:grid;grid-template-columns:max-content minmax(0,1fr);gap:.15rem .8rem;margin:.3rem 0;font-size:.93rem}
@media (max-width:420px){dl{grid-template-columns:1fr}dd{margin-bottom:.3rem}}
dt{color:var(--muted)}dd{margin:0;overflow-wrap:anywhere}
.bad{color:var(--down)}.warn{color:var(--warn)}.ok{color:var(--up)}
code,samp{font-family:ui-monospace,monospace;font-size:.9em}
.scroll{overflow-x:auto}
table{border-collapse:collapse;width:100%;font-size:.88rem;margin-top:.4rem}
th,td{text-align:left;padding:.2rem .4rem;border-top:1px solid var(--line);white-space:nowrap}
tr.down td{color:var(--down)}
#problems li{margin:.2rem 0}
table.relay td.bad{background:var(--downbg)}
table.grid td{white-space:normal;vertical-align:top}table.grid td.bad{background:var(--downbg)}
table.grid td.pending{color:#666}td.open,p.open{font-size:1.1rem}
#relay .ep{margin-bottom:.8rem}
a{color:inherit}
)css";

}  // namespace

EndpointStatus endpointStatus(const EndpointState& e) {
  if (e.last.empty()) {
    return EndpointStatus::Pending;
  }
  return e.everySucceeded() ? EndpointStatus::Up : EndpointStatus::Down;
}

std::string_view toString(EndpointStatus s) {
  switch (s) {
    case EndpointStatus::Up:
      return "up";
    case EndpointStatus::Down:
      return "down";
    case EndpointStatus::Pending:
      return "pending";
  }
  return "pending";
}

std::string htmlEscape(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

std::string utcTime(int64_t t) {
  std::time_t tt = static_cast<std::time_t>(t);
  std::tm tm{};
  gmtime_r(&tt, &tm);
  char buf[40];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S UTC", &tm);
  return buf;
}

std::string agoText(int64_t then, int64_t now) {
  if (then == 0) {
    return "never";
  }
  const int64_t d = now - then;
  if (d < 1) {
    return "just now";
  }
  if (d < 60) {
    return std::to_string(d) + " s ago";
  }
  if (d < 3600) {
    return std::to_string(d / 60) + " min ago";
  }
  if (d < 86400) {
    return std::to_string(d / 3600) + " h " + std::to_string(d % 3600 / 60) + " min ago";
  }
  return std::to_string(d / 86400) + " d " + std::to_string(d % 86400 / 3600) + " h ago";
}

std::string renderStatusPage(const Snapshot& s, int64_t now) {
  const Counts c = count(s);
  const std::string overall = overallLine(c);
  std::string out;
  out.reserve(16384);
  out +=
      "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
      "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
      "<meta http-equiv=\"refresh\" content=\"30\">"
      "<title>" +
      std::string(std::any_of(s.relay.begin(), s.relay.end(),
                              [](const RelayState& r) { return r.openRelay(); })
                      ? "OPEN RELAY · "
                      : "") +
      esc(overall) + " · mailprobed</title><style>" + std::string(kStyle) +
      "</style></head><body>\n";

  out += "<header><h1>mailprobed</h1><p class=\"overall " + std::string(overallClass(c)) +
         "\" id=\"overall\">" + esc(overall) + "</p>";
  relaySummary(out, s);
  out += "<p class=\"meta\">As of " + esc(utcTime(s.taken_at != 0 ? s.taken_at : now)) +
         " · version " + esc(s.daemon.version) + " · " + std::to_string(s.daemon.probes_in_flight) +
         " probes running · <a href=\"/status.json\">JSON</a> · <a href=\"/metrics\">metrics</a>"
         "</p>";
  if (!s.daemon.config_last_reload_successful) {
    out +=
        "<p class=\"alert\" id=\"config\"><strong>The last configuration reload was "
        "refused</strong>; the previous configuration is still in use.";
    if (!s.daemon.config_last_reload_error.empty()) {
      out += " <samp>" + esc(s.daemon.config_last_reload_error) + "</samp>";
    }
    out += "</p>";
  }
  out += "</header>\n<main>\n";

  profilesSection(out, s);

  // What is broken, first: one line per failing endpoint, linking to its card.
  if (c.down > 0) {
    out += "<section id=\"problems\"><h2>Down</h2><ul>";
    for (size_t i = 0; i < s.endpoints.size(); ++i) {
      const EndpointState& e = s.endpoints[i];
      if (endpointStatus(e) != EndpointStatus::Down) {
        continue;
      }
      const ProbeResult* w = e.worst();
      out += "<li><a href=\"#ep-" + std::to_string(i) + "\">" + esc(e.host) + " " +
             esc(endpointTitle(e)) + "</a>: " + esc(w->sentence) + " <small>(" +
             esc(e.last_success_timestamp == 0
                     ? std::string("no success since the daemon started")
                     : "last success " + agoText(e.last_success_timestamp, now)) +
             ")</small></li>";
    }
    out += "</ul></section>\n";
  }

  relaySection(out, s, now);

  // Every endpoint, grouped by host in config order.
  out += "<section id=\"endpoints\"><h2>Endpoints</h2>";
  std::vector<std::string> hosts;
  for (const auto& e : s.endpoints) {
    if (std::find(hosts.begin(), hosts.end(), e.host) == hosts.end()) {
      hosts.push_back(e.host);
    }
  }
  for (const auto& host : hosts) {
    out += "<section class=\"host\"><h3>" + esc(host) + "</h3><div class=\"eps\">";
    for (size_t i = 0; i < s.endpoints.size(); ++i) {
      if (s.endpoints[i].host == host) {
        endpointCard(out, s.endpoints[i], i, now);
      }
    }
    out += "</div></section>\n";
  }
  out += "</section>\n</main></body></html>\n";
  return out;
}

nlohmann::json statusJson(const Snapshot& s, int64_t now) {
  using nlohmann::json;
  auto stamp = [](int64_t t) { return t == 0 ? json(nullptr) : json(isoTime(t)); };

  std::vector<ProbeResult> results;
  std::vector<const EndpointState*> owner;
  for (const auto& e : s.endpoints) {
    for (const auto& r : e.last) {
      results.push_back(r);
      owner.push_back(&e);
    }
  }
  std::vector<RelayCell> cells;
  for (const auto& r : s.relay) {
    cells.insert(cells.end(), r.last.begin(), r.last.end());
  }
  json out = reportJson(results, now, cells);
  out["profiles"] = profilesJson(s.verdicts);
  json& entries = out["endpoints"];
  for (size_t i = 0; i < entries.size() && i < owner.size(); ++i) {
    entries[i]["last_run"] = stamp(owner[i]->last_run_timestamp);
    entries[i]["last_run_timestamp"] = owner[i]->last_run_timestamp;
    entries[i]["last_success"] = stamp(owner[i]->last_success_timestamp);
    entries[i]["last_success_timestamp"] = owner[i]->last_success_timestamp;
  }

  json states = json::array();
  for (const auto& e : s.endpoints) {
    const ProbeResult* w = e.worst();
    json backoff = json::array();
    for (const AuthBackoffState& b : e.auth_backoff) {
      backoff.push_back({{"mechanism", b.mechanism},
                         {"seconds_left", b.seconds_left},
                         {"refused_in_a_row", b.refused_in_a_row},
                         {"detail", b.detail}});
    }
    states.push_back({
        {"host", e.host},
        {"port", e.port},
        {"service", toString(e.service)},
        {"security", toString(e.security)},
        {"state", toString(endpointStatus(e))},
        {"reason", w != nullptr ? toString(w->reason) : toString(FailureReason::None)},
        {"sentence", w != nullptr ? w->sentence : std::string()},
        {"addresses", e.last.size()},
        {"in_flight", e.in_flight},
        {"interval_seconds", e.interval_seconds},
        {"runs_total", e.runs_total},
        {"last_run", stamp(e.last_run_timestamp)},
        {"last_run_timestamp", e.last_run_timestamp},
        {"last_success", stamp(e.last_success_timestamp)},
        {"last_success_timestamp", e.last_success_timestamp},
        {"auth_backoff", backoff},
    });
  }
  out["endpoint_states"] = states;

  json relay_states = json::array();
  for (const auto& r : s.relay) {
    json vantages = json::array();
    for (const auto& v : r.vantages) {
      vantages.push_back(
          {{"name", v.name}, {"source_address", v.source_address}, {"trusted", v.trusted}});
    }
    size_t ok = static_cast<size_t>(
        std::count_if(r.last.begin(), r.last.end(), [](const RelayCell& c) { return c.ok(); }));
    relay_states.push_back({
        {"host", r.host},
        {"port", r.port},
        {"security", toString(r.security)},
        {"state", r.last.empty() ? "pending" : (r.everyCellOk() ? "ok" : "failing")},
        {"open_relay", r.openRelay()},
        {"cells", r.last.size()},
        {"cells_ok", ok},
        {"vantages", vantages},
        {"in_flight", r.in_flight},
        {"interval_seconds", r.interval_seconds},
        {"runs_total", r.runs_total},
        {"last_run", stamp(r.last_run_timestamp)},
        {"last_run_timestamp", r.last_run_timestamp},
    });
  }
  out["relay_states"] = relay_states;

  const Counts c = count(s);
  out["summary"] = {{"endpoints", c.total()},
                    {"up", c.up},
                    {"down", c.down},
                    {"pending", c.pending},
                    {"line", overallLine(c)}};

  const DaemonStats& d = s.daemon;
  out["daemon"] = {
      {"version", d.version},
      {"start_time", stamp(d.start_timestamp)},
      {"snapshot_taken_at", stamp(s.taken_at)},
      {"generated_at", isoTime(now)},
      {"config",
       {{"path", d.config_path},
        {"last_reload_successful", d.config_last_reload_successful},
        {"last_reload_success", stamp(d.config_last_reload_success_timestamp)},
        {"last_reload_error",
         d.config_last_reload_error.empty() ? json(nullptr) : json(d.config_last_reload_error)},
        {"reloads_total", d.config_reloads_total},
        {"reload_failures_total", d.config_reload_failures_total}}},
      {"probes_in_flight", d.probes_in_flight},
      {"max_probes_in_flight", d.max_probes_in_flight},
      {"loop_lag_seconds", d.loop_lag_seconds},
  };
  return out;
}

}  // namespace mailprobe
