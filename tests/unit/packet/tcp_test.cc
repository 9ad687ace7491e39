#include "packet/tcp.h"

#include <gtest/gtest.h>

#include <random>
#include <vector>

#include "tests/unit/packet/packet_test_util.h"

namespace mproxy::packet {
namespace {

using testing::FromHex;

std::vector<uint8_t> EmitToVector(const TcpOptionList& l) {
  std::vector<uint8_t> out(64, 0xcc);
  ByteWriter w(out);
  EXPECT_TRUE(l.Emit(w));
  EXPECT_EQ(w.offset(), l.EncodedSize());
  out.resize(w.offset());
  return out;
}

ParseError OptionsReason(const std::vector<uint8_t>& area) {
  auto r = TcpOptionList::Parse(area);
  return r ? ParseError::kNone : ReasonOf(r.error());
}

TEST(TcpHeaderTest, GoldenSyn) {
  const auto pkt = FromHex(testing::kIpv4Syn);
  auto h = ParseTcpHeader(Bytes(pkt).subspan(20));
  ASSERT_TRUE(h);
  EXPECT_EQ(h->sport, 40000);
  EXPECT_EQ(h->dport, 80);
  EXPECT_EQ(h->seq, 0x01020304u);
  EXPECT_EQ(h->seq_num(), SubflowSeq(0x01020304));
  EXPECT_EQ(h->ack, 0u);
  EXPECT_EQ(h->data_offset, 10);
  EXPECT_EQ(h->header_len(), 40u);
  EXPECT_EQ(h->flags, tcp_flags::kSyn);
  EXPECT_TRUE(h->has(tcp_flags::kSyn));
  EXPECT_FALSE(h->has(tcp_flags::kAck));
  EXPECT_EQ(h->window, 64240);
  EXPECT_EQ(h->checksum, 0x0a39);
  EXPECT_EQ(h->urgent, 0);

  std::vector<uint8_t> out(20);
  ByteWriter w(out);
  ASSERT_TRUE(WriteTcpHeader(*h, w));
  EXPECT_EQ(out, std::vector<uint8_t>(pkt.begin() + 20, pkt.begin() + 40));
}

TEST(TcpHeaderTest, ReservedBitsPreserved) {
  auto pkt = FromHex(testing::kIpv4Syn);
  pkt[20 + 12] |= 0x0f;  // reserved + AE
  auto h = ParseTcpHeader(Bytes(pkt).subspan(20));
  ASSERT_TRUE(h);
  EXPECT_EQ(h->reserved, 0x0f);
  std::vector<uint8_t> out(20);
  ByteWriter w(out);
  ASSERT_TRUE(WriteTcpHeader(*h, w));
  EXPECT_EQ(out[12], pkt[32]);
}

TEST(TcpHeaderTest, EveryPrefixAndBadDataOffset) {
  const auto pkt = FromHex(testing::kIpv4Syn);
  const Bytes l4 = Bytes(pkt).subspan(20);
  for (size_t n = 0; n < l4.size(); ++n) {
    auto h = ParseTcpHeader(l4.first(n));
    ASSERT_FALSE(h) << n;
    ASSERT_EQ(ReasonOf(h.error()),
              n < 20 ? ParseError::kTcpTruncated : ParseError::kTcpBadDataOffset)
        << n;
  }
  auto bad = pkt;
  for (uint8_t off = 0; off < 5; ++off) {
    bad[32] = static_cast<uint8_t>(off << 4);
    auto h = ParseTcpHeader(Bytes(bad).subspan(20));
    ASSERT_FALSE(h);
    EXPECT_EQ(ReasonOf(h.error()), ParseError::kTcpBadDataOffset);
  }
  bad[32] = 0xb0;  // 44 bytes > 40 available
  EXPECT_EQ(ReasonOf(ParseTcpHeader(Bytes(bad).subspan(20)).error()),
            ParseError::kTcpBadDataOffset);
}

TEST(TcpOptionsTest, GoldenEveryKind) {
  // The options of the SYN+MPTCP golden packet, then those of the SACK+DSS packet.
  const auto syn = FromHex(testing::kIpv4SynMptcp);
  auto l = TcpOptionList::Parse(Bytes(syn).subspan(40, 32));
  ASSERT_TRUE(l) << l.error().message;
  ASSERT_EQ(l->size(), 8u);
  const uint8_t kinds[] = {2, 3, 4, 8, 30, 1, 254, 0};
  for (size_t i = 0; i < l->size(); ++i) EXPECT_EQ((*l)[i].kind, kinds[i]) << i;
  EXPECT_EQ(l->Mss(), 1460);
  EXPECT_EQ(l->WindowScale(), 7);
  EXPECT_TRUE(l->SackPermitted());
  ASSERT_TRUE(l->Timestamps());
  EXPECT_EQ(l->Timestamps()->tsval, 1u);
  EXPECT_EQ(l->Timestamps()->tsecr, 0u);
  const TcpOptionView mp = (*l)[*l->Find(tcp_opt::kMptcp)];
  EXPECT_EQ(mp.raw.size(), 4u);
  EXPECT_EQ(mp.data.size(), 2u);
  EXPECT_EQ(mp.data[0], 0x01);  // subtype 0, version 1, untouched
  const TcpOptionView unknown = (*l)[6];
  EXPECT_EQ(std::vector<uint8_t>(unknown.raw.begin(), unknown.raw.end()),
            (std::vector<uint8_t>{254, 4, 0xab, 0xcd}));
  const TcpOptionView eol = (*l)[7];
  EXPECT_EQ(eol.raw.size(), 4u);  // EOL and its padding
  EXPECT_EQ(l->byte_size(), 32u);
  EXPECT_EQ(EmitToVector(*l), std::vector<uint8_t>(syn.begin() + 40, syn.end()));

  const auto ack = FromHex(testing::kIpv4SackDss);
  l = TcpOptionList::Parse(Bytes(ack).subspan(40, 40));
  ASSERT_TRUE(l);
  std::array<SackBlock, 4> blocks;
  ASSERT_EQ(l->SackBlocks(blocks), 2u);
  EXPECT_EQ(blocks[0].left, 0x22222300u);
  EXPECT_EQ(blocks[0].right, 0x22222400u);
  EXPECT_EQ(blocks[1].right, 0x22222600u);
  EXPECT_EQ(l->Timestamps()->tsecr, 8u);
  EXPECT_FALSE(l->Mss());
  EXPECT_FALSE(l->SackPermitted());
  EXPECT_EQ(EmitToVector(*l), std::vector<uint8_t>(ack.begin() + 40, ack.end()));
}

// Every kind, alone: each proper non-empty prefix is a truncated option.
TEST(TcpOptionsTest, EveryPrefixOfEveryKind) {
  const std::vector<std::vector<uint8_t>> options = {
      {2, 4, 5, 0xb4},
      {3, 3, 7},
      {4, 2},
      {5, 10, 1, 2, 3, 4, 5, 6, 7, 8},
      {5, 34, 1, 2, 3, 4, 5, 6, 7, 8, 1, 2, 3, 4, 5, 6, 7,
       8, 1,  2, 3, 4, 5, 6, 7, 8, 1, 2, 3, 4, 5, 6, 7, 8},
      {8, 10, 0, 0, 0, 1, 0, 0, 0, 2},
      {30, 8, 0x20, 0x01, 1, 2, 3, 4},
      {254, 4, 0xab, 0xcd},
      {99, 2},
  };
  for (const auto& o : options) {
    ASSERT_TRUE(TcpOptionList::Parse(o)) << int{o[0]};
    for (size_t n = 1; n < o.size(); ++n) {
      auto r = TcpOptionList::Parse(Bytes(o).first(n));
      ASSERT_FALSE(r) << int{o[0]} << " " << n;
      EXPECT_EQ(ReasonOf(r.error()), ParseError::kOptionTruncated);
    }
  }
  // EOL and NOP have no length byte: any prefix parses.
  EXPECT_TRUE(TcpOptionList::Parse(std::vector<uint8_t>{1}));
  EXPECT_TRUE(TcpOptionList::Parse(std::vector<uint8_t>{0}));
  EXPECT_TRUE(TcpOptionList::Parse(std::vector<uint8_t>{}));
}

TEST(TcpOptionsTest, EveryPrefixOfGoldenAreas) {
  for (auto hex : {testing::kIpv4Syn, testing::kIpv4SynMptcp, testing::kIpv4SackDss}) {
    const auto pkt = FromHex(hex);
    const Bytes area = Bytes(pkt).subspan(40);
    for (size_t n = 0; n <= area.size(); ++n) {
      auto r = TcpOptionList::Parse(area.first(n));
      if (r) {
        // Whatever parses re-emits to the same bytes (padded).
        const auto out = EmitToVector(*r);
        ASSERT_TRUE(
            std::equal(area.begin(), area.begin() + static_cast<ptrdiff_t>(n), out.begin()));
      } else {
        ASSERT_EQ(ClassOf(ReasonOf(r.error())), ParseErrorClass::kMalformedOptions);
      }
    }
  }
}

TEST(TcpOptionsTest, Malformed) {
  EXPECT_EQ(OptionsReason({2, 0, 0, 0}), ParseError::kOptionBadLength);
  EXPECT_EQ(OptionsReason({30, 1, 0, 0}), ParseError::kOptionBadLength);
  EXPECT_EQ(OptionsReason({254, 0}), ParseError::kOptionBadLength);
  EXPECT_EQ(OptionsReason({1, 1, 254, 5, 0}), ParseError::kOptionTruncated);
  EXPECT_EQ(OptionsReason({1, 1, 1, 8}), ParseError::kOptionTruncated);  // no length byte
  EXPECT_EQ(OptionsReason({2, 3, 5, 1}), ParseError::kOptionBadFixedLength);
  EXPECT_EQ(OptionsReason({2, 5, 5, 1, 1}), ParseError::kOptionBadFixedLength);
  EXPECT_EQ(OptionsReason({3, 4, 7, 1}), ParseError::kOptionBadFixedLength);
  EXPECT_EQ(OptionsReason({4, 3, 0, 1}), ParseError::kOptionBadFixedLength);
  EXPECT_EQ(OptionsReason({8, 8, 0, 0, 0, 0, 0, 0}), ParseError::kOptionBadFixedLength);
  EXPECT_EQ(OptionsReason({5, 2, 1, 1}), ParseError::kOptionBadFixedLength);  // n = 0
  std::vector<uint8_t> sack(42, 0);
  sack[0] = 5;
  sack[1] = 42;  // n = 5
  EXPECT_EQ(OptionsReason(std::vector<uint8_t>(sack.begin(), sack.begin() + 40)),
            ParseError::kOptionTruncated);
  sack.assign({5, 11, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1});
  EXPECT_EQ(OptionsReason(sack), ParseError::kOptionBadFixedLength);
  // More than 40 bytes is not an option area.
  EXPECT_EQ(OptionsReason(std::vector<uint8_t>(44, 1)), ParseError::kOptionsTooLong);
  // Anything after EOL is padding, even if it looks like a broken option.
  auto l = TcpOptionList::Parse(std::vector<uint8_t>{0, 2, 0, 0});
  ASSERT_TRUE(l);
  EXPECT_EQ(l->size(), 1u);
  EXPECT_EQ(EmitToVector(*l), (std::vector<uint8_t>{0, 2, 0, 0}));
}

TEST(TcpOptionsTest, BuildAndPad) {
  TcpOptionList l;
  EXPECT_EQ(l.EncodedSize(), 0u);
  ASSERT_TRUE(l.AddMss(1400));
  ASSERT_TRUE(l.AddSackPermitted());
  ASSERT_TRUE(l.AddTimestamps({0x01020304, 0x05060708}));
  ASSERT_TRUE(l.AddNop());
  ASSERT_TRUE(l.AddWindowScale(9));
  EXPECT_EQ(l.byte_size(), 20u);
  EXPECT_EQ(EmitToVector(l), FromHex("020405780402080a0102030405060708"
                                     "01030309"));
  // Odd sizes are NOP-padded.
  TcpOptionList w;
  ASSERT_TRUE(w.AddWindowScale(2));
  EXPECT_EQ(EmitToVector(w), FromHex("03030201"));
  // A list ending in EOL is zero-padded.
  auto e =
      TcpOptionList::Parse(FromHex("030302"
                                   "00"));
  ASSERT_TRUE(e);
  ASSERT_TRUE(e->AddSackPermitted());  // goes before the EOL
  EXPECT_EQ(EmitToVector(*e), FromHex("03030204020000"
                                      "00"));
  // SACK builder.
  TcpOptionList s;
  const SackBlock blocks[] = {{1, 2}, {3, 4}};
  ASSERT_TRUE(s.AddSack(blocks));
  EXPECT_EQ(EmitToVector(s), FromHex("0512000000010000000200000003000000040101"));
  EXPECT_FALSE(s.AddSack({}));
}

TEST(TcpOptionsTest, FortyByteLimit) {
  TcpOptionList l;
  const std::vector<uint8_t> data(36, 0x11);
  ASSERT_TRUE(l.AddRaw(30, data));                      // 38 bytes
  EXPECT_FALSE(l.AddRaw(30, std::vector<uint8_t>(1)));  // 41
  ASSERT_TRUE(l.AddNop());
  ASSERT_TRUE(l.AddNop());  // exactly 40
  EXPECT_FALSE(l.AddNop());
  EXPECT_EQ(l.EncodedSize(), 40u);
  EXPECT_FALSE(l.AddRaw(30, std::vector<uint8_t>(300)));
  EXPECT_FALSE(l.AddRaw(tcp_opt::kNop, {}));  // kinds without a length byte are refused
  // Forty NOPs is the maximum option count.
  TcpOptionList nops;
  for (int i = 0; i < 40; ++i) ASSERT_TRUE(nops.AddNop());
  EXPECT_FALSE(nops.AddNop());
  EXPECT_EQ(nops.size(), 40u);
}

TEST(TcpOptionsTest, EditRemoveReplace) {
  auto pkt = FromHex(testing::kIpv4SackDss);
  auto l = TcpOptionList::Parse(Bytes(pkt).subspan(40, 40));
  ASSERT_TRUE(l);
  EXPECT_EQ(l->RemoveAll(tcp_opt::kNop), 4u);
  EXPECT_EQ(l->size(), 3u);
  EXPECT_EQ(l->byte_size(), 36u);
  const auto dss = l->Find(tcp_opt::kMptcp);
  ASSERT_TRUE(dss);
  // Grow the DSS (as an engine adding a 64-bit DATA_ACK would): 36 - 8 + 12 = 40.
  ASSERT_TRUE(l->Replace(*dss, tcp_opt::kMptcp, FromHex("20020000000011223344")));
  EXPECT_EQ(l->byte_size(), 40u);
  EXPECT_FALSE(l->Replace(*dss, tcp_opt::kMptcp, FromHex("2002000000001122334455")));
  EXPECT_EQ(l->byte_size(), 40u);  // unchanged on failure
  // Replace with data from the list itself.
  const TcpOptionView ts = (*l)[*l->Find(tcp_opt::kTimestamps)];
  ASSERT_TRUE(l->Replace(*l->Find(tcp_opt::kTimestamps), tcp_opt::kTimestamps, ts.data));
  auto again = TcpOptionList::Parse(EmitToVector(*l));
  ASSERT_TRUE(again);
  EXPECT_EQ(*again, *l);
  EXPECT_EQ(again->Timestamps()->tsval, 7u);
  l->RemoveAt(0);
  l->RemoveAt(99);  // out of range: no-op
  EXPECT_EQ(l->size(), 2u);
  EXPECT_FALSE(l->Find(tcp_opt::kSack));
  EXPECT_TRUE(l->Timestamps());
  l->Clear();
  EXPECT_TRUE(l->empty());
  EXPECT_EQ(EmitToVector(*l).size(), 0u);
}

TEST(TcpOptionsTest, SetMssAndOverwrite) {
  auto pkt = FromHex(testing::kIpv4Syn);
  auto l = TcpOptionList::Parse(Bytes(pkt).subspan(40));
  ASSERT_TRUE(l);
  ASSERT_TRUE(l->SetMss(1380));
  EXPECT_EQ(l->Mss(), 1380);
  EXPECT_FALSE(l->OverwriteData(0, std::vector<uint8_t>(3)));
  TcpOptionList empty;
  EXPECT_FALSE(empty.SetMss(1));
}

// Random option lists: build, emit, parse, compare.
TEST(TcpOptionsTest, RandomRoundTrip) {
  std::mt19937_64 rng(5);
  for (int iter = 0; iter < 20000; ++iter) {
    TcpOptionList l;
    for (int k = 0; k < 12; ++k) {
      switch (rng() % 8) {
        case 0:
          (void)l.AddNop();
          break;
        case 1:
          (void)l.AddMss(static_cast<uint16_t>(rng()));
          break;
        case 2:
          (void)l.AddWindowScale(static_cast<uint8_t>(rng()));
          break;
        case 3:
          (void)l.AddSackPermitted();
          break;
        case 4:
          (void)l.AddTimestamps({static_cast<uint32_t>(rng()), 0});
          break;
        case 5: {
          SackBlock b[4];
          (void)l.AddSack(std::span<const SackBlock>(b, 1 + rng() % 4));
          break;
        }
        case 6:
          (void)l.AddRaw(30, std::vector<uint8_t>(rng() % 20, 0x5a));
          break;
        default:
          if (!l.empty()) l.RemoveAt(rng() % l.size());
      }
      ASSERT_LE(l.byte_size(), 40u);
    }
    const auto bytes = EmitToVector(l);
    ASSERT_EQ(bytes.size() % 4, 0u);
    auto back = TcpOptionList::Parse(bytes);
    ASSERT_TRUE(back) << back.error().message;
    // The padding NOPs come back as options; strip them by comparing emitted bytes instead.
    ASSERT_EQ(EmitToVector(*back), bytes);
  }
}

}  // namespace
}  // namespace mproxy::packet
