// Channel<T>: a bounded multi-producer multi-consumer FIFO with Go's channel
// semantics (close, rendezvous on capacity 0, range-for) and std::stop_token
// cancellation of every blocking call.
//
// Thread-safety: every member function may be called concurrently from any
// number of threads, except the destructor, which requires that no thread is
// still inside a call on this channel.
//
// State table (capacity > 0). "blocks" ends with the outcome of the state
// the channel moves to, or with false / nullopt when the stop token fires or
// a timed call times out:
//
// clang-format off
//   state             | send / try_send         | recv / try_recv  | close
//   ------------------+-------------------------+------------------+---------------------------
//   open, empty       | buffers                 | blocks / nullopt | -> closed-and-empty, true
//   open, has room    | buffers                 | oldest value     | -> closed-with-items, true
//   open, full        | blocks / false          | oldest value     | -> closed-with-items, true
//   closed-with-items | false at once (dropped) | oldest value     | no-op, false
//   closed-and-empty  | false at once (dropped) | nullopt at once  | no-op, false
// clang-format on
//
// Capacity 0 (unbuffered, Go's make(chan T)) has no buffer: send blocks until a
// receiver has taken the value and recv until a sender hands one over.
// As in Go's hchan, the channel keeps a queue of every blocked sender and
// every blocked receiver (threads, tasks and selects alike) and a peer hands
// the value over directly: try_send succeeds when any receiver is waiting
// and try_recv when any sender is. Closing wakes every blocked sender with
// false (its value is not delivered) and every blocked receiver with nullopt.
//
// Threads and tasks: a thread calls send/recv and blocks; a task (see
// runtime.hpp) calls `co_await async_send(v)` / `co_await async_recv()` and
// suspends instead, so its thread runs other tasks. Both meet on the same
// channel with the same rules. Waking a task never runs it on the waker's
// thread unless that thread belongs to the task's runtime: it is scheduled.
//
// Who may close: the sending side, exactly as in Go: the goroutine (thread,
// object) that created the channel and feeds it closes it once it will send
// no more. Receivers never close. close() is idempotent and thread-safe, so
// several senders may race to close it, but only one call returns true.
//
// Happens-before: everything a thread did before a send() that delivered a
// value happens before the recv() that returns that value returns, and close()
// happens before any call that observes the channel closed.
//
// Cancellation: a blocking call whose stop token is (or becomes) stopped
// returns false / nullopt / 0 and has no effect: no value is consumed, and a
// send's value is not buffered.
#ifndef SLUICE_PATTERNS_CHANNEL_HPP_
#define SLUICE_PATTERNS_CHANNEL_HPP_

#include <atomic>
#include <chrono>
#include <coroutine>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <memory>
#include <new>
#include <optional>
#include <span>
#include <stop_token>
#include <type_traits>
#include <utility>
#include <vector>

#include "sluice/patterns/detail/backoff.hpp"
#include "sluice/patterns/detail/parker.hpp"
#include "sluice/patterns/detail/select_core.hpp"
#include "sluice/patterns/detail/thread_annotations.hpp"
#include "sluice/patterns/mutex.hpp"
#include "sluice/patterns/runtime.hpp"

namespace sluice {

namespace detail {
template <class T>
class SendOp;
template <class T>
class RecvOp;
template <class T>
class SendAwaiter;
template <class T>
class RecvAwaiter;
}  // namespace detail

template <class T>
class Channel {
  static_assert(std::is_move_constructible_v<T>,
                "Channel<T> requires a move-constructible T");
  static_assert(std::is_nothrow_destructible_v<T>);

  using Clock = std::chrono::steady_clock;
  using Deadline = std::optional<Clock::time_point>;

 public:
  // Creates an open channel that buffers up to `capacity` values; 0 makes an
  // unbuffered (rendezvous) channel.
  explicit Channel(std::size_t capacity)
      : capacity_(capacity),
        slots_(capacity == 0 ? 1 : capacity),
        pow2_mask_((slots_ & (slots_ - 1)) == 0 ? slots_ - 1 : 0),
        cells_(new Cell[slots_]) {
    for (std::size_t i = 0; i < slots_; ++i) {
      cells_[i].seq.store(free_tag(i), std::memory_order_relaxed);
    }
  }

  Channel(const Channel&) = delete;
  Channel& operator=(const Channel&) = delete;

  // Destroys any values still buffered. Requires: no thread is blocked in, or
  // about to call, any member of this channel.
  ~Channel() {
    const std::uint64_t tail =
        tail_.load(std::memory_order_acquire) & ~kClosedBit;
    for (std::uint64_t pos = head_.load(std::memory_order_acquire); pos != tail;
         ++pos) {
      cell(pos).value()->~T();
    }
  }

  // ---- send side ---------------------------------------------------------

  // Sends `value`, blocking while the channel is full (capacity > 0) or until
  // a receiver takes it (capacity 0). Returns true once delivered; false if
  // the channel is closed or `st` is stopped first (the value is dropped).
  bool send(T value, std::stop_token st = {}) {
    return send_until(value, std::nullopt, st);
  }

  // Never blocks for long. Returns true if `value` was moved into the channel
  // (on capacity 0: taken by a receiver that was already waiting). On false
  // the channel was full, had no waiting receiver, or was closed, and `value`
  // is left untouched.
  bool try_send(T& value) {
    if (rendezvous()) {
      detail::SendOp<T> op(this, &value);
      return try_op(op) && op.sent();
    }
    return push_and_wake(value) == Status::kOk;
  }

  // Like send, but gives up after `timeout` (returning false). Moves from
  // `value` only on success.
  template <class Rep, class Period>
  bool send_for(T& value, std::chrono::duration<Rep, Period> timeout,
                std::stop_token st = {}) {
    return send_until(value, deadline_after(timeout), st);
  }

  // Sends every element of `values` in order, blocking as needed. Returns the
  // number sent: values.size(), or fewer if the channel closed or `st` was
  // stopped. The sent prefix is moved from; the rest is left untouched.
  std::size_t send_many(std::span<T> values, std::stop_token st = {}) {
    std::size_t sent = 0;
    if (rendezvous()) {
      while (sent < values.size() &&
             send_until(values[sent], std::nullopt, st)) {
        ++sent;
      }
      return sent;
    }
    detail::Backoff backoff;
    while (sent < values.size() && !st.stop_requested()) {
      Status s = Status::kOk;
      const std::size_t n = push_many(values.subspan(sent), s);
      if (n > 0) {
        sent += n;
        n > 1 ? not_empty_.wake_all_if_waiting() : not_empty_.wake_one();
        backoff.reset();
      } else if (s == Status::kClosed) {
        break;
      } else if (!backoff.wait()) {
        // Still full: park until one more value fits, then batch again.
        if (!wait_send(values[sent], std::nullopt, st)) break;
        ++sent;
        backoff.reset();
      }
    }
    return sent;
  }

  // ---- receive side ------------------------------------------------------

  // Receives the oldest value, blocking while the channel is open and empty.
  // Returns nullopt once the channel is closed and drained, or when `st` is
  // stopped (nothing is consumed then).
  std::optional<T> recv(std::stop_token st = {}) {
    return recv_until(std::nullopt, st);
  }

  // Never blocks: the oldest value, or nullopt if none is ready (on capacity
  // 0: if no sender is waiting).
  std::optional<T> try_recv() {
    if (rendezvous()) {
      detail::RecvOp<T> op(this);
      try_op(op);
      return op.take();
    }
    std::optional<T> out;
    pop_and_wake(out);
    return out;
  }

  // Like recv, but gives up after `timeout` (returning nullopt).
  template <class Rep, class Period>
  std::optional<T> recv_for(std::chrono::duration<Rep, Period> timeout,
                            std::stop_token st = {}) {
    return recv_until(deadline_after(timeout), st);
  }

  // Blocks for the first value, then takes whatever else is ready without
  // blocking, up to `max` in all. Appends to `out` and returns the count; 0
  // means closed and drained, stopped, or max == 0.
  std::size_t recv_many(std::vector<T>& out, std::size_t max,
                        std::stop_token st = {}) {
    if (max == 0 || st.stop_requested()) return 0;
    if (const std::size_t n = try_recv_many(out, max); n > 0) return n;
    std::optional<T> first = recv(st);
    if (!first) return 0;
    out.push_back(std::move(*first));
    return 1 + try_recv_many(out, max - 1);
  }

  // Never blocks: appends up to `max` ready values to `out`, returns the
  // count.
  std::size_t try_recv_many(std::vector<T>& out, std::size_t max) {
    if (max == 0) return 0;
    if (rendezvous()) {
      std::optional<T> v = try_recv();
      if (!v) return 0;
      out.push_back(std::move(*v));
      return 1;
    }
    const std::size_t n = pop_many(out, max);
    if (n > 0) after_pop(n);
    return n;
  }

  // ---- state -------------------------------------------------------------

  // Closes the channel: no value is accepted after this; values already
  // buffered are still delivered (capacity > 0); every blocked call wakes.
  // Idempotent; returns true only for the call that closed it.
  bool close() SLUICE_EXCLUDES(rv_mu_) {
    if (rendezvous()) {
      // On an unbuffered channel the flag changes under the queue lock, so a
      // waiter either enqueued before it (and is woken here) or sees it.
      MutexLock lock(&rv_mu_);
      if (!mark_closed()) return false;
      wake_all_closed(rv_sendq_);
      wake_all_closed(rv_recvq_);
      return true;
    }
    if (!mark_closed()) return false;
    not_empty_.wake_all();
    not_full_.wake_all();
    return true;
  }

  // ---- tasks ---------------------------------------------------------------
  //
  // The awaitable forms, for use inside a task only (see runtime.hpp): they
  // suspend the task instead of blocking its thread, with the same results
  // and rules as send() and recv().

  // co_await async_send(v, st): as send(). A send that can complete at once
  // (room in the ring, or the channel closed) does so in await_ready,
  // without suspending or allocating; only a wait costs a coroutine frame.
  // The awaitable is meant to be awaited at once, as in the line above.
  detail::SendAwaiter<T> async_send(T value, std::stop_token st = {}) {
    return detail::SendAwaiter<T>(this, std::move(value), std::move(st));
  }

  // co_await async_recv(st): as recv(), with the same fast path.
  detail::RecvAwaiter<T> async_recv(std::stop_token st = {}) {
    return detail::RecvAwaiter<T>(this, std::move(st));
  }

  // True once close() has been called (values may still be buffered).
  [[nodiscard]] bool closed() const {
    return (tail_.load(std::memory_order_seq_cst) & kClosedBit) != 0;
  }

  // The number of values buffered at this instant (a snapshot; always 0 for
  // an unbuffered channel).
  [[nodiscard]] std::size_t size() const {
    if (rendezvous()) return 0;
    const std::uint64_t head = head_.load(std::memory_order_acquire);
    const std::uint64_t tail =
        tail_.load(std::memory_order_acquire) & ~kClosedBit;
    if (tail <= head) return 0;
    const std::uint64_t n = tail - head;
    return n > capacity_ ? capacity_ : static_cast<std::size_t>(n);
  }

  [[nodiscard]] std::size_t capacity() const { return capacity_; }

  // ---- range-for ---------------------------------------------------------

  // An input iterator that receives (blocking) on each increment; it equals
  // end() once the channel is closed and drained. Dereferencing yields an
  // rvalue so that `for (T v : ch)` works for move-only T.
  class Iterator {
   public:
    using iterator_category = std::input_iterator_tag;
    using value_type = T;
    using difference_type = std::ptrdiff_t;
    using reference = T&&;

    Iterator() = default;
    explicit Iterator(Channel* channel) : channel_(channel) { ++*this; }

    T&& operator*() const { return std::move(*current_); }
    Iterator& operator++() {
      current_ = channel_->recv();
      return *this;
    }
    void operator++(int) { ++*this; }
    bool operator==(std::default_sentinel_t /*unused*/) const {
      return !current_.has_value();
    }

   private:
    Channel* channel_ = nullptr;
    mutable std::optional<T> current_;
  };

  Iterator begin() { return Iterator(this); }
  std::default_sentinel_t end() { return {}; }

 private:
  enum class Status { kOk, kEmpty, kFull, kClosed };

  // The closed flag lives in the top bit of tail_, so a sender's claim of a
  // slot (a CAS on tail_) fails once the channel is closed: nothing is
  // buffered after close(), and closed-and-drained is exactly
  // "closed && head == tail".
  static constexpr std::uint64_t kClosedBit = std::uint64_t{1} << 63;
  static constexpr std::size_t kCacheLine = 64;

  // One slot of the ring (Vyukov's bounded MPMC queue). `seq` says whose turn
  // it is: free_tag(pos) means free for the sender at position pos;
  // full_tag(pos) means it holds the value sent at pos; a receiver frees it
  // for the next lap by storing free_tag(pos + slots). Tags are doubled
  // positions so that "full at pos" and "free at pos + 1" never coincide,
  // which keeps a one-slot ring exact.
  struct Cell {
    std::atomic<std::uint64_t> seq{0};
    alignas(T) std::byte storage[sizeof(T)];

    T* value() { return std::launder(reinterpret_cast<T*>(storage)); }
  };

  template <class U>
  friend class detail::SendOp;
  template <class U>
  friend class detail::RecvOp;
  template <class U>
  friend class detail::SendAwaiter;
  template <class U>
  friend class detail::RecvAwaiter;

  // The threads, tasks and selects waiting for a buffered channel to change
  // (receivers for a value, senders for room). A waker checks the list's
  // size (seq_cst, after its own seq_cst publish), so a wake costs nothing
  // while nobody waits; a waiter enqueues itself (seq_cst) under `mu`
  // before polling the ring one last time, so no wake-up is lost.
  struct alignas(kCacheLine) WaitSet {
    Mutex mu;
    detail::WaitList list SLUICE_GUARDED_BY(mu);

    // The list's size, read without the lock on purpose (its counter is
    // atomic; see above): exempt from the analysis.
    [[nodiscard]] std::uint32_t waiting() const
        SLUICE_NO_THREAD_SAFETY_ANALYSIS {
      return list.size_hint();
    }
    void wake_one() SLUICE_EXCLUDES(mu) {
      if (waiting() == 0) return;
      detail::WaitNode* n = nullptr;
      {
        MutexLock lock(&mu);
        n = list.claim_first();
      }
      if (n != nullptr) n->parker->wake();
    }
    void wake_all() SLUICE_EXCLUDES(mu) {
      MutexLock lock(&mu);
      while (detail::WaitNode* n = list.claim_first()) n->parker->wake();
    }
    void wake_all_if_waiting() SLUICE_EXCLUDES(mu) {
      if (waiting() != 0) wake_all();
    }
  };

  static Deadline deadline_after(auto timeout) {
    return Clock::now() + std::chrono::ceil<Clock::duration>(timeout);
  }
  static bool expired(const Deadline& deadline) {
    return deadline && Clock::now() >= *deadline;
  }

  static constexpr std::uint64_t free_tag(std::uint64_t pos) {
    return pos << 1;
  }
  static constexpr std::uint64_t full_tag(std::uint64_t pos) {
    return (pos << 1) | 1;
  }

  [[nodiscard]] bool rendezvous() const { return capacity_ == 0; }

  // Sets the closed flag; false if it was already set.
  bool mark_closed() {
    const std::uint64_t prev =
        tail_.fetch_or(kClosedBit, std::memory_order_seq_cst);
    if ((prev & kClosedBit) != 0) return false;
    closed_.store(true, std::memory_order_seq_cst);
    return true;
  }

  // After a receiver took `n` values: room for senders, and, when that
  // emptied a closed channel, the news for receivers still parked. (A value
  // whose slot was claimed before close() but written after it reaches only
  // one woken receiver; the others, woken by close() too early, sleep again
  // and must hear that the channel is now drained.)
  void after_pop(std::size_t n) {
    wake_senders(n);
    if (closed_.load(std::memory_order_seq_cst) &&
        drained(head_.load(std::memory_order_seq_cst))) {
      not_empty_.wake_all_if_waiting();
    }
  }

  // push() or pop() with the wake-up that follows a success: a receiver
  // waiting for a value, or a sender waiting for room.
  Status push_and_wake(T& value) {
    std::uint64_t pos = 0;
    const Status s = push(value, pos);
    if (s == Status::kOk) not_empty_.wake_one();
    return s;
  }
  Status pop_and_wake(std::optional<T>& out) {
    const Status s = pop(out);
    if (s == Status::kOk) after_pop(1);
    return s;
  }

  // After `freed` slots were freed.
  void wake_senders(std::size_t freed) {
    if (freed > 1) {
      not_full_.wake_all_if_waiting();
    } else {
      not_full_.wake_one();
    }
  }

  Cell& cell(std::uint64_t pos) const {
    return cells_[pow2_mask_ != 0 || slots_ == 1
                      ? static_cast<std::size_t>(pos & pow2_mask_)
                      : static_cast<std::size_t>(pos % slots_)];
  }

  // ---- the lock-free ring
  // ----------------------------------------------------

  // Claims the next free slot and moves `value` into it; `pos` is where it
  // went. Never blocks.
  Status push(T& value, std::uint64_t& pos) {
    pos = tail_.load(std::memory_order_relaxed);
    for (;;) {
      if ((pos & kClosedBit) != 0) return Status::kClosed;
      Cell& c = cell(pos);
      const std::uint64_t seq = c.seq.load(std::memory_order_seq_cst);
      const auto diff = static_cast<std::int64_t>(seq - free_tag(pos));
      if (diff == 0) {
        if (tail_.compare_exchange_weak(pos, pos + 1,
                                        std::memory_order_relaxed)) {
          ::new (static_cast<void*>(c.storage)) T(std::move(value));
          c.seq.store(full_tag(pos), std::memory_order_seq_cst);
          return Status::kOk;
        }
      } else if (diff < 0) {
        // The slot still holds last lap's value: full (unless closed now).
        pos = tail_.load(std::memory_order_relaxed);
        return (pos & kClosedBit) != 0 ? Status::kClosed : Status::kFull;
      } else {
        pos = tail_.load(std::memory_order_relaxed);
      }
    }
  }

  // Claims up to values.size() consecutive free slots with one CAS and fills
  // them. Returns how many were sent; `status` says why when 0.
  std::size_t push_many(std::span<T> values, Status& status) {
    std::uint64_t pos = tail_.load(std::memory_order_relaxed);
    const std::size_t limit = values.size() < slots_ ? values.size() : slots_;
    for (;;) {
      if ((pos & kClosedBit) != 0) {
        status = Status::kClosed;
        return 0;
      }
      std::size_t n = 0;
      while (n < limit && cell(pos + n).seq.load(std::memory_order_seq_cst) ==
                              free_tag(pos + n)) {
        ++n;
      }
      if (n == 0) {
        const std::uint64_t seq = cell(pos).seq.load(std::memory_order_seq_cst);
        if (static_cast<std::int64_t>(seq - free_tag(pos)) < 0) {
          pos = tail_.load(std::memory_order_relaxed);
          status = (pos & kClosedBit) != 0 ? Status::kClosed : Status::kFull;
          return 0;
        }
        pos = tail_.load(std::memory_order_relaxed);
        continue;
      }
      if (tail_.compare_exchange_weak(pos, pos + n,
                                      std::memory_order_relaxed)) {
        for (std::size_t i = 0; i < n; ++i) {
          Cell& c = cell(pos + i);
          ::new (static_cast<void*>(c.storage)) T(std::move(values[i]));
          c.seq.store(full_tag(pos + i), std::memory_order_seq_cst);
        }
        status = Status::kOk;
        return n;
      }
    }
  }

  // Takes the oldest value into `out`. Never blocks. kEmpty: nothing ready
  // yet (possibly a claimed slot still being written); kClosed: closed and
  // drained. Buffered channels only.
  Status pop(std::optional<T>& out) {
    std::uint64_t pos = head_.load(std::memory_order_relaxed);
    for (;;) {
      Cell& c = cell(pos);
      const std::uint64_t seq = c.seq.load(std::memory_order_seq_cst);
      const auto diff = static_cast<std::int64_t>(seq - full_tag(pos));
      if (diff == 0) {
        if (head_.compare_exchange_weak(pos, pos + 1,
                                        std::memory_order_seq_cst)) {
          T* v = c.value();
          out.emplace(std::move(*v));
          v->~T();
          c.seq.store(free_tag(pos + slots_), std::memory_order_seq_cst);
          return Status::kOk;
        }
      } else if (diff < 0) {
        return drained(pos) ? Status::kClosed : Status::kEmpty;
      } else {
        pos = head_.load(std::memory_order_relaxed);
      }
    }
  }

  // Takes up to `max` consecutive ready values with one CAS.
  std::size_t pop_many(std::vector<T>& out, std::size_t max) {
    std::uint64_t pos = head_.load(std::memory_order_relaxed);
    const std::size_t limit = max < slots_ ? max : slots_;
    for (;;) {
      std::size_t n = 0;
      while (n < limit && cell(pos + n).seq.load(std::memory_order_seq_cst) ==
                              full_tag(pos + n)) {
        ++n;
      }
      if (n == 0) {
        const std::uint64_t seq = cell(pos).seq.load(std::memory_order_seq_cst);
        if (static_cast<std::int64_t>(seq - full_tag(pos)) < 0) return 0;
        pos = head_.load(std::memory_order_relaxed);
        continue;
      }
      if (head_.compare_exchange_weak(pos, pos + n,
                                      std::memory_order_relaxed)) {
        for (std::size_t i = 0; i < n; ++i) {
          Cell& c = cell(pos + i);
          T* v = c.value();
          out.push_back(std::move(*v));
          v->~T();
          c.seq.store(free_tag(pos + i + slots_), std::memory_order_seq_cst);
        }
        return n;
      }
    }
  }

  // Closed, and every claimed slot up to `head` consumed.
  [[nodiscard]] bool drained(std::uint64_t head) const {
    const std::uint64_t tail = tail_.load(std::memory_order_seq_cst);
    return (tail & kClosedBit) != 0 && (tail & ~kClosedBit) == head;
  }

  // ---- blocking
  // --------------------------------------------------------------

  // A buffered channel first tries the lock-free ring, spinning and then
  // yielding a little (a hand-off between two running threads is far
  // cheaper than a sleep); then, as an unbuffered one always does, it waits
  // in the channel's queue (detail/select_core.hpp).
  bool send_until(T& value, Deadline deadline, std::stop_token st) {
    if (st.stop_requested()) return false;
    if (!rendezvous()) {
      detail::Backoff backoff;
      for (;;) {
        const Status s = push_and_wake(value);
        if (s == Status::kOk) return true;
        if (s == Status::kClosed) return false;
        if (!backoff.wait()) break;
        if (backoff.yielding() && (st.stop_requested() || expired(deadline))) {
          return false;
        }
      }
    }
    return wait_send(value, deadline, st);
  }

  std::optional<T> recv_until(Deadline deadline, std::stop_token st) {
    std::optional<T> out;
    if (st.stop_requested()) return out;
    if (!rendezvous()) {
      detail::Backoff backoff;
      for (;;) {
        const Status s = pop_and_wake(out);
        if (s == Status::kOk) return out;
        if (s == Status::kClosed) return out;
        if (!backoff.wait()) break;
        if (backoff.yielding() && (st.stop_requested() || expired(deadline))) {
          return out;
        }
      }
    }
    detail::RecvOp<T> op(this);
    wait_op(op, deadline, st);
    return op.take();
  }

  bool wait_send(T& value, Deadline deadline, const std::stop_token& st) {
    detail::SendOp<T> op(this, &value);
    return wait_op(op, deadline, st) && op.sent();
  }

  // Blocks the calling thread on one operation. True if it took effect (or
  // found the channel closed); false when stopped or timed out.
  static bool wait_op(detail::CaseBase& op, Deadline deadline,
                      const std::stop_token& st) {
    detail::CaseBase* cases[1] = {&op};
    detail::WaitNode nodes[1];
    detail::WaitPlan plan{cases, nodes, deadline ? 1 : -1, -1, deadline};
    return detail::wait_thread(plan, st) == 0;
  }

  // Performs `op` if it can proceed at once (try_send / try_recv on an
  // unbuffered channel).
  static bool try_op(detail::CaseBase& op) {
    detail::CaseBase* cases[1] = {&op};
    detail::WaitNode nodes[1];
    detail::WaitPlan plan{cases, nodes, -1, 1, std::nullopt};
    detail::Parker unused;
    return detail::poll_round(plan, unused, false) == 0;
  }

  // Under rv_mu_: wakes every waiter of `q` with "closed".
  static void wake_all_closed(detail::WaitList& q) {
    while (detail::WaitNode* n = q.claim_first()) {
      n->ok = false;
      n->parker->wake();
    }
  }

  // ---- fields --------------------------------------------------------------

  // Immutable after construction.
  const std::size_t capacity_;
  const std::size_t slots_;      // ring size: capacity, or 1 when unbuffered
  const std::size_t pow2_mask_;  // slots - 1 when a power of two, else 0
  const std::unique_ptr<Cell[]> cells_;

  // Ring positions, each on its own cache line: senders contend on tail_,
  // receivers on head_.
  alignas(kCacheLine) std::atomic<std::uint64_t> tail_{0};  // | kClosedBit
  // A copy of tail_'s closed bit on a line nobody writes in steady state, so
  // that checking it does not pull the senders' line over.
  alignas(kCacheLine) std::atomic<bool> closed_{false};
  alignas(kCacheLine) std::atomic<std::uint64_t> head_{0};
  WaitSet not_empty_;  // receivers waiting on an empty ring
  WaitSet not_full_;   // senders waiting on a full ring

  // Unbuffered channels only: every blocked sender and receiver, as Go's
  // sendq and recvq.
  alignas(kCacheLine) Mutex rv_mu_;
  detail::WaitList rv_sendq_ SLUICE_GUARDED_BY(rv_mu_);
  detail::WaitList rv_recvq_ SLUICE_GUARDED_BY(rv_mu_);
};

namespace detail {

// One send on a Channel<T>, as a case of a wait (select_core.hpp).
template <class T>
class SendOp final : public CaseBase {
 public:
  SendOp(Channel<T>* ch, T* value) : ch_(ch), value_(value) {}
  SendOp(const SendOp&) = delete;
  SendOp& operator=(const SendOp&) = delete;
  ~SendOp() = default;

  // True once the value was delivered (false: closed, or never ran).
  [[nodiscard]] bool sent() const { return sent_; }

  Mutex* mutex() override {
    return ch_->rendezvous() ? &ch_->rv_mu_ : &ch_->not_full_.mu;
  }
  [[nodiscard]] bool rendezvous() const override { return ch_->rendezvous(); }
  bool poll() override {
    if (!ch_->rendezvous()) {
      std::uint64_t pos = 0;
      const auto s = ch_->push(*value_, pos);
      sent_ = s == Channel<T>::Status::kOk;
      return s != Channel<T>::Status::kFull;
    }
    ch_->rv_mu_.AssertHeld();  // under mutex()
    if (ch_->closed()) return true;
    WaitNode* r = ch_->rv_recvq_.claim_first();
    if (r == nullptr) return false;
    static_cast<std::optional<T>*>(r->value)->emplace(std::move(*value_));
    r->ok = true;
    peer_ = r->parker;
    sent_ = true;
    return true;
  }
  void after_unlock() override {
    if (peer_ != nullptr) {
      peer_->wake();
    } else if (sent_) {
      ch_->not_empty_.wake_one();
    }
  }
  void enqueue(WaitNode* n) override {
    n->value = value_;
    queue().push(n);
  }
  void dequeue(WaitNode* n) override { queue().remove(n); }
  void from_peer(const WaitNode& n) override { sent_ = n.ok; }
  void pass_on() override { ch_->not_full_.wake_one(); }

 private:
  // Under mutex(): the queue it guards.
  WaitList& queue() {
    if (ch_->rendezvous()) {
      ch_->rv_mu_.AssertHeld();
      return ch_->rv_sendq_;
    }
    ch_->not_full_.mu.AssertHeld();
    return ch_->not_full_.list;
  }

  Channel<T>* ch_;
  T* value_;
  Parker* peer_ = nullptr;
  bool sent_ = false;
};

// One receive on a Channel<T>, as a case of a wait.
template <class T>
class RecvOp final : public CaseBase {
 public:
  explicit RecvOp(Channel<T>* ch) : ch_(ch) {}
  RecvOp(const RecvOp&) = delete;
  RecvOp& operator=(const RecvOp&) = delete;
  ~RecvOp() = default;

  // The value received, or nullopt (closed and drained, or never ran).
  std::optional<T> take() { return std::move(value_); }

  Mutex* mutex() override {
    return ch_->rendezvous() ? &ch_->rv_mu_ : &ch_->not_empty_.mu;
  }
  [[nodiscard]] bool rendezvous() const override { return ch_->rendezvous(); }
  bool poll() override {
    if (!ch_->rendezvous()) {
      const auto s = ch_->pop(value_);
      popped_ = s == Channel<T>::Status::kOk;
      return s != Channel<T>::Status::kEmpty;
    }
    ch_->rv_mu_.AssertHeld();  // under mutex()
    WaitNode* s = ch_->rv_sendq_.claim_first();
    if (s == nullptr) return ch_->closed();
    T* v = static_cast<T*>(s->value);
    value_.emplace(std::move(*v));
    s->ok = true;
    peer_ = s->parker;
    return true;
  }
  void after_unlock() override {
    if (peer_ != nullptr) {
      peer_->wake();
    } else if (popped_) {
      ch_->after_pop(1);
    }
  }
  void enqueue(WaitNode* n) override {
    n->value = &value_;
    queue().push(n);
  }
  void dequeue(WaitNode* n) override { queue().remove(n); }
  void from_peer(const WaitNode& /*n*/) override {}  // value_ is filled
  void pass_on() override { ch_->not_empty_.wake_one(); }

 private:
  // Under mutex(): the queue it guards.
  WaitList& queue() {
    if (ch_->rendezvous()) {
      ch_->rv_mu_.AssertHeld();
      return ch_->rv_recvq_;
    }
    ch_->not_empty_.mu.AssertHeld();
    return ch_->not_empty_.list;
  }

  Channel<T>* ch_;
  std::optional<T> value_;
  Parker* peer_ = nullptr;
  bool popped_ = false;
};

// What Channel<T>::async_send returns. Not copyable or movable: awaited
// where it is made.
template <class T>
class [[nodiscard]] SendAwaiter {
 public:
  SendAwaiter(Channel<T>* ch, T value, std::stop_token st)
      : ch_(ch), value_(std::move(value)), st_(std::move(st)) {}
  SendAwaiter(const SendAwaiter&) = delete;
  SendAwaiter& operator=(const SendAwaiter&) = delete;

  bool await_ready() {
    if (st_.stop_requested()) return done(false);
    if (ch_->rendezvous()) return false;
    const auto s = ch_->push_and_wake(value_);
    if (s == Channel<T>::Status::kOk) return done(true);
    return s == Channel<T>::Status::kClosed && done(false);
  }
  bool await_suspend(std::coroutine_handle<> h) {
    op_.emplace(ch_, &value_);
    return wait_.suspend(&*op_, std::move(st_), h);
  }
  bool await_resume() {
    if (ready_) return sent_;
    return wait_.result() == 0 && op_->sent();
  }

 private:
  bool done(bool sent) {
    sent_ = sent;
    ready_ = true;
    return true;
  }

  Channel<T>* ch_;
  T value_;
  std::stop_token st_;
  bool ready_ = false;
  bool sent_ = false;
  std::optional<SendOp<T>> op_;
  OneCaseWait wait_;
};

// What Channel<T>::async_recv returns. Not copyable or movable.
template <class T>
class [[nodiscard]] RecvAwaiter {
 public:
  RecvAwaiter(Channel<T>* ch, std::stop_token st)
      : ch_(ch), st_(std::move(st)) {}
  RecvAwaiter(const RecvAwaiter&) = delete;
  RecvAwaiter& operator=(const RecvAwaiter&) = delete;

  bool await_ready() {
    if (st_.stop_requested()) return true;
    if (ch_->rendezvous()) return false;
    return ch_->pop_and_wake(value_) != Channel<T>::Status::kEmpty;
  }
  bool await_suspend(std::coroutine_handle<> h) {
    suspended_ = true;
    op_.emplace(ch_);
    return wait_.suspend(&*op_, std::move(st_), h);
  }
  std::optional<T> await_resume() {
    if (!suspended_) return std::move(value_);
    wait_.result();
    return op_->take();
  }

 private:
  Channel<T>* ch_;
  std::stop_token st_;
  std::optional<T> value_;
  bool suspended_ = false;
  std::optional<RecvOp<T>> op_;
  OneCaseWait wait_;
};

}  // namespace detail

}  // namespace sluice

#endif  // SLUICE_PATTERNS_CHANNEL_HPP_
