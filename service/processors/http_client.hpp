// Defines HttpClient, the http processor's HTTP/1.1 client: one keep-alive
// connection to one host, reconnected when it drops, each exchange
// (resolve, connect, write, read) bounded by one deadline. An exchange is
// an Asio coroutine on a shared IoLoop (SendAsync: thousands in flight on
// one thread) or on a private io_context the calling thread drives (Send);
// the interface stays std-only so processor code compiles without Asio.
#ifndef SLUICE_SERVICE_PROCESSORS_HTTP_CLIENT_HPP_
#define SLUICE_SERVICE_PROCESSORS_HTTP_CLIENT_HPP_

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "service/processors/io_loop.hpp"
#include "service/util/result.hpp"

namespace sluice::processors::internal {

// Where and how to send. Thread-compatible (plain value).
struct HttpClientOptions {
  std::string host;         // resolver form: name, IPv4, or IPv6 unbracketed
  std::uint16_t port = 80;  //
  std::string host_header;  // the Host header ("name:8080", "[::1]:8080")
  // One exchange, from resolving (when there is no open connection) to the
  // last byte of the response, must finish within this.
  std::chrono::milliseconds timeout{10000};
  // A larger response body fails the exchange (kTooLarge).
  std::uint64_t max_body_bytes = 16ull * 1024 * 1024;
  // Sent with every request, after the defaults (User-Agent, Accept,
  // Content-Type for a body), so they may override them.
  std::vector<std::pair<std::string, std::string>> headers;
};

// A complete response. Thread-compatible (plain value).
struct HttpClientResponse {
  unsigned status = 0;
  // The standard reason phrase of a known status ("Service Unavailable"),
  // else the server's, cut to 64 characters.
  std::string reason;
  std::string body;
  std::optional<std::string> retry_after;  // the Retry-After header, if any
};

// Why an exchange produced no response. Thread-compatible (plain value).
struct HttpClientFailure {
  enum Kind {
    kTimeout,     // the deadline passed (resolve, connect, write or read)
    kConnection,  // resolve/connect failed, or the connection broke
    kTooLarge,    // the response header or body was over its limit
    kProtocol,    // the server's bytes were not a valid HTTP/1.1 response
  } kind = kConnection;
  // What failed, for an item error: "connect to 127.0.0.1:9: connection
  // refused", "read from 127.0.0.1:8080: timed out after 2s".
  std::string message;
};

// Thread-compatible: one caller at a time (the worker that owns the
// processor), with at most one exchange in flight. Owns the connection;
// destroying it closes the connection. Requires: no SendAsync exchange is
// in flight when it is destroyed.
class HttpClient {
 public:
  using Response = Result<HttpClientResponse, HttpClientFailure>;
  using Done = std::function<void(Response)>;

  // Exchanges run on `loop` when given (it must outlive the client), else
  // on a private io_context driven by the calling thread.
  explicit HttpClient(HttpClientOptions options, IoLoop* loop = nullptr);
  ~HttpClient();
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  // Sends `method` `target` (origin-form) with `body` (nullptr: none; else
  // sent with Content-Length and, unless a configured header overrides it,
  // Content-Type: application/json) and reads the response. Reuses the
  // open connection when it is still up (checked before writing), else
  // connects first. Blocks the calling thread for at most about
  // options.timeout. Any failure closes the connection, so the next call
  // starts afresh; so does a response without keep-alive. 1xx interim
  // responses are skipped. Returns the response (any status) or why there
  // is none. Never throws.
  Result<HttpClientResponse, HttpClientFailure> Send(std::string_view method,
                                                     std::string_view target,
                                                     const std::string* body);

  // The same exchange without blocking: returns at once (the arguments are
  // copied) and calls `done` with the outcome on the loop's thread, which
  // `done` must not block. Without a loop it runs the exchange first, on
  // the calling thread. Never throws but for allocation failure.
  void SendAsync(std::string_view method, std::string_view target,
                 const std::string* body, Done done);

  // Connections opened so far (for tests and benchmarks: keep-alive reuse).
  std::uint64_t connections_opened() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace sluice::processors::internal

#endif  // SLUICE_SERVICE_PROCESSORS_HTTP_CLIENT_HPP_
