// ICMP frag-needed / packet-too-big view and rewrite (packet/icmp.h). Golden messages come from
// tests/fuzz/make_corpus.py (its own checksum code); rewritten checksums are verified with the
// byte-at-a-time reference of packet_test_util.h.
#include "packet/icmp.h"

#include <gtest/gtest.h>

#include "packet/checksum.h"
#include "tests/unit/packet/packet_test_util.h"

namespace mproxy::packet {
namespace {

using testing::FromHex;
using testing::ReferenceChecksum;

// 198.18.9.1 -> 198.18.0.1 frag needed (MTU 1400) quoting 198.18.0.1:40000 -> 198.18.0.2:5201
// seq 0x01020305: IP header + 8 bytes of TCP.
constexpr std::string_view kIcmp4Quote8 =
    "45c00038432100004001a1bdc6120901c6120001030442eb00000578450005dc12344000400696c0c6120001c6"
    "1200029c40145101020305";
// 2001:db8::9 -> 2001:db8::1 packet too big (MTU 1280) quoting [2001:db8::1]:40000 ->
// [2001:db8::2]:5201 seq 0x80000000.
constexpr std::string_view kIcmp6Quote8 =
    "6000000000383a4020010db800000000000000000000000920010db80000000000000000000000010200a53d00"
    "00050060000000058c064020010db800000000000000000000000120010db80000000000000000000000029c40"
    "145180000000";
constexpr std::string_view kIcmp4Echo =
    "45c00020432100004001a1d5c6120901c61200010800192d0001000170696e67";

IpAddress Addr(const char* s) { return *IpAddress::Parse(s); }

// Independent ICMP checksum check: v4 over the message, v6 with the RFC 4443 §2.3 pseudo-header.
bool ReferenceIcmpOk(const std::vector<uint8_t>& pkt) {
  if ((pkt[0] >> 4) == 4) {
    const size_t ihl = size_t{pkt[0] & 0xfu} * 4;
    return ReferenceChecksum(std::vector<uint8_t>(pkt.begin() + ihl, pkt.end())) == 0;
  }
  std::vector<uint8_t> ph(pkt.begin() + 8, pkt.begin() + 40);
  const size_t len = pkt.size() - 40;
  for (int i = 3; i >= 0; --i) ph.push_back(static_cast<uint8_t>(len >> (8 * i)));
  ph.insert(ph.end(), {0, 0, 0, 58});
  ph.insert(ph.end(), pkt.begin() + 40, pkt.end());
  return ReferenceChecksum(ph) == 0;
}

TEST(IcmpPtb, ParsesIpv4FragNeeded) {
  auto pkt = FromHex(kIcmp4Quote8);
  IcmpParse r = ParseIcmpPtb(pkt);
  ASSERT_EQ(r.kind, IcmpKind::kPacketTooBig) << r.why;
  EXPECT_EQ(r.ptb.family(), IpFamily::kV4);
  EXPECT_EQ(r.ptb.outer.src, Addr("198.18.9.1"));
  EXPECT_EQ(r.ptb.outer.dst, Addr("198.18.0.1"));
  EXPECT_EQ(r.ptb.mtu, 1400u);
  EXPECT_EQ(r.ptb.quote_offset, 28u);
  EXPECT_EQ(r.ptb.quote_tcp_offset, 48u);
  EXPECT_EQ(r.ptb.quote_tcp_len, 8u);
  EXPECT_EQ(r.ptb.quoted, (FourTuple{Addr("198.18.0.1"), Addr("198.18.0.2"), 40000, 5201}));
  EXPECT_EQ(r.ptb.seq, 0x01020305u);
  EXPECT_TRUE(IcmpChecksumOk(pkt, r.ptb));
  EXPECT_EQ(IcmpChecksum(pkt, r.ptb), 0x42eb);
}

TEST(IcmpPtb, ParsesIpv6PacketTooBig) {
  auto pkt = FromHex(kIcmp6Quote8);
  IcmpParse r = ParseIcmpPtb(pkt);
  ASSERT_EQ(r.kind, IcmpKind::kPacketTooBig) << r.why;
  EXPECT_EQ(r.ptb.family(), IpFamily::kV6);
  EXPECT_EQ(r.ptb.mtu, 1280u);
  EXPECT_EQ(r.ptb.quoted, (FourTuple{Addr("2001:db8::1"), Addr("2001:db8::2"), 40000, 5201}));
  EXPECT_EQ(r.ptb.seq, 0x80000000u);
  EXPECT_TRUE(IcmpChecksumOk(pkt, r.ptb));
  EXPECT_EQ(IcmpChecksum(pkt, r.ptb), 0xa53d);
}

TEST(IcmpPtb, RewriteIpv4KeepsEverythingElseAndFixesChecksums) {
  auto pkt = FromHex(kIcmp4Quote8);
  const auto orig = pkt;
  IcmpParse r = ParseIcmpPtb(pkt);
  ASSERT_EQ(r.kind, IcmpKind::kPacketTooBig);
  const FourTuple t{Addr("198.18.7.7"), Addr("198.18.0.2"), 41000, 5201};
  ASSERT_TRUE(RewriteIcmpPtb(pkt, r.ptb, QuoteRewrite{t, 0xdeadbeef, 1372}));
  // Golden: quote addresses/ports/seq, its header checksum (RFC 1624), MTU, ICMP checksum.
  EXPECT_EQ(pkt, FromHex("45c00038432100004001a1bdc6120901c61200010304a5880000055c450005dc1234"
                         "400040068fbac6120707c6120002a0281451deadbeef"));
  IcmpParse again = ParseIcmpPtb(pkt);
  ASSERT_EQ(again.kind, IcmpKind::kPacketTooBig);
  EXPECT_EQ(again.ptb.quoted, t);
  EXPECT_EQ(again.ptb.seq, 0xdeadbeefu);
  EXPECT_EQ(again.ptb.mtu, 1372u);
  EXPECT_TRUE(ReferenceIcmpOk(pkt));
  // The outer header is untouched; the quoted IPv4 header checksum is valid again.
  EXPECT_TRUE(std::equal(pkt.begin(), pkt.begin() + 20, orig.begin()));
  EXPECT_EQ(ReferenceChecksum(std::vector<uint8_t>(pkt.begin() + 28, pkt.begin() + 48)), 0);
  // TTL, length, identification of the quote kept.
  EXPECT_TRUE(std::equal(pkt.begin() + 28, pkt.begin() + 38, orig.begin() + 28));
}

TEST(IcmpPtb, RewriteIpv6UsesThePseudoHeader) {
  auto pkt = FromHex(kIcmp6Quote8);
  IcmpParse r = ParseIcmpPtb(pkt);
  ASSERT_EQ(r.kind, IcmpKind::kPacketTooBig);
  const FourTuple t{Addr("2001:db8::77"), Addr("2001:db8::2"), 40001, 5201};
  ASSERT_TRUE(RewriteIcmpPtb(pkt, r.ptb, QuoteRewrite{t, 7, 1280}));
  EXPECT_TRUE(ReferenceIcmpOk(pkt));
  IcmpParse again = ParseIcmpPtb(pkt);
  ASSERT_EQ(again.kind, IcmpKind::kPacketTooBig);
  EXPECT_EQ(again.ptb.quoted, t);
  EXPECT_EQ(again.ptb.seq, 7u);
}

TEST(IcmpPtb, RewriteRefusesAnotherFamilyOrA17BitMtu) {
  auto pkt = FromHex(kIcmp4Quote8);
  const auto orig = pkt;
  IcmpParse r = ParseIcmpPtb(pkt);
  ASSERT_EQ(r.kind, IcmpKind::kPacketTooBig);
  const FourTuple v6{Addr("2001:db8::1"), Addr("2001:db8::2"), 1, 2};
  EXPECT_FALSE(RewriteIcmpPtb(pkt, r.ptb, QuoteRewrite{v6, 1, 1280}));
  EXPECT_FALSE(RewriteIcmpPtb(pkt, r.ptb, QuoteRewrite{r.ptb.quoted, 1, 0x10000}));
  EXPECT_EQ(pkt, orig);
}

TEST(IcmpPtb, OtherMessagesAreClassified) {
  EXPECT_EQ(ParseIcmpPtb(FromHex(kIcmp4Echo)).kind, IcmpKind::kOther);
  EXPECT_EQ(ParseIcmpPtb(FromHex(testing::kIpv4Data)).kind, IcmpKind::kNotIcmp);
  // Frag needed quoting UDP.
  auto udp = FromHex(kIcmp4Quote8);
  udp[28 + 9] = 17;
  EXPECT_EQ(ParseIcmpPtb(udp).kind, IcmpKind::kPtbOtherProtocol);
  // A later fragment of a TCP segment.
  auto frag = FromHex(kIcmp4Quote8);
  frag[28 + 7] = 0x10;
  EXPECT_EQ(ParseIcmpPtb(frag).kind, IcmpKind::kPtbOtherProtocol);
  // Destination unreachable with another code.
  auto port = FromHex(kIcmp4Quote8);
  port[21] = 3;
  EXPECT_EQ(ParseIcmpPtb(port).kind, IcmpKind::kOther);
  // A quote of the wrong family.
  auto fam = FromHex(kIcmp4Quote8);
  fam[28] = 0x65;
  EXPECT_EQ(ParseIcmpPtb(fam).kind, IcmpKind::kMalformed);
  // IHL below 5 in the quote.
  auto ihl = FromHex(kIcmp4Quote8);
  ihl[28] = 0x44;
  EXPECT_EQ(ParseIcmpPtb(ihl).kind, IcmpKind::kMalformed);
}

TEST(IcmpPtb, BadChecksumIsDetected) {
  auto pkt = FromHex(kIcmp6Quote8);
  pkt.back() ^= 1;
  IcmpParse r = ParseIcmpPtb(pkt);
  ASSERT_EQ(r.kind, IcmpKind::kPacketTooBig);
  EXPECT_FALSE(IcmpChecksumOk(pkt, r.ptb));
}

// Every prefix of a valid message is refused (the IP length no longer matches) or, once the IP
// length is patched to the prefix, parses only when the quote still holds 8 TCP bytes.
TEST(IcmpPtb, EveryPrefixIsSafe) {
  for (auto hex : {kIcmp4Quote8, kIcmp6Quote8}) {
    const auto full = FromHex(hex);
    const bool v4 = (full[0] >> 4) == 4;
    // The goldens quote exactly 8 TCP bytes: no shorter message has a usable quote.
    const size_t quote_tcp_end = full.size();
    ASSERT_EQ(quote_tcp_end, v4 ? 20u + 8 + 20 + 8 : 40u + 8 + 40 + 8);
    for (size_t n = 0; n < full.size(); ++n) {
      std::vector<uint8_t> cut(full.begin(), full.begin() + static_cast<ptrdiff_t>(n));
      EXPECT_NE(ParseIcmpPtb(cut).kind, IcmpKind::kPacketTooBig) << n;
      if (n < (v4 ? 20u : 40u)) continue;
      // Consistent length fields: the message itself is short.
      if (v4) {
        cut[2] = static_cast<uint8_t>(n >> 8);
        cut[3] = static_cast<uint8_t>(n);
      } else {
        cut[4] = static_cast<uint8_t>((n - 40) >> 8);
        cut[5] = static_cast<uint8_t>(n - 40);
      }
      const IcmpParse r = ParseIcmpPtb(cut);
      EXPECT_EQ(r.kind == IcmpKind::kPacketTooBig, n >= quote_tcp_end) << n;
      if (n > (v4 ? 21u : 41u)) {
        EXPECT_NE(r.kind, IcmpKind::kNotIcmp) << n;
        EXPECT_NE(r.kind, IcmpKind::kOther) << n;
      }
    }
  }
}

}  // namespace
}  // namespace mproxy::packet
