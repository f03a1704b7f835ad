// client::ItemReader: JSON arrays and NDJSON split into frames across read
// chunks, batching limits, and malformed input with its byte offset.
#include "service/client/item_reader.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

namespace sluice::client {
namespace {

// A temporary file holding `text`, open for reading from its start.
class TempInput {
 public:
  explicit TempInput(const std::string& text) {
    char path[] = "/tmp/sluice-item-reader-XXXXXX";
    fd_ = ::mkstemp(path);
    ::unlink(path);
    EXPECT_EQ(::write(fd_, text.data(), text.size()),
              static_cast<ssize_t>(text.size()));
    ::lseek(fd_, 0, SEEK_SET);
  }
  ~TempInput() { ::close(fd_); }
  TempInput(const TempInput&) = delete;
  TempInput& operator=(const TempInput&) = delete;
  int fd() const { return fd_; }

 private:
  int fd_ = -1;
};

struct Read {
  std::vector<std::string> frames;
  std::string error;  // empty when the input ended well
};

Read ReadAll(const std::string& text, ItemReader::Limits limits = {}) {
  TempInput input(text);
  ItemReader reader(input.fd(), limits);
  Read read;
  for (;;) {
    auto frame = reader.Next();
    if (!frame.ok()) {
      read.error = frame.error().message;
      return read;
    }
    if (!*frame) return read;
    read.frames.push_back((*frame)->text);
  }
}

// The items of every frame, in order.
std::vector<nlohmann::json> Items(const Read& read) {
  std::vector<nlohmann::json> items;
  for (const auto& frame : read.frames) {
    nlohmann::json parsed = nlohmann::json::parse(frame);
    for (auto& item : parsed.at("items")) items.push_back(item);
  }
  return items;
}

// Items whose strings hold every character the scanner must not take for
// structure: , ] } [ { " and backslashes.
std::vector<nlohmann::json> Tricky(int n) {
  std::vector<nlohmann::json> items;
  items.reserve(static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i) {
    items.push_back({{"i", i},
                     {"s", "a,]}\"[{\\" + std::string(i % 50, 'x')},
                     {"n", {1, {{"x", "]"}}, nullptr, true, -2.5e3}}});
  }
  return items;
}

TEST(ItemReader, ArrayAcrossReadChunks) {
  auto items = Tricky(5000);  // several 64 KiB chunks
  std::string text = "\n  " + nlohmann::json(items).dump(1) + "\n";
  ASSERT_GT(text.size(), 3u * 64 * 1024);
  Read read = ReadAll(text);
  EXPECT_EQ(read.error, "");
  EXPECT_EQ(Items(read), items);
}

TEST(ItemReader, NdjsonWithBlankLinesCrlfAndNoFinalNewline) {
  auto items = Tricky(3000);
  std::string text = "\n";
  for (const auto& item : items) text += item.dump() + "\r\n\n";
  text += "42";  // last line without '\n'
  items.emplace_back(42);
  Read read = ReadAll(text);
  EXPECT_EQ(read.error, "");
  EXPECT_EQ(Items(read), items);
}

TEST(ItemReader, ScalarsAndEmptyInputs) {
  EXPECT_EQ(Items(ReadAll(R"([1, "a" ,null,true,{"k":[]}])")),
            (std::vector<nlohmann::json>{
                1, "a", nullptr, true, {{"k", nlohmann::json::array()}}}));
  for (std::string empty : {"", "  \n", "[]", " [ \n ] \n"}) {
    Read read = ReadAll(empty);
    EXPECT_EQ(read.error, "") << empty;
    EXPECT_TRUE(read.frames.empty()) << empty;
  }
}

TEST(ItemReader, FramesKeepTheirLimits) {
  Read read = ReadAll("[1,2,3,4,5,6,7]", {.max_items = 3, .max_bytes = 1000});
  EXPECT_EQ(read.frames, (std::vector<std::string>{R"({"items":[1,2,3]})",
                                                   R"({"items":[4,5,6]})",
                                                   R"({"items":[7]})"}));
  std::string big = "\"" + std::string(100, 'b') + "\"";
  read = ReadAll("[1," + big + ",2,3]", {.max_items = 100, .max_bytes = 40});
  // The large item goes alone; the small ones share frames.
  EXPECT_EQ(read.frames, (std::vector<std::string>{R"({"items":[1]})",
                                                   "{\"items\":[" + big + "]}",
                                                   R"({"items":[2,3]})"}));
  read = ReadAll(nlohmann::json(Tricky(500)).dump(),
                 {.max_items = 1000, .max_bytes = 4096});
  EXPECT_GT(read.frames.size(), 5u);
  for (const auto& frame : read.frames) {
    EXPECT_LE(frame.size(), 4096u);
  }
}

TEST(ItemReader, MalformedInputSaysWhere) {
  struct Case {
    std::string text;
    std::string error;
  };
  for (const Case& c : std::vector<Case>{
           {"[1,,2]", "expected an array element at byte offset 3"},
           {"[1, 2", "the array is not closed: input ends at byte offset 5"},
           {"[1] x", "text after the array's closing ] at byte offset 4"},
           {R"([{"a": 1,}])", "malformed array element at byte offset 9"},
           {"{\"a\":1}\n{\"a\":}\n",
            "malformed NDJSON at line 2, byte offset 13"},
           // Blank and CRLF lines count: the bad one is the 4th.
           {"1\r\n\n  2\n [x]\n", "malformed NDJSON at line 4, byte offset 10"},
       }) {
    EXPECT_EQ(ReadAll(c.text).error, c.error) << c.text;
  }
}

TEST(ItemReader, TheFrameBeforeAnErrorIsStillSent) {
  Read read = ReadAll("[1, 2, oops]");
  EXPECT_EQ(read.frames, (std::vector<std::string>{R"({"items":[1,2]})"}));
  EXPECT_EQ(read.error, "malformed array element at byte offset 7");
}

TEST(ItemReader, FramesSayTheirItemsAndTheFirstOnesOffset) {
  TempInput input("[1, 22,\n 333]");
  ItemReader reader(input.fd(), {.max_items = 2, .max_bytes = 1000});
  auto first = reader.Next();
  auto second = reader.Next();
  ASSERT_TRUE(first.ok() && *first && second.ok() && *second);
  EXPECT_EQ((*first)->items, 2u);
  EXPECT_EQ((*first)->offset, 1u);
  EXPECT_EQ((*second)->items, 1u);
  EXPECT_EQ((*second)->offset, 9u);
}

// A pipe whose write end the test keeps open: input that comes now and
// then, as from `tail -f`.
class Pipe {
 public:
  Pipe() { EXPECT_EQ(::pipe(fds_), 0); }
  ~Pipe() {
    ::close(fds_[0]);
    if (fds_[1] >= 0) ::close(fds_[1]);
  }
  Pipe(const Pipe&) = delete;
  Pipe& operator=(const Pipe&) = delete;
  int read_end() const { return fds_[0]; }
  void Write(const std::string& text) {
    EXPECT_EQ(::write(fds_[1], text.data(), text.size()),
              static_cast<ssize_t>(text.size()));
  }

 private:
  int fds_[2] = {-1, -1};
};

TEST(ItemReader, AQuietInputSendsThePartialFrame) {
  Pipe pipe;
  ItemReader reader(pipe.read_end(), {});
  pipe.Write("{\"text\":\"first\"}\n2\n");  // and then nothing, still open
  auto started = std::chrono::steady_clock::now();
  auto frame = reader.Next();
  ASSERT_TRUE(frame.ok() && *frame);
  EXPECT_EQ((*frame)->text, R"({"items":[{"text":"first"},2]})");
  EXPECT_LT(std::chrono::steady_clock::now() - started,
            std::chrono::seconds(2));
  pipe.Write("3\n");
  frame = reader.Next();
  ASSERT_TRUE(frame.ok() && *frame);
  EXPECT_EQ((*frame)->text, R"({"items":[3]})");
}

TEST(ItemReader, CancelEndsAWaitForInput) {
  Pipe pipe;
  ItemReader reader(pipe.read_end(), {});
  std::thread canceller([&reader] {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    reader.Cancel();
  });
  auto frame = reader.Next();  // nothing written: waits until cancelled
  canceller.join();
  ASSERT_FALSE(frame.ok());
  EXPECT_EQ(frame.error().code, "cancelled");
  EXPECT_FALSE(reader.Next().ok());
}

TEST(ItemReader, CountsItemsAndBytes) {
  TempInput input("[1,2,3]");
  ItemReader reader(input.fd(), {});
  ASSERT_TRUE(reader.Next().ok());
  EXPECT_EQ(reader.items(), 3u);
  EXPECT_EQ(reader.bytes_read(), 7u);
}

}  // namespace
}  // namespace sluice::client
