// Processors-internal: IoLoop::Impl, the io_contexts and threads behind an
// IoLoop (io_loop.hpp), for processor code that does async I/O with Asio.
#ifndef SLUICE_SERVICE_PROCESSORS_IO_LOOP_IMPL_HPP_
#define SLUICE_SERVICE_PROCESSORS_IO_LOOP_IMPL_HPP_

#include <atomic>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <cstddef>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "service/processors/io_loop.hpp"

namespace sluice::processors {

// One event loop: an io_context run by one thread, so an object whose
// operations all run on it needs no strand.
struct IoLoopThread {
  // The hint lets Asio skip locking it would do for several threads.
  boost::asio::io_context ioc{1};
  std::optional<
      boost::asio::executor_work_guard<boost::asio::io_context::executor_type>>
      work;
  std::thread thread;
};

// Thread-safe: Start() is idempotent; Next() may be called from any thread.
struct IoLoop::Impl {
  explicit Impl(std::size_t threads) {
    for (std::size_t i = 0; i < threads; ++i) {
      loops.push_back(std::make_unique<IoLoopThread>());
    }
  }

  void Start() {
    std::call_once(started, [this] {
      for (auto& loop : loops) {
        loop->work.emplace(loop->ioc.get_executor());
        IoLoopThread* l = loop.get();
        loop->thread = std::thread([l] { l->ioc.run(); });
      }
    });
  }

  // The loop for a new client: round-robin, so connections spread evenly
  // and each client's operations stay on one thread.
  boost::asio::io_context& Next() {
    const std::size_t i = next.fetch_add(1, std::memory_order_relaxed);
    return loops[i % loops.size()]->ioc;
  }

  std::vector<std::unique_ptr<IoLoopThread>> loops;
  std::atomic<std::size_t> next{0};
  std::once_flag started;
};

}  // namespace sluice::processors

#endif  // SLUICE_SERVICE_PROCESSORS_IO_LOOP_IMPL_HPP_
