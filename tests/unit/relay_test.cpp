// The relay rules as values (probes/relay.h): the platform's policy per port, the reason of
// every mismatch, and the cells a conversation decides.

#include "probes/relay.h"

#include <gtest/gtest.h>

namespace mailprobe {
namespace {

constexpr RelayVerdict A = RelayVerdict::Accept;
constexpr RelayVerdict R = RelayVerdict::Refuse;

TEST(RelayPolicy, ThePlatformsDefaultsPerPort) {
  EndpointSpec mx;
  mx.port = 25;
  mx.service = Service::Smtp;
  mx.auth = AuthPolicy::Optional;
  EndpointSpec submission = mx;
  submission.port = 587;
  submission.auth = AuthPolicy::Required;
  EXPECT_EQ(defaultRelayPolicy(mx), mxRelayPolicy());
  EXPECT_EQ(defaultRelayPolicy(submission), submissionRelayPolicy());
  mx.auth = AuthPolicy::Skip;  // an MX probed without login is still the MX
  EXPECT_EQ(defaultRelayPolicy(mx), mxRelayPolicy());

  struct Row {
    RelayPolicy policy;
    bool trusted;
    RelayAuth auth;
    RelayVerdict local, outside;
  };
  const RelayPolicy p25 = mxRelayPolicy();
  const RelayPolicy p587 = submissionRelayPolicy();
  const Row rows[] = {
      // 25: without sign-in only the local domains, unless trusted; signed in, anyone.
      {p25, false, RelayAuth::None, A, R},
      {p25, true, RelayAuth::None, A, A},
      {p25, false, RelayAuth::SignedIn, A, A},
      {p25, true, RelayAuth::SignedIn, A, A},
      // 465/587: sign-in is mandatory, and mynetworks does not exempt from it.
      {p587, false, RelayAuth::None, R, R},
      {p587, true, RelayAuth::None, R, R},
      {p587, false, RelayAuth::SignedIn, A, A},
      {p587, true, RelayAuth::SignedIn, A, A},
  };
  for (const Row& r : rows) {
    SCOPED_TRACE(::testing::Message() << "trusted=" << r.trusted << " auth=" << r.auth
                                      << " untrusted=" << toString(r.policy.untrusted));
    EXPECT_EQ(expectedVerdict(r.policy, r.trusted, r.auth, RelayRecipient::Local), r.local);
    EXPECT_EQ(expectedVerdict(r.policy, r.trusted, r.auth, RelayRecipient::Outside), r.outside);
  }
}

TEST(RelayPolicy, EveryMismatchHasItsReason) {
  using F = FailureReason;
  struct Row {
    bool trusted;
    RelayAuth auth;
    RelayRecipient recipient;
    RelayVerdict expected, observed;
    F reason;
  };
  const auto none = RelayAuth::None;
  const auto in = RelayAuth::SignedIn;
  const auto local = RelayRecipient::Local;
  const auto outside = RelayRecipient::Outside;
  const Row rows[] = {
      {false, none, outside, R, R, F::None},
      {false, none, outside, R, A, F::OpenRelay},
      {true, none, outside, A, R, F::TrustedRelayDenied},
      {false, in, outside, A, R, F::AuthRelayDenied},
      {true, in, local, A, R, F::AuthRelayDenied},
      {false, none, local, A, R, F::LocalDeliveryRefused},
      {true, none, local, A, R, F::LocalDeliveryRefused},
      // 587 without sign-in: a local recipient accepted, or a trusted vantage relaying.
      {false, none, local, R, A, F::UnauthSubmissionAccepted},
      {true, none, outside, R, A, F::UnauthSubmissionAccepted},
      {true, none, local, R, A, F::UnauthSubmissionAccepted},
      // A policy that limits signed-in users to the local domains, broken.
      {false, in, outside, R, A, F::OpenRelay},
  };
  for (const Row& r : rows) {
    SCOPED_TRACE(::testing::Message()
                 << "trusted=" << r.trusted << " auth=" << r.auth << " recipient=" << r.recipient
                 << " expected=" << r.expected << " observed=" << r.observed);
    EXPECT_EQ(relayReason(r.trusted, r.auth, r.recipient, r.expected, r.observed), r.reason);
  }
}

TEST(RelayPolicy, SignedInStatesFollowTheSpecAndTheEndpoint) {
  RelaySpec spec;
  spec.endpoint.auth = AuthPolicy::Required;
  EXPECT_EQ(relayAuthStates(spec), (std::vector<RelayAuth>{RelayAuth::None, RelayAuth::SignedIn}));
  spec.sign_in = false;
  EXPECT_EQ(relayAuthStates(spec), std::vector<RelayAuth>{RelayAuth::None});
  spec.sign_in = true;
  spec.endpoint.auth = AuthPolicy::Skip;
  EXPECT_EQ(relayAuthStates(spec), std::vector<RelayAuth>{RelayAuth::None});
}

TEST(RelayCells, AConversationThatNeverGotThereGivesItsFailureToBothCells) {
  RelaySpec spec;
  spec.endpoint.host = "mx.example.org";
  spec.endpoint.port = 25;
  spec.endpoint.security = Security::StartTls;
  spec.policy = mxRelayPolicy();
  auto cells = relayCellsNotRun(spec, "", {"office", "192.0.2.200", true}, RelayAuth::SignedIn,
                                FailureReason::AuthBackoff, Phase::Auth, "a login failed");
  for (const RelayCell& c : cells) {
    EXPECT_FALSE(c.observed.has_value());
    EXPECT_FALSE(c.ok());
    EXPECT_EQ(c.reason, FailureReason::AuthBackoff);
    EXPECT_EQ(c.phase, Phase::Auth);
    EXPECT_EQ(c.expected, RelayVerdict::Accept);
    EXPECT_EQ(c.vantage, "office");
    EXPECT_TRUE(c.trusted);
    EXPECT_EQ(c.code, 0);
    EXPECT_NE(c.sentence.find("vantage office (trusted), signed in"), std::string::npos)
        << c.sentence;
  }
  EXPECT_EQ(cells[0].recipient, RelayRecipient::Local);
  EXPECT_EQ(cells[1].recipient, RelayRecipient::Outside);
}

TEST(RelayCells, SentencesSayWhatBrokeAndWhatWasExpected) {
  RelaySpec spec;
  spec.endpoint.host = "mx.example.org";
  spec.endpoint.port = 25;
  spec.endpoint.security = Security::StartTls;
  spec.policy = mxRelayPolicy();
  ConnectionOutcome o;
  o.relay_local = RecipientVerdict{true, 250, "2.1.5", "250 2.1.5 Ok", false};
  o.relay_outside = RecipientVerdict{false, 454, "4.7.1", "454 4.7.1 Relay access denied", false};
  auto cells = relayCells(spec, "192.0.2.25", {"office", "192.0.2.200", true}, RelayAuth::None, o);
  EXPECT_EQ(cells[0].sentence,
            "smtp 25 (starttls) on mx.example.org [192.0.2.25], vantage office (trusted), not "
            "signed in: the local recipient is accepted (250 2.1.5), as expected.");
  EXPECT_EQ(cells[1].reason, FailureReason::TrustedRelayDenied);
  EXPECT_TRUE(cells[1].temporary());
  EXPECT_EQ(cells[1].sentence,
            "smtp 25 (starttls) on mx.example.org [192.0.2.25], vantage office (trusted), not "
            "signed in: the outside recipient is refused (454 4.7.1) where the policy says "
            "accept: the trusted network may not relay.");
  EXPECT_EQ(cells[1].detail, "454 4.7.1 Relay access denied");
}

}  // namespace
}  // namespace mailprobe
