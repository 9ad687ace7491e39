#include "proxy/passthrough_engine.h"

#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

#include "packet/checksum.h"
#include "packet/tcp_packet.h"
#include "tests/unit/packet/packet_test_util.h"

namespace mproxy::proxy {
namespace {

using packet::testing::FromHex;

class PassthroughEngineTest : public ::testing::Test {
 protected:
  // Runs one packet; returns what the kernel would get back.
  std::vector<uint8_t> Run(std::vector<uint8_t>& pkt, const packet::PacketMeta& meta = {}) {
    out_.rewritten = true;  // dirty state must not leak from a previous packet
    out_.head_len = 99;
    engine_.OnPacket(packet::Time{}, meta, pkt, out_, actions_);
    EXPECT_EQ(out_.verdict, packet::Verdict::kAccept);
    EXPECT_TRUE(actions_.forged.empty());
    if (!out_.rewritten) return pkt;
    std::vector<uint8_t> v(out_.head.begin(),
                           out_.head.begin() + static_cast<ptrdiff_t>(out_.head_len));
    v.insert(v.end(), pkt.begin() + static_cast<ptrdiff_t>(out_.tail_offset), pkt.end());
    return v;
  }
  uint64_t Count(PassCounter c) const { return engine_.counters().Get(c); }

  PassthroughEngine engine_{PassthroughEngine::Options{.send_back = true}};
  packet::PacketOut out_;
  packet::Actions actions_;
};

TEST_F(PassthroughEngineTest, ReemitsTcpUnchanged) {
  for (auto hex : packet::testing::AllGolden()) {
    auto pkt = FromHex(hex);
    const auto original = pkt;
    EXPECT_EQ(Run(pkt), original);
    EXPECT_TRUE(out_.rewritten);
    EXPECT_LT(out_.tail_offset, pkt.size() + 1);
  }
  EXPECT_EQ(Count(PassCounter::kSeen), 5u);
  EXPECT_EQ(Count(PassCounter::kIpv4), 4u);
  EXPECT_EQ(Count(PassCounter::kIpv6), 1u);
  EXPECT_EQ(Count(PassCounter::kTcp), 5u);
  EXPECT_EQ(Count(PassCounter::kReemitted), 5u);
  EXPECT_EQ(Count(PassCounter::kReemitMismatch), 0u);
}

TEST_F(PassthroughEngineTest, NonTcpAndMalformedPassUnchanged) {
  auto udp = FromHex(packet::testing::kIpv4Syn);
  udp[9] = 17;
  const auto udp_copy = udp;
  EXPECT_EQ(Run(udp), udp_copy);
  EXPECT_FALSE(out_.rewritten);
  EXPECT_EQ(Count(PassCounter::kNonTcp), 1u);

  auto frag = FromHex(packet::testing::kIpv4Syn);
  frag[6] |= 0x20;
  Run(frag);
  EXPECT_FALSE(out_.rewritten);
  EXPECT_EQ(Count(PassCounter::kFragment), 1u);

  auto truncated = FromHex(packet::testing::kIpv4Syn);
  truncated.resize(30);
  Run(truncated);
  EXPECT_FALSE(out_.rewritten);
  EXPECT_EQ(Count(PassCounter::kMalformedIp), 1u);

  std::vector<uint8_t> empty;
  Run(empty);
  EXPECT_EQ(Count(PassCounter::kMalformedIp), 2u);

  auto bad_doff = FromHex(packet::testing::kIpv4Syn);
  bad_doff[32] = 0x40;
  Run(bad_doff);
  EXPECT_EQ(Count(PassCounter::kMalformedTcp), 1u);

  auto bad_opt = FromHex(packet::testing::kIpv4Syn);
  bad_opt[41] = 0;
  Run(bad_opt);
  EXPECT_EQ(Count(PassCounter::kMalformedOptions), 1u);
  EXPECT_FALSE(out_.rewritten);

  EXPECT_EQ(Count(PassCounter::kSeen), 6u);
  EXPECT_EQ(Count(PassCounter::kTcp), 0u);
}

TEST_F(PassthroughEngineTest, ChecksumPartialGetsFullChecksum) {
  auto pkt = FromHex(packet::testing::kIpv4Data);
  // CHECKSUM_PARTIAL: the field holds the folded pseudo-header sum.
  const uint32_t ph = packet::checksum::PseudoHeaderSumV4(packet::Bytes(pkt).subspan(12, 4),
                                                          packet::Bytes(pkt).subspan(16, 4), 6,
                                                          static_cast<uint32_t>(pkt.size() - 20));
  const uint16_t valid_csum = static_cast<uint16_t>((pkt[36] << 8) | pkt[37]);
  (void)packet::Store16(pkt, 36, packet::checksum::Fold(ph));
  packet::PacketMeta meta;
  meta.csum_not_ready = true;
  meta.gso = true;
  const auto v = Run(pkt, meta);
  EXPECT_TRUE(out_.rewritten);
  EXPECT_TRUE(packet::TcpChecksumOk(v));
  EXPECT_EQ((v[36] << 8) | v[37], valid_csum);
  EXPECT_EQ(Count(PassCounter::kCsumNotReady), 1u);
  EXPECT_EQ(Count(PassCounter::kGso), 1u);
  EXPECT_EQ(Count(PassCounter::kReemitted), 1u);
}

TEST_F(PassthroughEngineTest, DefaultVerifiesReemitThenAcceptsOriginal) {
  // The default engine does all the work of a re-emit, but a packet that came out the same is
  // accepted as it was: no verdict payload, and CHECKSUM_PARTIAL stays with the kernel.
  PassthroughEngine verify;
  for (auto hex : packet::testing::AllGolden()) {
    auto pkt = FromHex(hex);
    packet::PacketMeta meta;
    meta.csum_not_ready = true;  // checksum field differs in the re-emit; still "the same"
    verify.OnPacket(packet::Time{}, meta, pkt, out_, actions_);
    EXPECT_EQ(out_.verdict, packet::Verdict::kAccept);
    EXPECT_FALSE(out_.rewritten);
  }
  EXPECT_EQ(verify.counters().Get(PassCounter::kReemitted), 5u);
  EXPECT_EQ(verify.counters().Get(PassCounter::kReemitMismatch), 0u);
  EXPECT_EQ(verify.counters().Get(PassCounter::kSentBack), 0u);
  EXPECT_EQ(engine_.counters().Get(PassCounter::kSentBack), 0u);
  auto pkt = FromHex(packet::testing::kIpv4Syn);
  Run(pkt);
  EXPECT_TRUE(out_.rewritten);
  EXPECT_EQ(Count(PassCounter::kSentBack), 1u);
}

TEST_F(PassthroughEngineTest, ParseOnlyMode) {
  PassthroughEngine quiet(PassthroughEngine::Options{.reemit = false});
  auto pkt = FromHex(packet::testing::kIpv4Syn);
  quiet.OnPacket(packet::Time{}, {}, pkt, out_, actions_);
  EXPECT_FALSE(out_.rewritten);
  EXPECT_EQ(quiet.counters().Get(PassCounter::kTcp), 1u);
  EXPECT_EQ(quiet.counters().Get(PassCounter::kReemitted), 0u);
}

TEST_F(PassthroughEngineTest, NoTimersAndNamedCounters) {
  EXPECT_FALSE(engine_.NextTimeout());
  engine_.OnTimer(packet::Time{}, actions_);
  auto pkt = FromHex(packet::testing::kIpv6ExtData);
  Run(pkt);
  std::map<std::string, uint64_t> seen;
  engine_.ForEachCounter([&](std::string_view name, uint64_t v) { seen[std::string(name)] = v; });
  EXPECT_EQ(seen.size(), static_cast<size_t>(PassCounter::kCount));
  EXPECT_EQ(seen["PassSeen"], 1u);
  EXPECT_EQ(seen["PassIpv6"], 1u);
  EXPECT_EQ(seen["PassReemitted"], 1u);
  EXPECT_EQ(seen["PassReemitMismatch"], 0u);
}

}  // namespace
}  // namespace mproxy::proxy
