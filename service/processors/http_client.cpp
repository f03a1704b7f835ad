// Implementation of HttpClient (see http_client.hpp).
//
// An exchange is one Asio C++20 coroutine (resolve, connect, write, read)
// on the client's io_context. The socket steps get their deadline from
// beast::tcp_stream::expires_at (the stream closes the socket when it
// passes, completing the operation with beast::error::timeout); resolving,
// which a socket timer cannot interrupt, races a timer of its own.

// GCC's -Wnull-dereference misfires, when optimizing, inside Boost.Asio's
// executor code: a false positive in Asio's code, not ours. Placed before
// every include so that the header code it reports on is covered.
#pragma GCC diagnostic ignored "-Wnull-dereference"

#include "service/processors/http_client.hpp"

#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/field.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/status.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/verb.hpp>
#include <boost/beast/http/write.hpp>
#include <cctype>
#include <exception>
#include <future>
#include <stdexcept>
#include <vector>

#include "service/config/units.hpp"
#include "service/processors/io_loop_impl.hpp"

#ifndef SLUICE_VERSION
#define SLUICE_VERSION "dev"
#endif

namespace sluice::processors::internal {

namespace {

namespace beast = boost::beast;
namespace bhttp = beast::http;
namespace net = boost::asio;
using tcp = net::ip::tcp;
using Clock = std::chrono::steady_clock;
using Failure = HttpClientFailure;

// Response headers beyond this are refused: generous for any API, and it
// bounds the read buffer together with the body limit.
constexpr std::uint32_t kMaxHeaderBytes = 64 * 1024;
// A server that sends more 1xx interim responses than this is misbehaving.
constexpr int kMaxInterimResponses = 8;
// Reason phrases come from the server; a long one would bloat every error
// record of the job.
constexpr std::size_t kMaxReasonChars = 64;

std::string Lowered(std::string s) {
  if (!s.empty()) {
    s[0] = static_cast<char>(std::tolower(static_cast<unsigned char>(s[0])));
  }
  return s;
}

std::string SizeText(std::uint64_t bytes) {
  if (bytes % (1024 * 1024) == 0) {
    return std::to_string(bytes / (1024 * 1024)) + " MiB";
  }
  if (bytes % 1024 == 0) return std::to_string(bytes / 1024) + " KiB";
  return std::to_string(bytes) + " bytes";
}

// The standard phrase of a known status, so error messages are stable
// whatever the server wrote; else the server's own, shortened (it lands in
// every error record of the job).
std::string ReasonPhrase(bhttp::status status, std::string_view server) {
  const std::string_view standard = bhttp::obsolete_reason(status);
  if (!standard.empty() && standard.front() != '<') {  // "<unknown-status>"
    return std::string(standard);
  }
  return std::string(server.substr(0, kMaxReasonChars));
}

// What one exchange produced: a response, or why there is none. Default-
// constructible, as an Asio awaitable's result must be.
struct Exchanged {
  std::optional<HttpClientResponse> response;
  Failure failure;

  Result<HttpClientResponse, Failure> ToResult() && {
    if (response) return std::move(*response);
    return std::move(failure);
  }
};

Exchanged Thrown(std::exception_ptr error) {
  std::string what = "unknown error";
  try {
    std::rethrow_exception(error);
  } catch (const std::exception& e) {
    what = e.what();
  } catch (...) {
  }
  Exchanged out;
  out.failure = Failure{Failure::kConnection, "request failed: " + what};
  return out;
}

// A request's parts, owned by the exchange (which outlives the caller's
// view of them when it runs on the shared loop).
struct Request {
  std::string method;
  std::string target;
  std::optional<std::string> body;
};

}  // namespace

// Every exchange is one C++20 coroutine on the client's io_context: one of
// the shared IoLoop's (each run by one thread, so a client's operations
// need no strand) or, without one, a private context that Send() runs on
// the calling thread until the exchange is done.
struct HttpClient::Impl {
  Impl(HttpClientOptions o, IoLoop* loop)
      : options(std::move(o)),
        // One thread runs a private context too: the hint lets Asio skip
        // work it would do for several.
        own(loop == nullptr ? std::make_unique<net::io_context>(1) : nullptr),
        ioc(loop == nullptr ? *own : loop->impl().Next()),
        shared(loop != nullptr),
        resolver(ioc),
        stream(ioc) {
    boost::system::error_code ec;
    const net::ip::address address = net::ip::make_address(options.host, ec);
    if (!ec) literal = tcp::endpoint(address, options.port);
    endpoint_text =
        (address.is_v6() && !ec ? "[" + options.host + "]" : options.host) +
        ":" + std::to_string(options.port);
    timeout_text = config::FormatDuration(options.timeout);
  }

  // Starts the exchange; `done` runs on the context's thread when it ends.
  template <class Done>
  void Start(Request request, Done done) {
    net::co_spawn(ioc, Exchange(std::move(request)),
                  [this, done = std::move(done)](std::exception_ptr error,
                                                 Exchanged out) mutable {
                    if (error) {
                      // Allocation failure or an unexpected throw from Asio:
                      // drop the connection so no half-finished exchange
                      // leaks into the next one.
                      Close();
                      out = Thrown(error);
                    }
                    done(std::move(out));
                  });
  }

  // Runs an exchange on the private context, on this thread.
  Exchanged RunHere(Request request) {
    std::optional<Exchanged> out;
    Start(std::move(request), [&out](Exchanged e) { out = std::move(e); });
    ioc.restart();
    // Stops as soon as the exchange is done: an abandoned resolve may still
    // be pending, and is left for a later run.
    while (!out && ioc.run_one() != 0) {
    }
    if (!out)
      return Thrown(std::make_exception_ptr(
          std::runtime_error("the exchange did not complete")));
    return std::move(*out);
  }

  void Close() {
    beast::error_code ec;
    stream.socket().shutdown(tcp::socket::shutdown_both, ec);
    stream.close();
    buffer.clear();
    connected = false;
  }

  // A kept-alive connection the server may have closed while it was idle:
  // a non-blocking peek sees the EOF (or stray bytes) without consuming
  // anything. Catching it here means a request is never written into a
  // dead connection, so every attempt the processor counts was a real one.
  bool StillOpen() {
    if (buffer.size() != 0) return false;  // bytes after the last response
    beast::error_code ec;
    char c;
    // The socket is in user non-blocking mode (set in Connect), so this
    // returns would_block at once on a live, quiet connection.
    stream.socket().receive(net::buffer(&c, 1), tcp::socket::message_peek, ec);
    return ec == net::error::would_block || ec == net::error::try_again;
  }

  Failure Fail(Failure::Kind kind, std::string message) {
    Close();
    return Failure{kind, std::move(message)};
  }

  // Classifies a socket-step error: `what` is "connect to h:p" etc.
  Failure SocketFailure(const std::string& what, beast::error_code ec) {
    if (ec == beast::error::timeout) {
      return Fail(Failure::kTimeout,
                  what + ": timed out after " + timeout_text);
    }
    if (ec == bhttp::error::end_of_stream || ec == net::error::eof) {
      return Fail(Failure::kConnection,
                  what +
                      ": the server closed the connection without a "
                      "response");
    }
    if (ec == bhttp::error::partial_message) {
      return Fail(Failure::kConnection,
                  what + ": the server closed the connection mid-response");
    }
    if (ec == bhttp::error::body_limit) {
      return Fail(Failure::kTooLarge,
                  "response body exceeds " + SizeText(options.max_body_bytes));
    }
    if (ec == bhttp::error::header_limit) {
      return Fail(Failure::kTooLarge,
                  "response header exceeds " + SizeText(kMaxHeaderBytes));
    }
    // Any other parser error: the bytes were not an HTTP/1.1 response.
    if (ec.category() ==
        bhttp::make_error_code(bhttp::error::bad_version).category()) {
      return Fail(Failure::kProtocol, "malformed response from " +
                                          endpoint_text + ": " + ec.message());
    }
    return Fail(Failure::kConnection, what + ": " + Lowered(ec.message()));
  }

  // A resolve in flight. Its handler owns it, so a resolve abandoned at the
  // deadline (getaddrinfo cannot be interrupted) completes harmlessly later.
  struct Resolving {
    explicit Resolving(net::io_context& ioc) : wake(ioc) {}
    bool done = false;
    beast::error_code ec;
    tcp::resolver::results_type results;
    net::steady_timer wake;  // fires at the deadline, or cancelled when done
  };

  // Resolves the host into `endpoints`, giving up at `deadline`: the
  // exchange waits on a timer, which the resolve's handler cancels, so the
  // deadline holds even while getaddrinfo runs on. (Asio resolves on one
  // thread per io_context: resolves of the clients on one loop queue
  // behind each other; a literal IP address needs none.)
  net::awaitable<std::optional<Failure>> Resolve(
      Clock::time_point deadline, std::vector<tcp::endpoint>& endpoints) {
    auto r = std::make_shared<Resolving>(ioc);
    r->wake.expires_at(deadline);
    // One thread runs the context: the handler and this coroutine never
    // run at once.
    resolver.async_resolve(
        options.host, std::to_string(options.port),
        [r](beast::error_code ec, tcp::resolver::results_type results) {
          r->done = true;
          r->ec = ec;
          r->results = std::move(results);
          r->wake.cancel();
        });
    beast::error_code ignored;
    co_await r->wake.async_wait(
        net::redirect_error(net::use_awaitable, ignored));
    if (!r->done) {
      resolver.cancel();  // stops it unless getaddrinfo already runs
      co_return Fail(
          Failure::kTimeout,
          "resolve " + options.host + ": timed out after " + timeout_text);
    }
    if (r->ec) {
      co_return Fail(Failure::kConnection, "resolve " + options.host + ": " +
                                               Lowered(r->ec.message()));
    }
    for (const auto& entry : r->results) endpoints.push_back(entry.endpoint());
    co_return std::nullopt;
  }

  // Resolves (unless the host is an IP literal) and connects.
  net::awaitable<std::optional<Failure>> Connect(Clock::time_point deadline) {
    std::vector<tcp::endpoint> endpoints;
    if (literal) {
      endpoints.push_back(*literal);
    } else if (auto failure = co_await Resolve(deadline, endpoints)) {
      co_return failure;
    }
    beast::error_code ec;
    stream.expires_at(deadline);
    co_await stream.async_connect(endpoints,
                                  net::redirect_error(net::use_awaitable, ec));
    if (ec) co_return SocketFailure("connect to " + endpoint_text, ec);
    beast::error_code ignored;
    // Request and response are each written in one go; Nagle would only
    // delay a small request behind the previous response's ACK.
    stream.socket().set_option(tcp::no_delay(true), ignored);
    // For StillOpen's peek; Asio's async operations work either way.
    stream.socket().non_blocking(true, ignored);
    if (ignored) {
      co_return Fail(
          Failure::kConnection,
          "connect to " + endpoint_text + ": " + Lowered(ignored.message()));
    }
    connected = true;
    ++connections;
    co_return std::nullopt;
  }

  bhttp::request<bhttp::string_body> MakeRequest(Request& r) const {
    bhttp::request<bhttp::string_body> req;
    req.method_string(r.method);
    req.target(r.target);
    req.version(11);
    req.set(bhttp::field::host, options.host_header);
    req.set(bhttp::field::user_agent, "sluice/" SLUICE_VERSION);
    req.set(bhttp::field::accept, "application/json");
    if (r.body) {
      req.set(bhttp::field::content_type, "application/json");
      req.body() = std::move(*r.body);
    }
    for (const auto& [name, value] : options.headers) req.set(name, value);
    if (r.body) req.prepare_payload();
    return req;
  }

  net::awaitable<Exchanged> Exchange(Request request) {
    Exchanged out;
    const Clock::time_point deadline = Clock::now() + options.timeout;
    if (connected && !StillOpen()) Close();
    if (!connected) {
      if (auto failure = co_await Connect(deadline)) {
        out.failure = std::move(*failure);
        co_return out;
      }
    }
    bhttp::request<bhttp::string_body> req = MakeRequest(request);
    beast::error_code ec;
    stream.expires_at(deadline);
    co_await bhttp::async_write(stream, req,
                                net::redirect_error(net::use_awaitable, ec));
    if (ec) {
      out.failure = SocketFailure("write to " + endpoint_text, ec);
      co_return out;
    }
    for (int interim = 0;; ++interim) {
      bhttp::response_parser<bhttp::string_body> parser;
      parser.body_limit(options.max_body_bytes);
      parser.header_limit(kMaxHeaderBytes);
      stream.expires_at(deadline);
      co_await bhttp::async_read(stream, buffer, parser,
                                 net::redirect_error(net::use_awaitable, ec));
      if (ec) {
        out.failure = SocketFailure("read from " + endpoint_text, ec);
        co_return out;
      }
      bhttp::response<bhttp::string_body> res = parser.release();
      const unsigned status = res.result_int();
      if (status >= 100 && status < 200 && status != 101 &&
          interim < kMaxInterimResponses) {
        continue;
      }
      out.response = Finish(res);
      co_return out;
    }
  }

  HttpClientResponse Finish(bhttp::response<bhttp::string_body>& res) {
    // The next exchange starts clean: no timer armed on an idle socket.
    stream.expires_never();
    if (!res.keep_alive() || res.result_int() == 101) Close();
    HttpClientResponse out;
    out.status = res.result_int();
    out.reason = ReasonPhrase(res.result(), res.reason());
    if (auto it = res.find(bhttp::field::retry_after); it != res.end()) {
      out.retry_after = std::string(it->value());
    }
    out.body = std::move(res.body());
    return out;
  }

  HttpClientOptions options;
  std::unique_ptr<net::io_context> own;  // without a shared loop
  net::io_context& ioc;
  const bool shared;
  tcp::resolver resolver;
  beast::tcp_stream stream;
  beast::flat_buffer buffer;
  std::optional<tcp::endpoint> literal;  // the host is an IP address
  std::string endpoint_text;             // "127.0.0.1:8080", for messages
  std::string timeout_text;              // "2s"
  bool connected = false;
  std::uint64_t connections = 0;
};

namespace {

Request MakeRequestParts(std::string_view method, std::string_view target,
                         const std::string* body) {
  return Request{
      std::string(method), std::string(target),
      body != nullptr ? std::optional<std::string>(*body) : std::nullopt};
}

}  // namespace

HttpClient::HttpClient(HttpClientOptions options, IoLoop* loop)
    : impl_(std::make_unique<Impl>(std::move(options), loop)) {}

HttpClient::~HttpClient() = default;

Result<HttpClientResponse, HttpClientFailure> HttpClient::Send(
    std::string_view method, std::string_view target, const std::string* body) {
  Request request = MakeRequestParts(method, target, body);
  if (!impl_->shared) return impl_->RunHere(std::move(request)).ToResult();
  // On the shared loop: wait for its thread to finish the exchange.
  std::promise<Exchanged> promise;
  std::future<Exchanged> future = promise.get_future();
  impl_->Start(std::move(request), [&promise](Exchanged out) {
    promise.set_value(std::move(out));
  });
  return future.get().ToResult();
}

void HttpClient::SendAsync(std::string_view method, std::string_view target,
                           const std::string* body, Done done) {
  Request request = MakeRequestParts(method, target, body);
  if (!impl_->shared) {
    done(impl_->RunHere(std::move(request)).ToResult());
    return;
  }
  impl_->Start(std::move(request), [done = std::move(done)](Exchanged out) {
    done(std::move(out).ToResult());
  });
}

std::uint64_t HttpClient::connections_opened() const {
  return impl_->connections;
}

}  // namespace sluice::processors::internal
