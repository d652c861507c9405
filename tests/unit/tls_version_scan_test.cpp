// The pure part of the TLS version scan (probes/tls_version_scan.h): how one version's probe
// results fold into per-address answers (accepted, refused, unknown and why), the three-valued
// "accepts any of", and the version names. The scan over libuv is tested against the real
// servers in tests/integration/tls_version_scan_test.cpp.

#include "probes/tls_version_scan.h"

#include <gtest/gtest.h>
#include <openssl/tls1.h>

namespace mailprobe {
namespace {

ProbeResult result(const std::string& address, FailureReason reason, Phase phase,
                   bool handshake = false) {
  ProbeResult r;
  r.host = "mail.example.org";
  r.address = address;
  r.port = 993;
  r.service = Service::Imap;
  r.security = Security::Tls;
  r.reason = reason;
  r.phase = phase;
  r.success = reason == FailureReason::None;
  if (handshake) {
    r.tls = TlsFacts{};
    r.tls->version = "TLSv1.2";
  }
  return r;
}

TEST(TlsVersionNames, RoundTrip) {
  EXPECT_EQ(scannedTlsVersions(),
            (std::vector<int>{TLS1_VERSION, TLS1_1_VERSION, TLS1_2_VERSION, TLS1_3_VERSION}));
  for (int v : scannedTlsVersions()) {
    EXPECT_EQ(parseTlsVersion(tlsVersionName(v)), v);
  }
  EXPECT_EQ(tlsVersionName(TLS1_VERSION), "TLSv1.0");
  EXPECT_EQ(parseTlsVersion("TLSv1"), TLS1_VERSION);  // OpenSSL's SSL_get_version() spelling
  EXPECT_EQ(parseTlsVersion("SSLv3"), std::nullopt);
  EXPECT_EQ(tlsVersionName(0), "");
}

TEST(RecordVersion, HandshakeAcceptedRefusedOrUnknownPerAddress) {
  std::vector<TlsVersionResult> scan;
  // TLS 1.0: the first address hangs up in the handshake (Dovecot does), the second alerts.
  recordVersion(TLS1_VERSION,
                {result("192.0.2.10", FailureReason::ConnectionClosed, Phase::TlsHandshake),
                 result("2001:db8::10", FailureReason::TlsVersionUnsupported, Phase::TlsHandshake)},
                scan);
  // TLS 1.1: handshake_failure, and a connection refused (nothing learnt).
  recordVersion(TLS1_1_VERSION,
                {result("192.0.2.10", FailureReason::TlsHandshakeFailed, Phase::TlsHandshake),
                 result("2001:db8::10", FailureReason::ConnectRefused, Phase::Connect)},
                scan);
  // TLS 1.2: both complete the handshake, one with a certificate that does not verify.
  recordVersion(TLS1_2_VERSION,
                {result("192.0.2.10", FailureReason::None, Phase::Logout, true),
                 result("2001:db8::10", FailureReason::CertExpired, Phase::TlsHandshake, true)},
                scan);
  // TLS 1.3: a timeout in the handshake is not a refusal.
  recordVersion(TLS1_3_VERSION,
                {result("192.0.2.10", FailureReason::Timeout, Phase::TlsHandshake),
                 result("2001:db8::10", FailureReason::None, Phase::Logout, true)},
                scan);

  ASSERT_EQ(scan.size(), 2u);
  const TlsVersionResult& v4 = scan[0];
  const TlsVersionResult& v6 = scan[1];
  EXPECT_EQ(v4.address, "192.0.2.10");
  EXPECT_EQ(v4.host, "mail.example.org");
  EXPECT_EQ(v4.port, 993);
  EXPECT_EQ(v4.security, Security::Tls);
  EXPECT_EQ(v4.accepted,
            (std::map<int, bool>{
                {TLS1_VERSION, false}, {TLS1_1_VERSION, false}, {TLS1_2_VERSION, true}}));
  EXPECT_EQ(v4.error, FailureReason::Timeout);
  EXPECT_EQ(v4.detail.rfind("TLSv1.3: ", 0), 0u) << v4.detail;
  EXPECT_EQ(
      v6.accepted,
      (std::map<int, bool>{{TLS1_VERSION, false}, {TLS1_2_VERSION, true}, {TLS1_3_VERSION, true}}));
  EXPECT_EQ(v6.error, FailureReason::ConnectRefused);
  EXPECT_EQ(v6.acceptedNames(), (std::vector<std::string>{"TLSv1.2", "TLSv1.3"}));
}

TEST(RecordVersion, NothingAskedIsUnknown) {
  std::vector<TlsVersionResult> scan;
  // The name did not resolve; the CA file could not be loaded (no address either).
  recordVersion(TLS1_2_VERSION, {result("", FailureReason::ResolveFailed, Phase::Resolve)}, scan);
  recordVersion(TLS1_3_VERSION,
                {result("", FailureReason::TlsHandshakeFailed, Phase::TlsHandshake)}, scan);
  ASSERT_EQ(scan.size(), 1u);
  EXPECT_TRUE(scan[0].accepted.empty());
  EXPECT_EQ(scan[0].error, FailureReason::ResolveFailed);

  // SMTP 25 without STARTTLS: the probe went on in plaintext, with no failure and no handshake.
  std::vector<TlsVersionResult> plain;
  ProbeResult r = result("192.0.2.25", FailureReason::None, Phase::Logout);
  r.service = Service::Smtp;
  r.security = Security::StartTls;
  recordVersion(TLS1_2_VERSION, {r}, plain);
  ASSERT_EQ(plain.size(), 1u);
  EXPECT_TRUE(plain[0].accepted.empty());
  EXPECT_EQ(plain[0].error, FailureReason::StartTlsNotOffered);
}

TEST(AcceptsAnyOf, IsTrueFalseOrUnknown) {
  TlsVersionResult r;
  r.accepted = {{TLS1_VERSION, false}, {TLS1_1_VERSION, false}, {TLS1_2_VERSION, true}};
  EXPECT_EQ(r.acceptsAnyOf(TLS1_VERSION, TLS1_1_VERSION), false);   // both known, both refused
  EXPECT_EQ(r.acceptsAnyOf(TLS1_2_VERSION, TLS1_3_VERSION), true);  // one accepted is enough
  EXPECT_EQ(r.acceptsAnyOf(TLS1_3_VERSION, 0), std::nullopt);       // 1.3 never answered
  EXPECT_EQ(r.acceptsAnyOf(0, 0), true);
  r.accepted[TLS1_2_VERSION] = false;
  EXPECT_EQ(r.acceptsAnyOf(0, 0), std::nullopt);
  r.accepted[TLS1_3_VERSION] = false;
  EXPECT_EQ(r.acceptsAnyOf(0, 0), false);
}

}  // namespace
}  // namespace mailprobe
