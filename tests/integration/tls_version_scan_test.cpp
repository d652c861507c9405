// The TLS version scan against the real Dovecot and Postfix on loopback
// (tests/integration/mailenv.sh): which versions each endpoint accepts by default, a raised
// minimum (Dovecot ssl_min_protocol = TLSv1.3, Postfix >=TLSv1.2) seen as such and back again, a
// closed port seen as unknown rather than refused, and a scan that ends with no live handle, or is
// cancelled; at either pace (one version at a time, as the daemon scans, or all at once, as
// `check` does), with the same results.

#include "probes/tls_version_scan.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/tls1.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>

#include "tests/fakes/mail_env.h"
#include "tests/fakes/mail_env_spec.h"
#include "tests/fault/fault_server.h"

namespace mailprobe {
namespace {

std::string accepted(const TlsVersionResult& r) {
  std::string s;
  for (const auto& [version, ok] : r.accepted) {
    s += std::string(tlsVersionName(version)) + (ok ? "=yes " : "=no ");
  }
  return s + "error=" + std::string(toString(r.error)) + " " + r.detail;
}

std::vector<TlsVersionResult> runScan(const EndpointSpec& s, ScanPace pace) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  std::vector<TlsVersionResult> out;
  bool done = false;
  TlsVersionScan::start(
      &loop, s,
      [&](std::vector<TlsVersionResult> r) {
        out = std::move(r);
        done = true;
      },
      pace);
  uv_run(&loop, UV_RUN_DEFAULT);
  EXPECT_TRUE(done);
  EXPECT_EQ(uv_loop_close(&loop), 0) << "live handles after the scan";
  return out;
}

// Starts a scan and cancels it from a timer in the first loop iteration.
void cancelAtOnce(const EndpointSpec& s, ScanPace pace) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  bool done = false;
  TlsVersionScan* running = TlsVersionScan::start(
      &loop, s, [&](std::vector<TlsVersionResult>) { done = true; }, pace);
  // Cancel from a timer callback, as the daemon would, in the first loop iteration: the first
  // connection is under way and the scan cannot have finished.
  uv_timer_t timer;
  uv_timer_init(&loop, &timer);
  timer.data = running;
  uv_timer_start(
      &timer,
      [](uv_timer_t* t) {
        static_cast<TlsVersionScan*>(t->data)->cancel();
        uv_close(reinterpret_cast<uv_handle_t*>(t), nullptr);
      },
      0, 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  EXPECT_FALSE(done);
  EXPECT_EQ(uv_loop_close(&loop), 0);
}

class TlsVersionScanTest : public testing::MailEnvSuite {
 protected:
  static EndpointSpec spec(Service service, uint16_t port, Security security,
                           const std::string& address = "127.0.0.1") {
    return testing::mailEnvSpec(*env(), service, port, security, address);
  }

  // Runs one scan on a private loop, to the end; the loop must end with no live handle.
  static std::vector<TlsVersionResult> scan(const EndpointSpec& s,
                                            ScanPace pace = ScanPace::OneVersionAtATime) {
    return runScan(s, pace);
  }

  static std::map<int, bool> versions(std::initializer_list<int> yes) {
    std::map<int, bool> m;
    for (int v : scannedTlsVersions()) {
      m[v] = std::find(yes.begin(), yes.end(), v) != yes.end();
    }
    return m;
  }
};

// Observed with Debian 12's packages and OpenSSL 3.0: Dovecot 2.3's default ssl_min_protocol is
// TLSv1.2 (an older ClientHello gets "unsupported protocol"), while Postfix's default
// smtpd_tls_protocols ">=TLSv1" still takes TLS 1.0 and 1.1 (ECDHE-ECDSA-AES256-SHA), on implicit
// TLS and after STARTTLS alike. So an old phone can send but not read mail.
TEST_F(TlsVersionScanTest, DefaultDovecotTakesTls12UpAndPostfixEveryVersion) {
  struct Endpoint {
    Service service;
    uint16_t port;
    Security security;
    std::map<int, bool> expected;
  };
  const auto modern = versions({TLS1_2_VERSION, TLS1_3_VERSION});
  const auto all = versions({TLS1_VERSION, TLS1_1_VERSION, TLS1_2_VERSION, TLS1_3_VERSION});
  const Endpoint endpoints[] = {
      {Service::Imap, env()->imapsPort(), Security::Tls, modern},
      {Service::Imap, env()->imapStarttlsPort(), Security::StartTls, modern},
      {Service::Smtp, env()->smtpsPort(), Security::Tls, all},
      {Service::Smtp, env()->submissionPort(), Security::StartTls, all}};
  for (auto [e, pace] : {std::pair{endpoints[0], ScanPace::OneVersionAtATime},
                         std::pair{endpoints[1], ScanPace::OneVersionAtATime},
                         std::pair{endpoints[2], ScanPace::OneVersionAtATime},
                         std::pair{endpoints[3], ScanPace::OneVersionAtATime},
                         std::pair{endpoints[0], ScanPace::AllVersionsAtOnce},
                         std::pair{endpoints[1], ScanPace::AllVersionsAtOnce},
                         std::pair{endpoints[2], ScanPace::AllVersionsAtOnce},
                         std::pair{endpoints[3], ScanPace::AllVersionsAtOnce}}) {
    SCOPED_TRACE(std::string(toString(e.service)) + " " + std::to_string(e.port) +
                 (pace == ScanPace::AllVersionsAtOnce ? " all at once" : " one at a time"));
    std::vector<TlsVersionResult> results = scan(spec(e.service, e.port, e.security), pace);
    ASSERT_EQ(results.size(), 1u);
    const TlsVersionResult& r = results.front();
    SCOPED_TRACE(accepted(r));
    EXPECT_EQ(r.address, "127.0.0.1");
    EXPECT_EQ(r.port, e.port);
    EXPECT_EQ(r.security, e.security);
    EXPECT_EQ(r.error, FailureReason::None);
    EXPECT_EQ(r.accepted, e.expected);
    EXPECT_GT(r.scanned_at, 0);
    EXPECT_EQ(r.acceptsAnyOf(TLS1_VERSION, TLS1_1_VERSION), e.service == Service::Smtp);
    EXPECT_EQ(r.acceptsAnyOf(TLS1_2_VERSION, 0), true);
  }
}

// Postfix with its minimum raised to TLS 1.2, as an admin would do it, and back.
TEST_F(TlsVersionScanTest, PostfixMinimumRaisedIsSeenAndRestored) {
  ASSERT_TRUE(env()->postconf(
      {"smtpd_tls_protocols = >=TLSv1.2", "smtpd_tls_mandatory_protocols = >=TLSv1.2"}))
      << env()->lastError();
  std::vector<TlsVersionResult> smtps =
      scan(spec(Service::Smtp, env()->smtpsPort(), Security::Tls));
  std::vector<TlsVersionResult> submission =
      scan(spec(Service::Smtp, env()->submissionPort(), Security::StartTls));
  ASSERT_TRUE(
      env()->postconf({"smtpd_tls_protocols = >=TLSv1", "smtpd_tls_mandatory_protocols = >=TLSv1"}))
      << env()->lastError();

  for (const auto* r : {&smtps, &submission}) {
    ASSERT_EQ(r->size(), 1u);
    EXPECT_EQ(r->front().accepted, versions({TLS1_2_VERSION, TLS1_3_VERSION}))
        << accepted(r->front());
  }
  std::vector<TlsVersionResult> restored =
      scan(spec(Service::Smtp, env()->smtpsPort(), Security::Tls));
  ASSERT_EQ(restored.size(), 1u);
  EXPECT_EQ(restored.front().accepted,
            versions({TLS1_VERSION, TLS1_1_VERSION, TLS1_2_VERSION, TLS1_3_VERSION}))
      << accepted(restored.front());
}

// An invalid certificate does not make a version look refused: the handshake completed.
TEST_F(TlsVersionScanTest, ExpiredCertificateStillCountsAsAccepted) {
  std::vector<TlsVersionResult> results =
      scan(spec(Service::Imap, env()->imapsPort(), Security::Tls, env()->value("EXPIRED_IP")));
  ASSERT_EQ(results.size(), 1u);
  SCOPED_TRACE(accepted(results.front()));
  EXPECT_EQ(results.front().accepted, versions({TLS1_2_VERSION, TLS1_3_VERSION}));
}

TEST_F(TlsVersionScanTest, RaisedMinimumIsSeenAndRestored) {
  ASSERT_TRUE(env()->doveconf({"ssl_min_protocol = TLSv1.3"})) << env()->lastError();
  std::vector<TlsVersionResult> raised =
      scan(spec(Service::Imap, env()->imapsPort(), Security::Tls));
  std::vector<TlsVersionResult> raised_starttls =
      scan(spec(Service::Imap, env()->imapStarttlsPort(), Security::StartTls));
  // Restore before asserting, so that a failure here does not leak into other tests.
  ASSERT_TRUE(env()->doveconf({"ssl_min_protocol = TLSv1.2"})) << env()->lastError();

  ASSERT_EQ(raised.size(), 1u);
  SCOPED_TRACE(accepted(raised.front()));
  EXPECT_EQ(raised.front().accepted, versions({TLS1_3_VERSION}));
  EXPECT_EQ(raised.front().error, FailureReason::None);
  ASSERT_EQ(raised_starttls.size(), 1u);
  EXPECT_EQ(raised_starttls.front().accepted, versions({TLS1_3_VERSION}))
      << accepted(raised_starttls.front());

  std::vector<TlsVersionResult> restored =
      scan(spec(Service::Imap, env()->imapsPort(), Security::Tls));
  ASSERT_EQ(restored.size(), 1u);
  EXPECT_EQ(restored.front().accepted, versions({TLS1_2_VERSION, TLS1_3_VERSION}))
      << accepted(restored.front());
}

// A port nobody listens on: every version is unknown, with the reason, never "refused".
TEST_F(TlsVersionScanTest, ClosedPortLeavesEveryVersionUnknown) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  socklen_t len = sizeof a;
  ASSERT_EQ(::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len), 0);
  uint16_t port = ntohs(a.sin_port);
  ::close(fd);  // bound, never listened: connections to it are refused

  std::vector<TlsVersionResult> results = scan(spec(Service::Imap, port, Security::Tls));
  ASSERT_EQ(results.size(), 1u);
  EXPECT_TRUE(results.front().accepted.empty()) << accepted(results.front());
  EXPECT_EQ(results.front().error, FailureReason::ConnectRefused);
  EXPECT_EQ(results.front().acceptsAnyOf(TLS1_VERSION, TLS1_1_VERSION), std::nullopt);
}

// SMTP 25: STARTTLS is optional there (the probe would go on in plaintext without it); Postfix
// offers it, so the versions are scanned as on 587.
TEST_F(TlsVersionScanTest, OptionalStartTlsOnPort25IsScannedToo) {
  EndpointSpec s = spec(Service::Smtp, env()->smtpPort(), Security::StartTls);
  s.starttls_required = false;
  std::vector<TlsVersionResult> results = scan(s);
  ASSERT_EQ(results.size(), 1u);
  EXPECT_EQ(results.front().accepted,
            versions({TLS1_VERSION, TLS1_1_VERSION, TLS1_2_VERSION, TLS1_3_VERSION}))
      << accepted(results.front());
}

TEST_F(TlsVersionScanTest, CancelEndsWithoutDoneAndWithoutLiveHandles) {
  for (ScanPace pace : {ScanPace::OneVersionAtATime, ScanPace::AllVersionsAtOnce}) {
    cancelAtOnce(spec(Service::Imap, env()->imapsPort(), Security::Tls), pace);
  }
}

// Four stalled handshakes: all at once, the scan ends after one phase deadline, not four, every
// version unknown (a stall is no refusal).
TEST(TlsVersionScanPace, AllAtOnceCostsOneDeadline) {
  testing::FaultServer server(
      {.protocol = testing::FaultProtocol::Imap, .fault = testing::Fault::TlsStall});
  EndpointSpec s;
  s.host = "localhost";
  s.addresses = {"127.0.0.1"};
  s.port = server.port();
  s.service = Service::Imap;
  s.security = Security::Tls;
  s.timeouts.phase = std::chrono::milliseconds(1000);
  s.timeouts.total = std::chrono::milliseconds(5000);
  auto started = std::chrono::steady_clock::now();
  std::vector<TlsVersionResult> results = runScan(s, ScanPace::AllVersionsAtOnce);
  double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  ASSERT_EQ(results.size(), 1u);
  EXPECT_TRUE(results.front().accepted.empty()) << accepted(results.front());
  EXPECT_EQ(results.front().error, FailureReason::Timeout);
  EXPECT_EQ(server.connections(), scannedTlsVersions().size());
  EXPECT_GE(seconds, 0.99);
  EXPECT_LT(seconds, 2.0) << "the versions did not run at once";
}

}  // namespace
}  // namespace mailprobe
