// Defines what the client commands share (internal to the cli room): their
// argument parser, the server they talk to, and the commands themselves.
#ifndef SLUICE_SERVICE_CLI_CLIENT_ARGS_HPP_
#define SLUICE_SERVICE_CLI_CLIENT_ARGS_HPP_

#include <initializer_list>
#include <iosfwd>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "service/client/client.hpp"
#include "service/util/result.hpp"

namespace sluice::cli::client_cmd {

// A client command's arguments. Thread-compatible (plain value).
struct Args {
  std::string command;                        // args[0]
  std::map<std::string, std::string> values;  // "--server" -> "http://..."
  std::set<std::string> flags;                // "--follow"
  std::vector<std::string> positional;        // "-" counts as positional

  std::optional<std::string> Value(const std::string& name) const;
  bool Flag(const std::string& name) const { return flags.count(name) > 0; }
};

// Parses args[1..]: `value_options` take a value (`--x V` or `--x=V`),
// `flag_options` none; --server, --token and --timeout are always
// allowed. Fails
// (code "usage") on an unknown option or a missing value.
Result<Args> Parse(const std::vector<std::string>& args,
                   std::initializer_list<std::string_view> value_options,
                   std::initializer_list<std::string_view> flag_options);

// The server of --server / $SLUICE_SERVER / http://127.0.0.1:8080 with the
// token of --token / $SLUICE_TOKEN and the timeout of --timeout (a
// duration, default 30s). Fails (code "usage") on a bad URL or timeout.
Result<client::Server> ServerOf(const Args& args);

// Prints "sluice <command>: <message>" on `err`; returns the exit code for
// `error`: 2 for code "usage", else 1.
int Report(const Args& args, const Error& error, std::ostream& err);

// The commands (docs/cli.md); each returns the process's exit code.
int Submit(const std::vector<std::string>& argv, std::ostream& out,
           std::ostream& err);
int Top(const std::vector<std::string>& argv, std::ostream& out,
        std::ostream& err);

}  // namespace sluice::cli::client_cmd

#endif  // SLUICE_SERVICE_CLI_CLIENT_ARGS_HPP_
