#include "daemon/report.h"

#include <algorithm>
#include <cstdio>
#include <ctime>

namespace mailprobe {

std::string_view toString(Status s) {
  switch (s) {
    case Status::Ok:
      return "OK";
    case Status::Warning:
      return "WARNING";
    case Status::Critical:
      return "CRITICAL";
    case Status::Unknown:
      return "UNKNOWN";
  }
  return "UNKNOWN";
}

std::string isoTime(int64_t t) {
  if (t == 0) {
    return "";
  }
  std::time_t tt = static_cast<std::time_t>(t);
  std::tm tm{};
  gmtime_r(&tt, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

int64_t daysLeft(const TlsFacts& tls, int64_t now) {
  int64_t not_after = tls.chain_not_after != 0 ? tls.chain_not_after : tls.leaf_not_after;
  int64_t left = not_after - now;
  // Floor division: one second past expiry is day -1, not day 0.
  return left >= 0 ? left / 86400 : -((-left + 86399) / 86400);
}

Status statusOf(const ProbeResult& r, const Thresholds& t, int64_t now) {
  if (!r.success) {
    return Status::Critical;
  }
  if (r.tls && (r.tls->chain_not_after != 0 || r.tls->leaf_not_after != 0)) {
    int64_t days = daysLeft(*r.tls, now);
    if (days < t.crit_days) {
      return Status::Critical;
    }
    if (days < t.warn_days) {
      return Status::Warning;
    }
  }
  return Status::Ok;
}

Status statusOf(const RelayCell& c) {
  return c.ok() ? Status::Ok : Status::Critical;
}

Status overallStatus(const std::vector<ProbeResult>& results, const Thresholds& t, int64_t now,
                     const std::vector<RelayCell>& relay) {
  if (results.empty() && relay.empty()) {
    return Status::Unknown;
  }
  Status worst = Status::Ok;
  for (const auto& r : results) {
    worst = std::max(worst, statusOf(r, t, now));
  }
  for (const auto& c : relay) {
    worst = std::max(worst, statusOf(c));
  }
  return worst;
}

nlohmann::json toJson(const ProbeResult& r, int64_t now) {
  using nlohmann::json;
  json e = {
      {"host", r.host},
      {"address", r.address},
      {"port", r.port},
      {"service", toString(r.service)},
      {"security", toString(r.security)},
      {"success", r.success},
      {"reason", toString(r.reason)},
      {"phase", r.success ? json(nullptr) : json(toString(r.phase))},
      {"sentence", r.sentence},
      {"detail", r.detail},
      {"started_at", isoTime(r.started_at)},
      {"duration_seconds", r.duration_seconds},
  };
  if (r.tls) {
    const TlsFacts& t = *r.tls;
    e["tls"] = {
        {"version", t.version},
        {"cipher", t.cipher},
        {"verify", t.verify == FailureReason::None ? "ok" : toString(t.verify)},
        {"verify_detail", t.verify_detail},
        {"not_before", isoTime(t.leaf_not_before)},
        {"not_after", isoTime(t.leaf_not_after)},
        {"not_after_timestamp", t.leaf_not_after},
        {"chain_not_after", isoTime(t.chain_not_after)},
        {"days_left", daysLeft(t, now)},
        {"subject", t.subject},
        {"issuer", t.issuer},
        {"accept_all_ok", t.accept_all_ok},
        {"resumed", t.resumed},
    };
  } else {
    e["tls"] = nullptr;
  }
  json auth = json::array();
  for (const auto& a : r.auth) {
    auth.push_back({{"mechanism", a.mechanism},
                    {"success", a.success},
                    {"reason", toString(a.reason)},
                    {"detail", a.detail}});
  }
  e["auth"] = auth;
  json timings = json::object();
  for (const auto& t : r.timings) {
    timings[std::string(toString(t.phase))] = t.seconds;
  }
  e["timings"] = timings;
  e["starttls_offered"] = r.starttls_offered;
  e["plaintext_login_refused"] =
      r.plaintext_login_refused ? json(*r.plaintext_login_refused) : json(nullptr);
  e["capabilities"] = {{"before_tls", r.capabilities_before_tls},
                       {"after_tls", r.capabilities_after_tls}};
  e["auth_mechanisms"] = {{"before_tls", r.auth_before_tls}, {"after_tls", r.auth_after_tls}};
  return e;
}

nlohmann::json toJson(const RelayCell& c) {
  using nlohmann::json;
  return {
      {"host", c.host},
      {"address", c.address},
      {"port", c.port},
      {"security", toString(c.security)},
      {"vantage", c.vantage},
      {"source_address", c.source_address},
      {"trusted", c.trusted},
      {"auth", toString(c.auth)},
      {"recipient", toString(c.recipient)},
      {"expected", toString(c.expected)},
      {"observed", c.observed ? json(toString(*c.observed)) : json(nullptr)},
      {"code", c.code != 0 ? json(c.code) : json(nullptr)},
      {"enhanced_code", c.enhanced.empty() ? json(nullptr) : json(c.enhanced)},
      {"temporary", c.code != 0 ? json(c.temporary()) : json(nullptr)},
      {"at_mail_from", c.at_mail_from},
      {"reason", toString(c.reason)},
      {"phase", c.ok() ? json(nullptr) : json(toString(c.phase))},
      {"sentence", c.sentence},
      {"detail", c.detail},
      {"started_at", isoTime(c.started_at)},
      {"duration_seconds", c.duration_seconds},
  };
}

nlohmann::json reportJson(const std::vector<ProbeResult>& results, int64_t now,
                          const std::vector<RelayCell>& relay) {
  nlohmann::json endpoints = nlohmann::json::array();
  for (const auto& r : results) {
    endpoints.push_back(toJson(r, now));
  }
  nlohmann::json cells = nlohmann::json::array();
  for (const auto& c : relay) {
    cells.push_back(toJson(c));
  }
  return {{"endpoints", endpoints}, {"relay", cells}, {"profiles", nlohmann::json::array()}};
}

namespace {

// "accept 250 2.1.5", "REFUSE 554 5.7.1 (expected accept)", "not asked: timeout"
std::string cellText(const RelayCell& c) {
  if (!c.observed) {
    return "not asked: " + std::string(toString(c.reason));
  }
  std::string verdict(toString(*c.observed));
  if (!c.ok()) {
    for (char& ch : verdict) {
      ch = static_cast<char>(ch - 'a' + 'A');
    }
  }
  std::string out =
      verdict + " " + std::to_string(c.code) + (c.enhanced.empty() ? "" : " " + c.enhanced);
  return c.ok() ? out : out + " (expected " + std::string(toString(c.expected)) + ")";
}

// The relay matrix of each checked endpoint and address, then one line per failing cell.
std::string relayText(const std::vector<RelayCell>& relay) {
  std::string out;
  std::vector<std::string> groups;
  auto groupOf = [](const RelayCell& c) {
    return c.host + "|" + c.address + "|" + std::to_string(c.port);
  };
  for (const auto& c : relay) {
    if (std::find(groups.begin(), groups.end(), groupOf(c)) == groups.end()) {
      groups.push_back(groupOf(c));
    }
  }
  for (const auto& g : groups) {
    std::vector<const RelayCell*> cells;
    for (const auto& c : relay) {
      if (groupOf(c) == g) {
        cells.push_back(&c);
      }
    }
    const RelayCell& first = *cells.front();
    size_t ok = static_cast<size_t>(
        std::count_if(cells.begin(), cells.end(), [](const RelayCell* c) { return c->ok(); }));
    bool open = std::any_of(cells.begin(), cells.end(), [](const RelayCell* c) {
      return c->reason == FailureReason::OpenRelay;
    });
    out += std::string(ok == cells.size() ? "ok  " : "FAIL") + "  relay rules of smtp " +
           std::to_string(first.port) + " (" + std::string(toString(first.security)) + ") on " +
           first.host + (first.address.empty() ? "" : " [" + first.address + "]") + ": " +
           std::to_string(ok) + " of " + std::to_string(cells.size()) + " cells as expected" +
           (open ? ", OPEN RELAY" : "") + "\n";
    // Cells come in pairs (local, outside) per vantage and auth state.
    for (size_t i = 0; i + 1 < cells.size(); i += 2) {
      const RelayCell& local = *cells[i];
      const RelayCell& outside = *cells[i + 1];
      out += "      " + local.vantage + " (" + (local.trusted ? "trusted" : "untrusted") + "), " +
             std::string(toString(local.auth)) + ": local " + cellText(local) + "; outside " +
             cellText(outside) + "\n";
    }
    for (const RelayCell* c : cells) {
      if (!c->ok()) {
        out += "FAIL  " + c->sentence + "\n";
        if (!c->detail.empty()) {
          out += "      server said / error: " + c->detail + "\n";
        }
      }
    }
  }
  return out;
}

}  // namespace

std::string reportText(const std::vector<ProbeResult>& results, const Thresholds& th, int64_t now,
                       const std::vector<RelayCell>& relay) {
  std::string out;
  for (const auto& r : results) {
    Status st = statusOf(r, th, now);
    out += std::string(st == Status::Ok ? "ok  " : (st == Status::Warning ? "WARN" : "FAIL")) +
           "  " + r.sentence + "\n";
    if (!r.success && !r.detail.empty()) {
      out += "      server said / error: " + r.detail + "\n";
    }
    if (r.tls) {
      const TlsFacts& t = *r.tls;
      out += "      tls: " + t.version + " " + t.cipher + ", certificate " +
             (t.verify == FailureReason::None ? std::string("verified")
                                              : std::string(toString(t.verify))) +
             ", " + std::to_string(daysLeft(t, now)) + " days left (not after " +
             isoTime(t.leaf_not_after) + ")\n";
    }
    for (const auto& a : r.auth) {
      out += "      login " + a.mechanism + ": " +
             (a.success ? std::string("ok")
                        : std::string(toString(a.reason)) +
                              (a.detail.empty() ? "" : " (" + a.detail + ")")) +
             "\n";
    }
    if (r.plaintext_login_refused && r.security == Security::StartTls) {
      out += std::string("      login before TLS: ") +
             (*r.plaintext_login_refused ? "refused or not offered" : "ACCEPTED") + "\n";
    }
  }
  out += relayText(relay);
  Status overall = overallStatus(results, th, now, relay);
  size_t failed = static_cast<size_t>(
      std::count_if(results.begin(), results.end(), [](const auto& r) { return !r.success; }));
  out += std::string(toString(overall)) + ": " + std::to_string(results.size() - failed) + " of " +
         std::to_string(results.size()) + " endpoints work";
  if (!relay.empty()) {
    size_t ok = static_cast<size_t>(
        std::count_if(relay.begin(), relay.end(), [](const RelayCell& c) { return c.ok(); }));
    bool open = std::any_of(relay.begin(), relay.end(), [](const RelayCell& c) {
      return c.reason == FailureReason::OpenRelay;
    });
    out += ", " + std::to_string(ok) + " of " + std::to_string(relay.size()) +
           " relay cells as expected" + (open ? "; OPEN RELAY" : "");
  }
  return out + "\n";
}

nlohmann::json profilesJson(const std::vector<Verdict>& verdicts) {
  nlohmann::json out = nlohmann::json::array();
  for (const auto& v : verdicts) {
    out.push_back({{"profile", v.profile},
                   {"direction", toString(v.direction)},
                   {"ok", v.known && v.ok},
                   {"known", v.known},
                   {"reason", toString(v.reason)},
                   {"phase", v.known && !v.ok ? nlohmann::json(toString(v.phase)) : nullptr},
                   {"sentence", v.sentence},
                   {"since", v.since != 0 ? nlohmann::json(isoTime(v.since)) : nullptr}});
  }
  return out;
}

std::string profilesText(const std::vector<Verdict>& verdicts) {
  std::string out;
  for (const auto& v : verdicts) {
    out += std::string(!v.known ? "??  " : (v.ok ? "ok  " : "FAIL")) + "  " + v.sentence + "\n";
  }
  return out;
}

std::string perfdata(const std::vector<ProbeResult>& results, int64_t now) {
  std::string out;
  for (const auto& r : results) {
    std::string label = std::string(toString(r.service)) + "_" + std::to_string(r.port) + "_" +
                        (r.address.empty() ? r.host : r.address);
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.3fs", r.duration_seconds);
    out += (out.empty() ? "" : " ") + ("'" + label + "_time'=" + buf);
    if (r.tls) {
      out += " '" + label + "_cert_days'=" + std::to_string(daysLeft(*r.tls, now));
    }
  }
  return out;
}

}  // namespace mailprobe
