// ParseServer (Boost.URL), Request (one synchronous Beast exchange) and
// ErrorMessage; see client.hpp.
#include <algorithm>
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>
#include <boost/url/parse.hpp>
#include <cctype>
#include <chrono>
#include <cstdint>
#include <limits>
#include <string>

#include "service/client/client.hpp"
#include "service/client/client_detail.hpp"

namespace sluice::client {
namespace {

namespace beast = boost::beast;
namespace http = boost::beast::http;
using tcp = boost::asio::ip::tcp;

Error UsageError(std::string message) {
  return Error{"usage", "--server: " + std::move(message)};
}

std::string Lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(),
                 [](unsigned char c) { return std::tolower(c); });
  return s;
}

}  // namespace

std::string Server::Where() const {
  if (host.find(':') != std::string::npos) return "[" + host + "]:" + port;
  return host + ":" + port;
}

Result<Server> ParseServer(std::string_view url, std::string token) {
  std::string text(url);
  // "host:port" alone is taken as http://host:port.
  if (text.find("://") == std::string::npos) text = "http://" + text;
  auto parsed = boost::urls::parse_uri(text);
  if (!parsed) {
    return UsageError("not a URL: " + std::string(url) + " (" +
                      parsed.error().message() + ")");
  }
  std::string scheme = Lower(std::string(parsed->scheme()));
  if (scheme == "https" || scheme == "wss") {
    return UsageError(scheme +
                      " is not supported by the CLI yet: use http:// (TLS "
                      "clients: curl, or a WebSocket client for wss)");
  }
  if (scheme != "http" && scheme != "ws") {
    return UsageError("unknown scheme " + scheme + " (expected http)");
  }
  Server server;
  server.host = std::string(parsed->encoded_host_address());
  if (server.host.size() > 2 && server.host.front() == '[') {
    server.host = server.host.substr(1, server.host.size() - 2);
  }
  if (server.host.empty()) return UsageError("no host in " + std::string(url));
  server.port = parsed->has_port() ? std::string(parsed->port()) : "80";
  server.base_path = std::string(parsed->encoded_path());
  while (!server.base_path.empty() && server.base_path.back() == '/') {
    server.base_path.pop_back();
  }
  server.token = std::move(token);
  return server;
}

std::string PercentEncode(std::string_view text) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : text) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

namespace detail {

std::string FormatTimeout(std::chrono::milliseconds timeout) {
  auto ms = timeout.count();
  return ms % 1000 == 0 ? std::to_string(ms / 1000) + "s"
                        : std::to_string(ms) + "ms";
}

std::string Failure(const Server& server, std::string_view what,
                    const boost::system::error_code& ec) {
  std::string why = ec == beast::error::timeout
                        ? "timed out after " + FormatTimeout(server.timeout)
                        : ec.message();
  return std::string(what) + " " + server.Where() + ": " + why;
}

}  // namespace detail

namespace {

// Runs the one asynchronous operation `start` begins (given its completion
// handler) to its end, and returns its error. Beast's stream timeouts
// (expires_after) apply only to asynchronous operations, hence these
// rather than the blocking calls.
template <class Start>
boost::system::error_code Await(boost::asio::io_context& io, Start start) {
  boost::system::error_code result;
  start([&result](boost::system::error_code ec, auto&&...) { result = ec; });
  io.restart();
  io.run();
  return result;
}

http::request<http::string_body> MakeRequest(const Server& server,
                                             std::string_view method,
                                             std::string_view target,
                                             std::string_view accept) {
  http::request<http::string_body> req(
      http::string_to_verb(method), server.base_path + std::string(target), 11);
  req.set(http::field::host, server.Where());
  req.set(http::field::user_agent, "sluice/" SLUICE_VERSION);
  req.set(http::field::accept, accept);
  if (!server.token.empty()) {
    req.set(http::field::authorization, "Bearer " + server.token);
  }
  req.prepare_payload();
  return req;
}

Response ResponseOf(http::response_parser<http::string_body>& parser) {
  Response response;
  response.status = parser.get().result_int();
  response.body = std::move(parser.get().body());
  for (const auto& field : parser.get()) {
    response.headers[Lower(std::string(field.name_string()))] =
        std::string(field.value());
  }
  return response;
}

}  // namespace

Result<Response> Request(const Server& server, std::string_view method,
                         std::string_view target, std::string_view accept) {
  boost::asio::io_context io;
  tcp::resolver resolver(io);
  beast::tcp_stream stream(io);
  boost::system::error_code ec;
  auto endpoints = resolver.resolve(server.host, server.port, ec);
  if (ec)
    return Error{"connection", detail::Failure(server, "cannot resolve", ec)};
  stream.expires_after(server.timeout);
  ec = Await(io, [&](auto done) { stream.async_connect(endpoints, done); });
  if (ec)
    return Error{"connection",
                 detail::Failure(server, "cannot connect to", ec)};
  auto req = MakeRequest(server, method, target, accept);
  stream.expires_after(server.timeout);
  ec = Await(io, [&](auto done) { http::async_write(stream, req, done); });
  if (ec)
    return Error{"connection", detail::Failure(server, "cannot send to", ec)};
  beast::flat_buffer buffer;
  http::response_parser<http::string_body> parser;
  // A results page is about 1 MiB, but always holds its first record
  // however large: no client-side cap.
  parser.body_limit(std::numeric_limits<std::uint64_t>::max());
  stream.expires_after(server.timeout);
  ec = Await(
      io, [&](auto done) { http::async_read(stream, buffer, parser, done); });
  if (ec) {
    return Error{"connection", detail::Failure(server, "no answer from", ec)};
  }
  stream.socket().shutdown(tcp::socket::shutdown_both, ec);
  return ResponseOf(parser);
}

std::string ErrorMessage(const Response& response) {
  auto body = nlohmann::json::parse(response.body, nullptr, false);
  if (body.is_object() && body.contains("error") && body["error"].is_object()) {
    const auto& error = body["error"];
    std::string code = error.value("code", "");
    std::string message = error.value("message", "");
    return code.empty() ? message : code + ": " + message;
  }
  std::string text = response.body.substr(0, 200);
  while (!text.empty() &&
         std::isspace(static_cast<unsigned char>(text.back()))) {
    text.pop_back();
  }
  return "HTTP " + std::to_string(response.status) +
         (text.empty() ? "" : ": " + text);
}

}  // namespace sluice::client
