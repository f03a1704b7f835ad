// RunQueue: one runtime thread's queue of runnable tasks, after Go's
// per-P runq (runtime/proc.go: runqput, runqget, runqgrab). Internal: used
// by runtime.hpp.
//
// A fixed ring of 256 coroutine handles. Only the owning thread pushes;
// the owner pops and other threads steal, all by a CAS on `head`, so no
// lock is taken on the hot path and a thread stealing never blocks the
// owner (a mutex here was the main contention between two busy threads).
//
// Thread-safety: push() only from the owning thread; pop(), grab() and
// size() from any thread.
#ifndef SLUICE_PATTERNS_DETAIL_RUN_QUEUE_HPP_
#define SLUICE_PATTERNS_DETAIL_RUN_QUEUE_HPP_

#include <atomic>
#include <coroutine>
#include <cstdint>
#include <span>

namespace sluice::detail {

class RunQueue {
 public:
  static constexpr std::uint32_t kSize = 256;

  RunQueue() = default;
  RunQueue(const RunQueue&) = delete;
  RunQueue& operator=(const RunQueue&) = delete;

  // Owner only. Appends `h`; false (and nothing changes) when full.
  // The tail is published seq_cst: a pusher then reads the idle count, and
  // a parking thread, having counted itself idle, reads the queue (Dekker).
  bool push(std::coroutine_handle<> h) {
    const std::uint32_t t = tail_.load(std::memory_order_relaxed);
    const std::uint32_t hd = head_.load(std::memory_order_acquire);
    if (t - hd >= kSize) return false;
    slots_[t % kSize].store(h.address(), std::memory_order_relaxed);
    tail_.store(t + 1, std::memory_order_seq_cst);
    return true;
  }

  // The oldest handle, or a null one if empty.
  std::coroutine_handle<> pop() {
    std::uint32_t hd = head_.load(std::memory_order_acquire);
    for (;;) {
      const std::uint32_t t = tail_.load(std::memory_order_acquire);
      if (t == hd) return {};
      void* a = slots_[hd % kSize].load(std::memory_order_relaxed);
      if (head_.compare_exchange_weak(hd, hd + 1, std::memory_order_acq_rel,
                                      std::memory_order_acquire)) {
        return std::coroutine_handle<>::from_address(a);
      }
    }
  }

  // Takes the older half (rounded up) into `out` (at least kSize / 2 long);
  // returns how many. A slot read while the owner overwrites it belongs to
  // a lap whose CAS on head fails, so it is never returned.
  std::uint32_t grab(std::span<std::coroutine_handle<>> out) {
    for (;;) {
      std::uint32_t hd = head_.load(std::memory_order_acquire);
      const std::uint32_t t = tail_.load(std::memory_order_acquire);
      const std::uint32_t n = (t - hd) - (t - hd) / 2;
      if (n == 0) return 0;
      if (n > kSize / 2) continue;  // head and tail read across a lap
      for (std::uint32_t i = 0; i < n; ++i) {
        out[i] = std::coroutine_handle<>::from_address(
            slots_[(hd + i) % kSize].load(std::memory_order_relaxed));
      }
      if (head_.compare_exchange_weak(hd, hd + n, std::memory_order_acq_rel,
                                      std::memory_order_acquire)) {
        return n;
      }
    }
  }

  // How many handles are queued (a snapshot).
  [[nodiscard]] std::uint32_t size() const {
    const std::uint32_t hd = head_.load(std::memory_order_seq_cst);
    return tail_.load(std::memory_order_seq_cst) - hd;
  }

 private:
  alignas(64) std::atomic<std::uint32_t> head_{0};
  alignas(64) std::atomic<std::uint32_t> tail_{0};
  std::atomic<void*> slots_[kSize] = {};
};

}  // namespace sluice::detail

#endif  // SLUICE_PATTERNS_DETAIL_RUN_QUEUE_HPP_
