// Integration tests of TLS (server.tls.cert / server.tls.key): the real
// server serving HTTPS and WSS with a self-signed certificate the test makes
// itself (OpenSSL: an EC P-256 key and an X.509 certificate for
// CN=127.0.0.1 with subjectAltName IP:127.0.0.1), checked by TLS clients
// that trust only that certificate and verify the host name; the plain and
// TLS ports refusing each other's clients; bad certificates and keys failing
// App::Create and `sluice serve`; the drain over WSS. Every wait is
// bounded: each client operation runs under a tcp_stream deadline.
//
// The certificates and the HTTPS and WSS clients are in
// tests/support/tls_client.hpp, compiled once (sluice_itest_tls): Beast's
// TLS and WebSocket templates are instantiated there, not here.
#include <gtest/gtest.h>
#include <poll.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "client.hpp"
#include "service/app/app.hpp"
#include "service/config/config.hpp"
#include "service/processors/checks.hpp"
#include "tests/support/tls_client.hpp"

extern char** environ;

namespace sluice::itest {
namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

json Range(int n) {
  json items = json::array();
  for (int i = 0; i < n; ++i) items.push_back(i);
  return items;
}

// Polls GET /v1/jobs/ID over HTTPS until its state is final (30 s at most).
json WaitForJobTls(HttpsClient& client, const std::string& id,
                   const Headers& headers = {}) {
  const auto deadline = Clock::now() + 30s;
  json status;
  while (Clock::now() < deadline) {
    HttpResponse r = client.Request("GET", "/v1/jobs/" + id, "", headers);
    if (r.status != 200) return {};
    status = r.json();
    const std::string state = status["state"];
    if (state == "done" || state == "failed" || state == "cancelled") break;
    std::this_thread::sleep_for(10ms);
  }
  return status;
}

// Checks frames = n result frames (each seq once) then done.
void ExpectResultsThenDone(const std::vector<json>& frames, int n) {
  ASSERT_EQ(frames.size(), static_cast<std::size_t>(n + 1));
  std::set<int> seqs;
  for (int i = 0; i < n; ++i) {
    EXPECT_EQ(frames[i]["type"], "result") << frames[i];
    seqs.insert(frames[i]["seq"].get<int>());
  }
  EXPECT_EQ(seqs.size(), static_cast<std::size_t>(n));
  EXPECT_EQ(frames.back()["type"], "done");
  EXPECT_EQ(frames.back()["job"]["state"], "done");
}

// ---- fixture ---------------------------------------------------------------

// One certificate per test program (making keys is not free), in a
// private directory; a TLS server per test.
class TlsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    pair_ = new CertPair(MakeSelfSigned());
    cert_path_ = new std::string(dir_->Write("cert.pem", pair_->cert));
    key_path_ = new std::string(dir_->Write("key.pem", pair_->key));
  }
  static void TearDownTestSuite() {
    delete key_path_;
    delete cert_path_;
    delete pair_;
    delete dir_;
  }

  void SetUp() override {
    ASSERT_FALSE(pair_->cert.empty());
    server_ = std::make_unique<TestServer>(TlsConfig(*cert_path_, *key_path_));
  }

  std::uint16_t port() const { return server_->port(); }
  static const std::string& trusted() { return pair_->cert; }

  std::string Submit(HttpsClient& client, const std::string& pipeline,
                     const json& items) {
    HttpResponse r =
        client.Request("POST", "/v1/jobs?pipeline=" + pipeline, items.dump());
    EXPECT_EQ(r.status, 202) << r.error << r.body;
    return r.status == 202 ? r.json()["id"].get<std::string>() : "";
  }

  static TempDir* dir_;
  static CertPair* pair_;
  static std::string* cert_path_;
  static std::string* key_path_;
  std::unique_ptr<TestServer> server_;
};

TempDir* TlsTest::dir_ = nullptr;
CertPair* TlsTest::pair_ = nullptr;
std::string* TlsTest::cert_path_ = nullptr;
std::string* TlsTest::key_path_ = nullptr;

// ---- HTTPS -----------------------------------------------------------------

TEST_F(TlsTest, HttpsJobStatusResultsMetricsAndHealthOnOneConnection) {
  HttpsClient client(port(), trusted());
  ASSERT_EQ(client.error(), "");
  const std::string id = Submit(client, "echo", Range(5));
  ASSERT_FALSE(id.empty());
  json status = WaitForJobTls(client, id);
  EXPECT_EQ(status["state"], "done");
  EXPECT_EQ(status["items"]["in"], 5);
  EXPECT_EQ(status["items"]["out"], 5);

  HttpResponse results = client.Request("GET", "/v1/jobs/" + id + "/results");
  ASSERT_EQ(results.status, 200) << results.error;
  const json page = results.json();
  EXPECT_EQ(page["total"], 5);
  std::set<int> values;
  for (const auto& r : page["results"]) {
    values.insert(r["value"].get<int>());
  }
  EXPECT_EQ(values, (std::set<int>{0, 1, 2, 3, 4}));

  HttpResponse waited = client.Request(
      "POST", "/v1/jobs?pipeline=words&wait=10", R"(["a b c", "d e"])");
  ASSERT_EQ(waited.status, 200) << waited.error << waited.body;
  EXPECT_EQ(waited.json()["aggregate"], 5);

  HttpResponse health = client.Request("GET", "/healthz");
  EXPECT_EQ(health.status, 200);
  HttpResponse metrics = client.Request("GET", "/metrics");
  ASSERT_EQ(metrics.status, 200);
  // Every request above came over the one TLS connection (keep-alive) and
  // is counted like any other.
  EXPECT_GE(MetricValue(metrics.body,
                        "sluice_http_requests_total{code=\"202\",method="
                        "\"POST\",route=\"/v1/jobs\"}"),
            1)
      << metrics.body.substr(0, 2000);
  EXPECT_GE(MetricValue(metrics.body,
                        "sluice_http_requests_total{code=\"200\",method="
                        "\"GET\",route=\"/healthz\"}"),
            1);
}

TEST_F(TlsTest, ClientVerifiesTheServerCertificateAndName) {
  // Trusting only the server's own certificate, for the name 127.0.0.1:
  // the handshake succeeds (the other tests rely on it too).
  EXPECT_EQ(HttpsClient(port(), trusted()).error(), "");
  // Trusting another certificate: the chain does not verify.
  CertPair other = MakeSelfSigned();
  HttpsClient stranger(port(), other.cert);
  EXPECT_NE(stranger.error(), "");
  EXPECT_NE(stranger.error().find("certificate verify failed"),
            std::string::npos)
      << stranger.error();
  // Trusting nothing at all: no verification either.
  EXPECT_NE(HttpsClient(port(), "").error(), "");
  // The right certificate for another name: host name verification fails.
  HttpsClient wrong_name(port(), trusted(), "127.0.0.2");
  EXPECT_NE(wrong_name.error().find("certificate verify failed"),
            std::string::npos)
      << wrong_name.error();
  // None of that disturbed the server.
  EXPECT_EQ(Https(port(), trusted(), "GET", "/healthz").status, 200);
}

TEST_F(TlsTest, LimitsApplyOverTls) {
  // kTestConfig: max_body_bytes 4096, max_header_bytes 2048.
  HttpsClient client(port(), trusted());
  HttpResponse big = client.Request("POST", "/v1/jobs?pipeline=echo",
                                    "[" + std::string(8000, ' ') + "1]");
  EXPECT_EQ(big.status, 413) << big.error;
  EXPECT_NE(big.body.find("payload_too_large"), std::string::npos);
  EXPECT_EQ(big.header("connection"), "close");

  HttpResponse header = Https(port(), trusted(), "GET", "/healthz", "",
                              {{"X-Filler", std::string(3000, 'x')}});
  EXPECT_EQ(header.status, 431) << header.error;

  EXPECT_EQ(Https(port(), trusted(), "GET", "/healthz").status, 200);
}

TEST_F(TlsTest, PlainHttpToTheTlsPortIsDroppedQuickly) {
  // A client that connects and says nothing holds its connection (until
  // server.idle_timeout) without holding anyone else up.
  SilentConnection silent(port());

  const auto start = Clock::now();
  std::string raw =
      RawExchange(port(), "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", 10s);
  const auto elapsed = Clock::now() - start;
  // No HTTP answer: the handshake failed on the first bytes and the
  // server closed the connection at once (not after a timeout).
  EXPECT_EQ(RawStatus(raw), 0) << raw;
  EXPECT_EQ(raw.find("HTTP/"), std::string::npos);
  EXPECT_LT(elapsed, 3s);

  // Others are served, before and after.
  EXPECT_EQ(Https(port(), trusted(), "GET", "/healthz").status, 200);
  HttpsClient client(port(), trusted());
  EXPECT_EQ(Submit(client, "echo", Range(3)).empty(), false);
}

TEST(TlsPlainPort, TlsClientToThePlainPortFailsQuickly) {
  TestServer server(kTestConfig);
  CertPair pair = MakeSelfSigned();
  const auto start = Clock::now();
  HttpsClient client(server.port(), pair.cert);
  EXPECT_NE(client.error(), "");
  EXPECT_LT(Clock::now() - start, 5s);
  EXPECT_EQ(Http(server.port(), "GET", "/healthz").status, 200);
}

TEST(TlsHandshake, SilentClientIsDroppedAfterTheReadTimeout) {
  TempDir dir;
  CertPair pair = MakeSelfSigned();
  TestServer server(TlsConfig(dir.Write("c.pem", pair.cert),
                              dir.Write("k.pem", pair.key),
                              "  idle_timeout: 300ms\n"));
  const auto start = Clock::now();
  // Connect, send nothing: the server gives up on the handshake.
  std::string raw = RawExchange(server.port(), "", 10s);
  const auto elapsed = Clock::now() - start;
  EXPECT_EQ(raw, "");
  EXPECT_GE(elapsed, 250ms);
  EXPECT_LT(elapsed, 5s);
  EXPECT_EQ(Https(server.port(), pair.cert, "GET", "/healthz").status, 200);
}

// ---- auth ------------------------------------------------------------------

TEST(TlsAuth, BearerTokensOverTls) {
  ::setenv("SLUICE_ITEST_TLS_TOKENS", "s3cret", 1);  // NOLINT
  TempDir dir;
  CertPair pair = MakeSelfSigned();
  {
    const std::string auth_yaml =
        "  auth: { tokens_env: SLUICE_ITEST_TLS_TOKENS }\n";
    TestServer server(TlsConfig(dir.Write("c.pem", pair.cert),
                                dir.Write("k.pem", pair.key), auth_yaml));
    const Headers auth = {{"Authorization", "Bearer s3cret"}};
    HttpsClient client(server.port(), pair.cert);
    EXPECT_EQ(client.Request("GET", "/v1/jobs").status, 401);
    HttpsClient client2(server.port(), pair.cert);
    EXPECT_EQ(
        client2
            .Request("GET", "/v1/jobs", "", {{"Authorization", "Bearer wrong"}})
            .status,
        401);
    HttpsClient client3(server.port(), pair.cert);
    HttpResponse ok = client3.Request("POST", "/v1/jobs?pipeline=echo&wait=10",
                                      "[1,2]", auth);
    EXPECT_EQ(ok.status, 200) << ok.body;
    // WSS upgrades are refused with a plain 401 before any upgrade.
    WssClient refused(server.port(), pair.cert, "/v1/stream?pipeline=echo");
    EXPECT_EQ(refused.handshake_status(), 401);
    WssClient allowed(server.port(), pair.cert, "/v1/stream?pipeline=echo",
                      auth);
    EXPECT_EQ(allowed.handshake_status(), 101) << allowed.error();
    // Probes stay open, as over plain HTTP.
    EXPECT_EQ(Https(server.port(), pair.cert, "GET", "/healthz").status, 200);
  }
  ::unsetenv("SLUICE_ITEST_TLS_TOKENS");  // NOLINT(concurrency-mt-unsafe)
}

// ---- WSS -------------------------------------------------------------------

TEST_F(TlsTest, WssJobStreamReplaysThenDoneAndNormalClose) {
  HttpsClient client(port(), trusted());
  const std::string id = Submit(client, "echo", Range(30));
  ASSERT_EQ(WaitForJobTls(client, id)["state"], "done");
  WssClient ws(port(), trusted(), "/v1/jobs/" + id + "/stream");
  ASSERT_EQ(ws.handshake_status(), 101) << ws.error();
  auto frames = ws.ReadAll();
  ExpectResultsThenDone(frames, 30);
  EXPECT_EQ(ws.close_code(), 1000);
  EXPECT_FALSE(ws.timed_out());
}

TEST_F(TlsTest, WssLiveStreamIsCountedInTheWebSocketGauge) {
  HttpsClient client(port(), trusted());
  const std::string id = Submit(client, "slow", Range(10));  // ~0.5 s
  WssClient ws(port(), trusted(), "/v1/jobs/" + id + "/stream");
  ASSERT_EQ(ws.handshake_status(), 101) << ws.error();
  ASSERT_TRUE(ws.Read().has_value());  // open and streaming
  std::string text = client.Request("GET", "/metrics").body;
  EXPECT_EQ(
      MetricValue(text, "sluice_websocket_connections{kind=\"job_stream\"}"),
      1);
  auto frames = ws.ReadAll();
  ExpectResultsThenDone(frames, 9);  // the first was read above
  EXPECT_EQ(ws.close_code(), 1000);
  // The gauge goes back down once the session has ended.
  double open = -1;
  for (int i = 0; i < 200; ++i) {
    text = client.Request("GET", "/metrics").body;
    open =
        MetricValue(text, "sluice_websocket_connections{kind=\"job_stream\"}");
    if (open == 0) break;
    std::this_thread::sleep_for(10ms);
  }
  EXPECT_EQ(open, 0);
}

TEST_F(TlsTest, WssIngestionStreamItemsEndDone) {
  WssClient ws(port(), trusted(), "/v1/stream?pipeline=echo");
  ASSERT_EQ(ws.handshake_status(), 101) << ws.error();
  ws.Send(R"({"items": [0, 1, 2]})");
  ws.Send(R"({"item": 3})");
  ws.Send(R"({"item": 4, "end": true})");
  auto frames = ws.ReadAll();
  ExpectResultsThenDone(frames, 5);
  EXPECT_EQ(ws.close_code(), 1000);
  // A bad frame gets an error frame over TLS too, and the stream goes on.
  WssClient ws2(port(), trusted(), "/v1/stream?pipeline=echo");
  ASSERT_EQ(ws2.handshake_status(), 101);
  ws2.Send("{not json");
  auto error = ws2.Read();
  ASSERT_TRUE(error.has_value());
  EXPECT_EQ(json::parse(*error)["type"], "error");
  ws2.Send(R"({"end": true})");
  auto rest = ws2.ReadAll();
  ASSERT_FALSE(rest.empty());
  EXPECT_EQ(rest.back()["type"], "done");
  EXPECT_EQ(ws2.close_code(), 1000);
}

TEST_F(TlsTest, ShutdownWithAnOpenWssStreamEndsInDoneAndClose) {
  HttpsClient client(port(), trusted());
  const std::string id = Submit(client, "slow", Range(10));
  WssClient ws(port(), trusted(), "/v1/jobs/" + id + "/stream");
  ASSERT_EQ(ws.handshake_status(), 101) << ws.error();
  server_->server().Shutdown();
  auto frames = ws.ReadAll(30s);
  ExpectResultsThenDone(frames, 10);
  EXPECT_EQ(ws.close_code(), 1000);
  const auto start = Clock::now();
  server_.reset();  // joins everything: no connection lingers
  EXPECT_LT(Clock::now() - start, 10s);
}

// ---- bad certificates and keys --------------------------------------------

// App::Create's error for server.tls = (cert, key), or "" if it starts.
std::string CreateError(const std::string& cert, const std::string& key) {
  auto loaded =
      config::LoadConfigText(TlsConfig(cert, key), processors::ConfigChecks());
  if (!loaded.ok()) {
    return "config: " + config::ToString(loaded.error().front());
  }
  app::AppOptions options;
  options.server.listen = "127.0.0.1:0";
  auto server = app::App::Create(std::move(loaded).value(), options);
  if (server.ok()) return "";
  EXPECT_EQ(server.error().code, "tls");
  return server.error().message;
}

bool StartsWith(const std::string& s, const std::string& prefix) {
  return s.compare(0, prefix.size(), prefix) == 0;
}

TEST(TlsConfigErrors, BadCertificateOrKeyFailsCreateNamingTheKey) {
  TempDir dir;
  CertPair pair = MakeSelfSigned();
  CertPair other = MakeSelfSigned();
  CertPair rsa = MakeSelfSigned(/*rsa=*/true);
  const std::string cert = dir.Write("cert.pem", pair.cert);
  const std::string key = dir.Write("key.pem", pair.key);
  const std::string other_key = dir.Write("other.pem", other.key);
  const std::string rsa_key = dir.Write("rsa.pem", rsa.key);
  const std::string junk = dir.Write("junk.pem", "not a pem file\n");
  const std::string encrypted =
      dir.Write("encrypted.pem", EncryptKey(pair.key, "passphrase"));
  const std::string missing = dir.path() + "/missing.pem";

  EXPECT_EQ(CreateError(cert, key), "");

  std::string e = CreateError(missing, key);
  EXPECT_TRUE(StartsWith(e, "server.tls.cert: cannot read \"" + missing)) << e;
  EXPECT_NE(e.find("No such file"), std::string::npos) << e;

  e = CreateError(cert, missing);
  EXPECT_TRUE(StartsWith(e, "server.tls.key: cannot read \"" + missing)) << e;

  e = CreateError(junk, key);
  EXPECT_TRUE(StartsWith(
      e, "server.tls.cert: \"" + junk + "\" holds no valid PEM certificate"))
      << e;

  e = CreateError(cert, junk);
  EXPECT_TRUE(StartsWith(
      e, "server.tls.key: \"" + junk + "\" holds no valid PEM private key"))
      << e;

  // An encrypted key fails at once (no passphrase prompt on the terminal).
  e = CreateError(cert, encrypted);
  EXPECT_TRUE(
      StartsWith(e, "server.tls.key: \"" + encrypted + "\" is encrypted"))
      << e;

  // A certificate where the key goes, and the other way round.
  e = CreateError(key, cert);
  EXPECT_TRUE(StartsWith(e, "server.tls.cert: ")) << e;
  e = CreateError(cert, cert);
  EXPECT_TRUE(StartsWith(e, "server.tls.key: ")) << e;

  // Another certificate's key, of the same type and of another type.
  const std::string mismatch = "server.tls.key: the private key in \"";
  e = CreateError(cert, other_key);
  EXPECT_TRUE(StartsWith(e, mismatch + other_key + "\" does not match")) << e;
  EXPECT_NE(e.find("server.tls.cert (\"" + cert + "\")"), std::string::npos)
      << e;
  e = CreateError(cert, rsa_key);
  EXPECT_TRUE(StartsWith(e, mismatch + rsa_key + "\" does not match")) << e;

  // An unreadable file (permissions), unless we are root.
  if (::geteuid() != 0) {
    std::filesystem::permissions(key, std::filesystem::perms::none);
    e = CreateError(cert, key);
    EXPECT_TRUE(StartsWith(e, "server.tls.key: cannot read")) << e;
    EXPECT_NE(e.find("Permission denied"), std::string::npos) << e;
  }

  // The loader insists on both.
  auto loaded = config::LoadConfigText(
      "server: { tls: { cert: " + cert +
          " } }\npipelines: [{name: p, stages: [{processor: passthrough}]}]\n",
      processors::ConfigChecks());
  ASSERT_FALSE(loaded.ok());
  EXPECT_EQ(config::ToString(loaded.error().front()),
            "server.tls: cert and key must be set together");
}

// ---- the `sluice serve` binary ---------------------------------------------

// Runs `sluice serve --config <yaml> --listen 127.0.0.1:0`, capturing
// stdout and stderr. Thread-compatible.
class ServeProcess {
 public:
  ServeProcess(const TempDir& dir, const std::string& yaml) {
    const std::string config = dir.Write("serve.yaml", yaml);
    int out[2];
    int err[2];
    if (::pipe(out) != 0 || ::pipe(err) != 0) return;
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, out[1], STDOUT_FILENO);
    posix_spawn_file_actions_adddup2(&actions, err[1], STDERR_FILENO);
    posix_spawn_file_actions_addclose(&actions, out[0]);
    posix_spawn_file_actions_addclose(&actions, err[0]);
    std::string binary = SLUICE_BINARY;
    std::vector<std::string> args = {binary, "serve",    "--config",
                                     config, "--listen", "127.0.0.1:0"};
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    if (posix_spawn(&pid_, binary.c_str(), &actions, nullptr, argv.data(),
                    environ) != 0) {
      pid_ = -1;
    }
    posix_spawn_file_actions_destroy(&actions);
    ::close(out[1]);
    ::close(err[1]);
    out_ = out[0];
    err_ = err[0];
  }

  ~ServeProcess() {
    if (pid_ > 0 && !reaped_) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    if (out_ >= 0) ::close(out_);
    if (err_ >= 0) ::close(err_);
  }

  // Reads stdout until "listening on HOST:PORT\n"; returns PORT or 0.
  std::uint16_t WaitListening(std::chrono::milliseconds timeout) {
    std::string text;
    const auto deadline = Clock::now() + timeout;
    while (Clock::now() < deadline) {
      pollfd p{out_, POLLIN, 0};
      if (::poll(&p, 1, 50) <= 0) continue;
      char buf[256];
      ssize_t n = ::read(out_, buf, sizeof buf);
      if (n <= 0) return 0;
      text.append(buf, static_cast<std::size_t>(n));
      auto nl = text.find('\n');
      if (nl != std::string::npos) {
        auto colon = text.rfind(':', nl);
        if (colon == std::string::npos) return 0;
        return static_cast<std::uint16_t>(
            std::stoi(text.substr(colon + 1, nl - colon - 1)));
      }
    }
    return 0;
  }

  // The exit status (after reading all of stderr), or -1 after `timeout`.
  int Wait(std::chrono::milliseconds timeout) {
    const auto deadline = Clock::now() + timeout;
    while (Clock::now() < deadline) {
      pollfd p{err_, POLLIN, 0};
      if (::poll(&p, 1, 20) > 0) {
        char buf[512];
        ssize_t n = ::read(err_, buf, sizeof buf);
        if (n > 0) stderr_.append(buf, static_cast<std::size_t>(n));
      }
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        reaped_ = true;
        // Whatever is still in the pipe.
        char buf[512];
        ssize_t n = 0;
        while ((n = ::read(err_, buf, sizeof buf)) > 0) {
          stderr_.append(buf, static_cast<std::size_t>(n));
        }
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      }
    }
    return -1;
  }

  void Signal(int sig) { ::kill(pid_, sig); }
  const std::string& stderr_text() const { return stderr_; }
  bool started() const { return pid_ > 0; }

 private:
  pid_t pid_ = -1;
  int out_ = -1;
  int err_ = -1;
  bool reaped_ = false;
  std::string stderr_;
};

TEST(TlsServe, BadKeyExitsNonZeroNamingIt) {
  TempDir dir;
  CertPair pair = MakeSelfSigned();
  CertPair other = MakeSelfSigned();
  ServeProcess serve(dir, TlsConfig(dir.Write("c.pem", pair.cert),
                                    dir.Write("k.pem", other.key)));
  ASSERT_TRUE(serve.started());
  EXPECT_EQ(serve.Wait(20s), 1);
  EXPECT_NE(serve.stderr_text().find("server.tls.key: the private key in"),
            std::string::npos)
      << serve.stderr_text();
}

TEST(TlsServe, ServesHttpsAndDrainsOnSigterm) {
  TempDir dir;
  CertPair pair = MakeSelfSigned();
  ServeProcess serve(dir, TlsConfig(dir.Write("c.pem", pair.cert),
                                    dir.Write("k.pem", pair.key)));
  ASSERT_TRUE(serve.started());
  const std::uint16_t port = serve.WaitListening(20s);
  ASSERT_NE(port, 0);
  HttpsClient client(port, pair.cert);
  ASSERT_EQ(client.error(), "");
  HttpResponse submitted =
      client.Request("POST", "/v1/jobs?pipeline=slow", Range(10).dump());
  ASSERT_EQ(submitted.status, 202) << submitted.error;
  const std::string id = submitted.json()["id"].get<std::string>();
  WssClient ws(port, pair.cert, "/v1/jobs/" + id + "/stream");
  ASSERT_EQ(ws.handshake_status(), 101) << ws.error();
  serve.Signal(SIGTERM);
  auto frames = ws.ReadAll(30s);
  ExpectResultsThenDone(frames, 10);
  EXPECT_EQ(ws.close_code(), 1000);
  EXPECT_EQ(serve.Wait(30s), 0) << serve.stderr_text();
}

}  // namespace
}  // namespace sluice::itest
