#include "service/cluster/nats.hpp"

namespace sluice::cluster {

std::string NatsError(std::string_view what, natsStatus status,
                      jsErrCode code) {
  std::string out(what);
  out += ": ";
  out += natsStatus_GetText(status);
  const char* last = nats_GetLastError(nullptr);
  if (last != nullptr && *last != '\0') {
    out += " (";
    out += last;
    out += ")";
  }
  if (static_cast<int>(code) != 0) {
    out += " [JetStream error " + std::to_string(static_cast<int>(code)) + "]";
  }
  return out;
}

}  // namespace sluice::cluster
