#pragma once
// The addresses to probe for one EndpointSpec: its static `addresses`, its host when that is an
// address literal, or its host name resolved on libuv's thread pool (uv_getaddrinfo, restricted
// to `family`), deduplicated, within `timeouts.resolve`.
//
// Lifetime: start() returns an object owned by the loop. `done` is called exactly once, from a
// close callback (never inside start() or a caller's stack), after which the object is gone;
// cancel() instead ends it without `done`. A lookup thread that is stuck is detached from: its
// late answer is freed and ignored.

#include <sys/socket.h>
#include <uv.h>

#include <functional>
#include <string>
#include <vector>

#include "probes/probe_spec.h"
#include "probes/types.h"

namespace mailprobe {

class AddressLookup {
 public:
  struct Result {
    std::vector<sockaddr_storage> addresses;     // with spec.port; empty exactly on failure
    FailureReason reason = FailureReason::None;  // resolve_failed, or timeout
    std::string detail;
    double seconds = 0;  // time spent resolving (0 for static addresses and literals)
  };
  using Done = std::function<void(Result)>;

  static AddressLookup* start(uv_loop_t* loop, const EndpointSpec& spec, Done done);
  void cancel();

 private:
  struct Request;

  AddressLookup(uv_loop_t* loop, Done done);
  void begin(const EndpointSpec& spec);
  void onResolved(int status, addrinfo* res, const std::string& host);
  void finish(Result result);

  uv_loop_t* loop_;
  Done done_;
  uv_timer_t timer_;
  Request* request_ = nullptr;
  uint64_t started_ns_ = 0;
  Result result_;
  bool resolving_ = false;  // a name lookup was started (static addresses take no time)
  bool finishing_ = false;
};

// "192.0.2.1", "2001:db8::1"
std::string addressText(const sockaddr_storage& a);

}  // namespace mailprobe
