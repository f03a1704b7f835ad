#include "service/processors/io_loop.hpp"

#include <algorithm>
#include <thread>

#include "service/processors/io_loop_impl.hpp"

namespace sluice::processors {

IoLoop::IoLoop(std::size_t threads)
    : impl_(std::make_unique<Impl>(
          threads != 0 ? threads
                       : std::max<std::size_t>(
                             std::thread::hardware_concurrency(), 1))) {}

IoLoop::~IoLoop() {
  // Without the guards run() returns once no operation is pending. Every
  // exchange has a deadline; a resolve abandoned at its deadline is the one
  // thing that can hold a loop (and so this) until getaddrinfo returns.
  for (auto& loop : impl_->loops) loop->work.reset();
  for (auto& loop : impl_->loops) {
    if (loop->thread.joinable()) loop->thread.join();
  }
}

IoLoop::Impl& IoLoop::impl() {
  impl_->Start();
  return *impl_;
}

}  // namespace sluice::processors
