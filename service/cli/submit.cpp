// `sluice submit`: streams a JSON array or NDJSON file over the ingestion
// WebSocket (client::Ingest over a client::ItemReader), with --follow's
// NDJSON records and progress bar (from the job's status, polled).
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <deque>
#include <iostream>
#include <optional>
#include <sstream>
#include <stop_token>
#include <system_error>
#include <thread>
#include <utility>

#include "service/cli/client_args.hpp"
#include "service/client/item_reader.hpp"
#include "sluice/patterns/mutex.hpp"

namespace sluice::cli::client_cmd {
namespace {

using Clock = std::chrono::steady_clock;

// "1:05" or "2:03:04".
std::string Duration(double seconds) {
  long long s = std::llround(seconds);
  char text[32];
  if (s >= 3600) {
    std::snprintf(text, sizeof text, "%lld:%02lld:%02lld", s / 3600,
                  s / 60 % 60, s % 60);
  } else {
    std::snprintf(text, sizeof text, "%lld:%02lld", s / 60, s % 60);
  }
  return text;
}

// The progress bar on stderr: `completed/sent items`, the rate of
// completion over the last few seconds, and the time left once the input
// has been read to its end (before, `reading`: the total is unknown). One
// line redrawn in place with '\r', at most every 100 ms. Completed items
// come from the server's job status (JobPoller): the client reads and
// sends far ahead of the pipeline, and records are not items (a split item
// has several, a filtered one none). Does nothing unless enabled (stderr
// is a terminal). Thread-safe: the stream's thread and the poller draw.
class Progress {
 public:
  Progress(bool enabled, std::ostream& err) : enabled_(enabled), err_(err) {}

  bool enabled() const { return enabled_; }

  // `items` more were sent; `end`: the input was read to its end.
  void Sent(std::uint64_t items, bool end) SLUICE_EXCLUDES(mu_) {
    MutexLock lock(&mu_);
    sent_ += items;
    ended_ = ended_ || end;
    Draw(false);
  }

  // The job's items.completed, polled now.
  void Completed(std::uint64_t completed) SLUICE_EXCLUDES(mu_) {
    MutexLock lock(&mu_);
    completed_ = std::max(completed_, completed);
    auto now = Clock::now();
    samples_.emplace_back(now, completed_);
    while (samples_.size() > 2 && now - samples_.front().first > kRateWindow) {
      samples_.pop_front();
    }
    Draw(false);
  }

  // Erases the bar, so a message can take its line.
  void Clear() SLUICE_EXCLUDES(mu_) {
    MutexLock lock(&mu_);
    if (drawn_) err_ << "\r\x1b[K" << std::flush;
    drawn_ = false;
  }

  // Writes `line` on err in the bar's place (the poller may be drawing).
  void Message(const std::string& line) SLUICE_EXCLUDES(mu_) {
    MutexLock lock(&mu_);
    if (drawn_) err_ << "\r\x1b[K";
    err_ << line << std::endl;
    drawn_ = false;
  }

  // The last draw, with the job's final count, left on its line.
  void Finish(std::uint64_t completed) SLUICE_EXCLUDES(mu_) {
    if (!enabled_) return;
    MutexLock lock(&mu_);
    completed_ = completed;
    ended_ = true;
    Draw(true);
    err_ << '\n' << std::flush;
    drawn_ = false;
  }

 private:
  static constexpr auto kRateWindow = std::chrono::seconds(5);

  // Items completed per second over the samples of the last kRateWindow.
  double Rate() const SLUICE_REQUIRES(mu_) {
    if (samples_.size() < 2) return 0;
    const auto& [t0, c0] = samples_.front();
    const auto& [t1, c1] = samples_.back();
    double dt = std::chrono::duration<double>(t1 - t0).count();
    return dt > 0 ? static_cast<double>(c1 - c0) / dt : 0;
  }

  void Draw(bool force) SLUICE_REQUIRES(mu_) {
    if (!enabled_) return;
    auto now = Clock::now();
    if (!force && now - last_ < std::chrono::milliseconds(100)) return;
    last_ = now;
    std::uint64_t done = std::min(completed_, sent_);
    double fraction =
        sent_ ? static_cast<double>(done) / static_cast<double>(sent_) : 0;
    constexpr int kWidth = 24;
    int filled = static_cast<int>(fraction * kWidth);
    double rate = Rate();
    std::ostringstream line;
    line << "\r\x1b[K[" << std::string(filled, '#')
         << std::string(kWidth - filled, '-') << "] " << done << '/' << sent_
         << " items  " << std::llround(rate) << "/s  ";
    if (!ended_) {
      line << "reading";
    } else if (done < sent_) {
      line << "ETA "
           << (rate > 0 ? Duration(static_cast<double>(sent_ - done) / rate)
                        : std::string("-:--"));
    }
    err_ << line.str() << std::flush;
    drawn_ = true;
  }

  const bool enabled_;
  Mutex mu_;
  std::ostream& err_ SLUICE_GUARDED_BY(mu_);
  std::uint64_t sent_ SLUICE_GUARDED_BY(mu_) = 0;
  std::uint64_t completed_ SLUICE_GUARDED_BY(mu_) = 0;
  bool ended_ SLUICE_GUARDED_BY(mu_) = false;
  // (when, completed) of the polls of the last kRateWindow.
  std::deque<std::pair<Clock::time_point, std::uint64_t>> samples_
      SLUICE_GUARDED_BY(mu_);
  Clock::time_point last_ SLUICE_GUARDED_BY(mu_){};
  bool drawn_ SLUICE_GUARDED_BY(mu_) = false;
};

// items.completed of a job's status object, if it says.
std::optional<std::uint64_t> CompletedOf(const nlohmann::json& job) {
  if (!job.is_object() || !job.contains("items")) return std::nullopt;
  const auto& items = job["items"];
  if (!items.is_object() || !items.contains("completed") ||
      !items["completed"].is_number_unsigned()) {
    return std::nullopt;
  }
  return items["completed"].get<std::uint64_t>();
}

// Polls GET /v1/jobs/ID about once a second on a thread of its own (the
// synchronous client) and gives Progress the job's completed count.
// Thread-compatible: Start and Stop on one thread; Stop joins.
class JobPoller {
 public:
  void Start(client::Server server, const std::string& job_id,
             Progress& progress) {
    // A poll must not hold up the end of submit for long.
    server.timeout = std::min(server.timeout, std::chrono::milliseconds(2000));
    thread_ =
        std::jthread([server = std::move(server),
                      target = "/v1/jobs/" + client::PercentEncode(job_id),
                      &progress](std::stop_token stop) {
          while (!stop.stop_requested()) {
            auto response = client::Request(server, "GET", target);
            if (response.ok() && response->status == 200) {
              auto completed = CompletedOf(
                  nlohmann::json::parse(response->body, nullptr, false));
              if (completed) progress.Completed(*completed);
            }
            for (int i = 0; i < 20 && !stop.stop_requested(); ++i) {
              std::this_thread::sleep_for(std::chrono::milliseconds(50));
            }
          }
        });
  }

  void Stop() {
    if (!thread_.joinable()) return;
    thread_.request_stop();
    thread_.join();
  }

 private:
  std::jthread thread_;
};

// A result/error frame as the record of GET /v1/jobs/ID/results: without
// "type" (an aggregate window record keeps it).
nlohmann::json Record(nlohmann::json frame) {
  if (frame.contains("seq")) frame.erase("type");
  return frame;
}

// The input: stdin for "-", else the opened file.
struct Input {
  int fd = -1;
  bool owned = false;
  ~Input() {
    if (owned) ::close(fd);
  }
};

Result<void> Open(const std::string& path, Input& input) {
  if (path == "-") {
    input.fd = STDIN_FILENO;
  } else {
    input.fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (input.fd < 0) {
      return Error{
          "input",
          "cannot open " + path + ": " +
              std::error_code(errno, std::system_category()).message()};
    }
    input.owned = true;
  }
  return {};
}

Result<client::ItemReader::Limits> LimitsOf(const Args& args) {
  client::ItemReader::Limits limits;
  for (auto [name, field] : {std::pair{"--batch-items", &limits.max_items},
                             std::pair{"--batch-bytes", &limits.max_bytes}}) {
    if (auto v = args.Value(name)) {
      char* end = nullptr;
      unsigned long long n = std::strtoull(v->c_str(), &end, 10);
      if (v->empty() || *end != '\0' || n == 0) {
        return Error{"usage", std::string(name) + " needs a positive integer"};
      }
      *field = static_cast<std::size_t>(n);
    }
  }
  return limits;
}

// What one run of submit saw, for the end.
struct Tally {
  std::uint64_t sent = 0;     // items in the frames written
  std::uint64_t refused = 0;  // error frames about refused input frames
};

client::StreamEvents Events(const Args& args, const client::Server& server,
                            Progress& progress, JobPoller& poller, Tally& tally,
                            std::ostream& out, std::ostream& err) {
  bool follow = args.Flag("--follow");
  client::StreamEvents events;
  events.on_job = [&](const std::string& id) {
    err << "job " << id << std::endl;
    if (progress.enabled()) poller.Start(server, id, progress);
  };
  events.on_sent = [&](std::size_t items, bool end) {
    tally.sent += items;
    progress.Sent(items, end);
  };
  events.on_frame = [&, follow](const nlohmann::json& frame) {
    if (frame.value("type", "") == "error" && !frame.contains("seq")) {
      // The first says why; the frames already in flight say it again.
      if (tally.refused++ == 0) {
        progress.Message("sluice submit: the server refused a frame: " +
                         frame.value("code", "") + ": " +
                         frame.value("message", ""));
      }
      return;
    }
    if (!follow) return;
    // Flushed at once: a record may be the last for a while (a quiet
    // input), and must not wait in the buffer for the next one.
    out << Record(frame).dump() << '\n' << std::flush;
  };
  return events;
}

// The exit code for the job's end, with a message unless it is `done`.
int Verdict(const Args& args, const client::StreamOutcome& outcome,
            const Tally& tally, std::ostream& err) {
  const std::string file = args.positional[0];
  int code = 0;
  if (!outcome.input_error.empty()) {
    err << "sluice submit: " << (file == "-" ? "stdin" : file) << ": "
        << outcome.input_error
        << " (the items before it were sent and processed)\n";
    code = 1;
  }
  if (tally.refused > 1) {
    err << "sluice submit: " << tally.refused - 1
        << " more frames were refused\n";
  }
  if (tally.refused > 0) code = 1;
  std::string state = outcome.job.value("state", "");
  if (state != "done") {
    err << "sluice submit: job " << outcome.job.value("id", "") << " ended "
        << (state.empty() ? "without a state" : state);
    const auto& error = outcome.job.value("error", nlohmann::json::object());
    if (error.is_object() && error.contains("message")) {
      err << ": " << error.value("code", "") << ": "
          << error.value("message", "");
    }
    err << '\n';
    code = 1;
  }
  return code;
}

}  // namespace

int Submit(const std::vector<std::string>& argv, std::ostream& out,
           std::ostream& err) {
  auto args = Parse(argv, {"--pipeline", "--batch-items", "--batch-bytes"},
                    {"--follow"});
  if (!args.ok()) return Report(Args{"submit", {}, {}, {}}, args.error(), err);
  if (args->positional.size() != 1) {
    return Report(*args, {"usage", "expects one FILE (or - for stdin)"}, err);
  }
  auto pipeline = args->Value("--pipeline");
  if (!pipeline) return Report(*args, {"usage", "--pipeline is required"}, err);
  auto server = ServerOf(*args);
  if (!server.ok()) return Report(*args, server.error(), err);
  auto limits = LimitsOf(*args);
  if (!limits.ok()) return Report(*args, limits.error(), err);
  Input input;
  if (auto opened = Open(args->positional[0], input); !opened.ok()) {
    return Report(*args, opened.error(), err);
  }

  client::ItemReader reader(input.fd, *limits);
  bool tty = &err == &std::cerr && ::isatty(STDERR_FILENO);
  Progress progress(tty && args->Flag("--follow"), err);
  JobPoller poller;
  Tally tally;
  auto outcome =
      client::Ingest(*server, *pipeline, reader,
                     Events(*args, *server, progress, poller, tally, out, err));
  poller.Stop();
  out.flush();
  if (!outcome.ok()) {
    progress.Clear();
    return Report(*args, outcome.error(), err);
  }
  // The job's last word; a done job has ended every item it took.
  bool done = outcome->job.value("state", "") == "done";
  progress.Finish(
      CompletedOf(outcome->job).value_or(done ? tally.sent : std::uint64_t{0}));
  if (!args->Flag("--follow")) out << outcome->job.dump() << std::endl;
  return Verdict(*args, *outcome, tally, err);
}

}  // namespace sluice::cli::client_cmd
