#pragma once
// Shared by the libFuzzer targets: drive a sans-I/O parser (feed, next, failed, error,
// buffered) with one input split the way network reads would split it, check every item it
// returns, and stop loudly when an invariant breaks (libFuzzer then saves the input).

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

namespace mailprobe::fuzz {

[[noreturn]] inline void violated(const char* what, int line) {
  std::fprintf(stderr, "invariant violated (line %d): %s\n", line, what);
  std::abort();
}

}  // namespace mailprobe::fuzz

#define FUZZ_CHECK(cond)                            \
  do {                                              \
    if (!(cond))                                    \
      ::mailprobe::fuzz::violated(#cond, __LINE__); \
  } while (0)

namespace mailprobe::fuzz {

inline bool isUpper(const std::string& s) {
  return std::none_of(s.begin(), s.end(), [](char c) { return c >= 'a' && c <= 'z'; });
}

inline bool isPrintable(const std::string& s) {
  return std::none_of(s.begin(), s.end(),
                      [](char c) { return static_cast<unsigned char>(c) < 0x20 || c == 0x7f; });
}

template <typename Item>
struct Parsed {
  std::vector<Item> items;
  std::string error;
  size_t buffered = 0;
};

// Feeds `stream` to `parser` in reads of `chunk` bytes, taking every item out after each read
// and checking it with `check`.
template <typename Item, typename Parser, typename Check>
Parsed<Item> parseInChunks(Parser parser, std::string_view stream, size_t chunk, Check check) {
  Parsed<Item> p;
  size_t delivered = 0;
  while (!stream.empty()) {
    std::string_view bytes = stream.substr(0, std::min(chunk, stream.size()));
    stream.remove_prefix(bytes.size());
    parser.feed(bytes);
    while (auto item = parser.next()) {
      check(*item);
      p.items.push_back(std::move(*item));
    }
    delivered += bytes.size();
    FUZZ_CHECK(parser.buffered() <= delivered);
  }
  p.error = parser.error();
  p.buffered = parser.buffered();
  FUZZ_CHECK(parser.failed() == !p.error.empty());
  return p;
}

// The input is the stream, as a server would send it (so a seed is a plain transcript); a hash
// of it picks a read size of 1..64 bytes. Parsed whole and in those reads, the stream must give
// the same items, error and buffered count; without an error, what stays buffered is at most
// `max_tail` bytes (an unfinished item).
template <typename Item, typename MakeParser, typename Check, typename Same>
void checkParser(const uint8_t* data, size_t size, MakeParser make, Check check, Same same,
                 size_t max_tail) {
  uint32_t hash = 2166136261u;  // FNV-1a
  for (size_t i = 0; i < size; ++i) {
    hash = (hash ^ data[i]) * 16777619u;
  }
  size_t chunk = 1 + hash % 64;
  std::string_view stream(reinterpret_cast<const char*>(data), size);
  Parsed<Item> whole = parseInChunks<Item>(make(), stream, stream.size() + 1, check);
  Parsed<Item> pieces = parseInChunks<Item>(make(), stream, chunk, check);
  FUZZ_CHECK(whole.items.size() == pieces.items.size());
  for (size_t i = 0; i < whole.items.size(); ++i) {
    FUZZ_CHECK(same(whole.items[i], pieces.items[i]));
  }
  FUZZ_CHECK(whole.error == pieces.error);
  FUZZ_CHECK(whole.buffered == pieces.buffered);
  FUZZ_CHECK(!whole.error.empty() || whole.buffered <= max_tail);
}

}  // namespace mailprobe::fuzz
