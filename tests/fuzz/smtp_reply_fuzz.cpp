// libFuzzer target: SmtpReplyParser and EhloCapabilities on hostile bytes. Beyond "no crash,
// no leak, no UB" it checks what the session relies on: bounded lines and replies, the same
// replies whatever the read boundaries, and buffered() counting exactly the undelivered bytes.

#include <algorithm>
#include <string>
#include <vector>

#include "probes/smtp_reply.h"
#include "tests/fuzz/fuzz_support.h"

namespace {

using mailprobe::EhloCapabilities;
using mailprobe::SmtpReply;
using mailprobe::SmtpReplyParser;
using mailprobe::fuzz::isPrintable;
using mailprobe::fuzz::isUpper;

// Small limits so that the fuzzer reaches them; the defaults are checked by the unit tests.
constexpr size_t kMaxLine = 128;
constexpr size_t kMaxLines = 16;

bool same(const SmtpReply& a, const SmtpReply& b) {
  return a.code == b.code && a.enhanced == b.enhanced && a.lines == b.lines;
}

void check(const SmtpReply& r) {
  FUZZ_CHECK(r.code >= 200 && r.code <= 599);
  FUZZ_CHECK(!r.lines.empty() && r.lines.size() <= kMaxLines);
  for (const std::string& line : r.lines) {
    FUZZ_CHECK(line.size() <= kMaxLine);
    FUZZ_CHECK(line.find('\n') == std::string::npos);
  }
  FUZZ_CHECK(r.enhanced.empty() || (r.enhanced[0] == '0' + r.code / 100 && r.enhanced.size() >= 5 &&
                                    r.lines.front().starts_with(r.enhanced)));
  FUZZ_CHECK(r.positive() + r.transientNegative() + r.permanentNegative() == 1);
  std::string text = r.text();
  FUZZ_CHECK(text.size() <= 1024 + 3);
  FUZZ_CHECK(isPrintable(text));

  EhloCapabilities caps = EhloCapabilities::parse(r);
  if (r.code != 250) {
    FUZZ_CHECK(caps.keywords.empty() && caps.auth_mechanisms.empty() && !caps.starttls);
    return;
  }
  FUZZ_CHECK(caps.keywords.size() <= r.lines.size() - 1);
  for (const std::string& k : caps.keywords) {
    FUZZ_CHECK(!k.empty() && isUpper(k));
  }
  for (const std::string& m : caps.auth_mechanisms) {
    FUZZ_CHECK(!m.empty() && isUpper(m));
    FUZZ_CHECK(std::count(caps.auth_mechanisms.begin(), caps.auth_mechanisms.end(), m) == 1);
  }
  FUZZ_CHECK(caps.starttls == caps.has("starttls"));
  FUZZ_CHECK(caps.pipelining == caps.has("PIPELINING"));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // An unfinished reply and the line after it.
  mailprobe::fuzz::checkParser<SmtpReply>(
      data, size, [] { return SmtpReplyParser(kMaxLine, kMaxLines); }, check, same,
      (kMaxLine + 2) * (kMaxLines + 1));
  return 0;
}
