// filter: keeps the item when `field op value` holds, else it ends filtered.
//
// The rules (also in docs/configuration.md):
// - == is JSON equality; numbers compare by value (1 == 1.0), so do arrays
//   and objects element by element.
// - != is always exactly the negation of ==: a missing field or a value of
//   another type is "not equal", so != keeps the item.
// - < <= > >= order two numbers (by value) or two strings (bytewise); any
//   other pair, or a missing field, is false.
// - contains: a string field contains a string value as a substring; an
//   array field contains an element equal (==) to the value; anything else,
//   or a missing field, is false.
// - exists: the field is present (value, optional, defaults to true; false
//   keeps items where the field is missing). A present null exists.
#include <exception>

#include "service/processors/internal.hpp"

namespace sluice::processors::internal {

namespace {

enum class Op { kEq, kNe, kLt, kLe, kGt, kGe, kExists, kContains };

struct OpName {
  std::string_view name;
  Op op;
};

constexpr OpName kOps[] = {
    {"==", Op::kEq},         {"!=", Op::kNe},
    {"<", Op::kLt},          {"<=", Op::kLe},
    {">", Op::kGt},          {">=", Op::kGe},
    {"exists", Op::kExists}, {"contains", Op::kContains},
};

std::optional<Op> ParseOp(std::string_view name) {
  for (const OpName& o : kOps) {
    if (o.name == name) return o.op;
  }
  return std::nullopt;
}

// JSON equality, except that two numbers compare exactly by value (nlohmann
// would wrap a large unsigned into a negative signed).
bool Equal(const nlohmann::json& a, const nlohmann::json& b) {
  if (a.is_number() && b.is_number()) return Compare(a, b) == 0;
  return a == b;
}

bool Contains(const nlohmann::json& haystack, const nlohmann::json& needle) {
  if (haystack.is_string()) {
    return needle.is_string() &&
           haystack.get_ref<const std::string&>().find(
               needle.get_ref<const std::string&>()) != std::string::npos;
  }
  if (haystack.is_array()) {
    for (const nlohmann::json& element : haystack) {
      if (Equal(element, needle)) return true;
    }
  }
  return false;
}

class Filter final : public Processor {
 public:
  Filter(JsonPointer field, Op op, nlohmann::json value)
      : field_(std::move(field)), op_(op), value_(std::move(value)) {}

  Outcome Process(nlohmann::json item) override {
    try {
      if (Keep(item)) return Outcome::Value(std::move(item));
      return Outcome::Filtered();
    } catch (const std::exception& e) {
      return Outcome::Fail(std::string("filter: ") + e.what());
    }
  }

 private:
  bool Keep(const nlohmann::json& item) const {
    const nlohmann::json* v = FindPointer(item, field_);
    switch (op_) {
      case Op::kExists:
        return (v != nullptr) == value_.get<bool>();
      case Op::kEq:
        return v != nullptr && Equal(*v, value_);
      case Op::kNe:
        return !(v != nullptr && Equal(*v, value_));
      case Op::kContains:
        return v != nullptr && Contains(*v, value_);
      case Op::kLt:
      case Op::kLe:
      case Op::kGt:
      case Op::kGe:
        break;
    }
    if (v == nullptr) return false;
    const std::optional<int> c = Compare(*v, value_);
    if (!c.has_value()) return false;
    switch (op_) {
      case Op::kLt:
        return *c < 0;
      case Op::kLe:
        return *c <= 0;
      case Op::kGt:
        return *c > 0;
      case Op::kGe:
        return *c >= 0;
      default:
        return false;
    }
  }

  JsonPointer field_;
  Op op_;
  nlohmann::json value_;
};

}  // namespace

Errors ValidateFilter(const nlohmann::json& params) {
  Errors errors;
  Params p(params, &errors, {"field", "op", "value"});
  p.Pointer("field", /*required=*/false);
  const std::optional<std::string> op_name = p.String("op", /*required=*/true);
  if (!op_name.has_value()) return errors;
  const std::optional<Op> op = ParseOp(*op_name);
  if (!op.has_value()) {
    p.Report("op", "unknown op '" + *op_name +
                       "' (expected one of: == != < <= > >= exists contains)");
    return errors;
  }
  const nlohmann::json* value = p.Get("value");
  switch (*op) {
    case Op::kExists:
      if (value != nullptr && !value->is_boolean()) {
        p.Report("value",
                 "must be true or false with op exists (false keeps items "
                 "where the field is missing)");
      }
      break;
    case Op::kLt:
    case Op::kLe:
    case Op::kGt:
    case Op::kGe:
      if (value == nullptr) {
        p.Report("value", "is required with op " + *op_name);
      } else if (!value->is_number() && !value->is_string()) {
        p.Report("value", "must be a number or a string with op " + *op_name +
                              ", not " + DescribeJsonType(*value));
      }
      break;
    case Op::kEq:
    case Op::kNe:
    case Op::kContains:
      if (value == nullptr) {
        p.Report("value", "is required with op " + *op_name);
      }
      break;
  }
  return errors;
}

Result<std::unique_ptr<Processor>> MakeFilter(const nlohmann::json& params) {
  const std::string field = params.value("field", std::string());
  const Op op = *ParseOp(params.at("op").get<std::string>());
  nlohmann::json value =
      params.contains("value") ? params.at("value") : nlohmann::json();
  if (op == Op::kExists && value.is_null()) value = true;
  return std::make_unique<Filter>(ParseJsonPointer(field).value(), op,
                                  std::move(value));
}

}  // namespace sluice::processors::internal
