#include "service/jobs/job.hpp"

#include <algorithm>
#include <cstdio>
#include <random>
#include <utility>

#include "service/util/time.hpp"

namespace sluice::jobs {
namespace {

// Rough heap bytes of a JSON value: node overhead plus payload. Cheap enough
// to run on every record; exactness does not matter, only that the byte
// limit tracks what results really cost.
std::size_t JsonBytes(const nlohmann::json& v) {
  constexpr std::size_t kNode = sizeof(nlohmann::json);
  switch (v.type()) {
    case nlohmann::json::value_t::string:
      return kNode + 32 + v.get_ref<const std::string&>().size();
    case nlohmann::json::value_t::array: {
      std::size_t n = kNode + 24;
      for (const auto& e : v) n += JsonBytes(e);
      return n;
    }
    case nlohmann::json::value_t::object: {
      std::size_t n = kNode + 48;
      for (const auto& [key, e] : v.items()) {
        n += 64 + key.size() + JsonBytes(e);
      }
      return n;
    }
    case nlohmann::json::value_t::binary:
      return kNode + 32 + v.get_binary().size();
    default:
      return kNode;
  }
}

std::size_t RecordBytes(const ResultRecord& r) {
  return sizeof(ResultRecord) + JsonBytes(r.value) + r.error.size() +
         r.stage.size();
}

nlohmann::json TimeOrNull(const std::optional<Job::Clock::time_point>& t) {
  return t ? nlohmann::json(FormatRfc3339(*t)) : nlohmann::json(nullptr);
}

void CallAll(std::vector<std::function<void()>>& fns) {
  for (auto& fn : fns) {
    if (fn) fn();
  }
}

}  // namespace

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
    j["value"] = record.value;
  }
  return j;
}

std::string NewJobId() {
  // One generator for the process, seeded once from the OS; a mutex is
  // cheaper than it sounds next to the rest of admitting a job.
  static std::mutex mu;
  static std::mt19937_64 rng = [] {
    std::random_device rd;
    std::seed_seq seed{
        rd(), rd(), rd(), rd(),
        static_cast<unsigned>(
            std::chrono::steady_clock::now().time_since_epoch().count())};
    return std::mt19937_64(seed);
  }();
  std::uint64_t bits = 0;
  {
    std::lock_guard<std::mutex> lock(mu);
    bits = rng();
  }
  char buf[17];
  std::snprintf(buf, sizeof(buf), "%016llx",
                static_cast<unsigned long long>(bits));
  return std::string(buf, 16);
}

Job::Job(std::string id, std::string pipeline, std::uint64_t accepted,
         Clock::time_point created_at)
    : id_(std::move(id)),
      pipeline_(std::move(pipeline)),
      created_at_(created_at) {
  counts_.in = accepted;
}

JobState Job::state() const {
  std::lock_guard<std::mutex> lock(mu_);
  return state_;
}

Counts Job::counts() const {
  std::lock_guard<std::mutex> lock(mu_);
  return counts_;
}

bool Job::finished() const {
  std::lock_guard<std::mutex> lock(mu_);
  return IsFinal(state_);
}

std::optional<Job::Clock::time_point> Job::finished_at() const {
  std::lock_guard<std::mutex> lock(mu_);
  return finished_at_;
}

nlohmann::json Job::aggregate() const {
  std::lock_guard<std::mutex> lock(mu_);
  return aggregate_;
}

nlohmann::json Job::Status() const {
  std::lock_guard<std::mutex> lock(mu_);
  nlohmann::json items = {{"in", counts_.in},
                          {"out", counts_.out},
                          {"filtered", counts_.filtered},
                          {"errors", counts_.errors},
                          {"cancelled", counts_.cancelled}};
  nlohmann::json j = nlohmann::json::object();
  j["id"] = id_;
  j["pipeline"] = pipeline_;
  j["state"] = ToString(state_);
  j["items"] = std::move(items);
  j["aggregate"] = aggregate_;
  j["created_at"] = FormatRfc3339(created_at_);
  j["started_at"] = TimeOrNull(started_at_);
  j["finished_at"] = TimeOrNull(finished_at_);
  return j;
}

std::size_t Job::result_count() const {
  std::lock_guard<std::mutex> lock(mu_);
  return results_.size();
}

std::vector<ResultRecord> Job::Results(std::size_t offset,
                                       std::size_t limit) const {
  std::lock_guard<std::mutex> lock(mu_);
  if (offset >= results_.size()) return {};
  const std::size_t end = offset + std::min(limit, results_.size() - offset);
  return {results_.begin() + static_cast<std::ptrdiff_t>(offset),
          results_.begin() + static_cast<std::ptrdiff_t>(end)};
}

std::vector<ResultRecord> Job::ReadFrom(std::size_t offset, std::size_t max,
                                        bool* finished,
                                        std::function<void()> wake) {
  std::lock_guard<std::mutex> lock(mu_);
  *finished = false;
  if (offset < results_.size()) {
    const std::size_t n =
        std::min(std::max<std::size_t>(max, 1), results_.size() - offset);
    return {results_.begin() + static_cast<std::ptrdiff_t>(offset),
            results_.begin() + static_cast<std::ptrdiff_t>(offset + n)};
  }
  if (IsFinal(state_)) {
    *finished = true;
    return {};
  }
  wakers_.push_back(std::move(wake));
  return {};
}

bool Job::NotifyWhenFinished(std::function<void()> fn) {
  std::lock_guard<std::mutex> lock(mu_);
  if (IsFinal(state_)) return false;
  finish_waiters_.push_back(std::move(fn));
  return true;
}

std::size_t Job::retained_bytes() const {
  std::lock_guard<std::mutex> lock(mu_);
  return sizeof(Job) + id_.size() + pipeline_.size() + JsonBytes(aggregate_) +
         result_bytes_;
}

void Job::AddAccepted(std::uint64_t n) {
  std::lock_guard<std::mutex> lock(mu_);
  counts_.in += n;
}

void Job::MarkRunning(Clock::time_point now) {
  std::lock_guard<std::mutex> lock(mu_);
  if (state_ != JobState::kQueued) return;
  state_ = JobState::kRunning;
  started_at_ = now;
}

std::vector<std::function<void()>> Job::TakeWakersLocked() {
  std::vector<std::function<void()>> out;
  out.swap(wakers_);
  return out;
}

void Job::Append(std::vector<ResultRecord> records, std::uint64_t filtered,
                 std::uint64_t cancelled) {
  std::vector<std::function<void()>> wake;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (IsFinal(state_)) return;
    counts_.filtered += filtered;
    counts_.cancelled += cancelled;
    if (records.empty()) return;
    for (ResultRecord& r : records) {
      if (r.window) {
        // A window's aggregate: neither a result nor an error.
      } else if (r.is_error) {
        ++counts_.errors;
      } else {
        ++counts_.out;
      }
      result_bytes_ += RecordBytes(r);
      results_.push_back(std::move(r));
    }
    wake = TakeWakersLocked();
  }
  CallAll(wake);
}

bool Job::RequestCancel() {
  std::lock_guard<std::mutex> lock(mu_);
  if (IsFinal(state_)) return false;
  cancel_requested_.store(true, std::memory_order_release);
  return true;
}

std::optional<JobState> Job::Finish(nlohmann::json aggregate, bool failed,
                                    Clock::time_point now) {
  std::vector<std::function<void()>> wake;
  std::vector<std::function<void()>> done;
  JobState final_state = JobState::kDone;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (IsFinal(state_)) return std::nullopt;
    if (failed) {
      final_state = JobState::kFailed;
    } else if (cancel_requested_.load(std::memory_order_relaxed)) {
      final_state = JobState::kCancelled;
    }
    state_ = final_state;
    finished_at_ = now;
    aggregate_ = std::move(aggregate);
    wake = TakeWakersLocked();
    done.swap(finish_waiters_);
  }
  CallAll(wake);
  CallAll(done);
  return final_state;
}

}  // namespace sluice::jobs
