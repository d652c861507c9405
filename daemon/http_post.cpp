#include "daemon/http_post.h"

#include <algorithm>

#include "daemon/config_words.h"
#include "probes/connection.h"
#include "probes/session.h"
#include "probes/tls_channel.h"

namespace mailprobe {
namespace {

constexpr size_t kReadBufferSize = 16 * 1024;

}  // namespace

std::string httpPostRequest(const AlertmanagerUrl& url, std::string_view body) {
  std::string r = "POST " + url.alertsPath() + " HTTP/1.1\r\n";
  r += "Host: " + url.hostHeader() + "\r\n";
  r += "User-Agent: mailprobed/" MAILPROBED_VERSION "\r\n";
  r += "Content-Type: application/json\r\n";
  r += "Content-Length: " + std::to_string(body.size()) + "\r\n";
  r += "Connection: close\r\n";
  if (url.hasCredentials()) {
    r += "Authorization: " + url.authorization() + "\r\n";
  }
  r += "\r\n";
  r += body;
  return r;
}

// ---------------------------------------------------------------------------------------------
// The answer.

HttpResponseReader::State HttpResponseReader::invalid(std::string why) {
  error_ = std::move(why);
  return state_ = State::Invalid;
}

HttpResponseReader::State HttpResponseReader::feed(std::string_view bytes) {
  if (state_ != State::NeedMore) {
    return state_;
  }
  total_ += bytes.size();
  if (!head_done_) {
    head_.append(bytes);
    size_t end = head_.find("\r\n\r\n");
    size_t sep = 4;
    if (size_t lf = head_.find("\n\n"); lf != std::string::npos && lf < end) {
      end = lf;  // bare LF from a broken server
      sep = 2;
    }
    if (end == std::string::npos) {
      return head_.size() > kMaxResponseBytes
                 ? invalid("the answer's headers are longer than 16 KiB")
                 : state_;
    }
    std::string rest = head_.substr(end + sep);
    head_.resize(end);
    head_done_ = true;
    if (parseHead() == State::Invalid) {
      return state_;
    }
    body_.append(rest.substr(0, kMaxResponseBytes - std::min(kMaxResponseBytes, end)));
  } else {
    size_t room = kMaxResponseBytes - std::min(kMaxResponseBytes, head_.size() + body_.size());
    body_.append(bytes.substr(0, room));
  }
  bool no_body = status_ == 204 || status_ == 304 || (status_ >= 100 && status_ < 200);
  bool whole = content_length_ && body_.size() >= *content_length_;
  bool enough = head_.size() + body_.size() >= kMaxResponseBytes;
  if (no_body || whole || enough) {
    if (content_length_ && body_.size() > *content_length_) {
      body_.resize(*content_length_);
    }
    state_ = State::Complete;
  }
  return state_;
}

HttpResponseReader::State HttpResponseReader::finish() {
  if (state_ != State::NeedMore) {
    return state_;
  }
  if (!head_done_) {
    return invalid(total_ == 0 ? "the connection closed without an answer"
                               : "the connection closed in the middle of the answer's headers");
  }
  return state_ = State::Complete;  // the status is known; a short body is only words
}

HttpResponseReader::State HttpResponseReader::parseHead() {
  std::string_view head = head_;
  size_t eol = head.find('\n');
  std::string_view status_line = head.substr(0, eol);
  if (status_line.ends_with('\r')) {
    status_line.remove_suffix(1);
  }
  // "HTTP/1.1 200 OK"
  bool ok = (status_line.starts_with("HTTP/1.1 ") || status_line.starts_with("HTTP/1.0 ")) &&
            status_line.size() >= 12 &&
            std::all_of(status_line.begin() + 9, status_line.begin() + 12,
                        [](char c) { return c >= '0' && c <= '9'; }) &&
            (status_line.size() == 12 || status_line[12] == ' ');
  if (!ok) {
    return invalid("not an HTTP/1.x answer: \"" + sanitize(status_line, 60) + "\"");
  }
  status_ = std::stoi(std::string(status_line.substr(9, 3)));
  while (eol != std::string_view::npos) {
    head.remove_prefix(eol + 1);
    eol = head.find('\n');
    std::string line = lowerAscii(head.substr(0, eol));
    if (!line.empty() && line.back() == '\r') {
      line.pop_back();
    }
    if (line.starts_with("content-length:")) {
      std::string value = line.substr(15);
      value.erase(0, value.find_first_not_of(" \t"));
      value.erase(value.find_last_not_of(" \t") + 1);
      bool digits =
          !value.empty() && value.size() <= 12 &&
          std::all_of(value.begin(), value.end(), [](char c) { return c >= '0' && c <= '9'; });
      if (!digits) {
        return invalid("a Content-Length that is not a number");
      }
      content_length_ = std::stoull(value);
    } else if (line.starts_with("transfer-encoding:")) {
      content_length_.reset();  // chunked: read to the close (or the bound)
    }
  }
  return state_;
}

// ---------------------------------------------------------------------------------------------
// The connection.

HttpPost* HttpPost::start(uv_loop_t* loop, const AlertmanagerUrl& url, std::string_view body,
                          std::chrono::milliseconds timeout, std::shared_ptr<TlsContext> tls,
                          Done done) {
  auto* p = new HttpPost(loop, url, httpPostRequest(url, body), std::move(tls), std::move(done));
  p->begin(timeout);
  return p;
}

HttpPost::HttpPost(uv_loop_t* loop, const AlertmanagerUrl& url, std::string request,
                   std::shared_ptr<TlsContext> tls, Done done)
    : loop_(loop),
      url_(url),
      request_(std::move(request)),
      tls_context_(std::move(tls)),
      done_(std::move(done)) {
  uv_timer_init(loop_, &timer_);
  timer_.data = this;
  open_handles_ = 1;
}

HttpPost::~HttpPost() = default;

std::string HttpPost::where() const {
  return url_.hostHeader();
}

void HttpPost::begin(std::chrono::milliseconds timeout) {
  uv_timer_start(
      &timer_,
      [](uv_timer_t* t) {
        auto* self = static_cast<HttpPost*>(t->data);
        const char* during = self->state_ == State::Resolving    ? "resolving"
                             : self->state_ == State::Connecting ? "connecting"
                             : self->tls_ && !self->tls_->handshakeDone()
                                 ? "in the TLS handshake"
                                 : "waiting for the answer";
        self->finish(PushResult::Timeout,
                     std::string("no complete answer in time (") + during + ")");
      },
      static_cast<uint64_t>(std::max<int64_t>(1, timeout.count())), 0);
  EndpointSpec spec;
  spec.host = url_.host;
  spec.port = url_.port;
  spec.timeouts.resolve = timeout;
  lookup_ = AddressLookup::start(loop_, spec, [this](AddressLookup::Result r) {
    lookup_ = nullptr;
    if (state_ == State::Closing) {
      return;
    }
    if (r.addresses.empty()) {
      finish(r.reason == FailureReason::Timeout ? PushResult::Timeout : PushResult::ResolveFailed,
             r.detail);
      return;
    }
    addresses_ = std::move(r.addresses);
    state_ = State::Connecting;
    connectNext();
  });
}

void HttpPost::connectNext() {
  if (next_address_ >= addresses_.size()) {
    finish(PushResult::ConnectFailed, connect_error_);
    return;
  }
  const sockaddr_storage& address = addresses_[next_address_++];
  tcp_ = new uv_tcp_t;
  uv_tcp_init(loop_, tcp_);
  tcp_->data = this;
  ++open_handles_;
  auto* req = new uv_connect_t;
  req->data = this;
  int rc = uv_tcp_connect(req, tcp_, reinterpret_cast<const sockaddr*>(&address),
                          [](uv_connect_t* r, int status) {
                            auto* self = static_cast<HttpPost*>(r->data);
                            delete r;
                            if (status != UV_ECANCELED) {
                              self->onConnect(status);
                            }
                          });
  if (rc != 0) {
    delete req;
    onConnect(rc);
  }
}

void HttpPost::onConnect(int status) {
  if (state_ == State::Closing) {
    return;
  }
  if (status != 0) {
    const sockaddr_storage& address = addresses_[next_address_ - 1];
    std::string shown =
        address.ss_family == AF_INET6 ? "[" + addressText(address) + "]" : addressText(address);
    connect_error_ =
        "cannot connect to " + shown + ":" + std::to_string(url_.port) + ": " + uv_strerror(status);
    closeTcp();
    connectNext();
    return;
  }
  state_ = State::Open;
  uv_read_start(
      reinterpret_cast<uv_stream_t*>(tcp_),
      [](uv_handle_t*, size_t, uv_buf_t* buf) {
        buf->base = new char[kReadBufferSize];
        buf->len = kReadBufferSize;
      },
      [](uv_stream_t* s, ssize_t nread, const uv_buf_t* buf) {
        static_cast<HttpPost*>(s->data)->onRead(nread, buf);
        delete[] buf->base;
      });
  if (!url_.https) {
    sendRequest();
    return;
  }
  if (!tls_context_) {
    finish(PushResult::TlsFailed, "no TLS context to verify " + where() + " with");
    return;
  }
  tls_ = std::make_unique<TlsChannel>(
      tls_context_, url_.host, std::string(),
      [this](std::string bytes) { return writeRaw(std::move(bytes)); });
  if (tls_->start() == TlsEngine::Status::Failed) {
    finish(PushResult::TlsFailed,
           "TLS handshake with " + where() + " failed: " + tls_->engine().error());
  }
}

void HttpPost::onRead(ssize_t nread, const uv_buf_t* buf) {
  if (state_ != State::Open || nread == 0) {
    return;
  }
  if (nread < 0 && nread != UV_EOF) {
    finish(PushResult::ProtocolError,
           std::string("connection lost: ") + uv_strerror(static_cast<int>(nread)));
    return;
  }
  std::string_view bytes =
      nread > 0 ? std::string_view(buf->base, static_cast<size_t>(nread)) : std::string_view();
  if (tls_) {
    onCiphertext(bytes, nread < 0);
  } else if (nread < 0) {
    onAnswer(reader_.finish());
  } else {
    onAnswer(reader_.feed(bytes));
  }
}

void HttpPost::onCiphertext(std::string_view bytes, bool eof) {
  switch (eof ? tls_->receiveEof() : tls_->receive(bytes)) {
    case TlsChannel::Progress::Failed:
      finish(PushResult::TlsFailed,
             "TLS handshake with " + where() + " failed: " + tls_->engine().error());
      return;
    case TlsChannel::Progress::Handshaking:
      if (eof) {
        finish(PushResult::TlsFailed, where() + " closed the connection in the TLS handshake");
      }
      return;
    case TlsChannel::Progress::Established: {
      // Alerts (and credentials) go only to a server whose certificate verifies.
      TlsFacts facts = tls_->engine().facts();
      if (facts.verify != FailureReason::None) {
        finish(PushResult::TlsFailed, "the certificate of " + where() + " does not verify (" +
                                          std::string(toString(facts.verify)) + ": " +
                                          facts.verify_detail + "); nothing was sent");
        return;
      }
      sendRequest();
      if (state_ != State::Open) {
        return;
      }
      break;
    }
    case TlsChannel::Progress::Open:
      break;
  }
  std::string plaintext;
  TlsEngine::Status st = tls_->read(plaintext);
  if (st != TlsEngine::Status::Failed && state_ == State::Open) {
    st = tls_->writeHeld();  // a request held while the server renegotiated may go now
  }
  if (st == TlsEngine::Status::Failed) {
    finish(PushResult::ProtocolError, "TLS error: " + tls_->engine().error());
    return;
  }
  HttpResponseReader::State answer = reader_.feed(plaintext);
  if (answer == HttpResponseReader::State::NeedMore && (tls_->engine().peerClosed() || eof)) {
    answer = reader_.finish();
  }
  onAnswer(answer);
}

void HttpPost::onAnswer(HttpResponseReader::State state) {
  switch (state) {
    case HttpResponseReader::State::NeedMore:
      return;
    case HttpResponseReader::State::Invalid:
      finish(PushResult::ProtocolError, where() + ": " + reader_.error());
      return;
    case HttpResponseReader::State::Complete:
      result_.status = reader_.status();
      if (reader_.status() >= 200 && reader_.status() < 300) {
        finish(PushResult::Ok, "");
      } else {
        std::string_view words = reader_.body();
        while (!words.empty() &&
               std::string_view(" \t\r\n").find(words.back()) != std::string_view::npos) {
          words.remove_suffix(1);
        }
        std::string body = sanitize(words, 200);
        finish(PushResult::HttpError, "HTTP " + std::to_string(reader_.status()) +
                                          (body.empty() ? std::string() : ": " + body));
      }
      return;
  }
}

void HttpPost::sendRequest() {
  if (!tls_) {
    writeRaw(std::move(request_));
  } else if (tls_->write(std::move(request_)) == TlsEngine::Status::Failed) {
    finish(PushResult::ProtocolError, "TLS error: " + tls_->engine().error());
  }  // WantIo: the server renegotiates; the channel offers it again after its next bytes
}

bool HttpPost::writeRaw(std::string bytes) {
  if (state_ != State::Open) {
    return false;
  }
  int rc = writeOwned(reinterpret_cast<uv_stream_t*>(tcp_), std::move(bytes));
  if (rc != 0) {
    finish(PushResult::ProtocolError, std::string("cannot send: ") + uv_strerror(rc));
    return false;
  }
  return true;
}

void HttpPost::closeTcp() {
  if (tcp_ == nullptr) {
    return;
  }
  uv_close(reinterpret_cast<uv_handle_t*>(tcp_), [](uv_handle_t* h) {
    auto* self = static_cast<HttpPost*>(h->data);
    delete reinterpret_cast<uv_tcp_t*>(h);
    self->onHandleClosed();
  });
  tcp_ = nullptr;
}

void HttpPost::finish(PushResult result, std::string detail) {
  if (state_ == State::Closing) {
    return;
  }
  state_ = State::Closing;
  result_.result = result;
  result_.detail = std::move(detail);
  if (lookup_ != nullptr) {
    lookup_->cancel();
    lookup_ = nullptr;
  }
  uv_timer_stop(&timer_);
  closeTcp();
  uv_close(reinterpret_cast<uv_handle_t*>(&timer_),
           [](uv_handle_t* h) { static_cast<HttpPost*>(h->data)->onHandleClosed(); });
}

void HttpPost::cancel() {
  done_ = nullptr;
  finish(PushResult::Ok, "");
}

void HttpPost::onHandleClosed() {
  if (--open_handles_ > 0 || state_ != State::Closing) {
    return;
  }
  Done done = std::move(done_);
  HttpPostResult result = std::move(result_);
  delete this;
  if (done) {
    done(std::move(result));
  }
}

}  // namespace mailprobe
