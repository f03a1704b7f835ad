// sluice::metrics::ProcessFamilies — the process_* metric families that
// every Prometheus client library exports (DESIGN.md §3.8), read from
// /proc/self at each scrape:
//   process_cpu_seconds_total      counter  user + system CPU time
//   process_resident_memory_bytes  gauge    resident set size
//   process_virtual_memory_bytes   gauge    virtual memory size
//   process_open_fds               gauge    open file descriptors
//   process_max_fds                gauge    the soft RLIMIT_NOFILE
//   process_start_time_seconds     gauge    start, in seconds since the epoch
//   process_threads                gauge    threads of the process
#ifndef SLUICE_SERVICE_METRICS_PROCESS_METRICS_HPP_
#define SLUICE_SERVICE_METRICS_PROCESS_METRICS_HPP_

#include <prometheus/metric_family.h>

#include <vector>

namespace sluice::metrics {

// Returns the families above, as of now. A value that cannot be read (no
// /proc, as outside Linux) leaves its family out rather than report a
// wrong number; never throws. Thread-safe (reads only).
std::vector<prometheus::MetricFamily> ProcessFamilies();

}  // namespace sluice::metrics

#endif  // SLUICE_SERVICE_METRICS_PROCESS_METRICS_HPP_
