// Unit tests of sluice::ws::ParseIngestFrame (service/ws/ingest_frame.hpp):
// every accepted frame shape and every refusal, with its code.
#include "service/ws/ingest_frame.hpp"

#include <gtest/gtest.h>

#include <string>

namespace sluice::ws {
namespace {

using nlohmann::json;

TEST(IngestFrameTest, AcceptsItemItemsAndEnd) {
  auto one = ParseIngestFrame(R"({"item": {"a": 1}})");
  ASSERT_TRUE(one.ok());
  EXPECT_EQ(one.value().items, std::vector<json>{json({{"a", 1}})});
  EXPECT_FALSE(one.value().end);

  auto many = ParseIngestFrame(R"({"items": [1, null, "x"], "end": true})");
  ASSERT_TRUE(many.ok());
  EXPECT_EQ(many.value().items.size(), 3U);
  EXPECT_TRUE(many.value().end);

  auto end = ParseIngestFrame(R"({"end": true})");
  ASSERT_TRUE(end.ok());
  EXPECT_TRUE(end.value().items.empty());
  EXPECT_TRUE(end.value().end);

  // An empty batch is allowed (it carries nothing).
  auto empty = ParseIngestFrame(R"({"items": []})");
  ASSERT_TRUE(empty.ok());
  EXPECT_TRUE(empty.value().items.empty());
  // null is an item like any other.
  EXPECT_EQ(ParseIngestFrame(R"({"item": null})").value().items.size(), 1U);
}

// Found by tests/fuzz/ws_frame_fuzz: text after a NUL byte was ignored, so
// this frame was accepted as {"item": 1}.
TEST(IngestFrameTest, RefusesANulByteAfterTheFrame) {
  const std::string text("{\"item\": 1}\0{\"junk\"", 19);
  auto r = ParseIngestFrame(text);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, "invalid_json");
  EXPECT_NE(r.error().message.find("byte offset 11"), std::string::npos)
      << r.error().message;
}

TEST(IngestFrameTest, RefusesMalformedJsonWithTheOffset) {
  auto r = ParseIngestFrame(R"({"item": )");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, "invalid_json");
  EXPECT_NE(r.error().message.find("byte offset 9"), std::string::npos)
      << r.error().message;
  auto deep = ParseIngestFrame("{\"item\": " + std::string(200, '[') +
                               std::string(200, ']') + "}");
  ASSERT_FALSE(deep.ok());
  EXPECT_EQ(deep.error().code, "invalid_json");
  EXPECT_NE(deep.error().message.find("nesting deeper"), std::string::npos);
}

TEST(IngestFrameTest, RefusesWrongShapes) {
  for (const char* text :
       {R"([1, 2])", R"("item")", R"({})", R"({"items": 5})",
        R"({"end": false})", R"({"end": 1})", R"({"item": 1, "items": [2]})",
        R"({"item": 1, "extra": 2})"}) {
    auto r = ParseIngestFrame(text);
    ASSERT_FALSE(r.ok()) << text;
    EXPECT_EQ(r.error().code, "invalid_frame") << text;
    EXPECT_FALSE(r.error().message.empty());
  }
  EXPECT_NE(ParseIngestFrame(R"({"extra": 2})").error().message.find("extra"),
            std::string::npos);
}

}  // namespace
}  // namespace sluice::ws
