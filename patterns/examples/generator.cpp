// Lazy generators: values are computed only as fast as they are consumed.
//
// Mirrors the seeds' generator pattern, a goroutine that writes into a channel
// it created and closes when done. sluice::generate runs the producer on its
// own thread; the returned Generator owns that thread and the channel, closes
// the channel at the end of the sequence, and stops and joins on destruction.
// Part 1 polls a paginated API page by page (a finite generator); part 2 is an
// infinite Fibonacci generator that is stopped early by destroying it.

#include "sluice/patterns/generator.hpp"

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <iostream>
#include <mutex>
#include <optional>
#include <stop_token>
#include <string>
#include <thread>
#include <vector>

namespace {

using std::chrono::milliseconds;

// Producer and consumer print from different threads; the lock keeps each line
// whole.
void Say(const std::string& line) {
  static std::mutex mu;
  std::lock_guard<std::mutex> lock(mu);
  std::cout << line << '\n' << std::flush;
}

struct Page {
  int number = 0;
  std::vector<std::string> items;
};

// Stands in for GET /items?page=N on a remote service holding 7 items.
Page FetchPage(int number) {
  std::this_thread::sleep_for(milliseconds(30));
  constexpr int kTotalItems = 7;
  constexpr int kPageSize = 3;
  Page page{.number = number, .items = {}};
  for (int i = (number - 1) * kPageSize + 1;
       i <= kTotalItems && page.items.size() < kPageSize; ++i) {
    page.items.push_back("item-" + std::to_string(i));
  }
  return page;
}

void PollPaginatedApi() {
  Say("== 1. polling a paginated API, one page at a time ==");
  // Capacity 1 lets the poller prefetch the next page while the consumer is
  // busy, but never more: memory stays bounded however large the data set.
  auto pages = sluice::generate(
      [next = 1](const std::stop_token& st) mutable -> std::optional<Page> {
        // Honouring the token keeps a stopped generator from issuing one
        // more (slow) request nobody will read.
        if (st.stop_requested()) return std::nullopt;
        Page page = FetchPage(next++);
        if (page.items.empty()) {
          Say("  producer: page " + std::to_string(page.number) +
              " is empty, end of data (the generator closes its channel)");
          return std::nullopt;
        }
        const std::size_t n = page.items.size();
        Say("  producer: fetched page " + std::to_string(page.number) + " (" +
            std::to_string(n) + (n == 1 ? " item)" : " items)"));
        return page;
      },
      1);

  int total = 0;
  // The loop ends by itself once the generator has closed its channel.
  for (const Page& page : pages) {
    std::string line = "  consumer: page " + std::to_string(page.number) + ":";
    for (const std::string& item : page.items) line += " " + item;
    Say(line);
    total += static_cast<int>(page.items.size());
    std::this_thread::sleep_for(milliseconds(50));  // Processing is slower.
  }
  Say("  consumer: " + std::to_string(total) + " items in total");
}

void InfiniteFibonacci() {
  Say("== 2. an infinite Fibonacci generator, stopped early ==");
  std::atomic<int> produced{0};
  {
    // Capacity 0 is a rendezvous, so the producer is at most one value ahead:
    // Fibonacci numbers are computed on demand, never in advance.
    auto fib = sluice::generate(
        [&produced, a = std::uint64_t{0},
         b = std::uint64_t{1}]() mutable -> std::optional<std::uint64_t> {
          std::this_thread::sleep_for(milliseconds(5));  // "Expensive" step.
          const std::uint64_t value = a;
          a = b;
          b += value;
          const int n = produced++;
          Say("  producer: computed fib(" + std::to_string(n) +
              ") = " + std::to_string(value));
          return value;
        });
    for (int i = 0; i < 10; ++i) {
      const std::optional<std::uint64_t> value = fib.next();
      if (!value) break;
      Say("  consumer: took fib(" + std::to_string(i) +
          ") = " + std::to_string(*value));
      std::this_thread::sleep_for(milliseconds(30));
    }
    Say("  consumer: took 10 values; the producer computed " +
        std::to_string(produced.load()) +
        " (one waits in the unbuffered channel)");
    // Leaving the scope destroys the generator: it requests stop, the
    // producer's pending send fails, and its thread is joined. No goroutine
    // leak, no need for a separate "done" channel.
  }
  Say("  generator destroyed: " + std::to_string(produced.load()) +
      " values computed in all, nothing ran on after the stop");
}

}  // namespace

int main() {
  PollPaginatedApi();
  InfiniteFibonacci();
  return 0;
}
