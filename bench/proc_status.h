#pragma once
// This process's memory as the kernel counts it, for the benchmark drivers.

#include <cstdlib>
#include <fstream>
#include <string>

namespace mailprobe {

// A "Key:  N kB" line of /proc/self/status (VmRSS, VmHWM), in KiB; -1 if absent.
inline long statusKib(const std::string& key) {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(key + ":", 0) == 0) {
      return std::strtol(line.c_str() + key.size() + 1, nullptr, 10);
    }
  }
  return -1;
}

}  // namespace mailprobe
