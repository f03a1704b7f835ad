// Defines sluice::client::ItemReader: the FrameSource that `sluice submit`
// streams, reading a JSON array or NDJSON from a file descriptor a chunk at
// a time and packing its items into {"items":[...]} frames, so an input
// larger than memory can be sent.
#ifndef SLUICE_SERVICE_CLIENT_ITEM_READER_HPP_
#define SLUICE_SERVICE_CLIENT_ITEM_READER_HPP_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

#include "service/client/client.hpp"

namespace sluice::client {

// The input's items as frames. The format is decided by the first byte that
// is not whitespace: `[` starts a JSON array, read element by element;
// anything else is NDJSON, one JSON value a line (blank lines skipped). An
// empty input has no items. Each item is checked to be JSON before it is
// sent, and sent as written. A frame is sent before it is full when the
// input has nothing more to give for kIdleFlush (a pipe fed now and then,
// e.g. `tail -f log |`), so items are not held back waiting for others.
// Thread-compatible, except Cancel() (thread-safe); it reads `fd` (which it
// does not own or close) from whichever thread calls Next().
class ItemReader final : public FrameSource {
 public:
  // A frame holds up to `max_items` items and, unless one item alone is
  // larger, up to `max_bytes` bytes of frame text: keep it under the
  // server's max_body_bytes (a larger frame is closed with 1009).
  struct Limits {
    std::size_t max_items = 1000;
    std::size_t max_bytes = std::size_t{32} * 1024;
  };

  // How long a frame that holds items waits for more input before it is
  // sent as it is.
  static constexpr int kIdleFlushMs = 50;

  ItemReader(int fd, Limits limits);
  ~ItemReader() override;
  ItemReader(const ItemReader&) = delete;
  ItemReader& operator=(const ItemReader&) = delete;

  // Makes a Next() waiting for input, and every later one, fail with code
  // "cancelled". Thread-safe.
  void Cancel() override;

  // The next {"items":[...]} frame; nullopt at the end of the input. Fails
  // (code "invalid_input", the message gives the 0-based byte offset, and
  // for NDJSON the 1-based line) on input that is not a JSON array or
  // NDJSON, or on a read error.
  Result<std::optional<Frame>> Next() override;

  // Items put in frames so far.
  std::uint64_t items() const { return items_; }
  // Bytes of input read so far.
  std::uint64_t bytes_read() const { return consumed_ + buffer_.size(); }

 private:
  enum class Mode { kUnknown, kArray, kNdjson, kEnded };

  // The next item's text, nullopt at the end of the input.
  Result<std::optional<std::string>> NextItem();
  Result<std::optional<std::string>> NextArrayItem();
  Result<std::optional<std::string>> NextNdjsonItem();
  // Decides the mode from the first byte that is not whitespace.
  Result<void> DetectMode();
  // Makes buffer_[pos_] readable; false at the end of the input.
  Result<bool> Fill();
  // Waits up to `timeout_ms` (-1: for ever) for fd_ to have input (or its
  // end); false on a timeout; code "cancelled" after Cancel().
  Result<bool> WaitInput(int timeout_ms);
  // False when the frame being filled should go now: no whole line is
  // buffered and the input has had nothing new for kIdleFlushMs.
  Result<bool> MoreSoon();
  // Skips whitespace; false at the end of the input.
  Result<bool> SkipSpace();
  // The array element starting at pos_, up to (not including) the ',' or
  // ']' that ends it, trimmed.
  Result<std::string> ScanElement();
  // After the closing ']': only whitespace may follow.
  Result<void> ExpectEnd();
  // "<what> at byte offset N", or with `line` (1-based, NDJSON's) "<what>
  // at line L, byte offset N".
  Error Invalid(std::uint64_t offset, const std::string& what,
                std::uint64_t line = 0) const;
  Result<void> Check(const std::string& item, std::uint64_t offset) const;

  int fd_;
  int cancel_[2] = {-1, -1};  // a pipe: Cancel() writes, poll() watches
  Limits limits_;
  Mode mode_ = Mode::kUnknown;
  bool eof_ = false;
  bool input_ready_ = false;  // fd_ had input since the last read
  bool first_element_ = true;
  std::string buffer_;  // unread input starts at pos_
  std::size_t pos_ = 0;
  std::uint64_t consumed_ = 0;  // input bytes dropped from buffer_'s front
  std::uint64_t items_ = 0;
  std::uint64_t lines_ = 0;  // NDJSON lines started (blank ones too)
  std::optional<std::string>
      pending_;  // an item that did not fit the last frame
  std::uint64_t pending_offset_ = 0;
  std::uint64_t item_offset_ = 0;  // of the item NextItem() returned last
  std::optional<Error> error_;     // reported after the frame before it
};

}  // namespace sluice::client

#endif  // SLUICE_SERVICE_CLIENT_ITEM_READER_HPP_
