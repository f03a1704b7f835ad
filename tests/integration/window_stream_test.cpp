// Integration tests of windowed aggregates (aggregate.window) and per-key
// stages (`key:`) through the real server: a real WebSocket client on the
// ingestion stream (/v1/stream) and on a job's stream sees
// {"type":"aggregate","window":K,"value":...} frames as windows close, the
// last one before `done`; HTTP results carry the same records.
#include <gtest/gtest.h>

#include <chrono>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "client.hpp"

namespace sluice::itest {
namespace {

using nlohmann::json;

constexpr const char* kWindowConfig = R"(
server: { listen: "127.0.0.1:0", io_threads: 2, shutdown_grace: 5s }
pipelines:
  - name: tally
    ordered: true
    stages:
      - { name: pass, processor: passthrough, workers: 2, key: /user }
    aggregate: { type: group_by, field: /user, op: count, window: { items: 4 } }
  - name: ticks
    stages:
      - { name: wait, processor: { type: delay, duration: 20ms }, workers: 1 }
    aggregate: { type: count, window: { every: 100ms } }
)";

class WindowStreamTest : public ::testing::Test {
 protected:
  void SetUp() override {
    server_ = std::make_unique<TestServer>(kWindowConfig);
  }
  std::uint16_t port() const { return server_->port(); }
  std::unique_ptr<TestServer> server_;
};

json Item(const std::string& user, int i) { return {{"user", user}, {"i", i}}; }

TEST_F(WindowStreamTest, IngestStreamGetsAggregateFramesAsWindowsClose) {
  WsClient ws(port(), "/v1/stream?pipeline=tally");
  ASSERT_EQ(ws.handshake_status(), 101);
  // Four items close window 0 while the stream stays open.
  ws.Send(
      json({{"items",
             {Item("ann", 0), Item("bob", 1), Item("ann", 2), Item("cy", 3)}}})
          .dump());
  std::vector<json> frames;
  bool window0_live = false;
  while (!window0_live) {
    auto text = ws.Read(10s);
    ASSERT_TRUE(text) << "no window frame while the stream is open";
    frames.push_back(json::parse(*text));
    window0_live = frames.back()["type"] == "aggregate";
  }
  EXPECT_EQ(frames.back(),
            json({{"type", "aggregate"},
                  {"window", 0},
                  {"value", {{"ann", 2}, {"bob", 1}, {"cy", 1}}}}));
  // Two more, then end: the partial window 1 arrives before done.
  ws.Send(json({{"items", {Item("bob", 4), Item("bob", 5)}}, {"end", true}})
              .dump());
  for (json& f : ws.ReadAll()) frames.push_back(std::move(f));
  ASSERT_GE(frames.size(), 3U);
  const json& done = frames.back();
  const json& last_window = frames[frames.size() - 2];
  EXPECT_EQ(done["type"], "done");
  EXPECT_EQ(
      last_window,
      json({{"type", "aggregate"}, {"window", 1}, {"value", {{"bob", 2}}}}));
  // Results: 6, in input order (the pipeline is ordered); the windows are
  // not counted as results.
  std::vector<int> seqs;
  int windows = 0;
  for (const json& f : frames) {
    if (f["type"] == "result") seqs.push_back(f["seq"].get<int>());
    if (f["type"] == "aggregate") ++windows;
  }
  EXPECT_EQ(seqs, (std::vector<int>{0, 1, 2, 3, 4, 5}));
  EXPECT_EQ(windows, 2);
  EXPECT_EQ(done["job"]["items"]["out"], 6);
  EXPECT_EQ(done["job"]["aggregate"],
            json({{"ann", 2}, {"bob", 3}, {"cy", 1}}));
  EXPECT_EQ(ws.close_code(), 1000);
}

TEST_F(WindowStreamTest, JobStreamReplaysWindowsAndResultsCarryThem) {
  json items = json::array();
  for (int i = 0; i < 10; ++i) items.push_back(Item(i % 2 ? "odd" : "even", i));
  HttpResponse posted =
      Http(port(), "POST", "/v1/jobs?pipeline=tally&wait=10", items.dump());
  ASSERT_EQ(posted.status, 200) << posted.body;
  const std::string id = posted.json()["id"];
  // HTTP results: 10 values and 3 windows (4 + 4 + 2), total counts both.
  json page = Http(port(), "GET", "/v1/jobs/" + id + "/results").json();
  EXPECT_EQ(page["total"], 13);
  std::vector<json> windows;
  for (const json& r : page["results"]) {
    if (r.contains("window")) windows.push_back(r);
  }
  ASSERT_EQ(windows.size(), 3U);
  EXPECT_EQ(windows[2], json({{"type", "aggregate"},
                              {"window", 2},
                              {"value", {{"even", 1}, {"odd", 1}}}}));
  // The job's stream replays the same records, then done.
  WsClient ws(port(), "/v1/jobs/" + id + "/stream");
  ASSERT_EQ(ws.handshake_status(), 101);
  auto frames = ws.ReadAll();
  ASSERT_EQ(frames.size(), 14U);
  int aggregate_frames = 0;
  for (const json& f : frames) aggregate_frames += f["type"] == "aggregate";
  EXPECT_EQ(aggregate_frames, 3);
  EXPECT_EQ(frames[4]["type"], "aggregate");  // after the first four values
  EXPECT_EQ(frames.back()["type"], "done");
}

TEST_F(WindowStreamTest, TimeWindowsArriveWhileTheStreamIsOpen) {
  WsClient ws(port(), "/v1/stream?pipeline=ticks");
  ASSERT_EQ(ws.handshake_status(), 101);
  json items = json::array();
  for (int i = 0; i < 20; ++i) items.push_back(i);  // ~400 ms of work
  ws.Send(json({{"items", items}}).dump());
  // A window closes (every 100 ms) before we end the stream.
  int results = 0;
  bool got_window = false;
  while (!got_window) {
    auto text = ws.Read(10s);
    ASSERT_TRUE(text);
    const json f = json::parse(*text);
    got_window = f["type"] == "aggregate";
    results += f["type"] == "result";
  }
  ws.Send(R"({"end": true})");
  std::int64_t counted = 0;
  std::vector<std::uint64_t> numbers;
  auto rest = ws.ReadAll();
  ASSERT_FALSE(rest.empty());
  EXPECT_EQ(rest.back()["type"], "done");
  // Re-read everything through the job's results to add up the windows.
  const std::string id = rest.back()["job"]["id"];
  json page = Http(port(), "GET", "/v1/jobs/" + id + "/results").json();
  for (const json& r : page["results"]) {
    if (!r.contains("window")) continue;
    counted += r["value"].get<std::int64_t>();
    numbers.push_back(r["window"].get<std::uint64_t>());
  }
  EXPECT_EQ(counted, 20);
  EXPECT_TRUE(std::is_sorted(numbers.begin(), numbers.end()));
  EXPECT_GE(numbers.size(), 2U);
  EXPECT_EQ(ws.close_code(), 1000);
}

}  // namespace
}  // namespace sluice::itest
