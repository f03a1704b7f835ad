// Implementation of HttpClient (see http_client.hpp).
//
// Every step starts one async operation and runs this client's private
// io_context on the calling thread until that operation's handler has run.
// The socket steps get their deadline from beast::tcp_stream::expires_at
// (the stream closes the socket when it passes, completing the operation
// with beast::error::timeout); resolving, which a socket timer cannot
// interrupt, is waited for with run_one_until and abandoned at the
// deadline (its handler owns its state, so a late completion is harmless).

// GCC's -Wnull-dereference misfires, when optimizing, inside Boost.Asio's
// executor code: a false positive in Asio's code, not ours. Placed before
// every include so that the header code it reports on is covered.
#pragma GCC diagnostic ignored "-Wnull-dereference"

#include "service/processors/http_client.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
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
#include <vector>

#include "service/config/units.hpp"

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

}  // namespace

struct HttpClient::Impl {
  explicit Impl(HttpClientOptions o)
      : options(std::move(o)),
        // One thread runs this io_context: the hint lets Asio skip work it
        // would do for several.
        ioc(1),
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

  // Runs handlers until `done` (set by the handler of the operation just
  // started). Socket operations always complete (the stream's timer sees
  // to that), so this cannot wait beyond the deadline.
  void Drive(const bool& done) {
    ioc.restart();
    while (!done) {
      if (ioc.run_one() == 0) break;  // out of work: nothing left to wait for
    }
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

  // Resolves (unless the host is an IP literal) and connects.
  std::optional<Failure> Connect(Clock::time_point deadline) {
    std::vector<tcp::endpoint> endpoints;
    if (literal) {
      endpoints.push_back(*literal);
    } else {
      struct State {
        bool done = false;
        beast::error_code ec;
        tcp::resolver::results_type results;
      };
      auto state = std::make_shared<State>();
      resolver.async_resolve(
          options.host, std::to_string(options.port),
          [state](beast::error_code ec, tcp::resolver::results_type r) {
            state->done = true;
            state->ec = ec;
            state->results = std::move(r);
          });
      ioc.restart();
      while (!state->done && ioc.run_one_until(deadline) != 0) {
      }
      if (!state->done) {
        resolver.cancel();
        return Fail(Failure::kTimeout, "resolve " + options.host +
                                           ": timed out after " + timeout_text);
      }
      if (state->ec) {
        return Fail(Failure::kConnection, "resolve " + options.host + ": " +
                                              Lowered(state->ec.message()));
      }
      for (const auto& entry : state->results) {
        endpoints.push_back(entry.endpoint());
      }
    }

    bool done = false;
    beast::error_code ec;
    stream.expires_at(deadline);
    stream.async_connect(endpoints,
                         [&](beast::error_code e, const tcp::endpoint&) {
                           ec = e;
                           done = true;
                         });
    Drive(done);
    if (!done) ec = net::error::operation_aborted;
    if (ec) return SocketFailure("connect to " + endpoint_text, ec);
    beast::error_code ignored;
    // Request and response are each written in one go; Nagle would only
    // delay a small request behind the previous response's ACK.
    stream.socket().set_option(tcp::no_delay(true), ignored);
    // For StillOpen's peek; Asio's async operations work either way.
    stream.socket().non_blocking(true, ignored);
    if (ignored) {
      return Fail(Failure::kConnection, "connect to " + endpoint_text + ": " +
                                            Lowered(ignored.message()));
    }
    connected = true;
    ++connections;
    return std::nullopt;
  }

  Result<HttpClientResponse, Failure> Exchange(std::string_view method,
                                               std::string_view target,
                                               const std::string* body) {
    const Clock::time_point deadline = Clock::now() + options.timeout;
    if (connected && !StillOpen()) Close();
    if (!connected) {
      if (auto failure = Connect(deadline)) return std::move(*failure);
    }

    bhttp::request<bhttp::string_body> req;
    req.method_string(method);
    req.target(target);
    req.version(11);
    req.set(bhttp::field::host, options.host_header);
    req.set(bhttp::field::user_agent, "sluice/" SLUICE_VERSION);
    req.set(bhttp::field::accept, "application/json");
    if (body != nullptr) {
      req.set(bhttp::field::content_type, "application/json");
      req.body() = *body;
    }
    for (const auto& [name, value] : options.headers) req.set(name, value);
    if (body != nullptr) req.prepare_payload();

    bool done = false;
    beast::error_code ec;
    stream.expires_at(deadline);
    bhttp::async_write(stream, req, [&](beast::error_code e, std::size_t) {
      ec = e;
      done = true;
    });
    Drive(done);
    if (!done) ec = net::error::operation_aborted;
    if (ec) return SocketFailure("write to " + endpoint_text, ec);

    for (int interim = 0;; ++interim) {
      bhttp::response_parser<bhttp::string_body> parser;
      parser.body_limit(options.max_body_bytes);
      parser.header_limit(kMaxHeaderBytes);
      done = false;
      stream.expires_at(deadline);
      bhttp::async_read(stream, buffer, parser,
                        [&](beast::error_code e, std::size_t) {
                          ec = e;
                          done = true;
                        });
      Drive(done);
      if (!done) ec = net::error::operation_aborted;
      if (ec) return SocketFailure("read from " + endpoint_text, ec);
      bhttp::response<bhttp::string_body> res = parser.release();
      const unsigned status = res.result_int();
      if (status >= 100 && status < 200 && status != 101 &&
          interim < kMaxInterimResponses) {
        continue;
      }
      // The next exchange starts clean: no timer armed on an idle socket.
      stream.expires_never();
      if (!res.keep_alive() || status == 101) Close();
      HttpClientResponse out;
      out.status = status;
      out.reason = ReasonPhrase(res.result(), res.reason());
      if (auto it = res.find(bhttp::field::retry_after); it != res.end()) {
        out.retry_after = std::string(it->value());
      }
      out.body = std::move(res.body());
      return out;
    }
  }

  HttpClientOptions options;
  net::io_context ioc;
  tcp::resolver resolver;
  beast::tcp_stream stream;
  beast::flat_buffer buffer;
  std::optional<tcp::endpoint> literal;  // the host is an IP address
  std::string endpoint_text;             // "127.0.0.1:8080", for messages
  std::string timeout_text;              // "2s"
  bool connected = false;
  std::uint64_t connections = 0;
};

HttpClient::HttpClient(HttpClientOptions options)
    : impl_(std::make_unique<Impl>(std::move(options))) {}

HttpClient::~HttpClient() = default;

Result<HttpClientResponse, HttpClientFailure> HttpClient::Send(
    std::string_view method, std::string_view target, const std::string* body) {
  try {
    return impl_->Exchange(method, target, body);
  } catch (const std::exception& e) {
    // Allocation failure or an unexpected throw from Asio: drop the
    // connection so no half-finished exchange leaks into the next one.
    try {
      impl_->Close();
    } catch (...) {
    }
    return HttpClientFailure{HttpClientFailure::kConnection,
                             std::string("request failed: ") + e.what()};
  }
}

std::uint64_t HttpClient::connections_opened() const {
  return impl_->connections;
}

}  // namespace sluice::processors::internal
