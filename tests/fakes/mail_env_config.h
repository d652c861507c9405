#pragma once
// Config files for the loopback MailEnv, the way a user would write them for the platform: the
// five endpoints on the servers' random ports, and client profiles whose standard ports
// (143, 993, 25, 465, 587) are moved to those ports, so that the real `mailprobed` binary judges
// them against the real servers.

#include <cstdint>
#include <string>
#include <vector>

#include "daemon/profiles.h"
#include "tests/fakes/mail_env.h"

namespace mailprobe::testing {

// The port behind a standard one (143, 993, 25, 465, 587); 0 for any other.
uint16_t envPort(const MailEnv& env, uint16_t standard_port);

// [defaults] (the test CA, source address 127.0.0.2, then `defaults_extra`, whole TOML lines),
// [account] (the env's user and password file) and one [[host]] "localhost" at `address` with
// the platform's five endpoints (25: STARTTLS and sign-in optional).
std::string platformConfigToml(const MailEnv& env, const std::string& address,
                               const std::string& defaults_extra = "");

// [daemon] listening on 127.0.0.1:`listen`, then [defaults] and [account] as above, no host:
// for `mailprobed run`, followed by hosts of the caller's choosing.
std::string daemonConfigToml(const MailEnv& env, uint16_t listen,
                             const std::string& defaults_extra = "");

// One [[host]] "localhost" at `address` with the platform's five endpoints (25: STARTTLS and
// sign-in optional), `endpoint_extra` (whole TOML lines) added to each endpoint.
std::string platformHostToml(const MailEnv& env, const std::string& address,
                             const std::string& endpoint_extra = "");

// One [[profile]] per profile, every setting of its sides written out, standard ports moved to
// the env's (other ports kept); built-ins get `replace = true`.
std::string profilesToml(const MailEnv& env, const std::vector<ClientProfile>& profiles);

}  // namespace mailprobe::testing
