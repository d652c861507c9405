#include "probes/imap_response.h"

#include <algorithm>
#include <charconv>
#include <limits>
#include <utility>

namespace mailprobe {
namespace {

using Kind = ImapResponse::Kind;

constexpr size_t kMaxLogLine = 1024;
constexpr size_t kMaxQuoted = 1024;

char upper(char c) {
  return (c >= 'a' && c <= 'z') ? static_cast<char>(c - 'a' + 'A') : c;
}

std::string upperCase(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(), upper);
  return out;
}

bool isDigit(char c) {
  return c >= '0' && c <= '9';
}

// ATOM-CHAR of RFC 3501, less "]" (a response code ends there) and "+" (a tag may not use it).
bool isAtomChar(char c) {
  if (c <= 0x20 || c >= 0x7f)
    return false;
  return std::string_view("(){%*\"\\]+").find(c) == std::string_view::npos;
}

bool isStatusWord(std::string_view s) {
  return s == "OK" || s == "NO" || s == "BAD" || s == "BYE" || s == "PREAUTH";
}

// An atom starting at pos; returns its end (pos when there is none).
size_t atomEnd(std::string_view line, size_t pos) {
  while (pos < line.size() && isAtomChar(line[pos]))
    ++pos;
  return pos;
}

// After a word ending at `end`: the position past one separating space, or nullopt if the word
// is followed by anything but a space or the end of the line.
std::optional<size_t> afterWord(std::string_view line, size_t end) {
  if (end == line.size())
    return end;
  if (line[end] != ' ')
    return std::nullopt;
  return end + 1;
}

// The part of a response line before its text: who speaks (kind, tag), and the status or data
// keyword (with the number before it). Returns where the code and text (or the data) begin.
std::optional<size_t> parseHead(std::string_view line, ImapResponse& head) {
  if (!line.empty() && line[0] == '+') {
    head.kind = Kind::Continuation;
    return line.size() > 1 && line[1] == ' ' ? 2 : 1;
  }
  size_t pos = 0;
  if (line.starts_with("* ")) {
    pos = 2;
    size_t digits = pos;
    while (digits < line.size() && isDigit(line[digits]))
      ++digits;
    if (digits > pos) {
      uint64_t n = 0;
      auto [ptr, ec] = std::from_chars(line.data() + pos, line.data() + digits, n);
      if (ec != std::errc() || digits == line.size() || line[digits] != ' ')
        return std::nullopt;
      head.number = n;
      pos = digits + 1;
    }
  } else {
    head.kind = Kind::Tagged;
    size_t end = atomEnd(line, 0);
    if (end == 0 || end == line.size() || line[end] != ' ')
      return std::nullopt;
    head.tag = std::string(line.substr(0, end));
    pos = end + 1;
  }
  size_t end = atomEnd(line, pos);
  if (end == pos)
    return std::nullopt;
  head.status = upperCase(line.substr(pos, end - pos));
  if (head.kind == Kind::Tagged && head.status != "OK" && head.status != "NO" &&
      head.status != "BAD") {
    return std::nullopt;
  }
  return afterWord(line, end);
}

// A literal marker "{N}" or "{N+}" ending the line: N, saturated on overflow.
std::optional<uint64_t> literalAtEnd(std::string_view line) {
  if (line.empty() || line.back() != '}')
    return std::nullopt;
  size_t end = line.size() - 1;
  if (end > 0 && line[end - 1] == '+')
    --end;
  size_t start = end;
  while (start > 0 && isDigit(line[start - 1]))
    --start;
  if (start == end || start == 0 || line[start - 1] != '{')
    return std::nullopt;
  uint64_t n = 0;
  auto [ptr, ec] = std::from_chars(line.data() + start, line.data() + end, n);
  return ec == std::errc() ? n : std::numeric_limits<uint64_t>::max();
}

std::string forLog(std::string_view s) {
  std::string out(s.substr(0, kMaxLogLine));
  for (char& c : out) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f)
      c = '?';
  }
  if (s.size() > kMaxLogLine)
    out += "...";
  return out;
}

}  // namespace

bool ImapResponse::isStatus() const {
  return kind != Kind::Continuation && isStatusWord(status);
}

ImapResponseParser::ImapResponseParser(size_t max_line, size_t max_literal, size_t max_response)
    : framer_(max_line), max_literal_(max_literal), max_response_(max_response) {}

void ImapResponseParser::reset() {
  current_ = ImapResponse{};
  in_response_ = false;
  logical_.clear();
  literals_allowed_ = false;
  literal_left_.reset();
  current_raw_ = 0;
}

void ImapResponseParser::fail(std::string why) {
  error_ = std::move(why);
  // What is not a complete response is dropped: memory stays bounded after a failure.
  reset();
  framer_.clear();
  logical_.shrink_to_fit();
}

void ImapResponseParser::feed(std::string_view bytes) {
  ready_.received(bytes.size());
  while (!failed() && !bytes.empty()) {
    if (literal_left_) {
      size_t take = std::min(*literal_left_, bytes.size());
      current_.literals.back().append(bytes.substr(0, take));
      bytes.remove_prefix(take);
      current_raw_ += take;
      *literal_left_ -= take;
      if (*literal_left_ == 0)
        literal_left_.reset();
      continue;
    }
    std::optional<LineFramer::Line> line = framer_.take(bytes);
    if (!line) {
      if (!framer_.error().empty()) {
        fail(framer_.error());
      }
      return;
    }
    onLine(line->text, line->raw_size);
  }
}

void ImapResponseParser::onLine(std::string_view line, size_t raw_size) {
  current_raw_ += raw_size;
  if (current_raw_ > max_response_) {
    fail("response longer than " + std::to_string(max_response_) + " bytes");
    return;
  }
  if (!in_response_) {
    std::optional<size_t> text_at = parseHead(line, current_);
    if (!text_at) {
      fail("malformed response line");
      return;
    }
    in_response_ = true;
    text_at_ = *text_at;
    literals_allowed_ = current_.kind == Kind::Untagged && !isStatusWord(current_.status);
  }
  logical_.append(line);
  std::optional<uint64_t> literal = literals_allowed_ ? literalAtEnd(line) : std::nullopt;
  if (!literal) {
    finishResponse();
    return;
  }
  if (*literal > max_literal_) {
    fail("literal of " + std::to_string(*literal) + " bytes exceeds " +
         std::to_string(max_literal_));
    return;
  }
  if (current_raw_ + *literal > max_response_) {
    fail("response longer than " + std::to_string(max_response_) + " bytes");
    return;
  }
  current_.literals.emplace_back();
  current_.literals.back().reserve(*literal);
  if (*literal > 0)
    literal_left_ = *literal;
}

void ImapResponseParser::finishResponse() {
  // Kind, tag, number and status came from the first line; literals as they arrived.
  ImapResponse r = std::move(current_);
  std::string_view rest = std::string_view(logical_).substr(text_at_);
  if (!literals_allowed_ && rest.starts_with('[')) {
    size_t close = rest.find(']');
    if (close != std::string_view::npos) {
      r.code = std::string(rest.substr(1, close - 1));
      rest.remove_prefix(close + 1);
      if (rest.starts_with(' '))
        rest.remove_prefix(1);
    }
  }
  r.text = std::string(rest);
  r.line = forLog(logical_);
  ready_.push(std::move(r), current_raw_);
  reset();
}

std::optional<ImapResponse> ImapResponseParser::next() {
  return ready_.next();
}

std::vector<std::string> imapCapabilities(const ImapResponse& r) {
  std::string_view list;
  if (r.kind == Kind::Untagged && r.status == "CAPABILITY") {
    list = r.text;
  } else if (r.isStatus()) {
    std::string_view code = r.code;
    size_t end = atomEnd(code, 0);
    if (upperCase(code.substr(0, end)) != "CAPABILITY")
      return {};
    list = code.substr(end);
  }
  std::vector<std::string> caps;
  size_t pos = 0;
  while (pos < list.size()) {
    size_t end = list.find(' ', pos);
    if (end == std::string_view::npos)
      end = list.size();
    if (end > pos)
      caps.push_back(upperCase(list.substr(pos, end - pos)));
    pos = end + 1;
  }
  return caps;
}

std::vector<std::string> imapAuthMechanisms(const std::vector<std::string>& caps) {
  std::vector<std::string> mechanisms;
  for (const std::string& cap : caps) {
    if (cap.size() <= 5 || upperCase(std::string_view(cap).substr(0, 5)) != "AUTH=")
      continue;
    std::string mech = upperCase(std::string_view(cap).substr(5));
    if (std::find(mechanisms.begin(), mechanisms.end(), mech) == mechanisms.end()) {
      mechanisms.push_back(std::move(mech));
    }
  }
  return mechanisms;
}

bool imapNeedsLiteral(std::string_view s) {
  if (s.size() > kMaxQuoted)
    return true;
  return std::any_of(s.begin(), s.end(), [](char c) {
    return c == '\r' || c == '\n' || c == '\0' || static_cast<unsigned char>(c) >= 0x80;
  });
}

std::string imapQuoted(std::string_view s) {
  std::string out;
  out.reserve(s.size() + 2);
  out += '"';
  for (char c : s) {
    if (c == '\\' || c == '"')
      out += '\\';
    out += c;
  }
  out += '"';
  return out;
}

}  // namespace mailprobe
