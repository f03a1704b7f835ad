// The job table: every job's record, kept by one KV watcher thread per
// replica, so finding, listing and the workers' checks (is it committed?
// cancelled?) cost no round trip. Writes are compare-and-set on the record's
// revision, so two replicas never overwrite each other unseen.
#include <iostream>

#include "service/cluster/cluster_impl.hpp"

namespace sluice::cluster {
namespace {

// What a record adds to PendingItems: a committed, unfinished job's items.
std::uint64_t PendingOf(const JobRecord& r) {
  return r.final() || r.accepting() ? 0 : r.in;
}

}  // namespace

void ClusterImpl::WatchLoop() {
  while (!stopping_.load()) {
    if (!connected_.load() || !layout_ready_.load() || kv_.load() == nullptr) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      continue;
    }
    WatchOnce();
  }
}

// One watcher, from a full load of the bucket until it fails or a reconnect
// asks for a new one.
void ClusterImpl::WatchOnce() {
  rewatch_.store(false);
  kvWatchOptions wo;
  kvWatchOptions_Init(&wo);
  kvWatcher* raw = nullptr;
  if (kvStore_WatchAll(&raw, kv_.load(), &wo) != NATS_OK) {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    return;
  }
  NatsPtr<kvWatcher> watcher(raw);
  std::map<std::string, JobRecord, std::less<>> initial;
  bool synced = false;
  while (!stopping_.load() && !rewatch_.load()) {
    kvEntry* e = nullptr;
    const natsStatus s = kvWatcher_Next(&e, watcher.get(), 250);
    if (s == NATS_TIMEOUT) continue;
    if (s != NATS_OK) return;
    NatsPtr<kvEntry> entry(e);
    if (entry == nullptr) {  // the bucket's state as of now is delivered
      std::vector<JobRecord> finals;
      {
        MutexLock lock(&table_mu_);
        table_.clear();
        pending_in_table_ = 0;
        for (auto& [id, record] : initial) {
          if (record.final()) finals.push_back(record);
          StoreInTableLocked(id, std::move(record));
        }
        initial.clear();
        synced = true;
        table_synced_.store(true);
      }
      for (const JobRecord& record : finals) FinishWaiter(record);
      continue;
    }
    std::string key = kvEntry_Key(entry.get());
    std::optional<JobRecord> record;
    if (kvEntry_Operation(entry.get()) == kvOp_Put) {
      record = JobRecord::Parse(std::string_view(
          static_cast<const char*>(kvEntry_Value(entry.get())),
          static_cast<std::size_t>(kvEntry_ValueLen(entry.get()))));
      if (record) record->revision = kvEntry_Revision(entry.get());
    }
    if (!synced) {
      if (record) initial[key] = std::move(*record);
      continue;
    }
    if (record && record->cancel && !record->final()) {
      // A DELETE on some replica: this one's batches of the job stop too
      // (the maintenance loop cancels them).
      MutexLock wake_lock(&wake_mu_);
      wake_ = true;
      wake_cv_.SignalAll();
    }
    std::optional<JobRecord> finished;
    {
      MutexLock lock(&table_mu_);
      if (!record) {
        EraseFromTableLocked(key);
      } else {
        if (record->final()) finished = *record;
        StoreInTableLocked(key, std::move(*record));
      }
      table_cv_.SignalAll();
    }
    if (!record) DropWaiter(key);
    if (finished) FinishWaiter(*finished);
  }
}

void ClusterImpl::StoreInTableLocked(const std::string& id, JobRecord record) {
  auto it = table_.find(id);
  if (it == table_.end()) {
    pending_in_table_ += PendingOf(record);
    table_.emplace(id, std::move(record));
    return;
  }
  if (it->second.revision >= record.revision) return;
  pending_in_table_ -= PendingOf(it->second);
  pending_in_table_ += PendingOf(record);
  it->second = std::move(record);
}

void ClusterImpl::EraseFromTableLocked(const std::string& id) {
  auto it = table_.find(id);
  if (it == table_.end()) return;
  pending_in_table_ -= PendingOf(it->second);
  table_.erase(it);
}

std::optional<JobRecord> ClusterImpl::Record(std::string_view id) const {
  MutexLock lock(&table_mu_);
  auto it = table_.find(id);
  if (it == table_.end()) return std::nullopt;
  return it->second;
}

std::optional<JobRecord> ClusterImpl::CommittedRecord(
    std::string_view id, std::chrono::milliseconds wait) {
  const auto deadline = std::chrono::steady_clock::now() + wait;
  MutexLock lock(&table_mu_);
  while (true) {
    auto it = table_.find(id);
    if (it != table_.end() && !it->second.accepting()) return it->second;
    if (table_cv_.WaitUntil(&table_mu_, deadline) == std::cv_status::timeout) {
      it = table_.find(id);
      if (it == table_.end()) return std::nullopt;
      return it->second;
    }
  }
}

Result<JobRecord> ClusterImpl::FetchRecord(std::string_view id) const {
  kvEntry* e = nullptr;
  const std::string key(id);
  const natsStatus s = kvStore_Get(&e, kv_.load(), key.c_str());
  if (s == NATS_NOT_FOUND) return Error{"not_found", "no record " + key};
  if (s != NATS_OK) return Error{"cluster", NatsError("KV get", s)};
  NatsPtr<kvEntry> entry(e);
  auto record = JobRecord::Parse(std::string_view(
      static_cast<const char*>(kvEntry_Value(entry.get())),
      static_cast<std::size_t>(kvEntry_ValueLen(entry.get()))));
  if (!record) return Error{"not_found", "record " + key + " is not sluice's"};
  record->revision = kvEntry_Revision(entry.get());
  return *record;
}

// Compare-and-set on record.revision (0: create). On success the record
// carries its new revision and the table has it.
Result<void> ClusterImpl::PutRecord(JobRecord& record) {
  const std::string data = record.Serialize();
  uint64_t rev = 0;
  natsStatus s;
  if (record.revision == 0) {
    s = kvStore_Create(&rev, kv_.load(), record.id.c_str(), data.data(),
                       static_cast<int>(data.size()));
  } else {
    s = kvStore_Update(&rev, kv_.load(), record.id.c_str(), data.data(),
                       static_cast<int>(data.size()), record.revision);
  }
  if (s != NATS_OK) return Error{"cluster", NatsError("KV write", s)};
  record.revision = rev;
  {
    MutexLock lock(&table_mu_);
    StoreInTableLocked(record.id, record);
    table_cv_.SignalAll();
  }
  if (record.final()) FinishWaiter(record);
  return {};
}

std::shared_ptr<jobs::Job> ClusterImpl::AddWaiter(const JobRecord& record) {
  auto job = std::make_shared<jobs::Job>(record.id, record.pipeline, record.in,
                                         FromUnixMs(record.created_ms));
  MutexLock lock(&waiters_mu_);
  waiters_[record.id] = job;
  return job;
}

void ClusterImpl::DropWaiter(const std::string& id) {
  MutexLock lock(&waiters_mu_);
  waiters_.erase(id);
}

void ClusterImpl::FinishWaiter(const JobRecord& record) {
  std::shared_ptr<jobs::Job> job;
  {
    MutexLock lock(&waiters_mu_);
    auto it = waiters_.find(record.id);
    if (it == waiters_.end()) return;
    job = it->second.lock();
    waiters_.erase(it);
  }
  // Outside waiters_mu_: finishing wakes the request waiting on the job.
  if (job) job->Restore(record.summary());
}

void ClusterImpl::PruneWaiters() {
  MutexLock lock(&waiters_mu_);
  std::erase_if(waiters_, [](const auto& w) { return w.second.expired(); });
}

}  // namespace sluice::cluster
