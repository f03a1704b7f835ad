// Defines the comparisons behind `sluice test` (config_tests.hpp): JSON
// matching (exact, or partial like Benthos's `json_contains`, numbers by
// value) and the diffs a failing case prints, as "- expected" / "+ got"
// lines of pretty JSON.
#ifndef SLUICE_SERVICE_CLI_RESULT_DIFF_HPP_
#define SLUICE_SERVICE_CLI_RESULT_DIFF_HPP_

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

namespace sluice::cli {

// How expected result records are held against the job's records.
// Thread-compatible (plain value).
struct RecordMatch {
  // false: the expected list is every record, no more (`results`); true:
  // each expected record matches a record of its own, partially, and other
  // records may come too (`contains`).
  bool partial = false;
  // true: the records compare in order (`results`: the same sequence;
  // `contains`: the expected ones appear in this order); false: as a
  // multiset.
  bool ordered = false;
};

// True when `actual` matches `expected`. Numbers match by value (1 == 1.0)
// within a relative 1e-9, so an average need not be written to the last
// digit; other scalars must be equal. Arrays match element by element and
// must be as long. Objects: with `partial`, every key of `expected` must be
// in `actual` with a matching value (more keys may be there, at any depth);
// without, both have the same keys. Never throws.
bool JsonMatches(const nlohmann::json& expected, const nlohmann::json& actual,
                 bool partial);

// The lines that show why `actual` (the job's result records) does not
// satisfy `expected` under `how`; empty when it does. Unordered: the
// expected records found nowhere ("- ..."), then the records nothing
// expected ("+ ..."; for `partial`, the records left unmatched, as a hint).
// Ordered and exact, when the multisets agree: the first position where
// the order differs. Each record prints as indented pretty JSON, one
// prefixed line per JSON line; past `max_shown` records a side prints
// "... and N more". Requires: both are arrays. Throws only std::bad_alloc.
std::vector<std::string> DiffRecords(const nlohmann::json& expected,
                                     const nlohmann::json& actual,
                                     RecordMatch how,
                                     std::size_t max_shown = 20);

// The lines that show `expected` against `actual` under the heading
// `label` ("aggregate"), as pretty JSON; empty when JsonMatches(expected,
// actual, partial). Throws only std::bad_alloc.
std::vector<std::string> DiffValue(std::string_view label,
                                   const nlohmann::json& expected,
                                   const nlohmann::json& actual,
                                   bool partial = false);

}  // namespace sluice::cli

#endif  // SLUICE_SERVICE_CLI_RESULT_DIFF_HPP_
