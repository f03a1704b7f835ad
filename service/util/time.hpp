// Defines the service's timestamp format: RFC 3339, UTC, milliseconds
// ("2026-11-24T01:02:03.456Z"), as contract §C1 requires.
#ifndef SLUICE_SERVICE_UTIL_TIME_HPP_
#define SLUICE_SERVICE_UTIL_TIME_HPP_

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

namespace sluice {

// Formats `tp` as "YYYY-MM-DDTHH:MM:SS.mmmZ" in UTC, truncating to the
// millisecond (times before 1970 round toward the earlier millisecond).
// Thread-safe; never throws except std::bad_alloc.
std::string FormatRfc3339(std::chrono::system_clock::time_point tp);

// Parses what FormatRfc3339 writes, plus any RFC 3339 date-time with an
// optional fraction (truncated to milliseconds) and a "Z" or "+hh:mm" /
// "-hh:mm" offset. Returns nullopt for anything else. Thread-safe.
std::optional<std::chrono::system_clock::time_point> ParseRfc3339(
    std::string_view text);

}  // namespace sluice

#endif  // SLUICE_SERVICE_UTIL_TIME_HPP_
