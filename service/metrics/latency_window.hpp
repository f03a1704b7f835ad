// sluice::metrics::LatencyWindow — a quantile (e.g. p99) of one Prometheus
// histogram over a recent window rather than since the process started, for
// GET /v1/pipelines' per-stage `p99_seconds` (docs/api.md). The window is
// the difference between the histogram now and a baseline taken between one
// and two spans ago (the baseline moves forward when a call finds it older
// than a span), so every caller sees the same window, however many poll.
#ifndef SLUICE_SERVICE_METRICS_LATENCY_WINDOW_HPP_
#define SLUICE_SERVICE_METRICS_LATENCY_WINDOW_HPP_

#include <prometheus/histogram.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <vector>

#include "sluice/patterns/detail/thread_annotations.hpp"
#include "sluice/patterns/mutex.hpp"

namespace sluice::metrics {

// The q-quantile of the observations counted by `delta` (cumulative counts
// of the buckets with upper bounds `bounds`, the last being +Inf),
// interpolated linearly inside its bucket as Prometheus's
// histogram_quantile does; the highest finite bound when it falls in +Inf.
// Requires 0 <= q <= 1 and delta.size() == bounds.size(). nullopt when
// delta counts nothing.
std::optional<double> HistogramQuantile(
    double q, const std::vector<double>& bounds,
    const std::vector<std::uint64_t>& delta);

// Thread-safe: Quantile may be called from any thread.
class LatencyWindow {
 public:
  using Clock = std::chrono::steady_clock;

  // `histogram` must outlive the window. `span`: see the header comment.
  explicit LatencyWindow(prometheus::Histogram& histogram,
                         Clock::duration span = std::chrono::seconds(10));

  // The q-quantile (0 <= q <= 1) of the observations of the window, in the
  // histogram's unit; nullopt when the window holds none. Never throws but
  // for allocation failure.
  std::optional<double> Quantile(double q,
                                 Clock::time_point now = Clock::now());

 private:
  prometheus::Histogram& histogram_;
  const Clock::duration span_;
  Mutex mu_;
  // Cumulative bucket counts at the start of the window (empty: zero), and
  // the newer baseline that replaces it at the next move.
  std::vector<std::uint64_t> older_ SLUICE_GUARDED_BY(mu_);
  std::vector<std::uint64_t> newer_ SLUICE_GUARDED_BY(mu_);
  Clock::time_point newer_at_ SLUICE_GUARDED_BY(mu_);
};

}  // namespace sluice::metrics

#endif  // SLUICE_SERVICE_METRICS_LATENCY_WINDOW_HPP_
