#include "packet/tcp_packet.h"

#include <gtest/gtest.h>

#include <random>
#include <vector>

#include "packet/checksum.h"
#include "packet/rng.h"
#include "tests/unit/packet/packet_test_util.h"

namespace mproxy::packet {
namespace {

using testing::FromHex;
using testing::ReferenceChecksum;

// head + original[tail_offset, end): what the proxy hands back to the kernel.
std::vector<uint8_t> Assemble(const PacketOut& out, const std::vector<uint8_t>& original) {
  std::vector<uint8_t> v(out.head.begin(), out.head.begin() + static_cast<ptrdiff_t>(out.head_len));
  v.insert(v.end(), original.begin() + static_cast<ptrdiff_t>(out.tail_offset), original.end());
  return v;
}

// Independent verification of a whole packet: IP header checksum (v4), lengths, TCP checksum.
// `trailer` bytes at the end are excluded.
void ExpectConsistent(const std::vector<uint8_t>& pkt, size_t trailer = 0) {
  ASSERT_GE(pkt.size(), 20u);
  size_t l4_off = 0, l4_len = 0;
  if ((pkt[0] >> 4) == 4) {
    const size_t ihl = size_t{pkt[0] & 0x0fu} * 4;
    EXPECT_EQ(ReferenceChecksum(
                  std::vector<uint8_t>(pkt.begin(), pkt.begin() + static_cast<ptrdiff_t>(ihl))),
              0)
        << "ipv4 header checksum";
    const size_t total = (size_t{pkt[2]} << 8) | pkt[3];
    EXPECT_EQ(total + trailer, pkt.size()) << "ipv4 total length";
    l4_off = ihl;
    l4_len = total - ihl;
  } else {
    const size_t payload = (size_t{pkt[4]} << 8) | pkt[5];
    EXPECT_EQ(40 + payload + trailer, pkt.size()) << "ipv6 payload length";
    auto ip = ParseIp(pkt);  // the extension walk itself is tested in ip_test
    ASSERT_TRUE(ip);
    l4_off = ip->l4_offset;
    l4_len = 40 + payload - l4_off;
  }
  const size_t doff = size_t{pkt[l4_off + 12]} / 16 * 4;
  EXPECT_LE(doff, l4_len);
  EXPECT_TRUE(testing::ReferenceTcpChecksumOk(pkt, l4_off, l4_len)) << "tcp checksum";
}

TEST(TcpPacketTest, GoldenParse) {
  auto pkt = FromHex(testing::kIpv6ExtData);
  auto p = ParseTcpPacket(pkt);
  ASSERT_TRUE(p) << p.error().message;
  EXPECT_EQ(p->ip.family, IpFamily::kV6);
  EXPECT_EQ(p->tcp_offset, 56u);
  EXPECT_EQ(p->payload_offset, 88u);
  EXPECT_EQ(p->payload_len, 12u);
  EXPECT_EQ(p->payload().data(), pkt.data() + 88);  // a view, not a copy
  EXPECT_EQ(p->tuple().ToString(), "[2001:db8::1]:443 -> [2001:db8::2]:50000");
  EXPECT_EQ(p->tcp.seq_num(), SubflowSeq(0x80000000));
  EXPECT_EQ(p->seq_len(), 12u);
  EXPECT_EQ(p->options.Timestamps()->tsval, 100u);
  EXPECT_TRUE(TcpChecksumOk(pkt));
  EXPECT_EQ(FullTcpChecksum(*p), p->tcp.checksum);

  auto syn = FromHex(testing::kIpv4Syn);
  auto s = ParseTcpPacket(syn);
  ASSERT_TRUE(s);
  EXPECT_EQ(s->seq_len(), 1u);
  EXPECT_EQ(s->payload_len, 0u);
}

TEST(TcpPacketTest, UnmodifiedReEmitIsByteExact) {
  for (auto hex : testing::AllGolden()) {
    auto pkt = FromHex(hex);
    const auto original = pkt;
    auto p = ParseTcpPacket(pkt);
    ASSERT_TRUE(p) << hex;
    PacketOut out;
    ASSERT_TRUE(EmitTcpPacket(*p, out).ok());
    EXPECT_TRUE(out.rewritten);
    EXPECT_EQ(out.verdict, Verdict::kAccept);
    EXPECT_EQ(out.tail_offset, p->payload_offset);
    EXPECT_EQ(Assemble(out, pkt), original) << hex;
    EXPECT_EQ(pkt, original);  // the queued buffer is not touched by emit
  }
}

TEST(TcpPacketTest, ReEmitKeepsAnInvalidChecksumInvalid) {
  auto pkt = FromHex(testing::kIpv4Data);
  pkt[20 + 16] ^= 0x55;  // corrupt the TCP checksum
  auto p = ParseTcpPacket(pkt);
  ASSERT_TRUE(p);
  PacketOut out;
  ASSERT_TRUE(EmitTcpPacket(*p, out).ok());
  EXPECT_EQ(Assemble(out, pkt), pkt);  // unmodified: exact, still wrong
  p->tcp.window = 1;
  ASSERT_TRUE(EmitTcpPacket(*p, out).ok());
  const auto changed = Assemble(out, pkt);
  auto ip = ParseIp(changed);
  ASSERT_TRUE(ip);
  EXPECT_FALSE(testing::ReferenceTcpChecksumOk(changed, ip->l4_offset, ip->l4_len));
}

TEST(TcpPacketTest, EveryPrefixFailsCleanly) {
  for (auto hex : testing::AllGolden()) {
    auto pkt = FromHex(hex);
    for (size_t n = 0; n < pkt.size(); ++n) {
      std::vector<uint8_t> cut(pkt.begin(), pkt.begin() + static_cast<ptrdiff_t>(n));
      auto p = ParseTcpPacket(cut);
      ASSERT_FALSE(p) << n;
      // And with the length fields adjusted to the cut, the failure moves into TCP.
      if (n >= 20 && (cut[0] >> 4) == 4) {
        cut[2] = static_cast<uint8_t>(n >> 8);
        cut[3] = static_cast<uint8_t>(n);
        auto q = ParseTcpPacket(cut);
        if (n < 40) {
          ASSERT_FALSE(q) << n;
          ASSERT_NE(ClassOf(ReasonOf(q.error())), ParseErrorClass::kNone);
        }
      }
    }
  }
}

TEST(TcpPacketTest, NotTcpAndMalformed) {
  auto pkt = FromHex(testing::kIpv4Syn);
  pkt[9] = 17;  // UDP
  auto p = ParseTcpPacket(pkt);
  ASSERT_FALSE(p);
  EXPECT_EQ(ReasonOf(p.error()), ParseError::kNotTcp);
  EXPECT_EQ(ClassOf(ReasonOf(p.error())), ParseErrorClass::kNotTcp);

  pkt = FromHex(testing::kIpv4Syn);
  pkt[6] |= 0x20;  // MF
  p = ParseTcpPacket(pkt);
  EXPECT_EQ(ReasonOf(p.error()), ParseError::kIpFragment);

  pkt = FromHex(testing::kIpv4Syn);
  pkt[41] = 1;  // MSS length 1
  p = ParseTcpPacket(pkt);
  EXPECT_EQ(ReasonOf(p.error()), ParseError::kOptionBadLength);
  EXPECT_EQ(ClassOf(ReasonOf(p.error())), ParseErrorClass::kMalformedOptions);

  pkt = FromHex(testing::kIpv4Syn);
  pkt[32] = 0xf0;  // data offset 60 > 40 bytes of segment
  p = ParseTcpPacket(pkt);
  EXPECT_EQ(ReasonOf(p.error()), ParseError::kTcpBadDataOffset);
  EXPECT_EQ(ClassOf(ReasonOf(p.error())), ParseErrorClass::kMalformedTcp);
}

TEST(TcpPacketTest, GrowAndShrinkOptions) {
  for (auto hex : testing::AllGolden()) {
    auto pkt = FromHex(hex);
    for (bool not_ready : {false, true}) {
      PacketMeta meta;
      meta.csum_not_ready = not_ready;
      auto p = ParseTcpPacket(pkt, meta);
      ASSERT_TRUE(p);
      // Shrink: drop everything.
      p->options.Clear();
      PacketOut out;
      ASSERT_TRUE(EmitTcpPacket(*p, out).ok());
      auto v = Assemble(out, pkt);
      ExpectConsistent(v);
      EXPECT_EQ(v.size(), pkt.size() - (p->payload_offset - p->tcp_offset - 20));
      EXPECT_EQ(v[p->tcp_offset + 12] >> 4, 5);
      auto back = ParseTcpPacket(v);
      ASSERT_TRUE(back);
      EXPECT_EQ(std::vector<uint8_t>(back->payload().begin(), back->payload().end()),
                std::vector<uint8_t>(p->payload().begin(), p->payload().end()));
      // Grow to the maximum: 40 bytes of an MPTCP-like option.
      ASSERT_TRUE(p->options.AddRaw(tcp_opt::kMptcp, std::vector<uint8_t>(37, 0xa5)));
      ASSERT_TRUE(EmitTcpPacket(*p, out).ok());
      v = Assemble(out, pkt);
      ExpectConsistent(v);
      EXPECT_EQ(v[p->tcp_offset + 12] >> 4, 15);
      back = ParseTcpPacket(v);
      ASSERT_TRUE(back);
      EXPECT_EQ(back->options.byte_size(), 40u);  // 39 + one NOP of padding
      EXPECT_EQ(back->payload_len, p->payload_len);
    }
  }
}

TEST(TcpPacketTest, HeadTooSmall) {
  auto pkt = FromHex(testing::kIpv4Syn);
  auto p = ParseTcpPacket(pkt);
  ASSERT_TRUE(p);
  std::vector<uint8_t> head(59);
  auto r = EmitTcpHeaders(*p, head);
  ASSERT_FALSE(r);
  EXPECT_EQ(ReasonOf(r.error()), ParseError::kHeadTooLarge);
  head.resize(60);
  EXPECT_TRUE(EmitTcpHeaders(*p, head));
}

TEST(TcpPacketTest, AddressRewrite) {
  auto pkt = FromHex(testing::kIpv4Data);
  auto p = ParseTcpPacket(pkt);
  ASSERT_TRUE(p);
  p->ip.src = *IpAddress::Parse("198.19.7.9");
  p->tcp.sport = 1234;
  PacketOut out;
  ASSERT_TRUE(EmitTcpPacket(*p, out).ok());
  auto v = Assemble(out, pkt);
  ExpectConsistent(v);
  EXPECT_EQ(ParseTcpPacket(v)->tuple().ToString(), "198.19.7.9:1234 -> 198.18.0.2:80");
  p->ip.src = *IpAddress::Parse("2001:db8::5");
  auto r = EmitTcpPacket(*p, out);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(ReasonOf(r.error()), ParseError::kFamilyChanged);
}

TEST(TcpPacketTest, TrailerPreservedAndExcluded) {
  auto pkt = FromHex(testing::kIpv4Syn);
  pkt.insert(pkt.end(), {0, 0, 0, 0, 0, 0});  // Ethernet-style padding
  auto p = ParseTcpPacket(pkt);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->ip.trailer_len, 6u);
  EXPECT_EQ(p->payload_len, 0u);
  PacketOut out;
  ASSERT_TRUE(EmitTcpPacket(*p, out).ok());
  EXPECT_EQ(Assemble(out, pkt), pkt);
  ASSERT_TRUE(p->options.AddRaw(30, std::vector<uint8_t>(2, 0)));
  ASSERT_TRUE(EmitTcpPacket(*p, out).ok());
  ExpectConsistent(Assemble(out, pkt), 6);
}

// A BIG TCP style IPv4 GSO packet: total length 0, 70000 bytes, CHECKSUM_PARTIAL.
TEST(TcpPacketTest, GsoAbove64K) {
  auto pkt = FromHex(testing::kIpv4Data);
  pkt.resize(70000);
  for (size_t i = 71; i < pkt.size(); ++i) pkt[i] = static_cast<uint8_t>(i * 7);
  pkt[2] = pkt[3] = 0;
  pkt[10] = pkt[11] = 0;
  (void)Store16(pkt, 10, checksum::Finish(checksum::Sum(Bytes(pkt).first(20))));
  PacketMeta meta;
  meta.gso = true;
  meta.csum_not_ready = true;
  auto p = ParseTcpPacket(pkt, meta);
  ASSERT_TRUE(p) << p.error().message;
  EXPECT_TRUE(p->ip.length_from_buffer);
  EXPECT_EQ(p->payload_len, 70000u - 52);
  // Unchanged lengths keep the 0 field; the checksum becomes the full one.
  PacketOut out;
  ASSERT_TRUE(EmitTcpPacket(*p, out).ok());
  auto v = Assemble(out, pkt);
  EXPECT_EQ(v[2], 0);
  EXPECT_EQ(v[3], 0);
  auto ip = ParseIp(v);
  ASSERT_TRUE(ip);
  std::vector<uint8_t> ph(v.begin() + 12, v.begin() + 20);
  const uint32_t l4 = static_cast<uint32_t>(ip->l4_len);
  ph.insert(ph.end(), {0, 6, static_cast<uint8_t>(l4 >> 24), static_cast<uint8_t>(l4 >> 16),
                       static_cast<uint8_t>(l4 >> 8), static_cast<uint8_t>(l4)});
  ph.insert(ph.end(), v.begin() + 20, v.end());
  EXPECT_EQ(ReferenceChecksum(ph), 0);
  EXPECT_EQ(ReferenceChecksum(std::vector<uint8_t>(v.begin(), v.begin() + 20)), 0);
  // Growing keeps the field 0 (not representable).
  ASSERT_TRUE(p->options.AddRaw(30, std::vector<uint8_t>(6, 1)));
  ASSERT_TRUE(EmitTcpPacket(*p, out).ok());
  v = Assemble(out, pkt);
  EXPECT_EQ(v.size(), 70008u);
  EXPECT_EQ(v[2], 0);
  EXPECT_EQ(v[3], 0);
  // A GSO packet whose field lies (wrapped) is measured by the buffer too.
  pkt[2] = static_cast<uint8_t>((70000 & 0xffff) >> 8);
  pkt[3] = static_cast<uint8_t>(70000 & 0xff);
  p = ParseTcpPacket(pkt, meta);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->payload_len, 70000u - 52);
  // Without the GSO flag the same bytes read as a 4464-byte packet with a trailer.
  p = ParseTcpPacket(pkt);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->ip.trailer_len, 70000u - (70000 & 0xffff));
}

TEST(TcpPacketTest, GrowingPastIpv4LimitFails) {
  auto pkt = FromHex(testing::kIpv4Data);
  pkt.resize(65535);
  pkt[2] = 0xff;
  pkt[3] = 0xff;
  auto p = ParseTcpPacket(pkt);
  ASSERT_TRUE(p);
  ASSERT_TRUE(p->options.AddNop());
  PacketOut out;
  auto r = EmitTcpPacket(*p, out);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(ReasonOf(r.error()), ParseError::kLengthOverflow);
  EXPECT_FALSE(out.rewritten);
}

TEST(TcpPacketTest, InPlacePatches) {
  for (bool not_ready : {false, true}) {
    auto pkt = FromHex(testing::kIpv4Syn);
    PacketMeta meta;
    meta.csum_not_ready = not_ready;
    if (not_ready) {  // field holds the pseudo-header sum, like CHECKSUM_PARTIAL
      const uint8_t ph[12] = {198, 18, 0, 1, 198, 18, 0, 2, 0, 6, 0, 40};
      (void)Store16(pkt, 36, checksum::Fold(checksum::Sum(ph)));
    }
    auto p = ParseTcpPacket(pkt, meta);
    ASSERT_TRUE(p);
    PatchSeq(*p, SubflowSeq(0xfffffff0));
    PatchAck(*p, SubflowSeq(0x12345678));
    PatchWindow(*p, 777);
    ASSERT_TRUE(PatchMss(*p, 1380));  // MSS data sits at an even offset
    PacketOut out;
    FinishInPlace(*p, out);
    EXPECT_TRUE(out.patched_in_place);
    EXPECT_FALSE(out.rewritten);
    ExpectConsistent(pkt);
    auto back = ParseTcpPacket(pkt);
    ASSERT_TRUE(back);
    EXPECT_EQ(back->tcp.seq, 0xfffffff0u);
    EXPECT_EQ(back->tcp.ack, 0x12345678u);
    EXPECT_EQ(back->tcp.window, 777);
    EXPECT_EQ(back->options.Mss(), 1380);
    EXPECT_EQ(back->tcp.checksum, p->tcp.checksum);
  }
}

TEST(TcpPacketTest, PatchOptionAtOddOffset) {
  auto pkt = FromHex(testing::kIpv4Syn);
  auto p = ParseTcpPacket(pkt);
  ASSERT_TRUE(p);
  // Window scale data is at TCP offset 20 + 17 + 2 = 39 (odd).
  const auto ws = p->options.Find(tcp_opt::kWindowScale);
  ASSERT_TRUE(ws);
  ASSERT_TRUE(PatchOptionData(*p, *ws, std::vector<uint8_t>{14}));
  ExpectConsistent(pkt);
  EXPECT_EQ(ParseTcpPacket(pkt)->options.WindowScale(), 14);
  EXPECT_FALSE(PatchOptionData(*p, *ws, std::vector<uint8_t>{1, 2}));  // size change
  // After a structural edit the list no longer describes the buffer.
  ASSERT_TRUE(p->options.AddNop());
  EXPECT_FALSE(PatchOptionData(*p, *ws, std::vector<uint8_t>{1}));
}

TEST(TcpPacketTest, RoutingHeaderInFlight) {
  // IPv6 + routing header (segments left 1) + TCP.
  std::vector<uint8_t> pkt = FromHex(
      "6000000000200b4020010db800000000000000000000000120010db8000000000000000000000002"
      "06000201000000005000005000000001000000005002100000000000");
  pkt[4] = 0;
  pkt[5] = 28;
  pkt[6] = 43;
  PacketMeta meta;
  meta.csum_not_ready = true;
  auto p = ParseTcpPacket(pkt, meta);
  ASSERT_FALSE(p);
  EXPECT_EQ(ReasonOf(p.error()), ParseError::kIpv6RoutingInFlight);
  p = ParseTcpPacket(pkt);
  ASSERT_TRUE(p) << p.error().message;
  p->ip.src = *IpAddress::Parse("2001:db8::9");
  PacketOut out;
  EXPECT_EQ(ReasonOf(EmitTcpPacket(*p, out).error()), ParseError::kIpv6RoutingInFlight);
}

TEST(TcpPacketTest, BuildTcpPacket) {
  TcpHeader h;
  h.seq = 0x01020304;
  h.flags = tcp_flags::kSyn;
  h.window = 64240;
  TcpOptionList o;
  ASSERT_TRUE(o.AddMss(1460));
  ASSERT_TRUE(o.AddSackPermitted());
  ASSERT_TRUE(o.AddTimestamps({0x0a0b0c0d, 0}));
  ASSERT_TRUE(o.AddNop());
  ASSERT_TRUE(o.AddWindowScale(7));
  FourTuple t{*IpAddress::Parse("198.18.0.1"), *IpAddress::Parse("198.18.0.2"), 40000, 80};
  auto v = BuildTcpPacket(t, h, o, {});
  ASSERT_TRUE(v);
  // Identical to the golden SYN except the IP ID (golden 0x1234, built 0) and so its checksum.
  auto golden = FromHex(testing::kIpv4Syn);
  ASSERT_EQ(v->size(), golden.size());
  EXPECT_TRUE(std::equal(golden.begin() + 20, golden.end(), v->begin() + 20));
  ExpectConsistent(*v);

  FourTuple t6{*IpAddress::Parse("2001:db8::1"), *IpAddress::Parse("2001:db8::2"), 1, 2};
  const std::vector<uint8_t> payload = {1, 2, 3};
  v = BuildTcpPacket(t6, h, o, payload);
  ASSERT_TRUE(v);
  ExpectConsistent(*v);
  auto p = ParseTcpPacket(*v);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->tuple(), t6);
  EXPECT_EQ(p->payload_len, 3u);

  FourTuple mixed{t.src, t6.dst, 1, 2};
  EXPECT_FALSE(BuildTcpPacket(mixed, h, o, {}));
}

// ---- Property test: random packets, random edits, incremental vs full -------------------------

std::vector<uint8_t> RandomTcpPacket(Xoshiro256& rng) {
  const bool v6 = rng.Below(2) == 1;
  std::vector<uint8_t> ip;
  if (!v6) {
    const size_t opt_words = rng.Below(3);
    ip = {static_cast<uint8_t>(0x45 + opt_words),
          static_cast<uint8_t>(rng.Next64()),
          0,
          0,
          static_cast<uint8_t>(rng.Next64()),
          static_cast<uint8_t>(rng.Next64()),
          static_cast<uint8_t>(rng.Below(2) ? 0x40 : 0),
          0,
          static_cast<uint8_t>(rng.Next64()),
          6,
          0,
          0};
    for (int i = 0; i < 8; ++i) ip.push_back(static_cast<uint8_t>(rng.Next64()));
    for (size_t i = 0; i < opt_words * 4; ++i) ip.push_back(1);  // IPv4 NOP options
  } else {
    ip = {0x60, static_cast<uint8_t>(rng.Below(256)), 0, 0x12, 0, 0, 6, 64};
    for (int i = 0; i < 32; ++i) ip.push_back(static_cast<uint8_t>(rng.Next64()));
    // 0..2 extension headers: Hop-by-Hop first, then Destination Options.
    const size_t n_ext = rng.Below(3);
    uint8_t* next = &ip[6];
    for (size_t k = 0; k < n_ext; ++k) {
      const size_t at = ip.size();
      *next = k == 0 ? kIpv6HopByHop : kIpv6DestOptions;
      const size_t len8 = rng.Below(2);
      ip.push_back(6);
      ip.push_back(static_cast<uint8_t>(len8));
      ip.push_back(1);  // PadN
      ip.push_back(static_cast<uint8_t>(4 + 8 * len8));
      ip.resize(ip.size() + 4 + 8 * len8, 0);
      next = &ip[at];
    }
  }
  TcpOptionList o;
  for (size_t k = 0, n = rng.Below(6); k < n; ++k) {
    switch (rng.Below(6)) {
      case 0:
        (void)o.AddNop();
        break;
      case 1:
        (void)o.AddMss(static_cast<uint16_t>(rng.Next64()));
        break;
      case 2:
        (void)o.AddTimestamps({rng.Next32(), rng.Next32()});
        break;
      case 3:
        (void)o.AddWindowScale(static_cast<uint8_t>(rng.Below(15)));
        break;
      case 4:
        (void)o.AddRaw(30, std::vector<uint8_t>(rng.Below(20), 0x3c));
        break;
      default:
        (void)o.AddSackPermitted();
    }
  }
  std::vector<uint8_t> tcp(20);
  for (auto& b : tcp) b = static_cast<uint8_t>(rng.Next64());
  tcp[12] = static_cast<uint8_t>(((20 + o.EncodedSize()) / 4) << 4 | (tcp[12] & 0x0f));
  tcp[16] = tcp[17] = 0;
  std::vector<uint8_t> optbytes(o.EncodedSize());
  ByteWriter w(optbytes);
  (void)o.Emit(w);
  tcp.insert(tcp.end(), optbytes.begin(), optbytes.end());
  for (size_t i = 0, n = rng.Below(4) == 0 ? 0 : rng.Below(1500); i < n; ++i) {
    tcp.push_back(static_cast<uint8_t>(rng.Next64()));
  }
  std::vector<uint8_t> pkt = ip;
  pkt.insert(pkt.end(), tcp.begin(), tcp.end());
  const size_t l4_off = ip.size(), l4_len = tcp.size();
  // Lengths, IPv4 header checksum, then TCP checksum with an independent pseudo-header.
  std::vector<uint8_t> ph;
  if (!v6) {
    (void)Store16(pkt, 2, static_cast<uint16_t>(pkt.size()));
    (void)Store16(pkt, 10,
                  ReferenceChecksum(std::vector<uint8_t>(
                      pkt.begin(), pkt.begin() + static_cast<ptrdiff_t>(l4_off))));
    ph.assign(pkt.begin() + 12, pkt.begin() + 20);
    ph.insert(ph.end(), {0, 6, static_cast<uint8_t>(l4_len >> 8), static_cast<uint8_t>(l4_len)});
  } else {
    (void)Store16(pkt, 4, static_cast<uint16_t>(pkt.size() - 40));
    ph.assign(pkt.begin() + 8, pkt.begin() + 40);
    ph.insert(ph.end(),
              {0, 0, static_cast<uint8_t>(l4_len >> 8), static_cast<uint8_t>(l4_len), 0, 0, 0, 6});
  }
  ph.insert(ph.end(), tcp.begin(), tcp.end());
  (void)Store16(pkt, l4_off + 16, ReferenceChecksum(ph));
  return pkt;
}

void RandomEdit(Xoshiro256& rng, TcpPacket& p) {
  for (size_t k = 0, n = 1 + rng.Below(4); k < n; ++k) {
    switch (rng.Below(9)) {
      case 0:
        p.tcp.seq = rng.Next32();
        break;
      case 1:
        p.tcp.ack = rng.Next32();
        break;
      case 2:
        p.tcp.window = static_cast<uint16_t>(rng.Next64());
        break;
      case 3:
        p.tcp.flags = static_cast<uint8_t>(rng.Next64());
        break;
      case 4:
        p.tcp.sport = static_cast<uint16_t>(rng.Next64());
        break;
      case 5:
        (void)p.options.AddRaw(
            30, std::vector<uint8_t>(rng.Below(14), static_cast<uint8_t>(rng.Next64())));
        break;
      case 6:
        if (!p.options.empty()) p.options.RemoveAt(rng.Below(p.options.size()));
        break;
      case 7:
        p.options.Clear();
        break;
      default: {
        std::vector<uint8_t> a(p.ip.src.bytes().begin(), p.ip.src.bytes().end());
        a.back() = static_cast<uint8_t>(rng.Next64());
        p.ip.src = *(p.ip.family == IpFamily::kV4 ? IpAddress::V4(a) : IpAddress::V6(a));
      }
    }
  }
}

TEST(TcpPacketTest, IncrementalAgreesWithFullOnRandomPackets) {
  Xoshiro256 rng(2024);
  int changed_header_len = 0;
  for (int iter = 0; iter < 4000; ++iter) {
    auto pkt = RandomTcpPacket(rng);
    ASSERT_TRUE(TcpChecksumOk(pkt)) << iter;
    auto p = ParseTcpPacket(pkt);
    ASSERT_TRUE(p) << iter << " " << p.error().message;
    {  // unmodified: exact
      PacketOut out;
      ASSERT_TRUE(EmitTcpPacket(*p, out).ok());
      ASSERT_EQ(Assemble(out, pkt), pkt) << iter;
    }
    RandomEdit(rng, *p);
    PacketOut inc;
    ASSERT_TRUE(EmitTcpPacket(*p, inc).ok());
    const auto a = Assemble(inc, pkt);
    ExpectConsistent(a);
    if (a.size() != pkt.size()) ++changed_header_len;

    // The same edit on the CHECKSUM_PARTIAL version of the packet, full checksum path.
    auto partial = pkt;
    {
      auto ip = ParseIp(partial);
      ASSERT_TRUE(ip);
      const uint32_t ph = ip->family == IpFamily::kV4
                              ? checksum::PseudoHeaderSumV4(ip->src.bytes(), ip->dst.bytes(), 6,
                                                            static_cast<uint32_t>(ip->l4_len))
                              : checksum::PseudoHeaderSumV6(ip->src.bytes(), ip->dst.bytes(), 6,
                                                            static_cast<uint32_t>(ip->l4_len));
      (void)Store16(partial, ip->l4_offset + 16, checksum::Fold(ph));
    }
    PacketMeta meta;
    meta.csum_not_ready = true;
    auto q = ParseTcpPacket(partial, meta);
    ASSERT_TRUE(q);
    q->tcp = p->tcp;
    q->options = p->options;
    q->ip.src = p->ip.src;
    PacketOut full;
    ASSERT_TRUE(EmitTcpPacket(*q, full).ok());
    ASSERT_EQ(Assemble(full, partial), a) << iter;  // bit-identical, checksum included
  }
  EXPECT_GT(changed_header_len, 1000);  // the edits did move the payload
}

}  // namespace
}  // namespace mproxy::packet
