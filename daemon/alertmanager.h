#pragma once
// Client verdicts pushed to Alertmanager (API v2, POST /api/v2/alerts), so that a failing client
// configuration pages on-call even where no Prometheus rule watches mailprobed. Sans-I/O: the
// URL, the alerts and their JSON, and the book of what fires and what was resolved;
// daemon/alert_pusher.h moves the bytes on the loop.
//
// GLOSSARY
//   alert      one failing profile x direction as Alertmanager sees it: a label set (its
//              identity there), annotations, startsAt and endsAt.
//   firing     failing now: sent on every push with endsAt in the future (now + 4 x the resend
//              interval, as Prometheus does), so that it lives on while we keep sending, and
//              expires on its own if mailprobed goes away.
//   resolved   a label set that fired and no longer does (the verdict works again, is unknown,
//              has another reason, or the profile was removed): sent with endsAt = the time it
//              stopped, on every push for kResolvedRetention, so that an Alertmanager that was
//              down or restarted hears of it too.
//
// The URL may carry user:password (HTTP basic authentication): the password is a secret and
// never leaves this file but in the Authorization header (authorization()); every text shown
// to people uses redacted(), which shows neither the user nor the password.

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "daemon/profiles.h"

namespace mailprobe {

// The rule in etc/prometheus/mailprobed.rules.yml that alerts on the same condition, and its
// runbook: a pushed alert and a rule's alert read the same (a unit test holds them equal).
inline constexpr const char* kClientAlertName = "MailClientConfigFailing";
inline constexpr const char* kClientAlertRunbook =
    "https://github.com/mailprobed/mailprobed/blob/main/etc/prometheus/RUNBOOK.md"
    "#mailclientconfigfailing";
// How long a resolved alert keeps being sent (Prometheus keeps them 15 min too).
inline constexpr int64_t kResolvedRetentionSeconds = 15 * 60;

struct AlertmanagerUrl {
  bool https = false;
  std::string user;      // percent-decoded; "" without credentials
  std::string password;  // percent-decoded; a secret
  std::string host;      // a name, an IPv4 address, or an IPv6 address without brackets
  uint16_t port = 0;     // 80 or 443 when the URL gives none
  std::string path;      // the base path ("" or "/alertmanager"), no trailing '/'

  bool hasCredentials() const { return !user.empty() || !password.empty(); }
  // "http://127.0.0.1:9093", "https://***@am.example.org:9093/am": the port always written,
  // credentials never.
  std::string redacted() const;
  // The request target: path + "/api/v2/alerts".
  std::string alertsPath() const;
  // The Host header: "am.example.org:9093", "[::1]:9093".
  std::string hostHeader() const;
  // "Basic <base64(user:password)>"; "" without credentials.
  std::string authorization() const;
};

// "http://[user[:password]@]host[:port][/path]" or https. nullopt and *error (which never
// quotes the password: see redactUrlText) when it is not such a URL.
std::optional<AlertmanagerUrl> parseAlertmanagerUrl(std::string_view text, std::string* error);
// Text that may be a URL with credentials, made safe to show: whatever stands between "://"
// and the last '@' of the authority becomes "***". Other text is returned as is.
std::string redactUrlText(std::string_view text);

// How one push to one Alertmanager ended: the `result` label of
// mailprobe_alertmanager_push_total.
enum class PushResult {
  Ok,             // a 2xx answer: Alertmanager took the alerts
  ResolveFailed,  // its host name did not resolve
  ConnectFailed,  // refused, unreachable
  Timeout,        // no complete answer within the timeout
  TlsFailed,      // https: the handshake failed or the certificate did not verify
  HttpError,      // an answer other than 2xx (400: a bad alert, 401: wrong credentials, ...)
  ProtocolError,  // not an HTTP answer, or the connection closed before a whole one
};
inline constexpr PushResult kPushResults[] = {
    PushResult::Ok,           PushResult::ResolveFailed, PushResult::ConnectFailed,
    PushResult::Timeout,      PushResult::TlsFailed,     PushResult::HttpError,
    PushResult::ProtocolError};
// "ok", "resolve_failed", "connect_failed", "timeout", "tls_failed", "http_error",
// "protocol_error".
std::string_view toString(PushResult r);

struct Alert {
  std::map<std::string, std::string> labels;
  std::map<std::string, std::string> annotations;
  int64_t starts_at = 0;  // unix seconds
  int64_t ends_at = 0;    // unix seconds
};

// "2026-03-01T02:14:00Z".
std::string rfc3339(int64_t unix_seconds);
// The POST /api/v2/alerts body: a JSON array of {labels, annotations, startsAt, endsAt}.
// Invalid UTF-8 is replaced, never an exception.
std::string alertsJson(const std::vector<Alert>& alerts);

// What the book needs from the config ([alertmanager]).
struct AlertSettings {
  // Added to every alert's labels (instance, job, severity, and the config's own); the alert's
  // own labels (alertname, profile, direction, reason) win.
  std::map<std::string, std::string> labels;
  std::chrono::milliseconds resend_interval{60'000};
  // A verdict fails this long before its alert fires (Prometheus' `for`); 0: at once.
  std::chrono::milliseconds hold{0};
};

// This machine's host name (gethostname), the default `instance` label; "localhost" if none.
std::string localHostName();

// The labels mailprobed sets itself and the config may not override.
const std::vector<std::string_view>& reservedAlertLabels();

// The alert for a failing verdict (firing: ends_at = now + 4 x resend interval).
Alert clientAlert(const Verdict& v, const AlertSettings& settings, int64_t now);

// [alertmanager] of the config file; no table, no push.
struct AlertmanagerConfig {
  std::vector<AlertmanagerUrl> urls;          // each one gets every alert (an HA pair: both)
  std::chrono::milliseconds timeout{10'000};  // one whole push: resolve, connect, TLS, answer
  std::string ca_file;  // https: PEM bundle to verify Alertmanager against; "": the system store
  // labels: instance (this machine's host name), job ("mailprobed"), severity ("critical"),
  // then [alertmanager] labels; resend interval; hold (`for`).
  AlertSettings alerts;

  bool enabled() const { return !urls.empty(); }
};

class AlertBook {
 public:
  explicit AlertBook(AlertSettings settings) : settings_(std::move(settings)) {}

  // Settings from a reload; label sets that change fire anew at the next update, the old ones
  // are resolved.
  void setSettings(AlertSettings settings) { settings_ = std::move(settings); }
  const AlertSettings& settings() const { return settings_; }

  // The verdicts as judged now. True when an alert started or stopped firing: a push is due now
  // rather than at the next resend.
  bool update(const std::vector<Verdict>& verdicts, int64_t now);

  // What a push sends now: every firing alert (ends_at = now + 4 x resend interval) and every
  // alert resolved within kResolvedRetentionSeconds (ends_at = when it stopped), by label set.
  // Older resolved alerts are forgotten here.
  std::vector<Alert> toSend(int64_t now);

  size_t firing() const { return firing_.size(); }
  size_t resolved() const { return resolved_.size(); }

 private:
  AlertSettings settings_;
  // By identity (the label set, as text).
  std::map<std::string, Alert> firing_;
  std::map<std::string, Alert> resolved_;
};

}  // namespace mailprobe
