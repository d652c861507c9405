#include "daemon/scheduler.h"

#include <algorithm>

#include "probes/endpoint_probe.h"
#include "probes/relay_probe.h"
#include "probes/tls_version_scan.h"

namespace mailprobe {

Scheduler::Scheduler(uv_loop_t* loop, Options options, OnResult on_result, OnStart on_start,
                     TlsContextCache* tls_contexts, AuthGate* auth_gate)
    : Scheduler(
          loop, options, std::move(on_result), std::move(on_start),
          [loop, tls_contexts, auth_gate](const ScheduledEndpoint& e, RunDone done) -> void* {
            RunningProbe* probe = nullptr;
            if (e.tls_scan) {
              probe = TlsVersionScan::start(
                  loop, e.spec,
                  [done = std::move(done)](std::vector<TlsVersionResult> scans) {
                    done({{}, {}, std::move(scans)});
                  },
                  ScanPace::OneVersionAtATime, tls_contexts);
            } else if (e.relay) {
              probe = RelayProbe::start(
                  loop, *e.relay, e.credentials, tls_contexts,
                  [done = std::move(done)](std::vector<RelayCell> cells) {
                    done({{}, std::move(cells)});
                  },
                  auth_gate);
            } else {
              probe = EndpointProbe::start(
                  loop, e.spec, e.credentials, tls_contexts,
                  [done = std::move(done)](std::vector<ProbeResult> results) {
                    done({std::move(results), {}});
                  },
                  auth_gate);
            }
            return probe;
          },
          [](void* probe) { static_cast<RunningProbe*>(probe)->cancel(); }) {}

Scheduler::Scheduler(uv_loop_t* loop, Options options, OnResult on_result, OnStart on_start,
                     StartProbe start, CancelProbe cancel)
    : loop_(loop),
      options_(options),
      on_result_(std::move(on_result)),
      on_start_(std::move(on_start)),
      start_probe_(std::move(start)),
      cancel_probe_(std::move(cancel)),
      rng_(options.seed != 0 ? options.seed : std::random_device{}()) {
  uv_timer_init(loop_, &timer_);
  timer_.data = this;
}

Scheduler::~Scheduler() = default;

Scheduler::Entry* Scheduler::find(const std::string& key) {
  for (auto& e : entries_) {
    if (e->endpoint.key == key) {
      return e.get();
    }
  }
  return nullptr;
}

void Scheduler::setEndpoints(std::vector<ScheduledEndpoint> endpoints) {
  if (stopped_) {
    return;
  }
  uv_update_time(loop_);
  uint64_t now = uv_now(loop_);
  std::vector<std::unique_ptr<Entry>> next;
  for (auto& ep : endpoints) {
    auto it = std::find_if(entries_.begin(), entries_.end(),
                           [&](const auto& e) { return e && e->endpoint.key == ep.key; });
    if (it != entries_.end()) {
      auto entry = std::move(*it);
      bool interval_changed = entry->endpoint.interval != ep.interval;
      entry->endpoint = std::move(ep);
      if (interval_changed && entry->probe == nullptr && !entry->queued) {
        entry->due_ms = nextDue(*entry, now);
      }
      next.push_back(std::move(entry));
      continue;
    }
    auto entry = std::make_unique<Entry>();
    entry->endpoint = std::move(ep);
    entry->generation = ++generation_;
    uint64_t interval =
        static_cast<uint64_t>(std::max<int64_t>(1, entry->endpoint.interval.count()));
    // Step 1: a random point of the first interval (or of `first_within`, when given).
    uint64_t spread = entry->endpoint.first_within.count() > 0
                          ? static_cast<uint64_t>(entry->endpoint.first_within.count())
                          : interval;
    entry->due_ms = now + std::uniform_int_distribution<uint64_t>(0, spread - 1)(rng_);
    next.push_back(std::move(entry));
  }
  for (auto& old : entries_) {
    if (old && old->probe != nullptr) {
      cancel_probe_(old->probe);
      old->probe = nullptr;
      --in_flight_;
    }
  }
  entries_ = std::move(next);
  queue_.erase(std::remove_if(queue_.begin(), queue_.end(),
                              [&](const std::string& k) { return find(k) == nullptr; }),
               queue_.end());
  drainQueue();
  arm();
}

uint64_t Scheduler::nextDue(const Entry& e, uint64_t now) {
  double interval = static_cast<double>(std::max<int64_t>(1, e.endpoint.interval.count()));
  double spread = interval * options_.jitter;
  double offset = spread > 0 ? std::uniform_real_distribution<double>(-spread, spread)(rng_) : 0;
  double base = static_cast<double>(e.planned_ms != 0 ? e.planned_ms : now);
  double due = base + interval + offset;
  double earliest = static_cast<double>(now) + static_cast<double>(options_.min_gap.count());
  return static_cast<uint64_t>(std::max(due, earliest));
}

void Scheduler::arm() {
  if (stopped_) {
    return;
  }
  uint64_t earliest = UINT64_MAX;
  for (const auto& e : entries_) {
    if (e->probe == nullptr && !e->queued) {
      earliest = std::min(earliest, e->due_ms);
    }
  }
  if (earliest == UINT64_MAX) {
    uv_timer_stop(&timer_);
    return;
  }
  uint64_t now = uv_now(loop_);
  uv_timer_start(
      &timer_, [](uv_timer_t* t) { static_cast<Scheduler*>(t->data)->onTimer(); },
      earliest > now ? earliest - now : 0, 0);
}

void Scheduler::onTimer() {
  uint64_t now = uv_now(loop_);
  for (auto& e : entries_) {
    if (e->probe != nullptr || e->queued || e->due_ms > now) {
      continue;
    }
    e->planned_ms = e->due_ms;
    if (in_flight_ >= options_.max_in_flight) {
      // Step 2: wait for a free slot, oldest first.
      e->queued = true;
      queue_.push_back(e->endpoint.key);
      continue;
    }
    launch(*e);
  }
  arm();
}

void Scheduler::launch(Entry& e) {
  uint64_t now = uv_now(loop_);
  ++in_flight_;
  max_in_flight_seen_ = std::max(max_in_flight_seen_, in_flight_);
  e.queued = false;
  // Step 3 is planned now, so that the due time never depends on how long the run takes.
  e.due_ms = nextDue(e, now);
  if (on_start_) {
    on_start_(e.endpoint.key, static_cast<double>(now - e.planned_ms) / 1000.0);
  }
  std::string key = e.endpoint.key;
  uint64_t generation = e.generation;
  e.probe = start_probe_(e.endpoint, [this, key, generation](RunResults results) {
    onDone(key, generation, std::move(results));
  });
}

void Scheduler::onDone(const std::string& key, uint64_t generation, RunResults results) {
  Entry* e = find(key);
  if (e == nullptr || e->generation != generation || e->probe == nullptr) {
    return;  // cancelled: the count was already given back
  }
  e->probe = nullptr;
  --in_flight_;
  uint64_t now = uv_now(loop_);
  if (e->due_ms <= now) {
    // The run took longer than the interval: no overlap, the next one waits a little.
    ++skipped_;
    e->due_ms = now + static_cast<uint64_t>(options_.min_gap.count());
  }
  if (on_result_) {
    on_result_(key, std::move(results));
  }
  drainQueue();
  arm();
}

void Scheduler::drainQueue() {
  while (!queue_.empty() && in_flight_ < options_.max_in_flight && !stopped_) {
    std::string key = queue_.front();
    queue_.erase(queue_.begin());
    if (Entry* e = find(key); e != nullptr && e->queued) {
      launch(*e);
    }
  }
}

void Scheduler::stop(std::function<void()> closed) {
  stopped_ = true;
  for (auto& e : entries_) {
    if (e->probe != nullptr) {
      cancel_probe_(e->probe);
      e->probe = nullptr;
    }
  }
  in_flight_ = 0;
  queue_.clear();
  uv_timer_stop(&timer_);
  auto* done = new std::function<void()>(std::move(closed));
  timer_.data = done;
  uv_close(reinterpret_cast<uv_handle_t*>(&timer_), [](uv_handle_t* h) {
    auto* cb = static_cast<std::function<void()>*>(h->data);
    if (*cb) {
      (*cb)();
    }
    delete cb;
  });
}

}  // namespace mailprobe
