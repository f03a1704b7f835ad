// Defines the JSON <-> Lua value conversion of the `lua` processor
// (namespace sluice::processors::lua): installing the `sluice` script table
// (sluice.null, sluice.array, sluice.object, sluice.many, sluice.number) and
// the markers the conversion relies on into a lua_State, pushing a
// nlohmann::json as a Lua value, and converting a Lua value back.
//
// The rules (also in docs/configuration.md, "### lua"):
// - null <-> sluice.null (a unique userdata; `x == sluice.null` tests it).
// - booleans <-> booleans; strings <-> strings (any bytes, embedded NULs).
// - JSON arrays -> sequences marked as arrays (metatable "sluice.array"), so
//   an emptied one still converts back to []; JSON objects -> tables marked
//   as objects ("sluice.object"). Back: a marked table converts as marked;
//   an unmarked table whose keys are exactly 1..n (n >= 1) is an array; any
//   other unmarked table, including {}, is an object.
// - Object keys: strings, or integral numbers (written in decimal). Any
//   other key is an error, as is a marked array whose keys are not 1..n.
// - Numbers: JSON integers with |n| <= 2^53 and all floats become Lua
//   numbers. Other integers (beyond 2^53, up to 2^64-1 and down to -2^63)
//   become "big integer" userdata (metatable "sluice.int") that convert back
//   to the exact integer; tostring() gives their decimal text, == and < work
//   between two of them, `..` concatenates their text and sluice.number(x)
//   gives the nearest Lua number. Back: a number that is integral and in
//   int64 range becomes a JSON integer (-0 stays the float -0.0), any other
//   finite number a float; NaN and infinities are errors.
// - Strings back to JSON must be UTF-8: invalid bytes are replaced by
//   U+FFFD (as Go's encoding/json does), so nlohmann's dump() never throws.
// - Functions, coroutines, other userdata and sluice.many inside a value
//   are errors; nesting deeper than kMaxDepth (e.g. a table containing
//   itself) is an error, and so is a result larger than ToJsonLimits::
//   max_bytes (a table or string referenced many times is copied each time).
//
// The conversion never runs Lua code: it uses raw table access only, so
// metamethods (__index, __pairs...) are not consulted and the instruction
// budget is not charged.
#ifndef SLUICE_SERVICE_PROCESSORS_LUA_JSON_HPP_
#define SLUICE_SERVICE_PROCESSORS_LUA_JSON_HPP_

#include <cstddef>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "service/util/result.hpp"

// From <lua.h> (a C header: `typedef struct lua_State lua_State;`).
struct lua_State;

namespace sluice::processors::lua {

// Deepest nesting of arrays/objects converted either way: a top-level
// container is depth 1.
inline constexpr int kMaxDepth = 200;

// Error codes (Error::code) of the functions below.
inline constexpr std::string_view kTooDeep = "too_deep";
inline constexpr std::string_view kTooLarge = "too_large";
inline constexpr std::string_view kNotJson = "not_json";
inline constexpr std::string_view kOutOfMemory = "out_of_memory";
inline constexpr std::string_view kLuaError = "lua_error";

// Bounds of one Lua -> JSON conversion. Thread-compatible (plain value).
struct ToJsonLimits {
  int max_depth = kMaxDepth;
  // Bound on the converted size: the bytes of every string and key, plus 16
  // per value. Guards against a small Lua value that references one table
  // or string many times turning into a huge JSON document.
  std::size_t max_bytes = std::size_t{64} << 20;
};

// What a script's process(item) returned, converted. Thread-compatible.
struct ScriptResult {
  // kNil: the script returned nil (or nothing): the item is filtered.
  // kOne: any other value, in values[0].
  // kMany: sluice.many{...}: its elements, in order (possibly none).
  enum Kind { kNil, kOne, kMany } kind = kNil;
  std::vector<nlohmann::json> values;
};

// Adds the `sluice` global table to L and keeps the markers the conversion
// uses in L's registry. Requires: a fresh or sandboxed state, not yet
// installed; at least 3 free stack slots. Returns an error (code
// kOutOfMemory or kLuaError) when Lua runs out of memory; the state stays
// usable but the functions below must not be used on it then. Never throws,
// never raises a Lua error.
Result<void> InstallJson(lua_State* L);

// Pushes `value` onto L's stack as one Lua value (rules above). Requires:
// InstallJson(L) succeeded; at least 3 free stack slots (a C function has
// LUA_MINSTACK = 20 on entry). On success exactly
// one value was pushed; on failure none: code kTooDeep (nested deeper than
// kMaxDepth), kNotJson (a nlohmann binary value), kOutOfMemory (Lua memory
// ran out; the state stays usable). Never throws, never raises a Lua error.
Result<void> PushJson(lua_State* L, const nlohmann::json& value);

// Converts the value at stack `index` to JSON (rules above); the stack is
// left as it was. Requires: InstallJson(L) succeeded; at least 3 free stack
// slots. A Lua nil converts to JSON null. Errors: kNotJson (a function,
// NaN, a bad key...), kTooDeep, kTooLarge, kOutOfMemory; the message
// describes the offending value as the object of "returned", with its JSON
// pointer when it is nested, e.g. "a function at /f, which is not JSON".
// Never throws, never raises a Lua error, never runs Lua code.
Result<nlohmann::json> ToJson(lua_State* L, int index,
                              const ToJsonLimits& limits = {});

// As ToJson, for the value a script's process() returned: nil -> kNil,
// sluice.many{...} -> kMany with each element converted (the elements must
// be a sequence 1..n), anything else -> kOne. Same errors as ToJson; a bad
// element's message names it ("... in sluice.many element 2").
Result<ScriptResult> ToScriptResult(lua_State* L, int index,
                                    const ToJsonLimits& limits = {});

// The same three for callers already running inside a protected call
// (lua_pcall / lua_cpcall), e.g. a C function doing a whole item in one
// protected call. Same contracts, except that running out of Lua memory
// (or Lua stack) raises a Lua error (LUA_ERRMEM) instead of returning
// kOutOfMemory: an unprotected caller would then hit Lua's panic handler.
// They still never throw C++ exceptions.
Result<void> PushJsonUnprotected(lua_State* L, const nlohmann::json& value);
Result<nlohmann::json> ToJsonUnprotected(lua_State* L, int index,
                                         const ToJsonLimits& limits = {});
Result<ScriptResult> ToScriptResultUnprotected(lua_State* L, int index,
                                               const ToJsonLimits& limits = {});

// `text` with every byte sequence that is not valid UTF-8 (RFC 3629: no
// overlong forms, no surrogates, nothing above U+10FFFF) replaced by U+FFFD,
// one replacement per invalid byte. Thread-safe; throws only std::bad_alloc.
std::string RepairUtf8(std::string_view text);

}  // namespace sluice::processors::lua

#endif  // SLUICE_SERVICE_PROCESSORS_LUA_JSON_HPP_
