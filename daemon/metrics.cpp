#include "daemon/metrics.h"

#include <algorithm>
#include <cctype>
#include <deque>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <utility>

#include <prometheus/text_serializer.h>

#include "daemon/process_stats.h"
#include "probes/probe_spec.h"

namespace mailprobe {
namespace {

using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;
using Labels = std::vector<ClientMetric::Label>;

// Families in a fixed order; references stay valid while more are added (deque).
class FamilySet {
 public:
  MetricFamily& add(std::string name, std::string help, MetricType type) {
    return families_.emplace_back(MetricFamily{std::move(name), std::move(help), type, {}});
  }
  // A family with no series would print a bare HELP/TYPE pair: leave it out.
  std::vector<MetricFamily> take() {
    std::vector<MetricFamily> out;
    for (auto& f : families_) {
      if (!f.metric.empty()) {
        out.push_back(std::move(f));
      }
    }
    return out;
  }

 private:
  std::deque<MetricFamily> families_;
};

void gauge(MetricFamily& f, Labels labels, double value) {
  ClientMetric m;
  m.label = std::move(labels);
  m.gauge.value = value;
  f.metric.push_back(std::move(m));
}

void counter(MetricFamily& f, Labels labels, double value) {
  ClientMetric m;
  m.label = std::move(labels);
  m.counter.value = value;
  f.metric.push_back(std::move(m));
}

Labels plus(Labels base, std::initializer_list<std::pair<const char*, std::string_view>> more) {
  for (const auto& [name, value] : more) {
    base.push_back({name, std::string(value)});
  }
  return base;
}

// One series per failure reason, every reason from the start (0 until it happens).
void reasonCounters(MetricFamily& f, const Labels& base,
                    const std::map<FailureReason, uint64_t>& counts) {
  for (FailureReason reason : allFailureReasons()) {
    if (reason == FailureReason::None) {
      continue;
    }
    auto it = counts.find(reason);
    counter(f, plus(base, {{"reason", toString(reason)}}),
            it == counts.end() ? 0 : static_cast<double>(it->second));
  }
}

Labels endpointLabels(const EndpointState& e) {
  return {{"host", e.host},
          {"port", std::to_string(e.port)},
          {"service", std::string(toString(e.service))},
          {"security", std::string(toString(e.security))}};
}

// OpenSSL's protocol and cipher names are short identifiers; anything else (a future engine
// returning free text) must not reach a label.
std::string_view tlsName(std::string_view s) {
  if (s.empty()) {
    return "unknown";
  }
  if (s.size() > 64) {
    return "other";
  }
  for (char c : s) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.')) {
      return "other";
    }
  }
  return s;
}

// What the last run showed for one address family of one endpoint. With several addresses in a
// family the family is only as good as its worst address: up only if all succeeded, the earliest
// expiry, verified only if every certificate verified.
struct FamilyView {
  std::string_view family;
  std::vector<const ProbeResult*> results;

  bool up() const {
    return std::all_of(results.begin(), results.end(), [](auto* r) { return r->success; });
  }
  const ProbeResult* firstFailure() const {
    for (auto* r : results) {
      if (!r->success) {
        return r;
      }
    }
    return nullptr;
  }
};

std::vector<FamilyView> byFamily(const EndpointState& e) {
  std::vector<FamilyView> out;
  for (std::string_view fam : {"none", "ipv4", "ipv6"}) {
    FamilyView v{fam, {}};
    for (const auto& r : e.last) {
      if (addressFamily(r.address) == fam) {
        v.results.push_back(&r);
      }
    }
    if (!v.results.empty()) {
      out.push_back(std::move(v));
    }
  }
  return out;
}

std::string upper(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  }
  return out;
}

// The cells of one relay check that share a vantage, auth state and recipient: one per address
// probed. Like an address family, the group is only as good as its worst cell.
struct CellGroup {
  const RelayCell* shown = nullptr;  // the first failing cell, else the first
  bool ok = true;
  bool open = false;
};

std::string_view trustedLabel(bool trusted) {
  return trusted ? "true" : "false";
}

// One series per profile and direction whose verdict is known: the answer to "can users set up
// like this read and send mail now?". Profile ids come from the config (bounded).
void profileMetrics(FamilySet& set, const Snapshot& s) {
  const auto G = MetricType::Gauge;
  auto& ok = set.add("mailprobe_client_config_ok",
                     "1 if a client set up like this profile could read (incoming) or send "
                     "(outgoing) mail according to the latest results, 0 if it fails; absent "
                     "while the results cannot tell.",
                     G);
  auto& failure = set.add("mailprobe_client_config_failure_info",
                          "Why and at which step a client profile fails; always 1, present only "
                          "while failing.",
                          G);
  auto& since = set.add("mailprobe_client_config_since_timestamp_seconds",
                        "Unix time since which the profile's verdict has been what it is.", G);
  for (const auto& v : s.verdicts) {
    if (!v.known) {
      continue;
    }
    Labels base{{"profile", v.profile}, {"direction", std::string(toString(v.direction))}};
    gauge(ok, base, v.ok ? 1 : 0);
    if (v.since != 0) {
      gauge(since, base, static_cast<double>(v.since));
    }
    if (!v.ok) {
      gauge(failure,
            plus(base, {{"reason", std::string(toString(v.reason))},
                        {"phase", std::string(toString(v.phase))}}),
            1);
    }
  }
}

void relayMetrics(FamilySet& set, const Snapshot& s) {
  const auto G = MetricType::Gauge;
  auto& interval = set.add("mailprobe_relay_interval_seconds",
                           "Configured time between two runs of the relay check.", G);
  auto& runs = set.add("mailprobe_relay_runs_total", "Completed runs of the relay check.",
                       MetricType::Counter);
  auto& failures = set.add("mailprobe_relay_failures_total",
                           "Completed relay check runs in which at least one cell had this "
                           "reason (each reason counted once per run). Every reason exists from "
                           "the start at 0.",
                           MetricType::Counter);
  auto& last_run = set.add("mailprobe_relay_last_run_timestamp_seconds",
                           "Unix time at which the last run of the relay check ended; 0 before "
                           "the first run.",
                           G);
  auto& open = set.add("mailprobe_relay_open",
                       "1 if the most recent relay check found an open relay from this vantage "
                       "(an outside recipient accepted where refusal was expected), else 0.",
                       G);
  auto& cell_ok = set.add("mailprobe_relay_cell_ok",
                          "1 if the server answered this relay cell as the policy expects in "
                          "the most recent run (every address probed), else 0.",
                          G);
  auto& cell_info = set.add("mailprobe_relay_cell_info",
                            "What the policy expects of a relay cell, what the server answered "
                            "(accept, refuse, or none when it was not asked) and the reason; "
                            "always 1.",
                            G);
  auto& reply_code = set.add("mailprobe_relay_reply_code",
                             "The SMTP reply code the relay cell got at RCPT TO (or MAIL FROM); "
                             "0 when it was not asked. 4xx is temporary, 5xx permanent.",
                             G);

  for (const RelayState& r : s.relay) {
    const Labels base{{"host", r.host}, {"port", std::to_string(r.port)}};
    gauge(interval, base, r.interval_seconds);
    counter(runs, base, static_cast<double>(r.runs_total));
    reasonCounters(failures, base, r.failures_total);
    gauge(last_run, base, static_cast<double>(r.last_run_timestamp));
    if (r.last.empty()) {
      continue;
    }
    // Vantage by vantage in config order, then auth state and recipient.
    for (const RelayVantage& v : r.vantages) {
      bool vantage_open = false;
      std::map<std::pair<RelayAuth, RelayRecipient>, CellGroup> groups;
      for (const RelayCell& c : r.last) {
        if (c.vantage != v.name) {
          continue;
        }
        CellGroup& g = groups[{c.auth, c.recipient}];
        if (g.shown == nullptr || (g.ok && !c.ok())) {
          g.shown = &c;
        }
        g.ok = g.ok && c.ok();
        g.open = g.open || c.reason == FailureReason::OpenRelay;
        vantage_open = vantage_open || g.open;
      }
      gauge(open, plus(base, {{"vantage", v.name}}), vantage_open ? 1 : 0);
      for (const auto& [key, g] : groups) {
        const RelayCell& c = *g.shown;
        const Labels cell = plus(base, {{"vantage", v.name},
                                        {"auth", toString(key.first)},
                                        {"recipient", toString(key.second)}});
        gauge(cell_ok, cell, g.ok ? 1 : 0);
        gauge(cell_info,
              plus(cell, {{"trusted", trustedLabel(v.trusted)},
                          {"expected", toString(c.expected)},
                          {"observed", c.observed ? toString(*c.observed) : "none"},
                          {"reason", toString(c.reason)}}),
              1);
        gauge(reply_code, cell, c.code);
      }
    }
  }
}

}  // namespace

const std::vector<std::string>& knownMechanisms() {
  static const std::vector<std::string> known = [] {
    std::vector<std::string> v;
    auto add = [&v](const std::string& m) {
      if (std::find(v.begin(), v.end(), m) == v.end()) {
        v.push_back(m);
      }
    };
    for (const auto& m : supportedMechanisms(Service::Imap)) {
      add(m);
    }
    for (const auto& m : supportedMechanisms(Service::Smtp)) {
      add(m);
    }
    for (const char* m :
         {"DIGEST-MD5", "SCRAM-SHA-1", "SCRAM-SHA-1-PLUS", "SCRAM-SHA-256", "SCRAM-SHA-256-PLUS",
          "XOAUTH2", "OAUTHBEARER", "GSSAPI", "NTLM", "EXTERNAL", "ANONYMOUS"}) {
      add(m);
    }
    return v;
  }();
  return known;
}

std::string_view mechanismLabel(std::string_view name) {
  const std::string u = upper(name);
  for (const auto& m : knownMechanisms()) {
    if (m == u) {
      return m;
    }
  }
  return "";
}

std::string_view addressFamily(std::string_view address) {
  if (address.empty()) {
    return "none";
  }
  return address.find(':') != std::string_view::npos ? "ipv6" : "ipv4";
}

std::vector<MetricFamily> buildMetrics(const Snapshot& s) {
  FamilySet set;
  const auto G = MetricType::Gauge;
  const auto C = MetricType::Counter;

  // The daemon.
  auto& build_info = set.add("mailprobe_build_info", "The mailprobed version; always 1.", G);
  auto& start_time =
      set.add("mailprobe_start_time_seconds", "Unix time at which the daemon started.", G);
  auto& reload_ok = set.add("mailprobe_config_last_reload_successful",
                            "1 if the last configuration load or reload succeeded; 0 if it was "
                            "refused and the previous configuration is still in use.",
                            G);
  auto& reload_ts = set.add("mailprobe_config_last_reload_success_timestamp_seconds",
                            "Unix time of the last successful configuration load or reload.", G);
  auto& reloads = set.add("mailprobe_config_reloads_total",
                          "Configuration reloads attempted (SIGHUP), successful or not.", C);
  auto& reload_failures = set.add("mailprobe_config_reload_failures_total",
                                  "Configuration reloads refused because the new configuration "
                                  "was invalid.",
                                  C);
  auto& in_flight = set.add("mailprobe_probes_in_flight", "Endpoint probes running now.", G);
  auto& in_flight_max =
      set.add("mailprobe_probes_in_flight_max", "The limit on endpoint probes running at once.", G);
  auto& loop_lag = set.add("mailprobe_event_loop_lag_seconds",
                           "Last measured delay of the event loop behind its timers.", G);

  const DaemonStats& d = s.daemon;
  gauge(build_info, {{"version", d.version.empty() ? std::string(MAILPROBED_VERSION) : d.version}},
        1);
  gauge(start_time, {}, static_cast<double>(d.start_timestamp));
  gauge(reload_ok, {}, d.config_last_reload_successful ? 1 : 0);
  gauge(reload_ts, {}, static_cast<double>(d.config_last_reload_success_timestamp));
  counter(reloads, {}, static_cast<double>(d.config_reloads_total));
  counter(reload_failures, {}, static_cast<double>(d.config_reload_failures_total));
  gauge(in_flight, {}, d.probes_in_flight);
  gauge(in_flight_max, {}, d.max_probes_in_flight);
  gauge(loop_lag, {}, d.loop_lag_seconds);

  // Every configured endpoint, from the first scrape on.
  auto& interval = set.add("mailprobe_endpoint_interval_seconds",
                           "Configured time between two scheduled runs of the endpoint probe.", G);
  auto& runs = set.add("mailprobe_endpoint_runs_total",
                       "Completed runs of the endpoint probe (every address of the endpoint).", C);
  auto& failures = set.add("mailprobe_endpoint_failures_total",
                           "Completed runs in which at least one address failed, by the reason "
                           "of the first failure. Every reason exists from the start at 0.",
                           C);
  auto& duration =
      set.add("mailprobe_endpoint_probe_duration_seconds",
              "Duration of whole endpoint probe runs, successful or not.", MetricType::Histogram);
  auto& last_run = set.add("mailprobe_endpoint_last_run_timestamp_seconds",
                           "Unix time at which the last run of the endpoint probe ended; 0 before "
                           "the first run.",
                           G);
  auto& last_success = set.add("mailprobe_endpoint_last_success_timestamp_seconds",
                               "Unix time at which the last run where every address succeeded "
                               "ended; 0 if none has yet.",
                               G);

  // From the results of the most recent run, per address family of the probed addresses.
  auto& up = set.add("mailprobe_endpoint_up",
                     "1 if every address of this family succeeded in the most recent scheduled "
                     "run, else 0. Absent before the first run.",
                     G);
  auto& failure_info = set.add("mailprobe_endpoint_failure_info",
                               "Why the most recent run failed: the reason and phase of the first "
                               "failing address; always 1, present only while failing.",
                               G);
  auto& phase_duration = set.add("mailprobe_endpoint_phase_duration_seconds",
                                 "Time spent in each phase reached in the most recent run "
                                 "(the slowest address of the family).",
                                 G);
  auto& tls_info =
      set.add("mailprobe_tls_info",
              "TLS version and cipher negotiated in the most recent run; always 1.", G);
  auto& cert_not_after = set.add("mailprobe_tls_cert_not_after_timestamp_seconds",
                                 "Unix time at which the leaf certificate expires; present "
                                 "whenever a handshake completed, even if verification failed.",
                                 G);
  auto& chain_not_after = set.add("mailprobe_tls_chain_not_after_timestamp_seconds",
                                  "Unix time at which the first certificate of the presented "
                                  "chain expires.",
                                  G);
  auto& verify_ok = set.add("mailprobe_tls_cert_verify_ok",
                            "1 if the certificate chain and host name verified, else 0.", G);
  auto& verify_info = set.add("mailprobe_tls_cert_verify_info",
                              "Outcome of certificate verification as a reason (none when it "
                              "verified); always 1.",
                              G);
  auto& accept_all = set.add("mailprobe_tls_accept_all_ok",
                             "1 if a client that accepts all certificates would have completed "
                             "the handshake, else 0.",
                             G);
  auto& advertised = set.add("mailprobe_auth_mechanism_advertised",
                             "AUTH mechanisms the server advertised in the most recent run, "
                             "before and after TLS; always 1.",
                             G);
  auto& auth_success = set.add("mailprobe_auth_mechanism_success",
                               "1 if the probe account logged in with this mechanism in the most "
                               "recent run, else 0.",
                               G);
  auto& plaintext_refused = set.add("mailprobe_plaintext_login_refused",
                                    "1 if login before TLS was refused or not offered, 0 if it "
                                    "was accepted; present where the probe could tell.",
                                    G);

  for (const EndpointState& e : s.endpoints) {
    const Labels base = endpointLabels(e);

    gauge(interval, base, e.interval_seconds);
    counter(runs, base, static_cast<double>(e.runs_total));
    reasonCounters(failures, base, e.failures_total);

    // The snapshot holds cumulative counts already; keep them monotonic and within the count
    // so that the exposition stays a valid histogram even if a writer slips.
    ClientMetric h;
    h.label = base;
    h.histogram.sample_count = e.runs_total;
    h.histogram.sample_sum = e.duration_sum;
    uint64_t running = 0;
    for (size_t i = 0; i < kDurationBuckets.size(); ++i) {
      running = std::min<uint64_t>(std::max(running, e.duration_buckets[i]), e.runs_total);
      h.histogram.bucket.push_back({running, kDurationBuckets[i]});
    }
    h.histogram.bucket.push_back({e.runs_total, std::numeric_limits<double>::infinity()});
    duration.metric.push_back(std::move(h));

    gauge(last_run, base, static_cast<double>(e.last_run_timestamp));
    gauge(last_success, base, static_cast<double>(e.last_success_timestamp));

    for (const FamilyView& v : byFamily(e)) {
      const Labels fam = plus(base, {{"family", v.family}});
      gauge(up, fam, v.up() ? 1 : 0);
      if (const ProbeResult* bad = v.firstFailure()) {
        gauge(failure_info,
              plus(fam, {{"reason", toString(bad->reason)}, {"phase", toString(bad->phase)}}), 1);
      }

      std::map<Phase, double> phases;
      for (auto* r : v.results) {
        for (const PhaseTiming& t : r->timings) {
          phases[t.phase] = std::max(phases[t.phase], t.seconds);
        }
      }
      for (const auto& [phase, seconds] : phases) {
        gauge(phase_duration, plus(fam, {{"phase", toString(phase)}}), seconds);
      }

      // TLS: from every address whose handshake completed, whatever the verification said.
      std::set<std::pair<std::string, std::string>> negotiated;
      int64_t leaf = 0;
      int64_t chain = 0;
      bool any_tls = false;
      bool verified = true;
      bool accept_all_ok = true;
      FailureReason verify_reason = FailureReason::None;
      for (auto* r : v.results) {
        if (!r->tls) {
          continue;
        }
        const TlsFacts& t = *r->tls;
        any_tls = true;
        negotiated.insert({std::string(tlsName(t.version)), std::string(tlsName(t.cipher))});
        if (t.leaf_not_after != 0) {
          leaf = leaf == 0 ? t.leaf_not_after : std::min(leaf, t.leaf_not_after);
        }
        if (t.chain_not_after != 0) {
          chain = chain == 0 ? t.chain_not_after : std::min(chain, t.chain_not_after);
        }
        if (t.verify != FailureReason::None) {
          if (verified) {
            verify_reason = t.verify;
          }
          verified = false;
        }
        accept_all_ok = accept_all_ok && t.accept_all_ok;
      }
      if (any_tls) {
        for (const auto& [version, cipher] : negotiated) {
          gauge(tls_info, plus(fam, {{"version", version}, {"cipher", cipher}}), 1);
        }
        if (leaf != 0) {
          gauge(cert_not_after, fam, static_cast<double>(leaf));
        }
        if (chain != 0) {
          gauge(chain_not_after, fam, static_cast<double>(chain));
        }
        gauge(verify_ok, fam, verified ? 1 : 0);
        gauge(verify_info, plus(fam, {{"reason", toString(verify_reason)}}), 1);
        gauge(accept_all, fam, accept_all_ok ? 1 : 0);
      }

      // AUTH: advertised names come from the server, so only the bounded set becomes a label.
      std::set<std::pair<std::string_view, std::string_view>> offered;
      std::map<std::string_view, bool> logged_in;
      std::optional<bool> refused;
      for (auto* r : v.results) {
        for (const auto& m : r->auth_before_tls) {
          if (auto label = mechanismLabel(m); !label.empty()) {
            offered.insert({label, "before_tls"});
          }
        }
        for (const auto& m : r->auth_after_tls) {
          if (auto label = mechanismLabel(m); !label.empty()) {
            offered.insert({label, "after_tls"});
          }
        }
        for (const AuthAttempt& a : r->auth) {
          auto label = mechanismLabel(a.mechanism);
          if (label.empty()) {
            continue;
          }
          auto [it, fresh] = logged_in.emplace(label, a.success);
          if (!fresh) {
            it->second = it->second && a.success;
          }
        }
        if (r->plaintext_login_refused) {
          refused = refused.value_or(true) && *r->plaintext_login_refused;
        }
      }
      for (const auto& [mechanism, stage] : offered) {
        gauge(advertised, plus(fam, {{"mechanism", mechanism}, {"stage", stage}}), 1);
      }
      for (const auto& [mechanism, ok] : logged_in) {
        gauge(auth_success, plus(fam, {{"mechanism", mechanism}}), ok ? 1 : 0);
      }
      if (refused) {
        gauge(plaintext_refused, fam, *refused ? 1 : 0);
      }
    }
  }
  relayMetrics(set, s);
  profileMetrics(set, s);
  return set.take();
}

std::vector<MetricFamily> scrapeMetrics(const Snapshot* s) {
  std::vector<MetricFamily> out;
  if (s != nullptr) {
    out = buildMetrics(*s);
  }
  if (auto p = readProcessStats()) {
    for (auto& f : buildProcessMetrics(*p)) {
      out.push_back(std::move(f));
    }
  }
  return out;
}

std::string serializeMetrics(const std::vector<MetricFamily>& families) {
  std::ostringstream out;
  prometheus::TextSerializer().Serialize(out, families);
  return out.str();
}

void SnapshotCollectable::publish(SnapshotPtr s) {
  std::lock_guard<std::mutex> lock(mu_);
  snapshot_ = std::move(s);
}

SnapshotPtr SnapshotCollectable::current() const {
  std::lock_guard<std::mutex> lock(mu_);
  return snapshot_;
}

std::vector<MetricFamily> SnapshotCollectable::Collect() const {
  // Build from a private copy of the pointer: the loop may publish again meanwhile.
  SnapshotPtr s = current();
  return scrapeMetrics(s.get());
}

}  // namespace mailprobe
