#include <csignal>
#include <iostream>

#include "daemon/cli.h"

int main(int argc, char** argv) {
  // A peer that closes mid-write must be a failure reason, not a dead process.
  std::signal(SIGPIPE, SIG_IGN);
  std::vector<std::string> args(argv + 1, argv + argc);
  return mailprobe::runCli(args, std::cout, std::cerr);
}
