#pragma once
// One line per event on stderr, with the sd-daemon(3) priority prefix ("<3>") that journald
// turns into a priority. Never pass a secret to these functions.

#include <string_view>

namespace mailprobe::log {

enum class Level { Error = 3, Warning = 4, Notice = 5, Info = 6, Debug = 7 };

void setMaxLevel(Level level);
Level maxLevel();
void write(Level level, std::string_view message);

inline void error(std::string_view m) {
  write(Level::Error, m);
}
inline void warning(std::string_view m) {
  write(Level::Warning, m);
}
inline void notice(std::string_view m) {
  write(Level::Notice, m);
}
inline void info(std::string_view m) {
  write(Level::Info, m);
}
inline void debug(std::string_view m) {
  write(Level::Debug, m);
}

}  // namespace mailprobe::log
