// sluice::cli: the `sluice` command line — serve, check, --help, --version.
#ifndef SLUICE_SERVICE_CLI_CLI_HPP_
#define SLUICE_SERVICE_CLI_CLI_HPP_

#include <iosfwd>
#include <string>
#include <vector>

namespace sluice::cli {

// Runs the command line `args` (without the program name):
//   serve [--config FILE] [--listen ADDR]
//       Loads FILE (default: the embedded config/default.yaml), starts the
//       server, prints "listening on HOST:PORT" on `out` once bound, and
//       runs until SIGTERM/SIGINT has drained it. Returns 0 after a drain;
//       1 when the config is invalid or the address cannot be bound (the
//       errors go to `err`).
//   check FILE
//       Validates FILE without starting anything: prints config::Summary on
//       `out` and returns 0, or prints each error as "path: message", one
//       per line, on `err` and returns 1.
//   test FILE...
//       Runs config tests (RunConfigTests, config_tests.hpp): 0 when every
//       case passed, 1 when one failed, 2 on an unreadable or invalid file.
//   --help | -h | help      usage on `out`, 0
//   --version               "sluice <version>" on `out`, 0
// Anything else prints the usage on `err` and returns 2.
// Thread-compatible; `serve` installs signal handlers for its duration.
int Run(const std::vector<std::string>& args, std::ostream& out,
        std::ostream& err);

// main(): Run() with argv[1..] and std::cout / std::cerr.
int Main(int argc, char** argv);

}  // namespace sluice::cli

#endif  // SLUICE_SERVICE_CLI_CLI_HPP_
