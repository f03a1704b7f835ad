// Implementation of `sluice test` (see config_tests.hpp).
#include "service/cli/config_tests.hpp"

#include <algorithm>
#include <chrono>
#include <exception>
#include <future>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <ostream>

#include "service/cli/result_diff.hpp"
#include "service/cli/test_file.hpp"
#include "service/config/config.hpp"
#include "service/config/units.hpp"
#include "service/engine/engine.hpp"
#include "service/jobs/job.hpp"
#include "service/metrics/metrics.hpp"
#include "service/processors/checks.hpp"

namespace sluice::cli {
namespace {

using nlohmann::json;
using Lines = std::vector<std::string>;

// What the cases of all files came to.
struct Tally {
  std::size_t passed = 0;
  std::size_t failed = 0;
  int exit_code = 0;
};

// What a job gave, once finished.
struct Got {
  jobs::JobState state = jobs::JobState::kQueued;
  json error;  // the job's {"code","message"} when it failed, else null
  json records = json::array();
  json aggregate;
  jobs::Counts counts;
};

void Append(Lines& lines, Lines more) {
  lines.insert(lines.end(), std::make_move_iterator(more.begin()),
               std::make_move_iterator(more.end()));
}

// True once `job` has finished, false when `timeout` passed first.
bool WaitFinished(const std::shared_ptr<jobs::Job>& job,
                  std::chrono::milliseconds timeout) {
  // Shared with the callback, which may run after a timed-out wait.
  auto finished = std::make_shared<std::promise<void>>();
  std::future<void> done = finished->get_future();
  if (!job->NotifyWhenFinished([finished] { finished->set_value(); })) {
    return true;  // already finished
  }
  return done.wait_for(timeout) == std::future_status::ready;
}

Got Collect(const jobs::Job& job) {
  Got got;
  got.state = job.state();
  got.error = job.error();
  for (const jobs::ResultRecord& r : job.Results(0, job.result_count())) {
    got.records.push_back(jobs::ToJson(r));
  }
  got.aggregate = job.aggregate();
  got.counts = job.counts();
  return got;
}

json CountsJson(const jobs::Counts& c) {
  return {{"in", c.in},
          {"out", c.out},
          {"filtered", c.filtered},
          {"errors", c.errors},
          {"cancelled", c.cancelled}};
}

// The diff of one finished case; empty when it passed.
Lines Compare(const TestCase& c, bool ordered, const Got& got) {
  Lines lines;
  if (jobs::ToString(got.state) != c.state) {
    std::string why = got.error.is_object()
                          ? " (" + got.error.value("message", "") + ")"
                          : "";
    lines.push_back("state: expected " + c.state + ", got " +
                    std::string(jobs::ToString(got.state)) + why);
  }
  if (c.results) {
    Append(lines, DiffRecords(*c.results, got.records,
                              {.partial = false, .ordered = ordered}));
  }
  if (c.contains) {
    Append(lines, DiffRecords(*c.contains, got.records,
                              {.partial = true, .ordered = ordered}));
  }
  if (c.aggregate) {
    Append(lines, DiffValue("aggregate", *c.aggregate, got.aggregate));
  }
  if (!c.items.empty()) {
    Append(lines, DiffValue("items", c.items, CountsJson(got.counts),
                            /*partial=*/true));
  }
  return lines;
}

const config::PipelineConfig* FindPipeline(const config::Config& config,
                                           const std::string& name) {
  for (const config::PipelineConfig& p : config.pipelines) {
    if (p.name == name) return &p;
  }
  return nullptr;
}

std::string PipelineNames(const config::Config& config) {
  std::string names;
  for (const config::PipelineConfig& p : config.pipelines) {
    names += (names.empty() ? "" : ", ") + p.name;
  }
  return names;
}

// Runs one case as a job of `engine`; its diff (empty: passed).
Lines RunCase(engine::Engine& engine, const config::Config& config,
              const TestCase& c) {
  const config::PipelineConfig* pipeline = FindPipeline(config, c.pipeline);
  if (pipeline == nullptr) {
    return {"pipeline: \"" + c.pipeline +
            "\" is not in the config (it has: " + PipelineNames(config) + ")"};
  }
  auto job = engine.Submit({c.pipeline, c.input, c.ordered});
  if (!job.ok()) return {"the job was refused: " + job.error().message};
  if (!WaitFinished(job.value(), c.timeout)) {
    engine.Cancel(job.value()->id());
    return {"the job did not finish within " +
            config::FormatDuration(c.timeout) + " (raise `timeout`)"};
  }
  return Compare(c, c.ordered.value_or(pipeline->ordered),
                 Collect(*job.value()));
}

// The file's config, or nullopt after printing why it is invalid.
std::optional<config::Config> LoadConfig(const TestFile& file,
                                         std::ostream& out) {
  auto loaded =
      file.config.file.empty()
          ? config::LoadConfigText(file.config.text, processors::ConfigChecks())
          : config::LoadConfigFile(file.config.file,
                                   processors::ConfigChecks());
  if (loaded.ok()) return std::move(loaded).value();
  out << "FAIL " << file.path << ": the config (" << file.config.label
      << ") is invalid\n";
  for (const auto& e : loaded.error()) {
    out << "    " << config::ToString(e) << '\n';
  }
  return std::nullopt;
}

void Report(const TestFile& file, const TestCase& c, const Lines& diff,
            std::ostream& out, Tally& tally) {
  out << (diff.empty() ? "PASS " : "FAIL ") << file.path << ": " << c.name
      << '\n';
  for (const std::string& line : diff) out << "    " << line << '\n';
  out.flush();  // a long suite shows its progress
  ++(diff.empty() ? tally.passed : tally.failed);
  if (!diff.empty()) tally.exit_code = std::max(tally.exit_code, 1);
}

// Runs every case of `file` on an engine of its own.
void RunFile(const TestFile& file, std::ostream& out, Tally& tally) {
  auto config = LoadConfig(file, out);
  if (!config) {
    tally.failed += file.cases.size();
    tally.exit_code = std::max(tally.exit_code, 1);
    return;
  }
  try {
    metrics::Metrics metrics(SLUICE_VERSION);
    engine::Engine engine(*config, metrics);
    for (const TestCase& c : file.cases) {
      Report(file, c, RunCase(engine, *config, c), out, tally);
    }
    engine.Shutdown(std::chrono::milliseconds(0));
  } catch (const std::exception& e) {
    out << "FAIL " << file.path << ": cannot run the pipelines: " << e.what()
        << '\n';
    ++tally.failed;
    tally.exit_code = std::max(tally.exit_code, 1);
  }
}

}  // namespace

int RunConfigTests(const std::vector<std::string>& files, std::ostream& out,
                   std::ostream& err) {
  if (files.empty()) {
    err << "sluice test: expected at least one FILE\n";
    return 2;
  }
  Tally tally;
  for (const std::string& path : files) {
    auto file = ReadTestFile(path);
    if (!file.ok()) {
      for (const auto& e : file.error()) {
        err << "sluice test: " << path << ": " << config::ToString(e) << '\n';
      }
      tally.exit_code = 2;
      continue;
    }
    RunFile(file.value(), out, tally);
  }
  out << tally.passed << " passed, " << tally.failed << " failed\n";
  return tally.exit_code;
}

}  // namespace sluice::cli
