#include "tests/fakes/headless_chromium.h"

#include "tests/fakes/subprocess.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

namespace mailprobe::testing {
namespace {

namespace fs = std::filesystem;

std::string readFile(const fs::path& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// Live processes (zombies aside) whose command line mentions `needle`.
std::vector<pid_t> processesMentioning(const std::string& needle) {
  std::vector<pid_t> out;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator("/proc", ec)) {
    const std::string name = entry.path().filename().string();
    if (name.empty() || name.find_first_not_of("0123456789") != std::string::npos) {
      continue;
    }
    std::string cmdline = readFile(entry.path() / "cmdline");
    if (cmdline.find(needle) == std::string::npos) {
      continue;
    }
    // "pid (comm) S ...": the state follows the last ')'.
    std::string stat = readFile(entry.path() / "stat");
    size_t paren = stat.rfind(')');
    if (paren == std::string::npos || paren + 2 >= stat.size() || stat[paren + 2] == 'Z') {
      continue;
    }
    out.push_back(static_cast<pid_t>(std::stol(name)));
  }
  return out;
}

}  // namespace

std::string HeadlessChromium::find(std::string* why) {
  const char* path = std::getenv("PATH");
  std::stringstream dirs(path != nullptr ? path : "/usr/bin:/bin");
  std::string dir;
  while (std::getline(dirs, dir, ':')) {
    std::string candidate = (dir.empty() ? "." : dir) + "/chromium";
    if (::access(candidate.c_str(), X_OK) == 0) {
      return candidate;
    }
  }
  *why = "chromium is not installed (Debian package `chromium`, see tests/deps.sh)";
  return "";
}

ChromiumRun HeadlessChromium::run(const std::vector<std::string>& extra, const std::string& url,
                                  std::chrono::milliseconds timeout) const {
  ChromiumRun r;
  std::string templ = (fs::temp_directory_path() / "mailprobe-chromium.XXXXXX").string();
  if (::mkdtemp(templ.data()) == nullptr) {
    r.log = "mkdtemp failed";
    return r;
  }
  const fs::path dir = templ;
  std::vector<std::string> argv{binary_,
                                "--headless",
                                "--no-sandbox",
                                "--disable-gpu",
                                "--disable-quic",
                                "--no-first-run",
                                "--disable-background-networking",
                                "--disable-component-update",
                                "--disable-sync",
                                "--user-data-dir=" + (dir / "profile").string()};
  argv.insert(argv.end(), extra.begin(), extra.end());
  argv.push_back(url);
  // Chromium writes beside the profile too (crash reports under $HOME/.config, caches).
  std::vector<std::string> env;
  for (std::string& v : currentEnvironment()) {
    if (!v.starts_with("HOME=") && !v.starts_with("XDG_CONFIG_HOME=") &&
        !v.starts_with("XDG_CACHE_HOME=")) {
      env.push_back(std::move(v));
    }
  }
  env.push_back("HOME=" + dir.string());
  env.push_back("XDG_CONFIG_HOME=" + (dir / ".config").string());
  env.push_back("XDG_CACHE_HOME=" + (dir / ".cache").string());
  const std::string out_path = (dir / "stdout").string();
  const std::string err_path = (dir / "stderr").string();

  pid_t pid = ::fork();
  if (pid == 0) {
    ::setpgid(0, 0);  // its own process group: killed as one
    int out = ::open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    int err = ::open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (out >= 0 && err >= 0) {
      ::dup2(out, 1);
      ::dup2(err, 2);
    }
    execOrExit(argv, env);
  }
  if (pid > 0) {
    ::setpgid(pid, pid);  // also from here, so that the group exists whoever runs first
    auto deadline = std::chrono::steady_clock::now() + timeout;
    int status = 0;
    for (;;) {
      pid_t w = ::waitpid(pid, &status, WNOHANG);
      if (w == pid) {
        r.finished = true;
        r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        break;
      }
      if (w < 0 || std::chrono::steady_clock::now() > deadline) {
        ::kill(-pid, SIGKILL);
        ::waitpid(pid, &status, 0);
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    ::kill(-pid, SIGKILL);  // children left in the group (renderers, zygotes)
  } else {
    r.log = "fork failed\n";
  }
  // Processes of this run that left the group: known by the run's directory in their arguments.
  auto cleanup_deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  std::vector<pid_t> left = processesMentioning(dir.string());
  while (!left.empty() && std::chrono::steady_clock::now() < cleanup_deadline) {
    for (pid_t p : left) {
      ::kill(p, SIGKILL);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    left = processesMentioning(dir.string());
  }
  r.leftover = static_cast<int>(left.size());
  r.output = readFile(out_path);
  r.log += readFile(err_path);
  std::error_code ec;
  fs::remove_all(dir, ec);
  return r;
}

}  // namespace mailprobe::testing
