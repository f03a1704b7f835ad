// The generator of a pipeline (Go's generator: one goroutine feeding a
// channel it closes): one task on the engine's Runtime takes items from the
// Intake, round-robin over its jobs and streams, and sends them, in batches
// of what is ready, into stage 0's channel, which it closes once the Intake
// ends. While no job has input it is suspended (the Intake wakes it), so a
// one-item job goes from the network thread that accepted it straight to a
// runtime thread: no thread of its own per pipeline.
// sluice::generate() is not used because it keeps calling its function to
// fill a batch before sending: values already produced would wait for the
// next job.
#include <algorithm>
#include <functional>
#include <vector>

#include "service/engine/channel_ops.hpp"
#include "service/engine/intake.hpp"
#include "service/engine/pipeline_runtime.hpp"

namespace sluice::engine {
namespace {

// co_await: suspends until `intake` may have something for TryNext.
Task<> WaitForWork(Intake& intake) {
  struct Woken {};
  co_await sluice::await_callback<Woken>([&intake](auto resume) {
    std::function<void()> wake = [resume]() mutable { resume(Woken{}); };
    // Not kept: work arrived since TryNext; go round again at once.
    if (!intake.WaitForWork(wake)) resume(Woken{});
  });
}

}  // namespace

Task<> PipelineRuntime::Generate(std::stop_token st) {
  constexpr std::size_t kMaxBatch = 64;
  std::vector<Envelope> batch;
  batch.reserve(kMaxBatch);
  for (;;) {
    // Never take more than fits now, so items wait in the Intake (where a
    // cancel drops them at once) rather than in this task.
    const std::size_t size = source_->size();
    const std::size_t room =
        source_->capacity() > size ? source_->capacity() - size : 0;
    const Intake::Poll poll =
        intake_->TryNext(batch, std::clamp<std::size_t>(room, 1, kMaxBatch));
    if (poll == Intake::Poll::kEnded) break;
    if (poll == Intake::Poll::kNone) {
      co_await WaitForWork(*intake_);
      continue;
    }
    // Suspends only while stage 0 is full (back-pressure); fails on stop.
    if (!co_await SendAll(*source_, batch, st)) break;
    // Tasks are not preempted: while jobs keep coming, the stages on this
    // thread get their turn between batches.
    co_await sluice::yield();
  }
  source_->close();
}

}  // namespace sluice::engine
