#pragma once
// The built-in status page and /status.json: what the on-call person reads at 3 a.m. instead of
// a graph. Both are pure functions of a Snapshot and the current time. Every string that may
// come from a server (detail, sentence, certificate names, advertised mechanisms) is escaped.

#include <cstdint>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "daemon/snapshot.h"

namespace mailprobe {

enum class EndpointStatus { Up, Down, Pending };

// Pending before the first run; up when every address of the last run succeeded.
EndpointStatus endpointStatus(const EndpointState& e);
std::string_view toString(EndpointStatus s);  // "up", "down", "pending"

// One self-contained HTML document: inline CSS, no script, no external asset.
std::string renderStatusPage(const Snapshot& s, int64_t now);

// report.h's reportJson over every last result (each entry also gets its endpoint's last_run
// and last_success), plus "daemon" (version, reload state, probes in flight), "summary"
// (up/down/pending counts) and "endpoint_states" (one entry per configured endpoint, pending
// ones included).
nlohmann::json statusJson(const Snapshot& s, int64_t now);

// Helpers, exposed for tests.
std::string htmlEscape(std::string_view s);
std::string utcTime(int64_t unix_seconds);       // "2026-11-26 11:30:26 UTC"
std::string agoText(int64_t then, int64_t now);  // "14 min ago", "never"

}  // namespace mailprobe
