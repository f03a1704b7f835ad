// Drain: SIGTERM while clients submit jobs, follow each accepted job's
// stream and feed ingestion streams. Nothing accepted may be lost: every
// job that got a 202 ends done (or cancelled) with exact counts, every open
// stream gets its `done` frame and a close (1000, or 1001 for what the drain
// cancelled when the grace ran out), new work gets 503, and the process
// exits 0 within shutdown_grace plus the 5 s close timeout.
#include <gtest/gtest.h>

#include <atomic>
#include <csignal>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "load_util.hpp"

namespace sluice::load {
namespace {

using nlohmann::json;

constexpr int kJobItems = 20;

// What one followed stream ended with.
struct StreamEnd {
  std::string what;  // job id, or "ingest"
  std::vector<json> frames;
  int close_code = -1;
  bool timed_out = false;
  std::string error;
};

// Reads a stream to its end, or until `deadline`, and records it.
StreamEnd Finish(WsClient& ws, std::string what, Clock::time_point deadline) {
  StreamEnd end;
  end.what = std::move(what);
  end.frames = ws.ReadAll(std::max<std::chrono::milliseconds>(
      std::chrono::duration_cast<std::chrono::milliseconds>(deadline -
                                                            Clock::now()),
      1s));
  end.close_code = ws.close_code();
  end.timed_out = ws.timed_out();
  end.error = ws.read_error();
  return end;
}

// Checks one stream's end: its last frame is `done`, the close code matches
// the final state, and the counts add up. Returns the final state.
std::string CheckEnd(const StreamEnd& e, long expect_in = -1) {
  if (e.frames.empty() || e.frames.back()["type"] != "done") {
    ADD_FAILURE() << e.what << ": no done frame (close " << e.close_code << ", "
                  << e.frames.size() << " frames, timed out " << e.timed_out
                  << ", error " << e.error << ")";
    return "";
  }
  const json& job = e.frames.back()["job"];
  std::string state = job["state"];
  const json& items = job["items"];
  const long in = items["in"], out = items["out"],
             cancelled = items["cancelled"];
  EXPECT_EQ(in, out + cancelled + items["filtered"].get<long>() +
                    items["errors"].get<long>())
      << e.what << " " << job.dump();
  if (expect_in >= 0) {
    EXPECT_EQ(in, expect_in) << e.what;
  }
  long results = 0;
  for (const json& f : e.frames) results += f["type"] == "result" ? 1 : 0;
  EXPECT_EQ(results, out) << e.what;
  if (state == "done") {
    EXPECT_EQ(e.close_code, 1000) << e.what;
    EXPECT_EQ(cancelled, 0) << e.what;
  } else {
    EXPECT_EQ(state, "cancelled") << e.what << " " << job.dump();
    EXPECT_EQ(e.close_code, 1001) << e.what;
  }
  return state;
}

TEST(DrainTest, SigtermUnderLoadLosesNothingAndExitsZero) {
  const auto grace = Scaled(6s, 20s);
  const auto load_for = Scaled(3s, 10s);
  // Offered load is about the capacity (3 submitters x 20 items / 400 ms
  // plus 2 x 25 items/s of ingestion = 200 items/s), so the finite jobs'
  // backlog stays far below what the grace can finish; the never-ending
  // ingestion stream is what the grace runs out on. (The admission limit is
  // deliberately not what paces them: an ingestion stream that meets it is
  // dropped — see SlowClientTest.FastIngestionProducerIsSlowedNotDropped.)
  const long max_pending = 100000;
  Child child(R"(
server: { io_threads: 2, shutdown_grace: )" +
              std::to_string(grace.count()) + R"(s }
jobs: { max_pending_items: )" +
              std::to_string(max_pending) + R"( }
pipelines:
  - name: slow
    stages:
      - { name: sleep, processor: { type: delay, duration: 20ms }, workers: 4 }
)");
  ASSERT_NE(child.port(), 0) << child.log();
  const auto port = child.port();

  std::atomic<bool> sigterm_sent{false};
  std::mutex mu;
  std::vector<StreamEnd> ends;
  long accepted_jobs = 0, refused_503 = 0, refused_429 = 0, unreachable = 0,
       unexpected = 0;
  const auto hard_stop = Clock::now() + load_for + grace + 60s;

  std::vector<std::jthread> threads;
  threads.reserve(5);
  // Submitters: POST a job, follow it on a stream at once; stop at the
  // first 503 (draining) or once the server is gone.
  for (int c = 0; c < 3; ++c) {
    threads.emplace_back([&] {
      HttpClient http(port);
      std::vector<std::pair<std::string, std::unique_ptr<WsClient>>> streams;
      long mine_503 = 0, mine_429 = 0, mine_gone = 0, mine_odd = 0;
      auto next = Clock::now();
      while (Clock::now() < hard_stop) {
        std::this_thread::sleep_until(next);
        next += 400ms;
        HttpResponse r = http.Request("POST", "/v1/jobs?pipeline=slow",
                                      RangeJson(kJobItems), {}, 10s);
        if (r.status == 202) {
          const std::string id = r.json()["id"];
          auto ws =
              std::make_unique<WsClient>(port, "/v1/jobs/" + id + "/stream");
          EXPECT_EQ(ws->handshake_status(), 101) << id;
          streams.emplace_back(id, std::move(ws));
        } else if (r.status == 429) {
          ++mine_429;
          std::this_thread::sleep_for(20ms);
        } else if (r.status == 503) {
          ++mine_503;
          break;
        } else if (r.status == 0 && sigterm_sent) {
          ++mine_gone;
          break;
        } else {
          ++mine_odd;
          ADD_FAILURE() << r.status << " " << r.error << " " << r.body;
          break;
        }
      }
      std::vector<StreamEnd> mine;
      mine.reserve(streams.size());
      for (auto& [id, ws] : streams) mine.push_back(Finish(*ws, id, hard_stop));
      std::lock_guard lock(mu);
      accepted_jobs += static_cast<long>(streams.size());
      refused_503 += mine_503;
      refused_429 += mine_429;
      unreachable += mine_gone;
      unexpected += mine_odd;
      for (auto& e : mine) ends.push_back(std::move(e));
    });
  }
  // Ingestion streams: one ends on its own shortly after the SIGTERM (and
  // must finish done); one never ends (the drain cancels it: 1001).
  std::atomic<long> ingest_ender_sent{0};
  for (const bool ends_itself : {true, false}) {
    threads.emplace_back([&, ends_itself] {
      WsClient ws(port, "/v1/stream?pipeline=slow");
      ASSERT_EQ(ws.handshake_status(), 101);
      std::optional<Clock::time_point> sigterm_seen;
      long sent = 0;
      for (int k = 0; Clock::now() < hard_stop; ++k) {
        if (sigterm_sent && !sigterm_seen) sigterm_seen = Clock::now();
        if (sigterm_seen && Clock::now() - *sigterm_seen > 500ms) break;
        // 25 items/s each: an eighth of the capacity, so the jobs get most.
        ws.Send(json{{"items", {k, k, k, k, k}}}.dump());
        sent += 5;
        std::this_thread::sleep_for(200ms);
      }
      if (ends_itself) {
        ws.Send(R"({"end":true})");
        ingest_ender_sent = sent;
      }
      StreamEnd e =
          Finish(ws, ends_itself ? "ingest-ends" : "ingest-open", hard_stop);
      std::lock_guard lock(mu);
      ends.push_back(std::move(e));
    });
  }

  std::this_thread::sleep_for(load_for);
  const ProcSample under_load = child.Sample();
  const auto sigterm_at = Clock::now();
  child.Signal(SIGTERM);
  sigterm_sent = true;
  // Readiness flips as soon as the signal is handled.
  const bool not_ready = PollUntil(
      [&] { return itest::Http(port, "GET", "/readyz").status == 503; }, 2s);
  const int exit_code = child.Wait(grace + 5s + 20s);
  const double exit_s =
      std::chrono::duration<double>(Clock::now() - sigterm_at).count();
  threads.clear();  // joins: every stream has been read to its end

  EXPECT_TRUE(not_ready) << "/readyz did not turn 503";
  EXPECT_EQ(exit_code, 0) << child.log();
  EXPECT_LE(exit_s, std::chrono::duration<double>(grace + 5s).count() + 10)
      << "seconds from SIGTERM to exit";
  EXPECT_EQ(unexpected, 0);
  EXPECT_GT(accepted_jobs, 0);
  EXPECT_EQ(static_cast<long>(ends.size()), accepted_jobs + 2);

  long jobs_done = 0, jobs_cancelled = 0, closed_1000 = 0, closed_1001 = 0,
       items_in = 0;
  for (const StreamEnd& e : ends) {
    long expect_in = -1;
    if (e.what.rfind("ingest", 0) != 0) expect_in = kJobItems;
    const std::string state = CheckEnd(e, expect_in);
    if (e.what == "ingest-ends") {
      EXPECT_EQ(state, "done");
      if (!e.frames.empty()) {
        EXPECT_EQ(e.frames.back()["job"]["items"]["in"],
                  ingest_ender_sent.load());
      }
    }
    if (e.what == "ingest-open") {
      EXPECT_EQ(state, "cancelled");
    }
    if (e.what.rfind("ingest", 0) != 0) {
      // Finite jobs: done (they fit in the grace) or, on a machine too
      // loaded to finish them, cancelled with exact counts (CheckEnd).
      jobs_done += state == "done";
      jobs_cancelled += state == "cancelled";
    }
    closed_1000 += e.close_code == 1000;
    closed_1001 += e.close_code == 1001;
    if (!e.frames.empty())
      items_in += e.frames.back()["job"]["items"]["in"].get<long>();
  }

  Figure("drain.scale", ScaleName());
  Figure("drain.grace_s", std::chrono::duration<double>(grace).count());
  Figure("drain.load_s", std::chrono::duration<double>(load_for).count());
  Figure("drain.jobs_accepted", static_cast<double>(accepted_jobs));
  Figure("drain.jobs_done", static_cast<double>(jobs_done));
  Figure("drain.jobs_cancelled", static_cast<double>(jobs_cancelled));
  Figure("drain.items_accepted", static_cast<double>(items_in));
  Figure("drain.refused_503", static_cast<double>(refused_503));
  Figure("drain.refused_429", static_cast<double>(refused_429));
  Figure("drain.unreachable_after_exit", static_cast<double>(unreachable));
  Figure("drain.streams_1000", static_cast<double>(closed_1000));
  Figure("drain.streams_1001", static_cast<double>(closed_1001));
  Figure("drain.exit_code", exit_code);
  Figure("drain.sigterm_to_exit_s", exit_s);
  Figure("drain.rss_under_load", Mib(under_load.rss_kb));
  Figure("drain.threads_under_load", static_cast<double>(under_load.threads));
}

}  // namespace
}  // namespace sluice::load
