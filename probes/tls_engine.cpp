#include "probes/tls_engine.h"

#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <array>
#include <climits>
#include <ctime>
#include <initializer_list>
#include <utility>
#include <vector>

namespace mailprobe {
namespace {

// The error queue as text plus the packed codes, so a failure can be both logged and classified.
struct OpenSslErrors {
  std::string text;
  std::vector<unsigned long> codes;
};

OpenSslErrors takeErrors() {
  OpenSslErrors out;
  const char* data = nullptr;
  int flags = 0;
  while (unsigned long code = ERR_get_error_all(nullptr, nullptr, nullptr, &data, &flags)) {
    std::array<char, 256> buf{};
    ERR_error_string_n(code, buf.data(), buf.size());
    if (!out.text.empty()) {
      out.text += "; ";
    }
    out.text += buf.data();
    if ((flags & ERR_TXT_STRING) != 0 && data != nullptr && *data != '\0') {
      out.text += " (";
      out.text += data;
      out.text += ")";
    }
    out.codes.push_back(code);
  }
  return out;
}

// "what: <error queue>", or just "what" when OpenSSL said nothing.
std::string withErrors(const std::string& what) {
  std::string queue = takeErrors().text;
  return queue.empty() ? what : what + ": " + queue;
}

#ifdef SSL_R_LEGACY_SIGALG_DISALLOWED_OR_UNSUPPORTED
// Raised only when the negotiated version is below TLS 1.2 (ssl/statem, "!SSL_USE_SIGALGS").
constexpr int kLegacySigalgRefused = SSL_R_LEGACY_SIGALG_DISALLOWED_OR_UNSUPPORTED;
#else
constexpr int kLegacySigalgRefused = 333;  // added to the headers in 3.0.8
#endif

bool hasSslReason(const std::vector<unsigned long>& codes, std::initializer_list<int> reasons) {
  return std::any_of(codes.begin(), codes.end(), [&](unsigned long code) {
    return ERR_GET_LIB(code) == ERR_LIB_SSL &&
           std::find(reasons.begin(), reasons.end(), ERR_GET_REASON(code)) != reasons.end();
  });
}

// OpenSSL 3 reports a peer EOF without close_notify as SSL_ERROR_SSL with this reason; 1.1.1
// used SSL_ERROR_SYSCALL with an empty queue.
bool isUnexpectedEof(int ssl_error, const std::vector<unsigned long>& codes) {
  return hasSslReason(codes, {SSL_R_UNEXPECTED_EOF_WHILE_READING}) ||
         (ssl_error == SSL_ERROR_SYSCALL && codes.empty());
}

// What a failed handshake means for the probe. Observed with OpenSSL 3.0.x (see the tests):
//   the server refuses our versions           -> "tlsv1 alert protocol version"
//   we refuse the version the server chose    -> "unsupported protocol"
//   the server chose TLS 1.0/1.1 and this profile's security level refuses their MD5/SHA-1
//   signatures (a default client meeting a TLS 1.0-only server)
//                                             -> "legacy sigalg disallowed or unsupported"
//   our own settings leave no version         -> "no protocols available"
//   the peer closed TCP                       -> "unexpected eof while reading"
// "wrong version number" is deliberately not a version problem: it is what a peer that does
// not speak TLS at all (a plaintext banner on a TLS port) produces.
FailureReason classifyHandshakeFailure(int ssl_error, const std::vector<unsigned long>& codes) {
  if (ssl_error == SSL_ERROR_ZERO_RETURN || isUnexpectedEof(ssl_error, codes)) {
    return FailureReason::ConnectionClosed;
  }
  // The first four are the observed ones; the others name version trouble too.
  if (hasSslReason(
          codes,
          {SSL_R_TLSV1_ALERT_PROTOCOL_VERSION, SSL_R_UNSUPPORTED_PROTOCOL, kLegacySigalgRefused,
           SSL_R_NO_PROTOCOLS_AVAILABLE, SSL_R_VERSION_TOO_LOW, SSL_R_VERSION_TOO_HIGH,
           SSL_R_UNSUPPORTED_SSL_VERSION, SSL_R_WRONG_SSL_VERSION, SSL_R_INAPPROPRIATE_FALLBACK})) {
    return FailureReason::TlsVersionUnsupported;
  }
  return FailureReason::TlsHandshakeFailed;
}

std::string describe(int ssl_error, const OpenSslErrors& errors) {
  if (!errors.text.empty()) {
    return errors.text;
  }
  return ssl_error == SSL_ERROR_SYSCALL ? "EOF without close_notify"
                                        : "SSL_get_error " + std::to_string(ssl_error);
}

bool isIpLiteral(const std::string& name) {
  std::array<unsigned char, 16> addr{};
  return inet_pton(AF_INET, name.c_str(), addr.data()) == 1 ||
         inet_pton(AF_INET6, name.c_str(), addr.data()) == 1;
}

int64_t toUnixSeconds(const ASN1_TIME* t) {
  std::tm tm{};
  if (t == nullptr || ASN1_TIME_to_tm(t, &tm) != 1) {
    return 0;
  }
  return static_cast<int64_t>(timegm(&tm));
}

std::string oneLine(const X509_NAME* name) {
  BIO* bio = BIO_new(BIO_s_mem());
  if (bio == nullptr) {
    return {};
  }
  // UTF-8 as is, control characters escaped: the text comes from the peer.
  X509_NAME_print_ex(bio, name, 0,
                     (XN_FLAG_ONELINE & ~ASN1_STRFLGS_ESC_MSB) | ASN1_STRFLGS_UTF8_CONVERT);
  char* data = nullptr;
  long len = BIO_get_mem_data(bio, &data);
  std::string out(data != nullptr && len > 0 ? std::string(data, static_cast<size_t>(len)) : "");
  BIO_free(bio);
  return out;
}

}  // namespace

FailureReason certificateReason(long verify_error) {
  switch (verify_error) {
    case X509_V_OK:
      return FailureReason::None;
    case X509_V_ERR_CERT_HAS_EXPIRED:
      return FailureReason::CertExpired;
    case X509_V_ERR_CERT_NOT_YET_VALID:
      return FailureReason::CertNotYetValid;
    case X509_V_ERR_HOSTNAME_MISMATCH:
    case X509_V_ERR_IP_ADDRESS_MISMATCH:
      return FailureReason::CertHostnameMismatch;
    case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
    case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
      return FailureReason::CertSelfSigned;
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
    case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
    case X509_V_ERR_CERT_UNTRUSTED:
      return FailureReason::CertUntrusted;
    default:
      return FailureReason::CertInvalid;
  }
}

std::string takeOpenSslErrors() {
  return takeErrors().text;
}

// --- TlsContext -------------------------------------------------------------------------------

std::shared_ptr<TlsContext> TlsContext::create(const TlsOptions& options, std::string* error) {
  auto failWith = [&](const std::string& what) -> std::shared_ptr<TlsContext> {
    if (error != nullptr) {
      *error = withErrors(what);
    }
    return nullptr;
  };
  ERR_clear_error();
  SSL_CTX* raw = SSL_CTX_new(TLS_client_method());
  if (raw == nullptr) {
    return failWith("cannot create a TLS client context");
  }
  // Owned from here on, so every early return frees it.
  std::shared_ptr<TlsContext> ctx(new TlsContext(raw));

  if (options.min_version != 0 && SSL_CTX_set_min_proto_version(raw, options.min_version) != 1) {
    return failWith("invalid minimum TLS version " + std::to_string(options.min_version));
  }
  if (options.max_version != 0 && SSL_CTX_set_max_proto_version(raw, options.max_version) != 1) {
    return failWith("invalid maximum TLS version " + std::to_string(options.max_version));
  }
  // OpenSSL 3 refuses TLS 1.0/1.1 (SHA-1 signatures) above level 0; a profile that asks for
  // them means to emulate an old client, so it gets what that client would offer.
  auto legacy = [](int v) { return v != 0 && v <= TLS1_1_VERSION; };
  if (legacy(options.min_version) || legacy(options.max_version)) {
    SSL_CTX_set_security_level(raw, 0);
  }

  if (!options.ca_file.empty()) {
    if (SSL_CTX_load_verify_file(raw, options.ca_file.c_str()) != 1) {
      return failWith("cannot load CA file " + options.ca_file);
    }
  } else if (SSL_CTX_set_default_verify_paths(raw) != 1) {
    return failWith("cannot load the system CA store");
  }
  // Verification failures are recorded by the engine's callback, never fatal (see TlsEngine).
  SSL_CTX_set_verify(raw, SSL_VERIFY_PEER, nullptr);
  // A probe waits on its server most of its life: its record buffers (~34 KiB) are given back
  // between records instead of held. At 32 probes in flight, 1.1 MiB less resident for 0.4 %
  // more instructions (bench/RESULTS.md).
  SSL_CTX_set_mode(raw, SSL_MODE_RELEASE_BUFFERS);
  return ctx;
}

TlsContext::~TlsContext() {
  for (auto& [key, kept] : sessions_) {
    SSL_SESSION_free(kept.session);
  }
  SSL_CTX_free(ctx_);
}

SSL_SESSION* TlsContext::session(const std::string& key, int64_t now) {
  std::lock_guard<std::mutex> lock(sessions_mu_);
  auto it = sessions_.find(key);
  if (it == sessions_.end()) {
    return nullptr;
  }
  if (now - it->second.full_handshake_at >= kMaxResumedFactsAge.count()) {
    SSL_SESSION_free(it->second.session);
    sessions_.erase(it);
    return nullptr;
  }
  SSL_SESSION_up_ref(it->second.session);
  return it->second.session;
}

void TlsContext::keepSession(const std::string& key, SSL_SESSION* session, bool resumed,
                             int64_t now) {
  std::lock_guard<std::mutex> lock(sessions_mu_);
  auto it = sessions_.find(key);
  int64_t full_at = now;
  if (it != sessions_.end()) {
    if (resumed) {
      full_at = it->second.full_handshake_at;  // the facts are as old as that handshake
    }
    SSL_SESSION_free(it->second.session);
    sessions_.erase(it);
  }
  if (session == nullptr || SSL_SESSION_is_resumable(session) != 1) {
    return;
  }
  SSL_SESSION_up_ref(session);
  sessions_[key] = KeptSession{session, full_at};
}

size_t TlsContext::sessionCount() const {
  std::lock_guard<std::mutex> lock(sessions_mu_);
  return sessions_.size();
}

// --- TlsEngine --------------------------------------------------------------------------------

TlsEngine::TlsEngine(std::shared_ptr<TlsContext> ctx, const std::string& server_name,
                     std::string session_key)
    : ctx_(std::move(ctx)), session_key_(std::move(session_key)) {
  ERR_clear_error();
  if (ctx_ == nullptr || (ssl_ = SSL_new(ctx_->get())) == nullptr) {
    failSetup("cannot create a TLS connection");
    return;
  }
  rbio_ = BIO_new(BIO_s_mem());
  wbio_ = BIO_new(BIO_s_mem());
  if (rbio_ == nullptr || wbio_ == nullptr) {
    BIO_free(rbio_);
    BIO_free(wbio_);
    rbio_ = wbio_ = nullptr;
    failSetup("cannot create memory BIOs");
    return;
  }
  BIO_set_mem_eof_return(rbio_, -1);  // empty means "retry", until feedEof()
  SSL_set_bio(ssl_, rbio_, wbio_);    // the SSL owns both BIOs from here on
  SSL_set_connect_state(ssl_);
  SSL_set_app_data(ssl_, this);
  SSL_set_verify(ssl_, SSL_VERIFY_PEER, &TlsEngine::verifyCallback);
  if (!session_key_.empty()) {
    if (SSL_SESSION* kept = ctx_->session(session_key_, static_cast<int64_t>(::time(nullptr)))) {
      SSL_set_session(ssl_, kept);  // OpenSSL offers it only if it still fits these settings
      SSL_SESSION_free(kept);
    }
  }

  std::string name = server_name;
  if (name.size() > 1 && name.back() == '.') {
    name.pop_back();
  }
  if (isIpLiteral(name)) {
    if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl_), name.c_str()) != 1) {
      failSetup("cannot verify against IP address " + name);
    }
    return;
  }
  SSL_set_hostflags(ssl_, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
  if (SSL_set_tlsext_host_name(ssl_, name.c_str()) != 1 || SSL_set1_host(ssl_, name.c_str()) != 1) {
    failSetup("cannot use server name '" + name + "'");
  }
}

TlsEngine::~TlsEngine() {
  if (!session_key_.empty() && ssl_ != nullptr) {
    keepSession();
  }
  SSL_free(ssl_);
}

void TlsEngine::keepSession() {
  // At the end of the connection, so that TLS 1.3 tickets (sent after the handshake) are in.
  // Only a verified session is kept: a certificate being fixed must show at the next probe. A
  // connection that ends without close_notify leaves a session OpenSSL will not resume.
  SSL_SESSION* session = nullptr;
  if (state_ != State::Failed && facts_ && facts_->verify == FailureReason::None) {
    session = SSL_get1_session(ssl_);
  }
  ctx_->keepSession(session_key_, session, facts_ && facts_->resumed,
                    static_cast<int64_t>(::time(nullptr)));
  SSL_SESSION_free(session);
}

void TlsEngine::failSetup(const std::string& what) {
  fail(FailureReason::TlsHandshakeFailed, withErrors(what));
}

int TlsEngine::verifyCallback(int preverify_ok, X509_STORE_CTX* store) {
  if (preverify_ok == 0) {
    auto* ssl =
        static_cast<SSL*>(X509_STORE_CTX_get_ex_data(store, SSL_get_ex_data_X509_STORE_CTX_idx()));
    auto* self = ssl != nullptr ? static_cast<TlsEngine*>(SSL_get_app_data(ssl)) : nullptr;
    if (self != nullptr && self->first_verify_error_ == X509_V_OK) {
      self->first_verify_error_ = X509_STORE_CTX_get_error(store);
    }
  }
  return 1;  // go on: the probe reports the certificate, a client that accepts all continues
}

void TlsEngine::feedCiphertext(std::string_view bytes) {
  while (rbio_ != nullptr && !bytes.empty()) {
    int chunk = static_cast<int>(std::min<size_t>(bytes.size(), INT_MAX));
    int n = BIO_write(rbio_, bytes.data(), chunk);
    if (n <= 0) {
      break;  // out of memory: the handshake or read then fails on missing bytes
    }
    bytes.remove_prefix(static_cast<size_t>(n));
  }
}

void TlsEngine::feedEof() {
  if (rbio_ != nullptr) {
    BIO_set_mem_eof_return(rbio_, 0);
  }
}

void TlsEngine::drainWriteBio() {
  if (wbio_ == nullptr) {
    return;
  }
  std::array<char, 16384> buf;
  while (BIO_ctrl_pending(wbio_) > 0) {
    int n = BIO_read(wbio_, buf.data(), static_cast<int>(buf.size()));
    if (n <= 0) {
      break;
    }
    outgoing_.append(buf.data(), static_cast<size_t>(n));
  }
}

std::string TlsEngine::takeCiphertext() {
  drainWriteBio();
  return std::exchange(outgoing_, std::string());
}

TlsEngine::Status TlsEngine::fail(FailureReason reason, std::string detail) {
  failure_ = reason;
  error_ = std::move(detail);
  state_ = State::Failed;
  return Status::Failed;
}

TlsEngine::Status TlsEngine::handshake() {
  if (state_ == State::Failed) {
    return Status::Failed;
  }
  if (handshakeDone()) {
    return Status::Ok;
  }
  ERR_clear_error();
  int rc = SSL_do_handshake(ssl_);
  int err = rc == 1 ? SSL_ERROR_NONE : SSL_get_error(ssl_, rc);
  drainWriteBio();
  switch (err) {
    case SSL_ERROR_NONE:
      facts_ = collectFacts();
      state_ = State::Open;
      return Status::Ok;
    case SSL_ERROR_WANT_READ:
    case SSL_ERROR_WANT_WRITE:
      return Status::WantIo;
    default: {
      OpenSslErrors errors = takeErrors();
      return fail(classifyHandshakeFailure(err, errors.codes), describe(err, errors));
    }
  }
}

TlsEngine::Status TlsEngine::read(std::string& out) {
  if (state_ == State::Failed) {
    return Status::Failed;
  }
  if (!handshakeDone()) {
    error_ = "read before the TLS handshake completed";
    return Status::Failed;
  }
  std::array<char, 16384> buf;
  while (state_ == State::Open) {
    ERR_clear_error();
    size_t n = 0;
    int rc = SSL_read_ex(ssl_, buf.data(), buf.size(), &n);
    int err = rc == 1 ? SSL_ERROR_NONE : SSL_get_error(ssl_, rc);
    OpenSslErrors errors = takeErrors();
    drainWriteBio();
    switch (err) {
      case SSL_ERROR_NONE:
        out.append(buf.data(), n);
        continue;
      case SSL_ERROR_WANT_READ:
      case SSL_ERROR_WANT_WRITE:
        return Status::Ok;
      case SSL_ERROR_ZERO_RETURN:
        state_ = State::PeerClosed;
        return Status::Ok;
      default:
        if (isUnexpectedEof(err, errors.codes)) {
          state_ = State::PeerClosed;
          error_ = describe(err, errors);
          return Status::Ok;
        }
        // An alert or a bad record after the handshake: still TLS refusing the conversation.
        return fail(FailureReason::TlsHandshakeFailed, describe(err, errors));
    }
  }
  return Status::Ok;
}

TlsEngine::Status TlsEngine::write(std::string_view plaintext) {
  if (state_ == State::Failed) {
    return Status::Failed;
  }
  if (!handshakeDone()) {
    error_ = "write before the TLS handshake completed";
    return Status::Failed;
  }
  if (plaintext.empty()) {
    return Status::Ok;
  }
  ERR_clear_error();
  size_t written = 0;
  int rc = SSL_write_ex(ssl_, plaintext.data(), plaintext.size(), &written);
  int err = rc == 1 ? SSL_ERROR_NONE : SSL_get_error(ssl_, rc);
  drainWriteBio();
  switch (err) {
    case SSL_ERROR_NONE:
      return Status::Ok;
    case SSL_ERROR_WANT_READ:
    case SSL_ERROR_WANT_WRITE:
      return Status::WantIo;
    default:
      return fail(FailureReason::TlsHandshakeFailed, describe(err, takeErrors()));
  }
}

void TlsEngine::shutdown() {
  if (!handshakeDone() || state_ == State::Failed ||
      (SSL_get_shutdown(ssl_) & SSL_SENT_SHUTDOWN) != 0) {
    return;
  }
  ERR_clear_error();
  SSL_shutdown(ssl_);  // 0: sent, the peer's close_notify not yet seen; that is all we want
  drainWriteBio();
  ERR_clear_error();
}

TlsFacts TlsEngine::collectFacts() const {
  TlsFacts f;
  f.resumed = SSL_session_reused(ssl_) == 1;
  f.version = SSL_get_version(ssl_);
  const char* cipher = SSL_get_cipher_name(ssl_);
  f.cipher = cipher != nullptr ? cipher : "";
  f.accept_all_ok = true;

  X509* leaf = SSL_get0_peer_certificate(ssl_);
  if (leaf == nullptr) {
    f.verify = FailureReason::CertInvalid;
    f.verify_detail = "no peer certificate";
    return f;
  }
  long code = first_verify_error_ != X509_V_OK ? first_verify_error_ : SSL_get_verify_result(ssl_);
  f.verify = certificateReason(code);
  f.verify_detail = X509_verify_cert_error_string(code);
  f.leaf_not_before = toUnixSeconds(X509_get0_notBefore(leaf));
  f.leaf_not_after = toUnixSeconds(X509_get0_notAfter(leaf));
  // On a client the presented chain includes the leaf; an unreadable date (0) is skipped.
  f.chain_not_after = f.leaf_not_after;
  STACK_OF(X509)* chain = SSL_get_peer_cert_chain(ssl_);
  for (int i = 0; chain != nullptr && i < sk_X509_num(chain); ++i) {
    int64_t not_after = toUnixSeconds(X509_get0_notAfter(sk_X509_value(chain, i)));
    if (not_after != 0 && (f.chain_not_after == 0 || not_after < f.chain_not_after)) {
      f.chain_not_after = not_after;
    }
  }
  f.subject = oneLine(X509_get_subject_name(leaf));
  f.issuer = oneLine(X509_get_issuer_name(leaf));
  return f;
}

}  // namespace mailprobe
