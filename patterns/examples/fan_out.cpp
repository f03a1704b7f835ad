// Fan-out: several identical workers share one input channel.
//
// Mirrors the seeds' fan-out for I/O-bound work such as network requests:
// each URL is taken by exactly one worker (this is not publish/subscribe), so
// 20 requests of ~50 ms on 8 workers take about three rounds instead of 20.
// One request fails to show that an exception ends only its own item.
// The timing printed is a demonstration, not a benchmark.

#include "sluice/patterns/fan_out.hpp"

#include <atomic>
#include <chrono>
#include <exception>
#include <iostream>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>

#include "sluice/patterns/generator.hpp"

namespace {

using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

constexpr int kUrls = 20;
constexpr int kWorkers = 8;
constexpr milliseconds kLatency{50};

void Say(const std::string& line) {
  static std::mutex mu;
  std::lock_guard<std::mutex> lock(mu);
  std::cout << line << '\n' << std::flush;
}

// Numbers the worker threads 1..N the first time each one asks, so the output
// can show that the requests were spread across them.
int WorkerNumber() {
  static std::atomic<int> next{1};
  thread_local const int mine = next++;
  return mine;
}

struct Response {
  std::string url;
  int status = 0;
  int worker = 0;
};

// Stands in for an HTTP GET: the thread just waits, as it would on a socket.
Response Fetch(const std::string& url) {
  std::this_thread::sleep_for(kLatency);
  if (url.ends_with("/13")) {
    throw std::runtime_error("GET " + url + ": timed out");
  }
  return Response{.url = url, .status = 200, .worker = WorkerNumber()};
}

std::string Message(const std::exception_ptr& error) {
  try {
    std::rethrow_exception(error);
  } catch (const std::exception& e) {
    return e.what();
  } catch (...) {
    return "unknown error";
  }
}

}  // namespace

int main() {
  Say("fan-out: " + std::to_string(kUrls) + " requests of " +
      std::to_string(kLatency.count()) + " ms on " + std::to_string(kWorkers) +
      " workers");
  const auto start = Clock::now();

  auto urls = sluice::generate([i = 0]() mutable -> std::optional<std::string> {
    if (i == kUrls) return std::nullopt;
    return "https://api.example.com/items/" + std::to_string(i++);
  });
  // The workers only receive from `urls`; its generator closes it once the
  // last URL is handed out, and the fan-out's output closes after that.
  auto responses = sluice::fan_out(urls.channel(), kWorkers, Fetch);

  int ok = 0;
  for (const Response& response : responses) {
    const auto ms =
        std::chrono::duration_cast<milliseconds>(Clock::now() - start);
    Say("  " + std::to_string(ms.count()) + " ms  worker " +
        std::to_string(response.worker) + "  " + response.url + " -> " +
        std::to_string(response.status));
    ++ok;
  }
  const auto elapsed =
      std::chrono::duration_cast<milliseconds>(Clock::now() - start);

  Say(std::to_string(ok) + " responses, " + std::to_string(responses.errors()) +
      " failed (" +
      (responses.first_error() ? Message(responses.first_error()) : "none") +
      ")");
  Say("elapsed " + std::to_string(elapsed.count()) +
      " ms; one request at a time would take about " +
      std::to_string(kUrls * kLatency.count()) + " ms");
  return 0;
}
