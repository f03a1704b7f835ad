// sluice::app::App: the composition root. From a validated config it builds
// the parts of the service in dependency order (metrics, the engine and its
// pipelines, the router, the TLS context, and the HTTP server with the
// WebSocket hand-off wired in), owns them, and takes them down in the order
// docs/internal/architecture.md#threads writes down. Nothing else in the
// service constructs these parts; `sluice serve` and the integration tests
// both run an App.
#ifndef SLUICE_SERVICE_APP_APP_HPP_
#define SLUICE_SERVICE_APP_APP_HPP_

#include <cstdint>
#include <memory>
#include <string>

#include "service/config/config.hpp"
#include "service/http/server.hpp"
#include "service/util/result.hpp"
#include "sluice/patterns/detail/thread_annotations.hpp"
#include "sluice/patterns/mutex.hpp"

namespace sluice::engine {
class Engine;
}  // namespace sluice::engine
namespace sluice::metrics {
class Metrics;
}  // namespace sluice::metrics
namespace sluice::http {
class Router;
}  // namespace sluice::http
namespace sluice::cluster {
class ClusterService;
}  // namespace sluice::cluster

namespace sluice::app {

// How to run an App beyond its config. Thread-compatible (plain value).
struct AppOptions {
  // The value of the `version` label of sluice_build_info.
  std::string version = "unknown";
  // The listen override and signal handling (http/server.hpp). With
  // handle_signals, SIGHUP reloads (Reload()).
  http::ServerOptions server;
  // The file the config came from, which Reload() reads again ("" = the
  // built-in config: nothing to reload), and the checks it loads it with
  // (processors::ConfigChecks(), which the app room cannot name itself).
  std::string config_file;
  config::SpecChecks checks;
};

// Thread-safety: as http::Server. Start() and Wait() are for the owning
// thread; Shutdown(), port(), address(), engine() and metrics() may be
// called from any thread.
class App {
 public:
  // Loads server.tls's certificate and key when set (the port then serves
  // HTTPS and WSS only), builds metrics, the engine (starting its runtime
  // threads and every pipeline's tasks), the router (its tokens read from
  // the variable server.auth.tokens_env names) and the server, which binds
  // and listens (so port() is known before Start()). Requires a validated
  // config (config::LoadConfig*). Failure, with nothing left running:
  // Error{"tls", ...} when the certificate or key cannot be read or parsed,
  // or the key does not match the certificate (the message starts with
  // "server.tls.cert: " or "server.tls.key: " and names the file);
  // Error{"listen", ...} when the address is invalid or cannot be bound;
  // Error{"engine", ...} when the engine cannot be built.
  static Result<std::unique_ptr<App>> Create(config::Config config,
                                             AppOptions options = {});

  // Shutdown() and Wait(); then, in this order, no scrape reaches the
  // engine, the engine stops (joining its threads, so none posts to a
  // destroyed io_context), the server goes (its io_context and every
  // session), then the router and the metrics the sessions referred to.
  ~App();

  App(const App&) = delete;
  App& operator=(const App&) = delete;

  std::uint16_t port() const;
  std::string address() const;
  void Start();     // http::Server::Start
  void Shutdown();  // http::Server::Shutdown: the drain of contract §C6
  void Wait();      // http::Server::Wait

  engine::Engine& engine();
  metrics::Metrics& metrics();

  // DESIGN.md §3.8 reload (SIGHUP, POST /v1/admin/reload): reads
  // options.config_file again and, when it is valid, swaps in its pipelines
  // at once (engine::Engine::Reload): new jobs use them, running jobs and
  // streams finish on the old ones. Keys outside `pipelines` that changed
  // are listed in restart_required and take effect at the next start. An
  // invalid file changes nothing; its errors are logged and returned.
  // Counts sluice_config_reloads_total{result}. Thread-safe; reloads run
  // one at a time.
  http::ReloadOutcome Reload() SLUICE_EXCLUDES(reload_mu_);

 private:
  App() = default;
  http::ReloadOutcome ReloadLocked() SLUICE_REQUIRES(reload_mu_);

  std::string config_file_;
  config::SpecChecks checks_;
  Mutex reload_mu_;
  // The config serving now (its pipelines replaced by each reload).
  config::Config config_ SLUICE_GUARDED_BY(reload_mu_);
  std::unique_ptr<metrics::Metrics> metrics_;
  std::unique_ptr<engine::Engine> engine_;
  // Cluster mode (config.cluster.enabled()): the jobs live in NATS
  // JetStream and the router serves them through this; the engine runs the
  // items this replica takes. Null otherwise.
  std::unique_ptr<cluster::ClusterService> cluster_;
  std::unique_ptr<http::Router> router_;
  std::unique_ptr<boost::asio::ssl::context> tls_;
  std::unique_ptr<http::Server> server_;
};

}  // namespace sluice::app

#endif  // SLUICE_SERVICE_APP_APP_HPP_
