// Hostile input against the real server (auth on): oversized headers,
// bodies and WebSocket frames; deep JSON nesting (bounded at 128 levels:
// 400 invalid_json with the offset); invalid UTF-8; huge numbers; path
// tricks that must never reach another route's content; wrong methods (405
// with an Allow header that tells the truth); missing or wrong tokens (401
// on every /v1 route, WebSocket upgrades included). Each request that must
// be refused is checked to change nothing, and the server must stay up with
// its connections back to baseline afterwards.
#include <gtest/gtest.h>

#include <cmath>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "load_util.hpp"

namespace sluice::load {
namespace {

using nlohmann::json;

constexpr const char* kToken = "tok-a";
constexpr std::size_t kMaxBody = 65536;

const Headers& Auth() {
  static const Headers headers = {{"Authorization", "Bearer tok-a"}};
  return headers;
}

// A raw response split into status, lower-cased headers and body.
struct Raw {
  int status = 0;
  std::map<std::string, std::string> headers;
  std::string body;
  std::string text;
};

Raw ParseRaw(const std::string& text) {
  Raw r;
  r.text = text;
  r.status = itest::RawStatus(text);
  const auto end = text.find("\r\n\r\n");
  if (end == std::string::npos) return r;
  r.body = text.substr(end + 4);
  std::size_t pos = text.find("\r\n");
  while (pos != std::string::npos && pos < end) {
    const std::size_t next = text.find("\r\n", pos + 2);
    std::string line = text.substr(pos + 2, next - pos - 2);
    if (auto colon = line.find(':'); colon != std::string::npos) {
      std::string key = line.substr(0, colon);
      for (char& c : key) c = static_cast<char>(std::tolower(c));
      std::string value = line.substr(colon + 1);
      while (!value.empty() && value.front() == ' ') value.erase(0, 1);
      r.headers[key] = value;
    }
    pos = next;
  }
  return r;
}

// Sends `request` as it is on a fresh connection; reads the answer until the
// server closes (every request here says Connection: close, or is one the
// server closes after).
Raw RawRequest(std::uint16_t port, const std::string& request) {
  return ParseRaw(itest::RawExchange(port, request, 10s));
}

std::string Get(const std::string& target, bool auth = true) {
  return "GET " + target + " HTTP/1.1\r\nHost: x\r\n" +
         (auth ? std::string("Authorization: Bearer ") + kToken + "\r\n" : "") +
         "Connection: close\r\n\r\n";
}

// Every case shares one server: starting one costs a fraction of a second
// and the cases leave nothing behind (each checks that).
class HostileInputTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    child_ = std::make_unique<Child>(
        R"(
server:
  io_threads: 2
  max_body_bytes: 65536
  max_header_bytes: 16KiB
  idle_timeout: 10s
  shutdown_grace: 2s
  auth: { tokens_env: SLUICE_LOAD_TOKENS }
jobs: { max_pending_items: 100000 }
pipelines:
  - name: echo
    stages:
      - { name: pass, processor: passthrough, workers: 2 }
  - name: slow
    stages:
      - { name: sleep, processor: { type: delay, duration: 200ms }, workers: 1 }
)",
        std::vector<std::pair<std::string, std::string>>{
            {"SLUICE_LOAD_TOKENS", "tok-a, tok-b"}});
  }
  static void TearDownTestSuite() { child_.reset(); }

  void SetUp() override {
    ASSERT_NE(child_->port(), 0) << child_->log();
    port_ = child_->port();
    // Connections of an earlier case may still be lingering (1 s).
    PollUntil([&] { return child_->Sample().fds <= BaselineFds(); }, 3s);
    fds_before_ = child_->Sample().fds;
    jobs_before_ = JobCount();
  }

  void TearDown() override {
    // The server is still serving, and every connection of this case has
    // been closed (the server lingers up to 1 s after an error response).
    EXPECT_TRUE(child_->running());
    EXPECT_EQ(itest::Http(port_, "GET", "/healthz").status, 200);
    EXPECT_TRUE(
        PollUntil([&] { return child_->Sample().fds <= fds_before_; }, 10s))
        << "fds before " << fds_before_ << ", now " << child_->Sample().fds;
  }

  static long BaselineFds() {
    static const long fds = child_->Sample().fds;
    return fds;
  }

  std::size_t JobCount() {
    HttpResponse r =
        itest::Http(port_, "GET", "/v1/jobs?limit=1000", "", Auth());
    return r.status == 200 ? r.json()["jobs"].size() : 0;
  }

  // A POST of `body` to /v1/jobs?pipeline=echo (with the token).
  HttpResponse Post(const std::string& body,
                    const std::string& content_type = "application/json") {
    return itest::Http(
        port_, "POST", "/v1/jobs?pipeline=echo&wait=10", body,
        {{"Authorization", "Bearer tok-a"}, {"Content-Type", content_type}});
  }

  static std::unique_ptr<Child> child_;
  std::uint16_t port_ = 0;
  long fds_before_ = 0;
  std::size_t jobs_before_ = 0;
};

std::unique_ptr<Child> HostileInputTest::child_;

// ---- sizes -----------------------------------------------------------------

TEST_F(HostileInputTest, OversizedHeaderBlocksGet431) {
  // One 64 KiB header value.
  Raw big = RawRequest(port_, "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " +
                                  std::string(std::size_t{64} * 1024, 'a') +
                                  "\r\n\r\n");
  EXPECT_EQ(big.status, 431) << big.text.substr(0, 200);
  EXPECT_NE(big.body.find("header_too_large"), std::string::npos);
  // Thousands of small headers adding up to more than the limit.
  std::string many = "GET /healthz HTTP/1.1\r\nHost: x\r\n";
  for (int i = 0; i < 3000; ++i) many += "X-H" + std::to_string(i) + ": v\r\n";
  EXPECT_EQ(RawRequest(port_, many + "\r\n").status, 431);
  // A 64 KiB request target is part of the header block too.
  EXPECT_EQ(
      RawRequest(port_, Get("/" + std::string(std::size_t{64} * 1024, 'a')))
          .status,
      431);
  // A request line that never ends.
  EXPECT_EQ(
      RawRequest(port_, "GET /" + std::string(std::size_t{100} * 1024, 'b'))
          .status,
      431);
}

TEST_F(HostileInputTest, OversizedBodiesGet413BeforeTheyAreRead) {
  // Content-Length over the limit: refused from the header alone, so the
  // answer comes although no byte of the body is ever sent.
  RawSocket s(port_);
  ASSERT_TRUE(s.ok());
  ASSERT_TRUE(s.Send(
      "POST /v1/jobs?pipeline=echo HTTP/1.1\r\nHost: x\r\n"
      "Authorization: Bearer tok-a\r\nContent-Length: 10485760\r\n\r\n"));
  Raw r = ParseRaw(s.ReadAll(5s));
  EXPECT_EQ(r.status, 413) << r.text;
  EXPECT_NE(r.body.find("payload_too_large"), std::string::npos);

  // A chunked body that grows past the limit while it is read.
  std::string chunked =
      "POST /v1/jobs?pipeline=echo HTTP/1.1\r\nHost: x\r\n"
      "Authorization: Bearer tok-a\r\nTransfer-Encoding: chunked\r\n\r\n";
  const std::string chunk(8192, ' ');
  for (int i = 0; i < 12; ++i) chunked += "2000\r\n" + chunk + "\r\n";
  chunked += "0\r\n\r\n";
  EXPECT_EQ(RawRequest(port_, chunked).status, 413);

  // A body of exactly the limit is fine (it is valid JSON: an array padded
  // with spaces).
  std::string exact = "[1" + std::string(kMaxBody - 3, ' ') + "]";
  ASSERT_EQ(exact.size(), kMaxBody);
  EXPECT_EQ(Post(exact).status, 200);
  EXPECT_EQ(Post(exact + " ").status, 413);
  EXPECT_EQ(JobCount(), jobs_before_ + 1);  // only the one that fit
}

TEST_F(HostileInputTest, OversizedWebSocketFramesClose1009) {
  // By hand: a frame header announcing one byte more than the limit and a
  // few bytes of it. (A library client writing the whole oversized frame
  // may be cut off mid-write by the server's close and never read the
  // 1009: the server fails the connection as soon as it reads the header.)
  {
    // Ingestion: frames up to server.max_body_bytes.
    RawSocket s(port_);
    ASSERT_EQ(RawWsUpgrade(s, "/v1/stream?pipeline=echo", Auth()).first, 101);
    s.Send(WsFrameHeader(0x1, kMaxBody + 1) + R"({"item":")");
    EXPECT_EQ(ReadWsCloseCode(s, 10s), 1009);
  }
  {
    // Job stream: the server reads only control frames there (64 KiB max).
    HttpResponse job = itest::Http(port_, "POST", "/v1/jobs?pipeline=slow",
                                   RangeJson(20), Auth());
    ASSERT_EQ(job.status, 202);
    RawSocket s(port_);
    ASSERT_EQ(
        RawWsUpgrade(
            s, "/v1/jobs/" + job.json()["id"].get<std::string>() + "/stream",
            Auth())
            .first,
        101);
    s.Send(WsFrameHeader(0x1, 64 * 1024 + 1) + "yyyy");
    EXPECT_EQ(ReadWsCloseCode(s, 10s), 1009);
  }
  // And the same through a library client, with a frame over the limit sent
  // whole: the stream ends (1009 when the client gets to read it).
  WsClient ingest(port_, "/v1/stream?pipeline=echo", Auth());
  ASSERT_EQ(ingest.handshake_status(), 101);
  ingest.Send(R"({"item":")" + std::string(kMaxBody + 1024, 'x') + R"("})");
  while (ingest.Read(10s)) {
  }
  EXPECT_FALSE(ingest.timed_out());
  const int code = ingest.received_close_code();
  EXPECT_TRUE(code == 1009 || (code == -1 && !ingest.read_error().empty()))
      << code << " " << ingest.read_error();
  // The client was told; the server's log is for the unexpected, so three
  // hostile frames leave no line there.
  EXPECT_EQ(child_->log().find("exceeded"), std::string::npos) << child_->log();
}

// ---- JSON ------------------------------------------------------------------

std::string Nested(int depth) {
  return std::string(static_cast<std::size_t>(depth), '[') + "1" +
         std::string(static_cast<std::size_t>(depth), ']');
}

TEST_F(HostileInputTest, DeepNestingIsBoundedWith400AndTheOffset) {
  // 128 levels: the whole body is one array of depth 128 (an item of depth
  // 127) and is accepted.
  HttpResponse ok = Post(Nested(128));
  EXPECT_EQ(ok.status, 200) << ok.body;

  for (const auto& [body, offset] :
       std::vector<std::pair<std::string, std::size_t>>{
           {Nested(129), 128},
           {std::string(60000, '['), 128},  // would exhaust a stack
           {"[" + std::string(200, '{'), 128},
       }) {
    HttpResponse r = Post(body);
    ASSERT_EQ(r.status, 400) << body.substr(0, 40);
    json e = r.json()["error"];
    EXPECT_EQ(e["code"], "invalid_json");
    EXPECT_EQ(e["offset"], offset) << e.dump();
    EXPECT_NE(e["message"].get<std::string>().find("nesting deeper than 128"),
              std::string::npos)
        << e.dump();
  }
  // Objects: each level is `{"a":`, 5 bytes; the 129th brace is too deep.
  std::string objects;
  for (int i = 0; i < 200; ++i) objects += R"({"a":)";
  HttpResponse r = Post("[" + objects);
  ASSERT_EQ(r.status, 400);
  EXPECT_EQ(r.json()["error"]["offset"], 1 + 127 * 5);

  // NDJSON: the offset counts from the start of the body.
  const std::string first = "{\"ok\":1}\n";
  r = Post(first + Nested(200) + "\n", "application/x-ndjson");
  ASSERT_EQ(r.status, 400);
  EXPECT_EQ(r.json()["error"]["offset"], first.size() + 128);

  // Brackets inside strings do not count.
  EXPECT_EQ(Post("[\"" + std::string(1000, '[') + "\"]").status, 200);
  EXPECT_EQ(JobCount(), jobs_before_ + 2);

  // On an ingestion stream a too-deep frame is an error frame and the
  // stream goes on.
  WsClient ws(port_, "/v1/stream?pipeline=echo", Auth());
  ASSERT_EQ(ws.handshake_status(), 101);
  ws.Send(R"({"item":)" + Nested(200) + "}");
  ws.Send(R"({"item":7,"end":true})");
  auto frames = ws.ReadAll(20s);
  ASSERT_EQ(frames.size(), 3u);
  EXPECT_EQ(frames[0]["type"], "error");
  EXPECT_EQ(frames[0]["code"], "invalid_json");
  EXPECT_EQ(frames[1]["value"], 7);
  EXPECT_EQ(frames[2]["type"], "done");
  EXPECT_EQ(frames[2]["job"]["items"]["in"], 1);
  EXPECT_EQ(ws.close_code(), 1000);
}

TEST_F(HostileInputTest, InvalidUtf8Gets400) {
  const std::vector<std::string> bad = {
      "[\"\xff\"]",                  // never valid in UTF-8
      "[\"\xc0\xaf\"]",              // overlong encoding of '/'
      "[\"\xed\xa0\x80\"]",          // an encoded surrogate (CESU-8)
      "[\"\xe2\x82\"]",              // truncated sequence
      "[\"\xf4\x90\x80\x80\"]",      // beyond U+10FFFF
      R"(["\ud800"])",               // a lone surrogate escape
      R"(["\udc00\ud800"])",         // surrogates in the wrong order
      std::string("[\"a\0b\"]", 7),  // a raw control character
  };
  for (const std::string& body : bad) {
    HttpResponse r = Post(body);
    EXPECT_EQ(r.status, 400) << json(body).dump(-1, ' ', true) << " " << r.body;
    if (r.status == 400) {
      EXPECT_EQ(r.json()["error"]["code"], "invalid_json");
      EXPECT_TRUE(r.json()["error"].contains("offset"));
    }
  }
  EXPECT_EQ(JobCount(), jobs_before_);

  // Valid multi-byte text round-trips unchanged.
  const std::string text = "h\xc3\xa9llo \xe2\x82\xac \xf0\x9f\x98\x80";
  HttpResponse ok = Post(json::array({text}).dump());
  ASSERT_EQ(ok.status, 200);
  const std::string id = ok.json()["id"];
  HttpResponse results =
      itest::Http(port_, "GET", "/v1/jobs/" + id + "/results", "", Auth());
  EXPECT_EQ(results.json()["results"][0]["value"], text);

  // A WebSocket text frame that is not UTF-8 closes the stream with 1007.
  WsClient ws(port_, "/v1/stream?pipeline=echo", Auth());
  ASSERT_EQ(ws.handshake_status(), 101);
  ws.Send("{\"item\":\"\xff\"}");
  while (ws.Read(10s)) {
  }
  EXPECT_EQ(ws.received_close_code(), 1007);
}

TEST_F(HostileInputTest, HugeNumbersAreRefusedOrKeptNeverNulled) {
  // Each number is either refused (400 invalid_json) or accepted and echoed
  // as the same finite number (to double precision); never silently turned
  // into null or infinity.
  struct Case {
    std::string text;
    bool accepted;  // what the server does (and the contract allows)
  };
  const std::vector<Case> cases = {
      {"1e400", false},                          // overflows a double
      {"-1e400", false},                         // idem
      {"1" + std::string(400, '0'), false},      // a 401-digit integer
      {"123456789012345678901234567890", true},  // beyond 64 bits: a double
      {"18446744073709551615", true},            // 2^64-1, exact
      {"18446744073709551616", true},            // 2^64: a double
      {"-9223372036854775808", true},            // -2^63, exact
      {"-9223372036854775809", true},            // a double
      {"1e-400", true},                          // underflows to 0
      {"4.9e-324", true},                        // the smallest subnormal
      {"1.7976931348623157e308", true},          // the largest double
  };
  for (const Case& c : cases) {
    HttpResponse r = Post("[" + c.text + "]");
    if (!c.accepted) {
      EXPECT_EQ(r.status, 400) << c.text << ": " << r.body;
      if (r.status == 400) {
        EXPECT_EQ(r.json()["error"]["code"], "invalid_json") << r.body;
      }
      continue;
    }
    ASSERT_EQ(r.status, 200) << c.text << ": " << r.body;
    const std::string id = r.json()["id"];
    json results =
        itest::Http(port_, "GET", "/v1/jobs/" + id + "/results", "", Auth())
            .json()["results"];
    ASSERT_EQ(results.size(), 1u);
    const json& v = results[0]["value"];
    ASSERT_TRUE(v.is_number()) << c.text << " came back as " << v.dump();
    const double want = std::strtod(c.text.c_str(), nullptr);
    const double got = v.get<double>();
    EXPECT_TRUE(std::isfinite(got)) << c.text;
    EXPECT_NEAR(got, want, std::abs(want) * 1e-15) << c.text << " -> " << v;
    if (c.text == "18446744073709551615" || c.text == "-9223372036854775808") {
      EXPECT_EQ(v.dump(), c.text);  // integers that fit stay exact
    }
  }

  // Numbers in the query are bounded too.
  for (const char* target : {"/v1/jobs?limit=99999999999999999999999",
                             "/v1/jobs?limit=1e3", "/v1/jobs?limit=-1"}) {
    EXPECT_EQ(itest::Http(port_, "GET", target, "", Auth()).status, 400)
        << target;
  }
  for (const char* wait : {"1e400", "300.001", "-1", "nan", "inf", "0x10"}) {
    HttpResponse r = itest::Http(
        port_, "POST", std::string("/v1/jobs?pipeline=echo&wait=") + wait,
        "[1]", Auth());
    EXPECT_EQ(r.status, 400) << wait << " " << r.body;
  }
}

// A number too large for a double is malformed input like any other: its
// error's offset (API contract: "the 0-based byte offset of the character
// where parsing failed") points at the number, not at the start of the body.
TEST_F(HostileInputTest, NumberOverflowOffsetPointsAtTheNumber) {
  HttpResponse r = Post("[1, 2, 1e400]");
  ASSERT_EQ(r.status, 400) << r.body;
  EXPECT_EQ(r.json()["error"]["code"], "invalid_json");
  EXPECT_EQ(r.json()["error"]["offset"], 7) << r.body;
}

// ---- routes ----------------------------------------------------------------

// Markers of every route's content: a request answered with one of them
// reached that route.
bool LeaksARoute(const std::string& body) {
  for (const char* marker :
       {"sluice_build_info", R"("status":"ok")", R"("status":"ready")",
        "\"pipelines\":[", "\"jobs\":[", "\"results\":["}) {
    if (body.find(marker) != std::string::npos) return true;
  }
  return false;
}

TEST_F(HostileInputTest, PathTricksNeverReachAnotherRoute) {
  // A real job, so /v1/jobs/ID/... routes exist to be tricked into.
  HttpResponse job = Post("[1]");
  ASSERT_EQ(job.status, 200);
  const std::string id = job.json()["id"];
  const std::vector<std::string> targets = {
      "/v1/jobs/../metrics",
      "/v1/jobs/%2e%2e/metrics",
      "/v1/jobs/%2E%2E/%2E%2E/metrics",
      "/v1/jobs/..%2fmetrics",
      "/v1/jobs/..%2F..%2Fhealthz",
      "/v1/jobs/" + id + "/../../../metrics",
      "/v1/jobs/" + id + "/results/..",
      "/v1/jobs/" + id + "%2fresults",
      "/v1/jobs/" + id + "/results/",
      "/v1//jobs",
      "//v1/jobs",
      "/v1/jobs/",
      "/v1/./jobs",
      "/metrics/.",
      "/metrics/",
      "/metrics/..",
      "/v1/pipelines/../jobs",
      "/v1%2fjobs",
      "/v1/jobs%2f" + id,
      "/V1/JOBS",
      "/healthz%00",
      "/metrics%00.txt",
      "/v1/jobs%00",
      "/v1/jobs/%00",
      "/%2e%2e/%2e%2e/etc/passwd",
      "/../../etc/passwd",
      "/v1/jobs/" + std::string(8000, 'a'),
      "/" + std::string(10000, '/'),
      "*",
      "/metrics#fragment",
      "/v1\\jobs",
  };
  for (const std::string& target : targets) {
    Raw r = RawRequest(port_, Get(target));
    EXPECT_GE(r.status, 400) << target.substr(0, 80) << "\n" << r.text;
    EXPECT_LT(r.status, 500) << target.substr(0, 80) << "\n" << r.text;
    EXPECT_FALSE(LeaksARoute(r.body)) << target.substr(0, 80) << "\n" << r.body;
  }
  // A NUL byte in the request line itself: a malformed request.
  Raw nul = RawRequest(port_, std::string("GET /metr") + '\0' +
                                  "ics HTTP/1.1\r\nHost: x\r\n"
                                  "Connection: close\r\n\r\n");
  EXPECT_EQ(nul.status, 400) << nul.text;
  EXPECT_FALSE(LeaksARoute(nul.body));
  // A pipeline name that looks like a path names no pipeline.
  HttpResponse r = itest::Http(
      port_, "POST", "/v1/jobs?pipeline=..%2f..%2fecho", "[1]", Auth());
  EXPECT_EQ(r.status, 404);
  EXPECT_EQ(r.json()["error"]["code"], "unknown_pipeline");
  EXPECT_EQ(JobCount(), jobs_before_ + 1);
}

TEST_F(HostileInputTest, MalformedFramingGets400) {
  const std::string head =
      "POST /v1/jobs?pipeline=echo HTTP/1.1\r\nHost: x\r\n"
      "Authorization: Bearer tok-a\r\n";
  for (const std::string& framing : {
           std::string("Content-Length: 3\r\nContent-Length: 4\r\n\r\n[1]"),
           std::string("Content-Length: -1\r\n\r\n[1]"),
           std::string("Content-Length: 99999999999999999999999\r\n\r\n[1]"),
           std::string(
               "Transfer-Encoding: chunked\r\n\r\nzz\r\n[1]\r\n0\r\n\r\n"),
           std::string("Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
                       "3\r\n[1]\r\n0\r\n\r\n"),
       }) {
    Raw r = RawRequest(port_, head + framing);
    // 400 for framing Beast refuses; 413 where the length itself is over the
    // limit. Either way nothing is admitted (checked below).
    EXPECT_TRUE(r.status == 400 || r.status == 413) << framing << "\n"
                                                    << r.text;
  }
  EXPECT_EQ(RawRequest(port_, "GARBAGE\r\n\r\n").status, 400);
  const int version =
      RawRequest(port_, "GET / HTTP/9.9\r\nHost: x\r\n\r\n").status;
  EXPECT_GE(version, 400);
  EXPECT_LT(version, 500);
  EXPECT_EQ(JobCount(), jobs_before_);
}

TEST_F(HostileInputTest, WrongMethodsGet405WithATruthfulAllow) {
  const std::string job = "/v1/jobs/0123456789abcdef";
  struct Case {
    std::string method, target, allow;
  };
  const std::vector<Case> cases = {
      {"PUT", "/v1/jobs", "GET, HEAD, POST"},
      {"DELETE", "/v1/jobs", "GET, HEAD, POST"},
      {"PATCH", job, "GET, HEAD, DELETE"},
      {"POST", job, "GET, HEAD, DELETE"},
      {"PUT", job + "/results", "GET, HEAD"},
      {"DELETE", job + "/results", "GET, HEAD"},
      {"POST", "/v1/pipelines", "GET, HEAD"},
      {"POST", "/metrics", "GET, HEAD"},
      {"PUT", "/healthz", "GET, HEAD"},
      {"DELETE", "/readyz", "GET, HEAD"},
      {"OPTIONS", "/v1/jobs", "GET, HEAD, POST"},
      {"TRACE", "/metrics", "GET, HEAD"},
      {"FROB", "/v1/jobs", "GET, HEAD, POST"},
      {"POST", "/v1/stream", "GET"},
      {"HEAD", "/v1/stream", "GET"},
      {"DELETE", job + "/stream", "GET"},
  };
  for (const Case& c : cases) {
    Raw r = RawRequest(port_, c.method + " " + c.target +
                                  " HTTP/1.1\r\nHost: x\r\nAuthorization: "
                                  "Bearer tok-a\r\nContent-Length: 0\r\n"
                                  "Connection: close\r\n\r\n");
    EXPECT_EQ(r.status, 405) << c.method << " " << c.target << "\n" << r.text;
    EXPECT_EQ(r.headers["allow"], c.allow) << c.method << " " << c.target;
    if (c.method != "HEAD") {
      EXPECT_NE(r.body.find("method_not_allowed"), std::string::npos)
          << c.method << " " << c.target;
    }
  }
  // The Allow header tells the truth: every listed method gets something
  // other than 405 (a 404 for the unknown job is fine).
  HttpResponse created = Post("[1]");
  ASSERT_EQ(created.status, 200);
  const std::string real =
      "/v1/jobs/" + created.json()["id"].get<std::string>();
  for (const auto& [method, target] :
       std::vector<std::pair<std::string, std::string>>{
           {"GET", "/v1/jobs"},
           {"HEAD", "/v1/jobs"},
           {"GET", real},
           {"HEAD", real},
           {"DELETE", real},
           {"GET", real + "/results"},
           {"HEAD", "/metrics"},
           {"HEAD", "/v1/pipelines"}}) {
    EXPECT_NE(itest::Http(port_, method, target, "", Auth()).status, 405)
        << method << " " << target;
  }
}

// ---- tokens ----------------------------------------------------------------

TEST_F(HostileInputTest, EveryV1RouteNeedsAValidToken) {
  HttpResponse created = Post("[1]");
  ASSERT_EQ(created.status, 200);
  const std::string id = created.json()["id"];
  const std::size_t jobs = JobCount();
  struct Route {
    std::string method, target, body;
  };
  const std::vector<Route> routes = {
      {"GET", "/v1/jobs", ""},
      {"POST", "/v1/jobs?pipeline=echo", "[1]"},
      {"GET", "/v1/jobs/" + id, ""},
      {"HEAD", "/v1/jobs/" + id, ""},
      {"GET", "/v1/jobs/" + id + "/results", ""},
      {"GET", "/v1/jobs/" + id + "/stream", ""},
      {"GET", "/v1/pipelines", ""},
      {"GET", "/v1/stream?pipeline=echo", ""},
      {"GET", "/v1", ""},
      {"GET", "/v1/", ""},
      {"GET", "/v1/nope", ""},
      {"PUT", "/v1/jobs", ""},  // 401 before 405: a route reveals nothing
      {"DELETE", "/v1/jobs/" + id, ""},  // last: it would cancel
  };
  const std::vector<std::optional<std::string>> wrong = {
      std::nullopt,     "Bearer wrong", "Bearer ",       "Bearer",
      "Basic dG9rLWE6", "Bearer tok-",  "Bearer tok-ax", "Bearer tok-a,tok-b",
      "tok-a",          "Bearer  tok-a"};
  for (const Route& route : routes) {
    for (const auto& authorization : wrong) {
      Headers headers;
      if (authorization) headers.emplace_back("Authorization", *authorization);
      HttpResponse r =
          itest::Http(port_, route.method, route.target, route.body, headers);
      EXPECT_EQ(r.status, 401) << route.method << " " << route.target
                               << " with " << authorization.value_or("(none)");
      EXPECT_EQ(r.header("www-authenticate"), "Bearer realm=\"sluice\"");
    }
    // Both configured tokens work; the scheme is case-insensitive.
    for (const char* good : {"Bearer tok-a", "Bearer tok-b", "bearer tok-a"}) {
      HttpResponse r = itest::Http(port_, route.method, route.target,
                                   route.body, {{"Authorization", good}});
      EXPECT_NE(r.status, 401)
          << route.method << " " << route.target << " " << good;
    }
  }
  // WebSocket upgrades are refused before the upgrade.
  for (const std::string& target : {std::string("/v1/stream?pipeline=echo"),
                                    "/v1/jobs/" + id + "/stream"}) {
    WsClient none(port_, target);
    EXPECT_EQ(none.handshake_status(), 401) << target;
    WsClient bad(port_, target, {{"Authorization", "Bearer nope"}});
    EXPECT_EQ(bad.handshake_status(), 401) << target;
    WsClient good(port_, target, Auth());
    EXPECT_EQ(good.handshake_status(), 101) << target;
  }
  // Only the authorised POSTs (3) and the ingestion stream (1) made jobs.
  EXPECT_EQ(JobCount(), jobs + 4);
  // The probes and metrics stay open.
  for (const char* open : {"/healthz", "/readyz", "/metrics"}) {
    EXPECT_EQ(itest::Http(port_, "GET", open).status, 200) << open;
  }
}

// Default-level logs never hold a token (configured or presented), nor
// item content, whatever the client sends: good items, broken JSON, bad
// frames, oversized frames and wrong tokens, over HTTP and WebSocket.
TEST_F(HostileInputTest, LogsHoldNoTokenAndNoItemContent) {
  const std::string marker = "item-secret-7f3a";
  const std::string wrong = "wrong-secret-91c2";
  EXPECT_EQ(Post(R"([{"m":")" + marker + R"("}])").status, 200);
  EXPECT_EQ(Post(R"([{"m":")" + marker + R"("})").status, 400);
  EXPECT_EQ(Post(R"({"m":")" + marker + R"(\xZZ"})").status, 400);
  EXPECT_EQ(itest::Http(port_, "POST", "/v1/jobs?pipeline=echo", "[1]",
                        {{"Authorization", "Bearer " + wrong}})
                .status,
            401);
  {
    WsClient ws(port_, "/v1/stream?pipeline=echo", Auth());
    ASSERT_EQ(ws.handshake_status(), 101);
    ws.Send(R"({"items":[")" + marker + R"("]})");
    ws.Send(R"({"items":[")" + marker + R"("])");
    ws.Send(R"({"item":")" + marker + std::string(kMaxBody, 'x') + R"("})");
    while (ws.Read(5s)) {
    }
  }
  WsClient bad(port_, "/v1/stream?pipeline=echo",
               {{"Authorization", "Bearer " + wrong}});
  EXPECT_EQ(bad.handshake_status(), 401);
  // The server has had time to log whatever it would.
  EXPECT_EQ(itest::Http(port_, "GET", "/healthz").status, 200);
  const std::string log = child_->log();
  for (const std::string& secret :
       {std::string("tok-a"), std::string("tok-b"), wrong, marker}) {
    EXPECT_EQ(log.find(secret), std::string::npos)
        << "the log holds " << secret << ":\n"
        << log;
  }
}

// Spellings of a /v1 path that the router treats as that path — a
// percent-encoded "v1" (it decodes segments) or a leading "/./" (Boost.URL
// drops it) — must need the token too.
TEST_F(HostileInputTest, EquivalentV1PathsStillNeedAToken) {
  for (const char* target :
       {"/%761/jobs", "/%76%31/pipelines", "/v%31/jobs", "/%761/jobs?limit=1",
        "/./v1/jobs", "/./v1/pipelines"}) {
    HttpResponse r = itest::Http(port_, "GET", target);
    EXPECT_EQ(r.status, 401)
        << target << " answered " << r.status << ": " << r.body.substr(0, 120);
    EXPECT_FALSE(LeaksARoute(r.body)) << target;
  }
  HttpResponse post =
      itest::Http(port_, "POST", "/%761/jobs?pipeline=echo", "[1]");
  EXPECT_EQ(post.status, 401) << post.body;
  WsClient ws(port_, "/%761/stream?pipeline=echo");
  EXPECT_EQ(ws.handshake_status(), 401);
}

// HEAD gets the headers GET would, and never a body — also for errors,
// or a keep-alive client reads the body as the start of the next response.
TEST_F(HostileInputTest, HeadAnswersCarryNoBody) {
  for (const std::string& target :
       {std::string("/nope"), std::string("/v1/jobs/0123456789abcdef"),
        std::string("/v1/stream"), std::string("/healthz")}) {
    Raw r = RawRequest(port_, "HEAD " + target +
                                  " HTTP/1.1\r\nHost: x\r\nAuthorization: "
                                  "Bearer tok-a\r\nConnection: close\r\n\r\n");
    EXPECT_NE(r.status, 0) << target;
    EXPECT_EQ(r.body, "") << "HEAD " << target << " answered " << r.status
                          << " with a body";
  }
  // Without a token (401) too.
  Raw r = RawRequest(port_,
                     "HEAD /v1/jobs HTTP/1.1\r\nHost: x\r\n"
                     "Connection: close\r\n\r\n");
  EXPECT_EQ(r.status, 401);
  EXPECT_EQ(r.body, "") << "HEAD /v1/jobs answered 401 with a body";
  // What it breaks: two requests on one connection; the second answer must
  // be a 200 from /healthz.
  RawSocket s(port_);
  ASSERT_TRUE(s.ok());
  s.Send(
      "HEAD /nope HTTP/1.1\r\nHost: x\r\n\r\n"
      "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  const std::string both = s.ReadAll(5s);
  const auto second = both.find("\r\n\r\n");
  ASSERT_NE(second, std::string::npos) << both;
  EXPECT_EQ(itest::RawStatus(both.substr(second + 4)), 200)
      << "the second response was read as:\n"
      << both.substr(second + 4, 120);
}

}  // namespace
}  // namespace sluice::load
