#include "daemon/daemon.h"

#include <malloc.h>
#include <uv.h>

#include <csignal>
#include <ctime>
#include <map>
#include <mutex>
#include <set>

#include "daemon/alert_pusher.h"
#include "daemon/duration.h"
#include "daemon/http_server.h"
#include "daemon/log.h"
#include "daemon/scheduler.h"
#include "daemon/snapshot.h"
#include "daemon/systemd_notify.h"
#include "probes/auth_gate.h"
#include "probes/endpoint_probe.h"
#include "probes/tls_context_cache.h"

namespace mailprobe {
namespace {

constexpr uint64_t kTickMs = 1000;
constexpr uint64_t kTrimEveryTicks = 10;  // trimHeap()
constexpr size_t kMaxProbesInFlight = 64;
// TLS versions change rarely: scan every 6 h, the first time within a minute of start.
constexpr std::chrono::milliseconds kScanInterval{6 * 3600 * 1000};
constexpr std::chrono::milliseconds kFirstScanWithin{60 * 1000};

int64_t unixNow() {
  return static_cast<int64_t>(::time(nullptr));
}

// Identity across reloads: everything that makes two endpoints different probes.
std::string endpointKey(const EndpointSpec& s) {
  return endpointTarget(s) + "|" + std::string(toString(s.service)) + "|" + std::to_string(s.port) +
         "|" + std::string(toString(s.security)) + "|" + s.source_address;
}

std::string endpointName(const EndpointState& e) {
  return std::string(toString(e.service)) + " " + std::to_string(e.port) + " (" +
         std::string(toString(e.security)) + ") on " + e.host;
}

log::Level parseLevel(const std::string& s) {
  static const std::map<std::string, log::Level> levels{{"error", log::Level::Error},
                                                        {"warning", log::Level::Warning},
                                                        {"notice", log::Level::Notice},
                                                        {"info", log::Level::Info},
                                                        {"debug", log::Level::Debug}};
  auto it = levels.find(s);
  return it == levels.end() ? log::Level::Info : it->second;
}

// Who an endpoint logs in as, in the gate's words (never published: it names the user).
struct EndpointLogins {
  std::string account;  // accountKey; "" when the endpoint never logs in
  std::vector<std::string> mechanisms;
};

class Daemon {
 public:
  explicit Daemon(DaemonOptions options)
      : options_(std::move(options)), notifier_(options_.getenv) {
    uv_loop_init(&loop_);
  }

  ~Daemon() {
    http_.reset();  // joins its threads before the state they read goes away
    uv_loop_close(&loop_);
  }

  int run() {
    LoadResult loaded = loadConfig(options_.config_path, options_.getenv);
    if (!loaded.ok()) {
      for (const auto& e : loaded.errors) {
        log::error("config: " + e.format());
      }
      log::error("not starting: " + std::to_string(loaded.errors.size()) + " error(s) in " +
                 options_.config_path);
      return 3;
    }
    config_ = std::move(*loaded.config);
    log::setMaxLevel(parseLevel(config_.daemon.log_level));
    for (const auto& w : config_.warnings) {
      log::warning("config: " + w);
    }
    auth_gate_.setSettings(config_.daemon.auth_backoff);
    stats_.version = MAILPROBED_VERSION;
    stats_.start_timestamp = unixNow();
    stats_.config_path = options_.config_path;
    stats_.config_last_reload_success_timestamp = stats_.start_timestamp;

    scheduler_ = std::make_unique<Scheduler>(
        &loop_, Scheduler::Options{.max_in_flight = kMaxProbesInFlight},
        [this](const std::string& key, RunResults results) {
          if (key.rfind("scan|", 0) == 0) {
            scans_[key] = std::move(results.scans);
          } else if (relay_index_.count(key) != 0) {
            onRelayResult(key, std::move(results.relay));
          } else {
            onResult(key, std::move(results.endpoints));
          }
        },
        [this](const std::string& key, double delay) {
          stats_.recordScheduleDelay(delay);
          onStart(key);
        },
        &tls_contexts_, &auth_gate_);
    applyConfig();
    configurePusher();
    publish();

    std::string error;
    http_ = HttpServer::start(
        config_.daemon.listen, [this] { return snapshot(); }, &error);
    if (!http_) {
      log::error("cannot listen on " + config_.daemon.listen + ": " + error);
      shutdownHandles();
      uv_run(&loop_, UV_RUN_DEFAULT);
      return 1;
    }

    startSignals();
    startTimers();
    std::string ready =
        "probing " + std::to_string(states_.size()) + " endpoints" +
        (relay_states_.empty() ? std::string()
                               : " and the relay rules of " + std::to_string(relay_states_.size()) +
                                     " smtp endpoints") +
        ", listening on " + config_.daemon.listen;
    log::notice("started: " + ready + " (port " + std::to_string(http_->port()) + ")");
    notifier_.ready(ready);

    uv_run(&loop_, UV_RUN_DEFAULT);
    log::notice("stopped");
    return exit_code_;
  }

 private:
  // Endpoints and relay checks from the config, in config order, keeping the state of those
  // that stay.
  void applyConfig() {
    std::vector<ScheduledEndpoint> scheduled;
    std::vector<EndpointState> states;
    std::vector<EndpointLogins> logins;
    std::vector<RelayState> relay_states;
    std::map<std::string, size_t> index, relay_index;
    std::set<std::string> accounts;
    for (const auto& host : config_.hosts) {
      if (!host.account.empty()) {
        accounts.insert(accountKey(host.account, host.name));
      }
      for (const auto& ep : host.endpoints) {
        std::string key = endpointKey(ep.spec);
        scheduled.push_back({key, ep.spec, host.account, ep.interval, nullptr});
        EndpointLogins l;
        if (!host.account.empty() && ep.spec.auth != AuthPolicy::Skip) {
          l.account = accountKey(host.account, ep.spec.host);
          l.mechanisms = candidateMechanisms(ep.spec);
        }
        logins.push_back(std::move(l));
        EndpointState state;
        if (auto it = index_.find(key); it != index_.end()) {
          state = std::move(states_[it->second]);
        }
        state.host = endpointTarget(ep.spec);
        state.port = ep.spec.port;
        state.service = ep.spec.service;
        state.security = ep.spec.security;
        state.interval_seconds = static_cast<double>(ep.interval.count()) / 1000.0;
        index[key] = states.size();
        states.push_back(std::move(state));
        if (ep.spec.security != Security::None) {
          // The client profiles' TLS versions are judged from these scans (never a login).
          ScheduledEndpoint scan{"scan|" + key, ep.spec, {}, kScanInterval, nullptr};
          scan.tls_scan = true;
          scan.first_within = kFirstScanWithin;
          scheduled.push_back(std::move(scan));
        }
      }
      for (const auto& rc : host.relay) {
        std::string key = "relay|" + endpointKey(rc.spec.endpoint);
        scheduled.push_back({key, rc.spec.endpoint, host.account, rc.interval,
                             std::make_shared<const RelaySpec>(rc.spec)});
        RelayState state;
        if (auto it = relay_index_.find(key); it != relay_index_.end()) {
          state = std::move(relay_states_[it->second]);
        }
        state.host = endpointTarget(rc.spec.endpoint);
        state.port = rc.spec.endpoint.port;
        state.security = rc.spec.endpoint.security;
        state.interval_seconds = static_cast<double>(rc.interval.count()) / 1000.0;
        state.vantages = rc.spec.vantages;
        relay_index[key] = relay_states.size();
        relay_states.push_back(std::move(state));
      }
    }
    states_ = std::move(states);
    logins_ = std::move(logins);
    // The gate keeps what it knows of the accounts that stay, and forgets the others.
    auth_gate_.retain(accounts);
    relay_states_ = std::move(relay_states);
    index_ = std::move(index);
    relay_index_ = std::move(relay_index);
    for (auto it = scans_.begin(); it != scans_.end();) {
      bool kept = std::any_of(scheduled.begin(), scheduled.end(),
                              [&](const ScheduledEndpoint& e) { return e.key == it->first; });
      it = kept ? std::next(it) : scans_.erase(it);
    }
    scheduler_->setEndpoints(std::move(scheduled));
  }

  void onStart(const std::string& key) {
    if (auto it = index_.find(key); it != index_.end()) {
      states_[it->second].in_flight = true;
    } else if (auto r = relay_index_.find(key); r != relay_index_.end()) {
      relay_states_[r->second].in_flight = true;
    }
  }

  void onRelayResult(const std::string& key, std::vector<RelayCell> cells) {
    auto it = relay_index_.find(key);
    if (it == relay_index_.end()) {
      return;  // removed by a reload while it ran
    }
    RelayState& s = relay_states_[it->second];
    bool was_known = !s.last.empty();
    std::set<std::string> was_failing;
    for (const auto& c : s.last) {
      if (!c.ok()) {
        was_failing.insert(c.sentence);
      }
    }
    s.in_flight = false;
    s.last = std::move(cells);
    s.last_run_timestamp = unixNow();
    ++s.runs_total;
    std::set<FailureReason> reasons;
    for (const auto& c : s.last) {
      if (!c.ok()) {
        reasons.insert(c.reason);
      }
    }
    for (FailureReason r : reasons) {
      ++s.failures_total[r];
    }

    // A cell that starts failing is one line; an open relay is an error, the loudest there is.
    std::string name = "relay rules of smtp " + std::to_string(s.port) + " on " + s.host;
    bool failing = false;
    for (const auto& c : s.last) {
      if (c.ok()) {
        continue;
      }
      failing = true;
      if (was_failing.count(c.sentence) != 0) {
        continue;
      }
      std::string line = "RELAY: " + c.sentence + (c.detail.empty() ? "" : " (" + c.detail + ")");
      if (c.reason == FailureReason::OpenRelay) {
        log::error(line);
      } else {
        log::warning(line);
      }
    }
    if (!failing && (!was_known || !was_failing.empty())) {
      log::notice(std::string(was_known ? "RELAY OK again: " : "RELAY OK: ") + name + ", " +
                  std::to_string(s.last.size()) + " cells as expected");
    }
  }

  void onResult(const std::string& key, std::vector<ProbeResult> results) {
    auto it = index_.find(key);
    if (it == index_.end()) {
      return;  // removed by a reload while it ran
    }
    EndpointState& s = states_[it->second];
    bool was_known = !s.last.empty();
    bool was_up = s.everySucceeded();
    FailureReason was_reason = s.worst() ? s.worst()->reason : FailureReason::None;

    s.in_flight = false;
    s.last = std::move(results);
    s.last_run_timestamp = unixNow();
    ++s.runs_total;
    double duration = 0;
    for (const auto& r : s.last) {
      duration = std::max(duration, r.duration_seconds);
    }
    s.duration_sum += duration;
    for (size_t b = 0; b < kDurationBuckets.size(); ++b) {
      if (duration <= kDurationBuckets[b]) {
        ++s.duration_buckets[b];
      }
    }
    bool up = s.everySucceeded();
    const ProbeResult* worst = s.worst();
    if (up) {
      s.last_success_timestamp = s.last_run_timestamp;
    } else if (worst != nullptr) {
      ++s.failures_total[worst->reason];
    }

    // A change of state is one clear line; a steady state says nothing.
    FailureReason reason = worst ? worst->reason : FailureReason::None;
    if (!was_known || up != was_up || reason != was_reason) {
      std::string sentence = worst ? worst->sentence : endpointName(s);
      if (up) {
        log::notice(std::string(was_known ? "UP again: " : "UP: ") + sentence);
      } else {
        log::warning(
            "DOWN: " + sentence +
            (worst && !worst->detail.empty() ? " (" + worst->detail + ")" : std::string()));
      }
    }
  }

  // The client configurations' verdicts from the latest results; a change is one log line.
  std::vector<Verdict> judgeProfiles(const Snapshot& snap) {
    JudgeInputs in;
    in.default_host = config_.hosts.empty() ? "" : config_.hosts.front().name;
    in.results = resultsFromEndpoints(snap.endpoints);
    in.relay = relayFromStates(snap.relay);
    in.scans = [this](const EndpointKey& key,
                      const std::string& address) -> std::optional<TlsVersionResult> {
      for (const auto& [job, results] : scans_) {
        if (const TlsVersionResult* r = findScan(results, key, address)) {
          return *r;
        }
      }
      return std::nullopt;
    };
    in.now = snap.taken_at;
    std::vector<Verdict> verdicts = judgeAll(config_.profiles, in);
    for (auto& v : verdicts) {
      const Verdict* previous = nullptr;
      for (const auto& p : verdicts_) {
        if (p.profile == v.profile && p.direction == v.direction) {
          previous = &p;
        }
      }
      carrySince(v, previous);
      if (v.known && (previous == nullptr || !sameState(v, *previous))) {
        if (v.ok) {
          log::notice("CLIENT OK: " + v.sentence);
        } else {
          log::warning("CLIENT FAILS: " + v.sentence);
        }
      }
    }
    verdicts_ = verdicts;
    if (pusher_) {
      pusher_->update(verdicts);
    }
    return verdicts;
  }

  // [alertmanager]: the pusher follows the config; without the table there is none (its
  // requests cancelled, its timer closed).
  void configurePusher() {
    const AlertmanagerConfig& am = config_.alertmanager;
    if (!am.enabled()) {
      if (pusher_) {
        log::notice("alerts are no longer pushed to Alertmanager");
      }
      pusher_.reset();
      return;
    }
    std::string urls;
    for (const auto& u : am.urls) {
      urls += (urls.empty() ? "" : ", ") + u.redacted();
    }
    log::info("client alerts pushed to " + urls + ", resent every " +
              formatDuration(am.alerts.resend_interval));
    if (pusher_) {
      pusher_->configure(am);
    } else {
      pusher_ = std::make_unique<AlertPusher>(&loop_, am);
    }
  }

  // What the gate says now of each endpoint's logins (a hold shrinks as time passes).
  void refreshBackoff() {
    for (size_t i = 0; i < states_.size() && i < logins_.size(); ++i) {
      std::vector<AuthBackoffState> now;
      for (const std::string& m : logins_[i].mechanisms) {
        AuthGate::Hold h = auth_gate_.holdFor(logins_[i].account, m);
        now.push_back({m, h.seconds_left, h.refused_in_a_row, std::move(h.detail)});
      }
      if (now != states_[i].auth_backoff.items()) {
        states_[i].auth_backoff = std::move(now);
      }
    }
  }

  void publish() {
    refreshBackoff();
    auto snap = std::make_shared<Snapshot>();
    snap->taken_at = unixNow();
    snap->daemon = stats_;
    snap->daemon.probes_in_flight = static_cast<int>(scheduler_->inFlight());
    snap->daemon.max_probes_in_flight = static_cast<int>(kMaxProbesInFlight);
    snap->endpoints = states_;
    snap->relay = relay_states_;
    snap->verdicts = judgeProfiles(*snap);
    if (pusher_) {
      snap->daemon.alertmanagers = pusher_->stats();
    }
    std::lock_guard<std::mutex> lock(snapshot_mutex_);
    snapshot_ = std::move(snap);
  }

  SnapshotPtr snapshot() const {
    std::lock_guard<std::mutex> lock(snapshot_mutex_);
    return snapshot_;
  }

  void reload() {
    notifier_.reloading("reloading " + options_.config_path);
    ++stats_.config_reloads_total;
    LoadResult loaded = loadConfig(options_.config_path, options_.getenv);
    if (!loaded.ok()) {
      ++stats_.config_reload_failures_total;
      stats_.config_last_reload_successful = false;
      stats_.config_last_reload_error = loaded.errors.front().format();
      std::string more = loaded.errors.size() > 1
                             ? " (and " + std::to_string(loaded.errors.size() - 1) + " more)"
                             : "";
      log::error("reload refused, the running config stays: " + stats_.config_last_reload_error +
                 more);
    } else {
      if (loaded.config->daemon.listen != config_.daemon.listen) {
        log::warning("the listen address changed to " + loaded.config->daemon.listen +
                     ": it takes effect at the next restart");
      }
      std::string listen = config_.daemon.listen;
      config_ = std::move(*loaded.config);
      auth_gate_.setSettings(config_.daemon.auth_backoff);
      config_.daemon.listen = listen;
      log::setMaxLevel(parseLevel(config_.daemon.log_level));
      for (const auto& w : config_.warnings) {
        log::warning("config: " + w);
      }
      // Contexts are built again from the new config (a CA file may have been replaced);
      // probes in flight finish with the one they hold.
      tls_contexts_.clear();
      applyConfig();
      configurePusher();
      stats_.config_last_reload_successful = true;
      stats_.config_last_reload_success_timestamp = unixNow();
      stats_.config_last_reload_error.clear();
      log::notice("config reloaded: " + std::to_string(states_.size()) + " endpoints, " +
                  std::to_string(relay_states_.size()) + " relay checks");
    }
    publish();
    notifier_.ready(stats_.config_last_reload_successful ? "probing" : "reload refused");
  }

  void stop() {
    if (stopping_) {
      return;
    }
    stopping_ = true;
    log::notice("stopping");
    notifier_.stopping("stopping");
    // The bound: whatever is still open by then, the process leaves.
    uv_timer_init(&loop_, &stop_timer_);
    stop_timer_.data = this;
    uv_timer_start(
        &stop_timer_,
        [](uv_timer_t* t) {
          log::warning("stop took too long: leaving now");
          static_cast<Daemon*>(t->data)->exit_code_ = 1;
          uv_stop(t->loop);
        },
        static_cast<uint64_t>(options_.stop_bound.count()), 0);
    uv_unref(reinterpret_cast<uv_handle_t*>(&stop_timer_));
    shutdownHandles();
  }

  void shutdownHandles() {
    if (scheduler_) {
      scheduler_->stop(nullptr);
    }
    pusher_.reset();  // a push in flight is cancelled: a stop never waits on Alertmanager
    for (uv_handle_t* h :
         {reinterpret_cast<uv_handle_t*>(&sighup_), reinterpret_cast<uv_handle_t*>(&sigterm_),
          reinterpret_cast<uv_handle_t*>(&sigint_), reinterpret_cast<uv_handle_t*>(&tick_),
          reinterpret_cast<uv_handle_t*>(&watchdog_)}) {
      if (h->loop != nullptr && !uv_is_closing(h)) {
        uv_close(h, nullptr);
      }
    }
    if (stopping_) {
      uv_close(reinterpret_cast<uv_handle_t*>(&stop_timer_), nullptr);
    }
  }

  void startSignals() {
    auto arm = [this](uv_signal_t* s, int signum, uv_signal_cb cb) {
      uv_signal_init(&loop_, s);
      s->data = this;
      uv_signal_start(s, cb, signum);
    };
    arm(&sighup_, SIGHUP, [](uv_signal_t* s, int) { static_cast<Daemon*>(s->data)->reload(); });
    arm(&sigterm_, SIGTERM, [](uv_signal_t* s, int) { static_cast<Daemon*>(s->data)->stop(); });
    arm(&sigint_, SIGINT, [](uv_signal_t* s, int) { static_cast<Daemon*>(s->data)->stop(); });
  }

  // Results live one interval, snapshots a second, a probe's TLS objects a fraction of one:
  // freed in between longer-lived blocks, they leave the heap full of free holes that glibc
  // only gives back from the top (at 1,000 endpoints: 10.6 MiB of heap for 5.8 in use after
  // four minutes). malloc_trim returns the free pages of every arena, the HTTP workers' too;
  // at that size it takes about 0.3 ms.
  static void trimHeap() { malloc_trim(0); }

  void startTimers() {
    // The tick measures the loop's lag and publishes the snapshot, so its age shows the loop
    // is alive (/healthz) even when nothing changed.
    uv_timer_init(&loop_, &tick_);
    tick_.data = this;
    last_tick_ns_ = uv_hrtime();
    uv_timer_start(
        &tick_,
        [](uv_timer_t* t) {
          auto* self = static_cast<Daemon*>(t->data);
          uint64_t now = uv_hrtime();
          double late = static_cast<double>(now - self->last_tick_ns_) / 1e9 - kTickMs / 1000.0;
          self->stats_.loop_lag_seconds = std::max(0.0, late);
          self->last_tick_ns_ = now;
          self->publish();
          if (++self->ticks_ % kTrimEveryTicks == 0) {
            self->trimHeap();
          }
        },
        kTickMs, kTickMs);
    if (auto interval = notifier_.watchdogInterval()) {
      // WATCHDOG=1 from the loop itself: a wedged loop stops the pings and systemd restarts us.
      uv_timer_init(&loop_, &watchdog_);
      watchdog_.data = this;
      uv_timer_start(
          &watchdog_, [](uv_timer_t* t) { static_cast<Daemon*>(t->data)->notifier_.watchdog(); },
          static_cast<uint64_t>(interval->count()), static_cast<uint64_t>(interval->count()));
      notifier_.watchdog();
    }
  }

  DaemonOptions options_;
  SystemdNotifier notifier_;
  uv_loop_t loop_;
  Config config_;
  DaemonStats stats_;
  // One TLS context per distinct TLS options, shared by every probe, scan and relay check
  // (all on loop_); declared before the scheduler, which uses it until it is destroyed.
  TlsContextCache tls_contexts_;
  // Every login of every probe asks it first; it outlives the scheduler and keeps what it
  // knows of an account across reloads.
  AuthGate auth_gate_;
  std::unique_ptr<Scheduler> scheduler_;
  std::unique_ptr<HttpServer> http_;
  std::unique_ptr<AlertPusher> pusher_;  // with [alertmanager] only
  std::vector<EndpointState> states_;
  std::vector<EndpointLogins> logins_;  // parallel to states_
  std::map<std::string, size_t> index_;
  std::vector<RelayState> relay_states_;
  std::map<std::string, size_t> relay_index_;
  std::map<std::string, std::vector<TlsVersionResult>> scans_;  // by scan job key
  std::vector<Verdict> verdicts_;                               // as last judged
  mutable std::mutex snapshot_mutex_;
  SnapshotPtr snapshot_;
  uv_signal_t sighup_{}, sigterm_{}, sigint_{};
  uv_timer_t tick_{}, watchdog_{}, stop_timer_{};
  uint64_t last_tick_ns_ = 0;
  uint64_t ticks_ = 0;
  bool stopping_ = false;
  int exit_code_ = 0;
};

// glibc's allocator, for a process that runs for months with one busy loop thread and a few
// HTTP workers (bench/RESULTS.md, "The daemon with 1000 endpoints"):
// - a fixed mmap threshold: a buffer of 64 KiB or more (a /metrics family at 1,000 endpoints,
//   the status page) is its own mapping, returned to the system when freed. Left dynamic, glibc
//   raises the threshold to the largest block freed so far (up to 32 MiB), and every later
//   scrape's buffers stay in the heap of whichever thread served it;
// - two arenas: the loop's, and one shared by every other thread (HTTP workers, libuv's
//   resolver pool). Each thread with an arena of its own keeps what its last request left there.
void tuneMalloc() {
  mallopt(M_MMAP_THRESHOLD, 64 * 1024);
  mallopt(M_ARENA_MAX, 2);
}

}  // namespace

int runDaemon(const DaemonOptions& options) {
  tuneMalloc();
  Daemon daemon(options);
  return daemon.run();
}

}  // namespace mailprobe
