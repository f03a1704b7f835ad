// Fan-out to I/O-bound workers, the seeds' example, with 10,000 task workers.
//
// Go:  jobs := make(chan int, 1024)
//      for w := 0; w < 10000; w++ { go func() { for j := range jobs {
//          time.Sleep(20 * time.Millisecond); results <- j } }() }
//
// Each worker is a task (a coroutine) on a Runtime with one thread per core,
// not an OS thread: 10,000 of them cost a few hundred bytes each, and a
// worker waiting on its 20 ms "request" (sleep_for, a stand-in for a network
// call) holds no thread. With 10,000 jobs in flight every 20 ms the ideal
// rate is 500,000 jobs/s; the program prints how close it gets. The timing
// printed is a demonstration, not a benchmark (see bench/RESULTS.md, W6).
#include <atomic>
#include <chrono>
#include <cstdint>
#include <iostream>

#include "sluice/patterns/channel.hpp"
#include "sluice/patterns/runtime.hpp"

namespace {

constexpr int kWorkers = 10'000;
constexpr std::int64_t kJobs = 100'000;
constexpr auto kLatency = std::chrono::milliseconds(20);

}  // namespace

int main() {
  using Clock = std::chrono::steady_clock;
  sluice::Channel<std::int64_t> jobs(1024);
  sluice::Channel<std::int64_t> results(1024);
  std::atomic<int> workers_left{kWorkers};
  std::int64_t sum = 0;
  const auto start = Clock::now();
  {
    sluice::Runtime rt;  // one thread per core
    // The producer closes jobs when it has sent them all (the sender
    // closes); the last worker to finish closes results.
    rt.spawn([&]() -> sluice::Task<> {
      for (std::int64_t j = 0; j < kJobs; ++j) co_await jobs.async_send(j);
      jobs.close();
    });
    for (int w = 0; w < kWorkers; ++w) {
      rt.spawn([&]() -> sluice::Task<> {
        while (auto j = co_await jobs.async_recv()) {
          co_await sluice::sleep_for(kLatency);  // the "request"
          co_await results.async_send(*j);
        }
        if (workers_left.fetch_sub(1) == 1) results.close();
      });
    }
    // The consumer is a plain thread: channels serve both.
    for (std::int64_t r : results) sum += r;
  }  // ~Runtime waits for every task and joins its threads
  const double seconds =
      std::chrono::duration<double>(Clock::now() - start).count();
  const double rate = static_cast<double>(kJobs) / seconds;
  const double ideal =
      kWorkers / std::chrono::duration<double>(kLatency).count();
  std::cout << kJobs << " jobs on " << kWorkers << " task workers in "
            << seconds << " s: " << rate << " jobs/s, " << rate / ideal
            << " of the ideal " << ideal << " jobs/s\n"
            << "checksum ok: " << (sum == kJobs * (kJobs - 1) / 2) << '\n';
  return sum == kJobs * (kJobs - 1) / 2 ? 0 : 1;
}
