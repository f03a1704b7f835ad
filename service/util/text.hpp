// Defines the small text helpers several rooms of the service share:
// trimming whitespace (HTTP's optional whitespace, or any ASCII space) and
// JSON text that never throws on invalid UTF-8.
#ifndef SLUICE_SERVICE_UTIL_TEXT_HPP_
#define SLUICE_SERVICE_UTIL_TEXT_HPP_

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

namespace sluice {

// `s` without leading and trailing spaces and tabs: RFC 9110's optional
// whitespace (OWS) around a header value or list element. Thread-safe.
inline std::string_view TrimOws(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) {
    s.remove_prefix(1);
  }
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) {
    s.remove_suffix(1);
  }
  return s;
}

// `s` without leading and trailing ASCII whitespace (" \t\n\v\f\r"), as
// config values are read. Thread-safe.
inline std::string_view TrimSpace(std::string_view s) {
  constexpr std::string_view kSpace = " \t\n\v\f\r";
  const std::size_t first = s.find_first_not_of(kSpace);
  if (first == std::string_view::npos) return {};
  return s.substr(first, s.find_last_not_of(kSpace) - first + 1);
}

// Compact JSON text of `value`. Strings holding bytes that are not UTF-8
// (yaml-cpp and a Lua script may pass them through) print them as U+FFFD,
// where a strict dump() throws. Never throws except std::bad_alloc.
inline std::string DumpLenient(const nlohmann::json& value) {
  return value.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace sluice

#endif  // SLUICE_SERVICE_UTIL_TEXT_HPP_
