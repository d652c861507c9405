#include "tests/fakes/secret_scan.h"

#include <algorithm>

#include "probes/sasl.h"

namespace mailprobe::testing {
namespace {

std::string unpadded(std::string b64) {
  while (!b64.empty() && b64.back() == '=') {
    b64.pop_back();
  }
  return b64;
}

}  // namespace

std::vector<SecretForm> passwordForms(const std::string& user, const std::string& password) {
  return {
      {"password", password},
      {"base64 (AUTH LOGIN)", unpadded(base64Encode(password))},
      {"AUTH PLAIN message", unpadded(saslPlain(user, password))},
  };
}

std::string findSecrets(const std::string& where, const std::string& text,
                        const std::vector<SecretForm>& forms) {
  std::string out;
  for (const SecretForm& f : forms) {
    if (f.bytes.empty()) {
      continue;
    }
    for (size_t at = text.find(f.bytes); at != std::string::npos; at = text.find(f.bytes, at + 1)) {
      size_t from = at > 60 ? at - 60 : 0;
      size_t to = std::min(text.size(), at + f.bytes.size() + 60);
      std::string context = text.substr(from, at - from) + "<" + f.name + ">" +
                            text.substr(at + f.bytes.size(), to - at - f.bytes.size());
      std::replace(context.begin(), context.end(), '\n', ' ');
      out += where + ": the " + f.name + " in \"" + context + "\"\n";
    }
  }
  return out;
}

}  // namespace mailprobe::testing
