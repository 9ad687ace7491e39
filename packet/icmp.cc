#include "packet/icmp.h"

#include <array>

#include "packet/checksum.h"

namespace mproxy::packet {
namespace {

constexpr size_t kIcmpChecksumOffset = 2;
constexpr size_t kIpv4ChecksumOffset = 10;
constexpr size_t kIpv4SrcOffset = 12;
constexpr size_t kIpv6SrcOffset = 8;

IcmpParse Malformed(std::string_view why) {
  IcmpParse r;
  r.kind = IcmpKind::kMalformed;
  r.why = why;
  return r;
}

// The quoted IPv4 header (RFC 792: "Internet Header + 64 bits of Original Data Datagram").
// Returns false with `why` set when it cannot be used; `other` when it is not about TCP.
bool ParseQuoteV4(Bytes q, IcmpPtb& m, bool& other, std::string_view& why) {
  ByteReader r(q);
  const auto ver_ihl = r.U8();
  (void)r.Skip(5);  // DSCP/ECN, total length, identification
  const auto frag = r.U16();
  (void)r.Skip(1);  // TTL
  const auto proto = r.U8();
  (void)r.Skip(2);  // header checksum
  const auto src = r.Take(4);
  const auto dst = r.Take(4);
  if (!r.ok()) return (why = "quoted IPv4 header truncated"), false;
  if ((*ver_ihl >> 4) != 4) return (why = "quoted header is not IPv4"), false;
  const size_t ihl = size_t{*ver_ihl & 0x0fu} * 4;
  if (ihl < kIpv4MinHeader) return (why = "quoted IPv4 IHL < 5"), false;
  if (ihl > q.size()) return (why = "quoted IPv4 options truncated"), false;
  // A later fragment quotes no TCP header (RFC 791 §3.2: offset in 8-byte units).
  if (*proto != kIpProtoTcp || (*frag & 0x1fffu) != 0) return (other = true), false;
  m.quote_ip_len = ihl;
  m.quoted.src = *IpAddress::V4(*src);
  m.quoted.dst = *IpAddress::V4(*dst);
  return true;
}

bool ParseQuoteV6(Bytes q, IcmpPtb& m, bool& other, std::string_view& why) {
  ByteReader r(q);
  const auto ver = r.U8();
  (void)r.Skip(5);  // traffic class, flow label, payload length
  const auto next = r.U8();
  (void)r.Skip(1);  // hop limit
  const auto src = r.Take(16);
  const auto dst = r.Take(16);
  if (!r.ok()) return (why = "quoted IPv6 header truncated"), false;
  if ((*ver >> 4) != 6) return (why = "quoted header is not IPv6"), false;
  if (*next != kIpProtoTcp) return (other = true), false;  // incl. extension headers (see .h)
  m.quote_ip_len = kIpv6Header;
  m.quoted.src = *IpAddress::V6(*src);
  m.quoted.dst = *IpAddress::V6(*dst);
  return true;
}

uint32_t PseudoSum(const IcmpPtb& m) {
  if (m.family() == IpFamily::kV4) return 0;  // ICMPv4 has no pseudo-header (RFC 792)
  return checksum::PseudoHeaderSumV6(m.outer.src.bytes(), m.outer.dst.bytes(), kIpProtoIcmpv6,
                                     static_cast<uint32_t>(m.icmp_len));
}

}  // namespace

std::string_view Name(IcmpKind k) {
  switch (k) {
    case IcmpKind::kNotIcmp:
      return "not-icmp";
    case IcmpKind::kOther:
      return "other";
    case IcmpKind::kMalformed:
      return "malformed";
    case IcmpKind::kPtbOtherProtocol:
      return "ptb-other-protocol";
    case IcmpKind::kPacketTooBig:
      return "packet-too-big";
  }
  return "?";
}

IcmpParse ParseIcmpPtb(Bytes pkt) {
  IcmpParse res;
  auto ip = ParseIp(pkt);
  if (!ip || !ip->l4_complete) return res;  // kNotIcmp: the TCP path's business, or nobody's
  const bool v4 = ip->family == IpFamily::kV4;
  if (ip->l4_protocol != (v4 ? kIpProtoIcmp : kIpProtoIcmpv6)) return res;
  res.kind = IcmpKind::kOther;
  // The ICMPv6 pseudo-header holds the final destination (RFC 8200 §8.1); one still in a routing
  // header is not ours to check.
  if (!v4 && ip->ipv6_segments_left != 0) return Malformed("IPv6 routing header in flight");

  IcmpPtb& m = res.ptb;
  m.outer = *ip;
  m.icmp_offset = ip->l4_offset;
  m.icmp_len = ip->l4_len;
  ByteReader r(pkt.subspan(m.icmp_offset, m.icmp_len));
  const auto type = r.U8();
  const auto code = r.U8();
  if (!r.ok()) return Malformed("ICMP header truncated");
  if (v4 ? (*type != kIcmpv4DestUnreachable || *code != kIcmpv4FragNeeded)
         : *type != kIcmpv6PacketTooBig) {
    return res;  // kOther
  }
  (void)r.Skip(2);  // checksum
  if (v4) {
    (void)r.Skip(2);  // unused (RFC 1191 §4)
    const auto mtu = r.U16();
    if (mtu) m.mtu = *mtu;
  } else {
    // RFC 4443 §3.2: Code is 0 and is ignored by the receiver, like Linux does.
    const auto mtu = r.U32();
    if (mtu) m.mtu = *mtu;
  }
  if (!r.ok()) return Malformed("ICMP header truncated");

  m.quote_offset = m.icmp_offset + kIcmpHeader;
  const Bytes quote = pkt.subspan(m.quote_offset, m.icmp_len - kIcmpHeader);
  bool other = false;
  std::string_view why;
  if (!(v4 ? ParseQuoteV4(quote, m, other, why) : ParseQuoteV6(quote, m, other, why))) {
    if (other) {
      res.kind = IcmpKind::kPtbOtherProtocol;
      return res;
    }
    return Malformed(why);
  }
  m.quote_tcp_offset = m.quote_offset + m.quote_ip_len;
  m.quote_tcp_len = quote.size() - m.quote_ip_len;
  if (m.quote_tcp_len < kQuotedL4Bytes) return Malformed("quoted TCP header < 8 bytes");
  ByteReader t(quote.subspan(m.quote_ip_len));
  const auto sport = t.U16();
  const auto dport = t.U16();
  const auto seq = t.U32();
  if (!t.ok()) return Malformed("quoted TCP header < 8 bytes");  // (cannot happen: checked above)
  m.quoted.sport = *sport;
  m.quoted.dport = *dport;
  m.seq = *seq;
  res.kind = IcmpKind::kPacketTooBig;
  return res;
}

uint16_t IcmpChecksum(Bytes pkt, const IcmpPtb& m) {
  const Bytes msg = pkt.subspan(m.icmp_offset, m.icmp_len);
  uint32_t s = checksum::Sum(msg.first(kIcmpChecksumOffset), PseudoSum(m));
  s = checksum::Sum(msg.subspan(kIcmpChecksumOffset + 2), s);  // the field itself as zero
  return checksum::Finish(s);
}

bool IcmpChecksumOk(Bytes pkt, const IcmpPtb& m) {
  const Bytes msg = pkt.subspan(m.icmp_offset, m.icmp_len);
  return checksum::IsValidSum(checksum::Sum(msg, PseudoSum(m)));
}

bool RewriteIcmpPtb(MutableBytes pkt, IcmpPtb& m, const QuoteRewrite& r) {
  const bool v4 = m.family() == IpFamily::kV4;
  if (r.quoted.src.family() != m.family() || r.quoted.dst.family() != m.family()) return false;
  if (v4 && r.mtu > 0xffff) return false;
  if (m.icmp_offset + m.icmp_len > pkt.size() ||
      m.quote_tcp_offset + kQuotedL4Bytes > m.icmp_offset + m.icmp_len) {
    return false;  // not the view of these bytes
  }
  const MutableBytes quote = pkt.subspan(m.quote_offset, m.quote_ip_len);
  const size_t addr_off = v4 ? kIpv4SrcOffset : kIpv6SrcOffset;
  const size_t addr_len = v4 ? 8 : 32;
  const MutableBytes addrs = quote.subspan(addr_off, addr_len);
  if (v4) {
    // RFC 1624: the quoted header's checksum follows the address change, valid or not.
    std::array<uint8_t, 8> next{};
    ByteWriter w(next);
    (void)w.Append(r.quoted.src.bytes());
    (void)w.Append(r.quoted.dst.bytes());
    uint16_t csum = 0;
    (void)Load16(quote, kIpv4ChecksumOffset, csum);
    csum = checksum::UpdateRange(csum, addrs, next);
    (void)Store16(quote, kIpv4ChecksumOffset, csum);
    ByteWriter a(addrs);
    (void)a.Append(next);
  } else {
    ByteWriter a(addrs);
    (void)a.Append(r.quoted.src.bytes());
    (void)a.Append(r.quoted.dst.bytes());
  }
  (void)Store16(pkt, m.quote_tcp_offset, r.quoted.sport);
  (void)Store16(pkt, m.quote_tcp_offset + 2, r.quoted.dport);
  (void)Store32(pkt, m.quote_tcp_offset + 4, r.seq);
  if (v4) {
    (void)Store16(pkt, m.icmp_offset + 6, static_cast<uint16_t>(r.mtu));
  } else {
    (void)Store32(pkt, m.icmp_offset + 4, r.mtu);
  }
  (void)Store16(pkt, m.icmp_offset + kIcmpChecksumOffset, 0);
  (void)Store16(pkt, m.icmp_offset + kIcmpChecksumOffset, IcmpChecksum(pkt, m));
  m.quoted = r.quoted;
  m.seq = r.seq;
  m.mtu = r.mtu;
  return true;
}

bool ClearIpv4Df(MutableBytes ip) {
  uint16_t frag = 0, csum = 0;
  if (ip.size() < kIpv4MinHeader || (ip[0] >> 4) != 4 || !Load16(ip, 6, frag) ||
      !(frag & 0x4000u)) {
    return false;
  }
  const uint16_t cleared = static_cast<uint16_t>(frag & ~0x4000u);
  (void)Load16(ip, kIpv4ChecksumOffset, csum);
  (void)Store16(ip, kIpv4ChecksumOffset, checksum::IncrementalUpdate(csum, frag, cleared));
  (void)Store16(ip, 6, cleared);
  return true;
}

}  // namespace mproxy::packet
