// Policy routing for the managed interfaces (--interfaces), as a pure plan: which routes and rules
// should exist given what the kernel reports, and which of the existing ones are ours. The
// InterfaceManager (proxy/interface_manager.h) applies the difference through rtnetlink.
//
// Why: every subflow must leave through its own interface. Packets the engine rewrites at
// LOCAL_OUT with a new source address are rerouted by the kernel by that source (nf_reroute), and
// forged packets from the raw socket are routed by the source given in IP_PKTINFO/IPV6_PKTINFO
// (proxy/raw_socket.cc); a `from <address> lookup <table>` rule sends both to a table that only
// knows the interface's own routes. The `fwmark` rule does the same for packets carrying the
// interface's mark (e.g. `ping -m`, or a verdict mark), which do not depend on the source.
//
// For managed interface i (its position in --interfaces), per family:
//   table    T(i) = table_base + i, holding copies of the main table's routes whose output
//            interface is i (at least its connected prefix and its default route via the gateway)
//   rules    priority P(i) = priority_base + i:  from <each global address>/32|128 lookup T(i)
//                                                 fwmark M(i)/mark_mask lookup T(i)
//   mark     M(i) = (i + 1) << (lowest set bit of mark_mask)
// Ours = a rule whose priority is in [priority_base, +kMaxManagedInterfaces) *and* whose table is
// in [table_base, +kMaxManagedInterfaces); a route in a table of that range. Nothing else is ever
// deleted, which is what lets the start-up sweep remove a crashed run's leftovers safely.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "packet/result.h"
#include "proxy/rtnetlink.h"

namespace mproxy::proxy {

inline constexpr uint32_t kMaxManagedInterfaces = 32;

struct RoutingConfig {
  uint32_t table_base = 0x4d50;
  uint32_t priority_base = 0x4d50;  // 19792: after the local table (0), before main (32766)
  uint32_t mark_mask = 0x00ff0000;  // must not share bits with the skip mark
  bool ipv4 = true;
  bool ipv6 = true;
};

// What the kernel told us about one named interface.
struct InterfaceState {
  std::string name;
  uint32_t ifindex = 0;               // 0: no such interface (yet)
  bool up = false;                    // IFF_UP
  bool carrier = false;               // IFF_LOWER_UP
  std::vector<rtnl::Addr> addresses;  // every address of the interface, as dumped
  [[nodiscard]] bool usable() const { return ifindex != 0 && up && carrier; }
  // The addresses subflows may use: global scope, not tentative or failed DAD; deprecated ones
  // last (a new subflow should prefer a preferred address). Empty unless usable().
  [[nodiscard]] std::vector<packet::IpAddress> SubflowAddresses() const;
};

uint32_t TableOf(const RoutingConfig& c, size_t index);
uint32_t PriorityOf(const RoutingConfig& c, size_t index);
uint32_t MarkOf(const RoutingConfig& c, size_t index);

// Refuses a configuration whose ranges overflow, whose priorities reach the main table's (32766)
// or the local table's (0), whose tables include the kernel's reserved ids (0, 252-255), or whose
// mark mask is empty, too narrow for the interfaces or overlaps the skip mark.
Result<void> ValidateRouting(const RoutingConfig& c, size_t interfaces, uint32_t skip_mark);

bool IsOurRule(const RoutingConfig& c, const rtnl::Rule& r);
bool IsOurRoute(const RoutingConfig& c, const rtnl::Route& r);

struct RoutingPlan {
  std::vector<rtnl::Route> routes;
  std::vector<rtnl::Rule> rules;
};

// What should exist. `main_routes` is a route dump (every table; only RT_TABLE_MAIN unicast
// single-next-hop routes through a usable managed interface are copied). Routes without a gateway
// come first: the kernel checks a gateway against the routes already in the table.
RoutingPlan PlanRouting(const RoutingConfig& c, const std::vector<InterfaceState>& interfaces,
                        const std::vector<rtnl::Route>& main_routes);

// What to change to get from `have` (ours, as dumped) to `want`. Routes compare by what the
// kernel keys them on plus what we set (family, table, dst, gateway, oif, prefsrc, metric, scope,
// type); flags and protocol are ignored (the kernel adds RTNH_F_LINKDOWN and the like).
struct RoutingDiff {
  std::vector<rtnl::Rule> del_rules;
  std::vector<rtnl::Route> del_routes;
  std::vector<rtnl::Route> add_routes;  // in plan order
  std::vector<rtnl::Rule> add_rules;
  [[nodiscard]] bool empty() const {
    return del_rules.empty() && del_routes.empty() && add_routes.empty() && add_rules.empty();
  }
};
RoutingDiff DiffRouting(const RoutingPlan& want, const RoutingPlan& have);

// "from 198.18.2.2/32 lookup 19793 prio 19793", "198.18.2.0/24 dev #5 table 19793": log lines.
std::string Describe(const rtnl::Rule& r);
std::string Describe(const rtnl::Route& r);

}  // namespace mproxy::proxy
