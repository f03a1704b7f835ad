// Defines sluice::jobs::Job (one job's state, counts, result log and status
// object, DESIGN.md §3.1-§3.2), JobState, Counts, ResultRecord and NewJobId().
//
// A Job is shared: the engine's threads append results and finish it; HTTP
// and WebSocket threads read it. Readers never make the engine wait on them:
// the result log is a vector they copy from at their own pace, and streaming
// readers register a one-shot wake callback instead of being pushed to.
#ifndef SLUICE_SERVICE_JOBS_JOB_HPP_
#define SLUICE_SERVICE_JOBS_JOB_HPP_

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "sluice/patterns/detail/thread_annotations.hpp"

namespace sluice::jobs {

// queued: accepted, nothing fed to the pipeline yet; running: at least one
// item fed; done / failed / cancelled are final.
enum class JobState { kQueued, kRunning, kDone, kFailed, kCancelled };

// "queued", "running", "done", "failed", "cancelled".
std::string_view ToString(JobState state);

// True for done, failed and cancelled.
bool IsFinal(JobState state);

// A job's item counts (DESIGN §3.1). `in` counts accepted input items. The
// others count what the items ended as: `out` result records (a split item
// may make several), `errors` error records, `filtered` and `cancelled` the
// pieces dropped (an item, or one part of a split item). So without splits a
// finished job has in == out + filtered + errors + cancelled.
// Thread-compatible (plain value).
struct Counts {
  std::uint64_t in = 0;
  std::uint64_t out = 0;
  std::uint64_t filtered = 0;
  std::uint64_t errors = 0;
  std::uint64_t cancelled = 0;
};

// One entry of a job's result log: a value, an error naming the stage, or
// (pipelines with aggregate.window) the aggregate of a window that closed.
// Thread-compatible (plain value).
struct ResultRecord {
  std::uint64_t seq = 0;  // the input item's 0-based index in its job
  bool is_error = false;
  nlohmann::json value;  // !is_error; for a window, its aggregate
  std::string error;     // is_error: the processor's message
  std::string stage;     // is_error: the stage's name
  // Set for a window's aggregate: the window's 0-based number (seq unused).
  // Window records are not results: they count in no Counts field.
  std::optional<std::uint64_t> window;

  static ResultRecord Window(std::uint64_t number, nlohmann::json aggregate) {
    ResultRecord r;
    r.window = number;
    r.value = std::move(aggregate);
    return r;
  }
};

// {"seq":3,"value":...}, {"seq":3,"error":"...","stage":"..."} or, for a
// window, {"type":"aggregate","window":2,"value":...}.
nlohmann::json ToJson(const ResultRecord& record);

// A fresh job id: 16 lowercase hex characters from a process-wide random
// generator. Thread-safe. Ids are random, not checked for uniqueness here
// (JobStore::Add refuses a duplicate).
std::string NewJobId();

// One job. Thread-safe: every member may be called from any thread. The
// "engine side" members are for the engine only; readers use the rest.
class Job {
 public:
  using Clock = std::chrono::system_clock;

  // A queued job with `accepted` input items.
  Job(std::string id, std::string pipeline, std::uint64_t accepted = 0,
      Clock::time_point created_at = Clock::now());

  Job(const Job&) = delete;
  Job& operator=(const Job&) = delete;

  // ---- reader side (HTTP / WebSocket threads) -----------------------------

  const std::string& id() const { return id_; }
  const std::string& pipeline() const { return pipeline_; }
  Clock::time_point created_at() const { return created_at_; }

  JobState state() const;
  Counts counts() const;
  // True once the state is final (done, failed or cancelled).
  bool finished() const;
  // When the job finished; nullopt while it has not.
  std::optional<Clock::time_point> finished_at() const;
  // The aggregate (DESIGN §3.4); null until the job has finished.
  nlohmann::json aggregate() const;

  // The DESIGN §3.2 status object: {"id","pipeline","state","items":{"in",
  // "out","filtered","errors","cancelled"},"aggregate","created_at",
  // "started_at","finished_at"}, timestamps RFC 3339 UTC with milliseconds
  // or null.
  nlohmann::json Status() const;

  // Records in the result log so far.
  std::size_t result_count() const;

  // Copies up to `limit` records starting at `offset` (fewer at the end of
  // the log; none when offset >= result_count()).
  std::vector<ResultRecord> Results(std::size_t offset,
                                    std::size_t limit) const;

  // Streaming cursor over the result log. Always sets *finished.
  //  - records exist at `offset`: copies up to `max` (>= 1) of them and
  //    returns them; *finished = false (call again with the new offset);
  //  - else, the job has finished: returns {} and *finished = true (the log
  //    is complete; send "done");
  //  - else: returns {}, *finished = false, and keeps `wake`, which is called
  //    exactly once, on an engine thread and with no lock held, when records
  //    are appended or the job finishes. `wake` must not block: post to your
  //    strand and call ReadFrom again from there.
  // Requires: finished != nullptr.
  std::vector<ResultRecord> ReadFrom(std::size_t offset, std::size_t max,
                                     bool* finished,
                                     std::function<void()> wake);

  // Calls `fn` exactly once, on an engine thread with no lock held, when the
  // job finishes, and returns true; or returns false without keeping `fn`
  // when it has already finished. For `POST /v1/jobs?wait=`. `fn` must not
  // block.
  bool NotifyWhenFinished(std::function<void()> fn);

  // Approximate heap bytes the job holds (its result log and bookkeeping):
  // what jobs.max_retained_bytes is measured in.
  std::size_t retained_bytes() const;

  // True once a cancel was requested (DELETE, or a drain out of grace) while
  // the job had not finished.
  bool cancel_requested() const {
    return cancel_requested_.load(std::memory_order_acquire);
  }

  // ---- engine side ---------------------------------------------------------

  // Adds `n` accepted input items (streams accept items over time).
  void AddAccepted(std::uint64_t n);
  // queued -> running, recording started_at; a no-op in any other state.
  void MarkRunning(Clock::time_point now = Clock::now());
  // Appends records to the log and counts them (out / errors), plus
  // `filtered` and `cancelled` dropped pieces, then wakes streaming readers.
  // A no-op once finished.
  void Append(std::vector<ResultRecord> records, std::uint64_t filtered,
              std::uint64_t cancelled);
  // Flags the job cancelled. Returns true if it had not finished (the flag
  // was set, or already set), false if it had already finished.
  bool RequestCancel();
  // Makes the state final: failed if `failed`, else cancelled when a cancel
  // was requested, else done. Records the aggregate and finished_at and
  // wakes every waiter. Returns the final state, or nullopt (and changes
  // nothing) if the job had already finished.
  std::optional<JobState> Finish(nlohmann::json aggregate, bool failed = false,
                                 Clock::time_point now = Clock::now());

 private:
  // Takes the waiters out under mu_ so they can be called without it.
  std::vector<std::function<void()>> TakeWakersLocked() SLUICE_REQUIRES(mu_);

  const std::string id_;
  const std::string pipeline_;
  const Clock::time_point created_at_;

  // Read lock-free by workers for every envelope; only set under mu_, so
  // Finish sees it consistently.
  std::atomic<bool> cancel_requested_{false};

  mutable std::mutex mu_;
  JobState state_ SLUICE_GUARDED_BY(mu_) = JobState::kQueued;
  Counts counts_ SLUICE_GUARDED_BY(mu_);
  std::optional<Clock::time_point> started_at_ SLUICE_GUARDED_BY(mu_);
  std::optional<Clock::time_point> finished_at_ SLUICE_GUARDED_BY(mu_);
  nlohmann::json aggregate_ SLUICE_GUARDED_BY(mu_);
  std::vector<ResultRecord> results_ SLUICE_GUARDED_BY(mu_);
  std::size_t result_bytes_ SLUICE_GUARDED_BY(mu_) = 0;
  // One-shot callbacks of ReadFrom (woken by appends and Finish).
  std::vector<std::function<void()>> wakers_ SLUICE_GUARDED_BY(mu_);
  // One-shot callbacks of NotifyWhenFinished.
  std::vector<std::function<void()>> finish_waiters_ SLUICE_GUARDED_BY(mu_);
};

}  // namespace sluice::jobs

#endif  // SLUICE_SERVICE_JOBS_JOB_HPP_
