// StartWebSocketSession over http::PlainStream (see session_impl.hpp).
#include "service/ws/session.hpp"
#include "service/ws/session_impl.hpp"

namespace sluice::ws {

void StartWebSocketSession(http::PlainStream stream, http::Request request,
                           http::Upgrade upgrade, http::SessionContext& ctx,
                           http::ConnectionSlot slot,
                           std::chrono::steady_clock::time_point received) {
  detail::Start(std::move(stream), std::move(request), std::move(upgrade), ctx,
                std::move(slot), received);
}

}  // namespace sluice::ws
