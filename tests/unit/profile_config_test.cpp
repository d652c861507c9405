// [[profile]] and [profiles] in the config (daemon/profile_config.h): without them the five
// built-ins; the staged example loads; a user profile, a replaced and a disabled built-in land
// where they should; one bad file per error, each with its exact `file:line:col: message`.

#include "daemon/profile_config.h"

#include <gtest/gtest.h>
#include <openssl/tls1.h>

#include <filesystem>
#include <fstream>
#include <sstream>

namespace mailprobe {
namespace {

const std::string kSourceDir = MAILPROBE_SOURCE_DIR;
const std::string kDataDir = kSourceDir + "/tests/testdata/profiles";

std::string readFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

ProfileLoad load(std::string_view text, const std::string& path = "test.toml") {
  toml::table root = toml::parse(text, std::string_view(path));
  return loadProfiles(root, path);
}

std::string allErrors(const ProfileLoad& r) {
  std::string out;
  for (const ConfigError& e : r.errors) {
    out += e.format() + "\n";
  }
  return out;
}

std::vector<std::string> ids(const ProfileLoad& r) {
  std::vector<std::string> out;
  for (const auto& p : r.profiles) {
    out.push_back(p.id);
  }
  return out;
}

const ClientProfile* find(const ProfileLoad& r, const std::string& id) {
  for (const auto& p : r.profiles) {
    if (p.id == id) {
      return &p;
    }
  }
  return nullptr;
}

const std::vector<std::string> kBuiltinIds{"android-guide", "thunderbird", "ios-mail", "outlook",
                                           "legacy-tls10"};

TEST(ProfileConfig, WithoutProfileTablesTheBuiltinsAreJudged) {
  ProfileLoad r = load("[[host]]\nname = \"mail.example.org\"\n");
  ASSERT_TRUE(r.ok()) << allErrors(r);
  EXPECT_EQ(ids(r), kBuiltinIds);
  EXPECT_TRUE(r.disabled.empty());
  for (const auto& p : r.profiles) {
    EXPECT_TRUE(p.builtin);
  }
  EXPECT_TRUE(isProfileKey("profile"));
  EXPECT_TRUE(isProfileKey("profiles"));
  EXPECT_FALSE(isProfileKey("host"));
}

// The staged example: its "#: " lines are the TOML it will hold once the main loader reads
// profiles (and it keeps loading once they are uncommented).
TEST(ProfileConfig, StagedExampleLoads) {
  std::string text = readFile(kSourceDir + "/etc/examples/profiles.toml");
  ASSERT_FALSE(text.empty());
  std::string live;
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);) {
    live += (line.starts_with("#: ") ? line.substr(3) : line) + "\n";
  }
  ProfileLoad r = load(live, "etc/examples/profiles.toml");
  ASSERT_TRUE(r.ok()) << allErrors(r);
  EXPECT_EQ(ids(r), (std::vector<std::string>{"android-guide", "thunderbird", "ios-mail", "outlook",
                                              "office-copier", "k9-mail"}));
  EXPECT_EQ(r.disabled, std::vector<std::string>{"legacy-tls10"});

  // The replaced built-in keeps its place and takes the file's settings.
  const ClientProfile* guide = find(r, "android-guide");
  ASSERT_NE(guide, nullptr);
  EXPECT_FALSE(guide->builtin);
  EXPECT_EQ(guide->incoming.at(0).tls_min_version, TLS1_VERSION);
  EXPECT_EQ(guide->incoming.at(0).tls_max_version, TLS1_2_VERSION);
  EXPECT_EQ(guide->incoming.at(0).security, Security::Tls);  // from port 993
  EXPECT_EQ(guide->incoming.at(0).cert_policy, CertPolicy::AcceptAll);

  const ClientProfile* copier = find(r, "office-copier");
  ASSERT_NE(copier, nullptr);
  EXPECT_TRUE(copier->incoming.empty());
  ASSERT_EQ(copier->outgoing.size(), 1u);
  const ClientSide& c = copier->outgoing[0];
  EXPECT_EQ(c.host, "");
  EXPECT_EQ(c.port, 25);
  EXPECT_EQ(c.security, Security::StartTls);
  EXPECT_EQ(c.cert_policy, CertPolicy::AcceptAll);
  EXPECT_FALSE(c.sign_in);
  EXPECT_TRUE(c.mechanisms.empty());
  EXPECT_EQ(c.tls_min_version, 0);
  EXPECT_NE(copier->source.find("line "), std::string::npos) << copier->source;

  const ClientProfile* k9 = find(r, "k9-mail");
  ASSERT_NE(k9, nullptr);
  ASSERT_EQ(k9->incoming.size(), 1u);
  ASSERT_EQ(k9->outgoing.size(), 2u);
  EXPECT_EQ(k9->incoming[0].mechanisms, (std::vector<std::string>{"PLAIN", "LOGIN-COMMAND"}));
  EXPECT_EQ(k9->outgoing[0].port, 465);
  EXPECT_EQ(k9->outgoing[0].security, Security::Tls);
  EXPECT_TRUE(k9->outgoing[0].next_mechanism_on_failure);
  EXPECT_EQ(k9->outgoing[1].port, 587);
  EXPECT_EQ(k9->outgoing[1].security, Security::StartTls);
  // Defaults: strict, sign in, PLAIN then LOGIN.
  EXPECT_EQ(k9->outgoing[1].cert_policy, CertPolicy::Strict);
  EXPECT_TRUE(k9->outgoing[1].sign_in);
  EXPECT_EQ(k9->outgoing[1].mechanisms, (std::vector<std::string>{"PLAIN", "LOGIN"}));
  EXPECT_FALSE(k9->outgoing[1].next_mechanism_on_failure);
}

TEST(ProfileConfig, PortFromSecurityAndHostFromTheFile) {
  ProfileLoad r = load(R"(
[[host]]
name = "mail.example.org"
[[host]]
name = "MX.example.org"

[[profile]]
id = "mx-reader"
  [profile.incoming]
  host = "mx.example.org"
  security = "starttls"
  mechanisms = ["cram-md5"]
  user = "local"
  [profile.outgoing]
  security = "tls"
)");
  ASSERT_TRUE(r.ok()) << allErrors(r);
  const ClientProfile* p = find(r, "mx-reader");
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(p->incoming.at(0).host, "mx.example.org");
  EXPECT_EQ(p->incoming.at(0).port, 143);
  EXPECT_EQ(p->incoming.at(0).mechanisms, std::vector<std::string>{"CRAM-MD5"});
  EXPECT_EQ(p->incoming.at(0).user_form, "local");
  EXPECT_EQ(p->outgoing.at(0).port, 465);
  EXPECT_EQ(p->outgoing.at(0).mechanisms, (std::vector<std::string>{"PLAIN", "LOGIN"}));
  EXPECT_EQ(r.profiles.size(), 6u);
}

TEST(ProfileConfig, EveryErrorIsReportedInOnePassInFileOrder) {
  ProfileLoad r = load(R"([[host]]
name = "mail.example.org"

[[profile]]
id = "a"
  [profile.incoming]
  port = 0
[[profile]]
id = "b"
  [profile.outgoing]
  security = "ssl"
[profiles]
disable = ["nope"]
)");
  ASSERT_EQ(r.errors.size(), 3u) << allErrors(r);
  EXPECT_EQ(r.errors[0].line, 7u);
  EXPECT_EQ(r.errors[1].line, 11u);
  EXPECT_EQ(r.errors[2].line, 13u);
  EXPECT_TRUE(r.profiles.empty());
}

// ---------------------------------------------------------------------------------------------
// One bad file per error, with its exact message.

struct BadCase {
  const char* file;
  const char* message;
};

void PrintTo(const BadCase& c, std::ostream* os) {
  *os << c.file;
}

const BadCase kBadCases[] = {
    {"bad-profile-table.toml",
     "5:2: profile: write [[profile]] (an array of tables), not [profile]"},
    {"bad-profile-type.toml", "2:11: profile: expected [[profile]] tables, got string \"copier\""},
    {"bad-profile-unknown-key.toml",
     "7:1: unknown key 'descripton' in [[profile]]; did you mean 'description'?"},
    {"bad-profile-id-missing.toml", "5:1: [[profile]]: id is required"},
    {"bad-profile-id.toml",
     "6:6: id: \"Office Copier\" is not a profile id: use lower-case letters, digits and '-', "
     "starting with a letter or digit, at most 40 characters"},
    {"bad-profile-builtin-id.toml",
     "6:6: id: \"thunderbird\" is a built-in profile: set replace = true to redefine it, or "
     "choose another id"},
    {"bad-profile-replace-unknown.toml",
     "7:11: replace: there is no built-in profile \"copier\" to replace; the built-ins are "
     "android-guide, thunderbird, ios-mail, outlook and legacy-tls10"},
    {"bad-profile-duplicate.toml", "11:6: duplicate profile \"copier\" (first defined at line 6)"},
    {"bad-profile-no-server.toml",
     "5:1: [[profile]] \"copier\": give an incoming or an outgoing server, or both"},
    {"bad-profile-incoming-type.toml",
     "7:12: incoming: expected a table [profile.incoming] or tables [[profile.incoming]], got "
     "string \"imap.example.org\""},
    {"bad-profile-side-unknown-key.toml",
     "9:3: unknown key 'certificate' in [profile.incoming]; did you mean 'certificates'?"},
    {"bad-profile-certificates.toml",
     "9:18: certificates: \"accept_all\" is not one of strict or accept-all; did you mean "
     "\"accept-all\"?"},
    {"bad-profile-security.toml",
     "9:14: security: \"ssl\" is not one of none, starttls or tls (implicit TLS, which clients "
     "call SSL, is \"tls\")"},
    {"bad-profile-port-missing.toml", "7:3: [profile.incoming]: port is required"},
    {"bad-profile-port-range.toml", "8:10: port: must be between 1 and 65535, got 70000"},
    {"bad-profile-security-missing.toml",
     "8:10: security is required for port 2525: none, starttls or tls"},
    {"bad-profile-tls-version.toml",
     "9:30: tls_versions: \"tls1.3\" is not one of TLSv1.0, TLSv1.1, TLSv1.2 or TLSv1.3; did you "
     "mean \"TLSv1.3\"?"},
    {"bad-profile-tls-gap.toml",
     "9:18: tls_versions: TLSv1.1 and TLSv1.2 missing between TLSv1.0 and TLSv1.3: a client "
     "speaks every version from its lowest to its highest"},
    {"bad-profile-tls-plaintext.toml",
     "11:18: tls_versions: only applies to security = \"starttls\" or \"tls\""},
    {"bad-profile-mechanism.toml",
     "9:26: mechanisms: \"XOAUTH2\" cannot be judged: the probe logs in with PLAIN, LOGIN, "
     "CRAM-MD5 or LOGIN-COMMAND only"},
    {"bad-profile-login-command-smtp.toml",
     "9:17: mechanisms: \"LOGIN-COMMAND\" is the IMAP LOGIN command; SMTP has no such thing"},
    {"bad-profile-sign-in-incoming.toml",
     "9:3: sign_in: only applies to [profile.outgoing]: a client always signs in to read mail"},
    {"bad-profile-mechanisms-without-sign-in.toml",
     "10:16: mechanisms: useless with sign_in = false"},
    {"bad-profile-host.toml",
     "8:10: host: \"imap.example.org\" is not the name of a [[host]] in this file; a profile is "
     "judged from the probes of those hosts"},
    {"bad-profiles-disable.toml",
     "6:12: disable: \"thunderbrid\" is not a built-in profile; did you mean \"thunderbird\"?"},
    {"bad-profiles-disable-unknown.toml",
     "6:12: disable: \"evolution\" is not a built-in profile; the built-ins are android-guide, "
     "thunderbird, ios-mail, outlook and legacy-tls10"},
    {"bad-profiles-unknown-key.toml",
     "6:1: unknown key 'disabled' in [profiles]; did you mean 'disable'?"},
    {"bad-profiles-array.toml",
     "5:1: profiles: write [profiles] (a table), not [[profiles]]; a profile of your own is a "
     "[[profile]]"},
    {"bad-profiles-disable-replaced.toml",
     "6:12: disable: \"thunderbird\" is also redefined with replace = true (line 9); keep one or "
     "the other"},
};

class ProfileConfigBad : public ::testing::TestWithParam<BadCase> {};

TEST_P(ProfileConfigBad, ExactMessage) {
  const std::string path = kDataDir + "/" + GetParam().file;
  std::string text = readFile(path);
  ASSERT_FALSE(text.empty()) << path;
  ProfileLoad r = load(text, path);
  ASSERT_EQ(r.errors.size(), 1u) << allErrors(r);
  EXPECT_EQ(r.errors[0].format(), path + ":" + GetParam().message);
  EXPECT_TRUE(r.profiles.empty());
}

INSTANTIATE_TEST_SUITE_P(Files, ProfileConfigBad, ::testing::ValuesIn(kBadCases),
                         [](const auto& info) {
                           std::string name = info.param.file;
                           name = name.substr(0, name.size() - 5);  // .toml
                           for (char& c : name) {
                             if (c == '-') {
                               c = '_';
                             }
                           }
                           return name;
                         });

// Every file in the folder has its case, and every case its file.
TEST(ProfileConfigBadFiles, EachFileHasACase) {
  size_t files = 0;
  for (const auto& entry : std::filesystem::directory_iterator(kDataDir)) {
    std::string name = entry.path().filename();
    if (!name.starts_with("bad-")) {
      continue;
    }
    ++files;
    bool listed = std::any_of(std::begin(kBadCases), std::end(kBadCases),
                              [&](const BadCase& c) { return name == c.file; });
    EXPECT_TRUE(listed) << name;
  }
  EXPECT_EQ(files, std::size(kBadCases));
}

}  // namespace
}  // namespace mailprobe
