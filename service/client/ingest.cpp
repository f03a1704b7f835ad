// Ingest: the client side of the ingestion WebSocket (docs/api.md
// "WebSocket: ingestion stream"), a reader and a writer coroutine on one
// io_context run by the calling thread, and a thread that reads the input
// a few frames ahead of the writer (see client.hpp).
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/buffers_to_string.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/websocket.hpp>
#include <cctype>
#include <chrono>
#include <cstddef>
#include <deque>
#include <exception>
#include <optional>
#include <semaphore>
#include <stop_token>
#include <string>
#include <thread>
#include <utility>

#include "service/client/client.hpp"
#include "service/client/client_detail.hpp"

namespace sluice::client {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace websocket = boost::beast::websocket;
using tcp = asio::ip::tcp;
using Socket = websocket::stream<beast::tcp_stream>;
constexpr auto kNoThrow = asio::as_tuple(asio::use_awaitable);

// Frames the reader thread may have read ahead of the writer: bounds the
// client's memory, and stops the reading while the server holds back.
constexpr std::ptrdiff_t kFramesAhead = 4;

using Next = Result<std::optional<Frame>>;

// What the two coroutines share; both run on the one thread, as do the
// handlers the reader thread posts. Only `slots` is touched by both threads.
struct Session {
  Session(const Server& s, FrameSource& src, const StreamEvents& ev,
          asio::io_context& io)
      : server(s), source(src), events(ev), ws(io), wake(io) {}

  const Server& server;
  FrameSource& source;
  const StreamEvents& events;
  Socket ws;
  std::deque<Next> ready;   // what the reader thread read, in order
  asio::steady_timer wake;  // cancelled when `ready` gets a frame
  std::counting_semaphore<kFramesAhead> slots{kFramesAhead};
  std::optional<nlohmann::json> job;  // the `done` frame's
  std::optional<Error> failure;       // the first failure, if any
  std::string input_error;
  bool writer_done = false;
  // The largest frame the writer began: when the server closes with 1009,
  // the one that passed its limit (every smaller frame went through).
  struct Sent {
    std::size_t bytes = 0;
    std::size_t items = 0;
    std::uint64_t offset = 0;
  } largest;
  // Set when the connection broke while the writer sent a frame.
  std::optional<boost::system::error_code> cut_off;
  // Set once the server said the stream takes no more items (its job
  // failed or was cancelled, or the server drains): the rest would only be
  // refused frame by frame.
  bool stop_sending = false;

  void Fail(Error error) {
    if (!failure) failure = std::move(error);
  }
};

// The upgrade request's target: base path, /v1/stream, the pipeline.
std::string StreamTarget(const Server& server, std::string_view pipeline) {
  return server.base_path + "/v1/stream?pipeline=" + PercentEncode(pipeline);
}

// Resolves, connects and upgrades; false (with s.failure set) on failure.
asio::awaitable<bool> Open(Session& s, std::string target) {
  tcp::resolver resolver(co_await asio::this_coro::executor);
  auto [rec, endpoints] =
      co_await resolver.async_resolve(s.server.host, s.server.port, kNoThrow);
  if (rec) {
    s.Fail({"connection", detail::Failure(s.server, "cannot resolve", rec)});
    co_return false;
  }
  auto& tcp_stream = beast::get_lowest_layer(s.ws);
  tcp_stream.expires_after(s.server.timeout);
  auto [cec, ep] = co_await tcp_stream.async_connect(endpoints, kNoThrow);
  if (cec) {
    s.Fail({"connection", detail::Failure(s.server, "cannot connect to", cec)});
    co_return false;
  }
  // From here the WebSocket's own timeouts apply (Beast wants the TCP
  // stream's off): the upgrade within server.timeout, no idle limit, as
  // results may be long in coming.
  tcp_stream.expires_never();
  auto timeouts =
      websocket::stream_base::timeout::suggested(beast::role_type::client);
  timeouts.handshake_timeout = s.server.timeout;
  s.ws.set_option(timeouts);
  s.ws.set_option(websocket::stream_base::decorator(
      [token = s.server.token](websocket::request_type& req) {
        req.set(beast::http::field::user_agent, "sluice/" SLUICE_VERSION);
        if (!token.empty()) {
          req.set(beast::http::field::authorization, "Bearer " + token);
        }
      }));
  s.ws.read_message_max(0);  // records may be large: no client-side cap
  websocket::response_type res;
  auto [hec] =
      co_await s.ws.async_handshake(res, s.server.Where(), target, kNoThrow);
  if (hec == websocket::error::upgrade_declined) {
    Response refused{res.result_int(), res.body(), {}};
    s.Fail({"refused", ErrorMessage(refused)});
    co_return false;
  }
  if (hec) {
    s.Fail({"connection", detail::Failure(s.server, "no WebSocket from", hec)});
    co_return false;
  }
  if (s.events.on_job) s.events.on_job(std::string(res["X-Sluice-Job"]));
  s.ws.text(true);
  co_return true;
}

// The reader thread: source.Next() until the input ends or fails, each
// result posted to the io thread, at most kFramesAhead not yet taken.
void ReadAhead(std::stop_token stop, Session& s, asio::io_context& io) {
  for (;;) {
    while (!s.slots.try_acquire_for(std::chrono::milliseconds(100))) {
      if (stop.stop_requested()) return;
    }
    if (stop.stop_requested()) return;
    Next next = s.source.Next();
    bool last = !next.ok() || !*next;
    asio::post(io, [&s, next = std::move(next)]() mutable {
      s.ready.push_back(std::move(next));
      s.wake.cancel();
    });
    if (last) return;
  }
}

// The reader thread's next result, once there is one.
asio::awaitable<Next> Take(Session& s) {
  while (s.ready.empty()) {
    s.wake.expires_at(asio::steady_timer::time_point::max());
    co_await s.wake.async_wait(kNoThrow);  // cancelled by a new frame
  }
  Next next = std::move(s.ready.front());
  s.ready.pop_front();
  s.slots.release();
  co_return next;
}

// Sends the source's frames, then {"end":true}. A bad input ends the
// stream too (what was sent is processed), and is reported after.
asio::awaitable<void> Write(Session& s) {
  for (;;) {
    Next frame = std::optional<Frame>();
    if (!s.stop_sending) frame = co_await Take(s);
    if (!frame.ok()) s.input_error = frame.error().message;
    bool last = !frame.ok() || !*frame;
    std::string text =
        last ? std::string(R"({"end":true})") : std::move((*frame)->text);
    if (!last && text.size() > s.largest.bytes) {
      s.largest = {text.size(), (*frame)->items, (*frame)->offset};
    }
    auto [ec, n] = co_await s.ws.async_write(asio::buffer(text), kNoThrow);
    // The reader says why the connection ended: the server's close frame
    // (e.g. 1009) rather than this write's broken pipe.
    if (ec) {
      if (!last) s.cut_off = ec;
      break;
    }
    if (s.events.on_sent) s.events.on_sent(last ? 0 : (*frame)->items, last);
    if (last) break;
  }
  s.writer_done = true;
}

// What a 1009 close means for what was sent.
std::string TooBigHint(const Session::Sent& largest) {
  if (largest.items == 1) {
    return ": the item at byte offset " + std::to_string(largest.offset) +
           " (" + std::to_string(largest.bytes) +
           " bytes as a frame) is larger than the server's limit "
           "(server.max_body_bytes); a smaller --batch-bytes cannot help";
  }
  return ": a frame passed the server's max_body_bytes; lower --batch-bytes";
}

// Why the server closed, e.g. "... (1009 message too big): ...".
std::string ClosedEarly(const websocket::close_reason& reason,
                        const Session::Sent& largest) {
  std::string text = "the server closed the stream before it was done (" +
                     std::to_string(reason.code);
  bool too_big = reason.code == websocket::close_code::too_big;
  if (!reason.reason.empty()) {
    text += " ";
    text.append(reason.reason.data(), reason.reason.size());
  } else if (too_big) {
    text += " message too big";
  }
  text += ")";
  if (too_big) text += TooBigHint(largest);
  return text;
}

// Why the stream ended before `done`. The server's close frame, once read,
// says it best, even when the read then failed on the broken connection
// (answering the close while the writer was cut off mid-frame).
Error EndedEarly(Session& s, const boost::system::error_code& ec) {
  if (ec == websocket::error::closed ||
      s.ws.reason().code != websocket::close_code::none) {
    return {"closed", ClosedEarly(s.ws.reason(), s.largest)};
  }
  if (s.cut_off) {
    // Beast gave the writer's failure to the first operation and aborted
    // the read before it could see the close frame; a server that cuts
    // the connection while a frame comes in has, all but surely, refused
    // it for its size.
    return {"closed",
            detail::Failure(s.server, "the connection to", *s.cut_off) +
                " while a frame was being sent (the server probably closed "
                "the stream with 1009 message too big)" +
                TooBigHint(s.largest)};
  }
  return {"connection", detail::Failure(s.server, "connection to", ec)};
}

// Reads frames until the server closes the stream.
asio::awaitable<void> Read(Session& s) {
  for (;;) {
    beast::flat_buffer buffer;
    auto [ec, n] = co_await s.ws.async_read(buffer, kNoThrow);
    if (ec) {
      if (!s.job) s.Fail(EndedEarly(s, ec));
      break;
    }
    auto frame = nlohmann::json::parse(beast::buffers_to_string(buffer.data()),
                                       nullptr, false);
    if (frame.is_object() && frame.value("type", "") == "done") {
      s.job = frame.value("job", nlohmann::json::object());
      continue;
    }
    if (frame.is_object() && frame.value("code", "") == "stream_closed") {
      s.stop_sending = true;
    }
    if (s.events.on_frame) {
      s.events.on_frame(frame);
    }
  }
  // A writer still waiting on a dead connection gives up now.
  boost::system::error_code ignored;
  beast::get_lowest_layer(s.ws).socket().close(ignored);
}

asio::awaitable<void> Run(Session& s, std::string target) {
  if (!co_await Open(s, std::move(target))) co_return;
  auto executor = co_await asio::this_coro::executor;
  asio::co_spawn(executor, Write(s), asio::detached);
  co_await Read(s);
}

}  // namespace

Result<StreamOutcome> Ingest(const Server& server, std::string_view pipeline,
                             FrameSource& source, const StreamEvents& events) {
  asio::io_context io(1);
  Session session(server, source, events, io);
  std::jthread reader(
      [&session, &io](std::stop_token stop) { ReadAhead(stop, session, io); });
  std::exception_ptr crashed;
  asio::co_spawn(io, Run(session, StreamTarget(server, pipeline)),
                 [&crashed, &io](std::exception_ptr e) {
                   crashed = std::move(e);
                   // The stream's own timers (a handshake's that failed)
                   // may still be pending: the run is over all the same.
                   io.stop();
                 });
  io.run();
  // The reader may wait on the input (a quiet pipe) or on a slot.
  reader.request_stop();
  source.Cancel();
  reader.join();
  if (crashed) std::rethrow_exception(crashed);  // a bug, not a failure
  if (session.job) {
    return StreamOutcome{std::move(*session.job),
                         std::move(session.input_error)};
  }
  if (session.failure) return std::move(*session.failure);
  return Error{"closed", "the stream ended without a done frame"};
}

}  // namespace sluice::client
