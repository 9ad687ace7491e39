#include "cli/ctl_commands.h"

#include <gtest/gtest.h>

#include <set>

namespace mproxy::cli {
namespace {

TEST(CtlCommands, NamesAreUniqueWellFormedWords) {
  std::set<std::string_view> seen;
  for (const CtlCommand& c : CtlCommands()) {
    EXPECT_TRUE(seen.insert(c.name).second) << c.name;
    EXPECT_FALSE(c.name.empty());
    EXPECT_LE(c.name.size(), kMaxCommandLength);
    EXPECT_EQ(c.name.find("  "), std::string_view::npos) << c.name;
    EXPECT_NE(c.name.front(), ' ');
    EXPECT_NE(c.name.back(), ' ');
    EXPECT_FALSE(c.help.empty()) << c.name;
    for (const CtlArg& a : c.args) EXPECT_FALSE(a.name.empty());
  }
  for (const char* required : {"status", "stats"}) {
    EXPECT_NE(FindCtlCommand(required), nullptr) << required;
  }
  EXPECT_EQ(FindCtlCommand("nosuch"), nullptr);
}

TEST(CtlCommands, Words) {
  EXPECT_EQ(CommandWords("status"), (std::vector<std::string>{"status"}));
  EXPECT_EQ(CommandWords("subflow add"), (std::vector<std::string>{"subflow", "add"}));
}

TEST(CtlCommands, MakeRequestMapsPositionalsToArgs) {
  static constexpr CtlArg kArgs[] = {{"from", "old"}, {"to", "new"}};
  const CtlCommand handover{"handover", "move", kArgs};
  const Request r = MakeRequest(handover, {"wlan0", "eth1"});
  EXPECT_EQ(r.command, "handover");
  EXPECT_EQ(r.args, (nlohmann::json{{"from", "wlan0"}, {"to", "eth1"}}));
  const Request s = MakeRequest(*FindCtlCommand("status"), {});
  EXPECT_EQ(s.command, "status");
  EXPECT_TRUE(s.args.is_object());
}

TEST(CtlCommands, HandoverAndSubflowRows) {
  const CtlCommand* h = FindCtlCommand("handover");
  ASSERT_NE(h, nullptr);
  ASSERT_EQ(h->args.size(), 2u);
  EXPECT_EQ(h->args[0].name, "from");
  EXPECT_EQ(h->args[1].name, "to");
  ASSERT_NE(FindCtlCommand("handover status"), nullptr);
  ASSERT_NE(FindCtlCommand("subflow add"), nullptr);
  ASSERT_NE(FindCtlCommand("subflow del"), nullptr);
  ASSERT_NE(FindCtlCommand("conn show"), nullptr);
  for (const CtlCommand& c : CtlCommands()) {
    for (const CtlOption& o : c.options) {
      EXPECT_TRUE(o.flag.starts_with("-")) << c.name << " " << o.flag;
      EXPECT_FALSE(o.help.empty()) << c.name << " " << o.flag;
    }
  }
}

TEST(CtlCommands, MakeRequestAddsOptionsButNotClientOnlyOnes) {
  const CtlCommand& h = *FindCtlCommand("handover");
  const Request r =
      MakeRequest(h, {"wlan0", "eth1"}, {{"break", true}, {"conn", "1a2b3c4d"}, {"timeout", "3"}});
  EXPECT_EQ(r.command, "handover");
  EXPECT_EQ(r.args, (nlohmann::json{
                        {"from", "wlan0"}, {"to", "eth1"}, {"break", true}, {"conn", "1a2b3c4d"}}));
  const Request s =
      MakeRequest(*FindCtlCommand("subflow add"), {"eth1"}, {{"conn", "ab"}, {"backup", false}});
  EXPECT_EQ(s.command, "subflow add");
  EXPECT_EQ(s.args, (nlohmann::json{{"ifname", "eth1"}, {"conn", "ab"}, {"backup", false}}));
}

TEST(CtlCommands, ExitCodes) {
  EXPECT_EQ(ExitCodeFor(MakeError("x", EACCES)), kExitPermission);
  EXPECT_EQ(ExitCodeFor(MakeError("x", EPERM)), kExitPermission);
  EXPECT_EQ(ExitCodeFor(MakeError("x", ENOENT)), kExitNotRunning);
  EXPECT_EQ(ExitCodeFor(MakeError("x", ECONNREFUSED)), kExitNotRunning);
  EXPECT_EQ(ExitCodeFor(MakeError("x", EPROTO)), kExitDaemonError);
  EXPECT_EQ(ExitCodeFor(MakeError("x", ENAMETOOLONG)), kExitUsage);
  // Distinct codes: scripts tell the cases apart.
  std::set<int> codes{kExitOk,         kExitDaemonError, kExitUsage,  kExitNotRunning,
                      kExitPermission, kExitIncomplete,  kExitTimeout};
  EXPECT_EQ(codes.size(), 7u);
}

}  // namespace
}  // namespace mproxy::cli
