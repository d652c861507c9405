#include "probes/endpoint_probe.h"

#include <algorithm>
#include <ctime>

#include "probes/tls_context_cache.h"
#include "probes/tls_engine.h"

namespace mailprobe {
namespace {

bool contains(const std::vector<std::string>& v, const std::string& s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

// A login with `mechanism` the gate holds back, as a connection that was never made.
ConnectionResult heldBack(const std::string& mechanism, std::string detail) {
  ConnectionResult r;
  r.mechanism = mechanism;
  r.outcome.reason = FailureReason::AuthBackoff;
  r.outcome.phase = Phase::Auth;
  r.outcome.auth = AuthAttempt{mechanism, false, FailureReason::AuthBackoff, detail};
  r.outcome.detail = std::move(detail);
  r.outcome.finished = true;
  return r;
}

}  // namespace

const std::vector<std::string>& supportedMechanisms(Service s) {
  static const std::vector<std::string> imap{"PLAIN", "LOGIN", "CRAM-MD5", "LOGIN-COMMAND"};
  static const std::vector<std::string> smtp{"PLAIN", "LOGIN", "CRAM-MD5"};
  return s == Service::Imap ? imap : smtp;
}

std::vector<std::string> candidateMechanisms(const EndpointSpec& spec) {
  if (spec.auth == AuthPolicy::Skip) {
    return {};
  }
  return spec.mechanisms.empty() ? supportedMechanisms(spec.service) : spec.mechanisms;
}

struct EndpointProbe::AddressRun {
  sockaddr_storage address{};
  std::string text;
  uv_timer_t deadline;
  Connection* current = nullptr;
  std::vector<ConnectionResult> results;
  std::vector<std::string> tried;
  std::vector<std::string> remaining;
  enum class State { Running, TimedOut, Finished } state = State::Running;
};

EndpointProbe* EndpointProbe::start(uv_loop_t* loop, EndpointSpec spec, Credentials credentials,
                                    TlsContextCache* contexts, Done done, AuthGate* gate) {
  auto* p = new EndpointProbe(loop, std::move(spec), std::move(credentials), contexts,
                              std::move(done), gate);
  p->resolve();
  return p;
}

EndpointProbe::EndpointProbe(uv_loop_t* loop, EndpointSpec spec, Credentials credentials,
                             TlsContextCache* contexts, Done done, AuthGate* gate)
    : loop_(loop),
      spec_(std::move(spec)),
      credentials_(std::move(credentials)),
      contexts_(contexts),
      done_(std::move(done)),
      own_gate_(gate == nullptr ? std::make_unique<AuthGate>() : nullptr),
      gate_(gate == nullptr ? own_gate_.get() : gate),
      account_(accountKey(credentials_, spec_.host)) {
  uv_timer_init(loop_, &anchor_);
  anchor_.data = this;
  open_handles_ = 1;
  started_ns_ = uv_hrtime();
  started_at_ = static_cast<int64_t>(::time(nullptr));
}

EndpointProbe::~EndpointProbe() = default;

void EndpointProbe::resolve() {
  if (spec_.security != Security::None) {
    std::string error;
    tls_ = tlsContextFor(contexts_, spec_.tls, &error);
    if (!tls_) {
      failAll(FailureReason::TlsHandshakeFailed, Phase::TlsHandshake, error);
      return;
    }
  }
  lookup_ = AddressLookup::start(loop_, spec_, [this](AddressLookup::Result r) {
    lookup_ = nullptr;
    resolve_seconds_ = r.seconds;
    if (r.addresses.empty()) {
      failAll(r.reason, Phase::Resolve, r.detail);
      return;
    }
    startAddresses(std::move(r.addresses));
  });
}

void EndpointProbe::startAddresses(std::vector<sockaddr_storage> addresses) {
  if (addresses.empty()) {
    failAll(FailureReason::ResolveFailed, Phase::Resolve, "no usable address");
    return;
  }
  for (const auto& a : addresses) {
    auto run = std::make_unique<AddressRun>();
    run->address = a;
    run->text = addressText(a);
    uv_timer_init(loop_, &run->deadline);
    ++open_handles_;
    runs_.push_back(std::move(run));
  }
  for (auto& run : runs_) {
    AddressRun* r = run.get();
    // The timer's data is the probe; the run is found through the run list.
    r->deadline.data = this;
    uv_timer_start(
        &r->deadline,
        [](uv_timer_t* t) {
          auto* self = static_cast<EndpointProbe*>(t->data);
          for (auto& candidate : self->runs_) {
            if (&candidate->deadline == t) {
              self->onDeadline(*candidate);
              return;
            }
          }
        },
        static_cast<uint64_t>(std::max<int64_t>(1, spec_.timeouts.total.count())), 0);
    runNext(*r);
  }
}

void EndpointProbe::runNext(AddressRun& run) {
  ConnectionPlan plan;
  plan.spec = &spec_;
  plan.credentials = &credentials_;
  plan.gate = gate_;
  plan.account = account_;
  std::string mechanism;
  if (run.results.empty()) {
    plan.candidates = candidateMechanisms(spec_);
    plan.check_plaintext_login =
        spec_.security == Security::StartTls && spec_.auth != AuthPolicy::Skip;
    plan.examine = spec_.examine_inbox;
  } else {
    // A connection for one more mechanism has nothing to do but log in: when the gate holds
    // that login back, it is recorded as such without connecting.
    while (!run.remaining.empty()) {
      AuthGate::Hold hold = gate_->holdFor(account_, run.remaining.front());
      if (hold.seconds_left <= 0) {
        break;
      }
      run.results.push_back(heldBack(run.remaining.front(), std::move(hold.detail)));
      run.remaining.erase(run.remaining.begin());
    }
    if (run.remaining.empty()) {
      finishRun(run);
      return;
    }
    mechanism = run.remaining.front();
    run.remaining.erase(run.remaining.begin());
    plan.candidates = {mechanism};
    plan.already_tried = run.tried;
  }
  run.current = Connection::start(loop_, run.address, std::move(plan), tls_,
                                  [this, &run, mechanism](ConnectionResult result) {
                                    result.mechanism = mechanism;
                                    onConnectionDone(run, std::move(result));
                                  });
}

void EndpointProbe::onConnectionDone(AddressRun& run, ConnectionResult result) {
  run.current = nullptr;
  const ConnectionOutcome& o = result.outcome;
  if (o.auth) {
    run.tried.push_back(o.auth->mechanism);
  }
  bool first = run.results.empty();
  bool logged_in_once = first && o.auth.has_value();
  if (logged_in_once) {
    const auto& advertised = o.tls_up ? o.auth_after_tls : o.auth_before_tls;
    for (const auto& m : candidateMechanisms(spec_)) {
      if (contains(advertised, m) && !contains(run.tried, m)) {
        run.remaining.push_back(m);
      }
    }
  }
  run.results.push_back(std::move(result));
  if (run.state == AddressRun::State::TimedOut || (first && !logged_in_once)) {
    finishRun(run);
    return;
  }
  runNext(run);
}

void EndpointProbe::onDeadline(AddressRun& run) {
  if (run.state != AddressRun::State::Running) {
    return;
  }
  run.state = AddressRun::State::TimedOut;
  if (run.current != nullptr) {
    run.current->abort(FailureReason::Timeout, "the endpoint's deadline passed");
  }
}

void EndpointProbe::finishRun(AddressRun& run) {
  if (run.state == AddressRun::State::Finished) {
    return;
  }
  run.state = AddressRun::State::Finished;
  uv_timer_stop(&run.deadline);
  ProbeResult r = mergeConnections(spec_, run.text, resolve_seconds_, run.results);
  r.started_at = started_at_;
  r.duration_seconds = static_cast<double>(uv_hrtime() - started_ns_) / 1e9;
  results_.push_back(std::move(r));
  maybeComplete();
}

void EndpointProbe::failAll(FailureReason reason, Phase phase, std::string detail) {
  ProbeResult r;
  r.host = spec_.host;
  r.port = spec_.port;
  r.service = spec_.service;
  r.security = spec_.security;
  r.reason = reason;
  r.phase = phase;
  r.detail = std::move(detail);
  r.started_at = started_at_;
  r.duration_seconds = static_cast<double>(uv_hrtime() - started_ns_) / 1e9;
  r.timings.push_back({Phase::Resolve, r.duration_seconds});
  r.sentence = describe(r);
  results_.push_back(std::move(r));
  closeHandles();
}

void EndpointProbe::maybeComplete() {
  for (const auto& run : runs_) {
    if (run->state != AddressRun::State::Finished) {
      return;
    }
  }
  closeHandles();
}

void EndpointProbe::cancel() {
  cancelled_ = true;
  if (lookup_ != nullptr) {
    lookup_->cancel();
    lookup_ = nullptr;
  }
  for (auto& run : runs_) {
    if (run->current != nullptr) {
      run->current->cancel();
      run->current = nullptr;
    }
    run->state = AddressRun::State::Finished;
  }
  closeHandles();
}

void EndpointProbe::closeHandles() {
  auto on_closed = [](uv_handle_t* h) {
    auto* self = static_cast<EndpointProbe*>(h->data);
    if (--self->open_handles_ > 0) {
      return;
    }
    Done done = self->cancelled_ ? nullptr : std::move(self->done_);
    std::vector<ProbeResult> results = std::move(self->results_);
    delete self;
    if (done) {
      done(std::move(results));
    }
  };
  auto close = [&](uv_handle_t* h) {
    if (!uv_is_closing(h)) {
      h->data = this;
      uv_close(h, on_closed);
    }
  };
  close(reinterpret_cast<uv_handle_t*>(&anchor_));
  for (auto& run : runs_) {
    close(reinterpret_cast<uv_handle_t*>(&run->deadline));
  }
}

ProbeResult mergeConnections(const EndpointSpec& spec, const std::string& address,
                             double resolve_seconds, const std::vector<ConnectionResult>& runs) {
  ProbeResult r;
  r.host = spec.host;
  r.address = address;
  r.port = spec.port;
  r.service = spec.service;
  r.security = spec.security;
  r.timings.push_back({Phase::Resolve, resolve_seconds});
  if (runs.empty()) {
    r.reason = FailureReason::ConnectionClosed;
    r.phase = Phase::Connect;
    r.sentence = describe(r);
    return r;
  }
  const ConnectionOutcome& first = runs.front().outcome;
  r.reason = first.reason;
  r.phase = first.phase;
  r.detail = first.detail;
  r.tls = first.tls;
  r.starttls_offered = first.starttls_offered;
  r.capabilities_before_tls = first.capabilities_before_tls;
  r.capabilities_after_tls = first.capabilities_after_tls;
  r.auth_before_tls = first.auth_before_tls;
  r.auth_after_tls = first.auth_after_tls;
  r.plaintext_login_refused = first.plaintext_login_refused;
  for (const auto& t : runs.front().timings) {
    r.timings.push_back(t);
  }
  for (size_t i = 0; i < runs.size(); ++i) {
    const ConnectionOutcome& o = runs[i].outcome;
    if (o.auth) {
      r.auth.push_back(*o.auth);
    } else if (i > 0) {
      // A connection for one more mechanism that did not get as far as the login.
      r.auth.push_back({runs[i].mechanism, false, o.reason, o.detail});
    }
  }
  // Mechanisms the config insists on must be offered.
  const auto& offered = first.tls_up ? first.auth_after_tls : first.auth_before_tls;
  bool conversation_reached_auth = first.reason == FailureReason::None || !r.auth.empty() ||
                                   first.phase == Phase::Auth || first.logged_out;
  if (conversation_reached_auth) {
    for (const auto& m : spec.mechanisms) {
      if (!contains(offered, m)) {
        r.auth.push_back({m, false, FailureReason::AuthMechanismMissing, "not offered"});
      }
    }
  }
  if (r.reason == FailureReason::None) {
    for (const auto& a : r.auth) {
      if (!a.success) {
        r.reason = a.reason;
        r.phase = Phase::Auth;
        r.detail = a.mechanism + ": " + a.detail;
        break;
      }
    }
  }
  r.success = r.reason == FailureReason::None;
  r.sentence = describe(r);
  return r;
}

}  // namespace mailprobe
