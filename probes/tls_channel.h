#pragma once
// TLS over a byte stream someone else owns: the TlsEngine plus the two chores every owner of a
// socket repeats around it. Ciphertext the engine produces goes out at once through the owner's
// `send`; plaintext the engine cannot take yet (WantIo: the server renegotiates) is held, in
// order, and offered again by writeHeld() after the server's next bytes. The owner keeps its own
// words for failures (a probe's FailureReason and phase, a push's PushResult) and its own rules
// for what may be sent when.
//
// Lifetime: owned by the owner of the socket (Connection, HttpPost). `send` is called only from
// inside the channel's own calls, never later; it may end the owner's conversation, but must not
// destroy the channel (owners free themselves from close callbacks only).

#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "probes/tls_engine.h"

namespace mailprobe {

class TlsChannel {
 public:
  using Status = TlsEngine::Status;
  // Ciphertext for the network. False when the owner can send nothing more (the write failed, or
  // it has ended): the channel then stops offering held plaintext.
  using Send = std::function<bool(std::string ciphertext)>;

  // What one batch of the server's bytes did to the handshake.
  enum class Progress {
    Handshaking,  // not complete yet: wait for more bytes
    Established,  // completed by these bytes: facts() are final; read() next
    Open,         // was complete already: read() next
    Failed,       // the handshake failed: engine().failureReason(), engine().error()
  };

  // Arguments as for TlsEngine.
  TlsChannel(std::shared_ptr<TlsContext> ctx, const std::string& server_name,
             std::string session_key, Send send);
  TlsChannel(const TlsChannel&) = delete;
  TlsChannel& operator=(const TlsChannel&) = delete;

  // Sends the ClientHello. WantIo, or Failed (a setup error).
  Status start();
  Progress receive(std::string_view ciphertext);
  Progress receiveEof();  // the server closed TCP

  // After Established or Open: appends the plaintext the server's bytes carried. Ok (see
  // engine().peerClosed()) or Failed (a TLS error; `out` may have grown all the same).
  Status read(std::string& out);
  // Holds `plaintext` behind anything held before, then writeHeld().
  Status write(std::string plaintext);
  // Offers the held plaintext again, oldest first. Ok (all of it went, or the owner stopped
  // sending), WantIo (the server renegotiates: call again after its next bytes), Failed.
  Status writeHeld();

  bool handshakeDone() const { return engine_.handshakeDone(); }
  TlsEngine& engine() { return engine_; }
  const TlsEngine& engine() const { return engine_; }

 private:
  Progress progress(bool was_done);
  bool flush();  // takeCiphertext to `send`; false when the owner stopped sending

  TlsEngine engine_;
  Send send_;
  std::deque<std::string> held_;
};

}  // namespace mailprobe
