// select and async_select: Go's select statement over sluice channels, for
// threads (blocks) and tasks (suspends).
//
//   std::size_t i = sluice::select(
//       sluice::on_recv(a, [](std::optional<A> v) { ... }),   // 0
//       sluice::on_send(b, value, [](bool sent) { ... }),      // 1
//       sluice::on_timeout(100ms, [] { ... }),                 // 2 (optional)
//       sluice::on_default([] { ... }));                       // 3 (optional)
//   std::size_t j = co_await sluice::async_select(/* the same cases */);
//
// Rules, as in Go: select waits until at least one case can proceed, then
// performs exactly one of the ready cases, chosen uniformly at random, runs
// its handler and returns its argument position. A case that is not chosen
// has no effect: nothing is received from its channel, and an on_send's
// value (which the case holds, copied or moved in) is dropped. A receive on
// a closed channel is ready and hands nullopt to its handler; a send on a
// closed channel is ready and hands false (Go panics; sluice reports).
// on_default makes select never block: it runs when nothing is ready.
// on_timeout runs when nothing became ready within its duration, counted
// from the call. At most one of each. Works on unbuffered channels: a select
// waiting to send or receive there is a waiting peer for try_recv/try_send.
//
// Stop tokens: select(st, cases...) and async_select(st, cases...) return
// kSelectStopped, having run no handler and changed nothing, when `st` is
// (or becomes) stopped first.
//
// Thread-safety: any number of threads and tasks may select over the same
// channels at once. The case objects that on_recv etc. return are consumed
// by one select call.
#ifndef SLUICE_PATTERNS_SELECT_HPP_
#define SLUICE_PATTERNS_SELECT_HPP_

#include <chrono>
#include <cstddef>
#include <optional>
#include <stop_token>
#include <tuple>
#include <type_traits>
#include <utility>

#include "sluice/patterns/channel.hpp"
#include "sluice/patterns/detail/select_core.hpp"
#include "sluice/patterns/runtime.hpp"

namespace sluice {

// What select(st, ...) returns when it was stopped before any case ran.
inline constexpr std::size_t kSelectStopped = detail::kStopped;

namespace detail {

template <class T, class F>
struct RecvSpec {
  Channel<T>* ch;
  F fn;
};
template <class T, class F>
struct SendSpec {
  Channel<T>* ch;
  T value;
  F fn;
};
template <class F>
struct TimeoutSpec {
  Clock::duration timeout;
  F fn;
};
template <class F>
struct DefaultSpec {
  F fn;
};

// The operation state of one case for the duration of one select.
template <class Spec>
struct CaseOp;

template <class T, class F>
struct CaseOp<RecvSpec<T, F>> {
  RecvOp<T> op;
  explicit CaseOp(RecvSpec<T, F>& spec) : op(spec.ch) {}
  CaseBase* base() { return &op; }
  void run(RecvSpec<T, F>& spec) { spec.fn(op.take()); }
};

template <class T, class F>
struct CaseOp<SendSpec<T, F>> {
  SendOp<T> op;
  explicit CaseOp(SendSpec<T, F>& spec) : op(spec.ch, &spec.value) {}
  CaseBase* base() { return &op; }
  void run(SendSpec<T, F>& spec) { spec.fn(op.sent()); }
};

template <class F>
struct CaseOp<TimeoutSpec<F>> {
  explicit CaseOp(TimeoutSpec<F>& /*spec*/) {}
  static CaseBase* base() { return nullptr; }
  static void run(TimeoutSpec<F>& spec) { spec.fn(); }
};

template <class F>
struct CaseOp<DefaultSpec<F>> {
  explicit CaseOp(DefaultSpec<F>& /*spec*/) {}
  static CaseBase* base() { return nullptr; }
  static void run(DefaultSpec<F>& spec) { spec.fn(); }
};

template <class S>
inline constexpr bool kIsTimeout = false;
template <class F>
inline constexpr bool kIsTimeout<TimeoutSpec<F>> = true;
template <class S>
inline constexpr bool kIsDefault = false;
template <class F>
inline constexpr bool kIsDefault<DefaultSpec<F>> = true;

template <class... Specs>
constexpr int index_where(const bool (&flags)[sizeof...(Specs)]) {
  for (std::size_t i = 0; i < sizeof...(Specs); ++i) {
    if (flags[i]) return static_cast<int>(i);
  }
  return -1;
}

template <class... Specs>
void check_cases() {
  static_assert(sizeof...(Specs) > 0, "select needs at least one case");
  static_assert((0 + ... + (kIsTimeout<Specs> ? 1 : 0)) <= 1,
                "select takes at most one on_timeout");
  static_assert((0 + ... + (kIsDefault<Specs> ? 1 : 0)) <= 1,
                "select takes at most one on_default");
}

// The plan's fixed parts: where timeout and default are, and the deadline
// (counted from now).
template <class... Specs>
WaitPlan make_plan(std::span<CaseBase*> cases, std::span<WaitNode> nodes,
                   Specs&... specs) {
  constexpr bool timeouts[] = {kIsTimeout<Specs>...};
  constexpr bool defaults[] = {kIsDefault<Specs>...};
  WaitPlan plan{cases, nodes, index_where<Specs...>(timeouts),
                index_where<Specs...>(defaults), std::nullopt};
  auto set_deadline = [&](auto& spec) {
    if constexpr (kIsTimeout<std::remove_cvref_t<decltype(spec)>>) {
      plan.deadline = Clock::now() + spec.timeout;
    }
  };
  (set_deadline(specs), ...);
  return plan;
}

template <class... Specs, std::size_t... I>
void run_chosen(std::size_t chosen, std::tuple<CaseOp<Specs>...>& ops,
                std::index_sequence<I...> /*unused*/, Specs&... specs) {
  ((chosen == I ? std::get<I>(ops).run(specs) : void()), ...);
}

template <class... Specs, std::size_t... I>
std::size_t select_thread(std::index_sequence<I...> seq,
                          const std::stop_token& st, Specs&... specs) {
  std::tuple<CaseOp<Specs>...> ops(specs...);
  CaseBase* cases[] = {std::get<I>(ops).base()...};
  WaitNode nodes[sizeof...(Specs)];
  WaitPlan plan = make_plan(cases, nodes, specs...);
  const std::size_t chosen = wait_thread(plan, st);
  run_chosen(chosen, ops, seq, specs...);
  return chosen;
}

// What async_select returns: the select's cases and their operation state,
// inside the awaiting coroutine's frame. A select that can finish at once
// (a case ready, or on_default) does so in await_ready, with no coroutine
// frame; only one that must wait runs a wait_task. Not copyable or movable:
// awaited where it is made.
template <class... Specs>
class [[nodiscard]] SelectAwaiter {
 public:
  SelectAwaiter(Clock::time_point start, std::stop_token st, Specs... specs)
      : SelectAwaiter(std::index_sequence_for<Specs...>{}, start, std::move(st),
                      std::move(specs)...) {}
  SelectAwaiter(const SelectAwaiter&) = delete;
  SelectAwaiter& operator=(const SelectAwaiter&) = delete;

  bool await_ready() {
    if (st_.stop_requested()) return true;  // chosen_ is kStopped
    if (const int c = poll_unlocked(plan_); c >= 0) return chose(c);
    if (plan_.default_index < 0) return false;
    Parker unused;  // a round that may not block never parks
    const int c = poll_round(plan_, unused, false);
    return chose(c >= 0 ? c : plan_.default_index);
  }
  bool await_suspend(std::coroutine_handle<> h) {
    waited_ = true;
    wait_ = wait_task(plan_, std::move(st_));
    return wait_.operator co_await().await_suspend(h);
  }
  // Runs the chosen case's handler; returns its position (or kStopped).
  std::size_t await_resume() {
    if (waited_) chosen_ = wait_.operator co_await().await_resume();
    std::apply(
        [this](auto&... specs) {
          run_chosen(chosen_, ops_, std::index_sequence_for<Specs...>{},
                     specs...);
        },
        specs_);
    return chosen_;
  }

 private:
  template <std::size_t... I>
  SelectAwaiter(std::index_sequence<I...> /*unused*/, Clock::time_point start,
                std::stop_token st, Specs... specs)
      : st_(std::move(st)),
        specs_(std::move(specs)...),
        ops_(std::get<I>(specs_)...),
        cases_{std::get<I>(ops_).base()...},
        plan_(make_plan(cases_, nodes_, std::get<I>(specs_)...)) {
    // The timeout counts from the async_select call.
    if (plan_.deadline) *plan_.deadline -= Clock::now() - start;
  }

  bool chose(int c) {
    chosen_ = static_cast<std::size_t>(c);
    return true;
  }

  std::stop_token st_;
  std::tuple<Specs...> specs_;
  std::tuple<CaseOp<Specs>...> ops_;  // point into specs_
  CaseBase* cases_[sizeof...(Specs)];
  WaitNode nodes_[sizeof...(Specs)];
  WaitPlan plan_;
  std::size_t chosen_ = kStopped;
  bool waited_ = false;
  Task<std::size_t> wait_;
};

}  // namespace detail

// A case that receives from `ch` and calls fn(std::optional<T>): the value,
// or nullopt if the channel is closed and drained.
template <class T, class F>
detail::RecvSpec<T, std::decay_t<F>> on_recv(Channel<T>& ch, F&& fn) {
  return {&ch, std::forward<F>(fn)};
}

// A case that sends `value` (copied or moved into the case) on `ch` and
// calls fn(bool): true once delivered, false if the channel is closed.
template <class T, class U, class F>
detail::SendSpec<T, std::decay_t<F>> on_send(Channel<T>& ch, U&& value,
                                             F&& fn) {
  return {&ch, T(std::forward<U>(value)), std::forward<F>(fn)};
}

// A case that runs fn() if no other case was ready within `timeout`.
template <class Rep, class Period, class F>
detail::TimeoutSpec<std::decay_t<F>> on_timeout(
    std::chrono::duration<Rep, Period> timeout, F&& fn) {
  return {std::chrono::ceil<detail::Clock::duration>(timeout),
          std::forward<F>(fn)};
}

// A case that runs fn() at once if no other case is ready.
template <class F>
detail::DefaultSpec<std::decay_t<F>> on_default(F&& fn) {
  return {std::forward<F>(fn)};
}

// Blocks the calling thread until one case ran; returns its position.
template <class... Specs>
std::size_t select(std::stop_token st, Specs... specs) {
  detail::check_cases<Specs...>();
  return detail::select_thread(std::index_sequence_for<Specs...>{}, st,
                               specs...);
}
template <class... Specs>
std::size_t select(Specs... specs) {
  return select(std::stop_token{}, std::move(specs)...);
}

// The task form: `co_await async_select(...)` yields the position, as
// select() returns it. Only inside a task.
template <class... Specs>
detail::SelectAwaiter<Specs...> async_select(std::stop_token st,
                                             Specs... specs) {
  detail::check_cases<Specs...>();
  // The clock is read only for a timeout (a vDSO call per select adds up).
  constexpr bool kTimed = (detail::kIsTimeout<Specs> || ...);
  return detail::SelectAwaiter<Specs...>(
      kTimed ? detail::Clock::now() : detail::Clock::time_point{},
      std::move(st), std::move(specs)...);
}
template <class... Specs>
detail::SelectAwaiter<Specs...> async_select(Specs... specs) {
  return async_select(std::stop_token{}, std::move(specs)...);
}

}  // namespace sluice

#endif  // SLUICE_PATTERNS_SELECT_HPP_
