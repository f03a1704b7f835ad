// The generator of a pipeline (Go's generator: one goroutine feeding a
// channel it closes): one thread takes items from the Intake, round-robin
// over its jobs and streams, and sends them, in batches of what is ready,
// into stage 0's channel, which it closes once the Intake ends.
// sluice::generate() is not used because it keeps calling its function to
// fill a batch before sending, and ours blocks while no job has input:
// values already produced would wait for the next job.
#include <algorithm>
#include <vector>

#include "service/engine/intake.hpp"
#include "service/engine/pipeline_runtime.hpp"

namespace sluice::engine {

void PipelineRuntime::RunGenerator(std::stop_token st) {
  constexpr std::size_t kMaxBatch = 64;
  std::vector<Envelope> batch;
  batch.reserve(kMaxBatch);
  for (;;) {
    // Never take more than fits now, so items wait in the Intake (where a
    // cancel drops them at once) rather than in this thread.
    const std::size_t size = source_->size();
    const std::size_t room =
        source_->capacity() > size ? source_->capacity() - size : 0;
    if (!intake_->Next(batch, std::clamp<std::size_t>(room, 1, kMaxBatch),
                       st)) {
      break;
    }
    // Blocks only while stage 0 is full (back-pressure); fails only on stop.
    if (source_->send_many(batch, st) != batch.size()) break;
    batch.clear();
  }
  source_->close();
}

}  // namespace sluice::engine
