#pragma once
// The command line: `check`, `validate` and `run`, with Nagios exit codes for `check`.

#include <iosfwd>
#include <string>
#include <vector>

namespace mailprobe {

// Exit codes (Nagios): 0 ok, 1 warning, 2 critical, 3 unknown (including a config error).
int runCli(const std::vector<std::string>& args, std::ostream& out, std::ostream& err);

}  // namespace mailprobe
