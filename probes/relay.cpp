#include "probes/relay.h"

namespace mailprobe {

std::string_view toString(RelayReach r) {
  switch (r) {
    case RelayReach::All:
      return "all";
    case RelayReach::Local:
      return "local";
    case RelayReach::Nobody:
      return "none";
  }
  return "none";
}

RelayPolicy mxRelayPolicy() {
  return {RelayReach::Local, RelayReach::All, RelayReach::All};
}

RelayPolicy submissionRelayPolicy() {
  return {RelayReach::Nobody, RelayReach::Nobody, RelayReach::All};
}

RelayPolicy defaultRelayPolicy(const EndpointSpec& endpoint) {
  return endpoint.auth == AuthPolicy::Required ? submissionRelayPolicy() : mxRelayPolicy();
}

std::vector<RelayAuth> relayAuthStates(const RelaySpec& spec) {
  if (spec.sign_in && spec.endpoint.auth != AuthPolicy::Skip) {
    return {RelayAuth::None, RelayAuth::SignedIn};
  }
  return {RelayAuth::None};
}

RelayVerdict expectedVerdict(const RelayPolicy& policy, bool trusted, RelayAuth auth,
                             RelayRecipient recipient) {
  RelayReach reach = auth == RelayAuth::SignedIn ? policy.signed_in
                     : trusted                   ? policy.trusted
                                                 : policy.untrusted;
  bool accept = reach == RelayReach::All ||
                (reach == RelayReach::Local && recipient == RelayRecipient::Local);
  return accept ? RelayVerdict::Accept : RelayVerdict::Refuse;
}

FailureReason relayReason(bool trusted, RelayAuth auth, RelayRecipient recipient,
                          RelayVerdict expected, RelayVerdict observed) {
  if (expected == observed) {
    return FailureReason::None;
  }
  bool outside = recipient == RelayRecipient::Outside;
  bool signed_in = auth == RelayAuth::SignedIn;
  if (observed == RelayVerdict::Accept) {
    if (outside && !signed_in && !trusted) {
      return FailureReason::OpenRelay;
    }
    if (!signed_in) {
      return FailureReason::UnauthSubmissionAccepted;
    }
    return FailureReason::OpenRelay;
  }
  if (signed_in) {
    return FailureReason::AuthRelayDenied;
  }
  if (!outside) {
    return FailureReason::LocalDeliveryRefused;
  }
  return FailureReason::TrustedRelayDenied;
}

namespace {

RelayCell blankCell(const RelaySpec& spec, const std::string& address, const RelayVantage& vantage,
                    RelayAuth auth, RelayRecipient recipient) {
  RelayCell c;
  c.host = spec.endpoint.host;
  c.address = address;
  c.port = spec.endpoint.port;
  c.security = spec.endpoint.security;
  c.vantage = vantage.name;
  c.source_address = vantage.source_address;
  c.trusted = vantage.trusted;
  c.auth = auth;
  c.recipient = recipient;
  c.expected = expectedVerdict(spec.policy, vantage.trusted, auth, recipient);
  return c;
}

}  // namespace

std::array<RelayCell, 2> relayCells(const RelaySpec& spec, const std::string& address,
                                    const RelayVantage& vantage, RelayAuth auth,
                                    const ConnectionOutcome& outcome) {
  std::array<RelayCell, 2> cells{blankCell(spec, address, vantage, auth, RelayRecipient::Local),
                                 blankCell(spec, address, vantage, auth, RelayRecipient::Outside)};
  const std::optional<RecipientVerdict>* verdicts[2] = {&outcome.relay_local,
                                                        &outcome.relay_outside};
  for (size_t i = 0; i < cells.size(); ++i) {
    RelayCell& c = cells[i];
    if (const auto& v = *verdicts[i]) {
      c.observed = v->accepted ? RelayVerdict::Accept : RelayVerdict::Refuse;
      c.code = v->code;
      c.enhanced = v->enhanced;
      c.at_mail_from = v->at_mail_from;
      c.detail = v->detail;
      c.phase = Phase::Relay;
      c.reason = relayReason(vantage.trusted, auth, c.recipient, c.expected, *c.observed);
    } else if (outcome.reason != FailureReason::None) {
      c.reason = outcome.reason;
      c.phase = outcome.phase;
      c.detail = outcome.detail;
    } else {
      c.reason = FailureReason::ProtocolError;
      c.phase = Phase::Relay;
      c.detail = "the conversation ended before the recipient was asked";
    }
    c.sentence = describe(c);
  }
  return cells;
}

std::array<RelayCell, 2> relayCellsNotRun(const RelaySpec& spec, const std::string& address,
                                          const RelayVantage& vantage, RelayAuth auth,
                                          FailureReason reason, Phase phase,
                                          const std::string& detail) {
  ConnectionOutcome outcome;
  outcome.reason = reason;
  outcome.phase = phase;
  outcome.detail = detail;
  return relayCells(spec, address, vantage, auth, outcome);
}

}  // namespace mailprobe
