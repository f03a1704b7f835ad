// Tests of sluice::metrics::Metrics: every contract §C5 family is present
// from start-up, children are created per pipeline and stage, accessors are
// stable, the output is the Prometheus text format, and the process_*
// families follow the process.
#include "service/metrics/metrics.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cmath>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "service/config/config.hpp"
#include "tests/support/process_threads.hpp"

namespace sluice::metrics {
namespace {

config::PipelineConfig TwoStagePipeline() {
  config::PipelineConfig p;
  p.name = "enrich";
  config::StageConfig a;
  a.name = "upper";
  a.processor.type = "passthrough";
  config::StageConfig b;
  b.name = "lookup";
  b.processor.type = "passthrough";
  p.stages = {a, b};
  return p;
}

bool Contains(const std::string& text, const std::string& needle) {
  return text.find(needle) != std::string::npos;
}

TEST(Metrics, EveryFamilyIsPresentFromStartUp) {
  Metrics m("1.2.3");
  m.RegisterPipeline(TwoStagePipeline());
  const std::string text = m.Serialize();
  for (const char* family : {
           "sluice_http_requests_total",
           "sluice_http_request_duration_seconds",
           "sluice_jobs_total",
           "sluice_jobs_active",
           "sluice_items_total",
           "sluice_stage_duration_seconds",
           "sluice_stage_queue_depth",
           "sluice_stage_workers_busy",
           "sluice_websocket_connections",
           "sluice_admission_rejections_total",
           "sluice_build_info",
       }) {
    // A sample line, not only the HELP/TYPE header.
    EXPECT_TRUE(Contains(text, std::string("\n") + family + "{") ||
                Contains(text, std::string("\n") + family + "_bucket{"))
        << family << " has no sample in:\n"
        << text;
    EXPECT_TRUE(Contains(text, std::string("# TYPE ") + family)) << family;
  }
  EXPECT_TRUE(Contains(text, "sluice_build_info{version=\"1.2.3\"} 1"));
  EXPECT_TRUE(
      Contains(text, "sluice_websocket_connections{kind=\"job_stream\"} 0"));
  EXPECT_TRUE(
      Contains(text, "sluice_websocket_connections{kind=\"ingest\"} 0"));
}

TEST(Metrics, RegisterPipelineCreatesEveryChild) {
  Metrics m("v");
  m.RegisterPipeline(TwoStagePipeline());
  m.RegisterPipeline(TwoStagePipeline());  // idempotent
  const std::string text = m.Serialize();
  for (const char* state : {"done", "failed", "cancelled"}) {
    EXPECT_TRUE(Contains(
        text, std::string("sluice_jobs_total{pipeline=\"enrich\",state=\"") +
                  state + "\"} 0"))
        << state;
  }
  EXPECT_TRUE(Contains(text, "sluice_jobs_active{pipeline=\"enrich\"} 0"));
  EXPECT_TRUE(Contains(
      text, "sluice_admission_rejections_total{pipeline=\"enrich\"} 0"));
  for (const char* stage : {"upper", "lookup"}) {
    for (const char* outcome :
         {"in", "out", "filtered", "error", "cancelled"}) {
      EXPECT_TRUE(Contains(
          text, std::string("sluice_items_total{outcome=\"") + outcome +
                    "\",pipeline=\"enrich\",stage=\"" + stage + "\"} 0"))
          << stage << " " << outcome;
    }
    const std::string labels =
        std::string(R"({pipeline="enrich",stage=")") + stage + R"("})";
    EXPECT_TRUE(Contains(text, "sluice_stage_queue_depth" + labels + " 0"));
    EXPECT_TRUE(Contains(text, "sluice_stage_workers_busy" + labels + " 0"));
    EXPECT_TRUE(
        Contains(text, "sluice_stage_duration_seconds_count" + labels + " 0"));
  }
}

TEST(Metrics, AccessorsReturnTheSameChildForTheSameLabels) {
  Metrics m("v");
  auto& a = m.HttpRequests("GET", "/v1/jobs/{id}", 200);
  auto& b = m.HttpRequests("GET", "/v1/jobs/{id}", 200);
  EXPECT_EQ(&a, &b);
  EXPECT_NE(&a, &m.HttpRequests("GET", "/v1/jobs/{id}", 404));
  a.Increment();
  b.Increment();
  EXPECT_TRUE(Contains(m.Serialize(),
                       "sluice_http_requests_total{code=\"200\",method=\"GET\","
                       "route=\"/v1/jobs/{id}\"} 2"));
}

TEST(Metrics, HistogramsObserveSeconds) {
  Metrics m("v");
  m.HttpDuration("/v1/jobs").Observe(0.003);
  m.StageDuration("p", "s").Observe(0.2);
  const std::string text = m.Serialize();
  EXPECT_TRUE(Contains(
      text,
      "sluice_http_request_duration_seconds_count{route=\"/v1/jobs\"} 1"));
  EXPECT_TRUE(Contains(text,
                       "sluice_http_request_duration_seconds_bucket{route=\"/"
                       "v1/jobs\",le=\"0.005\"} 1"));
  EXPECT_TRUE(Contains(text,
                       "sluice_http_request_duration_seconds_bucket{route=\"/"
                       "v1/jobs\",le=\"0.0025\"} 0"));
  EXPECT_TRUE(Contains(
      text,
      "sluice_stage_duration_seconds_sum{pipeline=\"p\",stage=\"s\"} 0.2"));
}

TEST(Metrics, ScrapeHookRunsBeforeEachSerialize) {
  Metrics m("v");
  int calls = 0;
  m.SetScrapeHook([&] {
    ++calls;
    m.QueueDepth("p", "s").Set(calls);
  });
  EXPECT_TRUE(Contains(
      m.Serialize(), "sluice_stage_queue_depth{pipeline=\"p\",stage=\"s\"} 1"));
  EXPECT_TRUE(Contains(
      m.Serialize(), "sluice_stage_queue_depth{pipeline=\"p\",stage=\"s\"} 2"));
  m.SetScrapeHook({});
  (void)m.Serialize();
  EXPECT_EQ(calls, 2);
}

TEST(Metrics, IsThreadSafe) {
  Metrics m("v");
  std::vector<std::thread> threads;
  std::atomic<bool> go{false};
  threads.reserve(4);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      while (!go.load()) std::this_thread::yield();
      for (int i = 0; i < 2000; ++i) {
        m.Items("p", "s" + std::to_string(i % 7), "in").Increment();
        m.WebSocketConnections("ingest").Increment();
        m.WebSocketConnections("ingest").Decrement();
        if (t == 0 && i % 100 == 0) (void)m.Serialize();
      }
    });
  }
  go = true;
  for (auto& th : threads) th.join();
  double total = 0;
  for (int s = 0; s < 7; ++s) {
    total += m.Items("p", "s" + std::to_string(s), "in").Value();
  }
  EXPECT_EQ(total, 8000);
  EXPECT_EQ(m.WebSocketConnections("ingest").Value(), 0);
}

// The value of the unlabelled sample `name` in exposition text; NaN when
// absent.
double Sample(const std::string& text, const std::string& name) {
  std::istringstream lines(text);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.rfind(name + " ", 0) == 0) {
      return std::stod(line.substr(name.size() + 1));
    }
  }
  return std::nan("");
}

// DESIGN.md §3.8: the process_* families every client library exports,
// read from /proc at each scrape, so they follow what the process does.
TEST(ProcessMetrics, FollowThreadsFdsCpuAndMemory) {
  // A thread started and joined first, so lazily created helper threads
  // (TSan's, for one) are already counted.
  std::thread([] {}).join();
  Metrics m("1.2.3");
  const std::string before = m.Serialize();
  for (const char* family :
       {"process_cpu_seconds_total", "process_resident_memory_bytes",
        "process_virtual_memory_bytes", "process_open_fds", "process_max_fds",
        "process_start_time_seconds", "process_threads"}) {
    EXPECT_FALSE(std::isnan(Sample(before, family))) << family;
  }
  EXPECT_TRUE(Contains(before, "# TYPE process_cpu_seconds_total counter"));
  EXPECT_TRUE(Contains(before, "# TYPE process_threads gauge"));
  EXPECT_EQ(Sample(before, "process_threads"), test_support::ProcessThreads());
  EXPECT_GT(Sample(before, "process_resident_memory_bytes"), 1 << 20);
  EXPECT_GE(Sample(before, "process_virtual_memory_bytes"),
            Sample(before, "process_resident_memory_bytes"));
  EXPECT_GE(Sample(before, "process_max_fds"),
            Sample(before, "process_open_fds"));
  // Started before now, and not before the test binary could have.
  const double now = std::chrono::duration<double>(
                         std::chrono::system_clock::now().time_since_epoch())
                         .count();
  EXPECT_LE(Sample(before, "process_start_time_seconds"), now + 1);
  EXPECT_GT(Sample(before, "process_start_time_seconds"), now - 600);

  // Five pipes are ten more descriptors; two threads more; some CPU.
  std::vector<std::array<int, 2>> pipes(5);
  for (auto& p : pipes) ASSERT_EQ(pipe(p.data()), 0);
  std::atomic<bool> stop{false};
  std::vector<std::thread> spinners;
  for (int i = 0; i < 2; ++i) {
    spinners.emplace_back([&stop] {
      while (!stop.load()) {
      }
    });
  }
  const double cpu0 = Sample(before, "process_cpu_seconds_total");
  std::string during;
  for (int i = 0; i < 500; ++i) {  // until a 10 ms tick shows, at most 5 s
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    during = m.Serialize();
    if (Sample(during, "process_cpu_seconds_total") > cpu0) break;
  }
  EXPECT_GT(Sample(during, "process_cpu_seconds_total"), cpu0);
  EXPECT_EQ(Sample(during, "process_threads"),
            Sample(before, "process_threads") + 2);
  EXPECT_EQ(Sample(during, "process_open_fds"),
            Sample(before, "process_open_fds") + 10);
  stop = true;
  for (auto& t : spinners) t.join();
  for (auto& p : pipes) {
    close(p[0]);
    close(p[1]);
  }
  const std::string after = m.Serialize();
  EXPECT_EQ(Sample(after, "process_open_fds"),
            Sample(before, "process_open_fds"));
  EXPECT_EQ(Sample(after, "process_threads"),
            Sample(before, "process_threads"));
}

}  // namespace
}  // namespace sluice::metrics
