// Tests of sluice::http::Router without sockets: every route of contract §C2,
// its status codes and error bodies, auth, and that a rejected request
// changes nothing. Runs a real Engine on a small config.
#include "service/http/router.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <thread>

#include "service/config/config.hpp"
#include "service/engine/engine.hpp"
#include "service/jobs/job.hpp"
#include "service/metrics/metrics.hpp"
#include "service/processors/checks.hpp"

namespace sluice::http {
namespace {

using nlohmann::json;
using std::chrono::milliseconds;

constexpr const char* kConfig = R"(
server: { listen: "127.0.0.1:0" }
jobs: { max_pending_items: 20 }
pipelines:
  - name: echo
    stages:
      - { name: pass, processor: { type: passthrough } }
  - name: words
    stages:
      - { name: split, processor: { type: split, field: "" } }
    aggregate: { type: count }
  - name: slow
    stages:
      - { name: sleep, processor: { type: delay, duration: 100ms }, workers: 1 }
)";

config::Config LoadTestConfig() {
  auto loaded = config::LoadConfigText(kConfig, processors::ConfigChecks());
  if (!loaded.ok()) {
    for (const auto& e : loaded.error()) ADD_FAILURE() << config::ToString(e);
    return {};
  }
  return loaded.value();
}

Request MakeRequest(
    bhttp::verb method, const std::string& target, std::string body = "",
    const std::vector<std::pair<bhttp::field, std::string>>& headers = {}) {
  Request req{method, target, 11};
  for (const auto& [name, value] : headers) req.set(name, value);
  req.body() = std::move(body);
  req.prepare_payload();
  return req;
}

// A WebSocket upgrade request for `target` with a valid handshake.
Request UpgradeRequest(const std::string& target) {
  return MakeRequest(
      bhttp::verb::get, target, "",
      {{bhttp::field::upgrade, "websocket"},
       {bhttp::field::connection, "Upgrade"},
       {bhttp::field::sec_websocket_key, "dGhlIHNhbXBsZSBub25jZQ=="},
       {bhttp::field::sec_websocket_version, "13"}});
}

json Body(const Response& res) { return json::parse(res.body()); }

class RouterTest : public ::testing::Test {
 protected:
  void SetUp() override { Make({}); }
  void TearDown() override {
    if (engine_) engine_->Shutdown(milliseconds(0));
  }

  void Make(std::vector<std::string> tokens,
            std::function<ReloadOutcome()> reload = {}) {
    router_.reset();
    if (engine_) engine_->Shutdown(milliseconds(0));
    engine_.reset();
    metrics_ = std::make_unique<metrics::Metrics>("test");
    engine_ = std::make_unique<engine::Engine>(LoadTestConfig(), *metrics_);
    router_ = std::make_unique<Router>(
        *engine_, *metrics_,
        RouterOptions{std::move(tokens), std::move(reload)});
  }

  Reply Do(
      bhttp::verb method, const std::string& target, std::string body = "",
      const std::vector<std::pair<bhttp::field, std::string>>& headers = {}) {
    return router_->Handle(
        MakeRequest(method, target, std::move(body), headers));
  }

  // Submits and waits (by polling) until the job has finished.
  std::shared_ptr<jobs::Job> RunJob(const std::string& pipeline,
                                    const std::string& items) {
    Reply r = Do(bhttp::verb::post, "/v1/jobs?pipeline=" + pipeline, items);
    EXPECT_EQ(r.response.result(), bhttp::status::accepted)
        << r.response.body();
    auto job = engine_->Find(Body(r.response)["id"].get<std::string>());
    EXPECT_TRUE(job);
    for (int i = 0; i < 1000 && job && !job->finished(); ++i) {
      std::this_thread::sleep_for(milliseconds(10));
    }
    EXPECT_TRUE(job && job->finished());
    return job;
  }

  std::size_t JobCount() { return engine_->List(1000).size(); }

  void ExpectError(const Reply& r, bhttp::status status,
                   const std::string& code) {
    EXPECT_EQ(r.response.result(), status) << r.response.body();
    EXPECT_EQ(r.response[bhttp::field::content_type], "application/json");
    json body = Body(r.response);
    EXPECT_EQ(body["error"]["code"], code) << r.response.body();
    EXPECT_TRUE(body["error"]["message"].is_string());
  }

  std::unique_ptr<metrics::Metrics> metrics_;
  std::unique_ptr<engine::Engine> engine_;
  std::unique_ptr<Router> router_;
};

TEST_F(RouterTest, HealthAndReadiness) {
  Reply h = Do(bhttp::verb::get, "/healthz");
  EXPECT_EQ(h.response.result(), bhttp::status::ok);
  EXPECT_EQ(h.route, kRouteHealthz);
  Reply r = Do(bhttp::verb::get, "/readyz");
  EXPECT_EQ(r.response.result(), bhttp::status::ok);
  EXPECT_EQ(Body(r.response)["status"], "ready");
  engine_->BeginDrain();
  r = Do(bhttp::verb::get, "/readyz");
  EXPECT_EQ(r.response.result(), bhttp::status::service_unavailable);
  EXPECT_EQ(Body(r.response)["status"], "draining");
  // Liveness is unaffected by the drain.
  EXPECT_EQ(Do(bhttp::verb::get, "/healthz").response.result(),
            bhttp::status::ok);
}

TEST_F(RouterTest, MetricsIsPrometheusText) {
  Reply r = Do(bhttp::verb::get, "/metrics");
  EXPECT_EQ(r.response.result(), bhttp::status::ok);
  EXPECT_EQ(r.route, kRouteMetrics);
  EXPECT_EQ(r.response[bhttp::field::content_type],
            "text/plain; version=0.0.4; charset=utf-8");
  EXPECT_NE(r.response.body().find("sluice_build_info{version=\"test\"} 1"),
            std::string::npos);
  EXPECT_NE(r.response.body().find("sluice_items_total{outcome=\"in\",pipeline="
                                   "\"echo\",stage=\"pass\"}"),
            std::string::npos);
}

TEST_F(RouterTest, UnknownRouteIs404AndWrongMethodIs405WithAllow) {
  Reply r = Do(bhttp::verb::get, "/v2/nothing");
  ExpectError(r, bhttp::status::not_found, "not_found");
  EXPECT_EQ(r.route, kRouteUnmatched);
  ExpectError(Do(bhttp::verb::get, "/v1/jobs/abc/nothing"),
              bhttp::status::not_found, "not_found");

  r = Do(bhttp::verb::put, "/v1/jobs");
  ExpectError(r, bhttp::status::method_not_allowed, "method_not_allowed");
  EXPECT_EQ(r.response[bhttp::field::allow], "GET, HEAD, POST");
  r = Do(bhttp::verb::post, "/v1/jobs/abc");
  ExpectError(r, bhttp::status::method_not_allowed, "method_not_allowed");
  EXPECT_EQ(r.response[bhttp::field::allow], "GET, HEAD, DELETE");
  r = Do(bhttp::verb::delete_, "/metrics");
  EXPECT_EQ(r.response[bhttp::field::allow], "GET, HEAD");
}

// The route table decides both what a method does and the Allow header of
// a 405, so the two must agree on every route: a method is refused exactly
// when the route's Allow header leaves it out.
TEST_F(RouterTest, AllowHeaderListsExactlyTheMethodsARouteServes) {
  const std::string job = RunJob("echo", "[1]")->id();
  const std::vector<std::string> targets = {"/healthz",
                                            "/readyz",
                                            "/metrics",
                                            "/v1/pipelines",
                                            "/v1/jobs",
                                            "/v1/jobs/" + job,
                                            "/v1/jobs/" + job + "/results",
                                            "/v1/jobs/" + job + "/stream",
                                            "/v1/stream"};
  const std::vector<bhttp::verb> methods = {
      bhttp::verb::get,    bhttp::verb::head,    bhttp::verb::post,
      bhttp::verb::put,    bhttp::verb::delete_, bhttp::verb::patch,
      bhttp::verb::options};
  for (const std::string& target : targets) {
    SCOPED_TRACE(target);
    // PATCH is served nowhere: its 405 names everything the route serves.
    Reply refused = Do(bhttp::verb::patch, target);
    ASSERT_EQ(refused.response.result(), bhttp::status::method_not_allowed);
    const std::string allow(refused.response[bhttp::field::allow]);
    ASSERT_FALSE(allow.empty());
    for (bhttp::verb method : methods) {
      // (DELETE of the finished job changes nothing.) A POST to /v1/jobs needs
      // a pipeline and items to be a job.
      const std::string query =
          method == bhttp::verb::post ? "?pipeline=echo" : "";
      Reply r = Do(method, target + query, "[]");
      const std::string name(bhttp::to_string(method));
      const bool listed =
          (", " + allow + ",").find(", " + name + ",") != std::string::npos;
      EXPECT_EQ(r.response.result() != bhttp::status::method_not_allowed,
                listed)
          << name << " answered " << r.response.result_int()
          << " with Allow: " << allow;
    }
  }
}

TEST_F(RouterTest, RouteTemplatesNeverContainIds) {
  EXPECT_EQ(Router::RouteOf("/v1/jobs/0123456789abcdef"), kRouteJob);
  EXPECT_EQ(Router::RouteOf("/v1/jobs/x/results?offset=3"), kRouteJobResults);
  EXPECT_EQ(Router::RouteOf("/v1/jobs/x/stream"), kRouteJobStream);
  EXPECT_EQ(Router::RouteOf("/v1/stream?pipeline=echo"), kRouteStream);
  EXPECT_EQ(Router::RouteOf("/v1/jobs?pipeline=echo"), kRouteJobs);
  EXPECT_EQ(Router::RouteOf("/v1/pipelines"), kRoutePipelines);
  EXPECT_EQ(Router::RouteOf("/favicon.ico"), kRouteUnmatched);
  EXPECT_EQ(Router::RouteOf("not a target"), kRouteUnmatched);
}

TEST_F(RouterTest, SubmitArrayReturns202WithLinks) {
  Reply r = Do(bhttp::verb::post, "/v1/jobs?pipeline=echo",
               R"([1, "two", {"x": 3}])");
  ASSERT_EQ(r.response.result(), bhttp::status::accepted) << r.response.body();
  EXPECT_EQ(r.route, kRouteJobs);
  json body = Body(r.response);
  const std::string id = body["id"];
  EXPECT_FALSE(id.empty());
  EXPECT_EQ(body["pipeline"], "echo");
  EXPECT_EQ(body["items"], 3);
  EXPECT_EQ(body["links"]["self"], "/v1/jobs/" + id);
  EXPECT_EQ(body["links"]["results"], "/v1/jobs/" + id + "/results");
  EXPECT_EQ(body["links"]["stream"], "/v1/jobs/" + id + "/stream");
  EXPECT_EQ(r.response[bhttp::field::location], "/v1/jobs/" + id);
  EXPECT_FALSE(r.wait_job);
}

TEST_F(RouterTest, SubmitObjectBodyAndNdjson) {
  Reply r = Do(bhttp::verb::post, "/v1/jobs",
               R"({"pipeline": "echo", "items": [1, 2], "ordered": true})");
  ASSERT_EQ(r.response.result(), bhttp::status::accepted) << r.response.body();
  EXPECT_EQ(Body(r.response)["items"], 2);

  r = Do(bhttp::verb::post, "/v1/jobs?pipeline=echo", "{\"a\":1}\n\n[2]\n3\n",
         {{bhttp::field::content_type, "application/x-ndjson; charset=utf-8"}});
  ASSERT_EQ(r.response.result(), bhttp::status::accepted) << r.response.body();
  auto job = engine_->Find(Body(r.response)["id"].get<std::string>());
  ASSERT_TRUE(job);
  EXPECT_EQ(Body(r.response)["items"], 3);
}

TEST_F(RouterTest, MalformedJsonIs400WithZeroBasedOffset) {
  const std::size_t before = JobCount();
  Reply r = Do(bhttp::verb::post, "/v1/jobs?pipeline=echo", "[1, 2,, 3]");
  ExpectError(r, bhttp::status::bad_request, "invalid_json");
  json body = Body(r.response);
  EXPECT_EQ(body["error"]["offset"], 6);
  EXPECT_NE(body["error"]["message"].get<std::string>().find("offset 6"),
            std::string::npos);

  r = Do(bhttp::verb::post, "/v1/jobs?pipeline=echo", "");
  ExpectError(r, bhttp::status::bad_request, "invalid_json");
  EXPECT_EQ(Body(r.response)["error"]["offset"], 0);

  // NDJSON: the offset counts from the start of the body.
  r = Do(bhttp::verb::post, "/v1/jobs?pipeline=echo", "1\n{\"a\" 2}\n",
         {{bhttp::field::content_type, "application/x-ndjson"}});
  ExpectError(r, bhttp::status::bad_request, "invalid_json");
  EXPECT_EQ(Body(r.response)["error"]["offset"], 7);
  EXPECT_EQ(JobCount(), before);
}

TEST_F(RouterTest, DeepNestingIs400AtTheBracketThatGoesTooDeep) {
  const std::size_t before = JobCount();
  const std::string deep =
      "[" + std::string(200, '[') + std::string(200, ']') + "]";
  Reply r = Do(bhttp::verb::post, "/v1/jobs?pipeline=echo", deep);
  ExpectError(r, bhttp::status::bad_request, "invalid_json");
  EXPECT_EQ(Body(r.response)["error"]["offset"], 128);
  EXPECT_NE(Body(r.response)["error"]["message"].get<std::string>().find(
                "nesting deeper than 128 levels"),
            std::string::npos);
  // The same in one NDJSON line.
  r = Do(bhttp::verb::post, "/v1/jobs?pipeline=echo", "1\n" + deep + "\n",
         {{bhttp::field::content_type, "application/x-ndjson"}});
  ExpectError(r, bhttp::status::bad_request, "invalid_json");
  EXPECT_EQ(Body(r.response)["error"]["offset"], 130);
  EXPECT_EQ(JobCount(), before);
}

TEST_F(RouterTest, BadSubmissionsAre4xxAndCreateNothing) {
  const std::size_t before = JobCount();
  ExpectError(Do(bhttp::verb::post, "/v1/jobs?pipeline=nope", "[1]"),
              bhttp::status::not_found, "unknown_pipeline");
  ExpectError(Do(bhttp::verb::post, "/v1/jobs", "[1]"),
              bhttp::status::bad_request, "invalid_request");
  ExpectError(Do(bhttp::verb::post, "/v1/jobs?pipeline=echo",
                 R"({"pipeline": "words", "items": []})"),
              bhttp::status::bad_request, "invalid_request");
  ExpectError(
      Do(bhttp::verb::post, "/v1/jobs?pipeline=echo", R"({"itemz": [1]})"),
      bhttp::status::bad_request, "invalid_request");
  ExpectError(
      Do(bhttp::verb::post, "/v1/jobs?pipeline=echo", R"({"items": 1})"),
      bhttp::status::bad_request, "invalid_request");
  ExpectError(Do(bhttp::verb::post, "/v1/jobs?pipeline=echo", R"("scalar")"),
              bhttp::status::bad_request, "invalid_request");
  ExpectError(Do(bhttp::verb::post, "/v1/jobs?pipeline=echo&wait=soon", "[1]"),
              bhttp::status::bad_request, "invalid_request");
  ExpectError(Do(bhttp::verb::post, "/v1/jobs?pipeline=echo&wait=-1", "[1]"),
              bhttp::status::bad_request, "invalid_request");
  EXPECT_EQ(JobCount(), before);
}

TEST_F(RouterTest, StatusResultsAndPaging) {
  auto job = RunJob("echo", "[10, 11, 12, 13, 14]");
  ASSERT_TRUE(job);
  Reply r = Do(bhttp::verb::get, "/v1/jobs/" + job->id());
  ASSERT_EQ(r.response.result(), bhttp::status::ok);
  EXPECT_EQ(r.route, kRouteJob);
  json status = Body(r.response);
  EXPECT_EQ(status["id"], job->id());
  EXPECT_EQ(status["pipeline"], "echo");
  EXPECT_EQ(status["state"], "done");
  EXPECT_EQ(status["items"]["in"], 5);
  EXPECT_EQ(status["items"]["out"], 5);
  for (const char* key :
       {"aggregate", "created_at", "started_at", "finished_at"}) {
    EXPECT_TRUE(status.contains(key)) << key;
  }

  r = Do(bhttp::verb::get, "/v1/jobs/" + job->id() + "/results");
  ASSERT_EQ(r.response.result(), bhttp::status::ok);
  EXPECT_EQ(r.route, kRouteJobResults);
  json page = Body(r.response);
  EXPECT_EQ(page["offset"], 0);
  EXPECT_EQ(page["limit"], 1000);
  EXPECT_EQ(page["total"], 5);
  ASSERT_EQ(page["results"].size(), 5u);
  std::set<int> values;
  for (const auto& rec : page["results"])
    values.insert(rec["value"].get<int>());
  EXPECT_EQ(values, (std::set<int>{10, 11, 12, 13, 14}));

  r = Do(bhttp::verb::get,
         "/v1/jobs/" + job->id() + "/results?offset=1&limit=2");
  page = Body(r.response);
  EXPECT_EQ(page["offset"], 1);
  EXPECT_EQ(page["limit"], 2);
  EXPECT_EQ(page["results"].size(), 2u);

  r = Do(bhttp::verb::get, "/v1/jobs/" + job->id() + "/results?offset=99");
  EXPECT_EQ(Body(r.response)["results"].size(), 0u);

  r = Do(bhttp::verb::get, "/v1/jobs/" + job->id() + "/results?limit=10000");
  EXPECT_EQ(r.response.result(), bhttp::status::ok);
  ExpectError(
      Do(bhttp::verb::get, "/v1/jobs/" + job->id() + "/results?limit=10001"),
      bhttp::status::bad_request, "invalid_request");
  ExpectError(
      Do(bhttp::verb::get, "/v1/jobs/" + job->id() + "/results?offset=-1"),
      bhttp::status::bad_request, "invalid_request");

  r = Do(bhttp::verb::get, "/v1/jobs/" + job->id() + "/results?limit=3", "",
         {{bhttp::field::accept, "text/html, application/x-ndjson"}});
  ASSERT_EQ(r.response.result(), bhttp::status::ok);
  EXPECT_EQ(r.response[bhttp::field::content_type], "application/x-ndjson");
  EXPECT_EQ(r.response["X-Total-Count"], "5");
  std::istringstream lines(r.response.body());
  std::string line;
  int n = 0;
  while (std::getline(lines, line)) {
    json rec = json::parse(line);
    EXPECT_TRUE(rec.contains("seq"));
    EXPECT_TRUE(rec.contains("value"));
    ++n;
  }
  EXPECT_EQ(n, 3);
}

TEST_F(RouterTest, UnknownJobIs404OnEveryJobRoute) {
  ExpectError(Do(bhttp::verb::get, "/v1/jobs/doesnotexist"),
              bhttp::status::not_found, "unknown_job");
  ExpectError(Do(bhttp::verb::get, "/v1/jobs/doesnotexist/results"),
              bhttp::status::not_found, "unknown_job");
  ExpectError(Do(bhttp::verb::delete_, "/v1/jobs/doesnotexist"),
              bhttp::status::not_found, "unknown_job");
  auto upgrade =
      router_->HandleUpgrade(UpgradeRequest("/v1/jobs/doesnotexist/stream"));
  ASSERT_FALSE(upgrade.ok());
  ExpectError(upgrade.error(), bhttp::status::not_found, "unknown_job");
}

TEST_F(RouterTest, DeleteCancelsAJob) {
  Reply r = Do(bhttp::verb::post, "/v1/jobs?pipeline=slow",
               "[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]");
  ASSERT_EQ(r.response.result(), bhttp::status::accepted);
  const std::string id = Body(r.response)["id"];
  r = Do(bhttp::verb::delete_, "/v1/jobs/" + id);
  ASSERT_EQ(r.response.result(), bhttp::status::ok) << r.response.body();
  EXPECT_EQ(Body(r.response)["id"], id);
  auto job = engine_->Find(id);
  for (int i = 0; i < 500 && !job->finished(); ++i)
    std::this_thread::sleep_for(milliseconds(10));
  EXPECT_EQ(job->state(), jobs::JobState::kCancelled);
  EXPECT_GT(job->counts().cancelled, 0u);
  // Deleting a finished job changes nothing.
  r = Do(bhttp::verb::delete_, "/v1/jobs/" + id);
  EXPECT_EQ(r.response.result(), bhttp::status::ok);
  EXPECT_EQ(Body(r.response)["state"], "cancelled");
}

TEST_F(RouterTest, ListIsNewestFirstAndPipelinesDescribeStages) {
  auto a = RunJob("echo", "[1]");
  auto b = RunJob("echo", "[2]");
  Reply r = Do(bhttp::verb::get, "/v1/jobs");
  ASSERT_EQ(r.response.result(), bhttp::status::ok);
  json list = Body(r.response)["jobs"];
  ASSERT_GE(list.size(), 2u);
  EXPECT_EQ(list[0]["id"], b->id());
  EXPECT_EQ(list[1]["id"], a->id());
  r = Do(bhttp::verb::get, "/v1/jobs?limit=1");
  EXPECT_EQ(Body(r.response)["jobs"].size(), 1u);
  ExpectError(Do(bhttp::verb::get, "/v1/jobs?limit=x"),
              bhttp::status::bad_request, "invalid_request");

  r = Do(bhttp::verb::get, "/v1/pipelines");
  ASSERT_EQ(r.response.result(), bhttp::status::ok);
  json pipelines = Body(r.response)["pipelines"];
  ASSERT_EQ(pipelines.size(), 3u);
  bool found = false;
  for (const auto& p : pipelines) {
    if (p["name"] == "slow") {
      found = true;
      EXPECT_EQ(p["stages"][0]["name"], "sleep");
      EXPECT_EQ(p["stages"][0]["workers"], 1);
    }
  }
  EXPECT_TRUE(found);
}

TEST_F(RouterTest, WaitReturnsStatusWhenDoneElseTheSessionWaits) {
  Reply r = Do(bhttp::verb::post, "/v1/jobs?pipeline=slow&wait=2.5", "[1]");
  ASSERT_EQ(r.response.result(), bhttp::status::accepted);
  ASSERT_TRUE(r.wait_job);
  EXPECT_EQ(r.wait_for, milliseconds(2500));
  // Not finished yet: the fallback is the 202.
  auto job = r.wait_job;
  for (int i = 0; i < 500 && !job->finished(); ++i)
    std::this_thread::sleep_for(milliseconds(10));
  ASSERT_TRUE(job->finished());
  Response done = router_->CompleteWait(r);
  EXPECT_EQ(done.result(), bhttp::status::ok);
  EXPECT_EQ(Body(done)["state"], "done");
  EXPECT_EQ(Body(done)["id"], job->id());

  Reply unfinished;
  unfinished.response =
      MakeJson(bhttp::status::accepted, {{"id", "x"}}, 11, true);
  unfinished.wait_job = std::make_shared<jobs::Job>("x", "slow", 1);
  EXPECT_EQ(router_->CompleteWait(unfinished).result(),
            bhttp::status::accepted);
}

TEST_F(RouterTest, AdmissionLimitIs429WithRetryAfter) {
  // max_pending_items is 20; the slow pipeline holds them.
  std::string many = "[";
  for (int i = 0; i < 20; ++i) many += (i ? "," : "") + std::to_string(i);
  many += "]";
  Reply r = Do(bhttp::verb::post, "/v1/jobs?pipeline=slow", many);
  ASSERT_EQ(r.response.result(), bhttp::status::accepted) << r.response.body();
  const std::size_t before = JobCount();
  r = Do(bhttp::verb::post, "/v1/jobs?pipeline=echo", "[1]");
  ExpectError(r, bhttp::status::too_many_requests, "over_capacity");
  int retry = std::stoi(std::string(r.response[bhttp::field::retry_after]));
  EXPECT_GE(retry, 1);
  EXPECT_LE(retry, 60);
  EXPECT_EQ(JobCount(), before);
  EXPECT_EQ(Body(Do(bhttp::verb::get, "/readyz").response)["status"],
            "overloaded");
}

TEST_F(RouterTest, DrainingRefusesNewJobsAndStreams) {
  engine_->BeginDrain();
  const std::size_t before = JobCount();
  ExpectError(Do(bhttp::verb::post, "/v1/jobs?pipeline=echo", "[1]"),
              bhttp::status::service_unavailable, "draining");
  auto upgrade =
      router_->HandleUpgrade(UpgradeRequest("/v1/stream?pipeline=echo"));
  ASSERT_FALSE(upgrade.ok());
  ExpectError(upgrade.error(), bhttp::status::service_unavailable, "draining");
  EXPECT_EQ(JobCount(), before);
}

TEST_F(RouterTest, UpgradeDecisions) {
  auto job = RunJob("echo", "[1]");
  auto up = router_->HandleUpgrade(
      UpgradeRequest("/v1/jobs/" + job->id() + "/stream"));
  ASSERT_TRUE(up.ok());
  EXPECT_EQ(up.value().kind, Upgrade::Kind::kJobStream);
  EXPECT_EQ(up.value().job, job);

  up = router_->HandleUpgrade(UpgradeRequest("/v1/stream?pipeline=echo"));
  ASSERT_TRUE(up.ok());
  EXPECT_EQ(up.value().kind, Upgrade::Kind::kIngest);
  ASSERT_TRUE(up.value().feed);
  up.value().feed->End();

  up = router_->HandleUpgrade(UpgradeRequest("/v1/stream?pipeline=nope"));
  ASSERT_FALSE(up.ok());
  ExpectError(up.error(), bhttp::status::not_found, "unknown_pipeline");
  up = router_->HandleUpgrade(UpgradeRequest("/v1/stream"));
  ExpectError(up.error(), bhttp::status::bad_request, "invalid_request");
  up = router_->HandleUpgrade(UpgradeRequest("/v1/jobs"));
  ExpectError(up.error(), bhttp::status::method_not_allowed,
              "method_not_allowed");
  up = router_->HandleUpgrade(UpgradeRequest("/elsewhere"));
  ExpectError(up.error(), bhttp::status::not_found, "not_found");

  // A plain GET on a WebSocket endpoint.
  Reply plain = Do(bhttp::verb::get, "/v1/jobs/" + job->id() + "/stream");
  ExpectError(plain, bhttp::status::upgrade_required, "upgrade_required");
}

TEST_F(RouterTest, HeadIsGetWithoutBody) {
  Reply get = Do(bhttp::verb::get, "/v1/pipelines");
  Reply head = Do(bhttp::verb::head, "/v1/pipelines");
  EXPECT_EQ(head.response.result(), bhttp::status::ok);
  EXPECT_TRUE(head.response.body().empty());
  EXPECT_EQ(head.response[bhttp::field::content_length],
            std::to_string(get.response.body().size()));
}

TEST_F(RouterTest, HeadErrorsCarryNoBody) {
  for (const char* target : {"/nope", "/v1/jobs/unknown-id"}) {
    Reply r = Do(bhttp::verb::head, target);
    EXPECT_EQ(r.response.result(), bhttp::status::not_found) << target;
    EXPECT_TRUE(r.response.body().empty()) << target;
    EXPECT_NE(r.response[bhttp::field::content_length], "0") << target;
  }
  Make({"s3cret"});
  Reply denied = Do(bhttp::verb::head, "/v1/jobs");
  EXPECT_EQ(denied.response.result(), bhttp::status::unauthorized);
  EXPECT_TRUE(denied.response.body().empty());
}

TEST_F(RouterTest, AuthGuardsV1ButNotProbesOrMetrics) {
  Make({"s3cret", "other-token"});
  Reply r = Do(bhttp::verb::get, "/v1/jobs");
  ExpectError(r, bhttp::status::unauthorized, "unauthorized");
  EXPECT_EQ(r.response[bhttp::field::www_authenticate],
            "Bearer realm=\"sluice\"");
  ExpectError(Do(bhttp::verb::get, "/v1/jobs", "",
                 {{bhttp::field::authorization, "Bearer wrong"}}),
              bhttp::status::unauthorized, "unauthorized");
  ExpectError(Do(bhttp::verb::get, "/v1/jobs", "",
                 {{bhttp::field::authorization, "Basic czNjcmV0"}}),
              bhttp::status::unauthorized, "unauthorized");
  ExpectError(Do(bhttp::verb::get, "/v1/jobs", "",
                 {{bhttp::field::authorization, "Bearer s3cre"}}),
              bhttp::status::unauthorized, "unauthorized");
  // Unknown /v1 routes are not revealed without a token either.
  ExpectError(Do(bhttp::verb::get, "/v1/secret-route"),
              bhttp::status::unauthorized, "unauthorized");
  // Spellings that routing decodes to a /v1 route need the token too.
  for (const char* sneaky :
       {"/%761/jobs", "/v%31/pipelines", "/./v1/jobs", "//v1/jobs",
        "/v1/../v1/jobs", "/%2e/v1/jobs", "/nope"}) {
    ExpectError(Do(bhttp::verb::get, sneaky), bhttp::status::unauthorized,
                "unauthorized");
  }
  // Only the exact probe and metrics paths are public.
  ExpectError(Do(bhttp::verb::get, "/%6detrics"), bhttp::status::unauthorized,
              "unauthorized");
  EXPECT_EQ(Do(bhttp::verb::get, "/v1/jobs", "",
               {{bhttp::field::authorization, "Bearer s3cret"}})
                .response.result(),
            bhttp::status::ok);
  EXPECT_EQ(Do(bhttp::verb::get, "/v1/jobs", "",
               {{bhttp::field::authorization, "bearer other-token"}})
                .response.result(),
            bhttp::status::ok);
  EXPECT_EQ(Do(bhttp::verb::get, "/healthz").response.result(),
            bhttp::status::ok);
  EXPECT_EQ(Do(bhttp::verb::get, "/readyz").response.result(),
            bhttp::status::ok);
  EXPECT_EQ(Do(bhttp::verb::get, "/metrics").response.result(),
            bhttp::status::ok);

  // The header check alone (before a body is read), and WebSocket upgrades.
  RequestHeader header;
  header.method(bhttp::verb::post);
  header.target("/v1/jobs?pipeline=echo");
  header.version(11);
  ASSERT_TRUE(router_->CheckHeader(header).has_value());
  header.set(bhttp::field::authorization, "Bearer s3cret");
  EXPECT_FALSE(router_->CheckHeader(header).has_value());
  auto up = router_->HandleUpgrade(UpgradeRequest("/v1/stream?pipeline=echo"));
  ASSERT_FALSE(up.ok());
  ExpectError(up.error(), bhttp::status::unauthorized, "unauthorized");

  // A rejected submission creates nothing.
  const std::size_t before = JobCount();
  ExpectError(Do(bhttp::verb::post, "/v1/jobs?pipeline=echo", "[1]"),
              bhttp::status::unauthorized, "unauthorized");
  EXPECT_EQ(JobCount(), before);
}

TEST(RouterHelpers, TokensAndConstantTimeCompare) {
  EXPECT_EQ(ParseTokens("a, b ,,c "),
            (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_TRUE(ParseTokens(" , ").empty());
  EXPECT_TRUE(ConstantTimeEquals("abc", "abc"));
  EXPECT_FALSE(ConstantTimeEquals("abc", "abd"));
  EXPECT_FALSE(ConstantTimeEquals("abc", "abcd"));
  EXPECT_FALSE(ConstantTimeEquals("", "a"));
  EXPECT_TRUE(ConstantTimeEquals("", ""));
}

TEST(RouterHelpers, ErrorBodyShape) {
  Response r = MakeError(bhttp::status::bad_request, "invalid_json", "bad", 11,
                         true, std::size_t{4});
  json body = json::parse(r.body());
  EXPECT_EQ(
      body,
      json::parse(
          R"({"error":{"code":"invalid_json","message":"bad","offset":4}})"));
  EXPECT_EQ(r[bhttp::field::content_length], std::to_string(r.body().size()));
}

TEST_F(RouterTest, RepeatedQueryParameterIs400AndCreatesNothing) {
  const std::size_t before = JobCount();
  ExpectError(
      Do(bhttp::verb::post, "/v1/jobs?pipeline=echo&pipeline=words", "[1]"),
      bhttp::status::bad_request, "invalid_request");
  ExpectError(
      Do(bhttp::verb::post, "/v1/jobs?pipeline=echo&pipeline=echo", "[1]"),
      bhttp::status::bad_request, "invalid_request");
  ExpectError(Do(bhttp::verb::get, "/v1/jobs?limit=1&limit=2"),
              bhttp::status::bad_request, "invalid_request");
  auto up = router_->HandleUpgrade(
      UpgradeRequest("/v1/stream?pipeline=echo&pipeline=words"));
  ASSERT_FALSE(up.ok());
  ExpectError(up.error(), bhttp::status::bad_request, "invalid_request");
  EXPECT_NE(
      Body(up.error().response)["error"]["message"].get<std::string>().find(
          "pipeline"),
      std::string::npos);
  EXPECT_EQ(JobCount(), before);
}

TEST_F(RouterTest, RefusedHandshakeCreatesNoJob) {
  const std::size_t before = JobCount();
  Request no_key = UpgradeRequest("/v1/stream?pipeline=echo");
  no_key.erase(bhttp::field::sec_websocket_key);
  auto up = router_->HandleUpgrade(no_key);
  ASSERT_FALSE(up.ok());
  ExpectError(up.error(), bhttp::status::bad_request, "bad_request");

  Request version8 = UpgradeRequest("/v1/stream?pipeline=echo");
  version8.set(bhttp::field::sec_websocket_version, "8");
  up = router_->HandleUpgrade(version8);
  ASSERT_FALSE(up.ok());
  ExpectError(up.error(), bhttp::status::upgrade_required, "upgrade_required");
  EXPECT_EQ(JobCount(), before);
}

TEST_F(RouterTest, AdminReloadAnswersWhatTheReloadDid) {
  ExpectError(Do(bhttp::verb::post, "/v1/admin/reload"),
              bhttp::status::conflict, "reload_unavailable");
  ReloadOutcome next;
  next.kind = ReloadOutcome::Kind::kReloaded;
  next.pipelines = {"a", "b"};
  next.restart_required = {"server.listen"};
  int calls = 0;
  Make({}, [&] {
    ++calls;
    return next;
  });
  Reply ok = Do(bhttp::verb::post, "/v1/admin/reload");
  EXPECT_EQ(ok.response.result(), bhttp::status::ok) << ok.response.body();
  EXPECT_EQ(ok.route, kRouteAdminReload);
  EXPECT_EQ(Body(ok.response), json({{"result", "success"},
                                     {"pipelines", {"a", "b"}},
                                     {"restart_required", {"server.listen"}}}));

  next = ReloadOutcome{};
  next.kind = ReloadOutcome::Kind::kInvalid;
  next.message = "config.yaml is invalid (1 error)";
  next.errors = {{"pipelines[0].stages[0].workers", "must be >= 1"}};
  Reply bad = Do(bhttp::verb::post, "/v1/admin/reload");
  ExpectError(bad, bhttp::status::unprocessable_entity, "invalid_config");
  EXPECT_EQ(Body(bad.response)["error"]["errors"],
            json::parse(R"([{"path": "pipelines[0].stages[0].workers",
                             "message": "must be >= 1"}])"));
  Reply get = Do(bhttp::verb::get, "/v1/admin/reload");
  EXPECT_EQ(get.response.result(), bhttp::status::method_not_allowed);
  EXPECT_EQ(calls, 2) << "only POST reloads";

  Make({"secret"}, [&] {
    ++calls;
    return next;
  });
  ExpectError(Do(bhttp::verb::post, "/v1/admin/reload"),
              bhttp::status::unauthorized, "unauthorized");
  EXPECT_EQ(calls, 2) << "behind the token, like every /v1 route";
}

}  // namespace
}  // namespace sluice::http
