// FanOut<U> and fan_out(): N workers reading one input channel, each applying
// the same function (Go's fan-out: several goroutines ranging over one
// channel). With a non-void function the results are merged into one output
// channel that the last worker to finish closes.
//
// The workers are threads, or, given a Runtime, tasks on it: then `fn` may
// also return Task<U> and co_await inside (a worker waiting on I/O holds no
// thread), and a fan-out may have 10,000 workers.
//
// Thread-safety: output(), stop(), errors() and first_error() may be called
// from any thread; join(), moving and destruction only by the owner (with
// task workers: from a thread that is not one of the runtime's).
#ifndef SLUICE_PATTERNS_FAN_OUT_HPP_
#define SLUICE_PATTERNS_FAN_OUT_HPP_

#include <atomic>
#include <cstddef>
#include <exception>
#include <functional>
#include <memory>
#include <stdexcept>
#include <type_traits>
#include <utility>

#include "sluice/patterns/channel.hpp"
#include "sluice/patterns/detail/task_group.hpp"
#include "sluice/patterns/detail/thread_annotations.hpp"
#include "sluice/patterns/detail/thread_group.hpp"
#include "sluice/patterns/mutex.hpp"
#include "sluice/patterns/runtime.hpp"

namespace sluice {

namespace detail {

// Counts the items whose function threw and keeps the first exception.
// Thread-safe.
class ErrorTally {
 public:
  void record(std::exception_ptr e) SLUICE_EXCLUDES(mu_) {
    if (count_.fetch_add(1, std::memory_order_relaxed) == 0) {
      MutexLock lock(&mu_);
      first_ = std::move(e);
    }
  }
  [[nodiscard]] std::size_t count() const {
    return count_.load(std::memory_order_relaxed);
  }
  [[nodiscard]] std::exception_ptr first() const SLUICE_EXCLUDES(mu_) {
    MutexLock lock(&mu_);
    return first_;
  }

 private:
  std::atomic<std::size_t> count_{0};
  mutable Mutex mu_;
  std::exception_ptr first_ SLUICE_GUARDED_BY(mu_);
};

// The output channel of a fan-out, absent when the function returns void.
template <class U>
struct FanOutOutput {
  explicit FanOutOutput(std::size_t capacity) : channel(capacity) {}
  Channel<U> channel;
};
template <>
struct FanOutOutput<void> {
  explicit FanOutOutput(std::size_t /*capacity*/) {}
};

}  // namespace detail

template <class U>
class FanOut {
 public:
  FanOut(FanOut&&) noexcept = default;
  FanOut& operator=(FanOut&&) noexcept = default;
  FanOut(const FanOut&) = delete;
  FanOut& operator=(const FanOut&) = delete;

  // Requests stop and joins the workers.
  ~FanOut() = default;

  // The merged results; closes after every worker has finished.
  // (Deduced return types keep FanOut<void> from naming Channel<void>.)
  auto& output() requires(!std::is_void_v<U>) { return state_->out.channel; }
  auto begin() requires(!std::is_void_v<U>) { return output().begin(); }
  std::default_sentinel_t end() requires(!std::is_void_v<U>) { return {}; }

  // Waits until every worker has finished: the input closed and drained, or
  // stop was requested.
  void join() {
    state_->threads.join();
    if (state_->tasks) state_->tasks->join();
  }

  // Asks the workers to end after their current item.
  void stop() {
    state_->threads.request_stop();
    if (state_->tasks) state_->tasks->request_stop();
  }

  [[nodiscard]] std::size_t workers() const {
    return state_->tasks ? state_->tasks->size() : state_->threads.size();
  }
  // Items whose function threw (each such item was dropped).
  [[nodiscard]] std::size_t errors() const { return state_->errors.count(); }
  [[nodiscard]] std::exception_ptr first_error() const {
    return state_->errors.first();
  }

 private:
  template <class T, class Fn>
  friend auto fan_out(Channel<T>& in, std::size_t workers, Fn fn,
                      std::size_t out_capacity)
      -> FanOut<std::invoke_result_t<Fn&, T>>;
  template <class T, class Fn>
  friend auto fan_out(Runtime& rt, Channel<T>& in, std::size_t workers, Fn fn,
                      std::size_t out_capacity)
      -> FanOut<typename detail::Unwrap<std::invoke_result_t<Fn&, T>>::type>;

  struct State {
    State(std::size_t workers, std::size_t out_capacity)
        : out(out_capacity), done(workers) {}
    detail::FanOutOutput<U> out;
    detail::DoneLatch done;
    detail::ErrorTally errors;
    // Last: the workers end before the rest is destroyed.
    std::unique_ptr<detail::TaskGroup> tasks;  // task workers, if any
    detail::ThreadGroup threads;
  };

  explicit FanOut(std::unique_ptr<State> state) : state_(std::move(state)) {}

  std::unique_ptr<State> state_;
};

// Starts `workers` threads that each receive from `in` and apply `fn` to every
// value, until `in` is closed and drained. For non-void results, output()
// carries them (in no particular order across workers) and closes once all
// workers are done. An exception from fn drops that item only; it is counted
// in errors().
// Requires: workers >= 1; `in` outlives the FanOut; fn is callable as U(T)
// concurrently from several threads.
template <class T, class Fn>
auto fan_out(Channel<T>& in, std::size_t workers, Fn fn,
             std::size_t out_capacity = 0)
    -> FanOut<std::invoke_result_t<Fn&, T>> {
  using U = std::invoke_result_t<Fn&, T>;
  using State = typename FanOut<U>::State;
  if (workers == 0)
    throw std::invalid_argument("fan_out: workers must be >= 1");
  auto state = std::make_unique<State>(workers, out_capacity);
  auto shared_fn = std::make_shared<Fn>(std::move(fn));
  State* s = state.get();
  for (std::size_t i = 0; i < workers; ++i) {
    s->threads.spawn([s, &in, shared_fn](std::stop_token st) {
      while (std::optional<T> item = in.recv(st)) {
        try {
          if constexpr (std::is_void_v<U>) {
            (*shared_fn)(std::move(*item));
          } else {
            if (!s->out.channel.send((*shared_fn)(std::move(*item)), st)) break;
          }
        } catch (...) {
          s->errors.record(std::current_exception());
        }
      }
      if constexpr (!std::is_void_v<U>) {
        if (s->done.arrive()) s->out.channel.close();
      }
    });
  }
  return FanOut<U>(std::move(state));
}

// The task form: `workers` tasks on `rt` instead of threads, with the same
// results and rules. fn is U(T) or Task<U>(T); the second may co_await
// (channels, sleep_for, select) without holding a thread.
// Requires: as above; `rt` outlives the FanOut.
template <class T, class Fn>
auto fan_out(Runtime& rt, Channel<T>& in, std::size_t workers, Fn fn,
             std::size_t out_capacity = 0)
    -> FanOut<typename detail::Unwrap<std::invoke_result_t<Fn&, T>>::type> {
  using R = std::invoke_result_t<Fn&, T>;
  using U = typename detail::Unwrap<R>::type;
  using State = typename FanOut<U>::State;
  if (workers == 0)
    throw std::invalid_argument("fan_out: workers must be >= 1");
  auto state = std::make_unique<State>(workers, out_capacity);
  state->tasks = std::make_unique<detail::TaskGroup>(rt);
  auto shared_fn = std::make_shared<Fn>(std::move(fn));
  State* s = state.get();
  for (std::size_t i = 0; i < workers; ++i) {
    s->tasks->spawn([s, &in, shared_fn](std::stop_token st) -> Task<> {
      for (;;) {
        std::optional<T> item = co_await in.async_recv(st);
        if (!item) break;
        // An exception drops this item only. (No co_await in a handler.)
        std::exception_ptr error;
        std::optional<detail::Slot<U>> result;
        try {
          result.emplace(
              co_await detail::call_worker(*shared_fn, std::move(*item)));
        } catch (...) {
          error = std::current_exception();
        }
        if (error) {
          s->errors.record(error);
          continue;
        }
        if constexpr (!std::is_void_v<U>) {
          const bool sent =
              co_await s->out.channel.async_send(std::move(result->value), st);
          if (!sent) break;
        }
      }
      if constexpr (!std::is_void_v<U>) {
        if (s->done.arrive()) s->out.channel.close();
      }
    });
  }
  return FanOut<U>(std::move(state));
}

}  // namespace sluice

#endif  // SLUICE_PATTERNS_FAN_OUT_HPP_
