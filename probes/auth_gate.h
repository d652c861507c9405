#pragma once
// The login gate: the probe never locks out its own account (PRODUCT.md, "Not negotiable").
//
// Every login with the probe account asks the gate before credentials leave: every protocol,
// every mechanism, endpoint probes and the signed-in conversations of relay checks alike. One
// gate lives as long as the daemon (reloads keep it) or one `check` run. It is keyed by account
// (accountKey): the login name as sent, the host it goes to, and which password. Every endpoint
// of a host (IMAP, and SMTP through Dovecot SASL, on every port and every address of a pool)
// checks the same password against the same directory, and a lockout is per account, so they
// share one state.
//
// The rules, per account:
//   1. Refused (the server said the credentials are wrong: auth_failed): logins are held back
//      until that moment + min(initial x factor^(n-1), max), n being the refused logins in a
//      row. A login refused while held back (it was already in flight) extends the hold.
//   2. Accepted: the account is known good and its refusals are forgotten.
//   3. Anything else (timeout, closed connection, protocol error, 421) says nothing about the
//      password: it neither counts nor clears anything.
//   4. Until the account is known good (from the start, and again after a refusal), at most one
//      login with it is in flight. Others queue behind it, inside their sessions' auth phase and
//      under its deadline: when the one in flight is accepted they all go; when it is refused
//      they are all held back; otherwise the next one goes. So a wrong password costs one
//      refused login, not one per endpoint, and a right one costs no endpoint a spurious red.
//   5. A refusal that comes while the account is known good (another mechanism was accepted
//      since the last refusal) may be the mechanism's fault, not the password's (a server that
//      advertises CRAM-MD5 without the passwords for it): it holds back that mechanism alone,
//      by the same rule 1, and the account is no longer known good, so the next login goes
//      alone. If that one is refused too, the password is wrong: rule 1 for the account. A
//      broken mechanism thus never paints the platform's other logins with auth_backoff, and a
//      password changed under a running daemon costs two refused logins.
// A held-back login sends nothing: its session records auth_backoff with a detail a person can
// act on ("login held back after 3 refused logins; next attempt in 4m00s").
//
// The gate is sans-I/O: time comes from the clock it is given (a fake one in tests), it arms no
// timer (a hold simply ends for the first login that asks after it), and a queued login's turn
// is a callback made from inside the report of the login before it. Single-threaded: all of it
// runs on the loop of the probes that use it.

#include <chrono>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "probes/probe_spec.h"

namespace mailprobe {

// How long logins wait after refusals. Defaults: 1 min, doubling, at most 1 h.
struct AuthBackoff {
  std::chrono::milliseconds initial{60'000};
  std::chrono::milliseconds max{3'600'000};
  double factor = 2.0;

  // The hold after `refused` (>= 1) refused logins in a row.
  std::chrono::milliseconds delayAfter(int refused) const;
};

// The gate's key for the probe account logging in to `host` (the configured name): "user on
// host #fingerprint", the fingerprint telling passwords apart without showing them (a salted
// digest). The same user with two passwords is two keys: the wrong one backs off on its own,
// and the right one's successes do not keep resetting it (two [[host]] tables of one pool given
// different passwords); a reload that fixes the password starts a fresh state. Not meant for
// labels or pages: metrics name endpoints, not accounts.
std::string accountKey(const Credentials& credentials, const std::string& host);

// "4m00s", "1h05m", "45s", "2.5s": a wait, for people.
std::string formatWait(std::chrono::milliseconds wait);

class AuthGate {
 public:
  using Clock = std::function<std::chrono::steady_clock::time_point()>;

  // A null clock is std::chrono::steady_clock.
  explicit AuthGate(AuthBackoff settings = {}, Clock clock = nullptr);
  ~AuthGate();
  AuthGate(const AuthGate&) = delete;
  AuthGate& operator=(const AuthGate&) = delete;

  enum class Verdict {
    Go,        // send the credentials now, then report the outcome
    Queued,    // another login with the account is in flight: wait for the turn callback
    HeldBack,  // send nothing: the account is backing off (heldBackDetail says until when)
  };
  enum class Outcome { Accepted, Refused, Inconclusive };

  struct State;

  // One login's place at the gate, owned by the session that logs in. Destroying it leaves the
  // queue, or, for a login in flight that reported nothing (the connection broke), counts as
  // Inconclusive. It may outlive the gate.
  class Login {
   public:
    ~Login();
    Login(const Login&) = delete;
    Login& operator=(const Login&) = delete;

    Verdict verdict() const { return verdict_; }
    // Why the login is held back (Verdict::HeldBack); "" otherwise.
    const std::string& heldBackDetail() const { return detail_; }
    // After Go, once: what the server answered. Later calls are ignored.
    void report(Outcome outcome);

   private:
    friend class AuthGate;
    Login(std::shared_ptr<State> state, std::string mechanism, std::function<void(Verdict)> on_turn)
        : state_(std::move(state)),
          mechanism_(std::move(mechanism)),
          on_turn_(std::move(on_turn)) {}
    std::shared_ptr<State> state_;
    std::string mechanism_;
    std::function<void(Verdict)> on_turn_;
    Verdict verdict_ = Verdict::Queued;
    std::string detail_;
    bool reported_ = false;
  };

  // Asks to log in with `account` and `mechanism`. The verdict is decided now
  // (Login::verdict); when it is Queued, `on_turn` is called later, once, with Go or HeldBack
  // (never from inside request).
  std::unique_ptr<Login> request(const std::string& account, const std::string& mechanism,
                                 std::function<void(Verdict)> on_turn);

  // A hold as it stands now.
  struct Hold {
    int refused_in_a_row = 0;
    double seconds_left = 0;  // until logins may go again; 0 when they may go now
    std::string detail;       // what a held-back login says now; "" when not held back
  };
  // What a login with `mechanism` would meet now: the longer of the account's hold and the
  // mechanism's (unknown accounts are not held).
  Hold holdFor(const std::string& account, const std::string& mechanism) const;

  // What the gate knows of one account, for metrics, pages and `check`.
  struct AccountView {
    std::string key;
    Hold hold;  // the account's own (rule 1)
    bool known_good = false;
    int in_flight = 0;
    int queued = 0;
    std::map<std::string, Hold> mechanisms;  // mechanisms held back alone (rule 5), by name
  };
  AccountView view(const std::string& account) const;  // an unknown account: all zero
  std::vector<AccountView> accounts() const;           // known accounts, by key

  // New settings apply at once, to the holds in progress too (a hold is computed from the time
  // of the last refusal).
  void setSettings(AuthBackoff settings);
  const AuthBackoff& settings() const;
  // A reload: forget every account not in `keep` (one whose password changed is another key).
  void retain(const std::set<std::string>& keep);

 private:
  std::shared_ptr<State> stateOf(const std::string& account);

  struct Shared;
  std::shared_ptr<Shared> shared_;
  std::map<std::string, std::shared_ptr<State>> accounts_;
};

}  // namespace mailprobe
