// probe_bench: the mailprobed side of bench/run.sh. It measures its own CPU (getrusage
// RUSAGE_SELF, user + sys), so whatever else runs on the machine (the mail servers, the other
// tools) does not count, and prints one line of key=value pairs for run.sh to parse.
//
//   probe_bench probe    --target KIND=PORT ... --count N --concurrency C [--warmup W]
//                        [--ca-file F] [--tls-context per-probe|shared] [--resume yes]
//       N endpoint probes (EndpointProbe, auth skipped: greeting, capabilities, STARTTLS,
//       handshake, capabilities, logout/quit) at C in flight on one libuv loop; several targets
//       are probed in turn. `shared` is what the daemon does (a TlsContextCache: one context
//       per distinct TLS options, checked against the CA file on every probe); `per-probe` is
//       what it did before (a TlsContext, hence an SSL_CTX and a CA load, per probe). With
//       --resume yes, every endpoint has tls_resumption on (resumed=N counts the handshakes
//       that resumed).
//   probe_bench greeting --port P --count N [--service imap|smtp]
//       the plaintext floor: blocking connect, read the first line of the greeting, close.
//   probe_bench handshake --port P --count N [--resume yes] [--ca-file F]
//       the in-process TLS floor on an implicit-TLS port (see handshakeMode).
//   probe_bench schedule --target KIND=PORT ... --endpoints E --interval-ms I --cap C
//                        --seconds S [--ca-file F]
//       the real Scheduler (daemon/scheduler.h) with E endpoints: start drift (actual minus
//       planned start) p50/p99/max, the same over the runs that found a free slot at their
//       planned time (timer_drift: the timer's own lateness; the others waited for a slot),
//       probes, CPU, and the most probes ever in flight.
// KIND is imap-starttls, imaps, smtp-starttls or smtps; every probe goes to 127.0.0.1 with the
// name "localhost" for SNI and verification. Every loop is bounded by --max-seconds.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "bench/proc_status.h"
#include "daemon/scheduler.h"
#include "probes/endpoint_probe.h"
#include "probes/tls_context_cache.h"
#include "probes/tls_engine.h"

#include <openssl/err.h>
#include <openssl/ssl.h>

namespace mailprobe {
namespace {

[[noreturn]] void usage(const std::string& why) {
  std::fprintf(stderr,
               "probe_bench: %s\n"
               "usage: probe_bench probe --target KIND=PORT... --count N --concurrency C "
               "[--warmup W] [--ca-file F] [--tls-context per-probe|shared] [--resume yes]\n"
               "       probe_bench greeting --port P --count N [--service imap|smtp]\n"
               "       probe_bench handshake --port P --count N [--resume yes] [--ca-file F]\n"
               "       probe_bench schedule --target KIND=PORT... --endpoints E --interval-ms I "
               "--cap C --seconds S [--ca-file F]\n"
               "KIND: imap-starttls, imaps, smtp-starttls, smtps\n",
               why.c_str());
  std::exit(2);
}

struct Args {
  std::string mode;
  std::vector<std::string> targets;
  std::string ca_file;
  std::string tls_context = "shared";
  std::string service = "imap";
  size_t count = 100;
  size_t concurrency = 8;
  size_t warmup = 20;
  uint16_t port = 0;
  size_t endpoints = 100;
  int64_t interval_ms = 1000;
  size_t cap = 64;
  double seconds = 10;
  double max_seconds = 900;
  bool resume = false;
};

size_t number(const std::string& flag, const std::string& text) {
  try {
    size_t used = 0;
    unsigned long long v = std::stoull(text, &used);
    if (used == text.size()) {
      return static_cast<size_t>(v);
    }
  } catch (const std::exception&) {
  }
  usage(flag + " wants a number, not '" + text + "'");
}

Args parseArgs(int argc, char** argv) {
  if (argc < 2) {
    usage("no mode");
  }
  Args a;
  a.mode = argv[1];
  for (int i = 2; i < argc; ++i) {
    std::string flag = argv[i];
    if (i + 1 >= argc) {
      usage(flag + " needs a value");
    }
    std::string value = argv[++i];
    if (flag == "--target") {
      a.targets.push_back(value);
    } else if (flag == "--ca-file") {
      a.ca_file = value;
    } else if (flag == "--tls-context") {
      if (value != "per-probe" && value != "shared") {
        usage("--tls-context is per-probe or shared");
      }
      a.tls_context = value;
    } else if (flag == "--resume") {
      a.resume = value == "yes";
    } else if (flag == "--service") {
      a.service = value;
    } else if (flag == "--count") {
      a.count = number(flag, value);
    } else if (flag == "--concurrency") {
      a.concurrency = std::max<size_t>(1, number(flag, value));
    } else if (flag == "--warmup") {
      a.warmup = number(flag, value);
    } else if (flag == "--port") {
      a.port = static_cast<uint16_t>(number(flag, value));
    } else if (flag == "--endpoints") {
      a.endpoints = std::max<size_t>(1, number(flag, value));
    } else if (flag == "--interval-ms") {
      a.interval_ms = static_cast<int64_t>(std::max<size_t>(1, number(flag, value)));
    } else if (flag == "--cap") {
      a.cap = std::max<size_t>(1, number(flag, value));
    } else if (flag == "--seconds") {
      a.seconds = static_cast<double>(number(flag, value));
    } else if (flag == "--max-seconds") {
      a.max_seconds = static_cast<double>(number(flag, value));
    } else {
      usage("unknown flag " + flag);
    }
  }
  return a;
}

EndpointSpec specFor(const std::string& target, const std::string& ca_file) {
  auto eq = target.find('=');
  if (eq == std::string::npos) {
    usage("--target is KIND=PORT, not " + target);
  }
  std::string kind = target.substr(0, eq);
  EndpointSpec spec;
  spec.host = "localhost";
  spec.addresses = {"127.0.0.1"};
  spec.family = AddressFamily::V4;
  spec.port = static_cast<uint16_t>(number("--target", target.substr(eq + 1)));
  spec.auth = AuthPolicy::Skip;
  spec.tls.ca_file = ca_file;
  if (kind == "imap-starttls") {
    spec.service = Service::Imap;
    spec.security = Security::StartTls;
  } else if (kind == "imaps") {
    spec.service = Service::Imap;
    spec.security = Security::Tls;
  } else if (kind == "smtp-starttls") {
    spec.service = Service::Smtp;
    spec.security = Security::StartTls;
  } else if (kind == "smtps") {
    spec.service = Service::Smtp;
    spec.security = Security::Tls;
  } else {
    usage("unknown kind " + kind);
  }
  return spec;
}

double seconds(const timeval& t) {
  return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) / 1e6;
}

// User + system CPU of this process.
double cpuSeconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return seconds(u.ru_utime) + seconds(u.ru_stime);
}

// The system (kernel) part alone: the system calls, which callgrind does not count.
double sysSeconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return seconds(u.ru_stime);
}

double wallSeconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

double percentile(std::vector<double> v, double p) {
  if (v.empty()) {
    return 0;
  }
  std::sort(v.begin(), v.end());
  size_t i = static_cast<size_t>(p * static_cast<double>(v.size() - 1) + 0.5);
  return v[std::min(i, v.size() - 1)];
}

// A timer that ends a run that takes too long (a hung server must not hang the benchmark).
class Guard {
 public:
  Guard(uv_loop_t* loop, double seconds, std::function<void()> expired)
      : expired_(std::move(expired)) {
    uv_timer_init(loop, &timer_);
    timer_.data = this;
    uv_timer_start(
        &timer_, [](uv_timer_t* t) { static_cast<Guard*>(t->data)->expired_(); },
        static_cast<uint64_t>(seconds * 1000), 0);
  }
  void close() {
    if (!uv_is_closing(reinterpret_cast<uv_handle_t*>(&timer_))) {
      uv_close(reinterpret_cast<uv_handle_t*>(&timer_), nullptr);
    }
  }

 private:
  uv_timer_t timer_;
  std::function<void()> expired_;
};

// Probe runs counted: a run is good when every address succeeded; failures by reason@phase.
struct Tally {
  size_t ok = 0;
  size_t failed = 0;
  size_t resumed = 0;  // addresses whose handshake resumed a session
  std::map<std::string, size_t> reasons;

  void record(const std::vector<ProbeResult>& results) {
    bool good = !results.empty();
    for (const auto& r : results) {
      resumed += r.tls && r.tls->resumed ? 1 : 0;
      if (!r.success) {
        good = false;
        ++reasons[std::string(toString(r.reason)) + "@" + std::string(toString(r.phase))];
      }
    }
    ++(good ? ok : failed);
  }

  std::string reasonsText() const {
    std::string out;
    for (const auto& [reason, n] : reasons) {
      out += (out.empty() ? "" : ",") + reason + ":" + std::to_string(n);
    }
    return out.empty() ? "-" : out;
  }
};

// N probes, C in flight, the targets in turn.
class ProbeBatch {
 public:
  ProbeBatch(uv_loop_t* loop, const std::vector<EndpointSpec>& specs, TlsContextCache* contexts,
             size_t concurrency)
      : loop_(loop), specs_(specs), contexts_(contexts), concurrency_(concurrency) {}

  // Runs `count` probes to completion; false if the guard expired first.
  bool run(size_t count, double max_seconds) {
    total_ = count;
    started_ = finished_ = 0;
    bool expired = false;
    Guard guard(loop_, max_seconds, [&] {
      expired = true;
      total_ = started_;
      for (auto& [id, probe] : live_) {
        probe->cancel();
      }
      live_.clear();
      guard_->close();
    });
    guard_ = &guard;
    launchMore();
    if (total_ == 0) {
      guard.close();
    }
    uv_run(loop_, UV_RUN_DEFAULT);
    return !expired;
  }

  Tally tally;

 private:
  void launchMore() {
    while (started_ < total_ && started_ - finished_ < concurrency_) {
      size_t i = started_++;
      size_t t = i % specs_.size();
      uint64_t id = next_id_++;
      live_[id] = EndpointProbe::start(loop_, specs_[t], Credentials{}, contexts_,
                                       [this, id](std::vector<ProbeResult> results) {
                                         live_.erase(id);
                                         ++finished_;
                                         tally.record(results);
                                         launchMore();
                                         if (finished_ == total_) {
                                           guard_->close();
                                         }
                                       });
    }
  }

  uv_loop_t* loop_;
  const std::vector<EndpointSpec>& specs_;
  TlsContextCache* contexts_;
  size_t concurrency_;
  size_t total_ = 0;
  size_t started_ = 0;
  size_t finished_ = 0;
  uint64_t next_id_ = 0;
  Guard* guard_ = nullptr;
  std::map<uint64_t, EndpointProbe*> live_;
};

int probeMode(const Args& a) {
  if (a.targets.empty()) {
    usage("probe needs at least one --target");
  }
  long rss_idle = statusKib("VmRSS");
  std::vector<EndpointSpec> specs;
  for (const auto& t : a.targets) {
    specs.push_back(specFor(t, a.ca_file));
    specs.back().tls.resumption = a.resume;
  }
  TlsContextCache cache;
  uv_loop_t loop;
  uv_loop_init(&loop);
  ProbeBatch batch(&loop, specs, a.tls_context == "shared" ? &cache : nullptr, a.concurrency);
  bool completed = batch.run(a.warmup, a.max_seconds);
  size_t warm_failed = batch.tally.failed;
  batch.tally = Tally{};

  double cpu0 = cpuSeconds();
  double sys0 = sysSeconds();
  double wall0 = wallSeconds();
  completed = batch.run(a.count, a.max_seconds) && completed;
  double cpu = cpuSeconds() - cpu0;
  double sys = sysSeconds() - sys0;
  double wall = wallSeconds() - wall0;
  int closed = uv_loop_close(&loop);

  const Tally& t = batch.tally;
  size_t done = t.ok + t.failed;
  std::string kinds;
  for (const auto& t : a.targets) {
    if (!kinds.empty()) {
      kinds += '+';
    }
    kinds.append(t, 0, t.find('='));
  }
  std::printf(
      "mode=probe kind=%s tls_context=%s resume=%d concurrency=%zu probes=%zu ok=%zu "
      "failed=%zu resumed=%zu warmup_failed=%zu cpu_s=%.4f sys_s=%.4f cpu_ms_per_probe=%.4f "
      "probes_per_cpu_s=%.1f wall_s=%.3f "
      "probes_per_wall_s=%.1f rss_idle_kib=%ld rss_kib=%ld hwm_kib=%ld completed=%d "
      "loop_closed=%d reasons=%s\n",
      kinds.c_str(), a.tls_context.c_str(), a.resume ? 1 : 0, a.concurrency, done, t.ok, t.failed,
      t.resumed, warm_failed, cpu, sys, done ? 1000.0 * cpu / static_cast<double>(done) : 0,
      cpu > 0 ? static_cast<double>(done) / cpu : 0, wall,
      wall > 0 ? static_cast<double>(done) / wall : 0, rss_idle, statusKib("VmRSS"),
      statusKib("VmHWM"), completed ? 1 : 0, closed == 0 ? 1 : 0, t.reasonsText().c_str());
  return completed && t.failed == 0 && warm_failed == 0 ? 0 : 1;
}

// A blocking TCP connection to 127.0.0.1:port with a 5 s receive timeout; -1 on failure.
int connectLoopback(uint16_t port) {
  sockaddr_in sin{};
  sin.sin_family = AF_INET;
  sin.sin_port = htons(port);
  inet_pton(AF_INET, "127.0.0.1", &sin.sin_addr);
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    return -1;
  }
  timeval tv{5, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&sin), sizeof sin) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

// The plaintext floor: what connecting and reading a greeting costs, nothing more.
int greetingMode(const Args& a) {
  if (a.port == 0) {
    usage("greeting needs --port");
  }
  // A greeting is complete at its first line for IMAP ("* OK ..."), at "220 " for SMTP.
  const std::string last = a.service == "smtp" ? "220 " : "* ";
  size_t ok = 0;
  double deadline = wallSeconds() + a.max_seconds;
  auto one = [&]() -> bool {
    int fd = connectLoopback(a.port);
    if (fd < 0) {
      return false;
    }
    std::string got;
    char buf[4096];
    while (got.find("\r\n") == std::string::npos) {
      ssize_t n = ::read(fd, buf, sizeof buf);
      if (n <= 0) {
        break;
      }
      got.append(buf, static_cast<size_t>(n));
    }
    ::close(fd);
    return got.rfind(last, 0) == 0 && got.find("\r\n") != std::string::npos;
  };
  for (size_t i = 0; i < a.warmup; ++i) {
    one();
  }
  double cpu0 = cpuSeconds();
  double wall0 = wallSeconds();
  size_t done = 0;
  for (; done < a.count && wallSeconds() < deadline; ++done) {
    ok += one() ? 1 : 0;
  }
  double cpu = cpuSeconds() - cpu0;
  double wall = wallSeconds() - wall0;
  std::printf(
      "mode=greeting service=%s probes=%zu ok=%zu failed=%zu cpu_s=%.4f cpu_ms_per_probe=%.4f "
      "wall_s=%.3f rss_kib=%ld\n",
      a.service.c_str(), done, ok, done - ok, cpu,
      done ? 1000.0 * cpu / static_cast<double>(done) : 0, wall, statusKib("VmRSS"));
  return ok == a.count ? 0 : 1;
}

// The in-process TLS floor: a blocking OpenSSL client with one shared context (TlsContext, the
// same CA file, SNI and host name check), connect, full handshake, read the greeting's first
// line (which also takes in TLS 1.3 session tickets), close_notify, close. With --resume, each
// connection offers the session of the previous one: what per-endpoint resumption would cost.
int handshakeMode(const Args& a) {
  if (a.port == 0) {
    usage("handshake needs --port");
  }
  std::string error;
  TlsOptions options;
  options.ca_file = a.ca_file;
  auto ctx = TlsContext::create(options, &error);
  if (!ctx) {
    std::fprintf(stderr, "probe_bench: %s\n", error.c_str());
    return 1;
  }
  // Keep tickets in our hands, not in OpenSSL's internal client cache.
  SSL_CTX_set_session_cache_mode(ctx->get(), SSL_SESS_CACHE_OFF);
  SSL_SESSION* session = nullptr;
  size_t resumed = 0;
  std::string version;
  auto one = [&]() -> bool {
    int fd = connectLoopback(a.port);
    if (fd < 0) {
      return false;
    }
    bool good = false;
    SSL* ssl = SSL_new(ctx->get());
    if (ssl != nullptr) {
      SSL_set_fd(ssl, fd);
      SSL_set_tlsext_host_name(ssl, "localhost");
      SSL_set1_host(ssl, "localhost");
      if (session != nullptr && a.resume) {
        SSL_set_session(ssl, session);
      }
      if (SSL_connect(ssl) == 1 && SSL_get_verify_result(ssl) == X509_V_OK) {
        std::string got;
        char buf[4096];
        while (got.find('\n') == std::string::npos) {
          int n = SSL_read(ssl, buf, sizeof buf);
          if (n <= 0) {
            break;
          }
          got.append(buf, static_cast<size_t>(n));
        }
        good = got.find('\n') != std::string::npos;
        resumed += SSL_session_reused(ssl) == 1 ? 1 : 0;
        version = SSL_get_version(ssl);
        if (a.resume) {
          SSL_SESSION_free(session);
          session = SSL_get1_session(ssl);
        }
        SSL_shutdown(ssl);
      }
    }
    SSL_free(ssl);
    ::close(fd);
    ERR_clear_error();
    return good;
  };
  for (size_t i = 0; i < a.warmup; ++i) {
    one();
  }
  resumed = 0;
  double cpu0 = cpuSeconds();
  double wall0 = wallSeconds();
  double deadline = wall0 + a.max_seconds;
  size_t done = 0;
  size_t ok = 0;
  for (; done < a.count && wallSeconds() < deadline; ++done) {
    ok += one() ? 1 : 0;
  }
  double cpu = cpuSeconds() - cpu0;
  double wall = wallSeconds() - wall0;
  SSL_SESSION_free(session);
  std::printf(
      "mode=handshake resume=%d version=%s probes=%zu ok=%zu failed=%zu resumed=%zu cpu_s=%.4f "
      "cpu_ms_per_probe=%.4f wall_s=%.3f rss_kib=%ld\n",
      a.resume ? 1 : 0, version.c_str(), done, ok, done - ok, resumed, cpu,
      done ? 1000.0 * cpu / static_cast<double>(done) : 0, wall, statusKib("VmRSS"));
  return ok == a.count ? 0 : 1;
}

// The scheduler's result callback gets the endpoint results either as such or inside a
// RunResults (with relay cells); both are accepted.
[[maybe_unused]] const std::vector<ProbeResult>& endpointResults(
    const std::vector<ProbeResult>& r) {
  return r;
}
template <class Results>
auto endpointResults(const Results& r) -> decltype((r.endpoints)) {
  return r.endpoints;
}

int scheduleMode(const Args& a) {
  if (a.targets.empty()) {
    usage("schedule needs at least one --target");
  }
  uv_loop_t loop;
  uv_loop_init(&loop);
  std::vector<double> drifts;
  Tally tally;
  Scheduler::Options options;
  options.max_in_flight = a.cap;
  TlsContextCache contexts;  // as the daemon's
  // Probes in flight over time (loop ms, count after the change) and each start (loop ms,
  // drift), to tell a run that found every slot taken at its planned time (it waits in the
  // queue: by design, the cap holds) from one whose timer fired late.
  std::vector<std::pair<uint64_t, size_t>> in_flight;
  std::vector<std::pair<uint64_t, double>> starts;
  Scheduler* self = nullptr;
  Scheduler scheduler(
      &loop, options,
      [&](const std::string&, auto results) {
        tally.record(endpointResults(results));
        in_flight.emplace_back(uv_now(&loop), self->inFlight());
      },
      [&](const std::string&, double drift) {
        drifts.push_back(drift);
        in_flight.emplace_back(uv_now(&loop), self->inFlight());
        starts.emplace_back(uv_now(&loop), drift);
      },
      &contexts);
  self = &scheduler;
  std::vector<ScheduledEndpoint> endpoints;
  for (size_t i = 0; i < a.endpoints; ++i) {
    const std::string& target = a.targets[i % a.targets.size()];
    ScheduledEndpoint e;
    e.spec = specFor(target, a.ca_file);
    e.key = "bench" + std::to_string(i) + "|" + target;
    e.interval = std::chrono::milliseconds(a.interval_ms);
    endpoints.push_back(std::move(e));
  }
  long rss_idle = statusKib("VmRSS");
  double cpu0 = cpuSeconds();
  double wall0 = wallSeconds();
  scheduler.setEndpoints(std::move(endpoints));
  uv_timer_t stopper;
  uv_timer_init(&loop, &stopper);
  stopper.data = &scheduler;
  uv_timer_start(
      &stopper,
      [](uv_timer_t* t) {
        static_cast<Scheduler*>(t->data)->stop(nullptr);
        uv_close(reinterpret_cast<uv_handle_t*>(t), nullptr);
      },
      static_cast<uint64_t>(std::min(a.seconds, a.max_seconds) * 1000), 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  double cpu = cpuSeconds() - cpu0;
  double wall = wallSeconds() - wall0;
  int closed = uv_loop_close(&loop);
  size_t done = tally.ok + tally.failed;
  // The timer's own lateness: the drift of the runs that found a free slot at their planned
  // time (in flight then below the cap; the events are in loop time order).
  std::vector<double> timer_drifts;
  for (const auto& [at, drift] : starts) {
    const auto planned = static_cast<uint64_t>(static_cast<double>(at) - 1000 * drift + 0.5);
    auto after = std::upper_bound(in_flight.begin(), in_flight.end(), planned,
                                  [](uint64_t t, const auto& e) { return t < e.first; });
    size_t then = after == in_flight.begin() ? 0 : std::prev(after)->second;
    if (then < a.cap) {
      timer_drifts.push_back(drift);
    }
  }
  std::printf(
      "mode=schedule endpoints=%zu interval_ms=%lld cap=%zu seconds=%.1f starts=%zu probes=%zu "
      "ok=%zu failed=%zu max_in_flight_seen=%zu skipped=%llu drift_p50_ms=%.1f "
      "drift_p99_ms=%.1f drift_max_ms=%.1f waited_for_slot=%zu timer_drift_p50_ms=%.1f "
      "timer_drift_p99_ms=%.1f timer_drift_max_ms=%.1f cpu_s=%.3f cpu_ms_per_probe=%.4f "
      "probes_per_cpu_s=%.1f probes_per_wall_s=%.1f rss_idle_kib=%ld rss_kib=%ld hwm_kib=%ld "
      "loop_closed=%d reasons=%s\n",
      a.endpoints, static_cast<long long>(a.interval_ms), a.cap, wall, drifts.size(), done,
      tally.ok, tally.failed, scheduler.maxInFlightSeen(),
      static_cast<unsigned long long>(scheduler.skippedRuns()), 1000 * percentile(drifts, 0.5),
      1000 * percentile(drifts, 0.99), 1000 * percentile(drifts, 1.0),
      starts.size() - timer_drifts.size(), 1000 * percentile(timer_drifts, 0.5),
      1000 * percentile(timer_drifts, 0.99), 1000 * percentile(timer_drifts, 1.0), cpu,
      done ? 1000.0 * cpu / static_cast<double>(done) : 0,
      cpu > 0 ? static_cast<double>(done) / cpu : 0,
      wall > 0 ? static_cast<double>(done) / wall : 0, rss_idle, statusKib("VmRSS"),
      statusKib("VmHWM"), closed == 0 ? 1 : 0, tally.reasonsText().c_str());
  return scheduler.maxInFlightSeen() <= a.cap ? 0 : 1;
}

}  // namespace
}  // namespace mailprobe

int main(int argc, char** argv) {
  using namespace mailprobe;
  std::signal(SIGPIPE, SIG_IGN);
  Args a = parseArgs(argc, argv);
  if (a.mode == "probe") {
    return probeMode(a);
  }
  if (a.mode == "greeting") {
    return greetingMode(a);
  }
  if (a.mode == "handshake") {
    return handshakeMode(a);
  }
  if (a.mode == "schedule") {
    return scheduleMode(a);
  }
  usage("unknown mode " + a.mode);
}
