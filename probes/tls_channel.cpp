#include "probes/tls_channel.h"

namespace mailprobe {

TlsChannel::TlsChannel(std::shared_ptr<TlsContext> ctx, const std::string& server_name,
                       std::string session_key, Send send)
    : engine_(std::move(ctx), server_name, std::move(session_key)), send_(std::move(send)) {}

bool TlsChannel::flush() {
  std::string out = engine_.takeCiphertext();
  return out.empty() || send_(std::move(out));
}

TlsChannel::Status TlsChannel::start() {
  Status st = engine_.handshake();
  flush();
  return st;
}

TlsChannel::Progress TlsChannel::receive(std::string_view ciphertext) {
  bool was_done = engine_.handshakeDone();
  engine_.feedCiphertext(ciphertext);
  return progress(was_done);
}

TlsChannel::Progress TlsChannel::receiveEof() {
  bool was_done = engine_.handshakeDone();
  engine_.feedEof();
  return progress(was_done);
}

TlsChannel::Progress TlsChannel::progress(bool was_done) {
  if (was_done) {
    return Progress::Open;
  }
  Status st = engine_.handshake();
  flush();
  switch (st) {
    case Status::Ok:
      return Progress::Established;
    case Status::WantIo:
      return Progress::Handshaking;
    case Status::Failed:
      break;
  }
  return Progress::Failed;
}

TlsChannel::Status TlsChannel::read(std::string& out) {
  Status st = engine_.read(out);
  flush();
  return st;
}

TlsChannel::Status TlsChannel::write(std::string plaintext) {
  held_.push_back(std::move(plaintext));
  return writeHeld();
}

TlsChannel::Status TlsChannel::writeHeld() {
  while (!held_.empty()) {
    Status st = engine_.write(held_.front());
    bool sending = flush();
    if (st != Status::Ok) {
      return st;  // WantIo: the same bytes again after the server's next ones (TlsEngine::write)
    }
    held_.pop_front();
    if (!sending) {
      break;
    }
  }
  return Status::Ok;
}

}  // namespace mailprobe
