#include "probes/line_framer.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace mailprobe {
namespace {

struct FrameRow {
  std::string name;
  size_t max_line;
  std::string input;
  std::vector<std::string> lines;  // complete lines, in order, without CR LF
  std::vector<size_t> raw_sizes;   // their sizes on the wire
  std::string error = {};          // "" when no line may be too long
};

void PrintTo(const FrameRow& row, std::ostream* os) {
  *os << row.name;
}

const std::vector<FrameRow>& frameRows() {
  static const std::vector<FrameRow> rows = {
      {"CrLf", 16, "one\r\ntwo\r\n", {"one", "two"}, {5, 5}},
      {"BareLf", 16, "one\ntwo\r\n", {"one", "two"}, {4, 5}},
      {"EmptyLines", 16, "\r\n\n", {"", ""}, {2, 1}},
      {"LoneCrStaysInTheLine", 16, "a\rb\r\n", {"a\rb"}, {5}},
      {"UnfinishedLineIsKept", 16, "done\r\nhalf", {"done"}, {6}},
      {"ExactlyMaxLine", 4, "abcd\r\n", {"abcd"}, {6}},
      {"ExactlyMaxLineBareLf", 4, "abcd\n", {"abcd"}, {5}},
      {"OneOverMaxLine", 4, "abcde\r\n", {}, {}, "line longer than 4 bytes"},
      {"OneOverMaxLineWithCr", 4, "abcd\r\r\n", {}, {}, "line longer than 4 bytes"},
      {"LongLineWithoutLf", 4, "abcdefgh", {}, {}, "line longer than 4 bytes"},
      {"LinesBeforeTheLongOneCount",
       4,
       "ok\r\ntoo long\r\nnever\r\n",
       {"ok"},
       {4},
       "line longer than 4 bytes"},
  };
  return rows;
}

class LineFramerTable : public testing::TestWithParam<FrameRow> {};

// Feeds the input `chunk` bytes at a time and collects what the framer returns.
void frame(const FrameRow& row, size_t chunk, std::vector<std::string>& lines,
           std::vector<size_t>& raw_sizes, std::string& error) {
  LineFramer framer(row.max_line);
  std::string_view input = row.input;
  while (!input.empty() && framer.error().empty()) {
    std::string_view bytes = input.substr(0, chunk);
    input.remove_prefix(bytes.size());
    while (!bytes.empty()) {
      std::optional<LineFramer::Line> line = framer.take(bytes);
      if (!line) {
        break;
      }
      lines.emplace_back(line->text);
      raw_sizes.push_back(line->raw_size);
    }
  }
  error = framer.error();
}

TEST_P(LineFramerTable, SameLinesWhateverTheReadBoundaries) {
  const FrameRow& row = GetParam();
  for (size_t chunk : {row.input.size(), size_t{1}, size_t{2}, size_t{3}}) {
    SCOPED_TRACE("chunk " + std::to_string(chunk));
    std::vector<std::string> lines;
    std::vector<size_t> raw_sizes;
    std::string error;
    frame(row, chunk, lines, raw_sizes, error);
    EXPECT_EQ(lines, row.lines);
    EXPECT_EQ(raw_sizes, row.raw_sizes);
    EXPECT_EQ(error, row.error);
  }
}

INSTANTIATE_TEST_SUITE_P(Rows, LineFramerTable, testing::ValuesIn(frameRows()),
                         [](const auto& info) { return info.param.name; });

TEST(LineFramer, TakesNothingPastTheLineItReturns) {
  LineFramer framer(16);
  std::string_view bytes = "first\r\nsecond";
  std::optional<LineFramer::Line> line = framer.take(bytes);
  ASSERT_TRUE(line);
  EXPECT_EQ(line->text, "first");
  EXPECT_EQ(bytes, "second");  // left for the caller: an IMAP literal may start here
}

TEST(LineFramer, StopsTakingOnceALineWasTooLong) {
  LineFramer framer(4);
  std::string_view bytes = "abcdef";
  EXPECT_FALSE(framer.take(bytes));
  EXPECT_EQ(framer.error(), "line longer than 4 bytes");
  std::string_view later = "ok\r\n";
  EXPECT_FALSE(framer.take(later));
  EXPECT_EQ(later, "ok\r\n");
}

TEST(LineFramer, ClearDropsTheLineInProgress) {
  LineFramer framer(16);
  std::string_view half = "hal";
  EXPECT_FALSE(framer.take(half));
  framer.clear();
  std::string_view rest = "f\r\n";
  std::optional<LineFramer::Line> line = framer.take(rest);
  ASSERT_TRUE(line);
  EXPECT_EQ(line->text, "f");
  EXPECT_EQ(line->raw_size, 3u);
}

TEST(MessageQueue, BufferedCountsWhatNextHasNotReturned) {
  MessageQueue<std::string> queue;
  EXPECT_EQ(queue.buffered(), 0u);
  queue.received(12);
  queue.push("a", 5);
  queue.push("b", 4);
  EXPECT_EQ(queue.buffered(), 12u);
  EXPECT_EQ(queue.next(), "a");
  EXPECT_EQ(queue.buffered(), 7u);
  EXPECT_EQ(queue.next(), "b");
  EXPECT_EQ(queue.buffered(), 3u);  // a message in progress
  EXPECT_EQ(queue.next(), std::nullopt);
  EXPECT_EQ(queue.buffered(), 3u);
}

}  // namespace
}  // namespace mailprobe
