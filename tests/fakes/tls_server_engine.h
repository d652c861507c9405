#pragma once
// The other end of TlsEngine in tests: an OpenSSL server over memory BIOs, so a test pumps
// ciphertext between client and server by hand, with no socket and no clock.

#include <openssl/ssl.h>

#include <string>
#include <string_view>

#include "probes/tls_engine.h"

namespace mailprobe::testing {

struct TlsServerOptions {
  std::string key_pem;
  std::string cert_pem;
  std::string chain_pem;  // certificates sent after the leaf (intermediates), PEM, may be empty
  int min_version = 0;    // 0: OpenSSL's default
  int max_version = 0;
  int security_level = -1;  // -1: OpenSSL's default; 0 lets TLS 1.0 through
  // Session ticket keys (80 bytes): servers given the same keys resume each other's sessions,
  // as one server would across connections. Empty: fresh random keys.
  std::string ticket_keys;
};

class TlsServerEngine {
 public:
  using Status = TlsEngine::Status;

  // Throws std::runtime_error when the key, certificate or versions are unusable.
  explicit TlsServerEngine(const TlsServerOptions& options);
  ~TlsServerEngine();
  TlsServerEngine(const TlsServerEngine&) = delete;
  TlsServerEngine& operator=(const TlsServerEngine&) = delete;

  void feedCiphertext(std::string_view bytes);
  std::string takeCiphertext();

  Status handshake();             // Ok once complete; WantIo; Failed
  Status read(std::string& out);  // appends what is available
  Status write(std::string_view plaintext);
  // TLS 1.2 and older: asks the client to renegotiate (a HelloRequest: takeCiphertext next);
  // the new handshake then runs inside later read() calls. False if it cannot be asked.
  bool renegotiate();
  bool renegotiationPending() const;                // asked and not yet completed
  void shutdown();                                  // queues close_notify
  bool peerClosed() const { return peer_closed_; }  // close_notify seen

  std::string version() const;     // "TLSv1.3" after the handshake
  std::string serverName() const;  // the SNI the client sent, "" for none
  const std::string& error() const { return error_; }

 private:
  Status result(int rc);

  SSL_CTX* ctx_ = nullptr;
  SSL* ssl_ = nullptr;
  BIO* rbio_ = nullptr;  // owned by ssl_
  BIO* wbio_ = nullptr;  // owned by ssl_
  bool peer_closed_ = false;
  std::string error_;
};

}  // namespace mailprobe::testing
