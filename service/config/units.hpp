// Defines the small textual units the configuration uses: durations
// ("250ms", "1.5s", "1h30m"), byte sizes ("16MiB", "1GB", "1048576"),
// listen addresses ("host:port") and ${VAR:-default} environment
// substitution.
#ifndef SLUICE_SERVICE_CONFIG_UNITS_HPP_
#define SLUICE_SERVICE_CONFIG_UNITS_HPP_

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "service/util/result.hpp"

namespace sluice::config {

// Parses a non-negative duration: one or more <number><unit> terms, the
// number possibly fractional, units ms, s, m, h (e.g. "250ms", "2s", "10m",
// "1h", "1.5s", "1h30m"); "0" alone is also accepted. Surrounding whitespace
// is ignored. Fails (code "invalid_duration") on anything else, on a result
// finer than a whole millisecond, or on overflow. Thread-safe.
Result<std::chrono::milliseconds> ParseDuration(std::string_view text);

// Formats a duration the way ParseDuration reads it, choosing the largest
// unit that divides it ("30s", "10m", "1500ms", "0s").
std::string FormatDuration(std::chrono::milliseconds d);

// Parses a non-negative byte size: a number (possibly fractional) with an
// optional unit, case-insensitive: B, KB/MB/GB/TB (powers of 1000), KiB/MiB/
// GiB/TiB (powers of 1024); no unit = bytes ("1048576"). Fractions are
// rounded down to a whole byte. Fails (code "invalid_size") on anything else
// or on overflow. Thread-safe.
Result<std::uint64_t> ParseSize(std::string_view text);

// A listen address split into its parts. Thread-compatible (plain value).
struct HostPort {
  std::string host;  // without the brackets of an IPv6 literal
  std::uint16_t port = 0;
};

// Parses "host:port": host is a name or IPv4 address, or an IPv6 literal in
// brackets ("[::1]:8080"); port is 0..65535 (0 = any free port). Fails (code
// "invalid_listen") otherwise. Thread-safe.
Result<HostPort> ParseHostPort(std::string_view text);

// Looks up an environment variable; nullopt when unset.
using EnvLookup = std::function<std::optional<std::string>(const std::string&)>;

// The process environment (std::getenv). Thread-safe as long as nobody
// calls setenv concurrently.
std::optional<std::string> GetEnv(const std::string& name);

// Replaces each ${VAR} with the variable's value and each ${VAR:-default}
// with the value, or `default` when VAR is unset or empty; "$$" is a literal
// "$", and a "$" not followed by "{" or "$" stays as it is. VAR must match
// [A-Za-z_][A-Za-z0-9_]*. Lines whose first non-blank character is '#'
// (YAML comments) are copied unchanged. Fails (code "invalid_env", message
// starting with "line L, column C: ") on an unterminated or malformed
// reference, or on an unset VAR without a default. Thread-safe if `lookup` is.
Result<std::string> SubstituteEnv(std::string_view text,
                                  const EnvLookup& lookup = GetEnv);

}  // namespace sluice::config

#endif  // SLUICE_SERVICE_CONFIG_UNITS_HPP_
