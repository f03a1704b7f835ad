// Unit tests for the task forms of sluice::fan_in and fan_in_ordered
// (patterns/include/sluice/patterns/fan_in.hpp): fan_in(rt, inputs, capacity)
// and fan_in_ordered(rt, inputs, capacity, window), one forwarding task per
// input on a Runtime. Each runs on runtimes of 1, 2 and 4 threads. Nothing
// here asserts timing.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <thread>
#include <vector>

#include "sluice/patterns/fan_in.hpp"
#include "sluice/patterns/runtime.hpp"
#include "test_util.hpp"

namespace {

using sluice::Channel;
using sluice::Runtime;
using sluice::Sequenced;
using sluice::sleep_for;
using sluice::Task;
using sluice::test::drain;
using sluice::test::eventually;
using sluice::test::kSettle;
using namespace std::chrono_literals;

class FanInTaskTest : public sluice::test::ThreadCountTest {};

INSTANTIATE_TEST_SUITE_P(Threads, FanInTaskTest, sluice::test::ThreadCounts(),
                         sluice::test::ThreadCountName());

constexpr int kPerInput = 100'000;  // value = input * kPerInput + index

// Channels of the given capacities, and raw pointers to them for fan_in.
struct Inputs {
  explicit Inputs(const std::vector<std::size_t>& capacities) {
    for (std::size_t c : capacities) {
      owned.push_back(std::make_unique<Channel<int>>(c));
      raw.push_back(owned.back().get());
    }
  }
  std::vector<std::unique_ptr<Channel<int>>> owned;
  std::vector<Channel<int>*> raw;
};

// Sends `n` values tagged with `input` into `ch`, then closes it.
Task<> feed(Channel<int>& ch, int input, int n) {
  for (int i = 0; i < n; ++i) {
    const bool sent = co_await ch.async_send(input * kPerInput + i);
    if (!sent) co_return;
  }
  ch.close();
}

TEST_P(FanInTaskTest, EveryValueOnceWithPerInputOrderKept) {
  constexpr int kEach = 2000;
  Inputs in({0, 1, 7, 64, 3});
  Runtime rt(threads());
  auto merged = sluice::fan_in<int>(rt, in.raw, 16);
  for (int i = 0; i < static_cast<int>(in.raw.size()); ++i) {
    rt.spawn(feed, std::ref(*in.raw[static_cast<std::size_t>(i)]), i, kEach);
  }
  std::map<int, int> next;  // input -> the index it must show next
  std::size_t count = 0;
  for (int v : drain(merged.output())) {
    EXPECT_EQ(v % kPerInput, next[v / kPerInput]++)
        << "input " << v / kPerInput;
    ++count;
  }
  EXPECT_EQ(count, in.raw.size() * kEach);
}

TEST_P(FanInTaskTest, CloseDrainsAndTheOutputClosesAfterEveryInput) {
  Inputs in({8, 8});
  Runtime rt(threads());
  auto merged = sluice::fan_in<int>(rt, in.raw, 64);
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(in.raw[0]->send(i));
  in.raw[0]->close();  // closed with values still buffered
  std::this_thread::sleep_for(kSettle);
  EXPECT_FALSE(merged.output().closed()) << "one input is still open";
  ASSERT_TRUE(in.raw[1]->send(kPerInput));
  in.raw[1]->close();
  std::vector<int> got = drain(merged.output());
  EXPECT_EQ(got.size(), 6U);
}

TEST_P(FanInTaskTest, NoInputsMeansAClosedOutput) {
  Runtime rt(threads());
  auto merged = sluice::fan_in<int>(rt, {});
  EXPECT_TRUE(merged.output().closed());
  EXPECT_FALSE(merged.output().recv().has_value());
}

TEST_P(FanInTaskTest, StopEndsTheForwardersAndClosesTheOutput) {
  Inputs in({4, 4, 4});
  Runtime rt(threads());
  auto merged = sluice::fan_in<int>(rt, in.raw, 4);
  ASSERT_TRUE(in.raw[2]->send(7));
  ASSERT_EQ(merged.output().recv_for(sluice::test::kDeadline), 7);
  merged.stop();
  drain(merged.output());  // closes although every input is open
  for (Channel<int>* ch : in.raw) {
    EXPECT_FALSE(ch->closed()) << "the inputs belong to their senders";
  }
}

TEST_P(FanInTaskTest, DestroyedWhileForwardersAreBlockedReturns) {
  Inputs in({16, 16, 0});  // never closed
  Runtime rt(threads());
  {
    auto merged = sluice::fan_in<int>(rt, in.raw, 1);
    for (int i = 0; i < 16; ++i) {
      ASSERT_TRUE(in.raw[0]->send(i));
      ASSERT_TRUE(in.raw[1]->send(i));
    }
    // Nobody reads: the output is full and the forwarders suspend on it
    // (and the third on its empty unbuffered input).
    ASSERT_TRUE(eventually([&] { return merged.output().size() == 1; }));
    std::this_thread::sleep_for(kSettle);
  }  // requests stop and waits for the forwarders
  EXPECT_FALSE(in.raw[0]->closed());
}

TEST_P(FanInTaskTest, TenThousandSleepingInputsShareTheRuntimeThreads) {
  constexpr std::size_t kInputs = 10'000;
  const int before = sluice::test::baseline_thread_count();
  Inputs in(std::vector<std::size_t>(kInputs, 1));
  std::atomic<int> peak{0};
  Runtime rt(threads());
  auto merged = sluice::fan_in<int>(rt, in.raw, 1024);
  for (std::size_t i = 0; i < kInputs; ++i) {
    // Each input's sender "waits on I/O" for 20 ms, then sends two values.
    rt.spawn(
        [&peak](Channel<int>& ch, int input) -> Task<> {
          if (input % 1000 == 0) {
            const int now = sluice::test::proc_task_count();
            if (now > peak.load()) peak.store(now);
          }
          co_await sleep_for(20ms);
          co_await feed(ch, input, 2);
        },
        std::ref(*in.raw[i]), static_cast<int>(i));
  }
  std::vector<int> got = drain(merged.output());
  EXPECT_EQ(got.size(), 2 * kInputs);
  std::vector<int> per_input(kInputs, 0);
  for (int v : got) ++per_input[static_cast<std::size_t>(v / kPerInput)];
  for (std::size_t i = 0; i < kInputs; ++i) {
    ASSERT_EQ(per_input[i], 2) << "input " << i;
  }
  EXPECT_EQ(merged.output().size(), 0U);
  EXPECT_GT(peak.load(), 0);
  // The runtime's threads, never one per forwarder.
  EXPECT_LE(peak.load(), before + static_cast<int>(threads()));
  rt.wait();
}

// ---- fan_in_ordered ---------------------------------------------------------

using Seq = Sequenced<std::unique_ptr<std::uint64_t>>;

// Sends `seqs` into `ch` in order, each carrying its own seq, with a short
// suspension before each that varies, then closes `ch`.
Task<> feed_seqs(Channel<Seq>& ch, std::vector<std::uint64_t> seqs) {
  for (std::uint64_t s : seqs) {
    co_await sleep_for(std::chrono::microseconds(s * 37 % 5 * 30));
    // Named, not Seq{...} inside the co_await: GCC 12 destroys an aggregate
    // temporary in a co_await expression twice (a double free here).
    Seq item{s, std::make_unique<std::uint64_t>(s)};
    const bool sent = co_await ch.async_send(std::move(item));
    if (!sent) co_return;
  }
  ch.close();
}

TEST_P(FanInTaskTest, OrderedEmitsInSeqOrderUnderVaryingDelays) {
  constexpr std::uint64_t kItems = 600;
  for (std::size_t inputs : {1, 3, 8}) {
    for (std::size_t window : {1, 4, 64}) {
      std::vector<std::unique_ptr<Channel<Seq>>> owned;
      std::vector<Channel<Seq>*> raw;
      std::vector<std::vector<std::uint64_t>> seqs(inputs);
      std::mt19937 rng(12345);
      for (std::uint64_t s = 0; s < kItems; ++s)
        seqs[rng() % inputs].push_back(s);
      for (std::size_t i = 0; i < inputs; ++i) {
        owned.push_back(std::make_unique<Channel<Seq>>(2));
        raw.push_back(owned.back().get());
      }
      Runtime rt(threads());
      auto merged = sluice::fan_in_ordered<std::unique_ptr<std::uint64_t>>(
          rt, raw, 4, window);
      for (std::size_t i = 0; i < inputs; ++i) {
        rt.spawn(feed_seqs, std::ref(*raw[i]), seqs[i]);
      }
      std::uint64_t next = 0;
      for (std::unique_ptr<std::uint64_t>& v : drain(merged.output())) {
        ASSERT_EQ(*v, next++) << inputs << " inputs, window " << window;
      }
      EXPECT_EQ(next, kItems) << inputs << " inputs, window " << window;
    }
  }
}

TEST_P(FanInTaskTest, OrderedSkipsAGapOnceNoForwarderCanGoOnWithoutIt) {
  std::vector<std::unique_ptr<Channel<Seq>>> owned;
  owned.push_back(std::make_unique<Channel<Seq>>(4));
  owned.push_back(std::make_unique<Channel<Seq>>(4));
  Channel<Seq>& a = *owned[0];
  Channel<Seq>& b = *owned[1];
  Runtime rt(threads());
  auto merged = sluice::fan_in_ordered<std::unique_ptr<std::uint64_t>>(
      rt, {&a, &b}, 4, 4);
  ASSERT_TRUE(a.send(Seq{10, std::make_unique<std::uint64_t>(10)}));
  std::this_thread::sleep_for(kSettle);
  // Only a waits beyond the window; b may still bring seqs 0..9.
  EXPECT_FALSE(merged.output().try_recv().has_value());
  ASSERT_TRUE(b.send(Seq{20, std::make_unique<std::uint64_t>(20)}));
  // Both wait beyond the window: 0..9 cannot arrive, 10 goes out.
  auto ten = merged.output().recv_for(sluice::test::kDeadline);
  ASSERT_TRUE(ten.has_value());
  EXPECT_EQ(**ten, 10U);
  a.close();  // now b alone holds the merge up: 11..19 are skipped
  auto twenty = merged.output().recv_for(sluice::test::kDeadline);
  ASSERT_TRUE(twenty.has_value());
  EXPECT_EQ(**twenty, 20U);
  b.close();
  EXPECT_TRUE(drain(merged.output()).empty());
}

TEST_P(FanInTaskTest, OrderedFlushesWhatIsHeldOnceEveryInputHasClosed) {
  std::vector<std::unique_ptr<Channel<Seq>>> owned;
  owned.push_back(std::make_unique<Channel<Seq>>(8));
  Runtime rt(threads());
  for (std::uint64_t s : {1, 2, 5}) {
    ASSERT_TRUE(owned[0]->send(Seq{s, std::make_unique<std::uint64_t>(s)}));
  }
  auto merged = sluice::fan_in_ordered<std::unique_ptr<std::uint64_t>>(
      rt, {owned[0].get()}, 8, 16);
  EXPECT_FALSE(merged.output().recv_for(kSettle).has_value())
      << "emitted before seq 0 could no longer arrive";
  owned[0]->close();
  std::vector<std::uint64_t> got;
  for (auto& v : drain(merged.output())) got.push_back(*v);
  EXPECT_EQ(got, (std::vector<std::uint64_t>{1, 2, 5}));
}

TEST_P(FanInTaskTest, OrderedDestroyedWhileForwardersWaitReturns) {
  std::vector<std::unique_ptr<Channel<Seq>>> owned;
  owned.push_back(std::make_unique<Channel<Seq>>(4));
  owned.push_back(std::make_unique<Channel<Seq>>(4));
  owned.push_back(std::make_unique<Channel<Seq>>(16));
  Runtime rt(threads());
  // Input 0 waits for the window, input 1 on its empty input, and input 2
  // on the full output (nobody reads).
  ASSERT_TRUE(owned[0]->send(Seq{100, std::make_unique<std::uint64_t>(100)}));
  for (std::uint64_t s = 0; s < 10; ++s) {
    ASSERT_TRUE(owned[2]->send(Seq{s, std::make_unique<std::uint64_t>(s)}));
  }
  {
    auto merged = sluice::fan_in_ordered<std::unique_ptr<std::uint64_t>>(
        rt, {owned[0].get(), owned[1].get(), owned[2].get()}, 1, 4);
    ASSERT_TRUE(eventually([&] { return merged.output().size() == 1; }));
    std::this_thread::sleep_for(kSettle);
  }  // requests stop and waits for the forwarders
  EXPECT_FALSE(owned[0]->closed());
}

TEST_P(FanInTaskTest, OrderedStopClosesTheOutput) {
  std::vector<std::unique_ptr<Channel<Seq>>> owned;
  owned.push_back(std::make_unique<Channel<Seq>>(4));
  Runtime rt(threads());
  auto merged = sluice::fan_in_ordered<std::unique_ptr<std::uint64_t>>(
      rt, {owned[0].get()}, 4, 4);
  ASSERT_TRUE(owned[0]->send(Seq{0, std::make_unique<std::uint64_t>(0)}));
  ASSERT_TRUE(merged.output().recv_for(sluice::test::kDeadline).has_value());
  merged.stop();
  EXPECT_TRUE(drain(merged.output()).empty());
  EXPECT_FALSE(owned[0]->closed());
}

}  // namespace
