// The HTTP listener under many concurrent and slow scrapers, while `mailprobed run` probes the
// real Dovecot and Postfix every 2 s: the probes keep their schedule (the event loop never waits
// for a scrape), a normal scrape is still answered promptly while slow clients hold connections,
// slow clients are dropped, and nothing is left behind once the hammer stops.
//
// The hammer, twice (the first round also brings every worker thread and its allocator arena
// to its working size): 64 connections in a loop on /metrics, /status.json and /; 8 clients
// that send their request one byte per second (slowloris); 8 that read the answer one byte per
// second with a 1 KiB receive buffer (/metrics, streamed, and /status.json); and one normal
// scraper timing a GET /metrics every 200 ms.

#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "tests/fakes/mail_env.h"
#include "tests/fakes/mail_env_config.h"
#include "tests/fakes/process_watch.h"
#include "tests/fakes/subprocess.h"

namespace mailprobe {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using testing::connectLoopback;
using testing::Subprocess;

// Under AddressSanitizer the daemon renders about ten times slower, and a scrape waits behind
// the hammer's as long: the bounds on scrape times and counts are that much looser there. The
// schedule, the loop's CPU, the slow clients' drop and the descriptors keep theirs.
constexpr double kSlower = testing::kAddressSanitizer ? 10 : 1;
constexpr int kFastScrapers = 64;
constexpr int kSlowSenders = 8;
constexpr int kSlowReaders = 8;
constexpr auto kHammer = 8s;
// The listener drops a request that has not fully arrived after this (http_server.cpp).
constexpr auto kRequestTimeout = 5s;

double seconds(Clock::duration d) {
  return std::chrono::duration<double>(d).count();
}

// Readable within `timeout`, or the peer closed: true.
bool readable(int fd, std::chrono::milliseconds timeout) {
  pollfd p{fd, POLLIN, 0};
  return ::poll(&p, 1, static_cast<int>(timeout.count())) > 0;
}

// What the hammer saw.
struct HammerReport {
  uint64_t fast_scrapes = 0;
  uint64_t fast_failures = 0;
  std::vector<double> normal_latency;  // seconds, one per normal scrape
  int normal_failures = 0;
  double max_loop_lag = 0;           // mailprobe_event_loop_lag_seconds, as scraped
  std::vector<double> slow_dropped;  // seconds from connect to the server's close
  uint64_t slow_bytes_read = 0;
  int max_fds = 0;  // the daemon's, sampled during the hammer
};

// Every client of one round; the destructor stops and joins them all, even after a failed
// assertion.
class Hammer {
 public:
  Hammer(uint16_t port, pid_t daemon) : port_(port), daemon_(daemon) {}
  ~Hammer() { stop(); }

  void start() {
    const char* paths[] = {"/metrics", "/status.json", "/"};
    for (int i = 0; i < kFastScrapers; ++i) {
      threads_.emplace_back([this, path = paths[i % 3]] {
        while (!stop_) {
          testing::HttpReply r = testing::httpGet(port_, path, 30s);
          (r.status == 200 ? fast_ok_ : fast_failed_)++;
        }
      });
    }
    for (int i = 0; i < kSlowSenders; ++i) {
      threads_.emplace_back([this] { slowSender(); });
    }
    for (int i = 0; i < kSlowReaders; ++i) {
      threads_.emplace_back(
          [this, path = i % 2 == 0 ? "/metrics" : "/status.json"] { slowReader(path); });
    }
    threads_.emplace_back([this] { normalScraper(); });
  }

  HammerReport stop() {
    stop_ = true;
    for (auto& t : threads_) {
      t.join();
    }
    threads_.clear();
    std::lock_guard<std::mutex> lock(mutex_);
    report_.fast_scrapes = fast_ok_;
    report_.fast_failures = fast_failed_;
    return report_;
  }

 private:
  // "GET /metrics ..." one byte per second, until the server closes.
  void slowSender() {
    const std::string request = "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    while (!stop_) {
      int fd = connectLoopback(port_);
      if (fd < 0) {
        std::this_thread::sleep_for(100ms);
        continue;
      }
      auto connected = Clock::now();
      bool closed = false;
      for (size_t i = 0; !stop_ && !closed; i = (i + 1) % request.size()) {
        if (::send(fd, &request[i], 1, MSG_NOSIGNAL) != 1) {
          closed = true;
          break;
        }
        // A second per byte, watching for the server's answer (408) or close meanwhile.
        auto until = Clock::now() + 1s;
        while (!stop_ && !closed && Clock::now() < until) {
          if (readable(fd, 100ms)) {
            char buf[512];
            [[maybe_unused]] ssize_t n = ::recv(fd, buf, sizeof buf, 0);  // 408, or the close
            closed = true;
          }
        }
      }
      if (closed) {
        std::lock_guard<std::mutex> lock(mutex_);
        report_.slow_dropped.push_back(seconds(Clock::now() - connected));
      }
      ::close(fd);
    }
  }

  // A whole request, then its answer one byte per second through a 1 KiB receive buffer.
  void slowReader(const std::string& path) {
    const std::string request = "GET " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    while (!stop_) {
      int fd = connectLoopback(port_, 1024);
      if (fd < 0) {
        std::this_thread::sleep_for(100ms);
        continue;
      }
      ::send(fd, request.data(), request.size(), MSG_NOSIGNAL);
      while (!stop_) {
        char c;
        if (!readable(fd, 1000ms)) {
          continue;
        }
        if (::recv(fd, &c, 1, 0) <= 0) {
          break;
        }
        {
          std::lock_guard<std::mutex> lock(mutex_);
          ++report_.slow_bytes_read;
        }
        for (int i = 0; i < 10 && !stop_; ++i) {
          std::this_thread::sleep_for(100ms);
        }
      }
      ::close(fd);
    }
  }

  // What Prometheus does: GET /metrics, here every 200 ms, timed; and the daemon's descriptors.
  void normalScraper() {
    while (!stop_) {
      auto start = Clock::now();
      testing::HttpReply r = testing::httpGet(port_, "/metrics", 30s);
      double took = seconds(Clock::now() - start);
      int fds = testing::openFdCount(daemon_);
      {
        std::lock_guard<std::mutex> lock(mutex_);
        report_.max_fds = std::max(report_.max_fds, fds);
        if (r.status == 200) {
          report_.normal_latency.push_back(took);
          report_.max_loop_lag =
              std::max(report_.max_loop_lag,
                       testing::sumSamples(r.body, "mailprobe_event_loop_lag_seconds"));
        } else {
          ++report_.normal_failures;
        }
      }
      std::this_thread::sleep_for(200ms);
    }
  }

  uint16_t port_;
  pid_t daemon_;
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> fast_ok_{0};
  std::atomic<uint64_t> fast_failed_{0};
  std::vector<std::thread> threads_;
  std::mutex mutex_;
  HammerReport report_;
};

double quantile(std::vector<double> v, double q) {
  if (v.empty()) {
    return 0;
  }
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(q * static_cast<double>(v.size())))];
}

// The daemon at rest: the fewest descriptors seen over a few samples (probes in flight come
// and go), and the resident memory of the last.
struct AtRest {
  int fds = 0;
  long rss_kib = 0;
};

AtRest atRest(pid_t pid) {
  AtRest r{1 << 30, 0};
  for (int i = 0; i < 20; ++i) {
    r.fds = std::min(r.fds, testing::openFdCount(pid));
    std::this_thread::sleep_for(100ms);
  }
  r.rss_kib = testing::residentKib(pid);
  return r;
}

class HttpHammerTest : public testing::MailEnvSuite {
 protected:
  // The platform's five endpoints behind each certificate variant (six addresses: valid,
  // expired, wrong host, self-signed, missing intermediate, not yet valid), every 2 s: 30 real
  // conversations with TLS and a login each (PLAIN only, to keep Dovecot's share of the two
  // cores small), so that the pages are not trivial to render.
  std::string config(uint16_t listen) const {
    std::string t = testing::daemonConfigToml(
        *env(), listen, "interval = \"2s\"\ntimeout = \"20s\"\nphase_timeout = \"8s\"\n");
    for (const char* address :
         {"127.0.0.1", "127.0.0.4", "127.0.0.5", "127.0.0.6", "127.0.0.7", "127.0.0.8"}) {
      t += "\n" + testing::platformHostToml(*env(), address, "  mechanisms = [\"PLAIN\"]\n");
    }
    return t;
  }
};

TEST_F(HttpHammerTest, ProbesKeepTheirScheduleAndTheListenerHoldsAndLeaksNothing) {
  const uint16_t port = testing::freeLoopbackPort();
  const std::string path = env()->dir() + "/hammer.toml";
  std::ofstream(path) << config(port);
  Subprocess daemon({MAILPROBED_BIN, "run", "--config", path}, {}, env()->dir() + "/hammer.log");
  ASSERT_TRUE(daemon.started());
  nlohmann::json status;
  auto every_endpoint_ran = [](const nlohmann::json& j) {
    if (!j.contains("endpoint_states") || j["endpoint_states"].size() != 30) {
      return false;
    }
    for (const auto& e : j["endpoint_states"]) {
      if (e.value("runs_total", 0) < 2) {
        return false;
      }
    }
    return true;
  };
  ASSERT_TRUE(testing::waitForStatusJson(port, every_endpoint_ran, 60s, &status))
      << status.dump(2).substr(0, 4000) << daemon.output();

  // The event loop runs on the main thread: its CPU time over a quiet stretch as long as a round.
  const pid_t loop_thread = daemon.pid();
  const double quiet_cpu0 = testing::threadCpuSeconds(daemon.pid(), loop_thread);
  std::this_thread::sleep_for(kHammer);
  const double quiet_cpu = testing::threadCpuSeconds(daemon.pid(), loop_thread) - quiet_cpu0;
  const AtRest before = atRest(daemon.pid());
  std::vector<HammerReport> rounds;
  std::vector<double> loop_cpu;  // the loop thread's CPU seconds, per round
  std::vector<AtRest> after;
  // The schedule delay histogram and the run counts, just before and just after each round:
  // what changed between the two happened under the hammer.
  std::map<std::string, double> delays;  // upper bound -> runs started, all rounds together
  double runs = 0;
  double hammered = 0;
  for (int round = 0; round < 2; ++round) {
    const std::string metrics_before = testing::httpGet(port, "/metrics").body;
    auto started_at = Clock::now();
    const double cpu0 = testing::threadCpuSeconds(daemon.pid(), loop_thread);
    {
      Hammer hammer(port, daemon.pid());
      hammer.start();
      std::this_thread::sleep_for(kHammer);
      loop_cpu.push_back(testing::threadCpuSeconds(daemon.pid(), loop_thread) - cpu0);
      rounds.push_back(hammer.stop());
    }
    const std::string metrics_after = testing::httpGet(port, "/metrics").body;
    hammered += seconds(Clock::now() - started_at);
    auto b0 = testing::histogramBuckets(metrics_before, "mailprobe_schedule_delay_seconds");
    auto b1 = testing::histogramBuckets(metrics_after, "mailprobe_schedule_delay_seconds");
    ASSERT_FALSE(b1.empty()) << "mailprobe_schedule_delay_seconds is not exported";
    for (const auto& [le, count] : b1) {
      delays[le] += count - b0[le];
    }
    runs += testing::sumSamples(metrics_after, "mailprobe_endpoint_runs_total") -
            testing::sumSamples(metrics_before, "mailprobe_endpoint_runs_total");
    // Slow connections the server still holds are dropped within the request timeout.
    std::this_thread::sleep_for(kRequestTimeout + 1s);
    after.push_back(atRest(daemon.pid()));
  }
  ASSERT_TRUE(daemon.running()) << daemon.output();

  // (a) The schedule, from the daemon's own histogram of actual minus planned start.
  const double started = delays["+Inf"];
  const double late_100ms = started - delays["0.1"];
  const double late_1s = started - delays["1"];
  // 30 endpoints every 2 s (±10 % jitter): about 15 runs a second, hammer or not.
  EXPECT_GE(runs, 0.8 * 15 * hammered) << "probes fell behind their interval";
  EXPECT_GE(started, runs);
  // A free loop starts nearly every run within a few ms, hammer or not. With every scrape
  // rendered on the loop (tried on purpose) 14 % of the runs of the whole test, quiet stretches
  // included, started more than 100 ms late and the loop lagged 250 ms; rendered on the loop
  // one at a time they stay early, but the loop thread's CPU time shows it (below). Room is
  // left for a loaded two-core machine shared with other work: 5 % of the runs, none 1 s late.
  EXPECT_LE(late_100ms, 0.05 * started) << late_100ms << " of " << started << " runs late > 100 ms";
  EXPECT_EQ(late_1s, 0) << late_1s << " of " << started << " runs late > 1 s";

  for (size_t round = 0; round < rounds.size(); ++round) {
    const HammerReport& r = rounds[round];
    SCOPED_TRACE("round " + std::to_string(round + 1));
    EXPECT_GT(static_cast<double>(r.fast_scrapes), 1000 / kSlower)
        << "the hammer itself did not run";
    EXPECT_EQ(r.fast_failures, 0u);
    EXPECT_LT(r.max_loop_lag, 0.5);
    // The scrapes are rendered on the workers: the loop thread works as it does without them
    // (rendering them there would cost it most of a core: ~2 ms for each of ~500 a second).
    EXPECT_LT(loop_cpu[round], 2 * quiet_cpu + 0.1 * seconds(kHammer))
        << "the loop thread worked " << loop_cpu[round] << " s under the hammer, " << quiet_cpu
        << " s without";
    // (b) A normal scrape, while 16 slow clients hold connections and 64 more hammer.
    EXPECT_EQ(r.normal_failures, 0);
    EXPECT_GE(static_cast<double>(r.normal_latency.size()), 10 / kSlower);
    EXPECT_LT(quantile(r.normal_latency, 0.5), 0.5 * kSlower);
    EXPECT_LT(quantile(r.normal_latency, 1.0), 2.0 * kSlower)
        << "a scrape waited for a slow client";
    // Slow senders are dropped once their request takes longer than the timeout to arrive.
    EXPECT_FALSE(r.slow_dropped.empty());
    EXPECT_LT(quantile(r.slow_dropped, 1.0), seconds(kRequestTimeout) + 3.0);
    // Connections are bounded by the worker threads and the accept queue: 32 + 20, beside
    // the probes' own sockets (30 endpoints, a login connection each at most).
    EXPECT_LT(r.max_fds, before.fds + 32 + 20 + 2 * 30 + 8);
    std::printf(
        "hammer round %zu: %llu scrapes (%.0f/s), normal scrape p50 %.3f s max %.3f s (%zu), "
        "loop lag max %.4f s, loop thread CPU %.2f s (%.2f s in as long without the hammer), "
        "slow senders dropped after %.1f-%.1f s, slow readers read %llu bytes, daemon fds max "
        "%d\n",
        round + 1, static_cast<unsigned long long>(r.fast_scrapes),
        static_cast<double>(r.fast_scrapes) / seconds(kHammer), quantile(r.normal_latency, 0.5),
        quantile(r.normal_latency, 1.0), r.normal_latency.size(), r.max_loop_lag, loop_cpu[round],
        quiet_cpu, quantile(r.slow_dropped, 0.0), quantile(r.slow_dropped, 1.0),
        static_cast<unsigned long long>(r.slow_bytes_read), r.max_fds);
  }

  // (c) Nothing left behind: descriptors back to where they were, and the second round adds no
  // memory to the first (which grows every worker's arena once).
  EXPECT_LE(after[0].fds, before.fds + 2);
  EXPECT_LE(after[1].fds, before.fds + 2);
  if (!testing::kAddressSanitizer) {
    EXPECT_LT(after[1].rss_kib - after[0].rss_kib, 4 * 1024);
  }
  std::string buckets;
  for (const char* le : {"0.001", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1"}) {
    buckets += std::string(" <=") + le + "s: " + std::to_string(static_cast<int>(delays[le]));
  }
  std::printf(
      "schedule: %.0f runs started in %.1f s of hammer (%.0f completed), by delay:%s; "
      "fds at rest %d -> %d -> %d; VmRSS %ld -> %ld -> %ld KiB\n",
      started, hammered, runs, buckets.c_str(), before.fds, after[0].fds, after[1].fds,
      before.rss_kib, after[0].rss_kib, after[1].rss_kib);

  ASSERT_TRUE(daemon.signal(SIGTERM));
  EXPECT_EQ(daemon.wait(10s).value_or(-1), 0) << daemon.output();
}

}  // namespace
}  // namespace mailprobe
