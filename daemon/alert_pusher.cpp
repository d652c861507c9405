#include "daemon/alert_pusher.h"

#include <algorithm>
#include <ctime>

#include "daemon/duration.h"
#include "daemon/log.h"
#include "probes/tls_engine.h"

namespace mailprobe {
namespace {

bool sameCredentials(const AlertmanagerUrl& a, const AlertmanagerUrl& b) {
  return a.user == b.user && a.password == b.password;
}

}  // namespace

AlertPusher::AlertPusher(uv_loop_t* loop, const AlertmanagerConfig& config, Clock clock)
    : loop_(loop), clock_(std::move(clock)), book_(config.alerts) {
  resend_ = new uv_timer_t;
  uv_timer_init(loop_, resend_);
  resend_->data = this;
  configure(config);
}

AlertPusher::~AlertPusher() {
  for (auto& t : targets_) {
    if (t->request != nullptr) {
      t->request->cancel();
    }
  }
  uv_close(reinterpret_cast<uv_handle_t*>(resend_),
           [](uv_handle_t* h) { delete reinterpret_cast<uv_timer_t*>(h); });
}

int64_t AlertPusher::now() const {
  return clock_ ? clock_() : static_cast<int64_t>(::time(nullptr));
}

void AlertPusher::configure(const AlertmanagerConfig& config) {
  config_ = config;
  book_.setSettings(config.alerts);

  tls_.reset();
  tls_error_.clear();
  bool https = std::any_of(config.urls.begin(), config.urls.end(),
                           [](const AlertmanagerUrl& u) { return u.https; });
  if (https) {
    TlsOptions options;
    options.ca_file = config.ca_file;
    tls_ = TlsContext::create(options, &tls_error_);
  }

  std::vector<std::unique_ptr<Target>> targets;
  for (const AlertmanagerUrl& url : config.urls) {
    // The same URL as shown (the metric's label) is the same Alertmanager: its counters and
    // last result go on. New credentials cancel a request made with the old ones.
    auto kept = std::find_if(targets_.begin(), targets_.end(), [&](const auto& t) {
      return t != nullptr && t->stats.url == url.redacted();
    });
    if (kept != targets_.end()) {
      Target& t = **kept;
      if (!sameCredentials(t.url, url) && t.request != nullptr) {
        t.request->cancel();
        t.request = nullptr;
        t.again = false;
      }
      t.url = url;
      targets.push_back(std::move(*kept));
      continue;
    }
    auto t = std::make_unique<Target>();
    t->url = url;
    t->stats.url = url.redacted();
    for (PushResult r : kPushResults) {
      t->stats.pushes[r] = 0;
    }
    targets.push_back(std::move(t));
  }
  for (auto& gone : targets_) {
    if (gone != nullptr && gone->request != nullptr) {
      gone->request->cancel();  // its `done` never comes
    }
  }
  targets_ = std::move(targets);

  auto interval =
      static_cast<uint64_t>(std::max<int64_t>(1, config.alerts.resend_interval.count()));
  uv_timer_start(
      resend_, [](uv_timer_t* t) { static_cast<AlertPusher*>(t->data)->pushAll(); }, interval,
      interval);
}

void AlertPusher::update(const std::vector<Verdict>& verdicts) {
  if (book_.update(verdicts, now())) {
    pushAll();
  }
}

void AlertPusher::pushAll() {
  std::vector<Alert> alerts = book_.toSend(now());
  if (alerts.empty()) {
    return;
  }
  std::string body = alertsJson(alerts);
  for (auto& t : targets_) {
    push(*t, body);
  }
}

void AlertPusher::push(Target& target, const std::string& body) {
  if (target.request != nullptr) {
    target.again = true;  // one flag, whatever comes due meanwhile
    return;
  }
  if (target.url.https && !tls_) {
    onDone(target, {PushResult::TlsFailed, 0, "cannot set up TLS: " + tls_error_});
    return;
  }
  target.request =
      HttpPost::start(loop_, target.url, body, config_.timeout, target.url.https ? tls_ : nullptr,
                      [this, &target](HttpPostResult r) { onDone(target, std::move(r)); });
}

void AlertPusher::onDone(Target& target, HttpPostResult result) {
  target.request = nullptr;
  ++target.stats.pushes[result.result];
  const std::string name = "alertmanager " + target.stats.url;
  if (!target.last || *target.last != result.result) {
    if (result.result == PushResult::Ok) {
      std::string firing = " (" + std::to_string(book_.firing()) + " firing)";
      if (target.last) {
        log::notice(name + ": alerts pushed again" + firing);
      } else {
        log::info(name + ": alerts pushed" + firing);
      }
    } else {
      log::warning(name + ": cannot push alerts: " + std::string(toString(result.result)) + ": " +
                   result.detail + "; trying again every " +
                   formatDuration(config_.alerts.resend_interval));
    }
  }
  target.last = result.result;
  if (target.again) {
    target.again = false;
    std::vector<Alert> alerts = book_.toSend(now());
    if (!alerts.empty()) {
      push(target, alertsJson(alerts));
    }
  }
}

std::vector<AlertmanagerStats> AlertPusher::stats() const {
  std::vector<AlertmanagerStats> out;
  for (const auto& t : targets_) {
    out.push_back(t->stats);
  }
  return out;
}

size_t AlertPusher::inFlight() const {
  return static_cast<size_t>(std::count_if(targets_.begin(), targets_.end(),
                                           [](const auto& t) { return t->request != nullptr; }));
}

}  // namespace mailprobe
