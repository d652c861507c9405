#pragma once
// The sd_notify(3) protocol, spoken directly: one AF_UNIX datagram of newline-separated
// assignments to $NOTIFY_SOCKET ("/path", or "@name" for the Linux abstract namespace). The
// protocol is systemd's stable interface, so there is no libsystemd dependency.
//
// - Outside systemd (NOTIFY_SOCKET unset or empty) every call is a no-op that returns true.
// - A send never blocks the loop (MSG_DONTWAIT) and never throws; it returns false on failure
//   and the first failure is logged once, at warning level. systemd's advice is to ignore the
//   result; the return value is for tests and for callers that want to count failures.
// - Datagrams are attributed to the sending pid by the kernel (SCM_CREDENTIALS on systemd's
//   side). With NotifyAccess=main any thread of the main process may send, but the watchdog
//   ping belongs on the loop thread: it proves the loop is not wedged.
// - Not thread-safe: use one notifier from the loop thread.

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

namespace mailprobe {

class SystemdNotifier {
 public:
  // Reads NOTIFY_SOCKET and WATCHDOG_USEC/WATCHDOG_PID from the given environment getter
  // (tests fake it); inactive (every call a no-op returning true) when NOTIFY_SOCKET is unset.
  explicit SystemdNotifier(std::function<std::optional<std::string>(const std::string&)> getenv);

  // NOTIFY_SOCKET is set: systemd expects to hear from us (even if the value is unusable).
  bool active() const { return active_; }

  // Each call sends one datagram. STATUS= is appended when status is not empty; a newline in it
  // becomes a space (STATUS is one line, and a newline would forge another assignment).
  bool ready(std::string_view status = {});      // "READY=1[\nSTATUS=...]"
  bool reloading(std::string_view status = {});  // "RELOADING=1\nMONOTONIC_USEC=...[\nSTATUS=]"
  bool stopping(std::string_view status = {});   // "STOPPING=1[\nSTATUS=...]"
  bool status(std::string_view status);          // "STATUS=..."
  bool watchdog();                               // "WATCHDOG=1"

  // Half of WATCHDOG_USEC when it is set for this pid (WATCHDOG_PID unset or ours), else
  // nullopt: the period of the loop timer that calls watchdog(). Never 0 ms.
  std::optional<std::chrono::milliseconds> watchdogInterval() const { return watchdog_interval_; }

  // One datagram, sent as given.
  bool send(std::string_view message);

 private:
  void warnOnce(const std::string& what);

  bool active_ = false;
  std::string socket_;  // NOTIFY_SOCKET as given, for messages
  std::optional<std::chrono::milliseconds> watchdog_interval_;
  bool warned_ = false;
};

}  // namespace mailprobe
