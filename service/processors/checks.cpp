// Implementation of sluice::processors::ConfigChecks (see checks.hpp).
#include "service/processors/checks.hpp"

#include "service/processors/aggregate.hpp"
#include "service/processors/processor.hpp"

namespace sluice::processors {

config::SpecChecks ConfigChecks() {
  return {&ValidateProcessorSpec, &ValidateAggregateSpec};
}

}  // namespace sluice::processors
