// Unit tests of two engine features, with real processors and aggregates
// from a YAML config and no sockets: windowed aggregates (aggregate.window:
// {items: N} and {every: D}, emitted as window records in the job's result
// log) and per-key ordering (a stage's `key:` shards its workers by key).
#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "service/config/config.hpp"
#include "service/engine/engine.hpp"
#include "service/http/views.hpp"
#include "service/metrics/metrics.hpp"
#include "service/processors/checks.hpp"
#include "sluice/patterns/runtime.hpp"
#include "tests/support/wait_finished.hpp"

namespace sluice::engine {
namespace {

// GET /v1/pipelines' JSON of the engine, as the router renders it.
nlohmann::json PipelinesView(const Engine& engine) {
  return http::PipelinesJson(engine.Pipelines());
}

using namespace std::chrono_literals;
using nlohmann::json;

config::Config Load(const std::string& yaml) {
  auto loaded = config::LoadConfigText(yaml, processors::ConfigChecks());
  if (!loaded.ok()) {
    for (const auto& e : loaded.error()) ADD_FAILURE() << config::ToString(e);
    return {};
  }
  return std::move(loaded).value();
}

using test_support::WaitFinished;

std::shared_ptr<jobs::Job> RunJob(Engine& engine, const std::string& pipeline,
                                  std::vector<json> items,
                                  std::optional<bool> ordered = std::nullopt) {
  auto r = engine.Submit({pipeline, std::move(items), ordered});
  EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.error().message);
  if (!r.ok()) return nullptr;
  EXPECT_TRUE(WaitFinished(r.value())) << "job did not finish";
  return r.value();
}

// The window records of a finished job, in log order, and the positions of
// the value records before each.
struct Log {
  std::vector<jobs::ResultRecord> windows;
  std::vector<jobs::ResultRecord> values;
  std::vector<std::size_t> values_before_window;
};

Log Split(const jobs::Job& job) {
  Log log;
  for (auto& r : job.Results(0, job.result_count())) {
    if (r.window) {
      log.values_before_window.push_back(log.values.size());
      log.windows.push_back(std::move(r));
    } else {
      log.values.push_back(std::move(r));
    }
  }
  return log;
}

std::vector<json> Numbers(int n) {
  std::vector<json> items;
  for (int i = 0; i < n; ++i) items.push_back({{"i", i}});
  return items;
}

// ---- windows ---------------------------------------------------------------

constexpr const char* kWindows = R"(
pipelines:
  - name: count10
    stages: [ { processor: passthrough, workers: 3 } ]
    aggregate: { type: count, window: { items: 10 } }
  - name: sum4
    stages: [ { processor: passthrough, workers: 3 } ]
    aggregate: { type: sum, field: /i, window: { items: 4 } }
  - name: plain
    stages: [ { processor: passthrough } ]
    aggregate: { type: count }
  - name: timed
    stages: [ { processor: { type: delay, duration: 5ms }, workers: 1 } ]
    aggregate: { type: count, window: { every: 50ms } }
  - name: evens
    stages:
      - { processor: { type: filter, field: /i, op: "<", value: 7 } }
    aggregate: { type: count, window: { items: 3 } }
)";

TEST(EngineWindowTest, ItemWindowsCloseEveryNValuesAndTheLastWithTheJob) {
  metrics::Metrics metrics("test");
  Engine engine(Load(kWindows), metrics);
  auto job = RunJob(engine, "count10", Numbers(95));
  ASSERT_TRUE(job);
  const Log log = Split(*job);
  ASSERT_EQ(log.windows.size(), 10U);
  for (std::size_t k = 0; k < log.windows.size(); ++k) {
    EXPECT_EQ(*log.windows[k].window, k);
    EXPECT_EQ(log.windows[k].value, k < 9 ? 10 : 5) << "window " << k;
    // Each window record follows exactly its values.
    EXPECT_EQ(log.values_before_window[k],
              std::min<std::size_t>(95, 10 * (k + 1)));
  }
  // Windows are neither results nor errors; the whole-job aggregate stays.
  EXPECT_EQ(job->counts().out, 95U);
  EXPECT_EQ(job->counts().errors, 0U);
  EXPECT_EQ(job->aggregate(), 95);
  EXPECT_EQ(jobs::ToJson(log.windows[3]),
            json({{"type", "aggregate"}, {"window", 3}, {"value", 10}}));
}

TEST(EngineWindowTest, OrderedJobsGetWindowsOverTheirInputOrder) {
  metrics::Metrics metrics("test");
  Engine engine(Load(kWindows), metrics);
  auto job = RunJob(engine, "sum4", Numbers(10), /*ordered=*/true);
  ASSERT_TRUE(job);
  const Log log = Split(*job);
  ASSERT_EQ(log.windows.size(), 3U);
  EXPECT_EQ(log.windows[0].value, 0 + 1 + 2 + 3);
  EXPECT_EQ(log.windows[1].value, 4 + 5 + 6 + 7);
  EXPECT_EQ(log.windows[2].value, 8 + 9);
  EXPECT_EQ(job->aggregate(), 45);
}

TEST(EngineWindowTest, FilteredItemsDoNotCountTowardsAWindow) {
  metrics::Metrics metrics("test");
  Engine engine(Load(kWindows), metrics);
  auto job = RunJob(engine, "evens", Numbers(20));
  ASSERT_TRUE(job);
  const Log log = Split(*job);
  // 7 values pass (0..6): windows of 3, 3 and 1.
  ASSERT_EQ(log.windows.size(), 3U);
  EXPECT_EQ(log.windows[0].value, 3);
  EXPECT_EQ(log.windows[1].value, 3);
  EXPECT_EQ(log.windows[2].value, 1);
  EXPECT_EQ(job->counts().filtered, 13U);
}

TEST(EngineWindowTest, ExactMultipleEmitsNoEmptyFinalWindow) {
  metrics::Metrics metrics("test");
  Engine engine(Load(kWindows), metrics);
  auto job = RunJob(engine, "count10", Numbers(30));
  ASSERT_TRUE(job);
  const Log log = Split(*job);
  ASSERT_EQ(log.windows.size(), 3U);
  for (const auto& w : log.windows) EXPECT_EQ(w.value, 10);
}

TEST(EngineWindowTest, WithoutAWindowThereAreNoWindowRecords) {
  metrics::Metrics metrics("test");
  Engine engine(Load(kWindows), metrics);
  auto job = RunJob(engine, "plain", Numbers(25));
  ASSERT_TRUE(job);
  EXPECT_TRUE(Split(*job).windows.empty());
  EXPECT_EQ(job->result_count(), 25U);
  EXPECT_EQ(job->aggregate(), 25);
}

TEST(EngineWindowTest, TimeWindowsCloseWhileTheJobRuns) {
  metrics::Metrics metrics("test");
  Engine engine(Load(kWindows), metrics);
  // 60 items x 5 ms on one worker: about 300 ms, so several 50 ms windows.
  auto submitted = engine.Submit({"timed", Numbers(60), std::nullopt});
  ASSERT_TRUE(submitted.ok());
  auto job = submitted.value();
  // A window record shows up before the job finishes.
  bool window_while_running = false;
  const auto deadline = std::chrono::steady_clock::now() + 30s;
  while (!job->finished() && std::chrono::steady_clock::now() < deadline) {
    for (const auto& r : job->Results(0, job->result_count())) {
      if (r.window && !job->finished()) window_while_running = true;
    }
    if (window_while_running) break;
    std::this_thread::sleep_for(5ms);
  }
  EXPECT_TRUE(window_while_running);
  ASSERT_TRUE(WaitFinished(job));
  const Log log = Split(*job);
  ASSERT_GE(log.windows.size(), 2U);
  std::int64_t total = 0;
  for (std::size_t k = 0; k < log.windows.size(); ++k) {
    if (k > 0) {
      EXPECT_GT(*log.windows[k].window, *log.windows[k - 1].window);
    }
    EXPECT_GT(log.windows[k].value.get<std::int64_t>(), 0);
    total += log.windows[k].value.get<std::int64_t>();
  }
  EXPECT_EQ(total, 60);
  EXPECT_EQ(job->aggregate(), 60);
}

TEST(EngineWindowTest, WindowOnCollectIsAConfigError) {
  auto loaded = config::LoadConfigText(R"(
pipelines:
  - name: p
    stages: [ { processor: passthrough } ]
    aggregate: { type: collect, window: { items: 5 } }
)",
                                       processors::ConfigChecks());
  ASSERT_FALSE(loaded.ok());
  const auto* errors = &loaded.error();
  ASSERT_EQ(errors->size(), 1U);
  EXPECT_EQ((*errors)[0].path, "pipelines[0].aggregate.window");
}

TEST(EngineWindowTest, BadWindowsNameTheirKeys) {
  const std::map<std::string, std::string> cases = {
      {"{ items: 0 }", "pipelines[0].aggregate.window.items: must be >= 1"},
      {"{ every: 1ms }",
       "pipelines[0].aggregate.window.every: must be >= 10ms"},
      {"{ items: 5, every: 1s }",
       "pipelines[0].aggregate.window: takes items or every, not both"},
      {"{}",
       "pipelines[0].aggregate.window: needs one of items (a count, e.g. "
       "{items: 100}) or every (a period, e.g. {every: 1s})"},
      {"{ size: 5 }", "pipelines[0].aggregate.window.size: unknown key"},
  };
  for (const auto& [window, expected] : cases) {
    auto loaded = config::LoadConfigText(
        "pipelines:\n  - name: p\n    stages: [ { processor: passthrough } ]\n"
        "    aggregate: { type: count, window: " +
            window + " }\n",
        processors::ConfigChecks());
    ASSERT_FALSE(loaded.ok()) << window;
    const auto* errors = &loaded.error();
    ASSERT_FALSE(errors->empty());
    EXPECT_EQ(config::ToString((*errors)[0]).rfind(expected, 0), 0U)
        << window << " gave " << config::ToString((*errors)[0]);
  }
}

// ---- per-key ordering ------------------------------------------------------

// Records, per key, the order in which items were processed and by which
// worker (a worker is a task that may move between threads; each has its
// own processor instance, which identifies it). Thread-safe.
class Recorder {
 public:
  void Record(const json& item, const void* worker) {
    std::lock_guard<std::mutex> lock(mu_);
    const std::string key = item.contains("user") ? item["user"].dump() : "-";
    order_[key].push_back(item["i"].get<int>());
    workers_[key].insert(worker);
    all_workers_.insert(worker);
  }
  std::map<std::string, std::vector<int>> order() const {
    std::lock_guard<std::mutex> lock(mu_);
    return order_;
  }
  std::map<std::string, std::set<const void*>> workers() const {
    std::lock_guard<std::mutex> lock(mu_);
    return workers_;
  }
  std::size_t worker_count() const {
    std::lock_guard<std::mutex> lock(mu_);
    return all_workers_.size();
  }

 private:
  mutable std::mutex mu_;
  std::map<std::string, std::vector<int>> order_;
  std::map<std::string, std::set<const void*>> workers_;
  std::set<const void*> all_workers_;
};

class RecordingProcessor final : public processors::Processor {
 public:
  explicit RecordingProcessor(Recorder* recorder) : recorder_(recorder) {}
  processors::Outcome Process(json item) override {
    std::this_thread::sleep_for(Jitter(item));
    recorder_->Record(item, this);
    return processors::Outcome::Value(std::move(item));
  }
  Task<processors::Outcome> ProcessAsync(json item) override {
    co_await sleep_for(Jitter(item));
    recorder_->Record(item, this);
    co_return processors::Outcome::Value(std::move(item));
  }
  bool io_bound() const override { return true; }

 private:
  // A little jitter, so an unsharded stage would reorder.
  static std::chrono::microseconds Jitter(const json& item) {
    return std::chrono::microseconds((item["i"].get<int>() * 7919) % 200);
  }
  Recorder* recorder_;
};

class EngineKeyTest : public ::testing::TestWithParam<int> {};

TEST_P(EngineKeyTest, SameKeyIsProcessedByOneWorkerInArrivalOrder) {
  const int workers = GetParam();
  Recorder recorder;
  EngineOptions options;
  options.make_processor = [&recorder](const config::StageConfig& stage)
      -> std::unique_ptr<processors::Processor> {
    if (stage.processor.type == "passthrough") {
      return std::make_unique<RecordingProcessor>(&recorder);
    }
    auto made = processors::MakeProcessor(stage.processor);
    return made.ok() ? std::move(made).value() : nullptr;
  };
  metrics::Metrics metrics("test");
  Engine engine(Load(R"(
pipelines:
  - name: keyed
    stages:
      - { name: by_user, processor: passthrough, workers: )" +
                     std::to_string(workers) + R"(, key: /user }
)"),
                metrics, options);
  constexpr int kUsers = 9;
  constexpr int kItems = 900;
  std::vector<json> items;
  for (int i = 0; i < kItems; ++i) {
    items.push_back({{"user", "u" + std::to_string(i % kUsers)}, {"i", i}});
  }
  // Items without the key all share the null key.
  for (int i = kItems; i < kItems + 20; ++i) items.push_back({{"i", i}});
  auto job = RunJob(engine, "keyed", std::move(items));
  ASSERT_TRUE(job);
  EXPECT_EQ(job->counts().out, static_cast<std::uint64_t>(kItems + 20));
  const auto order = recorder.order();
  ASSERT_EQ(order.size(), static_cast<std::size_t>(kUsers + 1));
  for (const auto& [key, seen] : order) {
    EXPECT_TRUE(std::is_sorted(seen.begin(), seen.end())) << "key " << key;
  }
  for (const auto& [key, by] : recorder.workers()) {
    EXPECT_EQ(by.size(), 1U) << "key " << key;
  }
  // Different keys ran on more than one worker.
  if (workers > 1) {
    EXPECT_GT(recorder.worker_count(), 1U);
  }
  // The pipelines view shows the key.
  const json view = PipelinesView(engine);
  EXPECT_EQ(view["pipelines"][0]["stages"][0]["key"], "/user");
}

INSTANTIATE_TEST_SUITE_P(Workers, EngineKeyTest, ::testing::Values(1, 2, 4, 8),
                         [](const ::testing::TestParamInfo<int>& p) {
                           return "w" + std::to_string(p.param);
                         });

TEST(EngineKeyTest, OrderedKeyedPipelineKeepsInputOrderEndToEnd) {
  metrics::Metrics metrics("test");
  Engine engine(Load(R"(
pipelines:
  - name: keyed
    ordered: true
    stages:
      - { processor: { type: delay, duration: 1ms }, workers: 4, key: /user }
      - { processor: { type: set, fields: { /seen: true } }, workers: 2, key: /user }
)"),
                metrics);
  std::vector<json> items;
  for (int i = 0; i < 200; ++i) {
    items.push_back({{"user", i % 5}, {"i", i}});
  }
  auto job = RunJob(engine, "keyed", std::move(items));
  ASSERT_TRUE(job);
  const auto results = job->Results(0, job->result_count());
  ASSERT_EQ(results.size(), 200U);
  for (std::size_t i = 0; i < results.size(); ++i) {
    EXPECT_EQ(results[i].seq, i);
    EXPECT_EQ(results[i].value["i"], i);
    EXPECT_EQ(results[i].value["seen"], true);
  }
}

TEST(EngineKeyTest, BadKeyPointerIsAConfigError) {
  auto loaded = config::LoadConfigText(R"(
pipelines:
  - name: p
    stages: [ { processor: passthrough, key: user } ]
)",
                                       processors::ConfigChecks());
  ASSERT_FALSE(loaded.ok());
  const auto* errors = &loaded.error();
  ASSERT_EQ(errors->size(), 1U);
  EXPECT_EQ((*errors)[0].path, "pipelines[0].stages[0].key");
}

}  // namespace
}  // namespace sluice::engine
