// Defines UrlTemplate, the http processor's URL with placeholders:
// "http://host:port/users/{/user_id}/orders?since={/since}". Each {...} is a
// JSON pointer into the item ({} is the item itself); expanding the
// template for an item substitutes each value, percent-encoded (with
// Boost.URL) as a path segment or a query value according to where the
// placeholder stands. The scheme, host and port are fixed: placeholders may
// only appear in the path and the query.
#ifndef SLUICE_SERVICE_PROCESSORS_URL_TEMPLATE_HPP_
#define SLUICE_SERVICE_PROCESSORS_URL_TEMPLATE_HPP_

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "service/util/json_pointer.hpp"
#include "service/util/result.hpp"

namespace sluice::processors::internal {

// A parsed, validated URL template. Immutable after Parse, so thread-safe
// for concurrent Expand calls.
class UrlTemplate {
 public:
  // Parses and checks `text`: braces balanced and not nested, each
  // placeholder a valid JSON pointer and only in the path or query, the
  // rest a valid absolute URL (RFC 3986, as Boost.URL parses it) with
  // scheme http (https is refused with its own message), a non-empty host,
  // no user-info, no fragment, and a port in 1..65535 if one is given.
  // Fails with code "invalid_url" and a message saying why (without the
  // "url: " prefix). Never throws.
  static Result<UrlTemplate> Parse(std::string_view text);

  // The request target (origin-form: path and query, "/" at least) for
  // `item`. Each placeholder's value must be a string (used as-is), a
  // number or a boolean (its JSON text); it is percent-encoded: in the path
  // everything but RFC 3986 pchar (unreserved, sub-delims, ':' and '@') is
  // encoded, so '/', '?', '#', '%', spaces and non-ASCII (as UTF-8 bytes)
  // are; in the query '&', '=', '+' and '#' are encoded as well, so a value
  // cannot add parameters. Fails (code "invalid_item") when a value is
  // missing, null, an object or an array, or when a path value is empty,
  // "." or ".." (which would change which resource is addressed). The
  // message names the pointer ("url field /id not found"). Never throws.
  Result<std::string> Expand(const nlohmann::json& item) const;

  // The template as configured.
  const std::string& text() const { return text_; }
  // Where to connect: the host as a resolver takes it (an IPv6 literal
  // without brackets) and the port (80 when the URL gives none).
  const std::string& host() const { return host_; }
  std::uint16_t port() const { return port_; }
  // The Host header value: the host as written, plus ":port" when the URL
  // gives a port other than 80.
  const std::string& host_header() const { return host_header_; }

 private:
  // One part of the target: literal text (already valid, copied as-is) or
  // a placeholder.
  struct Piece {
    std::string literal;
    bool placeholder = false;
    bool in_query = false;
    // The placeholder is a whole path segment ("/{/id}/"), so an empty or
    // dot-segment value would change the path's shape.
    bool whole_segment = false;
    JsonPointer pointer;
  };
  static Piece Literal(std::string text);

  std::string text_;
  std::string host_;
  std::uint16_t port_ = 80;
  std::string host_header_;
  std::vector<Piece> pieces_;
};

}  // namespace sluice::processors::internal

#endif  // SLUICE_SERVICE_PROCESSORS_URL_TEMPLATE_HPP_
