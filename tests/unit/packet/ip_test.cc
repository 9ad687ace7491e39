#include "packet/ip.h"

#include <gtest/gtest.h>

#include <vector>

#include "tests/unit/packet/packet_test_util.h"

namespace mproxy::packet {
namespace {

using testing::FromHex;

ParseError ReasonOfParse(Bytes b, const IpParseOptions& o = {}) {
  auto r = ParseIp(b, o);
  return r ? ParseError::kNone : ReasonOf(r.error());
}

// A minimal IPv6 header (40 bytes) with `next` and `payload_len`, followed by `rest`.
std::vector<uint8_t> Ipv6(uint8_t next, std::vector<uint8_t> rest, int payload_len = -1) {
  std::vector<uint8_t> p = FromHex(
      "6000000000000000"
      "20010db8000000000000000000000001"
      "20010db8000000000000000000000002");
  const size_t len = payload_len < 0 ? rest.size() : static_cast<size_t>(payload_len);
  p[4] = static_cast<uint8_t>(len >> 8);
  p[5] = static_cast<uint8_t>(len);
  p[6] = next;
  p.insert(p.end(), rest.begin(), rest.end());
  return p;
}

TEST(IpTest, Ipv4Golden) {
  const auto pkt = FromHex(testing::kIpv4Syn);
  auto ip = ParseIp(pkt);
  ASSERT_TRUE(ip) << ip.error().message;
  EXPECT_EQ(ip->family, IpFamily::kV4);
  EXPECT_EQ(ip->src.ToString(), "198.18.0.1");
  EXPECT_EQ(ip->dst.ToString(), "198.18.0.2");
  EXPECT_EQ(ip->l4_protocol, kIpProtoTcp);
  EXPECT_EQ(ip->l4_offset, 20u);
  EXPECT_EQ(ip->l4_len, 40u);
  EXPECT_EQ(ip->trailer_len, 0u);
  EXPECT_FALSE(ip->fragment);
  EXPECT_TRUE(ip->l4_complete);
  EXPECT_FALSE(ip->length_from_buffer);
  EXPECT_TRUE(Ipv4HeaderChecksumOk(Bytes(pkt).first(20)));
}

TEST(IpTest, Ipv6GoldenWithHopByHopAndDestinationOptions) {
  const auto pkt = FromHex(testing::kIpv6ExtData);
  auto ip = ParseIp(pkt);
  ASSERT_TRUE(ip) << ip.error().message;
  EXPECT_EQ(ip->family, IpFamily::kV6);
  EXPECT_EQ(ip->src.ToString(), "2001:db8::1");
  EXPECT_EQ(ip->dst.ToString(), "2001:db8::2");
  EXPECT_EQ(ip->l4_protocol, kIpProtoTcp);
  EXPECT_EQ(ip->ipv6_ext_headers, 2);
  EXPECT_EQ(ip->l4_offset, 56u);
  EXPECT_EQ(ip->l4_len, 44u);
  EXPECT_TRUE(ip->l4_complete);
}

TEST(IpTest, EveryPrefixOfGoldenPacketsFailsCleanly) {
  for (auto hex : testing::AllGolden()) {
    const auto pkt = FromHex(hex);
    for (size_t n = 0; n < pkt.size(); ++n) {
      auto ip = ParseIp(Bytes(pkt).first(n));
      // Every prefix is shorter than the IP length field says: never accepted.
      ASSERT_FALSE(ip) << hex << " prefix " << n;
      ASSERT_EQ(ClassOf(ReasonOf(ip.error())), ParseErrorClass::kMalformedIp) << n;
    }
  }
}

TEST(IpTest, BadVersion) {
  auto pkt = FromHex(testing::kIpv4Syn);
  pkt[0] = 0x55;
  EXPECT_EQ(ReasonOfParse(pkt), ParseError::kIpBadVersion);
  EXPECT_EQ(ReasonOfParse({}), ParseError::kIpTruncated);
}

TEST(IpTest, Ipv4BadIhl) {
  auto pkt = FromHex(testing::kIpv4Syn);
  for (uint8_t ihl = 0; ihl < 5; ++ihl) {
    pkt[0] = static_cast<uint8_t>(0x40 | ihl);
    EXPECT_EQ(ReasonOfParse(pkt), ParseError::kIpv4BadIhl) << int{ihl};
  }
  // IHL 15 = 60 bytes: inside the 60-byte buffer but beyond the total length... equal here, so
  // the L4 part is empty; with a 40-byte buffer it is truncated.
  pkt[0] = 0x4f;
  auto ip = ParseIp(pkt);
  ASSERT_TRUE(ip);
  EXPECT_EQ(ip->l4_len, 0u);
  EXPECT_EQ(ReasonOfParse(Bytes(pkt).first(40)), ParseError::kIpTruncated);
}

TEST(IpTest, Ipv4TotalLength) {
  auto pkt = FromHex(testing::kIpv4Syn);
  // Shorter than the header.
  pkt[2] = 0;
  pkt[3] = 19;
  EXPECT_EQ(ReasonOfParse(pkt), ParseError::kIpv4BadTotalLength);
  // Longer than the buffer.
  pkt[3] = 61;
  EXPECT_EQ(ReasonOfParse(pkt), ParseError::kIpTruncated);
  // Zero in a small buffer: malformed (Linux only writes 0 above 64 KB).
  pkt[3] = 0;
  EXPECT_EQ(ReasonOfParse(pkt), ParseError::kIpv4BadTotalLength);
  // Shorter than the buffer: the rest is a trailer.
  pkt[3] = 50;
  auto ip = ParseIp(pkt);
  ASSERT_TRUE(ip);
  EXPECT_EQ(ip->l4_len, 30u);
  EXPECT_EQ(ip->trailer_len, 10u);
  // ... unless the packet is GSO: then the buffer is the packet.
  ip = ParseIp(pkt, {.gso = true});
  ASSERT_TRUE(ip);
  EXPECT_EQ(ip->l4_len, 40u);
  EXPECT_EQ(ip->trailer_len, 0u);
  EXPECT_TRUE(ip->length_from_buffer);
  pkt[3] = 0;
  ip = ParseIp(pkt, {.gso = true});
  ASSERT_TRUE(ip);
  EXPECT_EQ(ip->l4_len, 40u);
}

TEST(IpTest, Ipv4ZeroLengthAbove64K) {
  auto pkt = FromHex(testing::kIpv4Syn);
  pkt.resize(70000, 0xaa);
  pkt[2] = pkt[3] = 0;
  auto ip = ParseIp(pkt);
  ASSERT_TRUE(ip);
  EXPECT_TRUE(ip->length_from_buffer);
  EXPECT_EQ(ip->total_len(), 70000u);
}

TEST(IpTest, Ipv4Fragments) {
  auto pkt = FromHex(testing::kIpv4Syn);
  // MF.
  pkt[6] = 0x20;
  auto ip = ParseIp(pkt);
  ASSERT_TRUE(ip);
  EXPECT_TRUE(ip->fragment);
  EXPECT_FALSE(ip->l4_complete);
  // Offset only.
  pkt[6] = 0x00;
  pkt[7] = 0x01;
  ip = ParseIp(pkt);
  ASSERT_TRUE(ip);
  EXPECT_TRUE(ip->fragment);
  // DF alone is not a fragment.
  pkt[6] = 0x40;
  pkt[7] = 0;
  EXPECT_FALSE(ParseIp(pkt)->fragment);
}

TEST(IpTest, Ipv6PayloadLength) {
  auto pkt = Ipv6(6, std::vector<uint8_t>(20), 21);
  EXPECT_EQ(ReasonOfParse(pkt), ParseError::kIpTruncated);
  pkt = Ipv6(6, std::vector<uint8_t>(30), 20);
  auto ip = ParseIp(pkt);
  ASSERT_TRUE(ip);
  EXPECT_EQ(ip->l4_len, 20u);
  EXPECT_EQ(ip->trailer_len, 10u);
  // Zero payload length in a small packet is just an empty payload (no next header data).
  pkt = Ipv6(59, {}, 0);
  ip = ParseIp(pkt);
  ASSERT_TRUE(ip);
  EXPECT_FALSE(ip->l4_complete);
  // Jumbo / BIG TCP: zero with more than 64 KB behind it.
  pkt = Ipv6(6, std::vector<uint8_t>(70000), 0);
  ip = ParseIp(pkt);
  ASSERT_TRUE(ip);
  EXPECT_TRUE(ip->length_from_buffer);
  EXPECT_EQ(ip->l4_len, 70000u);
}

TEST(IpTest, Ipv6ExtensionHeaderWalk) {
  // Routing header (type 2, segments left 1) then AH (payload len 4 -> 24 bytes) then TCP.
  std::vector<uint8_t> rest = {51, 2, 2, 1};  // routing: next AH, len 2 -> 24 bytes
  rest.resize(24, 0);
  std::vector<uint8_t> ah = {6, 4};  // AH: next TCP, (4 + 2) * 4 = 24 bytes
  ah.resize(24, 0);
  rest.insert(rest.end(), ah.begin(), ah.end());
  rest.resize(rest.size() + 20, 0);
  auto ip = ParseIp(Ipv6(kIpv6Routing, rest));
  ASSERT_TRUE(ip) << ip.error().message;
  EXPECT_EQ(ip->l4_protocol, 6);
  EXPECT_EQ(ip->l4_offset, 40u + 24 + 24);
  EXPECT_EQ(ip->l4_len, 20u);
  EXPECT_EQ(ip->ipv6_segments_left, 1);
  EXPECT_EQ(ip->ipv6_ext_headers, 2);
}

TEST(IpTest, Ipv6EspAndNoNextHeaderStop) {
  auto ip = ParseIp(Ipv6(kIpv6Esp, std::vector<uint8_t>(32, 0xee)));
  ASSERT_TRUE(ip);
  EXPECT_EQ(ip->l4_protocol, kIpv6Esp);
  EXPECT_FALSE(ip->l4_complete);
  // Dest options then No Next Header: whatever follows is not parsed.
  std::vector<uint8_t> rest = {59, 0, 1, 4, 0, 0, 0, 0, 6, 6, 6, 6};
  ip = ParseIp(Ipv6(kIpv6DestOptions, rest));
  ASSERT_TRUE(ip);
  EXPECT_EQ(ip->l4_protocol, kIpv6NoNextHeader);
  EXPECT_FALSE(ip->l4_complete);
}

TEST(IpTest, Ipv6Fragments) {
  // First fragment with M set: L4 header present but the datagram is incomplete.
  std::vector<uint8_t> frag = {6, 0, 0x00, 0x01, 0, 0, 0, 1};
  frag.resize(28, 0);
  auto ip = ParseIp(Ipv6(kIpv6Fragment, frag));
  ASSERT_TRUE(ip);
  EXPECT_TRUE(ip->fragment);
  EXPECT_FALSE(ip->l4_complete);
  EXPECT_EQ(ip->l4_protocol, 6);
  // Non-first fragment: stop at once.
  frag[2] = 0x01;
  frag[3] = 0x00;
  ip = ParseIp(Ipv6(kIpv6Fragment, frag));
  ASSERT_TRUE(ip);
  EXPECT_TRUE(ip->fragment);
  EXPECT_FALSE(ip->l4_complete);
  EXPECT_EQ(ip->l4_offset, 48u);
  // Atomic fragment (RFC 6946): a whole packet.
  frag[2] = frag[3] = 0;
  ip = ParseIp(Ipv6(kIpv6Fragment, frag));
  ASSERT_TRUE(ip);
  EXPECT_FALSE(ip->fragment);
  EXPECT_TRUE(ip->l4_complete);
  // Fragment header cut short.
  EXPECT_EQ(ReasonOfParse(Ipv6(kIpv6Fragment, {6, 0, 0, 0})), ParseError::kIpv6BadExtHeader);
}

TEST(IpTest, Ipv6ExtensionOverrunsAndLoops) {
  // Length byte claims more than the payload.
  EXPECT_EQ(ReasonOfParse(Ipv6(kIpv6DestOptions, {6, 1, 0, 0, 0, 0, 0, 0})),
            ParseError::kIpv6BadExtHeader);
  // Only one byte of an extension header.
  EXPECT_EQ(ReasonOfParse(Ipv6(kIpv6Routing, {6})), ParseError::kIpv6BadExtHeader);
  // Zero bytes left where an extension header should be.
  EXPECT_EQ(ReasonOfParse(Ipv6(kIpv6DestOptions, {})), ParseError::kIpv6BadExtHeader);
  // AH too long.
  EXPECT_EQ(ReasonOfParse(Ipv6(kIpv6Ah, {6, 200, 0, 0, 0, 0, 0, 0})),
            ParseError::kIpv6BadExtHeader);
  // Payload length ends inside an extension header even though the buffer goes on.
  auto pkt = Ipv6(kIpv6DestOptions, {6, 0, 1, 4, 0, 0, 0, 0, 1, 2, 3, 4}, 4);
  EXPECT_EQ(ReasonOfParse(pkt), ParseError::kIpv6BadExtHeader);
  // Hop-by-Hop anywhere but first.
  EXPECT_EQ(ReasonOfParse(Ipv6(kIpv6DestOptions, {0, 0, 1, 4, 0, 0, 0, 0, 6, 0, 1, 4, 0, 0, 0, 0})),
            ParseError::kIpv6BadExtHeader);
  // A "loop": each header names the same kind again; the walk is bounded.
  std::vector<uint8_t> chain;
  for (int i = 0; i < 40; ++i) chain.insert(chain.end(), {60, 0, 1, 4, 0, 0, 0, 0});
  EXPECT_EQ(ReasonOfParse(Ipv6(kIpv6DestOptions, chain)), ParseError::kIpv6TooManyExtHeaders);
  // Exactly the cap is fine.
  chain.resize(8 * kMaxIpv6ExtHeaders);
  chain[chain.size() - 8] = 59;
  EXPECT_TRUE(ParseIp(Ipv6(kIpv6DestOptions, chain)));
}

TEST(IpTest, Ipv6EveryPrefixOfExtChain) {
  // DestOpts(8) -> Routing(8) -> AH(12) -> atomic Fragment(8) -> TCP(20).
  std::vector<uint8_t> rest = {
      43, 0, 1, 4, 0, 0, 0, 0,              // destination options, PadN
      51, 0, 0, 0, 0, 0, 0, 0,              // routing, segments left 0
      44, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,  // AH, (1 + 2) * 4 bytes
      6,  0, 0, 0, 0, 0, 0, 0,              // fragment, offset 0, M 0
  };
  rest.resize(rest.size() + 20);
  const auto full = Ipv6(kIpv6DestOptions, rest);
  auto ip = ParseIp(full);
  ASSERT_TRUE(ip) << ip.error().message;
  EXPECT_EQ(ip->l4_offset, 40u + 8 + 8 + 12 + 8);
  // Truncate the payload length (and the buffer) at every point.
  for (size_t n = 0; n < rest.size(); ++n) {
    auto cut = full;
    cut.resize(40 + n);
    cut[4] = static_cast<uint8_t>(n >> 8);
    cut[5] = static_cast<uint8_t>(n);
    auto r = ParseIp(cut);
    if (n < 36) {
      ASSERT_FALSE(r) << n;
      ASSERT_EQ(ReasonOf(r.error()), ParseError::kIpv6BadExtHeader) << n;
    } else {
      ASSERT_TRUE(r) << n;
      ASSERT_EQ(r->l4_len, n - 36);
    }
  }
}

}  // namespace
}  // namespace mproxy::packet
