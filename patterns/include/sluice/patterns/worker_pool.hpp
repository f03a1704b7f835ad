// WorkerPool<In, Out>: a fixed number of workers over a bounded job queue
// (Go's worker pool: a jobs channel the submitter closes, workers ranging over
// it, a results channel). Also Outcome<T> and JobResult<T>, a job's value or
// the exception it threw.
//
// The workers are threads, or, given a Runtime, tasks on it: then the job
// function may also return Task<Out> and co_await inside (a job waiting on
// I/O holds no thread), and a pool may have 10,000 workers.
//
// Thread-safety: submit(), try_submit(), close(), results() may be called from
// any thread, async_submit() from any task; wait() and destruction only by the
// owner (with task workers: from a thread that is not one of the runtime's).
#ifndef SLUICE_PATTERNS_WORKER_POOL_HPP_
#define SLUICE_PATTERNS_WORKER_POOL_HPP_

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <stop_token>
#include <string>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "sluice/patterns/channel.hpp"
#include "sluice/patterns/detail/async_batch.hpp"
#include "sluice/patterns/detail/task_group.hpp"
#include "sluice/patterns/detail/thread_group.hpp"
#include "sluice/patterns/runtime.hpp"

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
      : WorkerPool(std::move(fn), nullptr, workers, queue_capacity,
                   results_capacity) {
    for (std::size_t i = 0; i < workers; ++i) {
      threads_.spawn([this](std::stop_token st) { Work(st); });
    }
  }

  // The task form: `workers` tasks on `rt` instead of threads, with the same
  // results and rules (ids, back-pressure, close, a job's exception as its
  // error). fn is Out(In) or Task<Out>(In); the second may co_await
  // (channels, sleep_for, select) without holding a thread.
  // Requires: workers >= 1 (std::invalid_argument otherwise); fn callable
  // concurrently from several tasks; `rt` outlives the pool, which is
  // waited for and destroyed from a thread that is not one of the runtime's.
  template <class Fn>
  WorkerPool(Runtime& rt, std::size_t workers, std::size_t queue_capacity,
             Fn fn, std::size_t results_capacity = 1024)
      : WorkerPool(nullptr, AsTaskFn(std::move(fn)), workers, queue_capacity,
                   results_capacity) {
    tasks_ = std::make_unique<detail::TaskGroup>(rt);
    for (std::size_t i = 0; i < workers; ++i) {
      tasks_->spawn(
          [this](std::stop_token st) -> Task<> { co_await WorkAsync(st); });
    }
  }

  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  // Requests stop (jobs still queued are dropped, running ones finish) and
  // joins the workers.
  ~WorkerPool() {
    threads_.request_stop();
    if (tasks_) tasks_->request_stop();
    threads_.join();
    tasks_.reset();
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

  // The task form of submit(), for a submitter that is a task: suspends
  // while the queue is full instead of blocking its thread; otherwise as
  // submit(). Works with thread and task workers alike.
  // Requires: called from a task. Returns the job's id, or nullopt if the
  // pool was closed or `st` stopped first (the job is dropped).
  Task<std::optional<std::uint64_t>> async_submit(In job,
                                                  std::stop_token st = {}) {
    const std::uint64_t id = next_id_.fetch_add(1, std::memory_order_relaxed);
    // A named Job: GCC 12 destroys an aggregate temporary inside a co_await
    // expression twice.
    Job queued{id, std::move(job)};
    const bool sent = co_await jobs_.async_send(std::move(queued), st);
    if (!sent) co_return std::nullopt;
    co_return id;
  }

  // The submitter's "no more jobs". Workers finish the queue, then results()
  // closes. Idempotent.
  void close() { jobs_.close(); }

  // One JobResult per job that ran, in completion order. Read it while
  // submitting: when it is full the workers wait.
  Channel<JobResult<Out>>& results() { return results_; }

  // Joins the workers: returns once close() was called and every queued job
  // has run (or stop was requested by the destructor).
  void wait() {
    threads_.join();
    if (tasks_) tasks_->join();
  }

  [[nodiscard]] std::size_t workers() const { return workers_; }

 private:
  struct Job {
    std::uint64_t id;
    In payload;
  };

  // What both forms share; the public constructors then start the workers
  // (fn for threads, task_fn for tasks).
  WorkerPool(std::function<Out(In)> fn, std::function<Task<Out>(In)> task_fn,
             std::size_t workers, std::size_t queue_capacity,
             std::size_t results_capacity)
      : fn_(std::move(fn)),
        task_fn_(std::move(task_fn)),
        workers_(workers),
        jobs_(queue_capacity),
        results_(results_capacity),
        done_(workers) {
    if (workers == 0)
      throw std::invalid_argument("WorkerPool: workers must be >= 1");
  }

  // Jobs and results move in small batches: a worker takes at most its fair
  // share of the queue, and only as many jobs as fit in ~kBatchTime by the
  // durations it has measured, and it hands results over at least every
  // kBatchTime. For short jobs this turns one wake-up of the submitter and
  // of the result reader per job into one per batch (on a machine with
  // fewer cores than threads those wake-ups would take the workers' CPU);
  // for long jobs batches are a single job, so results are not held back.
  // One Pace per worker. Not thread-safe.
  class Pace {
   public:
    // How many jobs to take now, of `queued` shared by `workers`.
    [[nodiscard]] std::size_t want(std::size_t queued,
                                   std::size_t workers) const {
      std::size_t n = queued / workers;
      if (average_.count() > 0) {
        const auto fit = static_cast<std::size_t>(kBatchTime / average_);
        n = fit < n ? fit : n;
      }
      return n < 1 ? 1 : (n > kMaxBatch ? kMaxBatch : n);
    }
    // A batch of jobs starts now.
    void begin() {
      last_ = Clock::now();
      flush_at_ = last_ + kBatchTime;
    }
    // A job just ended. True when the results held should be handed over.
    bool job_done() {
      const Clock::time_point now = Clock::now();
      average_ = average_.count() == 0 ? now - last_
                                       : (average_ * 7 + (now - last_)) / 8;
      last_ = now;
      if (now < flush_at_) return false;
      flush_at_ = now + kBatchTime;
      return true;
    }

   private:
    using Clock = std::chrono::steady_clock;
    static constexpr auto kBatchTime = std::chrono::microseconds(20);
    static constexpr std::size_t kMaxBatch = 64;
    Clock::duration average_{0};  // of this worker's recent jobs
    Clock::time_point last_;
    Clock::time_point flush_at_;
  };

  void Work(std::stop_token st) {
    Pace pace;
    std::vector<Job> batch;
    std::vector<JobResult<Out>> results;
    bool open = true;
    while (open &&
           jobs_.recv_many(batch, pace.want(jobs_.size(), workers_), st) > 0) {
      pace.begin();
      for (Job& job : batch) {
        results.push_back(JobResult<Out>{job.id, Run(job.payload)});
        if (pace.job_done()) {
          open = Flush(results, st);
          if (!open) break;
        }
      }
      batch.clear();
      if (open) open = Flush(results, st);
    }
    if (done_.arrive()) results_.close();
  }

  // The task form of Work: receiving, running a job and handing results
  // over suspend instead of blocking.
  Task<> WorkAsync(std::stop_token st) {
    Pace pace;
    std::vector<Job> batch;
    std::vector<JobResult<Out>> results;
    bool open = true;
    while (open) {
      const std::size_t want = pace.want(jobs_.size(), workers_);
      const std::size_t got =
          co_await detail::async_recv_many(jobs_, batch, want, st);
      if (got == 0) break;
      pace.begin();
      for (Job& job : batch) {
        Outcome<Out> outcome = co_await RunAsync(job.payload);
        results.push_back(JobResult<Out>{job.id, std::move(outcome)});
        if (pace.job_done()) {
          open = co_await detail::async_send_all(results_, results, st);
          if (!open) break;
        }
      }
      batch.clear();
      if (open) open = co_await detail::async_send_all(results_, results, st);
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

  // Runs a job in a task: its value, or the exception it threw.
  Task<Outcome<Out>> RunAsync(In& payload) {
    std::exception_ptr error;
    try {
      Out value = co_await task_fn_(std::move(payload));
      co_return Outcome<Out>(std::move(value));
    } catch (...) {
      error = std::current_exception();
    }
    co_return Outcome<Out>(error);
  }

  bool Flush(std::vector<JobResult<Out>>& results, std::stop_token st) {
    const bool all = results_.send_many(results, st) == results.size();
    results.clear();
    return all;
  }

  // The task form's job function: fn returning Out or Task<Out>, as one that
  // returns Task<Out>.
  template <class Fn>
  static std::function<Task<Out>(In)> AsTaskFn(Fn fn) {
    using U = typename detail::Unwrap<std::invoke_result_t<Fn&, In>>::type;
    static_assert(std::is_convertible_v<U, Out>,
                  "WorkerPool(rt, ...): fn must return Out or Task<Out>");
    auto shared = std::make_shared<Fn>(std::move(fn));
    return [shared](In job) -> Task<Out> {
      detail::Slot<U> r = co_await detail::call_worker(*shared, std::move(job));
      co_return std::move(r.value);
    };
  }

  const std::function<Out(In)> fn_;             // the thread form's
  const std::function<Task<Out>(In)> task_fn_;  // the task form's
  const std::size_t workers_;
  Channel<Job> jobs_;
  Channel<JobResult<Out>> results_;
  detail::DoneLatch done_;

  std::atomic<std::uint64_t> next_id_{0};

  // Last: the workers end before the rest is destroyed.
  std::unique_ptr<detail::TaskGroup> tasks_;  // task workers, if any
  detail::ThreadGroup threads_;
};

}  // namespace sluice

#endif  // SLUICE_PATTERNS_WORKER_POOL_HPP_
