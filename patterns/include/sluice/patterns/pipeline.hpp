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
// Thread-safety: output(), errors() and stop() may be called from any thread;
// adding stages, moving and destruction only by the owner.
#ifndef SLUICE_PATTERNS_PIPELINE_HPP_
#define SLUICE_PATTERNS_PIPELINE_HPP_

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <type_traits>
#include <utility>
#include <vector>

#include "sluice/patterns/channel.hpp"
#include "sluice/patterns/detail/reorder_window.hpp"
#include "sluice/patterns/detail/thread_annotations.hpp"
#include "sluice/patterns/detail/thread_group.hpp"
#include "sluice/patterns/fan_out.hpp"
#include "sluice/patterns/generator.hpp"
#include "sluice/patterns/mutex.hpp"

namespace sluice {

struct StageOptions {
  std::size_t workers = 1;  // threads of this stage
  std::size_t buffer = 64;  // capacity of the stage's output channel
  bool ordered = false;     // emit results in the order inputs arrived
  // Most items one worker takes at once when several are ready. A worker
  // takes at most its fair share of what is queued, so slow (I/O-bound)
  // stages still spread items over all workers; cheap stages save a hand-off
  // per item.
  std::size_t batch = 64;
  // Ordered stages: most results held waiting for an earlier one; 0 = auto
  // (4 x workers x batch, at least `buffer`).
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

template <class T, class Fn, StageKind kKind>
struct StageOutput;
template <class T, class Fn>
struct StageOutput<T, Fn, StageKind::kMap> {
  using type = std::invoke_result_t<Fn&, T>;
};
template <class T, class Fn>
struct StageOutput<T, Fn, StageKind::kFilter> {
  using Result = std::invoke_result_t<Fn&, T>;
  static constexpr bool kPredicate =
      std::is_same_v<std::remove_cvref_t<Result>, bool>;
  using type = typename std::conditional_t<kPredicate, std::type_identity<T>,
                                           OptionalValue<Result>>::type;
};
template <class T, class Fn>
struct StageOutput<T, Fn, StageKind::kSplit> {
  using type = typename std::invoke_result_t<Fn&, T>::value_type;
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

}  // namespace detail

template <class T>
class Pipeline {
 public:
  // A pipeline reading `source`, which it does not own: the caller (the
  // sender) closes it when done, and keeps it alive as long as the pipeline.
  static Pipeline from(Channel<T>& source) { return Pipeline(&source, {}); }

  // A pipeline that owns `gen` and reads its values.
  static Pipeline from(Generator<T>&& gen) {
    auto stage = std::make_unique<detail::GeneratorStage<T>>(std::move(gen));
    Channel<T>* out = &stage->channel();
    std::vector<std::unique_ptr<detail::StageBase>> stages;
    stages.push_back(std::move(stage));
    return Pipeline(out, std::move(stages));
  }

  Pipeline(Pipeline&&) noexcept = default;
  Pipeline& operator=(Pipeline&& other) noexcept {
    if (this != &other) {
      shutdown();
      stages_ = std::move(other.stages_);
      out_ = other.out_;
    }
    return *this;
  }
  Pipeline(const Pipeline&) = delete;
  Pipeline& operator=(const Pipeline&) = delete;

  // Requests stop on every stage, then joins them all.
  ~Pipeline() { shutdown(); }

  // Appends a stage applying fn: T -> U to every item. Starts it at once.
  // Requires: o.workers >= 1 (std::invalid_argument otherwise).
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
           std::vector<std::unique_ptr<detail::StageBase>> stages)
      : stages_(std::move(stages)), out_(out) {}

  template <detail::StageKind kKind, class Fn, class KeyFn = detail::NoKey>
  auto add(Fn fn, const StageOptions& o, KeyFn key = {}) && {
    using U = typename detail::StageOutput<T, Fn, kKind>::type;
    if (o.workers == 0)
      throw std::invalid_argument("pipeline stage: workers must be >= 1");
    auto stage = std::make_unique<detail::Stage<T, U, Fn, kKind, KeyFn>>(
        *out_, std::move(fn), o, std::move(key));
    Channel<U>* out = &stage->output();
    stages_.push_back(std::move(stage));
    return Pipeline<U>(out, std::move(stages_));
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
};

}  // namespace sluice

#endif  // SLUICE_PATTERNS_PIPELINE_HPP_
