#pragma once
// What to probe and how: plain values the daemon builds from its config. The probe engine
// knows nothing of the config file format.

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "probes/types.h"

namespace mailprobe {

// The probe account. The password is a secret: it is never printed, logged or exported, and
// only leaves the process inside an authentication exchange over TLS.
struct Credentials {
  std::string user;
  std::string password;
  bool empty() const { return user.empty(); }
};

enum class AuthPolicy {
  Required,  // the endpoint must offer AUTH and the probe account must log in (IMAP, 465, 587)
  Optional,  // log in where offered (SMTP 25); not offering it is not a failure
  Skip,      // never log in
};

enum class AddressFamily { Any, V4, V6 };

struct TlsOptions {
  std::string ca_file;  // PEM bundle; empty: the system store
  int min_version = 0;  // 0: OpenSSL's default; else TLS1_VERSION .. TLS1_3_VERSION
  int max_version = 0;
  // Log in even when the certificate fails verification. The platform's guide tells phones to
  // "accept all certificates", so this shows whether those phones work; set it to false to
  // keep the password away from a server whose certificate does not verify.
  bool login_despite_invalid_cert = true;
  // Offer the session of this endpoint's previous connection to the same address (TLS session
  // resumption), as mail clients do. Off by default: a monitoring probe should see the full
  // handshake (the certificate chain as served now, its verification, the server's key), and a
  // resumed handshake shows none of that. See TlsContext for how stale its facts may be.
  bool resumption = false;
};

struct Timeouts {
  std::chrono::milliseconds resolve{5000};
  std::chrono::milliseconds connect{5000};
  std::chrono::milliseconds phase{10000};  // each protocol step (greeting, each reply, TLS)
  std::chrono::milliseconds total{30000};  // the whole endpoint probe
};

struct EndpointSpec {
  std::string host;  // the configured name: resolved, and used for SNI and name verification
  uint16_t port = 0;
  Service service = Service::Imap;
  Security security = Security::None;
  // For Security::StartTls: false means TLS is optional (SMTP 25): a server that does not offer
  // STARTTLS is reported but the conversation goes on in plaintext, without any login.
  bool starttls_required = true;
  AuthPolicy auth = AuthPolicy::Required;
  // Mechanisms to try, upper case; empty: every advertised mechanism the probe supports.
  std::vector<std::string> mechanisms;
  // Static addresses to probe instead of resolving `host` (the name still drives SNI and name
  // verification), e.g. one backend of a pool.
  std::vector<std::string> addresses;
  bool examine_inbox = false;  // IMAP: EXAMINE INBOX after login
  AddressFamily family = AddressFamily::Any;
  std::string source_address;  // bind before connect (a relay vantage); empty: the kernel's
  std::string ehlo_name = "mailprobed.invalid";
  TlsOptions tls;
  Timeouts timeouts;
};

// Mechanisms the probe can speak, upper case. For IMAP the plain LOGIN command (RFC 3501 6.2.3),
// which every IMAP4rev1 server has unless it says LOGINDISABLED, is the pseudo-mechanism
// "LOGIN-COMMAND"; "LOGIN" is AUTHENTICATE LOGIN.
const std::vector<std::string>& supportedMechanisms(Service s);

}  // namespace mailprobe
