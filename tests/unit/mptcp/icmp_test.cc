// Path MTU discovery through the engine (mptcp/icmp.cc): ICMP frag-needed / packet-too-big about
// our segments, translated to the local stack's view. The harness (scripted local stack and peer)
// is the one of subflow_test.cc, copied: that file is edited elsewhere. ICMP messages are built and
// their checksums verified here byte by byte, independently of packet/icmp.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <set>

#include "mptcp/crypto.h"
#include "mptcp/engine.h"
#include "mptcp/options.h"
#include "packet/rng.h"
#include "packet/tcp_packet.h"

namespace mproxy::mptcp {
namespace {

using namespace packet;  // NOLINT(google-build-using-namespace): test brevity

constexpr uint64_t kKeyB = 0x0102030405060708ULL;  // the peer's key
constexpr uint32_t kIsnA = 1000;                   // local stack's ISN
constexpr uint32_t kIsnB = 0x70000000;             // peer's ISN on the initial subflow
constexpr uint32_t kIsnJ = 0xfffffff0;             // peer's ISN on the join: wraps at once
constexpr uint32_t kNonceB = 0xabcdef01;
constexpr uint8_t kLocalWs = 7, kPeerWs = 9, kPeerJoinWs = 5;
constexpr uint32_t kIfEth = 2, kIfWlan = 3;

IpAddress Addr(const char* s) { return *IpAddress::Parse(s); }
FourTuple LocalTuple() { return FourTuple{Addr("198.18.1.2"), Addr("198.18.3.2"), 40000, 5201}; }

struct Seg {
  uint32_t seq = 0, ack = 0;
  uint8_t flags = tcp_flags::kAck;
  uint16_t window = 500;
  uint16_t mss = 0;
  int ws = -1;
  bool sack_perm = false;
  std::optional<TimestampsOption> ts{};
  std::vector<SackBlock> sack{};
  std::vector<Option> mptcp{};
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
  if (s.sack_perm) {
    EXPECT_TRUE(o.AddSackPermitted());
  }
  if (s.ts) {
    EXPECT_TRUE(o.AddNop() && o.AddNop() && o.AddTimestamps(*s.ts));
  }
  if (s.ws >= 0) {
    EXPECT_TRUE(o.AddNop() && o.AddWindowScale(static_cast<uint8_t>(s.ws)));
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
  FourTuple tuple;
  TcpHeader tcp;
  TcpOptionList options;
  SegmentOptions mp;
  std::vector<std::vector<uint8_t>> mptcp_raw;  // each kind-30 option as on the wire
  std::vector<uint8_t> payload;
  bool checksum_ok = false;
  uint32_t ifindex = 0;  // forged packets
};

Seen Inspect(Verdict v, std::vector<uint8_t> bytes) {
  Seen s;
  s.verdict = v;
  s.bytes = bytes;
  s.checksum_ok = TcpChecksumOk(bytes);
  auto p = ParseTcpPacket(MutableBytes(bytes));
  EXPECT_TRUE(p.ok());
  if (!p.ok()) return s;
  s.tuple = p->tuple();
  s.tcp = p->tcp;
  s.options = p->options;
  s.payload.assign(p->payload().begin(), p->payload().end());
  std::vector<Bytes> raw;
  for (size_t i = 0; i < p->options.size(); ++i) {
    if (p->options[i].kind == kMptcpOptionKind) {
      raw.push_back(p->options[i].raw);
      s.mptcp_raw.emplace_back(p->options[i].raw.begin(), p->options[i].raw.end());
    }
  }
  s.mp = ParseSegmentOptions(SegmentFlags{p->tcp.has(tcp_flags::kSyn), p->tcp.has(tcp_flags::kAck),
                                          p->tcp.has(tcp_flags::kRst), p->payload_len > 0},
                             raw);
  return s;
}

std::vector<uint8_t> Payload(size_t n, uint8_t seed) {
  std::vector<uint8_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<uint8_t>(seed + i * 7);
  return v;
}

std::array<uint8_t, 8> Nonces(uint32_t first, uint32_t second) {
  std::array<uint8_t, 8> m{};
  for (int i = 0; i < 4; ++i) {
    m[i] = static_cast<uint8_t>(first >> (24 - 8 * i));
    m[4 + i] = static_cast<uint8_t>(second >> (24 - 8 * i));
  }
  return m;
}

// RFC 8684 §3.2: HMAC-B = HMAC(Key-B || Key-A, R-B || R-A), first 64 bits in the SYN/ACK.
uint64_t TruncatedHmac(uint64_t key1, uint64_t key2, uint32_t n1, uint32_t n2) {
  auto m = Nonces(n1, n2);
  auto d = HmacSha256(key1, key2, m);
  EXPECT_TRUE(d.ok());
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = v << 8 | d.value()[i];
  return v;
}

class PmtuTest : public ::testing::Test {
 protected:
  PmtuTest() : rng_(7), engine_(Config(), rng_) {
    engine_.SetInterfaces({LocalInterface{"eth0", kIfEth, {Addr("198.18.1.2")}},
                           LocalInterface{"wlan0", kIfWlan, {Addr("198.18.2.2")}}});
  }
  static EngineConfig Config() {
    EngineConfig c;
    c.ports = {5201};
    return c;
  }

  Seen Run(Hook hook, std::vector<uint8_t> pkt) {
    PacketOut out;
    Actions actions;
    PacketMeta meta;
    meta.hook = hook;
    engine_.OnPacket(now_, meta, MutableBytes(pkt), out, actions);
    Collect(actions);
    std::vector<uint8_t> result;
    if (out.rewritten) {
      result.assign(out.head.begin(), out.head.begin() + static_cast<long>(out.head_len));
      result.insert(result.end(), pkt.begin() + static_cast<long>(out.tail_offset), pkt.end());
    } else {
      result = pkt;
    }
    return Inspect(out.verdict, result);
  }
  void Collect(Actions& actions) {
    for (auto& f : actions.forged) {
      Seen s = Inspect(Verdict::kAccept, f.bytes);
      s.ifindex = f.ifindex;
      forged_.push_back(s);
    }
    actions.Clear();
  }
  // The local stack's packets (LOCAL_OUT) and the peer's on a wire tuple (local -> remote).
  Seen Out(const Seg& s) { return Run(Hook::kLocalOut, Build(LocalTuple(), s)); }
  Seen In(const FourTuple& wire, const Seg& s) {
    return Run(Hook::kPreRouting, Build(wire.Reversed(), s));
  }
  Seen In(const Seg& s) { return In(LocalTuple(), s); }
  std::vector<Seen> TakeForged() { return std::exchange(forged_, {}); }

  const Connection* Conn() {
    const Connection* found = nullptr;
    engine_.ForEachConnection([&](const Connection& c) { found = &c; });
    return found;
  }
  std::vector<SubflowInfo> Subflows() {
    std::vector<SubflowInfo> v;
    if (Conn() != nullptr)
      engine_.ForEachSubflow(*Conn(), [&](const SubflowInfo& i) { v.push_back(i); });
    return v;
  }
  // Advances the clock by `d`, firing each timer at its own time.
  void Tick(Duration d) {
    const Time end = now_ + d;
    while (engine_.NextTimeout() && *engine_.NextTimeout() <= end) {
      now_ = std::max(now_, *engine_.NextTimeout());
      Actions a;
      engine_.OnTimer(now_, a);
      Collect(a);
    }
    now_ = end;
  }

  // Active open with window scaling, SACK and timestamps, then 100 bytes each way, all acked.
  void Establish() {
    (void)Out({.seq = kIsnA,
               .flags = tcp_flags::kSyn,
               .window = 64240,
               .mss = 1460,
               .ws = kLocalWs,
               .sack_perm = true,
               .ts = TimestampsOption{1000, 0}});
    MpCapable synack;
    synack.form = MpCapable::Form::kSynAck;
    synack.sender_key = kKeyB;
    (void)In({.seq = kIsnB,
              .ack = kIsnA + 1,
              .flags = tcp_flags::kSyn | tcp_flags::kAck,
              .mss = 1460,
              .ws = kPeerWs,
              .sack_perm = true,
              .ts = TimestampsOption{5000, 1000},
              .mptcp = {synack}});
    ASSERT_NE(Conn(), nullptr);
    key_a_ = Conn()->local_key;
    idsn_a_ = DeriveFromKey(key_a_)->idsn;
    idsn_b_ = DeriveFromKey(kKeyB)->idsn;
    token_a_ = Conn()->local_token;
    (void)Out({.seq = kIsnA + 1, .ack = kIsnB + 1, .ts = TimestampsOption{1001, 5000}});
    Seen d = Out({.seq = kIsnA + 1,
                  .ack = kIsnB + 1,
                  .ts = TimestampsOption{1002, 5000},
                  .payload = Payload(100, 1)});
    ASSERT_EQ(d.verdict, Verdict::kAccept);
    Seen r = In({.seq = kIsnB + 1,
                 .ack = kIsnA + 101,
                 .ts = TimestampsOption{5010, 1002},
                 .mptcp = {PeerDss(100, {{0, 100}}, 0)},
                 .payload = Payload(100, 2)});
    ASSERT_EQ(r.verdict, Verdict::kAccept);
    (void)Out({.seq = kIsnA + 101, .ack = kIsnB + 101, .ts = TimestampsOption{1003, 5010}});
    ASSERT_TRUE(Conn()->peer_dss_seen);
    TakeForged();
  }

  Dss PeerDss(uint64_t acked_off, std::optional<std::pair<uint64_t, uint16_t>> map = {},
              uint32_t ssn_off = 0) {
    Dss d;
    d.data_ack = DssDataAck{idsn_a_ + 1 + acked_off, true};
    if (map) d.mapping = DssMapping{idsn_b_ + 1 + map->first, true, ssn_off + 1, map->second, {}};
    return d;
  }

  // Handover eth0 -> wlan0 up to the forged MP_JOIN SYN; returns the join's wire tuple.
  FourTuple StartJoin(HandoverMode mode = HandoverMode::kMakeBeforeBreak) {
    Actions a;
    auto id = engine_.StartHandover(now_, HandoverRequest{"eth0", "wlan0", mode, {}}, a);
    EXPECT_TRUE(id.ok());
    handover_ = id.ok() ? id.value() : 0;
    Collect(a);
    auto f = TakeForged();
    EXPECT_EQ(f.size(), 1u);
    if (f.empty()) return {};
    join_syn_ = f[0];
    EXPECT_TRUE(join_syn_.mp.mp_join);
    if (join_syn_.mp.mp_join) nonce_a_ = join_syn_.mp.mp_join->nonce;
    return join_syn_.tuple;
  }
  MpJoin PeerSynAck(uint64_t hmac) {
    MpJoin j;
    j.form = MpJoin::Form::kSynAck;
    j.address_id = 0;
    j.truncated_hmac = hmac;
    j.nonce = kNonceB;
    return j;
  }
  // SYN/ACK, third ACK, fourth ACK: the join ends established and (make-before-break) active.
  FourTuple JoinAndHandover(HandoverMode mode = HandoverMode::kMakeBeforeBreak) {
    const FourTuple w = StartJoin(mode);
    Seen sa = In(w, {.seq = kIsnJ,
                     .ack = join_syn_.tcp.seq + 1,
                     .flags = tcp_flags::kSyn | tcp_flags::kAck,
                     .mss = 1400,
                     .ws = kPeerJoinWs,
                     .ts = TimestampsOption{90000, 1003},
                     .mptcp = {PeerSynAck(TruncatedHmac(kKeyB, key_a_, kNonceB, nonce_a_))}});
    EXPECT_EQ(sa.verdict, Verdict::kDrop);
    third_ = TakeForged();
    Seen fourth = In(w, {.seq = kIsnJ + 1,
                         .ack = join_syn_.tcp.seq + 1,
                         .ts = TimestampsOption{90001, 1003},
                         .mptcp = {PeerDss(100)}});
    EXPECT_EQ(fourth.verdict, Verdict::kDrop);
    return w;
  }

  SplitMix64 rng_;
  Engine engine_;
  Time now_{};
  std::vector<Seen> forged_;
  uint64_t key_a_ = 0, idsn_a_ = 0, idsn_b_ = 0;
  uint32_t token_a_ = 0, nonce_a_ = 0;
  uint64_t handover_ = 0;
  Seen join_syn_;
  std::vector<Seen> third_;
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
