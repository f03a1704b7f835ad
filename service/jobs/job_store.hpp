// Defines sluice::jobs::JobStore: every job the service knows, by id, listed
// newest first, with the retention of finished jobs bounded by age
// (jobs.retention) and the results of all jobs, running and finished, by
// size (jobs.max_retained_bytes, through the store's ResultBudget).
#ifndef SLUICE_SERVICE_JOBS_JOB_STORE_HPP_
#define SLUICE_SERVICE_JOBS_JOB_STORE_HPP_

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "service/jobs/job.hpp"
#include "sluice/patterns/detail/thread_annotations.hpp"
#include "sluice/patterns/mutex.hpp"

namespace sluice::jobs {

// Thread-safe: every member may be called from any thread.
//
// Running jobs are never evicted. Finished jobs leave, oldest finished first,
// when they finished more than `retention` ago, or for room: while the
// budget (every stored job's results and bookkeeping, running ones
// included) is over `max_retained_bytes`, or when a running job's results
// need room in it. Eviction for room spares every job finished less than
// `min_retention` ago, so a job stays readable at least that long after it
// finished (or until `retention`, if shorter). A running job that finds no
// room waits for the oldest finished job to reach min_retention (the
// engine's aggregator holds its results: back-pressure), and fails only
// when running jobs alone fill the budget (Job::Append). So the result logs
// of all jobs together stay within max_retained_bytes, plus at most the
// bookkeeping of jobs created while it was full.
//
// Eviction is lazy: it runs on OnFinished(), Find(), List(), Sweep() and a
// budget's reclaim, so an expired job is never visible, and its memory goes
// at the next of those calls (or when the last reader lets go of it).
class JobStore {
 public:
  struct Limits {
    std::chrono::milliseconds retention{600000};
    std::uint64_t max_retained_bytes = 268435456;
    // jobs.max_job_result_bytes: the cap on one job's results.
    std::uint64_t max_job_result_bytes = 67108864;
    // jobs.min_retention: no eviction for room before this age.
    std::chrono::milliseconds min_retention{10000};
  };

  explicit JobStore(Limits limits);
  // Detaches the budget's reclaim (jobs may outlive the store).
  ~JobStore();

  JobStore(const JobStore&) = delete;
  JobStore& operator=(const JobStore&) = delete;

  // What a job of this store is bounded by: max_job_result_bytes and the
  // shared budget. Jobs made without them are stored but not counted.
  ResultLimits job_limits() const;
  const std::shared_ptr<ResultBudget>& budget() const { return budget_; }

  // Adds a job (normally not yet finished). Returns false, and keeps
  // nothing, if a job with the same id is already stored.
  // Requires: job != nullptr.
  [[nodiscard]] bool Add(std::shared_ptr<Job> job);

  // The engine calls this once a stored job has finished: the job joins
  // the eviction order and the limits are enforced. A no-op for a job that
  // is not stored or not finished.
  void OnFinished(const std::shared_ptr<Job>& job);

  // Drops a finished job at once, whatever the limits (cluster mode: a batch
  // whose outcomes JetStream now holds). A no-op for an unknown or unfinished
  // job.
  void Remove(std::string_view id);

  // The job with this id, or nullptr.
  std::shared_ptr<Job> Find(std::string_view id);

  // Up to `limit` jobs, newest (most recently created) first.
  std::vector<std::shared_ptr<Job>> List(std::size_t limit);

  // Every stored job that has not finished, oldest first (for shutdown).
  std::vector<std::shared_ptr<Job>> Unfinished() const;

  // Evicts finished jobs past the limits as of `now`. Returns how many
  // were evicted.
  std::size_t Sweep(Job::Clock::time_point now = Job::Clock::now());
  // Evicts what may be evicted for room until `need` more bytes fit the
  // budget (the budget's reclaim). Returns `now` if they fit afterwards;
  // else when the oldest finished job may go for room (it reaches
  // min_retention), or nullopt when no finished job is left to make room.
  std::optional<Job::Clock::time_point> Reclaim(
      std::uint64_t need, Job::Clock::time_point now = Job::Clock::now());

  // Jobs stored now.
  std::size_t size() const;
  // Sum of retained_bytes() over the stored finished jobs.
  std::uint64_t finished_bytes() const;

 private:
  struct Entry {
    std::shared_ptr<Job> job;
    std::uint64_t order = 0;  // creation order: key in by_order_
    bool finished = false;    // in finished_ (counted in finished_bytes_)
    std::uint64_t bytes = 0;  // retained_bytes() when it finished
    Job::Clock::time_point finished_at{};
  };

  // Evicts the expired, then, while the budget lacks `need` bytes (beyond
  // its limit when need is 0), the finished jobs that may go for room.
  // Sets *retry_at as Reclaim returns it.
  std::size_t SweepLocked(Job::Clock::time_point now, std::uint64_t need = 0,
                          std::optional<Job::Clock::time_point>* retry_at =
                              nullptr) SLUICE_REQUIRES(mu_);
  void EraseLocked(const std::string& id) SLUICE_REQUIRES(mu_);

  const Limits limits_;
  const std::shared_ptr<ResultBudget> budget_;

  mutable Mutex mu_;
  std::uint64_t next_order_ SLUICE_GUARDED_BY(mu_) = 0;
  std::unordered_map<std::string, Entry> by_id_ SLUICE_GUARDED_BY(mu_);
  // Creation order -> job, for List (newest = last).
  std::map<std::uint64_t, std::shared_ptr<Job>> by_order_
      SLUICE_GUARDED_BY(mu_);
  // Finished jobs' ids in the order they finished: the eviction order.
  std::deque<std::string> finished_ SLUICE_GUARDED_BY(mu_);
  std::uint64_t finished_bytes_ SLUICE_GUARDED_BY(mu_) = 0;
};

}  // namespace sluice::jobs

#endif  // SLUICE_SERVICE_JOBS_JOB_STORE_HPP_
