// Shared helpers for the sluice::patterns unit tests.
//
// Nothing here asserts performance: time is used only to give another thread
// a chance to do something it must not do (and then check that it did not),
// and as generous deadlines so that a broken library fails instead of hanging.
#pragma once

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <mutex>
#include <numeric>
#include <random>
#include <stop_token>
#include <string>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include "../../support/process_threads.hpp"
#include "sluice/patterns/channel.hpp"

namespace sluice::test {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

// Long enough that a correct library never hits it, even under TSan on a
// loaded two-core machine; short enough that a broken one fails well inside
// the ctest TIMEOUT.
inline constexpr std::chrono::milliseconds kDeadline = 10s;

// How long we give another thread to misbehave before checking that it did not.
inline constexpr std::chrono::milliseconds kSettle = 50ms;

// Number of threads in this process ("Threads:" in /proc/self/status), or -1.
inline int process_thread_count() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("Threads:", 0) == 0) return std::stoi(line.substr(8));
  }
  return -1;
}

// Number of threads in this process as the entries of /proc/self/task, or -1.
inline int proc_task_count() { return sluice::test_support::ProcessThreads(); }

// The thread count to compare against after an object that owns threads is
// gone. Starting (and joining) one thread first makes sure runtime helper
// threads that appear lazily with the first pthread_create (TSan's background
// thread, for one) are already counted.
inline int baseline_thread_count() {
  std::thread([] {}).join();
  return process_thread_count();
}

// Polls `pred` until it is true or `timeout` has passed; returns its last
// value.
template <class Pred>
bool eventually(Pred&& pred, std::chrono::milliseconds timeout = kDeadline) {
  const auto until = Clock::now() + timeout;
  while (!pred()) {
    if (Clock::now() >= until) return pred();
    std::this_thread::sleep_for(500us);
  }
  return true;
}

// A joined thread can take a moment to leave /proc's count; a leaked one never
// does. True once the process has at most `n` threads.
inline bool thread_count_drops_to(
    int n, std::chrono::milliseconds timeout = kDeadline) {
  return eventually([n] { return process_thread_count() <= n; }, timeout);
}

// A suite parameterised over the runtime thread counts 1, 2 and 4:
//   class FooTest : public test::ThreadCountTest {};
//   INSTANTIATE_TEST_SUITE_P(Threads, FooTest, test::ThreadCounts(),
//                            test::ThreadCountName());
class ThreadCountTest : public ::testing::TestWithParam<std::size_t> {
 protected:
  std::size_t threads() const { return GetParam(); }
};
inline auto ThreadCounts() {
  return ::testing::Values(std::size_t{1}, std::size_t{2}, std::size_t{4});
}

// Names the cases of a suite parameterised over runtime thread counts
// ("T1", "T2", "T4").
struct ThreadCountName {
  std::string operator()(
      const ::testing::TestParamInfo<std::size_t>& param) const {
    return "T" + std::to_string(param.param);
  }
};

// Sleeps a random number of microseconds in [0, max_us] (per-thread RNG).
inline void random_sleep_us(int max_us) {
  thread_local std::mt19937 rng(static_cast<std::uint32_t>(
      std::hash<std::thread::id>{}(std::this_thread::get_id())));
  std::uniform_int_distribution<int> dist(0, max_us);
  std::this_thread::sleep_for(std::chrono::microseconds(dist(rng)));
}

// A one-shot gate: wait() blocks until open() (or until the deadline, so a
// broken test cannot hang a worker forever; returns whether it was opened).
class Gate {
 public:
  void open() {
    {
      std::lock_guard lock(mu_);
      open_ = true;
    }
    cv_.notify_all();
  }
  bool wait(std::chrono::milliseconds timeout = kDeadline) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, timeout, [this] { return open_; });
  }
  bool is_open() const {
    std::lock_guard lock(mu_);
    return open_;
  }

 private:
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool open_ = false;
};

// Requests stop on its token after `timeout` (or when destroyed): a backstop
// for calls that would block forever if the library were wrong.
class Watchdog {
 public:
  explicit Watchdog(std::chrono::milliseconds timeout = kDeadline)
      : thread_([this, timeout](std::stop_token st) {
          std::mutex mu;
          std::condition_variable_any cv;
          std::unique_lock lock(mu);
          if (!cv.wait_for(lock, st, timeout, [] { return false; }) &&
              !st.stop_requested()) {
            fired_ = true;
          }
          source_.request_stop();
        }) {}
  Watchdog(const Watchdog&) = delete;
  Watchdog& operator=(const Watchdog&) = delete;
  std::stop_token token() const { return source_.get_token(); }
  bool fired() const { return fired_.load(); }

 private:
  std::stop_source source_;
  std::atomic<bool> fired_{false};
  std::jthread thread_;  // last: starts after the members it uses exist
};

// Measures elapsed time since construction.
class Stopwatch {
 public:
  Stopwatch() : start_(Clock::now()) {}
  Clock::duration elapsed() const { return Clock::now() - start_; }

 private:
  Clock::time_point start_;
};

// RAII live counter: construct one inside a function to count how many calls
// are in progress at once.
class LiveGuard {
 public:
  explicit LiveGuard(std::atomic<int>& counter) : counter_(counter) {
    counter_.fetch_add(1);
  }
  ~LiveGuard() { counter_.fetch_sub(1); }
  LiveGuard(const LiveGuard&) = delete;
  LiveGuard& operator=(const LiveGuard&) = delete;

 private:
  std::atomic<int>& counter_;
};

// Move-only, not default-constructible: the library must not require either.
class MoveOnly {
 public:
  explicit MoveOnly(int v) : value_(v) {}
  MoveOnly(MoveOnly&& other) noexcept
      : value_(std::exchange(other.value_, -1)) {}
  MoveOnly& operator=(MoveOnly&& other) noexcept {
    value_ = std::exchange(other.value_, -1);
    return *this;
  }
  MoveOnly(const MoveOnly&) = delete;
  MoveOnly& operator=(const MoveOnly&) = delete;
  ~MoveOnly() = default;
  int value() const { return value_; }

 private:
  int value_;
};

// Receives from `ch` until it is closed and drained, giving up (with a test
// failure) if no value arrives for kDeadline: a library that never closes an
// output fails the test instead of hanging it. Works with any type that has
// recv_for(duration) and closed() (Channel<T>).
template <class Ch>
auto drain(Ch& ch, std::chrono::milliseconds per_value = kDeadline) {
  using T = typename decltype(ch.recv_for(per_value))::value_type;
  std::vector<T> out;
  bool timed_out = false;
  while (true) {
    const auto call = Clock::now();
    auto v = ch.recv_for(per_value);
    if (!v) {
      // nullopt: timed out, or closed and drained (then closed() must be true).
      timed_out = Clock::now() - call >= per_value;
      break;
    }
    out.push_back(std::move(*v));
  }
  EXPECT_TRUE(ch.closed())
      << (timed_out ? "no value and no close within the deadline"
                    : "recv_for returned nullopt before its timeout "
                      "(closed and drained?) but closed() is false");
  return out;
}

// Sends 0..n-1 into `src` on its own thread, then closes it.
inline std::jthread feed(Channel<int>& src, int n) {
  return std::jthread([&src, n](std::stop_token st) {
    for (int i = 0; i < n; ++i) {
      if (!src.send(i, st)) {
        ADD_FAILURE() << "feeding the source failed at " << i;
        return;
      }
    }
    EXPECT_TRUE(src.close());
  });
}

inline std::vector<int> iota_vector(int n, int first = 0) {
  std::vector<int> v(static_cast<std::size_t>(n));
  std::iota(v.begin(), v.end(), first);
  return v;
}

}  // namespace sluice::test
