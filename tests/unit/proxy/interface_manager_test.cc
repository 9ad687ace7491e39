// InterfaceManager against a fake rtnetlink kernel: discovery, the missing/down interface
// policy, the stale sweep that only takes what is ours, clean removal, and re-syncs after
// address and route changes.
#include "proxy/interface_manager.h"

#include <gtest/gtest.h>

#include "tests/unit/proxy/fake_route_netlink.h"

namespace mproxy::proxy {
namespace {

class InterfaceManagerTest : public ::testing::Test {
 protected:
  void SetUp() override { MobileHost(kernel_); }
  std::unique_ptr<InterfaceManager> Make(std::vector<std::string> names = {"wlan0", "eth1"},
                                         bool routing = true) {
    InterfaceManagerOptions o;
    o.names = std::move(names);
    o.policy_routing = routing;
    return std::make_unique<InterfaceManager>(o, std::make_unique<FakeRouteNetlink>(kernel_));
  }
  size_t OurRules() const {
    size_t n = 0;
    for (const auto& r : kernel_.rules) n += IsOurRule(RoutingConfig{}, r) ? 1 : 0;
    return n;
  }
  size_t OurRoutes() const {
    size_t n = 0;
    for (const auto& r : kernel_.routes) n += IsOurRoute(RoutingConfig{}, r) ? 1 : 0;
    return n;
  }
  FakeKernel kernel_;
};

TEST_F(InterfaceManagerTest, StartLearnsInterfacesAndInstallsRouting) {
  auto m = Make();
  ASSERT_TRUE(m->Start().ok());
  const auto li = m->LocalInterfaces();
  ASSERT_EQ(li.size(), 2u);
  EXPECT_EQ(li[0].name, "wlan0");
  EXPECT_EQ(li[0].ifindex, 2u);
  EXPECT_EQ(li[0].addresses,
            (std::vector<packet::IpAddress>{Ip("198.18.1.2"), Ip("2001:db8:1::2")}));
  EXPECT_EQ(li[1].name, "eth1");
  EXPECT_EQ(li[1].ifindex, 3u);
  EXPECT_EQ(OurRules(), 8u);
  EXPECT_EQ(OurRoutes(), 7u);
  EXPECT_EQ(m->stale_removed(), 0);
  const auto st = m->StatusJson();
  EXPECT_EQ(st[1]["table"], 19793);
  EXPECT_EQ(st[1]["state"], "up");
  EXPECT_EQ(st[1]["mark"], 0x20000);

  ASSERT_TRUE(m->Stop().ok());
  EXPECT_EQ(OurRules(), 0u);
  EXPECT_EQ(OurRoutes(), 0u);
  EXPECT_EQ(kernel_.rules.size(), 4u);  // the kernel's own rules are still there
  EXPECT_EQ(kernel_.routes.size(), 8u);
  ASSERT_TRUE(m->Stop().ok());  // idempotent
}

TEST_F(InterfaceManagerTest, MissingInterfaceIsAClearErrorAndTouchesNothing) {
  auto m = Make({"wlan0", "wwan0"});
  auto r = m->Start();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().message, "interface wwan0 does not exist (--interfaces)");
  EXPECT_TRUE(kernel_.log.empty());
}

TEST_F(InterfaceManagerTest, DownInterfaceIsFineButHasNoAddresses) {
  kernel_.links[2].flags = 0;  // eth1 down
  auto m = Make();
  ASSERT_TRUE(m->Start().ok());
  const auto li = m->LocalInterfaces();
  EXPECT_EQ(li[1].ifindex, 3u);
  EXPECT_TRUE(li[1].addresses.empty());
  EXPECT_EQ(m->StatusJson()[1]["state"], "down");
  for (const auto& r : kernel_.rules) {
    if (IsOurRule(RoutingConfig{}, r)) {
      EXPECT_EQ(r.table, 19792u);
    }
  }
}

TEST_F(InterfaceManagerTest, StaleSweepTakesOnlyOurRange) {
  // A crashed run's leftovers, and neighbours that must survive.
  rtnl::Rule stale, foreign_table, foreign_prio;
  stale.priority = 19793;
  stale.table = 19793;
  stale.src = Ip("198.18.2.77");
  stale.src_len = 32;
  foreign_table = stale;
  foreign_table.table = 200;  // our priority, not our table
  foreign_prio = stale;
  foreign_prio.priority = 100;  // our table, not our priority
  kernel_.rules.push_back(stale);
  kernel_.rules.push_back(foreign_table);
  kernel_.rules.push_back(foreign_prio);
  rtnl::Route stale_route;
  stale_route.table = 19795;
  stale_route.dst = Ip("198.18.7.0");
  stale_route.dst_len = 24;
  stale_route.oif = 9;
  rtnl::Route foreign_route = stale_route;
  foreign_route.table = 200;
  kernel_.routes.push_back(stale_route);
  kernel_.routes.push_back(foreign_route);

  auto m = Make();
  ASSERT_TRUE(m->Start().ok());
  EXPECT_EQ(m->stale_removed(), 2);
  EXPECT_EQ(std::count(kernel_.rules.begin(), kernel_.rules.end(), stale), 0);
  EXPECT_EQ(std::count(kernel_.rules.begin(), kernel_.rules.end(), foreign_table), 1);
  EXPECT_EQ(std::count(kernel_.rules.begin(), kernel_.rules.end(), foreign_prio), 1);
  ASSERT_TRUE(m->Stop().ok());
  EXPECT_EQ(std::count(kernel_.rules.begin(), kernel_.rules.end(), foreign_table), 1);
  EXPECT_EQ(std::count(kernel_.rules.begin(), kernel_.rules.end(), foreign_prio), 1);
  EXPECT_EQ(std::count(kernel_.routes.begin(), kernel_.routes.end(), foreign_route), 1);
}

TEST_F(InterfaceManagerTest, RestartAfterCrashConvergesWithoutDuplicates) {
  {
    auto crashed = Make();
    ASSERT_TRUE(crashed->Start().ok());
    // No Stop(): the process died (the destructor does not remove anything).
  }
  auto m = Make();
  ASSERT_TRUE(m->Start().ok());
  EXPECT_EQ(m->stale_removed(), 15);
  EXPECT_EQ(OurRules(), 8u);
  EXPECT_EQ(OurRoutes(), 7u);
}

TEST_F(InterfaceManagerTest, AddressAndRouteChangesAreFollowed) {
  auto m = Make();
  ASSERT_TRUE(m->Start().ok());
  auto changed = m->Refresh();  // nothing pending
  ASSERT_TRUE(changed.ok());
  EXPECT_FALSE(*changed);

  kernel_.addrs.push_back({3, Ip("198.18.2.3"), 24, RT_SCOPE_UNIVERSE, 0x80});
  kernel_.Notify();
  changed = m->Refresh();
  ASSERT_TRUE(changed.ok());
  EXPECT_TRUE(*changed);
  EXPECT_EQ(m->LocalInterfaces()[1].addresses.size(), 3u);
  EXPECT_EQ(OurRules(), 9u);

  // eth1 loses its carrier: its rules and routes go, the engine sees no address.
  kernel_.links[2].flags &= ~0x10000u;
  kernel_.Notify();
  changed = m->Refresh();
  ASSERT_TRUE(changed.ok());
  EXPECT_TRUE(*changed);
  EXPECT_TRUE(m->LocalInterfaces()[1].addresses.empty());
  EXPECT_EQ(OurRules(), 4u);
  EXPECT_EQ(OurRoutes(), 3u);

  // Back, and the main table's default route through eth1 changed gateway meanwhile.
  kernel_.links[2].flags |= 0x10000u;
  kernel_.routes[1].gateway = Ip("198.18.2.254");
  kernel_.Notify();
  ASSERT_TRUE(m->Refresh().ok());
  bool copied = false;
  for (const auto& r : kernel_.routes) {
    if (r.table == 19793 && r.gateway == Ip("198.18.2.254")) copied = true;
    if (r.table == 19793) {
      EXPECT_NE(r.gateway, Ip("198.18.2.1"));
    }
  }
  EXPECT_TRUE(copied);
  EXPECT_EQ(OurRules(), 9u);

  // A route-only change leaves the engine's view alone.
  kernel_.routes[5].priority = 300;
  kernel_.Notify();
  changed = m->Refresh();
  ASSERT_TRUE(changed.ok());
  EXPECT_FALSE(*changed);
}

TEST_F(InterfaceManagerTest, ADifferenceTheKernelNeverConvergesOnIsNotAppliedForever) {
  auto m = Make({"eth1"});
  ASSERT_TRUE(m->Start().ok());
  kernel_.metric_skew = 1;  // from now on every copy is stored with another metric
  const size_t before = kernel_.log.size();
  kernel_.routes[1].priority = 250;  // eth1's main default route changes: a new copy is due
  kernel_.Notify();
  ASSERT_TRUE(m->Refresh().ok());
  const size_t first = kernel_.log.size() - before;
  EXPECT_EQ(first, 2u);  // delete the old copy, add the new one (stored with metric 251)
  for (int i = 0; i < 5; ++i) {
    kernel_.Notify();  // our own changes come back as notifications
    ASSERT_TRUE(m->Refresh().ok());
  }
  // The kernel's answer (metric 251 instead of 250) gives a second difference, applied once;
  // when it comes back unchanged it is not applied again.
  EXPECT_EQ(kernel_.log.size() - before, 2 * first);
  EXPECT_EQ(OurRules(), 4u);  // the rules were never disturbed
}

TEST_F(InterfaceManagerTest, FailedInstallIsAnErrorAndStopCleansUp) {
  kernel_.fail_adds_with = ENETUNREACH;
  auto m = Make();
  auto r = m->Start();
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("installing policy routing"), std::string::npos);
  EXPECT_EQ(r.error().code, ENETUNREACH);
  kernel_.fail_adds_with = 0;
  ASSERT_TRUE(m->Stop().ok());
  EXPECT_EQ(OurRules() + OurRoutes(), 0u);
}

TEST_F(InterfaceManagerTest, WithoutPolicyRoutingNothingIsInstalled) {
  auto m = Make({"wlan0", "eth1"}, /*routing=*/false);
  ASSERT_TRUE(m->Start().ok());
  EXPECT_TRUE(kernel_.log.empty());
  EXPECT_EQ(m->LocalInterfaces()[1].addresses.size(), 2u);
  EXPECT_FALSE(m->StatusJson()[0].contains("table"));
  ASSERT_TRUE(m->Stop().ok());
}

TEST_F(InterfaceManagerTest, KernelWithoutIpv6GetsIpv4RoutingOnly) {
  kernel_.no_ipv6 = true;
  auto m = Make();
  ASSERT_TRUE(m->Start().ok());
  EXPECT_EQ(OurRules(), 4u);
  for (const auto& r : kernel_.rules)
    EXPECT_TRUE(r.family == packet::IpFamily::kV4 || !IsOurRule({}, r));
  ASSERT_TRUE(m->Stop().ok());
  EXPECT_EQ(OurRules() + OurRoutes(), 0u);
}

TEST_F(InterfaceManagerTest, DumpFailureAtStartIsReported) {
  kernel_.dump_error = EPERM;
  auto m = Make();
  auto r = m->Start();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, EPERM);
  EXPECT_NE(r.error().message.find("reading interfaces"), std::string::npos);
}

}  // namespace
}  // namespace mproxy::proxy
