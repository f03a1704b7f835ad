// delay: sleeps `duration`, then passes the item on: a stand-in for I/O.
#include <thread>

#include "service/config/units.hpp"
#include "service/processors/internal.hpp"
#include "sluice/patterns/runtime.hpp"

namespace sluice::processors::internal {

namespace {

// Longer sleeps would hold a drain (shutdown_grace) hostage.
constexpr std::chrono::milliseconds kMaxDelay{60 * 60 * 1000};

class Delay final : public Processor {
 public:
  explicit Delay(std::chrono::milliseconds duration) : duration_(duration) {}

  Outcome Process(nlohmann::json item) override {
    std::this_thread::sleep_for(duration_);
    return Outcome::Value(std::move(item));
  }
  // Suspends the worker's task, not its thread: a timer on the runtime.
  Task<Outcome> ProcessAsync(nlohmann::json item) override {
    co_await sluice::sleep_for(duration_);
    co_return Outcome::Value(std::move(item));
  }
  bool io_bound() const override { return true; }

 private:
  std::chrono::milliseconds duration_;
};

// The duration as text: a string ("50ms"), or the number 0.
std::optional<std::string> DurationText(const nlohmann::json& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_number_integer() || v.is_number_unsigned()) return v.dump();
  return std::nullopt;
}

}  // namespace

Errors ValidateDelay(const nlohmann::json& params) {
  Errors errors;
  Params p(params, &errors, {"duration"});
  const nlohmann::json* v = p.Get("duration");
  if (v == nullptr) {
    p.Report("duration", "is required (e.g. \"50ms\")");
    return errors;
  }
  const std::optional<std::string> text = DurationText(*v);
  if (!text.has_value()) {
    p.Report("duration", "must be a duration such as \"50ms\", not " +
                             DescribeJsonType(*v));
    return errors;
  }
  const auto d = config::ParseDuration(*text);
  if (!d.ok()) {
    p.Report("duration", d.error().message);
  } else if (d.value() > kMaxDelay) {
    p.Report("duration", "must be <= 1h");
  }
  return errors;
}

Result<std::unique_ptr<Processor>> MakeDelay(const nlohmann::json& params) {
  return std::make_unique<Delay>(
      config::ParseDuration(*DurationText(params.at("duration"))).value());
}

}  // namespace sluice::processors::internal
