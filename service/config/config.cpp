#include "service/config/config.hpp"

#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>

#include <charconv>
#include <exception>
#include <fstream>
#include <functional>
#include <limits>
#include <map>
#include <set>
#include <sstream>

#include "service/config/units.hpp"
#include "service/util/json_pointer.hpp"
#include "service/util/text.hpp"

namespace sluice::config {

namespace {

using nlohmann::json;
using Errors = std::vector<ConfigError>;

bool IsIdentChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
         (c >= '0' && c <= '9') || c == '_';
}

// Bounds of a config's values as JSON (Loader::ToJson).
constexpr std::size_t kMaxConfigDepth = 64;
constexpr std::size_t kMaxConfigValues = 100000;
// Smallest jobs.max_retained_bytes (the results of running jobs count
// against it too, so 0 would fail every job) and jobs.max_job_result_bytes.
constexpr std::uint64_t kMinRetainedBytes = std::uint64_t{1} << 20;
constexpr std::uint64_t kMinJobResultBytes = std::uint64_t{1} << 10;

// Processor params fit to print: header values (an http stage's
// Authorization, API keys) are secrets, so only their names are shown.
json MaskedParams(const json& params) {
  auto headers = params.find("headers");
  if (headers == params.end() || !headers->is_object()) return params;
  json masked = params;
  for (auto& [name, value] : masked["headers"].items()) value = "***";
  return masked;
}

// A map key as a path segment: identifiers as-is, anything else quoted in
// brackets so the path stays unambiguous (fields["/a/b"]).
std::string KeySegment(std::string_view key) {
  bool plain = !key.empty();
  for (char c : key) plain = plain && IsIdentChar(c);
  return plain ? std::string(key) : "[" + DumpLenient(key) + "]";
}

// Joins a path and a relative path ("a" + "b" → "a.b", "a" + "[0]" → "a[0]").
std::string Join(const std::string& path, std::string_view rel) {
  if (rel.empty()) return path;
  if (path.empty()) return std::string(rel);
  if (rel.front() == '[') return path + std::string(rel);
  return path + "." + std::string(rel);
}

std::string Index(const std::string& path, std::size_t i) {
  return path + "[" + std::to_string(i) + "]";
}

// A valid pipeline or stage name: also a metrics label and a URL parameter.
bool IsName(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    if (!IsIdentChar(c) && c != '-') return false;
  }
  return true;
}

bool IsEnvName(std::string_view s) {
  if (s.empty() || (s.front() >= '0' && s.front() <= '9')) return false;
  for (char c : s) {
    if (!IsIdentChar(c)) return false;
  }
  return true;
}

// Why one element of cluster.nats.url is not scheme://[user@]host:port with
// scheme nats or tls, or "" when it is. Credentials may precede the host
// (nats.c accepts them there); whitespace never passes, so the list splits
// on ',' alone wherever it is read.
std::string NatsUrlProblem(std::string_view element) {
  std::string_view rest = element;
  if (rest.starts_with("nats://")) {
    rest.remove_prefix(7);
  } else if (rest.starts_with("tls://")) {
    rest.remove_prefix(6);
  } else {
    return "must start with nats:// or tls://";
  }
  if (const auto at = rest.rfind('@'); at != std::string_view::npos) {
    rest.remove_prefix(at + 1);
  }
  auto hp = ParseHostPort(rest);
  if (!hp.ok() || hp.value().port == 0) {
    return "must be nats://host:port or tls://host:port (a port 1..65535)";
  }
  return "";
}

// "a,b,,c" → {"a", "b", "", "c"}; "" → {""}.
std::vector<std::string_view> SplitOnComma(std::string_view s) {
  std::vector<std::string_view> out;
  for (std::size_t start = 0;;) {
    const std::size_t comma = s.find(',', start);
    out.push_back(s.substr(start, comma - start));
    if (comma == std::string_view::npos) return out;
    start = comma + 1;
  }
}

// `url` with the credentials of each element (what precedes '@') masked:
// `sluice check` output lands in CI logs.
std::string MaskedNatsUrl(std::string_view url) {
  std::string out;
  for (std::string_view element : SplitOnComma(url)) {
    if (!out.empty()) out += ',';
    const auto scheme = element.find("://");
    const auto at = element.rfind('@');
    if (scheme != std::string_view::npos && at != std::string_view::npos &&
        at > scheme) {
      out += std::string(element.substr(0, scheme + 3)) + "***" +
             std::string(element.substr(at));
    } else {
      out += std::string(element);
    }
  }
  return out;
}

bool MatchesAll(std::string_view s, bool (*pred)(char)) {
  for (char c : s) {
    if (!pred(c)) return false;
  }
  return true;
}

bool IsDigitChar(char c) { return c >= '0' && c <= '9'; }

// A plain (unquoted) YAML scalar resolved by the YAML 1.2 core schema, as a
// JSON user expects: null, booleans, integers, floats, else a string.
json ResolvePlain(const std::string& s) {
  if (s.empty() || s == "~" || s == "null" || s == "Null" || s == "NULL") {
    return nullptr;
  }
  if (s == "true" || s == "True" || s == "TRUE") return true;
  if (s == "false" || s == "False" || s == "FALSE") return false;
  std::string_view body = s;
  const bool negative = !body.empty() && body.front() == '-';
  if (!body.empty() && (body.front() == '-' || body.front() == '+')) {
    body.remove_prefix(1);
  }
  if (!body.empty() && MatchesAll(body, IsDigitChar)) {
    const char* first = s.data() + (s.front() == '+' ? 1 : 0);
    const char* last = s.data() + s.size();
    std::int64_t i = 0;
    if (auto [p, ec] = std::from_chars(first, last, i);
        ec == std::errc() && p == last) {
      return i;
    }
    std::uint64_t u = 0;
    if (!negative) {
      if (auto [p, ec] = std::from_chars(first, last, u);
          ec == std::errc() && p == last) {
        return u;
      }
    }
  }
  // Floats: digits with a '.' and/or an exponent (not ".inf"/".nan": JSON has
  // no such numbers, so those stay strings).
  bool has_digit = false;
  bool ok = !body.empty();
  for (char c : body) {
    if (IsDigitChar(c)) {
      has_digit = true;
    } else if (c != '.' && c != 'e' && c != 'E' && c != '+' && c != '-') {
      ok = false;
    }
  }
  if (ok && has_digit) {
    const char* first = s.data() + (s.front() == '+' ? 1 : 0);
    const char* last = s.data() + s.size();
    double d = 0;
    if (auto [p, ec] = std::from_chars(first, last, d);
        ec == std::errc() && p == last) {
      return d;
    }
  }
  return s;
}

std::string Describe(const json& v) {
  switch (v.type()) {
    case json::value_t::null:
      return "null";
    case json::value_t::boolean:
      return "a boolean";
    case json::value_t::string:
      return "a string";
    case json::value_t::number_integer:
    case json::value_t::number_unsigned:
      return "an integer";
    case json::value_t::number_float:
      return "a number";
    case json::value_t::object:
      return "a map";
    case json::value_t::array:
      return "a list";
    default:
      return "something else";
  }
}

// One map key and what to do with its value.
struct Field {
  std::string_view key;
  std::function<void(const YAML::Node& value, const std::string& path)> read;
};

// Walks the YAML document into a Config, collecting every error.
class Loader {
 public:
  explicit Loader(const SpecChecks& checks) : checks_(checks) {}

  Errors errors;

  // What ToJson has built, and whether it hit a bound (see there).
  std::size_t values = 0;
  bool out_of_bounds = false;

  void Report(std::string path, std::string message) {
    errors.push_back({std::move(path), std::move(message)});
  }

  // Any YAML node as JSON (maps → objects, lists → arrays, scalars by the
  // core schema; quoted scalars are always strings). Duplicate or non-scalar
  // keys are reported.
  //
  // Bounded, because aliases make a YAML document a graph: `&a [*a]` is a
  // list holding itself (found by tests/fuzz/config_fuzz: the walk
  // overflowed the stack), and aliases of aliases expand exponentially
  // ("billion laughs"). Deeper than kMaxConfigDepth levels, or past
  // kMaxConfigValues values over the whole load, is an error at the path.
  json ToJson(const YAML::Node& n, const std::string& path,
              std::size_t depth = 0) {
    if (out_of_bounds) return nullptr;  // reported once, where it happened
    if (depth > kMaxConfigDepth) {
      out_of_bounds = true;
      Report(path, "nested deeper than " + std::to_string(kMaxConfigDepth) +
                       " levels (a recursive alias?)");
      return nullptr;
    }
    if (++values > kMaxConfigValues) {
      out_of_bounds = true;
      Report(path, "the config expands to more than " +
                       std::to_string(kMaxConfigValues) +
                       " values (aliases of aliases?)");
      return nullptr;
    }
    switch (n.Type()) {
      case YAML::NodeType::Null:
      case YAML::NodeType::Undefined:
        return nullptr;
      case YAML::NodeType::Scalar: {
        const std::string& tag = n.Tag();
        // "!" marks a quoted or block scalar: the user said "string".
        if (tag == "!" || tag == "tag:yaml.org,2002:str") return n.Scalar();
        return ResolvePlain(n.Scalar());
      }
      case YAML::NodeType::Sequence: {
        json out = json::array();
        std::size_t i = 0;
        for (const YAML::Node& child : n) {
          out.push_back(ToJson(child, Index(path, i++), depth + 1));
        }
        return out;
      }
      case YAML::NodeType::Map: {
        json out = json::object();
        for (auto it = n.begin(); it != n.end(); ++it) {
          if (!it->first.IsScalar()) {
            Report(path, "map keys must be strings");
            continue;
          }
          const std::string& key = it->first.Scalar();
          const std::string child = Join(path, KeySegment(key));
          if (out.contains(key)) {
            Report(child, "duplicate key");
            continue;
          }
          out[key] = ToJson(it->second, child, depth + 1);
        }
        return out;
      }
    }
    return nullptr;
  }

  // Checks `n` is a map (null counts as an empty one) and dispatches each key
  // to its Field, reporting unknown and duplicate keys. False if not a map.
  bool VisitMap(const YAML::Node& n, const std::string& path,
                const std::vector<Field>& fields) {
    if (n.IsNull()) return true;
    if (!n.IsMap()) {
      Report(path, "must be a map, not " + Describe(ToJson(n, path)));
      return false;
    }
    std::set<std::string> seen;
    for (auto it = n.begin(); it != n.end(); ++it) {
      if (!it->first.IsScalar()) {
        Report(path, "map keys must be strings");
        continue;
      }
      const std::string& key = it->first.Scalar();
      const std::string child = Join(path, KeySegment(key));
      if (!seen.insert(key).second) {
        Report(child, "duplicate key");
        continue;
      }
      const Field* field = nullptr;
      for (const Field& f : fields) {
        if (f.key == key) field = &f;
      }
      if (field == nullptr) {
        std::string expected;
        for (const Field& f : fields) {
          expected += expected.empty() ? "" : ", ";
          expected += f.key;
        }
        Report(child, "unknown key (expected one of: " + expected + ")");
        continue;
      }
      field->read(it->second, child);
    }
    return true;
  }

  // False (after reporting) when `n` is not a string.
  bool ReadString(const YAML::Node& n, const std::string& path,
                  std::string* out) {
    const json v = ToJson(n, path);
    if (!v.is_string()) {
      Report(path, "must be a string, not " + Describe(v));
      return false;
    }
    *out = v.get<std::string>();
    return true;
  }

  void ReadBool(const YAML::Node& n, const std::string& path, bool* out) {
    const json v = ToJson(n, path);
    if (!v.is_boolean()) {
      Report(path, "must be true or false, not " + Describe(v));
      return;
    }
    *out = v.get<bool>();
  }

  template <class T>
  void ReadInt(const YAML::Node& n, const std::string& path, std::int64_t min,
               std::int64_t max, T* out) {
    const json v = ToJson(n, path);
    if (!v.is_number_integer()) {
      Report(path, "must be an integer, not " + Describe(v));
      return;
    }
    if (v.is_number_unsigned() &&
        v.get<std::uint64_t>() >
            static_cast<std::uint64_t>(
                std::numeric_limits<std::int64_t>::max())) {
      Report(path, "must be <= " + std::to_string(max));
      return;
    }
    const auto i = v.get<std::int64_t>();
    if (i < min) {
      Report(path, "must be >= " + std::to_string(min));
    } else if (i > max) {
      Report(path, "must be <= " + std::to_string(max));
    } else {
      *out = static_cast<T>(i);
    }
  }

  void ReadDuration(const YAML::Node& n, const std::string& path,
                    std::chrono::milliseconds min,
                    std::chrono::milliseconds* out) {
    if (!n.IsScalar()) {
      Report(path, "must be a duration such as \"30s\", not " +
                       Describe(ToJson(n, path)));
      return;
    }
    auto d = ParseDuration(n.Scalar());
    if (!d.ok()) {
      Report(path, d.error().message);
    } else if (d.value() < min) {
      Report(path, "must be >= " + FormatDuration(min));
    } else {
      *out = d.value();
    }
  }

  template <class T>
  void ReadSize(const YAML::Node& n, const std::string& path, std::uint64_t min,
                T* out) {
    if (!n.IsScalar()) {
      Report(path, "must be a size such as \"16MiB\" or 1048576, not " +
                       Describe(ToJson(n, path)));
      return;
    }
    auto s = ParseSize(n.Scalar());
    if (!s.ok()) {
      Report(path, s.error().message);
    } else if (s.value() < min) {
      Report(path, "must be >= " + std::to_string(min));
    } else if (s.value() > std::numeric_limits<T>::max()) {
      Report(path, "too large");
    } else {
      *out = static_cast<T>(s.value());
    }
  }

  // Prefixes errors from a validator (paths relative to `path`).
  void Adopt(const std::string& path, const Errors& relative) {
    for (const ConfigError& e : relative) Report(Join(path, e.path), e.message);
  }

  void ReadServer(const YAML::Node& n, const std::string& path,
                  ServerConfig* s) {
    VisitMap(
        n, path,
        {
            {"listen",
             [&](const YAML::Node& v, const std::string& p) {
               std::string listen;
               if (!ReadString(v, p, &listen)) return;
               if (auto hp = ParseHostPort(listen); !hp.ok()) {
                 Report(p, hp.error().message);
               } else {
                 s->listen = listen;
               }
             }},
            {"io_threads",
             [&](const YAML::Node& v, const std::string& p) {
               ReadInt(v, p, 1, 1024, &s->io_threads);
             }},
            {"max_body_bytes",
             [&](const YAML::Node& v, const std::string& p) {
               ReadSize(v, p, 1, &s->max_body_bytes);
             }},
            {"max_connections",
             [&](const YAML::Node& v, const std::string& p) {
               ReadInt(v, p, 1, 10000000, &s->max_connections);
             }},
            {"shutdown_grace",
             [&](const YAML::Node& v, const std::string& p) {
               ReadDuration(v, p, std::chrono::milliseconds{0},
                            &s->shutdown_grace);
             }},
            {"idle_timeout",
             [&](const YAML::Node& v, const std::string& p) {
               ReadDuration(v, p, std::chrono::milliseconds{1},
                            &s->idle_timeout);
             }},
            {"max_header_bytes",
             [&](const YAML::Node& v, const std::string& p) {
               ReadSize(v, p, 1024, &s->max_header_bytes);
             }},
            {"auth",
             [&](const YAML::Node& v, const std::string& p) {
               VisitMap(v, p,
                        {{"tokens_env",
                          [&](const YAML::Node& tv, const std::string& tp) {
                            if (ReadString(tv, tp, &s->auth.tokens_env) &&
                                !s->auth.tokens_env.empty() &&
                                !IsEnvName(s->auth.tokens_env)) {
                              Report(tp,
                                     "must be an environment variable name "
                                     "([A-Za-z_][A-Za-z0-9_]*)");
                            }
                          }}});
             }},
            {"tls",
             [&](const YAML::Node& v, const std::string& p) {
               if (VisitMap(v, p,
                            {{"cert",
                              [&](const YAML::Node& cv, const std::string& cp) {
                                ReadString(cv, cp, &s->tls.cert);
                              }},
                             {"key",
                              [&](const YAML::Node& kv, const std::string& kp) {
                                ReadString(kv, kp, &s->tls.key);
                              }}}) &&
                   s->tls.cert.empty() != s->tls.key.empty()) {
                 Report(p, "cert and key must be set together");
               }
             }},
        });
  }

  void ReadJobs(const YAML::Node& n, const std::string& path, JobsConfig* j) {
    // Whether each key was given, and read without an error.
    bool has_job_bytes = false, job_bytes_ok = false;
    bool has_min_retention = false, min_retention_ok = false;
    VisitMap(
        n, path,
        {
            {"max_pending_items",
             [&](const YAML::Node& v, const std::string& p) {
               ReadInt(v, p, 1, std::numeric_limits<std::int64_t>::max(),
                       &j->max_pending_items);
             }},
            {"retention",
             [&](const YAML::Node& v, const std::string& p) {
               ReadDuration(v, p, std::chrono::milliseconds{0}, &j->retention);
             }},
            {"max_retained_bytes",
             [&](const YAML::Node& v, const std::string& p) {
               ReadSize(v, p, kMinRetainedBytes, &j->max_retained_bytes);
             }},
            {"max_job_result_bytes",
             [&](const YAML::Node& v, const std::string& p) {
               const std::size_t before = errors.size();
               ReadSize(v, p, kMinJobResultBytes, &j->max_job_result_bytes);
               has_job_bytes = true;
               job_bytes_ok = errors.size() == before;
             }},
            {"min_retention",
             [&](const YAML::Node& v, const std::string& p) {
               const std::size_t before = errors.size();
               ReadDuration(v, p, std::chrono::milliseconds{0},
                            &j->min_retention);
               has_min_retention = true;
               min_retention_ok = errors.size() == before;
             }},
        });
    // Defaults that follow the other keys, and how the keys must relate.
    if (!has_job_bytes) {
      j->max_job_result_bytes =
          std::max(kMinJobResultBytes, j->max_retained_bytes / 4);
    } else if (job_bytes_ok &&
               j->max_job_result_bytes > j->max_retained_bytes) {
      Report(Join(path, "max_job_result_bytes"),
             "must be <= jobs.max_retained_bytes (" +
                 std::to_string(j->max_retained_bytes) + ")");
    }
    if (!has_min_retention) {
      j->min_retention =
          std::min(j->retention, std::chrono::milliseconds{10000});
    } else if (min_retention_ok && j->min_retention > j->retention) {
      Report(
          Join(path, "min_retention"),
          "must be <= jobs.retention (" + FormatDuration(j->retention) + ")");
    }
  }

  // cluster: only `nats` for now. Without it (or with an empty url) the
  // other keys are still checked, so a config is valid or not whatever the
  // environment holds.
  void ReadCluster(const YAML::Node& n, const std::string& path,
                   ClusterConfig* c) {
    VisitMap(n, path, {{"nats", [&](const YAML::Node& v, const std::string& p) {
                          ReadNats(v, p, &c->nats);
                        }}});
  }

  void ReadNats(const YAML::Node& n, const std::string& path, NatsConfig* nc) {
    VisitMap(n, path,
             {
                 {"url",
                  [&](const YAML::Node& v, const std::string& p) {
                    // `url: ${SLUICE_NATS_URL:-}` unquoted is null when unset:
                    // off, as the quoted "" is.
                    if (v.IsNull()) return;
                    if (!ReadString(v, p, &nc->url)) return;
                    // Kept even when invalid: the refusals that follow from
                    // cluster mode are then reported with the url's own error.
                    CheckNatsUrl(nc->url, p);
                  }},
                 {"prefix",
                  [&](const YAML::Node& v, const std::string& p) {
                    if (ReadString(v, p, &nc->prefix) && !IsName(nc->prefix)) {
                      Report(p, "must match [A-Za-z0-9_-]+");
                    }
                  }},
                 {"replicas",
                  [&](const YAML::Node& v, const std::string& p) {
                    ReadInt(v, p, 1, 5, &nc->replicas);
                  }},
                 {"ack_wait",
                  [&](const YAML::Node& v, const std::string& p) {
                    ReadDuration(v, p, std::chrono::milliseconds{1000},
                                 &nc->ack_wait);
                  }},
             });
  }

  // Reports (at `path`) the first element of the comma list `url` that is
  // not a NATS server URL. "" is fine: cluster mode off.
  void CheckNatsUrl(std::string_view url, const std::string& path) {
    if (url.empty()) return;
    for (std::string_view element : SplitOnComma(url)) {
      if (const std::string why = NatsUrlProblem(element); !why.empty()) {
        Report(path, "\"" + MaskedNatsUrl(element) + "\" " + why +
                         " (a comma list such as "
                         "\"nats://10.0.0.1:4222,nats://10.0.0.2:4222\")");
        return;
      }
    }
  }

  // What cluster mode cannot keep in this release (docs/cluster.md): each
  // keyed stage and each windowed pipeline, at its key path.
  void RefuseForCluster(const std::vector<PipelineConfig>& pipelines) {
    for (std::size_t i = 0; i < pipelines.size(); ++i) {
      const std::string pl = Index("pipelines", i);
      const PipelineConfig& p = pipelines[i];
      for (std::size_t j = 0; j < p.stages.size(); ++j) {
        if (!p.stages[j].keyed) continue;
        Report(Join(Index(Join(pl, "stages"), j), "key"),
               "per-key ordering is not available in cluster mode (items of "
               "one key may run on different replicas at once); remove key "
               "or run without cluster");
      }
      if (p.aggregate.window.enabled()) {
        Report(Join(pl, "aggregate.window"),
               "windows are not available in cluster mode yet; remove window "
               "or run without cluster");
      }
    }
  }

  void ReadProcessor(const YAML::Node& n, const std::string& path,
                     ProcessorSpec* spec) {
    const json v = ToJson(n, path);
    if (v.is_string()) {  // shorthand: `processor: passthrough`
      spec->type = v.get<std::string>();
    } else if (v.is_object()) {
      auto type = v.find("type");
      if (type == v.end()) {
        Report(Join(path, "type"), "is required");
        return;
      }
      if (!type->is_string()) {
        Report(Join(path, "type"), "must be a string, not " + Describe(*type));
        return;
      }
      spec->type = type->get<std::string>();
      spec->params = v;
      spec->params.erase("type");
    } else {
      Report(path,
             "must be a map with a type (or a type name), not " + Describe(v));
      return;
    }
    if (checks_.processor) Adopt(path, checks_.processor(*spec));
  }

  void ReadAggregate(const YAML::Node& n, const std::string& path,
                     AggregateSpec* agg) {
    if (n.IsScalar()) {  // shorthand: `aggregate: count`
      ReadString(n, path, &agg->type);
    } else {
      agg->type.clear();  // required when given as a map
      bool type_seen = false;
      const bool is_map = VisitMap(
          n, path,
          {{"type",
            [&](const YAML::Node& v, const std::string& p) {
              type_seen = true;
              ReadString(v, p, &agg->type);
            }},
           {"field",
            [&](const YAML::Node& v, const std::string& p) {
              ReadString(v, p, &agg->field);
            }},
           {"op", [&](const YAML::Node& v,
                      const std::string& p) { ReadString(v, p, &agg->op); }},
           {"value",
            [&](const YAML::Node& v, const std::string& p) {
              ReadString(v, p, &agg->value);
            }},
           {"window", [&](const YAML::Node& v, const std::string& p) {
              ReadWindow(v, p, &agg->window);
            }}});
      if (!is_map) return;
      if (!type_seen) {
        if (n.IsNull()) {
          agg->type = "collect";
          return;
        }
        Report(Join(path, "type"),
               "is required (one of: collect, count, sum, min, max, avg, "
               "group_by)");
        return;
      }
      if (agg->type.empty()) return;  // wrong type: already reported
    }
    if (checks_.aggregate) Adopt(path, checks_.aggregate(*agg));
  }

  // `{ items: N }` or `{ every: 1s }`: exactly one of them.
  void ReadWindow(const YAML::Node& n, const std::string& path,
                  WindowSpec* window) {
    int given = 0;
    if (!VisitMap(n, path,
                  {{"items",
                    [&](const YAML::Node& v, const std::string& p) {
                      ++given;
                      ReadInt(v, p, 1, std::numeric_limits<std::int64_t>::max(),
                              &window->items);
                    }},
                   {"every", [&](const YAML::Node& v, const std::string& p) {
                      ++given;
                      ReadDuration(v, p, std::chrono::milliseconds{10},
                                   &window->every);
                    }}})) {
      return;
    }
    if (given == 0) {
      Report(path,
             "needs one of items (a count, e.g. {items: 100}) or every "
             "(a period, e.g. {every: 1s})");
    } else if (given > 1) {
      Report(path, "takes items or every, not both");
      *window = WindowSpec{};
    }
  }

  void ReadStage(const YAML::Node& n, const std::string& path,
                 std::size_t index, StageConfig* stage) {
    bool has_processor = false;
    bool has_name = false;
    if (!VisitMap(n, path,
                  {{"name",
                    [&](const YAML::Node& v, const std::string& p) {
                      has_name = true;
                      if (ReadString(v, p, &stage->name) &&
                          !IsName(stage->name)) {
                        Report(p, "must match [A-Za-z0-9_-]+");
                      }
                    }},
                   {"processor",
                    [&](const YAML::Node& v, const std::string& p) {
                      has_processor = true;
                      ReadProcessor(v, p, &stage->processor);
                    }},
                   {"workers",
                    [&](const YAML::Node& v, const std::string& p) {
                      ReadInt(v, p, 1, 4096, &stage->workers);
                    }},
                   {"buffer",
                    [&](const YAML::Node& v, const std::string& p) {
                      ReadInt(v, p, 0, 1000000, &stage->buffer);
                    }},
                   {"key", [&](const YAML::Node& v, const std::string& p) {
                      if (!ReadString(v, p, &stage->key)) return;
                      auto ptr = ParseJsonPointer(stage->key);
                      if (!ptr.ok()) {
                        Report(p, ptr.error().message);
                        return;
                      }
                      stage->keyed = true;
                    }}})) {
      return;
    }
    if (!has_processor) Report(Join(path, "processor"), "is required");
    if (!has_name) {
      stage->name = (IsName(stage->processor.type) ? stage->processor.type
                                                   : std::string("stage")) +
                    "_" + std::to_string(index);
    }
  }

  void ReadPipeline(const YAML::Node& n, const std::string& path,
                    PipelineConfig* pl) {
    bool has_name = false;
    bool has_stages = false;
    if (!VisitMap(
            n, path,
            {{"name",
              [&](const YAML::Node& v, const std::string& p) {
                has_name = true;
                if (ReadString(v, p, &pl->name) && !IsName(pl->name)) {
                  Report(p, "must match [A-Za-z0-9_-]+");
                }
              }},
             {"ordered",
              [&](const YAML::Node& v, const std::string& p) {
                ReadBool(v, p, &pl->ordered);
              }},
             {"stages",
              [&](const YAML::Node& v, const std::string& p) {
                has_stages = true;
                if (!v.IsSequence() || v.size() == 0) {
                  Report(p, "must be a non-empty list of stages");
                  return;
                }
                for (std::size_t i = 0; i < v.size(); ++i) {
                  StageConfig stage;
                  ReadStage(v[i], Index(p, i), i, &stage);
                  pl->stages.push_back(std::move(stage));
                }
                std::map<std::string, std::size_t> names;
                for (std::size_t i = 0; i < pl->stages.size(); ++i) {
                  if (pl->stages[i].name.empty()) continue;  // reported
                  auto [it, fresh] = names.emplace(pl->stages[i].name, i);
                  if (!fresh) {
                    Report(Join(Index(p, i), "name"),
                           "duplicate stage name \"" + pl->stages[i].name +
                               "\" (also " + Index(p, it->second) + ")");
                  }
                }
              }},
             {"aggregate", [&](const YAML::Node& v, const std::string& p) {
                ReadAggregate(v, p, &pl->aggregate);
              }}})) {
      return;
    }
    if (!has_name) Report(Join(path, "name"), "is required");
    if (!has_stages) {
      Report(Join(path, "stages"), "is required (a non-empty list of stages)");
    }
  }

  void ReadRoot(const YAML::Node& root, Config* config) {
    if (root.IsNull()) {
      Report("", "the config is empty: it needs at least a `pipelines` list");
      return;
    }
    if (!root.IsMap()) {
      Report("",
             "the config must be a map with the keys server, jobs, "
             "pipelines and cluster");
      return;
    }
    bool has_pipelines = false;
    VisitMap(
        root, "",
        {{"server",
          [&](const YAML::Node& v, const std::string& p) {
            ReadServer(v, p, &config->server);
          }},
         {"jobs", [&](const YAML::Node& v,
                      const std::string& p) { ReadJobs(v, p, &config->jobs); }},
         {"pipelines",
          [&](const YAML::Node& v, const std::string& p) {
            has_pipelines = true;
            if (!v.IsSequence() || v.size() == 0) {
              Report(p, "must be a non-empty list of pipelines");
              return;
            }
            for (std::size_t i = 0; i < v.size(); ++i) {
              PipelineConfig pl;
              ReadPipeline(v[i], Index(p, i), &pl);
              config->pipelines.push_back(std::move(pl));
            }
            std::map<std::string, std::size_t> names;
            for (std::size_t i = 0; i < config->pipelines.size(); ++i) {
              const std::string& name = config->pipelines[i].name;
              if (name.empty()) continue;  // reported as missing
              auto [it, fresh] = names.emplace(name, i);
              if (!fresh) {
                Report(Join(Index(p, i), "name"),
                       "duplicate pipeline name \"" + name + "\" (also " +
                           Index(p, it->second) + ")");
              }
            }
          }},
         {"cluster", [&](const YAML::Node& v, const std::string& p) {
            ReadCluster(v, p, &config->cluster);
          }}});
    if (!has_pipelines) {
      Report("pipelines", "is required (a non-empty list of pipelines)");
    }
    if (config->cluster.enabled()) RefuseForCluster(config->pipelines);
  }

 private:
  const SpecChecks& checks_;
};

// Records where each document of a YAML stream starts; builds nothing.
class DocumentStarts final : public YAML::EventHandler {
 public:
  std::vector<YAML::Mark> marks;

  void OnDocumentStart(const YAML::Mark& mark) override {
    marks.push_back(mark);
  }
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark&, YAML::anchor_t) override {}
  void OnAlias(const YAML::Mark&, YAML::anchor_t) override {}
  void OnScalar(const YAML::Mark&, const std::string&, YAML::anchor_t,
                const std::string&) override {}
  void OnSequenceStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                       YAML::EmitterStyle::value) override {}
  void OnSequenceEnd() override {}
  void OnMapStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                  YAML::EmitterStyle::value) override {}
  void OnMapEnd() override {}
};

// The number of documents in `text`; throws the YAML::Exception of the
// first one that does not parse. Not YAML::LoadAll: yaml-cpp 0.7's loops
// forever, adding a null document per turn until memory runs out, on a
// stray ',' where a document begins (its document parser returns without
// consuming the token, so every further "document" starts at the same
// place; found by tests/fuzz/config_fuzz). Such a repeat is reported here
// as the syntax error it is.
std::size_t CountDocuments(const std::string& text) {
  std::istringstream in(text);
  YAML::Parser parser(in);
  DocumentStarts starts;
  while (parser.HandleNextDocument(starts)) {
    const std::vector<YAML::Mark>& m = starts.marks;
    if (m.size() >= 2 && m[m.size() - 1].pos == m[m.size() - 2].pos) {
      throw YAML::ParserException(
          m.back(), "unexpected character (e.g. a ',' outside [...] or {...})");
    }
  }
  return starts.marks.size();
}

std::string Position(const YAML::Mark& mark) {
  return "line " + std::to_string(mark.line + 1) + ", column " +
         std::to_string(mark.column + 1);
}

}  // namespace

std::string ToString(const ConfigError& error) {
  return error.path.empty() ? error.message : error.path + ": " + error.message;
}

namespace {

// `text` as one YAML document (null when there is none); `what` names the
// document in the error for several ("the config").
Result<YAML::Node, Errors> LoadSingleDocument(const std::string& text,
                                              std::string_view what) {
  std::size_t documents = 0;
  YAML::Node root;  // null when there is no document
  try {
    documents = CountDocuments(text);
    if (documents == 1) root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    return Errors{{Position(e.mark), e.msg}};
  }
  if (documents > 1) {
    return Errors{{"", std::string(what) +
                           " must be a single YAML document (found " +
                           std::to_string(documents) + ")"}};
  }
  return root;
}

}  // namespace

Result<Config, std::vector<ConfigError>> LoadConfigText(
    std::string_view text, const SpecChecks& checks) {
  try {
    auto substituted = SubstituteEnv(text);
    if (!substituted.ok()) {
      // The message starts with "line L, column C: "; make that the path.
      const std::string& m = substituted.error().message;
      const auto colon = m.find(": ");
      if (colon == std::string::npos) return Errors{{"", m}};
      return Errors{{m.substr(0, colon), m.substr(colon + 2)}};
    }
    auto root = LoadSingleDocument(substituted.value(), "the config");
    if (!root.ok()) return std::move(root).error();
    Loader loader(checks);
    Config config;
    loader.ReadRoot(root.value(), &config);
    if (!loader.errors.empty()) return std::move(loader.errors);
    return config;
  } catch (const YAML::Exception& e) {
    return Errors{{Position(e.mark), e.msg}};
  } catch (const std::exception& e) {
    return Errors{{"", std::string("cannot load the config: ") + e.what()}};
  }
}

Result<nlohmann::json, std::vector<ConfigError>> ParseYaml(
    std::string_view text) {
  try {
    auto root = LoadSingleDocument(std::string(text), "the file");
    if (!root.ok()) return std::move(root).error();
    Loader loader(SpecChecks{});
    json value = loader.ToJson(root.value(), "");
    if (!loader.errors.empty()) return std::move(loader.errors);
    return value;
  } catch (const YAML::Exception& e) {
    return Errors{{Position(e.mark), e.msg}};
  } catch (const std::exception& e) {
    return Errors{{"", std::string("cannot parse the YAML: ") + e.what()}};
  }
}

Result<Config, std::vector<ConfigError>> LoadConfigFile(
    const std::string& path, const SpecChecks& checks) {
  try {
    std::ifstream in(path, std::ios::binary);
    if (!in) return Errors{{path, "cannot open the file"}};
    std::ostringstream text;
    text << in.rdbuf();
    if (in.bad()) return Errors{{path, "cannot read the file"}};
    return LoadConfigText(text.str(), checks);
  } catch (const std::exception& e) {
    return Errors{{path, std::string("cannot read the file: ") + e.what()}};
  }
}

std::string Summary(const Config& config) {
  std::ostringstream out;
  const ServerConfig& s = config.server;
  out << "server: listen " << s.listen << ", io_threads " << s.io_threads
      << ", max_body_bytes " << s.max_body_bytes << ", max_connections "
      << s.max_connections << ", shutdown_grace "
      << FormatDuration(s.shutdown_grace) << ", idle_timeout "
      << FormatDuration(s.idle_timeout) << ", auth "
      << (s.auth.tokens_env.empty()
              ? "off"
              : "on (tokens in $" + s.auth.tokens_env + ")")
      << ", tls " << (s.tls.cert.empty() ? "off" : "on") << "\n";
  const JobsConfig& j = config.jobs;
  out << "jobs: max_pending_items " << j.max_pending_items << ", retention "
      << FormatDuration(j.retention) << ", max_retained_bytes "
      << j.max_retained_bytes << ", max_job_result_bytes "
      << j.max_job_result_bytes << ", min_retention "
      << FormatDuration(j.min_retention) << "\n";
  const NatsConfig& n = config.cluster.nats;
  if (config.cluster.enabled()) {
    out << "cluster: on, nats " << DumpLenient(MaskedNatsUrl(n.url))
        << ", prefix " << n.prefix << ", replicas " << n.replicas
        << ", ack_wait " << FormatDuration(n.ack_wait) << "\n";
  } else {
    out << "cluster: off\n";
  }
  out << config.pipelines.size()
      << (config.pipelines.size() == 1 ? " pipeline" : " pipelines") << ":\n";
  for (const PipelineConfig& p : config.pipelines) {
    const AggregateSpec& a = p.aggregate;
    out << "  " << p.name << " (" << (p.ordered ? "ordered" : "unordered")
        << ", aggregate " << a.type;
    if (a.type != "collect" && a.type != "count") {
      out << " field " << DumpLenient(a.field);
    }
    if (!a.op.empty()) out << " op " << a.op;
    if (!a.value.empty()) out << " value " << DumpLenient(a.value);
    if (a.window.items != 0)
      out << ", window every " << a.window.items << " items";
    if (a.window.every.count() != 0) {
      out << ", window every " << FormatDuration(a.window.every);
    }
    out << ")\n";
    for (std::size_t i = 0; i < p.stages.size(); ++i) {
      const StageConfig& st = p.stages[i];
      out << "    " << i << ". " << st.name << ": " << st.processor.type;
      if (!st.processor.params.empty()) {
        out << " " << DumpLenient(MaskedParams(st.processor.params));
      }
      out << " (workers " << st.workers << ", buffer " << st.buffer;
      if (st.keyed) out << ", key " << DumpLenient(st.key);
      out << ")\n";
    }
  }
  return out.str();
}

}  // namespace sluice::config
