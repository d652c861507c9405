// (c) The TLS client engine against an OpenSSL server engine, memory to memory: no sockets, no
// sleeps. Certificates are made fresh for each test.
#include "probes/tls_engine.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <openssl/ssl.h>

#include <cstdio>
#include <ctime>
#include <utility>

#include "probes/tls_context_cache.h"
#include "tests/fakes/test_certs.h"
#include "tests/fakes/tls_server_engine.h"

namespace mailprobe {
namespace {

using testing::CertOptions;
using ::testing::HasSubstr;
using testing::KeyCert;
using testing::makeSelfSigned;
using testing::makeSigned;
using testing::TempDir;
using testing::TlsServerEngine;
using testing::TlsServerOptions;
using Status = TlsEngine::Status;

constexpr char kHost[] = "mail.example.test";
constexpr int64_t kDay = 86400;

int64_t now() {
  return static_cast<int64_t>(std::time(nullptr));
}

// Moves ciphertext both ways, driving both handshakes, until a round moves nothing. Returns the
// client's last status.
Status runHandshake(TlsEngine& client, TlsServerEngine& server) {
  Status status = Status::WantIo;
  TlsServerEngine::Status server_status = Status::WantIo;
  for (int round = 0; round < 20; ++round) {
    status = client.handshake();
    std::string to_server = client.takeCiphertext();
    server.feedCiphertext(to_server);
    if (server_status == Status::WantIo) {
      server_status = server.handshake();
    }
    std::string to_client = server.takeCiphertext();
    client.feedCiphertext(to_client);
    if (to_server.empty() && to_client.empty()) {
      break;
    }
  }
  return status;
}

class TlsEngineTest : public ::testing::Test {
 protected:
  std::shared_ptr<TlsContext> context(TlsOptions options) {
    std::string error;
    auto ctx = TlsContext::create(options, &error);
    EXPECT_NE(ctx, nullptr) << error;
    return ctx;
  }
  std::shared_ptr<TlsContext> trustingOurCa() { return context({.ca_file = ca_file_}); }

  TlsServerOptions serverFor(const KeyCert& leaf, const std::string& chain_pem = "") {
    return {.key_pem = leaf.key_pem, .cert_pem = leaf.cert_pem, .chain_pem = chain_pem};
  }

  // A completed handshake of a client that trusts our CA and asks for `host`.
  TlsFacts factsFor(const TlsServerOptions& server_options, const std::string& host = kHost) {
    TlsServerEngine server(server_options);
    TlsEngine client(trustingOurCa(), host);
    EXPECT_EQ(runHandshake(client, server), Status::Ok) << client.error();
    EXPECT_TRUE(client.handshakeDone());
    return client.facts();
  }

  KeyCert leafFor(CertOptions options) { return makeSigned(options, ca_); }

  TempDir dir_;
  KeyCert ca_ = makeSelfSigned({.is_ca = true, .common_name = "mailprobed test root"});
  std::string ca_file_ = dir_.write("ca.pem", ca_.cert_pem);
  KeyCert good_leaf_ = leafFor({.dns_names = {kHost}});
};

TEST_F(TlsEngineTest, ValidChainVerifiesAndReportsFacts) {
  int64_t made_at = now();
  TlsServerEngine server(serverFor(good_leaf_));
  TlsEngine client(trustingOurCa(), kHost);
  ASSERT_EQ(runHandshake(client, server), Status::Ok) << client.error();

  TlsFacts f = client.facts();
  EXPECT_EQ(f.verify, FailureReason::None) << f.verify_detail;
  EXPECT_EQ(f.verify_detail, "ok");
  EXPECT_TRUE(f.accept_all_ok);
  EXPECT_EQ(f.version, "TLSv1.3");
  EXPECT_FALSE(f.cipher.empty());
  EXPECT_NEAR(f.leaf_not_after, made_at + 30 * kDay, 2);
  EXPECT_NEAR(f.leaf_not_before, made_at - 3600, 2);
  EXPECT_EQ(f.chain_not_after, f.leaf_not_after);
  EXPECT_THAT(f.subject, HasSubstr(std::string("CN = ") + kHost));
  EXPECT_THAT(f.issuer, HasSubstr("CN = mailprobed test root"));
  EXPECT_EQ(client.failureReason(), FailureReason::None);
  // SNI carries the configured name.
  EXPECT_EQ(server.serverName(), kHost);
}

TEST_F(TlsEngineTest, ExpiredCertificateStillCompletesTheHandshake) {
  int64_t made_at = now();
  KeyCert leaf =
      leafFor({.dns_names = {kHost}, .not_before_offset = -60 * kDay, .not_after_offset = -kDay});
  TlsFacts f = factsFor(serverFor(leaf));
  EXPECT_EQ(f.verify, FailureReason::CertExpired);
  EXPECT_EQ(f.verify_detail, "certificate has expired");
  EXPECT_TRUE(f.accept_all_ok);
  EXPECT_NEAR(f.leaf_not_after, made_at - kDay, 2);
}

TEST_F(TlsEngineTest, NotYetValidCertificate) {
  KeyCert leaf =
      leafFor({.dns_names = {kHost}, .not_before_offset = kDay, .not_after_offset = 30 * kDay});
  TlsFacts f = factsFor(serverFor(leaf));
  EXPECT_EQ(f.verify, FailureReason::CertNotYetValid) << f.verify_detail;
  EXPECT_TRUE(f.accept_all_ok);
}

TEST_F(TlsEngineTest, WrongHostNameIsAMismatch) {
  TlsFacts f = factsFor(serverFor(good_leaf_), "imap.other.test");
  EXPECT_EQ(f.verify, FailureReason::CertHostnameMismatch) << f.verify_detail;
  EXPECT_EQ(f.verify_detail, "hostname mismatch");
  EXPECT_TRUE(f.accept_all_ok);
}

TEST_F(TlsEngineTest, PartialWildcardsAreNotAccepted) {
  KeyCert leaf = leafFor({.dns_names = {"m*.example.test"}});
  EXPECT_EQ(factsFor(serverFor(leaf)).verify, FailureReason::CertHostnameMismatch);
  KeyCert wildcard = leafFor({.dns_names = {"*.example.test"}});
  EXPECT_EQ(factsFor(serverFor(wildcard)).verify, FailureReason::None);
}

TEST_F(TlsEngineTest, TrailingDotInTheConfiguredNameIsDropped) {
  TlsServerEngine server(serverFor(good_leaf_));
  TlsEngine client(trustingOurCa(), std::string(kHost) + ".");
  ASSERT_EQ(runHandshake(client, server), Status::Ok) << client.error();
  EXPECT_EQ(client.facts().verify, FailureReason::None) << client.facts().verify_detail;
  EXPECT_EQ(server.serverName(), kHost);
}

TEST_F(TlsEngineTest, IpLiteralIsVerifiedAsAnAddressWithoutSni) {
  KeyCert leaf = leafFor({.ip_addresses = {"127.0.0.1", "::1"}, .common_name = "loopback"});
  {
    TlsServerEngine server(serverFor(leaf));
    TlsEngine client(trustingOurCa(), "127.0.0.1");
    ASSERT_EQ(runHandshake(client, server), Status::Ok) << client.error();
    EXPECT_EQ(client.facts().verify, FailureReason::None) << client.facts().verify_detail;
    EXPECT_EQ(server.serverName(), "");
  }
  EXPECT_EQ(factsFor(serverFor(leaf), "::1").verify, FailureReason::None);
  TlsFacts other = factsFor(serverFor(leaf), "127.0.0.2");
  EXPECT_EQ(other.verify, FailureReason::CertHostnameMismatch);
  EXPECT_EQ(other.verify_detail, "IP address mismatch");
}

TEST_F(TlsEngineTest, SelfSignedCertificate) {
  KeyCert snakeoil = makeSelfSigned({.dns_names = {kHost}});
  TlsFacts f = factsFor(serverFor(snakeoil));
  EXPECT_EQ(f.verify, FailureReason::CertSelfSigned) << f.verify_detail;
  EXPECT_EQ(f.verify_detail, "self-signed certificate");
  EXPECT_TRUE(f.accept_all_ok);
}

TEST_F(TlsEngineTest, MissingIntermediateIsUntrustedAndSendingItFixesIt) {
  int64_t made_at = now();
  KeyCert intermediate = makeSigned(
      {.not_after_offset = 10 * kDay, .is_ca = true, .common_name = "mailprobed intermediate"},
      ca_);
  KeyCert leaf = makeSigned({.dns_names = {kHost}}, intermediate);

  TlsFacts without = factsFor(serverFor(leaf));
  EXPECT_EQ(without.verify, FailureReason::CertUntrusted) << without.verify_detail;
  EXPECT_EQ(without.chain_not_after, without.leaf_not_after);

  TlsFacts with = factsFor(serverFor(leaf, intermediate.cert_pem));
  EXPECT_EQ(with.verify, FailureReason::None) << with.verify_detail;
  EXPECT_NEAR(with.leaf_not_after, made_at + 30 * kDay, 2);
  EXPECT_NEAR(with.chain_not_after, made_at + 10 * kDay, 2);
  EXPECT_THAT(with.issuer, HasSubstr("mailprobed intermediate"));
}

TEST_F(TlsEngineTest, SystemStoreDoesNotTrustOurCa) {
  TlsServerEngine server(serverFor(good_leaf_));
  TlsEngine client(context({}), kHost);
  ASSERT_EQ(runHandshake(client, server), Status::Ok) << client.error();
  EXPECT_EQ(client.facts().verify, FailureReason::CertUntrusted) << client.facts().verify_detail;
}

// Each side's version bounds, and what OpenSSL 3.0 says when they do not meet.
struct VersionCase {
  const char* name;
  int server_min, server_max, server_security_level;
  int client_min, client_max;
  const char* error;
};

TEST_F(TlsEngineTest, VersionsThatDoNotMeetAreTlsVersionUnsupported) {
  const VersionCase cases[] = {
      {"server TLS 1.3 only, client up to 1.2", TLS1_3_VERSION, 0, -1, 0, TLS1_2_VERSION,
       "tlsv1 alert protocol version"},
      {"server up to 1.2, client TLS 1.3 only", 0, TLS1_2_VERSION, -1, TLS1_3_VERSION, 0,
       "tlsv1 alert protocol version"},
      // OpenSSL 3.0 at the default security level still offers TLS 1.0, agrees to it, then
      // refuses the server's MD5+SHA-1 key exchange signature.
      {"server TLS 1.0 only, default client", TLS1_VERSION, TLS1_VERSION, 0, 0, 0,
       "legacy sigalg disallowed or unsupported"},
      {"client bounds leave no version", 0, 0, -1, TLS1_3_VERSION, TLS1_2_VERSION,
       "no protocols available"},
  };
  for (const VersionCase& c : cases) {
    SCOPED_TRACE(c.name);
    TlsServerOptions server_options = serverFor(good_leaf_);
    server_options.min_version = c.server_min;
    server_options.max_version = c.server_max;
    server_options.security_level = c.server_security_level;
    TlsServerEngine server(server_options);
    TlsEngine client(
        context({.ca_file = ca_file_, .min_version = c.client_min, .max_version = c.client_max}),
        kHost);
    EXPECT_EQ(runHandshake(client, server), Status::Failed);
    EXPECT_EQ(client.failureReason(), FailureReason::TlsVersionUnsupported) << client.error();
    EXPECT_THAT(client.error(), HasSubstr(c.error));
    EXPECT_FALSE(client.handshakeDone());
    EXPECT_FALSE(client.facts().accept_all_ok);
  }
}

TEST_F(TlsEngineTest, ClientRefusesTheServersVersion) {
  // A TLS 1.2 server from before TLS 1.3 ignores supported_versions and answers 1.2; a client
  // that insists on 1.3 must refuse that itself. OpenSSL 3 servers refuse instead, so the answer
  // is captured from a TLS 1.2 exchange and replayed to a TLS 1.3-only client.
  TlsServerOptions tls12_max = serverFor(good_leaf_);
  tls12_max.max_version = TLS1_2_VERSION;
  TlsServerEngine server(tls12_max);
  TlsEngine old(context({.ca_file = ca_file_, .max_version = TLS1_2_VERSION}), kHost);
  ASSERT_EQ(old.handshake(), Status::WantIo);
  server.feedCiphertext(old.takeCiphertext());
  ASSERT_EQ(server.handshake(), Status::WantIo);
  std::string server_hello = server.takeCiphertext();

  TlsEngine modern(context({.ca_file = ca_file_, .min_version = TLS1_3_VERSION}), kHost);
  ASSERT_EQ(modern.handshake(), Status::WantIo);
  modern.takeCiphertext();
  modern.feedCiphertext(server_hello);
  EXPECT_EQ(modern.handshake(), Status::Failed);
  EXPECT_EQ(modern.failureReason(), FailureReason::TlsVersionUnsupported) << modern.error();
  EXPECT_THAT(modern.error(), HasSubstr("unsupported protocol"));
  EXPECT_FALSE(modern.takeCiphertext().empty()) << "the alert goes to the network";
}

TEST_F(TlsEngineTest, LegacyTls10ClientCompletesAgainstALegacyServer) {
#ifdef OPENSSL_NO_TLS1
  GTEST_SKIP() << "this OpenSSL build has no TLS 1.0 (OPENSSL_NO_TLS1)";
#endif
  TlsServerOptions legacy = serverFor(good_leaf_);
  legacy.min_version = legacy.max_version = TLS1_VERSION;
  legacy.security_level = 0;
  TlsServerEngine server(legacy);
  TlsEngine client(
      context({.ca_file = ca_file_, .min_version = TLS1_VERSION, .max_version = TLS1_VERSION}),
      kHost);
  ASSERT_EQ(runHandshake(client, server), Status::Ok) << client.error() << " / " << server.error();
  EXPECT_EQ(client.facts().version, "TLSv1");
  EXPECT_EQ(client.facts().verify, FailureReason::None) << client.facts().verify_detail;
}

TEST_F(TlsEngineTest, PlaintextBannerIsAHandshakeFailure) {
  TlsEngine client(trustingOurCa(), kHost);
  ASSERT_EQ(client.handshake(), Status::WantIo);
  EXPECT_FALSE(client.takeCiphertext().empty());
  client.feedCiphertext("220 hello\r\n");
  EXPECT_EQ(client.handshake(), Status::Failed);
  EXPECT_EQ(client.failureReason(), FailureReason::TlsHandshakeFailed);
  EXPECT_THAT(client.error(), HasSubstr("wrong version number"));
  // Failed is final.
  EXPECT_EQ(client.handshake(), Status::Failed);
}

TEST_F(TlsEngineTest, EofBeforeAnyReplyIsConnectionClosed) {
  TlsEngine client(trustingOurCa(), kHost);
  ASSERT_EQ(client.handshake(), Status::WantIo);
  client.takeCiphertext();
  client.feedEof();
  EXPECT_EQ(client.handshake(), Status::Failed);
  EXPECT_EQ(client.failureReason(), FailureReason::ConnectionClosed) << client.error();
  EXPECT_THAT(client.error(), HasSubstr("unexpected eof while reading"));
}

TEST_F(TlsEngineTest, EofInTheMiddleOfTheServersFlightIsConnectionClosed) {
  TlsServerEngine server(serverFor(good_leaf_));
  TlsEngine client(trustingOurCa(), kHost);
  ASSERT_EQ(client.handshake(), Status::WantIo);
  server.feedCiphertext(client.takeCiphertext());
  server.handshake();
  std::string flight = server.takeCiphertext();
  ASSERT_GT(flight.size(), 100u);
  client.feedCiphertext(std::string_view(flight).substr(0, flight.size() / 2));
  EXPECT_EQ(client.handshake(), Status::WantIo);
  client.feedEof();
  EXPECT_EQ(client.handshake(), Status::Failed);
  EXPECT_EQ(client.failureReason(), FailureReason::ConnectionClosed) << client.error();
}

class TlsEngineSessionTest : public TlsEngineTest {
 protected:
  void SetUp() override {
    ASSERT_EQ(runHandshake(client_, server_), Status::Ok) << client_.error();
  }
  TlsServerEngine server_{serverFor(good_leaf_)};
  TlsEngine client_{trustingOurCa(), kHost};
};

TEST_F(TlsEngineSessionTest, ApplicationDataBothWays) {
  ASSERT_EQ(server_.write("* OK IMAP ready\r\n"), Status::Ok);
  client_.feedCiphertext(server_.takeCiphertext());
  std::string got;
  ASSERT_EQ(client_.read(got), Status::Ok) << client_.error();
  EXPECT_EQ(got, "* OK IMAP ready\r\n");

  // Nothing new is still Ok, and appends nothing.
  EXPECT_EQ(client_.read(got), Status::Ok);
  EXPECT_EQ(got, "* OK IMAP ready\r\n");

  ASSERT_EQ(client_.write("a1 CAPABILITY\r\n"), Status::Ok);
  server_.feedCiphertext(client_.takeCiphertext());
  std::string at_server;
  ASSERT_EQ(server_.read(at_server), Status::Ok) << server_.error();
  EXPECT_EQ(at_server, "a1 CAPABILITY\r\n");
}

TEST_F(TlsEngineSessionTest, LargeDataSpansManyRecords) {
  std::string big(300000, 'x');
  for (size_t i = 0; i < big.size(); i += 97) {
    big[i] = static_cast<char>('a' + i % 26);
  }
  ASSERT_EQ(client_.write(big), Status::Ok);
  std::string wire = client_.takeCiphertext();
  EXPECT_GT(wire.size(), big.size());
  server_.feedCiphertext(wire);
  std::string at_server;
  ASSERT_EQ(server_.read(at_server), Status::Ok);
  EXPECT_EQ(at_server, big);

  ASSERT_EQ(server_.write(big), Status::Ok);
  wire = server_.takeCiphertext();
  // Fed in odd slices, as TCP would deliver it.
  std::string got;
  for (size_t i = 0; i < wire.size(); i += 1000) {
    client_.feedCiphertext(std::string_view(wire).substr(i, 1000));
    ASSERT_EQ(client_.read(got), Status::Ok) << client_.error();
  }
  EXPECT_EQ(got, big);
}

TEST_F(TlsEngineSessionTest, CloseNotifyFromTheServerIsPeerClosed) {
  ASSERT_EQ(server_.write("* BYE\r\n"), Status::Ok);
  server_.shutdown();
  client_.feedCiphertext(server_.takeCiphertext());
  std::string got;
  EXPECT_EQ(client_.read(got), Status::Ok);
  EXPECT_EQ(got, "* BYE\r\n");
  EXPECT_TRUE(client_.peerClosed());
  EXPECT_EQ(client_.failureReason(), FailureReason::None);
}

TEST_F(TlsEngineSessionTest, EofWithoutCloseNotifyIsPeerClosedToo) {
  ASSERT_EQ(server_.write("221 bye\r\n"), Status::Ok);
  client_.feedCiphertext(server_.takeCiphertext());
  client_.feedEof();
  std::string got;
  EXPECT_EQ(client_.read(got), Status::Ok) << client_.error();
  EXPECT_EQ(got, "221 bye\r\n");
  EXPECT_TRUE(client_.peerClosed());
}

TEST_F(TlsEngineSessionTest, OurShutdownSendsCloseNotify) {
  EXPECT_FALSE(server_.peerClosed());
  client_.shutdown();
  server_.feedCiphertext(client_.takeCiphertext());
  std::string got;
  EXPECT_EQ(server_.read(got), Status::Ok);
  EXPECT_TRUE(server_.peerClosed());
  // A second shutdown sends nothing more.
  client_.shutdown();
  EXPECT_EQ(client_.takeCiphertext(), "");
}

TEST_F(TlsEngineSessionTest, GarbageAfterTheHandshakeFailsTheRead) {
  client_.feedCiphertext(std::string("\x17\x03\x03\x00\x05hello", 10));
  std::string got;
  EXPECT_EQ(client_.read(got), Status::Failed);
  EXPECT_EQ(client_.failureReason(), FailureReason::TlsHandshakeFailed);
  EXPECT_FALSE(client_.error().empty());
  EXPECT_EQ(client_.write("a2 LOGOUT\r\n"), Status::Failed);
  // The facts of the completed handshake survive the failure.
  EXPECT_TRUE(client_.facts().accept_all_ok);
}

TEST_F(TlsEngineTest, ReadAndWriteBeforeTheHandshakeFail) {
  TlsEngine client(trustingOurCa(), kHost);
  std::string got;
  EXPECT_EQ(client.read(got), Status::Failed);
  EXPECT_EQ(client.write("x"), Status::Failed);
  EXPECT_EQ(client.facts().version, "");
  client.shutdown();  // a no-op, not a crash
}

TEST(TlsCertificateReason, MapsVerifyErrorsToReasons) {
  const std::pair<long, FailureReason> cases[] = {
      {X509_V_OK, FailureReason::None},
      {X509_V_ERR_CERT_HAS_EXPIRED, FailureReason::CertExpired},
      {X509_V_ERR_CERT_NOT_YET_VALID, FailureReason::CertNotYetValid},
      {X509_V_ERR_HOSTNAME_MISMATCH, FailureReason::CertHostnameMismatch},
      {X509_V_ERR_IP_ADDRESS_MISMATCH, FailureReason::CertHostnameMismatch},
      {X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT, FailureReason::CertSelfSigned},
      {X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN, FailureReason::CertSelfSigned},
      {X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT, FailureReason::CertUntrusted},
      {X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY, FailureReason::CertUntrusted},
      {X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE, FailureReason::CertUntrusted},
      {X509_V_ERR_CERT_UNTRUSTED, FailureReason::CertUntrusted},
      {X509_V_ERR_CERT_REVOKED, FailureReason::CertInvalid},
      {X509_V_ERR_INVALID_CA, FailureReason::CertInvalid},
      {X509_V_ERR_EE_KEY_TOO_SMALL, FailureReason::CertInvalid},
  };
  for (const auto& [code, reason] : cases) {
    EXPECT_EQ(certificateReason(code), reason) << X509_verify_cert_error_string(code);
  }
}

TEST(TlsContext, MissingCaFileNamesTheFile) {
  std::string error;
  auto ctx = TlsContext::create({.ca_file = "/nonexistent/mailprobe-ca.pem"}, &error);
  EXPECT_EQ(ctx, nullptr);
  EXPECT_THAT(error, HasSubstr("cannot load CA file /nonexistent/mailprobe-ca.pem"));
}

TEST(TlsContext, CaFileWithoutCertificatesIsRefused) {
  TempDir dir;
  std::string path = dir.write("empty.pem", "not a certificate\n");
  std::string error;
  EXPECT_EQ(TlsContext::create({.ca_file = path}, &error), nullptr);
  EXPECT_THAT(error, HasSubstr(path));
}

TEST(TlsContext, InvalidVersionIsRefused) {
  std::string error;
  EXPECT_EQ(TlsContext::create({.min_version = 12345}, &error), nullptr);
  EXPECT_THAT(error, HasSubstr("invalid minimum TLS version 12345"));
}

TEST(TlsContext, SecurityLevelZeroOnlyForLegacyProfiles) {
  std::string error;
  auto modern = TlsContext::create({}, &error);
  ASSERT_NE(modern, nullptr) << error;
  EXPECT_GT(SSL_CTX_get_security_level(modern->get()), 0);
  auto legacy = TlsContext::create({.min_version = TLS1_VERSION}, &error);
  ASSERT_NE(legacy, nullptr) << error;
  EXPECT_EQ(SSL_CTX_get_security_level(legacy->get()), 0);
}

// --- TlsContextCache: one context per distinct TLS options ----------------------------------

TEST_F(TlsEngineTest, CacheSharesOneContextPerDistinctOptions) {
  TlsContextCache cache;
  std::string error;
  auto a = cache.get({.ca_file = ca_file_}, &error);
  ASSERT_NE(a, nullptr) << error;
  // Whether the password goes to an unverified server is the probe's business, not OpenSSL's.
  auto same = cache.get({.ca_file = ca_file_, .login_despite_invalid_cert = false}, &error);
  EXPECT_EQ(same, a);
  auto other_version = cache.get({.ca_file = ca_file_, .min_version = TLS1_2_VERSION}, &error);
  auto other_ca = cache.get({.ca_file = dir_.write("ca-copy.pem", ca_.cert_pem)}, &error);
  ASSERT_NE(other_version, nullptr) << error;
  ASSERT_NE(other_ca, nullptr) << error;
  EXPECT_NE(other_version, a);
  EXPECT_NE(other_ca, a);
  EXPECT_EQ(cache.size(), 3u);
  EXPECT_EQ(cache.built(), 3u);

  // The shared context verifies each connection against its own name.
  TlsServerEngine server(serverFor(good_leaf_));
  TlsEngine good(cache.get({.ca_file = ca_file_}, &error), kHost);
  ASSERT_EQ(runHandshake(good, server), Status::Ok) << good.error();
  EXPECT_EQ(good.facts().verify, FailureReason::None);
  TlsServerEngine server2(serverFor(good_leaf_));
  TlsEngine wrong_name(cache.get({.ca_file = ca_file_}, &error), "other.example.test");
  ASSERT_EQ(runHandshake(wrong_name, server2), Status::Ok) << wrong_name.error();
  EXPECT_EQ(wrong_name.facts().verify, FailureReason::CertHostnameMismatch);
  EXPECT_EQ(server2.serverName(), "other.example.test");
  EXPECT_EQ(cache.built(), 3u) << "a lookup built a context again";
}

TEST_F(TlsEngineTest, CacheRebuildsWhenTheCaFileIsReplaced) {
  KeyCert new_ca = makeSelfSigned({.is_ca = true, .common_name = "mailprobed renewed root"});
  KeyCert new_leaf = makeSigned({.dns_names = {kHost}}, new_ca);
  std::string path = dir_.write("trust.pem", ca_.cert_pem);
  TlsContextCache cache;
  std::string error;
  auto before = cache.get({.ca_file = path}, &error);
  ASSERT_NE(before, nullptr) << error;
  {
    TlsServerEngine server(serverFor(new_leaf));
    TlsEngine client(before, kHost);
    ASSERT_EQ(runHandshake(client, server), Status::Ok) << client.error();
    EXPECT_EQ(client.facts().verify, FailureReason::CertUntrusted);
  }
  // Replaced the way packages and configuration tools do it: a new file renamed over the old.
  std::string fresh = dir_.write("trust.pem.new", new_ca.cert_pem);
  ASSERT_EQ(std::rename(fresh.c_str(), path.c_str()), 0);
  auto after = cache.get({.ca_file = path}, &error);
  ASSERT_NE(after, nullptr) << error;
  EXPECT_NE(after, before);
  EXPECT_EQ(cache.size(), 1u);
  TlsServerEngine server(serverFor(new_leaf));
  TlsEngine client(after, kHost);
  ASSERT_EQ(runHandshake(client, server), Status::Ok) << client.error();
  EXPECT_EQ(client.facts().verify, FailureReason::None) << client.facts().verify_detail;
  EXPECT_EQ(cache.get({.ca_file = path}, &error), after) << "unchanged file, same context";
}

TEST_F(TlsEngineTest, CacheKeepsNoFailureAndClearsOnRequest) {
  TlsContextCache cache;
  std::string path = dir_.path() + "/later.pem";
  std::string error;
  EXPECT_EQ(cache.get({.ca_file = path}, &error), nullptr);
  EXPECT_THAT(error, HasSubstr("cannot load CA file " + path));
  EXPECT_EQ(cache.size(), 0u);
  dir_.write("later.pem", ca_.cert_pem);  // fixed: the next probe works, no reload needed
  auto ctx = cache.get({.ca_file = path}, &error);
  ASSERT_NE(ctx, nullptr) << error;

  cache.clear();  // a reload
  EXPECT_EQ(cache.size(), 0u);
  auto rebuilt = cache.get({.ca_file = path}, &error);
  ASSERT_NE(rebuilt, nullptr) << error;
  EXPECT_NE(rebuilt, ctx);
  // The context a probe still holds stays usable.
  TlsServerEngine server(serverFor(good_leaf_));
  TlsEngine client(ctx, kHost);
  ASSERT_EQ(runHandshake(client, server), Status::Ok) << client.error();
  EXPECT_EQ(client.facts().verify, FailureReason::None);
}

// --- Session resumption (TlsOptions::resumption) ---------------------------------------------

class TlsResumptionTest : public TlsEngineTest {
 protected:
  // One server, as seen across connections: every engine shares the ticket keys.
  TlsServerOptions server() {
    TlsServerOptions o = serverFor(good_leaf_);
    o.ticket_keys = std::string(80, 'k');
    return o;
  }
  // A whole connection under `key`: handshake, the server's first bytes (which carry the TLS
  // 1.3 tickets), close_notify. Returns the facts.
  TlsFacts connect(const std::shared_ptr<TlsContext>& ctx, const std::string& key,
                   const TlsServerOptions& options, const std::string& host = kHost) {
    TlsServerEngine srv(options);
    TlsEngine client(ctx, host, key);
    EXPECT_EQ(runHandshake(client, srv), Status::Ok) << client.error();
    EXPECT_EQ(srv.write("* OK ready\r\n"), Status::Ok);
    client.feedCiphertext(srv.takeCiphertext());
    std::string plaintext;
    EXPECT_EQ(client.read(plaintext), Status::Ok) << client.error();
    EXPECT_EQ(plaintext, "* OK ready\r\n");
    client.shutdown();
    srv.feedCiphertext(client.takeCiphertext());
    return client.facts();
  }
};

TEST_F(TlsResumptionTest, TheNextConnectionResumesTheKeptSession) {
  auto ctx = trustingOurCa();
  TlsFacts full = connect(ctx, "imap|993|192.0.2.1", server());
  EXPECT_FALSE(full.resumed);
  EXPECT_EQ(ctx->sessionCount(), 1u);

  TlsFacts resumed = connect(ctx, "imap|993|192.0.2.1", server());
  EXPECT_TRUE(resumed.resumed);
  // The facts of the full handshake it descends from.
  EXPECT_EQ(resumed.verify, FailureReason::None) << resumed.verify_detail;
  EXPECT_EQ(resumed.leaf_not_after, full.leaf_not_after);
  EXPECT_EQ(resumed.subject, full.subject);
  EXPECT_EQ(resumed.version, full.version);

  // Another address (or endpoint) has its own session; no key, no resumption at all.
  EXPECT_FALSE(connect(ctx, "imap|993|192.0.2.2", server()).resumed);
  EXPECT_FALSE(connect(ctx, "", server()).resumed);
  EXPECT_EQ(ctx->sessionCount(), 2u);
}

TEST_F(TlsResumptionTest, AnUnverifiedSessionIsNeverKept) {
  auto ctx = trustingOurCa();
  TlsFacts wrong = connect(ctx, "k", server(), "other.example.test");
  EXPECT_EQ(wrong.verify, FailureReason::CertHostnameMismatch);
  EXPECT_EQ(ctx->sessionCount(), 0u);
  EXPECT_FALSE(connect(ctx, "k", server(), "other.example.test").resumed);
}

TEST_F(TlsResumptionTest, SessionsOlderThanTheBoundAreNotOffered) {
  auto ctx = trustingOurCa();
  connect(ctx, "k", server());
  const int64_t t = now();
  SSL_SESSION* fresh = ctx->session("k", t + kMaxResumedFactsAge.count() - 60);
  ASSERT_NE(fresh, nullptr);
  // A resumption keeps the time of the full handshake: the chain cannot go stale by resuming.
  ctx->keepSession("k", fresh, /*resumed=*/true, t + kMaxResumedFactsAge.count() - 60);
  SSL_SESSION_free(fresh);
  EXPECT_EQ(ctx->session("k", t + kMaxResumedFactsAge.count() + 1), nullptr);
  EXPECT_EQ(ctx->sessionCount(), 0u) << "the stale session is dropped";
  EXPECT_FALSE(connect(ctx, "k", server()).resumed);
}

}  // namespace
}  // namespace mailprobe
