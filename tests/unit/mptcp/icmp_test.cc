// Path MTU discovery through the engine (mptcp/icmp.cc): ICMP frag-needed / packet-too-big about
// our segments, translated to the local stack's view. The harness (scripted local stack and peer)
// is the shared one of engine_harness.h. ICMP messages are built and their checksums verified here
// byte by byte, independently of packet/icmp.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <set>

#include "engine_harness.h"
#include "mptcp/crypto.h"
#include "mptcp/engine.h"
#include "mptcp/options.h"
#include "packet/rng.h"
#include "packet/tcp_packet.h"

namespace mproxy::mptcp {
namespace {

using namespace packet;   // NOLINT(google-build-using-namespace): test brevity
using namespace harness;  // NOLINT(google-build-using-namespace): the shared harness

class PmtuTest : public harness::EngineHarness {
 protected:
  PmtuTest() : EngineHarness(DefaultConfig(), DefaultInterfaces()) {}
};

// --- ICMP, byte by byte (RFC 792, RFC 1191 §4, RFC 4443 §2.3/§3.2) -------------------------------

uint16_t RefSum(const std::vector<uint8_t>& d) {
  uint64_t s = 0;
  for (size_t i = 0; i < d.size(); i += 2) {
    s += (uint32_t{d[i]} << 8) | (i + 1 < d.size() ? d[i + 1] : 0);
  }
  while (s >> 16) s = (s & 0xffff) + (s >> 16);
  return static_cast<uint16_t>(~s);
}

// A router's frag-needed (v4) / packet-too-big (v6) about `segment`, quoting `quote_len` bytes of
// it, from `router` to `segment`'s source.
std::vector<uint8_t> Ptb(const std::vector<uint8_t>& segment, const IpAddress& router, uint32_t mtu,
                         size_t quote_len) {
  const bool v4 = (segment[0] >> 4) == 4;
  std::vector<uint8_t> msg;
  if (v4) {
    msg = {3, 4, 0, 0, 0, 0, static_cast<uint8_t>(mtu >> 8), static_cast<uint8_t>(mtu)};
  } else {
    msg = {2, 0, 0, 0};
    for (int i = 3; i >= 0; --i) msg.push_back(static_cast<uint8_t>(mtu >> (8 * i)));
  }
  msg.insert(msg.end(), segment.begin(),
             segment.begin() + static_cast<ptrdiff_t>(std::min(quote_len, segment.size())));
  std::vector<uint8_t> src(router.bytes().begin(), router.bytes().end());
  std::vector<uint8_t> dst(segment.begin() + (v4 ? 12 : 8), segment.begin() + (v4 ? 16 : 24));
  std::vector<uint8_t> pkt;
  if (v4) {
    const size_t total = 20 + msg.size();
    pkt = {0x45,
           0xc0,
           static_cast<uint8_t>(total >> 8),
           static_cast<uint8_t>(total),
           0,
           0,
           0,
           0,
           64,
           1,
           0,
           0};
    pkt.insert(pkt.end(), src.begin(), src.end());
    pkt.insert(pkt.end(), dst.begin(), dst.end());
    const uint16_t hc = RefSum(pkt);
    pkt[10] = static_cast<uint8_t>(hc >> 8);
    pkt[11] = static_cast<uint8_t>(hc);
    const uint16_t c = RefSum(msg);
    msg[2] = static_cast<uint8_t>(c >> 8);
    msg[3] = static_cast<uint8_t>(c);
  } else {
    pkt = {0x60, 0, 0, 0, static_cast<uint8_t>(msg.size() >> 8), static_cast<uint8_t>(msg.size()),
           58,   64};
    pkt.insert(pkt.end(), src.begin(), src.end());
    pkt.insert(pkt.end(), dst.begin(), dst.end());
    std::vector<uint8_t> ph(pkt.begin() + 8, pkt.begin() + 40);
    ph.insert(ph.end(), {0, 0, static_cast<uint8_t>(msg.size() >> 8),
                         static_cast<uint8_t>(msg.size()), 0, 0, 0, 58});
    ph.insert(ph.end(), msg.begin(), msg.end());
    const uint16_t c = RefSum(ph);
    msg[2] = static_cast<uint8_t>(c >> 8);
    msg[3] = static_cast<uint8_t>(c);
  }
  pkt.insert(pkt.end(), msg.begin(), msg.end());
  return pkt;
}

struct Quote {
  bool icmp_ok = false;      // ICMP checksum valid (v6 with the pseudo-header)
  bool quote_ip_ok = false;  // quoted IPv4 header checksum valid (always true for v6)
  uint32_t mtu = 0;
  FourTuple tuple;
  uint32_t seq = 0;
};

Quote Read(const std::vector<uint8_t>& pkt) {
  Quote q;
  const bool v4 = (pkt[0] >> 4) == 4;
  const size_t icmp = v4 ? size_t{pkt[0] & 0xfu} * 4 : 40;
  std::vector<uint8_t> msg(pkt.begin() + static_cast<ptrdiff_t>(icmp), pkt.end());
  if (v4) {
    q.icmp_ok = RefSum(msg) == 0;
    q.mtu = uint32_t{msg[6]} << 8 | msg[7];
  } else {
    std::vector<uint8_t> ph(pkt.begin() + 8, pkt.begin() + 40);
    ph.insert(ph.end(), {0, 0, static_cast<uint8_t>(msg.size() >> 8),
                         static_cast<uint8_t>(msg.size()), 0, 0, 0, 58});
    ph.insert(ph.end(), msg.begin(), msg.end());
    q.icmp_ok = RefSum(ph) == 0;
    q.mtu = uint32_t{msg[4]} << 24 | uint32_t{msg[5]} << 16 | uint32_t{msg[6]} << 8 | msg[7];
  }
  const size_t in = 8;
  const size_t ihl = v4 ? size_t{msg[in] & 0xfu} * 4 : 40;
  q.quote_ip_ok =
      !v4 || RefSum(std::vector<uint8_t>(msg.begin() + in, msg.begin() + in + ihl)) == 0;
  const size_t a = in + (v4 ? 12 : 8), alen = v4 ? 4 : 16;
  q.tuple.src = *(v4 ? IpAddress::V4(Bytes(msg).subspan(a, alen))
                     : IpAddress::V6(Bytes(msg).subspan(a, alen)));
  q.tuple.dst = *(v4 ? IpAddress::V4(Bytes(msg).subspan(a + alen, alen))
                     : IpAddress::V6(Bytes(msg).subspan(a + alen, alen)));
  const size_t t = in + ihl;
  q.tuple.sport = static_cast<uint16_t>(msg[t] << 8 | msg[t + 1]);
  q.tuple.dport = static_cast<uint16_t>(msg[t + 2] << 8 | msg[t + 3]);
  q.seq = uint32_t{msg[t + 4]} << 24 | uint32_t{msg[t + 5]} << 16 | uint32_t{msg[t + 6]} << 8 |
          msg[t + 7];
  return q;
}

const IpAddress kRouter = *IpAddress::Parse("198.18.9.1");

// The engine's answer to an inbound ICMP: the bytes it lets through (patched in place or not).
std::vector<uint8_t> Deliver(Engine& e, std::vector<uint8_t> pkt, PacketOut& out) {
  Actions a;
  PacketMeta meta;
  meta.hook = Hook::kPreRouting;
  e.OnPacket(Time{}, meta, MutableBytes(pkt), out, a);
  EXPECT_TRUE(a.forged.empty());
  EXPECT_FALSE(out.rewritten);
  EXPECT_EQ(out.verdict, Verdict::kAccept);
  return pkt;
}

// Single path: the wire segment is the local stack's (tuple, SSN == TSN): only the MTU changes, by
// the 28 bytes a DSS adds next to the stack's timestamps.
TEST_F(PmtuTest, InitialSubflowOnOnePathLowersTheMtu) {
  ASSERT_NO_FATAL_FAILURE(Establish());
  Seen d = Out({.seq = kIsnA + 101,
                .ack = kIsnB + 101,
                .ts = TimestampsOption{1004, 5010},
                .payload = Payload(1200, 3)});
  ASSERT_EQ(d.tuple, LocalTuple());
  PacketOut out;
  auto icmp = Ptb(d.bytes, kRouter, 1280, 548);
  const auto sent = icmp;
  auto got = Deliver(engine_, icmp, out);
  EXPECT_TRUE(out.patched_in_place);
  Quote q = Read(got);
  EXPECT_TRUE(q.icmp_ok);
  EXPECT_TRUE(q.quote_ip_ok);
  EXPECT_EQ(q.tuple, LocalTuple());
  EXPECT_EQ(q.seq, kIsnA + 101);
  EXPECT_EQ(q.mtu, 1280u - 28);
  // Only the MTU and the checksum differ.
  size_t diffs = 0;
  for (size_t i = 0; i < got.size(); ++i) diffs += got[i] != sent[i];
  EXPECT_LE(diffs, 4u);
  EXPECT_TRUE(std::equal(got.begin(), got.begin() + 20, sent.begin()));
  EXPECT_EQ(engine_.counter(Counter::kIcmpPtbRx), 1u);
  EXPECT_EQ(engine_.counter(Counter::kIcmpPtbTranslated), 1u);
  EXPECT_EQ(engine_.counter(Counter::kMalformed), 0u);

  // The stack now sizes its segments for 1252 bytes (IP + TCP + 12 option bytes + 1200); with our
  // DSS the packet is 1278 and its route's exception (1252) would refuse it: DF is cleared, the
  // header checksum stays valid. A segment that still fits keeps DF.
  Seen big = Out({.seq = kIsnA + 1301,
                  .ack = kIsnB + 101,
                  .ts = TimestampsOption{1005, 5010},
                  .payload = Payload(1200, 4)});
  ASSERT_GT(big.bytes.size(), 1252u);
  EXPECT_EQ(big.bytes[6] & 0x40, 0);
  EXPECT_EQ(RefSum(std::vector<uint8_t>(big.bytes.begin(), big.bytes.begin() + 20)), 0);
  EXPECT_TRUE(big.checksum_ok);
  Seen small = Out({.seq = kIsnA + 2501,
                    .ack = kIsnB + 101,
                    .ts = TimestampsOption{1006, 5010},
                    .payload = Payload(1000, 5)});
  EXPECT_EQ(small.bytes[6] & 0x40, 0x40);
  EXPECT_EQ(engine_.counter(Counter::kPmtuDfCleared), 1u);
}

// After a handover the segment went out on the join: its tuple and SSN become the local stack's
// tuple and TSN (SEND table), the MTU is lowered, both checksums are right.
TEST_F(PmtuTest, JoinAfterHandoverIsTranslatedToTheLocalView) {
  ASSERT_NO_FATAL_FAILURE(Establish());
  const FourTuple w = JoinAndHandover();
  TakeForged();
  (void)Out({.seq = kIsnA + 101, .ack = kIsnB + 101, .payload = Payload(300, 4)});
  Seen d = Out({.seq = kIsnA + 401,
                .ack = kIsnB + 101,
                .ts = TimestampsOption{1010, 5010},
                .payload = Payload(1200, 5)});
  ASSERT_EQ(d.tuple, w);
  const uint32_t jisn = join_syn_.tcp.seq;
  ASSERT_EQ(d.tcp.seq, jisn + 301);
  for (size_t quote : {size_t{28 + 20}, size_t{548}, size_t{1232}}) {
    PacketOut out;
    // The router's message goes to the join's address: the outer destination stays it.
    auto got = Deliver(engine_, Ptb(d.bytes, kRouter, 1300, quote), out);
    EXPECT_TRUE(out.patched_in_place);
    Quote q = Read(got);
    EXPECT_TRUE(q.icmp_ok);
    EXPECT_TRUE(q.quote_ip_ok);
    EXPECT_EQ(q.tuple, LocalTuple());
    EXPECT_EQ(q.seq, kIsnA + 401);
    EXPECT_EQ(q.mtu, 1300u - 28);
    EXPECT_TRUE(std::equal(got.begin() + 16, got.begin() + 20, w.src.bytes().begin()));
  }
  // A segment of the initial subflow from before the handover: its SSN maps back too.
  Seen r = Out({.seq = kIsnA + 101, .ack = kIsnB + 101, .payload = Payload(300, 4)});
  ASSERT_EQ(r.tuple, w);  // (new data went to the join: offsets 100..400 are on it)
  PacketOut out;
  Quote q = Read(Deliver(engine_, Ptb(r.bytes, kRouter, 1300, 548), out));
  EXPECT_EQ(q.seq, kIsnA + 101);
  EXPECT_EQ(engine_.counter(Counter::kIcmpPtbTranslated), 4u);
  EXPECT_EQ(engine_.counter(Counter::kIcmpPtbSeqUnmapped), 0u);
}

// An SSN the SEND table no longer knows (acknowledged, or never ours) gets the local stack's
// snd_una, which its window check accepts.
TEST_F(PmtuTest, UnmappedSsnBecomesTheStacksSndUna) {
  ASSERT_NO_FATAL_FAILURE(Establish());
  const FourTuple w = JoinAndHandover();
  TakeForged();
  Seen d = Out({.seq = kIsnA + 101, .ack = kIsnB + 101, .payload = Payload(1000, 4)});
  ASSERT_EQ(d.tuple, w);
  auto icmp = Ptb(d.bytes, kRouter, 1280, 548);
  // Rewrite the quoted seq far ahead (bytes 28+4..28+8 of the quote's TCP header), checksums fixed.
  icmp[48 + 4] ^= 0x40;
  icmp[22] = icmp[23] = 0;
  const uint16_t c = RefSum(std::vector<uint8_t>(icmp.begin() + 20, icmp.end()));
  icmp[22] = static_cast<uint8_t>(c >> 8);
  icmp[23] = static_cast<uint8_t>(c);
  PacketOut out;
  Quote q = Read(Deliver(engine_, icmp, out));
  EXPECT_TRUE(q.icmp_ok);
  EXPECT_EQ(q.tuple, LocalTuple());
  EXPECT_EQ(q.seq, kIsnA + 101);  // the peer's DATA_ACK so far: offset 100
  EXPECT_EQ(engine_.counter(Counter::kIcmpPtbSeqUnmapped), 1u);
}

TEST_F(PmtuTest, NotOursPassesUnchanged) {
  ASSERT_NO_FATAL_FAILURE(Establish());
  Seen d = Out({.seq = kIsnA + 101, .ack = kIsnB + 101, .payload = Payload(1200, 3)});
  // Another connection's segment.
  auto other = Build(FourTuple{Addr("198.18.1.2"), Addr("198.18.3.2"), 40001, 5201},
                     {.seq = 5, .ack = 6, .payload = Payload(1200, 3)});
  auto icmp = Ptb(other, kRouter, 1280, 548);
  PacketOut out;
  EXPECT_EQ(Deliver(engine_, icmp, out), icmp);
  EXPECT_FALSE(out.patched_in_place);
  EXPECT_EQ(engine_.counter(Counter::kIcmpPtbNotOurs), 1u);
  // An echo request and a port unreachable: other ICMP.
  auto port = Ptb(d.bytes, kRouter, 0, 548);
  port[21] = 3;
  port[22] = port[23] = 0;
  const uint16_t c = RefSum(std::vector<uint8_t>(port.begin() + 20, port.end()));
  port[22] = static_cast<uint8_t>(c >> 8);
  port[23] = static_cast<uint8_t>(c);
  EXPECT_EQ(Deliver(engine_, port, out), port);
  EXPECT_EQ(engine_.counter(Counter::kIcmpOther), 1u);
  EXPECT_EQ(engine_.counter(Counter::kIcmpPtbTranslated), 0u);
  EXPECT_EQ(engine_.counter(Counter::kMalformed), 0u);
}

TEST_F(PmtuTest, TruncatedQuotesAndBadChecksumsPassUnchanged) {
  ASSERT_NO_FATAL_FAILURE(Establish());
  Seen d = Out({.seq = kIsnA + 101, .ack = kIsnB + 101, .payload = Payload(1200, 3)});
  uint64_t malformed = 0;
  for (size_t quote = 0; quote < 28; ++quote) {
    auto icmp = Ptb(d.bytes, kRouter, 1280, quote);
    PacketOut out;
    EXPECT_EQ(Deliver(engine_, icmp, out), icmp) << quote;
    EXPECT_FALSE(out.patched_in_place);
    ++malformed;
  }
  EXPECT_EQ(engine_.counter(Counter::kIcmpMalformed), malformed);
  // A whole quote with a bad ICMP checksum: the stack would drop it; so it stays bad.
  auto icmp = Ptb(d.bytes, kRouter, 1280, 548);
  icmp[23] ^= 1;
  PacketOut out;
  EXPECT_EQ(Deliver(engine_, icmp, out), icmp);
  EXPECT_EQ(engine_.counter(Counter::kIcmpMalformed), malformed + 1);
  // And every prefix of a valid message never crashes and never changes the bytes it was given
  // beyond a translation of a complete one.
  auto full = Ptb(d.bytes, kRouter, 1280, 548);
  for (size_t n = 0; n < full.size(); ++n) {
    std::vector<uint8_t> cut(full.begin(), full.begin() + static_cast<ptrdiff_t>(n));
    PacketOut o;
    EXPECT_EQ(Deliver(engine_, cut, o), cut) << n;
  }
  EXPECT_EQ(engine_.counter(Counter::kIcmpPtbTranslated), 0u);
}

// Without timestamps the stack's segments carry no options of their own: ours may fill all 40.
TEST_F(PmtuTest, WithoutTimestampsTheMtuDropsByTheWholeOptionArea) {
  (void)Out({.seq = kIsnA, .flags = tcp_flags::kSyn, .window = 64240, .mss = 1460});
  MpCapable synack;
  synack.form = MpCapable::Form::kSynAck;
  synack.sender_key = kKeyB;
  (void)In({.seq = kIsnB,
            .ack = kIsnA + 1,
            .flags = tcp_flags::kSyn | tcp_flags::kAck,
            .mss = 1460,
            .mptcp = {synack}});
  ASSERT_NE(Conn(), nullptr);
  Seen d = Out({.seq = kIsnA + 1, .ack = kIsnB + 1, .payload = Payload(1000, 3)});
  PacketOut out;
  Quote q = Read(Deliver(engine_, Ptb(d.bytes, kRouter, 1280, 548), out));
  EXPECT_TRUE(q.icmp_ok);
  EXPECT_EQ(q.mtu, 1280u - 40);
  EXPECT_EQ(q.seq, kIsnA + 1);
}

// IPv6: the lowered MTU is never below 1280, which Linux would ignore (tcp_v6_err()).
TEST_F(PmtuTest, Ipv6PacketTooBigIsTranslatedAndFloored) {
  const FourTuple t{Addr("2001:db8:1::2"), Addr("2001:db8:3::2"), 40001, 5201};
  (void)Run(
      Hook::kLocalOut,
      Build(t,
            {.seq = kIsnA, .flags = tcp_flags::kSyn, .mss = 1440, .ts = TimestampsOption{1, 0}}));
  MpCapable synack;
  synack.form = MpCapable::Form::kSynAck;
  synack.sender_key = kKeyB;
  (void)Run(Hook::kPreRouting, Build(t.Reversed(), {.seq = kIsnB,
                                                    .ack = kIsnA + 1,
                                                    .flags = tcp_flags::kSyn | tcp_flags::kAck,
                                                    .mss = 1440,
                                                    .ts = TimestampsOption{2, 1},
                                                    .mptcp = {synack}}));
  Seen d = Run(Hook::kLocalOut, Build(t, {.seq = kIsnA + 1,
                                          .ack = kIsnB + 1,
                                          .ts = TimestampsOption{3, 2},
                                          .payload = Payload(1300, 1)}));
  ASSERT_EQ(d.tuple, t);
  const IpAddress router6 = Addr("2001:db8:9::1");
  for (auto [mtu, want] : {std::pair{1400u, 1372u}, std::pair{1300u, 1280u}}) {
    PacketOut out;
    Quote q = Read(Deliver(engine_, Ptb(d.bytes, router6, mtu, 1232), out));
    EXPECT_TRUE(q.icmp_ok);
    EXPECT_EQ(q.tuple, t);
    EXPECT_EQ(q.seq, kIsnA + 1);
    EXPECT_EQ(q.mtu, want);
  }
  EXPECT_EQ(engine_.counter(Counter::kIcmpPtbTranslated), 2u);
  EXPECT_EQ(engine_.counter(Counter::kIcmpPtbV6Floor), 1u);
}

}  // namespace
}  // namespace mproxy::mptcp
