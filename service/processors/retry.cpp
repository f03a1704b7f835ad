// Implementation of the http processor's retry schedule (see retry.hpp).
#include "service/processors/retry.hpp"

#include <algorithm>
#include <array>
#include <cstddef>
#include <string>

#include "service/util/text.hpp"

namespace sluice::processors::internal {

namespace {

using std::chrono::milliseconds;

// Retry-After values above this are treated as this: it keeps the
// arithmetic far from overflow, and every caller caps much lower.
constexpr std::chrono::seconds kRetryAfterCeiling{24 * 60 * 60};

constexpr std::array<std::string_view, 7> kDays = {"Mon", "Tue", "Wed", "Thu",
                                                   "Fri", "Sat", "Sun"};
constexpr std::array<std::string_view, 7> kLongDays = {
    "Monday", "Tuesday",  "Wednesday", "Thursday",
    "Friday", "Saturday", "Sunday"};
constexpr std::array<std::string_view, 12> kMonths = {
    "Jan", "Feb", "Mar", "Apr", "May", "Jun",
    "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

bool IsDigit(char c) { return c >= '0' && c <= '9'; }

// A left-to-right reader over the fixed-format HTTP-date grammars
// (RFC 9110 §5.6.7): every token has an exact width, so no backtracking.
class Cursor {
 public:
  explicit Cursor(std::string_view s) : s_(s) {}

  bool Literal(std::string_view t) {
    if (s_.substr(i_, t.size()) != t) return false;
    i_ += t.size();
    return true;
  }
  // Exactly `n` digits.
  std::optional<int> Digits(std::size_t n) {
    if (i_ + n > s_.size()) return std::nullopt;
    int v = 0;
    for (std::size_t k = 0; k < n; ++k) {
      const char c = s_[i_ + k];
      if (!IsDigit(c)) return std::nullopt;
      v = v * 10 + (c - '0');
    }
    i_ += n;
    return v;
  }
  // One of `names`; returns its index.
  template <std::size_t N>
  std::optional<int> OneOf(const std::array<std::string_view, N>& names) {
    for (std::size_t k = 0; k < N; ++k) {
      if (Literal(names[k])) return static_cast<int>(k);
    }
    return std::nullopt;
  }
  bool AtEnd() const { return i_ == s_.size(); }

 private:
  std::string_view s_;
  std::size_t i_ = 0;
};

struct TimeOfDay {
  int h = 0, m = 0, s = 0;
};

// "HH:MM:SS" (a leap second 60 is accepted, as the grammar allows).
std::optional<TimeOfDay> ReadTime(Cursor& c) {
  auto h = c.Digits(2);
  if (!h || !c.Literal(":")) return std::nullopt;
  auto m = c.Digits(2);
  if (!m || !c.Literal(":")) return std::nullopt;
  auto s = c.Digits(2);
  if (!s || *h > 23 || *m > 59 || *s > 60) return std::nullopt;
  return TimeOfDay{*h, *m, *s};
}

std::optional<std::chrono::system_clock::time_point> MakeTime(int year,
                                                              int month0,
                                                              int day,
                                                              TimeOfDay t) {
  using namespace std::chrono;
  const year_month_day ymd{
      std::chrono::year(year),
      std::chrono::month(static_cast<unsigned>(month0 + 1)),
      std::chrono::day(static_cast<unsigned>(day))};
  if (!ymd.ok()) return std::nullopt;
  return time_point_cast<system_clock::duration>(sys_days(ymd) + hours(t.h) +
                                                 minutes(t.m) + seconds(t.s));
}

// IMF-fixdate: "Sun, 06 Nov 1994 08:49:37 GMT".
std::optional<std::chrono::system_clock::time_point> ImfFixdate(
    std::string_view s) {
  Cursor c(s);
  if (!c.OneOf(kDays) || !c.Literal(", ")) return std::nullopt;
  auto day = c.Digits(2);
  if (!day || !c.Literal(" ")) return std::nullopt;
  auto month = c.OneOf(kMonths);
  if (!month || !c.Literal(" ")) return std::nullopt;
  auto year = c.Digits(4);
  if (!year || !c.Literal(" ")) return std::nullopt;
  auto t = ReadTime(c);
  if (!t || !c.Literal(" GMT") || !c.AtEnd()) return std::nullopt;
  return MakeTime(*year, *month, *day, *t);
}

// RFC 850: "Sunday, 06-Nov-94 08:49:37 GMT". A two-digit year that would be
// more than 50 years ahead of `now` is in the previous century (RFC 9110).
std::optional<std::chrono::system_clock::time_point> Rfc850(
    std::string_view s, std::chrono::system_clock::time_point now) {
  Cursor c(s);
  if (!c.OneOf(kLongDays) || !c.Literal(", ")) return std::nullopt;
  auto day = c.Digits(2);
  if (!day || !c.Literal("-")) return std::nullopt;
  auto month = c.OneOf(kMonths);
  if (!month || !c.Literal("-")) return std::nullopt;
  auto yy = c.Digits(2);
  if (!yy || !c.Literal(" ")) return std::nullopt;
  auto t = ReadTime(c);
  if (!t || !c.Literal(" GMT") || !c.AtEnd()) return std::nullopt;
  const int this_year = static_cast<int>(
      std::chrono::year_month_day(std::chrono::floor<std::chrono::days>(now))
          .year());
  int year = this_year / 100 * 100 + *yy;
  if (year > this_year + 50) year -= 100;
  return MakeTime(year, *month, *day, *t);
}

// asctime: "Sun Nov  6 08:49:37 1994" (a one-digit day is space-padded).
std::optional<std::chrono::system_clock::time_point> Asctime(
    std::string_view s) {
  Cursor c(s);
  if (!c.OneOf(kDays) || !c.Literal(" ")) return std::nullopt;
  auto month = c.OneOf(kMonths);
  if (!month || !c.Literal(" ")) return std::nullopt;
  std::optional<int> day;
  if (c.Literal(" ")) {
    day = c.Digits(1);
  } else {
    day = c.Digits(2);
  }
  if (!day || !c.Literal(" ")) return std::nullopt;
  auto t = ReadTime(c);
  if (!t || !c.Literal(" ")) return std::nullopt;
  auto year = c.Digits(4);
  if (!year || !c.AtEnd()) return std::nullopt;
  return MakeTime(*year, *month, *day, *t);
}

}  // namespace

bool IsRetryableStatus(unsigned status) {
  return status == 429 || (status >= 500 && status <= 599);
}

milliseconds BackoffDelay(const RetryPolicy& policy, int retry, double u) {
  const milliseconds cap = std::max(policy.max_backoff, milliseconds(0));
  milliseconds d = std::min(std::max(policy.backoff, milliseconds(0)), cap);
  // Doubling stops at the cap, so neither the loop nor the value can run
  // away whatever `retry` is.
  for (int n = 1; n < retry && d < cap; ++n) {
    d = d > cap / 2 ? cap : d * 2;
  }
  const milliseconds half = d / 2;
  u = std::clamp(u, 0.0, 1.0);
  const auto jitter =
      static_cast<milliseconds::rep>(u * static_cast<double>(half.count()));
  return d - half + milliseconds(jitter);
}

milliseconds RetryDelay(const RetryPolicy& policy, int retry,
                        std::optional<milliseconds> retry_after, double u) {
  if (retry_after.has_value()) {
    return std::clamp(*retry_after, milliseconds(0),
                      std::max(policy.max_backoff, milliseconds(0)));
  }
  return BackoffDelay(policy, retry, u);
}

std::optional<milliseconds> ParseRetryAfter(
    std::string_view value, std::chrono::system_clock::time_point now) {
  value = TrimOws(value);
  if (value.empty()) return std::nullopt;
  if (std::all_of(value.begin(), value.end(), IsDigit)) {
    // delay-seconds; more digits than a day has seconds saturate.
    std::int64_t seconds = 0;
    for (char c : value) {
      seconds = std::min<std::int64_t>(seconds * 10 + (c - '0'),
                                       kRetryAfterCeiling.count());
    }
    return std::chrono::duration_cast<milliseconds>(
        std::chrono::seconds(seconds));
  }
  std::optional<std::chrono::system_clock::time_point> at = ImfFixdate(value);
  if (!at) at = Rfc850(value, now);
  if (!at) at = Asctime(value);
  if (!at) return std::nullopt;
  if (*at <= now) return milliseconds(0);
  return std::min(std::chrono::ceil<milliseconds>(*at - now),
                  std::chrono::duration_cast<milliseconds>(kRetryAfterCeiling));
}

Jitter::Jitter() : engine_(std::random_device{}()) {}

Jitter::Jitter(std::uint64_t seed) : engine_(seed) {}

double Jitter::Next() {
  // uniform_real_distribution may return 1.0 through rounding on some
  // implementations; BackoffDelay clamps, and the range stays [d/2, d].
  return dist_(engine_);
}

}  // namespace sluice::processors::internal
