#include "service/engine/engine.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <utility>

#include "service/engine/intake.hpp"
#include "service/engine/pipeline_runtime.hpp"
#include "service/metrics/metrics.hpp"
#include "sluice/patterns/runtime.hpp"

namespace sluice::engine {
namespace {

Refusal DrainingRefusal() {
  return {Refusal::Reason::kDraining,
          "the service is shutting down and admits no new jobs"};
}

Refusal UnknownPipelineRefusal(std::string_view name) {
  return {Refusal::Reason::kUnknownPipeline,
          "unknown pipeline \"" + std::string(name) + "\""};
}

// Nanoseconds on the steady clock; never 0 in practice (0 means "never").
std::int64_t SteadyNowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

}  // namespace

// ---- StreamFeed ------------------------------------------------------------

StreamFeed::StreamFeed(std::shared_ptr<Intake> intake,
                       std::shared_ptr<Admission> admission,
                       std::shared_ptr<JobContext> context,
                       std::size_t queue_limit)
    : intake_(std::move(intake)),
      admission_(std::move(admission)),
      context_(std::move(context)),
      queue_limit_(std::max<std::size_t>(queue_limit, 1)) {}

StreamFeed::~StreamFeed() { End(); }

std::shared_ptr<jobs::Job> StreamFeed::job() const { return context_->job; }

bool StreamFeed::TryPush(std::vector<nlohmann::json>& items,
                         std::function<void()> on_room) {
  return intake_->Push(*context_, items, queue_limit_, *admission_, on_room) ==
         Intake::PushResult::kAccepted;
}

void StreamFeed::End() { intake_->CloseInput(*context_); }

bool StreamFeed::closed() const { return intake_->InputClosed(*context_); }

// ---- Engine ----------------------------------------------------------------

Engine::Engine(const config::Config& config, metrics::Metrics& metrics,
               EngineOptions options)
    : config_(config),
      metrics_(metrics),
      options_(std::move(options)),
      store_(jobs::JobStore::Limits{
          config.jobs.retention, config.jobs.max_retained_bytes,
          config.jobs.max_job_result_bytes, config.jobs.min_retention}),
      admission_(std::make_shared<Admission>(config.jobs.max_pending_items)),
      io_(std::make_unique<processors::IoLoop>()),
      runtime_(std::make_unique<Runtime>(options_.runtime_threads)),
      rate_at_(std::chrono::steady_clock::now()) {
  for (const config::PipelineConfig& pipeline : config_.pipelines) {
    runtimes_.emplace(
        pipeline.name,
        std::make_unique<PipelineRuntime>(
            pipeline, *runtime_, io_.get(), metrics_, options_, admission_,
            [this](const std::shared_ptr<jobs::Job>& job) {
              OnJobFinished(job);
            }));
  }
}

Engine::~Engine() { Shutdown(std::chrono::milliseconds(0)); }

PipelineRuntime* Engine::RuntimeFor(std::string_view pipeline) const {
  auto it = runtimes_.find(pipeline);
  return it == runtimes_.end() ? nullptr : it->second.get();
}

bool Engine::HasPipeline(std::string_view name) const {
  return RuntimeFor(name) != nullptr;
}

Result<std::shared_ptr<jobs::Job>, Refusal> Engine::NewJob(
    PipelineRuntime& runtime, std::uint64_t accepted) {
  {
    // Counted under the same lock Shutdown sets draining_ under, so a job
    // admitted here is one Shutdown waits for.
    MutexLock lock(&idle_mu_);
    if (draining_.load(std::memory_order_relaxed)) return DrainingRefusal();
    ++active_jobs_;
  }
  std::shared_ptr<jobs::Job> job;
  do {  // a 64-bit id collides about never; retry rather than assume
    job = std::make_shared<jobs::Job>(jobs::NewJobId(), runtime.config().name,
                                      accepted, jobs::Job::Clock::now(),
                                      store_.job_limits());
  } while (!store_.Add(job));
  runtime.jobs_active().Increment();
  return job;
}

Result<std::shared_ptr<jobs::Job>, Refusal> Engine::Submit(
    SubmitRequest request) {
  PipelineRuntime* runtime = RuntimeFor(request.pipeline);
  if (runtime == nullptr) return UnknownPipelineRefusal(request.pipeline);
  if (draining()) return DrainingRefusal();
  const std::uint64_t n = request.items.size();
  if (n > admission_->max_pending()) {
    // It could never fit, however long the client waits; and it says
    // nothing about load (no 429, not counted as a rejection).
    return Refusal{Refusal::Reason::kJobTooLarge,
                   "the job has " + std::to_string(n) +
                       " items, more than jobs.max_pending_items (" +
                       std::to_string(admission_->max_pending()) +
                       ") allows at once; split it into smaller jobs"};
  }
  if (!admission_->TryAcquire(n)) {
    runtime->admission_rejections().Increment();
    last_refusal_ns_.store(SteadyNowNs(), std::memory_order_relaxed);
    return Refusal{Refusal::Reason::kOverCapacity,
                   "over capacity: " + std::to_string(admission_->pending()) +
                       " items pending, " + std::to_string(n) +
                       " more would exceed jobs.max_pending_items (" +
                       std::to_string(admission_->max_pending()) +
                       "); retry after " +
                       std::to_string(retry_after_seconds()) + " s"};
  }
  Result<std::shared_ptr<jobs::Job>, Refusal> job = NewJob(*runtime, n);
  if (!job.ok()) {
    admission_->Release(n, /*completed=*/false);
    return job;
  }
  std::shared_ptr<JobContext> context =
      runtime->MakeContext(job.value(), request.ordered);
  if (!runtime->intake()->Add(context, std::move(request.items),
                              /*open=*/false)) {
    // Unreachable while Shutdown waits for active jobs before closing the
    // intake; kept so a broken invariant fails one job, not the process.
    admission_->Release(n, /*completed=*/false);
    job.value()->RequestCancel();
    job.value()->Append({}, 0, n);
    job.value()->Finish(nullptr);
    runtime->jobs_active().Decrement();
    OnJobFinished(job.value());
    return DrainingRefusal();
  }
  return job;
}

Result<std::shared_ptr<StreamFeed>, Refusal> Engine::OpenStream(
    std::string_view pipeline) {
  PipelineRuntime* runtime = RuntimeFor(pipeline);
  if (runtime == nullptr) return UnknownPipelineRefusal(pipeline);
  if (draining()) return DrainingRefusal();
  Result<std::shared_ptr<jobs::Job>, Refusal> job = NewJob(*runtime, 0);
  if (!job.ok()) return job.error();
  std::shared_ptr<JobContext> context =
      runtime->MakeContext(job.value(), std::nullopt);
  if (!runtime->intake()->Add(context, {}, /*open=*/true)) {
    job.value()->RequestCancel();
    job.value()->Finish(nullptr);
    runtime->jobs_active().Decrement();
    OnJobFinished(job.value());
    return DrainingRefusal();
  }
  return std::make_shared<StreamFeed>(runtime->intake(), admission_,
                                      std::move(context),
                                      runtime->stream_queue_limit());
}

std::shared_ptr<jobs::Job> Engine::Find(std::string_view id) const {
  return store_.Find(id);
}

std::vector<std::shared_ptr<jobs::Job>> Engine::List(std::size_t limit) const {
  return store_.List(limit);
}

bool Engine::Cancel(std::string_view id) {
  std::shared_ptr<jobs::Job> job = store_.Find(id);
  if (!job) return false;
  if (job->RequestCancel()) {
    if (PipelineRuntime* runtime = RuntimeFor(job->pipeline())) {
      runtime->intake()->Cancel(*job);
    }
  }
  return true;
}

std::vector<PipelineSnapshot> Engine::Pipelines() const {
  std::vector<PipelineSnapshot> pipelines;
  for (const config::PipelineConfig& pipeline : config_.pipelines) {
    if (PipelineRuntime* runtime = RuntimeFor(pipeline.name)) {
      pipelines.push_back(runtime->Snapshot());
    }
  }
  return pipelines;
}

void Engine::BeginDrain() {
  // Under idle_mu_, as NewJob reads it: a job is either admitted before the
  // drain (and counted, so Shutdown waits for it) or refused.
  MutexLock idle_lock(&idle_mu_);
  draining_.store(true, std::memory_order_release);
}

bool Engine::draining() const {
  return draining_.load(std::memory_order_acquire);
}

bool Engine::overloaded() const {
  const std::uint64_t pending = admission_->pending();
  if (pending >= admission_->max_pending()) return true;
  // Jobs rarely fill the limit exactly: with 50-item jobs pending stays just
  // under it while every new job is refused. So a refusal in the last second
  // counts too, while anything is still pending (with nothing pending the
  // next job that fits is admitted).
  const std::int64_t refused = last_refusal_ns_.load(std::memory_order_relaxed);
  return pending > 0 && refused != 0 &&
         SteadyNowNs() - refused < std::int64_t{1'000'000'000};
}

std::uint64_t Engine::pending_items() const { return admission_->pending(); }

int Engine::retry_after_seconds() const {
  MutexLock lock(&rate_mu_);
  const auto now = std::chrono::steady_clock::now();
  const std::uint64_t completed = admission_->completed_total();
  const double elapsed = std::chrono::duration<double>(now - rate_at_).count();
  if (elapsed >= 1.0) {
    const double rate =
        static_cast<double>(completed - rate_completed_) / elapsed;
    rate_per_second_ =
        rate_per_second_ == 0 ? rate : 0.5 * rate + 0.5 * rate_per_second_;
    rate_at_ = now;
    rate_completed_ = completed;
  }
  if (rate_per_second_ <= 0) return 5;
  // Long enough for a tenth of the limit to drain at the recent rate.
  const double want = static_cast<double>(
      std::min(admission_->pending(), admission_->max_pending() / 10 + 1));
  const double seconds = std::ceil(want / rate_per_second_);
  return static_cast<int>(std::clamp(seconds, 1.0, 60.0));
}

void Engine::SampleGauges() {
  for (auto& [name, runtime] : runtimes_) runtime->SampleGauges();
}

void Engine::OnJobFinished(const std::shared_ptr<jobs::Job>& job) {
  store_.OnFinished(job);
  {
    MutexLock lock(&idle_mu_);
    --active_jobs_;
  }
  idle_cv_.SignalAll();
}

bool Engine::WaitIdle(
    std::optional<std::chrono::steady_clock::time_point> deadline) {
  MutexLock lock(&idle_mu_);
  while (active_jobs_ != 0) {
    if (!deadline) {
      idle_cv_.Wait(&idle_mu_);
    } else if (idle_cv_.WaitUntil(&idle_mu_, *deadline) ==
               std::cv_status::timeout) {
      return active_jobs_ == 0;
    }
  }
  return true;
}

void Engine::Shutdown(std::chrono::milliseconds grace) {
  MutexLock lock(&shutdown_mu_);
  if (shut_down_) return;
  BeginDrain();
  const auto deadline = std::chrono::steady_clock::now() + grace;
  if (!WaitIdle(deadline)) {
    // Out of grace: cancel what is left. Repeat, in case a job admitted just
    // before draining began reached the store only after a round.
    for (;;) {
      for (const std::shared_ptr<jobs::Job>& job : store_.Unfinished()) {
        if (job->RequestCancel()) {
          if (PipelineRuntime* runtime = RuntimeFor(job->pipeline())) {
            runtime->intake()->Cancel(*job);
          }
        }
      }
      if (WaitIdle(std::chrono::steady_clock::now() +
                   std::chrono::milliseconds(100))) {
        break;
      }
    }
  }
  // Every job has finished: stop the pipelines (each joins its tasks in
  // pipeline order).
  for (const config::PipelineConfig& pipeline : config_.pipelines) {
    if (PipelineRuntime* runtime = RuntimeFor(pipeline.name)) runtime->Stop();
  }
  shut_down_ = true;
}

}  // namespace sluice::engine
