#include "tests/fakes/test_certs.h"

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <stdexcept>

#include "probes/tls_engine.h"

namespace mailprobe::testing {
namespace {

struct Free {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
  void operator()(X509* p) const { X509_free(p); }
  void operator()(X509_EXTENSION* p) const { X509_EXTENSION_free(p); }
  void operator()(BIO* p) const { BIO_free(p); }
};
using KeyPtr = std::unique_ptr<EVP_PKEY, Free>;
using CertPtr = std::unique_ptr<X509, Free>;

[[noreturn]] void fail(const std::string& what) {
  throw std::runtime_error("test certificate: " + what + ": " + takeOpenSslErrors());
}

void check(int ok, const char* what) {
  if (ok != 1) {
    fail(what);
  }
}

std::unique_ptr<BIO, Free> memBio(const std::string& pem = {}) {
  BIO* bio = pem.empty() ? BIO_new(BIO_s_mem())
                         : BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  if (bio == nullptr) {
    fail("BIO_new");
  }
  return std::unique_ptr<BIO, Free>(bio);
}

std::string bioText(BIO* bio) {
  char* data = nullptr;
  long len = BIO_get_mem_data(bio, &data);
  return std::string(data, static_cast<size_t>(len));
}

void addExtension(X509* cert, X509V3_CTX* ctx, int nid, const std::string& value) {
  std::unique_ptr<X509_EXTENSION, Free> ext(X509V3_EXT_conf_nid(nullptr, ctx, nid, value.c_str()));
  if (ext == nullptr) {
    fail("extension " + value);
  }
  check(X509_add_ext(cert, ext.get(), -1), "X509_add_ext");
}

std::string subjectAltNames(const CertOptions& options) {
  std::string san;
  auto add = [&](const char* kind, const std::string& value) {
    san += (san.empty() ? "" : ",") + std::string(kind) + value;
  };
  for (const auto& name : options.dns_names) {
    add("DNS:", name);
  }
  for (const auto& ip : options.ip_addresses) {
    add("IP:", ip);
  }
  return san;
}

// Signs a new certificate for a fresh key; a null issuer means self-signed.
KeyCert makeCert(const CertOptions& options, EVP_PKEY* issuer_key, X509* issuer_cert) {
  KeyPtr key(EVP_EC_gen("P-256"));
  CertPtr cert(X509_new());
  if (key == nullptr || cert == nullptr) {
    fail("key generation");
  }
  X509* x = cert.get();
  check(X509_set_version(x, X509_VERSION_3), "X509_set_version");
  uint64_t serial = 0;
  check(RAND_bytes(reinterpret_cast<unsigned char*>(&serial), sizeof serial), "RAND_bytes");
  check(ASN1_INTEGER_set_uint64(X509_get_serialNumber(x), serial >> 1), "serial");
  if (X509_gmtime_adj(X509_getm_notBefore(x), options.not_before_offset) == nullptr ||
      X509_gmtime_adj(X509_getm_notAfter(x), options.not_after_offset) == nullptr) {
    fail("validity");
  }

  std::string cn = options.common_name;
  if (cn.empty()) {
    cn = options.dns_names.empty() ? "mailprobed test" : options.dns_names.front();
  }
  X509_NAME* subject = X509_get_subject_name(x);
  auto addEntry = [&](const char* field, const std::string& value) {
    check(X509_NAME_add_entry_by_txt(subject, field, MBSTRING_UTF8,
                                     reinterpret_cast<const unsigned char*>(value.c_str()), -1, -1,
                                     0),
          "subject");
  };
  addEntry("O", "mailprobed tests");
  addEntry("CN", cn);
  check(X509_set_issuer_name(x,
                             issuer_cert != nullptr ? X509_get_subject_name(issuer_cert) : subject),
        "issuer");
  check(X509_set_pubkey(x, key.get()), "X509_set_pubkey");

  X509V3_CTX ctx;
  X509V3_set_ctx(&ctx, issuer_cert != nullptr ? issuer_cert : x, x, nullptr, nullptr, 0);
  addExtension(x, &ctx, NID_subject_key_identifier, "hash");
  if (issuer_cert != nullptr) {
    addExtension(x, &ctx, NID_authority_key_identifier, "keyid:always");
  }
  if (options.is_ca) {
    addExtension(x, &ctx, NID_basic_constraints, "critical,CA:TRUE");
    addExtension(x, &ctx, NID_key_usage, "critical,keyCertSign,cRLSign");
  } else {
    addExtension(x, &ctx, NID_basic_constraints, "critical,CA:FALSE");
    // A self-signed leaf gets no keyUsage: without keyCertSign OpenSSL 3 would not call it
    // self-signed, and the point of such a certificate is to look like a snakeoil one.
    if (issuer_cert != nullptr) {
      addExtension(x, &ctx, NID_key_usage, "critical,digitalSignature");
    }
    addExtension(x, &ctx, NID_ext_key_usage, "serverAuth");
  }
  std::string san = subjectAltNames(options);
  if (!san.empty()) {
    addExtension(x, &ctx, NID_subject_alt_name, san);
  }
  if (X509_sign(x, issuer_key != nullptr ? issuer_key : key.get(), EVP_sha256()) <= 0) {
    fail("X509_sign");
  }

  auto key_bio = memBio();
  auto cert_bio = memBio();
  check(PEM_write_bio_PrivateKey(key_bio.get(), key.get(), nullptr, nullptr, 0, nullptr, nullptr),
        "PEM_write_bio_PrivateKey");
  check(PEM_write_bio_X509(cert_bio.get(), x), "PEM_write_bio_X509");
  return KeyCert{bioText(key_bio.get()), bioText(cert_bio.get())};
}

}  // namespace

KeyCert makeSelfSigned(const CertOptions& options) {
  return makeCert(options, nullptr, nullptr);
}

KeyCert makeSigned(const CertOptions& options, const KeyCert& issuer) {
  KeyPtr key(PEM_read_bio_PrivateKey(memBio(issuer.key_pem).get(), nullptr, nullptr, nullptr));
  CertPtr cert(PEM_read_bio_X509(memBio(issuer.cert_pem).get(), nullptr, nullptr, nullptr));
  if (key == nullptr || cert == nullptr) {
    fail("cannot read the issuer's PEM");
  }
  return makeCert(options, key.get(), cert.get());
}

TempDir::TempDir() {
  std::string pattern = (std::filesystem::temp_directory_path() / "mailprobe-test-XXXXXX").string();
  if (mkdtemp(pattern.data()) == nullptr) {
    throw std::runtime_error("mkdtemp " + pattern + " failed");
  }
  path_ = pattern;
}

TempDir::~TempDir() {
  std::error_code ignored;
  std::filesystem::remove_all(path_, ignored);
}

std::string TempDir::write(const std::string& name, const std::string& content) {
  std::string full = path_ + "/" + name;
  std::ofstream out(full, std::ios::binary | std::ios::trunc);
  out << content;
  out.close();
  if (!out) {
    throw std::runtime_error("cannot write " + full);
  }
  return full;
}

}  // namespace mailprobe::testing
