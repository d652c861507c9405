// redactPassword: every form in which a session sends the password is taken out of peer text,
// and a refusal that quotes a long login back is cut only after the password is out.

#include <gtest/gtest.h>

#include "probes/imap_session.h"
#include "probes/sasl.h"
#include "probes/session.h"
#include "probes/smtp_session.h"
#include "tests/fakes/fake_host.h"

namespace mailprobe {
namespace {

TEST(RedactPassword, EveryFormOnTheWireIsTakenOut) {
  const Credentials c{"probe@example.org", "Tr1cky \"pass\" \\ word"};
  const std::string plain = saslPlain(c.user, c.password);
  const std::string login = base64Encode(c.password);
  std::string unpadded = plain;
  while (unpadded.back() == '=') {
    unpadded.pop_back();
  }
  const struct {
    std::string text, redacted;
  } cases[] = {
      {"535 failed: " + c.password, "535 failed: [password]"},
      {"NO LOGIN \"probe@example.org\" \"Tr1cky \\\"pass\\\" \\\\ word\" refused",
       "NO LOGIN \"probe@example.org\" \"[password]\" refused"},
      {"535 for AUTH PLAIN " + plain, "535 for AUTH PLAIN [password]"},
      {"535 for AUTH PLAIN " + unpadded + " (padding dropped)",
       "535 for AUTH PLAIN [password] (padding dropped)"},
      {"535 for " + login + " and " + login, "535 for [password] and [password]"},
      {"535 5.7.8 Error: authentication failed", "535 5.7.8 Error: authentication failed"},
      {"", ""},
  };
  for (const auto& k : cases) {
    EXPECT_EQ(redactPassword(k.text, &c), k.redacted) << k.text;
  }
}

TEST(RedactPassword, NoCredentialsNoChange) {
  EXPECT_EQ(redactPassword("535 anything", nullptr), "535 anything");
  const Credentials none{"probe@example.org", ""};
  EXPECT_EQ(redactPassword("535 anything", &none), "535 anything");
}

TEST(RedactPassword, APasswordInsideTheMarkerStillEnds) {
  // Pathological, but it must terminate and leave no copy of the password outside a marker.
  const Credentials c{"u", "pass"};
  std::string out = redactPassword("x pass y password z", &c);
  EXPECT_EQ(out.find(" pass "), std::string::npos) << out;
}

// The refusal quotes a login longer than a detail may be: the cut comes after the password is
// out, so no prefix of it survives at the end of the detail.
TEST(RedactPassword, ALongQuotedLoginIsCutAfterTheRedaction) {
  EndpointSpec spec;
  spec.host = "mail.example.org";
  spec.port = 465;
  spec.service = Service::Smtp;
  spec.security = Security::Tls;
  spec.ehlo_name = "probe.test";
  const Credentials c{std::string(150, 'u') + "@example.org", "Long-Secret-0123456789abcdef"};
  testing::FakeHost host;
  ConnectionPlan plan;
  plan.spec = &spec;
  plan.credentials = &c;
  plan.candidates = {"PLAIN"};
  SmtpSession s(host, std::move(plan));
  s.onConnected(testing::goodTls());
  s.onData("220 hi\r\n");
  s.onData("250-mail.example.org\r\n250 AUTH PLAIN\r\n");
  const std::string sent = host.takeSent();
  const std::string plain = saslPlain(c.user, c.password);
  ASSERT_NE(sent.find("AUTH PLAIN " + plain), std::string::npos) << sent;
  // 12 + 150 + 12 characters of "535 ... for " and the blob put the password past 200.
  s.onData("535 5.7.8 Authentication failed for AUTH PLAIN " + plain + "\r\n");
  const ConnectionOutcome& o = s.outcome();
  ASSERT_TRUE(o.auth.has_value());
  EXPECT_EQ(o.auth->reason, FailureReason::AuthFailed);
  EXPECT_EQ(o.auth->detail, "535 5.7.8 Authentication failed for AUTH PLAIN [password]");
  EXPECT_EQ(o.detail, o.auth->detail);
}

}  // namespace
}  // namespace mailprobe
