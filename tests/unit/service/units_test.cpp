// Tests of service/config/units.hpp: durations, sizes, listen addresses and
// ${ENV} substitution.
#include "service/config/units.hpp"

#include <gtest/gtest.h>

#include <cstdlib>
#include <map>

namespace sluice::config {
namespace {

using std::chrono::milliseconds;

milliseconds Ms(std::string_view text) {
  auto r = ParseDuration(text);
  EXPECT_TRUE(r.ok()) << text << ": " << (r.ok() ? "" : r.error().message);
  return r.ok() ? r.value() : milliseconds{-1};
}

TEST(ParseDuration, AcceptsEachUnit) {
  EXPECT_EQ(Ms("250ms"), milliseconds{250});
  EXPECT_EQ(Ms("2s"), milliseconds{2000});
  EXPECT_EQ(Ms("10m"), milliseconds{600000});
  EXPECT_EQ(Ms("1h"), milliseconds{3600000});
}

TEST(ParseDuration, AcceptsFractionsCompoundsZeroAndSpaces) {
  EXPECT_EQ(Ms("1.5s"), milliseconds{1500});
  EXPECT_EQ(Ms(".5s"), milliseconds{500});
  EXPECT_EQ(Ms("0.001s"), milliseconds{1});
  EXPECT_EQ(Ms("1.25m"), milliseconds{75000});
  EXPECT_EQ(Ms("1h30m"), milliseconds{5400000});
  EXPECT_EQ(Ms("1m30s250ms"), milliseconds{90250});
  EXPECT_EQ(Ms("0"), milliseconds{0});
  EXPECT_EQ(Ms("0s"), milliseconds{0});
  EXPECT_EQ(Ms("  2s \t"), milliseconds{2000});
}

TEST(ParseDuration, RejectsBadInput) {
  for (std::string_view bad :
       {"", " ", "s", "abc", "30", "1.5", "5x", "-1s", "+1s", "1.s", "1 s",
        "1s 2s", "0.5ms", "1.0001s", "ms", "1e3ms", "10ms5",
        "99999999999999999h", "9999999999999999999ms"}) {
    auto r = ParseDuration(bad);
    EXPECT_FALSE(r.ok()) << "'" << bad << "' parsed";
    if (!r.ok()) {
      EXPECT_EQ(r.error().code, "invalid_duration");
      EXPECT_NE(r.error().message.find("invalid duration"), std::string::npos);
    }
  }
}

TEST(ParseDuration, ExplainsMissingUnit) {
  auto r = ParseDuration("30");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("missing unit"), std::string::npos);
}

TEST(FormatDuration, PicksTheLargestWholeUnit) {
  EXPECT_EQ(FormatDuration(milliseconds{0}), "0s");
  EXPECT_EQ(FormatDuration(milliseconds{250}), "250ms");
  EXPECT_EQ(FormatDuration(milliseconds{1500}), "1500ms");
  EXPECT_EQ(FormatDuration(milliseconds{30000}), "30s");
  EXPECT_EQ(FormatDuration(milliseconds{600000}), "10m");
  EXPECT_EQ(FormatDuration(milliseconds{7200000}), "2h");
  EXPECT_EQ(Ms(FormatDuration(milliseconds{90250})), milliseconds{90250});
}

std::uint64_t Bytes(std::string_view text) {
  auto r = ParseSize(text);
  EXPECT_TRUE(r.ok()) << text << ": " << (r.ok() ? "" : r.error().message);
  return r.ok() ? r.value() : 0;
}

TEST(ParseSize, AcceptsBinaryDecimalAndPlainBytes) {
  EXPECT_EQ(Bytes("16MiB"), 16u * 1024 * 1024);
  EXPECT_EQ(Bytes("512KiB"), 512u * 1024);
  EXPECT_EQ(Bytes("1GiB"), 1024u * 1024 * 1024);
  EXPECT_EQ(Bytes("2TiB"), 2ULL << 40);
  EXPECT_EQ(Bytes("1GB"), 1000000000u);
  EXPECT_EQ(Bytes("3KB"), 3000u);
  EXPECT_EQ(Bytes("5MB"), 5000000u);
  EXPECT_EQ(Bytes("1TB"), 1000000000000ULL);
  EXPECT_EQ(Bytes("1048576"), 1048576u);
  EXPECT_EQ(Bytes("0"), 0u);
  EXPECT_EQ(Bytes("7B"), 7u);
}

TEST(ParseSize, IsCaseInsensitiveAllowsSpaceAndRoundsFractionsDown) {
  EXPECT_EQ(Bytes("16mib"), 16u * 1024 * 1024);
  EXPECT_EQ(Bytes("1kb"), 1000u);
  EXPECT_EQ(Bytes("10 MiB"), 10u * 1024 * 1024);
  EXPECT_EQ(Bytes(" 4KiB "), 4096u);
  EXPECT_EQ(Bytes("1.5KiB"), 1536u);
  EXPECT_EQ(Bytes("0.5B"), 0u);
  EXPECT_EQ(Bytes("1.0009KB"), 1000u);
}

TEST(ParseSize, RejectsBadInput) {
  for (std::string_view bad :
       {"", "MiB", "12XB", "-1", "1 2", "1.5.5MiB", "0x10", "100000000TiB",
        "99999999999999999999", "16 M i B", "1Mi"}) {
    auto r = ParseSize(bad);
    EXPECT_FALSE(r.ok()) << "'" << bad << "' parsed";
    if (!r.ok()) {
      EXPECT_EQ(r.error().code, "invalid_size");
    }
  }
}

TEST(ParseHostPort, AcceptsNamesIpv4AndBracketedIpv6) {
  auto a = ParseHostPort("0.0.0.0:8080");
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->host, "0.0.0.0");
  EXPECT_EQ(a->port, 8080);
  auto b = ParseHostPort("[::1]:9000");
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->host, "::1");
  EXPECT_EQ(b->port, 9000);
  auto c = ParseHostPort("localhost:0");
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->host, "localhost");
  EXPECT_EQ(c->port, 0);
  auto d = ParseHostPort("example.com:65535");
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->port, 65535);
}

TEST(ParseHostPort, RejectsBadAddresses) {
  for (std::string_view bad :
       {"", "8080", ":8080", "host:", "host:65536", "host:99999", "::1:80",
        "[::1]80", "[::1]", "[]:80", "host:8a", "host:-1", "ho st:80", "a/b:80",
        "[::1:80"}) {
    auto r = ParseHostPort(bad);
    EXPECT_FALSE(r.ok()) << "'" << bad << "' parsed";
    if (!r.ok()) {
      EXPECT_EQ(r.error().code, "invalid_listen");
    }
  }
}

class SubstituteEnvTest : public ::testing::Test {
 protected:
  std::map<std::string, std::string> env_{
      {"HOST", "db.local"}, {"PORT", "5432"}, {"EMPTY", ""}};
  EnvLookup lookup_ = [this](const std::string& name) {
    auto it = env_.find(name);
    return it == env_.end() ? std::nullopt
                            : std::optional<std::string>(it->second);
  };

  std::string Sub(std::string_view text) {
    auto r = SubstituteEnv(text, lookup_);
    EXPECT_TRUE(r.ok()) << text << ": " << (r.ok() ? "" : r.error().message);
    return r.ok() ? r.value() : "<error>";
  }
  std::string Fail(std::string_view text) {
    auto r = SubstituteEnv(text, lookup_);
    EXPECT_FALSE(r.ok()) << text << " gave " << (r.ok() ? r.value() : "");
    if (r.ok()) return "";
    EXPECT_EQ(r.error().code, "invalid_env");
    return r.error().message;
  }
};

TEST_F(SubstituteEnvTest, ReplacesSetVariables) {
  EXPECT_EQ(Sub("${HOST}:${PORT}"), "db.local:5432");
  EXPECT_EQ(Sub("url: http://${HOST}/x"), "url: http://db.local/x");
  EXPECT_EQ(Sub("no references"), "no references");
  EXPECT_EQ(Sub(""), "");
}

TEST_F(SubstituteEnvTest, UsesTheDefaultWhenUnsetOrEmpty) {
  EXPECT_EQ(Sub("${NOPE:-0.0.0.0:8080}"), "0.0.0.0:8080");
  EXPECT_EQ(Sub("${EMPTY:-fallback}"), "fallback");
  EXPECT_EQ(Sub("${HOST:-fallback}"), "db.local");
  EXPECT_EQ(Sub("[${NOPE:-}]"), "[]");
  EXPECT_EQ(Sub("${NOPE:-a b-c}"), "a b-c");
}

TEST_F(SubstituteEnvTest, SetButEmptyWithoutDefaultIsEmpty) {
  EXPECT_EQ(Sub("[${EMPTY}]"), "[]");
}

TEST_F(SubstituteEnvTest, DollarEscapesAndLoneDollars) {
  EXPECT_EQ(Sub("$${HOST}"), "${HOST}");
  EXPECT_EQ(Sub("$$"), "$");
  EXPECT_EQ(Sub("cost $5 and $x"), "cost $5 and $x");
  EXPECT_EQ(Sub("end $"), "end $");
  EXPECT_EQ(Sub("$$$${HOST}"), "$${HOST}");
  EXPECT_EQ(Sub("$$${HOST}"), "$db.local");
}

TEST_F(SubstituteEnvTest, LeavesCommentLinesAlone) {
  EXPECT_EQ(Sub("# ${MISSING}\na: ${HOST}\n  \t# $${x} ${1bad\n"),
            "# ${MISSING}\na: db.local\n  \t# $${x} ${1bad\n");
  EXPECT_EQ(Sub("#${MISSING}"), "#${MISSING}");
  // Only whole-line comments: a trailing comment is still substituted.
  EXPECT_EQ(Sub("a: 1 # ${HOST}"), "a: 1 # db.local");
  const std::string m = Fail("# ${MISSING}\n\nb: ${MISSING}");
  EXPECT_NE(m.find("line 3, column 4"), std::string::npos) << m;
}

TEST_F(SubstituteEnvTest, ReportsUnsetVariableWithPosition) {
  const std::string m = Fail("a: 1\nb: x ${MISSING}\n");
  EXPECT_NE(m.find("line 2, column 6"), std::string::npos) << m;
  EXPECT_NE(m.find("MISSING is not set"), std::string::npos) << m;
}

TEST_F(SubstituteEnvTest, ReportsMalformedReferences) {
  EXPECT_NE(Fail("${HOST").find("unterminated"), std::string::npos);
  EXPECT_NE(Fail("${HOST\n}").find("unterminated"), std::string::npos);
  EXPECT_NE(Fail("${}").find("invalid variable reference"), std::string::npos);
  EXPECT_NE(Fail("${1A}").find("invalid variable reference"),
            std::string::npos);
  EXPECT_NE(Fail("${A-B}").find("invalid variable reference"),
            std::string::npos);
  EXPECT_NE(Fail("${:-x}").find("invalid variable reference"),
            std::string::npos);
}

TEST(SubstituteEnv, ReadsTheProcessEnvironmentByDefault) {
  ASSERT_EQ(setenv("SLUICE_UNITS_TEST_VAR", "hello", 1), 0);
  auto r =
      SubstituteEnv("${SLUICE_UNITS_TEST_VAR} ${SLUICE_UNITS_TEST_UNSET:-x}");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r.value(), "hello x");
  EXPECT_EQ(GetEnv("SLUICE_UNITS_TEST_VAR"), "hello");
  EXPECT_EQ(GetEnv("SLUICE_UNITS_TEST_UNSET"), std::nullopt);
  unsetenv("SLUICE_UNITS_TEST_VAR");
}

}  // namespace
}  // namespace sluice::config
