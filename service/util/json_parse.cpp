#include "service/util/json_parse.hpp"

#include <exception>
#include <optional>

namespace sluice {
namespace {

// The offset of the first '[' or '{' (outside strings) that opens a level
// deeper than `max_depth`, or nullopt. Syntax is the parser's business: this
// only counts brackets, so malformed text passes through to get its own
// error.
std::optional<std::size_t> TooDeepAt(std::string_view text,
                                     std::size_t max_depth) {
  std::size_t depth = 0;
  bool in_string = false;
  bool escaped = false;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (escaped) {
        escaped = false;
      } else if (c == '\\') {
        escaped = true;
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    switch (c) {
      case '"':
        in_string = true;
        break;
      case '[':
      case '{':
        if (++depth > max_depth) return i;
        break;
      case ']':
      case '}':
        if (depth > 0) --depth;
        break;
      default:
        break;
    }
  }
  return std::nullopt;
}

}  // namespace

Result<nlohmann::json, JsonParseError> ParseJsonText(std::string_view text,
                                                     std::size_t max_depth) {
  if (std::optional<std::size_t> at = TooDeepAt(text, max_depth)) {
    return JsonParseError{
        *at, "nesting deeper than " + std::to_string(max_depth) + " levels"};
  }
  try {
    return nlohmann::json::parse(text.begin(), text.end());
  } catch (const nlohmann::json::parse_error& e) {
    std::string reason = e.what();
    // Drop the "[json.exception.parse_error.101] parse error at line 1,
    // column 5: " prefix: the offset says where.
    if (auto pos = reason.find(": "); pos != std::string::npos) {
      reason.erase(0, pos + 2);
    }
    // nlohmann's byte is 1-based (it counts the bad character too).
    return JsonParseError{e.byte == 0 ? 0 : e.byte - 1, std::move(reason)};
  } catch (const std::exception& e) {
    return JsonParseError{0, e.what()};
  }
}

}  // namespace sluice
