// Integration tests of the memory bounds (contract §C6, issue 11 §3) over
// real sockets: a job whose results pass jobs.max_job_result_bytes fails
// with a clear error and stays readable; results pages are bounded by bytes
// and page through the whole log (JSON and NDJSON); an ingestion frame far
// larger than jobs.max_pending_items goes in piece by piece; a job larger
// than jobs.max_pending_items gets 413 job_too_large; results are charged
// at what they really cost in memory, not their text size.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "client.hpp"
#include "service/engine/engine.hpp"
#include "service/http/results_page.hpp"

namespace sluice::itest {
namespace {

using nlohmann::json;

constexpr const char* kConfig = R"(
server:
  listen: "127.0.0.1:0"
  io_threads: 2
  max_body_bytes: 4MiB
  shutdown_grace: 5s
jobs:
  max_pending_items: 100
  max_retained_bytes: 16MiB
  max_job_result_bytes: 4MiB
  min_retention: 10s
pipelines:
  - name: echo
    stages:
      - { name: pass, processor: { type: passthrough }, workers: 2 }
  - name: fan
    stages:
      - { name: split, processor: { type: split, field: "" }, workers: 2 }
)";

class MemoryBoundsTest : public ::testing::Test {
 protected:
  void SetUp() override { server_ = std::make_unique<TestServer>(kConfig); }
  std::uint16_t port() const { return server_->port(); }

  // POSTs a job and waits for it (?wait=30): its status (200) or the error.
  HttpResponse Run(const std::string& pipeline, const json& items) {
    return Http(port(), "POST", "/v1/jobs?pipeline=" + pipeline + "&wait=30",
                items.dump());
  }

  std::unique_ptr<TestServer> server_;
};

// The issue's case at test scale: a split stage turns a small body into far
// more results than the job may hold. The job fails with a clear error; its
// id still answers right after, with the results it kept.
TEST_F(MemoryBoundsTest, JobOverItsResultLimitFailsAndStaysReadable) {
  json items = json::array();
  for (int i = 0; i < 90; ++i) {
    json part = json::array();
    for (int k = 0; k < 1000; ++k) part.push_back(k);
    items.push_back(std::move(part));
  }
  HttpResponse r = Run("fan", items);  // 90,000 results, ~10 MB of records
  ASSERT_EQ(r.status, 200) << r.body;
  const json status = r.json();
  EXPECT_EQ(status["state"], "failed");
  ASSERT_TRUE(status.contains("error")) << status;
  EXPECT_EQ(status["error"]["code"], "results_too_large");
  EXPECT_NE(status["error"]["message"].get<std::string>().find(
                "jobs.max_job_result_bytes (4194304 bytes)"),
            std::string::npos)
      << status;
  EXPECT_EQ(status["items"]["in"], 90);
  EXPECT_GT(status["items"]["out"].get<int>(), 0);
  EXPECT_LT(status["items"]["out"].get<int>(), 90000);
  EXPECT_GT(status["items"]["cancelled"].get<int>(), 0);

  const std::string id = status["id"];
  HttpResponse again = Http(port(), "GET", "/v1/jobs/" + id);
  ASSERT_EQ(again.status, 200) << "readable right after it failed";
  EXPECT_EQ(again.json()["state"], "failed");
  HttpResponse page = Http(port(), "GET", "/v1/jobs/" + id + "/results");
  ASSERT_EQ(page.status, 200);
  EXPECT_EQ(page.json()["total"], status["items"]["out"]);

  // Another job runs normally afterwards.
  HttpResponse small = Run("echo", json::array({1, 2, 3}));
  ASSERT_EQ(small.status, 200) << small.body;
  EXPECT_EQ(small.json()["state"], "done");
}

// Results are charged what they cost in memory: 100 items of 201 bytes of
// text nested 100 deep are 20 KB of JSON but ~650 KB of parsed values, so a
// 256 KiB job cap is passed although the text is far below it.
TEST_F(MemoryBoundsTest, NestedItemsAreChargedTheirRealCost) {
  std::string deep;
  for (int i = 0; i < 100; ++i) deep += '[';
  deep += '1';
  for (int i = 0; i < 100; ++i) deep += ']';
  ASSERT_EQ(deep.size(), 201u);
  std::string body = "[";
  for (int i = 0; i < 100; ++i) body += (i ? "," : "") + deep;
  body += "]";
  TestServer small_cap(std::string(kConfig).replace(
      std::string(kConfig).find("max_job_result_bytes: 4MiB"),
      std::string("max_job_result_bytes: 4MiB").size(),
      "max_job_result_bytes: 256KiB"));
  HttpResponse r =
      Http(small_cap.port(), "POST", "/v1/jobs?pipeline=echo&wait=30", body);
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.json()["state"], "failed") << r.body;
  EXPECT_EQ(r.json()["error"]["code"], "results_too_large");
  const json items = r.json()["items"];
  EXPECT_LT(items["out"].get<int>(), 50) << "~6.5 KB each against 256 KiB";
  EXPECT_EQ(items["out"].get<int>() + items["cancelled"].get<int>(), 100);
}

// A page of 10,000 requested records of ~30 KB each would be 300 MB: the
// page stops at kResultsPageBytes, says so in `limit` and `next_offset`,
// and paging by next_offset reads every record exactly once.
TEST_F(MemoryBoundsTest, ResultsPageIsCappedByBytesAndPagesThroughTheLog) {
  json items = json::array();
  for (int i = 0; i < 90; ++i) {
    items.push_back(std::string(30000, static_cast<char>('a' + i % 26)));
  }
  HttpResponse r = Run("echo", items);
  ASSERT_EQ(r.status, 200) << r.body;
  ASSERT_EQ(r.json()["state"], "done");
  const std::string id = r.json()["id"];
  const std::string results = "/v1/jobs/" + id + "/results";

  std::set<int> seqs;
  std::size_t offset = 0;
  int pages = 0;
  while (offset < 90) {
    HttpResponse page =
        Http(port(), "GET",
             results + "?offset=" + std::to_string(offset) + "&limit=10000");
    ASSERT_EQ(page.status, 200);
    EXPECT_LE(page.body.size(), http::kResultsPageBytes + 256);
    const json j = page.json();
    const std::size_t n = j["results"].size();
    ASSERT_GT(n, 0u);
    EXPECT_EQ(j["offset"], offset);
    EXPECT_EQ(j["total"], 90);
    EXPECT_EQ(j["next_offset"], offset + n);
    EXPECT_EQ(j["limit"], j["next_offset"].get<std::size_t>() == 90 ? 10000 : n)
        << "limit says where the next page starts when bytes cut it short";
    for (const json& rec : j["results"]) {
      EXPECT_TRUE(seqs.insert(rec["seq"].get<int>()).second);
    }
    offset = j["next_offset"];
    ++pages;
  }
  EXPECT_EQ(seqs.size(), 90u);
  EXPECT_GE(pages, 3) << "2.7 MB of records in pages of at most 1 MiB";

  // NDJSON: the same bound; the next offset in X-Next-Offset.
  std::set<int> nd_seqs;
  offset = 0;
  while (offset < 90) {
    HttpResponse page =
        Http(port(), "GET",
             results + "?offset=" + std::to_string(offset) + "&limit=10000", "",
             {{"Accept", "application/x-ndjson"}});
    ASSERT_EQ(page.status, 200);
    EXPECT_LE(page.body.size(), http::kResultsPageBytes + 256);
    EXPECT_EQ(page.header("x-total-count"), "90");
    std::istringstream lines(page.body);
    std::string line;
    std::size_t n = 0;
    while (std::getline(lines, line)) {
      EXPECT_TRUE(nd_seqs.insert(json::parse(line)["seq"].get<int>()).second);
      ++n;
    }
    ASSERT_GT(n, 0u);
    EXPECT_EQ(page.header("x-next-offset"), std::to_string(offset + n));
    offset += n;
  }
  EXPECT_EQ(nd_seqs.size(), 90u);

  // A small page is unchanged: limit as asked.
  const json small = Http(port(), "GET", results + "?offset=3&limit=2").json();
  EXPECT_EQ(small["limit"], 2);
  EXPECT_EQ(small["next_offset"], 5);
  ASSERT_EQ(small["results"].size(), 2u);
}

// One frame of 20,000 items against jobs.max_pending_items 100: fed piece
// by piece as room appears (the session reads no further frame meanwhile),
// never more than 100 pending, and every item comes back.
TEST_F(MemoryBoundsTest, OversizedIngestionFrameIsFedInPieces) {
  std::atomic<bool> stop{false};
  std::atomic<std::uint64_t> max_pending{0};
  engine::Engine& engine = server_->server().engine();
  std::thread watcher([&] {
    while (!stop.load()) {
      const std::uint64_t p = engine.pending_items();
      if (p > max_pending.load()) max_pending.store(p);
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
  });
  WsClient ws(port(), "/v1/stream?pipeline=echo");
  ASSERT_EQ(ws.handshake_status(), 101);
  json frame = {{"items", json::array()}};
  for (int i = 0; i < 20000; ++i) frame["items"].push_back(i);
  ws.Send(frame.dump());
  ws.Send(R"({"end":true})");
  std::vector<json> frames = ws.ReadAll(60s);
  stop.store(true);
  watcher.join();
  ASSERT_FALSE(frames.empty());
  std::set<int> seqs;
  for (std::size_t i = 0; i + 1 < frames.size(); ++i) {
    ASSERT_EQ(frames[i]["type"], "result") << frames[i];
    seqs.insert(frames[i]["seq"].get<int>());
  }
  EXPECT_EQ(seqs.size(), 20000u);
  EXPECT_EQ(frames.back()["type"], "done");
  EXPECT_EQ(frames.back()["job"]["state"], "done");
  EXPECT_EQ(frames.back()["job"]["items"]["in"], 20000);
  EXPECT_EQ(frames.back()["job"]["items"]["out"], 20000);
  EXPECT_EQ(ws.close_code(), 1000);
  EXPECT_LE(max_pending.load(), 100u) << "jobs.max_pending_items held";
}

// A job that could never fit jobs.max_pending_items gets 413 job_too_large
// (no Retry-After: retrying cannot help); one that fits but not now gets
// 429 over_capacity.
TEST_F(MemoryBoundsTest, JobLargerThanMaxPendingItemsGets413) {
  json items = json::array();
  for (int i = 0; i < 101; ++i) items.push_back(i);
  HttpResponse r = Http(port(), "POST", "/v1/jobs?pipeline=echo", items.dump());
  ASSERT_EQ(r.status, 413) << r.body;
  EXPECT_EQ(r.json()["error"]["code"], "job_too_large");
  const std::string message = r.json()["error"]["message"];
  EXPECT_NE(message.find("101 items"), std::string::npos) << message;
  EXPECT_NE(message.find("jobs.max_pending_items (100)"), std::string::npos)
      << message;
  EXPECT_EQ(r.header("retry-after"), "");
  EXPECT_TRUE(Http(port(), "GET", "/v1/jobs").json()["jobs"].empty())
      << "nothing was created";

  items.erase(items.size() - 1);
  HttpResponse fits = Run("echo", items);
  ASSERT_EQ(fits.status, 200) << fits.body;
  EXPECT_EQ(fits.json()["items"]["in"], 100);
}

}  // namespace
}  // namespace sluice::itest
