#pragma once
// Watching a daemon from outside, for the long and hostile tests: its descriptors and resident
// memory from /proc, and sums of its metrics from the text of /metrics.

#include <sys/types.h>

#include <map>
#include <string>

namespace mailprobe::testing {

// Built with AddressSanitizer: freed memory sits in its quarantine (up to 256 MiB), so resident
// memory says nothing about leaks there (its own leak check at exit stands in for the bounds).
#if defined(__SANITIZE_ADDRESS__)  // GCC
inline constexpr bool kAddressSanitizer = true;
#elif defined(__has_feature)  // clang
#if __has_feature(address_sanitizer)
inline constexpr bool kAddressSanitizer = true;
#else
inline constexpr bool kAddressSanitizer = false;
#endif
#else
inline constexpr bool kAddressSanitizer = false;
#endif

// Entries of /proc/<pid>/fd; -1 if the directory cannot be read.
int openFdCount(pid_t pid);
// VmRSS of /proc/<pid>/status in KiB; -1 if absent.
long residentKib(pid_t pid);
// User plus system CPU time of one thread (/proc/<pid>/task/<tid>/stat), in seconds; -1 if
// unreadable. The main thread's tid is the pid.
double threadCpuSeconds(pid_t pid, pid_t tid);

// The sum of every sample of `name` in a Prometheus text exposition ("name{...} v" and
// "name v"; not "name_bucket" or other names that only start with it).
double sumSamples(const std::string& text, const std::string& name);
// A histogram without labels: upper bound ("0.1", "+Inf") -> cumulative count.
std::map<std::string, double> histogramBuckets(const std::string& text, const std::string& name);

}  // namespace mailprobe::testing
