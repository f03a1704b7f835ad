// Defines sluice::http::BuildResultsPage: one page of a job's result log for
// `GET /v1/jobs/ID/results` (contract §C2), bounded by bytes as well as by
// `limit`, so a page never makes the server hold more than about
// kResultsPageBytes per request however large the records are.
#ifndef SLUICE_SERVICE_HTTP_RESULTS_PAGE_HPP_
#define SLUICE_SERVICE_HTTP_RESULTS_PAGE_HPP_

#include <cstddef>
#include <string>

#include "service/jobs/job.hpp"

namespace sluice::http {

// Most bytes of record text in one page (JSON or NDJSON). A page always
// carries the record at its offset, however large, so it can exceed this by
// one record.
inline constexpr std::size_t kResultsPageBytes = std::size_t{1} << 20;

// One page, ready to send. Thread-compatible (plain value).
struct ResultsPage {
  std::string body;
  std::size_t offset = 0;
  // Records in the page.
  std::size_t count = 0;
  // The `limit` the page answers for: the one asked, or `count` when the
  // byte budget ended the page first, so offset + limit is always where the
  // next page starts.
  std::size_t limit = 0;
  // offset + count: the next page's offset.
  std::size_t next_offset = 0;
  // Records in the log when the page was read.
  std::size_t total = 0;
};

// Up to `limit` records of `job`'s log from `offset`, stopping before a
// record that would take the page's record text past `max_bytes` (never
// before the first one). The copies it takes of the log are bounded by
// `max_bytes` (in RecordCost) as well. `ndjson`: the body is one record per
// line; else {"offset","results":[...],"limit","next_offset","total"}.
ResultsPage BuildResultsPage(const jobs::Job& job, std::size_t offset,
                             std::size_t limit, bool ndjson,
                             std::size_t max_bytes = kResultsPageBytes);

}  // namespace sluice::http

#endif  // SLUICE_SERVICE_HTTP_RESULTS_PAGE_HPP_
