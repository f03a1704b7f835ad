#include "service/processors/aggregate.hpp"

#include <exception>
#include <limits>
#include <map>
#include <optional>
#include <string>

#include "service/processors/internal.hpp"
#include "service/util/json_pointer.hpp"

namespace sluice::processors {

namespace {

using nlohmann::json;

// A running sum that stays an exact integer while every input is an integer
// that fits int64 and nothing overflows, and falls back to double otherwise.
class NumericSum {
 public:
  void Add(const json& v) {
    ++count_;
    if (exact_ && v.is_number_integer() &&
        (!v.is_number_unsigned() ||
         v.get<std::uint64_t>() <=
             static_cast<std::uint64_t>(
                 std::numeric_limits<std::int64_t>::max()))) {
      std::int64_t next = 0;
      if (!__builtin_add_overflow(isum_, v.get<std::int64_t>(), &next)) {
        isum_ = next;
        return;
      }
    }
    if (exact_) {
      exact_ = false;
      dsum_ = static_cast<double>(isum_);
    }
    dsum_ += v.get<double>();
  }
  std::uint64_t count() const { return count_; }
  json Sum() const { return exact_ ? json(isum_) : json(dsum_); }
  double AsDouble() const {
    return exact_ ? static_cast<double>(isum_) : dsum_;
  }

 private:
  std::uint64_t count_ = 0;
  bool exact_ = true;
  std::int64_t isum_ = 0;
  double dsum_ = 0;
};

class Collect final : public Aggregator {
 public:
  void Add(const json&) override {}
  json Result() const override { return nullptr; }
  bool ReadsValues() const override { return false; }
};

class Count final : public Aggregator {
 public:
  void Add(const json&) override { ++n_; }
  json Result() const override { return n_; }
  bool ReadsValues() const override { return false; }

 private:
  std::uint64_t n_ = 0;
};

enum class NumOp { kSum, kMin, kMax, kAvg };

// sum/min/max/avg over the number at `field` of each value; values where it
// is missing or not a number are skipped.
class Numeric final : public Aggregator {
 public:
  Numeric(JsonPointer field, NumOp op) : field_(std::move(field)), op_(op) {}

  void Add(const json& value) override {
    const json* v = FindPointer(value, field_);
    if (v == nullptr || !v->is_number()) return;
    sum_.Add(*v);
    if (op_ == NumOp::kMin || op_ == NumOp::kMax) {
      const std::optional<int> c =
          best_.is_null() ? std::optional<int>() : internal::Compare(*v, best_);
      if (!c.has_value() || (op_ == NumOp::kMin ? *c < 0 : *c > 0)) best_ = *v;
    }
  }

  json Result() const override {
    if (sum_.count() == 0) return nullptr;
    switch (op_) {
      case NumOp::kSum:
        return sum_.Sum();
      case NumOp::kAvg:
        return sum_.AsDouble() / static_cast<double>(sum_.count());
      case NumOp::kMin:
      case NumOp::kMax:
        return best_;
    }
    return nullptr;
  }

 private:
  JsonPointer field_;
  NumOp op_;
  NumericSum sum_;
  json best_;  // min/max so far (null before the first number)
};

// group_by: key = the text of `field` (strings as-is, others compact JSON);
// count per key, or the sum of the number at `value` per key. Values without
// the key field, or (op sum) without a number at `value`, are skipped.
class GroupBy final : public Aggregator {
 public:
  GroupBy(JsonPointer field, std::optional<JsonPointer> value)
      : field_(std::move(field)), value_(std::move(value)) {}

  void Add(const json& item) override {
    try {
      const json* key = FindPointer(item, field_);
      if (key == nullptr) return;
      if (!value_.has_value()) {
        ++counts_[JsonText(*key)];
        return;
      }
      const json* v = FindPointer(item, *value_);
      if (v == nullptr || !v->is_number()) return;
      sums_[JsonText(*key)].Add(*v);
    } catch (const std::exception&) {
      // Only std::bad_alloc can get here; dropping one value beats crashing
      // the aggregator.
    }
  }

  json Result() const override {
    json out = json::object();
    for (const auto& [k, n] : counts_) out[k] = n;
    for (const auto& [k, s] : sums_) out[k] = s.Sum();
    return out;
  }

 private:
  JsonPointer field_;
  std::optional<JsonPointer> value_;  // set for op sum
  std::map<std::string, std::uint64_t> counts_;
  std::map<std::string, NumericSum> sums_;
};

constexpr std::string_view kTypes =
    "collect, count, sum, min, max, avg, group_by";

void CheckPointer(std::string_view key, const std::string& text,
                  std::vector<config::ConfigError>* errors) {
  if (auto p = ParseJsonPointer(text); !p.ok()) {
    errors->push_back({std::string(key), p.error().message});
  }
}

void CheckUnused(std::string_view key, const std::string& text,
                 const std::string& why,
                 std::vector<config::ConfigError>* errors) {
  if (!text.empty()) errors->push_back({std::string(key), why});
}

}  // namespace

std::vector<config::ConfigError> ValidateAggregateSpec(
    const config::AggregateSpec& spec) {
  std::vector<config::ConfigError> errors;
  const std::string& t = spec.type;
  const std::string not_used = "is not used by aggregate type '" + t + "'";
  if (t == "collect" || t == "count") {
    CheckUnused("field", spec.field, not_used, &errors);
    CheckUnused("op", spec.op, not_used, &errors);
    CheckUnused("value", spec.value, not_used, &errors);
  } else if (t == "sum" || t == "min" || t == "max" || t == "avg") {
    CheckPointer("field", spec.field, &errors);
    CheckUnused("op", spec.op, not_used, &errors);
    CheckUnused("value", spec.value, not_used, &errors);
  } else if (t == "group_by") {
    CheckPointer("field", spec.field, &errors);
    if (spec.op.empty() || spec.op == "count") {
      CheckUnused("value", spec.value, "is only used with op sum", &errors);
    } else if (spec.op == "sum") {
      if (spec.value.empty()) {
        errors.push_back(
            {"value",
             "is required with op sum (a JSON pointer to the number "
             "to sum, e.g. \"/amount\")"});
      } else {
        CheckPointer("value", spec.value, &errors);
      }
    } else {
      errors.push_back({"op", "unknown group_by op '" + spec.op +
                                  "' (expected count or sum)"});
    }
  } else if (t.empty()) {
    errors.push_back(
        {"type", "is required (one of: " + std::string(kTypes) + ")"});
  } else {
    errors.push_back({"type", "unknown aggregate type '" + t +
                                  "' (expected one of: " + std::string(kTypes) +
                                  ")"});
  }
  if (t == "collect" && spec.window.enabled()) {
    errors.push_back({"window",
                      "needs an aggregate that computes something (count, "
                      "sum, min, max, avg or group_by), not collect"});
  }
  return errors;
}

std::unique_ptr<Aggregator> MakeAggregator(const config::AggregateSpec& spec) {
  try {
    if (!ValidateAggregateSpec(spec).empty()) return nullptr;
    const std::string& t = spec.type;
    if (t == "collect") return std::make_unique<Collect>();
    if (t == "count") return std::make_unique<Count>();
    JsonPointer field = ParseJsonPointer(spec.field).value();
    if (t == "sum") return std::make_unique<Numeric>(field, NumOp::kSum);
    if (t == "min") return std::make_unique<Numeric>(field, NumOp::kMin);
    if (t == "max") return std::make_unique<Numeric>(field, NumOp::kMax);
    if (t == "avg") return std::make_unique<Numeric>(field, NumOp::kAvg);
    std::optional<JsonPointer> value;
    if (spec.op == "sum") value = ParseJsonPointer(spec.value).value();
    return std::make_unique<GroupBy>(std::move(field), std::move(value));
  } catch (const std::exception&) {
    return nullptr;
  }
}

}  // namespace sluice::processors
