// Worker pool: a fixed number of workers over a bounded job queue.
//
// Mirrors the seeds' worker pool (jobs channel, results channel, N worker
// goroutines) for batch processing: concurrency is capped at 3 workers, the
// submitter blocks while the queue is full (back-pressure) and, being the
// sender, is the one that closes it. One job throws; it comes back as that
// job's error and the pool carries on with the rest.

#include "sluice/patterns/worker_pool.hpp"

#include <atomic>
#include <chrono>
#include <cstdint>
#include <iostream>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>

namespace {

using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

constexpr int kJobs = 10;
constexpr std::size_t kWorkers = 3;
constexpr std::size_t kQueueCapacity = 2;

void Say(const std::string& line) {
  static std::mutex mu;  // The submitter and main print concurrently.
  std::lock_guard<std::mutex> lock(mu);
  std::cout << line << '\n' << std::flush;
}

int WorkerNumber() {
  static std::atomic<int> next{1};
  thread_local const int mine = next++;
  return mine;
}

// The seed's job: take a while, then double the input.
std::string Process(int job) {
  std::this_thread::sleep_for(milliseconds(80));
  if (job == 7) throw std::invalid_argument("job 7 has corrupt input");
  return std::to_string(job) + " * 2 = " + std::to_string(job * 2) +
         " (worker " + std::to_string(WorkerNumber()) + ")";
}

}  // namespace

int main() {
  Say("worker pool: " + std::to_string(kJobs) + " jobs, " +
      std::to_string(kWorkers) + " workers, queue of " +
      std::to_string(kQueueCapacity));
  const auto start = Clock::now();
  sluice::WorkerPool<int, std::string> pool(kWorkers, kQueueCapacity, Process);

  // Submitting on its own thread lets main read results at the same time, so
  // a full results channel can never stall the workers.
  std::jthread submitter([&pool] {
    for (int job = 1; job <= kJobs; ++job) {
      const auto before = Clock::now();
      const std::optional<std::uint64_t> id = pool.submit(job);
      if (!id) return;
      const auto waited =
          std::chrono::duration_cast<milliseconds>(Clock::now() - before);
      std::string line = "  submitted job " + std::to_string(job) + " as #" +
                         std::to_string(*id);
      if (waited >= milliseconds(5)) {
        line += ", after waiting " + std::to_string(waited.count()) +
                " ms for room in the queue";
      }
      Say(line);
    }
    pool.close();  // The submitter is the sender, so it closes.
    Say("  submitter: no more jobs, queue closed");
  });

  int succeeded = 0;
  int failed = 0;
  // results() closes once the queue is closed and every job has run.
  for (sluice::JobResult<std::string> result : pool.results()) {
    if (result.outcome.ok()) {
      Say("  result #" + std::to_string(result.id) + ": " +
          result.outcome.value());
      ++succeeded;
    } else {
      Say("  result #" + std::to_string(result.id) +
          ": error: " + result.outcome.error_message());
      ++failed;
    }
  }
  pool.wait();
  const auto elapsed =
      std::chrono::duration_cast<milliseconds>(Clock::now() - start);
  Say(std::to_string(succeeded) + " succeeded, " + std::to_string(failed) +
      " failed, in " + std::to_string(elapsed.count()) + " ms");
  return 0;
}
