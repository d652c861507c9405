#pragma once
// The daemon's configuration: a TOML file in, typed structs out (STYLE habit 8).
//
// - Defaults first: every key has a default (see etc/mailprobed.toml, the reference config),
//   applied in layers: built-in < [defaults] < [[host]] < [[host.endpoint]].
// - Every error is `file:line:col: message`, located at the offending key or value. A TOML
//   syntax error stops at the first one; every semantic error is collected in one pass.
// - Unknown keys are errors, with the closest known key suggested.
// - The probe password is resolved here (file, environment, systemd credential, or inline) and
//   lives only in Credentials::password: no error, warning or other string produced here ever
//   contains it.
// - The loader is pure apart from reading the config, password and CA files: a failed load
//   returns errors and nothing else. Keeping the old config on a failed reload is the caller's.

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "daemon/alertmanager.h"
#include "daemon/profiles.h"
#include "probes/auth_gate.h"
#include "probes/probe_spec.h"
#include "probes/relay.h"

namespace mailprobe {

struct ConfigError {
  std::string file;               // the config path, or "command line" for the ad-hoc form
  uint32_t line = 0, column = 0;  // 1-based; 0 when the error has no position
  std::string message;
  // "file:line:col: message"; "file: message" without a position; "message" without a file.
  std::string format() const;
};

struct EndpointConfig {
  EndpointSpec spec;
  // How often the scheduler probes this endpoint (the scheduler owns time, not the probe).
  std::chrono::milliseconds interval{60'000};
};

// The relay rules of one SMTP endpoint of a host ([host.relay]): checked on their own schedule.
struct RelayConfig {
  RelaySpec spec;  // spec.endpoint is the host's endpoint for that port
  std::chrono::milliseconds interval{300'000};
};

struct HostConfig {
  std::string name;
  std::vector<EndpointConfig> endpoints;
  std::vector<RelayConfig> relay;  // one per SMTP port checked; empty without [host.relay]
  Credentials account;             // resolved password; empty when no endpoint of this host logs in
  // Where the password came from, for logs, never the secret: "file /etc/mailprobed/pw",
  // "env MAILPROBED_PASSWORD", "credential probe-password", "inline"; "" without an account.
  std::string account_source;
};

struct DaemonConfig {
  std::string listen = "127.0.0.1:9807";  // metrics, status page and status.json
  std::string log_level = "info";         // error|warning|notice|info|debug
  // How long logins wait after refused ones (AuthGate), for every account; `check` too.
  AuthBackoff auth_backoff;
};

struct Config {
  std::string path;
  DaemonConfig daemon;
  std::vector<HostConfig> hosts;
  // Client configurations to judge: the built-ins (less [profiles] disable), then [[profile]]s.
  std::vector<ClientProfile> profiles;
  // Where failing verdicts are pushed as alerts; disabled without [alertmanager].
  AlertmanagerConfig alertmanager;
  // Things that work but should not be left as they are (an inline password, a password file
  // readable by everyone), each formatted like an error: "file:line:col: message".
  std::vector<std::string> warnings;
};

struct LoadResult {
  std::optional<Config> config;     // set exactly when errors is empty
  std::vector<ConfigError> errors;  // sorted by position
  bool ok() const { return config.has_value(); }
};

// Environment lookups go through this so tests can fake them ($CREDENTIALS_DIRECTORY and
// password_env variables).
using GetEnv = std::function<std::optional<std::string>(const std::string&)>;
GetEnv processEnv();

// Whether this machine has a local address (a relay vantage): "" if a socket can be bound to it
// (port 0), else the system's reason ("Cannot assign requested address"). Tests fake it to load
// example configs written for other machines.
using AddressCheck = std::function<std::string(const std::string& address)>;
AddressCheck bindableAddressCheck();

// Relative paths inside the file (password_file, ca_file) are relative to the directory of
// `path` (of `path_for_errors` for loadConfigFromString).
LoadResult loadConfig(const std::string& path, const GetEnv& getenv = processEnv(),
                      const AddressCheck& has_address = bindableAddressCheck());
LoadResult loadConfigFromString(std::string_view toml, const std::string& path_for_errors,
                                const GetEnv& getenv = processEnv(),
                                const AddressCheck& has_address = bindableAddressCheck());

// The ad-hoc form `mailprobed check --host H [--port P ...] --user U --password-file F`.
// Values are taken as typed on the command line; they go through the same validation as the
// file, and errors name the flags: "command line: --port: must be between 1 and 65535, got
// 70000". Empty strings mean "not given".
struct AdHocOptions {
  std::string host;                    // --host (required)
  std::vector<std::string> addresses;  // --address, repeatable: probe these instead of resolving
  // --port, repeatable. Empty: the platform's five endpoints. A port other than 143, 993, 25,
  // 465, 587 needs --service, and --security when it is not a default port.
  std::vector<std::string> ports;
  std::string service;   // --service imap|smtp, for every --port
  std::string security;  // --security none|starttls|tls, for every --port
  std::string auth;      // --auth required|optional|none, for every --port
  std::string user;      // --user
  std::string password_file, password_env, password_credential;  // at most one
  std::string ca_file;
  std::string source_address;
  std::string family;  // any|ipv4|ipv6
  std::string ehlo_name;
  std::string timeout;  // the whole endpoint probe, a duration such as "30s"
  std::string tls_min_version, tls_max_version;
  std::vector<std::string> mechanisms;  // --mechanism, repeatable
  bool examine_inbox = false;
  bool strict_certificates = false;  // true: never log in when the certificate does not verify
};
LoadResult adHocConfig(const AdHocOptions& options, const GetEnv& getenv = processEnv());

// The platform's published endpoints (PRODUCT.md): imap 143 starttls, imap 993 tls,
// smtp 25 starttls (STARTTLS and login optional), smtp 465 tls, smtp 587 starttls.
struct DefaultEndpoint {
  Service service;
  uint16_t port;
  Security security;
  bool starttls_required;
  AuthPolicy auth;
};
const std::vector<DefaultEndpoint>& platformEndpoints();

// The security mode a port implies when an endpoint does not say: 993/465 tls,
// 143/587/25 starttls; nullopt for any other port.
std::optional<Security> defaultSecurityForPort(uint16_t port);

}  // namespace mailprobe
