// `check` output for relay cells (daemon/report.h): the Nagios status, the text matrix and the
// JSON relay entries, from cells made by the real rules (probes/relay.h).

#include <gtest/gtest.h>

#include "daemon/report.h"

namespace mailprobe {
namespace {

constexpr int64_t kNow = 1'800'000'000;

// mx.example.org 25 from an untrusted vantage: local accepted, outside as `outside_code` says.
std::vector<RelayCell> cells(int outside_code) {
  RelaySpec spec;
  spec.endpoint.host = "mx.example.org";
  spec.endpoint.port = 25;
  spec.endpoint.security = Security::StartTls;
  spec.policy = mxRelayPolicy();
  ConnectionOutcome o;
  o.relay_local = RecipientVerdict{true, 250, "2.1.5", "250 2.1.5 Ok", false};
  o.relay_outside = RecipientVerdict{outside_code / 100 == 2, outside_code,
                                     outside_code == 250 ? "2.1.5" : "5.7.1",
                                     std::to_string(outside_code) + " server words", false};
  auto pair =
      relayCells(spec, "192.0.2.25", {"outside", "198.51.100.7", false}, RelayAuth::None, o);
  return {pair.begin(), pair.end()};
}

TEST(RelayReport, AnOpenRelayIsCriticalAndSaidLoudly) {
  const Thresholds th;
  EXPECT_EQ(overallStatus({}, th, kNow, cells(554)), Status::Ok);
  EXPECT_EQ(overallStatus({}, th, kNow, cells(250)), Status::Critical);
  EXPECT_EQ(overallStatus({}, th, kNow, {}), Status::Unknown);

  const std::string ok = reportText({}, th, kNow, cells(554));
  EXPECT_NE(
      ok.find("ok    relay rules of smtp 25 (starttls) on mx.example.org [192.0.2.25]: 2 of 2 "
              "cells as expected\n"),
      std::string::npos)
      << ok;
  EXPECT_NE(ok.find("      outside (untrusted), none: local accept 250 2.1.5; outside refuse 554 "
                    "5.7.1\n"),
            std::string::npos)
      << ok;
  EXPECT_NE(ok.find("OK: 0 of 0 endpoints work, 2 of 2 relay cells as expected\n"),
            std::string::npos);

  const std::string open = reportText({}, th, kNow, cells(250));
  EXPECT_NE(open.find("FAIL  relay rules of smtp 25 (starttls) on mx.example.org [192.0.2.25]: 1 "
                      "of 2 cells as expected, OPEN RELAY\n"),
            std::string::npos)
      << open;
  EXPECT_NE(open.find("outside ACCEPT 250 2.1.5 (expected refuse)"), std::string::npos);
  EXPECT_NE(open.find("FAIL  OPEN RELAY: smtp 25 (starttls) on mx.example.org"), std::string::npos);
  EXPECT_NE(open.find("      server said / error: 250 server words\n"), std::string::npos);
  EXPECT_NE(open.find("CRITICAL: 0 of 0 endpoints work, 1 of 2 relay cells as expected; OPEN "
                      "RELAY\n"),
            std::string::npos);
}

TEST(RelayReport, JsonEntriesHaveTheContractFieldsAndTellTemporaryFromPermanent) {
  auto temporary = cells(454);
  nlohmann::json j = reportJson({}, kNow, temporary);
  ASSERT_EQ(j["relay"].size(), 2u);
  const auto& outside = j["relay"][1];
  EXPECT_EQ(outside["host"], "mx.example.org");
  EXPECT_EQ(outside["address"], "192.0.2.25");
  EXPECT_EQ(outside["port"], 25);
  EXPECT_EQ(outside["vantage"], "outside");
  EXPECT_EQ(outside["source_address"], "198.51.100.7");
  EXPECT_EQ(outside["trusted"], false);
  EXPECT_EQ(outside["auth"], "none");
  EXPECT_EQ(outside["recipient"], "outside");
  EXPECT_EQ(outside["expected"], "refuse");
  EXPECT_EQ(outside["observed"], "refuse");
  EXPECT_EQ(outside["code"], 454);
  EXPECT_EQ(outside["enhanced_code"], "5.7.1");
  EXPECT_EQ(outside["temporary"], true);
  EXPECT_EQ(outside["reason"], "none");
  EXPECT_TRUE(outside["phase"].is_null());
  EXPECT_EQ(j["relay"][0]["temporary"], false);

  RelaySpec spec;
  spec.endpoint.port = 25;
  auto not_asked = relayCellsNotRun(spec, "", {"office", "192.0.2.200", true}, RelayAuth::SignedIn,
                                    FailureReason::AuthBackoff, Phase::Auth, "a login failed");
  nlohmann::json n = toJson(not_asked[0]);
  EXPECT_TRUE(n["observed"].is_null());
  EXPECT_TRUE(n["code"].is_null());
  EXPECT_TRUE(n["temporary"].is_null());
  EXPECT_EQ(n["reason"], "auth_backoff");
  EXPECT_EQ(n["phase"], "auth");
  EXPECT_EQ(n["auth"], "signed_in");
}

}  // namespace
}  // namespace mailprobe
