// sluice: the five workloads on the public patterns API
// (docs/patterns-api.md): W1-W3 on Channel<int64_t> send/recv from
// std::jthreads, W4 on generate + Pipeline::map, W5 on WorkerPool.
// BM_W1_Spsc_SluiceBatch is the batch API (send_many/recv_many), not the
// headline W1 number.
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <optional>
#include <sluice/patterns/patterns.hpp>
#include <span>
#include <thread>
#include <vector>

#include "workloads.hpp"

namespace sluice_bench {
namespace {

std::int64_t spsc(std::int64_t n, std::size_t capacity) {
  sluice::Channel<std::int64_t> ch(capacity);
  std::jthread producer([&ch, n] {
    for (std::int64_t i = 0; i < n; ++i) ch.send(i);
    ch.close();
  });
  std::int64_t sum = 0;
  while (auto v = ch.recv()) sum += *v;
  return sum;
}

}  // namespace

void BM_W1_Spsc_Sluice(benchmark::State& state) {
  std::int64_t sum = 0;
  for (auto _ : state) sum = spsc(kW1Items, kW1Capacity);
  finish(state, kW1Items, sum, range_sum(kW1Items));
}

void BM_W1_Spsc_SluiceBatch(benchmark::State& state) {
  constexpr std::size_t kBatch = 256;
  state.SetLabel("batch API: send_many/recv_many of 256");
  std::int64_t sum = 0;
  for (auto _ : state) {
    sluice::Channel<std::int64_t> ch(kW1Capacity);
    std::jthread producer([&ch] {
      std::vector<std::int64_t> batch(kBatch);
      for (std::int64_t i = 0; i < kW1Items;) {
        const auto m = static_cast<std::size_t>(std::min<std::int64_t>(
            static_cast<std::int64_t>(kBatch), kW1Items - i));
        for (std::size_t k = 0; k < m; ++k)
          batch[k] = i + static_cast<std::int64_t>(k);
        if (ch.send_many(std::span<std::int64_t>(batch.data(), m)) != m) break;
        i += static_cast<std::int64_t>(m);
      }
      ch.close();
    });
    sum = 0;
    std::vector<std::int64_t> got;
    got.reserve(kBatch);
    while (ch.recv_many(got, kBatch) > 0) {
      for (auto v : got) sum += v;
      got.clear();
    }
  }
  finish(state, kW1Items, sum, range_sum(kW1Items));
}

void BM_W2_Mpmc_Sluice(benchmark::State& state) {
  std::int64_t sum = 0;
  for (auto _ : state) {
    sluice::Channel<std::int64_t> ch(kW2Capacity);
    std::atomic<int> producers_left{kW2Producers};
    std::vector<std::int64_t> sums(kW2Consumers, 0);
    {
      std::vector<std::jthread> threads;
      for (int p = 0; p < kW2Producers; ++p) {
        threads.emplace_back([&, p] {
          const std::int64_t hi = slice_begin(kW2Items, p + 1, kW2Producers);
          for (std::int64_t i = slice_begin(kW2Items, p, kW2Producers); i < hi;
               ++i)
            ch.send(i);
          if (producers_left.fetch_sub(1) == 1)
            ch.close();  // the last sender closes
        });
      }
      for (int c = 0; c < kW2Consumers; ++c) {
        threads.emplace_back([&, c] {
          std::int64_t s = 0;
          while (auto v = ch.recv()) s += *v;
          sums[static_cast<std::size_t>(c)] = s;
        });
      }
    }  // join
    sum = 0;
    for (auto s : sums) sum += s;
  }
  finish(state, kW2Items, sum, range_sum(kW2Items));
}

void BM_W3_Unbuffered_Sluice(benchmark::State& state) {
  std::int64_t sum = 0;
  for (auto _ : state) sum = spsc(kW3Items, 0);
  finish(state, kW3Items, sum, range_sum(kW3Items));
}

void BM_W4_Pipeline_Sluice(benchmark::State& state) {
  std::int64_t sum = 0;
  for (auto _ : state) {
    auto gen = sluice::generate(
        [i = std::int64_t{0}]() mutable -> std::optional<std::int64_t> {
          if (i >= kW4Items) return std::nullopt;
          return i++;
        },
        kW4Capacity);
    auto pipeline = sluice::Pipeline<std::int64_t>::from(std::move(gen))
                        .map([](std::int64_t x) { return x * 2; },
                             {.workers = kW4Workers, .buffer = kW4Capacity})
                        .map([](std::int64_t x) { return x + 1; },
                             {.workers = kW4Workers, .buffer = kW4Capacity});
    sum = 0;
    for (std::int64_t v : pipeline) sum += v;
  }
  finish(state, kW4Items, sum, w4_expected_sum(kW4Items));
}

void BM_W5_WorkerPool_Sluice(benchmark::State& state) {
  std::uint64_t sum = 0;
  std::atomic<bool> failed{false};
  for (auto _ : state) {
    const int iters = g_job_iters;
    sluice::WorkerPool<std::uint64_t, std::uint64_t> pool(
        kW5Workers, kW5Queue,
        [iters](std::uint64_t j) { return job(j, iters); }, kW5Results);
    sum = 0;
    std::jthread consumer([&] {
      for (auto r : pool.results()) {
        if (r.outcome.ok()) {
          sum += r.outcome.value();
        } else {
          failed = true;
        }
      }
    });
    for (std::int64_t i = 0; i < kW5Jobs; ++i) {
      if (!pool.submit(static_cast<std::uint64_t>(i))) failed = true;
    }
    pool.close();
    consumer.join();
  }
  if (failed.load()) {
    state.SkipWithError("a job failed or was refused");
    return;
  }
  finish(state, kW5Jobs, sum, w5_expected_sum());
}

}  // namespace sluice_bench
