#include "probes/smtp_reply.h"

#include <gtest/gtest.h>

#include <functional>
#include <string>
#include <vector>

namespace mailprobe {
namespace {

using namespace std::string_literals;

struct ExpectedReply {
  int code;
  std::string enhanced;
  std::vector<std::string> lines;
};

// In a row's `buffered`: every byte of the input (nothing was delivered).
constexpr size_t kAll = SIZE_MAX;

struct ParseRow {
  std::string name;
  std::string input;
  std::vector<ExpectedReply> replies;  // in order
  std::string error = {};              // "" when the parser must not fail
  // Bytes not delivered as replies once every reply has been taken, dropped ones included.
  size_t buffered = 0;
};

const std::string kPostfixEhlo =
    "250-mail.example.org\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250-VRFY\r\n250-ETRN\r\n"
    "250-STARTTLS\r\n250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n250-DSN\r\n250-SMTPUTF8\r\n"
    "250 CHUNKING\r\n";

void PrintTo(const ParseRow& row, std::ostream* os) {
  *os << row.name;
}

const std::vector<ParseRow>& parseRows() {
  static const std::vector<ParseRow> rows = {
      {"PostfixGreeting",
       "220 mail.example.org ESMTP Postfix (Debian/GNU)\r\n",
       {{220, "", {"mail.example.org ESMTP Postfix (Debian/GNU)"}}}},
      {"PostfixEhlo",
       kPostfixEhlo,
       {{250,
         "",
         {"mail.example.org", "PIPELINING", "SIZE 10240000", "VRFY", "ETRN", "STARTTLS",
          "ENHANCEDSTATUSCODES", "8BITMIME", "DSN", "SMTPUTF8", "CHUNKING"}}}},
      {"MultiLineGreeting",
       "220-mx.example.net ESMTP\r\n220-Unauthorized use prohibited\r\n220 Ready\r\n",
       {{220, "", {"mx.example.net ESMTP", "Unauthorized use prohibited", "Ready"}}}},
      {"Greeting421",
       "421 4.3.2 Service not available, closing transmission channel\r\n",
       {{421, "4.3.2", {"4.3.2 Service not available, closing transmission channel"}}}},
      {"Greeting554",
       "554 5.7.1 <unknown[192.0.2.1]>: Client host rejected: Access denied\r\n",
       {{554, "5.7.1", {"5.7.1 <unknown[192.0.2.1]>: Client host rejected: Access denied"}}}},
      {"BareLf",
       "250-mx.example.net\n250-PIPELINING\n250 STARTTLS\n",
       {{250, "", {"mx.example.net", "PIPELINING", "STARTTLS"}}}},
      {"MixedCrlfAndLf", "250-mx\r\n250 AUTH PLAIN\n", {{250, "", {"mx", "AUTH PLAIN"}}}},
      {"AuthSucceeded",
       "235 2.7.0 Authentication successful\r\n",
       {{235, "2.7.0", {"2.7.0 Authentication successful"}}}},
      {"AuthFailed",
       "535 5.7.8 Error: authentication failed: authentication failure\r\n",
       {{535, "5.7.8", {"5.7.8 Error: authentication failed: authentication failure"}}}},
      {"EnhancedThreeDigitParts",
       "550 5.1.10 RESOLVER.ADR.RecipientNotFound; not found\r\n",
       {{550, "5.1.10", {"5.1.10 RESOLVER.ADR.RecipientNotFound; not found"}}}},
      {"EnhancedClassMustMatch",
       "250 5.0.0 odd but the class differs\r\n",
       {{250, "", {"5.0.0 odd but the class differs"}}}},
      {"EnhancedNeedsAllThreeParts", "250 2.0 Ok\r\n", {{250, "", {"2.0 Ok"}}}},
      {"EnhancedNotGluedToText", "250 2.0.0Ok\r\n", {{250, "", {"2.0.0Ok"}}}},
      {"EnhancedOnlyFromFirstLine",
       "250-first\r\n250 2.0.0 second\r\n",
       {{250, "", {"first", "2.0.0 second"}}}},
      {"IntermediateHasNoEnhanced",
       "354 End data with <CR><LF>.<CR><LF>\r\n",
       {{354, "", {"End data with <CR><LF>.<CR><LF>"}}}},
      {"CodeOnly", "250\r\n", {{250, "", {""}}}},
      {"EmptyContinuation", "250-\r\n250 x\r\n", {{250, "", {"", "x"}}}},
      {"PipelinedReplies",
       "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n",
       {{250, "2.1.0", {"2.1.0 Ok"}},
        {250, "2.1.5", {"2.1.5 Ok"}},
        {354, "", {"End data with <CR><LF>.<CR><LF>"}}}},
      {"IncompleteReplyStaysBuffered", "250-a\r\n250 b", {}, "", 12},
      {"CompleteThenIncomplete", "220 hi\r\n250-a\r\n", {{220, "", {"hi"}}}, "", 7},
      {"MismatchedCodes",
       "250-mx.example.net\r\n251 ok\r\n",
       {},
       "reply code mismatch in multi-line reply",
       kAll},
      {"ReplyThenMismatch",
       "220 hi\r\n250-a\r\n550 b\r\n",
       {{220, "", {"hi"}}},
       "reply code mismatch in multi-line reply",
       14},
      {"HttpServer", "HTTP/1.1 400 Bad Request\r\n", {}, "malformed reply line", kAll},
      {"TlsServerBytes",
       "\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03\n"s,
       {},
       "malformed reply line",
       kAll},
      {"NulBytes", "\0\0\0\0\n"s, {}, "malformed reply line", kAll},
      {"CodeBelow200", "199 too low\r\n", {}, "malformed reply line", kAll},
      {"CodeAbove5xx", "600 too high\r\n", {}, "malformed reply line", kAll},
      {"TwoDigitCode", "25 short\r\n", {}, "malformed reply line", kAll},
      {"BadSeparator", "250_x\r\n", {}, "malformed reply line", kAll},
      {"LetterInCode", "2a0 x\r\n", {}, "malformed reply line", kAll},
      {"EmptyLine", "\r\n", {}, "malformed reply line", kAll},
      {"GarbageAfterReply",
       "220 hi\r\n+OK POP3 ready\r\n",
       {{220, "", {"hi"}}},
       "malformed reply line",
       16},
  };
  return rows;
}

struct Outcome {
  std::vector<SmtpReply> replies;
  std::string error;
  size_t buffered = 0;
};

// Feeds `input` in the pieces `split` yields, taking replies after every feed like a session.
Outcome run(const std::string& input, const std::function<std::vector<size_t>()>& split) {
  SmtpReplyParser parser;
  Outcome out;
  size_t pos = 0;
  for (size_t len : split()) {
    parser.feed(std::string_view(input).substr(pos, len));
    pos += len;
    while (auto r = parser.next())
      out.replies.push_back(std::move(*r));
  }
  EXPECT_EQ(pos, input.size());
  out.error = parser.failed() ? parser.error() : "";
  EXPECT_EQ(parser.failed(), !out.error.empty());
  out.buffered = parser.buffered();
  return out;
}

void expectOutcome(const ParseRow& row, const Outcome& got, const std::string& how) {
  SCOPED_TRACE(row.name + " fed " + how);
  EXPECT_EQ(got.error, row.error);
  EXPECT_EQ(got.buffered, row.buffered == kAll ? row.input.size() : row.buffered);
  ASSERT_EQ(got.replies.size(), row.replies.size());
  for (size_t i = 0; i < row.replies.size(); ++i) {
    EXPECT_EQ(got.replies[i].code, row.replies[i].code) << "reply " << i;
    EXPECT_EQ(got.replies[i].enhanced, row.replies[i].enhanced) << "reply " << i;
    EXPECT_EQ(got.replies[i].lines, row.replies[i].lines) << "reply " << i;
  }
}

class SmtpReplyTable : public ::testing::TestWithParam<ParseRow> {};

TEST_P(SmtpReplyTable, OneFeed) {
  const ParseRow& row = GetParam();
  expectOutcome(row, run(row.input, [&] { return std::vector<size_t>{row.input.size()}; }),
                "at once");
}

TEST_P(SmtpReplyTable, ByteByByte) {
  const ParseRow& row = GetParam();
  expectOutcome(row, run(row.input, [&] { return std::vector<size_t>(row.input.size(), 1); }),
                "byte by byte");
}

TEST_P(SmtpReplyTable, EveryTwoWaySplit) {
  const ParseRow& row = GetParam();
  for (size_t cut = 0; cut <= row.input.size(); ++cut) {
    expectOutcome(row,
                  run(row.input,
                      [&] {
                        return std::vector<size_t>{cut, row.input.size() - cut};
                      }),
                  "split at " + std::to_string(cut));
  }
}

INSTANTIATE_TEST_SUITE_P(Smtp, SmtpReplyTable, ::testing::ValuesIn(parseRows()),
                         [](const auto& info) { return info.param.name; });

TEST(SmtpReplyParser, OverlongLineFailsAtTheFirstByteBeyondTheBound) {
  SmtpReplyParser parser;
  // "250 " and 4093 bytes: a 4096-byte line may still end in CR LF, so this is not yet too long.
  std::string line = "250 " + std::string(4093, 'x');
  for (char c : line)
    parser.feed(std::string_view(&c, 1));
  EXPECT_FALSE(parser.failed());
  parser.feed("x");
  EXPECT_EQ(parser.error(), "line longer than 4096 bytes");
  EXPECT_EQ(parser.buffered(), 4098u);
}

TEST(SmtpReplyParser, MebibyteLineIsDroppedNotKept) {
  SmtpReplyParser parser;
  std::string chunk(64 * 1024, 'x');
  parser.feed("250-");
  parser.feed(chunk);
  EXPECT_EQ(parser.error(), "line longer than 4096 bytes");  // on the first chunk, not later
  for (int i = 1; i < 16; ++i)
    parser.feed(chunk);       // the rest of 1 MiB
  parser.feed("250 ok\r\n");  // nothing after a failure counts
  EXPECT_FALSE(parser.next().has_value());
  EXPECT_EQ(parser.error(), "line longer than 4096 bytes");
  // Counted as received and never delivered (but not kept: the parser dropped them).
  EXPECT_EQ(parser.buffered(), 4u + 16u * 64u * 1024u + 8u);
}

TEST(SmtpReplyParser, LineAtTheBoundIsAcceptedOneMoreIsNot) {
  std::string text(4096 - 4, 'a');  // "250 " + text is exactly 4096 bytes
  SmtpReplyParser at_bound;
  at_bound.feed("250 " + text + "\r\n");
  auto r = at_bound.next();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->lines.front(), text);

  SmtpReplyParser over;
  over.feed("250 " + text + "a\r\n");
  EXPECT_FALSE(over.next().has_value());
  EXPECT_EQ(over.error(), "line longer than 4096 bytes");

  SmtpReplyParser over_bare_lf;
  over_bare_lf.feed("250 " + text + "a\n");
  EXPECT_EQ(over_bare_lf.error(), "line longer than 4096 bytes");
}

TEST(SmtpReplyParser, EndlessMultiLineReplyFailsOnLine257) {
  SmtpReplyParser parser;
  int fed = 0;
  while (fed < 100000 && !parser.failed()) {
    parser.feed("250-still going\r\n");
    ++fed;
  }
  EXPECT_EQ(fed, 257);
  EXPECT_EQ(parser.error(), "more than 256 lines in one reply");
  EXPECT_FALSE(parser.next().has_value());
}

TEST(SmtpReplyParser, BoundsAreConfigurable) {
  SmtpReplyParser parser(16, 2);
  parser.feed("250-a\r\n250 b\r\n");
  ASSERT_TRUE(parser.next().has_value());
  parser.feed("250-a\r\n250-b\r\n250 c\r\n");
  EXPECT_EQ(parser.error(), "more than 2 lines in one reply");

  SmtpReplyParser short_lines(16, 2);
  short_lines.feed("250 0123456789abcdef\r\n");
  EXPECT_EQ(short_lines.error(), "line longer than 16 bytes");
}

TEST(SmtpReplyParser, PlaintextQueuedBehindStartTlsReplyShowsInBuffered) {
  SmtpReplyParser parser;
  parser.feed("220 2.0.0 Ready to start TLS\r\n250 injected\r\n");
  auto r = parser.next();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->code, 220);
  EXPECT_EQ(parser.buffered(), 14u);  // the injected reply, not yet taken

  SmtpReplyParser clean;
  clean.feed("220 2.0.0 Ready to start TLS\r\n");
  ASSERT_TRUE(clean.next().has_value());
  EXPECT_EQ(clean.buffered(), 0u);
}

TEST(SmtpReplyParser, RepliesBeforeAnErrorAreStillDelivered) {
  SmtpReplyParser parser;
  parser.feed("250 2.1.0 Ok\r\n\x01garbage\r\n250 2.1.5 Ok\r\n");
  EXPECT_TRUE(parser.failed());
  auto r = parser.next();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->enhanced, "2.1.0");
  EXPECT_FALSE(parser.next().has_value());
}

TEST(SmtpReply, Classes) {
  struct Row {
    int code;
    bool positive, transient, permanent;
  };
  for (const Row& row : std::vector<Row>{{220, true, false, false},
                                         {334, true, false, false},
                                         {421, false, true, false},
                                         {454, false, true, false},
                                         {535, false, false, true},
                                         {554, false, false, true}}) {
    SmtpReply r;
    r.code = row.code;
    EXPECT_EQ(r.positive(), row.positive) << row.code;
    EXPECT_EQ(r.transientNegative(), row.transient) << row.code;
    EXPECT_EQ(r.permanentNegative(), row.permanent) << row.code;
  }
}

TEST(SmtpReply, TextJoinsLinesAndIsSafeForLogs) {
  SmtpReply r;
  r.code = 554;
  r.lines = {"5.7.1 first", "second\x1b[31m", "third\tline"};
  EXPECT_EQ(r.text(), "5.7.1 first second?[31m third?line");

  r.lines.assign(256, std::string(4000, 'x'));
  std::string text = r.text();
  EXPECT_LE(text.size(), 1024u + 3u);
  EXPECT_TRUE(text.ends_with("..."));
  EXPECT_EQ(SmtpReply{}.text(), "");
}

struct EhloRow {
  std::string name;
  std::string input;
  std::vector<std::string> keywords;
  std::vector<std::string> auth;
  bool starttls, pipelining, enhanced_status_codes;
  uint64_t size;
};

void PrintTo(const EhloRow& row, std::ostream* os) {
  *os << row.name;
}

const std::vector<EhloRow>& ehloRows() {
  static const std::vector<EhloRow> rows = {
      {"PostfixSubmissionBeforeTls",
       kPostfixEhlo,
       {"PIPELINING", "SIZE", "VRFY", "ETRN", "STARTTLS", "ENHANCEDSTATUSCODES", "8BITMIME", "DSN",
        "SMTPUTF8", "CHUNKING"},
       {},
       true,
       true,
       true,
       10240000},
      {"StartTlsOnLastLine",
       "250-mx.example.net\r\n250-PIPELINING\r\n250 STARTTLS\r\n",
       {"PIPELINING", "STARTTLS"},
       {},
       true,
       true,
       false,
       0},
      {"AuthOnLastLine",
       "250-mx.example.net\r\n250-SIZE 52428800\r\n250 AUTH PLAIN LOGIN\r\n",
       {"SIZE", "AUTH"},
       {"PLAIN", "LOGIN"},
       false,
       false,
       false,
       52428800},
      {"LegacyAuthFormDeduplicated",
       "250-mx\r\n250-AUTH PLAIN LOGIN CRAM-MD5\r\n250-AUTH=PLAIN LOGIN\r\n250 8BITMIME\r\n",
       {"AUTH", "AUTH=PLAIN", "8BITMIME"},
       {"PLAIN", "LOGIN", "CRAM-MD5"},
       false,
       false,
       false,
       0},
      {"OnlyLegacyAuth",
       "250-mx\r\n250 AUTH=LOGIN\r\n",
       {"AUTH=LOGIN"},
       {"LOGIN"},
       false,
       false,
       false,
       0},
      {"LowerCaseAndExtraSpaces",
       "250-mx\r\n250-starttls\r\n250 auth  plain\tcram-md5 \r\n",
       {"STARTTLS", "AUTH"},
       {"PLAIN", "CRAM-MD5"},
       true,
       false,
       false,
       0},
      {"FirstLineIsTheNameNotAnExtension",
       "250-STARTTLS.example.org Hello\r\n250 PIPELINING\r\n",
       {"PIPELINING"},
       {},
       false,
       true,
       false,
       0},
      {"SingleLine", "250 mx.example.net\r\n", {}, {}, false, false, false, 0},
      {"SizeWithoutLimit", "250-mx\r\n250 SIZE\r\n", {"SIZE"}, {}, false, false, false, 0},
      {"SizeNotANumber", "250-mx\r\n250 SIZE lots\r\n", {"SIZE"}, {}, false, false, false, 0},
      {"EhloRefused",
       "502 5.5.2 Error: command not recognized\r\n",
       {},
       {},
       false,
       false,
       false,
       0},
  };
  return rows;
}

class SmtpEhloTable : public ::testing::TestWithParam<EhloRow> {};

TEST_P(SmtpEhloTable, Parse) {
  const EhloRow& row = GetParam();
  SmtpReplyParser parser;
  parser.feed(row.input);
  auto reply = parser.next();
  ASSERT_TRUE(reply.has_value()) << parser.error();
  EhloCapabilities caps = EhloCapabilities::parse(*reply);
  EXPECT_EQ(caps.keywords, row.keywords);
  EXPECT_EQ(caps.auth_mechanisms, row.auth);
  EXPECT_EQ(caps.starttls, row.starttls);
  EXPECT_EQ(caps.pipelining, row.pipelining);
  EXPECT_EQ(caps.enhanced_status_codes, row.enhanced_status_codes);
  EXPECT_EQ(caps.size, row.size);
  for (const std::string& k : row.keywords)
    EXPECT_TRUE(caps.has(k)) << k;
}

INSTANTIATE_TEST_SUITE_P(Smtp, SmtpEhloTable, ::testing::ValuesIn(ehloRows()),
                         [](const auto& info) { return info.param.name; });

TEST(SmtpEhloCapabilities, HasIsCaseInsensitiveAndExact) {
  SmtpReplyParser parser;
  parser.feed(kPostfixEhlo);
  EhloCapabilities caps = EhloCapabilities::parse(*parser.next());
  EXPECT_TRUE(caps.has("starttls"));
  EXPECT_TRUE(caps.has("SMTPUTF8"));
  EXPECT_FALSE(caps.has("START"));
  EXPECT_FALSE(caps.has("AUTH"));
  EXPECT_FALSE(caps.has("mail.example.org"));
}

}  // namespace
}  // namespace mailprobe
