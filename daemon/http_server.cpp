#include "daemon/http_server.h"

#include <CivetServer.h>
#include <civetweb.h>
#include <malloc.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <mutex>
#include <stdexcept>
#include <string_view>
#include <vector>

#include "daemon/log.h"
#include "daemon/metrics.h"
#include "daemon/status_page.h"

namespace mailprobe {
namespace {

constexpr const char* kHtml = "text/html; charset=utf-8";
constexpr const char* kJson = "application/json";
constexpr const char* kText = "text/plain; charset=utf-8";

// civetweb reports why it cannot start (e.g. "cannot bind to 127.0.0.1:9807: 98 (Address
// already in use)") only through log_message, from inside the constructor, on the constructing
// thread. While a server is being constructed on this thread its messages are collected here;
// at any other time they go to the log.
thread_local std::string* t_startup_messages = nullptr;

int logMessage(const mg_connection* /*conn*/, const char* message) {
  if (t_startup_messages != nullptr) {
    if (!t_startup_messages->empty()) {
      *t_startup_messages += "; ";
    }
    *t_startup_messages += message;
  } else {
    log::info(std::string("http: ") + message);
  }
  return 1;  // handled: civetweb writes nothing itself
}

int64_t unixNow() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

HttpResponse unavailable(std::string_view what) {
  return {503, kText, "no snapshot yet: " + std::string(what) + " is not available\n"};
}

}  // namespace

HttpResponse routeRequest(std::string_view path, const SnapshotPtr& snapshot, int64_t now,
                          std::chrono::seconds max_snapshot_age) {
  if (path == "/healthz") {
    if (!snapshot) {
      return {503, kText, "no snapshot published yet\n"};
    }
    const int64_t age = now - snapshot->taken_at;
    if (age > max_snapshot_age.count()) {
      return {503, kText,
              "stale: the last snapshot is " + std::to_string(age) + " s old (limit " +
                  std::to_string(max_snapshot_age.count()) + " s)\n"};
    }
    return {200, kText, "ok\n"};
  }
  if (path == "/metrics") {
    // Without a snapshot the process_* series still say the daemon is alive.
    return {200, kMetricsContentType, renderMetrics(snapshot.get())};
  }
  if (path == "/") {
    if (!snapshot) {
      return unavailable("the status page");
    }
    return {200, kHtml, renderStatusPage(*snapshot, now)};
  }
  if (path == "/status.json") {
    if (!snapshot) {
      return unavailable("the status");
    }
    return {200, kJson, statusJson(*snapshot, now).dump(2) + "\n"};
  }
  return {404, kText, "not found; try /, /metrics, /status.json or /healthz\n"};
}

struct HttpServer::Impl : public CivetHandler {
  SnapshotSource snapshot;
  std::chrono::seconds max_age;
  // One answer is rendered at a time. The workers wait for the network most of their lives; a
  // crowd of scrapers then takes one core for rendering, never all of them, from the event loop
  // that starts the probes (on a two-core machine, 32 renders at once would leave it a 33rd of
  // the CPU). A slow client does not hold it: it is held around the rendering alone, and let go
  // while /metrics sends each piece it streams.
  std::mutex render;
  std::atomic<int64_t> last_trim_ms{0};  // steady clock, trimAfterScrape
  std::unique_ptr<CivetServer> server;   // reset first in ~Impl: it uses this handler

  Impl(SnapshotSource source, std::chrono::seconds age)
      : snapshot(std::move(source)), max_age(age) {}
  ~Impl() override { server.reset(); }

  bool handleGet(CivetServer* /*server*/, mg_connection* conn) override {
    return reply(conn, true);
  }
  bool handleHead(CivetServer* /*server*/, mg_connection* conn) override {
    return reply(conn, false);
  }

  bool reply(mg_connection* conn, bool with_body) {
    const mg_request_info* info = mg_get_request_info(conn);
    const char* uri = info != nullptr && info->local_uri != nullptr ? info->local_uri : "";
    const bool chunked_ok = info != nullptr && info->http_version != nullptr &&
                            std::string_view(info->http_version) == "1.1";
    if (with_body && chunked_ok && std::string_view(uri) == "/metrics") {
      streamMetrics(conn);
      return true;
    }
    HttpResponse r;
    try {
      std::lock_guard<std::mutex> one_at_a_time(render);
      r = routeRequest(uri, snapshot(), unixNow(), max_age);
    } catch (const std::exception& e) {
      log::error(std::string("http: ") + uri + ": " + e.what());
      r = {500, kText, "internal error\n"};
    }
    const std::string length = std::to_string(r.body.size());
    startHeaders(conn, r.status, r.content_type);
    mg_response_header_add(conn, "Content-Length", length.c_str(), -1);
    mg_response_header_send(conn);
    if (with_body && !r.body.empty()) {
      mg_write(conn, r.body.data(), r.body.size());
    }
    return true;
  }

  // /metrics as it is rendered, in chunks (HTTP/1.1 chunked transfer encoding): at 1,000
  // endpoints the text is 10 MB, and holding it whole in every worker thread's heap is most of
  // what the daemon would otherwise weigh. An HTTP/1.0 client gets it whole (routeRequest).
  void streamMetrics(mg_connection* conn) {
    startHeaders(conn, 200, kMetricsContentType);
    mg_response_header_add(conn, "Transfer-Encoding", "chunked", -1);
    mg_response_header_send(conn);
    // Each chunk goes out in one write, its size line and CRLF around it (mg_send_chunk makes
    // three, two of them of a few bytes: a third of the syscalls and segments of a scrape).
    std::string frame;
    bool sending = true;
    auto send = [&](std::string_view piece) {
      if (!sending) {
        return;  // a client gone away: render on, send no more
      }
      char size[24];
      const int n = std::snprintf(size, sizeof size, "%zx\r\n", piece.size());
      frame.assign(size, static_cast<size_t>(n)).append(piece).append("\r\n");
      sending = mg_write(conn, frame.data(), frame.size()) == static_cast<int>(frame.size());
    };
    try {
      // Rendering holds the lock, sending does not: a slow reader stalls only itself.
      std::unique_lock<std::mutex> one_at_a_time(render);
      const SnapshotPtr s = snapshot();
      renderMetrics(s.get(), [&](std::string_view piece) {
        if (!piece.empty()) {  // an empty chunk would end the body
          one_at_a_time.unlock();
          send(piece);
          one_at_a_time.lock();
        }
      });
    } catch (const std::exception& e) {
      // The status is out already: no last chunk, so the client sees a truncated response.
      log::error(std::string("http: /metrics: ") + e.what());
      return;
    }
    send("");  // the last chunk
    trimAfterScrape();
  }

  // The scrape let go of its buffers and of the snapshot it held (which the loop replaced
  // meanwhile): give the pages back now rather than at the loop's next trim (tuneMalloc,
  // daemon.cpp). About 0.3 ms at 1,000 endpoints, after the response is out; at most once a
  // second, whatever the number of scrapers (malloc_trim holds each arena's lock in turn).
  void trimAfterScrape() {
    const int64_t now = std::chrono::duration_cast<std::chrono::milliseconds>(
                            std::chrono::steady_clock::now().time_since_epoch())
                            .count();
    int64_t last = last_trim_ms.load();
    if (now - last >= 1000 && last_trim_ms.compare_exchange_strong(last, now)) {
      malloc_trim(0);
    }
  }

  static void startHeaders(mg_connection* conn, int status, const std::string& content_type) {
    mg_response_header_start(conn, status);
    mg_response_header_add(conn, "Content-Type", content_type.c_str(), -1);
    mg_response_header_add(conn, "Cache-Control", "no-store", -1);
    mg_response_header_add(conn, "X-Content-Type-Options", "nosniff", -1);
    if (content_type == kHtml) {
      // The page has inline CSS and nothing else: a server reply shown in it can run nothing.
      mg_response_header_add(conn, "Content-Security-Policy",
                             "default-src 'none'; style-src 'unsafe-inline'; "
                             "base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
                             -1);
    }
  }
};

HttpServer::HttpServer(std::string listen, SnapshotSource snapshot,
                       std::chrono::seconds max_snapshot_age)
    : impl_(std::make_unique<Impl>(std::move(snapshot), max_snapshot_age)) {
  const std::vector<std::string> options{
      "listening_ports", listen,
      // Each connection holds a worker while it lasts, and a slow client lasts: a request that
      // trickles in, a reader that takes the answer a byte at a time. Enough workers that a few
      // of those leave room for the scrapers, each dropped once its request took more than the
      // timeout to arrive or a write stalls that long.
      "num_threads", "32", "request_timeout_ms", "5000", "enable_keep_alive", "no",
      // No document_root: civetweb serves no files, only the handler below.
  };
  CivetCallbacks callbacks;
  callbacks.log_message = &logMessage;

  std::string messages;
  t_startup_messages = &messages;
  try {
    impl_->server = std::make_unique<CivetServer>(options, &callbacks);
  } catch (const std::exception& e) {
    t_startup_messages = nullptr;
    std::string why = messages.empty() ? e.what() : messages;
    if (!listen.empty() && listen.front() == '[') {
      why += " (this civetweb is built without IPv6: listen on an IPv4 address)";
    }
    throw std::runtime_error(why);
  }
  t_startup_messages = nullptr;

  // One handler for every path; it routes exactly and answers 404 itself.
  impl_->server->addHandler("/", *impl_);
  impl_->server->addHandler("**", *impl_);
  const std::vector<int> ports = impl_->server->getListeningPorts();
  port_ = ports.empty() ? 0 : static_cast<uint16_t>(ports.front());
}

HttpServer::~HttpServer() = default;

std::unique_ptr<HttpServer> HttpServer::start(std::string listen, SnapshotSource snapshot,
                                              std::string* error,
                                              std::chrono::seconds max_snapshot_age) {
  try {
    return std::make_unique<HttpServer>(std::move(listen), std::move(snapshot), max_snapshot_age);
  } catch (const std::exception& e) {
    if (error != nullptr) {
      *error = e.what();
    }
    return nullptr;
  }
}

}  // namespace mailprobe
