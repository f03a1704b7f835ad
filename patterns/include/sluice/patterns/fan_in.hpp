// FanIn<T>, fan_in() and fan_in_ordered(): merge several channels into one
// (Go's fan-in / multiplexer: one goroutine per input forwarding into a shared
// output that closes when every input has closed). The ordered variant puts
// values tagged with sequence numbers back into order through a bounded
// reorder window.
//
// Thread-safety: output() and stop() may be called from any thread; moving
// and destruction only by the owner.
#ifndef SLUICE_PATTERNS_FAN_IN_HPP_
#define SLUICE_PATTERNS_FAN_IN_HPP_

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <stop_token>
#include <utility>
#include <vector>

#include "sluice/patterns/channel.hpp"
#include "sluice/patterns/detail/reorder_window.hpp"
#include "sluice/patterns/detail/thread_annotations.hpp"
#include "sluice/patterns/detail/thread_group.hpp"
#include "sluice/patterns/mutex.hpp"

namespace sluice {

// A value tagged with its position in a stream, for ordered fan-in.
template <class T>
struct Sequenced {
  std::uint64_t seq;
  T value;
};

template <class T>
class FanIn {
 public:
  FanIn(FanIn&&) noexcept = default;
  FanIn& operator=(FanIn&&) noexcept = default;
  FanIn(const FanIn&) = delete;
  FanIn& operator=(const FanIn&) = delete;

  // Requests stop and joins the forwarders.
  ~FanIn() = default;

  // The merged stream; closes when every input has closed and drained.
  Channel<T>& output() { return state_->out; }
  typename Channel<T>::Iterator begin() { return state_->out.begin(); }
  std::default_sentinel_t end() { return {}; }

  // Asks the forwarders to end now (values not yet forwarded stay in the
  // inputs); the output closes.
  void stop() { state_->threads.request_stop(); }

 private:
  template <class U>
  friend FanIn<U> fan_in(std::vector<Channel<U>*> inputs, std::size_t capacity);
  template <class U>
  friend FanIn<U> fan_in_ordered(std::vector<Channel<Sequenced<U>>*> inputs,
                                 std::size_t capacity, std::size_t window);

  // Reorder state of fan_in_ordered.
  struct Ordering {
    explicit Ordering(std::size_t window, std::size_t inputs)
        : reorder(window), active(inputs) {}
    Mutex mu;
    CondVarAny room;  // the window moved on
    detail::ReorderWindow<T> reorder SLUICE_GUARDED_BY(mu);
    std::size_t active SLUICE_GUARDED_BY(mu);  // forwarders still running
    // Seqs forwarders hold outside the window (at most one per input).
    std::vector<std::uint64_t> pending SLUICE_GUARDED_BY(mu);
    std::vector<T> ready SLUICE_GUARDED_BY(mu);
  };

  struct State {
    State(std::size_t capacity, std::size_t inputs)
        : out(capacity), done(inputs) {}
    Channel<T> out;
    detail::DoneLatch done;
    std::unique_ptr<Ordering> ordering;  // fan_in_ordered only
    detail::ThreadGroup threads;         // last: joined first
  };

  explicit FanIn(std::unique_ptr<State> state) : state_(std::move(state)) {}

  // True when every live forwarder holds a value outside the window: the
  // seqs the window waits for cannot arrive any more (seqs increase within
  // each input), so they must be skipped. Sets `lowest` to the smallest seq
  // held outside the window.
  static bool Stuck(Ordering& o, std::uint64_t& lowest) SLUICE_REQUIRES(o.mu) {
    if (o.pending.size() != o.active) return false;
    lowest = UINT64_MAX;
    for (std::uint64_t p : o.pending) lowest = p < lowest ? p : lowest;
    return !o.reorder.fits(lowest);
  }

  // Sends every value now in order to the output; emitting under o.mu keeps
  // batches in order. False if the output refused values.
  static bool EmitReady(State& s, Ordering& o, const std::stop_token& st)
      SLUICE_REQUIRES(o.mu) {
    o.reorder.take_ready(o.ready);
    const bool complete = s.out.send_many(o.ready, st) == o.ready.size();
    o.ready.clear();
    o.room.SignalAll();
    return complete;
  }

  // Blocks (under o.mu) until `seq` fits the reorder window, skipping
  // missing seqs when the merge is stuck. Returns false if stopped or the
  // output refused values.
  static bool WaitForRoom(State& s, Ordering& o, std::uint64_t seq,
                          const std::stop_token& st) SLUICE_REQUIRES(o.mu) {
    o.pending.push_back(seq);
    bool ok = true;
    std::uint64_t lowest = 0;
    while (ok && !o.reorder.fits(seq)) {
      if (Stuck(o, lowest)) {
        o.reorder.skip_to(lowest);
        ok = EmitReady(s, o, st);
        continue;
      }
      o.room.Wait(&o.mu, st, [&]() SLUICE_REQUIRES(o.mu) {
        return o.reorder.fits(seq) || Stuck(o, lowest);
      });
      if (st.stop_requested()) ok = false;
    }
    o.pending.erase(std::find(o.pending.begin(), o.pending.end(), seq));
    return ok;
  }

  std::unique_ptr<State> state_;
};

// Merges `inputs` into one channel of `capacity`, with one forwarding thread
// per input. Order within one input is kept; order across inputs is not.
// Requires: every input outlives the FanIn; its senders close it when done.
template <class T>
FanIn<T> fan_in(std::vector<Channel<T>*> inputs, std::size_t capacity = 0) {
  using State = typename FanIn<T>::State;
  auto state = std::make_unique<State>(capacity, inputs.size());
  State* s = state.get();
  if (inputs.empty()) s->out.close();
  for (Channel<T>* in : inputs) {
    s->threads.spawn([s, in](std::stop_token st) {
      std::vector<T> batch;
      // Forwarding in batches costs one hand-off per batch, not per value.
      while (in->recv_many(batch, 64, st) > 0) {
        const std::size_t sent = s->out.send_many(batch, st);
        const bool complete = sent == batch.size();
        batch.clear();
        if (!complete) break;
      }
      if (s->done.arrive()) s->out.close();
    });
  }
  return FanIn<T>(std::move(state));
}

// Merges channels of Sequenced values and emits the bare values in seq order
// 0, 1, 2, ... At most `window` values wait for reordering; a forwarder whose
// value is too far ahead blocks until the window moves (back-pressure).
// Requires: window >= 1; seqs are distinct and increase within each input.
// A seq that never arrives is skipped once no forwarder can make progress
// without it (every live forwarder is blocked on the window, or all inputs
// have closed).
template <class T>
FanIn<T> fan_in_ordered(std::vector<Channel<Sequenced<T>>*> inputs,
                        std::size_t capacity, std::size_t window) {
  if (window == 0)
    throw std::invalid_argument("fan_in_ordered: window must be >= 1");
  using State = typename FanIn<T>::State;
  using Ordering = typename FanIn<T>::Ordering;
  auto state = std::make_unique<State>(capacity, inputs.size());
  state->ordering = std::make_unique<Ordering>(window, inputs.size());
  State* s = state.get();
  if (inputs.empty()) s->out.close();
  for (Channel<Sequenced<T>>* in : inputs) {
    s->threads.spawn([s, in](std::stop_token st) {
      Ordering& o = *s->ordering;
      while (std::optional<Sequenced<T>> item = in->recv(st)) {
        MutexLock lock(&o.mu);
        if (!o.reorder.fits(item->seq) &&
            !FanIn<T>::WaitForRoom(*s, o, item->seq, st)) {
          break;
        }
        o.reorder.put(item->seq, std::move(item->value));
        if (!FanIn<T>::EmitReady(*s, o, st)) break;
      }
      bool last = false;
      {
        MutexLock lock(&o.mu);
        --o.active;
        last = o.active == 0;
        if (last) {
          // Every input has closed: flush what is held, skipping gaps.
          while (o.reorder.skip_to(UINT64_MAX)) {
            if (!FanIn<T>::EmitReady(*s, o, st)) break;
          }
        } else {
          o.room.SignalAll();  // the others may be stuck now
        }
      }
      if (last) s->out.close();
    });
  }
  return FanIn<T>(std::move(state));
}

}  // namespace sluice

#endif  // SLUICE_PATTERNS_FAN_IN_HPP_
