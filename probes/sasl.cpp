#include "probes/sasl.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <algorithm>

namespace mailprobe {
namespace {

bool isSpace(char c) {
  return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

bool isBase64Char(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' ||
         c == '/';
}

const unsigned char* bytesOf(std::string_view s) {
  return reinterpret_cast<const unsigned char*>(s.data());
}

}  // namespace

std::string base64Encode(std::string_view bytes) {
  std::string out(4 * ((bytes.size() + 2) / 3), '\0');
  // EVP_EncodeBlock writes a terminating NUL past the output: give it the string's own.
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()), bytesOf(bytes),
                          static_cast<int>(bytes.size()));
  out.resize(static_cast<size_t>(n));
  return out;
}

std::optional<std::string> base64Decode(std::string_view text) {
  while (!text.empty() && isSpace(text.front()))
    text.remove_prefix(1);
  while (!text.empty() && isSpace(text.back()))
    text.remove_suffix(1);
  if (text.size() % 4 != 0)
    return std::nullopt;
  if (text.empty())
    return std::string();
  // EVP_DecodeBlock neither checks where '=' stands nor removes what padding decodes to, so the
  // shape is checked here and the padding subtracted below.
  size_t padding = text.ends_with("==") ? 2 : text.ends_with('=') ? 1 : 0;
  std::string_view body = text.substr(0, text.size() - padding);
  if (!std::all_of(body.begin(), body.end(), isBase64Char))
    return std::nullopt;
  std::string out(3 * text.size() / 4, '\0');
  int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()), bytesOf(text),
                          static_cast<int>(text.size()));
  if (n < 0 || static_cast<size_t>(n) < padding)
    return std::nullopt;
  out.resize(static_cast<size_t>(n) - padding);
  return out;
}

std::string saslPlain(std::string_view user, std::string_view password, std::string_view authzid) {
  std::string message;
  message.reserve(authzid.size() + user.size() + password.size() + 2);
  message.append(authzid).append(1, '\0').append(user).append(1, '\0').append(password);
  std::string encoded = base64Encode(message);
  OPENSSL_cleanse(message.data(), message.size());
  return encoded;
}

std::string cramMd5Response(std::string_view user, std::string_view password,
                            std::string_view challenge_b64) {
  std::optional<std::string> challenge = base64Decode(challenge_b64);
  if (!challenge)
    return "";
  unsigned char mac[EVP_MAX_MD_SIZE];
  size_t mac_len = 0;
  // An empty key must still be a valid pointer: HMAC treats a null key as "no key set".
  static const unsigned char kEmpty = 0;
  const unsigned char* key = password.empty() ? &kEmpty : bytesOf(password);
  if (EVP_Q_mac(nullptr, "HMAC", nullptr, "MD5", nullptr, key, password.size(), bytesOf(*challenge),
                challenge->size(), mac, sizeof(mac), &mac_len) == nullptr) {
    return "";
  }
  static constexpr char kHex[] = "0123456789abcdef";
  std::string response(user);
  response += ' ';
  for (size_t i = 0; i < mac_len; ++i) {
    response += kHex[mac[i] >> 4];
    response += kHex[mac[i] & 0x0f];
  }
  return base64Encode(response);
}

}  // namespace mailprobe
