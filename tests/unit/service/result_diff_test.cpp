// Unit tests of the comparisons behind `sluice test` (service/cli/
// result_diff.hpp): exact and partial JSON matching, and the diffs of
// result records (multiset, partial with a real matching, ordered) and of
// values.
#include "service/cli/result_diff.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace sluice::cli {
namespace {

using nlohmann::json;

std::string Joined(const std::vector<std::string>& lines) {
  std::string text;
  for (const std::string& line : lines) text += line + "\n";
  return text;
}

TEST(JsonMatches, NumbersCompareByValueWithinATolerance) {
  EXPECT_TRUE(JsonMatches(json(1), json(1.0), false));
  EXPECT_TRUE(JsonMatches(json(2.0 / 3.0), json(0.666666666667), false));
  EXPECT_FALSE(JsonMatches(json(0.6667), json(2.0 / 3.0), false));
  // Integers compare exactly, however large.
  EXPECT_FALSE(
      JsonMatches(json(9007199254740993LL), json(9007199254740992LL), false));
  EXPECT_FALSE(JsonMatches(json(1), json("1"), false));
  EXPECT_FALSE(JsonMatches(json(nullptr), json(0), false));
}

TEST(JsonMatches, ExactObjectsNeedTheSameKeys) {
  const json got = {{"seq", 0}, {"value", {{"a", 1}, {"b", 2}}}};
  EXPECT_TRUE(JsonMatches(got, got, false));
  EXPECT_FALSE(JsonMatches(json{{"seq", 0}}, got, false));
  EXPECT_FALSE(
      JsonMatches(json{{"seq", 0}, {"value", {{"a", 1}}}}, got, false));
}

TEST(JsonMatches, PartialObjectsMatchByTheKeysGivenAtAnyDepth) {
  const json got = {{"seq", 3}, {"value", {{"a", 1}, {"b", {{"c", 2}}}}}};
  EXPECT_TRUE(JsonMatches(json{{"value", {{"b", {{"c", 2}}}}}}, got, true));
  EXPECT_TRUE(JsonMatches(json::object(), got, true));
  EXPECT_FALSE(JsonMatches(json{{"value", {{"b", {{"c", 3}}}}}}, got, true));
  EXPECT_FALSE(JsonMatches(json{{"missing", nullptr}}, got, true));
  // Arrays keep their length: partial is about keys, not elements.
  EXPECT_TRUE(JsonMatches(json::parse(R"([{"a":1}])"),
                          json::parse(R"([{"a":1,"b":2}])"), true));
  EXPECT_FALSE(JsonMatches(json::parse("[1]"), json::parse("[1,2]"), true));
}

TEST(DiffRecords, UnorderedExactIsAMultiset) {
  const json expected = json::parse(R"([{"seq":0,"value":"a"},
                                        {"seq":0,"value":"a"},
                                        {"seq":0,"value":"b"}])");
  const json same = json::parse(R"([{"seq":0,"value":"b"},
                                    {"seq":0,"value":"a"},
                                    {"seq":0,"value":"a"}])");
  EXPECT_TRUE(DiffRecords(expected, same, {}).empty());
  // One "a" too few and a "c" instead: both sides show.
  const json got = json::parse(R"([{"seq":0,"value":"b"},
                                   {"seq":0,"value":"a"},
                                   {"seq":0,"value":"c"}])");
  const std::string diff = Joined(DiffRecords(expected, got, {}));
  EXPECT_NE(diff.find("results: 1 expected record not found"),
            std::string::npos)
      << diff;
  EXPECT_NE(diff.find("-   \"value\": \"a\""), std::string::npos) << diff;
  EXPECT_NE(diff.find("results: 1 record not expected"), std::string::npos)
      << diff;
  EXPECT_NE(diff.find("+   \"value\": \"c\""), std::string::npos) << diff;
}

TEST(DiffRecords, UnorderedExactReportsExtraRecords) {
  const json expected = json::parse(R"([{"seq":0,"value":1}])");
  const json got = json::parse(R"([{"seq":0,"value":1},{"seq":1,"value":2}])");
  const std::string diff = Joined(DiffRecords(expected, got, {}));
  EXPECT_EQ(diff.find("not found"), std::string::npos) << diff;
  EXPECT_NE(diff.find("+   \"value\": 2"), std::string::npos) << diff;
}

TEST(DiffRecords, PartialFindsAMatchingAGreedyPairingWouldMiss) {
  // {value: 1} first takes the first record if paired greedily, leaving
  // nothing for {seq: 0, value: 1}... unless the matching is maximal.
  const json expected = json::parse(R"([{"value":1},{"seq":0}])");
  const json got = json::parse(R"([{"seq":0,"value":1},{"seq":5,"value":1}])");
  EXPECT_TRUE(DiffRecords(expected, got, {.partial = true}).empty());
  // Each expected record needs a record of its own.
  const json twice = json::parse(R"([{"seq":0},{"seq":0}])");
  const std::string diff = Joined(DiffRecords(twice, got, {.partial = true}));
  EXPECT_NE(diff.find("contains: 1 expected record not found"),
            std::string::npos)
      << diff;
  // The records nothing matched show as a hint.
  EXPECT_NE(diff.find("+   \"seq\": 5"), std::string::npos) << diff;
}

TEST(DiffRecords, OrderedExactShowsTheFirstPositionOutOfOrder) {
  const json expected = json::parse(R"([{"seq":0,"value":1},
                                        {"seq":1,"value":2},
                                        {"seq":2,"value":3}])");
  const json swapped = json::parse(R"([{"seq":0,"value":1},
                                       {"seq":2,"value":3},
                                       {"seq":1,"value":2}])");
  EXPECT_TRUE(DiffRecords(expected, swapped, {}).empty());
  const std::string diff =
      Joined(DiffRecords(expected, swapped, {.ordered = true}));
  EXPECT_NE(diff.find("in another order; at 1"), std::string::npos) << diff;
  EXPECT_NE(diff.find("-   \"seq\": 1"), std::string::npos) << diff;
  EXPECT_NE(diff.find("+   \"seq\": 2"), std::string::npos) << diff;
}

TEST(DiffRecords, OrderedPartialIsASubsequence) {
  const json got = json::parse(R"([{"seq":0},{"seq":1},{"seq":2}])");
  EXPECT_TRUE(DiffRecords(json::parse(R"([{"seq":0},{"seq":2}])"), got,
                          {.partial = true, .ordered = true})
                  .empty());
  const std::string diff =
      Joined(DiffRecords(json::parse(R"([{"seq":2},{"seq":0}])"), got,
                         {.partial = true, .ordered = true}));
  EXPECT_NE(diff.find("1 expected record not found in this order"),
            std::string::npos)
      << diff;
}

TEST(DiffRecords, LongSidesAreCut) {
  json got = json::array();
  for (int i = 0; i < 30; ++i) got.push_back({{"seq", i}, {"value", i}});
  const std::string diff =
      Joined(DiffRecords(json::array(), got, {}, /*max_shown=*/5));
  EXPECT_NE(diff.find("results: 30 records not expected"), std::string::npos);
  EXPECT_NE(diff.find("+ ... and 25 more"), std::string::npos) << diff;
  EXPECT_EQ(diff.find("\"seq\": 5,"), std::string::npos) << diff;
}

TEST(DiffValue, ShowsBothSidesAsPrettyJson) {
  EXPECT_TRUE(DiffValue("aggregate", json{{"a", 2}}, json{{"a", 2.0}}).empty());
  const std::vector<std::string> lines =
      DiffValue("aggregate", json{{"a", 2}}, json{{"a", 1}});
  const std::vector<std::string> want = {"aggregate: (- expected, + got)",
                                         "- {",
                                         "-   \"a\": 2",
                                         "- }",
                                         "+ {",
                                         "+   \"a\": 1",
                                         "+ }"};
  EXPECT_EQ(lines, want);
  // Partial: counts name only the keys to check.
  EXPECT_TRUE(
      DiffValue("items", json{{"out", 3}}, json{{"in", 1}, {"out", 3}}, true)
          .empty());
}

}  // namespace
}  // namespace sluice::cli
