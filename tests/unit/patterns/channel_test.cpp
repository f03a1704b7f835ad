// Unit tests for sluice::Channel<T>
// (patterns/include/sluice/patterns/channel.hpp), written against
// docs/patterns-api.md.
#include "sluice/patterns/channel.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <latch>
#include <memory>
#include <numeric>
#include <optional>
#include <span>
#include <stop_token>
#include <string>
#include <thread>
#include <tuple>
#include <type_traits>
#include <vector>

#include "test_util.hpp"

namespace {

using sluice::Channel;
using sluice::test::eventually;
using sluice::test::Gate;
using sluice::test::kDeadline;
using sluice::test::kSettle;
using sluice::test::MoveOnly;
using sluice::test::Stopwatch;
using sluice::test::Watchdog;
using namespace std::chrono_literals;

// "Not copyable or movable (share it by reference or pointer)."
static_assert(!std::is_copy_constructible_v<Channel<int>>);
static_assert(!std::is_copy_assignable_v<Channel<int>>);
static_assert(!std::is_move_constructible_v<Channel<int>>);
static_assert(!std::is_move_assignable_v<Channel<int>>);

// Receive timeouts for the race tests: 0, 10, ..., 60 microseconds.
long r_timeout(std::size_t n) { return static_cast<long>(n % 7) * 10; }

std::stop_token stopped_token() {
  static std::stop_source source = [] {
    std::stop_source s;
    s.request_stop();
    return s;
  }();
  return source.get_token();
}

// ---------------------------------------------------------------------------
// capacity() / size()
// ---------------------------------------------------------------------------

TEST(ChannelTest, CapacityIsWhatWasAskedFor) {
  Channel<int> c0(0);
  Channel<int> c1(1);
  Channel<int> c7(7);
  Channel<int> c1024(1024);
  EXPECT_EQ(c0.capacity(), 0u);
  EXPECT_EQ(c1.capacity(), 1u);
  EXPECT_EQ(c7.capacity(), 7u);
  EXPECT_EQ(c1024.capacity(), 1024u);
}

TEST(ChannelTest, SizeCountsBufferedItems) {
  Channel<int> ch(3);
  EXPECT_EQ(ch.size(), 0u);
  EXPECT_TRUE(ch.send(1));
  EXPECT_EQ(ch.size(), 1u);
  EXPECT_TRUE(ch.send(2));
  EXPECT_TRUE(ch.send(3));
  EXPECT_EQ(ch.size(), 3u);
  EXPECT_EQ(ch.recv(), 1);
  EXPECT_EQ(ch.size(), 2u);
  EXPECT_TRUE(ch.close());
  EXPECT_EQ(ch.size(), 2u);  // closing keeps buffered items
  EXPECT_EQ(ch.recv(), 2);
  EXPECT_EQ(ch.recv(), 3);
  EXPECT_EQ(ch.size(), 0u);
  EXPECT_EQ(ch.capacity(), 3u);
}

TEST(ChannelTest, SizeIsExactAcrossManyLaps) {
  Channel<int> ch(3);  // not a power of two: exercises the wrap-around
  int next_in = 0;
  int next_out = 0;
  for (int lap = 0; lap < 20; ++lap) {
    for (int i = 0; i < 3; ++i) ASSERT_TRUE(ch.send(next_in++));
    EXPECT_EQ(ch.size(), 3u);
    int v = -1;
    EXPECT_FALSE(ch.try_send(v)) << "lap " << lap;
    EXPECT_EQ(ch.recv(), next_out++);
    EXPECT_EQ(ch.recv(), next_out++);
    EXPECT_EQ(ch.size(), 1u);
    EXPECT_EQ(ch.recv(), next_out++);
    EXPECT_EQ(ch.size(), 0u);
  }
}

TEST(ChannelTest, DestroyingAChannelDestroysBufferedValues) {
  auto tracked = std::make_shared<int>(1);
  {
    Channel<std::shared_ptr<int>> ch(8);
    for (int i = 0; i < 5; ++i) ASSERT_TRUE(ch.send(tracked));
    EXPECT_EQ(ch.recv(), tracked);
    EXPECT_EQ(tracked.use_count(), 5);
  }
  EXPECT_EQ(tracked.use_count(), 1) << "buffered values leaked by ~Channel";
  {
    Channel<std::shared_ptr<int>> ch(2);
    ASSERT_TRUE(ch.send(tracked));
    EXPECT_TRUE(ch.close());
    EXPECT_FALSE(ch.send(tracked)) << "closed";
  }
  EXPECT_EQ(tracked.use_count(), 1)
      << "values of a closed channel (or a refused send) leaked";
}

// ---------------------------------------------------------------------------
// State table: open, empty
// ---------------------------------------------------------------------------

TEST(ChannelTest, OpenEmptySendBuffers) {
  Channel<int> ch(2);
  EXPECT_TRUE(ch.send(7));
  EXPECT_EQ(ch.size(), 1u);
  EXPECT_FALSE(ch.closed());
  EXPECT_EQ(ch.try_recv(), 7);
}

TEST(ChannelTest, OpenEmptyRecvBlocksUntilASend) {
  Channel<int> ch(2);
  EXPECT_EQ(ch.try_recv(), std::nullopt);
  std::atomic<bool> returned{false};
  std::optional<int> got;
  std::jthread receiver([&](std::stop_token st) {
    got = ch.recv(st);
    returned = true;
  });
  std::this_thread::sleep_for(kSettle);
  EXPECT_FALSE(returned.load()) << "recv on an open, empty channel must block";
  EXPECT_TRUE(ch.send(5));
  receiver.join();
  EXPECT_TRUE(returned.load());
  EXPECT_EQ(got, 5);
}

TEST(ChannelTest, OpenEmptyCloseReturnsTrueAndLeavesClosedAndEmpty) {
  Channel<int> ch(2);
  EXPECT_FALSE(ch.closed());
  EXPECT_TRUE(ch.close());
  EXPECT_TRUE(ch.closed());
  EXPECT_EQ(ch.size(), 0u);
  EXPECT_EQ(ch.recv(), std::nullopt);
}

// ---------------------------------------------------------------------------
// State table: open, has items
// ---------------------------------------------------------------------------

TEST(ChannelTest, OpenWithItemsSendBuffersUntilFull) {
  Channel<int> ch(2);
  EXPECT_TRUE(ch.send(1));
  EXPECT_TRUE(ch.send(2));
  EXPECT_EQ(ch.size(), 2u);
  int v = 3;
  EXPECT_FALSE(ch.try_send(v)) << "full";
  EXPECT_EQ(v, 3);
  EXPECT_EQ(ch.size(), 2u);
}

TEST(ChannelTest, OpenWithItemsSendBlocksWhenFullUntilARecv) {
  Channel<int> ch(1);
  EXPECT_TRUE(ch.send(1));
  std::atomic<bool> returned{false};
  std::atomic<bool> result{false};
  std::jthread sender([&](std::stop_token st) {
    result = ch.send(2, st);
    returned = true;
  });
  std::this_thread::sleep_for(kSettle);
  EXPECT_FALSE(returned.load()) << "send on a full channel must block";
  EXPECT_EQ(ch.size(), 1u);
  EXPECT_EQ(ch.recv(), 1);
  sender.join();
  EXPECT_TRUE(result.load());
  EXPECT_EQ(ch.recv(), 2);
}

TEST(ChannelTest, OpenWithItemsRecvReturnsOldest) {
  Channel<int> ch(4);
  for (int i = 0; i < 4; ++i) EXPECT_TRUE(ch.send(i));
  EXPECT_EQ(ch.recv(), 0);
  EXPECT_TRUE(ch.send(4));
  EXPECT_EQ(ch.recv(), 1);
  EXPECT_EQ(ch.try_recv(), 2);
  EXPECT_EQ(ch.recv(), 3);
  EXPECT_EQ(ch.recv(), 4);
}

TEST(ChannelTest, OpenWithItemsCloseReturnsTrueAndKeepsItems) {
  Channel<int> ch(4);
  EXPECT_TRUE(ch.send(1));
  EXPECT_TRUE(ch.send(2));
  EXPECT_TRUE(ch.close());
  EXPECT_TRUE(ch.closed());
  EXPECT_EQ(ch.size(), 2u);
}

// ---------------------------------------------------------------------------
// State table: closed, with items
// ---------------------------------------------------------------------------

TEST(ChannelTest, ClosedWithItemsSendFailsAtOnce) {
  Channel<int> ch(1);
  EXPECT_TRUE(
      ch.send(1));  // full: a send that did not see the close would block
  EXPECT_TRUE(ch.close());
  Watchdog wd;
  EXPECT_FALSE(ch.send(2, wd.token()));
  EXPECT_FALSE(wd.fired()) << "send on a closed channel must not block";
  int v = 3;
  EXPECT_FALSE(ch.try_send(v));
  EXPECT_EQ(v, 3);
  Stopwatch sw;
  EXPECT_FALSE(ch.send_for(v, 10s));
  EXPECT_LT(sw.elapsed(), 5s) << "send_for on a closed channel must not wait";
  EXPECT_EQ(v, 3);
  EXPECT_EQ(ch.size(), 1u);
  EXPECT_EQ(ch.recv(), 1);
  EXPECT_EQ(ch.recv(), std::nullopt);
}

TEST(ChannelTest, RecvAfterCloseDrains) {
  Channel<int> ch(8);
  for (int i = 0; i < 5; ++i) EXPECT_TRUE(ch.send(i));
  EXPECT_TRUE(ch.close());
  for (int i = 0; i < 5; ++i) {
    auto v = ch.recv();
    ASSERT_TRUE(v.has_value()) << "buffered value " << i << " lost by close()";
    EXPECT_EQ(*v, i);
  }
  EXPECT_EQ(ch.recv(), std::nullopt);
  EXPECT_EQ(ch.recv(), std::nullopt);
}

TEST(ChannelTest, ClosedWithItemsTryRecvAndRecvForStillDeliver) {
  Channel<int> ch(8);
  EXPECT_TRUE(ch.send(10));
  EXPECT_TRUE(ch.send(11));
  EXPECT_TRUE(ch.close());
  EXPECT_EQ(ch.try_recv(), 10);
  EXPECT_EQ(ch.recv_for(1s), 11);
  EXPECT_EQ(ch.try_recv(), std::nullopt);
}

TEST(ChannelTest, ClosedWithItemsCloseIsANoOp) {
  Channel<int> ch(8);
  EXPECT_TRUE(ch.send(1));
  EXPECT_TRUE(ch.send(2));
  EXPECT_TRUE(ch.close());
  EXPECT_FALSE(ch.close());
  EXPECT_TRUE(ch.closed());
  EXPECT_EQ(ch.size(), 2u);
  EXPECT_EQ(ch.recv(), 1);
  EXPECT_EQ(ch.recv(), 2);
  EXPECT_EQ(ch.recv(), std::nullopt);
}

// ---------------------------------------------------------------------------
// State table: closed and empty
// ---------------------------------------------------------------------------

TEST(ChannelTest, ClosedAndEmptySendFailsAtOnce) {
  Channel<int> ch(2);
  EXPECT_TRUE(ch.close());
  EXPECT_FALSE(ch.send(1));
  int v = 2;
  EXPECT_FALSE(ch.try_send(v));
  EXPECT_EQ(v, 2);
  EXPECT_EQ(ch.size(), 0u);
  EXPECT_EQ(ch.try_recv(), std::nullopt);
}

TEST(ChannelTest, ClosedAndEmptyRecvReturnsNulloptAtOnce) {
  Channel<int> ch(2);
  EXPECT_TRUE(ch.close());
  Watchdog wd;
  EXPECT_EQ(ch.recv(wd.token()), std::nullopt);
  EXPECT_FALSE(wd.fired()) << "recv on a closed, empty channel must not block";
  EXPECT_EQ(ch.try_recv(), std::nullopt);
  Stopwatch sw;
  EXPECT_EQ(ch.recv_for(10s), std::nullopt);
  EXPECT_LT(sw.elapsed(), 5s)
      << "recv_for on a closed, empty channel must not wait";
}

TEST(ChannelTest, ClosedAndEmptyCloseIsANoOp) {
  Channel<int> ch(0);
  EXPECT_TRUE(ch.close());
  EXPECT_FALSE(ch.close());
  EXPECT_TRUE(ch.closed());
  EXPECT_EQ(ch.recv(), std::nullopt);
}

TEST(ChannelTest, CloseIsIdempotent) {
  Channel<int> ch(1);
  EXPECT_TRUE(ch.close());
  for (int i = 0; i < 10; ++i) EXPECT_FALSE(ch.close());
  EXPECT_TRUE(ch.closed());
}

TEST(ChannelTest, ClosedStaysFalseWhileOpen) {
  Channel<int> ch(1);
  EXPECT_FALSE(ch.closed());
  EXPECT_TRUE(ch.send(1));
  EXPECT_FALSE(ch.closed());
  EXPECT_EQ(ch.recv(), 1);
  EXPECT_FALSE(ch.closed());
}

TEST(ChannelTest, CloseWakesEveryBlockedReceiver) {
  Channel<int> ch(1);
  constexpr int kReceivers = 4;
  std::atomic<int> nullopts{0};
  std::atomic<int> returned{0};
  {
    std::vector<std::jthread> receivers;
    for (int i = 0; i < kReceivers; ++i) {
      receivers.emplace_back([&](std::stop_token st) {
        if (!ch.recv(st).has_value()) ++nullopts;
        ++returned;
      });
    }
    std::this_thread::sleep_for(kSettle);
    EXPECT_EQ(returned.load(), 0);
    EXPECT_TRUE(ch.close());
    for (auto& t : receivers) t.join();
  }
  EXPECT_EQ(nullopts.load(), kReceivers);
}

TEST(ChannelTest, CloseWakesABlockedSenderOnAFullChannel) {
  Channel<int> ch(1);
  EXPECT_TRUE(ch.send(1));
  std::atomic<int> result{-1};
  std::jthread sender(
      [&](std::stop_token st) { result = ch.send(2, st) ? 1 : 0; });
  std::this_thread::sleep_for(kSettle);
  EXPECT_EQ(result.load(), -1) << "sender should still be blocked";
  EXPECT_TRUE(ch.close());
  sender.join();
  EXPECT_EQ(result.load(), 0)
      << "a sender blocked when the channel closes gets false";
  EXPECT_EQ(ch.recv(), 1)
      << "the value buffered before close is still delivered";
  EXPECT_EQ(ch.recv(), std::nullopt)
      << "the blocked sender's value must not be delivered";
}

class ChannelCloseRaceTest : public ::testing::TestWithParam<int> {};

TEST_P(ChannelCloseRaceTest, ExactlyOneCloseReturnsTrue) {
  const int closers = GetParam();
  for (int round = 0; round < 25; ++round) {
    Channel<int> ch(round % 2 == 0 ? 0 : 4);
    std::latch start(closers);
    std::atomic<int> winners{0};
    {
      std::vector<std::jthread> threads;
      for (int i = 0; i < closers; ++i) {
        threads.emplace_back([&] {
          start.arrive_and_wait();
          if (ch.close()) ++winners;
        });
      }
    }
    EXPECT_EQ(winners.load(), 1) << "round " << round;
    EXPECT_TRUE(ch.closed());
  }
}

INSTANTIATE_TEST_SUITE_P(Closers, ChannelCloseRaceTest,
                         ::testing::Values(1, 2, 4, 8));

// ---------------------------------------------------------------------------
// Capacity 0: rendezvous
// ---------------------------------------------------------------------------

TEST(ChannelRendezvousTest, SendDoesNotReturnBeforeAReceiverTookTheValue) {
  Channel<int> ch(0);
  std::atomic<bool> sent{false};
  std::atomic<bool> result{false};
  std::jthread sender([&](std::stop_token st) {
    result = ch.send(42, st);
    sent = true;
  });
  std::this_thread::sleep_for(kSettle);
  EXPECT_FALSE(sent.load()) << "send on capacity 0 returned with no receiver";
  EXPECT_EQ(ch.size(), 0u);
  EXPECT_EQ(ch.recv(), 42);
  sender.join();
  EXPECT_TRUE(sent.load());
  EXPECT_TRUE(result.load());
}

TEST(ChannelRendezvousTest, SenderNeverRunsAheadOfTheReceiver) {
  // After the receiver has taken value i (and before it asks for the next),
  // at most i + 1 sends can have returned: send i + 1 cannot complete until
  // its value is taken. A channel that buffers even one value would let the
  // sender get to i + 2 while the receiver sleeps.
  constexpr int kValues = 20;
  Channel<int> ch(0);
  std::atomic<int> sends_returned{0};
  std::jthread sender([&](std::stop_token st) {
    for (int i = 0; i < kValues; ++i) {
      if (!ch.send(i, st)) return;
      sends_returned = i + 1;
    }
  });
  for (int i = 0; i < kValues; ++i) {
    auto v = ch.recv_for(kDeadline);
    ASSERT_EQ(v, i);
    std::this_thread::sleep_for(2ms);
    EXPECT_LE(sends_returned.load(), i + 1)
        << "sender ran ahead of receiver at value " << i;
  }
  sender.join();
  EXPECT_EQ(sends_returned.load(), kValues);
}

TEST(ChannelRendezvousTest, SizeIsAlwaysZero) {
  Channel<int> ch(0);
  std::jthread sender([&](std::stop_token st) { (void)ch.send(1, st); });
  std::this_thread::sleep_for(kSettle);
  EXPECT_EQ(ch.size(), 0u) << "a blocked sender's value is not buffered";
  EXPECT_EQ(ch.recv(), 1);
  sender.join();
  EXPECT_EQ(ch.size(), 0u);
}

TEST(ChannelRendezvousTest,
     TrySendWithoutAWaitingReceiverFailsAndKeepsTheValue) {
  Channel<std::unique_ptr<int>> ch(0);
  auto v = std::make_unique<int>(5);
  EXPECT_FALSE(ch.try_send(v));
  ASSERT_NE(v, nullptr) << "failed try_send must leave the value intact";
  EXPECT_EQ(*v, 5);
  EXPECT_EQ(ch.try_recv(), std::nullopt);
}

TEST(ChannelRendezvousTest, TrySendSucceedsWithABlockedReceiver) {
  Channel<std::unique_ptr<int>> ch(0);
  std::optional<std::unique_ptr<int>> got;
  std::jthread receiver([&](std::stop_token st) { got = ch.recv(st); });
  auto v = std::make_unique<int>(42);
  const bool ok = eventually([&] {
    if (ch.try_send(v)) return true;
    EXPECT_NE(v, nullptr) << "failed try_send moved from the value";
    return false;
  });
  ASSERT_TRUE(ok)
      << "try_send never succeeded although a receiver was blocked in recv";
  EXPECT_EQ(v, nullptr) << "successful try_send moves the value in";
  receiver.join();
  ASSERT_TRUE(got.has_value());
  ASSERT_NE(*got, nullptr);
  EXPECT_EQ(**got, 42);
}

TEST(ChannelRendezvousTest, TryRecvWithoutAWaitingSenderFails) {
  Channel<int> ch(0);
  EXPECT_EQ(ch.try_recv(), std::nullopt);
  std::vector<int> out;
  EXPECT_EQ(ch.try_recv_many(out, 4), 0u);
  EXPECT_TRUE(out.empty());
}

TEST(ChannelRendezvousTest, TryRecvSucceedsWithABlockedSender) {
  Channel<int> ch(0);
  std::atomic<int> result{-1};
  std::jthread sender(
      [&](std::stop_token st) { result = ch.send(9, st) ? 1 : 0; });
  std::optional<int> got;
  ASSERT_TRUE(eventually([&] { return (got = ch.try_recv()).has_value(); }))
      << "try_recv never succeeded although a sender was blocked in send";
  EXPECT_EQ(got, 9);
  sender.join();
  EXPECT_EQ(result.load(), 1);
}

TEST(ChannelRendezvousTest,
     BlockedSenderGetsFalseOnCloseAndValueIsNotDelivered) {
  Channel<int> ch(0);
  std::atomic<int> result{-1};
  std::jthread sender(
      [&](std::stop_token st) { result = ch.send(7, st) ? 1 : 0; });
  std::this_thread::sleep_for(kSettle);
  EXPECT_EQ(result.load(), -1);
  EXPECT_TRUE(ch.close());
  sender.join();
  EXPECT_EQ(result.load(), 0);
  EXPECT_EQ(ch.try_recv(), std::nullopt);
  EXPECT_EQ(ch.recv(), std::nullopt)
      << "value of a sender blocked at close was delivered";
}

TEST(ChannelRendezvousTest, SendForTimesOutWithoutAReceiverAndKeepsTheValue) {
  Channel<std::string> ch(0);
  std::string v = "payload that must survive";
  Stopwatch sw;
  EXPECT_FALSE(ch.send_for(v, 30ms));
  EXPECT_GE(sw.elapsed(), 30ms);
  EXPECT_EQ(v, "payload that must survive");
  EXPECT_EQ(ch.try_recv(), std::nullopt);
}

TEST(ChannelRendezvousTest, SendForSucceedsWhenAReceiverArrives) {
  Channel<int> ch(0);
  std::optional<int> got;
  std::jthread receiver([&](std::stop_token st) {
    std::this_thread::sleep_for(20ms);
    got = ch.recv(st);
  });
  int v = 3;
  EXPECT_TRUE(ch.send_for(v, kDeadline));
  receiver.join();
  EXPECT_EQ(got, 3);
}

TEST(ChannelRendezvousTest, RecvManyTakesFromASender) {
  Channel<int> ch(0);
  std::jthread sender([&](std::stop_token st) {
    for (int i = 0; i < 3; ++i) EXPECT_TRUE(ch.send(i, st));
    EXPECT_TRUE(ch.close());
  });
  std::vector<int> out;
  while (true) {
    const std::size_t before = out.size();
    const std::size_t n = ch.recv_many(out, 10);
    EXPECT_EQ(out.size(), before + n);
    if (n == 0) break;
  }
  EXPECT_EQ(out, (std::vector<int>{0, 1, 2}));
}

// ---------------------------------------------------------------------------
// FIFO
// ---------------------------------------------------------------------------

class ChannelFifoTest : public ::testing::TestWithParam<std::size_t> {};

TEST_P(ChannelFifoTest, OneProducerOneConsumerKeepsOrder) {
  constexpr int kItems = 2000;
  Channel<int> ch(GetParam());
  std::jthread producer([&](std::stop_token st) {
    for (int i = 0; i < kItems; ++i) ASSERT_TRUE(ch.send(i, st));
    EXPECT_TRUE(ch.close());
  });
  int expected = 0;
  for (int v : ch) {
    ASSERT_EQ(v, expected) << "out of order";
    ++expected;
  }
  EXPECT_EQ(expected, kItems);
}

INSTANTIATE_TEST_SUITE_P(Capacities, ChannelFifoTest,
                         ::testing::Values(std::size_t{0}, std::size_t{1},
                                           std::size_t{7}, std::size_t{1024}));

// ---------------------------------------------------------------------------
// MPMC: no loss, no duplication, per-producer order
// ---------------------------------------------------------------------------

using MpmcParam =
    std::tuple<int, int, std::size_t>;  // producers, consumers, capacity

std::string mpmc_name(const ::testing::TestParamInfo<MpmcParam>& p) {
  return "p" + std::to_string(std::get<0>(p.param)) + "_c" +
         std::to_string(std::get<1>(p.param)) + "_cap" +
         std::to_string(std::get<2>(p.param));
}

class ChannelMpmcTest : public ::testing::TestWithParam<MpmcParam> {};

TEST_P(ChannelMpmcTest, EveryValueExactlyOnceInPerProducerOrder) {
  // Not a structured binding: clang 14 cannot capture one in a lambda.
  const auto param = GetParam();
  const auto producers = std::get<0>(param);
  const auto consumers = std::get<1>(param);
  const auto capacity = std::get<2>(param);
  const int per_producer = (capacity == 0 ? 1000 : 2000) / producers;
  constexpr std::uint64_t kStride = 1'000'000;
  Channel<std::uint64_t> ch(capacity);
  std::vector<std::vector<std::uint64_t>> received(
      static_cast<std::size_t>(consumers));
  std::atomic<int> producers_left{producers};
  std::atomic<int> order_violations{0};
  std::atomic<int> successful_closes{0};
  {
    std::vector<std::jthread> consumer_threads;
    std::vector<std::jthread> producer_threads;
    for (int c = 0; c < consumers; ++c) {
      consumer_threads.emplace_back([&, c](std::stop_token st) {
        std::vector<std::int64_t> last(static_cast<std::size_t>(producers), -1);
        auto& mine = received[static_cast<std::size_t>(c)];
        while (auto v = ch.recv(st)) {
          const auto p = static_cast<std::size_t>(*v / kStride);
          const auto seq = static_cast<std::int64_t>(*v % kStride);
          if (p >= last.size() || seq <= last[p]) ++order_violations;
          if (p < last.size()) last[p] = seq;
          mine.push_back(*v);
        }
      });
    }
    for (int p = 0; p < producers; ++p) {
      producer_threads.emplace_back([&, p](std::stop_token st) {
        for (int s = 0; s < per_producer; ++s) {
          const auto value = static_cast<std::uint64_t>(p) * kStride +
                             static_cast<std::uint64_t>(s);
          if (!ch.send(value, st)) {
            ADD_FAILURE() << "send failed on an open channel";
            return;
          }
        }
        if (--producers_left == 0 && ch.close()) ++successful_closes;
      });
    }
    for (auto& t : producer_threads) t.join();
    for (auto& t : consumer_threads) t.join();
  }
  EXPECT_EQ(successful_closes.load(), 1);
  EXPECT_EQ(order_violations.load(), 0)
      << "a consumer saw one producer's values out of order";
  std::vector<int> seen(static_cast<std::size_t>(producers * per_producer), 0);
  std::size_t total = 0;
  for (const auto& mine : received) {
    for (auto v : mine) {
      const auto index =
          (v / kStride) * static_cast<std::uint64_t>(per_producer) +
          v % kStride;
      ASSERT_LT(index, seen.size());
      ++seen[static_cast<std::size_t>(index)];
      ++total;
    }
  }
  EXPECT_EQ(total, seen.size());
  const auto lost = std::count(seen.begin(), seen.end(), 0);
  const auto duplicated =
      std::count_if(seen.begin(), seen.end(), [](int n) { return n > 1; });
  EXPECT_EQ(lost, 0) << "values lost";
  EXPECT_EQ(duplicated, 0) << "values duplicated";
}

INSTANTIATE_TEST_SUITE_P(
    ProducersConsumersCapacity, ChannelMpmcTest,
    ::testing::Combine(::testing::Values(1, 2, 4, 8),
                       ::testing::Values(1, 2, 4, 8),
                       ::testing::Values(std::size_t{0}, std::size_t{1},
                                         std::size_t{7}, std::size_t{1024})),
    mpmc_name);

// Batched receivers and senders together, still exactly once.
class ChannelBatchMpmcTest : public ::testing::TestWithParam<MpmcParam> {};

TEST_P(ChannelBatchMpmcTest, SendManyRecvManyExactlyOnce) {
  // Not a structured binding: clang 14 cannot capture one in a lambda.
  const auto param = GetParam();
  const auto producers = std::get<0>(param);
  const auto consumers = std::get<1>(param);
  const auto capacity = std::get<2>(param);
  constexpr int kPerProducer = 500;
  constexpr int kBatch = 13;
  Channel<int> ch(capacity);
  std::vector<int> seen(static_cast<std::size_t>(producers * kPerProducer), 0);
  std::mutex seen_mu;
  std::atomic<int> producers_left{producers};
  {
    std::vector<std::jthread> consumer_threads;
    std::vector<std::jthread> producer_threads;
    for (int c = 0; c < consumers; ++c) {
      consumer_threads.emplace_back([&](std::stop_token st) {
        std::vector<int> out;
        while (true) {
          out.clear();
          const std::size_t n = ch.recv_many(out, kBatch, st);
          if (n == 0) break;
          EXPECT_EQ(n, out.size());
          EXPECT_LE(n, std::size_t{kBatch});
          std::lock_guard lock(seen_mu);
          for (int v : out) ++seen[static_cast<std::size_t>(v)];
        }
      });
    }
    for (int p = 0; p < producers; ++p) {
      producer_threads.emplace_back([&, p](std::stop_token st) {
        std::vector<int> values;
        for (int s = 0; s < kPerProducer; ++s) {
          values.push_back(p * kPerProducer + s);
          if (values.size() == kBatch || s + 1 == kPerProducer) {
            EXPECT_EQ(ch.send_many(std::span<int>(values), st), values.size());
            values.clear();
          }
        }
        if (--producers_left == 0) {
          EXPECT_TRUE(ch.close());
        }
      });
    }
    for (auto& t : producer_threads) t.join();
    for (auto& t : consumer_threads) t.join();
  }
  EXPECT_EQ(std::count(seen.begin(), seen.end(), 1),
            static_cast<std::ptrdiff_t>(seen.size()))
      << "some value was lost or duplicated";
}

INSTANTIATE_TEST_SUITE_P(
    ProducersConsumersCapacity, ChannelBatchMpmcTest,
    ::testing::Combine(::testing::Values(1, 4), ::testing::Values(1, 4),
                       ::testing::Values(std::size_t{0}, std::size_t{1},
                                         std::size_t{7}, std::size_t{1024})),
    mpmc_name);

// ---------------------------------------------------------------------------
// Races: timeouts and close racing with hand-offs must neither lose nor
// duplicate a value (a call that returned true delivered its value exactly
// once; one that returned false delivered nothing)
// ---------------------------------------------------------------------------

class ChannelRaceTest : public ::testing::TestWithParam<std::size_t> {};

TEST_P(ChannelRaceTest, TimeoutsRacingWithHandOffsLoseNothing) {
  constexpr int kSenders = 2;
  constexpr int kReceivers = 2;
  constexpr int kPerSender = 300;
  Channel<int> ch(GetParam());
  std::mutex mu;
  std::vector<int> received;
  std::atomic<int> senders_left{kSenders};
  {
    std::vector<std::jthread> threads;
    for (int r = 0; r < kReceivers; ++r) {
      threads.emplace_back([&] {
        std::vector<int> mine;
        while (true) {
          sluice::test::random_sleep_us(20);
          // Short timeouts: many receivers give up right as a sender arrives.
          if (auto v = ch.recv_for(
                  std::chrono::microseconds(r_timeout(mine.size())))) {
            mine.push_back(*v);
          } else if (ch.closed()) {
            while (auto rest = ch.try_recv()) mine.push_back(*rest);
            break;
          }
        }
        std::lock_guard lock(mu);
        received.insert(received.end(), mine.begin(), mine.end());
      });
    }
    for (int w = 0; w < kSenders; ++w) {
      threads.emplace_back([&, w] {
        for (int i = 0; i < kPerSender; ++i) {
          int v = w * kPerSender + i;
          // Retry until delivered, alternating try_send and short send_for.
          for (int attempt = 0;; ++attempt) {
            const bool ok =
                attempt % 2 == 0
                    ? ch.try_send(v)
                    : ch.send_for(v,
                                  std::chrono::microseconds(attempt % 7 * 10));
            if (ok) break;
            ASSERT_EQ(v, w * kPerSender + i)
                << "a failed send changed the value";
          }
        }
        if (--senders_left == 0) {
          EXPECT_TRUE(ch.close());
        }
      });
    }
  }
  std::sort(received.begin(), received.end());
  std::vector<int> expected(kSenders * kPerSender);
  std::iota(expected.begin(), expected.end(), 0);
  EXPECT_EQ(received, expected) << "values lost or duplicated";
}

// Stops the tokens of in-flight calls at random moments.
class Canceller {
 public:
  class Call {
   public:
    explicit Call(Canceller& c) : c_(c) {
      std::lock_guard lock(c_.mu_);
      c_.active_.push_back(&source_);
    }
    ~Call() {
      std::lock_guard lock(c_.mu_);
      c_.active_.erase(
          std::find(c_.active_.begin(), c_.active_.end(), &source_));
    }
    Call(const Call&) = delete;
    Call& operator=(const Call&) = delete;
    std::stop_token token() const { return source_.get_token(); }

   private:
    Canceller& c_;
    std::stop_source source_;
  };

  Canceller()
      : thread_([this](std::stop_token st) {
          std::size_t k = 0;
          while (!st.stop_requested()) {
            sluice::test::random_sleep_us(30);
            std::lock_guard lock(mu_);
            if (!active_.empty()) active_[k++ % active_.size()]->request_stop();
          }
        }) {}

 private:
  std::mutex mu_;
  std::vector<std::stop_source*> active_;
  std::jthread thread_;  // last
};

TEST_P(ChannelRaceTest, StopRacingWithHandOffsLosesNothing) {
  constexpr int kSenders = 2;
  constexpr int kReceivers = 2;
  constexpr int kPerSender = 300;
  Channel<int> ch(GetParam());
  std::mutex mu;
  std::vector<int> received;
  std::atomic<int> senders_left{kSenders};
  {
    Canceller canceller;
    std::vector<std::jthread> threads;
    for (int r = 0; r < kReceivers; ++r) {
      threads.emplace_back([&] {
        std::vector<int> mine;
        while (true) {
          std::optional<int> v;
          {
            Canceller::Call call(canceller);
            v = ch.recv(call.token());
          }
          if (v) {
            mine.push_back(*v);
          } else if (ch.closed()) {
            while (auto rest = ch.try_recv()) mine.push_back(*rest);
            break;
          }
        }
        std::lock_guard lock(mu);
        received.insert(received.end(), mine.begin(), mine.end());
      });
    }
    for (int w = 0; w < kSenders; ++w) {
      threads.emplace_back([&, w] {
        for (int i = 0; i < kPerSender; ++i) {
          while (true) {
            Canceller::Call call(canceller);
            if (ch.send(w * kPerSender + i, call.token())) break;
          }
        }
        if (--senders_left == 0) {
          EXPECT_TRUE(ch.close());
        }
      });
    }
    for (auto& t : threads) t.join();
  }
  std::sort(received.begin(), received.end());
  std::vector<int> expected(kSenders * kPerSender);
  std::iota(expected.begin(), expected.end(), 0);
  EXPECT_EQ(received, expected) << "values lost or duplicated";
}

// A recv that reports "closed and drained" (nullopt without stop or timeout)
// has observed the close, so closed() must be true from then on.
TEST(ChannelCloseVisibilityTest, NulloptFromRecvMeansClosedIsTrue) {
  constexpr int kRounds = 2000;
  std::atomic<int> round{-1};
  std::atomic<Channel<int>*> current{nullptr};
  std::jthread closer([&](std::stop_token st) {
    for (int r = 0; r < kRounds && !st.stop_requested(); ++r) {
      while (round.load() != r) {
        if (st.stop_requested()) return;
      }
      (void)current.load()->close();
      round.store(-2 - r);
    }
  });
  int inconsistent = 0;
  for (int r = 0; r < kRounds; ++r) {
    Channel<int> ch(r % 2 == 0 ? 1 : 0);
    current.store(&ch);
    round.store(r);  // the closer closes while we start receiving
    const auto v = ch.recv();
    if (!v.has_value() && !ch.closed()) ++inconsistent;
    while (round.load() != -2 - r) {
    }
  }
  EXPECT_EQ(inconsistent, 0)
      << "recv() returned nullopt (closed and drained) while closed() "
         "was still false, "
      << inconsistent << " times in " << kRounds;
}

TEST_P(ChannelRaceTest, CloseRacingWithSendsLosesNothing) {
  // Two receivers, three senders sending until the channel closes under
  // them. Every receiver must wake and end once the channel is closed and
  // drained (a watchdog turns a receiver that sleeps forever into a failure),
  // and the values received must be exactly those whose send returned true.
  constexpr int kRounds = 30;
  for (int round = 0; round < kRounds; ++round) {
    Channel<int> ch(GetParam());
    Watchdog wd;
    std::mutex mu;
    std::vector<int> sent;
    std::vector<int> received;
    {
      std::vector<std::jthread> threads;
      for (int r = 0; r < 2; ++r) {
        threads.emplace_back([&] {
          std::vector<int> mine;
          while (auto v = ch.recv(wd.token())) mine.push_back(*v);
          std::lock_guard lock(mu);
          received.insert(received.end(), mine.begin(), mine.end());
        });
      }
      for (int w = 0; w < 3; ++w) {
        threads.emplace_back([&, w] {
          std::vector<int> mine;
          for (int i = 0;; ++i) {
            const int v = w * 1'000'000 + i;
            if (!ch.send(v, wd.token())) break;
            mine.push_back(v);
          }
          std::lock_guard lock(mu);
          sent.insert(sent.end(), mine.begin(), mine.end());
        });
      }
      std::this_thread::sleep_for(
          std::chrono::microseconds(100 + 97 * (round % 10)));
      EXPECT_TRUE(ch.close());
    }
    ASSERT_FALSE(wd.fired())
        << "round " << round << ": a receiver (or sender) was still blocked "
        << kDeadline.count() << " ms after close(); closed()=" << ch.closed()
        << " size()=" << ch.size();
    std::sort(sent.begin(), sent.end());
    std::sort(received.begin(), received.end());
    EXPECT_EQ(received.size(), sent.size()) << "round " << round;
    EXPECT_TRUE(received == sent)
        << "round " << round
        << ": the values received differ from those whose send returned true";
  }
}

INSTANTIATE_TEST_SUITE_P(Capacities, ChannelRaceTest,
                         ::testing::Values(std::size_t{0}, std::size_t{1},
                                           std::size_t{7}, std::size_t{1024}));

// ---------------------------------------------------------------------------
// try_send / send_for leave the value intact on failure
// ---------------------------------------------------------------------------

TEST(ChannelTrySendTest, FailureOnFullLeavesUniquePtrIntact) {
  Channel<std::unique_ptr<int>> ch(1);
  EXPECT_TRUE(ch.send(std::make_unique<int>(1)));
  auto v = std::make_unique<int>(2);
  int* raw = v.get();
  EXPECT_FALSE(ch.try_send(v));
  EXPECT_EQ(v.get(), raw);
  EXPECT_EQ(*v, 2);
}

TEST(ChannelTrySendTest, FailureOnFullLeavesStringIntact) {
  Channel<std::string> ch(1);
  EXPECT_TRUE(ch.send("first"));
  std::string v(100, 'x');  // long: no small-string buffer
  EXPECT_FALSE(ch.try_send(v));
  EXPECT_EQ(v, std::string(100, 'x'));
}

TEST(ChannelTrySendTest, FailureOnClosedLeavesValueIntact) {
  Channel<std::unique_ptr<int>> ch(4);
  EXPECT_TRUE(ch.close());
  auto v = std::make_unique<int>(3);
  EXPECT_FALSE(ch.try_send(v));
  ASSERT_NE(v, nullptr);
  EXPECT_EQ(*v, 3);
}

TEST(ChannelTrySendTest, SuccessMovesTheValueIn) {
  Channel<std::unique_ptr<int>> ch(1);
  auto v = std::make_unique<int>(4);
  EXPECT_TRUE(ch.try_send(v));
  EXPECT_EQ(v, nullptr);
  auto got = ch.try_recv();
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(**got, 4);
}

TEST(ChannelTrySendTest, SendForTimeoutLeavesValueIntact) {
  Channel<std::unique_ptr<int>> ch(1);
  EXPECT_TRUE(ch.send(std::make_unique<int>(1)));
  auto v = std::make_unique<int>(2);
  EXPECT_FALSE(ch.send_for(v, 20ms));
  ASSERT_NE(v, nullptr);
  EXPECT_EQ(*v, 2);
}

TEST(ChannelTrySendTest, SendForOnClosedLeavesValueIntact) {
  Channel<std::string> ch(1);
  EXPECT_TRUE(ch.close());
  std::string v(64, 'y');
  EXPECT_FALSE(ch.send_for(v, 20ms));
  EXPECT_EQ(v, std::string(64, 'y'));
}

// ---------------------------------------------------------------------------
// Timeouts (lower bounds and generous upper bounds only)
// ---------------------------------------------------------------------------

TEST(ChannelTimeoutTest, RecvForTimesOutOnEmpty) {
  Channel<int> ch(4);
  Stopwatch sw;
  EXPECT_EQ(ch.recv_for(50ms), std::nullopt);
  EXPECT_GE(sw.elapsed(), 50ms);
  EXPECT_LT(sw.elapsed(), 5s);
  EXPECT_FALSE(ch.closed());
}

TEST(ChannelTimeoutTest, RecvForTimesOutOnRendezvous) {
  Channel<int> ch(0);
  Stopwatch sw;
  EXPECT_EQ(ch.recv_for(30ms), std::nullopt);
  EXPECT_GE(sw.elapsed(), 30ms);
  EXPECT_LT(sw.elapsed(), 5s);
}

TEST(ChannelTimeoutTest, RecvForReturnsAValueThatArrivesInTime) {
  Channel<int> ch(4);
  std::jthread sender([&](std::stop_token st) {
    std::this_thread::sleep_for(20ms);
    EXPECT_TRUE(ch.send(8, st));
  });
  EXPECT_EQ(ch.recv_for(kDeadline), 8);
}

TEST(ChannelTimeoutTest, RecvForZeroTimeoutActsLikeTryRecv) {
  Channel<int> ch(4);
  EXPECT_EQ(ch.recv_for(0ms), std::nullopt);
  EXPECT_TRUE(ch.send(1));
  EXPECT_EQ(ch.recv_for(0ms), 1);
}

TEST(ChannelTimeoutTest, SendForTimesOutOnFull) {
  Channel<int> ch(1);
  EXPECT_TRUE(ch.send(1));
  int v = 2;
  Stopwatch sw;
  EXPECT_FALSE(ch.send_for(v, 50ms));
  EXPECT_GE(sw.elapsed(), 50ms);
  EXPECT_LT(sw.elapsed(), 5s);
  EXPECT_EQ(ch.size(), 1u);
  EXPECT_EQ(ch.recv(), 1);
  EXPECT_EQ(ch.try_recv(), std::nullopt) << "timed-out value was delivered";
}

TEST(ChannelTimeoutTest, SendForSucceedsWhenSpaceFrees) {
  Channel<int> ch(1);
  EXPECT_TRUE(ch.send(1));
  std::jthread receiver([&](std::stop_token st) {
    std::this_thread::sleep_for(20ms);
    EXPECT_EQ(ch.recv(st), 1);
  });
  int v = 2;
  EXPECT_TRUE(ch.send_for(v, kDeadline));
  receiver.join();
  EXPECT_EQ(ch.recv(), 2);
}

TEST(ChannelTimeoutTest, BlockedSendForFailsWhenClosed) {
  Channel<int> ch(1);
  EXPECT_TRUE(ch.send(1));
  std::atomic<int> result{-1};
  std::jthread sender([&] {
    int v = 2;
    result = ch.send_for(v, kDeadline) ? 1 : 0;
  });
  std::this_thread::sleep_for(kSettle);
  EXPECT_TRUE(ch.close());
  sender.join();
  EXPECT_EQ(result.load(), 0);
}

TEST(ChannelTimeoutTest, BlockedRecvForReturnsNulloptWhenClosed) {
  Channel<int> ch(1);
  Stopwatch sw;
  std::jthread closer([&] {
    std::this_thread::sleep_for(20ms);
    EXPECT_TRUE(ch.close());
  });
  EXPECT_EQ(ch.recv_for(kDeadline), std::nullopt);
  EXPECT_LT(sw.elapsed(), 5s) << "recv_for did not wake on close";
}

// ---------------------------------------------------------------------------
// Stop tokens
// ---------------------------------------------------------------------------

TEST(ChannelStopTest, StopCancelsASendBlockedOnAFullChannel) {
  Channel<int> ch(1);
  EXPECT_TRUE(ch.send(1));
  std::stop_source ss;
  std::atomic<int> result{-1};
  std::jthread sender([&] { result = ch.send(2, ss.get_token()) ? 1 : 0; });
  std::this_thread::sleep_for(kSettle);
  EXPECT_EQ(result.load(), -1);
  ss.request_stop();
  sender.join();
  EXPECT_EQ(result.load(), 0);
  EXPECT_FALSE(ch.closed()) << "stop must not close the channel";
  EXPECT_EQ(ch.size(), 1u);
  EXPECT_EQ(ch.recv(), 1);
  EXPECT_EQ(ch.try_recv(), std::nullopt) << "the cancelled value was delivered";
}

TEST(ChannelStopTest, StopCancelsASendBlockedOnRendezvous) {
  Channel<int> ch(0);
  std::stop_source ss;
  std::atomic<int> result{-1};
  std::jthread sender([&] { result = ch.send(2, ss.get_token()) ? 1 : 0; });
  std::this_thread::sleep_for(kSettle);
  EXPECT_EQ(result.load(), -1);
  ss.request_stop();
  sender.join();
  EXPECT_EQ(result.load(), 0);
  EXPECT_EQ(ch.try_recv(), std::nullopt);
  EXPECT_EQ(ch.recv_for(20ms), std::nullopt)
      << "the cancelled value was delivered";
}

TEST(ChannelStopTest, StopCancelsABlockedRecvAndTheChannelStaysUsable) {
  Channel<int> ch(2);
  std::stop_source ss;
  std::atomic<int> state{-1};  // -1 blocked, 0 nullopt, 1 value
  std::jthread receiver(
      [&] { state = ch.recv(ss.get_token()).has_value() ? 1 : 0; });
  std::this_thread::sleep_for(kSettle);
  EXPECT_EQ(state.load(), -1);
  ss.request_stop();
  receiver.join();
  EXPECT_EQ(state.load(), 0);
  EXPECT_FALSE(ch.closed());
  EXPECT_TRUE(ch.send(3));
  EXPECT_EQ(ch.recv(), 3);
}

TEST(ChannelStopTest, StopCancelsABlockedRecvOnRendezvous) {
  Channel<int> ch(0);
  std::stop_source ss;
  std::atomic<int> state{-1};
  std::jthread receiver(
      [&] { state = ch.recv(ss.get_token()).has_value() ? 1 : 0; });
  std::this_thread::sleep_for(kSettle);
  ss.request_stop();
  receiver.join();
  EXPECT_EQ(state.load(), 0);
  // No receiver is left waiting: try_send must fail now.
  int v = 1;
  EXPECT_FALSE(ch.try_send(v));
}

TEST(ChannelStopTest, StopCancelsBlockedTimedCalls) {
  Channel<int> ch(1);
  EXPECT_TRUE(ch.send(1));
  std::stop_source ss;
  Stopwatch sw;
  std::atomic<int> send_result{-1};
  std::jthread sender([&] {
    int v = 2;
    send_result = ch.send_for(v, 30s, ss.get_token()) ? 1 : 0;
  });
  Channel<int> empty(1);
  std::atomic<int> recv_result{-1};
  std::jthread receiver([&] {
    recv_result = empty.recv_for(30s, ss.get_token()).has_value() ? 1 : 0;
  });
  std::this_thread::sleep_for(kSettle);
  ss.request_stop();
  sender.join();
  receiver.join();
  EXPECT_EQ(send_result.load(), 0);
  EXPECT_EQ(recv_result.load(), 0);
  EXPECT_LT(sw.elapsed(), 10s) << "stop did not wake timed calls";
  EXPECT_EQ(ch.size(), 1u);
}

TEST(ChannelStopTest, StopCancelsABlockedRecvMany) {
  Channel<int> ch(4);
  std::stop_source ss;
  std::vector<int> out{99};
  std::atomic<int> result{-1};
  std::jthread receiver(
      [&] { result = static_cast<int>(ch.recv_many(out, 4, ss.get_token())); });
  std::this_thread::sleep_for(kSettle);
  ss.request_stop();
  receiver.join();
  EXPECT_EQ(result.load(), 0);
  EXPECT_EQ(out, std::vector<int>{99});
}

TEST(ChannelStopTest, AlreadyStoppedSendReturnsAtOnceAndChangesNothing) {
  Channel<int> ch(2);
  EXPECT_FALSE(ch.send(1, stopped_token()));
  EXPECT_EQ(ch.size(), 0u);
  EXPECT_EQ(ch.try_recv(), std::nullopt);
  int v = 2;
  Stopwatch sw;
  EXPECT_FALSE(ch.send_for(v, 10s, stopped_token()));
  EXPECT_LT(sw.elapsed(), 5s);
  EXPECT_EQ(v, 2);
  EXPECT_EQ(ch.size(), 0u);
  EXPECT_FALSE(ch.closed());
}

TEST(ChannelStopTest, AlreadyStoppedSendOnRendezvousDoesNotHandOver) {
  Channel<int> ch(0);
  std::optional<int> got{-1};
  std::jthread receiver([&] { got = ch.recv_for(300ms); });
  std::this_thread::sleep_for(kSettle);  // let the receiver wait
  EXPECT_FALSE(ch.send(5, stopped_token()));
  receiver.join();
  EXPECT_EQ(got, std::nullopt)
      << "a send with a stopped token handed its value over";
}

TEST(ChannelStopTest, AlreadyStoppedRecvReturnsAtOnceAndConsumesNothing) {
  Channel<int> ch(4);
  EXPECT_TRUE(ch.send(1));
  EXPECT_TRUE(ch.send(2));
  EXPECT_EQ(ch.recv(stopped_token()), std::nullopt);
  EXPECT_EQ(ch.size(), 2u);
  Stopwatch sw;
  EXPECT_EQ(ch.recv_for(10s, stopped_token()), std::nullopt);
  EXPECT_LT(sw.elapsed(), 5s);
  EXPECT_EQ(ch.size(), 2u);
  EXPECT_EQ(ch.try_recv(), 1);
  EXPECT_EQ(ch.try_recv(), 2);
}

TEST(ChannelStopTest, AlreadyStoppedRecvManyConsumesNothing) {
  Channel<int> ch(4);
  EXPECT_TRUE(ch.send(1));
  EXPECT_TRUE(ch.send(2));
  std::vector<int> out{7};
  EXPECT_EQ(ch.recv_many(out, 4, stopped_token()), 0u);
  EXPECT_EQ(out, std::vector<int>{7});
  EXPECT_EQ(ch.size(), 2u);
  EXPECT_EQ(ch.try_recv(), 1);
  EXPECT_EQ(ch.try_recv(), 2);
}

TEST(ChannelStopTest,
     AlreadyStoppedRecvManyOnRendezvousDoesNotTakeFromASender) {
  Channel<int> ch(0);
  std::atomic<int> result{-1};
  std::jthread sender([&] {
    int v = 6;
    result = ch.send_for(v, 300ms) ? 1 : 0;
  });
  std::this_thread::sleep_for(kSettle);
  std::vector<int> out;
  EXPECT_EQ(ch.recv_many(out, 4, stopped_token()), 0u);
  EXPECT_TRUE(out.empty());
  sender.join();
  EXPECT_EQ(result.load(), 0)
      << "a recv_many with a stopped token took the sender's value";
}

TEST(ChannelStopTest, AlreadyStoppedSendManyOnRendezvousDoesNotHandOver) {
  Channel<int> ch(0);
  std::optional<int> got{-1};
  std::jthread receiver([&] { got = ch.recv_for(300ms); });
  std::this_thread::sleep_for(kSettle);
  std::vector<int> values{5};
  EXPECT_EQ(ch.send_many(std::span(values), stopped_token()), 0u);
  receiver.join();
  EXPECT_EQ(got, std::nullopt)
      << "a send_many with a stopped token handed its value over";
}

TEST(ChannelStopTest, AlreadyStoppedRecvOnEmptyReturnsAtOnce) {
  Channel<int> ch(4);
  Watchdog
      wd;  // would be needed only if recv ignored the stopped token and blocked
  EXPECT_EQ(ch.recv(stopped_token()), std::nullopt);
  EXPECT_FALSE(wd.fired());
}

TEST(ChannelStopTest, AlreadyStoppedRecvOnRendezvousDoesNotTakeFromASender) {
  Channel<int> ch(0);
  std::atomic<int> result{-1};
  std::jthread sender([&] {
    int v = 6;
    result = ch.send_for(v, 300ms) ? 1 : 0;
  });
  std::this_thread::sleep_for(kSettle);
  EXPECT_EQ(ch.recv(stopped_token()), std::nullopt);
  sender.join();
  EXPECT_EQ(result.load(), 0)
      << "a recv with a stopped token took the sender's value";
}

TEST(ChannelStopTest, AlreadyStoppedSendManyChangesNothing) {
  Channel<std::unique_ptr<int>> ch(4);
  std::vector<std::unique_ptr<int>> values;
  values.push_back(std::make_unique<int>(1));
  values.push_back(std::make_unique<int>(2));
  EXPECT_EQ(ch.send_many(std::span(values), stopped_token()), 0u);
  ASSERT_NE(values[0], nullptr);
  ASSERT_NE(values[1], nullptr);
  EXPECT_EQ(ch.size(), 0u);
}

// ---------------------------------------------------------------------------
// recv_many / try_recv_many / send_many
// ---------------------------------------------------------------------------

TEST(ChannelBatchTest, RecvManyTakesUpToMaxAndAppends) {
  Channel<int> ch(8);
  for (int i = 0; i < 5; ++i) EXPECT_TRUE(ch.send(i));
  std::vector<int> out{-1};
  EXPECT_EQ(ch.recv_many(out, 3), 3u);
  EXPECT_EQ(out, (std::vector<int>{-1, 0, 1, 2}));
  EXPECT_EQ(ch.size(), 2u);
  EXPECT_EQ(ch.recv_many(out, 10), 2u)
      << "takes what is ready without waiting for more";
  EXPECT_EQ(out, (std::vector<int>{-1, 0, 1, 2, 3, 4}));
}

TEST(ChannelBatchTest, RecvManyBlocksForTheFirstValue) {
  Channel<int> ch(4);
  std::jthread sender([&](std::stop_token st) {
    std::this_thread::sleep_for(kSettle);
    EXPECT_TRUE(ch.send(9, st));
  });
  std::vector<int> out;
  Watchdog wd;
  EXPECT_EQ(ch.recv_many(out, 4, wd.token()), 1u);
  EXPECT_EQ(out, std::vector<int>{9});
}

TEST(ChannelBatchTest, RecvManyWithMaxZeroReturnsZeroWithoutBlocking) {
  Channel<int> ch(4);
  std::vector<int> out;
  Watchdog wd;
  EXPECT_EQ(ch.recv_many(out, 0, wd.token()), 0u);
  EXPECT_FALSE(wd.fired()) << "recv_many(max = 0) blocked";
  EXPECT_TRUE(ch.send(1));
  EXPECT_EQ(ch.recv_many(out, 0), 0u);
  EXPECT_TRUE(out.empty());
  EXPECT_EQ(ch.size(), 1u);
}

TEST(ChannelBatchTest, RecvManyDrainsAClosedChannelThenReturnsZero) {
  Channel<int> ch(8);
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(ch.send(i));
  EXPECT_TRUE(ch.close());
  std::vector<int> out;
  EXPECT_EQ(ch.recv_many(out, 2), 2u);
  EXPECT_EQ(ch.recv_many(out, 2), 1u);
  Watchdog wd;
  EXPECT_EQ(ch.recv_many(out, 2, wd.token()), 0u);
  EXPECT_FALSE(wd.fired());
  EXPECT_EQ(out, (std::vector<int>{0, 1, 2}));
}

TEST(ChannelBatchTest, RecvManyWakesOnClose) {
  Channel<int> ch(4);
  std::jthread closer([&] {
    std::this_thread::sleep_for(kSettle);
    EXPECT_TRUE(ch.close());
  });
  std::vector<int> out;
  Watchdog wd;
  EXPECT_EQ(ch.recv_many(out, 4, wd.token()), 0u);
  EXPECT_FALSE(wd.fired()) << "recv_many did not wake on close";
}

TEST(ChannelBatchTest, TryRecvManyNeverBlocks) {
  Channel<int> ch(8);
  std::vector<int> out;
  EXPECT_EQ(ch.try_recv_many(out, 4), 0u);
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(ch.send(i));
  EXPECT_EQ(ch.try_recv_many(out, 0), 0u);
  EXPECT_EQ(ch.try_recv_many(out, 2), 2u);
  EXPECT_EQ(ch.try_recv_many(out, 5), 1u);
  EXPECT_EQ(ch.try_recv_many(out, 5), 0u);
  EXPECT_EQ(out, (std::vector<int>{0, 1, 2}));
  EXPECT_TRUE(ch.close());
  EXPECT_EQ(ch.try_recv_many(out, 5), 0u);
}

TEST(ChannelBatchTest, SendManySendsAllInOrderAndMovesThem) {
  Channel<std::unique_ptr<int>> ch(4);
  std::vector<std::unique_ptr<int>> values;
  for (int i = 0; i < 3; ++i) values.push_back(std::make_unique<int>(i));
  EXPECT_EQ(ch.send_many(std::span(values)), 3u);
  for (const auto& v : values) EXPECT_EQ(v, nullptr);
  EXPECT_EQ(ch.size(), 3u);
  for (int i = 0; i < 3; ++i) {
    auto got = ch.recv();
    ASSERT_TRUE(got.has_value());
    EXPECT_EQ(**got, i);
  }
}

TEST(ChannelBatchTest, SendManyBlocksAsNeeded) {
  constexpr int kItems = 200;
  Channel<int> ch(2);
  std::vector<int> got;
  std::jthread receiver([&](std::stop_token st) {
    while (auto v = ch.recv(st)) got.push_back(*v);
  });
  std::vector<int> values(kItems);
  std::iota(values.begin(), values.end(), 0);
  EXPECT_EQ(ch.send_many(std::span(values)), std::size_t{kItems});
  EXPECT_TRUE(ch.close());
  receiver.join();
  EXPECT_EQ(got, values);
}

TEST(ChannelBatchTest, SendManyOnRendezvous) {
  Channel<int> ch(0);
  std::vector<int> got;
  std::jthread receiver([&](std::stop_token st) {
    while (auto v = ch.recv(st)) got.push_back(*v);
  });
  std::vector<int> values{5, 6, 7};
  EXPECT_EQ(ch.send_many(std::span(values)), 3u);
  EXPECT_TRUE(ch.close());
  receiver.join();
  EXPECT_EQ(got, (std::vector<int>{5, 6, 7}));
}

TEST(ChannelBatchTest, SendManyOnClosedSendsNothingAndKeepsValues) {
  Channel<std::unique_ptr<int>> ch(4);
  EXPECT_TRUE(ch.close());
  std::vector<std::unique_ptr<int>> values;
  values.push_back(std::make_unique<int>(1));
  EXPECT_EQ(ch.send_many(std::span(values)), 0u);
  ASSERT_NE(values[0], nullptr);
  EXPECT_EQ(*values[0], 1);
}

TEST(ChannelBatchTest, SendManyStoppedPartwayReportsThePrefix) {
  Channel<std::unique_ptr<int>> ch(2);
  std::vector<std::unique_ptr<int>> values;
  for (int i = 0; i < 5; ++i) values.push_back(std::make_unique<int>(i));
  std::stop_source ss;
  std::atomic<int> sent{-1};
  std::jthread sender([&] {
    sent = static_cast<int>(ch.send_many(std::span(values), ss.get_token()));
  });
  ASSERT_TRUE(eventually([&] { return ch.size() == 2; }));
  std::this_thread::sleep_for(kSettle);
  EXPECT_EQ(sent.load(), -1) << "send_many returned with the channel full";
  ss.request_stop();
  sender.join();
  EXPECT_EQ(sent.load(), 2);
  EXPECT_EQ(values[0], nullptr);
  EXPECT_EQ(values[1], nullptr);
  for (std::size_t i = 2; i < values.size(); ++i) {
    ASSERT_NE(values[i], nullptr) << "unsent value " << i << " was moved from";
    EXPECT_EQ(*values[i], static_cast<int>(i));
  }
  EXPECT_EQ(ch.size(), 2u);
}

TEST(ChannelBatchTest, SendManyClosedPartwayReportsThePrefix) {
  Channel<int> ch(2);
  std::vector<int> values{0, 1, 2, 3, 4};
  std::atomic<int> sent{-1};
  std::jthread sender(
      [&] { sent = static_cast<int>(ch.send_many(std::span(values))); });
  ASSERT_TRUE(eventually([&] { return ch.size() == 2; }));
  std::this_thread::sleep_for(kSettle);
  EXPECT_TRUE(ch.close());
  sender.join();
  EXPECT_EQ(sent.load(), 2);
  EXPECT_EQ(ch.recv(), 0);
  EXPECT_EQ(ch.recv(), 1);
  EXPECT_EQ(ch.recv(), std::nullopt);
}

// ---------------------------------------------------------------------------
// range-for
// ---------------------------------------------------------------------------

TEST(ChannelRangeTest, RangeForDrainsUntilClosed) {
  Channel<int> ch(4);
  std::jthread producer([&](std::stop_token st) {
    for (int i = 0; i < 100; ++i) EXPECT_TRUE(ch.send(i, st));
    EXPECT_TRUE(ch.close());
  });
  std::vector<int> got;
  for (int v : ch) got.push_back(v);
  std::vector<int> expected(100);
  std::iota(expected.begin(), expected.end(), 0);
  EXPECT_EQ(got, expected);
}

TEST(ChannelRangeTest, RangeForOverClosedWithItems) {
  Channel<std::string> ch(4);
  EXPECT_TRUE(ch.send("a"));
  EXPECT_TRUE(ch.send("b"));
  EXPECT_TRUE(ch.close());
  std::vector<std::string> got;
  for (std::string v : ch) got.push_back(v);
  EXPECT_EQ(got, (std::vector<std::string>{"a", "b"}));
}

TEST(ChannelRangeTest, RangeForOverClosedAndEmptyDoesNothing) {
  Channel<int> ch(0);
  EXPECT_TRUE(ch.close());
  int iterations = 0;
  for (int v : ch) {
    (void)v;
    ++iterations;
  }
  EXPECT_EQ(iterations, 0);
  EXPECT_TRUE(ch.begin() == ch.end());
}

TEST(ChannelRangeTest, RangeForMoveOnly) {
  Channel<std::unique_ptr<int>> ch(0);
  std::jthread producer([&](std::stop_token st) {
    for (int i = 0; i < 10; ++i)
      EXPECT_TRUE(ch.send(std::make_unique<int>(i), st));
    EXPECT_TRUE(ch.close());
  });
  int expected = 0;
  for (std::unique_ptr<int> v : ch) {
    ASSERT_NE(v, nullptr);
    EXPECT_EQ(*v, expected++);
  }
  EXPECT_EQ(expected, 10);
}

TEST(ChannelRangeTest, BreakingOutOfRangeForLeavesTheRest) {
  Channel<int> ch(8);
  for (int i = 0; i < 5; ++i) EXPECT_TRUE(ch.send(i));
  EXPECT_TRUE(ch.close());
  for (int v : ch) {
    if (v == 1) break;
  }
  EXPECT_EQ(ch.recv(), 2) << "range-for must not take values it did not yield";
}

// ---------------------------------------------------------------------------
// Move-only and unusual types
// ---------------------------------------------------------------------------

class ChannelMoveOnlyTest : public ::testing::TestWithParam<std::size_t> {};

TEST_P(ChannelMoveOnlyTest, UniquePtrAcrossThreads) {
  Channel<std::unique_ptr<int>> ch(GetParam());
  std::jthread producer([&](std::stop_token st) {
    for (int i = 0; i < 200; ++i)
      EXPECT_TRUE(ch.send(std::make_unique<int>(i), st));
    EXPECT_TRUE(ch.close());
  });
  int expected = 0;
  while (auto v = ch.recv()) {
    ASSERT_NE(*v, nullptr);
    EXPECT_EQ(**v, expected++);
  }
  EXPECT_EQ(expected, 200);
}

TEST_P(ChannelMoveOnlyTest, NonDefaultConstructibleType) {
  Channel<MoveOnly> ch(GetParam());
  std::jthread producer([&](std::stop_token st) {
    for (int i = 0; i < 50; ++i) EXPECT_TRUE(ch.send(MoveOnly(i), st));
    MoveOnly last(50);
    if (GetParam() > 0) {
      EXPECT_TRUE(ch.send_for(last, kDeadline, st));
    } else {
      EXPECT_TRUE(ch.send(std::move(last), st));
    }
    EXPECT_TRUE(ch.close());
  });
  int expected = 0;
  while (auto v = ch.recv()) EXPECT_EQ(v->value(), expected++);
  EXPECT_EQ(expected, 51);
}

INSTANTIATE_TEST_SUITE_P(Capacities, ChannelMoveOnlyTest,
                         ::testing::Values(std::size_t{0}, std::size_t{1},
                                           std::size_t{16}));

// ---------------------------------------------------------------------------
// Happens-before (checked by TSan: plain, non-atomic writes before send are
// read after recv)
// ---------------------------------------------------------------------------

struct Payload {
  int a = 0;
  std::vector<int> b;
};

class ChannelHappensBeforeTest : public ::testing::TestWithParam<std::size_t> {
};

TEST_P(ChannelHappensBeforeTest, WritesBeforeSendAreVisibleAfterRecv) {
  constexpr int kItems = 200;
  std::vector<Payload> storage(kItems);
  Channel<Payload*> ch(GetParam());
  std::jthread producer([&](std::stop_token st) {
    for (int i = 0; i < kItems; ++i) {
      auto& p = storage[static_cast<std::size_t>(i)];
      p.a = i;
      p.b.assign(3, i);
      EXPECT_TRUE(ch.send(&p, st));
    }
    EXPECT_TRUE(ch.close());
  });
  int n = 0;
  for (Payload* p : ch) {
    EXPECT_EQ(p->a, n);
    EXPECT_EQ(p->b, std::vector<int>(3, n));
    ++n;
  }
  EXPECT_EQ(n, kItems);
}

INSTANTIATE_TEST_SUITE_P(Capacities, ChannelHappensBeforeTest,
                         ::testing::Values(std::size_t{0}, std::size_t{4}));

}  // namespace
