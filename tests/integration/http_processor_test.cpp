// Integration tests of the http processor: the real sluice server (TestServer)
// runs pipelines whose http stages call a scripted local upstream
// (upstream.hpp) over real sockets. Each case checks the documented result
// or error, that the job's counts add up, what the upstream saw (requests,
// retries, connections, concurrency) and, for one, /metrics. Every wait is
// bounded.

// GCC's -Wnull-dereference misfires, when optimizing, inside Boost.Asio
// (upstream.hpp): a false positive in Asio's code. Placed before every
// include so that the header code it reports on is covered.
#pragma GCC diagnostic ignored "-Wnull-dereference"

#include <gtest/gtest.h>
#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <iostream>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "client.hpp"
#include "tests/support/process_threads.hpp"
#include "upstream.hpp"

namespace sluice::itest {
namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

// The upstream's script, by path:
//   /echo...          200 {"method","target","body"(parsed),"ct"}
//   /slow             200 after 2 s (beyond the stages' timeouts)
//   /flaky/K          503 the first time per K, then 200 {"k":K}
//   /limited/K        429 + Retry-After: 1 the first time per K, then 200
//   /down             503 always
//   /reset            closes the connection without answering
//   /text             200 "hello" (text/plain)
//   /missing          404
//   /pool             200 {"n":..} after 20 ms
//   /close            200 with Connection: close
//   /idle             200 keep-alive, then the connection is closed anyway
//   /big              200 with a body of 16 MiB + 1 byte
UpstreamReply Script(const UpstreamRequest& r, std::mutex& mu,
                     std::map<std::string, int>& seen) {
  UpstreamReply reply;
  const std::string path = r.target.substr(0, r.target.find('?'));
  auto first_time = [&] {
    std::lock_guard lock(mu);
    return seen[path]++ == 0;
  };
  if (path.rfind("/echo", 0) == 0) {
    json out = {{"method", r.method}, {"target", r.target}};
    out["body"] = r.body.empty() ? json() : json::parse(r.body, nullptr, false);
    out["ct"] =
        r.headers.count("content-type") ? r.headers.at("content-type") : "";
    out["auth"] =
        r.headers.count("authorization") ? r.headers.at("authorization") : "";
    reply.body = out.dump();
  } else if (path == "/slow") {
    reply.delay = std::chrono::seconds(2);
  } else if (path.rfind("/flaky/", 0) == 0) {
    if (first_time()) {
      reply.status = 503;
    } else {
      reply.body = json{{"k", path.substr(7)}}.dump();
    }
  } else if (path.rfind("/limited/", 0) == 0) {
    if (first_time()) {
      reply.status = 429;
      reply.headers.emplace_back("Retry-After", "1");
    } else {
      reply.body = R"({"ok":true})";
    }
  } else if (path == "/down") {
    reply.status = 503;
  } else if (path == "/reset") {
    reply.reset = true;
  } else if (path == "/text") {
    reply.content_type = "text/plain";
    reply.body = "hello";
  } else if (path == "/pool") {
    reply.delay = std::chrono::milliseconds(20);
    reply.body = R"({"pooled":true})";
  } else if (path == "/big") {
    // One byte over the 16 MiB cap, as a valid JSON string.
    reply.body = "\"" + std::string(16 * 1024 * 1024 - 1, 'x') + "\"";
  } else if (path == "/idle") {
    reply.drop_after = true;
    reply.body = R"({"idle":true})";
  } else if (path == "/close") {
    reply.close = true;
    reply.body = R"({"closed":true})";
  } else {
    reply.status = 404;
    reply.body = R"({"error":"no such thing"})";
  }
  return reply;
}

// A port on 127.0.0.1 nothing listens on: bound by an upstream, then freed.
std::uint16_t ClosedPort() {
  Upstream gone([](const UpstreamRequest&) { return UpstreamReply{}; }, 1);
  return gone.port();
}

std::string Config(const std::string& base, std::uint16_t closed_port) {
  const std::string stage =
      "      - name: call\n        processor: { type: http, ";
  auto pipe = [&](const std::string& name, const std::string& params,
                  int workers = 2) {
    return "  - name: " + name + "\n    stages:\n" + stage + params +
           " }\n        workers: " + std::to_string(workers) + "\n";
  };
  return R"(
server:
  listen: "127.0.0.1:0"
  io_threads: 2
  shutdown_grace: 5s
jobs: { max_pending_items: 100000 }
pipelines:
)" + pipe("echo", "url: \"" + base + "/echo\"") +
         pipe("get",
              "url: \"" + base + "/echo/users/{/id}?q={/q}\", method: GET") +
         pipe("stored", "url: \"" + base +
                            "/echo\", method: PUT, result_field: /resp, "
                            "headers: { Authorization: \"Bearer t0k\" }") +
         pipe("slow", "url: \"" + base +
                          "/slow\", timeout: 200ms, retries: 1, backoff: "
                          "10ms") +
         pipe("flaky",
              "url: \"" + base + "/flaky/{/k}\", retries: 3, backoff: 10ms") +
         pipe("down", "url: \"" + base + "/down\", retries: 2, backoff: 10ms",
              1) +
         pipe("limited",
              "url: \"" + base + "/limited/{/k}\", retries: 2, backoff: 10ms") +
         pipe("reset", "url: \"" + base + "/reset\", retries: 2, backoff: 10ms",
              1) +
         pipe("text", "url: \"" + base + "/text\"") +
         pipe("missing", "url: \"" + base + "/missing\", method: DELETE") +
         pipe("pool", "url: \"" + base + "/pool\"", 4) +
         pipe("close", "url: \"" + base + "/close\"", 1) +
         pipe("idle", "url: \"" + base + "/idle\", retries: 0", 1) +
         pipe("big", "url: \"" + base + "/big\"", 1) +
         pipe("refused",
              "url: \"http://127.0.0.1:" + std::to_string(closed_port) +
                  "/x\", retries: 1, backoff: 10ms",
              1);
}

struct JobOutcome {
  json status;
  std::vector<json> records;  // sorted by seq
};

class HttpProcessorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    upstream_ = std::make_unique<Upstream>(
        [this](const UpstreamRequest& r) { return Script(r, mu_, seen_); }, 4);
    server_ =
        std::make_unique<TestServer>(Config(upstream_->base(), ClosedPort()));
  }
  void TearDown() override {
    server_.reset();  // drains first: no request is left pending upstream
    upstream_.reset();
  }

  std::uint16_t port() const { return server_->port(); }

  // Runs `items` (a JSON array) through `pipeline`; returns the final
  // status and the result records. Fails the test on a hang.
  JobOutcome Run(const std::string& pipeline, const std::string& items,
                 std::chrono::milliseconds timeout = std::chrono::seconds(60)) {
    JobOutcome out;
    HttpResponse r =
        Http(port(), "POST", "/v1/jobs?pipeline=" + pipeline, items);
    EXPECT_EQ(r.status, 202) << r.body;
    if (r.status != 202) return out;
    const std::string id = r.json()["id"];
    out.status = WaitForJob(port(), id, timeout);
    EXPECT_EQ(out.status["state"], "done") << out.status.dump();
    HttpResponse results =
        Http(port(), "GET", "/v1/jobs/" + id + "/results?limit=10000");
    EXPECT_EQ(results.status, 200);
    const json page = results.json();
    for (const json& rec : page["results"]) out.records.push_back(rec);
    std::sort(out.records.begin(), out.records.end(),
              [](const json& a, const json& b) { return a["seq"] < b["seq"]; });
    // Every accepted item ended as exactly one thing.
    const json& c = out.status["items"];
    EXPECT_EQ(
        c["in"].get<int>(),
        c["out"].get<int>() + c["filtered"].get<int>() + c["errors"].get<int>())
        << out.status.dump();
    EXPECT_EQ(c["cancelled"], 0);
    EXPECT_EQ(out.records.size(),
              c["out"].get<std::size_t>() + c["errors"].get<std::size_t>());
    return out;
  }

  // Requests the upstream saw whose path starts with `prefix`.
  std::vector<UpstreamRequest> Seen(const std::string& prefix) const {
    std::vector<UpstreamRequest> out;
    for (UpstreamRequest& r : upstream_->log()) {
      if (r.target.rfind(prefix, 0) == 0) out.push_back(std::move(r));
    }
    return out;
  }

  std::mutex mu_;
  std::map<std::string, int> seen_;
  std::unique_ptr<Upstream> upstream_;
  std::unique_ptr<TestServer> server_;
};

TEST_F(HttpProcessorTest, ResponseReplacesTheItemAndPostCarriesIt) {
  JobOutcome job = Run("echo", R"([{"a":1}, "two", [3]])");
  ASSERT_EQ(job.records.size(), 3u);
  EXPECT_EQ(job.status["items"]["out"], 3);
  const json want_bodies[] = {json::parse(R"({"a":1})"), "two",
                              json::parse("[3]")};
  for (int i = 0; i < 3; ++i) {
    const json& v = job.records[i]["value"];
    EXPECT_EQ(v["method"], "POST");
    EXPECT_EQ(v["target"], "/echo");
    EXPECT_EQ(v["body"], want_bodies[i]);
    EXPECT_EQ(v["ct"], "application/json");
  }
  EXPECT_EQ(Seen("/echo").size(), 3u);
}

TEST_F(HttpProcessorTest, GetExpandsAndEncodesTheUrlAndSendsNoBody) {
  JobOutcome job = Run("get", R"([{"id":"a b/c","q":"x&y=z"},
                                  {"id":42,"q":"é#"},
                                  {"q":"no id"}])");
  ASSERT_EQ(job.records.size(), 3u);
  EXPECT_EQ(job.records[0]["value"]["target"],
            "/echo/users/a%20b%2Fc?q=x%26y%3Dz");
  EXPECT_EQ(job.records[0]["value"]["method"], "GET");
  EXPECT_TRUE(job.records[0]["value"]["body"].is_null());
  EXPECT_EQ(job.records[1]["value"]["target"], "/echo/users/42?q=%C3%A9%23");
  EXPECT_EQ(job.records[2]["error"], "http: url: field /id not found");
  EXPECT_EQ(job.records[2]["stage"], "call");
  EXPECT_EQ(job.status["items"]["errors"], 1);
  // The item the URL could not take was never sent.
  EXPECT_EQ(Seen("/echo").size(), 2u);
  for (const UpstreamRequest& r : Seen("/echo")) {
    EXPECT_EQ(r.body, "");
    EXPECT_EQ(r.headers.count("content-length") ? r.headers.at("content-length")
                                                : "0",
              "0");
  }
}

TEST_F(HttpProcessorTest, ResultFieldKeepsTheItemAndHeadersAreSent) {
  JobOutcome job = Run("stored", R"([{"id":7}])");
  ASSERT_EQ(job.records.size(), 1u);
  const json& v = job.records[0]["value"];
  EXPECT_EQ(v["id"], 7);
  EXPECT_EQ(v["resp"]["method"], "PUT");
  EXPECT_EQ(v["resp"]["body"], json::parse(R"({"id":7})"));
  EXPECT_EQ(v["resp"]["auth"], "Bearer t0k");
}

TEST_F(HttpProcessorTest, SlowAnswerTimesOutAfterEveryAttempt) {
  const auto start = Clock::now();
  JobOutcome job = Run("slow", "[1]");
  const auto took = Clock::now() - start;
  ASSERT_EQ(job.records.size(), 1u);
  const std::string error = job.records[0]["error"];
  EXPECT_EQ(error,
            "http: read from 127.0.0.1:" + std::to_string(upstream_->port()) +
                ": timed out after 200ms after 2 attempts");
  EXPECT_EQ(Seen("/slow").size(), 2u) << "retries: 1 means 2 attempts";
  // 2 x 200ms timeouts + a backoff in [5, 10] ms, well before 2 s.
  EXPECT_GE(took, std::chrono::milliseconds(400));
  EXPECT_LT(took, std::chrono::milliseconds(1900));
}

TEST_F(HttpProcessorTest, ServiceUnavailableOnceThenOk) {
  JobOutcome job = Run("flaky", R"([{"k":"a"},{"k":"b"},{"k":"c"}])");
  ASSERT_EQ(job.records.size(), 3u);
  EXPECT_EQ(job.status["items"]["out"], 3);
  EXPECT_EQ(job.records[1]["value"], json::parse(R"({"k":"b"})"));
  // Each key: one 503, one 200.
  EXPECT_EQ(Seen("/flaky/").size(), 6u);
  for (const char* k : {"/flaky/a", "/flaky/b", "/flaky/c"}) {
    EXPECT_EQ(Seen(k).size(), 2u) << k;
  }

  // /metrics: every attempt counted by code, and timed.
  const std::string text = Http(port(), "GET", "/metrics").body;
  EXPECT_EQ(MetricValue(text,
                        "sluice_http_client_requests_total{code=\"503\","
                        "pipeline=\"flaky\",stage=\"call\"}"),
            3);
  EXPECT_EQ(MetricValue(text,
                        "sluice_http_client_requests_total{code=\"200\","
                        "pipeline=\"flaky\",stage=\"call\"}"),
            3);
  EXPECT_EQ(MetricValue(text,
                        "sluice_http_client_requests_total{code=\"timeout\","
                        "pipeline=\"flaky\",stage=\"call\"}"),
            0);
  EXPECT_EQ(MetricValue(text,
                        "sluice_http_client_duration_seconds_count{pipeline="
                        "\"flaky\",stage=\"call\"}"),
            6);
  // Present from start-up for a stage that made no request yet.
  EXPECT_EQ(MetricValue(text,
                        "sluice_http_client_requests_total{code=\"error\","
                        "pipeline=\"pool\",stage=\"call\"}"),
            0);
  EXPECT_EQ(MetricValue(text,
                        "sluice_http_client_duration_seconds_count{pipeline="
                        "\"pool\",stage=\"call\"}"),
            0);
}

TEST_F(HttpProcessorTest, PersistentFailureNamesTheStatusAndAttempts) {
  JobOutcome job = Run("down", "[1, 2]");
  ASSERT_EQ(job.records.size(), 2u);
  for (const json& rec : job.records) {
    EXPECT_EQ(rec["error"], "http: 503 Service Unavailable after 3 attempts");
  }
  EXPECT_EQ(job.status["items"]["errors"], 2);
  EXPECT_EQ(Seen("/down").size(), 6u);
  const std::string text = Http(port(), "GET", "/metrics").body;
  EXPECT_EQ(MetricValue(text,
                        "sluice_http_client_requests_total{code=\"503\","
                        "pipeline=\"down\",stage=\"call\"}"),
            6);
}

TEST_F(HttpProcessorTest, TooManyRequestsHonoursRetryAfter) {
  JobOutcome job = Run("limited", R"([{"k":"x"}])");
  ASSERT_EQ(job.records.size(), 1u);
  EXPECT_EQ(job.records[0]["value"], json::parse(R"({"ok":true})"));
  const auto seen = Seen("/limited/x");
  ASSERT_EQ(seen.size(), 2u);
  // Retry-After: 1 beats the 10 ms backoff.
  EXPECT_GE(seen[1].at - seen[0].at, std::chrono::milliseconds(950));
  EXPECT_LT(seen[1].at - seen[0].at, std::chrono::milliseconds(5000));
}

TEST_F(HttpProcessorTest, ConnectionResetIsRetriedThenNamed) {
  JobOutcome job = Run("reset", "[1]");
  ASSERT_EQ(job.records.size(), 1u);
  EXPECT_EQ(job.records[0]["error"],
            "http: read from 127.0.0.1:" + std::to_string(upstream_->port()) +
                ": the server closed the connection without a response "
                "after 3 attempts");
  EXPECT_EQ(Seen("/reset").size(), 3u);
  // Each attempt after a reset needed a new connection.
  std::set<std::uint64_t> connections;
  for (const UpstreamRequest& r : Seen("/reset")) {
    connections.insert(r.connection);
  }
  EXPECT_EQ(connections.size(), 3u);
}

TEST_F(HttpProcessorTest, NonJsonAndClientErrorsAreNotRetried) {
  JobOutcome text = Run("text", "[1]");
  ASSERT_EQ(text.records.size(), 1u);
  EXPECT_EQ(text.records[0]["error"], "http: response is not JSON (offset 0)");
  EXPECT_EQ(Seen("/text").size(), 1u);

  JobOutcome missing = Run("missing", "[1, 2]");
  ASSERT_EQ(missing.records.size(), 2u);
  EXPECT_EQ(missing.records[0]["error"], "http: 404 Not Found");
  EXPECT_EQ(Seen("/missing").size(), 2u);
  for (const UpstreamRequest& r : Seen("/missing")) {
    EXPECT_EQ(r.method, "DELETE");
  }
}

TEST_F(HttpProcessorTest, RefusedConnectionIsNamed) {
  JobOutcome job = Run("refused", "[1]");
  ASSERT_EQ(job.records.size(), 1u);
  const std::string error = job.records[0]["error"];
  EXPECT_EQ(error.rfind("http: connect to 127.0.0.1:", 0), 0u) << error;
  EXPECT_NE(error.find(": connection refused after 2 attempts"),
            std::string::npos)
      << error;
}

TEST_F(HttpProcessorTest, KeepAliveConnectionPerWorkerAndBoundedConcurrency) {
  constexpr int kItems = 200;
  std::string items = "[";
  for (int i = 0; i < kItems; ++i) items += (i ? "," : "") + std::to_string(i);
  items += "]";
  const auto start = Clock::now();
  JobOutcome job = Run("pool", items);
  const auto took = Clock::now() - start;
  EXPECT_EQ(job.status["items"]["out"], kItems);
  EXPECT_EQ(upstream_->requests(), static_cast<std::uint64_t>(kItems));
  // 4 workers: one connection each, reused; never more than 4 requests
  // held by the upstream at once, and the workers did overlap.
  EXPECT_LE(upstream_->connections(), 4u);
  EXPECT_GE(upstream_->connections(), 1u);
  EXPECT_LE(upstream_->max_in_flight(), 4);
  EXPECT_GE(upstream_->max_in_flight(), 2);
  // 200 x 20 ms over 4 workers is ~1 s; serial would be 4 s.
  EXPECT_LT(took, std::chrono::milliseconds(3500));
}

TEST_F(HttpProcessorTest, ReconnectsWhenTheServerClosesAfterEachAnswer) {
  JobOutcome job = Run("close", "[1, 2, 3, 4, 5]");
  EXPECT_EQ(job.status["items"]["out"], 5);
  EXPECT_EQ(Seen("/close").size(), 5u) << "no attempt went to a dead socket";
  EXPECT_EQ(upstream_->connections(), 5u);
}

TEST_F(HttpProcessorTest, IdleConnectionClosedByTheServerIsNotAFailedAttempt) {
  // retries: 0, so a request written into the dead connection would end
  // its item as an error; the client notices the close before writing.
  for (int i = 0; i < 3; ++i) {
    JobOutcome job = Run("idle", "[1]");
    ASSERT_EQ(job.records.size(), 1u);
    EXPECT_EQ(job.records[0]["value"], json::parse(R"({"idle":true})"))
        << job.records[0].dump();
    // Leave the server's FIN time to arrive before the next item.
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_EQ(Seen("/idle").size(), 3u);
  EXPECT_EQ(upstream_->connections(), 3u);
}

TEST_F(HttpProcessorTest, OversizedResponseIsAnItemErrorWithoutRetry) {
  JobOutcome job = Run("big", "[1]");
  ASSERT_EQ(job.records.size(), 1u);
  EXPECT_EQ(job.records[0]["error"], "http: response body exceeds 16 MiB");
  EXPECT_EQ(Seen("/big").size(), 1u);
}

// ---- 4,096 workers on a few threads -----------------------------------------

using test_support::ProcessThreads;

// Raises the soft limit on open files to at least `need` (to the hard
// limit, when that is higher); "" on success, else why not.
std::string RaiseFileLimit(rlim_t need) {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0) return "getrlimit failed";
  // RLIM_INFINITY is the largest rlim_t.
  if (limit.rlim_cur >= need) return "";
  if (limit.rlim_max < need) {
    return "the hard limit on open files (ulimit -Hn) is " +
           std::to_string(limit.rlim_max) + ", below the " +
           std::to_string(need) + " this test needs";
  }
  limit.rlim_cur = limit.rlim_max;
  if (setrlimit(RLIMIT_NOFILE, &limit) != 0) return "setrlimit failed";
  return "";
}

// Issue 12: a stage's `workers` is a concurrency limit, not a thread count.
// An http stage of 4,096 workers has all 4,096 exchanges in flight at once
// (the upstream holds every first answer until it has counted 4,096
// requests waiting, then answers each after 50..200 ms), while the
// process's thread count stays where it was with the server idle: the
// workers are tasks on the engine's runtime, suspended in await_callback
// while their exchanges run on the one IoLoop thread.
//
// The upstream runs in this process, but it is asynchronous (one io_context
// thread; its delays are timers and its held answers callbacks,
// upstream.hpp), and it is started before the first measurement: every
// thread counted beyond `before` is sluice's (or the test's HTTP clients',
// which start none).
TEST(HttpStageTasksTest, FourThousandWorkersWaitOnAFewThreads) {
  constexpr int kWorkers = 4096;
  constexpr int kItems = 2 * kWorkers;
  // Each worker's connection is two sockets of this process (sluice's end
  // and the upstream's), plus listeners, clients and files.
  const std::string no_room = RaiseFileLimit(2 * kWorkers + 512);
  if (!no_room.empty()) GTEST_SKIP() << no_room;

  // Answers {"n": <the item>} 50..200 ms (varying by item) after Release().
  Upstream upstream(
      [](const UpstreamRequest& r) {
        UpstreamReply reply;
        const json item = json::parse(r.body, nullptr, false);
        const int x = item.is_number_integer() ? item.get<int>() : 0;
        reply.body = json{{"n", item}}.dump();
        reply.delay = std::chrono::milliseconds(50 + (x * 37) % 151);
        reply.hold = true;
        return reply;
      },
      1);
  std::thread([] {}).join();  // lazily created helper threads now exist
  const int before = ProcessThreads();
  ASSERT_GT(before, 0) << "/proc/self/task is unreadable";

  TestServer server(R"(
server:
  listen: "127.0.0.1:0"
  io_threads: 2
  shutdown_grace: 5s
jobs: { max_pending_items: 100000 }
pipelines:
  - name: fan
    stages:
      - name: call
        processor: { type: http, url: ")" +
                    upstream.base() +
                    R"(/item", retries: 0, timeout: 60s }
        workers: 4096
    aggregate: { type: sum, field: /n }
)");
  const int idle = ProcessThreads();
  // The server's own threads: its I/O threads, the engine's runtime (one
  // per core), the IoLoop, the pipeline's generator and aggregator. A
  // thread per worker would be 4,096 more.
  const int cores =
      static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  EXPECT_LE(idle - before, cores + 16)
      << "before the server " << before << ", with it idle " << idle;

  std::string items = "[";
  for (int i = 0; i < kItems; ++i) items += (i ? "," : "") + std::to_string(i);
  items += "]";
  const auto start = Clock::now();
  HttpResponse posted =
      Http(server.port(), "POST", "/v1/jobs?pipeline=fan", items);
  ASSERT_EQ(posted.status, 202) << posted.body;
  const std::string id = posted.json()["id"];

  // Until every worker's request is held upstream (bounded, and within the
  // stage's 60 s timeout: a sluice that cannot get them all in flight
  // fails below rather than hanging), then 100 ms more with all of them
  // held, sampling the thread count.
  int most_threads = idle;
  int samples_all_held = 0;
  bool all_held = false;
  for (const auto until = Clock::now() + std::chrono::seconds(45);
       !all_held && Clock::now() < until;) {
    most_threads = std::max(most_threads, ProcessThreads());
    all_held = upstream.in_flight() >= kWorkers;
    if (!all_held) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  const auto held_until = Clock::now() + std::chrono::milliseconds(100);
  while (all_held && Clock::now() < held_until) {
    most_threads = std::max(most_threads, ProcessThreads());
    ++samples_all_held;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  const int in_flight_at_release = upstream.in_flight();
  upstream.Release();

  // The rest of the job: answers now come after their delays.
  HttpClient poll(server.port());
  json status;
  const auto deadline = Clock::now() + std::chrono::seconds(60);
  while (Clock::now() < deadline) {
    most_threads = std::max(most_threads, ProcessThreads());
    HttpResponse r = poll.Request("GET", "/v1/jobs/" + id);
    ASSERT_EQ(r.status, 200) << r.body;
    status = r.json();
    const std::string state = status["state"];
    if (state == "done" || state == "failed" || state == "cancelled") break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  const auto took = Clock::now() - start;

  // Every worker had its request in flight at once...
  EXPECT_TRUE(all_held) << "only " << in_flight_at_release << " of " << kWorkers
                        << " requests in flight after 45 s";
  EXPECT_EQ(upstream.max_in_flight(), kWorkers);
  EXPECT_GT(samples_all_held, 0);
  // ...on the threads the idle server already had.
  EXPECT_LE(most_threads - idle, 8)
      << "idle " << idle << ", at most " << most_threads << " while running";
  EXPECT_LT(most_threads - before, cores + 24)
      << "before the server " << before << ", at most " << most_threads;

  ASSERT_EQ(status["state"], "done") << status.dump();
  EXPECT_EQ(status["items"], json::parse(R"({"in":8192,"out":8192,
      "filtered":0,"errors":0,"cancelled":0,"completed":8192})"));
  EXPECT_EQ(status["aggregate"], json(std::int64_t{kItems} * (kItems - 1) / 2));
  EXPECT_EQ(upstream.requests(), static_cast<std::uint64_t>(kItems))
      << "retries: 0, so one request per item";
  EXPECT_EQ(upstream.connections(), static_cast<std::uint64_t>(kWorkers))
      << "one keep-alive connection per worker";

  HttpResponse results =
      poll.Request("GET", "/v1/jobs/" + id + "/results?limit=10000");
  ASSERT_EQ(results.status, 200);
  const json page = results.json();
  EXPECT_EQ(page["total"], kItems);
  ASSERT_EQ(page["results"].size(), static_cast<std::size_t>(kItems));
  std::vector<bool> seen(kItems, false);
  for (const json& rec : page["results"]) {
    const int seq = rec["seq"];
    ASSERT_TRUE(seq >= 0 && seq < kItems) << rec.dump();
    EXPECT_FALSE(seen[seq]) << "twice: " << rec.dump();
    seen[seq] = true;
    EXPECT_EQ(rec["value"], json({{"n", seq}})) << rec.dump();
  }
  EXPECT_EQ(std::count(seen.begin(), seen.end(), true), kItems);
  std::cout
      << "[ info ] threads: " << before << " before the server, " << idle
      << " idle, at most " << most_threads << "; " << samples_all_held
      << " samples with all " << kWorkers << " held; took "
      << std::chrono::duration_cast<std::chrono::milliseconds>(took).count()
      << " ms\n";
}

}  // namespace
}  // namespace sluice::itest
