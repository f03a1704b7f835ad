// engine::JobService: what the HTTP router and the WebSocket sessions ask of
// the jobs, whoever runs them. The in-memory `Engine` implements it; in
// cluster mode `cluster::ClusterService` does, and then every replica serves
// every job (docs/cluster.md). Submit, find, list and cancel jobs, open an
// ingestion stream, and the admission state /readyz and 429s come from.
#ifndef SLUICE_SERVICE_ENGINE_JOB_SERVICE_HPP_
#define SLUICE_SERVICE_ENGINE_JOB_SERVICE_HPP_

#include <cstddef>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "service/engine/engine_types.hpp"
#include "service/jobs/job.hpp"
#include "service/util/result.hpp"

namespace sluice::engine {

// The input side of one WebSocket ingestion stream (`GET /v1/stream`): an
// open-ended job fed by the caller. engine::StreamFeed is the in-memory one;
// cluster mode has its own. Implementations are thread-safe.
class IngestFeed {
 public:
  // Dropping a feed ends its input (as End()).
  virtual ~IngestFeed() = default;

  // The stream's job (results, status, cancel by id).
  virtual std::shared_ptr<jobs::Job> job() const = 0;

  // Accepts as many of `items` as there is room for now, from the front
  // (they are removed from `items`), and returns true once `items` is empty.
  // Returns false, with what was not taken left in `items`, when room ran
  // out: then `on_room` is kept and called once, with no lock held, when
  // there may be room (it must not block: post to your strand), and the
  // caller pushes the rest again. Returns false WITHOUT keeping `on_room`
  // once closed(). An empty `items` returns true (false if closed).
  [[nodiscard]] virtual bool TryPush(std::vector<nlohmann::json>& items,
                                     std::function<void()> on_room) = 0;

  // No more items: the job finishes when everything pushed has ended.
  // Idempotent.
  virtual void End() = 0;

  // True once the feed accepts nothing more: End() was called, the job was
  // cancelled, or the service stopped.
  virtual bool closed() const = 0;
};

// Implementations are thread-safe: every method may be called from any
// network thread at once.
class JobService {
 public:
  virtual ~JobService() = default;

  // Accepts a finite job: the job (state queued) or why it was refused. In
  // cluster mode the items are stored in JetStream before this returns.
  virtual Result<std::shared_ptr<jobs::Job>, Refusal> Submit(
      SubmitRequest request) = 0;

  // True when Submit stores items as text (cluster mode): a caller may then
  // give a request's items as item_texts alone, each checked to be JSON
  // (CheckJsonText), with `items` left empty.
  virtual bool TakesItemTexts() const { return false; }

  // Opens an ingestion stream on `pipeline`, or says why not.
  virtual Result<std::shared_ptr<IngestFeed>, Refusal> OpenStream(
      std::string_view pipeline) = 0;

  // The job with that id, or null when unknown (or evicted).
  virtual std::shared_ptr<jobs::Job> Find(std::string_view id) const = 0;

  // At most `limit` jobs, newest first.
  virtual std::vector<std::shared_ptr<jobs::Job>> List(
      std::size_t limit) const = 0;

  // Asks the job to stop. False when it is unknown.
  virtual bool Cancel(std::string_view id) = 0;

  // The pipelines this process runs, with their live counts.
  virtual std::vector<PipelineSnapshot> Pipelines() const = 0;

  virtual bool draining() const = 0;
  virtual bool overloaded() const = 0;
  // For Retry-After on a 429: seconds until room is likely.
  virtual int retry_after_seconds() const = 0;

  // Why the service cannot take or serve jobs right now (for /readyz's 503
  // and the reason it gives, e.g. "nats_unavailable"), or nullopt.
  virtual std::optional<std::string> unavailable() const {
    return std::nullopt;
  }
};

}  // namespace sluice::engine

#endif  // SLUICE_SERVICE_ENGINE_JOB_SERVICE_HPP_
