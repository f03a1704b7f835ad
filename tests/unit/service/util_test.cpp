// Tests of service/util: Result, RFC 3339 time, the JSON pointer helpers and
// the text helpers.
#include <gtest/gtest.h>

#include <memory>

#include "service/util/json_pointer.hpp"
#include "service/util/result.hpp"
#include "service/util/text.hpp"
#include "service/util/time.hpp"

namespace sluice {
namespace {

using nlohmann::json;
using std::chrono::milliseconds;
using std::chrono::system_clock;

Result<int> Half(int x) {
  if (x % 2 != 0) return Error{"odd", "not even"};
  return x / 2;
}

TEST(Result, HoldsAValueOrAnError) {
  auto a = Half(4);
  ASSERT_TRUE(a.ok());
  EXPECT_TRUE(static_cast<bool>(a));
  EXPECT_EQ(a.value(), 2);
  EXPECT_EQ(*a, 2);
  auto b = Half(3);
  ASSERT_FALSE(b.ok());
  EXPECT_EQ(b.error().code, "odd");
  EXPECT_EQ(b.error().message, "not even");
}

TEST(Result, MovesOutMoveOnlyValues) {
  Result<std::unique_ptr<int>> r = std::make_unique<int>(7);
  ASSERT_TRUE(r.ok());
  std::unique_ptr<int> p = std::move(r).value();
  EXPECT_EQ(*p, 7);
}

TEST(Result, ConvertsFromWhatTCanBeMadeFrom) {
  auto greet = [](bool ok) -> Result<std::string> {
    if (!ok) return Error{"no", "nope"};
    return "hello";  // const char* -> std::string
  };
  EXPECT_EQ(greet(true).value(), "hello");
  EXPECT_FALSE(greet(false).ok());
  struct Base {
    virtual ~Base() = default;
  };
  struct Derived : Base {};
  Result<std::shared_ptr<Base>> p = std::make_shared<Derived>();
  EXPECT_TRUE(p.ok());
  Result<json> j = 5;
  EXPECT_EQ(j.value(), 5);
  Result<json> e = Error{"bad", "x"};
  EXPECT_FALSE(e.ok());
}

TEST(Result, VoidResults) {
  Result<void> ok;
  EXPECT_TRUE(ok.ok());
  Result<void> bad = Error{"x", "y"};
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().code, "x");
}

TEST(Result, CustomErrorType) {
  struct SubmitError {
    std::string code;
    int retry_after = 0;
  };
  Result<int, SubmitError> r = SubmitError{"over_capacity", 2};
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().retry_after, 2);
}

TEST(Time, FormatsUtcWithMilliseconds) {
  // 2026-11-24T01:02:03.456Z
  const auto tp = system_clock::time_point{} +
                  std::chrono::sys_days{std::chrono::year{2026} /
                                        std::chrono::November / 24}
                      .time_since_epoch() +
                  std::chrono::hours{1} + std::chrono::minutes{2} +
                  std::chrono::seconds{3} + milliseconds{456} +
                  std::chrono::microseconds{789};
  EXPECT_EQ(FormatRfc3339(tp), "2026-11-24T01:02:03.456Z");
  EXPECT_EQ(FormatRfc3339(system_clock::time_point{}),
            "1970-01-01T00:00:00.000Z");
  EXPECT_EQ(FormatRfc3339(system_clock::time_point{} - milliseconds{1}),
            "1969-12-31T23:59:59.999Z");
}

TEST(Time, ParsesWhatItFormatsAndOffsets) {
  const auto now = std::chrono::floor<milliseconds>(system_clock::now());
  const auto parsed = ParseRfc3339(FormatRfc3339(now));
  ASSERT_TRUE(parsed.has_value());
  EXPECT_EQ(*parsed, now);
  const auto a = ParseRfc3339("2026-11-24T02:02:03.456+01:00");
  const auto b = ParseRfc3339("2026-11-24T01:02:03.456Z");
  ASSERT_TRUE(a && b);
  EXPECT_EQ(*a, *b);
  const auto c = ParseRfc3339("2026-11-24T01:02:03Z");
  ASSERT_TRUE(c.has_value());
  EXPECT_EQ(FormatRfc3339(*c), "2026-11-24T01:02:03.000Z");
  const auto d = ParseRfc3339("2026-11-24T01:02:03.4567891Z");
  ASSERT_TRUE(d.has_value());
  EXPECT_EQ(FormatRfc3339(*d), "2026-11-24T01:02:03.456Z");
}

TEST(Time, RejectsMalformedTimestamps) {
  for (std::string_view bad :
       {"", "2026-11-24", "2026-11-24T01:02:03", "2026-13-01T00:00:00Z",
        "2026-02-30T00:00:00Z", "2026-11-24T24:00:00Z", "2026-11-24T01:02:03.Z",
        "2026-11-24 01:02:03Z", "2026-11-24T01:02:03Zjunk",
        "2026-11-24T01:02:03+0100"}) {
    EXPECT_FALSE(ParseRfc3339(bad).has_value()) << bad;
  }
}

TEST(JsonPointer, ParsesAndRejects) {
  EXPECT_TRUE(ParseJsonPointer("").ok());
  EXPECT_TRUE(ParseJsonPointer("/a/b").ok());
  EXPECT_TRUE(ParseJsonPointer("/a~1b/~0").ok());
  auto no_slash = ParseJsonPointer("a");
  ASSERT_FALSE(no_slash.ok());
  EXPECT_EQ(no_slash.error().code, "invalid_pointer");
  EXPECT_FALSE(ParseJsonPointer("/a~2").ok());
  EXPECT_FALSE(ParseJsonPointer("/a~").ok());
}

TEST(JsonPointer, FindsWithoutThrowing) {
  const json doc = json::parse(R"({"a":{"b":[10,20]},"s":"x","n":null})");
  auto find = [&](std::string_view p) {
    return FindPointer(doc, ParseJsonPointer(p).value());
  };
  ASSERT_NE(find(""), nullptr);
  EXPECT_EQ(*find("/a/b/1"), 20);
  ASSERT_NE(find("/n"), nullptr);
  EXPECT_TRUE(find("/n")->is_null());
  EXPECT_EQ(find("/missing"), nullptr);
  EXPECT_EQ(find("/a/b/2"), nullptr);
  EXPECT_EQ(find("/a/b/-"), nullptr);
  EXPECT_EQ(find("/a/b/01"), nullptr);
  EXPECT_EQ(find("/a/b/x"), nullptr);
  EXPECT_EQ(find("/s/0"), nullptr);
  EXPECT_EQ(find("/n/x"), nullptr);
}

TEST(JsonPointer, SetsCreatingObjects) {
  json doc = json::object();
  ASSERT_TRUE(SetPointer(doc, ParseJsonPointer("/a/b/c").value(), 1).ok());
  EXPECT_EQ(doc, json::parse(R"({"a":{"b":{"c":1}}})"));
  json arr = json::parse(R"({"l":[1]})");
  ASSERT_TRUE(SetPointer(arr, ParseJsonPointer("/l/-").value(), 2).ok());
  ASSERT_TRUE(SetPointer(arr, ParseJsonPointer("/l/0").value(), 0).ok());
  EXPECT_EQ(arr, json::parse(R"({"l":[0,2]})"));
  json whole = 5;
  ASSERT_TRUE(SetPointer(whole, ParseJsonPointer("").value(), "x").ok());
  EXPECT_EQ(whole, "x");
}

TEST(JsonPointer, SetFailsThroughScalars) {
  json doc = json::parse(R"({"s":"text","l":[1]})");
  auto r = SetPointer(doc, ParseJsonPointer("/s/x").value(), 1);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, "invalid_path");
  EXPECT_NE(r.error().message.find("/s/x"), std::string::npos);
  EXPECT_FALSE(SetPointer(doc, ParseJsonPointer("/l/x").value(), 1).ok());
  json number = 3;
  EXPECT_FALSE(SetPointer(number, ParseJsonPointer("/a").value(), 1).ok());
}

TEST(JsonPointer, Removes) {
  json doc = json::parse(R"({"a":{"b":1,"c":2},"l":[1,2,3]})");
  EXPECT_TRUE(RemovePointer(doc, ParseJsonPointer("/a/b").value()));
  EXPECT_FALSE(RemovePointer(doc, ParseJsonPointer("/a/b").value()));
  EXPECT_TRUE(RemovePointer(doc, ParseJsonPointer("/l/1").value()));
  EXPECT_FALSE(RemovePointer(doc, ParseJsonPointer("/l/5").value()));
  EXPECT_FALSE(RemovePointer(doc, ParseJsonPointer("/x/y").value()));
  EXPECT_FALSE(RemovePointer(doc, ParseJsonPointer("").value()));
  EXPECT_EQ(doc, json::parse(R"({"a":{"c":2},"l":[1,3]})"));
}

TEST(JsonPointer, TextAndTypeNames) {
  EXPECT_EQ(JsonText("abc"), "abc");
  EXPECT_EQ(JsonText(json::parse(R"({"b":1,"a":[true,null]})")),
            R"({"a":[true,null],"b":1})");
  EXPECT_EQ(JsonText(1.5), "1.5");
  EXPECT_EQ(DescribeJsonType(json::array()), "an array");
  EXPECT_EQ(DescribeJsonType(3), "a number");
}

TEST(TextTest, TrimOwsTakesOnlySpacesAndTabs) {
  EXPECT_EQ(TrimOws(" \t chunked\t "), "chunked");
  EXPECT_EQ(TrimOws("\r\n13\n"), "\r\n13\n") << "not OWS";
  EXPECT_EQ(TrimOws("a b"), "a b");
  EXPECT_EQ(TrimOws(" \t "), "");
  EXPECT_EQ(TrimOws(""), "");
}

TEST(TextTest, TrimSpaceTakesEveryAsciiSpace) {
  EXPECT_EQ(TrimSpace("\n\t 10 MiB\r\v\f "), "10 MiB");
  EXPECT_EQ(TrimSpace(" \n "), "");
  EXPECT_EQ(TrimSpace("x"), "x");
  EXPECT_EQ(TrimSpace(""), "");
}

TEST(TextTest, DumpLenientReplacesInvalidUtf8) {
  EXPECT_EQ(DumpLenient(json{{"a", {1, 2}}, {"b", "\xc3\xa9"}}),
            "{\"a\":[1,2],\"b\":\"\xc3\xa9\"}");
  EXPECT_EQ(DumpLenient(json("x\xff"
                             "y")),
            "\"x\xef\xbf\xbd"
            "y\"");
  EXPECT_THROW((void)json("x\xff").dump(), json::type_error)
      << "what a strict dump would do";
}

}  // namespace
}  // namespace sluice
