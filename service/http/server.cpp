// Implementation of sluice::http::Server (see server.hpp): the listener and
// the lifecycle. The per-connection protocol lives in session.cpp and
// ws/session.cpp; request logic in router.cpp.

// GCC's -Wnull-dereference misfires, when optimizing, inside Boost.Asio's
// any_executor comparison instantiated for our strands: a false positive in
// Asio's code, not ours. Placed before every include so that the header code
// it reports on is covered.
#pragma GCC diagnostic ignored "-Wnull-dereference"

#include "service/http/server.hpp"

#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <system_error>
#include <thread>
#include <vector>

#include "service/config/units.hpp"
#include "service/engine/engine.hpp"
#include "service/http/connections.hpp"
#include "service/http/fail.hpp"
#include "service/http/router.hpp"
#include "service/http/session.hpp"
#include "service/metrics/metrics.hpp"
#include "sluice/patterns/detail/thread_annotations.hpp"
#include "sluice/patterns/mutex.hpp"

namespace sluice::http {
namespace {

namespace net = boost::asio;
using tcp = net::ip::tcp;

// After the engine has drained, connections get this long to send what they
// still have (job streams: the rest of the results, "done", the close
// handshake) before the io_context is stopped regardless.
constexpr auto kCloseTimeout = std::chrono::seconds(5);
// Pause after a failed accept (e.g. EMFILE) so the loop does not spin.
constexpr auto kAcceptRetry = std::chrono::milliseconds(50);

Result<tcp::endpoint> ResolveListen(net::io_context& ioc,
                                    const std::string& listen) {
  auto host_port = config::ParseHostPort(listen);
  if (!host_port.ok()) {
    return Error{"listen", "invalid listen address \"" + listen +
                               "\": " + host_port.error().message};
  }
  boost::system::error_code ec;
  auto address = net::ip::make_address(host_port->host, ec);
  if (!ec) return tcp::endpoint(address, host_port->port);
  tcp::resolver resolver(ioc);
  auto results =
      resolver.resolve(host_port->host, std::to_string(host_port->port), ec);
  if (ec || results.empty()) {
    return Error{"listen", "cannot resolve \"" + host_port->host +
                               "\": " + (ec ? ec.message() : "no address")};
  }
  return results.begin()->endpoint();
}

// TLS 1.2 cipher suites: forward-secret AEAD only (Mozilla's "intermediate"
// list without DHE, for which we load no parameters). TLS 1.3 keeps
// OpenSSL's default suites, which are all of that kind.
constexpr const char* kTls12Ciphers =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";

// The whole of a (small) PEM file, or why it cannot be read.
Result<std::string> ReadPemFile(const std::string& path,
                                std::string_view key_path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) {
    return Error{"tls", std::string(key_path) + ": cannot read \"" + path +
                            "\": " + std::generic_category().message(errno)};
  }
  std::string text;
  char chunk[4096];
  std::size_t n = 0;
  while ((n = std::fread(chunk, 1, sizeof chunk, f)) > 0) {
    text.append(chunk, n);
    // A certificate chain or key is a few KiB; refuse to slurp, say, a
    // device file named by mistake.
    if (text.size() > (std::size_t{1} << 20)) break;
  }
  // errno as fread left it: a directory, say, opens but reads EISDIR.
  const int read_errno = std::ferror(f) != 0 ? errno : 0;
  std::fclose(f);
  if (read_errno != 0 || text.size() > (std::size_t{1} << 20)) {
    OPENSSL_cleanse(text.data(), text.size());
    return Error{
        "tls",
        std::string(key_path) + ": cannot read \"" + path + "\": " +
            (read_errno != 0 ? std::generic_category().message(read_errno)
                             : "larger than 1 MiB")};
  }
  return text;
}

// Whether `pem` holds a private key OpenSSL can parse without a passphrase
// (to tell "not a key" from "a key of another certificate").
bool ParsesAsPrivateKey(const std::string& pem) {
  BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  if (bio == nullptr) return false;
  // No passphrase prompt: an encrypted key simply does not parse.
  EVP_PKEY* key = PEM_read_bio_PrivateKey(
      bio, nullptr, [](char*, int, int, void*) { return 0; }, nullptr);
  BIO_free(bio);
  ERR_clear_error();
  if (key == nullptr) return false;
  EVP_PKEY_free(key);
  return true;
}

// The TLS context of server.tls: TLS 1.2 or newer, no compression, no
// renegotiation, the server's cipher preference, the certificate chain and
// its private key. Fails with an Error{"tls", ...} whose message starts with
// the config key at fault (server.tls.cert or server.tls.key) and names the
// file.
Result<std::unique_ptr<net::ssl::context>> MakeTlsContext(
    const config::TlsConfig& tls) {
  namespace ssl = net::ssl;
  auto ctx = std::make_unique<ssl::context>(ssl::context::tls_server);
  boost::system::error_code ec;
  ctx->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                       ssl::context::no_sslv3 | ssl::context::no_tlsv1 |
                       ssl::context::no_tlsv1_1 | ssl::context::no_compression |
                       ssl::context::single_dh_use,
                   ec);
  SSL_CTX* native = ctx->native_handle();
  if (ec || SSL_CTX_set_min_proto_version(native, TLS1_2_VERSION) != 1 ||
      SSL_CTX_set_cipher_list(native, kTls12Ciphers) != 1) {
    ERR_clear_error();
    return Error{"tls", "server.tls: cannot set up TLS (OpenSSL)"};
  }
  SSL_CTX_set_options(
      native, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
  // OpenSSL's default for an encrypted key is to prompt on the terminal;
  // a server must fail instead.
  ctx->set_password_callback(
      [](std::size_t, ssl::context::password_purpose) { return std::string(); },
      ec);

  auto cert = ReadPemFile(tls.cert, "server.tls.cert");
  if (!cert.ok()) return cert.error();
  ctx->use_certificate_chain(net::buffer(*cert), ec);
  if (ec) {
    return Error{"tls",
                 "server.tls.cert: \"" + tls.cert +
                     "\" holds no valid PEM certificate: " + ec.message()};
  }

  auto key = ReadPemFile(tls.key, "server.tls.key");
  if (!key.ok()) return key.error();
  ctx->use_private_key(net::buffer(*key), ssl::context::pem, ec);
  const std::string mismatch =
      "server.tls.key: the private key in \"" + tls.key +
      "\" does not match the certificate in server.tls.cert (\"" + tls.cert +
      "\")";
  std::string error;
  if (ec) {
    // PKCS#8 ("BEGIN ENCRYPTED PRIVATE KEY") or traditional
    // ("Proc-Type: 4,ENCRYPTED") encryption.
    if (key->find("ENCRYPTED PRIVATE KEY-----") != std::string::npos ||
        key->find("Proc-Type: 4,ENCRYPTED") != std::string::npos) {
      error = "server.tls.key: \"" + tls.key +
              "\" is encrypted; sluice needs an unencrypted key (protect it "
              "with file permissions)";
    } else if (ParsesAsPrivateKey(*key)) {
      error = mismatch;
    } else {
      error = "server.tls.key: \"" + tls.key +
              "\" holds no valid PEM private key: " + ec.message();
    }
  } else if (SSL_CTX_check_private_key(native) != 1) {
    // A key of another type than the certificate's is accepted above and
    // only found out here.
    error = mismatch;
  }
  // Wipe our copy of the key's text (OpenSSL keeps the parsed key).
  OPENSSL_cleanse(key->data(), key->size());
  ERR_clear_error();
  if (!error.empty()) return Error{"tls", error};
  return ctx;
}

std::vector<std::string> TokensFromEnv(const config::AuthConfig& auth) {
  if (auth.tokens_env.empty()) return {};
  // Read once, at start-up, before any thread of ours runs.
  const char* value =
      std::getenv(auth.tokens_env.c_str());  // NOLINT(concurrency-mt-unsafe)
  if (value == nullptr) return {};
  return ParseTokens(value);
}

}  // namespace

// Everything the server owns. Member order is destruction order reversed:
// the io_context goes before the registry, router and metrics its pending
// handlers (sessions) refer to.
struct Server::Impl {
  Impl(config::Config cfg, ServerOptions opts)
      : config(std::move(cfg)),
        options(std::move(opts)),
        connections(config.server.max_connections),
        ioc(std::max(1, config.server.io_threads)),
        control(net::make_strand(ioc)),
        acceptor(control),
        accept_retry(control),
        signals(control),
        stop_timer(control) {}

  void DoAccept() {
    acceptor.async_accept(
        net::make_strand(ioc),
        [this](boost::system::error_code ec, tcp::socket socket) {
          OnAccept(ec, std::move(socket));
        });
  }

  void OnAccept(boost::system::error_code ec, tcp::socket socket) {
    if (!acceptor.is_open()) return;
    if (ec) {
      fail(ec, "accept");
      accept_retry.expires_after(kAcceptRetry);
      accept_retry.async_wait([this](boost::system::error_code wait_ec) {
        if (!wait_ec && acceptor.is_open()) DoAccept();
      });
      return;
    }
    std::uint64_t id = connections.TryReserve();
    if (id == 0) {
      // Over server.max_connections: refuse by closing at once; the client
      // sees a reset and may retry (a 503 would cost us a session).
      boost::system::error_code ignored;
      socket.close(ignored);
    } else {
      StartHttpSession(std::move(socket), *ctx,
                       ConnectionSlot(&connections, id));
    }
    DoAccept();
  }

  void BeginShutdown() {
    if (shutdown_started.exchange(true)) return;
    router->SetDraining();
    MutexLock lock(&mu);
    drain_thread = std::thread([this] {
      // Blocks up to shutdown_grace (+ the time cancelled items take to
      // end): this thread is not an io thread, so serving goes on.
      engine->Shutdown(config.server.shutdown_grace);
      net::post(control, [this] { FinishShutdown(); });
    });
  }

  // The first SIGINT/SIGTERM starts the drain; a second one exits at once
  // (status 1) for an operator who does not want to wait for the grace.
  void WaitForSignal() {
    signals.async_wait([this](boost::system::error_code ec, int signal) {
      if (ec) return;
      const char* name = signal == SIGINT ? "SIGINT" : "SIGTERM";
      if (shutdown_started.load()) {
        Log(std::string("received ") + name + " again: exiting now");
        std::_Exit(1);
      }
      Log(std::string("received ") + name + ": draining (up to " +
          config::FormatDuration(config.server.shutdown_grace) + ")");
      BeginShutdown();
      WaitForSignal();
    });
  }

  // On the control strand, once the engine has drained.
  void FinishShutdown() {
    boost::system::error_code ignored;
    acceptor.close(ignored);
    accept_retry.cancel();
    signals.cancel(ignored);
    stop_timer.expires_after(kCloseTimeout);
    stop_timer.async_wait([this](boost::system::error_code ec) {
      if (!ec) ioc.stop();
    });
    // When the last connection is gone nothing keeps the io_context busy
    // but the timer: cancel it and run() returns in every io thread.
    connections.StopAll(
        [this] { net::post(control, [this] { stop_timer.cancel(); }); });
  }

  void RunIoThread() {
    for (;;) {
      try {
        ioc.run();
        return;
      } catch (const std::exception& e) {
        // A handler threw: report it and keep serving the others.
        Log(std::string("unexpected exception in an io thread: ") + e.what());
      }
    }
  }

  config::Config config;
  ServerOptions options;
  std::unique_ptr<metrics::Metrics> metrics;
  std::unique_ptr<engine::Engine> engine;
  std::unique_ptr<Router> router;
  ConnectionRegistry connections;
  // server.tls's certificate and settings; null when the port is plain.
  std::unique_ptr<net::ssl::context> tls;
  std::unique_ptr<SessionContext> ctx;
  tcp::endpoint endpoint;

  net::io_context ioc;
  // Serializes the acceptor, the timers and the signal set.
  net::strand<net::io_context::executor_type> control;
  tcp::acceptor acceptor;
  net::steady_timer accept_retry;
  net::signal_set signals;
  net::steady_timer stop_timer;

  std::atomic<bool> shutdown_started{false};
  Mutex mu;
  bool started SLUICE_GUARDED_BY(mu) = false;
  std::vector<std::thread> io_threads SLUICE_GUARDED_BY(mu);
  std::thread drain_thread SLUICE_GUARDED_BY(mu);
};

Server::Server(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Result<std::unique_ptr<Server>> Server::Create(config::Config config,
                                               ServerOptions options) {
  const std::string listen =
      options.listen.empty() ? config.server.listen : options.listen;
  auto impl = std::make_unique<Impl>(std::move(config), std::move(options));
  Impl& s = *impl;

  // Before binding anything: a bad certificate is a config error.
  if (!s.config.server.tls.cert.empty() || !s.config.server.tls.key.empty()) {
    auto tls = MakeTlsContext(s.config.server.tls);
    if (!tls.ok()) return tls.error();
    s.tls = std::move(tls.value());
  }

  auto endpoint = ResolveListen(s.ioc, listen);
  if (!endpoint.ok()) return endpoint.error();
  boost::system::error_code ec;
  s.acceptor.open(endpoint->protocol(), ec);
  if (!ec) s.acceptor.set_option(net::socket_base::reuse_address(true), ec);
  if (!ec) s.acceptor.bind(*endpoint, ec);
  if (!ec) s.acceptor.listen(net::socket_base::max_listen_connections, ec);
  if (!ec) s.endpoint = s.acceptor.local_endpoint(ec);
  if (ec) {
    return Error{"listen", "cannot listen on " + listen + ": " + ec.message()};
  }

  try {
    s.metrics = std::make_unique<metrics::Metrics>(s.options.version);
    s.engine = std::make_unique<engine::Engine>(s.config, *s.metrics);
  } catch (const std::exception& e) {
    return Error{"engine", std::string("cannot start the engine: ") + e.what()};
  }
  engine::Engine* engine_ptr = s.engine.get();
  s.metrics->SetScrapeHook([engine_ptr] { engine_ptr->SampleGauges(); });
  std::vector<std::string> tokens = TokensFromEnv(s.config.server.auth);
  if (!s.config.server.auth.tokens_env.empty() && tokens.empty()) {
    // Auth asked for but given nothing: documented as "off" (an empty
    // variable is how compose leaves it off), which an operator must not
    // miss. Names the variable, never a value.
    Log("server.auth.tokens_env names " + s.config.server.auth.tokens_env +
        ", which is unset or holds no token: auth is OFF");
  }
  s.router = std::make_unique<Router>(*s.engine, *s.metrics,
                                      RouterOptions{std::move(tokens)});
  s.ctx = std::make_unique<SessionContext>(SessionContext{
      *s.router, *s.metrics, s.connections, s.config.server, s.tls.get()});
  return std::unique_ptr<Server>(new Server(std::move(impl)));
}

Server::~Server() {
  Shutdown();
  Wait();
  // No scrape may reach a destroyed engine; then stop the engine (joining
  // its threads) before the io_context and its pending handlers go, so no
  // engine thread posts to a destroyed io_context.
  impl_->metrics->SetScrapeHook({});
  impl_->engine.reset();
}

std::uint16_t Server::port() const { return impl_->endpoint.port(); }

std::string Server::address() const {
  const auto& ep = impl_->endpoint;
  if (ep.address().is_v6()) {
    return "[" + ep.address().to_string() + "]:" + std::to_string(ep.port());
  }
  return ep.address().to_string() + ":" + std::to_string(ep.port());
}

void Server::Start() {
  Impl& s = *impl_;
  MutexLock lock(&s.mu);
  if (s.started) return;
  s.started = true;
  if (s.options.handle_signals) {
    s.signals.add(SIGINT);
    s.signals.add(SIGTERM);
    s.WaitForSignal();
  }
  net::post(s.control, [&s] { s.DoAccept(); });
  const int threads = std::max(1, s.config.server.io_threads);
  for (int i = 0; i < threads; ++i) {
    s.io_threads.emplace_back([&s] { s.RunIoThread(); });
  }
}

void Server::Shutdown() { impl_->BeginShutdown(); }

void Server::Wait() {
  Impl& s = *impl_;
  std::vector<std::thread> io_threads;
  {
    MutexLock lock(&s.mu);
    io_threads = std::move(s.io_threads);
  }
  for (auto& t : io_threads) t.join();
  std::thread drain;
  {
    MutexLock lock(&s.mu);
    drain = std::move(s.drain_thread);
  }
  if (drain.joinable()) drain.join();
}

engine::Engine& Server::engine() { return *impl_->engine; }
metrics::Metrics& Server::metrics() { return *impl_->metrics; }

}  // namespace sluice::http
