#pragma once
// A SessionHost with no transport: it records what the session sends and asks for, so a test
// can play the server's side as a script of bytes (STYLE habit 13b). No sockets, no sleeps.

#include <string>
#include <vector>

#include "probes/session.h"

namespace mailprobe::testing {

class FakeHost : public SessionHost {
 public:
  void send(std::string_view bytes) override { sent.emplace_back(bytes); }
  void startTls() override { ++tls_requests; }
  void enterPhase(Phase phase) override { phases.push_back(phase); }
  void done() override { ++done_calls; }

  // What the session sent since the last call, joined.
  std::string takeSent() {
    std::string all;
    for (const auto& s : sent) {
      all += s;
    }
    sent.clear();
    return all;
  }

  std::vector<std::string> sent;
  std::vector<Phase> phases;
  int tls_requests = 0;
  int done_calls = 0;
};

// TLS facts as a completed handshake with a verified certificate would give them.
inline TlsFacts goodTls() {
  TlsFacts t;
  t.version = "TLSv1.3";
  t.cipher = "TLS_AES_256_GCM_SHA384";
  t.leaf_not_after = 2000000000;
  t.chain_not_after = 2000000000;
  t.accept_all_ok = true;
  return t;
}

}  // namespace mailprobe::testing
