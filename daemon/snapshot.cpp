#include "daemon/snapshot.h"

#include <algorithm>

namespace mailprobe {

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
