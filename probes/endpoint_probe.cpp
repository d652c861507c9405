#include "probes/endpoint_probe.h"

#include <netdb.h>

#include <algorithm>
#include <cstring>
#include <ctime>

#include "probes/tls_engine.h"

namespace mailprobe {
namespace {

bool contains(const std::vector<std::string>& v, const std::string& s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

std::string addressText(const sockaddr_storage& a) {
  char buf[INET6_ADDRSTRLEN] = {0};
  if (a.ss_family == AF_INET6) {
    uv_ip6_name(reinterpret_cast<const sockaddr_in6*>(&a), buf, sizeof buf);
  } else {
    uv_ip4_name(reinterpret_cast<const sockaddr_in*>(&a), buf, sizeof buf);
  }
  return buf;
}

std::optional<sockaddr_storage> parseAddress(const std::string& text, uint16_t port) {
  sockaddr_storage a{};
  if (uv_ip4_addr(text.c_str(), port, reinterpret_cast<sockaddr_in*>(&a)) == 0 ||
      uv_ip6_addr(text.c_str(), port, reinterpret_cast<sockaddr_in6*>(&a)) == 0) {
    return a;
  }
  return std::nullopt;
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

struct EndpointProbe::ResolveRequest {
  uv_getaddrinfo_t req;
  EndpointProbe* owner;
};

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
                                    std::shared_ptr<TlsContext> tls, Done done) {
  auto* p = new EndpointProbe(loop, std::move(spec), std::move(credentials), std::move(tls),
                              std::move(done));
  p->resolve();
  return p;
}

EndpointProbe::EndpointProbe(uv_loop_t* loop, EndpointSpec spec, Credentials credentials,
                             std::shared_ptr<TlsContext> tls, Done done)
    : loop_(loop),
      spec_(std::move(spec)),
      credentials_(std::move(credentials)),
      tls_(std::move(tls)),
      done_(std::move(done)) {
  uv_timer_init(loop_, &resolve_timer_);
  resolve_timer_.data = this;
  open_handles_ = 1;
  started_ns_ = uv_hrtime();
  started_at_ = static_cast<int64_t>(::time(nullptr));
}

EndpointProbe::~EndpointProbe() = default;

void EndpointProbe::resolve() {
  if (!tls_ && spec_.security != Security::None) {
    std::string error;
    tls_ = TlsContext::create(spec_.tls, &error);
    if (!tls_) {
      failAll(FailureReason::TlsHandshakeFailed, Phase::TlsHandshake, error);
      return;
    }
  }
  if (!spec_.addresses.empty()) {
    std::vector<sockaddr_storage> addresses;
    for (const auto& text : spec_.addresses) {
      if (auto a = parseAddress(text, spec_.port)) {
        addresses.push_back(*a);
      }
    }
    startAddresses(std::move(addresses));
    return;
  }
  if (auto literal = parseAddress(spec_.host, spec_.port)) {
    startAddresses({*literal});
    return;
  }
  auto* r = new ResolveRequest;
  r->owner = this;
  r->req.data = r;
  resolve_req_ = r;
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_family = spec_.family == AddressFamily::V4   ? AF_INET
                    : spec_.family == AddressFamily::V6 ? AF_INET6
                                                        : AF_UNSPEC;
  std::string port = std::to_string(spec_.port);
  int rc = uv_getaddrinfo(
      loop_, &r->req,
      [](uv_getaddrinfo_t* req, int status, addrinfo* res) {
        auto* rr = static_cast<ResolveRequest*>(req->data);
        EndpointProbe* owner = rr->owner;
        delete rr;
        if (owner == nullptr) {  // cancelled or timed out: nobody waits for this answer
          uv_freeaddrinfo(res);
          return;
        }
        owner->resolve_req_ = nullptr;
        owner->onResolved(status, res);
        uv_freeaddrinfo(res);
      },
      spec_.host.c_str(), port.c_str(), &hints);
  if (rc != 0) {
    delete r;
    resolve_req_ = nullptr;
    failAll(FailureReason::ResolveFailed, Phase::Resolve, uv_strerror(rc));
    return;
  }
  uv_timer_start(
      &resolve_timer_,
      [](uv_timer_t* t) {
        auto* self = static_cast<EndpointProbe*>(t->data);
        if (self->resolve_req_ != nullptr) {
          // The lookup thread may be stuck: detach from it; its callback frees the request.
          self->resolve_req_->owner = nullptr;
          uv_cancel(reinterpret_cast<uv_req_t*>(&self->resolve_req_->req));
          self->resolve_req_ = nullptr;
          self->failAll(FailureReason::Timeout, Phase::Resolve, "name resolution took too long");
        }
      },
      static_cast<uint64_t>(std::max<int64_t>(1, spec_.timeouts.resolve.count())), 0);
}

void EndpointProbe::onResolved(int status, addrinfo* res) {
  uv_timer_stop(&resolve_timer_);
  resolve_seconds_ = static_cast<double>(uv_hrtime() - started_ns_) / 1e9;
  if (status != 0) {
    failAll(FailureReason::ResolveFailed, Phase::Resolve,
            "cannot resolve " + spec_.host + ": " + uv_strerror(status));
    return;
  }
  std::vector<sockaddr_storage> addresses;
  std::vector<std::string> seen;
  for (addrinfo* ai = res; ai != nullptr; ai = ai->ai_next) {
    if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6) {
      continue;
    }
    sockaddr_storage a{};
    std::memcpy(&a, ai->ai_addr, ai->ai_addrlen);
    std::string text = addressText(a);
    if (!contains(seen, text)) {
      seen.push_back(text);
      addresses.push_back(a);
    }
  }
  if (addresses.empty()) {
    failAll(FailureReason::ResolveFailed, Phase::Resolve, spec_.host + " has no address");
    return;
  }
  startAddresses(std::move(addresses));
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
  std::string mechanism;
  if (run.results.empty()) {
    plan.candidates = candidateMechanisms(spec_);
    plan.check_plaintext_login =
        spec_.security == Security::StartTls && spec_.auth != AuthPolicy::Skip;
    plan.examine = spec_.examine_inbox;
  } else {
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
  if (resolve_req_ != nullptr) {
    resolve_req_->owner = nullptr;
    uv_cancel(reinterpret_cast<uv_req_t*>(&resolve_req_->req));
    resolve_req_ = nullptr;
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
  close(reinterpret_cast<uv_handle_t*>(&resolve_timer_));
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
