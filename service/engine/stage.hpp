// Engine-internal: Stage, one configured stage of a running pipeline, the
// fan-out worker pool of DESIGN.md §4 (contract §C7):
//
//   input Channel --> `workers` tasks on the engine's Runtime --> output
//                     (each with its own Processor)              Channel
//
// A stage's `workers` is a concurrency limit, not a thread count: its
// workers are tasks, and the engine's Runtime runs every stage of every
// pipeline on one thread per core. A CPU-bound processor (lua, sha256,
// set, ...) runs on the runtime's threads a batch of items at a time; an
// I/O-bound one (http, delay) suspends its task while it waits, so 4,096
// workers are 4,096 waits in flight on those same few threads.
//
// A keyed stage (`key: /user_id`) adds a router task that sends each item
// to the queue of the worker its key hashes to, so items with equal keys
// are processed by one worker in arrival order.
//
// The last worker to end closes the output channel (Go's rule: the sending
// side closes), so a closed input drains through every stage in turn.
#ifndef SLUICE_SERVICE_ENGINE_STAGE_HPP_
#define SLUICE_SERVICE_ENGINE_STAGE_HPP_

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <stop_token>
#include <vector>

#include "service/config/config.hpp"
#include "service/engine/engine.hpp"
#include "service/engine/envelope.hpp"
#include "service/metrics/latency_window.hpp"
#include "service/util/json_pointer.hpp"
#include "sluice/patterns/channel.hpp"
#include "sluice/patterns/detail/task_group.hpp"
#include "sluice/patterns/runtime.hpp"
#include "sluice/patterns/task.hpp"

namespace prometheus {
class Counter;
class Gauge;
class Histogram;
}  // namespace prometheus

namespace sluice::engine {

// Thread-safe: Start, Stop and Join by the owning PipelineRuntime; the
// query members from any thread; the workers' counters are atomics.
class Stage {
 public:
  // Builds one processor per worker (with `factory`) and the metric
  // children; starts nothing. A processor the factory cannot build is null:
  // each item that worker takes then fails with "not available".
  Stage(std::uint32_t index, const config::PipelineConfig& pipeline,
        const config::StageConfig& config, const ProcessorFactory& factory,
        metrics::Metrics& metrics);
  // Stop(), then Join().
  ~Stage();

  Stage(const Stage&) = delete;
  Stage& operator=(const Stage&) = delete;

  // Starts the workers (and a keyed stage's router) as tasks on `rt`,
  // reading `input` and writing to a new output channel of `out_capacity`.
  // Requires: called once; `rt` and `input` outlive Join().
  void Start(Runtime& rt, Channel<Envelope>& input, std::size_t out_capacity);

  // The channel the workers write to; closed once all of them have ended.
  // Requires: Start() was called.
  Channel<Envelope>& output() { return *output_; }

  // Asks every worker to end after its current item (shutdown without
  // draining); Join() then waits for them.
  void Stop();
  // Waits until every worker and the router have ended. Requires: not
  // called from a thread of the Runtime. Idempotent.
  void Join();
  // The input channel is about to go: queue_depth() reads 0 from now on.
  // Requires: Join() has returned.
  void ForgetInput() { input_ = nullptr; }

  const config::StageConfig& config() const { return config_; }
  bool io_bound() const { return io_bound_; }
  // Items waiting in the input channel. Requires: the input is alive.
  std::size_t queue_depth() const;
  void SampleGauges();
  StageSnapshot Snapshot() const;

 private:
  // One worker: takes a batch from `queue`, processes it with its own
  // processor, sends what it became on; ends when `queue` is closed and
  // drained or on stop.
  Task<> Work(std::size_t worker, Channel<Envelope>& queue, std::stop_token st);
  // A keyed stage's router: input -> the worker queue of each item's key.
  Task<> Route(std::stop_token st);
  std::size_t Share(const Channel<Envelope>& queue) const;

  // One item, appending what it became to `out`: Process runs the
  // processor on this thread, ProcessAsync awaits its ProcessAsync.
  void Process(processors::Processor* processor, Envelope e,
               std::vector<Envelope>& out);
  Task<> ProcessAsync(processors::Processor* processor, Envelope e,
                      std::vector<Envelope>& out);
  // Passes control and terminal envelopes, and items of cancelled jobs, to
  // `out` and returns false; true for an item to process (counted "in").
  bool Admit(Envelope& e, std::vector<Envelope>& out);
  // Records the outcome of processing `e` (begun at `start`) and appends
  // the envelopes it became to `out`.
  void Conclude(Envelope& e, processors::Outcome outcome,
                std::chrono::steady_clock::time_point start,
                std::vector<Envelope>& out);

  const std::uint32_t index_;
  const config::StageConfig config_;
  const std::size_t workers_;
  std::size_t batch_ = 1;  // most items a worker takes at once
  bool io_bound_ = false;
  // One per worker; worker i alone uses processors_[i].
  std::vector<std::unique_ptr<processors::Processor>> processors_;
  // Keyed stages: the pointer whose value is hashed, and one queue per
  // worker (sent to by the router only, which closes them all).
  JsonPointer key_;
  std::vector<std::unique_ptr<Channel<Envelope>>> shards_;

  Channel<Envelope>* input_ = nullptr;
  std::unique_ptr<Channel<Envelope>> output_;
  std::atomic<std::size_t> live_workers_{0};

  prometheus::Counter& m_in_;
  prometheus::Counter& m_out_;
  prometheus::Counter& m_filtered_;
  prometheus::Counter& m_error_;
  prometheus::Counter& m_cancelled_;
  prometheus::Histogram& m_duration_;
  prometheus::Gauge& m_queue_depth_;
  prometheus::Gauge& m_busy_;
  // The p99 of Snapshot(), over a recent window of m_duration_; mutable as
  // reading it moves the window (it locks itself).
  mutable metrics::LatencyWindow latency_;

  // Last: stopped and joined before the rest is destroyed.
  std::unique_ptr<detail::TaskGroup> tasks_;
};

}  // namespace sluice::engine

#endif  // SLUICE_SERVICE_ENGINE_STAGE_HPP_
