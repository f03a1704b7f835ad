// Implementation of sluice::http::Router (see router.hpp): contract §C2.
#include "service/http/router.hpp"

#include <algorithm>
#include <boost/beast/http/rfc7230.hpp>
#include <boost/beast/websocket/rfc6455.hpp>
#include <boost/url/parse.hpp>
#include <boost/url/url_view.hpp>
#include <charconv>
#include <cmath>
#include <exception>
#include <limits>
#include <string>
#include <utility>

#include "service/engine/engine.hpp"
#include "service/http/dashboard.hpp"
#include "service/http/framing.hpp"
#include "service/http/results_page.hpp"
#include "service/http/views.hpp"
#include "service/jobs/job.hpp"
#include "service/metrics/metrics.hpp"
#include "service/util/json_parse.hpp"
#include "service/util/text.hpp"

namespace sluice::http {
namespace {

using Query = std::vector<std::pair<std::string, std::string>>;

constexpr std::string_view kJsonType = "application/json";
constexpr std::string_view kNdjsonType = "application/x-ndjson";
constexpr std::string_view kMetricsType =
    "text/plain; version=0.0.4; charset=utf-8";

// A parsed request target: decoded path segments and query parameters.
struct Target {
  bool ok = false;
  std::vector<std::string> segments;
  Query query;
};

Target ParseTarget(std::string_view target) {
  Target t;
  auto parsed = boost::urls::parse_origin_form(target);
  if (!parsed) return t;
  const boost::urls::url_view& url = *parsed;
  for (auto segment : url.segments()) t.segments.emplace_back(segment);
  for (auto param : url.params()) {
    t.query.emplace_back(std::string(param.key), std::string(param.value));
  }
  t.ok = true;
  return t;
}

// The value of query parameter `key`, if present. Requires that no key is
// repeated (RepeatedParam).
std::optional<std::string> QueryParam(const Query& query,
                                      std::string_view key) {
  for (const auto& [k, v] : query) {
    if (k == key) return v;
  }
  return std::nullopt;
}

// A key given more than once (?pipeline=a&pipeline=b), which no route
// accepts: silently taking one of the values would run what the client did
// not mean.
std::optional<std::string> RepeatedParam(const Query& query) {
  for (std::size_t i = 0; i < query.size(); ++i) {
    for (std::size_t j = 0; j < i; ++j) {
      if (query[i].first == query[j].first) return query[i].first;
    }
  }
  return std::nullopt;
}

Response RepeatedParamResponse(std::string_view key, const RequestHeader& req,
                               bool keep_alive) {
  std::string quoted(key.substr(0, 64));
  return MakeError(bhttp::status::bad_request, "invalid_request",
                   "query parameter \"" + quoted + "\" given more than once",
                   req.version(), keep_alive);
}

// Which route a target names. `id` receives the job id for job routes.
std::string_view MatchRoute(const std::vector<std::string>& s,
                            std::string* id) {
  if (s.empty()) return kRouteDashboard;
  if (s.size() == 1) {
    if (s[0] == "metrics") return kRouteMetrics;
    if (s[0] == "healthz") return kRouteHealthz;
    if (s[0] == "readyz") return kRouteReadyz;
    return kRouteUnmatched;
  }
  if (s.empty() || s[0] != "v1") return kRouteUnmatched;
  if (s.size() == 3 && s[1] == "admin" && s[2] == "reload") {
    return kRouteAdminReload;
  }
  if (s.size() == 2) {
    if (s[1] == "jobs") return kRouteJobs;
    if (s[1] == "pipelines") return kRoutePipelines;
    if (s[1] == "stream") return kRouteStream;
    return kRouteUnmatched;
  }
  if (s[1] != "jobs" || s[2].empty()) return kRouteUnmatched;
  if (id != nullptr) *id = s[2];
  if (s.size() == 3) return kRouteJob;
  if (s.size() == 4 && s[3] == "results") return kRouteJobResults;
  if (s.size() == 4 && s[3] == "stream") return kRouteJobStream;
  return kRouteUnmatched;
}

// Parses a non-negative decimal integer; nullopt on anything else.
std::optional<std::size_t> ParseCount(std::string_view text) {
  std::size_t value = 0;
  if (text.empty()) return std::nullopt;
  auto [end, ec] =
      std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size())
    return std::nullopt;
  return value;
}

// Parses ?wait= seconds, fractional allowed: 0 <= s <= kMaxWaitSeconds.
std::optional<std::chrono::milliseconds> ParseWait(std::string_view text) {
  double seconds = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(),
                                   seconds, std::chars_format::fixed);
  if (text.empty() || ec != std::errc() || end != text.data() + text.size() ||
      !std::isfinite(seconds) || seconds < 0 || seconds > kMaxWaitSeconds) {
    return std::nullopt;
  }
  return std::chrono::milliseconds(
      static_cast<std::int64_t>(std::llround(seconds * 1000.0)));
}

// A header value's media type ("application/x-ndjson; charset=utf-8" ->
// "application/x-ndjson"), lower-cased.
std::string MediaType(std::string_view value) {
  std::string type(value.substr(0, value.find(';')));
  while (!type.empty() && (type.back() == ' ' || type.back() == '\t')) {
    type.pop_back();
  }
  while (!type.empty() && (type.front() == ' ' || type.front() == '\t')) {
    type.erase(type.begin());
  }
  std::transform(type.begin(), type.end(), type.begin(), [](unsigned char c) {
    return static_cast<char>(std::tolower(c));
  });
  return type;
}

// True when an Accept header lists application/x-ndjson.
bool AcceptsNdjson(std::string_view accept) {
  std::size_t start = 0;
  while (start <= accept.size()) {
    std::size_t comma = accept.find(',', start);
    if (comma == std::string_view::npos) comma = accept.size();
    if (MediaType(accept.substr(start, comma - start)) == kNdjsonType) {
      return true;
    }
    start = comma + 1;
  }
  return false;
}

Response JsonSyntaxResponse(const JsonParseError& e, const Request& req) {
  return MakeError(bhttp::status::bad_request, "invalid_json",
                   "malformed JSON at byte offset " + std::to_string(e.offset) +
                       ": " + e.reason,
                   req.version(), req.keep_alive(), e.offset);
}

std::string JobPath(std::string_view id) {
  return std::string("/v1/jobs/") + std::string(id);
}

// The one place an engine refusal becomes HTTP (contract §C2): its status
// and its error code.
struct HttpError {
  bhttp::status status;
  std::string_view code;
};

HttpError HttpErrorOf(engine::Refusal::Reason reason) {
  using Reason = engine::Refusal::Reason;
  switch (reason) {
    case Reason::kUnknownPipeline:
      return {bhttp::status::not_found, "unknown_pipeline"};
    case Reason::kOverCapacity:
      return {bhttp::status::too_many_requests, "over_capacity"};
    case Reason::kJobTooLarge:
      // It can never fit jobs.max_pending_items: no Retry-After.
      return {bhttp::status::payload_too_large, "job_too_large"};
    case Reason::kDraining:
      return {bhttp::status::service_unavailable, "draining"};
    case Reason::kUnavailable:
      return {bhttp::status::service_unavailable, "nats_unavailable"};
  }
  return {bhttp::status::internal_server_error, "internal"};
}

Response RefusalResponse(const engine::Refusal& refusal, const Request& req,
                         const engine::JobService& engine) {
  const HttpError error = HttpErrorOf(refusal.reason);
  Response res = MakeError(error.status, error.code, refusal.message,
                           req.version(), req.keep_alive());
  if (refusal.reason == engine::Refusal::Reason::kOverCapacity) {
    res.set(bhttp::field::retry_after,
            std::to_string(std::max(1, engine.retry_after_seconds())));
  }
  return res;
}

Response Text(bhttp::status status, std::string body,
              std::string_view content_type, const Request& req) {
  Response res{status, req.version()};
  res.set(bhttp::field::server, "sluice");
  res.set(bhttp::field::content_type, content_type);
  res.keep_alive(req.keep_alive());
  res.body() = std::move(body);
  res.prepare_payload();
  return res;
}

// The subprotocols a WebSocket upgrade offers (Sec-WebSocket-Protocol, one
// or more fields of comma-separated tokens), trimmed.
std::vector<std::string_view> OfferedSubprotocols(const RequestHeader& header) {
  std::vector<std::string_view> offered;
  auto [begin, end] = header.equal_range(bhttp::field::sec_websocket_protocol);
  for (auto it = begin; it != end; ++it) {
    std::string_view list = it->value();
    while (!list.empty()) {
      const std::size_t comma = std::min(list.find(','), list.size());
      std::string_view item = list.substr(0, comma);
      list.remove_prefix(std::min(comma + 1, list.size()));
      const std::size_t first = item.find_first_not_of(" \t");
      if (first == std::string_view::npos) continue;
      item = item.substr(first, item.find_last_not_of(" \t") - first + 1);
      offered.push_back(item);
    }
  }
  return offered;
}

// The token a browser's WebSocket carries as the subprotocol
// "sluice.bearer.<hex of the token's bytes>" (it cannot set Authorization;
// hex because a subprotocol allows only token characters). nullopt when
// none is offered or its hex is malformed.
std::optional<std::string> SubprotocolToken(const RequestHeader& header) {
  for (std::string_view offered : OfferedSubprotocols(header)) {
    if (!offered.starts_with(kBearerSubprotocolPrefix)) continue;
    std::string_view hex = offered.substr(kBearerSubprotocolPrefix.size());
    if (hex.empty() || hex.size() % 2 != 0) return std::nullopt;
    std::string token(hex.size() / 2, '\0');
    for (std::size_t i = 0; i < token.size(); ++i) {
      unsigned byte = 0;
      auto [end, ec] =
          std::from_chars(hex.data() + 2 * i, hex.data() + 2 * i + 2, byte, 16);
      if (ec != std::errc() || end != hex.data() + 2 * i + 2) {
        return std::nullopt;
      }
      token[i] = static_cast<char>(byte);
    }
    return token;
  }
  return std::nullopt;
}

// Message::keep_alive() for a bare header (which lacks it): HTTP/1.1 keeps
// the connection unless "Connection: close"; HTTP/1.0 only on "keep-alive".
bool KeepAlive(const RequestHeader& header) {
  bhttp::token_list tokens{header[bhttp::field::connection]};
  if (header.version() >= 11) return !tokens.exists("close");
  return tokens.exists("keep-alive");
}

// ---------------------------------------------------------------------------
// The routes: one small handler each, chosen by the table below.
// ---------------------------------------------------------------------------

// A Reply that is just a response (the route is set by Dispatch).
Reply Answer(Response response) {
  Reply reply;
  reply.response = std::move(response);
  return reply;
}

// One request on its way through a handler: what every handler may use.
struct Call {
  const Request& req;
  const Query& query;
  const std::string& id;  // the {id} of the job routes, else empty
  engine::JobService& engine;
  metrics::Metrics& metrics;
  const RouterOptions& options;

  unsigned version() const { return req.version(); }
  bool keep_alive() const { return req.keep_alive(); }
  Reply Json(bhttp::status status, const nlohmann::json& body) const {
    return Answer(MakeJson(status, body, version(), keep_alive()));
  }
  Reply Fail(bhttp::status status, std::string_view code,
             std::string_view message) const {
    return Answer(MakeError(status, code, message, version(), keep_alive()));
  }
  Reply BadRequest(std::string_view message) const {
    return Fail(bhttp::status::bad_request, "invalid_request", message);
  }
  // 404, or 503 when the jobs cannot be looked up now (cluster mode with
  // NATS out of reach): the job may well exist.
  Reply UnknownJob() const {
    if (auto why = engine.unavailable()) {
      return Fail(bhttp::status::service_unavailable, *why,
                  "cannot look up job " + id + " now: " + *why);
    }
    return Fail(bhttp::status::not_found, "unknown_job",
                "no job with id " + id);
  }
};

// ?<key>=N with 0 <= N <= max, `fallback` when absent; the 400 to send when
// malformed.
Result<std::size_t, Reply> CountParam(const Call& call, std::string_view key,
                                      std::size_t fallback, std::size_t max) {
  auto text = QueryParam(call.query, key);
  if (!text) return fallback;
  auto n = ParseCount(*text);
  if (n && *n <= max) return *n;
  const std::string range =
      max == std::numeric_limits<std::size_t>::max()
          ? " must be a non-negative integer"
          : " must be an integer from 0 to " + std::to_string(max);
  return call.BadRequest(std::string(key) + range);
}

Reply Healthz(const Call& call) {
  return call.Json(bhttp::status::ok, {{"status", "ok"}});
}

Reply Readyz(const Call& call) {
  if (call.engine.draining()) {
    return call.Json(bhttp::status::service_unavailable,
                     {{"status", "draining"}});
  }
  if (call.engine.overloaded()) {
    return call.Json(bhttp::status::service_unavailable,
                     {{"status", "overloaded"}});
  }
  if (auto why = call.engine.unavailable()) {
    return call.Json(bhttp::status::service_unavailable,
                     {{"status", "unavailable"}, {"reason", *why}});
  }
  return call.Json(bhttp::status::ok, {{"status", "ready"}});
}

Reply MetricsText(const Call& call) {
  return Answer(Text(bhttp::status::ok, call.metrics.Serialize(), kMetricsType,
                     call.req));
}

// The dashboard page: public (it holds no data; its API calls carry the
// token), and allowed to run only its own inline script and style.
Reply Dashboard(const Call& call) {
  Reply reply = Answer(Text(bhttp::status::ok, std::string(DashboardPage()),
                            "text/html; charset=utf-8", call.req));
  reply.response.set("Content-Security-Policy", DashboardCsp());
  reply.response.set(bhttp::field::cache_control, "no-cache");
  reply.response.set("X-Content-Type-Options", "nosniff");
  reply.response.set("Referrer-Policy", "no-referrer");
  return reply;
}

nlohmann::json ReloadErrors(const ReloadOutcome& outcome) {
  nlohmann::json errors = nlohmann::json::array();
  for (const auto& [path, message] : outcome.errors) {
    errors.push_back({{"path", path}, {"message", message}});
  }
  return errors;
}

// POST /v1/admin/reload: DESIGN.md §3.8 (docs/operations.md#reload).
Reply AdminReload(const Call& call) {
  if (!call.options.reload) {
    return call.Fail(bhttp::status::conflict, "reload_unavailable",
                     "this server cannot reload its config");
  }
  const ReloadOutcome outcome = call.options.reload();
  using Kind = ReloadOutcome::Kind;
  switch (outcome.kind) {
    case Kind::kReloaded:
      return call.Json(bhttp::status::ok,
                       {{"result", "success"},
                        {"pipelines", outcome.pipelines},
                        {"restart_required", outcome.restart_required}});
    case Kind::kInvalid:
      return call.Json(bhttp::status::unprocessable_entity,
                       {{"error",
                         {{"code", "invalid_config"},
                          {"message", outcome.message},
                          {"errors", ReloadErrors(outcome)}}}});
    case Kind::kUnavailable:
      return call.Fail(bhttp::status::conflict, "reload_unavailable",
                       outcome.message);
    case Kind::kDraining:
      return call.Fail(bhttp::status::service_unavailable, "draining",
                       outcome.message);
    case Kind::kFailed:
      break;
  }
  return call.Fail(bhttp::status::internal_server_error, "reload_failed",
                   outcome.message);
}

Reply Pipelines(const Call& call) {
  // Already {"pipelines":[...]}.
  return call.Json(bhttp::status::ok, PipelinesJson(call.engine.Pipelines()));
}

Reply ListJobs(const Call& call) {
  auto limit =
      CountParam(call, "limit", kDefaultJobsListLimit, kMaxJobsListLimit);
  if (!limit.ok()) return std::move(limit).error();
  nlohmann::json jobs = nlohmann::json::array();
  for (const auto& job : call.engine.List(*limit)) {
    jobs.push_back(job->Status());
  }
  return call.Json(bhttp::status::ok, {{"jobs", std::move(jobs)}});
}

Reply PostJob(const Call& call);  // below: the longest

Reply GetJob(const Call& call) {
  std::shared_ptr<jobs::Job> job = call.engine.Find(call.id);
  if (!job) return call.UnknownJob();
  return call.Json(bhttp::status::ok, job->Status());
}

Reply CancelJob(const Call& call) {
  std::shared_ptr<jobs::Job> job = call.engine.Find(call.id);
  if (!job) return call.UnknownJob();
  // Cancelling a finished job changes nothing; either way the answer is the
  // job's status after the request.
  call.engine.Cancel(call.id);
  return call.Json(bhttp::status::ok, job->Status());
}

Reply GetResults(const Call& call) {
  std::shared_ptr<jobs::Job> job = call.engine.Find(call.id);
  if (!job) return call.UnknownJob();
  auto offset =
      CountParam(call, "offset", 0, std::numeric_limits<std::size_t>::max());
  if (!offset.ok()) return std::move(offset).error();
  auto limit =
      CountParam(call, "limit", kDefaultResultsLimit, kMaxResultsLimit);
  if (!limit.ok()) return std::move(limit).error();
  // Bounded by bytes as well as by limit (results_page.hpp).
  const bool ndjson = AcceptsNdjson(call.req[bhttp::field::accept]);
  ResultsPage page = BuildResultsPage(*job, *offset, *limit, ndjson);
  Reply reply = Answer(Text(bhttp::status::ok, std::move(page.body),
                            ndjson ? kNdjsonType : kJsonType, call.req));
  if (ndjson) {
    reply.response.set("X-Total-Count", std::to_string(page.total));
    reply.response.set("X-Next-Offset", std::to_string(page.next_offset));
  }
  return reply;
}

// A plain GET on a WebSocket endpoint (upgrades go to HandleUpgrade).
Reply UpgradeRequired(const Call& call) {
  if (!call.id.empty() && !call.engine.Find(call.id)) return call.UnknownJob();
  Reply reply = call.Fail(bhttp::status::upgrade_required, "upgrade_required",
                          "this endpoint is a WebSocket: send an upgrade "
                          "request");
  reply.response.set(bhttp::field::upgrade, "websocket");
  reply.response.set(bhttp::field::connection, "Upgrade");
  reply.response.keep_alive(call.keep_alive());
  return reply;
}

using Handler = Reply (*)(const Call&);

// Every route and method the API serves (contract §C2). HEAD is served by
// the GET handler (and the HEAD rule strips the body), except on the
// WebSocket endpoints; a method not listed for a route gets 405 with the
// route's Allow header, derived from this table too.
struct RouteEntry {
  std::string_view route;
  bhttp::verb method;
  Handler handle;
};
constexpr RouteEntry kRouteTable[] = {
    {kRouteDashboard, bhttp::verb::get, &Dashboard},
    {kRouteHealthz, bhttp::verb::get, &Healthz},
    {kRouteReadyz, bhttp::verb::get, &Readyz},
    {kRouteMetrics, bhttp::verb::get, &MetricsText},
    {kRoutePipelines, bhttp::verb::get, &Pipelines},
    {kRouteJobs, bhttp::verb::get, &ListJobs},
    {kRouteJobs, bhttp::verb::post, &PostJob},
    {kRouteJob, bhttp::verb::get, &GetJob},
    {kRouteJob, bhttp::verb::delete_, &CancelJob},
    {kRouteJobResults, bhttp::verb::get, &GetResults},
    {kRouteJobStream, bhttp::verb::get, &UpgradeRequired},
    {kRouteStream, bhttp::verb::get, &UpgradeRequired},
    {kRouteAdminReload, bhttp::verb::post, &AdminReload},
};

bool IsWebSocketRoute(std::string_view route) {
  return route == kRouteJobStream || route == kRouteStream;
}

// The handler of `method` on `route`, or nullptr (405).
Handler HandlerFor(std::string_view route, bhttp::verb method) {
  const bool head_as_get =
      method == bhttp::verb::head && !IsWebSocketRoute(route);
  for (const RouteEntry& entry : kRouteTable) {
    if (entry.route != route) continue;
    if (entry.method == method ||
        (head_as_get && entry.method == bhttp::verb::get)) {
      return entry.handle;
    }
  }
  return nullptr;
}

// The Allow header of a 405 on `route`: "GET, HEAD, POST" and the like.
std::string AllowedMethods(std::string_view route) {
  std::string allow;
  for (const RouteEntry& entry : kRouteTable) {
    if (entry.route != route) continue;
    if (!allow.empty()) allow += ", ";
    allow += bhttp::to_string(entry.method);
    if (entry.method == bhttp::verb::get && !IsWebSocketRoute(route)) {
      allow += ", HEAD";
    }
  }
  return allow;
}

// An NDJSON body's items into `submit`: one JSON value per line, blank
// lines skipped. A service that stores items as text gets the lines,
// checked, not parsed values. Returns the 400 to send, if any.
std::optional<Reply> ParseNdjsonItems(const Call& call,
                                      engine::SubmitRequest& submit) {
  const std::string& body = call.req.body();
  const bool texts_only = call.engine.TakesItemTexts();
  std::size_t start = 0;
  while (start < body.size()) {
    std::size_t end = body.find('\n', start);
    if (end == std::string::npos) end = body.size();
    std::string_view line(body.data() + start, end - start);
    // The parser skips a UTF-8 byte order mark before a value, but a line
    // stored as text is spliced into a JSON array, where one would not be.
    constexpr std::string_view kBom = "\xEF\xBB\xBF";
    std::size_t skipped = 0;
    const bool blank =
        line.find_first_not_of(" \t\r") == std::string_view::npos;
    if (texts_only && line.starts_with(kBom)) {
      line.remove_prefix(kBom.size());
      skipped = kBom.size();
    }
    if (!blank) {
      std::optional<JsonParseError> error;
      if (texts_only) {
        if (auto checked = CheckJsonText(line); !checked.ok())
          error = checked.error();
      } else if (auto parsed = ParseJsonText(line); parsed.ok()) {
        submit.items.push_back(std::move(parsed).value());
      } else {
        error = parsed.error();
      }
      if (error) {
        error->offset += start + skipped;
        return Answer(JsonSyntaxResponse(*error, call.req));
      }
      submit.item_texts.push_back(line);
    }
    start = end + 1;
  }
  return std::nullopt;
}

// POST /v1/jobs's body: the items and the options, or the 400 to send.
Result<engine::SubmitRequest, Reply> ParseJobBody(const Call& call) {
  engine::SubmitRequest submit;
  std::optional<std::string> query_pipeline =
      QueryParam(call.query, "pipeline");
  std::optional<std::string> body_pipeline;
  const std::string& body = call.req.body();

  if (MediaType(call.req[bhttp::field::content_type]) == kNdjsonType) {
    if (auto error = ParseNdjsonItems(call, submit)) return std::move(*error);
  } else {
    auto parsed = ParseJsonText(body);
    if (!parsed.ok()) {
      return Answer(JsonSyntaxResponse(parsed.error(), call.req));
    }
    nlohmann::json& doc = parsed.value();
    if (doc.is_array()) {
      submit.items.assign(std::make_move_iterator(doc.begin()),
                          std::make_move_iterator(doc.end()));
    } else if (doc.is_object()) {
      for (auto& [key, value] : doc.items()) {
        if (key == "pipeline") {
          if (!value.is_string()) {
            return call.BadRequest("pipeline must be a string");
          }
          body_pipeline = value.get<std::string>();
        } else if (key == "items") {
          if (!value.is_array())
            return call.BadRequest("items must be an array");
        } else if (key == "ordered") {
          if (!value.is_boolean()) {
            return call.BadRequest("ordered must be a boolean");
          }
          submit.ordered = value.get<bool>();
        } else {
          return call.BadRequest("unknown key \"" + key +
                                 "\" (expected pipeline, items, ordered)");
        }
      }
      auto items = doc.find("items");
      if (items == doc.end()) return call.BadRequest("items is missing");
      submit.items.assign(std::make_move_iterator(items->begin()),
                          std::make_move_iterator(items->end()));
    } else {
      return call.BadRequest(
          "body must be a JSON array of items or an object "
          "{\"pipeline\",\"items\",\"ordered\"}");
    }
  }

  if (query_pipeline && body_pipeline && *query_pipeline != *body_pipeline) {
    return call.BadRequest("pipeline given twice: \"" + *query_pipeline +
                           "\" in the query, \"" + *body_pipeline +
                           "\" in the body");
  }
  if (!query_pipeline && !body_pipeline) {
    return call.BadRequest(
        "missing pipeline (?pipeline=NAME or \"pipeline\" in the body)");
  }
  submit.pipeline = query_pipeline ? *query_pipeline : *body_pipeline;
  return submit;
}

// The 200 with the finished job's status, or the 202 as it was.
Response CompleteWaitResponse(Reply reply) {
  if (reply.wait_job && reply.wait_job->finished()) {
    Response res =
        MakeJson(bhttp::status::ok, reply.wait_job->Status(),
                 reply.response.version(), reply.response.keep_alive());
    res.set(bhttp::field::location, JobPath(reply.wait_job->id()));
    return res;
  }
  return std::move(reply.response);
}

Reply PostJob(const Call& call) {
  std::optional<std::chrono::milliseconds> wait;
  if (auto text = QueryParam(call.query, "wait")) {
    wait = ParseWait(*text);
    if (!wait) {
      return call.BadRequest("wait must be a number of seconds from 0 to " +
                             std::to_string(static_cast<int>(kMaxWaitSeconds)));
    }
  }
  auto parsed = ParseJobBody(call);
  if (!parsed.ok()) return std::move(parsed).error();
  engine::SubmitRequest& submit = parsed.value();
  const std::size_t count = submit.count();
  auto submitted = call.engine.Submit(std::move(submit));
  if (!submitted.ok()) {
    return Answer(RefusalResponse(submitted.error(), call.req, call.engine));
  }
  std::shared_ptr<jobs::Job> job = std::move(submitted.value());
  const std::string self = JobPath(job->id());
  Reply reply =
      call.Json(bhttp::status::accepted, {{"id", job->id()},
                                          {"pipeline", job->pipeline()},
                                          {"items", count},
                                          {"links",
                                           {{"self", self},
                                            {"results", self + "/results"},
                                            {"stream", self + "/stream"}}}});
  reply.response.set(bhttp::field::location, self);
  if (!wait) return reply;
  if (job->finished() || wait->count() == 0) {
    return Answer(CompleteWaitResponse(
        Reply{std::move(reply.response), kRouteJobs, job, *wait}));
  }
  reply.wait_job = std::move(job);
  reply.wait_for = *wait;
  return reply;
}

}  // namespace

Response MakeJson(bhttp::status status, const nlohmann::json& body,
                  unsigned version, bool keep_alive) {
  Response res{status, version};
  res.set(bhttp::field::server, "sluice");
  res.set(bhttp::field::content_type, kJsonType);
  res.keep_alive(keep_alive);
  // `replace`: a result value could hold invalid UTF-8 only if a processor
  // produced it; never fail the whole response over it.
  res.body() = DumpLenient(body);
  res.prepare_payload();
  return res;
}

Response MakeError(bhttp::status status, std::string_view code,
                   std::string_view message, unsigned version, bool keep_alive,
                   std::optional<std::size_t> offset) {
  nlohmann::json error = {{"code", code}, {"message", message}};
  if (offset) error["offset"] = *offset;
  return MakeJson(status, {{"error", std::move(error)}}, version, keep_alive);
}

void ObserveRequest(metrics::Metrics& metrics, std::string_view method,
                    std::string_view route, unsigned code,
                    std::chrono::steady_clock::duration elapsed) {
  static constexpr std::string_view kMethods[] = {
      "GET",   "HEAD",    "POST",    "PUT",  "DELETE",
      "PATCH", "OPTIONS", "CONNECT", "TRACE"};
  std::string_view label = "OTHER";
  for (std::string_view m : kMethods) {
    if (m == method) label = m;
  }
  metrics.ObserveHttpRequest(label, route, static_cast<int>(code),
                             std::chrono::duration<double>(elapsed).count());
}

std::vector<std::string> ParseTokens(std::string_view list) {
  std::vector<std::string> tokens;
  std::size_t start = 0;
  while (start <= list.size()) {
    std::size_t comma = list.find(',', start);
    if (comma == std::string_view::npos) comma = list.size();
    std::string_view token = list.substr(start, comma - start);
    while (!token.empty() &&
           std::isspace(static_cast<unsigned char>(token.front()))) {
      token.remove_prefix(1);
    }
    while (!token.empty() &&
           std::isspace(static_cast<unsigned char>(token.back()))) {
      token.remove_suffix(1);
    }
    if (!token.empty()) tokens.emplace_back(token);
    start = comma + 1;
  }
  return tokens;
}

bool ConstantTimeEquals(std::string_view a, std::string_view b) {
  // Walk the longer length so the time does not depend on the contents.
  std::size_t n = std::max(a.size(), b.size());
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  for (std::size_t i = 0; i < n; ++i) {
    unsigned char x = i < a.size() ? static_cast<unsigned char>(a[i]) : 0;
    unsigned char y = i < b.size() ? static_cast<unsigned char>(b[i]) : 0;
    diff |= static_cast<unsigned char>(x ^ y);
  }
  return diff == 0;
}

Router::Router(engine::JobService& engine, metrics::Metrics& metrics,
               RouterOptions options)
    : engine_(engine), metrics_(metrics), options_(std::move(options)) {}

std::string_view Router::RouteOf(std::string_view target) {
  Target t = ParseTarget(target);
  if (!t.ok) return kRouteUnmatched;
  return MatchRoute(t.segments, nullptr);
}

bool Router::Authorized(const RequestHeader& header) const {
  if (options_.tokens.empty()) return true;
  // Fail closed: only the probes, /metrics and the dashboard page (which
  // holds no data), spelled exactly, are public.
  // Deciding by a "/v1/" prefix let equivalent spellings that routing
  // decodes (/%761/jobs, /./v1/jobs) through without a token.
  std::string_view target = header.target();
  std::string_view path = target.substr(0, target.find('?'));
  if (path == kRouteHealthz || path == kRouteReadyz || path == kRouteMetrics ||
      path == kRouteDashboard) {
    return true;
  }
  std::optional<std::string> token = PresentedToken(header);
  if (!token) return false;
  bool match = false;
  // Compare against every token (no early exit) so the time does not tell
  // which one, if any, matched.
  for (const std::string& candidate : options_.tokens) {
    match |= ConstantTimeEquals(*token, candidate);
  }
  return match;
}

std::optional<std::string> Router::PresentedToken(const RequestHeader& header) {
  auto it = header.find(bhttp::field::authorization);
  if (it == header.end()) {
    // Only an upgrade may carry it as a subprotocol (browsers' WebSocket).
    if (!boost::beast::websocket::is_upgrade(header)) return std::nullopt;
    return SubprotocolToken(header);
  }
  std::string_view value = it->value();
  constexpr std::string_view kBearer = "Bearer ";
  if (value.size() <= kBearer.size() ||
      !boost::beast::iequals(value.substr(0, kBearer.size()), kBearer)) {
    return std::nullopt;
  }
  return std::string(value.substr(kBearer.size()));
}

std::optional<Reply> Router::CheckHeader(const RequestHeader& header) const {
  if (Authorized(header)) return std::nullopt;
  Reply reply;
  reply.route = RouteOf(header.target());
  reply.response = MakeError(
      bhttp::status::unauthorized, "unauthorized",
      "missing or invalid bearer token (Authorization: Bearer <token>)",
      header.version(), KeepAlive(header));
  reply.response.set(bhttp::field::www_authenticate, "Bearer realm=\"sluice\"");
  StripBodyForHead(header.method(), &reply);
  return reply;
}

void Router::StripBodyForHead(bhttp::verb method, Reply* reply) {
  // Empty already (or stripped by CheckHeader): Content-Length stands.
  if (method != bhttp::verb::head || reply->response.body().empty()) return;
  // HEAD, whatever the answer (errors too): the GET's headers with
  // Content-Length, and no body, so a keep-alive peer stays in step.
  auto length = reply->response.body().size();
  reply->response.body().clear();
  reply->response.content_length(length);
}

Reply Router::Handle(const Request& req) {
  Reply reply = Dispatch(req);
  StripBodyForHead(req.method(), &reply);
  return reply;
}

Reply Router::Dispatch(const Request& req) {
  try {
    if (auto denied = CheckHeader(req.base())) return std::move(*denied);
    Target target = ParseTarget(req.target());
    if (!target.ok) {
      return Answer(MakeError(bhttp::status::bad_request, "invalid_request",
                              "malformed request target", req.version(),
                              req.keep_alive()));
    }
    if (auto key = RepeatedParam(target.query)) {
      return Answer(RepeatedParamResponse(*key, req, req.keep_alive()));
    }
    std::string id;
    const std::string_view route = MatchRoute(target.segments, &id);
    const Call call{req, target.query, id, engine_, metrics_, options_};
    Reply reply;
    if (route == kRouteUnmatched) {
      const std::string_view path =
          req.target().substr(0, req.target().find('?'));
      reply = call.Fail(bhttp::status::not_found, "not_found",
                        "no route for " + std::string(path));
    } else if (Handler handle = HandlerFor(route, req.method())) {
      reply = handle(call);
    } else {
      reply = call.Fail(bhttp::status::method_not_allowed, "method_not_allowed",
                        std::string(req.method_string()) +
                            " is not allowed on " + std::string(route));
      reply.response.set(bhttp::field::allow, AllowedMethods(route));
    }
    reply.route = route;
    return reply;
  } catch (const std::exception& e) {
    return Answer(MakeError(bhttp::status::internal_server_error, "internal",
                            e.what(), req.version(), false));
  }
}

Response Router::CompleteWait(Reply reply) const {
  return CompleteWaitResponse(std::move(reply));
}

bool Router::draining() const { return engine_.draining(); }

Result<Upgrade, Reply> Router::HandleUpgrade(const Request& req) {
  Reply reply;
  if (auto denied = CheckHeader(req.base())) return std::move(*denied);
  Target target = ParseTarget(req.target());
  std::string id;
  std::string_view route =
      target.ok ? MatchRoute(target.segments, &id) : kRouteUnmatched;
  reply.route = route;
  const unsigned version = req.version();
  if (route != kRouteJobStream && route != kRouteStream) {
    if (route == kRouteUnmatched) {
      reply.response =
          MakeError(bhttp::status::not_found, "not_found",
                    "no WebSocket endpoint at this path", version, false);
    } else {
      reply.response = MakeError(
          bhttp::status::method_not_allowed, "method_not_allowed",
          "this endpoint does not accept a WebSocket", version, false);
      reply.response.set(bhttp::field::allow, AllowedMethods(route));
    }
    return reply;
  }
  if (req.method() != bhttp::verb::get) {
    reply.response =
        MakeError(bhttp::status::method_not_allowed, "method_not_allowed",
                  "a WebSocket upgrade must be a GET", version, false);
    reply.response.set(bhttp::field::allow, "GET");
    return reply;
  }
  // Before the job is found or the stream opened: a handshake that would
  // fail must leave nothing behind.
  if (auto refused = CheckWebSocketHandshake(req.base())) {
    reply.response = std::move(*refused);
    return reply;
  }
  Upgrade upgrade;
  upgrade.route = route;
  for (std::string_view offered : OfferedSubprotocols(req.base())) {
    if (offered == kSubprotocol) upgrade.subprotocol = kSubprotocol;
  }
  if (route == kRouteJobStream) {
    upgrade.kind = Upgrade::Kind::kJobStream;
    upgrade.job = engine_.Find(id);
    if (!upgrade.job) {
      // As Call::UnknownJob: 503 while the jobs cannot be looked up.
      if (auto why = engine_.unavailable()) {
        reply.response = MakeError(bhttp::status::service_unavailable, *why,
                                   "cannot look up job " + id + " now: " + *why,
                                   version, false);
      } else {
        reply.response = MakeError(bhttp::status::not_found, "unknown_job",
                                   "no job with id " + id, version, false);
      }
      return reply;
    }
    return upgrade;
  }
  upgrade.kind = Upgrade::Kind::kIngest;
  if (auto key = RepeatedParam(target.query)) {
    reply.response = RepeatedParamResponse(*key, req, false);
    return reply;
  }
  std::optional<std::string> pipeline = QueryParam(target.query, "pipeline");
  if (!pipeline || pipeline->empty()) {
    reply.response = MakeError(bhttp::status::bad_request, "invalid_request",
                               "missing ?pipeline=NAME", version, false);
    return reply;
  }
  auto feed = engine_.OpenStream(*pipeline);
  if (!feed.ok()) {
    reply.response = RefusalResponse(feed.error(), req, engine_);
    reply.response.keep_alive(false);
    return reply;
  }
  upgrade.feed = std::move(feed.value());
  upgrade.job = upgrade.feed->job();
  return upgrade;
}

}  // namespace sluice::http
