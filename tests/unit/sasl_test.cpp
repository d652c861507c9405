#include "probes/sasl.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace mailprobe {
namespace {

using namespace std::string_literals;

// RFC 2195 section 2: the server's challenge and the client's answer for tim / tanstaaftanstaaf.
constexpr const char* kRfc2195Challenge =
    "PDE4OTYuNjk3MTcwOTUyQHBvc3RvZmZpY2UucmVzdG9uLm1jaS5uZXQ+";

TEST(SaslBase64, Rfc4648VectorsAndBinaryRoundTrip) {
  struct Row {
    std::string plain, encoded;
  };
  for (const Row& row : std::vector<Row>{
           {"", ""},
           {"f", "Zg=="},
           {"fo", "Zm8="},
           {"foo", "Zm9v"},
           {"foob", "Zm9vYg=="},
           {"fooba", "Zm9vYmE="},
           {"foobar", "Zm9vYmFy"},
           {"\x00\xff\x80\n\r"s, "AP+ACg0="},
           {"<1896.697170952@postoffice.reston.mci.net>", kRfc2195Challenge},
       }) {
    EXPECT_EQ(base64Encode(row.plain), row.encoded);
    EXPECT_EQ(base64Decode(row.encoded), row.plain) << row.encoded;
  }
  std::string all_bytes;
  for (int i = 0; i < 256; ++i)
    all_bytes += static_cast<char>(i);
  EXPECT_EQ(base64Decode(base64Encode(all_bytes)), all_bytes);
}

TEST(SaslBase64, DecodeToleratesSurroundingWhitespaceOnly) {
  EXPECT_EQ(base64Decode("  Zm9v\r\n"), "foo");
  EXPECT_EQ(base64Decode("\tZg==\n"), "f");
  EXPECT_EQ(base64Decode(" \r\n"), "");
  EXPECT_EQ(base64Decode("Zm9v Yg=="), std::nullopt);
  EXPECT_EQ(base64Decode("Zm9v\r\nYg=="), std::nullopt);
}

TEST(SaslBase64, DecodeRejectsInvalidInput) {
  for (const std::string& bad : std::vector<std::string>{
           "Zg=",               // length not a multiple of 4
           "Zm9",               // missing padding
           "Zm9v!A==",          // outside the alphabet
           "Zm9-",              // base64url is not SASL's alphabet
           "Z=g=",              // padding in the middle
           "====",              // padding only
           "Zg==Zg==",          // data after padding
           "Z===",              // too much padding
           "\xc3\xa9\xc3\xa9",  // 8-bit
           "Zm9v\0AAA"s,        // NUL
       }) {
    EXPECT_EQ(base64Decode(bad), std::nullopt) << bad;
  }
}

TEST(SaslPlain, Rfc4616Examples) {
  EXPECT_EQ(saslPlain("tim", "tanstaaftanstaaf"), "AHRpbQB0YW5zdGFhZnRhbnN0YWFm");
  EXPECT_EQ(saslPlain("Kurt", "xipj3plmq", "Ursel"), "VXJzZWwAS3VydAB4aXBqM3BsbXE=");
  EXPECT_EQ(base64Decode(saslPlain("tim@example.org", "p\xc3\xa4ss wd")),
            "\0tim@example.org\0p\xc3\xa4ss wd"s);
}

TEST(SaslCramMd5, Rfc2195Example) {
  EXPECT_EQ(cramMd5Response("tim", "tanstaaftanstaaf", kRfc2195Challenge),
            "dGltIGI5MTNhNjAyYzdlZGE3YTQ5NWI0ZTZlNzMzNGQzODkw");
  // The challenge as it comes off the wire, after "334 " or "+ " with its line end.
  EXPECT_EQ(cramMd5Response("tim", "tanstaaftanstaaf", std::string(kRfc2195Challenge) + "\r\n"),
            "dGltIGI5MTNhNjAyYzdlZGE3YTQ5NWI0ZTZlNzMzNGQzODkw");
}

TEST(SaslCramMd5, EmptyPasswordAndInvalidChallenge) {
  // Reference: Python hmac.new(b"", b"<1.2@h>", "md5").
  EXPECT_EQ(cramMd5Response("probe", "", "PDEuMkBoPg=="),
            "cHJvYmUgZmYyNWQxNmY4MjlkMzIyYThlZDc3ZGYyMzYzZWRjZDU=");
  EXPECT_EQ(cramMd5Response("tim", "tanstaaftanstaaf", "not base64!"), "");
  EXPECT_EQ(cramMd5Response("tim", "tanstaaftanstaaf", "PDE4OTY"), "");
}

}  // namespace
}  // namespace mailprobe
