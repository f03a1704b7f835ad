// Support for the TLS integration tests (tests/integration/tls_test.cpp):
// self-signed certificates made with OpenSSL, a private temporary directory,
// and HTTPS and WSS clients that trust exactly one certificate and verify
// the host name.
//
// The interface is std-only, like client.hpp: Beast's TLS and WebSocket
// templates are instantiated once, in the library sluice_itest_tls, and
// not in the tests. Its two files build in parallel: tls_client.cpp (the
// certificates and the HTTPS client) and tls_wss_client.cpp (the WSS
// client, the heavier). Every client operation runs under a deadline, so no
// wait is unbounded.
#ifndef SLUICE_TESTS_SUPPORT_TLS_CLIENT_HPP_
#define SLUICE_TESTS_SUPPORT_TLS_CLIENT_HPP_

#include <chrono>
#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "client.hpp"

namespace sluice::itest {

// ---- certificates ----------------------------------------------------------

// A certificate and its private key, both PEM. Thread-compatible.
struct CertPair {
  std::string cert;
  std::string key;
};

// A self-signed certificate for CN=127.0.0.1, subjectAltName IP:127.0.0.1,
// valid from a minute ago for a day, with a new key (EC P-256, or RSA 2048
// when `rsa`). Fails the current test (and returns empties) on an OpenSSL
// error.
CertPair MakeSelfSigned(bool rsa = false);

// `key_pem` re-encoded as PKCS#8 encrypted with AES-256 and `passphrase`.
std::string EncryptKey(const std::string& key_pem,
                       const std::string& passphrase);

// A private temporary directory, removed with everything in it.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  // Writes `text` to `name` in the directory (mode 0600); returns its path.
  std::string Write(const std::string& name, const std::string& text) const;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// kTestConfig with server.tls set to `cert` and `key` (and `extra` server
// keys, each a line "  key: value\n").
std::string TlsConfig(const std::string& cert, const std::string& key,
                      const std::string& extra = "");

// ---- TLS clients -----------------------------------------------------------

// An HTTPS/1.1 keep-alive connection to 127.0.0.1:port that trusts exactly
// `trusted_pem` (one certificate; none when empty) and verifies the chain
// and the certificate's name against `host`. Thread-compatible.
class HttpsClient {
 public:
  HttpsClient(std::uint16_t port, const std::string& trusted_pem,
              const std::string& host = "127.0.0.1");
  ~HttpsClient();

  // "" when the TLS handshake succeeded, else its error.
  const std::string& error() const;

  HttpResponse Request(const std::string& method, const std::string& target,
                       const std::string& body = "",
                       const Headers& headers = {},
                       std::chrono::milliseconds timeout = 20s);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// One HTTPS request on a fresh connection that trusts `trusted_pem`.
HttpResponse Https(std::uint16_t port, const std::string& trusted_pem,
                   const std::string& method, const std::string& target,
                   const std::string& body = "", const Headers& headers = {});

// A WSS client that trusts exactly `trusted_pem`: connects, performs the TLS
// handshake (host 127.0.0.1), then the upgrade for `target`.
// Thread-compatible.
class WssClient {
 public:
  WssClient(std::uint16_t port, const std::string& trusted_pem,
            const std::string& target, const Headers& headers = {});
  ~WssClient();

  // 101 when upgraded; else the HTTP status of the refusal (0: no answer).
  int handshake_status() const;
  const std::string& error() const;
  int close_code() const;  // -1 until the server closed
  bool timed_out() const;

  // The next text frame; nullopt once the server closed (close_code()), on
  // an error, or after `timeout` (timed_out()).
  std::optional<std::string> Read(std::chrono::milliseconds timeout = 20s);
  // Frames until the server closes (or `timeout` passes).
  std::vector<nlohmann::json> ReadAll(std::chrono::milliseconds timeout = 30s);
  void Send(const std::string& text);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// A plain TCP connection to 127.0.0.1:port that sends nothing and holds the
// connection open until destroyed. Throws if it cannot connect.
class SilentConnection {
 public:
  explicit SilentConnection(std::uint16_t port);
  ~SilentConnection();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace sluice::itest

#endif  // SLUICE_TESTS_SUPPORT_TLS_CLIENT_HPP_
