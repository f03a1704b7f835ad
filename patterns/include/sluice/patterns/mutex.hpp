// Mutex, MutexLock, CondVar and CondVarAny: std::mutex and the standard
// condition variables, wrapped so that clang's -Wthread-safety can check the
// SLUICE_GUARDED_BY / SLUICE_REQUIRES annotations of the code that uses them
// (after leveldb's port::Mutex and abseil's Mutex API). Under other compilers
// the annotations are empty and these are thin inline wrappers.
//
//   class Counter {
//    public:
//     void Add() SLUICE_EXCLUDES(mu_) {
//       sluice::MutexLock lock(&mu_);
//       ++n_;
//       changed_.SignalAll();
//     }
//     void WaitFor(int n) SLUICE_EXCLUDES(mu_) {
//       sluice::MutexLock lock(&mu_);
//       while (n_ < n) changed_.Wait(&mu_);
//     }
//    private:
//     sluice::Mutex mu_;
//     sluice::CondVar changed_;
//     int n_ SLUICE_GUARDED_BY(mu_) = 0;
//   };
//
// A wait with a predicate calls it with the mutex held, which the analysis
// cannot see through: give the lambda SLUICE_REQUIRES(mu) so its body is
// checked. A plain `while (!cond) cv.Wait(&mu);` loop needs nothing extra.
#ifndef SLUICE_PATTERNS_MUTEX_HPP_
#define SLUICE_PATTERNS_MUTEX_HPP_

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <stop_token>
#include <utility>

#include "sluice/patterns/detail/thread_annotations.hpp"

namespace sluice {

namespace detail {
class AdoptedLock;
}  // namespace detail

// A non-recursive exclusive lock, as std::mutex. Thread-safe.
class SLUICE_CAPABILITY("mutex") Mutex {
 public:
  Mutex() = default;
  Mutex(const Mutex&) = delete;
  Mutex& operator=(const Mutex&) = delete;

  void Lock() SLUICE_ACQUIRE() { mu_.lock(); }
  void Unlock() SLUICE_RELEASE() { mu_.unlock(); }
  // Takes the lock if it is free, without blocking; true if it did.
  [[nodiscard]] bool TryLock() SLUICE_TRY_ACQUIRE(true) {
    return mu_.try_lock();
  }
  // Tells the analysis that the caller holds this mutex, where it cannot see
  // that (e.g. a lock taken by a caller it cannot follow). Checks nothing at
  // run time.
  void AssertHeld() const SLUICE_ASSERT_CAPABILITY(this) {}

 private:
  friend class detail::AdoptedLock;
  std::mutex mu_;
};

// Holds a Mutex for its own lifetime (std::lock_guard). Thread-compatible:
// one thread creates and destroys it.
class SLUICE_SCOPED_CAPABILITY MutexLock {
 public:
  explicit MutexLock(Mutex* mu) SLUICE_ACQUIRE(mu) : mu_(mu) { mu_->Lock(); }
  ~MutexLock() SLUICE_RELEASE() { mu_->Unlock(); }
  MutexLock(const MutexLock&) = delete;
  MutexLock& operator=(const MutexLock&) = delete;

 private:
  Mutex* const mu_;
};

namespace detail {

// Lends a held Mutex to a standard condition variable as the unique_lock it
// wants, without taking the ownership over: whatever the wait does (returns
// or throws), the mutex is held again afterwards and stays the caller's.
class AdoptedLock {
 public:
  explicit AdoptedLock(Mutex* mu) : lock_(mu->mu_, std::adopt_lock) {}
  ~AdoptedLock() { static_cast<void>(lock_.release()); }
  AdoptedLock(const AdoptedLock&) = delete;
  AdoptedLock& operator=(const AdoptedLock&) = delete;

  std::unique_lock<std::mutex>& get() { return lock_; }

 private:
  std::unique_lock<std::mutex> lock_;
};

}  // namespace detail

// A condition variable used with a Mutex (std::condition_variable).
// Thread-safe. Waits may wake spuriously: wait in a loop on the condition.
class CondVar {
 public:
  CondVar() = default;
  CondVar(const CondVar&) = delete;
  CondVar& operator=(const CondVar&) = delete;

  // Releases *mu, blocks until woken, and takes *mu again before returning.
  void Wait(Mutex* mu) SLUICE_REQUIRES(mu) {
    detail::AdoptedLock lock(mu);
    cv_.wait(lock.get());
  }

  // As Wait, but returns std::cv_status::timeout once `deadline` passes.
  template <class Clock, class Duration>
  std::cv_status WaitUntil(
      Mutex* mu, const std::chrono::time_point<Clock, Duration>& deadline)
      SLUICE_REQUIRES(mu) {
    detail::AdoptedLock lock(mu);
    return cv_.wait_until(lock.get(), deadline);
  }

  void Signal() noexcept { cv_.notify_one(); }
  void SignalAll() noexcept { cv_.notify_all(); }

 private:
  std::condition_variable cv_;
};

// A condition variable used with a Mutex whose waits also end when a
// std::stop_token is stopped (std::condition_variable_any). Thread-safe.
class CondVarAny {
 public:
  CondVarAny() = default;
  CondVarAny(const CondVarAny&) = delete;
  CondVarAny& operator=(const CondVarAny&) = delete;

  // Releases *mu and blocks until `ready()` (called with *mu held) is true,
  // or `st` is stopped; takes *mu again and returns ready(). Give `ready`
  // SLUICE_REQUIRES(*mu) so the analysis checks what it reads.
  template <class Predicate>
  bool Wait(Mutex* mu, std::stop_token st, Predicate ready)
      SLUICE_REQUIRES(mu) {
    detail::AdoptedLock lock(mu);
    return cv_.wait(lock.get(), std::move(st), std::move(ready));
  }

  void Signal() noexcept { cv_.notify_one(); }
  void SignalAll() noexcept { cv_.notify_all(); }

 private:
  std::condition_variable_any cv_;
};

}  // namespace sluice

#endif  // SLUICE_PATTERNS_MUTEX_HPP_
