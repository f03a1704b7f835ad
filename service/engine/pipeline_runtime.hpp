// Engine-internal: PipelineRuntime, the running threads of one configured
// pipeline (contract §C7), built on the patterns library:
//
//   Intake --generator thread--> Channel(stage 0 buffer) --> stage 0 workers
//     --> Channel(stage 1 buffer) --> ... --> last stage workers
//     --> Channel(kAggregatorBuffer) --> aggregator thread --> Job logs
//
// The generator is one std::jthread taking items from the Intake round-robin
// and sending them, in batches of what is ready, into stage 0's Channel,
// which it closes when the Intake ends (Go's generator: a goroutine feeding a
// channel it closes). sluice::generate() is not used because it keeps calling
// its function to fill a batch before sending, and ours blocks while no job
// has input: values already produced would wait for the next job. The stages
// are a sluice::Pipeline of split stages over that channel (each a fan-out
// of the stage's worker count, one Processor per worker); the aggregator is
// one std::jthread draining the pipeline's output (the fan-in point) into
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
#include <thread>
#include <vector>

#include "service/config/config.hpp"
#include "service/engine/engine.hpp"
#include "service/engine/envelope.hpp"
#include "service/engine/intake.hpp"
#include "sluice/patterns/channel.hpp"
#include "sluice/patterns/mutex.hpp"
#include "sluice/patterns/pipeline.hpp"

namespace prometheus {
class Counter;
class Gauge;
class Histogram;
}  // namespace prometheus

namespace sluice::engine {

// One stage's processors, counters and metric children. Thread-safe: its
// workers call Process concurrently; the counters are atomics.
class StageRuntime {
 public:
  StageRuntime(std::uint32_t index, const config::PipelineConfig& pipeline,
               const config::StageConfig& config,
               const ProcessorFactory& factory, metrics::Metrics& metrics);

  // One worker's step: appends what `e` became to `out`. Control and
  // terminal envelopes pass through; an item of a cancelled job becomes
  // kCancelled unprocessed; else the worker's own Processor runs on it.
  void Process(Envelope e, std::vector<Envelope>& out);

  const config::StageConfig& config() const { return config_; }
  bool io_bound() const { return io_bound_; }
  // The channel feeding this stage (set once while the pipeline is built).
  void set_input(Channel<Envelope>* input) { input_ = input; }
  std::size_t queue_depth() const { return input_ ? input_->size() : 0; }
  void SampleGauges();
  nlohmann::json Json() const;

 private:
  processors::Processor* ClaimProcessor();

  const std::uint32_t index_;
  const config::StageConfig config_;
  const ProcessorFactory& factory_;
  bool io_bound_ = false;

  // One per worker, made up front; each worker thread claims one on its
  // first item (next_claim_) and keeps it for its life.
  std::vector<std::unique_ptr<processors::Processor>> processors_;
  std::atomic<std::size_t> next_claim_{0};
  // Extra processors in case more threads than workers ever call Process
  // (never with sluice::Pipeline; kept so the claim cannot fail).
  Mutex extra_mu_;
  std::vector<std::unique_ptr<processors::Processor>> extra_
      SLUICE_GUARDED_BY(extra_mu_);

  Channel<Envelope>* input_ = nullptr;

  std::atomic<std::uint64_t> in_{0}, out_{0}, filtered_{0}, errors_{0},
      cancelled_{0};
  std::atomic<std::int64_t> busy_{0};

  prometheus::Counter& m_in_;
  prometheus::Counter& m_out_;
  prometheus::Counter& m_filtered_;
  prometheus::Counter& m_error_;
  prometheus::Counter& m_cancelled_;
  prometheus::Histogram& m_duration_;
  prometheus::Gauge& m_queue_depth_;
  prometheus::Gauge& m_busy_;
};

// One pipeline's threads and state. Thread-safe: intake() and the query
// members may be called from any thread; Stop() and destruction by the
// engine.
class PipelineRuntime {
 public:
  // Called on the aggregator thread, with no lock held, after a job of this
  // pipeline has finished.
  using FinishedFn = std::function<void(const std::shared_ptr<jobs::Job>&)>;

  // Capacity of the channel between the last stage and the aggregator.
  static constexpr std::size_t kAggregatorBuffer = 1024;

  // Starts the generator, every stage's workers and the aggregator.
  // Requires: `metrics`, `options` and `admission` outlive the runtime.
  PipelineRuntime(const config::PipelineConfig& config,
                  metrics::Metrics& metrics, const EngineOptions& options,
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
  nlohmann::json Json() const;

  // Closes the intake (the generator ends once every registered input has
  // ended, closing stage 0's channel), lets every stage drain and end in
  // turn, then the aggregator, and joins all threads. Requires every job of
  // this pipeline to have finished or been cancelled (else it waits for
  // them). Idempotent.
  void Stop();

 private:
  void RunGenerator(std::stop_token st);
  void RunAggregator(std::stop_token st);
  void Route(Envelope& e, std::vector<std::shared_ptr<JobContext>>& touched);
  void Emit(JobContext& c, Envelope& e);
  void ReleaseOrdered(JobContext& c);
  void Flush(std::vector<std::shared_ptr<JobContext>>& touched);
  // Job::Append, waiting while the results memory is full of jobs that
  // finished less than jobs.min_retention ago. Returns Append's result.
  static bool AppendWhenRoom(jobs::Job& job,
                             std::vector<jobs::ResultRecord>& records,
                             std::uint64_t filtered, std::uint64_t cancelled);
  void FinishJob(JobContext& c);
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

  // Declared before pipeline_: workers use them until joined.
  std::vector<std::unique_ptr<StageRuntime>> stages_;
  std::vector<std::string> stage_names_;

  // Aggregator thread only: items completed in the current batch, and the
  // unfinished jobs with `every:` windows open.
  std::uint64_t completed_in_batch_ = 0;
  std::vector<std::shared_ptr<JobContext>> timed_windows_;

  Mutex stop_mu_;  // serialises Stop()
  // Held while reading the stages' input channels from outside the pipeline
  // (queue depths) and while Stop() destroys them.
  mutable Mutex channels_mu_;
  bool channels_gone_ SLUICE_GUARDED_BY(channels_mu_) = false;
  // Stage 0's input, fed and closed by the generator thread.
  std::unique_ptr<Channel<Envelope>> source_;
  // The stages; reset (joined) by Stop() after the aggregator has seen its
  // input close.
  std::unique_ptr<Pipeline<Envelope>> pipeline_;
  // Last: joined (aggregator first) before the channels go.
  std::jthread generator_;
  std::jthread aggregator_;
};

}  // namespace sluice::engine

#endif  // SLUICE_SERVICE_ENGINE_PIPELINE_RUNTIME_HPP_
