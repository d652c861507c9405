#pragma once
// A child process for tests: started with extra environment, stdout and stderr to files, killed
// on destruction if it is still running (so a failing test leaves nothing behind).

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace mailprobe::testing {

// This process's environment, "KEY=value" each.
std::vector<std::string> currentEnvironment();
// In a forked child: execve(argv[0], argv, env), or _exit(127) if that fails.
[[noreturn]] void execOrExit(std::vector<std::string> argv, std::vector<std::string> env);

class Subprocess {
 public:
  Subprocess(std::vector<std::string> argv, std::vector<std::string> extra_env,
             std::string output_path);
  ~Subprocess();
  Subprocess(const Subprocess&) = delete;
  Subprocess& operator=(const Subprocess&) = delete;

  bool started() const { return pid_ > 0; }
  pid_t pid() const { return pid_; }
  bool signal(int signum);
  // The exit code (128 + signal when killed), or nullopt if still running after `timeout`.
  std::optional<int> wait(std::chrono::milliseconds timeout);
  bool running();
  // Everything the child wrote on stdout and stderr so far.
  std::string output() const;

 private:
  pid_t pid_ = -1;
  std::optional<int> status_;
  std::string output_path_;
};

// A TCP connection to 127.0.0.1:port (blocking, close-on-exec); with `rcvbuf` > 0 the receive
// buffer is set to that first. -1 on failure.
int connectLoopback(uint16_t port, int rcvbuf = 0);

// GET http://127.0.0.1:port/path with a plain socket; {status, body}; status 0 on failure.
struct HttpReply {
  int status = 0;
  std::string content_type;
  std::string body;
};
HttpReply httpGet(uint16_t port, const std::string& path,
                  std::chrono::milliseconds timeout = std::chrono::milliseconds(5000));

// Polls GET http://127.0.0.1:port/status.json every 200 ms until `pred` holds for its JSON or the
// timeout passes; *last is the last JSON read.
bool waitForStatusJson(uint16_t port, const std::function<bool(const nlohmann::json&)>& pred,
                       std::chrono::milliseconds timeout, nlohmann::json* last);

// A TCP port on 127.0.0.1 that was free a moment ago.
uint16_t freeLoopbackPort();

}  // namespace mailprobe::testing
