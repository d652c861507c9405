#include "probes/smtp_session.h"

#include <gtest/gtest.h>

#include "probes/sasl.h"
#include "tests/fakes/fake_host.h"

namespace mailprobe {
namespace {

using testing::FakeHost;
using testing::goodTls;

constexpr const char* kPostfixEhloPreTls =
    "250-localhost\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250-VRFY\r\n250-ETRN\r\n"
    "250-STARTTLS\r\n250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n250-DSN\r\n250 CHUNKING\r\n";
constexpr const char* kPostfixEhloPostTls =
    "250-localhost\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250-AUTH PLAIN LOGIN\r\n"
    "250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n250 CHUNKING\r\n";

class SmtpSessionTest : public ::testing::Test {
 protected:
  SmtpSessionTest() {
    spec_.host = "mail.example.org";
    spec_.port = 587;
    spec_.service = Service::Smtp;
    spec_.security = Security::StartTls;
    spec_.ehlo_name = "probe.test";
    creds_ = {"probe@example.org", "s3cret"};
  }

  std::unique_ptr<SmtpSession> make(std::vector<std::string> candidates, bool check = true) {
    ConnectionPlan plan;
    plan.spec = &spec_;
    plan.credentials = &creds_;
    plan.candidates = std::move(candidates);
    plan.check_plaintext_login = check;
    return std::make_unique<SmtpSession>(host_, std::move(plan));
  }

  EndpointSpec spec_;
  Credentials creds_;
  FakeHost host_;
};

TEST_F(SmtpSessionTest, SubmissionWithStartTlsAndAuthPlain) {
  auto s = make({"PLAIN", "LOGIN"});
  s->onConnected(std::nullopt);
  s->onData("220-localhost ESMTP\r\n220 second greeting line\r\n");
  EXPECT_EQ(host_.takeSent(), "EHLO probe.test\r\n");
  s->onData(kPostfixEhloPreTls);
  EXPECT_EQ(host_.takeSent(), "STARTTLS\r\n");
  s->onData("220 2.0.0 Ready to start TLS\r\n");
  EXPECT_EQ(host_.tls_requests, 1);
  s->onTlsEstablished(goodTls());
  EXPECT_EQ(host_.takeSent(), "EHLO probe.test\r\n");
  s->onData(kPostfixEhloPostTls);
  EXPECT_EQ(host_.takeSent(), "AUTH PLAIN " + saslPlain("probe@example.org", "s3cret") + "\r\n");
  s->onData("235 2.7.0 Authentication successful\r\n");
  EXPECT_EQ(host_.takeSent(), "QUIT\r\n");
  s->onData("221 2.0.0 Bye\r\n");
  const ConnectionOutcome& o = s->outcome();
  EXPECT_TRUE(o.finished);
  EXPECT_EQ(o.reason, FailureReason::None);
  EXPECT_TRUE(o.starttls_offered);
  EXPECT_TRUE(*o.plaintext_login_refused);
  EXPECT_EQ(o.auth_after_tls, (std::vector<std::string>{"PLAIN", "LOGIN"}));
  EXPECT_TRUE(o.auth_before_tls.empty());
  EXPECT_TRUE(o.auth->success);
  EXPECT_TRUE(o.logged_out);
}

TEST_F(SmtpSessionTest, StartTlsOnTheLastEhloLineIsFound) {
  auto s = make({"PLAIN"});
  s->onConnected(std::nullopt);
  s->onData("220 hi\r\n");
  host_.takeSent();
  s->onData("250-localhost\r\n250-PIPELINING\r\n250 STARTTLS\r\n");
  EXPECT_EQ(host_.takeSent(), "STARTTLS\r\n");
}

TEST_F(SmtpSessionTest, BareLineFeedsAreAccepted) {
  auto s = make({"PLAIN"});
  s->onConnected(std::nullopt);
  s->onData("220 hi\n");
  host_.takeSent();
  s->onData("250-localhost\n250 STARTTLS\n");
  EXPECT_EQ(host_.takeSent(), "STARTTLS\r\n");
}

TEST_F(SmtpSessionTest, NothingIsSentBeforeAMultiLineReplyIsComplete) {
  auto s = make({"PLAIN"});
  s->onConnected(std::nullopt);
  s->onData("220-first\r\n");
  EXPECT_TRUE(host_.sent.empty());
  s->onData("220 last\r\n");
  EXPECT_EQ(host_.takeSent(), "EHLO probe.test\r\n");
  s->onData("250-localhost\r\n250-PIPELINING\r\n");
  EXPECT_TRUE(host_.sent.empty());
}

TEST_F(SmtpSessionTest, InjectionAfterStartTlsReplyIsRefused) {
  auto s = make({"PLAIN"});
  s->onConnected(std::nullopt);
  s->onData("220 hi\r\n");
  s->onData(kPostfixEhloPreTls);
  host_.takeSent();
  s->onData("220 2.0.0 Ready to start TLS\r\n250 injected\r\n");
  EXPECT_EQ(host_.tls_requests, 0);
  EXPECT_EQ(s->outcome().reason, FailureReason::PlaintextAfterStartTls);
  EXPECT_TRUE(s->outcome().finished);
}

TEST_F(SmtpSessionTest, StartTlsMissingOnRequiredPort) {
  auto s = make({"PLAIN"});
  s->onConnected(std::nullopt);
  s->onData("220 hi\r\n250-localhost\r\n250 AUTH PLAIN\r\n");
  // AUTH offered before TLS: the check with an impossible user runs first.
  std::string sent = host_.takeSent();
  EXPECT_NE(sent.find("AUTH PLAIN " + saslPlain("mailprobed-plaintext-check@invalid", "x")),
            std::string::npos);
  EXPECT_EQ(sent.find(saslPlain("probe@example.org", "s3cret")), std::string::npos);
  s->onData("535 5.7.8 Error: authentication failed\r\n");
  EXPECT_EQ(s->outcome().reason, FailureReason::PlaintextAuthAllowed);
  EXPECT_TRUE(s->outcome().finished);  // then STARTTLS is missing: a hard failure
}

TEST_F(SmtpSessionTest, StartTlsOptionalOnPort25GoesOnInClearWithoutLogin) {
  spec_.port = 25;
  spec_.starttls_required = false;
  spec_.auth = AuthPolicy::Optional;
  auto s = make({"PLAIN"}, false);
  s->onConnected(std::nullopt);
  s->onData("220 hi\r\n250-localhost\r\n250 AUTH PLAIN\r\n");
  EXPECT_EQ(host_.takeSent(), "EHLO probe.test\r\nQUIT\r\n");
  s->onData("221 bye\r\n");
  EXPECT_EQ(s->outcome().reason, FailureReason::None);
  EXPECT_FALSE(s->outcome().starttls_offered);
  EXPECT_FALSE(s->outcome().auth.has_value());
}

TEST_F(SmtpSessionTest, EhloRefusedFallsBackToHelo) {
  spec_.security = Security::None;
  spec_.auth = AuthPolicy::Optional;
  auto s = make({"PLAIN"});
  s->onConnected(std::nullopt);
  s->onData("220 old server\r\n");
  host_.takeSent();
  s->onData("502 5.5.2 Error: command not recognized\r\n");
  EXPECT_EQ(host_.takeSent(), "HELO probe.test\r\n");
  s->onData("250 old server\r\n");
  EXPECT_EQ(host_.takeSent(), "QUIT\r\n");
}

TEST_F(SmtpSessionTest, ServiceUnavailableGreetings) {
  for (const char* greeting : {"421 4.3.2 Service shutting down\r\n", "554 5.7.1 No SMTP for you\r\n"}) {
    FakeHost host;
    ConnectionPlan plan;
    plan.spec = &spec_;
    plan.credentials = &creds_;
    SmtpSession s(host, plan);
    s.onConnected(std::nullopt);
    s.onData(greeting);
    EXPECT_EQ(s.outcome().reason, FailureReason::ServiceUnavailable) << greeting;
    EXPECT_EQ(s.outcome().phase, Phase::Greeting);
  }
}

TEST_F(SmtpSessionTest, AuthLoginAndCramMd5Dialogues) {
  spec_.security = Security::Tls;
  auto s = make({"LOGIN"});
  s->onConnected(goodTls());
  s->onData("220 hi\r\n");
  host_.takeSent();
  s->onData("250-localhost\r\n250 AUTH LOGIN CRAM-MD5\r\n");
  EXPECT_EQ(host_.takeSent(), "AUTH LOGIN\r\n");
  s->onData("334 VXNlcm5hbWU6\r\n");
  EXPECT_EQ(host_.takeSent(), base64Encode("probe@example.org") + "\r\n");
  s->onData("334 UGFzc3dvcmQ6\r\n");
  EXPECT_EQ(host_.takeSent(), base64Encode("s3cret") + "\r\n");
  s->onData("535 5.7.8 Error: authentication failed: UGFzc3dvcmQ6\r\n");
  EXPECT_EQ(s->outcome().reason, FailureReason::AuthFailed);
  EXPECT_EQ(host_.takeSent(), "QUIT\r\n");

  FakeHost host2;
  creds_ = {"tim", "tanstaaftanstaaf"};
  ConnectionPlan plan;
  plan.spec = &spec_;
  plan.credentials = &creds_;
  plan.candidates = {"CRAM-MD5"};
  SmtpSession s2(host2, plan);
  s2.onConnected(goodTls());
  s2.onData("220 hi\r\n250-localhost\r\n250 AUTH=LOGIN CRAM-MD5\r\n");
  host2.takeSent();
  s2.onData("334 PDE4OTYuNjk3MTcwOTUyQHBvc3RvZmZpY2UucmVzdG9uLm1jaS5uZXQ+\r\n");
  EXPECT_EQ(host2.takeSent(), "dGltIGI5MTNhNjAyYzdlZGE3YTQ5NWI0ZTZlNzMzNGQzODkw\r\n");
  s2.onData("235 2.7.0 ok\r\n");
  EXPECT_TRUE(s2.outcome().auth->success);
}

TEST_F(SmtpSessionTest, EndlessMultiLineReplyIsAProtocolErrorNotUnboundedMemory) {
  auto s = make({"PLAIN"});
  s->onConnected(std::nullopt);
  std::string flood;
  for (int i = 0; i < 2000; ++i) {
    flood += "220-still greeting\r\n";
  }
  s->onData(flood);
  EXPECT_EQ(s->outcome().reason, FailureReason::ProtocolError);
  EXPECT_TRUE(s->outcome().finished);
}

TEST_F(SmtpSessionTest, RequiredAuthNotOffered) {
  spec_.security = Security::Tls;
  auto s = make({"PLAIN"});
  s->onConnected(goodTls());
  s->onData("220 hi\r\n250-localhost\r\n250 SIZE 100\r\n");
  EXPECT_EQ(s->outcome().reason, FailureReason::AuthNotOffered);
  EXPECT_EQ(host_.takeSent(), "EHLO probe.test\r\nQUIT\r\n");
}

}  // namespace
}  // namespace mailprobe
