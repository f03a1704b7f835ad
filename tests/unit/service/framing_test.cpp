// Unit tests of http::CheckFraming and http::CheckWebSocketHandshake
// (service/http/framing.hpp): which request headers are refused, with what
// status, and that every refusal closes the connection.
#include "service/http/framing.hpp"

#include <gtest/gtest.h>

#include <initializer_list>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>

namespace sluice::http {
namespace {

using Fields = std::initializer_list<std::pair<std::string, std::string>>;

RequestHeader Header(unsigned version, Fields fields,
                     bhttp::verb method = bhttp::verb::post) {
  RequestHeader h;
  h.method(method);
  h.target("/v1/jobs?pipeline=echo");
  h.version(version);
  for (const auto& [name, value] : fields) h.insert(name, value);
  return h;
}

// The refusal's status, or 0 when the request passes.
int FramingStatus(unsigned version, Fields fields) {
  auto refused = CheckFraming(Header(version, fields));
  if (!refused) return 0;
  EXPECT_FALSE(refused->keep_alive()) << "a framing refusal must close";
  auto body = nlohmann::json::parse(refused->body());
  EXPECT_TRUE(body["error"]["code"].is_string()) << refused->body();
  EXPECT_TRUE(body["error"]["message"].is_string()) << refused->body();
  return refused->result_int();
}

TEST(FramingTest, PlainRequestsPass) {
  EXPECT_EQ(FramingStatus(11, {{"Host", "a"}}), 0);
  EXPECT_EQ(FramingStatus(11, {{"Host", "a"}, {"Content-Length", "3"}}), 0);
  EXPECT_EQ(
      FramingStatus(11, {{"Host", "a"}, {"Transfer-Encoding", "chunked"}}), 0);
  EXPECT_EQ(
      FramingStatus(11, {{"Host", "a"}, {"Transfer-Encoding", "Chunked"}}), 0);
  EXPECT_EQ(FramingStatus(10, {}), 0) << "HTTP/1.0 needs no Host";
}

TEST(FramingTest, HostMissingOrRepeatedIs400) {
  EXPECT_EQ(FramingStatus(11, {}), 400);
  EXPECT_EQ(FramingStatus(11, {{"Host", "a"}, {"Host", "b"}}), 400);
  EXPECT_EQ(FramingStatus(10, {{"Host", "a"}, {"Host", "b"}}), 400);
}

TEST(FramingTest, UnknownCodingIs501) {
  for (const char* te :
       {"gzip", "identity", "chunked, identity", "identity, chunked",
        "gzip, chunked", "chunked;q=1", "x-custom"}) {
    EXPECT_EQ(FramingStatus(11, {{"Host", "a"}, {"Transfer-Encoding", te}}),
              501)
        << te;
  }
  // Two fields make one list: gzip then chunked.
  EXPECT_EQ(FramingStatus(11, {{"Host", "a"},
                               {"Transfer-Encoding", "gzip"},
                               {"Transfer-Encoding", "chunked"}}),
            501);
}

TEST(FramingTest, TransferEncodingWithContentLengthIs400) {
  EXPECT_EQ(FramingStatus(11, {{"Host", "a"},
                               {"Transfer-Encoding", "chunked"},
                               {"Content-Length", "5"}}),
            400);
  // An unknown coding with a Content-Length is ambiguous first of all.
  EXPECT_EQ(FramingStatus(11, {{"Host", "a"},
                               {"Transfer-Encoding", "gzip"},
                               {"Content-Length", "5"}}),
            400);
}

TEST(FramingTest, ChunkedTwiceOrEmptyIs400) {
  EXPECT_EQ(FramingStatus(
                11, {{"Host", "a"}, {"Transfer-Encoding", "chunked, chunked"}}),
            400);
  EXPECT_EQ(FramingStatus(11, {{"Host", "a"}, {"Transfer-Encoding", " , "}}),
            400);
}

TEST(FramingTest, TransferEncodingInHttp10Is400) {
  EXPECT_EQ(FramingStatus(10, {{"Transfer-Encoding", "chunked"}}), 400);
}

TEST(FramingTest, HeadRefusalHasNoBody) {
  auto refused = CheckFraming(Header(11, {}, bhttp::verb::head));
  ASSERT_TRUE(refused);
  EXPECT_TRUE(refused->body().empty());
  EXPECT_NE((*refused)[bhttp::field::content_length], "0");
}

TEST(FramingTest, LongCodingIsQuotedShort) {
  std::string coding(10000, 'x');
  auto refused =
      CheckFraming(Header(11, {{"Host", "a"}, {"Transfer-Encoding", coding}}));
  ASSERT_TRUE(refused);
  EXPECT_LT(refused->body().size(), 400u);
}

// ---- WebSocket handshake ---------------------------------------------------

constexpr const char* kKey = "dGhlIHNhbXBsZSBub25jZQ==";  // RFC 6455 §1.3

int HandshakeStatus(unsigned version, Fields fields) {
  auto refused =
      CheckWebSocketHandshake(Header(version, fields, bhttp::verb::get));
  if (!refused) return 0;
  EXPECT_FALSE(refused->keep_alive());
  EXPECT_EQ((*refused)[bhttp::field::content_type], "application/json");
  return refused->result_int();
}

TEST(WebSocketHandshakeTest, ValidHandshakePasses) {
  EXPECT_EQ(HandshakeStatus(11, {{"Sec-WebSocket-Key", kKey},
                                 {"Sec-WebSocket-Version", "13"}}),
            0);
}

TEST(WebSocketHandshakeTest, MissingOrBadKeyIs400) {
  EXPECT_EQ(HandshakeStatus(11, {{"Sec-WebSocket-Version", "13"}}), 400);
  for (const char* key :
       {"", "short", "dGhlIHNhbXBsZSBub25jZQ=", "dGhlIHNhbXBsZSBub25jZQ!=",
        "dGhlIHNhbXBsZSBub25jZR==", "dGhlIHNhbXBsZSBub25jZQ==dGhl"}) {
    EXPECT_EQ(HandshakeStatus(11, {{"Sec-WebSocket-Key", key},
                                   {"Sec-WebSocket-Version", "13"}}),
              400)
        << key;
  }
}

TEST(WebSocketHandshakeTest, WrongVersionIs426NamingThe13) {
  auto refused = CheckWebSocketHandshake(
      Header(11, {{"Sec-WebSocket-Key", kKey}, {"Sec-WebSocket-Version", "8"}},
             bhttp::verb::get));
  ASSERT_TRUE(refused);
  EXPECT_EQ(refused->result_int(), 426);
  EXPECT_EQ((*refused)[bhttp::field::sec_websocket_version], "13");
  EXPECT_EQ(nlohmann::json::parse(refused->body())["error"]["code"],
            "upgrade_required");
  EXPECT_EQ(HandshakeStatus(11, {{"Sec-WebSocket-Key", kKey}}), 400);
}

TEST(WebSocketHandshakeTest, Http10Is400) {
  EXPECT_EQ(HandshakeStatus(10, {{"Sec-WebSocket-Key", kKey},
                                 {"Sec-WebSocket-Version", "13"}}),
            400);
}

}  // namespace
}  // namespace sluice::http
