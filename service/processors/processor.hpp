// Defines sluice::processors::Processor, the per-item transformation a
// pipeline stage applies (contract §C4 processor table), its Outcome, and
// the factory and validator that turn a config::ProcessorSpec into one.
#ifndef SLUICE_SERVICE_PROCESSORS_PROCESSOR_HPP_
#define SLUICE_SERVICE_PROCESSORS_PROCESSOR_HPP_

#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "service/config/config.hpp"
#include "service/processors/io_loop.hpp"
#include "service/util/result.hpp"
#include "sluice/patterns/task.hpp"

namespace sluice::metrics {
class Metrics;
}  // namespace sluice::metrics

namespace sluice::processors {

// Where a processor runs: names for its error messages and metric labels,
// and the registry for processors that keep metrics of their own (http).
// Thread-compatible (plain value).
struct ProcessorContext {
  std::string pipeline;
  std::string stage;
  // Null: no metrics (unit tests, `sluice check`). Must outlive the
  // processor when set.
  metrics::Metrics* metrics = nullptr;
  // Where I/O-bound processors run their async I/O (the engine's). Null:
  // each processor that needs one drives a private loop on the calling
  // thread. Must outlive the processor when set.
  IoLoop* io = nullptr;
};

// What one item became. Thread-compatible (plain value).
struct Outcome {
  enum Kind { kValues, kFiltered, kError } kind = kValues;
  // kValues: 1 value for map-like processors, n for split (n may be 0: the
  // engine then counts the item as filtered).
  std::vector<nlohmann::json> values;
  // kError: the message (the engine adds the stage name).
  std::string error;

  static Outcome Value(nlohmann::json value) {
    Outcome o;
    o.values.push_back(std::move(value));
    return o;
  }
  static Outcome Values(std::vector<nlohmann::json> values) {
    Outcome o;
    o.values = std::move(values);
    return o;
  }
  static Outcome Filtered() {
    Outcome o;
    o.kind = kFiltered;
    return o;
  }
  static Outcome Fail(std::string message) {
    Outcome o;
    o.kind = kError;
    o.error = std::move(message);
    return o;
  }
};

// One stage's item transformation. The engine makes one instance per worker
// (so a processor may keep per-worker state, e.g. a Lua state or an HTTP
// connection). Thread-compatible: one worker uses an instance at a time
// (a worker is a task, so successive calls may come from different threads).
class Processor {
 public:
  virtual ~Processor() = default;
  // Transforms one item, on the calling thread. Never throws: a failure is
  // Outcome::kError.
  virtual Outcome Process(nlohmann::json item) = 0;
  // The same inside a task on a sluice::Runtime: an I/O-bound processor
  // waits by suspending the task (sleep_for, an async exchange), so a stage
  // of 4,096 workers holds no thread per wait. The default runs Process.
  // Requires: called from a task on a Runtime. Never throws.
  virtual Task<Outcome> ProcessAsync(nlohmann::json item) {
    co_return Process(std::move(item));
  }
  // True when the processor is slow / I-O bound (delay, http): the engine
  // then gives its workers batch 1 and calls ProcessAsync.
  virtual bool io_bound() const { return false; }
};

// Checks a spec: the type is known and available, and its params are
// complete, well-typed and have no unknown keys. Returns every problem found
// (empty = valid), each with a path relative to the processor map ("type",
// "field", "fields[\"/a\"]", ...) so the config loader can prefix it.
// Never throws.
[[nodiscard]] std::vector<config::ConfigError> ValidateProcessorSpec(
    const config::ProcessorSpec& spec);

// Builds a processor from a spec, for the stage `context` names. Returns the
// processor (never null), or an Error that says why not: code
// "invalid_spec" for a spec ValidateProcessorSpec rejects (the message is
// its problems, "path: message" joined by "; "), "unavailable" when a valid
// spec cannot be built now (a Lua state cannot be created, the script file
// went away since validation, memory ran out). Never throws.
Result<std::unique_ptr<Processor>> MakeProcessor(
    const config::ProcessorSpec& spec, const ProcessorContext& context = {});

// The processor types ValidateProcessorSpec accepts, in documentation order.
const std::vector<std::string>& AvailableProcessorTypes();

}  // namespace sluice::processors

#endif  // SLUICE_SERVICE_PROCESSORS_PROCESSOR_HPP_
