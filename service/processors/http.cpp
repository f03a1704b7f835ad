// http: sends the item to another service and keeps the JSON response, as
// the item itself or at `result_field`.
//
// The rules (also in docs/configuration.md, "### http"):
// - The URL is a template (url_template.hpp): {/pointer} placeholders in the
//   path and query take values from the item, percent-encoded; scheme,
//   host and port are fixed, so each worker keeps one keep-alive connection
//   (http_client.hpp) and a stage of N workers has at most N requests in
//   flight. In the engine the exchanges run on its IoLoop and the workers'
//   tasks suspend while they wait (ProcessAsync): N requests in flight hold
//   no thread each.
// - POST, PUT and PATCH send the item as JSON; GET and DELETE send no body.
// - A 2xx response must be JSON (at most 16 MiB). 429, 5xx, timeouts and
//   connection failures are retried `retries` times with exponential
//   backoff and jitter, honouring Retry-After (retry.hpp); other statuses
//   (3xx, 4xx) end the item at once. Every attempt is counted in
//   sluice_http_client_requests_total and timed in
//   sluice_http_client_duration_seconds.
// - Process() has no stop signal: an item holds its worker for at most
//   (retries + 1) x timeout + retries x max_backoff, which bounds a drain.
#include <algorithm>
#include <cctype>
#include <chrono>
#include <exception>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "service/config/units.hpp"
#include "service/metrics/metrics.hpp"
#include "service/processors/http_client.hpp"
#include "service/processors/internal.hpp"
#include "service/processors/retry.hpp"
#include "service/processors/url_template.hpp"
#include "service/util/text.hpp"
#include "sluice/patterns/runtime.hpp"

namespace sluice::processors::internal {

namespace {

using std::chrono::milliseconds;

// Defaults and limits (documented in docs/configuration.md).
constexpr milliseconds kDefaultTimeout{10'000};
constexpr milliseconds kMaxTimeout{10 * 60'000};
constexpr int kDefaultRetries = 3;
constexpr int kMaxRetries = 10;
constexpr milliseconds kDefaultBackoff{100};
constexpr milliseconds kDefaultMaxBackoff{10'000};
constexpr milliseconds kMaxMaxBackoff{10 * 60'000};
constexpr std::uint64_t kMaxResponseBytes = 16ull * 1024 * 1024;

constexpr std::string_view kMethods[] = {"GET", "POST", "PUT", "PATCH",
                                         "DELETE"};
// Framing and connection management are the client's: a configured value
// would corrupt the exchange or the keep-alive.
constexpr std::string_view kReservedHeaders[] = {
    "content-length", "transfer-encoding", "connection",
    "keep-alive",     "upgrade",           "te",
    "trailer"};

std::string Upper(std::string s) {
  for (char& c : s) {
    c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  }
  return s;
}

std::string Lower(std::string s) {
  for (char& c : s) {
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  return s;
}

// RFC 9110 token characters (header names).
bool IsTchar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
         (c >= '0' && c <= '9') ||
         std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

// Everything the processor needs, checked. Thread-compatible (plain value).
struct HttpSpec {
  UrlTemplate url;
  std::string method = "POST";
  std::vector<std::pair<std::string, std::string>> headers;
  milliseconds timeout = kDefaultTimeout;
  RetryPolicy retry{kDefaultRetries, kDefaultBackoff, kDefaultMaxBackoff};
  JsonPointer result_field;
};

// A duration param (a string such as "2s", or the number 0) within
// [min, max]; `fallback` when absent; nullopt after reporting a problem.
std::optional<milliseconds> DurationParam(Params& p, std::string_view key,
                                          milliseconds fallback,
                                          milliseconds min, milliseconds max) {
  const nlohmann::json* v = p.Get(key);
  if (v == nullptr) return fallback;
  std::string text;
  if (v->is_string()) {
    text = v->get<std::string>();
  } else if (v->is_number_integer() || v->is_number_unsigned()) {
    text = v->dump();
  } else {
    p.Report(std::string(key),
             "must be a duration such as \"2s\", not " + DescribeJsonType(*v));
    return std::nullopt;
  }
  const auto d = config::ParseDuration(text);
  if (!d.ok()) {
    p.Report(std::string(key), d.error().message);
    return std::nullopt;
  }
  if (d.value() < min) {
    p.Report(std::string(key), "must be >= " + config::FormatDuration(min));
    return std::nullopt;
  }
  if (d.value() > max) {
    p.Report(std::string(key), "must be <= " + config::FormatDuration(max));
    return std::nullopt;
  }
  return d.value();
}

// The method in upper case; nullopt after reporting an unknown one.
std::optional<std::string> ReadMethod(Params& p, const std::string& method) {
  std::string upper = Upper(method);
  if (std::find(std::begin(kMethods), std::end(kMethods), upper) ==
      std::end(kMethods)) {
    p.Report("method", "unknown method '" + method +
                           "' (expected one of: GET, POST, PUT, PATCH, "
                           "DELETE)");
    return std::nullopt;
  }
  return upper;
}

// Adds each valid header of `headers` to `spec` and reports the others,
// so one run of `sluice check` names every bad header.
void ReadHeaders(Params& p, const nlohmann::json& headers, HttpSpec& spec) {
  if (!headers.is_object()) {
    p.Report("headers", "must be a map of header name to string value, not " +
                            DescribeJsonType(headers));
    return;
  }
  for (const auto& [name, value] : headers.items()) {
    const std::string path = "headers[" + nlohmann::json(name).dump() + "]";
    if (name.empty() || !std::all_of(name.begin(), name.end(), IsTchar)) {
      p.Report(path, "is not a valid header name");
      continue;
    }
    const std::string lower = Lower(name);
    if (std::find(std::begin(kReservedHeaders), std::end(kReservedHeaders),
                  lower) != std::end(kReservedHeaders)) {
      p.Report(path, "is managed by the http processor and cannot be set");
      continue;
    }
    if (!value.is_string()) {
      p.Report(path,
               "must be a string (quote it), not " + DescribeJsonType(value));
      continue;
    }
    const std::string& text = value.get_ref<const std::string&>();
    if (text.find_first_of(std::string_view("\r\n\0", 3)) !=
        std::string::npos) {
      p.Report(path, "must not contain CR, LF or NUL");
      continue;
    }
    spec.headers.emplace_back(name, text);
  }
}

// 0..kMaxRetries; nullopt after reporting anything else.
std::optional<int> ReadRetries(Params& p, const nlohmann::json& retries) {
  if (!retries.is_number_integer() && !retries.is_number_unsigned()) {
    p.Report("retries", "must be an integer, not " + DescribeJsonType(retries));
    return std::nullopt;
  }
  if (retries.is_number_unsigned()
          ? retries.get<std::uint64_t>() > kMaxRetries
          : (retries.get<std::int64_t>() < 0 ||
             retries.get<std::int64_t>() > kMaxRetries)) {
    p.Report("retries", "must be between 0 and " + std::to_string(kMaxRetries));
    return std::nullopt;
  }
  return retries.get<int>();
}

// backoff and max_backoff, which are checked against each other.
void ReadBackoff(Params& p, RetryPolicy& retry) {
  const auto max_backoff = DurationParam(p, "max_backoff", kDefaultMaxBackoff,
                                         milliseconds(0), kMaxMaxBackoff);
  if (max_backoff) retry.max_backoff = *max_backoff;
  if (auto b = DurationParam(p, "backoff", kDefaultBackoff, milliseconds(0),
                             kMaxMaxBackoff)) {
    if (max_backoff && *b > *max_backoff) {
      p.Report("backoff", "must be <= max_backoff (" +
                              config::FormatDuration(*max_backoff) + ")");
    } else {
      retry.backoff = *b;
    }
  }
}

// Checks `params` and, when they are valid, returns the spec; every problem
// goes to `errors`.
std::optional<HttpSpec> ParseSpec(const nlohmann::json& params,
                                  Errors* errors) {
  const std::size_t before = errors->size();
  Params p(params, errors,
           {"url", "method", "headers", "timeout", "retries", "backoff",
            "max_backoff", "result_field"});
  HttpSpec spec;
  if (auto url = p.String("url", /*required=*/true)) {
    auto tmpl = UrlTemplate::Parse(*url);
    if (tmpl.ok()) {
      spec.url = std::move(tmpl).value();
    } else {
      p.Report("url", tmpl.error().message);
    }
  }
  if (auto method = p.String("method", /*required=*/false)) {
    if (auto upper = ReadMethod(p, *method)) spec.method = std::move(*upper);
  }
  if (const nlohmann::json* headers = p.Get("headers")) {
    ReadHeaders(p, *headers, spec);
  }
  if (auto t = DurationParam(p, "timeout", kDefaultTimeout, milliseconds(1),
                             kMaxTimeout)) {
    spec.timeout = *t;
  }
  if (const nlohmann::json* retries = p.Get("retries")) {
    if (auto n = ReadRetries(p, *retries)) spec.retry.retries = *n;
  }
  ReadBackoff(p, spec.retry);
  if (auto ptr = p.Pointer("result_field", /*required=*/false)) {
    spec.result_field = std::move(*ptr);
  }
  if (errors->size() != before) return std::nullopt;
  return spec;
}

bool HasBody(std::string_view method) {
  return method == "POST" || method == "PUT" || method == "PATCH";
}

std::string AttemptsText(int n) {
  return std::to_string(n) + (n == 1 ? " attempt" : " attempts");
}

// One worker's http processor: its own client (connection) and jitter
// source. Thread-compatible, like every Processor: one worker uses it.
class Http final : public Processor {
 public:
  Http(HttpSpec spec, const ProcessorContext& context)
      : spec_(std::move(spec)),
        client_(HttpClientOptions{spec_.url.host(), spec_.url.port(),
                                  spec_.url.host_header(), spec_.timeout,
                                  kMaxResponseBytes, spec_.headers},
                context.io),
        has_body_(HasBody(spec_.method)),
        context_(context) {
    if (context_.metrics != nullptr) {
      duration_ = &context_.metrics->HttpClientDuration(context_.pipeline,
                                                        context_.stage);
      // The no-response codes exist from start-up, so a rate() over them
      // works before the first failure.
      Counter("timeout");
      Counter("error");
    }
  }

  Outcome Process(nlohmann::json item) override {
    std::optional<Attempts> attempts;
    if (Outcome failed = Prepare(item, attempts); !attempts) return failed;
    for (;;) {
      const auto start = std::chrono::steady_clock::now();
      auto result =
          client_.Send(spec_.method, attempts->target, attempts->Body());
      auto next = Judge(*attempts, item, result, start);
      if (!next) return std::move(attempts->outcome);
      std::this_thread::sleep_for(*next);
    }
  }

  // As Process, with the exchange on the engine's IoLoop and the backoff
  // on the runtime's timers: the worker's task waits, no thread does.
  Task<Outcome> ProcessAsync(nlohmann::json item) override {
    std::optional<Attempts> attempts;
    if (Outcome failed = Prepare(item, attempts); !attempts) co_return failed;
    for (;;) {
      const auto start = std::chrono::steady_clock::now();
      auto result = co_await sluice::await_callback<HttpClient::Response>(
          [this, &attempts](auto resume) {
            client_.SendAsync(spec_.method, attempts->target, attempts->Body(),
                              std::move(resume));
          });
      auto next = Judge(*attempts, item, result, start);
      if (!next) co_return std::move(attempts->outcome);
      co_await sluice::sleep_for(*next);
    }
  }

  bool io_bound() const override { return true; }

 private:
  // One item's request and its attempts so far.
  struct Attempts {
    std::string target;
    std::optional<std::string> body;
    int attempt = 0;
    std::string last_error;
    Outcome outcome;  // set when Judge ends the item

    const std::string* Body() const { return body ? &*body : nullptr; }
  };

  // Expands the URL and the body into `attempts`, or returns the item's
  // failure (leaving `attempts` empty).
  Outcome Prepare(const nlohmann::json& item,
                  std::optional<Attempts>& attempts) {
    try {
      auto target = spec_.url.Expand(item);
      if (!target.ok()) return Outcome::Fail("http: " + target.error().message);
      attempts.emplace();
      attempts->target = std::move(target).value();
      if (has_body_) attempts->body = DumpLenient(item);
      return Outcome::Value(nullptr);
    } catch (const std::exception& e) {
      attempts.reset();
      return Outcome::Fail(std::string("http: ") + e.what());
    }
  }

  // Counts one attempt begun at `start` and decides: the item's outcome
  // (into a.outcome; returns nullopt), or how long to back off before the
  // next attempt.
  std::optional<milliseconds> Judge(
      Attempts& a, nlohmann::json& item,
      Result<HttpClientResponse, HttpClientFailure>& result,
      std::chrono::steady_clock::time_point start) {
    ++a.attempt;
    const std::chrono::duration<double> took =
        std::chrono::steady_clock::now() - start;
    std::optional<milliseconds> retry_after;
    if (!result.ok()) {
      const HttpClientFailure& f = result.error();
      Observe(f.kind == HttpClientFailure::kTimeout ? "timeout" : "error",
              took.count());
      // Retrying cannot make an oversized or malformed response fit.
      if (f.kind == HttpClientFailure::kTooLarge ||
          f.kind == HttpClientFailure::kProtocol) {
        a.outcome = Outcome::Fail("http: " + f.message);
        return std::nullopt;
      }
      a.last_error = f.message;
    } else {
      HttpClientResponse& r = result.value();
      Observe(std::to_string(r.status), took.count());
      if (r.status >= 200 && r.status < 300) {
        a.outcome = Accept(std::move(item), r.body);
        return std::nullopt;
      }
      const std::string text = r.reason.empty()
                                   ? std::to_string(r.status)
                                   : std::to_string(r.status) + " " + r.reason;
      if (!IsRetryableStatus(r.status)) {
        a.outcome = Outcome::Fail("http: " + text +
                                  (r.status >= 300 && r.status < 400
                                       ? " (redirects are not followed)"
                                       : ""));
        return std::nullopt;
      }
      a.last_error = text;
      if (r.retry_after) {
        retry_after =
            ParseRetryAfter(*r.retry_after, std::chrono::system_clock::now());
      }
    }
    if (a.attempt > spec_.retry.retries) {
      a.outcome = Outcome::Fail("http: " + a.last_error + " after " +
                                AttemptsText(a.attempt));
      return std::nullopt;
    }
    // Bounded by max_backoff; see the drain note at the top.
    return RetryDelay(spec_.retry, a.attempt, retry_after, jitter_.Next());
  }

  // A 2xx response: its JSON replaces the item or goes to result_field.
  Outcome Accept(nlohmann::json item, const std::string& body) {
    nlohmann::json response;
    try {
      response = nlohmann::json::parse(body);
    } catch (const nlohmann::json::parse_error& e) {
      // parse_error::byte is 1-based (it counts the bad character).
      return Outcome::Fail("http: response is not JSON (offset " +
                           std::to_string(e.byte == 0 ? 0 : e.byte - 1) + ")");
    }
    if (spec_.result_field.empty()) return Outcome::Value(std::move(response));
    if (auto r = SetPointer(item, spec_.result_field, std::move(response));
        !r.ok()) {
      return Outcome::Fail("http: result_field " +
                           spec_.result_field.to_string() + ": " +
                           r.error().message);
    }
    return Outcome::Value(std::move(item));
  }

  prometheus::Counter* Counter(const std::string& code) {
    auto it = counters_.find(code);
    if (it == counters_.end()) {
      it = counters_
               .emplace(code, &context_.metrics->HttpClientRequests(
                                  context_.pipeline, context_.stage, code))
               .first;
    }
    return it->second;
  }

  void Observe(const std::string& code, double seconds) {
    if (context_.metrics == nullptr) return;
    Counter(code)->Increment();
    duration_->Observe(seconds);
  }

  const HttpSpec spec_;
  HttpClient client_;
  const bool has_body_;
  const ProcessorContext context_;
  Jitter jitter_;
  // This worker's children of the metric families, looked up once each
  // (the registry's lookups lock the family).
  prometheus::Histogram* duration_ = nullptr;
  std::unordered_map<std::string, prometheus::Counter*> counters_;
};

}  // namespace

Errors ValidateHttp(const nlohmann::json& params) {
  Errors errors;
  (void)ParseSpec(params, &errors);
  return errors;
}

Result<std::unique_ptr<Processor>> MakeHttp(const nlohmann::json& params,
                                            const ProcessorContext& context) {
  Errors errors;
  std::optional<HttpSpec> spec = ParseSpec(params, &errors);
  if (!spec) return InvalidSpec(errors);
  return std::make_unique<Http>(std::move(*spec), context);
}

}  // namespace sluice::processors::internal
