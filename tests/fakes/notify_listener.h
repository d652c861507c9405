#pragma once
// systemd's side of sd_notify(3), for tests: a unix datagram socket whose address goes into
// NOTIFY_SOCKET, and a thread that drains it continuously (a kernel queue of ~10 datagrams
// would otherwise drop the watchdog pings of a daemon under test). Failures to set up throw
// std::runtime_error: this is test support.

#include <sys/types.h>

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace mailprobe::testing {

class NotifyListener {
 public:
  enum class Kind {
    Path,      // a socket file in a fresh temp dir, removed with the dir on destruction
    Abstract,  // a unique name in the Linux abstract namespace ("@..."): nothing on disk
  };
  explicit NotifyListener(Kind kind = Kind::Path);
  ~NotifyListener();
  NotifyListener(const NotifyListener&) = delete;
  NotifyListener& operator=(const NotifyListener&) = delete;

  // The value for NOTIFY_SOCKET: "/tmp/mailprobe-notify-XXXXXX/notify" or "@mailprobe-...".
  const std::string& notifySocket() const { return notify_socket_; }

  // Every datagram received so far, in order, byte for byte.
  std::vector<std::string> messages() const;
  // The sending pid of each message (SCM_CREDENTIALS, as systemd sees it for NotifyAccess=).
  std::vector<pid_t> senders() const;

  // True as soon as a message at index >= from contains needle; false after timeout. `from`
  // lets a test wait for what follows an action: `auto n = l.messages().size(); kill(pid,
  // SIGHUP); l.waitFor("RELOADING=1", 5s, n);`.
  bool waitFor(std::string_view needle, std::chrono::milliseconds timeout, size_t from = 0) const;

 private:
  void run();

  std::string dir_, path_, notify_socket_;
  int fd_ = -1;
  int stop_pipe_[2] = {-1, -1};
  mutable std::mutex mutex_;
  mutable std::condition_variable received_;
  std::vector<std::string> messages_;
  std::vector<pid_t> senders_;
  std::thread thread_;
};

}  // namespace mailprobe::testing
