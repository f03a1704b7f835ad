// sluice::metrics::Metrics — the service's Prometheus registry (prometheus-cpp
// core) with every metric family of contract §C5, and its text exposition
// (format 0.0.4) for GET /metrics on the service's own port.
#ifndef SLUICE_SERVICE_METRICS_METRICS_HPP_
#define SLUICE_SERVICE_METRICS_METRICS_HPP_

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>

#include "sluice/patterns/detail/thread_annotations.hpp"
#include "sluice/patterns/mutex.hpp"

namespace sluice::config {
struct PipelineConfig;
}  // namespace sluice::config

namespace sluice::metrics {

// Owns one prometheus::Registry and the families of contract §C5:
//   sluice_http_requests_total{method,route,code}      counter
//   sluice_http_request_duration_seconds{route}        histogram
//   sluice_jobs_total{pipeline,state}                  counter
//   sluice_jobs_active{pipeline}                       gauge
//   sluice_items_total{pipeline,stage,outcome}         counter
//   sluice_stage_duration_seconds{pipeline,stage}      histogram
//   sluice_stage_queue_depth{pipeline,stage}           gauge
//   sluice_stage_workers_busy{pipeline,stage}          gauge
//   sluice_websocket_connections{kind}                 gauge
//   sluice_admission_rejections_total{pipeline}        counter
//   sluice_build_info{version}                         gauge, always 1
//   sluice_http_client_requests_total{pipeline,stage,code}  counter (http
//                                                      processor attempts)
//   sluice_http_client_duration_seconds{pipeline,stage}     histogram
//   sluice_config_reloads_total{result}                counter (success,
//                                                      failure)
//   sluice_config_last_reload_success_timestamp_seconds  gauge (the start
//                                                      counts as a load)
// and, read from /proc at each scrape, the process_* families of
// process_metrics.hpp.
//
// Thread-safety: every member function is safe to call from any thread
// (prometheus-cpp families lock on Add; counters/gauges/histograms are
// atomic). The accessors return references that stay valid for the lifetime
// of the Metrics object (children are never removed), so hot paths should
// call an accessor once and cache the reference: each call is a map lookup
// under the family's lock.
class Metrics {
 public:
  // Creates the registry and every family; sets sluice_build_info{version}=1
  // and the label-free children known up front (websocket kinds job_stream
  // and ingest at 0). Failure: throws only what prometheus-cpp throws on
  // allocation failure.
  explicit Metrics(std::string version);
  ~Metrics();

  Metrics(const Metrics&) = delete;
  Metrics& operator=(const Metrics&) = delete;

  // Creates the pipeline's and each of its stages' children at 0 so every
  // family is present from start-up: jobs_total for each state (done, failed,
  // cancelled), jobs_active, admission_rejections_total, and per stage
  // items_total for each outcome (in, out, filtered, error, cancelled),
  // stage_duration, queue_depth, workers_busy. Idempotent.
  void RegisterPipeline(const config::PipelineConfig& pipeline);

  // sluice_http_requests_total. `route` must be a route template
  // ("/v1/jobs/{id}"), never a raw path, to keep cardinality bounded.
  prometheus::Counter& HttpRequests(std::string_view method,
                                    std::string_view route, int code);
  // sluice_http_request_duration_seconds (seconds; buckets 0.5 ms .. 10 s).
  prometheus::Histogram& HttpDuration(std::string_view route);
  // sluice_jobs_total: state is the job's final state (done|failed|cancelled).
  prometheus::Counter& Jobs(std::string_view pipeline, std::string_view state);
  // sluice_jobs_active: jobs queued or running.
  prometheus::Gauge& JobsActive(std::string_view pipeline);
  // sluice_items_total; outcome: in|out|filtered|error|cancelled.
  prometheus::Counter& Items(std::string_view pipeline, std::string_view stage,
                             std::string_view outcome);
  // sluice_stage_duration_seconds: one Process() call (buckets 10 us .. 10 s).
  prometheus::Histogram& StageDuration(std::string_view pipeline,
                                       std::string_view stage);
  // sluice_stage_queue_depth: items waiting in the stage's input channel.
  prometheus::Gauge& QueueDepth(std::string_view pipeline,
                                std::string_view stage);
  // sluice_stage_workers_busy: workers currently inside Process().
  prometheus::Gauge& WorkersBusy(std::string_view pipeline,
                                 std::string_view stage);
  // sluice_websocket_connections; kind: job_stream|ingest.
  prometheus::Gauge& WebSocketConnections(std::string_view kind);
  // sluice_admission_rejections_total: submissions refused with 429.
  prometheus::Counter& AdmissionRejections(std::string_view pipeline);
  // sluice_http_client_requests_total: every attempt of an http processor
  // stage, by outcome `code`: the response status as text ("200", "503"),
  // or "timeout" / "error" when no response came (so cardinality stays
  // bounded by the status codes servers use).
  prometheus::Counter& HttpClientRequests(std::string_view pipeline,
                                          std::string_view stage,
                                          std::string_view code);
  // sluice_http_client_duration_seconds: one attempt, from connecting (when
  // needed) to the response's last byte or the failure (buckets 1 ms ..
  // 60 s).
  prometheus::Histogram& HttpClientDuration(std::string_view pipeline,
                                            std::string_view stage);

  // Registers a function called at the start of every Serialize() (e.g. to
  // sample queue depths just before a scrape). Replaces any previous hook;
  // pass an empty function to remove it. The hook runs on the scraping
  // thread and must not call Serialize() or SetScrapeHook().
  void SetScrapeHook(std::function<void()> hook) SLUICE_EXCLUDES(hook_mu_);

  // One HTTP request answered: sluice_http_requests_total{method,route,
  // code} += 1 and sluice_http_request_duration_seconds{route} observes
  // `seconds`. The children are looked up once per (method, route, code)
  // and cached, so a request costs a hash lookup, not the families' label
  // maps and locks. `route` as for HttpRequests.
  void ObserveHttpRequest(std::string_view method, std::string_view route,
                          int code, double seconds)
      SLUICE_EXCLUDES(request_cache_mu_);

  // One config reload attempted: sluice_config_reloads_total{result} += 1
  // and, on success, the last-success timestamp is set to now.
  void RecordConfigReload(bool success);

  // The registry in the Prometheus text exposition format 0.0.4 (serve with
  // Content-Type "text/plain; version=0.0.4; charset=utf-8").
  std::string Serialize() const SLUICE_EXCLUDES(hook_mu_);

  // The underlying registry, for tests and extra collectors.
  prometheus::Registry& registry() { return *registry_; }

 private:
  // sluice_config_reloads_total (both results at 0) and the last-success
  // timestamp (now: the start counts as a load).
  void RegisterReloadFamilies();

  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Family<prometheus::Counter>* http_requests_;
  prometheus::Family<prometheus::Histogram>* http_duration_;
  prometheus::Family<prometheus::Counter>* jobs_;
  prometheus::Family<prometheus::Gauge>* jobs_active_;
  prometheus::Family<prometheus::Counter>* items_;
  prometheus::Family<prometheus::Histogram>* stage_duration_;
  prometheus::Family<prometheus::Gauge>* queue_depth_;
  prometheus::Family<prometheus::Gauge>* workers_busy_;
  prometheus::Family<prometheus::Gauge>* ws_connections_;
  prometheus::Family<prometheus::Counter>* admission_rejections_;
  prometheus::Family<prometheus::Gauge>* build_info_;
  prometheus::Family<prometheus::Counter>* http_client_requests_;
  prometheus::Family<prometheus::Histogram>* http_client_duration_;
  prometheus::Family<prometheus::Counter>* config_reloads_;
  prometheus::Gauge* last_reload_success_;

  // ObserveHttpRequest's cache: "method route code" -> the two children.
  struct RequestChildren {
    prometheus::Counter* requests;
    prometheus::Histogram* duration;
  };
  struct StringHash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const {
      return std::hash<std::string_view>{}(s);
    }
  };
  Mutex request_cache_mu_;
  std::unordered_map<std::string, RequestChildren, StringHash, std::equal_to<>>
      request_cache_ SLUICE_GUARDED_BY(request_cache_mu_);

  mutable Mutex hook_mu_;
  std::function<void()> scrape_hook_ SLUICE_GUARDED_BY(hook_mu_);
};

}  // namespace sluice::metrics

#endif  // SLUICE_SERVICE_METRICS_METRICS_HPP_
