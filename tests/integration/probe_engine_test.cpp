// The probe engine against real Dovecot and Postfix on loopback (tests/integration/mailenv.sh),
// and against sockets that misbehave in the simple ways a real server shows too (a closed port,
// a listener that never greets).

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <set>

#include "daemon/one_shot.h"
#include "probes/endpoint_probe.h"
#include "tests/fakes/mail_env.h"

namespace mailprobe {
namespace {

using testing::MailEnv;

// Source address of the probe: Dovecot shows LOGINDISABLED only to a client whose address
// differs from the listener's (STYLE.md, platform facts).
constexpr const char* kProbeSource = "127.0.0.2";

class ProbeEngineTest : public testing::MailEnvSuite {
 protected:
  static EndpointSpec spec(Service service, uint16_t port, Security security,
                           const std::string& address = "127.0.0.1") {
    EndpointSpec s;
    s.host = "localhost";
    s.addresses = {address};
    s.port = port;
    s.service = service;
    s.security = security;
    s.source_address = kProbeSource;
    s.tls.ca_file = env()->caFile();
    s.timeouts.phase = std::chrono::milliseconds(8000);
    s.timeouts.total = std::chrono::milliseconds(60000);
    return s;
  }

  // The platform's five endpoints, as the config's defaults describe them.
  static std::vector<EndpointSpec> platform() {
    std::vector<EndpointSpec> all{
        spec(Service::Imap, env()->imapStarttlsPort(), Security::StartTls),
        spec(Service::Imap, env()->imapsPort(), Security::Tls),
        spec(Service::Smtp, env()->smtpPort(), Security::StartTls),
        spec(Service::Smtp, env()->smtpsPort(), Security::Tls),
        spec(Service::Smtp, env()->submissionPort(), Security::StartTls),
    };
    all[2].starttls_required = false;
    all[2].auth = AuthPolicy::Optional;
    return all;
  }

  static std::vector<ProbeResult> probe(const std::vector<EndpointSpec>& specs,
                                        const Credentials& credentials) {
    std::vector<ProbeJob> jobs;
    for (const auto& s : specs) {
      jobs.push_back({s, credentials});
    }
    return runOnce(jobs);
  }

  static Credentials account() { return {env()->user(), env()->password()}; }
};

std::string summary(const ProbeResult& r) {
  std::string s = r.sentence + " [" + std::string(toString(r.reason)) + " in " +
                  std::string(toString(r.phase)) + ": " + r.detail + "]";
  for (const auto& a : r.auth) {
    s += " " + a.mechanism + "=" + std::string(toString(a.reason));
  }
  return s;
}

TEST_F(ProbeEngineTest, AllFiveEndpointsWorkAndEveryAdvertisedMechanismLogsIn) {
  std::vector<ProbeResult> results = probe(platform(), account());
  ASSERT_EQ(results.size(), 5u);
  for (const auto& r : results) {
    SCOPED_TRACE(summary(r));
    EXPECT_TRUE(r.success);
    EXPECT_EQ(r.reason, FailureReason::None);
    EXPECT_EQ(r.address, "127.0.0.1");
    ASSERT_TRUE(r.tls.has_value());
    EXPECT_EQ(r.tls->verify, FailureReason::None);
    EXPECT_FALSE(r.tls->version.empty());
    EXPECT_FALSE(r.tls->cipher.empty());
    EXPECT_GT(r.tls->leaf_not_after, 0);
    // Every advertised mechanism the probe speaks was tried, once, and worked.
    std::set<std::string> expected;
    for (const auto& m : r.auth_after_tls) {
      const auto& supported = supportedMechanisms(r.service);
      if (std::find(supported.begin(), supported.end(), m) != supported.end()) {
        expected.insert(m);
      }
    }
    std::set<std::string> tried;
    for (const auto& a : r.auth) {
      EXPECT_TRUE(a.success) << a.mechanism << ": " << a.detail;
      EXPECT_TRUE(tried.insert(a.mechanism).second) << a.mechanism << " tried twice";
    }
    EXPECT_EQ(tried, expected);
    EXPECT_GE(tried.size(), 2u);
    // Per-phase timings of the main conversation.
    std::set<Phase> phases;
    for (const auto& t : r.timings) {
      phases.insert(t.phase);
      EXPECT_GE(t.seconds, 0.0);
    }
    for (Phase p : {Phase::Resolve, Phase::Connect, Phase::Greeting, Phase::TlsHandshake,
                    Phase::Auth, Phase::Logout}) {
      EXPECT_TRUE(phases.count(p)) << "no timing for " << toString(p);
    }
    // Dovecot's IMAPS greeting carries its capabilities: no CAPABILITY command is needed.
    if (r.service == Service::Smtp || r.security == Security::StartTls) {
      EXPECT_TRUE(phases.count(Phase::Capabilities)) << "no timing for capabilities";
    }
    if (r.security == Security::StartTls) {
      EXPECT_TRUE(r.starttls_offered);
      EXPECT_TRUE(phases.count(Phase::StartTls));
      ASSERT_TRUE(r.plaintext_login_refused.has_value());
      EXPECT_TRUE(*r.plaintext_login_refused);
      EXPECT_FALSE(r.capabilities_before_tls.empty());
    }
  }
  // IMAP offers the LOGIN command and AUTHENTICATE PLAIN and LOGIN at least.
  std::set<std::string> imap_tried;
  for (const auto& a : results[1].auth) {
    imap_tried.insert(a.mechanism);
  }
  for (const char* m : {"LOGIN-COMMAND", "PLAIN", "LOGIN"}) {
    EXPECT_TRUE(imap_tried.count(m)) << m;
  }
}

TEST_F(ProbeEngineTest, LoginDisabledBeforeStartTlsIsSeenFromAnotherAddress) {
  std::vector<ProbeResult> results =
      probe({spec(Service::Imap, env()->imapStarttlsPort(), Security::StartTls)}, account());
  ASSERT_EQ(results.size(), 1u);
  const ProbeResult& r = results[0];
  const auto& before = r.capabilities_before_tls;
  EXPECT_NE(std::find(before.begin(), before.end(), "LOGINDISABLED"), before.end());
  EXPECT_NE(std::find(before.begin(), before.end(), "STARTTLS"), before.end());
  const auto& after = r.capabilities_after_tls;
  EXPECT_EQ(std::find(after.begin(), after.end(), "LOGINDISABLED"), after.end());
  EXPECT_EQ(std::find(r.auth_before_tls.begin(), r.auth_before_tls.end(), "LOGIN-COMMAND"),
            r.auth_before_tls.end());
  EXPECT_TRUE(r.plaintext_login_refused.value_or(false));
}

// A wrong password on the four endpoints that require a login, in one run (one login gate, as
// in `check`): the first login is refused, and every other login of the account, on every
// endpoint and mechanism, is held back instead of tried. Without the gate the run would make 14
// (4 IMAP mechanisms on 143 and 993, 3 SMTP ones on 465 and 587); Dovecot, which checks the
// SMTP logins too (Postfix's SASL), saw one.
TEST_F(ProbeEngineTest, WrongPasswordIsOneRefusedLoginAndEveryOtherLoginIsHeldBack) {
  Credentials wrong{env()->user(), "not-the-password"};
  std::vector<EndpointSpec> specs = platform();
  specs.erase(specs.begin() + 2);  // port 25 does not require a login
  const size_t before = env()->refusedLogins();
  std::vector<ProbeResult> results = probe(specs, wrong);
  ASSERT_EQ(results.size(), 4u);
  int refused = 0;
  int held_back = 0;
  for (const auto& r : results) {
    SCOPED_TRACE(summary(r));
    EXPECT_FALSE(r.success);
    EXPECT_EQ(r.phase, Phase::Auth);
    EXPECT_TRUE(r.reason == FailureReason::AuthFailed || r.reason == FailureReason::AuthBackoff);
    // Every mechanism the endpoint advertises is accounted for: refused or held back.
    EXPECT_GE(r.auth.size(), r.service == Service::Imap ? 4u : 3u);
    for (const auto& a : r.auth) {
      EXPECT_FALSE(a.success) << a.mechanism;
      if (a.reason == FailureReason::AuthFailed) {
        ++refused;
      } else {
        ++held_back;
        EXPECT_EQ(a.reason, FailureReason::AuthBackoff) << a.mechanism << ": " << a.detail;
        EXPECT_EQ(a.detail.rfind("login held back after 1 refused login; next attempt in ", 0), 0u)
            << a.detail;
      }
      EXPECT_EQ(a.detail.find("not-the-password"), std::string::npos);
    }
    // The sentence and detail never carry the password.
    EXPECT_EQ(r.sentence.find("not-the-password"), std::string::npos);
    EXPECT_EQ(r.detail.find("not-the-password"), std::string::npos);
  }
  EXPECT_EQ(refused, 1);
  EXPECT_EQ(held_back, 13);
  EXPECT_EQ(env()->refusedLogins() - before, 1u) << env()->logs();
}

struct CertCase {
  const char* address;
  FailureReason reason;
};

TEST_F(ProbeEngineTest, BadCertificatesGiveTheirReasonAndAcceptAllStillConnects) {
  for (CertCase c : {CertCase{"127.0.0.4", FailureReason::CertExpired},
                     CertCase{"127.0.0.5", FailureReason::CertHostnameMismatch},
                     CertCase{"127.0.0.6", FailureReason::CertSelfSigned}}) {
    std::vector<ProbeResult> results =
        probe({spec(Service::Imap, env()->imapsPort(), Security::Tls, c.address),
               spec(Service::Imap, env()->imapStarttlsPort(), Security::StartTls, c.address)},
              account());
    ASSERT_EQ(results.size(), 2u);
    for (const auto& r : results) {
      SCOPED_TRACE(summary(r));
      EXPECT_FALSE(r.success);
      EXPECT_EQ(r.reason, c.reason);
      EXPECT_EQ(r.phase, Phase::TlsHandshake);
      ASSERT_TRUE(r.tls.has_value());
      EXPECT_EQ(r.tls->verify, c.reason);
      EXPECT_TRUE(r.tls->accept_all_ok);
      // The facts are all there despite the invalid certificate.
      EXPECT_FALSE(r.tls->version.empty());
      EXPECT_GT(r.tls->leaf_not_after, 0);
      // A client that accepts all certificates can log in: the probe shows it did.
      ASSERT_FALSE(r.auth.empty());
      EXPECT_TRUE(r.auth.front().success) << r.auth.front().detail;
    }
    if (c.reason == FailureReason::CertExpired) {
      EXPECT_LT(results[0].tls->leaf_not_after, static_cast<int64_t>(::time(nullptr)));
    }
  }
}

TEST_F(ProbeEngineTest, StrictCertificatePolicyKeepsThePasswordFromAnUnverifiedServer) {
  EndpointSpec s = spec(Service::Imap, env()->imapsPort(), Security::Tls, "127.0.0.6");
  s.tls.login_despite_invalid_cert = false;
  std::vector<ProbeResult> results = probe({s}, account());
  ASSERT_EQ(results.size(), 1u);
  EXPECT_EQ(results[0].reason, FailureReason::CertSelfSigned);
  EXPECT_TRUE(results[0].auth.empty());
}

// tls_resumption: probes run one after the other share the contexts of one run (runOnce), so
// each offers the session its predecessor kept for the same endpoint and address. Postfix
// resumes (TLS 1.3 tickets) and the login still works; a probe without the option never
// resumes; Dovecot, as configured by default, never does.
TEST_F(ProbeEngineTest, TlsResumptionResumesPostfixSessionsAndLogsIn) {
  EndpointSpec smtps = spec(Service::Smtp, env()->smtpsPort(), Security::Tls);
  EndpointSpec submission = spec(Service::Smtp, env()->submissionPort(), Security::StartTls);
  EndpointSpec imaps = spec(Service::Imap, env()->imapsPort(), Security::Tls);
  for (EndpointSpec* s : {&smtps, &submission, &imaps}) {
    s->tls.resumption = true;
    s->mechanisms = {"PLAIN"};
  }
  EndpointSpec full = smtps;
  full.tls.resumption = false;
  std::vector<ProbeJob> jobs;
  for (int round = 0; round < 3; ++round) {
    for (const EndpointSpec& s : {smtps, submission, imaps, full}) {
      jobs.push_back({s, account()});
    }
  }
  std::vector<ProbeResult> results = runOnce(jobs, /*parallel=*/1);
  ASSERT_EQ(results.size(), jobs.size());
  for (size_t i = 0; i < results.size(); ++i) {
    const ProbeResult& r = results[i];
    SCOPED_TRACE(summary(r) + " (probe " + std::to_string(i) + ")");
    EXPECT_TRUE(r.success);
    ASSERT_TRUE(r.tls.has_value());
    EXPECT_EQ(r.tls->verify, FailureReason::None);
    EXPECT_GT(r.tls->leaf_not_after, 0) << "a resumed handshake keeps the certificate facts";
    ASSERT_EQ(r.auth.size(), 1u);
    EXPECT_TRUE(r.auth[0].success) << r.auth[0].detail;
    const size_t round = i / 4;
    const size_t which = i % 4;
    const bool postfix_resuming = which == 0 || which == 1;
    EXPECT_EQ(r.tls->resumed, postfix_resuming && round > 0);
  }
}

// Loopback sockets that misbehave the way a real network does; no mail server needed.
class ReachTest : public ::testing::Test {};

int listenOnLoopback(uint16_t* port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&a), len) != 0 || ::listen(fd, 16) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    return -1;
  }
  *port = ntohs(a.sin_port);
  return fd;
}

EndpointSpec loopbackSpec(uint16_t port, Security security) {
  EndpointSpec s;
  s.host = "127.0.0.1";
  s.port = port;
  s.service = Service::Imap;
  s.security = security;
  s.auth = AuthPolicy::Skip;
  s.timeouts.phase = std::chrono::milliseconds(1000);
  s.timeouts.total = std::chrono::milliseconds(5000);
  return s;
}

TEST_F(ReachTest, ClosedPortIsConnectRefused) {
  uint16_t port = 0;
  int fd = listenOnLoopback(&port);
  ASSERT_GE(fd, 0);
  ::close(fd);  // nothing listens there now
  std::vector<ProbeResult> results = runOnce({{loopbackSpec(port, Security::None), {}}});
  ASSERT_EQ(results.size(), 1u);
  EXPECT_EQ(results[0].reason, FailureReason::ConnectRefused);
  EXPECT_EQ(results[0].phase, Phase::Connect);
}

TEST_F(ReachTest, ListenerThatNeverGreetsTimesOutInTheGreetingWithinTheDeadline) {
  uint16_t port = 0;
  int fd = listenOnLoopback(&port);  // the kernel accepts; nobody ever speaks
  ASSERT_GE(fd, 0);
  for (Security security : {Security::None, Security::StartTls}) {
    auto start = std::chrono::steady_clock::now();
    std::vector<ProbeResult> results = runOnce({{loopbackSpec(port, security), {}}});
    double elapsed =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    ASSERT_EQ(results.size(), 1u);
    EXPECT_EQ(results[0].reason, FailureReason::Timeout);
    EXPECT_EQ(results[0].phase, Phase::Greeting);
    EXPECT_GE(elapsed, 0.9);
    EXPECT_LT(elapsed, 2.5) << "the 1 s phase deadline did not hold";
  }
  // Implicit TLS: the silence is in the handshake.
  std::vector<ProbeResult> tls = runOnce({{loopbackSpec(port, Security::Tls), {}}});
  ASSERT_EQ(tls.size(), 1u);
  EXPECT_EQ(tls[0].reason, FailureReason::Timeout);
  EXPECT_EQ(tls[0].phase, Phase::TlsHandshake);
  ::close(fd);
}

TEST_F(ReachTest, UnresolvableNameIsResolveFailed) {
  EndpointSpec s = loopbackSpec(143, Security::None);
  s.host = "no-such-host.invalid";
  std::vector<ProbeResult> results = runOnce({{s, {}}});
  ASSERT_EQ(results.size(), 1u);
  // NXDOMAIN, or no answer at all from the machine's resolver within the deadline.
  EXPECT_TRUE(results[0].reason == FailureReason::ResolveFailed ||
              results[0].reason == FailureReason::Timeout)
      << toString(results[0].reason);
  EXPECT_EQ(results[0].phase, Phase::Resolve);
}

}  // namespace
}  // namespace mailprobe
