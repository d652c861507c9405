#pragma once
// Runs every endpoint probe and relay check once on a private loop and returns the results in
// the order given.

#include <vector>

#include "probes/probe_spec.h"
#include "probes/relay.h"
#include "probes/types.h"

namespace mailprobe {

struct ProbeJob {
  EndpointSpec spec;
  Credentials credentials;
};

struct RelayJob {
  RelaySpec spec;
  Credentials credentials;
};

struct OneShotResults {
  std::vector<ProbeResult> endpoints;
  std::vector<RelayCell> relay;
};

// At most `parallel` endpoint probes and relay checks run at once. The loop ends with no live
// handle.
OneShotResults runAllOnce(const std::vector<ProbeJob>& jobs, const std::vector<RelayJob>& relay,
                          size_t parallel = 16);
// The endpoint probes alone.
std::vector<ProbeResult> runOnce(const std::vector<ProbeJob>& jobs, size_t parallel = 16);

}  // namespace mailprobe
