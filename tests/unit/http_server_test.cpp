#include "daemon/http_server.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <ctime>
#include <mutex>

#include <nlohmann/json.hpp>

#include "daemon/metrics.h"

namespace mailprobe {
namespace {

struct Reply {
  int status = 0;
  std::string headers;  // lower-cased
  std::string body;
  std::string header(const std::string& name) const {
    const std::string key = "\r\n" + name + ": ";
    const size_t at = headers.find(key);
    if (at == std::string::npos) {
      return "";
    }
    const size_t from = at + key.size();
    return headers.substr(from, headers.find("\r\n", from) - from);
  }
};

std::string lower(std::string s) {
  for (char& c : s) {
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  return s;
}

// The body of a chunked transfer encoding; fails the test on a malformed one.
std::string dechunk(const std::string& raw, size_t* chunks) {
  std::string body;
  size_t at = 0;
  *chunks = 0;
  for (;;) {
    const size_t eol = raw.find("\r\n", at);
    if (eol == std::string::npos) {
      ADD_FAILURE() << "chunked body ends without the last chunk";
      return body;
    }
    const size_t size = std::stoul(raw.substr(at, eol - at), nullptr, 16);
    at = eol + 2;
    if (size == 0) {
      EXPECT_EQ(raw.substr(at), "\r\n") << "after the last chunk";
      return body;
    }
    if (at + size + 2 > raw.size() || raw.compare(at + size, 2, "\r\n") != 0) {
      ADD_FAILURE() << "chunk of " << size << " bytes is cut or unterminated";
      return body;
    }
    body.append(raw, at, size);
    at += size + 2;
    ++*chunks;
  }
}

// A minimal HTTP/1.x client on a POSIX socket: one request, read to EOF. A chunked body is
// decoded (`chunks` says into how many pieces it came).
Reply fetch(uint16_t port, const std::string& path, const std::string& method = "GET",
            const std::string& version = "1.1", size_t* chunks = nullptr) {
  Reply out;
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  EXPECT_GE(fd, 0);
  timeval tv{5, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ADD_FAILURE() << "connect to port " << port << " failed";
    ::close(fd);
    return out;
  }
  const std::string request =
      method + " " + path + " HTTP/" + version + "\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
  EXPECT_EQ(::send(fd, request.data(), request.size(), MSG_NOSIGNAL),
            static_cast<ssize_t>(request.size()));
  std::string raw;
  char buf[4096];
  for (ssize_t n; (n = ::recv(fd, buf, sizeof buf, 0)) > 0;) {
    raw.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  const size_t end = raw.find("\r\n\r\n");
  if (end == std::string::npos || raw.size() < 12) {
    ADD_FAILURE() << "no complete HTTP reply: " << raw;
    return out;
  }
  out.status = std::stoi(raw.substr(9, 3));
  out.headers = lower(raw.substr(0, end + 2));
  out.body = raw.substr(end + 4);
  size_t pieces = 0;
  if (out.header("transfer-encoding") == "chunked") {
    out.body = dechunk(out.body, &pieces);
  }
  if (chunks != nullptr) {
    *chunks = pieces;
  }
  return out;
}

int64_t now() {
  return static_cast<int64_t>(::time(nullptr));
}

SnapshotPtr snapshotAt(int64_t taken_at) {
  auto s = std::make_shared<Snapshot>();
  s->taken_at = taken_at;
  s->daemon.version = "0.0.0-test";
  EndpointState e;
  e.host = "mail.example.org";
  e.port = 465;
  e.service = Service::Smtp;
  e.security = Security::Tls;
  ProbeResult r;
  r.host = e.host;
  r.address = "127.0.0.1";
  r.port = e.port;
  r.service = e.service;
  r.security = e.security;
  r.success = false;
  r.reason = FailureReason::AuthFailed;
  r.phase = Phase::Auth;
  r.detail = "535 <script>alert('x')</script>";
  r.sentence = "Login on 465 fails: <script>alert('y')</script>";
  e.last = {r};
  e.runs_total = 1;
  e.failures_total[FailureReason::AuthFailed] = 1;
  e.last_run_timestamp = taken_at;
  s->endpoints = {e};
  return s;
}

// The snapshot holder the daemon would have; the test swaps what it holds.
class Holder {
 public:
  void set(SnapshotPtr s) {
    std::lock_guard<std::mutex> l(mu_);
    s_ = std::move(s);
  }
  SnapshotPtr get() const {
    std::lock_guard<std::mutex> l(mu_);
    return s_;
  }

 private:
  mutable std::mutex mu_;
  SnapshotPtr s_;
};

TEST(HttpServer, ServesMetricsStatusPageJsonAndHealth) {
  Holder holder;
  holder.set(snapshotAt(now()));
  std::string error;
  auto server = HttpServer::start(
      "127.0.0.1:0", [&holder] { return holder.get(); }, &error);
  ASSERT_NE(server, nullptr) << error;
  ASSERT_NE(server->port(), 0);

  Reply metrics = fetch(server->port(), "/metrics");
  EXPECT_EQ(metrics.status, 200);
  EXPECT_EQ(metrics.header("content-type"), "text/plain; version=0.0.4; charset=utf-8");
  EXPECT_NE(metrics.body.find("# HELP mailprobe_endpoint_up "), std::string::npos);
  EXPECT_NE(metrics.body.find("mailprobe_endpoint_failures_total{host=\"mail.example.org\","
                              "port=\"465\",service=\"smtp\",security=\"tls\","
                              "reason=\"auth_failed\"} 1"),
            std::string::npos)
      << metrics.body;
  EXPECT_NE(metrics.body.find("process_resident_memory_bytes "), std::string::npos);
  EXPECT_EQ(metrics.body.find("alert("), std::string::npos) << "server text in metrics";

  Reply page = fetch(server->port(), "/");
  EXPECT_EQ(page.status, 200);
  EXPECT_EQ(page.header("content-type"), "text/html; charset=utf-8");
  EXPECT_NE(page.header("content-security-policy").find("default-src 'none'"), std::string::npos);
  EXPECT_NE(page.body.find("Login on 465 fails: &lt;script&gt;alert(&#39;y&#39;)&lt;/script&gt;"),
            std::string::npos);
  EXPECT_NE(page.body.find("535 &lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"),
            std::string::npos);
  EXPECT_EQ(page.body.find("<script"), std::string::npos);
  EXPECT_EQ(page.header("content-length"), std::to_string(page.body.size()));

  Reply json = fetch(server->port(), "/status.json");
  EXPECT_EQ(json.status, 200);
  EXPECT_EQ(json.header("content-type"), "application/json");
  auto j = nlohmann::json::parse(json.body, nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << json.body;
  EXPECT_EQ(j["endpoints"][0]["reason"], "auth_failed");
  EXPECT_EQ(j["daemon"]["version"], "0.0.0-test");

  Reply health = fetch(server->port(), "/healthz");
  EXPECT_EQ(health.status, 200);
  EXPECT_EQ(health.body, "ok\n");

  EXPECT_EQ(fetch(server->port(), "/nope").status, 404);
  EXPECT_EQ(fetch(server->port(), "/metrics/extra").status, 404);
  EXPECT_EQ(fetch(server->port(), "/status.json.bak").status, 404);

  Reply head = fetch(server->port(), "/healthz", "HEAD");
  EXPECT_EQ(head.status, 200);
  EXPECT_EQ(head.body, "");
}

// The text up to the process_* families, which are read at each render's own moment.
std::string withoutProcess(const std::string& text) {
  return text.substr(0, text.find("# HELP process_"));
}

// /metrics streams its text in chunks as it renders (HTTP/1.1), so that a scrape at 1,000
// endpoints never holds 10 MB; an HTTP/1.0 client, which cannot take chunks, gets it whole.
// Either way the text is renderMetrics', byte for byte.
TEST(HttpServer, MetricsStreamInChunksOrWholeForHttp10) {
  auto big = std::make_shared<Snapshot>(*snapshotAt(now()));
  const EndpointState one = big->endpoints.front();
  for (int i = 0; i < 400; ++i) {
    EndpointState e = one;
    e.host = "h" + std::to_string(i) + ".example.org";
    big->endpoints.push_back(e);
  }
  Holder holder;
  holder.set(big);
  std::string error;
  auto server = HttpServer::start(
      "127.0.0.1:0", [&holder] { return holder.get(); }, &error);
  ASSERT_NE(server, nullptr) << error;
  const std::string expected = withoutProcess(renderMetrics(big.get()));
  ASSERT_GT(expected.size(), 2u * 64 * 1024) << "too small to need several chunks";

  size_t chunks = 0;
  Reply streamed = fetch(server->port(), "/metrics", "GET", "1.1", &chunks);
  EXPECT_EQ(streamed.status, 200);
  EXPECT_EQ(streamed.header("transfer-encoding"), "chunked");
  EXPECT_EQ(streamed.header("content-length"), "");
  EXPECT_EQ(streamed.header("content-type"), "text/plain; version=0.0.4; charset=utf-8");
  EXPECT_GE(chunks, 3u);
  EXPECT_EQ(withoutProcess(streamed.body), expected);
  EXPECT_NE(streamed.body.find("\nprocess_resident_memory_bytes "), std::string::npos);

  Reply whole = fetch(server->port(), "/metrics", "GET", "1.0");
  EXPECT_EQ(whole.status, 200);
  EXPECT_EQ(whole.header("transfer-encoding"), "");
  EXPECT_EQ(whole.header("content-length"), std::to_string(whole.body.size()));
  EXPECT_EQ(withoutProcess(whole.body), expected);

  Reply head = fetch(server->port(), "/metrics", "HEAD");
  EXPECT_EQ(head.status, 200);
  EXPECT_EQ(head.body, "");
}

TEST(HttpServer, StaleOrMissingSnapshotIsUnhealthy) {
  Holder holder;
  holder.set(snapshotAt(now() - 600));
  std::string error;
  auto server = HttpServer::start(
      "127.0.0.1:0", [&holder] { return holder.get(); }, &error, std::chrono::seconds(60));
  ASSERT_NE(server, nullptr) << error;

  Reply stale = fetch(server->port(), "/healthz");
  EXPECT_EQ(stale.status, 503);
  EXPECT_NE(stale.body.find("stale"), std::string::npos) << stale.body;
  // The pages still show what is known.
  EXPECT_EQ(fetch(server->port(), "/").status, 200);

  holder.set(snapshotAt(now()));
  EXPECT_EQ(fetch(server->port(), "/healthz").status, 200);

  holder.set(nullptr);
  EXPECT_EQ(fetch(server->port(), "/healthz").status, 503);
  EXPECT_EQ(fetch(server->port(), "/").status, 503);
  EXPECT_EQ(fetch(server->port(), "/status.json").status, 503);
  Reply metrics = fetch(server->port(), "/metrics");
  EXPECT_EQ(metrics.status, 200);
  EXPECT_NE(metrics.body.find("process_cpu_seconds_total"), std::string::npos);
}

TEST(HttpServer, BindFailureReturnsCivetwebsReason) {
  auto source = [] { return snapshotAt(now()); };
  std::string error;
  auto first = HttpServer::start("127.0.0.1:0", source, &error);
  ASSERT_NE(first, nullptr) << error;

  error.clear();
  auto second = HttpServer::start("127.0.0.1:" + std::to_string(first->port()), source, &error);
  EXPECT_EQ(second, nullptr);
  EXPECT_NE(error.find("bind"), std::string::npos) << error;
  EXPECT_EQ(error.find("null context"), std::string::npos)
      << "civetweb's reason was lost: " << error;

  error.clear();
  EXPECT_EQ(HttpServer::start("[::1]:0", source, &error), nullptr);
  EXPECT_NE(error.find("IPv6"), std::string::npos) << error;

  // The first server is unharmed.
  EXPECT_EQ(fetch(first->port(), "/healthz").status, 200);
}

TEST(HttpServer, RoutingWithoutSockets) {
  const auto s = snapshotAt(1000);
  EXPECT_EQ(routeRequest("/healthz", s, 1060, std::chrono::seconds(60)).status, 200);
  EXPECT_EQ(routeRequest("/healthz", s, 1061, std::chrono::seconds(60)).status, 503);
  EXPECT_EQ(routeRequest("/", s, 1000, std::chrono::seconds(60)).content_type,
            "text/html; charset=utf-8");
  EXPECT_EQ(routeRequest("/index.html", s, 1000, std::chrono::seconds(60)).status, 404);
}

}  // namespace
}  // namespace mailprobe
