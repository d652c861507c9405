#pragma once
// A scripted hostile server (STYLE habit 13f): it plays, on every connection it accepts, one
// misbehaviour that no real server shows on demand, so that a test can run the real probe engine
// against it and assert the reason, the phase, the deadline and the memory.
//
// It listens on 127.0.0.1 (or another loopback address), on a port the kernel picks, and runs its own poll(2) loop on its own
// thread. Protocol-aware faults play just enough SMTP or IMAP to reach their step (greeting,
// EHLO/CAPABILITY with STARTTLS, the STARTTLS reply); the TLS faults answer the ClientHello on
// an implicit TLS port, or after STARTTLS with `via_starttls`.
//
// Lifetime: the constructor binds and starts the thread (or throws std::runtime_error); the
// destructor stops the loop, joins the thread and closes every socket, so a test that fails
// halfway still leaves no thread or descriptor behind.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "tests/fakes/tls_server_engine.h"

namespace mailprobe::testing {

enum class FaultProtocol { Smtp, Imap };

enum class Fault {
  Silent,                   // accept, never speak
  SlowGreeting,             // a valid greeting at one byte per `slow_interval`
  HugeLine,                 // a 1 MiB line in place of the greeting
  Garbage,                  // binary bytes (NUL, 8-bit, LF) in place of the greeting
  CloseMidReply,            // greeting, then half of the EHLO/CAPABILITY reply, then FIN
  ResetOnAccept,            // RST (SO_LINGER 0) as soon as accepted
  ResetMidConversation,     // greeting, read EHLO/CAPABILITY, then RST
  TlsAlert,                 // answer the ClientHello with a fatal handshake_failure alert
  TlsAlertProtocolVersion,  // ... with a fatal protocol_version alert
  TlsVersionRefused,        // a real OpenSSL server that speaks TLS 1.3 only
  TlsGarbage,               // a handshake record header, then garbage, after the ClientHello
  TlsStall,                 // read the ClientHello, never answer
  InjectSameWrite,          // STARTTLS accepted with plaintext in the same write
  InjectLaterWrite,         // STARTTLS accepted, plaintext once the ClientHello has arrived
  EndlessReply,             // SMTP "250-" lines forever / IMAP untagged lines forever
  EndlessReplyOverTls,      // the same inside a completed TLS session
  // Not a failure: a whole conversation on an implicit TLS port (TLS 1.2 only), with a
  // renegotiation asked for right behind the greeting, in the same write. The client's next
  // command has to wait for the new handshake, not vanish.
  RenegotiateOverTls,
  // Over TLS (implicit, or after STARTTLS), a server that offers AUTH PLAIN, LOGIN and CRAM-MD5
  // (IMAP: also the LOGIN command), plays each mechanism's challenges, then refuses the login
  // (a temporary failure) quoting back every line the client sent for it, credentials
  // included: the client must not put them in its details.
  EchoLogin,
};

std::string_view toString(Fault fault);
std::string_view toString(FaultProtocol protocol);

struct FaultOptions {
  FaultProtocol protocol = FaultProtocol::Smtp;
  Fault fault = Fault::Silent;
  // The TLS faults (TlsAlert… TlsStall, EndlessReplyOverTls) after greeting, capabilities with
  // STARTTLS and a positive STARTTLS reply, rather than on an implicit TLS port.
  bool via_starttls = false;
  // Key and certificate for the faults that run a real handshake (TlsVersionRefused,
  // EndlessReplyOverTls); empty: a self-signed one for "localhost" and 127.0.0.1.
  TlsServerOptions tls;
  std::chrono::milliseconds slow_interval{1000};  // SlowGreeting
  // Where to listen: an IPv4 loopback address (a host of its own in a daemon's config).
  std::string address = "127.0.0.1";
};

class FaultServer {
 public:
  explicit FaultServer(FaultOptions options);
  ~FaultServer();
  FaultServer(const FaultServer&) = delete;
  FaultServer& operator=(const FaultServer&) = delete;

  uint16_t port() const { return port_; }
  // Connections accepted so far: proof that a probe reached the server at all.
  size_t connections() const { return connections_.load(); }
  // Connections still open on the server's side (it closes its end once the client has):
  // counted from the accept to the close(2) itself, so 0 means none of its sockets is open.
  size_t openConnections() const { return open_.load(); }
  // Bytes written to clients so far, all connections together.
  uint64_t bytesSent() const { return bytes_sent_.load(); }
  // Renegotiations asked for (RenegotiateOverTls) that the client went through to the end.
  size_t renegotiations() const { return renegotiations_.load(); }

  struct Step;  // one line of a script (fault_server.cpp)
  struct Peer;  // one accepted connection

 private:
  void run();
  void accept();
  void advance(Peer& peer);
  void onReadable(Peer& peer);
  void onWritable(Peer& peer);
  void queue(Peer& peer, std::string_view bytes);

  FaultOptions options_;
  std::vector<Step> script_;
  int listen_fd_ = -1;
  int wake_fds_[2] = {-1, -1};  // a self-pipe: the destructor wakes the loop
  uint16_t port_ = 0;
  std::vector<std::unique_ptr<Peer>> peers_;
  std::atomic<bool> stop_{false};
  std::atomic<size_t> connections_{0};
  std::atomic<size_t> open_{0};
  std::atomic<uint64_t> bytes_sent_{0};
  std::atomic<size_t> renegotiations_{0};
  std::thread thread_;
};

}  // namespace mailprobe::testing
