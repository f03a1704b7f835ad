// Implementation of the comparisons of `sluice test` (see result_diff.hpp).
#include "service/cli/result_diff.hpp"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <optional>
#include <sstream>

namespace sluice::cli {
namespace {

using nlohmann::json;

bool NumbersMatch(const json& a, const json& b) {
  // Integers compare exactly: a double would round large ids.
  if (!a.is_number_float() && !b.is_number_float()) return a == b;
  const double x = a.get<double>();
  const double y = b.get<double>();
  if (x == y) return true;
  const double scale = std::max({1.0, std::fabs(x), std::fabs(y)});
  return std::fabs(x - y) <= 1e-9 * scale;
}

// `value` as pretty JSON, each line behind `prefix` ("- " or "+ ").
void AppendPretty(std::vector<std::string>& lines, std::string_view prefix,
                  const json& value) {
  // Replace, not throw, on bytes that are not UTF-8: this is for reading.
  std::istringstream text(
      value.dump(2, ' ', false, json::error_handler_t::replace));
  for (std::string line; std::getline(text, line);) {
    lines.push_back(std::string(prefix) + line);
  }
}

// `heading`, then each record (at most `max_shown`) behind `prefix`.
void AppendRecords(std::vector<std::string>& lines, const std::string& heading,
                   std::string_view prefix,
                   const std::vector<const json*>& records,
                   std::size_t max_shown) {
  if (records.empty()) return;
  lines.push_back(heading);
  for (std::size_t i = 0; i < records.size() && i < max_shown; ++i) {
    AppendPretty(lines, prefix, *records[i]);
  }
  if (records.size() > max_shown) {
    lines.push_back(std::string(prefix) + "... and " +
                    std::to_string(records.size() - max_shown) + " more");
  }
}

std::string Count(std::size_t n, std::string_view what) {
  return std::to_string(n) + " " + std::string(what) + (n == 1 ? "" : "s");
}

// Which expected record each actual record is paired with (nullopt: none),
// as a maximum bipartite matching (Kuhn's augmenting paths): with partial
// patterns a greedy pairing could use up the only record a later pattern
// matches.
class Matching {
 public:
  Matching(const json& expected, const json& actual, bool partial)
      : edges_(expected.size()), owner_(actual.size()) {
    for (std::size_t e = 0; e < expected.size(); ++e) {
      for (std::size_t a = 0; a < actual.size(); ++a) {
        if (JsonMatches(expected[e], actual[a], partial)) {
          edges_[e].push_back(a);
        }
      }
    }
    for (std::size_t e = 0; e < expected.size(); ++e) {
      std::vector<bool> seen(actual.size(), false);
      if (!Augment(e, seen)) unmatched_expected_.push_back(e);
    }
  }

  const std::vector<std::size_t>& unmatched_expected() const {
    return unmatched_expected_;
  }
  bool matched(std::size_t actual) const { return owner_[actual].has_value(); }

 private:
  bool Augment(std::size_t e, std::vector<bool>& seen) {
    for (std::size_t a : edges_[e]) {
      if (seen[a]) continue;
      seen[a] = true;
      if (!owner_[a] || Augment(*owner_[a], seen)) {
        owner_[a] = e;
        return true;
      }
    }
    return false;
  }

  std::vector<std::vector<std::size_t>> edges_;
  std::vector<std::optional<std::size_t>> owner_;
  std::vector<std::size_t> unmatched_expected_;
};

// Unordered: the expected records without a partner, then the records
// without one.
std::vector<std::string> DiffMultiset(const json& expected, const json& actual,
                                      bool partial, std::size_t max_shown) {
  const Matching matching(expected, actual, partial);
  std::vector<std::string> lines;
  if (matching.unmatched_expected().empty() &&
      (partial || expected.size() == actual.size())) {
    return lines;
  }
  std::vector<const json*> missing, extra;
  for (std::size_t e : matching.unmatched_expected()) {
    missing.push_back(&expected[e]);
  }
  for (std::size_t a = 0; a < actual.size(); ++a) {
    if (!matching.matched(a)) extra.push_back(&actual[a]);
  }
  const std::string key = partial ? "contains" : "results";
  AppendRecords(lines,
                key + ": " + Count(missing.size(), "expected record") +
                    " not found (- expected)",
                "- ", missing, max_shown);
  AppendRecords(lines,
                partial ? "results: " + Count(extra.size(), "record") +
                              " matched by nothing (+ got)"
                        : "results: " + Count(extra.size(), "record") +
                              " not expected (+ got)",
                "+ ", extra, max_shown);
  return lines;
}

// Ordered and partial: each expected record must come after the one before.
std::vector<std::string> DiffSubsequence(const json& expected,
                                         const json& actual,
                                         std::size_t max_shown) {
  std::vector<const json*> missing;
  std::size_t next = 0;
  for (const json& e : expected) {
    std::size_t a = next;
    while (a < actual.size() && !JsonMatches(e, actual[a], true)) ++a;
    if (a == actual.size()) {
      missing.push_back(&e);
    } else {
      next = a + 1;
    }
  }
  std::vector<std::string> lines;
  AppendRecords(lines,
                "contains: " + Count(missing.size(), "expected record") +
                    " not found in this order (- expected)",
                "- ", missing, max_shown);
  return lines;
}

// Ordered and exact: the same multiset first, then the same order.
std::vector<std::string> DiffSequence(const json& expected, const json& actual,
                                      std::size_t max_shown) {
  std::vector<std::string> lines =
      DiffMultiset(expected, actual, false, max_shown);
  if (!lines.empty()) return lines;
  for (std::size_t i = 0; i < expected.size(); ++i) {
    if (JsonMatches(expected[i], actual[i], false)) continue;
    lines.push_back("results: the expected records in another order; at " +
                    std::to_string(i) + " (0-based):");
    AppendPretty(lines, "- ", expected[i]);
    AppendPretty(lines, "+ ", actual[i]);
    break;
  }
  return lines;
}

}  // namespace

bool JsonMatches(const json& expected, const json& actual, bool partial) {
  if (expected.is_number() && actual.is_number()) {
    return NumbersMatch(expected, actual);
  }
  if (expected.type() != actual.type()) return false;
  if (expected.is_array()) {
    if (expected.size() != actual.size()) return false;
    for (std::size_t i = 0; i < expected.size(); ++i) {
      if (!JsonMatches(expected[i], actual[i], partial)) return false;
    }
    return true;
  }
  if (expected.is_object()) {
    if (!partial && expected.size() != actual.size()) return false;
    for (const auto& [key, value] : expected.items()) {
      const auto it = actual.find(key);
      if (it == actual.end() || !JsonMatches(value, *it, partial)) {
        return false;
      }
    }
    return true;
  }
  return expected == actual;
}

std::vector<std::string> DiffRecords(const json& expected, const json& actual,
                                     RecordMatch how, std::size_t max_shown) {
  if (!how.ordered) {
    return DiffMultiset(expected, actual, how.partial, max_shown);
  }
  return how.partial ? DiffSubsequence(expected, actual, max_shown)
                     : DiffSequence(expected, actual, max_shown);
}

std::vector<std::string> DiffValue(std::string_view label, const json& expected,
                                   const json& actual, bool partial) {
  std::vector<std::string> lines;
  if (JsonMatches(expected, actual, partial)) return lines;
  lines.push_back(std::string(label) + ": (- expected, + got)");
  AppendPretty(lines, "- ", expected);
  AppendPretty(lines, "+ ", actual);
  return lines;
}

}  // namespace sluice::cli
