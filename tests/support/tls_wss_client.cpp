// The WSS client of tls_client.hpp: a Beast WebSocket over the TLS stream
// of tls_stream.hpp.

// GCC's -Wnull-dereference misfires, when optimizing, inside Boost.Asio's
// executor code: a false positive in Asio's code. Placed before every
// include so that the header code it reports on is covered.
#pragma GCC diagnostic ignored "-Wnull-dereference"

#include <gtest/gtest.h>

#include <boost/beast/websocket.hpp>
#include <boost/beast/websocket/ssl.hpp>
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "tests/support/tls_client.hpp"
#include "tests/support/tls_stream.hpp"

namespace sluice::itest {
namespace {

namespace websocket = beast::websocket;
using nlohmann::json;
using Clock = std::chrono::steady_clock;

}  // namespace

// ---- WSS -------------------------------------------------------------------

struct WssClient::Impl {
  Impl(std::uint16_t port, const std::string& trusted_pem)
      : ctx(ClientContext(trusted_pem)), ws(ioc, *ctx) {
    error = ConnectTls(ioc, ws.next_layer(), port, "127.0.0.1", 10s);
  }

  beast::tcp_stream& lowest() { return beast::get_lowest_layer(ws); }

  net::io_context ioc;
  std::unique_ptr<ssl::context> ctx;
  websocket::stream<TlsStream> ws;
  websocket::response_type handshake;
  int status = 0;
  std::string error;
  bool open = false;
  int close_code = -1;
  bool timed_out = false;
};

WssClient::WssClient(std::uint16_t port, const std::string& trusted_pem,
                     const std::string& target, const Headers& headers)
    : impl_(std::make_unique<Impl>(port, trusted_pem)) {
  Impl& s = *impl_;
  if (!s.error.empty()) return;
  s.ws.set_option(websocket::stream_base::decorator(
      [headers](websocket::request_type& req) {
        for (const auto& [k, v] : headers) req.set(k, v);
      }));
  s.ws.read_message_max(std::size_t{64} << 20);
  beast::error_code result;
  RunBounded(s.ioc, s.lowest(), 10s, [&] {
    s.ws.async_handshake(s.handshake, "127.0.0.1", target,
                         [&](beast::error_code ec) { result = ec; });
  });
  s.status = static_cast<int>(s.handshake.result_int());
  if (result) {
    s.error = result.message();
  } else {
    s.open = true;
    s.ws.text(true);
  }
}

WssClient::~WssClient() = default;

int WssClient::handshake_status() const { return impl_->status; }
const std::string& WssClient::error() const { return impl_->error; }
int WssClient::close_code() const { return impl_->close_code; }
bool WssClient::timed_out() const { return impl_->timed_out; }

std::optional<std::string> WssClient::Read(std::chrono::milliseconds timeout) {
  Impl& s = *impl_;
  if (!s.open) return std::nullopt;
  beast::flat_buffer buffer;
  beast::error_code result;
  bool done = false;
  RunBounded(s.ioc, s.lowest(), timeout, [&] {
    s.ws.async_read(buffer, [&](beast::error_code ec, std::size_t) {
      result = ec;
      done = true;
    });
  });
  if (!result && done) return beast::buffers_to_string(buffer.data());
  s.open = false;
  if (result == beast::error::timeout) s.timed_out = true;
  if (result == websocket::error::closed) s.close_code = s.ws.reason().code;
  return std::nullopt;
}

std::vector<json> WssClient::ReadAll(std::chrono::milliseconds timeout) {
  std::vector<json> frames;
  const auto deadline = Clock::now() + timeout;
  while (auto frame =
             Read(std::chrono::duration_cast<std::chrono::milliseconds>(
                 deadline - Clock::now()))) {
    frames.push_back(json::parse(*frame));
  }
  return frames;
}

void WssClient::Send(const std::string& text) {
  Impl& s = *impl_;
  if (!s.open) return;
  beast::error_code result;
  RunBounded(s.ioc, s.lowest(), 10s, [&] {
    s.ws.async_write(net::buffer(text),
                     [&](beast::error_code ec, std::size_t) { result = ec; });
  });
  EXPECT_FALSE(result) << result.message();
}

}  // namespace sluice::itest
