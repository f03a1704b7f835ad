// Unit tests for the task form of sluice::Pipeline<T>
// (patterns/include/sluice/patterns/pipeline.hpp): Pipeline<T>::from(rt, ...),
// whose stages run their workers, routers and emitters as tasks on a Runtime,
// with stage functions returning U or Task<U>. Each runs on runtimes of 1, 2
// and 4 threads. Nothing here asserts timing.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <utility>
#include <vector>

#include "sluice/patterns/pipeline.hpp"
#include "sluice/patterns/runtime.hpp"
#include "test_util.hpp"

namespace {

using sluice::Channel;
using sluice::Pipeline;
using sluice::Runtime;
using sluice::shard_by;
using sluice::sleep_for;
using sluice::StageOptions;
using sluice::Task;
using sluice::test::drain;
using sluice::test::eventually;
using sluice::test::kSettle;
using namespace std::chrono_literals;

class PipelineTaskTest : public sluice::test::ThreadCountTest {};

INSTANTIATE_TEST_SUITE_P(Threads, PipelineTaskTest,
                         sluice::test::ThreadCounts(),
                         sluice::test::ThreadCountName());

// A task that sends 0..n-1 into `src`, then closes it.
Task<> feed(Channel<int>& src, int n) {
  for (int i = 0; i < n; ++i) {
    const bool sent = co_await src.async_send(i);
    if (!sent) {
      ADD_FAILURE() << "feeding the source failed at " << i;
      co_return;
    }
  }
  src.close();
}

// A source channel, a runtime, and a task on it that sends 0..n-1 into the
// source and closes it. (The channel is declared first: it outlives the
// runtime's tasks, and a pipeline declared later is gone before both.)
struct FedSource {
  FedSource(std::size_t capacity, std::size_t threads, int n)
      : src(capacity), rt(threads) {
    rt.spawn(feed, std::ref(src), n);
  }
  Channel<int> src;
  Runtime rt;
};

// A short suspension that differs from item to item, so that items finish
// out of order across workers.
Task<> jitter(int x) {
  co_await sleep_for(std::chrono::microseconds(x % 7 * 40));
}

std::vector<int> sorted(std::vector<int> v) {
  std::sort(v.begin(), v.end());
  return v;
}

TEST_P(PipelineTaskTest, EveryItemArrivesExactlyOnceThroughEveryStageKind) {
  constexpr int kItems = 3000;
  for (std::size_t workers : {1, 3, 16}) {
    FedSource fed(64, threads(), kItems);
    auto p = Pipeline<int>::from(fed.rt, fed.src)
                 .map([](int x) { return x * 2; }, {.workers = workers})
                 .filter(
                     [](int x) -> std::optional<int> {
                       if (x % 3 == 0) return std::nullopt;
                       return x;
                     },
                     {.workers = workers, .batch = 8})
                 .split(
                     [](int x) {
                       return std::vector<int>{x, -x};
                     },
                     {.workers = workers, .buffer = 0});
    std::vector<int> expected;
    for (int i = 0; i < kItems; ++i) {
      if ((2 * i) % 3 == 0) continue;
      expected.push_back(2 * i);
      expected.push_back(-2 * i);
    }
    EXPECT_EQ(sorted(drain(p.output())), sorted(expected))
        << workers << " workers";
    EXPECT_EQ(p.errors(), 0U);
  }
}

TEST_P(PipelineTaskTest, SuspendingStageFunctionsCoAwaitInside) {
  constexpr int kItems = 1000;
  FedSource fed(16, threads(), kItems);
  auto p =
      Pipeline<int>::from(fed.rt, fed.src)
          .map(
              [](int x) -> Task<int> {
                co_await jitter(x);
                co_return x + 1;
              },
              {.workers = 32})
          .filter(
              [](const int& x) -> Task<bool> {
                co_await sluice::yield();
                co_return x % 2 == 0;
              },
              {.workers = 4})
          .split(
              [](int x) -> Task<std::vector<int>> {
                co_await jitter(x);
                co_return std::vector<int>(static_cast<std::size_t>(x % 3), x);
              },
              {.workers = 8});
  std::vector<int> expected;
  for (int i = 1; i <= kItems; ++i) {
    if (i % 2 != 0) continue;
    for (int k = 0; k < i % 3; ++k) expected.push_back(i);
  }
  EXPECT_EQ(sorted(drain(p.output())), sorted(expected));
}

TEST_P(PipelineTaskTest, OrderedStagesKeepInputOrderAndSkipThrowingItems) {
  constexpr int kItems = 2000;
  // A small window makes the router wait for room often.
  for (std::size_t window : {0, 3}) {
    FedSource fed(64, threads(), kItems);
    const StageOptions ordered{
        .workers = 8, .buffer = 4, .ordered = true, .reorder_window = window};
    auto p = Pipeline<int>::from(fed.rt, fed.src)
                 .map(
                     [](int x) -> Task<int> {
                       co_await jitter(x);
                       if (x % 100 == 7) throw std::runtime_error("seven");
                       co_return x;
                     },
                     ordered)
                 .filter(
                     [](const int& x) -> Task<bool> {
                       co_await jitter(x + 1);
                       co_return x % 5 != 0;
                     },
                     ordered)
                 .split(
                     [](int x) {
                       return std::vector<int>{x, x + 1};
                     },
                     ordered);
    std::vector<int> expected;
    for (int i = 0; i < kItems; ++i) {
      if (i % 100 == 7 || i % 5 == 0) continue;
      expected.push_back(i);
      expected.push_back(i + 1);
    }
    EXPECT_EQ(drain(p.output()), expected) << "window " << window;
    EXPECT_EQ(p.errors(), static_cast<std::size_t>(kItems / 100));
  }
}

// An item of key `key`, the `index`-th of its key.
struct Tagged {
  int key = 0;
  int index = 0;
};

// Sends `per_key` items of each of `keys` keys, round-robin, then closes.
Task<> feed_tagged(Channel<Tagged>& src, int keys, int per_key) {
  for (int i = 0; i < per_key; ++i) {
    for (int k = 0; k < keys; ++k) {
      // Named: GCC 12 destroys an aggregate temporary inside a co_await
      // expression twice.
      Tagged t{k, i};
      const bool sent = co_await src.async_send(t);
      if (!sent) co_return;
    }
  }
  src.close();
}

TEST_P(PipelineTaskTest, ShardedStagesKeepPerKeyOrder) {
  constexpr int kKeys = 13;
  constexpr int kPerKey = 150;
  for (bool ordered : {false, true}) {
    Channel<Tagged> src(32);
    Runtime rt(threads());
    rt.spawn(feed_tagged, std::ref(src), kKeys, kPerKey);
    auto p = Pipeline<Tagged>::from(rt, src).map(
        [](Tagged t) -> Task<Tagged> {
          co_await jitter(t.index + t.key);
          co_return t;
        },
        {.workers = 5, .ordered = ordered, .batch = 4},
        shard_by([](const Tagged& t) { return t.key; }));
    std::vector<Tagged> got = drain(p.output());
    ASSERT_EQ(got.size(), static_cast<std::size_t>(kKeys * kPerKey));
    std::map<int, int> next;  // key -> the index it must show next
    for (std::size_t i = 0; i < got.size(); ++i) {
      EXPECT_EQ(got[i].index, next[got[i].key]++)
          << "key " << got[i].key << (ordered ? " (ordered)" : "");
      if (ordered) {  // arrival order: round-robin over the keys
        EXPECT_EQ(got[i].key, static_cast<int>(i % kKeys));
      }
    }
    EXPECT_EQ(p.errors(), 0U);
  }
}

TEST_P(PipelineTaskTest, ErrorsAreCountedAsInTheThreadForm) {
  constexpr int kItems = 500;
  FedSource fed(64, threads(), kItems);
  auto p = Pipeline<int>::from(fed.rt, fed.src)
               .map(
                   [](int x) {
                     if (x % 10 == 0) throw std::runtime_error("ten");
                     return x;
                   },
                   {.workers = 3})
               .map(
                   [](int x) -> Task<int> {
                     co_await sluice::yield();
                     if (x % 10 == 1) throw 42;  // not a std::exception
                     co_return x;
                   },
                   {.workers = 3, .ordered = true})
               .filter(
                   [](const int& x) {
                     if (x % 10 == 2) throw std::logic_error("two");
                     return true;
                   },
                   {.workers = 2},
                   // A key function that throws counts too; its item still
                   // goes through (to worker 0).
                   shard_by([](const int& x) {
                     if (x % 10 == 3) throw std::runtime_error("key");
                     return x;
                   }));
  std::vector<int> expected;
  for (int i = 0; i < kItems; ++i) {
    if (i % 10 > 2) expected.push_back(i);
  }
  EXPECT_EQ(sorted(drain(p.output())), expected);
  EXPECT_EQ(p.errors(), static_cast<std::size_t>(kItems / 10 * 4));
}

TEST_P(PipelineTaskTest, CloseDrainsAndTheOutputClosesOnlyAfterTheSource) {
  Channel<int> src(64);
  Runtime rt(threads());
  auto p = Pipeline<int>::from(rt, src)
               .map([](int x) { return x + 1; }, {.workers = 4})
               .map([](int x) { return x; }, {.workers = 4, .ordered = true})
               .map([](int x) { return x; }, {.workers = 2},
                    shard_by([](const int& x) { return x % 3; }));
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(src.send(i));
  std::vector<int> got;
  for (int i = 0; i < 10; ++i) {
    std::optional<int> v = p.output().recv_for(sluice::test::kDeadline);
    ASSERT_TRUE(v.has_value());
    got.push_back(*v);
  }
  std::this_thread::sleep_for(kSettle);
  EXPECT_FALSE(p.output().closed()) << "closed while the source is open";
  // Values still buffered in the source when it closes are delivered.
  for (int i = 10; i < 20; ++i) ASSERT_TRUE(src.send(i));
  src.close();
  for (int v : drain(p.output())) got.push_back(v);
  std::vector<int> expected;
  for (int i = 1; i <= 20; ++i) expected.push_back(i);
  EXPECT_EQ(sorted(got), expected);
}

TEST_P(PipelineTaskTest, StopEndsEveryKindOfStageEarly) {
  Channel<int> src(64);  // never closed
  Runtime rt(threads());
  for (int i = 0; i < 20; ++i) ASSERT_TRUE(src.send(i));
  auto p = Pipeline<int>::from(rt, src)
               .map([](int x) { return x; }, {.workers = 3})
               .map([](int x) { return x; }, {.workers = 3, .ordered = true})
               .map([](int x) { return x; },
                    {.workers = 3, .buffer = 1, .ordered = true},
                    shard_by([](const int& x) { return x; }));
  ASSERT_TRUE(eventually([&] { return p.output().size() == 1; }));
  p.stop();
  drain(p.output());  // closes: every stage ended although src is open
  EXPECT_FALSE(src.closed()) << "a pipeline never closes its source";
}

TEST_P(PipelineTaskTest, DestroyedWhileWorkersAreBlockedReturns) {
  Channel<int> src(64);  // outlives the pipeline; never closed
  Runtime rt(threads());
  for (int i = 0; i < 60; ++i) ASSERT_TRUE(src.send(i));
  std::atomic<int> calls{0};
  {
    auto p = Pipeline<int>::from(rt, src)
                 .map(
                     [&calls](int x) -> Task<int> {
                       ++calls;
                       co_return x;
                     },
                     {.workers = 4, .buffer = 1})
                 .map([](int x) { return x; },
                      {.workers = 4, .buffer = 1, .ordered = true})
                 .split(
                     [](int x) {
                       return std::vector<int>{x, x};
                     },
                     {.workers = 2, .buffer = 0},
                     shard_by([](const int& x) { return x % 2; }));
    // Nobody reads the output: every stage fills up and its tasks suspend.
    ASSERT_TRUE(eventually([&] { return calls.load() >= 8; }));
    std::this_thread::sleep_for(kSettle);
  }  // requests stop and waits for every task of every stage
  EXPECT_FALSE(src.closed());
}

TEST_P(PipelineTaskTest, TenThousandSleepingWorkersShareTheRuntimeThreads) {
  constexpr int kWorkers = 10'000;
  constexpr int kItems = 20'000;
  const int before = sluice::test::baseline_thread_count();
  for (bool ordered : {false, true}) {
    std::atomic<int> peak{0};
    FedSource fed(1024, threads(), kItems);
    auto p = Pipeline<int>::from(fed.rt, fed.src)
                 .map(
                     [&peak](int x) -> Task<int> {
                       if (x % 1000 == 0) {
                         const int now = sluice::test::proc_task_count();
                         if (now > peak.load()) peak.store(now);
                       }
                       co_await sleep_for(20ms);  // "I/O": holds no thread
                       co_return x;
                     },
                     {.workers = kWorkers, .buffer = 1024, .ordered = ordered});
    const std::vector<int> got = drain(p.output());
    ASSERT_EQ(got.size(), static_cast<std::size_t>(kItems));
    std::vector<int> expected(kItems);
    for (int i = 0; i < kItems; ++i) expected[static_cast<std::size_t>(i)] = i;
    EXPECT_EQ(ordered ? got : sorted(got), expected);
    // The runtime's threads, never one per worker.
    EXPECT_GT(peak.load(), 0);
    EXPECT_LE(peak.load(), before + static_cast<int>(threads()))
        << (ordered ? "ordered" : "unordered");
  }
}

TEST_P(PipelineTaskTest, FromAGeneratorOfEitherForm) {
  Runtime rt(threads());
  for (bool task_generator : {false, true}) {
    auto next = [i = 0]() mutable -> std::optional<int> {
      if (i == 100) return std::nullopt;
      return i++;
    };
    auto gen = task_generator ? sluice::generate(rt, next, 4)
                              : sluice::generate(next, 4);
    auto p = Pipeline<int>::from(rt, std::move(gen))
                 .map([](int x) -> Task<int> { co_return x * 3; },
                      {.workers = 4, .ordered = true});
    std::vector<int> expected;
    for (int i = 0; i < 100; ++i) expected.push_back(3 * i);
    EXPECT_EQ(drain(p.output()), expected);
  }
}

TEST_P(PipelineTaskTest, MoveOnlyValuesThroughEveryStageKind) {
  for (bool ordered : {false, true}) {
    Channel<std::unique_ptr<int>> src(8);
    Runtime rt(threads());
    rt.spawn([&src]() -> Task<> {
      for (int i = 0; i < 200; ++i) {
        co_await src.async_send(std::make_unique<int>(i));
      }
      src.close();
    });
    const StageOptions o{.workers = 3, .ordered = ordered};
    auto p = Pipeline<std::unique_ptr<int>>::from(rt, src)
                 .map(
                     [](std::unique_ptr<int> v) -> Task<std::unique_ptr<int>> {
                       *v *= 2;
                       co_return v;
                     },
                     o)
                 .filter(
                     [](std::unique_ptr<int> v)
                         -> std::optional<std::unique_ptr<int>> {
                       if (*v % 3 == 0) return std::nullopt;
                       return v;
                     },
                     o)
                 .split(
                     [](std::unique_ptr<int> v) {
                       std::vector<std::unique_ptr<int>> parts;
                       parts.push_back(std::make_unique<int>(-*v));
                       parts.push_back(std::move(v));
                       return parts;
                     },
                     o);
    std::vector<int> got;
    for (auto& v : drain(p.output())) got.push_back(*v);
    std::vector<int> expected;
    for (int i = 0; i < 200; ++i) {
      if ((2 * i) % 3 == 0) continue;
      expected.push_back(-2 * i);
      expected.push_back(2 * i);
    }
    EXPECT_EQ(ordered ? got : sorted(got),
              ordered ? expected : sorted(expected));
  }
}

TEST(PipelineTaskFormTest, ATaskFunctionWithoutARuntimeIsRefused) {
  Channel<int> src(1);
  auto p = Pipeline<int>::from(src);
  EXPECT_THROW((void)std::move(p).map([](int x) -> Task<int> { co_return x; }),
               std::invalid_argument);
}

}  // namespace
