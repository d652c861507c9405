#pragma once
// The shared vocabulary of mailprobed (see PRODUCT.md): services, security modes, phases and
// failure reasons, and the value a probe returns. Every string here is a contract with scripts,
// alert rules and dashboards: extend the enums, never rename or drop a spelling.

#include <cstdint>
#include <optional>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

namespace mailprobe {

enum class Service { Imap, Smtp };

enum class Security { None, StartTls, Tls };

// The steps of one probe conversation, in the order a client meets them.
enum class Phase {
  Resolve,
  Connect,
  Greeting,
  Capabilities,
  StartTls,
  TlsHandshake,
  Auth,
  Examine,
  Relay,
  Logout,
};

enum class FailureReason {
  None,
  // reach
  ResolveFailed,
  ConnectRefused,
  ConnectTimeout,
  Timeout,
  ConnectionClosed,
  // protocol
  ServiceUnavailable,
  ProtocolError,
  // STARTTLS / TLS
  StartTlsNotOffered,
  StartTlsRefused,
  PlaintextAfterStartTls,
  TlsHandshakeFailed,
  TlsVersionUnsupported,
  // certificate
  CertExpired,
  CertNotYetValid,
  CertHostnameMismatch,
  CertSelfSigned,
  CertUntrusted,
  CertInvalid,
  // authentication
  AuthNotOffered,
  AuthMechanismMissing,
  AuthFailed,
  AuthBackoff,
  PlaintextAuthAllowed,
  // relay
  OpenRelay,
  TrustedRelayDenied,
  AuthRelayDenied,
  LocalDeliveryRefused,
  UnauthSubmissionAccepted,
};

std::string_view toString(Service s);
std::string_view toString(Security s);
std::string_view toString(Phase p);
std::string_view toString(FailureReason r);

std::optional<Service> parseService(std::string_view s);
std::optional<Security> parseSecurity(std::string_view s);
std::optional<Phase> parsePhase(std::string_view s);
std::optional<FailureReason> parseFailureReason(std::string_view s);

// Every value of each enum, in declaration order (for pre-creating metric series, docs, tests).
const std::vector<Phase>& allPhases();
const std::vector<FailureReason>& allFailureReasons();

bool isCertificateReason(FailureReason r);

// Relay checks (PRODUCT.md "Checks the relay rules"): one cell is a vantage x port x auth state x
// recipient; these are its words in JSON, metric labels and pages.
enum class RelayAuth { None, SignedIn };       // "none", "signed_in"
enum class RelayRecipient { Local, Outside };  // "local", "outside"
enum class RelayVerdict { Accept, Refuse };    // "accept", "refuse": the answer to RCPT TO

std::string_view toString(RelayAuth a);
std::string_view toString(RelayRecipient r);
std::string_view toString(RelayVerdict v);

// For test failure messages and logs.
inline std::ostream& operator<<(std::ostream& o, Service v) {
  return o << toString(v);
}
inline std::ostream& operator<<(std::ostream& o, Security v) {
  return o << toString(v);
}
inline std::ostream& operator<<(std::ostream& o, Phase v) {
  return o << toString(v);
}
inline std::ostream& operator<<(std::ostream& o, FailureReason v) {
  return o << toString(v);
}
inline std::ostream& operator<<(std::ostream& o, RelayAuth v) {
  return o << toString(v);
}
inline std::ostream& operator<<(std::ostream& o, RelayRecipient v) {
  return o << toString(v);
}
inline std::ostream& operator<<(std::ostream& o, RelayVerdict v) {
  return o << toString(v);
}

// What a TLS handshake showed. Present whenever a handshake completed, including when the
// certificate failed verification: an invalid certificate never hides these facts.
struct TlsFacts {
  std::string version;  // "TLSv1.3"
  std::string cipher;   // "TLS_AES_256_GCM_SHA384"
  // None when the chain and host name verified; otherwise the certificate reason.
  FailureReason verify = FailureReason::None;
  std::string verify_detail;    // OpenSSL's words for logs, e.g. "certificate has expired"
  int64_t leaf_not_before = 0;  // unix seconds
  int64_t leaf_not_after = 0;   // unix seconds
  int64_t chain_not_after = 0;  // earliest not-after over the presented chain
  std::string subject;          // leaf subject, one line
  std::string issuer;           // leaf issuer, one line
  // A client that accepts all certificates would have completed this handshake.
  bool accept_all_ok = false;
  // The handshake resumed an earlier session (TlsOptions::resumption): the certificate facts
  // are those of the full handshake it descends from, at most kMaxResumedFactsAge old.
  bool resumed = false;
};

struct AuthAttempt {
  std::string mechanism;  // "LOGIN" (IMAP LOGIN command), "PLAIN", "CRAM-MD5", ...
  bool success = false;
  FailureReason reason = FailureReason::None;
  std::string detail;  // the server's reply text, never credentials
};

struct PhaseTiming {
  Phase phase;
  double seconds;
};

// The outcome of probing one endpoint (host, one resolved address, port, security mode).
struct ProbeResult {
  std::string host;     // the configured name
  std::string address;  // the resolved address probed, "" if resolution failed
  uint16_t port = 0;
  Service service = Service::Imap;
  Security security = Security::None;

  bool success = false;
  FailureReason reason = FailureReason::None;
  Phase phase = Phase::Resolve;  // where it failed (meaningful when !success)
  std::string detail;            // what the server said or the error, for people; never secrets
  std::string sentence;          // one human sentence summarising the outcome

  std::optional<TlsFacts> tls;
  bool starttls_offered = false;
  std::vector<std::string> capabilities_before_tls;
  std::vector<std::string> capabilities_after_tls;
  std::vector<std::string> auth_before_tls;  // AUTH mechanisms advertised before TLS
  std::vector<std::string> auth_after_tls;   // ... and after (or on implicit TLS)
  // IMAP LOGINDISABLED / SMTP no AUTH before TLS: plaintext login is refused or not offered.
  std::optional<bool> plaintext_login_refused;
  std::vector<AuthAttempt> auth;
  std::vector<PhaseTiming> timings;
  int64_t started_at = 0;  // unix seconds
  double duration_seconds = 0;
};

// Fills in `sentence` from the other fields.
std::string describe(const ProbeResult& r);

}  // namespace mailprobe
