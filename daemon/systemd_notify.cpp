#include "daemon/systemd_notify.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstddef>
#include <cstdint>
#include <system_error>

#include "daemon/log.h"

namespace mailprobe {
namespace {

// A non-empty run of decimal digits that fits in uint64_t, and nothing else.
std::optional<uint64_t> parseUnsigned(const std::optional<std::string>& text) {
  if (!text || text->empty()) {
    return std::nullopt;
  }
  uint64_t value = 0;
  const char* end = text->data() + text->size();
  auto [ptr, ec] = std::from_chars(text->data(), end, value);
  if (ec != std::errc() || ptr != end) {
    return std::nullopt;
  }
  return value;
}

std::string oneLine(std::string_view text) {
  std::string out(text);
  for (char& c : out) {
    if (c == '\n' || c == '\r') {
      c = ' ';
    }
  }
  return out;
}

std::string withStatus(std::string message, std::string_view status) {
  if (!status.empty()) {
    message += "\nSTATUS=";
    message += oneLine(status);
  }
  return message;
}

uint64_t monotonicUsec() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1'000'000u + static_cast<uint64_t>(ts.tv_nsec) / 1000u;
}

// Closes the descriptor on every path out of send().
struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) {
      ::close(fd);
    }
  }
};

}  // namespace

SystemdNotifier::SystemdNotifier(
    std::function<std::optional<std::string>(const std::string&)> getenv) {
  if (auto socket = getenv("NOTIFY_SOCKET"); socket && !socket->empty()) {
    active_ = true;
    socket_ = *socket;
  }
  // sd_watchdog_enabled(3): WATCHDOG_PID, when set, names the process the watchdog is for; a
  // child that inherited the environment must not ping on its parent's behalf.
  auto usec = parseUnsigned(getenv("WATCHDOG_USEC"));
  auto pid_var = getenv("WATCHDOG_PID");
  bool for_us = true;
  if (pid_var) {
    auto pid = parseUnsigned(pid_var);
    for_us = pid && *pid == static_cast<uint64_t>(::getpid());
  }
  if (usec && *usec > 0 && for_us) {
    // Ping at twice the rate systemd checks, so one late timer does not cost a restart.
    auto half = std::chrono::milliseconds(*usec / 2 / 1000);
    watchdog_interval_ = std::max(half, std::chrono::milliseconds(1));
  }
}

bool SystemdNotifier::ready(std::string_view status) {
  return send(withStatus("READY=1", status));
}

bool SystemdNotifier::reloading(std::string_view status) {
  // MONOTONIC_USEC is required by Type=notify-reload (systemd 253+); 252 ignores it.
  return send(withStatus("RELOADING=1\nMONOTONIC_USEC=" + std::to_string(monotonicUsec()), status));
}

bool SystemdNotifier::stopping(std::string_view status) {
  return send(withStatus("STOPPING=1", status));
}

bool SystemdNotifier::status(std::string_view status) {
  return send("STATUS=" + oneLine(status));
}

bool SystemdNotifier::watchdog() {
  return send("WATCHDOG=1");
}

bool SystemdNotifier::send(std::string_view message) {
  if (!active_) {
    return true;
  }
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  // "/path" or "@abstract"; the terminating NUL of a path is not needed, and an abstract name
  // has none: the length below counts exactly the name's bytes.
  if ((socket_[0] != '/' && socket_[0] != '@') || socket_.size() < 2 ||
      socket_.size() > sizeof(address.sun_path)) {
    warnOnce("NOTIFY_SOCKET is neither an absolute path nor an @abstract name");
    return false;
  }
  socket_.copy(address.sun_path, socket_.size());
  if (address.sun_path[0] == '@') {
    address.sun_path[0] = '\0';
  }
  auto length = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + socket_.size());

  // A fresh socket per message, like sd_notify(): nothing to keep open across fork or reload.
  Fd fd{::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0)};
  if (fd.fd < 0) {
    warnOnce(std::error_code(errno, std::system_category()).message());
    return false;
  }
  iovec iov{const_cast<char*>(message.data()), message.size()};
  msghdr msg{};
  msg.msg_name = &address;
  msg.msg_namelen = length;
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  ssize_t sent = ::sendmsg(fd.fd, &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
  if (sent < 0) {
    warnOnce(std::error_code(errno, std::system_category()).message());
    return false;
  }
  if (static_cast<size_t>(sent) != message.size()) {
    warnOnce("short datagram");
    return false;
  }
  return true;
}

void SystemdNotifier::warnOnce(const std::string& what) {
  if (warned_) {
    return;
  }
  warned_ = true;
  log::warning("cannot notify systemd through NOTIFY_SOCKET=" + socket_ + ": " + what +
               " (further notification failures are not logged)");
}

}  // namespace mailprobe
