#pragma once
// Headless Chromium (Debian's `chromium`), run once on a URL, so that a test sees the status page
// as a browser renders it: the DOM after load (--dump-dom), or a screenshot to look at.
//
// Each run gets a private temporary directory (user data, HOME, caches). Whatever happens (exit,
// timeout), before run() returns: the browser's process group is killed, then any process of the
// run still alive outside it (Chromium's crash handler starts its own session) is found by the
// directory in its command line and killed by id, and the directory is removed.

#include <chrono>
#include <string>
#include <vector>

namespace mailprobe::testing {

struct ChromiumRun {
  bool finished = false;  // exited on its own before the timeout
  int exit_code = -1;     // when finished: the exit code (128 + signal when killed)
  std::string output;     // stdout (the DOM with --dump-dom)
  std::string log;        // stderr, for failure messages
  int leftover = 0;       // processes of the run still alive after the clean-up: should be 0
};

class HeadlessChromium {
 public:
  // The `chromium` executable on PATH; empty (and *why) when there is none.
  static std::string find(std::string* why);

  explicit HeadlessChromium(std::string binary) : binary_(std::move(binary)) {}

  // `chromium --headless --no-sandbox ... <extra> <url>`, killed after `timeout`.
  ChromiumRun run(const std::vector<std::string>& extra, const std::string& url,
                  std::chrono::milliseconds timeout) const;
  ChromiumRun dumpDom(const std::string& url, std::chrono::milliseconds timeout) const {
    return run({"--dump-dom"}, url, timeout);
  }
  ChromiumRun screenshot(const std::string& url, const std::string& png_path,
                         std::chrono::milliseconds timeout) const {
    return run({"--window-size=1280,1100", "--screenshot=" + png_path}, url, timeout);
  }

 private:
  std::string binary_;
};

}  // namespace mailprobe::testing
