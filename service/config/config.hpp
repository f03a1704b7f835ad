// Defines sluice::config: the service's configuration (the structs contract
// §C4 describes, and the cluster section of DESIGN §3.7) and the loader that
// parses YAML or JSON text into them, substituting ${ENV:-default} and
// validating every key.
#ifndef SLUICE_SERVICE_CONFIG_CONFIG_HPP_
#define SLUICE_SERVICE_CONFIG_CONFIG_HPP_

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "service/util/result.hpp"

namespace sluice::config {

// All config structs below are plain values: thread-compatible, and safe to
// read from any number of threads once loaded.

// server.auth. Thread-compatible (plain value).
struct AuthConfig {
  // Name of the environment variable holding the accepted bearer tokens
  // (comma-separated). "" = auth off.
  std::string tokens_env;
};

// server.tls: PEM certificate chain and unencrypted key files; when both are
// set the one port serves HTTPS and WSS only (docs/security.md). Both set or
// both empty. Thread-compatible (plain value).
struct TlsConfig {
  std::string cert, key;
};

// server. Thread-compatible (plain value).
struct ServerConfig {
  std::string listen =
      "0.0.0.0:8080";  // host:port; see units.hpp ParseHostPort
  int io_threads = 2;
  std::uint64_t max_body_bytes = std::uint64_t{16} * 1024 * 1024;
  std::size_t max_connections = 10000;
  std::chrono::milliseconds shutdown_grace{30000};
  std::chrono::milliseconds idle_timeout{60000};  // per-connection read timeout
  std::size_t max_header_bytes = 16384;
  AuthConfig auth;
  TlsConfig tls;
};

// jobs. Thread-compatible (plain value).
struct JobsConfig {
  std::uint64_t max_pending_items = 1000000;
  std::chrono::milliseconds retention{600000};
  // The results of all jobs, running and finished (>= 1 MiB).
  std::uint64_t max_retained_bytes = 268435456;
  // The results of one job; beyond it the job fails. <= max_retained_bytes;
  // when not set, max_retained_bytes / 4.
  std::uint64_t max_job_result_bytes = 67108864;
  // How long a finished job is safe from eviction for room. <= retention;
  // when not set, the smaller of 10s and retention.
  std::chrono::milliseconds min_retention{10000};
};

// One stage's processor: `type` plus its parameters. Thread-compatible
// (plain value).
struct ProcessorSpec {
  std::string type;
  // The processor map minus "type" (always a JSON object), validated by
  // SpecChecks::processor when it came from LoadConfig*.
  nlohmann::json params = nlohmann::json::object();
};

// pipelines[i].stages[j]. Thread-compatible (plain value).
struct StageConfig {
  std::string name;  // unique in its pipeline; default "<type>_<index>"
  ProcessorSpec processor;
  std::size_t workers = 1;   // 1..4096
  std::size_t buffer = 256;  // input channel capacity, 0..1000000
  // Per-key ordering: a JSON pointer into the item ("/user_id"). When set,
  // items with equal key values go to the same worker, in arrival order.
  // Empty: any worker takes any item.
  std::string key;
  bool keyed = false;  // true when `key` was given (it may be "")
};

// pipelines[i].aggregate.window: tumbling windows over the result values.
// At most one of the two is non-zero; both zero = no window (one aggregate
// for the whole job). Thread-compatible (plain value).
struct WindowSpec {
  std::uint64_t items = 0;             // a window closes after N values
  std::chrono::milliseconds every{0};  // a window closes every period
  bool enabled() const { return items != 0 || every.count() != 0; }
};

// pipelines[i].aggregate (contract §C4). Unused members are "". Thread-
// compatible (plain value).
struct AggregateSpec {
  std::string type = "collect";  // collect|count|sum|min|max|avg|group_by
  std::string field;             // JSON pointer; "" = the value itself
  std::string op;                // group_by: count|sum
  std::string value;             // group_by op sum: JSON pointer to the number
  WindowSpec window;
};

// pipelines[i]. Thread-compatible (plain value).
struct PipelineConfig {
  std::string name;  // unique, [A-Za-z0-9_-]+
  bool ordered = false;
  std::vector<StageConfig> stages;  // at least one
  AggregateSpec aggregate;
};

// cluster.nats: the NATS JetStream system replicas share (docs/cluster.md).
// Thread-compatible (plain value).
struct NatsConfig {
  // "nats://h:p[,nats://h2:p2]"; empty = cluster mode off.
  std::string url;
  // [A-Za-z0-9_-]+: stream, consumer and KV names.
  std::string prefix = "sluice";
  int replicas = 1;  // JetStream replication factor, 1..5
  std::chrono::milliseconds ack_wait{30000};  // >= 1s
};
// cluster: Thread-compatible (plain value).
struct ClusterConfig {
  NatsConfig nats;
  bool enabled() const { return !nats.url.empty(); }
};

// The whole configuration. Thread-compatible (plain value).
struct Config {
  ServerConfig server;
  JobsConfig jobs;
  std::vector<PipelineConfig> pipelines;  // at least one
  // Cluster mode is on when cluster.nats.url is non-empty; the loader then
  // refuses what it cannot keep (keyed stages, windows).
  ClusterConfig cluster;
};

// One problem found while loading: `path` is the full key path
// ("pipelines[0].stages[2].workers"; for YAML syntax and ${ENV} errors,
// "line L, column C"; for an unreadable file, the file name) and `message`
// says why ("must be >= 1"). Thread-compatible (plain value).
struct ConfigError {
  std::string path;
  std::string message;
};

// "path: message", or just the message when path is empty. This is the
// format `sluice check` prints, one error per line.
std::string ToString(const ConfigError& error);

// What the options of a processor or an aggregate mean is the processors'
// business; config knows only where they sit. The loader hands every spec
// to these checks and prefixes what they report (paths relative to the
// spec's map) with the spec's key path. processors::ConfigChecks() returns
// the real ones (processors/checks.hpp); an empty function accepts every
// spec, which only tests of the document's shape want. Each check must be
// thread-safe and must not throw. Thread-compatible.
struct SpecChecks {
  std::function<std::vector<ConfigError>(const ProcessorSpec&)> processor;
  std::function<std::vector<ConfigError>(const AggregateSpec&)> aggregate;
};

// Parses YAML (or JSON, which is YAML) `text` after ${VAR} / ${VAR:-default}
// substitution ($$ is a literal $), then validates everything: unknown keys,
// wrong types, value ranges, and every processor's params and every
// aggregate through `checks`; with cluster mode on, also each keyed stage
// and each window, which cluster mode cannot keep (reported last, at their
// key paths). Missing keys take the defaults above. Returns the Config, or
// every error found (never an empty vector), in document order but for those
// refusals. Never throws.
Result<Config, std::vector<ConfigError>> LoadConfigText(
    std::string_view text, const SpecChecks& checks);

// Reads the file at `path` and calls LoadConfigText. An unreadable file is
// one ConfigError whose path is `path`. Never throws.
Result<Config, std::vector<ConfigError>> LoadConfigFile(
    const std::string& path, const SpecChecks& checks);

// Parses one YAML (or JSON) document into JSON the way the loader reads
// every value: maps become objects, lists arrays, plain scalars null,
// booleans, numbers or strings by the YAML 1.2 core schema, quoted scalars
// strings. No ${ENV} substitution and no schema: for other YAML files that
// sluice reads (`sluice test` files). Returns the value (null for an empty
// document) or every error: syntax ("line L, column C"), duplicate keys and
// the alias bounds (paths as in ConfigError, rooted at the document).
// Never throws.
Result<nlohmann::json, std::vector<ConfigError>> ParseYaml(
    std::string_view text);

// A human-readable multi-line description of a loaded config (listen
// address, each pipeline's stages, workers, buffers and aggregate): what
// `sluice check` prints on success. Ends with a newline. Bytes of the
// config that are not UTF-8 print as U+FFFD. Throws only std::bad_alloc.
std::string Summary(const Config& config);

// The text of config/default.yaml as it was when sluice was built (embedded
// so the binary can run without a config file on disk).
std::string_view DefaultConfigText();

}  // namespace sluice::config

#endif  // SLUICE_SERVICE_CONFIG_CONFIG_HPP_
