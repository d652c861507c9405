#pragma once
// A tiny HTTP/1.1 listener on 127.0.0.1 for tests, on its own thread, one connection at a time:
// it answers each whole request (headers and Content-Length bytes of body) with a fixed
// response and closes, or stays silent, or closes at once; plain or TLS (TlsServerEngine over
// the socket). It records the requests it got. Test support: a failure to listen is a test
// failure. The destructor stops the thread and closes everything.

#include <atomic>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "tests/fakes/tls_server_engine.h"

namespace mailprobe::testing {

class HttpListener {
 public:
  enum class Mode {
    Answer,       // read a whole request, record it, send the response, close
    Silent,       // read whatever comes, never answer, keep the connection until it goes
    CloseAtOnce,  // accept and close
  };

  HttpListener(Mode mode, std::string response, std::optional<TlsServerOptions> tls = std::nullopt);
  ~HttpListener();
  HttpListener(const HttpListener&) = delete;
  HttpListener& operator=(const HttpListener&) = delete;

  uint16_t port() const { return port_; }
  std::string base() const { return "http://127.0.0.1:" + std::to_string(port_); }

  // Whole requests received (plaintext), in order.
  std::vector<std::string> requests() const;
  // The body of each request (after the blank line).
  std::vector<std::string> bodies() const;
  int connections() const { return connections_; }
  int openConnections() const { return open_; }
  // Plaintext bytes received on connections whose request never completed (a TLS client that
  // gave up after the handshake must have sent none).
  size_t strayBytes() const { return stray_; }

 private:
  bool waitReadable(int fd);
  void serve();
  void talk(int fd);

  Mode mode_;
  std::string response_;
  std::optional<TlsServerOptions> tls_;
  int fd_ = -1;
  uint16_t port_ = 0;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::atomic<int> connections_{0};
  std::atomic<int> open_{0};
  std::atomic<size_t> stray_{0};
  mutable std::mutex mu_;
  std::vector<std::string> requests_;
};

}  // namespace mailprobe::testing
