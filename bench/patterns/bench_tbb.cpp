// Baseline for W4: oneTBB's parallel_pipeline. serial_in_order input filter
// (the generator) -> parallel map x*2 -> parallel map x+1 ->
// serial_out_of_order sum. TBB runs it on its own pool (main thread + workers,
// default concurrency = hardware threads).
#include <oneapi/tbb/parallel_pipeline.h>

#include <cstdint>

#include "workloads.hpp"

namespace sluice_bench {

namespace {

void run_pipeline(benchmark::State& state, std::size_t tokens) {
  std::int64_t sum = 0;
  for (auto _ : state) {
    std::int64_t next = 0;
    sum = 0;
    oneapi::tbb::parallel_pipeline(
        tokens, oneapi::tbb::make_filter<void, std::int64_t>(
                    oneapi::tbb::filter_mode::serial_in_order,
                    [&next](oneapi::tbb::flow_control& fc) -> std::int64_t {
                      if (next >= kW4Items) {
                        fc.stop();
                        return 0;
                      }
                      return next++;
                    }) &
                    oneapi::tbb::make_filter<std::int64_t, std::int64_t>(
                        oneapi::tbb::filter_mode::parallel,
                        [](std::int64_t x) { return x * 2; }) &
                    oneapi::tbb::make_filter<std::int64_t, std::int64_t>(
                        oneapi::tbb::filter_mode::parallel,
                        [](std::int64_t x) { return x + 1; }) &
                    oneapi::tbb::make_filter<std::int64_t, void>(
                        oneapi::tbb::filter_mode::serial_out_of_order,
                        [&sum](std::int64_t x) { sum += x; }));
  }
  state.counters["max_tokens"] = static_cast<double>(tokens);
  finish(state, kW4Items, sum, w4_expected_sum(kW4Items));
}

}  // namespace

void BM_W4_Pipeline_Tbb(benchmark::State& state) {
  run_pipeline(state, g_tbb_tokens);
}

void BM_W4_Pipeline_TbbTune(benchmark::State& state) {
  run_pipeline(state, static_cast<std::size_t>(state.range(0)));
}

}  // namespace sluice_bench
