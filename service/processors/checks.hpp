// sluice::processors::ConfigChecks: what config::LoadConfig* needs to know
// about processors and aggregates, from the room that knows them. Passing it
// in (rather than config calling the processors) keeps the dependency one
// way: processors use config's types; config uses nothing of processors.
#ifndef SLUICE_SERVICE_PROCESSORS_CHECKS_HPP_
#define SLUICE_SERVICE_PROCESSORS_CHECKS_HPP_

#include "service/config/config.hpp"

namespace sluice::processors {

// ValidateProcessorSpec (processor.hpp) and ValidateAggregateSpec
// (aggregate.hpp), ready for config::LoadConfigText / LoadConfigFile. Never
// throws; the checks returned are thread-safe.
config::SpecChecks ConfigChecks();

}  // namespace sluice::processors

#endif  // SLUICE_SERVICE_PROCESSORS_CHECKS_HPP_
