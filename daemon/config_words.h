#pragma once
// How config error messages name things, shared by the config readers (profile_config.cpp;
// config.cpp keeps file-local copies of the same functions until it moves over): a value quoted
// safely, a list of choices in words, and the known key or value a typo probably meant; and the
// address and host name checks of config.cpp and the Alertmanager URL.

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace mailprobe {

// An IPv4 or IPv6 address literal (inet_pton's syntax; an IPv6 one without brackets).
bool isIpv4(const std::string& s);
bool isIpv6(const std::string& s);

// Letters, digits, '-' and '_' in dot-separated labels (a DNS name as mail hosts spell them).
bool isDomainName(std::string_view s);

// ASCII lower case.
std::string lowerAscii(std::string_view s);

// The closest candidate, if it is close enough to be a typo: at most two edits, case aside, and
// fewer than half of the candidate's length.
std::optional<std::string_view> closestWord(std::string_view word,
                                            const std::vector<std::string_view>& candidates);

// A value as a message shows it: in double quotes, one line, at most 64 characters, quotes,
// backslashes and control characters escaped (the text may come from anywhere).
std::string quotedValue(std::string_view s);

// "a", "a or b", "a, b or c" (or another conjunction).
std::string joinChoices(const std::vector<std::string_view>& names, std::string_view conj = "or");

}  // namespace mailprobe
