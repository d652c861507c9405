#include "probes/tls_context_cache.h"

#include <openssl/x509.h>
#include <sys/stat.h>

#include <cstdlib>

#include "probes/tls_engine.h"

namespace mailprobe {
namespace {

// The trust file a context loads: the configured CA file, or the system bundle (OpenSSL's
// default file, which SSL_CERT_FILE overrides). The hashed directory of the system store is
// read lazily by OpenSSL itself, certificate by certificate, so it needs no watching.
std::string trustFile(const TlsOptions& options) {
  if (!options.ca_file.empty()) {
    return options.ca_file;
  }
  const char* env = std::getenv(X509_get_default_cert_file_env());
  return env != nullptr && *env != '\0' ? env : X509_get_default_cert_file();
}

int64_t nanoseconds(const timespec& t) {
  return static_cast<int64_t>(t.tv_sec) * 1'000'000'000 + t.tv_nsec;
}

}  // namespace

TlsContextCache::FileStamp TlsContextCache::stampOf(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    return {};
  }
  return {st.st_dev, st.st_ino, st.st_size, nanoseconds(st.st_mtim), nanoseconds(st.st_ctim)};
}

std::shared_ptr<TlsContext> TlsContextCache::get(const TlsOptions& options, std::string* error) {
  Key key{options.ca_file, options.min_version, options.max_version};
  std::string watched = trustFile(options);
  FileStamp stamp = stampOf(watched);
  std::lock_guard<std::mutex> lock(mu_);
  if (auto it = entries_.find(key); it != entries_.end()) {
    if (it->second.watched == watched && it->second.stamp == stamp) {
      return it->second.context;
    }
    entries_.erase(it);  // the trust file changed (or SSL_CERT_FILE did): build afresh
  }
  std::shared_ptr<TlsContext> context = TlsContext::create(options, error);
  ++built_;
  if (context) {
    entries_[key] = Entry{context, std::move(watched), stamp};
  }
  return context;
}

void TlsContextCache::clear() {
  std::lock_guard<std::mutex> lock(mu_);
  entries_.clear();
}

size_t TlsContextCache::size() const {
  std::lock_guard<std::mutex> lock(mu_);
  return entries_.size();
}

size_t TlsContextCache::built() const {
  std::lock_guard<std::mutex> lock(mu_);
  return built_;
}

std::shared_ptr<TlsContext> tlsContextFor(TlsContextCache* contexts, const TlsOptions& options,
                                          std::string* error) {
  return contexts != nullptr ? contexts->get(options, error) : TlsContext::create(options, error);
}

}  // namespace mailprobe
