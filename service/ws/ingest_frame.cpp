#include "service/ws/ingest_frame.hpp"

#include <utility>

#include "service/util/json_parse.hpp"

namespace sluice::ws {

Result<IngestFrame> ParseIngestFrame(std::string_view text) {
  auto parsed = ParseJsonText(text);
  if (!parsed.ok()) {
    return Error{"invalid_json", "malformed JSON at byte offset " +
                                     std::to_string(parsed.error().offset) +
                                     ": " + parsed.error().reason};
  }
  nlohmann::json& frame = parsed.value();
  auto invalid = [](std::string message) {
    return Error{"invalid_frame", std::move(message)};
  };
  if (!frame.is_object()) return invalid(std::string(kIngestFrameShape));
  if (frame.contains("item") && frame.contains("items")) {
    return invalid("send either item or items, not both");
  }
  IngestFrame out;
  bool has_items = false;
  for (auto& [key, value] : frame.items()) {
    if (key == "item") {
      out.items.push_back(std::move(value));
    } else if (key == "items") {
      if (!value.is_array()) return invalid("items must be an array");
      has_items = true;
      for (auto& v : value) out.items.push_back(std::move(v));
    } else if (key == "end") {
      if (value != true) return invalid("end must be true");
      out.end = true;
    } else {
      return invalid("unknown key \"" + key + "\"; " +
                     std::string(kIngestFrameShape));
    }
  }
  if (out.items.empty() && !out.end && !has_items) {
    return invalid(std::string(kIngestFrameShape));
  }
  return out;
}

}  // namespace sluice::ws
