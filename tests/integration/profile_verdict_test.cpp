// Verdicts of the built-in profiles (and one user-defined profile, a client that knows only AUTH
// PLAIN on 587) from real probe results and real TLS version scans of the loopback Dovecot and
// Postfix (tests/integration/mailenv.sh), changing one thing at a time: the default servers, an
// expired certificate, a minimum TLS version raised on Dovecot, AUTH PLAIN removed from the
// submission port, Dovecot stopped. Each world turns exactly the expected cells red, with the
// expected reason, and back again once undone; in each (Dovecot stopped aside) real clients with
// every profile's settings agree, cell by cell: curl for IMAP with SASL, openssl s_client for the
// IMAP LOGIN command (Debian's curl 7.88 has no AUTH=+LOGIN), swaks for SMTP, which quits after
// AUTH: no message is ever sent. The mail servers listen on random ports: the lookup maps the
// profiles' standard ports to them.

#include <gtest/gtest.h>
#include <openssl/tls1.h>

#include <map>
#include <tuple>

#include "tests/fakes/subprocess.h"

#include "daemon/one_shot.h"
#include "daemon/profiles.h"
#include "probes/tls_version_scan.h"
#include "tests/fakes/mail_env.h"
#include "tests/fakes/mail_env_config.h"
#include "tests/fakes/mail_env_spec.h"

namespace mailprobe {
namespace {

const std::string kHost = "localhost";

struct Cell {
  std::string profile;
  Direction direction;
  FailureReason reason;  // None: works
};

// A client that signs in with AUTH PLAIN and nothing else, on 587 with STARTTLS (a scanner, a
// script): defined as a user would in [[profile]], judged with the built-ins.
ClientProfile plainOnly587() {
  ClientSide side;
  side.port = 587;
  side.security = Security::StartTls;
  side.cert_policy = CertPolicy::Strict;
  side.tls_min_version = TLS1_2_VERSION;
  side.tls_max_version = TLS1_3_VERSION;
  side.mechanisms = {"PLAIN"};
  ClientProfile p;
  p.id = "plain-only-587";
  p.description = "Sends with AUTH PLAIN only, on 587 with STARTTLS.";
  p.outgoing = {side};
  return p;
}

// The profiles every world judges: the built-ins, then plainOnly587().
const std::vector<ClientProfile>& judgedProfiles() {
  static const std::vector<ClientProfile> all = [] {
    std::vector<ClientProfile> v = builtinProfiles();
    v.push_back(plainOnly587());
    return v;
  }();
  return all;
}

const ClientProfile* findJudgedProfile(const std::string& id) {
  for (const auto& p : judgedProfiles()) {
    if (p.id == id) {
      return &p;
    }
  }
  return nullptr;
}

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
  // judged profile x direction.
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
    return judgeAll(judgedProfiles(), in);
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

  // A shell command that runs the real client with one side's settings against `address` and
  // exits 0 exactly when it logs in. $MP_USER and $MP_PASS come from the environment, so the
  // password is in no string of this test. SMTP: swaks gets the side's mechanisms in the client's
  // order and uses the first that the server offers, as the client would (it would move on after
  // a refused login, which the probe account never meets here). IMAP: the side's first mechanism,
  // which Dovecot always offers after TLS (PLAIN, LOGIN and the LOGIN command).
  static std::string clientCommand(const ClientSide& side, Direction direction,
                                   const std::string& address) {
    Service service = direction == Direction::Incoming ? Service::Imap : Service::Smtp;
    std::string port = std::to_string(testing::envPort(*env(), side.port));
    const std::string ca = env()->caFile();
    bool strict = side.cert_policy == CertPolicy::Strict;
    int lo = side.tls_min_version != 0 ? side.tls_min_version : TLS1_VERSION;
    int hi = side.tls_max_version != 0 ? side.tls_max_version : TLS1_3_VERSION;
    // OpenSSL 3 needs security level 0 for TLS 1.0 and 1.1, as TlsContext gives the probe.
    bool legacy = lo < TLS1_2_VERSION;
    auto dotted = [](int v) { return std::string(tlsVersionName(v)).substr(4); };  // "1.2"
    // OpenSSL's command line spells TLS 1.0 "TLSv1".
    auto opensslName = [](int v) {
      return v == TLS1_VERSION ? std::string("TLSv1") : std::string(tlsVersionName(v));
    };
    const std::string& mechanism = side.mechanisms.front();

    if (service == Service::Smtp) {
      std::string mechanisms;
      for (const auto& m : side.mechanisms) {
        mechanisms += (mechanisms.empty() ? "" : ",") + m;
      }
      std::string protocols;
      for (int v = lo; v <= hi; ++v) {
        std::string d = dotted(v);
        protocols +=
            (protocols.empty() ? "" : ",") + std::string(d == "1.0" ? "tlsv1" : "tlsv" + d);
      }
      std::replace(protocols.begin(), protocols.end(), '.', '_');
      return "timeout 30 swaks --server " + address + ":" + port +
             (side.security == Security::Tls ? " --tls-on-connect" : " --tls") +
             (strict ? " --tls-verify --tls-ca-path " + ca : "") +
             " --tls-sni localhost --tls-protocol " + protocols +
             (legacy ? " --tls-cipher DEFAULT@SECLEVEL=0" : "") + " --auth " + mechanisms +
             " --auth-user \"$MP_USER\" --auth-password \"$MP_PASS\" --quit-after AUTH"
             " --to probe@example.org";
    }
    if (mechanism == "LOGIN-COMMAND") {
      return "printf 'a LOGIN \"%s\" \"%s\"\\r\\nb LOGOUT\\r\\n' \"$MP_USER\" \"$MP_PASS\" | "
             "timeout 30 openssl s_client -quiet -ign_eof" +
             std::string(side.security == Security::StartTls ? " -starttls imap" : "") +
             " -connect " + address + ":" + port + " -servername localhost" +
             (strict ? " -verify_return_error -verify_hostname localhost -CAfile " + ca : "") +
             " -min_protocol " + opensslName(lo) + " -max_protocol " + opensslName(hi) +
             (legacy ? " -cipher DEFAULT@SECLEVEL=0" : "") + " 2>&1 | grep '^a OK'";
    }
    return "curl -sS --max-time 30 " +
           std::string(side.security == Security::Tls ? "imaps://" : "--ssl-reqd imap://") +
           "localhost:" + port + "/ --resolve localhost:" + port + ":" + address +
           (strict ? " --cacert " + ca : " -k") + " --tlsv" + dotted(lo) + " --tls-max " +
           dotted(hi) + (legacy ? " --ciphers DEFAULT@SECLEVEL=0" : "") +
           " --login-options AUTH=" + mechanism + " -u \"$MP_USER:$MP_PASS\"";
  }

  // Whether the real client logs in with one of the profile's alternatives, in its order.
  static bool realClientWorks(const ClientProfile& p, Direction direction,
                              const std::string& address, std::string* transcript) {
    const auto& sides = direction == Direction::Incoming ? p.incoming : p.outgoing;
    for (const ClientSide& side : sides) {
      std::string command = clientCommand(side, direction, address);
      testing::Subprocess client({"/bin/sh", "-c", command},
                                 {"MP_USER=" + env()->user(), "MP_PASS=" + env()->password()},
                                 env()->dir() + "/client.out");
      std::optional<int> status = client.wait(std::chrono::seconds(60));
      *transcript += "$ " + command + "\n" + client.output() + "exit " +
                     (status ? std::to_string(*status) : "none") + "\n";
      if (status == 0) {
        return true;
      }
    }
    return false;
  }

  // Real clients agree with every verdict: works exactly where the verdict says it works.
  static void expectClientsAgree(const std::vector<Verdict>& verdicts, const std::string& address) {
    for (const Verdict& v : verdicts) {
      const ClientProfile* p = findJudgedProfile(v.profile);
      ASSERT_NE(p, nullptr);
      std::string transcript;
      bool works = realClientWorks(*p, v.direction, address, &transcript);
      EXPECT_EQ(works, v.ok) << v.sentence << "\n" << transcript;
    }
  }

  // Every judged cell works except the `failing` ones, which fail with their reason.
  static void expectCells(const std::vector<Verdict>& verdicts, const std::vector<Cell>& failing) {
    size_t cells = 0;
    for (const ClientProfile& p : judgedProfiles()) {
      cells += (p.incoming.empty() ? 0 : 1) + (p.outgoing.empty() ? 0 : 1);
    }
    ASSERT_EQ(verdicts.size(), cells);
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

  // The default servers' cells, judged now: after a change is undone, the world is back.
  static void expectDefaultWorld() {
    SCOPED_TRACE("back to the default servers");
    expectCells(judgeWorld("127.0.0.1"),
                {{"legacy-tls10", Direction::Incoming, FailureReason::TlsVersionUnsupported}});
  }

  static const Verdict* find(const std::vector<Verdict>& verdicts, const std::string& profile,
                             Direction direction) {
    for (const Verdict& v : verdicts) {
      if (v.profile == profile && v.direction == direction) {
        return &v;
      }
    }
    return nullptr;
  }
};

constexpr auto kIn = Direction::Incoming;
constexpr auto kOut = Direction::Outgoing;

// Dovecot refuses TLS 1.0 and 1.1, Postfix does not: the old phone sends but cannot read.
TEST_F(ProfileVerdictTest, DefaultServers) {
  std::vector<Verdict> v = judgeWorld("127.0.0.1");
  expectCells(v, {{"legacy-tls10", kIn, FailureReason::TlsVersionUnsupported}});
  expectClientsAgree(v, "127.0.0.1");

  // The agreement is not an accident of a broken command line: the old phone's clients, given
  // TLS 1.2 as well, do log in (security level 0 and TLS 1.0 spelt as each tool wants).
  ClientProfile widened = *findBuiltinProfile("legacy-tls10");
  for (auto* sides : {&widened.incoming, &widened.outgoing}) {
    for (ClientSide& side : *sides) {
      side.tls_max_version = TLS1_2_VERSION;
    }
  }
  for (Direction d : {kIn, kOut}) {
    std::string transcript;
    EXPECT_TRUE(realClientWorks(widened, d, "127.0.0.1", &transcript)) << transcript;
  }
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
  const std::string expired = env()->value("EXPIRED_IP");
  std::vector<Verdict> v = judgeWorld(expired);
  expectClientsAgree(v, expired);
  expectCells(v, {{"thunderbird", kIn, FailureReason::CertExpired},
                  {"thunderbird", kOut, FailureReason::CertExpired},
                  {"ios-mail", kIn, FailureReason::CertExpired},
                  {"ios-mail", kOut, FailureReason::CertExpired},
                  {"outlook", kIn, FailureReason::CertExpired},
                  {"outlook", kOut, FailureReason::CertExpired},
                  {"plain-only-587", kOut, FailureReason::CertExpired},
                  {"legacy-tls10", kIn, FailureReason::TlsVersionUnsupported}});
}

// TLS 1.3 only on Dovecot: the modern clients still read mail; then back to the default.
TEST_F(ProfileVerdictTest, Tls13OnlyOnDovecot) {
  ASSERT_TRUE(env()->doveconf({"ssl_min_protocol = TLSv1.3"})) << env()->lastError();
  testing::MailEnvChange restore(
      env(), [](testing::MailEnv* e) { return e->doveconf({"ssl_min_protocol = TLSv1.2"}); });
  std::vector<Verdict> raised = judgeWorld("127.0.0.1");
  expectClientsAgree(raised, "127.0.0.1");
  ASSERT_TRUE(restore.undo());
  expectCells(raised, {{"legacy-tls10", kIn, FailureReason::TlsVersionUnsupported}});
  for (const Verdict& x : raised) {
    if (x.profile == "legacy-tls10" && x.direction == kIn) {
      EXPECT_EQ(x.explanation, "imap 993 (tls) accepts only TLSv1.3, not TLSv1.0 or TLSv1.1");
    }
  }
  expectDefaultWorld();
}

// AUTH PLAIN taken off the submission port (587) only, with Postfix's mechanism filter on that
// service: exactly the client that would use PLAIN there with no other mechanism turns red (no
// common AUTH mechanism). iOS Mail and Outlook move on to AUTH LOGIN, which 587 still offers;
// 465 still takes PLAIN from the guide's phones. Then back to the default.
TEST_F(ProfileVerdictTest, PlainRemovedFromSubmission) {
  const std::string service = "127.0.0.1:" + std::to_string(env()->submissionPort()) + "/inet/";
  ASSERT_TRUE(env()->postconfMaster({service + "smtpd_sasl_mechanism_filter=!plain,static:all"}))
      << env()->lastError();
  // "static:all" matches every mechanism: the same as no filter.
  testing::MailEnvChange restore(env(), [service](testing::MailEnv* e) {
    return e->postconfMaster({service + "smtpd_sasl_mechanism_filter=static:all"});
  });
  std::vector<Verdict> v = judgeWorld("127.0.0.1");
  expectClientsAgree(v, "127.0.0.1");
  ASSERT_TRUE(restore.undo());

  expectCells(v, {{"plain-only-587", kOut, FailureReason::AuthMechanismMissing},
                  {"legacy-tls10", kIn, FailureReason::TlsVersionUnsupported}});
  const Verdict* plain = find(v, "plain-only-587", kOut);
  ASSERT_NE(plain, nullptr);
  EXPECT_EQ(plain->phase, Phase::Auth);
  // The sentence of the example: what, where, and since when (in.now, 00:00 UTC).
  EXPECT_EQ(plain->sentence,
            "plain-only-587 cannot send: smtp 587 (starttls) does not offer AUTH PLAIN (it "
            "offers LOGIN and CRAM-MD5) since 00:00 UTC");
  for (const char* id : {"ios-mail", "outlook"}) {
    const Verdict* x = find(v, id, kOut);
    ASSERT_NE(x, nullptr);
    EXPECT_EQ(x->basis.port, 587) << x->sentence;
    EXPECT_EQ(x->basis.mechanism, "LOGIN") << x->sentence;
  }
  for (const char* id : {"android-guide", "thunderbird"}) {
    const Verdict* x = find(v, id, kOut);
    ASSERT_NE(x, nullptr);
    EXPECT_EQ(x->basis.port, 465) << x->sentence;
    EXPECT_EQ(x->basis.mechanism, "PLAIN") << x->sentence;
  }
  expectDefaultWorld();
}

// Dovecot stopped: every client fails to read mail, Thunderbird on both of its ports; sending
// fails too, since Postfix's SASL is Dovecot's.
TEST_F(ProfileVerdictTest, DovecotStopped) {
  ASSERT_TRUE(env()->stopService("dovecot")) << env()->lastError();
  testing::MailEnvChange restart(env(),
                                 [](testing::MailEnv* e) { return e->startService("dovecot"); });
  std::vector<Verdict> down = judgeWorld("127.0.0.1");
  ASSERT_TRUE(restart.undo());

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
  expectDefaultWorld();
}

}  // namespace
}  // namespace mailprobe
