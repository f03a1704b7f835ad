// Unit tests for sluice::FanOut<U> / sluice::fan_out()
// (patterns/include/sluice/patterns/fan_out.hpp), written against
// docs/patterns-api.md.
#include "sluice/patterns/fan_out.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <memory>
#include <mutex>
#include <numeric>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <tuple>
#include <type_traits>
#include <vector>

#include "test_util.hpp"

namespace {

using sluice::Channel;
using sluice::fan_out;
using sluice::FanOut;
using sluice::test::drain;
using sluice::test::eventually;
using sluice::test::Gate;
using sluice::test::kDeadline;
using sluice::test::kSettle;
using sluice::test::LiveGuard;
using sluice::test::thread_count_drops_to;
using namespace std::chrono_literals;

// "movable, not copyable"
static_assert(std::is_move_constructible_v<FanOut<int>>);
static_assert(std::is_move_assignable_v<FanOut<int>>);
static_assert(!std::is_copy_constructible_v<FanOut<int>>);
static_assert(!std::is_copy_assignable_v<FanOut<int>>);

// Sends 0..n-1 into `in` on its own thread, then closes it.
std::jthread feed(Channel<int>& in, int n) {
  return std::jthread([&in, n](std::stop_token st) {
    for (int i = 0; i < n; ++i) {
      if (!in.send(i, st)) {
        ADD_FAILURE() << "feeding the input failed at " << i;
        return;
      }
    }
    EXPECT_TRUE(in.close());
  });
}

std::vector<int> iota_vector(int n, int first = 0) {
  std::vector<int> v(static_cast<std::size_t>(n));
  std::iota(v.begin(), v.end(), first);
  return v;
}

// U is std::invoke_result_t<Fn, T>.
static_assert(
    std::is_same_v<decltype(fan_out(std::declval<Channel<int>&>(), 1,
                                    [](int x) { return std::to_string(x); })),
                   FanOut<std::string>>);

using WorkersCapacity = std::tuple<std::size_t, std::size_t>;
std::string workers_capacity_name(
    const ::testing::TestParamInfo<WorkersCapacity>& p) {
  return "w" + std::to_string(std::get<0>(p.param)) + "_cap" +
         std::to_string(std::get<1>(p.param));
}

class FanOutWorkersTest : public ::testing::TestWithParam<WorkersCapacity> {};

TEST_P(FanOutWorkersTest, EveryItemProcessedExactlyOnce) {
  // Not a structured binding: clang 14 cannot capture one in a lambda.
  const auto param = GetParam();
  const auto workers = std::get<0>(param);
  const auto out_capacity = std::get<1>(param);
  constexpr int kItems = 3000;
  Channel<int> in(64);
  std::atomic<int> calls{0};
  std::mutex ids_mu;
  std::set<std::thread::id> ids;
  auto fo = fan_out(
      in, workers,
      [&](int x) {
        ++calls;
        {
          std::lock_guard lock(ids_mu);
          ids.insert(std::this_thread::get_id());
        }
        return 2 * x;
      },
      out_capacity);
  auto feeder = feed(in, kItems);
  auto got = drain(fo.output());
  std::sort(got.begin(), got.end());
  std::vector<int> expected = iota_vector(kItems);
  for (int& v : expected) v *= 2;
  EXPECT_EQ(got, expected) << "items lost or duplicated";
  EXPECT_EQ(calls.load(), kItems);
  EXPECT_EQ(fo.errors(), 0u);
  EXPECT_EQ(fo.first_error(), nullptr);
  EXPECT_LE(ids.size(), workers) << "more threads than workers ran fn";
  EXPECT_EQ(ids.count(std::this_thread::get_id()), 0u)
      << "fn ran on the caller's thread";
}

INSTANTIATE_TEST_SUITE_P(
    WorkersOutCapacity, FanOutWorkersTest,
    ::testing::Combine(::testing::Values(std::size_t{1}, std::size_t{2},
                                         std::size_t{4}, std::size_t{8}),
                       ::testing::Values(std::size_t{0}, std::size_t{16})),
    workers_capacity_name);

TEST(FanOutTest, WorkersRunConcurrently) {
  constexpr std::size_t kWorkers = 4;
  Channel<int> in(16);
  Gate gate;
  std::atomic<int> live{0};
  std::atomic<int> peak{0};
  auto fo = fan_out(in, kWorkers, [&](int x) {
    LiveGuard g(live);
    int now = live.load();
    int p = peak.load();
    while (now > p && !peak.compare_exchange_weak(p, now)) {
    }
    EXPECT_TRUE(gate.wait());
    return x;
  });
  for (int i = 0; i < static_cast<int>(kWorkers); ++i) ASSERT_TRUE(in.send(i));
  EXPECT_TRUE(eventually([&] {
    return live.load() == static_cast<int>(kWorkers);
  })) << "expected "
      << kWorkers << " items in progress at once, saw " << live.load();
  gate.open();
  EXPECT_TRUE(in.close());
  EXPECT_EQ(drain(fo.output()).size(), kWorkers);
  EXPECT_EQ(peak.load(), static_cast<int>(kWorkers));
}

TEST(FanOutTest, OutputClosesOnlyAfterInputCloses) {
  Channel<int> in(8);
  auto fo = fan_out(
      in, 2, [](int x) { return x + 1; }, 8);
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(in.send(i));
  std::vector<int> got;
  for (int i = 0; i < 3; ++i) {
    auto v = fo.output().recv_for(kDeadline);
    ASSERT_TRUE(v.has_value());
    got.push_back(*v);
  }
  std::sort(got.begin(), got.end());
  EXPECT_EQ(got, (std::vector<int>{1, 2, 3}));
  EXPECT_EQ(fo.output().recv_for(kSettle), std::nullopt);
  EXPECT_FALSE(fo.output().closed())
      << "output closed while the input is still open";
  EXPECT_TRUE(in.close());
  EXPECT_TRUE(drain(fo.output()).empty());
  EXPECT_TRUE(fo.output().closed());
}

TEST(FanOutTest, InputClosedBeforeStartIsStillDrained) {
  Channel<int> in(16);
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(in.send(i));
  EXPECT_TRUE(in.close());
  auto fo = fan_out(in, 3, [](int x) { return x * 10; });
  auto got = drain(fo.output());
  std::sort(got.begin(), got.end());
  std::vector<int> expected;
  for (int i = 0; i < 10; ++i) expected.push_back(i * 10);
  EXPECT_EQ(got, expected);
}

TEST(FanOutTest, RangeForOverTheFanOut) {
  Channel<int> in(4);
  auto fo = fan_out(in, 2, [](int x) { return std::to_string(x); });
  auto feeder = feed(in, 100);
  std::multiset<std::string> got;
  for (std::string s : fo) got.insert(s);
  std::multiset<std::string> expected;
  for (int i = 0; i < 100; ++i) expected.insert(std::to_string(i));
  EXPECT_EQ(got, expected);
}

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

class FanOutErrorTest : public ::testing::TestWithParam<std::size_t> {};

TEST_P(FanOutErrorTest, ThrowingItemsAreCountedAndTheWorkersGoOn) {
  constexpr int kItems = 200;
  Channel<int> in(16);
  auto fo = fan_out(in, GetParam(), [](int x) {
    if (x % 10 == 3) throw std::runtime_error("bad " + std::to_string(x));
    return x;
  });
  auto feeder = feed(in, kItems);
  auto got = drain(fo.output());
  std::sort(got.begin(), got.end());
  std::vector<int> expected;
  for (int i = 0; i < kItems; ++i) {
    if (i % 10 != 3) expected.push_back(i);
  }
  EXPECT_EQ(got, expected) << "a throwing item must end only that item";
  EXPECT_EQ(fo.errors(), static_cast<std::size_t>(kItems / 10));
  ASSERT_NE(fo.first_error(), nullptr);
  try {
    std::rethrow_exception(fo.first_error());
  } catch (const std::runtime_error& e) {
    EXPECT_EQ(std::string(e.what()).rfind("bad ", 0), 0u) << e.what();
  } catch (...) {
    ADD_FAILURE() << "first_error() holds a different exception";
  }
}

INSTANTIATE_TEST_SUITE_P(Workers, FanOutErrorTest,
                         ::testing::Values(std::size_t{1}, std::size_t{4}));

// ---------------------------------------------------------------------------
// join / stop / destruction
// ---------------------------------------------------------------------------

TEST(FanOutTest, JoinWaitsForTheInputToClose) {
  Channel<int> in(4);
  std::atomic<int> processed{0};
  auto fo = fan_out(
      in, 2,
      [&](int x) {
        ++processed;
        return x;
      },
      8);
  ASSERT_TRUE(in.send(1));
  std::atomic<bool> joined{false};
  std::jthread joiner([&] {
    fo.join();
    joined = true;
  });
  std::this_thread::sleep_for(kSettle);
  EXPECT_FALSE(joined.load()) << "join returned while the input is open";
  EXPECT_TRUE(in.close());
  joiner.join();
  EXPECT_TRUE(joined.load());
  EXPECT_EQ(processed.load(), 1);
}

TEST(FanOutTest, StopEndsTheWorkersWhileTheInputIsOpen) {
  Channel<int> in(4);
  auto fo = fan_out(in, 3, [](int x) { return x; });
  ASSERT_TRUE(in.send(1));
  ASSERT_TRUE(eventually([&] { return in.size() == 0; }));
  fo.stop();
  fo.join();  // must return: the workers end although `in` never closes
  EXPECT_FALSE(in.closed()) << "the fan-out must not close its input";
}

TEST(FanOutTest, StopLetsTheCurrentItemFinish) {
  Channel<int> in(4);
  Gate gate;
  std::atomic<int> started{0};
  std::atomic<int> finished{0};
  auto fo = fan_out(
      in, 1,
      [&](int x) {
        ++started;
        EXPECT_TRUE(gate.wait());
        ++finished;
        return x;
      },
      8);
  ASSERT_TRUE(in.send(1));
  ASSERT_TRUE(in.send(2));
  ASSERT_TRUE(eventually([&] { return started.load() == 1; }));
  fo.stop();
  std::jthread opener([&] {
    std::this_thread::sleep_for(kSettle);
    gate.open();
  });
  fo.join();
  EXPECT_EQ(finished.load(), 1) << "the current item runs to completion";
  EXPECT_EQ(started.load(), 1) << "no new item is taken after stop";
}

TEST(FanOutTest, DestroyedWhileWorkersWaitOnAnOpenInputReturns) {
  const int before = sluice::test::baseline_thread_count();
  Channel<int> in(4);
  {
    auto fo = fan_out(in, 4, [](int x) { return x; });
    std::this_thread::sleep_for(kSettle);
  }
  EXPECT_TRUE(thread_count_drops_to(before)) << "worker threads leaked";
  EXPECT_FALSE(in.closed());
}

TEST(FanOutTest, DestroyedWhileWorkersAreBlockedOnAFullOutputReturns) {
  const int before = sluice::test::baseline_thread_count();
  Channel<int> in(64);
  std::atomic<int> calls{0};
  for (int i = 0; i < 20; ++i) ASSERT_TRUE(in.send(i));
  {
    auto fo = fan_out(
        in, 3,
        [&](int x) {
          ++calls;
          return x;
        },
        0);  // nobody reads the output: every worker blocks sending its result
    ASSERT_TRUE(eventually([&] { return calls.load() >= 3; }));
    std::this_thread::sleep_for(kSettle);
  }
  EXPECT_TRUE(thread_count_drops_to(before)) << "worker threads leaked";
}

// ---------------------------------------------------------------------------
// Moving and move-only items
// ---------------------------------------------------------------------------

TEST(FanOutTest, MovedFanOutKeepsWorking) {
  Channel<int> in(8);
  auto fo1 = fan_out(in, 2, [](int x) { return x + 100; });
  FanOut<int> fo2(std::move(fo1));
  auto feeder = feed(in, 50);
  auto got = drain(fo2.output());
  std::sort(got.begin(), got.end());
  EXPECT_EQ(got, iota_vector(50, 100));
}

TEST(FanOutTest, MoveAssignmentStopsThePreviousWorkers) {
  const int before = sluice::test::baseline_thread_count();
  Channel<int> in_a(4);  // never closed
  Channel<int> in_b(4);
  {
    auto fo = fan_out(in_a, 3, [](int x) { return x; });
    fo = fan_out(in_b, 2, [](int x) { return x + 1; });
    auto feeder = feed(in_b, 10);
    auto got = drain(fo.output());
    std::sort(got.begin(), got.end());
    EXPECT_EQ(got, iota_vector(10, 1));
  }
  EXPECT_TRUE(thread_count_drops_to(before));
}

TEST(FanOutTest, MoveOnlyItemsAndResults) {
  constexpr int kItems = 200;
  Channel<std::unique_ptr<int>> in(8);
  auto fo = fan_out(in, 4, [](std::unique_ptr<int> p) {
    return std::make_unique<int>(*p * 3);
  });
  std::jthread feeder([&](std::stop_token st) {
    for (int i = 0; i < kItems; ++i)
      EXPECT_TRUE(in.send(std::make_unique<int>(i), st));
    EXPECT_TRUE(in.close());
  });
  std::vector<int> got;
  for (std::unique_ptr<int> p : fo) {
    ASSERT_NE(p, nullptr);
    got.push_back(*p);
  }
  std::sort(got.begin(), got.end());
  std::vector<int> expected;
  for (int i = 0; i < kItems; ++i) expected.push_back(3 * i);
  EXPECT_EQ(got, expected);
}

// ---------------------------------------------------------------------------
// void fn: no output, join() waits for the workers
// ---------------------------------------------------------------------------

static_assert(std::is_move_constructible_v<FanOut<void>>);
static_assert(std::is_same_v<decltype(fan_out(std::declval<Channel<int>&>(), 1,
                                              [](int) {})),
                             FanOut<void>>);

class FanOutVoidParamTest : public ::testing::TestWithParam<WorkersCapacity> {};

TEST_P(FanOutVoidParamTest, EveryItemProcessedExactlyOnce) {
  // Not a structured binding: clang 14 cannot capture one in a lambda.
  const auto param = GetParam();
  const auto workers = std::get<0>(param);
  const auto out_capacity = std::get<1>(param);
  constexpr int kItems = 3000;
  Channel<int> in(16);
  std::vector<std::atomic<int>> seen(kItems);
  auto fo = fan_out(
      in, workers,
      [&](int x) { seen[static_cast<std::size_t>(x)].fetch_add(1); },
      out_capacity);
  auto feeder = feed(in, kItems);
  feeder.join();
  fo.join();
  int wrong = 0;
  for (auto& s : seen) wrong += s.load() == 1 ? 0 : 1;
  EXPECT_EQ(wrong, 0) << "items not processed exactly once";
  EXPECT_EQ(fo.errors(), 0u);
}

TEST_P(FanOutVoidParamTest, ErrorsAreCountedAndTheWorkersGoOn) {
  constexpr int kItems = 100;
  Channel<int> in(16);
  std::atomic<int> ok{0};
  auto fo = fan_out(in, std::get<0>(GetParam()), [&](int x) {
    if (x % 4 == 0) throw std::invalid_argument("multiple of four");
    ++ok;
  });
  auto feeder = feed(in, kItems);
  feeder.join();
  fo.join();
  EXPECT_EQ(ok.load(), 75);
  EXPECT_EQ(fo.errors(), 25u);
  ASSERT_NE(fo.first_error(), nullptr);
  EXPECT_THROW(std::rethrow_exception(fo.first_error()), std::invalid_argument);
}

INSTANTIATE_TEST_SUITE_P(
    WorkersOutCapacity, FanOutVoidParamTest,
    ::testing::Combine(::testing::Values(std::size_t{1}, std::size_t{2},
                                         std::size_t{4}, std::size_t{8}),
                       ::testing::Values(std::size_t{0}, std::size_t{16})),
    workers_capacity_name);

TEST(FanOutVoidTest, DestroyedWhileWorkersWaitReturns) {
  const int before = sluice::test::baseline_thread_count();
  Channel<int> in(4);
  {
    auto fo = fan_out(in, 2, [](int) {});
    ASSERT_TRUE(in.send(1));
  }
  EXPECT_TRUE(thread_count_drops_to(before));
}

TEST(FanOutVoidTest, MoveOnlyItems) {
  Channel<std::unique_ptr<int>> in(0);
  std::atomic<int> sum{0};
  auto fo = fan_out(in, 2, [&](std::unique_ptr<int> p) { sum += *p; });
  for (int i = 1; i <= 10; ++i) ASSERT_TRUE(in.send(std::make_unique<int>(i)));
  EXPECT_TRUE(in.close());
  fo.join();
  EXPECT_EQ(sum.load(), 55);
}

}  // namespace

// ---- task workers on a Runtime ---------------------------------------------

namespace {

class FanOutTaskTest : public sluice::test::ThreadCountTest {};

INSTANTIATE_TEST_SUITE_P(Threads, FanOutTaskTest, sluice::test::ThreadCounts(),
                         sluice::test::ThreadCountName());

TEST_P(FanOutTaskTest, ThousandsOfSuspendingWorkersShareTheRuntimeThreads) {
  const int before = sluice::test::baseline_thread_count();
  constexpr long kItems = 5000;
  Channel<long> in(64);
  sluice::Runtime rt(threads());
  std::atomic<int> peak{0};
  {
    auto fo = fan_out(
        rt, in, 2000,
        [&](long x) -> sluice::Task<long> {
          peak = std::max(peak.load(), sluice::test::process_thread_count());
          co_await sluice::sleep_for(2ms);  // "I/O": holds no thread
          co_return x * 2;
        },
        64);
    EXPECT_EQ(fo.workers(), 2000U);
    std::jthread feeder([&] {
      for (long i = 0; i < kItems; ++i) in.send(i);
      in.close();
    });
    long sum = 0;
    for (long v : fo) sum += v;
    EXPECT_EQ(sum, kItems * (kItems - 1));
    EXPECT_EQ(fo.errors(), 0U);
  }
  // The runtime's threads and the feeder, never one thread per worker.
  EXPECT_LE(peak.load(), before + static_cast<int>(threads()) + 1);
}

TEST_P(FanOutTaskTest, PlainFunctionsAndErrorsWorkAsWithThreads) {
  Channel<int> in(8);
  sluice::Runtime rt(threads());
  std::atomic<int> seen{0};
  auto fo = fan_out(rt, in, 4, [&](int x) {
    if (x == 3) throw std::runtime_error("three");
    seen += x;
  });
  for (int i = 1; i <= 5; ++i) in.send(i);
  in.close();
  fo.join();
  EXPECT_EQ(seen.load(), 1 + 2 + 4 + 5);
  EXPECT_EQ(fo.errors(), 1U);
}

TEST_P(FanOutTaskTest, MoveOnlyResultsOfSuspendingWorkersAreFreedOnce) {
  // A Task<std::unique_ptr<int>> worker: its result crosses a co_await (GCC
  // 12 freed such a value twice when it was co_awaited inside a braced
  // initializer, as detail::call_worker once did).
  Channel<int> in(8);
  sluice::Runtime rt(threads());
  auto fo = fan_out(rt, in, 4, [](int x) -> sluice::Task<std::unique_ptr<int>> {
    co_await sluice::yield();
    co_return std::make_unique<int>(x * 3);
  });
  std::jthread feeder([&] {
    for (int i = 0; i < 100; ++i) EXPECT_TRUE(in.send(i));
    in.close();
  });
  int sum = 0;
  for (std::unique_ptr<int> p : fo) sum += *p;
  EXPECT_EQ(sum, 3 * 99 * 100 / 2);
}

TEST_P(FanOutTaskTest, DestroyingStopsWorkersBlockedOnAnOpenInput) {
  Channel<int> in(0);  // never closed
  sluice::Runtime rt(threads());
  {
    auto fo = fan_out(rt, in, 100, [](int x) { return x; });
  }  // requests stop: the suspended workers end
  SUCCEED();
}

}  // namespace
