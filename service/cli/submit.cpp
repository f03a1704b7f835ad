// `sluice submit`: streams a JSON array or NDJSON file over the ingestion
// WebSocket (client::Ingest over a client::ItemReader), with --follow's
// NDJSON records and progress bar.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <optional>
#include <sstream>
#include <system_error>

#include "service/cli/client_args.hpp"
#include "service/client/item_reader.hpp"

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

// The progress bar on stderr: one line redrawn in place with '\r', at most
// every 100 ms. Does nothing unless enabled (stderr is a terminal).
// Thread-compatible.
class Progress {
 public:
  Progress(bool enabled, std::optional<std::uint64_t> file_size,
           std::ostream& err)
      : enabled_(enabled), size_(file_size), err_(err) {}

  // done: items with a record back; sent: items sent; bytes: input read.
  void Draw(std::uint64_t done, std::uint64_t sent, std::uint64_t bytes,
            bool force = false) {
    if (!enabled_) return;
    auto now = Clock::now();
    if (!force && now - last_ < std::chrono::milliseconds(100)) return;
    last_ = now;
    double elapsed = std::chrono::duration<double>(now - start_).count();
    done = std::min(done, sent);
    // How far: the input read when its size is known, else done/sent.
    double fraction =
        size_ && *size_ > 0
            ? static_cast<double>(bytes) / static_cast<double>(*size_)
            : (sent ? static_cast<double>(done) / static_cast<double>(sent)
                    : 0);
    fraction = std::clamp(fraction, 0.0, 1.0);
    constexpr int kWidth = 24;
    int filled = static_cast<int>(fraction * kWidth);
    std::ostringstream line;
    line << "\r\x1b[K[" << std::string(filled, '#')
         << std::string(kWidth - filled, '-') << "] " << done << '/' << sent
         << " items  "
         << std::llround(elapsed > 0 ? static_cast<double>(done) / elapsed : 0)
         << "/s";
    if (size_ && fraction > 0 && fraction < 1) {
      line << "  ETA " << Duration(elapsed * (1 - fraction) / fraction);
    }
    err_ << line.str() << std::flush;
    drawn_ = true;
  }

  // Erases the bar, so a message can take its line.
  void Clear() {
    if (drawn_) err_ << "\r\x1b[K" << std::flush;
    drawn_ = false;
  }

  // The last draw, left on its line.
  void Finish(std::uint64_t done, std::uint64_t sent, std::uint64_t bytes) {
    if (!enabled_) return;
    Draw(done, sent, bytes, true);
    err_ << '\n' << std::flush;
    drawn_ = false;
  }

 private:
  bool enabled_;
  std::optional<std::uint64_t> size_;
  std::ostream& err_;
  Clock::time_point start_ = Clock::now();
  Clock::time_point last_{};
  bool drawn_ = false;
};

// A result/error frame as the record of GET /v1/jobs/ID/results: without
// "type" (an aggregate window record keeps it).
nlohmann::json Record(nlohmann::json frame) {
  if (frame.contains("seq")) frame.erase("type");
  return frame;
}

// The input: stdin for "-", else the opened file; size set for a regular
// file.
struct Input {
  int fd = -1;
  bool owned = false;
  std::optional<std::uint64_t> size;
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
  struct stat st {};
  if (::fstat(input.fd, &st) == 0 && S_ISREG(st.st_mode)) {
    input.size = static_cast<std::uint64_t>(st.st_size);
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
  std::uint64_t done = 0;     // records with a seq
  std::uint64_t refused = 0;  // error frames about refused input frames
};

client::StreamEvents Events(const Args& args, Progress& progress, Tally& tally,
                            std::ostream& out, std::ostream& err) {
  bool follow = args.Flag("--follow");
  client::StreamEvents events;
  events.on_job = [&err](const std::string& id) {
    err << "job " << id << std::endl;
  };
  events.on_sent = [&](std::size_t items, bool /*end*/) {
    tally.sent += items;
    progress.Draw(tally.done, tally.sent, 0);
  };
  events.on_frame = [&, follow](const nlohmann::json& frame) {
    if (frame.value("type", "") == "error" && !frame.contains("seq")) {
      // The first says why; the frames already in flight say it again.
      if (tally.refused++ == 0) {
        progress.Clear();
        err << "sluice submit: the server refused a frame: "
            << frame.value("code", "") << ": " << frame.value("message", "")
            << std::endl;
      }
      return;
    }
    if (frame.contains("seq")) ++tally.done;
    if (!follow) return;
    // Flushed at once: a record may be the last for a while (a quiet
    // input), and must not wait in the buffer for the next one.
    out << Record(frame).dump() << '\n' << std::flush;
    progress.Draw(tally.done, tally.sent, 0);
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
  // The input is read on a thread of its own, ahead of what is sent: its
  // bytes say nothing of the progress.
  Progress progress(tty && args->Flag("--follow"), std::nullopt, err);
  Tally tally;
  auto outcome = client::Ingest(*server, *pipeline, reader,
                                Events(*args, progress, tally, out, err));
  out.flush();
  if (!outcome.ok()) {
    progress.Clear();
    return Report(*args, outcome.error(), err);
  }
  // A done job has ended every item, filtered ones (no record) included.
  bool done = outcome->job.value("state", "") == "done";
  progress.Finish(done ? tally.sent : tally.done, tally.sent, 0);
  if (!args->Flag("--follow")) out << outcome->job.dump() << std::endl;
  return Verdict(*args, *outcome, tally, err);
}

}  // namespace sluice::cli::client_cmd
