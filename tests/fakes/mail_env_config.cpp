#include "tests/fakes/mail_env_config.h"

#include <tuple>

#include "probes/tls_version_scan.h"

namespace mailprobe::testing {
namespace {

std::string quoted(const std::string& s) {
  return "\"" + s + "\"";
}

std::string quotedList(const std::vector<std::string>& words) {
  std::string out;
  for (const auto& w : words) {
    out += (out.empty() ? "" : ", ") + quoted(w);
  }
  return "[" + out + "]";
}

}  // namespace

uint16_t envPort(const MailEnv& env, uint16_t standard_port) {
  switch (standard_port) {
    case 143:
      return env.imapStarttlsPort();
    case 993:
      return env.imapsPort();
    case 25:
      return env.smtpPort();
    case 465:
      return env.smtpsPort();
    case 587:
      return env.submissionPort();
    default:
      return 0;
  }
}

namespace {

std::string defaultsAndAccount(const MailEnv& env, const std::string& defaults_extra) {
  return "[defaults]\nca_file = " + quoted(env.caFile()) + "\nsource_address = \"127.0.0.2\"\n" +
         defaults_extra + "\n[account]\nuser = " + quoted(env.user()) +
         "\npassword_file = " + quoted(env.dir() + "/password") + "\n\n";
}

}  // namespace

std::string platformConfigToml(const MailEnv& env, const std::string& address,
                               const std::string& defaults_extra) {
  return defaultsAndAccount(env, defaults_extra) + platformHostToml(env, address);
}

std::string daemonConfigToml(const MailEnv& env, uint16_t listen,
                             const std::string& defaults_extra) {
  return "[daemon]\nlisten = \"127.0.0.1:" + std::to_string(listen) + "\"\n\n" +
         defaultsAndAccount(env, defaults_extra);
}

std::string platformHostToml(const MailEnv& env, const std::string& address,
                             const std::string& endpoint_extra) {
  std::string t = "[[host]]\nname = \"localhost\"\naddresses = [" + quoted(address) + "]\n";
  for (auto [service, port, security] :
       {std::tuple{"imap", 143, "starttls"}, std::tuple{"imap", 993, "tls"},
        std::tuple{"smtp", 25, "starttls"}, std::tuple{"smtp", 465, "tls"},
        std::tuple{"smtp", 587, "starttls"}}) {
    t += std::string("  [[host.endpoint]]\n  service = ") + quoted(service) +
         "\n  port = " + std::to_string(envPort(env, static_cast<uint16_t>(port))) +
         "\n  security = " + quoted(security) + "\n" + endpoint_extra;
    if (port == 25) {
      t += "  starttls_required = false\n  auth = \"optional\"\n";
    }
  }
  return t;
}

std::string profilesToml(const MailEnv& env, const std::vector<ClientProfile>& profiles) {
  std::string t;
  for (const ClientProfile& p : profiles) {
    t += "\n[[profile]]\nid = " + quoted(p.id) + "\n" + (p.builtin ? "replace = true\n" : "");
    for (auto [direction, sides] :
         {std::pair{"incoming", &p.incoming}, std::pair{"outgoing", &p.outgoing}}) {
      for (const ClientSide& side : *sides) {
        std::vector<std::string> versions;
        for (int v : scannedTlsVersions()) {
          if ((side.tls_min_version == 0 || v >= side.tls_min_version) &&
              (side.tls_max_version == 0 || v <= side.tls_max_version)) {
            versions.emplace_back(tlsVersionName(v));
          }
        }
        uint16_t port = envPort(env, side.port);
        t += std::string("  [[profile.") + direction +
             "]]\n  port = " + std::to_string(port != 0 ? port : side.port) +
             "\n  security = " + quoted(std::string(toString(side.security))) +
             "\n  certificates = " + quoted(std::string(toString(side.cert_policy))) +
             "\n  tls_versions = " + quotedList(versions) + "\n  next_mechanism_on_failure = " +
             (side.next_mechanism_on_failure ? "true" : "false") + "\n";
        if (!side.mechanisms.empty()) {
          t += "  mechanisms = " + quotedList(side.mechanisms) + "\n";
        }
        if (std::string(direction) == "outgoing") {
          t += std::string("  sign_in = ") + (side.sign_in ? "true" : "false") + "\n";
        }
      }
    }
  }
  return t;
}

}  // namespace mailprobe::testing
