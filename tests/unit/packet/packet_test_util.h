// Golden packets and helpers shared by the packet/ unit tests. The golden packets are built by
// tests/fuzz/make_corpus.py (independent Python checksum code) and were checked with tshark
// (checksums "correct", options decoded as intended); they are also the fuzz seed corpus.
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

#include "packet/bytes.h"
#include "packet/checksum.h"

namespace mproxy::packet::testing {

inline std::vector<uint8_t> FromHex(std::string_view hex) {
  auto nibble = [](char c) -> uint8_t {
    if (c >= '0' && c <= '9') return static_cast<uint8_t>(c - '0');
    if (c >= 'a' && c <= 'f') return static_cast<uint8_t>(c - 'a' + 10);
    return static_cast<uint8_t>(c - 'A' + 10);
  };
  std::vector<uint8_t> out;
  for (size_t i = 0; i + 1 < hex.size(); i += 2) {
    out.push_back(static_cast<uint8_t>((nibble(hex[i]) << 4) | nibble(hex[i + 1])));
  }
  return out;
}

// 198.18.0.1:40000 -> 198.18.0.2:80 SYN, options MSS 1460, SACK-permitted, TS, NOP, WS 7.
inline constexpr std::string_view kIpv4Syn =
    "4500003c1234400040069c60c6120001c61200029c4000500102030400000000a002faf00a390000020405b404"
    "02080a0a0b0c0d0000000001030307";
// SYN with MSS, WS, SACK-permitted, TS, MP_CAPABLE, NOP, experimental kind 254, EOL + padding.
inline constexpr std::string_view kIpv4SynMptcp =
    "450000481234400040069c54c6120001c61200029c410050fffffff000000000d002faf0be6c0000020405b403"
    "03070402080a00000001000000001e04018101fe04abcd00000000";
// ACK with NOP NOP SACK(2 blocks) NOP NOP TS DSS: 40 option bytes.
inline constexpr std::string_view kIpv4SackDss =
    "450000501234400040069c4cc6120002c612000100509c401111111122222222f01001f5d27200000101051222"
    "2223002222240022222500222226000101080a00000007000000081e08200111223344";
// 2001:db8::1 -> 2001:db8::2, Hop-by-Hop(PadN) + Destination Options(PadN), TS, 12-byte payload.
inline constexpr std::string_view kIpv6ExtData =
    "60000000003c004020010db800000000000000000000000120010db8000000000000000000000002"
    "3c00010400000000060001040000000001bbc350800000007fffffff8018040018ad00000101080a0000"
    "0064000000c868656c6c6f2c206d70746370";
// IPv4 data segment, 19-byte (odd) payload.
inline constexpr std::string_view kIpv4Data =
    "450000471234400040069c55c6120001c61200029c400050010203050a0b0c0e801801f61a1900000101080a"
    "0a0b0c0e01010101474554202f20485454502f312e300d0a0d0a21";

inline std::vector<std::string_view> AllGolden() {
  return {kIpv4Syn, kIpv4SynMptcp, kIpv4SackDss, kIpv6ExtData, kIpv4Data};
}

// Independent reference checksum: byte-at-a-time RFC 1071, no shared code with packet/.
inline uint16_t ReferenceChecksum(const std::vector<uint8_t>& data) {
  uint64_t s = 0;
  for (size_t i = 0; i < data.size(); i += 2) {
    s += (uint32_t{data[i]} << 8) | (i + 1 < data.size() ? data[i + 1] : 0);
  }
  while (s >> 16) s = (s & 0xffff) + (s >> 16);
  return static_cast<uint16_t>(~s);
}

// Reference TCP checksum validity of a whole IPv4/IPv6 packet without extension headers other
// than the ones listed by `l4_offset`. Built from the raw bytes, independent of packet/ parsing.
inline bool ReferenceTcpChecksumOk(const std::vector<uint8_t>& pkt, size_t l4_offset,
                                   size_t l4_len) {
  std::vector<uint8_t> ph;
  if ((pkt[0] >> 4) == 4) {
    ph.insert(ph.end(), pkt.begin() + 12, pkt.begin() + 20);
    ph.push_back(0);
    ph.push_back(6);
    ph.push_back(static_cast<uint8_t>(l4_len >> 8));
    ph.push_back(static_cast<uint8_t>(l4_len));
  } else {
    ph.insert(ph.end(), pkt.begin() + 8, pkt.begin() + 40);
    for (int i = 3; i >= 0; --i) ph.push_back(static_cast<uint8_t>(l4_len >> (8 * i)));
    ph.insert(ph.end(), {0, 0, 0, 6});
  }
  ph.insert(ph.end(), pkt.begin() + static_cast<ptrdiff_t>(l4_offset),
            pkt.begin() + static_cast<ptrdiff_t>(l4_offset + l4_len));
  return ReferenceChecksum(ph) == 0;
}

}  // namespace mproxy::packet::testing
