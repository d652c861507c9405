// One sentence per result, for the person reading `check`, the status page or the log.

#include <ctime>

#include "probes/relay.h"
#include "probes/types.h"

namespace mailprobe {
namespace {

std::string what(FailureReason r) {
  switch (r) {
    case FailureReason::None:
      return "works";
    case FailureReason::ResolveFailed:
      return "the name does not resolve";
    case FailureReason::ConnectRefused:
      return "the connection is refused";
    case FailureReason::ConnectTimeout:
      return "the connection attempt times out";
    case FailureReason::Timeout:
      return "the server stops answering";
    case FailureReason::ConnectionClosed:
      return "the server closes the connection";
    case FailureReason::ServiceUnavailable:
      return "the server refuses service";
    case FailureReason::ProtocolError:
      return "the server's answer makes no sense";
    case FailureReason::StartTlsNotOffered:
      return "STARTTLS is not offered";
    case FailureReason::StartTlsRefused:
      return "STARTTLS is refused";
    case FailureReason::PlaintextAfterStartTls:
      return "plaintext follows STARTTLS (injection risk)";
    case FailureReason::TlsHandshakeFailed:
      return "the TLS handshake fails";
    case FailureReason::TlsVersionUnsupported:
      return "no TLS version in common";
    case FailureReason::CertExpired:
      return "the certificate has expired";
    case FailureReason::CertNotYetValid:
      return "the certificate is not valid yet";
    case FailureReason::CertHostnameMismatch:
      return "the certificate is for another name";
    case FailureReason::CertSelfSigned:
      return "the certificate is self-signed";
    case FailureReason::CertUntrusted:
      return "the certificate's issuer is unknown (missing intermediate?)";
    case FailureReason::CertInvalid:
      return "the certificate is invalid";
    case FailureReason::AuthNotOffered:
      return "no login is offered";
    case FailureReason::AuthMechanismMissing:
      return "a required login mechanism is missing";
    case FailureReason::AuthFailed:
      return "the login is refused";
    case FailureReason::AuthBackoff:
      return "logins are paused after failures";
    case FailureReason::PlaintextAuthAllowed:
      return "passwords are accepted before TLS";
    case FailureReason::OpenRelay:
      return "it relays to outside domains without sign-in (open relay)";
    case FailureReason::TrustedRelayDenied:
      return "the trusted network may not relay";
    case FailureReason::AuthRelayDenied:
      return "signed-in users may not relay";
    case FailureReason::LocalDeliveryRefused:
      return "mail for the local domain is refused";
    case FailureReason::UnauthSubmissionAccepted:
      return "it accepts mail without sign-in";
  }
  return "fails";
}

std::string date(int64_t t) {
  std::time_t tt = static_cast<std::time_t>(t);
  std::tm tm{};
  gmtime_r(&tt, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%d", &tm);
  return buf;
}

// "smtp 25 (starttls) on mail.example.org [192.0.2.25]"
std::string target(Service service, uint16_t port, Security security, const std::string& host,
                   const std::string& address) {
  std::string s = std::string(toString(service)) + " " + std::to_string(port) + " (" +
                  std::string(toString(security)) + ") on " + host;
  if (!address.empty() && address != host) {
    s += " [" + address + "]";
  }
  return s;
}

}  // namespace

std::string describe(const RelayCell& c) {
  std::string s = target(Service::Smtp, c.port, c.security, c.host, c.address) + ", vantage " +
                  c.vantage + " (" + (c.trusted ? "trusted" : "untrusted") + "), " +
                  (c.auth == RelayAuth::SignedIn ? "signed in" : "not signed in") + ": the " +
                  std::string(toString(c.recipient)) + " recipient ";
  if (!c.observed) {
    return s + "was not asked: fails at " + std::string(toString(c.phase)) + ": " + what(c.reason) +
           ".";
  }
  std::string code;
  if (c.code != 0) {
    code = " (" + std::to_string(c.code) + (c.enhanced.empty() ? "" : " " + c.enhanced) +
           (c.at_mail_from ? " at MAIL FROM" : "") + ")";
  }
  s += std::string(*c.observed == RelayVerdict::Accept ? "is accepted" : "is refused") + code;
  if (c.reason == FailureReason::None) {
    return s + ", as expected.";
  }
  s += " where the policy says " + std::string(toString(c.expected)) + ": " + what(c.reason) + ".";
  return c.reason == FailureReason::OpenRelay ? "OPEN RELAY: " + s : s;
}

std::string describe(const ProbeResult& r) {
  std::string s = target(r.service, r.port, r.security, r.host, r.address);
  if (r.reason == FailureReason::None) {
    s += ": works";
    if (r.tls) {
      s += ", " + r.tls->version;
    }
    std::string ok;
    for (const auto& a : r.auth) {
      if (a.success) {
        ok += (ok.empty() ? "" : ", ") + a.mechanism;
      }
    }
    if (!ok.empty()) {
      s += ", login with " + ok;
    }
    return s + ".";
  }
  s += ": fails at " + std::string(toString(r.phase)) + ": " + what(r.reason);
  if (r.reason == FailureReason::CertExpired && r.tls && r.tls->leaf_not_after != 0) {
    s += " (since " + date(r.tls->leaf_not_after) + ")";
  }
  if (r.phase == Phase::Auth && !r.auth.empty()) {
    // The mechanisms that failed for this reason (refused ones apart from held-back ones).
    std::string failed;
    for (const auto& a : r.auth) {
      if (!a.success && a.reason == r.reason) {
        failed += (failed.empty() ? "" : ", ") + a.mechanism;
      }
    }
    if (!failed.empty()) {
      s += " (" + failed + ")";
    }
  }
  if (isCertificateReason(r.reason) && r.tls && r.tls->accept_all_ok) {
    s += "; clients that accept all certificates still connect";
  }
  return s + ".";
}

}  // namespace mailprobe
