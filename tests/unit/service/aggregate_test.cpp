// Tests of service/processors/aggregate.hpp: every aggregate type, its
// validation and its edge cases (no values, non-numeric values, mixed
// integer and floating-point sums).
#include "service/processors/aggregate.hpp"

#include <gtest/gtest.h>

namespace sluice::processors {
namespace {

using nlohmann::json;

config::AggregateSpec Spec(std::string type, std::string field = "",
                           std::string op = "", std::string value = "") {
  return {
      std::move(type), std::move(field), std::move(op), std::move(value), {}};
}

// Folds the JSON array `values` through a fresh aggregator.
json Fold(const config::AggregateSpec& spec, std::string_view values) {
  EXPECT_TRUE(ValidateAggregateSpec(spec).empty());
  auto agg = MakeAggregator(spec);
  EXPECT_NE(agg, nullptr);
  if (agg == nullptr) return "<no aggregator>";
  for (const json& v : json::parse(values)) agg->Add(v);
  return agg->Result();
}

std::string OneError(const config::AggregateSpec& spec) {
  auto errors = ValidateAggregateSpec(spec);
  EXPECT_EQ(errors.size(), 1u);
  std::string all;
  for (const auto& e : errors) all += e.path + ": " + e.message + ";";
  return all;
}

TEST(Aggregate, CollectIsNull) {
  EXPECT_EQ(Fold(Spec("collect"), "[1,2,3]"), nullptr);
  EXPECT_EQ(Fold(Spec("collect"), "[]"), nullptr);
}

TEST(Aggregate, CountCountsEveryValue) {
  EXPECT_EQ(Fold(Spec("count"), R"([1,"a",null,{"x":1}])"), 4);
  EXPECT_EQ(Fold(Spec("count"), "[]"), 0);
}

TEST(Aggregate, SumOfIntegersStaysAnInteger) {
  const json r = Fold(Spec("sum", "/n"), R"([{"n":1},{"n":2},{"n":-5}])");
  EXPECT_TRUE(r.is_number_integer());
  EXPECT_EQ(r, -2);
}

TEST(Aggregate, SumWithAFloatIsAFloat) {
  const json r = Fold(Spec("sum", "/n"), R"([{"n":1},{"n":0.5}])");
  EXPECT_TRUE(r.is_number_float());
  EXPECT_DOUBLE_EQ(r.get<double>(), 1.5);
}

TEST(Aggregate, SumOverflowFallsBackToDouble) {
  const json r = Fold(Spec("sum"), "[9223372036854775807, 1]");
  EXPECT_TRUE(r.is_number_float());
  EXPECT_DOUBLE_EQ(r.get<double>(), 9223372036854775808.0);
  const json u = Fold(Spec("sum"), "[18446744073709551615]");
  EXPECT_TRUE(u.is_number_float());
}

TEST(Aggregate, NumericAggregatesSkipNonNumericAndMissingValues) {
  const auto values = R"([{"n":4},{"n":"7"},{"n":null},{"x":1},"s",{"n":2},
                          {"n":true},{"n":[1]}])";
  EXPECT_EQ(Fold(Spec("sum", "/n"), values), 6);
  EXPECT_EQ(Fold(Spec("min", "/n"), values), 2);
  EXPECT_EQ(Fold(Spec("max", "/n"), values), 4);
  EXPECT_DOUBLE_EQ(Fold(Spec("avg", "/n"), values).get<double>(), 3.0);
}

TEST(Aggregate, NumericAggregatesAreNullWithoutValues) {
  for (const char* type : {"sum", "min", "max", "avg"}) {
    EXPECT_EQ(Fold(Spec(type, "/n"), "[]"), nullptr) << type;
    EXPECT_EQ(Fold(Spec(type, "/n"), R"([{"n":"1"},{}])"), nullptr) << type;
  }
}

TEST(Aggregate, MinMaxKeepTheOriginalNumber) {
  const auto values = "[3, -1.5, 10, 2]";
  EXPECT_EQ(Fold(Spec("min"), values), -1.5);
  const json mx = Fold(Spec("max"), values);
  EXPECT_TRUE(mx.is_number_integer());
  EXPECT_EQ(mx, 10);
  EXPECT_EQ(Fold(Spec("max"), "[18446744073709551615, -1]"),
            json(18446744073709551615ULL));
  EXPECT_EQ(Fold(Spec("min"), "[18446744073709551615, -1]"), -1);
}

TEST(Aggregate, AvgIsAFloat) {
  const json r = Fold(Spec("avg", "/v"), R"([{"v":1},{"v":2}])");
  EXPECT_TRUE(r.is_number_float());
  EXPECT_DOUBLE_EQ(r.get<double>(), 1.5);
  EXPECT_DOUBLE_EQ(Fold(Spec("avg"), "[2, 4]").get<double>(), 3.0);
}

TEST(Aggregate, GroupByCountsKeysAsText) {
  EXPECT_EQ(Fold(Spec("group_by", "", "count"), R"(["a","b","a"])"),
            json::parse(R"({"a":2,"b":1})"));
  // Non-strings are keyed by their compact JSON; a missing key is skipped.
  EXPECT_EQ(Fold(Spec("group_by", "/k", "count"),
                 R"([{"k":1},{"k":1.5},{"k":true},{"k":null},{"k":[1, 2]},
                    {"k":{"b":1,"a":2}},{"k":"1"},{"x":0}])"),
            json::parse(R"({"1":2,"1.5":1,"true":1,"null":1,"[1,2]":1,
                            "{\"a\":2,\"b\":1}":1})"));
}

TEST(Aggregate, GroupByDefaultsToCount) {
  EXPECT_EQ(Fold(Spec("group_by", "/k"), R"([{"k":"x"},{"k":"x"}])"),
            json::parse(R"({"x":2})"));
}

TEST(Aggregate, GroupBySumsTheValuePointer) {
  const auto values = R"([{"user":"ann","amount":5},{"user":"bob","amount":1},
                          {"user":"ann","amount":2.5},{"user":"bob"},
                          {"user":"cat","amount":"9"},{"amount":7}])";
  const json r = Fold(Spec("group_by", "/user", "sum", "/amount"), values);
  // cat had no numeric amount and the last value has no user: both skipped.
  EXPECT_EQ(r, json::parse(R"({"ann":7.5,"bob":1})"));
  EXPECT_TRUE(r["bob"].is_number_integer());
}

TEST(Aggregate, GroupByOfNothingIsAnEmptyObject) {
  const json r = Fold(Spec("group_by", "", "count"), "[]");
  EXPECT_TRUE(r.is_object());
  EXPECT_TRUE(r.empty());
}

TEST(Aggregate, EachAggregatorIsFresh) {
  auto spec = Spec("count");
  auto a = MakeAggregator(spec);
  auto b = MakeAggregator(spec);
  a->Add(1);
  EXPECT_EQ(a->Result(), 1);
  EXPECT_EQ(b->Result(), 0);
}

TEST(ValidateAggregateSpec, AcceptsEveryDocumentedForm) {
  for (const auto& spec :
       {Spec("collect"), Spec("count"), Spec("sum", "/a"), Spec("min"),
        Spec("max", "/a/b"), Spec("avg", "/x"), Spec("group_by", "/k"),
        Spec("group_by", "", "count"), Spec("group_by", "/k", "sum", "/v")}) {
    EXPECT_TRUE(ValidateAggregateSpec(spec).empty()) << spec.type;
  }
}

TEST(ValidateAggregateSpec, RejectsUnknownOrMissingType) {
  EXPECT_TRUE(OneError(Spec("median"))
                  .starts_with("type: unknown aggregate type 'median' "
                               "(expected one of: collect, "
                               "count, sum, min, max, avg, group_by)"));
  EXPECT_TRUE(OneError(Spec("")).starts_with("type: is required"));
  EXPECT_EQ(MakeAggregator(Spec("median")), nullptr);
}

TEST(ValidateAggregateSpec, RejectsBadPointers) {
  EXPECT_TRUE(
      OneError(Spec("sum", "n")).starts_with("field: a JSON pointer must be"));
  EXPECT_TRUE(OneError(Spec("group_by", "/k~2"))
                  .starts_with("field: invalid JSON pointer"));
  EXPECT_TRUE(OneError(Spec("group_by", "/k", "sum", "v"))
                  .starts_with("value: a JSON pointer must be"));
}

TEST(ValidateAggregateSpec, RejectsParamsThatAreNotUsed) {
  EXPECT_TRUE(OneError(Spec("count", "/a"))
                  .starts_with("field: is not used by aggregate type 'count'"));
  EXPECT_TRUE(OneError(Spec("collect", "", "count"))
                  .starts_with("op: is not used by aggregate type 'collect'"));
  EXPECT_TRUE(OneError(Spec("sum", "/a", "sum"))
                  .starts_with("op: is not used by aggregate type 'sum'"));
  EXPECT_TRUE(OneError(Spec("avg", "/a", "", "/b"))
                  .starts_with("value: is not used by aggregate type 'avg'"));
  EXPECT_TRUE(OneError(Spec("group_by", "/k", "count", "/v"))
                  .starts_with("value: is only used with op sum"));
}

TEST(ValidateAggregateSpec, GroupByOps) {
  EXPECT_TRUE(OneError(Spec("group_by", "/k", "avg"))
                  .starts_with(
                      "op: unknown group_by op 'avg' (expected count or sum)"));
  EXPECT_TRUE(OneError(Spec("group_by", "/k", "sum"))
                  .starts_with("value: is required with op sum"));
}

}  // namespace
}  // namespace sluice::processors
