#include "daemon/scheduler.h"

#include <gtest/gtest.h>

#include <map>
#include <set>

namespace mailprobe {
namespace {

// Fake probes: each completes after `duration_ms` of loop time, through its own timer.
struct FakeProbes {
  struct Probe {
    uv_timer_t timer;
    Scheduler::RunDone done;
    std::string key;
    FakeProbes* owner;
  };

  explicit FakeProbes(uv_loop_t* loop) : loop(loop) {}

  void* start(const ScheduledEndpoint& e, Scheduler::RunDone done) {
    EXPECT_EQ(running.count(e.key), 0u) << e.key << " overlaps its own previous run";
    running.insert(e.key);
    ++starts[e.key];
    max_running = std::max(max_running, running.size());
    auto* p = new Probe{{}, std::move(done), e.key, this};
    uv_timer_init(loop, &p->timer);
    p->timer.data = p;
    uint64_t duration = durations.count(e.key) ? durations[e.key] : default_duration_ms;
    uv_timer_start(
        &p->timer,
        [](uv_timer_t* t) {
          auto* probe = static_cast<Probe*>(t->data);
          probe->owner->running.erase(probe->key);
          auto done = std::move(probe->done);
          uv_close(reinterpret_cast<uv_handle_t*>(t),
                   [](uv_handle_t* h) { delete static_cast<Probe*>(h->data); });
          ProbeResult r;
          r.host = probe->key;
          r.success = true;
          done({{r}, {}});
        },
        duration, 0);
    return p;
  }

  void cancel(void* handle) {
    auto* p = static_cast<Probe*>(handle);
    running.erase(p->key);
    ++cancels[p->key];
    uv_timer_stop(&p->timer);
    uv_close(reinterpret_cast<uv_handle_t*>(&p->timer),
             [](uv_handle_t* h) { delete static_cast<Probe*>(h->data); });
  }

  uv_loop_t* loop;
  std::set<std::string> running;
  std::map<std::string, int> starts;
  std::map<std::string, uint64_t> durations;
  uint64_t default_duration_ms = 5;
  size_t max_running = 0;
  std::map<std::string, int> cancels;
};

ScheduledEndpoint endpoint(const std::string& key, int interval_ms) {
  ScheduledEndpoint e;
  e.key = key;
  e.interval = std::chrono::milliseconds(interval_ms);
  return e;
}

class SchedulerTest : public ::testing::Test {
 protected:
  SchedulerTest() { uv_loop_init(&loop_); }
  ~SchedulerTest() override {
    uv_run(&loop_, UV_RUN_DEFAULT);
    EXPECT_EQ(uv_loop_close(&loop_), 0) << "a handle was left open";
  }

  std::unique_ptr<Scheduler> make(Scheduler::Options options) {
    options.seed = 42;
    return std::make_unique<Scheduler>(
        &loop_, options,
        [this](const std::string& key, RunResults r) {
          results_[key] += static_cast<int>(r.endpoints.size());
        },
        [this](const std::string&, double drift) { drifts_.push_back(drift); },
        [this](const ScheduledEndpoint& e, Scheduler::RunDone done) {
          return probes_.start(e, std::move(done));
        },
        [this](void* p) { probes_.cancel(p); });
  }

  // Runs the loop for `ms` of loop time, then stops the scheduler.
  void runFor(Scheduler& s, uint64_t ms) {
    uv_timer_t stopper;
    uv_timer_init(&loop_, &stopper);
    stopper.data = &s;
    uv_timer_start(
        &stopper,
        [](uv_timer_t* t) {
          static_cast<Scheduler*>(t->data)->stop(nullptr);
          uv_close(reinterpret_cast<uv_handle_t*>(t), nullptr);
        },
        ms, 0);
    uv_run(&loop_, UV_RUN_DEFAULT);
  }

  uv_loop_t loop_;
  FakeProbes probes_{&loop_};
  std::map<std::string, int> results_;
  std::vector<double> drifts_;
};

TEST_F(SchedulerTest, EveryEndpointRunsRepeatedlyAndReportsItsResults) {
  auto s = make({.max_in_flight = 8, .jitter = 0.1, .min_gap = std::chrono::milliseconds(1)});
  s->setEndpoints({endpoint("a", 20), endpoint("b", 20), endpoint("c", 40)});
  runFor(*s, 300);
  EXPECT_GE(probes_.starts["a"], 8);
  EXPECT_GE(probes_.starts["b"], 8);
  EXPECT_GE(probes_.starts["c"], 4);
  // Roughly twice as often for half the interval.
  EXPECT_GT(probes_.starts["a"], probes_.starts["c"]);
  EXPECT_GE(results_["a"], probes_.starts["a"] - 1);
}

TEST_F(SchedulerTest, NeverMoreInFlightThanTheCapAndQueuedRunsStillHappen) {
  auto s = make({.max_in_flight = 3, .jitter = 0, .min_gap = std::chrono::milliseconds(1)});
  std::vector<ScheduledEndpoint> many;
  for (int i = 0; i < 20; ++i) {
    many.push_back(endpoint("e" + std::to_string(i), 30));
  }
  probes_.default_duration_ms = 10;
  s->setEndpoints(many);
  runFor(*s, 400);
  EXPECT_LE(probes_.max_running, 3u);
  EXPECT_LE(s->maxInFlightSeen(), 3u);
  EXPECT_EQ(s->maxInFlightSeen(), 3u) << "the cap was never reached: the test proves nothing";
  for (int i = 0; i < 20; ++i) {
    EXPECT_GE(probes_.starts["e" + std::to_string(i)], 1) << "e" << i << " starved";
  }
}

TEST_F(SchedulerTest, ASlowEndpointNeverOverlapsItselfAndDoesNotDelayOthers) {
  auto s = make({.max_in_flight = 8, .jitter = 0, .min_gap = std::chrono::milliseconds(5)});
  probes_.durations["slow"] = 150;  // far longer than its interval
  s->setEndpoints({endpoint("slow", 20), endpoint("fast", 20)});
  runFor(*s, 400);
  // FakeProbes::start fails the test on any overlap.
  EXPECT_LE(probes_.starts["slow"], 3);
  EXPECT_GE(probes_.starts["fast"], 12);
  EXPECT_GE(s->skippedRuns(), 1u);
}

TEST_F(SchedulerTest, ReloadKeepsSurvivorsAndCancelsRemovedRunsInFlight) {
  auto s = make({.max_in_flight = 8, .jitter = 0, .min_gap = std::chrono::milliseconds(1)});
  probes_.durations["gone"] = 1000;
  s->setEndpoints({endpoint("kept", 20), endpoint("gone", 20)});
  uv_timer_t t;
  uv_timer_init(&loop_, &t);
  t.data = s.get();
  uv_timer_start(
      &t,
      [](uv_timer_t* timer) {
        static_cast<Scheduler*>(timer->data)->setEndpoints({endpoint("kept", 20)});
        uv_close(reinterpret_cast<uv_handle_t*>(timer), nullptr);
      },
      60, 0);
  runFor(*s, 200);
  EXPECT_EQ(probes_.cancels["gone"], 1);
  EXPECT_EQ(results_.count("gone"), 0u);
  EXPECT_GE(probes_.starts["kept"], 6);
}

TEST_F(SchedulerTest, InitialStartsAreSpreadOverTheFirstInterval) {
  auto s = make({.max_in_flight = 200, .jitter = 0, .min_gap = std::chrono::milliseconds(1)});
  std::vector<ScheduledEndpoint> many;
  for (int i = 0; i < 100; ++i) {
    many.push_back(endpoint("e" + std::to_string(i), 1000));
  }
  s->setEndpoints(many);
  // Half the interval: with a uniform spread about half have started, not all, not none.
  runFor(*s, 500);
  size_t started = probes_.starts.size();
  EXPECT_GT(started, 25u);
  EXPECT_LT(started, 75u);
}

}  // namespace
}  // namespace mailprobe
