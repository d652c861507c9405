#include "tests/fakes/http_listener.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <memory>

namespace mailprobe::testing {
namespace {

// Whether `data` holds a whole request: headers and Content-Length bytes of body.
bool wholeRequest(const std::string& data) {
  size_t end = data.find("\r\n\r\n");
  if (end == std::string::npos) {
    return false;
  }
  size_t length = 0;
  for (const char* name : {"Content-Length: ", "content-length: "}) {
    if (size_t at = data.find(name); at != std::string::npos && at < end) {
      length = std::stoul(data.substr(at + 16));
    }
  }
  return data.size() >= end + 4 + length;
}

}  // namespace

HttpListener::HttpListener(Mode mode, std::string response, std::optional<TlsServerOptions> tls)
    : mode_(mode), response_(std::move(response)), tls_(std::move(tls)) {
  fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(fd_, 16) != 0) {
    ADD_FAILURE() << "cannot listen on 127.0.0.1";
    return;
  }
  socklen_t len = sizeof a;
  ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
  port_ = ntohs(a.sin_port);
  thread_ = std::thread([this] { serve(); });
}

HttpListener::~HttpListener() {
  stop_ = true;
  if (thread_.joinable()) {
    thread_.join();
  }
  ::close(fd_);
}

std::vector<std::string> HttpListener::requests() const {
  std::lock_guard<std::mutex> lock(mu_);
  return requests_;
}

std::vector<std::string> HttpListener::bodies() const {
  std::vector<std::string> out;
  for (const std::string& r : requests()) {
    out.push_back(r.substr(r.find("\r\n\r\n") + 4));
  }
  return out;
}

bool HttpListener::waitReadable(int fd) {
  while (!stop_) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 20) > 0) {
      return true;
    }
  }
  return false;
}

void HttpListener::serve() {
  while (waitReadable(fd_)) {
    int c = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (c < 0) {
      continue;
    }
    ++connections_;
    ++open_;
    if (mode_ != Mode::CloseAtOnce) {
      talk(c);
    }
    ::close(c);
    --open_;
  }
}

void HttpListener::talk(int c) {
  std::unique_ptr<TlsServerEngine> tls;
  if (tls_) {
    tls = std::make_unique<TlsServerEngine>(*tls_);
  }
  auto send_all = [&](const std::string& bytes) {
    for (size_t sent = 0; sent < bytes.size();) {
      ssize_t n = ::send(c, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
      if (n <= 0) {
        return;
      }
      sent += static_cast<size_t>(n);
    }
  };
  std::string request;
  char buf[16384];
  while (waitReadable(c)) {
    ssize_t n = ::recv(c, buf, sizeof buf, 0);
    if (n <= 0) {
      break;
    }
    std::string plain(buf, static_cast<size_t>(n));
    if (tls) {
      tls->feedCiphertext(plain);
      plain.clear();
      if (tls->handshake() == TlsServerEngine::Status::Failed) {
        send_all(tls->takeCiphertext());
        break;
      }
      tls->read(plain);
      send_all(tls->takeCiphertext());
    }
    request += plain;
    if (mode_ == Mode::Answer && wholeRequest(request)) {
      {
        std::lock_guard<std::mutex> lock(mu_);
        requests_.push_back(request);
      }
      request.clear();
      if (tls) {
        tls->write(response_);
        send_all(tls->takeCiphertext());
      } else {
        send_all(response_);
      }
      break;
    }
  }
  stray_ += request.size();
}

}  // namespace mailprobe::testing
