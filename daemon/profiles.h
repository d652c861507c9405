#pragma once
// Client profiles and their verdicts (PRODUCT.md "Judges client configurations").
//
// A profile says what a real client does: for each direction, the server(s) it uses in its own
// order, the security mode, its certificate policy, the TLS versions it speaks, the AUTH
// mechanisms it uses in its order of preference, whether it signs in to send. A verdict says
// whether that client would read (incoming) or send (outgoing) mail right now, judged from the
// latest probe results only: no login is ever made for a profile.
//
// GLOSSARY
//   side         one server setting of a client (ClientSide): host, port, security, ...
//   alternative  one of several sides of a direction, in the client's order. Thunderbird's and
//                iOS Mail's account set-up tries them in turn and keeps the first that works;
//                a client with fixed settings (the platform guide's Android setup) has one.
//   step         what a client meets, in order: resolve, connect, (greeting, capabilities,
//                STARTTLS for a STARTTLS side), TLS version, certificate under its policy, the
//                capabilities after TLS, a common AUTH mechanism, the login, (incoming) opening
//                INBOX, (outgoing, signed in) an outside recipient accepted.
//   unknown      the probe results cannot tell (no run yet, an endpoint the config does not
//                probe, a login the probe did not make): the verdict says so instead of guessing.
//
// RULES
//   - A side works only if it works on every address of the endpoint: a client reaches any of
//     them (a phone on IPv6, a laptop on IPv4), so a dual-stack host whose IPv6 address fails
//     fails its clients, and the sentence names the address and its family.
//   - Alternatives: the direction works if some alternative works; it fails only if every
//     alternative fails (the reason and step are the first alternative's); otherwise unknown.
//   - Login: the first of the client's mechanisms that the server advertises is the one it uses;
//     the probe's attempt with that mechanism decides. A client that moves on to its next
//     mechanism after a refused login (Thunderbird) works if a later common one worked.
//   - The sentence is one line a person can act on; "since" is kept by the caller across runs
//     (carrySince) and shown for failures only.

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "probes/tls_version_scan.h"
#include "probes/types.h"

namespace mailprobe {

struct EndpointState;
struct RelayState;

enum class Direction { Incoming, Outgoing };
std::string_view toString(Direction d);  // "incoming", "outgoing"
std::optional<Direction> parseDirection(std::string_view s);
inline std::ostream& operator<<(std::ostream& o, Direction v) {
  return o << toString(v);
}

enum class CertPolicy { Strict, AcceptAll };
std::string_view toString(CertPolicy p);  // "strict", "accept-all" (the config's words)

struct ClientSide {
  std::string host;  // "" = the probed host (JudgeInputs::default_host)
  uint16_t port = 0;
  Security security = Security::Tls;
  CertPolicy cert_policy = CertPolicy::Strict;
  // OpenSSL TLS1_VERSION .. TLS1_3_VERSION; 0 = no bound on that side.
  int tls_min_version = 0;
  int tls_max_version = 0;
  // In the client's order of preference, in the probe's spelling: PLAIN, LOGIN, CRAM-MD5, and
  // for IMAP LOGIN-COMMAND (the LOGIN command). Empty: any mechanism the probe speaks.
  std::vector<std::string> mechanisms;
  // After a refused login the client tries its next common mechanism (Thunderbird does).
  bool next_mechanism_on_failure = false;
  bool sign_in = true;              // outgoing: signs in to send (incoming always signs in)
  std::string user_form = "email";  // "email" or "local": informational
};

struct ClientProfile {
  std::string id;  // a metric label value: [a-z0-9][a-z0-9-]*
  std::string description;
  std::string source;  // where each fact comes from, for the README and the status page
  std::vector<ClientSide> incoming;  // alternatives in the client's order; may be empty
  std::vector<ClientSide> outgoing;  // alternatives in the client's order; may be empty
  bool builtin = false;
};

// android-guide, thunderbird, ios-mail, outlook, legacy-tls10 (see profiles.cpp for the facts
// and their sources).
const std::vector<ClientProfile>& builtinProfiles();
const ClientProfile* findBuiltinProfile(std::string_view id);
// The mechanisms a side uses when the config names none: IMAP PLAIN, LOGIN, LOGIN-COMMAND;
// SMTP PLAIN, LOGIN (what clients call "normal password").
const std::vector<std::string>& defaultClientMechanisms(Service s);

// The facts a verdict rests on, copied (a verdict outlives the snapshot it came from).
struct VerdictBasis {
  std::string host;
  std::string address;  // the address that failed, or the first one probed; "" if none
  uint16_t port = 0;
  Service service = Service::Imap;
  Security security = Security::None;
  std::string mechanism;    // the client's mechanism at the login step; "" before it
  std::string tls_version;  // negotiated by the probe; "" without TLS
  int64_t probed_at = 0;    // started_at of the probe result
};

struct Verdict {
  std::string profile;
  Direction direction = Direction::Incoming;
  bool known = false;  // false: the results cannot tell (see `sentence`); ok is then false
  bool ok = false;
  FailureReason reason = FailureReason::None;  // None when ok or unknown
  Phase phase = Phase::Resolve;                // the client's failing step (when !ok && known)
  // After the colon: "smtp 465 (tls) refuses AUTH PLAIN"; with alternatives, all of them.
  std::string explanation;
  std::string sentence;  // sentenceFor(*this, since)
  VerdictBasis basis;
  int64_t judged_at = 0;  // JudgeInputs::now
  int64_t since = 0;      // since when the verdict has been in this state (carrySince)
};

// "android-guide cannot send: smtp 465 (tls) refuses AUTH PLAIN since 02:14 UTC" (a failure in
// the same UTC day as judged_at, else "since 2026-03-01 02:14 UTC");
// "android-guide can read mail: imap 993 (tls) works with the LOGIN command";
// "ios-mail: cannot tell whether it can send: no probe of smtp 587 (starttls) is configured".
std::string sentenceFor(const Verdict& v, int64_t since);

// Same state: known, ok, reason, phase and the endpoint of the basis.
bool sameState(const Verdict& a, const Verdict& b);
// since = previous->since when the state is unchanged, else fresh.judged_at; re-renders the
// sentence. `previous` may be null (first verdict).
void carrySince(Verdict& fresh, const Verdict* previous);

// One endpoint as a profile side names it: the side's host (the default host filled in), the
// direction's service (incoming imap, outgoing smtp), port and security mode.
struct EndpointKey {
  std::string host;
  Service service = Service::Imap;
  uint16_t port = 0;
  Security security = Security::None;
  bool operator==(const EndpointKey&) const = default;
};

// Where the judge reads the latest results.
// The results of the last run, one per address; nullopt: the config does not probe this
// endpoint; an empty vector: not run yet.
using ResultLookup =
    std::function<std::optional<std::vector<ProbeResult>>(const EndpointKey& endpoint)>;
// The last version scan of one address of the endpoint; nullopt: none yet.
using ScanLookup = std::function<std::optional<TlsVersionResult>(const EndpointKey& endpoint,
                                                                 const std::string& address)>;
// The relay check's answer for an outside recipient from this client's position, signed in or
// not: a relay reason (auth_relay_denied, ...) when refused against the policy, None when it
// worked, nullopt when there is no such check.
using RelayLookup =
    std::function<std::optional<FailureReason>(const EndpointKey& endpoint, bool signed_in)>;

struct JudgeInputs {
  std::string default_host;  // for sides with host = "": the platform's host (first [[host]])
  ResultLookup results;      // required
  ScanLookup scans;          // optional: without it, versions are judged from the probe's handshake
  RelayLookup relay;         // optional: without it, the relay step is not judged
  int64_t now = 0;           // unix seconds: judged_at, and since for a fresh verdict
};

// The verdict of one profile in one direction. A direction without any side is unknown.
Verdict judge(const ClientProfile& profile, Direction direction, const JudgeInputs& in);
// Every profile x direction it has sides for, in profile order, incoming before outgoing.
std::vector<Verdict> judgeAll(const std::vector<ClientProfile>& profiles, const JudgeInputs& in);

// The endpoints the profiles' sides name, without duplicates, in profile order: what the daemon
// must probe for the verdicts to be known, and (those with TLS) what it scans for TLS versions.
std::vector<EndpointKey> endpointsUsed(const std::vector<ClientProfile>& profiles,
                                       const std::string& default_host);

// The scan of `address` of the endpoint among `scans` (matched on the configured host name,
// service, port and security); null if none.
const TlsVersionResult* findScan(const std::vector<TlsVersionResult>& scans,
                                 const EndpointKey& endpoint, const std::string& address);

// A ResultLookup over the daemon's endpoint states (daemon/snapshot.h): an endpoint matches on
// service, port, security and host, where the state's host may carry "@addresses" (a pool's
// members probed one by one: their results are joined). Only the endpoints whose `last` is
// non-empty count as run. The states must outlive the lookup.
ResultLookup resultsFromEndpoints(const std::vector<EndpointState>& endpoints);

// A RelayLookup over the daemon's relay states (daemon/snapshot.h), matched like
// resultsFromEndpoints on host, port and security: the outside-recipient cells in the client's
// auth state. A client that signs in is judged from the vantages outside the trusted networks (a
// phone on the road), one that does not from the trusted ones (the office copier); from any
// vantage when there is none of that kind. The first cell refused against the policy gives its
// reason (auth_relay_denied, trusted_relay_denied); None when those cells were answered as
// expected; nullopt without an answer (no relay check, not run yet, or the conversation failed
// before RCPT: the login itself is judged from the endpoint probes). The states must outlive
// the lookup.
RelayLookup relayFromStates(const std::vector<RelayState>& relay);

}  // namespace mailprobe
