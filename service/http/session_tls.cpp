// The HTTP session over TlsStream (see session_impl.hpp).
#include "service/http/session_impl.hpp"

namespace sluice::http::detail {

void StartTlsHttpSession(tcp::socket socket, SessionContext& ctx,
                         ConnectionSlot slot) {
  std::make_shared<HttpSession<TlsStream>>(std::move(socket), ctx,
                                           std::move(slot))
      ->Run();
}

}  // namespace sluice::http::detail
