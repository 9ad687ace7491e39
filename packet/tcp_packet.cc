#include "packet/tcp_packet.h"

#include <algorithm>

#include "packet/checksum.h"

namespace mproxy::packet {
namespace {

Error Fail(ParseError e) { return MakeParseError(e); }

constexpr size_t kTcpChecksumOffset = 16;
constexpr size_t kIpv4LengthOffset = 2;
constexpr size_t kIpv4ChecksumOffset = 10;
constexpr size_t kIpv4SrcOffset = 12;
constexpr size_t kIpv6LengthOffset = 4;
constexpr size_t kIpv6SrcOffset = 8;

// Addresses as they appear in an IP header (`hdr` starts at the IP header).
Bytes SrcBytes(Bytes hdr, IpFamily f) {
  return f == IpFamily::kV4 ? hdr.subspan(kIpv4SrcOffset, 4) : hdr.subspan(kIpv6SrcOffset, 16);
}
Bytes DstBytes(Bytes hdr, IpFamily f) {
  return f == IpFamily::kV4 ? hdr.subspan(kIpv4SrcOffset + 4, 4)
                            : hdr.subspan(kIpv6SrcOffset + 16, 16);
}

uint32_t PseudoSum(IpFamily f, Bytes src, Bytes dst, size_t l4_len) {
  const auto len = static_cast<uint32_t>(l4_len);
  return f == IpFamily::kV4 ? checksum::PseudoHeaderSumV4(src, dst, kIpProtoTcp, len)
                            : checksum::PseudoHeaderSumV6(src, dst, kIpProtoTcp, len);
}

// Sum of a header with its 16-bit checksum field (at even offset `field`) taken as zero.
uint32_t SumWithoutField(Bytes hdr, size_t field, uint32_t initial = 0) {
  return checksum::Sum(hdr.subspan(field + 2), checksum::Sum(hdr.first(field), initial));
}

uint16_t Get16(Bytes b, size_t off) {
  uint16_t v = 0;
  (void)Load16(b, off, v);
  return v;
}

// The IP length field for a new length, following the policy in tcp_packet.h.
Result<uint16_t> LengthField(const IpView& ip, uint16_t old_field, size_t new_len, size_t old_len) {
  if (ip.length_from_buffer && new_len == old_len) return old_field;  // byte-exact re-emit
  if (new_len <= 0xffff) return static_cast<uint16_t>(new_len);
  if (ip.length_from_buffer) return uint16_t{0};  // Linux BIG TCP: length only in the buffer
  return Fail(ParseError::kLengthOverflow);
}

// Rewrites bytes [off, off + data.size()) of the TCP header in place and, for a valid checksum,
// updates it over the even-aligned words covering the change (RFC 1624).
void PatchTcpBytes(TcpPacket& p, size_t off, Bytes data) {
  MutableBytes tcp = p.buffer.subspan(p.tcp_offset, p.original_tcp_header_len());
  const size_t begin = off & ~size_t{1};
  const size_t end = std::min(tcp.size(), (off + data.size() + 1) & ~size_t{1});
  const uint32_t old_sum = checksum::Sum(tcp.subspan(begin, end - begin));
  std::copy(data.begin(), data.end(), tcp.begin() + static_cast<ptrdiff_t>(off));
  if (p.csum_not_ready) return;  // FinishInPlace() writes a full checksum
  const uint32_t new_sum = checksum::Sum(tcp.subspan(begin, end - begin));
  // The edit never touches the checksum field itself (offsets 16..17 are not patchable).
  const uint16_t csum = checksum::ReplaceSum(Get16(tcp, kTcpChecksumOffset), old_sum, new_sum);
  (void)Store16(tcp, kTcpChecksumOffset, csum);
  p.tcp.checksum = csum;
}

}  // namespace

Result<TcpPacket> ParseTcpPacket(MutableBytes pkt, const PacketMeta& meta) {
  auto ip = ParseIp(pkt, IpParseOptions{.gso = meta.gso});
  if (!ip) return ip.error();
  if (ip->fragment) return Fail(ParseError::kIpFragment);
  if (ip->l4_protocol != kIpProtoTcp || !ip->l4_complete) return Fail(ParseError::kNotTcp);
  if (meta.csum_not_ready && ip->ipv6_segments_left != 0) {
    return Fail(ParseError::kIpv6RoutingInFlight);
  }
  const Bytes l4 = Bytes(pkt).subspan(ip->l4_offset, ip->l4_len);
  auto tcp = ParseTcpHeader(l4);
  if (!tcp) return tcp.error();
  auto options = TcpOptionList::Parse(l4.subspan(kTcpMinHeader, tcp->header_len() - kTcpMinHeader));
  if (!options) return options.error();

  TcpPacket p;
  p.buffer = pkt;
  p.ip = *ip;
  p.tcp = *tcp;
  p.options = *options;
  p.tcp_offset = ip->l4_offset;
  p.payload_offset = ip->l4_offset + tcp->header_len();
  p.payload_len = ip->l4_len - tcp->header_len();
  p.csum_not_ready = meta.csum_not_ready;
  p.gso = meta.gso;
  return p;
}

Result<TcpPacket> ParseTcpPacket(MutableBytes pkt) { return ParseTcpPacket(pkt, PacketMeta{}); }

Result<size_t> EmitTcpHeaders(const TcpPacket& p, MutableBytes head) {
  const IpFamily fam = p.ip.family;
  if (p.ip.src.family() != fam || p.ip.dst.family() != fam) return Fail(ParseError::kFamilyChanged);
  const size_t opt_len = p.options.EncodedSize();
  if (opt_len > kTcpMaxOptionBytes) return Fail(ParseError::kOptionsTooLong);
  const size_t tcp_len = kTcpMinHeader + opt_len;
  const size_t ip_len = p.tcp_offset;
  if (ip_len + tcp_len > head.size()) return Fail(ParseError::kHeadTooLarge);
  const Bytes old = p.buffer;
  const Bytes old_ip = old.first(ip_len);
  const bool addresses_changed = !std::ranges::equal(SrcBytes(old_ip, fam), p.ip.src.bytes()) ||
                                 !std::ranges::equal(DstBytes(old_ip, fam), p.ip.dst.bytes());
  // RFC 8200 §8.1: with segments left, the pseudo-header destination is not the header's.
  if (p.ip.ipv6_segments_left != 0 && (addresses_changed || p.csum_not_ready)) {
    return Fail(ParseError::kIpv6RoutingInFlight);
  }
  const size_t new_l4_len = tcp_len + p.payload_len;

  // IP header: the original bytes, then lengths and addresses.
  MutableBytes ip_out = head.first(ip_len);
  std::copy(old_ip.begin(), old_ip.end(), ip_out.begin());
  if (fam == IpFamily::kV4) {
    auto field =
        LengthField(p.ip, Get16(old_ip, kIpv4LengthOffset), ip_len + new_l4_len, p.ip.total_len());
    if (!field) return field.error();
    (void)Store16(ip_out, kIpv4LengthOffset, *field);
    std::ranges::copy(p.ip.src.bytes(), ip_out.begin() + kIpv4SrcOffset);
    std::ranges::copy(p.ip.dst.bytes(), ip_out.begin() + kIpv4SrcOffset + 4);
    // RFC 1624 over the whole header: exact for the changed words, and a no-op (field kept
    // bit-exact) when nothing changed.
    const uint16_t csum = checksum::ReplaceSum(Get16(old_ip, kIpv4ChecksumOffset),
                                               SumWithoutField(old_ip, kIpv4ChecksumOffset),
                                               SumWithoutField(ip_out, kIpv4ChecksumOffset));
    (void)Store16(ip_out, kIpv4ChecksumOffset, csum);
  } else {
    // RFC 8200 §3: payload length counts extension headers too.
    auto field = LengthField(p.ip, Get16(old_ip, kIpv6LengthOffset),
                             ip_len - kIpv6Header + new_l4_len, ip_len - kIpv6Header + p.ip.l4_len);
    if (!field) return field.error();
    (void)Store16(ip_out, kIpv6LengthOffset, *field);
    std::ranges::copy(p.ip.src.bytes(), ip_out.begin() + kIpv6SrcOffset);
    std::ranges::copy(p.ip.dst.bytes(), ip_out.begin() + kIpv6SrcOffset + 16);
  }

  // TCP header with checksum 0, then the checksum.
  MutableBytes tcp_out = head.subspan(ip_len, tcp_len);
  ByteWriter w(tcp_out);
  TcpHeader h = p.tcp;
  h.data_offset = static_cast<uint8_t>(tcp_len / 4);
  h.checksum = 0;
  WriteTcpHeader(h, w);
  p.options.Emit(w);
  if (!w.ok() || w.offset() != tcp_len) return Fail(ParseError::kOutputTooSmall);

  const uint32_t new_sum =
      checksum::Sum(tcp_out, PseudoSum(fam, p.ip.src.bytes(), p.ip.dst.bytes(), new_l4_len));
  uint16_t csum = 0;
  if (p.csum_not_ready) {
    // Full checksum: the field held only the pseudo-header sum (pitfall 1).
    csum = checksum::Finish(checksum::Sum(p.payload(), new_sum));
  } else {
    const Bytes old_tcp = old.subspan(p.tcp_offset, p.original_tcp_header_len());
    const uint32_t old_sum =
        SumWithoutField(old_tcp, kTcpChecksumOffset,
                        PseudoSum(fam, SrcBytes(old_ip, fam), DstBytes(old_ip, fam), p.ip.l4_len));
    // The payload moves by a multiple of 4 bytes, so its contribution is unchanged and cancels.
    csum = checksum::ReplaceSum(Get16(old_tcp, kTcpChecksumOffset), old_sum, new_sum);
  }
  (void)Store16(tcp_out, kTcpChecksumOffset, csum);
  return ip_len + tcp_len;
}

Result<void> EmitTcpPacket(const TcpPacket& p, PacketOut& out) {
  auto n = EmitTcpHeaders(p, MutableBytes(out.head));
  if (!n) return n.error();
  out.verdict = Verdict::kAccept;
  out.rewritten = true;
  out.head_len = *n;
  out.tail_offset = p.payload_offset;
  return {};
}

void PatchSeq(TcpPacket& p, SubflowSeq seq) {
  uint8_t b[4];
  (void)Store32(b, 0, seq.value());
  PatchTcpBytes(p, 4, b);
  p.tcp.seq = seq.value();
}

void PatchAck(TcpPacket& p, SubflowSeq ack) {
  uint8_t b[4];
  (void)Store32(b, 0, ack.value());
  PatchTcpBytes(p, 8, b);
  p.tcp.ack = ack.value();
}

void PatchWindow(TcpPacket& p, uint16_t window) {
  uint8_t b[2];
  (void)Store16(b, 0, window);
  PatchTcpBytes(p, 14, b);
  p.tcp.window = window;
}

bool PatchOptionData(TcpPacket& p, size_t index, Bytes data) {
  if (index >= p.options.size()) return false;
  if (p.original_tcp_header_len() != kTcpMinHeader + p.options.byte_size()) return false;
  size_t off = kTcpMinHeader;
  for (size_t i = 0; i < index; ++i) off += p.options[i].raw.size();
  const TcpOptionView v = p.options[index];
  const Bytes in_buffer = Bytes(p.buffer).subspan(p.tcp_offset + off, v.raw.size());
  // The list must still describe the bytes in the buffer at this position.
  if (!std::ranges::equal(in_buffer.first(std::min<size_t>(2, v.raw.size())),
                          v.raw.first(std::min<size_t>(2, v.raw.size())))) {
    return false;
  }
  if (!p.options.OverwriteData(index, data)) return false;
  PatchTcpBytes(p, off + (v.raw.size() - v.data.size()), data);
  return true;
}

bool PatchMss(TcpPacket& p, uint16_t mss) {
  const auto i = p.options.Find(tcp_opt::kMss);
  if (!i) return false;
  const uint8_t b[2] = {static_cast<uint8_t>(mss >> 8), static_cast<uint8_t>(mss)};
  return PatchOptionData(p, *i, b);
}

void FinishInPlace(TcpPacket& p, PacketOut& out) {
  if (p.csum_not_ready) {
    const uint16_t csum = FullTcpChecksum(p);
    (void)Store16(p.buffer, p.tcp_offset + kTcpChecksumOffset, csum);
    p.tcp.checksum = csum;
  }
  out.verdict = Verdict::kAccept;
  out.patched_in_place = true;
}

uint16_t FullTcpChecksum(const TcpPacket& p) {
  const Bytes buf = p.buffer;
  const Bytes ip = buf.first(p.tcp_offset);
  const IpFamily fam = p.ip.family;
  const uint32_t pseudo = PseudoSum(fam, SrcBytes(ip, fam), DstBytes(ip, fam), p.ip.l4_len);
  const Bytes tcp = buf.subspan(p.tcp_offset, p.original_tcp_header_len());
  return checksum::Finish(
      checksum::Sum(p.payload(), SumWithoutField(tcp, kTcpChecksumOffset, pseudo)));
}

bool TcpChecksumOk(Bytes pkt) {
  auto ip = ParseIp(pkt);
  if (!ip || ip->l4_protocol != kIpProtoTcp || !ip->l4_complete) return false;
  const Bytes hdr = pkt.first(ip->l4_offset);
  const uint32_t pseudo =
      PseudoSum(ip->family, SrcBytes(hdr, ip->family), DstBytes(hdr, ip->family), ip->l4_len);
  return checksum::IsValidSum(checksum::Sum(pkt.subspan(ip->l4_offset, ip->l4_len), pseudo));
}

Result<std::vector<uint8_t>> BuildTcpPacket(const FourTuple& t, const TcpHeader& h,
                                            const TcpOptionList& options, Bytes payload,
                                            uint8_t ttl) {
  const IpFamily fam = t.src.family();
  if (t.dst.family() != fam) return Fail(ParseError::kFamilyChanged);
  const size_t opt_len = options.EncodedSize();
  if (opt_len > kTcpMaxOptionBytes) return Fail(ParseError::kOptionsTooLong);
  const size_t ip_len = fam == IpFamily::kV4 ? kIpv4MinHeader : kIpv6Header;
  const size_t tcp_len = kTcpMinHeader + opt_len;
  const size_t l4_len = tcp_len + payload.size();
  if (ip_len + l4_len > 0xffff) return Fail(ParseError::kLengthOverflow);

  std::vector<uint8_t> out(ip_len + l4_len);
  ByteWriter w(out);
  if (fam == IpFamily::kV4) {
    w.U8(0x45);                                     // version 4, IHL 5
    w.U8(0);                                        // DSCP/ECN
    w.U16(static_cast<uint16_t>(ip_len + l4_len));  // total length
    w.U16(0);                                       // ID: DF set, never fragmented (RFC 6864)
    w.U16(0x4000);                                  // DF
    w.U8(ttl);
    w.U8(kIpProtoTcp);
    w.U16(0);  // header checksum, below
  } else {
    w.U32(0x60000000);  // version 6, traffic class 0, flow label 0
    w.U16(static_cast<uint16_t>(l4_len));
    w.U8(kIpProtoTcp);
    w.U8(ttl);
  }
  w.Append(t.src.bytes());
  w.Append(t.dst.bytes());
  TcpHeader th = h;
  th.sport = t.sport;
  th.dport = t.dport;
  th.data_offset = static_cast<uint8_t>(tcp_len / 4);
  th.checksum = 0;
  WriteTcpHeader(th, w);
  options.Emit(w);
  w.Append(payload);
  if (!w.ok()) return Fail(ParseError::kOutputTooSmall);

  MutableBytes all(out);
  if (fam == IpFamily::kV4) {
    (void)Store16(all, kIpv4ChecksumOffset, checksum::Finish(checksum::Sum(all.first(ip_len))));
  }
  const uint32_t pseudo = PseudoSum(fam, t.src.bytes(), t.dst.bytes(), l4_len);
  (void)Store16(all, ip_len + kTcpChecksumOffset,
                checksum::Finish(checksum::Sum(all.subspan(ip_len), pseudo)));
  return out;
}

}  // namespace mproxy::packet
