// Implementation of CheckFraming and CheckWebSocketHandshake (framing.hpp).
#include "service/http/framing.hpp"

#include <boost/beast/core/string.hpp>
#include <boost/beast/http/field.hpp>
#include <string>
#include <string_view>

#include "service/util/text.hpp"

namespace sluice::http {
namespace {

// Quoted names are cut here, so a hostile header cannot make the answer big.
constexpr std::size_t kMaxQuoted = 64;

// A refusal after which nothing more is read from the connection.
Response Refuse(const RequestHeader& header, bhttp::status status,
                std::string_view code, std::string_view message) {
  Response res = MakeError(status, code, message, header.version(), false);
  if (header.method() == bhttp::verb::head) {
    // A HEAD answer has the GET's Content-Length and no body.
    const auto length = res.body().size();
    res.body().clear();
    res.content_length(length);
  }
  return res;
}

std::string Quote(std::string_view s) {
  std::string out = "\"";
  out += s.substr(0, kMaxQuoted);
  if (s.size() > kMaxQuoted) out += "...";
  out += '"';
  return out;
}

// The Transfer-Encoding codings of every field, in order, as one list (RFC
// 9110 §5.3: several fields are one comma-separated list). Empty list
// elements are skipped, as RFC 9110 §5.6.1 asks of recipients.
std::vector<std::string_view> TransferCodings(const RequestHeader& header) {
  std::vector<std::string_view> codings;
  auto [first, last] = header.equal_range(bhttp::field::transfer_encoding);
  for (auto it = first; it != last; ++it) {
    std::string_view list = it->value();
    std::size_t start = 0;
    while (start <= list.size()) {
      std::size_t comma = list.find(',', start);
      if (comma == std::string_view::npos) comma = list.size();
      std::string_view coding = TrimOws(list.substr(start, comma - start));
      if (!coding.empty()) codings.push_back(coding);
      start = comma + 1;
    }
  }
  return codings;
}

std::optional<Response> CheckTransferEncoding(const RequestHeader& header) {
  if (header.count(bhttp::field::transfer_encoding) == 0) return std::nullopt;
  auto bad = [&](std::string_view message) {
    return Refuse(header, bhttp::status::bad_request, "bad_request", message);
  };
  if (header.version() < 11) {
    return bad("Transfer-Encoding in an HTTP/1.0 request (RFC 9112 §6.1)");
  }
  if (header.count(bhttp::field::content_length) != 0) {
    return bad(
        "Transfer-Encoding and Content-Length together (RFC 9112 §6.1): "
        "the body's length is ambiguous");
  }
  std::vector<std::string_view> codings = TransferCodings(header);
  std::size_t chunked = 0;
  for (std::string_view coding : codings) {
    if (boost::beast::iequals(coding, "chunked")) {
      ++chunked;
      continue;
    }
    return Refuse(header, bhttp::status::not_implemented, "not_implemented",
                  "transfer coding " + Quote(coding) +
                      " is not implemented (only \"chunked\" is)");
  }
  if (chunked != 1) {
    return bad(chunked == 0 ? "empty Transfer-Encoding"
                            : "chunked applied more than once");
  }
  return std::nullopt;
}

bool IsBase64Char(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
         (c >= '0' && c <= '9') || c == '+' || c == '/';
}

// The base64 of 16 bytes: 22 base64 characters and "==" (RFC 6455 §4.1).
bool IsWebSocketKey(std::string_view key) {
  if (key.size() != 24 || key.substr(22) != "==") return false;
  for (char c : key.substr(0, 22)) {
    if (!IsBase64Char(c)) return false;
  }
  // The last character before the padding carries 2 bits: its low 4 must be
  // zero, i.e. one of A Q g w.
  const char last = key[21];
  return last == 'A' || last == 'Q' || last == 'g' || last == 'w';
}

}  // namespace

std::optional<Response> CheckFraming(const RequestHeader& header) {
  const std::size_t hosts = header.count(bhttp::field::host);
  if (hosts > 1) {
    return Refuse(header, bhttp::status::bad_request, "bad_request",
                  "more than one Host header (RFC 9112 §3.2)");
  }
  if (hosts == 0 && header.version() >= 11) {
    return Refuse(header, bhttp::status::bad_request, "bad_request",
                  "HTTP/1.1 request without a Host header (RFC 9112 §3.2)");
  }
  return CheckTransferEncoding(header);
}

std::optional<Response> CheckWebSocketHandshake(const RequestHeader& header) {
  auto bad = [&](std::string_view message) {
    return Refuse(header, bhttp::status::bad_request, "bad_request", message);
  };
  if (header.version() != 11)
    return bad("a WebSocket upgrade must be HTTP/1.1");
  auto key = header.find(bhttp::field::sec_websocket_key);
  if (key == header.end()) return bad("missing Sec-WebSocket-Key");
  if (!IsWebSocketKey(key->value())) {
    return bad("Sec-WebSocket-Key must be the base64 of 16 bytes");
  }
  auto version = header.find(bhttp::field::sec_websocket_version);
  if (version == header.end()) return bad("missing Sec-WebSocket-Version");
  if (TrimOws(version->value()) != "13") {
    Response res =
        Refuse(header, bhttp::status::upgrade_required, "upgrade_required",
               "unsupported Sec-WebSocket-Version " + Quote(version->value()) +
                   " (this server speaks 13)");
    res.set(bhttp::field::sec_websocket_version, "13");
    return res;
  }
  return std::nullopt;
}

}  // namespace sluice::http
