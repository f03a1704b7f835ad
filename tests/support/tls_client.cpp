// The certificates, the temporary directory and the HTTPS client of
// tls_client.hpp, and the TLS connect and handshake that the WSS client
// (tls_wss_client.cpp) shares through tls_stream.hpp. OpenSSL makes the
// certificates: an EC P-256 (or RSA 2048) key and a self-signed X.509 v3
// certificate for CN=127.0.0.1 with subjectAltName IP:127.0.0.1.

// GCC's -Wnull-dereference misfires, when optimizing, inside Boost.Asio's
// executor code: a false positive in Asio's code. Placed before every
// include so that the header code it reports on is covered.
#pragma GCC diagnostic ignored "-Wnull-dereference"

#include "tests/support/tls_client.hpp"

#include <gtest/gtest.h>
#include <openssl/bio.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdlib.h>

#include <boost/beast/http.hpp>
#include <cctype>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <system_error>
#include <utility>

#include "tests/support/tls_stream.hpp"

namespace sluice::itest {
namespace {

namespace bhttp = beast::http;
using tcp = net::ip::tcp;

std::string BioText(BIO* bio) {
  char* data = nullptr;
  // BIO_get_mem_data without its macro's C-style cast.
  long n = BIO_ctrl(bio, BIO_CTRL_INFO, 0, static_cast<void*>(&data));
  return std::string(data, static_cast<std::size_t>(n));
}

// A new key: EC P-256, or RSA 2048 when `rsa` (the EVP_*_gen macros carry
// C-style casts, hence the long way). nullptr on failure.
EVP_PKEY* NewKey(bool rsa) {
  EVP_PKEY_CTX* ctx =
      EVP_PKEY_CTX_new_from_name(nullptr, rsa ? "RSA" : "EC", nullptr);
  if (ctx == nullptr) return nullptr;
  EVP_PKEY* key = nullptr;
  const bool ok = EVP_PKEY_keygen_init(ctx) == 1 &&
                  (rsa ? EVP_PKEY_CTX_set_rsa_keygen_bits(ctx, 2048) == 1
                       : EVP_PKEY_CTX_set_group_name(ctx, "P-256") == 1) &&
                  EVP_PKEY_generate(ctx, &key) == 1;
  EVP_PKEY_CTX_free(ctx);
  if (!ok) {
    EVP_PKEY_free(key);
    return nullptr;
  }
  return key;
}

void AddExtension(X509* cert, int nid, const char* value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, cert, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value);
  ASSERT_NE(ext, nullptr) << "extension " << nid;
  X509_add_ext(cert, ext, -1);
  X509_EXTENSION_free(ext);
}

}  // namespace

// ---- certificates ----------------------------------------------------------

CertPair MakeSelfSigned(bool rsa) {
  CertPair out;
  EVP_PKEY* key = NewKey(rsa);
  EXPECT_NE(key, nullptr);
  if (key == nullptr) return out;
  X509* cert = X509_new();
  X509_set_version(cert, 2);  // X.509 v3: extensions follow
  std::uint32_t serial = 0;
  RAND_bytes(reinterpret_cast<unsigned char*>(&serial), sizeof serial);
  ASN1_INTEGER_set(X509_get_serialNumber(cert), (serial >> 1) | 1);
  X509_gmtime_adj(X509_getm_notBefore(cert), -60);
  X509_gmtime_adj(X509_getm_notAfter(cert), 24L * 3600);
  X509_set_pubkey(cert, key);
  X509_NAME* name = X509_get_subject_name(cert);
  X509_NAME_add_entry_by_txt(
      name, "CN", MBSTRING_ASC,
      reinterpret_cast<const unsigned char*>("127.0.0.1"), -1, -1, 0);
  X509_set_issuer_name(cert, name);  // self-signed: its own issuer
  AddExtension(cert, NID_basic_constraints, "critical,CA:TRUE");
  AddExtension(cert, NID_subject_key_identifier, "hash");
  AddExtension(cert, NID_subject_alt_name, "IP:127.0.0.1");
  EXPECT_GT(X509_sign(cert, key, EVP_sha256()), 0);

  BIO* cert_bio = BIO_new(BIO_s_mem());
  BIO* key_bio = BIO_new(BIO_s_mem());
  EXPECT_EQ(PEM_write_bio_X509(cert_bio, cert), 1);
  EXPECT_EQ(PEM_write_bio_PrivateKey(key_bio, key, nullptr, nullptr, 0, nullptr,
                                     nullptr),
            1);
  out.cert = BioText(cert_bio);
  out.key = BioText(key_bio);
  BIO_free(cert_bio);
  BIO_free(key_bio);
  X509_free(cert);
  EVP_PKEY_free(key);
  return out;
}

std::string EncryptKey(const std::string& key_pem,
                       const std::string& passphrase) {
  BIO* in = BIO_new_mem_buf(key_pem.data(), static_cast<int>(key_pem.size()));
  EVP_PKEY* key = PEM_read_bio_PrivateKey(in, nullptr, nullptr, nullptr);
  BIO_free(in);
  EXPECT_NE(key, nullptr);
  if (key == nullptr) return {};
  BIO* out = BIO_new(BIO_s_mem());
  EXPECT_EQ(PEM_write_bio_PKCS8PrivateKey(
                out, key, EVP_aes_256_cbc(), passphrase.data(),
                static_cast<int>(passphrase.size()), nullptr, nullptr),
            1);
  std::string text = BioText(out);
  BIO_free(out);
  EVP_PKEY_free(key);
  return text;
}

// ---- a temporary directory -------------------------------------------------

TempDir::TempDir() {
  char path[] = "/tmp/sluice_tls_XXXXXX";
  if (::mkdtemp(path) != nullptr) path_ = path;
}

TempDir::~TempDir() {
  std::error_code ec;
  if (!path_.empty()) std::filesystem::remove_all(path_, ec);
}

std::string TempDir::Write(const std::string& name,
                           const std::string& text) const {
  std::string path = path_ + "/" + name;
  std::ofstream(path, std::ios::binary | std::ios::trunc) << text;
  std::filesystem::permissions(path, std::filesystem::perms::owner_read |
                                         std::filesystem::perms::owner_write);
  return path;
}

std::string TlsConfig(const std::string& cert, const std::string& key,
                      const std::string& extra) {
  std::string yaml = kTestConfig;
  const std::string anchor = "server:\n";
  yaml.insert(
      yaml.find(anchor) + anchor.size(),
      "  tls: { cert: \"" + cert + "\", key: \"" + key + "\" }\n" + extra);
  return yaml;
}

// ---- the TLS connection ----------------------------------------------------

std::unique_ptr<ssl::context> ClientContext(const std::string& trusted_pem) {
  auto ctx = std::make_unique<ssl::context>(ssl::context::tls_client);
  ctx->set_verify_mode(ssl::verify_peer);
  if (!trusted_pem.empty()) {
    ctx->add_certificate_authority(net::buffer(trusted_pem));
  }
  return ctx;
}

std::string ConnectTls(net::io_context& ioc, TlsStream& stream,
                       std::uint16_t port, const std::string& host,
                       std::chrono::milliseconds timeout) {
  stream.set_verify_callback(ssl::host_name_verification(host));
  beast::error_code result;
  auto& lowest = beast::get_lowest_layer(stream);
  RunBounded(ioc, lowest, timeout, [&] {
    lowest.async_connect(
        tcp::endpoint(net::ip::make_address("127.0.0.1"), port),
        [&](beast::error_code ec) {
          if (ec) {
            result = ec;
            return;
          }
          stream.async_handshake(
              ssl::stream_base::client,
              [&](beast::error_code handshake_ec) { result = handshake_ec; });
        });
  });
  return result ? result.message() : std::string();
}

// ---- HTTPS -----------------------------------------------------------------

struct HttpsClient::Impl {
  Impl(std::uint16_t port, const std::string& trusted_pem,
       const std::string& host)
      : ctx(ClientContext(trusted_pem)), stream(ioc, *ctx) {
    error = ConnectTls(ioc, stream, port, host, 10s);
  }

  net::io_context ioc;
  std::unique_ptr<ssl::context> ctx;
  TlsStream stream;
  beast::flat_buffer buffer;
  std::string error;
};

HttpsClient::HttpsClient(std::uint16_t port, const std::string& trusted_pem,
                         const std::string& host)
    : impl_(std::make_unique<Impl>(port, trusted_pem, host)) {}

HttpsClient::~HttpsClient() = default;

const std::string& HttpsClient::error() const { return impl_->error; }

HttpResponse HttpsClient::Request(const std::string& method,
                                  const std::string& target,
                                  const std::string& body,
                                  const Headers& headers,
                                  std::chrono::milliseconds timeout) {
  HttpResponse out;
  if (!impl_->error.empty()) {
    out.error = "not connected: " + impl_->error;
    return out;
  }
  bhttp::request<bhttp::string_body> req;
  req.method_string(method);
  req.target(target);
  req.version(11);
  req.set(bhttp::field::host, "127.0.0.1");
  for (const auto& [k, v] : headers) req.set(k, v);
  req.body() = body;
  if (!body.empty() || method == "POST") req.prepare_payload();
  bhttp::response_parser<bhttp::string_body> parser;
  parser.body_limit(std::uint64_t{1} << 30);
  beast::error_code result;
  TlsStream& stream = impl_->stream;
  RunBounded(impl_->ioc, beast::get_lowest_layer(stream), timeout, [&] {
    bhttp::async_write(stream, req, [&](beast::error_code ec, std::size_t) {
      // A server refusing the body may answer before reading it all:
      // read the response whatever the write says.
      bhttp::async_read(stream, impl_->buffer, parser,
                        [&, ec](beast::error_code read_ec, std::size_t) {
                          result = read_ec ? read_ec : ec;
                        });
    });
  });
  if (!parser.is_header_done()) {
    out.error = result ? result.message() : "no response";
    return out;
  }
  auto res = parser.release();
  out.status = static_cast<int>(res.result_int());
  for (const auto& field : res) {
    std::string name(field.name_string());
    for (char& c : name) {
      c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    }
    out.headers[name] = std::string(field.value());
  }
  out.body = std::move(res.body());
  return out;
}

HttpResponse Https(std::uint16_t port, const std::string& trusted_pem,
                   const std::string& method, const std::string& target,
                   const std::string& body, const Headers& headers) {
  HttpsClient client(port, trusted_pem);
  return client.Request(method, target, body, headers);
}

// ---- a silent plain connection ---------------------------------------------

struct SilentConnection::Impl {
  net::io_context ioc;
  tcp::socket socket{ioc};
};

SilentConnection::SilentConnection(std::uint16_t port)
    : impl_(std::make_unique<Impl>()) {
  impl_->socket.connect({net::ip::make_address("127.0.0.1"), port});
}

SilentConnection::~SilentConnection() = default;

}  // namespace sluice::itest
