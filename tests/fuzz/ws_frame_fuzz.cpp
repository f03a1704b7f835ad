// Fuzz target ws_frame_fuzz: one text frame of the WebSocket ingestion
// stream (GET /v1/stream), sluice::ws::ParseIngestFrame.
//
// Invariants, checked against nlohmann's own parser as the reference:
// - it never throws;
// - ok => the text is JSON nested at most kMaxJsonDepth deep, an object
//   whose keys are only item/items/end, items (if any) is an array, end
//   (if any) is true, not both item and items, not empty; and the frame's
//   items are exactly `item` or the elements of `items`, in order, with
//   `end` set iff the key is there;
// - error => code is invalid_json or invalid_frame, the message is not
//   empty; invalid_json exactly when the reference rejects the text or it
//   nests too deep; invalid_frame otherwise (then the shape above fails).
#include <cstddef>
#include <cstdint>
#include <exception>
#include <nlohmann/json.hpp>
#include <string>

#include "fuzz_support.hpp"
#include "service/util/json_parse.hpp"
#include "service/ws/ingest_frame.hpp"

namespace {

using nlohmann::json;
using sluice::fuzz::AsText;

// What the frame should be, from the reference parse: the expected items
// and end flag, or false when the shape is invalid.
bool ExpectedFrame(const json& doc, std::vector<json>* items, bool* end) {
  if (!doc.is_object() || doc.empty()) return false;
  if (doc.contains("item") && doc.contains("items")) return false;
  for (const auto& [key, value] : doc.items()) {
    if (key == "item") {
      items->push_back(value);
    } else if (key == "items") {
      if (!value.is_array()) return false;
      for (const auto& v : value) items->push_back(v);
    } else if (key == "end") {
      if (value != true) return false;
      *end = true;
    } else {
      return false;
    }
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data,
                                      std::size_t size) {
  const std::string_view text = AsText(data, size);
  sluice::Result<sluice::ws::IngestFrame> frame =
      sluice::Error{"unset", "unset"};
  try {
    frame = sluice::ws::ParseIngestFrame(text);
  } catch (const std::exception& e) {
    sluice::fuzz::Fail("ParseIngestFrame threw", e.what());
  }

  // The reference: nlohmann without a depth bound (the input is at most
  // -max_len bytes, so its depth is bounded anyway), and without its
  // leniency of ending the input at a NUL byte (JSON has no raw NULs).
  json doc = json::parse(text.begin(), text.end(), nullptr,
                         /*allow_exceptions=*/false);
  const bool valid_json =
      !doc.is_discarded() && text.find('\0') == std::string_view::npos;
  const bool too_deep =
      valid_json && sluice::fuzz::JsonDepth(doc) > sluice::kMaxJsonDepth;

  if (!frame.ok()) {
    const sluice::Error& error = frame.error();
    FUZZ_CHECK(!error.message.empty(), error.code);
    FUZZ_CHECK(error.code == "invalid_json" || error.code == "invalid_frame",
               error.code + ": " + error.message);
    if (error.code == "invalid_json") {
      // Deep but malformed text may be refused for its depth first.
      FUZZ_CHECK(!valid_json || too_deep, error.message);
    } else {
      FUZZ_CHECK(valid_json && !too_deep, error.message);
      std::vector<json> items;
      bool end = false;
      FUZZ_CHECK(!ExpectedFrame(doc, &items, &end),
                 "refused a valid frame: " + error.message);
    }
    return 0;
  }

  FUZZ_CHECK(valid_json && !too_deep, "accepted text the reference refuses");
  std::vector<json> items;
  bool end = false;
  FUZZ_CHECK(ExpectedFrame(doc, &items, &end), "accepted an invalid frame");
  const sluice::ws::IngestFrame& got = frame.value();
  FUZZ_CHECK(got.items.size() == items.size(),
             std::to_string(got.items.size()) + " items, expected " +
                 std::to_string(items.size()));
  for (std::size_t i = 0; i < items.size(); ++i) {
    FUZZ_CHECK(got.items[i] == items[i], "item " + std::to_string(i));
  }
  FUZZ_CHECK(got.end == end, "end flag");
  return 0;
}
