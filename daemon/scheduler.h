#pragma once
// The one owner of time (STYLE habit 1): when each endpoint is probed, how many probes run at
// once, and that an endpoint's probe never overlaps its own previous run. Protocol sessions
// have deadlines, never intervals.
//
// How a run is scheduled, step by step:
//   1. On first sight an endpoint is due at a random point of its first interval (the initial
//      spread), so a thousand endpoints do not all start in the same millisecond.
//   2. When its time comes: if its previous run is still going, the run is skipped (counted) and
//      the next one planned; if `max_in_flight` probes are already running, it waits in a FIFO
//      queue and starts as soon as a slot frees (its planned time is kept to measure drift).
//   3. The next run is planned one interval after the planned start of this one, plus or minus
//      `jitter` of the interval, and never sooner than `min_gap` from now, so a slow endpoint
//      can neither pile up runs nor spin.
// A single uv_timer is armed for the earliest due endpoint.

#include <uv.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "probes/probe_spec.h"
#include "probes/relay.h"
#include "probes/tls_version_scan.h"
#include "probes/types.h"

namespace mailprobe {

class AuthGate;
class TlsContextCache;

// One scheduled job: an endpoint probe, or the relay check of an endpoint when `relay` is set.
struct ScheduledEndpoint {
  std::string key;  // identity across reloads: "host|service|port|security"
  EndpointSpec spec;
  Credentials credentials;
  std::chrono::milliseconds interval{60'000};
  // A relay check (RelayProbe) instead of an endpoint probe. Behind a pointer: most jobs are
  // not relay checks, and a RelaySpec held in place is half the size of every job.
  std::shared_ptr<const RelaySpec> relay;
  bool tls_scan = false;  // a TLS version scan (TlsVersionScan) of `spec` instead
  // Where the first run falls: at random within this (0: within the first interval). A slow
  // job (a scan every few hours) still gets its first answer soon.
  std::chrono::milliseconds first_within{0};
};

// What one run produced: an endpoint probe's results, or a relay check's cells.
struct RunResults {
  std::vector<ProbeResult> endpoints;
  std::vector<RelayCell> relay;
  std::vector<TlsVersionResult> scans;
};

class Scheduler {
 public:
  struct Options {
    size_t max_in_flight = 64;
    double jitter = 0.1;  // fraction of the interval
    std::chrono::milliseconds min_gap{1000};
    uint64_t seed = 0;  // 0: random
  };
  // Called on the loop when a run of endpoint `key` completes.
  using OnResult = std::function<void(const std::string& key, RunResults)>;
  using RunDone = std::function<void(RunResults)>;
  // Called on the loop when a run starts; `drift_seconds` = actual minus planned start.
  using OnStart = std::function<void(const std::string& key, double drift_seconds)>;
  // A probe factory, so tests can run the scheduler with fake probes and a fake clock.
  using StartProbe = std::function<void*(const ScheduledEndpoint& endpoint, RunDone done)>;
  using CancelProbe = std::function<void(void* probe)>;

  // Real probes (EndpointProbe, RelayProbe, TlsVersionScan), their TLS contexts from
  // `tls_contexts` (null: one per probe), their logins through `auth_gate` (null: a gate per
  // probe). Both must outlive the scheduler.
  Scheduler(uv_loop_t* loop, Options options, OnResult on_result, OnStart on_start = nullptr,
            TlsContextCache* tls_contexts = nullptr, AuthGate* auth_gate = nullptr);
  // For tests: probes come from `start`/`cancel` instead of EndpointProbe and RelayProbe.
  Scheduler(uv_loop_t* loop, Options options, OnResult on_result, OnStart on_start,
            StartProbe start, CancelProbe cancel);
  ~Scheduler();
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  // Replaces the set of endpoints. An endpoint whose key stays keeps its schedule and its run
  // in flight (which completes with the spec it started with); a removed one is cancelled.
  void setEndpoints(std::vector<ScheduledEndpoint> endpoints);
  // Cancels every probe in flight and stops; `closed` runs once the timer handle is closed.
  void stop(std::function<void()> closed);

  size_t inFlight() const { return in_flight_; }
  size_t maxInFlightSeen() const { return max_in_flight_seen_; }
  uint64_t skippedRuns() const { return skipped_; }
  size_t queued() const { return queue_.size(); }

 private:
  struct Entry {
    ScheduledEndpoint endpoint;
    uint64_t due_ms = 0;      // loop time of the next planned start
    uint64_t planned_ms = 0;  // planned start of the run waiting or in flight
    void* probe = nullptr;    // non-null while a run is in flight
    bool queued = false;
    uint64_t generation = 0;  // bumped when the entry is replaced, to drop stale completions
  };

  void arm();
  void onTimer();
  void launch(Entry& e);
  void onDone(const std::string& key, uint64_t generation, RunResults results);
  void drainQueue();
  uint64_t nextDue(const Entry& e, uint64_t now);
  Entry* find(const std::string& key);

  uv_loop_t* loop_;
  Options options_;
  OnResult on_result_;
  OnStart on_start_;
  StartProbe start_probe_;
  CancelProbe cancel_probe_;
  uv_timer_t timer_;
  std::vector<std::unique_ptr<Entry>> entries_;
  std::vector<std::string> queue_;  // keys waiting for a free slot, oldest first
  size_t in_flight_ = 0;
  size_t max_in_flight_seen_ = 0;
  uint64_t skipped_ = 0;
  uint64_t generation_ = 0;
  std::mt19937_64 rng_;
  bool stopped_ = false;
};

}  // namespace mailprobe
