// Integration tests of the WebSocket endpoints (contract §C3): the job
// stream (replay + live + done + close 1000, 404 before upgrade, a slow
// reader) and the ingestion stream (items, end, bad frames, back-pressure).
#include <gtest/gtest.h>

#include <chrono>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "client.hpp"

namespace sluice::itest {
namespace {

using nlohmann::json;

class WebSocketTest : public ::testing::Test {
 protected:
  void SetUp() override { server_ = std::make_unique<TestServer>(kTestConfig); }
  std::uint16_t port() const { return server_->port(); }

  std::string Submit(const std::string& pipeline, const json& items) {
    HttpResponse r =
        Http(port(), "POST", "/v1/jobs?pipeline=" + pipeline, items.dump());
    EXPECT_EQ(r.status, 202) << r.body;
    return r.status == 202 ? r.json()["id"].get<std::string>() : "";
  }

  static json Range(int n) {
    json items = json::array();
    for (int i = 0; i < n; ++i) items.push_back(i);
    return items;
  }

  // Checks frames = N result frames (each seq once) + done; returns done.
  static json ExpectResultsThenDone(const std::vector<json>& frames, int n) {
    EXPECT_EQ(frames.size(), static_cast<std::size_t>(n + 1));
    if (frames.empty()) return {};
    std::set<int> seqs;
    for (std::size_t i = 0; i + 1 < frames.size(); ++i) {
      EXPECT_EQ(frames[i]["type"], "result") << frames[i];
      seqs.insert(frames[i]["seq"].get<int>());
      EXPECT_TRUE(frames[i].contains("value"));
    }
    EXPECT_EQ(seqs.size(), static_cast<std::size_t>(n));
    EXPECT_EQ(frames.back()["type"], "done");
    return frames.back()["job"];
  }

  std::unique_ptr<TestServer> server_;
};

TEST_F(WebSocketTest, FinishedJobReplaysThenDoneAndNormalClose) {
  const std::string id = Submit("echo", Range(50));
  ASSERT_EQ(WaitForJob(port(), id)["state"], "done");
  WsClient ws(port(), "/v1/jobs/" + id + "/stream");
  ASSERT_EQ(ws.handshake_status(), 101);
  auto frames = ws.ReadAll();
  json done = ExpectResultsThenDone(frames, 50);
  EXPECT_EQ(done["id"], id);
  EXPECT_EQ(done["state"], "done");
  EXPECT_EQ(done["items"]["out"], 50);
  EXPECT_EQ(ws.close_code(), 1000);
  for (std::size_t i = 0; i + 1 < frames.size(); ++i) {
    EXPECT_EQ(frames[i]["value"], frames[i]["seq"]);
  }
}

TEST_F(WebSocketTest, RunningJobStreamsLiveResults) {
  // 20 items x 50 ms on one worker: about a second of live results.
  const std::string id = Submit("slow", Range(20));
  WsClient ws(port(), "/v1/jobs/" + id + "/stream");
  ASSERT_EQ(ws.handshake_status(), 101);
  auto first = ws.Read();
  ASSERT_TRUE(first);
  // The first result arrives while the job still runs.
  EXPECT_EQ(Http(port(), "GET", "/v1/jobs/" + id).json()["state"], "running");
  std::string text = Http(port(), "GET", "/metrics").body;
  EXPECT_EQ(
      MetricValue(text, "sluice_websocket_connections{kind=\"job_stream\"}"),
      1);
  auto rest = ws.ReadAll();
  rest.insert(rest.begin(), json::parse(*first));
  json done = ExpectResultsThenDone(rest, 20);
  EXPECT_EQ(done["state"], "done");
  EXPECT_EQ(ws.close_code(), 1000);
}

TEST_F(WebSocketTest, ErrorRecordsBecomeErrorFrames) {
  const std::string id = Submit("hash", json::parse(R"([{"text":"x"}, 5])"));
  WsClient ws(port(), "/v1/jobs/" + id + "/stream");
  auto frames = ws.ReadAll();
  ASSERT_EQ(frames.size(), 3u);
  bool saw_error = false;
  for (std::size_t i = 0; i < 2; ++i) {
    if (frames[i]["type"] == "error") {
      saw_error = true;
      EXPECT_EQ(frames[i]["seq"], 1);
      EXPECT_EQ(frames[i]["stage"], "digest");
      EXPECT_TRUE(frames[i]["error"].is_string());
    }
  }
  EXPECT_TRUE(saw_error);
  EXPECT_EQ(frames[2]["type"], "done");
  EXPECT_EQ(frames[2]["job"]["items"]["errors"], 1);
}

TEST_F(WebSocketTest, UnknownJobOrPipelineIs404BeforeUpgrade) {
  WsClient job(port(), "/v1/jobs/ffffffffffffffff/stream");
  EXPECT_EQ(job.handshake_status(), 404);
  EXPECT_NE(job.refusal_body().find("unknown_job"), std::string::npos)
      << job.refusal_body();
  WsClient pipeline(port(), "/v1/stream?pipeline=nope");
  EXPECT_EQ(pipeline.handshake_status(), 404);
  EXPECT_NE(pipeline.refusal_body().find("unknown_pipeline"),
            std::string::npos);
  WsClient missing(port(), "/v1/stream");
  EXPECT_EQ(missing.handshake_status(), 400);
  WsClient elsewhere(port(), "/v1/pipelines");
  EXPECT_EQ(elsewhere.handshake_status(), 405);
  // None of them created a job.
  EXPECT_EQ(Http(port(), "GET", "/v1/jobs").json()["jobs"].size(), 0u);
}

TEST_F(WebSocketTest, SlowReaderOnlySlowsItself) {
  // Enough results (~2 MB of frames) that the socket buffers fill up while
  // the slow client does not read; the submission needs a bigger body limit.
  std::string config = kTestConfig;
  const std::string small = "max_body_bytes: 4096";
  config.replace(config.find(small), small.size(), "max_body_bytes: 16MiB");
  server_ = std::make_unique<TestServer>(config);
  json items = json::array();
  const std::string pad(200, 'x');
  for (int i = 0; i < 10000; ++i) items.push_back({{"i", i}, {"pad", pad}});
  const std::string id = Submit("echo", items);
  ASSERT_EQ(WaitForJob(port(), id)["state"], "done");

  WsClient slow(port(), "/v1/jobs/" + id + "/stream");
  ASSERT_EQ(slow.handshake_status(), 101);
  auto first = slow.Read();  // the stream has started...
  ASSERT_TRUE(first);
  std::this_thread::sleep_for(1500ms);  // ...and then the client stalls.

  // Meanwhile a fast reader of the same job gets everything, and the
  // server keeps serving HTTP.
  auto start = std::chrono::steady_clock::now();
  WsClient fast(port(), "/v1/jobs/" + id + "/stream");
  auto fast_frames = fast.ReadAll();
  EXPECT_LT(std::chrono::steady_clock::now() - start, 20s);
  ExpectResultsThenDone(fast_frames, 10000);
  EXPECT_EQ(fast.close_code(), 1000);
  EXPECT_EQ(Http(port(), "GET", "/healthz").status, 200);

  // The slow reader resumes where it stopped and still gets everything.
  auto rest = slow.ReadAll();
  rest.insert(rest.begin(), json::parse(*first));
  ExpectResultsThenDone(rest, 10000);
  EXPECT_EQ(slow.close_code(), 1000);
}

TEST_F(WebSocketTest, IngestStreamsResultsBackAndDoneAfterEnd) {
  WsClient ws(port(), "/v1/stream?pipeline=echo");
  ASSERT_EQ(ws.handshake_status(), 101);
  const std::string id = ws.handshake_header("x-sluice-job");
  EXPECT_FALSE(id.empty());
  ws.Send(R"({"item": 0})");
  ws.Send(R"({"items": [1, 2, 3]})");
  auto frame = ws.Read();
  ASSERT_TRUE(frame);
  EXPECT_EQ(json::parse(*frame)["type"], "result");
  ws.Send(R"({"items": [4], "end": true})");
  auto frames = ws.ReadAll();
  frames.insert(frames.begin(), json::parse(*frame));
  json done = ExpectResultsThenDone(frames, 5);
  EXPECT_EQ(done["id"], id);
  EXPECT_EQ(done["state"], "done");
  EXPECT_EQ(done["items"]["in"], 5);
  EXPECT_EQ(ws.close_code(), 1000);
  // The stream's job is a job like any other.
  EXPECT_EQ(Http(port(), "GET", "/v1/jobs/" + id + "/results").json()["total"],
            5);
}

TEST_F(WebSocketTest, IngestBadFramesGetErrorFramesAndChangeNothing) {
  WsClient ws(port(), "/v1/stream?pipeline=echo");
  ASSERT_EQ(ws.handshake_status(), 101);
  ws.Send("{not json");
  json e = json::parse(ws.Read().value_or("{}"));
  EXPECT_EQ(e["type"], "error");
  EXPECT_EQ(e["code"], "invalid_json");
  EXPECT_FALSE(e.contains("seq"));
  ws.Send(R"([1, 2])");
  EXPECT_EQ(json::parse(ws.Read().value_or("{}"))["code"], "invalid_frame");
  ws.Send(R"({"itemz": 1})");
  EXPECT_EQ(json::parse(ws.Read().value_or("{}"))["code"], "invalid_frame");
  ws.Send(R"({"end": false})");
  EXPECT_EQ(json::parse(ws.Read().value_or("{}"))["code"], "invalid_frame");
  ws.Send(R"({"item": "ok"})");
  ws.Send(R"({"end": true})");
  auto frames = ws.ReadAll();
  json done = ExpectResultsThenDone(frames, 1);
  EXPECT_EQ(done["items"]["in"], 1);
  EXPECT_EQ(ws.close_code(), 1000);
}

TEST_F(WebSocketTest, IngestBinaryFrameCloses1003) {
  WsClient ws(port(), "/v1/stream?pipeline=echo");
  ASSERT_EQ(ws.handshake_status(), 101);
  ws.SendBinary("\x01\x02");
  EXPECT_FALSE(ws.Read());
  EXPECT_EQ(ws.close_code(), 1003);
  EXPECT_FALSE(ws.close_reason().empty());
}

TEST_F(WebSocketTest, IngestBackPressureLosesNothing) {
  // The slow pipeline takes 50 ms per item on one worker; the client sends
  // 60 items as fast as it can. The server reads a frame only once the feed
  // accepted the previous one; every item still comes back.
  WsClient ws(port(), "/v1/stream?pipeline=slow");
  ASSERT_EQ(ws.handshake_status(), 101);
  std::thread sender([&] {
    for (int i = 0; i < 60; ++i) ws.Send(json{{"item", i}}.dump());
  });
  sender.join();
  ws.Send(R"({"end": true})");
  auto frames = ws.ReadAll(60s);
  json done = ExpectResultsThenDone(frames, 60);
  EXPECT_EQ(done["items"]["in"], 60);
  EXPECT_EQ(done["items"]["out"], 60);
}

TEST_F(WebSocketTest, IngestClientLeavingEndsTheInputButKeepsResults) {
  std::string id;
  {
    WsClient ws(port(), "/v1/stream?pipeline=echo");
    ASSERT_EQ(ws.handshake_status(), 101);
    id = ws.handshake_header("x-sluice-job");
    ws.Send(R"({"items": [1, 2, 3]})");
    ASSERT_TRUE(ws.Read());
    ws.Close();
  }
  json status = WaitForJob(port(), id);
  EXPECT_EQ(status["state"], "done");
  EXPECT_EQ(status["items"]["in"], 3);
  EXPECT_EQ(status["items"]["out"], 3);
}

TEST(WebSocketAuth, UpgradeNeedsTheToken) {
  // NOLINTNEXTLINE(concurrency-mt-unsafe): tests run one at a time
  ::setenv("SLUICE_ITEST_WS_TOKENS", "tok", 1);
  TestServer server(R"(
server: { listen: "127.0.0.1:0", auth: { tokens_env: SLUICE_ITEST_WS_TOKENS } }
pipelines:
  - name: echo
    stages: [ { name: pass, processor: { type: passthrough } } ]
)");
  WsClient refused(server.port(), "/v1/stream?pipeline=echo");
  EXPECT_EQ(refused.handshake_status(), 401);
  WsClient accepted(server.port(), "/v1/stream?pipeline=echo",
                    {{"Authorization", "Bearer tok"}});
  EXPECT_EQ(accepted.handshake_status(), 101);
  accepted.Send(R"({"end": true})");
  auto frames = accepted.ReadAll();
  ASSERT_EQ(frames.size(), 1u);
  EXPECT_EQ(frames[0]["type"], "done");
  ::unsetenv("SLUICE_ITEST_WS_TOKENS");  // NOLINT(concurrency-mt-unsafe)
}

}  // namespace
}  // namespace sluice::itest
