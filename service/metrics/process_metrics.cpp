// ProcessFamilies: /proc/self/stat (CPU, memory, threads, start), the
// entries of /proc/self/fd, getrlimit, and /proc/stat's boot time, as
// client_golang's process collector reads them.
#include "service/metrics/process_metrics.hpp"

#include <sys/resource.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <limits>
#include <optional>
#include <sstream>
#include <string>
#include <system_error>

namespace sluice::metrics {
namespace {

// The fields of /proc/self/stat that we export (proc(5) numbering).
struct Stat {
  double utime_ticks = 0;  // 14
  double stime_ticks = 0;  // 15
  double threads = 0;      // 20
  double start_ticks = 0;  // 22, since boot
  double vsize_bytes = 0;  // 23
  double rss_pages = 0;    // 24
};

std::optional<Stat> ReadStat() {
  std::ifstream in("/proc/self/stat");
  std::string line;
  if (!std::getline(in, line)) return std::nullopt;
  // The command name (field 2) is in parentheses and may hold spaces: the
  // fields we want are counted from after its closing one.
  const std::size_t close = line.rfind(')');
  if (close == std::string::npos) return std::nullopt;
  std::istringstream fields(line.substr(close + 1));
  std::string f;
  Stat s;
  for (int n = 3; fields >> f; ++n) {
    double* out = nullptr;
    switch (n) {
      case 14:
        out = &s.utime_ticks;
        break;
      case 15:
        out = &s.stime_ticks;
        break;
      case 20:
        out = &s.threads;
        break;
      case 22:
        out = &s.start_ticks;
        break;
      case 23:
        out = &s.vsize_bytes;
        break;
      case 24:
        out = &s.rss_pages;
        break;
      default:
        break;
    }
    if (out != nullptr) *out = std::stod(f);
    if (n == 24) return s;
  }
  return std::nullopt;
}

std::optional<double> BootTimeSeconds() {
  std::ifstream in("/proc/stat");
  std::string key;
  while (in >> key) {
    if (key == "btime") {
      double t = 0;
      if (in >> t) return t;
      return std::nullopt;
    }
    in.ignore(std::numeric_limits<std::streamsize>::max(), '\n');
  }
  return std::nullopt;
}

std::optional<double> OpenFds() {
  std::error_code ec;
  double n = 0;
  // Counts the iterator's own descriptor too, as client_golang does.
  for (std::filesystem::directory_iterator it("/proc/self/fd", ec), end;
       !ec && it != end; it.increment(ec)) {
    ++n;
  }
  if (ec) return std::nullopt;
  return n;
}

prometheus::MetricFamily One(const char* name, const char* help,
                             prometheus::MetricType type, double value) {
  prometheus::ClientMetric m;
  if (type == prometheus::MetricType::Counter) {
    m.counter.value = value;
  } else {
    m.gauge.value = value;
  }
  return prometheus::MetricFamily{name, help, type, {m}};
}

}  // namespace

std::vector<prometheus::MetricFamily> ProcessFamilies() {
  using prometheus::MetricType;
  std::vector<prometheus::MetricFamily> out;
  try {
    const double ticks = static_cast<double>(sysconf(_SC_CLK_TCK));
    const double page = static_cast<double>(sysconf(_SC_PAGESIZE));
    if (const std::optional<Stat> s = ReadStat(); s && ticks > 0) {
      out.push_back(One("process_cpu_seconds_total",
                        "Total user and system CPU time spent in seconds.",
                        MetricType::Counter,
                        (s->utime_ticks + s->stime_ticks) / ticks));
      out.push_back(One("process_resident_memory_bytes",
                        "Resident memory size in bytes.", MetricType::Gauge,
                        s->rss_pages * page));
      out.push_back(One("process_virtual_memory_bytes",
                        "Virtual memory size in bytes.", MetricType::Gauge,
                        s->vsize_bytes));
      out.push_back(One("process_threads", "Number of OS threads in use.",
                        MetricType::Gauge, s->threads));
      if (const std::optional<double> boot = BootTimeSeconds()) {
        out.push_back(
            One("process_start_time_seconds",
                "Start time of the process since unix epoch in seconds.",
                MetricType::Gauge, *boot + s->start_ticks / ticks));
      }
    }
    if (const std::optional<double> fds = OpenFds()) {
      out.push_back(One("process_open_fds", "Number of open file descriptors.",
                        MetricType::Gauge, *fds));
    }
    rlimit limit{};
    if (getrlimit(RLIMIT_NOFILE, &limit) == 0) {
      out.push_back(One("process_max_fds",
                        "Maximum number of open file descriptors.",
                        MetricType::Gauge,
                        limit.rlim_cur == RLIM_INFINITY
                            ? -1.0
                            : static_cast<double>(limit.rlim_cur)));
    }
  } catch (const std::exception&) {
    // A malformed /proc line (std::stod) or no memory: report what we have.
  }
  return out;
}

}  // namespace sluice::metrics
