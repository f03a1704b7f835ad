// Tests for sluice::Mutex, MutexLock, CondVar and CondVarAny: mutual
// exclusion, TryLock, waits that wake, time out and stop. (That clang's
// -Wthread-safety checks their users is the build's job: the clang presets
// make its findings errors.)
#include "sluice/patterns/mutex.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <stop_token>
#include <thread>
#include <utility>
#include <vector>

namespace sluice {
namespace {

using namespace std::chrono_literals;

// A counter whose waiters block until it reaches a value: the usage the
// header documents, checked by the analysis under clang.
class Counter {
 public:
  void Add() SLUICE_EXCLUDES(mu_) {
    MutexLock lock(&mu_);
    ++n_;
    changed_.SignalAll();
  }
  int Get() const SLUICE_EXCLUDES(mu_) {
    MutexLock lock(&mu_);
    return n_;
  }
  void WaitFor(int n) SLUICE_EXCLUDES(mu_) {
    MutexLock lock(&mu_);
    while (n_ < n) changed_.Wait(&mu_);
  }
  // False if `deadline` passed first.
  bool WaitUntil(int n, std::chrono::steady_clock::time_point deadline)
      SLUICE_EXCLUDES(mu_) {
    MutexLock lock(&mu_);
    while (n_ < n) {
      if (changed_.WaitUntil(&mu_, deadline) == std::cv_status::timeout) {
        return n_ >= n;
      }
    }
    return true;
  }

 private:
  mutable Mutex mu_;
  CondVar changed_;
  int n_ SLUICE_GUARDED_BY(mu_) = 0;
};

TEST(MutexTest, MutexLockExcludesOtherThreads) {
  Counter counter;
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 10000; ++i) counter.Add();
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(counter.Get(), 40000);
}

TEST(MutexTest, TryLockFailsWhileAnotherThreadHoldsIt) {
  Mutex mu;
  mu.Lock();
  bool got = true;
  std::thread([&] {
    got = false;
    if (mu.TryLock()) {
      got = true;
      mu.Unlock();
    }
  }).join();
  EXPECT_FALSE(got);
  mu.Unlock();
  if (mu.TryLock()) {
    mu.Unlock();
  } else {
    ADD_FAILURE() << "TryLock failed on a free mutex";
  }
}

TEST(MutexTest, CondVarWaitWakesOnSignal) {
  Counter counter;
  std::thread waiter([&] { counter.WaitFor(3); });
  for (int i = 0; i < 3; ++i) counter.Add();
  waiter.join();
  EXPECT_EQ(counter.Get(), 3);
}

TEST(MutexTest, CondVarWaitUntilTimesOut) {
  Counter counter;
  const auto start = std::chrono::steady_clock::now();
  EXPECT_FALSE(counter.WaitUntil(1, start + 20ms));
  EXPECT_GE(std::chrono::steady_clock::now() - start, 20ms);
  counter.Add();
  EXPECT_TRUE(counter.WaitUntil(1, std::chrono::steady_clock::now() + 1s));
}

// A flag a thread waits for with a stop token.
struct Flag {
  Mutex mu;
  CondVarAny cv;
  bool set SLUICE_GUARDED_BY(mu) = false;

  void Set() SLUICE_EXCLUDES(mu) {
    MutexLock lock(&mu);
    set = true;
    cv.SignalAll();
  }
  // Waits until the flag is `want` or `st` is stopped; returns whether it is.
  bool WaitFor(bool want, std::stop_token st) SLUICE_EXCLUDES(mu) {
    MutexLock lock(&mu);
    return cv.Wait(&mu, std::move(st),
                   [&]() SLUICE_REQUIRES(mu) { return set == want; });
  }
};

TEST(MutexTest, CondVarAnyWaitReturnsTheConditionOrStops) {
  Flag flag;
  std::stop_source stop;
  std::thread setter([&] { flag.Set(); });
  EXPECT_TRUE(flag.WaitFor(true, stop.get_token()));
  setter.join();

  std::thread stopper([&] { stop.request_stop(); });
  EXPECT_FALSE(flag.WaitFor(false, stop.get_token()));
  stopper.join();
}

}  // namespace
}  // namespace sluice
