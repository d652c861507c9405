// libFuzzer target: ImapResponseParser, imapCapabilities and the quoting helpers on hostile
// bytes. Beyond "no crash, no leak, no UB" it checks what the session relies on: bounded
// lines, literals and responses, the same responses whatever the read boundaries, buffered()
// counting the undelivered bytes, and quoting that never lets a CR or LF through.

#include <algorithm>
#include <string>
#include <vector>

#include "probes/imap_response.h"
#include "tests/fuzz/fuzz_support.h"

namespace {

using mailprobe::ImapResponse;
using mailprobe::ImapResponseParser;
using mailprobe::fuzz::isPrintable;
using mailprobe::fuzz::isUpper;
using Kind = ImapResponse::Kind;

// Small limits so that the fuzzer reaches them; the defaults are checked by the unit tests.
constexpr size_t kMaxLine = 512;
constexpr size_t kMaxLiteral = 256;
constexpr size_t kMaxResponse = 2048;

bool same(const ImapResponse& a, const ImapResponse& b) {
  return a.kind == b.kind && a.tag == b.tag && a.status == b.status && a.number == b.number &&
         a.code == b.code && a.text == b.text && a.line == b.line && a.literals == b.literals;
}

void checkQuoting(const std::string& s) {
  if (mailprobe::imapNeedsLiteral(s)) {
    return;
  }
  std::string q = mailprobe::imapQuoted(s);
  FUZZ_CHECK(q.size() >= 2 && q.front() == '"' && q.back() == '"');
  FUZZ_CHECK(q.find_first_of("\r\n") == std::string::npos);
  // Unquoting gives the value back: every '"' and '\' inside is escaped.
  std::string back;
  for (size_t i = 1; i + 1 < q.size(); ++i) {
    if (q[i] == '\\') {
      ++i;
      FUZZ_CHECK(i + 1 < q.size());
    } else {
      FUZZ_CHECK(q[i] != '"');
    }
    back += q[i];
  }
  FUZZ_CHECK(back == s);
}

void check(const ImapResponse& r) {
  FUZZ_CHECK((r.kind == Kind::Tagged) == !r.tag.empty());
  FUZZ_CHECK(isUpper(r.status));
  FUZZ_CHECK(r.kind != Kind::Continuation || r.status.empty());
  if (r.kind == Kind::Tagged) {
    FUZZ_CHECK(r.status == "OK" || r.status == "NO" || r.status == "BAD");
  }
  FUZZ_CHECK(r.line.size() <= 1024 + 3);
  FUZZ_CHECK(isPrintable(r.line));
  FUZZ_CHECK(r.text.find('\n') == std::string::npos);  // lines are joined without their CRLF
  size_t literal_bytes = 0;
  for (const std::string& l : r.literals) {
    FUZZ_CHECK(l.size() <= kMaxLiteral);
    literal_bytes += l.size();
  }
  FUZZ_CHECK(literal_bytes + r.text.size() <= kMaxResponse);
  FUZZ_CHECK(r.literals.empty() || (r.kind == Kind::Untagged && !r.isStatus()));

  std::vector<std::string> caps = mailprobe::imapCapabilities(r);
  for (const std::string& c : caps) {
    FUZZ_CHECK(!c.empty() && isUpper(c) && c.find(' ') == std::string::npos);
  }
  std::vector<std::string> mechs = mailprobe::imapAuthMechanisms(caps);
  FUZZ_CHECK(mechs.size() <= caps.size());
  for (const std::string& m : mechs) {
    FUZZ_CHECK(!m.empty() && isUpper(m));
    FUZZ_CHECK(std::count(mechs.begin(), mechs.end(), m) == 1);
  }
  checkQuoting(r.text);
  checkQuoting(r.tag);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // An unfinished response and its unfinished line.
  mailprobe::fuzz::checkParser<ImapResponse>(
      data, size, [] { return ImapResponseParser(kMaxLine, kMaxLiteral, kMaxResponse); }, check,
      same, kMaxResponse + kMaxLine + 2);
  return 0;
}
