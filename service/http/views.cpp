#include "service/http/views.hpp"

#include <utility>

namespace sluice::http {
namespace {

nlohmann::json StageJson(const engine::StageSnapshot& s) {
  nlohmann::json j = {{"name", s.config.name},
                      {"type", s.config.processor.type},
                      {"workers", s.config.workers},
                      {"buffer", s.config.buffer},
                      {"queue_depth", s.queue_depth},
                      {"busy", s.busy},
                      {"items",
                       {{"in", s.in},
                        {"out", s.out},
                        {"filtered", s.filtered},
                        {"errors", s.errors},
                        {"cancelled", s.cancelled}}}};
  j["p99_seconds"] =
      s.p99_seconds ? nlohmann::json(*s.p99_seconds) : nlohmann::json(nullptr);
  if (s.config.keyed) j["key"] = s.config.key;
  return j;
}

nlohmann::json AggregateJson(const config::AggregateSpec& a) {
  nlohmann::json j = {{"type", a.type}};
  if (!a.field.empty()) j["field"] = a.field;
  if (!a.op.empty()) j["op"] = a.op;
  if (!a.value.empty()) j["value"] = a.value;
  return j;
}

}  // namespace

nlohmann::json PipelinesJson(const std::vector<engine::PipelineSnapshot>& p) {
  nlohmann::json pipelines = nlohmann::json::array();
  for (const engine::PipelineSnapshot& pipeline : p) {
    nlohmann::json stages = nlohmann::json::array();
    for (const engine::StageSnapshot& s : pipeline.stages) {
      stages.push_back(StageJson(s));
    }
    pipelines.push_back({{"name", pipeline.name},
                         {"ordered", pipeline.ordered},
                         {"jobs_active", pipeline.jobs_active},
                         {"stages", std::move(stages)},
                         {"aggregate", AggregateJson(pipeline.aggregate)}});
  }
  return {{"pipelines", std::move(pipelines)}};
}

}  // namespace sluice::http
