#pragma once
// The standard process_* metrics of the Prometheus client-library guidelines, which
// prometheus-cpp does not provide: read from /proc/self at scrape time.

#include <optional>
#include <vector>

#include <prometheus/metric_family.h>

namespace mailprobe {

struct ProcessStats {
  double cpu_seconds = 0;  // user + system
  double resident_memory_bytes = 0;
  double virtual_memory_bytes = 0;
  double open_fds = 0;
  double max_fds = 0;             // soft RLIMIT_NOFILE
  double start_time_seconds = 0;  // unix seconds
  double threads = 0;
};

// Reads /proc/self/stat, /proc/stat (boot time) and /proc/self/fd; nullopt when /proc is
// unreadable, so that a scrape shows no process_* series rather than wrong zeros.
std::optional<ProcessStats> readProcessStats();

// process_cpu_seconds_total, process_resident_memory_bytes, process_virtual_memory_bytes,
// process_open_fds, process_max_fds, process_start_time_seconds, process_threads.
std::vector<prometheus::MetricFamily> buildProcessMetrics(const ProcessStats& p);

}  // namespace mailprobe
