// Shared machinery of the load and fault suite (tests/load/): the real
// `sluice` binary as a child process with its own config and environment,
// measured from outside through /proc/<pid> (VmRSS, VmHWM, Threads, open
// fds) and /metrics; the scale switch (SLUICE_LOAD_SCALE=ci|full); raw
// sockets for requests a well-behaved client never sends; and small
// statistics helpers. Every wait here is bounded by a deadline.
#ifndef SLUICE_TESTS_LOAD_LOAD_UTIL_HPP_
#define SLUICE_TESTS_LOAD_LOAD_UTIL_HPP_

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "client.hpp"

namespace sluice::load {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using itest::Headers;
using itest::HttpClient;
using itest::HttpResponse;
using itest::WsClient;

// ---- scale -----------------------------------------------------------------

// SLUICE_LOAD_SCALE: "ci" (default: each case well under a minute on two
// shared cores) or "full" (the numbers: 60 s overload, 1,000
// slowloris connections, a 30 s stall over 1M results, a 30 min soak).
bool FullScale();
template <class T>
T Scaled(T ci, T full) {
  return FullScale() ? full : ci;
}
const char* ScaleName();

// ---- the server under test -------------------------------------------------

// One sample of /proc/<pid>: sizes in KiB.
struct ProcSample {
  double t = 0;  // seconds since the sampler (or the child) started
  long rss_kb = -1;
  long hwm_kb = -1;  // peak RSS so far (VmHWM)
  long threads = -1;
  long fds = -1;
};

// A `sluice serve --config <tmp>/config.yaml --listen 127.0.0.1:0` child
// process (SLUICE_LOAD_BINARY, else the build's sluice). Reads the bound port
// from its `listening on HOST:PORT` line; its stderr goes to a file, shown by
// log(). The destructor SIGKILLs and reaps a child still running, so a
// failed assertion never leaves a server behind; and the child gets SIGKILL
// if the test process dies without destructors (PR_SET_PDEATHSIG; create
// Children on the main thread, whose exit is what triggers it).
// Thread-compatible, except Sample() and port(), which any thread may call.
class Child {
 public:
  explicit Child(
      const std::string& yaml,
      const std::vector<std::pair<std::string, std::string>>& env = {});
  ~Child();
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;

  // 0 when the child did not report a port within 20 s (see log()).
  std::uint16_t port() const { return port_; }
  pid_t pid() const { return pid_; }
  bool running() const { return pid_ > 0 && !reaped_; }

  ProcSample Sample() const;
  void Signal(int sig) const;
  // The exit code (128 + signal when killed), or -1 when it did not exit
  // within `timeout`.
  int Wait(std::chrono::milliseconds timeout);
  // The child's stderr so far (its log lines).
  std::string log() const;

 private:
  std::uint16_t ReadPort(std::chrono::milliseconds timeout);

  std::string dir_;
  pid_t pid_ = -1;
  int stdout_ = -1;
  std::uint16_t port_ = 0;
  bool reaped_ = false;
  Clock::time_point started_ = Clock::now();
};

// Samples a child every `interval` on a thread of its own until destroyed or
// Stop()ped. Thread-safe.
class Sampler {
 public:
  Sampler(const Child& child, std::chrono::milliseconds interval);
  ~Sampler();
  void Stop();
  std::vector<ProcSample> samples() const;
  long max_rss_kb() const;

 private:
  const Child& child_;
  mutable std::mutex mu_;
  std::vector<ProcSample> samples_;
  std::jthread thread_;
};

// Polls `pred` every 20 ms until it holds or `timeout` passes; returns its
// last value.
bool PollUntil(const std::function<bool()>& pred,
               std::chrono::milliseconds timeout);

// The child's open fd count once it has stopped changing (two equal samples
// 300 ms apart; at most `timeout`): a baseline not caught mid-close.
long SettledFds(const Child& child, std::chrono::milliseconds timeout = 5s);

// GET /metrics (empty on failure) and one series' value (-1 if absent).
std::string Scrape(std::uint16_t port);
double Metric(std::uint16_t port, const std::string& series);

// Items 0..n-1 as a JSON array text.
std::string RangeJson(int n);

// ---- raw sockets -----------------------------------------------------------

// A blocking TCP connection to 127.0.0.1:port with a receive timeout, for
// bytes no well-behaved client sends (half bodies, trickled headers).
// Thread-compatible.
class RawSocket {
 public:
  explicit RawSocket(std::uint16_t port);
  ~RawSocket();
  RawSocket(RawSocket&& other) noexcept;
  RawSocket& operator=(RawSocket&& other) noexcept;
  RawSocket(const RawSocket&) = delete;
  RawSocket& operator=(const RawSocket&) = delete;

  bool ok() const { return fd_ >= 0; }
  int fd() const { return fd_; }
  // Sends all of `bytes` (false on error).
  bool Send(std::string_view bytes);
  // Reads until the peer closes or `timeout` passes.
  std::string ReadAll(std::chrono::milliseconds timeout);
  // Closes with FIN (a polite close).
  void Close();
  // Closes with RST (SO_LINGER 0): a client that vanished.
  void Abort();

 private:
  int fd_ = -1;
};

// WebSocket by hand, for frames a library client will not send: performs
// the upgrade for `target` on `s` (reading exactly the 101's header, nothing
// after it) and returns the status (101) and the response header block.
std::pair<int, std::string> RawWsUpgrade(RawSocket& s,
                                         const std::string& target,
                                         const Headers& headers = {});
// A masked client frame header (FIN, `opcode`) announcing `length` payload
// bytes, with a zero mask key (so payload bytes go as they are).
std::string WsFrameHeader(int opcode, std::uint64_t length);
// Reads server frames until a close frame arrives (returns its code) or the
// connection ends or `timeout` passes (nullopt).
std::optional<int> ReadWsCloseCode(RawSocket& s,
                                   std::chrono::milliseconds timeout);

// ---- statistics ------------------------------------------------------------

// The q-quantile (0..1) of `v` (nearest rank); 0 for an empty vector.
double Quantile(std::vector<double> v, double q);
double Median(std::vector<double> v);

// Least-squares slope of y over x (0 with fewer than two points).
double Slope(const std::vector<double>& x, const std::vector<double>& y);

// Writes a "figure" line to stdout and to the test's XML record, so a run's
// numbers can be copied into docs/reliability.md.
void Figure(const std::string& key, const std::string& value);
void Figure(const std::string& key, double value);

std::string Mib(long kb);  // "12.3 MiB"

}  // namespace sluice::load

#endif  // SLUICE_TESTS_LOAD_LOAD_UTIL_HPP_
