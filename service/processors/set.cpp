// set: writes each configured value at its JSON pointer, creating objects
// on the way.
#include <exception>
#include <utility>

#include "service/processors/internal.hpp"

namespace sluice::processors::internal {

namespace {

class Set final : public Processor {
 public:
  explicit Set(std::vector<std::pair<JsonPointer, nlohmann::json>> fields)
      : fields_(std::move(fields)) {}

  Outcome Process(nlohmann::json item) override {
    try {
      for (const auto& [ptr, value] : fields_) {
        if (auto r = SetPointer(item, ptr, value); !r.ok()) {
          return Outcome::Fail(r.error().message);
        }
      }
      return Outcome::Value(std::move(item));
    } catch (const std::exception& e) {
      return Outcome::Fail(std::string("set: ") + e.what());
    }
  }

 private:
  // In the params' key order (sorted), so the result is deterministic.
  std::vector<std::pair<JsonPointer, nlohmann::json>> fields_;
};

}  // namespace

Errors ValidateSet(const nlohmann::json& params) {
  Errors errors;
  Params p(params, &errors, {"fields"});
  const nlohmann::json* fields = p.Get("fields");
  if (fields == nullptr) {
    p.Report("fields", "is required (a map of JSON pointer: value)");
  } else if (!fields->is_object() || fields->empty()) {
    p.Report("fields",
             "must be a non-empty map of JSON pointer: value, e.g. "
             "{\"/status\": \"ok\"}");
  } else {
    for (const auto& [key, value] : fields->items()) {
      if (auto ptr = ParseJsonPointer(key); !ptr.ok()) {
        p.Report("fields[" + nlohmann::json(key).dump() + "]",
                 ptr.error().message);
      }
    }
  }
  return errors;
}

Result<std::unique_ptr<Processor>> MakeSet(const nlohmann::json& params) {
  std::vector<std::pair<JsonPointer, nlohmann::json>> fields;
  for (const auto& [key, value] : params.at("fields").items()) {
    fields.emplace_back(ParseJsonPointer(key).value(), value);
  }
  return std::make_unique<Set>(std::move(fields));
}

}  // namespace sluice::processors::internal
