#pragma once
// The SMTP conversation of a probe (RFC 5321, 3207, 4954): greeting, EHLO (HELO fallback),
// STARTTLS and EHLO again, the plaintext-login check, one AUTH, QUIT. Strictly one command at a
// time: nothing is sent before the previous reply is complete.

#include "probes/session.h"
#include "probes/smtp_reply.h"

namespace mailprobe {

class SmtpSession final : public ProtocolSession {
 public:
  SmtpSession(SessionHost& host, ConnectionPlan plan);

  // ProtocolSession
  void onConnected(const std::optional<TlsFacts>& tls) override;
  void onData(std::string_view bytes) override;
  void onTlsEstablished(const TlsFacts& tls) override;

 private:
  enum class State {
    Greeting,
    Ehlo,
    Helo,
    PlaintextCheck,
    PlaintextCancel,
    StartTls,
    TlsHandshake,
    EhloAfterTls,
    Auth,
    Quit,
    Done,
  };

  void handle(const SmtpReply& r);
  void handleGreeting(const SmtpReply& r);
  void handleEhlo(const SmtpReply& r);
  void handleHelo(const SmtpReply& r);
  void handlePlaintextCheck(const SmtpReply& r);
  void handleStartTls(const SmtpReply& r);
  void handleAuth(const SmtpReply& r);
  void handleQuit(const SmtpReply& r);

  void afterEhlo();
  void beginStartTls();
  void beginAuth();
  void beginQuit();
  void transitionTo(State next);

  State state_ = State::Greeting;
  SmtpReplyParser parser_;
  EhloCapabilities caps_;
  std::string mechanism_;
  int sasl_step_ = 0;
};

}  // namespace mailprobe
