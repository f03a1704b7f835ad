// Unit tests of sluice::jobs::Job: status object, counts, result log, the
// streaming cursor's one-shot wake callbacks, cancel and finish.
#include "service/jobs/job.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <regex>
#include <set>
#include <thread>
#include <vector>

namespace sluice::jobs {
namespace {

using nlohmann::json;

ResultRecord Value(std::uint64_t seq, json v) {
  return ResultRecord{seq, false, std::move(v), {}, {}, {}, {}};
}
ResultRecord Failure(std::uint64_t seq, std::string msg, std::string stage) {
  return ResultRecord{seq, true, nullptr, std::move(msg), std::move(stage),
                      {},  {}};
}

TEST(JobTest, StateNames) {
  EXPECT_EQ(ToString(JobState::kQueued), "queued");
  EXPECT_EQ(ToString(JobState::kRunning), "running");
  EXPECT_EQ(ToString(JobState::kDone), "done");
  EXPECT_EQ(ToString(JobState::kFailed), "failed");
  EXPECT_EQ(ToString(JobState::kCancelled), "cancelled");
  EXPECT_FALSE(IsFinal(JobState::kQueued));
  EXPECT_FALSE(IsFinal(JobState::kRunning));
  EXPECT_TRUE(IsFinal(JobState::kDone));
  EXPECT_TRUE(IsFinal(JobState::kFailed));
  EXPECT_TRUE(IsFinal(JobState::kCancelled));
}

TEST(JobTest, RecordJson) {
  EXPECT_EQ(ToJson(Value(3, json{{"a", 1}})),
            json::parse(R"({"seq":3,"value":{"a":1}})"));
  EXPECT_EQ(ToJson(Value(0, nullptr)),
            json::parse(R"({"seq":0,"value":null})"));
  EXPECT_EQ(ToJson(Failure(7, "boom", "upper")),
            json::parse(R"({"seq":7,"error":"boom","stage":"upper"})"));
}

ResultRecord TextValue(std::uint64_t seq, std::string text) {
  ResultRecord r;
  r.seq = seq;
  r.value_text = std::move(text);
  return r;
}

TEST(JobTest, RecordTextSplicesValueText) {
  // The same text whether the value is held as JSON or as text.
  EXPECT_EQ(RecordText(TextValue(3, R"({"a":[1,"x"]})")),
            R"({"seq":3,"value":{"a":[1,"x"]}})");
  EXPECT_EQ(RecordText(Value(3, json{{"a", json::array({1, "x"})}})),
            R"({"seq":3,"value":{"a":[1,"x"]}})");
  EXPECT_EQ(RecordText(Failure(7, "boom", "upper")),
            R"({"error":"boom","seq":7,"stage":"upper"})");
  EXPECT_EQ(ToJson(TextValue(4, "[2]")),
            json::parse(R"({"seq":4,"value":[2]})"));
  EXPECT_EQ(ValueOf(TextValue(4, "[2]")), json::array({2}));
  EXPECT_TRUE(ValueOf(TextValue(4, "{")).is_null());  // not JSON
}

TEST(JobTest, RecordCostCountsValueText) {
  EXPECT_GT(RecordCost(TextValue(1, std::string(1000, '1'))),
            RecordCost(TextValue(1, "1")) + 900);
}

TEST(JobTest, ForEachResultVisitsTheLogInOrder) {
  Job job("j", "p", 3);
  job.Append({Value(0, 1), Failure(1, "e", "s"), TextValue(2, "3")}, 0, 0);
  std::vector<std::uint64_t> seqs;
  job.ForEachResult([&seqs](const ResultRecord& r) { seqs.push_back(r.seq); });
  EXPECT_EQ(seqs, (std::vector<std::uint64_t>{0, 1, 2}));
}

TEST(JobTest, TakeResultsMovesTheLogOutAndRefundsTheBudget) {
  auto budget = std::make_shared<ResultBudget>(1 << 20);
  Job job("j", "p", 2, Job::Clock::now(), ResultLimits{1 << 20, budget});
  const std::uint64_t bookkeeping = budget->used();
  job.Append({Value(0, json{{"k", std::string(100, 'x')}}), Value(1, 2)}, 0, 0);
  ASSERT_GT(budget->used(), bookkeeping);
  ASSERT_TRUE(job.Finish(nullptr).has_value());
  const std::vector<ResultRecord> taken = job.TakeResults();
  ASSERT_EQ(taken.size(), 2u);
  EXPECT_EQ(taken[0].value["k"], std::string(100, 'x'));
  EXPECT_EQ(taken[1].seq, 1u);
  EXPECT_EQ(job.result_count(), 0u);
  EXPECT_EQ(job.result_bytes(), 0u);
  EXPECT_EQ(budget->used(), bookkeeping);
  EXPECT_EQ(job.counts().out, 2u);  // the counts stay
  EXPECT_TRUE(job.TakeResults().empty());
}

TEST(JobTest, AddCountsCountsWithoutKeepingRecordsUntilFinished) {
  Job job("j", "p", 6, Job::Clock::now());
  job.AddCounts(2, 1, 2, 1);
  EXPECT_EQ(job.counts().out, 2u);
  EXPECT_EQ(job.counts().errors, 1u);
  EXPECT_EQ(job.counts().filtered, 2u);
  EXPECT_EQ(job.counts().cancelled, 1u);
  EXPECT_EQ(job.result_count(), 0u);
  EXPECT_EQ(job.result_bytes(), 0u);
  ASSERT_TRUE(job.Finish(nullptr).has_value());
  job.AddCounts(5, 5, 5, 5);  // a finished job's counts are final
  EXPECT_EQ(job.counts().out, 2u);
  EXPECT_EQ(job.counts().cancelled, 1u);
}

TEST(JobTest, IdsAreSixteenHexCharsAndDistinct) {
  const std::regex hex("^[0-9a-f]{16}$");
  std::set<std::string> seen;
  for (int i = 0; i < 10000; ++i) {
    std::string id = NewJobId();
    ASSERT_TRUE(std::regex_match(id, hex)) << id;
    seen.insert(std::move(id));
  }
  EXPECT_EQ(seen.size(), 10000u);
}

TEST(JobTest, StatusObjectFollowsTheContract) {
  Job job("abc", "enrich", 5);
  json s = job.Status();
  std::set<std::string> keys;
  for (const auto& [k, v] : s.items()) keys.insert(k);
  EXPECT_EQ(keys, (std::set<std::string>{"id", "pipeline", "state", "items",
                                         "aggregate", "created_at",
                                         "started_at", "finished_at"}));
  EXPECT_EQ(s["id"], "abc");
  EXPECT_EQ(s["pipeline"], "enrich");
  EXPECT_EQ(s["state"], "queued");
  EXPECT_EQ(s["items"], json::parse(R"({"in":5,"out":0,"filtered":0,
                                         "errors":0,"cancelled":0,"completed":0})"));
  EXPECT_TRUE(s["aggregate"].is_null());
  EXPECT_TRUE(s["started_at"].is_null());
  EXPECT_TRUE(s["finished_at"].is_null());
  const std::regex rfc3339(R"(^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$)");
  EXPECT_TRUE(std::regex_match(s["created_at"].get<std::string>(), rfc3339));

  job.MarkRunning();
  s = job.Status();
  EXPECT_EQ(s["state"], "running");
  EXPECT_TRUE(std::regex_match(s["started_at"].get<std::string>(), rfc3339));

  job.Append({Value(0, 1), Value(1, 2), Failure(2, "x", "st")}, 1, 1);
  ASSERT_TRUE(job.Finish(json{{"total", 3}}).has_value());
  s = job.Status();
  EXPECT_EQ(s["state"], "done");
  EXPECT_EQ(s["items"], json::parse(R"({"in":5,"out":2,"filtered":1,
                                         "errors":1,"cancelled":1,
                                         "completed":0})"));
  // completed is the aggregator's count (Job::NoteCompleted), not derived.
  EXPECT_EQ(s["aggregate"], json::parse(R"({"total":3})"));
  EXPECT_TRUE(std::regex_match(s["finished_at"].get<std::string>(), rfc3339));
}

TEST(JobTest, ResultsPageThroughTheLog) {
  Job job("j", "p", 10);
  std::vector<ResultRecord> records;
  for (std::uint64_t i = 0; i < 10; ++i) records.push_back(Value(i, i * 10));
  job.Append(std::move(records), 0, 0);
  EXPECT_EQ(job.result_count(), 10u);
  auto page = job.Results(3, 4);
  ASSERT_EQ(page.size(), 4u);
  EXPECT_EQ(page[0].seq, 3u);
  EXPECT_EQ(page[3].value, 60);
  EXPECT_EQ(job.Results(8, 100).size(), 2u);
  EXPECT_TRUE(job.Results(10, 5).empty());
  EXPECT_TRUE(job.Results(1000, 5).empty());
  const Counts c = job.counts();
  EXPECT_EQ(c.out, 10u);
  EXPECT_EQ(c.errors, 0u);
}

TEST(JobTest, ReadFromReturnsRecordsOrRegistersOneShotWake) {
  Job job("j", "p", 3);
  int wakes = 0;
  bool finished = true;
  auto got = job.ReadFrom(0, 10, &finished, [&] { ++wakes; });
  EXPECT_TRUE(got.empty());
  EXPECT_FALSE(finished);
  EXPECT_EQ(wakes, 0);

  job.Append({Value(0, "a")}, 0, 0);
  EXPECT_EQ(wakes, 1);
  job.Append({Value(1, "b")}, 0, 0);
  EXPECT_EQ(wakes, 1) << "a wake is called once";

  got = job.ReadFrom(0, 1, &finished, [&] { ++wakes; });
  ASSERT_EQ(got.size(), 1u) << "max is honoured";
  EXPECT_EQ(got[0].value, "a");
  EXPECT_FALSE(finished);
  got = job.ReadFrom(1, 10, &finished, [&] { ++wakes; });
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].value, "b");
  EXPECT_EQ(wakes, 1) << "no wake kept when records were returned";

  got = job.ReadFrom(2, 10, &finished, [&] { ++wakes; });
  EXPECT_TRUE(got.empty());
  // Filtered/cancelled pieces change no record: no wake for them.
  job.Append({}, 1, 0);
  EXPECT_EQ(wakes, 1);
  job.Finish(nullptr);
  EXPECT_EQ(wakes, 2) << "finishing wakes the readers";

  got = job.ReadFrom(2, 10, &finished, [&] { ++wakes; });
  EXPECT_TRUE(got.empty());
  EXPECT_TRUE(finished);
  EXPECT_EQ(wakes, 2) << "no wake kept once finished";
}

TEST(JobTest, WakeRunsWithoutTheLockHeld) {
  Job job("j", "p", 1);
  bool finished = false;
  std::vector<ResultRecord> seen;
  // Calling back into the job from the wake would deadlock if it ran under
  // the job's lock.
  job.ReadFrom(0, 10, &finished, [&] {
    bool f = false;
    seen = job.ReadFrom(0, 10, &f, nullptr);
  });
  job.Append({Value(0, 42)}, 0, 0);
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].value, 42);
}

TEST(JobTest, NotifyWhenFinished) {
  Job job("j", "p", 0);
  int calls = 0;
  EXPECT_TRUE(job.NotifyWhenFinished([&] { ++calls; }));
  EXPECT_TRUE(job.NotifyWhenFinished([&] { ++calls; }));
  job.Finish(nullptr);
  EXPECT_EQ(calls, 2);
  EXPECT_FALSE(job.NotifyWhenFinished([&] { ++calls; }));
  EXPECT_EQ(calls, 2);
}

TEST(JobTest, CancelAndFinish) {
  Job job("j", "p", 4);
  EXPECT_FALSE(job.cancel_requested());
  EXPECT_TRUE(job.RequestCancel());
  EXPECT_TRUE(job.cancel_requested());
  EXPECT_TRUE(job.RequestCancel()) << "idempotent while running";
  auto state = job.Finish(nullptr);
  ASSERT_TRUE(state.has_value());
  EXPECT_EQ(*state, JobState::kCancelled);
  EXPECT_FALSE(job.Finish(nullptr).has_value()) << "finishes once";
  EXPECT_EQ(job.state(), JobState::kCancelled);

  Job done("k", "p", 0);
  ASSERT_EQ(done.Finish(nullptr), JobState::kDone);
  EXPECT_FALSE(done.RequestCancel()) << "a finished job cannot be cancelled";
  EXPECT_EQ(done.state(), JobState::kDone);
  done.Append({Value(0, 1)}, 0, 0);
  EXPECT_EQ(done.result_count(), 0u) << "nothing appends after finish";

  Job failed("f", "p", 0);
  EXPECT_EQ(failed.Finish(nullptr, /*failed=*/true), JobState::kFailed);
}

TEST(JobTest, RetainedBytesGrowWithResults) {
  Job job("j", "p", 100);
  const std::size_t empty = job.retained_bytes();
  std::vector<ResultRecord> records;
  for (int i = 0; i < 100; ++i) {
    records.push_back(Value(i, json{{"text", std::string(100, 'x')}}));
  }
  job.Append(std::move(records), 0, 0);
  EXPECT_GE(job.retained_bytes(), empty + 100 * 100);
}

TEST(JobTest, ResultsBeyondJobLimitFailTheJob) {
  const ResultRecord probe = Value(0, std::string(1000, 'x'));
  const std::size_t one = RecordCost(probe);
  Job job("j", "p", 10, Job::Clock::now(),
          ResultLimits{3 * one + one / 2, nullptr});
  job.MarkRunning();
  std::vector<ResultRecord> batch;
  for (std::uint64_t i = 0; i < 2; ++i)
    batch.push_back(Value(i, std::string(1000, 'x')));
  EXPECT_FALSE(job.Append(std::move(batch), 1, 0)) << "2 of 3.5 fit";
  EXPECT_FALSE(job.cancel_requested());
  batch.clear();
  for (std::uint64_t i = 3; i < 5; ++i)
    batch.push_back(Value(i, std::string(1000, 'x')));
  EXPECT_TRUE(job.Append(std::move(batch), 0, 0)) << "the 4th does not fit";
  EXPECT_TRUE(job.cancel_requested()) << "its other items end cancelled";
  EXPECT_EQ(job.result_count(), 3u);
  EXPECT_LE(job.result_bytes(), 3 * one + one / 2);
  EXPECT_EQ(job.error()["code"], kResultsTooLarge);
  EXPECT_FALSE(job.Append({Value(5, 1), Failure(6, "e", "s")}, 0, 3))
      << "fails once";
  Counts c = job.counts();
  EXPECT_EQ(c.out, 3u);
  EXPECT_EQ(c.filtered, 1u);
  EXPECT_EQ(c.errors, 0u);
  EXPECT_EQ(c.cancelled, 1u + 2u + 3u) << "dropped records count cancelled";
  EXPECT_EQ(c.in, c.out + c.filtered + c.errors + c.cancelled);
  ASSERT_EQ(job.Finish(json(5)), JobState::kFailed);
  const json s = job.Status();
  EXPECT_EQ(s["state"], "failed");
  EXPECT_EQ(s["error"]["code"], "results_too_large");
  EXPECT_NE(s["error"]["message"].get<std::string>().find("after 3 records"),
            std::string::npos)
      << s;
  EXPECT_TRUE(s["aggregate"].is_null());
}

TEST(JobTest, ResultCopiesAreBoundedByBytes) {
  Job job("j", "p", 100);
  std::vector<ResultRecord> records;
  for (std::uint64_t i = 0; i < 100; ++i) {
    records.push_back(Value(i, std::string(10000, 'x')));
  }
  const std::size_t one = RecordCost(records.front());
  job.Append(std::move(records), 0, 0);
  EXPECT_EQ(job.Results(0, 100, 10 * one).size(), 10u);
  EXPECT_EQ(job.Results(0, 100, 10 * one + one / 2).size(), 10u);
  EXPECT_EQ(job.Results(95, 100, 10 * one).size(), 5u);
  EXPECT_EQ(job.Results(0, 100, 1).size(), 1u) << "always one record";
  EXPECT_EQ(job.Results(0, 3, 1u << 30).size(), 3u) << "limit still holds";
  // The streaming cursor too (a WebSocket's queue of about 1 MiB).
  bool finished = true;
  EXPECT_EQ(job.ReadFrom(0, 64, &finished, nullptr, 10 * one).size(), 10u);
  EXPECT_FALSE(finished);
  EXPECT_EQ(job.ReadFrom(0, 64, &finished, nullptr, 0).size(), 1u);
}

TEST(JobTest, ChargesItsBudgetAndGivesItBack) {
  auto budget = std::make_shared<ResultBudget>(1 << 20);
  {
    Job job("j", "p", 2, Job::Clock::now(), ResultLimits{1 << 20, budget});
    const std::uint64_t bookkeeping = budget->used();
    EXPECT_GT(bookkeeping, sizeof(Job));
    EXPECT_EQ(job.retained_bytes(), bookkeeping);
    const ResultRecord r = Value(0, std::string(5000, 'x'));
    const std::size_t cost = RecordCost(r);
    EXPECT_FALSE(job.Append({r}, 0, 0));
    EXPECT_EQ(budget->used(), bookkeeping + cost);
    EXPECT_EQ(job.retained_bytes(), bookkeeping + cost);
  }
  EXPECT_EQ(budget->used(), 0u);
  // A full budget fails the job that needs room (nothing to reclaim here).
  ResultBudget* raw = budget.get();
  raw->ForceCharge((1 << 20) - 100);
  Job job("k", "p", 1, Job::Clock::now(), ResultLimits{1 << 20, budget});
  EXPECT_TRUE(job.Append({Value(0, std::string(5000, 'x'))}, 0, 0));
  EXPECT_EQ(job.error()["code"], kResultsMemoryFull);
  EXPECT_EQ(job.counts().cancelled, 1u);
  raw->Refund((1 << 20) - 100);
}

// One engine-like writer, several streaming readers that wait on their wake
// callbacks: each reader sees every record once, in log order.
TEST(JobTest, ConcurrentStreamingReaders) {
  constexpr int kRecords = 20000;
  constexpr int kReaders = 4;
  Job job("j", "p", kRecords);
  // A wake may still be running when its reader sees the job finished, so
  // what it touches lives until every reader has been joined.
  struct Signal {
    std::mutex mu;
    std::condition_variable cv;
    bool woken = false;
  };
  std::vector<Signal> signals(kReaders);
  std::vector<std::thread> readers;
  std::vector<std::vector<std::uint64_t>> seen(kReaders);
  for (int r = 0; r < kReaders; ++r) {
    readers.emplace_back([&, r] {
      std::mutex& mu = signals[r].mu;
      std::condition_variable& cv = signals[r].cv;
      bool& woken = signals[r].woken;
      std::size_t offset = 0;
      for (;;) {
        bool finished = false;
        {
          std::lock_guard<std::mutex> lock(mu);
          woken = false;
        }
        auto got = job.ReadFrom(offset, 97, &finished, [&] {
          {
            std::lock_guard<std::mutex> lock(mu);
            woken = true;
          }
          cv.notify_one();
        });
        if (finished) break;
        if (got.empty()) {
          std::unique_lock<std::mutex> lock(mu);
          cv.wait(lock, [&] { return woken; });
          continue;
        }
        for (const auto& rec : got) seen[r].push_back(rec.seq);
        offset += got.size();
      }
    });
  }
  for (int i = 0; i < kRecords; i += 50) {
    std::vector<ResultRecord> batch;
    for (int j = i; j < i + 50; ++j) batch.push_back(Value(j, j));
    job.Append(std::move(batch), 0, 0);
    if (i % 1000 == 0) std::this_thread::yield();
  }
  job.Finish(nullptr);
  for (auto& t : readers) t.join();
  for (int r = 0; r < kReaders; ++r) {
    ASSERT_EQ(seen[r].size(), static_cast<std::size_t>(kRecords));
    for (int i = 0; i < kRecords; ++i) ASSERT_EQ(seen[r][i], std::uint64_t(i));
  }
}

}  // namespace
}  // namespace sluice::jobs
