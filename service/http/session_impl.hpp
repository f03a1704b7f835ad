// Private to service/http: the HttpSession template behind StartHttpSession
// (session.hpp), in the style of the Beast advanced server examples (the
// "flex" one for TLS): one strand per connection, one read or write in
// flight, a timeout on every read, write and handshake. The session is a
// template over its stream (PlainStream or TlsStream); the few steps that
// differ are `if constexpr (kTls)`. Each stream's instantiation is compiled
// in its own file (session_plain.cpp, session_tls.cpp): together in one they
// were the slowest translation unit of every build.
#ifndef SLUICE_SERVICE_HTTP_SESSION_IMPL_HPP_
#define SLUICE_SERVICE_HTTP_SESSION_IMPL_HPP_

#include <array>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/beast/websocket/rfc6455.hpp>
#include <chrono>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <type_traits>

#include "service/http/fail.hpp"
#include "service/http/framing.hpp"
#include "service/http/session.hpp"
#include "service/jobs/job.hpp"

namespace sluice::http::detail {

namespace beast = boost::beast;
namespace net = boost::asio;
namespace websocket = beast::websocket;
using tcp = net::ip::tcp;
using Clock = std::chrono::steady_clock;

// After the last response of a connection we stop sending and read (and
// drop) what the peer still sends for a moment before closing, so a client
// whose body we refused to read gets our response instead of a reset
// (closing a socket with unread data makes the kernel send RST). Over TLS
// the same time bounds the close_notify exchange, which reads (and drops)
// the peer's data the same way.
constexpr auto kLingerTime = std::chrono::seconds(1);
constexpr std::size_t kLingerBytes = 1 << 20;

inline bool IsHttpParseError(beast::error_code ec) {
  return ec.category() ==
         beast::http::make_error_code(bhttp::error::bad_target).category();
}

// One HTTP connection over `Stream` (PlainStream or TlsStream).
// Thread-safety: all members run on the socket's strand (executor_, which
// every handler is bound to through the stream), except Stop(), which only
// posts onto it.
template <class Stream>
class HttpSession : public Connection,
                    public std::enable_shared_from_this<HttpSession<Stream>> {
  static constexpr bool kTls = std::is_same_v<Stream, TlsStream>;
  static_assert(kTls || std::is_same_v<Stream, PlainStream>);

 public:
  // Requires ctx.tls when Stream is TlsStream.
  HttpSession(tcp::socket&& socket, SessionContext& ctx, ConnectionSlot slot)
      : executor_(socket.get_executor()),
        stream_(MakeStream(std::move(socket), ctx)),
        ctx_(ctx),
        slot_(std::move(slot)),
        wait_timer_(executor_) {}

  void Run() {
    slot_.Bind(this->weak_from_this());
    net::dispatch(executor_,
                  beast::bind_front_handler(&HttpSession::Begin, self()));
  }

  // Posts onto executor_, never touching stream_ here: the stream may be
  // being moved into a WebSocket session on the strand at this moment.
  void Stop() override {
    net::post(executor_, [self = self()] { self->OnStop(); });
  }

 private:
  static Stream MakeStream(tcp::socket&& socket, SessionContext& ctx) {
    if constexpr (kTls) {
      return Stream(std::move(socket), *ctx.tls);
    } else {
      return Stream(std::move(socket));
    }
  }

  std::shared_ptr<HttpSession> self() { return this->shared_from_this(); }
  beast::tcp_stream& lowest() { return beast::get_lowest_layer(stream_); }

  // Over TLS, the server handshake comes first, bounded by the read
  // timeout: a peer speaking something else (plain HTTP, say) fails it with
  // its first bytes, a silent one when the timer fires.
  void Begin() {
    if constexpr (kTls) {
      idle_ = true;  // nothing asked yet: Stop() may cut it short
      lowest().expires_after(ctx_.server.idle_timeout);
      stream_.async_handshake(
          net::ssl::stream_base::server,
          beast::bind_front_handler(&HttpSession::OnHandshake, self()));
    } else {
      DoRead();
    }
  }

  void OnHandshake(beast::error_code ec) {
    idle_ = false;
    // The session ends here; the socket closes with it.
    if (ec) return fail(ec, "tls handshake");
    DoRead();
  }

  void OnStop() {
    stopping_ = true;
    // Waiting for a next request that may never come: close now. Otherwise
    // the request in progress is answered with "Connection: close".
    if (!idle_) return;
    if constexpr (kTls) {
      // Cancel the read (or the handshake) instead of closing, so that
      // OnHeader can still say goodbye with a close_notify.
      lowest().cancel();
    } else {
      stream_.close();
    }
  }

  void DoRead() {
    if (stopping_) return DoShutdown();
    parser_.emplace();
    parser_->header_limit(static_cast<std::uint32_t>(
        std::min<std::size_t>(ctx_.server.max_header_bytes,
                              std::numeric_limits<std::uint32_t>::max())));
    parser_->body_limit(ctx_.server.max_body_bytes);
    idle_ = true;
    lowest().expires_after(ctx_.server.idle_timeout);
    bhttp::async_read_header(
        stream_, buffer_, *parser_,
        beast::bind_front_handler(&HttpSession::OnHeader, self()));
  }

  void OnHeader(beast::error_code ec, std::size_t /*bytes*/) {
    idle_ = false;
    received_ = Clock::now();
    if (ec == bhttp::error::end_of_stream) return DoShutdown();
    if constexpr (kTls) {
      // OnStop cancelled the wait for a next request.
      if (ec == net::error::operation_aborted && stopping_) {
        return DoShutdown();
      }
    }
    if (ec) return OnReadError(ec);
    const RequestHeader& header = parser_->get();
    method_ = std::string(header.method_string());
    route_ = Router::RouteOf(header.target());
    // First: a request whose framing is in doubt ends the connection before
    // anything acts on it (see framing.hpp).
    if (auto refused = CheckFraming(header)) {
      return Send(std::move(*refused), true);
    }
    if (auto denied = ctx_.router.CheckHeader(header)) {
      // Refused before reading the body: nothing of it is used.
      return Send(std::move(denied->response), !parser_->is_done());
    }
    if (!parser_->is_done() &&
        beast::iequals(header[bhttp::field::expect], "100-continue")) {
      continue_ = {bhttp::status::continue_, header.version()};
      lowest().expires_after(ctx_.server.idle_timeout);
      return bhttp::async_write(
          stream_, continue_,
          [self = self()](beast::error_code write_ec, std::size_t) {
            if (write_ec) return fail(write_ec, "write");
            self->ReadBody();
          });
    }
    ReadBody();
  }

  void ReadBody() {
    lowest().expires_after(ctx_.server.idle_timeout);
    bhttp::async_read(stream_, buffer_, *parser_,
                      beast::bind_front_handler(&HttpSession::OnRead, self()));
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
      if (!decision.ok()) {
        Reply reply = std::move(decision).error();
        route_ = reply.route;
        return Send(std::move(reply.response), true);
      }
      // Hand the stream (with its TLS state, if any) and our connection slot
      // to a WebSocket session, which has timeouts of its own; this session
      // ends when its last handler returns and must not touch stream_ again.
      lowest().expires_never();
      Upgrade upgrade = std::move(decision).value();
      if constexpr (kTls) {
        ctx_.websocket.tls(std::move(stream_), std::move(req),
                           std::move(upgrade), ctx_, std::move(slot_),
                           received_);
      } else {
        ctx_.websocket.plain(std::move(stream_), std::move(req),
                             std::move(upgrade), ctx_, std::move(slot_),
                             received_);
      }
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
    wait_timer_.async_wait(
        [self = self(), wait](beast::error_code) { self->FinishWait(wait); });
    bool registered = pending_->wait_job->NotifyWhenFinished(
        [weak = this->weak_from_this(), executor = executor_, wait] {
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
    lowest().expires_after(ctx_.server.idle_timeout);
    bhttp::async_write(
        stream_, *response_,
        beast::bind_front_handler(&HttpSession::OnWrite, self(), keep_alive));
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

  // Graceful close. Plain: FIN first, then drain briefly (see kLingerTime).
  // TLS: close_notify first, then the same at the TCP level, all within
  // kLingerTime.
  void DoShutdown() {
    if constexpr (kTls) {
      lowest().expires_after(kLingerTime);
      stream_.async_shutdown([self = self()](beast::error_code ec) {
        // Not reported: a peer that closes without a close_notify of its
        // own (stream_truncated, eof) is the common case, and one still
        // sending a body we refused fails the exchange with "application
        // data after close notify"; neither tells an operator anything.
        if (ec == beast::error::timeout) return;  // the socket is closed
        // Our close_notify is out: whatever the peer still sends is no
        // longer ours to read. Drop it at the TCP level, as over plain TCP.
        self->LingerTcp();
      });
    } else {
      lowest().expires_after(kLingerTime);
      LingerTcp();
    }
  }

  // FIN, then read (and drop) until the peer closes, kLingerBytes, or the
  // deadline DoShutdown set.
  void LingerTcp() {
    beast::error_code ec;
    lowest().socket().shutdown(tcp::socket::shutdown_send, ec);
    if (ec) return;
    DoLinger();
  }

  void DoLinger() {
    lowest().async_read_some(
        net::buffer(discard_),
        [self = self()](beast::error_code ec, std::size_t n) {
          self->lingered_ += n;
          if (!ec && self->lingered_ < kLingerBytes) self->DoLinger();
          // Else: the session ends and the socket closes.
        });
  }

  // The connection's strand; a copy, so Stop() never reads stream_.
  tcp::socket::executor_type executor_;
  Stream stream_;
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

// StartHttpSession for each stream (session_plain.cpp, session_tls.cpp).
void StartPlainHttpSession(tcp::socket socket, SessionContext& ctx,
                           ConnectionSlot slot);
void StartTlsHttpSession(tcp::socket socket, SessionContext& ctx,
                         ConnectionSlot slot);

}  // namespace sluice::http::detail

#endif  // SLUICE_SERVICE_HTTP_SESSION_IMPL_HPP_
