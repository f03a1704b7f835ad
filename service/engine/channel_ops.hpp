// Engine-internal: the two channel operations every part of a running
// pipeline (generator, stage workers, aggregator) suspends on, each with a
// fast path that neither suspends nor allocates a wait when the channel is
// ready. Only inside a task on the engine's Runtime.
#ifndef SLUICE_SERVICE_ENGINE_CHANNEL_OPS_HPP_
#define SLUICE_SERVICE_ENGINE_CHANNEL_OPS_HPP_

#include <optional>
#include <stop_token>
#include <utility>
#include <vector>

#include "service/engine/envelope.hpp"
#include "sluice/patterns/channel.hpp"
#include "sluice/patterns/task.hpp"

namespace sluice::engine {

// co_await: sends every envelope of `out` in order, suspending while `ch`
// is full, and clears `out`. False when `ch` closed or `st` was stopped
// first (the rest are dropped).
inline Task<bool> SendAll(Channel<Envelope>& ch, std::vector<Envelope>& out,
                          std::stop_token st) {
  bool sent = true;
  for (Envelope& e : out) {
    if (ch.try_send(e)) continue;
    if (!co_await ch.async_send(std::move(e), st)) {
      sent = false;
      break;
    }
  }
  out.clear();
  co_return sent;
}

// co_await: the first value of `ch`, suspending only when none is ready;
// nullopt once `ch` is closed and drained, or `st` stopped.
inline Task<std::optional<Envelope>> RecvFirst(Channel<Envelope>& ch,
                                               std::stop_token st) {
  if (std::optional<Envelope> e = ch.try_recv()) co_return e;
  co_return co_await ch.async_recv(st);
}

}  // namespace sluice::engine

#endif  // SLUICE_SERVICE_ENGINE_CHANNEL_OPS_HPP_
