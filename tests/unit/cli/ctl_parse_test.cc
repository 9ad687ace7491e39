// mproxyctl's command line: every command's arguments and options become the request the daemon
// gets; usage errors are exit 2 with a message; help goes to stdout with exit 0.
#include "cli/ctl_parse.h"

#include <gtest/gtest.h>

#include <array>
#include <cstdlib>
#include <vector>

namespace mproxy::cli {
namespace {

using namespace std::chrono_literals;

CtlParse Parse(const std::vector<const char*>& args) {
  std::array<const char*, 16> argv{"mproxyctl"};
  size_t n = 1;
  for (const char* a : args) {
    if (n < argv.size()) argv[n++] = a;
  }
  return ParseCtlCommandLine(static_cast<int>(n), argv.data());
}

class CtlParseTest : public ::testing::Test {
 protected:
  void SetUp() override { unsetenv("MPROXY_SOCKET"); }
};

TEST_F(CtlParseTest, PlainCommandsAndGlobalOptions) {
  auto p = Parse({"-j", "-p", "-s", "/tmp/x.sock", "-t", "2.5", "status"});
  ASSERT_TRUE(p.invocation) << p.err;
  EXPECT_EQ(p.invocation->request.command, "status");
  EXPECT_TRUE(p.invocation->json);
  EXPECT_TRUE(p.invocation->pretty);
  EXPECT_EQ(p.invocation->socket_path, "/tmp/x.sock");
  EXPECT_EQ(p.invocation->timeout, 2500ms);
  auto c = Parse({"conn", "show"});
  ASSERT_TRUE(c.invocation) << c.err;
  EXPECT_EQ(c.invocation->request.command, "conn show");
  EXPECT_EQ(c.invocation->socket_path, "/run/mproxy/mproxyd.sock");
}

TEST_F(CtlParseTest, SocketFromTheEnvironment) {
  setenv("MPROXY_SOCKET", "/tmp/env.sock", 1);
  auto p = Parse({"stats"});
  ASSERT_TRUE(p.invocation);
  EXPECT_EQ(p.invocation->socket_path, "/tmp/env.sock");
  unsetenv("MPROXY_SOCKET");
}

TEST_F(CtlParseTest, HandoverDefaults) {
  auto p = Parse({"handover", "wlan0", "eth1"});
  ASSERT_TRUE(p.invocation) << p.err;
  EXPECT_EQ(p.invocation->request.command, "handover");
  EXPECT_EQ(p.invocation->request.args,
            (nlohmann::json{{"from", "wlan0"}, {"to", "eth1"}, {"break", false}}));
  EXPECT_EQ(p.invocation->follow_timeout, 10s);
}

TEST_F(CtlParseTest, HandoverWithEveryOption) {
  auto p = Parse(
      {"-j", "handover", "wlan0", "eth1", "--break", "--conn", "1a2b3c4d", "--timeout", "0.5"});
  ASSERT_TRUE(p.invocation) << p.err;
  EXPECT_EQ(
      p.invocation->request.args,
      (nlohmann::json{{"from", "wlan0"}, {"to", "eth1"}, {"break", true}, {"conn", "1a2b3c4d"}}));
  EXPECT_EQ(p.invocation->follow_timeout, 500ms);  // client side only: not in the request
  EXPECT_EQ(p.invocation->timeout, 5s);            // -t is still the per-answer timeout
  EXPECT_TRUE(p.invocation->json);
}

TEST_F(CtlParseTest, HandoverStatusIsItsOwnCommand) {
  auto p = Parse({"handover", "status", "7"});
  ASSERT_TRUE(p.invocation) << p.err;
  EXPECT_EQ(p.invocation->request.command, "handover status");
  EXPECT_EQ(p.invocation->request.args, (nlohmann::json{{"id", "7"}}));
}

TEST_F(CtlParseTest, SubflowAddAndDel) {
  auto a = Parse({"subflow", "add", "eth1", "--conn", "ab", "--backup"});
  ASSERT_TRUE(a.invocation) << a.err;
  EXPECT_EQ(a.invocation->request.command, "subflow add");
  EXPECT_EQ(a.invocation->request.args,
            (nlohmann::json{{"ifname", "eth1"}, {"conn", "ab"}, {"backup", true}}));
  auto d = Parse({"subflow", "del", "eth1", "--conn", "ab"});
  ASSERT_TRUE(d.invocation) << d.err;
  EXPECT_EQ(d.invocation->request.command, "subflow del");
  EXPECT_EQ(d.invocation->request.args, (nlohmann::json{{"ifname", "eth1"}, {"conn", "ab"}}));
}

TEST_F(CtlParseTest, UsageErrorsAreExit2WithAMessage) {
  struct Case {
    std::vector<const char*> args;
    const char* says;
  };
  const std::vector<Case> cases = {
      {{}, "A subcommand is required"},
      {{"handover", "wlan0"}, "to is required"},
      {{"handover"}, "from is required"},
      {{"handover", "a", "b", "--timeout", "0"}, "--timeout must be a positive number"},
      {{"handover", "a", "b", "--timeout", "soon"}, "--timeout must be a positive number"},
      {{"handover", "a", "b", "--conn"}, "--conn"},
      {{"subflow", "add", "eth1"}, "--conn TOKEN is required"},
      {{"subflow", "del", "eth1", "--backup"}, "backup"},  // del takes no --backup
      {{"subflow"}, "A subcommand is required"},
      {{"nosuch"}, "A subcommand is required"},
      {{"handover", "status"}, "id is required"},
  };
  for (const Case& c : cases) {
    auto p = Parse(c.args);
    std::string line;
    for (const char* a : c.args) line += std::string(a) + " ";
    EXPECT_FALSE(p.invocation) << line;
    EXPECT_EQ(p.exit_code, kExitUsage) << line;
    EXPECT_NE(p.err.find(c.says), std::string::npos) << line << "-> " << p.err;
  }
}

TEST_F(CtlParseTest, HelpIsExit0OnStdoutAndDocumentsExitCodes) {
  auto p = Parse({"--help"});
  EXPECT_FALSE(p.invocation);
  EXPECT_EQ(p.exit_code, kExitOk);
  EXPECT_NE(p.out.find("handover"), std::string::npos);
  EXPECT_NE(p.out.find("6 handover not finished within --timeout"), std::string::npos);
  auto h = Parse({"handover", "--help"});
  EXPECT_EQ(h.exit_code, kExitOk);
  EXPECT_NE(h.out.find("--break"), std::string::npos);
  EXPECT_NE(h.out.find("--conn"), std::string::npos);
  EXPECT_NE(h.out.find("--timeout"), std::string::npos);
  auto s = Parse({"subflow", "add", "--help"});
  EXPECT_NE(s.out.find("--backup"), std::string::npos);
}

}  // namespace
}  // namespace mproxy::cli
