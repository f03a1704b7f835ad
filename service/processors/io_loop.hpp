// Defines IoLoop: one thread running the network I/O that processors share
// (the http processor's exchanges), so that an I/O-bound stage of 4,096
// workers is 4,096 operations in flight on one thread rather than 4,096
// blocked threads. The header stays free of Asio; io_loop_impl.hpp gives
// processor code the io_context.
#ifndef SLUICE_SERVICE_PROCESSORS_IO_LOOP_HPP_
#define SLUICE_SERVICE_PROCESSORS_IO_LOOP_HPP_

#include <memory>

namespace sluice::processors {

// Thread-safe. The thread starts on the first use (an engine without an
// http stage never starts it) and is joined by the destructor.
class IoLoop {
 public:
  IoLoop();
  // Stops the loop and joins its thread. Requires: every object doing I/O
  // on it (every HttpClient made with it) is gone.
  ~IoLoop();
  IoLoop(const IoLoop&) = delete;
  IoLoop& operator=(const IoLoop&) = delete;

  struct Impl;
  // The loop's internals (io_loop_impl.hpp), its thread started.
  Impl& impl();

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace sluice::processors

#endif  // SLUICE_SERVICE_PROCESSORS_IO_LOOP_HPP_
