#include "service/cluster/record.hpp"

#include <charconv>
#include <chrono>

namespace sluice::cluster {

std::string Names::items_subject(std::string_view pipeline,
                                 std::string_view job) const {
  return prefix + ".items." + std::string(pipeline) + "." + std::string(job);
}
std::string Names::pipeline_items(std::string_view pipeline) const {
  return prefix + ".items." + std::string(pipeline) + ".*";
}
std::string Names::job_items(std::string_view job) const {
  return prefix + ".items.*." + std::string(job);
}
std::string Names::results_subject(std::string_view job) const {
  return prefix + ".results." + std::string(job);
}

bool JobRecord::final() const {
  return state == "done" || state == "failed" || state == "cancelled";
}

std::string JobRecord::Serialize() const {
  nlohmann::json j = {{"id", id},
                      {"pipeline", pipeline},
                      {"state", state},
                      {"in", in},
                      {"ordered", ordered},
                      {"cancel", cancel},
                      {"open", open},
                      {"lease_ms", lease_ms},
                      {"created_ms", created_ms},
                      {"finished_ms", finished_ms},
                      {"counts",
                       {{"out", counts.out},
                        {"filtered", counts.filtered},
                        {"errors", counts.errors},
                        {"cancelled", counts.cancelled}}},
                      {"aggregate", aggregate},
                      {"error", error}};
  return j.dump();
}

namespace {

// Counts and sizes are unsigned integers, times signed ones: a corrupt
// record (in: -1) must be refused, not wrapped into a huge size.
bool NumbersAreWhole(const nlohmann::json& j) {
  if (!j.at("in").is_number_unsigned()) return false;
  for (const char* key : {"created_ms", "finished_ms", "lease_ms"}) {
    if (j.contains(key) && !j[key].is_number_integer()) return false;
  }
  for (const auto& [key, value] : j.at("counts").items()) {
    if (!value.is_number_unsigned()) return false;
  }
  return true;
}

}  // namespace

std::optional<JobRecord> JobRecord::Parse(std::string_view text) {
  nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
  if (!j.is_object() || !j.contains("id") || !j["id"].is_string()) {
    return std::nullopt;
  }
  try {
    if (!NumbersAreWhole(j)) return std::nullopt;
    JobRecord r;
    r.id = j.at("id").get<std::string>();
    r.pipeline = j.at("pipeline").get<std::string>();
    r.state = j.at("state").get<std::string>();
    r.in = j.at("in").get<std::uint64_t>();
    r.ordered = j.value("ordered", false);
    r.cancel = j.value("cancel", false);
    r.open = j.value("open", false);
    r.lease_ms = j.value("lease_ms", std::int64_t{0});
    r.created_ms = j.value("created_ms", std::int64_t{0});
    r.finished_ms = j.value("finished_ms", std::int64_t{0});
    const nlohmann::json& c = j.at("counts");
    r.counts.in = r.in;
    r.counts.out = c.value("out", std::uint64_t{0});
    r.counts.filtered = c.value("filtered", std::uint64_t{0});
    r.counts.errors = c.value("errors", std::uint64_t{0});
    r.counts.cancelled = c.value("cancelled", std::uint64_t{0});
    r.aggregate = j.value("aggregate", nlohmann::json());
    r.error = j.value("error", nlohmann::json());
    return r;
  } catch (const nlohmann::json::exception&) {
    return std::nullopt;
  }
}

namespace {

jobs::JobState StateOf(std::string_view state) {
  if (state == "running") return jobs::JobState::kRunning;
  if (state == "done") return jobs::JobState::kDone;
  if (state == "failed") return jobs::JobState::kFailed;
  if (state == "cancelled") return jobs::JobState::kCancelled;
  return jobs::JobState::kQueued;
}

}  // namespace

jobs::Job::Summary JobRecord::summary() const {
  jobs::Job::Summary s;
  s.state = StateOf(state);
  s.counts = counts;
  s.counts.in = in;
  if (final()) {
    s.completed = in;
    s.finished_at = FromUnixMs(finished_ms);
    s.started_at = FromUnixMs(created_ms);
  }
  s.aggregate = aggregate;
  s.error = error;
  return s;
}

std::string EncodeOutcome(const std::vector<jobs::ResultRecord>& records) {
  nlohmann::json array = nlohmann::json::array();
  for (const jobs::ResultRecord& r : records) array.push_back(jobs::ToJson(r));
  return array.dump();
}

std::optional<std::vector<jobs::ResultRecord>> DecodeOutcome(
    std::string_view data) {
  nlohmann::json array = nlohmann::json::parse(data, nullptr, false);
  if (!array.is_array()) return std::nullopt;
  std::vector<jobs::ResultRecord> out;
  out.reserve(array.size());
  for (nlohmann::json& j : array) {
    if (!j.is_object() || !j.contains("seq") ||
        !j["seq"].is_number_unsigned()) {
      return std::nullopt;
    }
    jobs::ResultRecord r;
    r.seq = j["seq"].get<std::uint64_t>();
    if (j.contains("error")) {
      const nlohmann::json& stage =
          j.contains("stage") ? j["stage"] : j["error"];
      if (!j["error"].is_string() || !stage.is_string()) return std::nullopt;
      r.is_error = true;
      r.error = j["error"].get<std::string>();
      r.stage = j.value("stage", std::string());
    } else {
      r.value = std::move(j["value"]);
    }
    out.push_back(std::move(r));
  }
  return out;
}

std::string EncodeSeqs(const std::vector<std::uint64_t>& seqs) {
  std::string out;
  for (std::uint64_t seq : seqs) {
    if (!out.empty()) out += ' ';
    out += std::to_string(seq);
  }
  return out;
}

std::optional<std::vector<std::uint64_t>> DecodeSeqs(std::string_view text) {
  std::vector<std::uint64_t> out;
  const char* p = text.data();
  const char* end = text.data() + text.size();
  while (p < end) {
    std::uint64_t seq = 0;
    auto [next, ec] = std::from_chars(p, end, seq);
    if (ec != std::errc()) return std::nullopt;
    out.push_back(seq);
    p = next;
    if (p < end && *p != ' ') return std::nullopt;
    if (p < end) ++p;
  }
  return out;
}

std::int64_t ToUnixMs(jobs::Job::Clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             t.time_since_epoch())
      .count();
}

jobs::Job::Clock::time_point FromUnixMs(std::int64_t ms) {
  return jobs::Job::Clock::time_point(std::chrono::milliseconds(ms));
}

}  // namespace sluice::cluster
