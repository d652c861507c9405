#include "probes/session.h"

#include <algorithm>

#include "probes/imap_response.h"
#include "probes/sasl.h"

namespace mailprobe {
namespace {

constexpr std::string_view kRedacted = "[password]";

}  // namespace

ProtocolSession::ProtocolSession(SessionHost& host, ConnectionPlan plan)
    : host_(host), plan_(std::move(plan)) {}

void ProtocolSession::enter(Phase phase) {
  phase_ = phase;
  host_.enterPhase(phase);
}

void ProtocolSession::noteFailure(FailureReason reason, Phase phase, std::string detail) {
  if (outcome_.reason != FailureReason::None) {
    return;
  }
  outcome_.reason = reason;
  outcome_.phase = phase;
  // Every detail passes here or through recordAuth: the last line of defence for the password.
  outcome_.detail = redactPassword(detail, plan_.credentials);
}

void ProtocolSession::fail(FailureReason reason, std::string detail) {
  if (outcome_.finished) {
    return;
  }
  noteFailure(reason, phase_, std::move(detail));
  finish();
}

void ProtocolSession::finish() {
  if (outcome_.finished) {
    return;
  }
  outcome_.finished = true;
  login_.reset();
  host_.done();
}

void ProtocolSession::abort(FailureReason reason, std::optional<Phase> phase, std::string detail) {
  if (outcome_.finished) {
    return;
  }
  if (login_ && login_->verdict() == AuthGate::Verdict::Queued &&
      reason == FailureReason::Timeout) {
    // The deadline passed while this login waited for another one with the same account: the
    // server did nothing wrong, the gate kept us.
    holdBack(
        "no turn to log in before the deadline: another login with this account was "
        "still unanswered");
  }
  noteFailure(reason, phase.value_or(phase_), std::move(detail));
  outcome_.finished = true;
  login_.reset();
}

void ProtocolSession::onPeerClosed(std::optional<Phase> phase) {
  if (outcome_.finished) {
    return;
  }
  if (phase_ == Phase::Logout) {
    // Closing after (or instead of) the goodbye is how many servers end a session.
    outcome_.logged_out = true;
    outcome_.finished = true;
    return;
  }
  abort(FailureReason::ConnectionClosed, phase, "the server closed the connection");
}

void ProtocolSession::recordTls(const TlsFacts& tls) {
  outcome_.tls_up = true;
  outcome_.tls = tls;
  if (tls.verify != FailureReason::None) {
    noteFailure(tls.verify, Phase::TlsHandshake, tls.verify_detail);
  }
}

bool ProtocolSession::mayLogIn() const {
  if (plan_.spec->security != Security::None && !outcome_.tls_up) {
    return false;
  }
  if (outcome_.tls && outcome_.tls->verify != FailureReason::None &&
      !plan_.spec->tls.login_despite_invalid_cert) {
    return false;
  }
  return plan_.credentials != nullptr && !plan_.credentials->empty();
}

std::optional<std::string> ProtocolSession::chooseMechanism(
    const std::vector<std::string>& advertised) const {
  for (const auto& m : plan_.candidates) {
    bool offered = std::find(advertised.begin(), advertised.end(), m) != advertised.end();
    bool tried = std::find(plan_.already_tried.begin(), plan_.already_tried.end(), m) !=
                 plan_.already_tried.end();
    if (offered && !tried) {
      return m;
    }
  }
  return std::nullopt;
}

void ProtocolSession::noteNoMechanism(const std::vector<std::string>& advertised) {
  if (plan_.candidates.empty() || !plan_.already_tried.empty() ||
      plan_.spec->auth != AuthPolicy::Required) {
    return;
  }
  if (advertised.empty()) {
    noteFailure(FailureReason::AuthNotOffered, Phase::Auth, "the server offers no way to log in");
  } else {
    std::string list;
    for (const auto& m : advertised) {
      list += (list.empty() ? "" : " ") + m;
    }
    noteFailure(FailureReason::AuthMechanismMissing, Phase::Auth,
                "no usable mechanism among those offered: " + list);
  }
}

void ProtocolSession::recordAuth(std::string mechanism, bool success, FailureReason reason,
                                 std::string detail, bool temporary) {
  outcome_.auth =
      AuthAttempt{std::move(mechanism), success, reason, redactPassword(detail, plan_.credentials)};
  if (!success) {
    noteFailure(reason, Phase::Auth, outcome_.auth->detail);
  }
  if (login_) {
    // Released before the conversation goes on: the next login of the account may go now.
    std::unique_ptr<AuthGate::Login> login = std::move(login_);
    bool refused = reason == FailureReason::AuthFailed && !temporary;
    login->report(success   ? AuthGate::Outcome::Accepted
                  : refused ? AuthGate::Outcome::Refused
                            : AuthGate::Outcome::Inconclusive);
  }
}

void ProtocolSession::askToLogIn(const std::string& mechanism) {
  if (plan_.gate == nullptr) {
    sendCredentials();
    return;
  }
  login_mechanism_ = mechanism;
  login_ = plan_.gate->request(plan_.account, mechanism,
                               [this](AuthGate::Verdict v) { onLoginTurn(v); });
  switch (login_->verdict()) {
    case AuthGate::Verdict::Go:
      sendCredentials();
      break;
    case AuthGate::Verdict::HeldBack:
      holdBack(login_->heldBackDetail());
      loginHeldBack();
      break;
    case AuthGate::Verdict::Queued:
      break;  // onLoginTurn
  }
}

void ProtocolSession::onLoginTurn(AuthGate::Verdict verdict) {
  if (outcome_.finished) {
    return;
  }
  if (verdict == AuthGate::Verdict::Go) {
    enter(Phase::Auth);  // the wait is over: the login gets a whole phase deadline
    sendCredentials();
    return;
  }
  holdBack(login_->heldBackDetail());
  loginHeldBack();
}

void ProtocolSession::holdBack(std::string detail) {
  login_.reset();
  recordAuth(login_mechanism_, false, FailureReason::AuthBackoff, std::move(detail));
}

std::string sanitize(std::string_view text, size_t max) {
  std::string out;
  for (char c : text) {
    if (out.size() >= max) {
      out += "...";
      break;
    }
    unsigned char u = static_cast<unsigned char>(c);
    out.push_back(u >= 0x20 && u < 0x7f ? c : (c == '\t' ? ' ' : '?'));
  }
  while (!out.empty() && out.back() == ' ') {
    out.pop_back();
  }
  return out;
}

std::string ProtocolSession::describePeer(std::string_view text) const {
  return sanitize(redactPassword(text, plan_.credentials));
}

std::string redactPassword(std::string_view text, const Credentials* credentials) {
  if (credentials == nullptr || credentials->password.empty()) {
    return std::string(text);
  }
  const std::string& password = credentials->password;
  // Longest first: the PLAIN message holds the base64 password when the lengths line up. Each
  // base64 form padded, then without its padding.
  std::vector<std::string> forms;
  for (std::string b64 : {saslPlain(credentials->user, password), base64Encode(password)}) {
    forms.push_back(b64);
    while (b64.ends_with('=')) {
      b64.pop_back();
    }
    forms.push_back(b64);
  }
  if (!imapNeedsLiteral(password)) {
    std::string quoted = imapQuoted(password);
    forms.push_back(quoted.substr(1, quoted.size() - 2));  // escaped, without the quotes
  }
  forms.push_back(password);
  std::string out(text);
  for (const std::string& form : forms) {
    for (size_t at = out.find(form); at != std::string::npos; at = out.find(form, at)) {
      out.replace(at, form.size(), kRedacted);
      at += kRedacted.size();
    }
  }
  return out;
}

}  // namespace mailprobe
