// Tests of service/processors/lua_json.hpp: JSON -> Lua -> JSON round trips
// of every JSON type, the conversion rules for values scripts build, the
// big-integer userdata, error messages, limits (depth, size, memory) and
// UTF-8 repair. Each test runs in a plain (unsandboxed) Lua state with the
// `sluice` table installed.
#include "service/processors/lua_json.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <limits>
#include <lua.hpp>
#include <string>

namespace sluice::processors::lua {
namespace {

using nlohmann::json;

class LuaJsonTest : public ::testing::Test {
 protected:
  LuaJsonTest() : L_(luaL_newstate()) {
    luaL_openlibs(L_);
    auto r = InstallJson(L_);
    EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.error().message);
  }
  ~LuaJsonTest() override { lua_close(L_); }

  // JSON -> Lua -> JSON, checking the stack is balanced.
  json RoundTrip(const json& in) {
    const int top = lua_gettop(L_);
    auto pushed = PushJson(L_, in);
    EXPECT_TRUE(pushed.ok()) << pushed.error().message;
    if (!pushed.ok()) return "push failed";
    EXPECT_EQ(lua_gettop(L_), top + 1);
    auto out = ToJson(L_, -1);
    EXPECT_EQ(lua_gettop(L_), top + 1);
    lua_settop(L_, top);
    EXPECT_TRUE(out.ok()) << out.error().message;
    return out.ok() ? out.value() : json("convert failed");
  }

  // Sets global `name` to `value` (converted).
  void SetGlobal(const char* name, const json& value) {
    ASSERT_TRUE(PushJson(L_, value).ok());
    lua_setglobal(L_, name);
  }

  // Runs `code` (a chunk returning one value) and leaves the value on top.
  void Run(const std::string& code) {
    ASSERT_EQ(luaL_loadstring(L_, code.c_str()), 0) << lua_tostring(L_, -1);
    ASSERT_EQ(lua_pcall(L_, 0, 1, 0), 0) << lua_tostring(L_, -1);
  }

  // The value `code` returns, converted.
  Result<json> Eval(const std::string& code, const ToJsonLimits& limits = {}) {
    const int top = lua_gettop(L_);
    Run(code);
    auto out = ToJson(L_, -1, limits);
    lua_settop(L_, top);
    return out;
  }

  json Value(const std::string& code) {
    auto r = Eval(code);
    EXPECT_TRUE(r.ok()) << code << ": " << r.error().message;
    return r.ok() ? r.value() : json("error");
  }

  std::string ErrorOf(const std::string& code,
                      const ToJsonLimits& limits = {}) {
    auto r = Eval(code, limits);
    EXPECT_FALSE(r.ok()) << code << " converted to " << r.value().dump();
    return r.ok() ? "" : r.error().code + ": " + r.error().message;
  }

  // The string `code` returns, run with global x = item.
  std::string LuaString(const json& item, const std::string& code) {
    SetGlobal("x", item);
    Run(code);
    std::size_t n = 0;
    const char* s = lua_tolstring(L_, -1, &n);
    std::string out = s != nullptr ? std::string(s, n) : "<not a string>";
    lua_pop(L_, 1);
    return out;
  }

  lua_State* L_;
};

// Same JSON text, and the same JSON type at the top.
void ExpectSame(const json& out, const json& in) {
  EXPECT_EQ(out.dump(), in.dump());
  EXPECT_EQ(out.type_name(), std::string(in.type_name())) << in.dump();
}

TEST_F(LuaJsonTest, ScalarsRoundTrip) {
  for (const json& v :
       {json(nullptr), json(true), json(false), json(0), json(-1), json(42),
        json(1.5), json(-2.5e-10), json(1e300), json(-0.0),
        json(std::numeric_limits<double>::denorm_min()), json(""),
        json("plain")}) {
    ExpectSame(RoundTrip(v), v);
  }
  EXPECT_TRUE(std::signbit(RoundTrip(json(-0.0)).get<double>()));
}

TEST_F(LuaJsonTest, StringsWithUnicodeAndNulRoundTrip) {
  const std::string nul("a\0b\0", 4);
  const std::string unicode = "h\xC3\xA9llo \xE2\x98\x83 \xF0\x9D\x84\x9E";
  EXPECT_EQ(RoundTrip(json(nul)).get<std::string>(), nul);
  EXPECT_EQ(RoundTrip(json(unicode)).get<std::string>(), unicode);
  // Lua sees the bytes: # is the byte length, NULs included.
  EXPECT_EQ(LuaString(json(nul), "return tostring(#x)"), "4");
  EXPECT_EQ(LuaString(json(unicode), "return tostring(#x)"), "15");
  // Keys too.
  const json obj = {{nul, 1}, {unicode, 2}};
  ExpectSame(RoundTrip(obj), obj);
}

TEST_F(LuaJsonTest, NestedValuesRoundTrip) {
  const json v = json::parse(R"({
    "a": [1, {"b": null, "c": [], "d": {}}, [[]], [{}], "s"],
    "e": {"f": {"g": [true, false, null, 1.25, -3]}},
    "empty_a": [], "empty_o": {}, "": "empty key", "1": "numeric key"
  })");
  ExpectSame(RoundTrip(v), v);
  for (const char* text : {"[]", "{}", "[[]]", "[{}]", "{\"a\":[]}", "[null]",
                           "[null,null]", "[[],{}]"}) {
    ExpectSame(RoundTrip(json::parse(text)), json::parse(text));
  }
}

TEST_F(LuaJsonTest, LargeIntegersRoundTripExactly) {
  const std::int64_t two53 = std::int64_t{1} << 53;
  const std::vector<json> values = {
      json(two53),
      json(-two53),
      json(two53 + 1),
      json(-(two53 + 1)),
      json(std::numeric_limits<std::int64_t>::max()),
      json(std::numeric_limits<std::int64_t>::min()),
      json(std::numeric_limits<std::uint64_t>::max()),
      json(std::uint64_t{1} << 63),
      json::parse("18446744073709551615"),
      json::parse("-9223372036854775808"),
      json::parse("9007199254740993"),
  };
  for (const json& v : values) {
    EXPECT_EQ(RoundTrip(v).dump(), v.dump());
    EXPECT_EQ(RoundTrip(v), v) << v.dump();
  }
  const json nested = {{"ids", {json(two53 + 1), json(-two53 - 1)}},
                       {"max", std::numeric_limits<std::uint64_t>::max()}};
  EXPECT_EQ(RoundTrip(nested).dump(), nested.dump());
}

TEST_F(LuaJsonTest, IntegersUpTo2To53AreLuaNumbersBeyondAreBigIntegers) {
  const std::int64_t two53 = std::int64_t{1} << 53;
  EXPECT_EQ(LuaString(json(two53), "return type(x)"), "number");
  EXPECT_EQ(LuaString(json(-two53), "return type(x)"), "number");
  EXPECT_EQ(LuaString(json(two53 + 1), "return type(x)"), "userdata");
  EXPECT_EQ(LuaString(json(two53 + 1), "return tostring(x)"),
            "9007199254740993");
  EXPECT_EQ(LuaString(json(std::numeric_limits<std::int64_t>::min()),
                      "return tostring(x)"),
            "-9223372036854775808");
  EXPECT_EQ(LuaString(json(std::numeric_limits<std::uint64_t>::max()),
                      "return 'id=' .. x .. '!'"),
            "id=18446744073709551615!");
  EXPECT_EQ(LuaString(json(two53 + 1), "return getmetatable(x)"), "sluice.int");
  // sluice.number: the nearest double.
  EXPECT_EQ(LuaString(json(two53 + 1),
                      "return string.format('%.0f', sluice.number(x))"),
            "9007199254740992");
  // == and < between big integers compare exactly.
  SetGlobal("a", json(two53 + 1));
  SetGlobal("b", json(two53 + 1));
  SetGlobal("c", json(two53 + 3));
  SetGlobal("n", json(std::numeric_limits<std::int64_t>::min()));
  EXPECT_EQ(Value("return a == b"), true);
  EXPECT_EQ(Value("return a == c"), false);
  EXPECT_EQ(Value("return a < c and not (c < a) and a <= b and n < a"), true);
  // A big integer never equals a number (Lua calls __eq only for two
  // userdata): documented.
  EXPECT_EQ(Value("return a == 9007199254740992"), false);
  // Arithmetic is an error, not a silent rounding.
  Run("return (pcall(function() return a + 1 end))");
  EXPECT_FALSE(lua_toboolean(L_, -1));
  lua_pop(L_, 1);
}

TEST_F(LuaJsonTest, NullIsTheSluiceNullSentinel) {
  SetGlobal("x", json::parse(R"({"a": null, "l": [null]})"));
  EXPECT_EQ(Value("return x.a == sluice.null and x.l[1] == sluice.null"), true);
  EXPECT_EQ(Value("return tostring(sluice.null)"), "null");
  EXPECT_EQ(Value("return getmetatable(sluice.null)"), "sluice.null");
  EXPECT_EQ(Value("return sluice.null"), nullptr);
  EXPECT_EQ(Value("return nil"), nullptr);
  EXPECT_EQ(Value("return {a = sluice.null}"), json::parse(R"({"a":null})"));
}

TEST_F(LuaJsonTest, ArraysFromJsonStayArraysWhenEmptied) {
  SetGlobal("x", json::parse(R"({"l": [1, 2], "o": {"k": 1}})"));
  EXPECT_EQ(Value("return getmetatable(x.l)"), "sluice.array");
  EXPECT_EQ(Value("return getmetatable(x.o)"), "sluice.object");
  EXPECT_EQ(Value("table.remove(x.l) table.remove(x.l) x.o.k = nil return x"),
            json::parse(R"({"l": [], "o": {}})"));
  // An object from JSON stays an object even with keys 1..n.
  EXPECT_EQ(Value("x.o[1] = 'a' return x.o"), json::parse(R"({"1": "a"})"));
  // Appending keeps an array an array.
  EXPECT_EQ(Value("x.l[#x.l + 1] = 'z' return x.l"), json::parse(R"(["z"])"));
}

TEST_F(LuaJsonTest, TablesBuiltByScriptsFollowTheRules) {
  EXPECT_EQ(Value("return {}"), json::object());
  EXPECT_EQ(Value("return sluice.array{}"), json::array());
  EXPECT_EQ(Value("return sluice.array()"), json::array());
  EXPECT_EQ(Value("return sluice.object{}"), json::object());
  EXPECT_EQ(Value("return {1, 'two', {3}}"), json::parse(R"([1,"two",[3]])"));
  EXPECT_EQ(Value("return sluice.object{1, 2}"),
            json::parse(R"({"1":1,"2":2})"));
  EXPECT_EQ(Value("return {[1] = 'a', [2] = 'b', x = 'c'}"),
            json::parse(R"({"1":"a","2":"b","x":"c"})"));
  // A hole makes it an object.
  EXPECT_EQ(Value("return {[1] = 'a', [3] = 'c'}"),
            json::parse(R"({"1":"a","3":"c"})"));
  EXPECT_EQ(Value("return {[-5] = 1, [0] = 2}"),
            json::parse(R"({"-5":1,"0":2})"));
  // Re-marking works, and getmetatable shows the mark.
  EXPECT_EQ(Value("local t = sluice.array{} return sluice.object(t)"),
            json::object());
  EXPECT_EQ(Value("return getmetatable(sluice.array{})"), "sluice.array");
  // The marks are protected: setmetatable on a marked table fails.
  EXPECT_EQ(Value("return (pcall(setmetatable, sluice.array{}, {}))"), false);
  // A table with a foreign metatable converts by its raw contents.
  EXPECT_EQ(Value("return setmetatable({a = 1}, {__index = function() "
                  "return 9 end})"),
            json::parse(R"({"a":1})"));
}

TEST_F(LuaJsonTest, NumbersComeBackAsIntegersWhenIntegral) {
  EXPECT_TRUE(Value("return 3").is_number_integer());
  EXPECT_TRUE(Value("return 3.0").is_number_integer());
  EXPECT_EQ(Value("return 2^60"), json(std::int64_t{1} << 60));
  EXPECT_TRUE(Value("return 2^60").is_number_integer());
  EXPECT_EQ(Value("return -2^63"),
            json(std::numeric_limits<std::int64_t>::min()));
  // 2^63 is beyond int64: a float.
  EXPECT_TRUE(Value("return 2^63").is_number_float());
  EXPECT_TRUE(Value("return 1.5").is_number_float());
  EXPECT_TRUE(Value("return 1e300").is_number_float());
  const json negzero = Value("return -(0.0)");
  EXPECT_TRUE(negzero.is_number_float());
  EXPECT_TRUE(std::signbit(negzero.get<double>()));
}

TEST_F(LuaJsonTest, NonJsonValuesAreErrorsNamingWhereTheyAre) {
  EXPECT_EQ(ErrorOf("return function() end"),
            "not_json: a function, which is not JSON");
  EXPECT_EQ(ErrorOf("return {a = {1, function() end}}"),
            "not_json: a function at /a/1, which is not JSON");
  EXPECT_EQ(ErrorOf("return {['a/b~c'] = 0/0}"),
            "not_json: NaN at /a~1b~0c, which is not JSON");
  EXPECT_EQ(ErrorOf("return 1/0"), "not_json: inf, which is not JSON");
  EXPECT_EQ(ErrorOf("return {-1/0}"),
            "not_json: -inf at /0, which is not JSON");
  EXPECT_EQ(ErrorOf("return coroutine.create(function() end)"),
            "not_json: a thread, which is not JSON");
  EXPECT_EQ(ErrorOf("return io.stdout"),
            "not_json: a userdata, which is not JSON");
}

TEST_F(LuaJsonTest, BadKeysAreErrorsNotCrashes) {
  EXPECT_EQ(ErrorOf("return {[true] = 1}"),
            "not_json: a table with the key true, which is not JSON (object "
            "keys must be strings or integers)");
  EXPECT_EQ(ErrorOf("return {x = {[1.5] = 1}}"),
            "not_json: a table with the key 1.5 at /x, which is not JSON "
            "(object keys must be strings or integers)");
  EXPECT_NE(ErrorOf("return {[{}] = 1}").find("the key a table"),
            std::string::npos);
  EXPECT_NE(ErrorOf("return {[print] = 1}").find("the key a function"),
            std::string::npos);
  EXPECT_NE(
      ErrorOf("return {[2^70] = 1}").find("the key 1.1805916207174113e+21"),
      std::string::npos);
  EXPECT_EQ(ErrorOf("return {[1] = 'a', ['1'] = 'b', x = 1}"),
            "not_json: a table with two keys that both read \"1\" (a number "
            "and a string)");
  EXPECT_EQ(ErrorOf("local a = sluice.array{1, 2, 3} a[2] = nil return a"),
            "not_json: a sluice.array whose keys are not 1..n (set elements "
            "to sluice.null, not nil)");
  EXPECT_EQ(ErrorOf("local a = sluice.array{1} a.x = 1 return {a}"),
            "not_json: a sluice.array whose keys are not 1..n at /0 (set "
            "elements to sluice.null, not nil)");
}

TEST_F(LuaJsonTest, CyclesAndDeepNestingAreErrors) {
  EXPECT_EQ(ErrorOf("local t = {} t.self = t return t"),
            "too_deep: a value nested deeper than 200 levels (does a table "
            "contain itself?)");
  EXPECT_EQ(ErrorOf("local t = {} t[1] = t return t"),
            "too_deep: a value nested deeper than 200 levels (does a table "
            "contain itself?)");
  // Exactly 200 levels convert; 201 do not.
  auto nest = [](int levels) {
    return "local t = {} for i = 2, " + std::to_string(levels) +
           " do t = {t} end return t";
  };
  const json deep = Value(nest(200));
  int depth = 0;
  for (const json* p = &deep;; p = &(*p)[0]) {
    ++depth;
    if (!p->is_array() || p->empty()) break;
  }
  EXPECT_EQ(depth, 200);
  EXPECT_EQ(ErrorOf(nest(201)).substr(0, 9), "too_deep:");
}

TEST_F(LuaJsonTest, SharedTablesCannotBlowUpTheResult) {
  // 2^60 paths through 61 tables: refused by size, quickly.
  ToJsonLimits limits;
  limits.max_bytes = std::size_t{1} << 20;
  EXPECT_EQ(
      ErrorOf("local t = {1} for i = 1, 60 do t = {t, t} end return t", limits),
      "too_large: a value larger than 1048576 bytes once converted to "
      "JSON (is one table or string referenced many times?)");
  // A string referenced many times counts each time.
  ToJsonLimits small;
  small.max_bytes = 50000;
  EXPECT_EQ(ErrorOf("local s = ('x'):rep(1000) local t = {} "
                    "for i = 1, 100 do t[i] = s end return t",
                    small)
                .substr(0, 10),
            "too_large:");
  EXPECT_TRUE(Eval("local s = ('x'):rep(1000) local t = {} "
                   "for i = 1, 40 do t[i] = s end return t",
                   small)
                  .ok());
}

TEST_F(LuaJsonTest, InvalidUtf8FromScriptsIsRepaired) {
  const json v = Value(R"(return {["k\255"] = "a\255b\192\175c"})");
  const std::string repl = "\xEF\xBF\xBD";
  EXPECT_EQ(v, json({{"k" + repl, "a" + repl + "b" + repl + repl + "c"}}));
  EXPECT_NO_THROW(v.dump());  // nlohmann throws on invalid UTF-8
}

TEST(RepairUtf8, ReplacesEachInvalidByte) {
  const std::string r = "\xEF\xBF\xBD";
  EXPECT_EQ(RepairUtf8("plain"), "plain");
  EXPECT_EQ(RepairUtf8(std::string("a\0b", 3)), std::string("a\0b", 3));
  EXPECT_EQ(RepairUtf8("\xC3\xA9\xE2\x98\x83\xF0\x9D\x84\x9E"),
            "\xC3\xA9\xE2\x98\x83\xF0\x9D\x84\x9E");
  EXPECT_EQ(RepairUtf8("\xC0\xAF"), r + r);                  // overlong '/'
  EXPECT_EQ(RepairUtf8("\xED\xA0\x80"), r + r + r);          // a surrogate
  EXPECT_EQ(RepairUtf8("\xF4\x90\x80\x80"), r + r + r + r);  // > U+10FFFF
  EXPECT_EQ(RepairUtf8("x\xE2\x98"), "x" + r + r);           // truncated
  EXPECT_EQ(RepairUtf8("\x80z"), r + "z");  // lone continuation
  EXPECT_EQ(RepairUtf8("\xFF"), r);
}

TEST_F(LuaJsonTest, ScriptResultKinds) {
  auto result = [&](const std::string& code) {
    Run(code);
    auto r = ToScriptResult(L_, -1);
    lua_pop(L_, 1);
    return r;
  };
  auto nil = result("return nil");
  ASSERT_TRUE(nil.ok());
  EXPECT_EQ(nil.value().kind, ScriptResult::kNil);
  auto one = result("return {a = 1}");
  ASSERT_TRUE(one.ok());
  EXPECT_EQ(one.value().kind, ScriptResult::kOne);
  EXPECT_EQ(one.value().values, std::vector<json>{json({{"a", 1}})});
  auto many = result("return sluice.many{1, {b = 2}, sluice.null}");
  ASSERT_TRUE(many.ok());
  EXPECT_EQ(many.value().kind, ScriptResult::kMany);
  EXPECT_EQ(many.value().values,
            (std::vector<json>{1, json({{"b", 2}}), nullptr}));
  auto none = result("return sluice.many{}");
  ASSERT_TRUE(none.ok());
  EXPECT_EQ(none.value().kind, ScriptResult::kMany);
  EXPECT_TRUE(none.value().values.empty());
  // A sluice.many anywhere else, or holding a bad element, is an error.
  auto bad = result("return sluice.many{1, {f = function() end}}");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().message,
            "a function in sluice.many element 2 at /f, which is not JSON");
  auto nested = result("return {sluice.many{1}}");
  ASSERT_FALSE(nested.ok());
  EXPECT_EQ(nested.error().message,
            "sluice.many at /0 inside a value (only process's return value "
            "may be one)");
  auto holes = result("return sluice.many{1, nil, 3}");
  ASSERT_FALSE(holes.ok());
  EXPECT_EQ(holes.error().code, kNotJson);
  // ToJson (not ToScriptResult) refuses a top-level sluice.many too.
  EXPECT_EQ(ErrorOf("return sluice.many{1}").substr(0, 9), "not_json:");
}

TEST_F(LuaJsonTest, PushingTooDeepIsAnErrorAndPushesNothing) {
  json deep = json::array();
  for (int i = 1; i < 200; ++i) deep = json::array({deep});
  const int top = lua_gettop(L_);
  ASSERT_TRUE(PushJson(L_, deep).ok());  // 200 levels
  lua_settop(L_, top);
  deep = json::array({deep});  // 201
  auto r = PushJson(L_, deep);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, kTooDeep);
  EXPECT_EQ(r.error().message, "a value nested deeper than 200 levels");
  EXPECT_EQ(lua_gettop(L_), top);
  // A binary value has no Lua form.
  auto b = PushJson(L_, json::binary({1, 2}));
  ASSERT_FALSE(b.ok());
  EXPECT_EQ(b.error().code, kNotJson);
  EXPECT_EQ(lua_gettop(L_), top);
}

// ---- memory exhaustion
// -------------------------------------------------------

struct Cap {
  std::size_t used = 0, limit = 0;
};

void* CappedAlloc(void* ud, void* ptr, std::size_t osize, std::size_t nsize) {
  auto* c = static_cast<Cap*>(ud);
  if (ptr == nullptr) osize = 0;
  if (nsize == 0) {
    std::free(ptr);
    c->used -= osize;
    return nullptr;
  }
  if (nsize > osize && c->used - osize + nsize > c->limit) return nullptr;
  void* p = std::realloc(ptr, nsize);
  if (p != nullptr) c->used = c->used - osize + nsize;
  return p;
}

TEST(LuaJsonMemoryTest, OutOfMemoryIsAnErrorAndTheStateRecovers) {
  Cap cap;
  cap.limit = std::size_t{1} << 20;
  lua_State* L = lua_newstate(CappedAlloc, &cap);
  ASSERT_NE(L, nullptr) << "lua_newstate refused a custom allocator";
  ASSERT_TRUE(InstallJson(L).ok());
  json big = json::array();
  for (int i = 0; i < 20000; ++i)
    big.push_back(std::string(100, 'x') + std::to_string(i));
  const int top = lua_gettop(L);
  auto r = PushJson(L, big);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, kOutOfMemory);
  EXPECT_EQ(lua_gettop(L), top);
  lua_gc(L, LUA_GCCOLLECT, 0);
  // Still usable.
  ASSERT_TRUE(PushJson(L, json::parse(R"({"a":[1,2,3]})")).ok());
  auto back = ToJson(L, -1);
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back.value(), json::parse(R"({"a":[1,2,3]})"));
  lua_close(L);
  EXPECT_EQ(cap.used, 0u);
}

}  // namespace
}  // namespace sluice::processors::lua
