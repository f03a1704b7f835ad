// Engine-internal: Admission (the engine-wide bound on pending items,
// jobs.max_pending_items) and Intake (one pipeline's in-memory input queues,
// which network threads append to without blocking and the pipeline's
// generator drains round-robin).
#ifndef SLUICE_SERVICE_ENGINE_INTAKE_HPP_
#define SLUICE_SERVICE_ENGINE_INTAKE_HPP_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <stop_token>
#include <unordered_map>
#include <vector>

#include "service/engine/envelope.hpp"
#include "sluice/patterns/detail/thread_annotations.hpp"
#include "sluice/patterns/mutex.hpp"

namespace sluice::engine {

// Counts items accepted but not yet complete, over all jobs of an engine,
// against a limit. Thread-safe; never blocks beyond a short lock.
class Admission {
 public:
  explicit Admission(std::uint64_t max_pending);

  // Takes `n` items if pending + n <= max, and returns true; else false and
  // nothing changes.
  [[nodiscard]] bool TryAcquire(std::uint64_t n);

  // Takes as many of `n` items as fit now (pending + taken <= max) and
  // returns how many; when none fit, keeps `on_room` (moved from only then)
  // to be called once, after some Release, with no lock held, and returns 0.
  [[nodiscard]] std::uint64_t TryAcquireSomeOrWait(
      std::uint64_t n, std::function<void()>& on_room) SLUICE_EXCLUDES(mu_);

  // Gives back `n` items (completed ones when `completed`, else items taken
  // and then not used) and calls the waiters kept so far (on this thread,
  // with no lock held).
  void Release(std::uint64_t n, bool completed = true) SLUICE_EXCLUDES(mu_);

  std::uint64_t pending() const {
    return pending_.load(std::memory_order_relaxed);
  }
  std::uint64_t max_pending() const { return max_pending_; }
  // Items released since start: the completion rate's numerator.
  std::uint64_t completed_total() const {
    return completed_.load(std::memory_order_relaxed);
  }

 private:
  // Takes min(n, room) items; returns how many.
  [[nodiscard]] std::uint64_t TryAcquireUpTo(std::uint64_t n);

  const std::uint64_t max_pending_;
  std::atomic<std::uint64_t> pending_{0};
  std::atomic<std::uint64_t> completed_{0};

  // Waiters are kept under mu_ and flagged in has_waiters_; Release reads
  // the flag after its decrement and a waiter re-tries after setting it
  // (both seq_cst), so a waiter either sees the room or gets called.
  std::atomic<bool> has_waiters_{false};
  Mutex mu_;
  std::vector<std::function<void()>> waiters_ SLUICE_GUARDED_BY(mu_);
};

// One pipeline's pending input: per job a queue of items not yet fed, and
// the ring of jobs the generator visits. Thread-safe: network threads call
// Add / Push / CloseInput / Cancel, the aggregator calls Unpark, and the
// generator (one task, or one thread) calls TryNext / WaitForWork or Next.
class Intake {
 public:
  // `ordered_window`: most items of an ordered job fed but not yet released.
  explicit Intake(std::size_t ordered_window);

  Intake(const Intake&) = delete;
  Intake& operator=(const Intake&) = delete;

  // Registers a job with `items` queued (seqs 0, 1, ...). Its input stays
  // open for Push when `open` (a stream), else it is complete now. Returns
  // false, taking nothing, once Close() was called.
  // Once Retire() was called it still registers jobs until the generator
  // has seen the end (ended()); then it returns false too. `items` is moved
  // from only on success, so a caller may offer them elsewhere.
  [[nodiscard]] bool Add(std::shared_ptr<JobContext> context,
                         std::vector<nlohmann::json>&& items, bool open)
      SLUICE_EXCLUDES(mu_);

  enum class PushResult { kAccepted, kFull, kClosed };
  // Appends to an open job's input (StreamFeed::TryPush) as many items, from
  // the front of `items`, as fit both the queue (`queue_limit`) and
  // admission, taking admission for them and removing them from `items`:
  // kAccepted (all taken, `items` empty), kFull (room ran out with items
  // left; `on_room` kept, moved from: called once when the queue has drained
  // to half of `queue_limit`, or admission has room, or the job is
  // cancelled), or kClosed (input closed, job cancelled, or Close() called;
  // nothing more taken, nothing kept).
  [[nodiscard]] PushResult Push(const JobContext& context,
                                std::vector<nlohmann::json>& items,
                                std::size_t queue_limit, Admission& admission,
                                std::function<void()>& on_room)
      SLUICE_EXCLUDES(mu_);

  // Closes a job's input (StreamFeed::End). Idempotent.
  void CloseInput(const JobContext& context) SLUICE_EXCLUDES(mu_);
  // True when Push can only return kClosed.
  bool InputClosed(const JobContext& context) const SLUICE_EXCLUDES(mu_);

  // After job->RequestCancel(): makes sure the generator visits the job soon
  // to drop its queued items as cancelled. A no-op for a job with no input
  // left here.
  void Cancel(const jobs::Job& job) SLUICE_EXCLUDES(mu_);

  // The aggregator released items of a parked ordered job: feed it again.
  void Unpark(const JobContext& context) SLUICE_EXCLUDES(mu_);

  // For a generator on a thread (the task uses TryNext and WaitForWork):
  // appends to `out` the next envelopes for stage 0, one item per job per
  // turn of the ring: blocks until there is at least one, then takes
  // whatever else is ready without blocking, up to `max` (>= 1) in all.
  // Returns false (appending nothing) once Close() was called and every
  // registered job's input has ended, or when `st` is stopped.
  [[nodiscard]] bool Next(std::vector<Envelope>& out, std::size_t max,
                          std::stop_token st) SLUICE_EXCLUDES(mu_);

  // The generator task's form of Next, which never blocks. TryNext appends
  // what is ready now, as Next does, up to `max` (>= 1): kGot when it
  // appended something, kEnded once Close() was called and every registered
  // job's input has ended, else kNone.
  enum class Poll { kGot, kNone, kEnded };
  [[nodiscard]] Poll TryNext(std::vector<Envelope>& out, std::size_t max)
      SLUICE_EXCLUDES(mu_);
  // After TryNext returned kNone: keeps `wake` (moved from) to be called
  // once, when there may be something for TryNext, and returns true; or,
  // when there already is (the race with a producer), keeps nothing and
  // returns false. `wake` is called with this Intake's lock held, from the
  // producer's thread: it must only schedule the waiter (an await_callback
  // resume does), never call back in. One waiter at a time.
  [[nodiscard]] bool WaitForWork(std::function<void()>& wake)
      SLUICE_EXCLUDES(mu_);

  // No more jobs: Add fails from now on, and Next returns false once the
  // inputs still registered have ended. Idempotent.
  void Close() SLUICE_EXCLUDES(mu_);

  // A reload replaced this pipeline: the generator ends once the inputs
  // registered (and any Add that still gets in before that) have ended.
  // Unlike Close(), open streams keep their Push. Idempotent.
  void Retire() SLUICE_EXCLUDES(mu_);

  // True once the generator has been told the end (TryNext returned kEnded,
  // or Next returned false for it): nothing more will be fed.
  bool ended() const SLUICE_EXCLUDES(mu_);

 private:
  // One job's input. Its address is stable (a node of inputs_), so ring_
  // can point at it.
  struct Input {
    std::shared_ptr<JobContext> context;
    std::vector<nlohmann::json> queue;  // items [head, size) not yet fed
    std::size_t head = 0;
    std::uint64_t next_seq = 0;
    bool input_closed = false;
    bool in_ring = false;
    bool parked = false;  // ordered backlog full: out of the ring
    std::function<void()> on_room;
    std::size_t room_mark = 0;  // call on_room at or below this queue size

    std::size_t queued() const { return queue.size() - head; }
  };

  // TryNext and WaitForWork: a job to visit, a control envelope to send,
  // or the end.
  bool ReadyLocked() const SLUICE_REQUIRES(mu_) {
    return !ring_.empty() || !outbox_.empty() || EndingLocked();
  }
  // Closed or retired, and every registered input has ended.
  bool EndingLocked() const SLUICE_REQUIRES(mu_) {
    return (closed_ || retiring_) && inputs_.empty();
  }
  // Calls and drops the generator task's waiter, if any.
  void WakeLocked() SLUICE_REQUIRES(mu_);

  // One envelope; waits for one only when `block`. Feeds' on_room callbacks
  // due are moved to `wakes` (to be called without the lock).
  std::optional<Envelope> NextLocked(const std::stop_token& st, bool block,
                                     std::vector<std::function<void()>>& wakes)
      SLUICE_REQUIRES(mu_);
  void EnqueueLocked(Input& in) SLUICE_REQUIRES(mu_);
  Envelope Control(Input& in, Envelope::Kind kind, std::uint64_t seq,
                   std::uint64_t weight) SLUICE_REQUIRES(mu_);
  // NextLocked's three outcomes for the input at the front of the ring.
  // A cancelled job: its queued items end as one kCancelRange, then kEnd;
  // the input is erased.
  std::optional<Envelope> EndCancelledLocked(
      Input& in, std::vector<std::function<void()>>& wakes)
      SLUICE_REQUIRES(mu_);
  // An ordered job whose backlog has reached ordered_window_ parks (leaves
  // the ring until Unpark) instead of being fed: true when it parked.
  [[nodiscard]] bool ParkIfWindowFullLocked(Input& in) SLUICE_REQUIRES(mu_);
  // The input's next item, as the envelope for stage 0.
  Envelope FeedLocked(Input& in, std::vector<std::function<void()>>& wakes)
      SLUICE_REQUIRES(mu_);

  const std::size_t ordered_window_;

  mutable Mutex mu_;
  CondVarAny cv_;  // work arrived, or Close()
  std::unordered_map<const jobs::Job*, Input> inputs_ SLUICE_GUARDED_BY(mu_);
  std::deque<Input*> ring_ SLUICE_GUARDED_BY(mu_);
  std::deque<Envelope> outbox_ SLUICE_GUARDED_BY(mu_);  // control envelopes
  bool closed_ SLUICE_GUARDED_BY(mu_) = false;
  bool retiring_ SLUICE_GUARDED_BY(mu_) = false;
  bool ended_ SLUICE_GUARDED_BY(mu_) = false;  // the generator saw the end
  std::function<void()> waiter_ SLUICE_GUARDED_BY(mu_);  // WaitForWork's
};

}  // namespace sluice::engine

#endif  // SLUICE_SERVICE_ENGINE_INTAKE_HPP_
