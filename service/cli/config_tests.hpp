// Defines sluice::cli::RunConfigTests, the `sluice test FILE...` command
// (DESIGN.md §3.8): config tests that feed items to a pipeline through the
// real engine, with no server, and compare the job's results, aggregate,
// counts and state with what the test file expects, as Benthos's and
// Vector's `test` commands do. The format: test_file.hpp and
// docs/config-tests.md.
#ifndef SLUICE_SERVICE_CLI_CONFIG_TESTS_HPP_
#define SLUICE_SERVICE_CLI_CONFIG_TESTS_HPP_

#include <iosfwd>
#include <string>
#include <vector>

namespace sluice::cli {

// Runs every case of every test file in `files`, in order, each file on an
// engine::Engine of its own built from the file's config. Prints on `out`
// one line per case, "PASS <file>: <case>" or "FAIL <file>: <case>"
// followed by the indented diff (expected vs got), then a summary line.
// Returns 2 when `files` is empty or a file cannot be read or is not a
// valid test file (its errors go to `err` as "<file>: <key path>:
// <message>"); else 1 when a case failed or a file's config is invalid
// (its errors print as `sluice check` prints them); else 0. Every file runs
// whatever the others gave. Thread-compatible; blocks while cases run (a
// case waits at most its `timeout`).
int RunConfigTests(const std::vector<std::string>& files, std::ostream& out,
                   std::ostream& err);

}  // namespace sluice::cli

#endif  // SLUICE_SERVICE_CLI_CONFIG_TESTS_HPP_
