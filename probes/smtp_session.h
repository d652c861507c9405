#pragma once
// The SMTP conversation of a probe (RFC 5321, 3207, 4954): greeting, EHLO (HELO fallback),
// STARTTLS and EHLO again, the plaintext-login check, one AUTH, QUIT. Strictly one command at a
// time: nothing is sent before the previous reply is complete.
//
// With ConnectionPlan::relay (a relay check), the same conversation goes on after the login (or
// without one) with MAIL FROM, RCPT TO the local recipient, RCPT TO the outside recipient, RSET
// and QUIT, and records each recipient's verdict. There is no DATA state and no code that sends
// DATA: a relay check can never deliver anything.

#include "probes/session.h"
#include "probes/smtp_reply.h"

namespace mailprobe {

// The states of an SmtpSession (declared outside it: its base is parameterised on them).
enum class SmtpState {
  Greeting,
  Ehlo,
  Helo,
  PlaintextCheck,
  PlaintextCancel,
  StartTls,
  TlsHandshake,
  EhloAfterTls,
  Auth,
  MailFrom,
  RcptLocal,
  RcptOutside,
  Rset,
  Quit,
  Done,
};

class SmtpSession final : public ParsedSession<SmtpReplyParser, SmtpState> {
 public:
  SmtpSession(SessionHost& host, ConnectionPlan plan);

  // ProtocolSession
  void onTlsEstablished(const TlsFacts& tls) override;

 private:
  using State = SmtpState;

  // ParsedSession
  void handle(const SmtpReply& r) override;
  std::optional<Phase> phaseOf(State state) const override;
  // ProtocolSession
  void sendCredentials() override;
  void loginHeldBack() override;

  void handleGreeting(const SmtpReply& r);
  void handleEhlo(const SmtpReply& r);
  void handleHelo(const SmtpReply& r);
  void handlePlaintextCheck(const SmtpReply& r);
  void handleStartTls(const SmtpReply& r);
  void handleAuth(const SmtpReply& r);
  void handleMailFrom(const SmtpReply& r);
  void handleRcpt(const SmtpReply& r);
  // 421 (RFC 5321 3.8): the server is closing; ends the conversation and returns true.
  bool closing(const SmtpReply& r);
  // The reply for a detail, the password taken out (describePeer).
  std::string describeReply(const SmtpReply& r) const;
  RecipientVerdict verdictOf(const SmtpReply& r, bool at_mail_from) const;

  void afterEhlo();
  void beginStartTls();
  void beginAuth();
  void afterLogin();
  void beginRcpt(State state, const std::string& recipient);
  void beginQuit();

  EhloCapabilities caps_;
  std::string mechanism_;
  int sasl_step_ = 0;
};

}  // namespace mailprobe
