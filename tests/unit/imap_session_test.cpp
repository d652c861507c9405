#include "probes/imap_session.h"

#include <gtest/gtest.h>

#include "probes/sasl.h"
#include "tests/fakes/fake_host.h"

namespace mailprobe {
namespace {

using testing::FakeHost;
using testing::goodTls;

constexpr const char* kDovecotPreTls =
    "* OK [CAPABILITY IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+ STARTTLS "
    "LOGINDISABLED] Dovecot (Debian) ready.\r\n";
constexpr const char* kDovecotPostTls =
    "* CAPABILITY IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+ AUTH=PLAIN "
    "AUTH=LOGIN AUTH=CRAM-MD5\r\n";

class ImapSessionTest : public ::testing::Test {
 protected:
  ImapSessionTest() {
    spec_.host = "mail.example.org";
    spec_.port = 143;
    spec_.service = Service::Imap;
    spec_.security = Security::StartTls;
    creds_ = {"probe@example.org", "s3cret"};
  }

  std::unique_ptr<ImapSession> make(std::vector<std::string> candidates,
                                    std::vector<std::string> tried = {}, bool check = true,
                                    bool examine = false) {
    ConnectionPlan plan;
    plan.spec = &spec_;
    plan.credentials = &creds_;
    plan.candidates = std::move(candidates);
    plan.already_tried = std::move(tried);
    plan.check_plaintext_login = check;
    plan.examine = examine;
    return std::make_unique<ImapSession>(host_, std::move(plan));
  }

  EndpointSpec spec_;
  Credentials creds_;
  FakeHost host_;
};

TEST_F(ImapSessionTest, StartTlsThenLoginWithPlainThenLogout) {
  auto s = make({"PLAIN", "LOGIN"});
  s->onConnected(std::nullopt);
  s->onData(kDovecotPreTls);
  // Capabilities came with the greeting: no CAPABILITY command, straight to STARTTLS.
  EXPECT_EQ(host_.takeSent(), "mp1 STARTTLS\r\n");
  s->onData("mp1 OK Begin TLS negotiation now.\r\n");
  EXPECT_EQ(host_.tls_requests, 1);
  s->onTlsEstablished(goodTls());
  EXPECT_EQ(host_.takeSent(), "mp2 CAPABILITY\r\n");
  s->onData(std::string(kDovecotPostTls) +
            "mp2 OK Pre-login capabilities listed, post-login capabilities have more.\r\n");
  EXPECT_EQ(host_.takeSent(),
            "mp3 AUTHENTICATE PLAIN " + saslPlain("probe@example.org", "s3cret") + "\r\n");
  s->onData("mp3 OK [CAPABILITY IMAP4rev1] Logged in\r\n");
  EXPECT_EQ(host_.takeSent(), "mp4 LOGOUT\r\n");
  s->onData("* BYE Logging out\r\nmp4 OK Logout completed.\r\n");

  const ConnectionOutcome& o = s->outcome();
  EXPECT_TRUE(o.finished);
  EXPECT_EQ(host_.done_calls, 1);
  EXPECT_EQ(o.reason, FailureReason::None);
  EXPECT_TRUE(o.starttls_offered);
  ASSERT_TRUE(o.plaintext_login_refused.has_value());
  EXPECT_TRUE(*o.plaintext_login_refused);
  ASSERT_TRUE(o.auth.has_value());
  EXPECT_EQ(o.auth->mechanism, "PLAIN");
  EXPECT_TRUE(o.auth->success);
  EXPECT_TRUE(o.logged_out);
  // LOGINDISABLED before TLS: the LOGIN command is not offered then, but is after TLS.
  EXPECT_EQ(o.auth_before_tls, std::vector<std::string>{});
  EXPECT_EQ(o.auth_after_tls,
            (std::vector<std::string>{"PLAIN", "LOGIN", "CRAM-MD5", "LOGIN-COMMAND"}));
  EXPECT_EQ(host_.phases.front(), Phase::Greeting);
  EXPECT_EQ(host_.phases.back(), Phase::Logout);
}

TEST_F(ImapSessionTest, ResponseSplitByteByByteGivesTheSameConversation) {
  auto s = make({"PLAIN"});
  s->onConnected(std::nullopt);
  for (char c : std::string(kDovecotPreTls)) {
    s->onData(std::string(1, c));
  }
  EXPECT_EQ(host_.takeSent(), "mp1 STARTTLS\r\n");
}

TEST_F(ImapSessionTest, PlaintextInjectedAfterStartTlsIsAFailure) {
  auto s = make({"PLAIN"});
  s->onConnected(std::nullopt);
  s->onData(kDovecotPreTls);
  host_.takeSent();
  // The injected untagged response arrives with the STARTTLS completion, in one read.
  s->onData("mp1 OK Begin TLS negotiation now.\r\n* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n");
  EXPECT_EQ(host_.tls_requests, 0);
  EXPECT_TRUE(s->outcome().finished);
  EXPECT_EQ(s->outcome().reason, FailureReason::PlaintextAfterStartTls);
}

TEST_F(ImapSessionTest, NoStartTlsOnAStartTlsPort) {
  auto s = make({"PLAIN"});
  s->onConnected(std::nullopt);
  s->onData("* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] ready\r\n");
  EXPECT_EQ(s->outcome().reason, FailureReason::StartTlsNotOffered);
  EXPECT_EQ(s->outcome().phase, Phase::StartTls);
  EXPECT_TRUE(s->outcome().finished);
  // No credentials were sent in clear.
  for (const auto& sent : host_.sent) {
    EXPECT_EQ(sent.find("s3cret"), std::string::npos);
  }
}

TEST_F(ImapSessionTest, PlaintextLoginCheckUsesAnImpossibleUserAndSeesAcceptance) {
  auto s = make({"PLAIN"});
  s->onConnected(std::nullopt);
  s->onData("* OK [CAPABILITY IMAP4rev1 STARTTLS AUTH=PLAIN] ready\r\n");
  std::string check = host_.takeSent();
  EXPECT_NE(check.find("LOGIN \"mailprobed-plaintext-check@invalid\""), std::string::npos);
  EXPECT_EQ(check.find("s3cret"), std::string::npos);
  s->onData("mp1 NO [AUTHENTICATIONFAILED] Authentication failed.\r\n");
  EXPECT_EQ(host_.takeSent(), "mp2 STARTTLS\r\n");
  EXPECT_EQ(s->outcome().reason, FailureReason::PlaintextAuthAllowed);
  EXPECT_FALSE(*s->outcome().plaintext_login_refused);
  EXPECT_FALSE(s->outcome().finished);  // a soft failure: the conversation goes on
}

TEST_F(ImapSessionTest, PlaintextLoginCheckRefusedWithPrivacyRequired) {
  auto s = make({"PLAIN"});
  s->onConnected(std::nullopt);
  s->onData("* OK [CAPABILITY IMAP4rev1 STARTTLS] ready\r\n");
  host_.takeSent();
  s->onData("mp1 NO [PRIVACYREQUIRED] Plaintext authentication disallowed\r\n");
  EXPECT_EQ(s->outcome().reason, FailureReason::None);
  EXPECT_TRUE(*s->outcome().plaintext_login_refused);
}

TEST_F(ImapSessionTest, WrongPasswordIsAuthFailedAndStillLogsOut) {
  spec_.security = Security::Tls;
  auto s = make({"LOGIN"});
  s->onConnected(goodTls());
  s->onData(std::string("* OK ready\r\n"));
  EXPECT_EQ(host_.takeSent(), "mp1 CAPABILITY\r\n");
  s->onData(std::string(kDovecotPostTls) + "mp1 OK done\r\n");
  EXPECT_EQ(host_.takeSent(), "mp2 AUTHENTICATE LOGIN\r\n");
  s->onData("+ VXNlcm5hbWU6\r\n");
  EXPECT_EQ(host_.takeSent(), base64Encode("probe@example.org") + "\r\n");
  s->onData("+ UGFzc3dvcmQ6\r\n");
  EXPECT_EQ(host_.takeSent(), base64Encode("s3cret") + "\r\n");
  s->onData("mp2 NO [AUTHENTICATIONFAILED] Authentication failed.\r\n");
  EXPECT_EQ(host_.takeSent(), "mp3 LOGOUT\r\n");
  EXPECT_EQ(s->outcome().reason, FailureReason::AuthFailed);
  EXPECT_EQ(s->outcome().phase, Phase::Auth);
  ASSERT_TRUE(s->outcome().auth);
  EXPECT_FALSE(s->outcome().auth->success);
  EXPECT_EQ(s->outcome().auth->detail, "NO [AUTHENTICATIONFAILED] Authentication failed.");
}

// After the user and the password, the probe cancels with "*"; a server that keeps sending
// "+" after that is a protocol error at once, not a ping-pong until the phase deadline.
TEST_F(ImapSessionTest, EndlessChallengesAfterTheCancelAreAProtocolError) {
  spec_.security = Security::Tls;
  auto s = make({"LOGIN"});
  s->onConnected(goodTls());
  s->onData(std::string("* OK [CAPABILITY IMAP4rev1 AUTH=LOGIN] ready\r\n"));
  EXPECT_EQ(host_.takeSent(), "mp1 AUTHENTICATE LOGIN\r\n");
  s->onData("+ VXNlcm5hbWU6\r\n+ UGFzc3dvcmQ6\r\n+ \r\n");
  EXPECT_EQ(host_.takeSent(),
            base64Encode("probe@example.org") + "\r\n" + base64Encode("s3cret") + "\r\n*\r\n");
  EXPECT_FALSE(s->outcome().finished);
  s->onData("+ \r\n");
  EXPECT_EQ(host_.takeSent(), "");
  EXPECT_TRUE(s->outcome().finished);
  EXPECT_EQ(s->outcome().reason, FailureReason::ProtocolError);
  EXPECT_EQ(s->outcome().phase, Phase::Auth);
}

TEST_F(ImapSessionTest, CramMd5AnswersTheChallenge) {
  spec_.security = Security::Tls;
  creds_ = {"tim", "tanstaaftanstaaf"};
  auto s = make({"CRAM-MD5"});
  s->onConnected(goodTls());
  s->onData(std::string("* OK [CAPABILITY IMAP4rev1 AUTH=CRAM-MD5] ready\r\n"));
  EXPECT_EQ(host_.takeSent(), "mp1 AUTHENTICATE CRAM-MD5\r\n");
  s->onData("+ PDE4OTYuNjk3MTcwOTUyQHBvc3RvZmZpY2UucmVzdG9uLm1jaS5uZXQ+\r\n");
  EXPECT_EQ(host_.takeSent(), "dGltIGI5MTNhNjAyYzdlZGE3YTQ5NWI0ZTZlNzMzNGQzODkw\r\n");
}

TEST_F(ImapSessionTest, LoginCommandQuotesAndUsesLiteralsForEightBitPasswords) {
  spec_.security = Security::Tls;
  creds_ = {"probe@example.org", "p\"a\\ss"};
  auto s = make({"LOGIN-COMMAND"});
  s->onConnected(goodTls());
  s->onData("* OK [CAPABILITY IMAP4rev1] ready\r\n");
  EXPECT_EQ(host_.takeSent(), "mp1 LOGIN \"probe@example.org\" \"p\\\"a\\\\ss\"\r\n");

  FakeHost host2;
  creds_ = {"probe@example.org", "pässwörd"};
  ConnectionPlan plan;
  plan.spec = &spec_;
  plan.credentials = &creds_;
  plan.candidates = {"LOGIN-COMMAND"};
  ImapSession s2(host2, plan);
  s2.onConnected(goodTls());
  s2.onData("* OK [CAPABILITY IMAP4rev1] ready\r\n");
  // No LITERAL+: a synchronizing literal, the password waits for the server's "+".
  std::string first = host2.takeSent();
  EXPECT_EQ(first, "mp1 LOGIN \"probe@example.org\" {10}\r\n");
  s2.onData("+ OK\r\n");
  EXPECT_EQ(host2.takeSent(), "pässwörd\r\n");
}

TEST_F(ImapSessionTest, ByeGreetingIsServiceUnavailable) {
  auto s = make({"PLAIN"});
  s->onConnected(std::nullopt);
  s->onData("* BYE Too many connections\r\n");
  EXPECT_EQ(s->outcome().reason, FailureReason::ServiceUnavailable);
  EXPECT_EQ(s->outcome().phase, Phase::Greeting);
}

TEST_F(ImapSessionTest, GarbageGreetingIsProtocolError) {
  auto s = make({"PLAIN"});
  s->onConnected(std::nullopt);
  s->onData("SSH-2.0-OpenSSH_9.2\r\n");
  EXPECT_EQ(s->outcome().reason, FailureReason::ProtocolError);
  EXPECT_TRUE(s->outcome().finished);
}

// A server that answers CAPABILITY with untagged data and never completes it: a protocol error
// after 1000 untagged responses, not a wait for the phase deadline. EXAMINE's ten are fine.
TEST_F(ImapSessionTest, EndlessUntaggedResponsesAreAProtocolError) {
  spec_.security = Security::Tls;
  auto s = make({"PLAIN"});
  s->onConnected(goodTls());
  s->onData("* OK ready\r\n");
  EXPECT_EQ(host_.takeSent(), "mp1 CAPABILITY\r\n");
  std::string untagged;
  for (int i = 0; i < 999; ++i) {
    untagged += "* OK [ALERT] still talking\r\n";
  }
  s->onData(untagged);  // with the greeting: 1000 untagged responses in a row
  EXPECT_FALSE(s->outcome().finished);
  s->onData("* 1 EXISTS\r\n");
  EXPECT_TRUE(s->outcome().finished);
  EXPECT_EQ(host_.done_calls, 1);
  EXPECT_EQ(s->outcome().reason, FailureReason::ProtocolError);
  EXPECT_EQ(s->outcome().phase, Phase::Capabilities);
  EXPECT_NE(s->outcome().detail.find("untagged"), std::string::npos);
}

TEST_F(ImapSessionTest, UntaggedCountStartsAgainAfterEachCompletion) {
  spec_.security = Security::Tls;
  auto s = make({"PLAIN"});
  s->onConnected(goodTls());
  std::string untagged;
  for (int i = 0; i < 999; ++i) {
    untagged += "* OK [ALERT] still talking\r\n";
  }
  s->onData("* OK ready\r\n" + untagged + "mp1 OK done\r\n");
  // No AUTH= and PLAIN the only candidate: no login, straight to LOGOUT.
  EXPECT_EQ(host_.takeSent(), "mp1 CAPABILITY\r\nmp2 LOGOUT\r\n");
  s->onData(untagged + "* BYE Logging out\r\nmp2 OK Logout completed.\r\n");
  EXPECT_TRUE(s->outcome().logged_out);
  EXPECT_NE(s->outcome().reason, FailureReason::ProtocolError);
}

TEST_F(ImapSessionTest, PeerCloseDuringLogoutIsClean) {
  spec_.security = Security::Tls;
  auto s = make({});
  s->onConnected(goodTls());
  s->onData("* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] ready\r\n");
  EXPECT_EQ(host_.takeSent(), "mp1 LOGOUT\r\n");
  s->onPeerClosed(std::nullopt);
  EXPECT_EQ(s->outcome().reason, FailureReason::None);
  EXPECT_TRUE(s->outcome().logged_out);
}

TEST_F(ImapSessionTest, PeerCloseBeforeGreetingIsConnectionClosedInGreeting) {
  auto s = make({"PLAIN"});
  s->onConnected(std::nullopt);
  s->onPeerClosed(std::nullopt);
  EXPECT_EQ(s->outcome().reason, FailureReason::ConnectionClosed);
  EXPECT_EQ(s->outcome().phase, Phase::Greeting);
}

TEST_F(ImapSessionTest, InvalidCertificateIsNotedAndLoginStillHappensByDefault) {
  spec_.security = Security::Tls;
  TlsFacts bad = goodTls();
  bad.verify = FailureReason::CertExpired;
  auto s = make({"PLAIN"});
  s->onConnected(bad);
  s->onData("* OK [CAPABILITY IMAP4rev1 SASL-IR AUTH=PLAIN] ready\r\n");
  EXPECT_NE(host_.takeSent().find("AUTHENTICATE PLAIN"), std::string::npos);
  EXPECT_EQ(s->outcome().reason, FailureReason::CertExpired);
  EXPECT_EQ(s->outcome().phase, Phase::TlsHandshake);

  // With login_despite_invalid_cert = false, the password is kept away from that server.
  spec_.tls.login_despite_invalid_cert = false;
  FakeHost host2;
  ConnectionPlan plan;
  plan.spec = &spec_;
  plan.credentials = &creds_;
  plan.candidates = {"PLAIN"};
  ImapSession s2(host2, plan);
  s2.onConnected(bad);
  s2.onData("* OK [CAPABILITY IMAP4rev1 SASL-IR AUTH=PLAIN] ready\r\n");
  EXPECT_EQ(host2.takeSent(), "mp1 LOGOUT\r\n");
}

TEST_F(ImapSessionTest, FollowUpConnectionSkipsTriedMechanisms) {
  spec_.security = Security::Tls;
  auto s = make({"PLAIN", "LOGIN"}, {"PLAIN"}, false);
  s->onConnected(goodTls());
  s->onData("* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN AUTH=LOGIN] ready\r\n");
  EXPECT_EQ(host_.takeSent(), "mp1 AUTHENTICATE LOGIN\r\n");
}

TEST_F(ImapSessionTest, RequiredAuthWithNoUsableMechanism) {
  spec_.security = Security::Tls;
  auto s = make({"PLAIN"});
  s->onConnected(goodTls());
  s->onData("* OK [CAPABILITY IMAP4rev1 AUTH=GSSAPI LOGINDISABLED] ready\r\n");
  EXPECT_EQ(s->outcome().reason, FailureReason::AuthMechanismMissing);
}

TEST_F(ImapSessionTest, ExamineInboxAfterLogin) {
  spec_.security = Security::Tls;
  auto s = make({"PLAIN"}, {}, false, true);
  s->onConnected(goodTls());
  s->onData("* OK [CAPABILITY IMAP4rev1 SASL-IR AUTH=PLAIN] ready\r\n");
  host_.takeSent();
  s->onData("mp1 OK Logged in\r\n");
  EXPECT_EQ(host_.takeSent(), "mp2 EXAMINE INBOX\r\n");
  s->onData("* 3 EXISTS\r\n* FLAGS (\\Seen)\r\nmp2 OK [READ-ONLY] Examine completed\r\n");
  EXPECT_EQ(host_.takeSent(), "mp3 LOGOUT\r\n");
  EXPECT_EQ(s->outcome().reason, FailureReason::None);
}

}  // namespace
}  // namespace mailprobe
