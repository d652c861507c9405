#pragma once
// The immutable picture of the daemon's state that the loop publishes after every change, and
// that every reader (metrics scrape, status page, /status.json) copies under a lock without
// ever touching the loop (STYLE habit 10). Label values all come from the config.

#include <array>
#include <cstdint>
#include <initializer_list>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "daemon/alertmanager.h"
#include "daemon/profiles.h"
#include "probes/relay.h"
#include "probes/types.h"

namespace mailprobe {

// Duration histogram buckets of a whole endpoint probe, in seconds.
inline constexpr std::array<double, 12> kDurationBuckets{0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                                         0.5,   1,    2.5,   5,    10,  30};

// The results of one completed run, immutable once set, shared by the loop's state and every
// snapshot published from it: the loop publishes a snapshot a second, and copying 1,000
// endpoints' results each time was most of the daemon's heap and of its churn. Reads like a
// const std::vector; replaced whole, never edited in place.
template <typename T>
class SharedList {
 public:
  SharedList() = default;
  SharedList(std::vector<T> items)  // implicit: `state.last = std::move(results)`
      : items_(items.empty() ? nullptr : std::make_shared<const std::vector<T>>(std::move(items))) {
  }
  SharedList(std::initializer_list<T> items) : SharedList(std::vector<T>(items)) {}
  SharedList& operator=(std::initializer_list<T> items) { return *this = SharedList(items); }

  const std::vector<T>& items() const { return items_ ? *items_ : none(); }
  auto begin() const { return items().begin(); }
  auto end() const { return items().end(); }
  size_t size() const { return items().size(); }
  bool empty() const { return items().empty(); }
  const T& front() const { return items().front(); }
  const T& operator[](size_t i) const { return items()[i]; }

 private:
  static const std::vector<T>& none() {
    static const std::vector<T> empty;
    return empty;
  }
  std::shared_ptr<const std::vector<T>> items_;
};

// Buckets of the schedule delay (how late a run starts behind its planned time), in seconds.
// A healthy loop starts runs within a few milliseconds; the top buckets catch a blocked loop or
// a full probe queue.
inline constexpr std::array<double, 13> kScheduleDelayBuckets{
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};

// What the login gate (AuthGate) says now of one mechanism the endpoint may log in with.
struct AuthBackoffState {
  std::string mechanism;
  double seconds_left = 0;   // until a login may go again; 0 when it may go now
  int refused_in_a_row = 0;  // refused logins behind the hold (of the account or the mechanism)
  std::string detail;        // what a held-back login says now; "" when not held back
  bool operator==(const AuthBackoffState&) const = default;
};

// One configured endpoint and what the scheduler has learnt of it.
struct EndpointState {
  // Identity, from the config.
  std::string host;
  uint16_t port = 0;
  Service service = Service::Imap;
  Security security = Security::None;
  double interval_seconds = 0;

  // The last completed run: one result per address probed (empty before the first run).
  SharedList<ProbeResult> last;
  int64_t last_run_timestamp = 0;      // unix seconds, end of the last run
  int64_t last_success_timestamp = 0;  // end of the last run where every address succeeded
  // Since the daemon started (counters survive reloads for an unchanged endpoint).
  uint64_t runs_total = 0;
  std::map<FailureReason, uint64_t> failures_total;  // reason -> count of failed runs
  // Histogram of run durations: cumulative counts per kDurationBuckets, plus +Inf = runs_total.
  std::array<uint64_t, kDurationBuckets.size()> duration_buckets{};
  double duration_sum = 0;
  bool in_flight = false;  // a run is under way
  // One per mechanism the endpoint may log in with (in the probe's order), as the daemon's gate
  // sees the probe account now; empty when the endpoint never logs in.
  // Shared like `last`, and replaced only when the gate's answer changed (all zero, as a rule).
  SharedList<AuthBackoffState> auth_backoff;

  bool everySucceeded() const;
  // The longest hold among auth_backoff; null when no login is held back.
  const AuthBackoffState* longestBackoff() const;
  // The worst result of the last run (the first failure, else the first result); null if none.
  const ProbeResult* worst() const;
};

// The relay check of one SMTP endpoint ([host.relay]) and what the scheduler has learnt of it.
struct RelayState {
  // Identity, from the config.
  std::string host;  // as EndpointState::host: the name, and "@addresses" when configured
  uint16_t port = 0;
  Security security = Security::None;
  double interval_seconds = 0;
  std::vector<RelayVantage> vantages;  // in config order

  // The last completed run: every cell (vantage x auth x recipient, per address probed).
  SharedList<RelayCell> last;
  int64_t last_run_timestamp = 0;  // unix seconds, end of the last run
  uint64_t runs_total = 0;
  // reason -> runs in which at least one cell had it (each reason once per run).
  std::map<FailureReason, uint64_t> failures_total;
  bool in_flight = false;

  bool everyCellOk() const;  // false before the first run
  bool openRelay() const;    // a cell of the last run is open_relay
};

// The pushes to one configured Alertmanager ([alertmanager] urls), since it was configured.
struct AlertmanagerStats {
  std::string url;                        // AlertmanagerUrl::redacted(): never the credentials
  std::map<PushResult, uint64_t> pushes;  // every PushResult, 0 until it happens
};

struct DaemonStats {
  std::string version;
  int64_t start_timestamp = 0;
  std::string config_path;
  bool config_last_reload_successful = true;
  int64_t config_last_reload_success_timestamp = 0;
  uint64_t config_reloads_total = 0;
  uint64_t config_reload_failures_total = 0;
  std::string config_last_reload_error;  // the first error of a refused reload, "" otherwise
  int probes_in_flight = 0;
  int max_probes_in_flight = 0;
  double loop_lag_seconds = 0;                   // last measured event-loop lag
  std::vector<AlertmanagerStats> alertmanagers;  // in config order; empty without the push
  // Every run started since the daemon did (endpoint probes, relay checks, TLS scans): actual
  // minus planned start. Cumulative counts per kScheduleDelayBuckets, plus +Inf = the count.
  std::array<uint64_t, kScheduleDelayBuckets.size()> schedule_delay_buckets{};
  uint64_t schedule_delay_count = 0;
  double schedule_delay_sum = 0;

  void recordScheduleDelay(double seconds);
};

struct Snapshot {
  int64_t taken_at = 0;
  DaemonStats daemon;
  std::vector<EndpointState> endpoints;  // in config order
  std::vector<RelayState> relay;         // in config order
  std::vector<Verdict> verdicts;         // client configurations, profile order
};

using SnapshotPtr = std::shared_ptr<const Snapshot>;

// What an endpoint is called in metrics, the status page and logs: the configured name, and the
// configured addresses when the [[host]] lists them ("mail.example.org@192.0.2.10"), so that two
// backends of one name (a pool probed member by member) stay apart.
std::string endpointTarget(const EndpointSpec& spec);

}  // namespace mailprobe
