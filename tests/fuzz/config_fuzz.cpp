// Fuzz target config_fuzz: the config loader, sluice::config::LoadConfigText
// (YAML or JSON text -> ${ENV} substitution -> yaml-cpp -> validation of
// every key, processor and aggregate; lua scripts are compiled and their top
// level run in a throw-away sandbox).
//
// Invariants: it never throws or crashes; it returns either a Config or a
// non-empty list of errors, each with a non-empty message; a Config it
// returns satisfies the documented ranges (at least one pipeline, unique
// names, at least one stage each, 1..4096 workers, buffer <= 1000000) and
// Summary() describes it without throwing.
#include <cstddef>
#include <cstdint>
#include <exception>
#include <set>
#include <string>
#include <vector>

#include "fuzz_support.hpp"
#include "service/config/config.hpp"
#include "service/processors/checks.hpp"

namespace {

using sluice::fuzz::AsText;

void CheckConfig(const sluice::config::Config& config) {
  FUZZ_CHECK(!config.pipelines.empty(), "a config without pipelines loaded");
  FUZZ_CHECK(config.server.io_threads >= 1, "io_threads < 1");
  FUZZ_CHECK(config.server.max_body_bytes >= 1, "max_body_bytes < 1");
  FUZZ_CHECK(config.server.max_header_bytes >= 1024, "max_header_bytes");
  FUZZ_CHECK(config.jobs.max_pending_items >= 1, "max_pending_items < 1");
  std::set<std::string> names;
  for (const auto& pipeline : config.pipelines) {
    FUZZ_CHECK(!pipeline.name.empty(), "a pipeline without a name");
    FUZZ_CHECK(names.insert(pipeline.name).second,
               "duplicate pipeline " + pipeline.name);
    FUZZ_CHECK(!pipeline.stages.empty(), "pipeline " + pipeline.name);
    std::set<std::string> stages;
    for (const auto& stage : pipeline.stages) {
      FUZZ_CHECK(stages.insert(stage.name).second,
                 "duplicate stage " + stage.name);
      FUZZ_CHECK(stage.workers >= 1 && stage.workers <= 4096,
                 pipeline.name + "." + stage.name);
      FUZZ_CHECK(stage.buffer <= 1000000, pipeline.name + "." + stage.name);
      FUZZ_CHECK(!stage.processor.type.empty(),
                 pipeline.name + "." + stage.name);
      FUZZ_CHECK(stage.processor.params.is_object(),
                 pipeline.name + "." + stage.name);
    }
  }
  try {
    const std::string summary = sluice::config::Summary(config);
    FUZZ_CHECK(!summary.empty() && summary.back() == '\n', summary);
  } catch (const std::exception& e) {
    sluice::fuzz::Fail("Summary threw", e.what());
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data,
                                      std::size_t size) {
  using Loaded = sluice::Result<sluice::config::Config,
                                std::vector<sluice::config::ConfigError>>;
  Loaded loaded = [&]() -> Loaded {
    try {
      return sluice::config::LoadConfigText(
          AsText(data, size), ::sluice::processors::ConfigChecks());
    } catch (const std::exception& e) {
      sluice::fuzz::Fail("LoadConfigText threw", e.what());
    }
  }();
  if (!loaded.ok()) {
    const auto& errors = loaded.error();
    FUZZ_CHECK(!errors.empty(), "an empty error list");
    for (const auto& error : errors) {
      FUZZ_CHECK(!error.message.empty(),
                 "an error without a message at " + error.path);
    }
    return 0;
  }
  CheckConfig(loaded.value());
  return 0;
}
