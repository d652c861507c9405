#include "probes/smtp_session.h"

#include "probes/sasl.h"

namespace mailprobe {
namespace {

// A user that cannot exist, for the plaintext-login check (see ImapSession).
constexpr std::string_view kPlaintextCheckUser = "mailprobed-plaintext-check@invalid";

bool isRefusal(const SmtpReply& r) {
  return r.transientNegative() || r.permanentNegative();
}

}  // namespace

SmtpSession::SmtpSession(SessionHost& host, ConnectionPlan plan)
    : ParsedSession(host, std::move(plan), "reply") {}

std::string SmtpSession::describeReply(const SmtpReply& r) const {
  return describePeer(std::to_string(r.code) + " " + r.text());
}

RecipientVerdict SmtpSession::verdictOf(const SmtpReply& r, bool at_mail_from) const {
  return {r.code / 100 == 2, r.code, r.enhanced, describeReply(r), at_mail_from};
}

std::optional<Phase> SmtpSession::phaseOf(State state) const {
  switch (state) {
    case State::Greeting:
      return Phase::Greeting;
    case State::Ehlo:
    case State::Helo:
    case State::EhloAfterTls:
      return Phase::Capabilities;
    case State::PlaintextCheck:
    case State::PlaintextCancel:
    case State::Auth:
      return Phase::Auth;
    case State::StartTls:
      return Phase::StartTls;
    case State::MailFrom:
    case State::RcptLocal:
    case State::RcptOutside:
    case State::Rset:
      return Phase::Relay;
    case State::Quit:
      return Phase::Logout;
    case State::TlsHandshake:
    case State::Done:
      break;
  }
  return std::nullopt;
}

void SmtpSession::onTlsEstablished(const TlsFacts& tls) {
  recordTls(tls);
  // What the server said before TLS is forgotten (RFC 3207 4.2): ask again.
  caps_ = {};
  transitionTo(State::EhloAfterTls);
  send("EHLO " + plan_.spec->ehlo_name + "\r\n");
}

void SmtpSession::handle(const SmtpReply& r) {
  switch (state_) {
    case State::Greeting:
      handleGreeting(r);
      break;
    case State::Ehlo:
    case State::EhloAfterTls:
      handleEhlo(r);
      break;
    case State::Helo:
      handleHelo(r);
      break;
    case State::PlaintextCheck:
    case State::PlaintextCancel:
      handlePlaintextCheck(r);
      break;
    case State::StartTls:
      handleStartTls(r);
      break;
    case State::Auth:
      handleAuth(r);
      break;
    case State::MailFrom:
      handleMailFrom(r);
      break;
    case State::RcptLocal:
    case State::RcptOutside:
      handleRcpt(r);
      break;
    case State::Rset:
      beginQuit();  // whatever RSET gets, the verdicts are in
      break;
    case State::Quit:
      finishLoggedOut();
      break;
    case State::TlsHandshake:
    case State::Done:
      fail(FailureReason::ProtocolError, "unexpected reply: " + describeReply(r));
      break;
  }
}

void SmtpSession::handleGreeting(const SmtpReply& r) {
  if (r.code == 421 || r.code == 554) {
    fail(FailureReason::ServiceUnavailable, "the server refuses service: " + describeReply(r));
    return;
  }
  if (r.code != 220) {
    fail(FailureReason::ProtocolError, "unexpected greeting: " + describeReply(r));
    return;
  }
  transitionTo(State::Ehlo);
  send("EHLO " + plan_.spec->ehlo_name + "\r\n");
}

void SmtpSession::handleEhlo(const SmtpReply& r) {
  if (closing(r)) {
    return;
  }
  if (r.code != 250) {
    if (state_ == State::Ehlo && r.permanentNegative()) {
      transitionTo(State::Helo);  // an RFC 821 server
      send("HELO " + plan_.spec->ehlo_name + "\r\n");
      return;
    }
    fail(FailureReason::ProtocolError, "EHLO refused: " + describeReply(r));
    return;
  }
  caps_ = EhloCapabilities::parse(r);
  auto& keywords =
      outcome_.tls_up ? outcome_.capabilities_after_tls : outcome_.capabilities_before_tls;
  keywords = caps_.keywords;
  (outcome_.tls_up ? outcome_.auth_after_tls : outcome_.auth_before_tls) = caps_.auth_mechanisms;
  afterEhlo();
}

void SmtpSession::handleHelo(const SmtpReply& r) {
  if (r.code != 250) {
    fail(FailureReason::ProtocolError, "HELO refused: " + describeReply(r));
    return;
  }
  caps_ = {};
  afterEhlo();
}

void SmtpSession::afterEhlo() {
  if (plan_.spec->security == Security::StartTls && !outcome_.tls_up) {
    outcome_.starttls_offered = caps_.starttls;
    outcome_.plaintext_login_refused = caps_.auth_mechanisms.empty();
    if (plan_.check_plaintext_login && !caps_.auth_mechanisms.empty()) {
      // AUTH before TLS: would the server take a password in clear? Ask with a user that
      // cannot exist, so that no real password leaves and no account can be locked out.
      transitionTo(State::PlaintextCheck);
      send("AUTH PLAIN " + saslPlain(kPlaintextCheckUser, "x") + "\r\n");
      return;
    }
    beginStartTls();
    return;
  }
  beginAuth();
}

void SmtpSession::handlePlaintextCheck(const SmtpReply& r) {
  if (state_ == State::PlaintextCancel) {
    beginStartTls();  // the 501 that answers our "*"
    return;
  }
  // 535 (credentials rejected) or 235 means the server processed a cleartext password;
  // 538 (encryption required), 530, 503, 504: refused before looking at it (RFC 4954).
  bool processed = r.code == 535 || r.code == 235 || r.code == 334;
  outcome_.plaintext_login_refused = !processed;
  if (processed) {
    noteFailure(FailureReason::PlaintextAuthAllowed, Phase::Auth,
                "AUTH before STARTTLS was processed: " + describeReply(r));
  }
  if (r.code == 334) {
    transitionTo(State::PlaintextCancel);
    send("*\r\n");  // cancel the exchange; the server answers 501 and we go on
    return;
  }
  if (r.code == 235) {
    beginQuit();
    return;
  }
  beginStartTls();
}

void SmtpSession::beginStartTls() {
  if (!caps_.starttls) {
    if (plan_.spec->starttls_required) {
      enter(Phase::StartTls);
      fail(FailureReason::StartTlsNotOffered, "EHLO does not list STARTTLS");
      return;
    }
    // TLS is optional here (SMTP 25): the conversation goes on in clear, without any login.
    beginAuth();
    return;
  }
  transitionTo(State::StartTls);
  send("STARTTLS\r\n");
}

void SmtpSession::handleStartTls(const SmtpReply& r) {
  if (r.code != 220) {
    fail(FailureReason::StartTlsRefused, "STARTTLS refused: " + describeReply(r));
    return;
  }
  switchToTls();
}

void SmtpSession::beginAuth() {
  std::optional<std::string> mechanism;
  if (mayLogIn()) {
    mechanism = chooseMechanism(caps_.auth_mechanisms);
    if (!mechanism) {
      noteNoMechanism(caps_.auth_mechanisms);
    }
  }
  if (!mechanism) {
    afterLogin();
    return;
  }
  mechanism_ = *mechanism;
  sasl_step_ = 0;
  transitionTo(State::Auth);
  askToLogIn(mechanism_);
}

void SmtpSession::sendCredentials() {
  const Credentials& c = *plan_.credentials;
  if (mechanism_ == "PLAIN") {
    sasl_step_ = 1;
    send("AUTH PLAIN " + saslPlain(c.user, c.password) + "\r\n");
    return;
  }
  send("AUTH " + mechanism_ + "\r\n");
}

void SmtpSession::loginHeldBack() {
  afterLogin();
}

void SmtpSession::handleAuth(const SmtpReply& r) {
  if (r.code == 334) {
    const Credentials& c = *plan_.credentials;
    std::string challenge = r.lines.empty() ? "" : r.lines.front();
    std::string answer;
    if (mechanism_ == "LOGIN" && sasl_step_ == 0) {
      answer = base64Encode(c.user);
    } else if (mechanism_ == "LOGIN" && sasl_step_ == 1) {
      answer = base64Encode(c.password);
    } else if (mechanism_ == "CRAM-MD5" && sasl_step_ == 0) {
      answer = cramMd5Response(c.user, c.password, challenge);
    } else if (mechanism_ == "PLAIN" && sasl_step_ == 1) {
      // Some servers ignore the initial response and ask for it again.
      answer = saslPlain(c.user, c.password);
    }
    ++sasl_step_;
    send((answer.empty() ? std::string("*") : answer) + "\r\n");
    return;
  }
  if (r.code == 235) {
    recordAuth(mechanism_, true, FailureReason::None, "");
  } else if (r.code == 421) {
    recordAuth(mechanism_, false, FailureReason::ServiceUnavailable, describeReply(r));
    fail(FailureReason::ServiceUnavailable, describeReply(r));
    return;
  } else if (r.code >= 400) {
    // 454 (RFC 4954): the server could not check the credentials just now.
    recordAuth(mechanism_, false, FailureReason::AuthFailed, describeReply(r),
               r.transientNegative());
  } else {
    recordAuth(mechanism_, false, FailureReason::ProtocolError, describeReply(r));
  }
  afterLogin();
}

bool SmtpSession::closing(const SmtpReply& r) {
  if (r.code != 421) {
    return false;
  }
  fail(FailureReason::ServiceUnavailable, "the server closes: " + describeReply(r));
  return true;
}

void SmtpSession::afterLogin() {
  if (!plan_.relay) {
    beginQuit();
    return;
  }
  bool logged_in = outcome_.auth && outcome_.auth->success;
  if (plan_.relay->signed_in && !logged_in) {
    // The signed-in relay rules cannot be judged without a login; the outcome says why.
    if (!outcome_.auth) {
      if (!mayLogIn()) {
        noteFailure(FailureReason::AuthNotOffered, Phase::Auth,
                    "no sign-in without TLS" +
                        std::string(caps_.starttls ? "" : " (STARTTLS is not offered)"));
      } else {
        noteFailure(caps_.auth_mechanisms.empty() ? FailureReason::AuthNotOffered
                                                  : FailureReason::AuthMechanismMissing,
                    Phase::Auth, "cannot sign in, so the signed-in relay rules go unchecked");
      }
    }
    beginQuit();
    return;
  }
  transitionTo(State::MailFrom);
  send("MAIL FROM:<" + plan_.relay->mail_from + ">\r\n");
}

void SmtpSession::handleMailFrom(const SmtpReply& r) {
  if (closing(r)) {
    return;
  }
  if (r.code / 100 == 2) {
    beginRcpt(State::RcptLocal, plan_.relay->local_recipient);
    return;
  }
  if (!isRefusal(r)) {
    fail(FailureReason::ProtocolError, "unexpected reply to MAIL FROM: " + describeReply(r));
    return;
  }
  // Refused before any recipient (530: sign in first): no recipient can be reached.
  outcome_.relay_local = verdictOf(r, true);
  outcome_.relay_outside = verdictOf(r, true);
  transitionTo(State::Rset);
  send("RSET\r\n");
}

void SmtpSession::beginRcpt(State state, const std::string& recipient) {
  transitionTo(state);
  send("RCPT TO:<" + recipient + ">\r\n");
}

void SmtpSession::handleRcpt(const SmtpReply& r) {
  if (closing(r)) {
    return;
  }
  if (r.code / 100 != 2 && !isRefusal(r)) {
    fail(FailureReason::ProtocolError, "unexpected reply to RCPT TO: " + describeReply(r));
    return;
  }
  if (state_ == State::RcptLocal) {
    outcome_.relay_local = verdictOf(r, false);
    beginRcpt(State::RcptOutside, plan_.relay->outside_recipient);
    return;
  }
  outcome_.relay_outside = verdictOf(r, false);
  // The verdicts are read: forget the transaction, never DATA.
  transitionTo(State::Rset);
  send("RSET\r\n");
}

void SmtpSession::beginQuit() {
  transitionTo(State::Quit);
  send("QUIT\r\n");
}

}  // namespace mailprobe
