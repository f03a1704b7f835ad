// Internal to service/processors: the per-type validators and factories that
// processor.cpp dispatches to, and the parameter-checking helpers they share.
// Not for use outside service/processors.
#ifndef SLUICE_SERVICE_PROCESSORS_INTERNAL_HPP_
#define SLUICE_SERVICE_PROCESSORS_INTERNAL_HPP_

#include <initializer_list>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "service/config/config.hpp"
#include "service/processors/processor.hpp"
#include "service/util/json_pointer.hpp"
#include "service/util/result.hpp"

namespace sluice::processors::internal {

using Errors = std::vector<config::ConfigError>;

// Reads and checks one processor's params, appending problems to `errors`.
// Construction reports every key not in `allowed`. Thread-compatible.
class Params {
 public:
  Params(const nlohmann::json& params, Errors* errors,
         std::initializer_list<std::string_view> allowed);

  // The raw value of `key`, or nullptr when absent.
  const nlohmann::json* Get(std::string_view key) const;
  // A JSON pointer param. Absent: `fallback` ("" = the item itself) unless
  // `required`, which reports "is required". Wrong type or bad syntax is
  // reported. Returns nullopt after reporting.
  std::optional<JsonPointer> Pointer(std::string_view key, bool required,
                                     std::string_view fallback = "");
  // A string param; nullopt when absent (reported if `required`) or wrong.
  std::optional<std::string> String(std::string_view key, bool required);
  void Report(std::string path, std::string message);

 private:
  const nlohmann::json& params_;
  Errors* errors_;
};

// Orders two JSON values when both are numbers (integers compared exactly)
// or both strings (bytewise); nullopt for any other pair. Returns <0, 0, >0.
std::optional<int> Compare(const nlohmann::json& a, const nlohmann::json& b);

// "the item" for "", else the pointer text: for item error messages.
std::string DescribeField(const JsonPointer& ptr);

Errors ValidatePassthrough(const nlohmann::json& params);
Errors ValidateSet(const nlohmann::json& params);
Errors ValidateRemove(const nlohmann::json& params);
Errors ValidateFilter(const nlohmann::json& params);
Errors ValidateSplit(const nlohmann::json& params);
Errors ValidateSha256(const nlohmann::json& params);
Errors ValidateDelay(const nlohmann::json& params);
Errors ValidateLua(const nlohmann::json& params);
Errors ValidateHttp(const nlohmann::json& params);

// The "invalid_spec" Error of MakeProcessor: `errors` as "path: message",
// joined by "; " (or a generic message when `errors` is empty).
Error InvalidSpec(const Errors& errors);

// Each requires params its validator accepted, and returns the processor
// (never null) or, as MakeProcessor does, why it cannot be built. Only lua
// can fail on valid params; the others share the signature so that
// processor.cpp's table of types is uniform.
Result<std::unique_ptr<Processor>> MakePassthrough(
    const nlohmann::json& params);
Result<std::unique_ptr<Processor>> MakeSet(const nlohmann::json& params);
Result<std::unique_ptr<Processor>> MakeRemove(const nlohmann::json& params);
Result<std::unique_ptr<Processor>> MakeFilter(const nlohmann::json& params);
Result<std::unique_ptr<Processor>> MakeSplit(const nlohmann::json& params);
Result<std::unique_ptr<Processor>> MakeSha256(const nlohmann::json& params);
Result<std::unique_ptr<Processor>> MakeDelay(const nlohmann::json& params);
// Creates the worker's own sandboxed Lua state and loads the script into
// it: "unavailable" when that fails (e.g. the file went away after
// validation, or a Lua state cannot be created).
Result<std::unique_ptr<Processor>> MakeLua(const nlohmann::json& params);
// `context` names the stage for the http client metrics (none when its
// metrics is null).
Result<std::unique_ptr<Processor>> MakeHttp(const nlohmann::json& params,
                                            const ProcessorContext& context);

}  // namespace sluice::processors::internal

#endif  // SLUICE_SERVICE_PROCESSORS_INTERNAL_HPP_
