#pragma once
// SMTP replies (RFC 5321 4.2), sans I/O: bytes in, complete replies out. The parser never
// throws on bad input; it stops and says why in error(). Every line and every reply is bounded,
// so a hostile or broken server costs at most max_line * max_lines bytes per reply.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "probes/line_framer.h"

namespace mailprobe {

struct SmtpReply {
  int code = 0;  // 220, 250, 535...
  // "2.7.0" when the first line carries an RFC 3463 enhanced code of the same class as `code`.
  std::string enhanced;
  std::vector<std::string> lines;  // text after "250-" / "250 ", enhanced code kept in the text
  bool positive() const;           // 2xx or 3xx
  bool transientNegative() const;  // 4xx
  bool permanentNegative() const;  // 5xx
  // Lines joined with " ", control bytes replaced by '?', at most ~1 KiB: for logs and details.
  std::string text() const;
};

// Usage: feed() whatever the transport read, then call next() until it returns nullopt; then
// failed() tells "need more bytes" from "the server broke the protocol". Replies completed
// before an error are still delivered by next(). After failure, feed() ignores its input.
class SmtpReplyParser {
 public:
  explicit SmtpReplyParser(size_t max_line = 4096, size_t max_lines = 256);
  void feed(std::string_view bytes);
  std::optional<SmtpReply> next();  // next complete reply, or nullopt (need more bytes, or failed)
  bool failed() const { return !error_.empty(); }
  // Why it failed: "line longer than 4096 bytes", "reply code mismatch in multi-line reply",
  // "malformed reply line", "more than 256 lines in one reply".
  const std::string& error() const { return error_; }
  // Bytes received that are not part of a reply returned by next(), counting bytes a failure
  // dropped and bytes fed after it (a count: they are not kept). After the reply to STARTTLS
  // this must be 0, or the server (or a man in the middle) sent plaintext ahead.
  size_t buffered() const { return ready_.buffered(); }

 private:
  void onLine(std::string_view line, size_t raw_size);
  void fail(std::string why);

  LineFramer framer_;
  size_t max_lines_;
  SmtpReply current_;  // lines of the reply in progress
  size_t current_raw_ = 0;
  MessageQueue<SmtpReply> ready_;
  std::string error_;
};

struct EhloCapabilities {
  std::vector<std::string> keywords;  // upper-cased first word of each line after the first
  // From "AUTH PLAIN LOGIN" and the legacy "AUTH=PLAIN LOGIN", upper case, deduplicated, in order.
  std::vector<std::string> auth_mechanisms;
  bool starttls = false, pipelining = false, enhanced_status_codes = false;
  uint64_t size = 0;  // SIZE parameter; 0 when absent or given without a number
  bool has(std::string_view keyword) const;  // case-insensitive
  // Empty unless ehlo_reply.code is 250: a refused EHLO advertises nothing.
  static EhloCapabilities parse(const SmtpReply& ehlo_reply);
};

}  // namespace mailprobe
