#pragma once
// Checks the relay rules of one SMTP endpoint (probes/relay.h): for every address the host
// resolves to, every vantage of the address's family, and every auth state, one conversation
// (SmtpSession with a RelayEnvelope: greeting, EHLO, STARTTLS, the login when signed in, MAIL
// FROM, RCPT TO the local and the outside recipient, RSET, QUIT; never DATA) bound to the
// vantage's source address. Each conversation decides two cells.
//
// Conversations run one after another: a relay check is a handful of short sessions, and one at
// a time keeps the load on the server and the number of logins small. A login that fails is not
// tried again in the same run: the later signed-in cells say auth_backoff, so the probe account
// cannot be locked out. Every login asks the account's gate first (AuthGate); a signed-in
// conversation whose login the gate holds back is not made: its cells say auth_backoff. Each
// conversation has the endpoint's phase deadlines and, as a whole, `timeouts.total`. Time between
// runs belongs to the caller's scheduler.
//
// Lifetime: start() returns an object owned by the loop. `done` is called exactly once, from a
// libuv close callback, after which the object is gone; cancel() instead ends it without `done`.

#include <uv.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "probes/address_lookup.h"
#include "probes/auth_gate.h"
#include "probes/connection.h"
#include "probes/relay.h"
#include "probes/running_probe.h"

namespace mailprobe {

class TlsContext;
class TlsContextCache;

class RelayProbe final : public RunningProbe {
 public:
  using Done = std::function<void(std::vector<RelayCell>)>;

  // The TLS context for spec.endpoint.tls comes from `contexts`; null: one of its own. The
  // signed-in logins ask `gate` first (see EndpointProbe::start); null: a gate of its own.
  static RelayProbe* start(uv_loop_t* loop, RelaySpec spec, Credentials credentials,
                           TlsContextCache* contexts, Done done, AuthGate* gate = nullptr);
  void cancel() override;

 private:
  struct Conversation {
    std::string address;  // text, for the cells
    sockaddr_storage target{};
    size_t vantage = 0;
    RelayAuth auth = RelayAuth::None;
  };

  RelayProbe(uv_loop_t* loop, RelaySpec spec, Credentials credentials, TlsContextCache* contexts,
             Done done, AuthGate* gate);
  ~RelayProbe() = default;
  void begin();
  void onAddresses(AddressLookup::Result result);
  void runNext();
  void onConversationDone(const Conversation& c, ConnectionResult result);
  void notRun(const std::string& address, size_t vantage, RelayAuth auth, FailureReason reason,
              Phase phase, const std::string& detail);
  void complete();

  uv_loop_t* loop_;
  RelaySpec spec_;
  Credentials credentials_;
  TlsContextCache* contexts_;
  std::shared_ptr<TlsContext> tls_;
  Done done_;
  std::unique_ptr<AuthGate> own_gate_;  // when the caller gave none
  AuthGate* gate_;
  std::string account_;  // the gate's key for credentials_ on the endpoint's host
  // spec_.endpoint with each vantage's source address; connection plans point into it.
  std::vector<EndpointSpec> vantage_specs_;
  std::vector<Conversation> conversations_;
  size_t next_ = 0;
  AddressLookup* lookup_ = nullptr;
  Connection* current_ = nullptr;
  uv_timer_t deadline_;  // the running conversation's; closed last, it carries the completion
  uint64_t conversation_started_ns_ = 0;
  int64_t started_at_ = 0;
  std::string login_failure_;  // why the first failed login failed; "" while none has
  std::vector<RelayCell> cells_;
  enum class State { Starting, Running, Closing } state_ = State::Starting;
};

}  // namespace mailprobe
