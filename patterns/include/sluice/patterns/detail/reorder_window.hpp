// ReorderWindow<V>: a bounded buffer that turns values arriving with sequence
// numbers in any order back into sequence order. The core of ordered fan-in
// and ordered pipeline stages.
//
// Thread-safety: none; the owner guards it with its own mutex.
#ifndef SLUICE_PATTERNS_DETAIL_REORDER_WINDOW_HPP_
#define SLUICE_PATTERNS_DETAIL_REORDER_WINDOW_HPP_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <utility>
#include <vector>

namespace sluice::detail {

template <class V>
class ReorderWindow {
 public:
  // Holds at most `window` values: those with next() <= seq < next() + window.
  explicit ReorderWindow(std::size_t window)
      : slots_(window == 0 ? 1 : window) {}

  [[nodiscard]] std::uint64_t next() const { return next_; }
  [[nodiscard]] std::size_t held() const { return held_; }

  // True when `seq` may be put now (it is inside the window).
  [[nodiscard]] bool fits(std::uint64_t seq) const {
    return seq < next_ + slots_.size();
  }

  // Stores `value` under `seq`. Requires: fits(seq), seq >= next(), and no
  // value is held under seq yet. A seq below next() (already skipped) is
  // dropped and false returned.
  bool put(std::uint64_t seq, V value) {
    if (seq < next_) return false;
    slot(seq).emplace(std::move(value));
    ++held_;
    return true;
  }

  // Moves the run of consecutive values starting at next() into `out`, in
  // order, and advances next() past them. Returns how many were moved.
  std::size_t take_ready(std::vector<V>& out) {
    std::size_t n = 0;
    for (;;) {
      std::optional<V>& s = slot(next_);
      if (!s) return n;
      out.push_back(std::move(*s));
      s.reset();
      --held_;
      ++next_;
      ++n;
    }
  }

  // Gives up on missing seqs below `limit`: advances next() up to the
  // smallest value held or to `limit`, whichever comes first. Returns false
  // when next() did not move.
  bool skip_to(std::uint64_t limit) {
    const std::uint64_t before = next_;
    if (held_ == 0) {
      if (limit != UINT64_MAX && limit > next_) next_ = limit;
    } else {
      // Bounded by the window: a held value lies within it.
      while (next_ < limit && !slot(next_)) ++next_;
    }
    return next_ != before;
  }

 private:
  std::optional<V>& slot(std::uint64_t seq) {
    return slots_[seq % slots_.size()];
  }

  std::vector<std::optional<V>> slots_;
  std::uint64_t next_ = 0;
  std::size_t held_ = 0;
};

}  // namespace sluice::detail

#endif  // SLUICE_PATTERNS_DETAIL_REORDER_WINDOW_HPP_
