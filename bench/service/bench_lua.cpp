// Benchmarks of the `lua` processor against the built-in `set` doing the
// same work (bench/RESULTS.md, "Lua vs built-in set (issue 4)"):
//
//   BM_SetStage_Process            set {/tag: "t"}, Processor::Process in a
//   loop BM_LuaStage_Process_SetOnly    x.tag = "t" in Lua: the like-for-like
//   pair BM_LuaStage_Process_Transform  x.n = x.n + 1; x.tag = "t"
//   BM_*_Engine/workers:W          the same stages end to end through an
//                                  engine::Engine: submit kEngineItems items
//                                  as one job, wait until it is done
//
// Items are {"n": 1, "name": "a"}. Every figure is items/s
// (state.SetItemsProcessed); the engine runs check the job's counts.
#include <benchmark/benchmark.h>

#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "service/config/config.hpp"
#include "service/engine/engine.hpp"
#include "service/metrics/metrics.hpp"
#include "service/processors/processor.hpp"
#include "tests/support/wait_finished.hpp"

namespace {

using nlohmann::json;
using sluice::config::ProcessorSpec;

constexpr const char* kTransform =
    "function process(x) x.n = x.n + 1; x.tag = \"t\"; return x end";
constexpr const char* kSetOnly =
    "function process(x) x.tag = \"t\"; return x end";
constexpr int kEngineItems = 100000;

ProcessorSpec LuaSpec(const char* script) {
  return {"lua", json{{"script", script}}};
}

ProcessorSpec SetSpec() { return {"set", json{{"fields", {{"/tag", "t"}}}}}; }

json Item(int n) { return json{{"n", n}, {"name", "a"}}; }

// ---- Processor::Process ---------------------------------------------------

void RunProcess(benchmark::State& state, const ProcessorSpec& spec) {
  auto made = sluice::processors::MakeProcessor(spec);
  if (!made.ok()) {
    state.SkipWithError("cannot make the processor");
    return;
  }
  auto p = std::move(made).value();
  const json item = Item(1);
  for (auto _ : state) {
    // The copy is part of both contenders' cost: the engine hands each
    // processor an item it owns.
    sluice::processors::Outcome o = p->Process(item);
    if (o.kind != sluice::processors::Outcome::kValues) {
      state.SkipWithError(o.error.c_str());
      return;
    }
    benchmark::DoNotOptimize(o);
  }
  state.SetItemsProcessed(state.iterations());
}

void BM_SetStage_Process(benchmark::State& state) {
  RunProcess(state, SetSpec());
}
void BM_LuaStage_Process_SetOnly(benchmark::State& state) {
  RunProcess(state, LuaSpec(kSetOnly));
}
void BM_LuaStage_Process_Transform(benchmark::State& state) {
  RunProcess(state, LuaSpec(kTransform));
}
BENCHMARK(BM_SetStage_Process);
BENCHMARK(BM_LuaStage_Process_SetOnly);
BENCHMARK(BM_LuaStage_Process_Transform);

// ---- through the engine
// ------------------------------------------------------

void RunEngine(benchmark::State& state, const ProcessorSpec& spec) {
  sluice::config::StageConfig stage;
  stage.name = "stage";
  stage.processor = spec;
  stage.workers = static_cast<std::size_t>(state.range(0));
  sluice::config::PipelineConfig pipeline;
  pipeline.name = "bench";
  pipeline.stages.push_back(stage);
  sluice::config::Config config;
  config.pipelines.push_back(pipeline);
  // Finished jobs need not linger: each run's results are checked by count.
  config.jobs.retention = std::chrono::milliseconds(1000);

  sluice::metrics::Metrics metrics("bench");
  sluice::engine::Engine engine(config, metrics);
  std::vector<json> items;
  items.reserve(kEngineItems);
  for (int i = 0; i < kEngineItems; ++i) items.push_back(Item(i));

  for (auto _ : state) {
    state.PauseTiming();
    std::vector<json> batch = items;
    state.ResumeTiming();
    auto job = engine.Submit({"bench", std::move(batch), std::nullopt});
    if (!job.ok() || !sluice::test_support::WaitFinished(
                         job.value(), std::chrono::minutes(5))) {
      state.SkipWithError("job did not finish");
      break;
    }
    if (job.value()->counts().out != static_cast<std::uint64_t>(kEngineItems)) {
      state.SkipWithError("wrong number of results");
      break;
    }
  }
  state.SetItemsProcessed(state.iterations() * kEngineItems);
  engine.Shutdown(std::chrono::milliseconds(0));
}

void BM_SetStage_Engine(benchmark::State& state) {
  RunEngine(state, SetSpec());
}
void BM_LuaStage_Engine_SetOnly(benchmark::State& state) {
  RunEngine(state, LuaSpec(kSetOnly));
}
void BM_LuaStage_Engine_Transform(benchmark::State& state) {
  RunEngine(state, LuaSpec(kTransform));
}

void EngineArgs(benchmark::internal::Benchmark* b) {
  b->ArgName("workers")->Arg(1)->Arg(2)->UseRealTime()->Unit(
      benchmark::kMillisecond);
}
BENCHMARK(BM_SetStage_Engine)->Apply(EngineArgs);
BENCHMARK(BM_LuaStage_Engine_SetOnly)->Apply(EngineArgs);
BENCHMARK(BM_LuaStage_Engine_Transform)->Apply(EngineArgs);

}  // namespace
