// Engine-internal: Envelope, what travels on the channels between a
// pipeline's generator, its stages and its aggregator; and JobContext, the
// per-job state those tasks share.
#ifndef SLUICE_SERVICE_ENGINE_ENVELOPE_HPP_
#define SLUICE_SERVICE_ENGINE_ENVELOPE_HPP_

#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "service/jobs/job.hpp"
#include "service/processors/aggregate.hpp"

namespace sluice::engine {

struct JobContext;

// One piece of work, or a control message, for one job. Thread-compatible:
// owned by whichever thread holds it (channels hand it over).
//
// Completion is tracked by weight, with no counter shared between stages: an
// input item starts with kRootWeight; a split gives each part a share (the
// first parts weight/n, the last one the remainder), so an item is complete
// exactly when the weights of its terminal envelopes (value after the last
// stage, error, filtered, cancelled) add up to kRootWeight.
struct Envelope {
  enum class Kind : std::uint8_t {
    kValue,        // an item (or part of one) still being processed
    kError,        // terminal: a processor failed (skips the remaining stages)
    kFiltered,     // terminal: dropped by a stage (skips the remaining stages)
    kCancelled,    // terminal: its job was cancelled before it was processed
    kCancelRange,  // control: seqs [seq, seq + weight) were never fed,
                   // cancelled
    kEnd,          // control: the job's input is complete; seq = items in all
  };

  static constexpr std::uint64_t kRootWeight = std::uint64_t{1} << 62;

  std::shared_ptr<JobContext> context;
  std::uint64_t seq = 0;
  std::uint64_t weight = kRootWeight;  // kCancelRange: the count
  Kind kind = Kind::kValue;
  std::uint32_t stage = 0;  // kError: index of the failing stage
  nlohmann::json value;     // kValue
  std::string error;        // kError
  // The part index taken at each split on the way: orders the parts of one
  // item for ordered jobs. Empty for an item never split.
  std::vector<std::uint32_t> path;

  bool terminal() const {
    return kind == Kind::kValue || kind == Kind::kError ||
           kind == Kind::kFiltered || kind == Kind::kCancelled;
  }
};

// What the aggregator keeps per job. Thread-compatible: only the
// pipeline's aggregator task touches it (after the job was handed over
// through a channel, which orders everything the submitter did before).
struct AggregatorState {
  std::unique_ptr<processors::Aggregator> aggregator;  // may be null
  bool end_seen = false;                               // kEnd arrived
  std::uint64_t total = 0;      // input items, known once end_seen
  std::uint64_t completed = 0;  // items complete (released, if ordered)
  bool finished = false;

  // Unordered jobs: weight arrived so far of items that were split.
  std::unordered_map<std::uint64_t, std::uint64_t> partial;

  // Ordered jobs: terminal pieces held until their item is complete and
  // every earlier item has been released.
  struct Held {
    std::uint64_t weight = 0;
    std::vector<Envelope> pieces;
  };
  std::map<std::uint64_t, Held> held;
  std::uint64_t next_release = 0;
  std::optional<std::uint64_t> cancelled_from;  // kCancelRange's first seq

  // aggregate.window: the open window's aggregator (null without a window),
  // its number, the values folded into it, and, for `every:` windows, when
  // window 0 began (the aggregator's first sight of the job).
  std::unique_ptr<processors::Aggregator> window_aggregator;
  std::uint64_t window_number = 0;
  std::uint64_t window_values = 0;
  std::optional<std::chrono::steady_clock::time_point> window_start;

  // Staged for the next Job::Append (one lock per job per batch).
  bool touched = false;
  std::vector<jobs::ResultRecord> records;
  std::uint64_t filtered = 0;
  std::uint64_t cancelled = 0;
};

// Per-job state shared by the engine's threads. Thread-safety is per field
// group, as marked.
struct JobContext {
  JobContext(std::shared_ptr<jobs::Job> j, bool is_ordered,
             std::unique_ptr<processors::Aggregator> aggregator)
      : job(std::move(j)), ordered(is_ordered) {
    agg.aggregator = std::move(aggregator);
  }

  // Immutable.
  const std::shared_ptr<jobs::Job> job;
  const bool ordered;

  // Written by the generator, read by the aggregator (ordered back-pressure):
  // items fed so far, and whether the generator stopped feeding the job
  // because too many are held back.
  std::atomic<std::uint64_t> fed{0};
  std::atomic<bool> parked{false};
  // Written by the aggregator, read by the generator: items released.
  std::atomic<std::uint64_t> released{0};

  // Aggregator task only.
  AggregatorState agg;
};

}  // namespace sluice::engine

#endif  // SLUICE_SERVICE_ENGINE_ENVELOPE_HPP_
