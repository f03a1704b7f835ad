// Defines the `sluice` client commands, which talk to a running server:
// submit, jobs, status, results, cancel and top (docs/cli.md).
#ifndef SLUICE_SERVICE_CLI_CLIENT_COMMANDS_HPP_
#define SLUICE_SERVICE_CLI_CLIENT_COMMANDS_HPP_

#include <iosfwd>
#include <string>
#include <string_view>
#include <vector>

namespace sluice::cli {

// True for the commands RunClientCommand runs. Pure.
bool IsClientCommand(std::string_view command);

// Runs `args` (args[0] is one of the client commands) against the server of
// --server (else $SLUICE_SERVER, else http://127.0.0.1:8080) with the token
// of --token (else $SLUICE_TOKEN). Writes the command's output on `out` and
// messages on `err` (a progress bar or a redrawn view only when they are
// std::cout / std::cerr and a terminal). Returns 0 on success, 1 when the
// server refuses, the connection fails or a submitted job does not end
// `done` (the message on `err` says which), 2 on a usage error.
// Thread-compatible.
int RunClientCommand(const std::vector<std::string>& args, std::ostream& out,
                     std::ostream& err);

}  // namespace sluice::cli

#endif  // SLUICE_SERVICE_CLI_CLIENT_COMMANDS_HPP_
