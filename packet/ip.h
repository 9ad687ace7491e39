// IPv4 (RFC 791) and IPv6 (RFC 8200) header parsing up to the L4 header. Nothing here trusts a
// length field: every one is checked against the buffer before it is used, and a value that does
// not parse is reported (ParseError) rather than guessed at.
#pragma once

#include <cstddef>
#include <cstdint>

#include "packet/address.h"
#include "packet/bytes.h"
#include "packet/parse_error.h"
#include "packet/result.h"

namespace mproxy::packet {

inline constexpr uint8_t kIpProtoTcp = 6;
inline constexpr size_t kIpv4MinHeader = 20;
inline constexpr size_t kIpv6Header = 40;
inline constexpr size_t kMaxIpv4Total = 65535;
// A real packet carries a handful at most; the cap bounds the walk (each header is >= 8 bytes, so
// the buffer bounds it too, but there is no reason to walk thousands of them).
inline constexpr size_t kMaxIpv6ExtHeaders = 16;

// IPv6 Next Header values that are extension headers (RFC 8200 §4, IANA), the set Linux's
// ipv6_ext_hdr() knows.
inline constexpr uint8_t kIpv6HopByHop = 0;
inline constexpr uint8_t kIpv6Routing = 43;
inline constexpr uint8_t kIpv6Fragment = 44;
inline constexpr uint8_t kIpv6Esp = 50;
inline constexpr uint8_t kIpv6Ah = 51;
inline constexpr uint8_t kIpv6NoNextHeader = 59;
inline constexpr uint8_t kIpv6DestOptions = 60;

struct IpParseOptions {
  // The packet is a GSO/GRO super-packet (NFQA_SKB_GSO): the stack built it, it has no link-layer
  // trailer, and its IP length field may not describe it (0 above 64 KB on kernels with BIG TCP,
  // see iph_set_totlen()). The buffer length is then authoritative whenever the field is 0 or
  // smaller than the buffer. Without this flag a length field of 0 is accepted only when the
  // buffer is larger than any length the field can express, and shorter fields mean a trailer.
  bool gso = false;
};

// What the IP layer says about a packet. Offsets are from the start of the buffer.
struct IpView {
  IpFamily family = IpFamily::kV4;
  IpAddress src;
  IpAddress dst;
  uint8_t l4_protocol = 0;  // IPv4 protocol, or the last IPv6 Next Header that is not an extension
  size_t l4_offset = 0;     // IP header (+ IPv6 extension headers) length
  size_t l4_len = 0;        // L4 bytes according to the IP length (trailer excluded)
  size_t trailer_len = 0;   // buffer bytes after the IP packet (e.g. Ethernet padding)
  // The IP length field did not give the length (0, or shorter than the buffer of a GSO packet);
  // l4_len was taken from the buffer. Re-emitting an unchanged length keeps the original field.
  bool length_from_buffer = false;
  // An IPv4 fragment (MF set or offset != 0) or an IPv6 Fragment header that is not atomic
  // (RFC 6946). For a non-first fragment l4_protocol/l4_offset describe where the walk stopped.
  bool fragment = false;
  // The L4 header and data start at l4_offset and are all here: not a fragment, and not ESP (50)
  // or No Next Header (59), whose contents cannot be parsed.
  bool l4_complete = false;
  uint16_t ipv6_ext_headers = 0;  // number of extension headers walked
  // Segments Left of an IPv6 Routing header. Non-zero means the TCP pseudo-header uses the final
  // destination inside the routing header, not the destination field (RFC 8200 §8.1).
  uint8_t ipv6_segments_left = 0;

  [[nodiscard]] size_t total_len() const { return l4_offset + l4_len; }
};

// Parses the IP header(s) at the start of `pkt`, dispatching on the version nibble.
[[nodiscard]] Result<IpView> ParseIp(Bytes pkt, const IpParseOptions& opts = {});

// Full IPv4 header checksum check (RFC 791 §3.1). `header` is exactly IHL*4 bytes.
[[nodiscard]] bool Ipv4HeaderChecksumOk(Bytes header);

}  // namespace mproxy::packet
