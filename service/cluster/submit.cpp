// Submitting a job in cluster mode (docs/cluster.md "202 means durable"):
// every item is published to the items stream and acknowledged by
// JetStream, and only then is the job's record created, committed
// (`queued`), and the 202 sent. Any failure on the way purges what was
// stored, so a refused job leaves nothing behind; items whose submit died
// before the record are dropped by the workers (worker.cpp).
#include <chrono>

#include "service/cluster/cluster_impl.hpp"

namespace sluice::cluster {
namespace {

using engine::Refusal;

// Counts one submit's failed publishes (the context's error handler).
template <class Context>
void OnItemError(jsCtx*, jsPubAckErr* pae, void* closure) {
  auto* context = static_cast<Context*>(closure);
  context->errors.fetch_add(1);
  context->last_code.store(static_cast<int>(pae->ErrCode));
}

Refusal Unavailable(const std::string& why) {
  return Refusal{
      Refusal::Reason::kUnavailable,
      "NATS JetStream (cluster.nats.url) cannot take the job now: " + why};
}

}  // namespace

Result<std::shared_ptr<jobs::Job>, Refusal> ClusterImpl::Submit(
    engine::SubmitRequest request) {
  if (engine_.draining()) {
    return Refusal{Refusal::Reason::kDraining,
                   "the service is shutting down and admits no new jobs"};
  }
  if (!engine_.HasPipeline(request.pipeline)) {
    return Refusal{Refusal::Reason::kUnknownPipeline,
                   "unknown pipeline \"" + request.pipeline + "\""};
  }
  if (auto why = unavailable()) return Unavailable(*why);
  const std::uint64_t n = request.count();
  const std::uint64_t max = config_.jobs.max_pending_items;
  if (n > max) {
    return Refusal{Refusal::Reason::kJobTooLarge,
                   "the job has " + std::to_string(n) +
                       " items, more than jobs.max_pending_items (" +
                       std::to_string(max) + ")"};
  }
  const std::uint64_t pending = PendingItems() + publishing_.load();
  if (pending + n > max) {
    return Refusal{Refusal::Reason::kOverCapacity,
                   "over capacity: " + std::to_string(pending) +
                       " items pending in the cluster, " + std::to_string(n) +
                       " more would exceed jobs.max_pending_items (" +
                       std::to_string(max) + ")"};
  }
  publishing_.fetch_add(n);
  auto admitted = Admit(request);
  publishing_.fetch_sub(n);
  return admitted;
}

Result<std::shared_ptr<jobs::Job>, Refusal> ClusterImpl::Admit(
    engine::SubmitRequest& request) {
  JobRecord record;
  record.id = jobs::NewJobId();
  record.pipeline = request.pipeline;
  record.in = request.count();
  record.created_ms = ToUnixMs(jobs::Job::Clock::now());
  record.ordered = request.ordered.value_or(false);
  for (const config::PipelineConfig& p : config_.pipelines) {
    if (p.name == request.pipeline && !request.ordered)
      record.ordered = p.ordered;
  }
  // The submitter (a ?wait=) waits on the job's record through the job
  // table, which the job's seal ends, not on a mirror holding its results:
  // a reader that asks for them gets a mirror (Find).
  std::shared_ptr<jobs::Job> waiter = AddWaiter(record);
  // The items first, then the record, created committed (`queued`): a
  // worker runs no item of a job without a committed record, and drops the
  // items of one that never got a record (its submit died in between; no
  // client got a 202) after handing them back for kAcceptTimeoutMs.
  const auto storing_since = std::chrono::steady_clock::now();
  auto stored = PublishItems(record, request.items, 0, request.item_texts);
  if (stored.ok() && std::chrono::steady_clock::now() - storing_since >
                         std::chrono::milliseconds(kAcceptTimeoutMs / 2)) {
    // Workers drop items whose record has not come within
    // kAcceptTimeoutMs: never create one that late.
    stored =
        Error{"cluster", "storing the items took over " +
                             std::to_string(kAcceptTimeoutMs / 2000) + " s"};
  }
  if (auto& r = stored; !r.ok()) {
    DropWaiter(record.id);
    RollBack(record);
    if (r.error().code == "too_large") {
      return Refusal{Refusal::Reason::kJobTooLarge, r.error().message};
    }
    if (r.error().code == "full") {
      return Refusal{Refusal::Reason::kOverCapacity,
                     "over capacity: the cluster's items stream is full "
                     "(jobs.max_pending_items)"};
    }
    return Unavailable(r.error().message);
  }
  MaybeCrash("after_items_published");
  record.state = "queued";
  if (auto r = PutRecord(record); !r.ok()) {
    DropWaiter(record.id);
    RollBack(record);
    return Unavailable(r.error().message);
  }
  if (record.in > kChunkItems) {
    // A big job is sealed by whoever has read its whole log: this replica
    // reads it as it grows (counting, keeping no results), so the seal
    // follows the last outcome at once. A small one is usually sealed by
    // the batch that runs it (worker.cpp), and a mirror per small job
    // would cost a consumer made and deleted for nothing.
    SealingMirrorOf(record);
  } else if (record.in == 0) {
    TrySeal(record);
  }
  // The record may have ended before the waiter could see it.
  if (std::optional<JobRecord> now = Record(record.id); now && now->final())
    FinishWaiter(*now);
  return waiter;
}

// Publishes every item (Msg-Id <job>:<seq>, so a retried publish is stored
// once) and waits until JetStream acknowledged them all.
Result<void> ClusterImpl::PublishItems(
    const JobRecord& record, const std::vector<nlohmann::json>& items,
    std::uint64_t first_seq, const std::vector<std::string_view>& texts) {
  const bool as_sent = !texts.empty();
  const std::size_t n = as_sent ? texts.size() : items.size();
  std::unique_ptr<SubmitContext> context = TakeSubmitContext();
  if (!context) return Error{"cluster", "cannot create a JetStream context"};
  struct Return {  // the context goes back to the pool however this ends
    ClusterImpl* self;
    std::unique_ptr<SubmitContext>& context;
    ~Return() { self->ReturnSubmitContext(std::move(context)); }
  } give_back{this, context};
  jsCtx* js = context->js.get();
  const auto started = std::chrono::steady_clock::now();
  const std::string subject = names_.items_subject(record.pipeline, record.id);
  const auto max_data =
      static_cast<std::size_t>(natsConnection_GetMaxPayload(conn_.get()));
  std::uint64_t i = 0;
  while (i < n) {
    // One message per chunk of consecutive items (Msg-Id <job>:<first>, so
    // a retried publish is stored once): NATS's cost is per message.
    const std::uint64_t first = i;
    std::string data = "[";
    while (i < n && i - first < kChunkItems) {
      // The client's text as it came (already checked to be JSON), or
      // the item serialized again.
      std::string dumped = as_sent ? std::string() : items[i].dump();
      const std::string_view item = as_sent ? texts[i] : dumped;
      if (item.size() + 256 > max_data) {  // 256: the headers' room
        return Error{"too_large",
                     "item " + std::to_string(first_seq + i) + " is " +
                         std::to_string(item.size()) +
                         " bytes, over what a NATS message holds here (" +
                         std::to_string(max_data) + " bytes, max_payload)"};
      }
      if (i > first && data.size() + item.size() + 256 > max_data / 4) break;
      if (i > first) data += ',';
      data += item;
      ++i;
    }
    data += ']';
    if (auto r = PublishChunk(js, subject, record.id, first_seq + first,
                              i - first, data);
        !r.ok()) {
      return r;
    }
  }
  jsPubOptions po;
  jsPubOptions_Init(&po);
  po.MaxWait = 10000;
  const natsStatus s = js_PublishAsyncComplete(js, &po);
  if (s != NATS_OK) {
    natsMsgList pending{};
    if (js_PublishAsyncGetPendingList(&pending, js) == NATS_OK) {
      natsMsgList_Destroy(&pending);
    }
    return Error{"cluster", NatsError("items not acknowledged", s)};
  }
  if (context->errors.load() > 0) {
    // 10077: the stream's MaxMsgs (jobs.max_pending_items) was reached by
    // other submits meanwhile.
    if (context->last_code.load() == 10077) {
      return Error{"full", "stream full"};
    }
    return Error{"cluster", std::to_string(context->errors.load()) +
                                " items refused by JetStream (error " +
                                std::to_string(context->last_code.load()) +
                                ")"};
  }
  metrics_.publish_items.Observe(
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started)
          .count());
  return {};
}

std::unique_ptr<ClusterImpl::SubmitContext> ClusterImpl::TakeSubmitContext() {
  {
    MutexLock lock(&submit_js_mu_);
    if (!submit_js_.empty()) {
      std::unique_ptr<SubmitContext> context = std::move(submit_js_.back());
      submit_js_.pop_back();
      context->errors.store(0);
      context->last_code.store(0);
      return context;
    }
  }
  auto context = std::make_unique<SubmitContext>();
  jsOptions jo;
  jsOptions_Init(&jo);
  jo.Wait = 10000;
  jo.PublishAsync.MaxPending = 4096;
  jo.PublishAsync.ErrHandler = OnItemError<SubmitContext>;
  jo.PublishAsync.ErrHandlerClosure = context.get();
  jsCtx* raw = nullptr;
  if (natsConnection_JetStream(&raw, conn_.get(), &jo) != NATS_OK) {
    return nullptr;
  }
  context->js.reset(raw);
  return context;
}

void ClusterImpl::ReturnSubmitContext(std::unique_ptr<SubmitContext> context) {
  MutexLock lock(&submit_js_mu_);
  submit_js_.push_back(std::move(context));
}

Result<void> ClusterImpl::PublishChunk(jsCtx* js, const std::string& subject,
                                       const std::string& job,
                                       std::uint64_t first_seq,
                                       std::uint64_t count,
                                       const std::string& data) {
  natsMsg* m = nullptr;
  natsStatus s = natsMsg_Create(&m, subject.c_str(), nullptr, data.data(),
                                static_cast<int>(data.size()));
  if (s != NATS_OK) return Error{"cluster", NatsError("message", s)};
  NatsPtr<natsMsg> msg(m);
  const std::string seq_text = std::to_string(first_seq);
  natsMsgHeader_Set(msg.get(), kSeqHeader, seq_text.c_str());
  // First seq and count: a retried chunk is stored once, and a retry cut
  // differently (a stream's frame, pushed again as room allows) is a chunk
  // of its own rather than a duplicate dropped with items it alone holds;
  // readers count each seq's first outcome, so an item stored twice counts
  // once.
  const std::string msg_id = job + ":" + seq_text + ":" + std::to_string(count);
  jsPubOptions po;
  jsPubOptions_Init(&po);
  po.MsgId = msg_id.c_str();
  natsMsg* owned = msg.release();
  s = js_PublishMsgAsync(js, &owned, &po);
  NatsPtr<natsMsg> unsent(owned);  // non-null only if the call failed
  if (s != NATS_OK) return Error{"cluster", NatsError("publish items", s)};
  return {};
}

// Removes what a failed submit stored: its items, and its record in case
// the create reached JetStream although the answer did not.
void ClusterImpl::RollBack(const JobRecord& record) {
  jsOptions jo;
  jsOptions_Init(&jo);
  const std::string filter = names_.job_items(record.id);
  jo.Stream.Purge.Subject = filter.c_str();
  jsErrCode code = static_cast<jsErrCode>(0);
  const std::string stream = names_.items_stream();
  js_PurgeStream(js_.get(), stream.c_str(), &jo, &code);
  kvStore_Purge(kv_.load(), record.id.c_str(), nullptr);
  MutexLock lock(&table_mu_);
  EraseFromTableLocked(record.id);
}

}  // namespace sluice::cluster
