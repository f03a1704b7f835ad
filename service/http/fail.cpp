// Implementation of sluice::http::fail and Log (see fail.hpp).
#include "service/http/fail.hpp"

#include <boost/asio/error.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/websocket/error.hpp>
#include <cstdio>
#include <string>

namespace sluice::http {

void Log(std::string_view message) {
  std::string line = "sluice: ";
  line.append(message);
  line.push_back('\n');
  // One fwrite per line: stdio locks the stream, so lines never interleave.
  std::fwrite(line.data(), 1, line.size(), stderr);
}

void fail(boost::system::error_code ec, std::string_view what) {
  namespace net = boost::asio;
  namespace beast = boost::beast;
  if (ec == net::error::operation_aborted || ec == net::error::eof ||
      ec == net::error::connection_reset || ec == net::error::broken_pipe ||
      ec == net::error::not_connected || ec == net::error::bad_descriptor ||
      ec == beast::error::timeout || ec == beast::http::error::end_of_stream ||
      ec == beast::websocket::error::closed ||
      // A client's frame over the size limit: the client is told (close
      // 1009); a line per hostile client would flood the log.
      ec == beast::websocket::error::message_too_big ||
      // A TLS peer that closed the TCP connection without a close_notify:
      // harmless, since HTTP and WebSocket messages delimit themselves (a
      // message cut short is still reported, as a parse error).
      ec == net::ssl::error::stream_truncated) {
    return;
  }
  std::string message(what);
  message += ": ";
  message += ec.message();
  Log(message);
}

}  // namespace sluice::http
