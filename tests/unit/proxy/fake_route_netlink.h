// A tiny rtnetlink "kernel" for tests: links, addresses, routes and rules as values; answers dump
// requests with messages built by proxy/rtnetlink.h and applies RTM_NEW/DELROUTE and
// RTM_NEW/DELRULE requests (parsed with the same codec) with the kernel's errno conventions
// (EEXIST on a duplicate add, ESRCH/ENOENT on deleting what is not there). Its monitor fd is an
// eventfd the test (or, with echo_route_changes, every route change) makes readable; the
// notification messages wait in `notifications`.
#pragma once

#include <linux/rtnetlink.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <string>
#include <vector>

#include "proxy/route_netlink.h"
#include "proxy/rtnetlink.h"
#include "proxy/sys.h"

namespace mproxy::proxy {

class FakeKernel {
 public:
  std::vector<rtnl::Link> links;
  std::vector<rtnl::Addr> addrs;
  std::vector<rtnl::Route> routes;
  std::vector<rtnl::Rule> rules;
  std::vector<std::string> log;     // "add rule ...", "del route ..."
  int fail_adds_with = 0;           // errno for every add request (0: accept)
  int dump_error = 0;               // errno for every dump
  bool no_ipv6 = false;             // IPv6 route/rule dumps and requests fail with EAFNOSUPPORT
  uint32_t metric_skew = 0;         // added to the metric of every route stored (a kernel that
                                    // stores routes differently from how they were asked for)
  bool echo_route_changes = false;  // every route added or deleted is notified, as the kernel does

  UniqueFd efd{eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)};
  std::vector<std::vector<uint8_t>> notifications;
  // A link notification (what changed does not matter: the daemon re-reads everything).
  void Notify() { Notify(rtnl::BuildLinkMessage(rtnl::Link{1, "lo", 0x1}, 0)); }
  void Notify(std::vector<uint8_t> message) {
    notifications.push_back(std::move(message));
    const uint64_t one = 1;
    (void)!::write(efd.get(), &one, sizeof(one));
  }
};

class FakeRouteNetlink final : public RouteNetlink {
 public:
  explicit FakeRouteNetlink(FakeKernel& k) : k_(k) {}

  Result<std::vector<std::vector<uint8_t>>> Dump(const std::vector<uint8_t>& req) override {
    if (k_.dump_error != 0) return MakeError("dump refused", k_.dump_error);
    std::vector<std::vector<uint8_t>> out;
    const uint8_t family = req.size() > 16 ? req[16] : 0;
    const uint16_t t = rtnl::MessageType(req);
    if (k_.no_ipv6 && family == AF_INET6 && (t == RTM_GETROUTE || t == RTM_GETRULE)) {
      return MakeError("Address family not supported by protocol", EAFNOSUPPORT);
    }
    const auto want = [&](packet::IpFamily f) { return family == 0 || family == rtnl::AfOf(f); };
    switch (rtnl::MessageType(req)) {
      case RTM_GETLINK:
        for (const auto& l : k_.links) out.push_back(rtnl::BuildLinkMessage(l, 0));
        break;
      case RTM_GETADDR:
        for (const auto& a : k_.addrs) {
          if (want(a.address.family())) out.push_back(rtnl::BuildAddrMessage(a, 0));
        }
        break;
      case RTM_GETROUTE:
        for (const auto& r : k_.routes) {
          if (!want(r.family)) continue;
          auto m = rtnl::BuildRouteRequest(rtnl::Op::kAdd, r, 0);
          SetFlags(m, r.flags);
          out.push_back(std::move(m));
        }
        break;
      case RTM_GETRULE:
        for (const auto& r : k_.rules) {
          if (want(r.family)) out.push_back(rtnl::BuildRuleRequest(rtnl::Op::kAdd, r, 0));
        }
        break;
      default:
        return MakeError("fake: unexpected dump", EINVAL);
    }
    return out;
  }

  Result<void> Change(const std::vector<uint8_t>& req) override {
    const uint16_t type = rtnl::MessageType(req);
    if (k_.no_ipv6 && req.size() > 16 && req[16] == AF_INET6) {
      return MakeError("Address family not supported by protocol", EAFNOSUPPORT);
    }
    if (type == RTM_NEWROUTE || type == RTM_DELROUTE) {
      auto r = rtnl::ParseRoute(req);
      if (!r) return MakeError("fake: bad route", EINVAL);
      auto it = std::find_if(k_.routes.begin(), k_.routes.end(), [&](const rtnl::Route& x) {
        return x.family == r->family && x.table == r->table && x.dst == r->dst &&
               x.dst_len == r->dst_len && x.gateway == r->gateway && x.oif == r->oif &&
               x.priority == r->priority;
      });
      if (type == RTM_NEWROUTE) {
        if (k_.fail_adds_with != 0) return MakeError("refused", k_.fail_adds_with);
        if (it != k_.routes.end()) return MakeError("File exists", EEXIST);
        r->priority += k_.metric_skew;
        k_.routes.push_back(*r);
        k_.log.push_back("add " + Describe(*r));
      } else {
        if (it == k_.routes.end()) return MakeError("No such process", ESRCH);
        k_.log.push_back("del " + Describe(*it));
        k_.routes.erase(it);
      }
      if (k_.echo_route_changes) k_.Notify(req);
      return {};
    }
    if (type == RTM_NEWRULE || type == RTM_DELRULE) {
      auto r = rtnl::ParseRule(req);
      if (!r) return MakeError("fake: bad rule", EINVAL);
      auto it = std::find(k_.rules.begin(), k_.rules.end(), *r);
      if (type == RTM_NEWRULE) {
        if (k_.fail_adds_with != 0) return MakeError("refused", k_.fail_adds_with);
        if (it != k_.rules.end()) return MakeError("File exists", EEXIST);
        k_.rules.push_back(*r);
        k_.log.push_back("add " + Describe(*r));
      } else {
        if (it == k_.rules.end()) return MakeError("No such file or directory", ENOENT);
        k_.log.push_back("del " + Describe(*it));
        k_.rules.erase(it);
      }
      return {};
    }
    return MakeError("fake: unexpected request", EINVAL);
  }

  [[nodiscard]] int monitor_fd() const override { return k_.efd.get(); }
  size_t DrainMonitor(const NotificationFilter& relevant) override {
    uint64_t v = 0;
    (void)!::read(k_.efd.get(), &v, sizeof(v));
    size_t n = 0;
    for (const auto& m : k_.notifications) {
      if (!relevant || relevant(packet::Bytes(m.data(), m.size()))) ++n;
    }
    k_.notifications.clear();
    return n;
  }

 private:
  // rtm_flags sits right after the 8 one-byte fields of rtmsg.
  static void SetFlags(std::vector<uint8_t>& m, uint32_t flags) {
    std::memcpy(m.data() + 16 + 8, &flags, sizeof(flags));
  }
  FakeKernel& k_;
};

// The testbed's mobile host: wlan0 (2) 198.18.1.2/24 + 2001:db8:1::2/64, eth1 (3) 198.18.2.2/24 +
// 2001:db8:2::2/64, a default route via each (metrics 100 and 200) and the connected prefixes.
inline packet::IpAddress Ip(const char* s) { return *packet::IpAddress::Parse(s); }
inline void MobileHost(FakeKernel& k) {
  constexpr uint32_t kUpRunning = 0x1 | 0x40 | 0x10000;  // IFF_UP | IFF_RUNNING | IFF_LOWER_UP
  k.links = {{1, "lo", kUpRunning}, {2, "wlan0", kUpRunning}, {3, "eth1", kUpRunning}};
  k.addrs = {{1, Ip("127.0.0.1"), 8, RT_SCOPE_HOST, 0x80},
             {2, Ip("198.18.1.2"), 24, RT_SCOPE_UNIVERSE, 0x80},
             {2, Ip("2001:db8:1::2"), 64, RT_SCOPE_UNIVERSE, 0x80},
             {2, Ip("fe80::1"), 64, RT_SCOPE_LINK, 0x80},
             {3, Ip("198.18.2.2"), 24, RT_SCOPE_UNIVERSE, 0x80},
             {3, Ip("2001:db8:2::2"), 64, RT_SCOPE_UNIVERSE, 0x80}};
  auto route = [](packet::IpFamily f, const char* dst, uint8_t len, const char* gw, uint32_t oif,
                  uint32_t metric, uint8_t scope, uint32_t table = RT_TABLE_MAIN) {
    rtnl::Route r;
    r.family = f;
    r.table = table;
    if (dst != nullptr) r.dst = Ip(dst);
    r.dst_len = len;
    if (gw != nullptr) r.gateway = Ip(gw);
    r.oif = oif;
    r.priority = metric;
    r.scope = scope;
    r.protocol = gw != nullptr ? RTPROT_BOOT : RTPROT_KERNEL;
    return r;
  };
  using F = packet::IpFamily;
  k.routes = {
      route(F::kV4, nullptr, 0, "198.18.1.1", 2, 100, RT_SCOPE_UNIVERSE),
      route(F::kV4, nullptr, 0, "198.18.2.1", 3, 200, RT_SCOPE_UNIVERSE),
      route(F::kV4, "198.18.1.0", 24, nullptr, 2, 0, RT_SCOPE_LINK),
      route(F::kV4, "198.18.2.0", 24, nullptr, 3, 0, RT_SCOPE_LINK),
      route(F::kV4, "198.18.2.2", 32, nullptr, 3, 0, RT_SCOPE_HOST, RT_TABLE_LOCAL),
      route(F::kV6, "2001:db8:2::", 64, nullptr, 3, 256, RT_SCOPE_UNIVERSE),
      route(F::kV6, nullptr, 0, "2001:db8:2::1", 3, 200, RT_SCOPE_UNIVERSE),
      route(F::kV6, nullptr, 0, "2001:db8:1::1", 2, 100, RT_SCOPE_UNIVERSE),
  };
  k.routes[2].prefsrc = Ip("198.18.1.2");
  k.routes[3].prefsrc = Ip("198.18.2.2");
  k.routes[4].type = RTN_LOCAL;
  // The kernel's own rules, which must never be touched.
  rtnl::Rule local, main;
  local.priority = 0;
  local.table = RT_TABLE_LOCAL;
  main.priority = 32766;
  main.table = RT_TABLE_MAIN;
  k.rules = {local, main};
  local.family = main.family = F::kV6;
  k.rules.push_back(local);
  k.rules.push_back(main);
}

}  // namespace mproxy::proxy
