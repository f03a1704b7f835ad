// Implementation of the `sluice test` file format (see test_file.hpp).
#include "service/cli/test_file.hpp"

#include <array>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <sstream>

#include "service/config/units.hpp"

namespace sluice::cli {
namespace {

using nlohmann::json;
using Errors = std::vector<config::ConfigError>;

constexpr std::array<std::string_view, 5> kCountKeys = {"in", "out", "filtered",
                                                        "errors", "cancelled"};
constexpr std::array<std::string_view, 3> kStates = {"done", "failed",
                                                     "cancelled"};

std::string At(const std::string& path, std::string_view key) {
  return path.empty() ? std::string(key) : path + "." + std::string(key);
}

std::string At(const std::string& path, std::size_t i) {
  return path + "[" + std::to_string(i) + "]";
}

// Walks the parsed file, collecting every error with its key path.
class Reader {
 public:
  explicit Reader(const std::string& file) : file_(file) {}

  Errors errors;

  void Report(std::string path, std::string message) {
    errors.push_back({std::move(path), std::move(message)});
  }

  // Calls the handler of each key of the map `value` at `path`, reporting
  // keys without one; false (reported) when `value` is not a map.
  using Handlers =
      std::map<std::string_view,
               std::function<void(const json&, const std::string&)>>;
  bool VisitMap(const json& value, const std::string& path,
                const Handlers& handlers) {
    if (!value.is_object()) {
      Report(path.empty() ? "(top level)" : path, "must be a map");
      return false;
    }
    for (const auto& [key, child] : value.items()) {
      const auto handler = handlers.find(key);
      if (handler == handlers.end()) {
        Report(At(path, key), "unknown key");
      } else {
        handler->second(child, At(path, key));
      }
    }
    return true;
  }

  std::optional<std::string> String(const json& v, const std::string& path) {
    if (v.is_string() && !v.get_ref<const std::string&>().empty()) {
      return v.get<std::string>();
    }
    Report(path, "must be a non-empty string");
    return std::nullopt;
  }

  ConfigSource Config(const json& v, const std::string& path) {
    if (v.is_object()) return {"", v.dump(), "inline"};
    auto file = String(v, path);
    if (!file) return {};
    const std::filesystem::path base =
        std::filesystem::path(file_).parent_path();
    return {(base / *file).string(), "", *file};
  }

  // A list whose entries are maps (result records).
  std::optional<json> Records(const json& v, const std::string& path) {
    if (!v.is_array()) {
      Report(path, "must be a list of records (maps)");
      return std::nullopt;
    }
    bool ok = true;
    for (std::size_t i = 0; i < v.size(); ++i) {
      if (!v[i].is_object()) {
        Report(At(path, i),
               "must be a record (a map, e.g. {seq: 0, value: 1})");
        ok = false;
      }
    }
    return ok ? std::optional<json>(v) : std::nullopt;
  }

  json Counts(const json& v, const std::string& path) {
    json counts = json::object();
    Handlers handlers;
    for (std::string_view key : kCountKeys) {
      handlers[key] = [this, &counts, key](const json& n,
                                           const std::string& p) {
        if (n.is_number_unsigned() ||
            (n.is_number_integer() && n.get<std::int64_t>() >= 0)) {
          counts[std::string(key)] = n;
        } else {
          Report(p, "must be an integer >= 0");
        }
      };
    }
    VisitMap(v, path, handlers);
    return counts;
  }

  void State(const json& v, const std::string& path, std::string* state) {
    for (std::string_view s : kStates) {
      if (v.is_string() && v.get_ref<const std::string&>() == s) {
        *state = s;
        return;
      }
    }
    Report(path, "must be one of done, failed, cancelled");
  }

  void Timeout(const json& v, const std::string& path,
               std::chrono::milliseconds* timeout) {
    auto parsed = v.is_string() ? config::ParseDuration(v.get<std::string>())
                                : Result<std::chrono::milliseconds>(Error{});
    if (!parsed.ok() || parsed.value().count() == 0) {
      Report(path, "must be a duration above zero (e.g. 10s)");
      return;
    }
    *timeout = parsed.value();
  }

  Handlers CaseHandlers(TestCase& c) {
    return {
        {"name",
         [this, &c](const json& v, const std::string& p) {
           if (auto s = String(v, p)) c.name = *s;
         }},
        {"pipeline",
         [this, &c](const json& v, const std::string& p) {
           if (auto s = String(v, p)) c.pipeline = *s;
         }},
        {"input",
         [this, &c](const json& v, const std::string& p) {
           if (!v.is_array()) return Report(p, "must be a list of items");
           c.input.assign(v.begin(), v.end());
         }},
        {"ordered",
         [this, &c](const json& v, const std::string& p) {
           if (!v.is_boolean()) return Report(p, "must be true or false");
           c.ordered = v.get<bool>();
         }},
        {"results",
         [this, &c](const json& v, const std::string& p) {
           c.results = Records(v, p);
         }},
        {"contains",
         [this, &c](const json& v, const std::string& p) {
           c.contains = Records(v, p);
         }},
        {"aggregate",
         [&c](const json& v, const std::string&) { c.aggregate = v; }},
        {"items", [this, &c](const json& v,
                             const std::string& p) { c.items = Counts(v, p); }},
        {"state", [this, &c](const json& v,
                             const std::string& p) { State(v, p, &c.state); }},
        {"timeout", [this, &c](const json& v, const std::string& p) {
           Timeout(v, p, &c.timeout);
         }}};
  }

  // One entry of `tests`; `pipeline` is the file's (may be empty).
  std::optional<TestCase> Case(const json& v, const std::string& path,
                               const std::string& pipeline) {
    TestCase c;
    c.name = path;
    c.pipeline = pipeline;
    const std::size_t before = errors.size();
    if (!VisitMap(v, path, CaseHandlers(c))) return std::nullopt;
    if (!v.contains("input")) Report(At(path, "input"), "missing");
    if (c.pipeline.empty()) {
      Report(At(path, "pipeline"), "missing (set it here or at the top level)");
    }
    if (!v.contains("results") && !v.contains("contains") &&
        !v.contains("aggregate") && !v.contains("items") &&
        !v.contains("state")) {
      Report(path,
             "checks nothing: give results, contains, aggregate, items or "
             "state");
    }
    if (v.contains("results") && v.contains("contains")) {
      Report(At(path, "contains"), "give results or contains, not both");
    }
    if (errors.size() != before) return std::nullopt;
    return c;
  }

  void Cases(const json& v, const std::string& pipeline, TestFile* file) {
    if (!v.is_array() || v.empty()) {
      return Report("tests", "must be a non-empty list of cases");
    }
    for (std::size_t i = 0; i < v.size(); ++i) {
      if (auto c = Case(v[i], At("tests", i), pipeline)) {
        file->cases.push_back(std::move(*c));
      }
    }
  }

  void Root(const json& root, TestFile* file) {
    std::string pipeline;
    const json* tests = nullptr;
    file->config = {"", std::string(config::DefaultConfigText()),
                    "built-in default"};
    const bool map = VisitMap(
        root, "",
        {{"config", [&](const json& v,
                        const std::string& p) { file->config = Config(v, p); }},
         {"pipeline",
          [&](const json& v, const std::string& p) {
            if (auto s = String(v, p)) pipeline = *s;
          }},
         {"tests", [&](const json& v, const std::string&) { tests = &v; }}});
    if (!map) return;
    if (tests == nullptr) return Report("tests", "missing");
    Cases(*tests, pipeline, file);
  }

 private:
  const std::string& file_;
};

}  // namespace

Result<TestFile, std::vector<config::ConfigError>> ParseTestFile(
    std::string_view text, const std::string& path) {
  auto root = config::ParseYaml(text);
  if (!root.ok()) return std::move(root).error();
  Reader reader(path);
  TestFile file;
  file.path = path;
  reader.Root(root.value(), &file);
  if (!reader.errors.empty()) return std::move(reader.errors);
  return file;
}

Result<TestFile, std::vector<config::ConfigError>> ReadTestFile(
    const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Errors{{"", "cannot open the file"}};
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) return Errors{{"", "cannot read the file"}};
  return ParseTestFile(text.str(), path);
}

}  // namespace sluice::cli
