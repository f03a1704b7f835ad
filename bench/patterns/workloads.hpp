// Shared definitions of the five pattern workloads (W1..W5). The Go anchor in
// bench/anchors/go/main.go runs the same workloads with the same sizes and
// the same W5 job function: keep the two in step.
#pragma once

#include <benchmark/benchmark.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>

namespace sluice_bench {

// W1 spsc: 1 producer, 1 consumer.
inline constexpr std::int64_t kW1Items = 10'000'000;
inline constexpr std::size_t kW1Capacity = 1024;
// W2 mpmc: 2 producers, 2 consumers; items in total.
inline constexpr std::int64_t kW2Items = 10'000'000;
inline constexpr std::size_t kW2Capacity = 1024;
inline constexpr int kW2Producers = 2;
inline constexpr int kW2Consumers = 2;
// W3 unbuffered: capacity 0, 1 producer, 1 consumer.
inline constexpr std::int64_t kW3Items = 1'000'000;
// The mutex+cv and Boost.Fiber rendezvous sleep in the kernel on every
// handoff and manage only ~20-100k items/s on the reference VM (10-50 s per
// 1M-item repetition), so they run W3 on fewer items to keep `scripts/bench
// patterns` within its time budget. items/s is a steady-state rate (thread
// start-up is ~0.1 ms of a >0.5 s run), so the figures stay comparable; the
// benchmarks say so in their label.
inline constexpr std::int64_t kW3SlowItems = 50'000;
// W4 pipeline: generator -> map x*2 (2 workers) -> map x+1 (2 workers) -> sum.
inline constexpr std::int64_t kW4Items = 5'000'000;
inline constexpr std::size_t kW4Capacity = 256;
inline constexpr std::size_t kW4Workers = 2;
// W5 worker pool: jobs of ~2 us CPU on 2 workers, job queue 1024.
inline constexpr std::int64_t kW5Jobs = 200'000;
inline constexpr std::size_t kW5Workers = 2;
inline constexpr std::size_t kW5Queue = 1024;
inline constexpr std::size_t kW5Results = 1024;
// W6 I/O-bound fan-out (tasks): 10,000 workers, each job waits 20 ms,
// channel capacity 1024. The size is 400,000 jobs (--w6_jobs=400000);
// the default keeps a repetition under a second at the ideal rate.
inline constexpr int kW6Workers = 10'000;
inline constexpr std::size_t kW6Capacity = 1024;
inline constexpr std::chrono::milliseconds kW6Latency{20};
inline constexpr std::int64_t kW6JobsDefault = 400'000;
inline std::int64_t g_w6_jobs = kW6JobsDefault;
// jobs/s with every worker always waiting: 10,000 / 20 ms = 500,000.
constexpr double w6_ideal_rate() {
  return kW6Workers * 1000.0 / static_cast<double>(kW6Latency.count());
}
// W7 fan-in by select: 4 producers, each on its own channel of capacity 64,
// one consumer selecting over the four.
inline constexpr std::int64_t kW7Items = 4'000'000;
inline constexpr std::size_t kW7Capacity = 64;
inline constexpr int kW7Producers = 4;
// xorshift steps per job giving ~2 us on the reference machine (AMD EPYC,
// 2 vCPU): defaultJobIters in main.go. Overridden by --job_iters=N.
inline constexpr int kJobItersDefault = 1230;

// Set once by main() before any benchmark runs.
inline int g_job_iters = kJobItersDefault;

// The W5 unit of work: iters xorshift64 steps seeded from the job index.
// Identical to job() in bench/anchors/go/main.go.
inline std::uint64_t job(std::uint64_t i, int iters) {
  std::uint64_t x = i * 0x9E3779B97F4A7C15ULL + 1;
  for (int k = 0; k < iters; ++k) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
  }
  return x;
}

// xor of job(0..15): printed by both programs so the driver can check that
// they did the same work.
inline std::uint64_t job_check(int iters) {
  std::uint64_t c = 0;
  for (std::uint64_t i = 0; i < 16; ++i) c ^= job(i, iters);
  return c;
}

// Sum of job(0..jobs-1) with g_job_iters, computed once (the W5 check).
std::uint64_t w5_expected_sum();

// 0 + 1 + ... + (n - 1).
constexpr std::int64_t range_sum(std::int64_t n) { return n * (n - 1) / 2; }
// The W4 result: sum over x in 0..n-1 of (2x + 1) = n².
constexpr std::int64_t w4_expected_sum(std::int64_t n) { return n * n; }

// Producer p of `producers` sends the p-th contiguous slice of 0..n-1.
constexpr std::int64_t slice_begin(std::int64_t n, int p, int producers) {
  return n * p / producers;
}

// Records the check: SkipWithError on mismatch, items processed otherwise.
template <class Sum>
void finish(benchmark::State& state, std::int64_t items, Sum got, Sum want) {
  if (got != want) {
    state.SkipWithError(("wrong result: got " + std::to_string(got) +
                         ", want " + std::to_string(want))
                            .c_str());
    return;
  }
  state.SetItemsProcessed(items *
                          static_cast<std::int64_t>(state.iterations()));
}

// The benchmark functions, one per (workload, implementation). Registered in
// workload order by main.cpp.
// sluice (bench_sluice.cpp)
void BM_W1_Spsc_Sluice(benchmark::State& state);
void BM_W1_Spsc_SluiceBatch(benchmark::State& state);
void BM_W2_Mpmc_Sluice(benchmark::State& state);
void BM_W3_Unbuffered_Sluice(benchmark::State& state);
void BM_W3_Floor_AtomicPingPong(benchmark::State& state);
void BM_W4_Pipeline_Sluice(benchmark::State& state);
void BM_W5_WorkerPool_Sluice(benchmark::State& state);
// sluice tasks on a Runtime (bench_tasks.cpp)
void BM_W3_Unbuffered_SluiceTasks(benchmark::State& state);
void BM_W4_Pipeline_SluiceTasks(benchmark::State& state);
void BM_W6_IoFanOut_SluiceTasks(benchmark::State& state);
void BM_W7_SelectFanIn_SluiceTasks(benchmark::State& state);
// mutex + two condition variables (bench_mutex_cv.cpp)
void BM_W1_Spsc_MutexCv(benchmark::State& state);
void BM_W2_Mpmc_MutexCv(benchmark::State& state);
void BM_W3_Unbuffered_MutexCv(benchmark::State& state);
void BM_W4_Pipeline_MutexCv(benchmark::State& state);
void BM_W5_WorkerPool_MutexCv(benchmark::State& state);
// the W5 job function called jobs times on one thread (main.cpp)
void BM_W5_Serial(benchmark::State& state);
// Boost.Fiber channels used from std::threads (bench_boost_fiber.cpp)
void BM_W1_Spsc_BoostFiber(benchmark::State& state);
void BM_W2_Mpmc_BoostFiber(benchmark::State& state);
void BM_W3_Unbuffered_BoostFiber(benchmark::State& state);
void BM_W4_Pipeline_BoostFiber(benchmark::State& state);
// oneTBB parallel_pipeline (bench_tbb.cpp). The headline uses g_tbb_tokens
// max live tokens (--tbb_tokens=N); TbbTune takes them from state.range(0)
// (registered by --tbb_tune, to find the best count). Tuned on the reference
// machine (2 vCPUs): 2 tokens (one per thread) gave ~20-22M items/s, 4 to 256
// ~17.5M; 1 token (~30M) is excluded: it runs the stages one item at a time
// on one thread, i.e. no parallel pipeline at all.
void BM_W4_Pipeline_Tbb(benchmark::State& state);
void BM_W4_Pipeline_TbbTune(benchmark::State& state);
inline constexpr std::size_t kTbbTokensDefault = 2;
inline std::size_t g_tbb_tokens = kTbbTokensDefault;

}  // namespace sluice_bench
