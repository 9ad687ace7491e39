#include "packet/ip.h"

#include "packet/checksum.h"

namespace mproxy::packet {
namespace {

Error Fail(ParseError e) { return MakeParseError(e); }

// RFC 791 §3.1.
Result<IpView> ParseIpv4(Bytes pkt, const IpParseOptions& opts) {
  ByteReader r(pkt);
  const auto ver_ihl = r.U8();
  (void)r.Skip(1);  // DSCP/ECN
  const auto total = r.U16();
  (void)r.Skip(2);  // identification
  const auto frag = r.U16();
  (void)r.Skip(1);  // TTL
  const auto proto = r.U8();
  (void)r.Skip(2);  // header checksum
  const auto src = r.Take(4);
  const auto dst = r.Take(4);
  if (!r.ok()) return Fail(ParseError::kIpTruncated);

  const size_t ihl = size_t{*ver_ihl & 0x0fu} * 4;
  if (ihl < kIpv4MinHeader) return Fail(ParseError::kIpv4BadIhl);
  if (ihl > pkt.size()) return Fail(ParseError::kIpTruncated);

  IpView v;
  v.family = IpFamily::kV4;
  v.src = *IpAddress::V4(*src);
  v.dst = *IpAddress::V4(*dst);
  v.l4_protocol = *proto;
  v.l4_offset = ihl;

  size_t total_len = *total;
  if (opts.gso && (total_len == 0 || total_len < pkt.size())) {
    // GSO super-packet: the field is 0 (BIG TCP, > 64 KB) or not the packet's length.
    total_len = pkt.size();
    v.length_from_buffer = total_len != *total;
  } else if (total_len == 0 && pkt.size() > kMaxIpv4Total) {
    // Linux writes 0 when the length does not fit the field (iph_set_totlen()); a buffer larger
    // than the field can express cannot be a trailer, so its length is the packet's.
    total_len = pkt.size();
    v.length_from_buffer = true;
  }
  if (total_len < ihl) return Fail(ParseError::kIpv4BadTotalLength);
  if (total_len > pkt.size()) return Fail(ParseError::kIpTruncated);
  v.l4_len = total_len - ihl;
  v.trailer_len = pkt.size() - total_len;

  // MF flag or a non-zero fragment offset: this is part of a datagram (RFC 791 §3.2).
  v.fragment = (*frag & 0x3fffu) != 0;
  v.l4_complete = !v.fragment;
  return v;
}

// RFC 8200 §4: walk the extension header chain. Every header's length is checked against the
// payload before the walk moves on; the chain cannot loop because every step advances >= 8 bytes.
Result<IpView> ParseIpv6(Bytes pkt, const IpParseOptions& opts) {
  ByteReader r(pkt);
  (void)r.Skip(4);  // version, traffic class, flow label
  const auto payload = r.U16();
  const auto next = r.U8();
  (void)r.Skip(1);  // hop limit
  const auto src = r.Take(16);
  const auto dst = r.Take(16);
  if (!r.ok()) return Fail(ParseError::kIpTruncated);

  IpView v;
  v.family = IpFamily::kV6;
  v.src = *IpAddress::V6(*src);
  v.dst = *IpAddress::V6(*dst);

  size_t payload_len = *payload;
  const size_t buffer_payload = pkt.size() - kIpv6Header;
  if (opts.gso && (payload_len == 0 || payload_len < buffer_payload)) {
    payload_len = buffer_payload;
    v.length_from_buffer = payload_len != *payload;
  } else if (payload_len == 0 && buffer_payload > 0xffff) {
    // Jumbo payload: the length lives in a Hop-by-Hop option (RFC 2675) or, for Linux BIG TCP
    // packets, only in the buffer. Either way the buffer is the packet.
    payload_len = buffer_payload;
    v.length_from_buffer = true;
  }
  if (payload_len > buffer_payload) return Fail(ParseError::kIpTruncated);
  const size_t end = kIpv6Header + payload_len;
  v.trailer_len = pkt.size() - end;

  uint8_t nh = *next;
  size_t off = kIpv6Header;
  for (;;) {
    size_t hdr_len = 0;
    switch (nh) {
      case kIpv6HopByHop:
        // RFC 8200 §4.1: Hop-by-Hop may only follow the IPv6 header directly.
        if (off != kIpv6Header) return Fail(ParseError::kIpv6BadExtHeader);
        [[fallthrough]];
      case kIpv6Routing:
      case kIpv6DestOptions: {
        uint8_t len8 = 0;
        if (end - off < 2) return Fail(ParseError::kIpv6BadExtHeader);
        len8 = pkt[off + 1];
        hdr_len = (size_t{len8} + 1) * 8;  // RFC 8200 §4.3: 8-octet units, not counting the first 8
        if (nh == kIpv6Routing && end - off >= 4) v.ipv6_segments_left = pkt[off + 3];
        break;
      }
      case kIpv6Ah: {
        if (end - off < 2) return Fail(ParseError::kIpv6BadExtHeader);
        hdr_len = (size_t{pkt[off + 1]} + 2) * 4;  // RFC 4302 §2.2: 4-octet units, minus 2
        break;
      }
      case kIpv6Fragment: {
        hdr_len = 8;  // RFC 8200 §4.5: fixed size
        if (end - off < hdr_len) return Fail(ParseError::kIpv6BadExtHeader);
        uint16_t off_m = 0;
        (void)Load16(pkt, off + 2, off_m);
        const bool more = (off_m & 1u) != 0;
        const uint16_t frag_offset = static_cast<uint16_t>(off_m >> 3);
        // An atomic fragment (offset 0, M 0; RFC 6946) is a whole packet.
        if (more || frag_offset != 0) v.fragment = true;
        if (frag_offset != 0) {
          // Later fragments carry no L4 header: stop here.
          v.l4_protocol = pkt[off];
          v.l4_offset = off + hdr_len;
          v.l4_len = end - v.l4_offset;
          v.l4_complete = false;
          return v;
        }
        break;
      }
      default:
        // ESP (50), No Next Header (59), and every upper-layer protocol end the walk.
        v.l4_protocol = nh;
        v.l4_offset = off;
        v.l4_len = end - off;
        v.l4_complete = !v.fragment && nh != kIpv6Esp && nh != kIpv6NoNextHeader;
        return v;
    }
    if (hdr_len > end - off) return Fail(ParseError::kIpv6BadExtHeader);
    if (++v.ipv6_ext_headers > kMaxIpv6ExtHeaders) return Fail(ParseError::kIpv6TooManyExtHeaders);
    nh = pkt[off];
    off += hdr_len;
  }
}

}  // namespace

Result<IpView> ParseIp(Bytes pkt, const IpParseOptions& opts) {
  if (pkt.empty()) return Fail(ParseError::kIpTruncated);
  switch (pkt[0] >> 4) {
    case 4:
      return ParseIpv4(pkt, opts);
    case 6:
      return ParseIpv6(pkt, opts);
    default:
      return Fail(ParseError::kIpBadVersion);
  }
}

bool Ipv4HeaderChecksumOk(Bytes header) { return checksum::IsValidSum(checksum::Sum(header)); }

}  // namespace mproxy::packet
