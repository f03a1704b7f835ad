// Go's time.After idiom, in a task:
//
//   select {
//   case r := <-result: fmt.Println(r)
//   case <-time.After(100 * time.Millisecond): fmt.Println("timed out")
//   }
//
// time.After(d) is a channel that receives one value after d. after() below
// builds the same thing from a Channel of capacity 1 and a task that sleeps
// (so no thread waits), and the select waits on it like on any channel.
// sluice::on_timeout(d, fn) is the shorter way to say the same in a select;
// both are shown.
#include <chrono>
#include <iostream>
#include <memory>
#include <optional>

#include "sluice/patterns/channel.hpp"
#include "sluice/patterns/runtime.hpp"
#include "sluice/patterns/select.hpp"

namespace {

using Clock = std::chrono::steady_clock;

// Returns a channel that receives the current time once, `d` from now. The
// task that sends it holds a reference to the channel, so it outlives a
// caller that has stopped waiting; capacity 1 lets the send finish even
// then (as Go's time.After, whose channel is buffered).
std::shared_ptr<sluice::Channel<Clock::time_point>> after(sluice::Runtime& rt,
                                                          Clock::duration d) {
  auto ch = std::make_shared<sluice::Channel<Clock::time_point>>(1);
  rt.spawn(
      [](std::shared_ptr<sluice::Channel<Clock::time_point>> out,
         Clock::duration wait) -> sluice::Task<> {
        co_await sluice::sleep_for(wait);
        co_await out->async_send(Clock::now());
      },
      ch, d);
  return ch;
}

// A slow "request": answers after `latency`.
sluice::Task<> request(sluice::Channel<int>& result,
                       std::chrono::milliseconds latency) {
  co_await sluice::sleep_for(latency);
  co_await result.async_send(42);
}

}  // namespace

int main() {
  using namespace std::chrono_literals;
  sluice::Runtime rt(1);
  int timeouts = 0;
  rt.spawn([&]() -> sluice::Task<> {
    for (auto latency : {20ms, 300ms}) {
      sluice::Channel<int> result(1);  // buffered: a late answer is dropped
      rt.spawn(request, std::ref(result), latency);
      auto deadline = after(rt, 100ms);
      co_await sluice::async_select(
          sluice::on_recv(result,
                          [](std::optional<int> r) {
                            std::cout << "result " << *r << '\n';
                          }),
          sluice::on_recv(*deadline, [&](std::optional<Clock::time_point>) {
            std::cout << "timed out (time.After)\n";
            ++timeouts;
          }));
      // The same with on_timeout: no extra channel or task.
      co_await sluice::async_select(
          sluice::on_recv(result, [](std::optional<int>) {}),
          sluice::on_timeout(400ms,
                             [] { std::cout << "timed out (on_timeout)\n"; }));
    }
  });
  rt.wait();
  return timeouts == 1 ? 0 : 1;
}
