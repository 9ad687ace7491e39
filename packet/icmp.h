// ICMP "fragmentation needed" (ICMPv4 type 3 code 4, RFC 792 + RFC 1191 §4) and ICMPv6 "packet
// too big" (type 2, RFC 4443 §3.2, RFC 8201) messages about a TCP segment: a bounds-checked view
// of the outer IP header, the ICMP header with its MTU field, and the quoted ("invoking") packet's
// IP header plus the first 8 bytes of its TCP header (ports and sequence number: all RFC 792
// guarantees; RFC 1812 §4.3.2.3 and RFC 4443 §2.4(c) allow more, which is kept as it is).
//
// The quote is a truncated packet: its IP length field describes the original, not the bytes
// here, so it is parsed on its own rules (ParseIp would call it truncated). Only what PMTU
// discovery needs is read: for IPv4 the header (IHL honoured) of a first fragment, for IPv6 the
// fixed header directly followed by TCP (our own segments never carry extension headers; a quote
// with one is reported as kPtbOtherProtocol and passed on unchanged).
//
// The rewrite (RewriteIcmpPtb) edits the quote in place — addresses, ports, sequence number —
// updates the quoted IPv4 header checksum incrementally (RFC 1624: a quote whose checksum was wrong
// stays wrong), sets the MTU field and recomputes the ICMP checksum (ICMPv6 over the pseudo-header,
// RFC 4443 §2.3). The caller checks IcmpChecksumOk() first: a message with a bad checksum is never
// given a valid one. The quoted TCP checksum is left alone: it covers a whole segment that is not
// here, and neither RFC 1191 nor Linux's tcp_v4_err()/tcp_v6_err() look at it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "packet/address.h"
#include "packet/bytes.h"
#include "packet/ip.h"

namespace mproxy::packet {

inline constexpr uint8_t kIpProtoIcmp = 1;     // RFC 792
inline constexpr uint8_t kIpProtoIcmpv6 = 58;  // RFC 4443
inline constexpr uint8_t kIcmpv4DestUnreachable = 3;
inline constexpr uint8_t kIcmpv4FragNeeded = 4;  // code of type 3 (RFC 1191 §4)
inline constexpr uint8_t kIcmpv6PacketTooBig = 2;
inline constexpr size_t kIcmpHeader = 8;     // type, code, checksum, 4 bytes (unused/MTU)
inline constexpr size_t kQuotedL4Bytes = 8;  // RFC 792: "the first 64 bits of the data"
// RFC 8200 §5: every IPv6 link carries 1280 bytes; Linux ignores a smaller PTB MTU (tcp_v6_err()).
inline constexpr uint32_t kIpv6MinMtu = 1280;

enum class IcmpKind : uint8_t {
  kNotIcmp,           // not ICMP/ICMPv6 (or an IP fragment, or not a parseable IP packet)
  kOther,             // ICMP of another type/code
  kMalformed,         // frag-needed / packet-too-big whose ICMP header or quote is unusable
  kPtbOtherProtocol,  // frag-needed / packet-too-big about something other than a TCP segment
  kPacketTooBig,      // frag-needed / packet-too-big about a TCP segment: `IcmpPtb` is valid
};
[[nodiscard]] std::string_view Name(IcmpKind k);

// Offsets are from the start of the packet buffer.
struct IcmpPtb {
  IpView outer;
  size_t icmp_offset = 0;       // == outer.l4_offset
  size_t icmp_len = 0;          // ICMP message bytes (outer IP length; a link trailer excluded)
  uint32_t mtu = 0;             // IPv4: the 16-bit next-hop MTU (0 from a pre-RFC 1191 router)
  size_t quote_offset = 0;      // the quoted IP header
  size_t quote_ip_len = 0;      // its length (IHL * 4, or 40)
  size_t quote_tcp_offset = 0;  // the quoted TCP header
  size_t quote_tcp_len = 0;     // quoted TCP bytes present (>= 8)
  FourTuple quoted;             // as quoted: the segment's source -> destination
  uint32_t seq = 0;             // the segment's sequence number

  [[nodiscard]] IpFamily family() const { return outer.family; }
};

struct IcmpParse {
  IcmpKind kind = IcmpKind::kNotIcmp;
  IcmpPtb ptb;           // valid when kind == kPacketTooBig
  std::string_view why;  // for kMalformed: what was wrong (static text)
};

// Classifies `pkt` (a whole IP packet) and, for a frag-needed / packet-too-big about a TCP segment,
// fills the view. Never reads outside `pkt`.
[[nodiscard]] IcmpParse ParseIcmpPtb(Bytes pkt);

// The ICMP checksum `pkt` should carry for message `m` (ICMPv6: with the pseudo-header of the
// outer addresses, RFC 4443 §2.3), computed from scratch with the field taken as zero.
[[nodiscard]] uint16_t IcmpChecksum(Bytes pkt, const IcmpPtb& m);
[[nodiscard]] bool IcmpChecksumOk(Bytes pkt, const IcmpPtb& m);

struct QuoteRewrite {
  FourTuple quoted;  // the new quoted source -> destination (same family as the message)
  uint32_t seq = 0;
  uint32_t mtu = 0;  // the new MTU field (IPv4: must fit 16 bits)
};

// Applies `r` to message `m` in `pkt` (parsed by ParseIcmpPtb from these bytes) and recomputes
// the ICMP checksum; `m` is updated to match. False, with `pkt` untouched, when the family
// differs or the MTU does not fit the field.
[[nodiscard]] bool RewriteIcmpPtb(MutableBytes pkt, IcmpPtb& m, const QuoteRewrite& r);

// Clears DF in the IPv4 header at the start of `ip` (RFC 791 §3.1 flags) and updates its header
// checksum (RFC 1624). False (nothing changed) when it is not IPv4 or DF was not set.
bool ClearIpv4Df(MutableBytes ip);

}  // namespace mproxy::packet
