// sluice::http::MakeTlsContext: the server's TLS context from server.tls
// (contract §C2: with server.tls set, the one port serves HTTPS and WSS
// only).
#ifndef SLUICE_SERVICE_HTTP_TLS_HPP_
#define SLUICE_SERVICE_HTTP_TLS_HPP_

#include <boost/asio/ssl/context.hpp>
#include <memory>

#include "service/config/config.hpp"
#include "service/util/result.hpp"

namespace sluice::http {

// The TLS context of server.tls: TLS 1.2 or newer (TLS 1.2 with forward-
// secret AEAD suites only), no compression, no renegotiation, the server's
// cipher preference, the certificate chain and its private key. Reads both
// files (each at most 1 MiB) and wipes its copy of the key's text.
// Failure: Error{"tls", ...} whose message starts with the config key at
// fault (server.tls.cert or server.tls.key) and names the file: unreadable,
// no PEM certificate, no PEM private key, an encrypted key, or a key that
// does not match the certificate. Thread-safe (no shared state); the
// context returned may back any number of connections on any threads.
Result<std::unique_ptr<boost::asio::ssl::context>> MakeTlsContext(
    const config::TlsConfig& tls);

}  // namespace sluice::http

#endif  // SLUICE_SERVICE_HTTP_TLS_HPP_
