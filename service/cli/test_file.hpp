// Defines the file format of `sluice test` (docs/config-tests.md):
// TestFile and TestCase, what one test file states, and ReadTestFile /
// ParseTestFile, which read one and check every key.
#ifndef SLUICE_SERVICE_CLI_TEST_FILE_HPP_
#define SLUICE_SERVICE_CLI_TEST_FILE_HPP_

#include <chrono>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "service/config/config.hpp"
#include "service/util/result.hpp"

namespace sluice::cli {

// One case (an entry of `tests`): a job and what it must give. Only what
// is set is checked, except `state`, always. Thread-compatible (plain
// value).
struct TestCase {
  std::string name;                   // `name`; default "tests[<i>]"
  std::string pipeline;               // the case's `pipeline`, or the file's
  std::vector<nlohmann::json> input;  // the job's items
  std::optional<bool> ordered;        // overrides the pipeline's `ordered`
  std::optional<nlohmann::json> results;   // every record, no more (a list)
  std::optional<nlohmann::json> contains;  // records to find (a list)
  std::optional<nlohmann::json> aggregate;
  // `items`: the counts to check, a subset of in/out/filtered/errors/
  // cancelled (an object; empty: none).
  nlohmann::json items = nlohmann::json::object();
  std::string state = "done";  // the job's final state
  std::chrono::milliseconds timeout{60000};
};

// Where a file's config comes from. Thread-compatible (plain value).
struct ConfigSource {
  // Read the config from this file (`config: PATH`, made relative to the
  // test file's folder); empty: `text` is the config.
  std::string file;
  // The inline config (`config: {...}`, as JSON text) or the built-in
  // default (no `config` key).
  std::string text;
  // How the output names it: the path as written, "inline" or "built-in
  // default".
  std::string label;
};

// One test file. Thread-compatible (plain value).
struct TestFile {
  std::string path;  // as given on the command line
  ConfigSource config;
  std::vector<TestCase> cases;  // at least one
};

// Parses `text`, the contents of the test file at `path` (for resolving a
// relative `config`), and checks every key: unknown keys, wrong types,
// a case without a pipeline or without anything to check. Returns the
// file, or every error found with its key path ("tests[1].items.out: must
// be an integer >= 0"; "line L, column C" for YAML syntax). Never throws
// except std::bad_alloc.
Result<TestFile, std::vector<config::ConfigError>> ParseTestFile(
    std::string_view text, const std::string& path);

// Reads the file at `path` and calls ParseTestFile. An unreadable file is
// one error whose path is empty. Never throws except std::bad_alloc.
Result<TestFile, std::vector<config::ConfigError>> ReadTestFile(
    const std::string& path);

}  // namespace sluice::cli

#endif  // SLUICE_SERVICE_CLI_TEST_FILE_HPP_
