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

Status overallStatus(const std::vector<ProbeResult>& results, const Thresholds& t, int64_t now) {
  if (results.empty()) {
    return Status::Unknown;
  }
  Status worst = Status::Ok;
  for (const auto& r : results) {
    worst = std::max(worst, statusOf(r, t, now));
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

nlohmann::json reportJson(const std::vector<ProbeResult>& results, int64_t now) {
  nlohmann::json endpoints = nlohmann::json::array();
  for (const auto& r : results) {
    endpoints.push_back(toJson(r, now));
  }
  return {{"endpoints", endpoints},
          {"relay", nlohmann::json::array()},
          {"profiles", nlohmann::json::array()}};
}

std::string reportText(const std::vector<ProbeResult>& results, const Thresholds& th, int64_t now) {
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
  Status overall = overallStatus(results, th, now);
  size_t failed = static_cast<size_t>(
      std::count_if(results.begin(), results.end(), [](const auto& r) { return !r.success; }));
  out += std::string(toString(overall)) + ": " + std::to_string(results.size() - failed) + " of " +
         std::to_string(results.size()) + " endpoints work\n";
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
