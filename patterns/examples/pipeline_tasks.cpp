// A pipeline whose stages run as tasks: 10,000 I/O-bound workers in one
// stage, on one thread per core.
//
// Go:  ids := gen(100000)                          // a generator goroutine
//      pages := make(chan Page, 1024)
//      for w := 0; w < 10000; w++ { go func() { for id := range ids {
//          time.Sleep(20 * time.Millisecond)       // the "request"
//          pages <- Page{id, size(id)} } }() }
//      // ... then a filter stage, and the consumer
//
// Pipeline<T>::from(rt, ...) puts every stage's workers on the Runtime as
// tasks instead of threads. The fetch stage returns Task<Page> and co_awaits
// its 20 ms "request" (sleep_for, a stand-in for a network call), so a
// worker that waits holds no thread; the stage is ordered, so the pages
// still come out in id order. With 10,000 requests in flight every 20 ms the
// ideal rate is 500,000 items/s; the program prints how close it gets. The
// timing printed is a demonstration, not a benchmark.
#include <chrono>
#include <cstdint>
#include <iostream>
#include <optional>

#include "sluice/patterns/generator.hpp"
#include "sluice/patterns/pipeline.hpp"
#include "sluice/patterns/runtime.hpp"

namespace {

constexpr std::size_t kWorkers = 10'000;
constexpr std::int64_t kItems = 100'000;
constexpr auto kLatency = std::chrono::milliseconds(20);

struct Page {
  std::int64_t id = 0;
  std::int64_t bytes = 0;
};

// The "network call": 20 ms of waiting that holds no thread.
sluice::Task<Page> fetch(std::int64_t id) {
  co_await sluice::sleep_for(kLatency);
  co_return Page{id, id % 1000};
}

}  // namespace

int main() {
  using Clock = std::chrono::steady_clock;
  const auto start = Clock::now();
  std::int64_t pages = 0;
  std::int64_t bytes = 0;
  bool in_order = true;
  {
    sluice::Runtime rt;  // one thread per core
    // The generator is a task too; it closes its channel after kItems ids.
    auto ids = sluice::generate(
        rt,
        [next = std::int64_t{0}]() mutable -> std::optional<std::int64_t> {
          if (next == kItems) return std::nullopt;
          return next++;
        },
        1024);
    auto p =
        sluice::Pipeline<std::int64_t>::from(rt, std::move(ids))
            .map(fetch, {.workers = kWorkers, .buffer = 1024, .ordered = true})
            // One worker: a stage with several that is not ordered
            // itself would mix the order up again.
            .filter([](const Page& page) { return page.bytes > 0; });
    // The consumer is this thread: channels serve threads and tasks alike.
    std::int64_t last = -1;
    for (const Page& page : p) {
      in_order = in_order && page.id > last;
      last = page.id;
      ++pages;
      bytes += page.bytes;
    }
  }  // ~Pipeline stops and waits for its tasks, then ~Runtime joins
  const double seconds =
      std::chrono::duration<double>(Clock::now() - start).count();
  const double rate = static_cast<double>(kItems) / seconds;
  const double ideal = static_cast<double>(kWorkers) /
                       std::chrono::duration<double>(kLatency).count();
  std::cout << kItems << " items through " << kWorkers << " task workers in "
            << seconds << " s: " << rate << " items/s, " << rate / ideal
            << " of the ideal " << ideal << " items/s\n"
            << pages << " pages kept, " << bytes
            << " bytes, in id order: " << (in_order ? "yes" : "no") << '\n';
  const bool ok = in_order && pages == kItems - kItems / 1000;
  return ok ? 0 : 1;
}
