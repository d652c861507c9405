#include "probes/tls_version_scan.h"

#include <openssl/tls1.h>

#include <algorithm>
#include <cassert>
#include <ctime>

#include "probes/endpoint_probe.h"

namespace mailprobe {
namespace {

// How a handshake at one version ended, seen from the probe result of one address.
enum class Outcome { Accepted, Refused, Unknown };

Outcome outcomeOf(const ProbeResult& r) {
  if (r.tls.has_value()) {
    return Outcome::Accepted;
  }
  // No address: the probe failed before connecting (name, CA file); nothing was asked.
  if (r.address.empty() || r.phase != Phase::TlsHandshake) {
    return Outcome::Unknown;
  }
  switch (r.reason) {
    case FailureReason::TlsVersionUnsupported:  // protocol_version alert, either side
    case FailureReason::TlsHandshakeFailed:     // handshake_failure: nothing usable at this version
    case FailureReason::ConnectionClosed:       // servers that just hang up on an old ClientHello
      return Outcome::Refused;
    default:
      return Outcome::Unknown;  // timeout, plaintext after STARTTLS...
  }
}

}  // namespace

const std::vector<int>& scannedTlsVersions() {
  static const std::vector<int> versions{TLS1_VERSION, TLS1_1_VERSION, TLS1_2_VERSION,
                                         TLS1_3_VERSION};
  return versions;
}

std::string_view tlsVersionName(int version) {
  switch (version) {
    case TLS1_VERSION:
      return "TLSv1.0";
    case TLS1_1_VERSION:
      return "TLSv1.1";
    case TLS1_2_VERSION:
      return "TLSv1.2";
    case TLS1_3_VERSION:
      return "TLSv1.3";
    default:
      return "";
  }
}

std::optional<int> parseTlsVersion(std::string_view name) {
  // OpenSSL's SSL_get_version() says "TLSv1" for TLS 1.0.
  if (name == "TLSv1") {
    return TLS1_VERSION;
  }
  for (int v : scannedTlsVersions()) {
    if (tlsVersionName(v) == name) {
      return v;
    }
  }
  return std::nullopt;
}

std::optional<bool> TlsVersionResult::acceptsAnyOf(int min_version, int max_version) const {
  bool all_known = true;
  for (int v : scannedTlsVersions()) {
    if ((min_version != 0 && v < min_version) || (max_version != 0 && v > max_version)) {
      continue;
    }
    auto it = accepted.find(v);
    if (it == accepted.end()) {
      all_known = false;
    } else if (it->second) {
      return true;
    }
  }
  return all_known ? std::optional<bool>(false) : std::nullopt;
}

std::vector<std::string> TlsVersionResult::acceptedNames() const {
  std::vector<std::string> out;
  for (const auto& [version, ok] : accepted) {
    if (ok) {
      out.emplace_back(tlsVersionName(version));
    }
  }
  return out;
}

void recordVersion(int version, const std::vector<ProbeResult>& results,
                   std::vector<TlsVersionResult>& into) {
  for (const ProbeResult& r : results) {
    auto it = std::find_if(into.begin(), into.end(),
                           [&](const TlsVersionResult& t) { return t.address == r.address; });
    if (it == into.end()) {
      TlsVersionResult fresh;
      fresh.host = r.host;
      fresh.address = r.address;
      fresh.port = r.port;
      fresh.service = r.service;
      fresh.security = r.security;
      into.push_back(std::move(fresh));
      it = std::prev(into.end());
    }
    switch (outcomeOf(r)) {
      case Outcome::Accepted:
        it->accepted[version] = true;
        break;
      case Outcome::Refused:
        it->accepted[version] = false;
        break;
      case Outcome::Unknown:
        if (it->error == FailureReason::None) {
          // A STARTTLS endpoint where TLS is optional (SMTP 25) goes on in plaintext when
          // STARTTLS is missing: no failure, and no handshake either.
          it->error = r.reason != FailureReason::None ? r.reason
                      : r.security == Security::StartTls && !r.starttls_offered
                          ? FailureReason::StartTlsNotOffered
                          : FailureReason::TlsHandshakeFailed;
          it->detail = std::string(tlsVersionName(version)) + ": " +
                       (r.detail.empty() ? std::string(toString(it->error)) : r.detail);
        }
        break;
    }
  }
}

TlsVersionScan* TlsVersionScan::start(uv_loop_t* loop, EndpointSpec base, Done done, ScanPace pace,
                                      TlsContextCache* contexts) {
  assert(base.security != Security::None);
  auto* scan = new TlsVersionScan(loop, std::move(base), std::move(done), contexts);
  scan->pace_ = pace;
  if (pace == ScanPace::AllVersionsAtOnce) {
    // EndpointProbe never calls back from start(): no version can finish inside this loop.
    for (size_t i = 0; i < scannedTlsVersions().size(); ++i) {
      scan->startVersion(i);
    }
  } else {
    scan->startVersion(0);
  }
  return scan;
}

TlsVersionScan::TlsVersionScan(uv_loop_t* loop, EndpointSpec base, Done done,
                               TlsContextCache* contexts)
    : loop_(loop),
      base_(std::move(base)),
      done_(std::move(done)),
      contexts_(contexts),
      running_(scannedTlsVersions().size(), nullptr),
      per_version_(scannedTlsVersions().size()),
      pending_(scannedTlsVersions().size()) {
  // A handshake and a bare logout: nothing of the account is needed or sent.
  base_.auth = AuthPolicy::Skip;
  base_.mechanisms.clear();
  base_.examine_inbox = false;
}

void TlsVersionScan::startVersion(size_t index) {
  int version = scannedTlsVersions()[index];
  EndpointSpec spec = base_;
  spec.tls.min_version = version;
  spec.tls.max_version = version;
  // Each version has its own context (versions and security level differ), shared by every
  // scan of the same CA file.
  running_[index] = EndpointProbe::start(loop_, std::move(spec), Credentials{}, contexts_,
                                         [this, index](std::vector<ProbeResult> results) {
                                           onVersionDone(index, std::move(results));
                                         });
}

void TlsVersionScan::onVersionDone(size_t index, std::vector<ProbeResult> results) {
  // EndpointProbe has deleted itself before calling us: starting the next one, or deleting
  // this object, does not run inside a live object's stack.
  running_[index] = nullptr;
  per_version_[index] = std::move(results);
  --pending_;
  if (pace_ == ScanPace::OneVersionAtATime && index + 1 < scannedTlsVersions().size()) {
    startVersion(index + 1);
    return;
  }
  if (pending_ > 0) {
    return;
  }
  std::vector<TlsVersionResult> out;
  for (size_t i = 0; i < scannedTlsVersions().size(); ++i) {
    recordVersion(scannedTlsVersions()[i], per_version_[i], out);
  }
  int64_t now = static_cast<int64_t>(::time(nullptr));
  for (auto& r : out) {
    r.scanned_at = now;
  }
  Done done = std::move(done_);
  delete this;
  done(std::move(out));
}

void TlsVersionScan::cancel() {
  for (EndpointProbe*& probe : running_) {
    if (probe != nullptr) {
      probe->cancel();
      probe = nullptr;
    }
  }
  delete this;
}

}  // namespace mailprobe
