// Channel helpers for the task forms of fan-in, the worker pool and the
// pipeline, all of which suspend a task instead of blocking its thread:
// async_recv_many and async_send_all, the batch operations (recv_many's and
// send_many's task forms); TaskLock, a lock a task may hold across a
// suspension; TaskWake, a wake-up for one waiting task that is never lost.
//
// Thread-safety: each says; the vectors given to the batch operations belong
// to the task that awaits them.
#ifndef SLUICE_PATTERNS_DETAIL_ASYNC_BATCH_HPP_
#define SLUICE_PATTERNS_DETAIL_ASYNC_BATCH_HPP_

#include <cstddef>
#include <optional>
#include <stop_token>
#include <utility>
#include <vector>

#include "sluice/patterns/channel.hpp"
#include "sluice/patterns/task.hpp"

namespace sluice::detail {

// co_await: suspends for the first value, then takes whatever else is ready
// without waiting, up to `max` in all, appending to `out`. Returns the count;
// 0 once `ch` is closed and drained, or `st` stopped (or max == 0).
// Requires: called from a task; `out` outlives the await.
template <class T>
Task<std::size_t> async_recv_many(Channel<T>& ch, std::vector<T>& out,
                                  std::size_t max, std::stop_token st) {
  if (max == 0) co_return 0;
  std::optional<T> first = co_await ch.async_recv(st);
  if (!first) co_return 0;
  out.push_back(std::move(*first));
  co_return 1 + (max > 1 ? ch.try_recv_many(out, max - 1) : 0);
}

// co_await: sends `values` in order, suspending while `ch` is full, then
// clears `values`. True when all were delivered; false if `ch` closed or `st`
// stopped first (the rest are dropped).
// Requires: called from a task; `values` outlives the await.
template <class T>
Task<bool> async_send_all(Channel<T>& ch, std::vector<T>& values,
                          std::stop_token st) {
  bool all = true;
  for (T& v : values) {
    all = co_await ch.async_send(std::move(v), st);
    if (!all) break;
  }
  values.clear();
  co_return all;
}

// A lock that a task may hold across a suspension (a std::mutex may not be:
// the task can resume on another thread): a channel holding one token.
// Thread-safety: any number of tasks and threads.
class TaskLock {
 public:
  TaskLock() : token_(1) {
    char t = 0;
    (void)token_.try_send(t);
  }
  // co_await: takes the lock, suspending while another holds it. False (and
  // not held) if `st` stopped first.
  Task<bool> lock(std::stop_token st = {}) {
    std::optional<char> t = co_await token_.async_recv(std::move(st));
    co_return t.has_value();
  }
  // Requires: held by the caller.
  void unlock() {
    char t = 0;
    (void)token_.try_send(t);
  }

 private:
  Channel<char> token_;
};

// A wake-up that is not lost: notify() before wait() makes the next wait()
// return at once (a one-slot channel holding a token). Several notify()s
// before a wait() count as one. For one waiting task.
// Thread-safety: notify() from anywhere; wait() by one task at a time.
class TaskWake {
 public:
  TaskWake() : token_(1) {}
  void notify() {
    char t = 0;
    (void)token_.try_send(t);
  }
  // co_await: true once notified; false if `st` stopped first.
  Task<bool> wait(std::stop_token st) {
    std::optional<char> t = co_await token_.async_recv(std::move(st));
    co_return t.has_value();
  }

 private:
  Channel<char> token_;
};

}  // namespace sluice::detail

#endif  // SLUICE_PATTERNS_DETAIL_ASYNC_BATCH_HPP_
