// The floor under W3: two threads handing a value back and forth through one
// atomic (each hand-off is one cache-line round trip between the cores, no
// queue, no sleeping). No rendezvous between OS threads on different cores
// can beat this; Go's unbuffered channel avoids it by running sender and
// receiver goroutines on the same OS thread.
#include <atomic>
#include <cstdint>
#include <thread>

#include "workloads.hpp"

namespace sluice_bench {

void BM_W3_Floor_AtomicPingPong(benchmark::State& state) {
  state.SetLabel("lower bound for a cross-core hand-off, not a channel");
  std::int64_t sum = 0;
  for (auto _ : state) {
    std::atomic<std::int64_t> slot{-1};  // -1: empty; else the value
    std::jthread producer([&slot] {
      for (std::int64_t i = 0; i < kW3Items; ++i) {
        while (slot.load(std::memory_order_acquire) != -1) {
        }
        slot.store(i, std::memory_order_release);
      }
    });
    sum = 0;
    for (std::int64_t i = 0; i < kW3Items; ++i) {
      std::int64_t v = -1;
      while ((v = slot.load(std::memory_order_acquire)) == -1) {
      }
      slot.store(-1, std::memory_order_release);
      sum += v;
    }
  }
  finish(state, kW3Items, sum, range_sum(kW3Items));
}

}  // namespace sluice_bench
