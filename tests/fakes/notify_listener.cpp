#include "tests/fakes/notify_listener.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <random>
#include <stdexcept>
#include <system_error>

namespace mailprobe::testing {
namespace {

[[noreturn]] void fail(const std::string& what) {
  throw std::runtime_error("NotifyListener: " + what + ": " +
                           std::error_code(errno, std::system_category()).message());
}

std::string uniqueAbstractName() {
  static std::atomic<unsigned> counter{0};
  std::random_device random;
  return "@mailprobe-notify-" + std::to_string(::getpid()) + "-" + std::to_string(++counter) + "-" +
         std::to_string(random());
}

}  // namespace

NotifyListener::NotifyListener(Kind kind) {
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  if (kind == Kind::Path) {
    const char* tmp = std::getenv("TMPDIR");
    std::string base = tmp != nullptr && *tmp != '\0' ? tmp : "/tmp";
    // sun_path holds 108 bytes: a long TMPDIR would not fit "/mailprobe-notify-XXXXXX/notify".
    if (base.size() > 60) {
      base = "/tmp";
    }
    std::string templ = base + "/mailprobe-notify-XXXXXX";
    if (::mkdtemp(templ.data()) == nullptr) {
      fail("mkdtemp " + templ);
    }
    dir_ = templ;
    path_ = dir_ + "/notify";
    notify_socket_ = path_;
  } else {
    notify_socket_ = uniqueAbstractName();
  }
  notify_socket_.copy(address.sun_path, notify_socket_.size());
  if (address.sun_path[0] == '@') {
    address.sun_path[0] = '\0';
  }
  auto length = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + notify_socket_.size());

  auto cleanup = [this] {
    if (fd_ >= 0) {
      ::close(fd_);
    }
    if (!path_.empty()) {
      ::unlink(path_.c_str());
    }
    if (!dir_.empty()) {
      ::rmdir(dir_.c_str());
    }
  };
  fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  int one = 1;
  if (fd_ < 0 || ::setsockopt(fd_, SOL_SOCKET, SO_PASSCRED, &one, sizeof one) != 0 ||
      ::bind(fd_, reinterpret_cast<sockaddr*>(&address), length) != 0 ||
      ::pipe2(stop_pipe_, O_CLOEXEC) != 0) {
    int saved = errno;
    cleanup();
    errno = saved;
    fail("cannot listen on " + notify_socket_);
  }
  thread_ = std::thread([this] { run(); });
}

NotifyListener::~NotifyListener() {
  char byte = 0;
  (void)!::write(stop_pipe_[1], &byte, 1);
  thread_.join();
  ::close(stop_pipe_[0]);
  ::close(stop_pipe_[1]);
  ::close(fd_);
  if (!path_.empty()) {
    ::unlink(path_.c_str());
    ::rmdir(dir_.c_str());
  }
}

void NotifyListener::run() {
  for (;;) {
    pollfd fds[2] = {{fd_, POLLIN, 0}, {stop_pipe_[0], POLLIN, 0}};
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) {
        continue;
      }
      return;
    }
    if (fds[1].revents != 0) {
      return;
    }
    // Drain everything queued: one poll wake-up may stand for several datagrams.
    for (;;) {
      char buffer[64 * 1024];
      alignas(cmsghdr) char control[CMSG_SPACE(sizeof(ucred))];
      iovec iov{buffer, sizeof buffer};
      msghdr msg{};
      msg.msg_iov = &iov;
      msg.msg_iovlen = 1;
      msg.msg_control = control;
      msg.msg_controllen = sizeof control;
      ssize_t n = ::recvmsg(fd_, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
      if (n < 0) {
        break;  // EAGAIN: drained
      }
      pid_t sender = 0;
      for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_CREDENTIALS) {
          ucred cred{};
          std::memcpy(&cred, CMSG_DATA(c), sizeof cred);
          sender = cred.pid;
        }
      }
      std::lock_guard lock(mutex_);
      messages_.emplace_back(buffer, static_cast<size_t>(n));
      senders_.push_back(sender);
      received_.notify_all();
    }
  }
}

std::vector<std::string> NotifyListener::messages() const {
  std::lock_guard lock(mutex_);
  return messages_;
}

std::vector<pid_t> NotifyListener::senders() const {
  std::lock_guard lock(mutex_);
  return senders_;
}

bool NotifyListener::waitFor(std::string_view needle, std::chrono::milliseconds timeout,
                             size_t from) const {
  std::unique_lock lock(mutex_);
  return received_.wait_for(lock, timeout, [&] {
    for (size_t i = from; i < messages_.size(); ++i) {
      if (messages_[i].find(needle) != std::string::npos) {
        return true;
      }
    }
    return false;
  });
}

}  // namespace mailprobe::testing
