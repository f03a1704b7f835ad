// Unit tests for sharded pipeline stages: Pipeline<T>::map/filter/split with
// shard_by(key) (patterns/include/sluice/patterns/pipeline.hpp): per-key
// arrival order, keys spread over workers, ordered output, errors, and
// shutdown while blocked.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <map>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "sluice/patterns/pipeline.hpp"
#include "test_util.hpp"

namespace {

using sluice::Channel;
using sluice::Pipeline;
using sluice::shard_by;
using sluice::StageOptions;
using sluice::test::drain;
using sluice::test::eventually;
using sluice::test::kSettle;
using sluice::test::random_sleep_us;
using sluice::test::thread_count_drops_to;
using namespace std::chrono_literals;

// An item of key `key`, the `index`-th of its key.
struct Keyed {
  int key = 0;
  int index = 0;
};

// Sends kKeys keys round-robin, `per_key` items each, then closes `src`.
std::jthread feed_keys(Channel<Keyed>& src, int keys, int per_key) {
  return std::jthread([&src, keys, per_key](std::stop_token st) {
    for (int i = 0; i < per_key; ++i) {
      for (int k = 0; k < keys; ++k) {
        if (!src.send(Keyed{k, i}, st)) {
          ADD_FAILURE() << "feeding failed at key " << k << " item " << i;
          return;
        }
      }
    }
    EXPECT_TRUE(src.close());
  });
}

class ShardedStageTest : public ::testing::TestWithParam<std::size_t> {};

TEST_P(ShardedStageTest, EqualKeysKeepArrivalOrderAtTheWorker) {
  const std::size_t workers = GetParam();
  constexpr int kKeys = 13;
  constexpr int kPerKey = 300;
  Channel<Keyed> src(64);
  // What each key's worker saw, in the order it processed them; a gap or
  // swap means two workers shared a key or the router reordered it.
  std::mutex mu;
  std::map<int, std::vector<int>> seen;
  std::map<int, std::set<std::thread::id>> threads_of_key;
  auto p = Pipeline<Keyed>::from(src).map(
      [&](Keyed x) {
        random_sleep_us(20);
        std::lock_guard<std::mutex> lock(mu);
        seen[x.key].push_back(x.index);
        threads_of_key[x.key].insert(std::this_thread::get_id());
        return x;
      },
      {.workers = workers, .buffer = 8, .batch = 4},
      shard_by([](const Keyed& x) { return x.key; }));
  auto feeder = feed_keys(src, kKeys, kPerKey);
  const std::vector<Keyed> out = drain(p.output());
  ASSERT_EQ(out.size(), static_cast<std::size_t>(kKeys * kPerKey));
  std::lock_guard<std::mutex> lock(mu);
  std::set<std::thread::id> all_threads;
  for (int k = 0; k < kKeys; ++k) {
    std::vector<int> expected(kPerKey);
    for (int i = 0; i < kPerKey; ++i) expected[static_cast<std::size_t>(i)] = i;
    EXPECT_EQ(seen[k], expected) << "key " << k;
    EXPECT_EQ(threads_of_key[k].size(), 1U) << "key " << k;
    all_threads.insert(threads_of_key[k].begin(), threads_of_key[k].end());
  }
  // 13 keys over the workers: with std::hash<int> (identity on libstdc++)
  // every worker gets a key.
  EXPECT_EQ(all_threads.size(), std::min<std::size_t>(workers, kKeys));
}

TEST_P(ShardedStageTest, OutputKeepsPerKeyOrderUnordered) {
  const std::size_t workers = GetParam();
  constexpr int kKeys = 7;
  constexpr int kPerKey = 500;
  Channel<Keyed> src(32);
  auto p = Pipeline<Keyed>::from(src).map(
      [](Keyed x) { return x; }, {.workers = workers, .buffer = 4},
      shard_by([](const Keyed& x) { return x.key; }));
  auto feeder = feed_keys(src, kKeys, kPerKey);
  std::map<int, int> next;
  std::size_t n = 0;
  for (const Keyed& x : drain(p.output())) {
    EXPECT_EQ(x.index, next[x.key]++) << "key " << x.key;
    ++n;
  }
  EXPECT_EQ(n, static_cast<std::size_t>(kKeys * kPerKey));
}

TEST_P(ShardedStageTest, OrderedShardedStageEmitsInArrivalOrder) {
  const std::size_t workers = GetParam();
  constexpr int kKeys = 5;
  constexpr int kPerKey = 400;
  Channel<Keyed> src(32);
  auto p = Pipeline<Keyed>::from(src).split(
      [](Keyed x) {
        random_sleep_us(10);
        // Key 0 items vanish, the others double: gaps and runs in the window.
        return x.key == 0 ? std::vector<Keyed>{} : std::vector<Keyed>{x, x};
      },
      {.workers = workers, .buffer = 8, .ordered = true, .batch = 3},
      shard_by([](const Keyed& x) { return x.key; }));
  auto feeder = feed_keys(src, kKeys, kPerKey);
  const std::vector<Keyed> out = drain(p.output());
  std::vector<Keyed> expected;
  for (int i = 0; i < kPerKey; ++i) {
    for (int k = 1; k < kKeys; ++k) {
      expected.push_back({k, i});
      expected.push_back({k, i});
    }
  }
  ASSERT_EQ(out.size(), expected.size());
  for (std::size_t i = 0; i < out.size(); ++i) {
    ASSERT_EQ(out[i].key, expected[i].key) << "at " << i;
    ASSERT_EQ(out[i].index, expected[i].index) << "at " << i;
  }
}

TEST_P(ShardedStageTest, ShardedFilterKeepsOnlyMatches) {
  const std::size_t workers = GetParam();
  Channel<Keyed> src(16);
  auto p = Pipeline<Keyed>::from(src).filter(
      [](const Keyed& x) { return x.index % 2 == 0; },
      {.workers = workers, .buffer = 4},
      shard_by([](const Keyed& x) { return x.key; }));
  auto feeder = feed_keys(src, 4, 100);
  std::map<int, int> next;
  std::size_t n = 0;
  for (const Keyed& x : drain(p.output())) {
    EXPECT_EQ(x.index, next[x.key]) << "key " << x.key;
    next[x.key] += 2;
    ++n;
  }
  EXPECT_EQ(n, 200U);
}

INSTANTIATE_TEST_SUITE_P(Workers, ShardedStageTest,
                         ::testing::Values(std::size_t{1}, std::size_t{2},
                                           std::size_t{4}, std::size_t{8}),
                         [](const ::testing::TestParamInfo<std::size_t>& p) {
                           return "w" + std::to_string(p.param);
                         });

TEST(ShardedStageTest, StringKeysAndChainedStages) {
  Channel<std::pair<std::string, int>> src(16);
  auto p =
      Pipeline<std::pair<std::string, int>>::from(src)
          .map([](std::pair<std::string, int> x) { return x; }, {.workers = 3},
               shard_by([](const std::pair<std::string, int>& x) {
                 return x.first;
               }))
          .map([](std::pair<std::string, int> x) { return x; }, {.workers = 3},
               shard_by([](const std::pair<std::string, int>& x) {
                 return x.first;
               }));
  std::jthread feeder([&src] {
    for (int i = 0; i < 300; ++i) {
      ASSERT_TRUE(src.send({"user-" + std::to_string(i % 11), i}));
    }
    src.close();
  });
  std::map<std::string, int> last;
  std::size_t n = 0;
  for (const auto& [key, i] : drain(p.output())) {
    auto it = last.find(key);
    if (it != last.end()) {
      EXPECT_GT(i, it->second) << key;
    }
    last[key] = i;
    ++n;
  }
  EXPECT_EQ(n, 300U);
}

TEST(ShardedStageTest, ThrowingKeyStillProcessesTheItemAndCountsIt) {
  Channel<int> src(16);
  auto p = Pipeline<int>::from(src).map([](int x) { return x; }, {.workers = 2},
                                        shard_by([](const int& x) {
                                          if (x == 7)
                                            throw std::runtime_error("no key");
                                          return x;
                                        }));
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(src.send(i));
  src.close();
  EXPECT_EQ(drain(p.output()).size(), 10U);
  EXPECT_EQ(p.errors(), 1U);
}

TEST(ShardedStageTest, HotKeyIsLimitedToOneWorker) {
  Channel<Keyed> src(16);
  std::atomic<int> inside{0};
  std::atomic<int> most_inside{0};
  auto p = Pipeline<Keyed>::from(src).map(
      [&](Keyed x) {
        const int now = ++inside;
        int prev = most_inside.load();
        while (now > prev && !most_inside.compare_exchange_weak(prev, now)) {
        }
        std::this_thread::sleep_for(100us);
        --inside;
        return x;
      },
      {.workers = 4}, shard_by([](const Keyed& x) { return x.key; }));
  auto feeder = feed_keys(src, 1, 200);  // one key only
  EXPECT_EQ(drain(p.output()).size(), 200U);
  EXPECT_EQ(most_inside.load(), 1);
}

TEST(ShardedStageTest, DestroyedWhileBlockedReturns) {
  const int before = sluice::test::baseline_thread_count();
  Channel<int> src(64);  // never closed
  for (int i = 0; i < 64; ++i) ASSERT_TRUE(src.send(i));
  std::atomic<int> calls{0};
  {
    auto p = Pipeline<int>::from(src).map(
        [&calls](int x) {
          ++calls;
          return x;
        },
        {.workers = 3, .buffer = 1, .ordered = true},
        shard_by([](const int& x) { return x; }));
    // nobody reads the output: the workers, then the router, block
    ASSERT_TRUE(eventually([&] { return calls.load() >= 1; }));
    std::this_thread::sleep_for(kSettle);
  }
  EXPECT_TRUE(thread_count_drops_to(before)) << "stage threads leaked";
  EXPECT_FALSE(src.closed());
}

TEST(ShardedStageTest, StopWhileIdleReturns) {
  const int before = sluice::test::baseline_thread_count();
  Channel<int> src(4);
  {
    auto p =
        Pipeline<int>::from(src).map([](int x) { return x; }, {.workers = 2},
                                     shard_by([](const int& x) { return x; }));
    p.stop();
  }
  EXPECT_TRUE(thread_count_drops_to(before));
}

}  // namespace
