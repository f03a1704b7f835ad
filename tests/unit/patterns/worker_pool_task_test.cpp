// Unit tests for the task form of sluice::WorkerPool<In, Out>
// (patterns/include/sluice/patterns/worker_pool.hpp): WorkerPool(rt, ...),
// whose workers are tasks on a Runtime running Out(In) or Task<Out>(In), and
// async_submit. Each runs on runtimes of 1, 2 and 4 threads. Nothing here
// asserts timing.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <set>
#include <stdexcept>
#include <stop_token>
#include <string>
#include <thread>
#include <vector>

#include "sluice/patterns/runtime.hpp"
#include "sluice/patterns/worker_pool.hpp"
#include "test_util.hpp"

namespace {

using sluice::JobResult;
using sluice::Runtime;
using sluice::sleep_for;
using sluice::Task;
using sluice::WorkerPool;
using sluice::test::drain;
using sluice::test::eventually;
using sluice::test::kSettle;
using namespace std::chrono_literals;

class WorkerPoolTaskTest : public sluice::test::ThreadCountTest {};

INSTANTIATE_TEST_SUITE_P(Threads, WorkerPoolTaskTest,
                         sluice::test::ThreadCounts(),
                         sluice::test::ThreadCountName());

// Checks that `results` holds one result per id 0..n-1, each ok with
// value id * 3 (the jobs below are x -> 3x with job x submitted as id x).
void expect_one_result_per_job(std::vector<JobResult<long>> results,
                               std::size_t n) {
  ASSERT_EQ(results.size(), n);
  std::set<std::uint64_t> ids;
  for (JobResult<long>& r : results) {
    ASSERT_TRUE(r.outcome.ok()) << r.outcome.error_message();
    EXPECT_EQ(r.outcome.value(), static_cast<long>(r.id) * 3);
    ids.insert(r.id);
  }
  EXPECT_EQ(ids.size(), n) << "an id came back twice";
  EXPECT_EQ(*ids.rbegin(), n - 1);
}

TEST_P(WorkerPoolTaskTest, EveryJobGetsOneResultWithItsId) {
  constexpr std::size_t kJobs = 2000;
  Runtime rt(threads());
  WorkerPool<long, long> pool(rt, 4, 8, [](long x) { return 3 * x; });
  EXPECT_EQ(pool.workers(), 4U);
  std::jthread submitter([&] {
    for (std::size_t i = 0; i < kJobs; ++i) {
      // One submitting thread: ids are 0, 1, 2, ...
      EXPECT_EQ(pool.submit(static_cast<long>(i)), i);
    }
    pool.close();
  });
  expect_one_result_per_job(drain(pool.results()), kJobs);
}

TEST_P(WorkerPoolTaskTest, SuspendingJobsSubmittedByTasks) {
  constexpr int kSubmitters = 4;
  constexpr int kEach = 250;
  std::atomic<int> submitting{kSubmitters};
  Runtime rt(threads());
  WorkerPool<long, long> pool(rt, 16, 4, [](long x) -> Task<long> {
    co_await sleep_for(std::chrono::microseconds(x % 5 * 50));
    co_return 3 * x;
  });
  for (int s = 0; s < kSubmitters; ++s) {
    rt.spawn([&pool, &submitting, s]() -> Task<> {
      for (int i = 0; i < kEach; ++i) {
        const std::optional<std::uint64_t> id =
            co_await pool.async_submit(s * kEach + i);
        EXPECT_TRUE(id.has_value());
      }
      if (submitting.fetch_sub(1) == 1) pool.close();
    });
  }
  std::set<std::uint64_t> ids;
  std::multiset<long> values;
  for (JobResult<long>& r : drain(pool.results())) {
    ids.insert(r.id);
    values.insert(r.outcome.value());
  }
  std::multiset<long> expected;
  for (long x = 0; x < kSubmitters * kEach; ++x) expected.insert(3 * x);
  EXPECT_EQ(values, expected);
  EXPECT_EQ(ids.size(), expected.size()) << "ids must be distinct";
  rt.wait();  // the submitters have ended before the pool goes
}

TEST_P(WorkerPoolTaskTest, AJobsExceptionIsItsErrorAndTheWorkerGoesOn) {
  constexpr int kJobs = 100;
  Runtime rt(threads());
  for (bool suspending : {false, true}) {
    auto plain = [](int x) -> int {
      if (x % 5 == 0) throw std::runtime_error("bad " + std::to_string(x));
      return x;
    };
    auto async = [plain](int x) -> Task<int> {
      co_await sluice::yield();
      co_return plain(x);
    };
    std::optional<WorkerPool<int, int>> pool;
    if (suspending) {
      pool.emplace(rt, 2, 4, async);
    } else {
      pool.emplace(rt, 2, 4, plain);
    }
    std::jthread submitter([&] {
      for (int i = 0; i < kJobs; ++i) EXPECT_TRUE(pool->submit(i).has_value());
      pool->close();
    });
    int errors = 0;
    for (JobResult<int>& r : drain(pool->results())) {
      if (r.id % 5 == 0) {
        ++errors;
        EXPECT_FALSE(r.outcome.ok());
        EXPECT_EQ(r.outcome.error_message(), "bad " + std::to_string(r.id));
      } else {
        EXPECT_EQ(r.outcome.value(), static_cast<int>(r.id));
      }
    }
    EXPECT_EQ(errors, kJobs / 5)
        << (suspending ? "Task<int>(int)" : "int(int)");
  }
}

TEST_P(WorkerPoolTaskTest, CloseDrainsTheQueueThenResultsCloseAndWaitReturns) {
  Runtime rt(threads());
  WorkerPool<long, long> pool(
      rt, 3, 32,
      [](long x) -> Task<long> {
        co_await sleep_for(1ms);
        co_return 3 * x;
      },
      64);
  for (long i = 0; i < 20; ++i) ASSERT_TRUE(pool.submit(i).has_value());
  std::this_thread::sleep_for(kSettle);
  EXPECT_FALSE(pool.results().closed()) << "closed before close()";
  pool.close();
  EXPECT_FALSE(pool.submit(99).has_value()) << "submit after close";
  pool.wait();  // every queued job has run
  EXPECT_TRUE(pool.results().closed());
  expect_one_result_per_job(drain(pool.results()), 20);
}

TEST_P(WorkerPoolTaskTest, AsyncSubmitBlockedOnAFullQueueEndsWhenStopped) {
  std::stop_source stop;
  std::atomic<bool> refused{false};
  Runtime rt(threads());
  {
    // Nobody reads results (capacity 1), so the workers stop taking jobs
    // and the queue (capacity 1) fills up.
    WorkerPool<int, int> pool(
        rt, 1, 1, [](int x) { return x; }, 1);
    rt.spawn([&]() -> Task<> {
      for (int i = 0;; ++i) {
        const std::optional<std::uint64_t> id =
            co_await pool.async_submit(i, stop.get_token());
        if (!id) break;
      }
      refused.store(true);
    });
    std::this_thread::sleep_for(kSettle);
    EXPECT_FALSE(refused.load()) << "async_submit must wait while full";
    stop.request_stop();
    // Once refused, the submitter no longer touches the pool.
    EXPECT_TRUE(eventually([&] { return refused.load(); }));
  }
}

TEST_P(WorkerPoolTaskTest, DestroyedWhileWorkersAreBlockedReturns) {
  std::atomic<int> ran{0};
  Runtime rt(threads());
  {
    // Workers blocked delivering results nobody reads, jobs still queued.
    WorkerPool<int, int> pool(
        rt, 2, 16,
        [&ran](int x) -> Task<int> {
          ++ran;
          co_return x;
        },
        1);
    for (int i = 0; i < 10; ++i) ASSERT_TRUE(pool.submit(i).has_value());
    ASSERT_TRUE(eventually([&] { return ran.load() >= 3; }));
    std::this_thread::sleep_for(kSettle);
  }  // requests stop: queued jobs are dropped, the workers end
  {
    WorkerPool<int, int> idle(rt, 100, 4, [](int x) { return x; });
  }  // workers suspended on an empty, open queue
}

TEST_P(WorkerPoolTaskTest, TenThousandSleepingWorkersShareTheRuntimeThreads) {
  constexpr std::size_t kWorkers = 10'000;
  constexpr long kJobs = 20'000;
  const int before = sluice::test::baseline_thread_count();
  std::atomic<int> peak{0};
  Runtime rt(threads());
  WorkerPool<long, long> pool(
      rt, kWorkers, 1024,
      [&peak](long x) -> Task<long> {
        if (x % 1000 == 0) {
          const int now = sluice::test::proc_task_count();
          if (now > peak.load()) peak.store(now);
        }
        co_await sleep_for(20ms);  // "I/O": holds no thread
        co_return 3 * x;
      },
      1024);
  rt.spawn([&pool]() -> Task<> {
    for (long i = 0; i < kJobs; ++i) {
      const std::optional<std::uint64_t> id = co_await pool.async_submit(i);
      EXPECT_EQ(id, static_cast<std::uint64_t>(i));
    }
    pool.close();
  });
  expect_one_result_per_job(drain(pool.results()),
                            static_cast<std::size_t>(kJobs));
  EXPECT_GT(peak.load(), 0);
  // The runtime's threads, never one per worker.
  EXPECT_LE(peak.load(), before + static_cast<int>(threads()));
  rt.wait();
}

TEST_P(WorkerPoolTaskTest, MoveOnlyJobsAndResults) {
  Runtime rt(threads());
  WorkerPool<std::unique_ptr<int>, std::unique_ptr<int>> pool(
      rt, 3, 8, [](std::unique_ptr<int> p) -> Task<std::unique_ptr<int>> {
        co_await sluice::yield();
        *p += 1000;
        co_return p;
      });
  // Half submitted by a thread, half by a task (async_submit); the last to
  // finish closes.
  std::atomic<int> submitting{2};
  std::jthread submitter([&] {
    for (int i = 0; i < 50; ++i) {
      EXPECT_TRUE(pool.submit(std::make_unique<int>(i)).has_value());
    }
    if (submitting.fetch_sub(1) == 1) pool.close();
  });
  rt.spawn([&pool, &submitting]() -> Task<> {
    for (int i = 50; i < 100; ++i) {
      const auto id = co_await pool.async_submit(std::make_unique<int>(i));
      EXPECT_TRUE(id.has_value());
    }
    if (submitting.fetch_sub(1) == 1) pool.close();
  });
  long sum = 0;
  for (auto& r : drain(pool.results())) sum += *r.outcome.value();
  EXPECT_EQ(sum, 100 * 1000 + 99 * 100 / 2);
  rt.wait();
}

}  // namespace
