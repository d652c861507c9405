// The real probe engine (runOnce) against the scripted hostile server of tests/fault: for each
// fault, the exact reason and phase, that the deadlines hold, and that memory and descriptors
// stay bounded over many runs. Everything stays on 127.0.0.1.

#include <dirent.h>
#include <unistd.h>
#include <openssl/ssl.h>

#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "daemon/one_shot.h"
#include "tests/fakes/process_watch.h"
#include "tests/fakes/secret_scan.h"
#include "tests/fakes/test_certs.h"
#include "tests/fault/fault_server.h"

namespace mailprobe {
namespace {

using namespace std::chrono_literals;
using testing::Fault;
using testing::FaultOptions;
using testing::FaultProtocol;
using testing::FaultServer;
using Millis = std::chrono::milliseconds;

constexpr Millis kPhaseTimeout = 1000ms;
constexpr Millis kTotalTimeout = 5000ms;
// What a deadline may overrun by: the loop's wake-up, and a loaded two-core machine running
// the suite under AddressSanitizer. A fault that fails on its own must do so well before any
// deadline: under kPhaseTimeout.
constexpr Millis kMargin = 500ms;
// libuv timers count from the loop's cached clock, taken when the iteration began, while the
// test's stopwatch starts when the probe is created: a deadline may appear to pass up to a few
// milliseconds early on the test's clock (1499 ms for 1500 ms was seen under load).
constexpr Millis kClockSlack = 10ms;

// The CA and a leaf for "localhost" / 127.0.0.1, made once for the suite.
struct Pki {
  testing::TempDir dir;
  testing::KeyCert leaf;
  std::string ca_file;

  Pki() {
    testing::CertOptions ca_options;
    ca_options.is_ca = true;
    ca_options.common_name = "mailprobed fault CA";
    testing::KeyCert ca = testing::makeSelfSigned(ca_options);
    testing::CertOptions leaf_options;
    leaf_options.dns_names = {"localhost"};
    leaf_options.ip_addresses = {"127.0.0.1"};
    leaf = testing::makeSigned(leaf_options, ca);
    ca_file = dir.write("ca.pem", ca.cert_pem);
  }
};

struct FaultCase {
  FaultProtocol protocol;
  Fault fault;
  Security security;
  FailureReason reason;
  Phase phase;
  bool timeout;  // the failure comes from the phase deadline
};

struct ProbeRun {
  ProbeResult result;
  Millis elapsed;
};

EndpointSpec faultSpec(FaultProtocol protocol, Security security, uint16_t port,
                       const std::string& ca_file) {
  EndpointSpec s;
  s.host = "localhost";
  s.addresses = {"127.0.0.1"};
  s.port = port;
  s.service = protocol == FaultProtocol::Smtp ? Service::Smtp : Service::Imap;
  s.security = security;
  s.tls.ca_file = ca_file;
  s.timeouts.resolve = kPhaseTimeout;
  s.timeouts.connect = kPhaseTimeout;
  s.timeouts.phase = kPhaseTimeout;
  s.timeouts.total = kTotalTimeout;
  return s;
}

ProbeRun probe(const EndpointSpec& spec) {
  Credentials credentials{"probe@fault.test", "fault-test-password"};
  auto start = std::chrono::steady_clock::now();
  std::vector<ProbeResult> results = runOnce({ProbeJob{spec, credentials}});
  auto elapsed = std::chrono::duration_cast<Millis>(std::chrono::steady_clock::now() - start);
  EXPECT_EQ(results.size(), 1u);
  return {results.empty() ? ProbeResult{} : results.front(), elapsed};
}

std::optional<double> phaseSeconds(const ProbeResult& r, Phase phase) {
  for (const auto& t : r.timings) {
    if (t.phase == phase) {
      return t.seconds;
    }
  }
  return std::nullopt;
}

FaultOptions options(FaultProtocol protocol, Fault fault, Security security, const Pki& pki) {
  FaultOptions o;
  o.protocol = protocol;
  o.fault = fault;
  o.via_starttls = security == Security::StartTls;
  o.tls.key_pem = pki.leaf.key_pem;
  o.tls.cert_pem = pki.leaf.cert_pem;
  return o;
}

EndpointSpec specFor(const FaultCase& c, uint16_t port, const Pki& pki) {
  EndpointSpec s = faultSpec(c.protocol, c.security, port, pki.ca_file);
  if (c.fault == Fault::TlsVersionRefused) {
    s.tls.max_version = TLS1_2_VERSION;  // an older phone; the server speaks TLS 1.3 only
  }
  return s;
}

class FaultTest : public ::testing::TestWithParam<FaultCase> {
 protected:
  static void SetUpTestSuite() { pki_ = new Pki; }
  static void TearDownTestSuite() {
    delete pki_;
    pki_ = nullptr;
  }
  static Pki* pki_;
};
Pki* FaultTest::pki_ = nullptr;

TEST_P(FaultTest, ReasonPhaseAndDeadline) {
  const FaultCase& c = GetParam();
  FaultServer server(options(c.protocol, c.fault, c.security, *pki_));
  ProbeRun run = probe(specFor(c, server.port(), *pki_));
  const ProbeResult& r = run.result;

  EXPECT_EQ(server.connections(), 1u) << "one connection: no login was ever reached";
  EXPECT_FALSE(r.success);
  EXPECT_EQ(r.reason, c.reason) << r.detail;
  EXPECT_EQ(r.phase, c.phase) << r.detail;
  EXPECT_FALSE(r.detail.empty());
  EXPECT_EQ(r.detail.find("fault-test-password"), std::string::npos);
  EXPECT_EQ(r.sentence.find("fault-test-password"), std::string::npos);
  if (c.timeout) {
    // The phase deadline, and neither a hang nor the endpoint's total deadline.
    EXPECT_GE(run.elapsed, kPhaseTimeout - kClockSlack);
    EXPECT_LT(run.elapsed, kPhaseTimeout + kMargin);
    std::optional<double> spent = phaseSeconds(r, c.phase);
    ASSERT_TRUE(spent.has_value()) << "the failed phase is timed";
    EXPECT_GE(*spent, 0.95 * kPhaseTimeout.count() / 1000.0);
    EXPECT_LT(*spent, (kPhaseTimeout + kMargin).count() / 1000.0);
  } else {
    EXPECT_LT(run.elapsed, kPhaseTimeout) << "failed on its own, not by a deadline";
  }
  std::cout << "[ fault    ] " << toString(c.protocol) << " " << toString(c.fault) << " "
            << c.security << ": " << r.reason << " in " << r.phase << " after "
            << run.elapsed.count() << " ms (" << r.detail << ")\n";
}

// SMTP and IMAP, each fault where a client meets it: plain faults on a plaintext endpoint,
// TLS faults on both an implicit TLS port and after STARTTLS, injections on STARTTLS.
std::vector<FaultCase> faultCases() {
  using FR = FailureReason;
  std::vector<FaultCase> cases;
  for (FaultProtocol p : {FaultProtocol::Smtp, FaultProtocol::Imap}) {
    std::vector<FaultCase> per_protocol{
        {p, Fault::Silent, Security::None, FR::Timeout, Phase::Greeting, true},
        {p, Fault::SlowGreeting, Security::None, FR::Timeout, Phase::Greeting, true},
        {p, Fault::HugeLine, Security::None, FR::ProtocolError, Phase::Greeting, false},
        {p, Fault::Garbage, Security::None, FR::ProtocolError, Phase::Greeting, false},
        {p, Fault::CloseMidReply, Security::None, FR::ConnectionClosed, Phase::Capabilities, false},
        {p, Fault::ResetMidConversation, Security::None, FR::ConnectionClosed, Phase::Capabilities,
         false},
        {p, Fault::TlsAlert, Security::Tls, FR::TlsHandshakeFailed, Phase::TlsHandshake, false},
        {p, Fault::TlsAlert, Security::StartTls, FR::TlsHandshakeFailed, Phase::TlsHandshake,
         false},
        {p, Fault::TlsAlertProtocolVersion, Security::Tls, FR::TlsVersionUnsupported,
         Phase::TlsHandshake, false},
        {p, Fault::TlsVersionRefused, Security::Tls, FR::TlsVersionUnsupported, Phase::TlsHandshake,
         false},
        {p, Fault::TlsVersionRefused, Security::StartTls, FR::TlsVersionUnsupported,
         Phase::TlsHandshake, false},
        {p, Fault::TlsGarbage, Security::Tls, FR::TlsHandshakeFailed, Phase::TlsHandshake, false},
        {p, Fault::TlsGarbage, Security::StartTls, FR::TlsHandshakeFailed, Phase::TlsHandshake,
         false},
        {p, Fault::TlsStall, Security::Tls, FR::Timeout, Phase::TlsHandshake, true},
        {p, Fault::TlsStall, Security::StartTls, FR::Timeout, Phase::TlsHandshake, true},
        // Seen by the session: the STARTTLS reply came with bytes behind it.
        {p, Fault::InjectSameWrite, Security::StartTls, FR::PlaintextAfterStartTls, Phase::StartTls,
         false},
        // Seen by the transport: text where the ServerHello should be.
        {p, Fault::InjectLaterWrite, Security::StartTls, FR::PlaintextAfterStartTls,
         Phase::TlsHandshake, false},
        {p, Fault::EndlessReply, Security::None, FR::ProtocolError, Phase::Capabilities, false},
        {p, Fault::EndlessReplyOverTls, Security::Tls, FR::ProtocolError, Phase::Capabilities,
         false},
        {p, Fault::EndlessReplyOverTls, Security::StartTls, FR::ProtocolError, Phase::Capabilities,
         false},
    };
    cases.insert(cases.end(), per_protocol.begin(), per_protocol.end());
  }
  return cases;
}

INSTANTIATE_TEST_SUITE_P(Faults, FaultTest, ::testing::ValuesIn(faultCases()),
                         [](const ::testing::TestParamInfo<FaultCase>& info) {
                           const FaultCase& c = info.param;
                           return std::string(toString(c.protocol)) + "_" +
                                  std::string(toString(c.fault)) + "_" +
                                  std::string(toString(c.security));
                         });

// A TLS 1.2 server that asks for a renegotiation right behind its greeting: the client's next
// command (EHLO, CAPABILITY) is written while the new handshake waits for the server, and the
// TLS engine takes nothing then (WantIo). The command must go out once the handshake is through,
// and the conversation end normally, long before any deadline.
TEST(FaultRenegotiationTest, CommandsWaitForTheNewHandshake) {
  Pki pki;
  for (FaultProtocol p : {FaultProtocol::Smtp, FaultProtocol::Imap}) {
    SCOPED_TRACE(std::string(toString(p)));
    FaultServer server(options(p, Fault::RenegotiateOverTls, Security::Tls, pki));
    EndpointSpec spec = faultSpec(p, Security::Tls, server.port(), pki.ca_file);
    spec.auth = AuthPolicy::Skip;  // the server offers no login: the conversation is the point
    ProbeRun run = probe(spec);
    const ProbeResult& r = run.result;

    EXPECT_EQ(server.renegotiations(), 1u) << "the client went through the new handshake";
    EXPECT_TRUE(r.success) << r.reason << " in " << r.phase << ": " << r.detail;
    EXPECT_EQ(r.reason, FailureReason::None);
    ASSERT_TRUE(r.tls.has_value());
    EXPECT_EQ(r.tls->version, "TLSv1.2");
    EXPECT_FALSE(r.capabilities_after_tls.empty()) << "the capability command was answered";
    EXPECT_LT(run.elapsed, kPhaseTimeout) << "no deadline was needed";
  }
}

// A server that refuses every login quoting back the lines the client sent for it (the
// command, the AUTH PLAIN message, the base64 password of AUTH LOGIN, the IMAP LOGIN command
// with the quoted password). Every mechanism fails with auth_failed and says what the server
// said, but no form of the password reaches a detail, an attempt or the sentence.
TEST(FaultEchoLoginTest, ARefusalQuotingTheLoginShowsNoPassword) {
  Pki pki;
  const Credentials credentials{"probe@fault.test", "Echo-Me-If-You-Dare-7f3a9c2e51d8b604"};
  const auto forms = testing::passwordForms(credentials.user, credentials.password);
  for (FaultProtocol p : {FaultProtocol::Smtp, FaultProtocol::Imap}) {
    for (Security security : {Security::Tls, Security::StartTls}) {
      SCOPED_TRACE(std::string(toString(p)) + " " + std::string(toString(security)));
      FaultServer server(options(p, Fault::EchoLogin, security, pki));
      EndpointSpec spec = faultSpec(p, security, server.port(), pki.ca_file);
      auto start = std::chrono::steady_clock::now();
      std::vector<ProbeResult> results = runOnce({ProbeJob{spec, credentials}});
      auto elapsed = std::chrono::duration_cast<Millis>(std::chrono::steady_clock::now() - start);
      ASSERT_EQ(results.size(), 1u);
      const ProbeResult& r = results.front();

      EXPECT_EQ(r.reason, FailureReason::AuthFailed) << r.detail;
      EXPECT_EQ(r.phase, Phase::Auth);
      // IMAP: the LOGIN command, AUTHENTICATE PLAIN, LOGIN and CRAM-MD5; SMTP: the last three.
      const size_t mechanisms = p == FaultProtocol::Imap ? 4 : 3;
      EXPECT_EQ(server.connections(), mechanisms);
      ASSERT_EQ(r.auth.size(), mechanisms);
      std::string shown = r.detail + "\n" + r.sentence + "\n";
      for (const AuthAttempt& a : r.auth) {
        EXPECT_EQ(a.reason, FailureReason::AuthFailed) << a.mechanism << ": " << a.detail;
        // What the server said is kept, the credentials taken out of it.
        EXPECT_NE(a.detail.find("Authentication failed for"), std::string::npos) << a.detail;
        shown += a.mechanism + ": " + a.detail + "\n";
      }
      EXPECT_EQ(testing::findSecrets("the probe's result", shown, forms), "") << shown;
      EXPECT_LT(elapsed, kPhaseTimeout) << "refused at once, no deadline needed";
      std::cout << "[ fault    ] " << toString(p) << " echo_login " << security << ": " << r.reason
                << " in " << r.phase << " (" << r.detail << ")\n";
    }
  }
}

// A reset right after the accept races the client's connect callback: libuv reports the RST
// through SO_ERROR as a failed connect when it lands first, else the read sees it in the
// greeting. Either way it is a reach failure, at once, never a success or a timeout.
TEST(FaultResetTest, ResetOnAcceptIsConnectionClosedOrRefusedAtOnce) {
  for (FaultProtocol p : {FaultProtocol::Smtp, FaultProtocol::Imap}) {
    FaultOptions o;
    o.protocol = p;
    o.fault = Fault::ResetOnAccept;
    FaultServer server(o);
    ProbeRun run = probe(faultSpec(p, Security::None, server.port(), ""));
    const ProbeResult& r = run.result;
    EXPECT_EQ(server.connections(), 1u);
    EXPECT_FALSE(r.success);
    bool in_greeting = r.reason == FailureReason::ConnectionClosed && r.phase == Phase::Greeting;
    bool in_connect = r.reason == FailureReason::ConnectRefused && r.phase == Phase::Connect;
    EXPECT_TRUE(in_greeting || in_connect)
        << toString(p) << ": " << r.reason << " in " << r.phase << " (" << r.detail << ")";
    EXPECT_LT(run.elapsed, kPhaseTimeout);
    std::cout << "[ fault    ] " << toString(p) << " reset_on_accept: " << r.reason << " in "
              << r.phase << " after " << run.elapsed.count() << " ms (" << r.detail << ")\n";
  }
}

// A server that keeps every phase just alive (a byte every 100 ms) under a long phase timeout:
// the endpoint's total deadline ends the probe, in the phase it was in.
TEST(FaultDeadlineTest, TotalDeadlineHoldsWhenNoPhaseDeadlinePasses) {
  constexpr Millis kTotal = 1500ms;
  for (FaultProtocol p : {FaultProtocol::Smtp, FaultProtocol::Imap}) {
    FaultOptions o;
    o.protocol = p;
    o.fault = Fault::SlowGreeting;
    o.slow_interval = 100ms;  // the greeting would take 3-4 s in all
    FaultServer server(o);
    EndpointSpec spec = faultSpec(p, Security::None, server.port(), "");
    spec.timeouts.phase = 10s;
    spec.timeouts.total = kTotal;
    ProbeRun run = probe(spec);
    EXPECT_EQ(run.result.reason, FailureReason::Timeout) << run.result.detail;
    EXPECT_EQ(run.result.phase, Phase::Greeting);
    EXPECT_GE(run.elapsed, kTotal - kClockSlack);
    EXPECT_LT(run.elapsed, kTotal + kMargin);
  }
}

// Resident memory of this process in KiB, from /proc/self/status.
long residentKib() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) == 0) {
      return std::stol(line.substr(6));
    }
  }
  return -1;
}

// This process's open descriptors and what each refers to ("socket:[123]", a path), from
// /proc/self/fd, leaving out the one that reads the directory.
std::map<int, std::string> openDescriptors() {
  std::map<int, std::string> fds;
  DIR* d = ::opendir("/proc/self/fd");
  if (d == nullptr) {
    return fds;
  }
  while (const dirent* e = ::readdir(d)) {
    int fd = std::atoi(e->d_name);
    if (e->d_name[0] == '.' || fd == ::dirfd(d)) {
      continue;
    }
    char target[256];
    std::string path = std::string("/proc/self/fd/") + e->d_name;
    ssize_t n = ::readlink(path.c_str(), target, sizeof target - 1);
    fds[fd] = n > 0 ? std::string(target, static_cast<size_t>(n)) : "?";
  }
  ::closedir(d);
  return fds;
}

std::string describe(const std::map<int, std::string>& fds) {
  std::string out;
  for (const auto& [fd, target] : fds) {
    out += (out.empty() ? "" : " ") + std::to_string(fd) + "=" + target;
  }
  return out;
}

// The server closes its end when it notices the client's close, on its own thread, which a
// loaded machine may not run for a while: wait for that (5 s at most) before counting
// descriptors.
void waitUntilClosed(const FaultServer& server) {
  auto deadline = std::chrono::steady_clock::now() + 5s;
  while (server.openConnections() > 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(10ms);
  }
  EXPECT_EQ(server.openConnections(), 0u);
}

// The faults that push the most bytes at the probe, many times over: after a warm-up, neither
// resident memory nor the descriptor count may grow. Every run must still fail the same way.
// Under AddressSanitizer freed memory sits in its quarantine (up to 256 MiB), so resident
// memory says nothing there: the sanitizer's own leak check at exit stands in for the bound.
TEST(FaultMemoryTest, HugeLinesAndEndlessRepliesLeaveMemoryAndDescriptorsFlat) {
  constexpr int kWarmUp = 5;
  constexpr int kRuns = 50;
  constexpr long kMaxGrowthKib = 2 * 1024;
  Pki pki;
  struct Case {
    FaultProtocol protocol;
    Fault fault;
    Security security;
    Phase phase;
  };
  const Case cases[] = {
      {FaultProtocol::Smtp, Fault::HugeLine, Security::None, Phase::Greeting},
      {FaultProtocol::Imap, Fault::HugeLine, Security::None, Phase::Greeting},
      {FaultProtocol::Smtp, Fault::EndlessReply, Security::None, Phase::Capabilities},
      {FaultProtocol::Imap, Fault::EndlessReply, Security::None, Phase::Capabilities},
      {FaultProtocol::Smtp, Fault::EndlessReplyOverTls, Security::Tls, Phase::Capabilities},
      {FaultProtocol::Imap, Fault::EndlessReplyOverTls, Security::Tls, Phase::Capabilities},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(std::string(toString(c.protocol)) + " " + std::string(toString(c.fault)));
    FaultServer server(options(c.protocol, c.fault, c.security, pki));
    EndpointSpec spec = faultSpec(c.protocol, c.security, server.port(), pki.ca_file);
    int failures_seen = 0;
    auto runMany = [&](int n) {
      for (int i = 0; i < n; ++i) {
        ProbeRun run = probe(spec);
        failures_seen += run.result.reason == FailureReason::ProtocolError &&
                         run.result.phase == c.phase && run.elapsed < kPhaseTimeout;
      }
    };
    runMany(kWarmUp);
    waitUntilClosed(server);
    long rss_before = residentKib();
    std::map<int, std::string> fds_before = openDescriptors();
    auto start = std::chrono::steady_clock::now();
    runMany(kRuns);
    auto took = std::chrono::duration_cast<Millis>(std::chrono::steady_clock::now() - start);
    waitUntilClosed(server);
    long rss_after = residentKib();
    std::map<int, std::string> fds_after = openDescriptors();
    EXPECT_EQ(failures_seen, kWarmUp + kRuns) << "every run is a prompt protocol_error";
    EXPECT_EQ(server.connections(), static_cast<size_t>(kWarmUp + kRuns));
    EXPECT_GT(rss_before, 0);
    if (!testing::kAddressSanitizer) {
      EXPECT_LT(rss_after - rss_before, kMaxGrowthKib);
    }
    EXPECT_EQ(describe(fds_after), describe(fds_before));
    std::cout << "[ memory   ] " << toString(c.protocol) << " " << toString(c.fault) << ": "
              << kRuns << " runs in " << took.count() << " ms, server sent "
              << server.bytesSent() / 1024 << " KiB, VmRSS " << rss_before << " -> " << rss_after
              << " KiB (" << (rss_after - rss_before) << "), fds " << fds_before.size() << " -> "
              << fds_after.size() << "\n";
  }
}

}  // namespace
}  // namespace mailprobe
