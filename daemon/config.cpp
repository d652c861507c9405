#include "daemon/config.h"
#include "daemon/config_words.h"
#include "daemon/profile_config.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <openssl/tls1.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <toml++/toml.h>
#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <set>
#include <sstream>
#include <tuple>
#include <utility>

#include "daemon/duration.h"

namespace mailprobe {

using std::chrono::milliseconds;

std::string ConfigError::format() const {
  std::string out;
  if (!file.empty()) {
    out = file;
    if (line > 0) {
      out += ':' + std::to_string(line) + ':' + std::to_string(column);
    }
    out += ": ";
  }
  return out + message;
}

const std::vector<DefaultEndpoint>& platformEndpoints() {
  static const std::vector<DefaultEndpoint> endpoints{
      {Service::Imap, 143, Security::StartTls, true, AuthPolicy::Required},
      {Service::Imap, 993, Security::Tls, true, AuthPolicy::Required},
      {Service::Smtp, 25, Security::StartTls, false, AuthPolicy::Optional},
      {Service::Smtp, 465, Security::Tls, true, AuthPolicy::Required},
      {Service::Smtp, 587, Security::StartTls, true, AuthPolicy::Required},
  };
  return endpoints;
}

std::optional<Security> defaultSecurityForPort(uint16_t port) {
  switch (port) {
    case 993:
    case 465:
      return Security::Tls;
    case 143:
    case 587:
    case 25:
      return Security::StartTls;
    default:
      return std::nullopt;
  }
}

GetEnv processEnv() {
  return [](const std::string& name) -> std::optional<std::string> {
    const char* value = std::getenv(name.c_str());
    if (value == nullptr) {
      return std::nullopt;
    }
    return std::string(value);
  };
}

namespace {

// ---------------------------------------------------------------------------------------------
// Vocabulary of the file.

constexpr milliseconds kMaxDuration{24 * 3600 * 1000};
constexpr size_t kMaxPasswordBytes = 4096;

template <class E>
struct Choice {
  std::string_view name;
  E value;
};

const std::vector<Choice<Service>> kServices{{"imap", Service::Imap}, {"smtp", Service::Smtp}};
const std::vector<Choice<Security>> kSecurities{
    {"none", Security::None}, {"starttls", Security::StartTls}, {"tls", Security::Tls}};
const std::vector<Choice<AuthPolicy>> kAuthPolicies{{"required", AuthPolicy::Required},
                                                    {"optional", AuthPolicy::Optional},
                                                    {"none", AuthPolicy::Skip}};
const std::vector<Choice<AddressFamily>> kFamilies{
    {"any", AddressFamily::Any}, {"ipv4", AddressFamily::V4}, {"ipv6", AddressFamily::V6}};
const std::vector<Choice<int>> kTlsVersions{{"default", 0},
                                            {"TLSv1.0", TLS1_VERSION},
                                            {"TLSv1.1", TLS1_1_VERSION},
                                            {"TLSv1.2", TLS1_2_VERSION},
                                            {"TLSv1.3", TLS1_3_VERSION}};
// Which recipients a kind of client may reach through a port ([[host.relay.policy]]). An
// untrusted client that may reach everyone is an open relay: not a policy one can expect.
const std::vector<Choice<RelayReach>> kUntrustedReach{{"local", RelayReach::Local},
                                                      {"none", RelayReach::Nobody}};
const std::vector<Choice<RelayReach>> kTrustedReach{
    {"all", RelayReach::All}, {"local", RelayReach::Local}, {"none", RelayReach::Nobody}};
const std::vector<Choice<RelayReach>> kSignedInReach{{"all", RelayReach::All},
                                                     {"local", RelayReach::Local}};
const std::vector<Choice<std::string_view>> kLogLevels{{"error", "error"},
                                                       {"warning", "warning"},
                                                       {"notice", "notice"},
                                                       {"info", "info"},
                                                       {"debug", "debug"}};

template <class E>
std::string_view nameOf(const std::vector<Choice<E>>& choices, E value) {
  for (const auto& c : choices) {
    if (c.value == value) {
      return c.name;
    }
  }
  return "?";
}

// Keys that may appear in [defaults], [[host]] and [[host.endpoint]]; the innermost wins.
const std::vector<std::string_view> kLayerKeys{
    "interval",        "timeout",         "connect_timeout",
    "phase_timeout",   "resolve_timeout", "ca_file",
    "ehlo_name",       "family",          "login_despite_invalid_cert",
    "tls_min_version", "tls_max_version", "source_address",
    "examine_inbox",   "tls_resumption"};
const std::vector<std::string_view> kDaemonKeys{"listen", "log_level", "auth_backoff_initial",
                                                "auth_backoff_max", "auth_backoff_factor"};
constexpr double kMaxBackoffFactor = 10;
const std::vector<std::string_view> kAccountKeys{"user", "password_file", "password_env",
                                                 "password_credential", "password"};
const std::vector<std::string_view> kHostOnlyKeys{"name", "addresses", "account", "endpoint",
                                                  "relay"};
const std::vector<std::string_view> kRelayKeys{
    "local_recipient",  "local_domains", "outside_recipient", "sender",
    "signed_in_sender", "sign_in",       "interval",          "ports",
    "vantage",          "policy"};
const std::vector<std::string_view> kVantageKeys{"name", "source_address", "trusted"};
const std::vector<std::string_view> kPolicyKeys{"port", "untrusted", "trusted", "signed_in"};
constexpr milliseconds kDefaultRelayInterval{5 * 60 * 1000};
const std::vector<std::string_view> kEndpointOnlyKeys{
    "service", "port", "security", "auth", "starttls_required", "mechanisms"};
const std::vector<std::string_view> kAlertmanagerKeys{"urls", "timeout", "resend_interval",
                                                      "for",  "ca_file", "labels"};
const std::vector<std::string_view> kTopKeys{"daemon", "defaults", "account", "host",
                                             "alertmanager"};

bool contains(const std::vector<std::string_view>& keys, std::string_view k) {
  return std::find(keys.begin(), keys.end(), k) != keys.end();
}

std::vector<std::string_view> concat(
    std::initializer_list<const std::vector<std::string_view>*> lists) {
  std::vector<std::string_view> out;
  for (const auto* l : lists) {
    out.insert(out.end(), l->begin(), l->end());
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Small text helpers.

std::string_view typeName(toml::node_type t) {
  switch (t) {
    case toml::node_type::table:
      return "a table";
    case toml::node_type::array:
      return "an array";
    case toml::node_type::string:
      return "string";
    case toml::node_type::integer:
      return "integer";
    case toml::node_type::floating_point:
      return "float";
    case toml::node_type::boolean:
      return "boolean";
    case toml::node_type::date:
      return "date";
    case toml::node_type::time:
      return "time";
    case toml::node_type::date_time:
      return "date-time";
    case toml::node_type::none:
      break;
  }
  return "nothing";
}

// "integer -5", "string \"30x\"", "a table". A secret shows its type only.
std::string describe(const toml::node& n, bool secret = false) {
  std::string type(typeName(n.type()));
  if (secret) {
    return type;
  }
  if (const auto* s = n.as_string()) {
    return type + ' ' + quotedValue(s->get());
  }
  if (const auto* i = n.as_integer()) {
    return type + ' ' + std::to_string(i->get());
  }
  if (const auto* f = n.as_floating_point()) {
    std::ostringstream out;
    out << f->get();
    return type + ' ' + out.str();
  }
  if (const auto* b = n.as_boolean()) {
    return type + (b->get() ? " true" : " false");
  }
  return type;
}

// "user@example.org": an RFC 5321 dot-atom local part (no quoting, nothing that could break or
// inject into the MAIL FROM / RCPT TO line) and a domain name.
bool isMailAddress(std::string_view s) {
  size_t at = s.rfind('@');
  if (at == std::string_view::npos || at == 0 || at > 64 || !isDomainName(s.substr(at + 1))) {
    return false;
  }
  std::string_view local = s.substr(0, at);
  if (local.front() == '.' || local.back() == '.' || local.find("..") != std::string_view::npos) {
    return false;
  }
  return std::all_of(local.begin(), local.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           std::string_view(".!#$%&'*+/=?^_`{|}~-").find(c) != std::string_view::npos;
  });
}

// Domains reserved for examples and tests (RFC 2606, RFC 6761): nobody receives mail there.
bool isReservedDomain(std::string_view domain) {
  for (std::string_view reserved : {"example.com", "example.net", "example.org"}) {
    if (domain == reserved || domain.ends_with("." + std::string(reserved))) {
      return true;
    }
  }
  for (std::string_view tld : {".test", ".example", ".invalid", ".localhost"}) {
    if (domain.ends_with(tld)) {
      return true;
    }
  }
  return false;
}

std::string joinNames(const std::vector<std::string_view>& names) {
  std::string out;
  for (size_t i = 0; i < names.size(); ++i) {
    if (i > 0) {
      out += i + 1 == names.size() ? " or " : ", ";
    }
    out += names[i];
  }
  return out;
}

std::string directoryOf(const std::string& path) {
  size_t slash = path.rfind('/');
  if (slash == std::string::npos) {
    return "";
  }
  return slash == 0 ? "/" : path.substr(0, slash);
}

std::string resolvePath(const std::string& base_dir, const std::string& path) {
  if (path.empty() || path[0] == '/' || base_dir.empty()) {
    return path;
  }
  return base_dir == "/" ? "/" + path : base_dir + "/" + path;
}

std::string octalMode(mode_t mode) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "%04o", static_cast<unsigned>(mode & 07777));
  return buf;
}

// ---------------------------------------------------------------------------------------------
// Secrets.

enum class SecretKind { File, Env, Credential, Inline };

struct Secret {
  std::optional<std::string> password;
  std::string source;   // for logs: "file /x", "env X", "credential X", "inline"
  std::string error;    // without the key prefix; never contains the password
  std::string warning;  // idem
};

// Reads a small file whole. On failure `error` says why, in strerror's words.
bool readSmallFile(const std::string& path, size_t limit, std::string& out, std::string& error,
                   mode_t* mode) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) {
    error = "cannot read " + path + ": " + std::strerror(errno);
    return false;
  }
  struct stat st {};
  if (::fstat(fd, &st) == 0) {
    if (S_ISDIR(st.st_mode)) {
      ::close(fd);
      error = "cannot read " + path + ": " + std::strerror(EISDIR);
      return false;
    }
    if (mode != nullptr) {
      *mode = st.st_mode;
    }
  }
  out.clear();
  char buf[4096];
  while (out.size() <= limit) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0) {
      error = "cannot read " + path + ": " + std::strerror(errno);
      ::close(fd);
      return false;
    }
    if (n == 0) {
      break;
    }
    out.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  if (out.size() > limit) {
    error = path + " is larger than " + std::to_string(limit) + " bytes: is it the right file?";
    return false;
  }
  return true;
}

// `what` names where the password came from; the checks never quote the password itself.
std::string checkPassword(const std::string& password, const std::string& what) {
  if (password.empty()) {
    return what + " is empty";
  }
  if (password.find_first_of(std::string_view("\r\n\0", 3)) != std::string::npos) {
    return what + " must hold the password alone on one line (it has a line break or NUL byte)";
  }
  return "";
}

bool isEnvName(std::string_view s) {
  if (s.empty() || (s[0] >= '0' && s[0] <= '9')) {
    return false;
  }
  return std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
  });
}

Secret resolveSecret(SecretKind kind, const std::string& value, const std::string& base_dir,
                     const GetEnv& getenv) {
  Secret s;
  std::string text;
  switch (kind) {
    case SecretKind::Inline:
      s.source = "inline";
      s.error = checkPassword(value, "the password");
      if (s.error.empty()) {
        s.password = value;
      }
      return s;
    case SecretKind::Env: {
      s.source = "env " + value;
      if (!isEnvName(value)) {
        s.error = quotedValue(value) + " is not an environment variable name";
        return s;
      }
      std::optional<std::string> v = getenv(value);
      if (!v) {
        s.error = "$" + value + " is not set";
        return s;
      }
      s.error = checkPassword(*v, "$" + value);
      if (s.error.empty()) {
        s.password = std::move(*v);
      }
      return s;
    }
    case SecretKind::Credential: {
      s.source = "credential " + value;
      if (value.empty() || value == "." || value == ".." || value.find('/') != std::string::npos) {
        s.error = quotedValue(value) + " is not a credential name (a file name, without '/')";
        return s;
      }
      std::optional<std::string> dir = getenv("CREDENTIALS_DIRECTORY");
      if (!dir || dir->empty()) {
        s.error =
            "$CREDENTIALS_DIRECTORY is not set: run under systemd with LoadCredential=" + value +
            ":<file>, or use password_file";
        return s;
      }
      std::string path = *dir + "/" + value;
      if (!readSmallFile(path, kMaxPasswordBytes, text, s.error, nullptr)) {
        return s;
      }
      // systemd credentials are taken verbatim, but a file written by `echo` ends in a newline.
      if (text.ends_with("\r\n")) {
        text.resize(text.size() - 2);
      } else if (text.ends_with('\n')) {
        text.pop_back();
      }
      s.error = checkPassword(text, path);
      if (s.error.empty()) {
        s.password = std::move(text);
      }
      return s;
    }
    case SecretKind::File: {
      std::string path = resolvePath(base_dir, value);
      s.source = "file " + path;
      if (value.empty()) {
        s.error = "must not be empty";
        return s;
      }
      mode_t mode = 0;
      if (!readSmallFile(path, kMaxPasswordBytes, text, s.error, &mode)) {
        return s;
      }
      if (text.ends_with("\r\n")) {
        text.resize(text.size() - 2);
      } else if (text.ends_with('\n')) {
        text.pop_back();
      }
      s.error = checkPassword(text, path);
      if (s.error.empty()) {
        s.password = std::move(text);
        if (mode & S_IROTH) {
          s.warning = path + " is readable by every user (mode " + octalMode(mode) + ")";
        }
      }
      return s;
    }
  }
  return s;
}

// ---------------------------------------------------------------------------------------------
// Diagnostics.

struct Pos {
  uint32_t line = 0, column = 0;
};
Pos at(const toml::source_region& r) {
  return {r.begin.line, r.begin.column};
}
Pos at(const toml::node& n) {
  return at(n.source());
}
Pos at(const toml::key& k) {
  return at(k.source());
}

class Diagnostics {
 public:
  Diagnostics(std::string file, bool command_line)
      : file_(std::move(file)), command_line_(command_line) {}

  bool commandLine() const { return command_line_; }

  // How messages name a key: as the file spells it, or as its command-line flag.
  std::string key(std::string_view k) const {
    if (!command_line_) {
      return std::string(k);
    }
    if (k == "name") {
      return "--host";
    }
    if (k == "addresses") {
      return "--address";
    }
    if (k == "mechanisms") {
      return "--mechanism";
    }
    std::string flag = "--" + std::string(k);
    std::replace(flag.begin(), flag.end(), '_', '-');
    return flag;
  }

  // " (first defined at line 12)" pointing at a related place; nothing on the command line.
  std::string seeLine(Pos p, std::string_view what) const {
    return p.line > 0 ? " (" + std::string(what) + " " + std::to_string(p.line) + ")" : "";
  }

  void error(Pos p, std::string message) { add(errors_, p, std::move(message)); }
  void warning(Pos p, std::string message) { add(warnings_, p, std::move(message)); }

  bool failed() const { return !errors_.empty(); }

  std::vector<ConfigError> takeErrors() { return sorted(std::move(errors_)); }
  std::vector<std::string> takeWarnings() {
    std::vector<std::string> out;
    for (const ConfigError& w : sorted(std::move(warnings_))) {
      out.push_back(w.format());
    }
    return out;
  }

 private:
  // The same mistake reached through several endpoints is reported once.
  void add(std::vector<ConfigError>& list, Pos p, std::string message) {
    ConfigError e{file_, p.line, p.column, std::move(message)};
    for (const ConfigError& seen : list) {
      if (seen.line == e.line && seen.column == e.column && seen.message == e.message) {
        return;
      }
    }
    list.push_back(std::move(e));
  }

  static std::vector<ConfigError> sorted(std::vector<ConfigError> list) {
    std::stable_sort(list.begin(), list.end(), [](const ConfigError& a, const ConfigError& b) {
      return std::tie(a.line, a.column) < std::tie(b.line, b.column);
    });
    return list;
  }

  std::string file_;
  bool command_line_;
  std::vector<ConfigError> errors_;
  std::vector<ConfigError> warnings_;
};

// ---------------------------------------------------------------------------------------------
// Drafts: what the file says, with where it says it, before defaults are applied.

template <class T>
struct Setting {
  std::optional<T> value;  // nullopt: not given, or given but invalid (already reported)
  Pos pos;
  bool given = false;
};

// Pick the innermost layer that gives a valid value.
template <class T>
const Setting<T>& pick(const Setting<T>& endpoint, const Setting<T>& host,
                       const Setting<T>& defaults) {
  if (endpoint.value) {
    return endpoint;
  }
  if (host.value) {
    return host;
  }
  return defaults;
}

struct Layer {
  Setting<milliseconds> interval, timeout, connect_timeout, phase_timeout, resolve_timeout;
  Setting<std::string> ca_file, ehlo_name, source_address;
  Setting<AddressFamily> family;
  Setting<bool> login_despite_invalid_cert, examine_inbox, tls_resumption;
  Setting<int> tls_min_version, tls_max_version;
};

struct AccountDraft {
  std::string where;  // "[account]" or "[host.account]"
  Pos pos;
  bool broken = false;  // the table itself was wrong: no further errors about it
  std::optional<std::string> user;
  bool user_given = false;
  struct Source {
    std::string key;
    SecretKind kind;
    std::string value;
    Pos pos;
  };
  std::vector<Source> sources;
  bool sources_broken = false;  // a source was given with the wrong type
  // Resolution, done once per table.
  std::optional<std::string> password;
  std::string source;
  bool missing_reported = false;
};

struct EndpointDraft {
  Pos pos;
  Layer layer;
  Setting<Service> service;
  Setting<int64_t> port;
  Setting<Security> security;
  Setting<AuthPolicy> auth;
  Setting<bool> starttls_required;
  Setting<std::vector<std::string>> mechanisms;
  std::vector<Pos> mechanism_pos;
};

struct VantageDraft {
  Pos pos;
  Setting<std::string> name, source_address;
  Setting<bool> trusted;
};

struct PolicyDraft {
  Pos pos;
  Setting<int64_t> port;
  Setting<RelayReach> untrusted, trusted, signed_in;
};

struct RelayDraft {
  Pos pos;
  Setting<std::string> local_recipient, outside_recipient, sender, signed_in_sender;
  Setting<std::vector<std::string>> local_domains;
  Setting<bool> sign_in;
  Setting<milliseconds> interval;
  Setting<std::vector<int64_t>> ports;
  std::vector<Pos> port_pos;
  std::vector<VantageDraft> vantages;
  bool vantages_given = false;  // even if broken: no "at least one" error on top
  std::vector<PolicyDraft> policies;
  bool broken = false;  // [host.relay] was not a table: nothing more to say about it
};

struct HostDraft {
  Pos pos;
  Setting<std::string> name;
  Setting<std::vector<std::string>> addresses;
  Layer layer;
  std::optional<AccountDraft> account;
  bool endpoints_given = false;
  std::vector<EndpointDraft> endpoints;
  std::optional<RelayDraft> relay;
};

std::string describeEndpoint(const EndpointSpec& s) {
  return std::string(toString(s.service)) + " " + std::to_string(s.port) + " " +
         std::string(toString(s.security));
}

// "smtp 2525 starttls", as far as the draft says (it may have errors of its own).
std::string describeDraft(const EndpointDraft& e) {
  if (!e.port.value) {
    return e.service.value ? "an " + std::string(toString(*e.service.value)) + " endpoint"
                           : "an endpoint";
  }
  std::string out = e.service.value ? std::string(toString(*e.service.value)) : "endpoint";
  out += " " + std::to_string(*e.port.value);
  std::optional<Security> security = e.security.value;
  if (!e.security.given && e.port.value) {
    security = defaultSecurityForPort(static_cast<uint16_t>(*e.port.value));
  }
  if (security) {
    out += " " + std::string(toString(*security));
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// The loader: one pass over the document, every error collected.

class Loader {
 public:
  Loader(Diagnostics& diag, const GetEnv& getenv, std::string base_dir,
         const AddressCheck& has_address)
      : d_(diag), getenv_(getenv), base_dir_(std::move(base_dir)), has_address_(has_address) {}

  std::optional<Config> build(const toml::table& root);

  // Where an inline password was written (for the file-mode warning).
  const std::optional<Pos>& inlinePassword() const { return inline_password_; }
  // Where an Alertmanager URL with a password was written (idem).
  const std::optional<Pos>& urlPassword() const { return url_password_; }

 private:
  std::string k(std::string_view key) const { return d_.key(key); }

  void typeError(std::string_view key, std::string_view expected, const toml::node& n,
                 bool secret = false) {
    d_.error(at(n),
             k(key) + ": expected " + std::string(expected) + ", got " + describe(n, secret));
  }

  // Reports the key; returns the known key it is probably a typo of, so that the caller does
  // not also report that key as missing.
  std::optional<std::string_view> unknownKey(const toml::key& key, std::string_view where,
                                             const std::vector<std::string_view>& known);

  // Scalar readers: report and return nullopt on a bad value.
  std::optional<std::string> readString(std::string_view key, const toml::node& n,
                                        bool secret = false);
  std::optional<bool> readBool(std::string_view key, const toml::node& n);
  std::optional<milliseconds> readDuration(std::string_view key, const toml::node& n);
  std::optional<int64_t> readPort(std::string_view key, const toml::node& n);
  template <class E>
  std::optional<E> readEnum(std::string_view key, const toml::node& n,
                            const std::vector<Choice<E>>& choices);
  std::optional<std::vector<std::string>> readAddresses(std::string_view key, const toml::node& n);
  std::optional<std::vector<std::string>> readMechanisms(const toml::node& n,
                                                         std::vector<Pos>& positions);
  std::optional<std::string> readMailAddress(std::string_view key, const toml::node& n,
                                             bool empty_ok);
  // A PEM file that must be readable now; relative to the config's directory; "" allowed.
  std::optional<std::string> readCaFile(std::string_view key, const toml::node& n);
  // An array of tables: `read` for each element; a type error or an empty list is reported.
  template <class F>
  void readTables(std::string_view key, std::string_view what, const toml::node& n, F read);

  template <class T>
  void set(Setting<T>& s, std::optional<T> value, const toml::node& n) {
    s.value = std::move(value);
    s.pos = at(n);
    s.given = true;
  }

  bool readLayerKey(std::string_view key, const toml::node& n, Layer& layer);
  void readDaemon(const toml::node& n, DaemonConfig& out);
  void readDefaults(const toml::node& n, Layer& out);
  void readAlertmanager(const toml::node& n, AlertmanagerConfig& out);
  void readAlertLabels(const toml::node& n, std::map<std::string, std::string>& out);
  AccountDraft readAccount(const toml::node& n, std::string where);
  void resolveAccount(AccountDraft& a);
  std::optional<HostDraft> readHost(const toml::node& n);
  EndpointDraft readEndpoint(const toml::node& n);
  std::optional<EndpointConfig> makeEndpoint(const HostDraft& host, const EndpointDraft& e,
                                             const Layer& defaults);
  std::optional<HostConfig> makeHost(HostDraft& host, const Layer& defaults,
                                     std::optional<AccountDraft>& top_account);
  RelayDraft readRelay(const toml::node& n);
  VantageDraft readVantage(const toml::node& n);
  PolicyDraft readPolicy(const toml::node& n);
  // Builds out.relay from the draft and the host's endpoints; false after an error.
  bool makeRelay(const HostDraft& host, HostConfig& out, bool endpoints_ok);

  Diagnostics& d_;
  const GetEnv& getenv_;
  std::string base_dir_;
  const AddressCheck& has_address_;
  std::optional<Pos> inline_password_;
  std::optional<Pos> url_password_;
};

std::optional<std::string_view> Loader::unknownKey(const toml::key& key, std::string_view where,
                                                   const std::vector<std::string_view>& known) {
  std::string_view name = key.str();
  std::string message = "unknown key '" + std::string(name) + "' in " + std::string(where);
  bool in_account = where.ends_with("account]");
  bool in_endpoint = where == "[[host.endpoint]]";
  std::optional<std::string_view> suggestion = closestWord(name, known);
  if (suggestion) {
    message += "; did you mean '" + std::string(*suggestion) + "'?";
  } else if (!in_account && contains(kAccountKeys, name)) {
    message += "; account keys go in [account] or [host.account]";
  } else if (!in_endpoint && contains(kEndpointOnlyKeys, name)) {
    message += "; it belongs in a [[host.endpoint]] table";
  } else if (where == "[defaults]" && (name == "name" || name == "addresses")) {
    message += "; it belongs in a [[host]] table";
  }
  d_.error(at(key), std::move(message));
  return suggestion;
}

std::optional<std::string> Loader::readString(std::string_view key, const toml::node& n,
                                              bool secret) {
  if (const auto* s = n.as_string()) {
    return s->get();
  }
  typeError(key, "a string", n, secret);
  return std::nullopt;
}

std::optional<bool> Loader::readBool(std::string_view key, const toml::node& n) {
  if (const auto* b = n.as_boolean()) {
    return b->get();
  }
  typeError(key, "true or false", n);
  return std::nullopt;
}

std::optional<milliseconds> Loader::readDuration(std::string_view key, const toml::node& n) {
  std::optional<milliseconds> d;
  std::string shown;
  if (const auto* i = n.as_integer()) {
    int64_t seconds = i->get();
    shown = std::to_string(seconds);
    if (seconds > 0 && seconds <= kMaxDuration.count() / 1000) {
      d = milliseconds{seconds * 1000};
    } else if (seconds > 0) {
      d = kMaxDuration + milliseconds{1};
    } else {
      d = milliseconds{0};
    }
  } else if (const auto* s = n.as_string()) {
    shown = quotedValue(s->get());
    d = parseDuration(s->get());
    if (!d) {
      d_.error(at(n), k(key) + ": " + shown +
                          " is not a duration: write a number and a unit (ms, s, m, h), "
                          "e.g. \"30s\" or \"1m30s\"");
      return std::nullopt;
    }
  } else {
    typeError(key, "a duration like \"30s\" or a whole number of seconds", n);
    return std::nullopt;
  }
  if (d->count() <= 0) {
    d_.error(at(n), k(key) + ": must be longer than zero, got " + shown);
    return std::nullopt;
  }
  if (*d > kMaxDuration) {
    d_.error(at(n), k(key) + ": must be at most 24h, got " + shown);
    return std::nullopt;
  }
  return d;
}

std::optional<int64_t> Loader::readPort(std::string_view key, const toml::node& n) {
  const auto* i = n.as_integer();
  if (i == nullptr) {
    typeError(key, "a port number", n);
    return std::nullopt;
  }
  if (i->get() < 1 || i->get() > 65535) {
    d_.error(at(n), k(key) + ": must be between 1 and 65535, got " + std::to_string(i->get()));
    return std::nullopt;
  }
  return i->get();
}

template <class E>
std::optional<E> Loader::readEnum(std::string_view key, const toml::node& n,
                                  const std::vector<Choice<E>>& choices) {
  std::vector<std::string_view> names;
  for (const auto& c : choices) {
    names.push_back(c.name);
  }
  const auto* s = n.as_string();
  if (s == nullptr) {
    typeError(key, "one of " + joinNames(names), n);
    return std::nullopt;
  }
  for (const auto& c : choices) {
    if (c.name == s->get()) {
      return c.value;
    }
  }
  std::string message =
      k(key) + ": " + quotedValue(s->get()) + " is not one of " + joinNames(names);
  if (key == "security" && lowerAscii(s->get()).starts_with("ssl")) {
    message += " (implicit TLS, which clients call SSL, is \"tls\")";
  } else if (key == "untrusted" && s->get() == "all") {
    message += ": an untrusted client that may send anywhere is an open relay";
  } else if (auto suggestion = closestWord(s->get(), names)) {
    message += "; did you mean \"" + std::string(*suggestion) + "\"?";
  }
  d_.error(at(n), std::move(message));
  return std::nullopt;
}

std::optional<std::vector<std::string>> Loader::readAddresses(std::string_view key,
                                                              const toml::node& n) {
  const auto* array = n.as_array();
  if (array == nullptr) {
    typeError(key, "an array of IP addresses", n);
    return std::nullopt;
  }
  if (array->empty()) {
    d_.error(at(n), k(key) + ": empty list; remove it to resolve the host name instead");
    return std::nullopt;
  }
  std::vector<std::string> out;
  bool ok = true;
  for (const toml::node& element : *array) {
    std::optional<std::string> s = readString(key, element);
    if (!s) {
      ok = false;
    } else if (!isIpv4(*s) && !isIpv6(*s)) {
      d_.error(at(element), k(key) + ": " + quotedValue(*s) + " is not an IPv4 or IPv6 address");
      ok = false;
    } else if (std::find(out.begin(), out.end(), *s) != out.end()) {
      d_.error(at(element), k(key) + ": " + quotedValue(*s) + " is listed twice");
      ok = false;
    } else {
      out.push_back(std::move(*s));
    }
  }
  return ok ? std::optional(std::move(out)) : std::nullopt;
}

std::optional<std::vector<std::string>> Loader::readMechanisms(const toml::node& n,
                                                               std::vector<Pos>& positions) {
  const auto* array = n.as_array();
  if (array == nullptr) {
    typeError("mechanisms", "an array of SASL mechanism names such as [\"PLAIN\"]", n);
    return std::nullopt;
  }
  if (array->empty()) {
    d_.error(at(n), k("mechanisms") +
                        ": empty list; remove it to try every advertised mechanism the probe "
                        "supports, or set auth = \"none\"");
    return std::nullopt;
  }
  std::vector<std::string> out;
  bool ok = true;
  for (const toml::node& element : *array) {
    std::optional<std::string> s = readString("mechanisms", element);
    if (!s) {
      ok = false;
      continue;
    }
    std::string upper = *s;
    for (char& c : upper) {
      if (c >= 'a' && c <= 'z') {
        c = static_cast<char>(c - 'a' + 'A');
      }
    }
    // RFC 4422 3.1: 1 to 20 characters from upper-case letters, digits, '-' and '_'.
    bool valid =
        !upper.empty() && upper.size() <= 20 && std::all_of(upper.begin(), upper.end(), [](char c) {
          return (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
        });
    if (!valid) {
      d_.error(at(element),
               k("mechanisms") + ": " + quotedValue(*s) + " is not a SASL mechanism name");
      ok = false;
    } else if (std::find(out.begin(), out.end(), upper) != out.end()) {
      d_.error(at(element), k("mechanisms") + ": " + quotedValue(upper) + " is listed twice");
      ok = false;
    } else {
      out.push_back(std::move(upper));
      positions.push_back(at(element));
    }
  }
  return ok ? std::optional(std::move(out)) : std::nullopt;
}

std::optional<std::string> Loader::readCaFile(std::string_view key, const toml::node& n) {
  std::optional<std::string> path = readString(key, n);
  if (path && !path->empty()) {
    *path = resolvePath(base_dir_, *path);
    std::string content, error;
    // Read it now: a missing CA file is a start-up error, not a failure of every probe.
    if (!readSmallFile(*path, 16 << 20, content, error, nullptr)) {
      d_.error(at(n), k(key) + ": " + error);
      path.reset();
    }
  }
  return path;
}

bool Loader::readLayerKey(std::string_view key, const toml::node& n, Layer& l) {
  if (key == "interval") {
    set(l.interval, readDuration(key, n), n);
  } else if (key == "timeout") {
    set(l.timeout, readDuration(key, n), n);
  } else if (key == "connect_timeout") {
    set(l.connect_timeout, readDuration(key, n), n);
  } else if (key == "phase_timeout") {
    set(l.phase_timeout, readDuration(key, n), n);
  } else if (key == "resolve_timeout") {
    set(l.resolve_timeout, readDuration(key, n), n);
  } else if (key == "ca_file") {
    set(l.ca_file, readCaFile(key, n), n);
  } else if (key == "ehlo_name") {
    std::optional<std::string> name = readString(key, n);
    // An address literal such as "[192.0.2.1]" (RFC 5321 4.1.3) or a domain name; anything
    // else would break, or inject into, the EHLO line.
    if (name) {
      bool literal = name->size() > 2 && name->front() == '[' && name->back() == ']' &&
                     (isIpv4(name->substr(1, name->size() - 2)) ||
                      (name->starts_with("[IPv6:") && isIpv6(name->substr(6, name->size() - 7))));
      if (!literal && !isDomainName(*name)) {
        d_.error(at(n), k(key) + ": " + quotedValue(*name) +
                            " is not a domain name or an address literal like \"[192.0.2.1]\"");
        name.reset();
      }
    }
    set(l.ehlo_name, std::move(name), n);
  } else if (key == "source_address") {
    std::optional<std::string> address = readString(key, n);
    if (address && !address->empty() && !isIpv4(*address) && !isIpv6(*address)) {
      d_.error(at(n), k(key) + ": " + quotedValue(*address) + " is not an IPv4 or IPv6 address");
      address.reset();
    }
    set(l.source_address, std::move(address), n);
  } else if (key == "family") {
    set(l.family, readEnum(key, n, kFamilies), n);
  } else if (key == "login_despite_invalid_cert") {
    set(l.login_despite_invalid_cert, readBool(key, n), n);
  } else if (key == "examine_inbox") {
    set(l.examine_inbox, readBool(key, n), n);
  } else if (key == "tls_resumption") {
    set(l.tls_resumption, readBool(key, n), n);
  } else if (key == "tls_min_version") {
    set(l.tls_min_version, readEnum(key, n, kTlsVersions), n);
  } else if (key == "tls_max_version") {
    set(l.tls_max_version, readEnum(key, n, kTlsVersions), n);
  } else {
    return false;
  }
  return true;
}

void Loader::readDaemon(const toml::node& n, DaemonConfig& out) {
  const auto* table = n.as_table();
  if (table == nullptr) {
    typeError("daemon", "a table [daemon]", n);
    return;
  }
  Setting<milliseconds> initial, max;
  for (auto&& [key, value] : *table) {
    std::string_view name = key.str();
    if (name == "listen") {
      std::optional<std::string> listen = readString(name, value);
      if (!listen) {
        continue;
      }
      // "address:port" or "[v6]:port"; the address may be a name.
      bool ok = false;
      size_t colon = listen->rfind(':');
      if (colon != std::string::npos && colon > 0) {
        std::string host = listen->substr(0, colon);
        std::string port = listen->substr(colon + 1);
        bool port_ok =
            !port.empty() && port.size() <= 5 &&
            std::all_of(port.begin(), port.end(), [](char c) { return c >= '0' && c <= '9'; }) &&
            std::stoi(port) >= 1 && std::stoi(port) <= 65535;
        bool host_ok = host.front() == '['
                           ? host.back() == ']' && isIpv6(host.substr(1, host.size() - 2))
                           : isIpv4(host) || isDomainName(host);
        ok = port_ok && host_ok;
      }
      if (ok) {
        out.listen = *listen;
      } else {
        d_.error(at(value), k(name) +
                                ": expected \"address:port\" such as \"127.0.0.1:9807\" or "
                                "\"[::1]:9807\", got " +
                                quotedValue(*listen));
      }
    } else if (name == "log_level") {
      if (auto level = readEnum(name, value, kLogLevels)) {
        out.log_level = std::string(*level);
      }
    } else if (name == "auth_backoff_initial") {
      set(initial, readDuration(name, value), value);
    } else if (name == "auth_backoff_max") {
      set(max, readDuration(name, value), value);
    } else if (name == "auth_backoff_factor") {
      std::optional<double> factor;
      if (const auto* i = value.as_integer()) {
        factor = static_cast<double>(i->get());
      } else if (const auto* f = value.as_floating_point()) {
        factor = f->get();
      } else {
        typeError(name, "a number such as 2 or 1.5", value);
      }
      if (factor && !(*factor >= 1 && *factor <= kMaxBackoffFactor)) {
        std::ostringstream shown;
        shown << *factor;
        d_.error(
            at(value),
            k(name) + ": must be between 1 (the same wait every time) and 10, got " + shown.str());
        factor.reset();
      }
      if (factor) {
        out.auth_backoff.factor = *factor;
      }
    } else {
      unknownKey(key, "[daemon]", kDaemonKeys);
    }
  }
  // The cap must leave room for the first wait.
  if (initial.value) {
    out.auth_backoff.initial = *initial.value;
  }
  if (max.value) {
    out.auth_backoff.max = *max.value;
  }
  if (out.auth_backoff.max < out.auth_backoff.initial) {
    if (max.value) {
      d_.error(max.pos, k("auth_backoff_max") + ": must be at least auth_backoff_initial (" +
                            formatDuration(out.auth_backoff.initial) + "), got " +
                            formatDuration(out.auth_backoff.max));
    } else {
      d_.error(initial.pos, k("auth_backoff_initial") + ": must be at most auth_backoff_max (" +
                                formatDuration(out.auth_backoff.max) + " by default), got " +
                                formatDuration(out.auth_backoff.initial));
    }
  }
}

void Loader::readAlertmanager(const toml::node& n, AlertmanagerConfig& out) {
  const auto* table = n.as_table();
  if (table == nullptr) {
    typeError("alertmanager", "a table [alertmanager]", n);
    return;
  }
  out.alerts.labels = {
      {"instance", localHostName()}, {"job", "mailprobed"}, {"severity", "critical"}};
  bool urls_given = false;
  for (auto&& [key, value] : *table) {
    std::string_view name = key.str();
    if (name == "urls") {
      urls_given = true;
      const auto* array = value.as_array();
      if (array == nullptr) {
        typeError(name, "an array of URLs such as [\"http://127.0.0.1:9093\"]", value,
                  value.is_string() && value.as_string()->get().find('@') != std::string::npos);
        continue;
      }
      if (array->empty()) {
        d_.error(at(value), "urls: empty list; remove [alertmanager] to push no alert");
      }
      for (const toml::node& element : *array) {
        const auto* s = element.as_string();
        if (s == nullptr) {
          typeError(name, "a URL string", element);
          continue;
        }
        std::string error;
        std::optional<AlertmanagerUrl> url = parseAlertmanagerUrl(s->get(), &error);
        if (!url) {
          d_.error(at(element), "urls: " + error);
          continue;
        }
        if (!url->password.empty() && !url_password_) {
          url_password_ = at(element);  // the file now holds a secret: see its mode
        }
        bool twice = std::any_of(out.urls.begin(), out.urls.end(), [&](const AlertmanagerUrl& u) {
          return u.https == url->https && lowerAscii(u.host) == lowerAscii(url->host) &&
                 u.port == url->port && u.path == url->path;
        });
        if (twice) {
          d_.error(at(element), "urls: " + quotedValue(url->redacted()) + " is listed twice");
          continue;
        }
        out.urls.push_back(std::move(*url));
      }
    } else if (name == "timeout") {
      out.timeout = readDuration(name, value).value_or(out.timeout);
    } else if (name == "resend_interval") {
      out.alerts.resend_interval = readDuration(name, value).value_or(out.alerts.resend_interval);
    } else if (name == "for") {
      // Zero is allowed here: alert at once.
      bool zero = (value.is_integer() && value.as_integer()->get() == 0) ||
                  (value.is_string() && parseDuration(value.as_string()->get()) == milliseconds{0});
      if (value.is_integer() && value.as_integer()->get() < 0) {
        d_.error(at(value),
                 "for: must not be negative, got " + std::to_string(value.as_integer()->get()));
      } else {
        out.alerts.hold =
            zero ? milliseconds{0} : readDuration(name, value).value_or(out.alerts.hold);
      }
    } else if (name == "ca_file") {
      out.ca_file = readCaFile(name, value).value_or("");
    } else if (name == "labels") {
      readAlertLabels(value, out.alerts.labels);
    } else if (unknownKey(key, "[alertmanager]", kAlertmanagerKeys) == "urls") {
      urls_given = true;  // a typo of it: reported once
    }
  }
  if (!urls_given) {
    d_.error(at(n),
             "[alertmanager]: no urls; say where to push, e.g. urls = [\"http://127.0.0.1:9093\"]");
  }
}

// Prometheus label names ([a-zA-Z_][a-zA-Z0-9_]*, "__" reserved), non-empty values; the labels
// that identify a client alert are mailprobed's.
void Loader::readAlertLabels(const toml::node& n, std::map<std::string, std::string>& out) {
  const auto* table = n.as_table();
  if (table == nullptr) {
    typeError("labels", "a table of label names and values, such as { team = \"mail\" }", n);
    return;
  }
  for (auto&& [key, value] : *table) {
    std::string name(key.str());
    bool valid = !name.empty() && !(name[0] >= '0' && name[0] <= '9') &&
                 std::all_of(name.begin(), name.end(), [](char c) {
                   return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                          (c >= '0' && c <= '9') || c == '_';
                 });
    if (!valid || name.starts_with("__")) {
      d_.error(at(key), "labels: " + quotedValue(name) +
                            " is not a label name (letters, digits and '_', not starting with a "
                            "digit or \"__\")");
      continue;
    }
    if (contains(reservedAlertLabels(), name)) {
      d_.error(at(key), "labels: " + name +
                            " is set by mailprobed on each alert; choose another label name");
      continue;
    }
    std::optional<std::string> v = readString("labels." + name, value);
    if (v && v->empty()) {
      d_.error(at(value), "labels." + name + ": empty; remove the label instead");
    } else if (v) {
      out[name] = std::move(*v);
    }
  }
}

void Loader::readDefaults(const toml::node& n, Layer& out) {
  const auto* table = n.as_table();
  if (table == nullptr) {
    typeError("defaults", "a table [defaults]", n);
    return;
  }
  for (auto&& [key, value] : *table) {
    if (!readLayerKey(key.str(), value, out)) {
      unknownKey(key, "[defaults]", kLayerKeys);
    }
  }
}

AccountDraft Loader::readAccount(const toml::node& n, std::string where) {
  AccountDraft a;
  a.where = std::move(where);
  a.pos = at(n);
  const auto* table = n.as_table();
  if (table == nullptr) {
    typeError("account", "a table " + a.where, n);
    a.broken = true;
    return a;
  }
  for (auto&& [key, value] : *table) {
    std::string_view name = key.str();
    if (name == "user") {
      a.user_given = true;
      a.user = readString(name, value);
      if (a.user && a.user->empty()) {
        d_.error(at(value), k(name) + ": must not be empty");
        a.user.reset();
      }
      continue;
    }
    std::optional<SecretKind> kind;
    if (name == "password_file") {
      kind = SecretKind::File;
    } else if (name == "password_env") {
      kind = SecretKind::Env;
    } else if (name == "password_credential") {
      kind = SecretKind::Credential;
    } else if (name == "password") {
      kind = SecretKind::Inline;
      inline_password_ = inline_password_.value_or(at(key));
    }
    if (!kind) {
      std::optional<std::string_view> typo_of = unknownKey(key, a.where, kAccountKeys);
      if (typo_of == "user") {
        a.user_given = true;
      } else if (typo_of) {
        a.sources_broken = true;
      }
      continue;
    }
    std::optional<std::string> v = readString(name, value, *kind == SecretKind::Inline);
    if (!v) {
      a.sources_broken = true;
      continue;
    }
    a.sources.push_back({std::string(name), *kind, std::move(*v), at(value)});
  }
  if (!a.user_given) {
    d_.error(a.pos, d_.commandLine() ? "--user is required" : a.where + ": user is required");
  }
  // toml++ iterates keys in order of name: report the extra sources in file order.
  std::stable_sort(a.sources.begin(), a.sources.end(), [](const auto& x, const auto& y) {
    return std::tie(x.pos.line, x.pos.column) < std::tie(y.pos.line, y.pos.column);
  });
  for (size_t i = 1; i < a.sources.size(); ++i) {
    d_.error(a.sources[i].pos, k(a.sources[i].key) + ": give only one password source, and " +
                                   k(a.sources[0].key) + " is already set" +
                                   d_.seeLine(a.sources[0].pos, "at line"));
  }
  resolveAccount(a);
  return a;
}

void Loader::resolveAccount(AccountDraft& a) {
  if (a.sources.size() != 1) {
    return;
  }
  const AccountDraft::Source& src = a.sources[0];
  Secret secret = resolveSecret(src.kind, src.value, base_dir_, getenv_);
  a.source = secret.source;
  if (!secret.error.empty()) {
    d_.error(src.pos, k(src.key) + ": " + secret.error);
    return;
  }
  if (!secret.warning.empty()) {
    d_.warning(src.pos, k(src.key) + ": " + secret.warning);
  }
  if (src.kind == SecretKind::Inline) {
    d_.warning(src.pos, k(src.key) +
                            ": an inline password can be read by anyone who can read this file; "
                            "prefer password_credential, password_file or password_env");
  }
  a.password = std::move(secret.password);
}

EndpointDraft Loader::readEndpoint(const toml::node& n) {
  EndpointDraft e;
  e.pos = at(n);
  const auto* table = n.as_table();
  if (table == nullptr) {
    typeError("endpoint", "a [[host.endpoint]] table", n);
    return e;
  }
  for (auto&& [key, value] : *table) {
    std::string_view name = key.str();
    if (name == "service") {
      set(e.service, readEnum(name, value, kServices), value);
    } else if (name == "port") {
      set(e.port, readPort(name, value), value);
    } else if (name == "security") {
      set(e.security, readEnum(name, value, kSecurities), value);
    } else if (name == "auth") {
      set(e.auth, readEnum(name, value, kAuthPolicies), value);
    } else if (name == "starttls_required") {
      set(e.starttls_required, readBool(name, value), value);
    } else if (name == "mechanisms") {
      set(e.mechanisms, readMechanisms(value, e.mechanism_pos), value);
    } else if (!readLayerKey(name, value, e.layer)) {
      static const std::vector<std::string_view> known = concat({&kEndpointOnlyKeys, &kLayerKeys});
      std::optional<std::string_view> typo_of = unknownKey(key, "[[host.endpoint]]", known);
      if (typo_of == "service") {
        e.service.given = true;
      } else if (typo_of == "port") {
        e.port.given = true;
      }
    }
  }
  return e;
}

std::optional<HostDraft> Loader::readHost(const toml::node& n) {
  const auto* table = n.as_table();
  if (table == nullptr) {
    typeError("host", "a [[host]] table", n);
    return std::nullopt;
  }
  HostDraft h;
  h.pos = at(n);
  for (auto&& [key, value] : *table) {
    std::string_view name = key.str();
    if (name == "name") {
      std::optional<std::string> host = readString(name, value);
      if (host && !isDomainName(*host) && !isIpv4(*host) && !isIpv6(*host)) {
        d_.error(at(value),
                 k(name) + ": " + quotedValue(*host) + " is not a host name or IP address");
        host.reset();
      }
      set(h.name, std::move(host), value);
    } else if (name == "addresses") {
      set(h.addresses, readAddresses(name, value), value);
    } else if (name == "account") {
      h.account = readAccount(value, "[host.account]");
    } else if (name == "relay") {
      h.relay = readRelay(value);
    } else if (name == "endpoint") {
      h.endpoints_given = true;
      const auto* array = value.as_array();
      if (array == nullptr) {
        typeError(name, "[[host.endpoint]] tables", value);
      } else if (array->empty()) {
        d_.error(at(value), k(name) +
                                ": empty list; remove it to probe the platform's five "
                                "default endpoints");
      } else {
        for (const toml::node& element : *array) {
          h.endpoints.push_back(readEndpoint(element));
        }
      }
    } else if (!readLayerKey(name, value, h.layer)) {
      static const std::vector<std::string_view> known = concat({&kHostOnlyKeys, &kLayerKeys});
      if (unknownKey(key, "[[host]]", known) == "name") {
        h.name.given = true;
      }
    }
  }
  if (!h.name.given) {
    d_.error(h.pos, d_.commandLine() ? "--host is required" : "[[host]]: name is required");
  }
  return h;
}

std::optional<std::string> Loader::readMailAddress(std::string_view key, const toml::node& n,
                                                   bool empty_ok) {
  std::optional<std::string> s = readString(key, n);
  if (!s || (empty_ok && s->empty())) {
    return s;
  }
  if (!isMailAddress(*s)) {
    d_.error(at(n), k(key) + ": " + quotedValue(*s) +
                        " is not a mail address like \"user@example.org\"" +
                        (key == "sender" ? " (or \"\" for the null sender <>)" : ""));
    return std::nullopt;
  }
  return s;
}

template <class F>
void Loader::readTables(std::string_view key, std::string_view what, const toml::node& n, F read) {
  const auto* array = n.as_array();
  if (array == nullptr) {
    typeError(key, std::string(what) + " tables", n);
    return;
  }
  for (const toml::node& element : *array) {
    read(element);
  }
}

// Letters, digits, '.', '_' and '-': a vantage name becomes a label value and a word on pages.
bool isVantageName(std::string_view s) {
  return !s.empty() && s.size() <= 64 && std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '_' || c == '-';
  });
}

RelayDraft Loader::readRelay(const toml::node& n) {
  RelayDraft r;
  r.pos = at(n);
  const auto* table = n.as_table();
  if (table == nullptr) {
    typeError("relay", "a table [host.relay]", n);
    r.broken = true;
    return r;
  }
  for (auto&& [key, value] : *table) {
    std::string_view name = key.str();
    if (name == "local_recipient" || name == "outside_recipient") {
      set(name == "local_recipient" ? r.local_recipient : r.outside_recipient,
          readMailAddress(name, value, false), value);
    } else if (name == "sender" || name == "signed_in_sender") {
      set(name == "sender" ? r.sender : r.signed_in_sender, readMailAddress(name, value, true),
          value);
    } else if (name == "local_domains") {
      std::optional<std::vector<std::string>> domains;
      if (const auto* array = value.as_array(); array == nullptr || array->empty()) {
        typeError(name, "a non-empty array of domain names such as [\"example.org\"]", value);
      } else {
        domains.emplace();
        for (const toml::node& element : *array) {
          const auto* d = element.as_string();
          if (d == nullptr || !isDomainName(d->get())) {
            d_.error(at(element), k(name) + ": " + describe(element) + " is not a domain name");
            domains.reset();
            break;
          }
          domains->push_back(lowerAscii(d->get()));
        }
      }
      set(r.local_domains, std::move(domains), value);
    } else if (name == "sign_in") {
      set(r.sign_in, readBool(name, value), value);
    } else if (name == "interval") {
      set(r.interval, readDuration(name, value), value);
    } else if (name == "ports") {
      std::optional<std::vector<int64_t>> ports;
      if (const auto* array = value.as_array(); array == nullptr || array->empty()) {
        typeError(name, "a non-empty array of port numbers such as [25, 587]", value);
      } else {
        ports.emplace();
        for (const toml::node& element : *array) {
          std::optional<int64_t> port = readPort(name, element);
          if (port && std::find(ports->begin(), ports->end(), *port) != ports->end()) {
            d_.error(at(element), k(name) + ": " + std::to_string(*port) + " is listed twice");
            port.reset();
          }
          if (!port) {
            ports.reset();
            break;
          }
          ports->push_back(*port);
          r.port_pos.push_back(at(element));
        }
      }
      set(r.ports, std::move(ports), value);
    } else if (name == "vantage") {
      r.vantages_given = true;
      readTables(name, "[[host.relay.vantage]]", value,
                 [&](const toml::node& e) { r.vantages.push_back(readVantage(e)); });
    } else if (name == "policy") {
      readTables(name, "[[host.relay.policy]]", value,
                 [&](const toml::node& e) { r.policies.push_back(readPolicy(e)); });
    } else {
      std::optional<std::string_view> typo_of = unknownKey(key, "[host.relay]", kRelayKeys);
      if (typo_of == "local_recipient") {
        r.local_recipient.given = true;
      } else if (typo_of == "vantage") {
        r.vantages_given = true;
      }
    }
  }
  return r;
}

VantageDraft Loader::readVantage(const toml::node& n) {
  VantageDraft v;
  v.pos = at(n);
  const auto* table = n.as_table();
  if (table == nullptr) {
    typeError("vantage", "a [[host.relay.vantage]] table", n);
    v.name.given = v.source_address.given = true;
    return v;
  }
  for (auto&& [key, value] : *table) {
    std::string_view name = key.str();
    if (name == "name") {
      std::optional<std::string> vantage = readString(name, value);
      if (vantage && !isVantageName(*vantage)) {
        d_.error(at(value), k(name) + ": " + quotedValue(*vantage) +
                                " is not a vantage name (letters, digits, '.', '_' and '-', at "
                                "most 64)");
        vantage.reset();
      }
      set(v.name, std::move(vantage), value);
    } else if (name == "source_address") {
      std::optional<std::string> address = readString(name, value);
      if (address && !isIpv4(*address) && !isIpv6(*address)) {
        d_.error(at(value),
                 k(name) + ": " + quotedValue(*address) + " is not an IPv4 or IPv6 address");
        address.reset();
      } else if (address) {
        // Checked now: a vantage the machine lacks is a config error, not a stream of failures.
        std::string why = has_address_ ? has_address_(*address) : "";
        if (!why.empty()) {
          d_.error(at(value), k(name) + ": " + *address + " is not an address of this machine (" +
                                  why + "); a vantage is a local address the probe sends from");
          address.reset();
        }
      }
      set(v.source_address, std::move(address), value);
    } else if (name == "trusted") {
      set(v.trusted, readBool(name, value), value);
    } else {
      std::optional<std::string_view> typo_of =
          unknownKey(key, "[[host.relay.vantage]]", kVantageKeys);
      if (typo_of == "name") {
        v.name.given = true;
      } else if (typo_of == "source_address") {
        v.source_address.given = true;
      }
    }
  }
  if (!v.name.given) {
    d_.error(v.pos, "[[host.relay.vantage]]: name is required");
  }
  if (!v.source_address.given) {
    d_.error(v.pos,
             "[[host.relay.vantage]]: source_address is required (an address of this machine)");
  }
  return v;
}

PolicyDraft Loader::readPolicy(const toml::node& n) {
  PolicyDraft p;
  p.pos = at(n);
  const auto* table = n.as_table();
  if (table == nullptr) {
    typeError("policy", "a [[host.relay.policy]] table", n);
    p.port.given = true;
    return p;
  }
  for (auto&& [key, value] : *table) {
    std::string_view name = key.str();
    if (name == "port") {
      set(p.port, readPort(name, value), value);
    } else if (name == "untrusted") {
      set(p.untrusted, readEnum(name, value, kUntrustedReach), value);
    } else if (name == "trusted") {
      set(p.trusted, readEnum(name, value, kTrustedReach), value);
    } else if (name == "signed_in") {
      set(p.signed_in, readEnum(name, value, kSignedInReach), value);
    } else if (unknownKey(key, "[[host.relay.policy]]", kPolicyKeys) == "port") {
      p.port.given = true;
    }
  }
  if (!p.port.given) {
    d_.error(p.pos, "[[host.relay.policy]]: port is required");
  }
  return p;
}

bool Loader::makeRelay(const HostDraft& host, HostConfig& out, bool endpoints_ok) {
  const RelayDraft& r = *host.relay;
  if (r.broken) {
    return false;
  }
  bool ok = true;
  std::string host_label = "host " + quotedValue(out.name);

  // The host's SMTP endpoints, one per port (the first listed), in config order.
  std::vector<const EndpointConfig*> smtp;
  for (const EndpointConfig& e : out.endpoints) {
    bool seen = std::any_of(smtp.begin(), smtp.end(),
                            [&](const EndpointConfig* x) { return x->spec.port == e.spec.port; });
    if (e.spec.service == Service::Smtp && !seen) {
      smtp.push_back(&e);
    }
  }
  auto endpointFor = [&](int64_t port) -> const EndpointConfig* {
    for (const EndpointConfig* e : smtp) {
      if (e->spec.port == port) {
        return e;
      }
    }
    return nullptr;
  };
  std::string smtp_ports;
  for (const EndpointConfig* e : smtp) {
    smtp_ports += (smtp_ports.empty() ? "" : ", ") + std::to_string(e->spec.port);
  }
  if (smtp.empty()) {
    if (endpoints_ok) {
      d_.error(r.pos, "[host.relay]: " + host_label + " has no smtp endpoint to check");
    }
    return false;
  }

  std::vector<const EndpointConfig*> checked;
  if (r.ports.value) {
    for (size_t i = 0; i < r.ports.value->size(); ++i) {
      int64_t port = (*r.ports.value)[i];
      if (const EndpointConfig* e = endpointFor(port)) {
        checked.push_back(e);
      } else if (endpoints_ok) {
        d_.error(r.port_pos[i], k("ports") + ": " + std::to_string(port) +
                                    " is not an smtp endpoint of " + host_label + " (" +
                                    smtp_ports + ")");
        ok = false;
      }
    }
  } else if (!r.ports.given) {
    checked = smtp;
  } else {
    ok = false;
  }

  // Recipients: the local one must be local, the outside one must not.
  if (!r.local_recipient.given) {
    d_.error(r.pos,
             "[host.relay]: local_recipient is required: an existing mailbox of the platform "
             "(it is only asked at RCPT TO, never sent anything)");
    ok = false;
  }
  std::vector<std::string> domains;
  auto domainOf = [](const std::string& address) {
    return lowerAscii(address.substr(address.rfind('@') + 1));
  };
  if (r.local_domains.value) {
    domains = *r.local_domains.value;
  } else if (r.local_recipient.value) {
    domains = {domainOf(*r.local_recipient.value)};
  }
  auto isLocal = [&](const std::string& address) {
    return std::find(domains.begin(), domains.end(), domainOf(address)) != domains.end();
  };
  if (r.local_recipient.value && r.local_domains.value && !isLocal(*r.local_recipient.value)) {
    d_.error(r.local_recipient.pos,
             k("local_recipient") + ": " + quotedValue(*r.local_recipient.value) +
                 " is not in local_domains" + d_.seeLine(r.local_domains.pos, "at line"));
    ok = false;
  }
  std::string outside = r.outside_recipient.value.value_or(RelaySpec{}.outside_recipient);
  if (r.outside_recipient.given && !r.outside_recipient.value) {
    ok = false;
  } else if (!domains.empty() && isLocal(outside)) {
    const Pos& where = r.outside_recipient.given
                           ? r.outside_recipient.pos
                           : (r.local_domains.given ? r.local_domains.pos : r.local_recipient.pos);
    d_.error(where, k("outside_recipient") + ": " + quotedValue(outside) +
                        " is in a local domain of the platform: it would not test relaying; give "
                        "an address outside " +
                        domains.front());
    ok = false;
  } else if (!isReservedDomain(domainOf(outside))) {
    d_.warning(r.outside_recipient.pos,
               k("outside_recipient") + ": " + quotedValue(outside) +
                   " is not on a reserved domain (example.com, example.net): nothing is ever sent "
                   "to it (no DATA), but an open relay would accept it at RCPT TO");
  }

  // Vantages: unique names and addresses.
  std::vector<RelayVantage> vantages;
  std::map<std::string, Pos> names, sources;
  for (const VantageDraft& v : r.vantages) {
    if (!v.name.value || !v.source_address.value) {
      ok = false;
      continue;
    }
    if (auto [it, fresh] = names.emplace(*v.name.value, v.name.pos); !fresh) {
      d_.error(v.name.pos, "duplicate vantage " + quotedValue(*v.name.value) +
                               d_.seeLine(it->second, "first defined at line"));
      ok = false;
      continue;
    }
    if (auto [it, fresh] = sources.emplace(*v.source_address.value, v.source_address.pos); !fresh) {
      d_.error(v.source_address.pos, k("source_address") + ": " + *v.source_address.value +
                                         " is already another vantage's" +
                                         d_.seeLine(it->second, "at line"));
      ok = false;
      continue;
    }
    vantages.push_back({*v.name.value, *v.source_address.value, v.trusted.value.value_or(false)});
  }
  if (r.vantages.empty() && !r.vantages_given) {
    d_.error(r.pos,
             "[host.relay]: at least one [[host.relay.vantage]] is required: a local address to "
             "send from, inside the trusted networks (trusted = true) or not");
    ok = false;
  }

  // Signed-in cells need the probe account: every endpoint that logs in already does, and
  // relayAuthStates() leaves signed_in out where the endpoint never logs in.
  bool sign_in = r.sign_in.value.value_or(true);

  // Per-port policies over the platform's defaults.
  std::map<int64_t, const PolicyDraft*> policies;
  for (const PolicyDraft& p : r.policies) {
    if (!p.port.value) {
      ok = false;
      continue;
    }
    bool is_checked = std::any_of(checked.begin(), checked.end(), [&](const EndpointConfig* e) {
      return e->spec.port == *p.port.value;
    });
    if (!is_checked) {
      if (endpoints_ok) {
        d_.error(p.port.pos,
                 k("port") + ": " + std::to_string(*p.port.value) +
                     (endpointFor(*p.port.value) != nullptr
                          ? " is not among the relay ports" + d_.seeLine(r.ports.pos, "at line")
                          : " is not an smtp endpoint of " + host_label + " (" + smtp_ports + ")"));
      }
      ok = false;
      continue;
    }
    if (auto [it, fresh] = policies.emplace(*p.port.value, &p); !fresh) {
      d_.error(p.port.pos, "duplicate relay policy for port " + std::to_string(*p.port.value) +
                               d_.seeLine(it->second->port.pos, "first defined at line"));
      ok = false;
    }
    if ((p.untrusted.given && !p.untrusted.value) || (p.trusted.given && !p.trusted.value) ||
        (p.signed_in.given && !p.signed_in.value)) {
      ok = false;
    }
  }
  if (r.interval.given && !r.interval.value) {
    ok = false;
  }
  for (const auto* s : {&r.sender, &r.signed_in_sender}) {
    ok = ok && !(s->given && !s->value);
  }
  // A misspelt local_recipient counts as given (one error, not two) but has no value.
  if (!ok || !r.local_recipient.value) {
    return false;
  }

  for (const EndpointConfig* e : checked) {
    RelayConfig rc;
    rc.interval = r.interval.value.value_or(kDefaultRelayInterval);
    RelaySpec& spec = rc.spec;
    spec.endpoint = e->spec;
    spec.endpoint.source_address.clear();
    spec.vantages = vantages;
    spec.local_recipient = *r.local_recipient.value;
    spec.outside_recipient = outside;
    spec.sender = r.sender.value.value_or("");
    spec.signed_in_sender = r.signed_in_sender.value.value_or("");
    spec.sign_in = sign_in;
    spec.policy = defaultRelayPolicy(e->spec);
    if (auto it = policies.find(e->spec.port); it != policies.end()) {
      const PolicyDraft& p = *it->second;
      spec.policy.untrusted = p.untrusted.value.value_or(spec.policy.untrusted);
      spec.policy.trusted = p.trusted.value.value_or(spec.policy.trusted);
      spec.policy.signed_in = p.signed_in.value.value_or(spec.policy.signed_in);
    }
    out.relay.push_back(std::move(rc));
  }
  return true;
}

std::optional<EndpointConfig> Loader::makeEndpoint(const HostDraft& host, const EndpointDraft& e,
                                                   const Layer& defaults) {
  if (!e.service.given) {
    d_.error(e.pos, "[[host.endpoint]]: service is required (\"imap\" or \"smtp\")");
  }
  if (!e.port.given) {
    d_.error(e.pos, "[[host.endpoint]]: port is required");
  }
  if (!e.service.value || !e.port.value) {
    return std::nullopt;
  }
  EndpointConfig out;
  EndpointSpec& spec = out.spec;
  spec.host = host.name.value.value_or("");
  spec.service = *e.service.value;
  spec.port = static_cast<uint16_t>(*e.port.value);
  if (e.security.value) {
    spec.security = *e.security.value;
  } else if (e.security.given) {
    return std::nullopt;
  } else if (auto by_port = defaultSecurityForPort(spec.port)) {
    spec.security = *by_port;
  } else {
    d_.error(e.port.pos, "security is required for port " + std::to_string(spec.port) +
                             ": none, starttls or tls");
    return std::nullopt;
  }
  // Explicit endpoints get the platform's rules for their port: SMTP on 25 is the MX, where
  // STARTTLS and login are optional; everything else is a client endpoint that needs both.
  bool mx = spec.service == Service::Smtp && spec.port == 25;
  spec.starttls_required = e.starttls_required.value.value_or(!mx);
  spec.auth = e.auth.value.value_or(mx ? AuthPolicy::Optional : AuthPolicy::Required);
  bool ok = true;
  if (e.starttls_required.given && spec.security != Security::StartTls) {
    d_.error(e.starttls_required.pos,
             k("starttls_required") + ": only applies to security = \"starttls\"");
    ok = false;
  }
  if (spec.security == Security::None && spec.auth != AuthPolicy::Skip) {
    if (e.auth.given) {
      d_.error(e.auth.pos, k("auth") +
                               ": a login over security = \"none\" would send the password in "
                               "clear; set auth = \"none\"");
    } else {
      d_.error(e.security.pos, k("security") +
                                   ": \"none\" needs auth = \"none\": the default auth = \"" +
                                   std::string(nameOf(kAuthPolicies, spec.auth)) +
                                   "\" would send the password in clear");
    }
    ok = false;
  }
  if (e.mechanisms.value) {
    spec.mechanisms = *e.mechanisms.value;
    for (size_t i = 0; i < spec.mechanisms.size(); ++i) {
      if (spec.service == Service::Smtp && spec.mechanisms[i] == "LOGIN-COMMAND") {
        d_.error(e.mechanism_pos[i], k("mechanisms") +
                                         ": \"LOGIN-COMMAND\" is the IMAP LOGIN command; SMTP "
                                         "has no such thing");
        ok = false;
      }
    }
    if (spec.auth == AuthPolicy::Skip && ok) {
      d_.error(e.mechanisms.pos, k("mechanisms") + ": useless with auth = \"none\"");
      ok = false;
    }
  }
  if (host.addresses.value) {
    spec.addresses = *host.addresses.value;
  }

  const Layer& h = host.layer;
  const Layer& x = e.layer;
  out.interval = pick(x.interval, h.interval, defaults.interval).value.value_or(out.interval);
  spec.timeouts.total =
      pick(x.timeout, h.timeout, defaults.timeout).value.value_or(spec.timeouts.total);
  spec.timeouts.connect = pick(x.connect_timeout, h.connect_timeout, defaults.connect_timeout)
                              .value.value_or(spec.timeouts.connect);
  spec.timeouts.phase = pick(x.phase_timeout, h.phase_timeout, defaults.phase_timeout)
                            .value.value_or(spec.timeouts.phase);
  spec.timeouts.resolve = pick(x.resolve_timeout, h.resolve_timeout, defaults.resolve_timeout)
                              .value.value_or(spec.timeouts.resolve);
  spec.tls.ca_file = pick(x.ca_file, h.ca_file, defaults.ca_file).value.value_or("");
  spec.ehlo_name =
      pick(x.ehlo_name, h.ehlo_name, defaults.ehlo_name).value.value_or(spec.ehlo_name);
  spec.tls.login_despite_invalid_cert =
      pick(x.login_despite_invalid_cert, h.login_despite_invalid_cert,
           defaults.login_despite_invalid_cert)
          .value.value_or(spec.tls.login_despite_invalid_cert);
  spec.tls.resumption = pick(x.tls_resumption, h.tls_resumption, defaults.tls_resumption)
                            .value.value_or(spec.tls.resumption);
  spec.examine_inbox = false;
  if (spec.service == Service::Imap) {
    spec.examine_inbox =
        pick(x.examine_inbox, h.examine_inbox, defaults.examine_inbox).value.value_or(false);
  } else if (x.examine_inbox.value.value_or(false)) {
    d_.error(x.examine_inbox.pos, k("examine_inbox") + ": only applies to imap endpoints");
    ok = false;
  }

  const Setting<AddressFamily>& family = pick(x.family, h.family, defaults.family);
  spec.family = family.value.value_or(AddressFamily::Any);
  auto wrongFamily = [&](const std::string& address) {
    return (spec.family == AddressFamily::V4 && !isIpv4(address)) ||
           (spec.family == AddressFamily::V6 && !isIpv6(address));
  };
  std::string family_name(nameOf(kFamilies, spec.family));
  if (!spec.addresses.empty() &&
      std::all_of(spec.addresses.begin(), spec.addresses.end(), wrongFamily)) {
    d_.error(family.pos, k("family") + ": \"" + family_name + "\" leaves none of the host's " +
                             k("addresses") + " to probe" +
                             d_.seeLine(host.addresses.pos, "addresses at line"));
    ok = false;
  }
  const Setting<std::string>& source =
      pick(x.source_address, h.source_address, defaults.source_address);
  spec.source_address = source.value.value_or("");
  if (!spec.source_address.empty() && wrongFamily(spec.source_address)) {
    d_.error(source.pos, k("source_address") + ": " + quotedValue(spec.source_address) +
                             " does not match family = \"" + family_name + "\"");
    ok = false;
  }

  const Setting<int>& tls_min =
      pick(x.tls_min_version, h.tls_min_version, defaults.tls_min_version);
  const Setting<int>& tls_max =
      pick(x.tls_max_version, h.tls_max_version, defaults.tls_max_version);
  spec.tls.min_version = tls_min.value.value_or(0);
  spec.tls.max_version = tls_max.value.value_or(0);
  if (spec.tls.min_version != 0 && spec.tls.max_version != 0 &&
      spec.tls.max_version < spec.tls.min_version) {
    d_.error(tls_max.pos, k("tls_max_version") + ": " +
                              std::string(nameOf(kTlsVersions, spec.tls.max_version)) +
                              " is lower than tls_min_version = \"" +
                              std::string(nameOf(kTlsVersions, spec.tls.min_version)) + "\"");
    ok = false;
  }
  if (!ok) {
    return std::nullopt;
  }
  return out;
}

std::optional<HostConfig> Loader::makeHost(HostDraft& host, const Layer& defaults,
                                           std::optional<AccountDraft>& top_account) {
  HostConfig out;
  out.name = host.name.value.value_or("");
  bool ok = host.name.value.has_value();

  std::vector<EndpointDraft> defaults_five;
  if (!host.endpoints_given) {
    for (const DefaultEndpoint& p : platformEndpoints()) {
      EndpointDraft e;
      e.pos = host.pos;
      e.service = {p.service, host.pos, true};
      e.port = {p.port, host.pos, true};
      e.security = {p.security, host.pos, true};
      e.auth = {p.auth, host.pos, true};
      // starttls_required is left to the port rule, which gives the platform's answer.
      defaults_five.push_back(std::move(e));
    }
  }
  const std::vector<EndpointDraft>& drafts = host.endpoints_given ? host.endpoints : defaults_five;
  std::map<std::tuple<uint16_t, Security, std::string>, Pos> seen;
  bool endpoints_ok = true;
  for (const EndpointDraft& draft : drafts) {
    std::optional<EndpointConfig> endpoint = makeEndpoint(host, draft, defaults);
    if (!endpoint) {
      ok = false;
      endpoints_ok = false;
      continue;
    }
    const EndpointSpec& spec = endpoint->spec;
    auto [it, inserted] =
        seen.emplace(std::tuple(spec.port, spec.security, spec.source_address), draft.pos);
    if (!inserted) {
      d_.error(draft.pos, "duplicate endpoint " + describeEndpoint(spec) + " for host " +
                              quotedValue(out.name) +
                              d_.seeLine(it->second, "first defined at line"));
      ok = false;
      continue;
    }
    out.endpoints.push_back(std::move(*endpoint));
  }

  // The host's own account replaces [account] as a whole: a user never gets another
  // account's password.
  AccountDraft* account = host.account ? &*host.account : (top_account ? &*top_account : nullptr);
  // Read from the drafts, so that an endpoint with an unrelated error still counts.
  const EndpointDraft* logs_in = nullptr;
  AuthPolicy logs_in_auth = AuthPolicy::Required;
  for (const EndpointDraft& draft : drafts) {
    if (draft.auth.given && !draft.auth.value) {
      continue;  // a bad auth value, already reported
    }
    bool mx = draft.service.value == Service::Smtp && draft.port.value == 25;
    AuthPolicy auth = draft.auth.value.value_or(mx ? AuthPolicy::Optional : AuthPolicy::Required);
    if (auth != AuthPolicy::Skip) {
      logs_in = &draft;
      logs_in_auth = auth;
      break;
    }
  }
  std::string host_label = host.name.value ? "host " + quotedValue(*host.name.value)
                                           : "[[host]]" + d_.seeLine(host.pos, "at line");
  if (logs_in != nullptr) {
    std::string why = describeDraft(*logs_in) + " logs in (auth = \"" +
                      std::string(nameOf(kAuthPolicies, logs_in_auth)) + "\")";
    if (account == nullptr) {
      d_.error(host.name.given ? host.name.pos : host.pos,
               d_.commandLine() ? "--user and a password are required to log in (or --auth none)"
                                : host_label + ": " + why +
                                      ", but there is no [account] or [host.account]; add "
                                      "one, or set auth = \"none\"");
      ok = false;
    } else if (!account->broken && account->sources.empty() && !account->sources_broken) {
      if (!account->missing_reported) {
        account->missing_reported = true;
        d_.error(account->pos,
                 d_.commandLine()
                     ? "a password is required to log in: --password-file, --password-env or "
                       "--password-credential (or --auth none)"
                     : account->where +
                           ": no password: set one of password_credential, password_file, "
                           "password_env or password (" +
                           host_label + " logs in on " + describeDraft(*logs_in) + ")");
      }
      ok = false;
    }
  }
  if (account != nullptr && account->user && account->password) {
    out.account.user = *account->user;
    out.account.password = *account->password;
    out.account_source = account->source;
  }
  if (host.relay && !makeRelay(host, out, endpoints_ok && host.name.value)) {
    ok = false;
  }
  if (!ok) {
    return std::nullopt;
  }
  return out;
}

std::optional<Config> Loader::build(const toml::table& root) {
  Config config;
  Layer defaults;
  std::optional<AccountDraft> top_account;
  const toml::node* hosts = nullptr;
  Pos hosts_pos;
  for (auto&& [key, value] : root) {
    std::string_view name = key.str();
    if (name == "daemon") {
      readDaemon(value, config.daemon);
    } else if (name == "defaults") {
      readDefaults(value, defaults);
    } else if (name == "account") {
      top_account = readAccount(value, "[account]");
    } else if (name == "alertmanager") {
      readAlertmanager(value, config.alertmanager);
    } else if (name == "host") {
      hosts = &value;
      hosts_pos = at(key);
    } else if (isProfileKey(name)) {
      continue;  // read by loadProfiles
    } else {
      std::string message = "unknown ";
      if (value.is_table()) {
        message += "table [" + std::string(name) + "]";
      } else if (value.is_array_of_tables()) {
        message += "table [[" + std::string(name) + "]]";
      } else {
        message += "key '" + std::string(name) + "' at the top level";
      }
      if (auto suggestion = closestWord(name, kTopKeys)) {
        message += *suggestion == "host" ? "; did you mean [[host]]?"
                                         : "; did you mean [" + std::string(*suggestion) + "]?";
      } else if (contains(kLayerKeys, name)) {
        message += "; it belongs in [defaults]";
      } else if (contains(kDaemonKeys, name)) {
        message += "; it belongs in [daemon]";
      }
      d_.error(at(key), std::move(message));
    }
  }

  std::vector<HostDraft> drafts;
  if (hosts == nullptr) {
    d_.error({1, 1}, "no [[host]] to probe: add at least one [[host]] table");
  } else if (hosts->is_table()) {
    d_.error(hosts_pos, "host: write [[host]] (an array of tables), not [host]");
  } else if (const auto* array = hosts->as_array()) {
    if (array->empty()) {
      d_.error(at(*hosts), "host: empty list: add at least one [[host]] table");
    }
    for (const toml::node& element : *array) {
      if (auto draft = readHost(element)) {
        drafts.push_back(std::move(*draft));
      }
    }
  } else {
    typeError("host", "[[host]] tables", *hosts);
  }

  // Two tables for the same name and addresses would probe the same thing twice under one
  // label; different addresses (backends of a pool) are fine.
  std::map<std::pair<std::string, std::vector<std::string>>, Pos> seen;
  for (HostDraft& draft : drafts) {
    if (draft.name.value) {
      std::vector<std::string> addresses =
          draft.addresses.value.value_or(std::vector<std::string>{});
      std::sort(addresses.begin(), addresses.end());
      auto [it, inserted] =
          seen.emplace(std::pair(lowerAscii(*draft.name.value), addresses), draft.name.pos);
      if (!inserted) {
        d_.error(draft.name.pos, "duplicate host " + quotedValue(*draft.name.value) +
                                     d_.seeLine(it->second, "first defined at line") +
                                     "; give different addresses or merge the tables");
      }
    }
    if (auto host = makeHost(draft, defaults, top_account)) {
      config.hosts.push_back(std::move(*host));
    }
  }
  if (d_.failed()) {
    return std::nullopt;
  }
  return config;
}

// Whether `line` assigns the key `password` (bare, quoted or dotted, as in an inline table),
// and not password_file or another key that merely starts with the word; or holds a URL with
// credentials (an Alertmanager URL's user:password).
bool setsPasswordKey(std::string_view line) {
  if (size_t scheme = line.find("://");
      scheme != std::string_view::npos && line.find('@', scheme) != std::string_view::npos) {
    return true;
  }
  auto identifier = [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-';
  };
  for (size_t at = line.find("password"); at != std::string_view::npos;
       at = line.find("password", at + 1)) {
    if (at > 0 && identifier(line[at - 1])) {
      continue;
    }
    size_t next = line.find_first_not_of(" \t\"'", at + 8);
    if (next != std::string_view::npos && line[next] == '=' &&
        (at + 8 == line.size() || !identifier(line[at + 8]))) {
      return true;
    }
  }
  return false;
}

// toml++ may quote part of the offending text ("saw 'a'", "unknown escape sequence '\q'"):
// when the error sits in a password's value (or a URL with credentials), that text may be the
// secret. Finds the key/value pair the error line belongs to and says whether its key is
// `password` (or its value a URL with credentials).
bool inPasswordValue(std::string_view text, uint32_t error_line) {
  std::vector<std::string_view> lines;
  size_t start = 0;
  while (start <= text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string_view::npos) {
      end = text.size();
    }
    lines.push_back(text.substr(start, end - start));
    start = end + 1;
  }
  if (error_line == 0 || error_line > lines.size()) {
    return std::any_of(lines.begin(), lines.end(), setsPasswordKey);
  }
  if (setsPasswordKey(lines[error_line - 1])) {
    return true;  // also catches inline tables: account = { password = "..." }
  }
  for (size_t i = error_line; i-- > 0;) {
    std::string_view line = lines[i];
    size_t first = line.find_first_not_of(" \t");
    if (first == std::string_view::npos) {
      continue;
    }
    if (line[first] == '[') {
      return false;
    }
    size_t eq = line.find('=');
    if (eq == std::string_view::npos) {
      continue;  // inside a multi-line string or array
    }
    std::string_view k = line.substr(first, eq - first);
    bool key_like = std::all_of(k.begin(), k.end(), [](char c) {
      return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
             c == '_' || c == '-' || c == '.' || c == ' ' || c == '\t' || c == '"' || c == '\'';
    });
    if (key_like) {
      return setsPasswordKey(line);
    }
  }
  return false;
}

LoadResult loadInternal(std::string_view text, const std::string& path, const GetEnv& getenv,
                        const AddressCheck& has_address, std::optional<mode_t> file_mode) {
  LoadResult result;
  toml::table root;
  try {
    root = toml::parse(text, std::string_view(path));
  } catch (const toml::parse_error& e) {
    Pos p = at(e.source());
    std::string message(e.description());
    if (inPasswordValue(text, p.line)) {
      message =
          "syntax error in a password value (details withheld: they could show part of "
          "the password)";
    }
    result.errors.push_back({path, p.line, p.column, std::move(message)});
    return result;
  }
  Diagnostics diag(path, false);
  Loader loader(diag, getenv, directoryOf(path), has_address);
  std::optional<Config> config = loader.build(root);
  if (file_mode && (*file_mode & (S_IRGRP | S_IROTH))) {
    std::string readable = std::string((*file_mode & S_IROTH) ? "every user" : "its group") +
                           " (mode " + octalMode(*file_mode) + "); chmod 600 it";
    if (loader.inlinePassword()) {
      diag.warning(*loader.inlinePassword(),
                   "this file holds an inline password and is readable by " + readable +
                       " or move the password to a credential or file");
    }
    if (loader.urlPassword()) {
      diag.warning(
          *loader.urlPassword(),
          "this file holds the password of an Alertmanager URL and is readable by " + readable);
    }
  }
  result.errors = diag.takeErrors();
  ProfileLoad profiles = loadProfiles(root, path);
  if (!profiles.ok()) {
    result.errors.insert(result.errors.end(), profiles.errors.begin(), profiles.errors.end());
    std::stable_sort(result.errors.begin(), result.errors.end(),
                     [](const ConfigError& a, const ConfigError& b) {
                       return std::tie(a.line, a.column) < std::tie(b.line, b.column);
                     });
  }
  if (config && result.errors.empty()) {
    config->profiles = std::move(profiles.profiles);
    config->path = path;
    config->warnings = diag.takeWarnings();
    result.config = std::move(config);
  }
  return result;
}

}  // namespace

AddressCheck bindableAddressCheck() {
  return [](const std::string& address) -> std::string {
    sockaddr_storage a{};
    socklen_t length = 0;
    auto* v4 = reinterpret_cast<sockaddr_in*>(&a);
    auto* v6 = reinterpret_cast<sockaddr_in6*>(&a);
    if (inet_pton(AF_INET, address.c_str(), &v4->sin_addr) == 1) {
      v4->sin_family = AF_INET;
      length = sizeof *v4;
    } else if (inet_pton(AF_INET6, address.c_str(), &v6->sin6_addr) == 1) {
      v6->sin6_family = AF_INET6;
      length = sizeof *v6;
    } else {
      return "not an IP address";
    }
    int fd = ::socket(a.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
      return std::strerror(errno);
    }
    std::string why;
    if (::bind(fd, reinterpret_cast<const sockaddr*>(&a), length) != 0) {
      why = std::strerror(errno);
    }
    ::close(fd);
    return why;
  };
}

LoadResult loadConfigFromString(std::string_view toml, const std::string& path_for_errors,
                                const GetEnv& getenv, const AddressCheck& has_address) {
  return loadInternal(toml, path_for_errors, getenv, has_address, std::nullopt);
}

LoadResult loadConfig(const std::string& path, const GetEnv& getenv,
                      const AddressCheck& has_address) {
  std::string text, error;
  mode_t mode = 0;
  if (!readSmallFile(path, 16 << 20, text, error, &mode)) {
    // readSmallFile names the path; the error's file field already does.
    std::string prefix = "cannot read " + path + ": ";
    if (error.starts_with(prefix)) {
      error = "cannot read: " + error.substr(prefix.size());
    }
    return LoadResult{std::nullopt, {ConfigError{path, 0, 0, error}}};
  }
  return loadInternal(text, path, getenv, has_address, mode);
}

LoadResult adHocConfig(const AdHocOptions& o, const GetEnv& getenv) {
  Diagnostics diag("command line", true);
  if (o.host.empty()) {
    diag.error({}, "--host is required");
    return LoadResult{std::nullopt, diag.takeErrors()};
  }
  auto strings = [](const std::vector<std::string>& v) {
    toml::array a;
    for (const std::string& s : v) {
      a.push_back(s);
    }
    return a;
  };

  toml::table host{{"name", o.host}};
  if (!o.addresses.empty()) {
    host.insert("addresses", strings(o.addresses));
  }
  const std::pair<std::string_view, const std::string*> layered[] = {
      {"ca_file", &o.ca_file},
      {"source_address", &o.source_address},
      {"family", &o.family},
      {"ehlo_name", &o.ehlo_name},
      {"timeout", &o.timeout},
      {"tls_min_version", &o.tls_min_version},
      {"tls_max_version", &o.tls_max_version}};
  for (const auto& [key, value] : layered) {
    if (!value->empty()) {
      host.insert(key, *value);
    }
  }
  if (o.examine_inbox) {
    host.insert("examine_inbox", true);
  }
  host.insert("login_despite_invalid_cert", !o.strict_certificates);

  std::vector<std::string> ports = o.ports;
  bool per_port = !ports.empty();  // --service and --security only apply to given ports
  if (ports.empty()) {
    if (!o.service.empty() || !o.security.empty()) {
      diag.error({}, std::string(o.service.empty() ? "--security" : "--service") +
                         " needs --port (without --port, the platform's five endpoints are "
                         "probed)");
    }
    for (const DefaultEndpoint& p : platformEndpoints()) {
      ports.push_back(std::to_string(p.port));
    }
  }
  toml::array endpoints;
  for (const std::string& port : ports) {
    toml::table e;
    bool numeric =
        !port.empty() && port.size() <= 9 &&
        std::all_of(port.begin(), port.end(), [](char c) { return c >= '0' && c <= '9'; });
    if (numeric) {
      e.insert("port", int64_t{std::stoi(port)});
    } else {
      e.insert("port", port);  // reported as a type error, with the value as typed
    }
    int n = numeric ? std::stoi(port) : 0;
    if (per_port && !o.service.empty()) {
      e.insert("service", o.service);
    } else if (n == 143 || n == 993) {
      e.insert("service", "imap");
    } else if (n == 25 || n == 465 || n == 587) {
      e.insert("service", "smtp");
    } else if (n >= 1 && n <= 65535) {
      diag.error({}, "--port " + port + ": --service is required (imap or smtp)");
      continue;
    } else {
      e.insert("service", "imap");  // a placeholder: the port's own error is the one to read
    }
    if (per_port && !o.security.empty()) {
      e.insert("security", o.security);
    }
    if (!o.auth.empty()) {
      e.insert("auth", o.auth);
    }
    if (!o.mechanisms.empty()) {
      e.insert("mechanisms", strings(o.mechanisms));
    }
    endpoints.push_back(std::move(e));
  }
  if (!endpoints.empty()) {
    host.insert("endpoint", std::move(endpoints));
  }

  toml::table root;
  if (!o.user.empty() || !o.password_file.empty() || !o.password_env.empty() ||
      !o.password_credential.empty()) {
    toml::table account;
    if (!o.user.empty()) {
      account.insert("user", o.user);
    }
    const std::pair<std::string_view, const std::string*> sources[] = {
        {"password_file", &o.password_file},
        {"password_env", &o.password_env},
        {"password_credential", &o.password_credential}};
    for (const auto& [key, value] : sources) {
      if (!value->empty()) {
        account.insert(key, *value);
      }
    }
    root.insert("account", std::move(account));
  }
  toml::array hosts;
  hosts.push_back(std::move(host));
  root.insert("host", std::move(hosts));

  const AddressCheck no_relay_in_ad_hoc_form;
  Loader loader(diag, getenv, "", no_relay_in_ad_hoc_form);
  std::optional<Config> config = loader.build(root);
  LoadResult result;
  result.errors = diag.takeErrors();
  if (config && result.errors.empty()) {
    config->profiles = builtinProfiles();
    config->path = "command line";
    config->warnings = diag.takeWarnings();
    result.config = std::move(config);
  }
  return result;
}

}  // namespace mailprobe
