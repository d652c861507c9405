#include "daemon/systemd_notify.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <map>
#include <regex>
#include <string>

#include "tests/fakes/notify_listener.h"

namespace mailprobe {
namespace {

using namespace std::chrono_literals;
using testing::NotifyListener;

// An environment made of exactly these variables.
auto env(std::map<std::string, std::string> vars) {
  return [vars = std::move(vars)](const std::string& name) -> std::optional<std::string> {
    auto it = vars.find(name);
    if (it == vars.end()) {
      return std::nullopt;
    }
    return it->second;
  };
}

std::optional<std::chrono::milliseconds> intervalFor(std::map<std::string, std::string> vars) {
  return SystemdNotifier(env(std::move(vars))).watchdogInterval();
}

TEST(SystemdNotify, EachMessageArrivesExactlyAsSpecified) {
  NotifyListener listener;
  SystemdNotifier notifier(env({{"NOTIFY_SOCKET", listener.notifySocket()}}));
  ASSERT_TRUE(notifier.active());

  EXPECT_TRUE(notifier.ready("probing 5 endpoints on 1 host"));
  EXPECT_TRUE(notifier.ready());
  EXPECT_TRUE(notifier.reloading("reloading /etc/mailprobed/mailprobed.toml"));
  EXPECT_TRUE(notifier.reloading());
  EXPECT_TRUE(notifier.stopping("stopping"));
  EXPECT_TRUE(notifier.stopping());
  EXPECT_TRUE(notifier.status("last round: 5 ok"));
  EXPECT_TRUE(notifier.status("two\nlines\r"));
  EXPECT_TRUE(notifier.watchdog());
  EXPECT_TRUE(notifier.send("X_MAILPROBE=1"));
  ASSERT_TRUE(listener.waitFor("X_MAILPROBE=1", 5s));

  auto got = listener.messages();
  ASSERT_EQ(got.size(), 10u);
  EXPECT_EQ(got[0], "READY=1\nSTATUS=probing 5 endpoints on 1 host");
  EXPECT_EQ(got[1], "READY=1");
  // MONOTONIC_USEC is CLOCK_MONOTONIC in microseconds (Type=notify-reload wants it; 252 ignores
  // it): only its shape is fixed.
  EXPECT_TRUE(
      std::regex_match(got[2], std::regex("RELOADING=1\nMONOTONIC_USEC=[1-9][0-9]*\n"
                                          "STATUS=reloading /etc/mailprobed/mailprobed.toml")))
      << got[2];
  EXPECT_TRUE(std::regex_match(got[3], std::regex("RELOADING=1\nMONOTONIC_USEC=[1-9][0-9]*")))
      << got[3];
  EXPECT_EQ(got[4], "STOPPING=1\nSTATUS=stopping");
  EXPECT_EQ(got[5], "STOPPING=1");
  EXPECT_EQ(got[6], "STATUS=last round: 5 ok");
  // STATUS is one line: a newline would end it and start a forged assignment.
  EXPECT_EQ(got[7], "STATUS=two lines ");
  EXPECT_EQ(got[8], "WATCHDOG=1");
  EXPECT_EQ(got[9], "X_MAILPROBE=1");

  // The kernel attributes every datagram to this process: what NotifyAccess=main checks.
  for (pid_t pid : listener.senders()) {
    EXPECT_EQ(pid, ::getpid());
  }
}

TEST(SystemdNotify, AbstractSocketWorks) {
  NotifyListener listener(NotifyListener::Kind::Abstract);
  ASSERT_EQ(listener.notifySocket()[0], '@');
  SystemdNotifier notifier(env({{"NOTIFY_SOCKET", listener.notifySocket()}}));
  EXPECT_TRUE(notifier.ready("up"));
  EXPECT_TRUE(notifier.watchdog());
  ASSERT_TRUE(listener.waitFor("WATCHDOG=1", 5s));
  EXPECT_EQ(listener.messages(), (std::vector<std::string>{"READY=1\nSTATUS=up", "WATCHDOG=1"}));
}

TEST(SystemdNotify, InactiveWithoutNotifySocket) {
  for (auto vars : {std::map<std::string, std::string>{},
                    std::map<std::string, std::string>{{"NOTIFY_SOCKET", ""}}}) {
    SystemdNotifier notifier(env(vars));
    EXPECT_FALSE(notifier.active());
    EXPECT_TRUE(notifier.ready("x"));
    EXPECT_TRUE(notifier.reloading());
    EXPECT_TRUE(notifier.stopping());
    EXPECT_TRUE(notifier.status("x"));
    EXPECT_TRUE(notifier.watchdog());
    EXPECT_TRUE(notifier.send("READY=1"));
  }
}

TEST(SystemdNotify, FailingSendReturnsFalseAndWarnsOnce) {
  for (const std::string& socket : std::vector<std::string>{
           "/nonexistent-mailprobe-dir/notify", "relative/notify", "@", std::string(200, '/')}) {
    SystemdNotifier notifier(env({{"NOTIFY_SOCKET", socket}}));
    EXPECT_TRUE(notifier.active()) << socket;
    ::testing::internal::CaptureStderr();
    EXPECT_FALSE(notifier.ready()) << socket;
    EXPECT_FALSE(notifier.watchdog()) << socket;
    EXPECT_FALSE(notifier.stopping()) << socket;
    std::string err = ::testing::internal::GetCapturedStderr();
    size_t warnings = 0;
    for (size_t at = err.find("<4>"); at != std::string::npos; at = err.find("<4>", at + 1)) {
      ++warnings;
    }
    EXPECT_EQ(warnings, 1u) << socket << ": " << err;
  }
}

TEST(SystemdNotify, WatchdogIntervalIsHalfOfWatchdogUsecForThisPid) {
  using std::chrono::milliseconds;
  std::string self = std::to_string(::getpid());
  std::string other = std::to_string(::getpid() + 1);

  EXPECT_EQ(intervalFor({{"WATCHDOG_USEC", "2000000"}}), milliseconds(1000));
  EXPECT_EQ(intervalFor({{"WATCHDOG_USEC", "2000000"}, {"WATCHDOG_PID", self}}),
            milliseconds(1000));
  EXPECT_EQ(intervalFor({{"WATCHDOG_USEC", "30000000"}}), milliseconds(15000));
  // A timer period is never 0 ms.
  EXPECT_EQ(intervalFor({{"WATCHDOG_USEC", "1"}}), milliseconds(1));

  EXPECT_EQ(intervalFor({}), std::nullopt);
  EXPECT_EQ(intervalFor({{"WATCHDOG_USEC", "2000000"}, {"WATCHDOG_PID", other}}), std::nullopt);
  EXPECT_EQ(intervalFor({{"WATCHDOG_USEC", "2000000"}, {"WATCHDOG_PID", "garbage"}}), std::nullopt);
  for (const char* garbage :
       {"", "0", "abc", "-2000000", "2000000us", " 2000000", "2e6", "99999999999999999999999"}) {
    EXPECT_EQ(intervalFor({{"WATCHDOG_USEC", garbage}}), std::nullopt) << garbage;
  }
}

TEST(SystemdNotify, ListenerRemovesItsSocketFile) {
  std::string path;
  {
    NotifyListener listener;
    path = listener.notifySocket();
    struct stat st {};
    ASSERT_EQ(::stat(path.c_str(), &st), 0);
    EXPECT_TRUE(S_ISSOCK(st.st_mode));
  }
  struct stat st {};
  EXPECT_NE(::stat(path.c_str(), &st), 0);
  EXPECT_NE(::stat(path.substr(0, path.rfind('/')).c_str(), &st), 0);
}

TEST(SystemdNotify, ListenerWaitsOnlyForMessagesAfterAnIndex) {
  NotifyListener listener;
  SystemdNotifier notifier(env({{"NOTIFY_SOCKET", listener.notifySocket()}}));
  notifier.ready();
  ASSERT_TRUE(listener.waitFor("READY=1", 5s));
  EXPECT_FALSE(listener.waitFor("READY=1", 50ms, 1));
  notifier.ready();
  EXPECT_TRUE(listener.waitFor("READY=1", 5s, 1));
}

}  // namespace
}  // namespace mailprobe
