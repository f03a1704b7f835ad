// Shared helpers of the libFuzzer targets in tests/fuzz/: a fatal check that
// prints the failed invariant (libFuzzer then saves the input as a crash
// artifact), an in-process sluice service (Engine + Router, no sockets)
// built once per process from a small config, and the checks every HTTP
// response must pass.
#ifndef SLUICE_TESTS_FUZZ_FUZZ_SUPPORT_HPP_
#define SLUICE_TESTS_FUZZ_FUZZ_SUPPORT_HPP_

#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "service/config/config.hpp"
#include "service/engine/engine.hpp"
#include "service/http/router.hpp"
#include "service/metrics/metrics.hpp"
#include "service/processors/checks.hpp"

namespace sluice::fuzz {

// Reports a broken invariant and aborts: libFuzzer treats the abort as a
// crash, prints the stack and writes the input to crash-<sha1>.
[[noreturn]] inline void Fail(std::string_view what, std::string_view detail) {
  std::fprintf(stderr, "\n==== sluice fuzz invariant failed: %.*s\n%.*s\n",
               static_cast<int>(what.size()), what.data(),
               static_cast<int>(detail.size()), detail.data());
  std::fflush(stderr);
  std::abort();
}

// FUZZ_CHECK(condition, detail): Fail() with the condition's text unless it
// holds. `detail` (a std::string expression) is only built on failure.
#define FUZZ_CHECK(cond, detail)                                   \
  do {                                                             \
    if (!(cond)) ::sluice::fuzz::Fail(#cond, std::string(detail)); \
  } while (false)

// True when the environment variable SLUICE_FUZZ_IGNORE (a comma-separated
// list) names `bug`: a known, reported bug whose check is switched off so a
// long run can explore past it. CI never sets it; docs/fuzzing.md lists
// the names.
inline bool Ignored(std::string_view bug) {
  const char* list = std::getenv("SLUICE_FUZZ_IGNORE");
  if (list == nullptr) return false;
  std::string_view rest(list);
  while (!rest.empty()) {
    const std::size_t comma = rest.find(',');
    if (rest.substr(0, comma) == bug) return true;
    if (comma == std::string_view::npos) break;
    rest.remove_prefix(comma + 1);
  }
  return false;
}

// The fuzz input as text.
inline std::string_view AsText(const std::uint8_t* data, std::size_t size) {
  return {reinterpret_cast<const char*>(data), size};
}

// Loads a config the fuzzer itself needs; a bad one is a bug in the target.
inline config::Config LoadConfigOrDie(std::string_view text) {
  auto loaded =
      config::LoadConfigText(text, ::sluice::processors::ConfigChecks());
  if (!loaded.ok()) {
    std::string all;
    for (const auto& e : loaded.error()) all += config::ToString(e) + "\n";
    Fail("fuzz config does not load", all);
  }
  return std::move(loaded).value();
}

// One running service without sockets: what the server wires together,
// minus the network. Built once per process and never destroyed (the
// engine's threads keep running until exit), so nothing is torn down while
// libFuzzer is still calling in and LeakSanitizer sees it all as reachable.
struct Service {
  config::Config config;
  metrics::Metrics metrics{"fuzz"};
  engine::Engine engine;
  http::Router router;            // auth off
  http::Router router_with_auth;  // auth on: kFuzzToken

  static constexpr std::string_view kFuzzToken = "fuzz-token";

  explicit Service(config::Config c)
      : config(std::move(c)),
        engine(config, metrics),
        router(engine, metrics, http::RouterOptions{}),
        router_with_auth(engine, metrics,
                         http::RouterOptions{{std::string(kFuzzToken)}, {}}) {}
};

// The service for `config_text`, created on the first call (later calls
// return the same one and ignore their argument).
inline Service& GetService(std::string_view config_text) {
  static Service* service = new Service(LoadConfigOrDie(config_text));
  return *service;
}

// Depth of nested arrays/objects of a parsed value (a scalar is 0).
inline std::size_t JsonDepth(const nlohmann::json& v) {
  if (!v.is_structured()) return 0;
  std::size_t deepest = 0;
  for (const auto& child : v) deepest = std::max(deepest, JsonDepth(child));
  return deepest + 1;
}

inline std::string Describe(const http::Response& res) {
  std::ostringstream os;
  os << res.result_int() << " " << res.reason() << "\n";
  for (const auto& field : res) {
    os << field.name_string() << ": " << field.value() << "\n";
  }
  os << "\n" << res.body().substr(0, 2000);
  return os.str();
}

// Invariants of every response sluice sends:
// - a status from 100 to 599, and never 500 (Router::Handle answers 500
//   only when something threw: a bug by definition);
// - Content-Length equals the body (HEAD: no body), and prepare_payload()
//   and the serializer accept the message;
// - a JSON content type means a body that parses; a 4xx/5xx JSON body is
//   {"error": {"code": string, "message": string, ...}}.
inline void CheckResponse(const http::Response& res, bool head = false) {
  const unsigned status = res.result_int();
  FUZZ_CHECK(status >= 100 && status <= 599, Describe(res));
  FUZZ_CHECK(status != 500, Describe(res));
  // RFC 9112 §6.3: a response to HEAD ends at its header; a body would be
  // read as the start of the next response on a keep-alive connection.
  if (head && !Ignored("head-body")) {
    FUZZ_CHECK(res.body().empty(),
               "a body in the response to HEAD\n" + Describe(res));
  }
  if (!head) {
    auto length = res.find(http::bhttp::field::content_length);
    FUZZ_CHECK(length != res.end(), Describe(res));
    FUZZ_CHECK(length->value() == std::to_string(res.body().size()),
               Describe(res));
    http::Response copy = res;
    try {
      copy.prepare_payload();
    } catch (const std::exception& e) {
      Fail("prepare_payload threw",
           std::string(e.what()) + "\n" + Describe(res));
    }
  }
  try {
    std::ostringstream wire;
    wire << res;
    FUZZ_CHECK(!wire.str().empty(), Describe(res));
  } catch (const std::exception& e) {
    Fail("serializing the response threw",
         std::string(e.what()) + "\n" + Describe(res));
  }
  const bool is_json =
      res[http::bhttp::field::content_type] == "application/json";
  if (is_json && !head) {
    FUZZ_CHECK(nlohmann::json::accept(res.body()), Describe(res));
    if (status >= 400) {
      const nlohmann::json body = nlohmann::json::parse(res.body());
      FUZZ_CHECK(body.is_object() && body.contains("error") &&
                     body["error"].is_object(),
                 Describe(res));
      const nlohmann::json& error = body["error"];
      FUZZ_CHECK(error.contains("code") && error["code"].is_string() &&
                     !error["code"].get<std::string>().empty(),
                 Describe(res));
      FUZZ_CHECK(error.contains("message") && error["message"].is_string() &&
                     !error["message"].get<std::string>().empty(),
                 Describe(res));
    }
  }
  if (status == 401) {
    FUZZ_CHECK(res.find(http::bhttp::field::www_authenticate) != res.end(),
               Describe(res));
  }
  if (status == 405) {
    FUZZ_CHECK(res.find(http::bhttp::field::allow) != res.end(), Describe(res));
  }
  if (status == 429) {
    FUZZ_CHECK(res.find(http::bhttp::field::retry_after) != res.end(),
               Describe(res));
  }
}

}  // namespace sluice::fuzz

#endif  // SLUICE_TESTS_FUZZ_FUZZ_SUPPORT_HPP_
