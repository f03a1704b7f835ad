// ClusterService's face (engine::JobService) and the threads it runs: one
// worker per pipeline, the publisher, the KV watcher and the maintenance
// thread. Shutdown order: StopTaking (workers stop pulling; the engine then
// drains or cancels what they hold, and the publisher acks or naks it), then
// the destructor stops the watcher and maintenance, and closes NATS.
#include "service/cluster/cluster_service.hpp"

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>

#include <algorithm>

#include "service/cluster/cluster_impl.hpp"
#include "service/metrics/metrics.hpp"

namespace sluice::cluster {
namespace {

prometheus::Histogram::BucketBoundaries PublishBuckets() {
  return {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5};
}

// Registered once per label value; prometheus-cpp hands back the family.
prometheus::Family<prometheus::Counter>& SealsFamily(metrics::Metrics& m) {
  return prometheus::BuildCounter()
      .Name("sluice_cluster_seals_total")
      .Help(
          "Jobs this replica sealed: with the outcomes of a batch that "
          "finished its job alone (by=outcomes), or after reading the "
          "job's log (by=sealer)")
      .Register(m.registry());
}

}  // namespace

ClusterMetrics::ClusterMetrics(metrics::Metrics& m)
    : connected(prometheus::BuildGauge()
                    .Name("sluice_cluster_connected")
                    .Help("1 while this replica is connected to NATS")
                    .Register(m.registry())
                    .Add({})),
      pending_items(prometheus::BuildGauge()
                        .Name("sluice_cluster_pending_items")
                        .Help("Items of the cluster's unfinished jobs "
                              "(what admission counts)")
                        .Register(m.registry())
                        .Add({})),
      reconnects(prometheus::BuildCounter()
                     .Name("sluice_cluster_reconnects_total")
                     .Help("Times this replica lost its NATS connection")
                     .Register(m.registry())
                     .Add({})),
      acked(prometheus::BuildCounter()
                .Name("sluice_cluster_acked_total")
                .Help("Items this replica completed and acknowledged")
                .Register(m.registry())),
      redelivered(prometheus::BuildCounter()
                      .Name("sluice_cluster_redelivered_total")
                      .Help("Items this replica took that had been delivered "
                            "before (their first taker died or was slow)")
                      .Register(m.registry())),
      duplicates(prometheus::BuildCounter()
                     .Name("sluice_cluster_duplicate_outcomes_total")
                     .Help("Outcome publishes JetStream answered as "
                           "duplicates (the same message within 2 minutes)")
                     .Register(m.registry())),
      publish_items(prometheus::BuildHistogram()
                        .Name("sluice_cluster_publish_seconds")
                        .Help("From publishing to JetStream's acknowledgement "
                              "of a job's items or a batch's outcomes")
                        .Register(m.registry())
                        .Add({{"kind", "items"}}, PublishBuckets())),
      publish_outcomes(prometheus::BuildHistogram()
                           .Name("sluice_cluster_publish_seconds")
                           .Help("From publishing to JetStream's "
                                 "acknowledgement of a job's items or a "
                                 "batch's outcomes")
                           .Register(m.registry())
                           .Add({{"kind", "outcomes"}}, PublishBuckets())),
      sealed_with_outcomes(SealsFamily(m).Add({{"by", "outcomes"}})),
      sealed_by_sealer(SealsFamily(m).Add({{"by", "sealer"}})) {}

ClusterImpl::ClusterImpl(const config::Config& config, engine::Engine& engine,
                         metrics::Metrics& metrics)
    : config_(config),
      engine_(engine),
      metrics_(metrics),
      names_{config.cluster.nats.prefix} {
  for (const config::PipelineConfig& p : config.pipelines) {
    held_.try_emplace(p.name, 0);
    // Every series of a pipeline exists from the start, at 0, so the
    // dashboard, rate() and a scrape right after start see them.
    metrics_.redelivered.Add({{"pipeline", p.name}});
    metrics_.acked.Add({{"pipeline", p.name}});
    metrics_.duplicates.Add({{"pipeline", p.name}});
  }
}

ClusterImpl::~ClusterImpl() {
  StopTaking();
  stopping_.store(true);
  {
    MutexLock lock(&wake_mu_);
    wake_ = true;
    wake_cv_.SignalAll();
  }
  {
    MutexLock lock(&done_mu_);
    done_cv_.SignalAll();
  }
  if (publisher_.joinable()) publisher_.join();
  if (watcher_.joinable()) watcher_.join();
  if (maintenance_.joinable()) maintenance_.join();
  {
    MutexLock lock(&feeds_mu_);
    for (auto& weak : feeds_) {
      if (auto feed = weak.lock()) feed->Detach();
    }
  }
  // Closed first: unsubscribing a mirror on a live connection deletes its
  // consumer with a request that waits up to 5 s when NATS is away. The
  // server drops the ephemeral consumers of a closed connection itself.
  if (conn_) natsConnection_Close(conn_.get());
  std::vector<std::shared_ptr<Mirror>> mirrors;
  {
    MutexLock lock(&mirrors_mu_);
    for (auto& [id, m] : mirrors_) mirrors.push_back(m);
    mirrors_.clear();
  }
  for (auto& m : mirrors) m->Retire();
  {
    MutexLock lock(&submit_js_mu_);
    submit_js_.clear();
  }
  publish_js_.reset();
  js_.reset();
  kv_.store(nullptr);
  kv_owner_.reset();
  conn_.reset();
}

void ClusterImpl::StartThreads() {
  for (const config::PipelineConfig& p : config_.pipelines) {
    workers_.emplace_back([this, name = p.name] { WorkLoop(name); });
  }
  publisher_ = std::thread([this] { PublishLoop(); });
  watcher_ = std::thread([this] { WatchLoop(); });
  maintenance_ = std::thread([this] { MaintenanceLoop(); });
}

void ClusterImpl::StopTaking() {
  {
    MutexLock lock(&room_mu_);
    taking_.store(false);
    room_cv_.SignalAll();  // a worker waiting for room stops at once
  }
  for (std::thread& t : workers_) {
    if (t.joinable()) t.join();
  }
}

std::optional<std::string> ClusterImpl::unavailable() const {
  if (!connected_.load()) return "nats_unavailable";
  if (!layout_ready_.load() || !table_synced_.load()) return "nats_starting";
  return std::nullopt;
}

bool ClusterImpl::overloaded() const {
  return pending_items_.load() >= config_.jobs.max_pending_items;
}

std::shared_ptr<jobs::Job> ClusterImpl::Find(std::string_view id) {
  std::shared_ptr<Mirror> mirror;
  {
    MutexLock lock(&mirrors_mu_);
    auto it = mirrors_.find(id);
    // A counting mirror (made for sealing) holds no results to show.
    if (it != mirrors_.end() && it->second->keeps_results())
      mirror = it->second;
  }
  if (mirror) {
    mirror->Touch();
    // An open stream's `in` grows in its record (renewed every second).
    if (std::optional<JobRecord> record = Record(id); record && record->open) {
      mirror->NoteIn(record->in);
    }
    return mirror->job();
  }
  if (unavailable()) return nullptr;
  std::optional<JobRecord> record = Record(id);
  if (!record) {
    auto fetched = FetchRecord(id);  // the watcher may lag a fresh job
    if (!fetched.ok()) return nullptr;
    record = std::move(fetched.value());
  }
  if (record->accepting()) return nullptr;
  mirror = MirrorOf(*record);
  if (record->final()) {
    // A finished job's log is read to its seal before it is shown, so its
    // results are whole. Bounded: the log is local to the NATS server.
    const auto deadline =
        std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (!mirror->sealed() && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    if (!mirror->sealed()) mirror->job()->Restore(record->summary());
  }
  return mirror->job();
}

std::vector<std::shared_ptr<jobs::Job>> ClusterImpl::List(std::size_t limit) {
  std::vector<JobRecord> records;
  {
    MutexLock lock(&table_mu_);
    for (const auto& [id, r] : table_) {
      if (!r.accepting()) records.push_back(r);
    }
  }
  std::sort(records.begin(), records.end(),
            [](const JobRecord& a, const JobRecord& b) {
              return a.created_ms > b.created_ms;
            });
  if (records.size() > limit) records.resize(limit);
  std::vector<std::shared_ptr<jobs::Job>> out;
  for (const JobRecord& r : records) {
    {
      MutexLock lock(&mirrors_mu_);
      auto it = mirrors_.find(r.id);
      if (it != mirrors_.end()) {
        out.push_back(it->second->job());
        continue;
      }
    }
    auto job = std::make_shared<jobs::Job>(r.id, r.pipeline, r.in,
                                           FromUnixMs(r.created_ms));
    job->Restore(r.summary());
    out.push_back(std::move(job));
  }
  return out;
}

bool ClusterImpl::Cancel(std::string_view id) {
  for (int attempt = 0; attempt < 5; ++attempt) {
    auto record = FetchRecord(id);
    if (!record.ok() || record->accepting()) return false;
    if (record->final() || record->cancel) return true;
    record->cancel = true;
    if (PutRecord(record.value()).ok()) {
      MutexLock lock(&wake_mu_);
      wake_ = true;
      wake_cv_.SignalAll();
      return true;
    }
  }
  return true;  // others kept writing it: it is being finished meanwhile
}

// --- ClusterService ---------------------------------------------------------

Result<std::unique_ptr<ClusterService>> ClusterService::Start(
    const config::Config& config, engine::Engine& engine,
    metrics::Metrics& metrics) {
  auto impl = std::make_unique<ClusterImpl>(config, engine, metrics);
  if (auto r = impl->Connect(); !r.ok()) return r.error();
  impl->StartThreads();
  return std::unique_ptr<ClusterService>(new ClusterService(std::move(impl)));
}

ClusterService::ClusterService(std::unique_ptr<ClusterImpl> impl)
    : impl_(std::move(impl)) {}
ClusterService::~ClusterService() = default;

Result<std::shared_ptr<jobs::Job>, engine::Refusal> ClusterService::Submit(
    engine::SubmitRequest request) {
  return impl_->Submit(std::move(request));
}

Result<std::shared_ptr<engine::IngestFeed>, engine::Refusal>
ClusterService::OpenStream(std::string_view pipeline) {
  return impl_->OpenStream(pipeline);
}

std::shared_ptr<jobs::Job> ClusterService::Find(std::string_view id) const {
  return impl_->Find(id);
}
std::vector<std::shared_ptr<jobs::Job>> ClusterService::List(
    std::size_t limit) const {
  return impl_->List(limit);
}
bool ClusterService::Cancel(std::string_view id) { return impl_->Cancel(id); }
std::vector<engine::PipelineSnapshot> ClusterService::Pipelines() const {
  return impl_->engine().Pipelines();
}
bool ClusterService::draining() const { return impl_->engine().draining(); }
bool ClusterService::overloaded() const { return impl_->overloaded(); }
int ClusterService::retry_after_seconds() const {
  return impl_->engine().retry_after_seconds();
}
std::optional<std::string> ClusterService::unavailable() const {
  return impl_->unavailable();
}
void ClusterService::StopTaking() { impl_->StopTaking(); }

}  // namespace sluice::cluster
