// Defines Upstream, a scriptable HTTP/1.1 server on 127.0.0.1:<any port>
// for tests of the http processor: a handler chooses each reply (status,
// body, headers, a delay served by an async timer so hundreds of slow
// replies can be pending at once, a hold until the test releases it, or a
// connection reset instead of a reply), and the server counts requests,
// connections and the most requests it held at the same time.
//
// Header-only on purpose: the integration target compiles client.cpp and
// the *_test.cpp files, nothing else, so a helper must come in through a
// header. Include it from one test file only (it is Beast-heavy). GCC's
// -Wnull-dereference misfires inside Asio: that file should disable it
// before its includes, as client.cpp does.
#ifndef SLUICE_TESTS_INTEGRATION_UPSTREAM_HPP_
#define SLUICE_TESTS_INTEGRATION_UPSTREAM_HPP_

#include <algorithm>
#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <cctype>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace sluice::itest {

// One request as the upstream received it. Thread-compatible.
struct UpstreamRequest {
  std::string method;
  std::string target;  // as sent: path and query, still percent-encoded
  std::map<std::string, std::string> headers;  // names lower-cased
  std::string body;
  std::uint64_t connection = 0;  // 1-based id of the connection it came on
  std::chrono::steady_clock::time_point at;  // when it was read
};

// What to do with a request. Thread-compatible.
struct UpstreamReply {
  int status = 200;
  std::string body = "{}";
  std::string content_type = "application/json";
  std::vector<std::pair<std::string, std::string>> headers;
  // Answer after this long (an async timer: it holds no thread).
  std::chrono::milliseconds delay{0};
  // Close the connection instead of answering (after `delay`).
  bool reset = false;
  // Answer with "Connection: close" and close afterwards.
  bool close = false;
  // Answer as if keeping the connection alive, then close it anyway (what
  // a server's idle timeout does between requests).
  bool drop_after = false;
  // Hold the answer (no thread waits) until Upstream::Release(), then wait
  // `delay`: a test can keep every request in flight until it has seen all
  // of them arrive, however slowly they come. Ignored after Release().
  bool hold = false;
};

// Called on a server thread for every request; must be thread-safe and
// quick (use `delay`, never sleep).
using UpstreamHandler = std::function<UpstreamReply(const UpstreamRequest&)>;

// Thread-safe. Listens from construction; stops and joins its threads on
// destruction (pending replies are dropped).
class Upstream {
 public:
  explicit Upstream(UpstreamHandler handler, int threads = 2)
      : impl_(std::make_shared<Impl>(std::move(handler))) {
    impl_->Accept();
    for (int i = 0; i < threads; ++i) {
      impl_->threads.emplace_back([impl = impl_.get()] { impl->ioc.run(); });
    }
  }
  ~Upstream() {
    impl_->ioc.stop();
    for (std::thread& t : impl_->threads) t.join();
  }
  Upstream(const Upstream&) = delete;
  Upstream& operator=(const Upstream&) = delete;

  std::uint16_t port() const { return impl_->acceptor.local_endpoint().port(); }
  // "http://127.0.0.1:<port>"
  std::string base() const {
    return "http://127.0.0.1:" + std::to_string(port());
  }

  // Requests read; connections accepted.
  std::uint64_t requests() const { return impl_->requests.load(); }
  std::uint64_t connections() const { return impl_->connections.load(); }
  // Requests read and not yet answered (or reset); the most at any time.
  int in_flight() const { return impl_->in_flight.load(); }
  int max_in_flight() const { return impl_->max_in_flight.load(); }
  // Every request so far, in the order they were read.
  std::vector<UpstreamRequest> log() const {
    std::lock_guard lock(impl_->mu);
    return impl_->log;
  }
  // Lets every held answer go (each after its delay); replies with `hold`
  // from now on are not held. Idempotent.
  void Release() { impl_->Release(); }

 private:
  struct Impl;
  class Session;

  struct Impl {
    explicit Impl(UpstreamHandler h)
        : handler(std::move(h)),
          acceptor(ioc, {boost::asio::ip::make_address("127.0.0.1"), 0}) {}

    void Accept() {
      acceptor.async_accept(
          boost::asio::make_strand(ioc),
          [this](boost::beast::error_code ec,
                 boost::asio::ip::tcp::socket socket) {
            if (ec) return;  // stopped
            const std::uint64_t id = ++connections;
            std::make_shared<Session>(std::move(socket), this, id)->Read();
            Accept();
          });
    }

    void Enter() {
      const int now = ++in_flight;
      int seen = max_in_flight.load();
      while (now > seen && !max_in_flight.compare_exchange_weak(seen, now)) {
      }
    }

    // Keeps `resume` until Release(); false (keeping nothing) once released.
    bool Hold(std::function<void()> resume) {
      std::lock_guard lock(hold_mu);
      if (released) return false;
      held.push_back(std::move(resume));
      return true;
    }

    void Release() {
      std::vector<std::function<void()>> resume;
      {
        std::lock_guard lock(hold_mu);
        released = true;
        resume.swap(held);
      }
      for (auto& f : resume) f();
    }

    UpstreamHandler handler;
    boost::asio::io_context ioc;
    boost::asio::ip::tcp::acceptor acceptor;
    std::vector<std::thread> threads;
    std::atomic<std::uint64_t> requests{0}, connections{0};
    std::atomic<int> in_flight{0}, max_in_flight{0};
    mutable std::mutex mu;
    std::vector<UpstreamRequest> log;
    // Held answers: each keeps its session (and so a socket of `ioc`)
    // alive, so they are declared after `ioc` and go before it.
    std::mutex hold_mu;
    bool released = false;
    std::vector<std::function<void()>> held;
  };

  // One connection; lives as long as an operation holds it.
  class Session : public std::enable_shared_from_this<Session> {
   public:
    Session(boost::asio::ip::tcp::socket socket, Impl* up, std::uint64_t id)
        : stream_(std::move(socket)),
          timer_(stream_.get_executor()),
          up_(up),
          id_(id) {}

    void Read() {
      req_ = {};
      boost::beast::http::async_read(
          stream_, buffer_, req_,
          [self = shared_from_this()](boost::beast::error_code ec,
                                      std::size_t) { self->OnRead(ec); });
    }

   private:
    void OnRead(boost::beast::error_code ec) {
      if (ec) return Close();
      UpstreamRequest r;
      r.method = std::string(req_.method_string());
      r.target = std::string(req_.target());
      for (const auto& field : req_) {
        std::string name(field.name_string());
        for (char& c : name) {
          c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        }
        r.headers[name] = std::string(field.value());
      }
      r.body = req_.body();
      r.connection = id_;
      r.at = std::chrono::steady_clock::now();
      {
        std::lock_guard lock(up_->mu);
        up_->log.push_back(r);
      }
      ++up_->requests;
      up_->Enter();
      auto reply = std::make_shared<UpstreamReply>(up_->handler(r));
      // Released from the test's thread: back onto this session's strand.
      if (reply->hold && up_->Hold([self = shared_from_this(), reply] {
            boost::asio::post(self->stream_.get_executor(),
                              [self, reply] { self->Delay(reply); });
          })) {
        return;
      }
      Delay(reply);
    }

    void Delay(const std::shared_ptr<UpstreamReply>& reply) {
      if (reply->delay.count() > 0) {
        timer_.expires_after(reply->delay);
        timer_.async_wait(
            [self = shared_from_this(), reply](boost::beast::error_code) {
              self->Answer(*reply);
            });
      } else {
        Answer(*reply);
      }
    }

    void Answer(const UpstreamReply& reply) {
      --up_->in_flight;
      if (reply.reset) return Close();
      namespace bhttp = boost::beast::http;
      res_ = {};
      res_.version(11);
      res_.result(static_cast<unsigned>(reply.status));
      res_.set(bhttp::field::content_type, reply.content_type);
      for (const auto& [name, value] : reply.headers) res_.set(name, value);
      res_.keep_alive(!reply.close && req_.keep_alive());
      res_.body() = reply.body;
      res_.prepare_payload();
      bhttp::async_write(stream_, res_,
                         [self = shared_from_this(), drop = reply.drop_after](
                             boost::beast::error_code ec, std::size_t) {
                           if (ec || drop || !self->res_.keep_alive())
                             return self->Close();
                           self->Read();
                         });
    }

    void Close() {
      boost::beast::error_code ec;
      stream_.socket().shutdown(boost::asio::ip::tcp::socket::shutdown_both,
                                ec);
      stream_.socket().close(ec);
    }

    boost::beast::tcp_stream stream_;
    boost::asio::steady_timer timer_;
    boost::beast::flat_buffer buffer_;
    boost::beast::http::request<boost::beast::http::string_body> req_;
    boost::beast::http::response<boost::beast::http::string_body> res_;
    Impl* up_;
    std::uint64_t id_;
  };

  std::shared_ptr<Impl> impl_;
};

}  // namespace sluice::itest

#endif  // SLUICE_TESTS_INTEGRATION_UPSTREAM_HPP_
