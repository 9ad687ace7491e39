// Policy routing plan: which routes/rules the managed interfaces get, what counts as ours, the
// configuration checks and the diff.
#include "proxy/policy_routing.h"

#include <gtest/gtest.h>
#include <linux/if_addr.h>
#include <linux/rtnetlink.h>

#include "tests/unit/proxy/fake_route_netlink.h"

namespace mproxy::proxy {
namespace {

std::vector<InterfaceState> Mobile(const FakeKernel& k) {
  std::vector<InterfaceState> s(2);
  s[0].name = "wlan0";
  s[1].name = "eth1";
  for (auto& st : s) {
    for (const auto& l : k.links) {
      if (l.name == st.name) {
        st.ifindex = l.ifindex;
        st.up = l.up();
        st.carrier = l.carrier();
      }
    }
    for (const auto& a : k.addrs) {
      if (a.ifindex == st.ifindex) st.addresses.push_back(a);
    }
  }
  return s;
}

TEST(PolicyRouting, TablesPrioritiesMarks) {
  RoutingConfig c;
  EXPECT_EQ(TableOf(c, 0), 0x4d50u);
  EXPECT_EQ(TableOf(c, 1), 0x4d51u);
  EXPECT_EQ(PriorityOf(c, 1), 0x4d51u);
  EXPECT_EQ(MarkOf(c, 0), 0x10000u);
  EXPECT_EQ(MarkOf(c, 1), 0x20000u);
  c.mark_mask = 0xf0;
  EXPECT_EQ(MarkOf(c, 2), 0x30u);
}

TEST(PolicyRouting, PlanCopiesEachInterfacesMainRoutesAndAddsRules) {
  FakeKernel k;
  MobileHost(k);
  const RoutingConfig c;
  const RoutingPlan p = PlanRouting(c, Mobile(k), k.routes);
  std::vector<std::string> routes, rules;
  for (const auto& r : p.routes) routes.push_back(Describe(r));
  for (const auto& r : p.rules) rules.push_back(Describe(r));
  // Connected prefixes before gateway routes (the kernel checks a gateway against the table).
  EXPECT_EQ(routes, (std::vector<std::string>{
                        "-4 route 198.18.1.0/24 dev #2 src 198.18.1.2 table 19792",
                        "-4 route 198.18.2.0/24 dev #3 src 198.18.2.2 table 19793",
                        "-6 route 2001:db8:2::/64 dev #3 metric 256 table 19793",
                        "-4 route default via 198.18.1.1 dev #2 metric 100 table 19792",
                        "-6 route default via 2001:db8:1::1 dev #2 metric 100 table 19792",
                        "-4 route default via 198.18.2.1 dev #3 metric 200 table 19793",
                        "-6 route default via 2001:db8:2::1 dev #3 metric 200 table 19793",
                    }));
  EXPECT_EQ(rules, (std::vector<std::string>{
                       "-4 rule from 198.18.1.2/32 lookup 19792 prio 19792",
                       "-4 rule fwmark 0x10000/0xff0000 lookup 19792 prio 19792",
                       "-6 rule from 2001:db8:1::2/128 lookup 19792 prio 19792",
                       "-6 rule fwmark 0x10000/0xff0000 lookup 19792 prio 19792",
                       "-4 rule from 198.18.2.2/32 lookup 19793 prio 19793",
                       "-4 rule fwmark 0x20000/0xff0000 lookup 19793 prio 19793",
                       "-6 rule from 2001:db8:2::2/128 lookup 19793 prio 19793",
                       "-6 rule fwmark 0x20000/0xff0000 lookup 19793 prio 19793",
                   }));
  for (const auto& r : p.routes) {
    EXPECT_EQ(r.protocol, RTPROT_STATIC);
    EXPECT_TRUE(IsOurRoute(c, r));
  }
  for (const auto& r : p.rules) EXPECT_TRUE(IsOurRule(c, r));
}

TEST(PolicyRouting, DownOrCarrierlessInterfaceGetsNothing) {
  FakeKernel k;
  MobileHost(k);
  auto s = Mobile(k);
  s[1].carrier = false;
  RoutingPlan p = PlanRouting({}, s, k.routes);
  for (const auto& r : p.routes) EXPECT_EQ(r.oif, 2u);
  for (const auto& r : p.rules) EXPECT_EQ(r.table, 19792u);
  EXPECT_TRUE(s[1].SubflowAddresses().empty());
  s[1].carrier = true;
  s[1].up = false;
  EXPECT_TRUE(s[1].SubflowAddresses().empty());
}

TEST(PolicyRouting, SubflowAddressesSkipLinkScopeTentativeAndPutDeprecatedLast) {
  InterfaceState s;
  s.name = "eth1";
  s.ifindex = 3;
  s.up = s.carrier = true;
  s.addresses = {{3, Ip("2001:db8:2::9"), 64, RT_SCOPE_UNIVERSE, IFA_F_DEPRECATED},
                 {3, Ip("fe80::2"), 64, RT_SCOPE_LINK, 0},
                 {3, Ip("2001:db8:2::7"), 64, RT_SCOPE_UNIVERSE, IFA_F_TENTATIVE},
                 {3, Ip("198.18.2.2"), 24, RT_SCOPE_UNIVERSE, 0},
                 {3, Ip("2001:db8:2::2"), 64, RT_SCOPE_UNIVERSE, 0}};
  EXPECT_EQ(s.SubflowAddresses(), (std::vector<packet::IpAddress>{
                                      Ip("198.18.2.2"), Ip("2001:db8:2::2"), Ip("2001:db8:2::9")}));
}

TEST(PolicyRouting, FamiliesCanBeTurnedOff) {
  FakeKernel k;
  MobileHost(k);
  RoutingConfig c;
  c.ipv6 = false;
  const RoutingPlan p = PlanRouting(c, Mobile(k), k.routes);
  for (const auto& r : p.routes) EXPECT_EQ(r.family, packet::IpFamily::kV4);
  for (const auto& r : p.rules) EXPECT_EQ(r.family, packet::IpFamily::kV4);
}

TEST(PolicyRouting, OursIsPriorityAndTableRangeTogether) {
  const RoutingConfig c;
  rtnl::Rule r;
  r.priority = 19793;
  r.table = 19793;
  EXPECT_TRUE(IsOurRule(c, r));
  r.table = 200;  // someone else's table at our priority
  EXPECT_FALSE(IsOurRule(c, r));
  r.table = 19793;
  r.priority = 100;  // our table at someone else's priority
  EXPECT_FALSE(IsOurRule(c, r));
  r.priority = 19792 + kMaxManagedInterfaces;
  EXPECT_FALSE(IsOurRule(c, r));
  rtnl::Route rt;
  rt.table = RT_TABLE_MAIN;
  EXPECT_FALSE(IsOurRoute(c, rt));
  rt.table = 19792 + kMaxManagedInterfaces - 1;
  EXPECT_TRUE(IsOurRoute(c, rt));
}

TEST(PolicyRouting, Validation) {
  RoutingConfig c;
  EXPECT_TRUE(ValidateRouting(c, 2, 0x4d50).ok());
  EXPECT_FALSE(ValidateRouting(c, kMaxManagedInterfaces + 1, 0x4d50).ok());
  auto overlap = ValidateRouting(c, 2, 0x10000);
  ASSERT_FALSE(overlap.ok());
  EXPECT_NE(overlap.error().message.find("overlaps the skip mark"), std::string::npos);
  c.mark_mask = 0x3;  // 3 values: not enough for 4 interfaces
  EXPECT_FALSE(ValidateRouting(c, 4, 0x4d50 & ~0x3u).ok());
  c = {};
  c.priority_base = 32750;  // range would reach the main rule
  EXPECT_FALSE(ValidateRouting(c, 2, 0x4d50).ok());
  c = {};
  c.table_base = 240;  // range would cover 252-255
  EXPECT_FALSE(ValidateRouting(c, 2, 0x4d50).ok());
  c.table_base = 0;
  EXPECT_FALSE(ValidateRouting(c, 2, 0x4d50).ok());
  c = {};
  c.mark_mask = 0;
  EXPECT_FALSE(ValidateRouting(c, 2, 0x4d50).ok());
}

TEST(PolicyRouting, DiffIgnoresKernelFlagsAndProtocol) {
  FakeKernel k;
  MobileHost(k);
  const RoutingPlan want = PlanRouting({}, Mobile(k), k.routes);
  RoutingPlan have = want;
  for (auto& r : have.routes) {
    r.flags = 0x10;  // RTNH_F_LINKDOWN
    r.protocol = RTPROT_BOOT;
  }
  EXPECT_TRUE(DiffRouting(want, have).empty());
  have.rules.pop_back();
  have.routes.erase(have.routes.begin());
  rtnl::Rule stale;
  stale.priority = 19799;
  stale.table = 19799;
  stale.src = Ip("198.18.9.9");
  stale.src_len = 32;
  have.rules.push_back(stale);
  const RoutingDiff d = DiffRouting(want, have);
  ASSERT_EQ(d.add_rules.size(), 1u);
  EXPECT_EQ(d.add_rules[0], want.rules.back());
  ASSERT_EQ(d.add_routes.size(), 1u);
  EXPECT_EQ(d.add_routes[0], want.routes.front());
  ASSERT_EQ(d.del_rules.size(), 1u);
  EXPECT_EQ(d.del_rules[0], stale);
  EXPECT_TRUE(d.del_routes.empty());
}

}  // namespace
}  // namespace mproxy::proxy
