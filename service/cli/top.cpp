// `sluice top`: a live view of the pipelines from GET /v1/pipelines, like
// `vector top`: per stage its rate (from the counters' deltas between two
// polls), queue depth, busy/total workers and counts.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <iomanip>
#include <iostream>
#include <map>
#include <sstream>
#include <thread>

#include "service/cli/client_args.hpp"

namespace sluice::cli::client_cmd {
namespace {

using Clock = std::chrono::steady_clock;

// One poll of /v1/pipelines.
struct Snapshot {
  nlohmann::json pipelines = nlohmann::json::array();
  Clock::time_point at;
};

Result<Snapshot> Poll(const client::Server& server) {
  auto response = client::Request(server, "GET", "/v1/pipelines");
  if (!response.ok()) return std::move(response).error();
  if (response->status != 200) {
    return Error{"refused", client::ErrorMessage(*response)};
  }
  auto body = nlohmann::json::parse(response->body, nullptr, false);
  if (!body.is_object() || !body["pipelines"].is_array()) {
    return Error{"refused", "GET /v1/pipelines answered no pipelines"};
  }
  return Snapshot{body["pipelines"], Clock::now()};
}

// Stage "in" counters of a snapshot by "pipeline/stage".
std::map<std::string, std::uint64_t> Inputs(const Snapshot& snapshot) {
  std::map<std::string, std::uint64_t> in;
  for (const auto& p : snapshot.pipelines) {
    for (const auto& s : p.value("stages", nlohmann::json::array())) {
      in[p.value("name", "") + "/" + s.value("name", "")] =
          s["items"].value("in", std::uint64_t{0});
    }
  }
  return in;
}

// One stage's row.
std::string StageRow(const nlohmann::json& s, double rate) {
  const auto& items = s["items"];
  char row[256];
  std::string busy = std::to_string(s.value("busy", 0)) + "/" +
                     std::to_string(s.value("workers", 0));
  std::snprintf(row, sizeof row,
                "  %-20.20s %-10.10s %10.1f %7llu %12s %12llu %12llu %8llu",
                s.value("name", "").c_str(), s.value("type", "").c_str(), rate,
                static_cast<unsigned long long>(s.value("queue_depth", 0)),
                busy.c_str(),
                static_cast<unsigned long long>(items.value("in", 0ULL)),
                static_cast<unsigned long long>(items.value("out", 0ULL)),
                static_cast<unsigned long long>(items.value("errors", 0ULL)));
  return row;
}

// The view of `now`, with rates from `before`; each line ends with
// `eol` (which erases the rest of the line on a terminal).
std::string Render(const client::Server& server, const Snapshot& before,
                   const Snapshot& now, const char* eol) {
  double dt = std::chrono::duration<double>(now.at - before.at).count();
  auto previous = Inputs(before);
  std::ostringstream view;
  char header[256];
  std::snprintf(header, sizeof header,
                "  %-20s %-10s %10s %7s %12s %12s %12s %8s", "STAGE", "TYPE",
                "ITEMS/S", "QUEUE", "BUSY/WORKERS", "IN", "OUT", "ERRORS");
  view << "sluice top  http://" << server.Where() << server.base_path
       << "  (rates over " << std::fixed << std::setprecision(1) << dt << " s)"
       << eol << '\n';
  for (const auto& p : now.pipelines) {
    view << eol << '\n'
         << "pipeline " << p.value("name", "") << "  jobs active "
         << p.value("jobs_active", 0)
         << (p.value("ordered", false) ? "  ordered" : "") << eol << '\n'
         << header << eol << '\n';
    for (const auto& s : p.value("stages", nlohmann::json::array())) {
      auto key = p.value("name", "") + "/" + s.value("name", "");
      std::uint64_t in = s["items"].value("in", std::uint64_t{0});
      auto it = previous.find(key);
      double rate = (it != previous.end() && dt > 0 && in >= it->second)
                        ? static_cast<double>(in - it->second) / dt
                        : 0.0;
      view << StageRow(s, rate) << eol << '\n';
    }
  }
  return view.str();
}

}  // namespace

int Top(const std::vector<std::string>& argv, std::ostream& out,
        std::ostream& err) {
  auto args = Parse(argv, {"--interval"}, {"--once"});
  if (!args.ok()) return Report(Args{"top", {}, {}, {}}, args.error(), err);
  if (!args->positional.empty())
    return Report(*args, {"usage", "takes no argument"}, err);
  double interval = 1.0;
  if (auto v = args->Value("--interval")) {
    char* end = nullptr;
    interval = std::strtod(v->c_str(), &end);
    if (v->empty() || *end != '\0' || !(interval > 0) || interval > 3600) {
      return Report(*args, {"usage", "--interval needs seconds > 0"}, err);
    }
  }
  auto server = ServerOf(*args);
  if (!server.ok()) return Report(*args, server.error(), err);
  bool tty = &out == &std::cout && ::isatty(STDOUT_FILENO);
  auto before = Poll(*server);
  if (!before.ok()) return Report(*args, before.error(), err);
  if (tty && !args->Flag("--once")) out << "\x1b[2J";
  for (;;) {
    std::this_thread::sleep_for(std::chrono::duration<double>(interval));
    auto now = Poll(*server);
    if (!now.ok()) return Report(*args, now.error(), err);
    if (args->Flag("--once")) {
      out << Render(*server, *before, *now, "") << std::flush;
      return 0;
    }
    // On a terminal: home, draw over the last view, erase what is left.
    if (tty) out << "\x1b[H";
    out << Render(*server, *before, *now, tty ? "\x1b[K" : "")
        << (tty ? "\x1b[J" : "\n") << std::flush;
    before = std::move(now);
  }
}

}  // namespace sluice::cli::client_cmd
