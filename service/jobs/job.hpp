// Defines sluice::jobs::Job (one job's state, counts, result log and status
// object, contract §C1-§C2), JobState, Counts, ResultRecord and NewJobId().
//
// A Job is shared: the engine's threads append results and finish it; HTTP
// and WebSocket threads read it. Readers never make the engine wait on them:
// the result log is a deque they copy from at their own pace, and streaming
// readers register a one-shot wake callback instead of being pushed to.
//
// Memory (contract §C6): a job's result log is bounded by ResultLimits — its
// own cap (jobs.max_job_result_bytes) and a ResultBudget shared by every job
// of the store (jobs.max_retained_bytes), both counted in JsonCost terms
// (service/util/json_cost.hpp). A job whose results would pass either fails:
// state failed, an "error" in its status, its remaining items cancelled.
#ifndef SLUICE_SERVICE_JOBS_JOB_HPP_
#define SLUICE_SERVICE_JOBS_JOB_HPP_

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <limits>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "sluice/patterns/detail/thread_annotations.hpp"
#include "sluice/patterns/mutex.hpp"

namespace sluice::jobs {

// queued: accepted, nothing fed to the pipeline yet; running: at least one
// item fed; done / failed / cancelled are final.
enum class JobState { kQueued, kRunning, kDone, kFailed, kCancelled };

// "queued", "running", "done", "failed", "cancelled".
std::string_view ToString(JobState state);

// True for done, failed and cancelled.
bool IsFinal(JobState state);

// A job's item counts (contract §C1). `in` counts accepted input items. The
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
  // Instead of `value` (then null): the value as JSON text. A cluster
  // replica keeps the results it reads from the log this way, so showing a
  // job it did not run costs no parse (RecordText splices it). Never set on
  // windows or errors.
  std::string value_text;

  static ResultRecord Window(std::uint64_t number, nlohmann::json aggregate) {
    ResultRecord r;
    r.window = number;
    r.value = std::move(aggregate);
    return r;
  }
};

// {"seq":3,"value":...}, {"seq":3,"error":"...","stage":"..."} or, for a
// window, {"type":"aggregate","window":2,"value":...}. A value_text is
// parsed (null if it is not JSON).
nlohmann::json ToJson(const ResultRecord& record);

// ToJson(record) as compact text, invalid UTF-8 replaced (DumpLenient); a
// value_text is spliced in as it is, unparsed.
std::string RecordText(const ResultRecord& record);

// The record's value: `value`, or value_text parsed (null if it is not
// JSON).
nlohmann::json ValueOf(const ResultRecord& record);

// A fresh job id: 16 lowercase hex characters from a process-wide random
// generator. Thread-safe. Ids are random, not checked for uniqueness here
// (JobStore::Add refuses a duplicate).
std::string NewJobId();

// What holding `record` in a result log costs (its slot plus the heap its
// value and strings own), in the units of every result bound.
std::size_t RecordCost(const ResultRecord& record);

// The memory the result logs of all jobs of a store may hold together
// (jobs.max_retained_bytes), running and finished jobs alike. Jobs charge it
// as records are appended and give their bytes back when destroyed (the
// memory is really freed then). When a charge does not fit, the reclaim
// function (JobStore's eviction of finished jobs) runs first. Thread-safe.
class ResultBudget {
 public:
  explicit ResultBudget(std::uint64_t limit) : limit_(limit) {}
  ResultBudget(const ResultBudget&) = delete;
  ResultBudget& operator=(const ResultBudget&) = delete;

  std::uint64_t limit() const { return limit_; }
  std::uint64_t used() const { return used_.load(std::memory_order_relaxed); }

  // What a TryCharge did: `ok`, the bytes are taken; else nothing is taken
  // and `retry_at`, if set, is when reclaim expects it may make room (the
  // oldest finished job reaches jobs.min_retention, or now: room was made
  // but others took it first); unset: no finished job can make room, only
  // running jobs hold the budget.
  struct Charge {
    bool ok = false;
    std::optional<std::chrono::system_clock::time_point> retry_at;
  };
  // `reclaim(need)` evicts what it may so that `need` more bytes fit, and
  // returns when it may make more room (see Charge::retry_at).
  using Reclaim =
      std::function<std::optional<std::chrono::system_clock::time_point>(
          std::uint64_t need)>;

  // Takes `n` bytes if used() + n fits the limit, after asking reclaim for
  // room when it does not.
  [[nodiscard]] Charge TryCharge(std::uint64_t n);
  // Takes `n` bytes whatever the limit (bookkeeping that cannot be refused;
  // the next sweep evicts to make up for it).
  void ForceCharge(std::uint64_t n) {
    used_.fetch_add(n, std::memory_order_relaxed);
  }
  void Refund(std::uint64_t n) {
    used_.fetch_sub(n, std::memory_order_relaxed);
  }

  // Called with this budget's lock held (so it may not charge), from the
  // thread of the failing TryCharge. Null detaches it (the store going
  // away).
  void SetReclaim(Reclaim reclaim);

 private:
  [[nodiscard]] bool TryTake(std::uint64_t n);

  const std::uint64_t limit_;
  std::atomic<std::uint64_t> used_{0};
  Mutex mu_;
  Reclaim reclaim_ SLUICE_GUARDED_BY(mu_);
};

// The bounds on one job's result log. Thread-compatible (plain value).
struct ResultLimits {
  // jobs.max_job_result_bytes: RecordCost summed over the log.
  std::uint64_t max_bytes = std::numeric_limits<std::uint64_t>::max();
  // Shared by the store's jobs; null: no shared bound (tests).
  std::shared_ptr<ResultBudget> budget;
};

// Error codes in a failed job's status ("error": {"code","message"}).
inline constexpr std::string_view kResultsTooLarge = "results_too_large";
inline constexpr std::string_view kResultsMemoryFull = "results_memory_full";

// One job. Thread-safe: every member may be called from any thread. The
// "engine side" members are for the engine only; readers use the rest.
class Job {
 public:
  using Clock = std::chrono::system_clock;

  // A queued job with `accepted` input items, its results bounded by
  // `limits` (whose budget it charges for its own bookkeeping at once).
  Job(std::string id, std::string pipeline, std::uint64_t accepted = 0,
      Clock::time_point created_at = Clock::now(), ResultLimits limits = {});
  // Gives every byte it charged back to the budget.
  ~Job();

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
  // The aggregate (contract §C4); null until the job has finished.
  nlohmann::json aggregate() const;

  // The contract §C2 status object: {"id","pipeline","state","items":{"in",
  // "out","filtered","errors","cancelled","completed"},"aggregate","created_at",
  // "started_at","finished_at"}, timestamps RFC 3339 UTC with milliseconds
  // or null; plus "error": {"code","message"} once the job failed over its
  // result limits (only then).
  nlohmann::json Status() const;

  // Why the job failed ({"code","message"}), or null.
  nlohmann::json error() const;

  // Records in the result log so far.
  std::size_t result_count() const;

  // Copies up to `limit` records starting at `offset` (fewer at the end of
  // the log; none when offset >= result_count()), and stops early once the
  // copies' RecordCost passes `max_bytes` (always at least one record when
  // there is one), so a reader's copy is bounded by bytes too.
  std::vector<ResultRecord> Results(
      std::size_t offset, std::size_t limit,
      std::size_t max_bytes = std::numeric_limits<std::size_t>::max()) const;

  // Calls fn(record) for each record of the log in order, under the job's
  // lock: for a reader that folds the whole log without copying it. `fn`
  // must not call back into the job, nor block.
  void ForEachResult(const std::function<void(const ResultRecord&)>& fn) const;

  // Moves the whole result log out and gives its bytes back to the budget;
  // the log is empty afterwards (result_count() 0, the counts unchanged).
  // For a job whose results have exactly one reader, which takes them once
  // the job has finished (a cluster replica's local batch).
  std::vector<ResultRecord> TakeResults();

  // Streaming cursor over the result log. Always sets *finished.
  //  - records exist at `offset`: copies up to `max` (>= 1) of them, fewer
  //    once their RecordCost passes `max_bytes` (but at least one), and
  //    returns them; *finished = false (call again with the new offset);
  //  - else, the job has finished: returns {} and *finished = true (the log
  //    is complete; send "done");
  //  - else: returns {}, *finished = false, and keeps `wake`, which is called
  //    exactly once, on an engine thread and with no lock held, when records
  //    are appended or the job finishes. `wake` must not block: post to your
  //    strand and call ReadFrom again from there.
  // Requires: finished != nullptr.
  std::vector<ResultRecord> ReadFrom(
      std::size_t offset, std::size_t max, bool* finished,
      std::function<void()> wake,
      std::size_t max_bytes = std::numeric_limits<std::size_t>::max());

  // Calls `fn` exactly once, on an engine thread with no lock held, when the
  // job finishes, and returns true; or returns false without keeping `fn`
  // when it has already finished. For `POST /v1/jobs?wait=`. `fn` must not
  // block.
  [[nodiscard]] bool NotifyWhenFinished(std::function<void()> fn);

  // Heap bytes the job holds (its result log by RecordCost, its
  // bookkeeping and aggregate): what it has charged its ResultBudget.
  std::size_t retained_bytes() const;
  // RecordCost summed over the result log (what max_bytes bounds).
  std::size_t result_bytes() const;

  // True once a cancel was requested (DELETE, or a drain out of grace) while
  // the job had not finished.
  bool cancel_requested() const {
    return cancel_requested_.load(std::memory_order_acquire);
  }

  // ---- engine side ---------------------------------------------------------

  // Adds `n` accepted input items (streams accept items over time).
  void AddAccepted(std::uint64_t n);
  // How many input items have ended so far (with their records, filtered,
  // as errors or cancelled; released, for an ordered job): the status's
  // items.completed, for progress. Monotonic; the aggregator's count.
  void NoteCompleted(std::uint64_t completed) {
    completed_.store(completed, std::memory_order_relaxed);
  }
  // queued -> running, recording started_at; a no-op in any other state.
  void MarkRunning(Clock::time_point now = Clock::now());
  // Counts records that are not kept (a cluster replica that only seals the
  // job, whose results stay in NATS): `out` results, `errors`, `filtered`
  // items and `cancelled` records. A no-op once finished.
  void AddCounts(std::uint64_t out, std::uint64_t errors,
                 std::uint64_t filtered, std::uint64_t cancelled);
  // Appends records to the log and counts them (out / errors), plus
  // `filtered` and `cancelled` dropped pieces, then wakes streaming readers.
  // A no-op once finished.
  // Records that would take the log past its ResultLimits are not kept: the
  // job fails (error() set, cancel requested so its other items end
  // cancelled; Finish makes it failed), and those records, and every one
  // appended after, count as cancelled. Returns true when this call made
  // the job fail: the caller then drops its queued input (Intake::Cancel).
  //
  // With `retry_at`: when the shared budget is full but a finished job will
  // become evictable (it is younger than jobs.min_retention), changes
  // nothing, leaves `records` as they are, sets *retry_at to when room may
  // be made and returns false: the caller waits (back-pressure) and calls
  // again. Without it, or when no finished job can make room, the job
  // fails as above.
  bool Append(std::vector<ResultRecord>& records, std::uint64_t filtered,
              std::uint64_t cancelled,
              std::optional<Clock::time_point>* retry_at = nullptr);
  bool Append(std::vector<ResultRecord>&& records, std::uint64_t filtered,
              std::uint64_t cancelled) {
    return Append(records, filtered, cancelled);
  }
  // Flags the job cancelled. Returns true if it had not finished (the flag
  // was set, or already set), false if it had already finished.
  bool RequestCancel();

  // What a job's record says in cluster mode, where another process may run
  // it: the state, exact counts, times, aggregate and error (null or
  // {"code","message"}). Thread-compatible (plain value).
  struct Summary {
    JobState state = JobState::kQueued;
    Counts counts;
    std::uint64_t completed = 0;
    std::optional<Clock::time_point> started_at;
    std::optional<Clock::time_point> finished_at;
    nlohmann::json aggregate;
    nlohmann::json error;
  };
  // Sets the job to `summary`, keeping the results appended so far. A final
  // state wakes the readers and finish waiters as Finish does. Does nothing
  // once the job is final. Cluster mode only (cluster/): a replica shows a
  // job that other processes ran, from its record and its sealed log.
  void Restore(const Summary& summary);
  // Makes the state final: failed if `failed` or the job went over its
  // result limits (its aggregate is then null), else cancelled when a cancel
  // was requested, else done. Records the aggregate and finished_at and
  // wakes every waiter. Returns the final state, or nullopt (and changes
  // nothing) if the job had already finished.
  std::optional<JobState> Finish(nlohmann::json aggregate, bool failed = false,
                                 Clock::time_point now = Clock::now());

 private:
  // Results / ReadFrom: the records from `offset`, at most `limit`, until
  // their RecordCost passes `max_bytes` (at least one).
  std::vector<ResultRecord> CopyLocked(std::size_t offset, std::size_t limit,
                                       std::size_t max_bytes) const
      SLUICE_REQUIRES(mu_);
  // Takes the waiters out under mu_ so they can be called without it.
  std::vector<std::function<void()>> TakeWakersLocked() SLUICE_REQUIRES(mu_);

  // Sets error_ ({code, message}) and requests the cancel.
  void FailLocked(std::string_view code, std::string message)
      SLUICE_REQUIRES(mu_);

  const std::string id_;
  const std::string pipeline_;
  const Clock::time_point created_at_;
  const ResultLimits limits_;

  // Read lock-free by workers for every envelope; only set under mu_, so
  // Finish sees it consistently.
  std::atomic<bool> cancel_requested_{false};
  std::atomic<std::uint64_t> completed_{0};  // NoteCompleted

  mutable Mutex mu_;
  JobState state_ SLUICE_GUARDED_BY(mu_) = JobState::kQueued;
  Counts counts_ SLUICE_GUARDED_BY(mu_);
  std::optional<Clock::time_point> started_at_ SLUICE_GUARDED_BY(mu_);
  std::optional<Clock::time_point> finished_at_ SLUICE_GUARDED_BY(mu_);
  nlohmann::json aggregate_ SLUICE_GUARDED_BY(mu_);
  // A deque: no reallocation doubles the log's memory while it grows.
  std::deque<ResultRecord> results_ SLUICE_GUARDED_BY(mu_);
  std::size_t result_bytes_ SLUICE_GUARDED_BY(mu_) = 0;  // RecordCost sum
  // Everything charged to limits_.budget (results, bookkeeping, aggregate).
  std::uint64_t charged_ SLUICE_GUARDED_BY(mu_) = 0;
  nlohmann::json error_ SLUICE_GUARDED_BY(mu_);  // {"code","message"} or null
  // One-shot callbacks of ReadFrom (woken by appends and Finish).
  std::vector<std::function<void()>> wakers_ SLUICE_GUARDED_BY(mu_);
  // One-shot callbacks of NotifyWhenFinished.
  std::vector<std::function<void()>> finish_waiters_ SLUICE_GUARDED_BY(mu_);
};

}  // namespace sluice::jobs

#endif  // SLUICE_SERVICE_JOBS_JOB_HPP_
