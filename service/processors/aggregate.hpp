// Defines sluice::processors::Aggregator: the per-job fold over result values
// that becomes the job's `aggregate` (contract §C4), with its validator and
// factory.
#ifndef SLUICE_SERVICE_PROCESSORS_AGGREGATE_HPP_
#define SLUICE_SERVICE_PROCESSORS_AGGREGATE_HPP_

#include <memory>
#include <nlohmann/json.hpp>
#include <vector>

#include "service/config/config.hpp"

namespace sluice::processors {

// Aggregate over one job's result values. Not thread-safe (the pipeline's
// aggregator task owns it); make one per job.
class Aggregator {
 public:
  virtual ~Aggregator() = default;
  // Folds in one result record's value (error records are not added).
  // Never throws.
  virtual void Add(const nlohmann::json& value) = 0;
  // collect → null; count → number of values added; sum/min/max/avg → a
  // number, or null when no numeric value was seen; group_by → an object
  // {"<key as text>": number}. Never throws.
  virtual nlohmann::json Result() const = 0;
  // False when Add ignores the value it is given (collect, count), so a
  // caller holding values as text need not parse them. Never throws.
  virtual bool ReadsValues() const { return true; }
};

// Checks an aggregate spec: a known type, valid JSON pointers in `field` and
// `value`, an `op` only for group_by, a `value` only for group_by op sum, no
// `window` on collect.
// Returns every problem (empty = valid), each with a path relative to the
// aggregate map ("type", "field", "op", "value"). Never throws.
[[nodiscard]] std::vector<config::ConfigError> ValidateAggregateSpec(
    const config::AggregateSpec& spec);

// Builds a fresh aggregator (the same for the whole job and for each of its
// windows: `window` is the engine's business). Requires a spec
// ValidateAggregateSpec accepts. An aggregator is made of plain values, so
// on such a spec nothing can fail but memory: nullptr means a broken
// precondition (a spec the validator rejects) or memory ran out, never a
// condition to report to anyone, which is why this is not a Result. The
// engine copes with nullptr (the job's aggregate is then null). Never
// throws.
[[nodiscard]] std::unique_ptr<Aggregator> MakeAggregator(
    const config::AggregateSpec& spec);

}  // namespace sluice::processors

#endif  // SLUICE_SERVICE_PROCESSORS_AGGREGATE_HPP_
