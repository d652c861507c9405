#include "probes/types.h"

#include <gtest/gtest.h>

#include <set>

namespace mailprobe {
namespace {

TEST(Types, EveryReasonRoundTripsThroughItsContractSpelling) {
  std::set<std::string_view> seen;
  for (FailureReason r : allFailureReasons()) {
    std::string_view s = toString(r);
    EXPECT_NE(s, "unknown");
    EXPECT_TRUE(seen.insert(s).second) << "duplicate spelling " << s;
    ASSERT_TRUE(parseFailureReason(s).has_value()) << s;
    EXPECT_EQ(*parseFailureReason(s), r);
  }
  // The contract of PRODUCT.md: 28 reasons plus none.
  EXPECT_EQ(seen.size(), 29u);
  EXPECT_FALSE(parseFailureReason("Open_Relay").has_value());
}

TEST(Types, PhasesAndModesRoundTrip) {
  for (Phase p : allPhases()) {
    EXPECT_EQ(parsePhase(toString(p)), p);
  }
  EXPECT_EQ(parseSecurity("starttls"), Security::StartTls);
  EXPECT_EQ(parseSecurity("tls"), Security::Tls);
  EXPECT_EQ(parseSecurity("none"), Security::None);
  EXPECT_FALSE(parseSecurity("ssl").has_value());
  EXPECT_EQ(toString(Phase::TlsHandshake), "tls_handshake");
}

TEST(Types, CertificateReasonsAreTheCertificateGroup) {
  int n = 0;
  for (FailureReason r : allFailureReasons()) {
    if (isCertificateReason(r)) {
      ++n;
      EXPECT_EQ(toString(r).substr(0, 5), "cert_");
    }
  }
  EXPECT_EQ(n, 6);
}

}  // namespace
}  // namespace mailprobe
