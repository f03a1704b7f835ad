// Parker, WaitNode and WaitList: how a blocked thread or task waits on one or
// more channels, after Go's sudog and selectDone (runtime/chan.go, select.go).
//
// One blocking operation (a send, a recv, a sleep or a whole select) owns one
// Parker. It puts one WaitNode per channel it waits on into that channel's
// WaitList. A waker (a peer operation, close(), a timer or a stop callback)
// must *claim* the Parker before acting on it: claim() is a CAS from
// kUnclaimed, so exactly one waker wins even when a select waits on many
// channels at once. The winner finishes its hand-off (moves a value into or
// out of the node) and only then calls wake(), which resumes the owner:
// a thread is signalled, a task is scheduled on its runtime (never resumed
// inline, so a thread's send never runs a task on the sending thread).
#ifndef SLUICE_PATTERNS_DETAIL_PARKER_HPP_
#define SLUICE_PATTERNS_DETAIL_PARKER_HPP_

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <coroutine>
#include <cstdint>
#include <optional>

#include "sluice/patterns/detail/backoff.hpp"
#include "sluice/patterns/detail/thread_annotations.hpp"
#include "sluice/patterns/mutex.hpp"

namespace sluice::detail {

class Scheduler;
// Schedules `h` on `s` (defined in runtime.hpp).
void schedule_on(Scheduler* s, std::coroutine_handle<> h);

// How a Parker's owning thread sleeps (declared outside Parker: clang 14
// does not see a nested class with member initializers as constructible
// inside its enclosing class). Thread-safety: `done` under `mu`.
struct ThreadSide {
  std::atomic<bool> spin{false};
  Mutex mu;
  CondVar cv;
  bool done SLUICE_GUARDED_BY(mu) = false;
};

// Parker: the wait state of one blocking operation. claim() and wake() are
// thread-safe; the rest is used only by the owning thread or task.
class Parker {
 public:
  static constexpr std::uint32_t kUnclaimed = 0;
  // Claim values 1..kCancelled-1 are "case index + 1".
  static constexpr std::uint32_t kCancelled = 0xffffffffU;

  Parker() = default;
  Parker(const Parker&) = delete;
  Parker& operator=(const Parker&) = delete;

  // Makes this parker resume the task `h` on `sched` (default: a thread).
  void set_task(Scheduler* sched, std::coroutine_handle<> h) {
    sched_ = sched;
    handle_ = h;
  }

  // Makes the parker ready for another wait. A thread parker must be reset
  // once before anyone else can reach it (a stop callback, a queue): that
  // builds its thread side. Requires: the previous wait ended (its claim winner
  // has called wake(), or the owner claimed it itself). The claim word goes
  // last: a stop callback or timer may claim again as soon as it is clear.
  void reset() {
    if (sched_ == nullptr) {
      if (!thread_) thread_.emplace();
      {
        MutexLock lock(&thread_->mu);
        thread_->done = false;
      }
      thread_->spin.store(false, std::memory_order_relaxed);
    }
    gate_.store(0, std::memory_order_relaxed);
    claim_.store(kUnclaimed, std::memory_order_release);
  }

  // True for the one caller that moved this parker from unclaimed to `who`
  // (a case index + 1, or kCancelled). The winner must call wake().
  bool claim(std::uint32_t who) {
    std::uint32_t expected = kUnclaimed;
    return claim_.compare_exchange_strong(expected, who,
                                          std::memory_order_acq_rel);
  }
  [[nodiscard]] std::uint32_t claimed_by() const {
    return claim_.load(std::memory_order_acquire);
  }

  // Resumes the owner. Called exactly once, by the claim winner, after it
  // has finished touching the waiting operation's nodes and values.
  void wake() {
    if (sched_ != nullptr) {
      // The owner may still be inside await_suspend: whichever of the two
      // comes second resumes the task (see arm()).
      if (gate_.exchange(kGateWoken, std::memory_order_acq_rel) == kGateArmed) {
        schedule_on(sched_, handle_);
      }
      return;
    }
    ThreadSide& t = *thread_;  // made by reset(), before any wait
    t.spin.store(true, std::memory_order_release);
    MutexLock lock(&t.mu);
    t.done = true;
    t.cv.Signal();  // under the lock: the owner may free us once it sees
                    // done, which it can only read after we unlock
  }

  // Task side, last step of await_suspend: true if the task must stay
  // suspended (wake() will schedule it), false if it was already woken and
  // should continue at once.
  bool arm() {
    return gate_.exchange(kGateArmed, std::memory_order_acq_rel) != kGateWoken;
  }

  // Thread side: blocks until wake() (returns true) or until `deadline`
  // passes (returns false without claiming; the caller then tries to claim
  // for itself and, if that fails, calls wait_woken()).
  bool sleep_until(
      std::optional<std::chrono::steady_clock::time_point> deadline) {
    spin_briefly();
    ThreadSide& t = *thread_;
    MutexLock lock(&t.mu);
    while (!t.done) {
      if (!deadline) {
        t.cv.Wait(&t.mu);
      } else if (t.cv.WaitUntil(&t.mu, *deadline) == std::cv_status::timeout) {
        return t.done;
      }
    }
    return true;
  }
  void wait_woken() { sleep_until(std::nullopt); }

 private:
  static constexpr std::uint32_t kGateArmed = 1;
  static constexpr std::uint32_t kGateWoken = 2;

  // A hand-off between two running threads takes well under a microsecond,
  // far less than a futex sleep and wake-up: poll for that long first, if no
  // other thread is already spinning on this core budget.
  void spin_briefly() {
    if (!SpinSlots::try_acquire()) return;
    const auto start = std::chrono::steady_clock::now();
    while (!thread_->spin.load(std::memory_order_acquire)) {
      for (int i = 0; i < 16; ++i) cpu_relax();
      if (std::chrono::steady_clock::now() - start > Backoff::kSpin) break;
    }
    SpinSlots::release();
  }

  std::atomic<std::uint32_t> claim_{kUnclaimed};
  // Task owners.
  Scheduler* sched_ = nullptr;
  std::coroutine_handle<> handle_;
  std::atomic<std::uint32_t> gate_{0};
  // Thread owners only. A task's wait never builds it: building and
  // destroying them per wait put 5 % of W3's (tasks) samples in
  // pthread_cond_destroy alone.
  std::optional<ThreadSide> thread_;
};

// WaitNode: one operation's place in one channel's queue. Owned by the
// waiting operation; linked and unlinked only under that channel's lock.
struct WaitNode {
  Parker* parker = nullptr;
  std::uint32_t index = 0;  // the select case (0 for a plain operation)
  void* value = nullptr;    // send: T* to move from; recv: optional<T>* to fill
  bool ok = false;          // set by the claimer: delivered / received
  bool queued = false;
  WaitNode* prev = nullptr;
  WaitNode* next = nullptr;

  bool claim() { return parker->claim(index + 1); }
};

// WaitList: a FIFO of WaitNodes. Not thread-safe: guarded by its channel's
// lock. `size` is also read without the lock by wakers deciding whether to
// take the lock at all (see Channel's Dekker-style waiter count).
class WaitList {
 public:
  void push(WaitNode* n) {
    n->prev = tail_;
    n->next = nullptr;
    (tail_ != nullptr ? tail_->next : head_) = n;
    tail_ = n;
    n->queued = true;
    size_.fetch_add(1, std::memory_order_seq_cst);
  }
  void remove(WaitNode* n) {
    if (!n->queued) return;
    (n->prev != nullptr ? n->prev->next : head_) = n->next;
    (n->next != nullptr ? n->next->prev : tail_) = n->prev;
    n->queued = false;
    size_.fetch_sub(1, std::memory_order_seq_cst);
  }
  // Removes nodes from the front until one is claimed for its own case;
  // returns it (nullptr if none). Nodes whose parker another waker already
  // claimed (a select woken elsewhere, a cancelled wait) are dropped.
  WaitNode* claim_first() {
    while (head_ != nullptr) {
      WaitNode* n = head_;
      remove(n);
      if (n->claim()) return n;
    }
    return nullptr;
  }
  [[nodiscard]] bool empty() const { return head_ == nullptr; }
  [[nodiscard]] std::uint32_t size_hint() const {
    return size_.load(std::memory_order_seq_cst);
  }

 private:
  WaitNode* head_ = nullptr;
  WaitNode* tail_ = nullptr;
  std::atomic<std::uint32_t> size_{0};
};

}  // namespace sluice::detail

#endif  // SLUICE_PATTERNS_DETAIL_PARKER_HPP_
