// Implementation of sluice::http::MakeTlsContext (see tls.hpp): the
// OpenSSL side of server.tls.
#include "service/http/tls.hpp"

#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>

#include <boost/asio/buffer.hpp>
#include <cerrno>
#include <cstdio>
#include <string>
#include <system_error>

namespace sluice::http {
namespace {

// TLS 1.2 cipher suites: forward-secret AEAD only (Mozilla's "intermediate"
// list without DHE, for which we load no parameters). TLS 1.3 keeps
// OpenSSL's default suites, which are all of that kind.
constexpr const char* kTls12Ciphers =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";

// The whole of a (small) PEM file, or why it cannot be read.
Result<std::string> ReadPemFile(const std::string& path,
                                std::string_view key_path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) {
    return Error{"tls", std::string(key_path) + ": cannot read \"" + path +
                            "\": " + std::generic_category().message(errno)};
  }
  std::string text;
  char chunk[4096];
  std::size_t n = 0;
  while ((n = std::fread(chunk, 1, sizeof chunk, f)) > 0) {
    text.append(chunk, n);
    // A certificate chain or key is a few KiB; refuse to slurp, say, a
    // device file named by mistake.
    if (text.size() > (std::size_t{1} << 20)) break;
  }
  // errno as fread left it: a directory, say, opens but reads EISDIR.
  const int read_errno = std::ferror(f) != 0 ? errno : 0;
  std::fclose(f);
  if (read_errno != 0 || text.size() > (std::size_t{1} << 20)) {
    OPENSSL_cleanse(text.data(), text.size());
    return Error{
        "tls",
        std::string(key_path) + ": cannot read \"" + path + "\": " +
            (read_errno != 0 ? std::generic_category().message(read_errno)
                             : "larger than 1 MiB")};
  }
  return text;
}

// Whether `pem` holds a private key OpenSSL can parse without a passphrase
// (to tell "not a key" from "a key of another certificate").
bool ParsesAsPrivateKey(const std::string& pem) {
  BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  if (bio == nullptr) return false;
  // No passphrase prompt: an encrypted key simply does not parse.
  EVP_PKEY* key = PEM_read_bio_PrivateKey(
      bio, nullptr, [](char*, int, int, void*) { return 0; }, nullptr);
  BIO_free(bio);
  ERR_clear_error();
  if (key == nullptr) return false;
  EVP_PKEY_free(key);
  return true;
}

}  // namespace

Result<std::unique_ptr<boost::asio::ssl::context>> MakeTlsContext(
    const config::TlsConfig& tls) {
  namespace net = boost::asio;
  namespace ssl = net::ssl;
  auto ctx = std::make_unique<ssl::context>(ssl::context::tls_server);
  boost::system::error_code ec;
  ctx->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                       ssl::context::no_sslv3 | ssl::context::no_tlsv1 |
                       ssl::context::no_tlsv1_1 | ssl::context::no_compression |
                       ssl::context::single_dh_use,
                   ec);
  SSL_CTX* native = ctx->native_handle();
  if (ec || SSL_CTX_set_min_proto_version(native, TLS1_2_VERSION) != 1 ||
      SSL_CTX_set_cipher_list(native, kTls12Ciphers) != 1) {
    ERR_clear_error();
    return Error{"tls", "server.tls: cannot set up TLS (OpenSSL)"};
  }
  SSL_CTX_set_options(
      native, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
  // OpenSSL's default for an encrypted key is to prompt on the terminal;
  // a server must fail instead.
  ctx->set_password_callback(
      [](std::size_t, ssl::context::password_purpose) { return std::string(); },
      ec);

  auto cert = ReadPemFile(tls.cert, "server.tls.cert");
  if (!cert.ok()) return cert.error();
  ctx->use_certificate_chain(net::buffer(*cert), ec);
  if (ec) {
    return Error{"tls",
                 "server.tls.cert: \"" + tls.cert +
                     "\" holds no valid PEM certificate: " + ec.message()};
  }

  auto key = ReadPemFile(tls.key, "server.tls.key");
  if (!key.ok()) return key.error();
  ctx->use_private_key(net::buffer(*key), ssl::context::pem, ec);
  const std::string mismatch =
      "server.tls.key: the private key in \"" + tls.key +
      "\" does not match the certificate in server.tls.cert (\"" + tls.cert +
      "\")";
  std::string error;
  if (ec) {
    // PKCS#8 ("BEGIN ENCRYPTED PRIVATE KEY") or traditional
    // ("Proc-Type: 4,ENCRYPTED") encryption.
    if (key->find("ENCRYPTED PRIVATE KEY-----") != std::string::npos ||
        key->find("Proc-Type: 4,ENCRYPTED") != std::string::npos) {
      error = "server.tls.key: \"" + tls.key +
              "\" is encrypted; sluice needs an unencrypted key (protect it "
              "with file permissions)";
    } else if (ParsesAsPrivateKey(*key)) {
      error = mismatch;
    } else {
      error = "server.tls.key: \"" + tls.key +
              "\" holds no valid PEM private key: " + ec.message();
    }
  } else if (SSL_CTX_check_private_key(native) != 1) {
    // A key of another type than the certificate's is accepted above and
    // only found out here.
    error = mismatch;
  }
  // Wipe our copy of the key's text (OpenSSL keeps the parsed key).
  OPENSSL_cleanse(key->data(), key->size());
  ERR_clear_error();
  if (!error.empty()) return Error{"tls", error};
  return ctx;
}

}  // namespace sluice::http
