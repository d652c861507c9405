#include "tests/fakes/mail_env.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace mailprobe::testing {
namespace {

// Generous: start-up is a few seconds, but the CI cores are shared with compilers.
constexpr std::chrono::seconds kScriptTimeout{120};

// Runs argv with stdout and stderr captured together. Returns the exit status, or -1 if it could
// not be run or did not finish in time (then *output says so). The daemons the script starts do
// not keep the pipe (mailenv.sh redirects them), but if one ever did, reading would never see EOF:
// so once the script has exited, what is left is drained with a short grace period only.
int runCommand(const std::vector<std::string>& argv, std::string* output) {
  output->clear();
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) {
    *output = std::string("pipe: ") + std::strerror(errno);
    return -1;
  }
  std::vector<char*> args;
  for (const auto& a : argv)
    args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);

  const pid_t pid = fork();
  if (pid < 0) {
    *output = std::string("fork: ") + std::strerror(errno);
    close(fds[0]);
    close(fds[1]);
    return -1;
  }
  if (pid == 0) {
    // Only async-signal-safe calls here. The daemons inherit whatever the script inherits: give
    // them stdin from /dev/null and none of the test process's other descriptors.
    const int null_fd = open("/dev/null", O_RDONLY);
    if (null_fd >= 0)
      dup2(null_fd, 0);
    dup2(fds[1], 1);
    dup2(fds[1], 2);
    close_range(3, ~0U, 0);
    execv(args[0], args.data());
    _exit(127);
  }
  close(fds[1]);

  const auto deadline = std::chrono::steady_clock::now() + kScriptTimeout;
  int status = 0;
  bool exited = false;
  char buf[4096];
  for (;;) {
    if (!exited) {
      const pid_t r = waitpid(pid, &status, WNOHANG);
      exited = r == pid;
    }
    pollfd p{fds[0], POLLIN, 0};
    const int ready = poll(&p, 1, exited ? 200 : 50);
    if (ready > 0) {
      const ssize_t n = read(fds[0], buf, sizeof buf);
      if (n > 0) {
        output->append(buf, static_cast<size_t>(n));
        continue;
      }
      if (n == 0 || errno != EINTR)
        break;  // EOF
    } else if (exited) {
      break;  // exited and quiet for 200 ms
    }
    if (!exited && std::chrono::steady_clock::now() > deadline) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      close(fds[0]);
      output->append("\n(timed out after " + std::to_string(kScriptTimeout.count()) + " s)");
      return -1;
    }
  }
  close(fds[0]);
  if (!exited)
    waitpid(pid, &status, 0);
  if (!WIFEXITED(status))
    return -1;
  return WEXITSTATUS(status);
}

// Undoes bash's printf %q for the values mailenv.sh writes: plain words, '' for empty, and
// backslash escapes.
std::string unquote(const std::string& v) {
  if (v == "''")
    return "";
  if (v.size() >= 2 && v.front() == '\'' && v.back() == '\'')
    return v.substr(1, v.size() - 2);
  std::string out;
  for (size_t i = 0; i < v.size(); ++i) {
    if (v[i] == '\\' && i + 1 < v.size())
      ++i;
    out += v[i];
  }
  return out;
}

std::string tail(const std::string& text, size_t max_chars) {
  return text.size() <= max_chars ? text : "..." + text.substr(text.size() - max_chars);
}

bool executableInPath(const std::string& name) {
  std::string path = getenv("PATH") ? getenv("PATH") : "";
  path += ":/usr/sbin:/sbin:/usr/bin:/bin";  // root's tools, even with a user's PATH
  std::istringstream dirs(path);
  std::string dir;
  while (std::getline(dirs, dir, ':')) {
    if (!dir.empty() && access((dir + "/" + name).c_str(), X_OK) == 0)
      return true;
  }
  return false;
}

}  // namespace

std::string MailEnv::scriptPath() {
  return MAILPROBE_SOURCE_DIR "/tests/integration/mailenv.sh";
}

bool MailEnv::available(std::string* why) {
  std::string missing;
  if (!executableInPath("dovecot"))
    missing += " dovecot (dovecot-core, dovecot-imapd)";
  if (!executableInPath("postfix"))
    missing += " postfix (postfix)";
  if (!executableInPath("openssl"))
    missing += " openssl (openssl)";
  if (!missing.empty()) {
    if (why)
      *why = "not installed:" + missing;
    return false;
  }
  if (geteuid() != 0) {
    if (why)
      *why = "must run as root: Postfix's master and Dovecot start as root";
    return false;
  }
  if (access(scriptPath().c_str(), X_OK) != 0) {
    if (why)
      *why = scriptPath() + " is not executable";
    return false;
  }
  return true;
}

std::unique_ptr<MailEnv> MailEnv::start(std::string* error) {
  std::string why;
  if (!available(&why)) {
    if (error)
      *error = why;
    return nullptr;
  }
  const char* tmp = getenv("TMPDIR");
  std::string templ = std::string(tmp && *tmp ? tmp : "/tmp") + "/mailenv.XXXXXX";
  if (mkdtemp(templ.data()) == nullptr) {
    if (error)
      *error = "mkdtemp " + templ + ": " + std::strerror(errno);
    return nullptr;
  }
  std::unique_ptr<MailEnv> env(new MailEnv(templ));
  std::string output;
  env->started_ = true;  // from here on the destructor stops and cleans up, even half-started
  if (!env->run({scriptPath(), "start", env->dir_}, &output)) {
    if (error)
      *error = "mailenv.sh start failed:\n" + tail(output, 6000);
    return nullptr;
  }
  if (!env->loadEnv(error))
    return nullptr;
  return env;
}

MailEnv::~MailEnv() {
  if (!started_)
    return;
  std::string output;
  if (!run({scriptPath(), "stop", dir_}, &output)) {
    fprintf(stderr, "mailenv.sh stop %s failed:\n%s\n", dir_.c_str(), output.c_str());
  }
  if (getenv("MAILPROBE_KEEP_MAILENV")) {
    fprintf(stderr, "mailenv: keeping %s (MAILPROBE_KEEP_MAILENV)\n", dir_.c_str());
    return;
  }
  std::error_code ec;
  std::filesystem::remove_all(dir_, ec);
}

bool MailEnv::run(const std::vector<std::string>& args, std::string* output) const {
  const int status = runCommand(args, output);
  if (status == 0)
    return true;
  last_error_ = *output;
  return false;
}

bool MailEnv::loadEnv(std::string* error) {
  std::ifstream in(dir_ + "/env");
  if (!in) {
    if (error)
      *error = "no " + dir_ + "/env after mailenv.sh start";
    return false;
  }
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#')
      continue;
    const auto eq = line.find('=');
    if (eq == std::string::npos)
      continue;
    env_[line.substr(0, eq)] = unquote(line.substr(eq + 1));
  }
  struct PortField {
    const char* key;
    uint16_t* port;
  };
  const PortField ports[] = {{"IMAP_STARTTLS_PORT", &imap_starttls_port_},
                             {"IMAPS_PORT", &imaps_port_},
                             {"SMTP_PORT", &smtp_port_},
                             {"SMTPS_PORT", &smtps_port_},
                             {"SUBMISSION_PORT", &submission_port_}};
  for (const auto& [key, port] : ports) {
    const int v = std::atoi(value(key).c_str());
    if (v <= 0 || v > 65535) {
      if (error)
        *error = std::string("bad or missing ") + key + " in " + dir_ + "/env";
      return false;
    }
    *port = static_cast<uint16_t>(v);
  }
  user_ = value("USER");
  password_file_ = value("PASSWORD_FILE");
  ca_file_ = value("CA_FILE");
  if (user_.empty() || password_file_.empty() || ca_file_.empty()) {
    if (error)
      *error = "USER, PASSWORD_FILE or CA_FILE missing in " + dir_ + "/env";
    return false;
  }
  return true;
}

std::string MailEnv::value(const std::string& key) const {
  const auto it = env_.find(key);
  return it == env_.end() ? std::string() : it->second;
}

std::string MailEnv::password() const {
  std::ifstream in(password_file_);
  std::string pw;
  std::getline(in, pw);
  return pw;
}

bool MailEnv::runSettings(const std::string& command, const std::vector<std::string>& settings) {
  std::vector<std::string> args{scriptPath(), command, dir_};
  args.insert(args.end(), settings.begin(), settings.end());
  std::string output;
  return run(args, &output);
}

bool MailEnv::postconf(const std::vector<std::string>& settings) {
  return runSettings("postconf", settings);
}

bool MailEnv::postconfMaster(const std::vector<std::string>& settings) {
  return runSettings("postconf-master", settings);
}

bool MailEnv::doveconf(const std::vector<std::string>& settings) {
  return runSettings("doveconf", settings);
}

std::string MailEnv::queue() const {
  std::string output;
  run({scriptPath(), "queue", dir_}, &output);
  return output;
}

bool MailEnv::stopService(const std::string& name) {
  std::string output;
  return run({scriptPath(), "stop-service", dir_, name}, &output);
}

bool MailEnv::startService(const std::string& name) {
  std::string output;
  return run({scriptPath(), "start-service", dir_, name}, &output);
}

std::string MailEnv::logs(int lines) const {
  std::string output;
  run({scriptPath(), "logs", dir_, std::to_string(lines)}, &output);
  return output;
}

size_t MailEnv::refusedLogins() const {
  std::ifstream in(value("DOVECOT_LOG"));
  size_t n = 0;
  for (std::string line; std::getline(in, line);) {
    if (line.find("Password mismatch") != std::string::npos) {
      ++n;
    }
  }
  return n;
}

MailEnv* MailEnvSuite::env_ = nullptr;
std::string MailEnvSuite::skip_reason_;
std::string MailEnvSuite::start_error_;
double MailEnvSuite::start_seconds_ = 0;

void MailEnvSuite::SetUpTestSuite() {
  skip_reason_.clear();
  start_error_.clear();
  std::string why;
  if (!MailEnv::available(&why)) {
    skip_reason_ = why;
    return;
  }
  const auto t0 = std::chrono::steady_clock::now();
  env_ = MailEnv::start(&start_error_).release();
  start_seconds_ = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

void MailEnvSuite::TearDownTestSuite() {
  if (!env_)
    return;
  const auto t0 = std::chrono::steady_clock::now();
  delete env_;
  env_ = nullptr;
  printf("[ mailenv  ] started in %.2f s, stopped in %.2f s\n", start_seconds_,
         std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
}

void MailEnvSuite::SetUp() {
  if (!skip_reason_.empty())
    GTEST_SKIP() << "needs Dovecot and Postfix: " << skip_reason_;
  ASSERT_NE(env_, nullptr) << "the loopback mail servers did not start: " << start_error_;
}

void MailEnvSuite::TearDown() {
  if (HasFailure() && env_)
    printf("%s\n", env_->logs(30).c_str());
}

}  // namespace mailprobe::testing
