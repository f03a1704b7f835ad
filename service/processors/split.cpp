// split: an array field becomes its elements; a string field becomes its
// parts (split on `separator`, keeping empty parts, or by default on runs of
// whitespace, dropping empty ones). Each part replaces the original item.
#include <exception>

#include "service/processors/internal.hpp"

namespace sluice::processors::internal {

namespace {

bool IsSpace(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' ||
         c == '\v';
}

class Split final : public Processor {
 public:
  Split(JsonPointer field, std::optional<std::string> separator)
      : field_(std::move(field)), separator_(std::move(separator)) {}

  Outcome Process(nlohmann::json item) override {
    try {
      nlohmann::json* v = FindPointer(item, field_);
      if (v == nullptr) {
        return Outcome::Fail(DescribeField(field_) + " not found");
      }
      if (v->is_array()) {
        std::vector<nlohmann::json> parts;
        parts.reserve(v->size());
        for (nlohmann::json& element : *v) parts.push_back(std::move(element));
        return Outcome::Values(std::move(parts));
      }
      if (v->is_string()) {
        return Outcome::Values(SplitString(v->get_ref<const std::string&>()));
      }
      return Outcome::Fail(DescribeField(field_) + " is " +
                           DescribeJsonType(*v) +
                           "; split needs an array or a string");
    } catch (const std::exception& e) {
      return Outcome::Fail(std::string("split: ") + e.what());
    }
  }

 private:
  std::vector<nlohmann::json> SplitString(const std::string& s) const {
    std::vector<nlohmann::json> parts;
    if (separator_.has_value()) {
      std::size_t start = 0;
      while (true) {
        const std::size_t at = s.find(*separator_, start);
        if (at == std::string::npos) {
          parts.emplace_back(s.substr(start));
          break;
        }
        parts.emplace_back(s.substr(start, at - start));
        start = at + separator_->size();
      }
      return parts;
    }
    std::size_t i = 0;
    while (i < s.size()) {
      while (i < s.size() && IsSpace(s[i])) ++i;
      const std::size_t start = i;
      while (i < s.size() && !IsSpace(s[i])) ++i;
      if (i > start) parts.emplace_back(s.substr(start, i - start));
    }
    return parts;
  }

  JsonPointer field_;
  std::optional<std::string> separator_;
};

}  // namespace

Errors ValidateSplit(const nlohmann::json& params) {
  Errors errors;
  Params p(params, &errors, {"field", "separator"});
  p.Pointer("field", /*required=*/false);
  if (auto sep = p.String("separator", /*required=*/false);
      sep.has_value() && sep->empty()) {
    p.Report("separator",
             "must not be empty (omit it to split on runs of whitespace)");
  }
  return errors;
}

Result<std::unique_ptr<Processor>> MakeSplit(const nlohmann::json& params) {
  std::optional<std::string> separator;
  if (params.contains("separator")) {
    separator = params.at("separator").get<std::string>();
  }
  return std::make_unique<Split>(
      ParseJsonPointer(params.value("field", std::string())).value(),
      std::move(separator));
}

}  // namespace sluice::processors::internal
