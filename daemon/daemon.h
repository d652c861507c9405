#pragma once
// `mailprobed run`: the long-running service. One libuv loop owns everything that changes:
// the config, the scheduler, the endpoint states. Readers on other threads (the HTTP server)
// only ever see immutable snapshots the loop publishes.
//
// Start-up: load the config (errors are fatal, before READY=1), bind the listener (a failure is
// fatal, before READY=1), start probing, READY=1. SIGHUP: RELOADING=1, load; a bad config is
// refused with one log line and the old one keeps running; READY=1. SIGTERM/SIGINT:
// STOPPING=1, cancel probes in flight, close everything, exit 0 within a bound.

#include <string>

#include "daemon/config.h"

namespace mailprobe {

struct DaemonOptions {
  std::string config_path;
  GetEnv getenv = processEnv();
  // How long a clean stop may take before the process exits regardless.
  std::chrono::milliseconds stop_bound{5000};
};

// Returns the process exit code.
int runDaemon(const DaemonOptions& options);

}  // namespace mailprobe
