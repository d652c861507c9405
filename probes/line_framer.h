#pragma once
// What the SMTP reply and IMAP response parsers share, sans I/O (STYLE habit 4): line framing
// with a bound, and the queue of complete messages with the byte count behind buffered().
//
// A line ends at LF; a CR just before it is dropped, so a bare LF from a broken server is
// accepted. No line may be longer than max_line bytes (CR LF not counted), and the line in
// progress never holds more than max_line + 1 bytes, whatever the server sends.

#include <cstddef>
#include <deque>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

namespace mailprobe {

class LineFramer {
 public:
  explicit LineFramer(size_t max_line) : max_line_(max_line) {}

  struct Line {
    std::string_view text;  // without its CR LF; valid until the next call
    size_t raw_size = 0;    // the bytes it took on the wire, CR LF included
  };
  // Takes bytes from the front of `bytes`, up to and including the next LF, and returns the
  // line they complete. nullopt when `bytes` ran out first (all of it is kept as the line in
  // progress), or when the line is too long: then error() says so and nothing more is taken.
  std::optional<Line> take(std::string_view& bytes);
  // "line longer than N bytes" once a line was too long; "" before.
  const std::string& error() const { return error_; }
  // Drops the line in progress and releases its memory (after the parser failed).
  void clear();

 private:
  std::optional<Line> tooLong();

  size_t max_line_;
  std::string partial_;  // bytes of the line in progress, LF not yet seen
  std::string line_;     // the line take() returned last
  std::string error_;
};

// Complete messages waiting for the parser's next(), and the bytes behind them. buffered() is
// every byte received that is not part of a message next() has returned: bytes of a message in
// progress, of messages not yet returned, and bytes a failure dropped or that came after it.
template <typename Message>
class MessageQueue {
 public:
  void received(size_t bytes) { received_ += bytes; }
  void push(Message message, size_t raw_size) {
    ready_.push_back(Ready{std::move(message), raw_size});
  }
  std::optional<Message> next() {
    if (ready_.empty()) {
      return std::nullopt;
    }
    Ready r = std::move(ready_.front());
    ready_.pop_front();
    returned_ += r.raw_size;
    return std::move(r.message);
  }
  size_t buffered() const { return received_ - returned_; }

 private:
  struct Ready {
    Message message;
    size_t raw_size;
  };
  std::deque<Ready> ready_;
  size_t received_ = 0;
  size_t returned_ = 0;
};

}  // namespace mailprobe
