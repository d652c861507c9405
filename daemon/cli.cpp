#include "daemon/cli.h"

#include <ctime>
#include <functional>
#include <map>
#include <ostream>

#include "daemon/config.h"
#include "daemon/daemon.h"
#include "daemon/log.h"
#include "daemon/one_shot.h"
#include "daemon/report.h"
#include "daemon/snapshot.h"

namespace mailprobe {
namespace {

constexpr int kUnknown = 3;

const char* kUsage = R"(usage:
  mailprobed check --config FILE [--format text|json] [--perfdata] [--warn-days N] [--crit-days N]
                   [--no-version-scan]
  mailprobed check --host HOST [--port P ...] [--service imap|smtp] [--security none|starttls|tls]
                   [--user USER (--password-file F | --password-env VAR | --password-credential NAME)]
                   [--address ADDR ...] [--ca-file F] [--source-address ADDR] [--family any|ipv4|ipv6]
                   [--mechanism M ...] [--auth required|optional|none] [--examine-inbox]
                   [--strict-certificates] [--timeout 30s] [--format text|json] [--perfdata]
                   [--no-version-scan]
  mailprobed validate --config FILE
  mailprobed run --config FILE
  mailprobed --version

check probes once and prints what works and what fails, and why; with [host.relay] in the config,
it also checks the relay rules (an open relay is critical). Without --port, the platform's
five endpoints: imap 143 (starttls), imap 993 (tls), smtp 25 (starttls, optional), smtp 465 (tls),
smtp 587 (starttls). Passwords are never taken on the command line.
Each TLS endpoint is also scanned for the TLS versions it accepts (one handshake per version, all
at once, alongside the probes, no password sent), so that every client profile gets a verdict;
--no-version-scan skips it, and profiles whose versions the probe cannot tell are then unknown.
Exit codes: 0 ok, 1 warning, 2 critical, 3 unknown (including a config error).
)";

struct Args {
  std::string command;
  std::map<std::string, std::vector<std::string>> values;
  std::vector<std::string> flags;
  std::string error;

  bool has(const std::string& flag) const {
    return std::find(flags.begin(), flags.end(), flag) != flags.end();
  }
  std::string get(const std::string& key) const {
    auto it = values.find(key);
    return it == values.end() || it->second.empty() ? "" : it->second.back();
  }
  std::vector<std::string> all(const std::string& key) const {
    auto it = values.find(key);
    return it == values.end() ? std::vector<std::string>{} : it->second;
  }
};

const std::vector<std::string> kBooleanFlags{
    "--perfdata",        "--examine-inbox", "--strict-certificates",
    "--no-version-scan", "--verbose",       "--help"};
const std::vector<std::string> kValueFlags{
    "--config",         "--format",       "--warn-days",
    "--crit-days",      "--host",         "--port",
    "--service",        "--security",     "--user",
    "--password-file",  "--password-env", "--password-credential",
    "--address",        "--ca-file",      "--source-address",
    "--family",         "--mechanism",    "--auth",
    "--timeout",        "--ehlo-name",    "--tls-min-version",
    "--tls-max-version"};

Args parse(const std::vector<std::string>& argv) {
  Args a;
  size_t i = 0;
  if (!argv.empty() && argv[0].rfind("--", 0) != 0) {
    a.command = argv[0];
    i = 1;
  }
  for (; i < argv.size(); ++i) {
    std::string arg = argv[i];
    std::string value;
    bool inline_value = false;
    if (auto eq = arg.find('='); eq != std::string::npos && arg.rfind("--", 0) == 0) {
      value = arg.substr(eq + 1);
      arg = arg.substr(0, eq);
      inline_value = true;
    }
    if (arg == "--password") {
      a.error =
          "--password is not accepted: a password on the command line is visible to every "
          "user of the machine; use --password-file, --password-env or "
          "--password-credential";
      return a;
    }
    if (std::find(kBooleanFlags.begin(), kBooleanFlags.end(), arg) != kBooleanFlags.end()) {
      a.flags.push_back(arg);
      continue;
    }
    if (arg == "--version") {
      a.command = "version";
      continue;
    }
    if (std::find(kValueFlags.begin(), kValueFlags.end(), arg) == kValueFlags.end()) {
      a.error = "unknown option " + arg;
      return a;
    }
    if (!inline_value) {
      if (i + 1 >= argv.size()) {
        a.error = arg + " needs a value";
        return a;
      }
      value = argv[++i];
    }
    a.values[arg].push_back(value);
  }
  return a;
}

std::optional<int> parseInt(const std::string& s) {
  try {
    size_t used = 0;
    int v = std::stoi(s, &used);
    if (used == s.size()) {
      return v;
    }
  } catch (...) {
  }
  return std::nullopt;
}

void printErrors(const std::vector<ConfigError>& errors, std::ostream& err) {
  for (const auto& e : errors) {
    err << e.format() << "\n";
  }
}

LoadResult loadFromArgs(const Args& a) {
  if (!a.get("--config").empty()) {
    return loadConfig(a.get("--config"));
  }
  AdHocOptions o;
  o.host = a.get("--host");
  o.addresses = a.all("--address");
  o.ports = a.all("--port");
  o.service = a.get("--service");
  o.security = a.get("--security");
  o.auth = a.get("--auth");
  o.user = a.get("--user");
  o.password_file = a.get("--password-file");
  o.password_env = a.get("--password-env");
  o.password_credential = a.get("--password-credential");
  o.ca_file = a.get("--ca-file");
  o.source_address = a.get("--source-address");
  o.family = a.get("--family");
  o.ehlo_name = a.get("--ehlo-name");
  o.timeout = a.get("--timeout");
  o.tls_min_version = a.get("--tls-min-version");
  o.tls_max_version = a.get("--tls-max-version");
  o.mechanisms = a.all("--mechanism");
  o.examine_inbox = a.has("--examine-inbox");
  o.strict_certificates = a.has("--strict-certificates");
  return adHocConfig(o);
}

std::vector<ProbeJob> jobsOf(const Config& config) {
  std::vector<ProbeJob> jobs;
  for (const auto& host : config.hosts) {
    for (const auto& endpoint : host.endpoints) {
      jobs.push_back({endpoint.spec, host.account});
    }
  }
  return jobs;
}

std::vector<RelayJob> relayJobsOf(const Config& config) {
  std::vector<RelayJob> jobs;
  for (const auto& host : config.hosts) {
    for (const auto& relay : host.relay) {
      jobs.push_back({relay.spec, host.account});
    }
  }
  return jobs;
}

// What the version scans cover: every endpoint with TLS, when some profile is to be judged.
std::vector<EndpointSpec> scansOf(const Config& config) {
  std::vector<EndpointSpec> scans;
  if (config.profiles.empty()) {
    return scans;
  }
  for (const auto& host : config.hosts) {
    for (const auto& endpoint : host.endpoints) {
      if (endpoint.spec.security != Security::None) {
        scans.push_back(endpoint.spec);
      }
    }
  }
  return scans;
}

// The client profiles judged from one round of results and version scans. Without the scans
// (--no-version-scan), a profile whose versions the handshakes cannot tell (legacy-tls10) comes
// out unknown.
std::vector<Verdict> judgeOnce(const Config& config, const OneShotResults& results, int64_t now) {
  std::vector<EndpointState> states;
  for (const auto& host : config.hosts) {
    for (const auto& ep : host.endpoints) {
      EndpointState state;
      state.host = endpointTarget(ep.spec);
      state.port = ep.spec.port;
      state.service = ep.spec.service;
      state.security = ep.spec.security;
      std::vector<ProbeResult> last;
      for (const auto& r : results.endpoints) {
        bool address_matches = ep.spec.addresses.empty() ||
                               std::find(ep.spec.addresses.begin(), ep.spec.addresses.end(),
                                         r.address) != ep.spec.addresses.end();
        if (r.host == ep.spec.host && r.port == ep.spec.port && r.service == ep.spec.service &&
            r.security == ep.spec.security && address_matches) {
          last.push_back(r);
        }
      }
      state.last = std::move(last);
      states.push_back(std::move(state));
    }
  }
  JudgeInputs in;
  in.default_host = config.hosts.empty() ? "" : config.hosts.front().name;
  in.results = resultsFromEndpoints(states);
  in.scans = [&results](const EndpointKey& key,
                        const std::string& address) -> std::optional<TlsVersionResult> {
    const TlsVersionResult* r = findScan(results.scans, key, address);
    return r != nullptr ? std::optional<TlsVersionResult>(*r) : std::nullopt;
  };
  in.now = now;
  return judgeAll(config.profiles, in);
}

int commandCheck(const Args& a, std::ostream& out, std::ostream& err) {
  if (a.get("--config").empty() && a.get("--host").empty()) {
    err << "check needs --config FILE or --host HOST\n" << kUsage;
    return kUnknown;
  }
  std::string format = a.get("--format").empty() ? "text" : a.get("--format");
  if (format != "text" && format != "json") {
    err << "--format must be text or json, got " << format << "\n";
    return kUnknown;
  }
  Thresholds th;
  for (auto [flag, target] :
       {std::pair{"--warn-days", &th.warn_days}, std::pair{"--crit-days", &th.crit_days}}) {
    if (!a.get(flag).empty()) {
      auto v = parseInt(a.get(flag));
      if (!v || *v < 0) {
        err << flag << " must be a whole number of days, got " << a.get(flag) << "\n";
        return kUnknown;
      }
      *target = *v;
    }
  }
  LoadResult loaded = loadFromArgs(a);
  if (!loaded.ok()) {
    printErrors(loaded.errors, err);
    return kUnknown;
  }
  for (const auto& w : loaded.config->warnings) {
    err << w << "\n";
  }
  // One gate for the run: a login refused on one endpoint holds back the others of the account.
  AuthGate gate(loaded.config->daemon.auth_backoff);
  OneShotResults results =
      runAllOnce(jobsOf(*loaded.config), relayJobsOf(*loaded.config),
                 a.has("--no-version-scan") ? std::vector<EndpointSpec>{} : scansOf(*loaded.config),
                 /*parallel=*/16, &gate);
  int64_t now = static_cast<int64_t>(std::time(nullptr));
  Status status = overallStatus(results.endpoints, th, now, results.relay);
  std::vector<Verdict> verdicts = judgeOnce(*loaded.config, results, now);
  if (format == "json") {
    nlohmann::json j = reportJson(results.endpoints, now, results.relay);
    j["profiles"] = profilesJson(verdicts);
    out << j.dump(2) << "\n";
  } else {
    out << reportText(results.endpoints, th, now, results.relay);
    if (!verdicts.empty()) {
      out << "client configurations:\n" << profilesText(verdicts);
    }
  }
  if (a.has("--perfdata")) {
    out << "| " << perfdata(results.endpoints, now) << "\n";
  }
  return static_cast<int>(status);
}

int commandValidate(const Args& a, std::ostream& out, std::ostream& err) {
  if (a.get("--config").empty()) {
    err << "validate needs --config FILE\n";
    return kUnknown;
  }
  LoadResult loaded = loadConfig(a.get("--config"));
  if (!loaded.ok()) {
    printErrors(loaded.errors, err);
    err << loaded.errors.size() << (loaded.errors.size() == 1 ? " error" : " errors") << " in "
        << a.get("--config") << "\n";
    return kUnknown;
  }
  for (const auto& w : loaded.config->warnings) {
    err << w << "\n";
  }
  size_t endpoints = 0;
  size_t relay = 0;
  for (const auto& h : loaded.config->hosts) {
    endpoints += h.endpoints.size();
    relay += h.relay.size();
  }
  out << a.get("--config") << ": ok, " << loaded.config->hosts.size()
      << (loaded.config->hosts.size() == 1 ? " host, " : " hosts, ") << endpoints
      << (endpoints == 1 ? " endpoint" : " endpoints");
  if (relay > 0) {
    out << ", relay rules on " << relay << (relay == 1 ? " smtp endpoint" : " smtp endpoints");
  }
  for (size_t i = 0; i < loaded.config->alertmanager.urls.size(); ++i) {
    out << (i == 0 ? ", alerts pushed to " : " and ")
        << loaded.config->alertmanager.urls[i].redacted();
  }
  out << "\n";
  return 0;
}

}  // namespace

int runCli(const std::vector<std::string>& argv, std::ostream& out, std::ostream& err) {
  Args a = parse(argv);
  if (!a.error.empty()) {
    err << "mailprobed: " << a.error << "\n";
    return kUnknown;
  }
  if (a.has("--verbose")) {
    log::setMaxLevel(log::Level::Debug);
  }
  if (a.command == "version") {
    out << "mailprobed " << MAILPROBED_VERSION << "\n";
    return 0;
  }
  if (a.command.empty() || a.has("--help") || a.command == "help") {
    (a.command.empty() ? err : out) << kUsage;
    return a.command.empty() ? kUnknown : 0;
  }
  if (a.command == "check") {
    return commandCheck(a, out, err);
  }
  if (a.command == "validate") {
    return commandValidate(a, out, err);
  }
  if (a.command == "run") {
    if (a.get("--config").empty()) {
      err << "run needs --config FILE\n";
      return kUnknown;
    }
    return runDaemon({.config_path = a.get("--config")});
  }
  err << "mailprobed: unknown command " << a.command << "\n" << kUsage;
  return kUnknown;
}

}  // namespace mailprobe
