#pragma once
// Runs every endpoint probe, relay check and TLS version scan once on a private loop and returns
// the results in the order given.

#include <vector>

#include "probes/auth_gate.h"
#include "probes/probe_spec.h"
#include "probes/relay.h"
#include "probes/tls_version_scan.h"
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
  std::vector<TlsVersionResult> scans;
};

// At most `parallel` endpoint probes, relay checks and version scans run at once; the scans (of
// endpoints with TLS, every version at once: ScanPace::AllVersionsAtOnce) start first, being the
// longest. The loop ends with no live handle. Every login goes through `gate` (null: one for
// this run, with the default back-off): a login refused on one endpoint holds back the others
// with the same account, so one wrong password costs one refused login.
OneShotResults runAllOnce(const std::vector<ProbeJob>& jobs, const std::vector<RelayJob>& relay,
                          const std::vector<EndpointSpec>& scans = {}, size_t parallel = 16,
                          AuthGate* gate = nullptr);
// The endpoint probes alone.
std::vector<ProbeResult> runOnce(const std::vector<ProbeJob>& jobs, size_t parallel = 16,
                                 AuthGate* gate = nullptr);

}  // namespace mailprobe
