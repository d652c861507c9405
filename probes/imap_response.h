#pragma once
// IMAP server responses (RFC 3501 / RFC 9051 section 7), sans I/O: bytes in, complete
// responses out. A response is one line, or for untagged data a line ending in a literal
// "{N}" / "{N+}" followed by N bytes and the rest of the response. Status responses (OK, NO,
// BAD, BYE, PREAUTH) and continuations carry no literals in the grammar, so a "{5}" at the end
// of their text is text. The parser never throws on bad input; every line, literal and response
// is bounded, and a violation stops the parser with a reason in error().

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "probes/line_framer.h"

namespace mailprobe {

struct ImapResponse {
  enum class Kind { Tagged, Untagged, Continuation };
  Kind kind = Kind::Untagged;
  std::string tag;  // Tagged only
  // Upper case: "OK", "NO", "BAD", "BYE", "PREAUTH" for status responses; for untagged data the
  // keyword, e.g. "CAPABILITY", "EXISTS" (for "* 5 EXISTS", 5 in `number`), "FLAGS", "LIST".
  // Empty for continuations.
  std::string status;
  std::optional<uint64_t> number;
  // Response code inside [ ] without brackets, e.g. "CAPABILITY IMAP4rev1 STARTTLS",
  // "AUTHENTICATIONFAILED"; "" if none. Status responses and continuations only.
  std::string code;
  // Status responses: the human-readable rest after the code. Untagged data: everything after
  // the keyword, literals left as their "{N}" markers. Continuation: what follows "+ ".
  std::string text;
  // The whole response, literal payloads left out (their "{N}" markers stay), control bytes
  // replaced by '?', cut at about 1 KiB: for logs.
  std::string line;
  std::vector<std::string> literals;  // literal payloads, in order
  bool isStatus() const;              // OK/NO/BAD/BYE/PREAUTH
};

// Usage: feed() whatever the transport read, then call next() until it returns nullopt; then
// failed() tells "need more bytes" from "the server broke the protocol". Responses completed
// before an error are still delivered by next(). After failure, feed() ignores its input.
class ImapResponseParser {
 public:
  explicit ImapResponseParser(size_t max_line = 8192, size_t max_literal = 65536,
                              size_t max_response = 262144);
  void feed(std::string_view bytes);
  std::optional<ImapResponse> next();
  bool failed() const { return !error_.empty(); }
  // "line longer than 8192 bytes", "literal of N bytes exceeds 65536", "response longer than
  // 262144 bytes", "malformed response line".
  const std::string& error() const { return error_; }
  // Bytes received that are not part of a response returned by next(), counting bytes a
  // failure dropped and bytes fed after it (a count: they are not kept). After the tagged OK
  // to STARTTLS this must be 0.
  size_t buffered() const { return ready_.buffered(); }

 private:
  void onLine(std::string_view line, size_t raw_size);
  void finishResponse();
  void fail(std::string why);
  void reset();

  LineFramer framer_;
  size_t max_literal_;
  size_t max_response_;
  // The response in progress: the head of its first line and the literals so far in current_,
  // its lines joined (CRLF and literal payloads left out) in logical_.
  bool in_response_ = false;
  ImapResponse current_;
  std::string logical_;
  size_t text_at_ = 0;                  // where the code and text begin in logical_
  bool literals_allowed_ = false;       // decided by the first line: untagged data only
  std::optional<size_t> literal_left_;  // set while reading a literal's payload
  size_t current_raw_ = 0;
  MessageQueue<ImapResponse> ready_;
  std::string error_;
};

// From "* CAPABILITY ..." or a "[CAPABILITY ...]" code on any status response, upper case;
// empty for any other response.
std::vector<std::string> imapCapabilities(const ImapResponse& r);
// "AUTH=PLAIN" -> "PLAIN", upper case, deduplicated, in order.
std::vector<std::string> imapAuthMechanisms(const std::vector<std::string>& caps);
// True if s cannot be sent as a quoted string (CR, LF, NUL, 8-bit, or longer than 1024 bytes).
bool imapNeedsLiteral(std::string_view s);
// "\"...\"" with \ and " escaped. Precondition: !imapNeedsLiteral(s).
std::string imapQuoted(std::string_view s);

}  // namespace mailprobe
