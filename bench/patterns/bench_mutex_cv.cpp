// Baseline: the five workloads on BoundedQueue (one mutex, two condition
// variables; baseline_queue.hpp), with the same thread layout as the sluice
// and Go versions: the sender closes, the last of several senders closes.
#include <atomic>
#include <cstdint>
#include <optional>
#include <thread>
#include <vector>

#include "baseline_queue.hpp"
#include "workloads.hpp"

namespace sluice_bench {
namespace {

using Queue = BoundedQueue<std::int64_t>;

std::int64_t spsc(std::int64_t n, std::size_t capacity) {
  Queue q(capacity);
  std::jthread producer([&q, n] {
    for (std::int64_t i = 0; i < n; ++i) q.push(i);
    q.close();
  });
  std::int64_t sum = 0;
  while (auto v = q.pop()) sum += *v;
  return sum;
}

// `workers` threads pop from `in`, apply fn and push to `out`; the last one
// to finish closes `out`.
template <class Fn>
std::vector<std::jthread> map_stage(Queue& in, Queue& out, std::size_t workers,
                                    std::atomic<std::size_t>& left, Fn fn) {
  left.store(workers);
  std::vector<std::jthread> threads;
  for (std::size_t w = 0; w < workers; ++w) {
    threads.emplace_back([&in, &out, &left, fn] {
      while (auto v = in.pop()) out.push(fn(*v));
      if (left.fetch_sub(1) == 1) out.close();
    });
  }
  return threads;
}

}  // namespace

void BM_W1_Spsc_MutexCv(benchmark::State& state) {
  std::int64_t sum = 0;
  for (auto _ : state) sum = spsc(kW1Items, kW1Capacity);
  finish(state, kW1Items, sum, range_sum(kW1Items));
}

void BM_W2_Mpmc_MutexCv(benchmark::State& state) {
  std::int64_t sum = 0;
  for (auto _ : state) {
    Queue q(kW2Capacity);
    std::atomic<int> producers_left{kW2Producers};
    std::vector<std::int64_t> sums(kW2Consumers, 0);
    {
      std::vector<std::jthread> threads;
      for (int p = 0; p < kW2Producers; ++p) {
        threads.emplace_back([&, p] {
          const std::int64_t hi = slice_begin(kW2Items, p + 1, kW2Producers);
          for (std::int64_t i = slice_begin(kW2Items, p, kW2Producers); i < hi;
               ++i)
            q.push(i);
          if (producers_left.fetch_sub(1) == 1) q.close();
        });
      }
      for (int c = 0; c < kW2Consumers; ++c) {
        threads.emplace_back([&, c] {
          std::int64_t s = 0;
          while (auto v = q.pop()) s += *v;
          sums[static_cast<std::size_t>(c)] = s;
        });
      }
    }  // join
    sum = 0;
    for (auto s : sums) sum += s;
  }
  finish(state, kW2Items, sum, range_sum(kW2Items));
}

void BM_W3_Unbuffered_MutexCv(benchmark::State& state) {
  state.SetLabel("50k items");
  std::int64_t sum = 0;
  for (auto _ : state) sum = spsc(kW3SlowItems, 0);
  finish(state, kW3SlowItems, sum, range_sum(kW3SlowItems));
}

void BM_W4_Pipeline_MutexCv(benchmark::State& state) {
  std::int64_t sum = 0;
  for (auto _ : state) {
    Queue generated(kW4Capacity), doubled(kW4Capacity), out(kW4Capacity);
    std::atomic<std::size_t> left1{0}, left2{0};
    std::jthread generator([&generated] {
      for (std::int64_t i = 0; i < kW4Items; ++i) generated.push(i);
      generated.close();
    });
    auto stage1 = map_stage(generated, doubled, kW4Workers, left1,
                            [](std::int64_t x) { return x * 2; });
    auto stage2 = map_stage(doubled, out, kW4Workers, left2,
                            [](std::int64_t x) { return x + 1; });
    sum = 0;
    while (auto v = out.pop()) sum += *v;
  }
  finish(state, kW4Items, sum, w4_expected_sum(kW4Items));
}

void BM_W5_WorkerPool_MutexCv(benchmark::State& state) {
  std::uint64_t sum = 0;
  for (auto _ : state) {
    BoundedQueue<std::uint64_t> jobs(kW5Queue), results(kW5Results);
    const int iters = g_job_iters;
    std::atomic<std::size_t> left{kW5Workers};
    std::vector<std::jthread> workers;
    for (std::size_t w = 0; w < kW5Workers; ++w) {
      workers.emplace_back([&, iters] {
        while (auto j = jobs.pop()) results.push(job(*j, iters));
        if (left.fetch_sub(1) == 1) results.close();
      });
    }
    sum = 0;
    std::jthread consumer([&] {
      while (auto r = results.pop()) sum += *r;
    });
    for (std::int64_t i = 0; i < kW5Jobs; ++i)
      jobs.push(static_cast<std::uint64_t>(i));
    jobs.close();
    consumer.join();
  }
  finish(state, kW5Jobs, sum, w5_expected_sum());
}

}  // namespace sluice_bench
