#include "proxy/policy_routing.h"

#include <linux/if_addr.h>
#include <linux/rtnetlink.h>

#include <algorithm>
#include <bit>
#include <cstdio>
#include <tuple>

namespace mproxy::proxy {
namespace {

constexpr uint32_t kMainRulePriority = 32766;

auto RouteKey(const rtnl::Route& r) {
  return std::tie(r.family, r.table, r.dst, r.dst_len, r.gateway, r.oif, r.prefsrc, r.priority,
                  r.scope, r.type);
}
bool SameRoute(const rtnl::Route& a, const rtnl::Route& b) { return RouteKey(a) == RouteKey(b); }
auto RuleKey(const rtnl::Rule& r) {
  return std::tie(r.family, r.priority, r.table, r.src, r.src_len, r.fwmark, r.fwmask, r.action);
}
bool SameRule(const rtnl::Rule& a, const rtnl::Rule& b) { return RuleKey(a) == RuleKey(b); }

bool FamilyEnabled(const RoutingConfig& c, packet::IpFamily f) {
  return f == packet::IpFamily::kV4 ? c.ipv4 : c.ipv6;
}

std::string Hex(uint32_t v) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%x", v);
  return buf;
}

}  // namespace

std::vector<packet::IpAddress> InterfaceState::SubflowAddresses() const {
  std::vector<packet::IpAddress> preferred, deprecated;
  if (!usable()) return preferred;
  for (const rtnl::Addr& a : addresses) {
    if (a.scope != RT_SCOPE_UNIVERSE) continue;
    if ((a.flags & (IFA_F_TENTATIVE | IFA_F_DADFAILED)) != 0) continue;
    ((a.flags & IFA_F_DEPRECATED) != 0 ? deprecated : preferred).push_back(a.address);
  }
  preferred.insert(preferred.end(), deprecated.begin(), deprecated.end());
  return preferred;
}

uint32_t TableOf(const RoutingConfig& c, size_t index) {
  return c.table_base + static_cast<uint32_t>(index);
}
uint32_t PriorityOf(const RoutingConfig& c, size_t index) {
  return c.priority_base + static_cast<uint32_t>(index);
}
uint32_t MarkOf(const RoutingConfig& c, size_t index) {
  return (static_cast<uint32_t>(index) + 1) << std::countr_zero(c.mark_mask);
}

Result<void> ValidateRouting(const RoutingConfig& c, size_t interfaces, uint32_t skip_mark) {
  if (interfaces > kMaxManagedInterfaces) {
    return MakeError("at most " + std::to_string(kMaxManagedInterfaces) + " interfaces", EINVAL);
  }
  if (c.table_base == 0 || c.table_base > UINT32_MAX - kMaxManagedInterfaces ||
      (c.table_base <= RT_TABLE_LOCAL && c.table_base + kMaxManagedInterfaces > RT_TABLE_COMPAT)) {
    return MakeError("route table base " + std::to_string(c.table_base) + ": the range of " +
                         std::to_string(kMaxManagedInterfaces) +
                         " tables must avoid 0 and the kernel's 252-255",
                     EINVAL);
  }
  if (c.priority_base == 0 || c.priority_base + kMaxManagedInterfaces > kMainRulePriority) {
    return MakeError("rule priority base " + std::to_string(c.priority_base) +
                         ": the range must lie between 1 and the main table's rule (32766)",
                     EINVAL);
  }
  if (c.mark_mask == 0) return MakeError("route mark mask must not be 0", EINVAL);
  if ((c.mark_mask & skip_mark) != 0) {
    return MakeError("route mark mask " + Hex(c.mark_mask) + " overlaps the skip mark " +
                         Hex(skip_mark) + " (our own raw-socket packets would match the rules)",
                     EINVAL);
  }
  // Every interface's mark must fit under the mask as a contiguous field.
  const uint32_t field = c.mark_mask >> std::countr_zero(c.mark_mask);
  if (interfaces > 0 && field < interfaces) {
    return MakeError("route mark mask " + Hex(c.mark_mask) + " is too narrow for " +
                         std::to_string(interfaces) + " interfaces",
                     EINVAL);
  }
  return {};
}

bool IsOurRule(const RoutingConfig& c, const rtnl::Rule& r) {
  return r.priority >= c.priority_base && r.priority - c.priority_base < kMaxManagedInterfaces &&
         r.table >= c.table_base && r.table - c.table_base < kMaxManagedInterfaces;
}

bool IsOurRoute(const RoutingConfig& c, const rtnl::Route& r) {
  return r.table >= c.table_base && r.table - c.table_base < kMaxManagedInterfaces;
}

RoutingPlan PlanRouting(const RoutingConfig& c, const std::vector<InterfaceState>& interfaces,
                        const std::vector<rtnl::Route>& main_routes) {
  RoutingPlan plan;
  std::vector<rtnl::Route> via_gateway;
  for (size_t i = 0; i < interfaces.size(); ++i) {
    const InterfaceState& s = interfaces[i];
    if (!s.usable()) continue;
    const uint32_t table = TableOf(c, i);
    for (const rtnl::Route& r : main_routes) {
      if (r.table != RT_TABLE_MAIN || r.oif != s.ifindex || r.type != RTN_UNICAST) continue;
      if ((r.flags & RTM_F_CLONED) != 0 || !FamilyEnabled(c, r.family)) continue;
      rtnl::Route copy = r;
      copy.table = table;
      copy.protocol = RTPROT_STATIC;
      copy.flags = 0;
      (copy.gateway ? via_gateway : plan.routes).push_back(copy);
    }
    for (packet::IpFamily f : {packet::IpFamily::kV4, packet::IpFamily::kV6}) {
      if (!FamilyEnabled(c, f)) continue;
      for (const packet::IpAddress& a : s.SubflowAddresses()) {
        if (a.family() != f) continue;
        rtnl::Rule from;
        from.family = f;
        from.priority = PriorityOf(c, i);
        from.table = table;
        from.src = a;
        from.src_len = a.is_v4() ? 32 : 128;
        plan.rules.push_back(from);
      }
      rtnl::Rule mark;
      mark.family = f;
      mark.priority = PriorityOf(c, i);
      mark.table = table;
      mark.fwmark = MarkOf(c, i);
      mark.fwmask = c.mark_mask;
      plan.rules.push_back(mark);
    }
  }
  plan.routes.insert(plan.routes.end(), via_gateway.begin(), via_gateway.end());
  return plan;
}

RoutingDiff DiffRouting(const RoutingPlan& want, const RoutingPlan& have) {
  RoutingDiff d;
  const auto has_rule = [](const std::vector<rtnl::Rule>& v, const rtnl::Rule& r) {
    return std::any_of(v.begin(), v.end(), [&](const rtnl::Rule& x) { return SameRule(x, r); });
  };
  const auto has_route = [](const std::vector<rtnl::Route>& v, const rtnl::Route& r) {
    return std::any_of(v.begin(), v.end(), [&](const rtnl::Route& x) { return SameRoute(x, r); });
  };
  for (const rtnl::Rule& r : have.rules) {
    if (!has_rule(want.rules, r)) d.del_rules.push_back(r);
  }
  for (const rtnl::Route& r : have.routes) {
    if (!has_route(want.routes, r)) d.del_routes.push_back(r);
  }
  for (const rtnl::Route& r : want.routes) {
    if (!has_route(have.routes, r)) d.add_routes.push_back(r);
  }
  for (const rtnl::Rule& r : want.rules) {
    if (!has_rule(have.rules, r)) d.add_rules.push_back(r);
  }
  return d;
}

std::string Describe(const rtnl::Rule& r) {
  std::string s = r.family == packet::IpFamily::kV4 ? "-4 rule" : "-6 rule";
  if (r.src) s += " from " + r.src->ToString() + "/" + std::to_string(r.src_len);
  if (r.fwmark) s += " fwmark " + Hex(*r.fwmark) + "/" + Hex(r.fwmask.value_or(UINT32_MAX));
  s += " lookup " + std::to_string(r.table) + " prio " + std::to_string(r.priority);
  return s;
}

std::string Describe(const rtnl::Route& r) {
  std::string s = r.family == packet::IpFamily::kV4 ? "-4 route " : "-6 route ";
  s += r.dst ? r.dst->ToString() + "/" + std::to_string(r.dst_len) : std::string("default");
  if (r.gateway) s += " via " + r.gateway->ToString();
  s += " dev #" + std::to_string(r.oif);
  if (r.prefsrc) s += " src " + r.prefsrc->ToString();
  if (r.priority != 0) s += " metric " + std::to_string(r.priority);
  s += " table " + std::to_string(r.table);
  return s;
}

}  // namespace mproxy::proxy
