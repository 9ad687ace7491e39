// Executor and RunTool against fake iptables tools (small shell scripts in a temp dir that log
// their argv and stdin): the real tools are exercised by tests/netns/iptables_rules_test.sh.
#include "iptables/executor.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "iptables/subprocess.h"

namespace mproxy::iptables {
namespace {

namespace fs = std::filesystem;
using std::chrono::milliseconds;

std::string ReadFile(const fs::path& p) {
  std::ifstream f(p);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

class FakeTools : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/mproxy-ipt-test-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { fs::remove_all(dir_); }

  // A tool that appends "<name> <args>\n<stdin>" to log, prints `out`, and exits with `status`
  // (with `err` on stderr). Every invocation also bumps a counter so a tool can fail only once.
  std::string Tool(const std::string& name, int status, const std::string& err = "",
                   const std::string& out_file = "", int fail_first_n = -1) {
    fs::path p = dir_ / name;
    std::ofstream f(p);
    f << "#!/bin/sh\n"
      << "echo \"" << name << " $*\" >> " << (dir_ / "log") << "\n"
      << "cat >> " << (dir_ / "log") << "\n"
      << "n=$(cat " << (dir_ / (name + ".n")) << " 2>/dev/null || echo 0); n=$((n+1)); echo $n > "
      << (dir_ / (name + ".n")) << "\n";
    if (!out_file.empty()) f << "cat " << out_file << "\n";
    if (fail_first_n >= 0) f << "[ $n -gt " << fail_first_n << " ] && exit 0\n";
    if (!err.empty()) f << "echo '" << err << "' >&2\n";
    f << "exit " << status << "\n";
    f.close();
    fs::permissions(p, fs::perms::owner_all);
    return p;
  }
  std::string Log() { return ReadFile(dir_ / "log"); }

  fs::path dir_;
};

TEST_F(FakeTools, ApplyFeedsEachFamilyToItsRestoreToolWithWaitAndNoflush) {
  ExecutorOptions o;
  o.iptables_restore = Tool("r4", 0);
  o.ip6tables_restore = Tool("r6", 0);
  Executor ex("MPROXY", o);
  RulePlan plan{"V4 install\n", "V6 install\n", "V4 remove\n", "V6 remove\n"};
  ASSERT_TRUE(ex.Apply(plan).ok());
  EXPECT_EQ(Log(), "r4 -w --noflush\nV4 install\nr6 -w --noflush\nV6 install\n");
}

TEST_F(FakeTools, ApplySkipsEmptyFamilies) {
  ExecutorOptions o;
  o.iptables_restore = Tool("r4", 0);
  o.ip6tables_restore = Tool("r6", 0);
  Executor ex("MPROXY", o);
  ASSERT_TRUE(ex.Apply(RulePlan{"", "V6 install\n", "", "V6 remove\n"}).ok());
  EXPECT_EQ(Log(), "r6 -w --noflush\nV6 install\n");
}

TEST_F(FakeTools, FailedIpv6ApplyRollsIpv4BackAndReportsStderrAndTheOffendingLine) {
  ExecutorOptions o;
  o.iptables_restore = Tool("r4", 0);
  o.ip6tables_restore = Tool("r6", 2, "ip6tables-restore: line 2 failed");
  Executor ex("MPROXY", o);
  auto r = ex.Apply(RulePlan{"V4 install\n", "*raw\n-A BROKEN\nCOMMIT\n", "V4 remove\n", ""});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("ip6tables-restore: line 2 failed"), std::string::npos)
      << r.error().message;
  EXPECT_NE(r.error().message.find("[input: -A BROKEN]"), std::string::npos) << r.error().message;
  EXPECT_NE(r.error().message.find("status 2"), std::string::npos) << r.error().message;
  EXPECT_EQ(Log(),
            "r4 -w --noflush\nV4 install\n"
            "r6 -w --noflush\n*raw\n-A BROKEN\nCOMMIT\n"
            "r4 -w --noflush\nV4 remove\n");
}

TEST_F(FakeTools, RemoveStaleSweepsWhatSaveShowsAndCountsChains) {
  fs::path dump = dir_ / "dump";
  std::ofstream(dump) << "*raw\n:PREROUTING ACCEPT [0:0]\n:MPROXY-PRE - [0:0]\n:MPROXY-Q - [0:0]\n"
                         "-A PREROUTING -p tcp -m comment --comment mproxy -j MPROXY-PRE\n"
                         "-A MPROXY-PRE -j MPROXY-Q\nCOMMIT\n";
  ExecutorOptions o;
  o.iptables_save = Tool("s4", 0, "", dump);
  o.iptables_restore = Tool("r4", 0);
  o.ipv6 = false;
  Executor ex("MPROXY", o);
  auto r = ex.RemoveStale();
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(*r, 2);
  EXPECT_EQ(Log(),
            "s4 \n"
            "r4 -w --noflush\n*raw\n"
            "-D PREROUTING -p tcp -m comment --comment mproxy -j MPROXY-PRE\n"
            "-F MPROXY-PRE\n-F MPROXY-Q\n-X MPROXY-PRE\n-X MPROXY-Q\nCOMMIT\n");
}

TEST_F(FakeTools, RemoveStaleOnACleanHostRunsNoRestore) {
  fs::path dump = dir_ / "dump";
  std::ofstream(dump) << "*raw\n:PREROUTING ACCEPT [0:0]\nCOMMIT\n";
  ExecutorOptions o;
  o.iptables_save = Tool("s4", 0, "", dump);
  o.ip6tables_save = Tool("s6", 0, "", dump);
  o.iptables_restore = o.ip6tables_restore = Tool("r", 1, "must not run");
  Executor ex("MPROXY", o);
  auto r = ex.RemoveStale();
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(*r, 0);
  EXPECT_EQ(Log(), "s4 \ns6 \n");
}

TEST_F(FakeTools, RemoveStaleRetriesOnceWhenTheRulesetChangedUnderIt) {
  fs::path dump = dir_ / "dump";
  std::ofstream(dump) << "*raw\n:MPROXY-Q - [0:0]\nCOMMIT\n";
  ExecutorOptions o;
  o.iptables_save = Tool("s4", 0, "", dump);
  o.iptables_restore = Tool("r4", 1, "iptables-restore: line 2 failed", "", /*fail_first_n=*/1);
  o.ipv6 = false;
  Executor ex("MPROXY", o);
  auto r = ex.RemoveStale();
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(*r, 1);
}

TEST_F(FakeTools, RemoveFallsBackToTheSweepWhenThePlanNoLongerMatches) {
  fs::path dump = dir_ / "dump";
  std::ofstream(dump) << "*raw\n:MPROXY-Q - [0:0]\nCOMMIT\n";
  ExecutorOptions o;
  o.iptables_save = Tool("s4", 0, "", dump);
  // The first restore (the plan's removal) fails, the sweep's succeeds.
  o.iptables_restore = Tool("r4", 1, "iptables-restore: line 2 failed", "", 1);
  Executor ex("MPROXY", o);
  ASSERT_TRUE(ex.Remove(RulePlan{"", "", "*raw\n-D gone\nCOMMIT\n", ""}).ok());
  EXPECT_EQ(Log(),
            "r4 -w --noflush\n*raw\n-D gone\nCOMMIT\n"
            "s4 \n"
            "r4 -w --noflush\n*raw\n-F MPROXY-Q\n-X MPROXY-Q\nCOMMIT\n");
}

TEST_F(FakeTools, RemoveReportsBothErrorsWhenTheSweepFailsToo) {
  ExecutorOptions o;
  o.iptables_save = Tool("s4", 4, "iptables-save: no permission");
  o.iptables_restore = Tool("r4", 1, "iptables-restore: line 1 failed");
  Executor ex("MPROXY", o);
  auto r = ex.Remove(RulePlan{"", "", "*raw\n", ""});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("line 1 failed"), std::string::npos) << r.error().message;
  EXPECT_NE(r.error().message.find("no permission"), std::string::npos) << r.error().message;
}

TEST_F(FakeTools, MissingToolIsAnErrorNotACrash) {
  ExecutorOptions o;
  o.iptables_restore = (dir_ / "does-not-exist").string();
  Executor ex("MPROXY", o);
  auto r = ex.Apply(RulePlan{"x\n", "", "", ""});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("cannot start"), std::string::npos) << r.error().message;
}

TEST(RunToolTest, LargeInputAndOutputDoNotDeadlock) {
  std::string big(4 << 20, 'x');
  for (size_t i = 0; i < big.size(); i += 100) big[i] = '\n';
  auto r = RunTool({"cat"}, big, milliseconds(20000));
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->status, 0);
  EXPECT_EQ(r->out, big);
}

TEST(RunToolTest, ToolThatIgnoresItsInputNeitherHangsNorRaisesSigpipe) {
  std::string big(8 << 20, 'x');
  auto r = RunTool({"true"}, big, milliseconds(20000));
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->status, 0);
}

TEST(RunToolTest, ExitStatusAndStderrAreReported) {
  auto r = RunTool({"sh", "-c", "echo oops >&2; exit 3"}, "", milliseconds(20000));
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->status, 3);
  EXPECT_EQ(r->err, "oops\n");
}

TEST(RunToolTest, ArgumentsAreNotInterpretedByAShell) {
  auto r = RunTool({"echo", "$HOME;", "`id`", "a  b"}, "", milliseconds(20000));
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->out, "$HOME; `id` a  b\n");
}

TEST(RunToolTest, TimeoutKillsTheTool) {
  auto start = std::chrono::steady_clock::now();
  auto r = RunTool({"sleep", "30"}, "", milliseconds(200));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ETIMEDOUT);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
}

TEST(RunToolTest, ChildStartsWithSignalsUnblockedEvenIfTheCallerBlocksThem) {
  sigset_t set, old;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  ASSERT_EQ(pthread_sigmask(SIG_BLOCK, &set, &old), 0);
  auto r = RunTool({"sh", "-c", "grep SigBlk /proc/self/status"}, "", milliseconds(20000));
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->out, "SigBlk:\t0000000000000000\n");
}

}  // namespace
}  // namespace mproxy::iptables
