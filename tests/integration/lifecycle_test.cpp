// Integration tests of the lifecycle (contract §C6) with the real `sluice`
// binary as a child process: SIGTERM drains (readyz 503, new jobs 503,
// running jobs finish, their streams get done + 1000, exit 0), a drain out
// of grace cancels (streams close 1001); in-process Server::Shutdown; and
// `promtool check metrics` when promtool is installed.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <thread>

#include "client.hpp"

extern char** environ;

namespace sluice::itest {
namespace {

using nlohmann::json;

// A `sluice serve` child process on 127.0.0.1:0; reads the bound port from
// its "listening on" line. Thread-compatible.
class Child {
 public:
  Child(const std::string& yaml) {
    char path[] = "/tmp/sluice_itest_XXXXXX.yaml";
    int fd = ::mkstemps(path, 5);
    if (fd < 0) return;
    ::close(fd);
    config_path_ = path;
    std::ofstream(config_path_) << yaml;

    int out[2];
    if (::pipe(out) != 0) return;
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, out[1], STDOUT_FILENO);
    posix_spawn_file_actions_addclose(&actions, out[0]);
    std::string binary = SLUICE_BINARY;
    std::vector<std::string> args = {binary,       "serve",    "--config",
                                     config_path_, "--listen", "127.0.0.1:0"};
    std::vector<char*> argv;
    argv.reserve(args.size() + 1);
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    if (posix_spawn(&pid_, binary.c_str(), &actions, nullptr, argv.data(),
                    environ) != 0) {
      pid_ = -1;
    }
    posix_spawn_file_actions_destroy(&actions);
    ::close(out[1]);
    stdout_ = out[0];
    port_ = ReadPort(10s);
  }

  ~Child() {
    if (pid_ > 0 && !reaped_) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    if (stdout_ >= 0) ::close(stdout_);
    if (!config_path_.empty()) std::remove(config_path_.c_str());
  }

  std::uint16_t port() const { return port_; }
  void Signal(int sig) { ::kill(pid_, sig); }

  // The exit status, or -1 if it did not exit within `timeout`.
  int Wait(std::chrono::milliseconds timeout) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      int status = 0;
      pid_t r = ::waitpid(pid_, &status, WNOHANG);
      if (r == pid_) {
        reaped_ = true;
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      }
      std::this_thread::sleep_for(20ms);
    }
    return -1;
  }

 private:
  std::uint16_t ReadPort(std::chrono::milliseconds timeout) {
    std::string line;
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      pollfd p{stdout_, POLLIN, 0};
      if (::poll(&p, 1, 100) <= 0) continue;
      char c;
      if (::read(stdout_, &c, 1) != 1) break;
      if (c == '\n') {
        const std::string prefix = "listening on 127.0.0.1:";
        if (line.rfind(prefix, 0) == 0)
          return static_cast<std::uint16_t>(
              std::stoi(line.substr(prefix.size())));
        line.clear();
      } else {
        line.push_back(c);
      }
    }
    return 0;
  }

  std::string config_path_;
  pid_t pid_ = -1;
  int stdout_ = -1;
  std::uint16_t port_ = 0;
  bool reaped_ = false;
};

std::string DrainConfig(const std::string& grace) {
  return R"(
server: { listen: "127.0.0.1:9", shutdown_grace: )" +
         grace + R"( }
pipelines:
  - name: slow
    stages:
      - { name: sleep, processor: { type: delay, duration: 50ms }, workers: 1 }
)";
}

json Range(int n) {
  json items = json::array();
  for (int i = 0; i < n; ++i) items.push_back(i);
  return items;
}

TEST(Lifecycle, SigtermDrainsRunningJobAndExitsZero) {
  Child child(DrainConfig("20s"));
  ASSERT_NE(child.port(), 0) << "no 'listening on' line from " << SLUICE_BINARY;
  const auto port = child.port();
  // 30 items x 50 ms on one worker: ~1.5 s of work.
  HttpResponse r =
      Http(port, "POST", "/v1/jobs?pipeline=slow", Range(30).dump());
  ASSERT_EQ(r.status, 202) << r.body;
  const std::string id = r.json()["id"];
  WsClient ws(port, "/v1/jobs/" + id + "/stream");
  ASSERT_EQ(ws.handshake_status(), 101);
  ASSERT_TRUE(ws.Read());  // running

  child.Signal(SIGTERM);
  std::this_thread::sleep_for(200ms);
  HttpResponse ready = Http(port, "GET", "/readyz");
  EXPECT_EQ(ready.status, 503);
  EXPECT_EQ(ready.json()["status"], "draining");
  HttpResponse refused = Http(port, "POST", "/v1/jobs?pipeline=slow", "[1]");
  EXPECT_EQ(refused.status, 503);
  EXPECT_EQ(refused.json()["error"]["code"], "draining");
  // Reads still work during the drain.
  EXPECT_EQ(Http(port, "GET", "/v1/jobs/" + id).status, 200);

  auto frames = ws.ReadAll(30s);
  ASSERT_FALSE(frames.empty());
  EXPECT_EQ(frames.size(), 30u);  // 29 more results + done
  EXPECT_EQ(frames.back()["type"], "done");
  EXPECT_EQ(frames.back()["job"]["state"], "done");
  EXPECT_EQ(frames.back()["job"]["items"]["out"], 30);
  EXPECT_EQ(ws.close_code(), 1000);
  EXPECT_EQ(child.Wait(20s), 0);
}

TEST(Lifecycle, DrainOutOfGraceCancelsAndCloses1001) {
  Child child(DrainConfig("300ms"));
  ASSERT_NE(child.port(), 0);
  const auto port = child.port();
  // 100 items x 50 ms: far longer than the grace.
  HttpResponse r =
      Http(port, "POST", "/v1/jobs?pipeline=slow", Range(100).dump());
  ASSERT_EQ(r.status, 202);
  const std::string id = r.json()["id"];
  WsClient ws(port, "/v1/jobs/" + id + "/stream");
  ASSERT_EQ(ws.handshake_status(), 101);
  ASSERT_TRUE(ws.Read());
  child.Signal(SIGTERM);
  auto frames = ws.ReadAll(30s);
  ASSERT_FALSE(frames.empty());
  EXPECT_EQ(frames.back()["type"], "done");
  EXPECT_EQ(frames.back()["job"]["state"], "cancelled");
  EXPECT_GT(frames.back()["job"]["items"]["cancelled"].get<int>(), 0);
  EXPECT_EQ(ws.close_code(), 1001);
  EXPECT_EQ(child.Wait(20s), 0);
}

TEST(Lifecycle, IdleServerExitsPromptlyOnSigint) {
  Child child(DrainConfig("30s"));
  ASSERT_NE(child.port(), 0);
  // An idle keep-alive connection must not hold the shutdown up.
  HttpClient idle(child.port());
  ASSERT_EQ(idle.Request("GET", "/healthz").status, 200);
  auto start = std::chrono::steady_clock::now();
  child.Signal(SIGINT);
  EXPECT_EQ(child.Wait(10s), 0);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 5s);
}

TEST(Lifecycle, InProcessShutdownFinishesStreams) {
  auto server = std::make_unique<TestServer>(kTestConfig);
  const auto port = server->port();
  HttpResponse r =
      Http(port, "POST", "/v1/jobs?pipeline=slow", Range(10).dump());
  ASSERT_EQ(r.status, 202);
  WsClient ws(port,
              "/v1/jobs/" + r.json()["id"].get<std::string>() + "/stream");
  ASSERT_EQ(ws.handshake_status(), 101);
  server->server().Shutdown();
  auto frames = ws.ReadAll(30s);
  ASSERT_FALSE(frames.empty());
  EXPECT_EQ(frames.back()["type"], "done");
  EXPECT_EQ(frames.back()["job"]["state"], "done");
  EXPECT_EQ(ws.close_code(), 1000);
  server.reset();  // joins everything
}

TEST(Metrics, PromtoolAcceptsTheExposition) {
  if (std::system(  // NOLINT(concurrency-mt-unsafe): one test thread
          "command -v promtool >/dev/null 2>&1") != 0) {
    GTEST_SKIP() << "promtool not installed (Debian package `prometheus`)";
  }
  TestServer server(kTestConfig);
  // Some traffic first, so every kind of sample is present.
  HttpResponse r =
      Http(server.port(), "POST", "/v1/jobs?pipeline=echo&wait=10", "[1,2]");
  ASSERT_EQ(r.status, 200);
  Http(server.port(), "GET", "/v1/jobs/nope");
  std::string text = Http(server.port(), "GET", "/metrics").body;
  char path[] = "/tmp/sluice_metrics_XXXXXX";
  int fd = ::mkstemp(path);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::write(fd, text.data(), text.size()),
            static_cast<ssize_t>(text.size()));
  ::close(fd);
  std::string command =
      std::string("promtool check metrics < ") + path + " 2>&1";
  FILE* p = ::popen(command.c_str(), "r");
  ASSERT_NE(p, nullptr);
  std::string output;
  char buf[512];
  while (std::fgets(buf, sizeof buf, p)) output += buf;
  int status = ::pclose(p);
  std::remove(path);
  // promtool exits 0 when the text parses; lint findings (exit 3) are
  // reported but do not fail the format check.
  int code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  EXPECT_TRUE(code == 0 || code == 3) << output;
  EXPECT_EQ(output.find("error"), std::string::npos) << output;
}

}  // namespace
}  // namespace sluice::itest
