// sluice::http::fail and Log: the one place network errors are reported.
#ifndef SLUICE_SERVICE_HTTP_FAIL_HPP_
#define SLUICE_SERVICE_HTTP_FAIL_HPP_

#include <boost/system/error_code.hpp>
#include <string_view>

namespace sluice::http {

// Reports a failed network operation `what` ("read", "accept", ...) on
// stderr, unless the error is part of a normal end of a connection
// (operation_aborted after a close, end of stream, a peer reset, a timeout,
// a WebSocket close, a TLS peer closing without close_notify), which would
// only be noise. The line holds `what` and the error's text only: never
// request data. Thread-safe (one write per
// line). Never throws.
void fail(boost::system::error_code ec, std::string_view what);

// Writes one line "sluice: <message>" to stderr. Thread-safe. Never throws.
void Log(std::string_view message);

}  // namespace sluice::http

#endif  // SLUICE_SERVICE_HTTP_FAIL_HPP_
