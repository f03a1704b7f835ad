// passthrough: the item unchanged.
#include "service/processors/internal.hpp"

namespace sluice::processors::internal {

namespace {

class Passthrough final : public Processor {
 public:
  Outcome Process(nlohmann::json item) override {
    return Outcome::Value(std::move(item));
  }
};

}  // namespace

Errors ValidatePassthrough(const nlohmann::json& params) {
  Errors errors;
  Params p(params, &errors, {});
  return errors;
}

Result<std::unique_ptr<Processor>> MakePassthrough(const nlohmann::json&) {
  return std::make_unique<Passthrough>();
}

}  // namespace sluice::processors::internal
