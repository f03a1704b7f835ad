#include "service/config/units.hpp"

#include <cctype>
#include <cmath>
#include <cstdlib>
#include <limits>

#include "service/util/text.hpp"

namespace sluice::config {

namespace {

bool IsDigit(char c) { return c >= '0' && c <= '9'; }

// A decimal number read exactly: value = mantissa / 10^frac_digits.
struct Decimal {
  std::uint64_t mantissa = 0;
  int frac_digits = 0;
};

// Reads digits[.digits] at s[*pos]. Limits keep mantissa within uint64.
bool ReadDecimal(std::string_view s, std::size_t* pos, Decimal* out) {
  Decimal d;
  int digits = 0;
  bool any = false;
  while (*pos < s.size() && IsDigit(s[*pos])) {
    if (++digits > 18) return false;
    d.mantissa = d.mantissa * 10 + static_cast<std::uint64_t>(s[*pos] - '0');
    any = true;
    ++*pos;
  }
  if (*pos < s.size() && s[*pos] == '.') {
    ++*pos;
    bool frac_any = false;
    while (*pos < s.size() && IsDigit(s[*pos])) {
      if (++digits > 18 || d.frac_digits >= 9) return false;
      d.mantissa = d.mantissa * 10 + static_cast<std::uint64_t>(s[*pos] - '0');
      ++d.frac_digits;
      frac_any = true;
      ++*pos;
    }
    if (!frac_any) return false;
  }
  if (!any && d.frac_digits == 0) return false;
  *out = d;
  return true;
}

std::uint64_t Pow10(int n) {
  std::uint64_t p = 1;
  for (int i = 0; i < n; ++i) p *= 10;
  return p;
}

Error DurationError(std::string_view text, std::string_view why) {
  return Error{"invalid_duration", "invalid duration \"" + std::string(text) +
                                       "\": " + std::string(why)};
}

Error SizeError(std::string_view text, std::string_view why) {
  return Error{"invalid_size", "invalid size \"" + std::string(text) +
                                   "\": " + std::string(why)};
}

bool IsEnvNameStart(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_';
}
bool IsEnvNameChar(char c) { return IsEnvNameStart(c) || IsDigit(c); }

}  // namespace

Result<std::chrono::milliseconds> ParseDuration(std::string_view text) {
  constexpr std::string_view kExpect =
      "expected a number with a unit (ms, s, m, h), e.g. \"250ms\", \"1.5s\", "
      "\"1h30m\"";
  const std::string_view s = TrimSpace(text);
  if (s.empty()) return DurationError(text, kExpect);
  std::size_t pos = 0;
  std::uint64_t total = 0;
  while (pos < s.size()) {
    Decimal d;
    if (!ReadDecimal(s, &pos, &d)) return DurationError(text, kExpect);
    std::uint64_t unit_ms = 0;
    if (pos == s.size()) {
      // Only a lone zero may omit its unit: "0" is unambiguous, "30" is not.
      if (pos == s.size() && total == 0 && d.mantissa == 0 &&
          s.find_first_not_of("0.") == std::string_view::npos) {
        return std::chrono::milliseconds{0};
      }
      return DurationError(text, "missing unit (ms, s, m or h)");
    }
    if (s.substr(pos, 2) == "ms") {
      unit_ms = 1;
      pos += 2;
    } else if (s[pos] == 's') {
      unit_ms = 1000;
      ++pos;
    } else if (s[pos] == 'm') {
      unit_ms = 60 * 1000;
      ++pos;
    } else if (s[pos] == 'h') {
      unit_ms = 60 * 60 * 1000;
      ++pos;
    } else {
      return DurationError(text, "unknown unit (use ms, s, m or h)");
    }
    const std::uint64_t scale = Pow10(d.frac_digits);
    const std::uint64_t whole = d.mantissa / scale;
    const std::uint64_t frac = d.mantissa % scale;
    // frac < 1e9 and unit_ms <= 3.6e6, so frac * unit_ms fits in 64 bits.
    if (frac * unit_ms % scale != 0) {
      return DurationError(text, "finer than one millisecond");
    }
    std::uint64_t term = 0;
    if (__builtin_mul_overflow(whole, unit_ms, &term) ||
        __builtin_add_overflow(term, frac * unit_ms / scale, &term) ||
        __builtin_add_overflow(total, term, &total) ||
        total > static_cast<std::uint64_t>(
                    std::numeric_limits<std::int64_t>::max())) {
      return DurationError(text, "too large");
    }
  }
  return std::chrono::milliseconds{static_cast<std::int64_t>(total)};
}

std::string FormatDuration(std::chrono::milliseconds d) {
  const auto ms = d.count();
  if (ms == 0) return "0s";
  if (ms % 3600000 == 0) return std::to_string(ms / 3600000) + "h";
  if (ms % 60000 == 0) return std::to_string(ms / 60000) + "m";
  if (ms % 1000 == 0) return std::to_string(ms / 1000) + "s";
  return std::to_string(ms) + "ms";
}

Result<std::uint64_t> ParseSize(std::string_view text) {
  const std::string_view s = TrimSpace(text);
  std::size_t pos = 0;
  Decimal d;
  if (!ReadDecimal(s, &pos, &d)) {
    return SizeError(text,
                     "expected a number of bytes with an optional unit (B, "
                     "KB, MB, GB, TB, KiB, MiB, GiB, TiB), e.g. \"16MiB\"");
  }
  std::string unit;
  for (char c : TrimSpace(s.substr(pos))) {
    unit.push_back(
        static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
  }
  std::uint64_t mult = 0;
  if (unit.empty() || unit == "b") {
    mult = 1;
  } else if (unit == "kb") {
    mult = 1000ULL;
  } else if (unit == "mb") {
    mult = 1000ULL * 1000;
  } else if (unit == "gb") {
    mult = 1000ULL * 1000 * 1000;
  } else if (unit == "tb") {
    mult = 1000ULL * 1000 * 1000 * 1000;
  } else if (unit == "kib") {
    mult = 1ULL << 10;
  } else if (unit == "mib") {
    mult = 1ULL << 20;
  } else if (unit == "gib") {
    mult = 1ULL << 30;
  } else if (unit == "tib") {
    mult = 1ULL << 40;
  } else {
    return SizeError(text,
                     "unknown unit \"" + unit +
                         "\" (use B, KB, MB, GB, TB, KiB, MiB, GiB or TiB)");
  }
  const std::uint64_t scale = Pow10(d.frac_digits);
  const std::uint64_t whole = d.mantissa / scale;
  const std::uint64_t frac = d.mantissa % scale;
  std::uint64_t bytes = 0;
  // The fractional part is below one unit, so long double's 64-bit mantissa
  // is exact enough for the rounding down it needs.
  const auto frac_bytes = static_cast<std::uint64_t>(std::floor(
      static_cast<long double>(frac) * static_cast<long double>(mult) /
      static_cast<long double>(scale)));
  if (__builtin_mul_overflow(whole, mult, &bytes) ||
      __builtin_add_overflow(bytes, frac_bytes, &bytes)) {
    return SizeError(text, "too large");
  }
  return bytes;
}

Result<HostPort> ParseHostPort(std::string_view text) {
  auto fail = [&](std::string_view why) {
    return Error{"invalid_listen", "invalid address \"" + std::string(text) +
                                       "\": " + std::string(why) +
                                       " (expected host:port, e.g. "
                                       "\"0.0.0.0:8080\" or \"[::1]:8080\")"};
  };
  HostPort hp;
  std::string_view port;
  if (!text.empty() && text.front() == '[') {
    const auto close = text.find(']');
    if (close == std::string_view::npos) return fail("unclosed '['");
    hp.host = std::string(text.substr(1, close - 1));
    if (hp.host.empty()) return fail("empty host");
    if (close + 1 >= text.size() || text[close + 1] != ':') {
      return fail("missing port");
    }
    port = text.substr(close + 2);
  } else {
    const auto colon = text.rfind(':');
    if (colon == std::string_view::npos) return fail("missing port");
    hp.host = std::string(text.substr(0, colon));
    if (hp.host.empty()) return fail("empty host");
    if (hp.host.find(':') != std::string::npos) {
      return fail("an IPv6 address must be in brackets");
    }
    port = text.substr(colon + 1);
  }
  for (char c : hp.host) {
    if (std::isspace(static_cast<unsigned char>(c)) || c == '/' || c == '[' ||
        c == ']') {
      return fail("bad character in host");
    }
  }
  if (port.empty() || port.size() > 5) return fail("bad port");
  unsigned value = 0;
  for (char c : port) {
    if (!IsDigit(c)) return fail("bad port");
    value = value * 10 + static_cast<unsigned>(c - '0');
  }
  if (value > 65535) return fail("port out of range 0..65535");
  hp.port = static_cast<std::uint16_t>(value);
  return hp;
}

std::optional<std::string> GetEnv(const std::string& name) {
  // NOLINTNEXTLINE(concurrency-mt-unsafe): read-only use at config load.
  const char* v = std::getenv(name.c_str());
  if (v == nullptr) return std::nullopt;
  return std::string(v);
}

namespace {

// The length of the line at `text[start]` (its '\n' included) when it is a
// comment, else 0. A comment line is copied as it is: commenting a line out
// must also switch off its references (and their "not set" errors).
std::size_t CommentLineLength(std::string_view text, std::size_t start) {
  std::size_t j = start;
  while (j < text.size() && (text[j] == ' ' || text[j] == '\t')) ++j;
  if (j >= text.size() || text[j] != '#') return 0;
  const std::size_t end = text.find('\n', j);
  if (end == std::string_view::npos) return text.size() - start;
  return end + 1 - start;
}

// What the reference ${body} stands for. The error's message says why there
// is no value; the caller adds where the reference is.
Result<std::string> ResolveReference(std::string_view body,
                                     const EnvLookup& lookup) {
  std::string_view name = body;
  std::optional<std::string_view> fallback;
  if (const auto sep = body.find(":-"); sep != std::string_view::npos) {
    name = body.substr(0, sep);
    fallback = body.substr(sep + 2);
  }
  bool valid = !name.empty() && IsEnvNameStart(name.front());
  for (char n : name) valid = valid && IsEnvNameChar(n);
  if (!valid) {
    return Error{"invalid_env", "invalid variable reference ${" +
                                    std::string(body) +
                                    "} (expected ${VAR} or ${VAR:-default}, "
                                    "VAR matching [A-Za-z_][A-Za-z0-9_]*)"};
  }
  std::optional<std::string> value = lookup(std::string(name));
  if (value.has_value() && !value->empty()) return *std::move(value);
  if (fallback.has_value()) return std::string(*fallback);
  if (value.has_value()) return std::string();  // set but empty, no default
  return Error{"invalid_env", "environment variable " + std::string(name) +
                                  " is not set (give a default: ${" +
                                  std::string(name) + ":-default})"};
}

}  // namespace

Result<std::string> SubstituteEnv(std::string_view text,
                                  const EnvLookup& lookup) {
  std::string out;
  out.reserve(text.size());
  std::size_t line = 1;
  std::size_t line_start = 0;
  auto fail = [&](std::size_t at, const std::string& why) {
    return Error{"invalid_env", "line " + std::to_string(line) + ", column " +
                                    std::to_string(at - line_start + 1) + ": " +
                                    why};
  };
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (i == line_start) {
      if (const std::size_t n = CommentLineLength(text, i); n > 0) {
        out.append(text.substr(i, n));
        i += n - 1;
        ++line;
        line_start = i + 1;
        continue;
      }
    }
    const char c = text[i];
    if (c == '\n') {
      ++line;
      line_start = i + 1;
    }
    if (c != '$' || i + 1 >= text.size()) {
      out.push_back(c);
      continue;
    }
    if (text[i + 1] == '$') {
      out.push_back('$');
      ++i;
      continue;
    }
    if (text[i + 1] != '{') {
      out.push_back(c);
      continue;
    }
    const auto close = text.find('}', i + 2);
    const auto newline = text.find('\n', i + 2);
    if (close == std::string_view::npos ||
        (newline != std::string_view::npos && newline < close)) {
      return fail(i, "unterminated ${ (expected ${VAR} or ${VAR:-default})");
    }
    auto value = ResolveReference(text.substr(i + 2, close - (i + 2)), lookup);
    if (!value.ok()) return fail(i, value.error().message);
    out += value.value();
    i = close;
  }
  return out;
}

}  // namespace sluice::config
