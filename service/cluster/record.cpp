#include "service/cluster/record.hpp"

#include <charconv>
#include <chrono>

#include "service/util/text.hpp"

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

namespace {

// "<seq> v " or "<seq> e ": the head of an outcome line.
void AppendLineHead(std::uint64_t seq, char kind, std::string* out) {
  char buf[24];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, seq);
  out->append(buf, end);
  out->push_back(' ');
  out->push_back(kind);
  out->push_back(' ');
}

// One outcome line's record, or nullopt when the line is malformed.
std::optional<jobs::ResultRecord> DecodeLine(std::string_view line) {
  jobs::ResultRecord r;
  auto [end, ec] =
      std::from_chars(line.data(), line.data() + line.size(), r.seq);
  const std::size_t at = static_cast<std::size_t>(end - line.data());
  if (ec != std::errc() || at == 0 || line.size() < at + 4 || line[at] != ' ' ||
      line[at + 2] != ' ') {
    return std::nullopt;
  }
  const std::string_view text = line.substr(at + 3);
  if (line[at + 1] == 'v') {
    // Kept as text, unchecked: a replica shows it without parsing it. The
    // results stream is trusted as the job records are: only sluice
    // replicas publish on it (docs/cluster.md "Trust"); checking each value
    // cost a tenth of a replica's CPU.
    r.value_text = std::string(text);
    return r;
  }
  if (line[at + 1] != 'e') return std::nullopt;
  const nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
  if (!j.is_object() || !j.contains("error") || !j["error"].is_string() ||
      !j.contains("stage") || !j["stage"].is_string()) {
    return std::nullopt;
  }
  r.is_error = true;
  r.error = j["error"].get<std::string>();
  r.stage = j["stage"].get<std::string>();
  return r;
}

}  // namespace

std::string EncodeOutcome(const std::vector<jobs::ResultRecord>& records) {
  std::string out;
  for (const jobs::ResultRecord& r : records) {
    if (r.window) continue;  // windows are refused in cluster mode
    AppendLineHead(r.seq, r.is_error ? 'e' : 'v', &out);
    if (r.is_error) {
      out += DumpLenient({{"error", r.error}, {"stage", r.stage}});
    } else if (!r.value_text.empty()) {
      out += r.value_text;
    } else {
      out += DumpLenient(r.value);
    }
    out.push_back('\n');
  }
  return out;
}

std::optional<std::vector<jobs::ResultRecord>> DecodeOutcome(
    std::string_view data) {
  std::vector<jobs::ResultRecord> out;
  while (!data.empty()) {
    const std::size_t nl = data.find('\n');
    if (nl == std::string_view::npos) return std::nullopt;  // cut short
    std::optional<jobs::ResultRecord> r = DecodeLine(data.substr(0, nl));
    if (!r) return std::nullopt;
    out.push_back(std::move(*r));
    data.remove_prefix(nl + 1);
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
