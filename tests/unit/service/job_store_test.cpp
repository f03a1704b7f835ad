// Unit tests of sluice::jobs::JobStore: lookup, newest-first listing, the
// retention of finished jobs by age and by bytes (running jobs stay), the
// shared result budget running jobs draw on, and min_retention.
#include "service/jobs/job_store.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace sluice::jobs {
namespace {

using namespace std::chrono_literals;
using Clock = Job::Clock;

std::shared_ptr<Job> MakeJob(const std::string& id,
                             Clock::time_point created = Clock::now()) {
  return std::make_shared<Job>(id, "p", 0, created);
}

// `n` result records of `bytes_each` bytes of text.
std::vector<ResultRecord> Records(int n, std::size_t bytes_each) {
  std::vector<ResultRecord> rs;
  for (int i = 0; i < n; ++i) {
    rs.push_back(ResultRecord{static_cast<std::uint64_t>(i),
                              false,
                              std::string(bytes_each, 'x'),
                              {},
                              {},
                              {},
                              {}});
  }
  return rs;
}

// Finishes `job` at `when` with `records` results of ~`bytes_each` bytes.
void FinishWith(Job& job, int records, std::size_t bytes_each,
                Clock::time_point when = Clock::now()) {
  job.Append(Records(records, bytes_each), 0, 0);
  job.Finish(nullptr, false, when);
}

std::vector<std::string> Ids(const std::vector<std::shared_ptr<Job>>& jobs) {
  std::vector<std::string> ids;
  for (const auto& j : jobs) ids.push_back(j->id());
  return ids;
}

TEST(JobStoreTest, AddFindAndRefuseDuplicates) {
  JobStore store({});
  auto a = MakeJob("a");
  EXPECT_TRUE(store.Add(a));
  EXPECT_FALSE(store.Add(MakeJob("a")));
  EXPECT_EQ(store.Find("a"), a);
  EXPECT_EQ(store.Find("zzz"), nullptr);
  EXPECT_EQ(store.size(), 1u);
}

TEST(JobStoreTest, ListsNewestFirst) {
  JobStore store({});
  for (const char* id : {"1", "2", "3", "4"})
    ASSERT_TRUE(store.Add(MakeJob(id)));
  EXPECT_EQ(Ids(store.List(10)),
            (std::vector<std::string>{"4", "3", "2", "1"}));
  EXPECT_EQ(Ids(store.List(2)), (std::vector<std::string>{"4", "3"}));
  EXPECT_TRUE(store.List(0).empty());
}

TEST(JobStoreTest, EvictsFinishedJobsPastRetention) {
  JobStore store({.retention = 1000ms, .max_retained_bytes = 1 << 30});
  const auto now = Clock::now();
  auto old_job = MakeJob("old");
  auto recent = MakeJob("recent");
  auto running = MakeJob("running");
  ASSERT_TRUE(store.Add(old_job));
  ASSERT_TRUE(store.Add(recent));
  ASSERT_TRUE(store.Add(running));

  FinishWith(*old_job, 1, 10, now - 2s);
  store.OnFinished(old_job);
  EXPECT_EQ(store.Find("old"), nullptr) << "finished 2 s ago, retention 1 s";

  FinishWith(*recent, 1, 10, now);
  store.OnFinished(recent);
  EXPECT_NE(store.Find("recent"), nullptr);

  EXPECT_EQ(store.Sweep(now + 1500ms), 1u);
  EXPECT_EQ(store.Find("recent"), nullptr);
  EXPECT_EQ(store.Sweep(now + 24h), 0u);
  EXPECT_NE(store.Find("running"), nullptr) << "running jobs never expire";
  EXPECT_EQ(store.finished_bytes(), 0u);
}

// A job of `store`, bounded and counted by it.
std::shared_ptr<Job> StoredJob(JobStore& store, const std::string& id) {
  auto job =
      std::make_shared<Job>(id, "p", 0, Clock::now(), store.job_limits());
  EXPECT_TRUE(store.Add(job));
  return job;
}

// What one job of 10 records of 1000 bytes retains once finished.
std::size_t OneJobBytes() {
  Job probe("probe", "p");
  FinishWith(probe, 10, 1000);
  return probe.retained_bytes();
}

// A store whose budget holds about two and a half such jobs.
JobStore::Limits TwoAndAHalfJobs(std::chrono::milliseconds min_retention) {
  const std::size_t one = OneJobBytes();
  return {.retention = 1h,
          .max_retained_bytes = 2 * one + one / 2,
          .max_job_result_bytes = 2 * one,
          .min_retention = min_retention};
}

// Adds such a job to `store`, finished at `when`, held by the store alone.
void AddFinished(JobStore& store, const std::string& id,
                 Clock::time_point when = Clock::now()) {
  auto job = StoredJob(store, id);
  FinishWith(*job, 10, 1000, when);
  store.OnFinished(job);
}

TEST(JobStoreTest, EvictsOldestFinishedBeyondTheByteLimit) {
  // Nothing protected by age.
  JobStore store(TwoAndAHalfJobs(0ms));
  const std::size_t one = OneJobBytes();
  for (int i = 0; i < 4; ++i) StoredJob(store, "f" + std::to_string(i));
  // Finish in the order f2, f0, f3, f1: eviction follows finish order, and
  // happens when a job needs room. Only the store holds the jobs between
  // turns, so an evicted job's memory goes at once.
  for (int i : {2, 0, 3, 1}) {
    std::shared_ptr<Job> job = store.Find("f" + std::to_string(i));
    ASSERT_NE(job, nullptr) << i;
    EXPECT_FALSE(job->Append(Records(10, 1000), 0, 0))
        << "room is made by evicting older finished jobs";
    job->Finish(nullptr);
    store.OnFinished(job);
  }
  EXPECT_EQ(store.Find("f2"), nullptr);
  EXPECT_EQ(store.Find("f0"), nullptr);
  EXPECT_NE(store.Find("f3"), nullptr);
  EXPECT_NE(store.Find("f1"), nullptr);
  EXPECT_LE(store.budget()->used(), 2 * one + one / 2);
  EXPECT_EQ(Ids(store.List(10)), (std::vector<std::string>{"f3", "f1"}));
}

TEST(JobStoreTest, RunningJobsCountAgainstTheBudget) {
  JobStore store(TwoAndAHalfJobs(0ms));
  AddFinished(store, "old");
  AddFinished(store, "newest");
  // A running job's results take the room of finished jobs, oldest first.
  auto running = StoredJob(store, "running");
  auto records = Records(10, 1000);
  std::optional<Job::Clock::time_point> retry_at;
  EXPECT_FALSE(running->Append(records, 0, 0, &retry_at));
  EXPECT_EQ(store.Find("old"), nullptr);
  EXPECT_NE(store.Find("newest"), nullptr);
  records = Records(10, 1000);
  EXPECT_FALSE(running->Append(records, 0, 0, &retry_at));
  EXPECT_EQ(store.Find("newest"), nullptr);
  // Only running jobs hold the budget now: nothing to wait for, so the
  // next one that needs room fails.
  auto second = StoredJob(store, "second");
  records = Records(10, 1000);
  EXPECT_TRUE(second->Append(records, 0, 0, &retry_at));
  EXPECT_FALSE(retry_at.has_value());
  EXPECT_EQ(second->error()["code"], kResultsMemoryFull);
  EXPECT_LE(store.budget()->used(), store.budget()->limit());
  EXPECT_EQ(running->counts().out, 20u);
  EXPECT_EQ(second->counts().out, 0u);
  EXPECT_EQ(second->counts().cancelled, 10u) << "dropped records end cancelled";
  EXPECT_EQ(second->Finish(nullptr), JobState::kFailed);
  EXPECT_EQ(running->Finish(nullptr), JobState::kDone);
}

TEST(JobStoreTest, JustFinishedJobsStayForMinRetention) {
  JobStore store(TwoAndAHalfJobs(10s));
  const auto now = Clock::now();
  AddFinished(store, "a", now);
  AddFinished(store, "b", now);
  // Both finished just now: a running job that may wait is told when the
  // oldest may go, and nothing changes (the engine holds its results).
  auto running = StoredJob(store, "running");
  auto records = Records(10, 1000);
  std::optional<Job::Clock::time_point> retry_at;
  EXPECT_FALSE(running->Append(records, 3, 0, &retry_at));
  ASSERT_TRUE(retry_at.has_value());
  EXPECT_EQ(*retry_at, now + 10s);
  EXPECT_EQ(records.size(), 10u) << "the records are left to the caller";
  EXPECT_EQ(running->counts().out, 0u);
  EXPECT_EQ(running->counts().filtered, 0u);
  EXPECT_TRUE(running->error().is_null());
  EXPECT_NE(store.Find("a"), nullptr);
  EXPECT_NE(store.Find("b"), nullptr);
  // One that may not wait fails rather than evict them.
  auto other = StoredJob(store, "other");
  EXPECT_TRUE(other->Append(Records(10, 1000), 0, 0));
  EXPECT_EQ(other->error()["code"], kResultsMemoryFull);
  EXPECT_NE(store.Find("a"), nullptr);
  // Past min_retention the oldest may go for room.
  EXPECT_EQ(store.Reclaim(OneJobBytes(), now + 11s), now + 11s)
      << "room made: retry at once";
  EXPECT_EQ(store.Find("a"), nullptr);
  EXPECT_NE(store.Find("b"), nullptr);
}

TEST(JobStoreTest, EvictedJobsGiveTheirBytesBackWhenLastReleased) {
  JobStore store({.retention = 1000ms,
                  .max_retained_bytes = 1 << 20,
                  .max_job_result_bytes = 1 << 20,
                  .min_retention = 0ms});
  const std::uint64_t empty = store.budget()->used();
  auto job = StoredJob(store, "j");
  FinishWith(*job, 10, 1000, Clock::now() - 2s);
  EXPECT_GT(store.budget()->used(), empty + 10 * 1000);
  store.OnFinished(job);  // expired at once, but a reader still holds it
  EXPECT_EQ(store.Find("j"), nullptr);
  EXPECT_GT(store.budget()->used(), empty + 10 * 1000);
  job.reset();
  EXPECT_EQ(store.budget()->used(), empty);
}

TEST(JobStoreTest, OnFinishedIgnoresUnfinishedAndUnknownJobs) {
  JobStore store({.retention = 1ms, .max_retained_bytes = 1});
  auto running = MakeJob("r");
  ASSERT_TRUE(store.Add(running));
  store.OnFinished(running);  // not finished: stays
  EXPECT_NE(store.Find("r"), nullptr);
  auto stranger = MakeJob("s");
  FinishWith(*stranger, 1, 1);
  store.OnFinished(stranger);  // not stored: no effect
  EXPECT_EQ(store.size(), 1u);
}

TEST(JobStoreTest, UnfinishedListsRunningJobsOldestFirst) {
  JobStore store({});
  const auto t0 = Clock::now();
  auto a = MakeJob("a", t0);
  auto b = MakeJob("b", t0 + 1ms);
  auto c = MakeJob("c", t0 + 2ms);
  ASSERT_TRUE(store.Add(c));
  ASSERT_TRUE(store.Add(a));
  ASSERT_TRUE(store.Add(b));
  FinishWith(*b, 0, 0);
  // b finished but OnFinished has not run yet: still left out.
  EXPECT_EQ(Ids(store.Unfinished()), (std::vector<std::string>{"a", "c"}));
}

TEST(JobStoreTest, ConcurrentUse) {
  JobStore store({.retention = 1h,
                  .max_retained_bytes = 200000,
                  .max_job_result_bytes = 50000,
                  .min_retention = 0ms});
  constexpr int kThreads = 4;
  constexpr int kJobs = 500;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kJobs; ++i) {
        auto job =
            StoredJob(store, std::to_string(t) + "-" + std::to_string(i));
        store.Find(job->id());
        FinishWith(*job, 2, 100);
        store.OnFinished(job);
        if (i % 50 == 0) store.List(20);
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_LE(store.budget()->used(), 200000u);
  EXPECT_GT(store.size(), 0u);
  EXPECT_LT(store.size(), static_cast<std::size_t>(kThreads * kJobs));
}

}  // namespace
}  // namespace sluice::jobs
