// lua: runs a sandboxed LuaJIT script's `process(item)` on each item
// (docs/configuration.md, "### lua").
//
// Each processor instance (one per worker thread) owns one lua_State,
// created, sandboxed and loaded with the script when the processor is made;
// the validator does the same in a throw-away state, so `sluice check`
// reports syntax errors, top-level errors and a missing `process`.
//
// Limits, and how they are enforced:
// - Memory: the state is created with lua_newstate and a counting
//   allocator (this LuaJIT is a GC64 build, which accepts custom
//   allocators on x64) that refuses any growth beyond max_memory. Lua
//   raises "not enough memory", which fails the item; a full collection
//   then frees what the item left behind. The cap counts everything the
//   state allocates, garbage not yet collected included.
// - Instructions: a count hook fires after max_instructions VM
//   instructions of one call. The JIT compiler is switched off for these
//   states (luaJIT_setmode LUAJIT_MODE_OFF) because LuaJIT does not run
//   hooks inside compiled traces, so a compiled loop would never stop.
//   Once fired, the hook re-arms itself for every further instruction, so a
//   script's own pcall cannot swallow the stop and carry on.
// - C stack: LuaJIT bounds the Lua stack but not the C stack. A library
//   function that calls back into Lua (a string.gsub callback, a
//   table.sort comparator or __lt, __index under os.time,
//   coroutine.resume and coroutine.wrap, which run the coroutine on the
//   caller's C stack) nests C frames, about 8 KiB per string.gsub, and
//   recursion through it overflowed the thread's stack (SIGSEGV, the
//   process gone). Each of those functions is replaced, before the script
//   loads, by a Lua wrapper (kGuards) that calls CheckCStack and then
//   tail-calls the original, so argument errors still name the function
//   and the script's line. CheckCStack raises "C stack overflow (callbacks
//   nested too deep)" once the C stack used since the item (or the top
//   level) began passes stack_bound: 1 MiB, or half the room the thread's
//   stack had left when the item began if that is less. Like the
//   instruction budget it is final: every guarded call fails for the rest
//   of the item, and the item fails even if the script caught the error.
// - string.format runs the __tostring of its %s arguments in its wrapper,
//   before the original: called from inside the original, a nested format
//   could corrupt the heap in this LuaJIT (see kGuards), and it nested C
//   frames. tostring is wrapped too, without the check: a
//   `__tostring = tostring` loop runs no bytecode in the original (a
//   fast-function tail call) and so never met the count hook; through a
//   Lua wrapper it does.
// Not bounded: time spent inside one library call (a pathological
// string.find pattern), which no hook can interrupt.
#include <pthread.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <limits>
#include <lua.hpp>
#include <utility>

#include "service/config/units.hpp"
#include "service/processors/internal.hpp"
#include "service/processors/lua_json.hpp"

namespace sluice::processors::internal {

namespace {

using nlohmann::json;

constexpr std::int64_t kDefaultMaxInstructions = 1000000;
// lua_sethook takes the count as an int.
constexpr std::int64_t kMaxMaxInstructions = 2147483647;
constexpr std::uint64_t kKiB = 1024;
constexpr std::uint64_t kMiB = 1024 * kKiB;
constexpr std::uint64_t kGiB = 1024 * kMiB;
constexpr std::uint64_t kDefaultMaxMemory = 64 * kMiB;
// Below this the standard libraries alone come close to the cap.
constexpr std::uint64_t kMinMaxMemory = 1 * kMiB;
constexpr long kMaxScriptFileBytes = 16 * 1024 * 1024;
// The most C stack one item may use (worker threads have 8 MiB, or 2 MiB
// when the stack rlimit is unlimited); see CStackBound.
constexpr std::size_t kMaxCStack = 1 * kMiB;
constexpr char kCStackMessage[] =
    "C stack overflow (callbacks nested too deep)";
// Every error position reads "lua:<line>:", which Describe turns into
// "line <line>:".
constexpr char kChunkName[] = "=lua";

char kCallItemKey;  // registry key of the per-item closure

std::string FormatBytes(std::uint64_t n) {
  if (n != 0 && n % kGiB == 0) return std::to_string(n / kGiB) + " GiB";
  if (n != 0 && n % kMiB == 0) return std::to_string(n / kMiB) + " MiB";
  if (n != 0 && n % kKiB == 0) return std::to_string(n / kKiB) + " KiB";
  return std::to_string(n) + " bytes";
}

struct Limits {
  int max_instructions = static_cast<int>(kDefaultMaxInstructions);
  std::uint64_t max_memory = kDefaultMaxMemory;
};

// "lua:3: msg" -> "line 3: msg"; anything else unchanged.
std::string Describe(std::string_view message) {
  constexpr std::string_view prefix = "lua:";
  if (message.substr(0, prefix.size()) != prefix) return std::string(message);
  std::size_t i = prefix.size();
  while (i < message.size() && message[i] >= '0' && message[i] <= '9') ++i;
  if (i == prefix.size() || i >= message.size() || message[i] != ':') {
    return std::string(message);
  }
  std::string_view rest = message.substr(i + 1);
  if (!rest.empty() && rest.front() == ' ') rest.remove_prefix(1);
  return "line " +
         std::string(message.substr(prefix.size(), i - prefix.size())) + ": " +
         std::string(rest);
}

// The length of a leading "sluice:<line>: ", the position LuaJIT gives an
// error raised inside kGuards; 0 if there is none.
std::size_t GuardPositionLength(std::string_view message) {
  constexpr std::string_view prefix = "sluice:";
  if (message.substr(0, prefix.size()) != prefix) return 0;
  std::size_t i = prefix.size();
  while (i < message.size() && message[i] >= '0' && message[i] <= '9') ++i;
  if (i == prefix.size() || message.substr(i, 2) != ": ") return 0;
  return i + 2;
}

// ---- limits
// -------------------------------------------------------------------

// Shared by the allocator and the count hook of one state (both reach it
// through lua_getallocf). Thread-compatible: only the thread running the
// state touches it.
struct Budget {
  std::size_t used = 0;
  std::size_t limit = 0;
  int instructions = 0;
  bool memory_exceeded = false;
  bool instructions_exceeded = false;
  // The C stack: where the item (or the top level) began, and how far
  // below that guarded calls may go (StartCStack).
  std::uintptr_t stack_base = 0;
  std::size_t stack_bound = 0;
  bool cstack_exceeded = false;
  int cstack_line = 0;  // the script's line where it tripped; 0: unknown
};

Budget* BudgetOf(lua_State* L) {
  void* ud = nullptr;
  lua_getallocf(L, &ud);
  return static_cast<Budget*>(ud);
}

void* Allocate(void* ud, void* ptr, std::size_t osize, std::size_t nsize) {
  auto* b = static_cast<Budget*>(ud);
  if (ptr == nullptr) osize = 0;
  if (nsize == 0) {
    std::free(ptr);
    b->used -= osize;
    return nullptr;
  }
  // Shrinking must never fail (Lua relies on it); growth beyond the cap
  // does.
  if (nsize > osize && nsize - osize > b->limit - std::min(b->limit, b->used)) {
    b->memory_exceeded = true;
    return nullptr;
  }
  void* p = std::realloc(ptr, nsize);
  if (p == nullptr) {
    b->memory_exceeded = true;
    return nullptr;
  }
  b->used = b->used - osize + nsize;
  return p;
}

void CountHook(lua_State* L, lua_Debug* /*ar*/) {
  BudgetOf(L)->instructions_exceeded = true;
  // Every further instruction raises again, so pcall inside the script
  // cannot catch the stop and continue.
  lua_sethook(L, CountHook, LUA_MASKCOUNT, 1);
  lua_pushliteral(L, "instruction budget exceeded");
  lua_error(L);
}

void ArmHook(lua_State* L, const Budget& b) {
  lua_sethook(L, CountHook, LUA_MASKCOUNT, b.instructions);
}

std::uintptr_t StackAddress() {
  // Not the address of a local: under ASan those may live on a fake stack
  // in the heap.
  return reinterpret_cast<std::uintptr_t>(__builtin_frame_address(0));
}

// The lowest address of the calling thread's stack (stacks grow down on
// every target this builds for), or 0 when unknown. Found once per thread:
// for the main thread glibc reads /proc/self/maps.
std::uintptr_t ThreadStackLow() {
  thread_local const std::uintptr_t low = [] {
    pthread_attr_t attr;
    if (pthread_getattr_np(pthread_self(), &attr) != 0)
      return std::uintptr_t{0};
    void* addr = nullptr;
    std::size_t size = 0;
    const bool ok = pthread_attr_getstack(&attr, &addr, &size) == 0;
    pthread_attr_destroy(&attr);
    return ok ? reinterpret_cast<std::uintptr_t>(addr) : std::uintptr_t{0};
  }();
  return low;
}

// Starts the C stack budget of one item (or of the top level) from here:
// kMaxCStack, or half the room left on this thread's stack if that is less,
// so the error path always has room too.
void StartCStack(Budget& b) {
  const std::uintptr_t here = StackAddress();
  const std::uintptr_t low = ThreadStackLow();
  const std::size_t room = low != 0 && here > low ? here - low : 2 * kMaxCStack;
  b.stack_base = here;
  b.stack_bound = std::min(kMaxCStack, room / 2);
  b.cstack_exceeded = false;
  b.cstack_line = 0;
}

// The line of the innermost frame of the script itself (not of kGuards or
// a library function), or 0.
int ScriptLine(lua_State* L, int first_level) {
  lua_Debug ar;
  for (int level = first_level; lua_getstack(L, level, &ar) != 0; ++level) {
    if (lua_getinfo(L, "Sl", &ar) != 0 && ar.currentline > 0 &&
        std::strcmp(ar.source, kChunkName) == 0) {
      return ar.currentline;
    }
  }
  return 0;
}

// Called by kGuards before each library function that can call back into
// Lua: fails once the item has used more than stack_bound of C stack, and
// from then on for the rest of the item.
int CheckCStack(lua_State* L) {
  Budget* b = BudgetOf(L);
  const std::uintptr_t here = StackAddress();
  const std::size_t used =
      b->stack_base > here ? b->stack_base - here : here - b->stack_base;
  if (!b->cstack_exceeded && used <= b->stack_bound) return 0;
  if (!b->cstack_exceeded) {
    b->cstack_exceeded = true;
    b->cstack_line = ScriptLine(L, 1);
  }
  lua_pushstring(L, kCStackMessage);
  return lua_error(L);
}

// ---- the sandbox ----------------------------------------------------------

// Run once per state after the libraries open, with CheckCStack as its
// argument, before the script loads; the originals stay reachable only as
// upvalues (no debug library). Each wrapper tail-calls the original, so an
// argument error still reads "lua:3: bad argument #1 to 'gsub' (...)".
//
// string.format also calls the __tostring of its %s arguments itself, in
// Lua, before the original runs: the original calls __tostring midway
// through writing into LuaJIT's shared string buffer, and when a garbage
// collection step inside it shrinks that buffer, this LuaJIT (Debian 12's
// 2.1.0~beta3+git20220320, before upstream commit 444c8ff1) leaves the
// write position past the buffer's end, and the rest of the format is
// written out of bounds: heap corruption from one nested format. Done here,
// format never calls back into Lua, so it nests no C frames either (a
// __tostring recursion is bounded by the Lua stack). The parse mirrors
// lj_strfmt_parse for every format it accepts; one it rejects fails in the
// original as before.
constexpr char kGuards[] = R"lua(
local check = ...
local type, tostring, select, unpack = type, tostring, select, unpack
local gsub, format, gmatch = string.gsub, string.format, string.gmatch
local sort, time = table.sort, os.time
local resume, wrap = coroutine.resume, coroutine.wrap
string.gsub = function(...) check() return gsub(...) end
table.sort = function(...) check() return sort(...) end
os.time = function(...) check() return time(...) end
coroutine.resume = function(...) check() return resume(...) end
coroutine.wrap = function(...)
  if type((...)) ~= "function" then return wrap(...) end
  local resume_it = wrap(...)
  return function(...) check() return resume_it(...) end
end
_G.tostring = function(...) return tostring(...) end
-- The %s arguments with a __tostring, converted before format runs.
local function format_tostrings(fmt, n, ...)
  local args, i = {...}, 0
  for conv in gmatch(fmt, "%%[-+ #0]*%d*%.?%d*(.)") do
    if conv ~= "%" then
      i = i + 1
      local t = type(args[i])
      if conv == "s" and (t == "table" or t == "userdata") then
        local s = tostring(args[i])
        t = type(s)
        if t ~= "string" and t ~= "number" then
          error("'__tostring' must return a string", 0)
        end
        args[i] = s
      end
    end
  end
  return format(fmt, unpack(args, 1, n))
end
string.format = function(fmt, ...)
  check()
  local t = type(fmt)
  if t == "string" or t == "number" then
    for k = 1, select("#", ...) do
      t = type((select(k, ...)))
      if t == "table" or t == "userdata" then
        return format_tostrings(fmt, select("#", ...), ...)
      end
    end
  end
  return format(fmt, ...)
end
)lua";
constexpr char kGuardsChunkName[] = "=sluice";

constexpr const char* kRemovedGlobals[] = {
    "dofile",  "load",    "loadfile",       "loadstring",
    "getfenv", "setfenv", "collectgarbage", "newproxy",
    "gcinfo",  "print",   "module",         "require",
    "io",      "debug",   "package",        "ffi",
    "jit"};

int OpenSandbox(lua_State* L) {
  const luaL_Reg libs[] = {{"", luaopen_base},         {"table", luaopen_table},
                           {"string", luaopen_string}, {"math", luaopen_math},
                           {"bit", luaopen_bit},       {"os", luaopen_os}};
  for (const luaL_Reg& lib : libs) {
    lua_pushcfunction(L, lib.func);
    lua_pushstring(L, lib.name);
    lua_call(L, 1, 0);
  }
  // os: only the clocks.
  lua_getfield(L, LUA_GLOBALSINDEX, "os");
  lua_createtable(L, 0, 2);
  lua_getfield(L, -2, "time");
  lua_setfield(L, -2, "time");
  lua_getfield(L, -2, "clock");
  lua_setfield(L, -2, "clock");
  lua_setfield(L, LUA_GLOBALSINDEX, "os");
  lua_pop(L, 1);
  for (const char* name : kRemovedGlobals) {
    lua_pushnil(L);
    lua_setfield(L, LUA_GLOBALSINDEX, name);
  }
  // The string table is also the __index of strings' metatable, so this
  // removes ("").dump too.
  lua_getfield(L, LUA_GLOBALSINDEX, "string");
  lua_pushnil(L);
  lua_setfield(L, -2, "dump");
  lua_pop(L, 1);
  if (luaL_loadbuffer(L, kGuards, sizeof kGuards - 1, kGuardsChunkName) != 0) {
    return lua_error(L);
  }
  lua_pushcfunction(L, CheckCStack);
  lua_call(L, 1, 0);
  return 0;
}

// Error handler of every script call: gives errors raised without a
// position (by a library function, or error(x, 0)) the line of the
// innermost frame of the script, and non-string error values a
// description.
int AddPosition(lua_State* L) {
  const Budget* b = BudgetOf(L);
  // The flags decide the message; allocating now could fail anyway.
  if (b->instructions_exceeded || b->memory_exceeded) return 1;
  if (!lua_isstring(L, 1)) {
    lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
    lua_replace(L, 1);
  }
  const char* message = lua_tostring(L, 1);
  if (Describe(message) != message) return 1;  // already "lua:<line>:"
  // A position inside kGuards (a Lua stack overflow may be raised there)
  // means nothing to the script's author; the script's line replaces it.
  const std::size_t guard = GuardPositionLength(message);
  if (const int line = ScriptLine(L, 0); line > 0) {
    lua_pushfstring(L, "lua:%d: %s", line, message + guard);
  } else if (guard > 0) {
    lua_pushstring(L, message + guard);
  }
  return 1;
}

int FullGc(lua_State* L) {
  lua_gc(L, LUA_GCCOLLECT, 0);
  return 0;
}

// ---- one item
// -----------------------------------------------------------------

// What happened to one item inside the protected call.
struct Call {
  const json* item = nullptr;
  lua::ToJsonLimits limits;
  Result<void> pushed;
  int status = 0;  // of process()
  std::string message;
  Result<lua::ScriptResult> result = lua::ScriptResult{};
};

// The per-item body, run under lua_pcall so that running out of memory
// while converting is an error, not a panic. Upvalues: the error handler
// and process.
int CallItem(lua_State* L) {
  auto* c = static_cast<Call*>(lua_touserdata(L, 1));
  lua_settop(L, 0);
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_pushvalue(L, lua_upvalueindex(2));
  c->pushed = lua::PushJsonUnprotected(L, *c->item);
  if (!c->pushed.ok()) return 0;
  c->status = lua_pcall(L, 1, 1, 1);
  if (c->status != 0) {
    std::size_t n = 0;
    const char* s = lua_tolstring(L, -1, &n);
    c->message = s != nullptr ? std::string(s, n) : std::string();
    return 0;
  }
  c->result = lua::ToScriptResultUnprotected(L, -1, c->limits);
  return 0;
}

// What loading a script produced.
struct LoadArgs {
  std::string_view source;
  int status = 0;  // 0, or the failing load / call status
  std::string message;
};

// Loads and runs the script's top level, checks `process` and keeps the
// per-item closure in the registry.
int LoadBody(lua_State* L) {
  auto* a = static_cast<LoadArgs*>(lua_touserdata(L, 1));
  lua_settop(L, 0);
  lua_pushcfunction(L, AddPosition);  // 1
  // Text only: LuaJIT does not verify bytecode, so a binary chunk could
  // break out of any sandbox. The explicit check gives the clearer message;
  // mode "t" is the backstop.
  if (!a->source.empty() && a->source.front() == LUA_SIGNATURE[0]) {
    a->status = -1;
    a->message = "is a binary (precompiled) chunk; only Lua source is accepted";
    return 0;
  }
  a->status =
      luaL_loadbufferx(L, a->source.data(), a->source.size(), kChunkName, "t");
  if (a->status == 0) {
    ArmHook(L, *BudgetOf(L));
    a->status = lua_pcall(L, 0, 0, 1);
  }
  if (a->status != 0) {
    const char* s = lua_tostring(L, -1);
    a->message = s != nullptr ? s : "unknown error";
    return 0;
  }
  lua_getfield(L, LUA_GLOBALSINDEX, "process");  // 2
  if (!lua_isfunction(L, 2)) {
    a->status = -1;
    a->message = lua_isnil(L, 2) ? std::string(
                                       "does not define a global function "
                                       "process(item)")
                                 : std::string("process is a ") +
                                       luaL_typename(L, 2) + ", not a function";
    return 0;
  }
  lua_pushcclosure(L, CallItem, 2);
  lua_pushlightuserdata(L, &kCallItemKey);
  lua_insert(L, -2);
  lua_rawset(L, LUA_REGISTRYINDEX);
  return 0;
}

// A loaded script in its own sandboxed state. Thread-compatible: one
// thread at a time (the engine gives each worker its own).
class Script {
 public:
  explicit Script(const Limits& limits) : limits_(limits) {
    budget_.limit = static_cast<std::size_t>(limits.max_memory);
    budget_.instructions = limits.max_instructions;
  }
  ~Script() {
    if (L_ != nullptr) lua_close(L_);
  }
  Script(const Script&) = delete;
  Script& operator=(const Script&) = delete;

  // Builds the state and runs `source`'s top level. On failure returns the
  // message for the config error ("line 3: '=' expected near 'x'").
  static Result<std::unique_ptr<Script>, std::string> Load(
      std::string_view source, const Limits& limits) {
    auto script = std::make_unique<Script>(limits);
    if (auto r = script->Init(source); !r.ok()) return r.error();
    return script;
  }

  Outcome Process(json item) {
    Budget& b = budget_;
    b.memory_exceeded = false;
    b.instructions_exceeded = false;
    StartCStack(b);
    ArmHook(L_, b);
    Call call;
    call.item = &item;
    call.limits.max_bytes = static_cast<std::size_t>(limits_.max_memory);
    lua_settop(L_, 1);
    lua_pushvalue(L_, 1);
    lua_pushlightuserdata(L_, &call);
    const int status = lua_pcall(L_, 1, 0, 0);
    std::string outer;
    if (status != 0) {
      const char* s = lua_tostring(L_, -1);
      outer = s != nullptr ? s : "unknown error";
    }
    lua_settop(L_, 1);
    Outcome outcome = Decide(status, outer, call);
    // Recover after a memory error, and keep the uncollected garbage of a
    // state whose live data is large from tripping the cap on a later item.
    if (b.memory_exceeded || b.used > b.limit / 4 * 3) CollectGarbage();
    return outcome;
  }

 private:
  Result<void, std::string> Init(std::string_view source) {
    L_ = lua_newstate(Allocate, &budget_);
    if (L_ == nullptr) return std::string("cannot create a Lua state");
    luaJIT_setmode(L_, 0, LUAJIT_MODE_ENGINE | LUAJIT_MODE_OFF);
    if (lua_cpcall(L_, OpenSandbox, nullptr) != 0) {
      return LimitMessage("cannot open the Lua libraries");
    }
    if (auto r = lua::InstallJson(L_); !r.ok()) {
      return LimitMessage(r.error().message);
    }
    LoadArgs args;
    args.source = source;
    StartCStack(budget_);
    if (const int s = lua_cpcall(L_, LoadBody, &args); s != 0) {
      args.status = s;
      const char* m = lua_tostring(L_, -1);
      args.message = m != nullptr ? m : "unknown error";
    }
    if (args.status != 0) {
      if (budget_.instructions_exceeded) {
        return "the script's top level exceeded max_instructions (" +
               std::to_string(limits_.max_instructions) + ")";
      }
      if (budget_.cstack_exceeded) return CStackMessage();
      if (budget_.memory_exceeded) return LimitMessage(args.message);
      return Describe(args.message);
    }
    if (budget_.cstack_exceeded) return CStackMessage();  // caught, still final
    lua_settop(L_, 0);
    lua_pushlightuserdata(L_, &kCallItemKey);
    lua_rawget(L_, LUA_REGISTRYINDEX);  // stays at index 1
    CollectGarbage();                   // start items from a clean heap
    return {};
  }

  // A full collection, with the cap lifted meanwhile: at the cap, even the
  // protected call's own small allocation would fail, and the state would
  // stay full of garbage.
  void CollectGarbage() {
    const std::size_t limit = budget_.limit;
    budget_.limit = std::numeric_limits<std::size_t>::max();
    lua_cpcall(L_, FullGc, nullptr);
    budget_.limit = limit;
    lua_settop(L_, 1);
  }

  // "line 3: C stack overflow (callbacks nested too deep)"
  std::string CStackMessage() const {
    if (budget_.cstack_line <= 0) return kCStackMessage;
    return "line " + std::to_string(budget_.cstack_line) + ": " +
           kCStackMessage;
  }

  std::string LimitMessage(const std::string& fallback) const {
    if (!budget_.memory_exceeded) return fallback;
    return "the script needs more than max_memory (" +
           FormatBytes(limits_.max_memory) + ")";
  }

  Outcome Decide(int status, const std::string& outer, Call& call) {
    const Budget& b = budget_;
    auto memory = [&] {
      return "lua: memory limit exceeded (" + FormatBytes(limits_.max_memory) +
             ")";
    };
    if (b.instructions_exceeded) {
      return Outcome::Fail("lua: instruction budget exceeded (" +
                           std::to_string(limits_.max_instructions) + ")");
    }
    // Final, like the instruction budget: the script may have caught the
    // error, and unwinding through coroutine.wrap prefixes a position per
    // level, which can run into the memory cap.
    if (b.cstack_exceeded) return Outcome::Fail("lua: " + CStackMessage());
    if (status != 0) {
      return Outcome::Fail(status == LUA_ERRMEM ? memory() : "lua: " + outer);
    }
    if (!call.pushed.ok()) {
      if (call.pushed.error().code == lua::kTooDeep) {
        return Outcome::Fail("lua: the item is " + call.pushed.error().message);
      }
      return Outcome::Fail("lua: cannot pass the item to Lua: " +
                           call.pushed.error().message);
    }
    if (call.status != 0) {
      if (call.status == LUA_ERRMEM ||
          (b.memory_exceeded && (call.status == LUA_ERRERR ||
                                 call.message == "not enough memory"))) {
        return Outcome::Fail(memory());
      }
      return Outcome::Fail("lua: " + Describe(call.message));
    }
    if (!call.result.ok()) {
      return Outcome::Fail("lua: process returned " +
                           call.result.error().message);
    }
    lua::ScriptResult r = std::move(call.result).value();
    switch (r.kind) {
      case lua::ScriptResult::kNil:
        return Outcome::Filtered();
      case lua::ScriptResult::kOne:  // values holds exactly the one value
      case lua::ScriptResult::kMany:
        return Outcome::Values(std::move(r.values));
    }
    return Outcome::Filtered();
  }

  const Limits limits_;
  // Address-stable (Script lives behind a unique_ptr): the allocator and
  // hook keep a pointer to it.
  Budget budget_;
  lua_State* L_ = nullptr;
};

class Lua final : public Processor {
 public:
  explicit Lua(std::unique_ptr<Script> script) : script_(std::move(script)) {}

  Outcome Process(json item) override {
    try {
      return script_->Process(std::move(item));
    } catch (const std::exception& e) {
      return Outcome::Fail(std::string("lua: ") + e.what());
    }
  }

 private:
  std::unique_ptr<Script> script_;
};

// ---- params
// -------------------------------------------------------------------

struct LuaParams {
  std::string source_key;  // "script" or "file": where errors point
  std::string source;
  Limits limits;
};

// The file's text; Error::message says why it cannot be read.
Result<std::string> ReadScriptFile(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) {
    return Error{"unreadable", "cannot read " + json(path).dump() + ": " +
                                   std::strerror(errno)};
  }
  std::string text;
  char buf[65536];
  std::size_t n = 0;
  bool too_big = false;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) {
    text.append(buf, n);
    if (text.size() > static_cast<std::size_t>(kMaxScriptFileBytes)) {
      too_big = true;
      break;
    }
  }
  const bool failed = std::ferror(f) != 0;
  std::fclose(f);
  if (failed) return Error{"unreadable", "cannot read " + json(path).dump()};
  if (too_big) {
    return Error{"too_large", json(path).dump() + " is larger than 16 MiB"};
  }
  return text;
}

// max_instructions; nullopt after reporting a bad value.
std::optional<int> ReadMaxInstructions(Params& p, const json& v) {
  // is_number_integer() also holds for unsigned values; read each kind as
  // itself so a huge unsigned does not wrap.
  const bool in_range =
      v.is_number_unsigned()
          ? (v.get<std::uint64_t>() >= 1 &&
             v.get<std::uint64_t>() <=
                 static_cast<std::uint64_t>(kMaxMaxInstructions))
          : (v.is_number_integer() && v.get<std::int64_t>() >= 1 &&
             v.get<std::int64_t>() <= kMaxMaxInstructions);
  if (!v.is_number_integer()) {
    p.Report("max_instructions",
             "must be an integer (VM instructions per item), not " +
                 DescribeJsonType(v));
    return std::nullopt;
  }
  if (!in_range) {
    p.Report("max_instructions", "must be from 1 to " +
                                     std::to_string(kMaxMaxInstructions) +
                                     ", not " + v.dump());
    return std::nullopt;
  }
  return v.get<int>();
}

// max_memory, a size ("64MiB") or a number of bytes; nullopt after
// reporting a bad value.
std::optional<std::uint64_t> ReadMaxMemory(Params& p, const json& v) {
  std::optional<std::uint64_t> bytes;
  if (v.is_string()) {
    auto size = config::ParseSize(v.get_ref<const std::string&>());
    if (size.ok()) {
      bytes = size.value();
    } else {
      p.Report("max_memory", size.error().message);
    }
  } else if (v.is_number_unsigned() ||
             (v.is_number_integer() && v.get<std::int64_t>() >= 0)) {
    bytes = v.get<std::uint64_t>();
  } else if (v.is_number_integer()) {  // negative
    p.Report("max_memory", "must be at least 1MiB, not " + v.dump());
  } else {
    p.Report("max_memory",
             "must be a size such as \"64MiB\" (or a number of bytes), "
             "not " +
                 DescribeJsonType(v));
  }
  if (bytes.has_value() && *bytes < kMinMaxMemory) {
    p.Report("max_memory",
             "must be at least 1MiB, not " + std::to_string(*bytes) + " bytes");
    return std::nullopt;
  }
  return bytes;
}

// Checks everything but the script itself, reporting into `p`. Returns
// nullopt when there is no script to check.
std::optional<LuaParams> ReadParams(Params& p) {
  LuaParams out;
  if (const json* v = p.Get("max_instructions")) {
    if (auto n = ReadMaxInstructions(p, *v)) out.limits.max_instructions = *n;
  }
  if (const json* v = p.Get("max_memory")) {
    if (auto bytes = ReadMaxMemory(p, *v)) out.limits.max_memory = *bytes;
  }
  const json* script = p.Get("script");
  const json* file = p.Get("file");
  if (script != nullptr && file != nullptr) {
    p.Report("file", "give either script or file, not both");
    return std::nullopt;
  }
  if (script == nullptr && file == nullptr) {
    p.Report("script",
             "is required (the Lua source defining function process(item)), "
             "or give file: a path to it");
    return std::nullopt;
  }
  if (script != nullptr) {
    out.source_key = "script";
    auto text = p.String("script", /*required=*/true);
    if (!text.has_value()) return std::nullopt;
    out.source = std::move(*text);
    return out;
  }
  out.source_key = "file";
  auto path = p.String("file", /*required=*/true);
  if (!path.has_value()) return std::nullopt;
  if (path->empty()) {
    p.Report("file", "must not be empty");
    return std::nullopt;
  }
  auto text = ReadScriptFile(*path);
  if (!text.ok()) {
    p.Report("file", text.error().message);
    return std::nullopt;
  }
  out.source = std::move(text).value();
  return out;
}

}  // namespace

Errors ValidateLua(const nlohmann::json& params) {
  Errors errors;
  Params p(params, &errors,
           {"script", "file", "max_instructions", "max_memory"});
  std::optional<LuaParams> lua = ReadParams(p);
  if (!lua.has_value()) return errors;
  // Compiles and runs the top level in a throw-away state with the same
  // sandbox and limits (defaults where a limit was invalid).
  auto script = Script::Load(lua->source, lua->limits);
  if (!script.ok()) p.Report(lua->source_key, script.error());
  return errors;
}

Result<std::unique_ptr<Processor>> MakeLua(const nlohmann::json& params) {
  Errors errors;
  Params p(params, &errors,
           {"script", "file", "max_instructions", "max_memory"});
  std::optional<LuaParams> lua = ReadParams(p);
  if (!lua.has_value() || !errors.empty()) {
    // Validated params: the file changed since (e.g. it is gone).
    return Error{"unavailable", InvalidSpec(errors).message};
  }
  auto script = Script::Load(lua->source, lua->limits);
  if (!script.ok()) {
    return Error{"unavailable", lua->source_key + ": " + script.error()};
  }
  return std::make_unique<Lua>(std::move(script).value());
}

}  // namespace sluice::processors::internal
