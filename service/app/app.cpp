// Implementation of sluice::app::App (see app.hpp).
#include "service/app/app.hpp"

#include <cstdlib>
#include <exception>
#include <utility>
#include <vector>

#include "service/engine/engine.hpp"
#include "service/http/fail.hpp"
#include "service/http/router.hpp"
#include "service/http/tls.hpp"
#include "service/metrics/metrics.hpp"
#include "service/ws/session.hpp"

namespace sluice::app {
namespace {

std::vector<std::string> TokensFromEnv(const config::AuthConfig& auth) {
  if (auth.tokens_env.empty()) return {};
  // Read once, at start-up, before any thread of ours runs.
  const char* value =
      std::getenv(auth.tokens_env.c_str());  // NOLINT(concurrency-mt-unsafe)
  if (value == nullptr) return {};
  return http::ParseTokens(value);
}

// The ws room's two sessions, as the http sessions hand connections over
// (each member's pointer type picks its StartWebSocketSession overload).
http::WebSocketHandoff WebSocketSessions() {
  return {&ws::StartWebSocketSession, &ws::StartWebSocketSession};
}

}  // namespace

Result<std::unique_ptr<App>> App::Create(config::Config config,
                                         AppOptions options) {
  std::unique_ptr<App> app(new App());
  app->config_ = std::move(config);
  const config::ServerConfig& server = app->config_.server;

  // Before anything starts: a bad certificate is a config error.
  if (!server.tls.cert.empty() || !server.tls.key.empty()) {
    auto tls = http::MakeTlsContext(server.tls);
    if (!tls.ok()) return tls.error();
    app->tls_ = std::move(tls.value());
  }
  try {
    app->metrics_ = std::make_unique<metrics::Metrics>(options.version);
    app->engine_ =
        std::make_unique<engine::Engine>(app->config_, *app->metrics_);
  } catch (const std::exception& e) {
    return Error{"engine", std::string("cannot start the engine: ") + e.what()};
  }
  engine::Engine* engine = app->engine_.get();
  app->metrics_->SetScrapeHook([engine] { engine->SampleGauges(); });

  std::vector<std::string> tokens = TokensFromEnv(server.auth);
  if (!server.auth.tokens_env.empty() && tokens.empty()) {
    // Auth asked for but given nothing: documented as "off" (an empty
    // variable is how compose leaves it off), which an operator must not
    // miss. Names the variable, never a value.
    http::Log("server.auth.tokens_env names " + server.auth.tokens_env +
              ", which is unset or holds no token: auth is OFF");
  }
  app->router_ = std::make_unique<http::Router>(
      *app->engine_, *app->metrics_, http::RouterOptions{std::move(tokens)});

  auto listening = http::Server::Create(
      server,
      http::ServerParts{*app->engine_, *app->router_, *app->metrics_,
                        app->tls_.get(), WebSocketSessions()},
      std::move(options.server));
  if (!listening.ok()) return listening.error();
  app->server_ = std::move(listening.value());
  return app;
}

App::~App() {
  if (server_) {
    server_->Shutdown();
    server_->Wait();
  }
  if (metrics_) metrics_->SetScrapeHook({});
  engine_.reset();
  server_.reset();
  router_.reset();
}

std::uint16_t App::port() const { return server_->port(); }
std::string App::address() const { return server_->address(); }
void App::Start() { server_->Start(); }
void App::Shutdown() { server_->Shutdown(); }
void App::Wait() { server_->Wait(); }
engine::Engine& App::engine() { return *engine_; }
metrics::Metrics& App::metrics() { return *metrics_; }

}  // namespace sluice::app
