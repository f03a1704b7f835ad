// Implementation of sluice::http::Router (see router.hpp): contract §C2.
#include "service/http/router.hpp"

#include <algorithm>
#include <boost/beast/http/rfc7230.hpp>
#include <boost/url/parse.hpp>
#include <boost/url/url_view.hpp>
#include <charconv>
#include <cmath>
#include <exception>
#include <string>
#include <utility>

#include "service/engine/engine.hpp"
#include "service/http/framing.hpp"
#include "service/http/results_page.hpp"
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
  if (s.size() == 1) {
    if (s[0] == "metrics") return kRouteMetrics;
    if (s[0] == "healthz") return kRouteHealthz;
    if (s[0] == "readyz") return kRouteReadyz;
    return kRouteUnmatched;
  }
  if (s.empty() || s[0] != "v1") return kRouteUnmatched;
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

// The methods each route allows (the Allow header of a 405).
std::string_view AllowedMethods(std::string_view route) {
  if (route == kRouteJobs) return "GET, HEAD, POST";
  if (route == kRouteJob) return "GET, HEAD, DELETE";
  if (route == kRouteJobStream || route == kRouteStream) return "GET";
  return "GET, HEAD";
}

bool MethodAllowed(std::string_view route, bhttp::verb method) {
  using bhttp::verb;
  if (route == kRouteJobStream || route == kRouteStream) {
    return method == verb::get;
  }
  if (method == verb::get || method == verb::head) return true;
  if (route == kRouteJobs) return method == verb::post;
  if (route == kRouteJob) return method == verb::delete_;
  return false;
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

using JsonSyntaxError = JsonParseError;

// The body parser: nlohmann behind kMaxJsonDepth (util/json_parse.hpp).
std::variant<nlohmann::json, JsonSyntaxError> ParseJson(std::string_view text) {
  auto parsed = ParseJsonText(text);
  if (!parsed.ok()) return std::move(parsed).error();
  return std::move(parsed).value();
}

Response JsonSyntaxResponse(const JsonSyntaxError& e, const Request& req) {
  return MakeError(bhttp::status::bad_request, "invalid_json",
                   "malformed JSON at byte offset " + std::to_string(e.offset) +
                       ": " + e.reason,
                   req.version(), req.keep_alive(), e.offset);
}

std::string JobPath(std::string_view id) {
  return std::string("/v1/jobs/") + std::string(id);
}

// Maps an engine error to its HTTP status (contract §C2).
bhttp::status StatusOfEngineError(std::string_view code) {
  if (code == "unknown_pipeline" || code == "unknown_job" ||
      code == "not_found") {
    return bhttp::status::not_found;
  }
  if (code == "over_capacity") return bhttp::status::too_many_requests;
  // A job that can never fit jobs.max_pending_items: no Retry-After.
  if (code == "job_too_large") return bhttp::status::payload_too_large;
  if (code == "draining") return bhttp::status::service_unavailable;
  if (code == "invalid_request" || code == "invalid_json") {
    return bhttp::status::bad_request;
  }
  return bhttp::status::internal_server_error;
}

Response EngineErrorResponse(const Error& error, const Request& req,
                             const engine::Engine& engine) {
  Response res = MakeError(StatusOfEngineError(error.code), error.code,
                           error.message, req.version(), req.keep_alive());
  if (res.result() == bhttp::status::too_many_requests) {
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

// Message::keep_alive() for a bare header (which lacks it): HTTP/1.1 keeps
// the connection unless "Connection: close"; HTTP/1.0 only on "keep-alive".
bool KeepAlive(const RequestHeader& header) {
  bhttp::token_list tokens{header[bhttp::field::connection]};
  if (header.version() >= 11) return !tokens.exists("close");
  return tokens.exists("keep-alive");
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
  metrics.HttpRequests(label, route, static_cast<int>(code)).Increment();
  metrics.HttpDuration(route).Observe(
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

Router::Router(engine::Engine& engine, metrics::Metrics& metrics,
               RouterOptions options)
    : engine_(engine), metrics_(metrics), options_(std::move(options)) {}

std::string_view Router::RouteOf(std::string_view target) {
  Target t = ParseTarget(target);
  if (!t.ok) return kRouteUnmatched;
  return MatchRoute(t.segments, nullptr);
}

bool Router::Authorized(const RequestHeader& header) const {
  if (options_.tokens.empty()) return true;
  // Fail closed: only the probes and /metrics, spelled exactly, are public.
  // Deciding by a "/v1/" prefix let equivalent spellings that routing
  // decodes (/%761/jobs, /./v1/jobs) through without a token.
  std::string_view target = header.target();
  std::string_view path = target.substr(0, target.find('?'));
  if (path == kRouteHealthz || path == kRouteReadyz || path == kRouteMetrics) {
    return true;
  }
  auto it = header.find(bhttp::field::authorization);
  if (it == header.end()) return false;
  std::string_view value = it->value();
  constexpr std::string_view kBearer = "Bearer ";
  if (value.size() <= kBearer.size() ||
      !boost::beast::iequals(value.substr(0, kBearer.size()), kBearer)) {
    return false;
  }
  std::string_view token = value.substr(kBearer.size());
  bool match = false;
  // Compare against every token (no early exit) so the time does not tell
  // which one, if any, matched.
  for (const std::string& candidate : options_.tokens) {
    match |= ConstantTimeEquals(token, candidate);
  }
  return match;
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
  Reply reply;
  try {
    if (auto denied = CheckHeader(req.base())) return std::move(*denied);
    Target target = ParseTarget(req.target());
    if (!target.ok) {
      reply.response = MakeError(bhttp::status::bad_request, "invalid_request",
                                 "malformed request target", req.version(),
                                 req.keep_alive());
      return reply;
    }
    if (auto key = RepeatedParam(target.query)) {
      reply.response = RepeatedParamResponse(*key, req, req.keep_alive());
      return reply;
    }
    std::string id;
    std::string_view route = MatchRoute(target.segments, &id);
    reply.route = route;
    if (route == kRouteUnmatched) {
      reply.response = MakeError(
          bhttp::status::not_found, "not_found",
          "no route for " +
              std::string(req.target().substr(0, req.target().find('?'))),
          req.version(), req.keep_alive());
      return reply;
    }
    if (!MethodAllowed(route, req.method())) {
      reply.response =
          MakeError(bhttp::status::method_not_allowed, "method_not_allowed",
                    std::string(req.method_string()) + " is not allowed on " +
                        std::string(route),
                    req.version(), req.keep_alive());
      reply.response.set(bhttp::field::allow, AllowedMethods(route));
      return reply;
    }
    const unsigned version = req.version();
    const bool keep_alive = req.keep_alive();

    if (route == kRouteHealthz) {
      reply.response =
          MakeJson(bhttp::status::ok, {{"status", "ok"}}, version, keep_alive);
    } else if (route == kRouteReadyz) {
      if (draining() || engine_.draining()) {
        reply.response =
            MakeJson(bhttp::status::service_unavailable,
                     {{"status", "draining"}}, version, keep_alive);
      } else if (engine_.overloaded()) {
        reply.response =
            MakeJson(bhttp::status::service_unavailable,
                     {{"status", "overloaded"}}, version, keep_alive);
      } else {
        reply.response = MakeJson(bhttp::status::ok, {{"status", "ready"}},
                                  version, keep_alive);
      }
    } else if (route == kRouteMetrics) {
      reply.response =
          Text(bhttp::status::ok, metrics_.Serialize(), kMetricsType, req);
    } else if (route == kRoutePipelines) {
      // Already {"pipelines":[...]}.
      reply.response = MakeJson(bhttp::status::ok, engine_.PipelinesJson(),
                                version, keep_alive);
    } else if (route == kRouteJobs && req.method() == bhttp::verb::post) {
      return HandleJobsPost(req, target.query);
    } else if (route == kRouteJobs) {
      std::size_t limit = kDefaultJobsListLimit;
      if (auto text = QueryParam(target.query, "limit")) {
        auto n = ParseCount(*text);
        if (!n || *n > kMaxJobsListLimit) {
          reply.response =
              MakeError(bhttp::status::bad_request, "invalid_request",
                        "limit must be an integer from 0 to " +
                            std::to_string(kMaxJobsListLimit),
                        version, keep_alive);
          return reply;
        }
        limit = *n;
      }
      nlohmann::json jobs = nlohmann::json::array();
      for (const auto& job : engine_.List(limit)) jobs.push_back(job->Status());
      reply.response = MakeJson(bhttp::status::ok, {{"jobs", std::move(jobs)}},
                                version, keep_alive);
    } else if (route == kRouteJobStream || route == kRouteStream) {
      // A plain GET on a WebSocket endpoint (upgrades go to HandleUpgrade).
      if (route == kRouteJobStream && !engine_.Find(id)) {
        reply.response = MakeError(bhttp::status::not_found, "unknown_job",
                                   "no job with id " + id, version, keep_alive);
        return reply;
      }
      reply.response =
          MakeError(bhttp::status::upgrade_required, "upgrade_required",
                    "this endpoint is a WebSocket: send an upgrade request",
                    version, keep_alive);
      reply.response.set(bhttp::field::upgrade, "websocket");
      reply.response.set(bhttp::field::connection, "Upgrade");
      reply.response.keep_alive(keep_alive);
    } else {
      // The three routes of one job.
      std::shared_ptr<jobs::Job> job = engine_.Find(id);
      if (!job) {
        reply.response = MakeError(bhttp::status::not_found, "unknown_job",
                                   "no job with id " + id, version, keep_alive);
        return reply;
      }
      if (route == kRouteJob && req.method() == bhttp::verb::delete_) {
        // Cancelling a finished job changes nothing; either way the answer
        // is the job's status after the request.
        engine_.Cancel(id);
        reply.response =
            MakeJson(bhttp::status::ok, job->Status(), version, keep_alive);
      } else if (route == kRouteJob) {
        reply.response =
            MakeJson(bhttp::status::ok, job->Status(), version, keep_alive);
      } else {
        std::size_t offset = 0;
        std::size_t limit = kDefaultResultsLimit;
        if (auto text = QueryParam(target.query, "offset")) {
          auto n = ParseCount(*text);
          if (!n) {
            reply.response = MakeError(
                bhttp::status::bad_request, "invalid_request",
                "offset must be a non-negative integer", version, keep_alive);
            return reply;
          }
          offset = *n;
        }
        if (auto text = QueryParam(target.query, "limit")) {
          auto n = ParseCount(*text);
          if (!n || *n > kMaxResultsLimit) {
            reply.response =
                MakeError(bhttp::status::bad_request, "invalid_request",
                          "limit must be an integer from 0 to " +
                              std::to_string(kMaxResultsLimit),
                          version, keep_alive);
            return reply;
          }
          limit = *n;
        }
        // Bounded by bytes as well as by limit (results_page.hpp).
        const bool ndjson = AcceptsNdjson(req[bhttp::field::accept]);
        ResultsPage page = BuildResultsPage(*job, offset, limit, ndjson);
        reply.response = Text(bhttp::status::ok, std::move(page.body),
                              ndjson ? kNdjsonType : kJsonType, req);
        if (ndjson) {
          reply.response.set("X-Total-Count", std::to_string(page.total));
          reply.response.set("X-Next-Offset", std::to_string(page.next_offset));
        }
      }
    }
    return reply;
  } catch (const std::exception& e) {
    reply.response = MakeError(bhttp::status::internal_server_error, "internal",
                               e.what(), req.version(), false);
    return reply;
  }
}

Reply Router::HandleJobsPost(const Request& req, const Query& query) {
  Reply reply;
  reply.route = kRouteJobs;
  const unsigned version = req.version();
  const bool keep_alive = req.keep_alive();
  auto bad = [&](const std::string& message) {
    reply.response = MakeError(bhttp::status::bad_request, "invalid_request",
                               message, version, keep_alive);
    return std::move(reply);
  };

  std::optional<std::chrono::milliseconds> wait;
  if (auto text = QueryParam(query, "wait")) {
    wait = ParseWait(*text);
    if (!wait) {
      return bad("wait must be a number of seconds from 0 to " +
                 std::to_string(static_cast<int>(kMaxWaitSeconds)));
    }
  }

  engine::SubmitRequest submit;
  std::optional<std::string> query_pipeline = QueryParam(query, "pipeline");
  std::optional<std::string> body_pipeline;
  const std::string& body = req.body();

  if (MediaType(req[bhttp::field::content_type]) == kNdjsonType) {
    // One JSON value per line; blank lines are skipped.
    std::size_t start = 0;
    while (start < body.size()) {
      std::size_t end = body.find('\n', start);
      if (end == std::string::npos) end = body.size();
      std::string_view line(body.data() + start, end - start);
      if (line.find_first_not_of(" \t\r") != std::string_view::npos) {
        auto parsed = ParseJson(line);
        if (auto* error = std::get_if<JsonSyntaxError>(&parsed)) {
          error->offset += start;
          reply.response = JsonSyntaxResponse(*error, req);
          return reply;
        }
        submit.items.push_back(std::move(std::get<nlohmann::json>(parsed)));
      }
      start = end + 1;
    }
  } else {
    auto parsed = ParseJson(body);
    if (auto* error = std::get_if<JsonSyntaxError>(&parsed)) {
      reply.response = JsonSyntaxResponse(*error, req);
      return reply;
    }
    auto& doc = std::get<nlohmann::json>(parsed);
    if (doc.is_array()) {
      submit.items.assign(std::make_move_iterator(doc.begin()),
                          std::make_move_iterator(doc.end()));
    } else if (doc.is_object()) {
      for (auto& [key, value] : doc.items()) {
        if (key == "pipeline") {
          if (!value.is_string()) return bad("pipeline must be a string");
          body_pipeline = value.get<std::string>();
        } else if (key == "items") {
          if (!value.is_array()) return bad("items must be an array");
        } else if (key == "ordered") {
          if (!value.is_boolean()) return bad("ordered must be a boolean");
          submit.ordered = value.get<bool>();
        } else {
          return bad("unknown key \"" + key +
                     "\" (expected pipeline, items, ordered)");
        }
      }
      auto items = doc.find("items");
      if (items == doc.end()) return bad("items is missing");
      submit.items.assign(std::make_move_iterator(items->begin()),
                          std::make_move_iterator(items->end()));
    } else {
      return bad(
          "body must be a JSON array of items or an object "
          "{\"pipeline\",\"items\",\"ordered\"}");
    }
  }

  if (query_pipeline && body_pipeline && *query_pipeline != *body_pipeline) {
    return bad("pipeline given twice: \"" + *query_pipeline +
               "\" in the query, \"" + *body_pipeline + "\" in the body");
  }
  if (query_pipeline) {
    submit.pipeline = *query_pipeline;
  } else if (body_pipeline) {
    submit.pipeline = *body_pipeline;
  } else {
    return bad("missing pipeline (?pipeline=NAME or \"pipeline\" in the body)");
  }

  if (draining()) {
    reply.response =
        MakeError(bhttp::status::service_unavailable, "draining",
                  "the server is shutting down", version, keep_alive);
    return reply;
  }
  const std::size_t count = submit.items.size();
  auto submitted = engine_.Submit(std::move(submit));
  if (!submitted.ok()) {
    reply.response = EngineErrorResponse(submitted.error(), req, engine_);
    return reply;
  }
  std::shared_ptr<jobs::Job> job = std::move(submitted.value());
  const std::string self = JobPath(job->id());
  nlohmann::json accepted = {{"id", job->id()},
                             {"pipeline", job->pipeline()},
                             {"items", count},
                             {"links",
                              {{"self", self},
                               {"results", self + "/results"},
                               {"stream", self + "/stream"}}}};
  reply.response =
      MakeJson(bhttp::status::accepted, accepted, version, keep_alive);
  reply.response.set(bhttp::field::location, self);
  if (wait) {
    if (job->finished() || wait->count() == 0) {
      reply.response = CompleteWait(
          Reply{std::move(reply.response), kRouteJobs, job, *wait});
      return reply;
    }
    reply.wait_job = std::move(job);
    reply.wait_for = *wait;
  }
  return reply;
}

Response Router::CompleteWait(Reply reply) const {
  if (reply.wait_job && reply.wait_job->finished()) {
    Response res =
        MakeJson(bhttp::status::ok, reply.wait_job->Status(),
                 reply.response.version(), reply.response.keep_alive());
    res.set(bhttp::field::location, JobPath(reply.wait_job->id()));
    return res;
  }
  return std::move(reply.response);
}

std::variant<Reply, Upgrade> Router::HandleUpgrade(const Request& req) {
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
  if (route == kRouteJobStream) {
    upgrade.kind = Upgrade::Kind::kJobStream;
    upgrade.job = engine_.Find(id);
    if (!upgrade.job) {
      reply.response = MakeError(bhttp::status::not_found, "unknown_job",
                                 "no job with id " + id, version, false);
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
  if (draining()) {
    reply.response = MakeError(bhttp::status::service_unavailable, "draining",
                               "the server is shutting down", version, false);
    return reply;
  }
  auto feed = engine_.OpenStream(*pipeline);
  if (!feed.ok()) {
    reply.response = EngineErrorResponse(feed.error(), req, engine_);
    reply.response.keep_alive(false);
    return reply;
  }
  upgrade.feed = std::move(feed.value());
  upgrade.job = upgrade.feed->job();
  return upgrade;
}

}  // namespace sluice::http
