#include "daemon/process_stats.h"

#include <dirent.h>
#include <sys/resource.h>
#include <unistd.h>

#include <fstream>
#include <limits>
#include <sstream>
#include <string>

namespace mailprobe {
namespace {

std::optional<double> bootTime() {
  std::ifstream in("/proc/stat");
  std::string key;
  while (in >> key) {
    if (key == "btime") {
      double t = 0;
      if (in >> t) {
        return t;
      }
      return std::nullopt;
    }
    in.ignore(std::numeric_limits<std::streamsize>::max(), '\n');
  }
  return std::nullopt;
}

std::optional<double> openFds() {
  DIR* dir = ::opendir("/proc/self/fd");
  if (dir == nullptr) {
    return std::nullopt;
  }
  const int own = ::dirfd(dir);
  double count = 0;
  while (const dirent* d = ::readdir(dir)) {
    if (d->d_name[0] == '.') {
      continue;
    }
    // The descriptor that reads the directory is ours, not the daemon's.
    if (std::to_string(own) == d->d_name) {
      continue;
    }
    ++count;
  }
  ::closedir(dir);
  return count;
}

prometheus::MetricFamily single(std::string name, std::string help, double value,
                                prometheus::MetricType type = prometheus::MetricType::Gauge) {
  prometheus::ClientMetric m;
  if (type == prometheus::MetricType::Counter) {
    m.counter.value = value;
  } else {
    m.gauge.value = value;
  }
  return prometheus::MetricFamily{std::move(name), std::move(help), type, {std::move(m)}};
}

}  // namespace

std::optional<ProcessStats> readProcessStats() {
  std::ifstream in("/proc/self/stat");
  std::string line;
  if (!std::getline(in, line)) {
    return std::nullopt;
  }
  // The command name (field 2) is in parentheses and may itself hold spaces and ')'.
  const auto close = line.rfind(')');
  if (close == std::string::npos) {
    return std::nullopt;
  }
  std::istringstream rest(line.substr(close + 1));
  // Fields from 3 (state) on, numbered as in proc(5).
  std::vector<std::string> f{"", "", ""};
  for (std::string tok; rest >> tok;) {
    f.push_back(tok);
  }
  if (f.size() <= 24) {
    return std::nullopt;
  }
  const double ticks = static_cast<double>(::sysconf(_SC_CLK_TCK));
  const double page = static_cast<double>(::sysconf(_SC_PAGESIZE));
  ProcessStats p;
  try {
    p.cpu_seconds = (std::stod(f[14]) + std::stod(f[15])) / ticks;
    p.threads = std::stod(f[20]);
    const double start_ticks = std::stod(f[22]);
    p.virtual_memory_bytes = std::stod(f[23]);
    p.resident_memory_bytes = std::stod(f[24]) * page;
    auto boot = bootTime();
    if (!boot) {
      return std::nullopt;
    }
    p.start_time_seconds = *boot + start_ticks / ticks;
  } catch (const std::exception&) {
    return std::nullopt;
  }
  auto fds = openFds();
  if (!fds) {
    return std::nullopt;
  }
  p.open_fds = *fds;
  rlimit lim{};
  if (::getrlimit(RLIMIT_NOFILE, &lim) == 0) {
    p.max_fds = static_cast<double>(lim.rlim_cur);
  }
  return p;
}

std::vector<prometheus::MetricFamily> buildProcessMetrics(const ProcessStats& p) {
  using prometheus::MetricType;
  return {
      single("process_cpu_seconds_total", "Total user and system CPU time spent in seconds.",
             p.cpu_seconds, MetricType::Counter),
      single("process_resident_memory_bytes", "Resident memory size in bytes.",
             p.resident_memory_bytes),
      single("process_virtual_memory_bytes", "Virtual memory size in bytes.",
             p.virtual_memory_bytes),
      single("process_open_fds", "Number of open file descriptors.", p.open_fds),
      single("process_max_fds", "Maximum number of open file descriptors.", p.max_fds),
      single("process_start_time_seconds", "Start time of the process since unix epoch in seconds.",
             p.start_time_seconds),
      single("process_threads", "Number of OS threads in the process.", p.threads),
  };
}

}  // namespace mailprobe
