#include "daemon/log.h"

#include <unistd.h>

#include <atomic>
#include <string>

namespace mailprobe::log {
namespace {
std::atomic<int> g_max_level{static_cast<int>(Level::Info)};
}

void setMaxLevel(Level level) {
  g_max_level = static_cast<int>(level);
}
Level maxLevel() {
  return static_cast<Level>(g_max_level.load());
}

void write(Level level, std::string_view message) {
  if (static_cast<int>(level) > g_max_level) {
    return;
  }
  std::string line = "<" + std::to_string(static_cast<int>(level)) + ">";
  // One event, one line: a newline inside the message would forge a second journal entry.
  for (char c : message) {
    line.push_back(c == '\n' || c == '\r' ? ' ' : c);
  }
  line.push_back('\n');
  // A single write(2) keeps lines from concurrent threads whole.
  (void)!::write(STDERR_FILENO, line.data(), line.size());
}

}  // namespace mailprobe::log
