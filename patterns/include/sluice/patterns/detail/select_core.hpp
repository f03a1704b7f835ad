// The waiting engine behind every blocking channel operation and select,
// after Go's selectgo (runtime/select.go). Internal: use Channel and
// select.hpp.
//
// A wait is a list of cases (channel operations). One round:
//   1. lock the cases' channels in address order (Go's sellock), so that
//      two selects over the same channels cannot deadlock;
//   2. register on every buffered channel (so that a sender or receiver
//      that changes it after our poll sees us and wakes us), then poll the
//      cases in a random order and perform the first that is ready: this
//      makes the choice uniform among ready cases;
//   3. if none is ready and we may block, enqueue on every unbuffered
//      channel too, unlock and sleep (thread) or suspend (task).
// A peer on an unbuffered channel claims our Parker and completes the
// operation for us (direct hand-off, as Go's send/recv do with a sudog);
// a change on a buffered channel claims it only to wake us, and we poll
// again. The first claim wins (Go's selectDone), so exactly one case takes
// effect. A wake-up we were given but did not use is passed on.
#ifndef SLUICE_PATTERNS_DETAIL_SELECT_CORE_HPP_
#define SLUICE_PATTERNS_DETAIL_SELECT_CORE_HPP_

#include <algorithm>
#include <chrono>
#include <coroutine>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <stop_token>

#include "sluice/patterns/detail/parker.hpp"
#include "sluice/patterns/detail/thread_annotations.hpp"
#include "sluice/patterns/mutex.hpp"
#include "sluice/patterns/runtime.hpp"

namespace sluice::detail {

// One channel operation of a wait. Each implementation is used by one
// waiting thread or task at a time; the methods marked "under mutex()" are
// called with that mutex held (by PlanLocks, which the thread-safety analysis
// cannot follow: implementations say so with Mutex::AssertHeld()).
class CaseBase {
 public:
  // The channel lock that guards this case's queue.
  virtual Mutex* mutex() = 0;
  // True on an unbuffered channel: peers complete the operation for us.
  [[nodiscard]] virtual bool rendezvous() const = 0;
  // Under mutex(): performs the operation if it can proceed now (or reports
  // a closed channel); true if the case is ready. On a buffered channel the
  // ring needs no lock, and poll() may also be called without it.
  virtual bool poll() = 0;
  // After a successful poll, outside every lock: wakes whom it concerns.
  virtual void after_unlock() = 0;
  // Under mutex(): puts `n` into / takes it out of the channel's queue.
  virtual void enqueue(WaitNode* n) = 0;
  virtual void dequeue(WaitNode* n) = 0;
  // A peer (or close) completed the operation on our node `n`.
  virtual void from_peer(const WaitNode& n) = 0;
  // We were woken for this buffered case but took another: wake someone
  // else in our place.
  virtual void pass_on() = 0;

 protected:
  ~CaseBase() = default;
};

inline constexpr std::size_t kStopped = static_cast<std::size_t>(-1);

// What one wait consists of. Positions of `cases` are the select's argument
// positions; timeout and default positions hold nullptr.
struct WaitPlan {
  std::span<CaseBase*> cases;
  std::span<WaitNode> nodes;  // one per position
  int timeout_index = -1;
  int default_index = -1;
  std::optional<Clock::time_point> deadline;
};

// A fast per-thread generator for poll orders (xorshift64*).
inline std::uint32_t random_below(std::uint32_t n) {
  thread_local std::uint64_t state =
      0x9E3779B97F4A7C15ULL ^ reinterpret_cast<std::uintptr_t>(&state) ^
      static_cast<std::uint64_t>(Clock::now().time_since_epoch().count());
  state ^= state >> 12;
  state ^= state << 25;
  state ^= state >> 27;
  const std::uint64_t r = state * 0x2545F4914F6CDD1DULL;
  return static_cast<std::uint32_t>(((r >> 32) * n) >> 32);
}

// Holds the distinct mutexes of a plan's cases, locked in address order.
// The set is only known at run time, which clang's thread-safety analysis
// cannot express: locking and unlocking are exempt from it, and the cases'
// methods assert the lock they are called under (see CaseBase).
class PlanLocks {
 public:
  explicit PlanLocks(const WaitPlan& plan) SLUICE_NO_THREAD_SAFETY_ANALYSIS {
    for (CaseBase* c : plan.cases) {
      if (c == nullptr) continue;
      Mutex* m = c->mutex();
      if (std::find(mus_, mus_ + n_, m) == mus_ + n_) mus_[n_++] = m;
    }
    if (n_ > 1) std::sort(mus_, mus_ + n_, std::less<Mutex*>());
    for (std::size_t i = 0; i < n_; ++i) mus_[i]->Lock();
  }
  PlanLocks(const PlanLocks&) = delete;
  PlanLocks& operator=(const PlanLocks&) = delete;
  ~PlanLocks() { unlock(); }
  void unlock() SLUICE_NO_THREAD_SAFETY_ANALYSIS {
    for (std::size_t i = n_; i > 0; --i) mus_[i - 1]->Unlock();
    n_ = 0;
  }

  static constexpr std::size_t kMaxCases = 64;

 private:
  Mutex* mus_[kMaxCases];  // the first n_ are set (not zeroed: hot path)
  std::size_t n_ = 0;
};

// Fills `order` with the positions of the plan's channel cases in a
// uniformly random order (inside-out Fisher-Yates); returns how many.
inline std::uint32_t random_order(const WaitPlan& plan, std::uint32_t* order) {
  std::uint32_t live = 0;
  for (std::uint32_t i = 0; i < plan.cases.size(); ++i) {
    if (plan.cases[i] == nullptr) continue;
    const std::uint32_t j = random_below(live + 1);
    order[live] = order[j];
    order[j] = i;
    ++live;
  }
  return live;
}

// Outcome of one round.
inline constexpr int kMustWait = -1;   // enqueued everywhere: sleep now
inline constexpr int kNoneReady = -2;  // nothing ready and may not block

// Steps 1-3 above. Returns the index of the case that took effect, or
// kMustWait / kNoneReady.
inline int poll_round(WaitPlan& plan, Parker& parker, bool may_block) {
  const auto n = static_cast<std::uint32_t>(plan.cases.size());
  PlanLocks locks(plan);
  for (std::uint32_t i = 0; i < n; ++i) {
    CaseBase* c = plan.cases[i];
    if (c == nullptr) continue;
    plan.nodes[i] = WaitNode{};
    plan.nodes[i].parker = &parker;
    plan.nodes[i].index = i;
    if (!c->rendezvous()) c->enqueue(&plan.nodes[i]);
  }
  std::uint32_t order[PlanLocks::kMaxCases];
  const std::uint32_t live = random_order(plan, order);
  int chosen = kNoneReady;
  for (std::uint32_t k = 0; k < live; ++k) {
    if (plan.cases[order[k]]->poll()) {
      chosen = static_cast<int>(order[k]);
      break;
    }
  }
  if (chosen == kNoneReady && may_block) {
    for (std::uint32_t i = 0; i < n; ++i) {
      CaseBase* c = plan.cases[i];
      if (c != nullptr && c->rendezvous()) c->enqueue(&plan.nodes[i]);
    }
    return kMustWait;
  }
  for (std::uint32_t i = 0; i < n; ++i) {
    if (plan.cases[i] != nullptr) plan.cases[i]->dequeue(&plan.nodes[i]);
  }
  locks.unlock();
  if (chosen >= 0) plan.cases[static_cast<std::size_t>(chosen)]->after_unlock();
  return chosen;
}

// Before any lock: when every case is on a buffered channel, polls them
// in a random order without locking (their rings need none) and performs
// the first that is ready. A select whose channels usually have values
// (a fan-in under load) then costs no lock and no queue registration; the
// choice stays uniform among the ready cases. Returns the index, or
// kNoneReady (also whenever a case is on an unbuffered channel, whose
// queues only the locked round may touch).
inline int poll_unlocked(WaitPlan& plan) {
  for (CaseBase* c : plan.cases) {
    if (c != nullptr && c->rendezvous()) return kNoneReady;
  }
  std::uint32_t order[PlanLocks::kMaxCases];
  const std::uint32_t live = random_order(plan, order);
  for (std::uint32_t k = 0; k < live; ++k) {
    CaseBase* c = plan.cases[order[k]];
    if (c->poll()) {
      c->after_unlock();
      return static_cast<int>(order[k]);
    }
  }
  return kNoneReady;
}

inline void dequeue_all(WaitPlan& plan) {
  PlanLocks locks(plan);
  for (std::size_t i = 0; i < plan.cases.size(); ++i) {
    if (plan.cases[i] != nullptr) plan.cases[i]->dequeue(&plan.nodes[i]);
  }
}

// Claims the parker when a stop token fires; the owner then cleans up.
struct ClaimOnStop {
  Parker* parker;
  void operator()() const {
    if (parker->claim(Parker::kCancelled)) parker->wake();
  }
};

// Where a finished round leaves the wait.
struct RoundEnd {
  bool done = false;
  std::size_t result = kStopped;
};

// True if `who` is a case whose node its waker removed from the queue (a
// channel operation, not a stop or the timeout).
inline bool claimed_from_a_queue(std::uint32_t who, const WaitPlan& plan) {
  if (who == Parker::kCancelled || who == Parker::kUnclaimed) return false;
  return static_cast<int>(who - 1) != plan.timeout_index;
}

// After the owner was woken (or claimed its own parker): takes its nodes
// out of every queue and decides. `notified` tracks a buffered wake-up not
// yet used.
inline RoundEnd after_wake(WaitPlan& plan, Parker& parker, int& notified) {
  const std::uint32_t who = parker.claimed_by();
  // A peer or a buffered waker that claimed us took our node out of its
  // queue itself (WaitList::claim_first): a single-case wait has nothing
  // left to dequeue, and skips taking the channel's lock again.
  if (!claimed_from_a_queue(who, plan) || plan.cases.size() > 1) {
    dequeue_all(plan);
  }
  if (who == Parker::kCancelled) {
    if (notified >= 0)
      plan.cases[static_cast<std::size_t>(notified)]->pass_on();
    return {true, kStopped};
  }
  const int index = static_cast<int>(who - 1);
  if (index == plan.timeout_index) {
    if (notified >= 0)
      plan.cases[static_cast<std::size_t>(notified)]->pass_on();
    return {true, static_cast<std::size_t>(index)};
  }
  CaseBase* c = plan.cases[static_cast<std::size_t>(index)];
  if (c->rendezvous()) {
    c->from_peer(plan.nodes[static_cast<std::size_t>(index)]);
    return {true, static_cast<std::size_t>(index)};
  }
  notified = index;  // poll again
  return {};
}

// Before sleeping: a stop or a deadline that came while our parker was
// claimed by someone else (so their claim failed) ends the wait here.
// Returns true if the owner claimed its own parker.
inline bool claim_if_over(WaitPlan& plan, Parker& parker,
                          const std::stop_token& st) {
  if (st.stop_requested()) return parker.claim(Parker::kCancelled);
  if (plan.deadline && Clock::now() >= *plan.deadline) {
    return parker.claim(static_cast<std::uint32_t>(plan.timeout_index) + 1);
  }
  return false;
}

// A finished poll round's result, with an unused wake-up passed on.
inline std::size_t finish(WaitPlan& plan, int chosen, int notified) {
  if (notified >= 0 && notified != chosen) {
    plan.cases[static_cast<std::size_t>(notified)]->pass_on();
  }
  return chosen >= 0 ? static_cast<std::size_t>(chosen)
                     : static_cast<std::size_t>(plan.default_index);
}

// The blocking form, for threads. Returns the index of the case that took
// effect (the timeout's or default's index for those), or kStopped.
inline std::size_t wait_thread(WaitPlan& plan, const std::stop_token& st) {
  if (st.stop_requested()) return kStopped;
  if (const int c = poll_unlocked(plan); c >= 0) {
    return static_cast<std::size_t>(c);
  }
  Parker parker;
  parker.reset();  // builds its thread side before a stop can wake it
  std::optional<std::stop_callback<ClaimOnStop>> on_stop;
  if (st.stop_possible()) on_stop.emplace(st, ClaimOnStop{&parker});
  int notified = -1;
  for (;;) {
    parker.reset();
    const int chosen = poll_round(plan, parker, plan.default_index < 0);
    if (chosen != kMustWait) return finish(plan, chosen, notified);
    notified = -1;
    if (!claim_if_over(plan, parker, st) &&
        !parker.sleep_until(plan.deadline)) {
      // Timed out: claim for the timeout, unless a peer got there first.
      const auto timeout = static_cast<std::uint32_t>(plan.timeout_index) + 1;
      if (!parker.claim(timeout)) parker.wait_woken();
    }
    const RoundEnd end = after_wake(plan, parker, notified);
    if (end.done) return end.result;
  }
}

// Gives a coroutine its own handle without suspending.
struct CurrentHandle {
  std::coroutine_handle<> h;
  bool await_ready() noexcept { return false; }
  bool await_suspend(std::coroutine_handle<> self) noexcept {
    h = self;
    return false;
  }
  std::coroutine_handle<> await_resume() noexcept { return h; }
};

// Suspends until the parker is woken (or not at all if it already was).
struct ParkTask {
  Parker* parker;
  bool await_ready() noexcept { return false; }
  bool await_suspend(std::coroutine_handle<> /*self*/) noexcept {
    return parker->arm();
  }
  void await_resume() noexcept {}
};

// The suspending form, for tasks: as wait_thread, but the timeout is a
// runtime timer and waiting suspends the task. `plan`'s spans must outlive
// the returned task (they live in the awaiting coroutine's frame).
inline Task<std::size_t> wait_task(WaitPlan plan, std::stop_token st) {
  if (st.stop_requested()) co_return kStopped;
  Scheduler& sched = current_scheduler();
  Parker parker;
  parker.set_task(&sched, co_await CurrentHandle{});
  TimerNode timer;
  bool timer_added = false;
  std::optional<std::stop_callback<ClaimOnStop>> on_stop;
  if (st.stop_possible()) on_stop.emplace(st, ClaimOnStop{&parker});
  int notified = -1;
  std::size_t result = kStopped;
  for (;;) {
    parker.reset();
    const int chosen = poll_round(plan, parker, plan.default_index < 0);
    if (chosen != kMustWait) {
      result = finish(plan, chosen, notified);
      break;
    }
    notified = -1;
    if (!claim_if_over(plan, parker, st)) {
      if (plan.deadline && !timer_added) {
        timer.deadline = *plan.deadline;
        timer.parker = &parker;
        timer.index = static_cast<std::uint32_t>(plan.timeout_index);
        sched.add_timer(&timer);
        timer_added = true;
      }
      co_await ParkTask{&parker};
    }
    const RoundEnd end = after_wake(plan, parker, notified);
    if (end.done) {
      result = end.result;
      break;
    }
  }
  if (timer_added) sched.cancel_timer(&timer);
  co_return result;
}

// The wait of one channel operation that could not complete at once
// (Channel's async_send / async_recv awaiters), living inside the awaiter,
// so inside the awaiting coroutine's frame. On an unbuffered channel a
// wait ends with the first claim (a peer's hand-off, close, or a stop), so
// the awaiter itself suspends and the waker resumes the awaiting task
// directly: no coroutine frame of its own. A buffered channel's wake-up
// only says "poll again", which may have to suspend again, so that wait
// runs in a wait_task coroutine. Thread-safety: used by its task only.
class OneCaseWait {
 public:
  OneCaseWait() = default;
  OneCaseWait(const OneCaseWait&) = delete;
  OneCaseWait& operator=(const OneCaseWait&) = delete;

  // Starts waiting on `op` for the task `h`; true if the task must stay
  // suspended (it is resumed when the wait ends), false to go on at once.
  bool suspend(CaseBase* op, std::stop_token st, std::coroutine_handle<> h) {
    cases_[0] = op;
    if (op->rendezvous()) return suspend_direct(std::move(st), h);
    wait_ = wait_task(plan(), std::move(st));
    return wait_.operator co_await().await_suspend(h);
  }

  // After the task went on: 0 if the operation took effect (or found the
  // channel closed), kStopped if it was stopped first.
  std::size_t result() {
    if (!direct_) return wait_.operator co_await().await_resume();
    if (parked_) {
      WaitPlan p = plan();
      int notified = -1;
      result_ = after_wake(p, parker_, notified).result;  // always done
      parked_ = false;
    }
    return result_;
  }

 private:
  WaitPlan plan() { return WaitPlan{cases_, nodes_, -1, -1, std::nullopt}; }

  bool suspend_direct(std::stop_token st, std::coroutine_handle<> h) {
    direct_ = true;
    st_ = std::move(st);
    if (st_.stop_requested()) return false;  // result_ is kStopped
    parker_.set_task(&current_scheduler(), h);
    parker_.reset();
    if (st_.stop_possible()) on_stop_.emplace(st_, ClaimOnStop{&parker_});
    WaitPlan p = plan();
    const int chosen = poll_round(p, parker_, true);
    if (chosen != kMustWait) {
      result_ = static_cast<std::size_t>(chosen);
      return false;
    }
    parked_ = true;
    if (claim_if_over(p, parker_, st_)) return false;
    return parker_.arm();
  }

  CaseBase* cases_[1] = {};
  WaitNode nodes_[1];
  Task<std::size_t> wait_;  // buffered channels
  // Unbuffered channels. The stop callback is declared last: it is
  // destroyed first, waiting out a callback still running on another
  // thread before the parker it claims goes away.
  bool direct_ = false;
  bool parked_ = false;
  std::size_t result_ = kStopped;
  std::stop_token st_;
  Parker parker_;
  std::optional<std::stop_callback<ClaimOnStop>> on_stop_;
};

}  // namespace sluice::detail

#endif  // SLUICE_PATTERNS_DETAIL_SELECT_CORE_HPP_
