#include "probes/imap_session.h"

#include <algorithm>

#include "probes/sasl.h"

namespace mailprobe {
namespace {

constexpr std::string_view kLoginCommand = "LOGIN-COMMAND";
// A user that cannot exist, for the plaintext-login check: the probe account's password never
// crosses the network in clear, and the check cannot lock the probe account out.
constexpr std::string_view kPlaintextCheckUser = "mailprobed-plaintext-check@invalid";
// Untagged responses are allowed at any time, but a command is answered by a handful of them
// (EXAMINE: about ten). A server that never completes the command while it keeps talking would
// otherwise hold the probe until the phase deadline: past this many, it is a protocol error.
constexpr size_t kMaxUntaggedInARow = 1000;
// Our mechanisms answer at most two challenges, then cancel with "*"; a server that keeps
// challenging after that would hold the probe in a ping-pong until the phase deadline.
constexpr int kMaxSaslAnswers = 3;

}  // namespace

ImapSession::ImapSession(SessionHost& host, ConnectionPlan plan)
    : ParsedSession(host, std::move(plan), "response") {}

std::string ImapSession::describeResponse(const ImapResponse& r) const {
  std::string s = r.status;
  if (!r.code.empty()) {
    s += " [" + r.code + "]";
  }
  if (!r.text.empty()) {
    s += " " + r.text;
  }
  return describePeer(s);
}

std::optional<Phase> ImapSession::phaseOf(State state) const {
  switch (state) {
    case State::Greeting:
      return Phase::Greeting;
    case State::Capability:
    case State::CapabilityAfterTls:
      return Phase::Capabilities;
    case State::PlaintextCheck:
    case State::Login:
      return Phase::Auth;
    case State::StartTls:
      return Phase::StartTls;
    case State::Examine:
      return Phase::Examine;
    case State::Logout:
      return Phase::Logout;
    case State::TlsHandshake:
    case State::Done:
      break;
  }
  return std::nullopt;
}

std::string ImapSession::nextTag() {
  tag_ = "mp" + std::to_string(++tag_counter_);
  return tag_;
}

std::vector<std::string>& ImapSession::currentCaps() {
  return outcome_.tls_up ? outcome_.capabilities_after_tls : outcome_.capabilities_before_tls;
}

bool ImapSession::has(std::string_view cap) {
  const auto& caps = currentCaps();
  return std::find(caps.begin(), caps.end(), cap) != caps.end();
}

void ImapSession::onTlsEstablished(const TlsFacts& tls) {
  recordTls(tls);
  // Pre-TLS capabilities may have been forged by a man in the middle: ask again (RFC 3501 6.2.1).
  capabilities_known_ = false;
  transitionTo(State::CapabilityAfterTls);
  send(nextTag() + " CAPABILITY\r\n");
}

void ImapSession::handle(const ImapResponse& r) {
  if (r.kind != ImapResponse::Kind::Untagged) {
    untagged_in_a_row_ = 0;
  } else if (++untagged_in_a_row_ > kMaxUntaggedInARow) {
    fail(FailureReason::ProtocolError, "more than " + std::to_string(kMaxUntaggedInARow) +
                                           " untagged responses and no command completion");
    return;
  }
  if (r.kind == ImapResponse::Kind::Untagged) {
    if (r.status == "CAPABILITY" || r.code.rfind("CAPABILITY ", 0) == 0) {
      currentCaps() = imapCapabilities(r);
      capabilities_known_ = true;
    }
    if (r.status == "BYE" && state_ != State::Logout && state_ != State::Greeting) {
      fail(FailureReason::ServiceUnavailable, "the server said goodbye: " + describeResponse(r));
      return;
    }
    if (state_ != State::Greeting) {
      return;  // untagged data (EXISTS, FLAGS, ...) is of no interest
    }
  }
  if (r.kind == ImapResponse::Kind::Continuation) {
    onContinuation(r);
    return;
  }
  if (r.kind == ImapResponse::Kind::Tagged && r.tag != tag_) {
    fail(FailureReason::ProtocolError, "response with an unknown tag " + sanitize(r.tag, 20));
    return;
  }
  switch (state_) {
    case State::Greeting:
      handleGreeting(r);
      break;
    case State::Capability:
    case State::CapabilityAfterTls:
      handleCapability(r);
      break;
    case State::PlaintextCheck:
      handlePlaintextCheck(r);
      break;
    case State::StartTls:
      handleStartTls(r);
      break;
    case State::Login:
      handleLogin(r);
      break;
    case State::Examine:
      handleExamine(r);
      break;
    case State::Logout:
      finishLoggedOut();
      break;
    case State::TlsHandshake:
    case State::Done:
      fail(FailureReason::ProtocolError, "unexpected response: " + describeResponse(r));
      break;
  }
}

void ImapSession::handleGreeting(const ImapResponse& r) {
  if (r.kind != ImapResponse::Kind::Untagged || !r.isStatus()) {
    fail(FailureReason::ProtocolError, "not an IMAP greeting: " + describePeer(r.line));
    return;
  }
  if (r.status == "BYE") {
    fail(FailureReason::ServiceUnavailable, "the server refuses service: " + describeResponse(r));
    return;
  }
  if (r.status == "PREAUTH") {
    // Already authenticated: there is nothing to log in to, and no STARTTLS is possible.
    if (plan_.spec->security == Security::StartTls) {
      enter(Phase::StartTls);
      fail(FailureReason::StartTlsNotOffered, "the server greets with PREAUTH");
      return;
    }
    beginLogout();
    return;
  }
  if (r.status != "OK") {
    fail(FailureReason::ProtocolError, "unexpected greeting: " + describeResponse(r));
    return;
  }
  if (capabilities_known_) {
    afterCapabilities();
    return;
  }
  transitionTo(State::Capability);
  send(nextTag() + " CAPABILITY\r\n");
}

void ImapSession::handleCapability(const ImapResponse& r) {
  if (r.status != "OK") {
    fail(FailureReason::ProtocolError, "CAPABILITY refused: " + describeResponse(r));
    return;
  }
  if (!capabilities_known_) {
    if (!r.code.empty()) {
      currentCaps() = imapCapabilities(r);
    }
    capabilities_known_ = true;
  }
  afterCapabilities();
}

void ImapSession::afterCapabilities() {
  const auto& caps = currentCaps();
  std::vector<std::string> mechs = imapAuthMechanisms(caps);
  if (!has("LOGINDISABLED")) {
    mechs.push_back(std::string(kLoginCommand));
  }
  if (outcome_.tls_up) {
    outcome_.auth_after_tls = mechs;
  } else {
    outcome_.auth_before_tls = mechs;
  }

  if (plan_.spec->security == Security::StartTls && !outcome_.tls_up) {
    outcome_.starttls_offered = has("STARTTLS");
    outcome_.plaintext_login_refused = has("LOGINDISABLED");
    if (!outcome_.starttls_offered) {
      enter(Phase::StartTls);
      fail(FailureReason::StartTlsNotOffered, "CAPABILITY does not list STARTTLS");
      return;
    }
    if (plan_.check_plaintext_login && !has("LOGINDISABLED")) {
      // RFC 3501 says a server that refuses LOGIN must say LOGINDISABLED. It does not: find out
      // whether it would take a password in clear, with a user that cannot exist.
      transitionTo(State::PlaintextCheck);
      std::vector<std::string> chunks;
      std::string current = nextTag() + " LOGIN ";
      literalOrQuoted(kPlaintextCheckUser, chunks, current);
      current += " ";
      literalOrQuoted("x", chunks, current);
      current += "\r\n";
      chunks.push_back(current);
      command(std::move(chunks));
      return;
    }
    beginStartTls();
    return;
  }
  beginLogin();
}

void ImapSession::handlePlaintextCheck(const ImapResponse& r) {
  // PRIVACYREQUIRED (RFC 5530), BAD, or any NO not about the credentials: refused before
  // looking at them. AUTHENTICATIONFAILED, or an OK: the server took a password in clear.
  bool refused = r.status == "BAD" || r.code.rfind("PRIVACYREQUIRED", 0) == 0 ||
                 (r.status == "NO" && r.code.rfind("AUTHENTICATIONFAILED", 0) != 0 &&
                  r.code.rfind("AUTHORIZATIONFAILED", 0) != 0 && !r.code.empty());
  outcome_.plaintext_login_refused = refused;
  if (!refused) {
    noteFailure(FailureReason::PlaintextAuthAllowed, Phase::Auth,
                "login before STARTTLS was processed: " + describeResponse(r));
  }
  if (r.status == "OK") {
    beginLogout();  // an impossible user logged in: stop here
    return;
  }
  beginStartTls();
}

void ImapSession::beginStartTls() {
  transitionTo(State::StartTls);
  send(nextTag() + " STARTTLS\r\n");
}

void ImapSession::handleStartTls(const ImapResponse& r) {
  if (r.status != "OK") {
    fail(FailureReason::StartTlsRefused, "STARTTLS refused: " + describeResponse(r));
    return;
  }
  switchToTls();
}

void ImapSession::beginLogin() {
  const auto& advertised = outcome_.tls_up ? outcome_.auth_after_tls : outcome_.auth_before_tls;
  std::optional<std::string> mechanism;
  if (mayLogIn()) {
    mechanism = chooseMechanism(advertised);
    if (!mechanism) {
      noteNoMechanism(advertised);
    }
  }
  if (!mechanism) {
    beginExamineOrLogout();
    return;
  }
  mechanism_ = *mechanism;
  sasl_step_ = 0;
  transitionTo(State::Login);
  askToLogIn(mechanism_);
}

void ImapSession::loginHeldBack() {
  beginExamineOrLogout();
}

void ImapSession::sendCredentials() {
  const Credentials& c = *plan_.credentials;
  if (mechanism_ == kLoginCommand) {
    std::vector<std::string> chunks;
    std::string current = nextTag() + " LOGIN ";
    literalOrQuoted(c.user, chunks, current);
    current += " ";
    literalOrQuoted(c.password, chunks, current);
    current += "\r\n";
    chunks.push_back(current);
    command(std::move(chunks));
    return;
  }
  std::string cmd = nextTag() + " AUTHENTICATE " + mechanism_;
  if (mechanism_ == "PLAIN" && has("SASL-IR")) {
    cmd += " " + saslPlain(c.user, c.password);
    sasl_step_ = 1;
  }
  send(cmd + "\r\n");
}

void ImapSession::onContinuation(const ImapResponse& r) {
  if (!pending_.empty()) {
    std::string chunk = std::move(pending_.front());
    pending_.pop_front();
    send(chunk);
    return;
  }
  if (state_ != State::Login || mechanism_ == kLoginCommand) {
    fail(FailureReason::ProtocolError, "unexpected continuation request");
    return;
  }
  if (sasl_step_ >= kMaxSaslAnswers) {
    fail(FailureReason::ProtocolError,
         "the server kept challenging after the exchange was cancelled");
    return;
  }
  const Credentials& c = *plan_.credentials;
  std::string answer;
  if (mechanism_ == "PLAIN" && sasl_step_ == 0) {
    answer = saslPlain(c.user, c.password);
  } else if (mechanism_ == "LOGIN" && sasl_step_ == 0) {
    answer = base64Encode(c.user);
  } else if (mechanism_ == "LOGIN" && sasl_step_ == 1) {
    answer = base64Encode(c.password);
  } else if (mechanism_ == "CRAM-MD5" && sasl_step_ == 0) {
    answer = cramMd5Response(c.user, c.password, r.text);
    if (answer.empty()) {
      send("*\r\n");  // cancel the exchange (RFC 3501 6.2.2)
      ++sasl_step_;
      return;
    }
  } else {
    send("*\r\n");
    ++sasl_step_;
    return;
  }
  ++sasl_step_;
  send(answer + "\r\n");
}

void ImapSession::handleLogin(const ImapResponse& r) {
  pending_.clear();
  if (r.status == "OK") {
    recordAuth(mechanism_, true, FailureReason::None, "");
  } else if (r.status == "NO") {
    // [UNAVAILABLE] (RFC 5530): the server could not check the credentials just now.
    recordAuth(mechanism_, false, FailureReason::AuthFailed, describeResponse(r),
               r.code.rfind("UNAVAILABLE", 0) == 0);
  } else {
    recordAuth(mechanism_, false, FailureReason::ProtocolError, describeResponse(r));
  }
  beginExamineOrLogout();
}

void ImapSession::beginExamineOrLogout() {
  if (plan_.examine && outcome_.auth && outcome_.auth->success) {
    transitionTo(State::Examine);
    send(nextTag() + " EXAMINE INBOX\r\n");
    return;
  }
  beginLogout();
}

void ImapSession::handleExamine(const ImapResponse& r) {
  if (r.status != "OK") {
    noteFailure(FailureReason::ProtocolError, Phase::Examine,
                "EXAMINE INBOX refused: " + describeResponse(r));
  }
  beginLogout();
}

void ImapSession::beginLogout() {
  transitionTo(State::Logout);
  send(nextTag() + " LOGOUT\r\n");
}

void ImapSession::command(std::vector<std::string> chunks) {
  pending_.assign(chunks.begin() + 1, chunks.end());
  send(chunks.front());
}

std::string ImapSession::literalOrQuoted(std::string_view value, std::vector<std::string>& chunks,
                                         std::string& current) {
  if (!imapNeedsLiteral(value)) {
    current += imapQuoted(value);
    return current;
  }
  std::string size = std::to_string(value.size());
  if (has("LITERAL+") || (has("LITERAL-") && value.size() <= 4096)) {
    current += "{" + size + "+}\r\n";
    current += value;
    return current;
  }
  // A synchronizing literal: the rest of the command waits for the server's "+".
  current += "{" + size + "}\r\n";
  chunks.push_back(current);
  current = std::string(value);
  return current;
}

}  // namespace mailprobe
