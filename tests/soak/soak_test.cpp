// The soak: `mailprobed run` for minutes (MAILPROBE_SOAK_SECONDS, default 120; an hour for the
// long run) against the real Dovecot and Postfix and against the fault server, at short
// intervals, thousands of probes (~13 a second). After a warm-up (a quarter of the run, at
// least 60 s: the first TLS version scans, every listener worker's first scrape) its open
// descriptors (the fewest seen in 2 s, looked at every 100 ms) and resident memory are sampled
// every 2 s and must not grow: the fewest descriptors of the last quarter of the samples no more
// than those of the first quarter plus 2 (descriptors of the probes in flight come and go; a
// leak raises the floor), the median resident memory of the last quarter no more than that of
// the first quarter plus 1 MiB (a leak of ~1.7 KiB per probe fails the two-minute run, ~40
// bytes per probe the hour). The trend of a
// least-squares fit is reported beside.
//
//   ctest --test-dir build -L soak --output-on-failure                   (the CI run, ~2 min)
//   MAILPROBE_SOAK_SECONDS=3600 ctest --test-dir build -L soak --output-on-failure   (the hour)

#include <signal.h>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "tests/fakes/mail_env.h"
#include "tests/fakes/mail_env_config.h"
#include "tests/fakes/process_watch.h"
#include "tests/fakes/subprocess.h"
#include "tests/fault/fault_server.h"

namespace mailprobe {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using testing::Fault;
using testing::FaultProtocol;
using testing::FaultServer;
using testing::Subprocess;

constexpr auto kSampleEvery = 2s;
constexpr const char* kFaultAddress = "127.0.0.10";
constexpr int kFdTolerance = 2;
constexpr long kRssToleranceKib = 1024;

std::chrono::seconds soakDuration() {
  const char* s = std::getenv("MAILPROBE_SOAK_SECONDS");
  long seconds = s != nullptr ? std::strtol(s, nullptr, 10) : 0;
  return std::chrono::seconds(seconds >= 60 ? seconds : 120);
}

std::string readFile(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// One fault endpoint: what the server plays, and what the probe must make of it.
struct FaultEndpoint {
  FaultProtocol protocol;
  Fault fault;
  Security security;
  const char* reason;
};

const FaultEndpoint kFaults[] = {
    {FaultProtocol::Smtp, Fault::Silent, Security::None, "timeout"},
    {FaultProtocol::Imap, Fault::HugeLine, Security::None, "protocol_error"},
    {FaultProtocol::Smtp, Fault::Garbage, Security::None, "protocol_error"},
    {FaultProtocol::Imap, Fault::CloseMidReply, Security::None, "connection_closed"},
    {FaultProtocol::Smtp, Fault::ResetMidConversation, Security::None, "connection_closed"},
    {FaultProtocol::Imap, Fault::TlsAlert, Security::Tls, "tls_handshake_failed"},
    {FaultProtocol::Smtp, Fault::TlsStall, Security::StartTls, "timeout"},
    {FaultProtocol::Imap, Fault::InjectLaterWrite, Security::StartTls, "plaintext_after_starttls"},
    {FaultProtocol::Smtp, Fault::EndlessReplyOverTls, Security::Tls, "protocol_error"},
    {FaultProtocol::Imap, Fault::EchoLogin, Security::Tls, "auth_failed"},
    {FaultProtocol::Smtp, Fault::EchoLogin, Security::StartTls, "auth_failed"},
};

struct Sample {
  double t = 0;  // seconds since the daemon started
  int fds = 0;
  long rss_kib = 0;
  double probes = 0;
};

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

// Least-squares slope of y over t.
double slope(const std::vector<Sample>& s, double (*y)(const Sample&)) {
  double n = static_cast<double>(s.size()), st = 0, sy = 0, stt = 0, sty = 0;
  for (const Sample& x : s) {
    st += x.t;
    sy += y(x);
    stt += x.t * x.t;
    sty += x.t * y(x);
  }
  const double d = n * stt - st * st;
  return d == 0 ? 0 : (n * sty - st * sy) / d;
}

class SoakTest : public testing::MailEnvSuite {
 protected:
  void SetUp() override {
    MailEnvSuite::SetUp();
    if (IsSkipped() || HasFatalFailure()) {
      return;
    }
    for (const FaultEndpoint& f : kFaults) {
      testing::FaultOptions o;
      o.protocol = f.protocol;
      o.fault = f.fault;
      o.via_starttls = f.security == Security::StartTls;
      o.address = kFaultAddress;
      o.tls.key_pem = readFile(env()->dir() + "/certs/valid.key");
      o.tls.cert_pem = readFile(env()->dir() + "/certs/valid.crt");
      faults_.push_back(std::make_unique<FaultServer>(o));
    }
  }

  // The five platform endpoints behind three certificate variants (valid, expired,
  // self-signed: the login goes on regardless) every 2 s, the valid ones with every mechanism,
  // the relay rules of 25 and 587 every 5 s from both vantages; each fault endpoint every 2 s
  // with a 1 s phase timeout.
  std::string config(uint16_t listen) const {
    std::string t = testing::daemonConfigToml(
        *env(), listen, "interval = \"2s\"\ntimeout = \"20s\"\nphase_timeout = \"8s\"\n");
    t += testing::platformHostToml(*env(), "127.0.0.1") + "  [host.relay]\n  local_recipient = \"" +
         env()->user() + "\"\n  ports = [" + std::to_string(env()->smtpPort()) + ", " +
         std::to_string(env()->submissionPort()) +
         "]\n  interval = \"5s\"\n"
         "    [[host.relay.vantage]]\n    name = \"office\"\n    source_address = \"127.0.0.2\"\n"
         "    trusted = true\n"
         "    [[host.relay.vantage]]\n    name = \"outside\"\n    source_address = \"127.0.0.3\"\n";
    for (const char* address : {"127.0.0.4", "127.0.0.6"}) {
      t += "\n" + testing::platformHostToml(*env(), address, "  mechanisms = [\"PLAIN\"]\n");
    }
    // The fault servers, on an address of their own with the valid certificate, and an account
    // of their own: the logins they refuse must not hold back the probe account's.
    t += std::string("\n[[host]]\nname = \"localhost\"\naddresses = [\"") + kFaultAddress +
         "\"]\ninterval = \"2s\"\nphase_timeout = \"1s\"\ntimeout = \"5s\"\n"
         "  [host.account]\n  user = \"echo@fault.test\"\n  password_file = \"" +
         env()->dir() + "/password\"\n";
    for (size_t i = 0; i < faults_.size(); ++i) {
      const FaultEndpoint& f = kFaults[i];
      t += std::string("  [[host.endpoint]]\n  service = \"") + std::string(toString(f.protocol)) +
           "\"\n  port = " + std::to_string(faults_[i]->port()) + "\n  security = \"" +
           std::string(toString(f.security)) + "\"\n" +
           (f.security == Security::None ? "  auth = \"none\"\n" : "");
    }
    return t;
  }

  std::vector<std::unique_ptr<FaultServer>> faults_;
};

// Probe runs so far: endpoint runs and relay runs, from /metrics.
double probesDone(const std::string& metrics) {
  return testing::sumSamples(metrics, "mailprobe_endpoint_runs_total") +
         testing::sumSamples(metrics, "mailprobe_relay_runs_total");
}

TEST_F(SoakTest, DescriptorsAndMemoryStayFlatOverThousandsOfProbes) {
  const auto duration = soakDuration();
  const auto warm_up = std::max<std::chrono::seconds>(60s, duration / 4);
  const uint16_t port = testing::freeLoopbackPort();
  const std::string path = env()->dir() + "/soak.toml";
  std::ofstream(path) << config(port);
  Subprocess daemon({MAILPROBED_BIN, "run", "--config", path}, {}, env()->dir() + "/soak.log");
  ASSERT_TRUE(daemon.started());
  const auto started = Clock::now();
  auto elapsed = [&] { return std::chrono::duration<double>(Clock::now() - started).count(); };
  std::printf("soak: %lld s (warm-up %lld s), %zu fault servers, sampling every %lld s\n",
              static_cast<long long>(duration.count()), static_cast<long long>(warm_up.count()),
              faults_.size(), static_cast<long long>(kSampleEvery.count()));
  std::fflush(stdout);

  // Every listener worker serves a scrape once: each touches its stack and buffers the first
  // time (32 workers, ~50 KiB each), which would otherwise show as growth while the periodic
  // scrapes below reach them one after the other.
  nlohmann::json status;
  ASSERT_TRUE(testing::waitForStatusJson(
      port, [](const nlohmann::json& j) { return j.contains("endpoints"); }, 30s, &status))
      << daemon.output();
  {
    std::vector<std::thread> burst;
    for (int i = 0; i < 64; ++i) {
      burst.emplace_back([port] { testing::httpGet(port, "/metrics", 30s); });
    }
    for (auto& t : burst) {
      t.join();
    }
  }

  // Sampled (and scraped, as Prometheus would) from the start; kept after the warm-up, which
  // also covers the first TLS version scans (within the first minute).
  std::vector<Sample> samples;
  double probes_at_warm_up = -1;
  while (Clock::now() - started < duration) {
    // The descriptors every 100 ms, the fewest kept: the closer to none in flight.
    Sample s;
    s.fds = 1 << 30;
    for (auto until = Clock::now() + kSampleEvery; Clock::now() < until;) {
      s.fds = std::min(s.fds, testing::openFdCount(daemon.pid()));
      std::this_thread::sleep_for(100ms);
    }
    ASSERT_TRUE(daemon.running()) << daemon.output();
    s.t = elapsed();
    s.rss_kib = testing::residentKib(daemon.pid());
    s.probes = probesDone(testing::httpGet(port, "/metrics", 30s).body);
    if (Clock::now() - started < warm_up) {
      continue;
    }
    if (probes_at_warm_up < 0) {
      probes_at_warm_up = s.probes;
    }
    samples.push_back(s);
    if (samples.size() % 5 == 1) {
      std::printf("soak: %5.0f s  %6.0f probes  %3d fds  %6ld KiB\n", s.t, s.probes, s.fds,
                  s.rss_kib);
      std::fflush(stdout);
    }
  }
  ASSERT_GE(samples.size(), 8u);

  // The last word on every endpoint: the real ones work, each fault endpoint fails its way.
  status = nlohmann::json::parse(testing::httpGet(port, "/status.json", 30s).body, nullptr, false);
  ASSERT_FALSE(status.is_discarded());
  std::map<uint16_t, std::string> expected;
  for (size_t i = 0; i < faults_.size(); ++i) {
    expected[faults_[i]->port()] = kFaults[i].reason;
  }
  int real = 0;
  for (const auto& e : status["endpoints"]) {
    auto it = expected.find(e["port"].get<uint16_t>());
    if (it != expected.end()) {
      // A refused login may be followed by held-back ones (the per-account back-off).
      bool held_back = it->second == "auth_failed" && e["reason"] == "auth_backoff";
      EXPECT_TRUE(e["reason"] == it->second || held_back) << e.dump();
    } else if (e["address"] == "127.0.0.1") {
      ++real;
      EXPECT_EQ(e["success"], true) << e.dump();
    } else {
      ++real;  // the expired and self-signed variants: the certificate is the only failure
      EXPECT_TRUE(e["reason"] == "cert_expired" || e["reason"] == "cert_self_signed") << e.dump();
    }
  }
  EXPECT_EQ(real, 15);
  const std::string metrics = testing::httpGet(port, "/metrics", 30s).body;
  const double relay_runs = testing::sumSamples(metrics, "mailprobe_relay_runs_total");
  const double endpoint_runs = testing::sumSamples(metrics, "mailprobe_endpoint_runs_total");

  ASSERT_TRUE(daemon.signal(SIGTERM));
  EXPECT_EQ(daemon.wait(10s).value_or(-1), 0) << daemon.output();

  // Thousands of probes: 26 endpoints every 2 s and 2 relay checks every 5 s make ~13 runs a
  // second.
  const double total = endpoint_runs + relay_runs;
  EXPECT_GE(total, 10.0 * static_cast<double>(duration.count())) << "probes fell behind";
  size_t connections = 0;
  for (const auto& f : faults_) {
    connections += f->connections();
  }

  // The bounds, first quarter of the samples against the last.
  const size_t q = std::max<size_t>(1, samples.size() / 4);
  auto window = [&](size_t from, size_t to) {
    std::vector<Sample> w(samples.begin() + static_cast<long>(from),
                          samples.begin() + static_cast<long>(to));
    int min_fds = 1 << 30;
    std::vector<double> rss;
    for (const Sample& s : w) {
      min_fds = std::min(min_fds, s.fds);
      rss.push_back(static_cast<double>(s.rss_kib));
    }
    return std::pair{min_fds, median(rss)};
  };
  const auto [fds_first, rss_first] = window(0, q);
  const auto [fds_last, rss_last] = window(samples.size() - q, samples.size());
  // The fitted trend over the measured window, for the record (a short window is noisy).
  const double window_seconds = samples.back().t - samples.front().t;
  const double fd_trend =
      slope(samples, [](const Sample& s) { return double(s.fds); }) * window_seconds;
  const double rss_trend =
      slope(samples, [](const Sample& s) { return double(s.rss_kib); }) * window_seconds;
  std::printf(
      "soak: %.0f probe runs in %lld s (%.0f endpoint runs, %.0f relay runs; %.0f after the "
      "warm-up), %zu connections to the fault servers; fds (fewest) %d -> %d, fitted trend "
      "%+.1f; VmRSS (median) %.0f -> %.0f KiB, fitted trend %+.0f KiB; %zu samples over %.0f "
      "s\n",
      total, static_cast<long long>(duration.count()), endpoint_runs, relay_runs,
      samples.back().probes - probes_at_warm_up, connections, fds_first, fds_last, fd_trend,
      rss_first, rss_last, rss_trend, samples.size(), window_seconds);
  EXPECT_LE(fds_last, fds_first + kFdTolerance) << "descriptors leak";
  EXPECT_LE(rss_last, rss_first + static_cast<double>(kRssToleranceKib)) << "memory grows";
}

}  // namespace
}  // namespace mailprobe
