#include "service/processors/io_loop.hpp"

#include "service/processors/io_loop_impl.hpp"

namespace sluice::processors {

IoLoop::IoLoop() : impl_(std::make_unique<Impl>()) {}

IoLoop::~IoLoop() {
  // Without the guard run() returns once no operation is pending; every
  // operation has a deadline, so this cannot wait for long.
  impl_->work.reset();
  if (impl_->thread.joinable()) impl_->thread.join();
}

IoLoop::Impl& IoLoop::impl() {
  impl_->Start();
  return *impl_;
}

}  // namespace sluice::processors
