#pragma once
// Runs every endpoint probe once on a private loop and returns the results in the order given.

#include <vector>

#include "probes/probe_spec.h"
#include "probes/types.h"

namespace mailprobe {

struct ProbeJob {
  EndpointSpec spec;
  Credentials credentials;
};

// At most `parallel` endpoints are probed at once. The loop ends with no live handle.
std::vector<ProbeResult> runOnce(const std::vector<ProbeJob>& jobs, size_t parallel = 16);

}  // namespace mailprobe
