// remove: deletes each configured JSON pointer when present.
#include <exception>

#include "service/processors/internal.hpp"

namespace sluice::processors::internal {

namespace {

class Remove final : public Processor {
 public:
  explicit Remove(std::vector<JsonPointer> fields)
      : fields_(std::move(fields)) {}

  Outcome Process(nlohmann::json item) override {
    try {
      for (const JsonPointer& ptr : fields_) RemovePointer(item, ptr);
      return Outcome::Value(std::move(item));
    } catch (const std::exception& e) {
      return Outcome::Fail(std::string("remove: ") + e.what());
    }
  }

 private:
  std::vector<JsonPointer> fields_;
};

}  // namespace

Errors ValidateRemove(const nlohmann::json& params) {
  Errors errors;
  Params p(params, &errors, {"fields"});
  const nlohmann::json* fields = p.Get("fields");
  if (fields == nullptr) {
    p.Report("fields", "is required (a list of JSON pointers)");
  } else if (!fields->is_array() || fields->empty()) {
    p.Report("fields",
             "must be a non-empty list of JSON pointers, e.g. [\"/debug\"]");
  } else {
    for (std::size_t i = 0; i < fields->size(); ++i) {
      const nlohmann::json& f = (*fields)[i];
      const std::string path = "fields[" + std::to_string(i) + "]";
      if (!f.is_string()) {
        p.Report(path, "must be a string (a JSON pointer), not " +
                           DescribeJsonType(f));
      } else if (auto ptr = ParseJsonPointer(f.get<std::string>()); !ptr.ok()) {
        p.Report(path, ptr.error().message);
      } else if (ptr.value().empty()) {
        p.Report(path, "cannot remove the item itself (\"\"); use a filter");
      }
    }
  }
  return errors;
}

Result<std::unique_ptr<Processor>> MakeRemove(const nlohmann::json& params) {
  std::vector<JsonPointer> fields;
  for (const nlohmann::json& f : params.at("fields")) {
    fields.push_back(ParseJsonPointer(f.get<std::string>()).value());
  }
  return std::make_unique<Remove>(std::move(fields));
}

}  // namespace sluice::processors::internal
