// Soak: mixed traffic for a long stretch (SLUICE_LOAD_SCALE=full: 30
// minutes; ci: 60 s) — jobs submitted and waited for, results paged, job
// streams followed, ingestion streams, metrics scrapes, refusals (404, 400,
// 405, 413) and clients vanishing mid-body. After a warm-up, the server's
// RSS, open fds and threads are sampled; none may grow: threads are
// constant, fds return to their level, and RSS shows no trend beyond a
// stated tolerance. Every request must get the answer it should.
#include <gtest/gtest.h>

#include <atomic>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "load_util.hpp"

namespace sluice::load {
namespace {

using nlohmann::json;

// Retention is short so the store reaches its steady state within the
// warm-up: what a finished job holds is gone 20 s later. The results budget
// is twice what 20 s of this traffic retains (about 33 MB at CI scale), so
// retention, not the budget, bounds the store: at 32 MiB the run sat on the
// budget's edge, and a job could fail results_memory_full (the budget's
// pressure is what MemoryBoundsLoadTest measures, not this test).
constexpr const char* kConfig = R"(
server: { io_threads: 2, max_body_bytes: 256KiB, idle_timeout: 10s, shutdown_grace: 5s }
jobs: { max_pending_items: 20000, retention: 20s, max_retained_bytes: 64MiB }
pipelines:
  - name: echo
    stages:
      - { name: pass, processor: passthrough, workers: 2 }
  - name: words
    stages:
      - { name: split, processor: { type: split, field: /text } }
      - { name: not-the, processor: { type: filter, op: "!=", value: "the" }, workers: 2 }
    aggregate: { type: count }
  - name: slow
    stages:
      - { name: sleep, processor: { type: delay, duration: 2ms }, workers: 8 }
      - { name: even, processor: { type: filter, field: /n, op: ">=", value: 0 } }
)";

struct Counters {
  std::atomic<long> requests{0};
  std::atomic<long> wrong{0};
  std::atomic<long> items{0};
  std::atomic<long> frames{0};
  std::mutex mu;
  std::vector<std::string> first_wrong;

  void Wrong(const std::string& what) {
    ++wrong;
    std::lock_guard lock(mu);
    if (first_wrong.size() < 10) first_wrong.push_back(what);
  }
};

TEST(SoakTest, MixedTrafficDoesNotGrowRssFdsOrThreads) {
  const auto duration =
      Scaled(std::chrono::seconds(60), std::chrono::seconds(1800));
  const auto warmup =
      Scaled(std::chrono::seconds(25), std::chrono::seconds(120));
  const auto interval =
      Scaled(std::chrono::milliseconds(1000), std::chrono::milliseconds(5000));
  Child child(kConfig);
  ASSERT_NE(child.port(), 0) << child.log();
  const auto port = child.port();
  const ProcSample start = child.Sample();

  Counters n;
  const auto t0 = Clock::now();
  const auto stop_at = t0 + duration;
  std::vector<std::jthread> threads;

  // 1. Jobs with ?wait, then their results paged.
  threads.emplace_back([&] {
    HttpClient http(port);
    for (int k = 0; Clock::now() < stop_at; ++k) {
      json items = json::array();
      for (int i = 0; i < 50; ++i) items.push_back({{"n", i}, {"k", k}});
      HttpResponse r =
          http.Request("POST", "/v1/jobs?pipeline=slow&wait=10", items.dump());
      ++n.requests;
      if (r.status != 200 || r.json()["items"]["out"] != 50) {
        n.Wrong("wait job: " + std::to_string(r.status) + " " + r.body);
        continue;
      }
      n.items += 50;
      const std::string id = r.json()["id"];
      HttpResponse page =
          http.Request("GET", "/v1/jobs/" + id + "/results?offset=10&limit=20");
      ++n.requests;
      if (page.status != 200 || page.json()["results"].size() != 20)
        n.Wrong("results: " + std::to_string(page.status));
    }
  });
  // 2. Word jobs followed on a job stream.
  threads.emplace_back([&] {
    for (int k = 0; Clock::now() < stop_at; ++k) {
      HttpResponse r = itest::Http(
          port, "POST", "/v1/jobs?pipeline=words",
          R"([{"text":"the quick brown fox"},{"text":"jumps over the lazy dog"}])");
      ++n.requests;
      if (r.status != 202) {
        n.Wrong("words: " + std::to_string(r.status));
        continue;
      }
      WsClient ws(port,
                  "/v1/jobs/" + r.json()["id"].get<std::string>() + "/stream");
      auto frames = ws.ReadAll(20s);
      n.frames += static_cast<long>(frames.size());
      // 9 words, of which 2 are "the" (filtered): 7 results and done.
      if (frames.size() != 8 || frames.back()["job"]["aggregate"] != 7 ||
          frames.back()["job"]["items"]["filtered"] != 2 ||
          ws.close_code() != 1000) {
        n.Wrong("words stream: " + std::to_string(frames.size()) + " frames");
      }
    }
  });
  // 3. Ingestion streams: 100 items in frames, end, read to done.
  threads.emplace_back([&] {
    while (Clock::now() < stop_at) {
      WsClient ws(port, "/v1/stream?pipeline=echo");
      ++n.requests;
      if (ws.handshake_status() != 101) {
        n.Wrong("ingest handshake");
        std::this_thread::sleep_for(100ms);
        continue;
      }
      for (int f = 0; f < 10; ++f) {
        json items = json::array();
        for (int i = 0; i < 10; ++i) items.push_back(f * 10 + i);
        ws.Send(json{{"items", items}}.dump());
      }
      ws.Send(R"({"end":true})");
      auto frames = ws.ReadAll(20s);
      n.frames += static_cast<long>(frames.size());
      if (frames.size() != 101 || frames.back()["job"]["items"]["out"] != 100)
        n.Wrong("ingest: " + std::to_string(frames.size()) + " frames");
      n.items += 100;
    }
  });
  // 4. Everything else, each on a fresh connection: scrapes, lists,
  // refusals, and a client that vanishes mid-body.
  threads.emplace_back([&] {
    const std::string too_big(std::size_t{300} * 1024, ' ');
    for (int k = 0; Clock::now() < stop_at; ++k) {
      struct Want {
        std::string method, target, body;
        int status;
      };
      const Want wants[] = {
          {"GET", "/metrics", "", 200},
          {"GET", "/v1/pipelines", "", 200},
          {"GET", "/v1/jobs?limit=20", "", 200},
          {"GET", "/v1/jobs/0000000000000000", "", 404},
          {"POST", "/v1/jobs?pipeline=echo", "[1,", 400},
          {"POST", "/v1/jobs?pipeline=nope", "[1]", 404},
          {"PUT", "/v1/jobs", "", 405},
          {"POST", "/v1/jobs?pipeline=echo", "[" + too_big + "]", 413},
          {"GET", "/readyz", "", 200},
      };
      const Want& w = wants[k % std::size(wants)];
      HttpResponse r = itest::Http(port, w.method, w.target, w.body);
      ++n.requests;
      if (r.status != w.status)
        n.Wrong(w.method + " " + w.target + ": " + std::to_string(r.status));
      if (k % 10 == 0) {
        RawSocket s(port);
        s.Send(
            "POST /v1/jobs?pipeline=echo HTTP/1.1\r\nHost: x\r\n"
            "Content-Length: 1000\r\n\r\n[1,2,");
        s.Abort();
      }
      std::this_thread::sleep_for(20ms);
    }
  });

  // Sample until the end; the first `warmup` is not judged.
  std::vector<ProcSample> samples;
  while (Clock::now() < stop_at) {
    ProcSample s = child.Sample();
    s.t = std::chrono::duration<double>(Clock::now() - t0).count();
    samples.push_back(s);
    std::this_thread::sleep_until(std::min(stop_at, Clock::now() + interval));
  }
  threads.clear();
  ASSERT_TRUE(child.running()) << child.log();
  const long settled_fds = SettledFds(child);

  std::vector<double> t, rss;
  std::vector<ProcSample> judged;
  const double warm_s = std::chrono::duration<double>(warmup).count();
  for (const ProcSample& s : samples) {
    if (s.t < warm_s) continue;
    judged.push_back(s);
    t.push_back(s.t);
    rss.push_back(static_cast<double>(s.rss_kb));
  }
  ASSERT_GE(judged.size(), 10u);
  // Compare the first and the last quarter of the judged samples (medians,
  // so one busy moment does not decide), and the fitted trend over the
  // whole window.
  const std::size_t q = judged.size() / 4;
  std::vector<double> first(rss.begin(), rss.begin() + static_cast<long>(q));
  std::vector<double> last(rss.end() - static_cast<long>(q), rss.end());
  const double rss_first = Median(first), rss_last = Median(last);
  const double slope_kb_per_s = Slope(t, rss);
  const double window_s = t.back() - t.front();
  long threads_min = judged.front().threads, threads_max = threads_min;
  long fds_min = judged.front().fds, fds_max = fds_min;
  for (const ProcSample& s : judged) {
    threads_min = std::min(threads_min, s.threads);
    threads_max = std::max(threads_max, s.threads);
    fds_min = std::min(fds_min, s.fds);
    fds_max = std::max(fds_max, s.fds);
  }

  EXPECT_EQ(n.wrong.load(), 0) << [&] {
    std::string all;
    for (const auto& w : n.first_wrong) all += w + "\n";
    return all;
  }();
  // Threads: the io threads and the pipelines' threads, nothing per
  // request.
  EXPECT_EQ(threads_max, threads_min);
  // Fds: at most a handful of client connections open at any moment (4
  // client threads, plus connections lingering up to 1 s after an error).
  EXPECT_LE(fds_max - fds_min, 16);
  EXPECT_LE(settled_fds, start.fds);
  // RSS: no growth beyond 8 MiB between the first and last quarter, and a
  // fitted trend under 8 MiB over the window.
  EXPECT_LE(rss_last - rss_first, 8 * 1024.0)
      << Mib(static_cast<long>(rss_first)) << " -> "
      << Mib(static_cast<long>(rss_last));
  EXPECT_LE(slope_kb_per_s * window_s, 8 * 1024.0)
      << "trend " << slope_kb_per_s << " KiB/s";

  Figure("soak.scale", ScaleName());
  Figure("soak.duration_s", std::chrono::duration<double>(duration).count());
  Figure("soak.warmup_s", warm_s);
  Figure("soak.samples_judged", static_cast<double>(judged.size()));
  Figure("soak.requests", static_cast<double>(n.requests.load()));
  Figure("soak.items", static_cast<double>(n.items.load()));
  Figure("soak.ws_frames", static_cast<double>(n.frames.load()));
  Figure("soak.wrong_answers", static_cast<double>(n.wrong.load()));
  Figure("soak.rss_start", Mib(start.rss_kb));
  Figure("soak.rss_first_quarter_median", Mib(static_cast<long>(rss_first)));
  Figure("soak.rss_last_quarter_median", Mib(static_cast<long>(rss_last)));
  Figure("soak.rss_trend_kib_per_hour", slope_kb_per_s * 3600);
  Figure("soak.vmhwm", Mib(child.Sample().hwm_kb));
  Figure("soak.threads_min", static_cast<double>(threads_min));
  Figure("soak.threads_max", static_cast<double>(threads_max));
  Figure("soak.fds_start", static_cast<double>(start.fds));
  Figure("soak.fds_min", static_cast<double>(fds_min));
  Figure("soak.fds_max", static_cast<double>(fds_max));
  Figure("soak.fds_settled", static_cast<double>(settled_fds));
}

}  // namespace
}  // namespace sluice::load
