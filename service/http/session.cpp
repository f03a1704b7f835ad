// Implementation of the HTTP session (see session.hpp), in the style of the
// Beast advanced server example: one strand per connection, one read or
// write in flight, a timeout on every read and write.
#include "service/http/session.hpp"

#include <array>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket/rfc6455.hpp>
#include <chrono>
#include <limits>
#include <memory>
#include <optional>
#include <string>

#include "service/http/fail.hpp"
#include "service/jobs/job.hpp"
#include "service/ws/session.hpp"

namespace sluice::http {
namespace {

namespace beast = boost::beast;
namespace net = boost::asio;
namespace websocket = beast::websocket;
using tcp = net::ip::tcp;
using Clock = std::chrono::steady_clock;

// After the last response of a connection we stop sending and read (and
// drop) what the peer still sends for a moment before closing, so a client
// whose body we refused to read gets our response instead of a reset
// (closing a socket with unread data makes the kernel send RST).
constexpr auto kLingerTime = std::chrono::seconds(1);
constexpr std::size_t kLingerBytes = 1 << 20;

bool IsHttpParseError(beast::error_code ec) {
  return ec.category() ==
         beast::http::make_error_code(bhttp::error::bad_target).category();
}

// One HTTP connection. Thread-safety: all members run on the socket's
// strand (handlers are bound to stream_'s executor), except Stop(), which
// only posts onto it.
class HttpSession : public Connection,
                    public std::enable_shared_from_this<HttpSession> {
 public:
  HttpSession(tcp::socket&& socket, SessionContext& ctx, ConnectionSlot slot)
      : stream_(std::move(socket)),
        ctx_(ctx),
        slot_(std::move(slot)),
        wait_timer_(stream_.get_executor()) {}

  void Run() {
    slot_.Bind(weak_from_this());
    net::dispatch(
        stream_.get_executor(),
        beast::bind_front_handler(&HttpSession::DoRead, shared_from_this()));
  }

  void Stop() override {
    net::post(stream_.get_executor(),
              [self = shared_from_this()] { self->OnStop(); });
  }

 private:
  void OnStop() {
    stopping_ = true;
    // Waiting for a next request that may never come: close now. Otherwise
    // the request in progress is answered with "Connection: close".
    if (idle_) stream_.close();
  }

  void DoRead() {
    if (stopping_) return DoShutdown();
    parser_.emplace();
    parser_->header_limit(static_cast<std::uint32_t>(
        std::min<std::size_t>(ctx_.server.max_header_bytes,
                              std::numeric_limits<std::uint32_t>::max())));
    parser_->body_limit(ctx_.server.max_body_bytes);
    idle_ = true;
    stream_.expires_after(ctx_.server.idle_timeout);
    bhttp::async_read_header(
        stream_, buffer_, *parser_,
        beast::bind_front_handler(&HttpSession::OnHeader, shared_from_this()));
  }

  void OnHeader(beast::error_code ec, std::size_t /*bytes*/) {
    idle_ = false;
    received_ = Clock::now();
    if (ec == bhttp::error::end_of_stream) return DoShutdown();
    if (ec) return OnReadError(ec);
    const RequestHeader& header = parser_->get();
    method_ = std::string(header.method_string());
    route_ = Router::RouteOf(header.target());
    if (auto denied = ctx_.router.CheckHeader(header)) {
      // Refused before reading the body: nothing of it is used.
      return Send(std::move(denied->response), !parser_->is_done());
    }
    if (!parser_->is_done() &&
        beast::iequals(header[bhttp::field::expect], "100-continue")) {
      continue_ = {bhttp::status::continue_, header.version()};
      stream_.expires_after(ctx_.server.idle_timeout);
      return bhttp::async_write(
          stream_, continue_,
          [self = shared_from_this()](beast::error_code write_ec, std::size_t) {
            if (write_ec) return fail(write_ec, "write");
            self->ReadBody();
          });
    }
    ReadBody();
  }

  void ReadBody() {
    stream_.expires_after(ctx_.server.idle_timeout);
    bhttp::async_read(
        stream_, buffer_, *parser_,
        beast::bind_front_handler(&HttpSession::OnRead, shared_from_this()));
  }

  // A request that could not be read: answer what can be answered, then
  // close (the stream position is lost).
  void OnReadError(beast::error_code ec) {
    if (!received_.time_since_epoch().count()) received_ = Clock::now();
    const unsigned version =
        parser_->get().version() != 0 ? parser_->get().version() : 11;
    if (method_.empty()) method_ = std::string(parser_->get().method_string());
    if (route_ == kRouteUnmatched)
      route_ = Router::RouteOf(parser_->get().target());
    if (ec == bhttp::error::header_limit) {
      return Send(
          MakeError(bhttp::status::request_header_fields_too_large,
                    "header_too_large",
                    "request header block larger than " +
                        std::to_string(ctx_.server.max_header_bytes) + " bytes",
                    version, false),
          true);
    }
    if (ec == bhttp::error::body_limit) {
      return Send(
          MakeError(bhttp::status::payload_too_large, "payload_too_large",
                    "request body larger than " +
                        std::to_string(ctx_.server.max_body_bytes) +
                        " bytes (server.max_body_bytes)",
                    version, false),
          true);
    }
    if (IsHttpParseError(ec) && ec != bhttp::error::partial_message) {
      return Send(
          MakeError(bhttp::status::bad_request, "bad_request",
                    "malformed HTTP request: " + ec.message(), version, false),
          true);
    }
    // Timeout, reset, or the peer gone mid-message: nobody to answer.
    fail(ec, "read");
  }

  void OnRead(beast::error_code ec, std::size_t /*bytes*/) {
    if (ec) return OnReadError(ec);
    Request req = parser_->release();
    if (websocket::is_upgrade(req)) {
      auto decision = ctx_.router.HandleUpgrade(req);
      if (auto* reply = std::get_if<Reply>(&decision)) {
        route_ = reply->route;
        return Send(std::move(reply->response), true);
      }
      // Hand the socket (and our connection slot) to a WebSocket session;
      // this session ends when its last handler returns.
      stream_.expires_never();
      ws::StartWebSocketSession(stream_.release_socket(), std::move(req),
                                std::move(std::get<Upgrade>(decision)), ctx_,
                                std::move(slot_), received_);
      return;
    }
    Reply reply = ctx_.router.Handle(req);
    route_ = reply.route;
    if (reply.wait_job) return StartWait(std::move(reply));
    Send(std::move(reply.response), false);
  }

  // POST /v1/jobs?wait=S: answer when the job finishes or the time is up,
  // whichever comes first, without blocking the io thread. Both events carry
  // the wait's number: a late one (a cancelled timer whose handler reaches
  // the strand only after the next request began waiting, or the job
  // finishing after the timeout) must not complete a later wait.
  void StartWait(Reply reply) {
    pending_ = std::move(reply);
    const std::uint64_t wait = ++wait_number_;
    waiting_ = true;
    wait_timer_.expires_after(pending_->wait_for);
    wait_timer_.async_wait([self = shared_from_this(), wait](
                               beast::error_code) { self->FinishWait(wait); });
    bool registered = pending_->wait_job->NotifyWhenFinished(
        [weak = weak_from_this(), executor = stream_.get_executor(), wait] {
          net::post(executor, [weak, wait] {
            if (auto self = weak.lock()) self->FinishWait(wait);
          });
        });
    if (!registered) FinishWait(wait);
  }

  void FinishWait(std::uint64_t wait) {
    if (!waiting_ || wait != wait_number_) return;
    waiting_ = false;
    wait_timer_.cancel();
    Reply reply = std::move(*pending_);
    pending_.reset();
    Send(ctx_.router.CompleteWait(std::move(reply)), false);
  }

  void Send(Response res, bool close) {
    if (close || stopping_) res.keep_alive(false);
    ObserveRequest(ctx_.metrics, method_, route_, res.result_int(),
                   Clock::now() - received_);
    response_ = std::move(res);
    const bool keep_alive = response_->keep_alive();
    stream_.expires_after(ctx_.server.idle_timeout);
    bhttp::async_write(
        stream_, *response_,
        beast::bind_front_handler(&HttpSession::OnWrite, shared_from_this(),
                                  keep_alive));
  }

  void OnWrite(bool keep_alive, beast::error_code ec, std::size_t /*bytes*/) {
    if (ec) return fail(ec, "write");
    response_.reset();
    method_.clear();
    route_ = kRouteUnmatched;
    received_ = {};
    if (!keep_alive) return DoShutdown();
    DoRead();
  }

  // Graceful close: FIN first, then drain briefly (see kLingerTime).
  void DoShutdown() {
    beast::error_code ec;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ec);
    if (ec) return;
    stream_.expires_after(kLingerTime);
    DoLinger();
  }

  void DoLinger() {
    stream_.async_read_some(
        net::buffer(discard_),
        [self = shared_from_this()](beast::error_code ec, std::size_t n) {
          self->lingered_ += n;
          if (!ec && self->lingered_ < kLingerBytes) self->DoLinger();
          // Else: the session ends and the socket closes.
        });
  }

  beast::tcp_stream stream_;
  SessionContext& ctx_;
  ConnectionSlot slot_;
  beast::flat_buffer buffer_;
  std::optional<bhttp::request_parser<bhttp::string_body>> parser_;
  std::optional<Response> response_;  // the one write in flight
  bhttp::response<bhttp::empty_body> continue_;
  net::steady_timer wait_timer_;
  std::optional<Reply> pending_;  // the ?wait in progress
  bool waiting_ = false;
  std::uint64_t wait_number_ = 0;  // identifies the current ?wait
  bool idle_ = false;              // waiting for the first byte of a request
  bool stopping_ = false;          // server shutdown: close after this request
  std::string method_;
  std::string_view route_ = kRouteUnmatched;
  Clock::time_point received_{};
  std::array<char, 8192> discard_{};
  std::size_t lingered_ = 0;
};

}  // namespace

void StartHttpSession(tcp::socket socket, SessionContext& ctx,
                      ConnectionSlot slot) {
  std::make_shared<HttpSession>(std::move(socket), ctx, std::move(slot))->Run();
}

}  // namespace sluice::http
