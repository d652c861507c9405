#include "probes/relay_probe.h"

#include <ctime>

#include "probes/endpoint_probe.h"
#include "probes/tls_context_cache.h"
#include "probes/tls_engine.h"

namespace mailprobe {
namespace {

bool isIpv6Literal(const std::string& address) {
  return address.find(':') != std::string::npos;
}

}  // namespace

RelayProbe* RelayProbe::start(uv_loop_t* loop, RelaySpec spec, Credentials credentials,
                              TlsContextCache* contexts, Done done, AuthGate* gate) {
  auto* p = new RelayProbe(loop, std::move(spec), std::move(credentials), contexts, std::move(done),
                           gate);
  p->begin();
  return p;
}

RelayProbe::RelayProbe(uv_loop_t* loop, RelaySpec spec, Credentials credentials,
                       TlsContextCache* contexts, Done done, AuthGate* gate)
    : loop_(loop),
      spec_(std::move(spec)),
      credentials_(std::move(credentials)),
      contexts_(contexts),
      done_(std::move(done)),
      own_gate_(gate == nullptr ? std::make_unique<AuthGate>() : nullptr),
      gate_(gate == nullptr ? own_gate_.get() : gate),
      account_(accountKey(credentials_, spec_.endpoint.host)) {
  uv_timer_init(loop_, &deadline_);
  deadline_.data = this;
  started_at_ = static_cast<int64_t>(::time(nullptr));
  for (const RelayVantage& v : spec_.vantages) {
    EndpointSpec s = spec_.endpoint;
    s.source_address = v.source_address;
    vantage_specs_.push_back(std::move(s));
  }
}

void RelayProbe::begin() {
  if (spec_.endpoint.security != Security::None) {
    std::string error;
    tls_ = tlsContextFor(contexts_, spec_.endpoint.tls, &error);
    if (!tls_) {
      for (size_t v = 0; v < spec_.vantages.size(); ++v) {
        for (RelayAuth auth : relayAuthStates(spec_)) {
          notRun("", v, auth, FailureReason::TlsHandshakeFailed, Phase::TlsHandshake, error);
        }
      }
      complete();
      return;
    }
  }
  lookup_ = AddressLookup::start(loop_, spec_.endpoint, [this](AddressLookup::Result r) {
    lookup_ = nullptr;
    onAddresses(std::move(r));
  });
}

void RelayProbe::onAddresses(AddressLookup::Result result) {
  state_ = State::Running;
  std::vector<RelayAuth> auths = relayAuthStates(spec_);
  for (size_t v = 0; v < spec_.vantages.size(); ++v) {
    bool v6 = isIpv6Literal(spec_.vantages[v].source_address);
    bool any = false;
    for (const sockaddr_storage& a : result.addresses) {
      if ((a.ss_family == AF_INET6) != v6) {
        continue;  // a vantage only reaches addresses of its own family
      }
      any = true;
      for (RelayAuth auth : auths) {
        conversations_.push_back({addressText(a), a, v, auth});
      }
    }
    if (any) {
      continue;
    }
    FailureReason reason = result.addresses.empty() ? result.reason : FailureReason::ResolveFailed;
    std::string detail = result.addresses.empty()
                             ? result.detail
                             : spec_.endpoint.host + " has no " + (v6 ? "IPv6" : "IPv4") +
                                   " address to reach from vantage " + spec_.vantages[v].name;
    for (RelayAuth auth : auths) {
      notRun("", v, auth, reason, Phase::Resolve, detail);
    }
  }
  runNext();
}

void RelayProbe::runNext() {
  if (state_ == State::Closing) {
    return;
  }
  while (next_ < conversations_.size()) {
    const Conversation& c = conversations_[next_++];
    if (c.auth == RelayAuth::SignedIn && !login_failure_.empty()) {
      notRun(c.address, c.vantage, c.auth, FailureReason::AuthBackoff, Phase::Auth,
             "not tried: a login already failed in this run (" + login_failure_ +
                 "); it is never retried in the same run, so the account cannot be locked out");
      continue;
    }
    bool signed_in = c.auth == RelayAuth::SignedIn;
    ConnectionPlan plan;
    plan.spec = &vantage_specs_[c.vantage];
    plan.credentials = &credentials_;
    plan.gate = gate_;
    plan.account = account_;
    if (signed_in) {
      plan.candidates = candidateMechanisms(spec_.endpoint);
      // Held back for every mechanism it could use: the conversation would be for nothing.
      std::string held;
      for (const std::string& m : plan.candidates) {
        AuthGate::Hold hold = gate_->holdFor(account_, m);
        if (hold.seconds_left <= 0) {
          held.clear();
          break;
        }
        if (held.empty()) {
          held = std::move(hold.detail);
        }
      }
      if (!held.empty()) {
        notRun(c.address, c.vantage, c.auth, FailureReason::AuthBackoff, Phase::Auth, held);
        continue;
      }
    }
    RelayEnvelope envelope;
    envelope.mail_from =
        signed_in ? (spec_.signed_in_sender.empty() ? credentials_.user : spec_.signed_in_sender)
                  : spec_.sender;
    envelope.local_recipient = spec_.local_recipient;
    envelope.outside_recipient = spec_.outside_recipient;
    envelope.signed_in = signed_in;
    plan.relay = std::move(envelope);

    conversation_started_ns_ = uv_hrtime();
    uv_timer_start(
        &deadline_,
        [](uv_timer_t* t) {
          auto* self = static_cast<RelayProbe*>(t->data);
          if (self->current_ != nullptr) {
            self->current_->abort(FailureReason::Timeout, "the relay check's deadline passed");
          }
        },
        static_cast<uint64_t>(std::max<int64_t>(1, spec_.endpoint.timeouts.total.count())), 0);
    Conversation copy = c;
    current_ = Connection::start(
        loop_, c.target, std::move(plan), tls_,
        [this, copy](ConnectionResult result) { onConversationDone(copy, std::move(result)); });
    return;
  }
  complete();
}

void RelayProbe::onConversationDone(const Conversation& c, ConnectionResult result) {
  current_ = nullptr;
  uv_timer_stop(&deadline_);
  const ConnectionOutcome& o = result.outcome;
  if (c.auth == RelayAuth::SignedIn && o.auth && !o.auth->success &&
      o.auth->reason != FailureReason::AuthBackoff && login_failure_.empty()) {
    login_failure_ = o.auth->mechanism + " on " + spec_.vantages[c.vantage].name + ": " +
                     std::string(toString(o.auth->reason));
  }
  double seconds = static_cast<double>(uv_hrtime() - conversation_started_ns_) / 1e9;
  for (RelayCell& cell : relayCells(spec_, c.address, spec_.vantages[c.vantage], c.auth, o)) {
    cell.started_at = started_at_;
    cell.duration_seconds = seconds;
    cells_.push_back(std::move(cell));
  }
  runNext();
}

void RelayProbe::notRun(const std::string& address, size_t vantage, RelayAuth auth,
                        FailureReason reason, Phase phase, const std::string& detail) {
  for (RelayCell& cell :
       relayCellsNotRun(spec_, address, spec_.vantages[vantage], auth, reason, phase, detail)) {
    cell.started_at = started_at_;
    cells_.push_back(std::move(cell));
  }
}

void RelayProbe::cancel() {
  done_ = nullptr;
  if (lookup_ != nullptr) {
    lookup_->cancel();
    lookup_ = nullptr;
  }
  if (current_ != nullptr) {
    current_->cancel();
    current_ = nullptr;
  }
  complete();
}

void RelayProbe::complete() {
  if (state_ == State::Closing) {
    return;
  }
  state_ = State::Closing;
  uv_timer_stop(&deadline_);
  uv_close(reinterpret_cast<uv_handle_t*>(&deadline_), [](uv_handle_t* h) {
    auto* self = static_cast<RelayProbe*>(h->data);
    Done done = std::move(self->done_);
    std::vector<RelayCell> cells = std::move(self->cells_);
    delete self;
    if (done) {
      done(std::move(cells));
    }
  });
}

}  // namespace mailprobe
