// Fuzz target lua_json_fuzz: the JSON <-> Lua conversion of the lua
// processor (service/processors/lua_json.hpp), and the lua processor itself
// on arbitrary script text.
//
// Input: byte 0 picks the mode.
//   's'   script mode: the rest is a Lua chunk, loaded through the public
//         processor API (processors::MakeProcessor, type lua: the sandbox
//         with its instruction and memory caps), which then processes one
//         item. Invariants: building and processing never throw; a value
//         the script returns is JSON that dump() serializes (strictly: the
//         conversion repairs invalid UTF-8). The string pattern functions
//         (find, match, gmatch, gsub) are removed first: their running time
//         inside one library call is the sandbox's documented unbounded
//         case, and a slow pattern would only report that as a hang.
//   other the rest is JSON text, parsed with ParseJsonText (nesting up to
//         250, past the conversion's kMaxDepth of 200; invalid text is
//         skipped). Invariants, on one lua_State reused across inputs:
//         - PushJson fails (kTooDeep, nothing pushed) exactly when the value
//           nests deeper than kMaxDepth, else pushes exactly one value;
//         - ToJson gives back a value equal to the input (nlohmann's ==,
//           which compares numbers by value: the documented lossy cases,
//           a float that is integral coming back as an integer and -0.0,
//           compare equal), and leaves the stack as it was;
//         - ToScriptResult gives kOne with the same value; for an array,
//           sluice.many(t) gives kMany with its elements;
//         - the stack is balanced after every input.
#include <cstddef>
#include <cstdint>
#include <exception>
#include <lua.hpp>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "fuzz_support.hpp"
#include "service/processors/lua_json.hpp"
#include "service/processors/processor.hpp"
#include "service/util/json_parse.hpp"

namespace {

namespace lua = sluice::processors::lua;
using nlohmann::json;

constexpr std::size_t kParseDepth = 250;

// One state for every JSON-mode input (as a processor keeps one per
// worker), so state left behind by one conversion meets the next.
lua_State* SharedState() {
  static lua_State* L = [] {
    lua_State* state = luaL_newstate();
    if (state == nullptr) sluice::fuzz::Fail("luaL_newstate", "");
    luaL_openlibs(state);
    auto installed = lua::InstallJson(state);
    if (!installed.ok()) {
      sluice::fuzz::Fail("InstallJson", installed.error().message);
    }
    return state;
  }();
  return L;
}

std::string Dump(const json& v) {
  return v.dump(-1, ' ', false, json::error_handler_t::replace).substr(0, 2000);
}

void RoundTrip(std::string_view text) {
  auto parsed = sluice::ParseJsonText(text, kParseDepth);
  if (!parsed.ok()) return;
  const json& value = parsed.value();
  const std::size_t depth = sluice::fuzz::JsonDepth(value);

  lua_State* L = SharedState();
  const int top = lua_gettop(L);
  auto pushed = lua::PushJson(L, value);
  if (depth > static_cast<std::size_t>(lua::kMaxDepth)) {
    FUZZ_CHECK(!pushed.ok() && pushed.error().code == lua::kTooDeep,
               "depth " + std::to_string(depth));
    FUZZ_CHECK(lua_gettop(L) == top, "a failed push left values");
    return;
  }
  FUZZ_CHECK(pushed.ok(), pushed.error().code + ": " + pushed.error().message);
  FUZZ_CHECK(lua_gettop(L) == top + 1, "PushJson pushed not exactly one");

  auto back = lua::ToJson(L, -1);
  FUZZ_CHECK(lua_gettop(L) == top + 1, "ToJson changed the stack");
  FUZZ_CHECK(back.ok(), back.error().code + ": " + back.error().message +
                            "\nfor " + Dump(value));
  FUZZ_CHECK(back.value() == value,
             "in:  " + Dump(value) + "\nout: " + Dump(back.value()));
  // Strict dump: the conversion must only produce valid UTF-8.
  try {
    (void)back.value().dump();
  } catch (const std::exception& e) {
    sluice::fuzz::Fail("dump of a converted value threw", e.what());
  }

  auto one = lua::ToScriptResult(L, -1);
  FUZZ_CHECK(one.ok(), one.error().message);
  FUZZ_CHECK(one.value().kind == lua::ScriptResult::kOne &&
                 one.value().values.size() == 1 &&
                 one.value().values[0] == value,
             Dump(value));

  if (value.is_array()) {
    // sluice.many(t): re-marks the (array) table as a list of results.
    lua_getglobal(L, "sluice");
    lua_getfield(L, -1, "many");
    lua_pushvalue(L, -3);
    FUZZ_CHECK(lua_pcall(L, 1, 1, 0) == 0, "sluice.many raised an error");
    auto many = lua::ToScriptResult(L, -1);
    FUZZ_CHECK(many.ok(), many.error().message);
    FUZZ_CHECK(many.value().kind == lua::ScriptResult::kMany &&
                   many.value().values.size() == value.size(),
               Dump(value));
    for (std::size_t i = 0; i < value.size(); ++i) {
      FUZZ_CHECK(many.value().values[i] == value[i], Dump(value));
    }
    lua_pop(L, 2);  // the many table and `sluice`
  }
  lua_settop(L, top);
  FUZZ_CHECK(lua_gettop(L) == top, "unbalanced stack");
}

void RunScript(std::string_view source) {
  sluice::config::ProcessorSpec spec;
  spec.type = "lua";
  spec.params = {
      // Same line as the fuzzed text, so its line numbers are unchanged.
      {"script",
       "string.find, string.match, string.gmatch, string.gsub = nil; " +
           std::string(source)},
      // The smallest caps allowed: they bound each input's work (a result
      // may be up to max_memory of JSON), so a slow input is a real hang.
      {"max_instructions", 100000},
      {"max_memory", "1MiB"}};
  std::unique_ptr<sluice::processors::Processor> processor;
  try {
    if (!sluice::processors::ValidateProcessorSpec(spec).empty()) return;
    auto made = sluice::processors::MakeProcessor(spec);
    // Validation passed, so the script loads: building must succeed.
    FUZZ_CHECK(made.ok(),
               "MakeProcessor failed on a valid spec: " + made.error().message);
    processor = std::move(made).value();
  } catch (const std::exception& e) {
    sluice::fuzz::Fail("building a lua processor threw", e.what());
  }
  const json items[] = {json::parse(R"({"a":[1,2.5,"x",null,true],"b":{}})"),
                        9007199254740993u};
  for (const json& item : items) {
    sluice::processors::Outcome outcome;
    try {
      outcome = processor->Process(item);
    } catch (const std::exception& e) {
      sluice::fuzz::Fail("Process threw", e.what());
    }
    if (outcome.kind == sluice::processors::Outcome::kError) {
      FUZZ_CHECK(!outcome.error.empty(), "an error without a message");
      continue;
    }
    for (const json& v : outcome.values) {
      try {
        (void)v.dump();
      } catch (const std::exception& e) {
        sluice::fuzz::Fail("dump of a script's value threw", e.what());
      }
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data,
                                      std::size_t size) {
  if (size == 0) return 0;
  const std::string_view rest = sluice::fuzz::AsText(data + 1, size - 1);
  if (data[0] == 's') {
    RunScript(rest);
  } else {
    RoundTrip(rest);
  }
  return 0;
}
