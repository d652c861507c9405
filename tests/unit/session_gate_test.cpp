// Sessions and the login gate (AuthGate), over the fake host: what crosses the wire when the
// probe account is backing off, waiting its turn, or free to log in.

#include <gtest/gtest.h>

#include "probes/auth_gate.h"
#include "probes/imap_session.h"
#include "probes/sasl.h"
#include "probes/smtp_session.h"
#include "tests/fakes/fake_host.h"

namespace mailprobe {
namespace {

using std::chrono::seconds;
using testing::FakeHost;
using testing::goodTls;

constexpr const char* kPassword = "s3cret-Pa55";
constexpr const char* kEhlo = "250-mail.example.org\r\n250 AUTH PLAIN LOGIN CRAM-MD5\r\n";
constexpr const char* kImapGreeting =
    "* OK [CAPABILITY IMAP4rev1 SASL-IR LITERAL+ AUTH=PLAIN AUTH=LOGIN] Dovecot ready.\r\n";

// Nothing that could carry the password: no AUTH or LOGIN command, neither the password nor
// any base64 form of it.
void expectNoCredentials(const std::string& sent, const std::string& user) {
  EXPECT_EQ(sent.find("AUTH"), std::string::npos) << sent;
  EXPECT_EQ(sent.find("LOGIN "), std::string::npos) << sent;
  EXPECT_EQ(sent.find(kPassword), std::string::npos) << sent;
  EXPECT_EQ(sent.find(base64Encode(kPassword)), std::string::npos) << sent;
  EXPECT_EQ(sent.find(saslPlain(user, kPassword)), std::string::npos) << sent;
}

class SessionGateTest : public ::testing::Test {
 protected:
  SessionGateTest() : gate_({seconds(60), seconds(3600), 2.0}, [this] { return now_; }) {
    creds_ = {"probe@example.org", kPassword};
    smtp_spec_.host = imap_spec_.host = "mail.example.org";
    smtp_spec_.port = 465;
    smtp_spec_.service = Service::Smtp;
    smtp_spec_.security = Security::Tls;
    imap_spec_.port = 993;
    imap_spec_.service = Service::Imap;
    imap_spec_.security = Security::Tls;
    account_ = accountKey(creds_, "mail.example.org");
  }

  ConnectionPlan plan(const EndpointSpec& spec, std::vector<std::string> candidates) {
    ConnectionPlan p;
    p.spec = &spec;
    p.credentials = &creds_;
    p.candidates = std::move(candidates);
    p.gate = &gate_;
    p.account = account_;
    return p;
  }
  std::unique_ptr<SmtpSession> smtp(FakeHost& host,
                                    std::vector<std::string> candidates = {"PLAIN", "LOGIN"}) {
    return std::make_unique<SmtpSession>(host, plan(smtp_spec_, std::move(candidates)));
  }
  std::unique_ptr<ImapSession> imap(FakeHost& host, std::vector<std::string> candidates) {
    return std::make_unique<ImapSession>(host, plan(imap_spec_, std::move(candidates)));
  }
  // An SMTP session on 465 brought to the point where it would log in.
  void smtpToAuth(SmtpSession& s, FakeHost& host) {
    s.onConnected(goodTls());
    s.onData("220 mail.example.org ESMTP\r\n");
    EXPECT_EQ(host.takeSent(), "EHLO mailprobed.invalid\r\n");
    s.onData(kEhlo);
  }
  // A refused login seen by the gate, as another endpoint's session would report it.
  void refuseOnce() {
    auto login = gate_.request(account_, "PLAIN", nullptr);
    ASSERT_EQ(login->verdict(), AuthGate::Verdict::Go);
    login->report(AuthGate::Outcome::Refused);
  }

  std::chrono::steady_clock::time_point now_{};
  AuthGate gate_;
  Credentials creds_;
  EndpointSpec smtp_spec_, imap_spec_;
  std::string account_;
};

TEST_F(SessionGateTest, SmtpHeldBackSendsNoAuthAndQuits) {
  refuseOnce();
  now_ += seconds(15);
  FakeHost host;
  auto s = smtp(host);
  smtpToAuth(*s, host);
  std::string sent = host.takeSent();
  EXPECT_EQ(sent, "QUIT\r\n");
  expectNoCredentials(sent, creds_.user);
  s->onData("221 2.0.0 Bye\r\n");
  const ConnectionOutcome& o = s->outcome();
  EXPECT_TRUE(o.finished);
  EXPECT_TRUE(o.logged_out);
  EXPECT_EQ(o.reason, FailureReason::AuthBackoff);
  EXPECT_EQ(o.phase, Phase::Auth);
  ASSERT_TRUE(o.auth.has_value());
  EXPECT_EQ(o.auth->mechanism, "PLAIN");
  EXPECT_FALSE(o.auth->success);
  EXPECT_EQ(o.auth->reason, FailureReason::AuthBackoff);
  EXPECT_EQ(o.auth->detail, "login held back after 1 refused login; next attempt in 45s");
  EXPECT_EQ(o.detail.find(kPassword), std::string::npos);
  EXPECT_EQ(gate_.view(account_).hold.refused_in_a_row, 1);  // a held-back login is no refusal
}

TEST_F(SessionGateTest, ImapHeldBackSendsNoLoginNorAuthenticate) {
  for (const char* mechanism : {"LOGIN-COMMAND", "PLAIN", "LOGIN"}) {
    SCOPED_TRACE(mechanism);
    refuseOnce();
    FakeHost host;
    auto s = imap(host, {mechanism});
    s->onConnected(goodTls());
    s->onData(kImapGreeting);
    std::string sent = host.takeSent();
    EXPECT_EQ(sent, "mp1 LOGOUT\r\n");
    expectNoCredentials(sent, creds_.user);
    EXPECT_EQ(sent.find("AUTHENTICATE"), std::string::npos);
    ASSERT_TRUE(s->outcome().auth.has_value());
    EXPECT_EQ(s->outcome().auth->reason, FailureReason::AuthBackoff);
    now_ += seconds(3600);  // over: the next round refuses anew
  }
}

TEST_F(SessionGateTest, SignedInRelayCheckHeldBackSendsNeitherAuthNorEnvelope) {
  refuseOnce();
  FakeHost host;
  ConnectionPlan p = plan(smtp_spec_, {"PLAIN"});
  p.relay = RelayEnvelope{"probe@example.org", "probe@example.org", "relay-test@example.com", true};
  SmtpSession s(host, std::move(p));
  smtpToAuth(s, host);
  std::string sent = host.takeSent();
  EXPECT_EQ(sent, "QUIT\r\n");  // no MAIL FROM, no RCPT TO
  expectNoCredentials(sent, creds_.user);
  EXPECT_EQ(s.outcome().reason, FailureReason::AuthBackoff);
}

TEST_F(SessionGateTest, SecondLoginWaitsForTheFirstAndIsHeldBackWhenItIsRefused) {
  FakeHost h1, h2;
  auto first = smtp(h1);
  auto second = imap(h2, {"PLAIN"});
  smtpToAuth(*first, h1);
  EXPECT_EQ(h1.takeSent(), "AUTH PLAIN " + saslPlain(creds_.user, kPassword) + "\r\n");
  second->onConnected(goodTls());
  second->onData(kImapGreeting);
  // Waiting for its turn: in the auth phase, nothing sent, not finished.
  EXPECT_EQ(h2.takeSent(), "");
  EXPECT_EQ(h2.phases.back(), Phase::Auth);
  EXPECT_FALSE(second->outcome().finished);
  EXPECT_EQ(gate_.view(account_).queued, 1);

  first->onData("535 5.7.8 Error: authentication failed\r\n");
  EXPECT_EQ(h1.takeSent(), "QUIT\r\n");
  EXPECT_EQ(first->outcome().reason, FailureReason::AuthFailed);
  // The refusal reaches the waiting session at once: it logs out without a word of credentials.
  std::string sent = h2.takeSent();
  EXPECT_EQ(sent, "mp1 LOGOUT\r\n");
  expectNoCredentials(sent, creds_.user);
  EXPECT_EQ(second->outcome().auth->reason, FailureReason::AuthBackoff);
  EXPECT_EQ(second->outcome().auth->detail,
            "login held back after 1 refused login; next attempt in 1m00s");
  EXPECT_EQ(gate_.view(account_).hold.refused_in_a_row, 1);  // one wrong password, one refusal
}

TEST_F(SessionGateTest, SecondLoginGoesAsSoonAsTheFirstIsAccepted) {
  FakeHost h1, h2;
  auto first = smtp(h1);
  auto second = imap(h2, {"PLAIN"});
  smtpToAuth(*first, h1);
  h1.takeSent();
  second->onConnected(goodTls());
  second->onData(kImapGreeting);
  EXPECT_EQ(h2.takeSent(), "");
  size_t phases_before = h2.phases.size();
  first->onData("235 2.7.0 Authentication successful\r\n");
  EXPECT_EQ(h2.takeSent(), "mp1 AUTHENTICATE PLAIN " + saslPlain(creds_.user, kPassword) + "\r\n");
  // Its turn came: the auth phase starts again, with a whole deadline.
  ASSERT_EQ(h2.phases.size(), phases_before + 1);
  EXPECT_EQ(h2.phases.back(), Phase::Auth);
  second->onData("mp1 OK Logged in\r\n");
  EXPECT_TRUE(second->outcome().auth->success);
  EXPECT_TRUE(gate_.view(account_).known_good);
}

TEST_F(SessionGateTest, ADeadlineWhileWaitingIsTheGatesDoingNotTheServers) {
  FakeHost h1, h2;
  auto first = smtp(h1);
  auto second = smtp(h2);
  smtpToAuth(*first, h1);
  smtpToAuth(*second, h2);
  EXPECT_EQ(h2.takeSent(), "");
  second->abort(FailureReason::Timeout, std::nullopt, "no answer in time during auth");
  const ConnectionOutcome& o = second->outcome();
  EXPECT_EQ(o.reason, FailureReason::AuthBackoff);
  EXPECT_EQ(o.phase, Phase::Auth);
  EXPECT_EQ(o.auth->detail,
            "no turn to log in before the deadline: another login with this account was still "
            "unanswered");
  EXPECT_EQ(gate_.view(account_).queued, 0);
  // The first one's connection breaks instead: no refusal counted, and nobody is left waiting.
  first->abort(FailureReason::ConnectionClosed, std::nullopt, "the server closed the connection");
  EXPECT_EQ(gate_.view(account_).in_flight, 0);
  EXPECT_EQ(gate_.view(account_).hold.refused_in_a_row, 0);
}

TEST_F(SessionGateTest, WhatTheServerAnswersIsWhatTheGateHears) {
  struct Row {
    std::string reply;
    int refused_after;
    bool known_good_after;
  };
  const std::vector<Row> rows{
      {"535 5.7.8 Error: authentication failed\r\n", 1, false},
      {"454 4.7.0 Temporary authentication failure\r\n", 0, false},  // could not check
      {"421 4.7.0 Closing\r\n", 0, false},                           // says nothing
      {"235 2.7.0 Authentication successful\r\n", 0, true},
  };
  for (const Row& r : rows) {
    SCOPED_TRACE(r.reply);
    AuthGate gate({seconds(60), seconds(3600), 2.0}, [this] { return now_; });
    FakeHost host;
    ConnectionPlan p = plan(smtp_spec_, {"PLAIN"});
    p.gate = &gate;
    SmtpSession s(host, std::move(p));
    smtpToAuth(s, host);
    s.onData(r.reply);
    EXPECT_EQ(gate.view(account_).hold.refused_in_a_row, r.refused_after);
    EXPECT_EQ(gate.view(account_).known_good, r.known_good_after);
    EXPECT_EQ(gate.view(account_).in_flight, 0);
  }
  const std::vector<Row> imap_rows{
      {"mp1 NO [AUTHENTICATIONFAILED] Authentication failed.\r\n", 1, false},
      {"mp1 NO Login failed\r\n", 1, false},
      {"mp1 NO [UNAVAILABLE] Temporary authentication failure.\r\n", 0, false},
      {"mp1 BAD Error in IMAP command\r\n", 0, false},
      {"mp1 OK Logged in\r\n", 0, true},
  };
  for (const Row& r : imap_rows) {
    SCOPED_TRACE(r.reply);
    AuthGate gate({seconds(60), seconds(3600), 2.0}, [this] { return now_; });
    FakeHost host;
    ConnectionPlan p = plan(imap_spec_, {"PLAIN"});
    p.gate = &gate;
    ImapSession s(host, std::move(p));
    s.onConnected(goodTls());
    s.onData(kImapGreeting);
    ASSERT_NE(host.takeSent().find("AUTHENTICATE PLAIN"), std::string::npos);
    s.onData(r.reply);
    EXPECT_EQ(gate.view(account_).hold.refused_in_a_row, r.refused_after);
    EXPECT_EQ(gate.view(account_).known_good, r.known_good_after);
    EXPECT_EQ(gate.view(account_).in_flight, 0);
  }
}

}  // namespace
}  // namespace mailprobe
