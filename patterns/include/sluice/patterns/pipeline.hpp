// Pipeline<T> and StageOptions: stages chained by channels, each stage a
// fan-out worker pool with its own worker count and output buffer (Go's
// pipeline pattern: every stage a set of goroutines reading the previous
// stage's channel and closing its own when done). A stage maps (T -> U),
// filters (T -> std::optional<U>, or a bool predicate), or splits
// (T -> std::vector<U>); an ordered stage emits results in input order.
// A stage given shard_by(key) routes each item by its key, so items with
// equal keys are processed by one worker in arrival order (per-key order)
// while different keys run in parallel.
//
// A pipeline made by Pipeline<T>::from(rt, ...) runs every stage's workers
// (and a sharded or ordered stage's router, and an ordered stage's emitter)
// as tasks on the Runtime `rt` instead of threads: stage functions may then
// return a Task of their result and co_await, and a stage may have 10,000
// workers. Results and rules are those of the thread form.
//
// Thread-safety: output(), errors() and stop() may be called from any thread;
// adding stages, moving and destruction only by the owner (in the task form:
// from a thread that is not one of the runtime's).
#ifndef SLUICE_PATTERNS_PIPELINE_HPP_
#define SLUICE_PATTERNS_PIPELINE_HPP_

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <stop_token>
#include <type_traits>
#include <utility>
#include <vector>

#include "sluice/patterns/channel.hpp"
#include "sluice/patterns/detail/async_batch.hpp"
#include "sluice/patterns/detail/reorder_window.hpp"
#include "sluice/patterns/detail/task_group.hpp"
#include "sluice/patterns/detail/thread_annotations.hpp"
#include "sluice/patterns/detail/thread_group.hpp"
#include "sluice/patterns/fan_out.hpp"
#include "sluice/patterns/generator.hpp"
#include "sluice/patterns/mutex.hpp"
#include "sluice/patterns/runtime.hpp"

namespace sluice {

struct StageOptions {
  std::size_t workers = 1;  // threads (task form: tasks) of this stage
  std::size_t buffer = 64;  // capacity of the stage's output channel
  bool ordered = false;     // emit results in the order inputs arrived
  // Most items one worker takes at once when several are ready. A worker
  // takes at most its fair share of what is queued, so slow (I/O-bound)
  // stages still spread items over all workers; cheap stages save a hand-off
  // per item.
  std::size_t batch = 64;
  // Ordered stages: most results held waiting for an earlier one; 0 = auto
  // (4 x workers x batch, at least `buffer`; in the task form
  // 4 x (workers + batch), at least `buffer`, so that 10,000 workers do not
  // reserve millions of slots).
  std::size_t reorder_window = 0;
};

// Hash-sharding of a stage's fan-out, made by shard_by(). Thread-
// compatible; the stage calls `key` from one thread (its router).
template <class KeyFn>
struct ShardBy {
  KeyFn key;
};

// Routes a stage's items by key: `key(const T&)` returns any value
// std::hash can hash; items whose keys are equal go to the same worker, in
// the order the stage received them. The cost: a hot key is limited to one
// worker, and one router thread per stage does the routing (a worker whose
// queue is full holds the router, and so every key, until it has room).
template <class KeyFn>
ShardBy<KeyFn> shard_by(KeyFn key) {
  return ShardBy<KeyFn>{std::move(key)};
}

namespace detail {

enum class StageKind { kMap, kFilter, kSplit };

// The key type of an unsharded stage.
struct NoKey {};

template <class Optional>
struct OptionalValue {
  using type = typename Optional::value_type;
};

// What a stage function returns for a T, a Task<R> taken as R (the task form
// awaits it).
template <class T, class Fn>
using StageResult = typename Unwrap<std::invoke_result_t<Fn&, T>>::type;
template <class T, class Fn>
inline constexpr bool kStageFnAsync =
    Unwrap<std::invoke_result_t<Fn&, T>>::kAsync;

template <class T, class Fn, StageKind kKind>
struct StageOutput;
template <class T, class Fn>
struct StageOutput<T, Fn, StageKind::kMap> {
  static constexpr bool kPredicate = false;
  using type = StageResult<T, Fn>;
};
template <class T, class Fn>
struct StageOutput<T, Fn, StageKind::kFilter> {
  using Result = StageResult<T, Fn>;
  static constexpr bool kPredicate =
      std::is_same_v<std::remove_cvref_t<Result>, bool>;
  using type = typename std::conditional_t<kPredicate, std::type_identity<T>,
                                           OptionalValue<Result>>::type;
};
template <class T, class Fn>
struct StageOutput<T, Fn, StageKind::kSplit> {
  static constexpr bool kPredicate = false;
  using type = typename StageResult<T, Fn>::value_type;
};

// Type-erased handle a Pipeline keeps for each running stage.
class StageBase {
 public:
  virtual ~StageBase() = default;
  virtual void request_stop() = 0;
  virtual void join() = 0;
  [[nodiscard]] virtual std::size_t errors() const = 0;
};

// Keeps a Generator alive as the source of a pipeline.
template <class T>
class GeneratorStage final : public StageBase {
 public:
  explicit GeneratorStage(Generator<T>&& gen) : gen_(std::move(gen)) {}
  Channel<T>& channel() { return gen_.channel(); }
  void request_stop() override { gen_.stop(); }
  void join() override {}  // ~Generator joins
  [[nodiscard]] std::size_t errors() const override { return 0; }

 private:
  Generator<T> gen_;
};

// One stage: `workers` threads reading `in`, applying fn, writing `out`.
// Sharded (KeyFn not NoKey): one more thread, the router, reads `in` and
// hands each item, numbered, to the queue of the worker its key hashes to;
// each worker reads only its own queue.
// Thread-safety: see Pipeline; fields below are grouped by what guards them.
template <class In, class Out, class Fn, StageKind kKind, class KeyFn = NoKey>
class Stage final : public StageBase {
  static constexpr bool kSharded = !std::is_same_v<KeyFn, NoKey>;
  // What a shard queue carries: the item and its arrival number (the
  // reorder window's seq for ordered stages).
  using Numbered = std::pair<std::uint64_t, In>;

 public:
  Stage(Channel<In>& in, Fn fn, const StageOptions& o, KeyFn key = {})
      : in_(in),
        fn_(std::move(fn)),
        key_(std::move(key)),
        opts_(o),
        out_(o.buffer),
        done_(o.workers),
        window_(
            o.reorder_window != 0
                ? o.reorder_window
                : std::max(4 * o.workers * std::max<std::size_t>(o.batch, 1),
                           std::max<std::size_t>(o.buffer, 1))) {
    if constexpr (kSharded) {
      // Each worker's queue holds a batch or two: enough to keep it busy,
      // small enough that a hot key holds the router back early.
      const std::size_t shard_capacity =
          std::max<std::size_t>(2 * std::max<std::size_t>(o.batch, 1), 16);
      for (std::size_t i = 0; i < o.workers; ++i) {
        shards_.push_back(std::make_unique<Channel<Numbered>>(shard_capacity));
      }
    }
    for (std::size_t i = 0; i < o.workers; ++i) {
      threads_.spawn([this, i](std::stop_token st) {
        (void)i;  // only the sharded form reads its shard's index
        if constexpr (kSharded) {
          RunShard(*shards_[i], st);
        } else if (opts_.ordered) {
          RunOrdered(st);
        } else {
          RunUnordered(st);
        }
        if (done_.arrive()) out_.close();
      });
    }
    if constexpr (kSharded) {
      threads_.spawn([this](std::stop_token st) { RunRouter(st); });
    }
  }

  ~Stage() override {
    threads_.request_stop();
    threads_.join();
  }

  Channel<Out>& output() { return out_; }
  void request_stop() override { threads_.request_stop(); }
  void join() override { threads_.join(); }
  [[nodiscard]] std::size_t errors() const override { return errors_.count(); }

 private:
  // How many ready items one worker takes: its fair share, within [1, batch].
  std::size_t Share() const {
    const std::size_t fair = in_.size() / opts_.workers;
    const std::size_t batch = std::max<std::size_t>(opts_.batch, 1);
    return fair < 1 ? 1 : (fair < batch ? fair : batch);
  }

  // Applies fn to one item, appending what it produces to `results`. An
  // exception drops the item and is counted.
  void Apply(In& item, std::vector<Out>& results) {
    try {
      if constexpr (kKind == StageKind::kMap) {
        results.push_back(fn_(std::move(item)));
      } else if constexpr (kKind == StageKind::kFilter) {
        if constexpr (StageOutput<In, Fn, kKind>::kPredicate) {
          if (fn_(std::as_const(item))) results.push_back(std::move(item));
        } else {
          if (auto r = fn_(std::move(item))) results.push_back(std::move(*r));
        }
      } else {
        for (auto& part : fn_(std::move(item)))
          results.push_back(std::move(part));
      }
    } catch (...) {
      errors_.record(std::current_exception());
    }
  }

  void RunUnordered(std::stop_token st) {
    std::vector<In> batch;
    std::vector<Out> results;
    while (in_.recv_many(batch, Share(), st) > 0) {
      for (In& item : batch) Apply(item, results);
      batch.clear();
      if (results.empty()) continue;
      const bool sent_all = out_.send_many(results, st) == results.size();
      results.clear();
      if (!sent_all) return;
    }
  }

  void RunOrdered(std::stop_token st) {
    std::vector<In> batch;
    std::vector<Out> results;
    for (;;) {
      std::uint64_t first = 0;
      {
        // Receiving and numbering are one step, so seqs follow input order.
        MutexLock lock(&seq_mu_);
        if (in_.recv_many(batch, Share(), st) == 0) return;
        first = next_seq_;
        next_seq_ += batch.size();
      }
      for (std::size_t i = 0; i < batch.size(); ++i) {
        Apply(batch[i], results);
        if (!Deposit(first + i, results, st)) return;
        results.clear();
      }
      batch.clear();
    }
  }

  // The router of a sharded stage: numbers the items in arrival order and
  // sends each to its key's worker queue, then closes every queue.
  void RunRouter(std::stop_token st) {
    std::vector<In> batch;
    std::vector<std::vector<Numbered>> routed(shards_.size());
    std::uint64_t next_seq = 0;
    bool stopped = false;
    while (!stopped && in_.recv_many(batch, 64, st) > 0) {
      for (In& item : batch) {
        std::size_t shard = 0;
        try {
          using Key = std::decay_t<std::invoke_result_t<KeyFn&, const In&>>;
          shard = std::hash<Key>{}(key_(std::as_const(item))) % shards_.size();
        } catch (...) {
          // The item is still processed (by worker 0); the failure counts.
          errors_.record(std::current_exception());
        }
        routed[shard].emplace_back(next_seq++, std::move(item));
      }
      batch.clear();
      for (std::size_t i = 0; i < shards_.size() && !stopped; ++i) {
        if (routed[i].empty()) continue;
        stopped = shards_[i]->send_many(routed[i], st) != routed[i].size();
        routed[i].clear();
      }
    }
    for (auto& shard : shards_) shard->close();
  }

  // A sharded stage's worker: its own queue, in order; ordered stages put
  // the results in the reorder window under the router's numbers.
  void RunShard(Channel<Numbered>& queue, std::stop_token st) {
    std::vector<Numbered> batch;
    std::vector<Out> results;
    const std::size_t max_batch = std::max<std::size_t>(opts_.batch, 1);
    while (queue.recv_many(batch, max_batch, st) > 0) {
      for (Numbered& numbered : batch) {
        Apply(numbered.second, results);
        if (opts_.ordered) {
          if (!Deposit(numbered.first, results, st)) return;
          results.clear();
        }
      }
      batch.clear();
      if (opts_.ordered || results.empty()) continue;
      const bool sent_all = out_.send_many(results, st) == results.size();
      results.clear();
      if (!sent_all) return;
    }
  }

  // Puts the results of item `seq` into the reorder window and emits every
  // result that is now in order. Emitting under reorder_mu_ keeps the runs
  // of different workers from overtaking each other. False when stopped.
  bool Deposit(std::uint64_t seq, std::vector<Out>& results, std::stop_token st)
      SLUICE_EXCLUDES(reorder_mu_) {
    MutexLock lock(&reorder_mu_);
    if (!window_.fits(seq) &&
        !room_.Wait(&reorder_mu_, st, [&]() SLUICE_REQUIRES(reorder_mu_) {
          return window_.fits(seq);
        })) {
      return false;
    }
    window_.put(seq, std::move(results));
    window_.take_ready(ready_);
    if (ready_.empty()) return true;
    for (std::vector<Out>& run : ready_) {
      for (Out& v : run) flat_.push_back(std::move(v));
    }
    ready_.clear();
    const bool sent_all = out_.send_many(flat_, st) == flat_.size();
    flat_.clear();
    room_.SignalAll();
    return sent_all;
  }

  // Immutable after construction (fn_ is called concurrently; key_ only by
  // the router thread).
  Channel<In>& in_;
  Fn fn_;
  KeyFn key_;
  const StageOptions opts_;
  // Sharded stages: one queue per worker, sent to by the router only, which
  // closes them all when it ends. The vector itself never changes.
  std::vector<std::unique_ptr<Channel<Numbered>>> shards_;

  Channel<Out> out_;
  DoneLatch done_;
  ErrorTally errors_;

  // Ordered mode: numbering of inputs.
  Mutex seq_mu_;
  std::uint64_t next_seq_ SLUICE_GUARDED_BY(seq_mu_) = 0;

  // Ordered mode: reordering of results.
  Mutex reorder_mu_;
  CondVarAny room_;  // the window moved on
  ReorderWindow<std::vector<Out>> window_ SLUICE_GUARDED_BY(reorder_mu_);
  std::vector<std::vector<Out>> ready_ SLUICE_GUARDED_BY(reorder_mu_);
  std::vector<Out> flat_ SLUICE_GUARDED_BY(reorder_mu_);

  ThreadGroup threads_;  // last: joined before the rest is destroyed
};

// The task form of Stage: `workers` tasks on a Runtime instead of threads;
// fn may return a Task of its result and co_await (no thread is held while
// it waits). Same results and rules as Stage.
// Unordered, unsharded: the workers read `in` directly. Otherwise one more
// task, the router, reads `in` and numbers each item in arrival order: a
// sharded stage routes it to the queue of the worker its key hashes to, an
// ordered unsharded one to a queue all workers share. Ordered stages have a
// third kind of task, the emitter: workers put each item's results into the
// reorder window (never waiting), and the emitter sends the runs that are in
// order to the output. The router takes an item only while fewer than
// `window` are in flight (numbered, not yet emitted), so every number fits
// the window and memory stays bounded: where the thread form's worker waits
// for room, the task form's router suspends.
// Thread-safety: see Pipeline; fields below are grouped by what guards them.
template <class In, class Out, class Fn, StageKind kKind, class KeyFn = NoKey>
class TaskStage final : public StageBase {
  static constexpr bool kSharded = !std::is_same_v<KeyFn, NoKey>;
  using Numbered = std::pair<std::uint64_t, In>;
  using Result = StageResult<In, Fn>;

 public:
  TaskStage(Runtime& rt, Channel<In>& in, Fn fn, const StageOptions& o,
            KeyFn key = {})
      : in_(in),
        fn_(std::move(fn)),
        key_(std::move(key)),
        opts_(o),
        routed_(kSharded || o.ordered),
        out_(o.buffer),
        done_(o.workers),
        window_size_(o.reorder_window != 0
                         ? o.reorder_window
                         : std::max(4 * (o.workers + o.batch),
                                    std::max<std::size_t>(o.buffer, 1))),
        window_(window_size_),
        tasks_(rt) {
    const std::size_t queues = !routed_ ? 0 : (kSharded ? o.workers : 1);
    const std::size_t queue_capacity =
        std::max<std::size_t>(2 * std::max<std::size_t>(o.batch, 1), 16);
    for (std::size_t i = 0; i < queues; ++i) {
      queues_.push_back(std::make_unique<Channel<Numbered>>(queue_capacity));
    }
    for (std::size_t i = 0; i < o.workers; ++i) {
      tasks_.spawn([this, i](std::stop_token st) -> Task<> {
        co_await RunWorker(i, st);
      });
    }
    if (routed_) {
      tasks_.spawn(
          [this](std::stop_token st) -> Task<> { co_await RunRouter(st); });
    }
    if (opts_.ordered) {
      tasks_.spawn(
          [this](std::stop_token st) -> Task<> { co_await RunEmitter(st); });
    }
  }

  ~TaskStage() override {
    tasks_.request_stop();
    tasks_.join();
  }

  Channel<Out>& output() { return out_; }
  void request_stop() override { tasks_.request_stop(); }
  void join() override { tasks_.join(); }
  [[nodiscard]] std::size_t errors() const override { return errors_.count(); }

 private:
  // How many ready items a worker takes from `queue`: all of a batch from
  // its own queue, else its fair share, within [1, batch].
  template <class Item>
  std::size_t Take(const Channel<Item>& queue) const {
    const std::size_t batch = std::max<std::size_t>(opts_.batch, 1);
    if constexpr (kSharded) return batch;
    const std::size_t fair = queue.size() / opts_.workers;
    return fair < 1 ? 1 : (fair < batch ? fair : batch);
  }

  // fn applied to `item`, awaited when fn returns a Task. A predicate sees
  // the item (which it keeps); any other fn takes it.
  Task<Result> Call(In& item) {
    if constexpr (StageOutput<In, Fn, kKind>::kPredicate) {
      if constexpr (kStageFnAsync<In, Fn>) {
        co_return co_await fn_(std::as_const(item));
      } else {
        co_return fn_(std::as_const(item));
      }
    } else if constexpr (kStageFnAsync<In, Fn>) {
      co_return co_await fn_(std::move(item));
    } else {
      co_return fn_(std::move(item));
    }
  }

  // Stage::Apply's task form: appends what fn makes of `item` to `results`.
  // An exception drops the item and is counted.
  Task<> Apply(In& item, std::vector<Out>& results) {
    std::exception_ptr error;
    try {
      Result r = co_await Call(item);
      if constexpr (kKind == StageKind::kMap) {
        results.push_back(std::move(r));
      } else if constexpr (StageOutput<In, Fn, kKind>::kPredicate) {
        if (r) results.push_back(std::move(item));
      } else if constexpr (kKind == StageKind::kFilter) {
        if (r) results.push_back(std::move(*r));
      } else {
        for (auto& part : r) results.push_back(std::move(part));
      }
    } catch (...) {
      error = std::current_exception();
    }
    if (error) errors_.record(error);
  }

  Task<> RunWorker(std::size_t i, std::stop_token st) {
    if (routed_) {
      co_await RunQueue(*queues_[kSharded ? i : 0], st);
    } else {
      co_await RunDirect(st);
    }
    if (!done_.arrive()) co_return;
    if (opts_.ordered) {
      {
        MutexLock lock(&mu_);
        workers_done_ = true;
      }
      ready_.notify();
    } else {
      out_.close();
    }
  }

  // An unordered, unsharded worker: reads `in`, sends its results.
  Task<> RunDirect(std::stop_token st) {
    std::vector<In> batch;
    std::vector<Out> results;
    for (;;) {
      const std::size_t n = co_await async_recv_many(in_, batch, Take(in_), st);
      if (n == 0) co_return;
      for (In& item : batch) co_await Apply(item, results);
      batch.clear();
      const bool sent = co_await async_send_all(out_, results, st);
      if (!sent) co_return;
    }
  }

  // A routed worker: reads its queue in order; an ordered stage's worker
  // deposits each item's results under the router's number.
  Task<> RunQueue(Channel<Numbered>& queue, std::stop_token st) {
    std::vector<Numbered> batch;
    std::vector<Out> results;
    for (;;) {
      const std::size_t n =
          co_await async_recv_many(queue, batch, Take(queue), st);
      if (n == 0) co_return;
      for (Numbered& numbered : batch) {
        co_await Apply(numbered.second, results);
        if (opts_.ordered) Deposit(numbered.first, results);
      }
      batch.clear();
      if (opts_.ordered) continue;
      const bool sent = co_await async_send_all(out_, results, st);
      if (!sent) co_return;
    }
  }

  // The queue `item` goes to: its key's worker (a key function that throws
  // counts as an error and sends the item to worker 0), or the shared one.
  std::size_t QueueOf(const In& item) {
    if constexpr (kSharded) {
      try {
        using Key = std::decay_t<std::invoke_result_t<KeyFn&, const In&>>;
        return std::hash<Key>{}(key_(item)) % queues_.size();
      } catch (...) {
        errors_.record(std::current_exception());
      }
    }
    (void)item;
    return 0;
  }

  // Numbers the items in arrival order and hands each to its queue (for an
  // ordered stage only once it fits the window), then closes every queue.
  Task<> RunRouter(std::stop_token st) {
    std::vector<In> batch;
    std::uint64_t next_seq = 0;
    bool open = true;
    while (open) {
      const std::size_t n = co_await async_recv_many(in_, batch, 64, st);
      if (n == 0) break;
      for (In& item : batch) {
        if (opts_.ordered) {
          open = co_await WaitForRoom(st);
          if (!open) break;
        }
        Channel<Numbered>& queue = *queues_[QueueOf(item)];
        Numbered numbered(next_seq++, std::move(item));
        open = co_await queue.async_send(std::move(numbered), st);
        if (!open) break;
      }
      batch.clear();
    }
    for (auto& queue : queues_) queue->close();
  }

  // The router's wait until fewer than window_size_ items are in flight;
  // counts the next one in. False if stopped first.
  Task<bool> WaitForRoom(std::stop_token st) SLUICE_EXCLUDES(mu_) {
    for (;;) {
      bool room = false;
      {
        MutexLock lock(&mu_);
        room = in_flight_ < window_size_;
        if (room) ++in_flight_;
      }
      if (room) co_return true;
      const bool woke = co_await room_.wait(st);
      if (!woke) co_return false;
    }
  }

  // Puts the results of item `seq` into the reorder window (it fits: see
  // WaitForRoom) and wakes the emitter if they are next. Never waits.
  void Deposit(std::uint64_t seq, std::vector<Out>& results)
      SLUICE_EXCLUDES(mu_) {
    bool next = false;
    {
      MutexLock lock(&mu_);
      window_.put(seq, std::move(results));
      next = seq == window_.next();
    }
    results.clear();
    if (next) ready_.notify();
  }

  // Sends the runs of results that are in order to the output; closes it
  // once every worker has finished and all was sent (or on stop).
  Task<> RunEmitter(std::stop_token st) SLUICE_EXCLUDES(mu_) {
    std::vector<std::vector<Out>> runs;
    std::vector<Out> flat;
    for (;;) {
      bool finished = false;
      {
        MutexLock lock(&mu_);
        in_flight_ -= window_.take_ready(runs);
        finished = runs.empty() && workers_done_;
      }
      if (finished) break;
      if (runs.empty()) {
        const bool woke = co_await ready_.wait(st);
        if (!woke) break;
        continue;
      }
      room_.notify();
      for (std::vector<Out>& run : runs) {
        for (Out& v : run) flat.push_back(std::move(v));
      }
      runs.clear();
      const bool sent = co_await async_send_all(out_, flat, st);
      if (!sent) break;
    }
    out_.close();
  }

  // Immutable after construction (fn_ is called concurrently; key_ only by
  // the router).
  Channel<In>& in_;
  Fn fn_;
  KeyFn key_;
  const StageOptions opts_;
  const bool routed_;  // a router task feeds queues_
  // Routed stages: the router's queues (one per worker when sharded, else
  // one shared), closed by the router when it ends. The vector never changes.
  std::vector<std::unique_ptr<Channel<Numbered>>> queues_;

  Channel<Out> out_;
  DoneLatch done_;
  ErrorTally errors_;

  // Ordered mode: the reorder window and what is in flight.
  const std::size_t window_size_;
  Mutex mu_;
  ReorderWindow<std::vector<Out>> window_ SLUICE_GUARDED_BY(mu_);
  std::size_t in_flight_ SLUICE_GUARDED_BY(mu_) = 0;  // numbered, not emitted
  bool workers_done_ SLUICE_GUARDED_BY(mu_) = false;
  TaskWake ready_;  // the emitter's: results may be in order
  TaskWake room_;   // the router's: the window moved on

  TaskGroup tasks_;  // last: its tasks end before the rest is destroyed
};

}  // namespace detail

template <class T>
class Pipeline {
 public:
  // A pipeline reading `source`, which it does not own: the caller (the
  // sender) closes it when done, and keeps it alive as long as the pipeline.
  static Pipeline from(Channel<T>& source) {
    return Pipeline(&source, {}, nullptr);
  }

  // A pipeline that owns `gen` and reads its values.
  static Pipeline from(Generator<T>&& gen) {
    return FromGenerator(std::move(gen), nullptr);
  }

  // The task forms: as above, and every stage added later runs its workers
  // (and its router and emitter, if it has them) as tasks on `rt` instead of
  // threads, with the same results and rules. Their stage functions may also
  // return a Task of their result and co_await inside (then no thread is
  // held while one waits), so a stage may have 10,000 workers. `gen` may be
  // either form of Generator.
  // Requires: `rt` outlives the pipeline, which is destroyed (or assigned
  // to) from a thread that is not one of the runtime's; stage functions that
  // would block should co_await instead (a blocked one holds a runtime
  // thread).
  static Pipeline from(Runtime& rt, Channel<T>& source) {
    return Pipeline(&source, {}, &rt);
  }
  static Pipeline from(Runtime& rt, Generator<T>&& gen) {
    return FromGenerator(std::move(gen), &rt);
  }

  Pipeline(Pipeline&&) noexcept = default;
  Pipeline& operator=(Pipeline&& other) noexcept {
    if (this != &other) {
      shutdown();
      stages_ = std::move(other.stages_);
      out_ = other.out_;
      rt_ = other.rt_;
    }
    return *this;
  }
  Pipeline(const Pipeline&) = delete;
  Pipeline& operator=(const Pipeline&) = delete;

  // Requests stop on every stage, then joins them all.
  ~Pipeline() { shutdown(); }

  // Appends a stage applying fn: T -> U to every item. Starts it at once.
  // In a pipeline made by from(rt, ...) fn may also return Task<U> (and
  // likewise for filter and split below).
  // Requires: o.workers >= 1, and a fn returning a Task only in a pipeline
  // made by from(rt, ...) (std::invalid_argument otherwise).
  template <class Fn>
  [[nodiscard]] auto map(Fn fn, StageOptions o = {}) && {
    return std::move(*this).template add<detail::StageKind::kMap>(std::move(fn),
                                                                  o);
  }

  // Appends a stage that keeps an item when fn(item) returns a value
  // (fn: T -> std::optional<U>) or true (fn: bool(const T&)).
  template <class Fn>
  [[nodiscard]] auto filter(Fn fn, StageOptions o = {}) && {
    return std::move(*this).template add<detail::StageKind::kFilter>(
        std::move(fn), o);
  }

  // Appends a stage replacing each item by the elements fn returns
  // (fn: T -> std::vector<U>), in order.
  template <class Fn>
  [[nodiscard]] auto split(Fn fn, StageOptions o = {}) && {
    return std::move(*this).template add<detail::StageKind::kSplit>(
        std::move(fn), o);
  }

  // The same three stages, sharded by key (see shard_by): items with equal
  // keys go to one worker, in arrival order; with o.ordered the stage's
  // output is also in arrival order.
  template <class Fn, class KeyFn>
  [[nodiscard]] auto map(Fn fn, StageOptions o, ShardBy<KeyFn> by) && {
    return std::move(*this).template add<detail::StageKind::kMap>(
        std::move(fn), o, std::move(by.key));
  }
  template <class Fn, class KeyFn>
  [[nodiscard]] auto filter(Fn fn, StageOptions o, ShardBy<KeyFn> by) && {
    return std::move(*this).template add<detail::StageKind::kFilter>(
        std::move(fn), o, std::move(by.key));
  }
  template <class Fn, class KeyFn>
  [[nodiscard]] auto split(Fn fn, StageOptions o, ShardBy<KeyFn> by) && {
    return std::move(*this).template add<detail::StageKind::kSplit>(
        std::move(fn), o, std::move(by.key));
  }

  // The last stage's output: closes once the source closed and everything
  // was processed (or on stop).
  Channel<T>& output() { return *out_; }
  typename Channel<T>::Iterator begin() { return out_->begin(); }
  std::default_sentinel_t end() { return {}; }

  // Items dropped because a stage function threw, over all stages.
  [[nodiscard]] std::size_t errors() const {
    std::size_t n = 0;
    for (const auto& s : stages_) n += s->errors();
    return n;
  }

  // Asks every stage to end after its current item.
  void stop() {
    for (auto& s : stages_) s->request_stop();
  }

 private:
  template <class U>
  friend class Pipeline;

  Pipeline(Channel<T>* out,
           std::vector<std::unique_ptr<detail::StageBase>> stages, Runtime* rt)
      : stages_(std::move(stages)), out_(out), rt_(rt) {}

  static Pipeline FromGenerator(Generator<T>&& gen, Runtime* rt) {
    auto stage = std::make_unique<detail::GeneratorStage<T>>(std::move(gen));
    Channel<T>* out = &stage->channel();
    std::vector<std::unique_ptr<detail::StageBase>> stages;
    stages.push_back(std::move(stage));
    return Pipeline(out, std::move(stages), rt);
  }

  // Starts the stage: its workers are tasks on rt_ if there is one, else
  // threads.
  template <detail::StageKind kKind, class Fn, class KeyFn = detail::NoKey>
  auto add(Fn fn, const StageOptions& o, KeyFn key = {}) && {
    using U = typename detail::StageOutput<T, Fn, kKind>::type;
    if (o.workers == 0)
      throw std::invalid_argument("pipeline stage: workers must be >= 1");
    if (detail::kStageFnAsync<T, Fn> && rt_ == nullptr) {
      throw std::invalid_argument(
          "pipeline stage: a function returning a Task needs a pipeline made "
          "by Pipeline::from(rt, ...)");
    }
    Channel<U>* out = nullptr;
    if (rt_ != nullptr) {
      out = push<detail::TaskStage<T, U, Fn, kKind, KeyFn>>(
          *rt_, *out_, std::move(fn), o, std::move(key));
    } else if constexpr (!detail::kStageFnAsync<T, Fn>) {
      out = push<detail::Stage<T, U, Fn, kKind, KeyFn>>(*out_, std::move(fn), o,
                                                        std::move(key));
    }
    return Pipeline<U>(out, std::move(stages_), rt_);
  }

  // Makes a stage of type S from `args`, keeps it, returns its output.
  template <class S, class... Args>
  auto* push(Args&&... args) {
    auto stage = std::make_unique<S>(std::forward<Args>(args)...);
    auto* out = &stage->output();
    stages_.push_back(std::move(stage));
    return out;
  }

  // Every stage reads the channel of the one before it, so all are stopped
  // and joined before any is destroyed.
  void shutdown() {
    stop();
    for (auto& s : stages_) s->join();
    stages_.clear();
  }

  std::vector<std::unique_ptr<detail::StageBase>> stages_;
  Channel<T>* out_ = nullptr;
  Runtime* rt_ = nullptr;  // stages' workers are tasks on it, if set
};

}  // namespace sluice

#endif  // SLUICE_PATTERNS_PIPELINE_HPP_
