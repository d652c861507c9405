#include "daemon/one_shot.h"

#include <uv.h>

#include <cassert>
#include <functional>

#include "probes/endpoint_probe.h"
#include "probes/relay_probe.h"
#include "probes/tls_context_cache.h"

namespace mailprobe {

OneShotResults runAllOnce(const std::vector<ProbeJob>& jobs, const std::vector<RelayJob>& relay,
                          const std::vector<EndpointSpec>& scans, size_t parallel, AuthGate* gate) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  TlsContextCache contexts;  // one TLS context per distinct set of TLS options
  AuthGate own_gate;
  if (gate == nullptr) {
    gate = &own_gate;
  }
  std::vector<std::vector<ProbeResult>> per_job(jobs.size());
  std::vector<std::vector<RelayCell>> per_relay(relay.size());
  std::vector<std::vector<TlsVersionResult>> per_scan(scans.size());
  const size_t total = scans.size() + jobs.size() + relay.size();
  size_t next = 0;
  size_t running = 0;
  std::function<void()> launch = [&]() {
    while (running < parallel && next < total) {
      size_t index = next++;
      ++running;
      if (index < scans.size()) {
        TlsVersionScan::start(
            &loop, scans[index],
            [&, index](std::vector<TlsVersionResult> results) {
              per_scan[index] = std::move(results);
              --running;
              launch();
            },
            ScanPace::AllVersionsAtOnce, &contexts);
        continue;
      }
      index -= scans.size();
      if (index < jobs.size()) {
        EndpointProbe::start(
            &loop, jobs[index].spec, jobs[index].credentials, &contexts,
            [&, index](std::vector<ProbeResult> results) {
              per_job[index] = std::move(results);
              --running;
              launch();
            },
            gate);
        continue;
      }
      size_t r = index - jobs.size();
      RelayProbe::start(
          &loop, relay[r].spec, relay[r].credentials, &contexts,
          [&, r](std::vector<RelayCell> cells) {
            per_relay[r] = std::move(cells);
            --running;
            launch();
          },
          gate);
    }
  };
  launch();
  uv_run(&loop, UV_RUN_DEFAULT);
  int rc = uv_loop_close(&loop);
  assert(rc == 0 && "a probe left a live handle behind");
  (void)rc;
  OneShotResults all;
  for (auto& results : per_job) {
    for (auto& r : results) {
      all.endpoints.push_back(std::move(r));
    }
  }
  for (auto& cells : per_relay) {
    for (auto& c : cells) {
      all.relay.push_back(std::move(c));
    }
  }
  for (auto& results : per_scan) {
    for (auto& r : results) {
      all.scans.push_back(std::move(r));
    }
  }
  return all;
}

std::vector<ProbeResult> runOnce(const std::vector<ProbeJob>& jobs, size_t parallel,
                                 AuthGate* gate) {
  return runAllOnce(jobs, {}, {}, parallel, gate).endpoints;
}

}  // namespace mailprobe
