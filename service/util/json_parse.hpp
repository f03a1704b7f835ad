// Defines sluice::ParseJsonText, the one JSON parser for untrusted input
// (HTTP bodies, NDJSON lines, WebSocket frames): nlohmann's parser behind a
// nesting-depth bound, with failures as values that carry the 0-based byte
// offset of the offending character.
#ifndef SLUICE_SERVICE_UTIL_JSON_PARSE_HPP_
#define SLUICE_SERVICE_UTIL_JSON_PARSE_HPP_

#include <cstddef>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "service/util/result.hpp"

namespace sluice {

// Deepest nesting of arrays and objects accepted in one value. Deeper input
// is refused before parsing: nlohmann's dump and comparisons recurse, so an
// unbounded depth would let one request exhaust a thread's stack.
inline constexpr std::size_t kMaxJsonDepth = 128;

// Why a text is not acceptable JSON. Thread-compatible (plain value).
struct JsonParseError {
  std::size_t offset = 0;  // 0-based byte offset of the offending character
  std::string reason;      // e.g. "syntax error while parsing value - ..."
};

// Parses `text` as exactly one JSON value (surrounding whitespace allowed).
// Fails, without throwing, on a syntax error (a NUL byte anywhere is one),
// invalid UTF-8 in a string, or nesting deeper than `max_depth` ("nesting
// deeper than 128 levels", at the bracket that goes too deep).
Result<nlohmann::json, JsonParseError> ParseJsonText(
    std::string_view text, std::size_t max_depth = kMaxJsonDepth);

// Checks that ParseJsonText(text, max_depth) would succeed, without
// building the value (no allocation on success); fails with the same error.
Result<void, JsonParseError> CheckJsonText(
    std::string_view text, std::size_t max_depth = kMaxJsonDepth);

}  // namespace sluice

#endif  // SLUICE_SERVICE_UTIL_JSON_PARSE_HPP_
