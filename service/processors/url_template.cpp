// Implementation of UrlTemplate (see url_template.hpp).
#include "service/processors/url_template.hpp"

#include <algorithm>
#include <boost/url/encode.hpp>
#include <boost/url/parse.hpp>
#include <boost/url/rfc/pchars.hpp>
#include <boost/url/scheme.hpp>
#include <boost/url/url_view.hpp>
#include <exception>
#include <optional>
#include <utility>

#include "service/processors/internal.hpp"

namespace sluice::processors::internal {

namespace {

namespace urls = boost::urls;

// A path segment keeps RFC 3986 pchar (unreserved, sub-delims, ':', '@');
// '/', '?', '#', '%' and everything else are percent-encoded.
constexpr auto kPathValueChars = urls::pchars;
// A query value may also hold '/' and '?' (RFC 3986 §3.4), but not the
// separators of key=value&... pairs, nor '+', which form decoders read as
// a space.
constexpr auto kQueryValueChars = urls::pchars + '/' + '?' - '&' - '=' - '+';

Error Invalid(std::string message) {
  return Error{"invalid_url", std::move(message)};
}

// One token of the template text.
struct Token {
  bool placeholder = false;
  std::string text;         // literal text, or the pointer text
  std::size_t at = 0;       // offset in the template (for messages)
  std::size_t skel_at = 0;  // offset in the skeleton (placeholders only)
};

// Splits `text` into literals and {placeholders}.
Result<std::vector<Token>> Tokenize(std::string_view text) {
  std::vector<Token> tokens;
  std::optional<std::size_t> open;  // offset of the '{' being read
  std::string current;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (c == '{') {
      if (open) {
        return Invalid("'{' at offset " + std::to_string(i) +
                       " inside the placeholder opened at offset " +
                       std::to_string(*open) + " (placeholders do not nest)");
      }
      if (!current.empty()) {
        const std::size_t at = i - current.size();
        tokens.push_back({false, std::move(current), at});
        current.clear();
      }
      open = i;
    } else if (c == '}') {
      if (!open) {
        return Invalid("'}' at offset " + std::to_string(i) +
                       " has no matching '{'");
      }
      tokens.push_back({true, std::move(current), *open});
      current.clear();
      open.reset();
    } else {
      current += c;
    }
  }
  if (open) {
    return Invalid("'{' at offset " + std::to_string(*open) +
                   " is never closed with '}'");
  }
  if (!current.empty()) {
    const std::size_t at = text.size() - current.size();
    tokens.push_back({false, std::move(current), at});
  }
  return tokens;
}

// The template with each placeholder replaced by "x", a character valid
// anywhere, so Boost.URL can check the rest. Records each placeholder's
// offset in it (Token::skel_at).
Result<std::string> Skeleton(std::vector<Token>& tokens) {
  std::string skeleton;
  for (Token& t : tokens) {
    if (!t.placeholder) {
      skeleton += t.text;
      continue;
    }
    auto ptr = ParseJsonPointer(t.text);
    if (!ptr.ok()) {
      return Invalid("placeholder {" + t.text + "} at offset " +
                     std::to_string(t.at) + ": " + ptr.error().message);
    }
    t.skel_at = skeleton.size();
    skeleton += 'x';
  }
  return skeleton;
}

// Placeholders in the scheme or authority would let an item choose where
// requests go, and would break the one keep-alive connection per worker:
// refuse them before Boost.URL reports a vaguer error.
Result<void> CheckAuthorityIsFixed(const std::string& skeleton,
                                   const std::vector<Token>& tokens) {
  std::size_t authority_end = 0;
  if (const std::size_t p = skeleton.find("://"); p != std::string::npos) {
    authority_end = skeleton.find_first_of("/?#", p + 3);
    if (authority_end == std::string::npos) authority_end = skeleton.size();
  }
  for (const Token& t : tokens) {
    if (t.placeholder && t.skel_at < authority_end) {
      return Invalid("placeholder {" + t.text + "} at offset " +
                     std::to_string(t.at) +
                     " is in the scheme, host or port; placeholders may "
                     "only stand in the path or the query");
    }
  }
  return {};
}

// What the http processor's client cannot or should not send to.
Result<void> CheckSupported(const urls::url_view& u) {
  if (u.scheme_id() == urls::scheme::https) {
    return Invalid(
        "https is not supported yet; the http processor speaks plain "
        "http only");
  }
  if (u.scheme_id() != urls::scheme::http) {
    return Invalid("scheme must be http, not '" + std::string(u.scheme()) +
                   "'");
  }
  if (!u.has_authority() || u.encoded_host().empty()) {
    return Invalid("a host is required (http://host/...)");
  }
  if (u.host_type() == urls::host_type::ipvfuture) {
    return Invalid("IPvFuture hosts are not supported");
  }
  if (u.has_userinfo()) {
    return Invalid(
        "user info (user:password@) is not supported; send credentials "
        "in headers (e.g. Authorization)");
  }
  if (u.has_fragment()) {
    return Invalid("a fragment (#...) is never sent to the server; remove it");
  }
  return {};
}

// The port to connect to: 80 when the URL gives none.
Result<std::uint16_t> PortOf(const urls::url_view& u) {
  if (!u.has_port() || u.port().empty()) return std::uint16_t{80};
  // port_number() wraps values over 65535, so read the digits here (the
  // grammar guarantees they are digits).
  std::uint32_t port = 0;
  for (char c : u.port()) {
    port = std::min<std::uint32_t>(port * 10 + (c - '0'), 65536);
  }
  if (port == 0 || port > 65535) {
    return Invalid("port must be 1..65535, not " + std::string(u.port()));
  }
  return static_cast<std::uint16_t>(port);
}

}  // namespace

UrlTemplate::Piece UrlTemplate::Literal(std::string text) {
  Piece piece;
  piece.literal = std::move(text);
  return piece;
}

Result<UrlTemplate> UrlTemplate::Parse(std::string_view text) {
  try {
    auto tokens = Tokenize(text);
    if (!tokens.ok()) return std::move(tokens).error();
    auto skeleton = Skeleton(tokens.value());
    if (!skeleton.ok()) return std::move(skeleton).error();
    auto authority = CheckAuthorityIsFixed(skeleton.value(), tokens.value());
    if (!authority.ok()) return std::move(authority).error();

    auto parsed = urls::parse_uri(skeleton.value());
    if (!parsed) {
      // Boost.URL's reasons ("need more", "mismatch") do not help a user;
      // the usual culprits do.
      return Invalid(
          "not a valid absolute URL (spaces and other special characters "
          "must be percent-encoded); expected e.g. "
          "http://host:8080/users/{/id}");
    }
    const urls::url_view u = *parsed;
    auto supported = CheckSupported(u);
    if (!supported.ok()) return std::move(supported).error();
    auto port = PortOf(u);
    if (!port.ok()) return std::move(port).error();

    UrlTemplate tmpl;
    tmpl.text_ = std::string(text);
    tmpl.host_ = u.host_address();
    tmpl.host_header_ = std::string(u.encoded_host());
    tmpl.port_ = port.value();
    if (u.has_port() && !u.port().empty() && tmpl.port_ != 80) {
      tmpl.host_header_ += ":" + std::to_string(tmpl.port_);
    }

    // The target pieces: everything from the path on (no fragment, so the
    // resource is path and query).
    const std::string& skel_text = skeleton.value();
    const std::size_t target_at =
        skel_text.size() - u.encoded_resource().size();
    const std::size_t query_at =
        u.has_query() ? target_at + u.encoded_path().size() : std::string::npos;
    if (u.encoded_path().empty()) tmpl.pieces_.push_back(Literal("/"));
    std::size_t skel = 0;  // skeleton offset of the current token
    for (const Token& t : tokens.value()) {
      if (!t.placeholder) {
        if (skel + t.text.size() > target_at) {
          const std::size_t from = target_at > skel ? target_at - skel : 0;
          tmpl.pieces_.push_back(Literal(t.text.substr(from)));
        }
        skel += t.text.size();
        continue;
      }
      Piece piece;
      piece.placeholder = true;
      piece.in_query = t.skel_at >= query_at;
      piece.pointer = ParseJsonPointer(t.text).value();
      const char before = t.skel_at > 0 ? skel_text[t.skel_at - 1] : '\0';
      const char after =
          t.skel_at + 1 < skel_text.size() ? skel_text[t.skel_at + 1] : '\0';
      piece.whole_segment = !piece.in_query && before == '/' &&
                            (after == '/' || after == '?' || after == '\0');
      tmpl.pieces_.push_back(std::move(piece));
      skel += 1;
    }
    return tmpl;
  } catch (const std::exception& e) {
    return Invalid(std::string("cannot parse: ") + e.what());
  }
}

Result<std::string> UrlTemplate::Expand(const nlohmann::json& item) const {
  try {
    std::string target;
    for (const Piece& piece : pieces_) {
      if (!piece.placeholder) {
        target += piece.literal;
        continue;
      }
      const nlohmann::json* v = FindPointer(item, piece.pointer);
      const std::string where = "url: " + DescribeField(piece.pointer);
      if (v == nullptr) {
        return Error{"invalid_item", where + " not found"};
      }
      if (!v->is_string() && !v->is_number() && !v->is_boolean()) {
        return Error{"invalid_item",
                     where + " is " + DescribeJsonType(*v) +
                         "; a URL value must be a string, a number or a "
                         "boolean"};
      }
      const std::string text = JsonText(*v);
      if (piece.whole_segment &&
          (text.empty() || text == "." || text == "..")) {
        return Error{"invalid_item",
                     where + " is " +
                         (text.empty() ? "empty" : "\"" + text + "\"") +
                         ", which would change the URL's path"};
      }
      target += piece.in_query ? urls::encode(text, kQueryValueChars)
                               : urls::encode(text, kPathValueChars);
    }
    return target;
  } catch (const std::exception& e) {
    return Error{"invalid_item", std::string("url: ") + e.what()};
  }
}

}  // namespace sluice::processors::internal
