#pragma once
// One HTTP/1.1 POST on the loop: how alerts reach Alertmanager. Resolve (libuv's thread pool,
// AddressLookup), connect to each address in turn, TLS for https (the certificate must verify:
// credentials and alerts go nowhere else), send the request with `Connection: close`, read the
// answer up to kMaxResponseBytes, close. One deadline covers all of it.
//
// Lifetime: start() returns an object owned by the loop. `done` is called exactly once, from a
// close callback (never inside start() or a caller's stack), after which the object is gone;
// cancel() instead closes everything at once without `done` (a reload or a stop: nothing is left
// waiting on the loop but the close callbacks).
//
// The sans-I/O halves, for tests: httpPostRequest() builds the bytes, HttpResponseReader reads
// the answer.

#include <uv.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "daemon/alertmanager.h"
#include "probes/address_lookup.h"

namespace mailprobe {

class TlsChannel;
class TlsContext;

// What the reader keeps of an answer: the status line, the headers and the start of the body
// (enough for Alertmanager's error message).
inline constexpr size_t kMaxResponseBytes = 16 * 1024;

// "POST <path>/api/v2/alerts HTTP/1.1" with Host, User-Agent, Content-Type: application/json,
// Content-Length, Connection: close and, with credentials, Authorization: Basic.
std::string httpPostRequest(const AlertmanagerUrl& url, std::string_view body);

class HttpResponseReader {
 public:
  enum class State { NeedMore, Complete, Invalid };
  // Bytes from the server.
  State feed(std::string_view bytes);
  // The server closed: a response whose length was unknown is complete now.
  State finish();
  State state() const { return state_; }

  int status() const { return status_; }  // once the status line was read
  // The body as far as it was read (at most kMaxResponseBytes in all), for error messages.
  const std::string& body() const { return body_; }
  const std::string& error() const { return error_; }  // when Invalid

 private:
  State parseHead();
  State invalid(std::string why);

  State state_ = State::NeedMore;
  std::string head_;  // until the blank line
  bool head_done_ = false;
  int status_ = 0;
  std::optional<size_t> content_length_;
  std::string body_;
  size_t total_ = 0;
  std::string error_;
};

struct HttpPostResult {
  PushResult result = PushResult::Ok;
  int status = 0;      // the HTTP status, when an answer came
  std::string detail;  // for logs: what failed, never credentials; "" on success
};

class HttpPost {
 public:
  using Done = std::function<void(HttpPostResult)>;

  // `tls` is required for https (the context to verify with), ignored for http.
  static HttpPost* start(uv_loop_t* loop, const AlertmanagerUrl& url, std::string_view body,
                         std::chrono::milliseconds timeout, std::shared_ptr<TlsContext> tls,
                         Done done);
  // Closes now; `done` is never called. The pointer is invalid afterwards.
  void cancel();

 private:
  // Resolving, then Connecting (address after address), then Open (TLS handshake for https,
  // the request, the answer), then Closing: one finish() for every way it ends.
  enum class State { Resolving, Connecting, Open, Closing };

  HttpPost(uv_loop_t* loop, const AlertmanagerUrl& url, std::string request,
           std::shared_ptr<TlsContext> tls, Done done);
  ~HttpPost();
  void begin(std::chrono::milliseconds timeout);
  void connectNext();
  void onConnect(int status);
  void onRead(ssize_t nread, const uv_buf_t* buf);
  void onCiphertext(std::string_view bytes, bool eof);
  void onAnswer(HttpResponseReader::State state);
  void sendRequest();
  bool writeRaw(std::string bytes);
  void finish(PushResult result, std::string detail);
  void closeTcp();
  void onHandleClosed();
  std::string where() const;  // "host:port", "[v6]:port"

  uv_loop_t* loop_;
  AlertmanagerUrl url_;
  std::string request_;
  std::shared_ptr<TlsContext> tls_context_;
  std::unique_ptr<TlsChannel> tls_;  // https only; holds the request while the server renegotiates
  State state_ = State::Resolving;
  AddressLookup* lookup_ = nullptr;
  std::vector<sockaddr_storage> addresses_;
  size_t next_address_ = 0;
  std::string connect_error_;  // the last address's
  uv_tcp_t* tcp_ = nullptr;    // the current attempt; freed in its close callback
  uv_timer_t timer_;
  int open_handles_ = 0;
  HttpResponseReader reader_;
  HttpPostResult result_;
  Done done_;
};

}  // namespace mailprobe
