#include "service/util/json_pointer.hpp"

#include <charconv>
#include <exception>

#include "service/util/text.hpp"

namespace sluice {

namespace {

using nlohmann::json;

// RFC 6901 array index: "0" or digits without a leading zero.
bool ParseIndex(const std::string& token, std::size_t* out) {
  if (token.empty() || (token.size() > 1 && token[0] == '0')) return false;
  const char* end = token.data() + token.size();
  auto [p, ec] = std::from_chars(token.data(), end, *out);
  return ec == std::errc() && p == end;
}

}  // namespace

Result<JsonPointer> ParseJsonPointer(std::string_view text) {
  if (!text.empty() && text.front() != '/') {
    return Error{"invalid_pointer",
                 "a JSON pointer must be \"\" or start with '/' (got \"" +
                     std::string(text) + "\")"};
  }
  try {
    return JsonPointer(std::string(text));
  } catch (const std::exception&) {
    return Error{"invalid_pointer",
                 "invalid JSON pointer \"" + std::string(text) +
                     "\": '~' must be followed by '0' or '1'"};
  }
}

const json* FindPointer(const json& doc, const JsonPointer& ptr) {
  // Walk by hand: json::contains(ptr) throws on some malformed indices, and
  // at() would throw for every miss, which is the common case here.
  const json* cur = &doc;
  std::vector<std::string> tokens;
  JsonPointer p = ptr;
  while (!p.empty()) {
    tokens.push_back(p.back());
    p.pop_back();
  }
  for (auto it = tokens.rbegin(); it != tokens.rend(); ++it) {
    if (cur->is_object()) {
      auto found = cur->find(*it);
      if (found == cur->end()) return nullptr;
      cur = &*found;
    } else if (cur->is_array()) {
      std::size_t index = 0;
      if (!ParseIndex(*it, &index) || index >= cur->size()) return nullptr;
      cur = &(*cur)[index];
    } else {
      return nullptr;
    }
  }
  return cur;
}

json* FindPointer(json& doc, const JsonPointer& ptr) {
  return const_cast<json*>(FindPointer(std::as_const(doc), ptr));
}

Result<void> SetPointer(json& doc, const JsonPointer& ptr, json value) {
  try {
    doc[ptr] = std::move(value);
    return {};
  } catch (const json::exception& e) {
    std::string why = "cannot set " + ptr.to_string() + ": ";
    // nlohmann's messages name internal ids; say it plainly.
    if (e.id == 305 || e.id == 313 || e.id == 312) {
      why += "the path goes through a value that is not an object or array";
    } else if (e.id == 109 || e.id == 106 || e.id == 110 || e.id == 401) {
      why += "bad array index";
    } else {
      why += e.what();
    }
    return Error{"invalid_path", why};
  } catch (const std::exception& e) {
    return Error{"invalid_path",
                 "cannot set " + ptr.to_string() + ": " + e.what()};
  }
}

bool RemovePointer(json& doc, const JsonPointer& ptr) {
  if (ptr.empty()) return false;
  json* parent = FindPointer(doc, ptr.parent_pointer());
  if (parent == nullptr) return false;
  const std::string& last = ptr.back();
  if (parent->is_object()) return parent->erase(last) > 0;
  if (parent->is_array()) {
    std::size_t index = 0;
    if (!ParseIndex(last, &index) || index >= parent->size()) return false;
    parent->erase(parent->begin() + static_cast<std::ptrdiff_t>(index));
    return true;
  }
  return false;
}

std::string DescribeJsonType(const json& value) {
  switch (value.type()) {
    case json::value_t::null:
      return "null";
    case json::value_t::boolean:
      return "a boolean";
    case json::value_t::string:
      return "a string";
    case json::value_t::number_integer:
    case json::value_t::number_unsigned:
    case json::value_t::number_float:
      return "a number";
    case json::value_t::object:
      return "an object";
    case json::value_t::array:
      return "an array";
    case json::value_t::binary:
      return "binary";
    case json::value_t::discarded:
      return "discarded";
  }
  return "unknown";
}

std::string JsonText(const json& value) {
  if (value.is_string()) return value.get_ref<const std::string&>();
  return DumpLenient(value);
}

}  // namespace sluice
