// sluice::http::CheckFraming: the message-framing rules of RFC 9112 §6.1 and
// §6.3 that Beast's parser leaves to the server, and
// CheckWebSocketHandshake: the RFC 6455 §4.2.1 opening-handshake rules that
// Beast's accept would otherwise refuse in plain text after the router had
// already acted on the request.
//
// Why the framing check exists: Beast frames a request whose
// Transfer-Encoding does not end in "chunked" (gzip, "chunked, identity")
// as having no body, and accepts a Transfer-Encoding followed by a
// Content-Length. The body of such a request would then be read as the next
// request on the connection (request smuggling). Every request header goes
// through CheckFraming before anything else looks at it; a request it
// refuses is answered and the connection closes, with nothing more read
// from it as a request.
#ifndef SLUICE_SERVICE_HTTP_FRAMING_HPP_
#define SLUICE_SERVICE_HTTP_FRAMING_HPP_

#include <optional>

#include "service/http/router.hpp"

namespace sluice::http {

// Checks how a request header frames its body. Returns nullopt when the
// request may be read and handled; otherwise the response to send, whose
// keep-alive is off, after which the session must close the connection:
//  - HTTP/1.1 without exactly one Host header: 400 bad_request;
//  - Transfer-Encoding in an HTTP/1.0 request: 400 bad_request;
//  - Transfer-Encoding together with Content-Length: 400 bad_request;
//  - a Transfer-Encoding other than exactly "chunked" (an empty list,
//    "chunked" twice): 400 bad_request, unless it names a coding sluice does
//    not implement (gzip, identity, ...): 501 not_implemented.
// The body is bodiless for HEAD. Thread-safe (a pure function). Never
// throws.
[[nodiscard]] std::optional<Response> CheckFraming(const RequestHeader& header);

// Checks a WebSocket upgrade request (websocket::is_upgrade(request) is
// true) the way Beast's accept does, so that a handshake that would fail
// is refused before the router opens a stream or finds a job. Returns
// nullopt when the handshake can succeed; otherwise the JSON error to send
// (keep-alive off):
//  - not HTTP/1.1: 400 bad_request;
//  - Sec-WebSocket-Key missing or not the base64 of 16 bytes: 400
//    bad_request;
//  - Sec-WebSocket-Version missing: 400 bad_request; not 13: 426
//    upgrade_required with "Sec-WebSocket-Version: 13".
// Thread-safe (a pure function). Never throws.
[[nodiscard]] std::optional<Response> CheckWebSocketHandshake(
    const RequestHeader& header);

}  // namespace sluice::http

#endif  // SLUICE_SERVICE_HTTP_FRAMING_HPP_
