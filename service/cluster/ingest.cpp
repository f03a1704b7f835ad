// Ingestion streams (`GET /v1/stream`) in cluster mode: RemoteFeed, and
// opening one. The WebSocket belongs to the replica that holds the TCP
// connection; its items do not: they are stored in JetStream frame by frame
// and any replica runs them. docs/cluster.md "Ingestion streams".
#include <algorithm>

#include "service/cluster/cluster_impl.hpp"

namespace sluice::cluster {
namespace {

// How long a stream's record says it is alive; renewed every second.
constexpr std::int64_t kLeaseMs = 10000;
constexpr std::int64_t kRenewMs = 1000;

std::int64_t NowMs() { return ToUnixMs(jobs::Job::Clock::now()); }

}  // namespace

Result<std::shared_ptr<engine::IngestFeed>, engine::Refusal>
ClusterImpl::OpenStream(std::string_view pipeline) {
  using engine::Refusal;
  if (engine_.draining()) {
    return Refusal{Refusal::Reason::kDraining,
                   "the service is shutting down and admits no new jobs"};
  }
  if (!engine_.HasPipeline(pipeline)) {
    return Refusal{Refusal::Reason::kUnknownPipeline,
                   "unknown pipeline \"" + std::string(pipeline) + "\""};
  }
  if (auto why = unavailable()) {
    return Refusal{Refusal::Reason::kUnavailable,
                   "NATS JetStream (cluster.nats.url) cannot take a stream "
                   "now: " +
                       *why};
  }
  JobRecord record;
  record.id = jobs::NewJobId();
  record.pipeline = std::string(pipeline);
  record.state = "queued";
  record.open = true;
  record.lease_ms = NowMs() + kLeaseMs;
  record.created_ms = NowMs();
  for (const config::PipelineConfig& p : config_.pipelines) {
    if (p.name == pipeline) record.ordered = p.ordered;
  }
  if (auto r = PutRecord(record); !r.ok()) {
    return Refusal{Refusal::Reason::kUnavailable, r.error().message};
  }
  auto feed = std::make_shared<RemoteFeed>(*this, record, MirrorOf(record));
  MutexLock lock(&feeds_mu_);
  feeds_.push_back(feed);
  return std::shared_ptr<engine::IngestFeed>(std::move(feed));
}

std::uint64_t ClusterImpl::Room() const {
  const std::uint64_t max = config_.jobs.max_pending_items;
  return max - std::min(max, PendingItems() + publishing_.load());
}

Result<void> ClusterImpl::PutRecordMerged(JobRecord& record) {
  for (int attempt = 0; attempt < 5; ++attempt) {
    if (PutRecord(record).ok()) return {};
    auto now = FetchRecord(record.id);
    if (!now.ok()) return now.error();
    if (now->final()) {  // sealed meanwhile (a lapsed lease): never undone
      record = std::move(now.value());
      return Error{"final", "job " + record.id + " has ended"};
    }
    record.cancel = record.cancel || now->cancel;
    record.revision = now->revision;
  }
  return Error{"cluster", "the record of " + record.id + " kept changing"};
}

void ClusterImpl::TickFeeds() {
  std::vector<std::shared_ptr<RemoteFeed>> feeds;
  {
    MutexLock lock(&feeds_mu_);
    std::erase_if(
        feeds_, [](const std::weak_ptr<RemoteFeed>& f) { return f.expired(); });
    for (auto& weak : feeds_) {
      if (auto f = weak.lock()) feeds.push_back(std::move(f));
    }
  }
  for (auto& f : feeds) f->Tick();
}

RemoteFeed::RemoteFeed(ClusterImpl& cluster, JobRecord record,
                       std::shared_ptr<Mirror> mirror)
    : cluster_(cluster),
      mirror_(std::move(mirror)),
      record_(std::move(record)),
      lease_written_ms_(NowMs()) {}

RemoteFeed::~RemoteFeed() { End(); }

bool RemoteFeed::cancelled() const {
  std::optional<JobRecord> now = cluster_.Record(mirror_->job()->id());
  return now && now->cancel;
}

bool RemoteFeed::closed() const {
  {
    MutexLock lock(&mu_);
    if (ended_) return true;
  }
  return cancelled();
}

void RemoteFeed::Detach() {
  MutexLock lock(&mu_);
  ended_ = true;  // from now on nothing touches cluster_
  on_room_ = nullptr;
}

bool RemoteFeed::TryPush(std::vector<nlohmann::json>& items,
                         std::function<void()> on_room) {
  MutexLock lock(&mu_);
  if (ended_ || cancelled()) return false;
  if (items.empty()) return true;
  const std::uint64_t take =
      std::min<std::uint64_t>(items.size(), cluster_.Room());
  if (take > 0) {
    std::vector<nlohmann::json> batch(
        std::make_move_iterator(items.begin()),
        std::make_move_iterator(items.begin() + static_cast<long>(take)));
    cluster_.publishing_.fetch_add(take);
    auto stored = cluster_.PublishItems(record_, batch, record_.in);
    cluster_.publishing_.fetch_sub(take);
    if (stored.ok()) {
      items.erase(items.begin(), items.begin() + static_cast<long>(take));
      record_.in += take;
      mirror_->NoteIn(record_.in);
    } else {
      // Nothing of this frame counts (a retried publish is deduplicated by
      // its Msg-Id): the items are put back and pushed again on room.
      for (std::uint64_t i = 0; i < take; ++i) {
        items[i] = std::move(batch[i]);
      }
    }
  }
  if (items.empty()) return true;
  on_room_ = std::move(on_room);
  return false;
}

void RemoteFeed::End() {
  MutexLock lock(&mu_);
  if (ended_) return;
  ended_ = true;
  on_room_ = nullptr;
  record_.open = false;
  WriteRecordLocked();
  cluster_.OnMirrorComplete(record_.id);  // the sealer may finish it now
}

void RemoteFeed::Tick() {
  // A DELETE ends the stream: the sealer then finishes the job.
  if (cancelled()) End();
  // Not while a frame is being stored (that holds mu_ for a round trip):
  // the maintenance thread does not wait on one stream.
  if (!mu_.TryLock()) return;
  std::function<void()> wake = TickLocked();
  mu_.Unlock();
  if (wake) wake();
}

std::function<void()> RemoteFeed::TickLocked() {
  if (ended_) return nullptr;
  if (NowMs() - lease_written_ms_ >= kRenewMs) WriteRecordLocked();
  std::function<void()> wake;
  if (on_room_ && cluster_.Room() > 0) {
    wake = std::move(on_room_);
    on_room_ = nullptr;
  }
  return wake;
}

// The stored `in` and a fresh lease; the final `in` and open=false once
// ended. A lease that could not be written is tried again next second.
void RemoteFeed::WriteRecordLocked() {
  record_.lease_ms = NowMs() + kLeaseMs;
  auto written = cluster_.PutRecordMerged(record_);
  if (written.ok()) {
    lease_written_ms_ = NowMs();
  } else if (written.error().code == "final") {
    ended_ = true;  // another replica ended it: take nothing more
    on_room_ = nullptr;
  }
}

}  // namespace sluice::cluster
