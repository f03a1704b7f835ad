// The "plain" baseline: a bounded MPMC queue from one std::mutex and two
// std::condition_variables, as most C++ code bases would write it first.
// Capacity 0 is a rendezvous: push returns only after a consumer popped the
// value (one buffered slot plus a "taken" ticket the pusher waits on).
// Not part of sluice; used only by bench/patterns.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <mutex>
#include <optional>
#include <utility>

namespace sluice_bench {

template <class T>
class BoundedQueue {
 public:
  explicit BoundedQueue(std::size_t capacity) : capacity_(capacity) {}
  BoundedQueue(const BoundedQueue&) = delete;
  BoundedQueue& operator=(const BoundedQueue&) = delete;

  // Blocks while full; false once closed (the value is dropped).
  bool push(T value) {
    std::unique_lock lock(mu_);
    const std::size_t slots = capacity_ == 0 ? 1 : capacity_;
    not_full_.wait(lock, [&] { return closed_ || items_.size() < slots; });
    if (closed_) return false;
    items_.push_back(std::move(value));
    const std::uint64_t ticket = ++pushed_;
    not_empty_.notify_one();
    if (capacity_ == 0) {  // rendezvous: wait until a consumer took it
      not_full_.wait(lock, [&] { return popped_ >= ticket || closed_; });
    }
    return true;
  }

  // Blocks while empty; nullopt once closed and drained.
  std::optional<T> pop() {
    std::unique_lock lock(mu_);
    not_empty_.wait(lock, [&] { return closed_ || !items_.empty(); });
    if (items_.empty()) return std::nullopt;
    T value = std::move(items_.front());
    items_.pop_front();
    ++popped_;
    // Capacity 0: the pusher waiting for its ticket and a pusher waiting for
    // the slot share not_full_, so wake both kinds.
    if (capacity_ == 0) {
      not_full_.notify_all();
    } else {
      not_full_.notify_one();
    }
    return value;
  }

  void close() {
    {
      std::lock_guard lock(mu_);
      closed_ = true;
    }
    not_full_.notify_all();
    not_empty_.notify_all();
  }

 private:
  const std::size_t capacity_;
  std::mutex mu_;
  std::condition_variable not_full_;
  std::condition_variable not_empty_;
  std::deque<T> items_;
  std::uint64_t pushed_ = 0;
  std::uint64_t popped_ = 0;
  bool closed_ = false;
};

}  // namespace sluice_bench
