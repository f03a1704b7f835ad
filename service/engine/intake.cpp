#include "service/engine/intake.hpp"

#include <algorithm>
#include <iterator>
#include <utility>

namespace sluice::engine {

// ---- Admission -------------------------------------------------------------

Admission::Admission(std::uint64_t max_pending) : max_pending_(max_pending) {}

bool Admission::TryAcquire(std::uint64_t n) {
  std::uint64_t cur = pending_.load(std::memory_order_seq_cst);
  for (;;) {
    if (cur > max_pending_ || n > max_pending_ - cur) return false;
    if (pending_.compare_exchange_weak(cur, cur + n,
                                       std::memory_order_seq_cst)) {
      return true;
    }
  }
}

std::uint64_t Admission::TryAcquireUpTo(std::uint64_t n) {
  std::uint64_t cur = pending_.load(std::memory_order_seq_cst);
  for (;;) {
    const std::uint64_t room = cur < max_pending_ ? max_pending_ - cur : 0;
    const std::uint64_t take = std::min(n, room);
    if (take == 0) return 0;
    if (pending_.compare_exchange_weak(cur, cur + take,
                                       std::memory_order_seq_cst)) {
      return take;
    }
  }
}

std::uint64_t Admission::TryAcquireSomeOrWait(std::uint64_t n,
                                              std::function<void()>& on_room) {
  if (n == 0) return 0;
  if (const std::uint64_t got = TryAcquireUpTo(n)) return got;
  MutexLock lock(&mu_);
  waiters_.push_back(std::move(on_room));
  has_waiters_.store(true, std::memory_order_seq_cst);
  // A Release that ran before the flag was set did not see us: re-check.
  const std::uint64_t got = TryAcquireUpTo(n);
  if (got > 0) {
    on_room = std::move(waiters_.back());
    waiters_.pop_back();
    if (waiters_.empty()) has_waiters_.store(false, std::memory_order_seq_cst);
  }
  return got;
}

void Admission::Release(std::uint64_t n, bool completed) {
  if (n == 0) return;
  pending_.fetch_sub(n, std::memory_order_seq_cst);
  if (completed) completed_.fetch_add(n, std::memory_order_relaxed);
  if (!has_waiters_.load(std::memory_order_seq_cst)) return;
  std::vector<std::function<void()>> wake;
  {
    MutexLock lock(&mu_);
    wake.swap(waiters_);
    has_waiters_.store(false, std::memory_order_seq_cst);
  }
  for (auto& fn : wake) {
    if (fn) fn();
  }
}

// ---- Intake ----------------------------------------------------------------

Intake::Intake(std::size_t ordered_window)
    : ordered_window_(ordered_window == 0 ? 1 : ordered_window) {}

bool Intake::Add(std::shared_ptr<JobContext> context,
                 std::vector<nlohmann::json>&& items, bool open) {
  MutexLock lock(&mu_);
  if (closed_ || ended_) return false;
  const jobs::Job* key = context->job.get();
  Input& in = inputs_[key];
  in.context = std::move(context);
  in.queue = std::move(items);
  in.input_closed = !open;
  // An open stream with nothing queued waits for its first Push.
  if (in.queued() > 0 || in.input_closed) EnqueueLocked(in);
  return true;
}

Intake::PushResult Intake::Push(const JobContext& context,
                                std::vector<nlohmann::json>& items,
                                std::size_t queue_limit, Admission& admission,
                                std::function<void()>& on_room) {
  // A replaced on_room is destroyed after the lock is released: it may hold
  // the last reference to a session whose destructor calls CloseInput.
  std::function<void()> replaced;
  MutexLock lock(&mu_);
  auto it = inputs_.find(context.job.get());
  if (closed_ || it == inputs_.end() || it->second.input_closed ||
      context.job->cancel_requested()) {
    return PushResult::kClosed;
  }
  Input& in = it->second;
  if (items.empty()) return PushResult::kAccepted;
  // Piece by piece: a frame larger than the room (or than either limit)
  // never takes more than fits, so neither limit is passed; the caller
  // keeps the rest and comes back on on_room.
  for (;;) {
    const std::size_t queued = in.queued();
    if (queued >= queue_limit) {
      replaced = std::exchange(in.on_room, std::move(on_room));
      in.room_mark = queue_limit / 2;
      return PushResult::kFull;
    }
    const std::size_t want = std::min(items.size(), queue_limit - queued);
    const auto n =
        static_cast<std::size_t>(admission.TryAcquireSomeOrWait(want, on_room));
    if (n == 0) return PushResult::kFull;  // admission keeps on_room
    in.queue.insert(in.queue.end(), std::make_move_iterator(items.begin()),
                    std::make_move_iterator(items.begin() +
                                            static_cast<std::ptrdiff_t>(n)));
    items.erase(items.begin(), items.begin() + static_cast<std::ptrdiff_t>(n));
    in.context->job->AddAccepted(n);
    EnqueueLocked(in);
    if (items.empty()) return PushResult::kAccepted;
  }
}

void Intake::CloseInput(const JobContext& context) {
  std::function<void()> dropped;  // destroyed unlocked, as in Push
  MutexLock lock(&mu_);
  auto it = inputs_.find(context.job.get());
  if (it == inputs_.end() || it->second.input_closed) return;
  it->second.input_closed = true;
  dropped = std::move(it->second.on_room);
  it->second.on_room = nullptr;
  EnqueueLocked(it->second);
}

bool Intake::InputClosed(const JobContext& context) const {
  MutexLock lock(&mu_);
  auto it = inputs_.find(context.job.get());
  return closed_ || it == inputs_.end() || it->second.input_closed ||
         context.job->cancel_requested();
}

void Intake::Cancel(const jobs::Job& job) {
  MutexLock lock(&mu_);
  auto it = inputs_.find(&job);
  if (it == inputs_.end()) return;
  Input& in = it->second;
  in.parked = false;
  in.context->parked.store(false, std::memory_order_seq_cst);
  EnqueueLocked(in);
}

void Intake::Unpark(const JobContext& context) {
  MutexLock lock(&mu_);
  auto it = inputs_.find(context.job.get());
  if (it == inputs_.end() || !it->second.parked) return;
  it->second.parked = false;
  it->second.context->parked.store(false, std::memory_order_seq_cst);
  EnqueueLocked(it->second);
}

void Intake::Close() {
  {
    MutexLock lock(&mu_);
    closed_ = true;
    WakeLocked();
  }
  cv_.SignalAll();
}

void Intake::Retire() {
  {
    MutexLock lock(&mu_);
    retiring_ = true;
    WakeLocked();
  }
  cv_.SignalAll();
}

bool Intake::ended() const {
  MutexLock lock(&mu_);
  return ended_;
}

Intake::Poll Intake::TryNext(std::vector<Envelope>& out, std::size_t max) {
  std::vector<std::function<void()>> wakes;
  Poll poll = Poll::kNone;
  {
    MutexLock lock(&mu_);
    const std::stop_token never;
    for (std::size_t n = 0; n < max; ++n) {
      std::optional<Envelope> e = NextLocked(never, /*block=*/false, wakes);
      if (!e) break;
      out.push_back(std::move(*e));
      poll = Poll::kGot;
    }
    if (poll == Poll::kNone && EndingLocked() && ring_.empty() &&
        outbox_.empty()) {
      poll = Poll::kEnded;
      ended_ = true;
    }
  }
  for (auto& wake : wakes) {  // as in Next
    if (wake) wake();
  }
  return poll;
}

bool Intake::WaitForWork(std::function<void()>& wake) {
  MutexLock lock(&mu_);
  if (ReadyLocked()) return false;
  waiter_ = std::move(wake);
  return true;
}

void Intake::WakeLocked() {
  if (!waiter_) return;
  std::function<void()> wake = std::move(waiter_);
  waiter_ = nullptr;
  wake();
}

bool Intake::Next(std::vector<Envelope>& out, std::size_t max,
                  std::stop_token st) {
  std::vector<std::function<void()>> wakes;
  bool more = false;
  {
    MutexLock lock(&mu_);
    std::optional<Envelope> e = NextLocked(st, /*block=*/true, wakes);
    if (e) {
      more = true;
      out.push_back(std::move(*e));
      // Only what is ready now: an envelope must never wait here for
      // another job's input to arrive.
      for (std::size_t n = 1; n < max; ++n) {
        e = NextLocked(st, /*block=*/false, wakes);
        if (!e) break;
        out.push_back(std::move(*e));
      }
    }
  }
  // Feeds' on_room run without our lock: they may call straight back in.
  for (auto& wake : wakes) {
    if (wake) wake();
  }
  return more;
}

void Intake::EnqueueLocked(Input& in) {
  if (in.in_ring || in.parked) return;
  in.in_ring = true;
  ring_.push_back(&in);
  cv_.Signal();
  WakeLocked();
}

Envelope Intake::Control(Input& in, Envelope::Kind kind, std::uint64_t seq,
                         std::uint64_t weight) {
  Envelope e;
  e.context = in.context;
  e.kind = kind;
  e.seq = seq;
  e.weight = weight;
  return e;
}

std::optional<Envelope> Intake::NextLocked(
    const std::stop_token& st, bool block,
    std::vector<std::function<void()>>& wakes) {
  for (;;) {
    if (!outbox_.empty()) {
      Envelope e = std::move(outbox_.front());
      outbox_.pop_front();
      return e;
    }
    if (ring_.empty()) {
      if (!block) return std::nullopt;
      // Ends only when nothing registered can produce anything any more;
      // Engine::Shutdown has every job finished before it closes us.
      auto ready = [this]() SLUICE_REQUIRES(mu_) { return ReadyLocked(); };
      if (!cv_.Wait(&mu_, st, ready)) return std::nullopt;  // stopped
      if (ring_.empty() && outbox_.empty()) {
        ended_ = true;  // ReadyLocked held, so EndingLocked does
        return std::nullopt;
      }
      continue;
    }

    Input* in = ring_.front();
    ring_.pop_front();
    in->in_ring = false;
    JobContext& c = *in->context;
    const jobs::Job* key = c.job.get();

    if (c.job->cancel_requested()) return EndCancelledLocked(*in, wakes);
    if (in->queued() > 0) {
      if (c.ordered && ParkIfWindowFullLocked(*in)) continue;
      return FeedLocked(*in, wakes);
    }
    if (in->input_closed) {
      if (in->next_seq == 0) c.job->MarkRunning();  // an empty job
      Envelope end = Control(*in, Envelope::Kind::kEnd, in->next_seq, 0);
      inputs_.erase(key);
      return end;
    }
    // An open stream with nothing queued: its next Push enqueues it again.
  }
}

std::optional<Envelope> Intake::EndCancelledLocked(
    Input& in, std::vector<std::function<void()>>& wakes) {
  JobContext& c = *in.context;
  const jobs::Job* key = c.job.get();
  // Everything still queued ends as cancelled in one control envelope, then
  // the input ends.
  const std::uint64_t first = in.next_seq;
  const std::uint64_t n = in.queued();
  in.next_seq += n;
  c.fed.store(in.next_seq, std::memory_order_seq_cst);
  if (in.on_room) wakes.push_back(std::move(in.on_room));
  Envelope end = Control(in, Envelope::Kind::kEnd, in.next_seq, 0);
  std::optional<Envelope> result;
  if (n > 0) {
    result = Control(in, Envelope::Kind::kCancelRange, first, n);
    outbox_.push_back(std::move(end));
  } else {
    result = std::move(end);
  }
  inputs_.erase(key);  // `in` dies here
  return result;
}

bool Intake::ParkIfWindowFullLocked(Input& in) {
  JobContext& c = *in.context;
  auto backlog = [&] {
    return in.next_seq - c.released.load(std::memory_order_seq_cst);
  };
  if (backlog() < ordered_window_) return false;
  in.parked = true;
  c.parked.store(true, std::memory_order_seq_cst);
  // The aggregator checks `parked` after publishing `released`; re-checking
  // here after setting it means one of us sees the other.
  if (backlog() >= ordered_window_) return true;
  in.parked = false;
  c.parked.store(false, std::memory_order_seq_cst);
  return false;
}

Envelope Intake::FeedLocked(Input& in,
                            std::vector<std::function<void()>>& wakes) {
  JobContext& c = *in.context;
  if (in.next_seq == 0) c.job->MarkRunning();
  Envelope e;
  e.context = in.context;
  e.seq = in.next_seq++;
  e.value = std::move(in.queue[in.head++]);
  c.fed.store(in.next_seq, std::memory_order_seq_cst);
  if (in.head == in.queue.size()) {
    in.queue.clear();
    in.head = 0;
  } else if (in.head >= 1024 && in.head * 2 >= in.queue.size()) {
    // Streams append forever: drop the fed prefix now and then.
    in.queue.erase(in.queue.begin(),
                   in.queue.begin() + static_cast<std::ptrdiff_t>(in.head));
    in.head = 0;
  }
  if (in.on_room && in.queued() <= in.room_mark) {
    wakes.push_back(std::move(in.on_room));
    in.on_room = nullptr;
  }
  // Back of the ring: one item per job per turn. A closed input comes round
  // once more to emit its kEnd.
  if (in.queued() > 0 || in.input_closed) EnqueueLocked(in);
  return e;
}

}  // namespace sluice::engine
