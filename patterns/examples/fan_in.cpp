// Fan-in: merge several channels into one stream.
//
// Mirrors the seeds' fan-in (multiplexer): several producers, each writing to
// and closing its own channel, are merged into a single output that closes
// once every input has closed. Part 1 shows that the order across inputs is
// not guaranteed; part 2 uses fan_in_ordered to get a sequence back in order
// from shards that finish at different times.

#include "sluice/patterns/fan_in.hpp"

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <iostream>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "sluice/patterns/channel.hpp"
#include "sluice/patterns/generator.hpp"

namespace {

using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

void Say(const std::string& line) {
  static std::mutex mu;  // Lines come from several threads.
  std::lock_guard<std::mutex> lock(mu);
  std::cout << line << '\n' << std::flush;
}

std::string Join(const std::vector<std::uint64_t>& values) {
  std::string out;
  for (const std::uint64_t v : values) {
    out += ' ';
    out += std::to_string(v);
  }
  return out;
}

// The C++ form of a Go function that makes a channel, starts a goroutine that
// sends into it and `defer close(ch)`, and returns the channel: the generator
// owns its channel and is the one that closes it.
sluice::Generator<std::string> Source(std::string name, int count,
                                      milliseconds period) {
  return sluice::generate([name = std::move(name), count, period,
                           sent = 0]() mutable -> std::optional<std::string> {
    if (sent == count) return std::nullopt;
    std::this_thread::sleep_for(period);
    return name + "#" + std::to_string(sent++);
  });
}

void MergeUnordered() {
  Say("== 1. fan_in: three sources at different rates ==");
  auto fast = Source("fast", 5, milliseconds(10));
  auto medium = Source("medium", 4, milliseconds(25));
  auto slow = Source("slow", 3, milliseconds(40));
  const auto start = Clock::now();
  auto merged = sluice::fan_in<std::string>(
      {&fast.channel(), &medium.channel(), &slow.channel()});

  int count = 0;
  // Ends when all three sources have closed and everything was delivered.
  for (const std::string& message : merged) {
    const auto ms =
        std::chrono::duration_cast<milliseconds>(Clock::now() - start);
    Say("  " + std::to_string(ms.count()) + " ms  " + message);
    ++count;
  }
  Say("  merged " + std::to_string(count) +
      " messages; each source's own order is kept, the interleaving is not "
      "guaranteed (run it again)");
}

void MergeOrdered() {
  Say("== 2. fan_in_ordered: shards finish out of order, output in order ==");
  using Item = sluice::Sequenced<std::uint64_t>;
  constexpr std::size_t kShards = 3;
  constexpr std::uint64_t kItems = 9;
  // Shard s handles seqs s, s + 3, s + 6, ... and the shards work at different
  // speeds, so completions arrive scrambled.
  constexpr std::array<milliseconds, kShards> kPerItem = {
      milliseconds(30), milliseconds(10), milliseconds(20)};

  std::vector<std::unique_ptr<sluice::Channel<Item>>> shards;
  std::vector<sluice::Channel<Item>*> inputs;
  shards.reserve(kShards);
  inputs.reserve(kShards);
  for (std::size_t s = 0; s < kShards; ++s) {
    shards.push_back(std::make_unique<sluice::Channel<Item>>(0));
    inputs.push_back(shards.back().get());
  }
  // A window of 4 bounds how far ahead a shard may run: one holding a seq 4 or
  // more past the next one due waits, which is back-pressure, not buffering.
  auto ordered = sluice::fan_in_ordered<std::uint64_t>(inputs, 4, 4);

  std::mutex completed_mu;
  std::vector<std::uint64_t> completed;
  std::vector<std::jthread> workers;
  workers.reserve(kShards);
  for (std::size_t s = 0; s < kShards; ++s) {
    workers.emplace_back([&, s] {
      sluice::Channel<Item>& out = *shards[s];
      for (std::uint64_t seq = s; seq < kItems; seq += kShards) {
        std::this_thread::sleep_for(kPerItem[s]);
        {
          std::lock_guard<std::mutex> lock(completed_mu);
          completed.push_back(seq);
        }
        if (!out.send(Item{.seq = seq, .value = seq * seq})) return;
      }
      out.close();  // This worker is the only sender, so it closes.
    });
  }

  std::vector<std::uint64_t> values;
  for (const std::uint64_t value : ordered) values.push_back(value);
  {
    std::lock_guard<std::mutex> lock(completed_mu);
    Say("  seqs in the order the shards finished them:" + Join(completed));
  }
  Say("  values emitted (seq^2), in seq order:       " + Join(values));
}

}  // namespace

int main() {
  MergeUnordered();
  MergeOrdered();
  return 0;
}
