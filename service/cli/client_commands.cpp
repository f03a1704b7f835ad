// The client commands' dispatch, their shared argument handling, and the
// plain HTTP ones: jobs, status, results, cancel (see client_commands.hpp).
#include "service/cli/client_commands.hpp"

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <iomanip>
#include <iostream>

#include "service/cli/client_args.hpp"
#include "service/config/units.hpp"

namespace sluice::cli {
namespace client_cmd {

std::optional<std::string> Args::Value(const std::string& name) const {
  auto it = values.find(name);
  if (it == values.end()) return std::nullopt;
  return it->second;
}

Result<Args> Parse(const std::vector<std::string>& args,
                   std::initializer_list<std::string_view> value_options,
                   std::initializer_list<std::string_view> flag_options) {
  Args parsed;
  parsed.command = args.at(0);
  auto is_value = [&](std::string_view name) {
    return name == "--server" || name == "--token" || name == "--timeout" ||
           std::find(value_options.begin(), value_options.end(), name) !=
               value_options.end();
  };
  for (std::size_t i = 1; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (arg.size() < 2 || arg.compare(0, 2, "--") != 0) {
      parsed.positional.push_back(arg);
      continue;
    }
    auto eq = arg.find('=');
    std::string name = arg.substr(0, eq);
    if (is_value(name)) {
      if (eq != std::string::npos) {
        parsed.values[name] = arg.substr(eq + 1);
      } else if (i + 1 < args.size()) {
        parsed.values[name] = args[++i];
      } else {
        return Error{"usage", name + " needs a value"};
      }
    } else if (eq == std::string::npos &&
               std::find(flag_options.begin(), flag_options.end(), name) !=
                   flag_options.end()) {
      parsed.flags.insert(name);
    } else {
      return Error{"usage", "unknown option " + arg};
    }
  }
  return parsed;
}

Result<client::Server> ServerOf(const Args& args) {
  auto env = [](const char* name) -> std::optional<std::string> {
    // NOLINTNEXTLINE(concurrency-mt-unsafe): read once, nothing sets it.
    const char* v = std::getenv(name);
    if (v == nullptr || *v == '\0') return std::nullopt;
    return std::string(v);
  };
  std::string url =
      args.Value("--server")
          .value_or(env("SLUICE_SERVER").value_or("http://127.0.0.1:8080"));
  std::string token =
      args.Value("--token").value_or(env("SLUICE_TOKEN").value_or(""));
  auto server = client::ParseServer(url, std::move(token));
  if (!server.ok()) return server;
  if (auto v = args.Value("--timeout")) {
    auto timeout = config::ParseDuration(*v);
    if (!timeout.ok() || timeout->count() <= 0) {
      return Error{"usage",
                   "--timeout needs a duration above 0 such as 30s "
                   "or 500ms, not " +
                       *v};
    }
    server->timeout = *timeout;
  }
  return server;
}

int Report(const Args& args, const Error& error, std::ostream& err) {
  err << "sluice " << args.command << ": " << error.message << '\n';
  if (error.code == "usage") {
    err << "run `sluice --help` for the usage\n";
    return 2;
  }
  return 1;
}

namespace {

// One request; an answer that is not 2xx is an error with the server's
// message.
Result<client::Response> Call(const client::Server& server,
                              std::string_view method,
                              const std::string& target,
                              std::string_view accept = "application/json") {
  auto response = client::Request(server, method, target, accept);
  if (!response.ok()) return response;
  if (response->status < 200 || response->status >= 300) {
    return Error{"refused", client::ErrorMessage(*response)};
  }
  return response;
}

// Parses args, resolves the server and checks that there are exactly
// `positional` positional arguments.
Result<std::pair<Args, client::Server>> Prepare(
    const std::vector<std::string>& argv, std::size_t positional,
    std::initializer_list<std::string_view> value_options = {},
    std::initializer_list<std::string_view> flag_options = {}) {
  auto args = Parse(argv, value_options, flag_options);
  if (!args.ok()) return std::move(args).error();
  if (args->positional.size() != positional) {
    return Error{"usage", positional == 0 ? "takes no argument"
                                          : "expects exactly one job ID"};
  }
  auto server = ServerOf(*args);
  if (!server.ok()) return std::move(server).error();
  return std::make_pair(std::move(*args), std::move(*server));
}

// The job list as a table: id, pipeline, state, counts, created_at.
void PrintJobs(const nlohmann::json& jobs, std::ostream& out) {
  out << std::left << std::setw(34) << "ID" << std::setw(16) << "PIPELINE"
      << std::setw(11) << "STATE" << std::right << std::setw(10) << "IN"
      << std::setw(10) << "OUT" << std::setw(8) << "ERRORS"
      << "  CREATED\n";
  for (const auto& job : jobs) {
    const auto& items = job.value("items", nlohmann::json::object());
    out << std::left << std::setw(34) << job.value("id", "") << std::setw(16)
        << job.value("pipeline", "") << std::setw(11) << job.value("state", "")
        << std::right << std::setw(10) << items.value("in", 0) << std::setw(10)
        << items.value("out", 0) << std::setw(8) << items.value("errors", 0)
        << "  " << job.value("created_at", "") << '\n';
  }
}

int Jobs(const std::vector<std::string>& argv, std::ostream& out,
         std::ostream& err) {
  auto prepared = Prepare(argv, 0, {"--limit"}, {"--json"});
  if (!prepared.ok())
    return Report(Args{argv[0], {}, {}, {}}, prepared.error(), err);
  auto& [args, server] = *prepared;
  std::string target = "/v1/jobs";
  if (auto limit = args.Value("--limit"))
    target += "?limit=" + client::PercentEncode(*limit);
  auto response = Call(server, "GET", target);
  if (!response.ok()) return Report(args, response.error(), err);
  auto body = nlohmann::json::parse(response->body, nullptr, false);
  if (args.Flag("--json") || !body.is_object()) {
    out << response->body << (response->body.ends_with('\n') ? "" : "\n");
  } else {
    PrintJobs(body.value("jobs", nlohmann::json::array()), out);
  }
  return 0;
}

// status and cancel: one request on /v1/jobs/ID, the status object out.
int JobRequest(const std::vector<std::string>& argv, std::string_view method,
               std::ostream& out, std::ostream& err) {
  auto prepared = Prepare(argv, 1);
  if (!prepared.ok())
    return Report(Args{argv[0], {}, {}, {}}, prepared.error(), err);
  auto& [args, server] = *prepared;
  auto response = Call(server, method,
                       "/v1/jobs/" + client::PercentEncode(args.positional[0]));
  if (!response.ok()) return Report(args, response.error(), err);
  auto body = nlohmann::json::parse(response->body, nullptr, false);
  out << (body.is_discarded() ? response->body : body.dump(2)) << '\n';
  return 0;
}

// --page-size: 1..10000 (the server's bounds for `limit`), 1000 when not
// given. Checked here, so that 0 is not taken for "no page" and the error
// names the option rather than the query parameter.
Result<std::uint64_t> PageSize(const Args& args) {
  auto v = args.Value("--page-size");
  if (!v) return std::uint64_t{1000};
  char* end = nullptr;
  unsigned long long n = std::strtoull(v->c_str(), &end, 10);
  if (v->empty() || !std::isdigit(static_cast<unsigned char>(v->front())) ||
      *end != '\0' || n < 1 || n > 10000) {
    return Error{"usage",
                 "--page-size needs an integer from 1 to 10000, not " + *v};
  }
  return std::uint64_t{n};
}

// Every page of the job's results as NDJSON, from offset 0 until the
// page's next offset reaches the total.
int Results(const std::vector<std::string>& argv, std::ostream& out,
            std::ostream& err) {
  auto prepared = Prepare(argv, 1, {"--page-size"});
  if (!prepared.ok())
    return Report(Args{argv[0], {}, {}, {}}, prepared.error(), err);
  auto& [args, server] = *prepared;
  auto page_size = PageSize(args);
  if (!page_size.ok()) return Report(args, page_size.error(), err);
  std::string base = "/v1/jobs/" + client::PercentEncode(args.positional[0]) +
                     "/results?limit=" + std::to_string(*page_size) +
                     "&offset=";
  std::uint64_t offset = 0;
  for (;;) {
    auto page = Call(server, "GET", base + std::to_string(offset),
                     "application/x-ndjson");
    if (!page.ok()) return Report(args, page.error(), err);
    out << page->body;
    std::uint64_t next =
        std::strtoull(page->headers["x-next-offset"].c_str(), nullptr, 10);
    std::uint64_t total =
        std::strtoull(page->headers["x-total-count"].c_str(), nullptr, 10);
    if (next <= offset || next >= total) break;
    offset = next;
  }
  out.flush();
  return 0;
}

}  // namespace
}  // namespace client_cmd

bool IsClientCommand(std::string_view command) {
  return command == "submit" || command == "jobs" || command == "status" ||
         command == "results" || command == "cancel" || command == "top";
}

int RunClientCommand(const std::vector<std::string>& args, std::ostream& out,
                     std::ostream& err) {
  const std::string& command = args.at(0);
  if (command == "submit") return client_cmd::Submit(args, out, err);
  if (command == "top") return client_cmd::Top(args, out, err);
  if (command == "jobs") return client_cmd::Jobs(args, out, err);
  if (command == "status") return client_cmd::JobRequest(args, "GET", out, err);
  if (command == "cancel") {
    return client_cmd::JobRequest(args, "DELETE", out, err);
  }
  return client_cmd::Results(args, out, err);
}

}  // namespace sluice::cli
