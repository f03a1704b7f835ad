// Tests of the `lua` processor (service/processors/lua.cpp) through the
// public processor API: replace, filter and split from Lua, JSON round trips
// through a script, the sandbox, the instruction and memory limits and the
// recovery after them, the C-stack bound on callbacks nested through
// library functions (issue 11 §2: such recursion crashed the process),
// validation errors (syntax, missing process, params, files) with their
// lines and paths, runtime error messages, and pipelines through the real
// engine with exact counts.
#include <gtest/gtest.h>
#include <pthread.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <mutex>
#include <string>

#include "service/config/config.hpp"
#include "service/engine/engine.hpp"
#include "service/metrics/metrics.hpp"
#include "service/processors/aggregate.hpp"
#include "service/processors/checks.hpp"
#include "service/processors/processor.hpp"
#include "tests/support/wait_finished.hpp"

namespace sluice::processors {
namespace {

using nlohmann::json;

config::ProcessorSpec LuaSpec(json params) {
  return {"lua", std::move(params)};
}

config::ProcessorSpec Script(const std::string& script, json extra = {}) {
  json params = {{"script", script}};
  if (extra.is_object()) params.update(extra);
  return LuaSpec(std::move(params));
}

std::unique_ptr<Processor> Make(const config::ProcessorSpec& spec) {
  for (const auto& e : ValidateProcessorSpec(spec)) {
    ADD_FAILURE() << e.path << ": " << e.message;
  }
  auto p = MakeProcessor(spec);
  EXPECT_TRUE(p.ok()) << p.error().message;
  return p.ok() ? std::move(p).value() : nullptr;
}

std::unique_ptr<Processor> Make(const std::string& script, json extra = {}) {
  return Make(Script(script, std::move(extra)));
}

// Every validation error as "path: message", one per line.
std::string Errors(const config::ProcessorSpec& spec) {
  std::string all;
  for (const auto& e : ValidateProcessorSpec(spec)) {
    all += e.path + ": " + e.message + "\n";
  }
  return all;
}

std::string Errors(const std::string& script, json extra = {}) {
  return Errors(Script(script, std::move(extra)));
}

json One(Processor& p, const json& item) {
  Outcome o = p.Process(item);
  EXPECT_EQ(o.kind, Outcome::kValues) << o.error;
  EXPECT_EQ(o.values.size(), 1u);
  return o.values.empty() ? json("no value") : o.values[0];
}

std::string ErrorOf(Processor& p, const json& item) {
  Outcome o = p.Process(item);
  EXPECT_EQ(o.kind, Outcome::kError)
      << (o.values.empty() ? "" : o.values[0].dump());
  return o.error;
}

constexpr const char* kIdentity = "function process(x) return x end";

// ---- behaviour
// ------------------------------------------------------------------

TEST(LuaProcessorTest, ReplacesTheItem) {
  auto p = Make("function process(x) x.n = x.n + 1; x.tag = 't'; return x end");
  EXPECT_EQ(One(*p, json::parse(R"({"n":1,"name":"a"})")),
            json::parse(R"({"n":2,"name":"a","tag":"t"})"));
  // Scalars and new values.
  auto q = Make("function process(x) return {got = x, n = #tostring(x)} end");
  EXPECT_EQ(One(*q, "abc"), json::parse(R"({"got":"abc","n":3})"));
  EXPECT_EQ(One(*q, 7), json::parse(R"({"got":7,"n":1})"));
  EXPECT_FALSE(p->io_bound());
}

TEST(LuaProcessorTest, FilterReturnsNil) {
  auto p = Make(
      "function process(x) if x.age < 18 then return nil end return x end");
  EXPECT_EQ(p->Process(json::parse(R"({"age":12})")).kind, Outcome::kFiltered);
  EXPECT_EQ(One(*p, json::parse(R"({"age":30})")),
            json::parse(R"({"age":30})"));
  // No return at all filters too (documented).
  auto q = Make("function process(x) x.seen = true end");
  EXPECT_EQ(q->Process(json::object()).kind, Outcome::kFiltered);
}

TEST(LuaProcessorTest, SplitReturnsMany) {
  auto p = Make(R"(
function process(x)
  local parts = {}
  for word in x.text:gmatch("%S+") do
    parts[#parts + 1] = {word = word, n = #parts + 1}
  end
  return sluice.many(parts)
end)");
  Outcome o = p->Process(json::parse(R"({"text":"a bb  ccc"})"));
  ASSERT_EQ(o.kind, Outcome::kValues) << o.error;
  EXPECT_EQ(o.values,
            (std::vector<json>{json::parse(R"({"word":"a","n":1})"),
                               json::parse(R"({"word":"bb","n":2})"),
                               json::parse(R"({"word":"ccc","n":3})")}));
  Outcome none = p->Process(json::parse(R"({"text":"   "})"));
  EXPECT_EQ(none.kind, Outcome::kValues);
  EXPECT_TRUE(none.values.empty());  // the engine counts it as filtered
}

TEST(LuaProcessorTest, EveryJsonTypeRoundTripsThroughAScript) {
  auto p = Make(kIdentity);
  const json item = json::parse(R"({
    "null": null, "t": true, "f": false, "i": -42, "float": 1.25,
    "big": 9007199254740993, "max": 9223372036854775807,
    "min": -9223372036854775808, "umax": 18446744073709551615,
    "two53": 9007199254740992, "s": "h\u00e9llo \u2603 \ud834\udd1e",
    "nul": "a\u0000b", "empty_a": [], "empty_o": {},
    "nested": [[], [{}], {"a": [null, [1, [2, [3]]]]}]
  })");
  const json out = One(*p, item);
  EXPECT_EQ(out.dump(), item.dump());
  EXPECT_EQ(One(*p, json::array()).dump(), "[]");
  EXPECT_EQ(One(*p, json::object()).dump(), "{}");
  EXPECT_EQ(One(*p, nullptr).dump(), "null");
  EXPECT_EQ(One(*p, json::parse("18446744073709551615")).dump(),
            "18446744073709551615");
}

TEST(LuaProcessorTest, ScriptsSeeLargeIntegersAsExactText) {
  auto p = Make(R"(
function process(x)
  return {kind = type(x.id), text = tostring(x.id), same = x.id == x.copy,
          small = type(x.small)}
end)");
  EXPECT_EQ(One(*p, json::parse(R"({"id":9007199254740993,
                                     "copy":9007199254740993,"small":5})")),
            json::parse(R"({"kind":"userdata","text":"9007199254740993",
                            "same":true,"small":"number"})"));
}

TEST(LuaProcessorTest, GlobalsPersistPerWorkerButNotAcrossWorkers) {
  const char* counter =
      "count = 0 function process(x) count = count + 1 return count end";
  auto a = Make(counter);
  auto b = Make(counter);
  EXPECT_EQ(One(*a, 0), 1);
  EXPECT_EQ(One(*a, 0), 2);
  EXPECT_EQ(One(*b, 0), 1);  // its own state
}

// ---- sandbox
// ----------------------------------------------------------------------

TEST(LuaProcessorTest, ForbiddenGlobalsAreNil) {
  auto p = Make(R"(
function process(name) return type(_G[name]) .. "/" .. type(rawget(_G, name)) end)");
  for (const char* name :
       {"io", "package", "require", "module", "debug", "ffi", "jit", "load",
        "loadstring", "loadfile", "dofile", "getfenv", "setfenv",
        "collectgarbage", "newproxy", "gcinfo", "print"}) {
    EXPECT_EQ(One(*p, name), "nil/nil") << name;
  }
  for (const char* name :
       {"pairs", "ipairs", "type", "tostring", "tonumber", "pcall", "xpcall",
        "error", "select", "unpack", "rawget", "rawset", "rawequal",
        "setmetatable", "getmetatable", "next", "assert"}) {
    EXPECT_EQ(One(*p, name), "function/function") << name;
  }
  for (const char* name : {"string", "table", "math", "bit", "os", "sluice"}) {
    EXPECT_EQ(One(*p, name), "table/table") << name;
  }
}

TEST(LuaProcessorTest, OsKeepsOnlyTheClocks) {
  auto p = Make(R"(
function process(x)
  local names = {}
  for k in pairs(os) do names[#names + 1] = k end
  table.sort(names)
  return {names = names, time = type(os.time()), clock = type(os.clock())}
end)");
  EXPECT_EQ(One(*p, 0), json::parse(R"({"names":["clock","time"],
                                        "time":"number","clock":"number"})"));
}

TEST(LuaProcessorTest, SandboxEscapesAreRefused) {
  // Each expression must be nil (or false), whichever path it takes.
  auto p = Make(R"(
local checks = {
  function() return string.dump end,
  function() return ("").dump end,
  function() return getmetatable("").__index.dump end,
  function() return getmetatable("").__index.load end,
  function() return rawget(_G, "load") end,
  function() return _G["loadstring"] end,
  function() return setmetatable({}, {__index = _G}).loadstring end,
  function() return (pcall(function() return require("io") end)) end,
  function() return (pcall(function() return load("return 1") end)) end,
  function() return coroutine.load end,
  function() return sluice.load end,
  function() return _G._G.io end,
  function() return os.execute or os.getenv or os.remove or os.exit end,
}
function process(i)
  local v = checks[i]()
  return v == nil or v == false
end)");
  for (int i = 1; i <= 13; ++i) EXPECT_EQ(One(*p, i), true) << "check " << i;
}

TEST(LuaProcessorTest, BinaryChunksAreRefused) {
  const std::string bytecode = "\x1bLJ\x02\x00";
  const std::string errors = Errors(bytecode);
  EXPECT_EQ(errors,
            "script: is a binary (precompiled) chunk; only Lua source is "
            "accepted\n");
}

// ---- limits
// -----------------------------------------------------------------------

TEST(LuaProcessorTest,
     InstructionBudgetStopsAnInfiniteLoopAndTheWorkerRecovers) {
  auto p = Make(R"(
function process(x)
  if x == "loop" then while true do end end
  return x .. "!"
end)",
                {{"max_instructions", 10000}});
  const auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(ErrorOf(*p, "loop"), "lua: instruction budget exceeded (10000)");
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
  EXPECT_EQ(One(*p, "ok"), "ok!");
  EXPECT_EQ(ErrorOf(*p, "loop"), "lua: instruction budget exceeded (10000)");
  EXPECT_EQ(One(*p, "again"), "again!");
}

TEST(LuaProcessorTest, InstructionBudgetCannotBeSwallowedByPcallOrCoroutines) {
  auto p = Make(R"(
function process(x)
  if x == "pcall" then
    while true do pcall(function() while true do end end) end
  elseif x == "coroutine" then
    local co = coroutine.wrap(function() while true do end end)
    co()
  elseif x == "xpcall" then
    while true do xpcall(function() while true do end end, function() return 1 end) end
  end
  return x
end)",
                {{"max_instructions", 50000}});
  for (const char* how : {"pcall", "coroutine", "xpcall"}) {
    EXPECT_EQ(ErrorOf(*p, how), "lua: instruction budget exceeded (50000)")
        << how;
    EXPECT_EQ(One(*p, "fine"), "fine");
  }
}

TEST(LuaProcessorTest, DefaultBudgetAllowsOrdinaryWork) {
  auto p = Make(R"(
function process(n) local s = 0 for i = 1, n do s = s + i end return s end)");
  EXPECT_EQ(One(*p, 100000), 5000050000LL);
  EXPECT_EQ(ErrorOf(*p, 10000000),
            "lua: instruction budget exceeded (1000000)");
  EXPECT_EQ(One(*p, 10), 55);
}

TEST(LuaProcessorTest, MemoryLimitFailsTheItemAndTheStateRecovers) {
  auto p = Make(R"(
function process(x)
  if x == "table" then
    local t = {}
    for i = 1, 1e8 do t[i] = i end
  elseif x == "rep" then
    return string.rep("x", 1e9)
  elseif x == "concat" then
    local s = "x"
    for i = 1, 40 do s = s .. s end
    return #s
  elseif x == "caught" then
    local ok = pcall(string.rep, "x", 1e8)
    return ok
  end
  local t = {}
  for i = 1, 1000 do t[i] = i end
  return #t
end)",
                {{"max_memory", "4MiB"}, {"max_instructions", 100000000}});
  for (int round = 0; round < 3; ++round) {
    for (const char* how : {"table", "rep", "concat"}) {
      EXPECT_EQ(ErrorOf(*p, how), "lua: memory limit exceeded (4 MiB)") << how;
      EXPECT_EQ(One(*p, "normal"), 1000) << "after " << how;
    }
  }
  // A script may catch the failure itself and carry on.
  EXPECT_EQ(One(*p, "caught"), false);
  EXPECT_EQ(One(*p, "normal"), 1000);
}

TEST(LuaProcessorTest, AnItemLargerThanTheMemoryCapFailsCleanly) {
  auto p = Make(kIdentity, {{"max_memory", "1MiB"}});
  json big = json::array();
  for (int i = 0; i < 20000; ++i)
    big.push_back(std::string(64, 'x') + std::to_string(i));
  EXPECT_EQ(ErrorOf(*p, big), "lua: memory limit exceeded (1 MiB)");
  EXPECT_EQ(One(*p, json::parse(R"({"small":[1]})")),
            json::parse(R"({"small":[1]})"));
}

TEST(LuaProcessorTest, SharedValuesCannotBlowUpTheResult) {
  // The bound on the converted size is max_memory.
  auto p = Make(R"(
function process(x) local t = {1} for i = 1, 60 do t = {t, t} end return t end)",
                {{"max_memory", "2MiB"}});
  EXPECT_EQ(ErrorOf(*p, 0),
            "lua: process returned a value larger than 2097152 bytes once "
            "converted to JSON (is one table or string referenced many "
            "times?)");
}

// ---- the C stack
// --------------------------------------------------------------------

// Recursion through library functions that call back into Lua, each to a
// depth the item chooses. Before the C-stack bound, 4 KB of brackets or a
// large n overflowed the thread's stack: SIGSEGV, and the process was gone.
constexpr const char* kRecursions = R"lua(
local function depth(s)  -- how deeply brackets nest, through gsub callbacks
  local d = 0
  s:gsub("%b()", function(inner) d = math.max(d, 1 + depth(inner:sub(2, -2))) end)
  return d
end
local function sorts(n)  -- a table.sort inside a comparator, n deep
  if n == 0 then return 0 end
  local r = 0
  table.sort({2, 1}, function(a, b) r = sorts(n - 1) + 1 return a < b end)
  return r
end
local lt = {}  -- __lt, which table.sort calls from C, sorting again
lt.__lt = function(a, b)
  if a.n > 0 then table.sort({setmetatable({n = a.n - 1}, lt), setmetatable({n = a.n - 1}, lt)}) end
  return false
end
local chain = {}  -- __tostring under string.format (run in Lua, see below)
chain.__tostring = function(o)
  if o.n == 0 then return "" end
  return string.format("(%s)", setmetatable({n = o.n - 1}, chain))
end
local function resumes(n)  -- n coroutines, each resumed by the one before
  if n == 0 then return 0 end
  local ok, r = coroutine.resume(coroutine.create(resumes), n - 1)
  if not ok then error(r, 0) end
  return r + 1
end
local function wraps(n)  -- the same through coroutine.wrap
  if n == 0 then return 0 end
  return coroutine.wrap(wraps)(n - 1) + 1
end
local date = {}  -- __index, which os.time calls from C
date.__index = function(t, k)
  if k == "year" and t.n > 0 then os.time(setmetatable({n = t.n - 1}, date)) end
  return ({year = 2020, month = 1, day = 2})[k]
end
function process(x)
  if type(x) == "string" then return depth(x) end
  local n = x.n
  if x.how == "sort" then return sorts(n) end
  if x.how == "lt" then
    table.sort({setmetatable({n = n}, lt), setmetatable({n = n}, lt)})
    return n
  end
  if x.how == "format" then return string.format("%s", setmetatable({n = n}, chain)) end
  if x.how == "resume" then return resumes(n) end
  if x.how == "wrap" then return wraps(n) end
  if x.how == "time" then return os.time(setmetatable({n = n}, date)) == os.time({year = 2020, month = 1, day = 2}) end
end)lua";

std::string Brackets(int depth) {
  return std::string(depth, '(') + std::string(depth, ')');
}

// line 0: no frame of the script was left on the stack (tail calls).
std::string CStackError(int line) {
  return std::string("lua: ") +
         (line > 0 ? "line " + std::to_string(line) + ": " : "") +
         "C stack overflow (callbacks nested too deep)";
}

// Each way of kRecursions to recurse through C: the line that trips the
// bound, and a small item with its answer.
struct Recursion {
  const char* how;
  int line;
  json small;
  json answer;
};
const Recursion kEveryRecursion[] = {
    {"sort", 10, json{{"how", "sort"}, {"n", 3}}, 3},
    {"lt", 15, json{{"how", "lt"}, {"n", 3}}, 3},
    {"resume", 25, json{{"how", "resume"}, {"n", 3}}, 3},
    {"wrap", 31, json{{"how", "wrap"}, {"n", 3}}, 3},
    {"time", 35, json{{"how", "time"}, {"n", 3}}, true},
};

const Recursion& RecursionOf(const std::string& how) {
  return *std::find_if(std::begin(kEveryRecursion), std::end(kEveryRecursion),
                       [&](const Recursion& r) { return r.how == how; });
}

json Deep(const char* how) { return {{"how", how}, {"n", 1000000}}; }

// Runs `fn` on a thread with a stack of `bytes`: worker threads get the
// stack rlimit (8 MiB by default, 2 MiB when it is unlimited, less when it
// is set lower), and the bound must fit whichever.
void OnStackOf(std::size_t bytes, const std::function<void()>& fn) {
  pthread_attr_t attr;
  ASSERT_EQ(pthread_attr_init(&attr), 0);
  ASSERT_EQ(pthread_attr_setstacksize(&attr, bytes), 0);
  pthread_t thread;
  const int created = pthread_create(
      &thread, &attr,
      [](void* arg) -> void* {
        (*static_cast<const std::function<void()>*>(arg))();
        return nullptr;
      },
      const_cast<std::function<void()>*>(&fn));
  pthread_attr_destroy(&attr);
  ASSERT_EQ(created, 0);
  pthread_join(thread, nullptr);
}

TEST(LuaProcessorTest, GsubRecursionOnNestedBracketsIsAnItemError) {
  // The hostile test of issue 11: 4 KB of nested brackets, every limit at
  // its default.
  auto p = Make(kRecursions);
  EXPECT_EQ(One(*p, Brackets(3) + "x(())"), 3);
  EXPECT_EQ(ErrorOf(*p, Brackets(2048)), CStackError(4));
  EXPECT_EQ(One(*p, "(a(b)c)"), 2);
  EXPECT_EQ(ErrorOf(*p, Brackets(2048)), CStackError(4));
  EXPECT_EQ(One(*p, Brackets(100)), 100);  // deep enough for real data
}

TEST(LuaProcessorTest, SortComparatorRecursionIsAnItemError) {
  // A comparator that sorts again also fills the Lua stack: on an 8 MiB
  // stack Lua's own bound comes first ("stack overflow"), but a 1 MiB one
  // (a worker under `ulimit -s 1024`) ran out before it: SIGSEGV.
  OnStackOf(std::size_t{1} << 20, [] {
    auto p = Make(kRecursions);
    for (const char* how : {"sort", "lt"}) {
      const Recursion& r = RecursionOf(how);
      EXPECT_EQ(ErrorOf(*p, Deep(how)), CStackError(r.line)) << how;
      EXPECT_EQ(One(*p, r.small), r.answer) << how;
    }
  });
  OnStackOf(std::size_t{8} << 20, [] {
    auto p = Make(kRecursions);
    // Which bound comes first depends on the C frames' size: in an
    // unoptimised sanitizer build (the asan preset, -O0) the C stack guard
    // does. Either way the item fails and the worker lives.
    const std::string sort_error = ErrorOf(*p, Deep("sort"));
    EXPECT_TRUE(sort_error == "lua: line 10: stack overflow" ||
                sort_error == CStackError(RecursionOf("sort").line))
        << sort_error;
    EXPECT_EQ(ErrorOf(*p, Deep("lt")), CStackError(RecursionOf("lt").line));
    EXPECT_EQ(One(*p, RecursionOf("sort").small), 3);
  });
}

TEST(LuaProcessorTest, TostringUnderStringFormatRecursionIsAnItemError) {
  // string.format called __tostring from C: this crashed on a 2 MiB stack
  // (a worker's when the stack rlimit is unlimited), and at some depths
  // corrupted the heap (next test). The wrapper now runs __tostring in Lua,
  // so the recursion fills the Lua stack, whose bound is Lua's own.
  for (const std::size_t stack :
       {std::size_t{2} << 20, std::size_t{512} << 10}) {
    OnStackOf(stack, [] {
      auto p = Make(kRecursions);
      // No line: __tostring and process tail-call format, which leaves no
      // frame of the script on the stack.
      EXPECT_EQ(ErrorOf(*p, Deep("format")), "lua: stack overflow");
      EXPECT_EQ(One(*p, json{{"how", "format"}, {"n", 3}}), "((()))");
      EXPECT_EQ(One(*p, json{{"how", "format"}, {"n", 500}}),
                std::string(500, '(') + std::string(500, ')'));
    });
  }
}

TEST(LuaProcessorTest, NestedStringFormatKeepsTheHeapIntact) {
  // In Debian 12's LuaJIT, a collection inside a __tostring that
  // string.format called shrinks the shared buffer format is writing to
  // and leaves its write position past the end: the rest of the outer
  // format went out of bounds (SIGSEGV or malloc aborts within a few
  // items, valgrind: invalid write).
  auto p = Make(R"lua(
local big = string.rep("x", 100000)
local o = setmetatable({}, {__tostring = function() return string.format("%s", big) end})
function process(x)
  for i = 1, x do
    local r = string.format("<%s> and some text after it", o)
    assert(#r == 100000 + 25, #r)
  end
  return x
end)lua");
  for (int i = 0; i < 5; ++i) EXPECT_EQ(One(*p, 20), 20);
}

TEST(LuaProcessorTest, DeeplyNestedCoroutinesAreAnItemError) {
  // A coroutine runs on its resumer's C stack, and each has its own Lua
  // stack, so only memory bounded their nesting: not enough.
  auto p = Make(kRecursions);
  for (const char* how : {"resume", "wrap"}) {
    EXPECT_EQ(ErrorOf(*p, Deep(how)), CStackError(RecursionOf(how).line))
        << how;
    EXPECT_EQ(One(*p, json{{"how", how}, {"n", 3}}), 3) << how;
  }
}

TEST(LuaProcessorTest, EveryCallbackPathIsBoundedOnSmallThreadStacks) {
  // The bound is 1 MiB, or half the stack the thread has left when the item
  // begins if that is less.
  for (const std::size_t stack :
       {std::size_t{2} << 20, std::size_t{1} << 20, std::size_t{512} << 10}) {
    OnStackOf(stack, [&] {
      auto p = Make(kRecursions);
      ASSERT_NE(p, nullptr);
      EXPECT_EQ(ErrorOf(*p, Brackets(2048)), CStackError(4)) << stack;
      EXPECT_EQ(One(*p, Brackets(20)), 20) << stack;
      for (const Recursion& r : kEveryRecursion) {
        const std::string error = ErrorOf(*p, Deep(r.how));
        if (std::string(r.how) == "sort" && stack > (std::size_t{1} << 20)) {
          // With a full 1 MiB bound, the Lua stack fills at about the same
          // depth as the C stack's bound.
          EXPECT_TRUE(error == CStackError(r.line) ||
                      error == "lua: line 10: stack overflow")
              << error;
        } else {
          EXPECT_EQ(error, CStackError(r.line)) << r.how << " on " << stack;
        }
        EXPECT_EQ(One(*p, r.small), r.answer) << r.how << " on " << stack;
      }
    });
  }
}

TEST(LuaProcessorTest, CStackBoundCannotBeSwallowedByPcall) {
  const std::string depth = R"lua(
local function depth(s)
  local d = 0
  s:gsub("%b()", function(inner) d = math.max(d, 1 + depth(inner:sub(2, -2))) end)
  return d
end
)lua";
  // Caught and formatted (refused too, for this item), or caught and
  // returned normally: the item fails all the same.
  for (const char* process : {R"lua(function process(x)
  local ok, e = pcall(depth, x)
  if ok then return e end
  return string.format("caught: %s", e)
end)lua",
                              R"lua(function process(x)
  local ok, e = pcall(depth, x)
  return ok and e or -1
end)lua"}) {
    auto p = Make(depth + process);
    EXPECT_EQ(ErrorOf(*p, Brackets(2048)), CStackError(4)) << process;
    EXPECT_EQ(One(*p, Brackets(5)), 5) << process;
  }
}

TEST(LuaProcessorTest, CStackOverflowAtTheTopLevelIsAConfigError) {
  const std::string script = R"lua(local function depth(s)
  local d = 0
  s:gsub("%b()", function(inner) d = math.max(d, 1 + depth(inner:sub(2, -2))) end)
  return d
end
depth(string.rep("(", 2048) .. string.rep(")", 2048))
function process(x) return x end)lua";
  EXPECT_EQ(Errors(script),
            "script: line 3: C stack overflow (callbacks nested too deep)\n");
  EXPECT_FALSE(MakeProcessor(Script(script)).ok());
}

TEST(LuaProcessorTest, GuardedLibraryFunctionsBehaveAsBefore) {
  // gsub, format, sort, os.time, coroutine.resume/wrap and tostring are
  // wrapped in Lua; argument errors still name the function and the line.
  auto p = Make(R"lua(function process(x)
  if x == 1 then local r = string.gsub() return r end
  if x == 2 then local r = ("x"):gsub() return r end
  if x == 3 then local r = string.format("%d", "x") return r end
  if x == 4 then local r = table.sort(1) return r end
  if x == 5 then local r = os.time(1) return r end
  if x == 6 then local r = coroutine.resume(1) return r end
  if x == 7 then local r = coroutine.wrap(1) return r end
  if x == 8 then local r = tostring() return r end
  if x == 9 then local r = coroutine.wrap(function() error("inside") end)() return r end
  if x == 10 then local r = string.format("%d", {}) return r end
  if x == 11 then local r = string.format(nil, {}) return r end
  if x == 12 then local r = string.format("%s", setmetatable({}, {__tostring = function() return {} end})) return r end
  if x == 13 then local r = string.format("%y %s", setmetatable({}, {__tostring = function() return "t" end})) return r end
  local t = {3, 1, 2}
  table.sort(t, function(a, b) return a > b end)
  local gen = coroutine.wrap(function(a)
    local b = coroutine.yield(a + 1)
    return b * 2
  end)
  local co = coroutine.create(function() coroutine.yield("y") return "r" end)
  local _, y = coroutine.resume(co)
  local _, r = coroutine.resume(co)
  return {
    gsub = ("a-b-c"):gsub("-", "+"),
    table_gsub = string.gsub("$a $b", "%$(%w)", {a = "1", b = "2"}),
    format = string.format("%5.1f|%s|%s|%%s|%3s|%-4s|%q", 3.14159,
                           setmetatable({}, {__tostring = function() return "o" end}), nil,
                           setmetatable({}, {__tostring = function() return 7 end}),
                           sluice.null, "q"),
    sorted = t,
    gen = {gen(1), gen(5)},
    co = y .. r,
    time = os.time({year = 2020, month = 1, day = 2, hour = 0}) - os.time({year = 2020, month = 1, day = 1, hour = 0}),
    tostring = tostring(12) .. tostring(setmetatable({}, {__tostring = function() return "t" end})),
  }
end)lua");
  const std::pair<int, const char*> kArgumentErrors[] = {
      {1,
       "lua: line 2: bad argument #1 to 'gsub' (string expected, got no "
       "value)"},
      {2,
       "lua: line 3: bad argument #1 to 'gsub' (string expected, got no "
       "value)"},
      {3,
       "lua: line 4: bad argument #2 to 'format' (number expected, got "
       "string)"},
      {4,
       "lua: line 5: bad argument #1 to 'sort' (table expected, got number)"},
      {5,
       "lua: line 6: bad argument #1 to 'time' (table expected, got number)"},
      {6, "lua: line 7: bad argument #1 to 'resume' (coroutine expected)"},
      {7,
       "lua: line 8: bad argument #1 to 'wrap' (function expected, got "
       "number)"},
      {8, "lua: line 9: bad argument #1 to 'tostring' (value expected)"},
      {9, "lua: line 10: lua:10: inside"},
      {10,
       "lua: line 11: bad argument #2 to 'format' (number expected, got "
       "table)"},
      {11,
       "lua: line 12: bad argument #1 to 'format' (string expected, got nil)"},
      {12, "lua: line 13: '__tostring' must return a string"},
      {13, "lua: line 14: invalid option '%y' to 'format'"},
  };
  for (const auto& [x, error] : kArgumentErrors) {
    EXPECT_EQ(ErrorOf(*p, x), error) << x;
  }
  EXPECT_EQ(One(*p, 0), json::parse(R"({
      "gsub": "a+b+c", "table_gsub": "1 2", "format": "  3.1|o|nil|%s|  7|null|\"q\"",
      "sorted": [3, 2, 1], "gen": [2, 10], "co": "yr", "time": 86400,
      "tostring": "12t"})"));
}

TEST(LuaProcessorTest, TostringLoopIsStoppedByTheInstructionBudget) {
  // `__tostring = tostring` made the original tostring tail-call itself
  // without running one VM instruction: the count hook never fired and the
  // worker spun for ever.
  auto p = Make(R"lua(
function process(x)
  if x == "loop" then return tostring(setmetatable({}, {__tostring = tostring})) end
  return x
end)lua",
                {{"max_instructions", 100000}});
  EXPECT_EQ(ErrorOf(*p, "loop"), "lua: instruction budget exceeded (100000)");
  EXPECT_EQ(One(*p, "fine"), "fine");
}

// ---- errors while processing
// ---------------------------------------------------

TEST(LuaProcessorTest, RuntimeErrorsNameTheLine) {
  auto p = Make(R"(function process(x)
  local a
  if x == 1 then return a + 1 end
  if x == 2 then error("custom failure") end
  if x == 3 then local s = string.rep() return s end
  if x == 4 then error({code = 1}) end
  if x == 5 then error("no position", 0) end
  return x
end)");
  EXPECT_EQ(ErrorOf(*p, 1),
            "lua: line 3: attempt to perform arithmetic on local 'a' (a nil "
            "value)");
  EXPECT_EQ(ErrorOf(*p, 2), "lua: line 4: custom failure");
  EXPECT_EQ(ErrorOf(*p, 3),
            "lua: line 5: bad argument #1 to 'rep' (string expected, got no "
            "value)");
  EXPECT_EQ(ErrorOf(*p, 4), "lua: line 6: (error object is a table value)");
  EXPECT_EQ(ErrorOf(*p, 5), "lua: line 7: no position");
  EXPECT_EQ(One(*p, 6), 6);
}

TEST(LuaProcessorTest, NonJsonResultsAreItemErrors) {
  auto p = Make(R"(
function process(x)
  if x == 1 then return function() end end
  if x == 2 then return {v = 0/0} end
  if x == 3 then return {1/0} end
  if x == 4 then local t = {} t.t = t return t end
  if x == 5 then return coroutine.create(function() end) end
  return x
end)");
  EXPECT_EQ(ErrorOf(*p, 1),
            "lua: process returned a function, which is not JSON");
  EXPECT_EQ(ErrorOf(*p, 2),
            "lua: process returned NaN at /v, which is not JSON");
  EXPECT_EQ(ErrorOf(*p, 3),
            "lua: process returned inf at /0, which is not JSON");
  EXPECT_EQ(ErrorOf(*p, 4),
            "lua: process returned a value nested deeper than 200 levels "
            "(does a table contain itself?)");
  EXPECT_EQ(ErrorOf(*p, 5),
            "lua: process returned a thread, which is not JSON");
  EXPECT_EQ(One(*p, 6), 6);
}

TEST(LuaProcessorTest, ItemsNestedTooDeeplyAreItemErrors) {
  auto p = Make(kIdentity);
  json deep = json::array();
  for (int i = 1; i < 300; ++i) deep = json::array({deep});
  EXPECT_EQ(ErrorOf(*p, deep),
            "lua: the item is a value nested deeper than 200 levels");
  EXPECT_EQ(One(*p, 1), 1);
}

// ---- validation
// -------------------------------------------------------------------

TEST(LuaProcessorTest, SyntaxErrorsAreReportedAtValidationWithTheLine) {
  EXPECT_EQ(Errors("function process(x)\n  local y = 1\n  x = = 2\nend"),
            "script: line 3: unexpected symbol near '='\n");
  EXPECT_EQ(Errors("function process(x)\n  return x\nend\ny x"),
            "script: line 4: '=' expected near 'x'\n");
  EXPECT_EQ(Errors("function process(x) return x"),
            "script: line 1: 'end' expected near '<eof>'\n");
  EXPECT_FALSE(MakeProcessor(Script("function process(")).ok());
}

TEST(LuaProcessorTest, ConfigLoaderPrefixesThePath) {
  auto r = config::LoadConfigText(R"(
pipelines:
  - name: p
    stages:
      - processor:
          type: lua
          script: |
            function process(item)
              local a = 1
              y x
            end
)",
                                  processors::ConfigChecks());
  ASSERT_FALSE(r.ok());
  const auto& errors = r.error();
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(config::ToString(errors[0]),
            "pipelines[0].stages[0].processor.script: line 3: '=' expected "
            "near 'x'");
}

TEST(LuaProcessorTest, MissingProcessIsAConfigError) {
  EXPECT_EQ(Errors("local x = 1"),
            "script: does not define a global function process(item)\n");
  EXPECT_EQ(Errors("local function process(x) return x end"),
            "script: does not define a global function process(item)\n");
  EXPECT_EQ(Errors("process = 5"),
            "script: process is a number, not a function\n");
  EXPECT_EQ(Errors(""),
            "script: does not define a global function process(item)\n");
}

TEST(LuaProcessorTest, TopLevelErrorsAndLoopsAreConfigErrors) {
  EXPECT_EQ(Errors("local a = nil\nlocal b = a.field\nfunction process(x) end"),
            "script: line 2: attempt to index local 'a' (a nil value)\n");
  EXPECT_EQ(
      Errors("while true do end function process(x) end",
             {{"max_instructions", 1000}}),
      "script: the script's top level exceeded max_instructions (1000)\n");
  EXPECT_EQ(Errors("big = string.rep('x', 1e8) function process(x) end",
                   {{"max_memory", "2MiB"}}),
            "script: the script needs more than max_memory (2 MiB)\n");
  // The top level runs sandboxed too.
  EXPECT_EQ(Errors("io.write('x') function process(x) end"),
            "script: line 1: attempt to index global 'io' (a nil value)\n");
}

class TempFile {
 public:
  explicit TempFile(const std::string& text) {
    path_ = std::filesystem::temp_directory_path() /
            ("sluice_lua_test_" + std::to_string(::getpid()) + "_" +
             std::to_string(counter_++) + ".lua");
    std::ofstream(path_, std::ios::binary) << text;
  }
  ~TempFile() { std::filesystem::remove(path_); }
  std::string path() const { return path_.string(); }

 private:
  static inline int counter_ = 0;
  std::filesystem::path path_;
};

TEST(LuaProcessorTest, LoadsTheScriptFromAFile) {
  TempFile file("-- from a file\nfunction process(x)\n  return x * 2\nend\n");
  auto p = Make(LuaSpec({{"file", file.path()}}));
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(One(*p, 21), 42);

  TempFile bad("function process(x)\n  return x +\nend\n");
  EXPECT_EQ(Errors(LuaSpec({{"file", bad.path()}})),
            "file: line 3: unexpected symbol near 'end'\n");
  TempFile runtime("function process(x)\n  return x.y.z\nend\n");
  auto q = Make(LuaSpec({{"file", runtime.path()}}));
  ASSERT_NE(q, nullptr);
  EXPECT_EQ(ErrorOf(*q, json::object()),
            "lua: line 2: attempt to index field 'y' (a nil value)");
}

TEST(LuaProcessorTest, MissingFileIsAConfigError) {
  const std::string path = "/nonexistent/dir/script.lua";
  EXPECT_EQ(Errors(LuaSpec({{"file", path}})),
            "file: cannot read \"/nonexistent/dir/script.lua\": No such file "
            "or directory\n");
  EXPECT_EQ(Errors(LuaSpec({{"file", ""}})), "file: must not be empty\n");
  EXPECT_FALSE(MakeProcessor(LuaSpec({{"file", path}})).ok());
}

TEST(LuaProcessorTest, ExactlyOneOfScriptAndFile) {
  EXPECT_EQ(Errors(LuaSpec(json::object())),
            "script: is required (the Lua source defining function "
            "process(item)), or give file: a path to it\n");
  EXPECT_EQ(Errors(LuaSpec({{"script", kIdentity}, {"file", "x.lua"}})),
            "file: give either script or file, not both\n");
  EXPECT_EQ(Errors(LuaSpec({{"script", 5}})),
            "script: must be a string, not a number\n");
}

TEST(LuaProcessorTest, UnknownParamsAreRejected) {
  EXPECT_EQ(Errors(kIdentity, {{"timeout", "1s"}}),
            "timeout: unknown key (expected one of: script, file, "
            "max_instructions, max_memory)\n");
}

TEST(LuaProcessorTest, BadLimitsAreRejectedWithClearMessages) {
  EXPECT_EQ(Errors(kIdentity, {{"max_memory", "64XB"}}),
            "max_memory: invalid size \"64XB\": unknown unit \"xb\" (use B, "
            "KB, MB, GB, TB, KiB, MiB, GiB or TiB)\n");
  EXPECT_EQ(Errors(kIdentity, {{"max_memory", "512KiB"}}),
            "max_memory: must be at least 1MiB, not 524288 bytes\n");
  EXPECT_EQ(Errors(kIdentity, {{"max_memory", true}}),
            "max_memory: must be a size such as \"64MiB\" (or a number of "
            "bytes), not a boolean\n");
  EXPECT_EQ(Errors(kIdentity, {{"max_memory", -1}}),
            "max_memory: must be at least 1MiB, not -1\n");
  EXPECT_EQ(Errors(kIdentity, {{"max_memory", 1.5}}),
            "max_memory: must be a size such as \"64MiB\" (or a number of "
            "bytes), not a number\n");
  EXPECT_EQ(Errors(kIdentity, {{"max_instructions", 0}}),
            "max_instructions: must be from 1 to 2147483647, not 0\n");
  EXPECT_EQ(Errors(kIdentity, {{"max_instructions", -5}}),
            "max_instructions: must be from 1 to 2147483647, not -5\n");
  EXPECT_EQ(Errors(kIdentity, {{"max_instructions", 3000000000LL}}),
            "max_instructions: must be from 1 to 2147483647, not 3000000000\n");
  EXPECT_EQ(Errors(kIdentity, {{"max_instructions", "1000"}}),
            "max_instructions: must be an integer (VM instructions per item), "
            "not a string\n");
  EXPECT_EQ(Errors(kIdentity, {{"max_instructions", 1.5}}),
            "max_instructions: must be an integer (VM instructions per item), "
            "not a number\n");
  // Valid forms.
  EXPECT_EQ(Errors(kIdentity,
                   {{"max_memory", 2097152}, {"max_instructions", 2147483647}}),
            "");
  EXPECT_EQ(Errors(kIdentity, {{"max_memory", "1GiB"}}), "");
}

TEST(LuaProcessorTest, IsAnAvailableType) {
  const auto& types = AvailableProcessorTypes();
  EXPECT_NE(std::find(types.begin(), types.end(), "lua"), types.end());
}

// ---- the shipped example
// ------------------------------------------------------------

// Runs `items` through the named pipeline of config/examples/lua.yaml stage
// by stage (split parts continue on their own; errors fail the test) and
// returns the aggregate.
json RunExample(std::string_view pipeline, std::string_view items) {
  auto loaded = config::LoadConfigFile(
      std::string(SLUICE_SOURCE_DIR) + "/config/examples/lua.yaml",
      processors::ConfigChecks());
  if (!loaded.ok()) {
    for (const auto& e : loaded.error()) ADD_FAILURE() << config::ToString(e);
    return nullptr;
  }
  for (const auto& p : loaded.value().pipelines) {
    if (p.name != pipeline) continue;
    std::vector<json> current = json::parse(items).get<std::vector<json>>();
    for (const auto& stage : p.stages) {
      auto made = MakeProcessor(stage.processor);
      if (!made.ok()) {
        ADD_FAILURE() << "cannot make " << stage.name << ": "
                      << made.error().message;
        return nullptr;
      }
      auto proc = std::move(made).value();
      std::vector<json> next;
      for (json& item : current) {
        Outcome o = proc->Process(std::move(item));
        EXPECT_NE(o.kind, Outcome::kError) << o.error;
        for (json& v : o.values) next.push_back(std::move(v));
      }
      current = std::move(next);
    }
    auto agg = MakeAggregator(p.aggregate);
    for (const json& v : current) agg->Add(v);
    return agg->Result();
  }
  ADD_FAILURE() << "no pipeline " << pipeline;
  return nullptr;
}

TEST(LuaProcessorTest, ExampleConfigDoesWhatItsCommentsSay) {
  EXPECT_EQ(RunExample("lua_words", R"([
      {"user": "ann", "text": "Hello big World", "score": 7},
      {"user": "bob", "text": "spam spam", "score": 1},
      {"user": "cy",  "text": "a b", "score": 12}])"),
            json::parse(R"({"hello":1,"big":1,"world":1,"a":1,"b":1})"));
  EXPECT_EQ(RunExample("lua_enrich",
                       R"([{"id": 12345678901234567890, "price": 2.5,
                            "quantity": 4}, {"price": 1, "quantity": 1}])"),
            11);
  auto loaded = config::LoadConfigFile(
      std::string(SLUICE_SOURCE_DIR) + "/config/examples/lua.yaml",
      processors::ConfigChecks());
  ASSERT_TRUE(loaded.ok());
  auto made = MakeProcessor(loaded.value().pipelines[1].stages[0].processor);
  ASSERT_TRUE(made.ok());
  auto enrich = std::move(made).value();
  EXPECT_EQ(One(*enrich, json::parse(R"({"id": 12345678901234567890,
                                         "price": 2.5, "quantity": 4})"))
                .dump(),
            json::parse(R"({"id": 12345678901234567890, "price": 2.5,
                            "quantity": 4, "total": 10, "tags": ["bulk"],
                            "id_text": "12345678901234567890"})")
                .dump());
  EXPECT_EQ(One(*enrich, json::parse(R"({"price": 1, "quantity": 1})")),
            json::parse(R"({"price": 1, "quantity": 1, "total": 1,
                            "tags": []})"));
}

// ---- through the engine
// ----------------------------------------------------------

using test_support::WaitFinished;

TEST(LuaProcessorTest, FilterSplitAndReplaceThroughTheEngine) {
  auto loaded = config::LoadConfigText(R"(
pipelines:
  - name: luap
    stages:
      - name: script
        workers: 2
        processor:
          type: lua
          script: |
            function process(x)
              if x.n % 3 == 0 then return nil end
              if x.n % 3 == 1 then
                return sluice.many{{n = x.n, part = 1}, {n = x.n, part = 2}}
              end
              x.tag = "t"
              return x
            end
      - name: after
        processor: passthrough
    aggregate: count
)",
                                       processors::ConfigChecks());
  ASSERT_TRUE(loaded.ok());
  metrics::Metrics metrics("test");
  engine::Engine engine(loaded.value(), metrics);
  std::vector<json> items;
  for (int n = 0; n < 30; ++n) items.push_back({{"n", n}});
  items.push_back({{"n", "x"}});  // arithmetic on a string: an item error
  auto submitted = engine.Submit({"luap", items, std::nullopt});
  ASSERT_TRUE(submitted.ok()) << submitted.error().message;
  const auto job = submitted.value();
  ASSERT_TRUE(WaitFinished(job));
  const jobs::Counts c = job->counts();
  EXPECT_EQ(c.in, 31u);
  EXPECT_EQ(c.filtered, 10u);  // n = 0, 3, ..., 27
  EXPECT_EQ(c.out, 30u);       // 10 items split in 2 + 10 replaced
  EXPECT_EQ(c.errors, 1u);
  EXPECT_EQ(c.cancelled, 0u);
  EXPECT_EQ(job->aggregate(), 30);

  int parts = 0, tagged = 0;
  for (const jobs::ResultRecord& r : job->Results(0, 1000)) {
    if (r.is_error) {
      EXPECT_EQ(r.seq, 30u);
      EXPECT_EQ(r.stage, "script");
      EXPECT_EQ(r.error.rfind("lua: line 2: attempt to perform arithmetic", 0),
                0u)
          << r.error;
      continue;
    }
    const int n = r.value.at("n").get<int>();
    EXPECT_EQ(r.seq, static_cast<std::uint64_t>(n));
    if (n % 3 == 1) {
      ++parts;
      EXPECT_TRUE(r.value.contains("part"));
    } else {
      ASSERT_EQ(n % 3, 2);
      ++tagged;
      EXPECT_EQ(r.value.at("tag"), "t");
    }
  }
  EXPECT_EQ(parts, 20);
  EXPECT_EQ(tagged, 10);
  engine.Shutdown(std::chrono::milliseconds(1000));
}

TEST(LuaProcessorTest, CStackOverflowThroughTheEngineFailsOnlyThatItem) {
  // Issue 11 §2 end to end: the worker threads and the process live on,
  // and the other items of the job are processed.
  auto loaded = config::LoadConfigText(R"lua(
pipelines:
  - name: brackets
    stages:
      - name: depth
        workers: 2
        processor:
          type: lua
          script: |
            local function depth(s)
              local d = 0
              s:gsub("%b()", function(inner) d = math.max(d, 1 + depth(inner:sub(2, -2))) end)
              return d
            end
            function process(x) return {depth = depth(x.text)} end
    aggregate: count
)lua",
                                       processors::ConfigChecks());
  ASSERT_TRUE(loaded.ok());
  metrics::Metrics metrics("test");
  engine::Engine engine(loaded.value(), metrics);
  std::vector<json> items;
  for (int n = 0; n < 20; ++n) {
    items.push_back(
        {{"text", n == 7 || n == 13 ? Brackets(2048) : Brackets(n)}});
  }
  auto submitted = engine.Submit({"brackets", items, std::nullopt});
  ASSERT_TRUE(submitted.ok()) << submitted.error().message;
  const auto job = submitted.value();
  ASSERT_TRUE(WaitFinished(job));
  const jobs::Counts c = job->counts();
  EXPECT_EQ(c.in, 20u);
  EXPECT_EQ(c.out, 18u);
  EXPECT_EQ(c.errors, 2u);
  EXPECT_EQ(job->aggregate(), 18);
  for (const jobs::ResultRecord& r : job->Results(0, 1000)) {
    if (r.is_error) {
      EXPECT_TRUE(r.seq == 7u || r.seq == 13u) << r.seq;
      EXPECT_EQ(r.stage, "depth");
      EXPECT_EQ(r.error, CStackError(3));
    } else {
      EXPECT_EQ(r.value, json({{"depth", r.seq}}));
    }
  }
  // The workers still serve the next job.
  auto again =
      engine.Submit({"brackets", std::vector<json>{json{{"text", Brackets(4)}}},
                     std::nullopt});
  ASSERT_TRUE(again.ok()) << again.error().message;
  ASSERT_TRUE(WaitFinished(again.value()));
  EXPECT_EQ(again.value()->counts().out, 1u);
  engine.Shutdown(std::chrono::milliseconds(1000));
}

}  // namespace
}  // namespace sluice::processors
