// Verdicts of the built-in profiles from real probe results and real TLS version scans of the
// loopback Dovecot and Postfix (tests/integration/mailenv.sh), changing one thing at a time:
// the default servers, an expired certificate, a minimum TLS version raised on Dovecot, Dovecot
// stopped. Each world turns exactly the expected cells red, with the expected reason. The
// mail servers listen on random ports: the lookup maps the profiles' standard ports to them.

#include <gtest/gtest.h>
#include <openssl/tls1.h>

#include <map>
#include <tuple>

#include "daemon/one_shot.h"
#include "daemon/profiles.h"
#include "probes/tls_version_scan.h"
#include "tests/fakes/mail_env.h"
#include "tests/fakes/mail_env_spec.h"

namespace mailprobe {
namespace {

const std::string kHost = "localhost";

struct Cell {
  std::string profile;
  Direction direction;
  FailureReason reason;  // None: works
};

class ProfileVerdictTest : public testing::MailEnvSuite {
 protected:
  using Key = std::tuple<Service, uint16_t, Security>;  // the profile's standard port

  // The platform's five endpoints on `address`, as the profiles name them.
  static std::vector<std::pair<Key, EndpointSpec>> platform(const std::string& address) {
    auto spec = [&](Service s, uint16_t port, Security sec) {
      return testing::mailEnvSpec(*env(), s, port, sec, address);
    };
    std::vector<std::pair<Key, EndpointSpec>> all{
        {{Service::Imap, 143, Security::StartTls},
         spec(Service::Imap, env()->imapStarttlsPort(), Security::StartTls)},
        {{Service::Imap, 993, Security::Tls},
         spec(Service::Imap, env()->imapsPort(), Security::Tls)},
        {{Service::Smtp, 25, Security::StartTls},
         spec(Service::Smtp, env()->smtpPort(), Security::StartTls)},
        {{Service::Smtp, 465, Security::Tls},
         spec(Service::Smtp, env()->smtpsPort(), Security::Tls)},
        {{Service::Smtp, 587, Security::StartTls},
         spec(Service::Smtp, env()->submissionPort(), Security::StartTls)},
    };
    all[2].second.starttls_required = false;
    all[2].second.auth = AuthPolicy::Optional;
    return all;
  }

  // Probes and scans the platform on `address` (as the daemon would), then judges every
  // built-in profile x direction.
  static std::vector<Verdict> judgeWorld(const std::string& address) {
    auto endpoints = platform(address);
    std::vector<ProbeJob> jobs;
    for (const auto& [key, spec] : endpoints) {
      jobs.push_back({spec, {env()->user(), env()->password()}});
    }
    std::vector<ProbeResult> results = runOnce(jobs);
    std::map<Key, std::vector<ProbeResult>> by_key;
    std::map<Key, std::vector<TlsVersionResult>> scans;
    for (size_t i = 0; i < endpoints.size(); ++i) {
      by_key[endpoints[i].first] = {results.at(i)};
      scans[endpoints[i].first] = scan(endpoints[i].second);
    }
    JudgeInputs in;
    in.default_host = kHost;
    in.now = 1767225600;
    in.results = [&](const EndpointKey& k) -> std::optional<std::vector<ProbeResult>> {
      auto it = by_key.find({k.service, k.port, k.security});
      return it == by_key.end() ? std::nullopt : std::optional(it->second);
    };
    in.scans = [&](const EndpointKey& k, const std::string& a) -> std::optional<TlsVersionResult> {
      for (const auto& s : scans[{k.service, k.port, k.security}]) {
        if (s.address == a) {
          return s;
        }
      }
      return std::nullopt;
    };
    return judgeAll(builtinProfiles(), in);
  }

  static std::vector<TlsVersionResult> scan(const EndpointSpec& spec) {
    uv_loop_t loop;
    uv_loop_init(&loop);
    std::vector<TlsVersionResult> out;
    TlsVersionScan::start(&loop, spec,
                          [&](std::vector<TlsVersionResult> r) { out = std::move(r); });
    uv_run(&loop, UV_RUN_DEFAULT);
    EXPECT_EQ(uv_loop_close(&loop), 0);
    return out;
  }

  // Every built-in cell works except the `failing` ones, which fail with their reason.
  static void expectCells(const std::vector<Verdict>& verdicts, const std::vector<Cell>& failing) {
    ASSERT_EQ(verdicts.size(), 2 * builtinProfiles().size());
    for (const Verdict& v : verdicts) {
      SCOPED_TRACE(v.sentence);
      EXPECT_TRUE(v.known);
      auto cell = std::find_if(failing.begin(), failing.end(), [&](const Cell& c) {
        return c.profile == v.profile && c.direction == v.direction;
      });
      FailureReason expected = cell == failing.end() ? FailureReason::None : cell->reason;
      EXPECT_EQ(v.ok, expected == FailureReason::None);
      EXPECT_EQ(v.reason, expected);
    }
  }
};

constexpr auto kIn = Direction::Incoming;
constexpr auto kOut = Direction::Outgoing;

// Dovecot refuses TLS 1.0 and 1.1, Postfix does not: the old phone sends but cannot read.
TEST_F(ProfileVerdictTest, DefaultServers) {
  std::vector<Verdict> v = judgeWorld("127.0.0.1");
  expectCells(v, {{"legacy-tls10", kIn, FailureReason::TlsVersionUnsupported}});
  for (const Verdict& x : v) {
    if (x.profile == "legacy-tls10" && x.direction == kIn) {
      EXPECT_EQ(x.explanation,
                "imap 993 (tls) accepts only TLSv1.2 and TLSv1.3, not TLSv1.0 or "
                "TLSv1.1");
    }
    if (x.profile == "android-guide") {
      EXPECT_EQ(x.sentence, x.direction == kIn
                                ? "android-guide can read mail: imap 993 (tls) works with the "
                                  "LOGIN command"
                                : "android-guide can send: smtp 465 (tls) works with AUTH PLAIN");
    }
  }
}

// The address whose certificate expired: strict clients stop there, the guide's accept-all
// phones go on.
TEST_F(ProfileVerdictTest, ExpiredCertificate) {
  expectCells(judgeWorld(env()->value("EXPIRED_IP")),
              {{"thunderbird", kIn, FailureReason::CertExpired},
               {"thunderbird", kOut, FailureReason::CertExpired},
               {"ios-mail", kIn, FailureReason::CertExpired},
               {"ios-mail", kOut, FailureReason::CertExpired},
               {"outlook", kIn, FailureReason::CertExpired},
               {"outlook", kOut, FailureReason::CertExpired},
               {"legacy-tls10", kIn, FailureReason::TlsVersionUnsupported}});
}

// TLS 1.3 only on Dovecot: the modern clients still read mail; then back to the default.
TEST_F(ProfileVerdictTest, Tls13OnlyOnDovecot) {
  ASSERT_TRUE(env()->doveconf({"ssl_min_protocol = TLSv1.3"})) << env()->lastError();
  std::vector<Verdict> raised = judgeWorld("127.0.0.1");
  ASSERT_TRUE(env()->doveconf({"ssl_min_protocol = TLSv1.2"})) << env()->lastError();
  expectCells(raised, {{"legacy-tls10", kIn, FailureReason::TlsVersionUnsupported}});
  for (const Verdict& x : raised) {
    if (x.profile == "legacy-tls10" && x.direction == kIn) {
      EXPECT_EQ(x.explanation, "imap 993 (tls) accepts only TLSv1.3, not TLSv1.0 or TLSv1.1");
    }
  }
}

// Dovecot stopped: every client fails to read mail, Thunderbird on both of its ports; sending
// fails too, since Postfix's SASL is Dovecot's.
TEST_F(ProfileVerdictTest, DovecotStopped) {
  ASSERT_TRUE(env()->stopService("dovecot")) << env()->lastError();
  std::vector<Verdict> down = judgeWorld("127.0.0.1");
  ASSERT_TRUE(env()->startService("dovecot")) << env()->lastError();

  for (const Verdict& v : down) {
    SCOPED_TRACE(v.sentence);
    EXPECT_TRUE(v.known);
    EXPECT_FALSE(v.ok);
    if (v.direction == kIn) {
      EXPECT_EQ(v.reason, FailureReason::ConnectRefused);
      EXPECT_EQ(v.phase, Phase::Connect);
    } else {
      EXPECT_EQ(v.phase, Phase::Auth);
    }
    if (v.profile == "thunderbird" && v.direction == kIn) {
      EXPECT_EQ(v.explanation, "imap 993 (tls) refuses connections, as does imap 143 (starttls)");
    }
  }
  // And back: the default world again.
  expectCells(judgeWorld("127.0.0.1"),
              {{"legacy-tls10", kIn, FailureReason::TlsVersionUnsupported}});
}

}  // namespace
}  // namespace mailprobe
