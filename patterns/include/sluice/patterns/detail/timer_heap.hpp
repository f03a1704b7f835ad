// TimerNode and TimerHeap: the pending timers of one runtime thread (a
// sleep_for, a select's timeout), after Go's per-P timer heap
// (runtime/time.go). Internal: used by runtime.hpp.
//
// Each runtime thread keeps its own heap, so that threads arming and firing
// timers at a high rate (10,000 tasks that each sleep) do not contend on one
// lock, and a timer costs no allocation: the node lives in the waiting
// operation and the heap is a vector of pointers into such nodes.
#ifndef SLUICE_PATTERNS_DETAIL_TIMER_HEAP_HPP_
#define SLUICE_PATTERNS_DETAIL_TIMER_HEAP_HPP_

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "sluice/patterns/detail/parker.hpp"
#include "sluice/patterns/detail/thread_annotations.hpp"
#include "sluice/patterns/mutex.hpp"

namespace sluice::detail {

using Clock = std::chrono::steady_clock;

class TimerHeap;

// A pending timer: fires by claiming `parker` for case `index`. Owned by
// the waiting operation; `heap` and `slot` are guarded by the heap's lock.
struct TimerNode {
  static constexpr std::size_t kNotArmed = static_cast<std::size_t>(-1);
  Clock::time_point deadline;
  Parker* parker = nullptr;
  std::uint32_t index = 0;
  TimerHeap* heap = nullptr;     // where it was added
  std::size_t slot = kNotArmed;  // its position in heap, or kNotArmed
};

// A binary min-heap of TimerNodes by deadline. Thread-safe.
class TimerHeap {
 public:
  TimerHeap() = default;
  TimerHeap(const TimerHeap&) = delete;
  TimerHeap& operator=(const TimerHeap&) = delete;

  // Arms `t`. Returns true if it is now this heap's earliest timer (a
  // thread parked until a later deadline must be told).
  bool add(TimerNode* t) SLUICE_EXCLUDES(mu_) {
    MutexLock lock(&mu_);
    t->heap = this;
    t->slot = heap_.size();
    heap_.push_back(t);
    sift_up(t->slot);
    publish_next();
    return t->slot == 0;
  }

  // Disarms `t` if it has not fired. Requires: `t` was added to this heap.
  void cancel(TimerNode* t) SLUICE_EXCLUDES(mu_) {
    MutexLock lock(&mu_);
    if (t->slot == TimerNode::kNotArmed) return;
    remove_at(t->slot);
    publish_next();
  }

  // Takes every timer due by `now` out of the heap and claims its parker;
  // appends the parkers whose claim it won to `won` (the caller wakes them
  // outside the lock). A claim lost to a stop callback or a peer leaves the
  // timer disarmed; the owner's cancel() is then a no-op.
  void take_due(Clock::time_point now, std::vector<Parker*>& won)
      SLUICE_EXCLUDES(mu_) {
    MutexLock lock(&mu_);
    while (!heap_.empty() && heap_.front()->deadline <= now) {
      TimerNode* t = heap_.front();
      remove_at(0);
      if (t->parker->claim(t->index + 1)) won.push_back(t->parker);
    }
    publish_next();
  }

  // The earliest deadline as a count of Clock ticks, INT64_MAX if none.
  // Read without the lock (a hint: the caller takes the lock to act on it).
  [[nodiscard]] std::int64_t next_deadline() const {
    return next_.load(std::memory_order_seq_cst);
  }

 private:
  static bool earlier(const TimerNode* a, const TimerNode* b) {
    return a->deadline < b->deadline;
  }

  void place(std::size_t i, TimerNode* t) SLUICE_REQUIRES(mu_) {
    heap_[i] = t;
    t->slot = i;
  }

  void sift_up(std::size_t i) SLUICE_REQUIRES(mu_) {
    TimerNode* t = heap_[i];
    while (i > 0) {
      const std::size_t parent = (i - 1) / 2;
      if (!earlier(t, heap_[parent])) break;
      place(i, heap_[parent]);
      i = parent;
    }
    place(i, t);
  }

  void sift_down(std::size_t i) SLUICE_REQUIRES(mu_) {
    TimerNode* t = heap_[i];
    const std::size_t n = heap_.size();
    for (;;) {
      std::size_t child = 2 * i + 1;
      if (child >= n) break;
      if (child + 1 < n && earlier(heap_[child + 1], heap_[child])) ++child;
      if (!earlier(heap_[child], t)) break;
      place(i, heap_[child]);
      i = child;
    }
    place(i, t);
  }

  void remove_at(std::size_t i) SLUICE_REQUIRES(mu_) {
    heap_[i]->slot = TimerNode::kNotArmed;
    TimerNode* last = heap_.back();
    heap_.pop_back();
    if (i == heap_.size()) return;
    place(i, last);
    if (i > 0 && earlier(last, heap_[(i - 1) / 2])) {
      sift_up(i);
    } else {
      sift_down(i);
    }
  }

  void publish_next() SLUICE_REQUIRES(mu_) {
    next_.store(heap_.empty()
                    ? INT64_MAX
                    : heap_.front()->deadline.time_since_epoch().count(),
                std::memory_order_seq_cst);
  }

  Mutex mu_;
  std::vector<TimerNode*> heap_ SLUICE_GUARDED_BY(mu_);
  std::atomic<std::int64_t> next_{INT64_MAX};
};

}  // namespace sluice::detail

#endif  // SLUICE_PATTERNS_DETAIL_TIMER_HEAP_HPP_
