#include "service/jobs/job.hpp"

#include <algorithm>
#include <cstdio>
#include <random>
#include <utility>

#include "service/util/json_cost.hpp"
#include "service/util/text.hpp"
#include "service/util/time.hpp"

namespace sluice::jobs {
namespace {

nlohmann::json TimeOrNull(const std::optional<Job::Clock::time_point>& t) {
  return t ? nlohmann::json(FormatRfc3339(*t)) : nlohmann::json(nullptr);
}

void CallAll(std::vector<std::function<void()>>& fns) {
  for (auto& fn : fns) {
    if (fn) fn();
  }
}

// What the job object itself holds besides its result log.
std::size_t BookkeepingBytes(const std::string& id,
                             const std::string& pipeline) {
  return MallocChunkBytes(sizeof(Job)) + StringHeapBytes(id) +
         StringHeapBytes(pipeline);
}

}  // namespace

std::size_t RecordCost(const ResultRecord& r) {
  return sizeof(ResultRecord) + JsonHeapBytes(r.value) +
         StringHeapBytes(r.value_text) + StringHeapBytes(r.error) +
         StringHeapBytes(r.stage);
}

bool ResultBudget::TryTake(std::uint64_t n) {
  std::uint64_t cur = used_.load(std::memory_order_relaxed);
  for (;;) {
    if (cur > limit_ || n > limit_ - cur) return false;
    if (used_.compare_exchange_weak(cur, cur + n, std::memory_order_relaxed)) {
      return true;
    }
  }
}

ResultBudget::Charge ResultBudget::TryCharge(std::uint64_t n) {
  if (TryTake(n)) return {.ok = true, .retry_at = std::nullopt};
  MutexLock lock(&mu_);
  Charge charge;
  // Chargers on the fast path may take the room reclaim made before this
  // thread does; a few rounds, then the caller is told to retry now.
  for (int round = 0; round < 4 && reclaim_; ++round) {
    charge.retry_at = reclaim_(n);
    charge.ok = TryTake(n);
    if (charge.ok || !charge.retry_at ||
        *charge.retry_at > std::chrono::system_clock::now()) {
      break;
    }
  }
  if (!reclaim_) charge.ok = TryTake(n);
  return charge;
}

void ResultBudget::SetReclaim(Reclaim reclaim) {
  MutexLock lock(&mu_);
  reclaim_ = std::move(reclaim);
}

std::string_view ToString(JobState state) {
  switch (state) {
    case JobState::kQueued:
      return "queued";
    case JobState::kRunning:
      return "running";
    case JobState::kDone:
      return "done";
    case JobState::kFailed:
      return "failed";
    case JobState::kCancelled:
      return "cancelled";
  }
  return "unknown";
}

bool IsFinal(JobState state) {
  return state == JobState::kDone || state == JobState::kFailed ||
         state == JobState::kCancelled;
}

nlohmann::json ToJson(const ResultRecord& record) {
  if (record.window) {
    return {{"type", "aggregate"},
            {"window", *record.window},
            {"value", record.value}};
  }
  nlohmann::json j = nlohmann::json::object();
  j["seq"] = record.seq;
  if (record.is_error) {
    j["error"] = record.error;
    j["stage"] = record.stage;
  } else {
    j["value"] = ValueOf(record);
  }
  return j;
}

std::string RecordText(const ResultRecord& record) {
  if (record.value_text.empty() || record.is_error || record.window) {
    return DumpLenient(ToJson(record));
  }
  std::string out = R"({"seq":)" + std::to_string(record.seq) + R"(,"value":)";
  out += record.value_text;
  out += '}';
  return out;
}

nlohmann::json ValueOf(const ResultRecord& record) {
  if (record.value_text.empty()) return record.value;
  nlohmann::json v = nlohmann::json::parse(record.value_text, nullptr, false);
  return v.is_discarded() ? nlohmann::json() : v;
}

std::string NewJobId() {
  // One generator for the process, seeded once from the OS; a mutex is
  // cheaper than it sounds next to the rest of admitting a job.
  static Mutex mu;
  static std::mt19937_64 rng SLUICE_GUARDED_BY(mu) = [] {
    std::random_device rd;
    std::seed_seq seed{
        rd(), rd(), rd(), rd(),
        static_cast<unsigned>(
            std::chrono::steady_clock::now().time_since_epoch().count())};
    return std::mt19937_64(seed);
  }();
  std::uint64_t bits = 0;
  {
    MutexLock lock(&mu);
    bits = rng();
  }
  char buf[17];
  std::snprintf(buf, sizeof(buf), "%016llx",
                static_cast<unsigned long long>(bits));
  return std::string(buf, 16);
}

Job::Job(std::string id, std::string pipeline, std::uint64_t accepted,
         Clock::time_point created_at, ResultLimits limits)
    : id_(std::move(id)),
      pipeline_(std::move(pipeline)),
      created_at_(created_at),
      limits_(std::move(limits)) {
  counts_.in = accepted;
  charged_ = BookkeepingBytes(id_, pipeline_);
  if (limits_.budget) limits_.budget->ForceCharge(charged_);
}

Job::~Job() {
  // No lock: the last reference is gone, so no other thread can hold mu_;
  // and a job is often freed under the store's lock (eviction), where taking
  // mu_ would invert the job -> budget -> store order.
  if (limits_.budget) limits_.budget->Refund(charged_);
}

JobState Job::state() const {
  MutexLock lock(&mu_);
  return state_;
}

Counts Job::counts() const {
  MutexLock lock(&mu_);
  return counts_;
}

bool Job::finished() const {
  MutexLock lock(&mu_);
  return IsFinal(state_);
}

std::optional<Job::Clock::time_point> Job::finished_at() const {
  MutexLock lock(&mu_);
  return finished_at_;
}

nlohmann::json Job::aggregate() const {
  MutexLock lock(&mu_);
  return aggregate_;
}

nlohmann::json Job::Status() const {
  MutexLock lock(&mu_);
  nlohmann::json items = {
      {"in", counts_.in},
      {"out", counts_.out},
      {"filtered", counts_.filtered},
      {"errors", counts_.errors},
      {"cancelled", counts_.cancelled},
      {"completed", completed_.load(std::memory_order_relaxed)}};
  nlohmann::json j = nlohmann::json::object();
  j["id"] = id_;
  j["pipeline"] = pipeline_;
  j["state"] = ToString(state_);
  j["items"] = std::move(items);
  j["aggregate"] = aggregate_;
  j["created_at"] = FormatRfc3339(created_at_);
  j["started_at"] = TimeOrNull(started_at_);
  j["finished_at"] = TimeOrNull(finished_at_);
  if (!error_.is_null()) j["error"] = error_;
  return j;
}

nlohmann::json Job::error() const {
  MutexLock lock(&mu_);
  return error_;
}

std::size_t Job::result_count() const {
  MutexLock lock(&mu_);
  return results_.size();
}

std::vector<ResultRecord> Job::CopyLocked(std::size_t offset, std::size_t limit,
                                          std::size_t max_bytes) const {
  if (offset >= results_.size()) return {};
  const std::size_t end = offset + std::min(limit, results_.size() - offset);
  std::vector<ResultRecord> out;
  std::size_t bytes = 0;
  for (std::size_t i = offset; i < end; ++i) {
    const ResultRecord& r = results_[i];
    bytes += RecordCost(r);
    if (!out.empty() && bytes > max_bytes) break;
    out.push_back(r);
  }
  return out;
}

std::vector<ResultRecord> Job::Results(std::size_t offset, std::size_t limit,
                                       std::size_t max_bytes) const {
  MutexLock lock(&mu_);
  return CopyLocked(offset, limit, max_bytes);
}

void Job::ForEachResult(
    const std::function<void(const ResultRecord&)>& fn) const {
  MutexLock lock(&mu_);
  for (const ResultRecord& r : results_) fn(r);
}

std::vector<ResultRecord> Job::TakeResults() {
  std::vector<ResultRecord> out;
  std::uint64_t refund = 0;
  {
    MutexLock lock(&mu_);
    out.reserve(results_.size());
    for (ResultRecord& r : results_) out.push_back(std::move(r));
    results_.clear();
    refund = std::min<std::uint64_t>(result_bytes_, charged_);
    charged_ -= refund;
    result_bytes_ = 0;
  }
  if (limits_.budget) limits_.budget->Refund(refund);
  return out;
}

std::vector<ResultRecord> Job::ReadFrom(std::size_t offset, std::size_t max,
                                        bool* finished,
                                        std::function<void()> wake,
                                        std::size_t max_bytes) {
  MutexLock lock(&mu_);
  *finished = false;
  if (offset < results_.size()) {
    return CopyLocked(offset, std::max<std::size_t>(max, 1), max_bytes);
  }
  if (IsFinal(state_)) {
    *finished = true;
    return {};
  }
  wakers_.push_back(std::move(wake));
  return {};
}

bool Job::NotifyWhenFinished(std::function<void()> fn) {
  MutexLock lock(&mu_);
  if (IsFinal(state_)) return false;
  finish_waiters_.push_back(std::move(fn));
  return true;
}

std::size_t Job::retained_bytes() const {
  MutexLock lock(&mu_);
  return charged_;
}

std::size_t Job::result_bytes() const {
  MutexLock lock(&mu_);
  return result_bytes_;
}

void Job::AddAccepted(std::uint64_t n) {
  MutexLock lock(&mu_);
  counts_.in += n;
}

void Job::MarkRunning(Clock::time_point now) {
  MutexLock lock(&mu_);
  if (state_ != JobState::kQueued) return;
  state_ = JobState::kRunning;
  started_at_ = now;
}

std::vector<std::function<void()>> Job::TakeWakersLocked() {
  std::vector<std::function<void()>> out;
  out.swap(wakers_);
  return out;
}

void Job::FailLocked(std::string_view code, std::string message) {
  error_ = {{"code", code}, {"message", std::move(message)}};
  cancel_requested_.store(true, std::memory_order_release);
}

void Job::AddCounts(std::uint64_t out, std::uint64_t errors,
                    std::uint64_t filtered, std::uint64_t cancelled) {
  MutexLock lock(&mu_);
  if (IsFinal(state_)) return;
  counts_.out += out;
  counts_.errors += errors;
  counts_.filtered += filtered;
  counts_.cancelled += cancelled;
}

bool Job::Append(std::vector<ResultRecord>& records, std::uint64_t filtered,
                 std::uint64_t cancelled,
                 std::optional<Clock::time_point>* retry_at) {
  std::vector<std::function<void()>> wake;
  bool failed_now = false;
  {
    MutexLock lock(&mu_);
    if (IsFinal(state_)) return false;
    // How many of the records fit the job's own cap, and what they cost.
    std::size_t keep = 0;
    std::size_t cost = 0;
    bool over_cap = false;
    if (error_.is_null()) {
      for (; keep < records.size(); ++keep) {
        const std::size_t c = RecordCost(records[keep]);
        if (result_bytes_ + cost + c > limits_.max_bytes) {
          over_cap = true;
          break;
        }
        cost += c;
      }
      if (keep > 0 && limits_.budget) {
        const ResultBudget::Charge charge = limits_.budget->TryCharge(cost);
        if (!charge.ok && retry_at != nullptr && charge.retry_at) {
          *retry_at = charge.retry_at;  // back-pressure: nothing changed
          return false;
        }
        if (!charge.ok) {
          FailLocked(kResultsMemoryFull,
                     "the results of all jobs reached jobs.max_retained_bytes "
                     "(" +
                         std::to_string(limits_.budget->limit()) +
                         " bytes), held by running jobs, after " +
                         std::to_string(results_.size()) +
                         " records of this job; its remaining items were "
                         "cancelled");
          failed_now = true;
          over_cap = false;
          keep = 0;
          cost = 0;
        }
      }
      if (over_cap) {
        FailLocked(kResultsTooLarge,
                   "the job's results passed jobs.max_job_result_bytes (" +
                       std::to_string(limits_.max_bytes) + " bytes) after " +
                       std::to_string(results_.size() + keep) +
                       " records; its remaining items were cancelled");
        failed_now = true;
      }
    }
    counts_.filtered += filtered;
    counts_.cancelled += cancelled;
    for (std::size_t i = 0; i < records.size(); ++i) {
      ResultRecord& r = records[i];
      if (i >= keep) {
        // Not kept: a result or error that ends as cancelled, so the counts
        // still add up (a window's aggregate counts nowhere).
        if (!r.window) ++counts_.cancelled;
        continue;
      }
      if (r.window) {
        // A window's aggregate: neither a result nor an error.
      } else if (r.is_error) {
        ++counts_.errors;
      } else {
        ++counts_.out;
      }
      results_.push_back(std::move(r));
    }
    records.clear();
    result_bytes_ += cost;
    charged_ += cost;
    if (keep > 0) wake = TakeWakersLocked();
  }
  CallAll(wake);
  return failed_now;
}

bool Job::RequestCancel() {
  MutexLock lock(&mu_);
  if (IsFinal(state_)) return false;
  cancel_requested_.store(true, std::memory_order_release);
  return true;
}

void Job::Restore(const Summary& summary) {
  std::vector<std::function<void()>> wake;
  std::vector<std::function<void()>> done;
  {
    MutexLock lock(&mu_);
    if (IsFinal(state_)) return;
    state_ = summary.state;
    counts_ = summary.counts;
    completed_.store(summary.completed, std::memory_order_relaxed);
    started_at_ = summary.started_at;
    finished_at_ = summary.finished_at;
    aggregate_ = summary.aggregate;
    error_ = summary.error;
    if (summary.state == JobState::kCancelled) {
      cancel_requested_.store(true, std::memory_order_release);
    }
    if (IsFinal(state_)) {
      wake = TakeWakersLocked();
      done.swap(finish_waiters_);
    }
  }
  CallAll(wake);
  CallAll(done);
}

std::optional<JobState> Job::Finish(nlohmann::json aggregate, bool failed,
                                    Clock::time_point now) {
  std::vector<std::function<void()>> wake;
  std::vector<std::function<void()>> done;
  JobState final_state = JobState::kDone;
  {
    MutexLock lock(&mu_);
    if (IsFinal(state_)) return std::nullopt;
    if (failed || !error_.is_null()) {
      final_state = JobState::kFailed;
      // A job that failed as a whole has no meaningful aggregate.
      if (!error_.is_null()) aggregate = nullptr;
    } else if (cancel_requested_.load(std::memory_order_relaxed)) {
      final_state = JobState::kCancelled;
    }
    state_ = final_state;
    finished_at_ = now;
    aggregate_ = std::move(aggregate);
    const std::size_t bytes = JsonHeapBytes(aggregate_);
    charged_ += bytes;
    if (limits_.budget) limits_.budget->ForceCharge(bytes);
    wake = TakeWakersLocked();
    done.swap(finish_waiters_);
  }
  CallAll(wake);
  CallAll(done);
  return final_state;
}

}  // namespace sluice::jobs
