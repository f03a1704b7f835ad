// Ending jobs (docs/cluster.md "Finishing"): once this replica's mirror has
// every seq's outcome (a cancelled or orphaned job: once none of its items
// is left and the mirror has read all its messages), the replica publishes
// the seal — the final record as the job's last message, Msg-Id <job>:end;
// readers apply the first seal in the log — and writes it to the job's KV
// record. Every replica runs this over every unfinished job each second,
// which finishes the jobs of replicas that died; the janitor part removes
// what crashed submits and expired jobs left.

#include "service/cluster/cluster_impl.hpp"
#include "service/processors/aggregate.hpp"

namespace sluice::cluster {
namespace {

// Messages of `stream` on subjects matching `filter`.
std::optional<std::uint64_t> Stored(jsCtx* js, const std::string& stream,
                                    const std::string& filter) {
  jsOptions jo;
  jsOptions_Init(&jo);
  jo.Stream.Info.SubjectsFilter = filter.c_str();
  jsStreamInfo* raw = nullptr;
  jsErrCode code = static_cast<jsErrCode>(0);
  if (js_GetStreamInfo(&raw, js, stream.c_str(), &jo, &code) != NATS_OK) {
    return std::nullopt;
  }
  NatsPtr<jsStreamInfo> info(raw);
  std::uint64_t n = 0;
  if (info->State.Subjects != nullptr) {
    for (int i = 0; i < info->State.Subjects->Count; ++i) {
      n += info->State.Subjects->List[i].Msgs;
    }
  }
  return n;
}

// Items of the job still in the items stream (not yet acknowledged).
std::optional<std::uint64_t> Remaining(jsCtx* js, const Names& names,
                                       const std::string& job) {
  return Stored(js, names.items_stream(), names.job_items(job));
}

void PurgeSubject(jsCtx* js, const std::string& stream,
                  const std::string& subject) {
  jsOptions jo;
  jsOptions_Init(&jo);
  jo.Stream.Purge.Subject = subject.c_str();
  jsErrCode code = static_cast<jsErrCode>(0);
  js_PurgeStream(js, stream.c_str(), &jo, &code);
}

}  // namespace

void ClusterImpl::SealTouched() {
  std::set<std::string> touched;
  {
    MutexLock lock(&touched_mu_);
    touched.swap(touched_);
  }
  for (const std::string& id : touched) {
    std::optional<JobRecord> record = Record(id);
    if (record && !record->final() && !record->accepting()) TrySeal(*record);
  }
}

void ClusterImpl::SealFinished() {
  std::vector<JobRecord> records;
  {
    MutexLock lock(&table_mu_);
    for (const auto& [id, record] : table_) records.push_back(record);
  }
  const std::int64_t now_ms = ToUnixMs(jobs::Job::Clock::now());
  const std::int64_t retention_ms = config_.jobs.retention.count();
  for (const JobRecord& record : records) {
    if (record.accepting()) {
      if (now_ms - record.created_ms > kAcceptTimeoutMs) {
        // Its submit died before the commit: no client got a 202.
        PurgeSubject(js_.get(), names_.items_stream(),
                     names_.job_items(record.id));
        kvStore_Purge(kv_.load(), record.id.c_str(), nullptr);
      }
    } else if (!record.final()) {
      TrySeal(record);
    } else if (std::shared_ptr<Mirror> mirror = ExistingMirror(record.id);
               mirror != nullptr && !mirror->sealed()) {
      RefollowIfStuck(*mirror, record, /*whole=*/true);  // it missed the seal
    } else if (now_ms - record.finished_ms > retention_ms) {
      PurgeSubject(js_.get(), names_.results_stream(),
                   names_.results_subject(record.id));
      kvStore_Purge(kv_.load(), record.id.c_str(), nullptr);
    }
  }
}

void ClusterImpl::TrySeal(const JobRecord& record) {
  // An open stream ends when its feed says so, or when its replica died
  // (the lease ran out): then with what JetStream stored.
  const bool orphaned =
      record.open && record.lease_ms < ToUnixMs(jobs::Job::Clock::now());
  if (record.open && !orphaned) return;
  const bool partial = record.cancel || orphaned;  // fewer outcomes than `in`
  std::shared_ptr<Mirror> mirror = ExistingMirror(record.id);
  // Without a mirror here, one is made only once no item is left: a replica
  // reads a job's whole log only when it may be the one to seal it.
  if (partial || mirror == nullptr) {
    if (record.cancel) {
      PurgeSubject(js_.get(), names_.items_stream(),
                   names_.job_items(record.id));
    }
    const std::optional<std::uint64_t> remaining =
        Remaining(js_.get(), names_, record.id);
    if (!remaining || *remaining > 0) return;
    if (mirror == nullptr) mirror = SealingMirrorOf(record);
  }
  if (mirror->sealed()) {
    // Sealed by someone, but the record may not say so yet (the sealer
    // died in between): copy the seal into it.
    JobRecord final_record = record;
    const nlohmann::json status = mirror->job()->Status();
    if (final_record.final()) return;
    final_record.state = status.value("state", std::string("done"));
    final_record.counts = mirror->job()->counts();
    final_record.aggregate = mirror->job()->aggregate();
    final_record.finished_ms = ToUnixMs(
        mirror->job()->finished_at().value_or(jobs::Job::Clock::now()));
    (void)PutRecord(final_record);
    return;
  }
  // Every outcome must be in the mirror: items are acked only after their
  // outcome is stored, but the mirror may lag the stream. A cancelled job
  // has fewer: the mirror must have read as many as the stream holds, so
  // the seal's counts match the results every reader shows.
  if (!partial && mirror->seen() < record.in) {
    RefollowIfStuck(*mirror, record, /*whole=*/false);
    return;
  }
  if (partial) {
    const std::optional<std::uint64_t> stored = Stored(
        js_.get(), names_.results_stream(), names_.results_subject(record.id));
    if (!stored || mirror->messages() < *stored) return;
  }
  JobRecord final_record = record;
  final_record.state = record.cancel ? "cancelled" : "done";
  final_record.open = false;
  if (orphaned) final_record.in = mirror->seen();  // what the log holds
  final_record.counts = mirror->job()->counts();
  final_record.counts.in = final_record.in;
  if (record.cancel) {
    const std::uint64_t seen = mirror->seen();
    final_record.counts.cancelled +=
        final_record.in - std::min(final_record.in, seen);
  }
  final_record.aggregate = mirror->keeps_results()
                               ? AggregateOf(record, *mirror->job())
                               : mirror->folded_aggregate();
  final_record.finished_ms = ToUnixMs(jobs::Job::Clock::now());
  if (!PublishSeal(final_record)) return;
  metrics_.sealed_by_sealer.Increment();
  MaybeCrash("after_seal");
  // The seal is the truth; the record follows it (a lost CAS means another
  // replica wrote it first).
  (void)PutRecord(final_record);
}

void ClusterImpl::RefollowIfStuck(Mirror& mirror, const JobRecord& record,
                                  bool whole) {
  constexpr auto kQuiet = std::chrono::seconds(5);
  if (mirror.quiet_for() < kQuiet) return;
  if (!whole) {
    // Items still out there explain the quiet (a long item, a dead
    // replica's items waiting for ack_wait); none left means every outcome
    // is stored, and a mirror short of them lost its consumer.
    const std::optional<std::uint64_t> remaining =
        Remaining(js_.get(), names_, record.id);
    if (!remaining || *remaining > 0) return;
  }
  Log("the mirror of job " + record.id + " heard nothing for " +
      std::to_string(kQuiet.count()) +
      " s with its log complete: following it again");
  if (auto r = mirror.Refollow(js_.get(), names_); !r.ok()) {
    Log(r.error().message + " (tried again shortly)");
  }
}

// The seal: the final record as the last message of the job's log. Its
// Msg-Id makes two replicas sealing at once store one; readers apply the
// first seal in the log in any case, so every replica shows the same end.
bool ClusterImpl::PublishSeal(const JobRecord& final_record) {
  const std::string data = final_record.Serialize();
  const std::string subject = names_.results_subject(final_record.id);
  natsMsg* m = nullptr;
  if (natsMsg_Create(&m, subject.c_str(), nullptr, data.data(),
                     static_cast<int>(data.size())) != NATS_OK) {
    return false;
  }
  NatsPtr<natsMsg> msg(m);
  natsMsgHeader_Set(msg.get(), kSealHeader, "1");
  const std::string msg_id = final_record.id + ":end";
  jsPubOptions po;
  jsPubOptions_Init(&po);
  po.MsgId = msg_id.c_str();
  jsPubAck* ack = nullptr;
  jsErrCode code = static_cast<jsErrCode>(0);
  const natsStatus s = js_PublishMsg(&ack, js_.get(), msg.get(), &po, &code);
  if (ack != nullptr) jsPubAck_Destroy(ack);
  return s == NATS_OK;
}

std::unique_ptr<processors::Aggregator> ClusterImpl::AggregatorFor(
    const std::string& pipeline) const {
  for (const config::PipelineConfig& p : config_.pipelines) {
    if (p.name == pipeline) return processors::MakeAggregator(p.aggregate);
  }
  return nullptr;
}

nlohmann::json ClusterImpl::AggregateOf(const JobRecord& record,
                                        const jobs::Job& job) {
  std::unique_ptr<processors::Aggregator> aggregator =
      AggregatorFor(record.pipeline);
  if (!aggregator) return nullptr;
  const bool reads = aggregator->ReadsValues();
  job.ForEachResult([&aggregator, reads](const jobs::ResultRecord& r) {
    if (r.is_error || r.window) return;
    if (r.value_text.empty()) {
      aggregator->Add(r.value);
    } else {
      // A mirror keeps values as text: parsed only for an aggregate that
      // looks at them.
      aggregator->Add(reads ? jobs::ValueOf(r) : nlohmann::json());
    }
  });
  return aggregator->Result();
}

}  // namespace sluice::cluster
