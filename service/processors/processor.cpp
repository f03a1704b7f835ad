#include "service/processors/processor.hpp"

#include <exception>
#include <functional>

#include "service/processors/internal.hpp"

namespace sluice::processors {

namespace internal {

namespace {

std::string QuotedKey(std::string_view key) {
  bool plain = !key.empty();
  for (char c : key) {
    plain = plain && ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                      (c >= '0' && c <= '9') || c == '_');
  }
  return plain ? std::string(key) : nlohmann::json(key).dump();
}

}  // namespace

Params::Params(const nlohmann::json& params, Errors* errors,
               std::initializer_list<std::string_view> allowed)
    : params_(params), errors_(errors) {
  if (!params_.is_object()) {
    Report("", "must be a map");
    return;
  }
  std::string expected;
  for (std::string_view a : allowed) {
    expected += expected.empty() ? "" : ", ";
    expected += a;
  }
  for (const auto& [key, value] : params_.items()) {
    bool known = false;
    for (std::string_view a : allowed) known = known || key == a;
    if (!known) {
      Report(QuotedKey(key),
             expected.empty()
                 ? "unknown key (this processor takes no parameters)"
                 : "unknown key (expected one of: " + expected + ")");
    }
  }
}

const nlohmann::json* Params::Get(std::string_view key) const {
  if (!params_.is_object()) return nullptr;
  auto it = params_.find(key);
  return it == params_.end() ? nullptr : &*it;
}

std::optional<JsonPointer> Params::Pointer(std::string_view key, bool required,
                                           std::string_view fallback) {
  const nlohmann::json* v = Get(key);
  if (v == nullptr) {
    if (required) {
      Report(std::string(key), "is required");
      return std::nullopt;
    }
    return ParseJsonPointer(fallback).value();
  }
  if (!v->is_string()) {
    Report(std::string(key),
           "must be a string (a JSON pointer such as "
           "\"/user/name\"; \"\" is the item itself), not " +
               DescribeJsonType(*v));
    return std::nullopt;
  }
  auto ptr = ParseJsonPointer(v->get_ref<const std::string&>());
  if (!ptr.ok()) {
    Report(std::string(key), ptr.error().message);
    return std::nullopt;
  }
  return std::move(ptr).value();
}

std::optional<std::string> Params::String(std::string_view key, bool required) {
  const nlohmann::json* v = Get(key);
  if (v == nullptr) {
    if (required) Report(std::string(key), "is required");
    return std::nullopt;
  }
  if (!v->is_string()) {
    Report(std::string(key), "must be a string, not " + DescribeJsonType(*v));
    return std::nullopt;
  }
  return v->get<std::string>();
}

void Params::Report(std::string path, std::string message) {
  errors_->push_back({std::move(path), std::move(message)});
}

std::optional<int> Compare(const nlohmann::json& a, const nlohmann::json& b) {
  auto sign = [](auto x, auto y) { return x < y ? -1 : (y < x ? 1 : 0); };
  if (a.is_string() && b.is_string()) {
    const int c = a.get_ref<const std::string&>().compare(
        b.get_ref<const std::string&>());
    return c < 0 ? -1 : (c > 0 ? 1 : 0);
  }
  if (!a.is_number() || !b.is_number()) return std::nullopt;
  if (a.is_number_float() || b.is_number_float()) {
    return sign(a.get<double>(), b.get<double>());
  }
  // Both integers: compare exactly across signed/unsigned.
  const bool a_neg = a.is_number_integer() && !a.is_number_unsigned() &&
                     a.get<std::int64_t>() < 0;
  const bool b_neg = b.is_number_integer() && !b.is_number_unsigned() &&
                     b.get<std::int64_t>() < 0;
  if (a_neg != b_neg) return a_neg ? -1 : 1;
  if (a_neg) return sign(a.get<std::int64_t>(), b.get<std::int64_t>());
  return sign(a.get<std::uint64_t>(), b.get<std::uint64_t>());
}

std::string DescribeField(const JsonPointer& ptr) {
  return ptr.empty() ? std::string("the item") : "field " + ptr.to_string();
}

Error InvalidSpec(const Errors& errors) {
  std::string message;
  for (const config::ConfigError& e : errors) {
    message += message.empty() ? "" : "; ";
    message += config::ToString(e);
  }
  if (message.empty()) message = "the processor spec is not valid";
  return Error{"invalid_spec", std::move(message)};
}

}  // namespace internal

namespace {

using Validator = internal::Errors (*)(const nlohmann::json&);
using Made = Result<std::unique_ptr<Processor>>;
using Factory = Made (*)(const nlohmann::json&);
using ContextFactory = Made (*)(const nlohmann::json&, const ProcessorContext&);

// Exactly one of make / make_in_context is set.
struct TypeEntry {
  std::string_view type;
  Validator validate;
  Factory make;
  ContextFactory make_in_context = nullptr;
};

constexpr TypeEntry kTypes[] = {
    {"passthrough", internal::ValidatePassthrough, internal::MakePassthrough},
    {"set", internal::ValidateSet, internal::MakeSet},
    {"remove", internal::ValidateRemove, internal::MakeRemove},
    {"filter", internal::ValidateFilter, internal::MakeFilter},
    {"split", internal::ValidateSplit, internal::MakeSplit},
    {"sha256", internal::ValidateSha256, internal::MakeSha256},
    {"delay", internal::ValidateDelay, internal::MakeDelay},
    {"lua", internal::ValidateLua, internal::MakeLua},
    {"http", internal::ValidateHttp, nullptr, internal::MakeHttp},
};

const TypeEntry* FindType(std::string_view type) {
  for (const TypeEntry& t : kTypes) {
    if (t.type == type) return &t;
  }
  return nullptr;
}

}  // namespace

const std::vector<std::string>& AvailableProcessorTypes() {
  static const std::vector<std::string> types = [] {
    std::vector<std::string> v;
    for (const TypeEntry& t : kTypes) v.emplace_back(t.type);
    return v;
  }();
  return types;
}

std::vector<config::ConfigError> ValidateProcessorSpec(
    const config::ProcessorSpec& spec) {
  try {
    if (spec.type.empty()) return {{"type", "is required"}};
    if (const TypeEntry* t = FindType(spec.type)) {
      return t->validate(spec.params);
    }
    std::string known;
    for (const TypeEntry& t : kTypes) {
      known += known.empty() ? "" : ", ";
      known += t.type;
    }
    return {{"type", "unknown processor type '" + spec.type +
                         "' (expected one of: " + known + ")"}};
  } catch (const std::exception& e) {
    return {{"", std::string("cannot validate: ") + e.what()}};
  }
}

Result<std::unique_ptr<Processor>> MakeProcessor(
    const config::ProcessorSpec& spec, const ProcessorContext& context) {
  try {
    internal::Errors errors = ValidateProcessorSpec(spec);
    if (!errors.empty()) return internal::InvalidSpec(errors);
    const TypeEntry* t = FindType(spec.type);  // known: it validated
    return t->make_in_context != nullptr
               ? t->make_in_context(spec.params, context)
               : t->make(spec.params);
  } catch (const std::exception& e) {
    return Error{"unavailable",
                 std::string("cannot build the processor: ") + e.what()};
  }
}

}  // namespace sluice::processors
