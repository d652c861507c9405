// The `check` and `validate` commands as a person or a script runs them: the real binary, its
// output and its exit codes, against the loopback mail servers.

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <fstream>
#include <map>
#include <set>
#include <tuple>

#include "daemon/profiles.h"
#include "tests/fakes/mail_env.h"
#include "tests/fakes/mail_env_config.h"
#include "tests/fakes/subprocess.h"

namespace mailprobe {
namespace {

using namespace std::chrono_literals;
using testing::MailEnv;
using testing::Subprocess;

struct CliRun {
  int code = -1;
  std::string output;
  double seconds = 0;
};

class CliTest : public testing::MailEnvSuite {
 protected:
  static CliRun run(std::vector<std::string> args) {
    args.insert(args.begin(), MAILPROBED_BIN);
    static int n = 0;
    Subprocess p(args, {}, env()->dir() + "/cli-" + std::to_string(++n) + ".out");
    auto started = std::chrono::steady_clock::now();
    CliRun r;
    r.code = p.wait(60s).value_or(-1);
    r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    r.output = p.output();
    return r;
  }

  // The platform's five endpoints on the loopback servers and every built-in profile redefined
  // (`replace = true`) with its own settings, its ports moved to the servers'.
  static std::string platformConfig() {
    std::string path = env()->dir() + "/platform-profiles.toml";
    std::ofstream(path) << testing::platformConfigToml(
                               *env(), "127.0.0.1", "timeout = \"20s\"\nphase_timeout = \"8s\"\n")
                        << testing::profilesToml(*env(), builtinProfiles());
    return path;
  }

  // profile/direction -> (known, ok, reason) of the `profiles` part of check's JSON.
  static std::map<std::string, std::tuple<bool, bool, std::string>> cells(const nlohmann::json& j) {
    std::map<std::string, std::tuple<bool, bool, std::string>> out;
    for (const auto& v : j["profiles"]) {
      out[v["profile"].get<std::string>() + "/" + v["direction"].get<std::string>()] = {
          v["known"].get<bool>(), v["ok"].get<bool>(), v["reason"].get<std::string>()};
    }
    return out;
  }

  static std::vector<std::string> adHoc(uint16_t port, const std::string& address = "127.0.0.1") {
    return {"check",
            "--host",
            "localhost",
            "--address",
            address,
            "--port",
            std::to_string(port),
            "--user",
            env()->user(),
            "--password-file",
            env()->dir() + "/password",
            "--ca-file",
            env()->caFile(),
            "--source-address",
            "127.0.0.2"};
  }
};

TEST_F(CliTest, JsonOfAWorkingEndpointHasTheContractShapeAndExitsZero) {
  auto args = adHoc(env()->imapsPort());
  args.insert(args.end(), {"--service", "imap", "--security", "tls", "--format", "json"});
  CliRun r = run(args);
  ASSERT_EQ(r.code, 0) << r.output;
  auto j = nlohmann::json::parse(r.output, nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << r.output;
  ASSERT_EQ(j["endpoints"].size(), 1u);
  const auto& e = j["endpoints"][0];
  for (const char* key : {"host", "address", "port", "service", "security", "success", "reason",
                          "phase", "sentence", "tls", "auth", "timings"}) {
    EXPECT_TRUE(e.contains(key)) << key;
  }
  EXPECT_EQ(e["host"], "localhost");
  EXPECT_EQ(e["address"], "127.0.0.1");
  EXPECT_EQ(e["port"], env()->imapsPort());
  EXPECT_EQ(e["service"], "imap");
  EXPECT_EQ(e["security"], "tls");
  EXPECT_EQ(e["success"], true);
  EXPECT_EQ(e["reason"], "none");
  for (const char* key : {"version", "cipher", "verify", "not_after", "accept_all_ok"}) {
    EXPECT_TRUE(e["tls"].contains(key)) << key;
  }
  EXPECT_EQ(e["tls"]["verify"], "ok");
  EXPECT_EQ(e["tls"]["accept_all_ok"], true);
  ASSERT_GE(e["auth"].size(), 2u);
  for (const auto& a : e["auth"]) {
    EXPECT_EQ(a["success"], true);
    EXPECT_EQ(a["reason"], "none");
  }
  EXPECT_TRUE(e["timings"].contains("tls_handshake"));
  EXPECT_TRUE(j["relay"].is_array());
  EXPECT_TRUE(j["profiles"].is_array());
  EXPECT_EQ(r.output.find(env()->password()), std::string::npos);
}

TEST_F(CliTest, TextNamesTheFailingStepAndExitsCriticalWithPerfdata) {
  auto args = adHoc(env()->imapsPort(), "127.0.0.4");  // the expired certificate
  args.insert(args.end(), {"--service", "imap", "--security", "tls", "--perfdata"});
  CliRun r = run(args);
  EXPECT_EQ(r.code, 2) << r.output;
  EXPECT_NE(r.output.find("fails at tls_handshake: the certificate has expired"), std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("clients that accept all certificates still connect"), std::string::npos);
  EXPECT_NE(r.output.find("CRITICAL: 0 of 1 endpoints work"), std::string::npos);
  EXPECT_NE(r.output.find("| 'imap_"), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find(env()->password()), std::string::npos);
}

TEST_F(CliTest, TheFiveDefaultEndpointsOfTheAdHocFormNeedOnlyAHost) {
  // Without --port: the platform's five, on their standard ports, where nothing listens here.
  CliRun r = run({"check", "--host", "127.0.0.1", "--user", env()->user(), "--password-file",
                  env()->dir() + "/password", "--format", "json", "--timeout", "5s"});
  EXPECT_EQ(r.code, 2);
  auto j = nlohmann::json::parse(r.output, nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << r.output;
  std::set<int> ports;
  for (const auto& e : j["endpoints"]) {
    ports.insert(e["port"].get<int>());
  }
  EXPECT_EQ(ports, (std::set<int>{25, 143, 465, 587, 993}));
}

// Every built-in profile gets a verdict in check: the TLS version scans run alongside the probes,
// so legacy-tls10 is judged too (Dovecot refuses TLS 1.0 and 1.1, Postfix takes them). Without the
// scans it cannot be told, the rest stays the same.
TEST_F(CliTest, CheckScansTlsVersionsSoThatEveryProfileGetsAVerdict) {
  const std::string config = platformConfig();
  CliRun r = run({"check", "--config", config, "--format", "json"});
  ASSERT_EQ(r.code, 0) << r.output;
  auto j = nlohmann::json::parse(r.output, nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << r.output;
  auto got = cells(j);
  std::map<std::string, std::tuple<bool, bool, std::string>> expected;
  for (const ClientProfile& p : builtinProfiles()) {
    expected[p.id + "/incoming"] = {true, true, "none"};
    expected[p.id + "/outgoing"] = {true, true, "none"};
  }
  expected["legacy-tls10/incoming"] = {true, false, "tls_version_unsupported"};
  EXPECT_EQ(got, expected) << j["profiles"].dump(2);
  for (const auto& v : j["profiles"]) {
    if (v["profile"] == "legacy-tls10" && v["direction"] == "incoming") {
      std::string sentence = v["sentence"];
      EXPECT_EQ(sentence.rfind("legacy-tls10 cannot read mail: imap " +
                                   std::to_string(env()->imapsPort()) +
                                   " (tls) accepts only TLSv1.2 and TLSv1.3, not TLSv1.0 or "
                                   "TLSv1.1 since ",
                               0),
                0u)
          << sentence;
      EXPECT_EQ(v["phase"], "tls_handshake");
    }
  }
  EXPECT_EQ(r.output.find(env()->password()), std::string::npos);

  // The same in text, one line per cell.
  CliRun text = run({"check", "--config", config});
  EXPECT_EQ(text.code, 0) << text.output;
  EXPECT_NE(text.output.find("client configurations:\n"), std::string::npos) << text.output;
  EXPECT_NE(text.output.find("FAIL  legacy-tls10 cannot read mail: imap "), std::string::npos)
      << text.output;
  EXPECT_NE(text.output.find("ok    legacy-tls10 can send: smtp "), std::string::npos)
      << text.output;
  EXPECT_EQ(text.output.find("??  "), std::string::npos) << text.output;

  // Without the scans: the old phone cannot be judged, nothing else changes.
  CliRun skipped = run({"check", "--config", config, "--format", "json", "--no-version-scan"});
  ASSERT_EQ(skipped.code, 0) << skipped.output;
  auto k = nlohmann::json::parse(skipped.output, nullptr, false);
  ASSERT_FALSE(k.is_discarded()) << skipped.output;
  expected["legacy-tls10/incoming"] = {false, false, "none"};
  expected["legacy-tls10/outgoing"] = {false, false, "none"};
  EXPECT_EQ(cells(k), expected) << k["profiles"].dump(2);

  // For the record (TlsVersionScanPace tests the pace itself): what the scans add to a check.
  std::printf("check: %.2f s with the version scans, %.2f s without\n", r.seconds, skipped.seconds);
}

TEST_F(CliTest, ConfigErrorsAreLocatedAndExitUnknown) {
  std::string path = env()->dir() + "/broken.toml";
  std::ofstream(path) << "[defaults]\ninterval = \"30x\"\n\n[[host]]\nname = \"mail.example.org\"\n"
                         "bogus = 1\n";
  CliRun v = run({"validate", "--config", path});
  EXPECT_EQ(v.code, 3);
  EXPECT_NE(v.output.find(path + ":2:12: interval:"), std::string::npos) << v.output;
  EXPECT_NE(v.output.find(path + ":6:1: unknown key 'bogus'"), std::string::npos) << v.output;
  CliRun c = run({"check", "--config", path});
  EXPECT_EQ(c.code, 3);
  CliRun p = run({"check", "--host", "x", "--password", "secret"});
  EXPECT_EQ(p.code, 3);
  EXPECT_NE(p.output.find("--password is not accepted"), std::string::npos);
  EXPECT_EQ(p.output.find("secret"), std::string::npos);
}

}  // namespace
}  // namespace mailprobe
