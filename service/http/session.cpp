// StartHttpSession (session.hpp): picks the session for the port's
// transport. The session itself is in session_impl.hpp.
#include "service/http/session.hpp"

#include "service/http/session_impl.hpp"

namespace sluice::http {

void StartHttpSession(boost::asio::ip::tcp::socket socket, SessionContext& ctx,
                      ConnectionSlot slot) {
  if (ctx.tls != nullptr) {
    detail::StartTlsHttpSession(std::move(socket), ctx, std::move(slot));
  } else {
    detail::StartPlainHttpSession(std::move(socket), ctx, std::move(slot));
  }
}

}  // namespace sluice::http
