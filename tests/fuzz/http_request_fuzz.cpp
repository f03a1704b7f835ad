// Fuzz target http_request_fuzz: the HTTP request path without a socket.
// Raw bytes go through Beast's request_parser<string_body> with the limits
// the server sets (service/http/session_impl.hpp), fed through a flat_buffer
// the way http::async_read_header / async_read do, and each complete request
// goes where HttpSession sends it: CheckFraming, then Router::CheckHeader
// once the header is in, then Router::HandleUpgrade (websocket::is_upgrade) or
// Router::Handle. Several requests in one input are pipelined on one keep-alive
// "connection" until a response closes it, an upgrade takes it over, or
// the input ends.
//
// Input: byte 0 picks the connection, the rest is what the client sends.
//   bit 0     auth on (the router accepts "Authorization: Bearer fuzz-token")
//   bits 1-3  network read size: all at once, or 1, 2, 3, 7, 16, 64, 512
//             bytes per read (the parser sees every split point)
//   bit 4     small limits (1 KiB header, 1 KiB body) instead of the
//             server defaults (16 KiB, 16 MiB), so both limits are reached
// Every "$JOB" in the input becomes the id of a live job (an open ingestion
// stream on pipeline echo), so the job routes are reachable.
//
// Invariants: nothing throws or crashes; every response (including the
// 400/413/431 a session sends for a request it cannot read) passes
// fuzz::CheckResponse, and one to HEAD has no body; a 401 only with auth
// on; an accepted upgrade has its job (and, for /v1/stream, its feed).
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/websocket/rfc6455.hpp>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <exception>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "fuzz_support.hpp"
#include "service/engine/engine.hpp"
#include "service/http/framing.hpp"
#include "service/jobs/job.hpp"

namespace {

namespace beast = boost::beast;
namespace bhttp = sluice::http::bhttp;
using sluice::fuzz::Describe;

constexpr std::string_view kConfig = R"(
server: { listen: "127.0.0.1:0" }
jobs: { max_pending_items: 100000, retention: 2s, max_retained_bytes: 4MiB }
pipelines:
  - name: echo
    stages:
      - { name: pass, processor: { type: passthrough } }
  - name: words
    stages:
      - { name: split, processor: { type: split, field: "" } }
    aggregate: { type: group_by, field: "", op: count }
)";

constexpr std::size_t kReadSizes[8] = {0, 1, 2, 3, 7, 16, 64, 512};

// The live job behind "$JOB": an ingestion stream left open (so it never
// finishes and is never evicted) with a few results. A DELETE cancels it;
// the next input then opens a new one.
std::string LiveJobId(sluice::engine::Engine& engine) {
  static std::shared_ptr<sluice::engine::IngestFeed> feed;
  if (feed && !feed->closed() && engine.Find(feed->job()->id())) {
    return feed->job()->id();
  }
  auto opened = engine.OpenStream("echo");
  if (!opened.ok()) sluice::fuzz::Fail("OpenStream", opened.error().message);
  feed = std::move(opened.value());
  std::vector<nlohmann::json> items = {1, "two", {{"three", nullptr}}};
  // Some results are all the fuzzer needs: what does not fit now is dropped.
  (void)feed->TryPush(items, [] {});
  // Let the results arrive, so /results has some (bounded: no hang).
  for (int i = 0; i < 200 && feed->job()->result_count() < 3; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return feed->job()->id();
}

std::string SubstituteJob(std::string_view input, const std::string& id) {
  constexpr std::string_view kToken = "$JOB";
  std::string out;
  out.reserve(input.size());
  std::size_t start = 0;
  for (std::size_t at; (at = input.find(kToken, start)) != std::string::npos;
       start = at + kToken.size()) {
    out.append(input.substr(start, at - start));
    out.append(id);
  }
  out.append(input.substr(start));
  return out;
}

// The bytes a client sends, delivered `read_size` at a time (0 = all).
class Wire {
 public:
  Wire(std::string bytes, std::size_t read_size)
      : bytes_(std::move(bytes)), read_size_(read_size) {}
  // Appends the next read to `buffer`; false at end of stream.
  bool Read(beast::flat_buffer& buffer) {
    if (pos_ == bytes_.size()) return false;
    std::size_t n = bytes_.size() - pos_;
    if (read_size_ != 0) n = std::min(n, read_size_);
    auto space = buffer.prepare(n);
    std::memcpy(space.data(), bytes_.data() + pos_, n);
    buffer.commit(n);
    pos_ += n;
    return true;
  }

 private:
  std::string bytes_;
  std::size_t read_size_;
  std::size_t pos_ = 0;
};

enum class ReadResult { kOk, kEndOfStream, kError };

// http::read_some as Beast does it: parse what is buffered, read more when
// the parser needs more, put_eof at the end of the stream. Stops when
// `until` holds (header done, or message done).
template <class Until>
ReadResult ReadUntil(Wire& wire, beast::flat_buffer& buffer,
                     bhttp::request_parser<bhttp::string_body>& parser,
                     beast::error_code& ec, Until until) {
  ec = {};
  while (!until()) {
    if (buffer.size() == 0) {
      ec = bhttp::error::need_more;
    } else {
      const std::size_t used = parser.put(buffer.data(), ec);
      buffer.consume(used);
    }
    if (ec == bhttp::error::need_more) {
      if (wire.Read(buffer)) continue;
      if (!parser.got_some()) return ReadResult::kEndOfStream;
      ec = {};
      parser.put_eof(ec);
      if (ec) return ReadResult::kError;
      if (!until()) sluice::fuzz::Fail("put_eof succeeded short", "");
      return ReadResult::kOk;
    }
    if (ec) return ReadResult::kError;
  }
  return ReadResult::kOk;
}

bool IsHttpParseError(beast::error_code ec) {
  return ec.category() ==
         bhttp::make_error_code(bhttp::error::bad_target).category();
}

// What HttpSession::OnReadError sends; nullopt when it sends nothing.
std::optional<sluice::http::Response> ReadErrorResponse(
    beast::error_code ec,
    const bhttp::request_parser<bhttp::string_body>& parser,
    const sluice::config::ServerConfig& limits) {
  const unsigned version =
      parser.get().version() != 0 ? parser.get().version() : 11;
  // The session reads these for its metrics; they must be safe to read.
  (void)parser.get().method_string();
  (void)sluice::http::Router::RouteOf(parser.get().target());
  if (ec == bhttp::error::header_limit) {
    return sluice::http::MakeError(
        bhttp::status::request_header_fields_too_large, "header_too_large",
        "request header block larger than " +
            std::to_string(limits.max_header_bytes) + " bytes",
        version, false);
  }
  if (ec == bhttp::error::body_limit) {
    return sluice::http::MakeError(
        bhttp::status::payload_too_large, "payload_too_large",
        "request body larger than " + std::to_string(limits.max_body_bytes) +
            " bytes (server.max_body_bytes)",
        version, false);
  }
  if (IsHttpParseError(ec) && ec != bhttp::error::partial_message) {
    return sluice::http::MakeError(bhttp::status::bad_request, "bad_request",
                                   "malformed HTTP request: " + ec.message(),
                                   version, false);
  }
  return std::nullopt;
}

void Observe(sluice::fuzz::Service& service, std::string_view method,
             std::string_view route, const sluice::http::Response& res) {
  sluice::http::ObserveRequest(service.metrics, method, route, res.result_int(),
                               std::chrono::milliseconds(1));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data,
                                      std::size_t size) {
  sluice::fuzz::Service& service = sluice::fuzz::GetService(kConfig);
  const std::uint8_t mode = size > 0 ? data[0] : 0;
  const bool auth = (mode & 1) != 0;
  const std::size_t read_size = kReadSizes[(mode >> 1) & 7];
  sluice::config::ServerConfig limits = service.config.server;
  if ((mode & 0x10) != 0) {
    limits.max_header_bytes = 1024;
    limits.max_body_bytes = 1024;
  }
  sluice::http::Router& router =
      auth ? service.router_with_auth : service.router;

  std::string input(sluice::fuzz::AsText(data, size).substr(size > 0 ? 1 : 0));
  if (input.find("$JOB") != std::string::npos) {
    input = SubstituteJob(input, LiveJobId(service.engine));
  }
  Wire wire(std::move(input), read_size);
  beast::flat_buffer buffer;

  // One request per iteration, as HttpSession::DoRead .. OnWrite.
  for (int requests = 0; requests < 64; ++requests) {
    bhttp::request_parser<bhttp::string_body> parser;
    parser.header_limit(static_cast<std::uint32_t>(std::min<std::size_t>(
        limits.max_header_bytes, std::numeric_limits<std::uint32_t>::max())));
    parser.body_limit(limits.max_body_bytes);
    beast::error_code ec;

    // async_read_header.
    ReadResult r = ReadUntil(wire, buffer, parser, ec,
                             [&] { return parser.is_header_done(); });
    if (r == ReadResult::kEndOfStream) return 0;
    if (r == ReadResult::kError) {
      if (auto res = ReadErrorResponse(ec, parser, limits)) {
        sluice::fuzz::CheckResponse(*res);
      }
      return 0;
    }
    const sluice::http::RequestHeader& header = parser.get();
    const std::string method(header.method_string());
    std::string_view route = sluice::http::Router::RouteOf(header.target());
    if (auto refused = sluice::http::CheckFraming(header)) {
      // A framing refusal is 400 or 501 and ends the connection.
      FUZZ_CHECK(refused->result() == bhttp::status::bad_request ||
                     refused->result() == bhttp::status::not_implemented,
                 Describe(*refused));
      FUZZ_CHECK(!refused->keep_alive(), Describe(*refused));
      sluice::fuzz::CheckResponse(*refused,
                                  header.method() == bhttp::verb::head);
      Observe(service, method, route, *refused);
      return 0;
    }
    // What passes is framed by one "chunked" or one Content-Length, never
    // both (RFC 9112 §6.1).
    FUZZ_CHECK(header.count(bhttp::field::transfer_encoding) == 0 ||
                   (parser.chunked() &&
                    header.count(bhttp::field::content_length) == 0),
               std::string(header[bhttp::field::transfer_encoding]));
    if (auto denied = router.CheckHeader(header)) {
      FUZZ_CHECK(auth, Describe(denied->response));
      FUZZ_CHECK(denied->response.result() == bhttp::status::unauthorized,
                 Describe(denied->response));
      sluice::fuzz::CheckResponse(denied->response,
                                  header.method() == bhttp::verb::head);
      Observe(service, method, route, denied->response);
      // Refused before its body: the session closes unless there was none.
      if (!parser.is_done() || !denied->response.keep_alive()) return 0;
      continue;
    }

    // async_read (the body).
    r = ReadUntil(wire, buffer, parser, ec, [&] { return parser.is_done(); });
    if (r != ReadResult::kOk) {
      if (auto res = ReadErrorResponse(ec, parser, limits)) {
        sluice::fuzz::CheckResponse(*res);
      }
      return 0;
    }
    sluice::http::Request req = parser.release();
    const bool head = req.method() == bhttp::verb::head;

    if (beast::websocket::is_upgrade(req)) {
      auto decision = router.HandleUpgrade(req);
      if (!decision.ok()) {
        const sluice::http::Reply& reply = decision.error();
        sluice::fuzz::CheckResponse(reply.response);
        FUZZ_CHECK(reply.response.result_int() >= 400,
                   Describe(reply.response));
        Observe(service, method, reply.route, reply.response);
        return 0;  // sent with Connection: close
      }
      const auto& upgrade = decision.value();
      FUZZ_CHECK(upgrade.job != nullptr, "an upgrade without a job");
      if (upgrade.kind == sluice::http::Upgrade::Kind::kIngest) {
        FUZZ_CHECK(upgrade.feed != nullptr, "an ingest upgrade without feed");
        FUZZ_CHECK(upgrade.route == sluice::http::kRouteStream, "route");
      } else {
        FUZZ_CHECK(upgrade.route == sluice::http::kRouteJobStream, "route");
      }
      return 0;  // the connection is a WebSocket now
    }

    sluice::http::Reply reply = router.Handle(req);
    sluice::http::Response res = reply.wait_job
                                     ? router.CompleteWait(std::move(reply))
                                     : std::move(reply.response);
    sluice::fuzz::CheckResponse(res, head);
    if (res.result() == bhttp::status::unauthorized) FUZZ_CHECK(auth, "401");
    Observe(service, method, route, res);
    if (!res.keep_alive()) return 0;
  }
  return 0;
}
