#pragma once
// Looking for a password in what the daemon shows: outputs, logs, pages, metrics, details.
// Written apart from the probes' own redaction, so that a test does not check the code with
// itself: the forms come straight from what goes on the wire.

#include <string>
#include <vector>

namespace mailprobe::testing {

struct SecretForm {
  std::string name;   // "password", "base64 (AUTH LOGIN)", ...
  std::string bytes;  // what to look for
};

// Every form in which a probe sends `password` for `user`: as is, base64 as in AUTH LOGIN, the
// AUTH PLAIN message (base64 of "\0user\0password"), each base64 form also without its padding.
std::vector<SecretForm> passwordForms(const std::string& user, const std::string& password);

// Where any of `forms` occurs in `text`: one line per hit with the form's name and its context
// (the secret itself shown as <name>), "" when none does. `where` names the text in the lines.
std::string findSecrets(const std::string& where, const std::string& text,
                        const std::vector<SecretForm>& forms);

}  // namespace mailprobe::testing
