// The managed interfaces (mproxyd --interfaces wlan0,eth1): learns their ifindex and addresses
// from rtnetlink, keeps them current from the kernel's notifications (a socket in the epoll loop),
// and keeps their policy routing (proxy/policy_routing.h) in place.
//
// Lifecycle (driven by the Daemon):
//   Start():   learn links and addresses; an interface that does not exist is an error (an
//              interface that is merely down is fine: it has no subflow addresses and no routes
//              until it comes up) → sweep our stale routes/rules (a crashed run's) → install ours.
//   Refresh(): after notifications: learn again, apply the difference to the routing.
//   Stop():    remove every route and rule of ours (by range, so a half-installed set goes too).
#pragma once

#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "mptcp/engine.h"
#include "packet/counters.h"
#include "packet/result.h"
#include "proxy/policy_routing.h"
#include "proxy/route_netlink.h"

namespace mproxy::proxy {

struct InterfaceManagerOptions {
  std::vector<std::string> names;
  RoutingConfig routing;
  bool policy_routing = true;  // false: learn interfaces only (--no-policy-routing)
};

class InterfaceManager {
 public:
  InterfaceManager(InterfaceManagerOptions options, std::unique_ptr<RouteNetlink> netlink);

  Result<void> Start();
  // Drains the monitor socket; if anything arrived, learns again and re-syncs the routing.
  // Returns whether the interfaces handed to the engine changed.
  Result<bool> Refresh();
  // Learns again and re-syncs whether or not a notification arrived.
  Result<bool> Resync();
  // Reads every pending notification without acting on it; returns how many there were that
  // matter. The daemon drains at each wake-up and calls Resync() at most once per refresh
  // interval. Route changes in our own tables are not counted: they are the echo of what a
  // re-sync applied (or the kernel flushing them with their interface, which comes with a link
  // or address notification of its own); re-reading everything for them finds nothing to do.
  size_t DrainNotifications();
  // Notifications dropped as our own routing changes' echo.
  [[nodiscard]] uint64_t own_notifications() const { return own_notifications_; }
  Result<void> Stop();

  [[nodiscard]] int monitor_fd() const { return netlink_->monitor_fd(); }
  // What the engine gets (mptcp::Engine::SetInterfaces): one entry per name, in --interfaces
  // order; a missing or down interface has no addresses (ifindex 0 when it does not exist).
  [[nodiscard]] std::vector<mptcp::LocalInterface> LocalInterfaces() const;
  [[nodiscard]] const std::vector<InterfaceState>& states() const { return states_; }
  // For `mproxyctl status`: per interface name, ifindex, state, addresses, table, mark, priority.
  [[nodiscard]] nlohmann::json StatusJson() const;
  [[nodiscard]] int stale_removed() const { return stale_removed_; }
  [[nodiscard]] bool routing_installed() const { return routing_installed_; }

 private:
  Result<std::vector<InterfaceState>> Learn();
  // Dumps the routes and rules of every enabled family: all routes (for the main table's) and
  // our own rules/routes.
  Result<void> DumpRouting(std::vector<rtnl::Route>& all_routes, RoutingPlan& ours);
  Result<void> Apply(const RoutingDiff& diff, bool strict);
  Result<void> RemoveOurs(int* removed);
  [[nodiscard]] bool Relevant(packet::Bytes notification);

  InterfaceManagerOptions options_;
  std::unique_ptr<RouteNetlink> netlink_;
  std::vector<InterfaceState> states_;
  uint32_t seq_ = 0;
  int stale_removed_ = 0;
  uint64_t own_notifications_ = 0;
  std::vector<rtnl::Route> own_deletions_;  // routes we deleted whose echo has not come yet
  bool routing_installed_ = false;
  // The difference applied by the previous re-sync. Our own changes come back as notifications
  // and trigger another re-sync; if the kernel stored a route differently from how we compare it,
  // the same difference would be applied forever, so an identical consecutive one is skipped.
  std::string last_applied_;
};

}  // namespace mproxy::proxy
