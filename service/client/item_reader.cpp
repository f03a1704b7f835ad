// ItemReader: a JSON array or NDJSON, read a chunk at a time and packed into
// frames (see item_reader.hpp).
#include "service/client/item_reader.hpp"

#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <string_view>
#include <system_error>
#include <utility>

#include "service/util/json_parse.hpp"

namespace sluice::client {
namespace {

constexpr std::size_t kReadChunk = std::size_t{64} * 1024;

bool IsSpace(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

// `s` without the JSON whitespace at both ends; `lead` gets how many bytes
// went from the front.
std::string Trim(std::string s, std::size_t* lead = nullptr) {
  std::size_t b = 0;
  while (b < s.size() && IsSpace(s[b])) ++b;
  std::size_t e = s.size();
  while (e > b && IsSpace(s[e - 1])) --e;
  if (lead) *lead = b;
  return s.substr(b, e - b);
}

}  // namespace

ItemReader::ItemReader(int fd, Limits limits) : fd_(fd), limits_(limits) {
  if (::pipe2(cancel_, O_CLOEXEC | O_NONBLOCK) != 0) cancel_[0] = -1;
}

ItemReader::~ItemReader() {
  for (int end : cancel_) {
    if (end >= 0) ::close(end);
  }
}

void ItemReader::Cancel() {
  char byte = 1;
  // The pipe stays readable from then on; a full pipe is as good.
  if (cancel_[1] >= 0) static_cast<void>(::write(cancel_[1], &byte, 1));
}

Result<bool> ItemReader::WaitInput(int timeout_ms) {
  pollfd fds[2] = {{fd_, POLLIN, 0}, {cancel_[0], POLLIN, 0}};
  int n = 0;
  do {
    n = ::poll(fds, cancel_[0] >= 0 ? 2 : 1, timeout_ms);
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    return Error{"invalid_input",
                 std::string("cannot wait for the input: ") +
                     std::error_code(errno, std::system_category()).message()};
  }
  if (fds[1].revents != 0) return Error{"cancelled", "the input was cancelled"};
  // POLLHUP and POLLERR too: the read says what they mean.
  return fds[0].revents != 0;
}

Result<bool> ItemReader::MoreSoon() {
  if (pending_ || eof_ || input_ready_) return true;
  auto unread =
      std::string_view(buffer_).substr(std::min(pos_, buffer_.size()));
  if (unread.find('\n') != std::string_view::npos) return true;
  auto ready = WaitInput(kIdleFlushMs);
  if (ready.ok() && *ready) input_ready_ = true;
  return ready;
}

Error ItemReader::Invalid(std::uint64_t offset, const std::string& what,
                          std::uint64_t line) const {
  std::string where = line > 0 ? "line " + std::to_string(line) + ", " : "";
  return Error{"invalid_input",
               what + " at " + where + "byte offset " + std::to_string(offset)};
}

Result<void> ItemReader::Check(const std::string& item,
                               std::uint64_t offset) const {
  // accept() is the fast path; the util parser says where it failed.
  if (nlohmann::json::accept(item)) return {};
  auto parsed = ParseJsonText(item);
  std::uint64_t at = offset + (parsed.ok() ? 0 : parsed.error().offset);
  if (mode_ == Mode::kNdjson) return Invalid(at, "malformed NDJSON", lines_);
  return Invalid(at, "malformed array element");
}

Result<bool> ItemReader::Fill() {
  if (pos_ < buffer_.size()) return true;
  if (eof_) return false;
  consumed_ += buffer_.size();
  buffer_.clear();
  pos_ = 0;
  if (!input_ready_) {
    auto ready = WaitInput(-1);
    if (!ready.ok()) return std::move(ready).error();
  }
  input_ready_ = false;
  buffer_.resize(kReadChunk);
  ssize_t n = 0;
  do {
    n = ::read(fd_, buffer_.data(), buffer_.size());
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    buffer_.clear();
    return Error{"invalid_input",
                 std::string("cannot read the input: ") +
                     std::error_code(errno, std::system_category()).message()};
  }
  buffer_.resize(static_cast<std::size_t>(n));
  if (n == 0) eof_ = true;
  return n > 0;
}

Result<bool> ItemReader::SkipSpace() {
  for (;;) {
    auto more = Fill();
    if (!more.ok() || !*more) return more;
    while (pos_ < buffer_.size() && IsSpace(buffer_[pos_])) ++pos_;
    if (pos_ < buffer_.size()) return true;
  }
}

Result<void> ItemReader::DetectMode() {
  auto more = SkipSpace();
  if (!more.ok()) return std::move(more).error();
  if (!*more) {
    mode_ = Mode::kEnded;
  } else if (buffer_[pos_] == '[') {
    mode_ = Mode::kArray;
    ++pos_;
  } else {
    mode_ = Mode::kNdjson;
  }
  return {};
}

Result<std::string> ItemReader::ScanElement() {
  std::string item;
  int depth = 0;
  bool in_string = false;
  bool escape = false;
  for (;;) {
    auto more = Fill();
    if (!more.ok()) return std::move(more).error();
    if (!*more) {
      return Invalid(consumed_ + pos_, "the array is not closed: input ends");
    }
    std::size_t i = pos_;
    bool found = false;
    for (; i < buffer_.size() && !found; ++i) {
      char c = buffer_[i];
      if (in_string) {
        if (escape) {
          escape = false;
        } else if (c == '\\') {
          escape = true;
        } else if (c == '"') {
          in_string = false;
        }
      } else if (c == '"') {
        in_string = true;
      } else if (c == '[' || c == '{') {
        ++depth;
      } else if ((c == ']' || c == '}') && depth > 0) {
        --depth;
      } else if (depth == 0 && (c == ',' || c == ']')) {
        found = true;
        --i;  // stop on the terminator
      }
    }
    item.append(buffer_, pos_, i - pos_);
    pos_ = i;
    if (found) return Trim(std::move(item));
  }
}

Result<void> ItemReader::ExpectEnd() {
  auto more = SkipSpace();
  if (!more.ok()) return std::move(more).error();
  if (*more)
    return Invalid(consumed_ + pos_, "text after the array's closing ]");
  return {};
}

Result<std::optional<std::string>> ItemReader::NextArrayItem() {
  auto more = SkipSpace();
  if (!more.ok()) return std::move(more).error();
  if (!*more)
    return Invalid(consumed_ + pos_, "the array is not closed: input ends");
  if (first_element_ && buffer_[pos_] == ']') {
    ++pos_;
    mode_ = Mode::kEnded;
    auto end = ExpectEnd();
    if (!end.ok()) return std::move(end).error();
    return std::optional<std::string>{};
  }
  std::uint64_t start = consumed_ + pos_;
  auto item = ScanElement();
  if (!item.ok()) return std::move(item).error();
  if (item->empty()) return Invalid(start, "expected an array element");
  auto valid = Check(*item, start);
  if (!valid.ok()) return std::move(valid).error();
  first_element_ = false;
  item_offset_ = start;
  // The ',' or ']' ScanElement stopped on; after ']' only whitespace may
  // follow, checked by the next call.
  if (buffer_[pos_++] == ']') mode_ = Mode::kEnded;
  return std::optional<std::string>(std::move(*item));
}

Result<std::optional<std::string>> ItemReader::NextNdjsonItem() {
  for (;;) {
    std::uint64_t start = consumed_ + pos_;
    std::string line;
    bool newline = false;
    ++lines_;
    while (!newline) {
      auto more = Fill();
      if (!more.ok()) return std::move(more).error();
      if (!*more) break;
      auto begin = buffer_.begin() + static_cast<std::ptrdiff_t>(pos_);
      auto nl = std::find(begin, buffer_.end(), '\n');
      line.append(begin, nl);
      pos_ += static_cast<std::size_t>(nl - begin);
      if (nl != buffer_.end()) {
        ++pos_;
        newline = true;
      }
    }
    if (!newline && line.empty()) {
      mode_ = Mode::kEnded;
      return std::optional<std::string>{};
    }
    std::size_t lead = 0;
    line = Trim(std::move(line), &lead);
    if (line.empty()) continue;
    auto valid = Check(line, start + lead);
    if (!valid.ok()) return std::move(valid).error();
    item_offset_ = start + lead;
    return std::optional<std::string>(std::move(line));
  }
}

Result<std::optional<std::string>> ItemReader::NextItem() {
  if (mode_ == Mode::kUnknown) {
    auto detected = DetectMode();
    if (!detected.ok()) return std::move(detected).error();
  }
  switch (mode_) {
    case Mode::kArray:
      return NextArrayItem();
    case Mode::kNdjson:
      return NextNdjsonItem();
    case Mode::kUnknown:
    case Mode::kEnded:
      break;
  }
  // After an array's ']': only whitespace may follow (at the end of NDJSON
  // there is nothing left).
  auto end = ExpectEnd();
  if (!end.ok()) return std::move(end).error();
  return std::optional<std::string>{};
}

Result<std::optional<Frame>> ItemReader::Next() {
  if (error_) return *std::exchange(error_, std::nullopt);
  Frame frame{"{\"items\":[", 0, 0};
  while (frame.items < limits_.max_items) {
    if (frame.items > 0) {
      // Items already in hand go now rather than wait on a quiet input.
      auto more = MoreSoon();
      if (!more.ok() || !*more) {
        if (!more.ok()) error_ = std::move(more).error();
        break;
      }
    }
    std::optional<std::string> item = std::exchange(pending_, std::nullopt);
    std::uint64_t offset = pending_offset_;
    if (!item) {
      auto next = NextItem();
      if (!next.ok()) {
        if (frame.items == 0) return std::move(next).error();
        error_ = std::move(next).error();  // after this frame
        break;
      }
      item = std::move(*next);
      offset = item_offset_;
    }
    if (!item) break;
    // +2 for the closing "]}", +1 for the comma.
    if (frame.items > 0 &&
        frame.text.size() + item->size() + 3 > limits_.max_bytes) {
      pending_ = std::move(item);
      pending_offset_ = offset;
      break;
    }
    if (frame.items == 0) frame.offset = offset;
    if (frame.items > 0) frame.text += ',';
    frame.text += *item;
    ++frame.items;
    ++items_;
  }
  if (frame.items == 0) return std::optional<Frame>{};
  frame.text += "]}";
  return std::optional<Frame>(std::move(frame));
}

}  // namespace sluice::client
