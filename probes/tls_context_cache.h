#pragma once
// Client TLS contexts shared by every probe with the same TLS options.
//
// Building an SSL_CTX loads and parses the trust store (the CA file, or the system bundle of
// ~140 roots); doing it for every probe made a probe cost ~1.55x a bare handshake
// (bench/RESULTS.md). A context depends only on what TlsContext::create reads: the CA file, and
// the minimum and maximum versions (which also set the security level). The server name, the
// verification of the host name and any session are per connection (TlsEngine), so one context
// serves every endpoint with those options.
//
// Freshness: a context is rebuilt when its trust file changes on disk (checked with stat() on
// every lookup: a renewed CA bundle is used from the next probe on, as before the cache), and
// clear() drops them all (the daemon calls it on reload). Probes in flight keep the context they
// started with. A failed build is not cached: the next probe tries again and reports the same
// error, as it would without the cache.
//
// Threads: each lookup takes a mutex, so one cache may serve several loops; the daemon has one
// loop and one cache (the endpoint probes, the relay checks and the TLS version scans on that
// loop all use it), `check` has its own.

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <tuple>

#include "probes/probe_spec.h"

namespace mailprobe {

class TlsContext;

class TlsContextCache {
 public:
  // The shared context for `options`; nullptr and *error set when it cannot be built.
  std::shared_ptr<TlsContext> get(const TlsOptions& options, std::string* error);
  // Forgets every context (probes holding one keep it until they end).
  void clear();
  size_t size() const;
  // Contexts built since the cache was made (rebuilds included); for tests and benchmarks.
  size_t built() const;

 private:
  // The file whose change invalidates a context (the CA file, or the system bundle), as seen
  // by stat(): all zero when it cannot be read.
  struct FileStamp {
    dev_t dev = 0;
    ino_t ino = 0;
    off_t size = 0;
    int64_t mtime_ns = 0;
    int64_t ctime_ns = 0;
    bool operator==(const FileStamp&) const = default;
  };
  struct Entry {
    std::shared_ptr<TlsContext> context;
    std::string watched;  // path of the trust file
    FileStamp stamp;
  };
  using Key = std::tuple<std::string, int, int>;  // ca_file, min_version, max_version

  static FileStamp stampOf(const std::string& path);

  mutable std::mutex mu_;
  std::map<Key, Entry> entries_;
  size_t built_ = 0;
};

// The context for `options`: from `contexts` when given, else one built for the caller alone.
std::shared_ptr<TlsContext> tlsContextFor(TlsContextCache* contexts, const TlsOptions& options,
                                          std::string* error);

}  // namespace mailprobe
