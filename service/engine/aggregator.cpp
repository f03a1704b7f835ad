// The aggregator of a pipeline, the fan-in point: one task on the engine's
// Runtime drains the last stage's channel, routes each envelope to its
// job, keeps ordered jobs in order, folds values into the job's aggregate
// and windows, appends result records to the job's log in batches, and
// finishes each job once the weights of its items add up. It is suspended
// while nothing arrives, and while the results memory is full.
#include <algorithm>
#include <chrono>
#include <optional>
#include <utility>
#include <vector>

#include "service/engine/pipeline_runtime.hpp"
#include "service/metrics/metrics.hpp"
#include "service/processors/aggregate.hpp"
#include "sluice/patterns/select.hpp"

namespace sluice::engine {
namespace {

using Kind = Envelope::Kind;
using Clock = std::chrono::steady_clock;

enum class Received { kSome, kTimedOut, kEnded };

// co_await: appends to `batch` the envelopes ready in `in`, up to 256,
// waiting up to `wait` for the first. kEnded once `in` is closed and
// drained, or on stop.
Task<Received> ReceiveUntil(Channel<Envelope>& in, std::vector<Envelope>& batch,
                            Clock::duration wait, const std::stop_token& st) {
  constexpr std::size_t kMaxBatch = 256;
  if (in.try_recv_many(batch, kMaxBatch) > 0) co_return Received::kSome;
  bool ended = false;
  const std::size_t chosen = co_await sluice::async_select(
      st,
      sluice::on_recv(in,
                      [&](std::optional<Envelope> e) {
                        if (!e) {
                          ended = true;  // closed, and nothing buffered
                          return;
                        }
                        batch.push_back(std::move(*e));
                      }),
      sluice::on_timeout(wait, [] {}));
  if (chosen == sluice::kSelectStopped || ended) co_return Received::kEnded;
  if (batch.empty()) co_return Received::kTimedOut;
  in.try_recv_many(batch, kMaxBatch - 1);
  co_return Received::kSome;
}

}  // namespace

Task<> PipelineRuntime::Aggregate(std::stop_token st) {
  Channel<Envelope>& in = *last_;
  std::vector<Envelope> batch;
  batch.reserve(256);
  std::vector<std::shared_ptr<JobContext>> touched;
  const auto interval = std::max<std::chrono::milliseconds>(
      options_.sample_interval, std::chrono::milliseconds(1));
  auto next_sample = std::chrono::steady_clock::now() + interval;
  std::optional<std::chrono::steady_clock::time_point> next_window;
  for (;;) {
    const auto now = std::chrono::steady_clock::now();
    const auto until =
        next_window ? std::min(*next_window, next_sample) : next_sample;
    const Received got = co_await ReceiveUntil(
        in, batch, until > now ? until - now : Clock::duration{}, st);
    if (got == Received::kEnded) break;
    for (Envelope& e : batch) Route(e, touched);
    batch.clear();
    if (!timed_windows_.empty()) {
      next_window = TickWindows(std::chrono::steady_clock::now(), touched);
    }
    co_await Flush(touched);
    if (std::chrono::steady_clock::now() >= next_sample) {
      SampleGauges();
      next_sample = std::chrono::steady_clock::now() + interval;
    }
    // Tasks are not preempted: a busy aggregator lets the stages on its
    // thread run between batches.
    if (got == Received::kSome) co_await sluice::yield();
  }
  timed_windows_.clear();
  SampleGauges();
}

void PipelineRuntime::CloseWindow(AggregatorState& a,
                                  std::uint64_t next_number) {
  if (a.window_values > 0) {
    a.records.push_back(jobs::ResultRecord::Window(
        a.window_number, a.window_aggregator->Result()));
    a.window_aggregator = NewAggregator();
    a.window_values = 0;
  }
  a.window_number = next_number;
}

std::optional<std::chrono::steady_clock::time_point>
PipelineRuntime::TickWindows(
    std::chrono::steady_clock::time_point now,
    std::vector<std::shared_ptr<JobContext>>& touched) {
  const auto every = config_.aggregate.window.every;
  std::optional<std::chrono::steady_clock::time_point> next;
  std::erase_if(timed_windows_, [&](const std::shared_ptr<JobContext>& c) {
    AggregatorState& a = c->agg;
    if (a.finished || !a.window_aggregator) return true;
    auto end = *a.window_start +
               every * static_cast<std::int64_t>(a.window_number + 1);
    if (now >= end) {
      // Windows are numbered by time since the first: a quiet spell skips
      // numbers rather than emitting empty windows.
      const auto elapsed =
          std::chrono::duration_cast<std::chrono::milliseconds>(
              now - *a.window_start);
      const auto number = static_cast<std::uint64_t>(elapsed / every);
      CloseWindow(a, number);
      if (!a.touched) {
        a.touched = true;
        touched.push_back(c);
      }
      end = *a.window_start + every * static_cast<std::int64_t>(number + 1);
    }
    next = next ? std::min(*next, end) : end;
    return false;
  });
  return next;
}

void PipelineRuntime::Route(Envelope& e,
                            std::vector<std::shared_ptr<JobContext>>& touched) {
  JobContext& c = *e.context;
  AggregatorState& a = c.agg;
  if (!a.touched) {
    a.touched = true;
    touched.push_back(e.context);  // keeps the context alive until Flush
  }
  if (a.window_aggregator && !a.window_start &&
      config_.aggregate.window.every.count() > 0) {
    a.window_start = std::chrono::steady_clock::now();
    timed_windows_.push_back(e.context);
  }
  switch (e.kind) {
    case Kind::kEnd:
      a.end_seen = true;
      a.total = e.seq;
      return;
    case Kind::kCancelRange:
      // Never fed, so complete at once; for ordered jobs these are the
      // highest seqs, released after everything before them.
      a.cancelled += e.weight;
      a.completed += e.weight;
      completed_in_batch_ += e.weight;
      if (c.ordered) a.cancelled_from = e.seq;
      return;
    default:
      break;
  }

  if (!c.ordered) {
    const std::uint64_t seq = e.seq;
    bool complete = e.weight == Envelope::kRootWeight;
    if (!complete) {
      auto it = a.partial.try_emplace(seq, 0).first;
      it->second += e.weight;
      if (it->second == Envelope::kRootWeight) {
        a.partial.erase(it);
        complete = true;
      }
    }
    Emit(c, e);
    if (complete) {
      ++a.completed;
      ++completed_in_batch_;
    }
    return;
  }

  AggregatorState::Held& held = a.held[e.seq];
  held.weight += e.weight;
  e.context.reset();  // a held piece must not keep its own job alive
  held.pieces.push_back(std::move(e));
  ReleaseOrdered(c);
}

void PipelineRuntime::Emit(JobContext& c, Envelope& e) {
  AggregatorState& a = c.agg;
  switch (e.kind) {
    case Kind::kValue:
      if (a.aggregator) a.aggregator->Add(e.value);
      if (a.window_aggregator) {
        a.window_aggregator->Add(e.value);
        ++a.window_values;
      }
      a.records.push_back(
          jobs::ResultRecord{e.seq, false, std::move(e.value), {}, {}, {}, {}});
      // After its last value, so a stream shows the window once it is whole.
      if (a.window_aggregator && config_.aggregate.window.items != 0 &&
          a.window_values >= config_.aggregate.window.items) {
        CloseWindow(a, a.window_number + 1);
      }
      return;
    case Kind::kError:
      a.records.push_back(jobs::ResultRecord{
          e.seq,
          true,
          nullptr,
          std::move(e.error),
          e.stage < stage_names_.size() ? stage_names_[e.stage] : "",
          {},
          {}});
      return;
    case Kind::kFiltered:
      ++a.filtered;
      return;
    case Kind::kCancelled:
      ++a.cancelled;
      return;
    default:
      return;
  }
}

void PipelineRuntime::ReleaseOrdered(JobContext& c) {
  AggregatorState& a = c.agg;
  for (;;) {
    if (a.cancelled_from && a.next_release >= *a.cancelled_from) return;
    auto it = a.held.begin();
    if (it == a.held.end() || it->first != a.next_release ||
        it->second.weight != Envelope::kRootWeight) {
      return;
    }
    std::vector<Envelope>& pieces = it->second.pieces;
    if (pieces.size() > 1) {
      std::sort(
          pieces.begin(), pieces.end(),
          [](const Envelope& x, const Envelope& y) { return x.path < y.path; });
    }
    for (Envelope& piece : pieces) Emit(c, piece);
    a.held.erase(it);
    ++a.next_release;
    ++a.completed;
    ++completed_in_batch_;
  }
}

Task<bool> PipelineRuntime::AppendWhenRoom(
    jobs::Job& job, std::vector<jobs::ResultRecord>& records,
    std::uint64_t filtered, std::uint64_t cancelled) {
  for (;;) {
    // A cancelled job does not wait (a DELETE, or the shutdown's cancel
    // after its grace, must not hang behind the results memory): what does
    // not fit now fails it, and its records count as cancelled.
    if (job.cancel_requested()) {
      co_return job.Append(records, filtered, cancelled);
    }
    std::optional<jobs::Job::Clock::time_point> retry_at;
    const bool failed_now = job.Append(records, filtered, cancelled, &retry_at);
    if (!retry_at) co_return failed_now;
    // The results memory is full of jobs that finished less than
    // jobs.min_retention ago: hold this pipeline's results (its queues fill
    // and admission pushes back) until the oldest may be evicted. Re-checked
    // every 100 ms in case room comes sooner (a job deleted, a reader
    // letting go), and never sooner than 1 ms (room others keep taking).
    const auto now = jobs::Job::Clock::now();
    co_await sluice::sleep_for(
        std::clamp(*retry_at, now + std::chrono::milliseconds(1),
                   now + std::chrono::milliseconds(100)) -
        now);
  }
}

Task<> PipelineRuntime::Flush(
    std::vector<std::shared_ptr<JobContext>>& touched) {
  for (const std::shared_ptr<JobContext>& context : touched) {
    JobContext& c = *context;
    AggregatorState& a = c.agg;
    a.touched = false;
    if (!a.records.empty() || a.filtered > 0 || a.cancelled > 0) {
      // Past its result limits the job fails: what is still queued for it
      // ends cancelled at once (in-flight items see cancel_requested()).
      if (co_await AppendWhenRoom(*c.job, a.records, a.filtered, a.cancelled)) {
        intake_->Cancel(*c.job);
      }
      a.records = {};
      a.filtered = 0;
      a.cancelled = 0;
    }
    c.job->NoteCompleted(a.completed);
    if (c.ordered) {
      // Publish before looking at `parked` (the generator does the mirror
      // image), so a parked job is always seen and fed again.
      c.released.store(a.next_release, std::memory_order_seq_cst);
      if (c.parked.load(std::memory_order_seq_cst) &&
          c.fed.load(std::memory_order_seq_cst) - a.next_release <=
              options_.ordered_window / 2) {
        intake_->Unpark(c);
      }
    }
  }
  // Give the room back before finishing jobs, so whoever sees a job finished
  // also sees its items no longer pending.
  const std::uint64_t done = completed_in_batch_;
  completed_in_batch_ = 0;
  admission_->Release(done);
  for (const std::shared_ptr<JobContext>& context : touched) {
    AggregatorState& a = context->agg;
    if (!a.finished && a.end_seen && a.completed == a.total) {
      co_await FinishJob(*context);
    }
  }
  touched.clear();
}

Task<> PipelineRuntime::FinishJob(JobContext& c) {
  AggregatorState& a = c.agg;
  a.finished = true;
  if (a.window_aggregator) {
    // The last, partial window goes out before the job's `done`.
    CloseWindow(a, a.window_number + 1);
    if (!a.records.empty()) {
      // Nothing is left to cancel.
      co_await AppendWhenRoom(*c.job, a.records, 0, 0);
      a.records = {};
    }
    a.window_aggregator.reset();
  }
  nlohmann::json aggregate =
      a.aggregator ? a.aggregator->Result() : nlohmann::json(nullptr);
  a.aggregator.reset();
  a.partial.clear();
  a.held.clear();
  const std::optional<jobs::JobState> state =
      c.job->Finish(std::move(aggregate));
  if (!state) co_return;
  switch (*state) {
    case jobs::JobState::kDone:
      m_jobs_done_.Increment();
      break;
    case jobs::JobState::kFailed:
      m_jobs_failed_.Increment();
      break;
    default:
      m_jobs_cancelled_.Increment();
      break;
  }
  m_jobs_active_.Decrement();
  if (on_finished_) on_finished_(c.job);
}

}  // namespace sluice::engine
