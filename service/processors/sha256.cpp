// sha256: the lowercase hex SHA-256 of the field's text (strings as-is,
// anything else as compact JSON) written to `target`.
#include <openssl/evp.h>

#include <array>
#include <exception>

#include "service/processors/internal.hpp"

namespace sluice::processors::internal {

namespace {

class Sha256 final : public Processor {
 public:
  Sha256(JsonPointer field, JsonPointer target)
      : field_(std::move(field)), target_(std::move(target)) {}

  Outcome Process(nlohmann::json item) override {
    try {
      const nlohmann::json* v = FindPointer(item, field_);
      if (v == nullptr) {
        return Outcome::Fail(DescribeField(field_) + " not found");
      }
      const std::string text = JsonText(*v);
      std::array<unsigned char, EVP_MAX_MD_SIZE> md{};
      unsigned int md_len = 0;
      if (EVP_Digest(text.data(), text.size(), md.data(), &md_len, EVP_sha256(),
                     nullptr) != 1) {
        return Outcome::Fail("sha256: OpenSSL EVP_Digest failed");
      }
      static constexpr char kHex[] = "0123456789abcdef";
      std::string hex;
      hex.reserve(2 * md_len);
      for (unsigned int i = 0; i < md_len; ++i) {
        hex.push_back(kHex[md[i] >> 4]);
        hex.push_back(kHex[md[i] & 0x0f]);
      }
      if (auto r = SetPointer(item, target_, std::move(hex)); !r.ok()) {
        return Outcome::Fail(r.error().message);
      }
      return Outcome::Value(std::move(item));
    } catch (const std::exception& e) {
      return Outcome::Fail(std::string("sha256: ") + e.what());
    }
  }

 private:
  JsonPointer field_;
  JsonPointer target_;
};

}  // namespace

Errors ValidateSha256(const nlohmann::json& params) {
  Errors errors;
  Params p(params, &errors, {"field", "target"});
  p.Pointer("field", /*required=*/false);
  p.Pointer("target", /*required=*/true);
  return errors;
}

Result<std::unique_ptr<Processor>> MakeSha256(const nlohmann::json& params) {
  return std::make_unique<Sha256>(
      ParseJsonPointer(params.value("field", std::string())).value(),
      ParseJsonPointer(params.at("target").get<std::string>()).value());
}

}  // namespace sluice::processors::internal
