// Runtime, Task<T>, yield(), sleep_for() and await_callback(): the goroutine
// half of sluice.
//
// A Runtime runs C++20 coroutine tasks on a fixed set of threads (M:N, as
// Go's scheduler runs goroutines on GOMAXPROCS threads). `spawn` is Go's
// `go f(args...)`; a task that waits on a channel, a timer or a select
// suspends and its thread runs other tasks.
//
//   sluice::Runtime rt(2);
//   sluice::Channel<int> ch(0);
//   rt.spawn([&]() -> sluice::Task<> { co_await ch.async_send(42); });
//   rt.spawn([&]() -> sluice::Task<> { auto v = co_await ch.async_recv(); });
//   rt.wait();
//
// Scheduling (after Go's runtime/proc.go): each thread has a local run queue
// and a one-task "next" slot; a task woken by a task on the same runtime
// goes into the waker's next slot, so a hand-off between two tasks runs on
// one thread with no cross-core trip. Work from outside the runtime (a
// thread's send, spawn from main) goes to a global queue. An idle thread
// steals half of another's local queue, then parks on a condition variable:
// an idle runtime uses no CPU. Timers live in a heap per thread (Go's
// per-P timers: no lock shared by every sleeper, no thread per sleeper),
// fired by their thread, or by an idle one when they are late.
//
// Thread-safety: spawn() and wait() may be called from any thread (wait()
// not from the runtime's own threads); the destructor from one thread, with
// no concurrent spawn().
#ifndef SLUICE_PATTERNS_RUNTIME_HPP_
#define SLUICE_PATTERNS_RUNTIME_HPP_

#include <algorithm>
#include <atomic>
#include <cassert>
#include <chrono>
#include <coroutine>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <deque>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <stop_token>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include "sluice/patterns/detail/parker.hpp"
#include "sluice/patterns/detail/run_queue.hpp"
#include "sluice/patterns/detail/thread_annotations.hpp"
#include "sluice/patterns/detail/timer_heap.hpp"
#include "sluice/patterns/mutex.hpp"
#include "sluice/patterns/task.hpp"

namespace sluice {

class Runtime;

namespace detail {

// Scheduler: the threads and run queues of one Runtime. Thread-safe.
class Scheduler {
 public:
  explicit Scheduler(std::size_t threads) : workers_(threads) {
    for (std::size_t i = 0; i < workers_.size(); ++i) {
      workers_[i].thread = std::thread([this, i] { run(i); });
    }
  }
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;
  ~Scheduler() {
    {
      MutexLock lock(&idle_mu_);
      stopping_ = true;
    }
    idle_cv_.SignalAll();
    for (Worker& w : workers_) w.thread.join();
  }

  // Makes `h` runnable. From one of our threads it runs next on that thread
  // (Go's runnext); from anywhere else it joins the global queue.
  void schedule(std::coroutine_handle<> h) {
    Worker* w = current_worker();
    // A thread of another runtime is "outside" too: the task must go on
    // running on its own runtime.
    if (w == nullptr || w->owner != this) {
      push_global(h);
      return;
    }
    if (w->next)
      push_local(*w, std::exchange(w->next, h));
    else
      w->next = h;
  }

  // Makes `h` runnable after every task already queued (yield()).
  void schedule_last(std::coroutine_handle<> h) {
    Worker* w = current_worker();
    if (w == nullptr || w->owner != this) {
      push_global(h);
    } else {
      push_local(*w, h);
    }
  }

  // Arms `t` on the calling thread's own timer heap (Go's per-P timers).
  void add_timer(TimerNode* t) {
    Worker* w = current_worker();
    TimerHeap& heap =
        w != nullptr && w->owner == this ? w->timers : workers_[0].timers;
    // A parked thread may be sleeping until a later deadline, and a thread
    // spinning now may find other work and not come back to fire this one:
    // tell a parked thread even while another spins.
    if (heap.add(t)) signal_parked();
  }

  // Removes `t` if it has not fired. Call only after claiming its parker.
  static void cancel_timer(TimerNode* t) {
    if (t->heap != nullptr) t->heap->cancel(t);
  }

  // The scheduler whose thread is running the caller, or nullptr.
  static Scheduler* current() {
    Worker* w = current_worker();
    return w != nullptr ? w->owner : nullptr;
  }

 private:
  struct Worker {
    Scheduler* owner = nullptr;
    std::thread thread;
    std::coroutine_handle<> next;  // only its own thread touches it
    std::uint32_t next_streak = 0;
    std::uint32_t tick = 0;
    std::vector<Parker*> due;  // fire_timers' scratch; own thread only
    TimerHeap timers;
    RunQueue queue;  // pushed by its own thread only
  };

  static Worker*& current_worker() {
    thread_local Worker* w = nullptr;
    return w;
  }

  void push_global(std::coroutine_handle<> h) SLUICE_EXCLUDES(global_mu_) {
    {
      MutexLock lock(&global_mu_);
      global_.push_back(h);
      global_size_.store(global_.size(), std::memory_order_seq_cst);
    }
    wake_idle();
  }

  // Requires: `w` is the calling thread's worker. A full queue overflows
  // into the global one (as Go's runqputslow).
  void push_local(Worker& w, std::coroutine_handle<> h) {
    if (!w.queue.push(h)) {
      push_global(h);
      return;
    }
    wake_idle();  // another thread may steal it
  }

  // Dekker pairing with park(): a parking thread stops counting itself as
  // spinning and counts itself idle before it looks at the queues one last
  // time; a pusher publishes first, then reads the counts, so one of the
  // two sees the other. While a thread spins it will find the work itself:
  // waking a parked one too (a futex wake, then a futex sleep when it finds
  // nothing) is what Go's wakep() avoids with nmspinning.
  void wake_idle() SLUICE_EXCLUDES(idle_mu_) {
    if (spinning_.load(std::memory_order_seq_cst) != 0) return;
    signal_parked();
  }

  // Wakes one parked thread, if any, whether or not another is spinning.
  void signal_parked() SLUICE_EXCLUDES(idle_mu_) {
    if (idle_.load(std::memory_order_seq_cst) == 0) return;
    MutexLock lock(&idle_mu_);
    idle_cv_.Signal();
  }

  // Work is queued somewhere (a snapshot).
  bool work_queued() const {
    if (global_size_.load(std::memory_order_seq_cst) != 0) return true;
    return std::any_of(workers_.begin(), workers_.end(),
                       [](const Worker& w) { return w.queue.size() != 0; });
  }

  // The earliest deadline over every thread's heap (Clock ticks), or
  // INT64_MAX.
  std::int64_t earliest_deadline() const {
    std::int64_t next = INT64_MAX;
    for (const Worker& w : workers_) {
      next = std::min(next, w.timers.next_deadline());
    }
    return next;
  }

  // Fires the timers that are due on this thread's heap, and with `all` on
  // every heap (a thread with nothing to run fires the timers of one busy
  // running a long task). The heaps claim the parkers; the winners are
  // woken here, outside the heaps' locks.
  void fire_timers(Worker& self, bool all) {
    const std::int64_t next =
        all ? earliest_deadline() : self.timers.next_deadline();
    if (next == INT64_MAX) return;
    const Clock::time_point now = Clock::now();
    if (next > now.time_since_epoch().count()) return;
    for (Worker& w : workers_) {
      if (&w != &self && !all) continue;
      if (w.timers.next_deadline() <= now.time_since_epoch().count()) {
        w.timers.take_due(now, self.due);
      }
    }
    for (Parker* p : self.due) p->wake();
    self.due.clear();
  }

  std::coroutine_handle<> pop_global() SLUICE_EXCLUDES(global_mu_) {
    if (global_size_.load(std::memory_order_seq_cst) == 0) return {};
    MutexLock lock(&global_mu_);
    if (global_.empty()) return {};
    std::coroutine_handle<> h = global_.front();
    global_.pop_front();
    global_size_.store(global_.size(), std::memory_order_seq_cst);
    return h;
  }

  static std::coroutine_handle<> pop_local(Worker& w) { return w.queue.pop(); }

  // Takes half of another thread's queue (its oldest tasks): runs one,
  // keeps the rest. Requires: the caller's own queue is empty (so the rest
  // fits).
  std::coroutine_handle<> steal(Worker& self) {
    std::coroutine_handle<> taken[RunQueue::kSize / 2];
    for (Worker& victim : workers_) {
      if (&victim == &self) continue;
      const std::uint32_t n = victim.queue.grab(taken);
      if (n == 0) continue;
      for (std::uint32_t i = 1; i < n; ++i) push_local(self, taken[i]);
      return taken[0];
    }
    return {};
  }

  std::coroutine_handle<> find_work(Worker& w, bool all_timers = false) {
    fire_timers(w, all_timers);
    if (w.next) return take_next(w);
    // Every 61st look goes to the global queue first, so that work from
    // outside is not starved by busy local queues (as Go does).
    if (++w.tick % 61 == 0) {
      if (auto h = pop_global()) return h;
    }
    if (auto h = pop_local(w)) return h;
    if (auto h = pop_global()) return h;
    return steal(w);
  }

  // A chain of hand-offs through `next` (two tasks passing values back
  // and forth) stays on this thread, but every 64th link gives way to
  // queued work if there is any (Go lets runnext inherit the time slice for
  // the same reason). With nothing else to run, the chain simply goes on:
  // queueing it would only wake another thread to steal it.
  std::coroutine_handle<> take_next(Worker& w) {
    if (++w.next_streak < 64) return std::exchange(w.next, {});
    // (The streak is not reset when a chain ends: a new chain may give way
    // a little early, which only costs it a turn in the queue.)
    w.next_streak = 0;
    std::coroutine_handle<> other = pop_local(w);
    if (!other) other = pop_global();
    if (!other) return std::exchange(w.next, {});
    push_local(w, std::exchange(w.next, {}));
    return other;
  }

  bool has_work() const {
    return work_queued() ||
           earliest_deadline() <= Clock::now().time_since_epoch().count();
  }

  // Before parking, look again for a few microseconds: in a stream of
  // hand-offs the next task is usually made runnable that soon. Counted in
  // spinning_, so that pushers do not wake a parked thread meanwhile.
  std::coroutine_handle<> spin_for_work(Worker& w) {
    spinning_.fetch_add(1, std::memory_order_seq_cst);
    std::coroutine_handle<> h = find_work(w, true);
    for (int spin = 0; !h && spin < 8; ++spin) {
      for (int k = 0; k < 64; ++k) cpu_relax();
      h = find_work(w, true);
    }
    // Pushes made while we spun woke nobody, counting on us. If we found
    // work and were the last spinner, whatever else is queued (the rest of
    // a steal, timers fired in the spin) would wait for a busy thread:
    // wake a parked one to take it (Go's resetspinning).
    const bool last = spinning_.fetch_sub(1, std::memory_order_seq_cst) == 1;
    if (h && last && work_queued()) signal_parked();
    return h;
  }

  // Sleeps until work may be there. False once the scheduler stops.
  bool park() SLUICE_EXCLUDES(idle_mu_) {
    MutexLock lock(&idle_mu_);
    if (stopping_) return false;
    idle_.fetch_add(1, std::memory_order_seq_cst);
    if (!has_work()) {
      const std::int64_t next = earliest_deadline();
      if (next == INT64_MAX) {
        idle_cv_.Wait(&idle_mu_);
      } else {
        idle_cv_.WaitUntil(&idle_mu_, Clock::time_point(Clock::duration(next)));
      }
    }
    idle_.fetch_sub(1, std::memory_order_seq_cst);
    return !stopping_;
  }

  void run(std::size_t i) {
    Worker& w = workers_[i];
    w.owner = this;
    current_worker() = &w;
    // A thread woken from park() looks for work as a spinner (Go's wakep
    // starts a spinning M): if it finds some and more is queued, it wakes
    // the next parked thread in turn, so a burst of work reaches them all.
    bool woken = false;
    for (;;) {
      std::coroutine_handle<> h =
          woken ? std::coroutine_handle<>{} : find_work(w);
      if (!h) h = spin_for_work(w);
      woken = false;
      if (h) {
        h.resume();
        continue;
      }
      if (!park()) break;
      woken = true;
    }
    current_worker() = nullptr;
  }

  std::vector<Worker> workers_;
  Mutex global_mu_;
  std::deque<std::coroutine_handle<>> global_ SLUICE_GUARDED_BY(global_mu_);
  std::atomic<std::size_t> global_size_{0};  // global_.size(), for a peek

  Mutex idle_mu_;
  CondVar idle_cv_;
  std::atomic<std::uint32_t> idle_{0};
  std::atomic<std::uint32_t> spinning_{0};
  bool stopping_ SLUICE_GUARDED_BY(idle_mu_) = false;
};

inline void schedule_on(Scheduler* s, std::coroutine_handle<> h) {
  s->schedule(h);
}

inline Scheduler& current_scheduler() {
  Scheduler* s = Scheduler::current();
  assert(s != nullptr && "sluice: a task operation used outside a task");
  return *s;
}

// Cancels a suspended wait when its stop token fires: claims the parker,
// undoes the registration (`undo`), then wakes the owner.
template <class Undo>
struct StopWake {
  Parker* parker;
  Undo undo;
  void operator()() {
    if (!parker->claim(Parker::kCancelled)) return;
    undo();
    parker->wake();
  }
};

// The top-level coroutine of a spawned task: owns f and its arguments (in
// its frame) for as long as the task runs, and tells the runtime when done.
struct RootTask {
  struct promise_type {
    Runtime* rt = nullptr;
    static void* operator new(std::size_t n) { return FrameCache::allocate(n); }
    static void operator delete(void* p, std::size_t n) noexcept {
      FrameCache::deallocate(p, n);
    }
    RootTask get_return_object() noexcept {
      return RootTask{std::coroutine_handle<promise_type>::from_promise(*this)};
    }
    std::suspend_always initial_suspend() noexcept { return {}; }
    struct Final {
      bool await_ready() noexcept { return false; }
      void await_suspend(std::coroutine_handle<promise_type> h) noexcept;
      void await_resume() noexcept {}
    };
    Final final_suspend() noexcept { return {}; }
    void return_void() noexcept {}
    void unhandled_exception() noexcept { std::terminate(); }
  };
  std::coroutine_handle<promise_type> h;
};

// A panic in a goroutine ends the program: so does an exception escaping a
// spawned task, after printing its message.
[[noreturn]] inline void die_of(std::exception_ptr e) {
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& ex) {
    std::fprintf(stderr, "sluice: exception escaped a spawned task: %s\n",
                 ex.what());
  } catch (...) {
    std::fprintf(stderr, "sluice: exception escaped a spawned task\n");
  }
  std::fflush(stderr);
  std::terminate();
}

template <class F, class... Args>
RootTask run_spawned(F f, Args... args) {
  std::exception_ptr error;
  try {
    co_await std::invoke(f, args...);
  } catch (...) {
    error = std::current_exception();
  }
  if (error) die_of(error);
}

}  // namespace detail

class Runtime {
 public:
  // Starts `threads` threads (0 = std::thread::hardware_concurrency()).
  explicit Runtime(std::size_t threads = 0)
      : sched_(threads != 0 ? threads : default_threads()) {}
  Runtime(const Runtime&) = delete;
  Runtime& operator=(const Runtime&) = delete;

  // Waits for every spawned task (so a task blocked forever on a channel
  // nobody closes blocks the destructor: close the channel, or give the
  // task a stop token and request stop), then joins the threads.
  ~Runtime() { wait(); }

  // Go's `go f(args...)`: runs the Task<void> that f(args...) returns as a
  // new task. f and args are decay-copied into the task's frame and live
  // until the task ends. Allowed at any time, also after wait().
  template <class F, class... Args>
  void spawn(F&& f, Args&&... args) {
    static_assert(
        std::is_same_v<
            std::invoke_result_t<std::decay_t<F>&, std::decay_t<Args>&...>,
            Task<void>>,
        "spawn(f, args...): f(args...) must return sluice::Task<void>");
    detail::RootTask root =
        detail::run_spawned<std::decay_t<F>, std::decay_t<Args>...>(
            std::forward<F>(f), std::forward<Args>(args)...);
    root.h.promise().rt = this;
    live_.fetch_add(1, std::memory_order_relaxed);
    sched_.schedule_last(root.h);
  }

  // Blocks until every spawned task has ended. Requires: not called from
  // one of this runtime's threads (it would wait for itself).
  void wait() SLUICE_EXCLUDES(wait_mu_) {
    assert(detail::Scheduler::current() != &sched_);
    MutexLock lock(&wait_mu_);
    while (live_.load(std::memory_order_acquire) != 0) wait_cv_.Wait(&wait_mu_);
  }

 private:
  friend struct detail::RootTask::promise_type::Final;

  static std::size_t default_threads() {
    const unsigned n = std::thread::hardware_concurrency();
    return n == 0 ? 1 : n;
  }

  void task_ended() SLUICE_EXCLUDES(wait_mu_) {
    if (live_.fetch_sub(1, std::memory_order_acq_rel) != 1) return;
    MutexLock lock(&wait_mu_);
    wait_cv_.SignalAll();
  }

  std::atomic<std::size_t> live_{0};
  Mutex wait_mu_;
  CondVar wait_cv_;
  detail::Scheduler sched_;  // last: its threads stop before the rest dies
};

inline void detail::RootTask::promise_type::Final::await_suspend(
    std::coroutine_handle<promise_type> self) noexcept {
  Runtime* runtime = self.promise().rt;
  self.destroy();  // f and its arguments die before wait() returns
  runtime->task_ended();
}

// co_await sluice::yield(): lets every other ready task run first (also on
// Runtime(1)), then continues. Only inside a task.
inline auto yield() {
  struct Awaiter {
    bool await_ready() noexcept { return false; }
    void await_suspend(std::coroutine_handle<> h) {
      detail::current_scheduler().schedule_last(h);
    }
    void await_resume() noexcept {}
  };
  return Awaiter{};
}

// co_await sluice::sleep_for(d, st): suspends the task for `d` without
// holding a thread. Returns true after the full duration, false if `st` was
// stopped first (at once if already stopped). Only inside a task.
template <class Rep, class Period>
auto sleep_for(std::chrono::duration<Rep, Period> d, std::stop_token st = {}) {
  struct Awaiter {
    detail::Clock::duration d;
    std::stop_token st;
    detail::Parker parker;
    detail::TimerNode timer;
    detail::Scheduler* sched = nullptr;
    struct Undo {
      Awaiter* self;
      void operator()() const { detail::Scheduler::cancel_timer(&self->timer); }
    };
    std::optional<std::stop_callback<detail::StopWake<Undo>>> on_stop;

    bool await_ready() const noexcept {
      return d <= detail::Clock::duration::zero() || st.stop_requested();
    }
    bool await_suspend(std::coroutine_handle<> h) {
      sched = &detail::current_scheduler();
      parker.set_task(sched, h);
      timer.deadline = detail::Clock::now() + d;
      timer.parker = &parker;
      sched->add_timer(&timer);
      if (st.stop_possible()) {
        on_stop.emplace(st, detail::StopWake<Undo>{&parker, Undo{this}});
      }
      return parker.arm();
    }
    bool await_resume() const noexcept {
      if (d <= detail::Clock::duration::zero()) return !st.stop_requested();
      return parker.claimed_by() == 1;
    }
  };
  return Awaiter{std::chrono::ceil<detail::Clock::duration>(d),
                 std::move(st),
                 {},
                 {},
                 nullptr,
                 std::nullopt};
}

// co_await sluice::await_callback<T>(start): bridges a callback API (an
// Asio completion handler, a thread pool's "done") into a task. Suspends
// the task and calls start(resume), where resume is a callable taking a T
// that any thread may call exactly once, from inside or after start(); the
// task then continues on its runtime with that T as the co_await's value.
// Only inside a task. `start` must not throw after handing `resume` on.
//
//   HttpResponse r = co_await sluice::await_callback<HttpResponse>(
//       [&](auto resume) { client.send_async(req, std::move(resume)); });
template <class T, class Start>
auto await_callback(Start start) {
  struct Awaiter {
    Start start;
    std::optional<T> value;

    bool await_ready() const noexcept { return false; }
    void await_suspend(std::coroutine_handle<> h) {
      detail::Scheduler* sched = &detail::current_scheduler();
      // Called from here on, the resume may run the task (and end this
      // awaiter) on another thread before start() returns: start runs from
      // a copy on this stack, and nothing here touches *this afterwards.
      Start local = std::move(start);
      local([this, sched, h](T v) {
        value.emplace(std::move(v));
        detail::schedule_on(sched, h);
      });
    }
    T await_resume() { return std::move(*value); }
  };
  return Awaiter{std::move(start), std::nullopt};
}

}  // namespace sluice

#endif  // SLUICE_PATTERNS_RUNTIME_HPP_
