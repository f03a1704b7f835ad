// Unit tests of the http processor's pure parts, without a server: URL
// templating and encoding (service/processors/url_template.hpp), the retry
// schedule and Retry-After parsing (service/processors/retry.hpp), config
// validation, and the failures that need no peer (a refused connection, an
// item the URL cannot take a value from). The exchanges with a real
// upstream are in tests/integration/http_processor_test.cpp.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <set>

#include "service/processors/processor.hpp"
#include "service/processors/retry.hpp"
#include "service/processors/url_template.hpp"

namespace sluice::processors {
namespace {

using internal::BackoffDelay;
using internal::IsRetryableStatus;
using internal::Jitter;
using internal::ParseRetryAfter;
using internal::RetryDelay;
using internal::RetryPolicy;
using internal::UrlTemplate;
using nlohmann::json;
using std::chrono::milliseconds;
using namespace std::chrono_literals;

::testing::AssertionResult Contains(const std::string& haystack,
                                    std::string_view needle) {
  if (haystack.find(needle) != std::string::npos) {
    return ::testing::AssertionSuccess();
  }
  return ::testing::AssertionFailure()
         << "\"" << haystack << "\" does not contain \"" << needle << "\"";
}

UrlTemplate MustParse(std::string_view text) {
  auto t = UrlTemplate::Parse(text);
  EXPECT_TRUE(t.ok()) << text << ": " << (t.ok() ? "" : t.error().message);
  return t.ok() ? t.value() : UrlTemplate();
}

// The target for `item` (JSON text), or "ERROR: <message>".
std::string Target(std::string_view tmpl, std::string_view item) {
  auto t = UrlTemplate::Parse(tmpl);
  if (!t.ok()) return "PARSE ERROR: " + t.error().message;
  auto target = t.value().Expand(json::parse(item));
  return target.ok() ? target.value() : "ERROR: " + target.error().message;
}

std::string ParseError(std::string_view tmpl) {
  auto t = UrlTemplate::Parse(tmpl);
  EXPECT_FALSE(t.ok()) << tmpl << " parsed";
  if (t.ok()) return "";
  EXPECT_EQ(t.error().code, "invalid_url");
  return t.error().message;
}

// --- URL templates: expansion and encoding -----------------------------------

TEST(UrlTemplate, FixedUrlGivesItsTarget) {
  EXPECT_EQ(Target("http://h/a/b?x=1", "{}"), "/a/b?x=1");
  EXPECT_EQ(Target("http://h", "{}"), "/");
  EXPECT_EQ(Target("http://h/", "{}"), "/");
  EXPECT_EQ(Target("http://h?x=1", "{}"), "/?x=1");
  // Literal text is kept as written, percent-escapes included.
  EXPECT_EQ(Target("http://h/a%20b/", "{}"), "/a%20b/");
}

TEST(UrlTemplate, PathValuesAreEncodedAsASegment) {
  const char* t = "http://h/users/{/id}/orders";
  EXPECT_EQ(Target(t, R"({"id":"alice"})"), "/users/alice/orders");
  EXPECT_EQ(Target(t, R"({"id":"a b"})"), "/users/a%20b/orders");
  // A slash cannot add a segment; ? and # cannot start a query / fragment.
  EXPECT_EQ(Target(t, R"({"id":"a/b"})"), "/users/a%2Fb/orders");
  EXPECT_EQ(Target(t, R"({"id":"a?b#c"})"), "/users/a%3Fb%23c/orders");
  EXPECT_EQ(Target(t, R"({"id":"100%"})"), "/users/100%25/orders");
  // Sub-delims, ':' and '@' are valid in a segment (RFC 3986 pchar).
  EXPECT_EQ(Target(t, R"({"id":"a&b=c+d:e@f"})"), "/users/a&b=c+d:e@f/orders");
  // Non-ASCII: its UTF-8 bytes.
  EXPECT_EQ(Target(t, R"({"id":"é"})"), "/users/%C3%A9/orders");
  EXPECT_EQ(Target(t, R"({"id":"日本"})"), "/users/%E6%97%A5%E6%9C%AC/orders");
  EXPECT_EQ(Target(t, R"({"id":"-._~"})"), "/users/-._~/orders");
}

TEST(UrlTemplate, QueryValuesCannotAddParameters) {
  const char* t = "http://h/search?q={/q}&page={/page}";
  EXPECT_EQ(Target(t, R"({"q":"cats","page":2})"), "/search?q=cats&page=2");
  EXPECT_EQ(Target(t, R"({"q":"a&b=c","page":1})"),
            "/search?q=a%26b%3Dc&page=1");
  // '+' would read as a space in form decoding; ' ' and '#' are encoded.
  EXPECT_EQ(Target(t, R"({"q":"1+1 #x","page":1})"),
            "/search?q=1%2B1%20%23x&page=1");
  // '/' and '?' are valid in a query (RFC 3986 §3.4).
  EXPECT_EQ(Target(t, R"({"q":"a/b?c","page":1})"), "/search?q=a/b?c&page=1");
  EXPECT_EQ(Target(t, R"({"q":"ü","page":1})"), "/search?q=%C3%BC&page=1");
}

TEST(UrlTemplate, NumbersAndBooleansUseTheirJsonText) {
  const char* t = "http://h/v/{/v}?x={/v}";
  EXPECT_EQ(Target(t, R"({"v":42})"), "/v/42?x=42");
  EXPECT_EQ(Target(t, R"({"v":-3})"), "/v/-3?x=-3");
  EXPECT_EQ(Target(t, R"({"v":1.5})"), "/v/1.5?x=1.5");
  EXPECT_EQ(Target(t, R"({"v":1e100})"), "/v/1e+100?x=1e%2B100");
  EXPECT_EQ(Target(t, R"({"v":true})"), "/v/true?x=true");
  EXPECT_EQ(Target(t, R"({"v":18446744073709551615})"),
            "/v/18446744073709551615?x=18446744073709551615");
}

TEST(UrlTemplate, PointersReachNestedValuesAndTheItemItself) {
  EXPECT_EQ(Target("http://h/u/{/user/name}", R"({"user":{"name":"bo"}})"),
            "/u/bo");
  EXPECT_EQ(Target("http://h/u/{/list/1}", R"({"list":["a","b"]})"), "/u/b");
  EXPECT_EQ(Target("http://h/u/{/a~1b}", R"({"a/b":"x"})"), "/u/x");
  EXPECT_EQ(Target("http://h/u/{}", R"("alice")"), "/u/alice");
  // Part of a segment, and two placeholders in one.
  EXPECT_EQ(Target("http://h/u/v{/a}.json", R"({"a":"1"})"), "/u/v1.json");
  EXPECT_EQ(Target("http://h/{/a}{/b}", R"({"a":"x","b":"y"})"), "/xy");
}

TEST(UrlTemplate, MissingOrUnusableValuesAreItemErrors) {
  const char* t = "http://h/users/{/user_id}";
  EXPECT_EQ(Target(t, "{}"), "ERROR: url: field /user_id not found");
  EXPECT_EQ(Target(t, R"({"user_id":null})"),
            "ERROR: url: field /user_id is null; a URL value must be a "
            "string, a number or a boolean");
  EXPECT_TRUE(Contains(Target(t, R"({"user_id":{}})"), "is an object"));
  EXPECT_TRUE(Contains(Target(t, R"({"user_id":[1]})"), "is an array"));
  EXPECT_TRUE(Contains(Target("http://h/{}", "[1]"), "url: the item is"));
  // A whole segment may not vanish or climb.
  EXPECT_TRUE(Contains(Target(t, R"({"user_id":""})"), "is empty"));
  EXPECT_TRUE(Contains(Target(t, R"({"user_id":".."})"), "\"..\""));
  EXPECT_TRUE(Contains(Target(t, R"({"user_id":"."})"), "\".\""));
  // ...but within a segment, or in the query, they are plain text.
  EXPECT_EQ(Target("http://h/v{/a}", R"({"a":".."})"), "/v..");
  EXPECT_EQ(Target("http://h/s?q={/a}", R"({"a":""})"), "/s?q=");
}

TEST(UrlTemplate, ConnectionPartsAreFixed) {
  UrlTemplate t = MustParse("http://127.0.0.1:8080/x/{/id}");
  EXPECT_EQ(t.host(), "127.0.0.1");
  EXPECT_EQ(t.port(), 8080);
  EXPECT_EQ(t.host_header(), "127.0.0.1:8080");
  t = MustParse("http://Example.com/");
  EXPECT_EQ(t.host(), "Example.com");
  EXPECT_EQ(t.port(), 80);
  EXPECT_EQ(t.host_header(), "Example.com");
  t = MustParse("http://[::1]:9000/");
  EXPECT_EQ(t.host(), "::1");
  EXPECT_EQ(t.host_header(), "[::1]:9000");
  t = MustParse("http://h:80/");
  EXPECT_EQ(t.host_header(), "h");
  EXPECT_EQ(MustParse("HTTP://h/").port(), 80);
}

TEST(UrlTemplate, InvalidTemplatesSayWhy) {
  EXPECT_TRUE(Contains(ParseError("https://h/x"), "https is not supported"));
  EXPECT_TRUE(
      Contains(ParseError("ftp://h/x"), "scheme must be http, not 'ftp'"));
  EXPECT_TRUE(Contains(ParseError("http:///x"), "a host is required"));
  EXPECT_TRUE(Contains(ParseError("http:x"), "a host is required"));
  EXPECT_TRUE(Contains(ParseError("/relative/{/id}"), "not a valid"));
  EXPECT_TRUE(Contains(ParseError("not a url"), "not a valid absolute URL"));
  EXPECT_TRUE(Contains(ParseError("http://h/a b"), "not a valid"));
  EXPECT_TRUE(Contains(ParseError("http://u:p@h/"), "user info"));
  EXPECT_TRUE(Contains(ParseError("http://h/x#top"), "fragment"));
  EXPECT_TRUE(Contains(ParseError("http://h:0/"), "port must be 1..65535"));
  EXPECT_TRUE(Contains(ParseError("http://h:99999/"), "port must be"));
  EXPECT_TRUE(Contains(ParseError("http://h:65536/"), "port must be"));
  EXPECT_EQ(MustParse("http://h:65535/").port(), 65535);
  // Braces.
  EXPECT_EQ(ParseError("http://h/{/a"),
            "'{' at offset 9 is never closed with '}'");
  EXPECT_EQ(ParseError("http://h/a}"), "'}' at offset 10 has no matching '{'");
  EXPECT_TRUE(Contains(ParseError("http://h/{/a{/b}}"), "do not nest"));
  // Each placeholder is a JSON pointer.
  EXPECT_TRUE(Contains(ParseError("http://h/{user_id}"),
                       "placeholder {user_id} at offset 9"));
  EXPECT_TRUE(Contains(ParseError("http://h/{/a~2}"), "placeholder {/a~2}"));
  // Only the path and the query may vary.
  EXPECT_TRUE(
      Contains(ParseError("http://{/host}/x"), "in the scheme, host or port"));
  EXPECT_TRUE(Contains(ParseError("http://h:{/port}/x"),
                       "in the scheme, host or port"));
  EXPECT_TRUE(
      Contains(ParseError("{/s}://h/x"), "in the scheme, host or port"));
}

// --- retry schedule
// ------------------------------------------------------------

TEST(Retry, RetryableStatuses) {
  EXPECT_TRUE(IsRetryableStatus(429));
  EXPECT_TRUE(IsRetryableStatus(500));
  EXPECT_TRUE(IsRetryableStatus(503));
  EXPECT_TRUE(IsRetryableStatus(599));
  for (unsigned s : {200u, 301u, 400u, 404u, 408u, 422u, 600u}) {
    EXPECT_FALSE(IsRetryableStatus(s)) << s;
  }
}

TEST(Retry, BackoffGrowsExponentiallyWithinEqualJitterBounds) {
  const RetryPolicy p{3, 100ms, 10s};
  // Retry n waits in [d/2, d], d = 100ms * 2^(n-1).
  EXPECT_EQ(BackoffDelay(p, 1, 0.0), 50ms);
  EXPECT_EQ(BackoffDelay(p, 1, 0.999999), 99ms);
  EXPECT_EQ(BackoffDelay(p, 1, 1.0), 100ms);
  EXPECT_EQ(BackoffDelay(p, 2, 0.0), 100ms);
  EXPECT_EQ(BackoffDelay(p, 2, 1.0), 200ms);
  EXPECT_EQ(BackoffDelay(p, 3, 0.0), 200ms);
  EXPECT_EQ(BackoffDelay(p, 3, 0.5), 300ms);
  EXPECT_EQ(BackoffDelay(p, 4, 1.0), 800ms);
  milliseconds previous{0};
  for (int n = 1; n <= 7; ++n) {
    EXPECT_EQ(BackoffDelay(p, n, 0.0), 50ms * (1 << (n - 1))) << n;
    EXPECT_GT(BackoffDelay(p, n, 0.0), previous);
    previous = BackoffDelay(p, n, 0.0);
  }
}

TEST(Retry, BackoffIsCapped) {
  const RetryPolicy p{10, 100ms, 10s};
  // 100ms * 2^7 = 12.8s > 10s: from retry 8 on, d is the cap.
  EXPECT_EQ(BackoffDelay(p, 8, 0.0), 5s);
  EXPECT_EQ(BackoffDelay(p, 8, 1.0), 10s);
  EXPECT_EQ(BackoffDelay(p, 10, 1.0), 10s);
  // No overflow however large the retry number.
  EXPECT_EQ(BackoffDelay(p, 1'000'000, 1.0), 10s);
  EXPECT_EQ(BackoffDelay({3, 10min, 10min}, 60, 1.0), 10min);
  // A base above the cap is the cap; zero means no waiting.
  EXPECT_EQ(BackoffDelay({3, 20s, 10s}, 1, 1.0), 10s);
  EXPECT_EQ(BackoffDelay({3, 0ms, 10s}, 5, 1.0), 0ms);
  // Out-of-range fractions are clamped into [0, 1].
  EXPECT_EQ(BackoffDelay(p, 1, -3.0), 50ms);
  EXPECT_EQ(BackoffDelay(p, 1, 7.0), 100ms);
}

TEST(Retry, SeededJitterIsReproducibleAndSpreads) {
  Jitter a(42), b(42), c(43);
  std::vector<double> va, vc;
  for (int i = 0; i < 1000; ++i) {
    const double x = a.Next();
    EXPECT_EQ(x, b.Next());
    EXPECT_GE(x, 0.0);
    EXPECT_LT(x, 1.0);
    va.push_back(x);
    vc.push_back(c.Next());
  }
  EXPECT_NE(va, vc);
  // Delays drawn with it stay in [d/2, d] and use the whole range.
  const RetryPolicy p{3, 100ms, 10s};
  Jitter j(7);
  std::set<milliseconds::rep> seen;
  milliseconds lo = 1h, hi = 0ms;
  for (int i = 0; i < 2000; ++i) {
    const milliseconds d = BackoffDelay(p, 3, j.Next());
    ASSERT_GE(d, 200ms);
    ASSERT_LE(d, 400ms);
    lo = std::min(lo, d);
    hi = std::max(hi, d);
    seen.insert(d.count());
  }
  EXPECT_LT(lo, 210ms);
  EXPECT_GT(hi, 390ms);
  EXPECT_GT(seen.size(), 150u);
}

TEST(Retry, RetryAfterOverridesTheBackoffUpToTheCap) {
  const RetryPolicy p{3, 100ms, 10s};
  EXPECT_EQ(RetryDelay(p, 1, 1s, 0.5), 1s);
  EXPECT_EQ(RetryDelay(p, 1, 0ms, 0.5), 0ms);
  EXPECT_EQ(RetryDelay(p, 3, 60s, 0.5), 10s);
  EXPECT_EQ(RetryDelay(p, 2, std::nullopt, 0.0), 100ms);
  EXPECT_EQ(RetryDelay({3, 100ms, 2s}, 1, 5s, 0.0), 2s);
}

TEST(Retry, RetryAfterSeconds) {
  const auto now = std::chrono::system_clock::now();
  EXPECT_EQ(ParseRetryAfter("1", now), 1s);
  EXPECT_EQ(ParseRetryAfter("0", now), 0s);
  EXPECT_EQ(ParseRetryAfter(" 120\t", now), 120s);
  EXPECT_EQ(ParseRetryAfter("007", now), 7s);
  // Absurd values saturate at a day instead of overflowing.
  EXPECT_EQ(ParseRetryAfter("99999999999999999999999", now), 24h);
}

TEST(Retry, RetryAfterHttpDateInAllThreeForms) {
  using namespace std::chrono;
  const system_clock::time_point now = sys_days(2024y / January / 1) + 0s;
  EXPECT_EQ(ParseRetryAfter("Mon, 01 Jan 2024 00:00:05 GMT", now), 5s);
  EXPECT_EQ(ParseRetryAfter("Tue, 02 Jan 2024 00:00:00 GMT", now), 24h);
  EXPECT_EQ(ParseRetryAfter("Monday, 01-Jan-24 00:00:10 GMT", now), 10s);
  EXPECT_EQ(ParseRetryAfter("Mon Jan  1 00:00:07 2024", now), 7s);
  EXPECT_EQ(ParseRetryAfter("Mon Jan 01 00:01:00 2024", now), 1min);
  // A date in the past means "now".
  EXPECT_EQ(ParseRetryAfter("Sun, 06 Nov 1994 08:49:37 GMT", now), 0s);
  EXPECT_EQ(ParseRetryAfter("Sunday, 06-Nov-94 08:49:37 GMT", now), 0s);
  // Fractions of a second round up, so the wait is never too short.
  EXPECT_EQ(ParseRetryAfter("Mon, 01 Jan 2024 00:00:05 GMT", now + 1ms),
            4999ms);
  // An RFC 850 year more than 50 years ahead is the previous century.
  EXPECT_EQ(ParseRetryAfter("Tuesday, 01-Jan-80 00:00:00 GMT", now), 0s);
  // A year ahead: 2025, not 1925 (and saturated at a day).
  EXPECT_EQ(ParseRetryAfter("Wednesday, 01-Jan-25 00:00:00 GMT", now), 24h);
}

TEST(Retry, RetryAfterGarbageIsIgnored) {
  const auto now = std::chrono::system_clock::now();
  for (const char* bad :
       {"", "   ", "-1", "1.5", "+3", "soon", "1s", "0x10", "Mon, 01 Jan 2024",
        "Mon, 31 Feb 2024 00:00:00 GMT", "Mon, 01 Jan 2024 24:00:00 GMT",
        "Mon, 01 Jan 2024 00:00:00 gmt", "Mon, 01 Foo 2024 00:00:00 GMT",
        "Mon, 1 Jan 2024 00:00:00 GMT", "Mon, 01 Jan 2024 00:00:00 GMT x"}) {
    EXPECT_EQ(ParseRetryAfter(bad, now), std::nullopt) << "'" << bad << "'";
  }
}

// --- config validation
// -----------------------------------------------------------

config::ProcessorSpec Spec(std::string_view params) {
  return {"http", json::parse(params)};
}

std::vector<std::string> Errors(std::string_view params) {
  std::vector<std::string> out;
  for (const auto& e : ValidateProcessorSpec(Spec(params))) {
    out.push_back(e.path + ": " + e.message);
  }
  return out;
}

std::string OneError(std::string_view params) {
  auto errors = Errors(params);
  EXPECT_EQ(errors.size(), 1u) << params;
  std::string all;
  for (const auto& e : errors) all += e + "\n";
  return errors.size() == 1 ? errors[0] : all;
}

TEST(HttpConfig, MinimalAndFullSpecsAreValid) {
  EXPECT_EQ(Errors(R"({"url":"http://127.0.0.1:9000/x"})"),
            std::vector<std::string>{});
  EXPECT_EQ(Errors(R"({"url":"http://api.internal/users/{/id}?v={/v}",
                       "method":"get", "headers":{"Authorization":"Bearer x",
                       "X-Trace":"1"}, "timeout":"2s", "retries":0,
                       "backoff":"50ms", "max_backoff":"1s",
                       "result_field":"/user"})"),
            std::vector<std::string>{});
  EXPECT_EQ(Errors(R"({"url":"http://h/","retries":10,"backoff":0,
                       "max_backoff":0,"timeout":"10m"})"),
            std::vector<std::string>{});
  auto p = MakeProcessor(Spec(R"({"url":"http://127.0.0.1:9/"})"));
  ASSERT_TRUE(p.ok());
  EXPECT_TRUE(p.value()->io_bound());
}

TEST(HttpConfig, UrlErrors) {
  EXPECT_EQ(OneError("{}"), "url: is required");
  EXPECT_EQ(OneError(R"({"url":5})"), "url: must be a string, not a number");
  EXPECT_TRUE(Contains(OneError(R"({"url":"https://h/"})"),
                       "url: https is not supported yet"));
  EXPECT_TRUE(Contains(OneError(R"({"url":"http://h/{/a"})"),
                       "url: '{' at offset 9 is never closed"));
  EXPECT_FALSE(MakeProcessor(Spec(R"({"url":"https://h/"})")).ok());
}

TEST(HttpConfig, ParamErrors) {
  const std::string url = R"("url":"http://h/",)";
  auto with = [&](std::string rest) { return "{" + url + rest + "}"; };
  EXPECT_TRUE(Contains(OneError(with(R"("method":"FETCH")")),
                       "method: unknown method 'FETCH' (expected one of: GET, "
                       "POST, PUT, PATCH, DELETE)"));
  EXPECT_TRUE(Contains(OneError(with(R"("method":"HEAD")")), "method:"));
  EXPECT_TRUE(
      Contains(OneError(with(R"("headers":["a"])")), "headers: must be a map"));
  EXPECT_EQ(OneError(with(R"("headers":{"X-N":3})")),
            "headers[\"X-N\"]: must be a string (quote it), not a number");
  EXPECT_TRUE(Contains(OneError(with(R"("headers":{"Content-Length":"3"})")),
                       "is managed by the http processor"));
  EXPECT_TRUE(Contains(OneError(with(R"("headers":{"connection":"close"})")),
                       "is managed by the http processor"));
  EXPECT_TRUE(Contains(OneError(with(R"("headers":{"Bad Name":"x"})")),
                       "is not a valid header name"));
  EXPECT_TRUE(Contains(OneError(with(R"("headers":{"X":"a\r\nEvil: 1"})")),
                       "must not contain CR, LF or NUL"));
  EXPECT_EQ(OneError(with(R"("timeout":"0")")), "timeout: must be >= 1ms");
  EXPECT_EQ(OneError(with(R"("timeout":"2h")")), "timeout: must be <= 10m");
  EXPECT_TRUE(Contains(OneError(with(R"("timeout":"30")")),
                       "timeout: invalid duration"));
  EXPECT_TRUE(Contains(OneError(with(R"("timeout":true)")),
                       "timeout: must be a duration"));
  EXPECT_EQ(OneError(with(R"("retries":-1)")),
            "retries: must be between 0 and 10");
  EXPECT_EQ(OneError(with(R"("retries":11)")),
            "retries: must be between 0 and 10");
  EXPECT_EQ(OneError(with(R"("retries":"3")")),
            "retries: must be an integer, not a string");
  EXPECT_EQ(OneError(with(R"("retries":1.5)")),
            "retries: must be an integer, not a number");
  EXPECT_EQ(OneError(with(R"("backoff":"2s","max_backoff":"1s")")),
            "backoff: must be <= max_backoff (1s)");
  EXPECT_EQ(OneError(with(R"("backoff":"20s")")),
            "backoff: must be <= max_backoff (10s)");
  EXPECT_TRUE(Contains(OneError(with(R"("result_field":"user")")),
                       "result_field: a JSON pointer must"));
  EXPECT_TRUE(Contains(OneError(with(R"("urls":"x")")),
                       "urls: unknown key (expected "
                       "one of: url, method, headers, "
                       "timeout, retries, backoff, "
                       "max_backoff, result_field)"));
}

TEST(HttpConfig, EveryProblemIsReported) {
  EXPECT_EQ(Errors(R"({"url":"ftp://h","method":"X","retries":99,
                       "timeout":"0"})")
                .size(),
            4u);
}

// --- processing without a peer
// ------------------------------------------------------

// A port on 127.0.0.1 that nothing listens on (bound, then released).
std::uint16_t ClosedPort() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  EXPECT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  socklen_t len = sizeof addr;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  ::close(fd);
  return ntohs(addr.sin_port);
}

TEST(HttpProcessor, ItemsTheUrlCannotUseFailWithoutARequest) {
  auto p = MakeProcessor(Spec(R"({"url":"http://127.0.0.1:9/u/{/id}"})"));
  ASSERT_TRUE(p.ok());
  Outcome o = p.value()->Process(json::parse(R"({"name":"x"})"));
  ASSERT_EQ(o.kind, Outcome::kError);
  EXPECT_EQ(o.error, "http: url: field /id not found");
}

TEST(HttpProcessor, RefusedConnectionIsRetriedThenNamed) {
  const std::uint16_t port = ClosedPort();
  const std::string addr = "127.0.0.1:" + std::to_string(port);
  auto once =
      MakeProcessor(Spec(R"({"url":"http://)" + addr + R"(/x","retries":0})"));
  ASSERT_TRUE(once.ok());
  Outcome o = once.value()->Process(json::parse("{}"));
  ASSERT_EQ(o.kind, Outcome::kError);
  EXPECT_EQ(o.error, "http: connect to " + addr +
                         ": connection refused after 1 attempt");

  // 3 retries at 40ms base: waits of >= 20 + 40 + 80 ms between 4 attempts.
  auto retried = MakeProcessor(Spec(R"({"url":"http://)" + addr +
                                    R"(/x","retries":3,"backoff":"40ms"})"));
  const auto start = std::chrono::steady_clock::now();
  o = retried.value()->Process(json::parse("{}"));
  const auto took = std::chrono::steady_clock::now() - start;
  ASSERT_EQ(o.kind, Outcome::kError);
  EXPECT_EQ(o.error, "http: connect to " + addr +
                         ": connection refused after 4 attempts");
  EXPECT_GE(took, 140ms);
  EXPECT_LT(took, 5s);
}

TEST(HttpProcessor, UnresolvableHostIsAConnectionError) {
  auto p = MakeProcessor(Spec(
      R"({"url":"http://sluice-test.invalid/x","retries":0,"timeout":"5s"})"));
  ASSERT_TRUE(p.ok());
  Outcome o = p.value()->Process(json::parse("{}"));
  ASSERT_EQ(o.kind, Outcome::kError);
  EXPECT_TRUE(Contains(o.error, "http: resolve sluice-test.invalid: "));
  EXPECT_TRUE(Contains(o.error, "after 1 attempt"));
}

}  // namespace
}  // namespace sluice::processors
