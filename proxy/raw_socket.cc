#include "proxy/raw_socket.h"

#include <net/if.h>
#include <netinet/ip.h>
#include <sys/uio.h>

#include <cstring>

#include "proxy/log.h"

namespace mproxy::proxy {
namespace {

Result<UniqueFd> OpenRaw(int family, uint32_t mark) {
  const char* name = family == AF_INET ? "IPv4" : "IPv6";
  UniqueFd fd(::socket(family, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_RAW));
  if (!fd.valid()) {
    Error e = SysError(std::string("opening the ") + name + " raw socket");
    if (e.code == EPERM) e.message += " (needs root or CAP_NET_RAW)";
    return e;
  }
  if (family == AF_INET) {
    // Implied by IPPROTO_RAW, set anyway so the intent is visible: we send complete headers.
    const int one = 1;
    if (setsockopt(fd.get(), IPPROTO_IP, IP_HDRINCL, &one, sizeof(one)) < 0) {
      return SysError("IP_HDRINCL");
    }
  }
  if (setsockopt(fd.get(), SOL_SOCKET, SO_MARK, &mark, sizeof(mark)) < 0) {
    Error e = SysError(std::string("SO_MARK on the ") + name + " raw socket");
    if (e.code == EPERM) e.message += " (needs root or CAP_NET_ADMIN)";
    return e;
  }
  return fd;
}

}  // namespace

Result<RawDestination> ForgedDestination(packet::Bytes pkt, uint32_t ifindex) {
  packet::ByteReader r(pkt);
  const auto first = r.U8();
  if (!first) return MakeError("empty packet", EINVAL);
  RawDestination d;
  switch (*first >> 4) {
    case 4: {
      // IPv4: source address at offset 12, destination at 16.
      packet::ByteReader h(pkt);
      if (!h.Skip(12)) return MakeError("short IPv4 header", EINVAL);
      const auto src = h.Take(4);
      const auto dst = h.Take(4);
      if (!src || !dst || pkt.size() < 20) return MakeError("short IPv4 header", EINVAL);
      std::memcpy(d.source.data(), src->data(), 4);
      sockaddr_in sin{};
      sin.sin_family = AF_INET;
      std::memcpy(&sin.sin_addr, dst->data(), 4);
      d.family = AF_INET;
      std::memcpy(&d.addr, &sin, sizeof(sin));
      d.addr_len = sizeof(sin);
      return d;
    }
    case 6: {
      // IPv6: source address at offset 8, destination at 24.
      packet::ByteReader h(pkt);
      if (!h.Skip(8)) return MakeError("short IPv6 header", EINVAL);
      const auto src = h.Take(16);
      const auto dst = h.Take(16);
      if (!src || !dst) return MakeError("short IPv6 header", EINVAL);
      std::memcpy(d.source.data(), src->data(), 16);
      sockaddr_in6 sin6{};
      sin6.sin6_family = AF_INET6;
      std::memcpy(&sin6.sin6_addr, dst->data(), 16);
      // fe80::/10 needs a scope; the kernel refuses link-local destinations without one.
      if ((*dst)[0] == 0xfe && ((*dst)[1] & 0xc0) == 0x80) sin6.sin6_scope_id = ifindex;
      d.family = AF_INET6;
      std::memcpy(&d.addr, &sin6, sizeof(sin6));
      d.addr_len = sizeof(sin6);
      return d;
    }
    default:
      return MakeError("not an IP packet (version " + std::to_string(*first >> 4) + ")", EINVAL);
  }
}

Result<std::unique_ptr<RawSender>> RawSender::Open(const RawSenderOptions& options) {
  std::unique_ptr<RawSender> s(new RawSender());
  if (options.ipv4) {
    auto fd = OpenRaw(AF_INET, options.mark);
    if (!fd) return fd.error();
    s->v4_ = std::move(fd.value());
  }
  if (options.ipv6) {
    auto fd = OpenRaw(AF_INET6, options.mark);
    if (!fd) {
      // A host without IPv6 still works for IPv4; forged IPv6 packets are then counted.
      if (fd.error().code != EAFNOSUPPORT) return fd.error();
      MPROXY_LOG(kWarn) << fd.error().message << "; IPv6 forged packets will be counted as lost";
    } else {
      s->v6_ = std::move(fd.value());
    }
  }
  return s;
}

Result<void> RawSender::Send(const packet::ForgedPacket& pkt) {
  auto dest = ForgedDestination(pkt.bytes, pkt.ifindex);
  if (!dest) {
    counters_.Inc(RawCounter::kBadPacket);
    return dest.error();
  }
  const bool v4 = dest->family == AF_INET;
  const int fd = v4 ? v4_.get() : v6_.get();
  if (fd < 0) {
    counters_.Inc(RawCounter::kNoSocket);
    return MakeError(v4 ? "IPv4 raw socket not open" : "IPv6 raw socket not open", EAFNOSUPPORT);
  }

  iovec iov{const_cast<uint8_t*>(pkt.bytes.data()), pkt.bytes.size()};
  msghdr msg{};
  msg.msg_name = &dest->addr;
  msg.msg_namelen = dest->addr_len;
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  // Control buffer large enough for either pktinfo, aligned for cmsghdr. Always sent: even with
  // ifindex 0 the source address must reach the route lookup (see RawDestination::source).
  alignas(cmsghdr) std::array<uint8_t, CMSG_SPACE(sizeof(in6_pktinfo))> control{};
  msg.msg_control = control.data();
  cmsghdr* c = nullptr;
  if (v4) {
    msg.msg_controllen = CMSG_SPACE(sizeof(in_pktinfo));
    c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = IPPROTO_IP;
    c->cmsg_type = IP_PKTINFO;
    c->cmsg_len = CMSG_LEN(sizeof(in_pktinfo));
    in_pktinfo info{};
    info.ipi_ifindex = static_cast<int>(pkt.ifindex);
    // raw_sendmsg() takes ipi_spec_dst as the flow's source address (ip_cmsg_send: ipc->addr).
    std::memcpy(&info.ipi_spec_dst, dest->source.data(), 4);
    std::memcpy(CMSG_DATA(c), &info, sizeof(info));
  } else {
    msg.msg_controllen = CMSG_SPACE(sizeof(in6_pktinfo));
    c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = IPPROTO_IPV6;
    c->cmsg_type = IPV6_PKTINFO;
    c->cmsg_len = CMSG_LEN(sizeof(in6_pktinfo));
    in6_pktinfo info{};
    info.ipi6_ifindex = pkt.ifindex;
    // ip6_datagram_send_ctl() takes ipi6_addr as fl6.saddr (after checking it is local).
    std::memcpy(&info.ipi6_addr, dest->source.data(), 16);
    std::memcpy(CMSG_DATA(c), &info, sizeof(info));
  }
  ssize_t rc;
  do {
    rc = sendmsg(fd, &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
  } while (rc < 0 && errno == EINTR);
  if (rc < 0) {
    counters_.Inc(RawCounter::kSendErrors);
    return SysError(v4 ? "sending a forged IPv4 packet" : "sending a forged IPv6 packet");
  }
  counters_.Inc(v4 ? RawCounter::kSent4 : RawCounter::kSent6);
  counters_.Inc(RawCounter::kSentBytes, pkt.bytes.size());
  return {};
}

}  // namespace mproxy::proxy
