// sluice::http::Connection, ConnectionRegistry and ConnectionSlot: the
// server's account of its open connections (HTTP sessions and the WebSocket
// sessions they upgrade into), used to enforce server.max_connections and to
// close every connection on shutdown.
#ifndef SLUICE_SERVICE_HTTP_CONNECTIONS_HPP_
#define SLUICE_SERVICE_HTTP_CONNECTIONS_HPP_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <unordered_map>

#include "sluice/patterns/detail/thread_annotations.hpp"
#include "sluice/patterns/mutex.hpp"

namespace sluice::http {

// An open connection the server can ask to wind down.
// Thread-safety: Stop() may be called from any thread; implementations post
// onto their own strand.
class Connection {
 public:
  virtual ~Connection() = default;
  // Asks the connection to finish what it is doing and close (an idle HTTP
  // keep-alive connection closes at once; a WebSocket stream sends what the
  // job still has, then closes). Never blocks; idempotent.
  virtual void Stop() = 0;
};

// Counts and tracks open connections. Thread-safe (one mutex).
class ConnectionRegistry {
 public:
  explicit ConnectionRegistry(std::size_t max_connections)
      : max_(max_connections) {}

  // Reserves a place for a new connection. Returns 0 (refused) when
  // max_connections are already open or StopAll() was called; otherwise an
  // id (> 0) to Bind() and Remove().
  [[nodiscard]] std::uint64_t TryReserve() SLUICE_EXCLUDES(mu_);
  // Points the reserved id at the connection now serving it (called again
  // when an HTTP session hands its socket to a WebSocket session).
  void Bind(std::uint64_t id, std::weak_ptr<Connection> connection)
      SLUICE_EXCLUDES(mu_);
  // Frees the place. Calls the on_empty callback (outside the lock) when
  // this was the last connection after StopAll().
  void Remove(std::uint64_t id) SLUICE_EXCLUDES(mu_);
  // Refuses new connections and calls Stop() on every open one (outside the
  // lock). `on_empty` runs once, on the thread that removes the last
  // connection, or right here when none is open.
  void StopAll(std::function<void()> on_empty) SLUICE_EXCLUDES(mu_);

  std::size_t size() const SLUICE_EXCLUDES(mu_);

 private:
  const std::size_t max_;
  mutable Mutex mu_;
  std::uint64_t next_id_ SLUICE_GUARDED_BY(mu_) = 1;
  bool stopping_ SLUICE_GUARDED_BY(mu_) = false;
  std::function<void()> on_empty_ SLUICE_GUARDED_BY(mu_);
  std::unordered_map<std::uint64_t, std::weak_ptr<Connection>> open_
      SLUICE_GUARDED_BY(mu_);
};

// RAII ownership of one reserved place in a ConnectionRegistry: removes it
// on destruction. Move-only; moved from the HTTP session into the WebSocket
// session on upgrade so the place is held exactly as long as the socket.
// Thread-compatible.
class ConnectionSlot {
 public:
  ConnectionSlot() = default;
  ConnectionSlot(ConnectionRegistry* registry, std::uint64_t id)
      : registry_(registry), id_(id) {}
  ConnectionSlot(ConnectionSlot&& other) noexcept
      : registry_(other.registry_), id_(other.id_) {
    other.registry_ = nullptr;
  }
  ConnectionSlot& operator=(ConnectionSlot&& other) noexcept;
  ConnectionSlot(const ConnectionSlot&) = delete;
  ConnectionSlot& operator=(const ConnectionSlot&) = delete;
  ~ConnectionSlot() { Reset(); }

  // Requires a held slot. See ConnectionRegistry::Bind.
  void Bind(std::weak_ptr<Connection> connection) {
    if (registry_ != nullptr) registry_->Bind(id_, std::move(connection));
  }
  void Reset();

 private:
  ConnectionRegistry* registry_ = nullptr;
  std::uint64_t id_ = 0;
};

}  // namespace sluice::http

#endif  // SLUICE_SERVICE_HTTP_CONNECTIONS_HPP_
