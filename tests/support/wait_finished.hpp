// WaitFinished: blocks until a job reaches a final state, for tests and
// benchmarks that drive an engine::Engine directly (the service itself never
// blocks on a job: it uses Job::NotifyWhenFinished).
#ifndef SLUICE_TESTS_SUPPORT_WAIT_FINISHED_HPP_
#define SLUICE_TESTS_SUPPORT_WAIT_FINISHED_HPP_

#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>

#include "service/jobs/job.hpp"

namespace sluice::test_support {

// Returns true once `job` has finished (at once if it already had), false if
// `timeout` passed first. Requires: `job` is not null. Thread-safe.
inline bool WaitFinished(
    const std::shared_ptr<jobs::Job>& job,
    std::chrono::milliseconds timeout = std::chrono::seconds(60)) {
  // Shared with the callback, which may run after a timed-out wait returned.
  struct Flag {
    std::mutex mu;
    std::condition_variable cv;
    bool set = false;
  };
  auto flag = std::make_shared<Flag>();
  if (!job->NotifyWhenFinished([flag] {
        std::lock_guard<std::mutex> lock(flag->mu);
        flag->set = true;
        flag->cv.notify_all();
      })) {
    return true;  // already finished
  }
  std::unique_lock<std::mutex> lock(flag->mu);
  return flag->cv.wait_for(lock, timeout, [&] { return flag->set; });
}

}  // namespace sluice::test_support

#endif  // SLUICE_TESTS_SUPPORT_WAIT_FINISHED_HPP_
