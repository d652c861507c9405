#pragma once
// The daemon's one HTTP listener (civetweb, as under prometheus-cpp's Exposer): /metrics, the
// status page at /, /status.json and /healthz. Handlers run on civetweb worker threads and read
// only the snapshot the source function hands them; they never touch the loop.
//
// Debian's civetweb has no IPv6: listen on "127.0.0.1:9807", "0.0.0.0:9807" or "9807" (all
// IPv4 interfaces); "[::1]:9807" fails to start.

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "daemon/snapshot.h"

namespace mailprobe {

struct HttpResponse {
  int status = 200;
  std::string content_type;
  std::string body;
};

// Routing, without sockets: the response to GET `path`. `snapshot` may be null (nothing
// published yet: 503 everywhere). /healthz is 200 "ok" while now - taken_at <= max_snapshot_age.
HttpResponse routeRequest(std::string_view path, const SnapshotPtr& snapshot, int64_t now,
                          std::chrono::seconds max_snapshot_age);

class HttpServer {
 public:
  using SnapshotSource = std::function<SnapshotPtr()>;
  static constexpr std::chrono::seconds kDefaultMaxSnapshotAge{60};

  // Starts listening; on failure throws std::runtime_error carrying civetweb's own reason.
  // `snapshot` is called on worker threads: it must be thread-safe (e.g.
  // SnapshotCollectable::current). The loop must publish a fresh snapshot more often than
  // `max_snapshot_age`, even when nothing changed, or /healthz reports it stalled.
  HttpServer(std::string listen, SnapshotSource snapshot,
             std::chrono::seconds max_snapshot_age = kDefaultMaxSnapshotAge);
  // The same, returning nullptr and setting *error (when not null) instead of throwing.
  static std::unique_ptr<HttpServer> start(
      std::string listen, SnapshotSource snapshot, std::string* error,
      std::chrono::seconds max_snapshot_age = kDefaultMaxSnapshotAge);
  // Stops accepting, finishes the requests under way and joins the workers.
  ~HttpServer();

  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // The port actually bound (useful with "127.0.0.1:0").
  uint16_t port() const { return port_; }

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  uint16_t port_ = 0;
};

}  // namespace mailprobe
