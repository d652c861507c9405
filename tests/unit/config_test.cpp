// The config loader (STYLE habit 13e): the reference and example configs load; defaults and
// overrides land where they should; one bad file per error, each with its exact message; and
// the probe password never shows up anywhere but in Credentials::password.

#include "daemon/config.h"

#include <gtest/gtest.h>
#include <openssl/tls1.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sstream>

#include "daemon/duration.h"

namespace mailprobe {
namespace {

using std::chrono::milliseconds;
using namespace std::chrono_literals;

const std::string kSourceDir = MAILPROBE_SOURCE_DIR;
const std::string kDataDir = kSourceDir + "/tests/testdata/config";

GetEnv fakeEnv(std::map<std::string, std::string> vars) {
  return [vars = std::move(vars)](const std::string& name) -> std::optional<std::string> {
    auto it = vars.find(name);
    if (it == vars.end()) {
      return std::nullopt;
    }
    return it->second;
  };
}

// What the bad-*.toml files and most snippets expect of their environment.
GetEnv testEnv(bool credentials_directory = true) {
  std::map<std::string, std::string> vars{{"MAILPROBED_TEST_PASSWORD", "env-secret"}};
  if (credentials_directory) {
    vars["CREDENTIALS_DIRECTORY"] = kDataDir + "/credentials";
  }
  return fakeEnv(std::move(vars));
}

std::string allErrors(const LoadResult& r) {
  std::string out;
  for (const ConfigError& e : r.errors) {
    out += e.format() + "\n";
  }
  return out;
}

std::string readFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

class TempDir {
 public:
  TempDir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "mailprobe-config-XXXXXX");
    path_ = ::mkdtemp(pattern.data());
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }
  std::string write(const std::string& name, std::string_view content, mode_t mode = 0600) const {
    std::string file = path_ + "/" + name;
    std::ofstream(file, std::ios::binary) << content;
    ::chmod(file.c_str(), mode);
    return file;
  }

 private:
  std::string path_;
};

// Examples name the files an installation has under /etc/mailprobed/ (the password, a CA):
// load them with those files in a temporary directory instead.
// Relay vantages in examples are documentation addresses (192.0.2.0/24, 198.51.100.0/24,
// 2001:db8::/32) that this machine does not have: pretend it has them.
std::string anyAddressIsOurs(const std::string&) {
  return "";
}

LoadResult loadWithFakeEtc(const std::string& path, const TempDir& dir, const GetEnv& env) {
  std::string text = readFile(path);
  std::regex etc_file("/etc/mailprobed/([A-Za-z0-9._-]+)");
  for (std::sregex_iterator it(text.begin(), text.end(), etc_file), end; it != end; ++it) {
    dir.write((*it)[1].str(), "example-secret\n");
  }
  text = std::regex_replace(text, std::regex("/etc/mailprobed/"), dir.path() + "/");
  return loadConfigFromString(text, path, env, anyAddressIsOurs);
}

// ---------------------------------------------------------------------------------------------
// Durations

TEST(ConfigDuration, ParsesUnitsAndCompounds) {
  const std::pair<const char*, milliseconds> cases[] = {
      {"500ms", 500ms},    {"30s", 30s},
      {"5m", 5min},        {"1h", 1h},
      {"1m30s", 90s},      {"1h0m5s", 3605s},
      {"2s250ms", 2250ms}, {"0s", 0ms},
      {"90m", 90min},      {"1h1m1s1ms", 3661001ms},
  };
  for (const auto& [text, expected] : cases) {
    std::optional<milliseconds> d = parseDuration(text);
    ASSERT_TRUE(d.has_value()) << text;
    EXPECT_EQ(*d, expected) << text;
  }
}

TEST(ConfigDuration, RejectsWhatIsNotADuration) {
  for (const char* text : {"", "30", "s", "-5s", "+5s", "1.5s", "30 s", " 30s", "1s1m", "1m1m",
                           "5d", "30S", "ms", "30sec", "99999999999999999h"}) {
    EXPECT_FALSE(parseDuration(text).has_value()) << text;
  }
}

TEST(ConfigDuration, FormatsTheShortestSpellingAndRoundTrips) {
  EXPECT_EQ(formatDuration(90s), "1m30s");
  EXPECT_EQ(formatDuration(1500ms), "1s500ms");
  EXPECT_EQ(formatDuration(0ms), "0s");
  EXPECT_EQ(formatDuration(1h), "1h");
  for (milliseconds d : {1ms, 999ms, 60000ms, 3661001ms, 86400000ms}) {
    EXPECT_EQ(parseDuration(formatDuration(d)), d) << d.count();
  }
}

// ---------------------------------------------------------------------------------------------
// The shipped configs

TEST(ConfigGood, ReferenceConfigLoadsWithTheBuiltInDefaults) {
  LoadResult r = loadConfig(kSourceDir + "/etc/mailprobed.toml", testEnv());
  ASSERT_TRUE(r.ok()) << allErrors(r);
  const Config& c = *r.config;
  EXPECT_TRUE(c.warnings.empty());
  EXPECT_EQ(c.daemon.listen, "127.0.0.1:9807");
  EXPECT_EQ(c.daemon.log_level, "info");
  const AuthBackoff built_in_backoff;
  EXPECT_EQ(c.daemon.auth_backoff.initial, built_in_backoff.initial);
  EXPECT_EQ(c.daemon.auth_backoff.max, built_in_backoff.max);
  EXPECT_EQ(c.daemon.auth_backoff.factor, built_in_backoff.factor);
  EXPECT_EQ(built_in_backoff.initial, 1min);
  EXPECT_EQ(built_in_backoff.max, 1h);
  ASSERT_EQ(c.hosts.size(), 1u);
  EXPECT_EQ(c.hosts[0].account.user, "probe@example.org");
  EXPECT_EQ(c.hosts[0].account.password, "credential-secret");
  EXPECT_EQ(c.hosts[0].account_source, "credential probe-password");
  ASSERT_EQ(c.hosts[0].endpoints.size(), 5u);
  // The reference writes every default out: it must agree with the built-in ones.
  EndpointSpec built_in;
  for (const EndpointConfig& e : c.hosts[0].endpoints) {
    EXPECT_EQ(e.interval, 60s);
    EXPECT_EQ(e.spec.timeouts.total, built_in.timeouts.total);
    EXPECT_EQ(e.spec.timeouts.connect, built_in.timeouts.connect);
    EXPECT_EQ(e.spec.timeouts.phase, built_in.timeouts.phase);
    EXPECT_EQ(e.spec.timeouts.resolve, built_in.timeouts.resolve);
    EXPECT_EQ(e.spec.ehlo_name, built_in.ehlo_name);
    EXPECT_EQ(e.spec.tls.login_despite_invalid_cert, built_in.tls.login_despite_invalid_cert);
    EXPECT_EQ(e.spec.tls.resumption, built_in.tls.resumption);
    EXPECT_FALSE(e.spec.tls.resumption);
    EXPECT_EQ(e.spec.tls.ca_file, "");
    EXPECT_EQ(e.spec.tls.min_version, 0);
    EXPECT_EQ(e.spec.tls.max_version, 0);
    EXPECT_EQ(e.spec.family, AddressFamily::Any);
    EXPECT_EQ(e.spec.source_address, "");
    EXPECT_FALSE(e.spec.examine_inbox);
  }
}

TEST(ConfigGood, AuthBackoffIsDaemonWide) {
  const char* text =
      "[daemon]\n"
      "auth_backoff_initial = 30\n"
      "auth_backoff_max = \"10m\"\n"
      "auth_backoff_factor = 1.5\n"
      "[account]\n"
      "user = \"probe@example.org\"\n"
      "password_env = \"MAILPROBED_TEST_PASSWORD\"\n"
      "[[host]]\n"
      "name = \"mail.example.org\"\n";
  LoadResult r = loadConfigFromString(text, "backoff.toml", testEnv());
  ASSERT_TRUE(r.ok()) << allErrors(r);
  EXPECT_EQ(r.config->daemon.auth_backoff.initial, 30s);
  EXPECT_EQ(r.config->daemon.auth_backoff.max, 10min);
  EXPECT_EQ(r.config->daemon.auth_backoff.factor, 1.5);
  // The same wait every time: factor 1, initial = max.
  LoadResult flat = loadConfigFromString(
      "[daemon]\nauth_backoff_initial = \"5m\"\nauth_backoff_max = \"5m\"\n"
      "auth_backoff_factor = 1\n[[host]]\nname = \"mail.example.org\"\n"
      "[[host.endpoint]]\nservice = \"imap\"\nport = 993\nauth = \"none\"\n",
      "flat.toml", testEnv());
  ASSERT_TRUE(flat.ok()) << allErrors(flat);
  EXPECT_EQ(flat.config->daemon.auth_backoff.delayAfter(7), 5min);
}

TEST(ConfigGood, EveryExampleLoads) {
  size_t examples = 0;
  for (const auto& entry : std::filesystem::directory_iterator(kSourceDir + "/etc/examples")) {
    if (entry.path().extension() != ".toml") {
      continue;
    }
    ++examples;
    TempDir etc;
    GetEnv env =
        fakeEnv({{"CREDENTIALS_DIRECTORY", etc.path()}, {"MAILPROBED_PASSWORD", "example-secret"}});
    etc.write("probe-password", "example-secret\n");
    LoadResult r = loadWithFakeEtc(entry.path(), etc, env);
    ASSERT_TRUE(r.ok()) << allErrors(r);
    EXPECT_TRUE(r.config->warnings.empty()) << entry.path();
    for (const HostConfig& h : r.config->hosts) {
      EXPECT_FALSE(h.endpoints.empty()) << h.name;
      EXPECT_EQ(h.account.password, "example-secret") << h.name;
    }
  }
  EXPECT_GE(examples, 2u);
}

TEST(ConfigGood, BlueMindExampleProbesThePlatformsFive) {
  TempDir etc;
  etc.write("probe-password", "example-secret\n");
  LoadResult r = loadWithFakeEtc(kSourceDir + "/etc/examples/bluemind.toml", etc,
                                 fakeEnv({{"CREDENTIALS_DIRECTORY", etc.path()}}));
  ASSERT_TRUE(r.ok()) << allErrors(r);
  ASSERT_EQ(r.config->hosts.size(), 1u);
  const HostConfig& h = r.config->hosts[0];
  ASSERT_EQ(h.endpoints.size(), 5u);
  for (const EndpointConfig& e : h.endpoints) {
    EXPECT_EQ(e.spec.host, "mail.example.org");
    EXPECT_EQ(e.spec.examine_inbox, e.spec.service == Service::Imap);
  }
  // The relay rules of 25, 465 and 587 from a vantage in "Mes réseaux" and one outside.
  ASSERT_EQ(h.relay.size(), 3u);
  for (const RelayConfig& rc : h.relay) {
    ASSERT_EQ(rc.spec.vantages.size(), 2u);
    EXPECT_TRUE(rc.spec.vantages[0].trusted);
    EXPECT_FALSE(rc.spec.vantages[1].trusted);
    EXPECT_EQ(rc.spec.local_recipient, "supervision@example.org");
  }
}

TEST(ConfigGood, DualStackExamplePinsAddressesAndVantages) {
  TempDir etc;
  LoadResult r = loadWithFakeEtc(kSourceDir + "/etc/examples/dual-stack.toml", etc, testEnv());
  ASSERT_TRUE(r.ok()) << allErrors(r);
  ASSERT_EQ(r.config->hosts.size(), 2u);
  const HostConfig& mail = r.config->hosts[0];
  ASSERT_EQ(mail.endpoints.size(), 3u);
  for (const EndpointConfig& e : mail.endpoints) {
    EXPECT_EQ(e.spec.addresses, (std::vector<std::string>{"192.0.2.25", "2001:db8:25::25"}));
    EXPECT_EQ(e.spec.tls.ca_file, etc.path() + "/internal-ca.pem");
    EXPECT_FALSE(e.spec.tls.login_despite_invalid_cert);
  }
  EXPECT_EQ(mail.endpoints[0].interval, 2min);
  EXPECT_EQ(mail.endpoints[0].spec.mechanisms, std::vector<std::string>{"PLAIN"});
  EXPECT_EQ(mail.endpoints[1].interval, 30s);
  EXPECT_EQ(mail.endpoints[2].spec.tls.min_version, TLS1_2_VERSION);
  EXPECT_EQ(mail.account_source, "file " + etc.path() + "/probe-password");

  const HostConfig& mx = r.config->hosts[1];
  ASSERT_EQ(mx.endpoints.size(), 2u);
  EXPECT_EQ(mx.endpoints[0].spec.source_address, "192.0.2.200");
  EXPECT_EQ(mx.endpoints[1].spec.source_address, "198.51.100.7");
  for (const EndpointConfig& e : mx.endpoints) {
    EXPECT_EQ(e.spec.auth, AuthPolicy::Skip);
    EXPECT_EQ(e.spec.family, AddressFamily::V4);
    EXPECT_FALSE(e.spec.starttls_required);
  }
}

// ---------------------------------------------------------------------------------------------
// Defaults and overrides

const char* kMinimal = R"(
[account]
user = "probe@example.org"
password_env = "MAILPROBED_TEST_PASSWORD"

[[host]]
name = "mail.example.org"
)";

TEST(ConfigDefaults, AHostWithoutEndpointsGetsThePlatformsFive) {
  LoadResult r = loadConfigFromString(kMinimal, "minimal.toml", testEnv());
  ASSERT_TRUE(r.ok()) << allErrors(r);
  EXPECT_EQ(r.config->daemon.listen, "127.0.0.1:9807");
  EXPECT_EQ(r.config->daemon.log_level, "info");
  const HostConfig& h = r.config->hosts.at(0);
  EXPECT_EQ(h.name, "mail.example.org");
  EXPECT_EQ(h.account.user, "probe@example.org");
  EXPECT_EQ(h.account.password, "env-secret");
  EXPECT_EQ(h.account_source, "env MAILPROBED_TEST_PASSWORD");

  struct Expected {
    Service service;
    uint16_t port;
    Security security;
    bool starttls_required;
    AuthPolicy auth;
  };
  const Expected expected[] = {
      {Service::Imap, 143, Security::StartTls, true, AuthPolicy::Required},
      {Service::Imap, 993, Security::Tls, true, AuthPolicy::Required},
      {Service::Smtp, 25, Security::StartTls, false, AuthPolicy::Optional},
      {Service::Smtp, 465, Security::Tls, true, AuthPolicy::Required},
      {Service::Smtp, 587, Security::StartTls, true, AuthPolicy::Required},
  };
  ASSERT_EQ(h.endpoints.size(), std::size(expected));
  for (size_t i = 0; i < std::size(expected); ++i) {
    const EndpointSpec& s = h.endpoints[i].spec;
    SCOPED_TRACE(s.port);
    EXPECT_EQ(s.host, "mail.example.org");
    EXPECT_EQ(s.service, expected[i].service);
    EXPECT_EQ(s.port, expected[i].port);
    EXPECT_EQ(s.security, expected[i].security);
    EXPECT_EQ(s.starttls_required, expected[i].starttls_required);
    EXPECT_EQ(s.auth, expected[i].auth);
    EXPECT_TRUE(s.mechanisms.empty());
    EXPECT_TRUE(s.addresses.empty());
    EXPECT_EQ(h.endpoints[i].interval, 60s);
    EXPECT_EQ(s.timeouts.total, 30s);
    EXPECT_EQ(s.timeouts.connect, 5s);
    EXPECT_EQ(s.timeouts.phase, 10s);
    EXPECT_EQ(s.timeouts.resolve, 5s);
    EXPECT_EQ(s.ehlo_name, "mailprobed.invalid");
    EXPECT_TRUE(s.tls.login_despite_invalid_cert);
  }
  EXPECT_TRUE(r.config->warnings.empty());
}

TEST(ConfigDefaults, PlatformEndpointsAndPortRulesAgree) {
  for (const DefaultEndpoint& p : platformEndpoints()) {
    EXPECT_EQ(defaultSecurityForPort(p.port), p.security) << p.port;
  }
  EXPECT_FALSE(defaultSecurityForPort(2525).has_value());
  EXPECT_FALSE(defaultSecurityForPort(110).has_value());
}

TEST(ConfigOverrides, EndpointOverridesHostWhichOverridesDefaults) {
  TempDir dir;
  dir.write("ca.pem", "not checked here\n");
  dir.write("other-password", "host-secret\r\n");
  const char* text = R"(
[defaults]
interval = "2m"
timeout = 20
connect_timeout = "3s"
ca_file = "ca.pem"
family = "ipv4"

[account]
user = "probe@example.org"
password_env = "MAILPROBED_TEST_PASSWORD"

[[host]]
name = "a.example.org"
interval = "5m"
login_despite_invalid_cert = false
tls_min_version = "TLSv1.2"
examine_inbox = true
tls_resumption = true

  [host.account]
  user = "other@example.org"
  password_file = "other-password"

  [[host.endpoint]]
  service = "imap"
  port = 993
  interval = "30s"
  ca_file = ""
  mechanisms = ["plain", "LOGIN-COMMAND"]

  [[host.endpoint]]
  service = "smtp"
  port = 25
  source_address = "192.0.2.5"
  tls_resumption = false

  [[host.endpoint]]
  service = "smtp"
  port = 2525
  security = "starttls"
  auth = "optional"
  starttls_required = false

[[host]]
name = "b.example.org"
addresses = ["192.0.2.20"]
)";
  LoadResult r = loadConfigFromString(text, dir.path() + "/mailprobed.toml", testEnv());
  ASSERT_TRUE(r.ok()) << allErrors(r);
  ASSERT_EQ(r.config->hosts.size(), 2u);

  const HostConfig& a = r.config->hosts[0];
  EXPECT_EQ(a.account.user, "other@example.org");
  EXPECT_EQ(a.account.password, "host-secret");  // "\r\n" stripped
  EXPECT_EQ(a.account_source, "file " + dir.path() + "/other-password");
  ASSERT_EQ(a.endpoints.size(), 3u);

  const EndpointConfig& imap = a.endpoints[0];
  EXPECT_EQ(imap.interval, 30s);                           // endpoint
  EXPECT_EQ(imap.spec.timeouts.total, 20s);                // defaults, integer seconds
  EXPECT_EQ(imap.spec.timeouts.connect, 3s);               // defaults
  EXPECT_EQ(imap.spec.timeouts.phase, 10s);                // built in
  EXPECT_EQ(imap.spec.tls.ca_file, "");                    // endpoint back to the system store
  EXPECT_EQ(imap.spec.tls.min_version, TLS1_2_VERSION);    // host
  EXPECT_FALSE(imap.spec.tls.login_despite_invalid_cert);  // host
  EXPECT_TRUE(imap.spec.examine_inbox);                    // host
  EXPECT_TRUE(imap.spec.tls.resumption);                   // host
  EXPECT_EQ(imap.spec.family, AddressFamily::V4);          // defaults
  EXPECT_EQ(imap.spec.security, Security::Tls);            // by port
  EXPECT_EQ(imap.spec.mechanisms, (std::vector<std::string>{"PLAIN", "LOGIN-COMMAND"}));

  const EndpointConfig& mx = a.endpoints[1];
  EXPECT_EQ(mx.interval, 5min);  // host
  EXPECT_EQ(mx.spec.security, Security::StartTls);
  EXPECT_FALSE(mx.spec.starttls_required);  // smtp 25 is the MX
  EXPECT_EQ(mx.spec.auth, AuthPolicy::Optional);
  EXPECT_EQ(mx.spec.tls.ca_file, dir.path() + "/ca.pem");  // relative to the config
  EXPECT_EQ(mx.spec.source_address, "192.0.2.5");
  EXPECT_FALSE(mx.spec.examine_inbox);   // IMAP only
  EXPECT_FALSE(mx.spec.tls.resumption);  // endpoint

  const EndpointConfig& submission = a.endpoints[2];
  EXPECT_EQ(submission.spec.port, 2525);
  EXPECT_EQ(submission.spec.security, Security::StartTls);
  EXPECT_FALSE(submission.spec.starttls_required);
  EXPECT_EQ(submission.spec.auth, AuthPolicy::Optional);

  const HostConfig& b = r.config->hosts[1];
  EXPECT_EQ(b.account.user, "probe@example.org");
  EXPECT_EQ(b.account_source, "env MAILPROBED_TEST_PASSWORD");
  ASSERT_EQ(b.endpoints.size(), 5u);
  for (const EndpointConfig& e : b.endpoints) {
    EXPECT_EQ(e.interval, 2min);
    EXPECT_EQ(e.spec.addresses, std::vector<std::string>{"192.0.2.20"});
    EXPECT_TRUE(e.spec.tls.login_despite_invalid_cert);
    EXPECT_FALSE(e.spec.examine_inbox);
    EXPECT_FALSE(e.spec.tls.resumption);  // built in
  }
}

TEST(ConfigOverrides, AHostThatNeverLogsInNeedsNoAccount) {
  LoadResult r = loadConfigFromString(R"(
[[host]]
name = "mx.example.org"
  [[host.endpoint]]
  service = "smtp"
  port = 25
  auth = "none"
  [[host.endpoint]]
  service = "smtp"
  port = 2525
  security = "none"
  auth = "none"
)",
                                      "mx.toml", testEnv());
  ASSERT_TRUE(r.ok()) << allErrors(r);
  EXPECT_TRUE(r.config->hosts[0].account.empty());
  EXPECT_EQ(r.config->hosts[0].account_source, "");
  EXPECT_EQ(r.config->hosts[0].endpoints[1].spec.security, Security::None);
}

TEST(ConfigOverrides, DuplicateHostNamesWithDifferentAddressesAreBackendsOfAPool) {
  LoadResult r = loadConfigFromString(std::string(kMinimal) + R"(
addresses = ["192.0.2.10"]
[[host]]
name = "mail.example.org"
addresses = ["192.0.2.11"]
)",
                                      "pool.toml", testEnv());
  ASSERT_TRUE(r.ok()) << allErrors(r);
  EXPECT_EQ(r.config->hosts.size(), 2u);
}

// ---------------------------------------------------------------------------------------------
// Relay rules ([host.relay])

const char* kRelay = R"(
[account]
user = "probe@example.org"
password_env = "MAILPROBED_TEST_PASSWORD"

[[host]]
name = "mail.example.org"
  [host.relay]
  local_recipient = "probe@example.org"
    [[host.relay.vantage]]
    name = "office"
    source_address = "127.0.0.2"
    trusted = true
    [[host.relay.vantage]]
    name = "outside"
    source_address = "127.0.0.3"
)";

TEST(ConfigRelay, EverySmtpEndpointIsCheckedWithThePlatformsPolicy) {
  LoadResult r = loadConfigFromString(kRelay, "relay.toml", testEnv());
  ASSERT_TRUE(r.ok()) << allErrors(r);
  EXPECT_TRUE(r.config->warnings.empty());
  const HostConfig& h = r.config->hosts.at(0);
  ASSERT_EQ(h.relay.size(), 3u);
  const uint16_t ports[] = {25, 465, 587};
  for (size_t i = 0; i < 3; ++i) {
    const RelayConfig& rc = h.relay[i];
    SCOPED_TRACE(rc.spec.endpoint.port);
    EXPECT_EQ(rc.spec.endpoint.port, ports[i]);
    EXPECT_EQ(rc.spec.endpoint.service, Service::Smtp);
    EXPECT_EQ(rc.spec.endpoint.host, "mail.example.org");
    EXPECT_EQ(rc.spec.endpoint.source_address, "");
    EXPECT_EQ(rc.interval, 5min);
    EXPECT_EQ(rc.spec.local_recipient, "probe@example.org");
    EXPECT_EQ(rc.spec.outside_recipient, "relay-test@example.com");
    EXPECT_EQ(rc.spec.sender, "");  // the null sender
    EXPECT_EQ(rc.spec.signed_in_sender, "");
    EXPECT_TRUE(rc.spec.sign_in);
    ASSERT_EQ(rc.spec.vantages.size(), 2u);
    EXPECT_EQ(rc.spec.vantages[0].name, "office");
    EXPECT_EQ(rc.spec.vantages[0].source_address, "127.0.0.2");
    EXPECT_TRUE(rc.spec.vantages[0].trusted);
    EXPECT_EQ(rc.spec.vantages[1].name, "outside");
    EXPECT_FALSE(rc.spec.vantages[1].trusted);
    EXPECT_EQ(relayAuthStates(rc.spec).size(), 2u);
  }
  EXPECT_EQ(h.relay[0].spec.policy, mxRelayPolicy());
  EXPECT_EQ(h.relay[1].spec.policy, submissionRelayPolicy());
  EXPECT_EQ(h.relay[2].spec.policy, submissionRelayPolicy());
}

TEST(ConfigRelay, PortsPoliciesSendersAndIntervalOverride) {
  std::string text = std::string(kRelay) + R"(
  [[host.endpoint]]
  service = "smtp"
  port = 25
  auth = "none"
  [[host.endpoint]]
  service = "smtp"
  port = 2525
  security = "starttls"
  [[host.endpoint]]
  service = "imap"
  port = 993
)";
  // The relay table comes first in the file; the endpoints are read whole before it is built.
  text = std::regex_replace(text, std::regex("  local_recipient = \"probe@example.org\"\n"),
                            R"(  local_recipient = "probe@example.org"
  local_domains = ["example.org", "Example.NET"]
  outside_recipient = "relay-test@example.com"
  sender = "mailprobed@example.com"
  signed_in_sender = "alias@example.org"
  interval = "90s"
  ports = [2525, 25]
    [[host.relay.policy]]
    port = 2525
    trusted = "none"
    signed_in = "local"
)");
  LoadResult r = loadConfigFromString(text, "relay.toml", testEnv());
  ASSERT_TRUE(r.ok()) << allErrors(r);
  const HostConfig& h = r.config->hosts.at(0);
  ASSERT_EQ(h.relay.size(), 2u);
  const RelaySpec& submission = h.relay[0].spec;
  EXPECT_EQ(submission.endpoint.port, 2525);
  EXPECT_EQ(submission.policy.untrusted, RelayReach::Nobody);  // the default for sign-in ports
  EXPECT_EQ(submission.policy.trusted, RelayReach::Nobody);
  EXPECT_EQ(submission.policy.signed_in, RelayReach::Local);
  EXPECT_EQ(submission.sender, "mailprobed@example.com");
  EXPECT_EQ(submission.signed_in_sender, "alias@example.org");
  EXPECT_EQ(h.relay[0].interval, 90s);
  const RelaySpec& mx = h.relay[1].spec;
  EXPECT_EQ(mx.endpoint.port, 25);
  EXPECT_EQ(mx.policy, mxRelayPolicy());
  // The MX endpoint never logs in: only the unauthenticated cells are checked there.
  EXPECT_EQ(relayAuthStates(mx), std::vector<RelayAuth>{RelayAuth::None});
  EXPECT_EQ(relayAuthStates(submission).size(), 2u);
}

TEST(ConfigRelay, AnOutsideRecipientOffTheReservedDomainsIsAllowedWithAWarning) {
  std::string text = std::regex_replace(
      kRelay, std::regex("  local_recipient = \"probe@example.org\"\n"),
      "  local_recipient = \"probe@example.org\"\n  outside_recipient = \"relay@gmail.com\"\n");
  LoadResult r = loadConfigFromString(text, "relay.toml", testEnv());
  ASSERT_TRUE(r.ok()) << allErrors(r);
  EXPECT_EQ(r.config->hosts[0].relay[0].spec.outside_recipient, "relay@gmail.com");
  ASSERT_EQ(r.config->warnings.size(), 1u);
  EXPECT_EQ(r.config->warnings[0],
            "relay.toml:10:23: outside_recipient: \"relay@gmail.com\" is not on a reserved domain "
            "(example.com, example.net): nothing is ever sent to it (no DATA), but an open relay "
            "would accept it at RCPT TO");
}

TEST(ConfigRelay, VantagesAreCheckedAgainstTheMachinesAddresses) {
  AddressCheck check = bindableAddressCheck();
  EXPECT_EQ(check("127.0.0.2"), "");  // all of 127.0.0.0/8 is the loopback's
  EXPECT_EQ(check("192.0.2.1"), "Cannot assign requested address");
  std::vector<std::string> asked;
  AddressCheck fake = [&](const std::string& a) {
    asked.push_back(a);
    return a == "127.0.0.3" ? std::string("no such address") : std::string();
  };
  LoadResult r = loadConfigFromString(kRelay, "relay.toml", testEnv(), fake);
  EXPECT_EQ(asked, (std::vector<std::string>{"127.0.0.2", "127.0.0.3"}));
  ASSERT_EQ(r.errors.size(), 1u) << allErrors(r);
  EXPECT_EQ(r.errors[0].format(),
            "relay.toml:16:22: source_address: 127.0.0.3 is not an address of this machine (no "
            "such address); a vantage is a local address the probe sends from");
}

// ---------------------------------------------------------------------------------------------
// One bad file per error, with its exact message. {dir} stands for tests/testdata/config.

struct BadCase {
  const char* file;
  const char* message;
  bool credentials_directory = true;
};

const BadCase kBadCases[] = {
    {"bad-syntax.toml",
     "3:16: Error while parsing string: unescaped control characters other than TAB (U+0009) "
     "are explicitly prohibited"},
    {"bad-unknown-key.toml",
     "3:1: unknown key 'intervall' in [defaults]; did you mean 'interval'?"},
    {"bad-unknown-table.toml", "2:2: unknown table [deamon]; did you mean [daemon]?"},
    {"bad-unknown-host-key.toml",
     "8:1: unknown key 'user' in [[host]]; account keys go in [account] or [host.account]"},
    {"bad-unknown-endpoint-key.toml",
     "10:3: unknown key 'ports' in [[host.endpoint]]; did you mean 'port'?"},
    {"bad-unknown-account-key.toml",
     "10:3: unknown key 'pasword_file' in [host.account]; did you mean 'password_file'?"},
    {"bad-duration-negative.toml", "3:12: interval: must be longer than zero, got -5"},
    {"bad-duration-unit.toml",
     "3:11: timeout: \"30x\" is not a duration: write a number and a unit (ms, s, m, h), e.g. "
     "\"30s\" or \"1m30s\""},
    {"bad-duration-type.toml",
     "3:19: connect_timeout: expected a duration like \"30s\" or a whole number of seconds, got "
     "float 1.5"},
    {"bad-duration-zero.toml", "8:17: phase_timeout: must be longer than zero, got \"0s\""},
    {"bad-duration-too-long.toml", "11:14: interval: must be at most 24h, got \"48h\""},
    {"bad-port-range.toml", "10:10: port: must be between 1 and 65535, got 70000"},
    {"bad-port-type.toml", "10:10: port: expected a port number, got string \"993\""},
    {"bad-port-missing.toml", "8:3: [[host.endpoint]]: port is required"},
    {"bad-service-missing.toml",
     "8:3: [[host.endpoint]]: service is required (\"imap\" or \"smtp\")"},
    {"bad-service.toml", "9:13: service: \"pop3\" is not one of imap or smtp"},
    {"bad-security.toml",
     "11:14: security: \"ssl\" is not one of none, starttls or tls (implicit TLS, which clients "
     "call SSL, is \"tls\")"},
    {"bad-security-missing.toml",
     "10:10: security is required for port 2525: none, starttls or tls"},
    {"bad-auth.toml", "11:10: auth: \"mandatory\" is not one of required, optional or none"},
    {"bad-auth-plaintext.toml",
     "11:14: security: \"none\" needs auth = \"none\": the default auth = \"required\" would send "
     "the password in clear"},
    {"bad-starttls-required-tls.toml",
     "11:23: starttls_required: only applies to security = \"starttls\""},
    {"bad-family.toml", "3:10: family: \"inet6\" is not one of any, ipv4 or ipv6"},
    {"bad-family-addresses.toml",
     "9:10: family: \"ipv6\" leaves none of the host's addresses to probe (addresses at line 8)"},
    {"bad-log-level.toml",
     "3:13: log_level: \"verbose\" is not one of error, warning, notice, info or debug"},
    {"bad-backoff-factor.toml",
     "3:23: auth_backoff_factor: must be between 1 (the same wait every time) and 10, got 0.5"},
    {"bad-backoff-factor-type.toml",
     "3:23: auth_backoff_factor: expected a number such as 2 or 1.5, got string \"2x\""},
    {"bad-backoff-max.toml",
     "4:20: auth_backoff_max: must be at least auth_backoff_initial (10m), got 5m"},
    {"bad-backoff-initial.toml",
     "3:24: auth_backoff_initial: must be at most auth_backoff_max (1h by default), got 2h"},
    {"bad-listen.toml",
     "3:10: listen: expected \"address:port\" such as \"127.0.0.1:9807\" or \"[::1]:9807\", got "
     "\"9807\""},
    {"bad-addresses.toml", "8:28: addresses: \"mail1.example.org\" is not an IPv4 or IPv6 address"},
    {"bad-source-address.toml",
     "11:20: source_address: \"192.0.2.300\" is not an IPv4 or IPv6 address"},
    {"bad-mechanisms.toml",
     "11:26: mechanisms: \"LOGIN-COMMAND\" is the IMAP LOGIN command; SMTP has no such thing"},
    {"bad-mechanism-name.toml", "11:17: mechanisms: \"PLAIN LOGIN\" is not a SASL mechanism name"},
    {"bad-mechanisms-auth-none.toml", "12:16: mechanisms: useless with auth = \"none\""},
    {"bad-tls-version.toml",
     "3:19: tls_min_version: \"tls1.2\" is not one of default, TLSv1.0, TLSv1.1, TLSv1.2 or "
     "TLSv1.3; did you mean \"TLSv1.2\"?"},
    {"bad-tls-range.toml",
     "11:19: tls_max_version: TLSv1.2 is lower than tls_min_version = \"TLSv1.3\""},
    {"bad-ehlo-name.toml",
     "3:13: ehlo_name: \"probe host\" is not a domain name or an address literal like "
     "\"[192.0.2.1]\""},
    {"bad-ca-file.toml",
     "3:11: ca_file: cannot read /nonexistent/ca.pem: No such file or directory"},
    {"bad-duplicate-endpoint.toml",
     "11:3: duplicate endpoint imap 993 tls for host \"mail.example.org\" (first defined at line "
     "8)"},
    {"bad-duplicate-host.toml",
     "10:8: duplicate host \"mail.example.org\" (first defined at line 7); give different "
     "addresses or merge the tables"},
    {"bad-host-name-missing.toml", "6:1: [[host]]: name is required"},
    {"bad-host-name.toml", "7:8: name: \"mail example.org\" is not a host name or IP address"},
    {"bad-host-table.toml", "6:2: host: write [[host]] (an array of tables), not [host]"},
    {"bad-no-hosts.toml", "1:1: no [[host]] to probe: add at least one [[host]] table"},
    {"bad-endpoint-empty.toml",
     "8:12: endpoint: empty list; remove it to probe the platform's five default endpoints"},
    {"bad-type-string.toml", "3:13: ehlo_name: expected a string, got integer 42"},
    {"bad-type-bool.toml", "8:17: examine_inbox: expected true or false, got string \"yes\""},
    {"bad-examine-inbox-smtp.toml", "11:19: examine_inbox: only applies to imap endpoints"},
    {"bad-account-user-missing.toml", "2:1: [account]: user is required"},
    {"bad-password-none.toml",
     "2:1: [account]: no password: set one of password_credential, password_file, password_env "
     "or password (host \"mail.example.org\" logs in on imap 143 starttls)"},
    {"bad-password-no-account.toml",
     "6:8: host \"mail.example.org\": imap 143 starttls logs in (auth = \"required\"), but there "
     "is no [account] or [host.account]; add one, or set auth = \"none\""},
    {"bad-password-two-sources.toml",
     "5:16: password_env: give only one password source, and password_file is already set (at "
     "line 4)"},
    {"bad-password-file-missing.toml",
     "4:17: password_file: cannot read /nonexistent/probe-password: No such file or directory"},
    {"bad-password-file-empty.toml", "4:17: password_file: {dir}/empty-password.txt is empty"},
    {"bad-password-file-two-lines.toml",
     "4:17: password_file: {dir}/two-line-password.txt must hold the password alone on one line "
     "(it has a line break or NUL byte)"},
    {"bad-password-env-unset.toml", "4:16: password_env: $MAILPROBED_UNSET is not set"},
    {"bad-password-credential-no-dir.toml",
     "4:23: password_credential: $CREDENTIALS_DIRECTORY is not set: run under systemd with "
     "LoadCredential=probe-password:<file>, or use password_file",
     false},
    {"bad-password-credential-missing.toml",
     "4:23: password_credential: cannot read {dir}/credentials/absent-password: No such file or "
     "directory"},
    {"bad-relay-table.toml", "8:9: relay: expected a table [host.relay], got string \"yes\""},
    {"bad-relay-unknown-key.toml",
     "9:3: unknown key 'local_recipients' in [host.relay]; did you mean 'local_recipient'?"},
    {"bad-relay-recipient-missing.toml",
     "8:3: [host.relay]: local_recipient is required: an existing mailbox of the platform (it is "
     "only asked at RCPT TO, never sent anything)"},
    {"bad-relay-recipient.toml",
     "9:21: local_recipient: \"probe at example.org\" is not a mail address like "
     "\"user@example.org\""},
    {"bad-relay-outside-local.toml",
     "10:23: outside_recipient: \"someone@EXAMPLE.org\" is in a local domain of the platform: it "
     "would not test relaying; give an address outside example.org"},
    {"bad-relay-no-vantage.toml",
     "8:3: [host.relay]: at least one [[host.relay.vantage]] is required: a local address to send "
     "from, inside the trusted networks (trusted = true) or not"},
    {"bad-relay-vantage-name.toml",
     "11:12: name: \"my office\" is not a vantage name (letters, digits, '.', '_' and '-', at most "
     "64)"},
    {"bad-relay-vantage-duplicate.toml",
     "15:12: duplicate vantage \"office\" (first defined at line 11)"},
    {"bad-relay-vantage-address.toml",
     "12:22: source_address: \"192.0.2.300\" is not an IPv4 or IPv6 address"},
    // The machine does not have the address: found by binding a socket to it at load.
    {"bad-relay-vantage-absent.toml",
     "12:22: source_address: 192.0.2.1 is not an address of this machine (Cannot assign requested "
     "address); a vantage is a local address the probe sends from"},
    {"bad-relay-vantage-missing-address.toml",
     "10:5: [[host.relay.vantage]]: source_address is required (an address of this machine)"},
    {"bad-relay-policy-open.toml",
     "15:17: untrusted: \"all\" is not one of local or none: an untrusted client that may send "
     "anywhere is an open relay"},
    {"bad-relay-policy-port.toml",
     "14:12: port: 2525 is not an smtp endpoint of host \"mail.example.org\" (25, 465, 587)"},
    {"bad-relay-ports.toml",
     "10:16: ports: 143 is not an smtp endpoint of host \"mail.example.org\" (25, 465, 587)"},
    {"bad-relay-no-smtp.toml",
     "11:3: [host.relay]: host \"mail.example.org\" has no smtp endpoint to check"},
};

std::string expand(std::string text) {
  size_t at = text.find("{dir}");
  if (at != std::string::npos) {
    text.replace(at, 5, kDataDir);
  }
  return text;
}

TEST(ConfigBad, EachFileGivesExactlyItsOneError) {
  for (const BadCase& c : kBadCases) {
    SCOPED_TRACE(c.file);
    std::string path = kDataDir + "/" + c.file;
    LoadResult r = loadConfig(path, testEnv(c.credentials_directory));
    EXPECT_FALSE(r.config.has_value());
    ASSERT_EQ(r.errors.size(), 1u) << allErrors(r);
    EXPECT_EQ(r.errors[0].format(), path + ":" + expand(c.message));
    EXPECT_EQ(r.errors[0].file, path);
  }
}

TEST(ConfigBad, EveryBadFileHasItsExpectedMessage) {
  std::set<std::string> listed;
  for (const BadCase& c : kBadCases) {
    EXPECT_TRUE(listed.insert(c.file).second) << "listed twice: " << c.file;
  }
  for (const auto& entry : std::filesystem::directory_iterator(kDataDir)) {
    std::string name = entry.path().filename();
    if (name.starts_with("bad-")) {
      EXPECT_TRUE(listed.count(name)) << name << " has no expected message in kBadCases";
    }
  }
}

TEST(ConfigBad, EverySemanticErrorIsReportedInOnePassInFileOrder) {
  const char* text = R"([daemon]
log_level = "loud"
colour = true

[defaults]
interval = "1x"

[account]
user = "probe@example.org"

[[host]]
name = "a.example.org"
  [[host.endpoint]]
  service = "imap"
  port = 0
  [[host.endpoint]]
  service = "smtp"
  port = 2525

[[host]]
addresses = ["192.0.2.1"]
)";
  LoadResult r = loadConfigFromString(text, "many.toml", testEnv());
  EXPECT_FALSE(r.ok());
  std::vector<std::string> got;
  for (const ConfigError& e : r.errors) {
    got.push_back(e.format());
  }
  const std::vector<std::string> expected{
      "many.toml:2:13: log_level: \"loud\" is not one of error, warning, notice, info or debug",
      "many.toml:3:1: unknown key 'colour' in [daemon]",
      "many.toml:6:12: interval: \"1x\" is not a duration: write a number and a unit (ms, s, m, "
      "h), e.g. \"30s\" or \"1m30s\"",
      "many.toml:8:1: [account]: no password: set one of password_credential, password_file, "
      "password_env or password (host \"a.example.org\" logs in on an imap endpoint)",
      "many.toml:15:10: port: must be between 1 and 65535, got 0",
      "many.toml:18:10: security is required for port 2525: none, starttls or tls",
      "many.toml:20:1: [[host]]: name is required",
  };
  EXPECT_EQ(got, expected);
}

TEST(ConfigBad, SyntaxErrorsStopAtTheFirst) {
  LoadResult r = loadConfigFromString("a = \nb = [\n", "syntax.toml", testEnv());
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_EQ(r.errors[0].line, 1u);
  EXPECT_FALSE(r.config.has_value());
}

TEST(ConfigBad, AnUnreadableFileSaysWhy) {
  LoadResult r = loadConfig("/nonexistent/mailprobed.toml", testEnv());
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_EQ(r.errors[0].format(),
            "/nonexistent/mailprobed.toml: cannot read: No such file or directory");
  EXPECT_EQ(r.errors[0].line, 0u);
}

TEST(ConfigBad, ErrorFormatWithAndWithoutPosition) {
  EXPECT_EQ((ConfigError{"f.toml", 3, 7, "boom"}).format(), "f.toml:3:7: boom");
  EXPECT_EQ((ConfigError{"f.toml", 0, 0, "boom"}).format(), "f.toml: boom");
  EXPECT_EQ((ConfigError{"", 0, 0, "boom"}).format(), "boom");
}

// ---------------------------------------------------------------------------------------------
// Password sources

std::string accountWith(const std::string& source_line) {
  return "[account]\nuser = \"probe@example.org\"\n" + source_line +
         "\n\n[[host]]\nname = \"mail.example.org\"\n";
}

TEST(ConfigPassword, OneTrailingNewlineIsStrippedFromAFile) {
  TempDir dir;
  const std::pair<const char*, std::optional<std::string>> cases[] = {
      {"pw", "pw"},         {"pw\n", "pw"},
      {"pw\r\n", "pw"},     {"pw\n\n", std::nullopt},  // a second line: not a password file
      {"\n", std::nullopt},                            // empty
      {"p w\t", "p w\t"},  // inner and trailing blanks are the password's
  };
  for (const auto& [content, expected] : cases) {
    dir.write("pw", content);
    LoadResult r = loadConfigFromString(accountWith("password_file = \"pw\""),
                                        dir.path() + "/c.toml", testEnv());
    if (expected) {
      ASSERT_TRUE(r.ok()) << allErrors(r);
      EXPECT_EQ(r.config->hosts[0].account.password, *expected);
    } else {
      EXPECT_FALSE(r.ok()) << "content of size " << std::string_view(content).size();
    }
  }
}

TEST(ConfigPassword, EachSourceSaysWhereThePasswordCameFrom) {
  TempDir dir;
  dir.write("cred", "from-credential");
  dir.write("file", "from-file\n");
  GetEnv env = fakeEnv({{"CREDENTIALS_DIRECTORY", dir.path()}, {"PW", "from-env"}});
  const std::tuple<std::string, std::string, std::string> cases[] = {
      {"password_credential = \"cred\"", "from-credential", "credential cred"},
      {"password_file = \"" + dir.path() + "/file\"", "from-file", "file " + dir.path() + "/file"},
      {"password_env = \"PW\"", "from-env", "env PW"},
      {"password = \"from-inline\"", "from-inline", "inline"},
  };
  for (const auto& [line, password, source] : cases) {
    LoadResult r = loadConfigFromString(accountWith(line), "c.toml", env);
    ASSERT_TRUE(r.ok()) << allErrors(r);
    EXPECT_EQ(r.config->hosts[0].account.password, password);
    EXPECT_EQ(r.config->hosts[0].account_source, source);
  }
}

TEST(ConfigPassword, AnInlinePasswordGivesAWarning) {
  LoadResult r = loadConfigFromString(accountWith("password = \"inline-pw\""), "c.toml", testEnv());
  ASSERT_TRUE(r.ok()) << allErrors(r);
  EXPECT_EQ(r.config->warnings,
            std::vector<std::string>{
                "c.toml:3:12: password: an inline password can be read by anyone who can read "
                "this file; prefer password_credential, password_file or password_env"});
}

TEST(ConfigPassword, AnInlinePasswordInAFileOthersCanReadGivesASecondWarning) {
  TempDir dir;
  std::string text = accountWith("password = \"inline-pw\"");
  std::string private_file = dir.write("private.toml", text, 0600);
  std::string group_file = dir.write("group.toml", text, 0640);

  LoadResult r = loadConfig(private_file, testEnv());
  ASSERT_TRUE(r.ok()) << allErrors(r);
  EXPECT_EQ(r.config->warnings.size(), 1u);

  r = loadConfig(group_file, testEnv());
  ASSERT_TRUE(r.ok()) << allErrors(r);
  ASSERT_EQ(r.config->warnings.size(), 2u);
  // Warnings come in file order: the key (3:1) before its value (3:12).
  EXPECT_EQ(r.config->warnings[0],
            group_file +
                ":3:1: this file holds an inline password and is readable by its group (mode "
                "0640); chmod 600 it or move the password to a credential or file");

  // Without an inline password, a readable config is the normal case: no warning.
  dir.write("pw", "pw\n");
  std::string readable = dir.write("readable.toml", accountWith("password_file = \"pw\""), 0644);
  r = loadConfig(readable, testEnv());
  ASSERT_TRUE(r.ok()) << allErrors(r);
  EXPECT_TRUE(r.config->warnings.empty());
}

TEST(ConfigPassword, APasswordFileEveryoneCanReadGivesAWarning) {
  TempDir dir;
  std::string pw = dir.write("pw", "pw\n", 0644);
  LoadResult r = loadConfigFromString(accountWith("password_file = \"pw\""), dir.path() + "/c.toml",
                                      testEnv());
  ASSERT_TRUE(r.ok()) << allErrors(r);
  EXPECT_EQ(r.config->warnings,
            std::vector<std::string>{dir.path() + "/c.toml:3:17: password_file: " + pw +
                                     " is readable by every user (mode 0644)"});
}

TEST(ConfigPassword, TheHostAccountReplacesTheDefaultAccountAsAWhole) {
  // [host.account] without a password does not borrow [account]'s password.
  LoadResult r = loadConfigFromString(
      std::string(kMinimal) + "  [host.account]\n  user = \"other@example.org\"\n", "c.toml",
      testEnv());
  ASSERT_EQ(r.errors.size(), 1u) << allErrors(r);
  EXPECT_EQ(r.errors[0].format(),
            "c.toml:8:3: [host.account]: no password: set one of password_credential, "
            "password_file, password_env or password (host \"mail.example.org\" logs in on imap "
            "143 starttls)");
}

// ---------------------------------------------------------------------------------------------
// Secrets never appear anywhere but in Credentials::password.

const std::string kSecret = "Xy7-s3cr3t-Qz9";

// Every string a load produces, except the passwords themselves.
std::vector<std::string> everyPublicString(const LoadResult& r) {
  std::vector<std::string> out;
  for (const ConfigError& e : r.errors) {
    out.push_back(e.format());
  }
  if (!r.config) {
    return out;
  }
  const Config& c = *r.config;
  out.insert(out.end(), c.warnings.begin(), c.warnings.end());
  out.push_back(c.path);
  out.push_back(c.daemon.listen);
  out.push_back(c.daemon.log_level);
  for (const HostConfig& h : c.hosts) {
    out.push_back(h.name);
    out.push_back(h.account.user);
    out.push_back(h.account_source);
    for (const EndpointConfig& e : h.endpoints) {
      const EndpointSpec& s = e.spec;
      out.insert(out.end(), {s.host, s.source_address, s.ehlo_name, s.tls.ca_file});
      out.insert(out.end(), s.mechanisms.begin(), s.mechanisms.end());
      out.insert(out.end(), s.addresses.begin(), s.addresses.end());
    }
  }
  return out;
}

void expectNoSecret(const LoadResult& r, const std::string& secret) {
  for (const std::string& s : everyPublicString(r)) {
    EXPECT_EQ(s.find(secret), std::string::npos) << "secret leaked into: " << s;
  }
}

TEST(ConfigSecrets, AnInlinePasswordIsNeverInErrorsWarningsOrOtherStrings) {
  // Loads fine: warnings and every other string.
  LoadResult ok =
      loadConfigFromString(accountWith("password = \"" + kSecret + "\""), "c.toml", testEnv());
  ASSERT_TRUE(ok.ok()) << allErrors(ok);
  EXPECT_EQ(ok.config->hosts[0].account.password, kSecret);
  EXPECT_FALSE(ok.config->warnings.empty());
  expectNoSecret(ok, kSecret);

  // Fails in every way around the password.
  const std::string bad[] = {
      "[account]\nuser = \"u\"\npassword = \"" + kSecret + "\"\npassword_env = \"X\"\n",
      "[account]\nuser = \"u\"\npassword = \"" + kSecret + "\n\"\n",   // parse error
      "[account]\nuser = \"u\"\npassword = \"" + kSecret + "\\q\"\n",  // parse error
      "[account]\nuser = \"u\"\npassword = " + kSecret + "\n",         // parse error
      "[account]\nuser = \"u\"\npassword = \"" + kSecret + "\"\npassword = \"x\"\n",
      "[account]\nuser = \"u\"\npassword = \"" + kSecret + "\\n\"\n",  // two lines
      "[account]\nuser = \"u\"\npassword = [\"" + kSecret + "\"]\n",   // wrong type
      "[account]\nuser = \"u\"\npasswd = \"" + kSecret + "\"\n",       // unknown key
      "[[host]]\nname = \"h\"\naccount = { user = \"u\", password = \"" + kSecret + "\\q\" }\n",
      "[[host]]\nname = \"" + kSecret + " x\"\n",  // not a password: shown (control for the test)
  };
  for (size_t i = 0; i + 1 < std::size(bad); ++i) {
    LoadResult r = loadConfigFromString(bad[i], "c.toml", testEnv());
    EXPECT_FALSE(r.ok()) << bad[i];
    EXPECT_FALSE(r.errors.empty());
    expectNoSecret(r, kSecret);
  }
  // The check above can fail: a value that is not a secret is quoted in its error.
  LoadResult control = loadConfigFromString(bad[std::size(bad) - 1], "c.toml", testEnv());
  ASSERT_FALSE(control.errors.empty());
  EXPECT_NE(control.errors[0].message.find(kSecret), std::string::npos);
}

TEST(ConfigSecrets, ASyntaxErrorInsideAPasswordHidesTomlsExcerpt) {
  // toml++ would say "saw 'X'" or "unknown escape sequence '\q'": part of the secret.
  const std::string withheld =
      "syntax error in a password value (details withheld: they could show part of the "
      "password)";
  for (const std::string& line :
       {"password = " + kSecret, "password = \"" + kSecret + "\\q\"", "password = 12" + kSecret,
        "password = '''" + kSecret + "\x01'''"}) {
    LoadResult r =
        loadConfigFromString("[account]\nuser = \"u\"\n" + line + "\n", "c.toml", testEnv());
    ASSERT_EQ(r.errors.size(), 1u) << line;
    EXPECT_EQ(r.errors[0].message, withheld) << line;
    EXPECT_EQ(r.errors[0].line, 3u);
  }
  // In a multi-line string, on a line of its own.
  LoadResult r = loadConfigFromString(
      "[account]\nuser = \"u\"\npassword = \"\"\"" + kSecret + "\n" + kSecret + "\\q\"\"\"\n",
      "c.toml", testEnv());
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_EQ(r.errors[0].message, withheld);
  EXPECT_EQ(r.errors[0].line, 4u);

  // A syntax error elsewhere, even in another password_* key, keeps toml++'s words.
  for (const char* text : {"[account]\nuser = \"u\\q\"\npassword = \"p\"\n",
                           "[account]\npassword_file = \"/x\\q\"\n"}) {
    r = loadConfigFromString(text, "c.toml", testEnv());
    ASSERT_EQ(r.errors.size(), 1u);
    EXPECT_EQ(r.errors[0].message, "Error while parsing string: unknown escape sequence '\\q'")
        << text;
  }
}

TEST(ConfigSecrets, APasswordFileOrVariableIsNeverEchoed) {
  TempDir dir;
  dir.write("good", kSecret + "\n");
  dir.write("two-lines", kSecret + "\n" + kSecret + "\n");
  dir.write("nul", kSecret + std::string(1, '\0') + "x");
  GetEnv env = fakeEnv({{"GOOD", kSecret}, {"BAD", kSecret + "\r\nX"}});
  const std::string base = dir.path() + "/c.toml";

  LoadResult ok = loadConfigFromString(accountWith("password_file = \"good\""), base, env);
  ASSERT_TRUE(ok.ok()) << allErrors(ok);
  EXPECT_EQ(ok.config->hosts[0].account.password, kSecret);
  expectNoSecret(ok, kSecret);

  ok = loadConfigFromString(accountWith("password_env = \"GOOD\""), base, env);
  ASSERT_TRUE(ok.ok()) << allErrors(ok);
  expectNoSecret(ok, kSecret);

  for (const char* line :
       {"password_file = \"two-lines\"", "password_file = \"nul\"", "password_env = \"BAD\""}) {
    LoadResult r = loadConfigFromString(accountWith(line), base, env);
    ASSERT_EQ(r.errors.size(), 1u) << line;
    expectNoSecret(r, kSecret);
  }
  // A good password next to other errors.
  LoadResult r = loadConfigFromString(
      accountWith("password_file = \"good\"") + "intervall = 5\nport = \"" + "x\"\n", base, env);
  EXPECT_EQ(r.errors.size(), 2u) << allErrors(r);
  expectNoSecret(r, kSecret);
}

// ---------------------------------------------------------------------------------------------
// The ad-hoc command-line form

TEST(ConfigAdHoc, HostUserAndPasswordFileProbeThePlatformsFive) {
  TempDir dir;
  AdHocOptions o;
  o.host = "mail.example.org";
  o.user = "probe@example.org";
  o.password_file = dir.write("pw", "adhoc-secret\n");
  LoadResult r = adHocConfig(o, testEnv());
  ASSERT_TRUE(r.ok()) << allErrors(r);
  EXPECT_EQ(r.config->path, "command line");
  ASSERT_EQ(r.config->hosts.size(), 1u);
  const HostConfig& h = r.config->hosts[0];
  EXPECT_EQ(h.account.password, "adhoc-secret");
  ASSERT_EQ(h.endpoints.size(), platformEndpoints().size());
  for (size_t i = 0; i < h.endpoints.size(); ++i) {
    const EndpointSpec& s = h.endpoints[i].spec;
    const DefaultEndpoint& p = platformEndpoints()[i];
    EXPECT_EQ(s.port, p.port);
    EXPECT_EQ(s.service, p.service);
    EXPECT_EQ(s.security, p.security);
    EXPECT_EQ(s.starttls_required, p.starttls_required);
    EXPECT_EQ(s.auth, p.auth);
    EXPECT_TRUE(s.tls.login_despite_invalid_cert);
  }
}

TEST(ConfigAdHoc, PortsPickTheirServiceAndSecurity) {
  AdHocOptions o;
  o.host = "mail.example.org";
  o.addresses = {"127.0.0.1"};
  o.ports = {"993", "587", "10025"};
  o.service = "";
  o.auth = "none";
  o.timeout = "5s";
  o.strict_certificates = true;
  // 10025 has no default service.
  LoadResult r = adHocConfig(o, testEnv());
  ASSERT_EQ(r.errors.size(), 1u) << allErrors(r);
  EXPECT_EQ(r.errors[0].format(),
            "command line: --port 10025: --service is required (imap or smtp)");

  o.ports = {"993", "587"};
  r = adHocConfig(o, testEnv());
  ASSERT_TRUE(r.ok()) << allErrors(r);
  const auto& e = r.config->hosts[0].endpoints;
  ASSERT_EQ(e.size(), 2u);
  EXPECT_EQ(e[0].spec.service, Service::Imap);
  EXPECT_EQ(e[0].spec.security, Security::Tls);
  EXPECT_EQ(e[1].spec.service, Service::Smtp);
  EXPECT_EQ(e[1].spec.security, Security::StartTls);
  EXPECT_EQ(e[1].spec.auth, AuthPolicy::Skip);
  EXPECT_EQ(e[1].spec.timeouts.total, 5s);
  EXPECT_FALSE(e[1].spec.tls.login_despite_invalid_cert);
  EXPECT_EQ(e[1].spec.addresses, std::vector<std::string>{"127.0.0.1"});
  EXPECT_TRUE(r.config->hosts[0].account.empty());
}

TEST(ConfigAdHoc, ErrorsNameTheFlags) {
  auto base = [] {
    AdHocOptions o;
    o.host = "mail.example.org";
    o.user = "probe@example.org";
    o.password_env = "MAILPROBED_TEST_PASSWORD";
    return o;
  };
  struct Case {
    std::function<void(AdHocOptions&)> change;
    std::string message;
  };
  const Case cases[] = {
      {[](AdHocOptions& o) { o.host = ""; }, "--host is required"},
      {[](AdHocOptions& o) { o.ports = {"70000"}; },
       "--port: must be between 1 and 65535, got 70000"},
      {[](AdHocOptions& o) { o.ports = {"imaps"}; },
       "--port: expected a port number, got string \"imaps\""},
      {[](AdHocOptions& o) { o.security = "ssl"; },
       "--security needs --port (without --port, the platform's five endpoints are probed)"},
      {[](AdHocOptions& o) {
         o.ports = {"993"};
         o.security = "ssl";
       },
       "--security: \"ssl\" is not one of none, starttls or tls (implicit TLS, which clients call "
       "SSL, is \"tls\")"},
      {[](AdHocOptions& o) { o.timeout = "5x"; },
       "--timeout: \"5x\" is not a duration: write a number and a unit (ms, s, m, h), e.g. "
       "\"30s\" or \"1m30s\""},
      {[](AdHocOptions& o) { o.password_env = "MAILPROBED_UNSET"; },
       "--password-env: $MAILPROBED_UNSET is not set"},
      {[](AdHocOptions& o) { o.password_file = "/nonexistent/pw"; },
       "--password-file: give only one password source, and --password-env is already set"},
      {[](AdHocOptions& o) { o.user = ""; }, "--user is required"},
      {[](AdHocOptions& o) {
         o.user = "";
         o.password_env = "";
       },
       "--user and a password are required to log in (or --auth none)"},
      {[](AdHocOptions& o) { o.password_env = ""; },
       "a password is required to log in: --password-file, --password-env or "
       "--password-credential (or --auth none)"},
      {[](AdHocOptions& o) { o.addresses = {"mail1"}; },
       "--address: \"mail1\" is not an IPv4 or IPv6 address"},
  };
  for (const Case& c : cases) {
    AdHocOptions o = base();
    c.change(o);
    LoadResult r = adHocConfig(o, testEnv());
    ASSERT_EQ(r.errors.size(), 1u) << c.message << "\n" << allErrors(r);
    EXPECT_EQ(r.errors[0].format(), "command line: " + c.message);
  }
}

}  // namespace
}  // namespace mailprobe
