#include "probes/imap_response.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace mailprobe {
namespace {

using namespace std::string_literals;
using Kind = ImapResponse::Kind;

struct Expected {
  Kind kind;
  std::string tag;
  std::string status;
  std::optional<uint64_t> number;
  std::string code;
  std::string text;
  std::vector<std::string> literals = {};
};

// In a row's `buffered`: every byte of the input (nothing was delivered).
constexpr size_t kAll = SIZE_MAX;

struct Row {
  std::string name;
  std::string input;
  std::vector<Expected> responses;  // in order
  std::string error = {};           // "" when the parser must not fail
  // Bytes not delivered as responses once every response has been taken, dropped ones included.
  size_t buffered = 0;
};

const std::string kDovecotGreeting =
    "* OK [CAPABILITY IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+ STARTTLS "
    "LOGINDISABLED] Dovecot (Debian) ready.\r\n";

void PrintTo(const Row& row, std::ostream* os) {
  *os << row.name;
}

const std::vector<Row>& rows() {
  static const std::vector<Row> table = {
      {"DovecotGreeting",
       kDovecotGreeting,
       {{Kind::Untagged,
         "",
         "OK",
         {},
         "CAPABILITY IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+ STARTTLS "
         "LOGINDISABLED",
         "Dovecot (Debian) ready."}}},
      {"DovecotCapabilityThenTaggedOk",
       "* CAPABILITY IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+ AUTH=PLAIN "
       "AUTH=LOGIN\r\na001 OK Pre-login capabilities listed, post-login capabilities have "
       "more.\r\n",
       {{Kind::Untagged,
         "",
         "CAPABILITY",
         {},
         "",
         "IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+ AUTH=PLAIN AUTH=LOGIN"},
        {Kind::Tagged,
         "a001",
         "OK",
         {},
         "",
         "Pre-login capabilities listed, post-login capabilities have more."}}},
      {"StartTlsAccepted",
       "a002 OK Begin TLS negotiation now.\r\n",
       {{Kind::Tagged, "a002", "OK", {}, "", "Begin TLS negotiation now."}}},
      {"LoginFailed",
       "a003 NO [AUTHENTICATIONFAILED] Authentication failed.\r\n",
       {{Kind::Tagged, "a003", "NO", {}, "AUTHENTICATIONFAILED", "Authentication failed."}}},
      {"PrivacyRequired",
       "a003 NO [PRIVACYREQUIRED] Plaintext authentication disallowed on non-secure (SSL/TLS) "
       "connections.\r\n",
       {{Kind::Tagged,
         "a003",
         "NO",
         {},
         "PRIVACYREQUIRED",
         "Plaintext authentication disallowed on non-secure (SSL/TLS) connections."}}},
      {"LoggedInWithCapabilities",
       "a004 OK [CAPABILITY IMAP4rev1 IDLE NAMESPACE] Logged in\r\n",
       {{Kind::Tagged, "a004", "OK", {}, "CAPABILITY IMAP4rev1 IDLE NAMESPACE", "Logged in"}}},
      {"TaggedBad",
       "a005 BAD Error in IMAP command received by server.\r\n",
       {{Kind::Tagged, "a005", "BAD", {}, "", "Error in IMAP command received by server."}}},
      {"Bye",
       "* BYE Disconnected for inactivity.\r\n",
       {{Kind::Untagged, "", "BYE", {}, "", "Disconnected for inactivity."}}},
      {"ByeWithCode",
       "* BYE [UNAVAILABLE] Server shutting down.\r\n",
       {{Kind::Untagged, "", "BYE", {}, "UNAVAILABLE", "Server shutting down."}}},
      {"Preauth",
       "* PREAUTH [CAPABILITY IMAP4rev1] Logged in as tim\r\n",
       {{Kind::Untagged, "", "PREAUTH", {}, "CAPABILITY IMAP4rev1", "Logged in as tim"}}},
      {"LowerCaseStatus",
       "* ok [alert] hi\r\na1 no nope\r\n",
       {{Kind::Untagged, "", "OK", {}, "alert", "hi"}, {Kind::Tagged, "a1", "NO", {}, "", "nope"}}},
      {"StatusWithoutText", "a1 OK\r\n", {{Kind::Tagged, "a1", "OK", {}, "", ""}}},
      {"CodeWithoutText",
       "* OK [UIDVALIDITY 3857529045]\r\n",
       {{Kind::Untagged, "", "OK", {}, "UIDVALIDITY 3857529045", ""}}},
      {"UnclosedCodeIsText",
       "* OK [ALERT oops\r\n",
       {{Kind::Untagged, "", "OK", {}, "", "[ALERT oops"}}},
      {"BareLf",
       "* OK ready\na1 OK done\n",
       {{Kind::Untagged, "", "OK", {}, "", "ready"}, {Kind::Tagged, "a1", "OK", {}, "", "done"}}},
      {"ContinuationBase64",
       "+ PDE4OTYuNjk3MTcwOTUyQHBvc3RvZmZpY2UucmVzdG9uLm1jaS5uZXQ+\r\n",
       {{Kind::Continuation,
         "",
         "",
         {},
         "",
         "PDE4OTYuNjk3MTcwOTUyQHBvc3RvZmZpY2UucmVzdG9uLm1jaS5uZXQ+"}}},
      {"ContinuationEmptySaslChallenge", "+ \r\n", {{Kind::Continuation, "", "", {}, "", ""}}},
      {"ContinuationBare", "+\r\n", {{Kind::Continuation, "", "", {}, "", ""}}},
      {"ContinuationIdle", "+ idling\r\n", {{Kind::Continuation, "", "", {}, "", "idling"}}},
      {"ExistsAndRecent",
       "* 5 EXISTS\r\n* 0 RECENT\r\n",
       {{Kind::Untagged, "", "EXISTS", 5, "", ""}, {Kind::Untagged, "", "RECENT", 0, "", ""}}},
      {"Flags",
       "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\r\n",
       {{Kind::Untagged, "", "FLAGS", {}, "", "(\\Answered \\Flagged \\Deleted \\Seen \\Draft)"}}},
      {"ExamineInbox",
       "* FLAGS (\\Seen)\r\n* OK [PERMANENTFLAGS ()] Read-only mailbox.\r\n* 3 EXISTS\r\n"
       "a6 OK [READ-ONLY] Examine completed (0.001 + 0.000 secs).\r\n",
       {{Kind::Untagged, "", "FLAGS", {}, "", "(\\Seen)"},
        {Kind::Untagged, "", "OK", {}, "PERMANENTFLAGS ()", "Read-only mailbox."},
        {Kind::Untagged, "", "EXISTS", 3, "", ""},
        {Kind::Tagged, "a6", "OK", {}, "READ-ONLY", "Examine completed (0.001 + 0.000 secs)."}}},
      {"ListWithLiteralMailbox",
       "* LIST (\\HasNoChildren) \".\" {8}\r\nfoo\r\nbar\r\n",
       {{Kind::Untagged, "", "LIST", {}, "", "(\\HasNoChildren) \".\" {8}", {"foo\r\nbar"}}}},
      {"FetchWithTwoLiterals",
       "* 1 FETCH (BODY[HEADER] {5}\r\nab\r\nc BODY[TEXT] {3}\r\nxyz)\r\n",
       {{Kind::Untagged,
         "",
         "FETCH",
         1,
         "",
         "(BODY[HEADER] {5} BODY[TEXT] {3})",
         {"ab\r\nc", "xyz"}}}},
      {"NonSynchronizingLiteral",
       "* ID (\"name\" {7+}\r\nDovecot)\r\n",
       {{Kind::Untagged, "", "ID", {}, "", "(\"name\" {7+})", {"Dovecot"}}}},
      {"EmptyLiteral",
       "* 2 FETCH (BODY[] {0}\r\n)\r\n",
       {{Kind::Untagged, "", "FETCH", 2, "", "(BODY[] {0})", {""}}}},
      {"LiteralHoldingWhatLooksLikeAResponse",
       "* 1 FETCH (BODY[] {12}\r\na1 OK done\r\n)\r\na1 OK real\r\n",
       {{Kind::Untagged, "", "FETCH", 1, "", "(BODY[] {12})", {"a1 OK done\r\n"}},
        {Kind::Tagged, "a1", "OK", {}, "", "real"}}},
      {"StatusTextEndingInBracesIsText",
       "a1 OK done {5}\r\n* OK also {3}\r\n",
       {{Kind::Tagged, "a1", "OK", {}, "", "done {5}"},
        {Kind::Untagged, "", "OK", {}, "", "also {3}"}}},
      {"IncompleteLiteralStaysBuffered", "* 1 FETCH (BODY[] {10}\r\nabc", {}, "", 27},
      {"ResponseThenIncompleteLine",
       "* OK hi\r\na1 O",
       {{Kind::Untagged, "", "OK", {}, "", "hi"}},
       "",
       4},
      {"HttpServer", "HTTP/1.1 200 OK\r\n", {}, "malformed response line", kAll},
      {"TlsServerBytes",
       "\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03\n"s,
       {},
       "malformed response line",
       kAll},
      {"EmptyLine", "\r\n", {}, "malformed response line", kAll},
      {"StarAlone", "*\r\n", {}, "malformed response line", kAll},
      {"StarSpaceAlone", "* \r\n", {}, "malformed response line", kAll},
      {"NumberWithoutKeyword", "* 5\r\n", {}, "malformed response line", kAll},
      {"NumberOverflow",
       "* 99999999999999999999999 EXISTS\r\n",
       {},
       "malformed response line",
       kAll},
      {"TagAlone", "a1\r\n", {}, "malformed response line", kAll},
      {"TaggedNonStatus", "a1 BYE x\r\n", {}, "malformed response line", kAll},
      {"GarbageAfterGreeting",
       "* OK ready\r\n\x01\x02\x03\r\n",
       {{Kind::Untagged, "", "OK", {}, "", "ready"}},
       "malformed response line",
       5},
      {"LiteralTooLarge",
       "* 1 FETCH (BODY[] {65537}\r\n",
       {},
       "literal of 65537 bytes exceeds 65536",
       kAll},
      {"LiteralSizeOverflow",
       "* 1 FETCH (BODY[] {99999999999999999999999}\r\n",
       {},
       "literal of 18446744073709551615 bytes exceeds 65536",
       kAll},
  };
  return table;
}

class ImapResponseTable : public ::testing::TestWithParam<Row> {
 protected:
  // Feeds the row's input in pieces of at most `step` bytes (0: all at once), taking responses
  // after every feed as a session would, and checks what came out.
  void check(size_t step) {
    const Row& row = GetParam();
    SCOPED_TRACE(row.name + " fed in steps of " + std::to_string(step));
    ImapResponseParser parser;
    std::vector<ImapResponse> got;
    std::string_view rest = row.input;
    do {
      size_t n = step == 0 ? rest.size() : std::min(step, rest.size());
      parser.feed(rest.substr(0, n));
      rest.remove_prefix(n);
      while (auto r = parser.next())
        got.push_back(std::move(*r));
    } while (!rest.empty());
    EXPECT_EQ(parser.failed() ? parser.error() : "", row.error);
    EXPECT_EQ(parser.buffered(), row.buffered == kAll ? row.input.size() : row.buffered);
    ASSERT_EQ(got.size(), row.responses.size());
    for (size_t i = 0; i < got.size(); ++i) {
      const Expected& want = row.responses[i];
      SCOPED_TRACE("response " + std::to_string(i) + ": " + got[i].line);
      EXPECT_EQ(got[i].kind, want.kind);
      EXPECT_EQ(got[i].tag, want.tag);
      EXPECT_EQ(got[i].status, want.status);
      EXPECT_EQ(got[i].number, want.number);
      EXPECT_EQ(got[i].code, want.code);
      EXPECT_EQ(got[i].text, want.text);
      EXPECT_EQ(got[i].literals, want.literals);
    }
  }
};

TEST_P(ImapResponseTable, OneFeed) {
  check(0);
}
TEST_P(ImapResponseTable, ByteByByte) {
  check(1);
}
TEST_P(ImapResponseTable, ThreeBytesAtATime) {
  check(3);
}

INSTANTIATE_TEST_SUITE_P(Imap, ImapResponseTable, ::testing::ValuesIn(rows()),
                         [](const auto& info) { return info.param.name; });

TEST(ImapResponseParser, LineForLogsLeavesLiteralsOutAndIsBounded) {
  ImapResponseParser parser;
  parser.feed("* 1 FETCH (BODY[] {5}\r\nsecre)\r\n");
  auto r = parser.next();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->line, "* 1 FETCH (BODY[] {5})");

  parser.feed("* OK " + std::string(5000, 'x') + "\x1b\r\n");
  r = parser.next();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->text.size(), 5001u);
  EXPECT_LE(r->line.size(), 1024u + 3u);
  EXPECT_TRUE(r->line.ends_with("..."));

  parser.feed("a1 NO bad\x07news\r\n");
  EXPECT_EQ(parser.next()->line, "a1 NO bad?news");
}

TEST(ImapResponseParser, OverlongLineFailsAtTheFirstByteBeyondTheBound) {
  ImapResponseParser parser;
  std::string line = "* OK " + std::string(8192 - 5 + 1, 'x');  // room for the CR only
  for (char c : line)
    parser.feed(std::string_view(&c, 1));
  EXPECT_FALSE(parser.failed());
  parser.feed("x");
  EXPECT_EQ(parser.error(), "line longer than 8192 bytes");

  ImapResponseParser mebibyte;
  std::string chunk(64 * 1024, 'x');
  mebibyte.feed("* OK ");
  mebibyte.feed(chunk);
  EXPECT_EQ(mebibyte.error(), "line longer than 8192 bytes");  // on the first chunk, not later
  for (int i = 1; i < 16; ++i)
    mebibyte.feed(chunk);
  mebibyte.feed("a1 OK\r\n");
  EXPECT_FALSE(mebibyte.next().has_value());
  EXPECT_EQ(mebibyte.buffered(), 5u + 16u * 64u * 1024u + 7u);
}

TEST(ImapResponseParser, EndlessChainOfLiteralsFailsAtTheResponseBound) {
  ImapResponseParser parser;
  const std::string piece = " {100}\r\n" + std::string(100, 'y');  // 108 bytes
  parser.feed("* 1 FETCH (X");
  size_t fed = 12;
  while (fed < 10 * 262144 && !parser.failed()) {
    parser.feed(piece);
    fed += piece.size();
  }
  EXPECT_EQ(parser.error(), "response longer than 262144 bytes");
  // It stopped at the literal that would cross the bound, not after reading on.
  EXPECT_GT(fed, 262144u - 108u);
  EXPECT_LE(fed, 262144u + 108u);
  EXPECT_EQ(parser.buffered(), fed);
}

TEST(ImapResponseParser, BoundsAreConfigurable) {
  ImapResponseParser lines(16, 8, 64);
  lines.feed("* OK 0123456789abc\r\n");
  EXPECT_EQ(lines.error(), "line longer than 16 bytes");

  ImapResponseParser literal(16, 8, 64);
  literal.feed("* 1 FETCH {8}\r\n12345678\r\n* 1 FETCH {9}\r\n");
  ASSERT_TRUE(literal.next().has_value());
  EXPECT_EQ(literal.error(), "literal of 9 bytes exceeds 8");

  // A literal that fits its own bound but not the response's is refused before it is read.
  ImapResponseParser response(16, 64, 32);
  response.feed("* 1 FETCH {20}\r\n");
  EXPECT_EQ(response.error(), "response longer than 32 bytes");
}

TEST(ImapResponseParser, PlaintextQueuedBehindStartTlsOkShowsInBuffered) {
  ImapResponseParser parser;
  parser.feed("a2 OK Begin TLS negotiation now.\r\n* OK injected\r\n");
  auto r = parser.next();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->tag, "a2");
  EXPECT_EQ(parser.buffered(), 15u);
}

TEST(ImapResponse, IsStatus) {
  ImapResponseParser parser;
  parser.feed("* OK a\r\n* 1 EXISTS\r\n+ OK\r\na1 BAD b\r\n* PREAUTH c\r\n");
  std::vector<bool> got;
  while (auto r = parser.next())
    got.push_back(r->isStatus());
  EXPECT_EQ(got, (std::vector<bool>{true, false, false, true, true}));
}

std::vector<std::string> capabilitiesOf(const std::string& bytes) {
  ImapResponseParser parser;
  parser.feed(bytes);
  auto r = parser.next();
  EXPECT_TRUE(r.has_value()) << parser.error();
  return r ? imapCapabilities(*r) : std::vector<std::string>{};
}

TEST(ImapCapabilities, FromGreetingCodeUntaggedDataAndTaggedOk) {
  std::vector<std::string> greeting = capabilitiesOf(kDovecotGreeting);
  EXPECT_EQ(greeting,
            (std::vector<std::string>{"IMAP4REV1", "SASL-IR", "LOGIN-REFERRALS", "ID", "ENABLE",
                                      "IDLE", "LITERAL+", "STARTTLS", "LOGINDISABLED"}));
  EXPECT_EQ(capabilitiesOf("* CAPABILITY IMAP4rev1 auth=plain  AUTH=LOGIN\r\n"),
            (std::vector<std::string>{"IMAP4REV1", "AUTH=PLAIN", "AUTH=LOGIN"}));
  EXPECT_EQ(capabilitiesOf("a1 OK [capability IMAP4rev1 IDLE] Logged in\r\n"),
            (std::vector<std::string>{"IMAP4REV1", "IDLE"}));
  EXPECT_TRUE(capabilitiesOf("* OK [CAPABILITYX IMAP4rev1] no\r\n").empty());
  EXPECT_TRUE(capabilitiesOf("* OK [ALERT] CAPABILITY IMAP4rev1\r\n").empty());
  EXPECT_TRUE(capabilitiesOf("* FLAGS (CAPABILITY)\r\n").empty());
  EXPECT_TRUE(capabilitiesOf("+ [CAPABILITY IMAP4rev1]\r\n").empty());
}

TEST(ImapAuthMechanisms, FromCapabilities) {
  EXPECT_EQ(imapAuthMechanisms({"IMAP4REV1", "AUTH=PLAIN", "auth=login", "AUTH=PLAIN",
                                "AUTH=", "AUTHX=CRAM-MD5", "SASL-IR", "AUTH=CRAM-MD5"}),
            (std::vector<std::string>{"PLAIN", "LOGIN", "CRAM-MD5"}));
  EXPECT_TRUE(imapAuthMechanisms(capabilitiesOf(kDovecotGreeting)).empty());
}

TEST(ImapQuoting, NeedsLiteral) {
  struct QuoteRow {
    std::string input;
    bool needs_literal;
  };
  for (const QuoteRow& row : std::vector<QuoteRow>{
           {"", false},
           {"tim@example.org", false},
           {"pa ss\"wo\\rd", false},
           {std::string(1024, 'a'), false},
           {std::string(1025, 'a'), true},
           {"a\rb", true},
           {"a\nb", true},
           {"a\0b"s, true},
           {"mot de passe \xc3\xa9t\xc3\xa9", true},
       }) {
    EXPECT_EQ(imapNeedsLiteral(row.input), row.needs_literal) << row.input.size();
  }
}

TEST(ImapQuoting, EscapesBackslashAndQuote) {
  EXPECT_EQ(imapQuoted(""), "\"\"");
  EXPECT_EQ(imapQuoted("tim@example.org"), "\"tim@example.org\"");
  EXPECT_EQ(imapQuoted("a\"b\\c"), "\"a\\\"b\\\\c\"");
}

}  // namespace
}  // namespace mailprobe
