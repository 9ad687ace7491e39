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

}  // namespace
}  // namespace mproxy::cli
