// The sluice patterns library in one include: Channel, generator, fan-out,
// fan-in (unordered and ordered), worker pool and pipeline; the Runtime that
// runs tasks, and select; and the Mutex those are built with. See
// docs/patterns.md for when to use which, and docs/patterns-api.md for the
// full reference.
#ifndef SLUICE_PATTERNS_PATTERNS_HPP_
#define SLUICE_PATTERNS_PATTERNS_HPP_

#include "sluice/patterns/channel.hpp"
#include "sluice/patterns/fan_in.hpp"
#include "sluice/patterns/fan_out.hpp"
#include "sluice/patterns/generator.hpp"
#include "sluice/patterns/mutex.hpp"
#include "sluice/patterns/pipeline.hpp"
#include "sluice/patterns/runtime.hpp"
#include "sluice/patterns/select.hpp"
#include "sluice/patterns/worker_pool.hpp"

#endif  // SLUICE_PATTERNS_PATTERNS_HPP_
