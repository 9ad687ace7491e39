#include "proxy/route_netlink.h"

#include <linux/rtnetlink.h>
#include <sys/socket.h>
#include <time.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "proxy/rtnetlink.h"
#include "proxy/sys.h"

namespace mproxy::proxy {
namespace {

// Large enough for one dump datagram (the kernel fills up to ~32 KiB, more with big pages).
constexpr size_t kRecvBuffer = size_t{64} * 1024;

}  // namespace

Result<std::unique_ptr<MnlRouteNetlink>> MnlRouteNetlink::Open() {
  std::unique_ptr<MnlRouteNetlink> s(new MnlRouteNetlink());
  s->buf_.resize(kRecvBuffer);
  s->req_ = mnl_socket_open2(NETLINK_ROUTE, SOCK_CLOEXEC);
  if (s->req_ == nullptr) return SysError("opening the rtnetlink socket");
  if (mnl_socket_bind(s->req_, 0, MNL_SOCKET_AUTOPID) < 0) {
    return SysError("binding the rtnetlink socket");
  }
  // A request socket that hears nothing back would hang the daemon's loop: bound the wait.
  timeval tv{};
  tv.tv_sec = 5;
  if (setsockopt(mnl_socket_get_fd(s->req_), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0) {
    return SysError("SO_RCVTIMEO on the rtnetlink socket");
  }
  s->mon_ = mnl_socket_open2(NETLINK_ROUTE, SOCK_CLOEXEC | SOCK_NONBLOCK);
  if (s->mon_ == nullptr) return SysError("opening the rtnetlink monitor socket");
  const unsigned groups =
      RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR | RTMGRP_IPV4_ROUTE | RTMGRP_IPV6_ROUTE;
  if (mnl_socket_bind(s->mon_, groups, MNL_SOCKET_AUTOPID) < 0) {
    return SysError("subscribing to rtnetlink link/address/route notifications");
  }
  s->seq_ = static_cast<uint32_t>(::time(nullptr));
  return s;
}

MnlRouteNetlink::~MnlRouteNetlink() {
  if (req_ != nullptr) mnl_socket_close(req_);
  if (mon_ != nullptr) mnl_socket_close(mon_);
}

int MnlRouteNetlink::monitor_fd() const { return mon_ != nullptr ? mnl_socket_get_fd(mon_) : -1; }

size_t MnlRouteNetlink::DrainMonitor(const NotificationFilter& relevant) {
  size_t n = 0;
  for (;;) {
    const ssize_t len = mnl_socket_recvfrom(mon_, buf_.data(), buf_.size());
    if (len < 0) {
      if (errno == EINTR) continue;
      // ENOBUFS: notifications were lost; the caller re-reads everything, so count one.
      if (errno == ENOBUFS) {
        ++n;
        continue;
      }
      return n;  // EAGAIN: drained
    }
    for (packet::Bytes m :
         rtnl::SplitMessages(packet::Bytes(buf_.data(), static_cast<size_t>(len)))) {
      if (!relevant || relevant(m)) ++n;
    }
  }
}

Result<void> MnlRouteNetlink::Exchange(const std::vector<uint8_t>& request, bool dump,
                                       std::vector<std::vector<uint8_t>>* out, bool* interrupted) {
  std::vector<uint8_t> msg = request;
  if (msg.size() < sizeof(nlmsghdr)) return MakeError("rtnetlink: request too short", EINVAL);
  const uint32_t seq = ++seq_;
  nlmsghdr h;
  std::memcpy(&h, msg.data(), sizeof(h));
  h.nlmsg_seq = seq;
  std::memcpy(msg.data(), &h, sizeof(h));
  if (mnl_socket_sendto(req_, msg.data(), msg.size()) < 0) return SysError("rtnetlink send");
  const uint32_t portid = mnl_socket_get_portid(req_);
  for (;;) {
    const ssize_t len = mnl_socket_recvfrom(req_, buf_.data(), buf_.size());
    if (len < 0) {
      if (errno == EINTR) continue;
      return SysError("rtnetlink receive");
    }
    for (packet::Bytes m :
         rtnl::SplitMessages(packet::Bytes(buf_.data(), static_cast<size_t>(len)))) {
      nlmsghdr mh;
      std::memcpy(&mh, m.data(), sizeof(mh));
      // Answers to an earlier request that timed out are skipped, never taken for ours.
      if (mh.nlmsg_seq != seq || mh.nlmsg_pid != portid) continue;
      if ((mh.nlmsg_flags & NLM_F_DUMP_INTR) != 0 && interrupted != nullptr) *interrupted = true;
      const rtnl::ReplyStatus st = rtnl::StatusOf(m);
      if (st.error) {
        if (*st.error == 0) return {};
        return SysError(dump ? "rtnetlink dump" : "rtnetlink request", *st.error);
      }
      if (st.done) return {};
      if (dump && out != nullptr) out->emplace_back(m.begin(), m.end());
    }
  }
}

Result<std::vector<std::vector<uint8_t>>> MnlRouteNetlink::Dump(
    const std::vector<uint8_t>& request) {
  // The kernel flags a dump that raced a change (NLM_F_DUMP_INTR): it may miss or repeat entries,
  // and a route missing from it would be deleted from our table copy. Dump again.
  constexpr int kAttempts = 4;
  for (int attempt = 1;; ++attempt) {
    std::vector<std::vector<uint8_t>> out;
    bool interrupted = false;
    if (auto r = Exchange(request, true, &out, &interrupted); !r) return r.error();
    if (!interrupted) return out;
    if (attempt == kAttempts) {
      return MakeError(
          "rtnetlink dump: interrupted by changes " + std::to_string(kAttempts) + " times in a row",
          EINTR);
    }
  }
}

Result<void> MnlRouteNetlink::Change(const std::vector<uint8_t>& request) {
  return Exchange(request, false, nullptr, nullptr);
}

}  // namespace mproxy::proxy
