#include "service/http/results_page.hpp"

#include <nlohmann/json.hpp>
#include <vector>

namespace sluice::http {

ResultsPage BuildResultsPage(const jobs::Job& job, std::size_t offset,
                             std::size_t limit, bool ndjson,
                             std::size_t max_bytes) {
  ResultsPage page;
  page.offset = offset;
  // JSON: the records go straight into the body after this head; the
  // counts, known only at the end, follow them (key order is free).
  std::string& body = page.body;
  if (!ndjson)
    body = R"({"offset":)" + std::to_string(offset) + R"(,"results":[)";
  const std::size_t start = body.size();
  bool cut = false;
  while (page.count < limit && !cut) {
    // A bounded copy: at most max_bytes of records (by RecordCost) at once.
    std::vector<jobs::ResultRecord> chunk =
        job.Results(offset + page.count, limit - page.count, max_bytes);
    if (chunk.empty()) break;
    for (const jobs::ResultRecord& record : chunk) {
      std::string text = jobs::RecordText(record);
      if (page.count > 0 && body.size() - start + text.size() + 1 > max_bytes) {
        cut = true;
        break;
      }
      if (!ndjson && page.count > 0) body += ',';
      body += text;
      if (ndjson) body += '\n';
      ++page.count;
    }
  }
  page.limit = cut ? page.count : limit;
  page.next_offset = offset + page.count;
  page.total = job.result_count();  // read last: the log only grows
  if (!ndjson) {
    body += R"(],"limit":)" + std::to_string(page.limit) +
            R"(,"next_offset":)" + std::to_string(page.next_offset) +
            R"(,"total":)" + std::to_string(page.total) + "}";
  }
  return page;
}

}  // namespace sluice::http
