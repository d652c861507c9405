#pragma once
// One TCP connection of a probe, on libuv: connect (optionally from a bound source address),
// the TLS engine for implicit TLS or after STARTTLS, phase timing and the phase deadline. It is
// the SessionHost of one ProtocolSession; the protocol lives in the session.
//
// Lifetime: created by start(), deletes itself after its handles are closed. `done` is called
// exactly once, from a close callback (never inside a caller's stack), unless cancel() was
// called first.

#include <sys/socket.h>
#include <uv.h>

#include <functional>
#include <memory>
#include <string>

#include "probes/session.h"

namespace mailprobe {

class TlsChannel;
class TlsContext;

struct ConnectionResult {
  ConnectionOutcome outcome;
  std::vector<PhaseTiming> timings;
  // For a connection made to try one given mechanism: that mechanism (set by its caller).
  std::string mechanism;
};

// uv_write of `bytes`, which the write request owns until libuv is done with them; returns
// uv_write's code (0, or an error: nothing was queued).
int writeOwned(uv_stream_t* stream, std::string bytes);

class Connection final : public SessionHost {
 public:
  using Done = std::function<void(ConnectionResult)>;

  static Connection* start(uv_loop_t* loop, const sockaddr_storage& address, ConnectionPlan plan,
                           std::shared_ptr<TlsContext> tls, Done done);

  // Ends the conversation now with this reason (in the current phase); `done` still follows.
  void abort(FailureReason reason, std::string detail);
  // Closes without reporting: `done` is never called. The pointer is invalid afterwards.
  void cancel();

  // SessionHost
  void send(std::string_view bytes) override;
  void startTls() override;
  void enterPhase(Phase phase) override;
  void done() override;

 private:
  enum class State { Connecting, Open, Closing };

  Connection(uv_loop_t* loop, ConnectionPlan plan, std::shared_ptr<TlsContext> tls, Done done);
  ~Connection();
  void begin(const sockaddr_storage& address);
  void onConnect(int status);
  void onRead(ssize_t nread, const uv_buf_t* buf);
  void onTimer();
  void onTlsBytes(std::string_view bytes);
  void beginTls();
  void tlsHandshakeFailed();
  void tlsFailed();
  bool writeRaw(std::string bytes);
  void close();
  void onHandleClosed();
  void stampPhase();

  uv_loop_t* loop_;
  const EndpointSpec* spec_;
  uv_tcp_t tcp_;
  uv_timer_t timer_;
  int open_handles_ = 0;
  State state_ = State::Connecting;
  std::shared_ptr<TlsContext> tls_context_;
  std::unique_ptr<TlsChannel> tls_;  // set at the switch to TLS; holds what a renegotiation holds
  std::string session_key_;  // TlsOptions::resumption: the endpoint and this address; else ""
  bool implicit_tls_;
  size_t tls_bytes_seen_ = 0;  // server bytes since the switch to TLS
  std::unique_ptr<ProtocolSession> session_;
  Done done_;
  Phase phase_ = Phase::Connect;
  uint64_t phase_started_ns_ = 0;
  std::vector<PhaseTiming> timings_;
};

}  // namespace mailprobe
