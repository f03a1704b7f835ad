// sluice::http::SessionContext, PlainStream/TlsStream and StartHttpSession:
// the HTTP/1.1 protocol side of one accepted connection (the TLS handshake
// when the port serves TLS, reading requests with limits and timeouts,
// keep-alive, 100-continue, the asynchronous ?wait, WebSocket hand-off, the
// graceful close). What a request means is decided by Router (router.hpp);
// this layer only moves bytes.
#ifndef SLUICE_SERVICE_HTTP_SESSION_HPP_
#define SLUICE_SERVICE_HTTP_SESSION_HPP_

#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>
#include <chrono>

#include "service/config/config.hpp"
#include "service/http/connections.hpp"
#include "service/http/router.hpp"

namespace sluice::metrics {
class Metrics;
}  // namespace sluice::metrics

namespace sluice::http {

// The two transports a connection can have: the port is either plain or TLS
// (server.tls), never both, so no session detects anything. Sessions are
// templates over these two types.
using PlainStream = boost::beast::tcp_stream;
using TlsStream = boost::beast::ssl_stream<boost::beast::tcp_stream>;

struct SessionContext;

// Who takes over a connection the router upgraded to WebSocket: the ws
// room's StartWebSocketSession (ws/session.hpp), wired in by the app root so
// that http does not depend on ws. Each function gets the stream (no timer
// running), the upgrade request and decision, the context, the
// connection's slot and when the request was read; it must return at once.
// Thread-compatible (two function pointers).
struct WebSocketHandoff {
  using Clock = std::chrono::steady_clock;
  void (*plain)(PlainStream, Request, Upgrade, SessionContext&, ConnectionSlot,
                Clock::time_point) = nullptr;
  void (*tls)(TlsStream, Request, Upgrade, SessionContext&, ConnectionSlot,
              Clock::time_point) = nullptr;
};

// What every session of one server shares. The referenced objects are
// owned by the Server and outlive every session (the server joins its io
// threads and destroys pending handlers before them). Thread-safe to use
// from all sessions: each referenced type is thread-safe (an OpenSSL
// SSL_CTX may back any number of connections on any threads once set up).
struct SessionContext {
  Router& router;
  metrics::Metrics& metrics;
  ConnectionRegistry& connections;
  const config::ServerConfig& server;
  // The server's certificate and TLS settings when server.tls is set: every
  // connection then speaks TLS. nullptr: plain HTTP and WebSocket.
  boost::asio::ssl::context* tls = nullptr;
  WebSocketHandoff websocket;
};

// Serves HTTP on `socket` (whose executor must be a strand of the server's
// io_context: the session's handlers run on it, one at a time) until the
// peer closes, a timeout (server.idle_timeout) passes, an unrecoverable
// error, Stop() from a shutdown, or an upgrade hands the connection to a
// WebSocket session. `slot` is the connection's place in ctx.connections,
// held until the socket closes. Returns at once.
//
// With ctx.tls the session first performs the TLS server handshake, which
// must complete within server.idle_timeout (a peer that is not speaking TLS,
// e.g. plain HTTP, fails it at its first bytes and is dropped), and ends with
// a TLS close_notify exchange bounded by a short timeout.
//
// Limits: a header block over server.max_header_bytes gets 431, a body over
// server.max_body_bytes 413 (from Content-Length before the body is read,
// or while a chunked body is read), a malformed request 400; each then
// closes the connection.
void StartHttpSession(boost::asio::ip::tcp::socket socket, SessionContext& ctx,
                      ConnectionSlot slot);

}  // namespace sluice::http

#endif  // SLUICE_SERVICE_HTTP_SESSION_HPP_
