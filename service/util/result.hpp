// Defines sluice::Error and sluice::Result<T>: the value-or-error type that
// every internal service API returns instead of throwing across a module
// boundary.
#ifndef SLUICE_SERVICE_UTIL_RESULT_HPP_
#define SLUICE_SERVICE_UTIL_RESULT_HPP_

#include <string>
#include <type_traits>
#include <utility>
#include <variant>

namespace sluice {

// A failure: a stable machine-readable `code` (e.g. "invalid_json",
// "not_found", "unknown_pipeline") and a human-readable `message`.
// Thread-compatible (a plain value type).
struct Error {
  std::string code;
  std::string message;
};

// Holds either a T or an E (by default sluice::Error). Construct it from
// either, implicitly, so `return value;` and `return Error{...};` both work.
// Calling value() on an error, or error() on a value, is a programming error
// (std::get throws std::bad_variant_access); test ok() first.
// Thread-compatible (a plain value type).
template <class T, class E = Error>
class [[nodiscard]] Result {
  static_assert(!std::is_same_v<std::remove_cvref_t<T>, E>,
                "Result<T, E> needs distinct T and E");

 public:
  // NOLINTNEXTLINE(google-explicit-constructor): implicit by design.
  Result(T value) : v_(std::in_place_index<0>, std::move(value)) {}
  // NOLINTNEXTLINE(google-explicit-constructor): implicit by design.
  Result(E error) : v_(std::in_place_index<1>, std::move(error)) {}
  // Anything T can be made from (a const char* for Result<std::string>, a
  // shared_ptr<Derived> for Result<shared_ptr<Base>>), implicit when the
  // conversion to T is, as for std::optional.
  template <class U>
  requires(
      std::is_constructible_v<T, U&&> &&
      !std::is_same_v<std::remove_cvref_t<U>, Result> &&
      !std::is_same_v<std::remove_cvref_t<U>, T> &&
      !std::is_same_v<std::remove_cvref_t<U>, E> &&
      !std::is_convertible_v<U&&, E>) explicit(!std::is_convertible_v<U&&, T>)
      Result(U&& value)  // NOLINT
      : v_(std::in_place_index<0>, std::forward<U>(value)) {}

  // True when this holds a value.
  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }

  // Requires ok().
  T& value() & { return std::get<0>(v_); }
  const T& value() const& { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

  // Requires !ok().
  const E& error() const& { return std::get<1>(v_); }
  E&& error() && { return std::get<1>(std::move(v_)); }

 private:
  std::variant<T, E> v_;
};

// Result<void>: success carries nothing. Default-constructed it is ok().
// Thread-compatible (a plain value type).
template <class E>
class [[nodiscard]] Result<void, E> {
 public:
  Result() = default;
  // NOLINTNEXTLINE(google-explicit-constructor): implicit by design.
  Result(E error) : ok_(false), error_(std::move(error)) {}

  bool ok() const { return ok_; }
  explicit operator bool() const { return ok_; }
  // Requires !ok().
  const E& error() const& { return error_; }
  E&& error() && { return std::move(error_); }

 private:
  bool ok_ = true;
  E error_{};
};

}  // namespace sluice

#endif  // SLUICE_SERVICE_UTIL_RESULT_HPP_
