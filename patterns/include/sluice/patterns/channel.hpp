// Channel<T>: a bounded multi-producer multi-consumer FIFO with Go's channel
// semantics (close, rendezvous on capacity 0, range-for) and std::stop_token
// cancellation of every blocking call.
//
// Thread-safety: every member function may be called concurrently from any
// number of threads, except the destructor, which requires that no thread is
// still inside a call on this channel.
//
// State table (capacity > 0; "blocks" ends with the outcome in brackets once
// the state changes, or with false/nullopt when the stop token fires or a
// timed call times out):
//
//   state               | send / try_send           | recv / try_recv         |
//   close
//   --------------------+---------------------------+-------------------------+---------------------
//   open, empty         | buffers                   | blocks / nullopt        |
//   -> closed-and-empty open, has room      | buffers                   |
//   oldest value            | -> closed-with-items open, full          | blocks
//   / false            | oldest value            | -> closed-with-items
//   closed-with-items   | false at once (dropped)   | oldest value            |
//   no-op, returns false closed-and-empty    | false at once (dropped)   |
//   nullopt at once         | no-op, returns false
//
// Capacity 0 (unbuffered, Go's make(chan T)) has no buffer: send blocks until a
// receiver has taken the value and recv until a sender hands one over.
// try_send succeeds only when a receiver is already waiting and try_recv only
// when a sender is. Closing wakes every blocked sender with false (its value is
// not delivered) and every blocked receiver with nullopt.
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
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <memory>
#include <mutex>
#include <new>
#include <optional>
#include <span>
#include <stop_token>
#include <type_traits>
#include <utility>
#include <vector>

#include "sluice/patterns/detail/backoff.hpp"
#include "sluice/patterns/detail/thread_annotations.hpp"

namespace sluice {

template <class T>
class Channel {
  static_assert(std::is_move_constructible_v<T>,
                "Channel<T> requires a move-constructible T");
  static_assert(std::is_nothrow_destructible_v<T>);

  using Clock = std::chrono::steady_clock;

 public:
  // Creates an open channel that buffers up to `capacity` values; 0 makes an
  // unbuffered (rendezvous) channel.
  explicit Channel(std::size_t capacity)
      : capacity_(capacity),
        pow2_mask_(capacity != 0 && (capacity & (capacity - 1)) == 0
                       ? capacity - 1
                       : 0),
        cells_(capacity == 0 ? nullptr : new Cell[capacity]) {
    for (std::size_t i = 0; i < capacity_; ++i) {
      cells_[i].seq.store(free_tag(i), std::memory_order_relaxed);
    }
  }

  Channel(const Channel&) = delete;
  Channel& operator=(const Channel&) = delete;

  // Destroys any values still buffered. Requires: no thread is blocked in, or
  // about to call, any member of this channel.
  ~Channel() {
    if (capacity_ == 0) return;
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

  // Never blocks. Returns true if `value` was moved into the channel (or, on
  // capacity 0, handed to a receiver that was already waiting). On false the
  // channel was full, had no waiting receiver, or was closed, and `value` is
  // left untouched.
  bool try_send(T& value) {
    if (capacity_ == 0)
      return rv_send(value, /*block=*/false, std::nullopt, {});
    if (ring_push(value) != Status::kOk) return false;
    notify_recv_one();
    return true;
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
    if (capacity_ == 0) {
      std::size_t sent = 0;
      for (T& v : values) {
        if (!rv_send(v, /*block=*/true, std::nullopt, st)) break;
        ++sent;
      }
      return sent;
    }
    std::size_t sent = 0;
    detail::Backoff backoff;
    while (sent < values.size()) {
      if (st.stop_requested()) break;
      Status s = Status::kOk;
      const std::size_t n = ring_push_many(values.subspan(sent), s);
      if (n > 0) {
        sent += n;
        n > 1 ? notify_recv_all() : notify_recv_one();
        backoff.reset();
        continue;
      }
      if (s == Status::kClosed) break;
      if (backoff.wait()) continue;
      // Full: park until there is room, then go on with a fresh backoff.
      if (!park_send(values[sent], std::nullopt, st)) break;
      ++sent;
      backoff.reset();
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
    std::optional<T> out;
    if (capacity_ == 0) {
      rv_recv(out, /*block=*/false, std::nullopt, {});
      return out;
    }
    if (ring_pop(out) == Status::kOk) notify_send_one();
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
    if (max == 0) return 0;
    std::size_t n = try_recv_many(out, max);
    if (n > 0) return n;
    std::optional<T> first = recv(st);
    if (!first) return 0;
    out.push_back(std::move(*first));
    return 1 + try_recv_many(out, max - 1);
  }

  // Never blocks: appends up to `max` ready values to `out`, returns the count.
  std::size_t try_recv_many(std::vector<T>& out, std::size_t max) {
    if (max == 0) return 0;
    if (capacity_ == 0) {
      std::size_t n = 0;
      while (n < max) {
        std::optional<T> v = try_recv();
        if (!v) break;
        out.push_back(std::move(*v));
        ++n;
      }
      return n;
    }
    const std::size_t n = ring_pop_many(out, max);
    if (n > 1) {
      notify_send_all();
    } else if (n == 1) {
      notify_send_one();
    }
    return n;
  }

  // ---- state -------------------------------------------------------------

  // Closes the channel: no value is accepted after this; values already
  // buffered are still delivered; every blocked call wakes. Idempotent;
  // returns true only for the call that closed it.
  bool close() {
    if (capacity_ == 0) return rv_close();
    const std::uint64_t prev =
        tail_.fetch_or(kClosedBit, std::memory_order_seq_cst);
    if ((prev & kClosedBit) != 0) return false;
    not_empty_.wake_all();
    not_full_.wake_all();
    return true;
  }

  // True once close() has been called (values may still be buffered).
  [[nodiscard]] bool closed() const {
    if (capacity_ == 0) {
      std::lock_guard<detail::SpinLock> lock(rv_lock_);
      return rv_closed_;
    }
    return (tail_.load(std::memory_order_acquire) & kClosedBit) != 0;
  }

  // The number of values buffered at this instant (a snapshot; 0 for an
  // unbuffered channel).
  [[nodiscard]] std::size_t size() const {
    if (capacity_ == 0) return 0;
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
  // slot (a CAS on tail_) fails once the channel is closed: nothing can be
  // buffered after close(), and closed-and-drained is exactly
  // "closed && head == tail".
  static constexpr std::uint64_t kClosedBit = std::uint64_t{1} << 63;
  static constexpr std::size_t kCacheLine = 64;

  // One slot of the ring (Vyukov's bounded MPMC queue). `seq` says whose turn
  // it is: free_tag(pos) means free for the sender at position pos;
  // full_tag(pos) means it holds the value sent at pos; a receiver frees it
  // for the next lap by storing free_tag(pos + capacity). Tags are doubled
  // positions so that "full at pos" and "free at pos + 1" never coincide,
  // which keeps capacity 1 exact.
  struct Cell {
    std::atomic<std::uint64_t> seq{0};
    alignas(T) std::byte storage[sizeof(T)];

    T* value() { return std::launder(reinterpret_cast<T*>(storage)); }
  };

  // Where blocked callers park once spinning has not helped. A waker checks
  // `waiters` (seq_cst, after its own seq_cst publish), so a wake costs
  // nothing while nobody sleeps; a waiter increments `waiters` under `mu`
  // before re-checking its condition, so no wake-up is lost.
  struct alignas(kCacheLine) WaitSet {
    std::atomic<std::uint32_t> waiters{0};
    std::mutex mu;
    std::condition_variable_any cv;

    void wake_one() {
      if (waiters.load(std::memory_order_seq_cst) == 0) return;
      { std::lock_guard<std::mutex> lock(mu); }
      cv.notify_one();
    }
    void wake_all() {
      { std::lock_guard<std::mutex> lock(mu); }
      cv.notify_all();
    }
    void wake_all_if_waiting() {
      if (waiters.load(std::memory_order_seq_cst) != 0) wake_all();
    }
  };

  static std::optional<Clock::time_point> deadline_after(auto timeout) {
    return Clock::now() + std::chrono::ceil<Clock::duration>(timeout);
  }

  static constexpr std::uint64_t free_tag(std::uint64_t pos) {
    return pos << 1;
  }
  static constexpr std::uint64_t full_tag(std::uint64_t pos) {
    return (pos << 1) | 1;
  }

  Cell& cell(std::uint64_t pos) const {
    const std::size_t index = pow2_mask_ != 0 || capacity_ == 1
                                  ? static_cast<std::size_t>(pos & pow2_mask_)
                                  : static_cast<std::size_t>(pos % capacity_);
    return cells_[index];
  }

  void notify_recv_one() { not_empty_.wake_one(); }
  void notify_recv_all() { not_empty_.wake_all_if_waiting(); }
  void notify_send_one() { not_full_.wake_one(); }
  void notify_send_all() { not_full_.wake_all_if_waiting(); }

  // ---- ring (capacity > 0): the lock-free core -----------------------------

  // Claims the next free slot and moves `value` into it. Never blocks.
  Status ring_push(T& value) {
    std::uint64_t pos = tail_.load(std::memory_order_relaxed);
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
        // The slot still holds last lap's value: full (unless closed
        // meanwhile).
        pos = tail_.load(std::memory_order_relaxed);
        return (pos & kClosedBit) != 0 ? Status::kClosed : Status::kFull;
      } else {
        pos = tail_.load(std::memory_order_relaxed);
      }
    }
  }

  // Claims up to values.size() consecutive free slots with one CAS and fills
  // them. Returns how many were sent; `status` is kClosed/kFull when 0.
  std::size_t ring_push_many(std::span<T> values, Status& status) {
    std::uint64_t pos = tail_.load(std::memory_order_relaxed);
    for (;;) {
      if ((pos & kClosedBit) != 0) {
        status = Status::kClosed;
        return 0;
      }
      std::size_t n = 0;
      const std::size_t limit =
          values.size() < capacity_ ? values.size() : capacity_;
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

  // Takes the oldest value into `out`. Never blocks. kEmpty means nothing is
  // ready yet (possibly a claimed slot still being written); kClosed means
  // closed and drained.
  Status ring_pop(std::optional<T>& out) {
    std::uint64_t pos = head_.load(std::memory_order_relaxed);
    for (;;) {
      Cell& c = cell(pos);
      const std::uint64_t seq = c.seq.load(std::memory_order_seq_cst);
      const auto diff = static_cast<std::int64_t>(seq - full_tag(pos));
      if (diff == 0) {
        if (head_.compare_exchange_weak(pos, pos + 1,
                                        std::memory_order_relaxed)) {
          T* v = c.value();
          out.emplace(std::move(*v));
          v->~T();
          c.seq.store(free_tag(pos + capacity_), std::memory_order_seq_cst);
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
  std::size_t ring_pop_many(std::vector<T>& out, std::size_t max) {
    std::uint64_t pos = head_.load(std::memory_order_relaxed);
    for (;;) {
      std::size_t n = 0;
      const std::size_t limit = max < capacity_ ? max : capacity_;
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
          c.seq.store(free_tag(pos + i + capacity_), std::memory_order_seq_cst);
        }
        return n;
      }
    }
  }

  // Closed, and every claimed slot up to `head` consumed.
  bool drained(std::uint64_t head) const {
    const std::uint64_t tail = tail_.load(std::memory_order_seq_cst);
    return (tail & kClosedBit) != 0 && (tail & ~kClosedBit) == head;
  }

  bool send_until(T& value, std::optional<Clock::time_point> deadline,
                  std::stop_token st) {
    if (st.stop_requested()) return false;
    if (capacity_ == 0) return rv_send(value, /*block=*/true, deadline, st);
    detail::Backoff backoff;
    for (;;) {
      const Status s = ring_push(value);
      if (s == Status::kOk) {
        notify_recv_one();
        return true;
      }
      if (s == Status::kClosed) return false;
      if (!backoff.wait()) break;
      if (backoff.yielding() &&
          (st.stop_requested() || (deadline && Clock::now() >= *deadline))) {
        return false;
      }
    }
    return park_send(value, deadline, st);
  }

  // Parks until `value` is buffered, the channel closes, `st` stops or the
  // deadline passes.
  bool park_send(T& value, std::optional<Clock::time_point> deadline,
                 std::stop_token st) {
    Status s = Status::kFull;
    bool ok = false;
    {
      std::unique_lock<std::mutex> lock(not_full_.mu);
      not_full_.waiters.fetch_add(1, std::memory_order_seq_cst);
      auto ready = [&] {
        s = ring_push(value);
        return s != Status::kFull;
      };
      ok = deadline ? not_full_.cv.wait_until(lock, st, *deadline, ready)
                    : not_full_.cv.wait(lock, st, ready);
      not_full_.waiters.fetch_sub(1, std::memory_order_relaxed);
    }
    if (ok && s == Status::kOk) {
      notify_recv_one();
      return true;
    }
    // Stopped or timed out: a wake-up meant for us may have been spent, so
    // pass it on to another sender.
    if (!ok) not_full_.wake_one();
    return false;
  }

  std::optional<T> recv_until(std::optional<Clock::time_point> deadline,
                              std::stop_token st) {
    std::optional<T> out;
    if (st.stop_requested()) return out;
    if (capacity_ == 0) {
      rv_recv(out, /*block=*/true, deadline, st);
      return out;
    }
    detail::Backoff backoff;
    for (;;) {
      const Status s = ring_pop(out);
      if (s == Status::kOk) {
        notify_send_one();
        return out;
      }
      if (s == Status::kClosed) return out;
      if (!backoff.wait()) break;
      if (backoff.yielding() &&
          (st.stop_requested() || (deadline && Clock::now() >= *deadline))) {
        return out;
      }
    }
    Status s = Status::kEmpty;
    bool ok = false;
    {
      std::unique_lock<std::mutex> lock(not_empty_.mu);
      not_empty_.waiters.fetch_add(1, std::memory_order_seq_cst);
      auto ready = [&] {
        s = ring_pop(out);
        return s != Status::kEmpty;
      };
      ok = deadline ? not_empty_.cv.wait_until(lock, st, *deadline, ready)
                    : not_empty_.cv.wait(lock, st, ready);
      not_empty_.waiters.fetch_sub(1, std::memory_order_relaxed);
    }
    if (ok && s == Status::kOk) {
      notify_send_one();
    } else if (!ok) {
      not_empty_.wake_one();
    }
    return out;
  }

  // ---- rendezvous (capacity 0): Go's direct hand-off ------------------------
  //
  // A sender that finds a receiver waiting moves its value straight into the
  // receiver's slot; otherwise it queues itself and waits until a receiver
  // takes the value from it (and symmetrically for receivers). The queues are
  // intrusive lists of waiters living on the blocked callers' stacks.

  enum : std::uint32_t { kWaiting, kParked, kDone, kClosedWake, kCancelled };

  struct Waiter {
    Waiter* prev = nullptr;
    Waiter* next = nullptr;
    bool queued = false;                    // guarded by rv_lock_
    T* send_value = nullptr;                // a sender's value
    std::optional<T>* recv_slot = nullptr;  // a receiver's destination
    // kWaiting -> kParked (by the waiter, before it sleeps) -> final state
    // (by whoever completes it). The completer signals `cv` only if the
    // waiter had parked.
    std::atomic<std::uint32_t> state{kWaiting};
    std::mutex mu;
    std::condition_variable cv;
  };

  struct WaiterQueue {
    Waiter* head = nullptr;
    Waiter* tail = nullptr;

    void push_back(Waiter* w) {
      w->prev = tail;
      w->next = nullptr;
      (tail != nullptr ? tail->next : head) = w;
      tail = w;
      w->queued = true;
    }
    Waiter* pop_front() {
      Waiter* w = head;
      if (w != nullptr) unlink(w);
      return w;
    }
    void unlink(Waiter* w) {
      (w->prev != nullptr ? w->prev->next : head) = w->next;
      (w->next != nullptr ? w->next->prev : tail) = w->prev;
      w->prev = w->next = nullptr;
      w->queued = false;
    }
  };

  // Completes a dequeued waiter; the waiter may return as soon as it sees
  // the final state. A parked waiter reads its state under `mu`, so setting
  // it under `mu` keeps the waiter (and its stack) alive until we are done.
  static void complete(Waiter* w, std::uint32_t final_state) {
    std::uint32_t expected = kWaiting;
    if (w->state.compare_exchange_strong(expected, final_state,
                                         std::memory_order_acq_rel)) {
      return;  // still spinning: it will see the state by itself
    }
    std::lock_guard<std::mutex> lock(w->mu);
    w->state.store(final_state, std::memory_order_release);
    w->cv.notify_one();
  }

  bool rv_send(T& value, bool block, std::optional<Clock::time_point> deadline,
               std::stop_token st) {
    rv_lock_.lock();
    if (rv_closed_) {
      rv_lock_.unlock();
      return false;
    }
    if (Waiter* r = recvq_.pop_front()) {
      rv_lock_.unlock();
      r->recv_slot->emplace(std::move(value));
      complete(r, kDone);
      return true;
    }
    if (!block) {
      rv_lock_.unlock();
      return false;
    }
    Waiter me;
    me.send_value = &value;
    sendq_.push_back(&me);
    rv_lock_.unlock();
    return rv_await(me, sendq_, deadline, st) == kDone;
  }

  void rv_recv(std::optional<T>& out, bool block,
               std::optional<Clock::time_point> deadline, std::stop_token st) {
    rv_lock_.lock();
    if (Waiter* s = sendq_.pop_front()) {
      rv_lock_.unlock();
      out.emplace(std::move(*s->send_value));
      complete(s, kDone);
      return;
    }
    if (rv_closed_ || !block) {
      rv_lock_.unlock();
      return;
    }
    Waiter me;
    me.recv_slot = &out;
    recvq_.push_back(&me);
    rv_lock_.unlock();
    if (rv_await(me, recvq_, deadline, st) != kDone) out.reset();
  }

  // Removes `me` from `queue` if it is still there (nobody completed it) and
  // marks it `why`. Returns false if a completer got to it first.
  bool rv_withdraw(Waiter& me, WaiterQueue& queue, std::uint32_t why) {
    std::lock_guard<detail::SpinLock> lock(rv_lock_);
    if (!me.queued) return false;
    queue.unlink(&me);
    me.state.store(why, std::memory_order_release);
    return true;
  }

  // Waits until `me` is completed (kDone / kClosedWake), withdrawing it on
  // stop or timeout. Returns the final state.
  std::uint32_t rv_await(Waiter& me, WaiterQueue& queue,
                         std::optional<Clock::time_point> deadline,
                         std::stop_token st) {
    detail::Backoff backoff;
    while (backoff.wait()) {
      const std::uint32_t s = me.state.load(std::memory_order_acquire);
      if (s != kWaiting) return s;
      if (backoff.yielding() &&
          (st.stop_requested() || (deadline && Clock::now() >= *deadline))) {
        if (rv_withdraw(me, queue, kCancelled)) return kCancelled;
        break;  // completed concurrently: wait for the completer below
      }
    }
    // Park. The stop callback withdraws us and wakes us; if a completer beat
    // it, we simply wait for the completer's signal. It is registered before
    // me.mu is taken because it runs inline when `st` is already stopped.
    std::stop_callback on_stop(st, [&] {
      if (rv_withdraw(me, queue, kCancelled)) {
        std::lock_guard<std::mutex> inner(me.mu);
        me.cv.notify_one();
      }
    });
    std::unique_lock<std::mutex> lock(me.mu);
    std::uint32_t expected = kWaiting;
    if (!me.state.compare_exchange_strong(expected, kParked,
                                          std::memory_order_acq_rel)) {
      return expected;
    }
    auto settled = [&] {
      return me.state.load(std::memory_order_acquire) > kParked;
    };
    if (deadline) {
      if (!me.cv.wait_until(lock, *deadline, settled)) {
        lock.unlock();
        if (rv_withdraw(me, queue, kCancelled)) return kCancelled;
        lock.lock();
        me.cv.wait(lock, settled);
      }
    } else {
      me.cv.wait(lock, settled);
    }
    return me.state.load(std::memory_order_acquire);
  }

  bool rv_close() {
    WaiterQueue senders;
    WaiterQueue receivers;
    {
      std::lock_guard<detail::SpinLock> lock(rv_lock_);
      if (rv_closed_) return false;
      rv_closed_ = true;
      std::swap(senders, sendq_);
      std::swap(receivers, recvq_);
      for (Waiter* w = senders.head; w != nullptr; w = w->next)
        w->queued = false;
      for (Waiter* w = receivers.head; w != nullptr; w = w->next)
        w->queued = false;
    }
    for (Waiter* w = senders.head; w != nullptr;) {
      Waiter* next = w->next;  // read before completing: w may vanish after
      complete(w, kClosedWake);
      w = next;
    }
    for (Waiter* w = receivers.head; w != nullptr;) {
      Waiter* next = w->next;
      complete(w, kClosedWake);
      w = next;
    }
    return true;
  }

  // ---- fields --------------------------------------------------------------

  // Immutable after construction.
  const std::size_t capacity_;
  const std::size_t pow2_mask_;  // capacity - 1 when a power of two, else 0
  const std::unique_ptr<Cell[]> cells_;

  // Ring positions, each on its own cache line: senders contend on tail_,
  // receivers on head_.
  alignas(kCacheLine) std::atomic<std::uint64_t> tail_{0};  // + kClosedBit
  alignas(kCacheLine) std::atomic<std::uint64_t> head_{0};

  WaitSet not_empty_;  // receivers parked on an empty ring
  WaitSet not_full_;   // senders parked on a full ring

  // Rendezvous state (capacity 0 only).
  mutable detail::SpinLock rv_lock_;
  bool rv_closed_ SLUICE_GUARDED_BY(rv_lock_) = false;
  WaiterQueue sendq_ SLUICE_GUARDED_BY(rv_lock_);
  WaiterQueue recvq_ SLUICE_GUARDED_BY(rv_lock_);
};

}  // namespace sluice

#endif  // SLUICE_PATTERNS_CHANNEL_HPP_
