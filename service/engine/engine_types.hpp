// The plain values engine::JobService speaks in: why a job was refused,
// what a submit asks for, and the snapshots GET /v1/pipelines shows.
#ifndef SLUICE_SERVICE_ENGINE_ENGINE_TYPES_HPP_
#define SLUICE_SERVICE_ENGINE_ENGINE_TYPES_HPP_

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "service/config/config.hpp"

namespace sluice::engine {

// Why Submit or OpenStream refused a job. Each reason has exactly one HTTP
// status and error code, mapped in one place (http/router.cpp:
// HttpErrorOf). Thread-compatible (plain value).
struct Refusal {
  enum class Reason {
    kUnknownPipeline,  // no pipeline of that name (404 unknown_pipeline)
    kOverCapacity,     // jobs.max_pending_items is full for now (429)
    kJobTooLarge,      // more items than jobs.max_pending_items (413)
    kDraining,         // the shutdown began (503 draining)
    kUnavailable,      // cluster mode: NATS cannot be reached (503)
  };
  Reason reason;
  std::string message;  // for people: says what and which limit
};

// A finite job: `items` go to `pipeline`; `ordered` overrides the pipeline's
// `ordered` for this job when set. Thread-compatible (plain value).
struct SubmitRequest {
  std::string pipeline;
  std::vector<nlohmann::json> items;
  std::optional<bool> ordered;
  // Empty, or items[i]'s JSON text as the client sent it (an NDJSON line),
  // so that a service that stores items as text (cluster mode) need not
  // serialize them again. Views into the request's body: valid only during
  // the Submit call that takes this request, and never kept.
  std::vector<std::string_view> item_texts = {};

  // The job's items: as parsed values, or as texts only (for a service
  // that TakesItemTexts).
  std::size_t count() const {
    return std::max(items.size(), item_texts.size());
  }
};

// One stage of a running pipeline, as of one instant (GET /v1/pipelines;
// http/views.cpp writes it as JSON). Thread-compatible (plain value).
struct StageSnapshot {
  config::StageConfig config;
  std::size_t queue_depth = 0;  // items waiting in the stage's input
  std::int64_t busy = 0;        // workers inside their processor
  std::uint64_t in = 0, out = 0, filtered = 0, errors = 0, cancelled = 0;
  // The p99 of one item's processing over the last 10-20 s
  // (metrics::LatencyWindow); nullopt when no item was processed in it.
  std::optional<double> p99_seconds;
};

// One running pipeline, as of one instant. Thread-compatible (plain value).
struct PipelineSnapshot {
  std::string name;
  bool ordered = false;
  config::AggregateSpec aggregate;
  std::int64_t jobs_active = 0;
  std::vector<StageSnapshot> stages;
};

}  // namespace sluice::engine

#endif  // SLUICE_SERVICE_ENGINE_ENGINE_TYPES_HPP_
