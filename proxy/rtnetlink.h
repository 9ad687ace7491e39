// rtnetlink messages as plain values (links, addresses, routes, rules), built and parsed with
// libmnl. Pure: no sockets here (proxy/route_netlink.h sends them), so every message is
// golden-tested as bytes (tests/unit/proxy/rtnetlink_test.cc).
//
// Only what the daemon's policy routing needs is modelled: a parser ignores attributes it does not
// know and refuses (nullopt) a message whose fixed header or a needed attribute is malformed,
// because the kernel is trusted but a half-read route must never be copied or deleted.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "packet/address.h"
#include "packet/bytes.h"

namespace mproxy::proxy::rtnl {

// RTM_NEWLINK (from a dump or a notification).
struct Link {
  uint32_t ifindex = 0;
  std::string name;
  uint32_t flags = 0;                  // IFF_*
  [[nodiscard]] bool up() const;       // IFF_UP: administratively up
  [[nodiscard]] bool carrier() const;  // IFF_LOWER_UP: the link has carrier
  friend bool operator==(const Link&, const Link&) = default;
};

// RTM_NEWADDR. `address` is IFA_LOCAL when present (the local end of a point-to-point link),
// else IFA_ADDRESS.
struct Addr {
  uint32_t ifindex = 0;
  packet::IpAddress address;
  uint8_t prefix_len = 0;
  uint8_t scope = 0;   // RT_SCOPE_*: 0 universe (global), 253 link, 254 host
  uint32_t flags = 0;  // IFA_F_* (IFA_FLAGS when present: it carries the bits beyond 8)
  friend bool operator==(const Addr&, const Addr&) = default;
};

// RTM_NEWROUTE / RTM_DELROUTE with a single next hop (routes with RTA_MULTIPATH or a nexthop
// object have oif 0 and are never copied).
struct Route {
  packet::IpFamily family = packet::IpFamily::kV4;
  uint32_t table = 0;                    // RTA_TABLE (falls back to rtm_table)
  std::optional<packet::IpAddress> dst;  // none: the default route (dst_len 0)
  uint8_t dst_len = 0;
  std::optional<packet::IpAddress> gateway;
  uint32_t oif = 0;
  std::optional<packet::IpAddress> prefsrc;
  uint32_t priority = 0;  // RTA_PRIORITY (the metric)
  uint8_t scope = 0;      // RT_SCOPE_*
  uint8_t type = 1;       // RTN_UNICAST
  uint8_t protocol = 0;   // RTPROT_*
  uint32_t flags = 0;     // RTM_F_* from rtm_flags (RTM_F_CLONED: a cache entry)
  friend bool operator==(const Route&, const Route&) = default;
};

// RTM_NEWRULE / RTM_DELRULE, action FR_ACT_TO_TBL ("lookup <table>").
struct Rule {
  packet::IpFamily family = packet::IpFamily::kV4;
  uint32_t priority = 0;
  uint32_t table = 0;
  std::optional<packet::IpAddress> src;  // "from src/src_len"
  uint8_t src_len = 0;
  std::optional<uint32_t> fwmark;  // "fwmark fwmark/fwmask"
  std::optional<uint32_t> fwmask;
  uint8_t action = 1;  // FR_ACT_TO_TBL
  friend bool operator==(const Rule&, const Rule&) = default;
};

enum class Op : uint8_t { kAdd, kDel };

inline constexpr uint8_t kFamilyAny = 0;  // AF_UNSPEC
uint8_t AfOf(packet::IpFamily f);         // AF_INET / AF_INET6

// Dump requests: RTM_GETLINK, RTM_GETADDR, RTM_GETROUTE, RTM_GETRULE with NLM_F_DUMP.
std::vector<uint8_t> BuildDumpRequest(uint16_t type, uint8_t family, uint32_t seq);
// RTM_NEWROUTE (NLM_F_CREATE | NLM_F_EXCL: never replace a route we did not make) or
// RTM_DELROUTE, with NLM_F_ACK. The table always goes in RTA_TABLE (ids above 255 do not fit
// rtm_table, which then says RT_TABLE_UNSPEC).
std::vector<uint8_t> BuildRouteRequest(Op op, const Route& route, uint32_t seq);
// RTM_NEWRULE (NLM_F_CREATE | NLM_F_EXCL) or RTM_DELRULE, with NLM_F_ACK.
std::vector<uint8_t> BuildRuleRequest(Op op, const Rule& rule, uint32_t seq);
// Notification-shaped messages (what the kernel sends); used by tests and fakes.
std::vector<uint8_t> BuildLinkMessage(const Link& link, uint32_t seq);
std::vector<uint8_t> BuildAddrMessage(const Addr& addr, uint32_t seq);

// One message each (nlmsghdr included). nullopt: another message type, or malformed.
std::optional<Link> ParseLink(packet::Bytes msg);
std::optional<Addr> ParseAddr(packet::Bytes msg);
std::optional<Route> ParseRoute(packet::Bytes msg);
std::optional<Rule> ParseRule(packet::Bytes msg);

// The nlmsg_type of a message (0 when too short).
uint16_t MessageType(packet::Bytes msg);

// Splits a datagram into its messages (each nlmsghdr-aligned, bounded by its nlmsg_len). Stops at
// the first message whose length is out of range.
std::vector<packet::Bytes> SplitMessages(packet::Bytes datagram);

// A reply message's verdict: NLMSG_DONE → done; NLMSG_ERROR → its (positive) errno, 0 for an ACK.
struct ReplyStatus {
  bool done = false;
  std::optional<int> error;  // set for NLMSG_ERROR
};
ReplyStatus StatusOf(packet::Bytes msg);

}  // namespace mproxy::proxy::rtnl
