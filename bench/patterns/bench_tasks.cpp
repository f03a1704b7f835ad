// sluice tasks: W3 and W4 as tasks on a Runtime, and the two task-only
// workloads, W6 (10,000 I/O-bound workers) and W7 (fan-in by select). The Go
// anchor runs the same shapes with goroutines (bench/anchors/go/main.go).
#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <sluice/patterns/channel.hpp>
#include <sluice/patterns/runtime.hpp>
#include <sluice/patterns/select.hpp>
#include <string>
#include <vector>

#include "workloads.hpp"

namespace sluice_bench {
namespace {

using sluice::Channel;
using sluice::Runtime;
using sluice::Task;

// A map stage of `workers` tasks from `in` to `out`; the last one to finish
// closes `out` (Go's WaitGroup + closer goroutine).
template <class F>
void spawn_map(Runtime& rt, Channel<std::int64_t>& in,
               Channel<std::int64_t>& out, std::size_t workers,
               std::atomic<int>& left, F f) {
  left = static_cast<int>(workers);
  for (std::size_t w = 0; w < workers; ++w) {
    rt.spawn([&in, &out, &left, f]() -> Task<> {
      while (auto v = co_await in.async_recv()) co_await out.async_send(f(*v));
      if (left.fetch_sub(1) == 1) out.close();
    });
  }
}

}  // namespace

void BM_W3_Unbuffered_SluiceTasks(benchmark::State& state) {
  std::int64_t sum = 0;
  for (auto _ : state) {
    Channel<std::int64_t> ch(0);
    sum = 0;
    Runtime rt;
    rt.spawn([&]() -> Task<> {
      for (std::int64_t i = 0; i < kW3Items; ++i) co_await ch.async_send(i);
      ch.close();
    });
    rt.spawn([&]() -> Task<> {
      while (auto v = co_await ch.async_recv()) sum += *v;
    });
    rt.wait();
  }
  finish(state, kW3Items, sum, range_sum(kW3Items));
}

void BM_W4_Pipeline_SluiceTasks(benchmark::State& state) {
  std::int64_t sum = 0;
  for (auto _ : state) {
    Channel<std::int64_t> gen(kW4Capacity);
    Channel<std::int64_t> doubled(kW4Capacity);
    Channel<std::int64_t> out(kW4Capacity);
    std::atomic<int> left1{0};
    std::atomic<int> left2{0};
    sum = 0;
    Runtime rt;
    rt.spawn([&]() -> Task<> {
      for (std::int64_t i = 0; i < kW4Items; ++i) co_await gen.async_send(i);
      gen.close();
    });
    spawn_map(rt, gen, doubled, kW4Workers, left1,
              [](std::int64_t x) { return x * 2; });
    spawn_map(rt, doubled, out, kW4Workers, left2,
              [](std::int64_t x) { return x + 1; });
    rt.spawn([&]() -> Task<> {
      while (auto v = co_await out.async_recv()) sum += *v;
    });
    rt.wait();
  }
  finish(state, kW4Items, sum, w4_expected_sum(kW4Items));
}

// W6: the seeds' fan-out to I/O-bound workers. kW6Workers tasks read jobs
// from one channel, "wait on I/O" (sleep_for) and send the job back on a
// results channel that the consumer task sums.
void BM_W6_IoFanOut_SluiceTasks(benchmark::State& state) {
  state.SetLabel(std::to_string(g_w6_jobs) + " jobs; efficiency = rate / " +
                 std::to_string(static_cast<long>(w6_ideal_rate())));
  std::int64_t sum = 0;
  for (auto _ : state) {
    Channel<std::int64_t> jobs(kW6Capacity);
    Channel<std::int64_t> results(kW6Capacity);
    std::atomic<int> left{kW6Workers};
    sum = 0;
    Runtime rt;
    rt.spawn([&]() -> Task<> {
      for (std::int64_t j = 0; j < g_w6_jobs; ++j) co_await jobs.async_send(j);
      jobs.close();
    });
    for (int w = 0; w < kW6Workers; ++w) {
      rt.spawn([&]() -> Task<> {
        while (auto j = co_await jobs.async_recv()) {
          co_await sluice::sleep_for(kW6Latency);
          co_await results.async_send(*j);
        }
        if (left.fetch_sub(1) == 1) results.close();
      });
    }
    rt.spawn([&]() -> Task<> {
      while (auto r = co_await results.async_recv()) sum += *r;
    });
    rt.wait();
  }
  finish(state, g_w6_jobs, sum, range_sum(g_w6_jobs));
}

// W7: four producer tasks, each on its own channel of capacity 64; one
// consumer task selects over the four until all are closed.
void BM_W7_SelectFanIn_SluiceTasks(benchmark::State& state) {
  std::int64_t sum = 0;
  for (auto _ : state) {
    std::vector<std::unique_ptr<Channel<std::int64_t>>> chs;
    for (int p = 0; p < kW7Producers; ++p) {
      chs.push_back(std::make_unique<Channel<std::int64_t>>(kW7Capacity));
    }
    sum = 0;
    Runtime rt;
    for (int p = 0; p < kW7Producers; ++p) {
      rt.spawn([&, p]() -> Task<> {
        Channel<std::int64_t>& ch = *chs[static_cast<std::size_t>(p)];
        const std::int64_t hi = slice_begin(kW7Items, p + 1, kW7Producers);
        for (std::int64_t i = slice_begin(kW7Items, p, kW7Producers); i < hi;
             ++i) {
          co_await ch.async_send(i);
        }
        ch.close();
      });
    }
    rt.spawn([&]() -> Task<> {
      // Go's idiom: a closed input is replaced by a nil channel, which is
      // never ready; here, by an open channel nobody sends on.
      Channel<std::int64_t> never(0);
      Channel<std::int64_t>* in[kW7Producers];
      for (int p = 0; p < kW7Producers; ++p) in[p] = chs[p].get();
      int open = kW7Producers;
      auto take = [&](int p) {
        return [&, p](std::optional<std::int64_t> v) {
          if (v) {
            sum += *v;
          } else {
            in[p] = &never;
            --open;
          }
        };
      };
      while (open > 0) {
        co_await sluice::async_select(
            sluice::on_recv(*in[0], take(0)), sluice::on_recv(*in[1], take(1)),
            sluice::on_recv(*in[2], take(2)), sluice::on_recv(*in[3], take(3)));
      }
    });
    rt.wait();
  }
  finish(state, kW7Items, sum, range_sum(kW7Items));
}

}  // namespace sluice_bench
