// `mproxyctl handover`: the start/poll loop against a scripted daemon and a virtual clock, one test
// per outcome and exit code.
#include "cli/handover.h"

#include <gtest/gtest.h>

#include <deque>

#include "cli/ctl_commands.h"

namespace mproxy::cli {
namespace {

using namespace std::chrono_literals;

struct Script {
  std::deque<Result<Response>> answers;
  std::vector<Request> sent;
  std::chrono::steady_clock::time_point now{};
  int sleeps = 0;

  HandoverFollow Follow(std::chrono::milliseconds timeout = 1000ms) {
    HandoverFollow f;
    f.call = [this](const Request& r) -> Result<Response> {
      sent.push_back(r);
      if (answers.empty()) return MakeError("connection reset", ECONNRESET);
      auto a = answers.front();
      answers.pop_front();
      return a;
    };
    f.now = [this] { return now; };
    f.sleep = [this](std::chrono::milliseconds d) {
      now += d;
      ++sleeps;
    };
    f.timeout = timeout;
    return f;
  }
};

Request Start() {
  return MakeRequest(*FindCtlCommand("handover"), {"wlan0", "eth1"}, {{"break", false}});
}

Response Status(const char* state, int conns, int moved, int failed, int ms,
                const char* error = nullptr) {
  nlohmann::json j = {{"id", 7},
                      {"state", state},
                      {"connections", conns},
                      {"moved", moved},
                      {"failed", failed},
                      {"elapsed_ms", ms},
                      {"error", error ? nlohmann::json(error) : nlohmann::json(nullptr)}};
  return Response::Ok(j);
}

TEST(FollowHandover, PollsUntilDoneAndReportsTimeAndMoves) {
  Script s;
  s.answers = {Response::Ok({{"id", 7}}), Status("in-progress", 2, 0, 0, 3),
               Status("in-progress", 2, 1, 0, 13), Status("done", 2, 2, 0, 21)};
  const HandoverOutcome o = FollowHandover(s.Follow(), Start());
  EXPECT_EQ(o.exit_code, kExitOk);
  EXPECT_EQ(o.message, "handover wlan0 -> eth1 done in 21 ms: 2 of 2 connection(s) moved");
  ASSERT_EQ(s.sent.size(), 4u);
  EXPECT_EQ(s.sent[0].command, "handover");
  EXPECT_EQ(s.sent[1].command, "handover status");
  EXPECT_EQ(s.sent[1].args, (nlohmann::json{{"id", 7}}));
  EXPECT_EQ(s.sleeps, 2);  // 10 ms apart
  EXPECT_EQ(o.data["moved"], 2);
  EXPECT_EQ(o.data["from"], "wlan0");
  EXPECT_EQ(o.data["took_ms"], 20);
}

TEST(FollowHandover, NothingToMoveIsSuccess) {
  Script s;
  s.answers = {Response::Ok({{"id", 1}}), Status("done", 0, 0, 0, 0)};
  const HandoverOutcome o = FollowHandover(s.Follow(), Start());
  EXPECT_EQ(o.exit_code, kExitOk);
  EXPECT_NE(o.message.find("no connection to move"), std::string::npos);
}

TEST(FollowHandover, PartialOrFailedIsExit5WithTheReason) {
  Script s;
  s.answers = {Response::Ok({{"id", 7}}), Status("done", 3, 2, 1, 40)};
  HandoverOutcome o = FollowHandover(s.Follow(), Start());
  EXPECT_EQ(o.exit_code, kExitIncomplete);
  EXPECT_NE(o.message.find("2 of 3 connection(s) moved, 1 failed"), std::string::npos);

  Script f;
  f.answers = {Response::Ok({{"id", 7}}),
               Status("failed", 1, 0, 1, 75, "eth1: MP_JOIN refused by the peer")};
  o = FollowHandover(f.Follow(), Start());
  EXPECT_EQ(o.exit_code, kExitIncomplete);
  EXPECT_NE(o.message.find("failed after 75 ms"), std::string::npos);
  EXPECT_NE(o.message.find("(eth1: MP_JOIN refused by the peer)"), std::string::npos);
  EXPECT_EQ(o.data["state"], "failed");
}

TEST(FollowHandover, TimeoutIsExit6AndSaysHowToFollowUp) {
  Script s;
  s.answers = {Response::Ok({{"id", 9}})};
  for (int i = 0; i < 20; ++i) s.answers.push_back(Status("in-progress", 1, 0, 0, i * 10));
  const HandoverOutcome o = FollowHandover(s.Follow(50ms), Start());
  EXPECT_EQ(o.exit_code, kExitTimeout);
  EXPECT_NE(o.message.find("not finished after 50 ms"), std::string::npos);
  EXPECT_NE(o.message.find("mproxyctl handover status 9"), std::string::npos);
  EXPECT_EQ(s.sleeps, 5);
}

TEST(FollowHandover, RefusedStartIsExit1) {
  Script s;
  s.answers = {Response::Fail("handover: interface eth1 has no address")};
  const HandoverOutcome o = FollowHandover(s.Follow(), Start());
  EXPECT_EQ(o.exit_code, kExitDaemonError);
  EXPECT_EQ(o.message, "handover wlan0 -> eth1 refused: handover: interface eth1 has no address");
  EXPECT_EQ(s.sent.size(), 1u);
}

TEST(FollowHandover, DaemonGoneMidwayIsExit3) {
  Script s;
  s.answers = {Response::Ok({{"id", 7}}), Status("in-progress", 1, 0, 0, 1)};
  const HandoverOutcome o = FollowHandover(s.Follow(), Start());  // then ECONNRESET
  EXPECT_EQ(o.exit_code, kExitNotRunning);
}

TEST(FollowHandover, UnknownIdOrBadAnswerIsExit1) {
  Script s;
  s.answers = {Response::Ok({{"id", 7}}), Response::Fail("no handover with id 7")};
  EXPECT_EQ(FollowHandover(s.Follow(), Start()).exit_code, kExitDaemonError);
  Script b;
  b.answers = {Response::Ok({{"handover", "started"}})};
  const HandoverOutcome o = FollowHandover(b.Follow(), Start());
  EXPECT_EQ(o.exit_code, kExitDaemonError);
  EXPECT_NE(o.message.find("no handover id"), std::string::npos);
}

}  // namespace
}  // namespace mproxy::cli
