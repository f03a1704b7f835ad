// Test clients for the integration suite: a Beast HTTP/1.1 client, raw
// socket exchanges (for requests a well-behaved client would never send),
// a Beast WebSocket client with read timeouts, and TestServer, which runs
// the real service (app::App) on 127.0.0.1:0. The interface is std-only so test
// files stay cheap to compile; Beast lives in client.cpp.
#ifndef SLUICE_TESTS_INTEGRATION_CLIENT_HPP_
#define SLUICE_TESTS_INTEGRATION_CLIENT_HPP_

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "service/app/app.hpp"

namespace sluice::itest {

using Headers = std::vector<std::pair<std::string, std::string>>;
using namespace std::chrono_literals;

// One HTTP response. Thread-compatible.
struct HttpResponse {
  int status = 0;                              // 0: no response (error)
  std::map<std::string, std::string> headers;  // names lower-cased
  std::string body;
  std::string error;  // what went wrong when status == 0

  nlohmann::json json() const { return nlohmann::json::parse(body); }
  std::string header(const std::string& lower_name) const {
    auto it = headers.find(lower_name);
    return it == headers.end() ? std::string() : it->second;
  }
};

// A keep-alive HTTP/1.1 connection to 127.0.0.1:port. Thread-compatible
// (one thread at a time). Reconnects once if the server closed the
// connection between requests.
class HttpClient {
 public:
  explicit HttpClient(std::uint16_t port);
  ~HttpClient();
  HttpResponse Request(const std::string& method, const std::string& target,
                       const std::string& body = "",
                       const Headers& headers = {},
                       std::chrono::milliseconds timeout = 30s);
  // Whether the last response left the connection open.
  bool open() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// One request on a fresh connection.
HttpResponse Http(std::uint16_t port, const std::string& method,
                  const std::string& target, const std::string& body = "",
                  const Headers& headers = {});

// Writes `bytes` as they are, then reads until the server closes the
// connection or `timeout` passes; returns what was read.
std::string RawExchange(std::uint16_t port, const std::string& bytes,
                        std::chrono::milliseconds timeout = 5s);

// As RawExchange, but ends the sending side after the bytes (so the server
// sees the end of the stream) and reads until the server closes.
std::string RawExchangeToEnd(std::uint16_t port, const std::string& bytes,
                             std::chrono::milliseconds timeout = 5s);

// The status of each complete HTTP response in `raw`, in order (a response
// cut short at the end is not counted).
std::vector<int> RawStatuses(const std::string& raw);

// The status code of a raw HTTP response ("HTTP/1.1 413 ..." -> 413), or 0.
int RawStatus(const std::string& raw);

// A WebSocket client. Thread-compatible.
class WsClient {
 public:
  // Connects and performs the upgrade handshake for `target`.
  WsClient(std::uint16_t port, const std::string& target,
           const Headers& headers = {});
  ~WsClient();

  // 101 when upgraded; else the HTTP status of the refusal (0: no answer).
  int handshake_status() const;
  // The refusal's body, or the 101's header `lower_name`.
  const std::string& refusal_body() const;
  std::string handshake_header(const std::string& lower_name) const;

  // The next text frame; nullopt when the server closed the connection
  // (close_code() tells how), on an error, or after `timeout` (timed_out()).
  std::optional<std::string> Read(std::chrono::milliseconds timeout = 20s);
  // Reads frames until the server closes; returns them.
  std::vector<nlohmann::json> ReadAll(std::chrono::milliseconds timeout = 60s);

  void Send(const std::string& text);
  void SendBinary(const std::string& data);
  // A normal close (1000) from our side.
  void Close();

  int close_code() const;  // -1 until the server closed
  const std::string& close_reason() const;
  bool timed_out() const;
  // Why the last Read() returned nullopt ("" after a close frame or a
  // timeout), e.g. "Connection reset by peer".
  const std::string& read_error() const;
  // The code of a close frame the server sent, even when the connection
  // then failed before our reply could go out (a server failing the
  // connection — 1007, 1009 — may close TCP right after its close frame,
  // which close_code() reports as -1); -1 if none arrived.
  int received_close_code() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// The real server on 127.0.0.1:<any port>, started. Shut down (drained) on
// destruction. Thread-safe as app::App.
class TestServer {
 public:
  // `yaml`: a config (see kTestConfig); server.listen is overridden.
  explicit TestServer(const std::string& yaml);
  ~TestServer();
  std::uint16_t port() const { return server_->port(); }
  app::App& server() { return *server_; }

 private:
  std::unique_ptr<app::App> server_;
};

// Pipelines every test can use:
//   echo   passthrough, 2 workers
//   words  split the item (a string) into words; aggregate count
//   hash   sha256 of /text into /hash (an item without /text is an error)
//   slow   delay 50ms, 1 worker
inline constexpr const char* kTestConfig = R"(
server:
  listen: "127.0.0.1:0"
  io_threads: 2
  max_body_bytes: 4096
  max_header_bytes: 2048
  shutdown_grace: 5s
jobs: { max_pending_items: 100000 }
pipelines:
  - name: echo
    stages:
      - { name: pass, processor: { type: passthrough }, workers: 2 }
  - name: words
    stages:
      - { name: split, processor: { type: split, field: "" } }
    aggregate: { type: count }
  - name: hash
    stages:
      - { name: digest, processor: { type: sha256, field: /text, target: /hash } }
  - name: slow
    stages:
      - { name: sleep, processor: { type: delay, duration: 50ms }, workers: 1 }
)";

// Polls GET /v1/jobs/ID until its state is final; returns the status.
nlohmann::json WaitForJob(std::uint16_t port, const std::string& id,
                          std::chrono::milliseconds timeout = 30s,
                          const Headers& headers = {});

// The value of one sample line of /metrics text ("name{labels}"), or -1.
double MetricValue(const std::string& metrics_text, const std::string& series);

}  // namespace sluice::itest

#endif  // SLUICE_TESTS_INTEGRATION_CLIENT_HPP_
