#pragma once
// SASL building blocks (RFC 4422 family): base64 as SASL uses it (RFC 4648, padded, no line
// breaks), PLAIN (RFC 4616) and CRAM-MD5 (RFC 2195). Pure functions over bytes: the sessions
// decide when to send what. Results carry credentials: never log them.

#include <optional>
#include <string>
#include <string_view>

namespace mailprobe {

std::string base64Encode(std::string_view bytes);
// nullopt on invalid input (a character outside the alphabet, missing or misplaced padding,
// whitespace inside); surrounding whitespace, such as a trailing CR, is ignored. "" decodes to "".
std::optional<std::string> base64Decode(std::string_view text);
// base64("authzid\0user\0password")
std::string saslPlain(std::string_view user, std::string_view password,
                      std::string_view authzid = {});
// base64(user + " " + hex(HMAC-MD5(password, decoded challenge))); "" if the challenge is not
// valid base64 (or, on a FIPS-only OpenSSL, if MD5 is unavailable).
std::string cramMd5Response(std::string_view user, std::string_view password,
                            std::string_view challenge_b64);

}  // namespace mailprobe
