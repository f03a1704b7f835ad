// TaskGroup: the task counterpart of ThreadGroup. A set of tasks on one
// Runtime sharing a stop source, which the owning object waits for (Go's
// sync.WaitGroup plus a context) instead of waiting for the whole runtime.
#ifndef SLUICE_PATTERNS_DETAIL_TASK_GROUP_HPP_
#define SLUICE_PATTERNS_DETAIL_TASK_GROUP_HPP_

#include <cstddef>
#include <stop_token>
#include <type_traits>
#include <utility>

#include "sluice/patterns/detail/thread_annotations.hpp"
#include "sluice/patterns/mutex.hpp"
#include "sluice/patterns/runtime.hpp"
#include "sluice/patterns/task.hpp"

namespace sluice::detail {

// Thread-safety: request_stop() and token() from anywhere; spawn() and
// join() by the owner, from a thread that is not one of the runtime's.
class TaskGroup {
 public:
  explicit TaskGroup(Runtime& rt) : rt_(&rt) {}
  TaskGroup(const TaskGroup&) = delete;
  TaskGroup& operator=(const TaskGroup&) = delete;

  // Requests stop, then waits for every task of the group.
  ~TaskGroup() {
    request_stop();
    join();
  }

  // Spawns fn(std::stop_token), which returns Task<void>, as a task of the
  // group. fn is kept alive in the task's frame until it ends.
  template <class Fn>
  void spawn(Fn fn) SLUICE_EXCLUDES(mu_) {
    {
      MutexLock lock(&mu_);
      ++live_;
      ++size_;
    }
    rt_->spawn(
        [](TaskGroup* group, Fn f, std::stop_token st) -> Task<> {
          co_await f(st);
          group->task_ended();
        },
        this, std::move(fn), stop_.get_token());
  }

  void request_stop() noexcept { stop_.request_stop(); }
  [[nodiscard]] std::stop_token token() const noexcept {
    return stop_.get_token();
  }

  // Waits until every task of the group has ended. Idempotent.
  void join() SLUICE_EXCLUDES(mu_) {
    MutexLock lock(&mu_);
    while (live_ != 0) cv_.Wait(&mu_);
  }

  // True when no task of the group is running: every task spawned so far
  // has ended (then join() returns at once). Never blocks for long.
  [[nodiscard]] bool done() const SLUICE_EXCLUDES(mu_) {
    MutexLock lock(&mu_);
    return live_ == 0;
  }

  [[nodiscard]] std::size_t size() const SLUICE_EXCLUDES(mu_) {
    MutexLock lock(&mu_);
    return size_;
  }

 private:
  // The notify happens under the lock, so join() cannot return (and the
  // owner cannot destroy us) before this task is done touching the group.
  void task_ended() SLUICE_EXCLUDES(mu_) {
    MutexLock lock(&mu_);
    if (--live_ == 0) cv_.SignalAll();
  }

  Runtime* rt_;
  std::stop_source stop_;
  mutable Mutex mu_;
  CondVar cv_;
  std::size_t live_ SLUICE_GUARDED_BY(mu_) = 0;
  std::size_t size_ SLUICE_GUARDED_BY(mu_) = 0;
};

// A worker function's result as a task: Task<U> for a function returning
// Task<U> (awaited), U for one returning U (called).
template <class R>
struct Unwrap {
  using type = R;
  static constexpr bool kAsync = false;
};
template <class U>
struct Unwrap<Task<U>> {
  using type = U;
  static constexpr bool kAsync = true;
};

// A worker's result held across a co_await (void becomes an empty struct).
template <class U>
struct Slot {
  U value;
};
template <>
struct Slot<void> {};

// Runs a worker function in a task: awaits it if it returns a Task, calls
// it otherwise, and hands back its result in a Slot.
template <class Fn, class Arg>
Task<Slot<typename Unwrap<std::invoke_result_t<Fn&, Arg>>::type>> call_worker(
    Fn& fn, Arg arg) {
  using R = std::invoke_result_t<Fn&, Arg>;
  using U = typename Unwrap<R>::type;
  if constexpr (std::is_void_v<U>) {
    if constexpr (Unwrap<R>::kAsync) {
      co_await fn(std::move(arg));
    } else {
      fn(std::move(arg));
    }
    co_return Slot<void>{};
  } else if constexpr (Unwrap<R>::kAsync) {
    // Not Slot<U>{co_await ...}: GCC 12 destroys a value co_awaited inside
    // a braced initializer twice (a double free for a std::unique_ptr).
    U value = co_await fn(std::move(arg));
    co_return Slot<U>{std::move(value)};
  } else {
    co_return Slot<U>{fn(std::move(arg))};
  }
}

}  // namespace sluice::detail

#endif  // SLUICE_PATTERNS_DETAIL_TASK_GROUP_HPP_
