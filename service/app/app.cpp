// Implementation of sluice::app::App (see app.hpp).
#include "service/app/app.hpp"

#include <cstdlib>
#include <exception>
#include <utility>
#include <vector>

#include "service/cluster/cluster_service.hpp"
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

std::string ErrorCount(std::size_t n) {
  return std::to_string(n) + (n == 1 ? " error" : " errors");
}

http::ReloadOutcome Outcome(http::ReloadOutcome::Kind kind,
                            std::string message) {
  http::ReloadOutcome outcome;
  outcome.kind = kind;
  outcome.message = std::move(message);
  return outcome;
}

// The keys outside `pipelines` whose values differ: a reload leaves them as
// they were started.
std::vector<std::string> RestartRequired(const config::Config& now,
                                         const config::Config& next) {
  std::vector<std::string> keys;
  auto differ = [&keys](const char* key, const auto& a, const auto& b) {
    if (!(a == b)) keys.emplace_back(key);
  };
  const config::ServerConfig &s = now.server, &t = next.server;
  differ("server.listen", s.listen, t.listen);
  differ("server.io_threads", s.io_threads, t.io_threads);
  differ("server.max_body_bytes", s.max_body_bytes, t.max_body_bytes);
  differ("server.max_connections", s.max_connections, t.max_connections);
  differ("server.shutdown_grace", s.shutdown_grace, t.shutdown_grace);
  differ("server.idle_timeout", s.idle_timeout, t.idle_timeout);
  differ("server.max_header_bytes", s.max_header_bytes, t.max_header_bytes);
  differ("server.auth.tokens_env", s.auth.tokens_env, t.auth.tokens_env);
  differ("server.tls.cert", s.tls.cert, t.tls.cert);
  differ("server.tls.key", s.tls.key, t.tls.key);
  const config::JobsConfig &j = now.jobs, &k = next.jobs;
  differ("jobs.max_pending_items", j.max_pending_items, k.max_pending_items);
  differ("jobs.retention", j.retention, k.retention);
  differ("jobs.max_retained_bytes", j.max_retained_bytes, k.max_retained_bytes);
  differ("jobs.max_job_result_bytes", j.max_job_result_bytes,
         k.max_job_result_bytes);
  differ("jobs.min_retention", j.min_retention, k.min_retention);
  const config::NatsConfig &n = now.cluster.nats, &m = next.cluster.nats;
  differ("cluster.nats.url", n.url, m.url);
  differ("cluster.nats.prefix", n.prefix, m.prefix);
  differ("cluster.nats.replicas", n.replicas, m.replicas);
  differ("cluster.nats.ack_wait", n.ack_wait, m.ack_wait);
  return keys;
}

std::string ReloadLogLine(const std::string& file,
                          const http::ReloadOutcome& outcome) {
  using Kind = http::ReloadOutcome::Kind;
  if (outcome.kind != Kind::kReloaded) {
    return "reload refused: " + outcome.message;
  }
  std::string line = "reloaded " + file + ": pipelines";
  for (const std::string& name : outcome.pipelines) line += " " + name;
  if (!outcome.restart_required.empty()) {
    line += "; unchanged until a restart:";
    for (const std::string& key : outcome.restart_required) line += " " + key;
  }
  return line;
}

}  // namespace

Result<std::unique_ptr<App>> App::Create(config::Config config,
                                         AppOptions options) {
  std::unique_ptr<App> app(new App());
  // Nobody else sees `app` yet; the lock is for the analysis's sake.
  MutexLock lock(&app->reload_mu_);
  app->config_ = std::move(config);
  app->config_file_ = std::move(options.config_file);
  app->checks_ = std::move(options.checks);
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
  engine::JobService* jobs = engine;
  if (app->config_.cluster.enabled()) {
    auto cluster =
        cluster::ClusterService::Start(app->config_, *engine, *app->metrics_);
    if (!cluster.ok()) return cluster.error();
    app->cluster_ = std::move(cluster.value());
    jobs = app->cluster_.get();
    cluster::ClusterService* c = app->cluster_.get();
    options.server.before_engine_shutdown = [c] { c->StopTaking(); };
  }

  std::vector<std::string> tokens = TokensFromEnv(server.auth);
  if (!server.auth.tokens_env.empty() && tokens.empty()) {
    // Auth asked for but given nothing: documented as "off" (an empty
    // variable is how compose leaves it off), which an operator must not
    // miss. Names the variable, never a value.
    http::Log("server.auth.tokens_env names " + server.auth.tokens_env +
              ", which is unset or holds no token: auth is OFF");
  }
  App* self = app.get();
  auto reload = [self] { return self->Reload(); };
  app->router_ = std::make_unique<http::Router>(
      *jobs, *app->metrics_, http::RouterOptions{std::move(tokens), reload});
  options.server.on_hangup = [self] { self->Reload(); };

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
  cluster_.reset();  // before the engine its workers feed
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

http::ReloadOutcome App::Reload() {
  MutexLock lock(&reload_mu_);
  http::ReloadOutcome outcome = ReloadLocked();
  using Kind = http::ReloadOutcome::Kind;
  // A reload that read no file (none to read, or draining) is no attempt:
  // counting it as a failure would fire "a bad config was pushed".
  if (outcome.kind == Kind::kReloaded || outcome.kind == Kind::kInvalid ||
      outcome.kind == Kind::kFailed) {
    metrics_->RecordConfigReload(outcome.kind == Kind::kReloaded);
  }
  http::Log(ReloadLogLine(config_file_, outcome));
  for (const auto& [path, message] : outcome.errors) {
    http::Log("reload: " + path + ": " + message);
  }
  return outcome;
}

http::ReloadOutcome App::ReloadLocked() {
  using Kind = http::ReloadOutcome::Kind;
  if (config_file_.empty()) {
    return Outcome(
        Kind::kUnavailable,
        "the server runs the built-in config (started without --config "
        "FILE): there is no file to read again");
  }
  auto loaded = config::LoadConfigFile(config_file_, checks_);
  if (!loaded.ok()) {
    http::ReloadOutcome invalid =
        Outcome(Kind::kInvalid, config_file_ + " is invalid (" +
                                    ErrorCount(loaded.error().size()) +
                                    "); the running config is kept");
    for (const auto& e : loaded.error())
      invalid.errors.emplace_back(e.path, e.message);
    return invalid;
  }
  config::Config next = std::move(loaded).value();
  auto names = engine_->Reload(next.pipelines);
  if (!names.ok()) {
    const bool draining = names.error().code == "draining";
    return Outcome(draining ? Kind::kDraining : Kind::kFailed,
                   names.error().message);
  }
  http::ReloadOutcome done = Outcome(Kind::kReloaded, "");
  done.pipelines = std::move(names).value();
  done.restart_required = RestartRequired(config_, next);
  config_.pipelines = std::move(next.pipelines);
  return done;
}
metrics::Metrics& App::metrics() { return *metrics_; }

}  // namespace sluice::app
