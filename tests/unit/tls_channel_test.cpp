// (c) TlsChannel against an OpenSSL server engine, memory to memory: the channel's `send` goes
// into a string the test hands to the server, the server's ciphertext comes back through
// receive(). No sockets, no sleeps.
#include "probes/tls_channel.h"

#include <gtest/gtest.h>
#include <openssl/ssl.h>

#include <utility>

#include "tests/fakes/test_certs.h"
#include "tests/fakes/tls_server_engine.h"

namespace mailprobe {
namespace {

using testing::KeyCert;
using testing::makeSelfSigned;
using testing::makeSigned;
using testing::TempDir;
using testing::TlsServerEngine;
using testing::TlsServerOptions;
using Progress = TlsChannel::Progress;
using Status = TlsEngine::Status;

constexpr char kHost[] = "mail.example.test";

class TlsChannelTest : public ::testing::Test {
 protected:
  std::shared_ptr<TlsContext> trustingOurCa() {
    std::string error;
    auto ctx = TlsContext::create({.ca_file = ca_file_}, &error);
    EXPECT_NE(ctx, nullptr) << error;
    return ctx;
  }
  TlsServerOptions serverOptions(int max_version = 0) {
    return {.key_pem = leaf_.key_pem, .cert_pem = leaf_.cert_pem, .max_version = max_version};
  }

  // What the channel sent since the last call, to the server.
  void toServer(TlsServerEngine& server) { server.feedCiphertext(std::exchange(sent_, {})); }

  // Runs the handshake to its end; the number of times receive() said Established.
  int handshake(TlsServerEngine& server) {
    EXPECT_EQ(channel_.start(), Status::WantIo) << channel_.engine().error();
    EXPECT_FALSE(sent_.empty()) << "no ClientHello";
    int established = 0;
    for (int round = 0; round < 10 && !channel_.handshakeDone(); ++round) {
      toServer(server);
      server.handshake();
      Progress p = channel_.receive(server.takeCiphertext());
      EXPECT_NE(p, Progress::Failed) << channel_.engine().error();
      established += p == Progress::Established ? 1 : 0;
    }
    toServer(server);
    EXPECT_EQ(server.handshake(), Status::Ok) << server.error();
    return established;
  }

  TempDir dir_;
  KeyCert ca_ = makeSelfSigned({.is_ca = true, .common_name = "mailprobed test root"});
  std::string ca_file_ = dir_.write("ca.pem", ca_.cert_pem);
  KeyCert leaf_ = makeSigned({.dns_names = {kHost}}, ca_);
  std::string sent_;  // ciphertext the channel handed to its owner
  int sends_ = 0;
  TlsChannel channel_{trustingOurCa(), kHost, "", [this](std::string bytes) {
                        sent_ += bytes;
                        ++sends_;
                        return true;
                      }};
};

TEST_F(TlsChannelTest, HandshakeIsEstablishedOnceThenOpen) {
  TlsServerEngine server(serverOptions());
  EXPECT_EQ(handshake(server), 1);
  ASSERT_TRUE(channel_.handshakeDone());
  EXPECT_EQ(channel_.engine().facts().verify, FailureReason::None);

  ASSERT_EQ(server.write("* OK ready\r\n"), Status::Ok);
  EXPECT_EQ(channel_.receive(server.takeCiphertext()), Progress::Open);
}

TEST_F(TlsChannelTest, DataBothWays) {
  TlsServerEngine server(serverOptions());
  ASSERT_EQ(handshake(server), 1);

  ASSERT_EQ(server.write("* OK ready\r\n"), Status::Ok);
  ASSERT_EQ(channel_.receive(server.takeCiphertext()), Progress::Open);
  std::string got;
  ASSERT_EQ(channel_.read(got), Status::Ok) << channel_.engine().error();
  EXPECT_EQ(got, "* OK ready\r\n");

  int sends_before = sends_;
  ASSERT_EQ(channel_.write("a1 NOOP\r\n"), Status::Ok);
  EXPECT_EQ(sends_, sends_before + 1) << "the ciphertext goes out within write()";
  toServer(server);
  std::string at_server;
  ASSERT_EQ(server.read(at_server), Status::Ok) << server.error();
  EXPECT_EQ(at_server, "a1 NOOP\r\n");

  // The server's close_notify shows as peerClosed after the plaintext before it.
  ASSERT_EQ(server.write("* BYE\r\n"), Status::Ok);
  server.shutdown();
  ASSERT_EQ(channel_.receive(server.takeCiphertext()), Progress::Open);
  got.clear();
  ASSERT_EQ(channel_.read(got), Status::Ok);
  EXPECT_EQ(got, "* BYE\r\n");
  EXPECT_TRUE(channel_.engine().peerClosed());
}

TEST_F(TlsChannelTest, WritesAreHeldInOrderWhileTheServerRenegotiates) {
  TlsServerEngine server(serverOptions(TLS1_2_VERSION));  // TLS 1.3 has no renegotiation
  ASSERT_EQ(handshake(server), 1);
  ASSERT_TRUE(server.renegotiate()) << server.error();
  ASSERT_EQ(channel_.receive(server.takeCiphertext()), Progress::Open);
  std::string got;
  ASSERT_EQ(channel_.read(got), Status::Ok) << channel_.engine().error();  // the HelloRequest

  // The client now waits for the server's flight: nothing can be written.
  EXPECT_EQ(channel_.write("a1 NOOP\r\n"), Status::WantIo);
  EXPECT_EQ(channel_.write("a2 NOOP\r\n"), Status::WantIo) << "held behind the first";

  std::string at_server;
  Status held = Status::WantIo;
  for (int round = 0; round < 10 && at_server.size() < 18; ++round) {
    toServer(server);
    ASSERT_NE(server.read(at_server), Status::Failed) << server.error();
    ASSERT_EQ(channel_.receive(server.takeCiphertext()), Progress::Open);
    ASSERT_EQ(channel_.read(got), Status::Ok) << channel_.engine().error();
    held = channel_.writeHeld();
    ASSERT_NE(held, Status::Failed) << channel_.engine().error();
  }
  EXPECT_EQ(held, Status::Ok);
  EXPECT_EQ(at_server, "a1 NOOP\r\na2 NOOP\r\n");
  EXPECT_FALSE(server.renegotiationPending());
  EXPECT_EQ(got, "");
}

TEST_F(TlsChannelTest, PlaintextInsteadOfAServerHelloFailsTheHandshake) {
  ASSERT_EQ(channel_.start(), Status::WantIo);
  EXPECT_EQ(channel_.receive("220 mail.example.test ESMTP\r\n"), Progress::Failed);
  EXPECT_EQ(channel_.engine().failureReason(), FailureReason::TlsHandshakeFailed);
  EXPECT_FALSE(channel_.handshakeDone());
}

TEST_F(TlsChannelTest, EofInTheHandshakeIsReported) {
  ASSERT_EQ(channel_.start(), Status::WantIo);
  EXPECT_EQ(channel_.receiveEof(), Progress::Failed);
  EXPECT_EQ(channel_.engine().failureReason(), FailureReason::ConnectionClosed);
}

}  // namespace
}  // namespace mailprobe
