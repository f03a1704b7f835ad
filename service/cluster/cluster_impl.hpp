// The inside of cluster::ClusterService (cluster_service.hpp), shared by the
// files of this room: the connection and layout (connection.cpp), the job
// table fed by the KV watcher (job_table.cpp), submitting (submit.cpp),
// pulling and processing items (worker.cpp), following a job's log
// (mirror.cpp) and sealing finished jobs (sealer.cpp). Not a public header.
#ifndef SLUICE_SERVICE_CLUSTER_CLUSTER_IMPL_HPP_
#define SLUICE_SERVICE_CLUSTER_CLUSTER_IMPL_HPP_

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "service/cluster/nats.hpp"
#include "service/cluster/record.hpp"
#include "service/config/config.hpp"
#include "service/engine/engine.hpp"
#include "service/processors/aggregate.hpp"
#include "service/util/result.hpp"
#include "sluice/patterns/detail/thread_annotations.hpp"
#include "sluice/patterns/mutex.hpp"

namespace sluice::metrics {
class Metrics;
}  // namespace sluice::metrics

namespace sluice::cluster {

// The sluice_cluster_* series (docs/cluster.md). Thread-safe (prometheus
// metrics are).
struct ClusterMetrics {
  explicit ClusterMetrics(metrics::Metrics& metrics);
  prometheus::Gauge& connected;
  prometheus::Gauge& pending_items;
  prometheus::Counter& reconnects;
  prometheus::Family<prometheus::Counter>& acked;
  prometheus::Family<prometheus::Counter>& redelivered;
  prometheus::Family<prometheus::Counter>& duplicates;
  prometheus::Histogram& publish_items;
  prometheus::Histogram& publish_outcomes;
  prometheus::Counter& sealed_with_outcomes;  // seals, by who published them
  prometheus::Counter& sealed_by_sealer;
};

// One job as this replica shows it: a jobs::Job that an ordered consumer on
// the job's log fills, outcome by outcome (in seq order for an ordered
// job), and that ends when the seal arrives. A counting mirror, which only
// lets this replica seal the job, keeps no results: it counts them and
// folds the job's aggregate as they pass. Thread-safe.
class Mirror : public std::enable_shared_from_this<Mirror> {
 public:
  // `on_complete` runs (on a delivery thread) once every seq's outcome has
  // arrived, before the seal.
  // Its job's results are capped at `max_result_bytes`
  // (jobs.max_job_result_bytes), as a single process caps them.
  // With `fold` (an unordered job's fresh aggregator), the mirror is a
  // counting one.
  Mirror(const JobRecord& record, std::uint64_t max_result_bytes,
         std::function<void(const std::string&)> on_complete,
         std::unique_ptr<processors::Aggregator> fold = nullptr);
  ~Mirror();
  Mirror(const Mirror&) = delete;
  Mirror& operator=(const Mirror&) = delete;

  // Subscribes to the job's log from its start. The subscription holds a
  // reference to the mirror until Stop() completes it.
  Result<void> Follow(jsCtx* js, const Names& names);
  // Unsubscribes (idempotent).
  void Stop();
  // Stops for good: a Follow or Refollow, even one under way, subscribes
  // nothing any more. For a mirror leaving the mirror table.
  void Retire();
  // Follows the log again from its start, on a new consumer.
  Result<void> Refollow(jsCtx* js, const Names& names);
  // False once Stop() ran, or when the last Follow/Refollow failed.
  bool following() const;
  // How long since the last message of its log arrived (or since it began
  // following): a mirror that should have its whole log and hears nothing
  // has lost its consumer.
  std::chrono::steady_clock::duration quiet_for() const;

  const std::shared_ptr<jobs::Job>& job() const { return job_; }
  // Distinct seqs whose outcome arrived.
  std::uint64_t seen() const;
  // Messages of the job's log read so far (outcomes, duplicates, the seal).
  std::uint64_t messages() const;
  // An open stream's items stored so far, as its record or feed knows it:
  // the job's `in` grows to it (never shrinks).
  void NoteIn(std::uint64_t in);
  bool sealed() const { return job_->finished(); }
  // Whether its job holds the results (else it is a counting mirror).
  bool keeps_results() const { return fold_ == nullptr; }
  // A counting mirror's aggregate over the outcomes so far (each seq's
  // first, in log order, as a full mirror's results are).
  nlohmann::json folded_aggregate() const;
  std::chrono::steady_clock::time_point last_used() const;
  void Touch();

  // Called by nats.c's delivery threads.
  void OnMessage(natsMsg* msg);

 private:
  // An ordered job's outcome, kept until every seq before it is in.
  void HoldInOrder(std::uint64_t seq, std::vector<jobs::ResultRecord> records,
                   std::uint64_t filtered, std::uint64_t cancelled)
      SLUICE_REQUIRES(mu_);
  void ReleaseInOrder() SLUICE_REQUIRES(mu_);
  void AddOutcomes(const std::vector<std::uint64_t>& seqs,
                   std::vector<jobs::ResultRecord>& records)
      SLUICE_REQUIRES(mu_);
  // A counting mirror's part of AddOutcomes: the fresh records, by seq.
  void CountFresh(const std::vector<jobs::ResultRecord>& records,
                  std::uint64_t filtered) SLUICE_REQUIRES(mu_);
  void NoteInLocked(std::uint64_t in) SLUICE_REQUIRES(mu_);
  void ApplySeal(std::string_view data);

  const std::shared_ptr<jobs::Job> job_;
  const std::function<void(const std::string&)> on_complete_;
  const std::uint64_t in_;  // 0 for an open stream, whose seqs grow
  const bool open_;
  const bool ordered_;
  mutable Mutex mu_;
  const std::unique_ptr<processors::Aggregator> fold_ SLUICE_PT_GUARDED_BY(mu_);
  const bool fold_reads_values_;
  // A counting mirror's stand-in for its job's result cap: the records it
  // would hold (RecordCost), and whether they passed max_result_bytes (then
  // every later record counts cancelled, as a full mirror's Append does).
  const std::uint64_t max_result_bytes_;
  std::uint64_t counted_bytes_ SLUICE_GUARDED_BY(mu_) = 0;
  bool over_cap_ SLUICE_GUARDED_BY(mu_) = false;
  std::vector<bool> seen_ SLUICE_GUARDED_BY(mu_);
  std::uint64_t seen_count_ SLUICE_GUARDED_BY(mu_) = 0;
  std::uint64_t accepted_ SLUICE_GUARDED_BY(mu_) = 0;  // the job's `in`
  std::uint64_t messages_ SLUICE_GUARDED_BY(mu_) = 0;
  // Ordered jobs: outcomes waiting for the seqs before them.
  struct Held {
    std::vector<jobs::ResultRecord> records;
    std::uint64_t filtered = 0, cancelled = 0;
  };
  std::map<std::uint64_t, Held> held_ SLUICE_GUARDED_BY(mu_);
  std::uint64_t next_ SLUICE_GUARDED_BY(mu_) = 0;
  std::chrono::steady_clock::time_point last_used_ SLUICE_GUARDED_BY(mu_);
  std::chrono::steady_clock::time_point last_heard_ SLUICE_GUARDED_BY(mu_);
  mutable Mutex sub_mu_;
  natsSubscription* sub_ SLUICE_GUARDED_BY(sub_mu_) = nullptr;
  bool retired_ SLUICE_GUARDED_BY(sub_mu_) = false;
};

// Items of one job taken by this replica and run as one local engine job.
// Thread-compatible: the worker fills it, the publisher thread drains it.
struct Batch {
  std::string job_id;  // the cluster job
  std::string pipeline;
  // The pull subscription the messages came from: acking or naking a
  // message uses it, so it lives as long as they do (declared first, so it
  // is destroyed last). The worker drops its own reference on a reconnect.
  std::shared_ptr<natsSubscription> sub;
  std::vector<NatsPtr<natsMsg>> msgs;  // the JetStream items messages
  std::vector<nlohmann::json> items;   // their items, in order
  std::vector<std::uint64_t> seqs;     // seqs[i] is items[i]'s seq
  std::shared_ptr<jobs::Job> local;    // the engine's job running them
};

class ClusterImpl;

// A /v1/stream ingestion stream in cluster mode (ingest.cpp): each frame's
// items are stored in JetStream before the next frame is read, with seqs
// that continue; the record stays `open`, its lease renewed every second,
// until End() writes the final `in`. If this replica dies, the lease runs
// out and any replica ends the job with what JetStream stored.
// Thread-safe.
class RemoteFeed final : public engine::IngestFeed {
 public:
  RemoteFeed(ClusterImpl& cluster, JobRecord record,
             std::shared_ptr<Mirror> mirror);
  ~RemoteFeed() override;  // End()
  std::shared_ptr<jobs::Job> job() const override { return mirror_->job(); }
  [[nodiscard]] bool TryPush(std::vector<nlohmann::json>& items,
                             std::function<void()> on_room) override;
  void End() override;
  bool closed() const override;
  // From the maintenance thread: renews the lease; calls a waiting on_room
  // once the cluster has room again; ends the stream once it is cancelled.
  void Tick();
  // The cluster is going away (~ClusterImpl): the feed, which a WebSocket
  // session may still hold, closes and never touches the cluster again.
  void Detach();

 private:
  bool cancelled() const;
  // The lease, and the on_room to call (outside mu_) if room appeared.
  std::function<void()> TickLocked() SLUICE_REQUIRES(mu_);
  void WriteRecordLocked() SLUICE_REQUIRES(mu_);

  ClusterImpl& cluster_;
  const std::shared_ptr<Mirror> mirror_;
  mutable Mutex mu_;
  JobRecord record_ SLUICE_GUARDED_BY(mu_);  // in = items stored so far
  bool ended_ SLUICE_GUARDED_BY(mu_) = false;
  std::function<void()> on_room_ SLUICE_GUARDED_BY(mu_);
  std::int64_t lease_written_ms_ SLUICE_GUARDED_BY(mu_) = 0;
};

// Everything ClusterService does. Thread-safe.
class ClusterImpl {
 public:
  ClusterImpl(const config::Config& config, engine::Engine& engine,
              metrics::Metrics& metrics);
  ~ClusterImpl();

  Result<void> Connect();  // connection.cpp
  void StartThreads();
  void StopTaking();

  Result<std::shared_ptr<jobs::Job>, engine::Refusal> Submit(
      engine::SubmitRequest request);
  Result<std::shared_ptr<engine::IngestFeed>, engine::Refusal> OpenStream(
      std::string_view pipeline);
  std::shared_ptr<jobs::Job> Find(std::string_view id);
  std::vector<std::shared_ptr<jobs::Job>> List(std::size_t limit);
  bool Cancel(std::string_view id);
  std::optional<std::string> unavailable() const;
  bool overloaded() const;
  engine::Engine& engine() { return engine_; }

  // Connection callbacks (connection.cpp).
  void OnConnected();
  void OnDisconnected();
  // The publisher context's ack handler (worker.cpp).
  void OnOutcomeAck(jsPubAck* ack, jsPubAckErr* error);

 private:
  friend class RemoteFeed;

  // connection.cpp
  Result<void> EnsureLayout();
  Result<void> EnsureConsumer(const std::string& pipeline);
  void MaintenanceLoop();
  void SamplePending();
  // The items of the cluster's unfinished jobs, from the job table.
  std::uint64_t PendingItems() const;
  // job_table.cpp
  void WatchLoop();
  void WatchOnce();
  std::optional<JobRecord> Record(std::string_view id) const;
  // The record once it is committed (not accepting), waiting up to `wait`
  // for the submit that is committing it.
  std::optional<JobRecord> CommittedRecord(std::string_view id,
                                           std::chrono::milliseconds wait);
  Result<JobRecord> FetchRecord(std::string_view id) const;
  Result<void> PutRecord(JobRecord& record);
  // Puts `record` in the table unless the table has a newer revision, and
  // keeps pending_in_table_ in step.
  void StoreInTableLocked(const std::string& id, JobRecord record)
      SLUICE_REQUIRES(table_mu_);
  void EraseFromTableLocked(const std::string& id) SLUICE_REQUIRES(table_mu_);
  // A submitter waits on a plain job that the job's final record finishes,
  // not on a mirror (submit.cpp): no consumer per job.
  std::shared_ptr<jobs::Job> AddWaiter(const JobRecord& record);
  void DropWaiter(const std::string& id);
  // Finishes the waiter of `record`'s job, if any, when the record is final.
  void FinishWaiter(const JobRecord& record);
  void PruneWaiters();
  // submit.cpp
  Result<std::shared_ptr<jobs::Job>, engine::Refusal> Admit(
      engine::SubmitRequest& request);
  // Stores items first_seq, first_seq+1, ... of the job.
  // `texts`, when not empty, holds each item's JSON text, stored as it is.
  Result<void> PublishItems(const JobRecord& record,
                            const std::vector<nlohmann::json>& items,
                            std::uint64_t first_seq = 0,
                            const std::vector<std::string_view>& texts = {});
  Result<void> PublishChunk(jsCtx* js, const std::string& subject,
                            const std::string& job, std::uint64_t first_seq,
                            std::uint64_t count, const std::string& data);
  // Items the cluster can still take (jobs.max_pending_items).
  std::uint64_t Room() const;
  // PutRecord; on a lost compare-and-set, reads the record again, keeps its
  // cancel flag and writes ours over it (a few tries).
  Result<void> PutRecordMerged(JobRecord& record);
  void TickFeeds();
  void RollBack(const JobRecord& record);
  // worker.cpp
  void WorkLoop(std::string pipeline);
  // A worker's jobs found uncommitted lately, until when.
  using Uncommitted =
      std::map<std::string, std::chrono::steady_clock::time_point>;
  void Dispatch(const std::string& pipeline,
                const std::shared_ptr<natsSubscription>& sub,
                std::vector<NatsPtr<natsMsg>>& msgs, Uncommitted& uncommitted,
                prometheus::Counter& redelivered);
  void RunBatch(std::shared_ptr<Batch> batch);
  // Whether `batch`'s items (of `job`, with no record in the table) belong
  // to a submit that died before creating the record.
  bool NeverCommitted(const std::string& job, const Batch& batch);
  void PublishLoop();
  // Tells JetStream that the items of running batches are still being
  // worked on, so a long item is not redelivered while it is alive.
  void KeepInProgress();
  // Follows `mirror`'s log again when it has heard nothing for a while
  // although its log must be whole (`whole`: no item of the job is left
  // in the items stream, or the job's record is final).
  void RefollowIfStuck(Mirror& mirror, const JobRecord& record, bool whole);
  // Cancels this replica's running batches of jobs whose record asks for a
  // cancel: their items end cancelled rather than run to the end.
  void CancelBatchesOfCancelledJobs();
  void Publish(Batch& batch);
  // Publishes the outcomes of items [begin, end) of the batch (`data`, the
  // JSON array of their records) as one message.
  // The final record of a job that `batch` finishes alone: every item of
  // a closed, uncancelled job, each chunk on its first delivery (so no
  // outcome of these seqs is in the log before this batch's); else
  // nullopt. Its counts and aggregate come from `per_item`.
  std::optional<JobRecord> WholeJobSeal(
      const Batch& batch,
      const std::vector<std::vector<jobs::ResultRecord>>& per_item);
  // After a batch's outcomes carrying its job's seal are stored: the
  // metric, this replica's waiter of the job, and the final KV record.
  void RecordSealStored(const JobRecord& seal);
  void PublishOutcomes(const Batch& batch, std::size_t begin, std::size_t end,
                       const std::string& data,
                       const std::optional<JobRecord>& seal = std::nullopt);
  std::optional<std::vector<std::vector<jobs::ResultRecord>>> OutcomesOf(
      Batch& batch);
  // mirror.cpp (the mirror table)
  // The job's mirror, made and followed if there is none. One that keeps
  // results (for readers) replaces a counting one (made for sealing).
  std::shared_ptr<Mirror> MirrorOf(const JobRecord& record,
                                   bool keep_results = true);
  // A mirror for sealing only: counting, unless the job is ordered (its
  // aggregate folds in seq order, which a full mirror keeps).
  std::shared_ptr<Mirror> SealingMirrorOf(const JobRecord& record);
  std::shared_ptr<Mirror> ExistingMirror(std::string_view id);
  void RefollowMirrors(bool only_lost);
  // A mirror saw every seq: its job may be sealed now.
  void OnMirrorComplete(const std::string& id);
  void PruneMirrors();
  // sealer.cpp
  void SealFinished();  // every unfinished job (finds crashed sealers)
  void SealTouched();   // the jobs this replica published outcomes for
  void TrySeal(const JobRecord& record);
  bool PublishSeal(const JobRecord& final_record);
  nlohmann::json AggregateOf(const JobRecord& record, const jobs::Job& job);
  // A fresh aggregator of `pipeline`'s aggregate; null for an unknown
  // pipeline.
  std::unique_ptr<processors::Aggregator> AggregatorFor(
      const std::string& pipeline) const;

  const config::Config config_;
  engine::Engine& engine_;
  ClusterMetrics metrics_;
  const Names names_;

  NatsPtr<natsConnection> conn_;
  NatsPtr<jsCtx> js_;  // for requests; thread-safe
  std::atomic<kvStore*> kv_{
      nullptr};  // owned by kv_owner_ once the layout is up
  NatsPtr<kvStore> kv_owner_;

  std::atomic<bool> connected_{false};
  std::atomic<bool> layout_ready_{false};
  std::atomic<bool> table_synced_{false};
  std::atomic<bool> rewatch_{false};
  std::atomic<bool> stopping_{false};
  std::atomic<bool> taking_{true};
  std::atomic<std::uint64_t> pending_items_{0};  // the items stream's Msgs
  std::atomic<std::uint64_t> publishing_{0};     // items Submit is storing

  mutable Mutex table_mu_;
  CondVar table_cv_;  // a record changed
  std::map<std::string, JobRecord, std::less<>> table_
      SLUICE_GUARDED_BY(table_mu_);
  // The items of the table's committed, unfinished jobs (PendingItems).
  std::uint64_t pending_in_table_ SLUICE_GUARDED_BY(table_mu_) = 0;

  Mutex waiters_mu_;
  std::map<std::string, std::weak_ptr<jobs::Job>, std::less<>> waiters_
      SLUICE_GUARDED_BY(waiters_mu_);

  mutable Mutex mirrors_mu_;
  std::map<std::string, std::shared_ptr<Mirror>, std::less<>> mirrors_
      SLUICE_GUARDED_BY(mirrors_mu_);

  Mutex done_mu_;
  CondVar done_cv_;
  std::deque<std::shared_ptr<Batch>> done_ SLUICE_GUARDED_BY(done_mu_);
  std::int64_t running_batches_ SLUICE_GUARDED_BY(done_mu_) = 0;
  // Batches the engine is running, for the in-progress keeper.
  std::set<std::shared_ptr<Batch>> running_ SLUICE_GUARDED_BY(done_mu_);

  Mutex wake_mu_;
  CondVar wake_cv_;  // maintenance: a batch was published, or stopping
  bool wake_ SLUICE_GUARDED_BY(wake_mu_) = false;

  // The publisher's context: its async publishes are one batch's outcomes.
  NatsPtr<jsCtx> publish_js_;
  // Outcome publishes of the batch being published that failed.
  std::atomic<int> outcome_failures_{0};
  // Submit's contexts, one per submit in flight (async publishes complete
  // per context), reused: nats.c gives each context that publishes
  // asynchronously a delivery thread of its own.
  struct SubmitContext {
    NatsPtr<jsCtx> js;
    std::atomic<int> errors{0};
    std::atomic<int> last_code{0};
  };
  std::unique_ptr<SubmitContext> TakeSubmitContext();
  void ReturnSubmitContext(std::unique_ptr<SubmitContext> context);
  Mutex submit_js_mu_;
  std::vector<std::unique_ptr<SubmitContext>> submit_js_
      SLUICE_GUARDED_BY(submit_js_mu_);
  // Outcomes of the batch being published that JetStream already held.
  std::atomic<int> duplicates_in_batch_{0};
  // Items each pipeline's worker holds (a pipeline's limit is its own).
  std::map<std::string, std::atomic<std::int64_t>, std::less<>> held_;
  // Signalled when a published batch gives its items' room back, so a
  // worker waiting for room fetches at once.
  Mutex room_mu_;
  CondVar room_cv_;
  // Jobs with outcomes published lately: the sealer looks at these first.
  Mutex touched_mu_;
  std::set<std::string> touched_ SLUICE_GUARDED_BY(touched_mu_);

  Mutex feeds_mu_;
  std::vector<std::weak_ptr<RemoteFeed>> feeds_ SLUICE_GUARDED_BY(feeds_mu_);

  std::vector<std::thread> workers_;
  std::thread watcher_, maintenance_, publisher_;
};

// Test-only crash points (docs/internal/architecture.md): with
// SLUICE_CLUSTER_FAULT=<point>:<n> the process exits at once (status 137,
// as if killed) the n-th time it reaches <point>.
void MaybeCrash(std::string_view point);

// One line on stderr, "cluster: <line>".
void Log(const std::string& line);

}  // namespace sluice::cluster

#endif  // SLUICE_SERVICE_CLUSTER_CLUSTER_IMPL_HPP_
