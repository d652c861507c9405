#pragma once
// A protocol conversation over one connection, with no I/O of its own (STYLE habit 3).
//
// GLOSSARY
//   host      whoever moves the bytes: the libuv Connection in production, a FakeHost in tests.
//             It owns time (phase deadlines) and the transport (TCP, TLS engine).
//   session   the protocol state machine (ImapSession, SmtpSession). It takes bytes and events,
//             and answers with sends, a TLS switch request, phase changes and one `done`.
//   outcome   what the session saw on this connection; complete once `done` was called.
//   soft failure  a finding that does not stop the conversation (an invalid certificate, plaintext
//             login allowed, a refused login): the first failure is the outcome's reason, and the
//             conversation goes on so every later fact is still gathered.
//   hard failure  the conversation cannot go on (timeout, closed, refused STARTTLS): finish now.

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "probes/auth_gate.h"
#include "probes/probe_spec.h"
#include "probes/types.h"

namespace mailprobe {

class SessionHost {
 public:
  virtual ~SessionHost() = default;
  // Plaintext to the server; the host encrypts it once TLS is up.
  virtual void send(std::string_view bytes) = 0;
  // Switch the transport to TLS (after a positive STARTTLS reply). The host answers with
  // ProtocolSession::onTlsEstablished, or aborts the session with the handshake's reason.
  virtual void startTls() = 0;
  // The conversation moved on: the host stamps the phase timing and rearms the phase deadline.
  virtual void enterPhase(Phase phase) = 0;
  // The session is finished (its outcome is final); the host closes the connection. Called once.
  virtual void done() = 0;
};

// A relay check's envelope (RelayProbe). After the login, if any: MAIL FROM, RCPT TO the local
// recipient, RCPT TO the outside one, RSET, QUIT. There is no DATA: a relay check reads the
// verdict at RCPT and never goes further, so nothing can be delivered.
struct RelayEnvelope {
  std::string mail_from;  // empty: the null reverse-path "<>"
  std::string local_recipient;
  std::string outside_recipient;
  // The signed-in state: the recipients are only asked after a successful login; without one the
  // conversation ends and the outcome says why (auth_failed, auth_not_offered, ...).
  bool signed_in = false;
};

// The server's answer for one recipient: to RCPT TO, or to MAIL FROM when that was refused
// already (a 530 "authentication required" there refuses every recipient).
struct RecipientVerdict {
  bool accepted = false;  // 2xx
  int code = 0;           // 250, 454, 554, 550, 553, 530, 451 ...
  std::string enhanced;   // "5.7.1", when the server gives one
  std::string detail;     // the reply, sanitised
  bool at_mail_from = false;
};

// What one connection should do.
struct ConnectionPlan {
  const EndpointSpec* spec = nullptr;
  const Credentials* credentials = nullptr;
  // Mechanisms to log in with, in order; the session uses the first one the server advertises
  // that is not in `already_tried`. Empty: no login on this connection.
  std::vector<std::string> candidates;
  std::vector<std::string> already_tried;
  // On a STARTTLS endpoint: check that a login before TLS is refused or not offered.
  bool check_plaintext_login = false;
  bool examine = false;                // IMAP EXAMINE INBOX after login
  std::optional<RelayEnvelope> relay;  // SMTP: a relay check instead of a bare QUIT
  // The login gate of the probe account (AuthGate), and the account's key there. Null: the
  // credentials go without asking (session tests that are not about the gate).
  AuthGate* gate = nullptr;
  std::string account;
};

// What one connection saw.
struct ConnectionOutcome {
  FailureReason reason = FailureReason::None;  // the first failure, hard or soft
  Phase phase = Phase::Connect;                // where it happened
  std::string detail;
  bool finished = false;  // done() was called
  bool tls_up = false;
  std::optional<TlsFacts> tls;
  bool starttls_offered = false;
  std::vector<std::string> capabilities_before_tls;
  std::vector<std::string> capabilities_after_tls;
  std::vector<std::string> auth_before_tls;
  std::vector<std::string> auth_after_tls;
  std::optional<bool> plaintext_login_refused;
  std::optional<AuthAttempt> auth;  // the login tried on this connection, if any
  // Relay checks: the verdict for each recipient, once the server gave it.
  std::optional<RecipientVerdict> relay_local;
  std::optional<RecipientVerdict> relay_outside;
  bool logged_out = false;  // the conversation ended cleanly
};

class ProtocolSession {
 public:
  explicit ProtocolSession(SessionHost& host, ConnectionPlan plan);
  virtual ~ProtocolSession() = default;
  ProtocolSession(const ProtocolSession&) = delete;
  ProtocolSession& operator=(const ProtocolSession&) = delete;

  // The transport is up: TCP connected, or for implicit TLS the handshake completed (the host
  // passes its facts). The server speaks first.
  virtual void onConnected(const std::optional<TlsFacts>& tls) = 0;
  virtual void onData(std::string_view bytes) = 0;
  // The STARTTLS handshake completed (the certificate may still have failed verification).
  virtual void onTlsEstablished(const TlsFacts& tls) = 0;

  // The host ends the conversation: timeout, peer close, TLS failure. A no-op once finished.
  // A close by the peer after the session has begun logging out is a clean end, not a failure.
  // `phase` is the host's view (it knows connect and the TLS handshake); the session's own
  // phase is used when the host passes nullopt.
  void abort(FailureReason reason, std::optional<Phase> phase, std::string detail);
  void onPeerClosed(std::optional<Phase> phase);

  const ConnectionOutcome& outcome() const { return outcome_; }
  Phase currentPhase() const { return phase_; }

 protected:
  void enter(Phase phase);
  void send(std::string_view bytes) { host_.send(bytes); }
  // A finding that does not stop the conversation; only the first one is the reason.
  void noteFailure(FailureReason reason, Phase phase, std::string detail);
  // Ends the conversation with this failure (or with the first soft one noted before it).
  void fail(FailureReason reason, std::string detail);
  // Ends the conversation; the outcome keeps whatever was noted.
  void finish();
  // Records the TLS facts; an unverified certificate is a soft failure in the TLS phase.
  void recordTls(const TlsFacts& tls);
  // Whether to send credentials now: never before TLS on a TLS endpoint, and never to a server
  // whose certificate failed verification unless the spec allows it.
  bool mayLogIn() const;
  // The first candidate mechanism the server advertises, not yet tried; nullopt if none.
  std::optional<std::string> chooseMechanism(const std::vector<std::string>& advertised) const;
  // Records the absence of a usable mechanism as a soft failure where the plan needed one.
  void noteNoMechanism(const std::vector<std::string>& advertised);
  // The server's answer to the login (or its absence); the gate hears of it too: accepted,
  // refused (auth_failed, unless the server says the failure is `temporary`: SMTP 454, IMAP
  // [UNAVAILABLE]), or inconclusive (anything else).
  void recordAuth(std::string mechanism, bool success, FailureReason reason, std::string detail,
                  bool temporary = false);
  // Before credentials leave for `mechanism`: the gate decides (AuthGate), and the subclass
  // sends them in sendCredentials(), now or once the account's turn comes. A login the gate
  // holds back sends nothing: it is recorded as auth_backoff and loginHeldBack() goes on.
  // The caller has entered the auth phase; a wait for the turn runs under its deadline.
  void askToLogIn(const std::string& mechanism);
  virtual void sendCredentials() = 0;
  virtual void loginHeldBack() = 0;
  // Peer text for a detail: the password taken out first, then bounded (sanitize), so that a
  // cut cannot leave part of it behind.
  std::string describePeer(std::string_view text) const;

  SessionHost& host_;
  ConnectionPlan plan_;
  ConnectionOutcome outcome_;
  Phase phase_ = Phase::Connect;

 private:
  void onLoginTurn(AuthGate::Verdict verdict);
  void holdBack(std::string detail);

  // This connection's place at the gate, from askToLogIn until the login is answered or the
  // connection ends (released early, so that the next login waiting for the account goes).
  std::unique_ptr<AuthGate::Login> login_;
  std::string login_mechanism_;
};

// What the IMAP and SMTP sessions share: the parser fed from onData, one handle() per complete
// message, the STARTTLS switch with its injection check, and the clean end after the goodbye.
// The subclass keeps its grammar (handle) and its state machine; `State` is its one enum of
// states (STYLE habit 2) and must name Greeting, TlsHandshake and Done. `Parser` has feed(),
// next() (an optional message), failed(), error() and buffered().
template <typename Parser, typename State>
class ParsedSession : public ProtocolSession {
 public:
  using Message = typename decltype(std::declval<Parser&>().next())::value_type;

  void onConnected(const std::optional<TlsFacts>& tls) final {
    if (tls) {
      recordTls(*tls);
    }
    transitionTo(State::Greeting);
  }

  void onData(std::string_view bytes) final {
    if (outcome_.finished) {
      return;
    }
    parser_.feed(bytes);
    while (!outcome_.finished) {
      std::optional<Message> message = parser_.next();
      if (!message) {
        break;
      }
      handle(*message);
      if (state_ == State::TlsHandshake) {
        // Anything after the STARTTLS completion and before the handshake is an injection.
        if (parser_.buffered() > 0) {
          fail(FailureReason::PlaintextAfterStartTls,
               "the server sent plaintext after accepting STARTTLS");
        }
        return;
      }
    }
    if (parser_.failed() && !outcome_.finished) {
      fail(FailureReason::ProtocolError,
           "unparsable " + std::string(message_name_) + ": " + parser_.error());
    }
  }

 protected:
  // `message_name` names a Message in details: "response", "reply".
  ParsedSession(SessionHost& host, ConnectionPlan plan, std::string_view message_name)
      : ProtocolSession(host, std::move(plan)), message_name_(message_name) {}

  virtual void handle(const Message& message) = 0;
  // The phase a state belongs to; nullopt where entering the state enters no phase (the host
  // enters the TLS handshake phase itself when it switches).
  virtual std::optional<Phase> phaseOf(State state) const = 0;

  void transitionTo(State next) {
    state_ = next;
    if (std::optional<Phase> phase = phaseOf(next)) {
      enter(*phase);
    }
  }
  // After the server accepted STARTTLS. With plaintext already buffered behind its answer the
  // switch does not happen: onData reports the injection.
  void switchToTls() {
    transitionTo(State::TlsHandshake);
    if (parser_.buffered() > 0) {
      return;
    }
    host_.startTls();
  }
  // The server answered the goodbye: the conversation ended cleanly.
  void finishLoggedOut() {
    outcome_.logged_out = true;
    transitionTo(State::Done);
    finish();
  }

  State state_ = State::Greeting;
  Parser parser_;

 private:
  std::string_view message_name_;
};

// Bounded, printable copy of peer text for details and logs.
std::string sanitize(std::string_view text, size_t max = 200);

// `text` with every form in which a session sends the password replaced by "[password]": as is,
// IMAP-quoted, base64 (AUTH LOGIN) and the AUTH PLAIN message, the base64 forms with or without
// their padding. A server may quote a refused command back ("535 ... failed for AUTH PLAIN
// AGFsaWNl..."), and details go to logs, pages and JSON. Null or empty credentials: unchanged.
std::string redactPassword(std::string_view text, const Credentials* credentials);

}  // namespace mailprobe
