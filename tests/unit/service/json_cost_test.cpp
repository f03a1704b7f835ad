// Unit tests of sluice::JsonHeapBytes / JsonCost: known sizes, and the
// estimate against glibc's own count of the bytes in use (mallinfo2) for
// many copies of each shape, parsed the way the service parses input.
#include "service/util/json_cost.hpp"

#include <gtest/gtest.h>
#include <malloc.h>

#include <memory>
#include <string>
#include <vector>

#include "service/util/json_parse.hpp"

namespace sluice {
namespace {

using nlohmann::json;

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr bool kGlibcMalloc = false;  // the sanitizers replace malloc
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
constexpr bool kGlibcMalloc = false;
#else
constexpr bool kGlibcMalloc = true;
#endif
#else
constexpr bool kGlibcMalloc = true;
#endif

json Parse(const std::string& text) {
  auto parsed = ParseJsonText(text);
  EXPECT_TRUE(parsed.ok()) << text;
  return parsed.ok() ? std::move(parsed).value() : json();
}

std::string Nested(int depth, const std::string& open, const std::string& close,
                   const std::string& inner) {
  std::string s;
  for (int i = 0; i < depth; ++i) s += open;
  s += inner;
  for (int i = 0; i < depth; ++i) s += close;
  return s;
}

TEST(JsonCostTest, MallocChunks) {
  EXPECT_EQ(MallocChunkBytes(0), 0u);
  EXPECT_EQ(MallocChunkBytes(1), 32u);
  EXPECT_EQ(MallocChunkBytes(24), 32u);
  EXPECT_EQ(MallocChunkBytes(25), 48u);
  EXPECT_EQ(MallocChunkBytes(32), 48u);
  EXPECT_EQ(MallocChunkBytes(40), 48u);
  EXPECT_EQ(MallocChunkBytes(41), 64u);
  EXPECT_EQ(MallocChunkBytes(1000), 1008u);
}

TEST(JsonCostTest, KnownSizes) {
  // Scalars live in the 16-byte node.
  EXPECT_EQ(JsonHeapBytes(json(nullptr)), 0u);
  EXPECT_EQ(JsonHeapBytes(json(true)), 0u);
  EXPECT_EQ(JsonHeapBytes(json(42)), 0u);
  EXPECT_EQ(JsonHeapBytes(json(4.5)), 0u);
  EXPECT_EQ(JsonCost(json(42)), sizeof(json));
  // A short string: its std::string object only; a long one also its text.
  EXPECT_EQ(JsonHeapBytes(json("short")), MallocChunkBytes(32));
  const json long_text = Parse("\"" + std::string(1000, 'x') + "\"");
  EXPECT_EQ(JsonHeapBytes(long_text),
            MallocChunkBytes(32) + MallocChunkBytes(1001));
  // The issue's item: 201 bytes, 100 arrays deep. Each level is a vector
  // object (32) and one element's storage (32): about 6.4 KB, 32x the text.
  const std::string deep = Nested(100, "[", "]", "1");
  ASSERT_EQ(deep.size(), 201u);
  EXPECT_EQ(JsonCost(Parse(deep)), 16u + 100u * 64u);
  // An object member is a 96-byte tree node (links + key + value).
  EXPECT_EQ(JsonHeapBytes(Parse(R"({"a":1})")),
            MallocChunkBytes(48) + MallocChunkBytes(32 + 32 + 16));
}

TEST(JsonCostTest, ArraysCountTheirCapacity) {
  json a = json::array();
  a.get_ref<json::array_t&>().reserve(1000);
  a.push_back(1);
  EXPECT_EQ(JsonHeapBytes(a),
            MallocChunkBytes(24) + MallocChunkBytes(1000 * sizeof(json)));
}

// Bytes in use by malloc's arenas now (chunks handed out, glibc's own
// count).
std::size_t HeapInUse() { return mallinfo2().uordblks; }

// Parses `copies` copies of `text` and compares the heap they added with
// the estimate. The copies make the noise (a few chunks from caches that
// count as in use) negligible.
void ExpectEstimateMatchesMalloc(const std::string& text, int copies) {
  if (!kGlibcMalloc) GTEST_SKIP() << "not glibc's malloc";
  std::vector<json> values;
  values.reserve(static_cast<std::size_t>(copies));
  const std::size_t before = HeapInUse();
  for (int i = 0; i < copies; ++i) values.push_back(Parse(text));
  const std::size_t after = HeapInUse();
  ASSERT_GT(after, before);
  const double real = static_cast<double>(after - before);
  std::size_t estimate = 0;
  for (const json& v : values) estimate += JsonHeapBytes(v);
  const double ratio = static_cast<double>(estimate) / real;
  EXPECT_GT(ratio, 0.95) << text.substr(0, 80) << ": estimate " << estimate
                         << ", malloc " << real;
  EXPECT_LT(ratio, 1.05) << text.substr(0, 80) << ": estimate " << estimate
                         << ", malloc " << real;
}

TEST(JsonCostTest, DeepArraysMatchMalloc) {
  ExpectEstimateMatchesMalloc(Nested(100, "[", "]", "1"), 2000);
}

TEST(JsonCostTest, DeepObjectsMatchMalloc) {
  ExpectEstimateMatchesMalloc(Nested(100, "{\"a\":", "}", "1"), 2000);
}

TEST(JsonCostTest, WideRecordsMatchMalloc) {
  ExpectEstimateMatchesMalloc(
      R"({"user":"u123","a_rather_long_key_name":"a value longer than sso",)"
      R"("n":[1,2,3,4,5,6,7,8,9,10,11],"nested":{"x":true,"y":null,"z":1.5}})",
      5000);
}

TEST(JsonCostTest, LongStringsMatchMalloc) {
  ExpectEstimateMatchesMalloc("[\"" + std::string(5000, 'y') + "\"]", 500);
}

TEST(JsonCostTest, IntegerArraysMatchMalloc) {
  std::string ints = "[";
  for (int i = 0; i < 1000; ++i) ints += (i ? "," : "") + std::to_string(i);
  ints += "]";
  ExpectEstimateMatchesMalloc(ints, 500);
}

}  // namespace
}  // namespace sluice
