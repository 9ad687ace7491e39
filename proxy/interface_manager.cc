#include "proxy/interface_manager.h"

#include <linux/rtnetlink.h>
#include <sys/socket.h>

#include <algorithm>

#include "proxy/log.h"

namespace mproxy::proxy {
namespace {

bool SameAddresses(const std::vector<mptcp::LocalInterface>& a,
                   const std::vector<mptcp::LocalInterface>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i].name != b[i].name || a[i].ifindex != b[i].ifindex ||
        a[i].addresses != b[i].addresses) {
      return false;
    }
  }
  return true;
}

std::string DescribeDiff(const RoutingDiff& d) {
  std::string s;
  for (const auto& r : d.del_rules) s += " -[" + Describe(r) + "]";
  for (const auto& r : d.del_routes) s += " -[" + Describe(r) + "]";
  for (const auto& r : d.add_routes) s += " +[" + Describe(r) + "]";
  for (const auto& r : d.add_rules) s += " +[" + Describe(r) + "]";
  return s;
}

std::vector<packet::IpFamily> Families(const RoutingConfig& c) {
  std::vector<packet::IpFamily> f;
  if (c.ipv4) f.push_back(packet::IpFamily::kV4);
  if (c.ipv6) f.push_back(packet::IpFamily::kV6);
  return f;
}

}  // namespace

InterfaceManager::InterfaceManager(InterfaceManagerOptions options,
                                   std::unique_ptr<RouteNetlink> netlink)
    : options_(std::move(options)), netlink_(std::move(netlink)) {}

Result<std::vector<InterfaceState>> InterfaceManager::Learn() {
  std::vector<InterfaceState> states;
  for (const std::string& n : options_.names) {
    InterfaceState s;
    s.name = n;
    states.push_back(std::move(s));
  }

  auto links = netlink_->Dump(rtnl::BuildDumpRequest(RTM_GETLINK, AF_UNSPEC, ++seq_));
  if (!links) return links.error();
  for (const auto& m : *links) {
    auto l = rtnl::ParseLink(m);
    if (!l) continue;
    for (InterfaceState& s : states) {
      if (s.name != l->name) continue;
      s.ifindex = l->ifindex;
      s.up = l->up();
      s.carrier = l->carrier();
    }
  }
  auto addrs = netlink_->Dump(rtnl::BuildDumpRequest(RTM_GETADDR, AF_UNSPEC, ++seq_));
  if (!addrs) return addrs.error();
  for (const auto& m : *addrs) {
    auto a = rtnl::ParseAddr(m);
    if (!a) continue;
    for (InterfaceState& s : states) {
      if (s.ifindex != 0 && s.ifindex == a->ifindex) s.addresses.push_back(*a);
    }
  }
  return states;
}

Result<void> InterfaceManager::DumpRouting(std::vector<rtnl::Route>& all_routes,
                                           RoutingPlan& ours) {
  for (packet::IpFamily f : Families(options_.routing)) {
    auto routes = netlink_->Dump(rtnl::BuildDumpRequest(RTM_GETROUTE, rtnl::AfOf(f), ++seq_));
    // A kernel booted with ipv6.disable=1 has no IPv6 routing at all: nothing of ours can be
    // there and nothing can be installed, which is not an error.
    if (!routes && routes.error().code == EAFNOSUPPORT && f == packet::IpFamily::kV6) {
      MPROXY_LOG(kWarn) << "IPv6 is disabled in this kernel: IPv4 policy routing only";
      options_.routing.ipv6 = false;
      continue;
    }
    if (!routes) return routes.error();
    for (const auto& m : *routes) {
      auto r = rtnl::ParseRoute(m);
      if (!r || r->family != f) continue;
      if (IsOurRoute(options_.routing, *r)) ours.routes.push_back(*r);
      all_routes.push_back(*r);
    }
    auto rules = netlink_->Dump(rtnl::BuildDumpRequest(RTM_GETRULE, rtnl::AfOf(f), ++seq_));
    if (!rules) return rules.error();
    for (const auto& m : *rules) {
      auto r = rtnl::ParseRule(m);
      if (r && r->family == f && IsOurRule(options_.routing, *r)) ours.rules.push_back(*r);
    }
  }
  return {};
}

Result<void> InterfaceManager::Apply(const RoutingDiff& diff, bool strict) {
  // Rules go first on removal and last on installation, so a rule never points at a table that
  // is being filled or emptied (it would fall through to the main table meanwhile: harmless, but
  // the order makes the intermediate states simple).
  Result<void> first;
  const auto fail = [&](const std::string& what, const Error& e) {
    Error err = e;
    err.message = what + ": " + e.message;
    MPROXY_LOG(kWarn) << "policy routing: " << err.message;
    if (first) first = err;
  };
  for (const rtnl::Rule& r : diff.del_rules) {
    auto res = netlink_->Change(rtnl::BuildRuleRequest(rtnl::Op::kDel, r, ++seq_));
    if (!res && res.error().code != ENOENT) fail("deleting " + Describe(r), res.error());
  }
  for (const rtnl::Route& r : diff.del_routes) {
    auto res = netlink_->Change(rtnl::BuildRouteRequest(rtnl::Op::kDel, r, ++seq_));
    // ESRCH: the kernel removed it already (its interface went down).
    if (!res && res.error().code != ESRCH && res.error().code != ENOENT) {
      fail("deleting " + Describe(r), res.error());
    } else if (res) {
      // Its echo is ours; any other deletion in our tables is someone else's (Relevant()).
      constexpr size_t kKeptDeletions = 256;
      if (own_deletions_.size() >= kKeptDeletions) own_deletions_.erase(own_deletions_.begin());
      own_deletions_.push_back(r);
    }
  }
  for (const rtnl::Route& r : diff.add_routes) {
    auto res = netlink_->Change(rtnl::BuildRouteRequest(rtnl::Op::kAdd, r, ++seq_));
    if (!res && res.error().code != EEXIST) fail("adding " + Describe(r), res.error());
    if (!first && strict) return first;
  }
  for (const rtnl::Rule& r : diff.add_rules) {
    auto res = netlink_->Change(rtnl::BuildRuleRequest(rtnl::Op::kAdd, r, ++seq_));
    if (!res && res.error().code != EEXIST) fail("adding " + Describe(r), res.error());
    if (!first && strict) return first;
  }
  return first;
}

Result<void> InterfaceManager::RemoveOurs(int* removed) {
  std::vector<rtnl::Route> all;
  RoutingPlan ours;
  if (auto r = DumpRouting(all, ours); !r) return r;
  if (removed != nullptr) *removed = static_cast<int>(ours.rules.size() + ours.routes.size());
  return Apply(DiffRouting({}, ours), false);
}

Result<void> InterfaceManager::Start() {
  auto states = Learn();
  if (!states) {
    Error e = states.error();
    e.message = "reading interfaces: " + e.message;
    return e;
  }
  for (const InterfaceState& s : *states) {
    if (s.ifindex == 0) {
      return MakeError("interface " + s.name + " does not exist (--interfaces)", ENODEV);
    }
  }
  states_ = std::move(states.value());
  for (const InterfaceState& s : states_) {
    if (!s.usable()) {
      MPROXY_LOG(kWarn) << "interface " << s.name << " is " << (s.up ? "without carrier" : "down")
                        << ": no subflows from it until it comes up";
    }
  }
  if (!options_.policy_routing) return {};
  if (auto r = RemoveOurs(&stale_removed_); !r) {
    Error e = r.error();
    e.message = "removing stale policy routing: " + e.message;
    return e;
  }
  if (stale_removed_ > 0) {
    MPROXY_LOG(kInfo) << "removed " << stale_removed_
                      << " stale route(s)/rule(s) of an earlier run";
  }
  routing_installed_ = true;  // from here on Stop() removes what we (partly) installed
  std::vector<rtnl::Route> all;
  RoutingPlan ours;
  if (auto r = DumpRouting(all, ours); !r) return r;
  const RoutingPlan want = PlanRouting(options_.routing, states_, all);
  if (auto r = Apply(DiffRouting(want, ours), /*strict=*/true); !r) {
    Error e = r.error();
    e.message = "installing policy routing: " + e.message;
    return e;
  }
  MPROXY_LOG(kInfo) << "policy routing installed: " << want.routes.size() << " route(s), "
                    << want.rules.size() << " rule(s)";
  return {};
}

bool InterfaceManager::Relevant(packet::Bytes notification) {
  const uint16_t type = rtnl::MessageType(notification);
  if (type != RTM_NEWROUTE && type != RTM_DELROUTE) return true;
  const auto r = rtnl::ParseRoute(notification);
  if (!r || !IsOurRoute(options_.routing, *r)) return true;
  if (type == RTM_DELROUTE) {
    // A route deleted from our tables by someone else (`ip route flush table ...`) must be
    // repaired by a resync; only the echo of a deletion we made ourselves is ignored.
    const auto same = [&](const rtnl::Route& d) {
      return d.family == r->family && d.table == r->table && d.dst == r->dst &&
             d.dst_len == r->dst_len && d.gateway == r->gateway && d.oif == r->oif &&
             d.priority == r->priority;
    };
    const auto it = std::find_if(own_deletions_.begin(), own_deletions_.end(), same);
    if (it == own_deletions_.end()) return true;
    own_deletions_.erase(it);
  }
  ++own_notifications_;
  return false;
}

size_t InterfaceManager::DrainNotifications() {
  return netlink_->DrainMonitor([this](packet::Bytes m) { return Relevant(m); });
}

Result<bool> InterfaceManager::Refresh() {
  if (DrainNotifications() == 0) return false;
  return Resync();
}

Result<bool> InterfaceManager::Resync() {
  auto states = Learn();
  if (!states) return states.error();
  const auto before = LocalInterfaces();
  for (size_t i = 0; i < states->size() && i < states_.size(); ++i) {
    const InterfaceState& was = states_[i];
    const InterfaceState& now = (*states)[i];
    if (was.usable() != now.usable() || was.ifindex != now.ifindex) {
      MPROXY_LOG(kInfo) << "interface " << now.name << ": "
                        << (now.ifindex == 0 ? "gone"
                            : now.usable()   ? "up"
                            : now.up         ? "no carrier"
                                             : "down");
    }
  }
  states_ = std::move(states.value());
  if (options_.policy_routing && routing_installed_) {
    std::vector<rtnl::Route> all;
    RoutingPlan ours;
    if (auto r = DumpRouting(all, ours); !r) return r.error();
    const RoutingDiff diff = DiffRouting(PlanRouting(options_.routing, states_, all), ours);
    const std::string text = DescribeDiff(diff);
    if (diff.empty()) {
      last_applied_.clear();
    } else if (text == last_applied_) {
      static RateLimited limit(std::chrono::seconds(10));
      if (limit.Allow())
        MPROXY_LOG(kWarn) << "policy routing: the kernel did not converge on" << text
                          << "; not applying it again until something else changes";
    } else {
      MPROXY_LOG(kDebug) << "policy routing:" << text;
      last_applied_ = text;
      if (auto r = Apply(diff, false); !r) return r.error();
    }
  }
  return !SameAddresses(before, LocalInterfaces());
}

Result<void> InterfaceManager::Stop() {
  if (!routing_installed_) return {};
  routing_installed_ = false;
  int removed = 0;
  auto r = RemoveOurs(&removed);
  if (r) MPROXY_LOG(kInfo) << "policy routing removed (" << removed << " route(s)/rule(s))";
  return r;
}

std::vector<mptcp::LocalInterface> InterfaceManager::LocalInterfaces() const {
  std::vector<mptcp::LocalInterface> out;
  for (const InterfaceState& s : states_) {
    out.push_back({s.name, s.ifindex, s.SubflowAddresses()});
  }
  return out;
}

nlohmann::json InterfaceManager::StatusJson() const {
  nlohmann::json list = nlohmann::json::array();
  for (size_t i = 0; i < states_.size(); ++i) {
    const InterfaceState& s = states_[i];
    nlohmann::json addrs = nlohmann::json::array();
    for (const auto& a : s.SubflowAddresses()) addrs.push_back(a.ToString());
    nlohmann::json j = {
        {"name", s.name},
        {"ifindex", s.ifindex},
        {"state", s.ifindex == 0 ? "missing"
                  : s.usable()   ? "up"
                  : s.up         ? "no-carrier"
                                 : "down"},
        {"addresses", std::move(addrs)},
    };
    if (options_.policy_routing) {
      j["table"] = TableOf(options_.routing, i);
      j["priority"] = PriorityOf(options_.routing, i);
      j["mark"] = MarkOf(options_.routing, i);
    }
    list.push_back(std::move(j));
  }
  return list;
}

}  // namespace mproxy::proxy
