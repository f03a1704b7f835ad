// Processors-internal: IoLoop::Impl, the io_context and thread behind an
// IoLoop (io_loop.hpp), for processor code that does async I/O with Asio.
#ifndef SLUICE_SERVICE_PROCESSORS_IO_LOOP_IMPL_HPP_
#define SLUICE_SERVICE_PROCESSORS_IO_LOOP_IMPL_HPP_

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <mutex>
#include <optional>
#include <thread>

#include "service/processors/io_loop.hpp"

namespace sluice::processors {

// Thread-safe: Start() is idempotent; ioc is Asio's thread-safe object.
struct IoLoop::Impl {
  // One thread runs the context: the hint lets Asio skip locking it
  // would do for several.
  boost::asio::io_context ioc{1};
  std::once_flag started;
  std::optional<
      boost::asio::executor_work_guard<boost::asio::io_context::executor_type>>
      work;
  std::thread thread;

  void Start() {
    std::call_once(started, [this] {
      work.emplace(ioc.get_executor());
      thread = std::thread([this] { ioc.run(); });
    });
  }
};

}  // namespace sluice::processors

#endif  // SLUICE_SERVICE_PROCESSORS_IO_LOOP_IMPL_HPP_
