#include "tests/fakes/tls_server_engine.h"

#include <openssl/err.h>
#include <openssl/pem.h>

#include <array>
#include <memory>
#include <stdexcept>

namespace mailprobe::testing {
namespace {

[[noreturn]] void fail(const std::string& what) {
  throw std::runtime_error("TLS test server: " + what + ": " + takeOpenSslErrors());
}

void addCertificates(SSL_CTX* ctx, const TlsServerOptions& options) {
  std::unique_ptr<BIO, decltype(&BIO_free)> key_bio(
      BIO_new_mem_buf(options.key_pem.data(), static_cast<int>(options.key_pem.size())), BIO_free);
  EVP_PKEY* key = PEM_read_bio_PrivateKey(key_bio.get(), nullptr, nullptr, nullptr);
  int ok = key != nullptr ? SSL_CTX_use_PrivateKey(ctx, key) : 0;
  EVP_PKEY_free(key);
  if (ok != 1) {
    fail("unusable key");
  }
  for (const std::string* pem : {&options.cert_pem, &options.chain_pem}) {
    std::unique_ptr<BIO, decltype(&BIO_free)> bio(
        BIO_new_mem_buf(pem->data(), static_cast<int>(pem->size())), BIO_free);
    bool leaf = pem == &options.cert_pem;
    while (X509* cert = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr)) {
      // use_certificate takes a reference of its own; add0_chain_cert takes ours.
      ok = leaf ? SSL_CTX_use_certificate(ctx, cert) : SSL_CTX_add0_chain_cert(ctx, cert);
      if (leaf) {
        X509_free(cert);
      }
      if (ok != 1) {
        fail("unusable certificate");
      }
      leaf = false;
    }
    ERR_clear_error();  // the loop ends on "no start line"
  }
  if (SSL_CTX_check_private_key(ctx) != 1) {
    fail("key does not match the certificate");
  }
}

}  // namespace

TlsServerEngine::TlsServerEngine(const TlsServerOptions& options) {
  ERR_clear_error();
  ctx_ = SSL_CTX_new(TLS_server_method());
  if (ctx_ == nullptr) {
    fail("SSL_CTX_new");
  }
  if (options.security_level >= 0) {
    SSL_CTX_set_security_level(ctx_, options.security_level);
  }
  if ((options.min_version != 0 && SSL_CTX_set_min_proto_version(ctx_, options.min_version) != 1) ||
      (options.max_version != 0 && SSL_CTX_set_max_proto_version(ctx_, options.max_version) != 1)) {
    SSL_CTX_free(ctx_);
    fail("bad version bounds");
  }
  if (!options.ticket_keys.empty() &&
      SSL_CTX_set_tlsext_ticket_keys(ctx_, const_cast<char*>(options.ticket_keys.data()),
                                     static_cast<long>(options.ticket_keys.size())) != 1) {
    SSL_CTX_free(ctx_);
    fail("bad ticket keys");
  }
  try {
    addCertificates(ctx_, options);
  } catch (...) {
    SSL_CTX_free(ctx_);
    throw;
  }
  ssl_ = SSL_new(ctx_);
  rbio_ = BIO_new(BIO_s_mem());
  wbio_ = BIO_new(BIO_s_mem());
  if (ssl_ == nullptr || rbio_ == nullptr || wbio_ == nullptr) {
    fail("SSL_new");
  }
  BIO_set_mem_eof_return(rbio_, -1);
  SSL_set_bio(ssl_, rbio_, wbio_);
  SSL_set_accept_state(ssl_);
}

TlsServerEngine::~TlsServerEngine() {
  SSL_free(ssl_);
  SSL_CTX_free(ctx_);
}

void TlsServerEngine::feedCiphertext(std::string_view bytes) {
  if (!bytes.empty()) {
    BIO_write(rbio_, bytes.data(), static_cast<int>(bytes.size()));
  }
}

std::string TlsServerEngine::takeCiphertext() {
  std::string out;
  std::array<char, 16384> buf;
  int n = 0;
  while ((n = BIO_read(wbio_, buf.data(), static_cast<int>(buf.size()))) > 0) {
    out.append(buf.data(), static_cast<size_t>(n));
  }
  return out;
}

TlsServerEngine::Status TlsServerEngine::result(int rc) {
  if (rc == 1) {
    return Status::Ok;
  }
  switch (SSL_get_error(ssl_, rc)) {
    case SSL_ERROR_WANT_READ:
    case SSL_ERROR_WANT_WRITE:
      return Status::WantIo;
    case SSL_ERROR_ZERO_RETURN:
      peer_closed_ = true;
      return Status::Ok;
    default:
      error_ = takeOpenSslErrors();
      return Status::Failed;
  }
}

TlsServerEngine::Status TlsServerEngine::handshake() {
  ERR_clear_error();
  return result(SSL_do_handshake(ssl_));
}

TlsServerEngine::Status TlsServerEngine::read(std::string& out) {
  std::array<char, 16384> buf;
  for (;;) {
    ERR_clear_error();
    size_t n = 0;
    int rc = SSL_read_ex(ssl_, buf.data(), buf.size(), &n);
    if (rc != 1) {
      Status s = result(rc);
      return s == Status::WantIo ? Status::Ok : s;
    }
    out.append(buf.data(), n);
  }
}

TlsServerEngine::Status TlsServerEngine::write(std::string_view plaintext) {
  ERR_clear_error();
  size_t written = 0;
  return result(SSL_write_ex(ssl_, plaintext.data(), plaintext.size(), &written));
}

bool TlsServerEngine::renegotiate() {
  ERR_clear_error();
  if (SSL_renegotiate(ssl_) != 1) {
    error_ = takeOpenSslErrors();
    return false;
  }
  return handshake() != Status::Failed;
}

bool TlsServerEngine::renegotiationPending() const {
  return SSL_renegotiate_pending(ssl_) == 1;
}

void TlsServerEngine::shutdown() {
  ERR_clear_error();
  SSL_shutdown(ssl_);
  ERR_clear_error();
}

std::string TlsServerEngine::version() const {
  return SSL_get_version(ssl_);
}

std::string TlsServerEngine::serverName() const {
  const char* name = SSL_get_servername(ssl_, TLSEXT_NAMETYPE_host_name);
  return name != nullptr ? name : "";
}

}  // namespace mailprobe::testing
