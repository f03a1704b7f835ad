// Defines exception-free helpers over nlohmann::json_pointer (RFC 6901):
// parse, look up, set (creating objects on the way) and remove. The
// processors and aggregates use them for every `field`.
#ifndef SLUICE_SERVICE_UTIL_JSON_POINTER_HPP_
#define SLUICE_SERVICE_UTIL_JSON_POINTER_HPP_

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "service/util/result.hpp"

namespace sluice {

using JsonPointer = nlohmann::json::json_pointer;

// Parses `text` as a JSON pointer ("" is the whole document; otherwise it
// must start with '/', and '~' must be followed by 0 or 1). Fails with code
// "invalid_pointer" and a message saying why. Thread-safe.
Result<JsonPointer> ParseJsonPointer(std::string_view text);

// Returns the value at `ptr` in `doc`, or nullptr when there is none (a
// missing key, an index out of range or not a number, a path through a
// scalar). Never throws. Thread-safe for concurrent readers of `doc`.
const nlohmann::json* FindPointer(const nlohmann::json& doc,
                                  const JsonPointer& ptr);
nlohmann::json* FindPointer(nlohmann::json& doc, const JsonPointer& ptr);

// Sets `doc` at `ptr` to `value`, creating objects (for names) and arrays
// (for an index on a null) on the way; "-" appends to an array. Fails with
// code "invalid_path" when the path goes through a scalar or uses a bad array
// index; `doc` may then be partly changed. Never throws.
Result<void> SetPointer(nlohmann::json& doc, const JsonPointer& ptr,
                        nlohmann::json value);

// Removes the value at `ptr` from its parent object or array. Returns true
// when something was removed, false when there was nothing there. The root
// ("") cannot be removed (returns false). Never throws.
bool RemovePointer(nlohmann::json& doc, const JsonPointer& ptr);

// The text form of a JSON type for messages: "a string", "a number", ...
std::string DescribeJsonType(const nlohmann::json& value);

// The text of a value as processors and group_by use it: strings as-is,
// everything else as compact JSON (dump()). Never throws (invalid UTF-8 is
// replaced).
std::string JsonText(const nlohmann::json& value);

}  // namespace sluice

#endif  // SLUICE_SERVICE_UTIL_JSON_POINTER_HPP_
