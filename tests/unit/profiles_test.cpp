// Client profiles and verdicts (daemon/profiles.h), from synthetic probe results: every built-in
// profile x direction in each of a table of worlds (all fine, an expired certificate, a
// TLS 1.3-only server, AUTH PLAIN gone from 465, 993 down, logins refused, STARTTLS gone from
// 587, ...), then the rules one by one: every address counts, alternatives, mechanisms, unknowns,
// the relay step, sentences and "since".

#include "daemon/profiles.h"

#include <gtest/gtest.h>
#include <openssl/tls1.h>

#include <functional>
#include <map>
#include <set>
#include <tuple>

#include "daemon/snapshot.h"
#include "probes/probe_spec.h"

namespace mailprobe {
namespace {

const std::string kHost = "mail.example.org";
constexpr int64_t kNow = 1767225600 + 2 * 3600 + 14 * 60;  // 2026-01-01 02:14:00 UTC

using Key = std::tuple<Service, uint16_t, Security>;

std::vector<std::string> advertisedFor(Service s) {
  return s == Service::Imap ? std::vector<std::string>{"PLAIN", "LOGIN", "LOGIN-COMMAND"}
                            : std::vector<std::string>{"PLAIN", "LOGIN"};
}

// A probe result where everything worked: TLS 1.3, a verified certificate, every advertised
// mechanism logged in.
// A result for one address that failed (reason, phase), with nothing else known.
ProbeResult failed(Service service, uint16_t port, Security security, FailureReason reason,
                   Phase phase, const std::string& address = "192.0.2.10") {
  ProbeResult r;
  r.host = kHost;
  r.address = address;
  r.port = port;
  r.service = service;
  r.security = security;
  r.reason = reason;
  r.phase = phase;
  return r;
}

ProbeResult healthy(Service service, uint16_t port, Security security,
                    const std::string& address = "192.0.2.10") {
  ProbeResult r = failed(service, port, security, FailureReason::None, Phase::Logout, address);
  r.success = true;
  r.started_at = kNow - 30;
  TlsFacts tls;
  tls.version = "TLSv1.3";
  tls.cipher = "TLS_AES_256_GCM_SHA384";
  tls.accept_all_ok = true;
  r.tls = tls;
  r.starttls_offered = security == Security::StartTls;
  r.auth_after_tls = advertisedFor(service);
  for (const auto& m : r.auth_after_tls) {
    r.auth.push_back({m, true, FailureReason::None, ""});
  }
  return r;
}

TlsVersionResult scanAccepting(const Key& key, std::set<int> accepted,
                               const std::string& address = "192.0.2.10") {
  TlsVersionResult s;
  s.host = kHost;
  s.address = address;
  std::tie(s.service, s.port, s.security) = key;
  for (int v : scannedTlsVersions()) {
    s.accepted[v] = accepted.count(v) > 0;
  }
  s.scanned_at = kNow - 60;
  return s;
}

// The platform's five endpoints as the probe saw them, and what the version scans found.
struct World {
  std::map<Key, std::vector<ProbeResult>> results;
  std::map<Key, std::vector<TlsVersionResult>> scans;
  bool with_scans = true;
  std::optional<FailureReason> relay;

  World() {
    const Key keys[] = {{Service::Imap, 143, Security::StartTls},
                        {Service::Imap, 993, Security::Tls},
                        {Service::Smtp, 25, Security::StartTls},
                        {Service::Smtp, 465, Security::Tls},
                        {Service::Smtp, 587, Security::StartTls}};
    for (const Key& k : keys) {
      results[k] = {healthy(std::get<0>(k), std::get<1>(k), std::get<2>(k))};
      // An old-friendly server: every version works, so every profile starts green.
      scans[k] = {scanAccepting(k, {TLS1_VERSION, TLS1_1_VERSION, TLS1_2_VERSION, TLS1_3_VERSION})};
    }
  }

  std::vector<ProbeResult>& at(Service s, uint16_t port, Security sec) {
    return results.at({s, port, sec});
  }

  void forAll(const std::function<void(ProbeResult&)>& f) {
    for (auto& [key, rs] : results) {
      for (auto& r : rs) {
        f(r);
      }
    }
  }

  JudgeInputs inputs() const {
    JudgeInputs in;
    in.default_host = kHost;
    in.now = kNow;
    in.results = [this](const EndpointKey& k) -> std::optional<std::vector<ProbeResult>> {
      if (k.host != kHost) {
        return std::nullopt;
      }
      auto it = results.find({k.service, k.port, k.security});
      if (it == results.end()) {
        return std::nullopt;
      }
      return it->second;
    };
    if (with_scans) {
      in.scans = [this](const EndpointKey& k,
                        const std::string& address) -> std::optional<TlsVersionResult> {
        auto it = scans.find({k.service, k.port, k.security});
        if (it == scans.end()) {
          return std::nullopt;
        }
        for (const auto& s : it->second) {
          if (s.address == address) {
            return s;
          }
        }
        return std::nullopt;
      };
    }
    in.relay = [this](const EndpointKey&, bool) { return relay; };
    return in;
  }
};

// Results of a failed connection.
ProbeResult refused(Service service, uint16_t port, Security security,
                    const std::string& address = "192.0.2.10") {
  return failed(service, port, security, FailureReason::ConnectRefused, Phase::Connect, address);
}

// Every login refused, as the probe records it.
void refuseLogins(ProbeResult& r) {
  for (auto& a : r.auth) {
    a.success = false;
    a.reason = FailureReason::AuthFailed;
  }
  r.success = false;
  r.reason = FailureReason::AuthFailed;
  r.phase = Phase::Auth;
}

// ---------------------------------------------------------------------------------------------
// The table: each built-in profile x direction in each world. A cell not listed must work.

struct Expected {
  std::string profile;
  Direction direction;
  FailureReason reason;
  Phase phase;
};

struct Case {
  std::string name;
  std::function<void(World&)> change;
  std::vector<Expected> failing;
};

void PrintTo(const Case& c, std::ostream* os) {
  *os << c.name;
}

constexpr auto kIn = Direction::Incoming;
constexpr auto kOut = Direction::Outgoing;

const std::vector<Case>& cases() {
  static const std::vector<Case> all = {
      {"AllOk", [](World&) {}, {}},
      {"ExpiredCertificate",
       [](World& w) {
         w.forAll([](ProbeResult& r) {
           r.tls->verify = FailureReason::CertExpired;
           r.success = false;
           r.reason = FailureReason::CertExpired;
           r.phase = Phase::TlsHandshake;
         });
       },
       // Strict clients fail at the certificate; accept-all ones (the guide's) still work.
       {{"thunderbird", kIn, FailureReason::CertExpired, Phase::TlsHandshake},
        {"thunderbird", kOut, FailureReason::CertExpired, Phase::TlsHandshake},
        {"ios-mail", kIn, FailureReason::CertExpired, Phase::TlsHandshake},
        {"ios-mail", kOut, FailureReason::CertExpired, Phase::TlsHandshake},
        {"outlook", kIn, FailureReason::CertExpired, Phase::TlsHandshake},
        {"outlook", kOut, FailureReason::CertExpired, Phase::TlsHandshake}}},
      {"Tls13Only",
       [](World& w) {
         for (auto& [key, scans] : w.scans) {
           scans = {scanAccepting(key, {TLS1_3_VERSION})};
         }
       },
       {{"legacy-tls10", kIn, FailureReason::TlsVersionUnsupported, Phase::TlsHandshake},
        {"legacy-tls10", kOut, FailureReason::TlsVersionUnsupported, Phase::TlsHandshake}}},
      {"MinimumRaisedToTls12",
       [](World& w) {
         for (auto& [key, scans] : w.scans) {
           scans = {scanAccepting(key, {TLS1_2_VERSION, TLS1_3_VERSION})};
         }
       },
       {{"legacy-tls10", kIn, FailureReason::TlsVersionUnsupported, Phase::TlsHandshake},
        {"legacy-tls10", kOut, FailureReason::TlsVersionUnsupported, Phase::TlsHandshake}}},
      {"AuthPlainRemovedFrom465",
       [](World& w) {
         // AOSP Email falls to AUTH LOGIN when PLAIN is not listed: the guide's phones still
         // send. Thunderbird's first common mechanism on 465 becomes LOGIN too.
         ProbeResult& r = w.at(Service::Smtp, 465, Security::Tls).front();
         r.auth_after_tls = {"LOGIN"};
         r.auth = {{"LOGIN", true, FailureReason::None, ""}};
       },
       {}},
      {"OnlyCramMd5On465",
       [](World& w) {
         ProbeResult& r = w.at(Service::Smtp, 465, Security::Tls).front();
         r.auth_after_tls = {"CRAM-MD5"};
         r.auth = {{"CRAM-MD5", true, FailureReason::None, ""}};
       },
       // Thunderbird moves on to 587; the guide's fixed 465 setting has nowhere to go.
       {{"android-guide", kOut, FailureReason::AuthMechanismMissing, Phase::Auth},
        {"legacy-tls10", kOut, FailureReason::AuthMechanismMissing, Phase::Auth}}},
      {"Imap993Down",
       [](World& w) {
         w.at(Service::Imap, 993, Security::Tls) = {refused(Service::Imap, 993, Security::Tls)};
       },
       // Thunderbird falls back to 143 and works.
       {{"android-guide", kIn, FailureReason::ConnectRefused, Phase::Connect},
        {"ios-mail", kIn, FailureReason::ConnectRefused, Phase::Connect},
        {"outlook", kIn, FailureReason::ConnectRefused, Phase::Connect},
        {"legacy-tls10", kIn, FailureReason::ConnectRefused, Phase::Connect}}},
      {"EveryLoginRefused",
       [](World& w) { w.forAll(refuseLogins); },
       {{"android-guide", kIn, FailureReason::AuthFailed, Phase::Auth},
        {"android-guide", kOut, FailureReason::AuthFailed, Phase::Auth},
        {"thunderbird", kIn, FailureReason::AuthFailed, Phase::Auth},
        {"thunderbird", kOut, FailureReason::AuthFailed, Phase::Auth},
        {"ios-mail", kIn, FailureReason::AuthFailed, Phase::Auth},
        {"ios-mail", kOut, FailureReason::AuthFailed, Phase::Auth},
        {"outlook", kIn, FailureReason::AuthFailed, Phase::Auth},
        {"outlook", kOut, FailureReason::AuthFailed, Phase::Auth},
        {"legacy-tls10", kIn, FailureReason::AuthFailed, Phase::Auth},
        {"legacy-tls10", kOut, FailureReason::AuthFailed, Phase::Auth}}},
      {"StartTlsMissingOn587",
       [](World& w) {
         ProbeResult& r = w.at(Service::Smtp, 587, Security::StartTls).front();
         r = failed(Service::Smtp, 587, Security::StartTls, FailureReason::StartTlsNotOffered,
                    Phase::StartTls);
         r.auth_before_tls = {"PLAIN", "LOGIN"};
       },
       // Thunderbird prefers 465, which works.
       {{"ios-mail", kOut, FailureReason::StartTlsNotOffered, Phase::StartTls},
        {"outlook", kOut, FailureReason::StartTlsNotOffered, Phase::StartTls}}},
      {"StartTlsMissingOn587And465Down",
       [](World& w) {
         ProbeResult& r = w.at(Service::Smtp, 587, Security::StartTls).front();
         r.tls.reset();
         r.starttls_offered = false;
         r.auth.clear();
         r.auth_after_tls.clear();
         r.success = false;
         r.reason = FailureReason::StartTlsNotOffered;
         r.phase = Phase::StartTls;
         w.at(Service::Smtp, 465, Security::Tls) = {refused(Service::Smtp, 465, Security::Tls)};
       },
       // Both of Thunderbird's alternatives fail: the reason is its first choice's.
       {{"android-guide", kOut, FailureReason::ConnectRefused, Phase::Connect},
        {"legacy-tls10", kOut, FailureReason::ConnectRefused, Phase::Connect},
        {"thunderbird", kOut, FailureReason::ConnectRefused, Phase::Connect},
        {"ios-mail", kOut, FailureReason::StartTlsNotOffered, Phase::StartTls},
        {"outlook", kOut, FailureReason::StartTlsNotOffered, Phase::StartTls}}},
      {"HostnameMismatchOn993Only",
       [](World& w) {
         ProbeResult& r = w.at(Service::Imap, 993, Security::Tls).front();
         r.tls->verify = FailureReason::CertHostnameMismatch;
         r.success = false;
         r.reason = FailureReason::CertHostnameMismatch;
         r.phase = Phase::TlsHandshake;
       },
       {{"ios-mail", kIn, FailureReason::CertHostnameMismatch, Phase::TlsHandshake},
        {"outlook", kIn, FailureReason::CertHostnameMismatch, Phase::TlsHandshake}}},
      {"SignedInRelayRefused",
       [](World& w) { w.relay = FailureReason::AuthRelayDenied; },
       {{"android-guide", kOut, FailureReason::AuthRelayDenied, Phase::Relay},
        {"thunderbird", kOut, FailureReason::AuthRelayDenied, Phase::Relay},
        {"ios-mail", kOut, FailureReason::AuthRelayDenied, Phase::Relay},
        {"outlook", kOut, FailureReason::AuthRelayDenied, Phase::Relay},
        {"legacy-tls10", kOut, FailureReason::AuthRelayDenied, Phase::Relay}}},
      // An open relay is the platform's problem: clients still send.
      {"OpenRelayIsNotAClientFailure", [](World& w) { w.relay = FailureReason::OpenRelay; }, {}},
  };
  return all;
}

class BuiltinProfileTable : public ::testing::TestWithParam<Case> {};

TEST_P(BuiltinProfileTable, EveryProfileAndDirection) {
  World world;
  GetParam().change(world);
  JudgeInputs in = world.inputs();
  for (const ClientProfile& p : builtinProfiles()) {
    for (Direction d : {Direction::Incoming, Direction::Outgoing}) {
      Verdict v = judge(p, d, in);
      SCOPED_TRACE(p.id + " " + std::string(toString(d)) + ": " + v.sentence);
      EXPECT_TRUE(v.known);
      EXPECT_EQ(v.profile, p.id);
      EXPECT_EQ(v.direction, d);
      auto expected =
          std::find_if(GetParam().failing.begin(), GetParam().failing.end(),
                       [&](const Expected& e) { return e.profile == p.id && e.direction == d; });
      if (expected == GetParam().failing.end()) {
        EXPECT_TRUE(v.ok);
        EXPECT_EQ(v.reason, FailureReason::None);
        EXPECT_NE(v.sentence.find(" can "), std::string::npos);
      } else {
        EXPECT_FALSE(v.ok);
        EXPECT_EQ(v.reason, expected->reason);
        EXPECT_EQ(v.phase, expected->phase);
        EXPECT_NE(v.sentence.find(" cannot "), std::string::npos);
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Worlds, BuiltinProfileTable, ::testing::ValuesIn(cases()),
                         [](const auto& info) { return info.param.name; });

// Every failing cell named in the table is a real built-in profile x direction (a typo there
// would make the cell silently expected to work).
TEST(BuiltinProfileTable, NamesOnlyRealProfiles) {
  for (const Case& c : cases()) {
    for (const Expected& e : c.failing) {
      EXPECT_NE(findBuiltinProfile(e.profile), nullptr) << c.name << ": " << e.profile;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// The built-in profiles themselves.

TEST(BuiltinProfiles, AreTheFiveOfTheProductWithTheirFacts) {
  std::vector<std::string> ids;
  for (const auto& p : builtinProfiles()) {
    ids.push_back(p.id);
    EXPECT_TRUE(p.builtin);
    EXPECT_FALSE(p.description.empty());
    EXPECT_FALSE(p.source.empty());
    EXPECT_FALSE(p.incoming.empty()) << p.id;
    EXPECT_FALSE(p.outgoing.empty()) << p.id;
    for (const auto& [sides, service] :
         {std::pair(&p.incoming, Service::Imap), std::pair(&p.outgoing, Service::Smtp)}) {
      for (const ClientSide& s : *sides) {
        EXPECT_TRUE(s.host.empty()) << p.id << ": built-ins use the probed host";
        EXPECT_NE(s.security, Security::None) << p.id;
        EXPECT_TRUE(s.sign_in) << p.id;
        EXPECT_FALSE(s.mechanisms.empty()) << p.id;
        for (const auto& m : s.mechanisms) {
          const auto& speakable = supportedMechanisms(service);
          EXPECT_NE(std::find(speakable.begin(), speakable.end(), m), speakable.end())
              << p.id << ": the probe cannot judge " << m;
        }
      }
    }
  }
  EXPECT_EQ(ids, (std::vector<std::string>{"android-guide", "thunderbird", "ios-mail", "outlook",
                                           "legacy-tls10"}));

  // The guide's settings (PRODUCT.md): 993 tls + 465 tls, accept all certificates.
  const ClientProfile* guide = findBuiltinProfile("android-guide");
  ASSERT_NE(guide, nullptr);
  ASSERT_EQ(guide->incoming.size(), 1u);
  ASSERT_EQ(guide->outgoing.size(), 1u);
  EXPECT_EQ(guide->incoming[0].port, 993);
  EXPECT_EQ(guide->incoming[0].security, Security::Tls);
  EXPECT_EQ(guide->incoming[0].cert_policy, CertPolicy::AcceptAll);
  EXPECT_EQ(guide->outgoing[0].port, 465);
  EXPECT_EQ(guide->outgoing[0].security, Security::Tls);
  EXPECT_EQ(guide->outgoing[0].cert_policy, CertPolicy::AcceptAll);
  EXPECT_EQ(guide->outgoing[0].mechanisms, (std::vector<std::string>{"PLAIN", "LOGIN"}));

  // Thunderbird: implicit TLS first, then STARTTLS; strict.
  const ClientProfile* tb = findBuiltinProfile("thunderbird");
  ASSERT_NE(tb, nullptr);
  ASSERT_EQ(tb->incoming.size(), 2u);
  EXPECT_EQ(tb->incoming[0].port, 993);
  EXPECT_EQ(tb->incoming[1].port, 143);
  EXPECT_EQ(tb->incoming[1].security, Security::StartTls);
  ASSERT_EQ(tb->outgoing.size(), 2u);
  EXPECT_EQ(tb->outgoing[0].port, 465);
  EXPECT_EQ(tb->outgoing[1].port, 587);
  EXPECT_EQ(tb->incoming[0].cert_policy, CertPolicy::Strict);
  EXPECT_EQ(tb->incoming[0].tls_min_version, TLS1_2_VERSION);

  const ClientProfile* legacy = findBuiltinProfile("legacy-tls10");
  ASSERT_NE(legacy, nullptr);
  EXPECT_EQ(legacy->incoming[0].tls_max_version, TLS1_1_VERSION);
  EXPECT_EQ(findBuiltinProfile("outlook")->outgoing[0].tls_min_version, TLS1_2_VERSION);
}

TEST(Direction, Words) {
  EXPECT_EQ(toString(Direction::Incoming), "incoming");
  EXPECT_EQ(toString(Direction::Outgoing), "outgoing");
  EXPECT_EQ(parseDirection("outgoing"), Direction::Outgoing);
  EXPECT_EQ(parseDirection("out"), std::nullopt);
  EXPECT_EQ(toString(CertPolicy::AcceptAll), "accept-all");
}

// ---------------------------------------------------------------------------------------------
// The rules, one at a time.

const ClientProfile& profile(const std::string& id) {
  const ClientProfile* p = findBuiltinProfile(id);
  EXPECT_NE(p, nullptr) << id;
  return *p;
}

TEST(Verdict, SentencesSayWhatWorksAndWhatFailsSinceWhen) {
  World w;
  Verdict ok = judge(profile("android-guide"), kIn, w.inputs());
  EXPECT_EQ(ok.sentence,
            "android-guide can read mail: imap 993 (tls) works with the LOGIN command");
  Verdict send = judge(profile("android-guide"), kOut, w.inputs());
  EXPECT_EQ(send.sentence, "android-guide can send: smtp 465 (tls) works with AUTH PLAIN");
  EXPECT_EQ(send.basis.mechanism, "PLAIN");
  EXPECT_EQ(send.basis.port, 465);
  EXPECT_EQ(send.basis.address, "192.0.2.10");
  EXPECT_EQ(send.basis.tls_version, "TLSv1.3");

  refuseLogins(w.at(Service::Smtp, 465, Security::Tls).front());
  Verdict refused_login = judge(profile("android-guide"), kOut, w.inputs());
  EXPECT_EQ(refused_login.sentence,
            "android-guide cannot send: smtp 465 (tls) refuses AUTH PLAIN since 02:14 UTC");
  EXPECT_EQ(refused_login.basis.mechanism, "PLAIN");
  // Thunderbird tries PLAIN then LOGIN on 465, then moves on to 587.
  Verdict tb = judge(profile("thunderbird"), kOut, w.inputs());
  EXPECT_TRUE(tb.ok) << tb.sentence;
  EXPECT_EQ(tb.sentence,
            "thunderbird can send: smtp 587 (starttls) works with AUTH PLAIN, after smtp 465 "
            "(tls) refuses AUTH PLAIN and LOGIN");
}

TEST(Verdict, ThunderbirdTriesItsNextMechanismAfterARefusal) {
  World w;
  ProbeResult& r = w.at(Service::Smtp, 465, Security::Tls).front();
  r.auth = {{"PLAIN", false, FailureReason::AuthFailed, "535"},
            {"LOGIN", true, FailureReason::None, ""}};
  r.success = false;
  r.reason = FailureReason::AuthFailed;
  r.phase = Phase::Auth;
  // No fallback port either: 587 down, so the answer must come from 465's second mechanism.
  w.at(Service::Smtp, 587, Security::StartTls) = {refused(Service::Smtp, 587, Security::StartTls)};

  Verdict tb = judge(profile("thunderbird"), kOut, w.inputs());
  EXPECT_TRUE(tb.ok) << tb.sentence;
  EXPECT_EQ(tb.sentence, "thunderbird can send: smtp 465 (tls) works with AUTH LOGIN");
  Verdict guide = judge(profile("android-guide"), kOut, w.inputs());
  EXPECT_FALSE(guide.ok);
  EXPECT_EQ(guide.reason, FailureReason::AuthFailed);

  r.auth[1] = {"LOGIN", false, FailureReason::AuthFailed, "535"};
  tb = judge(profile("thunderbird"), kOut, w.inputs());
  EXPECT_FALSE(tb.ok);
  EXPECT_EQ(tb.sentence,
            "thunderbird cannot send: smtp 465 (tls) refuses AUTH PLAIN and LOGIN and smtp 587 "
            "(starttls) refuses connections since 02:14 UTC");
}

TEST(Verdict, FallbackIsNamedInTheSentence) {
  World w;
  w.at(Service::Imap, 993, Security::Tls) = {refused(Service::Imap, 993, Security::Tls)};
  Verdict tb = judge(profile("thunderbird"), kIn, w.inputs());
  EXPECT_TRUE(tb.ok);
  EXPECT_EQ(tb.sentence,
            "thunderbird can read mail: imap 143 (starttls) works with AUTHENTICATE PLAIN, after "
            "imap 993 (tls) refuses connections");
  EXPECT_EQ(tb.basis.port, 143);

  // Both down the same way: said once.
  w.at(Service::Imap, 143, Security::StartTls) = {refused(Service::Imap, 143, Security::StartTls)};
  tb = judge(profile("thunderbird"), kIn, w.inputs());
  EXPECT_FALSE(tb.ok);
  EXPECT_EQ(tb.basis.port, 993);  // the client's first choice
  EXPECT_EQ(tb.sentence,
            "thunderbird cannot read mail: imap 993 (tls) refuses connections, as does imap 143 "
            "(starttls) since 02:14 UTC");
}

TEST(Verdict, MissingMechanismNamesWhatTheClientWantsAndWhatIsOffered) {
  World w;
  ProbeResult& r = w.at(Service::Smtp, 465, Security::Tls).front();
  r.auth_after_tls = {"CRAM-MD5"};
  r.auth = {{"CRAM-MD5", true, FailureReason::None, ""}};
  Verdict v = judge(profile("android-guide"), kOut, w.inputs());
  EXPECT_EQ(v.sentence,
            "android-guide cannot send: smtp 465 (tls) offers neither AUTH PLAIN nor LOGIN (it "
            "offers CRAM-MD5) since 02:14 UTC");

  // IMAP with LOGINDISABLED after TLS: the guide's phones only know the LOGIN command.
  ProbeResult& imap = w.at(Service::Imap, 993, Security::Tls).front();
  imap.auth_after_tls = {"PLAIN"};
  imap.auth = {{"PLAIN", true, FailureReason::None, ""}};
  v = judge(profile("android-guide"), kIn, w.inputs());
  EXPECT_EQ(v.reason, FailureReason::AuthMechanismMissing);
  EXPECT_EQ(v.sentence,
            "android-guide cannot read mail: imap 993 (tls) does not offer the LOGIN command (it "
            "offers PLAIN) since 02:14 UTC");

  imap.auth_after_tls.clear();
  v = judge(profile("android-guide"), kIn, w.inputs());
  EXPECT_EQ(v.reason, FailureReason::AuthNotOffered);
}

TEST(Verdict, EveryAddressCountsAndTheFailingOneIsNamed) {
  World w;
  w.at(Service::Imap, 993, Security::Tls) = {
      healthy(Service::Imap, 993, Security::Tls, "192.0.2.10"),
      refused(Service::Imap, 993, Security::Tls, "2001:db8::10")};
  Verdict v = judge(profile("android-guide"), kIn, w.inputs());
  EXPECT_FALSE(v.ok);
  EXPECT_EQ(v.reason, FailureReason::ConnectRefused);
  EXPECT_EQ(v.basis.address, "2001:db8::10");
  EXPECT_EQ(v.sentence,
            "android-guide cannot read mail: imap 993 (tls) at 2001:db8::10 (IPv6) refuses "
            "connections since 02:14 UTC");

  // Both addresses fine: the sentence does not name one.
  w.at(Service::Imap, 993, Security::Tls)[1] =
      healthy(Service::Imap, 993, Security::Tls, "2001:db8::10");
  w.scans[{Service::Imap, 993, Security::Tls}].push_back(scanAccepting(
      {Service::Imap, 993, Security::Tls}, {TLS1_2_VERSION, TLS1_3_VERSION}, "2001:db8::10"));
  v = judge(profile("android-guide"), kIn, w.inputs());
  EXPECT_TRUE(v.ok);
  EXPECT_EQ(v.sentence, "android-guide can read mail: imap 993 (tls) works with the LOGIN command");
  // ... but the IPv6 address refuses the legacy phone's versions.
  v = judge(profile("legacy-tls10"), kIn, w.inputs());
  EXPECT_FALSE(v.ok);
  EXPECT_EQ(v.reason, FailureReason::TlsVersionUnsupported);
  EXPECT_EQ(v.sentence,
            "legacy-tls10 cannot read mail: imap 993 (tls) at 2001:db8::10 (IPv6) accepts only "
            "TLSv1.2 and TLSv1.3, not TLSv1.0 or TLSv1.1 since 02:14 UTC");
}

TEST(Verdict, UnknownWhenTheResultsCannotTell) {
  World w;
  // Not probed at all.
  w.results.erase({Service::Smtp, 587, Security::StartTls});
  Verdict v = judge(profile("ios-mail"), kOut, w.inputs());
  EXPECT_FALSE(v.known);
  EXPECT_FALSE(v.ok);
  EXPECT_EQ(v.reason, FailureReason::None);
  EXPECT_EQ(v.sentence,
            "ios-mail: cannot tell whether it can send: smtp 587 (starttls) is not probed: no such "
            "endpoint in the configuration");
  // Thunderbird still has 465.
  EXPECT_TRUE(judge(profile("thunderbird"), kOut, w.inputs()).ok);

  // Not run yet.
  w.results[{Service::Smtp, 587, Security::StartTls}] = {};
  v = judge(profile("outlook"), kOut, w.inputs());
  EXPECT_FALSE(v.known);
  EXPECT_EQ(v.explanation, "smtp 587 (starttls) has not been probed yet");

  // No version scan yet: the probe's TLS 1.3 answers for clients that speak it, not for the
  // legacy phone.
  w.with_scans = false;
  EXPECT_TRUE(judge(profile("outlook"), kIn, w.inputs()).ok);
  v = judge(profile("legacy-tls10"), kIn, w.inputs());
  EXPECT_FALSE(v.known);
  EXPECT_NE(v.explanation.find("not been scanned yet"), std::string::npos) << v.explanation;

  // The probe did not log in (no account): the login step cannot be judged.
  World no_login;
  for (auto& [key, rs] : no_login.results) {
    rs.front().auth.clear();
  }
  v = judge(profile("android-guide"), kOut, no_login.inputs());
  EXPECT_FALSE(v.known);
  EXPECT_NE(v.explanation.find("was not logged in to"), std::string::npos) << v.explanation;

  // A direction a profile has no server for.
  ClientProfile reader{"reader", "", "", profile("android-guide").incoming, {}, false};
  v = judge(reader, kOut, w.inputs());
  EXPECT_FALSE(v.known);
  EXPECT_EQ(judgeAll({reader}, w.inputs()).size(), 1u);
}

TEST(Verdict, ScanSaysTheVersionsAreFineButTheProbeCouldNotHandshake) {
  // A TLS 1.0-only server: the probe (TLS 1.2+) is refused, the scan says 1.0 works.
  World w;
  w.at(Service::Imap, 993,
       Security::Tls) = {failed(Service::Imap, 993, Security::Tls,
                                FailureReason::TlsVersionUnsupported, Phase::TlsHandshake)};
  w.scans[{Service::Imap, 993, Security::Tls}] = {
      scanAccepting({Service::Imap, 993, Security::Tls}, {TLS1_VERSION})};

  Verdict modern = judge(profile("android-guide"), kIn, w.inputs());
  EXPECT_FALSE(modern.ok);
  EXPECT_EQ(modern.reason, FailureReason::TlsVersionUnsupported);
  EXPECT_EQ(modern.explanation, "imap 993 (tls) accepts only TLSv1.0, not TLSv1.2 or TLSv1.3");
  Verdict legacy = judge(profile("legacy-tls10"), kIn, w.inputs());
  EXPECT_FALSE(legacy.known) << legacy.sentence;

  // Without the scan, a client of TLS 1.2+ fails on the probe's own refusal.
  w.with_scans = false;
  modern = judge(profile("android-guide"), kIn, w.inputs());
  EXPECT_EQ(modern.reason, FailureReason::TlsVersionUnsupported);
  EXPECT_EQ(modern.explanation, "imap 993 (tls) refuses TLSv1.2 and TLSv1.3");
}

TEST(Verdict, StepsComeInTheClientsOrder) {
  // An expired certificate and refused logins: a strict client stops at the certificate.
  World w;
  ProbeResult& r = w.at(Service::Imap, 993, Security::Tls).front();
  r.tls->verify = FailureReason::CertExpired;
  refuseLogins(r);
  r.reason = FailureReason::CertExpired;
  r.phase = Phase::TlsHandshake;
  Verdict strict = judge(profile("outlook"), kIn, w.inputs());
  EXPECT_EQ(strict.reason, FailureReason::CertExpired);
  EXPECT_EQ(strict.sentence,
            "outlook cannot read mail: imap 993 (tls) presents an expired certificate since 02:14 "
            "UTC");
  Verdict accept_all = judge(profile("android-guide"), kIn, w.inputs());
  EXPECT_EQ(accept_all.reason, FailureReason::AuthFailed);
  EXPECT_EQ(accept_all.phase, Phase::Auth);

  // A server that closes during the greeting after TLS: everyone fails there, cert or not.
  ProbeResult& s = w.at(Service::Smtp, 465, Security::Tls).front();
  s.auth.clear();
  s.success = false;
  s.reason = FailureReason::ConnectionClosed;
  s.phase = Phase::Greeting;
  Verdict closed = judge(profile("android-guide"), kOut, w.inputs());
  EXPECT_EQ(closed.reason, FailureReason::ConnectionClosed);
  EXPECT_EQ(closed.phase, Phase::Greeting);
  EXPECT_EQ(closed.explanation, "smtp 465 (tls) closes the connection during the greeting");

  // The probe backing off: the login step says so.
  ProbeResult& sub = w.at(Service::Smtp, 587, Security::StartTls).front();
  sub.auth = {{"LOGIN", false, FailureReason::AuthBackoff, ""},
              {"PLAIN", false, FailureReason::AuthBackoff, ""}};
  Verdict backoff = judge(profile("outlook"), kOut, w.inputs());
  EXPECT_EQ(backoff.reason, FailureReason::AuthBackoff);
  EXPECT_EQ(backoff.explanation,
            "smtp 587 (starttls) login with AUTH LOGIN could not be checked: the probe is backing "
            "off after failed logins");
}

TEST(Verdict, SinceIsKeptWhileTheStateHolds) {
  World w;
  w.at(Service::Imap, 993, Security::Tls) = {refused(Service::Imap, 993, Security::Tls)};
  JudgeInputs in = w.inputs();
  Verdict first = judge(profile("android-guide"), kIn, in);
  carrySince(first, nullptr);
  EXPECT_EQ(first.since, kNow);

  in.now = kNow + 3600;  // an hour later, still failing the same way
  Verdict later = judge(profile("android-guide"), kIn, in);
  carrySince(later, &first);
  EXPECT_EQ(later.since, kNow);
  EXPECT_EQ(later.sentence,
            "android-guide cannot read mail: imap 993 (tls) refuses connections since 02:14 UTC");

  // A day later the date is shown.
  in.now = kNow + 86400;
  Verdict next_day = judge(profile("android-guide"), kIn, in);
  carrySince(next_day, &later);
  EXPECT_EQ(next_day.sentence,
            "android-guide cannot read mail: imap 993 (tls) refuses connections since 2026-01-01 "
            "02:14 UTC");

  // Back up: a new state, a new since; an ok sentence shows none.
  World fixed;
  JudgeInputs in2 = fixed.inputs();
  in2.now = kNow + 90000;
  Verdict up = judge(profile("android-guide"), kIn, in2);
  carrySince(up, &next_day);
  EXPECT_EQ(up.since, kNow + 90000);
  EXPECT_EQ(up.sentence.find("since"), std::string::npos);
  EXPECT_FALSE(sameState(up, next_day));
}

TEST(Verdict, UserSidesOnAnotherHostAndWithoutSignIn) {
  World w;
  ClientProfile copier;
  copier.id = "copier";
  ClientSide s;
  s.port = 25;
  s.security = Security::StartTls;
  s.sign_in = false;
  copier.outgoing = {s};
  Verdict v = judge(copier, kOut, w.inputs());
  EXPECT_TRUE(v.ok);
  EXPECT_EQ(v.sentence, "copier can send: smtp 25 (starttls) works without sign-in");

  // The relay answer for a client that does not sign in: the trusted network refused.
  w.relay = FailureReason::TrustedRelayDenied;
  v = judge(copier, kOut, w.inputs());
  EXPECT_EQ(v.reason, FailureReason::TrustedRelayDenied);
  EXPECT_EQ(v.phase, Phase::Relay);

  s.host = "smtp.elsewhere.example";
  copier.outgoing = {s};
  v = judge(copier, kOut, w.inputs());
  EXPECT_FALSE(v.known);
  EXPECT_EQ(v.explanation,
            "smtp 25 (starttls) on smtp.elsewhere.example is not probed: no such endpoint in the "
            "configuration");
}

// ---------------------------------------------------------------------------------------------
// Seams for the daemon.

TEST(Seams, EndpointsUsedListsEachEndpointOnce) {
  std::vector<EndpointKey> used = endpointsUsed(builtinProfiles(), kHost);
  std::vector<EndpointKey> expected{{kHost, Service::Imap, 993, Security::Tls},
                                    {kHost, Service::Smtp, 465, Security::Tls},
                                    {kHost, Service::Imap, 143, Security::StartTls},
                                    {kHost, Service::Smtp, 587, Security::StartTls}};
  EXPECT_EQ(used, expected);
}

TEST(Seams, ResultsFromEndpointStatesJoinPoolMembers) {
  std::vector<EndpointState> states(3);
  states[0].host = kHost + "@192.0.2.10";
  states[1].host = kHost + "@192.0.2.11";
  states[2].host = "mail.example.org.evil";
  for (auto& s : states) {
    s.service = Service::Imap;
    s.port = 993;
    s.security = Security::Tls;
  }
  states[0].last = {healthy(Service::Imap, 993, Security::Tls, "192.0.2.10")};
  states[2].last = {refused(Service::Imap, 993, Security::Tls, "192.0.2.66")};
  ResultLookup lookup = resultsFromEndpoints(states);
  auto found = lookup({kHost, Service::Imap, 993, Security::Tls});
  ASSERT_TRUE(found.has_value());
  ASSERT_EQ(found->size(), 1u);  // the second member has not run yet; the .evil host is not ours
  EXPECT_EQ(found->front().address, "192.0.2.10");
  EXPECT_FALSE(lookup({kHost, Service::Smtp, 993, Security::Tls}).has_value());
  EXPECT_FALSE(lookup({kHost, Service::Imap, 143, Security::StartTls}).has_value());

  states[1].last = {refused(Service::Imap, 993, Security::Tls, "192.0.2.11")};
  JudgeInputs in;
  in.default_host = kHost;
  in.results = lookup;
  in.now = kNow;
  ClientProfile reader{"reader", "", "", profile("outlook").incoming, {}, false};
  Verdict v = judge(reader, kIn, in);
  EXPECT_FALSE(v.ok);
  EXPECT_EQ(v.basis.address, "192.0.2.11");
}

TEST(Seams, RelayFromStatesAnswersForTheClientsPosition) {
  auto cell = [](bool trusted, RelayAuth auth, RelayRecipient recipient, RelayVerdict observed,
                 FailureReason reason) {
    RelayCell c;
    c.host = kHost;
    c.port = 465;
    c.security = Security::Tls;
    c.trusted = trusted;
    c.auth = auth;
    c.recipient = recipient;
    c.observed = observed;
    c.reason = reason;
    return c;
  };
  std::vector<RelayState> relay(1);
  relay[0].host = kHost;
  relay[0].port = 465;
  relay[0].security = Security::Tls;
  EndpointKey k{kHost, Service::Smtp, 465, Security::Tls};
  RelayLookup lookup = relayFromStates(relay);
  EXPECT_EQ(lookup(k, true), std::nullopt);  // not run yet

  relay[0].last = {// From the trusted network, signed in: accepted.
                   cell(true, RelayAuth::SignedIn, RelayRecipient::Outside, RelayVerdict::Accept,
                        FailureReason::None),
                   // From outside, signed in: refused where the policy says accept.
                   cell(false, RelayAuth::SignedIn, RelayRecipient::Outside, RelayVerdict::Refuse,
                        FailureReason::AuthRelayDenied),
                   // From outside, not signed in: refused, as it should be.
                   cell(false, RelayAuth::None, RelayRecipient::Outside, RelayVerdict::Refuse,
                        FailureReason::None),
                   // The local recipient never speaks for sending outside.
                   cell(false, RelayAuth::SignedIn, RelayRecipient::Local, RelayVerdict::Refuse,
                        FailureReason::LocalDeliveryRefused)};
  EXPECT_EQ(lookup(k, true), FailureReason::AuthRelayDenied);
  // Without sign-in there is no trusted vantage: the untrusted one answers, as expected.
  EXPECT_EQ(lookup(k, false), FailureReason::None);
  EXPECT_EQ(lookup({kHost, Service::Smtp, 587, Security::StartTls}, true), std::nullopt);

  // The phone signing in from outside cannot send to outside recipients.
  World w;
  JudgeInputs in = w.inputs();
  in.relay = lookup;
  Verdict v = judge(profile("android-guide"), kOut, in);
  EXPECT_EQ(v.reason, FailureReason::AuthRelayDenied);
  EXPECT_EQ(v.sentence,
            "android-guide cannot send: smtp 465 (tls) refuses an outside recipient after sign-in "
            "since 02:14 UTC");
}

}  // namespace
}  // namespace mailprobe
