#include "iptables/rule_plan.h"

#include <gtest/gtest.h>

#include "iptables/save_parser.h"

namespace mproxy::iptables {
namespace {

// Golden texts: these are exactly what iptables-restore --noflush receives. A change here is a
// change to the host's firewall; review it as such.
constexpr std::string_view kDefaultInstall =
    "*raw\n"
    ":MPROXY-PRE - [0:0]\n"
    ":MPROXY-OUT - [0:0]\n"
    ":MPROXY-Q - [0:0]\n"
    ":MPROXY-PTB - [0:0]\n"
    "-A MPROXY-PRE -i lo -j RETURN\n"
    "-A MPROXY-PRE -m mark --mark 0x4d50/0x4d50 -j CT --notrack\n"
    "-A MPROXY-PRE -m mark --mark 0x4d50/0x4d50 -j RETURN\n"
    "-A MPROXY-PRE -p tcp -j MPROXY-Q\n"
    "-A MPROXY-OUT -o lo -j RETURN\n"
    "-A MPROXY-OUT -m mark --mark 0x4d50/0x4d50 -j CT --notrack\n"
    "-A MPROXY-OUT -m mark --mark 0x4d50/0x4d50 -j RETURN\n"
    "-A MPROXY-OUT -p tcp -j MPROXY-Q\n"
    "-A MPROXY-PTB -j NFQUEUE --queue-num 0 --queue-bypass\n"
    "-A MPROXY-Q -j CT --notrack\n"
    "-A MPROXY-Q -j NFQUEUE --queue-num 0 --queue-bypass\n"
    "-A PREROUTING -p tcp -m comment --comment mproxy -j MPROXY-PRE\n"
    "-A OUTPUT -p tcp -m comment --comment mproxy -j MPROXY-OUT\n"
    "-A PREROUTING -p icmp -m icmp --icmp-type 3/4 -m comment --comment mproxy -j MPROXY-PTB\n"
    "COMMIT\n";

// IPv6: the same but for the ICMPv6 packet-too-big hook (RFC 8201).
std::string V6(std::string_view v4) {
  std::string s(v4);
  const std::string from = "-p icmp -m icmp --icmp-type 3/4";
  const std::string to = "-p ipv6-icmp -m icmp6 --icmpv6-type 2";
  for (size_t i = s.find(from); i != std::string::npos; i = s.find(from, i + to.size())) {
    s.replace(i, from.size(), to);
  }
  return s;
}

constexpr std::string_view kDefaultRemove =
    "*raw\n"
    "-D PREROUTING -p tcp -m comment --comment mproxy -j MPROXY-PRE\n"
    "-D OUTPUT -p tcp -m comment --comment mproxy -j MPROXY-OUT\n"
    "-D PREROUTING -p icmp -m icmp --icmp-type 3/4 -m comment --comment mproxy -j MPROXY-PTB\n"
    "-F MPROXY-PRE\n"
    "-F MPROXY-OUT\n"
    "-F MPROXY-Q\n"
    "-F MPROXY-PTB\n"
    "-X MPROXY-PRE\n"
    "-X MPROXY-OUT\n"
    "-X MPROXY-Q\n"
    "-X MPROXY-PTB\n"
    "COMMIT\n";

TEST(RulePlanTest, DefaultConfigQueuesAllTcpFailOpenBothFamilies) {
  RuleConfig c;
  ASSERT_TRUE(Validate(c).ok());
  RulePlan p = BuildPlan(c);
  EXPECT_EQ(p.install_v4, kDefaultInstall);
  EXPECT_EQ(p.install_v6, V6(kDefaultInstall));
  EXPECT_EQ(p.remove_v4, kDefaultRemove);
  EXPECT_EQ(p.remove_v6, V6(kDefaultRemove));
}

TEST(RulePlanTest, PortsExcludedIfacesAndFailClosed) {
  RuleConfig c;
  c.prefix = "MPT";
  c.queue_num = 7;
  c.skip_mark = 0x10000;
  c.ports = {443, 80, 443};                       // sorted, de-duplicated
  c.exclude_ifaces = {"docker0", "lo", "veth+"};  // "lo" is already there: not repeated
  c.fail = FailPolicy::kClosedEstablished;
  ASSERT_TRUE(Validate(c).ok());
  RulePlan p = BuildPlan(c);
  EXPECT_EQ(p.install_v4,
            "*raw\n"
            ":MPT-PRE - [0:0]\n"
            ":MPT-OUT - [0:0]\n"
            ":MPT-Q - [0:0]\n"
            ":MPT-PTB - [0:0]\n"
            "-A MPT-PRE -i lo -j RETURN\n"
            "-A MPT-PRE -i docker0 -j RETURN\n"
            "-A MPT-PRE -i veth+ -j RETURN\n"
            "-A MPT-PRE -m mark --mark 0x10000/0x10000 -j CT --notrack\n"
            "-A MPT-PRE -m mark --mark 0x10000/0x10000 -j RETURN\n"
            "-A MPT-PRE -p tcp -m multiport --ports 80,443 -j MPT-Q\n"
            "-A MPT-OUT -o lo -j RETURN\n"
            "-A MPT-OUT -o docker0 -j RETURN\n"
            "-A MPT-OUT -o veth+ -j RETURN\n"
            "-A MPT-OUT -m mark --mark 0x10000/0x10000 -j CT --notrack\n"
            "-A MPT-OUT -m mark --mark 0x10000/0x10000 -j RETURN\n"
            "-A MPT-OUT -p tcp -m multiport --ports 80,443 -j MPT-Q\n"
            // Excluded interfaces, but not lo; bypass even when failing closed.
            "-A MPT-PTB -i docker0 -j RETURN\n"
            "-A MPT-PTB -i veth+ -j RETURN\n"
            "-A MPT-PTB -j NFQUEUE --queue-num 7 --queue-bypass\n"
            "-A MPT-Q -j CT --notrack\n"
            "-A MPT-Q -p tcp --tcp-flags SYN,RST SYN -j NFQUEUE --queue-num 7 "
            "--queue-bypass\n"
            "-A MPT-Q -j NFQUEUE --queue-num 7\n"
            "-A PREROUTING -p tcp -m comment --comment mproxy -j MPT-PRE\n"
            "-A OUTPUT -p tcp -m comment --comment mproxy -j MPT-OUT\n"
            "-A PREROUTING -p icmp -m icmp --icmp-type 3/4 -m comment --comment mproxy -j MPT-PTB\n"
            "COMMIT\n");
  EXPECT_EQ(p.install_v6, V6(p.install_v4));
  EXPECT_EQ(p.remove_v4,
            "*raw\n"
            "-D PREROUTING -p tcp -m comment --comment mproxy -j MPT-PRE\n"
            "-D OUTPUT -p tcp -m comment --comment mproxy -j MPT-OUT\n"
            "-D PREROUTING -p icmp -m icmp --icmp-type 3/4 -m comment --comment mproxy -j MPT-PTB\n"
            "-F MPT-PRE\n-F MPT-OUT\n-F MPT-Q\n-F MPT-PTB\n"
            "-X MPT-PRE\n-X MPT-OUT\n-X MPT-Q\n-X MPT-PTB\n"
            "COMMIT\n");
}

TEST(RulePlanTest, FailOpenWithPortsHasOnlyBypassQueueRule) {
  RuleConfig c;
  c.ports = {8080};
  RulePlan p = BuildPlan(c);
  EXPECT_NE(p.install_v4.find("-A MPROXY-PRE -p tcp -m multiport --ports 8080 -j MPROXY-Q\n"),
            std::string::npos);
  EXPECT_NE(p.install_v4.find("-A MPROXY-Q -j CT --notrack\n"
                              "-A MPROXY-Q -j NFQUEUE --queue-num 0 --queue-bypass\n"
                              "-A PREROUTING"),
            std::string::npos);
  EXPECT_EQ(p.install_v4.find("--tcp-flags"), std::string::npos);
}

TEST(RulePlanTest, MoreThanFifteenPortsAreSplitAcrossMultiportRules) {
  RuleConfig c;
  for (uint16_t port = 17; port >= 1; --port) c.ports.push_back(port);
  c.ipv4 = false;
  RulePlan p = BuildPlan(c);
  EXPECT_TRUE(p.install_v4.empty());
  EXPECT_TRUE(p.remove_v4.empty());
  EXPECT_NE(p.install_v6.find("-A MPROXY-OUT -p tcp -m multiport --ports "
                              "1,2,3,4,5,6,7,8,9,10,11,12,13,14,15 -j MPROXY-Q\n"
                              "-A MPROXY-OUT -p tcp -m multiport --ports 16,17 -j MPROXY-Q\n"),
            std::string::npos);
}

TEST(RulePlanTest, Ipv4OnlyLeavesIpv6Empty) {
  RuleConfig c;
  c.ipv6 = false;
  RulePlan p = BuildPlan(c);
  EXPECT_EQ(p.install_v4, kDefaultInstall);
  EXPECT_TRUE(p.install_v6.empty());
  EXPECT_TRUE(p.remove_v6.empty());
}

TEST(RulePlanTest, EveryInstalledChainIsOursAndEveryForeignChainOnlyGetsTaggedJumps) {
  RuleConfig c;
  c.ports = {1, 2};
  c.exclude_ifaces = {"eth9"};
  c.fail = FailPolicy::kClosedEstablished;
  RulePlan p = BuildPlan(c);
  std::string_view text = p.install_v4;
  int foreign = 0;
  while (!text.empty()) {
    std::string_view line = text.substr(0, text.find('\n'));
    text.remove_prefix(line.size() + 1);
    if (line.starts_with(":")) {
      EXPECT_TRUE(IsOurChain(line.substr(1, line.find(' ') - 1), c.prefix)) << line;
    } else if (line.starts_with("-A ")) {
      auto words = SplitRuleLine(line);
      if (!IsOurChain(words[1], c.prefix)) {
        ++foreign;
        EXPECT_NE(line.find("-m comment --comment mproxy -j MPROXY-"), std::string_view::npos)
            << line;
      }
    }
  }
  EXPECT_EQ(foreign, 3);
}

TEST(RulePlanTest, RemoveTextIsWhatTheStaleSweepWouldEmitForTheInstalledRules) {
  // The save dump lists chains alphabetically, so compare sets, not order: both paths must delete
  // the same three jumps and the same four chains.
  RuleConfig c;
  RulePlan p = BuildPlan(c);
  StaleSet from_install = FindStale(p.install_v4, c.prefix);
  ASSERT_EQ(from_install.tables.size(), 1u);
  EXPECT_EQ(BuildRemoval(from_install), p.remove_v4);
}

TEST(RulePlanTest, ValidateRejectsWhatWouldBreakTheTextOrOwnership) {
  auto bad = [](auto mutate) {
    RuleConfig c;
    mutate(c);
    return !Validate(c).ok();
  };
  EXPECT_TRUE(bad([](RuleConfig& c) { c.prefix = ""; }));
  EXPECT_TRUE(bad([](RuleConfig& c) { c.prefix = "MP-X"; }));  // '-' would blur ownership
  EXPECT_TRUE(bad([](RuleConfig& c) { c.prefix = "1ABC"; }));
  EXPECT_TRUE(bad([](RuleConfig& c) { c.prefix = "A B"; }));
  EXPECT_TRUE(bad([](RuleConfig& c) { c.prefix = std::string(kMaxPrefixLen + 1, 'A'); }));
  EXPECT_FALSE(bad([](RuleConfig& c) { c.prefix = std::string(kMaxPrefixLen, 'A'); }));
  EXPECT_FALSE(bad([](RuleConfig& c) { c.prefix = "mp_2"; }));
  EXPECT_TRUE(bad([](RuleConfig& c) { c.skip_mark = 0; }));
  EXPECT_TRUE(bad([](RuleConfig& c) { c.ports = {80, 0}; }));
  EXPECT_TRUE(bad([](RuleConfig& c) { c.ipv4 = c.ipv6 = false; }));
  EXPECT_TRUE(bad([](RuleConfig& c) { c.exclude_ifaces = {""}; }));
  EXPECT_TRUE(bad([](RuleConfig& c) { c.exclude_ifaces = {"eth0 -j ACCEPT"}; }));
  EXPECT_TRUE(bad([](RuleConfig& c) { c.exclude_ifaces = {"a234567890123456"}; }));
  EXPECT_TRUE(bad([](RuleConfig& c) { c.exclude_ifaces = {"!eth0"}; }));
  EXPECT_TRUE(bad([](RuleConfig& c) { c.exclude_ifaces = {"eth\n0"}; }));
  EXPECT_FALSE(bad([](RuleConfig& c) { c.exclude_ifaces = {"a23456789012345", "wl+"}; }));
}

TEST(RulePlanTest, LongestPrefixStillYieldsLegalChainNames) {
  std::string prefix(kMaxPrefixLen, 'P');
  for (const auto& name : {PreChain(prefix), OutChain(prefix), QueueChain(prefix)}) {
    EXPECT_LE(name.size(), 28u) << name;  // XT_EXTENSION_MAXNAMELEN - 1
  }
}

}  // namespace
}  // namespace mproxy::iptables
