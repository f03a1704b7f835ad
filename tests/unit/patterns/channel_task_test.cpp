// Channel<T> used by tasks (async_send / async_recv) and by threads and
// tasks together, on runtimes of 1, 2 and 4 threads.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdint>
#include <mutex>
#include <optional>
#include <set>
#include <stop_token>
#include <thread>
#include <vector>

#include "sluice/patterns/channel.hpp"
#include "sluice/patterns/runtime.hpp"
#include "test_util.hpp"

namespace sluice {
namespace {

using namespace std::chrono_literals;

class ChannelTaskTest : public test::ThreadCountTest {};

INSTANTIATE_TEST_SUITE_P(Threads, ChannelTaskTest, test::ThreadCounts(),
                         test::ThreadCountName());

constexpr std::int64_t kItems = 20'000;
constexpr std::int64_t kSum = kItems * (kItems - 1) / 2;

Task<> send_range(Channel<std::int64_t>& ch, std::int64_t from,
                  std::int64_t to) {
  for (std::int64_t i = from; i < to; ++i) {
    const bool sent = co_await ch.async_send(i);
    EXPECT_TRUE(sent);
  }
}

Task<> sum_until_closed(Channel<std::int64_t>& ch,
                        std::atomic<std::int64_t>& sum) {
  while (auto v = co_await ch.async_recv()) sum.fetch_add(*v);
}

TEST_P(ChannelTaskTest, TasksHandOffOnEveryCapacity) {
  for (std::size_t capacity : {0, 1, 64}) {
    Channel<std::int64_t> ch(capacity);
    std::atomic<std::int64_t> sum{0};
    Runtime rt(threads());
    rt.spawn([&]() -> Task<> {
      co_await send_range(ch, 0, kItems);
      ch.close();
    });
    rt.spawn(sum_until_closed, std::ref(ch), std::ref(sum));
    rt.wait();
    EXPECT_EQ(sum.load(), kSum) << "capacity " << capacity;
  }
}

TEST_P(ChannelTaskTest, ThreadsAndTasksMeetOnOneChannel) {
  // Two thread senders and two task senders; two thread receivers and two
  // task receivers: every value arrives exactly once.
  for (std::size_t capacity : {0, 4}) {
    Channel<std::int64_t> ch(capacity);
    std::atomic<std::int64_t> sum{0};
    std::atomic<int> senders_left{4};
    auto sender_done = [&] {
      if (senders_left.fetch_sub(1) == 1) ch.close();
    };
    const std::int64_t q = kItems / 4;
    {
      Runtime rt(threads());
      std::vector<std::jthread> thread_side;
      for (int k = 0; k < 2; ++k) {
        thread_side.emplace_back([&, k] {
          for (std::int64_t i = k * q; i < (k + 1) * q; ++i) ch.send(i);
          sender_done();
        });
        thread_side.emplace_back([&] {
          while (auto v = ch.recv()) sum.fetch_add(*v);
        });
      }
      for (int k = 2; k < 4; ++k) {
        rt.spawn([&, k]() -> Task<> {
          co_await send_range(ch, k * q, (k + 1) * q);
          sender_done();
        });
        rt.spawn(sum_until_closed, std::ref(ch), std::ref(sum));
      }
      rt.wait();
    }
    EXPECT_EQ(sum.load(), kSum) << "capacity " << capacity;
  }
}

TEST_P(ChannelTaskTest, EveryBlockedSenderIsVisibleToTryRecv) {
  // Capacity 0, three blocked threads and three suspended tasks: six
  // try_recv calls in a row all succeed, as in Go (every blocked sender is
  // in the channel's queue).
  Channel<int> ch(0);
  Runtime rt(threads());
  std::vector<std::jthread> senders;
  for (int i = 0; i < 3; ++i) {
    senders.emplace_back([&ch, i] { EXPECT_TRUE(ch.send(i)); });
    rt.spawn([&ch, i]() -> Task<> {
      const bool sent = co_await ch.async_send(10 + i);
      EXPECT_TRUE(sent);
    });
  }
  std::this_thread::sleep_for(10 * test::kSettle);  // let all six block
  std::multiset<int> got;
  for (int i = 0; i < 6; ++i) {
    auto v = ch.try_recv();
    ASSERT_TRUE(v.has_value()) << "try_recv #" << i;
    got.insert(*v);
  }
  EXPECT_EQ(got, (std::multiset<int>{0, 1, 2, 10, 11, 12}));
  EXPECT_FALSE(ch.try_recv().has_value());
}

TEST_P(ChannelTaskTest, EveryBlockedReceiverIsVisibleToTrySend) {
  Channel<int> ch(0);
  std::atomic<int> sum{0};
  Runtime rt(threads());
  std::vector<std::jthread> receivers;
  for (int i = 0; i < 3; ++i) {
    receivers.emplace_back([&] { sum.fetch_add(ch.recv().value_or(-1000)); });
    rt.spawn([&]() -> Task<> {
      auto v = co_await ch.async_recv();
      sum.fetch_add(v.value_or(-1000));
    });
  }
  std::this_thread::sleep_for(10 * test::kSettle);
  for (int i = 1; i <= 6; ++i) {
    int v = i;
    ASSERT_TRUE(ch.try_send(v)) << "try_send #" << i;
  }
  int extra = 7;
  EXPECT_FALSE(ch.try_send(extra));
  EXPECT_EQ(extra, 7);  // untouched on failure
  rt.wait();
  receivers.clear();
  EXPECT_EQ(sum.load(), 21);
}

TEST_P(ChannelTaskTest, AThreadsSendSchedulesTheTaskInsteadOfRunningIt) {
  Channel<int> ch(0);
  std::thread::id resumed_on;
  Runtime rt(threads());
  rt.spawn([&]() -> Task<> {
    co_await ch.async_recv();
    resumed_on = std::this_thread::get_id();
  });
  std::this_thread::sleep_for(test::kSettle);
  EXPECT_TRUE(ch.send(1));
  rt.wait();
  EXPECT_NE(resumed_on, std::this_thread::get_id());
}

TEST_P(ChannelTaskTest, CloseWakesSuspendedSendersAndReceivers) {
  for (std::size_t capacity : {0, 1}) {
    Channel<int> full(capacity);
    Channel<int> empty(capacity);
    if (capacity == 1) full.send(0);
    std::atomic<int> false_sends{0};
    std::atomic<int> null_recvs{0};
    Runtime rt(threads());
    for (int i = 0; i < 3; ++i) {
      rt.spawn([&]() -> Task<> {
        const bool sent = co_await full.async_send(1);
        if (!sent) false_sends.fetch_add(1);
      });
      rt.spawn([&]() -> Task<> {
        const std::optional<int> v = co_await empty.async_recv();
        if (!v) null_recvs.fetch_add(1);
      });
    }
    std::this_thread::sleep_for(test::kSettle);
    full.close();
    empty.close();
    rt.wait();
    EXPECT_EQ(false_sends.load(), 3);
    EXPECT_EQ(null_recvs.load(), 3);
  }
}

TEST_P(ChannelTaskTest, DestroyingARuntimeWaitsForBlockedTasksUntilClose) {
  // The destructor waits for every task; closing the channel they block
  // on (from another thread) lets it finish.
  Channel<int> ch(0);
  std::atomic<int> ended{0};
  std::jthread closer;
  {
    Runtime rt(threads());
    for (int i = 0; i < 10; ++i) {
      rt.spawn([&]() -> Task<> {
        const std::optional<int> v = co_await ch.async_recv();
        EXPECT_FALSE(v.has_value());
        ended.fetch_add(1);
      });
    }
    closer = std::jthread([&] {
      std::this_thread::sleep_for(test::kSettle);
      ch.close();
    });
  }  // ~Runtime
  EXPECT_EQ(ended.load(), 10);
}

TEST_P(ChannelTaskTest, StopTokensCancelSuspendedOperationsWithoutEffect) {
  for (std::size_t capacity : {0, 1}) {
    Channel<int> full(capacity);
    Channel<int> empty(capacity);
    if (capacity == 1) full.send(7);
    std::stop_source source;
    std::atomic<int> cancelled{0};
    Runtime rt(threads());
    for (int i = 0; i < 3; ++i) {
      rt.spawn([&]() -> Task<> {
        const bool sent = co_await full.async_send(1, source.get_token());
        if (!sent) cancelled++;
      });
      rt.spawn([&]() -> Task<> {
        const std::optional<int> v =
            co_await empty.async_recv(source.get_token());
        if (!v) cancelled++;
      });
    }
    std::this_thread::sleep_for(test::kSettle);
    source.request_stop();
    rt.wait();
    EXPECT_EQ(cancelled.load(), 6);
    EXPECT_FALSE(full.closed());
    EXPECT_EQ(full.size(), capacity);  // no cancelled send got in
    if (capacity == 1) {
      EXPECT_EQ(full.try_recv(), 7);
    }
    EXPECT_FALSE(empty.try_recv().has_value());
  }
}

TEST_P(ChannelTaskTest, AStoppedTokenReturnsAtOnceAndChangesNothing) {
  Channel<int> ch(4);
  ch.send(1);
  std::stop_source source;
  source.request_stop();
  bool sent = true;
  std::optional<int> got = 0;
  Runtime rt(threads());
  rt.spawn([&]() -> Task<> {
    sent = co_await ch.async_send(2, source.get_token());
    got = co_await ch.async_recv(source.get_token());
  });
  rt.wait();
  EXPECT_FALSE(sent);
  EXPECT_FALSE(got.has_value());
  EXPECT_EQ(ch.size(), 1U);
}

TEST_P(ChannelTaskTest, ManyTasksThroughATinyBufferLoseNothing) {
  Channel<std::int64_t> ch(1);
  std::atomic<std::int64_t> sum{0};
  std::atomic<int> senders_left{100};
  Runtime rt(threads());
  for (int k = 0; k < 100; ++k) {
    rt.spawn([&, k]() -> Task<> {
      co_await send_range(ch, k * (kItems / 100), (k + 1) * (kItems / 100));
      if (senders_left.fetch_sub(1) == 1) ch.close();
    });
  }
  for (int k = 0; k < 50; ++k) {
    rt.spawn(sum_until_closed, std::ref(ch), std::ref(sum));
  }
  rt.wait();
  EXPECT_EQ(sum.load(), kSum);
}

TEST_P(ChannelTaskTest, MoveOnlyValuesCrossBetweenTasks) {
  Channel<test::MoveOnly> ch(0);
  int sum = 0;
  Runtime rt(threads());
  rt.spawn([&]() -> Task<> {
    for (int i = 1; i <= 100; ++i) co_await ch.async_send(test::MoveOnly(i));
    ch.close();
  });
  rt.spawn([&]() -> Task<> {
    while (auto v = co_await ch.async_recv()) sum += v->value();
  });
  rt.wait();
  EXPECT_EQ(sum, 5050);
}

}  // namespace
}  // namespace sluice
