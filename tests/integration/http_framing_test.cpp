// Request smuggling (RFC 9112 §6.1, §6.3), differentially: thousands of
// byte streams that mix Transfer-Encoding, Content-Length, Host and HTTP
// versions, each carrying a smuggled request in its body, go over a real
// socket to the real server. The number of responses the server sends must
// equal the number of requests a strict reading of RFC 9112 (StrictCount,
// written here independently of Beast and of service/http/framing.cpp)
// finds in the stream, plus one for the framing error it ends on, if any.
// A server that frames one request differently answers a different number.
#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "client.hpp"

namespace sluice::itest {
namespace {

// ---- the strict reference ---------------------------------------------------

struct Strict {
  int requests = 0;    // well-framed requests, each answered
  bool error = false;  // ends in a framing error (answered, then closed)
  int answers() const { return requests + (error ? 1 : 0); }
};

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out)
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t'))
    s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t'))
    s.remove_suffix(1);
  return s;
}

struct Head {
  int minor = 1;
  std::vector<std::pair<std::string, std::string>> fields;  // lower-cased names
  std::vector<std::string> Values(std::string_view name) const {
    std::vector<std::string> v;
    for (const auto& [n, value] : fields)
      if (n == name) v.push_back(value);
    return v;
  }
};

enum class Step { kRequest, kError, kIncomplete };

// Parses "METHOD SP target SP HTTP/1.x" and the field lines of `block`.
Step ParseHead(std::string_view block, Head* head) {
  std::size_t eol = block.find("\r\n");
  std::string_view line = block.substr(0, eol);
  std::size_t sp1 = line.find(' ');
  std::size_t sp2 = line.rfind(' ');
  if (sp1 == std::string_view::npos || sp1 == 0 || sp2 == sp1) {
    return Step::kError;
  }
  for (char c : line.substr(0, sp1)) {
    if (!std::isupper(static_cast<unsigned char>(c))) return Step::kError;
  }
  std::string_view version = line.substr(sp2 + 1);
  if (version == "HTTP/1.1") {
    head->minor = 1;
  } else if (version == "HTTP/1.0") {
    head->minor = 0;
  } else {
    return Step::kError;
  }
  while (eol != std::string_view::npos && eol + 2 < block.size()) {
    std::size_t start = eol + 2;
    eol = block.find("\r\n", start);
    std::string_view field = block.substr(start, eol - start);
    std::size_t colon = field.find(':');
    if (colon == std::string_view::npos || colon == 0) return Step::kError;
    head->fields.emplace_back(Lower(field.substr(0, colon)),
                              std::string(Trim(field.substr(colon + 1))));
  }
  return Step::kRequest;
}

// The RFC 9112 §6 rules sluice promises (docs/security.md): a body is
// framed by exactly one "chunked" coding or by one Content-Length, never
// both, and HTTP/1.1 has exactly one Host.
// The elements of every field's comma-separated list, trimmed, in order
// (empty ones included).
std::vector<std::string> ListElements(const std::vector<std::string>& values) {
  std::vector<std::string> elements;
  for (const auto& value : values) {
    std::size_t start = 0;
    while (start <= value.size()) {
      std::size_t comma = value.find(',', start);
      if (comma == std::string::npos) comma = value.size();
      elements.emplace_back(
          Trim(std::string_view(value).substr(start, comma - start)));
      start = comma + 1;
    }
  }
  return elements;
}

Step Frame(const Head& head, bool* chunked, std::size_t* length) {
  auto hosts = head.Values("host");
  if (hosts.size() > 1 || (hosts.empty() && head.minor == 1)) {
    return Step::kError;
  }
  auto te = head.Values("transfer-encoding");
  auto cl = head.Values("content-length");
  *chunked = false;
  *length = 0;
  if (!te.empty()) {
    if (head.minor == 0 || !cl.empty()) return Step::kError;
    std::vector<std::string> codings;
    for (const auto& coding : ListElements(te)) {
      if (!coding.empty()) codings.push_back(Lower(coding));
    }
    if (codings != std::vector<std::string>{"chunked"}) return Step::kError;
    *chunked = true;
    return Step::kRequest;
  }
  // RFC 9112 §6.3 (5): a list of identical decimal values is one length.
  std::optional<std::size_t> agreed;
  for (const auto& v : ListElements(cl)) {
    if (v.empty() || v.size() > 9 ||
        !std::all_of(v.begin(), v.end(),
                     [](char c) { return c >= '0' && c <= '9'; })) {
      return Step::kError;
    }
    std::size_t n = std::stoul(v);
    if (agreed && *agreed != n) return Step::kError;
    agreed = n;
  }
  *length = agreed.value_or(0);
  return Step::kRequest;
}

// Consumes a chunked body at the front of `rest`.
Step Chunked(std::string_view* rest) {
  for (;;) {
    std::size_t eol = rest->find("\r\n");
    if (eol == std::string_view::npos) return Step::kIncomplete;
    std::string_view size_text = rest->substr(0, eol);
    if (size_text.empty() || size_text.size() > 8 ||
        !std::all_of(size_text.begin(), size_text.end(), [](char c) {
          return std::isxdigit(static_cast<unsigned char>(c)) != 0;
        })) {
      return Step::kError;
    }
    std::size_t size = std::stoul(std::string(size_text), nullptr, 16);
    rest->remove_prefix(eol + 2);
    if (size == 0) break;
    if (rest->size() < size + 2) return Step::kIncomplete;
    if (rest->substr(size, 2) != "\r\n") return Step::kError;
    rest->remove_prefix(size + 2);
  }
  // No trailers in these streams: the last chunk ends with an empty line.
  if (rest->size() < 2) return Step::kIncomplete;
  if (rest->substr(0, 2) != "\r\n") return Step::kError;
  rest->remove_prefix(2);
  return Step::kRequest;
}

Strict StrictCount(std::string_view rest) {
  Strict count;
  while (!rest.empty()) {
    std::size_t end = rest.find("\r\n\r\n");
    if (end == std::string_view::npos) return count;  // cut short: no answer
    Head head;
    bool chunked = false;
    std::size_t length = 0;
    Step step = ParseHead(rest.substr(0, end + 2), &head);
    if (step == Step::kRequest) step = Frame(head, &chunked, &length);
    if (step == Step::kError) {
      count.error = true;
      return count;
    }
    rest.remove_prefix(end + 4);
    if (chunked) {
      step = Chunked(&rest);
      if (step == Step::kError) count.error = true;
      if (step != Step::kRequest) return count;
    } else {
      if (rest.size() < length) return count;
      rest.remove_prefix(length);
    }
    ++count.requests;
    // HTTP/1.0 closes after each answer unless asked to keep alive.
    if (head.minor == 0) {
      auto conn = head.Values("connection");
      if (conn.empty() || Lower(conn[0]) != "keep-alive") return count;
    }
  }
  return count;
}

// ---- the streams
// -------------------------------------------------------------

constexpr std::string_view kSmuggled =
    "POST /v1/jobs?pipeline=echo HTTP/1.1\r\nHost: a\r\n"
    "Content-Length: 3\r\n\r\n[7]";

std::string ChunkedBody(std::string_view payload) {
  char size[16];
  std::snprintf(size, sizeof size, "%zx", payload.size());
  return std::string(size) + "\r\n" + std::string(payload) + "\r\n0\r\n\r\n";
}

struct Case {
  std::string name;
  std::string bytes;
};

std::vector<Case> Streams() {
  const std::vector<std::string> codings = {"",
                                            "chunked",
                                            "Chunked",
                                            " chunked ",
                                            "gzip",
                                            "chunked, identity",
                                            "identity, chunked",
                                            "gzip, chunked",
                                            "chunked, chunked",
                                            "chunked;q=1",
                                            "chunked,",
                                            "x"};
  const std::vector<std::string> lengths = {"",     "3",    "0", "200",
                                            "3, 3", "3, 4", "+3"};
  const std::vector<std::string> hosts = {"Host: a\r\n", "",
                                          "Host: a\r\nHost: b\r\n"};
  // Bodies: the smuggled request behind an empty last chunk (for servers
  // that read chunked), and a real chunked body followed by it.
  const std::vector<std::string> bodies = {
      "0\r\n\r\n" + std::string(kSmuggled),
      ChunkedBody("[1]") + std::string(kSmuggled)};
  std::vector<Case> cases;
  for (const auto& te : codings)
    for (const auto& cl : lengths)
      for (int order = 0; order < 2; ++order)
        for (const auto& host : hosts)
          for (const char* version : {"1.1", "1.0"})
            for (const auto& body : bodies) {
              if (te.empty() && order == 1) continue;  // nothing to order
              std::string fields = host;
              std::string te_line =
                  te.empty() ? "" : "Transfer-Encoding: " + te + "\r\n";
              std::string cl_line =
                  cl.empty() ? "" : "Content-Length: " + cl + "\r\n";
              fields += order == 0 ? te_line + cl_line : cl_line + te_line;
              if (std::string_view(version) == "1.0") {
                fields += "Connection: keep-alive\r\n";
              }
              std::string bytes = "POST /v1/jobs?pipeline=echo HTTP/" +
                                  std::string(version) + "\r\n" + fields +
                                  "\r\n" + body +
                                  "GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n";
              std::string name = "TE[" + te + "] CL[" + cl + "] order " +
                                 std::to_string(order) + " hosts[" + host +
                                 "] HTTP/" + version + " body " +
                                 std::to_string(&body - bodies.data());
              cases.push_back({std::move(name), std::move(bytes)});
            }
  return cases;
}

TEST(HttpFramingTest, StrictReferenceReadsKnownStreams) {
  // The reference itself, on streams whose reading is not in doubt.
  EXPECT_EQ(StrictCount("GET / HTTP/1.1\r\nHost: a\r\n\r\n").answers(), 1);
  EXPECT_EQ(StrictCount("GET / HTTP/1.1\r\n\r\n").answers(), 1);
  EXPECT_TRUE(StrictCount("GET / HTTP/1.1\r\n\r\n").error);
  EXPECT_EQ(StrictCount("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n"
                        "\r\nabcGET / HTTP/1.1\r\nHost: a\r\n\r\n")
                .requests,
            2);
  Strict smuggle = StrictCount(
      "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n"
      "0\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n");
  EXPECT_EQ(smuggle.requests, 0);
  EXPECT_TRUE(smuggle.error);
}

TEST(HttpFramingTest, ServerAnswersExactlyTheRequestsAStrictParserSees) {
  TestServer server(kTestConfig);
  const std::vector<Case> cases = Streams();
  ASSERT_GT(cases.size(), 1000u);
  int checked_errors = 0;
  for (const Case& c : cases) {
    Strict strict = StrictCount(c.bytes);
    std::vector<int> statuses =
        RawStatuses(RawExchangeToEnd(server.port(), c.bytes));
    ASSERT_EQ(static_cast<int>(statuses.size()), strict.answers())
        << c.name << "\nstatuses:" << ::testing::PrintToString(statuses)
        << "\nstream:\n"
        << c.bytes;
    if (strict.error) {
      // The last answer is the refusal: 400 or 501, never a success.
      ASSERT_TRUE(statuses.back() == 400 || statuses.back() == 501)
          << c.name << ": " << statuses.back();
      ++checked_errors;
    }
  }
  // The grid exercises both sides.
  EXPECT_GT(checked_errors, 100);
  EXPECT_LT(checked_errors, static_cast<int>(cases.size()));
}

TEST(HttpFramingTest, NothingIsReadAfterAFramingError) {
  TestServer server(kTestConfig);
  auto jobs_before =
      Http(server.port(), "GET", "/v1/jobs?limit=1000").json()["jobs"].size();
  // gzip alongside the body that hides a job submission.
  std::string bytes =
      "POST /v1/jobs?pipeline=echo HTTP/1.1\r\nHost: a\r\n"
      "Transfer-Encoding: gzip\r\n\r\n" +
      std::string(kSmuggled);
  std::string raw = RawExchangeToEnd(server.port(), bytes);
  EXPECT_EQ(RawStatuses(raw), std::vector<int>{501}) << raw;
  EXPECT_NE(raw.find("Connection: close"), std::string::npos) << raw;
  EXPECT_NE(raw.find("\"not_implemented\""), std::string::npos) << raw;
  auto jobs_after =
      Http(server.port(), "GET", "/v1/jobs?limit=1000").json()["jobs"].size();
  EXPECT_EQ(jobs_after, jobs_before) << "the smuggled POST created a job";
}

TEST(HttpFramingTest, Http11WithoutHostIs400AndCloses) {
  TestServer server(kTestConfig);
  std::string raw = RawExchangeToEnd(
      server.port(),
      "GET /healthz HTTP/1.1\r\n\r\nGET /healthz HTTP/1.1\r\nHost: a\r\n\r\n");
  EXPECT_EQ(RawStatuses(raw), std::vector<int>{400}) << raw;
}

}  // namespace
}  // namespace sluice::itest
