#include "service/engine/engine.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <exception>
#include <thread>
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
    : metrics_(metrics),
      options_(std::move(options)),
      store_(jobs::JobStore::Limits{
          config.jobs.retention, config.jobs.max_retained_bytes,
          config.jobs.max_job_result_bytes, config.jobs.min_retention}),
      admission_(std::make_shared<Admission>(config.jobs.max_pending_items)),
      io_(std::make_unique<processors::IoLoop>()),
      runtime_(std::make_unique<Runtime>(options_.runtime_threads)),
      rate_at_(std::chrono::steady_clock::now()) {
  std::shared_ptr<const PipelineSet> pipelines =
      BuildPipelines(config.pipelines);
  MutexLock lock(&pipelines_mu_);
  pipelines_ = std::move(pipelines);
}

Engine::~Engine() { Shutdown(std::chrono::milliseconds(0)); }

std::shared_ptr<const Engine::PipelineSet> Engine::BuildPipelines(
    const std::vector<config::PipelineConfig>& pipelines) {
  auto set = std::make_shared<PipelineSet>();
  for (const config::PipelineConfig& pipeline : pipelines) {
    auto runtime = std::make_shared<PipelineRuntime>(
        pipeline, *runtime_, io_.get(), metrics_, options_, admission_,
        [this](const std::shared_ptr<jobs::Job>& job) { OnJobFinished(job); });
    set->in_order.push_back(runtime);
    set->by_name.emplace(pipeline.name, std::move(runtime));
  }
  return set;
}

std::shared_ptr<const Engine::PipelineSet> Engine::current() const {
  MutexLock lock(&pipelines_mu_);
  return pipelines_;
}

std::shared_ptr<PipelineRuntime> Engine::RuntimeFor(
    std::string_view pipeline) const {
  std::shared_ptr<const PipelineSet> set = current();
  auto it = set->by_name.find(pipeline);
  return it == set->by_name.end() ? nullptr : it->second;
}

std::vector<std::shared_ptr<PipelineRuntime>> Engine::RuntimesNamed(
    std::string_view name) const {
  std::vector<std::shared_ptr<PipelineRuntime>> named;
  MutexLock lock(&pipelines_mu_);
  if (auto it = pipelines_->by_name.find(name); it != pipelines_->by_name.end())
    named.push_back(it->second);
  for (const auto& runtime : retired_) {
    if (runtime->config().name == name) named.push_back(runtime);
  }
  return named;
}

std::shared_ptr<PipelineRuntime> Engine::AddToIntake(
    std::shared_ptr<PipelineRuntime> runtime,
    const std::shared_ptr<jobs::Job>& job, std::vector<nlohmann::json>& items,
    std::optional<bool> ordered, bool open,
    std::shared_ptr<JobContext>* context) {
  // At most twice: a runtime retired between RuntimeFor and here has a
  // successor, which was current before the retirement began.
  for (int attempt = 0; attempt < 2 && runtime; ++attempt) {
    *context = runtime->MakeContext(job, ordered);
    if (runtime->intake()->Add(*context, std::move(items), open)) {
      return runtime;
    }
    if (draining()) return nullptr;
    runtime = RuntimeFor(job->pipeline());
  }
  return nullptr;
}

void Engine::CancelIn(const std::shared_ptr<jobs::Job>& job) {
  for (const auto& runtime : RuntimesNamed(job->pipeline())) {
    runtime->intake()->Cancel(*job);
  }
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
  std::shared_ptr<PipelineRuntime> runtime = RuntimeFor(request.pipeline);
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
  std::shared_ptr<JobContext> context;
  if (!AddToIntake(runtime, job.value(), request.items, request.ordered,
                   /*open=*/false, &context)) {
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

Result<std::shared_ptr<IngestFeed>, Refusal> Engine::OpenStream(
    std::string_view pipeline) {
  std::shared_ptr<PipelineRuntime> runtime = RuntimeFor(pipeline);
  if (runtime == nullptr) return UnknownPipelineRefusal(pipeline);
  if (draining()) return DrainingRefusal();
  Result<std::shared_ptr<jobs::Job>, Refusal> job = NewJob(*runtime, 0);
  if (!job.ok()) return job.error();
  std::shared_ptr<JobContext> context;
  std::vector<nlohmann::json> none;
  std::shared_ptr<PipelineRuntime> taker = AddToIntake(
      runtime, job.value(), none, std::nullopt, /*open=*/true, &context);
  if (!taker) {
    job.value()->RequestCancel();
    job.value()->Finish(nullptr);
    runtime->jobs_active().Decrement();
    OnJobFinished(job.value());
    return DrainingRefusal();
  }
  return std::make_shared<StreamFeed>(taker->intake(), admission_,
                                      std::move(context),
                                      taker->stream_queue_limit());
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
  if (job->RequestCancel()) CancelIn(job);
  return true;
}

std::vector<PipelineSnapshot> Engine::Pipelines() const {
  std::vector<PipelineSnapshot> pipelines;
  for (const auto& runtime : current()->in_order) {
    pipelines.push_back(runtime->Snapshot());
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
  for (const auto& runtime : current()->in_order) runtime->SampleGauges();
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
        if (job->RequestCancel()) CancelIn(job);
      }
      if (WaitIdle(std::chrono::steady_clock::now() +
                   std::chrono::milliseconds(100))) {
        break;
      }
    }
  }
  // Every job has finished: stop the pipelines, those a reload replaced
  // included (each joins its tasks in pipeline order).
  std::vector<std::shared_ptr<PipelineRuntime>> all;
  {
    MutexLock pipelines_lock(&pipelines_mu_);
    all = pipelines_->in_order;
    all.insert(all.end(), retired_.begin(), retired_.end());
  }
  for (const auto& runtime : all) runtime->Stop();
  shut_down_ = true;
}

Result<std::vector<std::string>> Engine::Reload(
    const std::vector<config::PipelineConfig>& pipelines) {
  // Under shutdown_mu_, so no Shutdown is halfway through a swap. Never
  // waits behind a drain, which holds it for up to the grace: a reload
  // runs on a network thread.
  while (!shutdown_mu_.TryLock()) {
    if (draining()) return Error{"draining", "the service is shutting down"};
    std::this_thread::yield();
  }
  Result<std::vector<std::string>> swapped = ReloadLocked(pipelines);
  shutdown_mu_.Unlock();
  return swapped;
}

Result<std::vector<std::string>> Engine::ReloadLocked(
    const std::vector<config::PipelineConfig>& pipelines) {
  if (draining() || shut_down_) {
    return Error{"draining", "the service is shutting down"};
  }
  std::shared_ptr<const PipelineSet> next;
  try {
    next = BuildPipelines(pipelines);
  } catch (const std::exception& e) {
    // Dropping `next` stops what was started; nothing was swapped.
    return Error{"engine",
                 std::string("cannot build the pipelines: ") + e.what()};
  }
  std::vector<std::string> names;
  for (const auto& runtime : next->in_order)
    names.push_back(runtime->config().name);
  std::shared_ptr<const PipelineSet> previous;
  {
    MutexLock pipelines_lock(&pipelines_mu_);
    previous = std::exchange(pipelines_, std::move(next));
    retired_.insert(retired_.end(), previous->in_order.begin(),
                    previous->in_order.end());
  }
  for (const auto& runtime : previous->in_order) runtime->Retire();
  ReapRetired();
  return names;
}

void Engine::ReapRetired() {
  std::vector<std::shared_ptr<PipelineRuntime>> ended;
  {
    MutexLock lock(&pipelines_mu_);
    auto still = std::stable_partition(
        retired_.begin(), retired_.end(),
        [](const auto& runtime) { return !runtime->retired_and_ended(); });
    ended.assign(std::make_move_iterator(still),
                 std::make_move_iterator(retired_.end()));
    retired_.erase(still, retired_.end());
  }
  for (const auto& runtime : ended) runtime->Stop();
}

}  // namespace sluice::engine
