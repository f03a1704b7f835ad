// Unit tests for sluice::FanIn<T> / fan_in() / fan_in_ordered()
// (patterns/include/sluice/patterns/fan_in.hpp), written against
// docs/patterns-api.md.
#include "sluice/patterns/fan_in.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <numeric>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <tuple>
#include <type_traits>
#include <vector>

#include "test_util.hpp"

namespace {

using sluice::Channel;
using sluice::fan_in;
using sluice::fan_in_ordered;
using sluice::FanIn;
using sluice::Sequenced;
using sluice::test::drain;
using sluice::test::eventually;
using sluice::test::Gate;
using sluice::test::kDeadline;
using sluice::test::kSettle;
using sluice::test::random_sleep_us;
using sluice::test::thread_count_drops_to;
using namespace std::chrono_literals;

// "movable, not copyable"
static_assert(std::is_move_constructible_v<FanIn<int>>);
static_assert(std::is_move_assignable_v<FanIn<int>>);
static_assert(!std::is_copy_constructible_v<FanIn<int>>);
static_assert(!std::is_copy_assignable_v<FanIn<int>>);

// Owns `n` input channels and their pointers, as fan_in wants them.
template <class T>
struct Inputs {
  Inputs(std::size_t n, std::size_t capacity) {
    for (std::size_t i = 0; i < n; ++i) {
      channels.push_back(std::make_unique<Channel<T>>(capacity));
      pointers.push_back(channels.back().get());
    }
  }
  Channel<T>& operator[](std::size_t i) { return *channels[i]; }
  std::size_t size() const { return channels.size(); }
  std::vector<std::unique_ptr<Channel<T>>> channels;
  std::vector<Channel<T>*> pointers;
};

constexpr int kStride = 1'000'000;

// ---------------------------------------------------------------------------
// Unordered fan-in
// ---------------------------------------------------------------------------

using InputsCapacity = std::tuple<std::size_t, std::size_t>;
class FanInMergeTest : public ::testing::TestWithParam<InputsCapacity> {};

TEST_P(FanInMergeTest, EveryValueOnceWithPerInputOrderKept) {
  // Not a structured binding: clang 14 cannot capture one in a lambda.
  const auto param = GetParam();
  const auto n_inputs = std::get<0>(param);
  const auto capacity = std::get<1>(param);
  const int per_input = 2000 / static_cast<int>(n_inputs);
  Inputs<int> inputs(n_inputs, 4);
  auto fi = fan_in(inputs.pointers, capacity);
  std::vector<std::jthread> producers;
  for (std::size_t i = 0; i < n_inputs; ++i) {
    producers.emplace_back([&inputs, i, per_input](std::stop_token st) {
      for (int s = 0; s < per_input; ++s) {
        if (!inputs[i].send(static_cast<int>(i) * kStride + s, st)) {
          ADD_FAILURE() << "send to input " << i << " failed";
          return;
        }
      }
      EXPECT_TRUE(inputs[i].close());
    });
  }
  const auto got = drain(fi.output());
  std::vector<int> last(n_inputs, -1);
  std::vector<int> count(n_inputs, 0);
  int out_of_order = 0;
  for (int v : got) {
    const auto i = static_cast<std::size_t>(v / kStride);
    ASSERT_LT(i, n_inputs);
    if (v % kStride != last[i] + 1) ++out_of_order;
    last[i] = v % kStride;
    ++count[i];
  }
  EXPECT_EQ(out_of_order, 0)
      << "order within one input was not kept (or values lost/duplicated)";
  for (std::size_t i = 0; i < n_inputs; ++i)
    EXPECT_EQ(count[i], per_input) << "input " << i;
  EXPECT_EQ(got.size(), n_inputs * static_cast<std::size_t>(per_input));
}

INSTANTIATE_TEST_SUITE_P(
    InputsOutCapacity, FanInMergeTest,
    ::testing::Combine(::testing::Values(std::size_t{1}, std::size_t{2},
                                         std::size_t{4}, std::size_t{8}),
                       ::testing::Values(std::size_t{0}, std::size_t{16})),
    [](const ::testing::TestParamInfo<InputsCapacity>& p) {
      return "in" + std::to_string(std::get<0>(p.param)) + "_cap" +
             std::to_string(std::get<1>(p.param));
    });

TEST(FanInTest, OutputClosesOnlyAfterEveryInputCloses) {
  Inputs<int> inputs(3, 4);
  auto fi = fan_in(inputs.pointers, 4);
  EXPECT_TRUE(inputs[0].close());
  EXPECT_TRUE(inputs[1].close());
  EXPECT_EQ(fi.output().recv_for(kSettle), std::nullopt);
  EXPECT_FALSE(fi.output().closed()) << "output closed while input 2 is open";
  ASSERT_TRUE(inputs[2].send(42));
  EXPECT_EQ(fi.output().recv_for(kDeadline), 42)
      << "a late value from the open input is lost";
  EXPECT_FALSE(fi.output().closed());
  EXPECT_TRUE(inputs[2].close());
  EXPECT_TRUE(drain(fi.output()).empty());
}

TEST(FanInTest, ValuesBufferedInClosedInputsAreForwarded) {
  Inputs<std::string> inputs(2, 8);
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(inputs[0].send("a" + std::to_string(i)));
    ASSERT_TRUE(inputs[1].send("b" + std::to_string(i)));
  }
  EXPECT_TRUE(inputs[0].close());
  EXPECT_TRUE(inputs[1].close());
  auto fi = fan_in(inputs.pointers);
  auto got = drain(fi.output());
  EXPECT_EQ(got.size(), 10u);
  std::vector<std::string> a;
  for (const auto& s : got) {
    if (s[0] == 'a') a.push_back(s);
  }
  EXPECT_EQ(a, (std::vector<std::string>{"a0", "a1", "a2", "a3", "a4"}));
}

TEST(FanInTest, NoInputsMeansAClosedOutput) {
  auto fi = fan_in(std::vector<Channel<int>*>{}, 4);
  EXPECT_TRUE(drain(fi.output()).empty());
}

TEST(FanInTest, RangeForOverTheFanIn) {
  Inputs<int> inputs(2, 0);
  auto fi = fan_in(inputs.pointers, 0);
  std::jthread producer([&](std::stop_token st) {
    for (int i = 0; i < 10; ++i)
      EXPECT_TRUE(inputs[static_cast<std::size_t>(i % 2)].send(i, st));
    EXPECT_TRUE(inputs[0].close());
    EXPECT_TRUE(inputs[1].close());
  });
  std::vector<int> got;
  for (int v : fi) got.push_back(v);
  std::sort(got.begin(), got.end());
  std::vector<int> expected(10);
  std::iota(expected.begin(), expected.end(), 0);
  EXPECT_EQ(got, expected);
}

TEST(FanInTest, MoveOnlyValues) {
  Inputs<std::unique_ptr<int>> inputs(3, 2);
  auto fi = fan_in(inputs.pointers, 0);
  std::vector<std::jthread> producers;
  for (std::size_t i = 0; i < 3; ++i) {
    producers.emplace_back([&inputs, i](std::stop_token st) {
      for (int s = 0; s < 50; ++s) {
        EXPECT_TRUE(inputs[i].send(
            std::make_unique<int>(static_cast<int>(i) * 100 + s), st));
      }
      EXPECT_TRUE(inputs[i].close());
    });
  }
  std::vector<int> got;
  for (std::unique_ptr<int> p : fi) {
    ASSERT_NE(p, nullptr);
    got.push_back(*p);
  }
  EXPECT_EQ(got.size(), 150u);
  std::sort(got.begin(), got.end());
  EXPECT_EQ(std::adjacent_find(got.begin(), got.end()), got.end())
      << "duplicates";
}

TEST(FanInTest, MovedFanInKeepsWorking) {
  Inputs<int> inputs(2, 8);
  auto fi1 = fan_in(inputs.pointers, 8);
  FanIn<int> fi2(std::move(fi1));
  ASSERT_TRUE(inputs[0].send(1));
  ASSERT_TRUE(inputs[1].send(2));
  EXPECT_TRUE(inputs[0].close());
  EXPECT_TRUE(inputs[1].close());
  auto got = drain(fi2.output());
  std::sort(got.begin(), got.end());
  EXPECT_EQ(got, (std::vector<int>{1, 2}));
}

TEST(FanInTest, MoveAssignmentStopsThePreviousForwarders) {
  const int before = sluice::test::baseline_thread_count();
  Inputs<int> open_inputs(3, 4);  // never closed
  Inputs<int> inputs(1, 4);
  {
    auto fi = fan_in(open_inputs.pointers, 4);
    fi = fan_in(inputs.pointers, 4);
    ASSERT_TRUE(inputs[0].send(5));
    EXPECT_TRUE(inputs[0].close());
    EXPECT_EQ(drain(fi.output()), std::vector<int>{5});
  }
  EXPECT_TRUE(thread_count_drops_to(before));
}

TEST(FanInTest, DestroyedWithOpenInputsReturns) {
  const int before = sluice::test::baseline_thread_count();
  Inputs<int> inputs(4, 4);
  {
    auto fi = fan_in(inputs.pointers, 4);
    std::this_thread::sleep_for(kSettle);
  }
  EXPECT_TRUE(thread_count_drops_to(before)) << "forwarding threads leaked";
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    EXPECT_FALSE(inputs[i].closed()) << "fan-in must not close its inputs";
  }
}

TEST(FanInTest, DestroyedWhileForwardersAreBlockedOnTheOutputReturns) {
  const int before = sluice::test::baseline_thread_count();
  Inputs<int> inputs(3, 16);
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    for (int s = 0; s < 10; ++s) ASSERT_TRUE(inputs[i].send(s));
  }
  {
    auto fi = fan_in(inputs.pointers, 0);  // nobody reads: forwarders block
    std::this_thread::sleep_for(kSettle);
  }
  EXPECT_TRUE(thread_count_drops_to(before)) << "forwarding threads leaked";
}

TEST(FanInTest, StopThenDestroyReturns) {
  const int before = sluice::test::baseline_thread_count();
  Inputs<int> inputs(2, 4);
  {
    auto fi = fan_in(inputs.pointers, 0);
    ASSERT_TRUE(inputs[0].send(1));
    fi.stop();
  }
  EXPECT_TRUE(thread_count_drops_to(before));
}

// ---------------------------------------------------------------------------
// Ordered fan-in
// ---------------------------------------------------------------------------

// Assigns seqs 0..n-1 to `inputs` at random (fixed seed); each input's list
// is increasing, and consecutive seqs are interleaved across inputs.
std::vector<std::vector<std::uint64_t>> assign_seqs(std::size_t n,
                                                    std::size_t inputs,
                                                    std::uint32_t seed) {
  std::vector<std::vector<std::uint64_t>> lists(inputs);
  std::mt19937 rng(seed);
  std::uniform_int_distribution<std::size_t> pick(0, inputs - 1);
  for (std::uint64_t s = 0; s < n; ++s) lists[pick(rng)].push_back(s);
  return lists;
}

using InputsWindow = std::tuple<std::size_t, std::size_t>;
class FanInOrderedMergeTest : public ::testing::TestWithParam<InputsWindow> {};

TEST_P(FanInOrderedMergeTest, EmitsInSeqOrderUnderRandomDelays) {
  // Not a structured binding: clang 14 cannot capture one in a lambda.
  const auto param = GetParam();
  const auto n_inputs = std::get<0>(param);
  const auto window = std::get<1>(param);
  constexpr std::size_t kItems = 1000;
  Inputs<Sequenced<std::uint64_t>> inputs(n_inputs, 2);
  auto fi = fan_in_ordered<std::uint64_t>(inputs.pointers, 4, window);
  const auto lists = assign_seqs(kItems, n_inputs, 12345);
  std::vector<std::jthread> producers;
  for (std::size_t i = 0; i < n_inputs; ++i) {
    producers.emplace_back([&inputs, &lists, i](std::stop_token st) {
      for (std::uint64_t s : lists[i]) {
        random_sleep_us(100);
        if (!inputs[i].send(Sequenced<std::uint64_t>{s, s * 10}, st)) {
          ADD_FAILURE() << "send failed on input " << i;
          return;
        }
      }
      EXPECT_TRUE(inputs[i].close());
    });
  }
  const auto got = drain(fi.output());
  ASSERT_EQ(got.size(), kItems);
  std::size_t misplaced = 0;
  for (std::size_t k = 0; k < got.size(); ++k)
    misplaced += got[k] == k * 10 ? 0 : 1;
  EXPECT_EQ(misplaced, 0u) << "values not emitted in seq order";
}

INSTANTIATE_TEST_SUITE_P(
    InputsWindow, FanInOrderedMergeTest,
    ::testing::Combine(::testing::Values(std::size_t{1}, std::size_t{2},
                                         std::size_t{4}, std::size_t{8}),
                       ::testing::Values(std::size_t{1}, std::size_t{4},
                                         std::size_t{64})),
    [](const ::testing::TestParamInfo<InputsWindow>& p) {
      return "in" + std::to_string(std::get<0>(p.param)) + "_window" +
             std::to_string(std::get<1>(p.param));
    });

TEST(FanInOrderedTest, WindowBoundsHowFarAheadValuesAreTaken) {
  // Input A (unbuffered) carries seqs 1..40, input B carries only seq 0 and
  // holds it back. With window 4 the merge may hold 1, 2, 3 and one forwarder
  // may wait with 4, so A's producer can complete at most ~window sends; an
  // unbounded merge would swallow all 40.
  constexpr std::size_t kWindow = 4;
  constexpr std::uint64_t kLast = 40;
  Inputs<Sequenced<int>> inputs(2, 0);
  auto fi = fan_in_ordered<int>(inputs.pointers, 64, kWindow);
  std::atomic<int> a_sent{0};
  std::jthread a([&](std::stop_token st) {
    for (std::uint64_t s = 1; s <= kLast; ++s) {
      if (!inputs[0].send(Sequenced<int>{s, static_cast<int>(s)}, st)) return;
      ++a_sent;
    }
    EXPECT_TRUE(inputs[0].close());
  });
  Gate release_zero;
  std::jthread b([&](std::stop_token st) {
    if (!release_zero.wait()) return;
    EXPECT_TRUE(inputs[1].send(Sequenced<int>{0, 0}, st));
    EXPECT_TRUE(inputs[1].close());
  });
  ASSERT_TRUE(eventually([&] {
    return a_sent.load() >= static_cast<int>(kWindow) - 1;
  })) << "values inside the window were not taken";
  std::this_thread::sleep_for(2 * kSettle);
  EXPECT_LE(a_sent.load(), static_cast<int>(kWindow) + 1)
      << "the merge took values far beyond the window";
  EXPECT_EQ(fi.output().try_recv(), std::nullopt)
      << "emitted a value before seq 0";
  release_zero.open();
  const auto got = drain(fi.output());
  std::vector<int> expected(kLast + 1);
  std::iota(expected.begin(), expected.end(), 0);
  EXPECT_EQ(got, expected);
}

TEST(FanInOrderedTest, GapsAreSkippedWhenAllInputsHaveClosed) {
  Inputs<Sequenced<std::string>> inputs(2, 8);
  // Missing: 0, 3, 5, 6.
  for (std::uint64_t s : {1, 4, 8})
    ASSERT_TRUE(inputs[0].send({s, std::to_string(s)}));
  for (std::uint64_t s : {2, 7})
    ASSERT_TRUE(inputs[1].send({s, std::to_string(s)}));
  auto fi = fan_in_ordered<std::string>(inputs.pointers, 8, 16);
  // Nothing may come out while seq 0 could still arrive.
  EXPECT_EQ(fi.output().recv_for(kSettle), std::nullopt);
  EXPECT_TRUE(inputs[0].close());
  EXPECT_TRUE(inputs[1].close());
  EXPECT_EQ(drain(fi.output()),
            (std::vector<std::string>{"1", "2", "4", "7", "8"}));
}

TEST(FanInOrderedTest, GapWiderThanTheWindowIsSkippedAfterClose) {
  Inputs<Sequenced<int>> inputs(1, 8);
  for (std::uint64_t s : {0, 1, 5, 6, 9}) {
    ASSERT_TRUE(inputs[0].send({s, static_cast<int>(s)}));
  }
  EXPECT_TRUE(inputs[0].close());
  auto fi = fan_in_ordered<int>(inputs.pointers, 8, 2);
  EXPECT_EQ(drain(fi.output()), (std::vector<int>{0, 1, 5, 6, 9}));
}

TEST(FanInOrderedTest, SeqsNeedNotIncreaseWithinAnInputInsideTheWindow) {
  // The doc asks only that seqs be distinct across inputs.
  Inputs<Sequenced<int>> inputs(2, 16);
  for (std::uint64_t s : {9, 7, 5, 3, 1})
    ASSERT_TRUE(inputs[0].send({s, static_cast<int>(s)}));
  for (std::uint64_t s : {8, 6, 4, 2, 0})
    ASSERT_TRUE(inputs[1].send({s, static_cast<int>(s)}));
  EXPECT_TRUE(inputs[0].close());
  EXPECT_TRUE(inputs[1].close());
  auto fi = fan_in_ordered<int>(inputs.pointers, 16, 16);
  std::vector<int> expected(10);
  std::iota(expected.begin(), expected.end(), 0);
  EXPECT_EQ(drain(fi.output()), expected);
}

TEST(FanInOrderedTest, NoInputsMeansAClosedOutput) {
  auto fi = fan_in_ordered<int>(std::vector<Channel<Sequenced<int>>*>{}, 4, 4);
  EXPECT_TRUE(drain(fi.output()).empty());
}

TEST(FanInOrderedTest, OutputClosesOnlyAfterEveryInputCloses) {
  Inputs<Sequenced<int>> inputs(2, 4);
  auto fi = fan_in_ordered<int>(inputs.pointers, 4, 8);
  ASSERT_TRUE(inputs[0].send({0, 0}));
  EXPECT_EQ(fi.output().recv_for(kDeadline), 0);
  EXPECT_TRUE(inputs[0].close());
  EXPECT_EQ(fi.output().recv_for(kSettle), std::nullopt);
  EXPECT_FALSE(fi.output().closed());
  ASSERT_TRUE(inputs[1].send({1, 1}));
  EXPECT_EQ(fi.output().recv_for(kDeadline), 1);
  EXPECT_TRUE(inputs[1].close());
  EXPECT_TRUE(drain(fi.output()).empty());
}

TEST(FanInOrderedTest, MoveOnlyValues) {
  Inputs<Sequenced<std::unique_ptr<int>>> inputs(2, 2);
  auto fi = fan_in_ordered<std::unique_ptr<int>>(inputs.pointers, 0, 4);
  std::vector<std::jthread> producers;
  for (std::size_t i = 0; i < 2; ++i) {
    producers.emplace_back([&inputs, i](std::stop_token st) {
      for (std::uint64_t s = i; s < 100; s += 2) {
        random_sleep_us(50);
        EXPECT_TRUE(inputs[i].send(
            {s, std::make_unique<int>(static_cast<int>(s))}, st));
      }
      EXPECT_TRUE(inputs[i].close());
    });
  }
  int expected = 0;
  for (std::unique_ptr<int> p : fi) {
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(*p, expected++);
  }
  EXPECT_EQ(expected, 100);
}

TEST(FanInOrderedTest, DestroyedWhileAForwarderWaitsForTheWindowReturns) {
  const int before = sluice::test::baseline_thread_count();
  Inputs<Sequenced<int>> inputs(2, 4);
  ASSERT_TRUE(inputs[0].send({100, 100}));  // far beyond next (0) + window (2)
  {
    auto fi = fan_in_ordered<int>(inputs.pointers, 4, 2);
    std::this_thread::sleep_for(kSettle);
  }
  EXPECT_TRUE(thread_count_drops_to(before)) << "forwarding threads leaked";
}

TEST(FanInOrderedTest, DestroyedWhileBlockedOnTheOutputReturns) {
  const int before = sluice::test::baseline_thread_count();
  Inputs<Sequenced<int>> inputs(1, 16);
  for (std::uint64_t s = 0; s < 10; ++s) ASSERT_TRUE(inputs[0].send({s, 0}));
  {
    auto fi = fan_in_ordered<int>(inputs.pointers, 0, 4);  // nobody reads
    std::this_thread::sleep_for(kSettle);
  }
  EXPECT_TRUE(thread_count_drops_to(before));
}

}  // namespace
