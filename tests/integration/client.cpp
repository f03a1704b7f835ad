// Implementation of the integration-test clients (see client.hpp).

// GCC's -Wnull-dereference misfires, when optimizing, inside Boost.Asio's
// scheduler and executor comparison: a false positive in Asio's code. Placed
// before every include so that the header code it reports on is covered.
#pragma GCC diagnostic ignored "-Wnull-dereference"

#include "client.hpp"

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>
#include <cctype>
#include <cstring>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "service/config/config.hpp"
#include "service/processors/checks.hpp"

namespace sluice::itest {
namespace {

namespace beast = boost::beast;
namespace bhttp = beast::http;
namespace net = boost::asio;
namespace websocket = beast::websocket;
using tcp = net::ip::tcp;

std::string Lower(std::string s) {
  for (char& c : s)
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

tcp::endpoint Local(std::uint16_t port) {
  return {net::ip::make_address("127.0.0.1"), port};
}

// Runs `ioc` until `done` or `timeout`; on timeout cancels the stream's
// operations and lets them finish. Returns false on timeout.
template <class Stream>
bool RunFor(net::io_context& ioc, Stream& lowest, const bool& done,
            std::chrono::milliseconds timeout) {
  ioc.restart();
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!done && std::chrono::steady_clock::now() < deadline) {
    ioc.run_one_until(deadline);
  }
  if (done) return true;
  lowest.cancel();
  ioc.restart();
  ioc.run();
  return false;
}

}  // namespace

// ---- HTTP ------------------------------------------------------------------

struct HttpClient::Impl {
  explicit Impl(std::uint16_t p) : port(p), stream(ioc) {}

  bool Connect() {
    beast::error_code ec;
    stream.socket().close(ec);
    stream.connect(Local(port), ec);
    connected = !ec;
    return connected;
  }

  std::uint16_t port;
  net::io_context ioc;
  beast::tcp_stream stream;
  beast::flat_buffer buffer;
  bool connected = false;
};

HttpClient::HttpClient(std::uint16_t port)
    : impl_(std::make_unique<Impl>(port)) {}
HttpClient::~HttpClient() {
  beast::error_code ec;
  impl_->stream.socket().shutdown(tcp::socket::shutdown_both, ec);
}

bool HttpClient::open() const { return impl_->connected; }

HttpResponse HttpClient::Request(const std::string& method,
                                 const std::string& target,
                                 const std::string& body,
                                 const Headers& headers,
                                 std::chrono::milliseconds timeout) {
  Impl& s = *impl_;
  for (int attempt = 0; attempt < 2; ++attempt) {
    HttpResponse out;
    if (!s.connected && !s.Connect()) {
      out.error = "connect failed";
      return out;
    }
    bhttp::request<bhttp::string_body> req;
    req.method_string(method);
    req.target(target);
    req.version(11);
    req.set(bhttp::field::host, "127.0.0.1");
    for (const auto& [k, v] : headers) req.set(k, v);
    req.body() = body;
    if (!body.empty() || method == "POST" || method == "PUT")
      req.prepare_payload();
    bool write_done = false;
    beast::error_code write_ec;
    bhttp::async_write(s.stream, req, [&](beast::error_code ec, std::size_t) {
      write_ec = ec;
      write_done = true;
    });
    if (!RunFor(s.ioc, s.stream, write_done, timeout) || write_ec) {
      s.connected = false;
      if (attempt == 0) continue;  // a closed keep-alive connection: retry
      out.error = "write: " + write_ec.message();
      return out;
    }
    bhttp::response_parser<bhttp::string_body> parser;
    parser.body_limit(1ull << 30);
    if (method == "HEAD") parser.skip(true);
    bool read_done = false;
    beast::error_code read_ec;
    bhttp::async_read(s.stream, s.buffer, parser,
                      [&](beast::error_code ec, std::size_t) {
                        read_ec = ec;
                        read_done = true;
                      });
    if (!RunFor(s.ioc, s.stream, read_done, timeout)) {
      s.connected = false;
      out.error = "timeout";
      return out;
    }
    if (read_ec) {
      s.connected = false;
      if (attempt == 0 && (read_ec == bhttp::error::end_of_stream ||
                           read_ec == net::error::connection_reset)) {
        continue;
      }
      out.error = "read: " + read_ec.message();
      return out;
    }
    auto res = parser.release();
    out.status = static_cast<int>(res.result_int());
    for (const auto& field : res) {
      out.headers[Lower(std::string(field.name_string()))] =
          std::string(field.value());
    }
    out.body = std::move(res.body());
    s.connected = res.keep_alive();
    if (!s.connected) {
      beast::error_code ec;
      s.stream.socket().close(ec);
    }
    return out;
  }
  return {};
}

HttpResponse Http(std::uint16_t port, const std::string& method,
                  const std::string& target, const std::string& body,
                  const Headers& headers) {
  HttpClient client(port);
  return client.Request(method, target, body, headers);
}

namespace {

std::string Exchange(std::uint16_t port, const std::string& bytes,
                     std::chrono::milliseconds timeout, bool end_after) {
  net::io_context ioc;
  beast::tcp_stream stream(ioc);
  beast::error_code ec;
  stream.connect(Local(port), ec);
  if (ec) return {};
  bool done = false;
  net::async_write(stream, net::buffer(bytes),
                   [&](beast::error_code, std::size_t) { done = true; });
  if (!RunFor(ioc, stream, done, timeout)) return {};
  if (end_after) stream.socket().shutdown(tcp::socket::shutdown_send, ec);
  std::string received;
  std::array<char, 4096> chunk{};
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    bool read_done = false;
    beast::error_code read_ec;
    std::size_t n = 0;
    stream.async_read_some(net::buffer(chunk),
                           [&](beast::error_code e, std::size_t k) {
                             read_ec = e;
                             n = k;
                             read_done = true;
                           });
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0 || !RunFor(ioc, stream, read_done, left)) break;
    received.append(chunk.data(), n);
    if (read_ec) break;
  }
  return received;
}

}  // namespace

std::string RawExchange(std::uint16_t port, const std::string& bytes,
                        std::chrono::milliseconds timeout) {
  return Exchange(port, bytes, timeout, false);
}

std::string RawExchangeToEnd(std::uint16_t port, const std::string& bytes,
                             std::chrono::milliseconds timeout) {
  return Exchange(port, bytes, timeout, true);
}

std::vector<int> RawStatuses(const std::string& raw) {
  std::vector<int> statuses;
  if (raw.empty()) return statuses;  // memcpy from a null data() is UB
  beast::flat_buffer buffer;
  auto space = buffer.prepare(raw.size());
  std::memcpy(space.data(), raw.data(), raw.size());
  buffer.commit(raw.size());
  while (buffer.size() > 0) {
    bhttp::response_parser<bhttp::string_body> parser;
    parser.body_limit(raw.size());
    beast::error_code ec;
    while (!parser.is_done()) {
      const std::size_t used = parser.put(buffer.data(), ec);
      buffer.consume(used);
      // Everything is in the buffer already: needing more means the end.
      if (ec == bhttp::error::need_more) parser.put_eof(ec);
      if (ec) return statuses;  // a trailing fragment: not a response
    }
    statuses.push_back(parser.get().result_int());
  }
  return statuses;
}

int RawStatus(const std::string& raw) {
  if (raw.size() < 12 || raw.compare(0, 5, "HTTP/") != 0) return 0;
  return std::atoi(raw.c_str() + 9);
}

// ---- WebSocket -------------------------------------------------------------

struct WsClient::Impl {
  Impl() : ws(ioc) {}
  net::io_context ioc;
  websocket::stream<beast::tcp_stream> ws;
  websocket::response_type handshake;
  int status = 0;
  std::string refusal_body;
  int close_code = -1;
  std::string close_reason;
  bool timed_out = false;
  bool open = false;
  std::string read_error;
};

WsClient::WsClient(std::uint16_t port, const std::string& target,
                   const Headers& headers)
    : impl_(std::make_unique<Impl>()) {
  Impl& s = *impl_;
  beast::error_code ec;
  beast::get_lowest_layer(s.ws).connect(Local(port), ec);
  if (ec) return;
  s.ws.set_option(websocket::stream_base::decorator(
      [headers](websocket::request_type& req) {
        for (const auto& [k, v] : headers) req.set(k, v);
      }));
  s.ws.read_message_max(64 << 20);
  s.ws.handshake(s.handshake, "127.0.0.1", target, ec);
  s.status = static_cast<int>(s.handshake.result_int());
  s.refusal_body =
      s.handshake.body().empty() ? std::string() : s.handshake.body();
  if (!ec) {
    s.open = true;
    s.ws.text(true);
  }
}

WsClient::~WsClient() {
  beast::error_code ec;
  beast::get_lowest_layer(impl_->ws).socket().close(ec);
}

int WsClient::handshake_status() const { return impl_->status; }
const std::string& WsClient::refusal_body() const {
  return impl_->refusal_body;
}
std::string WsClient::handshake_header(const std::string& lower_name) const {
  for (const auto& field : impl_->handshake) {
    if (Lower(std::string(field.name_string())) == lower_name) {
      return std::string(field.value());
    }
  }
  return {};
}

std::optional<std::string> WsClient::Read(std::chrono::milliseconds timeout) {
  Impl& s = *impl_;
  if (!s.open) return std::nullopt;
  beast::flat_buffer buffer;
  bool done = false;
  beast::error_code read_ec;
  s.ws.async_read(buffer, [&](beast::error_code ec, std::size_t) {
    read_ec = ec;
    done = true;
  });
  if (!RunFor(s.ioc, beast::get_lowest_layer(s.ws), done, timeout)) {
    s.timed_out = true;
    s.open = false;
    return std::nullopt;
  }
  if (read_ec) {
    s.open = false;
    if (read_ec != websocket::error::closed) s.read_error = read_ec.message();
    if (read_ec == websocket::error::closed) {
      s.close_code = s.ws.reason().code;
      s.close_reason = std::string(s.ws.reason().reason.c_str());
    }
    return std::nullopt;
  }
  return beast::buffers_to_string(buffer.data());
}

std::vector<nlohmann::json> WsClient::ReadAll(
    std::chrono::milliseconds timeout) {
  std::vector<nlohmann::json> frames;
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (auto frame =
             Read(std::chrono::duration_cast<std::chrono::milliseconds>(
                 deadline - std::chrono::steady_clock::now()))) {
    frames.push_back(nlohmann::json::parse(*frame));
  }
  return frames;
}

void WsClient::Send(const std::string& text) {
  beast::error_code ec;
  impl_->ws.text(true);
  impl_->ws.write(net::buffer(text), ec);
}

void WsClient::SendBinary(const std::string& data) {
  beast::error_code ec;
  impl_->ws.binary(true);
  impl_->ws.write(net::buffer(data), ec);
  impl_->ws.text(true);
}

void WsClient::Close() {
  beast::error_code ec;
  impl_->ws.close(websocket::close_code::normal, ec);
  impl_->open = false;
}

int WsClient::close_code() const { return impl_->close_code; }
const std::string& WsClient::close_reason() const {
  return impl_->close_reason;
}
bool WsClient::timed_out() const { return impl_->timed_out; }
const std::string& WsClient::read_error() const { return impl_->read_error; }
int WsClient::received_close_code() const {
  const auto code = impl_->ws.reason().code;
  return code == websocket::close_code::none ? impl_->close_code
                                             : static_cast<int>(code);
}

// ---- server and helpers ----------------------------------------------------

TestServer::TestServer(const std::string& yaml) {
  auto loaded = config::LoadConfigText(yaml, processors::ConfigChecks());
  if (!loaded.ok()) {
    std::string all;
    for (const auto& e : loaded.error()) all += config::ToString(e) + "\n";
    throw std::runtime_error("bad test config:\n" + all);
  }
  app::AppOptions options;
  options.version = "itest";
  options.server.listen = "127.0.0.1:0";
  auto server = app::App::Create(std::move(loaded).value(), options);
  if (!server.ok()) throw std::runtime_error(server.error().message);
  server_ = std::move(server.value());
  server_->Start();
}

TestServer::~TestServer() = default;

nlohmann::json WaitForJob(std::uint16_t port, const std::string& id,
                          std::chrono::milliseconds timeout,
                          const Headers& headers) {
  HttpClient client(port);
  auto deadline = std::chrono::steady_clock::now() + timeout;
  nlohmann::json status;
  while (std::chrono::steady_clock::now() < deadline) {
    HttpResponse r = client.Request("GET", "/v1/jobs/" + id, "", headers);
    if (r.status != 200) return {};
    status = r.json();
    const std::string state = status["state"];
    if (state == "done" || state == "failed" || state == "cancelled")
      return status;
    std::this_thread::sleep_for(10ms);
  }
  return status;
}

double MetricValue(const std::string& text, const std::string& series) {
  std::istringstream lines(text);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.size() > series.size() &&
        line.compare(0, series.size(), series) == 0 &&
        line[series.size()] == ' ') {
      return std::stod(line.substr(series.size() + 1));
    }
  }
  return -1;
}

}  // namespace sluice::itest
