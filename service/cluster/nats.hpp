// RAII owners for nats.c objects (libnats 3.4, <nats/nats.h>) and the one
// place a natsStatus becomes a message. Everything in cluster/ that calls
// NATS holds its objects in these, so no early return leaks one.
#ifndef SLUICE_SERVICE_CLUSTER_NATS_HPP_
#define SLUICE_SERVICE_CLUSTER_NATS_HPP_

#include <nats/nats.h>

#include <memory>
#include <string>
#include <string_view>

namespace sluice::cluster {

// Destroys whichever nats.c object it is given. Stateless, thread-safe.
struct NatsDeleter {
  void operator()(natsOptions* p) const { natsOptions_Destroy(p); }
  void operator()(natsConnection* p) const { natsConnection_Destroy(p); }
  void operator()(jsCtx* p) const { jsCtx_Destroy(p); }
  void operator()(kvStore* p) const { kvStore_Destroy(p); }
  void operator()(kvEntry* p) const { kvEntry_Destroy(p); }
  void operator()(kvWatcher* p) const { kvWatcher_Destroy(p); }
  void operator()(natsMsg* p) const { natsMsg_Destroy(p); }
  void operator()(natsSubscription* p) const { natsSubscription_Destroy(p); }
  void operator()(jsStreamInfo* p) const { jsStreamInfo_Destroy(p); }
  void operator()(jsConsumerInfo* p) const { jsConsumerInfo_Destroy(p); }
  void operator()(jsMsgMetaData* p) const { jsMsgMetaData_Destroy(p); }
};

// An owned nats.c object; thread-compatible like unique_ptr.
template <class T>
using NatsPtr = std::unique_ptr<T, NatsDeleter>;

// "<what>: <status text> (<last error text>)" plus the JetStream error code
// when there is one, for logs and 503 bodies.
std::string NatsError(std::string_view what, natsStatus status,
                      jsErrCode code = static_cast<jsErrCode>(0));

}  // namespace sluice::cluster

#endif  // SLUICE_SERVICE_CLUSTER_NATS_HPP_
