// libFuzzer target: loadConfigFromString on hostile TOML. Beyond "no crash, no leak, no UB",
// it checks the loader's contract: a config exactly when there is no error, errors sorted by
// position, and no secret (from the environment or a systemd credential) in any error or
// warning.
//
// It never touches real secrets or devices: the environment is a fake that answers every
// variable with a marker value, $CREDENTIALS_DIRECTORY is a private temp dir holding one marker
// credential (a credential name cannot hold a '/'), and relative paths resolve under a
// directory that does not exist. Inputs that could spell an absolute path for the loader to
// open (password_file or ca_file next to a '/', or any backslash escape, which could spell a
// '/' or a key name) are skipped: a fuzzer could otherwise open /dev/stdin, a FIFO or a real
// password file.

#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>

#include "daemon/config.h"
#include "tests/fuzz/fuzz_support.h"

namespace {

constexpr std::string_view kEnvSecret = "fuzz-env-secret-7d1c0b";
constexpr std::string_view kCredentialSecret = "fuzz-credential-secret-5e2a91";

std::string& credentialsDir() {
  static std::string dir;
  return dir;
}

void removeCredentialsDir() {
  std::error_code ec;
  std::filesystem::remove_all(credentialsDir(), ec);
}

std::optional<std::string> fakeEnv(const std::string& name) {
  if (name == "CREDENTIALS_DIRECTORY") {
    return credentialsDir();
  }
  if (name.find("UNSET") != std::string::npos) {
    return std::nullopt;
  }
  return std::string(kEnvSecret);
}

// Comment lines cannot hold a key or a value; every other line is looked at.
bool mayOpenAbsolutePath(std::string_view toml) {
  bool file_key = false, slash = false;
  while (!toml.empty()) {
    size_t end = std::min(toml.find('\n'), toml.size());
    std::string_view line = toml.substr(0, end);
    toml.remove_prefix(std::min(end + 1, toml.size()));
    size_t first = line.find_first_not_of(" \t\r");
    if (first != std::string_view::npos && line[first] == '#') {
      continue;
    }
    if (line.find('\\') != std::string_view::npos) {
      return true;
    }
    file_key = file_key || line.find("_file") != std::string_view::npos;
    slash = slash || line.find('/') != std::string_view::npos;
  }
  return file_key && slash;
}

bool leaks(const std::string& text) {
  return text.find(kEnvSecret) != std::string::npos ||
         text.find(kCredentialSecret) != std::string::npos;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  char dir[] = "/tmp/mailprobe-config-fuzz-XXXXXX";
  if (::mkdtemp(dir) == nullptr) {
    std::abort();
  }
  credentialsDir() = dir;
  std::ofstream(credentialsDir() + "/probe-password") << kCredentialSecret << "\n";
  std::atexit(removeCredentialsDir);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view toml(reinterpret_cast<const char*>(data), size);
  if (mayOpenAbsolutePath(toml)) {
    return -1;  // not kept in the corpus
  }
  // A marker the input spells itself (libFuzzer learns it from the comparisons below) is no
  // leak when an error quotes it back.
  bool quotes_markers = leaks(std::string(toml));
  mailprobe::GetEnv env = fakeEnv;
  mailprobe::LoadResult result =
      mailprobe::loadConfigFromString(toml, "/nonexistent/mailprobed-fuzz.toml", env);
  FUZZ_CHECK(result.ok() == result.errors.empty());
  for (size_t i = 0; i < result.errors.size(); ++i) {
    const mailprobe::ConfigError& e = result.errors[i];
    FUZZ_CHECK(!e.message.empty());
    FUZZ_CHECK(quotes_markers || !leaks(e.format()));
    if (i > 0) {
      const mailprobe::ConfigError& p = result.errors[i - 1];
      FUZZ_CHECK(p.line < e.line || (p.line == e.line && p.column <= e.column));
    }
  }
  if (!result.ok()) {
    return 0;
  }
  const mailprobe::Config& config = *result.config;
  for (const std::string& w : config.warnings) {
    FUZZ_CHECK(quotes_markers || !leaks(w));
  }
  FUZZ_CHECK(!config.hosts.empty());
  for (const mailprobe::HostConfig& host : config.hosts) {
    FUZZ_CHECK(!host.name.empty());
    FUZZ_CHECK(quotes_markers || !leaks(host.account_source));
    for (const mailprobe::EndpointConfig& e : host.endpoints) {
      FUZZ_CHECK(e.spec.port != 0);
      FUZZ_CHECK(e.interval.count() > 0);
      FUZZ_CHECK(e.spec.timeouts.phase.count() > 0 && e.spec.timeouts.total.count() > 0);
      FUZZ_CHECK(e.spec.timeouts.connect.count() > 0 && e.spec.timeouts.resolve.count() > 0);
    }
  }
  return 0;
}
