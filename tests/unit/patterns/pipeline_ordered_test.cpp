// Unit tests of sluice::Pipeline's ordered stages
// (sluice/patterns/pipeline.hpp): input order kept under random per-item
// delays, for every stage kind and a chain, over workers x batch x reorder
// window. Built into patterns_pipeline_test with pipeline_test.cpp (split from
// it so the two compile side by side: docs/internal/ci.md).
#include <gtest/gtest.h>

#include <chrono>
#include <cstddef>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "sluice/patterns/pipeline.hpp"
#include "test_util.hpp"

namespace {

using sluice::Channel;
using sluice::Pipeline;
using sluice::StageOptions;
using sluice::test::drain;
using sluice::test::feed;
using sluice::test::iota_vector;
using sluice::test::random_sleep_us;
using namespace std::chrono_literals;

// ---------------------------------------------------------------------------
// Ordered stages keep input order under random per-item delays
// ---------------------------------------------------------------------------

using OrderedParam = std::tuple<std::size_t, std::size_t,
                                std::size_t>;  // workers, batch, window
class PipelineOrderedTest : public ::testing::TestWithParam<OrderedParam> {
 protected:
  StageOptions options() const {
    // Not a structured binding: clang 14 cannot capture one in a lambda.
    const auto param = GetParam();
    const auto workers = std::get<0>(param);
    const auto batch = std::get<1>(param);
    const auto window = std::get<2>(param);
    return {.workers = workers,
            .buffer = 16,
            .ordered = true,
            .batch = batch,
            .reorder_window = window};
  }
};

TEST_P(PipelineOrderedTest, OrderedMapKeepsOrder) {
  constexpr int kItems = 1000;
  Channel<int> src(32);
  auto p = Pipeline<int>::from(src).map(
      [](int x) {
        random_sleep_us(200);
        return x * 7;
      },
      options());
  auto feeder = feed(src, kItems);
  std::vector<int> expected = iota_vector(kItems);
  for (int& v : expected) v *= 7;
  EXPECT_EQ(drain(p.output()), expected);
}

TEST_P(PipelineOrderedTest, OrderedOptionalFilterKeepsOrder) {
  constexpr int kItems = 1000;
  Channel<int> src(32);
  auto p = Pipeline<int>::from(src).filter(
      [](int x) -> std::optional<std::string> {
        random_sleep_us(200);
        if (x % 3 == 1) return std::nullopt;
        return std::to_string(x);
      },
      options());
  auto feeder = feed(src, kItems);
  std::vector<std::string> expected;
  for (int i = 0; i < kItems; ++i) {
    if (i % 3 != 1) expected.push_back(std::to_string(i));
  }
  EXPECT_EQ(drain(p.output()), expected);
}

TEST_P(PipelineOrderedTest, OrderedPredicateFilterKeepsOrder) {
  constexpr int kItems = 1000;
  Channel<int> src(32);
  auto p = Pipeline<int>::from(src).filter(
      [](const int& x) {
        random_sleep_us(200);
        return x % 5 != 0;
      },
      options());
  auto feeder = feed(src, kItems);
  std::vector<int> expected;
  for (int i = 0; i < kItems; ++i) {
    if (i % 5 != 0) expected.push_back(i);
  }
  EXPECT_EQ(drain(p.output()), expected);
}

TEST_P(PipelineOrderedTest, OrderedSplitKeepsOrderOfItemsAndParts) {
  constexpr int kItems = 600;
  Channel<int> src(32);
  auto p = Pipeline<int>::from(src).split(
      [](int x) {
        random_sleep_us(200);
        std::vector<int> parts;
        for (int k = 0; k < x % 4; ++k) parts.push_back(x * 10 + k);
        return parts;
      },
      options());
  auto feeder = feed(src, kItems);
  std::vector<int> expected;
  for (int i = 0; i < kItems; ++i) {
    for (int k = 0; k < i % 4; ++k) expected.push_back(i * 10 + k);
  }
  EXPECT_EQ(drain(p.output()), expected);
}

TEST_P(PipelineOrderedTest, OrderedStageSkipsThrowingItemsAndKeepsOrder) {
  constexpr int kItems = 500;
  Channel<int> src(32);
  auto p = Pipeline<int>::from(src).map(
      [](int x) {
        random_sleep_us(200);
        if (x % 7 == 3) throw std::runtime_error("seven");
        return x;
      },
      options());
  auto feeder = feed(src, kItems);
  std::vector<int> expected;
  int throwing = 0;
  for (int i = 0; i < kItems; ++i) {
    if (i % 7 == 3) {
      ++throwing;
    } else {
      expected.push_back(i);
    }
  }
  EXPECT_EQ(drain(p.output()), expected);
  EXPECT_EQ(p.errors(), static_cast<std::size_t>(throwing));
}

TEST_P(PipelineOrderedTest, ChainOfOrderedStagesKeepsOrder) {
  constexpr int kItems = 500;
  Channel<int> src(32);
  const StageOptions o = options();
  auto p = Pipeline<int>::from(src)
               .map(
                   [](int x) {
                     random_sleep_us(100);
                     return std::to_string(x);
                   },
                   o)
               .split(
                   [](std::string s) {
                     random_sleep_us(100);
                     return std::vector<std::string>{s + "a", s + "b"};
                   },
                   o)
               .filter(
                   [](const std::string& s) {
                     random_sleep_us(100);
                     return s.back() == 'b' || s.size() % 2 == 0;
                   },
                   o);
  auto feeder = feed(src, kItems);
  std::vector<std::string> expected;
  for (int i = 0; i < kItems; ++i) {
    for (std::string s : {std::to_string(i) + "a", std::to_string(i) + "b"}) {
      if (s.back() == 'b' || s.size() % 2 == 0) expected.push_back(s);
    }
  }
  EXPECT_EQ(drain(p.output()), expected);
}

INSTANTIATE_TEST_SUITE_P(
    WorkersBatchWindow, PipelineOrderedTest,
    ::testing::Values(OrderedParam{4, 64, 0}, OrderedParam{4, 1, 0},
                      OrderedParam{4, 8, 1}, OrderedParam{4, 1, 3},
                      OrderedParam{2, 4, 16}, OrderedParam{1, 64, 0},
                      OrderedParam{8, 2, 0}),
    [](const ::testing::TestParamInfo<OrderedParam>& p) {
      return "w" + std::to_string(std::get<0>(p.param)) + "_batch" +
             std::to_string(std::get<1>(p.param)) + "_window" +
             std::to_string(std::get<2>(p.param));
    });

}  // namespace
