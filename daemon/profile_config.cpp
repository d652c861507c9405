#include "daemon/profile_config.h"

#include <openssl/tls1.h>

#include <algorithm>
#include <map>
#include <optional>
#include <sstream>
#include <tuple>

#include "daemon/config_words.h"

namespace mailprobe {
namespace {

// ---------------------------------------------------------------------------------------------
// Vocabulary.

const std::vector<std::string_view> kProfileKeys{"id", "description", "replace", "incoming",
                                                 "outgoing"};
const std::vector<std::string_view> kSideKeys{
    "host",         "port",         "security",
    "certificates", "tls_versions", "mechanisms",
    "sign_in",      "user",         "next_mechanism_on_failure"};
const std::vector<std::string_view> kProfilesKeys{"disable"};
const std::vector<std::string_view> kSecurities{"none", "starttls", "tls"};
const std::vector<std::string_view> kCertPolicies{"strict", "accept-all"};
const std::vector<std::string_view> kUserForms{"email", "local"};
constexpr size_t kMaxIdLength = 40;

// ---------------------------------------------------------------------------------------------
// Text helpers; the wording of the messages is config.cpp's, on purpose.

// "integer 5", "string \"x\"", "a table".
std::string describe(const toml::node& n) {
  if (const auto* s = n.as_string()) {
    return "string " + quotedValue(s->get());
  }
  if (const auto* i = n.as_integer()) {
    return "integer " + std::to_string(i->get());
  }
  if (const auto* f = n.as_floating_point()) {
    std::ostringstream out;
    out << f->get();
    return "float " + out.str();
  }
  if (const auto* b = n.as_boolean()) {
    return b->get() ? "boolean true" : "boolean false";
  }
  if (n.is_table()) {
    return "a table";
  }
  if (n.is_array()) {
    return "an array";
  }
  return "a date or time";
}

bool isIpLiteral(std::string_view s) {
  // Host names in [[host]] may be addresses too; digits, dots, hex and colons are enough here,
  // since the name must match a [[host]] name anyway.
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') || c == '.' ||
           c == ':';
  });
}

std::vector<std::string_view> builtinIds() {
  std::vector<std::string_view> ids;
  for (const auto& p : builtinProfiles()) {
    ids.push_back(p.id);
  }
  return ids;
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

class Reader {
 public:
  explicit Reader(std::string file) : file_(std::move(file)) {}

  ProfileLoad read(const toml::table& root);

 private:
  struct Draft {
    ClientProfile profile;
    Pos pos, id_pos, replace_pos;
    bool replace = false;
  };

  void error(Pos p, std::string message) {
    errors_.push_back({file_, p.line, p.column, std::move(message)});
  }
  void typeError(std::string_view key, std::string_view expected, const toml::node& n) {
    error(at(n), std::string(key) + ": expected " + std::string(expected) + ", got " + describe(n));
  }
  void unknownKey(const toml::key& key, std::string_view where,
                  const std::vector<std::string_view>& known) {
    std::string message = "unknown key '" + std::string(key.str()) + "' in " + std::string(where);
    if (auto suggestion = closestWord(key.str(), known)) {
      message += "; did you mean '" + std::string(*suggestion) + "'?";
    }
    error(at(key), std::move(message));
  }
  // A string among `choices`; reports and returns nullopt otherwise.
  std::optional<std::string> readChoice(std::string_view key, const toml::node& n,
                                        const std::vector<std::string_view>& choices,
                                        std::string_view hint = {});
  std::optional<bool> readBool(std::string_view key, const toml::node& n) {
    if (const auto* b = n.as_boolean()) {
      return b->get();
    }
    typeError(key, "true or false", n);
    return std::nullopt;
  }

  void readHostNames(const toml::table& root);
  std::optional<Draft> readProfile(const toml::node& n);
  bool readSides(const toml::node& n, Direction direction, std::vector<ClientSide>& out);
  std::optional<ClientSide> readSide(const toml::node& n, Direction direction, std::string where);
  std::optional<std::pair<int, int>> readTlsVersions(const toml::node& n);
  std::optional<std::vector<std::string>> readMechanisms(const toml::node& n, Service service);
  void readProfilesTable(const toml::node& n, std::vector<std::pair<std::string, Pos>>& disable);

  std::string file_;
  std::vector<std::string> host_names_;  // lower case; empty: no usable [[host]] (config.cpp says)
  std::vector<ConfigError> errors_;
};

std::optional<std::string> Reader::readChoice(std::string_view key, const toml::node& n,
                                              const std::vector<std::string_view>& choices,
                                              std::string_view hint) {
  const auto* s = n.as_string();
  if (s == nullptr) {
    typeError(key, "one of " + joinChoices(choices), n);
    return std::nullopt;
  }
  if (std::find(choices.begin(), choices.end(), s->get()) != choices.end()) {
    return s->get();
  }
  std::string message =
      std::string(key) + ": " + quotedValue(s->get()) + " is not one of " + joinChoices(choices);
  if (!hint.empty() && lowerAscii(s->get()).starts_with("ssl")) {
    message += std::string(hint);
  } else if (auto suggestion = closestWord(s->get(), choices)) {
    message += "; did you mean \"" + std::string(*suggestion) + "\"?";
  }
  error(at(n), std::move(message));
  return std::nullopt;
}

void Reader::readHostNames(const toml::table& root) {
  const auto* hosts = root.get_as<toml::array>("host");
  if (hosts == nullptr) {
    return;
  }
  for (const toml::node& h : *hosts) {
    if (const auto* t = h.as_table()) {
      if (const auto* name = t->get_as<std::string>("name")) {
        host_names_.push_back(lowerAscii(name->get()));
      }
    }
  }
}

std::optional<std::pair<int, int>> Reader::readTlsVersions(const toml::node& n) {
  const auto* array = n.as_array();
  std::vector<std::string_view> names;
  for (int v : scannedTlsVersions()) {
    names.push_back(tlsVersionName(v));
  }
  if (array == nullptr) {
    typeError("tls_versions", "an array of TLS versions such as [\"TLSv1.2\", \"TLSv1.3\"]", n);
    return std::nullopt;
  }
  if (array->empty()) {
    error(at(n), "tls_versions: empty list; remove it for a client that speaks every version");
    return std::nullopt;
  }
  std::vector<int> versions;
  bool ok = true;
  for (const toml::node& element : *array) {
    const auto* s = element.as_string();
    if (s == nullptr) {
      typeError("tls_versions", "a TLS version such as \"TLSv1.2\"", element);
      ok = false;
      continue;
    }
    std::optional<int> v = parseTlsVersion(s->get());
    if (!v || s->get() == "TLSv1") {
      std::string message =
          "tls_versions: " + quotedValue(s->get()) + " is not one of " + joinChoices(names);
      if (auto suggestion = closestWord(s->get(), names)) {
        message += "; did you mean \"" + std::string(*suggestion) + "\"?";
      }
      error(at(element), std::move(message));
      ok = false;
    } else if (std::find(versions.begin(), versions.end(), *v) != versions.end()) {
      error(at(element), "tls_versions: " + quotedValue(s->get()) + " is listed twice");
      ok = false;
    } else {
      versions.push_back(*v);
    }
  }
  if (!ok) {
    return std::nullopt;
  }
  auto [lo, hi] = std::minmax_element(versions.begin(), versions.end());
  std::vector<std::string_view> missing;
  for (int v : scannedTlsVersions()) {
    if (v > *lo && v < *hi && std::find(versions.begin(), versions.end(), v) == versions.end()) {
      missing.push_back(tlsVersionName(v));
    }
  }
  if (!missing.empty()) {
    error(at(n), "tls_versions: " + joinChoices(missing, "and") + " missing between " +
                     std::string(tlsVersionName(*lo)) + " and " + std::string(tlsVersionName(*hi)) +
                     ": a client speaks every version from its lowest to its highest");
    return std::nullopt;
  }
  return std::pair(*lo, *hi);
}

std::optional<std::vector<std::string>> Reader::readMechanisms(const toml::node& n,
                                                               Service service) {
  const auto* array = n.as_array();
  if (array == nullptr) {
    typeError("mechanisms", "an array of mechanism names such as [\"PLAIN\", \"LOGIN\"]", n);
    return std::nullopt;
  }
  if (array->empty()) {
    const auto& usual = defaultClientMechanisms(service);
    error(at(n),
          "mechanisms: empty list; remove it for the usual " +
              joinChoices(std::vector<std::string_view>(usual.begin(), usual.end()), "then"));
    return std::nullopt;
  }
  const auto& speakable = supportedMechanisms(service);
  std::vector<std::string_view> speakable_names(speakable.begin(), speakable.end());
  std::vector<std::string> out;
  bool ok = true;
  for (const toml::node& element : *array) {
    const auto* s = element.as_string();
    if (s == nullptr) {
      typeError("mechanisms", "a mechanism name such as \"PLAIN\"", element);
      ok = false;
      continue;
    }
    std::string upper = s->get();
    std::transform(upper.begin(), upper.end(), upper.begin(),
                   [](char c) { return c >= 'a' && c <= 'z' ? static_cast<char>(c - 32) : c; });
    if (service == Service::Smtp && upper == "LOGIN-COMMAND") {
      error(at(element), "mechanisms: " + quotedValue(s->get()) +
                             " is the IMAP LOGIN command; SMTP has no such thing");
      ok = false;
    } else if (std::find(speakable.begin(), speakable.end(), upper) == speakable.end()) {
      error(at(element), "mechanisms: " + quotedValue(s->get()) +
                             " cannot be judged: the probe logs in with " +
                             joinChoices(speakable_names) + " only");
      ok = false;
    } else if (std::find(out.begin(), out.end(), upper) != out.end()) {
      error(at(element), "mechanisms: " + quotedValue(upper) + " is listed twice");
      ok = false;
    } else {
      out.push_back(std::move(upper));
    }
  }
  return ok ? std::optional(std::move(out)) : std::nullopt;
}

std::optional<ClientSide> Reader::readSide(const toml::node& n, Direction direction,
                                           std::string where) {
  const auto* table = n.as_table();
  if (table == nullptr) {
    typeError(toString(direction), "a table " + where, n);
    return std::nullopt;
  }
  Service service = direction == Direction::Incoming ? Service::Imap : Service::Smtp;
  ClientSide side;
  bool ok = true;
  std::optional<uint16_t> port;
  std::optional<Security> security;
  Pos port_pos, security_pos;
  const toml::node* tls_versions = nullptr;
  const toml::node* certificates = nullptr;
  const toml::node* mechanisms = nullptr;
  std::optional<bool> sign_in;
  for (auto&& [key, value] : *table) {
    std::string_view name = key.str();
    if (name == "host") {
      const auto* s = value.as_string();
      if (s == nullptr) {
        typeError(name, "a host name", value);
        ok = false;
      } else if (!isDomainName(s->get()) && !isIpLiteral(s->get())) {
        error(at(value), "host: " + quotedValue(s->get()) + " is not a host name or IP address");
        ok = false;
      } else if (!host_names_.empty() && std::find(host_names_.begin(), host_names_.end(),
                                                   lowerAscii(s->get())) == host_names_.end()) {
        error(at(value), "host: " + quotedValue(s->get()) +
                             " is not the name of a [[host]] in this file; a profile is judged "
                             "from the probes of those hosts");
        ok = false;
      } else {
        side.host = s->get();
      }
    } else if (name == "port") {
      const auto* i = value.as_integer();
      if (i == nullptr) {
        typeError(name, "a port number", value);
        ok = false;
      } else if (i->get() < 1 || i->get() > 65535) {
        error(at(value), "port: must be between 1 and 65535, got " + std::to_string(i->get()));
        ok = false;
      } else {
        port = static_cast<uint16_t>(i->get());
        port_pos = at(value);
      }
    } else if (name == "security") {
      auto s = readChoice(name, value, kSecurities,
                          " (implicit TLS, which clients call SSL, is \"tls\")");
      if (s) {
        security = parseSecurity(*s);
        security_pos = at(value);
      } else {
        ok = false;
      }
    } else if (name == "certificates") {
      certificates = &value;
      auto s = readChoice(name, value, kCertPolicies);
      if (s) {
        side.cert_policy = *s == "strict" ? CertPolicy::Strict : CertPolicy::AcceptAll;
      } else {
        ok = false;
      }
    } else if (name == "tls_versions") {
      tls_versions = &value;
      if (auto range = readTlsVersions(value)) {
        side.tls_min_version = range->first;
        side.tls_max_version = range->second;
      } else {
        ok = false;
      }
    } else if (name == "mechanisms") {
      mechanisms = &value;
      if (auto m = readMechanisms(value, service)) {
        side.mechanisms = std::move(*m);
      } else {
        ok = false;
      }
    } else if (name == "sign_in") {
      if (direction == Direction::Incoming) {
        error(at(key),
              "sign_in: only applies to [profile.outgoing]: a client always signs in "
              "to read mail");
        ok = false;
      } else if ((sign_in = readBool(name, value))) {
        side.sign_in = *sign_in;
      } else {
        ok = false;
      }
    } else if (name == "user") {
      if (auto s = readChoice(name, value, kUserForms)) {
        side.user_form = *s;
      } else {
        ok = false;
      }
    } else if (name == "next_mechanism_on_failure") {
      if (auto b = readBool(name, value)) {
        side.next_mechanism_on_failure = *b;
      } else {
        ok = false;
      }
    } else {
      unknownKey(key, where, kSideKeys);
      ok = false;
    }
  }
  // Port and security: each defaults from the other, as for [[host.endpoint]].
  if (!port && !security) {
    if (ok) {
      error(at(n), where + ": port is required");
    }
    return std::nullopt;
  }
  if (!security) {
    security = defaultSecurityForPort(*port);
    if (!security) {
      error(port_pos,
            "security is required for port " + std::to_string(*port) + ": none, starttls or tls");
      return std::nullopt;
    }
  }
  if (!port) {
    bool in = direction == Direction::Incoming;
    port = *security == Security::Tls        ? (in ? 993 : 465)
           : *security == Security::StartTls ? (in ? 143 : 587)
                                             : (in ? 143 : 25);
  }
  side.port = *port;
  side.security = *security;
  if (side.security == Security::None) {
    for (const auto& [node, key] :
         {std::pair(tls_versions, "tls_versions"), std::pair(certificates, "certificates")}) {
      if (node != nullptr) {
        error(at(*node), std::string(key) + ": only applies to security = \"starttls\" or \"tls\"");
        ok = false;
      }
    }
  }
  if (mechanisms != nullptr && sign_in == false) {
    error(at(*mechanisms), "mechanisms: useless with sign_in = false");
    ok = false;
  }
  if (!ok) {
    return std::nullopt;
  }
  if (side.mechanisms.empty() && (direction == Direction::Incoming || side.sign_in)) {
    side.mechanisms = defaultClientMechanisms(service);
  }
  return side;
}

bool Reader::readSides(const toml::node& n, Direction direction, std::vector<ClientSide>& out) {
  std::string dir(toString(direction));
  if (n.is_table()) {
    auto side = readSide(n, direction, "[profile." + dir + "]");
    if (side) {
      out.push_back(std::move(*side));
    }
    return side.has_value();
  }
  const auto* array = n.as_array();
  if (array == nullptr || !array->is_array_of_tables()) {
    typeError(dir, "a table [profile." + dir + "] or tables [[profile." + dir + "]]", n);
    return false;
  }
  if (array->empty()) {
    error(at(n), dir + ": empty list");
    return false;
  }
  bool ok = true;
  for (const toml::node& element : *array) {
    auto side = readSide(element, direction, "[[profile." + dir + "]]");
    if (side) {
      out.push_back(std::move(*side));
    } else {
      ok = false;
    }
  }
  return ok;
}

std::optional<Reader::Draft> Reader::readProfile(const toml::node& n) {
  const auto* table = n.as_table();
  if (table == nullptr) {
    typeError("profile", "[[profile]] tables", n);
    return std::nullopt;
  }
  Draft d;
  d.pos = at(n);
  d.profile.builtin = false;
  bool ok = true;
  bool id_given = false;
  bool sides_given = false;
  for (auto&& [key, value] : *table) {
    std::string_view name = key.str();
    if (name == "id") {
      id_given = true;
      const auto* s = value.as_string();
      if (s == nullptr) {
        typeError(name, "a string", value);
        ok = false;
        continue;
      }
      const std::string& id = s->get();
      bool valid =
          !id.empty() && id.size() <= kMaxIdLength &&
          std::all_of(id.begin(), id.end(),
                      [](char c) {
                        return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
                      }) &&
          id.front() != '-';
      if (!valid) {
        error(at(value), "id: " + quotedValue(id) +
                             " is not a profile id: use lower-case letters, digits and '-', "
                             "starting with a letter or digit, at most 40 characters");
        ok = false;
        continue;
      }
      d.profile.id = id;
      d.id_pos = at(value);
    } else if (name == "description") {
      if (const auto* s = value.as_string()) {
        d.profile.description = s->get();
      } else {
        typeError(name, "a string", value);
        ok = false;
      }
    } else if (name == "replace") {
      if (auto b = readBool(name, value)) {
        d.replace = *b;
        d.replace_pos = at(value);
      } else {
        ok = false;
      }
    } else if (name == "incoming" || name == "outgoing") {
      sides_given = true;
      Direction direction = name == "incoming" ? Direction::Incoming : Direction::Outgoing;
      ok = readSides(value, direction,
                     direction == Direction::Incoming ? d.profile.incoming : d.profile.outgoing) &&
           ok;
    } else {
      unknownKey(key, "[[profile]]", kProfileKeys);
      ok = false;
    }
  }
  if (!id_given) {
    error(d.pos, "[[profile]]: id is required");
    return std::nullopt;
  }
  if (!sides_given && ok) {
    error(d.pos, "[[profile]] " + quotedValue(d.profile.id) +
                     ": give an incoming or an outgoing server, or both");
    return std::nullopt;
  }
  if (!ok) {
    return std::nullopt;
  }
  d.profile.source = "the configuration file " + file_ + ", line " + std::to_string(d.pos.line);
  return d;
}

void Reader::readProfilesTable(const toml::node& n,
                               std::vector<std::pair<std::string, Pos>>& disable) {
  const auto* table = n.as_table();
  if (table == nullptr) {
    if (n.is_array_of_tables()) {
      error(at(n),
            "profiles: write [profiles] (a table), not [[profiles]]; a profile of your "
            "own is a [[profile]]");
    } else {
      typeError("profiles", "a table [profiles]", n);
    }
    return;
  }
  std::vector<std::string_view> ids = builtinIds();
  for (auto&& [key, value] : *table) {
    if (key.str() != "disable") {
      unknownKey(key, "[profiles]", kProfilesKeys);
      continue;
    }
    const auto* array = value.as_array();
    if (array == nullptr) {
      typeError("disable", "an array of built-in profile ids such as [\"ios-mail\"]", value);
      continue;
    }
    for (const toml::node& element : *array) {
      const auto* s = element.as_string();
      if (s == nullptr) {
        typeError("disable", "a built-in profile id", element);
        continue;
      }
      if (findBuiltinProfile(s->get()) == nullptr) {
        std::string message = "disable: " + quotedValue(s->get()) + " is not a built-in profile";
        if (auto suggestion = closestWord(s->get(), ids)) {
          message += "; did you mean \"" + std::string(*suggestion) + "\"?";
        } else {
          message += "; the built-ins are " + joinChoices(ids, "and");
        }
        error(at(element), std::move(message));
        continue;
      }
      bool twice = std::any_of(disable.begin(), disable.end(),
                               [&](const auto& seen) { return seen.first == s->get(); });
      if (twice) {
        error(at(element), "disable: " + quotedValue(s->get()) + " is listed twice");
        continue;
      }
      disable.emplace_back(s->get(), at(element));
    }
  }
}

ProfileLoad Reader::read(const toml::table& root) {
  readHostNames(root);
  std::vector<Draft> drafts;
  std::vector<std::pair<std::string, Pos>> disable;
  for (auto&& [key, value] : root) {
    if (key.str() == "profile") {
      if (value.is_table()) {
        error(at(key), "profile: write [[profile]] (an array of tables), not [profile]");
      } else if (const auto* array = value.as_array()) {
        for (const toml::node& element : *array) {
          if (auto d = readProfile(element)) {
            drafts.push_back(std::move(*d));
          }
        }
      } else {
        typeError("profile", "[[profile]] tables", value);
      }
    } else if (key.str() == "profiles") {
      readProfilesTable(value, disable);
    }
  }

  // Ids: unique, and a built-in's only to replace it.
  std::vector<std::string_view> ids = builtinIds();
  std::map<std::string, Pos> seen;
  std::map<std::string, const Draft*> replacing;
  for (const Draft& d : drafts) {
    const std::string& id = d.profile.id;
    auto [it, inserted] = seen.emplace(id, d.id_pos);
    if (!inserted) {
      error(d.id_pos, "duplicate profile " + quotedValue(id) + " (first defined at line " +
                          std::to_string(it->second.line) + ")");
      continue;
    }
    bool builtin = findBuiltinProfile(id) != nullptr;
    if (builtin && !d.replace) {
      error(d.id_pos, "id: " + quotedValue(id) +
                          " is a built-in profile: set replace = true to redefine it, or choose "
                          "another id");
    } else if (!builtin && d.replace) {
      error(d.replace_pos, "replace: there is no built-in profile " + quotedValue(id) +
                               " to replace; the built-ins are " + joinChoices(ids, "and"));
    } else if (builtin) {
      replacing[id] = &d;
    }
  }
  for (const auto& [id, pos] : disable) {
    auto r = replacing.find(id);
    if (r != replacing.end()) {
      error(pos, "disable: " + quotedValue(id) + " is also redefined with replace = true (line " +
                     std::to_string(r->second->id_pos.line) + "); keep one or the other");
    }
  }

  ProfileLoad out;
  std::stable_sort(errors_.begin(), errors_.end(), [](const ConfigError& a, const ConfigError& b) {
    return std::tie(a.line, a.column) < std::tie(b.line, b.column);
  });
  out.errors = std::move(errors_);
  if (!out.errors.empty()) {
    return out;
  }
  for (const ClientProfile& b : builtinProfiles()) {
    bool off = std::any_of(disable.begin(), disable.end(),
                           [&](const auto& entry) { return entry.first == b.id; });
    if (off) {
      out.disabled.push_back(b.id);
      continue;
    }
    auto r = replacing.find(b.id);
    out.profiles.push_back(r != replacing.end() ? r->second->profile : b);
  }
  for (const Draft& d : drafts) {
    if (!replacing.count(d.profile.id)) {
      out.profiles.push_back(d.profile);
    }
  }
  return out;
}

}  // namespace

bool isProfileKey(std::string_view top_level_key) {
  return top_level_key == "profile" || top_level_key == "profiles";
}

ProfileLoad loadProfiles(const toml::table& root, const std::string& file) {
  return Reader(file).read(root);
}

}  // namespace mailprobe
