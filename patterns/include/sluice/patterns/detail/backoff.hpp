// Backoff: the spin -> yield -> park policy every blocking call follows.
//
// Waking a parked thread costs 5 to 50 us on a small VM, far more than the
// work between two channel operations, so a waiter first spins with a CPU
// pause hint, then yields its time slice (which lets an oversubscribed
// producer run), and only then parks on a futex-backed primitive.
#ifndef SLUICE_PATTERNS_DETAIL_BACKOFF_HPP_
#define SLUICE_PATTERNS_DETAIL_BACKOFF_HPP_

#include <atomic>
#include <chrono>
#include <cstdint>
#include <thread>

namespace sluice::detail {

// Tells the CPU this is a spin-wait loop (saves power, frees the sibling
// hyper-thread, avoids a memory-order pipeline flush on exit).
inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield" ::: "memory");
#else
  std::atomic_signal_fence(std::memory_order_seq_cst);
#endif
}

// How many threads of the process may busy-wait at once: half the cores
// (at least one), as Go's scheduler limits its spinning threads. When more
// threads wait than that, the extra ones skip spinning and yield at once, so
// that spinning never takes a core a runnable thread could use. Thread-safe.
class SpinSlots {
 public:
  static bool try_acquire() noexcept {
    static const int kMax = [] {
      const unsigned cores = std::thread::hardware_concurrency();
      return cores >= 4 ? static_cast<int>(cores / 2) : 1;
    }();
    if (spinning().fetch_add(1, std::memory_order_relaxed) < kMax) return true;
    spinning().fetch_sub(1, std::memory_order_relaxed);
    return false;
  }
  static void release() noexcept {
    spinning().fetch_sub(1, std::memory_order_relaxed);
  }

 private:
  static std::atomic<int>& spinning() noexcept {
    alignas(64) static std::atomic<int> count{0};
    return count;
  }
};

// Backoff is the state of one wait; not thread-safe (each waiter owns one).
// The spin phase is timed rather than counted because a pause instruction
// costs anything from 3 to 140 cycles depending on the CPU.
class Backoff {
 public:
  // Busy-wait this long: a hand-off between two running threads takes well
  // under a microsecond, so this covers it without a system call.
  static constexpr std::chrono::nanoseconds kSpin{4000};
  // Then yield this many times (lets an oversubscribed partner run).
  static constexpr std::uint32_t kYields = 16;
  static constexpr std::uint32_t kPausesPerCheck = 16;

  Backoff() = default;
  Backoff(const Backoff&) = delete;
  Backoff& operator=(const Backoff&) = delete;
  ~Backoff() { end_spin(); }

  // Waits a little. Returns false once the caller should park instead.
  bool wait() noexcept {
    using Clock = std::chrono::steady_clock;
    if (phase_ == Phase::kStart) {
      phase_ = SpinSlots::try_acquire() ? Phase::kSpin : Phase::kYield;
      start_ = Clock::now();
    }
    if (phase_ == Phase::kSpin) {
      for (std::uint32_t i = 0; i < kPausesPerCheck; ++i) cpu_relax();
      if (Clock::now() - start_ < kSpin) return true;
      end_spin();
    }
    if (yields_ >= kYields) return false;
    ++yields_;
    std::this_thread::yield();
    return true;
  }

  // True once the spinning phase is over (the caller may check clocks and
  // stop tokens from here on without slowing the fast path).
  [[nodiscard]] bool yielding() const noexcept {
    return phase_ == Phase::kYield;
  }

  void reset() noexcept {
    end_spin();
    phase_ = Phase::kStart;
    yields_ = 0;
  }

 private:
  enum class Phase : std::uint8_t { kStart, kSpin, kYield };

  void end_spin() noexcept {
    if (phase_ == Phase::kSpin) SpinSlots::release();
    if (phase_ != Phase::kStart) phase_ = Phase::kYield;
  }

  std::chrono::steady_clock::time_point start_;
  Phase phase_ = Phase::kStart;
  std::uint32_t yields_ = 0;
};

}  // namespace sluice::detail

#endif  // SLUICE_PATTERNS_DETAIL_BACKOFF_HPP_
