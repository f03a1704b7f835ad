// bench_upstream: the slow upstream of `scripts/bench service` (section c,
// the http stage end to end).
//
//   bench_upstream [--host 127.0.0.1] [--port 0] [--delay-ms 10] [--threads 1]
//
// Answers every HTTP/1.1 request after a fixed delay with a small JSON body
// (`{"ok":true,"answer":42}`), over keep-alive connections. One connection
// is a read -> timer -> write loop on an asio::io_context: a waiting request
// costs a timer, never a thread, so thousands of connections wait at once
// on one thread. Requests on one connection are answered one after another
// (as HTTP/1.1 without pipelining: sluice's http processor and wrk both send
// the next request only after the answer).
//
// Prints "listening on HOST:PORT" on stdout once it accepts connections;
// SIGTERM/SIGINT stop it (exit 0).
#include <algorithm>
#include <boost/asio.hpp>
#include <cctype>
#include <charconv>
#include <chrono>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <vector>

namespace {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

constexpr std::string_view kResponse =
    "HTTP/1.1 200 OK\r\n"
    "Content-Type: application/json\r\n"
    "Content-Length: 23\r\n"
    "\r\n"
    R"({"ok":true,"answer":42})";

bool IEquals(std::string_view a, std::string_view b) {
  return a.size() == b.size() &&
         std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) {
    s.remove_prefix(1);
  }
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) {
    s.remove_suffix(1);
  }
  return s;
}

// The length of the first complete request in `buf` (head and body), 0 when
// it is not all there yet, or npos when the head is malformed.
std::size_t RequestLength(std::string_view buf) {
  const std::size_t end = buf.find("\r\n\r\n");
  if (end == std::string_view::npos) {
    return 0;
  }
  std::size_t body = 0;
  std::string_view head = buf.substr(0, end);
  std::size_t pos = head.find("\r\n");
  while (pos != std::string_view::npos) {
    head.remove_prefix(pos + 2);
    pos = head.find("\r\n");
    const std::string_view line = head.substr(0, pos);
    const std::size_t colon = line.find(':');
    if (colon != std::string_view::npos &&
        IEquals(Trim(line.substr(0, colon)), "content-length")) {
      const std::string_view v = Trim(line.substr(colon + 1));
      const auto r = std::from_chars(v.data(), v.data() + v.size(), body);
      if (r.ec != std::errc{}) {
        return std::string_view::npos;
      }
    }
  }
  const std::size_t total = end + 4 + body;
  return buf.size() >= total ? total : 0;
}

class Connection : public std::enable_shared_from_this<Connection> {
 public:
  Connection(tcp::socket socket, std::chrono::milliseconds delay)
      : socket_(std::move(socket)),
        timer_(socket_.get_executor()),
        delay_(delay) {
    boost::system::error_code ignored;
    socket_.set_option(tcp::no_delay(true), ignored);
  }

  void Start() { Next(); }

 private:
  void Next() {
    const std::size_t n = RequestLength(buf_);
    if (n == std::string_view::npos) {
      return;  // malformed: drop the connection
    }
    if (n > 0) {
      buf_.erase(0, n);
      timer_.expires_after(delay_);
      timer_.async_wait(
          [self = shared_from_this()](boost::system::error_code ec) {
            if (!ec) {
              self->Answer();
            }
          });
      return;
    }
    const std::size_t old = buf_.size();
    buf_.resize(old + 4096);
    socket_.async_read_some(asio::buffer(buf_.data() + old, 4096),
                            [self = shared_from_this(), old](
                                boost::system::error_code ec, std::size_t got) {
                              self->buf_.resize(old + (ec ? 0 : got));
                              if (!ec) {
                                self->Next();
                              }
                            });
  }

  void Answer() {
    asio::async_write(socket_, asio::buffer(kResponse),
                      [self = shared_from_this()](boost::system::error_code ec,
                                                  std::size_t /*written*/) {
                        if (!ec) {
                          self->Next();
                        }
                      });
  }

  tcp::socket socket_;
  asio::steady_timer timer_;
  std::chrono::milliseconds delay_;
  std::string buf_;
};

void Accept(tcp::acceptor& acceptor, std::chrono::milliseconds delay) {
  acceptor.async_accept(
      [&acceptor, delay](boost::system::error_code ec, tcp::socket socket) {
        if (!ec) {
          std::make_shared<Connection>(std::move(socket), delay)->Start();
        }
        if (acceptor.is_open()) {
          Accept(acceptor, delay);
        }
      });
}

[[noreturn]] void Usage(const char* why) {
  std::fprintf(stderr,
               "bench_upstream: %s\nusage: bench_upstream [--host ADDR] "
               "[--port N] [--delay-ms N] [--threads N]\n",
               why);
  std::exit(2);
}

int ToInt(const std::string& s, int lo, int hi, const char* what) {
  int v = 0;
  const auto r = std::from_chars(s.data(), s.data() + s.size(), v);
  if (r.ec != std::errc{} || r.ptr != s.data() + s.size() || v < lo || v > hi) {
    Usage(what);
  }
  return v;
}

}  // namespace

int main(int argc, char** argv) {
  std::string host = "127.0.0.1";
  int port = 0;
  int delay_ms = 10;
  int threads = 1;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        Usage("an option needs a value");
      }
      return argv[++i];
    };
    if (arg == "--host") {
      host = value();
    } else if (arg == "--port") {
      port = ToInt(value(), 0, 65535, "--port must be 0..65535");
    } else if (arg == "--delay-ms") {
      delay_ms = ToInt(value(), 0, 60000, "--delay-ms must be 0..60000");
    } else if (arg == "--threads") {
      threads = ToInt(value(), 1, 64, "--threads must be 1..64");
    } else {
      Usage("unknown option");
    }
  }

  asio::io_context io(threads);
  tcp::acceptor acceptor(io);
  try {
    const tcp::endpoint ep(asio::ip::make_address(host),
                           static_cast<unsigned short>(port));
    acceptor.open(ep.protocol());
    acceptor.set_option(tcp::acceptor::reuse_address(true));
    acceptor.bind(ep);
    acceptor.listen(4096);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_upstream: cannot listen on %s:%d: %s\n",
                 host.c_str(), port, e.what());
    return 1;
  }
  Accept(acceptor, std::chrono::milliseconds(delay_ms));

  asio::signal_set signals(io, SIGTERM, SIGINT);
  signals.async_wait([&](boost::system::error_code, int) {
    boost::system::error_code ignored;
    acceptor.close(ignored);
    io.stop();
  });

  const tcp::endpoint bound = acceptor.local_endpoint();
  std::cout << "listening on " << bound.address().to_string() << ':'
            << bound.port() << std::endl;

  std::vector<std::thread> pool;
  for (int i = 1; i < threads; ++i) {
    pool.emplace_back([&io] { io.run(); });
  }
  io.run();
  for (auto& t : pool) {
    t.join();
  }
  return 0;
}
