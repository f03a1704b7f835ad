// Unit tests of the `sluice test` file format (service/cli/test_file.hpp):
// what a valid file gives, where the config comes from, and the key path
// of every kind of error.
#include "service/cli/test_file.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace sluice::cli {
namespace {

using nlohmann::json;

// The errors of parsing `text`, as "path: message" lines.
std::vector<std::string> Errors(const std::string& text) {
  auto parsed = ParseTestFile(text, "dir/t.yaml");
  std::vector<std::string> lines;
  if (parsed.ok()) return lines;
  for (const auto& e : parsed.error()) lines.push_back(config::ToString(e));
  return lines;
}

TEST(ParseTestFile, ReadsEveryKeyOfACase) {
  auto parsed = ParseTestFile(R"(
config: ../default.yaml
pipeline: wordcount
tests:
  - name: one
    input: [{text: "a b"}, 3, "4"]
    ordered: true
    results: [{seq: 0, value: a}]
    aggregate: {a: 1}
    items: {in: 1, out: 2}
    state: failed
    timeout: 1500ms
  - pipeline: other
    input: []
    contains: [{value: x}]
)",
                              "dir/t.yaml");
  ASSERT_TRUE(parsed.ok()) << config::ToString(parsed.error()[0]);
  const TestFile& file = parsed.value();
  EXPECT_EQ(file.config.file, "dir/../default.yaml");
  EXPECT_EQ(file.config.label, "../default.yaml");
  ASSERT_EQ(file.cases.size(), 2u);
  const TestCase& one = file.cases[0];
  EXPECT_EQ(one.name, "one");
  EXPECT_EQ(one.pipeline, "wordcount");
  // Quoted scalars stay strings, plain ones are numbers.
  EXPECT_EQ(json(one.input), json::parse(R"([{"text":"a b"},3,"4"])"));
  EXPECT_EQ(one.ordered, true);
  EXPECT_EQ(*one.results, json::parse(R"([{"seq":0,"value":"a"}])"));
  EXPECT_EQ(*one.aggregate, json::parse(R"({"a":1})"));
  EXPECT_EQ(one.items, json::parse(R"({"in":1,"out":2})"));
  EXPECT_EQ(one.state, "failed");
  EXPECT_EQ(one.timeout.count(), 1500);
  const TestCase& two = file.cases[1];
  EXPECT_EQ(two.name, "tests[1]");  // the default name
  EXPECT_EQ(two.pipeline, "other");
  EXPECT_FALSE(two.ordered.has_value());
  EXPECT_FALSE(two.results.has_value());
  EXPECT_FALSE(two.aggregate.has_value());
  EXPECT_EQ(two.state, "done");
}

TEST(ParseTestFile, AnAggregateOfNullIsACheck) {
  auto parsed = ParseTestFile(
      "pipeline: p\ntests: [{input: [], aggregate: null}]\n", "t.yaml");
  ASSERT_TRUE(parsed.ok());
  ASSERT_TRUE(parsed.value().cases[0].aggregate.has_value());
  EXPECT_TRUE(parsed.value().cases[0].aggregate->is_null());
}

TEST(ParseTestFile, ConfigInlineOrBuiltIn) {
  auto inline_config = ParseTestFile(
      "config: {pipelines: [{name: p}]}\npipeline: p\n"
      "tests: [{input: [], state: done}]\n",
      "t.yaml");
  ASSERT_TRUE(inline_config.ok());
  EXPECT_TRUE(inline_config.value().config.file.empty());
  EXPECT_EQ(json::parse(inline_config.value().config.text),
            json::parse(R"({"pipelines":[{"name":"p"}]})"));
  EXPECT_EQ(inline_config.value().config.label, "inline");

  auto built_in =
      ParseTestFile("pipeline: p\ntests: [{input: [], state: done}]\n", "t");
  ASSERT_TRUE(built_in.ok());
  EXPECT_TRUE(built_in.value().config.file.empty());
  EXPECT_EQ(built_in.value().config.text, config::DefaultConfigText());
}

TEST(ParseTestFile, ErrorsNameTheKeyPath) {
  EXPECT_EQ(Errors(R"(
pipeline: p
tests:
  - input: {text: a}
    items: {in: -1, outt: 3}
    state: finished
    timeout: soon
  - inputs: []
  - 3
  - input: []
    results: [{seq: 0}]
    contains: [1]
)"),
            (std::vector<std::string>{
                "tests[0].input: must be a list of items",
                "tests[0].items.in: must be an integer >= 0",
                "tests[0].items.outt: unknown key",
                "tests[0].state: must be one of done, failed, cancelled",
                "tests[0].timeout: must be a duration above zero (e.g. 10s)",
                "tests[1].inputs: unknown key",
                "tests[1].input: missing",
                std::string("tests[1]: checks nothing: give results, ") +
                    "contains, aggregate, items or state",
                "tests[2]: must be a map",
                std::string("tests[3].contains[0]: must be a record ") +
                    "(a map, e.g. {seq: 0, value: 1})",
                "tests[3].contains: give results or contains, not both",
            }));
}

TEST(ParseTestFile, FileLevelErrors) {
  EXPECT_EQ(
      Errors("tests: [{input: [], state: done}]\n"),
      std::vector<std::string>{
          "tests[0].pipeline: missing (set it here or at the top level)"});
  EXPECT_EQ(Errors("pipeline: p\n"),
            std::vector<std::string>{"tests: missing"});
  EXPECT_EQ(
      Errors("pipeline: p\ntests: []\nextra: 1\n"),
      (std::vector<std::string>{"extra: unknown key",
                                "tests: must be a non-empty list of cases"}));
  EXPECT_EQ(Errors("- 1\n"),
            std::vector<std::string>{"(top level): must be a map"});
  EXPECT_EQ(Errors("config: 3\npipeline: p\ntests: [{input: [], state: done}]"),
            std::vector<std::string>{"config: must be a non-empty string"});
  // YAML syntax: the position.
  const std::vector<std::string> syntax = Errors("tests: [\n");
  ASSERT_EQ(syntax.size(), 1u);
  EXPECT_EQ(syntax[0].rfind("line ", 0), 0u) << syntax[0];
}

TEST(ReadTestFile, AnUnreadableFileIsOneError) {
  auto read = ReadTestFile("/nonexistent/sluice/test.yaml");
  ASSERT_FALSE(read.ok());
  ASSERT_EQ(read.error().size(), 1u);
  EXPECT_EQ(read.error()[0].message, "cannot open the file");
}

}  // namespace
}  // namespace sluice::cli
