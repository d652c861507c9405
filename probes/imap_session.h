#pragma once
// The IMAP conversation of a probe (RFC 3501 / 9051): greeting, CAPABILITY, STARTTLS and
// CAPABILITY again, the plaintext-login check, one login, optional EXAMINE INBOX, LOGOUT.

#include <deque>

#include "probes/imap_response.h"
#include "probes/session.h"

namespace mailprobe {

// The states of an ImapSession (declared outside it: its base is parameterised on them).
enum class ImapState {
  Greeting,
  Capability,
  PlaintextCheck,
  StartTls,
  TlsHandshake,
  CapabilityAfterTls,
  Login,
  Examine,
  Logout,
  Done,
};

class ImapSession final : public ParsedSession<ImapResponseParser, ImapState> {
 public:
  ImapSession(SessionHost& host, ConnectionPlan plan);

  // ProtocolSession
  void onTlsEstablished(const TlsFacts& tls) override;

 private:
  using State = ImapState;

  // ParsedSession
  void handle(const ImapResponse& r) override;
  std::optional<Phase> phaseOf(State state) const override;
  // ProtocolSession
  void sendCredentials() override;
  void loginHeldBack() override;

  void handleGreeting(const ImapResponse& r);
  void handleCapability(const ImapResponse& r);
  void handlePlaintextCheck(const ImapResponse& r);
  void handleStartTls(const ImapResponse& r);
  void handleLogin(const ImapResponse& r);
  void handleExamine(const ImapResponse& r);
  // The response for a detail, the password taken out (describePeer).
  std::string describeResponse(const ImapResponse& r) const;

  // Steps that begin a state.
  void afterCapabilities();
  void beginStartTls();
  void beginLogin();
  void beginExamineOrLogout();
  void beginLogout();

  std::string nextTag();
  // Sends a command, splitting it at synchronizing literals: the rest waits for "+".
  void command(std::vector<std::string> chunks);
  std::string literalOrQuoted(std::string_view value, std::vector<std::string>& chunks,
                              std::string& current);
  void onContinuation(const ImapResponse& r);
  std::vector<std::string>& currentCaps();
  bool has(std::string_view cap);

  int tag_counter_ = 0;
  std::string tag_;                  // tag of the command awaiting its completion
  std::deque<std::string> pending_;  // command chunks waiting for a continuation
  std::string mechanism_;            // the login in progress
  int sasl_step_ = 0;
  bool capabilities_known_ = false;  // capabilities for the current TLS state are known
  size_t untagged_in_a_row_ = 0;     // untagged responses since the last tagged or "+" one
};

}  // namespace mailprobe
