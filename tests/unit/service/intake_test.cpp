// Tests of Intake (service/engine/intake.cpp), one pipeline's input queues:
// jobs fed round-robin with their kEnd, a stream's Push taking what fits and
// calling on_room once the queue drains to half, and the callbacks it keeps
// destroyed only after its lock is released (they may hold the last
// reference to a session that calls back in).
#include "service/engine/intake.hpp"

#include <gtest/gtest.h>

#include <functional>
#include <map>
#include <memory>
#include <stop_token>
#include <string>
#include <utility>
#include <vector>

#include "service/jobs/job.hpp"

namespace sluice::engine {
namespace {

using nlohmann::json;

std::shared_ptr<JobContext> Context(const std::string& id) {
  return std::make_shared<JobContext>(std::make_shared<jobs::Job>(id, "p"),
                                      /*is_ordered=*/false, nullptr);
}

std::vector<json> Items(int n) {
  std::vector<json> items;
  for (int i = 0; i < n; ++i) items.emplace_back(i);
  return items;
}

// Takes every envelope ready now, without blocking for more.
std::vector<Envelope> Drain(Intake& intake) {
  std::vector<Envelope> out;
  std::stop_source stop;
  while (true) {
    const std::size_t before = out.size();
    stop.request_stop();  // Next returns at once when nothing is ready
    if (!intake.Next(out, 64, stop.get_token()) || out.size() == before) {
      break;
    }
  }
  return out;
}

// Runs its action when destroyed: stands for a session whose last
// reference an on_room callback holds.
struct OnDestroy {
  std::function<void()> action;
  ~OnDestroy() { action(); }
};

TEST(IntakeTest, FeedsJobsRoundRobinThenEndsEach) {
  Intake intake(/*ordered_window=*/1024);
  auto a = Context("a");
  auto b = Context("b");
  ASSERT_TRUE(intake.Add(a, Items(2), /*open=*/false));
  ASSERT_TRUE(intake.Add(b, Items(1), /*open=*/false));
  const std::vector<Envelope> out = Drain(intake);
  ASSERT_GE(out.size(), 2u);
  EXPECT_NE(out[0].context, out[1].context) << "one item per job per turn";
  std::map<const JobContext*, std::vector<std::pair<Envelope::Kind, int>>> by;
  for (const Envelope& e : out) {
    by[e.context.get()].emplace_back(e.kind, static_cast<int>(e.seq));
  }
  using K = Envelope::Kind;
  EXPECT_EQ(by[a.get()], (std::vector<std::pair<K, int>>{
                             {K::kValue, 0}, {K::kValue, 1}, {K::kEnd, 2}}));
  EXPECT_EQ(by[b.get()],
            (std::vector<std::pair<K, int>>{{K::kValue, 0}, {K::kEnd, 1}}));
  EXPECT_EQ(a->fed.load(), 2u);
}

TEST(IntakeTest, PushTakesWhatFitsAndCallsOnRoomAtHalf) {
  Intake intake(1024);
  Admission admission(100);
  auto c = Context("stream");
  ASSERT_TRUE(intake.Add(c, {}, /*open=*/true));
  std::vector<json> items = Items(5);
  int called = 0;
  std::function<void()> on_room = [&] { ++called; };
  EXPECT_EQ(intake.Push(*c, items, /*queue_limit=*/4, admission, on_room),
            Intake::PushResult::kFull);
  EXPECT_EQ(items.size(), 1u) << "the rest stays with the caller";
  EXPECT_EQ(admission.pending(), 4u);
  EXPECT_EQ(called, 0);
  // Draining to half the limit (2 queued) calls on_room, once.
  const std::vector<Envelope> out = Drain(intake);
  EXPECT_EQ(out.size(), 4u);
  EXPECT_EQ(called, 1);
  EXPECT_EQ(intake.Push(*c, items, 4, admission, on_room),
            Intake::PushResult::kAccepted);
  EXPECT_TRUE(items.empty());
  intake.CloseInput(*c);
  EXPECT_TRUE(intake.InputClosed(*c));
  EXPECT_EQ(intake.Push(*c, items, 4, admission, on_room),
            Intake::PushResult::kClosed);
}

TEST(IntakeTest, ReplacedOnRoomIsDestroyedOutsideTheLock) {
  // The first callback holds the last reference to a "session" whose
  // destructor ends the input: destroyed under Intake's lock, CloseInput
  // locked it again (a deadlock: this test's TIMEOUT).
  Intake intake(1024);
  Admission admission(100);
  auto c = Context("stream");
  ASSERT_TRUE(intake.Add(c, {}, true));
  auto session = std::make_shared<OnDestroy>();
  session->action = [&] { intake.CloseInput(*c); };
  std::function<void()> first = [session] {};
  session.reset();
  std::vector<json> items = Items(3);
  EXPECT_EQ(intake.Push(*c, items, 2, admission, first),
            Intake::PushResult::kFull);
  std::function<void()> second = [] {};
  EXPECT_EQ(intake.Push(*c, items, 2, admission, second),
            Intake::PushResult::kFull);
  EXPECT_TRUE(intake.InputClosed(*c)) << "the first callback was destroyed";
}

TEST(IntakeTest, CloseInputDropsOnRoomOutsideTheLock) {
  Intake intake(1024);
  Admission admission(100);
  auto c = Context("stream");
  ASSERT_TRUE(intake.Add(c, {}, true));
  bool closed_seen = false;
  auto session = std::make_shared<OnDestroy>();
  session->action = [&] { closed_seen = intake.InputClosed(*c); };
  std::function<void()> on_room = [session] {};
  session.reset();
  std::vector<json> items = Items(3);
  EXPECT_EQ(intake.Push(*c, items, 2, admission, on_room),
            Intake::PushResult::kFull);
  intake.CloseInput(*c);
  EXPECT_TRUE(closed_seen);
}

}  // namespace
// The generator task's side: TryNext never blocks, and says when the
// Intake has ended.
TEST(IntakeTest, TryNextTakesWhatIsReadyThenEndsAfterClose) {
  Intake intake(1024);
  std::vector<Envelope> out;
  EXPECT_EQ(intake.TryNext(out, 64), Intake::Poll::kNone);
  auto a = Context("a");
  ASSERT_TRUE(intake.Add(a, Items(3), /*open=*/false));
  EXPECT_EQ(intake.TryNext(out, 2), Intake::Poll::kGot);
  EXPECT_EQ(out.size(), 2u) << "never more than max";
  intake.Close();
  EXPECT_EQ(intake.TryNext(out, 64), Intake::Poll::kGot);  // item 2, kEnd
  ASSERT_EQ(out.size(), 4u);
  EXPECT_EQ(out.back().kind, Envelope::Kind::kEnd);
  EXPECT_EQ(intake.TryNext(out, 64), Intake::Poll::kEnded);
  EXPECT_EQ(out.size(), 4u);
}

// WaitForWork keeps its wake only while nothing is ready, and the wake is
// called once by whatever makes work: an Add, a Push, a cancel, Close().
TEST(IntakeTest, WaitForWorkWakesOnceWhenWorkArrivesOrOnClose) {
  Intake intake(1024);
  int woken = 0;
  std::function<void()> wake = [&woken] { ++woken; };
  ASSERT_TRUE(intake.WaitForWork(wake));
  EXPECT_EQ(woken, 0);
  auto a = Context("a");
  ASSERT_TRUE(intake.Add(a, Items(1), /*open=*/false));
  EXPECT_EQ(woken, 1);

  // Work is ready: the wake is not kept (the caller goes round again).
  std::function<void()> again = [&woken] { woken += 10; };
  EXPECT_FALSE(intake.WaitForWork(again));
  std::vector<Envelope> out;
  while (intake.TryNext(out, 64) == Intake::Poll::kGot) {
  }
  EXPECT_EQ(out.size(), 2u);  // the item and its kEnd

  std::function<void()> on_close = [&woken] { woken += 100; };
  ASSERT_TRUE(intake.WaitForWork(on_close));
  intake.Close();
  EXPECT_EQ(woken, 101);
  EXPECT_EQ(intake.TryNext(out, 64), Intake::Poll::kEnded);
  intake.Close();  // idempotent, and the wake was used up
  EXPECT_EQ(woken, 101);
}

TEST(IntakeTest, WaitForWorkWakesWhenAStreamPushes) {
  Intake intake(1024);
  Admission admission(100);
  auto s = Context("s");
  ASSERT_TRUE(intake.Add(s, {}, /*open=*/true));
  std::vector<Envelope> out;
  EXPECT_EQ(intake.TryNext(out, 64), Intake::Poll::kNone);
  int woken = 0;
  std::function<void()> wake = [&woken] { ++woken; };
  ASSERT_TRUE(intake.WaitForWork(wake));
  std::vector<json> items = Items(2);
  std::function<void()> on_room;
  ASSERT_EQ(intake.Push(*s, items, 64, admission, on_room),
            Intake::PushResult::kAccepted);
  EXPECT_EQ(woken, 1);
  EXPECT_EQ(intake.TryNext(out, 64), Intake::Poll::kGot);
  EXPECT_EQ(out.size(), 2u);
}

}  // namespace sluice::engine
