// What cluster mode keeps in JetStream, as values: the names of its streams,
// subjects and KV bucket (Names), a job's record in the KV bucket
// (JobRecord), and the codec of an outcome message (the records one input
// item ended as). No NATS calls here; docs/cluster.md explains the layout.
#ifndef SLUICE_SERVICE_CLUSTER_RECORD_HPP_
#define SLUICE_SERVICE_CLUSTER_RECORD_HPP_

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "service/jobs/job.hpp"

namespace sluice::cluster {

// Every name derives from cluster.nats.prefix. Thread-compatible (value).
struct Names {
  std::string prefix;

  std::string jobs_bucket() const { return prefix + "_jobs"; }
  std::string items_stream() const { return prefix + "_items"; }
  std::string results_stream() const { return prefix + "_results"; }
  // <prefix>.items.<pipeline>.<job>: one job's items.
  std::string items_subject(std::string_view pipeline,
                            std::string_view job) const;
  // <prefix>.items.<pipeline>.*: what a pipeline's consumer takes.
  std::string pipeline_items(std::string_view pipeline) const;
  // <prefix>.items.*.<job>: what is left of one job.
  std::string job_items(std::string_view job) const;
  // <prefix>.results.<job>.<seq>: the outcome of one input item.
  std::string outcome_subject(std::string_view job, std::uint64_t seq) const;
  // <prefix>.results.<job>.end: the seal, the job's final status.
  std::string seal_subject(std::string_view job) const;
  // <prefix>.results.<job>.>: a job's whole log.
  std::string job_results(std::string_view job) const;
};

// The states a record goes through: accepting (items being stored; not a
// job yet), then a jobs::JobState.
inline constexpr std::string_view kAccepting = "accepting";

// A job as its KV record holds it (key = id). Thread-compatible (value).
struct JobRecord {
  std::string id;
  std::string pipeline;
  std::string state{kAccepting};  // "accepting" or jobs::ToString(JobState)
  std::uint64_t in = 0;           // the job's items
  bool ordered = false;
  bool cancel = false;           // DELETE asked; workers drop its items
  bool open = false;             // an ingestion stream: `in` still grows
  std::int64_t lease_ms = 0;     // open: its replica renews it; past it,
                                 // the stream is taken as ended
  std::int64_t created_ms = 0;   // Unix milliseconds
  std::int64_t finished_ms = 0;  // 0 while it runs
  jobs::Counts counts;           // exact once final
  nlohmann::json aggregate;
  nlohmann::json error;
  std::uint64_t revision = 0;  // the KV revision it was read at (not stored)

  bool accepting() const { return state == kAccepting; }
  bool final() const;
  std::string Serialize() const;
  // nullopt when `text` is not a record sluice wrote.
  static std::optional<JobRecord> Parse(std::string_view text);
  // The record as a jobs::Job shows it.
  jobs::Job::Summary summary() const;
};

// An outcome message: the JSON array of the item's records (jobs::ToJson)
// and, in the Sluice-Counts header, "<filtered> <cancelled>".
inline constexpr const char* kCountsHeader = "Sluice-Counts";
inline constexpr const char* kSeqHeader = "Sluice-Seq";
std::string EncodeOutcome(const std::vector<jobs::ResultRecord>& records);
// The records of an outcome message, or nullopt when it is malformed.
std::optional<std::vector<jobs::ResultRecord>> DecodeOutcome(
    std::string_view data);

// Unix milliseconds and back.
std::int64_t ToUnixMs(jobs::Job::Clock::time_point t);
jobs::Job::Clock::time_point FromUnixMs(std::int64_t ms);

}  // namespace sluice::cluster

#endif  // SLUICE_SERVICE_CLUSTER_RECORD_HPP_
