// PipelineRuntime: the wiring of one running pipeline, generator ->
// stages -> aggregator (pipeline_runtime.hpp); the three parts are in
// generator.cpp, stage.cpp and aggregator.cpp.
#include "service/engine/pipeline_runtime.hpp"

#include <algorithm>
#include <utility>

#include "service/metrics/metrics.hpp"
#include "service/processors/aggregate.hpp"
#include "service/processors/processor.hpp"

namespace sluice::engine {
namespace {

// EngineOptions::make_processor's default: processors::MakeProcessor for
// the stage of `pipeline`, its metrics in `metrics`. The config was
// validated, so only a build failure (Error "unavailable") returns null;
// each of that worker's items then fails ("not available").
ProcessorFactory DefaultProcessorFactory(std::string pipeline,
                                         metrics::Metrics* metrics,
                                         processors::IoLoop* io) {
  return [pipeline = std::move(pipeline), metrics,
          io](const config::StageConfig& s)
             -> std::unique_ptr<processors::Processor> {
    auto made =
        processors::MakeProcessor(s.processor, {pipeline, s.name, metrics, io});
    if (!made.ok()) return nullptr;
    return std::move(made).value();
  };
}

}  // namespace

PipelineRuntime::PipelineRuntime(const config::PipelineConfig& config,
                                 Runtime& runtime, processors::IoLoop* io,
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
                   : DefaultProcessorFactory(config.name, &metrics, io)),
      m_rejections_(metrics.AdmissionRejections(config.name)),
      m_jobs_active_(metrics.JobsActive(config.name)),
      m_jobs_done_(metrics.Jobs(config.name, "done")),
      m_jobs_failed_(metrics.Jobs(config.name, "failed")),
      m_jobs_cancelled_(metrics.Jobs(config.name, "cancelled")) {
  metrics_.RegisterPipeline(config_);
  for (std::size_t i = 0; i < config_.stages.size(); ++i) {
    stages_.push_back(std::make_unique<Stage>(static_cast<std::uint32_t>(i),
                                              config_, config_.stages[i],
                                              factory_, metrics_));
    stage_names_.push_back(config_.stages[i].name);
  }

  // Stage 0's input, of stage 0's buffer; the generator task feeds it.
  const std::size_t first_buffer = config_.stages.empty()
                                       ? kAggregatorBuffer
                                       : config_.stages.front().buffer;
  source_ = std::make_unique<Channel<Envelope>>(first_buffer);
  // Each stage reads the channel before it; its output, of the next
  // stage's buffer, is the next stage's input.
  Channel<Envelope>* input = source_.get();
  for (std::size_t i = 0; i < stages_.size(); ++i) {
    const std::size_t out_capacity = i + 1 < stages_.size()
                                         ? config_.stages[i + 1].buffer
                                         : kAggregatorBuffer;
    stages_[i]->Start(runtime, *input, out_capacity);
    input = &stages_[i]->output();
  }
  last_ = input;
  aggregator_ = std::make_unique<detail::TaskGroup>(runtime);
  aggregator_->spawn([this](std::stop_token st) { return Aggregate(st); });
  generator_ = std::make_unique<detail::TaskGroup>(runtime);
  generator_->spawn([this](std::stop_token st) { return Generate(st); });
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

PipelineSnapshot PipelineRuntime::Snapshot() const {
  PipelineSnapshot p;
  p.name = config_.name;
  p.ordered = config_.ordered;
  p.aggregate = config_.aggregate;
  p.jobs_active =
      static_cast<std::int64_t>(std::max(m_jobs_active_.Value(), 0.0));
  MutexLock lock(&channels_mu_);
  for (const auto& stage : stages_) p.stages.push_back(stage->Snapshot());
  return p;
}

void PipelineRuntime::Stop() {
  MutexLock lock(&stop_mu_);
  if (stopped_) return;
  stopped_ = true;
  // The generator ends once every registered input has ended, closing stage
  // 0's channel; each stage's workers drain their input and the last one
  // closes the stage's output; the aggregator drains the last channel and
  // returns. So they end in pipeline order: the generator is joined first,
  // then the aggregator (by then every stage's last worker has closed its
  // output), then each stage's tasks, before any channel goes.
  intake_->Close();
  generator_->join();
  aggregator_->join();
  for (auto& stage : stages_) stage->Join();
  MutexLock channels_lock(&channels_mu_);
  for (auto& stage : stages_) stage->ForgetInput();
  channels_gone_ = true;
}

}  // namespace sluice::engine
