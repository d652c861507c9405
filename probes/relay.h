#pragma once
// Relay rules (PRODUCT.md "Checks the relay rules"): who may send where through one SMTP
// endpoint, checked at RCPT TO and never further. Pure values and rules; RelayProbe runs them.
//
// GLOSSARY
//   vantage    a named local source address the probe binds to, inside the platform's trusted
//              networks ("Mes réseaux", Postfix mynetworks) or not.
//   auth state none (no sign-in) or signed_in (after a successful AUTH with the probe account).
//   cell       one vantage x port x auth state x recipient (local or outside): what the policy
//              expects (accept or refuse) and what the server answered at RCPT.
//   policy     per port, which recipients each kind of client may reach: untrusted and trusted
//              clients without sign-in, and signed-in clients from anywhere.

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "probes/probe_spec.h"
#include "probes/session.h"
#include "probes/types.h"

namespace mailprobe {

// Which recipients a kind of client may reach through a port.
enum class RelayReach {
  All,     // "all": local and outside recipients
  Local,   // "local": the platform's own domains only
  Nobody,  // "none": no recipient at all (sign-in is mandatory)
};
std::string_view toString(RelayReach r);

struct RelayPolicy {
  RelayReach untrusted = RelayReach::Local;  // outside mynetworks, no sign-in
  RelayReach trusted = RelayReach::All;      // inside mynetworks, no sign-in
  RelayReach signed_in = RelayReach::All;    // after sign-in, from any vantage
  bool operator==(const RelayPolicy&) const = default;
};

// Port 25, the MX: without sign-in only the local domains, unless the client is trusted.
RelayPolicy mxRelayPolicy();
// 465 and 587, submission: sign-in is mandatory, and mynetworks does not exempt from it.
RelayPolicy submissionRelayPolicy();
// The platform's rule for an endpoint: the MX rule where logging in is optional or never done
// (port 25 by default), the submission rule where it is required (465, 587 by default).
RelayPolicy defaultRelayPolicy(const EndpointSpec& endpoint);

struct RelayVantage {
  std::string name;            // a label value: from the config, never from the network
  std::string source_address;  // an address of this machine
  bool trusted = false;        // inside the platform's mynetworks
};

// What to check on one SMTP endpoint.
struct RelaySpec {
  // The endpoint: host, port, security, addresses, TLS and timeouts. Its source_address is
  // replaced by each vantage's.
  EndpointSpec endpoint;
  std::vector<RelayVantage> vantages;
  std::string local_recipient;                               // an existing local mailbox
  std::string outside_recipient = "relay-test@example.com";  // a reserved domain by default
  std::string sender;            // MAIL FROM without sign-in; empty: the null reverse-path <>
  std::string signed_in_sender;  // MAIL FROM after sign-in; empty: the account's user
  bool sign_in = true;           // also check signed in (needs an account, and endpoint.auth)
  RelayPolicy policy;
};

// The auth states checked for this spec: none, and signed_in unless sign_in is false or the
// endpoint never logs in.
std::vector<RelayAuth> relayAuthStates(const RelaySpec& spec);

RelayVerdict expectedVerdict(const RelayPolicy& policy, bool trusted, RelayAuth auth,
                             RelayRecipient recipient);

// Why an observation differs from the expectation; None when they agree.
//   accepted where refusal was expected:
//     outside recipient, no sign-in, untrusted vantage          open_relay
//     no sign-in otherwise (a local recipient, or a trusted
//       vantage, on a port whose policy wanted sign-in)         unauth_submission_accepted
//     anything else (an outside recipient)                      open_relay
//   refused where acceptance was expected:
//     signed in                                                 auth_relay_denied
//     local recipient                                           local_delivery_refused
//     outside recipient, no sign-in (trusted vantage)           trusted_relay_denied
FailureReason relayReason(bool trusted, RelayAuth auth, RelayRecipient recipient,
                          RelayVerdict expected, RelayVerdict observed);

// One cell of the matrix, as reported.
struct RelayCell {
  std::string host;     // the configured name
  std::string address;  // the server address probed; "" when resolution failed
  uint16_t port = 0;
  Security security = Security::None;
  std::string vantage;
  std::string source_address;
  bool trusted = false;
  RelayAuth auth = RelayAuth::None;
  RelayRecipient recipient = RelayRecipient::Local;
  RelayVerdict expected = RelayVerdict::Refuse;
  std::optional<RelayVerdict> observed;  // nullopt: the conversation never got the answer
  int code = 0;                          // the SMTP reply code of the verdict; 0 without one
  std::string enhanced;                  // its enhanced status code, "" without one
  bool at_mail_from = false;             // refused at MAIL FROM already
  // None when observed == expected; a relay reason when they differ; the conversation's failure
  // (connect_refused, auth_failed, timeout, ...) when there is no observation.
  FailureReason reason = FailureReason::None;
  Phase phase = Phase::Relay;   // where a failure without observation happened
  std::string detail;           // the server's reply or the error; never secrets
  std::string sentence;         // describe(*this)
  int64_t started_at = 0;       // unix seconds
  double duration_seconds = 0;  // of the conversation that decided it

  bool ok() const { return reason == FailureReason::None; }
  bool temporary() const { return code >= 400 && code < 500; }  // 4xx: try again later
};

// The two cells (local, outside) one conversation decides, from what it saw. Sentences filled.
std::array<RelayCell, 2> relayCells(const RelaySpec& spec, const std::string& address,
                                    const RelayVantage& vantage, RelayAuth auth,
                                    const ConnectionOutcome& outcome);
// The two cells of a conversation that was not held (resolution failed, a login failed earlier
// in the run, no address of the vantage's family): both carry `reason` with `detail`.
std::array<RelayCell, 2> relayCellsNotRun(const RelaySpec& spec, const std::string& address,
                                          const RelayVantage& vantage, RelayAuth auth,
                                          FailureReason reason, Phase phase,
                                          const std::string& detail);

// One sentence for people: what the cell shows and what it means for users.
std::string describe(const RelayCell& c);

}  // namespace mailprobe
