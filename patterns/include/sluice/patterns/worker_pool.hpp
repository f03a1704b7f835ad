// WorkerPool<In, Out>: a fixed number of workers over a bounded job queue
// (Go's worker pool: a jobs channel the submitter closes, workers ranging over
// it, a results channel). Also Outcome<T> and JobResult<T>, a job's value or
// the exception it threw.
//
// Thread-safety: submit(), try_submit(), close(), results() may be called from
// any thread; wait() and destruction only by the owner.
#ifndef SLUICE_PATTERNS_WORKER_POOL_HPP_
#define SLUICE_PATTERNS_WORKER_POOL_HPP_

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "sluice/patterns/channel.hpp"
#include "sluice/patterns/detail/thread_group.hpp"

namespace sluice {

// A job's result: its value, or the exception it threw. Not thread-safe.
template <class T>
class Outcome {
 public:
  explicit Outcome(T value) : data_(std::in_place_index<0>, std::move(value)) {}
  explicit Outcome(std::exception_ptr error)
      : data_(std::in_place_index<1>, std::move(error)) {}

  [[nodiscard]] bool ok() const { return data_.index() == 0; }

  // The value. Rethrows the job's exception when !ok().
  T& value() {
    if (!ok()) std::rethrow_exception(std::get<1>(data_));
    return std::get<0>(data_);
  }

  // The exception, or null when ok().
  [[nodiscard]] std::exception_ptr error() const {
    return ok() ? nullptr : std::get<1>(data_);
  }

  // what() of the exception ("unknown exception" if it was not a
  // std::exception); "" when ok().
  [[nodiscard]] std::string error_message() const {
    if (ok()) return {};
    try {
      std::rethrow_exception(std::get<1>(data_));
    } catch (const std::exception& e) {
      return e.what();
    } catch (...) {
      return "unknown exception";
    }
  }

 private:
  std::variant<T, std::exception_ptr> data_;
};

// What a worker pool delivers for each job: its id (from submit) and outcome.
template <class T>
struct JobResult {
  std::uint64_t id;
  Outcome<T> outcome;
};

template <class In, class Out>
class WorkerPool {
 public:
  // Starts `workers` threads running `fn` on submitted jobs, which wait in a
  // queue of `queue_capacity` (0: submit hands a job straight to a worker).
  // Requires: workers >= 1 (std::invalid_argument otherwise); fn callable
  // concurrently from several threads.
  WorkerPool(std::size_t workers, std::size_t queue_capacity,
             std::function<Out(In)> fn, std::size_t results_capacity = 1024)
      : fn_(std::move(fn)),
        workers_(workers),
        jobs_(queue_capacity),
        results_(results_capacity),
        done_(workers) {
    if (workers == 0)
      throw std::invalid_argument("WorkerPool: workers must be >= 1");
    for (std::size_t i = 0; i < workers; ++i) {
      threads_.spawn([this](std::stop_token st) { Work(st); });
    }
  }

  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  // Requests stop (jobs still queued are dropped, running ones finish) and
  // joins the workers.
  ~WorkerPool() {
    threads_.request_stop();
    threads_.join();
  }

  // Queues `job`, blocking while the queue is full (back-pressure). Returns
  // the job's id, or nullopt if the pool was closed or `st` stopped first
  // (the job is dropped). Ids are distinct and, for jobs submitted by one
  // thread, increasing: 0, 1, 2, ... as long as no submit fails (a failed
  // submit leaves a gap).
  std::optional<std::uint64_t> submit(In job, std::stop_token st = {}) {
    const std::uint64_t id = next_id_.fetch_add(1, std::memory_order_relaxed);
    if (!jobs_.send(Job{id, std::move(job)}, st)) return std::nullopt;
    return id;
  }

  // Queues `job` only if there is room now. nullopt when full or closed, and
  // `job` is left untouched.
  std::optional<std::uint64_t> try_submit(In& job) {
    Job j{next_id_.fetch_add(1, std::memory_order_relaxed), std::move(job)};
    if (!jobs_.try_send(j)) {
      job = std::move(j.payload);  // hand it back intact
      return std::nullopt;
    }
    return j.id;
  }

  // The submitter's "no more jobs". Workers finish the queue, then results()
  // closes. Idempotent.
  void close() { jobs_.close(); }

  // One JobResult per job that ran, in completion order. Read it while
  // submitting: when it is full the workers wait.
  Channel<JobResult<Out>>& results() { return results_; }

  // Joins the workers: returns once close() was called and every queued job
  // has run (or stop was requested by the destructor).
  void wait() { threads_.join(); }

  [[nodiscard]] std::size_t workers() const { return workers_; }

 private:
  struct Job {
    std::uint64_t id;
    In payload;
  };

  // Jobs and results move in small batches: a worker takes at most its fair
  // share of the queue, and only as many jobs as fit in ~kBatchTime by the
  // durations it has measured, and it hands results over at least every
  // kBatchTime. For short jobs this turns one wake-up of the submitter and
  // of the result reader per job into one per batch (on a machine with
  // fewer cores than threads those wake-ups would take the workers' CPU);
  // for long jobs batches are a single job, so results are not held back.
  void Work(std::stop_token st) {
    using Clock = std::chrono::steady_clock;
    constexpr auto kBatchTime = std::chrono::microseconds(20);
    constexpr std::size_t kMaxBatch = 64;
    Clock::duration average{0};  // of this worker's recent jobs
    std::vector<Job> batch;
    std::vector<JobResult<Out>> results;
    bool open = true;
    while (open) {
      std::size_t want = jobs_.size() / workers_;
      if (average.count() > 0) {
        const auto fit = static_cast<std::size_t>(kBatchTime / average);
        want = fit < want ? fit : want;
      }
      want = want < 1 ? 1 : (want > kMaxBatch ? kMaxBatch : want);
      if (jobs_.recv_many(batch, want, st) == 0) break;
      Clock::time_point last = Clock::now();
      Clock::time_point flush_at = last + kBatchTime;
      for (Job& job : batch) {
        results.push_back(JobResult<Out>{job.id, Run(job.payload)});
        const Clock::time_point now = Clock::now();
        average = average.count() == 0 ? now - last
                                       : (average * 7 + (now - last)) / 8;
        last = now;
        if (now >= flush_at) {
          open = Flush(results, st);
          if (!open) break;
          flush_at = now + kBatchTime;
        }
      }
      batch.clear();
      if (open) open = Flush(results, st);
    }
    if (done_.arrive()) results_.close();
  }

  Outcome<Out> Run(In& payload) {
    try {
      return Outcome<Out>(fn_(std::move(payload)));
    } catch (...) {
      return Outcome<Out>(std::current_exception());
    }
  }

  bool Flush(std::vector<JobResult<Out>>& results, std::stop_token st) {
    const bool all = results_.send_many(results, st) == results.size();
    results.clear();
    return all;
  }

  const std::function<Out(In)> fn_;
  const std::size_t workers_;
  Channel<Job> jobs_;
  Channel<JobResult<Out>> results_;
  detail::DoneLatch done_;

  std::atomic<std::uint64_t> next_id_{0};

  detail::ThreadGroup threads_;  // last: joined before the rest is destroyed
};

}  // namespace sluice

#endif  // SLUICE_PATTERNS_WORKER_POOL_HPP_
