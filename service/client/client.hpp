// Defines sluice::client, the CLI's client of a sluice server: the server
// address (ParseServer), one plain HTTP/1.1 exchange (Request), the error
// text of a refused request (ErrorMessage), and the ingestion WebSocket
// (Ingest over a FrameSource). Plain http only: https/wss are refused by
// ParseServer. The header names no Beast type, so its users compile cheaply.
#ifndef SLUICE_SERVICE_CLIENT_CLIENT_HPP_
#define SLUICE_SERVICE_CLIENT_CLIENT_HPP_

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

#include "service/util/result.hpp"

namespace sluice::client {

// A server to talk to, and the token to show it. Thread-compatible (plain
// value).
struct Server {
  std::string host;       // as written in the URL (brackets stripped)
  std::string port;       // "8080" when the URL gives none
  std::string base_path;  // the URL's path without its trailing '/'; "" usually
  std::string token;      // sent as `Authorization: Bearer` when not empty
  // How long a connect, a request's write or its answer's read may take
  // (the WebSocket's connect and upgrade too) before it fails.
  std::chrono::milliseconds timeout{30000};

  // "host:port", for messages that say where a connection failed.
  std::string Where() const;
};

// Parses `url` ("http://host[:port][/path]"; "host:port" alone is taken as
// http) with Boost.URL and attaches `token`. Fails (code "usage") for a
// URL that does not parse, has no host, or whose scheme is not http/ws
// (https and wss: "not supported by the CLI yet").
Result<Server> ParseServer(std::string_view url, std::string token);

// `text` with every byte but A-Z a-z 0-9 - _ . ~ percent-encoded, to put a
// pipeline name or job id in a request target. Pure.
std::string PercentEncode(std::string_view text);

// An HTTP answer. Thread-compatible (plain value).
struct Response {
  unsigned status = 0;
  std::string body;
  // Header fields, names lower-cased.
  std::map<std::string, std::string> headers;
};

// Sends `method target` (target relative to server.base_path, e.g.
// "/v1/jobs") with `Accept: accept` on a new connection and reads the whole
// answer. Any HTTP status is a value; fails (code "connection", a message
// that names host:port and the system error, or "timed out after 30s")
// only when the exchange itself fails: resolution, connection, write or
// read, the last three each within server.timeout.
Result<Response> Request(const Server& server, std::string_view method,
                         std::string_view target,
                         std::string_view accept = "application/json");

// What a refused request says: "code: message" from the API's
// {"error":{"code","message"}} body, else "HTTP <status>: <body>".
std::string ErrorMessage(const Response& response);

// One frame of an ingestion stream. Thread-compatible (plain value).
struct Frame {
  std::string text;          // e.g. {"items":[...]}
  std::size_t items = 0;     // how many items it holds
  std::uint64_t offset = 0;  // the input's byte offset of its first item
};

// Supplies the frames of an ingestion stream. Next() is called on one
// thread at a time (Ingest's reader thread); Cancel() from any.
class FrameSource {
 public:
  virtual ~FrameSource() = default;
  // The next frame, or nullopt when the input has ended; an error (code
  // "invalid_input") when the input is malformed, (code "cancelled") once
  // Cancel() was called. May block while it waits for input.
  virtual Result<std::optional<Frame>> Next() = 0;
  // Makes a Next() that waits for input, and every later one, return
  // "cancelled" soon. Thread-safe.
  virtual void Cancel() {}
};

// What the ingestion stream reports as it goes. Called on the stream's
// network thread (the caller of Ingest); any callback may be empty.
struct StreamEvents {
  // Once, with the job id of the 101 (X-Sluice-Job).
  std::function<void(const std::string& job_id)> on_job;
  // Each frame other than `done`: result, error (an item's, with "seq", or a
  // refused frame's, with "code"), aggregate.
  std::function<void(const nlohmann::json& frame)> on_frame;
  // After each frame has been written: how many items it held; `end` for
  // the closing {"end":true} (0 items), after which nothing more is sent.
  std::function<void(std::size_t items, bool end)> on_sent;
};

// The end of an ingestion stream. Thread-compatible (plain value).
struct StreamOutcome {
  nlohmann::json job;       // the `done` frame's status object
  std::string input_error;  // set when source.Next() failed
};

// Opens `GET /v1/stream?pipeline=P` on `server`, sends source's frames then
// {"end":true} while reading the server's frames concurrently (two
// coroutines on the calling thread, so the server's back-pressure never
// deadlocks the client), and returns once the server has sent `done` and
// closed. The source is read on a thread of its own a few frames ahead
// (waiting for input never holds up the server's frames; when the
// server's back-pressure holds up the writer, the reading stops too); it
// is cancelled and joined before Ingest returns.
// After a `stream_closed` error frame (the job failed or was cancelled) it
// stops reading the source and sends {"end":true}.
// When the source fails, what was sent is ended with {"end":true} and the
// error's message is returned in the outcome beside the job. Fails when
// the upgrade is refused (code "refused", the server's ErrorMessage), the
// connection fails (code "connection": host:port and the system error), or
// the stream closes before `done` (code "closed": the close code and
// reason).
Result<StreamOutcome> Ingest(const Server& server, std::string_view pipeline,
                             FrameSource& source, const StreamEvents& events);

}  // namespace sluice::client

#endif  // SLUICE_SERVICE_CLIENT_CLIENT_HPP_
