// Implementation of the load suite's shared machinery (see load_util.hpp).
#include "load_util.hpp"

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

extern char** environ;

namespace sluice::load {

// ---- scale -----------------------------------------------------------------

bool FullScale() {
  static const bool full = [] {
    const char* s = std::getenv("SLUICE_LOAD_SCALE");  // NOLINT: read once
    return s != nullptr && std::string(s) == "full";
  }();
  return full;
}

const char* ScaleName() { return FullScale() ? "full" : "ci"; }

// ---- Child -----------------------------------------------------------------

Child::Child(const std::string& yaml,
             const std::vector<std::pair<std::string, std::string>>& env) {
  char tmpl[] = "/tmp/sluice_load_XXXXXX";
  if (::mkdtemp(tmpl) == nullptr) return;
  dir_ = tmpl;
  const std::string config = dir_ + "/config.yaml";
  const std::string errlog = dir_ + "/stderr.log";
  std::ofstream(config) << yaml;

  // The environment: ours, with `env` replacing or adding variables.
  std::vector<std::string> vars;
  for (char** e = environ; *e != nullptr; ++e) {
    std::string var(*e);
    bool replaced = false;
    for (const auto& [k, v] : env) {
      if (var.rfind(k + "=", 0) == 0) replaced = true;
    }
    if (!replaced) vars.push_back(std::move(var));
  }
  for (const auto& [k, v] : env)
    vars.push_back(std::string(k).append("=").append(v));
  std::vector<char*> envp;
  envp.reserve(vars.size() + 1);
  for (auto& v : vars) envp.push_back(v.data());
  envp.push_back(nullptr);

  int out[2];
  if (::pipe2(out, O_CLOEXEC) != 0) return;
  const char* override_binary =
      std::getenv("SLUICE_LOAD_BINARY");  // NOLINT: test setup, one thread
  std::string binary = override_binary != nullptr && *override_binary != '\0'
                           ? override_binary
                           : SLUICE_BINARY;
  std::vector<std::string> args = {binary, "serve",    "--config",
                                   config, "--listen", "127.0.0.1:0"};
  std::vector<char*> argv;
  argv.reserve(args.size() + 1);
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  const pid_t parent = ::getpid();
  started_ = Clock::now();
  // fork + exec rather than posix_spawn, for PR_SET_PDEATHSIG: a test
  // process killed outright (ctest's TIMEOUT) cannot run ~Child, and the
  // server must not outlive it. Between fork and exec only
  // async-signal-safe calls; everything they use was prepared above.
  pid_ = ::fork();
  if (pid_ == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(127);  // the parent is already gone
    ::dup2(out[1], STDOUT_FILENO);
    const int err =
        ::open(errlog.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (err >= 0) ::dup2(err, STDERR_FILENO);
    ::execve(binary.c_str(), argv.data(), envp.data());
    ::_exit(127);
  }
  ::close(out[1]);
  stdout_ = out[0];
  if (pid_ > 0) port_ = ReadPort(20s);
}

Child::~Child() {
  if (pid_ > 0 && !reaped_) {
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
  }
  if (stdout_ >= 0) ::close(stdout_);
  if (!dir_.empty()) {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
}

std::uint16_t Child::ReadPort(std::chrono::milliseconds timeout) {
  std::string line;
  const auto deadline = Clock::now() + timeout;
  while (Clock::now() < deadline) {
    pollfd p{stdout_, POLLIN, 0};
    if (::poll(&p, 1, 100) <= 0) continue;
    char c;
    if (::read(stdout_, &c, 1) != 1) break;
    if (c != '\n') {
      line.push_back(c);
      continue;
    }
    const std::string prefix = "listening on 127.0.0.1:";
    if (line.rfind(prefix, 0) == 0) {
      return static_cast<std::uint16_t>(std::stoi(line.substr(prefix.size())));
    }
    line.clear();
  }
  return 0;
}

ProcSample Child::Sample() const {
  ProcSample s;
  s.t = std::chrono::duration<double>(Clock::now() - started_).count();
  if (!running()) return s;
  const std::string base = "/proc/" + std::to_string(pid_);
  std::ifstream status(base + "/status");
  std::string line;
  auto value = [&](const char* key) -> std::optional<long> {
    if (line.rfind(key, 0) != 0) return std::nullopt;
    return std::strtol(line.c_str() + std::strlen(key), nullptr, 10);
  };
  while (std::getline(status, line)) {
    if (auto v = value("VmRSS:")) s.rss_kb = *v;
    if (auto v = value("VmHWM:")) s.hwm_kb = *v;
    if (auto v = value("Threads:")) s.threads = *v;
  }
  if (DIR* d = ::opendir((base + "/fd").c_str())) {
    long n = 0;
    // readdir is safe here: each Sample() opens its own DIR stream.
    while (dirent* e = ::readdir(d)) {  // NOLINT(concurrency-mt-unsafe)
      if (e->d_name[0] != '.') ++n;
    }
    ::closedir(d);
    s.fds = n;
  }
  return s;
}

void Child::Signal(int sig) const {
  if (running()) ::kill(pid_, sig);
}

int Child::Wait(std::chrono::milliseconds timeout) {
  if (pid_ <= 0) return -1;
  const auto deadline = Clock::now() + timeout;
  while (!reaped_) {
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      reaped_ = true;
      return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    }
    if (Clock::now() >= deadline) return -1;
    std::this_thread::sleep_for(10ms);
  }
  return -1;
}

std::string Child::log() const {
  std::ifstream in(dir_ + "/stderr.log");
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// ---- Sampler ---------------------------------------------------------------

Sampler::Sampler(const Child& child, std::chrono::milliseconds interval)
    : child_(child) {
  thread_ = std::jthread([this, interval](std::stop_token st) {
    const auto start = Clock::now();
    while (!st.stop_requested()) {
      ProcSample s = child_.Sample();
      s.t = std::chrono::duration<double>(Clock::now() - start).count();
      {
        std::lock_guard lock(mu_);
        samples_.push_back(s);
      }
      // Sleeps in small steps so Stop() is prompt.
      const auto next = Clock::now() + interval;
      while (!st.stop_requested() && Clock::now() < next) {
        std::this_thread::sleep_for(std::min<Clock::duration>(
            10ms, std::max<Clock::duration>(next - Clock::now(), 0ms)));
      }
    }
  });
}

Sampler::~Sampler() { Stop(); }

void Sampler::Stop() {
  thread_.request_stop();
  if (thread_.joinable()) thread_.join();
}

std::vector<ProcSample> Sampler::samples() const {
  std::lock_guard lock(mu_);
  return samples_;
}

long Sampler::max_rss_kb() const {
  std::lock_guard lock(mu_);
  long m = -1;
  for (const auto& s : samples_) m = std::max(m, s.rss_kb);
  return m;
}

// ---- helpers ---------------------------------------------------------------

bool PollUntil(const std::function<bool()>& pred,
               std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    if (pred()) return true;
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(20ms);
  }
}

long SettledFds(const Child& child, std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  long last = child.Sample().fds;
  while (Clock::now() < deadline) {
    std::this_thread::sleep_for(300ms);
    const long now = child.Sample().fds;
    if (now == last) return now;
    last = now;
  }
  return last;
}

std::string Scrape(std::uint16_t port) {
  HttpResponse r = itest::Http(port, "GET", "/metrics");
  return r.status == 200 ? r.body : std::string();
}

double Metric(std::uint16_t port, const std::string& series) {
  return itest::MetricValue(Scrape(port), series);
}

std::string RangeJson(int n) {
  std::string s = "[";
  for (int i = 0; i < n; ++i) {
    if (i > 0) s += ',';
    s += std::to_string(i);
  }
  return s + "]";
}

// ---- RawSocket -------------------------------------------------------------

RawSocket::RawSocket(std::uint16_t port) {
  fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd_ < 0) return;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd_);
    fd_ = -1;
    return;
  }
  int one = 1;
  ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

RawSocket::~RawSocket() { Close(); }

RawSocket::RawSocket(RawSocket&& other) noexcept : fd_(other.fd_) {
  other.fd_ = -1;
}

RawSocket& RawSocket::operator=(RawSocket&& other) noexcept {
  if (this != &other) {
    Close();
    fd_ = other.fd_;
    other.fd_ = -1;
  }
  return *this;
}

bool RawSocket::Send(std::string_view bytes) {
  while (!bytes.empty() && fd_ >= 0) {
    ssize_t n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    bytes.remove_prefix(static_cast<std::size_t>(n));
  }
  return fd_ >= 0;
}

std::string RawSocket::ReadAll(std::chrono::milliseconds timeout) {
  std::string out;
  const auto deadline = Clock::now() + timeout;
  char buf[8192];
  while (fd_ >= 0) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - Clock::now());
    if (left.count() <= 0) break;
    pollfd p{fd_, POLLIN, 0};
    int r = ::poll(&p, 1, static_cast<int>(left.count()));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    out.append(buf, static_cast<std::size_t>(n));
  }
  return out;
}

void RawSocket::Close() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

void RawSocket::Abort() {
  if (fd_ < 0) return;
  linger l{1, 0};
  ::setsockopt(fd_, SOL_SOCKET, SO_LINGER, &l, sizeof l);
  ::close(fd_);
  fd_ = -1;
}

std::pair<int, std::string> RawWsUpgrade(RawSocket& s,
                                         const std::string& target,
                                         const Headers& headers) {
  std::string req = "GET " + target +
                    " HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                    "Connection: Upgrade\r\n"
                    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                    "Sec-WebSocket-Version: 13\r\n";
  for (const auto& [k, v] : headers)
    req.append(k).append(": ").append(v) += "\r\n";
  if (!s.Send(req + "\r\n")) return {0, ""};
  std::string head;
  const auto deadline = Clock::now() + 10s;
  while (head.find("\r\n\r\n") == std::string::npos &&
         Clock::now() < deadline) {
    pollfd p{s.fd(), POLLIN, 0};
    if (::poll(&p, 1, 100) <= 0) continue;
    char c;
    // One byte at a time: nothing after the header may be consumed.
    if (::recv(s.fd(), &c, 1, 0) != 1) break;
    head.push_back(c);
  }
  return {itest::RawStatus(head), head};
}

std::string WsFrameHeader(int opcode, std::uint64_t length) {
  std::string h;
  h.push_back(static_cast<char>(0x80 | opcode));
  if (length < 126) {
    h.push_back(static_cast<char>(0x80 | length));
  } else if (length <= 0xffff) {
    h.push_back(static_cast<char>(0x80 | 126));
    h.push_back(static_cast<char>(length >> 8));
    h.push_back(static_cast<char>(length & 0xff));
  } else {
    h.push_back(static_cast<char>(0x80 | 127));
    for (int i = 7; i >= 0; --i)
      h.push_back(static_cast<char>((length >> (8 * i)) & 0xff));
  }
  h.append(4, '\0');  // the mask key
  return h;
}

std::optional<int> ReadWsCloseCode(RawSocket& s,
                                   std::chrono::milliseconds timeout) {
  std::string buf;
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    // Parse whole frames at the front of buf.
    while (buf.size() >= 2) {
      const auto b0 = static_cast<unsigned char>(buf[0]);
      const auto b1 = static_cast<unsigned char>(buf[1]);
      std::size_t len = b1 & 0x7f, at = 2;
      if (len == 126) {
        if (buf.size() < 4) break;
        len = (static_cast<unsigned char>(buf[2]) << 8) |
              static_cast<unsigned char>(buf[3]);
        at = 4;
      } else if (len == 127) {
        if (buf.size() < 10) break;
        len = 0;
        for (int i = 0; i < 8; ++i)
          len = (len << 8) | static_cast<unsigned char>(buf[2 + i]);
        at = 10;
      }
      if (buf.size() < at + len) break;
      if ((b0 & 0x0f) == 0x8) {
        if (len < 2) return 1005;  // no status code
        return (static_cast<unsigned char>(buf[at]) << 8) |
               static_cast<unsigned char>(buf[at + 1]);
      }
      buf.erase(0, at + len);
    }
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - Clock::now());
    if (left.count() <= 0) return std::nullopt;
    pollfd p{s.fd(), POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
    char chunk[4096];
    const ssize_t n = ::recv(s.fd(), chunk, sizeof chunk, 0);
    if (n <= 0) return std::nullopt;
    buf.append(chunk, static_cast<std::size_t>(n));
  }
}

// ---- statistics ------------------------------------------------------------

double Quantile(std::vector<double> v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const auto rank =
      static_cast<std::size_t>(std::ceil(q * static_cast<double>(v.size())));
  return v[std::clamp<std::size_t>(rank, 1, v.size()) - 1];
}

double Median(std::vector<double> v) { return Quantile(std::move(v), 0.5); }

double Slope(const std::vector<double>& x, const std::vector<double>& y) {
  const std::size_t n = std::min(x.size(), y.size());
  if (n < 2) return 0;
  double mx = 0, my = 0;
  for (std::size_t i = 0; i < n; ++i) {
    mx += x[i];
    my += y[i];
  }
  mx /= static_cast<double>(n);
  my /= static_cast<double>(n);
  double num = 0, den = 0;
  for (std::size_t i = 0; i < n; ++i) {
    num += (x[i] - mx) * (y[i] - my);
    den += (x[i] - mx) * (x[i] - mx);
  }
  return den == 0 ? 0 : num / den;
}

void Figure(const std::string& key, const std::string& value) {
  std::printf("[figure] %s = %s\n", key.c_str(), value.c_str());
  std::fflush(stdout);
  ::testing::Test::RecordProperty(key, value);
}

void Figure(const std::string& key, double value) {
  char buf[64];
  if (value == std::floor(value) && std::abs(value) < 1e15) {
    std::snprintf(buf, sizeof buf, "%.0f", value);  // counts: every digit
  } else {
    std::snprintf(buf, sizeof buf, "%.4g", value);
  }
  Figure(key, std::string(buf));
}

std::string Mib(long kb) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f MiB", static_cast<double>(kb) / 1024.0);
  return buf;
}

}  // namespace sluice::load
