// Implementation of the connection registry (see connections.hpp).
#include "service/http/connections.hpp"

#include <utility>
#include <vector>

namespace sluice::http {

std::uint64_t ConnectionRegistry::TryReserve() {
  MutexLock lock(&mu_);
  if (stopping_ || open_.size() >= max_) return 0;
  std::uint64_t id = next_id_++;
  open_.emplace(id, std::weak_ptr<Connection>());
  return id;
}

void ConnectionRegistry::Bind(std::uint64_t id,
                              std::weak_ptr<Connection> connection) {
  std::shared_ptr<Connection> stop_now;
  {
    MutexLock lock(&mu_);
    auto it = open_.find(id);
    if (it == open_.end()) return;
    // A connection handed over after StopAll() must still be told to stop.
    if (stopping_) stop_now = connection.lock();
    it->second = std::move(connection);
  }
  if (stop_now) stop_now->Stop();
}

void ConnectionRegistry::Remove(std::uint64_t id) {
  std::function<void()> on_empty;
  {
    MutexLock lock(&mu_);
    if (open_.erase(id) == 0) return;
    if (stopping_ && open_.empty()) on_empty = std::move(on_empty_);
  }
  if (on_empty) on_empty();
}

void ConnectionRegistry::StopAll(std::function<void()> on_empty) {
  std::vector<std::shared_ptr<Connection>> to_stop;
  std::function<void()> call_now;
  {
    MutexLock lock(&mu_);
    stopping_ = true;
    if (open_.empty()) {
      call_now = std::move(on_empty);
    } else {
      on_empty_ = std::move(on_empty);
      for (auto& [id, weak] : open_) {
        if (auto c = weak.lock()) to_stop.push_back(std::move(c));
      }
    }
  }
  // Called outside the lock: a Stop() may end up in Remove() on this thread.
  for (auto& c : to_stop) c->Stop();
  if (call_now) call_now();
}

std::size_t ConnectionRegistry::size() const {
  MutexLock lock(&mu_);
  return open_.size();
}

ConnectionSlot& ConnectionSlot::operator=(ConnectionSlot&& other) noexcept {
  if (this != &other) {
    Reset();
    registry_ = other.registry_;
    id_ = other.id_;
    other.registry_ = nullptr;
  }
  return *this;
}

void ConnectionSlot::Reset() {
  if (registry_ != nullptr) {
    registry_->Remove(id_);
    registry_ = nullptr;
  }
}

}  // namespace sluice::http
