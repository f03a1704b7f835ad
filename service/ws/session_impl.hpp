// Private to service/ws: the WebSocket sessions behind StartWebSocketSession
// (session.hpp): a common base with the handshake, the read loop and the
// bounded one-write-in-flight outbound queue, and the two endpoints built on
// it, all templates over the stream (plain TCP or TLS) as in Beast's
// advanced_server_flex example. Each stream's instantiation is compiled in
// its own file (session_plain.cpp, session_tls.cpp), so the two build in
// parallel.
#ifndef SLUICE_SERVICE_WS_SESSION_IMPL_HPP_
#define SLUICE_SERVICE_WS_SESSION_IMPL_HPP_

#include <boost/asio/dispatch.hpp>
#include <boost/asio/post.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/ssl.hpp>  // websocket teardown (close_notify) for TLS
#include <boost/beast/websocket.hpp>
#include <deque>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "service/engine/engine.hpp"
#include "service/http/fail.hpp"
#include "service/jobs/job.hpp"
#include "service/metrics/metrics.hpp"
#include "service/util/text.hpp"
#include "service/ws/ingest_frame.hpp"
#include "service/ws/session.hpp"

namespace sluice::ws::detail {

namespace beast = boost::beast;
namespace net = boost::asio;
namespace websocket = beast::websocket;
using Clock = std::chrono::steady_clock;

// Frames a session holds for writing at most (result frames; the cursor
// copies no more than there is room for). Frames the session makes itself
// (errors about bad input frames) may add up to as many again; beyond that
// the ingestion session stops reading until the client reads.
constexpr std::size_t kMaxQueuedFrames = 64;
// ... and at most about this many bytes of result frames (always one frame,
// however large): a stalled reader of large records holds this, not 64 of
// them.
constexpr std::size_t kMaxQueuedBytes = std::size_t{1} << 20;
// The job stream expects no data from the client; it only reads to see
// control frames (close, ping, pong).
constexpr std::size_t kJobStreamReadMax = std::size_t{64} * 1024;
constexpr auto kHandshakeTimeout = std::chrono::seconds(10);

inline std::string RecordFrame(const jobs::ResultRecord& r) {
  if (r.window) return DumpLenient(jobs::ToJson(r));
  if (r.is_error) {
    return DumpLenient({{"type", "error"},
                        {"seq", r.seq},
                        {"error", r.error},
                        {"stage", r.stage}});
  }
  if (!r.value_text.empty()) {  // a cluster mirror's record: spliced as is
    return R"({"seq":)" + std::to_string(r.seq) +
           R"(,"type":"result","value":)" + r.value_text + "}";
  }
  return DumpLenient({{"type", "result"}, {"seq", r.seq}, {"value", r.value}});
}

inline std::string ProtocolErrorFrame(std::string_view code,
                                      std::string_view message) {
  return DumpLenient({{"type", "error"}, {"code", code}, {"message", message}});
}

// The common part of both endpoints over `Stream` (http::PlainStream or
// http::TlsStream). Thread-safety: everything runs on the connection's
// strand (the stream's executor); Stop() and the engine's wake callbacks only
// post onto it.
template <class Stream>
class WsSession : public http::Connection,
                  public std::enable_shared_from_this<WsSession<Stream>> {
 public:
  WsSession(Stream&& stream, http::Request request, http::Upgrade upgrade,
            http::SessionContext& ctx, http::ConnectionSlot slot,
            Clock::time_point received, std::string_view kind)
      : ws_(std::move(stream)),
        ctx_(ctx),
        slot_(std::move(slot)),
        request_(std::move(request)),
        upgrade_(std::move(upgrade)),
        received_(received),
        gauge_(ctx.metrics.WebSocketConnections(kind)) {}

  ~WsSession() override {
    if (open_) gauge_.Decrement();
  }

  void Run() {
    slot_.Bind(this->weak_from_this());
    net::dispatch(ws_.get_executor(), [self = self()] { self->DoAccept(); });
  }

  void Stop() override {
    net::post(ws_.get_executor(), [self = self()] {
      self->stopping_ = true;
      // Before the handshake completes OnAccept sees stopping_ instead.
      if (self->open_ && !self->gone_) self->OnStop();
    });
  }

 protected:
  std::shared_ptr<jobs::Job>& job() { return upgrade_.job; }
  http::SessionContext& ctx() const { return ctx_; }
  bool closing() const { return close_.has_value(); }
  bool stopping() const { return stopping_; }
  std::size_t queued() const { return queue_.size(); }
  std::size_t room() const {
    if (queued_bytes_ >= kMaxQueuedBytes) return 0;
    return queue_.size() >= kMaxQueuedFrames ? 0
                                             : kMaxQueuedFrames - queue_.size();
  }
  std::size_t room_bytes() const {
    return queued_bytes_ >= kMaxQueuedBytes ? 0
                                            : kMaxQueuedBytes - queued_bytes_;
  }
  auto executor() { return ws_.get_executor(); }
  std::shared_ptr<WsSession> self() { return this->shared_from_this(); }

  // Called on the strand once the handshake succeeded.
  virtual void OnOpen() = 0;
  // A complete data frame arrived. The derived class calls DoRead() when it
  // is ready for the next one.
  virtual void OnMessage(bool text, std::string_view data) = 0;
  // A frame was written (the queue has room again): by default, copy more
  // of the result log.
  virtual void OnWritten() { Pump(); }
  // The server shuts down, after Engine::Shutdown has returned: the job has
  // finished and Pump() sends what is left and "done". A job somehow still
  // running is abandoned with 1001.
  virtual void OnStop() {
    if (!done_ && !job()->finished()) {
      done_ = true;
      CloseAfterQueue(websocket::close_code::going_away,
                      "server shutting down");
    }
  }
  // The peer closed or the connection failed: no more frames either way.
  virtual void OnGone() {}
  virtual std::size_t read_message_max() const = 0;

  void DoRead() {
    if (reading_ || gone_) return;
    reading_ = true;
    ws_.async_read(read_buffer_,
                   beast::bind_front_handler(&WsSession::OnRead, self()));
  }

  void Enqueue(std::string frame) {
    if (gone_ || close_) return;
    queued_bytes_ += frame.size();
    queue_.push_back(std::move(frame));
    DoWrite();
  }

  // Sends what is queued, then the close frame.
  void CloseAfterQueue(websocket::close_code code, std::string_view reason) {
    if (gone_ || close_) return;
    close_ = websocket::close_reason(code, reason);
    DoWrite();
  }

  // The status frame; then close with `code`.
  void SendDone(websocket::close_code code, std::string_view reason) {
    Enqueue(DumpLenient({{"type", "done"}, {"job", job()->Status()}}));
    CloseAfterQueue(code, reason);
  }

  // The cursor over the job's result log: copies as many records as the
  // queue has room for; when the log is exhausted, either sends "done" (the
  // job has finished) or registers one wake with the job, which posts back
  // here when records are appended or the job finishes.
  void Pump() {
    while (!done_ && !waiting_ && !closing() && room() > 0) {
      bool finished = false;
      std::vector<jobs::ResultRecord> records = job()->ReadFrom(
          cursor_, room(), &finished, Waker<WsSession>([](WsSession& self) {
            self.waiting_ = false;
            self.Pump();
          }),
          room_bytes());
      if (!records.empty()) {
        cursor_ += records.size();
        for (const auto& r : records) Enqueue(RecordFrame(r));
        continue;
      }
      if (finished) {
        done_ = true;
        auto code = DoneCode();
        SendDone(code, code == websocket::close_code::normal
                           ? "done"
                           : "job cancelled by server shutdown");
      } else {
        waiting_ = true;
      }
    }
  }

  // The close code after "done" (contract §C6): 1001 for a job the drain
  // cancelled, 1000 otherwise.
  websocket::close_code DoneCode() {
    return ctx_.router.draining() && job()->cancel_requested()
               ? websocket::close_code::going_away
               : websocket::close_code::normal;
  }

  // A wake callback for the engine: posts `fn` onto this session's strand
  // if the session still exists.
  template <class Derived, class Fn>
  std::function<void()> Waker(Fn fn) {
    return [weak = std::weak_ptr<WsSession>(self()),
            executor = ws_.get_executor(), fn] {
      net::post(executor, [weak, fn] {
        if (auto self = weak.lock()) fn(static_cast<Derived&>(*self));
      });
    };
  }

 private:
  void DoAccept() {
    websocket::stream_base::timeout timeout{};
    timeout.handshake_timeout = kHandshakeTimeout;
    timeout.idle_timeout = ctx_.server.idle_timeout;
    // Ping a quiet peer instead of dropping it: a job stream's client sends
    // nothing while it waits for results.
    timeout.keep_alive_pings = true;
    ws_.set_option(timeout);
    ws_.read_message_max(read_message_max());
    std::string job_id = upgrade_.job ? upgrade_.job->id() : std::string();
    std::string_view subprotocol = upgrade_.subprotocol;
    ws_.set_option(websocket::stream_base::decorator(
        [job_id, subprotocol](websocket::response_type& res) {
          res.set(beast::http::field::server, "sluice");
          // A browser fails a handshake that offered subprotocols and got
          // none back (the token one is never echoed: router.hpp).
          if (!subprotocol.empty()) {
            res.set(beast::http::field::sec_websocket_protocol, subprotocol);
          }
          // Which job this stream is (ingestion streams create one), so a
          // client can fetch its results over HTTP later.
          if (!job_id.empty()) res.set("X-Sluice-Job", job_id);
        }));
    ws_.text(true);
    ws_.async_accept(request_,
                     beast::bind_front_handler(&WsSession::OnAccept, self()));
  }

  void OnAccept(beast::error_code ec) {
    http::ObserveRequest(ctx_.metrics, request_.method_string(), upgrade_.route,
                         ec ? 400 : 101, Clock::now() - received_);
    request_ = {};
    if (ec) {
      gone_ = true;
      return http::fail(ec, "websocket accept");
    }
    open_ = true;
    gauge_.Increment();
    OnOpen();
    if (stopping_) OnStop();
  }

  void OnRead(beast::error_code ec, std::size_t /*bytes*/) {
    reading_ = false;
    if (ec) {
      if (ec != websocket::error::closed) http::fail(ec, "websocket read");
      Gone();
      return;
    }
    std::string data = beast::buffers_to_string(read_buffer_.data());
    read_buffer_.consume(read_buffer_.size());
    OnMessage(ws_.got_text(), data);
  }

  void DoWrite() {
    if (writing_ || gone_) return;
    if (!queue_.empty()) {
      writing_ = true;
      ws_.async_write(net::buffer(queue_.front()),
                      beast::bind_front_handler(&WsSession::OnWrite, self()));
    } else if (close_ && !close_sent_) {
      writing_ = true;
      close_sent_ = true;
      // Over TLS the close handshake ends with close_notify (Beast's
      // teardown for ssl_stream); Beast bounds all of it by the handshake
      // timeout set in DoAccept.
      ws_.async_close(*close_,
                      beast::bind_front_handler(&WsSession::OnClose, self()));
    }
  }

  void OnWrite(beast::error_code ec, std::size_t /*bytes*/) {
    writing_ = false;
    if (ec) {
      http::fail(ec, "websocket write");
      Gone();
      return;
    }
    queued_bytes_ -= queue_.front().size();
    queue_.pop_front();
    OnWritten();
    DoWrite();
  }

  void OnClose(beast::error_code ec) {
    writing_ = false;
    if (ec) http::fail(ec, "websocket close");
    Gone();
  }

  void Gone() {
    if (gone_) return;
    gone_ = true;
    queue_.clear();
    queued_bytes_ = 0;
    OnGone();
  }

  websocket::stream<Stream> ws_;
  http::SessionContext& ctx_;
  http::ConnectionSlot slot_;
  http::Request request_;  // the upgrade request, until accepted
  http::Upgrade upgrade_;
  Clock::time_point received_;
  prometheus::Gauge& gauge_;
  beast::flat_buffer read_buffer_;
  std::deque<std::string> queue_;  // frames to write; front() in flight
  std::size_t queued_bytes_ = 0;   // their sizes
  std::optional<websocket::close_reason> close_;  // close once queue_ drains
  bool close_sent_ = false;
  bool writing_ = false;
  bool reading_ = false;
  bool open_ = false;       // handshake done (gauge incremented)
  bool gone_ = false;       // closed or failed: nothing more to send
  bool stopping_ = false;   // the server shuts down
  std::size_t cursor_ = 0;  // the next record of the job's log to send
  bool waiting_ = false;    // a wake is registered with the job
  bool done_ = false;       // "done" queued (or the stream abandoned)
};

// GET /v1/jobs/{id}/stream: replays the job's results, then live ones, then
// "done". Thread-safety: as WsSession.
template <class Stream>
class JobStreamSession final : public WsSession<Stream> {
 public:
  using WsSession<Stream>::WsSession;

 private:
  std::size_t read_message_max() const override { return kJobStreamReadMax; }

  void OnOpen() override {
    this->DoRead();
    this->Pump();
  }

  // Client data is not part of the protocol; it is read and dropped so that
  // control frames keep being processed.
  void OnMessage(bool /*text*/, std::string_view /*data*/) override {
    this->DoRead();
  }
};

// GET /v1/stream?pipeline=NAME: reads input frames into the stream's feed
// (the next frame only once the feed accepted the previous one) and streams
// the job's results back like JobStreamSession. Thread-safety: as WsSession.
template <class Stream>
class IngestSession final : public WsSession<Stream> {
  using Base = WsSession<Stream>;

 public:
  IngestSession(Stream&& stream, http::Request request, http::Upgrade upgrade,
                http::SessionContext& ctx, http::ConnectionSlot slot,
                Clock::time_point received)
      : Base(std::move(stream), std::move(request), upgrade, ctx,
             std::move(slot), received, "ingest"),
        feed_(std::move(upgrade.feed)) {}

  ~IngestSession() override {
    // Whatever happened to the connection, the input ends here so the job
    // can finish: nothing accepted is lost.
    feed_->End();
  }

 private:
  std::size_t read_message_max() const override {
    return static_cast<std::size_t>(this->ctx().server.max_body_bytes);
  }

  void OnOpen() override {
    this->DoRead();
    this->Pump();
  }

  void OnMessage(bool text, std::string_view data) override {
    if (!text) {
      this->CloseAfterQueue(
          websocket::close_code::unknown_data,
          "binary frames are not supported; send JSON text frames");
      return;
    }
    auto frame = ParseIngestFrame(data);
    if (!frame.ok()) return Reject(frame.error().code, frame.error().message);
    std::vector<nlohmann::json>& items = frame.value().items;
    const bool end = frame.value().end;
    if (ended_) return Reject("stream_ended", "the stream has already ended");
    if (feed_->closed()) {
      return Reject("stream_closed",
                    "the stream accepts no more items (cancelled or shutting "
                    "down); this frame was not accepted");
    }
    pending_ = std::move(items);
    end_pending_ = end;
    TryPushPending();
  }

  // Hands pending_ to the feed; reads the next frame only once all of it is
  // taken. A frame larger than the room — even than jobs.max_pending_items
  // or the feed's queue — goes in piece by piece as room appears (TryPush
  // takes what fits and keeps the rest in pending_), so the limits hold and
  // back-pressure reaches the client through TCP.
  void TryPushPending() {
    if (!pushing_) {
      pushing_ = true;
    }
    // The wake holds the session: while it waits for room no read is
    // outstanding and maybe no write, so nothing else keeps it alive, and a
    // session gone before its pending frame is taken would lose the frame
    // (found by tests/load: FastIngestionProducerIsSlowedNotDropped). The
    // engine calls or drops every kept on_room (room, End, cancel, shutdown
    // all wake it), so this is no cycle.
    bool accepted = feed_->TryPush(
        pending_, [self = std::static_pointer_cast<IngestSession>(
                       this->shared_from_this()),
                   executor = this->executor()] {
          net::post(executor, [self] {
            if (self->pushing_) self->TryPushPending();
          });
        });
    if (!accepted) {
      if (!feed_->closed()) return;  // on_room will call us again
      pushing_ = false;
      const std::size_t lost = pending_.size();
      pending_.clear();
      end_pending_ = false;
      Reject("stream_closed",
             std::to_string(lost) +
                 " items were not accepted: the stream accepts no more items "
                 "(cancelled or shutting down)");
      return;
    }
    pushing_ = false;
    pending_.clear();
    if (end_pending_) {
      end_pending_ = false;
      ended_ = true;
      feed_->End();
      this->Pump();
    }
    ReadNext();
  }

  // An input frame that changes nothing: tell the client, read on.
  void Reject(std::string_view code, const std::string& message) {
    this->Enqueue(ProtocolErrorFrame(code, message));
    ReadNext();
  }

  // Reads the next frame unless our own error frames have filled the queue
  // (then OnWritten resumes): a client that never reads cannot make us
  // buffer without bound.
  void ReadNext() {
    if (this->closing()) return;
    if (this->queued() >= 2 * kMaxQueuedFrames) {
      read_paused_ = true;
      return;
    }
    this->DoRead();
  }

  void OnWritten() override {
    if (read_paused_ && this->queued() < 2 * kMaxQueuedFrames) {
      read_paused_ = false;
      this->DoRead();
    }
    this->Pump();
  }

  void OnGone() override {
    // The client left: end the input so the job completes with what was
    // accepted (its results stay available over HTTP).
    feed_->End();
  }

  std::shared_ptr<engine::IngestFeed> feed_;
  std::vector<nlohmann::json> pending_;  // the frame's items not yet accepted
  bool end_pending_ = false;             // the frame also said end
  bool pushing_ = false;                 // waiting for the feed to have room
  bool ended_ = false;                   // the client sent end
  bool read_paused_ = false;
};

// Both endpoints over one kind of stream.
template <class Stream>
void Start(Stream stream, http::Request request, http::Upgrade upgrade,
           http::SessionContext& ctx, http::ConnectionSlot slot,
           Clock::time_point received) {
  if (upgrade.kind == http::Upgrade::Kind::kIngest) {
    std::make_shared<IngestSession<Stream>>(
        std::move(stream), std::move(request), std::move(upgrade), ctx,
        std::move(slot), received)
        ->Run();
  } else {
    std::make_shared<JobStreamSession<Stream>>(
        std::move(stream), std::move(request), std::move(upgrade), ctx,
        std::move(slot), received, "job_stream")
        ->Run();
  }
}

}  // namespace sluice::ws::detail

#endif  // SLUICE_SERVICE_WS_SESSION_IMPL_HPP_
