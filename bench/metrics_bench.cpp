// metrics_bench: what one /metrics response costs at N endpoints, in CPU time of this thread
// (no network, no loop, nothing else on the machine counted), and how much memory building it
// takes. The snapshot has the shape of bench/run.sh's daemon: 250 hosts x the four kinds, one
// IPv4 address each, every run successful.
//
//   metrics_bench [--endpoints N] [--rounds R]
//
// Prints one key=value line per way of building the text: `streamed` is what /metrics does
// (renderMetrics handing out pieces as it goes), `direct` the same text in one string,
// `families` the way it was first done (buildMetrics + process families, then the text).

#include <time.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "bench/proc_status.h"
#include "daemon/metrics.h"
#include "daemon/snapshot.h"

namespace mailprobe {
namespace {

double threadCpuMs() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) * 1e3 + static_cast<double>(ts.tv_nsec) / 1e6;
}

Snapshot benchSnapshot(size_t endpoints) {
  Snapshot s;
  s.taken_at = 1'800'000'000;
  s.daemon.version = "bench";
  s.daemon.start_timestamp = s.taken_at - 3600;
  s.daemon.max_probes_in_flight = 64;
  const struct {
    Service service;
    Security security;
    uint16_t port;
  } kinds[] = {{Service::Imap, Security::StartTls, 143},
               {Service::Imap, Security::Tls, 993},
               {Service::Smtp, Security::StartTls, 587},
               {Service::Smtp, Security::Tls, 465}};
  for (size_t i = 0; i < endpoints; ++i) {
    const auto& k = kinds[i % 4];
    char host[64];
    std::snprintf(host, sizeof host, "h%04zu.bench.localhost@127.0.0.1", i / 4 + 1);
    EndpointState e;
    e.host = host;
    e.port = k.port;
    e.service = k.service;
    e.security = k.security;
    e.interval_seconds = 20;
    ProbeResult r;
    r.host = host;
    r.address = "127.0.0.1";
    r.port = k.port;
    r.service = k.service;
    r.security = k.security;
    r.success = true;
    r.sentence = "works";
    TlsFacts t;
    t.version = "TLSv1.3";
    t.cipher = "TLS_AES_256_GCM_SHA384";
    t.verify_detail = "ok";
    t.leaf_not_before = s.taken_at - 86400;
    t.leaf_not_after = s.taken_at + 86400 * 30;
    t.chain_not_after = t.leaf_not_after;
    t.subject = "CN=localhost";
    t.issuer = "O=mailenv, CN=mailenv test CA";
    t.accept_all_ok = true;
    r.tls = t;
    r.starttls_offered = k.security == Security::StartTls;
    std::vector<std::string> mechanisms = {"PLAIN", "LOGIN", "CRAM-MD5"};
    if (k.security == Security::StartTls) {
      r.capabilities_before_tls = {"IMAP4rev1", "STARTTLS", "LOGINDISABLED"};
      r.plaintext_login_refused = true;
    }
    r.capabilities_after_tls = {"IMAP4rev1", "SASL-IR", "AUTH=PLAIN", "AUTH=LOGIN"};
    r.auth_after_tls = mechanisms;
    for (Phase p : {Phase::Connect, Phase::Greeting, Phase::Capabilities, Phase::TlsHandshake,
                    Phase::Logout}) {
      r.timings.push_back({p, 0.001 * static_cast<double>(static_cast<int>(p) + 1)});
    }
    if (k.security == Security::StartTls) {
      r.timings.push_back({Phase::StartTls, 0.0004});
    }
    e.last = {r};
    e.last_run_timestamp = s.taken_at - 5;
    e.last_success_timestamp = e.last_run_timestamp;
    e.runs_total = 100;
    for (size_t b = 0; b < e.duration_buckets.size(); ++b) {
      e.duration_buckets[b] = b < 3 ? 0 : 100;
    }
    e.duration_sum = 3.2;
    s.endpoints.push_back(std::move(e));
  }
  return s;
}

// One way of rendering: `render(write)` hands the text to `write` in pieces. The lines are
// counted in a first round, untimed; the timed rounds only add up the sizes, as a socket would
// take the pieces.
template <class Render>
void measure(const char* name, size_t endpoints, int rounds, Render render) {
  std::vector<double> ms;
  size_t bytes = 0;
  size_t samples = 0;
  long hwm_before = statusKib("VmHWM");
  render([&](std::string_view piece) {
    samples += static_cast<size_t>(std::count(piece.begin(), piece.end(), '\n'));
  });
  for (int i = 0; i < rounds; ++i) {
    bytes = 0;
    double c0 = threadCpuMs();
    render([&](std::string_view piece) { bytes += piece.size(); });
    ms.push_back(threadCpuMs() - c0);
  }
  std::sort(ms.begin(), ms.end());
  std::printf(
      "mode=metrics way=%s endpoints=%zu rounds=%d cpu_ms_median=%.1f cpu_ms_min=%.1f "
      "bytes=%zu lines=%zu hwm_growth_kib=%ld\n",
      name, endpoints, rounds, ms[ms.size() / 2], ms.front(), bytes, samples,
      statusKib("VmHWM") - hwm_before);
}

}  // namespace
}  // namespace mailprobe

int main(int argc, char** argv) {
  using namespace mailprobe;
  size_t endpoints = 1000;
  int rounds = 15;
  std::string only;  // one way (for a profiler), or all
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string flag = argv[i];
    if (flag == "--endpoints") {
      endpoints = std::strtoul(argv[i + 1], nullptr, 10);
    } else if (flag == "--rounds") {
      rounds = std::max(1, std::atoi(argv[i + 1]));
    } else if (flag == "--only") {
      only = argv[i + 1];
    } else {
      std::fprintf(stderr,
                   "usage: metrics_bench [--endpoints N] [--rounds R] "
                   "[--only streamed|direct|families]\n");
      return 2;
    }
  }
  const Snapshot s = benchSnapshot(endpoints);
  // Least memory first: a later way would hide the peak of an earlier, smaller one.
  using Write = std::function<void(std::string_view)>;
  // What /metrics serves: pieces written to the connection as they are rendered.
  if (only.empty() || only == "streamed") {
    measure("streamed", endpoints, rounds, [&](const Write& write) { renderMetrics(&s, write); });
  }
  // The same text whole in one string (a client that cannot take chunks, HTTP/1.0).
  if (only.empty() || only == "direct") {
    measure("direct", endpoints, rounds, [&](const Write& write) { write(renderMetrics(&s)); });
  }
  // prometheus-cpp's families, then their text: the way /metrics was served first.
  if (only.empty() || only == "families") {
    measure("families", endpoints, rounds,
            [&](const Write& write) { write(serializeMetrics(scrapeMetrics(&s))); });
  }
  return 0;
}
