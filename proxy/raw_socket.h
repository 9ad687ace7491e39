// Sends the packets engines forge (MP_JOIN SYNs, ADD_ADDR/REMOVE_ADDR ACKs, FASTCLOSE, subflow
// FINs) as complete IP packets through raw sockets. Every socket carries SO_MARK = the skip mark,
// so our own iptables rules let these packets through instead of queueing them back to us
// (iptables/rule_plan.h: "(mark & skip_mark) == skip_mark -> RETURN").
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <array>
#include <cstdint>
#include <memory>
#include <string_view>

#include "packet/bytes.h"
#include "packet/counters.h"
#include "packet/engine.h"
#include "packet/result.h"
#include "proxy/packet_io.h"
#include "proxy/sys.h"

namespace mproxy::proxy {

enum class RawCounter : size_t {
  kSent4,       // IPv4 packets sent
  kSent6,       // IPv6 packets sent
  kSentBytes,   // bytes sent (both families)
  kBadPacket,   // not an IPv4/IPv6 packet (too short, unknown version nibble)
  kNoSocket,    // family disabled (--no-ipv6) or its socket could not be opened
  kSendErrors,  // sendmsg() failed (no route, EMSGSIZE, socket buffer full, ...)
  kCount
};
inline constexpr std::array<std::string_view, static_cast<size_t>(RawCounter::kCount)>
    kRawCounterNames{"RawSent4",     "RawSent6",    "RawSentBytes",
                     "RawBadPacket", "RawNoSocket", "RawSendErrors"};
using RawCounters = CounterSet<RawCounter, kRawCounterNames>;

// Where a forged packet goes: family from the version nibble, destination and source from the IP
// header. Pure (tested without sockets). IPv6 link-local destinations get the scope id `ifindex`.
struct RawDestination {
  int family = 0;  // AF_INET / AF_INET6
  sockaddr_storage addr{};
  socklen_t addr_len = 0;
  // The header's source address (4 or 16 bytes used). With IP_HDRINCL the kernel's route lookup
  // does not read the header, so Send() passes it in IP_PKTINFO/IPV6_PKTINFO: that is what makes
  // the `from <address> lookup <table>` rules (proxy/policy_routing.h) route the packet.
  std::array<uint8_t, 16> source{};
};
Result<RawDestination> ForgedDestination(packet::Bytes pkt, uint32_t ifindex);

struct RawSenderOptions {
  uint32_t mark = 0x4d50;  // SO_MARK; must match the rules' skip mark
  bool ipv4 = true;
  bool ipv6 = true;
};

class RawSender final : public PacketSender {
 public:
  // Opens one IPPROTO_RAW socket per enabled family (IP_HDRINCL: we supply the whole header).
  // Needs CAP_NET_RAW (sockets) and CAP_NET_ADMIN (SO_MARK).
  static Result<std::unique_ptr<RawSender>> Open(const RawSenderOptions& options);

  // Sends one packet with an IP_PKTINFO / IPV6_PKTINFO control message carrying the header's
  // source address (ipi_spec_dst / ipi6_addr: the route lookup then sees the source, so policy
  // routing by source applies) and pkt.ifindex (0: any; else the egress interface is pinned, no
  // per-interface socket needed). The source must be one of ours (forged packets are peer-bound):
  // the kernel refuses a foreign one (EINVAL / ENETUNREACH, counted as a send error).
  // Non-blocking: a full socket buffer is an error like any other (counted; TCP recovers a lost
  // forged packet).
  Result<void> Send(const packet::ForgedPacket& pkt) override;
  void ForEachCounter(const CounterVisitor& visit) const override { counters_.ForEach(visit); }
  [[nodiscard]] const RawCounters& counters() const { return counters_; }

 private:
  RawSender() = default;
  UniqueFd v4_, v6_;
  RawCounters counters_;
};

}  // namespace mproxy::proxy
