// Generator<T> and generate(): a lazily produced stream of values, computed
// on a thread of its own and handed out through a Channel (Go's generator
// pattern: a goroutine that sends into a channel it closes when done). Given a
// Runtime, the producer is a task instead of a thread (generate(rt, fn)).
//
// Thread-safety: channel(), next(), stop() and error() may be called from any
// thread; moving or destroying a Generator requires that no other thread is
// using it.
#ifndef SLUICE_PATTERNS_GENERATOR_HPP_
#define SLUICE_PATTERNS_GENERATOR_HPP_

#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <stop_token>
#include <thread>
#include <type_traits>
#include <utility>

#include "sluice/patterns/channel.hpp"
#include "sluice/patterns/detail/task_group.hpp"
#include "sluice/patterns/detail/thread_annotations.hpp"
#include "sluice/patterns/mutex.hpp"
#include "sluice/patterns/runtime.hpp"

namespace sluice {

namespace detail {

// The value type a generator function yields: T for std::optional<T>().
template <class Fn>
struct GeneratorTraits {
  static constexpr bool kTakesStopToken =
      std::is_invocable_v<Fn&, std::stop_token>;
  using Result =
      typename std::conditional_t<kTakesStopToken,
                                  std::invoke_result<Fn&, std::stop_token>,
                                  std::invoke_result<Fn&>>::type;
  static constexpr bool kAsync = Unwrap<Result>::kAsync;
  using Value = typename Unwrap<Result>::type::value_type;
};

}  // namespace detail

template <class T>
class Generator {
 public:
  // Starts `fn` on the generator's thread. Prefer generate().
  template <class Fn>
  Generator(Fn fn, std::size_t capacity)
      : state_(std::make_unique<State>(capacity)) {
    State* state = state_.get();
    state->thread =
        std::jthread([state, fn = std::move(fn)](std::stop_token st) mutable {
          Produce(*state, fn, st);
        });
  }

  // Starts `fn` as a task on `rt`. Prefer generate(rt, ...).
  template <class Fn>
  Generator(Runtime& rt, Fn fn, std::size_t capacity)
      : state_(std::make_unique<State>(capacity)) {
    State* state = state_.get();
    state->tasks = std::make_unique<detail::TaskGroup>(rt);
    state->tasks->spawn(
        [state, fn = std::move(fn)](std::stop_token st) mutable -> Task<> {
          co_await ProduceAsync(*state, fn, st);
        });
  }

  Generator(Generator&&) noexcept = default;
  Generator& operator=(Generator&& other) noexcept {
    if (this != &other) {
      reset();
      state_ = std::move(other.state_);
    }
    return *this;
  }
  Generator(const Generator&) = delete;
  Generator& operator=(const Generator&) = delete;

  // Requests stop and joins the producer thread.
  ~Generator() { reset(); }

  // The receive side. Receivers must not close it: the generator thread does,
  // when fn returns nullopt, throws, or stop is requested.
  Channel<T>& channel() { return state_->channel; }

  // The next value; nullopt once the generator has ended and every value was
  // received, or when `st` is stopped.
  std::optional<T> next(std::stop_token st = {}) {
    return state_->channel.recv(st);
  }

  typename Channel<T>::Iterator begin() { return state_->channel.begin(); }
  std::default_sentinel_t end() { return {}; }

  // Asks the producer to end: it stops before computing another value (or
  // while blocked handing one over) and closes the channel. Values already
  // buffered can still be received.
  void stop() {
    if (!state_) return;
    state_->thread.request_stop();
    if (state_->tasks) state_->tasks->request_stop();
  }

  // What fn threw, once the channel has closed because of it; null otherwise.
  [[nodiscard]] std::exception_ptr error() const {
    MutexLock lock(&state_->mu);
    return state_->error;
  }

 private:
  // Heap-allocated so the producer thread keeps a stable pointer while the
  // Generator object itself moves.
  struct State {
    explicit State(std::size_t capacity) : channel(capacity) {}
    Channel<T> channel;
    mutable Mutex mu;
    std::exception_ptr error SLUICE_GUARDED_BY(mu);
    // Last: the producer ends before the channel is destroyed.
    std::unique_ptr<detail::TaskGroup> tasks;  // the task form's producer
    std::jthread thread;                       // the thread form's
  };

  template <class Fn>
  static std::optional<T> Call(Fn& fn, std::stop_token st) {
    if constexpr (detail::GeneratorTraits<Fn>::kTakesStopToken) {
      return fn(st);
    } else {
      return fn();
    }
  }

  // Sends each value as soon as it is produced. (Batching here would be
  // cheaper per value, but a batch being filled holds back values already
  // made for as long as the next call to fn takes, and fn may block.)
  template <class Fn>
  static void Produce(State& state, Fn& fn, std::stop_token st) {
    try {
      while (!st.stop_requested()) {
        std::optional<T> value = Call(fn, st);
        if (!value || !state.channel.send(std::move(*value), st)) break;
      }
    } catch (...) {
      MutexLock lock(&state.mu);
      state.error = std::current_exception();
    }
    state.channel.close();
  }

  // The task form of Produce: fn may return Task<std::optional<T>> and
  // co_await; handing a value over suspends instead of blocking.
  template <class Fn>
  static Task<> ProduceAsync(State& state, Fn& fn, std::stop_token st) {
    std::exception_ptr error;
    while (!st.stop_requested()) {
      std::optional<T> value;
      try {
        if constexpr (detail::GeneratorTraits<Fn>::kAsync) {
          if constexpr (detail::GeneratorTraits<Fn>::kTakesStopToken) {
            value = co_await fn(st);
          } else {
            value = co_await fn();
          }
        } else {
          value = Call(fn, st);
        }
      } catch (...) {
        error = std::current_exception();
      }
      if (error || !value) break;
      if (!co_await state.channel.async_send(std::move(*value), st)) break;
    }
    if (error) {
      MutexLock lock(&state.mu);
      state.error = error;
    }
    state.channel.close();
  }

  void reset() {
    if (!state_) return;
    state_->thread.request_stop();
    if (state_->thread.joinable()) state_->thread.join();
    state_->tasks.reset();  // requests stop and waits for the task
    state_.reset();
  }

  std::unique_ptr<State> state_;
};

// Runs `fn` on a thread of its own and streams its values, lazily: the next
// value is computed only after the previous one was handed over, so at most
// capacity + 1 values exist ahead of the consumer (capacity 0: one value
// waits in the producer until a receiver takes it).
// Requires: fn is `std::optional<T>()` or `std::optional<T>(std::stop_token)`;
// nullopt ends the stream. A throwing fn ends the stream too (see error()).
template <class Fn>
auto generate(Fn fn, std::size_t capacity = 0)
    -> Generator<typename detail::GeneratorTraits<Fn>::Value> {
  static_assert(!detail::GeneratorTraits<Fn>::kAsync,
                "generate(fn): a fn returning a Task needs generate(rt, fn)");
  return Generator<typename detail::GeneratorTraits<Fn>::Value>(std::move(fn),
                                                                capacity);
}

// The task form: runs `fn` as a task on `rt` (no thread of its own). fn may
// also return Task<std::optional<T>> and co_await inside.
// Requires: `rt` outlives the Generator; the Generator is destroyed from a
// thread that is not one of the runtime's.
template <class Fn>
auto generate(Runtime& rt, Fn fn, std::size_t capacity = 0)
    -> Generator<typename detail::GeneratorTraits<Fn>::Value> {
  return Generator<typename detail::GeneratorTraits<Fn>::Value>(
      rt, std::move(fn), capacity);
}

}  // namespace sluice

#endif  // SLUICE_PATTERNS_GENERATOR_HPP_
