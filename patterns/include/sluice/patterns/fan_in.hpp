// FanIn<T>, fan_in() and fan_in_ordered(): merge several channels into one
// (Go's fan-in / multiplexer: one goroutine per input forwarding into a shared
// output that closes when every input has closed). The ordered variant puts
// values tagged with sequence numbers back into order through a bounded
// reorder window.
//
// The forwarders are threads, or, given a Runtime, tasks on it
// (fan_in(rt, ...), fan_in_ordered(rt, ...)): a forwarder waiting on its input
// or for window room holds no thread.
//
// Thread-safety: output() and stop() may be called from any thread; moving
// and destruction only by the owner (with task forwarders: from a thread that
// is not one of the runtime's).
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
#include "sluice/patterns/detail/async_batch.hpp"
#include "sluice/patterns/detail/reorder_window.hpp"
#include "sluice/patterns/detail/task_group.hpp"
#include "sluice/patterns/detail/thread_annotations.hpp"
#include "sluice/patterns/detail/thread_group.hpp"
#include "sluice/patterns/mutex.hpp"
#include "sluice/patterns/runtime.hpp"

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
  void stop() {
    state_->threads.request_stop();
    if (state_->tasks) state_->tasks->request_stop();
  }

 private:
  template <class U>
  friend FanIn<U> fan_in(std::vector<Channel<U>*> inputs, std::size_t capacity);
  template <class U>
  friend FanIn<U> fan_in(Runtime& rt, std::vector<Channel<U>*> inputs,
                         std::size_t capacity);
  template <class U>
  friend FanIn<U> fan_in_ordered(std::vector<Channel<Sequenced<U>>*> inputs,
                                 std::size_t capacity, std::size_t window);
  template <class U>
  friend FanIn<U> fan_in_ordered(Runtime& rt,
                                 std::vector<Channel<Sequenced<U>>*> inputs,
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

  // Reorder state of fan_in_ordered's task form: Ordering's fields, guarded
  // by a lock a task may hold while it suspends (emitting to the output),
  // with one wake-up per forwarder in place of the condition variable.
  struct TaskOrdering {
    explicit TaskOrdering(std::size_t window, std::size_t inputs)
        : reorder(window),
          active(inputs),
          wakes(std::make_unique<detail::TaskWake[]>(inputs)) {}
    detail::TaskLock lock;  // guards the fields below
    detail::ReorderWindow<T> reorder;
    std::size_t active;  // forwarders still running
    std::vector<std::uint64_t> pending;
    std::vector<T> ready;
    std::vector<detail::TaskWake*> waiting;     // forwarders waiting for room
    std::unique_ptr<detail::TaskWake[]> wakes;  // the i-th forwarder's
  };

  struct State {
    // With no inputs the output closes at once.
    State(std::size_t capacity, std::size_t inputs)
        : out(capacity), done(inputs) {
      if (inputs == 0) out.close();
    }
    Channel<T> out;
    detail::DoneLatch done;
    std::unique_ptr<Ordering> ordering;           // fan_in_ordered only
    std::unique_ptr<TaskOrdering> task_ordering;  // its task form only
    // Last: the forwarders end before the rest is destroyed.
    std::unique_ptr<detail::TaskGroup> tasks;  // task forwarders, if any
    detail::ThreadGroup threads;
  };

  explicit FanIn(std::unique_ptr<State> state) : state_(std::move(state)) {}

  // The state of a fan_in_ordered: with an Ordering for forwarding threads
  // (rt null), or a TaskOrdering and a TaskGroup on *rt for tasks.
  static std::unique_ptr<State> NewOrdered(std::size_t capacity,
                                           std::size_t inputs,
                                           std::size_t window, Runtime* rt) {
    if (window == 0)
      throw std::invalid_argument("fan_in_ordered: window must be >= 1");
    auto state = std::make_unique<State>(capacity, inputs);
    if (rt == nullptr) {
      state->ordering = std::make_unique<Ordering>(window, inputs);
    } else {
      state->task_ordering = std::make_unique<TaskOrdering>(window, inputs);
      state->tasks = std::make_unique<detail::TaskGroup>(*rt);
    }
    return state;
  }

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

  // ---- fan_in_ordered's task form: the functions above, for tasks. The
  // TaskOrdering lock is held on entry to and exit from each but
  // ForwardOrdered.

  static bool StuckAsync(TaskOrdering& o, std::uint64_t& lowest) {
    if (o.pending.size() != o.active) return false;
    lowest = *std::min_element(o.pending.begin(), o.pending.end());
    return !o.reorder.fits(lowest);
  }

  // Lets every forwarder waiting for room look again.
  static void NotifyRoom(TaskOrdering& o) {
    for (detail::TaskWake* w : o.waiting) w->notify();
    o.waiting.clear();
  }

  static Task<bool> EmitReadyAsync(State& s, TaskOrdering& o,
                                   std::stop_token st) {
    o.reorder.take_ready(o.ready);
    const bool complete = co_await detail::async_send_all(s.out, o.ready, st);
    NotifyRoom(o);
    co_return complete;
  }

  // Suspends, letting go of the lock meanwhile, until `seq` fits the window,
  // skipping missing seqs when the merge is stuck. False if stopped or the
  // output refused values.
  static Task<bool> WaitForRoomAsync(State& s, TaskOrdering& o,
                                     std::uint64_t seq, detail::TaskWake& wake,
                                     std::stop_token st) {
    o.pending.push_back(seq);
    bool ok = true;
    std::uint64_t lowest = 0;
    while (ok && !o.reorder.fits(seq)) {
      if (StuckAsync(o, lowest)) {
        o.reorder.skip_to(lowest);
        ok = co_await EmitReadyAsync(s, o, st);
        continue;
      }
      o.waiting.push_back(&wake);
      o.lock.unlock();
      ok = co_await wake.wait(st);
      // No stop token: a holder always lets go (it waits only with one).
      co_await o.lock.lock();
    }
    std::erase(o.waiting, &wake);
    o.pending.erase(std::find(o.pending.begin(), o.pending.end(), seq));
    co_return ok;
  }

  // One input's forwarder; the last to end flushes what is held, skipping
  // gaps, and closes the output.
  static Task<> ForwardOrdered(State& s, Channel<Sequenced<T>>& in,
                               detail::TaskWake& wake, std::stop_token st) {
    TaskOrdering& o = *s.task_ordering;
    for (bool ok = true; ok;) {
      std::optional<Sequenced<T>> item = co_await in.async_recv(st);
      if (!item) break;
      ok = co_await o.lock.lock(st);
      if (!ok) break;
      if (!o.reorder.fits(item->seq)) {
        ok = co_await WaitForRoomAsync(s, o, item->seq, wake, st);
      }
      if (ok) {
        o.reorder.put(item->seq, std::move(item->value));
        ok = co_await EmitReadyAsync(s, o, st);
      }
      o.lock.unlock();
    }
    co_await o.lock.lock();
    const bool last = --o.active == 0;
    if (last) {
      while (o.reorder.skip_to(UINT64_MAX)) {
        const bool emitted = co_await EmitReadyAsync(s, o, st);
        if (!emitted) break;
      }
    } else {
      NotifyRoom(o);  // the others may be stuck now
    }
    o.lock.unlock();
    if (last) s.out.close();
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

// The task form: one forwarding task per input on `rt` instead of a thread,
// with the same results and rules (order within one input kept, the output
// closes when every input has closed and drained, stop() or destruction ends
// the forwarders and closes the output).
// Requires: every input outlives the FanIn; `rt` outlives it too, and it is
// destroyed from a thread that is not one of the runtime's.
template <class T>
FanIn<T> fan_in(Runtime& rt, std::vector<Channel<T>*> inputs,
                std::size_t capacity = 0) {
  using State = typename FanIn<T>::State;
  auto state = std::make_unique<State>(capacity, inputs.size());
  state->tasks = std::make_unique<detail::TaskGroup>(rt);
  State* s = state.get();
  for (Channel<T>* in : inputs) {
    s->tasks->spawn([s, in](std::stop_token st) -> Task<> {
      std::vector<T> batch;
      for (;;) {
        const std::size_t n =
            co_await detail::async_recv_many(*in, batch, 64, st);
        if (n == 0) break;
        const bool complete =
            co_await detail::async_send_all(s->out, batch, st);
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
  using Ordering = typename FanIn<T>::Ordering;
  auto state = FanIn<T>::NewOrdered(capacity, inputs.size(), window, nullptr);
  typename FanIn<T>::State* s = state.get();
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

// The task form: one forwarding task per input on `rt` instead of a thread,
// with the same results and rules (seq order, the window's bound and
// back-pressure, gaps skipped once the merge cannot go on without them); a
// forwarder waiting for room suspends.
// Requires: as above; `rt` outlives the FanIn, which is destroyed from a
// thread that is not one of the runtime's.
template <class T>
FanIn<T> fan_in_ordered(Runtime& rt, std::vector<Channel<Sequenced<T>>*> inputs,
                        std::size_t capacity, std::size_t window) {
  auto state = FanIn<T>::NewOrdered(capacity, inputs.size(), window, &rt);
  typename FanIn<T>::State* s = state.get();
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    detail::TaskWake* wake = &s->task_ordering->wakes[i];
    Channel<Sequenced<T>>* in = inputs[i];
    s->tasks->spawn([s, in, wake](std::stop_token st) -> Task<> {
      co_await FanIn<T>::ForwardOrdered(*s, *in, *wake, st);
    });
  }
  return FanIn<T>(std::move(state));
}

}  // namespace sluice

#endif  // SLUICE_PATTERNS_FAN_IN_HPP_
