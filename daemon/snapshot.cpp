#include "daemon/snapshot.h"

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

}  // namespace mailprobe
