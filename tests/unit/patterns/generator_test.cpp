// Unit tests for sluice::Generator<T> / sluice::generate()
// (patterns/include/sluice/patterns/generator.hpp), written against
// docs/patterns-api.md.
#include "sluice/patterns/generator.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <memory>
#include <mutex>
#include <numeric>
#include <optional>
#include <stdexcept>
#include <stop_token>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include "test_util.hpp"

namespace {

using sluice::generate;
using sluice::Generator;
using sluice::test::drain;
using sluice::test::eventually;
using sluice::test::kDeadline;
using sluice::test::kSettle;
using sluice::test::MoveOnly;
using sluice::test::thread_count_drops_to;
using sluice::test::Watchdog;
using namespace std::chrono_literals;

// "movable, not copyable"
static_assert(std::is_move_constructible_v<Generator<int>>);
static_assert(std::is_move_assignable_v<Generator<int>>);
static_assert(!std::is_copy_constructible_v<Generator<int>>);
static_assert(!std::is_copy_assignable_v<Generator<int>>);

// fn: returns 0, 1, ..., n - 1, then nullopt.
auto counting_to(int n) {
  return [i = 0, n]() mutable -> std::optional<int> {
    if (i == n) return std::nullopt;
    return i++;
  };
}

std::vector<int> iota_vector(int n, int first = 0) {
  std::vector<int> v(static_cast<std::size_t>(n));
  std::iota(v.begin(), v.end(), first);
  return v;
}

// The value type is deduced from fn's std::optional<T>.
static_assert(
    std::is_same_v<decltype(generate(counting_to(1))), Generator<int>>);

class GeneratorCapacityTest : public ::testing::TestWithParam<std::size_t> {};

TEST_P(GeneratorCapacityTest, YieldsEveryValueInOrderThenCloses) {
  auto g = generate(counting_to(100), GetParam());
  std::vector<int> got;
  for (int v : g) got.push_back(v);
  EXPECT_EQ(got, iota_vector(100));
  EXPECT_TRUE(g.channel().closed());
  EXPECT_EQ(g.error(), nullptr);
}

TEST_P(GeneratorCapacityTest, NextReturnsValuesThenNullopt) {
  auto g = generate(counting_to(3), GetParam());
  Watchdog wd;
  EXPECT_EQ(g.next(wd.token()), 0);
  EXPECT_EQ(g.next(wd.token()), 1);
  EXPECT_EQ(g.next(wd.token()), 2);
  EXPECT_EQ(g.next(wd.token()), std::nullopt);
  EXPECT_EQ(g.next(wd.token()), std::nullopt);
  EXPECT_FALSE(wd.fired()) << "next() did not see the end of the stream";
}

TEST_P(GeneratorCapacityTest, ChannelIsTheReceiveSide) {
  auto g = generate(counting_to(50), GetParam());
  EXPECT_EQ(g.channel().capacity(), GetParam());
  EXPECT_EQ(drain(g.channel()), iota_vector(50));
}

TEST_P(GeneratorCapacityTest, EmptyStreamClosesAtOnce) {
  auto g =
      generate([]() -> std::optional<int> { return std::nullopt; }, GetParam());
  EXPECT_TRUE(drain(g.channel()).empty());
  EXPECT_EQ(g.error(), nullptr);
}

TEST_P(GeneratorCapacityTest, StopTokenTakingFunction) {
  auto g = generate(
      [i = 0](std::stop_token st) mutable -> std::optional<int> {
        if (st.stop_requested() || i == 20) return std::nullopt;
        return i++;
      },
      GetParam());
  EXPECT_EQ(drain(g.channel()), iota_vector(20));
}

TEST_P(GeneratorCapacityTest, FnIsNotCalledAgainAfterNullopt) {
  std::atomic<int> calls{0};
  auto g = generate(
      [&calls]() -> std::optional<int> {
        const int n = calls.fetch_add(1);
        if (n == 5) return std::nullopt;
        return n;
      },
      GetParam());
  EXPECT_EQ(drain(g.channel()), iota_vector(5));
  std::this_thread::sleep_for(kSettle);
  EXPECT_EQ(calls.load(), 6);
}

// ---------------------------------------------------------------------------
// Laziness: "the next value is computed only after the previous one was
// buffered (so at most capacity + 1 values exist ahead of the consumer)".
// ---------------------------------------------------------------------------

TEST_P(GeneratorCapacityTest, NeverMoreThanCapacityPlusOneValuesAhead) {
  const auto capacity = static_cast<int>(GetParam());
  std::atomic<int> calls{0};
  auto g =
      generate([&calls]() -> std::optional<int> { return calls.fetch_add(1); },
               GetParam());
  std::this_thread::sleep_for(kSettle);
  EXPECT_LE(calls.load(), capacity + 1)
      << "produced ahead with nobody receiving";
  for (int received = 1; received <= 20; ++received) {
    auto v = g.channel().recv_for(kDeadline);
    ASSERT_EQ(v, received - 1);
    std::this_thread::sleep_for(
        2ms);  // give an eager producer time to run ahead
    EXPECT_LE(calls.load(), received + capacity + 1)
        << "after receiving " << received << " values";
  }
}

TEST_P(GeneratorCapacityTest, FnRunsOnTheGeneratorsOwnThread) {
  std::atomic<bool> on_caller_thread{false};
  const auto caller = std::this_thread::get_id();
  auto g = generate(
      [&, i = 0]() mutable -> std::optional<int> {
        if (std::this_thread::get_id() == caller) on_caller_thread = true;
        if (i == 3) return std::nullopt;
        return i++;
      },
      GetParam());
  EXPECT_EQ(drain(g.channel()).size(), 3u);
  EXPECT_FALSE(on_caller_thread.load());
}

INSTANTIATE_TEST_SUITE_P(Capacities, GeneratorCapacityTest,
                         ::testing::Values(std::size_t{0}, std::size_t{1},
                                           std::size_t{4}, std::size_t{64}));

TEST(GeneratorTest, NextWithAStoppedTokenConsumesNothing) {
  auto g = generate(counting_to(3), 4);
  ASSERT_TRUE(eventually([&] { return g.channel().size() == 3; }));
  std::stop_source ss;
  ss.request_stop();
  EXPECT_EQ(g.next(ss.get_token()), std::nullopt);
  EXPECT_EQ(drain(g.channel()), iota_vector(3));
}

// ---------------------------------------------------------------------------
// error()
// ---------------------------------------------------------------------------

TEST(GeneratorTest, ErrorReportsWhatFnThrew) {
  auto g = generate(
      [i = 0]() mutable -> std::optional<int> {
        if (i == 5) throw std::runtime_error("boom at 5");
        return i++;
      },
      0);
  EXPECT_EQ(g.error(), nullptr) << "nothing was thrown yet";
  EXPECT_EQ(drain(g.channel()), iota_vector(5))
      << "values before the throw are delivered";
  const std::exception_ptr e = g.error();
  ASSERT_NE(e, nullptr);
  try {
    std::rethrow_exception(e);
  } catch (const std::runtime_error& ex) {
    EXPECT_STREQ(ex.what(), "boom at 5");
  } catch (...) {
    ADD_FAILURE() << "error() holds a different exception";
  }
}

TEST(GeneratorTest, ErrorFromStopTokenFunctionWithBuffer) {
  auto g = generate(
      [](std::stop_token) -> std::optional<std::string> {
        throw std::logic_error("first call");
      },
      8);
  EXPECT_TRUE(drain(g.channel()).empty());
  ASSERT_NE(g.error(), nullptr);
  EXPECT_THROW(std::rethrow_exception(g.error()), std::logic_error);
}

TEST(GeneratorTest, ErrorIsNullAfterANormalEnd) {
  auto g = generate(counting_to(3), 2);
  EXPECT_EQ(drain(g.channel()).size(), 3u);
  EXPECT_EQ(g.error(), nullptr);
}

// ---------------------------------------------------------------------------
// stop() and destruction
// ---------------------------------------------------------------------------

class GeneratorStopTest : public ::testing::TestWithParam<std::size_t> {};

TEST_P(GeneratorStopTest, StopEndsAnInfiniteStream) {
  const auto capacity = static_cast<int>(GetParam());
  auto g = generate([i = 0]() mutable -> std::optional<int> { return i++; },
                    GetParam());
  for (int i = 0; i < 3; ++i) ASSERT_EQ(g.channel().recv_for(kDeadline), i);
  g.stop();
  // Values already produced may still arrive (at most capacity + 1), then the
  // channel closes.
  const auto rest = drain(g.channel());
  EXPECT_LE(static_cast<int>(rest.size()), capacity + 1);
  for (std::size_t k = 0; k < rest.size(); ++k)
    EXPECT_EQ(rest[k], 3 + static_cast<int>(k));
  EXPECT_EQ(g.error(), nullptr);
}

TEST_P(GeneratorStopTest, DestroyedWhileBlockedInSendReturns) {
  const int before = sluice::test::baseline_thread_count();
  std::atomic<int> calls{0};
  {
    auto g = generate(
        [&calls]() -> std::optional<int> { return calls.fetch_add(1); },
        GetParam());
    ASSERT_TRUE(eventually([&] { return calls.load() >= 1; }));
    std::this_thread::sleep_for(
        kSettle);  // the producer is now blocked handing a value over
  }                // ~Generator: stop + join
  EXPECT_TRUE(thread_count_drops_to(before)) << "generator thread leaked";
  const int calls_after = calls.load();
  std::this_thread::sleep_for(kSettle);
  EXPECT_EQ(calls.load(), calls_after)
      << "fn still called after the generator was destroyed";
}

TEST_P(GeneratorStopTest, DestroyedWhileFnWaitsOnItsStopTokenReturns) {
  const int before = sluice::test::baseline_thread_count();
  std::atomic<bool> in_fn{false};
  {
    auto g = generate(
        [&in_fn](std::stop_token st) -> std::optional<int> {
          in_fn = true;
          std::mutex mu;
          std::condition_variable_any cv;
          std::unique_lock lock(mu);
          cv.wait(lock, st, [] { return false; });  // until stop is requested
          return std::nullopt;
        },
        GetParam());
    ASSERT_TRUE(eventually([&] { return in_fn.load(); }));
  }
  EXPECT_TRUE(thread_count_drops_to(before)) << "generator thread leaked";
}

TEST_P(GeneratorStopTest, DestroyedWithoutEverBeingReadReturns) {
  const int before = sluice::test::baseline_thread_count();
  { auto g = generate(counting_to(1'000'000), GetParam()); }
  EXPECT_TRUE(thread_count_drops_to(before));
}

INSTANTIATE_TEST_SUITE_P(Capacities, GeneratorStopTest,
                         ::testing::Values(std::size_t{0}, std::size_t{1},
                                           std::size_t{16}));

// ---------------------------------------------------------------------------
// Moving
// ---------------------------------------------------------------------------

TEST(GeneratorTest, MoveConstructedGeneratorKeepsProducing) {
  auto g1 = generate(counting_to(10), 2);
  ASSERT_EQ(g1.channel().recv_for(kDeadline), 0);
  Generator<int> g2(std::move(g1));
  EXPECT_EQ(drain(g2.channel()), iota_vector(9, 1));
}

TEST(GeneratorTest, MoveAssignmentReplacesAndStopsTheOldGenerator) {
  const int before = sluice::test::baseline_thread_count();
  std::atomic<int> old_calls{0};
  {
    auto g = generate(
        [&old_calls]() -> std::optional<int> { return old_calls.fetch_add(1); },
        0);
    ASSERT_TRUE(eventually([&] { return old_calls.load() >= 1; }));
    g = generate(counting_to(5), 1);
    const int calls_after = old_calls.load();
    std::this_thread::sleep_for(kSettle);
    EXPECT_EQ(old_calls.load(), calls_after)
        << "the replaced generator still runs";
    EXPECT_EQ(drain(g.channel()), iota_vector(5));
  }
  EXPECT_TRUE(thread_count_drops_to(before));
}

// ---------------------------------------------------------------------------
// Value types and several consumers
// ---------------------------------------------------------------------------

TEST(GeneratorTest, MoveOnlyValues) {
  auto g = generate(
      [i = 0]() mutable -> std::optional<std::unique_ptr<int>> {
        if (i == 10) return std::nullopt;
        return std::make_unique<int>(i++);
      },
      0);
  int expected = 0;
  for (std::unique_ptr<int> p : g) {
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(*p, expected++);
  }
  EXPECT_EQ(expected, 10);
}

TEST(GeneratorTest, NonDefaultConstructibleValues) {
  auto g = generate(
      [i = 0]() mutable -> std::optional<MoveOnly> {
        if (i == 10) return std::nullopt;
        return MoveOnly(i++);
      },
      3);
  int expected = 0;
  while (auto v = g.next()) EXPECT_EQ(v->value(), expected++);
  EXPECT_EQ(expected, 10);
}

class GeneratorConsumersTest : public ::testing::TestWithParam<int> {};

TEST_P(GeneratorConsumersTest, SeveralConsumersGetEveryValueOnce) {
  constexpr int kValues = 1000;
  auto g = generate(counting_to(kValues), 4);
  std::vector<std::vector<int>> got(static_cast<std::size_t>(GetParam()));
  {
    std::vector<std::jthread> consumers;
    for (auto& mine : got) {
      consumers.emplace_back([&g, &mine](std::stop_token st) {
        while (auto v = g.next(st)) mine.push_back(*v);
      });
    }
    for (auto& t : consumers) t.join();
  }
  std::vector<int> all;
  for (const auto& mine : got) {
    EXPECT_TRUE(std::is_sorted(mine.begin(), mine.end()))
        << "one consumer saw values out of order";
    all.insert(all.end(), mine.begin(), mine.end());
  }
  std::sort(all.begin(), all.end());
  EXPECT_EQ(all, iota_vector(kValues));
}

INSTANTIATE_TEST_SUITE_P(Consumers, GeneratorConsumersTest,
                         ::testing::Values(1, 2, 4, 8));

}  // namespace

// ---- the producer as a task on a Runtime
// -------------------------------------

namespace {

class GeneratorTaskTest : public sluice::test::ThreadCountTest {};

INSTANTIATE_TEST_SUITE_P(Threads, GeneratorTaskTest,
                         sluice::test::ThreadCounts(),
                         sluice::test::ThreadCountName());

TEST_P(GeneratorTaskTest, APlainFunctionStreamsItsValuesInOrder) {
  sluice::Runtime rt(threads());
  auto gen = generate(
      rt,
      [i = 0]() mutable -> std::optional<int> {
        if (i == 100) return std::nullopt;
        return i++;
      },
      4);
  std::vector<int> got;
  for (int v : gen) got.push_back(v);
  ASSERT_EQ(got.size(), 100U);
  for (int i = 0; i < 100; ++i) EXPECT_EQ(got[static_cast<std::size_t>(i)], i);
}

TEST_P(GeneratorTaskTest, ASuspendingFunctionHoldsNoThread) {
  sluice::Runtime rt(threads());
  auto gen =
      generate(rt, [i = 0]() mutable -> sluice::Task<std::optional<int>> {
        if (i == 5) co_return std::nullopt;
        co_await sluice::sleep_for(1ms);  // e.g. polling an API
        co_return i++;
      });
  int sum = 0;
  for (int v : gen) sum += v;
  EXPECT_EQ(sum, 10);
}

TEST_P(GeneratorTaskTest, DestroyingAnUnfinishedGeneratorStopsItsTask) {
  sluice::Runtime rt(threads());
  {
    auto gen = generate(rt, [] { return std::optional<int>(1); });  // endless
    EXPECT_EQ(gen.next(), 1);
  }  // stop requested; the task ends
  std::atomic<bool> ran{false};
  rt.spawn([&]() -> sluice::Task<> {
    ran = true;
    co_return;
  });
  rt.wait();  // would hang if the producer task were still running
  EXPECT_TRUE(ran.load());
}

TEST_P(GeneratorTaskTest, AThrowingFunctionEndsTheStreamWithItsError) {
  sluice::Runtime rt(threads());
  auto gen = generate(rt, [i = 0]() mutable -> std::optional<int> {
    if (i == 3) throw std::runtime_error("broken source");
    return i++;
  });
  int n = 0;
  for (int v : gen) n += v >= 0 ? 1 : 0;
  EXPECT_EQ(n, 3);
  ASSERT_TRUE(gen.error());
}

}  // namespace
