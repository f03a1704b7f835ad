// Tests of service/processors/processor.hpp: validation of every processor
// type and the behaviour of each, including every filter op.
#include <gtest/gtest.h>

#include <chrono>

#include "service/processors/processor.hpp"

namespace sluice::processors {
namespace {

using nlohmann::json;

config::ProcessorSpec Spec(std::string type, std::string_view params = "{}") {
  return {std::move(type), json::parse(params)};
}

std::vector<config::ConfigError> Validate(std::string type,
                                          std::string_view params = "{}") {
  return ValidateProcessorSpec(Spec(std::move(type), params));
}

// The one error, as "path: message".
std::string OneError(std::string type, std::string_view params = "{}") {
  auto errors = Validate(std::move(type), params);
  EXPECT_EQ(errors.size(), 1u);
  std::string all;
  for (const auto& e : errors) all += e.path + ": " + e.message + "\n";
  if (errors.size() != 1) return all;
  return errors[0].path + ": " + errors[0].message;
}

std::unique_ptr<Processor> Make(std::string type,
                                std::string_view params = "{}") {
  auto spec = Spec(std::move(type), params);
  auto errors = ValidateProcessorSpec(spec);
  for (const auto& e : errors) ADD_FAILURE() << e.path << ": " << e.message;
  auto p = MakeProcessor(spec);
  EXPECT_TRUE(p.ok()) << p.error().message;
  return p.ok() ? std::move(p).value() : nullptr;
}

// Runs one item and expects exactly one value out.
json One(Processor& p, std::string_view item) {
  Outcome o = p.Process(json::parse(item));
  EXPECT_EQ(o.kind, Outcome::kValues) << o.error;
  EXPECT_EQ(o.values.size(), 1u);
  return o.values.empty() ? json() : o.values[0];
}

std::string ErrorOf(Processor& p, std::string_view item) {
  Outcome o = p.Process(json::parse(item));
  EXPECT_EQ(o.kind, Outcome::kError);
  return o.error;
}

::testing::AssertionResult Contains(const std::string& haystack,
                                    std::string_view needle) {
  if (haystack.find(needle) != std::string::npos) {
    return ::testing::AssertionSuccess();
  }
  return ::testing::AssertionFailure()
         << "\"" << haystack << "\" does not contain \"" << needle << "\"";
}

// --- type dispatch ---------------------------------------------------------

TEST(ValidateProcessorSpec, RequiresAKnownType) {
  EXPECT_TRUE(Contains(OneError(""), "type: is required"));
  const std::string unknown = OneError("frobnicate");
  EXPECT_TRUE(Contains(unknown, "type: unknown processor type 'frobnicate'"));
  EXPECT_TRUE(Contains(unknown,
                       "passthrough, set, remove, filter, split, "
                       "sha256, delay"));
}

TEST(ValidateProcessorSpec, LuaAndHttpValidateTheirParams) {
  EXPECT_TRUE(
      Validate("lua", R"({"script":"function process(x) return x end"})")
          .empty());
  EXPECT_TRUE(Contains(OneError("lua", R"({"script":"function process(x"})"),
                       "script: line 1: "));
  EXPECT_NE(Make("lua", R"({"script":"function process(x) return x end"})"),
            nullptr);
  EXPECT_TRUE(Validate("http", R"({"url":"http://x/{/id}"})").empty());
  EXPECT_TRUE(Contains(OneError("http", R"({"url":"not a url"})"), "url: "));
}

TEST(ValidateProcessorSpec, ListsAvailableTypes) {
  EXPECT_EQ(
      AvailableProcessorTypes(),
      (std::vector<std::string>{"passthrough", "set", "remove", "filter",
                                "split", "sha256", "delay", "lua", "http"}));
}

TEST(MakeProcessor, RefusesAnInvalidSpecSayingWhy) {
  for (const auto& spec :
       {Spec("filter", R"({"op":"~"})"), Spec("nope"), Spec("set", "[]")}) {
    auto p = MakeProcessor(spec);
    ASSERT_FALSE(p.ok()) << spec.type;
    EXPECT_EQ(p.error().code, "invalid_spec");
    std::string why;  // what the validator says, one problem after another
    for (const auto& e : ValidateProcessorSpec(spec)) {
      why += (why.empty() ? "" : "; ") + config::ToString(e);
    }
    EXPECT_EQ(p.error().message, why);
  }
}

TEST(ValidateProcessorSpec, ParamsMustBeAMap) {
  EXPECT_TRUE(Contains(OneError("passthrough", "[1]"), ": must be a map"));
}

// --- passthrough -------------------------------------------------------------

TEST(Passthrough, ReturnsTheItemUnchanged) {
  auto p = Make("passthrough");
  EXPECT_EQ(One(*p, R"({"a":[1,{"b":null}]})"),
            json::parse(R"({"a":[1,{"b":null}]})"));
  EXPECT_EQ(One(*p, "42"), 42);
  EXPECT_FALSE(p->io_bound());
}

TEST(Passthrough, TakesNoParameters) {
  EXPECT_EQ(OneError("passthrough", R"({"x":1})"),
            "x: unknown key (this processor takes no parameters)");
}

// --- set ---------------------------------------------------------------------

TEST(Set, SetsEachPointerCreatingObjects) {
  auto p = Make("set", R"({"fields":{"/status":"ok","/meta/tags":["a"],
                                     "/n":1}})");
  EXPECT_EQ(One(*p, R"({"n":0,"x":true})"),
            json::parse(R"({"n":1,"x":true,"status":"ok",
                            "meta":{"tags":["a"]}})"));
  // A null item becomes an object.
  EXPECT_EQ(One(*p, "null"),
            json::parse(R"({"n":1,"status":"ok","meta":{"tags":["a"]}})"));
}

TEST(Set, FailsTheItemWhenThePathGoesThroughAScalar) {
  auto p = Make("set", R"({"fields":{"/meta/x":1}})");
  EXPECT_TRUE(Contains(ErrorOf(*p, R"({"meta":"text"})"), "/meta/x"));
  EXPECT_FALSE(ErrorOf(*p, "7").empty());
}

TEST(Set, Validation) {
  EXPECT_TRUE(Contains(OneError("set"), "fields: is required"));
  EXPECT_TRUE(Contains(OneError("set", R"({"fields":{}})"),
                       "fields: must be a non-empty map"));
  EXPECT_TRUE(Contains(OneError("set", R"({"fields":["/a"]})"),
                       "fields: must be a non-empty map"));
  EXPECT_TRUE(Contains(OneError("set", R"({"fields":{"a":1}})"),
                       "fields[\"a\"]: a JSON pointer must be"));
  EXPECT_TRUE(Contains(OneError("set", R"({"fields":{"/a":1},"x":2})"),
                       "x: unknown key (expected one of: fields)"));
}

// --- remove ------------------------------------------------------------------

TEST(Remove, RemovesPresentPointersAndIgnoresMissingOnes) {
  auto p = Make("remove", R"({"fields":["/a","/b/c","/l/0","/zz"]})");
  EXPECT_EQ(One(*p, R"({"a":1,"b":{"c":2,"d":3},"l":[1,2],"k":0})"),
            json::parse(R"({"b":{"d":3},"l":[2],"k":0})"));
  EXPECT_EQ(One(*p, R"("scalar")"), "scalar");
}

TEST(Remove, Validation) {
  EXPECT_TRUE(Contains(OneError("remove"), "fields: is required"));
  EXPECT_TRUE(Contains(OneError("remove", R"({"fields":[]})"),
                       "fields: must be a non-empty list"));
  EXPECT_TRUE(Contains(OneError("remove", R"({"fields":"/a"})"),
                       "fields: must be a non-empty list"));
  EXPECT_TRUE(Contains(OneError("remove", R"({"fields":["/a",3]})"),
                       "fields[1]: must be a string"));
  EXPECT_TRUE(Contains(OneError("remove", R"({"fields":["a"]})"),
                       "fields[0]: a JSON pointer must be"));
  EXPECT_TRUE(Contains(OneError("remove", R"({"fields":[""]})"),
                       "fields[0]: cannot remove the item itself"));
}

// --- filter ------------------------------------------------------------------

bool Keeps(std::string_view params, std::string_view item) {
  auto p = Make("filter", params);
  if (p == nullptr) return false;
  Outcome o = p->Process(json::parse(item));
  EXPECT_NE(o.kind, Outcome::kError) << o.error;
  if (o.kind == Outcome::kValues) {
    EXPECT_EQ(o.values.size(), 1u);
    EXPECT_EQ(o.values[0], json::parse(item));  // kept unchanged
    return true;
  }
  EXPECT_TRUE(o.values.empty());
  return false;
}

TEST(Filter, EqualsComparesJsonValuesNumbersByValue) {
  const auto eq = R"({"field":"/a","op":"==","value":18})";
  EXPECT_TRUE(Keeps(eq, R"({"a":18})"));
  EXPECT_TRUE(Keeps(eq, R"({"a":18.0})"));
  EXPECT_FALSE(Keeps(eq, R"({"a":19})"));
  EXPECT_FALSE(Keeps(eq, R"({"a":"18"})"));  // another type: not equal
  EXPECT_FALSE(Keeps(eq, R"({"b":18})"));    // missing: not equal
  EXPECT_TRUE(Keeps(R"({"field":"/a","op":"==","value":"x"})", R"({"a":"x"})"));
  EXPECT_TRUE(Keeps(R"({"field":"/a","op":"==","value":{"b":[1,2]}})",
                    R"({"a":{"b":[1,2.0]}})"));
  EXPECT_TRUE(
      Keeps(R"({"field":"/a","op":"==","value":null})", R"({"a":null})"));
  EXPECT_FALSE(Keeps(R"({"field":"/a","op":"==","value":null})", "{}"));
  EXPECT_TRUE(
      Keeps(R"({"field":"/a","op":"==","value":true})", R"({"a":true})"));
  // Huge unsigned values are not confused with negative ones.
  EXPECT_FALSE(Keeps(R"({"field":"/a","op":"==","value":-1})",
                     R"({"a":18446744073709551615})"));
}

TEST(Filter, NotEqualsIsTheExactNegationOfEquals) {
  const auto ne = R"({"field":"/a","op":"!=","value":18})";
  EXPECT_FALSE(Keeps(ne, R"({"a":18})"));
  EXPECT_FALSE(Keeps(ne, R"({"a":18.0})"));
  EXPECT_TRUE(Keeps(ne, R"({"a":19})"));
  EXPECT_TRUE(Keeps(ne, R"({"a":"18"})"));  // incompatible types: not equal
  EXPECT_TRUE(Keeps(ne, R"({"b":1})"));     // missing field: not equal
}

TEST(Filter, OrderingOpsOnNumbers) {
  auto keeps = [](std::string_view op, std::string_view a) {
    return Keeps(std::string(R"({"field":"/a","op":")") + std::string(op) +
                     R"(","value":18})",
                 std::string(R"({"a":)") + std::string(a) + "}");
  };
  EXPECT_TRUE(keeps("<", "17"));
  EXPECT_FALSE(keeps("<", "18"));
  EXPECT_TRUE(keeps("<", "17.5"));
  EXPECT_TRUE(keeps("<=", "18"));
  EXPECT_FALSE(keeps("<=", "18.01"));
  EXPECT_TRUE(keeps(">", "19"));
  EXPECT_FALSE(keeps(">", "18"));
  EXPECT_TRUE(keeps(">=", "18"));
  EXPECT_TRUE(keeps(">=", "18.0"));
  EXPECT_FALSE(keeps(">=", "-5"));
  EXPECT_TRUE(keeps(">", "18446744073709551615"));
  EXPECT_TRUE(keeps("<", "-9223372036854775808"));
}

TEST(Filter, OrderingOpsOnStringsAreLexicographic) {
  EXPECT_TRUE(Keeps(R"({"field":"/s","op":"<","value":"b"})", R"({"s":"a"})"));
  EXPECT_TRUE(
      Keeps(R"({"field":"/s","op":"<","value":"b"})", R"({"s":"abc"})"));
  EXPECT_FALSE(
      Keeps(R"({"field":"/s","op":"<","value":"b"})", R"({"s":"ba"})"));
  EXPECT_TRUE(Keeps(R"({"field":"/s","op":">=","value":"10"})",
                    R"({"s":"9"})"));  // text, not numbers
  EXPECT_TRUE(Keeps(R"({"field":"/s","op":"<=","value":"x"})", R"({"s":"x"})"));
  EXPECT_TRUE(Keeps(R"({"field":"/s","op":">","value":""})", R"({"s":"x"})"));
}

TEST(Filter, OrderingOpsOnIncompatibleTypesOrMissingFieldsAreFalse) {
  for (std::string_view op : {"<", "<=", ">", ">="}) {
    const std::string num =
        R"({"field":"/a","op":")" + std::string(op) + R"(","value":5})";
    const std::string str =
        R"({"field":"/a","op":")" + std::string(op) + R"(","value":"m"})";
    EXPECT_FALSE(Keeps(num, R"({"a":"5"})")) << op;
    EXPECT_FALSE(Keeps(num, R"({"a":true})")) << op;
    EXPECT_FALSE(Keeps(num, R"({"a":null})")) << op;
    EXPECT_FALSE(Keeps(num, R"({"a":[5]})")) << op;
    EXPECT_FALSE(Keeps(num, R"({"b":5})")) << op;
    EXPECT_FALSE(Keeps(str, R"({"a":5})")) << op;
    EXPECT_FALSE(Keeps(str, R"({"a":{}})")) << op;
  }
}

TEST(Filter, ExistsChecksPresence) {
  const auto exists = R"({"field":"/a/b","op":"exists"})";
  EXPECT_TRUE(Keeps(exists, R"({"a":{"b":0}})"));
  EXPECT_TRUE(Keeps(exists, R"({"a":{"b":null}})"));  // present null exists
  EXPECT_FALSE(Keeps(exists, R"({"a":{}})"));
  EXPECT_FALSE(Keeps(exists, R"({"a":3})"));
  EXPECT_TRUE(
      Keeps(R"({"field":"/a","op":"exists","value":true})", R"({"a":1})"));
  const auto missing = R"({"field":"/a","op":"exists","value":false})";
  EXPECT_TRUE(Keeps(missing, R"({"b":1})"));
  EXPECT_FALSE(Keeps(missing, R"({"a":1})"));
}

TEST(Filter, ContainsOnStringsAndArrays) {
  const auto sub = R"({"field":"/s","op":"contains","value":"ell"})";
  EXPECT_TRUE(Keeps(sub, R"({"s":"hello"})"));
  EXPECT_FALSE(Keeps(sub, R"({"s":"help"})"));
  EXPECT_TRUE(Keeps(sub, R"({"s":["ell"]})"));     // an element equals it
  EXPECT_FALSE(Keeps(sub, R"({"s":["hello"]})"));  // no substring in arrays
  EXPECT_TRUE(
      Keeps(R"({"field":"/s","op":"contains","value":""})", R"({"s":"x"})"));
  const auto elem = R"({"field":"/tags","op":"contains","value":"red"})";
  EXPECT_TRUE(Keeps(elem, R"({"tags":["blue","red"]})"));
  EXPECT_FALSE(Keeps(elem, R"({"tags":["blue","reddish"]})"));
  EXPECT_FALSE(Keeps(elem, R"({"tags":[]})"));
  EXPECT_FALSE(Keeps(elem, "{}"));
  const auto num = R"({"field":"/n","op":"contains","value":2})";
  EXPECT_TRUE(Keeps(num, R"({"n":[1,2.0,3]})"));
  EXPECT_FALSE(Keeps(num, R"({"n":"123"})"));    // number in a string: no
  EXPECT_FALSE(Keeps(num, R"({"n":2})"));        // a number contains nothing
  EXPECT_FALSE(Keeps(num, R"({"n":{"2":2}})"));  // objects: false
  EXPECT_TRUE(Keeps(R"({"field":"/n","op":"contains","value":{"a":1}})",
                    R"({"n":[{"a":1}]})"));
}

TEST(Filter, DefaultFieldIsTheItemItself) {
  EXPECT_TRUE(Keeps(R"({"op":">","value":3})", "4"));
  EXPECT_FALSE(Keeps(R"({"op":">","value":3})", "2"));
  EXPECT_TRUE(Keeps(R"({"field":"","op":"==","value":"a"})", R"("a")"));
}

TEST(Filter, FilteredOutcomeHasNoValues) {
  auto p = Make("filter", R"({"field":"/a","op":"==","value":1})");
  Outcome o = p->Process(json::parse(R"({"a":2})"));
  EXPECT_EQ(o.kind, Outcome::kFiltered);
  EXPECT_TRUE(o.values.empty());
  EXPECT_TRUE(o.error.empty());
}

TEST(Filter, Validation) {
  EXPECT_TRUE(Contains(OneError("filter"), "op: is required"));
  EXPECT_TRUE(
      Contains(OneError("filter", R"({"op":"~="})"), "op: unknown op '~='"));
  EXPECT_TRUE(
      Contains(OneError("filter", R"({"op":5})"), "op: must be a string"));
  EXPECT_TRUE(Contains(OneError("filter", R"({"op":"=="})"),
                       "value: is required with op =="));
  EXPECT_TRUE(Contains(OneError("filter", R"({"op":"!="})"),
                       "value: is required with op !="));
  EXPECT_TRUE(Contains(OneError("filter", R"({"op":"contains"})"),
                       "value: is required with op contains"));
  EXPECT_TRUE(Contains(OneError("filter", R"({"op":"<"})"),
                       "value: is required with op <"));
  EXPECT_TRUE(Contains(OneError("filter", R"({"op":">=","value":[1]})"),
                       "value: must be a number or a string with op >="));
  EXPECT_TRUE(Contains(OneError("filter", R"({"op":"<=","value":true})"),
                       "value: must be a number or a string"));
  EXPECT_TRUE(Contains(OneError("filter", R"({"op":"exists","value":1})"),
                       "value: must be true or false with op exists"));
  EXPECT_TRUE(Contains(OneError("filter", R"({"op":"exists","field":"a"})"),
                       "field: a JSON pointer must be"));
  EXPECT_TRUE(Contains(OneError("filter", R"({"op":"exists","field":1})"),
                       "field: must be a string (a JSON pointer"));
  EXPECT_TRUE(Contains(OneError("filter", R"({"op":"exists","fild":"/a"})"),
                       "fild: unknown key (expected one of: field, op, "
                       "value)"));
  EXPECT_TRUE(Validate("filter", R"({"op":"exists"})").empty());
  EXPECT_TRUE(Validate("filter", R"({"op":"==","value":null})").empty());
}

TEST(Filter, ReportsEveryProblem) {
  EXPECT_EQ(
      Validate("filter", R"({"field":"x","op":"<","value":{},"y":1})").size(),
      3u);
}

// --- split -------------------------------------------------------------------

std::vector<json> Parts(Processor& p, std::string_view item) {
  Outcome o = p.Process(json::parse(item));
  EXPECT_EQ(o.kind, Outcome::kValues) << o.error;
  return o.values;
}

TEST(Split, ArrayFieldBecomesItsElements) {
  auto p = Make("split", R"({"field":"/xs"})");
  EXPECT_EQ(Parts(*p, R"({"xs":[1,"a",{"b":2},null]})"),
            (std::vector<json>{1, "a", json::parse(R"({"b":2})"), nullptr}));
  EXPECT_TRUE(Parts(*p, R"({"xs":[]})").empty());  // 0 parts: filtered
}

TEST(Split, StringFieldSplitsOnRunsOfWhitespaceByDefault) {
  auto p = Make("split", R"({"field":"/text"})");
  EXPECT_EQ(Parts(*p, R"({"text":"a b a"})"),
            (std::vector<json>{"a", "b", "a"}));
  EXPECT_EQ(Parts(*p, R"({"text":"  one\t two\n\nthree  "})"),
            (std::vector<json>{"one", "two", "three"}));
  EXPECT_TRUE(Parts(*p, R"({"text":""})").empty());
  EXPECT_TRUE(Parts(*p, R"({"text":"   "})").empty());
}

TEST(Split, StringFieldWithSeparatorKeepsEmptyParts) {
  auto p = Make("split", R"({"field":"/csv","separator":","})");
  EXPECT_EQ(Parts(*p, R"({"csv":"a,b,,c"})"),
            (std::vector<json>{"a", "b", "", "c"}));
  EXPECT_EQ(Parts(*p, R"({"csv":"abc"})"), (std::vector<json>{"abc"}));
  EXPECT_EQ(Parts(*p, R"({"csv":""})"), (std::vector<json>{""}));
  auto multi = Make("split", R"({"field":"/s","separator":"::"})");
  EXPECT_EQ(Parts(*multi, R"({"s":"a::b:c::"})"),
            (std::vector<json>{"a", "b:c", ""}));
}

TEST(Split, EmptyFieldMeansTheItemItself) {
  auto p = Make("split", R"({"field":""})");
  EXPECT_EQ(Parts(*p, "[1,2]"), (std::vector<json>{1, 2}));
  EXPECT_EQ(Parts(*p, R"("x y")"), (std::vector<json>{"x", "y"}));
  auto dflt = Make("split");
  EXPECT_EQ(Parts(*dflt, "[3]"), (std::vector<json>{3}));
}

TEST(Split, MissingOrWrongTypedFieldIsAnItemError) {
  auto p = Make("split", R"({"field":"/text"})");
  EXPECT_EQ(ErrorOf(*p, R"({"other":1})"), "field /text not found");
  EXPECT_EQ(ErrorOf(*p, R"({"text":5})"),
            "field /text is a number; split needs an array or a string");
  EXPECT_TRUE(Contains(ErrorOf(*p, R"({"text":{"a":1}})"), "is an object"));
  EXPECT_TRUE(Contains(ErrorOf(*p, R"({"text":null})"), "is null"));
  auto self = Make("split", R"({"field":""})");
  EXPECT_EQ(ErrorOf(*self, "true"),
            "the item is a boolean; split needs an array or a string");
}

TEST(Split, Validation) {
  EXPECT_TRUE(Contains(OneError("split", R"({"separator":""})"),
                       "separator: must not be empty"));
  EXPECT_TRUE(Contains(OneError("split", R"({"separator":1})"),
                       "separator: must be a string"));
  EXPECT_TRUE(Contains(OneError("split", R"({"field":"text"})"),
                       "field: a JSON pointer must be"));
  EXPECT_TRUE(
      Contains(OneError("split", R"({"sep":","})"), "sep: unknown key"));
}

// --- sha256 ------------------------------------------------------------------

constexpr char kSha256Abc[] =
    "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
constexpr char kSha256Empty[] =
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

TEST(Sha256, HashesAStringFieldAsIs) {
  auto p = Make("sha256", R"({"field":"/s","target":"/h"})");
  const json out = One(*p, R"({"s":"abc"})");
  EXPECT_EQ(out["h"], kSha256Abc);
  EXPECT_EQ(out["s"], "abc");
  EXPECT_EQ(One(*p, R"({"s":""})")["h"], kSha256Empty);
}

TEST(Sha256, HashesOtherValuesAsCompactJson) {
  auto p = Make("sha256", R"({"field":"/v","target":"/h"})");
  auto s = Make("sha256", R"({"field":"/s","target":"/h"})");
  // {"v": {"b":1, "a":[1, 2]}} hashes as the text {"a":[1,2],"b":1}.
  const json a = One(*p, R"({"v":{ "b": 1, "a": [1, 2] }})");
  const json b = One(*s, R"({"s":"{\"a\":[1,2],\"b\":1}"})");
  EXPECT_EQ(a["h"], b["h"]);
  const json n = One(*p, R"({"v":123})");
  const json t = One(*s, R"({"s":"123"})");
  EXPECT_EQ(n["h"], t["h"]);
}

TEST(Sha256, WritesToANestedTargetAndCanHashTheItem) {
  auto p = Make("sha256", R"({"target":"/meta/sha"})");
  const json out = One(*p, R"({"a":1})");
  ASSERT_TRUE(out["meta"]["sha"].is_string());
  EXPECT_EQ(out["meta"]["sha"].get<std::string>().size(), 64u);
  auto self = Make("sha256", R"({"field":"","target":""})");
  EXPECT_EQ(One(*self, R"("abc")"), kSha256Abc);
}

TEST(Sha256, MissingFieldOrBadTargetIsAnItemError) {
  auto p = Make("sha256", R"({"field":"/s","target":"/h/x"})");
  EXPECT_EQ(ErrorOf(*p, "{}"), "field /s not found");
  EXPECT_TRUE(Contains(ErrorOf(*p, R"({"s":"a","h":"str"})"), "/h/x"));
}

TEST(Sha256, Validation) {
  EXPECT_TRUE(
      Contains(OneError("sha256", R"({"field":"/a"})"), "target: is required"));
  EXPECT_TRUE(Contains(OneError("sha256", R"({"target":"h"})"),
                       "target: a JSON pointer must be"));
  EXPECT_TRUE(Contains(OneError("sha256", R"({"target":"/h","algo":"md5"})"),
                       "algo: unknown key"));
}

// --- delay -------------------------------------------------------------------

TEST(Delay, SleepsThenPassesTheItemOn) {
  auto p = Make("delay", R"({"duration":"30ms"})");
  EXPECT_TRUE(p->io_bound());
  const auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(One(*p, R"({"a":1})"), json::parse(R"({"a":1})"));
  EXPECT_GE(std::chrono::steady_clock::now() - start,
            std::chrono::milliseconds{30});
  auto zero = Make("delay", R"({"duration":0})");
  EXPECT_EQ(One(*zero, "1"), 1);
}

TEST(Delay, Validation) {
  EXPECT_TRUE(Contains(OneError("delay"), "duration: is required"));
  EXPECT_TRUE(Contains(OneError("delay", R"({"duration":"fast"})"),
                       "duration: invalid duration \"fast\""));
  EXPECT_TRUE(Contains(OneError("delay", R"({"duration":50})"),
                       "duration: invalid duration \"50\": missing unit"));
  EXPECT_TRUE(Contains(OneError("delay", R"({"duration":1.5})"),
                       "duration: must be a duration"));
  EXPECT_TRUE(Contains(OneError("delay", R"({"duration":"2h"})"),
                       "duration: must be <= 1h"));
  EXPECT_TRUE(Validate("delay", R"({"duration":"1h"})").empty());
}

// --- every processor: one instance per worker, independent -------------------

TEST(Processors, InstancesAreIndependent) {
  auto spec = Spec("set", R"({"fields":{"/n":1}})");
  auto a = MakeProcessor(spec).value();
  auto b = MakeProcessor(spec).value();
  ASSERT_TRUE(a && b);
  EXPECT_NE(a.get(), b.get());
  EXPECT_EQ(One(*a, "{}"), One(*b, "{}"));
}

}  // namespace
}  // namespace sluice::processors
