#include "probes/types.h"

#include <array>
#include <utility>

namespace mailprobe {
namespace {

template <typename E, size_t N>
using Table = std::array<std::pair<E, std::string_view>, N>;

constexpr auto kServices = std::to_array<std::pair<Service, std::string_view>>(
    {{Service::Imap, "imap"}, {Service::Smtp, "smtp"}});

constexpr auto kSecurities = std::to_array<std::pair<Security, std::string_view>>(
    {{Security::None, "none"}, {Security::StartTls, "starttls"}, {Security::Tls, "tls"}});

constexpr auto kPhases = std::to_array<std::pair<Phase, std::string_view>>({
    {Phase::Resolve, "resolve"},
    {Phase::Connect, "connect"},
    {Phase::Greeting, "greeting"},
    {Phase::Capabilities, "capabilities"},
    {Phase::StartTls, "starttls"},
    {Phase::TlsHandshake, "tls_handshake"},
    {Phase::Auth, "auth"},
    {Phase::Examine, "examine"},
    {Phase::Relay, "relay"},
    {Phase::Logout, "logout"},
});

constexpr auto kReasons = std::to_array<std::pair<FailureReason, std::string_view>>({
    {FailureReason::None, "none"},
    {FailureReason::ResolveFailed, "resolve_failed"},
    {FailureReason::ConnectRefused, "connect_refused"},
    {FailureReason::ConnectTimeout, "connect_timeout"},
    {FailureReason::Timeout, "timeout"},
    {FailureReason::ConnectionClosed, "connection_closed"},
    {FailureReason::ServiceUnavailable, "service_unavailable"},
    {FailureReason::ProtocolError, "protocol_error"},
    {FailureReason::StartTlsNotOffered, "starttls_not_offered"},
    {FailureReason::StartTlsRefused, "starttls_refused"},
    {FailureReason::PlaintextAfterStartTls, "plaintext_after_starttls"},
    {FailureReason::TlsHandshakeFailed, "tls_handshake_failed"},
    {FailureReason::TlsVersionUnsupported, "tls_version_unsupported"},
    {FailureReason::CertExpired, "cert_expired"},
    {FailureReason::CertNotYetValid, "cert_not_yet_valid"},
    {FailureReason::CertHostnameMismatch, "cert_hostname_mismatch"},
    {FailureReason::CertSelfSigned, "cert_self_signed"},
    {FailureReason::CertUntrusted, "cert_untrusted"},
    {FailureReason::CertInvalid, "cert_invalid"},
    {FailureReason::AuthNotOffered, "auth_not_offered"},
    {FailureReason::AuthMechanismMissing, "auth_mechanism_missing"},
    {FailureReason::AuthFailed, "auth_failed"},
    {FailureReason::AuthBackoff, "auth_backoff"},
    {FailureReason::PlaintextAuthAllowed, "plaintext_auth_allowed"},
    {FailureReason::OpenRelay, "open_relay"},
    {FailureReason::TrustedRelayDenied, "trusted_relay_denied"},
    {FailureReason::AuthRelayDenied, "auth_relay_denied"},
    {FailureReason::LocalDeliveryRefused, "local_delivery_refused"},
    {FailureReason::UnauthSubmissionAccepted, "unauth_submission_accepted"},
});

constexpr auto kRelayAuths = std::to_array<std::pair<RelayAuth, std::string_view>>(
    {{RelayAuth::None, "none"}, {RelayAuth::SignedIn, "signed_in"}});

constexpr auto kRelayRecipients = std::to_array<std::pair<RelayRecipient, std::string_view>>(
    {{RelayRecipient::Local, "local"}, {RelayRecipient::Outside, "outside"}});

constexpr auto kRelayVerdicts = std::to_array<std::pair<RelayVerdict, std::string_view>>(
    {{RelayVerdict::Accept, "accept"}, {RelayVerdict::Refuse, "refuse"}});

template <typename E, size_t N>
std::string_view lookup(const Table<E, N>& table, E value) {
  for (const auto& [e, s] : table) {
    if (e == value) {
      return s;
    }
  }
  return "unknown";
}

template <typename E, size_t N>
std::optional<E> reverse(const Table<E, N>& table, std::string_view text) {
  for (const auto& [e, s] : table) {
    if (s == text) {
      return e;
    }
  }
  return std::nullopt;
}

template <typename E, size_t N>
std::vector<E> values(const Table<E, N>& table) {
  std::vector<E> out;
  for (const auto& [e, s] : table) {
    out.push_back(e);
  }
  return out;
}

}  // namespace

std::string_view toString(Service s) {
  return lookup(kServices, s);
}
std::string_view toString(Security s) {
  return lookup(kSecurities, s);
}
std::string_view toString(Phase p) {
  return lookup(kPhases, p);
}
std::string_view toString(FailureReason r) {
  return lookup(kReasons, r);
}
std::string_view toString(RelayAuth a) {
  return lookup(kRelayAuths, a);
}
std::string_view toString(RelayRecipient r) {
  return lookup(kRelayRecipients, r);
}
std::string_view toString(RelayVerdict v) {
  return lookup(kRelayVerdicts, v);
}

std::optional<Service> parseService(std::string_view s) {
  return reverse(kServices, s);
}
std::optional<Security> parseSecurity(std::string_view s) {
  return reverse(kSecurities, s);
}
std::optional<Phase> parsePhase(std::string_view s) {
  return reverse(kPhases, s);
}
std::optional<FailureReason> parseFailureReason(std::string_view s) {
  return reverse(kReasons, s);
}

const std::vector<Phase>& allPhases() {
  static const std::vector<Phase> all = values(kPhases);
  return all;
}

const std::vector<FailureReason>& allFailureReasons() {
  static const std::vector<FailureReason> all = values(kReasons);
  return all;
}

bool isCertificateReason(FailureReason r) {
  switch (r) {
    case FailureReason::CertExpired:
    case FailureReason::CertNotYetValid:
    case FailureReason::CertHostnameMismatch:
    case FailureReason::CertSelfSigned:
    case FailureReason::CertUntrusted:
    case FailureReason::CertInvalid:
      return true;
    default:
      return false;
  }
}

}  // namespace mailprobe
