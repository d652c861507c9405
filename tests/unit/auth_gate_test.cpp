#include "probes/auth_gate.h"

#include <gtest/gtest.h>

namespace mailprobe {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using Verdict = AuthGate::Verdict;
using Outcome = AuthGate::Outcome;

constexpr const char* kAccount = "probe@example.org on mail.example.org";

// A gate on a clock that only moves when the test says so.
class AuthGateTest : public ::testing::Test {
 protected:
  AuthGate make(AuthBackoff settings = {}) {
    return AuthGate(settings, [this] { return now_; });
  }
  void advance(milliseconds d) { now_ += d; }

  // One whole login that goes and gets `outcome`; the verdict it got.
  static Verdict login(AuthGate& gate, Outcome outcome, const std::string& account = kAccount) {
    auto l = gate.request(account, "PLAIN", nullptr);
    Verdict v = l->verdict();
    l->report(outcome);
    return v;
  }

  std::chrono::steady_clock::time_point now_{};
};

TEST(AuthBackoffTest, DelayGrowsByTheFactorUpToTheCap) {
  struct Row {
    AuthBackoff settings;
    int refused;
    milliseconds expected;
  };
  const AuthBackoff defaults;  // 1 min, x2, 1 h
  const AuthBackoff triple{seconds(10), seconds(100), 3.0};
  const AuthBackoff flat{seconds(30), seconds(30), 2.0};
  const std::vector<Row> rows{
      {defaults, 1, seconds(60)},     {defaults, 2, seconds(120)},  {defaults, 3, seconds(240)},
      {defaults, 6, seconds(1920)},   {defaults, 7, seconds(3600)},  // 3840 s, capped
      {defaults, 500, seconds(3600)},                                // no overflow
      {triple, 1, seconds(10)},       {triple, 2, seconds(30)},     {triple, 3, seconds(90)},
      {triple, 4, seconds(100)},      {flat, 1, seconds(30)},       {flat, 9, seconds(30)},
  };
  for (const Row& r : rows) {
    EXPECT_EQ(r.settings.delayAfter(r.refused), r.expected)
        << r.refused << " refused, initial " << r.settings.initial.count() << " ms";
  }
}

TEST(AuthBackoffTest, WaitsAreWrittenForPeople) {
  const std::vector<std::pair<milliseconds, std::string>> rows{
      {milliseconds(0), "0.0s"},
      {milliseconds(1), "0.1s"},
      {milliseconds(2500), "2.5s"},
      {milliseconds(9999), "10.0s"},
      {milliseconds(10'000), "10s"},
      {milliseconds(45'001), "46s"},
      {seconds(60), "1m00s"},
      {seconds(240), "4m00s"},
      {seconds(3599), "59m59s"},
      {seconds(3600), "1h00m"},
      {seconds(3600 + 5 * 60), "1h05m"},
      {seconds(2 * 3600 - 1), "2h00m"},
  };
  for (const auto& [wait, text] : rows) {
    EXPECT_EQ(formatWait(wait), text) << wait.count() << " ms";
  }
}

TEST(AuthBackoffTest, AccountKeyIsTheLoginNameTheHostAndWhichPasswordWithoutIt) {
  const std::string key = accountKey({"probe@example.org", "s3cret-Pa55"}, "mail.example.org");
  EXPECT_EQ(key.rfind("probe@example.org on mail.example.org #", 0), 0u) << key;
  EXPECT_EQ(key.size(), std::string("probe@example.org on mail.example.org #").size() + 16);
  EXPECT_EQ(key.find("s3cret"), std::string::npos);
  EXPECT_EQ(accountKey({"probe@example.org", "s3cret-Pa55"}, "mail.example.org"), key);
  EXPECT_NE(accountKey({"probe@example.org", "s3cret-Pa56"}, "mail.example.org"), key);
  EXPECT_NE(accountKey({"probe@example.org", "s3cret-Pa55"}, "mail.example.net"), key);
  EXPECT_NE(accountKey({"other@example.org", "s3cret-Pa55"}, "mail.example.org"), key);
}

// The table: a sequence of login outcomes, each after a given pause, and what the gate says to
// the login that asks right after.
TEST_F(AuthGateTest, SequencesOfOutcomesGiveTheExpectedHolds) {
  struct Step {
    milliseconds pause;  // before this login asks
    Outcome outcome;     // what the server answers, if the login goes
    Verdict expected;    // what the gate says to it
    double left_after;   // seconds of hold left once it is answered
  };
  struct Case {
    std::string name;
    std::vector<Step> steps;
  };
  const AuthBackoff s{seconds(60), seconds(600), 2.0};
  const auto Go = Verdict::Go;
  const auto Held = Verdict::HeldBack;
  const auto Ok = Outcome::Accepted;
  const auto No = Outcome::Refused;
  const auto Timeout = Outcome::Inconclusive;
  const std::vector<Case> cases{
      {"successes never wait", {{{}, Ok, Go, 0}, {{}, Ok, Go, 0}, {seconds(1), Ok, Go, 0}}},
      {"one refusal holds for initial",
       {{{}, No, Go, 60}, {seconds(59), No, Held, 1}, {seconds(1), Ok, Go, 0}}},
      {"refusals in a row double the hold",
       {{{}, No, Go, 60},
        {seconds(60), No, Go, 120},
        {seconds(120), No, Go, 240},
        {seconds(240), No, Go, 480},
        {seconds(480), No, Go, 600},  // 960 s, capped at 600
        {seconds(600), No, Go, 600}}},
      {"a success forgets the refusals",
       {{{}, No, Go, 60}, {seconds(60), No, Go, 120}, {seconds(120), Ok, Go, 0}, {{}, No, Go, 60}}},
      {"a timeout neither counts nor forgets",
       {{{}, No, Go, 60},
        {seconds(60), Timeout, Go, 0},
        {{}, No, Go, 120},
        {seconds(30), Timeout, Held, 90}}},
      {"held-back logins do not count as refusals",
       {{{}, No, Go, 60},
        {seconds(10), No, Held, 50},
        {seconds(10), No, Held, 40},
        {seconds(40), No, Go, 120}}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    AuthGate gate = make(s);
    for (size_t i = 0; i < c.steps.size(); ++i) {
      const Step& step = c.steps[i];
      advance(step.pause);
      EXPECT_EQ(login(gate, step.outcome), step.expected) << "step " << i;
      EXPECT_DOUBLE_EQ(gate.holdFor(kAccount, "PLAIN").seconds_left, step.left_after)
          << "step " << i;
    }
  }
}

TEST_F(AuthGateTest, HeldBackLoginSaysWhyAndUntilWhen) {
  AuthGate gate = make();
  for (int i = 1; i <= 3; ++i) {
    ASSERT_EQ(login(gate, Outcome::Refused), Verdict::Go);
    if (i < 3) {
      advance(gate.settings().delayAfter(i));  // the hold is over: the next one goes
    }
  }
  auto held = gate.request(kAccount, "PLAIN", nullptr);
  ASSERT_EQ(held->verdict(), Verdict::HeldBack);
  EXPECT_EQ(held->heldBackDetail(),
            "login held back after 3 refused logins; next attempt in 4m00s");
  AuthGate::AccountView v = gate.view(kAccount);
  EXPECT_EQ(v.hold.refused_in_a_row, 3);
  EXPECT_EQ(v.hold.seconds_left, 240);
  EXPECT_FALSE(v.known_good);
  EXPECT_EQ(v.hold.detail, held->heldBackDetail());
  held->report(Outcome::Accepted);  // a held-back login has nothing to report: ignored
  EXPECT_EQ(gate.view(kAccount).hold.refused_in_a_row, 3);

  AuthGate one = make();
  login(one, Outcome::Refused);
  EXPECT_EQ(one.request(kAccount, "PLAIN", nullptr)->heldBackDetail(),
            "login held back after 1 refused login; next attempt in 1m00s");
}

TEST_F(AuthGateTest, AccountsAreApart) {
  AuthGate gate = make();
  const std::string other = "probe@example.org on mail.example.net";
  EXPECT_EQ(login(gate, Outcome::Refused), Verdict::Go);
  EXPECT_EQ(login(gate, Outcome::Accepted, other), Verdict::Go);
  EXPECT_EQ(login(gate, Outcome::Accepted, other), Verdict::Go);
  EXPECT_EQ(login(gate, Outcome::Accepted), Verdict::HeldBack);
  std::vector<AuthGate::AccountView> all = gate.accounts();
  ASSERT_EQ(all.size(), 2u);
  EXPECT_EQ(all[0].key, other);
  EXPECT_TRUE(all[0].known_good);
  EXPECT_EQ(all[1].key, kAccount);
  EXPECT_EQ(all[1].hold.refused_in_a_row, 1);
}

// Until the account is known good, one login at a time; the others wait their turn.
struct Waiter {
  std::unique_ptr<AuthGate::Login> login;
  std::vector<Verdict> turns;
};

class AuthGateQueueTest : public AuthGateTest {
 protected:
  Waiter& ask(AuthGate& gate) {
    auto w = std::make_unique<Waiter>();
    Waiter* raw = w.get();
    w->login = gate.request(kAccount, "PLAIN", [raw](Verdict v) { raw->turns.push_back(v); });
    waiters_.push_back(std::move(w));
    return *raw;
  }
  std::vector<std::unique_ptr<Waiter>> waiters_;
};

TEST_F(AuthGateQueueTest, OneLoginInFlightUntilKnownGoodThenAllGoAtOnce) {
  AuthGate gate = make();
  Waiter& first = ask(gate);
  Waiter& second = ask(gate);
  Waiter& third = ask(gate);
  EXPECT_EQ(first.login->verdict(), Verdict::Go);
  EXPECT_EQ(second.login->verdict(), Verdict::Queued);
  EXPECT_EQ(third.login->verdict(), Verdict::Queued);
  EXPECT_EQ(gate.view(kAccount).in_flight, 1);
  EXPECT_EQ(gate.view(kAccount).queued, 2);
  EXPECT_TRUE(first.turns.empty());  // a verdict given at once is no turn callback

  first.login->report(Outcome::Accepted);
  EXPECT_EQ(second.turns, std::vector<Verdict>{Verdict::Go});
  EXPECT_EQ(third.turns, std::vector<Verdict>{Verdict::Go});
  EXPECT_EQ(gate.view(kAccount).in_flight, 2);
  EXPECT_EQ(gate.view(kAccount).queued, 0);

  // Known good: no more waiting.
  Waiter& fourth = ask(gate);
  EXPECT_EQ(fourth.login->verdict(), Verdict::Go);
  EXPECT_EQ(gate.view(kAccount).in_flight, 3);
}

TEST_F(AuthGateQueueTest, ARefusalHoldsBackEveryLoginWaitingBehindIt) {
  AuthGate gate = make();
  Waiter& first = ask(gate);
  Waiter& second = ask(gate);
  Waiter& third = ask(gate);
  first.login->report(Outcome::Refused);
  EXPECT_EQ(second.turns, std::vector<Verdict>{Verdict::HeldBack});
  EXPECT_EQ(third.turns, std::vector<Verdict>{Verdict::HeldBack});
  EXPECT_EQ(second.login->heldBackDetail(),
            "login held back after 1 refused login; next attempt in 1m00s");
  EXPECT_EQ(gate.view(kAccount).in_flight, 0);
  EXPECT_EQ(gate.view(kAccount).hold.refused_in_a_row, 1);  // one wrong password, one refusal
}

TEST_F(AuthGateQueueTest, AnInconclusiveLoginPassesTheTurnToTheNextOneOnly) {
  AuthGate gate = make();
  Waiter& first = ask(gate);
  Waiter& second = ask(gate);
  Waiter& third = ask(gate);
  first.login->report(Outcome::Inconclusive);
  EXPECT_EQ(second.turns, std::vector<Verdict>{Verdict::Go});
  EXPECT_TRUE(third.turns.empty());
  // The connection of the second breaks without a report: its end is the turn of the third.
  second.login.reset();
  EXPECT_EQ(third.turns, std::vector<Verdict>{Verdict::Go});
  EXPECT_EQ(gate.view(kAccount).in_flight, 1);
}

TEST_F(AuthGateQueueTest, AWaiterThatGivesUpLeavesTheQueue) {
  AuthGate gate = make();
  Waiter& first = ask(gate);
  Waiter& second = ask(gate);
  Waiter& third = ask(gate);
  second.login.reset();  // its session timed out while waiting
  EXPECT_EQ(gate.view(kAccount).queued, 1);
  first.login->report(Outcome::Accepted);
  EXPECT_EQ(third.turns, std::vector<Verdict>{Verdict::Go});
}

TEST_F(AuthGateQueueTest, AfterAHoldTheAccountIsOneAtATimeAgain) {
  AuthGate gate = make();
  login(gate, Outcome::Accepted);
  EXPECT_EQ(ask(gate).login->verdict(), Verdict::Go);
  EXPECT_EQ(ask(gate).login->verdict(), Verdict::Go);  // known good: in parallel
  waiters_.clear();
  login(gate, Outcome::Refused);
  advance(seconds(60));
  Waiter& first = ask(gate);
  Waiter& second = ask(gate);
  EXPECT_EQ(first.login->verdict(), Verdict::Go);
  EXPECT_EQ(second.login->verdict(), Verdict::Queued);
}

TEST_F(AuthGateQueueTest, ATurnCallbackThatReportsAtOnceIsSeenByTheNextWaiter) {
  AuthGate gate = make();
  Waiter& first = ask(gate);
  // The second refuses as soon as it may go; the third must then be held back, not sent.
  auto second_turns = std::make_shared<std::vector<Verdict>>();
  std::unique_ptr<AuthGate::Login> second;
  second = gate.request(kAccount, "PLAIN", [&second, second_turns](Verdict v) {
    second_turns->push_back(v);
    second->report(Outcome::Refused);
  });
  Waiter& third = ask(gate);
  first.login->report(Outcome::Inconclusive);
  EXPECT_EQ(*second_turns, std::vector<Verdict>{Verdict::Go});
  EXPECT_EQ(third.turns, std::vector<Verdict>{Verdict::HeldBack});
}

TEST_F(AuthGateTest, ARefusalWhileHeldBackExtendsTheHold) {
  AuthGate gate = make();
  // Known good: three logins in flight, all refused one after the other.
  login(gate, Outcome::Accepted);
  auto a = gate.request(kAccount, "PLAIN", nullptr);
  auto b = gate.request(kAccount, "PLAIN", nullptr);
  auto c = gate.request(kAccount, "PLAIN", nullptr);
  a->report(Outcome::Refused);  // the mechanism, perhaps (rule 5)
  b->report(Outcome::Refused);  // no: the password
  EXPECT_EQ(gate.view(kAccount).hold.seconds_left, 60);
  advance(seconds(30));
  EXPECT_EQ(gate.view(kAccount).hold.seconds_left, 30);
  c->report(Outcome::Refused);
  EXPECT_EQ(gate.view(kAccount).hold.seconds_left, 120);  // from now, and doubled
  EXPECT_EQ(gate.view(kAccount).hold.refused_in_a_row, 2);
}

TEST_F(AuthGateTest, AMechanismRefusedWhileThePasswordWorksIsHeldBackAlone) {
  AuthGate gate = make();
  EXPECT_EQ(login(gate, Outcome::Accepted), Verdict::Go);
  auto cram = gate.request(kAccount, "CRAM-MD5", nullptr);
  ASSERT_EQ(cram->verdict(), Verdict::Go);
  cram->report(Outcome::Refused);
  EXPECT_EQ(gate.holdFor(kAccount, "CRAM-MD5").seconds_left, 60);
  EXPECT_EQ(gate.holdFor(kAccount, "CRAM-MD5").detail,
            "CRAM-MD5 login held back after 1 refused login with it while the password works "
            "with another mechanism; next attempt in 1m00s");
  EXPECT_EQ(gate.holdFor(kAccount, "PLAIN").seconds_left, 0);
  EXPECT_EQ(gate.view(kAccount).hold.refused_in_a_row, 0);
  EXPECT_EQ(gate.view(kAccount).mechanisms.at("CRAM-MD5").refused_in_a_row, 1);
  // No longer known good: the next login goes alone, and it is accepted.
  auto plain = gate.request(kAccount, "PLAIN", nullptr);
  auto other = gate.request(kAccount, "LOGIN", nullptr);
  EXPECT_EQ(plain->verdict(), Verdict::Go);
  EXPECT_EQ(other->verdict(), Verdict::Queued);
  plain->report(Outcome::Accepted);
  EXPECT_EQ(other->verdict(), Verdict::Go);
  other->report(Outcome::Accepted);
  // CRAM-MD5 stays held back, and backs off on its own.
  EXPECT_EQ(login(gate, Outcome::Accepted, kAccount), Verdict::Go);
  EXPECT_EQ(gate.request(kAccount, "CRAM-MD5", nullptr)->verdict(), Verdict::HeldBack);
  advance(seconds(60));
  cram = gate.request(kAccount, "CRAM-MD5", nullptr);
  ASSERT_EQ(cram->verdict(), Verdict::Go);
  cram->report(Outcome::Refused);
  EXPECT_EQ(gate.holdFor(kAccount, "CRAM-MD5").seconds_left, 120);
  // Until it is accepted.
  advance(seconds(120));
  cram = gate.request(kAccount, "CRAM-MD5", nullptr);
  ASSERT_EQ(cram->verdict(), Verdict::Go);
  cram->report(Outcome::Accepted);
  EXPECT_TRUE(gate.view(kAccount).mechanisms.empty());
}

TEST_F(AuthGateTest, APasswordChangedUnderARunningProbeCostsTwoRefusals) {
  AuthGate gate = make();
  EXPECT_EQ(login(gate, Outcome::Accepted), Verdict::Go);
  EXPECT_EQ(login(gate, Outcome::Refused), Verdict::Go);  // PLAIN alone, for now
  auto next = gate.request(kAccount, "LOGIN", nullptr);
  auto after = gate.request(kAccount, "CRAM-MD5", nullptr);
  ASSERT_EQ(next->verdict(), Verdict::Go);
  ASSERT_EQ(after->verdict(), Verdict::Queued);
  next->report(Outcome::Refused);  // another mechanism refused too: the password
  EXPECT_EQ(after->verdict(), Verdict::HeldBack);
  EXPECT_EQ(after->heldBackDetail(),
            "login held back after 1 refused login; next attempt in 1m00s");
  for (const char* m : {"PLAIN", "LOGIN", "CRAM-MD5", "LOGIN-COMMAND"}) {
    EXPECT_EQ(gate.request(kAccount, m, nullptr)->verdict(), Verdict::HeldBack) << m;
  }
}

TEST_F(AuthGateTest, ASettingsChangeAppliesToTheHoldInProgress) {
  AuthGate gate = make();
  login(gate, Outcome::Refused);
  advance(seconds(10));
  EXPECT_EQ(gate.view(kAccount).hold.seconds_left, 50);
  gate.setSettings({seconds(20), seconds(40), 2.0});
  EXPECT_EQ(gate.view(kAccount).hold.seconds_left, 10);
  gate.setSettings({seconds(5), seconds(40), 2.0});
  EXPECT_EQ(gate.view(kAccount).hold.seconds_left, 0);
  EXPECT_EQ(login(gate, Outcome::Accepted), Verdict::Go);
}

TEST_F(AuthGateTest, RetainForgetsAccountsThatNoLongerExist) {
  AuthGate gate = make();
  const std::string gone = "old@example.org on mail.example.org";
  login(gate, Outcome::Refused);
  login(gate, Outcome::Refused, gone);
  gate.retain({kAccount});
  EXPECT_EQ(gate.view(kAccount).hold.refused_in_a_row, 1);
  EXPECT_EQ(gate.view(gone).hold.refused_in_a_row, 0);
  EXPECT_EQ(gate.accounts().size(), 1u);
  EXPECT_EQ(login(gate, Outcome::Accepted, gone), Verdict::Go);
}

TEST_F(AuthGateTest, ALoginMayOutliveItsGate) {
  std::unique_ptr<AuthGate::Login> in_flight, queued;
  {
    AuthGate gate = make();
    in_flight = gate.request(kAccount, "PLAIN", nullptr);
    queued = gate.request(kAccount, "PLAIN", [](Verdict) {});
  }
  in_flight->report(Outcome::Accepted);
  EXPECT_EQ(queued->verdict(), Verdict::Go);
}

}  // namespace
}  // namespace mailprobe
