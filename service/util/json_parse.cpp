#include "service/util/json_parse.hpp"

#include <cmath>
#include <cstdlib>
#include <exception>
#include <optional>
#include <string>

namespace sluice {
namespace {

// Calls visit(i) for each byte text[i] outside JSON strings (quotes are
// skipped with the strings they delimit) and returns the first i for which
// it returns true, or nullopt. `visit` may advance i past a token it read.
// Syntax is the parser's business: malformed text just gets scanned.
template <class Visit>
std::optional<std::size_t> FindOutsideStrings(std::string_view text,
                                              Visit&& visit) {
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
    } else if (c == '"') {
      in_string = true;
    } else if (visit(i)) {
      return i;
    }
  }
  return std::nullopt;
}

// The offset of the first '[' or '{' that opens a level deeper than
// `max_depth`, or nullopt.
std::optional<std::size_t> TooDeepAt(std::string_view text,
                                     std::size_t max_depth) {
  std::size_t depth = 0;
  return FindOutsideStrings(text, [&](std::size_t& i) {
    switch (text[i]) {
      case '[':
      case '{':
        return ++depth > max_depth;
      case ']':
      case '}':
        if (depth > 0) --depth;
        return false;
      default:
        return false;
    }
  });
}

// The offset of the first number too large for a double, or 0. nlohmann
// reports such a number (out_of_range.406) without its position, and the
// API promises the offset of the failure.
std::size_t OverflowAt(std::string_view text) {
  return FindOutsideStrings(
             text,
             [&](std::size_t& i) {
               const char c = text[i];
               if (c != '-' && (c < '0' || c > '9')) return false;
               std::size_t end = i;
               while (end < text.size() &&
                      std::string_view("0123456789+-.eE").find(text[end]) !=
                          std::string_view::npos) {
                 ++end;
               }
               const std::string number(text.substr(i, end - i));
               if (std::isinf(std::strtod(number.c_str(), nullptr)))
                 return true;
               i = end - 1;
               return false;
             })
      .value_or(0);
}

}  // namespace

Result<nlohmann::json, JsonParseError> ParseJsonText(std::string_view text,
                                                     std::size_t max_depth) {
  if (std::optional<std::size_t> at = TooDeepAt(text, max_depth)) {
    return JsonParseError{
        *at, "nesting deeper than " + std::to_string(max_depth) + " levels"};
  }
  // nlohmann's lexer takes a NUL byte for the end of the input (as for a C
  // string), so "[1]\0anything" would parse as [1] with the rest ignored
  // (found by tests/fuzz/ws_frame_fuzz). A raw NUL is never valid JSON, not
  // even inside a string: the text is parsed up to the first one, which is
  // the error unless the parser finds an earlier one.
  const std::size_t nul = text.find('\0');
  const std::string_view head = text.substr(0, nul);
  const JsonParseError nul_error{
      nul, "syntax error - a NUL byte (U+0000), which JSON does not allow"};
  try {
    nlohmann::json value = nlohmann::json::parse(head.begin(), head.end());
    if (nul != std::string_view::npos) return nul_error;
    return value;
  } catch (const nlohmann::json::parse_error& e) {
    // nlohmann's byte is 1-based (it counts the bad character too).
    const std::size_t offset = e.byte == 0 ? 0 : e.byte - 1;
    // Reaching the end of `head` means reaching the NUL.
    if (nul != std::string_view::npos && offset >= nul) return nul_error;
    std::string reason = e.what();
    // Drop the "[json.exception.parse_error.101] parse error at line 1,
    // column 5: " prefix: the offset says where.
    if (auto pos = reason.find(": "); pos != std::string::npos) {
      reason.erase(0, pos + 2);
    }
    return JsonParseError{offset, std::move(reason)};
  } catch (const nlohmann::json::out_of_range& e) {
    // The one out_of_range parse() throws: a number beyond a double (406).
    std::string reason = e.what();
    if (auto pos = reason.find("] "); pos != std::string::npos) {
      reason.erase(0, pos + 2);
    }
    return JsonParseError{
        OverflowAt(head),
        std::move(reason) + " (beyond the range of a double)"};
  } catch (const std::exception& e) {
    return JsonParseError{0, e.what()};
  }
}

Result<void, JsonParseError> CheckJsonText(std::string_view text,
                                           std::size_t max_depth) {
  if (!TooDeepAt(text, max_depth) &&
      text.find('\0') == std::string_view::npos &&
      nlohmann::json::accept(text.begin(), text.end())) {
    return {};
  }
  // Rare: the parser says what is wrong, and where.
  auto parsed = ParseJsonText(text, max_depth);
  if (parsed.ok()) return {};  // accept() and parse() never disagree
  return std::move(parsed).error();
}

}  // namespace sluice
