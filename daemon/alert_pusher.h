#pragma once
// Pushes the client verdicts' alerts (daemon/alertmanager.h) to every configured Alertmanager,
// on the loop, without ever holding it up:
//
//   - a push is due when an alert starts or stops firing (update()), and every resend interval
//     while anything is to be sent (the resend timer): the whole current list each time, built
//     when the request starts, so nothing queues up;
//   - each Alertmanager has at most one request in flight; a push due meanwhile is remembered
//     as one flag and made when that request ends: a dead or slow Alertmanager costs one
//     connection and one timeout, never memory or a delay to probes;
//   - each push ends in a PushResult, counted per Alertmanager (mailprobe_alertmanager_push_total)
//     and logged when it differs from the previous one (failing, failing otherwise, working
//     again), never once per push;
//   - a reload keeps the book (what fires) and the counters and request of every URL that stays
//     (the same URL as shown: new credentials keep the counters but cancel the request made
//     with the old ones); a URL that goes has its request cancelled. Destroying the pusher cancels every request
//     and closes the timer: nothing is left waiting on the loop but close callbacks.

#include <uv.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "daemon/alertmanager.h"
#include "daemon/http_post.h"
#include "daemon/snapshot.h"

namespace mailprobe {

class TlsContext;

class AlertPusher {
 public:
  // Unix seconds now; tests may pass their own.
  using Clock = std::function<int64_t()>;

  AlertPusher(uv_loop_t* loop, const AlertmanagerConfig& config, Clock clock = nullptr);
  ~AlertPusher();
  AlertPusher(const AlertPusher&) = delete;
  AlertPusher& operator=(const AlertPusher&) = delete;

  void configure(const AlertmanagerConfig& config);
  // The verdicts as judged now (on every publish): pushes at once when an alert starts or stops
  // firing.
  void update(const std::vector<Verdict>& verdicts);

  std::vector<AlertmanagerStats> stats() const;
  size_t inFlight() const;
  const AlertBook& book() const { return book_; }

 private:
  struct Target {
    AlertmanagerUrl url;
    HttpPost* request = nullptr;  // in flight
    bool again = false;           // a push came due while `request` ran
    std::optional<PushResult> last;
    AlertmanagerStats stats;
  };

  void pushAll();
  void push(Target& target, const std::string& body);
  void onDone(Target& target, HttpPostResult result);
  int64_t now() const;

  uv_loop_t* loop_;
  Clock clock_;
  AlertmanagerConfig config_;
  AlertBook book_;
  std::shared_ptr<TlsContext> tls_;  // https URLs: verifies against config_.ca_file
  std::string tls_error_;            // why tls_ could not be built
  std::vector<std::unique_ptr<Target>> targets_;
  uv_timer_t* resend_ = nullptr;  // freed in its close callback
};

}  // namespace mailprobe
