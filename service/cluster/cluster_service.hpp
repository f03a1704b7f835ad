// cluster::ClusterService: engine::JobService over NATS JetStream, so that
// every replica started with the same config serves every job and a
// `kill -9` of any of them loses nothing accepted (DESIGN.md §3.7,
// docs/cluster.md). A job's items are stored in a JetStream work queue
// before the 202; every replica pulls items as it has room, runs them
// through its local engine::Engine, and publishes their outcomes to the
// job's log, where readers count each seq's first outcome; any replica
// seals the job once every item has one, and any replica shows it by
// following its log.
#ifndef SLUICE_SERVICE_CLUSTER_CLUSTER_SERVICE_HPP_
#define SLUICE_SERVICE_CLUSTER_CLUSTER_SERVICE_HPP_

#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "service/config/config.hpp"
#include "service/engine/engine.hpp"
#include "service/engine/job_service.hpp"
#include "service/util/result.hpp"

namespace sluice::metrics {
class Metrics;
}  // namespace sluice::metrics

namespace sluice::cluster {

class ClusterImpl;

// Thread-safe: every JobService method may be called from any thread.
// Submit, Find, List and Cancel make NATS round trips (each bounded by a few
// seconds) on the calling thread.
class ClusterService final : public engine::JobService {
 public:
  // Connects to config.cluster.nats (retrying in the background while NATS
  // is down: the service answers 503 nats_unavailable until it is up),
  // creates or updates the streams, KV bucket and consumers, and starts
  // pulling items for `engine`'s pipelines.
  // Requires: config.cluster.enabled(); `engine` and `metrics` outlive the
  // service. Fails (Error{"cluster", ...}) only when the options are
  // unusable (a malformed URL), never because NATS is down.
  static Result<std::unique_ptr<ClusterService>> Start(
      const config::Config& config, engine::Engine& engine,
      metrics::Metrics& metrics);
  // StopTaking(), then closes the NATS connection and joins every thread.
  ~ClusterService() override;

  ClusterService(const ClusterService&) = delete;
  ClusterService& operator=(const ClusterService&) = delete;

  // 202 only after JetStream acknowledged every item and the job's record
  // was committed; any failure leaves nothing behind. Refusals as the
  // engine's, plus kUnavailable while NATS cannot be reached.
  Result<std::shared_ptr<jobs::Job>, engine::Refusal> Submit(
      engine::SubmitRequest request) override;
  // Items are stored as text: a request may carry item_texts alone.
  bool TakesItemTexts() const override { return true; }
  // Not in this release: always kUnavailable (docs/cluster.md).
  Result<std::shared_ptr<engine::IngestFeed>, engine::Refusal> OpenStream(
      std::string_view pipeline) override;
  // Any job of the cluster, followed live from its log; null when unknown.
  std::shared_ptr<jobs::Job> Find(std::string_view id) const override;
  // The cluster's jobs, newest first (summaries: no results).
  std::vector<std::shared_ptr<jobs::Job>> List(
      std::size_t limit) const override;
  // Marks the job cancelled in its record; every replica drops its items.
  bool Cancel(std::string_view id) override;
  std::vector<engine::PipelineSnapshot> Pipelines() const override;
  bool draining() const override;
  bool overloaded() const override;
  int retry_after_seconds() const override;
  std::optional<std::string> unavailable() const override;

  // The shutdown's first step (before the engine's): stops pulling items;
  // items already taken finish and are acknowledged, or are handed back
  // (nak) so another replica takes them at once. Idempotent.
  void StopTaking();

 private:
  explicit ClusterService(std::unique_ptr<ClusterImpl> impl);
  std::unique_ptr<ClusterImpl> impl_;
};

}  // namespace sluice::cluster

#endif  // SLUICE_SERVICE_CLUSTER_CLUSTER_SERVICE_HPP_
