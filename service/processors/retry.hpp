// Defines the http processor's retry schedule as pure functions, so it can
// be tested without sockets or clocks: which statuses are retried, the
// exponential backoff with equal jitter between attempts, the Retry-After
// header (delay-seconds or HTTP-date, RFC 9110 §10.2.3), and Jitter, a
// seedable source of the random fractions the backoff takes.
#ifndef SLUICE_SERVICE_PROCESSORS_RETRY_HPP_
#define SLUICE_SERVICE_PROCESSORS_RETRY_HPP_

#include <chrono>
#include <cstdint>
#include <optional>
#include <random>
#include <string_view>

namespace sluice::processors::internal {

// How often and how patiently to retry. Thread-compatible (plain value).
struct RetryPolicy {
  // Retries after the first attempt (so retries + 1 attempts in all).
  int retries = 3;
  // The base wait: before retry n (1-based) the wait is drawn from
  // [d/2, d] with d = min(max_backoff, backoff * 2^(n-1)) ("equal jitter":
  // it still grows exponentially, yet workers that failed together spread
  // out).
  std::chrono::milliseconds backoff{100};
  // No wait between attempts is longer than this, a Retry-After included:
  // it bounds how long a drain can wait for an item (see the http docs).
  std::chrono::milliseconds max_backoff{10000};
};

// True for the statuses worth another attempt: 429 and every 5xx.
bool IsRetryableStatus(unsigned status);

// The wait before retry `retry` (1 = the one after the first attempt)
// without a Retry-After: see RetryPolicy::backoff. `u` is a random fraction
// in [0, 1) (Jitter::Next); u = 0 gives the lower bound ceil(d/2), u -> 1
// approaches d. Requires retry >= 1, backoff and max_backoff >= 0. Never
// fails; a huge exponent saturates at max_backoff.
std::chrono::milliseconds BackoffDelay(const RetryPolicy& policy, int retry,
                                       double u);

// The wait before retry `retry`: the server's Retry-After when it sent a
// usable one (capped at max_backoff; no jitter, the server chose the time),
// otherwise BackoffDelay(policy, retry, u).
std::chrono::milliseconds RetryDelay(
    const RetryPolicy& policy, int retry,
    std::optional<std::chrono::milliseconds> retry_after, double u);

// Parses a Retry-After value: delay-seconds ("120") or an HTTP-date in any
// of the three forms a recipient must accept (IMF-fixdate "Sun, 06 Nov 1994
// 08:49:37 GMT", RFC 850 "Sunday, 06-Nov-94 08:49:37 GMT", asctime "Sun Nov
// 6 08:49:37 1994"), surrounding whitespace ignored. Returns the wait from
// `now`: a date in the past gives 0; seconds beyond a day saturate at one
// day (callers cap it far lower anyway). Returns nullopt for anything else
// (empty, negative, fractional, garbage, an impossible date): the caller
// then falls back to its own backoff. Thread-safe.
std::optional<std::chrono::milliseconds> ParseRetryAfter(
    std::string_view value, std::chrono::system_clock::time_point now);

// Random fractions in [0, 1) for BackoffDelay. Seed it for a reproducible
// sequence; default-constructed it seeds from std::random_device.
// Thread-compatible: one per worker, like the processor that owns it.
class Jitter {
 public:
  Jitter();
  explicit Jitter(std::uint64_t seed);
  double Next();

 private:
  std::mt19937_64 engine_;
  std::uniform_real_distribution<double> dist_{0.0, 1.0};
};

}  // namespace sluice::processors::internal

#endif  // SLUICE_SERVICE_PROCESSORS_RETRY_HPP_
