// The job table: every job's record, kept by one KV watcher thread per
// replica, so finding, listing and the workers' checks (is it committed?
// cancelled?) cost no round trip. Writes are compare-and-set on the record's
// revision, so two replicas never overwrite each other unseen.
#include <iostream>

#include "service/cluster/cluster_impl.hpp"

namespace sluice::cluster {

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
      MutexLock lock(&table_mu_);
      table_.swap(initial);
      synced = true;
      table_synced_.store(true);
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
    MutexLock lock(&table_mu_);
    if (!record) {
      table_.erase(key);
    } else {
      auto it = table_.find(key);
      if (it == table_.end() || it->second.revision < record->revision) {
        if (record->cancel && !record->final()) {
          // A DELETE on some replica: this one's batches of the job stop
          // too (the maintenance loop cancels them).
          MutexLock wake_lock(&wake_mu_);
          wake_ = true;
          wake_cv_.SignalAll();
        }
        table_[key] = std::move(*record);
      }
    }
    table_cv_.SignalAll();
  }
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
  MutexLock lock(&table_mu_);
  auto it = table_.find(record.id);
  if (it == table_.end() || it->second.revision < rev)
    table_[record.id] = record;
  table_cv_.SignalAll();
  return {};
}

}  // namespace sluice::cluster
