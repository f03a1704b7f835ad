#include "service/jobs/job_store.hpp"

#include <algorithm>
#include <optional>
#include <utility>

namespace sluice::jobs {

JobStore::JobStore(Limits limits)
    : limits_(limits),
      budget_(std::make_shared<ResultBudget>(limits.max_retained_bytes)) {
  // Runs under the budget's lock, from a job's Append on an engine thread;
  // lock order: job -> budget -> store (the store never takes either).
  budget_->SetReclaim([this](std::uint64_t need) { return Reclaim(need); });
}

JobStore::~JobStore() { budget_->SetReclaim(nullptr); }

ResultLimits JobStore::job_limits() const {
  return ResultLimits{limits_.max_job_result_bytes, budget_};
}

bool JobStore::Add(std::shared_ptr<Job> job) {
  MutexLock lock(&mu_);
  Entry entry;
  entry.job = job;
  entry.order = next_order_;
  if (!by_id_.emplace(job->id(), std::move(entry)).second) return false;
  // Orders only grow: the hint makes the insert O(1), whatever the number
  // of retained jobs.
  by_order_.emplace_hint(by_order_.end(), next_order_++, std::move(job));
  return true;
}

void JobStore::OnFinished(const std::shared_ptr<Job>& job) {
  // Read outside mu_: the store never takes a job's lock under its own.
  const std::uint64_t bytes = job->retained_bytes();
  const std::optional<Job::Clock::time_point> finished_at = job->finished_at();
  const bool finished = finished_at.has_value();
  MutexLock lock(&mu_);
  auto it = by_id_.find(job->id());
  if (!finished || it == by_id_.end() || it->second.job != job ||
      it->second.finished) {
    return;
  }
  it->second.finished = true;
  it->second.bytes = bytes;
  it->second.finished_at = *finished_at;
  finished_bytes_ += bytes;
  finished_.push_back(job->id());
  SweepLocked(Job::Clock::now());
}

void JobStore::Remove(std::string_view id) {
  std::shared_ptr<Job> dropped;  // destroyed outside mu_
  MutexLock lock(&mu_);
  auto it = by_id_.find(std::string(id));
  if (it == by_id_.end() || !it->second.finished) return;
  dropped = it->second.job;
  // Removed right after finishing, it is normally the newest finished id;
  // elsewhere in the order, SweepLocked skips it.
  if (!finished_.empty() && finished_.back() == it->first) finished_.pop_back();
  EraseLocked(std::string(id));
}

std::shared_ptr<Job> JobStore::Find(std::string_view id) {
  MutexLock lock(&mu_);
  SweepLocked(Job::Clock::now());
  auto it = by_id_.find(std::string(id));
  return it == by_id_.end() ? nullptr : it->second.job;
}

std::vector<std::shared_ptr<Job>> JobStore::List(std::size_t limit) {
  MutexLock lock(&mu_);
  SweepLocked(Job::Clock::now());
  std::vector<std::shared_ptr<Job>> out;
  out.reserve(std::min(limit, by_order_.size()));
  for (auto it = by_order_.rbegin();
       it != by_order_.rend() && out.size() < limit; ++it) {
    out.push_back(it->second);
  }
  return out;
}

std::vector<std::shared_ptr<Job>> JobStore::Unfinished() const {
  std::vector<std::shared_ptr<Job>> all;
  {
    MutexLock lock(&mu_);
    all.reserve(by_id_.size() - finished_.size());
    for (const auto& [id, entry] : by_id_) {
      if (!entry.finished) all.push_back(entry.job);
    }
  }
  // Oldest first; and a job may have finished since OnFinished was last
  // called (its lock is taken only now, outside ours).
  std::sort(all.begin(), all.end(),
            [](const std::shared_ptr<Job>& a, const std::shared_ptr<Job>& b) {
              return a->created_at() < b->created_at();
            });
  std::erase_if(all,
                [](const std::shared_ptr<Job>& j) { return j->finished(); });
  return all;
}

std::size_t JobStore::Sweep(Job::Clock::time_point now) {
  MutexLock lock(&mu_);
  return SweepLocked(now);
}

std::size_t JobStore::size() const {
  MutexLock lock(&mu_);
  return by_id_.size();
}

std::uint64_t JobStore::finished_bytes() const {
  MutexLock lock(&mu_);
  return finished_bytes_;
}

std::optional<Job::Clock::time_point> JobStore::Reclaim(
    std::uint64_t need, Job::Clock::time_point now) {
  MutexLock lock(&mu_);
  std::optional<Job::Clock::time_point> retry_at;
  SweepLocked(now, need, &retry_at);
  return retry_at;
}

std::size_t JobStore::SweepLocked(
    Job::Clock::time_point now, std::uint64_t need,
    std::optional<Job::Clock::time_point>* retry_at) {
  std::size_t evicted = 0;
  while (!finished_.empty()) {
    auto it = by_id_.find(finished_.front());
    if (it == by_id_.end()) {  // defensive: never evicted elsewhere
      finished_.pop_front();
      continue;
    }
    const auto age = now - it->second.finished_at;
    const bool expired = age > limits_.retention;
    if (!expired) {
      // For room only: the budget (all stored jobs, running ones too)
      // lacks `need` bytes or is over its limit.
      const std::uint64_t used = budget_->used();
      const bool short_of_room =
          need > 0 ? used + need > budget_->limit() : used > budget_->limit();
      if (!short_of_room) break;
      // Finished jobs are in finish order, so once the oldest is too young,
      // so is every other one; it may go at finished_at + min_retention.
      if (age < limits_.min_retention) {
        // Worth waiting for only if evicting every finished job could make
        // the room; else running jobs hold the budget (nullopt: fail).
        const std::uint64_t held_by_others =
            used - std::min(used, finished_bytes_);
        if (retry_at != nullptr && held_by_others + need <= budget_->limit()) {
          *retry_at = it->second.finished_at + limits_.min_retention;
        }
        break;
      }
    }
    // Dropping the store's reference frees the job (and refunds its bytes)
    // at once unless a reader still holds it.
    EraseLocked(finished_.front());
    finished_.pop_front();
    ++evicted;
  }
  // Room now (made here, or given back meanwhile): retry at once. Another
  // thread may take it first, so the caller is told to try again, not that
  // running jobs hold the budget.
  if (retry_at != nullptr && !*retry_at && need > 0 &&
      budget_->used() + need <= budget_->limit()) {
    *retry_at = now;
  }
  return evicted;
}

void JobStore::EraseLocked(const std::string& id) {
  auto it = by_id_.find(id);
  if (it == by_id_.end()) return;
  finished_bytes_ -= it->second.bytes;
  by_order_.erase(it->second.order);
  by_id_.erase(it);
}

}  // namespace sluice::jobs
