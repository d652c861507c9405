#include "daemon/one_shot.h"

#include <uv.h>

#include <cassert>

#include "probes/endpoint_probe.h"

namespace mailprobe {

std::vector<ProbeResult> runOnce(const std::vector<ProbeJob>& jobs, size_t parallel) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  std::vector<std::vector<ProbeResult>> per_job(jobs.size());
  size_t next = 0;
  size_t running = 0;
  std::function<void()> launch = [&]() {
    while (running < parallel && next < jobs.size()) {
      size_t index = next++;
      ++running;
      EndpointProbe::start(&loop, jobs[index].spec, jobs[index].credentials, nullptr,
                           [&, index](std::vector<ProbeResult> results) {
                             per_job[index] = std::move(results);
                             --running;
                             launch();
                           });
    }
  };
  launch();
  uv_run(&loop, UV_RUN_DEFAULT);
  int rc = uv_loop_close(&loop);
  assert(rc == 0 && "a probe left a live handle behind");
  (void)rc;
  std::vector<ProbeResult> all;
  for (auto& results : per_job) {
    for (auto& r : results) {
      all.push_back(std::move(r));
    }
  }
  return all;
}

}  // namespace mailprobe
