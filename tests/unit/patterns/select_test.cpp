// select and async_select: Go's select rules, for threads and for tasks on
// runtimes of 1, 2 and 4 threads.
#include "sluice/patterns/select.hpp"

#include <gtest/gtest.h>

#include <array>
#include <atomic>
#include <cstdint>
#include <optional>
#include <stop_token>
#include <thread>
#include <vector>

#include "test_util.hpp"

namespace sluice {
namespace {

using namespace std::chrono_literals;

class SelectTest : public test::ThreadCountTest {};

INSTANTIATE_TEST_SUITE_P(Threads, SelectTest, test::ThreadCounts(),
                         test::ThreadCountName());

// 4,000 rounds over four always-ready cases: each is expected 1,000 times
// with a standard deviation of ~27; the bound is 11 deviations wide, so a
// fair choice never fails it and a biased one (e.g. first-ready-wins) does.
constexpr int kRounds = 4000;
constexpr int kLow = 700;
constexpr int kHigh = 1300;

TEST_P(SelectTest, UniformAmongReadyCases) {
  std::array<Channel<int>, 4> chs{Channel<int>(kRounds), Channel<int>(kRounds),
                                  Channel<int>(kRounds), Channel<int>(kRounds)};
  for (auto& ch : chs) {
    for (int i = 0; i < kRounds; ++i) ch.send(i);
  }
  std::array<int, 4> thread_counts{};
  std::array<int, 4> task_counts{};
  auto fn = [](std::optional<int> v) { EXPECT_TRUE(v.has_value()); };
  for (int r = 0; r < kRounds / 2; ++r) {
    ++thread_counts[select(on_recv(chs[0], fn), on_recv(chs[1], fn),
                           on_recv(chs[2], fn), on_recv(chs[3], fn))];
  }
  Runtime rt(threads());
  rt.spawn([&]() -> Task<> {
    for (int r = 0; r < kRounds / 2; ++r) {
      const std::size_t i =
          co_await async_select(on_recv(chs[0], fn), on_recv(chs[1], fn),
                                on_recv(chs[2], fn), on_recv(chs[3], fn));
      ++task_counts[i];
    }
  });
  rt.wait();
  std::size_t left = 0;
  for (int i = 0; i < 4; ++i) {
    const int n = thread_counts[i] + task_counts[i];
    EXPECT_GE(n, kLow) << "case " << i;
    EXPECT_LE(n, kHigh) << "case " << i;
    left += chs[i].size();
  }
  // Exactly one value was consumed per round.
  EXPECT_EQ(left, 4U * kRounds - kRounds);
}

TEST_P(SelectTest, UniformAmongReadySendsOnUnbufferedChannels) {
  // Two always-waiting receivers (tasks) on two unbuffered channels.
  Channel<int> a(0);
  Channel<int> b(0);
  std::atomic<int> got_a{0};
  std::atomic<int> got_b{0};
  Runtime rt(threads());
  rt.spawn([&]() -> Task<> {
    while (co_await a.async_recv()) got_a++;
  });
  rt.spawn([&]() -> Task<> {
    while (co_await b.async_recv()) got_b++;
  });
  std::array<int, 2> counts{};
  for (int r = 0; r < kRounds / 2; ++r) {
    ++counts[select(on_send(a, r, [](bool ok) { EXPECT_TRUE(ok); }),
                    on_send(b, r, [](bool ok) { EXPECT_TRUE(ok); }))];
  }
  a.close();
  b.close();
  rt.wait();
  // Blocking sends: whichever receiver is back first wins, so only check
  // that both are used and that every send was received exactly once.
  EXPECT_GT(counts[0], 0);
  EXPECT_GT(counts[1], 0);
  EXPECT_EQ(got_a.load(), counts[0]);
  EXPECT_EQ(got_b.load(), counts[1]);
}

TEST_P(SelectTest, DefaultNeverBlocks) {
  Channel<int> unbuffered(0);
  Channel<int> empty(4);
  Channel<int> full(1);
  full.send(1);
  bool ran = false;
  const std::size_t i =
      select(on_recv(unbuffered, [](std::optional<int>) { ADD_FAILURE(); }),
             on_recv(empty, [](std::optional<int>) { ADD_FAILURE(); }),
             on_send(full, 2, [](bool) { ADD_FAILURE(); }),
             on_default([&] { ran = true; }));
  EXPECT_EQ(i, 3U);
  EXPECT_TRUE(ran);
  EXPECT_EQ(full.size(), 1U);
  std::size_t task_i = 99;
  Runtime rt(threads());
  rt.spawn([&]() -> Task<> {
    task_i = co_await async_select(
        on_default([] {}), on_send(unbuffered, 5, [](bool) { ADD_FAILURE(); }));
  });
  rt.wait();
  EXPECT_EQ(task_i, 0U);
}

TEST_P(SelectTest, TimeoutRunsWhenNothingBecomesReady) {
  Channel<int> never(0);
  bool timed_out = false;
  const auto start = test::Clock::now();
  const std::size_t i =
      select(on_recv(never, [](std::optional<int>) { ADD_FAILURE(); }),
             on_timeout(30ms, [&] { timed_out = true; }));
  EXPECT_EQ(i, 1U);
  EXPECT_TRUE(timed_out);
  EXPECT_GE(test::Clock::now() - start, 30ms);

  std::size_t task_i = 99;
  test::Clock::duration task_elapsed{};
  Runtime rt(threads());
  rt.spawn([&]() -> Task<> {
    const auto t0 = test::Clock::now();
    task_i = co_await async_select(
        on_timeout(30ms, [] {}),
        on_recv(never, [](std::optional<int>) { ADD_FAILURE(); }));
    task_elapsed = test::Clock::now() - t0;
  });
  rt.wait();
  EXPECT_EQ(task_i, 0U);
  EXPECT_GE(task_elapsed, 30ms);
}

TEST_P(SelectTest, AValueBeforeTheTimeoutWins) {
  Channel<int> ch(0);
  std::optional<int> got;
  Runtime rt(threads());
  rt.spawn([&]() -> Task<> {
    co_await sleep_for(20ms);
    co_await ch.async_send(42);
  });
  const std::size_t i =
      select(on_recv(ch, [&](std::optional<int> v) { got = v; }),
             on_timeout(test::kDeadline, [] {}));
  rt.wait();
  EXPECT_EQ(i, 0U);
  EXPECT_EQ(got, 42);
}

TEST_P(SelectTest, ClosedChannelsAreReady) {
  for (std::size_t capacity : {0, 3}) {
    Channel<int> recv_side(capacity);
    Channel<int> send_side(capacity);
    recv_side.close();
    send_side.close();
    std::optional<int> got = 1;
    const std::size_t i =
        select(on_recv(recv_side, [&](std::optional<int> v) { got = v; }));
    EXPECT_EQ(i, 0U);
    EXPECT_FALSE(got.has_value());
    bool sent = true;
    EXPECT_EQ(select(on_send(send_side, 1, [&](bool ok) { sent = ok; })), 0U);
    EXPECT_FALSE(sent);

    // And a select already blocked when the channel closes.
    Channel<int> later(capacity);
    Runtime rt(threads());
    bool woke_closed = false;
    rt.spawn([&]() -> Task<> {
      co_await async_select(on_recv(
          later, [&](std::optional<int> v) { woke_closed = !v.has_value(); }));
    });
    std::this_thread::sleep_for(test::kSettle);
    later.close();
    rt.wait();
    EXPECT_TRUE(woke_closed);
  }
}

TEST_P(SelectTest, NoValueIsLostByAnUnchosenCase) {
  // Producers (a thread and a task) feed an unbuffered and a buffered
  // channel; a consumer selects over both plus an on_send to a third
  // channel drained elsewhere. Every value sent is received exactly once,
  // and every on_send that reported true was received.
  constexpr std::int64_t kN = 5000;
  Channel<std::int64_t> a(0);
  Channel<std::int64_t> b(8);
  Channel<std::int64_t> out(0);
  std::atomic<std::int64_t> out_received{0};
  std::int64_t sum = 0;
  std::int64_t out_sent = 0;
  Runtime rt(threads());
  std::jthread producer([&] {
    for (std::int64_t i = 0; i < kN; ++i) a.send(i);
    a.close();
  });
  rt.spawn([&]() -> Task<> {
    for (std::int64_t i = kN; i < 2 * kN; ++i) co_await b.async_send(i);
    b.close();
  });
  rt.spawn([&]() -> Task<> {
    while (auto v = co_await out.async_recv()) out_received += *v;
  });
  bool a_open = true;
  bool b_open = true;
  std::int64_t next_out = 1;
  while (a_open || b_open) {
    auto take = [&](bool& open) {
      return [&](std::optional<std::int64_t> v) {
        if (v)
          sum += *v;
        else
          open = false;
      };
    };
    if (a_open && b_open) {
      select(on_recv(a, take(a_open)), on_recv(b, take(b_open)),
             on_send(out, next_out, [&](bool ok) {
               if (ok) out_sent += next_out++;
             }));
    } else if (a_open) {
      select(on_recv(a, take(a_open)));
    } else {
      select(on_recv(b, take(b_open)));
    }
  }
  out.close();
  rt.wait();
  EXPECT_EQ(sum, 2 * kN * (2 * kN - 1) / 2);
  EXPECT_EQ(out_received.load(), out_sent);
}

TEST_P(SelectTest, ABlockedSelectIsAWaitingPeerOnUnbufferedChannels) {
  Channel<int> to_select(0);
  Channel<int> from_select(0);
  std::optional<int> got;
  Runtime rt(threads());
  rt.spawn([&]() -> Task<> {
    co_await async_select(
        on_recv(to_select, [&](std::optional<int> v) { got = v; }));
  });
  std::jthread blocked_sender([&] {
    select(on_send(from_select, 9, [](bool ok) { EXPECT_TRUE(ok); }));
  });
  int v = 5;
  EXPECT_TRUE(test::eventually([&] { return to_select.try_send(v); }));
  std::optional<int> r;
  EXPECT_TRUE(test::eventually(
      [&] { return (r = from_select.try_recv()).has_value(); }));
  EXPECT_EQ(r, 9);
  rt.wait();
  EXPECT_EQ(got, 5);
}

TEST_P(SelectTest, SelectsMeetEachOtherOnAnUnbufferedChannel) {
  Channel<int> ch(0);
  std::atomic<int> sum{0};
  Runtime rt(threads());
  for (int i = 1; i <= 100; ++i) {
    rt.spawn([&, i]() -> Task<> {
      co_await async_select(on_send(ch, i, [](bool ok) { EXPECT_TRUE(ok); }));
    });
    rt.spawn([&]() -> Task<> {
      co_await async_select(
          on_recv(ch, [&](std::optional<int> v) { sum += v.value_or(0); }));
    });
  }
  rt.wait();
  EXPECT_EQ(sum.load(), 5050);
}

TEST_P(SelectTest, StopTokensEndABlockedSelectWithoutEffect) {
  Channel<int> empty(0);
  Channel<int> full(1);
  full.send(1);
  std::stop_source source;
  std::size_t task_result = 0;
  std::size_t thread_result = 0;
  Runtime rt(threads());
  rt.spawn([&]() -> Task<> {
    task_result = co_await async_select(
        source.get_token(),
        on_recv(empty, [](std::optional<int>) { ADD_FAILURE(); }),
        on_send(full, 2, [](bool) { ADD_FAILURE(); }),
        on_timeout(1h, [] { ADD_FAILURE(); }));
  });
  std::jthread blocked([&] {
    thread_result =
        select(source.get_token(),
               on_recv(empty, [](std::optional<int>) { ADD_FAILURE(); }),
               on_send(full, 2, [](bool) { ADD_FAILURE(); }));
  });
  std::this_thread::sleep_for(test::kSettle);
  source.request_stop();
  rt.wait();
  blocked.join();
  EXPECT_EQ(task_result, kSelectStopped);
  EXPECT_EQ(thread_result, kSelectStopped);
  EXPECT_EQ(full.try_recv(), 1);
  EXPECT_FALSE(full.try_recv().has_value());
  // Already stopped: returns at once.
  EXPECT_EQ(select(source.get_token(), on_default([] { ADD_FAILURE(); })),
            kSelectStopped);
}

}  // namespace
}  // namespace sluice
