#include "daemon/alertmanager.h"

#include <openssl/evp.h>
#include <unistd.h>

#include <algorithm>
#include <ctime>

#include <nlohmann/json.hpp>

#include "daemon/config_words.h"

namespace mailprobe {
namespace {

int hexValue(char c) {
  if (c >= '0' && c <= '9') {
    return c - '0';
  }
  if (c >= 'a' && c <= 'f') {
    return c - 'a' + 10;
  }
  if (c >= 'A' && c <= 'F') {
    return c - 'A' + 10;
  }
  return -1;
}

bool unreservedOrSubDelim(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         std::string_view("-._~!$&'()*+,;=").find(c) != std::string_view::npos;
}

// RFC 3986 percent-decoding of a user or password; nullopt on a character that has no place
// there or a broken escape.
std::optional<std::string> percentDecode(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%') {
      int hi = i + 2 < s.size() ? hexValue(s[i + 1]) : -1;
      int lo = hi >= 0 ? hexValue(s[i + 2]) : -1;
      if (lo < 0) {
        return std::nullopt;
      }
      out.push_back(static_cast<char>(hi * 16 + lo));
      i += 2;
    } else if (unreservedOrSubDelim(s[i])) {
      out.push_back(s[i]);
    } else {
      return std::nullopt;
    }
  }
  return out;
}

// A path as it may stand in the request line: segments of pchar (RFC 3986 3.3).
bool validPath(std::string_view path) {
  for (size_t i = 0; i < path.size(); ++i) {
    char c = path[i];
    if (c == '%') {
      if (i + 2 >= path.size() || hexValue(path[i + 1]) < 0 || hexValue(path[i + 2]) < 0) {
        return false;
      }
      i += 2;
    } else if (!unreservedOrSubDelim(c) && c != ':' && c != '@' && c != '/') {
      return false;
    }
  }
  return true;
}

std::string base64(std::string_view in) {
  std::string out(4 * ((in.size() + 2) / 3) + 1, '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(in.data()),
                          static_cast<int>(in.size()));
  out.resize(static_cast<size_t>(std::max(n, 0)));
  return out;
}

// An alert's identity in Alertmanager: its label set.
std::string identity(const std::map<std::string, std::string>& labels) {
  std::string out;
  for (const auto& [k, v] : labels) {
    out += k;
    out += '\0';
    out += v;
    out += '\0';
  }
  return out;
}

}  // namespace

std::string_view toString(PushResult r) {
  switch (r) {
    case PushResult::Ok:
      return "ok";
    case PushResult::ResolveFailed:
      return "resolve_failed";
    case PushResult::ConnectFailed:
      return "connect_failed";
    case PushResult::Timeout:
      return "timeout";
    case PushResult::TlsFailed:
      return "tls_failed";
    case PushResult::HttpError:
      return "http_error";
    case PushResult::ProtocolError:
      return "protocol_error";
  }
  return "?";
}

// ---------------------------------------------------------------------------------------------
// The URL.

std::string AlertmanagerUrl::hostHeader() const {
  std::string h = isIpv6(host) ? "[" + host + "]" : host;
  return h + ":" + std::to_string(port);
}

std::string AlertmanagerUrl::redacted() const {
  return std::string(https ? "https://" : "http://") + (hasCredentials() ? "***@" : "") +
         hostHeader() + path;
}

std::string AlertmanagerUrl::alertsPath() const {
  return path + "/api/v2/alerts";
}

std::string AlertmanagerUrl::authorization() const {
  return hasCredentials() ? "Basic " + base64(user + ":" + password) : "";
}

std::string redactUrlText(std::string_view text) {
  // Conservative: up to the last '@' anywhere after the scheme, so that a password holding an
  // unencoded '/' or '?' is hidden too.
  size_t sep = text.find("://");
  size_t start = sep == std::string_view::npos ? 0 : sep + 3;
  size_t at = text.rfind('@');
  if (at == std::string_view::npos || at < start) {
    return std::string(text);
  }
  return std::string(text.substr(0, start)) + "***" + std::string(text.substr(at));
}

std::optional<AlertmanagerUrl> parseAlertmanagerUrl(std::string_view text, std::string* error) {
  const std::string shown = quotedValue(redactUrlText(text));
  auto fail = [&](const std::string& why) -> std::optional<AlertmanagerUrl> {
    if (error != nullptr) {
      *error = shown + why;
    }
    return std::nullopt;
  };
  AlertmanagerUrl url;
  size_t sep = text.find("://");
  std::string scheme = sep == std::string_view::npos ? "" : lowerAscii(text.substr(0, sep));
  if (scheme != "http" && scheme != "https") {
    return fail(" is not an http:// or https:// URL");
  }
  url.https = scheme == "https";
  std::string_view rest = text.substr(sep + 3);
  if (rest.find_first_of("?#") != std::string_view::npos) {
    return fail(": an Alertmanager URL has no query or fragment");
  }
  size_t slash = rest.find('/');
  std::string_view authority = rest.substr(0, slash);
  std::string_view path = slash == std::string_view::npos ? "" : rest.substr(slash);

  if (size_t at = authority.rfind('@'); at != std::string_view::npos) {
    std::string_view userinfo = authority.substr(0, at);
    authority = authority.substr(at + 1);
    size_t colon = userinfo.find(':');
    auto user = percentDecode(userinfo.substr(0, colon));
    auto password = colon == std::string_view::npos ? std::optional<std::string>("")
                                                    : percentDecode(userinfo.substr(colon + 1));
    if (!user || !password) {
      return fail(
          ": the user or password is not valid in a URL (percent-encode it: '@' as %40, '/' as "
          "%2F, ':' in the user as %3A)");
    }
    if (user->empty()) {
      return fail(": credentials without a user name");
    }
    url.user = std::move(*user);
    url.password = std::move(*password);
  }

  std::string_view port_text;
  bool has_port = false;
  if (authority.starts_with('[')) {
    size_t close = authority.find(']');
    url.host = std::string(authority.substr(1, close == std::string_view::npos ? 0 : close - 1));
    if (close == std::string_view::npos || !isIpv6(url.host)) {
      return fail(": the address in brackets is not an IPv6 address");
    }
    std::string_view after = authority.substr(close + 1);
    if (!after.empty() && after.front() != ':') {
      return fail(": expected ':port' after the IPv6 address");
    }
    has_port = !after.empty();
    port_text = has_port ? after.substr(1) : "";
  } else {
    size_t colon = authority.rfind(':');
    url.host = std::string(authority.substr(0, colon));
    has_port = colon != std::string_view::npos;
    port_text = has_port ? authority.substr(colon + 1) : "";
    if (url.host.empty()) {
      return fail(": no host");
    }
    if (!isIpv4(url.host) && !isDomainName(url.host)) {
      return fail(": " + quotedValue(url.host) +
                  " is not a host name or IP address (an IPv6 address goes in brackets, as in "
                  "http://[::1]:9093)");
    }
  }
  if (has_port) {
    bool digits = !port_text.empty() && port_text.size() <= 5 &&
                  std::all_of(port_text.begin(), port_text.end(),
                              [](char c) { return c >= '0' && c <= '9'; });
    int port = digits ? std::stoi(std::string(port_text)) : 0;
    if (port < 1 || port > 65535) {
      return fail(": the port must be a number from 1 to 65535");
    }
    url.port = static_cast<uint16_t>(port);
  } else {
    url.port = url.https ? 443 : 80;
  }

  while (path.ends_with('/')) {
    path.remove_suffix(1);
  }
  if (!validPath(path)) {
    return fail(": the path holds characters a URL cannot carry (percent-encode them)");
  }
  for (std::string_view api : {"/api/v2/alerts", "/api/v1/alerts", "/api/v2", "/api/v1"}) {
    if (path.ends_with(api)) {
      return fail(
          ": give the Alertmanager's base URL, as in \"http://127.0.0.1:9093\"; /api/v2/alerts is "
          "added to it");
    }
  }
  url.path = std::string(path);
  return url;
}

// ---------------------------------------------------------------------------------------------
// Alerts.

std::string rfc3339(int64_t unix_seconds) {
  std::time_t t = static_cast<std::time_t>(unix_seconds);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::string alertsJson(const std::vector<Alert>& alerts) {
  nlohmann::json out = nlohmann::json::array();
  for (const Alert& a : alerts) {
    out.push_back({{"labels", a.labels},
                   {"annotations", a.annotations},
                   {"startsAt", rfc3339(a.starts_at)},
                   {"endsAt", rfc3339(a.ends_at)}});
  }
  return out.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::string localHostName() {
  char name[256] = {0};
  if (::gethostname(name, sizeof name - 1) != 0 || name[0] == '\0') {
    return "localhost";
  }
  return name;
}

const std::vector<std::string_view>& reservedAlertLabels() {
  static const std::vector<std::string_view> names{"alertname", "profile", "direction", "reason"};
  return names;
}

Alert clientAlert(const Verdict& v, const AlertSettings& settings, int64_t now) {
  Alert a;
  a.labels = settings.labels;
  a.labels["alertname"] = kClientAlertName;
  a.labels["profile"] = v.profile;
  a.labels["direction"] = std::string(toString(v.direction));
  a.labels["reason"] = std::string(toString(v.reason));
  // The rule's summary; the description is the verdict's own sentence (server, port, step,
  // since when), which a rule cannot give.
  a.annotations["summary"] = v.profile + " clients cannot " +
                             (v.direction == Direction::Incoming ? "read" : "send") + " mail";
  a.annotations["description"] = v.sentence;
  a.annotations["runbook_url"] = kClientAlertRunbook;
  a.starts_at = v.since != 0 ? v.since : now;
  auto resend_seconds = std::max<int64_t>(1, settings.resend_interval.count() / 1000);
  a.ends_at = now + 4 * resend_seconds;
  return a;
}

bool AlertBook::update(const std::vector<Verdict>& verdicts, int64_t now) {
  std::map<std::string, Alert> next;
  for (const Verdict& v : verdicts) {
    if (!v.known || v.ok) {
      continue;
    }
    int64_t since = v.since != 0 ? v.since : now;
    if ((now - since) * 1000 < settings_.hold.count()) {
      continue;
    }
    Alert a = clientAlert(v, settings_, now);
    std::string key = identity(a.labels);
    if (auto it = firing_.find(key); it != firing_.end()) {
      a.starts_at = std::min(a.starts_at, it->second.starts_at);
    }
    next[key] = std::move(a);
  }
  bool changed = false;
  for (auto& [key, alert] : firing_) {
    if (next.count(key) == 0) {
      alert.ends_at = now;
      resolved_[key] = std::move(alert);
      changed = true;
    }
  }
  for (const auto& [key, alert] : next) {
    if (firing_.count(key) == 0) {
      resolved_.erase(key);
      changed = true;
    }
  }
  firing_ = std::move(next);
  return changed;
}

std::vector<Alert> AlertBook::toSend(int64_t now) {
  std::vector<Alert> out;
  auto resend_seconds = std::max<int64_t>(1, settings_.resend_interval.count() / 1000);
  for (auto& [key, alert] : firing_) {
    alert.ends_at = now + 4 * resend_seconds;
    out.push_back(alert);
  }
  for (auto it = resolved_.begin(); it != resolved_.end();) {
    if (now - it->second.ends_at > kResolvedRetentionSeconds) {
      it = resolved_.erase(it);
    } else {
      out.push_back(it->second);
      ++it;
    }
  }
  return out;
}

}  // namespace mailprobe
