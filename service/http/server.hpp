// sluice::http::Server: the HTTP side of the service behind one listening
// socket — the Boost.Asio io_context and its threads, the listener (HTTP
// and WebSocket on one port, contract §C2-§C3; HTTPS and WSS instead when a
// TLS context is given) and the lifecycle of contract §C6 (drain on
// SIGTERM/SIGINT or Shutdown()). It builds none of the parts it serves:
// the composition root (app/app.hpp) hands it the engine, router, metrics,
// TLS context and the WebSocket hand-off.
#ifndef SLUICE_SERVICE_HTTP_SERVER_HPP_
#define SLUICE_SERVICE_HTTP_SERVER_HPP_

#include <boost/asio/ssl/context.hpp>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "service/config/config.hpp"
#include "service/http/session.hpp"
#include "service/util/result.hpp"

namespace sluice::engine {
class Engine;
}  // namespace sluice::engine

namespace sluice::http {

// How to run a Server beyond its config. Thread-compatible (plain value).
struct ServerOptions {
  // Listen address overriding server.listen ("" = use the config).
  std::string listen;
  // Install SIGINT/SIGTERM handlers that start the drain (the `serve`
  // command does; tests call Shutdown() instead).
  bool handle_signals = false;
  // With handle_signals: SIGHUP calls this (the config reload; the `serve`
  // command sets it), on a network thread, one call at a time. Empty:
  // SIGHUP is left alone (its default ends the process).
  std::function<void()> on_hangup;
  // Runs on the drain thread after the engine stopped taking jobs and before
  // its Shutdown: cluster mode stops pulling items there, so what it holds
  // is finished or handed back before the engine stops. May be empty.
  std::function<void()> before_engine_shutdown;
};

// What the server serves, owned by the caller and outliving the Server.
// Thread-compatible (references and pointers only).
struct ServerParts {
  engine::Engine& engine;  // drained and shut down by the server's drain
  Router& router;
  metrics::Metrics& metrics;
  // server.tls's context (http/tls.hpp): every connection speaks TLS.
  // nullptr: plain HTTP and WebSocket.
  boost::asio::ssl::context* tls = nullptr;
  // Who takes over a connection the router upgraded to WebSocket. Both
  // functions are required.
  WebSocketHandoff websocket;
};

// Thread-safety: Start() and Wait() are for the owning thread; Shutdown(),
// port() and address() may be called from any thread.
class Server {
 public:
  // Binds and listens on the address (so port() is known before Start()).
  // Requires a validated config (config::LoadConfig*). Failure:
  // Error{"listen", ...} when the address is invalid or cannot be bound.
  static Result<std::unique_ptr<Server>> Create(
      const config::ServerConfig& config, ServerParts parts,
      ServerOptions options = {});

  // Shutdown() then Wait(). Blocks for up to server.shutdown_grace plus a
  // few seconds. The io_context goes with it, and with it every session.
  ~Server();

  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // The bound port (useful with port 0) and "host:port" as bound.
  std::uint16_t port() const;
  std::string address() const;

  // Starts server.io_threads threads running the io_context and accepting
  // connections; returns at once. Call once.
  void Start();

  // Starts the drain (contract §C6), as SIGTERM does: Engine::BeginDrain
  // (/readyz turns 503, new jobs and streams get 503), then
  // Engine::Shutdown(server.shutdown_grace) runs on a thread of its own
  // (never an io thread); when it returns, the listener closes and every
  // connection is asked to finish (job streams send their remaining
  // results and "done"), and the io_context stops once all are closed or
  // after 5 seconds. Non-blocking, idempotent, thread-safe.
  void Shutdown();

  // Blocks until the drain has completed and every thread is joined (i.e.
  // until someone calls Shutdown() or a signal arrives, and it finishes).
  void Wait();

 private:
  struct Impl;
  explicit Server(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace sluice::http

#endif  // SLUICE_SERVICE_HTTP_SERVER_HPP_
