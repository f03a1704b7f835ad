// bench_patterns: the five pattern workloads (workloads.hpp) for sluice and
// its baselines, side by side. Normally run by `scripts/bench patterns`,
// which also runs the Go anchor (bench/anchors/go) and prints the comparison.
//
// Own flags (everything else goes to Google Benchmark, e.g.
// --benchmark_filter=W4 --benchmark_format=json):
//   --reps=N        repetitions of each benchmark (default 5); the median is
//   reported
//   --job_iters=N   W5: xorshift steps per job (default kJobItersDefault, ~2
//   us);
//                   pass the Go program the same value (-iters N)
//   --w6_jobs=N     W6: jobs per repetition (default kW6JobsDefault, 400k)
//   --tbb_tokens=N  max tokens of BM_W4_Pipeline_Tbb (default
//   kTbbTokensDefault)
//   --tbb_tune      also run BM_W4_Pipeline_TbbTune at 1, 2, 4, 8, 16, 64, 256
//   tokens
#include <benchmark/benchmark.h>

#include <charconv>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "workloads.hpp"

namespace sluice_bench {

std::uint64_t w5_expected_sum() {
  static const std::uint64_t sum = [] {
    std::uint64_t s = 0;
    for (std::int64_t i = 0; i < kW5Jobs; ++i)
      s += job(static_cast<std::uint64_t>(i), g_job_iters);
    return s;
  }();
  return sum;
}

void BM_W5_Serial(benchmark::State& state) {
  std::uint64_t sum = 0;
  const int iters = g_job_iters;
  for (auto _ : state) {
    sum = 0;
    for (std::int64_t i = 0; i < kW5Jobs; ++i)
      sum += job(static_cast<std::uint64_t>(i), iters);
    benchmark::DoNotOptimize(sum);
  }
  finish(state, kW5Jobs, sum, w5_expected_sum());
}

}  // namespace sluice_bench

namespace {

// Parses "--name=<non-negative integer>"; true when arg is that flag.
bool int_flag(std::string_view arg, std::string_view name, long& out) {
  if (!arg.starts_with(name) || arg.size() <= name.size() ||
      arg[name.size()] != '=')
    return false;
  const std::string_view v = arg.substr(name.size() + 1);
  long value = 0;
  const auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), value);
  if (ec != std::errc{} || end != v.data() + v.size() || value < 0) {
    std::fprintf(stderr, "bench_patterns: bad value in %.*s\n",
                 static_cast<int>(arg.size()), arg.data());
    std::exit(2);
  }
  out = value;
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace sluice_bench;
  long reps = 5;
  long job_iters = kJobItersDefault;
  long tbb_tokens = static_cast<long>(kTbbTokensDefault);
  long w6_jobs = static_cast<long>(kW6JobsDefault);
  bool tbb_tune = false;
  std::vector<char*> rest;
  for (int i = 0; i < argc; ++i) {
    const std::string_view a = argv[i];
    if (i == 0) {
      rest.push_back(argv[i]);
    } else if (int_flag(a, "--reps", reps) ||
               int_flag(a, "--job_iters", job_iters) ||
               int_flag(a, "--tbb_tokens", tbb_tokens) ||
               int_flag(a, "--w6_jobs", w6_jobs)) {
    } else if (a == "--tbb_tune") {
      tbb_tune = true;
    } else {
      rest.push_back(argv[i]);
    }
  }
  if (reps < 1 || tbb_tokens < 1) {
    std::fprintf(stderr,
                 "bench_patterns: --reps and --tbb_tokens must be >= 1\n");
    return 2;
  }
  g_job_iters = static_cast<int>(job_iters);
  g_tbb_tokens = static_cast<std::size_t>(tbb_tokens);
  g_w6_jobs = w6_jobs > 0 ? w6_jobs : kW6JobsDefault;

  int rest_argc = static_cast<int>(rest.size());
  rest.push_back(nullptr);
  benchmark::Initialize(&rest_argc, rest.data());
  if (benchmark::ReportUnrecognizedArguments(rest_argc, rest.data())) return 2;

  char check[32];
  std::snprintf(check, sizeof check, "0x%016llx",
                static_cast<unsigned long long>(job_check(g_job_iters)));
  benchmark::AddCustomContext("job_iters", std::to_string(g_job_iters));
  benchmark::AddCustomContext("job_check", check);
  benchmark::AddCustomContext("reps", std::to_string(reps));
  benchmark::AddCustomContext("tbb_tokens", std::to_string(g_tbb_tokens));

  // Every workload is big: one iteration per repetition, wall-clock time,
  // and only the aggregates (the script reads the median) are reported.
  const auto reg = [reps](const char* name, void (*fn)(benchmark::State&)) {
    return benchmark::RegisterBenchmark(name, fn)
        ->UseRealTime()
        ->Unit(benchmark::kMillisecond)
        ->Iterations(1)
        ->Repetitions(static_cast<int>(reps))
        ->ReportAggregatesOnly(true);
  };
  reg("BM_W1_Spsc_Sluice", BM_W1_Spsc_Sluice);
  reg("BM_W1_Spsc_SluiceBatch", BM_W1_Spsc_SluiceBatch);
  reg("BM_W1_Spsc_MutexCv", BM_W1_Spsc_MutexCv);
  reg("BM_W1_Spsc_BoostFiber", BM_W1_Spsc_BoostFiber);
  reg("BM_W2_Mpmc_Sluice", BM_W2_Mpmc_Sluice);
  reg("BM_W2_Mpmc_MutexCv", BM_W2_Mpmc_MutexCv);
  reg("BM_W2_Mpmc_BoostFiber", BM_W2_Mpmc_BoostFiber);
  reg("BM_W3_Unbuffered_Sluice", BM_W3_Unbuffered_Sluice);
  reg("BM_W3_Unbuffered_SluiceTasks", BM_W3_Unbuffered_SluiceTasks);
  reg("BM_W3_Unbuffered_MutexCv", BM_W3_Unbuffered_MutexCv);
  reg("BM_W3_Unbuffered_BoostFiber", BM_W3_Unbuffered_BoostFiber);
  reg("BM_W3_Floor_AtomicPingPong", BM_W3_Floor_AtomicPingPong);
  reg("BM_W4_Pipeline_Sluice", BM_W4_Pipeline_Sluice);
  reg("BM_W4_Pipeline_SluiceTasks", BM_W4_Pipeline_SluiceTasks);
  reg("BM_W4_Pipeline_Tbb", BM_W4_Pipeline_Tbb);
  if (tbb_tune) {
    reg("BM_W4_Pipeline_TbbTune", BM_W4_Pipeline_TbbTune)
        ->ArgName("max_tokens")
        ->Arg(1)
        ->Arg(2)
        ->Arg(4)
        ->Arg(8)
        ->Arg(16)
        ->Arg(64)
        ->Arg(256);
  }
  reg("BM_W4_Pipeline_MutexCv", BM_W4_Pipeline_MutexCv);
  reg("BM_W4_Pipeline_BoostFiber", BM_W4_Pipeline_BoostFiber);
  reg("BM_W5_Serial", BM_W5_Serial);
  reg("BM_W5_WorkerPool_Sluice", BM_W5_WorkerPool_Sluice);
  reg("BM_W5_WorkerPool_MutexCv", BM_W5_WorkerPool_MutexCv);
  reg("BM_W6_IoFanOut_SluiceTasks", BM_W6_IoFanOut_SluiceTasks);
  reg("BM_W7_SelectFanIn_SluiceTasks", BM_W7_SelectFanIn_SluiceTasks);

  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
