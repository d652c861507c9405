#pragma once
// Probes one endpoint (host, port, security mode) on every address the host resolves to.
//
// Per address, in sequence: a first connection that walks the whole conversation (greeting,
// capabilities, STARTTLS, the plaintext-login check, a login with the first usable mechanism,
// optional EXAMINE, logout); then, if that login happened, one short connection per other
// advertised mechanism, since a session that has logged in cannot log in again. The addresses
// are probed in parallel. Time belongs to the caller's scheduler, except for the deadlines: each
// phase has its own, and the whole endpoint has `timeouts.total`.
//
// Lifetime: start() returns an object owned by the loop. `done` is called exactly once, from a
// libuv callback, after which the object is gone; cancel() instead ends it without `done`.

#include <uv.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "probes/address_lookup.h"
#include "probes/auth_gate.h"
#include "probes/connection.h"
#include "probes/probe_spec.h"
#include "probes/running_probe.h"
#include "probes/types.h"

namespace mailprobe {

class TlsContext;
class TlsContextCache;

class EndpointProbe final : public RunningProbe {
 public:
  using Done = std::function<void(std::vector<ProbeResult>)>;

  // The TLS context for spec.tls comes from `contexts` (shared with every probe with the same
  // options); null: one is built for this probe alone. A failure to load the CA file is
  // reported as the result's detail with reason tls_handshake_failed.
  // Every login asks `gate` first (the daemon's, or a `check` run's: it must outlive the
  // probe); null: a gate of this probe's own, with the default back-off, so that even alone a
  // refused login is not tried again with the next mechanism or address.
  static EndpointProbe* start(uv_loop_t* loop, EndpointSpec spec, Credentials credentials,
                              TlsContextCache* contexts, Done done, AuthGate* gate = nullptr);
  void cancel() override;

 private:
  struct AddressRun;

  EndpointProbe(uv_loop_t* loop, EndpointSpec spec, Credentials credentials,
                TlsContextCache* contexts, Done done, AuthGate* gate);
  ~EndpointProbe();
  void resolve();
  void startAddresses(std::vector<sockaddr_storage> addresses);
  void runNext(AddressRun& run);
  void onConnectionDone(AddressRun& run, ConnectionResult result);
  void onDeadline(AddressRun& run);
  void finishRun(AddressRun& run);
  void failAll(FailureReason reason, Phase phase, std::string detail);
  void maybeComplete();
  void closeHandles();

  uv_loop_t* loop_;
  EndpointSpec spec_;
  Credentials credentials_;
  TlsContextCache* contexts_;
  std::shared_ptr<TlsContext> tls_;
  Done done_;
  std::unique_ptr<AuthGate> own_gate_;  // when the caller gave none
  AuthGate* gate_;
  std::string account_;  // the gate's key for credentials_ on spec_.host
  // Closed last with the deadlines: completion always comes from a close callback, even when
  // the probe fails before any address is known.
  uv_timer_t anchor_;
  AddressLookup* lookup_ = nullptr;
  uint64_t started_ns_ = 0;
  int64_t started_at_ = 0;
  double resolve_seconds_ = 0;
  std::vector<std::unique_ptr<AddressRun>> runs_;
  std::vector<ProbeResult> results_;
  int open_handles_ = 0;
  bool cancelled_ = false;
};

// Folds the connections made to one address into the endpoint's result (pure; tested alone).
ProbeResult mergeConnections(const EndpointSpec& spec, const std::string& address,
                             double resolve_seconds, const std::vector<ConnectionResult>& runs);

// Mechanisms the first connection may use, in the order the probe prefers them.
std::vector<std::string> candidateMechanisms(const EndpointSpec& spec);

}  // namespace mailprobe
