#pragma once
// Client profiles in the config file (STYLE habit 8): `[[profile]]` tables for the users' own
// clients, and `[profiles] disable = [...]` to turn built-ins off. See etc/examples/profiles.toml.
//
//   [profiles]
//   disable = ["ios-mail"]          # built-in ids only
//
//   [[profile]]
//   id = "office-copier"            # a metric label: [a-z0-9][a-z0-9-]*, at most 40 characters
//   description = "..."
//   replace = true                  # only to redefine a built-in of the same id
//     [profile.outgoing]            # or [[profile.outgoing]] for alternatives, in the client's
//     order host = "mail.example.org"     # default: the platform's host; must be a [[host]] name
//     port = 25                     # default from the security mode, and the reverse
//     security = "starttls"         # none | starttls | tls
//     certificates = "strict"       # strict | accept-all
//     tls_versions = ["TLSv1.2", "TLSv1.3"]   # a contiguous range; default: any
//     mechanisms = ["PLAIN", "LOGIN"]         # in the client's order; default: PLAIN, LOGIN
//     next_mechanism_on_failure = false       # tries its next mechanism after a refused login
//     sign_in = false               # outgoing only; default true
//     user = "email"                # email | local (informational)
//
// Every error is `file:line:col: message` at the offending key or value, all of them in one
// pass; unknown keys are errors with the closest known key suggested.

#include <string>
#include <string_view>
#include <vector>

#include <toml++/toml.h>

#include "daemon/config.h"
#include "daemon/profiles.h"

namespace mailprobe {

// The top-level keys this reader owns; the main loader skips them ("profile", "profiles").
bool isProfileKey(std::string_view top_level_key);

struct ProfileLoad {
  // What to judge, set exactly when errors is empty: the built-ins in their order (disabled ones
  // left out, replaced ones swapped in place), then the file's own in file order.
  std::vector<ClientProfile> profiles;
  std::vector<std::string> disabled;  // built-in ids turned off
  std::vector<ConfigError> errors;    // sorted by position
  bool ok() const { return errors.empty(); }
};

// Reads `profile` and `profiles` from the whole parsed config `root` (`host` is read too: a
// side's host must be one of its [[host]] names). `file` names the config in errors.
ProfileLoad loadProfiles(const toml::table& root, const std::string& file);

}  // namespace mailprobe
