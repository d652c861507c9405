#include "daemon/profiles.h"

#include <openssl/tls1.h>

#include <algorithm>
#include <ctime>
#include <initializer_list>

#include "daemon/snapshot.h"

namespace mailprobe {

// ---------------------------------------------------------------------------------------------
// Words.

std::string_view toString(Direction d) {
  return d == Direction::Incoming ? "incoming" : "outgoing";
}

std::optional<Direction> parseDirection(std::string_view s) {
  if (s == "incoming") {
    return Direction::Incoming;
  }
  if (s == "outgoing") {
    return Direction::Outgoing;
  }
  return std::nullopt;
}

std::string_view toString(CertPolicy p) {
  return p == CertPolicy::Strict ? "strict" : "accept-all";
}

const std::vector<std::string>& defaultClientMechanisms(Service s) {
  static const std::vector<std::string> imap{"PLAIN", "LOGIN", "LOGIN-COMMAND"};
  static const std::vector<std::string> smtp{"PLAIN", "LOGIN"};
  return s == Service::Imap ? imap : smtp;
}

// ---------------------------------------------------------------------------------------------
// The built-in profiles. Each `source` says where every fact comes from; a fact we could not
// find written down says so ("not documented").

namespace {

ClientSide side(uint16_t port, Security security, CertPolicy policy, int tls_min, int tls_max,
                std::vector<std::string> mechanisms, bool next_on_failure = false) {
  ClientSide s;
  s.port = port;
  s.security = security;
  s.cert_policy = policy;
  s.tls_min_version = tls_min;
  s.tls_max_version = tls_max;
  s.mechanisms = std::move(mechanisms);
  s.next_mechanism_on_failure = next_on_failure;
  return s;
}

std::vector<ClientProfile> makeBuiltins() {
  constexpr auto kStrict = CertPolicy::Strict;
  constexpr auto kAcceptAll = CertPolicy::AcceptAll;
  // {id, description, source, incoming alternatives, outgoing alternatives, builtin}
  return {
      {"android-guide",
       "The platform guide's Android setup (Gmail or Email app, manual IMAP account): IMAP 993 "
       "and SMTP 465 with \"SSL/TLS (accept all certificates)\", user name = e-mail address, "
       "\"require sign-in\" for outgoing mail, same host for both.",
       "Ports, security, certificate policy, sign-in, user name: the platform guide "
       "(reference/bluemind-imap-android-guide.fr.md). Mechanisms: AOSP Email, which the Gmail "
       "app runs for IMAP accounts: IMAP logs in with the LOGIN command only "
       "(ImapConnection.getLoginPhrase: LOGIN user \"password\"); SMTP uses AUTH PLAIN if the "
       "EHLO lists it, else AUTH LOGIN, and never tries the other after a refusal "
       "(SmtpSender.open); the \"trustallcerts\" URI variants are the accept-all setting. TLS "
       "versions: a current Android (TLS 1.3 enabled by default since Android 10, TLS 1.2 since "
       "Android 5); the guide's own Nexus 5 on Android 5.0.1 spoke TLS 1.0 to 1.2 (see "
       "legacy-tls10 for phones that old).",
       {side(993, Security::Tls, kAcceptAll, TLS1_2_VERSION, TLS1_3_VERSION, {"LOGIN-COMMAND"})},
       {side(465, Security::Tls, kAcceptAll, TLS1_2_VERSION, TLS1_3_VERSION, {"PLAIN", "LOGIN"})},
       true},
      {"thunderbird",
       "A current Thunderbird set up from the e-mail address alone: implicit TLS preferred, then "
       "STARTTLS (IMAP 993 then 143, SMTP 465 then 587), strict certificates, \"normal "
       "password\".",
       "Ports and order: Thunderbird's account set-up (GuessConfig.sys.mjs: every try runs, "
       "sorted SSL before STARTTLS, the first success wins; it also tries STARTTLS on 25 last, "
       "left out here: 25 is the platform's MX port). Strict certificates: "
       "mailnews.auto_config.guess.requireGoodCert defaults to true. Mechanisms for \"normal "
       "password\" (passwordCleartext): IMAP AUTHENTICATE PLAIN, then LOGIN, then the LOGIN "
       "command, moving on after a failure (nsImapProtocol.cpp InitPrefAuthMethods, "
       "ChooseAuthMethod, MarkAuthMethodAsFailed); SMTP PLAIN then LOGIN, moving on after a "
       "failure (SmtpClient.sys.mjs _preferredAuthMethods, _nextAuthMethod). TLS versions: "
       "security.tls.version.min = 3 (TLS 1.2) since Thunderbird 78, which dropped TLS 1.0 and "
       "1.1 with Firefox; max 4 (TLS 1.3). The set-up order matters when the account is "
       "created; a configured Thunderbird keeps the port it was given.",
       {side(993, Security::Tls, kStrict, TLS1_2_VERSION, TLS1_3_VERSION,
             {"PLAIN", "LOGIN", "LOGIN-COMMAND"}, true),
        side(143, Security::StartTls, kStrict, TLS1_2_VERSION, TLS1_3_VERSION,
             {"PLAIN", "LOGIN", "LOGIN-COMMAND"}, true)},
       {side(465, Security::Tls, kStrict, TLS1_2_VERSION, TLS1_3_VERSION, {"PLAIN", "LOGIN"}, true),
        side(587, Security::StartTls, kStrict, TLS1_2_VERSION, TLS1_3_VERSION, {"PLAIN", "LOGIN"},
             true)},
       true},
      {"ios-mail",
       "iOS Mail with an IMAP account entered by hand: IMAP 993 with SSL, SMTP 587 with "
       "STARTTLS, authentication \"Password\", strict certificates.",
       "Ports and security: Apple's \"Mail settings you might need from your email provider\" "
       "(support.apple.com HT201525: IMAP 993 with SSL, 143 without; SMTP 587, also 465 and 25) "
       "and hosting providers' iPhone instructions (SMTP 587 with STARTTLS on iOS). Strict: an "
       "unverifiable certificate stops the account with \"Cannot Verify Server Identity\" until "
       "someone taps Trust on the phone. Mechanisms: Apple documents only \"Password\"; PLAIN, "
       "then LOGIN (then the IMAP LOGIN command) is assumed, not documented. TLS versions: TLS "
       "1.2 and 1.3 (TLS 1.3 since iOS 13.4; Apple deprecated TLS 1.0 and 1.1 in iOS 15).",
       {side(993, Security::Tls, kStrict, TLS1_2_VERSION, TLS1_3_VERSION,
             {"PLAIN", "LOGIN", "LOGIN-COMMAND"})},
       {side(587, Security::StartTls, kStrict, TLS1_2_VERSION, TLS1_3_VERSION, {"PLAIN", "LOGIN"})},
       true},
      {"outlook",
       "Current Outlook with an IMAP account: IMAP 993 SSL/TLS, SMTP 587 STARTTLS, \"Secure "
       "Password Authentication\" off, strict certificates, TLS 1.2 or later.",
       "IMAP mechanisms: [MS-STANOIMAP] 2.2.23: Outlook 2007 to 2019 implement PLAIN (NTLM and "
       "DIGEST-MD5 only with Secure Password Authentication, off by default), use only "
       "advertised mechanisms, and the LOGIN command when none is advertised. SMTP: AUTH LOGIN "
       "([MS-XLOGIN], Microsoft's own extension) before PLAIN, as servers' logs show; the order "
       "is not documented. Ports: 993 SSL/TLS and 587 STARTTLS, the settings Outlook's IMAP form "
       "and Microsoft's own service publish. Strict: a certificate Windows does not trust brings "
       "up a security warning instead of mail. TLS 1.2 minimum: Windows' TLS stack in current "
       "releases, and the Microsoft 365 service the new Outlook syncs IMAP accounts through.",
       {side(993, Security::Tls, kStrict, TLS1_2_VERSION, TLS1_3_VERSION,
             {"PLAIN", "LOGIN-COMMAND"})},
       {side(587, Security::StartTls, kStrict, TLS1_2_VERSION, TLS1_3_VERSION, {"LOGIN", "PLAIN"})},
       true},
      {"legacy-tls10",
       "An old phone that speaks only TLS 1.0 and 1.1, set up as the platform guide says (993 "
       "and 465, accept all certificates): turns red when the servers' minimum TLS version is "
       "raised past it.",
       "TLS versions: Android 4.1 to 4.4 (API 16 to 19) support TLS 1.1 and 1.2 but enable only "
       "TLS 1.0 by default (Android SSLSocket documentation: TLSv1.1/TLSv1.2 enabled from API "
       "20); the range TLS 1.0 to 1.1 catches a minimum raised to 1.2. Everything else as "
       "android-guide (the guide's settings, AOSP Email's mechanisms).",
       {side(993, Security::Tls, kAcceptAll, TLS1_VERSION, TLS1_1_VERSION, {"LOGIN-COMMAND"})},
       {side(465, Security::Tls, kAcceptAll, TLS1_VERSION, TLS1_1_VERSION, {"PLAIN", "LOGIN"})},
       true},
  };
}

}  // namespace

const std::vector<ClientProfile>& builtinProfiles() {
  static const std::vector<ClientProfile> profiles = makeBuiltins();
  return profiles;
}

const ClientProfile* findBuiltinProfile(std::string_view id) {
  for (const auto& p : builtinProfiles()) {
    if (p.id == id) {
      return &p;
    }
  }
  return nullptr;
}

// ---------------------------------------------------------------------------------------------
// The judge.

namespace {

bool contains(const std::vector<std::string>& v, const std::string& s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

// "a", "a and b", "a, b and c".
std::string joinWords(const std::vector<std::string>& words, std::string_view conj) {
  std::string out;
  for (size_t i = 0; i < words.size(); ++i) {
    if (i > 0) {
      out += i + 1 == words.size() ? " " + std::string(conj) + " " : ", ";
    }
    out += words[i];
  }
  return out;
}

// How a person names mechanisms: "AUTH PLAIN and LOGIN" (SMTP), "AUTHENTICATE PLAIN" (IMAP),
// "the LOGIN command" (IMAP LOGIN-COMMAND).
std::string mechanismWords(Service service, const std::vector<std::string>& mechanisms,
                           std::string_view conj) {
  std::vector<std::string> sasl;
  bool login_command = false;
  for (const auto& m : mechanisms) {
    if (m == "LOGIN-COMMAND") {
      login_command = true;
    } else {
      sasl.push_back(m);
    }
  }
  std::vector<std::string> parts;
  if (!sasl.empty()) {
    parts.push_back((service == Service::Smtp ? "AUTH " : "AUTHENTICATE ") + joinWords(sasl, conj));
  }
  if (login_command) {
    parts.emplace_back("the LOGIN command");
  }
  return joinWords(parts, conj);
}

std::string phaseWords(Phase p) {
  switch (p) {
    case Phase::Resolve:
      return "name resolution";
    case Phase::Connect:
      return "the connection";
    case Phase::Greeting:
      return "the greeting";
    case Phase::Capabilities:
      return "the capabilities";
    case Phase::StartTls:
      return "STARTTLS";
    case Phase::TlsHandshake:
      return "the TLS handshake";
    case Phase::Auth:
      return "the login";
    case Phase::Examine:
      return "opening INBOX";
    case Phase::Relay:
      return "the relay check";
    case Phase::Logout:
      return "the logout";
  }
  return "the conversation";
}

// What an endpoint does wrong, after its name: "smtp 465 (tls) <refuses connections>".
std::string failureWords(FailureReason r, Phase p) {
  switch (r) {
    case FailureReason::ResolveFailed:
      return "cannot be reached: the name does not resolve";
    case FailureReason::ConnectRefused:
      return "refuses connections";
    case FailureReason::ConnectTimeout:
      return "does not answer connection attempts";
    case FailureReason::Timeout:
      return "stops answering during " + phaseWords(p);
    case FailureReason::ConnectionClosed:
      return "closes the connection during " + phaseWords(p);
    case FailureReason::ServiceUnavailable:
      return "refuses service";
    case FailureReason::ProtocolError:
      return "answers nonsense during " + phaseWords(p);
    case FailureReason::StartTlsNotOffered:
      return "does not offer STARTTLS";
    case FailureReason::StartTlsRefused:
      return "refuses STARTTLS";
    case FailureReason::PlaintextAfterStartTls:
      return "sends plaintext after STARTTLS (injection risk)";
    case FailureReason::TlsHandshakeFailed:
      return "fails the TLS handshake";
    case FailureReason::TlsVersionUnsupported:
      return "has no TLS version in common with it";
    case FailureReason::CertExpired:
      return "presents an expired certificate";
    case FailureReason::CertNotYetValid:
      return "presents a certificate that is not valid yet";
    case FailureReason::CertHostnameMismatch:
      return "presents a certificate for another host name";
    case FailureReason::CertSelfSigned:
      return "presents a self-signed certificate";
    case FailureReason::CertUntrusted:
      return "presents a certificate from an unknown issuer (missing intermediate?)";
    case FailureReason::CertInvalid:
      return "presents an invalid certificate";
    case FailureReason::AuthNotOffered:
      return "offers no way to log in";
    case FailureReason::AuthFailed:
      return "refuses the login";
    case FailureReason::AuthBackoff:
      return "could not be checked: the probe is backing off after failed logins";
    case FailureReason::AuthRelayDenied:
      return "refuses an outside recipient after sign-in";
    case FailureReason::TrustedRelayDenied:
      return "refuses an outside recipient from the trusted network";
    case FailureReason::LocalDeliveryRefused:
      return "refuses mail for the platform's own domain";
    default:
      return "fails with " + std::string(toString(r)) + " during " + phaseWords(p);
  }
}

// Reasons that a probe notes and goes on after: the client-specific steps judge them.
bool isSoft(FailureReason r) {
  return isCertificateReason(r) || r == FailureReason::PlaintextAuthAllowed ||
         r == FailureReason::AuthFailed || r == FailureReason::AuthBackoff ||
         r == FailureReason::AuthMechanismMissing || r == FailureReason::AuthNotOffered;
}

// Relay answers that stop this client's mail; the others (an open relay) are the platform's
// problem, not the client's.
bool refusesClient(FailureReason r) {
  return r == FailureReason::AuthRelayDenied || r == FailureReason::TrustedRelayDenied ||
         r == FailureReason::LocalDeliveryRefused;
}

std::string familyOf(const std::string& address) {
  return address.find(':') != std::string::npos ? "IPv6" : "IPv4";
}

std::string versionRangeWords(int lo, int hi, std::string_view conj) {
  std::vector<std::string> names;
  for (int v : scannedTlsVersions()) {
    if (v >= lo && v <= hi) {
      names.emplace_back(tlsVersionName(v));
    }
  }
  return joinWords(names, conj);
}

std::string endpointWords(const EndpointKey& k, const std::string& default_host) {
  std::string s = std::string(toString(k.service)) + " " + std::to_string(k.port) + " (" +
                  std::string(toString(k.security)) + ")";
  if (k.host != default_host) {
    s += " on " + k.host;
  }
  return s;
}

// The judgement of one side, on one address or on the whole endpoint.
struct Outcome {
  enum class State { Ok, Fail, Unknown };
  State state = State::Unknown;
  FailureReason reason = FailureReason::None;
  Phase phase = Phase::Resolve;
  std::string where;  // "smtp 465 (tls)", "... at 2001:db8::1 (IPv6)"
  std::string what;   // "refuses connections", "works with AUTH PLAIN"
  VerdictBasis basis;
};

class SideJudge {
 public:
  SideJudge(const ClientSide& side, Direction direction, EndpointKey key, const JudgeInputs& in)
      : side_(side), direction_(direction), key_(std::move(key)), in_(in) {}

  Outcome judge() const;

 private:
  Outcome judgeAddress(const ProbeResult& r, bool name_address) const;

  const ClientSide& side_;
  Direction direction_;
  EndpointKey key_;
  const JudgeInputs& in_;
};

Outcome SideJudge::judge() const {
  Outcome o;
  o.where = endpointWords(key_, in_.default_host);
  o.basis.host = key_.host;
  o.basis.port = key_.port;
  o.basis.service = key_.service;
  o.basis.security = key_.security;
  std::optional<std::vector<ProbeResult>> results = in_.results ? in_.results(key_) : std::nullopt;
  if (!results) {
    o.what = "is not probed: no such endpoint in the configuration";
    return o;
  }
  if (results->empty()) {
    o.what = "has not been probed yet";
    return o;
  }
  std::optional<Outcome> first_ok, first_unknown;
  for (const ProbeResult& r : *results) {
    Outcome a = judgeAddress(r, results->size() > 1);
    if (a.state == Outcome::State::Fail) {
      return a;  // every address counts: one failing address fails the side
    }
    if (a.state == Outcome::State::Unknown && !first_unknown) {
      first_unknown = std::move(a);
    } else if (a.state == Outcome::State::Ok && !first_ok) {
      first_ok = std::move(a);
    }
  }
  Outcome out = first_unknown ? std::move(*first_unknown) : std::move(*first_ok);
  if (out.state == Outcome::State::Ok) {
    out.where = o.where;  // it works on every address: no need to name one
  }
  return out;
}

Outcome SideJudge::judgeAddress(const ProbeResult& r, bool name_address) const {
  Outcome o;
  o.where = endpointWords(key_, in_.default_host);
  if (name_address && !r.address.empty()) {
    o.where += " at " + r.address + " (" + familyOf(r.address) + ")";
  }
  o.basis.host = key_.host;
  o.basis.address = r.address;
  o.basis.port = key_.port;
  o.basis.service = key_.service;
  o.basis.security = key_.security;
  o.basis.tls_version = r.tls ? r.tls->version : "";
  o.basis.probed_at = r.started_at;

  auto fail = [&](FailureReason reason, Phase phase, std::string what) {
    o.state = Outcome::State::Fail;
    o.reason = reason;
    o.phase = phase;
    o.what = std::move(what);
    return o;
  };
  auto unknown = [&](std::string what) {
    o.state = Outcome::State::Unknown;
    o.what = std::move(what);
    return o;
  };

  // A hard failure ends the probe's conversation where it happened: the client meets it there
  // too, and nothing after it is known.
  bool hard = !r.success && r.reason != FailureReason::None && !isSoft(r.reason);
  auto hardIn = [&](std::initializer_list<Phase> phases) {
    return hard && std::find(phases.begin(), phases.end(), r.phase) != phases.end();
  };

  // Resolve and connect.
  if (hardIn({Phase::Resolve})) {
    return fail(r.reason, Phase::Resolve, failureWords(r.reason, Phase::Resolve));
  }
  if (r.address.empty()) {
    // The probe could not start (its CA file, for one): nothing was asked of the server.
    return unknown("could not be probed: " + r.detail);
  }
  if (hardIn({Phase::Connect})) {
    return fail(r.reason, Phase::Connect, failureWords(r.reason, Phase::Connect));
  }

  // STARTTLS and plain sides: the greeting and capabilities come before any TLS.
  if (side_.security != Security::Tls && !r.tls &&
      hardIn({Phase::Greeting, Phase::Capabilities, Phase::StartTls})) {
    return fail(r.reason, r.phase, failureWords(r.reason, r.phase));
  }
  if (side_.security == Security::StartTls && !r.tls && !r.starttls_offered) {
    // Where STARTTLS is optional (SMTP 25) the probe goes on in plaintext; this client does not.
    return fail(FailureReason::StartTlsNotOffered, Phase::StartTls,
                failureWords(FailureReason::StartTlsNotOffered, Phase::StartTls));
  }

  if (side_.security != Security::None) {
    // TLS version: the scan says which versions the address accepts; without a scan, the
    // version the probe negotiated answers for clients that speak it.
    int lo = side_.tls_min_version != 0 ? side_.tls_min_version : TLS1_VERSION;
    int hi = side_.tls_max_version != 0 ? side_.tls_max_version : TLS1_3_VERSION;
    std::optional<TlsVersionResult> scan =
        in_.scans ? in_.scans(key_, r.address) : std::optional<TlsVersionResult>();
    std::optional<bool> by_scan = scan ? scan->acceptsAnyOf(lo, hi) : std::nullopt;
    if (by_scan == false) {
      std::vector<std::string> accepted = scan->acceptedNames();
      std::string what = accepted.empty() ? "refuses " + versionRangeWords(lo, hi, "and")
                                          : "accepts only " + joinWords(accepted, "and") +
                                                ", not " + versionRangeWords(lo, hi, "or");
      return fail(FailureReason::TlsVersionUnsupported, Phase::TlsHandshake, std::move(what));
    }
    if (hardIn({Phase::TlsHandshake}) && r.reason == FailureReason::TlsVersionUnsupported) {
      if (by_scan == true) {
        return unknown(
            "accepts " + versionRangeWords(lo, hi, "or") +
            " by the version scan, but the probe itself found no version in common, so nothing "
            "after the handshake was seen");
      }
      if (lo >= TLS1_2_VERSION) {
        // The probe offers TLS 1.2 and 1.3 (OpenSSL's defaults): a refusal covers this client.
        return fail(FailureReason::TlsVersionUnsupported, Phase::TlsHandshake,
                    "refuses " + versionRangeWords(lo, hi, "and"));
      }
      return unknown("the TLS versions it accepts have not been scanned yet");
    }
    if (hardIn({Phase::TlsHandshake})) {
      return fail(r.reason, Phase::TlsHandshake, failureWords(r.reason, Phase::TlsHandshake));
    }
    if (!r.tls) {
      return unknown("no TLS handshake was seen");
    }
    std::optional<int> negotiated = parseTlsVersion(r.tls->version);
    bool in_range = negotiated && *negotiated >= lo && *negotiated <= hi;
    if (!in_range && !by_scan) {
      return unknown("the probe negotiated " + r.tls->version +
                     ", which this client does not "
                     "speak, and the TLS versions it accepts have not been scanned yet");
    }
    // The certificate, under the client's policy.
    if (side_.cert_policy == CertPolicy::Strict && r.tls->verify != FailureReason::None) {
      return fail(r.tls->verify, Phase::TlsHandshake,
                  failureWords(r.tls->verify, Phase::TlsHandshake));
    }
    if (side_.cert_policy == CertPolicy::AcceptAll && !r.tls->accept_all_ok) {
      return fail(FailureReason::TlsHandshakeFailed, Phase::TlsHandshake,
                  failureWords(FailureReason::TlsHandshakeFailed, Phase::TlsHandshake));
    }
  }

  // After TLS: the greeting (implicit TLS) and the capabilities.
  if (hardIn({Phase::Greeting, Phase::Capabilities, Phase::StartTls})) {
    return fail(r.reason, r.phase, failureWords(r.reason, r.phase));
  }

  // The login.
  bool signs_in = direction_ == Direction::Incoming || side_.sign_in;
  if (signs_in) {
    const auto& advertised =
        side_.security == Security::None ? r.auth_before_tls : r.auth_after_tls;
    const auto& wanted =
        side_.mechanisms.empty() ? supportedMechanisms(key_.service) : side_.mechanisms;
    std::vector<std::string> common;
    for (const auto& m : wanted) {
      if (contains(advertised, m)) {
        common.push_back(m);
      }
    }
    if (common.empty()) {
      if (advertised.empty()) {
        return fail(FailureReason::AuthNotOffered, Phase::Auth,
                    failureWords(FailureReason::AuthNotOffered, Phase::Auth));
      }
      std::vector<std::string> sasl_offered;
      for (const auto& m : advertised) {
        if (m != "LOGIN-COMMAND") {
          sasl_offered.push_back(m);
        }
      }
      std::string what = wanted.size() == 1
                             ? "does not offer " + mechanismWords(key_.service, wanted, "or")
                             : "offers neither " + mechanismWords(key_.service, wanted, "nor");
      if (!sasl_offered.empty()) {
        what += " (it offers " + joinWords(sasl_offered, "and") + ")";
      }
      return fail(FailureReason::AuthMechanismMissing, Phase::Auth, std::move(what));
    }
    o.basis.mechanism = common.front();
    std::vector<std::string> refused;
    std::optional<std::string> worked;
    for (const auto& m : common) {
      auto attempt = std::find_if(r.auth.begin(), r.auth.end(),
                                  [&](const AuthAttempt& a) { return a.mechanism == m; });
      if (attempt == r.auth.end()) {
        if (hardIn({Phase::Auth})) {
          return fail(r.reason, Phase::Auth, failureWords(r.reason, Phase::Auth));
        }
        if (!r.auth.empty()) {
          return unknown("the probe does not try " + mechanismWords(key_.service, {m}, "and") +
                         ", which this client uses; list it in the endpoint's mechanisms");
        }
        if (r.tls && r.tls->verify != FailureReason::None &&
            side_.cert_policy == CertPolicy::AcceptAll) {
          return unknown(
              "was not logged in to: the probe does not log in where the certificate fails "
              "verification (login_despite_invalid_cert = false)");
        }
        return unknown("was not logged in to (no account for this host, or auth = \"none\")");
      }
      if (attempt->success) {
        worked = m;
        break;
      }
      o.basis.mechanism = m;
      if (attempt->reason != FailureReason::AuthFailed) {
        std::string what = attempt->reason == FailureReason::AuthBackoff
                               ? "login with " + mechanismWords(key_.service, {m}, "and") + " " +
                                     failureWords(attempt->reason, Phase::Auth)
                               : failureWords(attempt->reason, Phase::Auth) + " (" +
                                     mechanismWords(key_.service, {m}, "and") + ")";
        return fail(attempt->reason, Phase::Auth, std::move(what));
      }
      refused.push_back(m);
      if (!side_.next_mechanism_on_failure) {
        break;
      }
    }
    if (!worked) {
      return fail(FailureReason::AuthFailed, Phase::Auth,
                  "refuses " + mechanismWords(key_.service, refused, "and"));
    }
    o.basis.mechanism = *worked;
  }

  if (direction_ == Direction::Incoming && hardIn({Phase::Examine})) {
    return fail(r.reason, Phase::Examine, failureWords(r.reason, Phase::Examine));
  }
  if (direction_ == Direction::Outgoing && in_.relay) {
    std::optional<FailureReason> relay = in_.relay(key_, side_.sign_in);
    if (relay && refusesClient(*relay)) {
      return fail(*relay, Phase::Relay, failureWords(*relay, Phase::Relay));
    }
  }
  // A failed logout, or anything after, is the platform's concern, not this client's.
  o.state = Outcome::State::Ok;
  o.what = signs_in ? "works with " + mechanismWords(key_.service, {o.basis.mechanism}, "and")
                    : "works without sign-in";
  return o;
}

std::string formatSince(int64_t since, int64_t judged_at) {
  std::time_t t = static_cast<std::time_t>(since);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  bool same_day = judged_at != 0 && since / 86400 == judged_at / 86400;
  std::strftime(buf, sizeof buf, same_day ? "%H:%M UTC" : "%Y-%m-%d %H:%M UTC", &tm);
  return buf;
}

std::string action(Direction d) {
  return d == Direction::Incoming ? "read mail" : "send";
}

}  // namespace

std::string sentenceFor(const Verdict& v, int64_t since) {
  if (!v.known) {
    return v.profile + ": cannot tell whether it can " + action(v.direction) + ": " + v.explanation;
  }
  if (v.ok) {
    return v.profile + " can " + action(v.direction) + ": " + v.explanation;
  }
  std::string s = v.profile + " cannot " + action(v.direction) + ": " + v.explanation;
  if (since != 0) {
    s += " since " + formatSince(since, v.judged_at);
  }
  return s;
}

bool sameState(const Verdict& a, const Verdict& b) {
  return a.profile == b.profile && a.direction == b.direction && a.known == b.known &&
         a.ok == b.ok && a.reason == b.reason && a.phase == b.phase &&
         a.basis.host == b.basis.host && a.basis.port == b.basis.port &&
         a.basis.security == b.basis.security;
}

void carrySince(Verdict& fresh, const Verdict* previous) {
  fresh.since = previous != nullptr && sameState(fresh, *previous) && previous->since != 0
                    ? previous->since
                    : fresh.judged_at;
  fresh.sentence = sentenceFor(fresh, fresh.since);
}

Verdict judge(const ClientProfile& profile, Direction direction, const JudgeInputs& in) {
  Verdict v;
  v.profile = profile.id;
  v.direction = direction;
  v.judged_at = in.now;
  v.since = in.now;
  const auto& sides = direction == Direction::Incoming ? profile.incoming : profile.outgoing;
  Service service = direction == Direction::Incoming ? Service::Imap : Service::Smtp;

  std::vector<Outcome> outcomes;
  for (const ClientSide& side : sides) {
    EndpointKey key{side.host.empty() ? in.default_host : side.host, service, side.port,
                    side.security};
    outcomes.push_back(SideJudge(side, direction, std::move(key), in).judge());
  }
  auto words = [](const Outcome& o) { return o.where + " " + o.what; };

  if (outcomes.empty()) {
    v.explanation = "the profile has no " + std::string(toString(direction)) + " server";
    v.sentence = sentenceFor(v, v.since);
    return v;
  }
  // The first alternative that works is the one the client ends up with.
  for (size_t i = 0; i < outcomes.size(); ++i) {
    if (outcomes[i].state != Outcome::State::Ok) {
      continue;
    }
    v.known = true;
    v.ok = true;
    v.basis = outcomes[i].basis;
    v.explanation = words(outcomes[i]);
    std::vector<std::string> before;
    for (size_t j = 0; j < i; ++j) {
      before.push_back(words(outcomes[j]));
    }
    if (!before.empty()) {
      v.explanation += ", after " + joinWords(before, "and");
    }
    v.sentence = sentenceFor(v, v.since);
    return v;
  }
  // Every alternative failed or cannot tell: name them all, a shared failure once.
  bool same = std::all_of(outcomes.begin(), outcomes.end(), [&](const Outcome& o) {
    return o.state == outcomes.front().state && o.what == outcomes.front().what;
  });
  std::vector<std::string> all;
  for (const auto& o : outcomes) {
    all.push_back(same && !all.empty() ? o.where : words(o));
  }
  v.explanation = same && all.size() > 1
                      ? all.front() + ", as does " + joinWords({all.begin() + 1, all.end()}, "and")
                      : joinWords(all, "and");
  auto unknown = std::find_if(outcomes.begin(), outcomes.end(),
                              [](const Outcome& o) { return o.state == Outcome::State::Unknown; });
  if (unknown != outcomes.end()) {
    // Some alternative might work: the client could still get through.
    v.basis = unknown->basis;
  } else {
    v.known = true;
    v.reason = outcomes.front().reason;
    v.phase = outcomes.front().phase;
    v.basis = outcomes.front().basis;
  }
  v.sentence = sentenceFor(v, v.since);
  return v;
}

std::vector<Verdict> judgeAll(const std::vector<ClientProfile>& profiles, const JudgeInputs& in) {
  std::vector<Verdict> out;
  for (const auto& p : profiles) {
    if (!p.incoming.empty()) {
      out.push_back(judge(p, Direction::Incoming, in));
    }
    if (!p.outgoing.empty()) {
      out.push_back(judge(p, Direction::Outgoing, in));
    }
  }
  return out;
}

std::vector<EndpointKey> endpointsUsed(const std::vector<ClientProfile>& profiles,
                                       const std::string& default_host) {
  std::vector<EndpointKey> out;
  auto add = [&](const std::vector<ClientSide>& sides, Service service) {
    for (const auto& s : sides) {
      EndpointKey k{s.host.empty() ? default_host : s.host, service, s.port, s.security};
      if (std::find(out.begin(), out.end(), k) == out.end()) {
        out.push_back(std::move(k));
      }
    }
  };
  for (const auto& p : profiles) {
    add(p.incoming, Service::Imap);
    add(p.outgoing, Service::Smtp);
  }
  return out;
}

namespace {

// A state's host is the [[host]] name, followed by "@addresses" for a pool's member.
bool hostMatches(const std::string& state_host, const std::string& host) {
  return state_host == host || (state_host.size() > host.size() && state_host.starts_with(host) &&
                                state_host[host.size()] == '@');
}

}  // namespace

ResultLookup resultsFromEndpoints(const std::vector<EndpointState>& endpoints) {
  return [&endpoints](const EndpointKey& k) -> std::optional<std::vector<ProbeResult>> {
    bool configured = false;
    std::vector<ProbeResult> out;
    for (const EndpointState& e : endpoints) {
      if (!hostMatches(e.host, k.host) || e.service != k.service || e.port != k.port ||
          e.security != k.security) {
        continue;
      }
      configured = true;
      out.insert(out.end(), e.last.begin(), e.last.end());
    }
    if (!configured) {
      return std::nullopt;
    }
    return out;
  };
}

const TlsVersionResult* findScan(const std::vector<TlsVersionResult>& scans, const EndpointKey& k,
                                 const std::string& address) {
  for (const TlsVersionResult& r : scans) {
    if (r.host == k.host && r.service == k.service && r.port == k.port &&
        r.security == k.security && r.address == address) {
      return &r;
    }
  }
  return nullptr;
}

RelayLookup relayFromStates(const std::vector<RelayState>& relay) {
  return [&relay](const EndpointKey& k, bool signed_in) -> std::optional<FailureReason> {
    RelayAuth auth = signed_in ? RelayAuth::SignedIn : RelayAuth::None;
    std::vector<const RelayCell*> cells;
    for (const RelayState& r : relay) {
      if (k.service != Service::Smtp || !hostMatches(r.host, k.host) || r.port != k.port ||
          r.security != k.security) {
        continue;
      }
      for (const RelayCell& c : r.last) {
        if (c.auth == auth && c.recipient == RelayRecipient::Outside && c.observed) {
          cells.push_back(&c);
        }
      }
    }
    // Where this client sends from: outside the trusted networks when it signs in.
    bool want_trusted = !signed_in;
    bool have_kind = std::any_of(cells.begin(), cells.end(),
                                 [&](const RelayCell* c) { return c->trusted == want_trusted; });
    std::optional<FailureReason> answer;
    for (const RelayCell* c : cells) {
      if (have_kind && c->trusted != want_trusted) {
        continue;
      }
      if (c->reason != FailureReason::None) {
        return c->reason;
      }
      answer = FailureReason::None;
    }
    return answer;
  };
}

}  // namespace mailprobe
