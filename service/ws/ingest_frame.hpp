// Defines sluice::ws::ParseIngestFrame: what one text frame of the ingestion
// stream (`GET /v1/stream`, contract §C3) says — {"item": v}, {"items": [...]}
// and/or {"end": true} — apart from the session, so it is testable and
// fuzzable without a socket.
#ifndef SLUICE_SERVICE_WS_INGEST_FRAME_HPP_
#define SLUICE_SERVICE_WS_INGEST_FRAME_HPP_

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "service/util/result.hpp"

namespace sluice::ws {

// A valid frame: the items it carries (maybe none) and whether it ends the
// stream. Thread-compatible (plain value).
struct IngestFrame {
  std::vector<nlohmann::json> items;
  bool end = false;
};

// The shape every frame must have, for error messages.
inline constexpr std::string_view kIngestFrameShape =
    R"(expected {"item": v}, {"items": [...]} or {"end": true})";

// Parses one text frame. Fails (Error::code) with "invalid_json" (malformed,
// invalid UTF-8 or nested too deep; the message has the byte offset) or
// "invalid_frame" (not an object; an unknown key; items not an array; end
// not true; both item and items; nothing at all). Never throws.
Result<IngestFrame> ParseIngestFrame(std::string_view text);

}  // namespace sluice::ws

#endif  // SLUICE_SERVICE_WS_INGEST_FRAME_HPP_
