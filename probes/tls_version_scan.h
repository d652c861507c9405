#pragma once
// Which TLS protocol versions an endpoint accepts, address by address: one handshake per version
// (TLS 1.0, 1.1, 1.2, 1.3), each with min = max = that version, so that a client profile can be
// judged on the versions it speaks ("legacy-tls10" against a server whose minimum was raised).
//
// Each handshake is a whole EndpointProbe run with auth = none: for STARTTLS the conversation
// goes through the greeting, the capabilities and STARTTLS first, exactly as a client's does, and
// no password is ever sent. The daemon scans the versions one after the other (the addresses of
// one version in parallel), so that a scan never opens more than one connection per address at a
// time; a one-shot `check`, where a person waits, scans them all at once (ScanPace), so that the
// scan takes one handshake's time, not four, and an endpoint that times out costs one deadline.
// TLS 1.0 and 1.1 get OpenSSL security level 0 (TlsContext), the way an old client offers them.
//
// Lifetime: like EndpointProbe. start() returns an object owned by the loop; `done` is called
// exactly once, from a libuv callback, after which the object is gone; cancel() instead ends it
// without `done`.

#include <uv.h>

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "probes/probe_spec.h"
#include "probes/running_probe.h"
#include "probes/types.h"

namespace mailprobe {

class EndpointProbe;
class TlsContextCache;

// The versions a scan tries, lowest first: TLS1_VERSION, TLS1_1_VERSION, TLS1_2_VERSION,
// TLS1_3_VERSION.
const std::vector<int>& scannedTlsVersions();
// "TLSv1.0" ... "TLSv1.3" (OpenSSL's spelling, as in TlsFacts::version); "" for anything else.
std::string_view tlsVersionName(int version);
// The inverse of tlsVersionName; nullopt for anything else.
std::optional<int> parseTlsVersion(std::string_view name);

// What the scan learnt of one address of the endpoint.
struct TlsVersionResult {
  std::string host;     // the configured name
  std::string address;  // the address scanned; "" when the name did not resolve
  uint16_t port = 0;
  Service service = Service::Imap;
  Security security = Security::None;
  // version -> whether a handshake at exactly that version completed (the certificate may still
  // have failed verification: a version is accepted when the handshake completes). A version is
  // refused when the server rejects it (protocol_version or handshake_failure alert, or it drops
  // the connection in the handshake). A version missing from the map is unknown: the scan did
  // not get as far as the handshake (see `error`).
  std::map<int, bool> accepted;
  int64_t scanned_at = 0;  // unix seconds, when the scan ended
  // Why some version is unknown (the first such failure: connect_refused, starttls_not_offered,
  // timeout...); None when every version is known.
  FailureReason error = FailureReason::None;
  std::string detail;  // for people and logs

  // Whether the endpoint accepts at least one version in [min, max] (0 = no bound): true if
  // one is accepted, false if all of them are known and refused, nullopt otherwise.
  std::optional<bool> acceptsAnyOf(int min_version, int max_version) const;
  // The accepted versions in order, e.g. {"TLSv1.2", "TLSv1.3"}.
  std::vector<std::string> acceptedNames() const;
};

// Folds one version's probe results (one per address) into the per-address results (pure;
// tested alone). Addresses are kept in the order they first appear.
void recordVersion(int version, const std::vector<ProbeResult>& results,
                   std::vector<TlsVersionResult>& into);

// One version after the other (at most one connection per address), or every version at once
// (four per address). The results are the same.
enum class ScanPace { OneVersionAtATime, AllVersionsAtOnce };

class TlsVersionScan final : public RunningProbe {
 public:
  using Done = std::function<void(std::vector<TlsVersionResult>)>;

  // `base` is the endpoint as the daemon probes it (host, addresses, port, service, security,
  // source address, family, CA file, timeouts); its auth, mechanisms, examine and TLS version
  // settings are replaced. Precondition: base.security is StartTls or Tls. Each version's
  // context comes from `contexts` (null: built for each handshake).
  static TlsVersionScan* start(uv_loop_t* loop, EndpointSpec base, Done done,
                               ScanPace pace = ScanPace::OneVersionAtATime,
                               TlsContextCache* contexts = nullptr);
  void cancel() override;

 private:
  TlsVersionScan(uv_loop_t* loop, EndpointSpec base, Done done, TlsContextCache* contexts);
  ~TlsVersionScan() = default;
  void startVersion(size_t index);
  void onVersionDone(size_t index, std::vector<ProbeResult> results);

  uv_loop_t* loop_;
  EndpointSpec base_;
  Done done_;
  TlsContextCache* contexts_;
  ScanPace pace_ = ScanPace::OneVersionAtATime;
  // Indexed like scannedTlsVersions(): the probe running for that version (null when none), and
  // its results once done. Folded in version order at the end, whatever order they came in.
  std::vector<EndpointProbe*> running_;
  std::vector<std::vector<ProbeResult>> per_version_;
  size_t pending_ = 0;  // versions started and not done yet, or not started yet
};

}  // namespace mailprobe
