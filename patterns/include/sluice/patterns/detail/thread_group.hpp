// ThreadGroup: a set of threads sharing one stop source, joined on
// destruction; and DoneLatch, which runs an action once the last member of a
// group has finished (how the last worker closes a shared output channel).
#ifndef SLUICE_PATTERNS_DETAIL_THREAD_GROUP_HPP_
#define SLUICE_PATTERNS_DETAIL_THREAD_GROUP_HPP_

#include <atomic>
#include <cstddef>
#include <stop_token>
#include <thread>
#include <utility>
#include <vector>

namespace sluice::detail {

// Thread-safety: request_stop() and token() may be called from any thread;
// spawn() and join() only by the owner.
class ThreadGroup {
 public:
  ThreadGroup() = default;
  ThreadGroup(const ThreadGroup&) = delete;
  ThreadGroup& operator=(const ThreadGroup&) = delete;

  // Requests stop, then joins every thread.
  ~ThreadGroup() {
    request_stop();
    join();
  }

  // Starts fn(std::stop_token) on a new thread of the group.
  template <class Fn>
  void spawn(Fn fn) {
    threads_.emplace_back([fn = std::move(fn),
                           token = stop_.get_token()]() mutable { fn(token); });
  }

  void request_stop() noexcept { stop_.request_stop(); }
  [[nodiscard]] std::stop_token token() const noexcept {
    return stop_.get_token();
  }

  // Waits for every thread to return. Idempotent.
  void join() {
    for (std::jthread& t : threads_) {
      if (t.joinable()) t.join();
    }
  }

  [[nodiscard]] std::size_t size() const noexcept { return threads_.size(); }

 private:
  std::stop_source stop_;
  std::vector<std::jthread> threads_;
};

// Counts members down; the one that brings the count to zero gets true from
// arrive(). Thread-safe.
class DoneLatch {
 public:
  explicit DoneLatch(std::size_t members) : remaining_(members) {}
  [[nodiscard]] bool arrive() noexcept {
    return remaining_.fetch_sub(1, std::memory_order_acq_rel) == 1;
  }

 private:
  std::atomic<std::size_t> remaining_;
};

}  // namespace sluice::detail

#endif  // SLUICE_PATTERNS_DETAIL_THREAD_GROUP_HPP_
