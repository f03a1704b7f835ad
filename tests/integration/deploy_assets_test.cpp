// Checks of the deployment assets that would otherwise drift silently:
// - every metric name in the PromQL of the Grafana dashboard
//   (docker/grafana/dashboards/sluice.json: panels, rows' panels, template
//   variables) is a family of a live sluice's /metrics: a single process's,
//   or, for the panels of the row "Cluster", a cluster-mode replica's (whose
//   NATS need not be reachable: the replica starts and registers its
//   sluice_cluster_* families all the same);
// - every panel queries the datasource that Grafana is provisioned with;
// - the Dockerfile's build stage installs exactly scripts/bootstrap's
//   Debian packages.
// docker/check-dashboard.py makes the dashboard check by hand, against any
// running sluice.
#include <gtest/gtest.h>

#include <cctype>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "client.hpp"

namespace sluice::itest {
namespace {

using nlohmann::json;

std::string ReadSource(const std::string& relative) {
  const std::string path = std::string(SLUICE_SOURCE_DIR) + "/" + relative;
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + path);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

std::string Lower(std::string s) {
  for (char& c : s)
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

bool IsIdentStart(char c) {
  return std::isalpha(static_cast<unsigned char>(c)) || c == '_' || c == ':';
}
bool IsIdentChar(char c) {
  return IsIdentStart(c) || std::isdigit(static_cast<unsigned char>(c));
}

// The metric names a PromQL expression selects (the same rules as
// docker/check-dashboard.py): identifiers outside strings, label matchers,
// ranges, label lists of by/without/on/ignoring/group_*, that are not
// functions, aggregations or keywords. Grafana variables are dropped first.
std::vector<std::string> MetricNames(const std::string& expr) {
  static const std::regex kGrafanaVariable(
      R"(\$\{[^}]*\}|\$[A-Za-z_][A-Za-z0-9_]*|\[\[[^\]]*\]\])");
  static const std::set<std::string> kKeywords = {
      "and", "or", "unless", "bool", "offset", "inf", "nan", "atan2"};
  static const std::set<std::string> kAggregations = {
      "sum",    "min",      "max",    "avg",          "group",
      "stddev", "stdvar",   "count",  "count_values", "bottomk",
      "topk",   "quantile", "limitk", "limit_ratio"};
  static const std::set<std::string> kLabelLists = {
      "by", "without", "on", "ignoring", "group_left", "group_right"};

  const std::string text = std::regex_replace(expr, kGrafanaVariable, " ");
  std::vector<std::string> names;
  const std::size_t n = text.size();
  auto skip_string = [&](std::size_t i) {  // i at the opening quote
    const char quote = text[i++];
    while (i < n && text[i] != quote) i += text[i] == '\\' ? 2 : 1;
    return i + 1;
  };
  std::size_t i = 0;
  while (i < n) {
    const char c = text[i];
    if (c == '"' || c == '\'' || c == '`') {
      i = skip_string(i);
    } else if (c == '#') {
      const std::size_t end = text.find('\n', i);
      i = end == std::string::npos ? n : end + 1;
    } else if (c == '{') {
      ++i;
      while (i < n && text[i] != '}') {
        if (text[i] == '"' || text[i] == '\'' || text[i] == '`') {
          i = skip_string(i);
        } else {
          ++i;
        }
      }
      ++i;
    } else if (c == '[') {
      const std::size_t end = text.find(']', i);
      i = end == std::string::npos ? n : end + 1;
    } else if (std::isdigit(static_cast<unsigned char>(c)) || c == '.') {
      // A number or a duration (5m, 1e-3, 0x1f): digits, letters, dots, signs
      // after an exponent.
      ++i;
      while (i < n && (IsIdentChar(text[i]) || text[i] == '.' ||
                       ((text[i] == '-' || text[i] == '+') &&
                        (text[i - 1] == 'e' || text[i - 1] == 'E')))) {
        ++i;
      }
    } else if (IsIdentStart(c)) {
      std::size_t end = i;
      while (end < n && IsIdentChar(text[end])) ++end;
      const std::string word = text.substr(i, end - i);
      i = end;
      std::size_t next = i;
      while (next < n && std::isspace(static_cast<unsigned char>(text[next]))) {
        ++next;
      }
      const bool call = next < n && text[next] == '(';
      const std::string lower = Lower(word);
      if (kLabelLists.count(lower) != 0) {
        if (call) {
          const std::size_t close = text.find(')', next);
          i = close == std::string::npos ? n : close + 1;
        }
      } else if (!call && kKeywords.count(lower) == 0 &&
                 kAggregations.count(lower) == 0) {
        names.push_back(word);
      }
    } else {
      ++i;
    }
  }
  return names;
}

// A PromQL query of the dashboard: the title of the row it sits under ("" above
// the first row, and for template variables), where it is, and the query.
struct Query {
  std::string row;
  std::string where;
  std::string expr;
};

// Every panel target, rows' panels included. A panel belongs to the last row
// before it (an expanded row), or to the row that holds it (a collapsed one).
void PanelQueries(const json& panels, std::string row,
                  std::vector<Query>& out) {
  if (!panels.is_array()) return;
  for (const json& panel : panels) {
    const std::string title = panel.value("title", "panel");
    if (panel.value("type", "") == "row") row = title;
    if (panel.contains("targets") && panel["targets"].is_array()) {
      for (const json& target : panel["targets"]) {
        if (target.contains("expr") && target["expr"].is_string()) {
          out.push_back({row, title, target["expr"].get<std::string>()});
        }
      }
    }
    if (panel.contains("panels")) PanelQueries(panel["panels"], row, out);
  }
}

// Each query variable: the selector of label_values(selector, label), or the
// query itself.
void VariableQueries(const json& dashboard, std::vector<Query>& out) {
  static const std::regex kLabelValues(R"(^\s*label_values\((.*),[^,]*\)\s*$)");
  if (!dashboard.contains("templating")) return;
  for (const json& var : dashboard["templating"].value("list", json::array())) {
    if (var.value("type", "") != "query") continue;
    std::string query;
    if (var.contains("query") && var["query"].is_string()) {
      query = var["query"].get<std::string>();
    } else if (var.contains("query") && var["query"].is_object()) {
      query = var["query"].value("query", "");
    }
    std::smatch m;
    if (std::regex_match(query, m, kLabelValues)) {
      query = m[1];
    } else if (query.find("label_values(") != std::string::npos) {
      query.clear();  // label_values(label): no metric
    }
    if (!query.empty()) {
      out.push_back({"", "variable $" + var.value("name", "?"), query});
    }
  }
}

// name -> type of every `# TYPE name type` line.
std::map<std::string, std::string> Families(const std::string& metrics) {
  std::map<std::string, std::string> types;
  std::istringstream lines(metrics);
  std::string line;
  while (std::getline(lines, line)) {
    std::istringstream words(line);
    std::string hash, keyword, name, type;
    if (words >> hash >> keyword >> name >> type && hash == "#" &&
        keyword == "TYPE") {
      types[name] = type;
    }
  }
  return types;
}

bool Exists(const std::string& name,
            const std::map<std::string, std::string>& types) {
  if (types.count(name) != 0) return true;
  const std::pair<const char*, std::set<std::string>> suffixes[] = {
      {"_bucket", {"histogram"}},
      {"_sum", {"histogram", "summary"}},
      {"_count", {"histogram", "summary"}}};
  for (const auto& [suffix, kinds] : suffixes) {
    const std::string s = suffix;
    if (name.size() > s.size() &&
        name.compare(name.size() - s.size(), s.size(), s) == 0) {
      auto it = types.find(name.substr(0, name.size() - s.size()));
      if (it != types.end() && kinds.count(it->second) != 0) return true;
    }
  }
  return false;
}

std::string Trim(const std::string& s) {
  const auto first = s.find_first_not_of(" \t\r");
  if (first == std::string::npos) return "";
  return s.substr(first, s.find_last_not_of(" \t\r") - first + 1);
}

std::set<std::string> Words(const std::string& text) {
  std::set<std::string> words;
  std::istringstream in(text);
  std::string word;
  while (in >> word) words.insert(word);
  return words;
}

// scripts/bootstrap's PACKAGES=( ... ), comments removed.
std::set<std::string> BootstrapPackages(const std::string& script) {
  std::istringstream lines(script);
  std::string line, packages;
  bool inside = false;
  while (std::getline(lines, line)) {
    std::string t = Trim(line);
    if (!inside) {
      if (t.rfind("PACKAGES=(", 0) == 0) {
        inside = true;
        t = t.substr(10);
      } else {
        continue;
      }
    }
    if (auto hash = t.find('#'); hash != std::string::npos) t.resize(hash);
    if (auto close = t.find(')'); close != std::string::npos) {
      packages += " " + t.substr(0, close);
      break;
    }
    packages += " " + t;
  }
  return Words(packages);
}

// The packages of every `apt-get install` in the Dockerfile's build stage
// (the stage named "build", else the first): instructions joined across
// backslash continuations, comment lines dropped, options skipped, up to
// the next && ; or |.
std::set<std::string> DockerfileBuildPackages(const std::string& dockerfile,
                                              std::vector<std::string>* froms) {
  std::vector<std::string> instructions;
  std::istringstream lines(dockerfile);
  std::string line, current;
  while (std::getline(lines, line)) {
    const std::string t = Trim(line);
    if (t.empty() || t[0] == '#') continue;
    if (t.back() == '\\') {
      current += t.substr(0, t.size() - 1) + " ";
      continue;
    }
    instructions.push_back(current + t);
    current.clear();
  }
  if (!current.empty()) instructions.push_back(current);

  std::set<std::string> packages;
  int stage = -1;
  int build_stage = -1;
  for (const std::string& instruction : instructions) {
    std::istringstream words(instruction);
    std::string keyword;
    words >> keyword;
    keyword = Lower(keyword);
    if (keyword == "from") {
      ++stage;
      froms->push_back(Trim(instruction.substr(4)));
      const std::string lower = Lower(instruction);
      if (lower.find(" as build") != std::string::npos) build_stage = stage;
      continue;
    }
    if (keyword != "run" || stage != (build_stage >= 0 ? build_stage : 0)) {
      continue;
    }
    std::vector<std::string> tokens;
    for (std::string w; words >> w;) tokens.push_back(w);
    for (std::size_t k = 0; k + 1 < tokens.size(); ++k) {
      if (tokens[k] != "apt-get" && tokens[k] != "apt") continue;
      std::size_t j = k + 1;
      while (j < tokens.size() && tokens[j][0] == '-') ++j;
      if (j >= tokens.size() || tokens[j] != "install") continue;
      for (++j; j < tokens.size(); ++j) {
        const std::string& w = tokens[j];
        if (w == "&&" || w == ";" || w == "|" || w == "||") break;
        if (w[0] != '-') packages.insert(w);
      }
    }
  }
  return packages;
}

std::string Join(const std::set<std::string>& words) {
  std::string out;
  for (const auto& w : words) out += (out.empty() ? "" : " ") + w;
  return out;
}

TEST(DeployAssetsTest, MetricNameExtraction) {
  using V = std::vector<std::string>;
  EXPECT_EQ(MetricNames("up"), V{"up"});
  EXPECT_EQ(
      MetricNames(
          R"(sum by (pipeline, stage) (rate(sluice_items_total{outcome="in", pipeline=~"$pipeline"}[$__rate_interval])))"),
      V{"sluice_items_total"});
  EXPECT_EQ(
      MetricNames(
          R"(histogram_quantile(0.99, sum(rate(a_bucket{le="0.1"}[5m])) by (le)))"),
      V{"a_bucket"});
  EXPECT_EQ(
      MetricNames(
          "(sum(rate(a[1m])) or vector(0)) / on(x) group_left(y) b offset 5m"),
      (V{"a", "b"}));
  EXPECT_EQ(MetricNames("1e-3 * count without (a, b) (c) and bool d"),
            (V{"c", "d"}));
}

// name -> type of the families of a live server's /metrics (empty, with a
// failure, when it cannot be read).
std::map<std::string, std::string> LiveFamilies(const std::string& yaml) {
  TestServer server(yaml);
  EXPECT_EQ(Http(server.port(), "GET", "/healthz").status, 200);
  const HttpResponse metrics = Http(server.port(), "GET", "/metrics");
  EXPECT_EQ(metrics.status, 200);
  return Families(metrics.body);
}

// The dashboard's row of cluster panels (docs/cluster.md#metrics).
constexpr const char* kClusterRow = "Cluster";

// Checks that every metric name of `queries` is a family of `types` (a single
// process's), or of `cluster_types` (a cluster replica's) for the queries of
// the cluster row; returns the names used.
std::set<std::string> CheckNames(
    const std::vector<Query>& queries,
    const std::map<std::string, std::string>& types,
    const std::map<std::string, std::string>& cluster_types) {
  // A labelled family appears in /metrics with its first series: these two
  // get theirs at a replica's first batch of outcomes, which needs NATS. They
  // are checked against their registration instead.
  const std::string cluster_source =
      ReadSource("service/cluster/cluster_service.cpp");
  const std::set<std::string> kFirstSeriesAtWork = {
      "sluice_cluster_acked_total", "sluice_cluster_duplicate_outcomes_total"};
  std::set<std::string> used;
  for (const Query& q : queries) {
    const bool cluster = q.row == kClusterRow;
    const auto names = MetricNames(q.expr);
    EXPECT_FALSE(names.empty()) << q.where << ": no metric name in " << q.expr;
    for (const auto& name : names) {
      used.insert(name);
      const bool registered =
          cluster && kFirstSeriesAtWork.count(name) != 0 &&
          cluster_source.find(".Name(\"" + name + "\")") != std::string::npos;
      EXPECT_TRUE(registered || Exists(name, cluster ? cluster_types : types))
          << q.row << " / " << q.where << ": " << name << " is not a family of "
          << (cluster ? "a cluster replica's " : "") << "/metrics (" << q.expr
          << ")";
    }
  }
  return used;
}

TEST(DeployAssetsTest, DashboardQueriesUseOnlyLiveMetricNames) {
  const json dashboard =
      json::parse(ReadSource("docker/grafana/dashboards/sluice.json"));
  std::vector<Query> queries;
  PanelQueries(dashboard.value("panels", json::array()), "", queries);
  ASSERT_GE(queries.size(), 10u) << "the dashboard has too few queries";
  VariableQueries(dashboard, queries);

  const auto types = LiveFamilies(kTestConfig);
  ASSERT_FALSE(types.empty());
  // Cluster mode with nothing listening on port 1: the replica starts all
  // the same, retrying the connection, with its sluice_cluster_* families.
  const auto cluster_types =
      LiveFamilies(std::string(kTestConfig) +
                   "cluster: { nats: { url: \"nats://127.0.0.1:1\" } }\n");
  ASSERT_FALSE(cluster_types.empty());
  const std::set<std::string> used = CheckNames(queries, types, cluster_types);

  // The sluice_cluster_* families exist only in cluster mode (the row's
  // panels show "No data" on a single process), and cluster mode takes no
  // other family away.
  for (const auto& [name, type] : cluster_types) {
    const bool cluster_family = name.rfind("sluice_cluster_", 0) == 0;
    EXPECT_EQ(types.count(name) == 0, cluster_family) << name;
  }
  for (const auto& [name, type] : types) {
    EXPECT_EQ(cluster_types.count(name), 1u) << name;
  }
  // What the dashboard must show (contract §C5): items/s, stage latency,
  // queue depth, busy workers, jobs, HTTP, admission, WebSocket; and the
  // cluster's (issue 14).
  for (const char* family :
       {"sluice_items_total", "sluice_stage_duration_seconds_bucket",
        "sluice_stage_queue_depth", "sluice_stage_workers_busy",
        "sluice_jobs_total", "sluice_jobs_active", "sluice_http_requests_total",
        "sluice_admission_rejections_total", "sluice_websocket_connections",
        "sluice_cluster_connected", "sluice_cluster_pending_items",
        "sluice_cluster_acked_total", "sluice_cluster_redelivered_total",
        "sluice_cluster_duplicate_outcomes_total",
        "sluice_cluster_publish_seconds_bucket"}) {
    EXPECT_EQ(used.count(family), 1u) << "no panel shows " << family;
  }
}

TEST(DeployAssetsTest, PanelsUseTheProvisionedDatasource) {
  const json dashboard =
      json::parse(ReadSource("docker/grafana/dashboards/sluice.json"));
  const std::string provisioning =
      ReadSource("docker/grafana/provisioning/datasources/prometheus.yaml");
  std::smatch m;
  ASSERT_TRUE(std::regex_search(provisioning, m,
                                std::regex(R"(\n\s*uid:\s*([A-Za-z0-9_-]+))")));
  const std::string uid = m[1];
  std::vector<const json*> stack;
  for (const json& p : dashboard["panels"]) stack.push_back(&p);
  int checked = 0;
  while (!stack.empty()) {
    const json& panel = *stack.back();
    stack.pop_back();
    if (panel.contains("panels")) {
      for (const json& p : panel["panels"]) stack.push_back(&p);
    }
    if (panel.value("type", "") == "row") continue;
    ASSERT_TRUE(panel.contains("datasource")) << panel.value("title", "");
    EXPECT_EQ(panel["datasource"].value("uid", ""), uid)
        << panel.value("title", "");
    ++checked;
  }
  EXPECT_GT(checked, 0);
}

TEST(DeployAssetsTest, DockerfileInstallsBootstrapsPackages) {
  std::vector<std::string> froms;
  const auto image = DockerfileBuildPackages(ReadSource("Dockerfile"), &froms);
  const auto bootstrap = BootstrapPackages(ReadSource("scripts/bootstrap"));
  ASSERT_FALSE(bootstrap.empty());
  ASSERT_FALSE(image.empty());
  std::set<std::string> only_image, only_bootstrap;
  for (const auto& p : image) {
    if (bootstrap.count(p) == 0) only_image.insert(p);
  }
  for (const auto& p : bootstrap) {
    if (image.count(p) == 0) only_bootstrap.insert(p);
  }
  EXPECT_TRUE(only_image.empty() && only_bootstrap.empty())
      << "Dockerfile's build stage and scripts/bootstrap install different "
         "packages.\n  only in the Dockerfile: "
      << Join(only_image)
      << "\n  only in scripts/bootstrap: " << Join(only_bootstrap);
  ASSERT_EQ(froms.size(), 2u);
  EXPECT_EQ(froms[0], "debian:bookworm AS build");
  EXPECT_EQ(froms[1], "debian:bookworm-slim");
}

}  // namespace
}  // namespace sluice::itest
