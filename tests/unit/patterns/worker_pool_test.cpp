// Unit tests for sluice::WorkerPool<In, Out>, Outcome<T>, JobResult<T>
// (patterns/include/sluice/patterns/worker_pool.hpp), written against
// docs/patterns-api.md.
#include "sluice/patterns/worker_pool.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <stop_token>
#include <string>
#include <thread>
#include <tuple>
#include <type_traits>
#include <vector>

#include "test_util.hpp"

namespace {

using sluice::JobResult;
using sluice::WorkerPool;
using sluice::test::drain;
using sluice::test::eventually;
using sluice::test::Gate;
using sluice::test::kDeadline;
using sluice::test::kSettle;
using sluice::test::LiveGuard;
using sluice::test::thread_count_drops_to;
using namespace std::chrono_literals;

// "not copyable or movable"
static_assert(!std::is_copy_constructible_v<WorkerPool<int, int>>);
static_assert(!std::is_move_constructible_v<WorkerPool<int, int>>);
static_assert(!std::is_copy_assignable_v<WorkerPool<int, int>>);
static_assert(!std::is_move_assignable_v<WorkerPool<int, int>>);

std::stop_token stopped_token() {
  static std::stop_source source = [] {
    std::stop_source s;
    s.request_stop();
    return s;
  }();
  return source.get_token();
}

std::int64_t square_plus_one(int x) {
  return static_cast<std::int64_t>(x) * x + 1;
}

// ---------------------------------------------------------------------------
// Every job gets exactly one result, with its id
// ---------------------------------------------------------------------------

using WorkersQueue = std::tuple<std::size_t, std::size_t>;
class WorkerPoolJobsTest : public ::testing::TestWithParam<WorkersQueue> {};

TEST_P(WorkerPoolJobsTest, EveryJobGetsOneResultWithItsId) {
  // Not a structured binding: clang 14 cannot capture one in a lambda.
  const auto param = GetParam();
  const auto workers = std::get<0>(param);
  const auto queue = std::get<1>(param);
  constexpr int kJobs = 1000;
  WorkerPool<int, std::int64_t> pool(workers, queue, square_plus_one, 16);
  EXPECT_EQ(pool.workers(), workers);
  std::vector<JobResult<std::int64_t>> results;
  std::jthread reader([&](std::stop_token st) {
    while (auto r = pool.results().recv(st)) results.push_back(std::move(*r));
  });
  std::map<std::uint64_t, int> input_of;
  for (int i = 0; i < kJobs; ++i) {
    const auto id = pool.submit(i);
    ASSERT_TRUE(id.has_value());
    EXPECT_EQ(*id, static_cast<std::uint64_t>(i))
        << "ids are 0, 1, 2, ... in submission order";
    input_of[*id] = i;
  }
  pool.close();
  reader.join();
  EXPECT_TRUE(pool.results().closed());
  ASSERT_EQ(results.size(), static_cast<std::size_t>(kJobs));
  std::vector<int> seen(kJobs, 0);
  for (auto& r : results) {
    ASSERT_LT(r.id, static_cast<std::uint64_t>(kJobs));
    ++seen[static_cast<std::size_t>(r.id)];
    ASSERT_TRUE(r.outcome.ok()) << r.outcome.error_message();
    EXPECT_EQ(r.outcome.value(), square_plus_one(input_of[r.id]))
        << "wrong value for id " << r.id;
  }
  EXPECT_EQ(std::count(seen.begin(), seen.end(), 1), kJobs)
      << "ids lost or duplicated";
}

INSTANTIATE_TEST_SUITE_P(
    WorkersQueue, WorkerPoolJobsTest,
    ::testing::Combine(::testing::Values(std::size_t{1}, std::size_t{2},
                                         std::size_t{4}, std::size_t{8}),
                       ::testing::Values(std::size_t{0}, std::size_t{1},
                                         std::size_t{16})),
    [](const ::testing::TestParamInfo<WorkersQueue>& p) {
      return "w" + std::to_string(std::get<0>(p.param)) + "_q" +
             std::to_string(std::get<1>(p.param));
    });

class WorkerPoolSubmittersTest : public ::testing::TestWithParam<int> {};

TEST_P(WorkerPoolSubmittersTest, ConcurrentSubmittersGetDistinctIds) {
  const int submitters = GetParam();
  constexpr int kJobsEach = 250;
  WorkerPool<int, int> pool(4, 8, [](int x) { return -x; });
  std::mutex mu;
  std::map<std::uint64_t, int> input_of;
  std::vector<JobResult<int>> results;
  std::jthread reader([&](std::stop_token st) {
    while (auto r = pool.results().recv(st)) results.push_back(std::move(*r));
  });
  {
    std::vector<std::jthread> threads;
    for (int t = 0; t < submitters; ++t) {
      threads.emplace_back([&, t] {
        std::uint64_t last_id = 0;
        for (int i = 0; i < kJobsEach; ++i) {
          const int job = t * kJobsEach + i;
          const auto id = pool.submit(job);
          if (!id) {
            ADD_FAILURE() << "submit failed on an open pool";
            return;
          }
          if (i > 0) {
            EXPECT_GT(*id, last_id) << "ids of one submitter must increase";
          }
          last_id = *id;
          std::lock_guard lock(mu);
          EXPECT_TRUE(input_of.emplace(*id, job).second)
              << "id " << *id << " given twice";
        }
      });
    }
  }
  pool.close();
  reader.join();
  const auto total = static_cast<std::size_t>(submitters * kJobsEach);
  ASSERT_EQ(results.size(), total);
  ASSERT_EQ(input_of.size(), total);
  EXPECT_EQ(input_of.rbegin()->first, total - 1) << "ids are 0 .. n-1";
  for (auto& r : results) EXPECT_EQ(r.outcome.value(), -input_of.at(r.id));
}

INSTANTIATE_TEST_SUITE_P(Submitters, WorkerPoolSubmittersTest,
                         ::testing::Values(1, 2, 4, 8));

TEST(WorkerPoolTest, JobsRunConcurrentlyOnAllWorkers) {
  constexpr std::size_t kWorkers = 4;
  Gate gate;
  std::atomic<int> live{0};
  WorkerPool<int, int> pool(kWorkers, 16, [&](int x) {
    LiveGuard g(live);
    EXPECT_TRUE(gate.wait());
    return x;
  });
  for (int i = 0; i < static_cast<int>(kWorkers); ++i)
    ASSERT_TRUE(pool.submit(i).has_value());
  EXPECT_TRUE(eventually([&] {
    return live.load() == static_cast<int>(kWorkers);
  })) << "only "
      << live.load() << " jobs ran at once with " << kWorkers << " workers";
  gate.open();
  pool.close();
  EXPECT_EQ(drain(pool.results()).size(), kWorkers);
}

// ---------------------------------------------------------------------------
// Back-pressure: submit blocks while the queue is full, try_submit does not
// ---------------------------------------------------------------------------

TEST(WorkerPoolTest, SubmitBlocksWhileTheQueueIsFull) {
  constexpr std::size_t kQueue = 2;
  constexpr int kMore = 10;
  Gate gate;
  std::atomic<int> started{0};
  WorkerPool<std::string, std::size_t> pool(1, kQueue, [&](std::string s) {
    ++started;
    EXPECT_TRUE(gate.wait());
    return s.size();
  });
  ASSERT_TRUE(pool.submit("job0").has_value());
  ASSERT_TRUE(
      eventually([&] { return started.load() == 1; }));  // the worker is busy
  std::atomic<int> submitted{0};
  std::jthread submitter([&] {
    for (int i = 1; i <= kMore; ++i) {
      if (!pool.submit(std::string(static_cast<std::size_t>(i), 'x'))) return;
      ++submitted;
    }
  });
  ASSERT_TRUE(eventually([&] {
    return submitted.load() >= static_cast<int>(kQueue);
  })) << "the queue did not accept "
      << kQueue << " jobs";
  std::this_thread::sleep_for(2 * kSettle);
  EXPECT_LE(submitted.load(), static_cast<int>(kQueue) + 1)
      << "submit did not block with the queue full";
  std::string job(100, 'y');
  EXPECT_EQ(pool.try_submit(job), std::nullopt)
      << "try_submit succeeded on a full queue";
  EXPECT_EQ(job, std::string(100, 'y'))
      << "failed try_submit must leave the job intact";
  EXPECT_EQ(started.load(), 1);

  gate.open();  // the worker frees slots; the submitter gets through
  submitter.join();
  EXPECT_EQ(submitted.load(), kMore);
  pool.close();
  const auto results = drain(pool.results());
  EXPECT_EQ(results.size(), static_cast<std::size_t>(kMore + 1));
}

TEST(WorkerPoolTest, TrySubmitFailsWhenFullAndLeavesAMoveOnlyJobIntact) {
  Gate gate;
  std::atomic<int> started{0};
  WorkerPool<std::unique_ptr<int>, int> pool(1, 1, [&](std::unique_ptr<int> p) {
    ++started;
    EXPECT_TRUE(gate.wait());
    return *p;
  });
  auto j0 = std::make_unique<int>(0);
  ASSERT_TRUE(pool.try_submit(j0).has_value())
      << "try_submit failed with an empty queue";
  EXPECT_EQ(j0, nullptr) << "successful try_submit moves the job in";
  ASSERT_TRUE(eventually([&] { return started.load() == 1; }));
  auto j1 = std::make_unique<int>(1);
  ASSERT_TRUE(pool.try_submit(j1).has_value())
      << "try_submit failed with room in the queue";
  auto j2 = std::make_unique<int>(2);
  int* raw = j2.get();
  EXPECT_EQ(pool.try_submit(j2), std::nullopt)
      << "try_submit succeeded on a full queue";
  EXPECT_EQ(j2.get(), raw) << "failed try_submit must leave the job intact";
  gate.open();
  pool.close();
  auto results = drain(pool.results());
  ASSERT_EQ(results.size(), 2u);
  std::vector<int> values;
  for (auto& r : results) values.push_back(r.outcome.value());
  std::sort(values.begin(), values.end());
  EXPECT_EQ(values, (std::vector<int>{0, 1}));
}

TEST(WorkerPoolTest, BlockedSubmitIsCancelledByItsStopToken) {
  Gate gate;
  std::atomic<int> started{0};
  WorkerPool<int, int> pool(1, 1, [&](int x) {
    ++started;
    EXPECT_TRUE(gate.wait());
    return x;
  });
  ASSERT_TRUE(pool.submit(0).has_value());
  ASSERT_TRUE(eventually([&] { return started.load() == 1; }));
  ASSERT_TRUE(pool.submit(1).has_value());  // fills the queue
  std::stop_source ss;
  std::atomic<int> state{-1};  // -1 blocked, 0 nullopt, 1 id
  std::jthread submitter(
      [&] { state = pool.submit(2, ss.get_token()).has_value() ? 1 : 0; });
  std::this_thread::sleep_for(kSettle);
  EXPECT_EQ(state.load(), -1) << "submit did not block on a full queue";
  ss.request_stop();
  submitter.join();
  EXPECT_EQ(state.load(), 0);
  gate.open();
  pool.close();
  auto results = drain(pool.results());
  EXPECT_EQ(results.size(), 2u) << "the cancelled job must not run";
}

TEST(WorkerPoolTest, SubmitWithAStoppedTokenReturnsAtOnceAndQueuesNothing) {
  std::atomic<int> ran{0};
  WorkerPool<int, int> pool(1, 4, [&](int x) {
    ++ran;
    return x;
  });
  EXPECT_EQ(pool.submit(7, stopped_token()), std::nullopt);
  pool.close();
  EXPECT_TRUE(drain(pool.results()).empty());
  EXPECT_EQ(ran.load(), 0);
}

TEST(WorkerPoolTest, FailedSubmissionsQueueNothingAndIdsKeepIncreasing) {
  // Ids are distinct and increase for one submitting thread; a failed
  // submit queues nothing (it may leave a gap in the ids, as documented).
  Gate gate;
  std::atomic<int> started{0};
  WorkerPool<int, int> pool(1, 1, [&](int x) {
    ++started;
    EXPECT_TRUE(gate.wait());
    return x;
  });
  EXPECT_EQ(pool.submit(100, stopped_token()), std::nullopt);
  const std::optional<std::uint64_t> first = pool.submit(0);
  ASSERT_TRUE(first.has_value());
  ASSERT_TRUE(eventually([&] { return started.load() == 1; }));
  const std::optional<std::uint64_t> second =
      pool.submit(1);  // fills the queue
  ASSERT_TRUE(second.has_value());
  EXPECT_GT(*second, *first);
  int rejected = 2;
  EXPECT_EQ(pool.try_submit(rejected), std::nullopt);  // full
  EXPECT_EQ(rejected, 2);
  gate.open();
  const std::optional<std::uint64_t> third = pool.submit(2);
  ASSERT_TRUE(third.has_value());
  EXPECT_GT(*third, *second);
  pool.close();
  std::vector<std::uint64_t> ids;
  for (auto& r : drain(pool.results())) ids.push_back(r.id);
  std::sort(ids.begin(), ids.end());
  EXPECT_EQ(ids, (std::vector<std::uint64_t>{*first, *second, *third}));
}

TEST(WorkerPoolTest, SubmitAfterCloseFailsAndLeavesTheJobIntact) {
  WorkerPool<std::string, std::size_t> pool(
      2, 4, [](std::string s) { return s.size(); });
  pool.close();
  pool.close();  // idempotent
  EXPECT_EQ(pool.submit("late"), std::nullopt);
  std::string job(50, 'z');
  EXPECT_EQ(pool.try_submit(job), std::nullopt);
  EXPECT_EQ(job, std::string(50, 'z'));
  EXPECT_TRUE(drain(pool.results()).empty())
      << "results must close with no jobs";
}

// ---------------------------------------------------------------------------
// Exceptions are the job's error; the worker goes on
// ---------------------------------------------------------------------------

TEST(WorkerPoolTest, AnExceptionIsThatJobsErrorAndTheWorkerGoesOn) {
  constexpr int kJobs = 20;
  WorkerPool<int, int> pool(1, 4, [](int x) {
    if (x % 2 == 1) throw std::runtime_error("odd " + std::to_string(x));
    return x * 2;
  });
  std::map<std::uint64_t, int> input_of;
  std::vector<JobResult<int>> results;
  std::jthread reader([&](std::stop_token st) {
    while (auto r = pool.results().recv(st)) results.push_back(std::move(*r));
  });
  for (int i = 0; i < kJobs; ++i) {
    const auto id = pool.submit(i);
    ASSERT_TRUE(id.has_value());
    input_of[*id] = i;
  }
  pool.close();
  reader.join();
  ASSERT_EQ(results.size(), static_cast<std::size_t>(kJobs))
      << "a throwing job killed a worker";
  for (auto& r : results) {
    const int x = input_of.at(r.id);
    if (x % 2 == 1) {
      EXPECT_FALSE(r.outcome.ok()) << "job " << x;
      EXPECT_NE(r.outcome.error(), nullptr);
      EXPECT_EQ(r.outcome.error_message(), "odd " + std::to_string(x));
      EXPECT_THROW(r.outcome.value(), std::runtime_error)
          << "value() rethrows the job's exception";
    } else {
      EXPECT_TRUE(r.outcome.ok())
          << "job " << x << ": " << r.outcome.error_message();
      EXPECT_EQ(r.outcome.error(), nullptr);
      EXPECT_EQ(r.outcome.error_message(), "");
      EXPECT_EQ(r.outcome.value(), x * 2);
    }
  }
  // One worker: the last job ran after nine exceptions and still succeeded.
  const auto last = std::find_if(
      results.begin(), results.end(),
      [&](const auto& r) { return input_of.at(r.id) == kJobs - 2; });
  ASSERT_NE(last, results.end());
  EXPECT_TRUE(last->outcome.ok());
}

TEST(WorkerPoolTest, ANonStandardExceptionIsStillAnError) {
  WorkerPool<int, int> pool(1, 1, [](int x) -> int {
    if (x == 0) throw 42;
    return x;
  });
  ASSERT_TRUE(pool.submit(0).has_value());
  ASSERT_TRUE(pool.submit(1).has_value());
  pool.close();
  auto results = drain(pool.results());
  ASSERT_EQ(results.size(), 2u);
  for (auto& r : results) {
    if (r.id == 0) {
      EXPECT_FALSE(r.outcome.ok());
      ASSERT_NE(r.outcome.error(), nullptr);
      EXPECT_THROW(std::rethrow_exception(r.outcome.error()), int);
    } else {
      EXPECT_TRUE(r.outcome.ok());
      EXPECT_EQ(r.outcome.value(), 1);
    }
  }
}

// ---------------------------------------------------------------------------
// close / results / wait
// ---------------------------------------------------------------------------

TEST(WorkerPoolTest, ResultsCloseAfterCloseOnceEveryQueuedJobHasRun) {
  constexpr int kJobs = 50;
  std::atomic<int> ran{0};
  WorkerPool<int, int> pool(2, 64, [&](int x) {
    std::this_thread::sleep_for(100us);
    ++ran;
    return x;
  });
  for (int i = 0; i < kJobs; ++i) ASSERT_TRUE(pool.submit(i).has_value());
  pool.close();
  const auto results = drain(pool.results());
  EXPECT_EQ(results.size(), static_cast<std::size_t>(kJobs))
      << "queued jobs were dropped by close()";
  EXPECT_EQ(ran.load(), kJobs);
}

TEST(WorkerPoolTest, ResultsStayOpenUntilClose) {
  WorkerPool<int, int> pool(2, 4, [](int x) { return x; });
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(pool.submit(i).has_value());
  for (int i = 0; i < 3; ++i)
    ASSERT_TRUE(pool.results().recv_for(kDeadline).has_value());
  EXPECT_EQ(pool.results().recv_for(kSettle), std::nullopt);
  EXPECT_FALSE(pool.results().closed())
      << "results closed before the submitter closed";
  pool.close();
  EXPECT_TRUE(drain(pool.results()).empty());
}

TEST(WorkerPoolTest, WaitReturnsAfterCloseAndDrain) {
  constexpr int kJobs = 20;
  std::atomic<int> ran{0};
  WorkerPool<int, int> pool(3, 32, [&](int x) {
    ++ran;
    return x;
  });  // results_capacity 1024: no reader needed
  for (int i = 0; i < kJobs; ++i) ASSERT_TRUE(pool.submit(i).has_value());
  std::atomic<bool> waited{false};
  std::jthread waiter([&] {
    pool.wait();
    waited = true;
  });
  std::this_thread::sleep_for(kSettle);
  EXPECT_FALSE(waited.load()) << "wait() returned before close()";
  pool.close();
  waiter.join();
  EXPECT_EQ(ran.load(), kJobs);
  EXPECT_EQ(pool.results().size(), static_cast<std::size_t>(kJobs));
  EXPECT_TRUE(pool.results().closed());
  EXPECT_EQ(drain(pool.results()).size(), static_cast<std::size_t>(kJobs));
}

// ---------------------------------------------------------------------------
// Destruction
// ---------------------------------------------------------------------------

TEST(WorkerPoolTest, DestroyedWithQueuedJobsReturnsAndDropsThem) {
  const int before = sluice::test::baseline_thread_count();
  constexpr int kJobs = 50;
  std::atomic<int> ran{0};
  Gate gate;
  {
    std::optional<std::jthread>
        opener;  // declared first: joined after ~WorkerPool
    WorkerPool<int, int> pool(1, 64, [&](int x) {
      ++ran;
      EXPECT_TRUE(gate.wait());
      return x;
    });
    for (int i = 0; i < kJobs; ++i) ASSERT_TRUE(pool.submit(i).has_value());
    ASSERT_TRUE(eventually([&] { return ran.load() == 1; }));
    opener.emplace([&] {
      std::this_thread::sleep_for(
          kSettle);  // while ~WorkerPool waits for job 0
      gate.open();
    });
  }  // ~WorkerPool: stop, the running job finishes, the queued ones are dropped
  EXPECT_TRUE(thread_count_drops_to(before)) << "worker threads leaked";
  EXPECT_LE(ran.load(), 2) << "queued jobs not yet started must be dropped";
}

TEST(WorkerPoolTest, DestroyedWhileTheResultsChannelIsFullReturns) {
  const int before = sluice::test::baseline_thread_count();
  std::atomic<int> ran{0};
  {
    WorkerPool<int, int> pool(
        2, 16,
        [&](int x) {
          ++ran;
          return x;
        },
        1);  // nobody reads results: workers block delivering them
    for (int i = 0; i < 10; ++i) ASSERT_TRUE(pool.submit(i).has_value());
    ASSERT_TRUE(eventually([&] { return ran.load() >= 3; }));
    std::this_thread::sleep_for(kSettle);
  }
  EXPECT_TRUE(thread_count_drops_to(before)) << "worker threads leaked";
}

TEST(WorkerPoolTest, DestroyedIdleWithoutCloseReturns) {
  const int before = sluice::test::baseline_thread_count();
  {
    WorkerPool<int, int> pool(4, 4, [](int x) { return x; });
  }
  EXPECT_TRUE(thread_count_drops_to(before));
}

// ---------------------------------------------------------------------------
// Move-only jobs and results
// ---------------------------------------------------------------------------

TEST(WorkerPoolTest, MoveOnlyJobsAndResults) {
  constexpr int kJobs = 100;
  WorkerPool<std::unique_ptr<int>, std::unique_ptr<int>> pool(
      3, 8,
      [](std::unique_ptr<int> p) { return std::make_unique<int>(*p + 1000); });
  std::vector<JobResult<std::unique_ptr<int>>> results;
  std::jthread reader([&](std::stop_token st) {
    while (auto r = pool.results().recv(st)) results.push_back(std::move(*r));
  });
  for (int i = 0; i < kJobs; ++i)
    ASSERT_TRUE(pool.submit(std::make_unique<int>(i)).has_value());
  pool.close();
  reader.join();
  ASSERT_EQ(results.size(), static_cast<std::size_t>(kJobs));
  for (auto& r : results) {
    ASSERT_TRUE(r.outcome.ok());
    ASSERT_NE(r.outcome.value(), nullptr);
    EXPECT_EQ(*r.outcome.value(), static_cast<int>(r.id) + 1000);
  }
}

}  // namespace
