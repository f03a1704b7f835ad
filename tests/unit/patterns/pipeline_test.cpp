// Unit tests for sluice::Pipeline<T> / StageOptions
// (patterns/include/sluice/patterns/pipeline.hpp), written against
// docs/patterns-api.md.
#include "sluice/patterns/pipeline.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <memory>
#include <numeric>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "test_util.hpp"

namespace {

using sluice::Channel;
using sluice::generate;
using sluice::Pipeline;
using sluice::StageOptions;
using sluice::test::drain;
using sluice::test::eventually;
using sluice::test::feed;
using sluice::test::iota_vector;
using sluice::test::kDeadline;
using sluice::test::kSettle;
using sluice::test::random_sleep_us;
using sluice::test::thread_count_drops_to;
using namespace std::chrono_literals;

// "movable, not copyable"
static_assert(std::is_move_constructible_v<Pipeline<int>>);
static_assert(std::is_move_assignable_v<Pipeline<int>>);
static_assert(!std::is_copy_constructible_v<Pipeline<int>>);
static_assert(!std::is_copy_assignable_v<Pipeline<int>>);

// StageOptions defaults, as documented.
static_assert(StageOptions{}.workers == 1);
static_assert(StageOptions{}.buffer == 64);
static_assert(!StageOptions{}.ordered);
static_assert(StageOptions{}.batch == 64);
static_assert(StageOptions{}.reorder_window == 0);

template <class T>
std::vector<T> sorted(std::vector<T> v) {
  std::sort(v.begin(), v.end());
  return v;
}

// ---------------------------------------------------------------------------
// Stage kinds (unordered), several workers
// ---------------------------------------------------------------------------

using WorkersBatch = std::tuple<std::size_t, std::size_t>;
std::string workers_batch_name(
    const ::testing::TestParamInfo<WorkersBatch>& p) {
  return "w" + std::to_string(std::get<0>(p.param)) + "_batch" +
         std::to_string(std::get<1>(p.param));
}

class PipelineStageTest : public ::testing::TestWithParam<WorkersBatch> {};

TEST_P(PipelineStageTest, MapProcessesEveryItemOnce) {
  // Not a structured binding: clang 14 cannot capture one in a lambda.
  const auto param = GetParam();
  const auto workers = std::get<0>(param);
  const auto batch = std::get<1>(param);
  constexpr int kItems = 3000;
  Channel<int> src(64);
  auto p = Pipeline<int>::from(src).map(
      [](int x) { return 3 * x; },
      {.workers = workers, .buffer = 16, .batch = batch});
  static_assert(std::is_same_v<decltype(p), Pipeline<int>>);
  auto feeder = feed(src, kItems);
  std::vector<int> expected = iota_vector(kItems);
  for (int& v : expected) v *= 3;
  EXPECT_EQ(sorted(drain(p.output())), expected);
  EXPECT_EQ(p.errors(), 0u);
}

TEST_P(PipelineStageTest, FilterWithOptionalResult) {
  // Not a structured binding: clang 14 cannot capture one in a lambda.
  const auto param = GetParam();
  const auto workers = std::get<0>(param);
  const auto batch = std::get<1>(param);
  constexpr int kItems = 2000;
  Channel<int> src(64);
  auto p = Pipeline<int>::from(src).filter(
      [](int x) -> std::optional<std::string> {
        if (x % 2 != 0) return std::nullopt;
        return std::to_string(x);
      },
      {.workers = workers, .batch = batch});
  static_assert(std::is_same_v<decltype(p), Pipeline<std::string>>);
  auto feeder = feed(src, kItems);
  std::vector<std::string> expected;
  for (int i = 0; i < kItems; i += 2) expected.push_back(std::to_string(i));
  EXPECT_EQ(sorted(drain(p.output())), sorted(expected));
}

TEST_P(PipelineStageTest, FilterWithBoolPredicate) {
  // Not a structured binding: clang 14 cannot capture one in a lambda.
  const auto param = GetParam();
  const auto workers = std::get<0>(param);
  const auto batch = std::get<1>(param);
  constexpr int kItems = 2000;
  Channel<int> src(64);
  auto p =
      Pipeline<int>::from(src).filter([](const int& x) { return x % 3 == 0; },
                                      {.workers = workers, .batch = batch});
  static_assert(std::is_same_v<decltype(p), Pipeline<int>>);
  auto feeder = feed(src, kItems);
  std::vector<int> expected;
  for (int i = 0; i < kItems; i += 3) expected.push_back(i);
  EXPECT_EQ(sorted(drain(p.output())), expected);
}

TEST_P(PipelineStageTest, SplitIntoZeroOrMoreParts) {
  // Not a structured binding: clang 14 cannot capture one in a lambda.
  const auto param = GetParam();
  const auto workers = std::get<0>(param);
  const auto batch = std::get<1>(param);
  constexpr int kItems = 1000;
  Channel<int> src(64);
  // x -> x % 4 copies of x (0 parts for multiples of four).
  auto p = Pipeline<int>::from(src).split(
      [](int x) {
        return std::vector<long>(static_cast<std::size_t>(x % 4), x);
      },
      {.workers = workers, .batch = batch});
  static_assert(std::is_same_v<decltype(p), Pipeline<long>>);
  auto feeder = feed(src, kItems);
  std::vector<long> expected;
  for (int i = 0; i < kItems; ++i)
    expected.insert(expected.end(), static_cast<std::size_t>(i % 4), i);
  EXPECT_EQ(sorted(drain(p.output())), expected);
}

TEST_P(PipelineStageTest, ThreeStagesChained) {
  // Not a structured binding: clang 14 cannot capture one in a lambda.
  const auto param = GetParam();
  const auto workers = std::get<0>(param);
  const auto batch = std::get<1>(param);
  constexpr int kItems = 2000;
  Channel<int> src(16);
  const StageOptions o{.workers = workers, .buffer = 8, .batch = batch};
  auto p = Pipeline<int>::from(src)
               .map([](int x) { return x + 1; }, o)
               .filter([](const int& x) { return x % 2 == 0; }, o)
               .split(
                   [](int x) {
                     return std::vector<int>{x, -x};
                   },
                   o);
  auto feeder = feed(src, kItems);
  std::vector<int> expected;
  for (int i = 0; i < kItems; ++i) {
    if ((i + 1) % 2 == 0) {
      expected.push_back(i + 1);
      expected.push_back(-(i + 1));
    }
  }
  EXPECT_EQ(sorted(drain(p.output())), sorted(expected));
}

INSTANTIATE_TEST_SUITE_P(
    WorkersBatch, PipelineStageTest,
    ::testing::Combine(::testing::Values(std::size_t{1}, std::size_t{2},
                                         std::size_t{4}, std::size_t{8}),
                       ::testing::Values(std::size_t{1}, std::size_t{64})),
    workers_batch_name);

// ---------------------------------------------------------------------------
// Errors, types, closing
// ---------------------------------------------------------------------------

TEST(PipelineTest, ErrorsCountsThrowingItemsOfEveryStage) {
  constexpr int kItems = 1000;
  Channel<int> src(64);
  auto p = Pipeline<int>::from(src)
               .map(
                   [](int x) {
                     if (x % 7 == 0) throw std::runtime_error("stage 1");
                     return x;
                   },
                   {.workers = 3})
               .filter(
                   [](int x) -> std::optional<int> {
                     if (x % 11 == 0) throw std::logic_error("stage 2");
                     return x;
                   },
                   {.workers = 2})
               .split(
                   [](int x) {
                     if (x % 13 == 0) throw std::out_of_range("stage 3");
                     return std::vector<int>{x};
                   },
                   {.workers = 2});
  auto feeder = feed(src, kItems);
  std::vector<int> expected;
  std::size_t throwing = 0;
  for (int i = 0; i < kItems; ++i) {
    if (i % 7 == 0 || i % 11 == 0 || i % 13 == 0) {
      ++throwing;
    } else {
      expected.push_back(i);
    }
  }
  EXPECT_EQ(sorted(drain(p.output())), expected);
  EXPECT_EQ(p.errors(), throwing);
}

TEST(PipelineTest, TypeChangingStages) {
  Channel<int> src(8);
  auto p =
      Pipeline<int>::from(src)
          .map(
              [](int x) {
                return std::string(static_cast<std::size_t>(x % 10 + 1), 'a');
              },
              {.workers = 2, .ordered = true})
          .map([](std::string s) { return s.size(); },
               {.workers = 3, .ordered = true});
  static_assert(std::is_same_v<decltype(p), Pipeline<std::size_t>>);
  auto feeder = feed(src, 100);
  std::vector<std::size_t> expected;
  for (int i = 0; i < 100; ++i)
    expected.push_back(static_cast<std::size_t>(i % 10 + 1));
  EXPECT_EQ(drain(p.output()), expected);
}

TEST(PipelineTest, OutputClosesOnlyAfterTheSourceCloses) {
  Channel<int> src(8);
  auto p =
      Pipeline<int>::from(src).map([](int x) { return x; }, {.workers = 2});
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(src.send(i));
  std::vector<int> got;
  for (int i = 0; i < 3; ++i) {
    auto v = p.output().recv_for(kDeadline);
    ASSERT_TRUE(v.has_value());
    got.push_back(*v);
  }
  EXPECT_EQ(sorted(got), (std::vector<int>{0, 1, 2}));
  EXPECT_EQ(p.output().recv_for(kSettle), std::nullopt);
  EXPECT_FALSE(p.output().closed()) << "output closed while the source is open";
  EXPECT_TRUE(src.close());
  EXPECT_TRUE(drain(p.output()).empty());
  EXPECT_FALSE(src.recv_for(0ms).has_value());
}

TEST(PipelineTest, EmptySourceClosesTheOutput) {
  Channel<int> src(4);
  EXPECT_TRUE(src.close());
  auto p = Pipeline<int>::from(src)
               .map([](int x) { return x; })
               .filter([](const int&) { return true; });
  EXPECT_TRUE(drain(p.output()).empty());
  EXPECT_EQ(p.errors(), 0u);
}

TEST(PipelineTest, RangeForOverThePipeline) {
  Channel<int> src(8);
  auto p = Pipeline<int>::from(src).map([](int x) { return x * 2; },
                                        {.ordered = true});
  auto feeder = feed(src, 50);
  std::vector<int> got;
  for (int v : p) got.push_back(v);
  std::vector<int> expected = iota_vector(50);
  for (int& v : expected) v *= 2;
  EXPECT_EQ(got, expected);
}

// ---------------------------------------------------------------------------
// Pipeline::from(Generator&&)
// ---------------------------------------------------------------------------

// The generator is a local of this function: the pipeline must own it.
Pipeline<int> pipeline_over_local_generator(int n) {
  auto gen = generate(
      [i = 0, n]() mutable -> std::optional<int> {
        if (i == n) return std::nullopt;
        return i++;
      },
      4);
  return Pipeline<int>::from(std::move(gen))
      .map([](int x) { return x + 1; }, {.workers = 2});
}

TEST(PipelineTest, FromGeneratorOwnsTheGenerator) {
  auto p = pipeline_over_local_generator(200);
  EXPECT_EQ(sorted(drain(p.output())), iota_vector(200, 1));
}

TEST(PipelineTest, FromGeneratorWithoutStages) {
  auto p = Pipeline<int>::from(generate(
      [i = 0]() mutable -> std::optional<int> {
        if (i == 10) return std::nullopt;
        return i++;
      },
      0));
  EXPECT_EQ(drain(p.output()), iota_vector(10));
}

TEST(PipelineTest, DestroyedWhileItsInfiniteGeneratorRunsReturns) {
  const int before = sluice::test::baseline_thread_count();
  std::atomic<int> calls{0};
  {
    auto p = Pipeline<int>::from(generate(
                                     [&calls]() -> std::optional<int> {
                                       return calls.fetch_add(1);
                                     },
                                     2))
                 .map([](int x) { return x; }, {.workers = 2, .buffer = 1});
    ASSERT_TRUE(p.output().recv_for(kDeadline).has_value());
    ASSERT_TRUE(eventually([&] { return calls.load() > 3; }));
  }
  EXPECT_TRUE(thread_count_drops_to(before))
      << "pipeline or generator threads leaked";
  const int after = calls.load();
  std::this_thread::sleep_for(kSettle);
  EXPECT_EQ(calls.load(), after)
      << "the generator still runs after the pipeline was destroyed";
}

// ---------------------------------------------------------------------------
// Moving, move-only values, destruction
// ---------------------------------------------------------------------------

TEST(PipelineTest, MovedPipelineKeepsWorking) {
  Channel<int> src(8);
  auto p1 =
      Pipeline<int>::from(src).map([](int x) { return x - 1; }, {.workers = 2});
  Pipeline<int> p2(std::move(p1));
  auto feeder = feed(src, 100);
  EXPECT_EQ(sorted(drain(p2.output())), iota_vector(100, -1));
}

TEST(PipelineTest, MoveAssignmentReplacesAndStopsThePreviousPipeline) {
  const int before = sluice::test::baseline_thread_count();
  Channel<int> src_a(8);  // never closed: the old pipeline's workers wait on it
  Channel<int> src_b(8);
  {
    auto p =
        Pipeline<int>::from(src_a).map([](int x) { return x; }, {.workers = 3});
    auto q = Pipeline<int>::from(src_b).map([](int x) { return x * 10; },
                                            {.workers = 2});
    p = std::move(q);  // must stop and join p's old stages
    auto feeder = feed(src_b, 20);
    std::vector<int> expected;
    for (int i = 0; i < 20; ++i) expected.push_back(i * 10);
    EXPECT_EQ(sorted(drain(p.output())), expected);
  }
  EXPECT_TRUE(thread_count_drops_to(before));
}

TEST(PipelineTest, StagesCanBeAddedStepByStep) {
  Channel<int> src(8);
  auto p0 = Pipeline<int>::from(src);
  auto p1 = std::move(p0).map([](int x) { return x * 2; },
                              {.workers = 2, .ordered = true});
  auto p2 = std::move(p1).filter([](const int& x) { return x % 4 == 0; },
                                 {.ordered = true});
  auto feeder = feed(src, 100);
  std::vector<int> expected;
  for (int i = 0; i < 100; i += 2) expected.push_back(i * 2);
  EXPECT_EQ(drain(p2.output()), expected);
}

class PipelineMoveOnlyTest : public ::testing::TestWithParam<bool> {};

TEST_P(PipelineMoveOnlyTest, UniquePtrThroughEveryStageKind) {
  constexpr int kItems = 300;
  const bool ordered = GetParam();
  const StageOptions o{
      .workers = 3, .buffer = 4, .ordered = ordered, .batch = 8};
  Channel<std::unique_ptr<int>> src(8);
  auto p =
      Pipeline<std::unique_ptr<int>>::from(src)
          .map(
              [](std::unique_ptr<int> v) {
                return std::make_unique<int>(*v * 2);
              },
              o)
          .filter(
              [](std::unique_ptr<int> v)
                  -> std::optional<std::unique_ptr<int>> {
                if (*v % 3 == 0) return std::nullopt;
                return v;
              },
              o)
          .filter([](const std::unique_ptr<int>& v) { return *v % 5 != 0; }, o)
          .split(
              [](std::unique_ptr<int> v) {
                std::vector<std::unique_ptr<int>> parts;
                parts.push_back(std::make_unique<int>(*v));
                parts.push_back(std::make_unique<int>(-*v));
                return parts;
              },
              o);
  static_assert(std::is_same_v<decltype(p), Pipeline<std::unique_ptr<int>>>);
  std::jthread feeder([&](std::stop_token st) {
    for (int i = 0; i < kItems; ++i)
      EXPECT_TRUE(src.send(std::make_unique<int>(i), st));
    EXPECT_TRUE(src.close());
  });
  std::vector<int> got;
  for (std::unique_ptr<int> v : p) {
    ASSERT_NE(v, nullptr);
    got.push_back(*v);
  }
  std::vector<int> expected;
  for (int i = 0; i < kItems; ++i) {
    const int v = i * 2;
    if (v % 3 != 0 && v % 5 != 0) {
      expected.push_back(v);
      expected.push_back(-v);
    }
  }
  EXPECT_EQ(ordered ? got : sorted(got), ordered ? expected : sorted(expected));
}

INSTANTIATE_TEST_SUITE_P(Ordered, PipelineMoveOnlyTest, ::testing::Bool());

TEST(PipelineTest, DestroyedWhileStagesAreBlockedReturns) {
  const int before = sluice::test::baseline_thread_count();
  Channel<int> src(64);  // outlives the pipeline; never closed
  for (int i = 0; i < 50; ++i) ASSERT_TRUE(src.send(i));
  std::atomic<int> calls{0};
  {
    auto p = Pipeline<int>::from(src)
                 .map(
                     [&calls](int x) {
                       ++calls;
                       return x;
                     },
                     {.workers = 2, .buffer = 1})
                 .map([](int x) { return x; },
                      {.workers = 2, .buffer = 1, .ordered = true})
                 .split(
                     [](int x) {
                       return std::vector<int>{x, x};
                     },
                     {.workers = 2, .buffer = 0});
    // nobody reads the output: every stage fills up and blocks
    ASSERT_TRUE(eventually([&] { return calls.load() >= 4; }));
    std::this_thread::sleep_for(kSettle);
  }
  EXPECT_TRUE(thread_count_drops_to(before)) << "stage threads leaked";
  EXPECT_FALSE(src.closed())
      << "the pipeline must not close a source it does not own";
}

TEST(PipelineTest, DestroyedWhileWaitingOnAnOpenEmptySourceReturns) {
  const int before = sluice::test::baseline_thread_count();
  Channel<int> src(4);
  {
    auto p = Pipeline<int>::from(src)
                 .map([](int x) { return x; }, {.workers = 4})
                 .map([](int x) { return x; }, {.workers = 4, .ordered = true});
    std::this_thread::sleep_for(kSettle);
  }
  EXPECT_TRUE(thread_count_drops_to(before));
}

TEST(PipelineTest, StopThenDestroyReturns) {
  const int before = sluice::test::baseline_thread_count();
  Channel<int> src(4);
  {
    auto p =
        Pipeline<int>::from(src).map([](int x) { return x; }, {.workers = 2});
    ASSERT_TRUE(src.send(1));
    p.stop();
  }
  EXPECT_TRUE(thread_count_drops_to(before));
}

}  // namespace
