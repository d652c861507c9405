#pragma once
// Probe results for people (text), programs (JSON, the shape of PRODUCT.md) and Nagios (exit
// code and perfdata). One place turns values into words.

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "daemon/profiles.h"
#include "probes/relay.h"
#include "probes/types.h"

namespace mailprobe {

struct Thresholds {
  int warn_days = 21;  // certificate validity left before a warning
  int crit_days = 7;   // ... and before a critical
};

enum class Status { Ok = 0, Warning = 1, Critical = 2, Unknown = 3 };

std::string_view toString(Status s);

// Nagios status of one result, of one relay cell (ok, or critical: an open relay, and every
// other broken rule, stops users or lets spam through), and of a whole run.
Status statusOf(const ProbeResult& r, const Thresholds& t, int64_t now);
Status statusOf(const RelayCell& c);
Status overallStatus(const std::vector<ProbeResult>& results, const Thresholds& t, int64_t now,
                     const std::vector<RelayCell>& relay = {});

nlohmann::json toJson(const ProbeResult& r, int64_t now);
// The PRODUCT.md relay entry (host, port, vantage, trusted, auth, recipient, expected,
// observed, code, reason) and more: address, security, source_address, enhanced_code,
// temporary, at_mail_from, phase, sentence, detail, started_at, duration_seconds.
nlohmann::json toJson(const RelayCell& c);
nlohmann::json reportJson(const std::vector<ProbeResult>& results, int64_t now,
                          const std::vector<RelayCell>& relay = {});
std::string reportText(const std::vector<ProbeResult>& results, const Thresholds& t, int64_t now,
                       const std::vector<RelayCell>& relay = {});
// "label=value;;;; ..." for every endpoint: total time and certificate days left.
std::string perfdata(const std::vector<ProbeResult>& results, int64_t now);

// The `profiles` array: {profile, direction, ok, reason, sentence} per verdict (PRODUCT.md), and
// known (false: the results cannot tell; ok is then false), phase and since.
nlohmann::json profilesJson(const std::vector<Verdict>& verdicts);
// One line per verdict, for `check`.
std::string profilesText(const std::vector<Verdict>& verdicts);

std::string isoTime(int64_t unix_seconds);
// Whole days left before the earliest not-after of the chain (negative once expired).
int64_t daysLeft(const TlsFacts& tls, int64_t now);

}  // namespace mailprobe
