#include "service/processors/lua_json.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <exception>
#include <lua.hpp>
#include <utility>

// Everything here that runs inside a protected Lua call may be unwound by a
// Lua error (LuaJIT on x64 raises errors as foreign C++ exceptions, running
// destructors on the way). So this file catches `const std::exception&`
// only, never `...`: a catch-all would swallow LuaJIT's unwinding and leave
// the Lua state inconsistent.

namespace sluice::processors::lua {

namespace {

using nlohmann::json;

// Registry keys: the addresses are unique, so no script or library can
// collide with them (and scripts cannot reach the registry at all).
char kNullKey;
char kArrayMetaKey;
char kObjectMetaKey;
char kManyMetaKey;
char kIntMetaKey;
// All five above in one table (array slots kMarker*), so a conversion
// fetches them with one hashed lookup instead of five.
char kMarkersKey;
constexpr int kMarkerNull = 1, kMarkerArray = 2, kMarkerObject = 3,
              kMarkerMany = 4, kMarkerInt = 5;
char kTrampolineKey;

// 2^53: integers up to this magnitude are exact as Lua numbers (doubles).
constexpr std::uint64_t kExactDoubleLimit = std::uint64_t{1} << 53;
// Per converted value, towards ToJsonLimits::max_bytes.
constexpr std::size_t kValueBytes = 16;

void PushRegistry(lua_State* L, const void* key) {
  lua_pushlightuserdata(L, const_cast<void*>(key));
  lua_rawget(L, LUA_REGISTRYINDEX);
}

int AbsIndex(lua_State* L, int index) {
  return (index > 0 || index <= LUA_REGISTRYINDEX) ? index
                                                   : lua_gettop(L) + index + 1;
}

// ---- big integers ---------------------------------------------------------

// An integer a double cannot hold exactly: -2^63 .. 2^64-1 as sign and
// magnitude (magnitude <= 2^63 when negative).
struct BigInt {
  std::uint64_t magnitude;
  bool negative;
};

BigInt BigFromJson(const json& v) {
  if (v.is_number_unsigned()) return {v.get<std::uint64_t>(), false};
  const std::int64_t i = v.get<std::int64_t>();
  if (i >= 0) return {static_cast<std::uint64_t>(i), false};
  // -(i + 1) + 1 avoids overflowing on INT64_MIN.
  return {static_cast<std::uint64_t>(-(i + 1)) + 1, true};
}

json BigToJson(const BigInt& b) {
  if (!b.negative) return b.magnitude;  // number_unsigned, as parse() makes
  if (b.magnitude == 0) return std::int64_t{0};
  return -static_cast<std::int64_t>(b.magnitude - 1) - 1;
}

std::string BigText(const BigInt& b) {
  std::string digits = std::to_string(b.magnitude);
  return b.negative && b.magnitude != 0 ? "-" + digits : digits;
}

double BigToDouble(const BigInt& b) {
  const double d = static_cast<double>(b.magnitude);
  return b.negative ? -d : d;
}

// <0, 0, >0.
int BigCompare(const BigInt& a, const BigInt& b) {
  const bool a_neg = a.negative && a.magnitude != 0;
  const bool b_neg = b.negative && b.magnitude != 0;
  if (a_neg != b_neg) return a_neg ? -1 : 1;
  if (a.magnitude == b.magnitude) return 0;
  const bool a_smaller_magnitude = a.magnitude < b.magnitude;
  return (a_smaller_magnitude != a_neg) ? -1 : 1;
}

// The BigInt at `index`, or nullptr when the value is not one.
const BigInt* ToBig(lua_State* L, int index) {
  if (lua_type(L, index) != LUA_TUSERDATA || !lua_getmetatable(L, index)) {
    return nullptr;
  }
  PushRegistry(L, &kIntMetaKey);
  const bool is_big = lua_rawequal(L, -1, -2) != 0;
  lua_pop(L, 2);
  return is_big ? static_cast<const BigInt*>(lua_touserdata(L, index))
                : nullptr;
}

void PushBig(lua_State* L, const BigInt& b) {
  auto* p = static_cast<BigInt*>(lua_newuserdata(L, sizeof(BigInt)));
  *p = b;
  PushRegistry(L, &kIntMetaKey);
  lua_setmetatable(L, -2);
}

int BigToString(lua_State* L) {
  const BigInt* b = ToBig(L, 1);
  if (b == nullptr) return luaL_argerror(L, 1, "big integer expected");
  const std::string text = BigText(*b);
  lua_pushlstring(L, text.data(), text.size());
  return 1;
}

int BigEq(lua_State* L) {
  const BigInt* a = ToBig(L, 1);
  const BigInt* b = ToBig(L, 2);
  lua_pushboolean(L, a != nullptr && b != nullptr && BigCompare(*a, *b) == 0);
  return 1;
}

// Lua 5.1 calls __lt/__le only when both operands are big integers.
int BigLt(lua_State* L) {
  const BigInt* a = ToBig(L, 1);
  const BigInt* b = ToBig(L, 2);
  if (a == nullptr || b == nullptr) return luaL_error(L, "bad comparison");
  lua_pushboolean(L, BigCompare(*a, *b) < 0);
  return 1;
}

int BigLe(lua_State* L) {
  const BigInt* a = ToBig(L, 1);
  const BigInt* b = ToBig(L, 2);
  if (a == nullptr || b == nullptr) return luaL_error(L, "bad comparison");
  lua_pushboolean(L, BigCompare(*a, *b) <= 0);
  return 1;
}

// Pushes the text of operand `index` for `..`: big integers in decimal,
// strings and numbers as Lua writes them.
void PushConcatText(lua_State* L, int index) {
  if (const BigInt* b = ToBig(L, index)) {
    const std::string text = BigText(*b);
    lua_pushlstring(L, text.data(), text.size());
    return;
  }
  const int type = lua_type(L, index);
  if (type != LUA_TSTRING && type != LUA_TNUMBER) {
    luaL_error(L, "attempt to concatenate a %s value", lua_typename(L, type));
    return;
  }
  lua_pushvalue(L, index);  // a copy: lua_tolstring converts numbers in place
  lua_tolstring(L, -1, nullptr);
}

int BigConcat(lua_State* L) {
  lua_settop(L, 2);
  PushConcatText(L, 1);
  PushConcatText(L, 2);
  lua_concat(L, 2);
  return 1;
}

// ---- the `sluice` table ---------------------------------------------------

int NullToString(lua_State* L) {
  lua_pushliteral(L, "null");
  return 1;
}

// sluice.array(t) / sluice.object(t) / sluice.many(t): marks t (a new empty
// table when absent) and returns it.
int Mark(lua_State* L, const void* key) {
  if (lua_isnoneornil(L, 1)) {
    lua_settop(L, 0);
    lua_createtable(L, 0, 0);
  } else {
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
  }
  PushRegistry(L, key);
  // The C API ignores __metatable, so re-marking a marked table works.
  lua_setmetatable(L, 1);
  return 1;
}

int MarkArray(lua_State* L) { return Mark(L, &kArrayMetaKey); }
int MarkObject(lua_State* L) { return Mark(L, &kObjectMetaKey); }
int MarkMany(lua_State* L) { return Mark(L, &kManyMetaKey); }

// sluice.number(x): a big integer as the nearest Lua number; a number as is.
int ToNumber(lua_State* L) {
  if (const BigInt* b = ToBig(L, 1)) {
    lua_pushnumber(L, BigToDouble(*b));
    return 1;
  }
  luaL_checktype(L, 1, LUA_TNUMBER);
  lua_settop(L, 1);
  return 1;
}

// A marker metatable: `__metatable` makes getmetatable() return `name` and
// setmetatable() refuse, so scripts can test for it but not alter the
// shared table.
void NewMarker(lua_State* L, const char* name) {
  lua_createtable(L, 0, 2);
  lua_pushstring(L, name);
  lua_setfield(L, -2, "__metatable");
}

void SetRegistry(lua_State* L, const void* key) {  // pops the value
  lua_pushlightuserdata(L, const_cast<void*>(key));
  lua_insert(L, -2);
  lua_rawset(L, LUA_REGISTRYINDEX);
}

// The body of the protected helpers: job->fn(L, job->arg), with the job's
// light userdata removed from the arguments.
struct Job {
  int (*fn)(lua_State*, void*);
  void* arg;
};

int Trampoline(lua_State* L) {
  auto* job = static_cast<Job*>(lua_touserdata(L, 1));
  lua_remove(L, 1);
  return job->fn(L, job->arg);
}

int InstallImpl(lua_State* L) {
  NewMarker(L, "sluice.array");
  SetRegistry(L, &kArrayMetaKey);
  NewMarker(L, "sluice.object");
  SetRegistry(L, &kObjectMetaKey);
  NewMarker(L, "sluice.many");
  SetRegistry(L, &kManyMetaKey);

  NewMarker(L, "sluice.int");
  const luaL_Reg int_meta[] = {{"__tostring", BigToString},
                               {"__eq", BigEq},
                               {"__lt", BigLt},
                               {"__le", BigLe},
                               {"__concat", BigConcat}};
  for (const luaL_Reg& r : int_meta) {
    lua_pushcfunction(L, r.func);
    lua_setfield(L, -2, r.name);
  }
  SetRegistry(L, &kIntMetaKey);

  lua_newuserdata(L, 1);
  NewMarker(L, "sluice.null");
  lua_pushcfunction(L, NullToString);
  lua_setfield(L, -2, "__tostring");
  lua_setmetatable(L, -2);
  lua_pushvalue(L, -1);
  SetRegistry(L, &kNullKey);

  lua_pushcfunction(L, Trampoline);
  SetRegistry(L, &kTrampolineKey);

  lua_createtable(L, 5, 0);
  const std::pair<int, const void*> markers[] = {
      {kMarkerNull, &kNullKey},
      {kMarkerArray, &kArrayMetaKey},
      {kMarkerObject, &kObjectMetaKey},
      {kMarkerMany, &kManyMetaKey},
      {kMarkerInt, &kIntMetaKey}};
  for (const auto& [slot, key] : markers) {
    PushRegistry(L, key);
    lua_rawseti(L, -2, slot);
  }
  SetRegistry(L, &kMarkersKey);

  // The script-visible table (scripts may overwrite it; conversion uses the
  // registry copies, so they cannot break it).
  lua_createtable(L, 0, 5);
  lua_insert(L, -2);
  lua_setfield(L, -2, "null");
  const luaL_Reg fns[] = {{"array", MarkArray},
                          {"object", MarkObject},
                          {"many", MarkMany},
                          {"number", ToNumber}};
  for (const luaL_Reg& r : fns) {
    lua_pushcfunction(L, r.func);
    lua_setfield(L, -2, r.name);
  }
  lua_setfield(L, LUA_GLOBALSINDEX, "sluice");
  return 0;
}

Error StatusError(lua_State* L, int status) {
  std::string message;
  if (const char* s = lua_tostring(L, -1)) message = s;
  lua_pop(L, 1);
  if (status == LUA_ERRMEM) {
    return Error{std::string(kOutOfMemory), "not enough memory"};
  }
  return Error{
      std::string(kLuaError),
      message.empty() ? "Lua error " + std::to_string(status) : message};
}

// Runs job in protected mode with the `nargs` values on top of the stack as
// its arguments (they are consumed), leaving `nresults` results. Requires
// InstallJson. Returns the lua_pcall status; on failure the error message
// has been turned into *error and popped.
int RunProtected(lua_State* L, Job* job, int nargs, int nresults,
                 Error* error) {
  // Below the arguments: trampoline, job, args...
  PushRegistry(L, &kTrampolineKey);
  lua_insert(L, -(nargs + 1));
  lua_pushlightuserdata(L, job);
  lua_insert(L, -(nargs + 1));
  const int status = lua_pcall(L, nargs + 1, nresults, 0);
  if (status != 0) *error = StatusError(L, status);
  return status;
}

// ---- markers on the stack ---------------------------------------------------

// Absolute stack indices of the registry values a conversion compares with.
struct Markers {
  int null = 0, array = 0, object = 0, many = 0, integer = 0;
};

// Pushes the markers table and the five markers (6 slots).
Markers PushMarkers(lua_State* L) {
  lua_checkstack(L, 8);
  PushRegistry(L, &kMarkersKey);
  const int table = lua_gettop(L);
  Markers m;
  lua_rawgeti(L, table, kMarkerNull);
  m.null = table + 1;
  lua_rawgeti(L, table, kMarkerArray);
  m.array = table + 2;
  lua_rawgeti(L, table, kMarkerObject);
  m.object = table + 3;
  lua_rawgeti(L, table, kMarkerMany);
  m.many = table + 4;
  lua_rawgeti(L, table, kMarkerInt);
  m.integer = table + 5;
  return m;
}

enum class Marked { kNone, kArray, kObject, kMany, kInt, kOther };

Marked MarkOf(lua_State* L, int index, const Markers& m) {
  if (!lua_getmetatable(L, index)) return Marked::kNone;
  Marked r = Marked::kOther;
  if (lua_rawequal(L, -1, m.array)) {
    r = Marked::kArray;
  } else if (lua_rawequal(L, -1, m.object)) {
    r = Marked::kObject;
  } else if (lua_rawequal(L, -1, m.many)) {
    r = Marked::kMany;
  } else if (lua_rawequal(L, -1, m.integer)) {
    r = Marked::kInt;
  }
  lua_pop(L, 1);
  return r;
}

// ---- JSON -> Lua
// -------------------------------------------------------------

class Pusher {
 public:
  Pusher(lua_State* L, const Markers& m) : L_(L), m_(m) {}

  // Pushes v (one value) or returns false with error() set, having pushed
  // nothing net (the caller resets the stack).
  bool Push(const json& v, int depth) {
    switch (v.type()) {
      case json::value_t::null:
        lua_pushvalue(L_, m_.null);
        return true;
      case json::value_t::boolean:
        lua_pushboolean(L_, v.get<bool>() ? 1 : 0);
        return true;
      case json::value_t::number_integer: {
        const std::int64_t i = v.get<std::int64_t>();
        const std::uint64_t mag = i < 0
                                      ? static_cast<std::uint64_t>(-(i + 1)) + 1
                                      : static_cast<std::uint64_t>(i);
        if (mag <= kExactDoubleLimit) {
          lua_pushnumber(L_, static_cast<double>(i));
        } else {
          PushBig(L_, BigFromJson(v));
        }
        return true;
      }
      case json::value_t::number_unsigned: {
        const std::uint64_t u = v.get<std::uint64_t>();
        if (u <= kExactDoubleLimit) {
          lua_pushnumber(L_, static_cast<double>(u));
        } else {
          PushBig(L_, BigInt{u, false});
        }
        return true;
      }
      case json::value_t::number_float:
        lua_pushnumber(L_, v.get<double>());
        return true;
      case json::value_t::string: {
        const auto& s = v.get_ref<const std::string&>();
        lua_pushlstring(L_, s.data(), s.size());
        return true;
      }
      case json::value_t::array: {
        if (!Enter(depth)) return false;
        lua_createtable(
            L_, static_cast<int>(std::min<std::size_t>(v.size(), 1u << 30)), 0);
        int i = 0;
        for (const json& element : v) {
          if (!Push(element, depth + 1)) return false;
          lua_rawseti(L_, -2, ++i);
        }
        lua_pushvalue(L_, m_.array);
        lua_setmetatable(L_, -2);
        return true;
      }
      case json::value_t::object: {
        if (!Enter(depth)) return false;
        // One spare slot: scripts often add a field, which would otherwise
        // rehash the table.
        lua_createtable(
            L_, 0,
            static_cast<int>(std::min<std::size_t>(v.size(), 1u << 30)) + 1);
        for (const auto& [key, value] : v.items()) {
          lua_pushlstring(L_, key.data(), key.size());
          if (!Push(value, depth + 1)) return false;
          lua_rawset(L_, -3);
        }
        lua_pushvalue(L_, m_.object);
        lua_setmetatable(L_, -2);
        return true;
      }
      case json::value_t::binary:
      case json::value_t::discarded:
        break;
    }
    error_ = Error{std::string(kNotJson), "a " + std::string(v.type_name()) +
                                              " value, which has no Lua form"};
    return false;
  }

  const Error& error() const { return error_; }

 private:
  // Checks the depth of a container about to be pushed at `depth` and
  // makes room for it and one child (key and value).
  bool Enter(int depth) {
    if (depth + 1 > kMaxDepth) {
      error_ = Error{std::string(kTooDeep), "a value nested deeper than " +
                                                std::to_string(kMaxDepth) +
                                                " levels"};
      return false;
    }
    lua_checkstack(L_, 4);  // raises (protected) when memory runs out
    return true;
  }

  lua_State* L_;
  const Markers& m_;
  Error error_;
};

// ---- Lua -> JSON
// -------------------------------------------------------------

// "~" and "/" escaped as a JSON pointer segment needs.
std::string PointerSegment(std::string_view key) {
  std::string out;
  out.reserve(key.size());
  for (char c : key) {
    if (c == '~') {
      out += "~0";
    } else if (c == '/') {
      out += "~1";
    } else {
      out += c;
    }
  }
  return out;
}

// True when d is integral and within int64 (so a JSON integer can hold it).
bool IsInt64(double d) {
  return d >= -9223372036854775808.0 && d < 9223372036854775808.0 &&
         std::trunc(d) == d;
}

// A short readable form of a Lua key for messages (stack value at index).
std::string DescribeKey(lua_State* L, int index) {
  switch (lua_type(L, index)) {
    case LUA_TSTRING: {
      std::size_t n = 0;
      const char* s = lua_tolstring(L, index, &n);
      return json(RepairUtf8(std::string_view(s, std::min<std::size_t>(n, 40))))
          .dump();
    }
    case LUA_TNUMBER: {
      char buf[64];
      std::snprintf(buf, sizeof buf, "%.17g", lua_tonumber(L, index));
      return buf;
    }
    case LUA_TBOOLEAN:
      return lua_toboolean(L, index) ? "true" : "false";
    default:
      return std::string("a ") + lua_typename(L, lua_type(L, index));
  }
}

class Converter {
 public:
  Converter(lua_State* L, const Markers& m, const ToJsonLimits& limits)
      : L_(L), m_(m), limits_(limits) {}

  // Converts the value at absolute index `index`, nested in `depth`
  // containers, into `out`. False with the failure recorded; the caller
  // resets the stack.
  bool Convert(int index, json& out, int depth) {
    if (!Charge(kValueBytes)) return false;
    switch (lua_type(L_, index)) {
      case LUA_TNONE:
      case LUA_TNIL:
        out = nullptr;
        return true;
      case LUA_TBOOLEAN:
        out = lua_toboolean(L_, index) != 0;
        return true;
      case LUA_TNUMBER:
        return Number(lua_tonumber(L_, index), out);
      case LUA_TSTRING: {
        std::size_t n = 0;
        const char* s = lua_tolstring(L_, index, &n);
        if (!Charge(n)) return false;
        out = RepairUtf8(std::string_view(s, n));
        return true;
      }
      case LUA_TTABLE:
        return Table(index, out, depth);
      case LUA_TUSERDATA:
        if (lua_rawequal(L_, index, m_.null)) {
          out = nullptr;
          return true;
        }
        if (MarkOf(L_, index, m_) == Marked::kInt) {
          out =
              BigToJson(*static_cast<const BigInt*>(lua_touserdata(L_, index)));
          return true;
        }
        return Fail(kNotJson, "a userdata", ", which is not JSON");
      default:
        return Fail(kNotJson,
                    std::string("a ") + lua_typename(L_, lua_type(L_, index)),
                    ", which is not JSON");
    }
  }

  // Converts a sluice.many at `index` (already identified) into `values`.
  bool Many(int index, std::vector<json>& values) {
    std::size_t n = 0;
    if (!SequenceLength(index, &n)) {
      return Fail(kNotJson, "a sluice.many whose keys are not 1..n",
                  " (set elements to sluice.null, not nil)");
    }
    values.reserve(n);
    lua_checkstack(L_, 2);
    for (std::size_t i = 1; i <= n; ++i) {
      lua_rawgeti(L_, index, static_cast<int>(i));
      if (!Convert(lua_gettop(L_), values.emplace_back(), 0)) {
        many_element_ = i;
        return false;
      }
      lua_pop(L_, 1);
    }
    return true;
  }

  Error error() const {
    std::string where;
    if (many_element_ != 0) {
      where += " in sluice.many element " + std::to_string(many_element_);
    }
    if (!path_.empty()) {
      where += " at ";
      for (auto it = path_.rbegin(); it != path_.rend(); ++it) {
        where += "/" + *it;
      }
    }
    return Error{code_, what_ + where + tail_};
  }

 private:
  bool Fail(std::string_view code, std::string what, std::string tail,
            bool keep_path = true) {
    code_ = std::string(code);
    what_ = std::move(what);
    tail_ = std::move(tail);
    keep_path_ = keep_path;
    return false;
  }

  // Adds the segment of a failed child to the error's path.
  bool FailedAt(std::string segment) {
    if (keep_path_) path_.push_back(std::move(segment));
    return false;
  }

  bool Charge(std::size_t bytes) {
    bytes_ += bytes;
    if (bytes_ <= limits_.max_bytes) return true;
    return Fail(kTooLarge,
                "a value larger than " + std::to_string(limits_.max_bytes) +
                    " bytes once converted to JSON",
                " (is one table or string referenced many times?)",
                /*keep_path=*/false);
  }

  bool Number(double d, json& out) {
    if (std::isnan(d)) return Fail(kNotJson, "NaN", ", which is not JSON");
    if (std::isinf(d)) {
      return Fail(kNotJson, d > 0 ? "inf" : "-inf", ", which is not JSON");
    }
    if (d == 0 && std::signbit(d)) {
      out = d;  // -0: an integer would lose the sign
    } else if (IsInt64(d)) {
      out = static_cast<std::int64_t>(d);
    } else {
      out = d;
    }
    return true;
  }

  // True when the table at `index` has exactly the keys 1..n; sets *n.
  bool SequenceLength(int index, std::size_t* n) {
    std::size_t count = 0;
    double max = 0;
    bool integers = true;
    lua_checkstack(L_, 3);
    lua_pushnil(L_);
    while (lua_next(L_, index) != 0) {
      ++count;
      if (lua_type(L_, -2) == LUA_TNUMBER) {
        const double k = lua_tonumber(L_, -2);
        if (k >= 1 && k <= static_cast<double>(kExactDoubleLimit) &&
            std::trunc(k) == k) {
          max = std::max(max, k);
        } else {
          integers = false;
        }
      } else {
        integers = false;
      }
      lua_pop(L_, 1);
    }
    *n = count;
    return integers && max == static_cast<double>(count);
  }

  bool Table(int index, json& out, int depth) {
    if (depth + 1 > limits_.max_depth) {
      return Fail(kTooDeep,
                  "a value nested deeper than " +
                      std::to_string(limits_.max_depth) + " levels",
                  " (does a table contain itself?)", /*keep_path=*/false);
    }
    const Marked mark = MarkOf(L_, index, m_);
    if (mark == Marked::kMany) {
      return Fail(kNotJson, "sluice.many",
                  " inside a value (only process's return value may be one)");
    }
    // A table marked as an object is one whatever its keys: no need to
    // inspect them first.
    std::size_t n = 0;
    const bool sequence = mark != Marked::kObject && SequenceLength(index, &n);
    if (mark == Marked::kArray && !sequence) {
      return Fail(kNotJson, "a sluice.array whose keys are not 1..n",
                  " (set elements to sluice.null, not nil)");
    }
    lua_checkstack(L_, 3);
    if (mark == Marked::kArray || (sequence && n > 0)) {
      out = json::array();
      auto& array = out.get_ref<json::array_t&>();
      array.reserve(n);
      for (std::size_t i = 1; i <= n; ++i) {
        lua_rawgeti(L_, index, static_cast<int>(i));
        if (!Convert(lua_gettop(L_), array.emplace_back(), depth + 1)) {
          return FailedAt(std::to_string(i - 1));
        }
        lua_pop(L_, 1);
      }
      return true;
    }
    out = json::object();
    auto& object = out.get_ref<json::object_t&>();
    lua_pushnil(L_);
    while (lua_next(L_, index) != 0) {
      const int key = lua_gettop(L_) - 1;
      std::string name;
      if (lua_type(L_, key) == LUA_TSTRING) {
        std::size_t len = 0;
        const char* s = lua_tolstring(L_, key, &len);
        name = RepairUtf8(std::string_view(s, len));
      } else if (lua_type(L_, key) == LUA_TNUMBER &&
                 IsInt64(lua_tonumber(L_, key))) {
        // Never lua_tolstring on a number key: it converts the key in
        // place and breaks lua_next.
        name = std::to_string(static_cast<std::int64_t>(lua_tonumber(L_, key)));
      } else {
        return Fail(kNotJson, "a table with the key " + DescribeKey(L_, key),
                    ", which is not JSON (object keys must be strings or "
                    "integers)");
      }
      if (!Charge(name.size())) return false;
      auto [it, inserted] = object.emplace(name, nullptr);
      if (!inserted) {
        return Fail(kNotJson,
                    "a table with two keys that both read " + json(name).dump(),
                    " (a number and a string)");
      }
      if (!Convert(key + 1, it->second, depth + 1)) {
        return FailedAt(PointerSegment(name));
      }
      lua_pop(L_, 1);  // the value; the key stays for lua_next
    }
    return true;
  }

  lua_State* L_;
  const Markers& m_;
  const ToJsonLimits& limits_;
  std::size_t bytes_ = 0;
  std::string code_;
  std::string what_;
  std::string tail_;
  bool keep_path_ = true;
  std::vector<std::string> path_;  // innermost first
  std::size_t many_element_ = 0;   // 1-based; 0 = not in a sluice.many
};

// ---- protected-call bodies
// ---------------------------------------------------

struct PushArgs {
  const json* value;
  Result<void> result;
};

int PushBody(lua_State* L, void* arg) {
  auto* a = static_cast<PushArgs*>(arg);
  a->result = PushJsonUnprotected(L, *a->value);
  return a->result.ok() ? 1 : 0;
}

struct ToJsonArgs {
  const ToJsonLimits* limits;
  Result<json> result = json();
};

int ToJsonBody(lua_State* L, void* arg) {
  auto* a = static_cast<ToJsonArgs*>(arg);
  a->result = ToJsonUnprotected(L, 1, *a->limits);
  return 0;
}

struct ToScriptResultArgs {
  const ToJsonLimits* limits;
  Result<ScriptResult> result = ScriptResult{};
};

int ToScriptResultBody(lua_State* L, void* arg) {
  auto* a = static_cast<ToScriptResultArgs*>(arg);
  a->result = ToScriptResultUnprotected(L, 1, *a->limits);
  return 0;
}

Error ExceptionError(const std::exception& e) {
  if (dynamic_cast<const std::bad_alloc*>(&e) != nullptr) {
    return Error{std::string(kOutOfMemory), "not enough memory"};
  }
  return Error{std::string(kLuaError), e.what()};
}

// The length of the valid UTF-8 sequence at p (n bytes left), or 0.
std::size_t Utf8SequenceLength(const unsigned char* p, std::size_t n) {
  const unsigned char c = p[0];
  auto cont = [&](std::size_t i, unsigned char lo = 0x80,
                  unsigned char hi = 0xBF) {
    return i < n && p[i] >= lo && p[i] <= hi;
  };
  if (c < 0x80) return 1;
  if (c >= 0xC2 && c <= 0xDF) return cont(1) ? 2 : 0;
  if (c == 0xE0) return cont(1, 0xA0) && cont(2) ? 3 : 0;
  if ((c >= 0xE1 && c <= 0xEC) || c == 0xEE || c == 0xEF) {
    return cont(1) && cont(2) ? 3 : 0;
  }
  if (c == 0xED)
    return cont(1, 0x80, 0x9F) && cont(2) ? 3 : 0;  // no surrogates
  if (c == 0xF0) return cont(1, 0x90) && cont(2) && cont(3) ? 4 : 0;
  if (c >= 0xF1 && c <= 0xF3) return cont(1) && cont(2) && cont(3) ? 4 : 0;
  if (c == 0xF4) return cont(1, 0x80, 0x8F) && cont(2) && cont(3) ? 4 : 0;
  return 0;
}

}  // namespace

std::string RepairUtf8(std::string_view text) {
  const auto* p = reinterpret_cast<const unsigned char*>(text.data());
  const std::size_t n = text.size();
  std::size_t i = 0;
  // Fast path: most strings are valid; copy them whole.
  while (i < n) {
    const std::size_t len = Utf8SequenceLength(p + i, n - i);
    if (len == 0) break;
    i += len;
  }
  if (i == n) return std::string(text);
  std::string out(text.substr(0, i));
  out.reserve(n + 16);
  while (i < n) {
    const std::size_t len = Utf8SequenceLength(p + i, n - i);
    if (len == 0) {
      out += "\xEF\xBF\xBD";
      ++i;
    } else {
      out.append(text.data() + i, len);
      i += len;
    }
  }
  return out;
}

Result<void> InstallJson(lua_State* L) {
  const int status = lua_cpcall(L, InstallImpl, nullptr);
  if (status != 0) return StatusError(L, status);
  return {};
}

Result<void> PushJsonUnprotected(lua_State* L, const nlohmann::json& value) {
  const int top = lua_gettop(L);
  try {
    const Markers m = PushMarkers(L);
    Pusher pusher(L, m);
    if (!pusher.Push(value, 0)) {
      lua_settop(L, top);
      return pusher.error();
    }
    lua_replace(L, top + 1);  // over the markers table
    lua_settop(L, top + 1);
    return {};
  } catch (const std::exception& e) {
    lua_settop(L, top);
    return ExceptionError(e);
  }
}

Result<nlohmann::json> ToJsonUnprotected(lua_State* L, int index,
                                         const ToJsonLimits& limits) {
  index = AbsIndex(L, index);
  const int top = lua_gettop(L);
  try {
    const Markers m = PushMarkers(L);
    Converter converter(L, m, limits);
    json out;
    const bool ok = converter.Convert(index, out, 0);
    lua_settop(L, top);
    if (!ok) return converter.error();
    return out;
  } catch (const std::exception& e) {
    lua_settop(L, top);
    return ExceptionError(e);
  }
}

Result<ScriptResult> ToScriptResultUnprotected(lua_State* L, int index,
                                               const ToJsonLimits& limits) {
  index = AbsIndex(L, index);
  const int top = lua_gettop(L);
  try {
    ScriptResult result;
    if (lua_isnoneornil(L, index)) return result;
    const Markers m = PushMarkers(L);
    Converter converter(L, m, limits);
    bool ok = true;
    if (lua_type(L, index) == LUA_TTABLE &&
        MarkOf(L, index, m) == Marked::kMany) {
      result.kind = ScriptResult::kMany;
      ok = converter.Many(index, result.values);
    } else {
      result.kind = ScriptResult::kOne;
      ok = converter.Convert(index, result.values.emplace_back(), 0);
    }
    lua_settop(L, top);
    if (!ok) return converter.error();
    return result;
  } catch (const std::exception& e) {
    lua_settop(L, top);
    return ExceptionError(e);
  }
}

Result<void> PushJson(lua_State* L, const nlohmann::json& value) {
  PushArgs args{&value, {}};
  Job job{PushBody, &args};
  Error error;
  if (RunProtected(L, &job, 0, 1, &error) != 0) return error;
  if (!args.result.ok()) lua_pop(L, 1);  // the nil lua_pcall padded in
  return std::move(args.result);
}

Result<nlohmann::json> ToJson(lua_State* L, int index,
                              const ToJsonLimits& limits) {
  ToJsonArgs args{&limits};
  Job job{ToJsonBody, &args};
  Error error;
  lua_pushvalue(L, index);
  if (RunProtected(L, &job, 1, 0, &error) != 0) return error;
  return std::move(args.result);
}

Result<ScriptResult> ToScriptResult(lua_State* L, int index,
                                    const ToJsonLimits& limits) {
  ToScriptResultArgs args{&limits};
  Job job{ToScriptResultBody, &args};
  Error error;
  lua_pushvalue(L, index);
  if (RunProtected(L, &job, 1, 0, &error) != 0) return error;
  return std::move(args.result);
}

}  // namespace sluice::processors::lua
