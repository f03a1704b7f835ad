#include "service/engine/stage.hpp"

#include <algorithm>
#include <exception>
#include <string>
#include <utility>

#include "service/engine/channel_ops.hpp"
#include "service/metrics/metrics.hpp"
#include "service/processors/processor.hpp"

namespace sluice::engine {
namespace {

using Kind = Envelope::Kind;
using Clock = std::chrono::steady_clock;

// Most items a CPU-bound worker takes at once when several are ready: one
// hand-off per batch instead of per item.
constexpr std::size_t kCpuBatch = 16;
// Most items the router of a keyed stage takes at once.
constexpr std::size_t kRouterBatch = 64;

processors::Outcome NotAvailable(const std::string& type) {
  return processors::Outcome::Fail("processor type \"" + type +
                                   "\" is not available");
}

// Processors promise not to throw; a broken one still only fails its item.
processors::Outcome Call(processors::Processor* processor, nlohmann::json value,
                         const std::string& type) {
  if (processor == nullptr) return NotAvailable(type);
  try {
    return processor->Process(std::move(value));
  } catch (const std::exception& ex) {
    return processors::Outcome::Fail(std::string("processor threw: ") +
                                     ex.what());
  } catch (...) {
    return processors::Outcome::Fail("processor threw");
  }
}

Task<processors::Outcome> CallAsync(processors::Processor* processor,
                                    nlohmann::json value,
                                    const std::string& type) {
  if (processor == nullptr) co_return NotAvailable(type);
  std::string thrown;
  try {
    co_return co_await processor->ProcessAsync(std::move(value));
  } catch (const std::exception& ex) {
    thrown = std::string("processor threw: ") + ex.what();
  } catch (...) {
    thrown = "processor threw";
  }
  co_return processors::Outcome::Fail(std::move(thrown));
}

// A split: each part carries a share of the weight (so the job still knows
// when all of it is done) and its index in path (so the results keep the
// input's order).
void PushParts(const Envelope& e, std::vector<nlohmann::json>& values,
               std::vector<Envelope>& out) {
  const std::size_t n = values.size();
  const std::uint64_t share = e.weight / n;
  for (std::size_t i = 0; i < n; ++i) {
    Envelope part;
    part.context = e.context;
    part.seq = e.seq;
    part.weight = i + 1 < n ? share : e.weight - share * (n - 1);
    part.kind = Kind::kValue;
    part.value = std::move(values[i]);
    part.path.reserve(e.path.size() + 1);
    part.path = e.path;
    part.path.push_back(static_cast<std::uint32_t>(i));
    out.push_back(std::move(part));
  }
}

// The shard of a keyed stage's envelope: the hash of the value at the
// pointer, so equal values (as JSON) go to the same worker. An item without
// the field is keyed as null; envelopes that are not items (control and
// terminal ones passing through) all go to worker 0, which is fine: the
// aggregator orders nothing by them.
std::size_t ShardOf(const Envelope& e, const JsonPointer& key,
                    std::size_t shards) {
  if (e.kind != Kind::kValue) return 0;
  const nlohmann::json* v = FindPointer(e.value, key);
  const std::size_t h = v == nullptr
                            ? std::hash<nlohmann::json>{}(nlohmann::json())
                            : std::hash<nlohmann::json>{}(*v);
  return h % shards;
}

}  // namespace

Stage::Stage(std::uint32_t index, const config::PipelineConfig& pipeline,
             const config::StageConfig& config, const ProcessorFactory& factory,
             metrics::Metrics& metrics)
    : index_(index),
      config_(config),
      workers_(std::max<std::size_t>(config.workers, 1)),
      m_in_(metrics.Items(pipeline.name, config.name, "in")),
      m_out_(metrics.Items(pipeline.name, config.name, "out")),
      m_filtered_(metrics.Items(pipeline.name, config.name, "filtered")),
      m_error_(metrics.Items(pipeline.name, config.name, "error")),
      m_cancelled_(metrics.Items(pipeline.name, config.name, "cancelled")),
      m_duration_(metrics.StageDuration(pipeline.name, config.name)),
      m_queue_depth_(metrics.QueueDepth(pipeline.name, config.name)),
      m_busy_(metrics.WorkersBusy(pipeline.name, config.name)),
      latency_(m_duration_) {
  processors_.reserve(workers_);
  for (std::size_t i = 0; i < workers_; ++i) {
    processors_.push_back(factory(config_));
  }
  // From the first processor built: a worker whose processor could not be
  // built fails its items, and must not make the others run blocking.
  for (const auto& p : processors_) {
    if (p) {
      io_bound_ = p->io_bound();
      break;
    }
  }
  // Slow processors take one item at a time so all workers get some.
  batch_ = io_bound_ ? 1 : kCpuBatch;
  if (config_.keyed) {
    // The config loader checked the pointer's syntax.
    auto pointer = ParseJsonPointer(config_.key);
    if (pointer.ok()) key_ = std::move(pointer).value();
  }
}

Stage::~Stage() {
  Stop();
  Join();
}

void Stage::Start(Runtime& rt, Channel<Envelope>& input,
                  std::size_t out_capacity) {
  input_ = &input;
  output_ = std::make_unique<Channel<Envelope>>(out_capacity);
  tasks_ = std::make_unique<detail::TaskGroup>(rt);
  live_workers_.store(workers_, std::memory_order_relaxed);
  if (config_.keyed) {
    // Each worker's queue holds a batch or two: enough to keep it busy,
    // small enough that a hot key holds the router back early.
    const std::size_t capacity = std::max<std::size_t>(2 * batch_, 16);
    for (std::size_t i = 0; i < workers_; ++i) {
      shards_.push_back(std::make_unique<Channel<Envelope>>(capacity));
    }
  }
  for (std::size_t i = 0; i < workers_; ++i) {
    Channel<Envelope>* queue = config_.keyed ? shards_[i].get() : input_;
    tasks_->spawn(
        [this, i, queue](std::stop_token st) { return Work(i, *queue, st); });
  }
  if (config_.keyed) {
    tasks_->spawn([this](std::stop_token st) { return Route(st); });
  }
}

void Stage::Stop() {
  if (tasks_) tasks_->request_stop();
}

void Stage::Join() {
  if (tasks_) tasks_->join();
}

std::size_t Stage::Share(const Channel<Envelope>& queue) const {
  // A worker takes at most its fair share of what is queued, so slow
  // stages still spread items over all workers. A shard has one reader.
  const std::size_t readers = config_.keyed ? 1 : workers_;
  return std::clamp<std::size_t>(queue.size() / readers, 1, batch_);
}

Task<> Stage::Work(std::size_t worker, Channel<Envelope>& queue,
                   std::stop_token st) {
  processors::Processor* processor = processors_[worker].get();
  std::vector<Envelope> batch;
  std::vector<Envelope> out;
  for (;;) {
    std::optional<Envelope> first = co_await RecvFirst(queue, st);
    if (!first) break;
    batch.push_back(std::move(*first));
    const std::size_t share = Share(queue);
    if (share > 1) queue.try_recv_many(batch, share - 1);
    for (Envelope& e : batch) {
      if (io_bound_) {
        co_await ProcessAsync(processor, std::move(e), out);
      } else {
        Process(processor, std::move(e), out);
      }
    }
    batch.clear();
    if (!co_await SendAll(*output_, out, st)) break;
    // Tasks are not preempted: a CPU-bound worker whose input is never
    // empty lets the others on its thread run between batches.
    if (!io_bound_) co_await sluice::yield();
  }
  if (live_workers_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
    output_->close();
  }
}

Task<> Stage::Route(std::stop_token st) {
  std::vector<Envelope> batch;
  std::vector<std::vector<Envelope>> routed(shards_.size());
  bool stopped = false;
  while (!stopped) {
    std::optional<Envelope> first = co_await RecvFirst(*input_, st);
    if (!first) break;
    batch.push_back(std::move(*first));
    input_->try_recv_many(batch, kRouterBatch - 1);
    for (Envelope& e : batch) {
      routed[ShardOf(e, key_, shards_.size())].push_back(std::move(e));
    }
    batch.clear();
    for (std::size_t i = 0; i < shards_.size() && !stopped; ++i) {
      if (routed[i].empty()) continue;
      stopped = !co_await SendAll(*shards_[i], routed[i], st);
    }
  }
  for (auto& shard : shards_) shard->close();
}

bool Stage::Admit(Envelope& e, std::vector<Envelope>& out) {
  if (e.kind != Kind::kValue) {  // control, or ended at an earlier stage
    out.push_back(std::move(e));
    return false;
  }
  if (e.context->job->cancel_requested()) {
    e.kind = Kind::kCancelled;
    e.value = nullptr;
    m_cancelled_.Increment();
    out.push_back(std::move(e));
    return false;
  }
  m_in_.Increment();
  m_busy_.Increment();
  return true;
}

void Stage::Process(processors::Processor* processor, Envelope e,
                    std::vector<Envelope>& out) {
  if (!Admit(e, out)) return;
  const auto start = Clock::now();
  processors::Outcome outcome =
      Call(processor, std::move(e.value), config_.processor.type);
  Conclude(e, std::move(outcome), start, out);
}

Task<> Stage::ProcessAsync(processors::Processor* processor, Envelope e,
                           std::vector<Envelope>& out) {
  if (!Admit(e, out)) co_return;
  const auto start = Clock::now();
  processors::Outcome outcome =
      co_await CallAsync(processor, std::move(e.value), config_.processor.type);
  Conclude(e, std::move(outcome), start, out);
}

void Stage::Conclude(Envelope& e, processors::Outcome outcome,
                     Clock::time_point start, std::vector<Envelope>& out) {
  m_duration_.Observe(
      std::chrono::duration<double>(Clock::now() - start).count());
  m_busy_.Decrement();

  e.value = nullptr;
  if (outcome.kind == processors::Outcome::kValues &&
      outcome.values.size() > 1 && e.weight / outcome.values.size() == 0) {
    outcome = processors::Outcome::Fail(
        "split into " + std::to_string(outcome.values.size()) +
        " parts: nested splits exceed the engine's limit");
  }
  // A split to nothing ends the item filtered.
  if (outcome.kind == processors::Outcome::kFiltered ||
      (outcome.kind == processors::Outcome::kValues &&
       outcome.values.empty())) {
    e.kind = Kind::kFiltered;
    m_filtered_.Increment();
    out.push_back(std::move(e));
    return;
  }
  if (outcome.kind == processors::Outcome::kError) {
    e.kind = Kind::kError;
    e.error = std::move(outcome.error);
    e.stage = index_;
    m_error_.Increment();
    out.push_back(std::move(e));
    return;
  }
  const std::size_t n = outcome.values.size();
  m_out_.Increment(static_cast<double>(n));
  if (n == 1) {
    e.value = std::move(outcome.values.front());
    out.push_back(std::move(e));
    return;
  }
  PushParts(e, outcome.values, out);
}

std::size_t Stage::queue_depth() const {
  return input_ != nullptr ? input_->size() : 0;
}

void Stage::SampleGauges() {
  m_queue_depth_.Set(static_cast<double>(queue_depth()));
}

StageSnapshot Stage::Snapshot() const {
  // From the metrics, which a pipeline's runtimes share by name: so the
  // counts run on across a reload (and include the jobs still finishing on
  // a replaced runtime), as /metrics does. Exact: integers below 2^53.
  auto count = [](const prometheus::Counter& c) {
    return static_cast<std::uint64_t>(c.Value());
  };
  StageSnapshot s;
  s.config = config_;
  s.queue_depth = queue_depth();
  s.busy =
      std::max<std::int64_t>(static_cast<std::int64_t>(m_busy_.Value()), 0);
  s.in = count(m_in_);
  s.out = count(m_out_);
  s.filtered = count(m_filtered_);
  s.errors = count(m_error_);
  s.cancelled = count(m_cancelled_);
  s.p99_seconds = latency_.Quantile(0.99);
  return s;
}

}  // namespace sluice::engine
