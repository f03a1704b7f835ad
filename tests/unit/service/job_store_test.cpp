// Unit tests of sluice::jobs::JobStore: lookup, newest-first listing, and the
// retention of finished jobs by age and by bytes (running jobs stay).
#include "service/jobs/job_store.hpp"

#include <gtest/gtest.h>

#include <chrono>
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

// Finishes `job` at `when` with `records` results of ~`bytes_each` bytes.
void FinishWith(Job& job, int records, std::size_t bytes_each,
                Clock::time_point when = Clock::now()) {
  std::vector<ResultRecord> rs;
  for (int i = 0; i < records; ++i) {
    rs.push_back(ResultRecord{static_cast<std::uint64_t>(i),
                              false,
                              std::string(bytes_each, 'x'),
                              {},
                              {},
                              {}});
  }
  job.Append(std::move(rs), 0, 0);
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
  for (const char* id : {"1", "2", "3", "4"}) store.Add(MakeJob(id));
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
  store.Add(old_job);
  store.Add(recent);
  store.Add(running);

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

TEST(JobStoreTest, EvictsOldestFinishedBeyondTheByteLimit) {
  // Each finished job holds roughly 10 x 1000 bytes; the limit fits two.
  auto probe = MakeJob("probe");
  FinishWith(*probe, 10, 1000);
  const std::size_t one = probe->retained_bytes();
  JobStore store({.retention = 1h, .max_retained_bytes = 2 * one + one / 2});

  auto big_running = MakeJob("big-running");
  store.Add(big_running);
  std::vector<ResultRecord> rs;
  for (int i = 0; i < 100; ++i) {
    rs.push_back(ResultRecord{0, false, std::string(1000, 'y'), {}, {}, {}});
  }
  big_running->Append(std::move(rs), 0, 0);  // over the limit, but running

  std::vector<std::shared_ptr<Job>> jobs;
  for (int i = 0; i < 4; ++i) {
    jobs.push_back(MakeJob("f" + std::to_string(i)));
    store.Add(jobs.back());
  }
  // Finish in the order f2, f0, f3, f1: eviction follows finish order.
  for (int i : {2, 0, 3, 1}) {
    FinishWith(*jobs[i], 10, 1000);
    store.OnFinished(jobs[i]);
  }
  EXPECT_EQ(store.Find("f2"), nullptr);
  EXPECT_EQ(store.Find("f0"), nullptr);
  EXPECT_NE(store.Find("f3"), nullptr);
  EXPECT_NE(store.Find("f1"), nullptr);
  EXPECT_NE(store.Find("big-running"), nullptr);
  EXPECT_LE(store.finished_bytes(), 2 * one + one / 2);
  EXPECT_EQ(Ids(store.List(10)),
            (std::vector<std::string>{"f3", "f1", "big-running"}));
}

TEST(JobStoreTest, OnFinishedIgnoresUnfinishedAndUnknownJobs) {
  JobStore store({.retention = 1ms, .max_retained_bytes = 1});
  auto running = MakeJob("r");
  store.Add(running);
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
  store.Add(c);
  store.Add(a);
  store.Add(b);
  FinishWith(*b, 0, 0);
  // b finished but OnFinished has not run yet: still left out.
  EXPECT_EQ(Ids(store.Unfinished()), (std::vector<std::string>{"a", "c"}));
}

TEST(JobStoreTest, ConcurrentUse) {
  JobStore store({.retention = 1h, .max_retained_bytes = 200000});
  constexpr int kThreads = 4;
  constexpr int kJobs = 500;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kJobs; ++i) {
        auto job = MakeJob(std::to_string(t) + "-" + std::to_string(i));
        ASSERT_TRUE(store.Add(job));
        store.Find(job->id());
        FinishWith(*job, 2, 100);
        store.OnFinished(job);
        if (i % 50 == 0) store.List(20);
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_LE(store.finished_bytes(), 200000u);
  EXPECT_GT(store.size(), 0u);
  EXPECT_LT(store.size(), static_cast<std::size_t>(kThreads * kJobs));
}

}  // namespace
}  // namespace sluice::jobs
