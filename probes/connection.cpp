#include "probes/connection.h"

#include "probes/address_lookup.h"
#include "probes/imap_session.h"
#include "probes/smtp_session.h"
#include "probes/tls_channel.h"

namespace mailprobe {
namespace {

constexpr size_t kReadBufferSize = 16 * 1024;

std::string uvError(int status) {
  return uv_strerror(status);
}

// TLS records start with a content type of 20..24; text from a server does not.
bool looksLikeTls(unsigned char first) {
  return first >= 0x14 && first <= 0x18;
}

FailureReason connectFailure(int status) {
  switch (status) {
    case UV_ETIMEDOUT:
      return FailureReason::ConnectTimeout;
    default:
      return FailureReason::ConnectRefused;  // refused, unreachable, no route
  }
}

}  // namespace

int writeOwned(uv_stream_t* stream, std::string bytes) {
  struct WriteRequest {
    uv_write_t req;
    std::string data;
  };
  auto* w = new WriteRequest;
  w->data = std::move(bytes);
  uv_buf_t buf = uv_buf_init(w->data.data(), static_cast<unsigned>(w->data.size()));
  int rc = uv_write(&w->req, stream, &buf, 1,
                    [](uv_write_t* req, int) { delete reinterpret_cast<WriteRequest*>(req); });
  if (rc != 0) {
    delete w;
  }
  return rc;
}

Connection* Connection::start(uv_loop_t* loop, const sockaddr_storage& address, ConnectionPlan plan,
                              std::shared_ptr<TlsContext> tls, Done done) {
  auto* c = new Connection(loop, std::move(plan), std::move(tls), std::move(done));
  c->begin(address);
  return c;
}

Connection::Connection(uv_loop_t* loop, ConnectionPlan plan, std::shared_ptr<TlsContext> tls,
                       Done done)
    : loop_(loop),
      spec_(plan.spec),
      tls_context_(std::move(tls)),
      implicit_tls_(plan.spec->security == Security::Tls),
      done_(std::move(done)) {
  if (spec_->service == Service::Imap) {
    session_ = std::make_unique<ImapSession>(*this, std::move(plan));
  } else {
    session_ = std::make_unique<SmtpSession>(*this, std::move(plan));
  }
  uv_tcp_init(loop_, &tcp_);
  uv_timer_init(loop_, &timer_);
  tcp_.data = this;
  timer_.data = this;
  open_handles_ = 2;
}

Connection::~Connection() = default;

void Connection::begin(const sockaddr_storage& address) {
  if (spec_->tls.resumption) {
    // One session per endpoint and address: a session only goes back to the server it came
    // from, and every address of a pool keeps its own.
    session_key_ = spec_->host + "|" + std::to_string(spec_->port) + "|" +
                   std::string(toString(spec_->service)) + "|" +
                   std::string(toString(spec_->security)) + "|" + spec_->source_address + "|" +
                   addressText(address);
  }
  enterPhase(Phase::Connect);
  const std::string& source = spec_->source_address;
  if (!source.empty()) {
    sockaddr_storage src{};
    int rc = address.ss_family == AF_INET6
                 ? uv_ip6_addr(source.c_str(), 0, reinterpret_cast<sockaddr_in6*>(&src))
                 : uv_ip4_addr(source.c_str(), 0, reinterpret_cast<sockaddr_in*>(&src));
    if (rc == 0) {
      rc = uv_tcp_bind(&tcp_, reinterpret_cast<const sockaddr*>(&src), 0);
    }
    if (rc != 0) {
      abort(FailureReason::ConnectRefused,
            "cannot use source address " + source + ": " + uvError(rc));
      return;
    }
  }
  auto* req = new uv_connect_t;
  req->data = this;
  int rc = uv_tcp_connect(req, &tcp_, reinterpret_cast<const sockaddr*>(&address),
                          [](uv_connect_t* r, int status) {
                            auto* self = static_cast<Connection*>(r->data);
                            delete r;
                            if (status != UV_ECANCELED) {
                              self->onConnect(status);
                            }
                          });
  if (rc != 0) {
    delete req;
    abort(connectFailure(rc), "connect: " + uvError(rc));
  }
}

void Connection::onConnect(int status) {
  if (state_ == State::Closing) {
    return;
  }
  if (status != 0) {
    abort(connectFailure(status), "connect: " + uvError(status));
    return;
  }
  state_ = State::Open;
  uv_read_start(
      reinterpret_cast<uv_stream_t*>(&tcp_),
      [](uv_handle_t*, size_t, uv_buf_t* buf) {
        buf->base = new char[kReadBufferSize];
        buf->len = kReadBufferSize;
      },
      [](uv_stream_t* s, ssize_t nread, const uv_buf_t* buf) {
        auto* self = static_cast<Connection*>(s->data);
        self->onRead(nread, buf);
        delete[] buf->base;
      });
  if (implicit_tls_) {
    beginTls();
    return;
  }
  session_->onConnected(std::nullopt);
}

void Connection::onRead(ssize_t nread, const uv_buf_t* buf) {
  if (state_ == State::Closing || nread == 0) {
    return;
  }
  if (nread < 0) {
    if (tls_ && !tls_->handshakeDone()) {
      session_->abort(FailureReason::ConnectionClosed, Phase::TlsHandshake,
                      "the server closed the connection during the TLS handshake");
    } else if (nread == UV_EOF) {
      session_->onPeerClosed(phase_);
    } else {
      session_->abort(FailureReason::ConnectionClosed, phase_,
                      "connection lost: " + uvError(static_cast<int>(nread)));
    }
    close();
    return;
  }
  std::string_view bytes(buf->base, static_cast<size_t>(nread));
  if (tls_) {
    onTlsBytes(bytes);
  } else {
    session_->onData(bytes);
  }
}

void Connection::onTlsBytes(std::string_view bytes) {
  if (!implicit_tls_ && tls_bytes_seen_ == 0 &&
      !looksLikeTls(static_cast<unsigned char>(bytes.front()))) {
    // Text where the ServerHello should be: the server (or someone in the path) kept talking
    // in clear after accepting STARTTLS.
    session_->abort(FailureReason::PlaintextAfterStartTls, Phase::TlsHandshake,
                    "plaintext instead of a TLS handshake after STARTTLS: " + sanitize(bytes, 60));
    close();
    return;
  }
  tls_bytes_seen_ += bytes.size();
  switch (tls_->receive(bytes)) {
    case TlsChannel::Progress::Handshaking:
      return;
    case TlsChannel::Progress::Failed:
      tlsHandshakeFailed();
      return;
    case TlsChannel::Progress::Established:
      if (implicit_tls_) {
        session_->onConnected(tls_->engine().facts());
      } else {
        session_->onTlsEstablished(tls_->engine().facts());
      }
      if (state_ == State::Closing) {
        return;
      }
      break;
    case TlsChannel::Progress::Open:
      break;
  }
  std::string plaintext;
  TlsEngine::Status st = tls_->read(plaintext);
  if (st != TlsEngine::Status::Failed && state_ == State::Open &&
      tls_->writeHeld() == TlsEngine::Status::Failed) {  // what a renegotiation held may go now
    tlsFailed();
  }
  if (!plaintext.empty()) {
    session_->onData(plaintext);
  }
  if (state_ == State::Closing) {
    return;
  }
  if (st == TlsEngine::Status::Failed) {
    tlsFailed();
  } else if (tls_->engine().peerClosed()) {
    session_->onPeerClosed(phase_);
    close();
  }
}

void Connection::beginTls() {
  enterPhase(Phase::TlsHandshake);
  tls_ = std::make_unique<TlsChannel>(
      tls_context_, spec_->host, session_key_,
      [this](std::string bytes) { return writeRaw(std::move(bytes)); });
  if (tls_->start() == TlsEngine::Status::Failed) {
    tlsHandshakeFailed();
  }
}

void Connection::send(std::string_view bytes) {
  if (state_ != State::Open) {
    return;
  }
  if (!tls_) {
    writeRaw(std::string(bytes));
  } else if (tls_->write(std::string(bytes)) == TlsEngine::Status::Failed) {
    tlsFailed();
  }
}

void Connection::tlsHandshakeFailed() {
  session_->abort(tls_->engine().failureReason(), Phase::TlsHandshake, tls_->engine().error());
  close();
}

// After the handshake, any TLS error ends the conversation as a lost connection.
void Connection::tlsFailed() {
  session_->abort(FailureReason::ConnectionClosed, phase_, "TLS error: " + tls_->engine().error());
  close();
}

bool Connection::writeRaw(std::string bytes) {
  if (state_ != State::Open) {
    return false;
  }
  int rc = writeOwned(reinterpret_cast<uv_stream_t*>(&tcp_), std::move(bytes));
  if (rc != 0) {
    session_->abort(FailureReason::ConnectionClosed, phase_, "write: " + uvError(rc));
    close();
    return false;
  }
  return true;
}

void Connection::startTls() {
  if (state_ != State::Open) {
    return;
  }
  beginTls();
}

void Connection::stampPhase() {
  uint64_t now = uv_hrtime();
  double seconds = static_cast<double>(now - phase_started_ns_) / 1e9;
  for (auto& t : timings_) {
    if (t.phase == phase_) {
      t.seconds += seconds;
      phase_started_ns_ = now;
      return;
    }
  }
  timings_.push_back({phase_, seconds});
  phase_started_ns_ = now;
}

void Connection::enterPhase(Phase phase) {
  if (state_ == State::Closing) {
    return;
  }
  if (phase_started_ns_ != 0) {
    stampPhase();
  } else {
    phase_started_ns_ = uv_hrtime();
  }
  phase_ = phase;
  auto timeout = phase == Phase::Connect ? spec_->timeouts.connect : spec_->timeouts.phase;
  uv_timer_start(
      &timer_, [](uv_timer_t* t) { static_cast<Connection*>(t->data)->onTimer(); },
      static_cast<uint64_t>(std::max<int64_t>(1, timeout.count())), 0);
}

void Connection::onTimer() {
  if (phase_ == Phase::Connect) {
    abort(FailureReason::ConnectTimeout, "no answer to the connection attempt in time");
  } else {
    abort(FailureReason::Timeout,
          std::string("no answer in time during ") + std::string(toString(phase_)));
  }
}

void Connection::abort(FailureReason reason, std::string detail) {
  session_->abort(reason, phase_, std::move(detail));
  close();
}

void Connection::done() {
  if (!session_key_.empty() && tls_ && state_ == State::Open) {
    // The conversation ended well: say so (close_notify), or OpenSSL will not resume the
    // session. Best effort, without a request: the server may already be gone.
    tls_->engine().shutdown();
    std::string alert = tls_->engine().takeCiphertext();
    uv_buf_t buf = uv_buf_init(alert.data(), static_cast<unsigned>(alert.size()));
    if (!alert.empty()) {
      uv_try_write(reinterpret_cast<uv_stream_t*>(&tcp_), &buf, 1);
    }
  }
  close();
}

void Connection::cancel() {
  done_ = nullptr;
  close();
}

void Connection::close() {
  if (state_ == State::Closing) {
    return;
  }
  if (phase_started_ns_ != 0) {
    stampPhase();
  }
  state_ = State::Closing;
  uv_timer_stop(&timer_);
  auto on_closed = [](uv_handle_t* h) { static_cast<Connection*>(h->data)->onHandleClosed(); };
  uv_close(reinterpret_cast<uv_handle_t*>(&timer_), on_closed);
  uv_close(reinterpret_cast<uv_handle_t*>(&tcp_), on_closed);
}

void Connection::onHandleClosed() {
  if (--open_handles_ > 0) {
    return;
  }
  if (done_) {
    // A session that never finished (closed by us on cancel or error paths) is finished here.
    session_->abort(FailureReason::ConnectionClosed, phase_, "connection closed");
    Done done = std::move(done_);
    ConnectionResult result{session_->outcome(), std::move(timings_)};
    delete this;
    done(std::move(result));
    return;
  }
  delete this;
}

}  // namespace mailprobe
