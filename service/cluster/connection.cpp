// The NATS connection of a replica, the JetStream layout it needs (created
// or updated on every (re)connect), and the maintenance thread that keeps
// both and seals finished jobs. docs/cluster.md describes the layout.
#include <unistd.h>

#include <cstdlib>
#include <iostream>
#include <string>
#include <vector>

#include "service/cluster/cluster_impl.hpp"

namespace sluice::cluster {
namespace {

constexpr std::int64_t kNanosPerMs = 1000000;

std::vector<std::string> SplitUrls(const std::string& list) {
  std::vector<std::string> out;
  std::size_t start = 0;
  while (start <= list.size()) {
    const std::size_t comma = list.find(',', start);
    const std::size_t end = comma == std::string::npos ? list.size() : comma;
    std::string url = list.substr(start, end - start);
    if (!url.empty()) out.push_back(std::move(url));
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return out;
}

void OnConnectedCb(natsConnection*, void* closure) {
  static_cast<ClusterImpl*>(closure)->OnConnected();
}
void OnDisconnectedCb(natsConnection*, void* closure) {
  static_cast<ClusterImpl*>(closure)->OnDisconnected();
}

// Adds the stream, or updates it when it exists with another config.
Result<void> AddOrUpdateStream(jsCtx* js, jsStreamConfig& cfg) {
  jsStreamInfo* raw = nullptr;
  jsErrCode code = static_cast<jsErrCode>(0);
  natsStatus s = js_AddStream(&raw, js, &cfg, nullptr, &code);
  NatsPtr<jsStreamInfo> info(raw);
  if (s == NATS_OK) return {};
  raw = nullptr;
  s = js_UpdateStream(&raw, js, &cfg, nullptr, &code);
  info.reset(raw);
  if (s == NATS_OK) return {};
  return Error{"cluster",
               NatsError(std::string("stream ") + cfg.Name, s, code)};
}

}  // namespace

void Log(const std::string& line) { std::cerr << "cluster: " << line << "\n"; }

void MaybeCrash(std::string_view point) {
  static const std::string spec = [] {
    const char* v = std::getenv("SLUICE_CLUSTER_FAULT");
    return std::string(v == nullptr ? "" : v);
  }();
  if (spec.empty() || spec.compare(0, point.size(), point) != 0 ||
      spec.size() <= point.size() || spec[point.size()] != ':') {
    return;
  }
  static std::atomic<long> reached{0};
  const long n = std::atol(spec.c_str() + point.size() + 1);
  if (reached.fetch_add(1) + 1 == n) {
    std::cerr << "cluster: SLUICE_CLUSTER_FAULT " << spec << ": exiting\n";
    std::_Exit(137);
  }
}

Result<void> ClusterImpl::Connect() {
  nats_SetMessageDeliveryPoolSize(2);
  natsOptions* raw = nullptr;
  if (natsOptions_Create(&raw) != NATS_OK) {
    return Error{"cluster", "cannot allocate NATS options"};
  }
  NatsPtr<natsOptions> opts(raw);
  const std::vector<std::string> urls = SplitUrls(config_.cluster.nats.url);
  std::vector<const char*> servers;
  for (const std::string& u : urls) servers.push_back(u.c_str());
  natsStatus s = natsOptions_SetServers(opts.get(), servers.data(),
                                        static_cast<int>(servers.size()));
  if (s != NATS_OK) {
    return Error{"cluster", NatsError("cluster.nats.url", s)};
  }
  const std::string name = "sluice-" + std::to_string(::getpid());
  natsOptions_SetName(opts.get(), name.c_str());
  natsOptions_SetMaxReconnect(opts.get(), -1);
  natsOptions_SetReconnectWait(opts.get(), 250);
  natsOptions_SetReconnectJitter(opts.get(), 100, 1000);
  natsOptions_SetPingInterval(opts.get(), 2000);
  natsOptions_SetMaxPingsOut(opts.get(), 2);
  natsOptions_SetReconnectBufSize(opts.get(), 8 * 1024 * 1024);
  natsOptions_UseGlobalMessageDelivery(opts.get(), true);
  // Written by the publishing thread at once, not handed to nats.c's
  // flusher thread: on 2 vCPUs that wake-up per publish took a one-item
  // job's p50 from 2.3 to 3.4-4.1 ms (bench/RESULTS.md).
  natsOptions_SetSendAsap(opts.get(), true);
  natsOptions_SetDisconnectedCB(opts.get(), OnDisconnectedCb, this);
  natsOptions_SetReconnectedCB(opts.get(), OnConnectedCb, this);
  natsOptions_SetRetryOnFailedConnect(opts.get(), true, OnConnectedCb, this);
  natsConnection* nc = nullptr;
  s = natsConnection_Connect(&nc, opts.get());
  if (s != NATS_OK && s != NATS_NOT_YET_CONNECTED) {
    return Error{"cluster", NatsError("connect", s)};
  }
  conn_.reset(nc);
  if (s == NATS_OK) OnConnected();
  jsOptions jo;
  jsOptions_Init(&jo);
  jo.Wait = 5000;
  jsCtx* js = nullptr;
  if (natsConnection_JetStream(&js, conn_.get(), &jo) != NATS_OK) {
    return Error{"cluster", "cannot create a JetStream context"};
  }
  js_.reset(js);
  jsOptions_Init(&jo);
  jo.Wait = 5000;
  jo.PublishAsync.MaxPending = 4096;
  jo.PublishAsync.AckHandler = [](jsCtx*, natsMsg* msg, jsPubAck* pa,
                                  jsPubAckErr* pae, void* closure) {
    static_cast<ClusterImpl*>(closure)->OnOutcomeAck(pa, pae);
    natsMsg_Destroy(msg);  // the handler owns it (nats.h)
  };
  jo.PublishAsync.AckHandlerClosure = this;
  js = nullptr;
  if (natsConnection_JetStream(&js, conn_.get(), &jo) != NATS_OK) {
    return Error{"cluster", "cannot create a JetStream context"};
  }
  publish_js_.reset(js);
  return {};
}

void ClusterImpl::OnConnected() {
  connected_.store(true);
  metrics_.connected.Set(1);
  // The layout and the watcher are made again: NATS may have restarted
  // without its store, and the watcher's consumer did not survive.
  layout_ready_.store(false);
  rewatch_.store(true);
  MutexLock lock(&wake_mu_);
  wake_ = true;
  wake_cv_.SignalAll();
}

void ClusterImpl::OnDisconnected() {
  if (connected_.exchange(false)) metrics_.reconnects.Increment();
  metrics_.connected.Set(0);
}

Result<void> ClusterImpl::EnsureLayout() {
  const config::JobsConfig& jobs = config_.jobs;
  const int replicas = config_.cluster.nats.replicas;
  const std::string items = names_.items_stream();
  const std::string items_subjects = names_.prefix + ".items.>";
  const char* items_list[] = {items_subjects.c_str()};
  jsStreamConfig cfg;
  jsStreamConfig_Init(&cfg);
  cfg.Name = items.c_str();
  cfg.Subjects = items_list;
  cfg.SubjectsLen = 1;
  cfg.Retention = js_WorkQueuePolicy;
  cfg.MaxMsgs = static_cast<int64_t>(jobs.max_pending_items);
  cfg.Discard = js_DiscardNew;
  cfg.Storage = js_FileStorage;
  cfg.Replicas = replicas;
  cfg.Duplicates = 120000 * kNanosPerMs;
  if (auto r = AddOrUpdateStream(js_.get(), cfg); !r.ok()) return r;

  const std::string results = names_.results_stream();
  const std::string results_subjects = names_.prefix + ".results.>";
  const char* results_list[] = {results_subjects.c_str()};
  jsStreamConfig_Init(&cfg);
  cfg.Name = results.c_str();
  cfg.Subjects = results_list;
  cfg.SubjectsLen = 1;
  cfg.Retention = js_LimitsPolicy;
  cfg.MaxBytes = static_cast<int64_t>(jobs.max_retained_bytes);
  cfg.Discard = js_DiscardNew;
  cfg.Storage = js_FileStorage;
  cfg.Replicas = replicas;
  cfg.Duplicates = 120000 * kNanosPerMs;
  if (auto r = AddOrUpdateStream(js_.get(), cfg); !r.ok()) return r;

  const std::string bucket = names_.jobs_bucket();
  kvConfig kc;
  kvConfig_Init(&kc);
  kc.Bucket = bucket.c_str();
  kc.History = 1;
  kc.StorageType = js_FileStorage;
  kc.Replicas = replicas;
  kvStore* kv = nullptr;
  natsStatus s = js_CreateKeyValue(&kv, js_.get(), &kc);
  if (s != NATS_OK) s = js_KeyValue(&kv, js_.get(), bucket.c_str());
  if (s != NATS_OK) return Error{"cluster", NatsError("KV " + bucket, s)};
  if (kv_owner_ == nullptr) {
    kv_owner_.reset(kv);
    kv_.store(kv);
  } else {
    kvStore_Destroy(kv);  // the bucket exists: the handle we hold still works
  }
  for (const config::PipelineConfig& p : config_.pipelines) {
    if (auto r = EnsureConsumer(p.name); !r.ok()) return r;
  }
  return {};
}

Result<void> ClusterImpl::EnsureConsumer(const std::string& pipeline) {
  const std::string stream = names_.items_stream();
  const std::string filter = names_.pipeline_items(pipeline);
  jsConsumerConfig cc;
  jsConsumerConfig_Init(&cc);
  cc.Durable = pipeline.c_str();
  cc.FilterSubject = filter.c_str();
  cc.AckPolicy = js_AckExplicit;
  cc.DeliverPolicy = js_DeliverAll;
  cc.AckWait = config_.cluster.nats.ack_wait.count() * kNanosPerMs;
  cc.MaxDeliver = -1;
  cc.MaxAckPending = static_cast<int64_t>(config_.jobs.max_pending_items);
  cc.MaxWaiting = 512;
  jsConsumerInfo* raw = nullptr;
  jsErrCode code = static_cast<jsErrCode>(0);
  natsStatus s =
      js_AddConsumer(&raw, js_.get(), stream.c_str(), &cc, nullptr, &code);
  NatsPtr<jsConsumerInfo> info(raw);
  if (s == NATS_OK) return {};
  raw = nullptr;
  s = js_UpdateConsumer(&raw, js_.get(), stream.c_str(), &cc, nullptr, &code);
  info.reset(raw);
  if (s == NATS_OK) return {};
  return Error{"cluster", NatsError("consumer " + pipeline, s, code)};
}

// The items of every unfinished job, cluster-wide, from the job table:
// what admission counts (docs/cluster.md#admission). The items stream
// cannot say it: it stores items in chunks.
std::uint64_t ClusterImpl::PendingItems() const {
  MutexLock lock(&table_mu_);
  return pending_in_table_;
}

void ClusterImpl::SamplePending() {
  const std::uint64_t pending = PendingItems();
  pending_items_.store(pending);
  metrics_.pending_items.Set(static_cast<double>(pending));
}

void ClusterImpl::MaintenanceLoop() {
  auto next_full_scan = std::chrono::steady_clock::now();
  auto next_keep = next_full_scan;
  auto next_mirror_pass = next_full_scan;
  const auto keep_every = config_.cluster.nats.ack_wait / 3;
  while (!stopping_.load()) {
    if (connected_.load() && !layout_ready_.load()) {
      if (auto r = EnsureLayout(); r.ok()) {
        layout_ready_.store(true);
        RefollowMirrors(/*only_lost=*/false);
        Log("connected; JetStream layout ready (prefix " + names_.prefix + ")");
      } else {
        Log(r.error().message);
      }
    }
    if (connected_.load() && layout_ready_.load()) {
      SamplePending();
      TickFeeds();
      CancelBatchesOfCancelledJobs();
      const auto now = std::chrono::steady_clock::now();
      if (now >= next_keep) {
        next_keep = now + keep_every;
        KeepInProgress();
      }
      if (now >= next_full_scan) {
        next_full_scan = now + std::chrono::seconds(1);
        SealFinished();
        PruneWaiters();
      } else {
        SealTouched();
      }
      // Walks every mirror: at most every 100 ms, not on every wake (a
      // wake per published batch).
      if (now >= next_mirror_pass) {
        next_mirror_pass = now + std::chrono::milliseconds(100);
        PruneMirrors();
        RefollowMirrors(/*only_lost=*/true);
      }
    }
    MutexLock lock(&wake_mu_);
    if (stopping_.load()) break;
    if (!wake_) {
      wake_cv_.WaitUntil(&wake_mu_, std::chrono::steady_clock::now() +
                                        std::chrono::milliseconds(100));
    }
    wake_ = false;
  }
}

}  // namespace sluice::cluster
