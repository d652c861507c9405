#include "daemon/config_words.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <algorithm>
#include <cstdio>

namespace mailprobe {
namespace {

size_t editDistance(std::string_view a, std::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) {
    row[j] = j;
  }
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

}  // namespace

bool isIpv4(const std::string& s) {
  in_addr a;
  return inet_pton(AF_INET, s.c_str(), &a) == 1;
}
bool isIpv6(const std::string& s) {
  in6_addr a;
  return inet_pton(AF_INET6, s.c_str(), &a) == 1;
}

bool isDomainName(std::string_view s) {
  if (s.empty() || s.size() > 253) {
    return false;
  }
  size_t label = 0;
  for (char c : s) {
    if (c == '.') {
      if (label == 0) {
        return false;
      }
      label = 0;
    } else if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               c == '-' || c == '_') {
      if (++label > 63) {
        return false;
      }
    } else {
      return false;
    }
  }
  return label > 0;
}

std::string lowerAscii(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(), [](char c) {
    return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
  });
  return out;
}

std::optional<std::string_view> closestWord(std::string_view word,
                                            const std::vector<std::string_view>& candidates) {
  std::optional<std::string_view> best;
  size_t best_distance = 3;
  std::string word_lower = lowerAscii(word);
  for (std::string_view c : candidates) {
    size_t distance = editDistance(word_lower, lowerAscii(c));
    if (distance < best_distance && distance < std::max<size_t>(c.size() / 2, 1)) {
      best = c;
      best_distance = distance;
    }
  }
  return best;
}

std::string quotedValue(std::string_view s) {
  std::string out = "\"";
  size_t shown = 0;
  for (unsigned char c : s) {
    if (++shown > 64) {
      out += "...";
      break;
    }
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20 || c == 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04X", c);
      out += buf;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out + '"';
}

std::string joinChoices(const std::vector<std::string_view>& names, std::string_view conj) {
  std::string out;
  for (size_t i = 0; i < names.size(); ++i) {
    if (i > 0) {
      out += i + 1 == names.size() ? " " + std::string(conj) + " " : ", ";
    }
    out += names[i];
  }
  return out;
}

}  // namespace mailprobe
