// The MPTCP engine driven with hand-built packets: a local "TCP stack" on one side, a native-like
// MPTCP peer on the other. Every output is parsed back (IP, TCP, checksums, MPTCP options) and
// checked against RFC 8684 / the interop reference.
#include "mptcp/engine.h"

#include <gtest/gtest.h>

#include "mptcp/crypto.h"
#include "mptcp/options.h"
#include "packet/checksum.h"
#include "packet/rng.h"
#include "packet/tcp_packet.h"

namespace mproxy::mptcp {
namespace {

using namespace packet;  // NOLINT(google-build-using-namespace): test brevity

constexpr uint64_t kKeyB = 0x0102030405060708ULL;  // the peer's key
constexpr uint32_t kIsnA = 1000;                     // local stack's ISN
constexpr uint32_t kIsnB = 0xfffffff0;               // peer's ISN: its stream wraps 2^32 at once

FourTuple LocalTuple() {
  return FourTuple{*IpAddress::Parse("198.18.1.2"), *IpAddress::Parse("198.18.3.2"), 40000, 5201};
}

struct Seg {
  uint32_t seq = 0, ack = 0;
  uint8_t flags = tcp_flags::kAck;
  uint16_t window = 500;
  uint16_t mss = 0;
  bool ts = true;
  std::vector<Option> mptcp{};
  std::vector<SackBlock> sack{};
  std::vector<uint8_t> payload{};
};

std::vector<uint8_t> Build(const FourTuple& t, const Seg& s) {
  TcpHeader h;
  h.sport = t.sport;
  h.dport = t.dport;
  h.seq = s.seq;
  h.ack = s.ack;
  h.flags = s.flags;
  h.window = s.window;
  TcpOptionList o;
  if (s.mss) {
    EXPECT_TRUE(o.AddMss(s.mss));
  }
  if (s.ts) {
    EXPECT_TRUE(o.AddNop() && o.AddNop() && o.AddTimestamps({111, 222}));
  }
  if (!s.sack.empty()) {
    EXPECT_TRUE(o.AddNop() && o.AddNop() && o.AddSack(s.sack));
  }
  for (const Option& m : s.mptcp) {
    std::array<uint8_t, 40> buf{};
    ByteWriter w(buf);
    EXPECT_TRUE(Emit(m, w));
    EXPECT_TRUE(o.AddRaw(kMptcpOptionKind, Bytes(buf).subspan(2, w.offset() - 2)));
  }
  auto pkt = BuildTcpPacket(t, h, o, s.payload);
  EXPECT_TRUE(pkt.ok());
  return pkt.value();
}

struct Seen {
  Verdict verdict = Verdict::kAccept;
  std::vector<uint8_t> bytes;
  TcpHeader tcp;
  TcpOptionList options;
  SegmentOptions mp;
  size_t mptcp_options = 0;
  std::vector<uint8_t> payload;
  bool checksum_ok = false;
  bool rewritten = false;  // the verdict carried new bytes
};

Seen Inspect(Verdict v, std::vector<uint8_t> bytes) {
  Seen s;
  s.verdict = v;
  s.bytes = bytes;
  s.checksum_ok = TcpChecksumOk(bytes);
  auto p = ParseTcpPacket(MutableBytes(bytes));
  EXPECT_TRUE(p.ok());
  if (!p.ok()) return s;
  s.tcp = p->tcp;
  s.options = p->options;
  s.payload.assign(p->payload().begin(), p->payload().end());
  std::vector<Bytes> raw;
  for (size_t i = 0; i < p->options.size(); ++i) {
    if (p->options[i].kind == kMptcpOptionKind) raw.push_back(p->options[i].raw);
  }
  s.mptcp_options = raw.size();
  s.mp = ParseSegmentOptions(SegmentFlags{p->tcp.has(tcp_flags::kSyn), p->tcp.has(tcp_flags::kAck),
                                          p->tcp.has(tcp_flags::kRst), p->payload_len > 0},
                             raw);
  return s;
}

class EngineTest : public ::testing::Test {
 protected:
  explicit EngineTest(EngineConfig cfg = {}) : rng_(7), engine_(Config(cfg), rng_) {}
  static EngineConfig Config(EngineConfig c) {
    if (c.ports.empty()) c.ports = {5201};
    return c;
  }

  Seen Run(Hook hook, std::vector<uint8_t> pkt) {
    PacketOut out;
    Actions actions;
    PacketMeta meta;
    meta.hook = hook;
    std::vector<uint8_t> original = pkt;
    engine_.OnPacket(now_, meta, MutableBytes(pkt), out, actions);
    for (auto& f : actions.forged) forged_.push_back(std::move(f.bytes));
    std::vector<uint8_t> result;
    if (out.rewritten) {
      result.assign(out.head.begin(), out.head.begin() + static_cast<long>(out.head_len));
      result.insert(result.end(), pkt.begin() + static_cast<long>(out.tail_offset), pkt.end());
    } else {
      result = pkt;
      if (!out.patched_in_place) {
        EXPECT_EQ(result, original) << "changed without saying so";
      }
    }
    Seen seen = Inspect(out.verdict, result);
    seen.rewritten = out.rewritten;
    return seen;
  }
  Seen Out(const Seg& s) { return Run(Hook::kLocalOut, Build(LocalTuple(), s)); }
  Seen In(const Seg& s) { return Run(Hook::kPreRouting, Build(LocalTuple().Reversed(), s)); }

  const Connection* Conn() {
    const Connection* found = nullptr;
    engine_.ForEachConnection([&](const Connection& c) { found = &c; });
    return found;
  }

  // Active open through to an established connection.
  void Establish() {
    Seen syn = Out({.seq = kIsnA, .ack = 0, .flags = tcp_flags::kSyn, .mss = 1460});
    ASSERT_TRUE(syn.mp.mp_capable);
    MpCapable synack;
    synack.form = MpCapable::Form::kSynAck;
    synack.sender_key = kKeyB;
    Seen sa = In({.seq = kIsnB, .ack = kIsnA + 1, .flags = tcp_flags::kSyn | tcp_flags::kAck,
                  .mss = 1460, .mptcp = {synack}});
    ASSERT_EQ(sa.mptcp_options, 0u);
    ASSERT_NE(Conn(), nullptr);
    key_a_ = Conn()->local_key;
    idsn_a_ = DeriveFromKey(key_a_)->idsn;
    idsn_b_ = DeriveFromKey(kKeyB)->idsn;
  }

  // The peer's DSS: DATA_ACK of our tx offset, mapping of its rx offset.
  Dss PeerDss(uint64_t acked_off, std::optional<std::pair<uint64_t, uint16_t>> map = {},
              uint32_t ssn_off = 0) {
    Dss d;
    d.data_ack = DssDataAck{idsn_a_ + 1 + acked_off, true};
    if (map) {
      DssMapping m;
      m.dsn = idsn_b_ + 1 + map->first;
      m.dsn64 = true;
      m.ssn = ssn_off + 1;
      m.data_len = map->second;
      d.mapping = m;
    }
    return d;
  }

  SplitMix64 rng_;
  Engine engine_;
  Time now_{};
  std::vector<std::vector<uint8_t>> forged_;
  uint64_t key_a_ = 0, idsn_a_ = 0, idsn_b_ = 0;
};

std::vector<uint8_t> Payload(size_t n, uint8_t seed) {
  std::vector<uint8_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<uint8_t>(seed + i * 7);
  return v;
}

TEST_F(EngineTest, ActiveOpenHandshakeAndData) {
  Seen syn = Out({.seq = kIsnA, .ack = 0, .flags = tcp_flags::kSyn, .mss = 1460});
  EXPECT_TRUE(syn.checksum_ok);
  ASSERT_TRUE(syn.mp.mp_capable);
  EXPECT_EQ(syn.mp.mp_capable->form, MpCapable::Form::kSyn);
  EXPECT_EQ(syn.mp.mp_capable->flags, 0x01);  // interop §1.2: 1e 04 01 01
  EXPECT_EQ(syn.options.Mss(), 1460);         // our SYN's MSS is for the peer: unchanged
  EXPECT_EQ(engine_.counter(Counter::kActiveOpen), 1u);

  MpCapable synack;
  synack.form = MpCapable::Form::kSynAck;
  synack.sender_key = kKeyB;
  Seen sa = In({.seq = kIsnB, .ack = kIsnA + 1, .flags = tcp_flags::kSyn | tcp_flags::kAck,
                .mss = 1460, .mptcp = {synack}});
  EXPECT_TRUE(sa.checksum_ok);
  EXPECT_EQ(sa.mptcp_options, 0u);          // the local stack sees plain TCP
  EXPECT_EQ(sa.options.Mss(), 1460 - 28);   // room for our DSS (architecture pitfall 2)
  EXPECT_EQ(sa.tcp.seq, kIsnB);
  EXPECT_TRUE(sa.options.Timestamps());
  ASSERT_NE(Conn(), nullptr);
  EXPECT_EQ(Conn()->state, ConnState::kEstablished);
  const uint64_t key_a = Conn()->local_key;
  const uint64_t idsn_a = DeriveFromKey(key_a)->idsn, idsn_b = DeriveFromKey(kKeyB)->idsn;
  EXPECT_NE(key_a, 0u);
  EXPECT_EQ(Conn()->local_token, DeriveFromKey(key_a)->token);

  // Third ACK: MP_CAPABLE ACK with our key then the peer's (interop §1.2).
  Seen third = Out({.seq = kIsnA + 1, .ack = kIsnB + 1});
  ASSERT_TRUE(third.mp.mp_capable);
  EXPECT_EQ(third.mp.mp_capable->form, MpCapable::Form::kAck);
  EXPECT_EQ(third.mp.mp_capable->sender_key, key_a);
  EXPECT_EQ(third.mp.mp_capable->receiver_key, kKeyB);
  EXPECT_TRUE(third.checksum_ok);

  // First data before any DSS from the peer: MP_CAPABLE + data-level length.
  Seen d1 = Out({.seq = kIsnA + 1, .ack = kIsnB + 1, .payload = Payload(100, 1)});
  ASSERT_TRUE(d1.mp.mp_capable);
  EXPECT_EQ(d1.mp.mp_capable->form, MpCapable::Form::kAckData);
  EXPECT_EQ(d1.mp.mp_capable->data_len, 100);
  EXPECT_EQ(d1.payload, Payload(100, 1));
  EXPECT_TRUE(d1.checksum_ok);

  // The peer's data with a DSS: ack 64-bit, mapping DSN = IDSN_B + 1 at SSN 1.
  Dss d;
  d.data_ack = DssDataAck{idsn_a + 1 + 100, true};
  d.mapping = DssMapping{idsn_b + 1, true, 1, 50, std::nullopt};
  Seen r1 = In({.seq = kIsnB + 1, .ack = kIsnA + 101, .mptcp = {d}, .payload = Payload(50, 9)});
  EXPECT_EQ(r1.verdict, Verdict::kAccept);
  // SSN == TSN and DATA_ACK == subflow ACK: nothing to translate, the packet is left as it is
  // (its DSS is an option the local plain TCP socket skips).
  EXPECT_FALSE(r1.rewritten);
  EXPECT_EQ(r1.mptcp_options, 1u);
  EXPECT_EQ(engine_.counter(Counter::kInboundKeptDss), 1u);
  EXPECT_EQ(r1.tcp.seq, kIsnB + 1);
  EXPECT_EQ(r1.tcp.ack, kIsnA + 101);
  EXPECT_EQ(r1.payload, Payload(50, 9));
  EXPECT_TRUE(r1.checksum_ok);

  // A DATA_ACK behind the subflow ACK (the peer acknowledged the subflow, not yet the data): the
  // local stack must see the DATA_ACK, so this one is translated and the DSS removed.
  d.data_ack = DssDataAck{idsn_a + 1 + 60, true};
  d.mapping = DssMapping{idsn_b + 1 + 50, true, 51, 10, std::nullopt};
  Seen r2 = In({.seq = kIsnB + 51, .ack = kIsnA + 101, .mptcp = {d}, .payload = Payload(10, 9)});
  EXPECT_TRUE(r2.rewritten);
  EXPECT_EQ(r2.mptcp_options, 0u);
  EXPECT_EQ(r2.tcp.ack, kIsnA + 61);
  EXPECT_TRUE(r2.checksum_ok);
  EXPECT_EQ(engine_.counter(Counter::kInboundKeptDss), 1u);

  // Now a regular DSS: DATA_ACK from the TCP ACK, mapping DSN/SSN/length of exactly this payload.
  Seen d2 = Out({.seq = kIsnA + 101, .ack = kIsnB + 51, .payload = Payload(200, 3)});
  ASSERT_TRUE(d2.mp.dss);
  ASSERT_TRUE(d2.mp.dss->data_ack);
  EXPECT_TRUE(d2.mp.dss->data_ack->is64);
  EXPECT_EQ(d2.mp.dss->data_ack->value, idsn_b + 1 + 50);
  ASSERT_TRUE(d2.mp.dss->mapping);
  EXPECT_EQ(d2.mp.dss->mapping->dsn, idsn_a + 1 + 100);
  EXPECT_TRUE(d2.mp.dss->mapping->dsn64);
  EXPECT_EQ(d2.mp.dss->mapping->ssn, 101u);
  EXPECT_EQ(d2.mp.dss->mapping->data_len, 200);
  EXPECT_FALSE(d2.mp.dss->mapping->checksum);
  EXPECT_EQ(d2.tcp.seq, kIsnA + 101);  // one path: sequence numbers are never rewritten
  EXPECT_EQ(d2.tcp.ack, kIsnB + 51);
  EXPECT_TRUE(d2.checksum_ok);

  // Pure ACK: DATA_ACK only.
  Seen a = Out({.seq = kIsnA + 301, .ack = kIsnB + 51});
  ASSERT_TRUE(a.mp.dss);
  EXPECT_FALSE(a.mp.dss->mapping);
  EXPECT_EQ(engine_.counter(Counter::kConverted), 1u);
}

TEST_F(EngineTest, ReinjectedDataIsMappedAndSubflowAckProjected) {
  ASSERT_NO_FATAL_FAILURE(Establish());
  (void)Out({.seq = kIsnA + 1, .ack = kIsnB + 1});
  // SSN 0..50 -> DSN 0..50; then the peer reinjects DSN 0..50 at SSN 50..100 and continues with
  // DSN 50..100 at SSN 100..150 (Linux MPTCP-level retransmission on the same subflow).
  Seen a = In({.seq = kIsnB + 1, .ack = kIsnA + 1, .mptcp = {PeerDss(0, {{0, 50}}, 0)},
               .payload = Payload(50, 1)});
  Seen b = In({.seq = kIsnB + 51, .ack = kIsnA + 1, .mptcp = {PeerDss(0, {{0, 50}}, 50)},
               .payload = Payload(50, 1)});
  Seen c = In({.seq = kIsnB + 101, .ack = kIsnA + 1, .mptcp = {PeerDss(0, {{50, 50}}, 100)},
               .payload = Payload(50, 2)});
  EXPECT_EQ(a.tcp.seq, kIsnB + 1);
  EXPECT_EQ(b.tcp.seq, kIsnB + 1);  // the duplicate lands where the local stack already has it
  EXPECT_EQ(c.tcp.seq, kIsnB + 51);
  // Local ACK of TSN offset 30: DATA_ACK 30, subflow ACK 30 (only the first mapping's bytes).
  Seen p = Out({.seq = kIsnA + 1, .ack = kIsnB + 31});
  EXPECT_EQ(p.mp.dss->data_ack->value, idsn_b_ + 1 + 30);
  EXPECT_EQ(p.tcp.ack, kIsnB + 31);
  // Local ACK of TSN offset 100: every subflow byte maps below it, so SAN = SSN offset 150.
  Seen q = Out({.seq = kIsnA + 1, .ack = kIsnB + 101});
  EXPECT_EQ(q.mp.dss->data_ack->value, idsn_b_ + 1 + 100);
  EXPECT_EQ(q.tcp.ack, kIsnB + 151);
}

TEST_F(EngineTest, PeerWithoutMpCapableFallsBackUntouched) {
  (void)Out({.seq = kIsnA, .flags = tcp_flags::kSyn, .mss = 1460});
  auto sa = Build(LocalTuple().Reversed(), {.seq = kIsnB, .ack = kIsnA + 1,
                                            .flags = tcp_flags::kSyn | tcp_flags::kAck,
                                            .mss = 1460});
  Seen s = Run(Hook::kPreRouting, sa);
  EXPECT_EQ(s.bytes, sa);  // passed unchanged: no clamping for a plain connection
  EXPECT_EQ(engine_.counter(Counter::kFallbackNoMpcSynAck), 1u);
  EXPECT_EQ(engine_.connection_count(), 0u);
  auto data = Build(LocalTuple(), {.seq = kIsnA + 1, .ack = kIsnB + 1, .payload = Payload(10, 1)});
  Seen d = Run(Hook::kLocalOut, data);
  EXPECT_EQ(d.bytes, data);
  EXPECT_EQ(d.mptcp_options, 0u);
}

TEST_F(EngineTest, PassiveOpenWithNativeClient) {
  MpCapable syn;  // a native Linux client: 1e 04 01 01
  Seen s = In({.seq = kIsnB, .flags = tcp_flags::kSyn, .mss = 1460, .mptcp = {syn}});
  EXPECT_EQ(s.mptcp_options, 0u);
  EXPECT_EQ(s.options.Mss(), 1432);
  EXPECT_EQ(engine_.counter(Counter::kPassiveOpen), 1u);
  Seen sa = Out({.seq = kIsnA, .ack = kIsnB + 1, .flags = tcp_flags::kSyn | tcp_flags::kAck,
                 .mss = 1460});
  ASSERT_TRUE(sa.mp.mp_capable);
  EXPECT_EQ(sa.mp.mp_capable->form, MpCapable::Form::kSynAck);
  const uint64_t key_a = sa.mp.mp_capable->sender_key;
  EXPECT_EQ(key_a, Conn()->local_key);
  idsn_a_ = DeriveFromKey(key_a)->idsn;
  idsn_b_ = DeriveFromKey(kKeyB)->idsn;

  // The client's MP_CAPABLE + data (its third ACK was lost): keys, implicit mapping at SSN 1.
  MpCapable data;
  data.form = MpCapable::Form::kAckData;
  data.sender_key = kKeyB;
  data.receiver_key = key_a;
  data.data_len = 10;
  Seen d = In({.seq = kIsnB + 1, .ack = kIsnA + 1, .mptcp = {data}, .payload = Payload(10, 4)});
  EXPECT_EQ(d.verdict, Verdict::kAccept);
  EXPECT_EQ(d.mptcp_options, 0u);
  EXPECT_EQ(d.tcp.seq, kIsnB + 1);
  EXPECT_EQ(d.payload, Payload(10, 4));
  EXPECT_EQ(engine_.counter(Counter::kConverted), 1u);
  // Our first segment must carry a DSS with DATA_ACK (interop rule 4): 64-bit, IDSN_B + 1 + 10.
  Seen ack = Out({.seq = kIsnA + 1, .ack = kIsnB + 11});
  ASSERT_TRUE(ack.mp.dss);
  ASSERT_TRUE(ack.mp.dss->data_ack);
  EXPECT_EQ(ack.mp.dss->data_ack->value, idsn_b_ + 1 + 10);
  EXPECT_FALSE(ack.mp.mp_capable);
}

TEST_F(EngineTest, PassiveThirdAckWithWrongKeyFallsBack) {
  MpCapable syn;
  (void)In({.seq = kIsnB, .flags = tcp_flags::kSyn, .mss = 1460, .mptcp = {syn}});
  (void)Out({.seq = kIsnA, .ack = kIsnB + 1, .flags = tcp_flags::kSyn | tcp_flags::kAck});
  MpCapable ack;
  ack.form = MpCapable::Form::kAck;
  ack.sender_key = kKeyB;
  ack.receiver_key = 0x5555;  // not the key we sent
  auto pkt = Build(LocalTuple().Reversed(), {.seq = kIsnB + 1, .ack = kIsnA + 1, .mptcp = {ack}});
  Seen s = Run(Hook::kPreRouting, pkt);
  EXPECT_EQ(engine_.counter(Counter::kBadAckKeys), 1u);
  EXPECT_EQ(engine_.counter(Counter::kFallbackNoMpcAck), 1u);
  EXPECT_EQ(engine_.connection_count(), 0u);
}

TEST_F(EngineTest, CloseBothWaysFreesState) {
  ASSERT_NO_FATAL_FAILURE(Establish());
  (void)Out({.seq = kIsnA + 1, .ack = kIsnB + 1});
  (void)In({.seq = kIsnB + 1, .ack = kIsnA + 1, .mptcp = {PeerDss(0)}});
  (void)Out({.seq = kIsnA + 1, .ack = kIsnB + 1, .payload = Payload(10, 1)});
  // Local FIN: a DATA_FIN on an empty segment (DSN of the FIN, SSN 0, length 1); no subflow FIN.
  Seen fin = Out({.seq = kIsnA + 11, .ack = kIsnB + 1, .flags = tcp_flags::kAck | tcp_flags::kFin});
  EXPECT_FALSE(fin.tcp.has(tcp_flags::kFin));
  ASSERT_TRUE(fin.mp.dss && fin.mp.dss->mapping);
  EXPECT_TRUE(fin.mp.dss->data_fin);
  EXPECT_EQ(fin.mp.dss->mapping->dsn, idsn_a_ + 1 + 10);
  EXPECT_EQ(fin.mp.dss->mapping->ssn, 0u);
  EXPECT_EQ(fin.mp.dss->mapping->data_len, 1);
  // The peer acknowledges the DATA_FIN: the local stack sees its FIN acked, and we send the
  // subflow FIN ourselves.
  Seen acked = In({.seq = kIsnB + 1, .ack = kIsnA + 11, .mptcp = {PeerDss(11)}});
  EXPECT_EQ(acked.tcp.ack, kIsnA + 12);
  ASSERT_EQ(forged_.size(), 1u);
  Seen sfin = Inspect(Verdict::kAccept, forged_[0]);
  EXPECT_TRUE(sfin.checksum_ok);
  EXPECT_TRUE(sfin.tcp.has(tcp_flags::kFin));
  EXPECT_EQ(sfin.tcp.seq, kIsnA + 11);
  ASSERT_TRUE(sfin.mp.dss && sfin.mp.dss->data_ack);
  // The peer's ACK of our subflow FIN has nothing for the local stack (whose FIN is acked): kept
  // back, as a closed local socket would answer it with a RST.
  Seen sfack = In({.seq = kIsnB + 1, .ack = kIsnA + 12, .mptcp = {PeerDss(11)}});
  EXPECT_EQ(sfack.verdict, Verdict::kDrop);
  // The peer's DATA_FIN on an empty segment becomes the local stack's FIN.
  Dss pfin = PeerDss(11);
  pfin.mapping = DssMapping{idsn_b_ + 1, true, 0, 1, std::nullopt};
  pfin.data_fin = true;
  Seen rfin = In({.seq = kIsnB + 1, .ack = kIsnA + 12, .mptcp = {pfin}});
  EXPECT_TRUE(rfin.tcp.has(tcp_flags::kFin));
  EXPECT_EQ(rfin.tcp.seq, kIsnB + 1);
  // The local ACK of that FIN: DATA_ACK covers the DATA_FIN, the subflow ACK does not (the
  // DATA_FIN has no subflow sequence number).
  Seen lack = Out({.seq = kIsnA + 12, .ack = kIsnB + 2});
  EXPECT_EQ(lack.mp.dss->data_ack->value, idsn_b_ + 2);
  EXPECT_EQ(lack.tcp.ack, kIsnB + 1);
  EXPECT_EQ(lack.tcp.seq, kIsnA + 12);  // after our subflow FIN, subflow and TCP agree again
  // The peer's subflow FIN: not for the local stack; we acknowledge it.
  Seen psfin = In({.seq = kIsnB + 1, .ack = kIsnA + 12, .flags = tcp_flags::kAck | tcp_flags::kFin,
                   .mptcp = {PeerDss(11)}});
  EXPECT_EQ(psfin.verdict, Verdict::kDrop);
  ASSERT_EQ(forged_.size(), 2u);
  Seen fack = Inspect(Verdict::kAccept, forged_[1]);
  EXPECT_EQ(fack.tcp.ack, kIsnB + 2);
  EXPECT_EQ(engine_.counter(Counter::kClosed), 1u);
  // Linger, then the state is gone.
  ASSERT_TRUE(engine_.NextTimeout());
  now_ = *engine_.NextTimeout();
  Actions actions;
  engine_.OnTimer(now_, actions);
  EXPECT_EQ(engine_.connection_count(), 0u);
}

TEST_F(EngineTest, SubflowFinIsRetransmittedUntilAcked) {
  ASSERT_NO_FATAL_FAILURE(Establish());
  (void)In({.seq = kIsnB + 1, .ack = kIsnA + 1, .mptcp = {PeerDss(0)}});
  (void)Out({.seq = kIsnA + 1, .ack = kIsnB + 1, .flags = tcp_flags::kAck | tcp_flags::kFin});
  (void)In({.seq = kIsnB + 1, .ack = kIsnA + 1, .mptcp = {PeerDss(1)}});
  ASSERT_EQ(forged_.size(), 1u);
  for (int i = 0; i < 3; ++i) {
    now_ = *engine_.NextTimeout();
    Actions a;
    engine_.OnTimer(now_, a);
    ASSERT_EQ(a.forged.size(), 1u);
    EXPECT_TRUE(Inspect(Verdict::kAccept, a.forged[0].bytes).tcp.has(tcp_flags::kFin));
  }
  EXPECT_EQ(engine_.counter(Counter::kSubflowFinRetransmit), 3u);
}

TEST_F(EngineTest, LocalRstBecomesFastclose) {
  ASSERT_NO_FATAL_FAILURE(Establish());
  Seen r = Out({.seq = kIsnA + 1, .ack = kIsnB + 1, .flags = tcp_flags::kRst | tcp_flags::kAck});
  EXPECT_TRUE(r.tcp.has(tcp_flags::kRst));
  ASSERT_TRUE(r.mp.mp_fastclose);
  EXPECT_EQ(r.mp.mp_fastclose->receiver_key, kKeyB);  // the receiver's key (interop §1.6)
  EXPECT_TRUE(r.mp.mp_tcprst);
  EXPECT_EQ(engine_.counter(Counter::kFastcloseTx), 1u);
  EXPECT_EQ(Conn()->state, ConnState::kClosed);
}

TEST_F(EngineTest, FastcloseNeedsOurKey) {
  ASSERT_NO_FATAL_FAILURE(Establish());
  MpFastclose bad;
  bad.receiver_key = 0x77;
  Dss dack = PeerDss(0);
  Seen s = In({.seq = kIsnB + 1, .ack = kIsnA + 1, .mptcp = {dack, bad}});
  EXPECT_FALSE(s.tcp.has(tcp_flags::kRst));
  EXPECT_EQ(engine_.counter(Counter::kFastcloseBadKey), 1u);
  MpFastclose good;
  good.receiver_key = key_a_;
  Seen t = In({.seq = kIsnB + 1, .ack = kIsnA + 1, .mptcp = {dack, good}});
  EXPECT_TRUE(t.tcp.has(tcp_flags::kRst));
  EXPECT_EQ(t.tcp.seq, kIsnB + 1);
  EXPECT_EQ(engine_.counter(Counter::kFastcloseRx), 1u);
}

TEST_F(EngineTest, BadInputIsCountedNeverDeliveredWrong) {
  ASSERT_NO_FATAL_FAILURE(Establish());
  (void)Out({.seq = kIsnA + 1, .ack = kIsnB + 1});
  // Data without any mapping: dropped (passing it could put bytes at the wrong place).
  Seen nomap = In({.seq = kIsnB + 1, .ack = kIsnA + 1, .mptcp = {PeerDss(0)},
                   .payload = Payload(20, 1)});
  EXPECT_EQ(nomap.verdict, Verdict::kDrop);
  EXPECT_EQ(engine_.counter(Counter::kNoMapping), 1u);
  // A good mapping, then a different one for the same subflow bytes: dropped (DSSNotMatching).
  Seen good = In({.seq = kIsnB + 1, .ack = kIsnA + 1, .mptcp = {PeerDss(0, {{0, 20}}, 0)},
                  .payload = Payload(20, 1)});
  EXPECT_EQ(good.verdict, Verdict::kAccept);
  Seen conflict = In({.seq = kIsnB + 1, .ack = kIsnA + 1, .mptcp = {PeerDss(0, {{500, 20}}, 0)},
                      .payload = Payload(20, 1)});
  EXPECT_EQ(conflict.verdict, Verdict::kDrop);
  EXPECT_EQ(engine_.counter(Counter::kMappingConflict), 1u);
  // A mapping that does not cover the whole segment.
  Seen partial = In({.seq = kIsnB + 21, .ack = kIsnA + 1, .mptcp = {PeerDss(0, {{20, 5}}, 20)},
                     .payload = Payload(20, 1)});
  EXPECT_EQ(partial.verdict, Verdict::kDrop);
  EXPECT_EQ(engine_.counter(Counter::kSpansMappings), 1u);
  // DATA_ACK beyond what was sent: ignored, the TCP ACK stays where it was.
  Seen beyond = In({.seq = kIsnB + 21, .ack = kIsnA + 1, .mptcp = {PeerDss(5000)}});
  EXPECT_EQ(beyond.tcp.ack, kIsnA + 1);
  EXPECT_EQ(engine_.counter(Counter::kDataAckBeyondSent), 1u);
  // Malformed kind-30 options (unknown subtype 0x9, DSS with a wrong length): ignored, counted.
  auto raw = Build(LocalTuple().Reversed(), {.seq = kIsnB + 21, .ack = kIsnA + 1});
  {
    auto p = ParseTcpPacket(MutableBytes(raw)).value();
    const uint8_t unknown[] = {0x90, 0x00};
    const uint8_t bad_dss[] = {0x20, 0x01, 0x00};  // DSS "ack32" but 5 bytes long
    ASSERT_TRUE(p.options.AddRaw(kMptcpOptionKind, unknown));
    ASSERT_TRUE(p.options.AddRaw(kMptcpOptionKind, bad_dss));
    auto rebuilt = BuildTcpPacket(p.tuple(), p.tcp, p.options, {});
    ASSERT_TRUE(rebuilt.ok());
    Seen s = Run(Hook::kPreRouting, rebuilt.value());
    EXPECT_EQ(s.verdict, Verdict::kAccept);
    EXPECT_EQ(s.mptcp_options, 0u);
  }
  EXPECT_EQ(engine_.counter(Counter::kOptionIgnored), 2u);
  // Infinite mapping: clean fallback, the state is gone.
  Dss inf = PeerDss(0, {{20, 0}}, 20);
  Seen f = In({.seq = kIsnB + 21, .ack = kIsnA + 1, .mptcp = {inf}, .payload = Payload(5, 1)});
  EXPECT_EQ(f.verdict, Verdict::kAccept);
  EXPECT_EQ(f.mptcp_options, 0u);
  EXPECT_EQ(engine_.counter(Counter::kFallbackInfiniteMap), 1u);
  EXPECT_EQ(engine_.connection_count(), 0u);
}

TEST_F(EngineTest, ThirtyTwoBitDsnIsExpanded) {
  ASSERT_NO_FATAL_FAILURE(Establish());
  Dss d = PeerDss(0, {{0, 30}}, 0);
  d.mapping->dsn64 = false;
  d.mapping->dsn &= 0xffffffffu;
  d.data_ack->is64 = false;
  d.data_ack->value &= 0xffffffffu;
  Seen s = In({.seq = kIsnB + 1, .ack = kIsnA + 1, .mptcp = {d}, .payload = Payload(30, 1)});
  EXPECT_EQ(s.verdict, Verdict::kAccept);
  EXPECT_EQ(s.tcp.seq, kIsnB + 1);
  Seen a = Out({.seq = kIsnA + 1, .ack = kIsnB + 31});
  EXPECT_EQ(a.mp.dss->data_ack->value, idsn_b_ + 1 + 30);
}

TEST_F(EngineTest, OptionSpaceKeepsTimestampsAndTrimsSack) {
  ASSERT_NO_FATAL_FAILURE(Establish());
  (void)In({.seq = kIsnB + 1, .ack = kIsnA + 1, .mptcp = {PeerDss(0)}});
  // TS (12) + SACK with 3 blocks (28) = 40: the DSS needs room, SACK blocks go first.
  Seen s = Out({.seq = kIsnA + 1, .ack = kIsnB + 1,
                .sack = {{kIsnB + 100, kIsnB + 200}, {kIsnB + 300, kIsnB + 400},
                         {kIsnB + 500, kIsnB + 600}},
                .payload = Payload(100, 1)});
  EXPECT_TRUE(s.checksum_ok);
  ASSERT_TRUE(s.mp.dss && s.mp.dss->mapping);
  EXPECT_TRUE(s.options.Timestamps());
  EXPECT_LE(s.options.EncodedSize(), 40u);
  EXPECT_GT(engine_.counter(Counter::kSackDropped), 0u);
}

TEST_F(EngineTest, HandshakeTimeoutFreesState) {
  (void)Out({.seq = kIsnA, .flags = tcp_flags::kSyn, .mss = 1460});
  EXPECT_EQ(engine_.connection_count(), 1u);
  now_ = *engine_.NextTimeout();
  Actions a;
  engine_.OnTimer(now_, a);
  EXPECT_EQ(engine_.connection_count(), 0u);
  EXPECT_EQ(engine_.counter(Counter::kTimeoutHandshake), 1u);
}

TEST_F(EngineTest, UnselectedPortsAndMalformedPacketsPassUnchanged) {
  auto other = Build(FourTuple{*IpAddress::Parse("198.18.1.2"), *IpAddress::Parse("198.18.3.2"),
                               40000, 22},
                     {.seq = 1, .flags = tcp_flags::kSyn});
  EXPECT_EQ(Run(Hook::kLocalOut, other).bytes, other);
  EXPECT_EQ(engine_.counter(Counter::kNotSelected), 1u);
  // Every prefix of a valid packet: never a crash, never a rewrite.
  auto pkt = Build(LocalTuple(), {.seq = kIsnA, .flags = tcp_flags::kSyn, .mss = 1460});
  for (size_t n = 0; n < pkt.size(); ++n) {
    std::vector<uint8_t> cut(pkt.begin(), pkt.begin() + static_cast<long>(n));
    PacketOut out;
    Actions a;
    PacketMeta meta;
    engine_.OnPacket(now_, meta, MutableBytes(cut), out, a);
    EXPECT_FALSE(out.rewritten) << n;
    EXPECT_EQ(out.verdict, Verdict::kAccept);
  }
}

// Review finding 1: Linux accepts only an identical mapping while one is in use, and the local
// stack retransmits parts of GSO super-packets. A retransmission must carry the original mapping.
TEST_F(EngineTest, RetransmissionInsideAGsoMappingReusesIt) {
  ASSERT_NO_FATAL_FAILURE(Establish());
  (void)In({.seq = kIsnB + 1, .ack = kIsnA + 1, .mptcp = {PeerDss(0)}});
  Seen big = Out({.seq = kIsnA + 1, .ack = kIsnB + 1, .payload = Payload(14480, 1)});
  ASSERT_TRUE(big.mp.dss && big.mp.dss->mapping);
  Seen re = Out({.seq = kIsnA + 1 + 5792, .ack = kIsnB + 1, .payload = Payload(1448, 2)});
  ASSERT_TRUE(re.mp.dss && re.mp.dss->mapping);
  EXPECT_EQ(*re.mp.dss->mapping, *big.mp.dss->mapping);  // byte for byte the original mapping
  EXPECT_EQ(engine_.counter(Counter::kTxMappingReused), 1u);
  // New data after it gets a new mapping.
  Seen next = Out({.seq = kIsnA + 1 + 14480, .ack = kIsnB + 1, .payload = Payload(100, 3)});
  EXPECT_EQ(next.mp.dss->mapping->ssn, 14481u);
  EXPECT_EQ(next.mp.dss->mapping->data_len, 100);
}

TEST_F(EngineTest, RetransmittedFirstSegmentKeepsTheImplicitMapping) {
  ASSERT_NO_FATAL_FAILURE(Establish());
  Seen first = Out({.seq = kIsnA + 1, .ack = kIsnB + 1, .payload = Payload(3000, 1)});
  ASSERT_TRUE(first.mp.mp_capable);
  EXPECT_EQ(first.mp.mp_capable->data_len, 3000);
  // The peer's first DSS arrives; a partial retransmission then carries the same mapping as a DSS
  // (MP_CAPABLE + data implies DSN IDSN+1, SSN 1, length 3000).
  (void)In({.seq = kIsnB + 1, .ack = kIsnA + 1, .mptcp = {PeerDss(0)}});
  Seen re = Out({.seq = kIsnA + 1 + 1000, .ack = kIsnB + 1, .payload = Payload(1000, 2)});
  ASSERT_TRUE(re.mp.dss && re.mp.dss->mapping);
  EXPECT_EQ(re.mp.dss->mapping->dsn, idsn_a_ + 1);
  EXPECT_EQ(re.mp.dss->mapping->ssn, 1u);
  EXPECT_EQ(re.mp.dss->mapping->data_len, 3000);
}

// Seen on the wire: back-to-back 64400-byte GSO packets, the DATA_ACK stops at the start of one,
// the local stack retransmits its first MSS. It must carry that packet's whole mapping.
TEST_F(EngineTest, RetransmissionAtTheStartOfAGsoMappingReusesIt) {
  ASSERT_NO_FATAL_FAILURE(Establish());
  (void)In({.seq = kIsnB + 1, .ack = kIsnA + 1, .mptcp = {PeerDss(0)}});
  std::vector<Seen> sent;
  for (uint32_t i = 0; i < 4; ++i) {
    sent.push_back(Out({.seq = kIsnA + 1 + i * 64400, .ack = kIsnB + 1, .payload = Payload(64400, 1)}));
  }
  (void)In({.seq = kIsnB + 1, .ack = kIsnA + 1 + 64400, .mptcp = {PeerDss(64400)}});
  Seen re = Out({.seq = kIsnA + 1 + 64400, .ack = kIsnB + 1, .payload = Payload(1400, 2)});
  ASSERT_TRUE(re.mp.dss && re.mp.dss->mapping);
  EXPECT_EQ(*re.mp.dss->mapping, *sent[1].mp.dss->mapping);
}

// Seen on the wire: the peer finished first (DATA_FIN delivered as the local FIN) while the local
// upload went on. The peer's later pure ACKs sit at the subflow's end, which is one below the local
// rcv_nxt (the FIN took a TSN); delivered untranslated they are out of window and their ACK is
// ignored (TCPACKSkippedSeq), stalling the upload.
TEST_F(EngineTest, PureAcksAfterPeerDataFinAreInWindow) {
  ASSERT_NO_FATAL_FAILURE(Establish());
  (void)In({.seq = kIsnB + 1, .ack = kIsnA + 1, .mptcp = {PeerDss(0, {{0, 100}}, 0)},
            .payload = Payload(100, 1)});
  Dss fin = PeerDss(0);
  fin.mapping = DssMapping{idsn_b_ + 1 + 100, true, 0, 1, std::nullopt};
  fin.data_fin = true;
  Seen f = In({.seq = kIsnB + 101, .ack = kIsnA + 1, .mptcp = {fin}});
  ASSERT_TRUE(f.tcp.has(tcp_flags::kFin));
  EXPECT_EQ(f.tcp.seq, kIsnB + 101);
  (void)Out({.seq = kIsnA + 1, .ack = kIsnB + 102, .payload = Payload(500, 2)});
  // The peer's ACK of our data: subflow seq 101 (no subflow FIN yet); the local rcv_nxt is 102.
  Seen a = In({.seq = kIsnB + 101, .ack = kIsnA + 501, .mptcp = {PeerDss(500)}});
  EXPECT_EQ(a.tcp.seq, kIsnB + 102);
  EXPECT_EQ(a.tcp.ack, kIsnA + 501);
  // After the peer's subflow FIN (seq 101, taking SSN 101) its ACKs come at 102: still rcv_nxt.
  Dss ack2 = PeerDss(500);
  Seen sf = In({.seq = kIsnB + 101, .ack = kIsnA + 501, .flags = tcp_flags::kAck | tcp_flags::kFin,
                .mptcp = {ack2}});
  (void)sf;
  Seen b = In({.seq = kIsnB + 102, .ack = kIsnA + 501, .mptcp = {PeerDss(500)}});
  EXPECT_EQ(b.tcp.seq, kIsnB + 102);
}

// Review finding 7: subflow offsets beyond 4 GiB (the relative SSN wraps, the table must not).
TEST_F(EngineTest, ReceiveStreamBeyondFourGiB) {
  ASSERT_NO_FATAL_FAILURE(Establish());
  (void)Out({.seq = kIsnA + 1, .ack = kIsnB + 1});
  for (uint64_t off : {0ull, 0x70000000ull, 0xE0000000ull, 0x150000000ull, 0x1D0000000ull}) {
    Seen s = In({.seq = kIsnB + 1 + static_cast<uint32_t>(off), .ack = kIsnA + 1,
                 .mptcp = {PeerDss(0, {{off, 100}}, static_cast<uint32_t>(off))},
                 .payload = Payload(100, 1)});
    ASSERT_EQ(s.verdict, Verdict::kAccept) << off;
    EXPECT_EQ(s.tcp.seq, kIsnB + 1 + static_cast<uint32_t>(off));
    // The local stack acknowledges it, so the next hop of offsets is "recent".
    (void)Out({.seq = kIsnA + 1, .ack = kIsnB + 1 + static_cast<uint32_t>(off + 100)});
  }
  EXPECT_EQ(engine_.counter(Counter::kNoMapping), 0u);
}

// Review finding 3: a refused connection must reach the local stack at once.
TEST_F(EngineTest, RstAnsweringOurSynIsPassed) {
  (void)Out({.seq = kIsnA, .flags = tcp_flags::kSyn, .mss = 1460});
  auto rst = Build(LocalTuple().Reversed(),
                   {.seq = 0, .ack = kIsnA + 1, .flags = tcp_flags::kRst | tcp_flags::kAck});
  Seen s = Run(Hook::kPreRouting, rst);
  EXPECT_EQ(s.verdict, Verdict::kAccept);
  EXPECT_EQ(s.bytes, rst);
  EXPECT_EQ(engine_.connection_count(), 0u);
}

// Review finding 4: joins are not offered yet: C flag, and a join SYN never reaches the local
// stack as a plain SYN.
TEST_F(EngineTest, JoinsAreDeclinedUntilImplemented) {
  MpCapable syn;
  (void)In({.seq = kIsnB, .flags = tcp_flags::kSyn, .mss = 1460, .mptcp = {syn}});
  Seen sa = Out({.seq = kIsnA, .ack = kIsnB + 1, .flags = tcp_flags::kSyn | tcp_flags::kAck});
  ASSERT_TRUE(sa.mp.mp_capable);
  EXPECT_TRUE(sa.mp.mp_capable->flags & kMpcFlagNoJoinInitial);
  MpJoin join;
  join.token = 0x12345678;
  join.nonce = 7;
  auto other = LocalTuple().Reversed();
  other.dport = 50000;  // a new subflow: another port on our side, same peer port
  Seen j = Run(Hook::kPreRouting,
               Build(other, {.seq = 77, .flags = tcp_flags::kSyn, .mss = 1460, .mptcp = {join}}));
  EXPECT_EQ(j.verdict, Verdict::kDrop);
  EXPECT_EQ(engine_.counter(Counter::kJoinRejected), 1u);
}

// Review finding 6: a peer that stops sending options has fallen back (RFC 8684 §3.7).
TEST_F(EngineTest, PeerSendingPlainDataFallsBack) {
  ASSERT_NO_FATAL_FAILURE(Establish());
  (void)In({.seq = kIsnB + 1, .ack = kIsnA + 1, .mptcp = {PeerDss(0, {{0, 10}}, 0)},
            .payload = Payload(10, 1)});
  auto plain = Build(LocalTuple().Reversed(),
                     {.seq = kIsnB + 11, .ack = kIsnA + 1, .payload = Payload(10, 2)});
  Seen s = Run(Hook::kPreRouting, plain);
  EXPECT_EQ(s.verdict, Verdict::kAccept);
  EXPECT_EQ(s.tcp.seq, kIsnB + 11);
  EXPECT_EQ(engine_.counter(Counter::kFallbackPeerNoDss), 1u);
  EXPECT_EQ(engine_.connection_count(), 0u);
}

TEST_F(EngineTest, FallbackIsRefusedOnceTheSequenceSpacesDiffer) {
  ASSERT_NO_FATAL_FAILURE(Establish());
  (void)In({.seq = kIsnB + 1, .ack = kIsnA + 1, .mptcp = {PeerDss(0, {{0, 10}}, 0)},
            .payload = Payload(10, 1)});
  (void)In({.seq = kIsnB + 11, .ack = kIsnA + 1, .mptcp = {PeerDss(0, {{0, 10}}, 10)},
            .payload = Payload(10, 1)});  // reinjection: SSN 10..20 carries DSN 0..10
  Seen s = In({.seq = kIsnB + 21, .ack = kIsnA + 1, .payload = Payload(10, 2)});
  EXPECT_EQ(s.verdict, Verdict::kDrop);
  EXPECT_EQ(engine_.counter(Counter::kFallbackImpossible), 1u);
}

// Review finding 8: after a reinjection, empty segments move to TSN space and SACK is removed.
TEST_F(EngineTest, AfterReinjectionPureAcksAndSackAreTranslated) {
  ASSERT_NO_FATAL_FAILURE(Establish());
  (void)In({.seq = kIsnB + 1, .ack = kIsnA + 1, .mptcp = {PeerDss(0, {{0, 50}}, 0)},
            .payload = Payload(50, 1)});
  (void)In({.seq = kIsnB + 51, .ack = kIsnA + 1, .mptcp = {PeerDss(0, {{0, 50}}, 50)},
            .payload = Payload(50, 1)});
  Seen pure = In({.seq = kIsnB + 101, .ack = kIsnA + 1, .mptcp = {PeerDss(0)}});
  EXPECT_EQ(pure.tcp.seq, kIsnB + 51);  // the local stack's rcv_nxt, not the subflow's
  Seen sack = Out({.seq = kIsnA + 1, .ack = kIsnB + 51, .sack = {{kIsnB + 60, kIsnB + 70}}});
  EXPECT_FALSE(sack.options.Find(tcp_opt::kSack));
  EXPECT_EQ(engine_.counter(Counter::kSackStripped), 1u);
}

// Review finding 9: a duplicate SYN must not wipe an established passive connection.
TEST_F(EngineTest, DuplicateSynKeepsPassiveConnection) {
  MpCapable syn;
  (void)In({.seq = kIsnB, .flags = tcp_flags::kSyn, .mss = 1460, .mptcp = {syn}});
  Seen sa = Out({.seq = kIsnA, .ack = kIsnB + 1, .flags = tcp_flags::kSyn | tcp_flags::kAck});
  MpCapable ack;
  ack.form = MpCapable::Form::kAck;
  ack.sender_key = kKeyB;
  ack.receiver_key = sa.mp.mp_capable->sender_key;
  (void)In({.seq = kIsnB + 1, .ack = kIsnA + 1, .mptcp = {ack}});
  ASSERT_EQ(Conn()->state, ConnState::kEstablished);
  const uint64_t key = Conn()->local_key;
  Seen dup = In({.seq = kIsnB, .flags = tcp_flags::kSyn, .mss = 1460, .mptcp = {syn}});
  EXPECT_EQ(dup.verdict, Verdict::kAccept);
  EXPECT_EQ(Conn()->state, ConnState::kEstablished);
  EXPECT_EQ(Conn()->local_key, key);
}

// Review finding 10: a FIN on the first data segment is a DATA_FIN (Linux: DATA_FIN takes
// precedence over MP_CAPABLE + data).
TEST_F(EngineTest, FinOnFirstDataSegmentIsADataFin) {
  ASSERT_NO_FATAL_FAILURE(Establish());
  Seen s = Out({.seq = kIsnA + 1, .ack = kIsnB + 1, .flags = tcp_flags::kAck | tcp_flags::kFin,
                .payload = Payload(20, 1)});
  ASSERT_TRUE(s.mp.dss && s.mp.dss->mapping);
  EXPECT_TRUE(s.mp.dss->data_fin);
  EXPECT_EQ(s.mp.dss->mapping->data_len, 21);
  EXPECT_EQ(s.mp.dss->mapping->ssn, 1u);
  EXPECT_FALSE(s.tcp.has(tcp_flags::kFin));
}

// Review finding 12: a reordered older DATA_ACK is delivered as the old ACK.
TEST_F(EngineTest, StaleDataAckIsDeliveredAsOld) {
  ASSERT_NO_FATAL_FAILURE(Establish());
  (void)In({.seq = kIsnB + 1, .ack = kIsnA + 1, .mptcp = {PeerDss(0)}});
  (void)Out({.seq = kIsnA + 1, .ack = kIsnB + 1, .payload = Payload(300, 1)});
  Seen newer = In({.seq = kIsnB + 1, .ack = kIsnA + 301, .mptcp = {PeerDss(300)}});
  EXPECT_EQ(newer.tcp.ack, kIsnA + 301);
  Seen older = In({.seq = kIsnB + 1, .ack = kIsnA + 101, .window = 9000, .mptcp = {PeerDss(100)}});
  EXPECT_EQ(older.tcp.ack, kIsnA + 101);
  EXPECT_EQ(engine_.counter(Counter::kStaleDataAck), 1u);
}

// Review finding 13: like Linux, give up MP_CAPABLE after two unanswered retransmissions.
TEST_F(EngineTest, UnansweredMpCapableSynsFallBackToPlainSyns) {
  for (int i = 0; i < 3; ++i) {
    Seen s = Out({.seq = kIsnA, .flags = tcp_flags::kSyn, .mss = 1460});
    EXPECT_TRUE(s.mp.mp_capable) << i;
  }
  auto plain = Build(LocalTuple(), {.seq = kIsnA, .flags = tcp_flags::kSyn, .mss = 1460});
  EXPECT_EQ(Run(Hook::kLocalOut, plain).bytes, plain);
  EXPECT_EQ(Run(Hook::kLocalOut, plain).bytes, plain);
  EXPECT_EQ(engine_.counter(Counter::kFallbackSynRetrans), 1u);
}

// Review finding 14: the peer's subflow FIN that also acknowledges our DATA_FIN is delivered.
TEST_F(EngineTest, SubflowFinCarryingNewDataAckIsDelivered) {
  ASSERT_NO_FATAL_FAILURE(Establish());
  (void)In({.seq = kIsnB + 1, .ack = kIsnA + 1, .mptcp = {PeerDss(0)}});
  (void)Out({.seq = kIsnA + 1, .ack = kIsnB + 1, .flags = tcp_flags::kAck | tcp_flags::kFin});
  Seen s = In({.seq = kIsnB + 1, .ack = kIsnA + 1, .flags = tcp_flags::kAck | tcp_flags::kFin,
               .mptcp = {PeerDss(1)}});
  EXPECT_EQ(s.verdict, Verdict::kAccept);
  EXPECT_FALSE(s.tcp.has(tcp_flags::kFin));
  EXPECT_EQ(s.tcp.ack, kIsnA + 2);
}

class EngineChecksumTest : public EngineTest {
 protected:
  EngineChecksumTest() : EngineTest(WithChecksums()) {}
  static EngineConfig WithChecksums() {
    EngineConfig c;
    c.checksums = true;
    return c;
  }
};

TEST_F(EngineChecksumTest, ChecksumsOnEveryMapping) {
  Seen syn = Out({.seq = kIsnA, .flags = tcp_flags::kSyn, .mss = 1460});
  EXPECT_EQ(syn.mp.mp_capable->flags, 0x81);  // interop §1.2: 1e 04 01 81
  ASSERT_NO_FATAL_FAILURE(Establish());
  Seen third = Out({.seq = kIsnA + 1, .ack = kIsnB + 1});
  EXPECT_TRUE(third.mp.mp_capable->checksum_required());  // A in the 3rd ACK too (interop §1.2)
  (void)In({.seq = kIsnB + 1, .ack = kIsnA + 1, .mptcp = {PeerDss(0)}});
  auto payload = Payload(333, 5);
  Seen d = Out({.seq = kIsnA + 1, .ack = kIsnB + 1, .payload = payload});
  ASSERT_TRUE(d.mp.dss && d.mp.dss->mapping && d.mp.dss->mapping->checksum);
  const auto& m = *d.mp.dss->mapping;
  EXPECT_TRUE(DssChecksumValid(DataSeq(m.dsn), m.ssn, m.data_len, *m.checksum,
                               checksum::Sum(payload)));
  // Inbound with a wrong checksum: dropped and counted.
  Dss bad = PeerDss(333, {{0, 40}}, 0);
  bad.mapping->checksum = 0x1234;
  Seen b = In({.seq = kIsnB + 1, .ack = kIsnA + 334, .mptcp = {bad}, .payload = Payload(40, 1)});
  EXPECT_EQ(b.verdict, Verdict::kDrop);
  EXPECT_EQ(engine_.counter(Counter::kCsumBad), 1u);
  // And with the right one: delivered.
  Dss good = PeerDss(333, {{0, 40}}, 0);
  good.mapping->checksum = DssChecksum(DataSeq(good.mapping->dsn), 1, 40, Payload(40, 1));
  Seen g = In({.seq = kIsnB + 1, .ack = kIsnA + 334, .mptcp = {good}, .payload = Payload(40, 1)});
  EXPECT_EQ(g.verdict, Verdict::kAccept);
}

}  // namespace
}  // namespace mproxy::mptcp
