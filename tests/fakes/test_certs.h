#pragma once
// Certificates made at test time (EC P-256, SHA-256), so no test depends on a checked-in file
// that expires. Failures throw std::runtime_error with OpenSSL's words: this is test support.

#include <cstdint>
#include <string>
#include <vector>

namespace mailprobe::testing {

struct KeyCert {
  std::string key_pem, cert_pem;
};

struct CertOptions {
  std::vector<std::string> dns_names;     // subjectAltName DNS entries
  std::vector<std::string> ip_addresses;  // subjectAltName IP entries ("127.0.0.1", "::1")
  int64_t not_before_offset = -3600;      // seconds from now
  int64_t not_after_offset = 30 * 86400;  // seconds from now
  bool is_ca = false;                     // basicConstraints CA:TRUE, keyCertSign
  std::string common_name;                // empty: the first DNS name, else "mailprobed test"
};

KeyCert makeSelfSigned(const CertOptions& options);
KeyCert makeSigned(const CertOptions& options, const KeyCert& issuer);

// A temp dir for CA, intermediate and leaf files written as PEM, removed on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }
  // Writes path()/name and returns that full path.
  std::string write(const std::string& name, const std::string& content);

 private:
  std::string path_;
};

}  // namespace mailprobe::testing
