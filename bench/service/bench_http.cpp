// BM_HttpStage/workers:N — throughput of one http processor stage through
// the real engine, against a local upstream that answers every request
// after 10 ms. With N workers (one connection each) the ideal rate is
// N / 10 ms; the counters report the measured rate and its ratio to that
// ideal ("efficiency"), i.e. how much the engine, the client and the
// machine add to the upstream's latency, and the process's CPU per item.
// BM_DelayStage/workers:N is the same stage with a 10 ms `delay` processor
// instead of the call: the engine's own share, to read the first against.
//
//   build/release/bench/bench_service --benchmark_filter=BM_HttpStage
//       --benchmark_repetitions=3 --benchmark_report_aggregates_only=true
//
// (results and their analysis: bench/RESULTS.md, "http stage vs ideal").
//
// The upstream is an asynchronous Beast server on its own io_context and
// threads: the 10 ms wait is an asio timer, so it holds any number of
// requests at once without a thread each. Each run submits about 2 s of
// ideal work (200 × N items) as one job and waits for it to finish; the
// workers connect during a warm-up job before timing starts.

// GCC's -Wnull-dereference misfires, when optimizing, inside Boost.Asio: a
// false positive in Asio's code. Placed before every include so that the
// header code it reports on is covered.
#pragma GCC diagnostic ignored "-Wnull-dereference"

#include <benchmark/benchmark.h>
#include <sys/resource.h>

#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "service/config/config.hpp"
#include "service/engine/engine.hpp"
#include "service/metrics/metrics.hpp"
#include "service/processors/checks.hpp"

namespace {

namespace beast = boost::beast;
namespace bhttp = beast::http;
namespace net = boost::asio;
using tcp = net::ip::tcp;
using namespace std::chrono_literals;

constexpr auto kUpstreamLatency = 10ms;
// Ideal seconds of work per run: items = workers × this / latency.
constexpr double kRunSeconds = 2.0;

// The 10 ms upstream. Thread-safe; stops and joins on destruction.
class SlowUpstream {
 public:
  explicit SlowUpstream(int threads)
      : acceptor_(ioc_, {net::ip::make_address("127.0.0.1"), 0}) {
    Accept();
    for (int i = 0; i < threads; ++i)
      threads_.emplace_back([this] { ioc_.run(); });
  }
  ~SlowUpstream() {
    ioc_.stop();
    for (std::thread& t : threads_) t.join();
  }
  std::uint16_t port() const { return acceptor_.local_endpoint().port(); }
  std::uint64_t connections() const { return connections_.load(); }

 private:
  class Session : public std::enable_shared_from_this<Session> {
   public:
    explicit Session(tcp::socket s)
        : stream_(std::move(s)), timer_(stream_.get_executor()) {}
    void Read() {
      req_ = {};
      bhttp::async_read(
          stream_, buffer_, req_,
          [self = shared_from_this()](beast::error_code ec, std::size_t) {
            if (ec) return;
            self->timer_.expires_after(kUpstreamLatency);
            self->timer_.async_wait(
                [self](beast::error_code) { self->Write(); });
          });
    }

   private:
    void Write() {
      res_ = {};
      res_.version(11);
      res_.result(bhttp::status::ok);
      res_.set(bhttp::field::content_type, "application/json");
      res_.keep_alive(req_.keep_alive());
      res_.body() = R"({"ok":true})";
      res_.prepare_payload();
      bhttp::async_write(
          stream_, res_,
          [self = shared_from_this()](beast::error_code ec, std::size_t) {
            if (!ec && self->res_.keep_alive()) self->Read();
          });
    }
    beast::tcp_stream stream_;
    net::steady_timer timer_;
    beast::flat_buffer buffer_;
    bhttp::request<bhttp::string_body> req_;
    bhttp::response<bhttp::string_body> res_;
  };

  void Accept() {
    acceptor_.async_accept(net::make_strand(ioc_),
                           [this](beast::error_code ec, tcp::socket s) {
                             if (ec) return;
                             ++connections_;
                             s.set_option(tcp::no_delay(true), ec);
                             std::make_shared<Session>(std::move(s))->Read();
                             Accept();
                           });
  }

  net::io_context ioc_;
  tcp::acceptor acceptor_;
  std::vector<std::thread> threads_;
  std::atomic<std::uint64_t> connections_{0};
};

// One pipeline "bench" with one stage of `workers` running `processor`
// (a YAML flow map).
sluice::config::Config StageConfig(const std::string& processor, int workers) {
  const std::string yaml =
      "jobs: { max_pending_items: 1000000 }\n"
      "pipelines:\n"
      "  - name: bench\n"
      "    stages:\n"
      "      - { name: call, processor: " +
      processor + ", workers: " + std::to_string(workers) +
      ", buffer: 1024 }\n";
  auto loaded = sluice::config::LoadConfigText(
      yaml, ::sluice::processors::ConfigChecks());
  if (!loaded.ok()) {
    std::string all;
    for (const auto& e : loaded.error()) {
      all += sluice::config::ToString(e) + "; ";
    }
    throw std::runtime_error("bad bench config: " + all);
  }
  return std::move(loaded).value();
}

// CPU seconds (user + system) used by the whole process so far: engine,
// http clients and the in-process upstream together.
double ProcessCpuSeconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  auto secs = [](const timeval& t) {
    return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) / 1e6;
  };
  return secs(u.ru_utime) + secs(u.ru_stime);
}

std::vector<nlohmann::json> Items(std::size_t n) {
  std::vector<nlohmann::json> items;
  items.reserve(n);
  for (std::size_t i = 0; i < n; ++i) items.push_back({{"id", i}});
  return items;
}

// Submits `n` items and waits for the job; returns false on a failure.
bool RunJob(sluice::engine::Engine& engine, std::size_t n, std::string* why) {
  auto submitted = engine.Submit({"bench", Items(n), std::nullopt});
  if (!submitted.ok()) {
    *why = submitted.error().message;
    return false;
  }
  auto job = submitted.value();
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  if (job->NotifyWhenFinished([&] {
        std::lock_guard lock(mu);
        done = true;
        cv.notify_all();
      })) {
    std::unique_lock lock(mu);
    if (!cv.wait_for(lock, 120s, [&] { return done; })) {
      *why = "job did not finish within 120 s";
      return false;
    }
  }
  const sluice::jobs::Counts c = job->counts();
  if (c.out != n || c.errors != 0) {
    *why = "expected " + std::to_string(n) + " results, got " +
           std::to_string(c.out) + " and " + std::to_string(c.errors) +
           " errors";
    return false;
  }
  return true;
}

// Runs the stage (10 ms per item per worker, ideally) for about
// kRunSeconds per iteration and reports the counters.
void Measure(benchmark::State& state, const std::string& processor,
             const SlowUpstream* upstream) {
  const int workers = static_cast<int>(state.range(0));
  const double ideal =
      workers / std::chrono::duration<double>(kUpstreamLatency).count();
  const auto items = static_cast<std::size_t>(ideal * kRunSeconds);

  sluice::metrics::Metrics metrics("bench");
  sluice::engine::Engine engine(StageConfig(processor, workers), metrics);
  std::string why;
  // Warm-up: every worker connects (and the engine's threads start).
  if (!RunJob(engine, static_cast<std::size_t>(workers) * 4, &why)) {
    state.SkipWithError(why.c_str());
    return;
  }

  // Measured here rather than with Counter::kIsRate, whose divisor (CPU or
  // real time) depends on the library version.
  std::size_t processed = 0;
  std::chrono::duration<double> elapsed{0};
  double cpu = 0;
  for (auto _ : state) {
    const double cpu_start = ProcessCpuSeconds();
    const auto start = std::chrono::steady_clock::now();
    if (!RunJob(engine, items, &why)) {
      state.SkipWithError(why.c_str());
      break;
    }
    elapsed += std::chrono::steady_clock::now() - start;
    cpu += ProcessCpuSeconds() - cpu_start;
    processed += items;
  }
  const double rate = elapsed.count() > 0
                          ? static_cast<double>(processed) / elapsed.count()
                          : 0;
  state.counters["items_per_second"] = rate;
  state.counters["ideal_per_second"] = ideal;
  state.counters["efficiency"] = rate / ideal;
  if (upstream != nullptr) {
    state.counters["connections"] =
        static_cast<double>(upstream->connections());
  }
  // CPU per item of the whole process (engine, clients and, for http, the
  // upstream on the other end of the loopback): with C cores the rate
  // cannot exceed C / cpu_us_per_item.
  state.counters["cpu_us_per_item"] =
      processed > 0 ? cpu * 1e6 / static_cast<double>(processed) : 0;
  state.counters["cpu_cores_used"] =
      elapsed.count() > 0 ? cpu / elapsed.count() : 0;
  engine.Shutdown(10s);
}

void BM_HttpStage(benchmark::State& state) {
  SlowUpstream upstream(2);
  Measure(state,
          "{ type: http, url: \"http://127.0.0.1:" +
              std::to_string(upstream.port()) + "/x/{/id}\", timeout: 10s }",
          &upstream);
}

// The same stage shape with `delay: 10ms` instead of a call: what the
// engine alone costs at each worker count, to read BM_HttpStage against.
void BM_DelayStage(benchmark::State& state) {
  Measure(state, "{ type: delay, duration: 10ms }", nullptr);
}

BENCHMARK(BM_HttpStage)
    ->ArgName("workers")
    ->Arg(1)
    ->Arg(8)
    ->Arg(64)
    ->Arg(256)
    ->Iterations(1)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

BENCHMARK(BM_DelayStage)
    ->ArgName("workers")
    ->Arg(1)
    ->Arg(8)
    ->Arg(64)
    ->Arg(256)
    ->Iterations(1)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

}  // namespace
