// The JSON views of the engine's state that the API serves: GET
// /v1/pipelines. The engine hands out plain snapshots (engine.hpp); how they
// look on the wire is decided here, next to the routes.
#ifndef SLUICE_SERVICE_HTTP_VIEWS_HPP_
#define SLUICE_SERVICE_HTTP_VIEWS_HPP_

#include <nlohmann/json.hpp>
#include <vector>

#include "service/engine/engine.hpp"

namespace sluice::http {

// GET /v1/pipelines: {"pipelines":[{"name","ordered","aggregate":{"type",
// ["field"], ["op"], ["value"]},"jobs_active","stages":[{"name","type",
// "workers","buffer","queue_depth","busy","items":{"in","out","filtered",
// "errors","cancelled"},"p99_seconds" (null when idle), ["key"]}]}]}
// (docs/api.md). Never throws but for allocation failure.
nlohmann::json PipelinesJson(const std::vector<engine::PipelineSnapshot>& p);

}  // namespace sluice::http

#endif  // SLUICE_SERVICE_HTTP_VIEWS_HPP_
