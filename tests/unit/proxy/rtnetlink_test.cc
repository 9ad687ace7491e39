// rtnetlink codec: parsers against messages captured from a real kernel (Linux 6.18, a veth
// "eth1" with ifindex 3 in a scratch namespace: `ip addr add 198.18.2.2/24`, `ip rule add from
// 198.18.2.2 lookup 19793 prio 19793`, ...), builders against hand-assembled golden bytes, and
// every-prefix truncation.
#include "proxy/rtnetlink.h"

#include <gtest/gtest.h>
#include <linux/fib_rules.h>
#include <linux/rtnetlink.h>

#include <string>
#include <vector>

namespace mproxy::proxy::rtnl {
namespace {

std::vector<uint8_t> Hex(std::string_view h) {
  std::vector<uint8_t> out;
  std::string clean;
  for (char c : h) {
    if (c != ' ') clean += c;
  }
  for (size_t i = 0; i + 1 < clean.size(); i += 2) {
    out.push_back(static_cast<uint8_t>(std::stoi(clean.substr(i, 2), nullptr, 16)));
  }
  return out;
}

packet::IpAddress Ip(const char* s) { return *packet::IpAddress::Parse(s); }

// RTM_NEWADDR 198.18.2.2/24 dev eth1 (IFA_F_PERMANENT), label "eth1", cacheinfo.
const char* kAddr4 =
    "500000001400020001000000fa510000021880000300000008000100c612020208000200c6120202"
    "090003006574683100000000080008008000000014000600ffffffffffffffff6e1e01006e1e0100";
// RTM_NEWADDR 2001:db8:2::2/64 dev eth1 (permanent, nodad).
const char* kAddr6 =
    "480000001400020001000000fa5100000a408200030000001400010020010db80002000000000000"
    "000000021400060"
    "0ffffffffffffffff6e1e01006e1e01000800080082000000";
// RTM_NEWADDR fe80::.../64 scope link.
const char* kAddr6LinkLocal =
    "500000001400020001000000fa5100000a40c0fd0200000014000100fe800000000000006cf3fbff"
    "fe5c92fb14000600ffffffffffffffff6e1e01006e1e010008000800c000000005000b0003000000";
// RTM_NEWROUTE default via 198.18.2.1 dev eth1 table 19793.
const char* kRoute4Default =
    "340000001800020001000000fa51000002000000fc0300010000000008000f00514d000008000500"
    "c61202010800040003000000";
// RTM_NEWROUTE 198.18.2.0/24 dev eth1 proto kernel scope link src 198.18.2.2 (main).
const char* kRoute4Connected =
    "3c0000001800020001000000fa51000002180000fe02fd010000000008000f00fe00000008000100"
    "c612020008000700c61202020800040003000000";
// RTM_NEWROUTE default via 2001:db8:2::1 dev eth1 metric 200 (main).
const char* kRoute6Default =
    "740000001800020001000000fa5100000a000000fe0300010000000008000f00fe00000008000600"
    "c80000001400050020010db8000200000000000000000001080004000300000024000c0000000000"
    "000000000000000000000000000000000000000000000000000000000500140000000000";
// RTM_NEWRULE from 198.18.2.2 lookup 19793 prio 19793.
const char* kRule4From =
    "440000002000020001000000fa51000002002000fc0000010000000008000f00514d000008000e00"
    "ffffffff050015000000000008000600514d000008000200c6120202";
// RTM_NEWRULE fwmark 0x20000/0xff0000 lookup 19793 prio 19793.
const char* kRule4Mark =
    "4c0000002000020001000000fa51000002000000fc0000010000000008000f00514d000008000e00"
    "ffffffff050015000000000008000600514d000008000a0000000200080010000000ff00";
// RTM_NEWRULE from 2001:db8:2::2 lookup 19793 prio 19793.
const char* kRule6From =
    "500000002000020001000000fa5100000a008000fc0000010000000008000f00514d000008000e00"
    "ffffffff050015000000000008000600514d00001400020020010db8000200000000000000000002";

TEST(Rtnetlink, ParsesKernelAddresses) {
  auto a4 = ParseAddr(Hex(kAddr4));
  ASSERT_TRUE(a4);
  EXPECT_EQ(a4->ifindex, 3u);
  EXPECT_EQ(a4->address, Ip("198.18.2.2"));
  EXPECT_EQ(a4->prefix_len, 24);
  EXPECT_EQ(a4->scope, RT_SCOPE_UNIVERSE);
  EXPECT_EQ(a4->flags, 0x80u);  // IFA_F_PERMANENT

  auto a6 = ParseAddr(Hex(kAddr6));
  ASSERT_TRUE(a6);
  EXPECT_EQ(a6->address, Ip("2001:db8:2::2"));
  EXPECT_EQ(a6->prefix_len, 64);
  EXPECT_EQ(a6->flags, 0x82u);  // permanent | nodad

  auto ll = ParseAddr(Hex(kAddr6LinkLocal));
  ASSERT_TRUE(ll);
  EXPECT_EQ(ll->scope, RT_SCOPE_LINK);
  EXPECT_EQ(ll->ifindex, 2u);
}

TEST(Rtnetlink, ParsesKernelRoutes) {
  auto d = ParseRoute(Hex(kRoute4Default));
  ASSERT_TRUE(d);
  EXPECT_EQ(d->family, packet::IpFamily::kV4);
  EXPECT_EQ(d->table, 19793u);  // from RTA_TABLE: rtm_table says RT_TABLE_COMPAT
  EXPECT_FALSE(d->dst);
  EXPECT_EQ(d->gateway, Ip("198.18.2.1"));
  EXPECT_EQ(d->oif, 3u);
  EXPECT_EQ(d->type, RTN_UNICAST);

  auto c = ParseRoute(Hex(kRoute4Connected));
  ASSERT_TRUE(c);
  EXPECT_EQ(c->table, static_cast<uint32_t>(RT_TABLE_MAIN));
  EXPECT_EQ(c->dst, Ip("198.18.2.0"));
  EXPECT_EQ(c->dst_len, 24);
  EXPECT_EQ(c->prefsrc, Ip("198.18.2.2"));
  EXPECT_EQ(c->scope, RT_SCOPE_LINK);
  EXPECT_EQ(c->protocol, RTPROT_KERNEL);
  EXPECT_FALSE(c->gateway);

  auto d6 = ParseRoute(Hex(kRoute6Default));
  ASSERT_TRUE(d6);
  EXPECT_EQ(d6->family, packet::IpFamily::kV6);
  EXPECT_EQ(d6->gateway, Ip("2001:db8:2::1"));
  EXPECT_EQ(d6->priority, 200u);
  EXPECT_EQ(d6->oif, 3u);
}

TEST(Rtnetlink, ParsesKernelRules) {
  auto f = ParseRule(Hex(kRule4From));
  ASSERT_TRUE(f);
  EXPECT_EQ(f->priority, 19793u);
  EXPECT_EQ(f->table, 19793u);
  EXPECT_EQ(f->src, Ip("198.18.2.2"));
  EXPECT_EQ(f->src_len, 32);
  EXPECT_FALSE(f->fwmark);
  EXPECT_EQ(f->action, FR_ACT_TO_TBL);

  auto m = ParseRule(Hex(kRule4Mark));
  ASSERT_TRUE(m);
  EXPECT_EQ(m->fwmark, 0x20000u);
  EXPECT_EQ(m->fwmask, 0xff0000u);
  EXPECT_FALSE(m->src);

  auto f6 = ParseRule(Hex(kRule6From));
  ASSERT_TRUE(f6);
  EXPECT_EQ(f6->family, packet::IpFamily::kV6);
  EXPECT_EQ(f6->src, Ip("2001:db8:2::2"));
  EXPECT_EQ(f6->src_len, 128);
}

TEST(Rtnetlink, WrongTypeIsNotParsed) {
  EXPECT_FALSE(ParseRoute(Hex(kRule4From)));
  EXPECT_FALSE(ParseRule(Hex(kAddr4)));
  EXPECT_FALSE(ParseAddr(Hex(kRoute4Default)));
  EXPECT_FALSE(ParseLink(Hex(kAddr4)));
}

TEST(Rtnetlink, EveryTruncationIsRefusedOrStillConsistent) {
  for (const char* msg : {kAddr4, kAddr6, kRoute4Default, kRoute4Connected, kRoute6Default,
                          kRule4From, kRule4Mark, kRule6From}) {
    const auto full = Hex(msg);
    for (size_t n = 0; n < full.size(); ++n) {
      // The message still claims its full length: every prefix is shorter than nlmsg_len.
      const std::vector<uint8_t> cut(full.begin(), full.begin() + static_cast<long>(n));
      EXPECT_FALSE(ParseAddr(cut)) << msg << " " << n;
      EXPECT_FALSE(ParseRoute(cut)) << msg << " " << n;
      EXPECT_FALSE(ParseRule(cut)) << msg << " " << n;
    }
  }
}

TEST(Rtnetlink, MalformedAddressAttributeRefusesTheRoute) {
  auto bad = Hex(kRoute4Default);
  // RTA_GATEWAY (at offset 36) claims 6 bytes: 2 bytes of address, not an IPv4 one.
  ASSERT_EQ(bad[38], 5);
  bad[36] = 6;
  EXPECT_FALSE(ParseRoute(bad));
}

TEST(Rtnetlink, PrefixLengthWithoutItsDestinationRefusesTheRoute) {
  // Read as a default route it would be copied as one (found by rtnetlink_fuzz).
  auto bad = Hex(kRoute4Default);
  ASSERT_TRUE(ParseRoute(bad));
  bad[17] = 24;  // rtm_dst_len, but no RTA_DST
  EXPECT_FALSE(ParseRoute(bad));
  bad[17] = 33;  // longer than an IPv4 address
  EXPECT_FALSE(ParseRoute(bad));
}

TEST(Rtnetlink, BuildsRuleRequestGolden) {
  Rule r;
  r.family = packet::IpFamily::kV4;
  r.priority = 19793;
  r.table = 19793;
  r.src = Ip("198.18.2.2");
  r.src_len = 32;
  EXPECT_EQ(BuildRuleRequest(Op::kAdd, r, 7),
            Hex("34000000 2000 0506 07000000 00000000"  // NEWRULE, REQUEST|ACK|EXCL|CREATE
                "02 00 20 00 00 00 00 01 00000000"      // AF_INET, src_len 32, table 0, TO_TBL
                "0800 0600 514d0000"                    // FRA_PRIORITY 19793
                "0800 0f00 514d0000"                    // FRA_TABLE 19793
                "0800 0200 c6120202"));                 // FRA_SRC 198.18.2.2
  // What we build is what the kernel reports back for the same rule (selector-wise).
  auto back = ParseRule(BuildRuleRequest(Op::kAdd, r, 7));
  ASSERT_TRUE(back);
  EXPECT_EQ(*back, *ParseRule(Hex(kRule4From)));

  Rule m;
  m.priority = 19793;
  m.table = 19793;
  m.fwmark = 0x20000;
  m.fwmask = 0xff0000;
  EXPECT_EQ(BuildRuleRequest(Op::kDel, m, 8),
            Hex("3c000000 2100 0500 08000000 00000000"  // DELRULE, REQUEST|ACK
                "02 00 00 00 00 00 00 01 00000000"
                "0800 0600 514d0000"
                "0800 0f00 514d0000"
                "0800 0a00 00000200"     // FRA_FWMARK
                "0800 1000 0000ff00"));  // FRA_FWMASK
  EXPECT_EQ(*ParseRule(BuildRuleRequest(Op::kDel, m, 8)), *ParseRule(Hex(kRule4Mark)));
}

TEST(Rtnetlink, BuildsRouteRequestGolden) {
  Route r;
  r.table = 19793;
  r.gateway = Ip("198.18.2.1");
  r.oif = 3;
  r.protocol = RTPROT_STATIC;
  EXPECT_EQ(BuildRouteRequest(Op::kAdd, r, 9),
            Hex("34000000 1800 0506 09000000 00000000"  // NEWROUTE, REQUEST|ACK|EXCL|CREATE
                "02 00 00 00 00 04 00 01 00000000"      // AF_INET, table 0, static, universe
                "0800 0f00 514d0000"                    // RTA_TABLE
                "0800 0500 c6120201"                    // RTA_GATEWAY
                "0800 0400 03000000"));                 // RTA_OIF
  Route c;
  c.family = packet::IpFamily::kV6;
  c.table = 19793;
  c.dst = Ip("2001:db8:2::");
  c.dst_len = 64;
  c.oif = 3;
  c.priority = 256;
  EXPECT_EQ(BuildRouteRequest(Op::kDel, c, 10),
            Hex("48000000 1900 0500 0a000000 00000000"  // DELROUTE, REQUEST|ACK
                "0a 40 00 00 00 00 00 01 00000000"      // AF_INET6, dst_len 64
                "0800 0f00 514d0000"
                "1400 0100 20010db8000200000000000000000000"  // RTA_DST
                "0800 0400 03000000"
                "0800 0600 00010000"));  // RTA_PRIORITY 256
  auto back = ParseRoute(BuildRouteRequest(Op::kDel, c, 10));
  ASSERT_TRUE(back);
  EXPECT_EQ(back->dst, c.dst);
  EXPECT_EQ(back->priority, 256u);
}

TEST(Rtnetlink, BuildsDumpRequestsGolden) {
  EXPECT_EQ(BuildDumpRequest(RTM_GETADDR, 0, 1),
            Hex("18000000 1600 0103 01000000 00000000 0000000000000000"));
  EXPECT_EQ(BuildDumpRequest(RTM_GETRULE, 10, 2),
            Hex("1c000000 2200 0103 02000000 00000000 0a0000000000000000000000"));
  EXPECT_EQ(BuildDumpRequest(RTM_GETLINK, 0, 3).size(), 32u);  // nlmsghdr + ifinfomsg
}

TEST(Rtnetlink, LinkAndAddrMessagesRoundTrip) {
  Link l{7, "wlan0", 0x10043};  // UP|BROADCAST|RUNNING|LOWER_UP
  auto back = ParseLink(BuildLinkMessage(l, 1));
  ASSERT_TRUE(back);
  EXPECT_EQ(*back, l);
  EXPECT_TRUE(back->up());
  EXPECT_TRUE(back->carrier());
  Addr a{7, Ip("2001:db8:1::2"), 64, 0, 0x80};
  auto ab = ParseAddr(BuildAddrMessage(a, 1));
  ASSERT_TRUE(ab);
  EXPECT_EQ(*ab, a);
}

TEST(Rtnetlink, SplitAndStatus) {
  auto two = Hex(kRoute4Default);
  const auto second = Hex(kRule4From);
  two.insert(two.end(), second.begin(), second.end());
  const auto parts = SplitMessages(two);
  ASSERT_EQ(parts.size(), 2u);
  EXPECT_TRUE(ParseRoute(parts[0]));
  EXPECT_TRUE(ParseRule(parts[1]));
  // A length running past the datagram stops the split.
  auto broken = two;
  broken[0] = 0xff;
  EXPECT_TRUE(SplitMessages(broken).empty());

  // NLMSG_ERROR with -EEXIST (17), then an ACK (error 0), then NLMSG_DONE.
  const auto err =
      Hex("24000000 0200 0001 05000000 00000000 efffffff 00000000000000000000000000000000");
  EXPECT_EQ(StatusOf(err).error, 17);
  const auto ack =
      Hex("24000000 0200 0001 05000000 00000000 00000000 00000000000000000000000000000000");
  EXPECT_EQ(StatusOf(ack).error, 0);
  const auto done = Hex("14000000 0300 0200 05000000 00000000 00000000");
  EXPECT_TRUE(StatusOf(done).done);
  EXPECT_EQ(StatusOf(Hex("14000000 0200")).error, std::nullopt);  // too short to be a message
}

}  // namespace
}  // namespace mproxy::proxy::rtnl
