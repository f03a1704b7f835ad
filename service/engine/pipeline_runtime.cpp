#include "service/engine/pipeline_runtime.hpp"

#include <algorithm>
#include <exception>
#include <utility>

#include "service/metrics/metrics.hpp"
#include "service/processors/aggregate.hpp"
#include "service/processors/processor.hpp"
#include "service/util/json_pointer.hpp"

namespace sluice::engine {
namespace {

using Kind = Envelope::Kind;

// Which processor the current worker thread has claimed, and from which
// stage (a thread only ever works for one stage, but checking the owner
// keeps a stale claim from ever being used).
thread_local const StageRuntime* tl_owner = nullptr;
thread_local processors::Processor* tl_processor = nullptr;

// The shard key of a keyed stage (`key: /user_id`): the hash of the value at
// the pointer, so equal values (as JSON) go to the same worker. An item
// without the field is keyed as null; envelopes that are not items (control
// and terminal ones passing through) all go to one worker, which is fine:
// the aggregator orders nothing by them.
struct EnvelopeKey {
  JsonPointer pointer;
  std::size_t operator()(const Envelope& e) const {
    if (e.kind != Kind::kValue) return 0;
    const nlohmann::json* v = FindPointer(e.value, pointer);
    return v == nullptr ? std::hash<nlohmann::json>{}(nlohmann::json())
                        : std::hash<nlohmann::json>{}(*v);
  }
};

// Processors promise not to throw; a broken one still only fails its item.
processors::Outcome CallProcessor(processors::Processor* processor,
                                  nlohmann::json value,
                                  const std::string& type) {
  if (processor == nullptr) {
    return processors::Outcome::Fail("processor type \"" + type +
                                     "\" is not available");
  }
  try {
    return processor->Process(std::move(value));
  } catch (const std::exception& ex) {
    return processors::Outcome::Fail(std::string("processor threw: ") +
                                     ex.what());
  } catch (...) {
    return processors::Outcome::Fail("processor threw");
  }
}

// EngineOptions::make_processor's default: processors::MakeProcessor for
// the stage of `pipeline`, its metrics in `metrics`. The config was
// validated, so only a build failure (Error "unavailable") returns null;
// each of that worker's items then fails (CallProcessor above).
ProcessorFactory DefaultProcessorFactory(std::string pipeline,
                                         metrics::Metrics* metrics) {
  return [pipeline = std::move(pipeline), metrics](const config::StageConfig& s)
             -> std::unique_ptr<processors::Processor> {
    auto made =
        processors::MakeProcessor(s.processor, {pipeline, s.name, metrics});
    if (!made.ok()) return nullptr;
    return std::move(made).value();
  };
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

}  // namespace

// ---- StageRuntime ----------------------------------------------------------

StageRuntime::StageRuntime(std::uint32_t index,
                           const config::PipelineConfig& pipeline,
                           const config::StageConfig& config,
                           const ProcessorFactory& factory,
                           metrics::Metrics& metrics)
    : index_(index),
      config_(config),
      factory_(factory),
      m_in_(metrics.Items(pipeline.name, config.name, "in")),
      m_out_(metrics.Items(pipeline.name, config.name, "out")),
      m_filtered_(metrics.Items(pipeline.name, config.name, "filtered")),
      m_error_(metrics.Items(pipeline.name, config.name, "error")),
      m_cancelled_(metrics.Items(pipeline.name, config.name, "cancelled")),
      m_duration_(metrics.StageDuration(pipeline.name, config.name)),
      m_queue_depth_(metrics.QueueDepth(pipeline.name, config.name)),
      m_busy_(metrics.WorkersBusy(pipeline.name, config.name)) {
  const std::size_t workers = std::max<std::size_t>(config_.workers, 1);
  processors_.reserve(workers);
  for (std::size_t i = 0; i < workers; ++i) {
    processors_.push_back(factory_(config_));
  }
  io_bound_ = processors_.front() && processors_.front()->io_bound();
}

processors::Processor* StageRuntime::ClaimProcessor() {
  if (tl_owner == this) return tl_processor;
  const std::size_t i = next_claim_.fetch_add(1, std::memory_order_relaxed);
  processors::Processor* p = nullptr;
  if (i < processors_.size()) {
    p = processors_[i].get();
  } else {
    MutexLock lock(&extra_mu_);
    extra_.push_back(factory_(config_));
    p = extra_.back().get();
  }
  tl_owner = this;
  tl_processor = p;
  return p;
}

void StageRuntime::Process(Envelope e, std::vector<Envelope>& out) {
  if (e.kind != Kind::kValue) {  // control, or ended at an earlier stage
    out.push_back(std::move(e));
    return;
  }
  if (e.context->job->cancel_requested()) {
    e.kind = Kind::kCancelled;
    e.value = nullptr;
    cancelled_.fetch_add(1, std::memory_order_relaxed);
    m_cancelled_.Increment();
    out.push_back(std::move(e));
    return;
  }

  in_.fetch_add(1, std::memory_order_relaxed);
  m_in_.Increment();
  processors::Processor* processor = ClaimProcessor();
  busy_.fetch_add(1, std::memory_order_relaxed);
  m_busy_.Increment();
  const auto start = std::chrono::steady_clock::now();
  processors::Outcome outcome =
      CallProcessor(processor, std::move(e.value), config_.processor.type);
  m_duration_.Observe(
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
          .count());
  m_busy_.Decrement();
  busy_.fetch_sub(1, std::memory_order_relaxed);

  e.value = nullptr;
  if (outcome.kind == processors::Outcome::kValues &&
      outcome.values.size() > 1 && e.weight / outcome.values.size() == 0) {
    outcome = processors::Outcome::Fail(
        "split into " + std::to_string(outcome.values.size()) +
        " parts: nested splits exceed the engine's limit");
  }
  switch (outcome.kind) {
    case processors::Outcome::kError:
      e.kind = Kind::kError;
      e.error = std::move(outcome.error);
      e.stage = index_;
      errors_.fetch_add(1, std::memory_order_relaxed);
      m_error_.Increment();
      out.push_back(std::move(e));
      return;
    case processors::Outcome::kFiltered:
      e.kind = Kind::kFiltered;
      filtered_.fetch_add(1, std::memory_order_relaxed);
      m_filtered_.Increment();
      out.push_back(std::move(e));
      return;
    case processors::Outcome::kValues:
      break;
  }
  const std::size_t n = outcome.values.size();
  if (n == 0) {  // split to nothing: the item ends filtered
    e.kind = Kind::kFiltered;
    filtered_.fetch_add(1, std::memory_order_relaxed);
    m_filtered_.Increment();
    out.push_back(std::move(e));
    return;
  }
  out_.fetch_add(n, std::memory_order_relaxed);
  m_out_.Increment(static_cast<double>(n));
  if (n == 1) {
    e.value = std::move(outcome.values.front());
    out.push_back(std::move(e));
    return;
  }
  PushParts(e, outcome.values, out);
}

void StageRuntime::SampleGauges() {
  m_queue_depth_.Set(static_cast<double>(queue_depth()));
}

nlohmann::json StageRuntime::Json() const {
  auto load = [](const std::atomic<std::uint64_t>& v) {
    return v.load(std::memory_order_relaxed);
  };
  nlohmann::json j = {{"name", config_.name},
                      {"type", config_.processor.type},
                      {"workers", config_.workers},
                      {"buffer", config_.buffer},
                      {"queue_depth", queue_depth()},
                      {"busy", std::max<std::int64_t>(
                                   busy_.load(std::memory_order_relaxed), 0)},
                      {"items",
                       {{"in", load(in_)},
                        {"out", load(out_)},
                        {"filtered", load(filtered_)},
                        {"errors", load(errors_)},
                        {"cancelled", load(cancelled_)}}}};
  if (config_.keyed) j["key"] = config_.key;
  return j;
}

// ---- PipelineRuntime -------------------------------------------------------

PipelineRuntime::PipelineRuntime(const config::PipelineConfig& config,
                                 metrics::Metrics& metrics,
                                 const EngineOptions& options,
                                 std::shared_ptr<Admission> admission,
                                 FinishedFn on_finished)
    : config_(config),
      metrics_(metrics),
      options_(options),
      admission_(std::move(admission)),
      on_finished_(std::move(on_finished)),
      intake_(std::make_shared<Intake>(options.ordered_window)),
      factory_(options.make_processor
                   ? options.make_processor
                   : DefaultProcessorFactory(config.name, &metrics)),
      m_rejections_(metrics.AdmissionRejections(config.name)),
      m_jobs_active_(metrics.JobsActive(config.name)),
      m_jobs_done_(metrics.Jobs(config.name, "done")),
      m_jobs_failed_(metrics.Jobs(config.name, "failed")),
      m_jobs_cancelled_(metrics.Jobs(config.name, "cancelled")) {
  metrics_.RegisterPipeline(config_);
  for (std::size_t i = 0; i < config_.stages.size(); ++i) {
    stages_.push_back(
        std::make_unique<StageRuntime>(static_cast<std::uint32_t>(i), config_,
                                       config_.stages[i], factory_, metrics_));
    stage_names_.push_back(config_.stages[i].name);
  }

  // Stage 0's input, of stage 0's buffer; the generator thread feeds it.
  const std::size_t first_buffer = config_.stages.empty()
                                       ? kAggregatorBuffer
                                       : config_.stages.front().buffer;
  source_ = std::make_unique<Channel<Envelope>>(first_buffer);
  auto pipeline = Pipeline<Envelope>::from(*source_);
  // Each stage: a fan-out of `workers` threads over its input channel; its
  // output channel is the next stage's input (of that stage's buffer).
  for (std::size_t i = 0; i < stages_.size(); ++i) {
    StageRuntime* stage = stages_[i].get();
    stage->set_input(&pipeline.output());
    StageOptions opts;
    opts.workers = std::max<std::size_t>(stage->config().workers, 1);
    opts.buffer = i + 1 < stages_.size() ? config_.stages[i + 1].buffer
                                         : kAggregatorBuffer;
    // Slow processors take one item at a time so all workers get some.
    opts.batch = stage->io_bound() ? 1 : 16;
    auto work = [stage](Envelope e) {
      std::vector<Envelope> out;
      stage->Process(std::move(e), out);
      return out;
    };
    if (stage->config().keyed) {
      // The config loader checked the pointer's syntax.
      auto pointer = ParseJsonPointer(stage->config().key);
      pipeline = std::move(pipeline).split(
          std::move(work), opts,
          shard_by(EnvelopeKey{pointer.ok() ? std::move(pointer).value()
                                            : JsonPointer()}));
    } else {
      pipeline = std::move(pipeline).split(std::move(work), opts);
    }
  }
  pipeline_ = std::make_unique<Pipeline<Envelope>>(std::move(pipeline));
  aggregator_ = std::jthread([this](std::stop_token st) { RunAggregator(st); });
  generator_ = std::jthread([this](std::stop_token st) { RunGenerator(st); });
}

PipelineRuntime::~PipelineRuntime() { Stop(); }

std::unique_ptr<processors::Aggregator> PipelineRuntime::NewAggregator() const {
  return options_.make_aggregator
             ? options_.make_aggregator(config_.aggregate)
             : processors::MakeAggregator(config_.aggregate);
}

std::shared_ptr<JobContext> PipelineRuntime::MakeContext(
    std::shared_ptr<jobs::Job> job, std::optional<bool> ordered) const {
  auto context = std::make_shared<JobContext>(
      std::move(job), ordered.value_or(config_.ordered), NewAggregator());
  // Set before the context is handed to the engine's threads.
  if (config_.aggregate.window.enabled()) {
    context->agg.window_aggregator = NewAggregator();
  }
  return context;
}

std::size_t PipelineRuntime::stream_queue_limit() const {
  if (config_.stages.empty()) return 1024;
  return std::clamp<std::size_t>(config_.stages.front().buffer, 64, 1024);
}

void PipelineRuntime::SampleGauges() {
  MutexLock lock(&channels_mu_);
  if (channels_gone_) return;
  for (auto& stage : stages_) stage->SampleGauges();
}

nlohmann::json PipelineRuntime::Json() const {
  nlohmann::json aggregate = {{"type", config_.aggregate.type}};
  if (!config_.aggregate.field.empty()) {
    aggregate["field"] = config_.aggregate.field;
  }
  if (!config_.aggregate.op.empty()) aggregate["op"] = config_.aggregate.op;
  if (!config_.aggregate.value.empty()) {
    aggregate["value"] = config_.aggregate.value;
  }
  nlohmann::json stages = nlohmann::json::array();
  {
    MutexLock lock(&channels_mu_);
    for (const auto& stage : stages_) stages.push_back(stage->Json());
  }
  return {{"name", config_.name},
          {"ordered", config_.ordered},
          {"jobs_active",
           static_cast<std::int64_t>(std::max(m_jobs_active_.Value(), 0.0))},
          {"stages", std::move(stages)},
          {"aggregate", std::move(aggregate)}};
}

void PipelineRuntime::Stop() {
  MutexLock lock(&stop_mu_);
  if (!pipeline_) return;
  // The generator ends once every registered input has ended, closing stage
  // 0's channel; each stage's workers drain their input and the last one
  // closes the stage's output; the aggregator drains the last channel and
  // returns. So the threads end in pipeline order: the generator is joined
  // first, then the aggregator (by then every stage thread has ended too),
  // and destroying the Pipeline joins the stage threads.
  intake_->Close();
  if (generator_.joinable()) generator_.join();
  if (aggregator_.joinable()) aggregator_.join();
  MutexLock channels_lock(&channels_mu_);
  for (auto& stage : stages_) stage->set_input(nullptr);
  channels_gone_ = true;
  pipeline_.reset();
}

// ---- the generator ---------------------------------------------------------

void PipelineRuntime::RunGenerator(std::stop_token st) {
  constexpr std::size_t kMaxBatch = 64;
  std::vector<Envelope> batch;
  batch.reserve(kMaxBatch);
  for (;;) {
    // Never take more than fits now, so items wait in the Intake (where a
    // cancel drops them at once) rather than in this thread.
    const std::size_t size = source_->size();
    const std::size_t room =
        source_->capacity() > size ? source_->capacity() - size : 0;
    if (!intake_->Next(batch, std::clamp<std::size_t>(room, 1, kMaxBatch),
                       st)) {
      break;
    }
    // Blocks only while stage 0 is full (back-pressure); fails only on stop.
    if (source_->send_many(batch, st) != batch.size()) break;
    batch.clear();
  }
  source_->close();
}

// ---- the aggregator --------------------------------------------------------

void PipelineRuntime::RunAggregator(std::stop_token st) {
  Channel<Envelope>& in = pipeline_->output();
  std::vector<Envelope> batch;
  batch.reserve(256);
  std::vector<std::shared_ptr<JobContext>> touched;
  const auto interval = std::max<std::chrono::milliseconds>(
      options_.sample_interval, std::chrono::milliseconds(1));
  auto next_sample = std::chrono::steady_clock::now() + interval;
  std::optional<std::chrono::steady_clock::time_point> next_window;
  for (;;) {
    const auto now = std::chrono::steady_clock::now();
    const auto until =
        next_window ? std::min(*next_window, next_sample) : next_sample;
    const auto wait =
        until > now ? until - now : std::chrono::steady_clock::duration{};
    if (std::optional<Envelope> first = in.recv_for(wait, st)) {
      batch.push_back(std::move(*first));
      in.try_recv_many(batch, 255);
    } else if (st.stop_requested()) {
      break;
    } else if (in.closed()) {
      // Closed: nothing more can arrive, but a value buffered just before
      // the close may still be waiting.
      std::optional<Envelope> last = in.try_recv();
      if (!last) break;
      batch.push_back(std::move(*last));
    }
    for (Envelope& e : batch) Route(e, touched);
    batch.clear();
    if (!timed_windows_.empty()) {
      next_window = TickWindows(std::chrono::steady_clock::now(), touched);
    }
    Flush(touched);
    if (std::chrono::steady_clock::now() >= next_sample) {
      SampleGauges();
      next_sample = std::chrono::steady_clock::now() + interval;
    }
  }
  timed_windows_.clear();
  SampleGauges();
}

void PipelineRuntime::CloseWindow(AggregatorState& a,
                                  std::uint64_t next_number) {
  if (a.window_values > 0) {
    a.records.push_back(jobs::ResultRecord::Window(
        a.window_number, a.window_aggregator->Result()));
    a.window_aggregator = NewAggregator();
    a.window_values = 0;
  }
  a.window_number = next_number;
}

std::optional<std::chrono::steady_clock::time_point>
PipelineRuntime::TickWindows(
    std::chrono::steady_clock::time_point now,
    std::vector<std::shared_ptr<JobContext>>& touched) {
  const auto every = config_.aggregate.window.every;
  std::optional<std::chrono::steady_clock::time_point> next;
  std::erase_if(timed_windows_, [&](const std::shared_ptr<JobContext>& c) {
    AggregatorState& a = c->agg;
    if (a.finished || !a.window_aggregator) return true;
    auto end = *a.window_start +
               every * static_cast<std::int64_t>(a.window_number + 1);
    if (now >= end) {
      // Windows are numbered by time since the first: a quiet spell skips
      // numbers rather than emitting empty windows.
      const auto elapsed =
          std::chrono::duration_cast<std::chrono::milliseconds>(
              now - *a.window_start);
      const auto number = static_cast<std::uint64_t>(elapsed / every);
      CloseWindow(a, number);
      if (!a.touched) {
        a.touched = true;
        touched.push_back(c);
      }
      end = *a.window_start + every * static_cast<std::int64_t>(number + 1);
    }
    next = next ? std::min(*next, end) : end;
    return false;
  });
  return next;
}

void PipelineRuntime::Route(Envelope& e,
                            std::vector<std::shared_ptr<JobContext>>& touched) {
  JobContext& c = *e.context;
  AggregatorState& a = c.agg;
  if (!a.touched) {
    a.touched = true;
    touched.push_back(e.context);  // keeps the context alive until Flush
  }
  if (a.window_aggregator && !a.window_start &&
      config_.aggregate.window.every.count() > 0) {
    a.window_start = std::chrono::steady_clock::now();
    timed_windows_.push_back(e.context);
  }
  switch (e.kind) {
    case Kind::kEnd:
      a.end_seen = true;
      a.total = e.seq;
      return;
    case Kind::kCancelRange:
      // Never fed, so complete at once; for ordered jobs these are the
      // highest seqs, released after everything before them.
      a.cancelled += e.weight;
      a.completed += e.weight;
      completed_in_batch_ += e.weight;
      if (c.ordered) a.cancelled_from = e.seq;
      return;
    default:
      break;
  }

  if (!c.ordered) {
    const std::uint64_t seq = e.seq;
    bool complete = e.weight == Envelope::kRootWeight;
    if (!complete) {
      auto it = a.partial.try_emplace(seq, 0).first;
      it->second += e.weight;
      if (it->second == Envelope::kRootWeight) {
        a.partial.erase(it);
        complete = true;
      }
    }
    Emit(c, e);
    if (complete) {
      ++a.completed;
      ++completed_in_batch_;
    }
    return;
  }

  AggregatorState::Held& held = a.held[e.seq];
  held.weight += e.weight;
  e.context.reset();  // a held piece must not keep its own job alive
  held.pieces.push_back(std::move(e));
  ReleaseOrdered(c);
}

void PipelineRuntime::Emit(JobContext& c, Envelope& e) {
  AggregatorState& a = c.agg;
  switch (e.kind) {
    case Kind::kValue:
      if (a.aggregator) a.aggregator->Add(e.value);
      if (a.window_aggregator) {
        a.window_aggregator->Add(e.value);
        ++a.window_values;
      }
      a.records.push_back(
          jobs::ResultRecord{e.seq, false, std::move(e.value), {}, {}, {}});
      // After its last value, so a stream shows the window once it is whole.
      if (a.window_aggregator && config_.aggregate.window.items != 0 &&
          a.window_values >= config_.aggregate.window.items) {
        CloseWindow(a, a.window_number + 1);
      }
      return;
    case Kind::kError:
      a.records.push_back(jobs::ResultRecord{
          e.seq,
          true,
          nullptr,
          std::move(e.error),
          e.stage < stage_names_.size() ? stage_names_[e.stage] : "",
          {}});
      return;
    case Kind::kFiltered:
      ++a.filtered;
      return;
    case Kind::kCancelled:
      ++a.cancelled;
      return;
    default:
      return;
  }
}

void PipelineRuntime::ReleaseOrdered(JobContext& c) {
  AggregatorState& a = c.agg;
  for (;;) {
    if (a.cancelled_from && a.next_release >= *a.cancelled_from) return;
    auto it = a.held.begin();
    if (it == a.held.end() || it->first != a.next_release ||
        it->second.weight != Envelope::kRootWeight) {
      return;
    }
    std::vector<Envelope>& pieces = it->second.pieces;
    if (pieces.size() > 1) {
      std::sort(
          pieces.begin(), pieces.end(),
          [](const Envelope& x, const Envelope& y) { return x.path < y.path; });
    }
    for (Envelope& piece : pieces) Emit(c, piece);
    a.held.erase(it);
    ++a.next_release;
    ++a.completed;
    ++completed_in_batch_;
  }
}

bool PipelineRuntime::AppendWhenRoom(jobs::Job& job,
                                     std::vector<jobs::ResultRecord>& records,
                                     std::uint64_t filtered,
                                     std::uint64_t cancelled) {
  for (;;) {
    // A cancelled job does not wait (a DELETE, or the shutdown's cancel
    // after its grace, must not hang behind the results memory): what does
    // not fit now fails it, and its records count as cancelled.
    if (job.cancel_requested()) {
      return job.Append(records, filtered, cancelled);
    }
    std::optional<jobs::Job::Clock::time_point> retry_at;
    const bool failed_now = job.Append(records, filtered, cancelled, &retry_at);
    if (!retry_at) return failed_now;
    // The results memory is full of jobs that finished less than
    // jobs.min_retention ago: hold this pipeline's results (its queues fill
    // and admission pushes back) until the oldest may be evicted. Re-checked
    // every 100 ms in case room comes sooner (a job deleted, a reader
    // letting go), and never sooner than 1 ms (room others keep taking).
    const auto now = jobs::Job::Clock::now();
    std::this_thread::sleep_until(
        std::clamp(*retry_at, now + std::chrono::milliseconds(1),
                   now + std::chrono::milliseconds(100)));
  }
}

void PipelineRuntime::Flush(std::vector<std::shared_ptr<JobContext>>& touched) {
  for (const std::shared_ptr<JobContext>& context : touched) {
    JobContext& c = *context;
    AggregatorState& a = c.agg;
    a.touched = false;
    if (!a.records.empty() || a.filtered > 0 || a.cancelled > 0) {
      // Past its result limits the job fails: what is still queued for it
      // ends cancelled at once (in-flight items see cancel_requested()).
      if (AppendWhenRoom(*c.job, a.records, a.filtered, a.cancelled)) {
        intake_->Cancel(*c.job);
      }
      a.records = {};
      a.filtered = 0;
      a.cancelled = 0;
    }
    if (c.ordered) {
      // Publish before looking at `parked` (the generator does the mirror
      // image), so a parked job is always seen and fed again.
      c.released.store(a.next_release, std::memory_order_seq_cst);
      if (c.parked.load(std::memory_order_seq_cst) &&
          c.fed.load(std::memory_order_seq_cst) - a.next_release <=
              options_.ordered_window / 2) {
        intake_->Unpark(c);
      }
    }
  }
  // Give the room back before finishing jobs, so whoever sees a job finished
  // also sees its items no longer pending.
  const std::uint64_t done = completed_in_batch_;
  completed_in_batch_ = 0;
  admission_->Release(done);
  for (const std::shared_ptr<JobContext>& context : touched) {
    AggregatorState& a = context->agg;
    if (!a.finished && a.end_seen && a.completed == a.total) {
      FinishJob(*context);
    }
  }
  touched.clear();
}

void PipelineRuntime::FinishJob(JobContext& c) {
  AggregatorState& a = c.agg;
  a.finished = true;
  if (a.window_aggregator) {
    // The last, partial window goes out before the job's `done`.
    CloseWindow(a, a.window_number + 1);
    if (!a.records.empty()) {
      AppendWhenRoom(*c.job, a.records, 0, 0);  // nothing left to cancel
      a.records = {};
    }
    a.window_aggregator.reset();
  }
  nlohmann::json aggregate =
      a.aggregator ? a.aggregator->Result() : nlohmann::json(nullptr);
  a.aggregator.reset();
  a.partial.clear();
  a.held.clear();
  const std::optional<jobs::JobState> state =
      c.job->Finish(std::move(aggregate));
  if (!state) return;
  switch (*state) {
    case jobs::JobState::kDone:
      m_jobs_done_.Increment();
      break;
    case jobs::JobState::kFailed:
      m_jobs_failed_.Increment();
      break;
    default:
      m_jobs_cancelled_.Increment();
      break;
  }
  m_jobs_active_.Decrement();
  if (on_finished_) on_finished_(c.job);
}

}  // namespace sluice::engine
