#include "daemon/snapshot.h"

#include <algorithm>

namespace mailprobe {

void DaemonStats::recordScheduleDelay(double seconds) {
  seconds = std::max(0.0, seconds);
  ++schedule_delay_count;
  schedule_delay_sum += seconds;
  for (size_t b = 0; b < kScheduleDelayBuckets.size(); ++b) {
    if (seconds <= kScheduleDelayBuckets[b]) {
      ++schedule_delay_buckets[b];
    }
  }
}

bool EndpointState::everySucceeded() const {
  if (last.empty()) {
    return false;
  }
  for (const auto& r : last) {
    if (!r.success) {
      return false;
    }
  }
  return true;
}

const ProbeResult* EndpointState::worst() const {
  for (const auto& r : last) {
    if (!r.success) {
      return &r;
    }
  }
  return last.empty() ? nullptr : &last.front();
}

const AuthBackoffState* EndpointState::longestBackoff() const {
  const AuthBackoffState* longest = nullptr;
  for (const auto& b : auth_backoff) {
    if (b.seconds_left > 0 && (longest == nullptr || b.seconds_left > longest->seconds_left)) {
      longest = &b;
    }
  }
  return longest;
}

bool RelayState::everyCellOk() const {
  return !last.empty() &&
         std::all_of(last.begin(), last.end(), [](const RelayCell& c) { return c.ok(); });
}

bool RelayState::openRelay() const {
  return std::any_of(last.begin(), last.end(),
                     [](const RelayCell& c) { return c.reason == FailureReason::OpenRelay; });
}

std::string endpointTarget(const EndpointSpec& s) {
  std::string target = s.host;
  for (size_t i = 0; i < s.addresses.size(); ++i) {
    target += (i == 0 ? "@" : ",") + s.addresses[i];
  }
  return target;
}

}  // namespace mailprobe
