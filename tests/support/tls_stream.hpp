// The TLS stream under the HTTPS and WSS clients of tls_client.hpp, shared by
// their two implementation files (tls_client.cpp, tls_wss_client.cpp)
// and by nothing else: it brings in Beast and Asio's OpenSSL stream, which
// the tests themselves never include.
#ifndef SLUICE_TESTS_SUPPORT_TLS_STREAM_HPP_
#define SLUICE_TESTS_SUPPORT_TLS_STREAM_HPP_

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/ssl.hpp>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

namespace sluice::itest {

namespace beast = boost::beast;
namespace net = boost::asio;
namespace ssl = net::ssl;
using TlsStream = beast::ssl_stream<beast::tcp_stream>;

// Runs what `start` begins on `ioc` to completion, under a deadline on
// `lowest`: an operation still pending when it passes completes with
// beast::error::timeout (the stream closes its socket), so this never hangs.
template <class Start>
void RunBounded(net::io_context& ioc, beast::tcp_stream& lowest,
                std::chrono::milliseconds timeout, Start start) {
  lowest.expires_after(timeout);
  start();
  ioc.restart();
  ioc.run();
  lowest.expires_never();
}

// A client TLS context that trusts exactly `trusted_pem` (one certificate)
// and verifies the peer.
std::unique_ptr<ssl::context> ClientContext(const std::string& trusted_pem);

// Connects to 127.0.0.1:port and performs the TLS client handshake,
// verifying the chain against the context's roots and the certificate's
// name against `host`. Returns the error ("" on success).
std::string ConnectTls(net::io_context& ioc, TlsStream& stream,
                       std::uint16_t port, const std::string& host,
                       std::chrono::milliseconds timeout);

}  // namespace sluice::itest

#endif  // SLUICE_TESTS_SUPPORT_TLS_STREAM_HPP_
