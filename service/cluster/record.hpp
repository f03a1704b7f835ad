// What cluster mode keeps in JetStream, as values: the names of its streams,
// subjects and KV bucket (Names), a job's record in the KV bucket
// (JobRecord), and the codecs of an outcome message (the records of a batch
// of items, and the seqs it covers). No NATS calls here; docs/cluster.md
// explains the layout.
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
  // <prefix>.results.<job>: a job's log, its outcome messages then its seal.
  // One subject per job, not per item: NATS's cost of making a consumer
  // grows with the subjects a stream holds.
  std::string results_subject(std::string_view job) const;
};

// The states a record goes through: a jobs::JobState. Records written by
// releases before 2026-12 began `accepting` (items being stored; not a job
// yet); readers still treat such a record as not committed.
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

// An items message holds up to kChunkItems consecutive items of a job: the
// JSON array of them, the first one's seq in the Sluice-Seq header.
// An outcome message holds what a batch of a job's items ended as: their
// records, a line each — "<seq> v <value as JSON>" or "<seq> e
// {"error":...,"stage":...}" — and in the Sluice-Seqs header the seqs it
// covers ("3 4 9"); a seq with no record was filtered. Lines, not one JSON
// array, so that a reader keeps each value as text without parsing it
// (compact JSON holds no newline). A seal message (the final record,
// JobRecord::Serialize) has Sluice-Seal: 1.
inline constexpr const char* kSeqHeader = "Sluice-Seq";
inline constexpr const char* kSeqsHeader = "Sluice-Seqs";
inline constexpr const char* kSealHeader = "Sluice-Seal";
// On an outcome message that finishes its job alone (a batch that held
// every item, on their first delivery): the final record, so the message
// is the job's seal as well and readers apply it after its outcomes.
inline constexpr const char* kFinalHeader = "Sluice-Final";
inline constexpr std::size_t kChunkItems = 256;
// How long a job's items may wait for its record: items handed back for
// this long whose job has no record belong to a submit that died before
// its 202, and are dropped (worker.cpp NeverCommitted). A submit that takes
// half of it to store its items is refused instead of committed.
inline constexpr std::int64_t kAcceptTimeoutMs = 30000;
// The lines of `records` (none for no records; window records are left
// out, as cluster mode refuses windows).
std::string EncodeOutcome(const std::vector<jobs::ResultRecord>& records);
// The records of an outcome message, each value record's value_text set
// instead of its value (taken as written: not parsed, nor checked to be
// JSON); nullopt when a line is malformed.
std::optional<std::vector<jobs::ResultRecord>> DecodeOutcome(
    std::string_view data);
// "3 4 9" and back; nullopt when malformed.
std::string EncodeSeqs(const std::vector<std::uint64_t>& seqs);
std::optional<std::vector<std::uint64_t>> DecodeSeqs(std::string_view text);

// Unix milliseconds and back.
std::int64_t ToUnixMs(jobs::Job::Clock::time_point t);
jobs::Job::Clock::time_point FromUnixMs(std::int64_t ms);

}  // namespace sluice::cluster

#endif  // SLUICE_SERVICE_CLUSTER_RECORD_HPP_
