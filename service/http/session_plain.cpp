// The HTTP session over PlainStream (see session_impl.hpp).
#include "service/http/session_impl.hpp"

namespace sluice::http::detail {

void StartPlainHttpSession(tcp::socket socket, SessionContext& ctx,
                           ConnectionSlot slot) {
  std::make_shared<HttpSession<PlainStream>>(std::move(socket), ctx,
                                             std::move(slot))
      ->Run();
}

}  // namespace sluice::http::detail
