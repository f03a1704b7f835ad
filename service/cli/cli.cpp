// Implementation of the `sluice` command line (see cli.hpp).
#include "service/cli/cli.hpp"

#include <iostream>
#include <optional>

#include "service/app/app.hpp"
#include "service/cli/client_commands.hpp"
#include "service/cli/config_tests.hpp"
#include "service/config/config.hpp"
#include "service/processors/checks.hpp"

namespace sluice::cli {
namespace {

constexpr const char* kUsage =
    "usage: sluice <command> [options]\n"
    "\n"
    "commands:\n"
    "  serve [--config FILE] [--listen HOST:PORT]\n"
    "      run the server (default config: the built-in config/default.yaml);\n"
    "      SIGTERM or SIGINT drains it (a second signal exits at once);\n"
    "      SIGHUP reloads the --config FILE (docs/operations.md#reload)\n"
    "  check FILE\n"
    "      validate a config file: print its summary (exit 0) or its errors,\n"
    "      one per line as `path: message` (exit 1)\n"
    "  test FILE...\n"
    "      run config tests (docs/config-tests.md) through the engine, no\n"
    "      server: PASS/FAIL per case and a diff (exit 0 all pass, 1 a case\n"
    "      failed, 2 a test file is unreadable or invalid)\n"
    "\n"
    "client commands (docs/cli.md), against --server URL (default\n"
    "$SLUICE_SERVER, else http://127.0.0.1:8080) with --token T (default\n"
    "$SLUICE_TOKEN) and --timeout D (connect, send, answer; default 30s);\n"
    "exit 1 on failure with the server's message:\n"
    "  submit --pipeline P [--follow] [--batch-items N] [--batch-bytes N]\n"
    "         FILE|-\n"
    "      stream a JSON array or NDJSON file as a job; print the job's final\n"
    "      status, or with --follow its records as NDJSON (and a progress bar\n"
    "      when stderr is a terminal); exit 0 when the job ends done\n"
    "  jobs [--limit N] [--json]      recent jobs, newest first\n"
    "  status ID                      a job's status object\n"
    "  results ID [--page-size N]     every result record, as NDJSON (pages\n"
    "                                 of N = 1..10000 records, default 1000)\n"
    "  cancel ID                      cancel a job\n"
    "  top [--interval S] [--once]    live view of the pipelines' stages\n"
    "\n"
    "  --help, -h       show this help\n"
    "  --version        show the version\n";

using Loaded = Result<config::Config, std::vector<config::ConfigError>>;

// Prints the errors of a failed load; returns the config otherwise.
std::optional<config::Config> Unwrap(Loaded loaded, std::ostream& err) {
  if (!loaded.ok()) {
    for (const auto& e : loaded.error()) err << config::ToString(e) << '\n';
    return std::nullopt;
  }
  return std::move(loaded).value();
}

int Check(const std::vector<std::string>& args, std::ostream& out,
          std::ostream& err) {
  if (args.size() != 2) {
    err << "sluice check: expected exactly one FILE\n" << kUsage;
    return 2;
  }
  auto config =
      Unwrap(config::LoadConfigFile(args[1], processors::ConfigChecks()), err);
  if (!config) return 1;
  out << config::Summary(*config);
  return 0;
}

int Serve(const std::vector<std::string>& args, std::ostream& out,
          std::ostream& err) {
  std::optional<std::string> config_file;
  app::AppOptions options;
  options.version = SLUICE_VERSION;
  options.server.handle_signals = true;
  for (std::size_t i = 1; i < args.size(); ++i) {
    const std::string& arg = args[i];
    auto value = [&](std::string_view name) -> std::optional<std::string> {
      // --name VALUE or --name=VALUE
      if (arg == name) {
        if (i + 1 < args.size()) return args[++i];
        return std::nullopt;
      }
      if (arg.size() > name.size() && arg.compare(0, name.size(), name) == 0 &&
          arg[name.size()] == '=') {
        return arg.substr(name.size() + 1);
      }
      return std::nullopt;
    };
    if (arg == "--config" || arg.rfind("--config=", 0) == 0) {
      config_file = value("--config");
      if (!config_file) {
        err << "sluice serve: --config needs a FILE\n";
        return 2;
      }
    } else if (arg == "--listen" || arg.rfind("--listen=", 0) == 0) {
      auto listen = value("--listen");
      if (!listen) {
        err << "sluice serve: --listen needs HOST:PORT\n";
        return 2;
      }
      options.server.listen = *listen;
    } else {
      err << "sluice serve: unknown argument " << arg << "\n" << kUsage;
      return 2;
    }
  }

  auto config = Unwrap(
      config_file
          ? config::LoadConfigFile(*config_file, processors::ConfigChecks())
          : config::LoadConfigText(config::DefaultConfigText(),
                                   processors::ConfigChecks()),
      err);
  if (!config) return 1;
  options.config_file = config_file.value_or("");
  options.checks = processors::ConfigChecks();

  auto server = app::App::Create(std::move(*config), std::move(options));
  if (!server.ok()) {
    err << "sluice: " << server.error().message << '\n';
    return 1;
  }
  (*server)->Start();
  // Scripts and tests read the bound address from here (port 0 = any).
  out << "listening on " << (*server)->address() << std::endl;
  (*server)->Wait();
  server.value().reset();
  err << "sluice: stopped\n";
  return 0;
}

}  // namespace

int Run(const std::vector<std::string>& args, std::ostream& out,
        std::ostream& err) {
  if (args.empty()) {
    err << kUsage;
    return 2;
  }
  const std::string& command = args[0];
  if (command == "--help" || command == "-h" || command == "help") {
    out << kUsage;
    return 0;
  }
  if (command == "--version" || command == "version") {
    out << "sluice " << SLUICE_VERSION << '\n';
    return 0;
  }
  if (command == "check") return Check(args, out, err);
  if (command == "test") {
    return RunConfigTests({args.begin() + 1, args.end()}, out, err);
  }
  if (command == "serve") return Serve(args, out, err);
  if (IsClientCommand(command)) return RunClientCommand(args, out, err);
  err << "sluice: unknown command " << command << "\n" << kUsage;
  return 2;
}

int Main(int argc, char** argv) {
  std::vector<std::string> args(argv + (argc > 0 ? 1 : 0), argv + argc);
  return Run(args, std::cout, std::cerr);
}

}  // namespace sluice::cli
