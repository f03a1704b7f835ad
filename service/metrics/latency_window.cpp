// Implementation of sluice::metrics::LatencyWindow (see latency_window.hpp).
#include "service/metrics/latency_window.hpp"

#include <cmath>
#include <utility>

namespace sluice::metrics {

std::optional<double> HistogramQuantile(
    double q, const std::vector<double>& bounds,
    const std::vector<std::uint64_t>& delta) {
  if (delta.empty() || delta.back() == 0) return std::nullopt;
  const double rank = q * static_cast<double>(delta.back());
  for (std::size_t i = 0; i < delta.size(); ++i) {
    if (static_cast<double>(delta[i]) < rank) continue;
    if (std::isinf(bounds[i])) {
      // Past the last finite bound: all that can be said is "above it".
      return i == 0 ? std::nullopt : std::optional<double>(bounds[i - 1]);
    }
    const double lower = i == 0 ? 0.0 : bounds[i - 1];
    const double below = i == 0 ? 0.0 : static_cast<double>(delta[i - 1]);
    const double in_bucket = static_cast<double>(delta[i]) - below;
    if (in_bucket <= 0) return lower;
    return lower + (bounds[i] - lower) * (rank - below) / in_bucket;
  }
  return bounds.size() >= 2 ? std::optional<double>(bounds[bounds.size() - 2])
                            : std::nullopt;
}

LatencyWindow::LatencyWindow(prometheus::Histogram& histogram,
                             Clock::duration span)
    : histogram_(histogram), span_(span), newer_at_(Clock::now()) {}

std::optional<double> LatencyWindow::Quantile(double q, Clock::time_point now) {
  const prometheus::ClientMetric metric = histogram_.Collect();
  std::vector<double> bounds;
  std::vector<std::uint64_t> counts;
  for (const auto& bucket : metric.histogram.bucket) {
    bounds.push_back(bucket.upper_bound);
    counts.push_back(bucket.cumulative_count);
  }
  std::vector<std::uint64_t> delta = counts;
  {
    MutexLock lock(&mu_);
    if (now - newer_at_ >= span_) {
      older_ = std::exchange(newer_, counts);
      newer_at_ = now;
    }
    // Counts only grow, so a baseline is never above the current counts.
    for (std::size_t i = 0; i < older_.size() && i < delta.size(); ++i) {
      delta[i] -= older_[i];
    }
  }
  return HistogramQuantile(q, bounds, delta);
}

}  // namespace sluice::metrics
