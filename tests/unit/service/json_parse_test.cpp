// Unit tests of sluice::ParseJsonText and CheckJsonText
// (service/util/json_parse.hpp): values, syntax errors with their byte
// offsets, invalid UTF-8, and the depth bound.
#include "service/util/json_parse.hpp"

#include <gtest/gtest.h>

#include <string>

namespace sluice {
namespace {

std::string Nested(std::size_t depth, char open = '[', char close = ']') {
  return std::string(depth, open) + std::string(depth, close);
}

TEST(JsonParseTest, ParsesEveryKindOfValue) {
  auto r = ParseJsonText(R"( {"a": [1, -2.5, "x", true, null, {}]} )");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r.value()["a"][1], -2.5);
  EXPECT_EQ(ParseJsonText("18446744073709551615").value(),
            nlohmann::json(18446744073709551615ULL));
}

TEST(JsonParseTest, SyntaxErrorCarriesTheZeroBasedOffset) {
  auto r = ParseJsonText(R"([1, 2,, 3])");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().offset, 6U);
  EXPECT_NE(r.error().reason.find("syntax error"), std::string::npos)
      << r.error().reason;
  EXPECT_FALSE(ParseJsonText("").ok());
  EXPECT_FALSE(ParseJsonText("[1] [2]").ok());
}

// Found by tests/fuzz/ws_frame_fuzz: nlohmann stops at a NUL byte as if
// the input ended there, so "[1]\0junk" parsed as [1].
TEST(JsonParseTest, NulBytesAreRefusedWhereTheyAre) {
  using namespace std::string_literals;
  for (const std::string& text :
       {"[1]\0junk"s, "[1]\0"s, "\0"s, "[1,\0 2]"s, "\"a\0b\""s, " 7 \0"s}) {
    auto r = ParseJsonText(text);
    ASSERT_FALSE(r.ok()) << "accepted " << text.size() << " bytes";
    EXPECT_EQ(r.error().offset, text.find('\0'));
    EXPECT_NE(r.error().reason.find("NUL"), std::string::npos)
        << r.error().reason;
  }
  // An earlier error is reported first.
  auto r = ParseJsonText("[1,,\0]"s);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().offset, 3U);
  // Escaped, U+0000 is fine.
  EXPECT_EQ(ParseJsonText(R"(["a\u0000b"])").value()[0].get<std::string>(),
            "a\0b"s);
}

TEST(JsonParseTest, InvalidUtf8IsRefused) {
  auto r = ParseJsonText("[\"ab\xff\"]");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().offset, 4U);
}

TEST(JsonParseTest, DepthUpToTheBoundIsAccepted) {
  EXPECT_TRUE(ParseJsonText(Nested(kMaxJsonDepth)).ok());
  std::string objects;
  for (std::size_t i = 0; i < kMaxJsonDepth - 1; ++i) objects += "{\"a\":";
  objects += "[]" + std::string(kMaxJsonDepth - 1, '}');
  EXPECT_TRUE(ParseJsonText(objects).ok());
}

TEST(JsonParseTest, DeeperNestingIsRefusedAtTheBracketThatGoesTooDeep) {
  auto r = ParseJsonText(" " + Nested(kMaxJsonDepth + 1));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().offset, kMaxJsonDepth + 1);  // 1 space + 128 brackets
  EXPECT_EQ(r.error().reason, "nesting deeper than 128 levels");
  // A million brackets: refused at once, without recursion.
  EXPECT_FALSE(ParseJsonText(std::string(1000000, '[')).ok());
  EXPECT_FALSE(ParseJsonText(Nested(3, '[', ']'), 2).ok());
}

TEST(JsonParseTest, BracketsInStringsDoNotCount) {
  const std::string text =
      "[\"" + std::string(500, '[') + "\\\"" + std::string(500, '{') + "\"]";
  auto r = ParseJsonText(text);
  ASSERT_TRUE(r.ok()) << r.error().reason;
  EXPECT_EQ(r.value()[0].get<std::string>().size(), 1001U);
}

TEST(JsonParseTest, NumberOverflowPointsAtTheNumber) {
  // The same text inside a string first must not be taken for it.
  auto r = ParseJsonText(R"({"s":"1e400","n":[1, -2e999]})");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().offset, 21U);
  EXPECT_NE(r.error().reason.find("number overflow"), std::string::npos)
      << r.error().reason;
  EXPECT_EQ(r.error().reason.find("json.exception"), std::string::npos)
      << r.error().reason;
  EXPECT_TRUE(ParseJsonText("[1e300, -1e-400]").ok());
}

// CheckJsonText answers as ParseJsonText would, on every kind of input it
// refuses, with the same offset and reason.
TEST(CheckJsonTextTest, AgreesWithParseJsonText) {
  const std::string cases[] = {
      R"( {"a": [1, -2.5, "x", true, null, {}]} )",
      "18446744073709551615",
      R"([1, 2,, 3])",
      "",
      std::string("[1]\0[2]", 7),
      std::string("\"a\xff\""),
      Nested(kMaxJsonDepth),
      Nested(kMaxJsonDepth + 1),
      R"(["[[[[", 1])",
      R"({"n": 1e999})",
  };
  for (const std::string& text : cases) {
    auto parsed = ParseJsonText(text);
    auto checked = CheckJsonText(text);
    ASSERT_EQ(checked.ok(), parsed.ok()) << text;
    if (!parsed.ok()) {
      EXPECT_EQ(checked.error().offset, parsed.error().offset) << text;
      EXPECT_EQ(checked.error().reason, parsed.error().reason) << text;
    }
  }
}

}  // namespace
}  // namespace sluice
