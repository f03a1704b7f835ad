// Unit tests of sluice::engine::Engine with real threads and no sockets:
// accounting, ordered delivery, round-robin fairness, cancel, admission,
// shutdown, stream feeds, streaming reads and the pipelines view. Stages run
// test processors (EngineOptions::make_processor) so each test controls
// timing and outcomes exactly.
#include "service/engine/engine.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <functional>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <thread>
#include <vector>

#include "service/http/views.hpp"
#include "service/metrics/metrics.hpp"
#include "service/processors/checks.hpp"
#include "sluice/patterns/channel.hpp"
#include "sluice/patterns/runtime.hpp"
#include "tests/support/process_threads.hpp"
#include "tests/support/wait_finished.hpp"

namespace sluice::engine {
namespace {

// GET /v1/pipelines' JSON of the engine, as the router renders it.
nlohmann::json PipelinesView(const Engine& engine) {
  return http::PipelinesJson(engine.Pipelines());
}

using namespace std::chrono_literals;
using nlohmann::json;
using processors::Outcome;

// ---- test processors --------------------------------------------------------

// A processor running a function; `io_bound` as given. Stage workers are
// tasks: a processor that waits implements ProcessAsync (`async_fn`) so that
// it suspends its task instead of blocking one of the runtime's threads.
class FnProcessor final : public processors::Processor {
 public:
  using AsyncFn = std::function<Task<Outcome>(json)>;
  FnProcessor(std::function<Outcome(json)> fn, bool io_bound,
              AsyncFn async_fn = {})
      : fn_(std::move(fn)),
        async_fn_(std::move(async_fn)),
        io_bound_(io_bound) {}
  Outcome Process(json item) override { return fn_(std::move(item)); }
  Task<Outcome> ProcessAsync(json item) override {
    if (async_fn_) co_return co_await async_fn_(std::move(item));
    co_return fn_(std::move(item));
  }
  bool io_bound() const override { return io_bound_; }

 private:
  std::function<Outcome(json)> fn_;
  AsyncFn async_fn_;
  bool io_bound_;
};

// Holds workers until opened; counts how many are waiting. A thread waits
// in Pass, a task in AsyncPass; Open releases both (closing `opened_`).
class Gate {
 public:
  void Pass() {
    Arrive();
    (void)opened_.recv();
    Leave();
  }
  Task<> AsyncPass() {
    Arrive();
    (void)co_await opened_.async_recv();
    Leave();
  }
  void Open() { opened_.close(); }
  bool WaitForWaiting(int n, std::chrono::milliseconds timeout = 10s) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, timeout, [&] { return waiting_ >= n; });
  }

 private:
  void Arrive() {
    std::lock_guard<std::mutex> lock(mu_);
    ++waiting_;
    cv_.notify_all();
  }
  void Leave() {
    std::lock_guard<std::mutex> lock(mu_);
    --waiting_;
  }

  Channel<int> opened_{0};  // never sent to: closed by Open
  std::mutex mu_;
  std::condition_variable cv_;
  int waiting_ = 0;
};

void SleepMicros(std::int64_t us) {
  std::this_thread::sleep_for(std::chrono::microseconds(us));
}

std::int64_t RandomMicros(std::int64_t max) {
  thread_local std::mt19937 rng(std::random_device{}());
  return std::uniform_int_distribution<std::int64_t>(0, max)(rng);
}

// Test processor types (processor.type), parameters in processor.params:
//   drop_mod {mod}     filters items whose value % mod == 0
//   split_mod {mod}    value v -> (v % mod) parts v*10+0, v*10+1, ...
//   split_n {n}        value v -> n parts v*10+0 .. v*10+n-1
//   fail_mod {mod,rem} error "bad <v>" when v % mod == rem
//   sleep {us}         sleeps, passes on (io_bound)
//   random_sleep {max_us} sleeps 0..max_us, passes on (io_bound)
//   gate               waits at the test's gate, passes on (io_bound)
//   throw              throws std::runtime_error("kaboom")
//   pass               passes on
ProcessorFactory TestFactory(Gate* gate = nullptr) {
  return [gate](const config::StageConfig& stage)
             -> std::unique_ptr<processors::Processor> {
    const std::string& type = stage.processor.type;
    const json p = stage.processor.params;
    if (type == "drop_mod") {
      const int mod = p.at("mod");
      return std::make_unique<FnProcessor>(
          [mod](json v) {
            return v.get<int>() % mod == 0 ? Outcome::Filtered()
                                           : Outcome::Value(std::move(v));
          },
          false);
    }
    if (type == "split_mod" || type == "split_n") {
      const int mod = p.value("mod", 0);
      const int fixed = p.value("n", 0);
      return std::make_unique<FnProcessor>(
          [mod, fixed](json v) {
            const int x = v.get<int>();
            const int n = fixed > 0 ? fixed : x % mod;
            std::vector<json> parts;
            for (int i = 0; i < n; ++i) parts.push_back(x * 10 + i);
            return Outcome::Values(std::move(parts));
          },
          false);
    }
    if (type == "fail_mod") {
      const int mod = p.at("mod");
      const int rem = p.at("rem");
      return std::make_unique<FnProcessor>(
          [mod, rem](json v) {
            const int x = v.get<int>();
            return x % mod == rem ? Outcome::Fail("bad " + std::to_string(x))
                                  : Outcome::Value(std::move(v));
          },
          false);
    }
    if (type == "sleep") {
      const std::int64_t us = p.at("us");
      return std::make_unique<FnProcessor>(
          [us](json v) {
            SleepMicros(us);
            return Outcome::Value(std::move(v));
          },
          true,
          [us](json v) -> Task<Outcome> {
            co_await sleep_for(std::chrono::microseconds(us));
            co_return Outcome::Value(std::move(v));
          });
    }
    if (type == "random_sleep") {
      const std::int64_t max_us = p.at("max_us");
      return std::make_unique<FnProcessor>(
          [max_us](json v) {
            SleepMicros(RandomMicros(max_us));
            return Outcome::Value(std::move(v));
          },
          true,
          [max_us](json v) -> Task<Outcome> {
            co_await sleep_for(std::chrono::microseconds(RandomMicros(max_us)));
            co_return Outcome::Value(std::move(v));
          });
    }
    if (type == "gate") {
      return std::make_unique<FnProcessor>(
          [gate](json v) {
            gate->Pass();
            return Outcome::Value(std::move(v));
          },
          true,
          [gate](json v) -> Task<Outcome> {
            co_await gate->AsyncPass();
            co_return Outcome::Value(std::move(v));
          });
    }
    if (type == "throw") {
      return std::make_unique<FnProcessor>(
          [](json) -> Outcome { throw std::runtime_error("kaboom"); }, false);
    }
    return std::make_unique<FnProcessor>(
        [](json v) { return Outcome::Value(std::move(v)); }, false);
  };
}

// Counts the values folded in (stand-in for the `count` aggregate).
class CountAggregator final : public processors::Aggregator {
 public:
  void Add(const json&) override { ++n_; }
  json Result() const override { return n_; }

 private:
  std::int64_t n_ = 0;
};

AggregatorFactory TestAggregators() {
  return [](const config::AggregateSpec& spec)
             -> std::unique_ptr<processors::Aggregator> {
    if (spec.type == "count") return std::make_unique<CountAggregator>();
    return nullptr;  // collect: aggregate null
  };
}

// ---- config helpers ---------------------------------------------------------

config::StageConfig Stage(std::string name, std::string type,
                          std::size_t workers, std::size_t buffer,
                          json params = json::object()) {
  config::StageConfig s;
  s.name = std::move(name);
  s.processor.type = std::move(type);
  s.processor.params = std::move(params);
  s.workers = workers;
  s.buffer = buffer;
  return s;
}

config::PipelineConfig Pipe(std::string name,
                            std::vector<config::StageConfig> stages,
                            bool ordered = false,
                            std::string aggregate = "collect") {
  config::PipelineConfig p;
  p.name = std::move(name);
  p.stages = std::move(stages);
  p.ordered = ordered;
  p.aggregate.type = std::move(aggregate);
  return p;
}

config::Config Config(std::vector<config::PipelineConfig> pipelines,
                      std::uint64_t max_pending = 1000000) {
  config::Config c;
  c.pipelines = std::move(pipelines);
  c.jobs.max_pending_items = max_pending;
  return c;
}

EngineOptions Options(Gate* gate = nullptr) {
  EngineOptions o;
  o.make_processor = TestFactory(gate);
  o.make_aggregator = TestAggregators();
  o.sample_interval = 20ms;
  return o;
}

std::vector<json> Ints(int n, int from = 0) {
  std::vector<json> items;
  items.reserve(n);
  for (int i = 0; i < n; ++i) items.push_back(from + i);
  return items;
}

using test_support::WaitFinished;

std::shared_ptr<jobs::Job> MustSubmit(Engine& engine, SubmitRequest request) {
  auto r = engine.Submit(std::move(request));
  EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.error().message);
  return r.ok() ? r.value() : nullptr;
}

template <class Pred>
bool Eventually(Pred pred, std::chrono::milliseconds timeout = 10s) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (pred()) return true;
    std::this_thread::sleep_for(1ms);
  }
  return pred();
}

// ---- accounting -------------------------------------------------------------

// What the 3-stage accounting pipeline does to input x, by hand:
// drop x%5==0; split into x%3 parts x*10+i (0 parts: filtered); error when a
// part % 7 == 3.
struct Expected {
  std::uint64_t out = 0, filtered = 0, errors = 0;
  std::map<std::uint64_t, std::multiset<int>> values;  // seq -> part values
  std::map<std::uint64_t, int> error_count;            // seq -> errors
};
Expected ExpectedFor(int n) {
  Expected e;
  for (int x = 0; x < n; ++x) {
    if (x % 5 == 0 || x % 3 == 0) {
      ++e.filtered;
      continue;
    }
    for (int i = 0; i < x % 3; ++i) {
      const int part = x * 10 + i;
      if (part % 7 == 3) {
        ++e.errors;
        ++e.error_count[x];
      } else {
        ++e.out;
        e.values[x].insert(part);
      }
    }
  }
  return e;
}

config::PipelineConfig AccountingPipe(std::string name, bool ordered) {
  return Pipe(std::move(name),
              {Stage("drop", "drop_mod", 3, 4, {{"mod", 5}}),
               Stage("split", "split_mod", 2, 8, {{"mod", 3}}),
               Stage("fail", "fail_mod", 2, 2, {{"mod", 7}, {"rem", 3}})},
              ordered, "count");
}

void CheckAccounting(const std::shared_ptr<jobs::Job>& job, int n) {
  const Expected want = ExpectedFor(n);
  ASSERT_TRUE(WaitFinished(job)) << job->Status().dump();
  EXPECT_EQ(job->state(), jobs::JobState::kDone);
  const jobs::Counts c = job->counts();
  EXPECT_EQ(c.in, static_cast<std::uint64_t>(n));
  EXPECT_EQ(c.out, want.out);
  EXPECT_EQ(c.filtered, want.filtered);
  EXPECT_EQ(c.errors, want.errors);
  EXPECT_EQ(c.cancelled, 0u);
  EXPECT_EQ(job->aggregate(), json(want.out)) << "count aggregate";

  // Item by item: every input seq ended as exactly what the stages made.
  const auto records = job->Results(0, 1u << 30);
  ASSERT_EQ(records.size(), want.out + want.errors);
  std::map<std::uint64_t, std::multiset<int>> values;
  std::map<std::uint64_t, int> errors;
  for (const auto& r : records) {
    ASSERT_LT(r.seq, static_cast<std::uint64_t>(n));
    if (r.is_error) {
      EXPECT_EQ(r.stage, "fail");
      EXPECT_EQ(r.error.rfind("bad ", 0), 0u) << r.error;
      ++errors[r.seq];
    } else {
      values[r.seq].insert(r.value.get<int>());
    }
  }
  EXPECT_EQ(values, want.values);
  EXPECT_EQ(errors, want.error_count);
  std::uint64_t with_output = 0;
  for (int x = 0; x < n; ++x) {
    if (values.count(x) || errors.count(x)) ++with_output;
  }
  // Items that made records + items filtered whole = in (no item here is
  // both: a part filtered only happens by the 0-way split of a whole item).
  EXPECT_EQ(with_output + want.filtered, static_cast<std::uint64_t>(n));
}

TEST(EngineTest, AccountingAddsUpAcrossFilterSplitAndErrors) {
  metrics::Metrics metrics("test");
  Engine engine(Config({AccountingPipe("acc", false)}), metrics, Options());
  constexpr int kItems = 3000;
  // Several jobs at once, so the aggregator routes each result to its job.
  std::vector<std::shared_ptr<jobs::Job>> jobs;
  for (int j = 0; j < 4; ++j) {
    jobs.push_back(MustSubmit(engine, {"acc", Ints(kItems), std::nullopt}));
    ASSERT_NE(jobs.back(), nullptr);
  }
  for (const auto& job : jobs) CheckAccounting(job, kItems);
  EXPECT_EQ(engine.pending_items(), 0u);

  // Stage counters add up too.
  const json stages = PipelinesView(engine)["pipelines"][0]["stages"];
  const Expected want = ExpectedFor(kItems);
  EXPECT_EQ(stages[0]["items"]["in"], 4 * kItems);
  EXPECT_EQ(stages[0]["items"]["filtered"], 4 * (kItems / 5));
  const std::uint64_t into_fail = stages[2]["items"]["in"];
  EXPECT_EQ(into_fail, 4 * (want.out + want.errors));
  EXPECT_EQ(stages[2]["items"]["errors"], 4 * want.errors);
  EXPECT_EQ(stages[2]["items"]["out"], 4 * want.out);

  // Job metrics are updated right after the job's waiters were woken.
  EXPECT_TRUE(Eventually([&] {
    return metrics.Serialize().find(
               "sluice_jobs_total{pipeline=\"acc\",state=\"done\"} 4") !=
           std::string::npos;
  })) << metrics.Serialize();
  const std::string text = metrics.Serialize();
  EXPECT_NE(text.find("sluice_items_total{outcome=\"error\",pipeline=\"acc\","
                      "stage=\"fail\"} " +
                      std::to_string(4 * want.errors)),
            std::string::npos)
      << text;
}

TEST(EngineTest, OrderedJobsGetTheSameAccounting) {
  metrics::Metrics metrics("test");
  Engine engine(Config({AccountingPipe("acc", true)}), metrics, Options());
  auto job = MustSubmit(engine, {"acc", Ints(2000), std::nullopt});
  CheckAccounting(job, 2000);
}

TEST(EngineTest, ProcessorThatThrowsBecomesAnErrorRecord) {
  metrics::Metrics metrics("test");
  Engine engine(Config({Pipe("t", {Stage("boom", "throw", 2, 4)})}), metrics,
                Options());
  auto job = MustSubmit(engine, {"t", Ints(10), std::nullopt});
  ASSERT_TRUE(WaitFinished(job));
  EXPECT_EQ(job->state(), jobs::JobState::kDone) << "item errors: still done";
  EXPECT_EQ(job->counts().errors, 10u);
  const auto records = job->Results(0, 100);
  ASSERT_EQ(records.size(), 10u);
  EXPECT_EQ(jobs::ToJson(records[0]).at("stage"), "boom");
  EXPECT_NE(records[0].error.find("kaboom"), std::string::npos);
}

TEST(EngineTest, EmptyJobFinishesDone) {
  metrics::Metrics metrics("test");
  Engine engine(Config({Pipe("p", {Stage("s", "pass", 1, 4)})}), metrics,
                Options());
  auto job = MustSubmit(engine, {"p", {}, std::nullopt});
  ASSERT_TRUE(WaitFinished(job));
  const json s = job->Status();
  EXPECT_EQ(s["state"], "done");
  EXPECT_EQ(s["items"]["in"], 0);
  EXPECT_TRUE(s["started_at"].is_string());
  EXPECT_TRUE(s["finished_at"].is_string());
}

TEST(EngineTest, AnyJsonValueIsAnItem) {
  metrics::Metrics metrics("test");
  Engine engine(Config({Pipe("p", {Stage("s", "pass", 2, 4)}, true)}), metrics,
                Options());
  std::vector<json> items = {nullptr,           1,    "two", json::array({3}),
                             json{{"four", 4}}, true, 2.5};
  auto job = MustSubmit(engine, {"p", items, std::nullopt});
  ASSERT_TRUE(WaitFinished(job));
  const auto records = job->Results(0, 100);
  ASSERT_EQ(records.size(), items.size());
  for (std::size_t i = 0; i < items.size(); ++i) {
    EXPECT_EQ(records[i].seq, i);
    EXPECT_EQ(records[i].value, items[i]);
  }
}

// ---- ordered delivery -------------------------------------------------------

// Checks the records are in (seq, part) order with every part present.
void CheckOrdered(const std::shared_ptr<jobs::Job>& job, int n, int parts) {
  ASSERT_TRUE(WaitFinished(job));
  const auto records = job->Results(0, 1u << 30);
  ASSERT_EQ(records.size(), static_cast<std::size_t>(n * parts));
  for (std::size_t i = 0; i < records.size(); ++i) {
    const int seq = static_cast<int>(i) / parts;
    ASSERT_EQ(records[i].seq, static_cast<std::uint64_t>(seq)) << "at " << i;
    // split_n twice: x -> x*10+a -> (x*10+a)*10+b, in (a, b) order.
    const int a = static_cast<int>(i % parts) / (parts / 2);
    const int b = static_cast<int>(i % parts) % (parts / 2);
    ASSERT_EQ(records[i].value.get<int>(), (seq * 10 + a) * 10 + b)
        << "at " << i;
  }
}

std::vector<config::StageConfig> JitterStages() {
  return {Stage("jitter1", "random_sleep", 4, 8, {{"max_us", 300}}),
          Stage("split1", "split_n", 2, 8, {{"n", 2}}),
          Stage("jitter2", "random_sleep", 3, 8, {{"max_us", 300}}),
          Stage("split2", "split_n", 2, 8, {{"n", 2}})};
}

TEST(EngineTest, OrderedDeliveryUnderRandomDelays) {
  metrics::Metrics metrics("test");
  Engine engine(Config({Pipe("unordered", JitterStages(), false),
                        Pipe("ordered", JitterStages(), true)}),
                metrics, Options());
  constexpr int kItems = 600;
  // The job's `ordered` overrides the pipeline's default.
  auto by_request = MustSubmit(engine, {"unordered", Ints(kItems), true});
  auto by_pipeline =
      MustSubmit(engine, {"ordered", Ints(kItems), std::nullopt});
  auto unordered =
      MustSubmit(engine, {"unordered", Ints(kItems), std::nullopt});
  CheckOrdered(by_request, kItems, 4);
  CheckOrdered(by_pipeline, kItems, 4);
  ASSERT_TRUE(WaitFinished(unordered));
  EXPECT_EQ(unordered->counts().out, 4u * kItems);
}

// EngineOptions::ordered_window bounds the items of an ordered job fed but
// not yet released. With item 0 held in the first stage nothing is
// released, so exactly items 0..window-1 may enter the pipeline. An
// unordered job on the same pipeline keeps the generator turning (one item
// per job per turn): without the bound, the held job would be fed one item
// for each of the other's, so by the time the other job has finished, many
// more of the held job's items would have entered.
TEST(EngineTest, OrderedWindowBoundsTheBacklogAndStillCompletes) {
  constexpr int kWindow = 8;  // small: the generator parks the job often
  constexpr int kItems = 400;
  constexpr int kOtherFrom = 1'000'000;  // the other job's items
  struct Entered {
    std::mutex mu;
    std::set<int> held_job;  // the ordered job's items seen by stage 0
  };
  auto entered = std::make_shared<Entered>();
  Gate gate;
  EngineOptions options = Options();
  options.ordered_window = kWindow;
  options.make_processor =
      [entered, &gate, test = TestFactory()](const config::StageConfig& stage)
      -> std::unique_ptr<processors::Processor> {
    if (stage.processor.type != "hold_0") return test(stage);
    return std::make_unique<FnProcessor>(
        [entered, &gate](json v) {
          const int x = v.get<int>();
          if (x < kOtherFrom) {
            std::lock_guard<std::mutex> lock(entered->mu);
            entered->held_job.insert(x);
          }
          if (x == 0) gate.Pass();
          return Outcome::Value(std::move(v));
        },
        true);
  };
  std::vector<config::StageConfig> stages = JitterStages();
  stages.insert(stages.begin(), Stage("hold", "hold_0", 4, 8));
  metrics::Metrics metrics("test");
  Engine engine(Config({Pipe("ordered", std::move(stages), true)}), metrics,
                std::move(options));
  struct OpenOnExit {  // a failed ASSERT must not leave a worker held
    Gate& gate;
    ~OpenOnExit() { gate.Open(); }
  } open_on_exit{gate};
  auto entered_now = [&] {
    std::lock_guard<std::mutex> lock(entered->mu);
    return entered->held_job;
  };

  auto job = MustSubmit(engine, {"ordered", Ints(kItems), std::nullopt});
  ASSERT_TRUE(gate.WaitForWaiting(1)) << "item 0 is held";
  auto other = MustSubmit(engine, {"ordered", Ints(kItems, kOtherFrom), false});
  ASSERT_TRUE(WaitFinished(other));
  EXPECT_EQ(other->counts().out, 4u * kItems);
  std::set<int> window;
  for (int x = 0; x < kWindow; ++x) window.insert(x);
  ASSERT_TRUE(
      Eventually([&] { return entered_now().size() >= std::size_t{kWindow}; }));
  EXPECT_EQ(entered_now(), window)
      << "fed while nothing was released: exactly the window";
  EXPECT_FALSE(job->finished());

  gate.Open();
  CheckOrdered(job, kItems, 4);
}

// ---- fairness ---------------------------------------------------------------

TEST(EngineTest, SmallJobIsNotStarvedByAHugeOne) {
  metrics::Metrics metrics("test");
  Engine engine(
      Config({Pipe("p", {Stage("slow", "sleep", 2, 8, {{"us", 200}})})}),
      metrics, Options());
  auto huge = MustSubmit(engine, {"p", Ints(20000), std::nullopt});
  ASSERT_TRUE(Eventually([&] { return huge->counts().out >= 20; }));
  auto small = MustSubmit(engine, {"p", Ints(10), std::nullopt});
  ASSERT_TRUE(WaitFinished(small, 30s));
  EXPECT_EQ(small->counts().out, 10u);
  EXPECT_FALSE(huge->finished());
  EXPECT_LT(huge->counts().out, 2000u)
      << "the small job waited for most of the huge one";
  EXPECT_TRUE(engine.Cancel(huge->id()));
  ASSERT_TRUE(WaitFinished(huge));
  EXPECT_EQ(huge->state(), jobs::JobState::kCancelled);
}

// ---- cancel -----------------------------------------------------------------

TEST(EngineTest, CancelEndsQueuedAndInFlightItemsAsCancelled) {
  metrics::Metrics metrics("test");
  Gate gate;
  Engine engine(Config({Pipe("p", {Stage("gate", "gate", 2, 4),
                                   Stage("after", "pass", 1, 4)})}),
                metrics, Options(&gate));
  auto job = MustSubmit(engine, {"p", Ints(100), std::nullopt});
  ASSERT_TRUE(gate.WaitForWaiting(2)) << "both workers hold an item";
  EXPECT_EQ(job->state(), jobs::JobState::kRunning);
  EXPECT_TRUE(engine.Cancel(job->id()));
  gate.Open();
  ASSERT_TRUE(WaitFinished(job));
  EXPECT_EQ(job->state(), jobs::JobState::kCancelled);
  const jobs::Counts c = job->counts();
  EXPECT_EQ(c.in, 100u);
  EXPECT_EQ(c.out + c.cancelled, 100u) << "nothing accepted is lost";
  EXPECT_LE(c.out, 2u) << "only the two items already inside Process";
  EXPECT_EQ(engine.pending_items(), 0u);
  EXPECT_TRUE(engine.Cancel(job->id())) << "known id: true, no-op";
  EXPECT_EQ(job->state(), jobs::JobState::kCancelled);
  EXPECT_FALSE(engine.Cancel("no-such-job"));
}

TEST(EngineTest, CancelQueuedJobBehindAnother) {
  metrics::Metrics metrics("test");
  Gate gate;
  Engine engine(Config({Pipe("p", {Stage("gate", "gate", 1, 1)})}), metrics,
                Options(&gate));
  auto first = MustSubmit(engine, {"p", Ints(5), std::nullopt});
  ASSERT_TRUE(gate.WaitForWaiting(1));
  auto second = MustSubmit(engine, {"p", Ints(50), std::nullopt});
  EXPECT_TRUE(engine.Cancel(second->id()));
  gate.Open();
  ASSERT_TRUE(WaitFinished(second));
  ASSERT_TRUE(WaitFinished(first));
  EXPECT_EQ(first->state(), jobs::JobState::kDone);
  EXPECT_EQ(first->counts().out, 5u);
  EXPECT_EQ(second->state(), jobs::JobState::kCancelled);
  const jobs::Counts c = second->counts();
  EXPECT_EQ(c.out + c.cancelled, 50u);
  EXPECT_GE(c.cancelled, 47u);
}

// ---- admission --------------------------------------------------------------

TEST(EngineTest, AdmissionLimitRejectsWithOverCapacity) {
  metrics::Metrics metrics("test");
  Gate gate;
  Engine engine(Config({Pipe("p", {Stage("gate", "gate", 1, 4)})},
                       /*max_pending=*/10),
                metrics, Options(&gate));
  auto a = MustSubmit(engine, {"p", Ints(8), std::nullopt});
  EXPECT_FALSE(engine.overloaded());

  auto rejected = engine.Submit({"p", Ints(3), std::nullopt});
  ASSERT_FALSE(rejected.ok());
  EXPECT_EQ(rejected.error().reason, Refusal::Reason::kOverCapacity);
  EXPECT_FALSE(rejected.error().message.empty());
  const int retry = engine.retry_after_seconds();
  EXPECT_GE(retry, 1);
  EXPECT_LE(retry, 60);
  EXPECT_EQ(engine.List(10).size(), 1u) << "a rejected submit changes nothing";
  // 8 of 10 pending, but the next job was refused: not ready for more.
  EXPECT_TRUE(engine.overloaded());

  auto b = MustSubmit(engine, {"p", Ints(2), std::nullopt});  // exactly 10
  EXPECT_TRUE(engine.overloaded());
  EXPECT_EQ(engine.pending_items(), 10u);
  EXPECT_NE(metrics.Serialize().find(
                "sluice_admission_rejections_total{pipeline=\"p\"} 1"),
            std::string::npos);

  gate.Open();
  ASSERT_TRUE(WaitFinished(a));
  ASSERT_TRUE(WaitFinished(b));
  EXPECT_TRUE(Eventually([&] { return engine.pending_items() == 0; }));
  EXPECT_FALSE(engine.overloaded());
  auto c = MustSubmit(engine, {"p", Ints(10), std::nullopt});
  ASSERT_TRUE(WaitFinished(c));
}

TEST(EngineTest, AJobLargerThanTheLimitIsTooLargeNotOverCapacity) {
  metrics::Metrics metrics("test");
  Gate gate;
  Engine engine(Config({Pipe("p", {Stage("gate", "gate", 1, 4)})},
                       /*max_pending=*/10),
                metrics, Options(&gate));
  auto a = MustSubmit(engine, {"p", Ints(1), std::nullopt});
  auto huge = engine.Submit({"p", Ints(11), std::nullopt});
  ASSERT_FALSE(huge.ok());
  EXPECT_EQ(huge.error().reason, Refusal::Reason::kJobTooLarge)
      << "it could never fit";
  EXPECT_NE(huge.error().message.find("11 items"), std::string::npos)
      << huge.error().message;
  EXPECT_NE(huge.error().message.find("jobs.max_pending_items (10)"),
            std::string::npos)
      << huge.error().message;
  EXPECT_FALSE(engine.overloaded()) << "11 items never fit; others still do";
  EXPECT_NE(metrics.Serialize().find(
                "sluice_admission_rejections_total{pipeline=\"p\"} 0"),
            std::string::npos)
      << "not a rejection for load";
  EXPECT_EQ(engine.List(10).size(), 1u) << "nothing was created";
  auto exactly = engine.Submit({"p", Ints(10), std::nullopt});
  ASSERT_FALSE(exactly.ok());
  EXPECT_EQ(exactly.error().reason, Refusal::Reason::kOverCapacity)
      << "10 items fit the limit, just not now";
  gate.Open();
  ASSERT_TRUE(WaitFinished(a));
}

TEST(EngineTest, UnknownPipeline) {
  metrics::Metrics metrics("test");
  Engine engine(Config({Pipe("p", {Stage("s", "pass", 1, 4)})}), metrics,
                Options());
  auto r = engine.Submit({"nope", Ints(1), std::nullopt});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().reason, Refusal::Reason::kUnknownPipeline);
  auto s = engine.OpenStream("nope");
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().reason, Refusal::Reason::kUnknownPipeline);
  EXPECT_TRUE(engine.HasPipeline("p"));
  EXPECT_FALSE(engine.HasPipeline("nope"));
}

// ---- shutdown ---------------------------------------------------------------

TEST(EngineTest, ShutdownLetsARunningJobFinishWithinGrace) {
  metrics::Metrics metrics("test");
  Engine engine(
      Config({Pipe("p", {Stage("slow", "sleep", 1, 4, {{"us", 1000}})})}),
      metrics, Options());
  auto job = MustSubmit(engine, {"p", Ints(150), std::nullopt});
  engine.Shutdown(30s);
  EXPECT_TRUE(engine.draining());
  EXPECT_TRUE(job->finished()) << "Shutdown returns once everything ended";
  EXPECT_EQ(job->state(), jobs::JobState::kDone);
  EXPECT_EQ(job->counts().out, 150u);
  auto late = engine.Submit({"p", Ints(1), std::nullopt});
  ASSERT_FALSE(late.ok());
  EXPECT_EQ(late.error().reason, Refusal::Reason::kDraining);
  auto stream = engine.OpenStream("p");
  ASSERT_FALSE(stream.ok());
  EXPECT_EQ(stream.error().reason, Refusal::Reason::kDraining);
  engine.Shutdown(0ms);  // idempotent
  EXPECT_NE(engine.Find(job->id()), nullptr) << "still served after shutdown";
}

TEST(EngineTest, ShutdownWithTinyGraceCancelsTheRest) {
  metrics::Metrics metrics("test");
  Engine engine(
      Config({Pipe("p", {Stage("slow", "sleep", 1, 4, {{"us", 1000}})})}),
      metrics, Options());
  auto job = MustSubmit(engine, {"p", Ints(5000), std::nullopt});
  ASSERT_TRUE(Eventually([&] { return job->counts().out > 0; }));
  const auto start = std::chrono::steady_clock::now();
  engine.Shutdown(50ms);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 3s);
  EXPECT_EQ(job->state(), jobs::JobState::kCancelled);
  const jobs::Counts c = job->counts();
  EXPECT_EQ(c.out + c.cancelled, 5000u);
  EXPECT_GT(c.cancelled, 4000u);
  EXPECT_NE(metrics.Serialize().find(
                "sluice_jobs_total{pipeline=\"p\",state=\"cancelled\"} 1"),
            std::string::npos);
}

TEST(EngineTest, DestructorShutsDownARunningEngine) {
  metrics::Metrics metrics("test");
  std::shared_ptr<jobs::Job> job;
  {
    Engine engine(
        Config({Pipe("p", {Stage("slow", "sleep", 2, 4, {{"us", 1000}})})}),
        metrics, Options());
    job = MustSubmit(engine, {"p", Ints(10000), std::nullopt});
    auto stream = engine.OpenStream("p");
    ASSERT_TRUE(stream.ok());
    std::vector<json> items = Ints(5);
    EXPECT_TRUE(stream.value()->TryPush(items, nullptr));
  }
  EXPECT_EQ(job->state(), jobs::JobState::kCancelled);
}

// ---- streams ----------------------------------------------------------------

TEST(EngineTest, StreamFeedAcceptsWhileThereIsRoomThenCallsOnRoom) {
  metrics::Metrics metrics("test");
  Gate gate;
  Engine engine(Config({Pipe("p", {Stage("gate", "gate", 1, 4)}, true)}),
                metrics, Options(&gate));
  auto opened = engine.OpenStream("p");
  ASSERT_TRUE(opened.ok());
  std::shared_ptr<IngestFeed> feed = opened.value();
  auto job = feed->job();
  EXPECT_EQ(job->state(), jobs::JobState::kQueued);

  std::atomic<int> room_calls{0};
  std::uint64_t pushed = 0;
  bool full = false;
  std::vector<json> items;
  for (int i = 0; i < 1000 && !full; ++i) {
    items = Ints(10, static_cast<int>(pushed));
    if (feed->TryPush(items, [&] { ++room_calls; })) {
      EXPECT_TRUE(items.empty()) << "accepted items are moved out";
      pushed += 10;
    } else {
      EXPECT_FALSE(items.empty()) << "what was not taken is left";
      EXPECT_LE(items.size(), 10u);
      pushed += 10 - items.size();
      full = true;
    }
  }
  ASSERT_TRUE(full) << "the feed's queue is bounded";
  EXPECT_LE(pushed, 1024u + 64u);
  EXPECT_FALSE(feed->closed());
  EXPECT_EQ(room_calls.load(), 0);

  gate.Open();
  ASSERT_TRUE(Eventually([&] { return room_calls.load() == 1; }))
      << "on_room is called once the queue drains";
  // The rest of the refused batch first, then more.
  pushed += items.size();
  ASSERT_TRUE(feed->TryPush(items, nullptr));
  std::vector<json> more = Ints(10, static_cast<int>(pushed));
  ASSERT_TRUE(feed->TryPush(more, nullptr));
  pushed += 10;
  feed->End();
  EXPECT_TRUE(feed->closed());
  std::vector<json> after_end = Ints(1);
  EXPECT_FALSE(feed->TryPush(after_end, [&] { ++room_calls; }));

  ASSERT_TRUE(WaitFinished(job));
  EXPECT_EQ(job->state(), jobs::JobState::kDone);
  EXPECT_EQ(job->counts().in, pushed);
  const auto records = job->Results(0, 100000);
  ASSERT_EQ(records.size(), pushed);
  for (std::size_t i = 0; i < records.size(); ++i) {
    ASSERT_EQ(records[i].seq, i);
    ASSERT_EQ(records[i].value, static_cast<int>(i));
  }
  EXPECT_EQ(room_calls.load(), 1);
}

TEST(EngineTest, StreamFeedWaitsForAdmission) {
  metrics::Metrics metrics("test");
  Gate gate;
  Engine engine(Config({Pipe("p", {Stage("gate", "gate", 1, 4)})},
                       /*max_pending=*/20),
                metrics, Options(&gate));
  auto batch = MustSubmit(engine, {"p", Ints(15), std::nullopt});
  auto feed = engine.OpenStream("p").value();
  std::atomic<int> room_calls{0};
  std::vector<json> items = Ints(10);
  EXPECT_FALSE(feed->TryPush(items, [&] { ++room_calls; }))
      << "15 pending + 10 > 20";
  EXPECT_EQ(items.size(), 5u) << "the 5 that fit went in";
  EXPECT_EQ(engine.pending_items(), 20u);
  EXPECT_FALSE(feed->closed());
  gate.Open();
  ASSERT_TRUE(Eventually([&] { return room_calls.load() >= 1; }));
  ASSERT_TRUE(Eventually([&] { return feed->TryPush(items, nullptr); }));
  feed->End();
  ASSERT_TRUE(WaitFinished(feed->job()));
  EXPECT_EQ(feed->job()->counts().out, 10u);
  ASSERT_TRUE(WaitFinished(batch));
}

// A batch (a WebSocket frame) far larger than jobs.max_pending_items goes
// in piece by piece as room appears, never past the limit.
TEST(EngineTest, StreamFeedTakesABatchLargerThanTheLimitPieceByPiece) {
  metrics::Metrics metrics("test");
  Engine engine(Config({Pipe("p", {Stage("s", "sleep", 1, 4, {{"us", 200}})},
                             /*ordered=*/true)},
                       /*max_pending=*/20),
                metrics, Options());
  auto feed = engine.OpenStream("p").value();
  std::vector<json> items = Ints(500);
  std::atomic<int> room_calls{0};
  std::uint64_t max_pending_seen = 0;
  bool all_in = false;
  const auto deadline = std::chrono::steady_clock::now() + 30s;
  while (!all_in && std::chrono::steady_clock::now() < deadline) {
    const int calls = room_calls.load();
    all_in = feed->TryPush(items, [&] { ++room_calls; });
    max_pending_seen = std::max(max_pending_seen, engine.pending_items());
    if (!all_in) {
      ASSERT_FALSE(items.empty());
      ASSERT_TRUE(Eventually([&] { return room_calls.load() > calls; }))
          << "on_room comes once there is room";
    }
  }
  ASSERT_TRUE(all_in);
  EXPECT_LE(max_pending_seen, 20u) << "the limit held";
  EXPECT_GT(room_calls.load(), 10) << "it went in many pieces";
  feed->End();
  ASSERT_TRUE(WaitFinished(feed->job()));
  EXPECT_EQ(feed->job()->state(), jobs::JobState::kDone);
  EXPECT_EQ(feed->job()->counts().in, 500u);
  const auto records = feed->job()->Results(0, 1000);
  ASSERT_EQ(records.size(), 500u);
  for (std::size_t i = 0; i < records.size(); ++i) {
    ASSERT_EQ(records[i].value, static_cast<int>(i)) << "in order, once each";
  }
}

TEST(EngineTest, CancelledStreamRefusesItemsAndFinishes) {
  metrics::Metrics metrics("test");
  Engine engine(Config({Pipe("p", {Stage("s", "pass", 1, 4)})}), metrics,
                Options());
  auto feed = engine.OpenStream("p").value();
  std::vector<json> items = Ints(3);
  ASSERT_TRUE(feed->TryPush(items, nullptr));
  ASSERT_TRUE(Eventually([&] { return feed->job()->counts().out == 3; }));
  EXPECT_FALSE(feed->job()->finished()) << "a stream runs until End()";
  EXPECT_TRUE(engine.Cancel(feed->job()->id()));
  ASSERT_TRUE(WaitFinished(feed->job()));
  EXPECT_EQ(feed->job()->state(), jobs::JobState::kCancelled);
  EXPECT_TRUE(feed->closed());
  std::vector<json> late = Ints(1);
  EXPECT_FALSE(feed->TryPush(late, nullptr));
}

TEST(EngineTest, DroppingAFeedEndsItsInput) {
  metrics::Metrics metrics("test");
  Engine engine(Config({Pipe("p", {Stage("s", "pass", 1, 4)})}), metrics,
                Options());
  std::shared_ptr<jobs::Job> job;
  {
    auto feed = engine.OpenStream("p").value();
    job = feed->job();
    std::vector<json> items = Ints(4);
    ASSERT_TRUE(feed->TryPush(items, nullptr));
  }
  ASSERT_TRUE(WaitFinished(job));
  EXPECT_EQ(job->state(), jobs::JobState::kDone);
  EXPECT_EQ(job->counts().out, 4u);
}

// ---- streaming reads -------------------------------------------------------

// A WebSocket-like reader: a cursor over the result log, woken by the
// engine's one-shot callbacks while the job runs.
TEST(EngineTest, ReadFromStreamsEveryRecordWhileTheJobRuns) {
  metrics::Metrics metrics("test");
  Engine engine(
      Config({Pipe("p",
                   {Stage("s", "random_sleep", 3, 8, {{"max_us", 100}}),
                    Stage("f", "fail_mod", 2, 8, {{"mod", 10}, {"rem", 0}})})}),
      metrics, Options());
  auto job = MustSubmit(engine, {"p", Ints(2000), std::nullopt});
  struct Signal {
    std::mutex mu;
    std::condition_variable cv;
    int wakes = 0;
  };
  auto signal = std::make_shared<Signal>();
  std::size_t offset = 0;
  std::set<std::uint64_t> seqs;
  int waits = 0;
  for (;;) {
    bool finished = false;
    int seen_wakes = 0;
    {
      std::lock_guard<std::mutex> lock(signal->mu);
      seen_wakes = signal->wakes;
    }
    auto got = job->ReadFrom(offset, 64, &finished, [signal] {
      std::lock_guard<std::mutex> lock(signal->mu);
      ++signal->wakes;
      signal->cv.notify_all();
    });
    if (finished) break;
    if (got.empty()) {
      ++waits;
      std::unique_lock<std::mutex> lock(signal->mu);
      ASSERT_TRUE(signal->cv.wait_for(
          lock, 10s, [&] { return signal->wakes > seen_wakes; }));
      continue;
    }
    for (const auto& r : got) EXPECT_TRUE(seqs.insert(r.seq).second);
    offset += got.size();
  }
  EXPECT_EQ(offset, 2000u);
  EXPECT_EQ(seqs.size(), 2000u);
  EXPECT_GT(waits, 0) << "the reader did wait for live records";
  EXPECT_EQ(job->counts().errors, 200u);
}

// ---- result bounds ---------------------------------------------------------

// jobs.max_job_result_bytes: a job whose results pass it fails with a clear
// error, its remaining items end cancelled (the counts add up), its log
// stays within the cap, and it is still there to read once it has failed.
TEST(EngineTest, ResultsBeyondJobLimitFailTheJob) {
  metrics::Metrics metrics("test");
  config::Config c =
      Config({Pipe("p", {Stage("s", "pass", 2, 16)}, false, "count")});
  c.jobs.max_retained_bytes = 8u << 20;
  c.jobs.max_job_result_bytes = 64u << 10;
  Engine engine(c, metrics, Options());
  std::vector<json> items;
  for (int i = 0; i < 2000; ++i) items.push_back(std::string(1000, 'x'));
  auto job = MustSubmit(engine, {"p", std::move(items), std::nullopt});
  ASSERT_TRUE(WaitFinished(job));
  EXPECT_EQ(job->state(), jobs::JobState::kFailed);
  const json status = job->Status();
  EXPECT_EQ(status["state"], "failed");
  ASSERT_TRUE(status.contains("error")) << status;
  EXPECT_EQ(status["error"]["code"], jobs::kResultsTooLarge);
  EXPECT_NE(status["error"]["message"].get<std::string>().find(
                "jobs.max_job_result_bytes (65536 bytes)"),
            std::string::npos)
      << status;
  EXPECT_TRUE(status["aggregate"].is_null()) << "no aggregate of a part";
  const jobs::Counts counts = job->counts();
  EXPECT_EQ(counts.in, 2000u);
  EXPECT_GT(counts.out, 0u);
  EXPECT_GT(counts.cancelled, 0u);
  EXPECT_EQ(counts.out + counts.filtered + counts.errors + counts.cancelled,
            counts.in)
      << "nothing silently lost";
  EXPECT_EQ(job->result_count(), counts.out);
  EXPECT_LE(job->result_bytes(), 64u << 10);
  EXPECT_EQ(engine.Find(job->id()), job) << "readable right after it failed";
  EXPECT_EQ(engine.pending_items(), 0u);
  // The aggregator counts the job in the metric just after finishing it.
  EXPECT_TRUE(Eventually([&] {
    return metrics.Serialize().find(
               "sluice_jobs_total{pipeline=\"p\",state=\"failed\"} 1") !=
           std::string::npos;
  }));
}

// The issue's case: a split stage makes results far beyond the bound from a
// small input; the job fails instead of growing without bound.
TEST(EngineTest, SplitResultsBeyondJobLimitFailTheJob) {
  metrics::Metrics metrics("test");
  config::Config c =
      Config({Pipe("p", {Stage("split", "split_n", 2, 16, {{"n", 1000}})})});
  c.jobs.max_retained_bytes = 4u << 20;
  c.jobs.max_job_result_bytes = 1u << 20;
  Engine engine(c, metrics, Options());
  auto job = MustSubmit(engine, {"p", Ints(2000), std::nullopt});  // 2M parts
  ASSERT_TRUE(WaitFinished(job));
  EXPECT_EQ(job->state(), jobs::JobState::kFailed);
  EXPECT_EQ(job->error()["code"], jobs::kResultsTooLarge);
  EXPECT_LE(job->result_bytes(), 1u << 20);
  EXPECT_LT(job->counts().out, 2000000u);
  EXPECT_GT(job->counts().cancelled, 0u);
  EXPECT_EQ(engine.Find(job->id()), job);
  // A small job after it runs normally.
  auto small = MustSubmit(engine, {"p", Ints(2), std::nullopt});
  ASSERT_TRUE(WaitFinished(small));
  EXPECT_EQ(small->state(), jobs::JobState::kDone);
  EXPECT_EQ(small->counts().out, 2000u);
}

// jobs.max_retained_bytes bounds the results of all jobs together: finished
// jobs old enough make room for new results, and the job just finished
// stays.
TEST(EngineTest, ResultsOfAllJobsStayWithinMaxRetainedBytes) {
  metrics::Metrics metrics("test");
  config::Config c = Config({Pipe("p", {Stage("s", "pass", 2, 16)})});
  c.jobs.max_retained_bytes = 1u << 20;
  c.jobs.max_job_result_bytes = 256u << 10;
  c.jobs.min_retention = 0ms;
  Engine engine(c, metrics, Options());
  std::shared_ptr<jobs::Job> last;
  for (int j = 0; j < 20; ++j) {
    std::vector<json> items;
    for (int i = 0; i < 100; ++i) items.push_back(std::string(1000, 'x'));
    last = MustSubmit(engine, {"p", std::move(items), std::nullopt});
    ASSERT_TRUE(WaitFinished(last));
    EXPECT_EQ(last->state(), jobs::JobState::kDone) << last->Status();
    EXPECT_EQ(engine.Find(last->id()), last) << "the newest finished job stays";
  }
  EXPECT_LT(engine.List(100).size(), 20u) << "older jobs made room";
}

TEST(EngineTest, AJobWaitingForResultsRoomCanBeCancelled) {
  // The budget is full of a job that finished less than min_retention ago:
  // the next job waits for room (back-pressure, not failure), and a cancel
  // ends the wait at once, as must the shutdown's cancel (this test's end).
  metrics::Metrics metrics("test");
  config::Config c = Config({Pipe("p", {Stage("s", "pass", 2, 16)})});
  c.jobs.max_retained_bytes = 1u << 20;
  c.jobs.max_job_result_bytes = 1u << 20;
  c.jobs.retention = 20min;
  c.jobs.min_retention = 10min;
  Engine engine(c, metrics, Options());
  auto items = [] {
    std::vector<json> v;
    for (int i = 0; i < 700; ++i) v.push_back(std::string(1000, 'x'));
    return v;
  };
  auto first = MustSubmit(engine, {"p", items(), std::nullopt});
  ASSERT_TRUE(WaitFinished(first));
  ASSERT_EQ(first->state(), jobs::JobState::kDone) << first->Status();
  auto second = MustSubmit(engine, {"p", items(), std::nullopt});
  std::this_thread::sleep_for(300ms);
  EXPECT_FALSE(second->finished()) << "waits for room: " << second->Status();
  EXPECT_TRUE(second->error().is_null()) << second->Status();
  EXPECT_LT(second->counts().out, 700u);
  const auto cancelled_at = std::chrono::steady_clock::now();
  ASSERT_TRUE(engine.Cancel(second->id()));
  ASSERT_TRUE(WaitFinished(second));
  EXPECT_LT(std::chrono::steady_clock::now() - cancelled_at, 30s)
      << "not after min_retention (10 min)";
  const jobs::Counts n = second->counts();
  EXPECT_EQ(n.in, n.out + n.errors + n.filtered + n.cancelled);
  EXPECT_GT(n.cancelled, 0u);
  EXPECT_NE(engine.Find(first->id()), nullptr) << "younger than min_retention";
}

// ---- real processors -------------------------------------------------------

// The default factories (processors::MakeProcessor / MakeAggregator) on a
// config loaded from YAML.
TEST(EngineTest, RunsTheConfiguredProcessorsAndAggregate) {
  auto loaded = config::LoadConfigText(R"(
pipelines:
  - name: words
    ordered: true
    stages:
      - { name: words, processor: { type: split, field: "" }, workers: 2 }
      - { name: no_b, processor: { type: filter, field: "", op: "!=", value: "b" } }
      - { name: wait, processor: { type: delay, duration: 1ms }, workers: 3 }
    aggregate: { type: count }
)",
                                       processors::ConfigChecks());
  ASSERT_TRUE(loaded.ok());
  metrics::Metrics metrics("test");
  Engine engine(loaded.value(), metrics);
  auto job =
      MustSubmit(engine, {"words", {"a b c", "b d", "", 7}, std::nullopt});
  ASSERT_TRUE(WaitFinished(job));
  const json s = job->Status();
  EXPECT_EQ(s["state"], "done");
  // "a b c" -> a, c (b filtered); "b d" -> d; "" -> no parts (filtered);
  // 7 -> error at "words" (split needs an array or a string).
  EXPECT_EQ(s["items"], json::parse(R"({"in":4,"out":3,"filtered":3,
                                         "errors":1,"cancelled":0,
                                         "completed":4})"));
  EXPECT_EQ(s["aggregate"], 3);
  std::vector<json> got;
  for (const auto& r : job->Results(0, 100)) got.push_back(jobs::ToJson(r));
  ASSERT_EQ(got.size(), 4u);
  EXPECT_EQ(got[0], json::parse(R"({"seq":0,"value":"a"})"));
  EXPECT_EQ(got[1], json::parse(R"({"seq":0,"value":"c"})"));
  EXPECT_EQ(got[2], json::parse(R"({"seq":1,"value":"d"})"));
  EXPECT_EQ(got[3]["seq"], 3);
  EXPECT_EQ(got[3]["stage"], "words");
}

// ---- small jobs and many workers --------------------------------------------

using test_support::ProcessThreads;

// The smallest job: one item through a CPU-bound stage and an I/O-bound
// one (so both the Process and the ProcessAsync paths carry it), on each
// runtime size, unordered and ordered.
TEST(EngineTest, OneItemJobHasItsResultCountsAndAggregate) {
  for (std::size_t threads : {1, 2, 4}) {
    for (bool ordered : {false, true}) {
      SCOPED_TRACE("runtime_threads " + std::to_string(threads) +
                   (ordered ? ", ordered" : ", unordered"));
      metrics::Metrics metrics("test");
      EngineOptions options = Options();
      options.runtime_threads = threads;
      Engine engine(
          Config({Pipe("p",
                       {Stage("first", "pass", 4, 16),
                        Stage("second", "sleep", 8, 16, {{"us", 200}})},
                       ordered, "count")}),
          metrics, options);
      auto job = MustSubmit(engine, {"p", {41}, std::nullopt});
      ASSERT_NE(job, nullptr);
      ASSERT_TRUE(WaitFinished(job, 10s)) << job->Status().dump();
      EXPECT_EQ(job->state(), jobs::JobState::kDone);
      const jobs::Counts c = job->counts();
      EXPECT_EQ(c.in, 1u);
      EXPECT_EQ(c.out, 1u);
      EXPECT_EQ(c.filtered, 0u);
      EXPECT_EQ(c.errors, 0u);
      EXPECT_EQ(c.cancelled, 0u);
      EXPECT_EQ(job->aggregate(), json(1));
      const auto records = job->Results(0, 100);
      ASSERT_EQ(records.size(), 1u);
      EXPECT_EQ(records[0].seq, 0u);
      EXPECT_FALSE(records[0].is_error);
      EXPECT_EQ(records[0].value, json(41));
      EXPECT_EQ(engine.pending_items(), 0u);
      const json stages = PipelinesView(engine)["pipelines"][0]["stages"];
      for (const json& stage : stages) {
        EXPECT_EQ(stage["items"]["in"], 1) << stage.dump();
        EXPECT_EQ(stage["items"]["out"], 1) << stage.dump();
        EXPECT_EQ(stage["busy"], 0) << stage.dump();
      }
    }
  }
}

class EngineRuntimeThreadsTest : public ::testing::TestWithParam<std::size_t> {
};

INSTANTIATE_TEST_SUITE_P(Threads, EngineRuntimeThreadsTest,
                         ::testing::Values(std::size_t{1}, std::size_t{2},
                                           std::size_t{4}),
                         [](const ::testing::TestParamInfo<std::size_t>& p) {
                           return "T" + std::to_string(p.param);
                         });

// A stage's `workers` is a concurrency limit, not a thread count: 1,000
// workers of the real delay processor are 1,000 timers in flight on the
// runtime's few threads. The engine starts a fixed set of threads (the
// runtime's) however many workers there are, and none while the job runs.
TEST_P(EngineRuntimeThreadsTest, ThousandDelayWorkersWaitOnTheRuntimeThreads) {
  constexpr int kItems = 2000;
  constexpr int kWorkers = 1000;
  const std::size_t threads = GetParam();
  // A thread started and joined first, so lazily created helper threads
  // (TSan's, for one) are already counted.
  std::thread([] {}).join();
  const int before = ProcessThreads();
  ASSERT_GT(before, 0) << "/proc/self/task is unreadable";

  metrics::Metrics metrics("test");
  EngineOptions options;  // the real processors::MakeProcessor
  options.make_aggregator = TestAggregators();
  options.runtime_threads = threads;
  Engine engine(
      Config({Pipe(
          "d", {Stage("wait", "delay", kWorkers, 256, {{"duration", "50ms"}})},
          false, "count")}),
      metrics, options);
  const int idle = ProcessThreads();
  // The runtime's threads and a little room; a thread per worker would be
  // 1,000 more.
  EXPECT_LE(idle - before, static_cast<int>(threads) + 2)
      << "before " << before << ", with the engine idle " << idle;

  const auto start = std::chrono::steady_clock::now();
  auto job = MustSubmit(engine, {"d", Ints(kItems), std::nullopt});
  ASSERT_NE(job, nullptr);
  int most_threads = idle;
  int most_busy = 0;
  const auto deadline = start + 30s;
  while (!job->finished() && std::chrono::steady_clock::now() < deadline) {
    most_threads = std::max(most_threads, ProcessThreads());
    const json stage = PipelinesView(engine)["pipelines"][0]["stages"][0];
    most_busy = std::max(most_busy, stage["busy"].get<int>());
    std::this_thread::sleep_for(500us);
  }
  ASSERT_TRUE(WaitFinished(job, 1s)) << job->Status().dump();
  const auto took = std::chrono::steady_clock::now() - start;

  EXPECT_LE(most_threads - idle, 8) << "threads: idle " << idle << ", at most "
                                    << most_threads << " while the job ran";
  // Hundreds of workers were waiting at once (on `threads` threads); a
  // worker that blocked its thread would allow only `threads` at a time.
  // (Not half of them: the sampler saw 487 of 1,000 once under TSan.)
  EXPECT_GE(most_busy, kWorkers / 4);
  // 2,000 x 50 ms is 100 s one at a time, 25 s four at a time; 1,000 at a
  // time it is two rounds.
  EXPECT_LT(took, 5s);

  EXPECT_EQ(job->state(), jobs::JobState::kDone);
  const jobs::Counts c = job->counts();
  EXPECT_EQ(c.in, static_cast<std::uint64_t>(kItems));
  EXPECT_EQ(c.out, static_cast<std::uint64_t>(kItems));
  EXPECT_EQ(c.filtered, 0u);
  EXPECT_EQ(c.errors, 0u);
  EXPECT_EQ(c.cancelled, 0u);
  EXPECT_EQ(job->aggregate(), json(kItems));
  std::set<int> values;
  for (const auto& r : job->Results(0, 1u << 30)) {
    EXPECT_FALSE(r.is_error) << r.error;
    values.insert(r.value.get<int>());
  }
  ASSERT_EQ(values.size(), static_cast<std::size_t>(kItems));
  EXPECT_EQ(*values.begin(), 0);
  EXPECT_EQ(*values.rbegin(), kItems - 1);
  EXPECT_EQ(engine.pending_items(), 0u);
}

// A pipeline's generator and aggregator are tasks too: 24 pipelines start
// no more threads than one, and each still runs its jobs to the end.
TEST_P(EngineRuntimeThreadsTest, PipelinesAddNoThreads) {
  constexpr int kPipelines = 24;
  const std::size_t threads = GetParam();
  std::thread([] {}).join();  // as above: helper threads counted first
  const int before = ProcessThreads();
  ASSERT_GT(before, 0) << "/proc/self/task is unreadable";

  std::vector<config::PipelineConfig> pipes;
  for (int i = 0; i < kPipelines; ++i) {
    pipes.push_back(Pipe("p" + std::to_string(i),
                         {Stage("pass", "identity", 2, 64)}, false, "count"));
  }
  metrics::Metrics metrics("test");
  EngineOptions options = Options();
  options.runtime_threads = threads;
  Engine engine(Config(std::move(pipes)), metrics, options);
  const int idle = ProcessThreads();
  // Two threads per pipeline would be 48 more.
  EXPECT_LE(idle - before, static_cast<int>(threads) + 2)
      << "before " << before << ", with " << kPipelines << " pipelines idle "
      << idle;

  std::vector<std::shared_ptr<jobs::Job>> jobs;
  for (int i = 0; i < kPipelines; ++i) {
    jobs.push_back(
        MustSubmit(engine, {"p" + std::to_string(i), Ints(100), std::nullopt}));
    ASSERT_NE(jobs.back(), nullptr);
  }
  for (const auto& job : jobs) {
    ASSERT_TRUE(WaitFinished(job)) << job->Status().dump();
    EXPECT_EQ(job->state(), jobs::JobState::kDone);
    EXPECT_EQ(job->counts().out, 100u);
    EXPECT_EQ(job->aggregate(), json(100));
  }
  EXPECT_LE(ProcessThreads() - idle, 0) << "no thread started for the jobs";
}

// ---- views ------------------------------------------------------------------

TEST(EngineTest, ListsJobsNewestFirstAndFindsThem) {
  metrics::Metrics metrics("test");
  Engine engine(Config({Pipe("p", {Stage("s", "pass", 1, 4)})}), metrics,
                Options());
  auto a = MustSubmit(engine, {"p", Ints(1), std::nullopt});
  auto b = MustSubmit(engine, {"p", Ints(1), std::nullopt});
  auto listed = engine.List(10);
  ASSERT_EQ(listed.size(), 2u);
  EXPECT_EQ(listed[0], b);
  EXPECT_EQ(listed[1], a);
  EXPECT_EQ(engine.Find(a->id()), a);
  EXPECT_EQ(engine.Find("missing"), nullptr);
}

TEST(EngineTest, PipelinesJsonDescribesStagesAndLiveCounters) {
  metrics::Metrics metrics("test");
  Gate gate;
  Engine engine(
      Config({Pipe(
          "p", {Stage("first", "pass", 2, 16), Stage("held", "gate", 3, 32)},
          true, "count")}),
      metrics, Options(&gate));
  auto job = MustSubmit(engine, {"p", Ints(100), std::nullopt});
  ASSERT_TRUE(gate.WaitForWaiting(3));
  ASSERT_TRUE(Eventually([&] {
    return PipelinesView(engine)["pipelines"][0]["stages"][1]["queue_depth"]
               .get<int>() > 0;
  }));
  json view = PipelinesView(engine);
  ASSERT_EQ(view["pipelines"].size(), 1u);
  const json p = view["pipelines"][0];
  EXPECT_EQ(p["name"], "p");
  EXPECT_EQ(p["ordered"], true);
  EXPECT_EQ(p["aggregate"]["type"], "count");
  EXPECT_EQ(p["jobs_active"], 1);
  ASSERT_EQ(p["stages"].size(), 2u);
  const json held = p["stages"][1];
  EXPECT_EQ(held["name"], "held");
  EXPECT_EQ(held["type"], "gate");
  EXPECT_EQ(held["workers"], 3);
  EXPECT_EQ(held["buffer"], 32);
  EXPECT_EQ(held["busy"], 3);
  EXPECT_GT(held["queue_depth"].get<int>(), 0);
  for (const char* key : {"in", "out", "filtered", "errors", "cancelled"}) {
    EXPECT_TRUE(held["items"].contains(key)) << key;
  }
  engine.SampleGauges();
  EXPECT_NE(metrics.Serialize().find("sluice_stage_workers_busy{pipeline=\"p\","
                                     "stage=\"held\"} 3"),
            std::string::npos);
  gate.Open();
  ASSERT_TRUE(WaitFinished(job));
  EXPECT_EQ(job->aggregate(), 100);
  EXPECT_TRUE(Eventually([&] {
    return PipelinesView(engine)["pipelines"][0]["jobs_active"] == 0;
  }));
}

// ---- reload (DESIGN.md §3.8) ------------------------------------------------

std::vector<std::string> PipelineNames(const Engine& engine) {
  std::vector<std::string> names;
  for (const PipelineSnapshot& p : engine.Pipelines()) names.push_back(p.name);
  return names;
}

TEST(EngineReloadTest, RunningJobsFinishOnTheOldPipelinesNewJobsUseTheNew) {
  metrics::Metrics metrics("test");
  Gate gate;
  Engine engine(Config({Pipe("p", {Stage("held", "gate", 2, 4)})}), metrics,
                Options(&gate));
  auto old_job = MustSubmit(engine, {"p", Ints(100), std::nullopt});
  ASSERT_TRUE(gate.WaitForWaiting(2));

  auto reloaded =
      engine.Reload({Pipe("p", {Stage("odd", "drop_mod", 2, 4, {{"mod", 2}})}),
                     Pipe("q", {Stage("pass", "pass", 1, 4)})});
  ASSERT_TRUE(reloaded.ok()) << reloaded.error().message;
  EXPECT_EQ(reloaded.value(), (std::vector<std::string>{"p", "q"}));
  EXPECT_EQ(PipelineNames(engine), (std::vector<std::string>{"p", "q"}));
  EXPECT_EQ(engine.Pipelines()[0].stages[0].config.name, "odd");

  auto new_job = MustSubmit(engine, {"p", Ints(10), std::nullopt});
  ASSERT_TRUE(WaitFinished(new_job));
  EXPECT_EQ(new_job->counts().filtered, 5u) << "the new p drops even items";
  EXPECT_EQ(new_job->counts().out, 5u);
  EXPECT_EQ(old_job->state(), jobs::JobState::kRunning)
      << "the old p still holds its job at the gate";

  gate.Open();
  ASSERT_TRUE(WaitFinished(old_job));
  EXPECT_EQ(old_job->state(), jobs::JobState::kDone);
  EXPECT_EQ(old_job->counts().out, 100u) << "nothing accepted is lost";
  EXPECT_EQ(old_job->counts().filtered, 0u) << "it ran on the old stages";
  EXPECT_EQ(engine.pending_items(), 0u);
}

TEST(EngineReloadTest, AnOpenStreamKeepsFeedingItsOldPipeline) {
  metrics::Metrics metrics("test");
  Engine engine(Config({Pipe("p", {Stage("pass", "pass", 2, 8)})}), metrics,
                Options());
  auto opened = engine.OpenStream("p");
  ASSERT_TRUE(opened.ok());
  std::shared_ptr<IngestFeed> feed = opened.value();
  std::vector<json> items = Ints(10);
  ASSERT_TRUE(feed->TryPush(items, [] {}));

  ASSERT_TRUE(engine.Reload({Pipe("q", {Stage("pass", "pass", 1, 4)})}).ok());
  EXPECT_FALSE(engine.HasPipeline("p"));
  EXPECT_EQ(engine.OpenStream("p").error().reason,
            Refusal::Reason::kUnknownPipeline);

  items = Ints(10, 10);
  ASSERT_TRUE(Eventually([&] { return feed->TryPush(items, [] {}); }))
      << "the replaced pipeline still takes the stream's items";
  feed->End();
  ASSERT_TRUE(WaitFinished(feed->job()));
  EXPECT_EQ(feed->job()->state(), jobs::JobState::kDone);
  EXPECT_EQ(feed->job()->counts().in, 20u);
  EXPECT_EQ(feed->job()->counts().out, 20u);
}

TEST(EngineReloadTest, CancelReachesAJobOnAReplacedPipeline) {
  metrics::Metrics metrics("test");
  Gate gate;
  Engine engine(Config({Pipe("p", {Stage("held", "gate", 2, 4)})}), metrics,
                Options(&gate));
  auto job = MustSubmit(engine, {"p", Ints(100), std::nullopt});
  ASSERT_TRUE(gate.WaitForWaiting(2));
  ASSERT_TRUE(engine.Reload({Pipe("p", {Stage("pass", "pass", 1, 4)})}).ok());
  EXPECT_TRUE(engine.Cancel(job->id()));
  gate.Open();
  ASSERT_TRUE(WaitFinished(job));
  EXPECT_EQ(job->state(), jobs::JobState::kCancelled);
  EXPECT_EQ(job->counts().out + job->counts().cancelled, 100u);
  EXPECT_GT(job->counts().cancelled, 0u);
}

TEST(EngineReloadTest, AReloadNeverWaitsForAReplacedPipelinesLastItems) {
  metrics::Metrics metrics("test");
  Gate gate;
  Engine engine(Config({Pipe("p", {Stage("held", "gate", 2, 4)})}), metrics,
                Options(&gate));
  // Both items fed and held: the replaced pipeline's generator ends, its
  // aggregator cannot until the gate opens.
  auto held = MustSubmit(engine, {"p", Ints(2), std::nullopt});
  ASSERT_TRUE(gate.WaitForWaiting(2));
  ASSERT_TRUE(engine.Reload({Pipe("p", {Stage("pass", "pass", 1, 4)})}).ok());
  // Reaping the held pipeline here would join tasks that wait at the gate,
  // which opens only after this returns (a hang fails by TIMEOUT).
  ASSERT_TRUE(engine.Reload({Pipe("p", {Stage("pass", "pass", 1, 4)})}).ok());
  gate.Open();
  ASSERT_TRUE(WaitFinished(held));
  EXPECT_EQ(held->counts().out, 2u);
  EXPECT_TRUE(engine.Reload({Pipe("p", {Stage("pass", "pass", 1, 4)})}).ok())
      << "now drained, it is reaped";
}

TEST(EngineReloadTest, ManyReloadsAddNoThreadsAndShutdownStopsThemAll) {
  metrics::Metrics metrics("test");
  Gate gate;
  Engine engine(Config({Pipe("p", {Stage("held", "gate", 2, 4)})}), metrics,
                Options(&gate));
  ASSERT_TRUE(engine.Reload({Pipe("p", {Stage("held", "gate", 2, 4)})}).ok());
  const int threads = test_support::ProcessThreads();
  auto held = MustSubmit(engine, {"p", Ints(10), std::nullopt});
  ASSERT_TRUE(gate.WaitForWaiting(2));
  for (int i = 0; i < 20; ++i) {
    ASSERT_TRUE(
        engine.Reload({Pipe("p", {Stage("pass", "pass", 64, 64)})}).ok());
  }
  EXPECT_EQ(test_support::ProcessThreads(), threads)
      << "pipelines are tasks; replaced ones are stopped as they drain";
  auto quick = MustSubmit(engine, {"p", Ints(50), std::nullopt});
  ASSERT_TRUE(WaitFinished(quick));
  EXPECT_EQ(quick->counts().out, 50u);

  // The held job is on a replaced pipeline: the drain cancels it and stops
  // every pipeline, replaced ones included (a hang here fails by TIMEOUT).
  std::thread opener([&] {
    std::this_thread::sleep_for(50ms);
    gate.Open();
  });
  engine.Shutdown(0ms);
  opener.join();
  EXPECT_TRUE(held->finished());
  EXPECT_EQ(held->counts().out + held->counts().cancelled, 10u);
  auto after = engine.Reload({Pipe("p", {Stage("pass", "pass", 1, 4)})});
  ASSERT_FALSE(after.ok());
  EXPECT_EQ(after.error().code, "draining");
}

}  // namespace
}  // namespace sluice::engine
