// Integration tests of the HTTP API (contract §C2) against the real server:
// every route, every bad-input case, limits, auth, keep-alive, metrics, and
// 8 concurrent clients x 100 jobs with exact counts.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "client.hpp"

namespace sluice::itest {
namespace {

using nlohmann::json;

class HttpApiTest : public ::testing::Test {
 protected:
  void SetUp() override { server_ = std::make_unique<TestServer>(kTestConfig); }
  std::uint16_t port() const { return server_->port(); }

  std::size_t JobCount() {
    HttpResponse r = Http(port(), "GET", "/v1/jobs?limit=1000");
    EXPECT_EQ(r.status, 200) << r.body;
    return r.json()["jobs"].size();
  }

  std::string Submit(const std::string& pipeline, const std::string& items) {
    HttpResponse r =
        Http(port(), "POST", "/v1/jobs?pipeline=" + pipeline, items);
    EXPECT_EQ(r.status, 202) << r.body;
    return r.status == 202 ? r.json()["id"].get<std::string>() : "";
  }

  static void ExpectError(const HttpResponse& r, int status,
                          const std::string& code) {
    ASSERT_EQ(r.status, status) << r.body << r.error;
    EXPECT_EQ(r.header("content-type"), "application/json");
    json body = json::parse(r.body, nullptr, false);
    ASSERT_TRUE(body.is_object()) << r.body;
    EXPECT_EQ(body["error"]["code"], code) << r.body;
    EXPECT_TRUE(body["error"]["message"].is_string()) << r.body;
  }

  std::unique_ptr<TestServer> server_;
};

TEST_F(HttpApiTest, SubmitReturns202AndTheJobRuns) {
  HttpResponse r = Http(port(), "POST", "/v1/jobs?pipeline=echo",
                        R"([1, {"a": 2}, "three"])");
  ASSERT_EQ(r.status, 202) << r.body;
  json accepted = r.json();
  const std::string id = accepted["id"];
  EXPECT_EQ(accepted["pipeline"], "echo");
  EXPECT_EQ(accepted["items"], 3);
  EXPECT_EQ(accepted["links"]["self"], "/v1/jobs/" + id);
  EXPECT_EQ(accepted["links"]["results"], "/v1/jobs/" + id + "/results");
  EXPECT_EQ(accepted["links"]["stream"], "/v1/jobs/" + id + "/stream");
  EXPECT_EQ(r.header("location"), "/v1/jobs/" + id);

  json status = WaitForJob(port(), id);
  EXPECT_EQ(status["state"], "done");
  EXPECT_EQ(
      status["items"],
      json::parse(R"({"in":3,"out":3,"filtered":0,"errors":0,"cancelled":0,
                    "completed":3})"));
  EXPECT_EQ(status["id"], id);
  EXPECT_EQ(status["pipeline"], "echo");
  // RFC 3339 UTC with milliseconds.
  EXPECT_EQ(status["created_at"].get<std::string>().size(), 24u);
  EXPECT_EQ(status["created_at"].get<std::string>().back(), 'Z');
  EXPECT_TRUE(status["finished_at"].is_string());
  EXPECT_TRUE(status.contains("aggregate"));
}

TEST_F(HttpApiTest, ObjectBodyAndNdjsonBody) {
  HttpResponse r =
      Http(port(), "POST", "/v1/jobs",
           R"({"pipeline":"words","items":["a b c","d e"],"ordered":true})");
  ASSERT_EQ(r.status, 202) << r.body;
  json status = WaitForJob(port(), r.json()["id"]);
  EXPECT_EQ(status["state"], "done");
  EXPECT_EQ(status["items"]["in"], 2);
  EXPECT_EQ(status["items"]["out"], 5);
  EXPECT_EQ(status["aggregate"], 5);

  r = Http(port(), "POST", "/v1/jobs?pipeline=echo", "1\n2\n\n{\"x\":3}\n",
           {{"Content-Type", "application/x-ndjson"}});
  ASSERT_EQ(r.status, 202) << r.body;
  EXPECT_EQ(r.json()["items"], 3);
  EXPECT_EQ(WaitForJob(port(), r.json()["id"])["items"]["out"], 3);
}

TEST_F(HttpApiTest, WaitReturnsTheFinishedStatusOr202) {
  auto start = std::chrono::steady_clock::now();
  HttpResponse r =
      Http(port(), "POST", "/v1/jobs?pipeline=echo&wait=10", "[1,2,3]");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.json()["state"], "done");
  EXPECT_EQ(r.json()["items"]["out"], 3);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 5s);

  // 10 items x 50 ms on one worker: not done within 0.2 s.
  start = std::chrono::steady_clock::now();
  r = Http(port(), "POST", "/v1/jobs?pipeline=slow&wait=0.2",
           "[1,2,3,4,5,6,7,8,9,10]");
  auto elapsed = std::chrono::steady_clock::now() - start;
  ASSERT_EQ(r.status, 202) << r.body;
  EXPECT_TRUE(r.json().contains("links"));
  EXPECT_GE(elapsed, 190ms);
  EXPECT_LT(elapsed, 3s);

  // While one connection waits, others are served (the wait blocks no thread).
  std::thread waiter([&] {
    HttpResponse w =
        Http(port(), "POST", "/v1/jobs?pipeline=slow&wait=1.5",
             "[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,"
             "25,26,27,28,29,30,31,32,33,34,35,36,37,38,39,40]");
    EXPECT_EQ(w.status, 202);
  });
  std::this_thread::sleep_for(100ms);
  for (int i = 0; i < 5; ++i)
    EXPECT_EQ(Http(port(), "GET", "/healthz").status, 200);
  waiter.join();
}

TEST_F(HttpApiTest, StatusResultsPagingAndNdjson) {
  const std::string id = Submit("echo", "[0,1,2,3,4,5,6,7,8,9]");
  ASSERT_EQ(WaitForJob(port(), id)["state"], "done");

  HttpResponse r = Http(port(), "GET", "/v1/jobs/" + id + "/results");
  ASSERT_EQ(r.status, 200);
  json page = r.json();
  EXPECT_EQ(page["offset"], 0);
  EXPECT_EQ(page["limit"], 1000);
  EXPECT_EQ(page["total"], 10);
  std::set<int> seqs;
  for (const auto& rec : page["results"]) {
    EXPECT_EQ(rec["value"], rec["seq"]);
    seqs.insert(rec["seq"].get<int>());
  }
  EXPECT_EQ(seqs.size(), 10u);

  r = Http(port(), "GET", "/v1/jobs/" + id + "/results?offset=8&limit=5");
  page = r.json();
  EXPECT_EQ(page["offset"], 8);
  EXPECT_EQ(page["limit"], 5);
  EXPECT_EQ(page["total"], 10);
  EXPECT_EQ(page["results"].size(), 2u);

  ExpectError(Http(port(), "GET", "/v1/jobs/" + id + "/results?limit=10001"),
              400, "invalid_request");
  ExpectError(Http(port(), "GET", "/v1/jobs/" + id + "/results?offset=x"), 400,
              "invalid_request");

  r = Http(port(), "GET", "/v1/jobs/" + id + "/results?limit=4", "",
           {{"Accept", "application/x-ndjson"}});
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(r.header("content-type"), "application/x-ndjson");
  std::istringstream lines(r.body);
  std::string line;
  int n = 0;
  while (std::getline(lines, line)) {
    json rec = json::parse(line);
    EXPECT_TRUE(rec.contains("seq") && rec.contains("value"));
    ++n;
  }
  EXPECT_EQ(n, 4);
}

TEST_F(HttpApiTest, ErrorRecordsNameTheirStage) {
  const std::string id = Submit("hash", R"([{"text":"a"}, {"no":"text"}])");
  json status = WaitForJob(port(), id);
  EXPECT_EQ(status["state"], "done");
  EXPECT_EQ(status["items"]["out"], 1);
  EXPECT_EQ(status["items"]["errors"], 1);
  json page = Http(port(), "GET", "/v1/jobs/" + id + "/results").json();
  bool saw_error = false;
  for (const auto& rec : page["results"]) {
    if (rec.contains("error")) {
      saw_error = true;
      EXPECT_EQ(rec["seq"], 1);
      EXPECT_EQ(rec["stage"], "digest");
    } else {
      EXPECT_EQ(rec["value"]["hash"].get<std::string>().size(), 64u);
    }
  }
  EXPECT_TRUE(saw_error);
}

TEST_F(HttpApiTest, DeleteCancelsListIsNewestFirstPipelinesDescribe) {
  const std::string slow =
      Submit("slow", "[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20]");
  HttpResponse r = Http(port(), "DELETE", "/v1/jobs/" + slow);
  ASSERT_EQ(r.status, 200) << r.body;
  json status = WaitForJob(port(), slow);
  EXPECT_EQ(status["state"], "cancelled");
  EXPECT_GT(status["items"]["cancelled"].get<int>(), 0);
  const auto& items = status["items"];
  EXPECT_EQ(items["in"].get<int>(),
            items["out"].get<int>() + items["cancelled"].get<int>());

  const std::string newest = Submit("echo", "[1]");
  json list = Http(port(), "GET", "/v1/jobs").json()["jobs"];
  ASSERT_GE(list.size(), 2u);
  EXPECT_EQ(list[0]["id"], newest);
  EXPECT_EQ(list[1]["id"], slow);

  json pipelines = Http(port(), "GET", "/v1/pipelines").json()["pipelines"];
  ASSERT_EQ(pipelines.size(), 4u);
  std::set<std::string> names;
  for (const auto& p : pipelines) {
    names.insert(p["name"]);
    ASSERT_FALSE(p["stages"].empty());
    EXPECT_TRUE(p["stages"][0].contains("workers"));
    EXPECT_TRUE(p["stages"][0].contains("buffer"));
  }
  EXPECT_EQ(names, (std::set<std::string>{"echo", "words", "hash", "slow"}));
}

TEST_F(HttpApiTest, ProbesMetricsUnknownRoutesAndWrongMethods) {
  EXPECT_EQ(Http(port(), "GET", "/healthz").status, 200);
  HttpResponse ready = Http(port(), "GET", "/readyz");
  EXPECT_EQ(ready.status, 200);
  EXPECT_EQ(ready.json()["status"], "ready");
  HttpResponse metrics = Http(port(), "GET", "/metrics");
  EXPECT_EQ(metrics.status, 200);
  EXPECT_EQ(metrics.header("content-type"),
            "text/plain; version=0.0.4; charset=utf-8");
  EXPECT_EQ(MetricValue(metrics.body, "sluice_build_info{version=\"itest\"}"),
            1);
  // DESIGN.md §3.8's process_* families, beside the service's own.
  for (const char* series :
       {"process_resident_memory_bytes", "process_open_fds", "process_max_fds",
        "process_start_time_seconds", "process_threads"}) {
    EXPECT_GT(MetricValue(metrics.body, series), 0) << series;
  }
  // -1 when absent; 0 is a process younger than one clock tick of CPU.
  EXPECT_GE(MetricValue(metrics.body, "process_cpu_seconds_total"), 0);

  ExpectError(Http(port(), "GET", "/nothing/here"), 404, "not_found");
  HttpResponse r = Http(port(), "PATCH", "/v1/jobs");
  ExpectError(r, 405, "method_not_allowed");
  EXPECT_EQ(r.header("allow"), "GET, HEAD, POST");
  r = Http(port(), "POST", "/healthz", "x");
  ExpectError(r, 405, "method_not_allowed");
  EXPECT_EQ(r.header("allow"), "GET, HEAD");
  r = Http(port(), "HEAD", "/v1/pipelines");
  EXPECT_EQ(r.status, 200);
  EXPECT_TRUE(r.body.empty());
}

TEST_F(HttpApiTest, BadInputIs4xxAndChangesNothing) {
  Submit("echo", "[1]");
  const std::size_t before = JobCount();

  HttpResponse r = Http(port(), "POST", "/v1/jobs?pipeline=echo", "[1, 2,, 3]");
  ExpectError(r, 400, "invalid_json");
  EXPECT_EQ(r.json()["error"]["offset"], 6);
  EXPECT_NE(r.json()["error"]["message"].get<std::string>().find("6"),
            std::string::npos);
  r = Http(port(), "POST", "/v1/jobs?pipeline=echo", "[1]\n[2",
           {{"Content-Type", "application/x-ndjson"}});
  ExpectError(r, 400, "invalid_json");
  EXPECT_EQ(r.json()["error"]["offset"], 6);

  ExpectError(Http(port(), "POST", "/v1/jobs?pipeline=nope", "[1]"), 404,
              "unknown_pipeline");
  ExpectError(Http(port(), "POST", "/v1/jobs", "[1]"), 400, "invalid_request");
  ExpectError(
      Http(port(), "POST", "/v1/jobs?pipeline=echo", R"({"items":"x"})"), 400,
      "invalid_request");
  ExpectError(Http(port(), "POST", "/v1/jobs?pipeline=echo&wait=abc", "[1]"),
              400, "invalid_request");
  ExpectError(Http(port(), "GET", "/v1/jobs/ffffffffffffffff"), 404,
              "unknown_job");
  ExpectError(Http(port(), "GET", "/v1/jobs/ffffffffffffffff/results"), 404,
              "unknown_job");
  ExpectError(Http(port(), "DELETE", "/v1/jobs/ffffffffffffffff"), 404,
              "unknown_job");

  // Body over server.max_body_bytes (4096 here), by Content-Length: refused
  // from the header alone (no body is sent at all).
  std::string raw = RawExchange(
      port(),
      "POST /v1/jobs?pipeline=echo HTTP/1.1\r\nHost: x\r\nContent-Type: "
      "application/json\r\nContent-Length: 100000\r\n\r\n");
  EXPECT_EQ(RawStatus(raw), 413) << raw;
  EXPECT_NE(raw.find("\"payload_too_large\""), std::string::npos) << raw;
  EXPECT_NE(raw.find("Connection: close"), std::string::npos) << raw;

  // ... and by a chunked body that grows past it.
  std::string chunked =
      "POST /v1/jobs?pipeline=echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: "
      "chunked\r\n\r\n";
  std::string piece = "[" + std::string(1000, ' ');
  for (int i = 0; i < 6; ++i) {
    std::ostringstream size;
    size << std::hex << piece.size();
    chunked += size.str() + "\r\n" + piece + "\r\n";
    piece = std::string(1000, ' ');
  }
  chunked += "1\r\n]\r\n0\r\n\r\n";
  raw = RawExchange(port(), chunked);
  EXPECT_EQ(RawStatus(raw), 413) << raw;

  // Header block over server.max_header_bytes (2048 here).
  raw = RawExchange(port(), "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " +
                                std::string(4000, 'a') + "\r\n\r\n");
  EXPECT_EQ(RawStatus(raw), 431) << raw;

  // Not HTTP at all.
  raw = RawExchange(port(), "HELLO\r\n\r\n");
  EXPECT_EQ(RawStatus(raw), 400) << raw;

  EXPECT_EQ(JobCount(), before);
  // The server still serves.
  EXPECT_EQ(Http(port(), "GET", "/healthz").status, 200);
}

TEST_F(HttpApiTest, ChunkedBodyWithinLimitAndExpectContinue) {
  std::string raw = RawExchange(
      port(),
      "POST /v1/jobs?pipeline=echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
      "Transfer-Encoding: chunked\r\n\r\n3\r\n[1,\r\n2\r\n2]\r\n0\r\n\r\n");
  EXPECT_EQ(RawStatus(raw), 202) << raw;
  EXPECT_NE(raw.find("\"items\":2"), std::string::npos) << raw;

  raw = RawExchange(
      port(),
      "POST /v1/jobs?pipeline=echo HTTP/1.1\r\nHost: x\r\nConnection: "
      "close\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n[1]");
  EXPECT_EQ(RawStatus(raw), 100) << raw;
  EXPECT_NE(raw.find("HTTP/1.1 202 Accepted"), std::string::npos) << raw;
}

TEST_F(HttpApiTest, KeepAliveServesManyRequestsOnOneConnection) {
  HttpClient client(port());
  for (int i = 0; i < 20; ++i) {
    HttpResponse r = client.Request("GET", "/healthz");
    ASSERT_EQ(r.status, 200) << r.error;
    EXPECT_TRUE(client.open());
  }
  HttpResponse r =
      client.Request("POST", "/v1/jobs?pipeline=echo&wait=5", "[1]");
  EXPECT_EQ(r.status, 200);
  // An error that leaves the stream intact keeps the connection too.
  r = client.Request("GET", "/v1/jobs/nope");
  EXPECT_EQ(r.status, 404);
  EXPECT_TRUE(client.open());
}

TEST_F(HttpApiTest, MetricsCountRequestsByRouteTemplate) {
  const std::string id = Submit("echo", "[1, 2]");
  WaitForJob(port(), id);
  Http(port(), "GET", "/v1/jobs/" + id + "/results");
  Http(port(), "GET", "/v1/jobs/nope");
  std::string text = Http(port(), "GET", "/metrics").body;
  EXPECT_EQ(text.find(id), std::string::npos)
      << "a raw job id leaked into a label";
  EXPECT_GE(MetricValue(text,
                        "sluice_http_requests_total{code=\"200\",method="
                        "\"GET\",route=\"/v1/jobs/{id}\"}"),
            1);
  EXPECT_EQ(MetricValue(text,
                        "sluice_http_requests_total{code=\"404\",method="
                        "\"GET\",route=\"/v1/jobs/{id}\"}"),
            1);
  EXPECT_EQ(MetricValue(text,
                        "sluice_http_requests_total{code=\"200\",method="
                        "\"GET\",route=\"/v1/jobs/{id}/results\"}"),
            1);
  EXPECT_EQ(MetricValue(text,
                        "sluice_http_requests_total{code=\"202\",method="
                        "\"POST\",route=\"/v1/jobs\"}"),
            1);
  EXPECT_GE(MetricValue(text,
                        "sluice_http_request_duration_seconds_count{route=\"/"
                        "v1/jobs/{id}\"}"),
            2);
  EXPECT_EQ(
      MetricValue(text, "sluice_jobs_total{pipeline=\"echo\",state=\"done\"}"),
      1);
  EXPECT_EQ(MetricValue(text,
                        "sluice_items_total{outcome=\"in\",pipeline=\"echo\","
                        "stage=\"pass\"}"),
            2);
}

TEST_F(HttpApiTest, EightClientsTimesHundredJobsExactCounts) {
  constexpr int kClients = 8;
  constexpr int kJobs = 100;
  constexpr int kItems = 5;
  std::atomic<int> ok{0};
  std::atomic<int> outs{0};
  std::vector<std::thread> threads;
  threads.reserve(kClients);
  for (int c = 0; c < kClients; ++c) {
    threads.emplace_back([&, c] {
      HttpClient client(port());
      for (int j = 0; j < kJobs; ++j) {
        json items = json::array();
        for (int i = 0; i < kItems; ++i)
          items.push_back({{"c", c}, {"j", j}, {"i", i}});
        HttpResponse r = client.Request(
            "POST", "/v1/jobs?pipeline=echo&wait=30", items.dump());
        if (r.status != 200) {
          ADD_FAILURE() << r.status << " " << r.body << r.error;
          continue;
        }
        json status = r.json();
        if (status["state"] == "done" && status["items"]["in"] == kItems) ++ok;
        outs += status["items"]["out"].get<int>();
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(ok.load(), kClients * kJobs);
  EXPECT_EQ(outs.load(), kClients * kJobs * kItems);
  EXPECT_EQ(JobCount(), static_cast<std::size_t>(kClients * kJobs));
  std::string text = Http(port(), "GET", "/metrics").body;
  EXPECT_EQ(
      MetricValue(text, "sluice_jobs_total{pipeline=\"echo\",state=\"done\"}"),
      kClients * kJobs);
  EXPECT_EQ(MetricValue(text,
                        "sluice_items_total{outcome=\"out\",pipeline=\"echo\","
                        "stage=\"pass\"}"),
            kClients * kJobs * kItems);
  EXPECT_EQ(MetricValue(text,
                        "sluice_http_requests_total{code=\"200\",method="
                        "\"POST\",route=\"/v1/jobs\"}"),
            kClients * kJobs);
  EXPECT_EQ(MetricValue(text, "sluice_jobs_active{pipeline=\"echo\"}"), 0);
}

// ---- servers with other settings --------------------------------------------

TEST(HttpLimits, AdmissionLimitIs429WithRetryAfterAndChangesNothing) {
  TestServer server(R"(
server: { listen: "127.0.0.1:0" }
jobs: { max_pending_items: 10 }
pipelines:
  - name: slow
    stages:
      - { name: sleep, processor: { type: delay, duration: 200ms }, workers: 1 }
)");
  HttpResponse r = Http(server.port(), "POST", "/v1/jobs?pipeline=slow",
                        "[1,2,3,4,5,6,7,8,9,10]");
  ASSERT_EQ(r.status, 202) << r.body;
  r = Http(server.port(), "POST", "/v1/jobs?pipeline=slow", "[11]");
  ASSERT_EQ(r.status, 429) << r.body;
  EXPECT_EQ(r.json()["error"]["code"], "over_capacity");
  int retry = std::atoi(r.header("retry-after").c_str());
  EXPECT_GE(retry, 1);
  EXPECT_LE(retry, 60);
  EXPECT_EQ(Http(server.port(), "GET", "/v1/jobs").json()["jobs"].size(), 1u);
  EXPECT_EQ(Http(server.port(), "GET", "/readyz").status, 503);
  std::string text = Http(server.port(), "GET", "/metrics").body;
  EXPECT_EQ(
      MetricValue(text, "sluice_admission_rejections_total{pipeline=\"slow\"}"),
      1);
}

TEST(HttpLimits, AuthRequiresABearerTokenOnV1Only) {
  // Tests run one at a time; nothing reads the environment concurrently.
  // NOLINTNEXTLINE(concurrency-mt-unsafe)
  ::setenv("SLUICE_ITEST_TOKENS", "alpha, beta", 1);
  TestServer server(R"(
server: { listen: "127.0.0.1:0", auth: { tokens_env: SLUICE_ITEST_TOKENS } }
pipelines:
  - name: echo
    stages: [ { name: pass, processor: { type: passthrough } } ]
)");
  const auto port = server.port();
  HttpResponse r = Http(port, "POST", "/v1/jobs?pipeline=echo", "[1]");
  ASSERT_EQ(r.status, 401) << r.body;
  EXPECT_EQ(r.json()["error"]["code"], "unauthorized");
  EXPECT_EQ(r.header("www-authenticate"), "Bearer realm=\"sluice\"");
  EXPECT_EQ(
      Http(port, "GET", "/v1/jobs", "", {{"Authorization", "Bearer gamma"}})
          .status,
      401);
  EXPECT_EQ(
      Http(port, "GET", "/v1/jobs", "", {{"Authorization", "Bearer beta"}})
          .json()["jobs"]
          .size(),
      0u)
      << "the refused POST created a job";
  EXPECT_EQ(Http(port, "POST", "/v1/jobs?pipeline=echo", "[1]",
                 {{"Authorization", "Bearer alpha"}})
                .status,
            202);
  EXPECT_EQ(Http(port, "GET", "/healthz").status, 200);
  EXPECT_EQ(Http(port, "GET", "/readyz").status, 200);
  EXPECT_EQ(Http(port, "GET", "/metrics").status, 200);
  // A big unauthenticated body is refused from the header: 401, not 413.
  std::string raw =
      RawExchange(port,
                  "POST /v1/jobs?pipeline=echo HTTP/1.1\r\nHost: x\r\n"
                  "Content-Length: 50\r\n\r\n");
  EXPECT_EQ(RawStatus(raw), 401) << raw;
  ::unsetenv("SLUICE_ITEST_TOKENS");  // NOLINT(concurrency-mt-unsafe)
}

TEST(HttpLimits, ConnectionsBeyondMaxConnectionsAreRefused) {
  TestServer server(R"(
server: { listen: "127.0.0.1:0", max_connections: 2 }
pipelines:
  - name: echo
    stages: [ { name: pass, processor: { type: passthrough } } ]
)");
  std::optional<HttpClient> a(std::in_place, server.port());
  HttpClient b(server.port());
  ASSERT_EQ(a->Request("GET", "/healthz").status, 200);
  ASSERT_EQ(b.Request("GET", "/healthz").status, 200);
  // Both connections stay open (keep-alive): a third is closed unanswered.
  std::string raw = RawExchange(server.port(),
                                "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", 2s);
  EXPECT_EQ(RawStatus(raw), 0) << raw;
  // Once one closes, there is room again.
  a.reset();
  bool served = false;
  for (int i = 0; i < 50 && !served; ++i) {
    served =
        RawStatus(RawExchange(
            server.port(),
            "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            1s)) == 200;
    if (!served) std::this_thread::sleep_for(20ms);
  }
  EXPECT_TRUE(served);
}

}  // namespace
}  // namespace sluice::itest
