// Tests of the dashboard's server side (DESIGN.md §3.8): GET / serves the
// embedded page, public, with a CSP that allows exactly its inline script and
// style by hash; a browser's WebSocket may carry the bearer token as the
// "sluice.bearer.<hex>" subprotocol (and only a WebSocket may); and the
// per-stage p99 of GET /v1/pipelines (metrics::LatencyWindow). The page in a
// real browser: tests/e2e/dashboard_test.py.
#include "service/http/dashboard.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <limits>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "service/config/config.hpp"
#include "service/engine/engine.hpp"
#include "service/http/router.hpp"
#include "service/metrics/latency_window.hpp"
#include "service/metrics/metrics.hpp"
#include "service/processors/checks.hpp"

namespace sluice::http {
namespace {

using std::chrono::milliseconds;

constexpr const char* kConfig = R"(
pipelines:
  - name: echo
    stages:
      - { name: pass, processor: { type: passthrough } }
)";

class DashboardTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto loaded = config::LoadConfigText(kConfig, processors::ConfigChecks());
    ASSERT_TRUE(loaded.ok());
    metrics_ = std::make_unique<metrics::Metrics>("test");
    engine_ = std::make_unique<engine::Engine>(loaded.value(), *metrics_);
    RouterOptions options;
    options.tokens = {"s3cret"};
    router_ = std::make_unique<Router>(*engine_, *metrics_, options);
  }
  void TearDown() override {
    if (engine_) engine_->Shutdown(milliseconds(0));
  }

  Reply Do(bhttp::verb method, const std::string& target,
           const std::string& authorization = "") {
    Request req{method, target, 11};
    if (!authorization.empty()) {
      req.set(bhttp::field::authorization, authorization);
    }
    req.prepare_payload();
    return router_->Handle(req);
  }

  // A valid WebSocket upgrade of `target` offering `protocols`.
  static Request Upgrade(const std::string& target,
                         const std::string& protocols) {
    Request req{bhttp::verb::get, target, 11};
    req.set(bhttp::field::upgrade, "websocket");
    req.set(bhttp::field::connection, "Upgrade");
    req.set(bhttp::field::sec_websocket_key, "dGhlIHNhbXBsZSBub25jZQ==");
    req.set(bhttp::field::sec_websocket_version, "13");
    if (!protocols.empty()) {
      req.set(bhttp::field::sec_websocket_protocol, protocols);
    }
    return req;
  }

  // A finished job's id (submitted with the token).
  std::string JobId() {
    Request req{bhttp::verb::post, "/v1/jobs?pipeline=echo", 11};
    req.set(bhttp::field::authorization, "Bearer s3cret");
    req.body() = "[1]";
    req.prepare_payload();
    Reply r = router_->Handle(req);
    EXPECT_EQ(r.response.result(), bhttp::status::accepted);
    return nlohmann::json::parse(r.response.body())["id"].get<std::string>();
  }

  std::unique_ptr<metrics::Metrics> metrics_;
  std::unique_ptr<engine::Engine> engine_;
  std::unique_ptr<Router> router_;
};

TEST_F(DashboardTest, PageIsPublicWithItsHeaders) {
  Reply r = Do(bhttp::verb::get, "/");
  ASSERT_EQ(r.response.result(), bhttp::status::ok);
  EXPECT_EQ(r.route, kRouteDashboard);
  EXPECT_EQ(r.response.body(), DashboardPage());
  EXPECT_NE(r.response.body().find("<script>"), std::string::npos);
  EXPECT_EQ(r.response[bhttp::field::content_type], "text/html; charset=utf-8");
  EXPECT_EQ(r.response[bhttp::field::cache_control], "no-cache");
  const std::string csp(r.response["Content-Security-Policy"]);
  EXPECT_EQ(csp, ContentSecurityPolicyFor(DashboardPage()));
  EXPECT_NE(csp.find("default-src 'self'"), std::string::npos);
  EXPECT_EQ(csp.find("unsafe-inline"), std::string::npos);

  Reply head = Do(bhttp::verb::head, "/");
  EXPECT_EQ(head.response.result(), bhttp::status::ok);
  EXPECT_TRUE(head.response.body().empty());
  Reply post = Do(bhttp::verb::post, "/");
  EXPECT_EQ(post.response.result(), bhttp::status::method_not_allowed);
  EXPECT_EQ(post.response[bhttp::field::allow], "GET, HEAD");
  // Only "/" itself: the API stays behind the token.
  EXPECT_EQ(Do(bhttp::verb::get, "/v1/pipelines").response.result(),
            bhttp::status::unauthorized);
  EXPECT_EQ(Do(bhttp::verb::get, "/index.html").response.result(),
            bhttp::status::unauthorized);
}

TEST(DashboardCsp, HashesEachInlineElement) {
  EXPECT_EQ(ContentSecurityPolicyFor("<style>a</style><p><script>b</script>"),
            "default-src 'self'; "
            "script-src 'sha256-PiPoFgA5WUoziU9lZOGxNIu9egCI1CxKy3PurtWcAJ0='; "
            "style-src 'sha256-ypeBEsobvcr6wjGzmiPcTaeG7/gUfE5yuYB3ha/uSLs='; "
            "connect-src 'self' ws: wss:; img-src 'self' data:; "
            "base-uri 'none'; form-action 'none'; frame-ancestors 'none'");
  // No inline code: none allowed.
  EXPECT_NE(ContentSecurityPolicyFor("<p>").find("script-src 'none'"),
            std::string::npos);
}

TEST_F(DashboardTest, WebSocketTakesTheTokenAsASubprotocol) {
  const std::string stream = "/v1/jobs/" + JobId() + "/stream";
  const std::string hex = "733363726574";  // "s3cret"
  auto up = router_->HandleUpgrade(
      Upgrade(stream, "sluice.v1, sluice.bearer." + hex));
  ASSERT_TRUE(up.ok()) << up.error().response.body();
  EXPECT_EQ(up.value().subprotocol, kSubprotocol) << "the token is not echoed";

  // Offered without sluice.v1: accepted, but no subprotocol is selected.
  up = router_->HandleUpgrade(Upgrade(stream, "sluice.bearer." + hex));
  ASSERT_TRUE(up.ok());
  EXPECT_TRUE(up.value().subprotocol.empty());

  for (const char* bad :
       {"sluice.v1", "sluice.v1, sluice.bearer.7333637265", "sluice.bearer.zz",
        "sluice.bearer.", "sluice.v1, sluice.bearer.736563726574"}) {
    up = router_->HandleUpgrade(Upgrade(stream, bad));
    ASSERT_FALSE(up.ok()) << bad;
    EXPECT_EQ(up.error().response.result(), bhttp::status::unauthorized) << bad;
  }
  // Not an upgrade: the subprotocol header authorizes nothing.
  Request plain{bhttp::verb::get, "/v1/pipelines", 11};
  plain.set(bhttp::field::sec_websocket_protocol, "sluice.bearer." + hex);
  plain.prepare_payload();
  EXPECT_EQ(router_->Handle(plain).response.result(),
            bhttp::status::unauthorized);
}

TEST(LatencyWindow, QuantileInterpolatesInsideItsBucket) {
  const std::vector<double> bounds = {0.1, 0.5,
                                      std::numeric_limits<double>::infinity()};
  // 100 observations in (0.1, 0.5]: p99 = 0.1 + 0.4 * 99/100.
  auto p99 = metrics::HistogramQuantile(0.99, bounds, {0, 100, 100});
  ASSERT_TRUE(p99.has_value());
  EXPECT_NEAR(*p99, 0.496, 1e-9);
  // Beyond the last finite bound: that bound.
  EXPECT_EQ(metrics::HistogramQuantile(0.99, bounds, {0, 0, 5}), 0.5);
  EXPECT_FALSE(metrics::HistogramQuantile(0.99, bounds, {0, 0, 0}));
}

TEST(LatencyWindow, ForgetsObservationsOlderThanTwoSpans) {
  prometheus::Histogram histogram({0.001, 0.01, 0.1});
  const auto t0 = metrics::LatencyWindow::Clock::now();
  metrics::LatencyWindow window(histogram, std::chrono::seconds(10));
  EXPECT_FALSE(window.Quantile(0.99, t0)) << "nothing observed yet";
  for (int i = 0; i < 100; ++i) histogram.Observe(0.005);
  auto p99 = window.Quantile(0.99, t0);
  ASSERT_TRUE(p99.has_value());
  EXPECT_GT(*p99, 0.001);
  EXPECT_LE(*p99, 0.01);
  // One span later the baseline moves up to now; the window still starts
  // before the observations. Another span later it starts after them.
  EXPECT_TRUE(window.Quantile(0.99, t0 + std::chrono::seconds(11)));
  EXPECT_FALSE(window.Quantile(0.99, t0 + std::chrono::seconds(22)));
  histogram.Observe(0.05);
  p99 = window.Quantile(0.99, t0 + std::chrono::seconds(23));
  ASSERT_TRUE(p99.has_value());
  EXPECT_GT(*p99, 0.01);
}

}  // namespace
}  // namespace sluice::http
