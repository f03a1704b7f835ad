// sluice::http::Server: the whole service behind one listening socket —
// metrics, engine, router, the Boost.Asio io_context and its threads, the
// listener (HTTP and WebSocket on one port, contract §C2-§C3; HTTPS and WSS
// instead when server.tls is set) and the lifecycle of contract §C6 (drain on
// SIGTERM/SIGINT or Shutdown()).
#ifndef SLUICE_SERVICE_HTTP_SERVER_HPP_
#define SLUICE_SERVICE_HTTP_SERVER_HPP_

#include <cstdint>
#include <memory>
#include <string>

#include "service/config/config.hpp"
#include "service/util/result.hpp"

namespace sluice::engine {
class Engine;
}  // namespace sluice::engine
namespace sluice::metrics {
class Metrics;
}  // namespace sluice::metrics

namespace sluice::http {

// How to run a Server beyond its Config. Thread-compatible (plain value).
struct ServerOptions {
  // The value of the `version` label of sluice_build_info.
  std::string version = "unknown";
  // Listen address overriding config.server.listen ("" = use the config).
  std::string listen;
  // Install SIGINT/SIGTERM handlers that start the drain (the `serve`
  // command does; tests call Shutdown() instead).
  bool handle_signals = false;
};

// Thread-safety: Start() and Wait() are for the owning thread; Shutdown(),
// port(), address(), engine() and metrics() may be called from any thread.
class Server {
 public:
  // Loads server.tls's certificate and key when set (the port then serves
  // HTTPS and WSS only), builds metrics, engine (starting every pipeline's
  // threads) and router, and binds and listens on the address (so port() is
  // known before Start()). Requires a validated config (config::LoadConfig*).
  // Failure: Error{"tls", ...} when the certificate or key cannot be read or
  // parsed, or the key does not match the certificate (the message starts
  // with "server.tls.cert: " or "server.tls.key: " and names the file);
  // Error{"listen", ...} when the address is invalid or cannot be bound;
  // Error{"engine", ...} when the engine cannot be built.
  static Result<std::unique_ptr<Server>> Create(config::Config config,
                                                ServerOptions options = {});

  // Shutdown() then Wait(), then stops the engine. Blocks for up to
  // server.shutdown_grace plus a few seconds.
  ~Server();

  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // The bound port (useful with port 0) and "host:port" as bound.
  std::uint16_t port() const;
  std::string address() const;

  // Starts server.io_threads threads running the io_context and accepting
  // connections; returns at once. Call once.
  void Start();

  // Starts the drain (contract §C6), as SIGTERM does: /readyz turns 503, new
  // jobs and streams get 503, Engine::Shutdown(server.shutdown_grace) runs on
  // a thread of its own (never an io thread); when it returns, the listener
  // closes and every connection is asked to finish (job streams send their
  // remaining results and "done"), and the io_context stops once all are
  // closed or after 5 seconds. Non-blocking, idempotent, thread-safe.
  void Shutdown();

  // Blocks until the drain has completed and every thread is joined (i.e.
  // until someone calls Shutdown() or a signal arrives, and it finishes).
  void Wait();

  engine::Engine& engine();
  metrics::Metrics& metrics();

 private:
  struct Impl;
  explicit Server(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace sluice::http

#endif  // SLUICE_SERVICE_HTTP_SERVER_HPP_
