// Implementation of sluice::metrics::Metrics (see metrics.hpp).
#include "service/metrics/metrics.hpp"

#include <prometheus/text_serializer.h>

#include <array>
#include <cstdio>
#include <utility>
#include <vector>

#include "service/config/config.hpp"
#include "service/metrics/process_metrics.hpp"

namespace sluice::metrics {
namespace {

// Request latencies of a local service: 0.5 ms .. 10 s.
const prometheus::Histogram::BucketBoundaries& HttpBuckets() {
  static const prometheus::Histogram::BucketBoundaries kBuckets = {
      0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
      0.1,    0.25,  0.5,    1,     2.5,  5,     10};
  return kBuckets;
}

// One Process() call: from microseconds (set/remove) to seconds (http, lua).
const prometheus::Histogram::BucketBoundaries& StageBuckets() {
  static const prometheus::Histogram::BucketBoundaries kBuckets = {
      0.00001, 0.00005, 0.0001, 0.0005, 0.001, 0.005, 0.01,
      0.05,    0.1,     0.5,    1,      2.5,   5,     10};
  return kBuckets;
}

// One outbound call of the http processor: a local service answers in a
// millisecond, a struggling one may take the whole timeout.
const prometheus::Histogram::BucketBoundaries& HttpClientBuckets() {
  static const prometheus::Histogram::BucketBoundaries kBuckets = {
      0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
      0.5,   1,      2.5,   5,    10,    30,   60};
  return kBuckets;
}

constexpr std::array<std::string_view, 3> kFinalStates = {"done", "failed",
                                                          "cancelled"};
constexpr std::array<std::string_view, 5> kOutcomes = {"in", "out", "filtered",
                                                       "error", "cancelled"};

std::string S(std::string_view v) { return std::string(v); }

}  // namespace

Metrics::Metrics(std::string version)
    : registry_(std::make_shared<prometheus::Registry>()) {
  using prometheus::BuildCounter;
  using prometheus::BuildGauge;
  using prometheus::BuildHistogram;
  http_requests_ = &BuildCounter()
                        .Name("sluice_http_requests_total")
                        .Help(
                            "HTTP requests by method, route template and "
                            "status code")
                        .Register(*registry_);
  http_duration_ = &BuildHistogram()
                        .Name("sluice_http_request_duration_seconds")
                        .Help("HTTP request handling time by route template")
                        .Register(*registry_);
  jobs_ = &BuildCounter()
               .Name("sluice_jobs_total")
               .Help("Jobs finished, by pipeline and final state")
               .Register(*registry_);
  jobs_active_ = &BuildGauge()
                      .Name("sluice_jobs_active")
                      .Help("Jobs queued or running, by pipeline")
                      .Register(*registry_);
  items_ = &BuildCounter()
                .Name("sluice_items_total")
                .Help(
                    "Items by pipeline, stage and outcome "
                    "(in|out|filtered|error|cancelled)")
                .Register(*registry_);
  stage_duration_ = &BuildHistogram()
                         .Name("sluice_stage_duration_seconds")
                         .Help("Time one stage spends processing one item")
                         .Register(*registry_);
  queue_depth_ = &BuildGauge()
                      .Name("sluice_stage_queue_depth")
                      .Help("Items waiting in a stage's input channel")
                      .Register(*registry_);
  workers_busy_ = &BuildGauge()
                       .Name("sluice_stage_workers_busy")
                       .Help("Workers of a stage currently processing an item")
                       .Register(*registry_);
  ws_connections_ = &BuildGauge()
                         .Name("sluice_websocket_connections")
                         .Help(
                             "Open WebSocket connections by kind "
                             "(job_stream|ingest)")
                         .Register(*registry_);
  admission_rejections_ =
      &BuildCounter()
           .Name("sluice_admission_rejections_total")
           .Help("Submissions refused because the admission limit was reached")
           .Register(*registry_);
  build_info_ = &BuildGauge()
                     .Name("sluice_build_info")
                     .Help("Build information; the value is always 1")
                     .Register(*registry_);
  http_client_requests_ =
      &BuildCounter()
           .Name("sluice_http_client_requests_total")
           .Help(
               "Requests (attempts) made by http processors, by pipeline, "
               "stage and code (HTTP status, or timeout|error)")
           .Register(*registry_);
  http_client_duration_ = &BuildHistogram()
                               .Name("sluice_http_client_duration_seconds")
                               .Help("Time of one http processor attempt")
                               .Register(*registry_);

  RegisterReloadFamilies();

  build_info_->Add({{"version", std::move(version)}}).Set(1);
  WebSocketConnections("job_stream");
  WebSocketConnections("ingest");
  // The HTTP families would otherwise have no sample until the first request
  // is answered (the first scrape itself is counted after it is served).
  HttpRequests("GET", "/metrics", 200);
  HttpDuration("/metrics");
}

Metrics::~Metrics() = default;

void Metrics::RegisterReloadFamilies() {
  using prometheus::BuildCounter;
  using prometheus::BuildGauge;
  config_reloads_ = &BuildCounter()
                         .Name("sluice_config_reloads_total")
                         .Help(
                             "Config reloads (SIGHUP or POST "
                             "/v1/admin/reload), by result")
                         .Register(*registry_);
  last_reload_success_ =
      &BuildGauge()
           .Name("sluice_config_last_reload_success_timestamp_seconds")
           .Help(
               "Unix time of the last successful config load (the start "
               "counts as one)")
           .Register(*registry_)
           .Add({});
  config_reloads_->Add({{"result", "success"}});
  config_reloads_->Add({{"result", "failure"}});
  last_reload_success_->SetToCurrentTime();
}

void Metrics::RecordConfigReload(bool success) {
  config_reloads_->Add({{"result", success ? "success" : "failure"}})
      .Increment();
  if (success) last_reload_success_->SetToCurrentTime();
}

void Metrics::RegisterPipeline(const config::PipelineConfig& pipeline) {
  const std::string& p = pipeline.name;
  for (std::string_view state : kFinalStates) Jobs(p, state);
  JobsActive(p);
  AdmissionRejections(p);
  for (const config::StageConfig& stage : pipeline.stages) {
    for (std::string_view outcome : kOutcomes) Items(p, stage.name, outcome);
    StageDuration(p, stage.name);
    QueueDepth(p, stage.name);
    WorkersBusy(p, stage.name);
  }
}

prometheus::Counter& Metrics::HttpRequests(std::string_view method,
                                           std::string_view route, int code) {
  return http_requests_->Add({{"method", S(method)},
                              {"route", S(route)},
                              {"code", std::to_string(code)}});
}

prometheus::Histogram& Metrics::HttpDuration(std::string_view route) {
  return http_duration_->Add({{"route", S(route)}}, HttpBuckets());
}

void Metrics::ObserveHttpRequest(std::string_view method,
                                 std::string_view route, int code,
                                 double seconds) {
  // Method and route contain no space, so the key is unambiguous.
  char code_text[16];
  const int n = std::snprintf(code_text, sizeof code_text, "%d", code);
  std::string key;
  key.reserve(method.size() + route.size() + 2 + static_cast<std::size_t>(n));
  key.append(method).append(1, ' ').append(route).append(1, ' ').append(
      code_text, static_cast<std::size_t>(n));
  RequestChildren children{};
  {
    MutexLock lock(&request_cache_mu_);
    auto it = request_cache_.find(std::string_view(key));
    if (it == request_cache_.end()) {
      it = request_cache_
               .emplace(std::move(key),
                        RequestChildren{&HttpRequests(method, route, code),
                                        &HttpDuration(route)})
               .first;
    }
    children = it->second;
  }
  children.requests->Increment();
  children.duration->Observe(seconds);
}

prometheus::Counter& Metrics::Jobs(std::string_view pipeline,
                                   std::string_view state) {
  return jobs_->Add({{"pipeline", S(pipeline)}, {"state", S(state)}});
}

prometheus::Gauge& Metrics::JobsActive(std::string_view pipeline) {
  return jobs_active_->Add({{"pipeline", S(pipeline)}});
}

prometheus::Counter& Metrics::Items(std::string_view pipeline,
                                    std::string_view stage,
                                    std::string_view outcome) {
  return items_->Add({{"pipeline", S(pipeline)},
                      {"stage", S(stage)},
                      {"outcome", S(outcome)}});
}

prometheus::Histogram& Metrics::StageDuration(std::string_view pipeline,
                                              std::string_view stage) {
  return stage_duration_->Add({{"pipeline", S(pipeline)}, {"stage", S(stage)}},
                              StageBuckets());
}

prometheus::Gauge& Metrics::QueueDepth(std::string_view pipeline,
                                       std::string_view stage) {
  return queue_depth_->Add({{"pipeline", S(pipeline)}, {"stage", S(stage)}});
}

prometheus::Gauge& Metrics::WorkersBusy(std::string_view pipeline,
                                        std::string_view stage) {
  return workers_busy_->Add({{"pipeline", S(pipeline)}, {"stage", S(stage)}});
}

prometheus::Gauge& Metrics::WebSocketConnections(std::string_view kind) {
  return ws_connections_->Add({{"kind", S(kind)}});
}

prometheus::Counter& Metrics::AdmissionRejections(std::string_view pipeline) {
  return admission_rejections_->Add({{"pipeline", S(pipeline)}});
}

prometheus::Counter& Metrics::HttpClientRequests(std::string_view pipeline,
                                                 std::string_view stage,
                                                 std::string_view code) {
  return http_client_requests_->Add(
      {{"pipeline", S(pipeline)}, {"stage", S(stage)}, {"code", S(code)}});
}

prometheus::Histogram& Metrics::HttpClientDuration(std::string_view pipeline,
                                                   std::string_view stage) {
  return http_client_duration_->Add(
      {{"pipeline", S(pipeline)}, {"stage", S(stage)}}, HttpClientBuckets());
}

void Metrics::SetScrapeHook(std::function<void()> hook) {
  MutexLock lock(&hook_mu_);
  scrape_hook_ = std::move(hook);
}

std::string Metrics::Serialize() const {
  {
    // Held while the hook runs so SetScrapeHook({}) (e.g. from a shutting
    // down engine) waits for a running hook instead of racing it.
    MutexLock lock(&hook_mu_);
    if (scrape_hook_) scrape_hook_();
  }
  std::vector<prometheus::MetricFamily> families = registry_->Collect();
  for (prometheus::MetricFamily& f : ProcessFamilies()) {
    families.push_back(std::move(f));
  }
  return prometheus::TextSerializer().Serialize(families);
}

}  // namespace sluice::metrics
