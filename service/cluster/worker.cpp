// Taking and finishing items (docs/cluster.md "Each seq counts once"): a
// worker thread per pipeline pulls chunks of items from the pipeline's
// durable consumer as the replica has room, runs each job's items as one
// local engine job (a batch), and the publisher thread publishes the
// batch's outcomes, a few messages on the job's subject, before
// acknowledging its chunks. A replica that dies before the ack leaves the
// chunks to be redelivered after ack_wait; readers take each seq's first
// outcome in the log, so a second one counts nowhere.
#include <algorithm>
#include <charconv>

#include "service/cluster/cluster_impl.hpp"

namespace sluice::cluster {
namespace {

// Items one replica holds at most: enough to keep every stage's workers
// busy, few enough that a dead replica strands little until ack_wait.
constexpr std::int64_t kMaxHeld = 4096;
// Items messages fetched at once: each holds up to kChunkItems items.
constexpr std::int64_t kMaxFetch = 16;

std::vector<jobs::ResultRecord> ErrorOutcome(std::uint64_t seq,
                                             std::string message) {
  jobs::ResultRecord r;
  r.seq = seq;
  r.is_error = true;
  r.error = std::move(message);
  r.stage = "cluster";
  return {std::move(r)};
}

std::string JobOfSubject(std::string_view subject) {
  const std::size_t dot = subject.rfind('.');
  return std::string(dot == std::string_view::npos ? subject
                                                   : subject.substr(dot + 1));
}

std::optional<std::uint64_t> SeqOf(natsMsg* msg) {
  const char* value = nullptr;
  if (natsMsgHeader_Get(msg, kSeqHeader, &value) != NATS_OK) {
    return std::nullopt;
  }
  std::uint64_t seq = 0;
  const std::string_view text(value);
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), seq);
  if (ec != std::errc() || end != text.data() + text.size())
    return std::nullopt;
  return seq;
}

// How many times the item was delivered (0 when that is unknown).
std::uint64_t DeliveryOf(natsMsg* msg) {
  jsMsgMetaData* raw = nullptr;
  if (natsMsg_GetMetaData(&raw, msg) != NATS_OK) return 0;
  NatsPtr<jsMsgMetaData> meta(raw);
  return meta->NumDelivered;
}

// How long a chunk of a job without a record is handed back each time.
constexpr std::int64_t kNoRecordDelayMs = 2000;

}  // namespace

// Items this replica takes for a pipeline at most: a few per worker of its
// widest stage, so it never holds more than it works on within ack_wait.
std::int64_t HeldLimit(const config::Config& config, std::string_view name) {
  std::int64_t widest = 1;
  for (const config::PipelineConfig& p : config.pipelines) {
    if (p.name != name) continue;
    for (const config::StageConfig& s : p.stages) {
      widest = std::max<std::int64_t>(widest, s.workers);
    }
  }
  return std::clamp<std::int64_t>(8 * widest, 1024, kMaxHeld);
}

void ClusterImpl::WorkLoop(std::string pipeline) {
  const std::int64_t held_limit = HeldLimit(config_, pipeline);
  std::atomic<std::int64_t>& held = held_.find(pipeline)->second;
  // Shared with the batches of its messages (Batch::sub): a reconnect
  // drops this reference while they may still be running.
  std::shared_ptr<natsSubscription> sub;
  prometheus::Counter& redelivered =
      metrics_.redelivered.Add({{"pipeline", pipeline}});
  Uncommitted uncommitted;
  while (taking_.load()) {
    if (!connected_.load() || !layout_ready_.load() || !table_synced_.load()) {
      sub.reset();
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      continue;
    }
    if (sub == nullptr) {
      jsSubOptions so;
      jsSubOptions_Init(&so);
      const std::string stream = names_.items_stream();
      so.Stream = stream.c_str();
      so.Consumer = pipeline.c_str();
      natsSubscription* raw = nullptr;
      jsErrCode code = static_cast<jsErrCode>(0);
      const std::string filter = names_.pipeline_items(pipeline);
      if (js_PullSubscribe(&raw, js_.get(), filter.c_str(), pipeline.c_str(),
                           nullptr, &so, &code) != NATS_OK) {
        layout_ready_.store(false);  // the consumer may be gone: make it again
        std::this_thread::sleep_for(std::chrono::milliseconds(200));
        continue;
      }
      sub.reset(raw, natsSubscription_Destroy);
    }
    const std::int64_t room = held_limit - held.load();
    if (room <= 0) {
      MutexLock lock(&room_mu_);
      if (held.load() >= held_limit && taking_.load()) {
        room_cv_.WaitUntil(&room_mu_, std::chrono::steady_clock::now() +
                                          std::chrono::milliseconds(50));
      }
      continue;
    }
    natsMsgList list{};
    jsErrCode code = static_cast<jsErrCode>(0);
    const natsStatus s = natsSubscription_Fetch(
        &list, sub.get(),
        static_cast<int>(std::clamp<std::int64_t>(
            room / static_cast<std::int64_t>(kChunkItems), 1, kMaxFetch)),
        500, &code);
    if (s == NATS_TIMEOUT) continue;
    if (s != NATS_OK) {
      natsMsgList_Destroy(&list);
      if (s == NATS_INVALID_SUBSCRIPTION || s == NATS_CONNECTION_CLOSED)
        sub.reset();
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      continue;
    }
    std::vector<NatsPtr<natsMsg>> msgs;
    msgs.reserve(static_cast<std::size_t>(list.Count));
    for (int i = 0; i < list.Count; ++i) {
      msgs.emplace_back(list.Msgs[i]);
      list.Msgs[i] = nullptr;
    }
    natsMsgList_Destroy(&list);
    Dispatch(pipeline, sub, msgs, uncommitted, redelivered);
  }
}

// Groups fetched items by job and starts a batch per committed job; items of
// unknown, cancelled or finished jobs are handed back or dropped.
void ClusterImpl::Dispatch(const std::string& pipeline,
                           const std::shared_ptr<natsSubscription>& sub,
                           std::vector<NatsPtr<natsMsg>>& msgs,
                           Uncommitted& uncommitted,
                           prometheus::Counter& redelivered) {
  std::map<std::string, std::shared_ptr<Batch>> batches;
  for (NatsPtr<natsMsg>& msg : msgs) {
    const std::optional<std::uint64_t> first = SeqOf(msg.get());
    const char* data = natsMsg_GetData(msg.get());
    nlohmann::json items = nlohmann::json::parse(
        std::string_view(
            data == nullptr ? "" : data,
            static_cast<std::size_t>(natsMsg_GetDataLength(msg.get()))),
        nullptr, false);
    if (!first || !items.is_array()) {
      natsMsg_Term(msg.get(), nullptr);  // not items sluice published
      continue;
    }
    const std::string job = JobOfSubject(natsMsg_GetSubject(msg.get()));
    std::shared_ptr<Batch>& batch = batches[job];
    if (!batch) {
      batch = std::make_shared<Batch>();
      batch->job_id = job;
      batch->pipeline = pipeline;
      batch->sub = sub;
    }
    for (std::size_t i = 0; i < items.size(); ++i) {
      batch->seqs.push_back(*first + i);
      batch->items.push_back(std::move(items[i]));
    }
    batch->msgs.push_back(std::move(msg));
  }
  const auto now = std::chrono::steady_clock::now();
  std::erase_if(uncommitted, [now](const auto& e) { return e.second < now; });
  for (auto& [job, batch] : batches) {
    // Items arrive as their submit stores them, a moment before it commits
    // the record: wait that moment rather than hand the items back. A job
    // found uncommitted lately is not waited for again: its submit may have
    // died, and its items must not hold up everyone else's.
    const bool known = uncommitted.count(job) > 0;
    const std::optional<JobRecord> record =
        CommittedRecord(job, known ? std::chrono::milliseconds(0)
                                   : std::chrono::milliseconds(100));
    if (record && (record->cancel || record->final())) {
      for (auto& msg : batch->msgs) natsMsg_Term(msg.get(), nullptr);
    } else if (!record && NeverCommitted(job, *batch)) {
      // Its submit died between storing the items and creating the record:
      // no client got a 202, and the job never existed.
      for (auto& msg : batch->msgs) natsMsg_Term(msg.get(), nullptr);
    } else if (!record || record->accepting()) {
      // Not committed: its submit is still storing, or failed or died (the
      // items go above, or with the janitor's purge of an old `accepting`
      // record). Handed back for a while, so that the consumer serves newer
      // items meanwhile.
      uncommitted[job] = now + std::chrono::seconds(1);
      for (auto& msg : batch->msgs) {
        natsMsg_NakWithDelay(msg.get(), kNoRecordDelayMs, nullptr);
      }
    } else {
      if (!batch->msgs.empty() && DeliveryOf(batch->msgs.front().get()) > 1) {
        redelivered.Increment(static_cast<double>(batch->seqs.size()));
      }
      RunBatch(std::move(batch));
    }
  }
}

void ClusterImpl::RunBatch(std::shared_ptr<Batch> batch) {
  engine::SubmitRequest request;
  request.pipeline = batch->pipeline;
  request.ordered = false;  // readers order an ordered job's outcomes
  request.items = std::move(batch->items);
  auto local = engine_.Submit(std::move(request));
  if (!local.ok()) {  // full or draining: another replica, or later
    for (NatsPtr<natsMsg>& msg : batch->msgs) {
      natsMsg_NakWithDelay(msg.get(), 200, nullptr);
    }
    return;
  }
  batch->local = local.value();
  const auto n = static_cast<std::int64_t>(batch->seqs.size());
  held_.find(batch->pipeline)->second.fetch_add(n);
  {
    MutexLock lock(&done_mu_);
    ++running_batches_;
    running_.insert(batch);
  }
  auto finished = [this, batch] {
    MutexLock lock(&done_mu_);
    running_.erase(batch);
    done_.push_back(batch);
    done_cv_.SignalAll();
  };
  if (!batch->local->NotifyWhenFinished(finished)) finished();
}

void ClusterImpl::PublishLoop() {
  while (true) {
    std::shared_ptr<Batch> batch;
    {
      MutexLock lock(&done_mu_);
      while (done_.empty() && !(stopping_.load() && running_batches_ == 0)) {
        done_cv_.WaitUntil(&done_mu_, std::chrono::steady_clock::now() +
                                          std::chrono::milliseconds(100));
      }
      if (done_.empty()) return;
      batch = std::move(done_.front());
      done_.pop_front();
    }
    Publish(*batch);
    {
      MutexLock lock(&room_mu_);
      held_.find(batch->pipeline)
          ->second.fetch_sub(static_cast<std::int64_t>(batch->seqs.size()));
      room_cv_.SignalAll();
    }
    engine_.Forget(batch->local->id());
    MutexLock lock(&done_mu_);
    --running_batches_;
    done_cv_.SignalAll();
  }
}

void ClusterImpl::KeepInProgress() {
  // Under done_mu_: the publisher acks a batch's messages only after it
  // left running_, so no message is touched by both threads at once.
  MutexLock lock(&done_mu_);
  for (const std::shared_ptr<Batch>& batch : running_) {
    for (const NatsPtr<natsMsg>& msg : batch->msgs) {
      natsMsg_InProgress(msg.get(), nullptr);
    }
  }
}

void ClusterImpl::CancelBatchesOfCancelledJobs() {
  std::vector<std::string> local_ids;
  {
    MutexLock lock(&done_mu_);
    for (const std::shared_ptr<Batch>& batch : running_) {
      std::optional<JobRecord> record = Record(batch->job_id);
      if (record && record->cancel && !record->final()) {
        local_ids.push_back(batch->local->id());
      }
    }
  }
  // Outside done_mu_: a cancelled batch may finish at once, and its finish
  // callback takes done_mu_. It then ends cancelled, so Publish hands its
  // items back, and the sealer purges them and counts them cancelled.
  for (const std::string& id : local_ids) engine_.Cancel(id);
}

// The age is counted in hand-backs, not clocks (the replica's and the NATS
// server's may differ): a chunk handed back kNoRecordDelayMs at a time has
// waited kAcceptTimeoutMs once delivered that many times; a submit gives
// up before then (submit.cpp). The KV store, not this replica's table
// (which may be reloading after a reconnect), says the record is absent.
bool ClusterImpl::NeverCommitted(const std::string& job, const Batch& batch) {
  const std::uint64_t handed_back = kAcceptTimeoutMs / kNoRecordDelayMs;
  if (batch.msgs.empty() || DeliveryOf(batch.msgs.front().get()) <= handed_back)
    return false;
  auto fetched = FetchRecord(job);
  return !fetched.ok() && fetched.error().code == "not_found";
}

// What each item of a finished batch ended as, in the batch's order; an
// error record for every item when the batch failed for good (its results
// passed jobs.max_job_result_bytes, which a retry would pass again);
// nullopt when it should be retried (cancelled by a shutdown, or the result
// memory full for now).
std::optional<std::vector<std::vector<jobs::ResultRecord>>>
ClusterImpl::OutcomesOf(Batch& batch) {
  const jobs::JobState state = batch.local->state();
  const nlohmann::json error = batch.local->error();
  std::vector<std::vector<jobs::ResultRecord>> per_item(batch.seqs.size());
  if (state == jobs::JobState::kFailed && error.is_object() &&
      error.value("code", std::string()) == jobs::kResultsTooLarge) {
    for (std::size_t i = 0; i < per_item.size(); ++i) {
      per_item[i] =
          ErrorOutcome(batch.seqs[i], error.value("message", std::string()));
    }
    return per_item;
  }
  if (state != jobs::JobState::kDone) return std::nullopt;
  // The batch job is forgotten once published: its log is moved, not copied.
  for (jobs::ResultRecord& r : batch.local->TakeResults()) {
    if (r.seq >= per_item.size()) continue;
    const std::size_t i = r.seq;
    r.seq = batch.seqs[i];
    per_item[i].push_back(std::move(r));
  }
  return per_item;
}

void ClusterImpl::OnOutcomeAck(jsPubAck* ack, jsPubAckErr* error) {
  if (error != nullptr) {
    outcome_failures_.fetch_add(1);
  } else if (ack != nullptr && ack->Duplicate) {
    duplicates_in_batch_.fetch_add(1);  // the same message stored before
  }
}

// A batch's outcomes, as few messages as fit (NATS's cost is per message),
// then the acks: the items are acknowledged only once every outcome is
// stored. A redelivered item may get a second outcome in the log; readers
// take each seq's first (docs/cluster.md), so it is counted once.
void ClusterImpl::Publish(Batch& batch) {
  std::optional<std::vector<std::vector<jobs::ResultRecord>>> outcomes =
      OutcomesOf(batch);
  if (!outcomes) {
    // Cancelled by this process's shutdown, or out of result memory for
    // now: the items go back to the cluster untouched.
    for (NatsPtr<natsMsg>& msg : batch.msgs) natsMsg_Nak(msg.get(), nullptr);
    return;
  }
  std::vector<std::vector<jobs::ResultRecord>>& per_item = *outcomes;
  const std::size_t max_data =
      static_cast<std::size_t>(natsConnection_GetMaxPayload(conn_.get())) / 4;
  const auto started = std::chrono::steady_clock::now();
  outcome_failures_.store(0);
  std::size_t begin = 0;
  std::string data;
  for (std::size_t i = 0; i < per_item.size(); ++i) {
    std::string item = EncodeOutcome(per_item[i]);
    if (item.size() > max_data) {
      per_item[i] = ErrorOutcome(
          batch.seqs[i], "the item's results (" + std::to_string(item.size()) +
                             " bytes) are larger than a NATS message allows");
      item = EncodeOutcome(per_item[i]);
    }
    if (i > begin && data.size() + item.size() > max_data) {
      PublishOutcomes(batch, begin, i, data);
      begin = i;
      data.clear();
    }
    data += item;
  }
  // The last message seals the job too when this batch finishes it alone:
  // one round trip less than the sealer's, for every small job.
  const std::optional<JobRecord> seal = WholeJobSeal(batch, per_item);
  if (begin < per_item.size()) {
    PublishOutcomes(batch, begin, per_item.size(), data, seal);
  }
  jsPubOptions po;
  jsPubOptions_Init(&po);
  po.MaxWait = 10000;
  const bool complete =
      js_PublishAsyncComplete(publish_js_.get(), &po) == NATS_OK;
  if (!complete) {
    natsMsgList pending{};
    if (js_PublishAsyncGetPendingList(&pending, publish_js_.get()) == NATS_OK) {
      natsMsgList_Destroy(&pending);
    }
  }
  metrics_.publish_outcomes.Observe(
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started)
          .count());
  MaybeCrash("after_outcome_published");
  const bool stored = complete && outcome_failures_.load() == 0;
  metrics_.duplicates.Add({{"pipeline", batch.pipeline}})
      .Increment(duplicates_in_batch_.exchange(0));
  for (NatsPtr<natsMsg>& msg : batch.msgs) {
    if (stored) {
      natsMsg_Ack(msg.get(), nullptr);
    } else {
      natsMsg_NakWithDelay(msg.get(), 500, nullptr);
    }
  }
  if (stored) {
    metrics_.acked.Add({{"pipeline", batch.pipeline}})
        .Increment(static_cast<double>(batch.seqs.size()));
    if (seal) RecordSealStored(*seal);
  }
  {
    MutexLock lock(&touched_mu_);
    touched_.insert(batch.job_id);
  }
  MutexLock lock(&wake_mu_);
  wake_ = true;
  wake_cv_.SignalAll();
}

void ClusterImpl::RecordSealStored(const JobRecord& seal) {
  metrics_.sealed_with_outcomes.Increment();
  // The record follows the seal at once (PutRecord finishes this replica's
  // waiter, and the others' watchers theirs), so a GET right after the
  // ?wait= answer finds it final. A lost compare-and-set (a cancel came
  // meanwhile) leaves the record to the sealer; the seal is stored with
  // the outcomes, so the job has ended all the same.
  JobRecord final_record = seal;
  if (!PutRecord(final_record).ok()) FinishWaiter(seal);
}

std::optional<JobRecord> ClusterImpl::WholeJobSeal(
    const Batch& batch,
    const std::vector<std::vector<jobs::ResultRecord>>& per_item) {
  std::optional<JobRecord> record = Record(batch.job_id);
  if (!record || record->final() || record->accepting() || record->open ||
      record->cancel || record->in != batch.seqs.size()) {
    return std::nullopt;
  }
  std::vector<bool> seen(record->in, false);
  for (std::uint64_t seq : batch.seqs) {
    if (seq >= record->in || seen[seq]) return std::nullopt;
    seen[seq] = true;
  }
  for (const NatsPtr<natsMsg>& msg : batch.msgs) {
    if (DeliveryOf(msg.get()) != 1) return std::nullopt;
  }
  std::unique_ptr<processors::Aggregator> aggregator =
      AggregatorFor(record->pipeline);
  JobRecord final_record = *record;
  final_record.state = "done";
  final_record.counts = jobs::Counts{};
  final_record.counts.in = record->in;
  for (const std::vector<jobs::ResultRecord>& records : per_item) {
    if (records.empty()) ++final_record.counts.filtered;
    for (const jobs::ResultRecord& r : records) {
      if (r.is_error) {
        ++final_record.counts.errors;
        continue;
      }
      ++final_record.counts.out;
      if (aggregator) aggregator->Add(r.value);
    }
  }
  final_record.aggregate = aggregator ? aggregator->Result() : nullptr;
  final_record.finished_ms = ToUnixMs(jobs::Job::Clock::now());
  return final_record;
}

void ClusterImpl::PublishOutcomes(const Batch& batch, std::size_t begin,
                                  std::size_t end, const std::string& data,
                                  const std::optional<JobRecord>& seal) {
  const std::string subject = names_.results_subject(batch.job_id);
  natsMsg* m = nullptr;
  if (natsMsg_Create(&m, subject.c_str(), nullptr, data.data(),
                     static_cast<int>(data.size())) != NATS_OK) {
    outcome_failures_.fetch_add(1);  // handed back below, never acked
    return;
  }
  const std::vector<std::uint64_t> seqs(
      batch.seqs.begin() + static_cast<long>(begin),
      batch.seqs.begin() + static_cast<long>(end));
  natsMsgHeader_Set(m, kSeqsHeader, EncodeSeqs(seqs).c_str());
  if (seal) natsMsgHeader_Set(m, kFinalHeader, seal->Serialize().c_str());
  // The same batch published again (a retry) is stored once.
  const std::string msg_id = batch.job_id +
                             ":o:" + std::to_string(batch.seqs[begin]) + ":" +
                             std::to_string(end - begin);
  jsPubOptions po;
  jsPubOptions_Init(&po);
  po.MsgId = msg_id.c_str();
  if (js_PublishMsgAsync(publish_js_.get(), &m, &po) != NATS_OK) {
    outcome_failures_.fetch_add(1);
  }
  NatsPtr<natsMsg> unsent(m);
}

}  // namespace sluice::cluster
