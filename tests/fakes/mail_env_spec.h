#pragma once
// An EndpointSpec for one endpoint of the loopback MailEnv, the way the integration tests probe
// it: the name "localhost" (the certificates' name), one static address, the test CA, a source
// address other than the listener's (Dovecot shows LOGINDISABLED only to such clients, STYLE.md
// platform facts), and generous deadlines for a loaded CI machine.

#include <chrono>
#include <string>

#include "probes/probe_spec.h"
#include "tests/fakes/mail_env.h"

namespace mailprobe::testing {

inline constexpr const char* kMailEnvProbeSource = "127.0.0.2";

inline EndpointSpec mailEnvSpec(const MailEnv& env, Service service, uint16_t port,
                                Security security, const std::string& address = "127.0.0.1") {
  EndpointSpec s;
  s.host = "localhost";
  s.addresses = {address};
  s.port = port;
  s.service = service;
  s.security = security;
  s.source_address = kMailEnvProbeSource;
  s.tls.ca_file = env.caFile();
  s.timeouts.phase = std::chrono::milliseconds(8000);
  s.timeouts.total = std::chrono::milliseconds(60000);
  return s;
}

}  // namespace mailprobe::testing
