// Fan-in by select, with a timeout: Go's
//
//   for {
//     select {
//     case v, ok := <-a: ...
//     case v, ok := <-b: ...
//     case <-time.After(50 * time.Millisecond): fmt.Println("quiet"); return
//     }
//   }
//
// Two producers (a thread and a task) send on their own channels; the
// consumer takes whatever is ready first from either, and gives up once
// neither has sent anything for 50 ms. A closed channel is always ready (it
// yields nullopt), so the consumer stops selecting on it, as a Go program
// sets the channel variable to nil.
#include <chrono>
#include <iostream>
#include <optional>
#include <string>
#include <thread>

#include "sluice/patterns/channel.hpp"
#include "sluice/patterns/runtime.hpp"
#include "sluice/patterns/select.hpp"

int main() {
  using namespace std::chrono_literals;
  sluice::Channel<std::string> a(0);  // unbuffered, as Go's make(chan string)
  sluice::Channel<std::string> b(0);
  sluice::Runtime rt(1);
  std::jthread producer_a([&] {
    for (int i = 0; i < 3; ++i) {
      a.send("a" + std::to_string(i));
      std::this_thread::sleep_for(5ms);
    }
    a.close();
  });
  rt.spawn([&]() -> sluice::Task<> {
    for (int i = 0; i < 3; ++i) {
      co_await b.async_send("b" + std::to_string(i));
      co_await sluice::sleep_for(7ms);
    }
    // b stays open: the consumer's timeout ends the loop.
  });

  bool a_open = true;
  int received = 0;
  for (bool quiet = false; !quiet;) {
    auto print = [&](std::optional<std::string> v) {
      if (v) {
        std::cout << "got " << *v << '\n';
        ++received;
      }
      return v.has_value();
    };
    auto on_quiet = [&] {
      std::cout << "quiet for 50 ms, done\n";
      quiet = true;
    };
    if (a_open) {
      sluice::select(
          sluice::on_recv(
              a, [&](std::optional<std::string> v) { a_open = print(v); }),
          sluice::on_recv(b, [&](std::optional<std::string> v) { print(v); }),
          sluice::on_timeout(50ms, on_quiet));
    } else {
      sluice::select(
          sluice::on_recv(b, [&](std::optional<std::string> v) { print(v); }),
          sluice::on_timeout(50ms, on_quiet));
    }
  }
  std::cout << received << " messages\n";
  return received == 6 ? 0 : 1;
}
