#include "probes/auth_gate.h"

#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>

namespace mailprobe {

using std::chrono::milliseconds;
using TimePoint = std::chrono::steady_clock::time_point;

milliseconds AuthBackoff::delayAfter(int refused) const {
  double ms = static_cast<double>(initial.count());
  for (int i = 1; i < refused && ms < static_cast<double>(max.count()); ++i) {
    ms *= factor;
  }
  return std::min(max, milliseconds{static_cast<int64_t>(std::llround(ms))});
}

std::string accountKey(const Credentials& credentials, const std::string& host) {
  // Which password, without the password: SHA-256 of it under a salt drawn once per process,
  // 64 bits of it in hex, so that nothing that could show a key ever shows a guessable digest.
  static const std::array<unsigned char, 16> salt = [] {
    std::array<unsigned char, 16> s{};
    RAND_bytes(s.data(), static_cast<int>(s.size()));
    return s;
  }();
  unsigned char digest[SHA256_DIGEST_LENGTH];
  unsigned int length = 0;
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  EVP_DigestInit_ex(ctx, EVP_sha256(), nullptr);
  EVP_DigestUpdate(ctx, salt.data(), salt.size());
  EVP_DigestUpdate(ctx, credentials.password.data(), credentials.password.size());
  EVP_DigestFinal_ex(ctx, digest, &length);
  EVP_MD_CTX_free(ctx);
  char hex[17];
  for (int i = 0; i < 8; ++i) {
    std::snprintf(hex + 2 * i, 3, "%02x", digest[i]);
  }
  return credentials.user + " on " + host + " #" + hex;
}

std::string formatWait(milliseconds wait) {
  char buf[32];
  int64_t ms = std::max<int64_t>(0, wait.count());
  if (ms < 10'000) {
    // Tenths, rounded up: a wait that is not over never reads "0.0s".
    std::snprintf(buf, sizeof buf, "%.1fs", static_cast<double>((ms + 99) / 100) / 10.0);
    return buf;
  }
  int64_t s = (ms + 999) / 1000;
  if (s < 60) {
    std::snprintf(buf, sizeof buf, "%llds", static_cast<long long>(s));
  } else if (s < 3600) {
    std::snprintf(buf, sizeof buf, "%lldm%02llds", static_cast<long long>(s / 60),
                  static_cast<long long>(s % 60));
  } else {
    int64_t h = s / 3600;
    int64_t m = (s % 3600 + 59) / 60;
    if (m == 60) {
      ++h;
      m = 0;
    }
    std::snprintf(buf, sizeof buf, "%lldh%02lldm", static_cast<long long>(h),
                  static_cast<long long>(m));
  }
  return buf;
}

struct AuthGate::Shared {
  AuthBackoff settings;
  Clock clock;
};

namespace {

// Refusals in a row of the account, or of one mechanism, and the hold they make.
struct Refusals {
  int count = 0;
  TimePoint last{};

  void add(TimePoint now) {
    ++count;
    last = now;
  }
  milliseconds left(const AuthBackoff& settings, TimePoint now) const {
    if (count == 0) {
      return milliseconds{0};
    }
    TimePoint until = last + settings.delayAfter(count);
    return until <= now ? milliseconds{0} : std::chrono::ceil<milliseconds>(until - now);
  }
};

std::string refusedLogins(int count) {
  return std::to_string(count) + " refused login" + (count == 1 ? "" : "s");
}

}  // namespace

// One account. Shared by the gate and the logins that asked for it, so a login can outlive a
// reload that forgot its account, or the gate itself.
struct AuthGate::State {
  std::shared_ptr<Shared> shared;
  Refusals account;                            // rule 1
  std::map<std::string, Refusals> mechanisms;  // rule 5
  bool known_good = false;
  int in_flight = 0;
  std::deque<Login*> queue;  // oldest first

  Hold accountHold(TimePoint now) const {
    Hold h;
    h.refused_in_a_row = account.count;
    milliseconds left = account.left(shared->settings, now);
    h.seconds_left = static_cast<double>(left.count()) / 1000.0;
    if (left.count() > 0) {
      h.detail = "login held back after " + refusedLogins(account.count) + "; next attempt in " +
                 formatWait(left);
    }
    return h;
  }

  Hold mechanismHold(const std::string& mechanism, TimePoint now) const {
    Hold h;
    auto it = mechanisms.find(mechanism);
    if (it == mechanisms.end()) {
      return h;
    }
    h.refused_in_a_row = it->second.count;
    milliseconds left = it->second.left(shared->settings, now);
    h.seconds_left = static_cast<double>(left.count()) / 1000.0;
    if (left.count() > 0) {
      h.detail = mechanism + " login held back after " + refusedLogins(it->second.count) +
                 " with it while the password works with another mechanism; next attempt in " +
                 formatWait(left);
    }
    return h;
  }

  Hold holdFor(const std::string& mechanism, TimePoint now) const {
    Hold a = accountHold(now);
    Hold m = mechanismHold(mechanism, now);
    return m.seconds_left > a.seconds_left ? m : a;
  }

  // Decides for one login by the current state. Returns false when it must queue.
  bool decide(Login& login, TimePoint now) {
    Hold h = holdFor(login.mechanism_, now);
    if (h.seconds_left > 0) {
      login.verdict_ = Verdict::HeldBack;
      login.detail_ = std::move(h.detail);
      return true;
    }
    if (known_good || in_flight == 0) {
      login.verdict_ = Verdict::Go;
      ++in_flight;
      return true;
    }
    return false;
  }

  // Gives queued logins their turn, as far as the state allows. A turn callback may report at
  // once and change the state: it is read again for every login.
  void drain() {
    while (!queue.empty()) {
      Login* next = queue.front();
      if (!decide(*next, shared->clock())) {
        return;
      }
      queue.pop_front();
      if (next->on_turn_) {
        next->on_turn_(next->verdict_);
      }
    }
  }

  void finish(const std::string& mechanism, Outcome outcome) {
    --in_flight;
    switch (outcome) {
      case Outcome::Accepted:
        known_good = true;
        account = {};
        mechanisms.erase(mechanism);
        break;
      case Outcome::Refused:
        (known_good ? mechanisms[mechanism] : account).add(shared->clock());
        known_good = false;
        break;
      case Outcome::Inconclusive:
        break;
    }
    drain();
  }
};

AuthGate::Login::~Login() {
  if (verdict_ == Verdict::Queued) {
    auto& q = state_->queue;
    q.erase(std::remove(q.begin(), q.end(), this), q.end());
  } else if (verdict_ == Verdict::Go && !reported_) {
    reported_ = true;
    state_->finish(mechanism_, Outcome::Inconclusive);
  }
}

void AuthGate::Login::report(Outcome outcome) {
  if (verdict_ != Verdict::Go || reported_) {
    return;
  }
  reported_ = true;
  state_->finish(mechanism_, outcome);
}

AuthGate::AuthGate(AuthBackoff settings, Clock clock) : shared_(std::make_shared<Shared>()) {
  shared_->settings = settings;
  shared_->clock = clock ? std::move(clock) : [] { return std::chrono::steady_clock::now(); };
}

AuthGate::~AuthGate() = default;

std::shared_ptr<AuthGate::State> AuthGate::stateOf(const std::string& account) {
  std::shared_ptr<State>& s = accounts_[account];
  if (!s) {
    s = std::make_shared<State>();
    s->shared = shared_;
  }
  return s;
}

std::unique_ptr<AuthGate::Login> AuthGate::request(const std::string& account,
                                                   const std::string& mechanism,
                                                   std::function<void(Verdict)> on_turn) {
  std::shared_ptr<State> state = stateOf(account);
  std::unique_ptr<Login> login(new Login(state, mechanism, std::move(on_turn)));
  // Behind a queue, wait in it even if the state would let this one go: first come, first go.
  if (!state->queue.empty() || !state->decide(*login, shared_->clock())) {
    login->verdict_ = Verdict::Queued;
    state->queue.push_back(login.get());
  }
  return login;
}

AuthGate::Hold AuthGate::holdFor(const std::string& account, const std::string& mechanism) const {
  auto it = accounts_.find(account);
  if (it == accounts_.end()) {
    return {};
  }
  return it->second->holdFor(mechanism, shared_->clock());
}

AuthGate::AccountView AuthGate::view(const std::string& account) const {
  AccountView v;
  v.key = account;
  auto it = accounts_.find(account);
  if (it == accounts_.end()) {
    return v;
  }
  const State& s = *it->second;
  TimePoint now = shared_->clock();
  v.hold = s.accountHold(now);
  v.known_good = s.known_good;
  v.in_flight = s.in_flight;
  v.queued = static_cast<int>(s.queue.size());
  for (const auto& [mechanism, refusals] : s.mechanisms) {
    v.mechanisms[mechanism] = s.mechanismHold(mechanism, now);
  }
  return v;
}

std::vector<AuthGate::AccountView> AuthGate::accounts() const {
  std::vector<AccountView> out;
  for (const auto& [key, state] : accounts_) {
    out.push_back(view(key));
  }
  return out;
}

void AuthGate::setSettings(AuthBackoff settings) {
  shared_->settings = settings;
}

const AuthBackoff& AuthGate::settings() const {
  return shared_->settings;
}

void AuthGate::retain(const std::set<std::string>& keep) {
  for (auto it = accounts_.begin(); it != accounts_.end();) {
    it = keep.count(it->first) != 0 ? std::next(it) : accounts_.erase(it);
  }
}

}  // namespace mailprobe
