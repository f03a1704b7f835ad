// Engine-internal: PipelineRuntime, one configured pipeline running
// (contract §C7), built on the patterns library:
//
//   Intake --generator task--> Channel(stage 0 buffer) --> stage 0 workers
//     --> Channel(stage 1 buffer) --> ... --> last stage workers
//     --> Channel(kAggregatorBuffer) --> aggregator task --> Job logs
//
// Every part is a task on the engine's Runtime (one thread per core), so a
// pipeline has no thread of its own. The generator (generator.cpp) takes
// items from the Intake round-robin and sends them into stage 0's Channel,
// which it closes when the Intake ends. Each Stage (stage.hpp) is a
// fan-out of `workers` tasks, one Processor per worker. The aggregator
// (aggregator.cpp) drains the last stage's output (the fan-in point) into
// each job's result log.
#ifndef SLUICE_SERVICE_ENGINE_PIPELINE_RUNTIME_HPP_
#define SLUICE_SERVICE_ENGINE_PIPELINE_RUNTIME_HPP_

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "service/config/config.hpp"
#include "service/engine/engine.hpp"
#include "service/engine/envelope.hpp"
#include "service/engine/intake.hpp"
#include "service/engine/stage.hpp"  // and prometheus::Counter, Gauge
#include "sluice/patterns/channel.hpp"
#include "sluice/patterns/detail/task_group.hpp"
#include "sluice/patterns/mutex.hpp"
#include "sluice/patterns/runtime.hpp"
#include "sluice/patterns/task.hpp"

namespace sluice::engine {

// One pipeline's tasks and state. Thread-safe: intake() and the query
// members may be called from any thread; Stop() and destruction by the
// engine, from a thread that is not one of the Runtime's.
class PipelineRuntime {
 public:
  // Called from the aggregator task (on a thread of the engine's Runtime),
  // with no lock held, after a job of this pipeline has finished. Must not
  // block for long: the pipeline's results wait meanwhile.
  using FinishedFn = std::function<void(const std::shared_ptr<jobs::Job>&)>;

  // Capacity of the channel between the last stage and the aggregator.
  static constexpr std::size_t kAggregatorBuffer = 1024;

  // Starts the generator, every stage's workers (tasks on `runtime`, their
  // processors' I/O on `io`) and the aggregator. Requires: `runtime`, `io`,
  // `metrics`, `options` and `admission` outlive this object.
  PipelineRuntime(const config::PipelineConfig& config, Runtime& runtime,
                  processors::IoLoop* io, metrics::Metrics& metrics,
                  const EngineOptions& options,
                  std::shared_ptr<Admission> admission, FinishedFn on_finished);
  // Stop().
  ~PipelineRuntime();

  PipelineRuntime(const PipelineRuntime&) = delete;
  PipelineRuntime& operator=(const PipelineRuntime&) = delete;

  const config::PipelineConfig& config() const { return config_; }
  const std::shared_ptr<Intake>& intake() const { return intake_; }

  // A new job's context: `ordered` (or the pipeline's default) and a fresh
  // aggregator.
  std::shared_ptr<JobContext> MakeContext(std::shared_ptr<jobs::Job> job,
                                          std::optional<bool> ordered) const;

  // How many items a stream of this pipeline may have queued.
  std::size_t stream_queue_limit() const;

  prometheus::Counter& admission_rejections() { return m_rejections_; }
  prometheus::Gauge& jobs_active() { return m_jobs_active_; }

  void SampleGauges();
  PipelineSnapshot Snapshot() const;

  // Closes the intake (the generator ends once every registered input has
  // ended, closing stage 0's channel), lets every stage drain and end in
  // turn, then the aggregator, and joins all tasks. Requires every job of
  // this pipeline to have finished or been cancelled (else it waits for
  // them). Idempotent.
  void Stop();

  // A reload replaced this pipeline (Engine::Reload): it takes no new job
  // once its generator has ended, which it does when the jobs already in
  // it (open streams included) have all ended their input. Never blocks.
  void Retire() { intake_->Retire(); }
  // True once retired and every job it held has ended: its generator has
  // seen the end and its aggregator task has returned (after the last
  // stage's). Stop() then only joins tasks that are over, so a reload never
  // waits for a replaced pipeline's slow last items.
  bool retired_and_ended() const {
    return intake_->ended() && aggregator_->done();
  }

 private:
  Task<> Generate(std::stop_token st);
  Task<> Aggregate(std::stop_token st);
  void Route(Envelope& e, std::vector<std::shared_ptr<JobContext>>& touched);
  void Emit(JobContext& c, Envelope& e);
  void ReleaseOrdered(JobContext& c);
  Task<> Flush(std::vector<std::shared_ptr<JobContext>>& touched);
  // co_await: Job::Append, suspending while the results memory is full of
  // jobs that finished less than jobs.min_retention ago. Returns Append's
  // result.
  static Task<bool> AppendWhenRoom(jobs::Job& job,
                                   std::vector<jobs::ResultRecord>& records,
                                   std::uint64_t filtered,
                                   std::uint64_t cancelled);
  Task<> FinishJob(JobContext& c);
  std::unique_ptr<processors::Aggregator> NewAggregator() const;
  // Emits the open window's aggregate (if it holds any value) and opens
  // window `next_number`.
  void CloseWindow(AggregatorState& a, std::uint64_t next_number);
  // `every:` windows: closes those that have ended by `now` (marking their
  // jobs touched) and returns when the next one ends (nullopt: none open).
  std::optional<std::chrono::steady_clock::time_point> TickWindows(
      std::chrono::steady_clock::time_point now,
      std::vector<std::shared_ptr<JobContext>>& touched);

  const config::PipelineConfig config_;
  metrics::Metrics& metrics_;
  const EngineOptions& options_;
  const std::shared_ptr<Admission> admission_;
  const FinishedFn on_finished_;
  const std::shared_ptr<Intake> intake_;
  // Stages keep a reference: declared before them.
  const ProcessorFactory factory_;

  prometheus::Counter& m_rejections_;
  prometheus::Gauge& m_jobs_active_;
  prometheus::Counter& m_jobs_done_;
  prometheus::Counter& m_jobs_failed_;
  prometheus::Counter& m_jobs_cancelled_;

  // Stage 0's input, fed and closed by the generator task. Declared
  // before the stages, which read it until joined.
  std::unique_ptr<Channel<Envelope>> source_;
  std::vector<std::unique_ptr<Stage>> stages_;
  std::vector<std::string> stage_names_;

  // Aggregator task only: items completed in the current batch, and the
  // unfinished jobs with `every:` windows open.
  std::uint64_t completed_in_batch_ = 0;
  std::vector<std::shared_ptr<JobContext>> timed_windows_;

  Mutex stop_mu_;  // serialises Stop()
  bool stopped_ SLUICE_GUARDED_BY(stop_mu_) = false;
  // Held while reading the stages' input channels from outside the pipeline
  // (queue depths) and while Stop() destroys them.
  mutable Mutex channels_mu_;
  bool channels_gone_ SLUICE_GUARDED_BY(channels_mu_) = false;
  // The aggregator's input: the last stage's output (stage 0's input when
  // there is no stage).
  Channel<Envelope>* last_ = nullptr;
  // Last: joined (generator first) before the channels go.
  std::unique_ptr<detail::TaskGroup> generator_;
  std::unique_ptr<detail::TaskGroup> aggregator_;
};

}  // namespace sluice::engine

#endif  // SLUICE_SERVICE_ENGINE_PIPELINE_RUNTIME_HPP_
