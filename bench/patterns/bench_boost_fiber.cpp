// Baseline: Boost.Fiber's channels used from plain std::threads (no fibers
// are launched: each thread's implicit main fiber blocks, and a channel wakes
// a context on another thread through that thread's scheduler). W1, W2, W4
// use buffered_channel (capacity must be a power of 2: 1024 and 256 are);
// W3 uses unbuffered_channel. Same thread layout as the other versions.
#include <atomic>
#include <boost/fiber/buffered_channel.hpp>
#include <boost/fiber/channel_op_status.hpp>
#include <boost/fiber/unbuffered_channel.hpp>
#include <cstdint>
#include <thread>
#include <vector>

#include "workloads.hpp"

namespace sluice_bench {
namespace {

using boost::fibers::channel_op_status;
using Channel = boost::fibers::buffered_channel<std::int64_t>;

template <class Ch>
std::int64_t drain(Ch& ch) {
  std::int64_t sum = 0;
  std::int64_t v = 0;
  while (ch.pop(v) == channel_op_status::success) sum += v;
  return sum;
}

template <class Ch>
std::int64_t spsc(Ch& ch, std::int64_t n) {
  std::jthread producer([&ch, n] {
    for (std::int64_t i = 0; i < n; ++i) ch.push(i);
    ch.close();
  });
  return drain(ch);
}

template <class Fn>
std::vector<std::jthread> map_stage(Channel& in, Channel& out,
                                    std::size_t workers,
                                    std::atomic<std::size_t>& left, Fn fn) {
  left.store(workers);
  std::vector<std::jthread> threads;
  for (std::size_t w = 0; w < workers; ++w) {
    threads.emplace_back([&in, &out, &left, fn] {
      std::int64_t v = 0;
      while (in.pop(v) == channel_op_status::success) out.push(fn(v));
      if (left.fetch_sub(1) == 1) out.close();
    });
  }
  return threads;
}

}  // namespace

void BM_W1_Spsc_BoostFiber(benchmark::State& state) {
  std::int64_t sum = 0;
  for (auto _ : state) {
    Channel ch(kW1Capacity);
    sum = spsc(ch, kW1Items);
  }
  finish(state, kW1Items, sum, range_sum(kW1Items));
}

void BM_W2_Mpmc_BoostFiber(benchmark::State& state) {
  std::int64_t sum = 0;
  for (auto _ : state) {
    Channel ch(kW2Capacity);
    std::atomic<int> producers_left{kW2Producers};
    std::vector<std::int64_t> sums(kW2Consumers, 0);
    {
      std::vector<std::jthread> threads;
      for (int p = 0; p < kW2Producers; ++p) {
        threads.emplace_back([&, p] {
          const std::int64_t hi = slice_begin(kW2Items, p + 1, kW2Producers);
          for (std::int64_t i = slice_begin(kW2Items, p, kW2Producers); i < hi;
               ++i)
            ch.push(i);
          if (producers_left.fetch_sub(1) == 1) ch.close();
        });
      }
      for (int c = 0; c < kW2Consumers; ++c) {
        threads.emplace_back(
            [&, c] { sums[static_cast<std::size_t>(c)] = drain(ch); });
      }
    }  // join
    sum = 0;
    for (auto s : sums) sum += s;
  }
  finish(state, kW2Items, sum, range_sum(kW2Items));
}

void BM_W3_Unbuffered_BoostFiber(benchmark::State& state) {
  state.SetLabel("50k items");
  std::int64_t sum = 0;
  for (auto _ : state) {
    boost::fibers::unbuffered_channel<std::int64_t> ch;
    sum = spsc(ch, kW3SlowItems);
  }
  finish(state, kW3SlowItems, sum, range_sum(kW3SlowItems));
}

void BM_W4_Pipeline_BoostFiber(benchmark::State& state) {
  std::int64_t sum = 0;
  for (auto _ : state) {
    Channel generated(kW4Capacity), doubled(kW4Capacity), out(kW4Capacity);
    std::atomic<std::size_t> left1{0}, left2{0};
    std::jthread generator([&generated] {
      for (std::int64_t i = 0; i < kW4Items; ++i) generated.push(i);
      generated.close();
    });
    auto stage1 = map_stage(generated, doubled, kW4Workers, left1,
                            [](std::int64_t x) { return x * 2; });
    auto stage2 = map_stage(doubled, out, kW4Workers, left2,
                            [](std::int64_t x) { return x + 1; });
    sum = drain(out);
  }
  finish(state, kW4Items, sum, w4_expected_sum(kW4Items));
}

}  // namespace sluice_bench
