#pragma once
// A sans-I/O TLS client: OpenSSL over two memory BIOs. The engine never touches a socket or a
// clock; whoever owns the connection moves ciphertext in (feedCiphertext, feedEof) and out
// (takeCiphertext) and calls the engine again. Every call ends in one of three outcomes: Ok,
// WantIo (feed more ciphertext, then call again) or Failed (see failureReason() and error()).
//
// Glossary:
//   rbio     memory BIO the engine reads ciphertext from (filled by feedCiphertext)
//   wbio     memory BIO OpenSSL writes ciphertext to (emptied by takeCiphertext)
//   facts    what the handshake showed (TlsFacts); captured once, when the handshake completes
//   verify   the first certificate error; it never aborts the handshake, so an invalid
//            certificate still yields the facts a client that "accepts all certificates" sees

#include <openssl/ssl.h>

#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

#include "probes/probe_spec.h"
#include "probes/types.h"

namespace mailprobe {

// A resumed handshake shows the certificate facts of the full handshake it descends from. A
// session is offered only while that full handshake is younger than this, so that the chain,
// its dates and its verification are never older than this in any result.
inline constexpr std::chrono::seconds kMaxResumedFactsAge{3600};

// Shared client SSL_CTX for one TlsOptions (CA file or system store, min/max version).
// Legacy profiles (a min or max version of TLS 1.1 or lower) get security level 0, so that a
// TLS 1.0 client can be emulated at all; everything else keeps OpenSSL's defaults.
//
// It also keeps the sessions of connections that asked for resumption, one per session key
// (TlsEngine: the endpoint and the address), so a session is only ever offered to the server it
// came from, with the trust settings it was verified with; they go with the context (a reload
// or a changed CA file starts over with full handshakes). OpenSSL's own client cache stays off.
class TlsContext {
 public:
  // nullptr and *error set (e.g. "cannot load CA file /x: ...") on failure.
  static std::shared_ptr<TlsContext> create(const TlsOptions& options, std::string* error);
  SSL_CTX* get() const { return ctx_; }
  ~TlsContext();

  TlsContext(const TlsContext&) = delete;
  TlsContext& operator=(const TlsContext&) = delete;

  // The session kept under `key` (a new reference: SSL_SESSION_free it), or null when there is
  // none, or when the full handshake it descends from is older than kMaxResumedFactsAge.
  SSL_SESSION* session(const std::string& key, int64_t now);
  // Keeps `session` (takes a reference) under `key`, resumed or not; a session that could not
  // be resumed, or that descends from a failed certificate verification, drops the key
  // instead (a certificate being fixed must show at the next probe).
  void keepSession(const std::string& key, SSL_SESSION* session, bool resumed, int64_t now);
  size_t sessionCount() const;

 private:
  struct KeptSession {
    SSL_SESSION* session = nullptr;
    int64_t full_handshake_at = 0;  // unix seconds
  };
  explicit TlsContext(SSL_CTX* ctx) : ctx_(ctx) {}
  SSL_CTX* ctx_;
  mutable std::mutex sessions_mu_;  // contexts may be shared beyond one loop (TlsContextCache)
  std::map<std::string, KeptSession> sessions_;
};

// One TLS client connection over memory BIOs. No sockets: the caller moves ciphertext.
// Call takeCiphertext() after every other call and send what it returns, even after Failed
// (it may hold an alert). Not copyable or movable: OpenSSL keeps a pointer to the engine.
class TlsEngine {
 public:
  enum class Status { Ok, WantIo, Failed };

  // SNI and SSL_set1_host from the configured name (one trailing dot dropped). An IP literal
  // gets no SNI (RFC 6066) and is verified against the certificate's IP addresses instead.
  // With a `session_key`, the session the context keeps under it is offered, and the one this
  // connection ends with is kept there for the next (TlsOptions::resumption).
  TlsEngine(std::shared_ptr<TlsContext> ctx, const std::string& server_name,
            std::string session_key = {});
  ~TlsEngine();
  TlsEngine(const TlsEngine&) = delete;
  TlsEngine& operator=(const TlsEngine&) = delete;

  void feedCiphertext(std::string_view bytes);  // from the network
  // The peer closed TCP: once the fed bytes are used up, OpenSSL sees EOF instead of "retry".
  void feedEof();
  std::string takeCiphertext();  // to the network: drains the write BIO

  // Ok once complete (and on every later call); WantIo: feed more; Failed: see failureReason().
  // After Ok, call read(): the bytes that completed the handshake may carry plaintext too.
  Status handshake();
  bool handshakeDone() const { return facts_.has_value(); }

  // Appends all available plaintext; Ok even if nothing new. A close_notify, or an EOF without
  // one, is Ok with peerClosed() true: IMAP and SMTP notice truncation themselves, and servers
  // often close after LOGOUT/QUIT without close_notify. Failed on a TLS error (an alert, a bad
  // record) or when called before the handshake completed.
  Status read(std::string& out);
  // All or nothing. WantIo only while the peer renegotiates: feed more, then write the same
  // bytes again.
  Status write(std::string_view plaintext);
  bool peerClosed() const { return state_ == State::PeerClosed; }
  // Queues close_notify (then takeCiphertext); a no-op before the handshake or after a failure.
  void shutdown();

  // Valid after the handshake; a default TlsFacts before.
  TlsFacts facts() const { return facts_.value_or(TlsFacts{}); }
  // None, or TlsHandshakeFailed, TlsVersionUnsupported, ConnectionClosed.
  FailureReason failureReason() const { return failure_; }
  const std::string& error() const { return error_; }  // OpenSSL error queue as text, for logs

 private:
  enum class State { Handshaking, Open, PeerClosed, Failed };

  static int verifyCallback(int preverify_ok, X509_STORE_CTX* store);
  Status fail(FailureReason reason, std::string detail);
  void failSetup(const std::string& what);
  void drainWriteBio();
  void keepSession();
  TlsFacts collectFacts() const;

  std::shared_ptr<TlsContext> ctx_;
  std::string session_key_;  // "" unless resuming
  SSL* ssl_ = nullptr;       // owns rbio_ and wbio_
  BIO* rbio_ = nullptr;      // not owned
  BIO* wbio_ = nullptr;      // not owned
  State state_ = State::Handshaking;
  std::string outgoing_;           // ciphertext drained from wbio_, not yet taken
  int first_verify_error_ = 0;     // X509_V_OK until the verify callback sees an error
  std::optional<TlsFacts> facts_;  // set exactly when the handshake completes
  FailureReason failure_ = FailureReason::None;
  std::string error_;
};

// Maps an X509_V_ERR_* code to the certificate reason (None for X509_V_OK).
FailureReason certificateReason(long verify_error);

// Empties this thread's OpenSSL error queue into one line ("error:...; error:..."); "" if empty.
std::string takeOpenSslErrors();

}  // namespace mailprobe
