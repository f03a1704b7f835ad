// Task<T>: a lazily started C++20 coroutine, the unit of work a Runtime runs
// (Go's goroutine body). Included by runtime.hpp; use that header.
//
// A Task starts when it is spawned or first awaited and is awaited at most
// once; `co_await task` runs it and, when it ends after having suspended,
// is resumed from its final_suspend by symmetric transfer; `co_await`
// returns its value or rethrows its exception. A loop of awaits that finish
// without suspending does not grow the stack.
//
// Thread-safety: a Task is a move-only handle owned by one task at a time;
// it is not safe to use one Task object from two threads at once.
#ifndef SLUICE_PATTERNS_TASK_HPP_
#define SLUICE_PATTERNS_TASK_HPP_

#include <atomic>
#include <coroutine>
#include <cstddef>
#include <exception>
#include <new>
#include <optional>
#include <type_traits>
#include <utility>

namespace sluice {

template <class T = void>
class Task;

namespace detail {

// Coroutine frames come and go with every channel operation that suspends,
// so each thread keeps a few freed frames per size class (64-byte steps up
// to 2 KiB) for reuse instead of calling the global allocator each time.
// Thread-safety: thread-local, so none needed; a frame freed on another
// thread simply joins that thread's cache.
class FrameCache {
 public:
  static constexpr std::size_t kStep = 64;
  static constexpr std::size_t kClasses = 32;
  static constexpr std::size_t kMaxPerClass = 1024;

  static void* allocate(std::size_t n) {
    const std::size_t c = (n + kStep - 1) / kStep;
    if (c == 0 || c > kClasses) return ::operator new(n);
    Bucket& b = local().buckets_[c - 1];
    if (b.head != nullptr) {
      Free* f = b.head;
      b.head = f->next;
      --b.count;
      return f;
    }
    return ::operator new(c* kStep);
  }

  static void deallocate(void* p, std::size_t n) noexcept {
    const std::size_t c = (n + kStep - 1) / kStep;
    if (c == 0 || c > kClasses) return ::operator delete(p);
    Bucket& b = local().buckets_[c - 1];
    if (b.count >= kMaxPerClass) return ::operator delete(p);
    b.head = ::new (p) Free{b.head};
    ++b.count;
  }

  FrameCache() = default;
  FrameCache(const FrameCache&) = delete;
  FrameCache& operator=(const FrameCache&) = delete;
  ~FrameCache() {
    for (Bucket& b : buckets_) {
      while (b.head != nullptr) {
        Free* f = b.head;
        b.head = f->next;
        ::operator delete(f);
      }
    }
  }

 private:
  struct Free {
    Free* next;
  };
  struct Bucket {
    Free* head = nullptr;
    std::size_t count = 0;
  };
  static FrameCache& local() {
    thread_local FrameCache cache;
    return cache;
  }
  Bucket buckets_[kClasses];
};

class PromiseBase {
 public:
  static void* operator new(std::size_t n) { return FrameCache::allocate(n); }
  static void operator delete(void* p, std::size_t n) noexcept {
    FrameCache::deallocate(p, n);
  }

  std::suspend_always initial_suspend() noexcept { return {}; }

  // At the end, continue whoever awaited us, by symmetric transfer, unless
  // the awaiter is still inside its own resume() call (we finished without
  // suspending): then it simply goes on. Returning to a caller still on
  // the stack, rather than transferring into it, keeps a loop of
  // synchronously finishing awaits from growing the stack even where the
  // compiler does not turn symmetric transfer into a tail call (GCC -O0).
  struct FinalAwaiter {
    bool await_ready() noexcept { return false; }
    template <class P>
    std::coroutine_handle<> await_suspend(std::coroutine_handle<P> h) noexcept {
      PromiseBase& p = h.promise();
      if (p.continuation_ &&
          p.rendezvous_.exchange(true, std::memory_order_acq_rel)) {
        return p.continuation_;
      }
      return std::noop_coroutine();
    }
    void await_resume() noexcept {}
  };
  FinalAwaiter final_suspend() noexcept { return {}; }
  void unhandled_exception() noexcept { error_ = std::current_exception(); }

  std::coroutine_handle<> continuation_;
  std::exception_ptr error_;
  // Set by whichever of "the awaiter's resume() returned" and "the task
  // reached final_suspend" comes second's partner: see FinalAwaiter.
  std::atomic<bool> rendezvous_{false};
};

template <class T>
class Promise : public PromiseBase {
 public:
  Task<T> get_return_object() noexcept;
  template <class U>
  void return_value(U&& v) {
    value_.emplace(std::forward<U>(v));
  }
  T take() {
    if (error_) std::rethrow_exception(error_);
    return std::move(*value_);
  }

 private:
  std::optional<T> value_;
};

template <>
class Promise<void> : public PromiseBase {
 public:
  Task<void> get_return_object() noexcept;
  void return_void() noexcept {}
  void take() {
    if (error_) std::rethrow_exception(error_);
  }
};

}  // namespace detail

template <class T>
class [[nodiscard]] Task {
 public:
  using promise_type = detail::Promise<T>;
  using Handle = std::coroutine_handle<promise_type>;

  Task() = default;
  explicit Task(Handle h) noexcept : h_(h) {}
  Task(Task&& other) noexcept : h_(std::exchange(other.h_, {})) {}
  Task& operator=(Task&& other) noexcept {
    if (this != &other) {
      if (h_) h_.destroy();
      h_ = std::exchange(other.h_, {});
    }
    return *this;
  }
  Task(const Task&) = delete;
  Task& operator=(const Task&) = delete;
  ~Task() {
    if (h_) h_.destroy();
  }

  // Awaiting starts the task and resumes the awaiter when it ends.
  auto operator co_await() noexcept {
    struct Awaiter {
      Handle h;
      bool await_ready() noexcept { return !h || h.done(); }
      bool await_suspend(std::coroutine_handle<> awaiting) noexcept {
        h.promise().continuation_ = awaiting;
        h.resume();
        // True (stay suspended) if the task is still running: its
        // final_suspend will transfer to us.
        return !h.promise().rendezvous_.exchange(true,
                                                 std::memory_order_acq_rel);
      }
      T await_resume() { return h.promise().take(); }
    };
    return Awaiter{h_};
  }

  // Gives up ownership of the coroutine (used by Runtime::spawn).
  Handle release() noexcept { return std::exchange(h_, {}); }

 private:
  Handle h_;
};

namespace detail {
template <class T>
Task<T> Promise<T>::get_return_object() noexcept {
  return Task<T>(std::coroutine_handle<Promise<T>>::from_promise(*this));
}
inline Task<void> Promise<void>::get_return_object() noexcept {
  return Task<void>(std::coroutine_handle<Promise<void>>::from_promise(*this));
}
}  // namespace detail

}  // namespace sluice

#endif  // SLUICE_PATTERNS_TASK_HPP_
