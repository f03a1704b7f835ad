// Tests of service/config/config.hpp: loading, defaults, every validation
// rule and error path, env substitution, JSON input, and that the shipped
// config/default.yaml and config/examples/*.yaml load cleanly.
#include "service/config/config.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "service/processors/aggregate.hpp"
#include "service/processors/checks.hpp"
#include "service/processors/processor.hpp"

namespace sluice::config {
namespace {

using nlohmann::json;

// A minimal valid pipeline list to append to server/jobs snippets.
constexpr std::string_view kPipelines = R"(
pipelines:
  - name: p
    stages:
      - processor: { type: passthrough }
)";

Config Load(std::string_view text) {
  auto r = LoadConfigText(text, processors::ConfigChecks());
  if (!r.ok()) {
    for (const auto& e : r.error()) ADD_FAILURE() << ToString(e);
    return {};
  }
  return std::move(r).value();
}

std::vector<std::string> Errors(std::string_view text) {
  auto r = LoadConfigText(text, processors::ConfigChecks());
  std::vector<std::string> out;
  if (!r.ok()) {
    for (const auto& e : r.error()) out.push_back(ToString(e));
  }
  return out;
}

std::string Joined(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& e : v) s += "  " + e + "\n";
  return s;
}

// Expects exactly one error, starting with `prefix` ("path: message...").
void ExpectOneError(std::string_view text, std::string_view prefix) {
  const auto errors = Errors(text);
  ASSERT_EQ(errors.size(), 1u) << "for:\n"
                               << text << "\ngot:\n"
                               << Joined(errors);
  EXPECT_TRUE(errors[0].starts_with(prefix))
      << "got:      " << errors[0] << "\nexpected: " << prefix << "...";
}

std::string WithServer(std::string_view server_body) {
  return "server:\n" + std::string(server_body) + std::string(kPipelines);
}

std::string WithJobs(std::string_view jobs_body) {
  return "jobs:\n" + std::string(jobs_body) + std::string(kPipelines);
}

std::string WithStage(std::string_view stage) {
  return "pipelines:\n  - name: p\n    stages:\n      - " + std::string(stage) +
         "\n";
}

std::string WithAggregate(std::string_view aggregate) {
  return std::string(kPipelines) + "    aggregate: " + std::string(aggregate) +
         "\n";
}

// --- loading and defaults
// ------------------------------------------------------

TEST(LoadConfig, MinimalConfigGetsEveryDefault) {
  const Config c = Load(kPipelines);
  EXPECT_EQ(c.server.listen, "0.0.0.0:8080");
  EXPECT_EQ(c.server.io_threads, 2);
  EXPECT_EQ(c.server.max_body_bytes, 16u * 1024 * 1024);
  EXPECT_EQ(c.server.max_connections, 10000u);
  EXPECT_EQ(c.server.shutdown_grace, std::chrono::seconds{30});
  EXPECT_EQ(c.server.idle_timeout, std::chrono::seconds{60});
  EXPECT_EQ(c.server.max_header_bytes, 16384u);
  EXPECT_EQ(c.server.auth.tokens_env, "");
  EXPECT_EQ(c.server.tls.cert, "");
  EXPECT_EQ(c.jobs.max_pending_items, 1000000u);
  EXPECT_EQ(c.jobs.retention, std::chrono::minutes{10});
  EXPECT_EQ(c.jobs.max_retained_bytes, 268435456u);
  EXPECT_EQ(c.jobs.max_job_result_bytes, 67108864u) << "a quarter";
  EXPECT_EQ(c.jobs.min_retention, std::chrono::seconds{10});
  ASSERT_EQ(c.pipelines.size(), 1u);
  const PipelineConfig& p = c.pipelines[0];
  EXPECT_EQ(p.name, "p");
  EXPECT_FALSE(p.ordered);
  EXPECT_EQ(p.aggregate.type, "collect");
  ASSERT_EQ(p.stages.size(), 1u);
  EXPECT_EQ(p.stages[0].name, "passthrough_0");
  EXPECT_EQ(p.stages[0].processor.type, "passthrough");
  EXPECT_EQ(p.stages[0].processor.params, json::object());
  EXPECT_EQ(p.stages[0].workers, 1u);
  EXPECT_EQ(p.stages[0].buffer, 256u);
}

TEST(LoadConfig, ReadsEveryKey) {
  const Config c = Load(R"(
server:
  listen: "127.0.0.1:9000"
  io_threads: 4
  max_body_bytes: 1MiB
  max_connections: 50
  shutdown_grace: 5s
  idle_timeout: 1m
  max_header_bytes: 8KiB
  auth: { tokens_env: MY_TOKENS }
  tls: { cert: /etc/c.pem, key: /etc/k.pem }
jobs:
  max_pending_items: 500
  retention: 1h
  max_retained_bytes: 1GB
pipelines:
  - name: enrich
    ordered: true
    stages:
      - name: adults
        processor: { type: filter, field: /age, op: ">=", value: 18 }
        workers: 8
        buffer: 0
      - processor: { type: set, fields: { /a/b: [1, "x", null, true, 1.5] } }
    aggregate: { type: group_by, field: /k, op: sum, value: /v }
)");
  EXPECT_EQ(c.server.listen, "127.0.0.1:9000");
  EXPECT_EQ(c.server.io_threads, 4);
  EXPECT_EQ(c.server.max_body_bytes, 1048576u);
  EXPECT_EQ(c.server.max_connections, 50u);
  EXPECT_EQ(c.server.shutdown_grace, std::chrono::seconds{5});
  EXPECT_EQ(c.server.idle_timeout, std::chrono::minutes{1});
  EXPECT_EQ(c.server.max_header_bytes, 8192u);
  EXPECT_EQ(c.server.auth.tokens_env, "MY_TOKENS");
  EXPECT_EQ(c.server.tls.cert, "/etc/c.pem");
  EXPECT_EQ(c.server.tls.key, "/etc/k.pem");
  EXPECT_EQ(c.jobs.max_pending_items, 500u);
  EXPECT_EQ(c.jobs.retention, std::chrono::hours{1});
  EXPECT_EQ(c.jobs.max_retained_bytes, 1000000000u);
  ASSERT_EQ(c.pipelines.size(), 1u);
  const PipelineConfig& p = c.pipelines[0];
  EXPECT_TRUE(p.ordered);
  ASSERT_EQ(p.stages.size(), 2u);
  EXPECT_EQ(p.stages[0].name, "adults");
  EXPECT_EQ(p.stages[0].processor.type, "filter");
  EXPECT_EQ(p.stages[0].processor.params,
            json::parse(R"({"field":"/age","op":">=","value":18})"));
  EXPECT_EQ(p.stages[0].workers, 8u);
  EXPECT_EQ(p.stages[0].buffer, 0u);
  EXPECT_EQ(p.stages[1].name, "set_1");
  EXPECT_EQ(p.stages[1].processor.params,
            json::parse(R"({"fields":{"/a/b":[1,"x",null,true,1.5]}})"));
  EXPECT_EQ(p.aggregate.type, "group_by");
  EXPECT_EQ(p.aggregate.field, "/k");
  EXPECT_EQ(p.aggregate.op, "sum");
  EXPECT_EQ(p.aggregate.value, "/v");
}

TEST(LoadConfig, AcceptsJson) {
  const Config c = Load(R"({
    "server": {"listen": "[::1]:8081", "io_threads": 3},
    "pipelines": [
      {"name": "j", "ordered": false,
       "stages": [{"name": "s", "processor": {"type": "split", "field": "/t"},
                   "workers": 2}],
       "aggregate": {"type": "group_by", "field": "", "op": "count"}}
    ]
  })");
  EXPECT_EQ(c.server.listen, "[::1]:8081");
  EXPECT_EQ(c.server.io_threads, 3);
  ASSERT_EQ(c.pipelines.size(), 1u);
  EXPECT_EQ(c.pipelines[0].stages[0].processor.params,
            json::parse(R"({"field":"/t"})"));
  EXPECT_EQ(c.pipelines[0].aggregate.field, "");
}

TEST(LoadConfig, AcceptsTabIndentedJson) {
  const Config c = Load(
      "{\n\t\"pipelines\": [\n\t\t{\"name\": \"t\", \"stages\": "
      "[{\"processor\": {\"type\": \"passthrough\"}}]}\n\t]\n}\n");
  ASSERT_EQ(c.pipelines.size(), 1u);
  EXPECT_EQ(c.pipelines[0].name, "t");
}

TEST(LoadConfig, JsonErrorsNameTheirPathToo) {
  ExpectOneError(
      R"({"pipelines": [{"name": "j", "stages": [{"processor": "passthrough",
          "workers": 0}]}]})",
      "pipelines[0].stages[0].workers: must be >= 1");
}

TEST(LoadConfig, ProcessorAndAggregateShorthands) {
  const Config c = Load(R"(
pipelines:
  - name: p
    stages:
      - processor: passthrough
    aggregate: count
)");
  EXPECT_EQ(c.pipelines[0].stages[0].processor.type, "passthrough");
  EXPECT_EQ(c.pipelines[0].aggregate.type, "count");
}

TEST(LoadConfig, QuotedScalarsStayStringsAndPlainOnesAreTyped) {
  const Config c = Load(R"(
pipelines:
  - name: p
    stages:
      - processor:
          type: set
          fields:
            /a: "18"
            /b: 18
            /c: "true"
            /d: True
            /e: ~
            /f: 'null'
            /g: -2.5e1
            /h: 007
            /i: 18446744073709551615
            /j: .inf
            /k: |
              multi
              line
)");
  const json& f = c.pipelines[0].stages[0].processor.params["fields"];
  EXPECT_EQ(f["/a"], "18");
  EXPECT_EQ(f["/b"], 18);
  EXPECT_EQ(f["/c"], "true");
  EXPECT_EQ(f["/d"], true);
  EXPECT_TRUE(f["/e"].is_null());
  EXPECT_EQ(f["/f"], "null");
  EXPECT_EQ(f["/g"], -25.0);
  EXPECT_EQ(f["/h"], 7);
  EXPECT_TRUE(f["/i"].is_number_unsigned());
  EXPECT_EQ(f["/j"], ".inf");
  EXPECT_EQ(f["/k"], "multi\nline\n");
}

TEST(LoadConfig, FileLoadingAndUnreadableFiles) {
  const auto path =
      std::filesystem::temp_directory_path() / "sluice_config_test.yaml";
  {
    std::ofstream out(path);
    out << kPipelines;
  }
  auto ok = LoadConfigFile(path.string(), processors::ConfigChecks());
  EXPECT_TRUE(ok.ok());
  std::filesystem::remove(path);
  auto missing =
      LoadConfigFile("/nonexistent/sluice.yaml", processors::ConfigChecks());
  ASSERT_FALSE(missing.ok());
  const auto& errors = missing.error();
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(ToString(errors[0]),
            "/nonexistent/sluice.yaml: cannot open the file");
}

TEST(LoadConfig, ToStringFormat) {
  EXPECT_EQ(ToString({"a.b", "bad"}), "a.b: bad");
  EXPECT_EQ(ToString({"", "bad"}), "bad");
}

// --- document-level errors
// -------------------------------------------------------

TEST(ConfigErrors, EmptyDocument) {
  ExpectOneError("", "the config is empty");
  ExpectOneError("# only a comment\n", "the config is empty");
}

TEST(ConfigErrors, RootNotAMap) {
  ExpectOneError("- 1\n- 2\n", "the config must be a map");
  ExpectOneError("42", "the config must be a map");
}

TEST(ConfigErrors, YamlSyntaxErrorNamesLineAndColumn) {
  const auto errors = Errors("pipelines:\n  - name: [unclosed\n");
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_TRUE(errors[0].starts_with("line ")) << errors[0];
  EXPECT_NE(errors[0].find(", column "), std::string::npos) << errors[0];
}

TEST(ConfigErrors, MalformedJson) {
  const auto errors = Errors(R"({"pipelines": [}")");
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_TRUE(errors[0].starts_with("line 1, column ")) << errors[0];
}

TEST(ConfigErrors, MultipleDocuments) {
  ExpectOneError(std::string(kPipelines) + "---\n" + std::string(kPipelines),
                 "the config must be a single YAML document (found 2)");
}

// Found by tests/fuzz/config_fuzz: yaml-cpp's LoadAll never returned on
// these (a stray ',' where a document starts), allocating without bound.
TEST(ConfigErrors, StrayCommaIsASyntaxErrorNotAHang) {
  ExpectOneError(",", "line 1, column 1: unexpected character");
  ExpectOneError(std::string(kPipelines) + "...\n,\n",
                 "line 7, column 1: unexpected character");
  // A comma inside a flow collection or a scalar is still fine.
  ExpectOneError("server: { listen: \"a,b\" }\n" + std::string(kPipelines),
                 "server.listen: ");
}

// Found by tests/fuzz/config_fuzz: an alias inside its own anchor made
// the YAML → JSON walk recurse until the stack overflowed.
TEST(ConfigErrors, RecursiveAliasIsAnErrorNotAStackOverflow) {
  const auto errors = Errors(
      "pipelines:\n  - name: p\n    stages:\n"
      "      - processor: { type: set, fields: &a [*a] }\n");
  ASSERT_FALSE(errors.empty());
  EXPECT_TRUE(
      errors[0].starts_with("pipelines[0].stages[0].processor.fields[0][0][0]"))
      << Joined(errors);
  EXPECT_NE(errors[0].find("nested deeper than 64 levels"), std::string::npos)
      << Joined(errors);
}

// Aliases of aliases expand exponentially: 10^9 values here.
TEST(ConfigErrors, AliasExpansionIsBounded) {
  std::string yaml = "x0: &a0 [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]\n";
  for (int i = 1; i <= 8; ++i) {
    yaml += "x" + std::to_string(i) + ": &a" + std::to_string(i) + " [";
    for (int j = 0; j < 10; ++j) {
      yaml += (j == 0 ? "*a" : ", *a") + std::to_string(i - 1);
    }
    yaml += "]\n";
  }
  std::string config =
      "pipelines:\n  - name: p\n    stages:\n      - processor:\n"
      "          type: lua\n          script: \"function process(x) return "
      "x end\"\n          bomb:\n";
  std::istringstream lines(yaml);
  for (std::string line; std::getline(lines, line);) {
    config += "            " + line + "\n";
  }
  const auto errors = Errors(config);
  bool bounded = false;
  for (const auto& e : errors) {
    bounded = bounded ||
              e.find("expands to more than 100000 values") != std::string::npos;
  }
  EXPECT_TRUE(bounded) << Joined(errors);
}

TEST(ConfigErrors, UnknownTopLevelKey) {
  ExpectOneError(std::string(kPipelines) + "sever: {}\n",
                 "sever: unknown key (expected one of: server, jobs, "
                 "pipelines, cluster)");
}

TEST(ConfigErrors, DuplicateKey) {
  ExpectOneError(
      "server: {io_threads: 1, io_threads: 2}\n" + std::string(kPipelines),
      "server.io_threads: duplicate key");
}

TEST(ConfigErrors, SectionsMustBeMaps) {
  ExpectOneError(WithServer("  - 1\n"), "server: must be a map, not a list");
  ExpectOneError("jobs: 5\n" + std::string(kPipelines),
                 "jobs: must be a map, not an integer");
}

TEST(ConfigErrors, EmptySectionsTakeDefaults) {
  const Config c = Load("server:\njobs:\n" + std::string(kPipelines));
  EXPECT_EQ(c.server.io_threads, 2);
}

// --- server
// ------------------------------------------------------------------------

TEST(ServerErrors, Listen) {
  ExpectOneError(WithServer("  listen: 8080\n"),
                 "server.listen: must be a string, not an integer");
  ExpectOneError(WithServer("  listen: \"localhost\"\n"),
                 "server.listen: invalid address \"localhost\": missing port");
  ExpectOneError(WithServer("  listen: \"host:70000\"\n"),
                 "server.listen: invalid address \"host:70000\": port out of "
                 "range");
  ExpectOneError(WithServer("  listen: \"::1:80\"\n"),
                 "server.listen: invalid address \"::1:80\": an IPv6 address "
                 "must be in brackets");
}

TEST(ServerErrors, IoThreads) {
  ExpectOneError(WithServer("  io_threads: 0\n"),
                 "server.io_threads: must be >= 1");
  ExpectOneError(WithServer("  io_threads: 2000\n"),
                 "server.io_threads: must be <= 1024");
  ExpectOneError(WithServer("  io_threads: two\n"),
                 "server.io_threads: must be an integer, not a string");
  ExpectOneError(WithServer("  io_threads: \"2\"\n"),
                 "server.io_threads: must be an integer, not a string");
  ExpectOneError(WithServer("  io_threads: 1.5\n"),
                 "server.io_threads: must be an integer, not a number");
  ExpectOneError(WithServer("  io_threads:\n"),
                 "server.io_threads: must be an integer, not null");
  ExpectOneError(WithServer("  io_threads: 9223372036854775808\n"),
                 "server.io_threads: must be <= 1024");
}

TEST(ServerErrors, Sizes) {
  ExpectOneError(WithServer("  max_body_bytes: 0\n"),
                 "server.max_body_bytes: must be >= 1");
  ExpectOneError(WithServer("  max_body_bytes: 16 parsecs\n"),
                 "server.max_body_bytes: invalid size \"16 parsecs\": unknown "
                 "unit");
  ExpectOneError(WithServer("  max_body_bytes: [1]\n"),
                 "server.max_body_bytes: must be a size such as \"16MiB\"");
  ExpectOneError(WithServer("  max_header_bytes: 100\n"),
                 "server.max_header_bytes: must be >= 1024");
  ExpectOneError(WithServer("  max_connections: 0\n"),
                 "server.max_connections: must be >= 1");
}

TEST(ServerErrors, Durations) {
  ExpectOneError(WithServer("  shutdown_grace: 30\n"),
                 "server.shutdown_grace: invalid duration \"30\": missing "
                 "unit");
  ExpectOneError(WithServer("  shutdown_grace: soon\n"),
                 "server.shutdown_grace: invalid duration \"soon\"");
  ExpectOneError(WithServer("  idle_timeout: 0s\n"),
                 "server.idle_timeout: must be >= 1ms");
  ExpectOneError(WithServer("  idle_timeout: {a: 1}\n"),
                 "server.idle_timeout: must be a duration such as \"30s\", "
                 "not a map");
  EXPECT_EQ(Load(WithServer("  shutdown_grace: 0\n")).server.shutdown_grace,
            std::chrono::milliseconds{0});
}

TEST(ServerErrors, AuthAndTls) {
  ExpectOneError(WithServer("  auth: { tokens_env: \"1BAD\" }\n"),
                 "server.auth.tokens_env: must be an environment variable "
                 "name");
  ExpectOneError(WithServer("  auth: { tokens: x }\n"),
                 "server.auth.tokens: unknown key (expected one of: "
                 "tokens_env)");
  ExpectOneError(WithServer("  tls: { cert: a.pem }\n"),
                 "server.tls: cert and key must be set together");
  ExpectOneError(WithServer("  tls: { cert: a.pem, key: b.pem, ca: c }\n"),
                 "server.tls.ca: unknown key");
}

TEST(ServerErrors, UnknownKey) {
  ExpectOneError(WithServer("  port: 80\n"),
                 "server.port: unknown key (expected one of: listen, "
                 "io_threads, max_body_bytes, max_connections, "
                 "shutdown_grace, idle_timeout, max_header_bytes, auth, "
                 "tls)");
}

// --- jobs
// ----------------------------------------------------------------------------

TEST(JobsErrors, EachKey) {
  ExpectOneError(WithJobs("  max_pending_items: 0\n"),
                 "jobs.max_pending_items: must be >= 1");
  ExpectOneError(WithJobs("  max_pending_items: -5\n"),
                 "jobs.max_pending_items: must be >= 1");
  ExpectOneError(WithJobs("  retention: forever\n"),
                 "jobs.retention: invalid duration \"forever\"");
  ExpectOneError(WithJobs("  max_retained_bytes: lots\n"),
                 "jobs.max_retained_bytes: invalid size \"lots\"");
  ExpectOneError(WithJobs("  ttl: 1s\n"),
                 "jobs.ttl: unknown key (expected one of: max_pending_items, "
                 "retention, max_retained_bytes, max_job_result_bytes, "
                 "min_retention)");
  ExpectOneError(WithJobs("  max_retained_bytes: 0\n"),
                 "jobs.max_retained_bytes: must be >= 1048576");
  ExpectOneError(WithJobs("  max_job_result_bytes: 100\n"),
                 "jobs.max_job_result_bytes: must be >= 1024");
  ExpectOneError(WithJobs("  max_job_result_bytes: lots\n"),
                 "jobs.max_job_result_bytes: invalid size \"lots\"");
  ExpectOneError(WithJobs("  min_retention: soon\n"),
                 "jobs.min_retention: invalid duration \"soon\"");
}

TEST(JobsErrors, ResultBoundsMustNest) {
  ExpectOneError(
      WithJobs("  max_retained_bytes: 64MiB\n  max_job_result_bytes: 65MiB\n"),
      "jobs.max_job_result_bytes: must be <= jobs.max_retained_bytes "
      "(67108864)");
  ExpectOneError(WithJobs("  retention: 5s\n  min_retention: 6s\n"),
                 "jobs.min_retention: must be <= jobs.retention (5s)");
}

TEST(JobsDefaults, ResultBoundsFollowTheOtherKeys) {
  auto r =
      LoadConfigText(WithJobs("  max_retained_bytes: 64MiB\n  retention: 3s\n"),
                     processors::ConfigChecks());
  ASSERT_TRUE(r.ok());
  const Config& c = r.value();
  EXPECT_EQ(c.jobs.max_job_result_bytes, 16u << 20);
  EXPECT_EQ(c.jobs.min_retention, std::chrono::seconds{3});
  auto set = LoadConfigText(
      WithJobs("  max_retained_bytes: 64MiB\n  max_job_result_bytes: 64MiB\n"
               "  min_retention: 0s\n"),
      processors::ConfigChecks());
  ASSERT_TRUE(set.ok());
  EXPECT_EQ(set.value().jobs.max_job_result_bytes, 64u << 20);
  EXPECT_EQ(set.value().jobs.min_retention, std::chrono::milliseconds{0});
}

// --- pipelines
// -------------------------------------------------------------------------

TEST(PipelineErrors, PipelinesIsRequiredAndNonEmpty) {
  ExpectOneError("server: {}\n", "pipelines: is required");
  ExpectOneError("pipelines: []\n",
                 "pipelines: must be a non-empty list of pipelines");
  ExpectOneError("pipelines: {a: 1}\n",
                 "pipelines: must be a non-empty list of pipelines");
}

TEST(PipelineErrors, Names) {
  ExpectOneError("pipelines:\n  - stages: [{processor: passthrough}]\n",
                 "pipelines[0].name: is required");
  ExpectOneError(
      "pipelines:\n  - name: \"bad name\"\n    stages: [{processor: "
      "passthrough}]\n",
      "pipelines[0].name: must match [A-Za-z0-9_-]+");
  ExpectOneError(
      "pipelines:\n  - name: \"\"\n    stages: [{processor: passthrough}]\n",
      "pipelines[0].name: must match [A-Za-z0-9_-]+");
  ExpectOneError(
      "pipelines:\n  - name: 5\n    stages: [{processor: "
      "passthrough}]\n",
      "pipelines[0].name: must be a string, not an integer");
  EXPECT_EQ(Load("pipelines:\n  - name: a-B_9\n    stages: [{processor: "
                 "passthrough}]\n")
                .pipelines[0]
                .name,
            "a-B_9");
}

TEST(PipelineErrors, DuplicateNames) {
  ExpectOneError(R"(
pipelines:
  - { name: a, stages: [{processor: passthrough}] }
  - { name: b, stages: [{processor: passthrough}] }
  - { name: a, stages: [{processor: passthrough}] }
)",
                 "pipelines[2].name: duplicate pipeline name \"a\" (also "
                 "pipelines[0])");
}

TEST(PipelineErrors, PipelineMustBeAMap) {
  ExpectOneError("pipelines: [wordcount]\n",
                 "pipelines[0]: must be a map, not a string");
}

TEST(PipelineErrors, Ordered) {
  ExpectOneError(
      "pipelines:\n  - name: p\n    ordered: yes\n    stages: [{processor: "
      "passthrough}]\n",
      "pipelines[0].ordered: must be true or false, not a string");
}

TEST(PipelineErrors, Stages) {
  ExpectOneError("pipelines:\n  - name: p\n",
                 "pipelines[0].stages: is required");
  ExpectOneError("pipelines:\n  - name: p\n    stages: []\n",
                 "pipelines[0].stages: must be a non-empty list of stages");
  ExpectOneError("pipelines:\n  - name: p\n    stages: [passthrough]\n",
                 "pipelines[0].stages[0]: must be a map, not a string");
}

TEST(PipelineErrors, UnknownKey) {
  ExpectOneError(std::string(kPipelines) + "    workers: 4\n",
                 "pipelines[0].workers: unknown key (expected one of: name, "
                 "ordered, stages, aggregate)");
}

// --- stages
// ------------------------------------------------------------------------------

TEST(StageErrors, Workers) {
  ExpectOneError(WithStage("{ processor: passthrough, workers: 0 }"),
                 "pipelines[0].stages[0].workers: must be >= 1");
  ExpectOneError(WithStage("{ processor: passthrough, workers: 4097 }"),
                 "pipelines[0].stages[0].workers: must be <= 4096");
  ExpectOneError(WithStage("{ processor: passthrough, workers: many }"),
                 "pipelines[0].stages[0].workers: must be an integer, not a "
                 "string");
  EXPECT_EQ(Load(WithStage("{ processor: passthrough, workers: 4096 }"))
                .pipelines[0]
                .stages[0]
                .workers,
            4096u);
}

TEST(StageErrors, Buffer) {
  ExpectOneError(WithStage("{ processor: passthrough, buffer: -1 }"),
                 "pipelines[0].stages[0].buffer: must be >= 0");
  ExpectOneError(WithStage("{ processor: passthrough, buffer: 1000001 }"),
                 "pipelines[0].stages[0].buffer: must be <= 1000000");
  EXPECT_EQ(Load(WithStage("{ processor: passthrough, buffer: 1000000 }"))
                .pipelines[0]
                .stages[0]
                .buffer,
            1000000u);
}

TEST(StageErrors, ProcessorIsRequired) {
  ExpectOneError(WithStage("{ name: s }"),
                 "pipelines[0].stages[0].processor: is required");
  ExpectOneError(WithStage("{ processor: { field: /a } }"),
                 "pipelines[0].stages[0].processor.type: is required");
  ExpectOneError(WithStage("{ processor: { type: [x] } }"),
                 "pipelines[0].stages[0].processor.type: must be a string");
  ExpectOneError(WithStage("{ processor: 5 }"),
                 "pipelines[0].stages[0].processor: must be a map with a type");
}

TEST(StageErrors, ProcessorErrorsAreFullyQualified) {
  ExpectOneError(WithStage("{ processor: { type: nope } }"),
                 "pipelines[0].stages[0].processor.type: unknown processor "
                 "type 'nope'");
  ExpectOneError(WithStage("{ processor: { type: lua, script: x } }"),
                 "pipelines[0].stages[0].processor.script: line 1: ");
  ExpectOneError(WithStage("{ processor: { type: http, url: x } }"),
                 "pipelines[0].stages[0].processor.url: not a valid absolute "
                 "URL");
  ExpectOneError(WithStage("{ processor: { type: filter, field: age, op: "
                           "exists } }"),
                 "pipelines[0].stages[0].processor.field: a JSON pointer must "
                 "be");
  ExpectOneError(WithStage("{ processor: { type: set, fields: { a: 1 } } }"),
                 "pipelines[0].stages[0].processor.fields[\"a\"]: a JSON "
                 "pointer must be");
  ExpectOneError(WithStage("{ processor: { type: remove, fields: [/a, b] } }"),
                 "pipelines[0].stages[0].processor.fields[1]: a JSON pointer "
                 "must be");
  ExpectOneError(WithStage("{ processor: { type: delay, duration: 5 } }"),
                 "pipelines[0].stages[0].processor.duration: invalid duration");
  ExpectOneError(WithStage("{ processor: { type: split, field: /a, sep: x } }"),
                 "pipelines[0].stages[0].processor.sep: unknown key");
  ExpectOneError(WithStage("{ processor: { type: sha256, field: /a, field: /b, "
                           "target: /h } }"),
                 "pipelines[0].stages[0].processor.field: duplicate key");
}

TEST(StageErrors, NamesAndDefaults) {
  const Config c = Load(R"(
pipelines:
  - name: p
    stages:
      - processor: passthrough
      - processor: { type: filter, op: exists }
      - name: custom
        processor: passthrough
      - processor: passthrough
)");
  const auto& s = c.pipelines[0].stages;
  ASSERT_EQ(s.size(), 4u);
  EXPECT_EQ(s[0].name, "passthrough_0");
  EXPECT_EQ(s[1].name, "filter_1");
  EXPECT_EQ(s[2].name, "custom");
  EXPECT_EQ(s[3].name, "passthrough_3");
  ExpectOneError(WithStage("{ name: \"a b\", processor: passthrough }"),
                 "pipelines[0].stages[0].name: must match [A-Za-z0-9_-]+");
  ExpectOneError(R"(
pipelines:
  - name: p
    stages:
      - { name: x, processor: passthrough }
      - { name: y, processor: passthrough }
      - { name: x, processor: passthrough }
)",
                 "pipelines[0].stages[2].name: duplicate stage name \"x\" "
                 "(also pipelines[0].stages[0])");
  // An explicit name may collide with a default one: still an error.
  ExpectOneError(R"(
pipelines:
  - name: p
    stages:
      - processor: passthrough
      - { name: passthrough_0, processor: passthrough }
)",
                 "pipelines[0].stages[1].name: duplicate stage name");
  // The same stage name in two pipelines is fine.
  Load(R"(
pipelines:
  - { name: a, stages: [{name: s, processor: passthrough}] }
  - { name: b, stages: [{name: s, processor: passthrough}] }
)");
}

TEST(StageErrors, UnknownKey) {
  ExpectOneError(WithStage("{ processor: passthrough, worker: 2 }"),
                 "pipelines[0].stages[0].worker: unknown key (expected one "
                 "of: name, processor, workers, buffer, key)");
}

// --- aggregate
// ----------------------------------------------------------------------------

TEST(AggregateErrors, EachRule) {
  ExpectOneError(WithAggregate("{ type: median }"),
                 "pipelines[0].aggregate.type: unknown aggregate type "
                 "'median'");
  ExpectOneError(WithAggregate("{ field: /a }"),
                 "pipelines[0].aggregate.type: is required");
  ExpectOneError(WithAggregate("{ type: sum, field: a }"),
                 "pipelines[0].aggregate.field: a JSON pointer must be");
  ExpectOneError(WithAggregate("{ type: count, field: /a }"),
                 "pipelines[0].aggregate.field: is not used by aggregate type "
                 "'count'");
  ExpectOneError(WithAggregate("{ type: group_by, field: /k, op: avg }"),
                 "pipelines[0].aggregate.op: unknown group_by op 'avg'");
  ExpectOneError(WithAggregate("{ type: group_by, field: /k, op: sum }"),
                 "pipelines[0].aggregate.value: is required with op sum");
  ExpectOneError(WithAggregate("{ type: sum, field: 5 }"),
                 "pipelines[0].aggregate.field: must be a string, not an "
                 "integer");
  ExpectOneError(WithAggregate("{ type: count, by: x }"),
                 "pipelines[0].aggregate.by: unknown key (expected one of: "
                 "type, field, op, value, window)");
  ExpectOneError(WithAggregate("[count]"),
                 "pipelines[0].aggregate: must be a map, not a list");
  ExpectOneError(WithAggregate("median"),
                 "pipelines[0].aggregate.type: unknown aggregate type");
}

TEST(AggregateErrors, EmptyAggregateIsCollect) {
  EXPECT_EQ(Load(WithAggregate("")).pipelines[0].aggregate.type, "collect");
}

// --- cluster
// ----------------------------------------------------------------------------

std::string WithCluster(std::string_view nats_body) {
  return std::string(kPipelines) + "cluster:\n  nats:\n" +
         std::string(nats_body);
}

// A keyed stage in pipelines[1] and windows in pipelines[0] and [2]: what
// cluster mode refuses, after the `cluster` block given.
std::string KeyAndWindows(std::string_view cluster) {
  return R"(
pipelines:
  - name: a
    stages: [{processor: passthrough}]
    aggregate: { type: count, window: { items: 10 } }
  - name: b
    stages:
      - processor: passthrough
      - { processor: passthrough, key: /user }
  - name: c
    stages: [{processor: passthrough}]
    aggregate: { type: count, window: { every: 1s } }
)" + std::string(cluster);
}

constexpr std::string_view kKeyRefusal =
    "per-key ordering is not available in cluster mode (items of one key may "
    "run on different replicas at once); remove key or run without cluster";
constexpr std::string_view kWindowRefusal =
    "windows are not available in cluster mode yet; remove window or run "
    "without cluster";

TEST(ConfigCluster, DefaultsAreOff) {
  const Config c = Load(kPipelines);
  EXPECT_FALSE(c.cluster.enabled());
  EXPECT_EQ(c.cluster.nats.url, "");
  EXPECT_EQ(c.cluster.nats.prefix, "sluice");
  EXPECT_EQ(c.cluster.nats.replicas, 1);
  EXPECT_EQ(c.cluster.nats.ack_wait, std::chrono::seconds{30});
}

TEST(ConfigCluster, ReadsEveryKey) {
  const Config c = Load(WithCluster(
      "    url: \"nats://10.0.0.1:4222,tls://u:p@nats-2:4223,"
      "nats://[::1]:4222\"\n    prefix: sl-uice_2\n    replicas: 3\n"
      "    ack_wait: 2s\n"));
  EXPECT_TRUE(c.cluster.enabled());
  EXPECT_EQ(c.cluster.nats.url,
            "nats://10.0.0.1:4222,tls://u:p@nats-2:4223,nats://[::1]:4222");
  EXPECT_EQ(c.cluster.nats.prefix, "sl-uice_2");
  EXPECT_EQ(c.cluster.nats.replicas, 3);
  EXPECT_EQ(c.cluster.nats.ack_wait, std::chrono::seconds{2});
}

TEST(ConfigCluster, EmptyOrNullUrlIsOff) {
  for (std::string_view body :
       {"    url: \"\"\n", "    url:\n", "    prefix: x\n", ""}) {
    const Config c = Load(WithCluster(body));
    EXPECT_FALSE(c.cluster.enabled()) << body;
  }
  EXPECT_FALSE(Load(std::string(kPipelines) + "cluster:\n").cluster.enabled());
}

TEST(ConfigCluster, UrlErrors) {
  const std::string list =
      " (a comma list such as \"nats://10.0.0.1:4222,nats://10.0.0.2:4222\")";
  ExpectOneError(WithCluster("    url: \"http://h:4222\"\n"),
                 "cluster.nats.url: \"http://h:4222\" must start with nats:// "
                 "or tls://" +
                     list);
  ExpectOneError(WithCluster("    url: \"nats://h\"\n"),
                 "cluster.nats.url: \"nats://h\" must be nats://host:port or "
                 "tls://host:port (a port 1..65535)" +
                     list);
  ExpectOneError(WithCluster("    url: \"nats://h:0\"\n"),
                 "cluster.nats.url: \"nats://h:0\" must be nats://host:port");
  ExpectOneError(WithCluster("    url: \"nats://h:4222/x\"\n"),
                 "cluster.nats.url: \"nats://h:4222/x\" must be");
  ExpectOneError(WithCluster("    url: \"nats://a:1,,nats://b:2\"\n"),
                 "cluster.nats.url: \"\" must start with nats://");
  ExpectOneError(WithCluster("    url: \"nats://a:1, nats://b:2\"\n"),
                 "cluster.nats.url: \" nats://b:2\" must start with nats://");
  ExpectOneError(WithCluster("    url: 4222\n"),
                 "cluster.nats.url: must be a string, not an integer");
}

// The url lands in `sluice check` output and CI logs: no credentials.
TEST(ConfigCluster, UrlErrorsMaskCredentials) {
  const auto errors = Errors(WithCluster("    url: \"nats://me:s3cret@h\"\n"));
  ASSERT_EQ(errors.size(), 1u) << Joined(errors);
  EXPECT_EQ(errors[0].find("s3cret"), std::string::npos) << errors[0];
  EXPECT_TRUE(errors[0].starts_with("cluster.nats.url: \"nats://***@h\""))
      << errors[0];
}

TEST(ConfigCluster, OtherKeyErrors) {
  ExpectOneError(WithCluster("    prefix: a.b\n"),
                 "cluster.nats.prefix: must match [A-Za-z0-9_-]+");
  ExpectOneError(WithCluster("    prefix: \"\"\n"),
                 "cluster.nats.prefix: must match [A-Za-z0-9_-]+");
  ExpectOneError(WithCluster("    replicas: 0\n"),
                 "cluster.nats.replicas: must be >= 1");
  ExpectOneError(WithCluster("    replicas: 6\n"),
                 "cluster.nats.replicas: must be <= 5");
  ExpectOneError(WithCluster("    replicas: \"3\"\n"),
                 "cluster.nats.replicas: must be an integer, not a string");
  ExpectOneError(WithCluster("    ack_wait: 999ms\n"),
                 "cluster.nats.ack_wait: must be >= 1s");
  ExpectOneError(WithCluster("    ack_wait: 30\n"),
                 "cluster.nats.ack_wait: invalid duration \"30\"");
  ExpectOneError(WithCluster("    urls: nats://h:4222\n"),
                 "cluster.nats.urls: unknown key (expected one of: url, "
                 "prefix, replicas, ack_wait)");
  ExpectOneError(std::string(kPipelines) + "cluster: { redis: {} }\n",
                 "cluster.redis: unknown key (expected one of: nats)");
  ExpectOneError(std::string(kPipelines) + "cluster: 5\n",
                 "cluster: must be a map, not an integer");
  ExpectOneError(std::string(kPipelines) + "cluster: { nats: [] }\n",
                 "cluster.nats: must be a map, not a list");
}

TEST(ConfigCluster, KeyAndWindowsAreFineWithoutCluster) {
  const Config c = Load(KeyAndWindows("cluster:\n  nats:\n    url: \"\"\n"));
  EXPECT_FALSE(c.cluster.enabled());
  EXPECT_TRUE(c.pipelines[1].stages[1].keyed);
  EXPECT_TRUE(c.pipelines[0].aggregate.window.enabled());
}

TEST(ConfigCluster, RefusesKeyedStagesAndWindowsWhenEnabled) {
  const auto errors = Errors(
      KeyAndWindows("cluster:\n  nats:\n    url: \"nats://127.0.0.1:4222\"\n"));
  const std::vector<std::string> expected = {
      "pipelines[0].aggregate.window: " + std::string(kWindowRefusal),
      "pipelines[1].stages[1].key: " + std::string(kKeyRefusal),
      "pipelines[2].aggregate.window: " + std::string(kWindowRefusal),
  };
  EXPECT_EQ(errors, expected) << Joined(errors);
}

// An invalid url still means "cluster wanted": the refusals come with its
// error, so one `sluice check` shows everything to fix.
TEST(ConfigCluster, InvalidUrlStillRefusesKeyedStages) {
  const auto errors =
      Errors(KeyAndWindows("cluster:\n  nats:\n    url: \"nats://h\"\n"));
  ASSERT_EQ(errors.size(), 4u) << Joined(errors);
  EXPECT_TRUE(errors[0].starts_with("cluster.nats.url: \"nats://h\""))
      << errors[0];
  EXPECT_EQ(errors[2],
            "pipelines[1].stages[1].key: " + std::string(kKeyRefusal));
}

TEST(ConfigCluster, EnvironmentTurnsItOn) {
  const std::string text = KeyAndWindows(
      "cluster:\n  nats:\n    url: \"${SLUICE_CFG_TEST_NATS:-}\"\n");
  unsetenv("SLUICE_CFG_TEST_NATS");
  EXPECT_FALSE(Load(text).cluster.enabled());
  ASSERT_EQ(setenv("SLUICE_CFG_TEST_NATS", "", 1), 0);
  EXPECT_FALSE(Load(text).cluster.enabled());
  ASSERT_EQ(setenv("SLUICE_CFG_TEST_NATS", "nats://n1:4222,nats://n2:4222", 1),
            0);
  const auto errors = Errors(text);
  EXPECT_EQ(errors.size(), 3u) << Joined(errors);
  const Config c = Load(WithCluster("    url: ${SLUICE_CFG_TEST_NATS}\n"));
  EXPECT_EQ(c.cluster.nats.url, "nats://n1:4222,nats://n2:4222");
  unsetenv("SLUICE_CFG_TEST_NATS");
}

TEST(ConfigCluster, UnquotedEmptyReferenceIsOff) {
  unsetenv("SLUICE_CFG_TEST_NATS");
  const Config c = Load(WithCluster("    url: ${SLUICE_CFG_TEST_NATS:-}\n"));
  EXPECT_FALSE(c.cluster.enabled());
}

TEST(Summary, DescribesClusterModeWithoutCredentials) {
  EXPECT_NE(Summary(Load(kPipelines)).find("cluster: off\n"),
            std::string::npos);
  const std::string s = Summary(
      Load(WithCluster("    url: \"nats://me:s3cret@h1:4222,nats://h2:4222\"\n"
                       "    replicas: 3\n    ack_wait: 2s\n")));
  EXPECT_EQ(s.find("s3cret"), std::string::npos) << s;
  EXPECT_NE(s.find("cluster: on, nats \"nats://***@h1:4222,nats://h2:4222\", "
                   "prefix sluice, replicas 3, ack_wait 2s\n"),
            std::string::npos)
      << s;
}

// --- every error is collected
// ------------------------------------------------------------

TEST(ConfigErrors, CollectsEveryErrorInDocumentOrder) {
  const auto errors = Errors(R"(
server:
  io_threads: 0
  listen: nowhere
  bogus: 1
jobs:
  retention: 5
pipelines:
  - name: ok
    stages:
      - processor: { type: filter, op: "~" }
        workers: 0
      - processor: { type: lua }
    aggregate: { type: nope }
  - name: ok
    stages: []
)");
  const std::vector<std::string> expected_prefixes = {
      "server.io_threads: must be >= 1",
      "server.listen: invalid address",
      "server.bogus: unknown key",
      "jobs.retention: invalid duration",
      "pipelines[0].stages[0].processor.op: unknown op '~'",
      "pipelines[0].stages[0].workers: must be >= 1",
      "pipelines[0].stages[1].processor.script: is required",
      "pipelines[0].aggregate.type: unknown aggregate type 'nope'",
      "pipelines[1].stages: must be a non-empty list",
      "pipelines[1].name: duplicate pipeline name \"ok\"",
  };
  ASSERT_EQ(errors.size(), expected_prefixes.size()) << Joined(errors);
  for (std::size_t i = 0; i < errors.size(); ++i) {
    EXPECT_TRUE(errors[i].starts_with(expected_prefixes[i]))
        << i << ": " << errors[i];
  }
}

// --- environment substitution
// ----------------------------------------------------------------

TEST(ConfigEnv, SubstitutesWithDefaults) {
  ASSERT_EQ(setenv("SLUICE_CFG_TEST_WORKERS", "7", 1), 0);
  unsetenv("SLUICE_CFG_TEST_UNSET");
  const Config c = Load(R"(
server:
  listen: "${SLUICE_CFG_TEST_UNSET:-127.0.0.1:7000}"
pipelines:
  - name: p
    stages:
      - processor: passthrough
        workers: ${SLUICE_CFG_TEST_WORKERS}
        buffer: ${SLUICE_CFG_TEST_UNSET:-9}
      - processor: { type: set, fields: { /price: "$$5" } }
)");
  EXPECT_EQ(c.server.listen, "127.0.0.1:7000");
  EXPECT_EQ(c.pipelines[0].stages[0].workers, 7u);
  EXPECT_EQ(c.pipelines[0].stages[0].buffer, 9u);
  EXPECT_EQ(c.pipelines[0].stages[1].processor.params["fields"]["/price"],
            "$5");
  unsetenv("SLUICE_CFG_TEST_WORKERS");
}

TEST(ConfigEnv, SubstitutedValuesAreValidatedLikeAnyOther) {
  ASSERT_EQ(setenv("SLUICE_CFG_TEST_WORKERS", "0", 1), 0);
  ExpectOneError(WithStage("{ processor: passthrough, workers: "
                           "${SLUICE_CFG_TEST_WORKERS} }"),
                 "pipelines[0].stages[0].workers: must be >= 1");
  unsetenv("SLUICE_CFG_TEST_WORKERS");
}

TEST(ConfigEnv, UnsetVariableWithoutDefaultIsAnError) {
  unsetenv("SLUICE_CFG_TEST_UNSET");
  ExpectOneError("pipelines:\n  - name: ${SLUICE_CFG_TEST_UNSET}\n",
                 "line 2, column 11: environment variable "
                 "SLUICE_CFG_TEST_UNSET is not set");
  ExpectOneError("a: ${unterminated\n", "line 1, column 4: unterminated ${");
}

// --- Summary
// ------------------------------------------------------------------------------------

TEST(Summary, DescribesServerPipelinesAndStages) {
  const std::string s = Summary(Load(R"(
server: { listen: "127.0.0.1:1", auth: { tokens_env: T } }
pipelines:
  - name: words
    ordered: true
    stages:
      - { name: sp, processor: { type: split, field: /text }, workers: 3 }
    aggregate: { type: group_by, field: "", op: count }
)"));
  EXPECT_NE(s.find("listen 127.0.0.1:1"), std::string::npos) << s;
  EXPECT_NE(s.find("auth on (tokens in $T)"), std::string::npos) << s;
  EXPECT_NE(s.find("shutdown_grace 30s"), std::string::npos) << s;
  EXPECT_NE(s.find("1 pipeline:"), std::string::npos) << s;
  EXPECT_NE(s.find("words (ordered, aggregate group_by field \"\" op count)"),
            std::string::npos)
      << s;
  EXPECT_NE(s.find("0. sp: split {\"field\":\"/text\"} (workers 3, buffer "
                   "256)"),
            std::string::npos)
      << s;
  EXPECT_EQ(s.back(), '\n');
}

// Found by tests/fuzz/config_fuzz: YAML passes bytes that are not UTF-8
// through, and a strict dump() of them threw out of Summary() (so `sluice
// check` died on an uncaught exception) and turned a key's error into
// "cannot load the config: [json.exception.type_error.316] ...".
TEST(Summary, NeverThrowsOnTextThatIsNotUtf8) {
  const std::string bad = std::string("x\xAA") + "y";
  const Config c = Load(
      "pipelines:\n  - name: p\n    stages:\n"
      "      - processor: { type: set, fields: { /a: " +
      bad + " } }\n        key: /" + bad + "\n");
  ASSERT_EQ(c.pipelines.size(), 1u);
  std::string s;
  ASSERT_NO_THROW(s = Summary(c));
  // Each invalid byte prints as U+FFFD.
  EXPECT_NE(s.find("{\"fields\":{\"/a\":\"x\xEF\xBF\xBDy\"}}"),
            std::string::npos)
      << s;
  EXPECT_NE(s.find("key \"/x\xEF\xBF\xBDy\""), std::string::npos) << s;
}

// `sluice check` output lands in CI logs: header values are secrets.
TEST(Summary, MasksHttpHeaderValues) {
  const std::string s = Summary(Load(R"(
pipelines:
  - name: p
    stages:
      - processor:
          type: http
          url: http://127.0.0.1:9/x
          headers: { Authorization: "Bearer s3cret", X-Api-Key: k3y }
)"));
  EXPECT_EQ(s.find("s3cret"), std::string::npos) << s;
  EXPECT_EQ(s.find("k3y"), std::string::npos) << s;
  EXPECT_NE(s.find(R"("Authorization":"***")"), std::string::npos) << s;
  EXPECT_NE(s.find(R"("X-Api-Key":"***")"), std::string::npos) << s;
  EXPECT_NE(s.find("http://127.0.0.1:9/x"), std::string::npos) << s;
}

TEST(LoadConfig, KeysThatAreNotUtf8GetTheirOwnError) {
  ExpectOneError("server:\n  \"k\xAA\": 1\n" + std::string(kPipelines),
                 "server[\"k\xEF\xBF\xBD\"]: unknown key");
}

// --- shipped configs
// ------------------------------------------------------------------------------

const std::filesystem::path kSourceDir = SLUICE_SOURCE_DIR;

TEST(ShippedConfigs, DefaultYamlLoadsCleanly) {
  unsetenv("SLUICE_LISTEN");
  unsetenv("SLUICE_NATS_URL");
  auto r = LoadConfigFile((kSourceDir / "config/default.yaml").string(),
                          processors::ConfigChecks());
  if (!r.ok()) {
    for (const auto& e : r.error()) ADD_FAILURE() << ToString(e);
    return;
  }
  const Config& c = r.value();
  EXPECT_EQ(c.server.listen, "0.0.0.0:8080");
  std::vector<std::string> names;
  for (const auto& p : c.pipelines) names.push_back(p.name);
  EXPECT_NE(std::find(names.begin(), names.end(), "wordcount"), names.end());
  EXPECT_NE(std::find(names.begin(), names.end(), "enrich"), names.end());
  EXPECT_FALSE(c.cluster.enabled());
}

// SLUICE_NATS_URL turns cluster mode on, and the default pipelines are
// fit for it (no key, no window).
TEST(ShippedConfigs, DefaultYamlClusterFollowsSluiceNatsUrl) {
  ASSERT_EQ(setenv("SLUICE_NATS_URL", "nats://127.0.0.1:4222", 1), 0);
  auto r = LoadConfigFile((kSourceDir / "config/default.yaml").string(),
                          processors::ConfigChecks());
  unsetenv("SLUICE_NATS_URL");
  if (!r.ok()) {
    for (const auto& e : r.error()) ADD_FAILURE() << ToString(e);
    return;
  }
  const NatsConfig& n = r.value().cluster.nats;
  EXPECT_EQ(n.url, "nats://127.0.0.1:4222");
  EXPECT_EQ(n.prefix, "sluice");
  EXPECT_EQ(n.replicas, 1);
  EXPECT_EQ(n.ack_wait, std::chrono::seconds{30});
}

TEST(ShippedConfigs, DefaultYamlListenIsOverridable) {
  ASSERT_EQ(setenv("SLUICE_LISTEN", "127.0.0.1:9999", 1), 0);
  auto r = LoadConfigFile((kSourceDir / "config/default.yaml").string(),
                          processors::ConfigChecks());
  unsetenv("SLUICE_LISTEN");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r.value().server.listen, "127.0.0.1:9999");
}

TEST(ShippedConfigs, EmbeddedDefaultMatchesTheFile) {
  std::ifstream in(kSourceDir / "config/default.yaml", std::ios::binary);
  const std::string file((std::istreambuf_iterator<char>(in)),
                         std::istreambuf_iterator<char>());
  EXPECT_EQ(DefaultConfigText(), file);
}

TEST(ShippedConfigs, EveryExampleLoadsCleanly) {
  int count = 0;
  for (const auto& entry :
       std::filesystem::directory_iterator(kSourceDir / "config/examples")) {
    if (entry.path().extension() != ".yaml" &&
        entry.path().extension() != ".json") {
      continue;
    }
    ++count;
    auto r = LoadConfigFile(entry.path().string(), processors::ConfigChecks());
    if (!r.ok()) {
      for (const auto& e : r.error()) {
        ADD_FAILURE() << entry.path().filename() << ": " << ToString(e);
      }
    }
  }
  EXPECT_GE(count, 3);
}

// --- shipped pipelines behave as their comments say
// ------------------------------------

// Runs `items` through the named pipeline sequentially (a stand-in for the
// engine: every stage in order, split parts continuing on their own, errors
// and filtered items dropped) and returns the aggregate.
json RunPipeline(const std::filesystem::path& file, std::string_view name,
                 std::string_view items) {
  auto r = LoadConfigFile(file.string(), processors::ConfigChecks());
  if (!r.ok()) {
    ADD_FAILURE() << file << " does not load";
    return nullptr;
  }
  for (const PipelineConfig& p : r.value().pipelines) {
    if (p.name != name) continue;
    std::vector<json> current = json::parse(items).get<std::vector<json>>();
    for (const StageConfig& stage : p.stages) {
      auto proc = processors::MakeProcessor(stage.processor).value();
      std::vector<json> next;
      for (json& item : current) {
        processors::Outcome o = proc->Process(std::move(item));
        for (json& v : o.values) next.push_back(std::move(v));
      }
      current = std::move(next);
    }
    auto agg = processors::MakeAggregator(p.aggregate);
    for (const json& v : current) agg->Add(v);
    return agg->Result();
  }
  ADD_FAILURE() << "no pipeline " << name << " in " << file;
  return nullptr;
}

TEST(ShippedPipelines, DefaultWordcount) {
  EXPECT_EQ(RunPipeline(kSourceDir / "config/default.yaml", "wordcount",
                        R"([{"text":"a b a"}])"),
            json::parse(R"({"a":2,"b":1})"));
  EXPECT_EQ(RunPipeline(kSourceDir / "config/default.yaml", "wordcount",
                        R"([{"text":"the cat"},{"text":"  the\tdog "}])"),
            json::parse(R"({"the":2,"cat":1,"dog":1})"));
}

TEST(ShippedPipelines, DefaultEnrichCountsAdults) {
  // Two adults with e-mail pass; the minor is filtered.
  EXPECT_EQ(RunPipeline(kSourceDir / "config/default.yaml", "enrich",
                        R"([{"age":30,"email":"a@x"},{"age":12,"email":"b@x"},
                            {"age":18,"email":"c@x","password":"p"}])"),
            2);
}

TEST(ShippedPipelines, Examples) {
  const auto dir = kSourceDir / "config/examples";
  EXPECT_EQ(
      RunPipeline(dir / "wordcount.yaml", "wordcount", R"([{"text":"a b a"}])"),
      json::parse(R"({"a":2,"b":1})"));
  EXPECT_EQ(
      RunPipeline(dir / "wordcount.yaml", "csvcount", R"([{"line":"x,y,,x"}])"),
      json::parse(R"({"x":2,"y":1})"));
  EXPECT_EQ(RunPipeline(dir / "orders.yaml", "orders",
                        R"([{"customer":"ann","amount":5,"status":"paid"},
                            {"customer":"bob","amount":3,"status":"open"},
                            {"customer":"ann","amount":2.5,"status":"paid"}])"),
            json::parse(R"({"ann":7.5})"));
  EXPECT_EQ(RunPipeline(dir / "orders.yaml", "revenue",
                        R"([{"amount":5},{"amount":3}])"),
            8);
  EXPECT_EQ(RunPipeline(dir / "orders.yaml", "largest",
                        R"([{"amount":5},{"amount":3}])"),
            5);
  EXPECT_EQ(RunPipeline(dir / "minimal.json", "echo", "[1,2,3]"), 3);
  EXPECT_EQ(RunPipeline(dir / "reference.yaml", "reference",
                        R"([{"age":20,"email":"e","password":"x"}])"),
            json::parse(R"({"demo":1})"));
}

}  // namespace
}  // namespace sluice::config
