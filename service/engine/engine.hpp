// Defines sluice::engine::Engine, which runs every configured pipeline
// (contract §C7: per pipeline one generator, one fan-out worker pool per
// stage and one fan-in aggregator, all tasks on one sluice::Runtime, linked
// by sluice::Channel), admits
// jobs and streams into them, and drains on shutdown (§3.6); and
// sluice::engine::StreamFeed, the input side of a WebSocket ingestion stream.
#ifndef SLUICE_SERVICE_ENGINE_ENGINE_HPP_
#define SLUICE_SERVICE_ENGINE_ENGINE_HPP_

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "service/config/config.hpp"
#include "service/engine/engine_types.hpp"
#include "service/engine/job_service.hpp"
#include "service/jobs/job.hpp"
#include "service/jobs/job_store.hpp"
#include "service/processors/aggregate.hpp"
#include "service/processors/processor.hpp"
#include "service/util/result.hpp"
#include "sluice/patterns/detail/thread_annotations.hpp"
#include "sluice/patterns/mutex.hpp"

namespace sluice {
class Runtime;
}  // namespace sluice

namespace sluice::metrics {
class Metrics;
}  // namespace sluice::metrics

namespace sluice::engine {

// Builds a stage's processor (one call per worker). Must be thread-safe.
using ProcessorFactory = std::function<std::unique_ptr<processors::Processor>(
    const config::StageConfig&)>;
// Builds a job's aggregator (one call per job). Must be thread-safe.
using AggregatorFactory = std::function<std::unique_ptr<processors::Aggregator>(
    const config::AggregateSpec&)>;

// Knobs beyond the config, mostly for tests. Thread-compatible.
struct EngineOptions {
  // Empty: processors::MakeProcessor / processors::MakeAggregator. Tests set
  // these to run processors of their own.
  ProcessorFactory make_processor;
  AggregatorFactory make_aggregator;
  // Ordered jobs: most items of one job fed but not yet released by the
  // aggregator; beyond it the generator feeds the job's items no further.
  std::size_t ordered_window = 4096;
  // How often the aggregator samples sluice_stage_queue_depth.
  std::chrono::milliseconds sample_interval{100};
  // Threads of the runtime every pipeline's tasks (generator, stage workers,
  // aggregator) run on; 0 = one per core. The process's thread count grows
  // with neither pipelines nor `workers`.
  std::size_t runtime_threads = 0;
};

class PipelineRuntime;
class Intake;
class Admission;
struct JobContext;

// The input side of one WebSocket ingestion stream (`GET /v1/stream`): an
// open-ended job fed by the caller. Thread-safe. It may outlive the Engine
// (then TryPush only fails), but its job only finishes once End() is called,
// the job is cancelled, or the engine shuts down.
class StreamFeed final : public IngestFeed {
 public:
  StreamFeed(std::shared_ptr<Intake> intake,
             std::shared_ptr<Admission> admission,
             std::shared_ptr<JobContext> context, std::size_t queue_limit);
  // Calls End(): dropping a feed closes its input, so its job finishes once
  // what was pushed has ended.
  ~StreamFeed() override;
  StreamFeed(const StreamFeed&) = delete;
  StreamFeed& operator=(const StreamFeed&) = delete;

  // The stream's job (results, status, cancel by id).
  std::shared_ptr<jobs::Job> job() const override;

  // Accepts as many of `items` as the pipeline has room for now, from the
  // front (they are removed from `items`), and returns true once `items` is
  // empty. Never blocks. "Room" means the feed's queued input stays within
  // its limit (about the first stage's buffer, 64..1024 items) and the
  // admission limit (jobs.max_pending_items) holds: a batch larger than the
  // room, even larger than either limit, goes in piece by piece as room
  // appears, never past a limit.
  // Returns false, with what was not taken left in `items`, when room ran
  // out: then `on_room` is kept and called once, on an engine thread with
  // no lock held, when there may be room; it must not block (post to your
  // strand) and you call TryPush again with the rest, which may return
  // false again and keep the new `on_room`. Returns false WITHOUT keeping
  // `on_room` (and `items` holding what was not taken) when the feed is
  // closed() (End() called, job cancelled, engine shut down): stop reading
  // and wait for the job to finish (Job::ReadFrom reports it).
  // An empty `items` returns true (false if closed).
  [[nodiscard]] bool TryPush(std::vector<nlohmann::json>& items,
                             std::function<void()> on_room) override;

  // No more items: the job finishes when everything pushed has ended.
  // Idempotent.
  void End() override;

  // True once the feed accepts nothing more: End() was called, the job was
  // cancelled, or the engine stopped.
  bool closed() const override;

 private:
  const std::shared_ptr<Intake> intake_;
  const std::shared_ptr<Admission> admission_;
  const std::shared_ptr<JobContext> context_;
  const std::size_t queue_limit_;
};

// Thread-safe: every member may be called from any thread, and none blocks
// on a channel or waits for processing except Shutdown() (and the
// destructor), which callers run off the network threads.
class Engine final : public JobService {
 public:
  // Builds and starts every pipeline of `config` (their tasks run on the
  // engine's Runtime until Shutdown), registers their metrics, and keeps
  // `metrics` by reference.
  // Requires: `config` validated (config::LoadConfig*); `metrics` outlives
  // the Engine.
  Engine(const config::Config& config, metrics::Metrics& metrics,
         EngineOptions options = {});
  // Shutdown(0) if Shutdown has not run, then joins every thread.
  ~Engine();

  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Admits a job: its items are queued in memory for the pipeline's
  // generator and the (queued) job is returned at once. Any JSON value is an
  // item; an empty list makes a job that finishes done with no results.
  // Refusals (Refusal::Reason): kUnknownPipeline; kDraining once the drain
  // began (BeginDrain or Shutdown); kJobTooLarge when the job alone has more
  // items than jobs.max_pending_items (it could never fit: retrying is
  // pointless); kOverCapacity when the items accepted but not yet complete
  // over all jobs, plus these, would exceed jobs.max_pending_items (nothing
  // is accepted then; see retry_after_seconds()).
  Result<std::shared_ptr<jobs::Job>, Refusal> Submit(
      SubmitRequest request) override;

  // Opens an open-ended job fed through the returned StreamFeed. Refusals:
  // kUnknownPipeline, kDraining.
  Result<std::shared_ptr<IngestFeed>, Refusal> OpenStream(
      std::string_view pipeline) override;

  // The job with this id (running, or finished and still retained), or
  // nullptr.
  std::shared_ptr<jobs::Job> Find(std::string_view id) const override;

  // Up to `limit` retained jobs, newest first.
  std::vector<std::shared_ptr<jobs::Job>> List(
      std::size_t limit) const override;

  // Cancels a job: its queued items end as cancelled, in-flight items end as
  // cancelled without further processing, and its state becomes cancelled
  // once they all have (asynchronously, on engine threads). A stream's input
  // closes. Returns false for an unknown id; true otherwise (a no-op for a
  // finished job).
  bool Cancel(std::string_view id) override;

  // Every pipeline's configuration and live counters, in config order (for
  // GET /v1/pipelines, which http/views.cpp renders).
  std::vector<PipelineSnapshot> Pipelines() const override;

  bool HasPipeline(std::string_view name) const;

  // Drops a finished job from the store at once (cluster mode: a batch of
  // JetStream items whose outcomes are published). No-op for an unknown or
  // unfinished job.
  void Forget(std::string_view id) { store_.Remove(id); }

  // The drain state of the whole process (there is no other): draining()
  // turns true at BeginDrain() or Shutdown() and stays true; from then on
  // Submit and OpenStream refuse with kDraining and /readyz answers 503.
  // BeginDrain is idempotent and never blocks.
  void BeginDrain();

  // For /readyz: draining() once the drain began; overloaded() while the
  // pending items are at jobs.max_pending_items, or while items are pending
  // and a job that fits the limit was refused (429) in the last second.
  bool draining() const override;
  bool overloaded() const override;

  // Items accepted but not yet complete, over all jobs.
  std::uint64_t pending_items() const;

  // A Retry-After hint (seconds, 1..60) for an over_capacity rejection,
  // from the recent completion rate.
  int retry_after_seconds() const override;

  // Samples every stage's sluice_stage_queue_depth now (the aggregators also
  // do it every sample_interval). Cheap; e.g. from a metrics scrape hook.
  void SampleGauges();

  // Replaces the running pipelines with `pipelines` (DESIGN.md §3.8
  // reload), atomically: every new pipeline is built and started first,
  // then one swap makes them the ones Submit, OpenStream, Pipelines and
  // HasPipeline see. Jobs and streams already admitted finish on the
  // pipelines they started on, which are then stopped (by a later Reload,
  // or Shutdown). Jobs, results and admission (the `jobs` section) are
  // untouched. Requires `pipelines` from a validated config
  // (config::LoadConfig*). Returns the new pipelines' names, or, changing
  // nothing: "draining" once the drain began, or why a pipeline could not
  // be built. Blocks only to join replaced pipelines that have already
  // drained (milliseconds); call it off the engine's runtime threads.
  Result<std::vector<std::string>> Reload(
      const std::vector<config::PipelineConfig>& pipelines)
      SLUICE_EXCLUDES(shutdown_mu_, pipelines_mu_);

  // contract §C6: BeginDrain() (stops admitting), waits up to `grace`
  // for running jobs (and open streams) to finish, cancels what remains and
  // waits for it to end, then stops every pipeline: the generator ends
  // (closing stage 0's channel), each stage drains and ends, then the
  // aggregator; all their tasks are joined. Blocks until then. Idempotent;
  // concurrent callers wait for the first.
  void Shutdown(std::chrono::milliseconds grace);

 private:
  // The pipelines new jobs go to, in config order. Immutable once built:
  // a reload swaps in a new set.
  struct PipelineSet {
    std::vector<std::shared_ptr<PipelineRuntime>> in_order;
    std::map<std::string, std::shared_ptr<PipelineRuntime>, std::less<>>
        by_name;
  };

  std::shared_ptr<const PipelineSet> BuildPipelines(
      const std::vector<config::PipelineConfig>& pipelines);
  std::shared_ptr<const PipelineSet> current() const
      SLUICE_EXCLUDES(pipelines_mu_);
  std::shared_ptr<PipelineRuntime> RuntimeFor(std::string_view pipeline) const;
  // Every pipeline named `name` that may hold a job: the current one and
  // those a reload replaced.
  std::vector<std::shared_ptr<PipelineRuntime>> RuntimesNamed(
      std::string_view name) const SLUICE_EXCLUDES(pipelines_mu_);
  // Registers `job` (its context built by `runtime`) with the runtime's
  // intake; when a reload retired that runtime in between, with the
  // pipeline that replaced it. Returns the runtime that took it, or null
  // (the engine is draining, or the pipeline was removed).
  std::shared_ptr<PipelineRuntime> AddToIntake(
      std::shared_ptr<PipelineRuntime> runtime,
      const std::shared_ptr<jobs::Job>& job, std::vector<nlohmann::json>& items,
      std::optional<bool> ordered, bool open,
      std::shared_ptr<JobContext>* context);
  void CancelIn(const std::shared_ptr<jobs::Job>& job);
  // Reload, with shutdown_mu_ held.
  Result<std::vector<std::string>> ReloadLocked(
      const std::vector<config::PipelineConfig>& pipelines)
      SLUICE_REQUIRES(shutdown_mu_) SLUICE_EXCLUDES(pipelines_mu_);
  // Stops (joins) the replaced pipelines whose generators have ended.
  void ReapRetired() SLUICE_EXCLUDES(pipelines_mu_);
  void OnJobFinished(const std::shared_ptr<jobs::Job>& job);
  Result<std::shared_ptr<jobs::Job>, Refusal> NewJob(PipelineRuntime& runtime,
                                                     std::uint64_t accepted);
  // Waits until no job is active or `deadline`; true when none is.
  [[nodiscard]] bool WaitIdle(
      std::optional<std::chrono::steady_clock::time_point> deadline)
      SLUICE_EXCLUDES(idle_mu_);

  metrics::Metrics& metrics_;
  const EngineOptions options_;
  // Mutable: lookups evict expired jobs (JobStore is thread-safe).
  mutable jobs::JobStore store_;
  const std::shared_ptr<Admission> admission_;

  // Run the processors' async I/O and every stage worker of every pipeline
  // as a task. Declared before the pipelines, which use them until joined.
  std::unique_ptr<processors::IoLoop> io_;
  std::unique_ptr<Runtime> runtime_;
  // The current pipelines (swapped by Reload) and those a reload replaced
  // that have not been stopped yet. Every one is stopped in Shutdown.
  mutable Mutex pipelines_mu_;
  std::shared_ptr<const PipelineSet> pipelines_
      SLUICE_GUARDED_BY(pipelines_mu_);
  std::vector<std::shared_ptr<PipelineRuntime>> retired_
      SLUICE_GUARDED_BY(pipelines_mu_);

  std::atomic<bool> draining_{false};

  // Jobs admitted and not yet finished; Shutdown waits on it.
  mutable Mutex idle_mu_;
  CondVar idle_cv_;
  std::uint64_t active_jobs_ SLUICE_GUARDED_BY(idle_mu_) = 0;

  // Serialises Shutdown callers.
  Mutex shutdown_mu_;
  bool shut_down_ SLUICE_GUARDED_BY(shutdown_mu_) = false;

  // retry_after_seconds(): the completion rate between two samples.
  // Steady-clock ns of the last 429 (0: none yet); only a hint for /readyz.
  std::atomic<std::int64_t> last_refusal_ns_{0};

  mutable Mutex rate_mu_;
  mutable std::chrono::steady_clock::time_point rate_at_
      SLUICE_GUARDED_BY(rate_mu_);
  mutable std::uint64_t rate_completed_ SLUICE_GUARDED_BY(rate_mu_) = 0;
  mutable double rate_per_second_ SLUICE_GUARDED_BY(rate_mu_) = 0;
};

}  // namespace sluice::engine

#endif  // SLUICE_SERVICE_ENGINE_ENGINE_HPP_
