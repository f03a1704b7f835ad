// Defines IoLoop: the few threads running the network I/O that processors
// share (the http processor's exchanges), so that an I/O-bound stage of
// 4,096 workers is 4,096 operations in flight on one event loop per core
// rather than 4,096 blocked threads. The header stays free of Asio;
// io_loop_impl.hpp gives processor code the io_contexts.
#ifndef SLUICE_SERVICE_PROCESSORS_IO_LOOP_HPP_
#define SLUICE_SERVICE_PROCESSORS_IO_LOOP_HPP_

#include <cstddef>
#include <memory>

namespace sluice::processors {

// Thread-safe. The threads start on the first use (an engine without an
// http stage never starts them) and are joined by the destructor.
class IoLoop {
 public:
  // `threads` event loops, each an io_context run by one thread; 0 = one
  // per core. A client is placed on one loop for its life (round-robin).
  explicit IoLoop(std::size_t threads = 0);
  // Stops the loop and joins its thread. Requires: every object doing I/O
  // on it (every HttpClient made with it) is gone.
  ~IoLoop();
  IoLoop(const IoLoop&) = delete;
  IoLoop& operator=(const IoLoop&) = delete;

  struct Impl;
  // The loops' internals (io_loop_impl.hpp), their threads started.
  Impl& impl();

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace sluice::processors

#endif  // SLUICE_SERVICE_PROCESSORS_IO_LOOP_HPP_
