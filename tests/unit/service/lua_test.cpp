// Tests of the `lua` processor (service/processors/lua.cpp) through the
// public processor API: replace, filter and split from Lua, JSON round trips
// through a script, the sandbox, the instruction and memory limits and the
// recovery after them, validation errors (syntax, missing process, params,
// files) with their lines and paths, runtime error messages, and one
// pipeline through the real engine with exact counts.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <limits>
#include <mutex>
#include <string>
#include <variant>

#include "service/config/config.hpp"
#include "service/engine/engine.hpp"
#include "service/metrics/metrics.hpp"
#include "service/processors/aggregate.hpp"
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
  EXPECT_NE(p, nullptr);
  return p;
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
  EXPECT_EQ(MakeProcessor(Script("function process(")), nullptr);
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
)");
  ASSERT_TRUE(std::holds_alternative<std::vector<config::ConfigError>>(r));
  const auto& errors = std::get<std::vector<config::ConfigError>>(r);
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
  EXPECT_EQ(MakeProcessor(LuaSpec({{"file", path}})), nullptr);
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
  auto loaded = config::LoadConfigFile(std::string(SLUICE_SOURCE_DIR) +
                                       "/config/examples/lua.yaml");
  if (auto* errors = std::get_if<std::vector<config::ConfigError>>(&loaded)) {
    for (const auto& e : *errors) ADD_FAILURE() << config::ToString(e);
    return nullptr;
  }
  for (const auto& p : std::get<config::Config>(loaded).pipelines) {
    if (p.name != pipeline) continue;
    std::vector<json> current = json::parse(items).get<std::vector<json>>();
    for (const auto& stage : p.stages) {
      auto proc = MakeProcessor(stage.processor);
      if (proc == nullptr) {
        ADD_FAILURE() << "cannot make " << stage.name;
        return nullptr;
      }
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
  auto loaded = config::LoadConfigFile(std::string(SLUICE_SOURCE_DIR) +
                                       "/config/examples/lua.yaml");
  ASSERT_TRUE(std::holds_alternative<config::Config>(loaded));
  auto enrich = MakeProcessor(
      std::get<config::Config>(loaded).pipelines[1].stages[0].processor);
  ASSERT_NE(enrich, nullptr);
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
)");
  ASSERT_TRUE(std::holds_alternative<config::Config>(loaded));
  metrics::Metrics metrics("test");
  engine::Engine engine(std::get<config::Config>(loaded), metrics);
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

}  // namespace
}  // namespace sluice::processors
