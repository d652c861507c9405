#pragma once
// Durations as the config file spells them. TOML has no duration type, so the config writes
// "500ms", "30s", "5m", "1h" or a compound such as "1m30s" (largest unit first, each unit at
// most once), or a bare integer number of seconds (handled by the config loader).

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

namespace mailprobe {

// nullopt for anything else: no sign, no spaces, no fractions, no unit repeated or out of order.
// "0s" parses to zero: whether zero is allowed is the caller's rule.
std::optional<std::chrono::milliseconds> parseDuration(std::string_view text);

// The shortest spelling parseDuration reads back to the same value: 90s -> "1m30s",
// 1500ms -> "1s500ms", 0 -> "0s". Negative values are not durations: they print as "-" + abs.
std::string formatDuration(std::chrono::milliseconds d);

}  // namespace mailprobe
