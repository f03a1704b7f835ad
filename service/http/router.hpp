// sluice::http::Router: the HTTP API of contract §C2 as a function from a
// parsed request to a response, with no sockets involved (in the manner of
// the Beast examples' handle_request), so it is unit-testable. Also defines
// the Request/Response types, the WebSocket upgrade decision (§3.3), bearer
// token auth, and the JSON error bodies.
#ifndef SLUICE_SERVICE_HTTP_ROUTER_HPP_
#define SLUICE_SERVICE_HTTP_ROUTER_HPP_

#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "service/util/result.hpp"

namespace sluice::engine {
class JobService;
class IngestFeed;
}  // namespace sluice::engine
namespace sluice::jobs {
class Job;
}  // namespace sluice::jobs
namespace sluice::metrics {
class Metrics;
}  // namespace sluice::metrics

namespace sluice::http {

namespace bhttp = boost::beast::http;

using Request = bhttp::request<bhttp::string_body>;
using RequestHeader = bhttp::request_header<>;
using Response = bhttp::response<bhttp::string_body>;

// Route templates: the `route` label of the HTTP metrics (never a raw path,
// so label cardinality stays bounded).
inline constexpr std::string_view kRouteJobs = "/v1/jobs";
inline constexpr std::string_view kRouteJob = "/v1/jobs/{id}";
inline constexpr std::string_view kRouteJobResults = "/v1/jobs/{id}/results";
inline constexpr std::string_view kRouteJobStream = "/v1/jobs/{id}/stream";
inline constexpr std::string_view kRouteStream = "/v1/stream";
inline constexpr std::string_view kRoutePipelines = "/v1/pipelines";
inline constexpr std::string_view kRouteMetrics = "/metrics";
inline constexpr std::string_view kRouteHealthz = "/healthz";
inline constexpr std::string_view kRouteReadyz = "/readyz";
inline constexpr std::string_view kRouteDashboard = "/";
inline constexpr std::string_view kRouteAdminReload = "/v1/admin/reload";
inline constexpr std::string_view kRouteUnmatched = "unmatched";

// WebSocket subprotocols (docs/security.md): a browser, whose WebSocket
// cannot send Authorization, offers "sluice.bearer.<hex of the token>" next
// to kSubprotocol, which the server selects (so the token is not echoed).
inline constexpr std::string_view kSubprotocol = "sluice.v1";
inline constexpr std::string_view kBearerSubprotocolPrefix = "sluice.bearer.";

// Limits of the API that are not configurable (documented in docs/api.md).
inline constexpr std::size_t kDefaultResultsLimit = 1000;
inline constexpr std::size_t kMaxResultsLimit = 10000;
inline constexpr std::size_t kDefaultJobsListLimit = 100;
inline constexpr std::size_t kMaxJobsListLimit = 1000;
inline constexpr double kMaxWaitSeconds = 300;

// What a config reload did (POST /v1/admin/reload, SIGHUP), as the app
// reports it and the router answers it. Thread-compatible (plain value).
struct ReloadOutcome {
  enum class Kind {
    kReloaded,     // 200: new jobs use `pipelines`
    kInvalid,      // 422 invalid_config: `errors`; the old config serves on
    kUnavailable,  // 409 reload_unavailable: no config file to re-read
    kDraining,     // 503 draining
    kFailed,       // 500 reload_failed: `message`
  };
  Kind kind = Kind::kFailed;
  std::string message;
  std::vector<std::string> pipelines;
  // Keys outside `pipelines` that changed in the file: they take effect
  // only at the next start.
  std::vector<std::string> restart_required;
  // kInvalid: {key path, message}, as config::ConfigError.
  std::vector<std::pair<std::string, std::string>> errors;
};

// Router settings. Thread-compatible (plain value).
struct RouterOptions {
  // Accepted bearer tokens; empty = auth off. The server fills it from the
  // variable named by server.auth.tokens_env (comma-separated).
  std::vector<std::string> tokens;
  // Re-reads the config and swaps in its pipelines (app::App::Reload). Runs
  // on the network thread that received the request. Empty: the route
  // answers 409 reload_unavailable.
  std::function<ReloadOutcome()> reload;
};

// What the router decided for one request. Thread-compatible.
struct Reply {
  Response response;
  // The route template for metrics (one of the kRoute* constants).
  std::string_view route = kRouteUnmatched;
  // Set for POST /v1/jobs?wait=S: the session must wait, without blocking
  // its thread, until `wait_job` has finished or `wait_for` has passed, and
  // then send Router::CompleteWait(*this). `response` holds the 202.
  std::shared_ptr<jobs::Job> wait_job;
  std::chrono::milliseconds wait_for{0};
};

// A WebSocket upgrade the router accepted: the session performs the
// handshake and streams. Thread-compatible.
struct Upgrade {
  enum class Kind { kJobStream, kIngest };
  Kind kind = Kind::kJobStream;
  std::string_view route = kRouteJobStream;
  std::shared_ptr<jobs::Job> job;            // kJobStream: the job to replay
  std::shared_ptr<engine::IngestFeed> feed;  // kIngest: the open stream
  // The Sec-WebSocket-Protocol to answer with: kSubprotocol when the client
  // offered it, else empty (none).
  std::string_view subprotocol;
};

// Routes requests to the engine: one small handler per route, chosen by a
// table of (route, method) in router.cpp. Thread-safe: every member may be
// called concurrently from all io threads (it holds no per-request state; the
// engine and metrics it calls are thread-safe).
class Router {
 public:
  // `engine` and `metrics` must outlive the router.
  Router(engine::JobService& engine, metrics::Metrics& metrics,
         RouterOptions options);

  // Checks a request from its header alone, before its body is read:
  // returns the 401 to send when auth is on and a /v1/ request lacks a valid
  // bearer token (bodiless for HEAD); nullopt when the request may proceed.
  [[nodiscard]] std::optional<Reply> CheckHeader(
      const RequestHeader& header) const;

  // Handles a complete, non-upgrade request (it also checks auth). Never
  // throws; every failure is a JSON error response. The response has its
  // version, keep-alive and Content-Length prepared.
  Reply Handle(const Request& request);

  // Requires reply.wait_job. The finished job's status (200) if it has
  // finished, else the 202 in reply.response.
  Response CompleteWait(Reply reply) const;

  // Decides a WebSocket upgrade request (websocket::is_upgrade): an Upgrade
  // to perform, or the error Reply to send instead (401, 400, 404 for an
  // unknown route, job or pipeline, 405, 503 while draining).
  Result<Upgrade, Reply> HandleUpgrade(const Request& request);

  // The engine's drain state (Engine::draining(), the process's only one):
  // once true, /readyz, new jobs and new streams answer 503 (contract §C6).
  bool draining() const;

  // The route template of a request target, for metrics.
  static std::string_view RouteOf(std::string_view target);

 private:
  // Handle() before the HEAD rule (which strips every body).
  Reply Dispatch(const Request& request);
  // The HEAD rule: a reply to HEAD keeps its Content-Length, loses its body.
  static void StripBodyForHead(boost::beast::http::verb method, Reply* reply);
  bool Authorized(const RequestHeader& header) const;
  // The bearer token a request presents: Authorization: Bearer, or on a
  // WebSocket upgrade without it, the "sluice.bearer." subprotocol.
  static std::optional<std::string> PresentedToken(const RequestHeader& header);

  engine::JobService& engine_;
  metrics::Metrics& metrics_;
  RouterOptions options_;
};

// A JSON error response {"error":{"code","message"}} (plus "offset" when
// given) with the request's version and keep-alive.
Response MakeError(bhttp::status status, std::string_view code,
                   std::string_view message, unsigned version, bool keep_alive,
                   std::optional<std::size_t> offset = std::nullopt);

// A JSON response with `body` serialized.
Response MakeJson(bhttp::status status, const nlohmann::json& body,
                  unsigned version, bool keep_alive);

// Counts one answered request in sluice_http_requests_total and observes
// its duration in sluice_http_request_duration_seconds. Methods other than
// the standard ones are counted as "OTHER" (bounded label values). Thread-
// safe.
void ObserveRequest(metrics::Metrics& metrics, std::string_view method,
                    std::string_view route, unsigned code,
                    std::chrono::steady_clock::duration elapsed);

// Splits a server.auth token list ("a,b , c") into its non-empty tokens.
std::vector<std::string> ParseTokens(std::string_view list);

// Compares in time that depends only on the lengths (not on where the first
// difference is), so the comparison leaks nothing about a token's prefix.
bool ConstantTimeEquals(std::string_view a, std::string_view b);

}  // namespace sluice::http

#endif  // SLUICE_SERVICE_HTTP_ROUTER_HPP_
