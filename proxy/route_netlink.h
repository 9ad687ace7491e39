// The rtnetlink socket behind a small interface (like PacketQueue/PacketSender in packet_io.h), so
// interface discovery and policy routing are tested against a fake kernel
// (tests/unit/proxy/interface_manager_test.cc). Messages are built and parsed by proxy/rtnetlink.h.
#pragma once

#include <libmnl/libmnl.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "packet/bytes.h"
#include "packet/result.h"

namespace mproxy::proxy {

// Which notifications count (DrainMonitor); the others are read and dropped. Empty: all count.
using NotificationFilter = std::function<bool(packet::Bytes message)>;

class RouteNetlink {
 public:
  virtual ~RouteNetlink() = default;
  // Sends a dump request (rtnl::BuildDumpRequest) and returns every message of the answer,
  // NLMSG_DONE excluded. An NLMSG_ERROR answer is an Error with its errno.
  virtual Result<std::vector<std::vector<uint8_t>>> Dump(const std::vector<uint8_t>& request) = 0;
  // Sends a request carrying NLM_F_ACK and waits for the kernel's answer; a refusal is an Error
  // whose code is the kernel's errno (EEXIST, ESRCH, ENETUNREACH, ...).
  virtual Result<void> Change(const std::vector<uint8_t>& request) = 0;
  // Readable when link/address/route notifications are pending; -1 when there is none.
  [[nodiscard]] virtual int monitor_fd() const = 0;
  // Reads every pending notification without blocking and returns how many there were that
  // `relevant` accepts. A lost batch (ENOBUFS) counts as one: the caller re-reads the whole state
  // anyway.
  virtual size_t DrainMonitor(const NotificationFilter& relevant) = 0;
};

// The real one: two NETLINK_ROUTE sockets, one for requests (blocking, answered in order) and one
// subscribed to RTMGRP_LINK, RTMGRP_IPV4_IFADDR, RTMGRP_IPV6_IFADDR, RTMGRP_IPV4_ROUTE and
// RTMGRP_IPV6_ROUTE (non-blocking, in the daemon's epoll loop). Route groups are included so a
// gateway route the kernel drops and re-adds (link down/up) is copied again.
class MnlRouteNetlink final : public RouteNetlink {
 public:
  static Result<std::unique_ptr<MnlRouteNetlink>> Open();
  ~MnlRouteNetlink() override;
  MnlRouteNetlink(const MnlRouteNetlink&) = delete;
  MnlRouteNetlink& operator=(const MnlRouteNetlink&) = delete;

  Result<std::vector<std::vector<uint8_t>>> Dump(const std::vector<uint8_t>& request) override;
  Result<void> Change(const std::vector<uint8_t>& request) override;
  [[nodiscard]] int monitor_fd() const override;
  size_t DrainMonitor(const NotificationFilter& relevant) override;

 private:
  MnlRouteNetlink() = default;
  // Sends `request` with our next sequence number and reads the answer up to NLMSG_DONE (dump:
  // its messages go to `out`) or the NLMSG_ERROR (ack: 0 is success, else the errno).
  // `interrupted` is set when a dump message carries NLM_F_DUMP_INTR (the dump raced a change).
  Result<void> Exchange(const std::vector<uint8_t>& request, bool dump,
                        std::vector<std::vector<uint8_t>>* out, bool* interrupted);

  mnl_socket* req_ = nullptr;
  mnl_socket* mon_ = nullptr;
  uint32_t seq_ = 0;
  std::vector<uint8_t> buf_;
};

}  // namespace mproxy::proxy
