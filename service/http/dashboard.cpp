// Implementation of the dashboard's CSP (see dashboard.hpp); the page's
// bytes are in the generated dashboard_page.cpp.
#include "service/http/dashboard.hpp"

#include <openssl/evp.h>

#include <array>

namespace sluice::http {
namespace {

// "'sha256-<base64>'" of `text`, the form a CSP source list takes.
std::string Sha256Source(std::string_view text) {
  std::array<unsigned char, EVP_MAX_MD_SIZE> digest{};
  unsigned int size = 0;
  EVP_Digest(text.data(), text.size(), digest.data(), &size, EVP_sha256(),
             nullptr);
  // 32 bytes give 44 characters of base64, plus the NUL EVP writes.
  std::array<unsigned char, 4 * ((EVP_MAX_MD_SIZE + 2) / 3) + 1> b64{};
  const int n =
      EVP_EncodeBlock(b64.data(), digest.data(), static_cast<int>(size));
  return "'sha256-" +
         std::string(reinterpret_cast<const char*>(b64.data()),
                     static_cast<std::size_t>(n)) +
         "'";
}

// The hash sources of every element `<tag>...</tag>` in `page`,
// space-separated; "'none'" when there is none.
std::string HashesOf(std::string_view page, std::string_view tag) {
  const std::string open = "<" + std::string(tag) + ">";
  const std::string close = "</" + std::string(tag) + ">";
  std::string sources;
  std::size_t at = page.find(open);
  while (at != std::string_view::npos) {
    const std::size_t start = at + open.size();
    const std::size_t end = page.find(close, start);
    if (end == std::string_view::npos) break;
    if (!sources.empty()) sources += ' ';
    sources += Sha256Source(page.substr(start, end - start));
    at = page.find(open, end);
  }
  return sources.empty() ? "'none'" : sources;
}

}  // namespace

std::string ContentSecurityPolicyFor(std::string_view page) {
  return "default-src 'self'; script-src " + HashesOf(page, "script") +
         "; style-src " + HashesOf(page, "style") +
         "; connect-src 'self' ws: wss:; img-src 'self' data:; "
         "base-uri 'none'; form-action 'none'; frame-ancestors 'none'";
}

const std::string& DashboardCsp() {
  static const std::string csp = ContentSecurityPolicyFor(DashboardPage());
  return csp;
}

}  // namespace sluice::http
