// Overload: clients offer ten times what a pipeline of known capacity (a
// `delay` stage: workers / duration items per second) can process. The
// server must refuse the excess with 429 and a numeric Retry-After, finish
// every job it accepted with exact counts, and keep its peak RSS (VmHWM)
// within what jobs.max_pending_items of these items cost plus a stated
// margin.
#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "load_util.hpp"

namespace sluice::load {
namespace {

using nlohmann::json;

// Capacity: kWorkers / kDelay = 4 / 20 ms = 200 items/s.
constexpr int kWorkers = 4;
constexpr double kDelaySeconds = 0.020;
constexpr double kCapacity = kWorkers / kDelaySeconds;
constexpr int kJobItems = 50;
// Each item carries a pad so pending items dominate what the server holds;
// the last stage drops it, so retained results stay small.
constexpr int kPadBytes = 2048;

std::string OverloadConfig(int max_pending) {
  return R"(
server: { io_threads: 2, max_body_bytes: 4MiB, shutdown_grace: 5s }
jobs: { max_pending_items: )" +
         std::to_string(max_pending) +
         R"(, retention: 10m, max_retained_bytes: 64MiB }
pipelines:
  - name: slow
    stages:
      - { name: sleep, processor: { type: delay, duration: 20ms }, workers: 4 }
      - { name: strip, processor: { type: remove, fields: [/pad] } }
)";
}

std::string JobBody(int job) {
  const std::string pad(kPadBytes, 'p');
  std::string body = "[";
  for (int i = 0; i < kJobItems; ++i) {
    if (i > 0) body += ',';
    body += R"({"job":)" + std::to_string(job) + R"(,"i":)" +
            std::to_string(i) + R"(,"pad":")" + pad + "\"}";
  }
  return body + "]";
}

struct Tally {
  std::mutex mu;
  std::vector<std::string> accepted;  // job ids (202)
  long rejected = 0;                  // 429
  long bad_retry_after = 0;           // 429 without a numeric 1..60 value
  std::vector<int> retry_after;
  std::vector<std::string> unexpected;  // anything else
  std::vector<double> latency_ms;       // of every answered POST
  long offered_items = 0;
};

TEST(OverloadTest, RejectsWith429AndLosesNothing) {
  const int max_pending = Scaled(2000, 10000);
  const auto offer_for = Scaled(15s, 60s);
  const int clients = 4;
  const double offered_rate = 10 * kCapacity;  // items/s
  const double job_rate = offered_rate / kJobItems;

  Child child(OverloadConfig(max_pending));
  ASSERT_NE(child.port(), 0) << child.log();
  const auto port = child.port();

  // Warm up (first allocations, a job through every stage), then measure
  // the baseline the bound is stated against.
  HttpResponse warm =
      itest::Http(port, "POST", "/v1/jobs?pipeline=slow&wait=30", JobBody(-1));
  ASSERT_EQ(warm.status, 200) << warm.body;
  const ProcSample base = child.Sample();
  Sampler sampler(child, 100ms);

  // Each client sends its share of the schedule: job k at start + k /
  // job_rate. A client that falls behind sends at once (it never sleeps a
  // negative time), so the offered rate is what the server lets through.
  Tally tally;
  std::atomic<long> readyz_polls{0}, readyz_overloaded{0};
  const auto start = Clock::now();
  const auto stop_at = start + offer_for;
  {
    std::vector<std::jthread> threads;
    threads.reserve(clients + 1);
    for (int c = 0; c < clients; ++c) {
      threads.emplace_back([&, c] {
        HttpClient http(port);
        for (long k = c;; k += clients) {
          const auto when = start + std::chrono::duration_cast<Clock::duration>(
                                        std::chrono::duration<double>(
                                            static_cast<double>(k) / job_rate));
          if (when >= stop_at) break;
          std::this_thread::sleep_until(when);
          const auto sent = Clock::now();
          HttpResponse r = http.Request("POST", "/v1/jobs?pipeline=slow",
                                        JobBody(static_cast<int>(k)), {}, 30s);
          const double ms =
              std::chrono::duration<double, std::milli>(Clock::now() - sent)
                  .count();
          std::lock_guard lock(tally.mu);
          tally.offered_items += kJobItems;
          if (r.status != 0) tally.latency_ms.push_back(ms);
          if (r.status == 202) {
            tally.accepted.push_back(r.json()["id"]);
          } else if (r.status == 429) {
            ++tally.rejected;
            const std::string ra = r.header("retry-after");
            int seconds = 0;
            bool numeric = !ra.empty() && ra.find_first_not_of("0123456789") ==
                                              std::string::npos;
            if (numeric) seconds = std::stoi(ra);
            if (!numeric || seconds < 1 || seconds > 60) {
              ++tally.bad_retry_after;
            } else {
              tally.retry_after.push_back(seconds);
            }
          } else {
            tally.unexpected.push_back(std::to_string(r.status) + " " +
                                       r.error + " " + r.body.substr(0, 200));
          }
        }
      });
    }
    // What readiness says meanwhile (reported, not asserted: /readyz turns
    // 503 only while pending items are exactly at the limit, which jobs of
    // 50 items rarely hit although every further job gets 429).
    threads.emplace_back([&] {
      while (Clock::now() < stop_at) {
        HttpResponse r = itest::Http(port, "GET", "/readyz");
        ++readyz_polls;
        if (r.status == 503 && r.body.find("overloaded") != std::string::npos)
          ++readyz_overloaded;
        std::this_thread::sleep_for(250ms);
      }
    });
  }
  const double offered_seconds =
      std::chrono::duration<double>(Clock::now() - start).count();

  // Every accepted job completes, with exact counts. At capacity the
  // backlog (at most max_pending items) takes max_pending / capacity s.
  const auto drain_deadline = std::chrono::milliseconds(static_cast<long>(
                                  1000.0 * (2.0 * max_pending / kCapacity))) +
                              60s;
  const auto drain_start = Clock::now();
  long in = 0, out = 0, not_done = 0;
  {
    HttpClient http(port);
    for (const std::string& id : tally.accepted) {
      json status = itest::WaitForJob(
          port, id,
          std::max<std::chrono::milliseconds>(
              std::chrono::duration_cast<std::chrono::milliseconds>(
                  drain_start + drain_deadline - Clock::now()),
              1s));
      if (status.is_null() || status["state"] != "done") {
        ++not_done;
        ADD_FAILURE() << "job " << id << " not done: " << status.dump();
        continue;
      }
      const json& items = status["items"];
      EXPECT_EQ(items["in"], kJobItems) << id;
      EXPECT_EQ(items["out"], kJobItems) << id;
      EXPECT_EQ(items["filtered"], 0) << id;
      EXPECT_EQ(items["errors"], 0) << id;
      EXPECT_EQ(items["cancelled"], 0) << id;
      in += items["in"].get<long>();
      out += items["out"].get<long>();
    }
  }
  const double drain_seconds =
      std::chrono::duration<double>(Clock::now() - drain_start).count();
  sampler.Stop();
  const ProcSample end = child.Sample();

  // The server's own account agrees with ours.
  const std::string metrics = Scrape(port);
  const double rejections = itest::MetricValue(
      metrics, "sluice_admission_rejections_total{pipeline=\"slow\"}");
  const double stage_out = itest::MetricValue(
      metrics,
      R"(sluice_items_total{outcome="out",pipeline="slow",stage="strip"})");

  const long accepted = static_cast<long>(tally.accepted.size());
  EXPECT_TRUE(tally.unexpected.empty())
      << tally.unexpected.size()
      << " unexpected answers, first: " << tally.unexpected.front();
  EXPECT_GT(tally.rejected, 0) << "the offered load never hit the limit";
  EXPECT_GT(accepted, 0);
  EXPECT_EQ(tally.bad_retry_after, 0);
  EXPECT_EQ(not_done, 0);
  EXPECT_EQ(in, accepted * kJobItems);
  EXPECT_EQ(out, in);
  EXPECT_EQ(rejections, static_cast<double>(tally.rejected));
  // +1 job: the warm-up.
  EXPECT_EQ(stage_out, static_cast<double>((accepted + 1) * kJobItems));

  // Memory. What the server holds for a pending item is its parsed JSON
  // plus the envelope around it: measured at ~1.7x the item's raw JSON size
  // (3.7 KiB for these 2.1 KB items, debug build). The bound asserted is 3x
  // the raw size for every pending item the limit allows, plus 24 MiB for
  // everything else that grows under load: request bodies being read and
  // parsed (4 clients x ~105 KB, plus the parsed copy), stage channels, the
  // retained results of finished jobs (small: the pad is removed) and
  // malloc's per-thread arenas. docs/reliability.md records the measured
  // peak against it.
  const double item_bytes = static_cast<double>(JobBody(0).size()) / kJobItems;
  const long margin_kb = 24L * 1024;
  const long bound_kb = base.rss_kb +
                        static_cast<long>(max_pending * 3 * item_bytes / 1024) +
                        margin_kb;
  EXPECT_LE(end.hwm_kb, bound_kb)
      << "peak RSS " << Mib(end.hwm_kb) << " over the bound " << Mib(bound_kb);

  const double achieved =
      static_cast<double>(tally.offered_items) / offered_seconds;
  Figure("overload.scale", ScaleName());
  Figure("overload.capacity_items_per_s", kCapacity);
  Figure("overload.offered_items_per_s", achieved);
  Figure("overload.offered_x_capacity", achieved / kCapacity);
  Figure("overload.offered_seconds", offered_seconds);
  Figure("overload.max_pending_items", max_pending);
  Figure("overload.jobs_202", static_cast<double>(accepted));
  Figure("overload.jobs_429", static_cast<double>(tally.rejected));
  Figure("overload.items_accepted", static_cast<double>(in));
  Figure("overload.items_out", static_cast<double>(out));
  Figure("overload.accepted_items_per_s",
         static_cast<double>(in) / (offered_seconds + drain_seconds));
  Figure("overload.drain_seconds", drain_seconds);
  const std::vector<double> retry_after(tally.retry_after.begin(),
                                        tally.retry_after.end());
  Figure("overload.retry_after_min_s", Quantile(retry_after, 0));
  Figure("overload.retry_after_median_s", Quantile(retry_after, 0.5));
  Figure("overload.retry_after_max_s", Quantile(retry_after, 1));
  Figure("overload.readyz_polls", static_cast<double>(readyz_polls.load()));
  Figure("overload.readyz_overloaded",
         static_cast<double>(readyz_overloaded.load()));
  Figure("overload.post_latency_p50_ms", Quantile(tally.latency_ms, 0.5));
  Figure("overload.post_latency_p99_ms", Quantile(tally.latency_ms, 0.99));
  Figure("overload.rss_baseline", Mib(base.rss_kb));
  Figure("overload.rss_peak_sampled", Mib(sampler.max_rss_kb()));
  Figure("overload.vmhwm", Mib(end.hwm_kb));
  Figure("overload.rss_end", Mib(end.rss_kb));
  Figure("overload.peak_over_baseline_per_pending_item_kb",
         static_cast<double>(end.hwm_kb - base.rss_kb) / max_pending);
  Figure("overload.item_json_bytes", item_bytes);
  Figure("overload.pending_limit_x_item_size",
         Mib(static_cast<long>(max_pending * item_bytes / 1024)));
  Figure("overload.bound", Mib(bound_kb));
  Figure("overload.threads", static_cast<double>(end.threads));
  Figure("overload.fds", static_cast<double>(end.fds));
}

}  // namespace
}  // namespace sluice::load
