// Implementation of sluice::http::Server (see server.hpp): the listener, the
// io threads and the lifecycle. The per-connection protocol lives in
// session_impl.hpp and ws/session_impl.hpp; request logic in router.cpp.

// GCC's -Wnull-dereference misfires, when optimizing, inside Boost.Asio's
// any_executor comparison instantiated for our strands: a false positive in
// Asio's code, not ours. Placed before every include so that the header code
// it reports on is covered.
#pragma GCC diagnostic ignored "-Wnull-dereference"

#include "service/http/server.hpp"

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

}  // namespace

// Everything the server owns. Member order is destruction order reversed:
// the io_context goes before the registry and the session context its
// pending handlers (sessions) refer to; the parts (router, metrics) are the
// App's and outlive the server.
struct Server::Impl {
  Impl(const config::ServerConfig& cfg, ServerParts parts_in,
       ServerOptions opts)
      : config(cfg),
        parts(parts_in),
        options(std::move(opts)),
        connections(config.max_connections),
        ioc(std::max(1, config.io_threads)),
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
    parts.engine.BeginDrain();
    MutexLock lock(&mu);
    drain_thread = std::thread([this] {
      // Blocks up to shutdown_grace (+ the time cancelled items take to
      // end): this thread is not an io thread, so serving goes on.
      if (options.before_engine_shutdown) options.before_engine_shutdown();
      parts.engine.Shutdown(config.shutdown_grace);
      net::post(control, [this] { FinishShutdown(); });
    });
  }

  // The first SIGINT/SIGTERM starts the drain; a second one exits at once
  // (status 1) for an operator who does not want to wait for the grace.
  void WaitForSignal() {
    signals.async_wait([this](boost::system::error_code ec, int signal) {
      if (ec) return;
      if (signal == SIGHUP) {
        if (shutdown_started.load()) {
          Log("received SIGHUP while draining: not reloading");
        } else {
          options.on_hangup();
        }
        WaitForSignal();
        return;
      }
      const char* name = signal == SIGINT ? "SIGINT" : "SIGTERM";
      if (shutdown_started.load()) {
        Log(std::string("received ") + name + " again: exiting now");
        std::_Exit(1);
      }
      Log(std::string("received ") + name + ": draining (up to " +
          config::FormatDuration(config.shutdown_grace) + ")");
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

  const config::ServerConfig config;
  const ServerParts parts;
  ServerOptions options;
  ConnectionRegistry connections;
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

Result<std::unique_ptr<Server>> Server::Create(
    const config::ServerConfig& config, ServerParts parts,
    ServerOptions options) {
  const std::string listen =
      options.listen.empty() ? config.listen : options.listen;
  auto impl = std::make_unique<Impl>(config, parts, std::move(options));
  Impl& s = *impl;

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
  s.ctx = std::make_unique<SessionContext>(
      SessionContext{parts.router, parts.metrics, s.connections, s.config,
                     parts.tls, parts.websocket});
  return std::unique_ptr<Server>(new Server(std::move(impl)));
}

Server::~Server() {
  Shutdown();
  Wait();
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
    if (s.options.on_hangup) s.signals.add(SIGHUP);
    s.WaitForSignal();
  }
  net::post(s.control, [&s] { s.DoAccept(); });
  const int threads = std::max(1, s.config.io_threads);
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

}  // namespace sluice::http
