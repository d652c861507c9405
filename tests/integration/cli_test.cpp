// The `check` and `validate` commands as a person or a script runs them: the real binary, its
// output and its exit codes, against the loopback mail servers.

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <fstream>
#include <set>

#include "tests/fakes/mail_env.h"
#include "tests/fakes/subprocess.h"

namespace mailprobe {
namespace {

using namespace std::chrono_literals;
using testing::MailEnv;
using testing::Subprocess;

struct CliRun {
  int code = -1;
  std::string output;
};

class CliTest : public testing::MailEnvSuite {
 protected:
  static CliRun run(std::vector<std::string> args) {
    args.insert(args.begin(), MAILPROBED_BIN);
    static int n = 0;
    Subprocess p(args, {}, env()->dir() + "/cli-" + std::to_string(++n) + ".out");
    CliRun r;
    r.code = p.wait(60s).value_or(-1);
    r.output = p.output();
    return r;
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
