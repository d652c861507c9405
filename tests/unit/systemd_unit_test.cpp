// systemd/mailprobed.service as systemd 252 reads it: `systemd-analyze verify` must have nothing
// to say, and `systemd-analyze security --offline=yes` must keep the exposure score measured
// when the hardening was written. Neither needs a running systemd.

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <regex>
#include <set>
#include <sstream>
#include <string>

namespace mailprobe {
namespace {

namespace fs = std::filesystem;

// Measured on systemd 252.39 (Debian 12) when the unit was written: 1.1 "OK". The score moves in
// steps of 0.1 or less per directive, so the exposed items are checked by name too: exactly
// what a network probe cannot give up (host network, AF_INET/AF_INET6/AF_UNIX, no IP allow list,
// the host's root directory) and the read-only /dev/rtc that ProtectClock= itself allows.
constexpr double kMaxExposure = 1.1;
const std::set<std::string> kExposedItems = {"RootDirectory=/RootImage=",
                                             "RestrictAddressFamilies=~AF_UNIX",
                                             "RestrictAddressFamilies=~AF_(INET|INET6)",
                                             "PrivateNetwork=",
                                             "DeviceAllow=",
                                             "IPAddressDeny="};

const std::string kUnit = MAILPROBE_SOURCE_DIR "/systemd/mailprobed.service";
const std::string kShippedBinary = "/usr/sbin/mailprobed";

std::string findSystemdAnalyze() {
  const char* path = std::getenv("PATH");
  std::stringstream dirs(path != nullptr ? path : "/usr/bin:/bin");
  std::string dir;
  while (std::getline(dirs, dir, ':')) {
    std::string candidate = (dir.empty() ? "." : dir) + "/systemd-analyze";
    if (::access(candidate.c_str(), X_OK) == 0) {
      return candidate;
    }
  }
  return "";
}

struct CommandResult {
  int status = -1;
  std::string output;  // stdout and stderr together
};

CommandResult run(const std::string& command) {
  CommandResult r;
  FILE* pipe = ::popen((command + " 2>&1").c_str(), "r");
  if (pipe == nullptr) {
    return r;
  }
  char buffer[4096];
  size_t n;
  while ((n = std::fread(buffer, 1, sizeof buffer, pipe)) > 0) {
    r.output.append(buffer, n);
  }
  int status = ::pclose(pipe);
  r.status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

std::string readFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// verify insists that every Exec*= command exists and is executable: the built daemon when
// there is one, else /bin/true.
std::string standInBinary() {
  std::string built = MAILPROBE_BINARY_DIR "/daemon/mailprobed";
  return ::access(built.c_str(), X_OK) == 0 ? built : "/bin/true";
}

// A copy of the unit, named mailprobed.service, in a temp dir removed on destruction.
class UnitCopy {
 public:
  explicit UnitCopy(std::string content) {
    std::string templ = fs::temp_directory_path().string() + "/mailprobe-unit-XXXXXX";
    if (::mkdtemp(templ.data()) != nullptr) {
      dir_ = templ;
      std::ofstream(path()) << content;
    }
  }
  ~UnitCopy() {
    if (!dir_.empty()) {
      std::error_code ec;
      fs::remove_all(dir_, ec);
    }
  }
  std::string path() const { return dir_ + "/mailprobed.service"; }

 private:
  std::string dir_;
};

// The shipped unit with its ExecStartPre=/ExecStart= binary replaced by one that exists here.
std::string unitWithStandIn(int* replaced) {
  std::string unit = readFile(kUnit);
  std::string binary = standInBinary();
  *replaced = 0;
  for (size_t at = unit.find(kShippedBinary); at != std::string::npos;
       at = unit.find(kShippedBinary, at + binary.size())) {
    unit.replace(at, kShippedBinary.size(), binary);
    ++*replaced;
  }
  return unit;
}

std::string shellQuoted(const std::string& s) {
  return "'" + s + "'";
}

TEST(SystemdUnitFile, ShipsTheContractTheDaemonReliesOn) {
  std::string unit = readFile(kUnit);
  ASSERT_FALSE(unit.empty()) << kUnit;
  for (const char* line : {
           "Type=notify\n",
           "NotifyAccess=main\n",
           "ExecStartPre=/usr/sbin/mailprobed validate --config /etc/mailprobed/mailprobed.toml\n",
           "ExecStart=/usr/sbin/mailprobed run --config /etc/mailprobed/mailprobed.toml\n",
           "ExecReload=/bin/kill -HUP $MAINPID\n",
           "WatchdogSec=30s\n",
           "Restart=on-failure\n",
           "DynamicUser=yes\n",
           // The config's `password_credential = "probe-password"` reads this.
           "LoadCredential=probe-password:/etc/mailprobed/probe-password\n",
           "CapabilityBoundingSet=\n",
           "AmbientCapabilities=\n",
       }) {
    EXPECT_NE(unit.find(std::string("\n") + line), std::string::npos) << "missing: " << line;
  }
}

// Runs systemd-analyze on a copy of a unit; skips when systemd-analyze is not installed.
class SystemdUnit : public ::testing::Test {
 protected:
  void SetUp() override {
    analyze_ = findSystemdAnalyze();
    if (analyze_.empty()) {
      GTEST_SKIP() << "systemd-analyze not installed";
    }
  }
  CommandResult analyze(const std::string& arguments, const std::string& unit) const {
    UnitCopy copy(unit);
    return run(shellQuoted(analyze_) + " " + arguments + " " + shellQuoted(copy.path()));
  }

 private:
  std::string analyze_;
};

TEST_F(SystemdUnit, VerifyHasNothingToSay) {
  int replaced = 0;
  std::string unit = unitWithStandIn(&replaced);
  EXPECT_EQ(replaced, 2) << "ExecStartPre= and ExecStart= should both name " << kShippedBinary;
  CommandResult r = analyze("verify", unit);
  EXPECT_EQ(r.status, 0) << r.output;
  // verify exits 0 on unknown keys and unparsable values ("..., ignoring."): only its silence
  // means the unit is read as written.
  EXPECT_EQ(r.output, "");
}

// Guards the test above: the same harness does see a directive systemd 252 ignores.
TEST_F(SystemdUnit, VerifyReportsWhatSystemdIgnores) {
  int replaced = 0;
  std::string unit = unitWithStandIn(&replaced);
  unit.replace(unit.find("[Service]\n"), 10, "[Service]\nProtectHome=maybe\nWatchdogUSec=30s\n");
  CommandResult r = analyze("verify", unit);
  EXPECT_NE(r.output.find("protect home"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("WatchdogUSec"), std::string::npos) << r.output;
}

TEST_F(SystemdUnit, SecurityExposureStaysLow) {
  int replaced = 0;
  CommandResult r = analyze("security --offline=yes --no-pager", unitWithStandIn(&replaced));
  EXPECT_EQ(r.status, 0) << r.output;
  std::smatch m;
  ASSERT_TRUE(std::regex_search(r.output, m,
                                std::regex("Overall exposure level for [^:]+: ([0-9]+\\.[0-9]+)")))
      << r.output;
  double score = std::stod(m[1]);
  // Printed so a change of score shows in the test log, with the items still exposed.
  std::cout << "systemd-analyze security: exposure " << m[1] << " (threshold " << kMaxExposure
            << ")\n";
  std::set<std::string> exposed;
  std::stringstream lines(r.output);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.rfind("✗ ", 0) == 0) {
      std::cout << "  " << line << "\n";
      std::stringstream words(line.substr(std::string("✗ ").size()));
      std::string name;
      words >> name;
      exposed.insert(name);
    }
  }
  EXPECT_LE(score, kMaxExposure) << r.output;
  EXPECT_EQ(exposed, kExposedItems) << r.output;
}

}  // namespace
}  // namespace mailprobe
