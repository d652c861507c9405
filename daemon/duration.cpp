#include "daemon/duration.h"

#include <array>
#include <cstdint>

namespace mailprobe {
namespace {

struct Unit {
  std::string_view suffix;
  int64_t ms;
};

// Largest first: the order a compound must follow. "ms" before "m" when matching suffixes.
constexpr std::array<Unit, 4> kUnits{{{"h", 3'600'000}, {"m", 60'000}, {"s", 1'000}, {"ms", 1}}};

// Far beyond any sensible interval, far below int64 overflow.
constexpr int64_t kMaxMs = int64_t{1} << 50;

}  // namespace

std::optional<std::chrono::milliseconds> parseDuration(std::string_view text) {
  if (text.empty()) {
    return std::nullopt;
  }
  int64_t total = 0;
  size_t next_unit = 0;  // index into kUnits: units must come in decreasing order
  size_t i = 0;
  while (i < text.size()) {
    size_t digits_start = i;
    int64_t n = 0;
    while (i < text.size() && text[i] >= '0' && text[i] <= '9') {
      n = n * 10 + (text[i] - '0');
      if (n > kMaxMs) {
        return std::nullopt;
      }
      ++i;
    }
    if (i == digits_start) {
      return std::nullopt;
    }
    size_t unit_len = 0;
    while (i + unit_len < text.size() &&
           !(text[i + unit_len] >= '0' && text[i + unit_len] <= '9')) {
      ++unit_len;
    }
    std::string_view suffix = text.substr(i, unit_len);
    size_t u = next_unit;
    while (u < kUnits.size() && kUnits[u].suffix != suffix) {
      ++u;
    }
    if (u == kUnits.size()) {
      return std::nullopt;  // unknown unit, missing unit, or a unit out of order
    }
    total += n * kUnits[u].ms;
    if (total > kMaxMs) {
      return std::nullopt;
    }
    next_unit = u + 1;
    i += unit_len;
  }
  return std::chrono::milliseconds{total};
}

std::string formatDuration(std::chrono::milliseconds d) {
  int64_t ms = d.count();
  if (ms < 0) {
    return "-" + formatDuration(std::chrono::milliseconds{-ms});
  }
  if (ms == 0) {
    return "0s";
  }
  std::string out;
  for (const Unit& u : kUnits) {
    if (ms >= u.ms) {
      out += std::to_string(ms / u.ms);
      out += u.suffix;
      ms %= u.ms;
    }
  }
  return out;
}

}  // namespace mailprobe
