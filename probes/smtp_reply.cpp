#include "probes/smtp_reply.h"

#include <algorithm>
#include <charconv>
#include <utility>

namespace mailprobe {
namespace {

constexpr size_t kMaxLogText = 1024;

bool isDigit(char c) {
  return c >= '0' && c <= '9';
}

char upper(char c) {
  return (c >= 'a' && c <= 'z') ? static_cast<char>(c - 'a' + 'A') : c;
}

std::string upperCase(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(), upper);
  return out;
}

// Splits on spaces and tabs, dropping empty words.
std::vector<std::string_view> words(std::string_view s) {
  std::vector<std::string_view> out;
  size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && (s[i] == ' ' || s[i] == '\t'))
      ++i;
    size_t start = i;
    while (i < s.size() && s[i] != ' ' && s[i] != '\t')
      ++i;
    if (i > start)
      out.push_back(s.substr(start, i - start));
  }
  return out;
}

// 1 to 3 digits starting at `pos`; returns the position after them, or npos.
size_t skipDigits(std::string_view s, size_t pos) {
  size_t end = pos;
  while (end < s.size() && end - pos < 4 && isDigit(s[end]))
    ++end;
  return (end == pos || end - pos > 3) ? std::string_view::npos : end;
}

// RFC 3463: class "." subject "." detail, class being the reply's first digit (2, 4 or 5).
std::string enhancedCode(int code, std::string_view text) {
  char cls = static_cast<char>('0' + code / 100);
  if (cls == '3' || text.size() < 5 || text[0] != cls || text[1] != '.')
    return "";
  size_t pos = skipDigits(text, 2);
  if (pos == std::string_view::npos || pos >= text.size() || text[pos] != '.')
    return "";
  pos = skipDigits(text, pos + 1);
  if (pos == std::string_view::npos || (pos < text.size() && text[pos] != ' '))
    return "";
  return std::string(text.substr(0, pos));
}

}  // namespace

bool SmtpReply::positive() const {
  return code >= 200 && code < 400;
}
bool SmtpReply::transientNegative() const {
  return code >= 400 && code < 500;
}
bool SmtpReply::permanentNegative() const {
  return code >= 500 && code < 600;
}

std::string SmtpReply::text() const {
  std::string out;
  for (const std::string& line : lines) {
    if (!out.empty())
      out += ' ';
    out += line;
    if (out.size() > kMaxLogText) {
      out.resize(kMaxLogText);
      out += "...";
      break;
    }
  }
  for (char& c : out) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f)
      c = '?';
  }
  return out;
}

SmtpReplyParser::SmtpReplyParser(size_t max_line, size_t max_lines)
    : framer_(max_line), max_lines_(max_lines) {}

void SmtpReplyParser::fail(std::string why) {
  error_ = std::move(why);
  // What is not a complete reply is dropped: memory stays bounded after a failure.
  framer_.clear();
  current_ = SmtpReply{};
  current_raw_ = 0;
}

void SmtpReplyParser::feed(std::string_view bytes) {
  ready_.received(bytes.size());
  while (!failed() && !bytes.empty()) {
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

void SmtpReplyParser::onLine(std::string_view line, size_t raw_size) {
  bool well_formed = line.size() >= 3 && line[0] >= '2' && line[0] <= '5' && isDigit(line[1]) &&
                     isDigit(line[2]) && (line.size() == 3 || line[3] == ' ' || line[3] == '-');
  if (!well_formed) {
    fail("malformed reply line");
    return;
  }
  int code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
  if (!current_.lines.empty() && code != current_.code) {
    fail("reply code mismatch in multi-line reply");
    return;
  }
  if (current_.lines.size() >= max_lines_) {
    fail("more than " + std::to_string(max_lines_) + " lines in one reply");
    return;
  }
  current_.code = code;
  current_.lines.emplace_back(line.size() > 4 ? line.substr(4) : std::string_view{});
  current_raw_ += raw_size;
  bool last = line.size() == 3 || line[3] == ' ';
  if (!last)
    return;
  current_.enhanced = enhancedCode(code, current_.lines.front());
  ready_.push(std::move(current_), current_raw_);
  current_ = SmtpReply{};
  current_raw_ = 0;
}

std::optional<SmtpReply> SmtpReplyParser::next() {
  return ready_.next();
}

bool EhloCapabilities::has(std::string_view keyword) const {
  std::string wanted = upperCase(keyword);
  return std::find(keywords.begin(), keywords.end(), wanted) != keywords.end();
}

EhloCapabilities EhloCapabilities::parse(const SmtpReply& ehlo_reply) {
  EhloCapabilities caps;
  if (ehlo_reply.code != 250)
    return caps;
  auto addMechanism = [&caps](std::string_view word) {
    std::string mech = upperCase(word);
    if (mech.empty())
      return;
    auto& list = caps.auth_mechanisms;
    if (std::find(list.begin(), list.end(), mech) == list.end())
      list.push_back(std::move(mech));
  };
  // The first line is the server's name and greeting; every later line, the last one included,
  // is an extension.
  for (size_t i = 1; i < ehlo_reply.lines.size(); ++i) {
    std::vector<std::string_view> w = words(ehlo_reply.lines[i]);
    if (w.empty())
      continue;
    std::string keyword = upperCase(w[0]);
    if (keyword == "AUTH" || keyword.starts_with("AUTH=")) {
      if (keyword.size() > 5)
        addMechanism(std::string_view(w[0]).substr(5));
      for (size_t j = 1; j < w.size(); ++j)
        addMechanism(w[j]);
    } else if (keyword == "SIZE" && w.size() > 1) {
      uint64_t n = 0;
      auto [end, ec] = std::from_chars(w[1].data(), w[1].data() + w[1].size(), n);
      if (ec == std::errc() && end == w[1].data() + w[1].size())
        caps.size = n;
    }
    caps.keywords.push_back(std::move(keyword));
  }
  caps.starttls = caps.has("STARTTLS");
  caps.pipelining = caps.has("PIPELINING");
  caps.enhanced_status_codes = caps.has("ENHANCEDSTATUSCODES");
  return caps;
}

}  // namespace mailprobe
