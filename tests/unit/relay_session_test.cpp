// The SMTP session in relay mode (STYLE habit 13b): byte scripts over a FakeHost for every way a
// server answers MAIL FROM and RCPT TO, and, after every script, that no byte the session sent
// could start a message: no DATA, no BDAT, ever.

#include <gtest/gtest.h>

#include <cctype>

#include "probes/relay.h"
#include "probes/sasl.h"
#include "probes/smtp_session.h"
#include "tests/fakes/fake_host.h"

namespace mailprobe {
namespace {

using testing::FakeHost;
using testing::goodTls;

constexpr const char* kEhloPreTls =
    "250-localhost\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250-STARTTLS\r\n"
    "250-ENHANCEDSTATUSCODES\r\n250 8BITMIME\r\n";
constexpr const char* kEhloPostTls =
    "250-localhost\r\n250-PIPELINING\r\n250-AUTH PLAIN LOGIN\r\n250-ENHANCEDSTATUSCODES\r\n"
    "250 8BITMIME\r\n";

// A FakeHost that also keeps every byte ever sent, for the no-DATA check.
class RecordingHost : public FakeHost {
 public:
  void send(std::string_view bytes) override {
    everything += bytes;
    FakeHost::send(bytes);
  }
  std::string everything;
};

// Every command line the session sent, upper-cased up to the first space.
std::vector<std::string> verbs(const std::string& bytes) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start < bytes.size()) {
    size_t end = bytes.find("\r\n", start);
    std::string line =
        bytes.substr(start, end == std::string::npos ? std::string::npos : end - start);
    std::string verb = line.substr(0, line.find(' '));
    for (char& c : verb) {
      c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    }
    out.push_back(verb);
    start = end == std::string::npos ? bytes.size() : end + 2;
  }
  return out;
}

class RelaySessionTest : public ::testing::Test {
 protected:
  RelaySessionTest() {
    spec_.host = "mail.example.org";
    spec_.port = 25;
    spec_.service = Service::Smtp;
    spec_.security = Security::StartTls;
    spec_.starttls_required = false;
    spec_.auth = AuthPolicy::Optional;
    spec_.ehlo_name = "probe.test";
    creds_ = {"probe@example.org", "s3cret"};
  }

  ~RelaySessionTest() override {
    // Whatever the script, nothing the session sent may start a message body.
    for (const std::string& verb : verbs(host_.everything)) {
      EXPECT_NE(verb, "DATA") << host_.everything;
      EXPECT_NE(verb, "BDAT") << host_.everything;
    }
    EXPECT_EQ(host_.everything.find("DATA\r\n"), std::string::npos);
    EXPECT_LE(host_.done_calls, 1);
  }

  std::unique_ptr<SmtpSession> make(bool signed_in, std::string mail_from = "") {
    ConnectionPlan plan;
    plan.spec = &spec_;
    plan.credentials = &creds_;
    if (signed_in) {
      plan.candidates = {"PLAIN", "LOGIN"};
    }
    plan.relay = RelayEnvelope{std::move(mail_from), "probe@example.org", "relay-test@example.com",
                               signed_in};
    return std::make_unique<SmtpSession>(host_, std::move(plan));
  }

  // Greeting, EHLO, STARTTLS, EHLO again: the session is about to send MAIL FROM (or AUTH).
  void upToTls(SmtpSession& s) {
    s.onConnected(std::nullopt);
    s.onData("220 localhost ESMTP\r\n");
    ASSERT_EQ(host_.takeSent(), "EHLO probe.test\r\n");
    s.onData(kEhloPreTls);
    ASSERT_EQ(host_.takeSent(), "STARTTLS\r\n");
    s.onData("220 2.0.0 Ready to start TLS\r\n");
    ASSERT_EQ(host_.tls_requests, 1);
    s.onTlsEstablished(goodTls());
    ASSERT_EQ(host_.takeSent(), "EHLO probe.test\r\n");
    s.onData(kEhloPostTls);
  }

  // Unauthenticated: after TLS, MAIL FROM:<> is sent and accepted.
  void upToRcpt(SmtpSession& s) {
    upToTls(s);
    ASSERT_EQ(host_.takeSent(), "MAIL FROM:<>\r\n");
    s.onData("250 2.1.0 Ok\r\n");
    ASSERT_EQ(host_.takeSent(), "RCPT TO:<probe@example.org>\r\n");
  }

  RelaySpec relaySpec() const {
    RelaySpec r;
    r.endpoint = spec_;
    r.local_recipient = "probe@example.org";
    r.policy = mxRelayPolicy();
    return r;
  }

  EndpointSpec spec_;
  Credentials creds_;
  RecordingHost host_;
};

TEST_F(RelaySessionTest, PortTwentyFiveLocalAcceptedOutsideRefusedThenRsetAndQuit) {
  auto s = make(false);
  upToRcpt(*s);
  s->onData("250 2.1.5 Ok\r\n");
  EXPECT_EQ(host_.takeSent(), "RCPT TO:<relay-test@example.com>\r\n");
  s->onData("554 5.7.1 <relay-test@example.com>: Relay access denied\r\n");
  EXPECT_EQ(host_.takeSent(), "RSET\r\n");
  s->onData("250 2.0.0 Ok\r\n");
  EXPECT_EQ(host_.takeSent(), "QUIT\r\n");
  s->onData("221 2.0.0 Bye\r\n");

  const ConnectionOutcome& o = s->outcome();
  EXPECT_TRUE(o.finished);
  EXPECT_TRUE(o.logged_out);
  EXPECT_EQ(o.reason, FailureReason::None);
  EXPECT_FALSE(o.auth.has_value());
  ASSERT_TRUE(o.relay_local && o.relay_outside);
  EXPECT_TRUE(o.relay_local->accepted);
  EXPECT_EQ(o.relay_local->code, 250);
  EXPECT_EQ(o.relay_local->enhanced, "2.1.5");
  EXPECT_FALSE(o.relay_outside->accepted);
  EXPECT_EQ(o.relay_outside->code, 554);
  EXPECT_EQ(o.relay_outside->enhanced, "5.7.1");
  EXPECT_FALSE(o.relay_outside->at_mail_from);
  EXPECT_NE(o.relay_outside->detail.find("Relay access denied"), std::string::npos);
  EXPECT_EQ(host_.done_calls, 1);
  // Relay phase between the login phase and the logout.
  EXPECT_EQ(host_.phases.back(), Phase::Logout);
  EXPECT_NE(std::find(host_.phases.begin(), host_.phases.end(), Phase::Relay), host_.phases.end());

  auto cells =
      relayCells(relaySpec(), "192.0.2.25", {"outside", "192.0.2.200", false}, RelayAuth::None, o);
  EXPECT_EQ(cells[0].reason, FailureReason::None);
  EXPECT_EQ(cells[1].reason, FailureReason::None);
  EXPECT_EQ(cells[1].observed, RelayVerdict::Refuse);
  EXPECT_FALSE(cells[1].temporary());
}

// Postfix says "Relay access denied" as 454 (defer_unauth_destination) or 554
// (reject_unauth_destination); 550 and 553 come from other servers and policies, 530 from a
// server that wants a login; 450/451 are temporary. Every one is a refusal, and its class shows.
TEST_F(RelaySessionTest, EveryRefusalCodeAtRcptIsARefusalAndTemporaryIsToldApart) {
  struct Case {
    const char* reply;
    int code;
    const char* enhanced;
    bool temporary;
  };
  const Case cases[] = {
      {"454 4.7.1 <relay-test@example.com>: Relay access denied\r\n", 454, "4.7.1", true},
      {"554 5.7.1 <relay-test@example.com>: Relay access denied\r\n", 554, "5.7.1", false},
      {"550 5.7.1 Unable to relay\r\n", 550, "5.7.1", false},
      {"553 5.7.1 <relay-test@example.com>: Sender address rejected\r\n", 553, "5.7.1", false},
      {"530 5.7.0 Authentication required\r\n", 530, "5.7.0", false},
      {"451 4.3.0 Temporary lookup failure\r\n", 451, "4.3.0", true},
      {"450 4.2.0 <relay-test@example.com>: Recipient address rejected: Greylisted\r\n", 450,
       "4.2.0", true},
      {"550 no enhanced code here\r\n", 550, "", false},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.reply);
    host_.takeSent();  // a fresh conversation; `everything` keeps every byte for the check
    host_.tls_requests = 0;
    host_.done_calls = 0;
    auto s = make(false);
    upToRcpt(*s);
    s->onData("250 2.1.5 Ok\r\n");
    host_.takeSent();
    s->onData(c.reply);
    EXPECT_EQ(host_.takeSent(), "RSET\r\n");
    s->onData("250 Ok\r\n221 Bye\r\n");
    const ConnectionOutcome& o = s->outcome();
    ASSERT_TRUE(o.relay_outside.has_value());
    EXPECT_FALSE(o.relay_outside->accepted);
    EXPECT_EQ(o.relay_outside->code, c.code);
    EXPECT_EQ(o.relay_outside->enhanced, c.enhanced);
    auto cells = relayCells(relaySpec(), "192.0.2.25", {"outside", "192.0.2.200", false},
                            RelayAuth::None, o);
    EXPECT_EQ(cells[1].observed, RelayVerdict::Refuse);
    EXPECT_EQ(cells[1].reason, FailureReason::None);  // refusal expected from outside
    EXPECT_EQ(cells[1].temporary(), c.temporary);
    // From a trusted vantage the same refusal breaks the printers in "Mes réseaux".
    auto trusted =
        relayCells(relaySpec(), "192.0.2.25", {"office", "192.0.2.201", true}, RelayAuth::None, o);
    EXPECT_EQ(trusted[1].reason, FailureReason::TrustedRelayDenied);
  }
}

TEST_F(RelaySessionTest, AcceptedOutsideRecipientFromOutsideIsAnOpenRelay) {
  auto s = make(false);
  upToRcpt(*s);
  s->onData("250 2.1.5 Ok\r\n");
  host_.takeSent();
  s->onData("250 2.1.5 Ok\r\n");
  EXPECT_EQ(host_.takeSent(), "RSET\r\n");  // and never DATA: checked for every test
  s->onData("250 2.0.0 Ok\r\n");
  EXPECT_EQ(host_.takeSent(), "QUIT\r\n");
  s->onData("221 2.0.0 Bye\r\n");
  auto cells = relayCells(relaySpec(), "192.0.2.25", {"outside", "192.0.2.200", false},
                          RelayAuth::None, s->outcome());
  EXPECT_EQ(cells[1].observed, RelayVerdict::Accept);
  EXPECT_EQ(cells[1].reason, FailureReason::OpenRelay);
  EXPECT_EQ(cells[1].sentence.rfind("OPEN RELAY: ", 0), 0u) << cells[1].sentence;
}

TEST_F(RelaySessionTest, FiveThirtyAtMailFromRefusesBothRecipientsWithoutAskingThem) {
  spec_.port = 587;
  spec_.starttls_required = true;
  spec_.auth = AuthPolicy::Required;
  auto s = make(false);
  upToTls(*s);
  EXPECT_EQ(host_.takeSent(), "MAIL FROM:<>\r\n");
  s->onData("530 5.7.0 Authentication required\r\n");
  EXPECT_EQ(host_.takeSent(), "RSET\r\n");
  s->onData("250 2.0.0 Ok\r\n");
  EXPECT_EQ(host_.takeSent(), "QUIT\r\n");
  s->onData("221 2.0.0 Bye\r\n");
  const ConnectionOutcome& o = s->outcome();
  EXPECT_EQ(host_.everything.find("RCPT"), std::string::npos);
  ASSERT_TRUE(o.relay_local && o.relay_outside);
  for (const auto* v : {&*o.relay_local, &*o.relay_outside}) {
    EXPECT_FALSE(v->accepted);
    EXPECT_EQ(v->code, 530);
    EXPECT_EQ(v->enhanced, "5.7.0");
    EXPECT_TRUE(v->at_mail_from);
  }
  RelaySpec r = relaySpec();
  r.endpoint = spec_;
  r.policy = submissionRelayPolicy();
  for (bool trusted : {false, true}) {
    auto cells = relayCells(r, "192.0.2.25", {"v", "192.0.2.200", trusted}, RelayAuth::None, o);
    EXPECT_EQ(cells[0].reason, FailureReason::None);  // sign-in is mandatory on submission
    EXPECT_EQ(cells[1].reason, FailureReason::None);
    EXPECT_TRUE(cells[0].at_mail_from);
    EXPECT_NE(cells[0].sentence.find("530 5.7.0 at MAIL FROM"), std::string::npos);
  }
}

TEST_F(RelaySessionTest, FourTwentyOneAtMailFromIsServiceUnavailable) {
  auto s = make(false);
  upToTls(*s);
  host_.takeSent();
  s->onData("421 4.3.2 Service shutting down\r\n");
  const ConnectionOutcome& o = s->outcome();
  EXPECT_TRUE(o.finished);
  EXPECT_EQ(o.reason, FailureReason::ServiceUnavailable);
  EXPECT_EQ(o.phase, Phase::Relay);
  EXPECT_FALSE(o.relay_local.has_value());
  EXPECT_TRUE(host_.takeSent().empty());
  auto cells =
      relayCells(relaySpec(), "192.0.2.25", {"outside", "192.0.2.200", false}, RelayAuth::None, o);
  EXPECT_FALSE(cells[0].observed.has_value());
  EXPECT_EQ(cells[0].reason, FailureReason::ServiceUnavailable);
  EXPECT_EQ(cells[1].reason, FailureReason::ServiceUnavailable);
}

TEST_F(RelaySessionTest, FourTwentyOneAtTheSecondRcptKeepsTheFirstVerdict) {
  auto s = make(false);
  upToRcpt(*s);
  s->onData("250 2.1.5 Ok\r\n");
  host_.takeSent();
  s->onData("421 4.7.0 Too many errors\r\n");
  const ConnectionOutcome& o = s->outcome();
  EXPECT_TRUE(o.finished);
  EXPECT_EQ(o.reason, FailureReason::ServiceUnavailable);
  EXPECT_TRUE(o.relay_local.has_value());
  EXPECT_FALSE(o.relay_outside.has_value());
  auto cells =
      relayCells(relaySpec(), "192.0.2.25", {"outside", "192.0.2.200", false}, RelayAuth::None, o);
  EXPECT_EQ(cells[0].reason, FailureReason::None);
  EXPECT_EQ(cells[1].reason, FailureReason::ServiceUnavailable);
  EXPECT_NE(cells[1].sentence.find("was not asked"), std::string::npos);
}

TEST_F(RelaySessionTest, MultiLineRepliesAreReadWholeBeforeTheNextCommand) {
  auto s = make(false);
  upToRcpt(*s);
  s->onData("250-2.1.5 first line\r\n");
  EXPECT_TRUE(host_.sent.empty());
  s->onData("250 2.1.5 Ok\r\n");
  EXPECT_EQ(host_.takeSent(), "RCPT TO:<relay-test@example.com>\r\n");
  s->onData("554-5.7.1 <relay-test@example.com>: Relay access denied\r\n554-5.7.1 see the\r\n");
  EXPECT_TRUE(host_.sent.empty());
  s->onData("554 5.7.1 policy page\r\n");
  EXPECT_EQ(host_.takeSent(), "RSET\r\n");
  ASSERT_TRUE(s->outcome().relay_outside.has_value());
  EXPECT_EQ(s->outcome().relay_outside->code, 554);
  EXPECT_EQ(s->outcome().relay_outside->enhanced, "5.7.1");
  EXPECT_NE(s->outcome().relay_outside->detail.find("policy page"), std::string::npos);
}

TEST_F(RelaySessionTest, BareLineFeedsAndOneReadForEverything) {
  auto s = make(false);
  s->onConnected(std::nullopt);
  // A server without STARTTLS on port 25 (optional here): the check goes on in clear.
  s->onData("220 mx\n");
  EXPECT_EQ(host_.takeSent(), "EHLO probe.test\r\n");
  s->onData("250-mx\n250 8BITMIME\n");
  EXPECT_EQ(host_.takeSent(), "MAIL FROM:<>\r\n");
  s->onData("250 ok\n");
  EXPECT_EQ(host_.takeSent(), "RCPT TO:<probe@example.org>\r\n");
  s->onData("250 ok\n");
  EXPECT_EQ(host_.takeSent(), "RCPT TO:<relay-test@example.com>\r\n");
  s->onData("550 relaying denied\n");
  EXPECT_EQ(host_.takeSent(), "RSET\r\n");
  s->onData("250 ok\n");
  EXPECT_EQ(host_.takeSent(), "QUIT\r\n");
  s->onData("221 bye\n");
  EXPECT_TRUE(s->outcome().logged_out);
  EXPECT_EQ(s->outcome().relay_outside->code, 550);
  EXPECT_EQ(host_.tls_requests, 0);
}

TEST_F(RelaySessionTest, SignedInOnSubmissionLogsInThenSendsFromTheAccount) {
  spec_.port = 587;
  spec_.starttls_required = true;
  spec_.auth = AuthPolicy::Required;
  auto s = make(true, "probe@example.org");
  upToTls(*s);
  EXPECT_EQ(host_.takeSent(), "AUTH PLAIN " + saslPlain("probe@example.org", "s3cret") + "\r\n");
  s->onData("235 2.7.0 Authentication successful\r\n");
  EXPECT_EQ(host_.takeSent(), "MAIL FROM:<probe@example.org>\r\n");
  s->onData("250 2.1.0 Ok\r\n");
  EXPECT_EQ(host_.takeSent(), "RCPT TO:<probe@example.org>\r\n");
  s->onData("250 2.1.5 Ok\r\n");
  EXPECT_EQ(host_.takeSent(), "RCPT TO:<relay-test@example.com>\r\n");
  s->onData("250 2.1.5 Ok\r\n");
  EXPECT_EQ(host_.takeSent(), "RSET\r\n");
  s->onData("250 2.0.0 Ok\r\n");
  EXPECT_EQ(host_.takeSent(), "QUIT\r\n");
  s->onData("221 2.0.0 Bye\r\n");
  const ConnectionOutcome& o = s->outcome();
  ASSERT_TRUE(o.auth.has_value());
  EXPECT_TRUE(o.auth->success);
  EXPECT_TRUE(o.relay_local->accepted);
  EXPECT_TRUE(o.relay_outside->accepted);
  RelaySpec r = relaySpec();
  r.endpoint = spec_;
  r.policy = submissionRelayPolicy();
  auto cells =
      relayCells(r, "192.0.2.25", {"outside", "192.0.2.200", false}, RelayAuth::SignedIn, o);
  EXPECT_EQ(cells[0].reason, FailureReason::None);
  EXPECT_EQ(cells[1].reason, FailureReason::None);
}

TEST_F(RelaySessionTest, SignedInSendRefusedIsAuthRelayDenied) {
  auto s = make(true, "probe@example.org");
  upToTls(*s);
  host_.takeSent();
  s->onData("235 2.7.0 Authentication successful\r\n");
  host_.takeSent();
  s->onData("250 2.1.0 Ok\r\n");
  s->onData("250 2.1.5 Ok\r\n");
  s->onData("554 5.7.1 <relay-test@example.com>: Relay access denied\r\n");
  s->onData("250 Ok\r\n221 Bye\r\n");
  auto cells = relayCells(relaySpec(), "192.0.2.25", {"outside", "192.0.2.200", false},
                          RelayAuth::SignedIn, s->outcome());
  EXPECT_EQ(cells[0].reason, FailureReason::None);
  EXPECT_EQ(cells[1].reason, FailureReason::AuthRelayDenied);
}

TEST_F(RelaySessionTest, AFailedLoginEndsTheConversationBeforeMailFrom) {
  auto s = make(true, "probe@example.org");
  upToTls(*s);
  host_.takeSent();
  s->onData("535 5.7.8 Error: authentication failed\r\n");
  EXPECT_EQ(host_.takeSent(), "QUIT\r\n");
  s->onData("221 Bye\r\n");
  const ConnectionOutcome& o = s->outcome();
  EXPECT_EQ(o.reason, FailureReason::AuthFailed);
  EXPECT_EQ(host_.everything.find("MAIL FROM"), std::string::npos);
  auto cells = relayCells(relaySpec(), "192.0.2.25", {"outside", "192.0.2.200", false},
                          RelayAuth::SignedIn, o);
  EXPECT_FALSE(cells[1].observed.has_value());
  EXPECT_EQ(cells[1].reason, FailureReason::AuthFailed);
  EXPECT_EQ(cells[1].phase, Phase::Auth);
}

TEST_F(RelaySessionTest, SignedInWithoutAuthOfferedSaysSoAndSendsNothingMore) {
  auto s = make(true, "probe@example.org");
  s->onConnected(std::nullopt);
  s->onData("220 hi\r\n");
  s->onData(kEhloPreTls);
  s->onData("220 go ahead\r\n");
  s->onTlsEstablished(goodTls());
  host_.takeSent();
  s->onData("250-localhost\r\n250 8BITMIME\r\n");
  EXPECT_EQ(host_.takeSent(), "QUIT\r\n");
  EXPECT_EQ(s->outcome().reason, FailureReason::AuthNotOffered);
  EXPECT_EQ(host_.everything.find("MAIL FROM"), std::string::npos);
}

TEST_F(RelaySessionTest, ImplicitTlsGoesStraightToMailFrom) {
  spec_.port = 465;
  spec_.security = Security::Tls;
  spec_.auth = AuthPolicy::Required;
  auto s = make(false);
  s->onConnected(goodTls());
  s->onData("220 localhost ESMTP\r\n");
  EXPECT_EQ(host_.takeSent(), "EHLO probe.test\r\n");
  s->onData(kEhloPostTls);
  EXPECT_EQ(host_.takeSent(), "MAIL FROM:<>\r\n");
  EXPECT_EQ(host_.tls_requests, 0);
}

TEST_F(RelaySessionTest, AConfiguredSenderIsUsedWithoutSignIn) {
  auto s = make(false, "mailprobed@example.net");
  upToTls(*s);
  EXPECT_EQ(host_.takeSent(), "MAIL FROM:<mailprobed@example.net>\r\n");
}

TEST_F(RelaySessionTest, NonsenseAtRcptIsAProtocolError) {
  auto s = make(false);
  upToRcpt(*s);
  s->onData("354 go ahead\r\n");
  EXPECT_TRUE(s->outcome().finished);
  EXPECT_EQ(s->outcome().reason, FailureReason::ProtocolError);
  EXPECT_TRUE(host_.takeSent().empty());
}

TEST_F(RelaySessionTest, WhateverRsetGetsTheConversationEndsWithQuit) {
  auto s = make(false);
  upToRcpt(*s);
  s->onData("250 Ok\r\n554 5.7.1 denied\r\n");
  EXPECT_EQ(host_.takeSent(), "RCPT TO:<relay-test@example.com>\r\nRSET\r\n");
  s->onData("502 5.5.2 RSET not implemented\r\n");
  EXPECT_EQ(host_.takeSent(), "QUIT\r\n");
  s->onPeerClosed(std::nullopt);  // closing instead of saying goodbye
  EXPECT_TRUE(s->outcome().logged_out);
  EXPECT_EQ(s->outcome().reason, FailureReason::None);
}

TEST_F(RelaySessionTest, APeerCloseAfterTheFirstRecipientKeepsItsVerdict) {
  auto s = make(false);
  upToRcpt(*s);
  s->onData("250 2.1.5 Ok\r\n");
  s->onPeerClosed(std::nullopt);
  const ConnectionOutcome& o = s->outcome();
  EXPECT_EQ(o.reason, FailureReason::ConnectionClosed);
  EXPECT_EQ(o.phase, Phase::Relay);
  EXPECT_TRUE(o.relay_local.has_value());
  EXPECT_FALSE(o.relay_outside.has_value());
}

TEST_F(RelaySessionTest, WithoutARelayEnvelopeTheSessionQuitsAfterTheLoginAsBefore) {
  ConnectionPlan plan;
  plan.spec = &spec_;
  plan.credentials = &creds_;
  plan.candidates = {"PLAIN"};
  SmtpSession s(host_, std::move(plan));
  upToTls(s);
  host_.takeSent();
  s.onData("235 2.7.0 ok\r\n");
  EXPECT_EQ(host_.takeSent(), "QUIT\r\n");
  EXPECT_FALSE(s.outcome().relay_local.has_value());
}

}  // namespace
}  // namespace mailprobe
