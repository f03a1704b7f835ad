// sluice::ws::StartWebSocketSession: the WebSocket endpoints of contract §C3
// on the HTTP port — the job stream (GET /v1/jobs/{id}/stream) and the
// ingestion stream (GET /v1/stream?pipeline=NAME).
//
// Both are cursors over the job's result log (jobs::Job::ReadFrom): a
// session copies only as many records as its bounded outbound queue has
// room for and writes one frame at a time, so a slow reader slows only its
// own cursor and never makes the server buffer without bound. Pipeline
// output reaches a session through a wake callback that posts onto the
// session's strand. Frames (JSON text):
//   {"type":"result","seq":N,"value":...}
//   {"type":"error","seq":N,"error":"...","stage":"..."}    (an item's error)
//   {"type":"error","code":"...","message":"..."}          (a bad input frame)
//   {"type":"done","job":<status object>}                   then close
// Close codes: 1000 after done; 1001 when the job was cancelled by a drain
// that ran out of grace, or the server stops; 1003 for a binary frame on the
// ingestion stream; 1007 (by Beast) for invalid UTF-8; 1009 (by Beast) for a
// frame over the size limit.
//
// The sessions are templates over the connection's stream, so the same code
// serves WS (http::PlainStream) and WSS (http::TlsStream, whose TLS
// handshake the HTTP session already did); closing over TLS also exchanges
// close_notify, bounded by the WebSocket close timeout.
#ifndef SLUICE_SERVICE_WS_SESSION_HPP_
#define SLUICE_SERVICE_WS_SESSION_HPP_

#include <chrono>

#include "service/http/connections.hpp"
#include "service/http/router.hpp"
#include "service/http/session.hpp"

namespace sluice::ws {

// Performs the WebSocket handshake for `request` (an upgrade the router
// accepted as `upgrade`) on `stream` (an open connection, with no timer
// running, whose executor is a strand of the server's io_context) and runs
// the session until it closes. `slot` keeps the connection's place in
// ctx.connections. `received` is when the upgrade request was read (for the
// request-duration metric, recorded with code 101 once the handshake
// succeeds). Returns at once; failures end the session (logged by
// http::fail), never the caller.
void StartWebSocketSession(http::PlainStream stream, http::Request request,
                           http::Upgrade upgrade, http::SessionContext& ctx,
                           http::ConnectionSlot slot,
                           std::chrono::steady_clock::time_point received);
// The same over TLS (WSS): `stream` has completed its TLS handshake.
void StartWebSocketSession(http::TlsStream stream, http::Request request,
                           http::Upgrade upgrade, http::SessionContext& ctx,
                           http::ConnectionSlot slot,
                           std::chrono::steady_clock::time_point received);

}  // namespace sluice::ws

#endif  // SLUICE_SERVICE_WS_SESSION_HPP_
