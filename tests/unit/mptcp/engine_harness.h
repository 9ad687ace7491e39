// The scripted-engine harness shared by the MPTCP engine unit tests (subflow_test.cc, icmp_test.cc,
// announce_test.cc): the engine sits between a scripted local TCP stack and a scripted native-like
// MPTCP peer; segments are built from a Seg description and every output is parsed back into a
// Seen. Everything here is inline (the header is included by several test files of one binary).
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <optional>
#include <utility>
#include <vector>

#include "mptcp/crypto.h"
#include "mptcp/engine.h"
#include "mptcp/options.h"
#include "packet/rng.h"
#include "packet/tcp_packet.h"

namespace mproxy::mptcp::harness {

using namespace packet;  // NOLINT(google-build-using-namespace): test brevity

inline constexpr uint64_t kKeyB = 0x0102030405060708ULL;  // the peer's key
inline constexpr uint32_t kIsnA = 1000;                   // local stack's ISN
inline constexpr uint32_t kIsnB = 0x70000000;             // peer's ISN on the initial subflow
inline constexpr uint32_t kIsnJ = 0xfffffff0;             // peer's ISN on the join: wraps at once
inline constexpr uint32_t kNonceB = 0xabcdef01;
inline constexpr uint8_t kLocalWs = 7, kPeerWs = 9, kPeerJoinWs = 5;
inline constexpr uint32_t kIfEth = 2, kIfWlan = 3;

inline IpAddress Addr(const char* s) { return *IpAddress::Parse(s); }
inline FourTuple LocalTuple() {
  return FourTuple{Addr("198.18.1.2"), Addr("198.18.3.2"), 40000, 5201};
}

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

inline std::vector<uint8_t> Build(const FourTuple& t, const Seg& s) {
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
  size_t option_bytes = 0;                      // TCP header length - 20
  std::vector<uint8_t> payload;
  size_t payload_len = 0;
  bool checksum_ok = false;
  bool parsed = false;
  uint32_t ifindex = 0;  // forged packets
};

inline Seen Inspect(Verdict v, std::vector<uint8_t> bytes) {
  Seen s;
  s.verdict = v;
  s.bytes = bytes;
  s.checksum_ok = TcpChecksumOk(bytes);
  auto p = ParseTcpPacket(MutableBytes(bytes));
  EXPECT_TRUE(p.ok());
  if (!p.ok()) return s;
  s.parsed = true;
  s.tuple = p->tuple();
  s.tcp = p->tcp;
  s.options = p->options;
  s.option_bytes = p->options.byte_size();
  s.payload.assign(p->payload().begin(), p->payload().end());
  s.payload_len = p->payload_len;
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

inline std::vector<uint8_t> Payload(size_t n, uint8_t seed) {
  std::vector<uint8_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<uint8_t>(seed + i * 7);
  return v;
}

inline std::array<uint8_t, 8> Nonces(uint32_t first, uint32_t second) {
  std::array<uint8_t, 8> m{};
  for (int i = 0; i < 4; ++i) {
    m[i] = static_cast<uint8_t>(first >> (24 - 8 * i));
    m[4 + i] = static_cast<uint8_t>(second >> (24 - 8 * i));
  }
  return m;
}

// RFC 8684 §3.2: HMAC-B = HMAC(Key-B || Key-A, R-B || R-A), first 64 bits in the SYN/ACK.
inline uint64_t TruncatedHmac(uint64_t key1, uint64_t key2, uint32_t n1, uint32_t n2) {
  auto m = Nonces(n1, n2);
  auto d = HmacSha256(key1, key2, m);
  EXPECT_TRUE(d.ok());
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = v << 8 | d.value()[i];
  return v;
}

// The base fixture: one engine (seeded rng, the given config and interfaces), the local stack on
// Wire() and the peer on the reversed tuple.
class EngineHarness : public ::testing::Test {
 protected:
  EngineHarness(const EngineConfig& config, std::vector<LocalInterface> interfaces)
      : rng_(7), engine_(config, rng_) {
    engine_.SetInterfaces(std::move(interfaces));
  }
  // Port 5201 converted, nothing else changed.
  static EngineConfig DefaultConfig() {
    EngineConfig c;
    c.ports = {5201};
    return c;
  }
  // eth0 (198.18.1.2, the initial subflow) and wlan0 (198.18.2.2).
  static std::vector<LocalInterface> DefaultInterfaces() {
    return {LocalInterface{"eth0", kIfEth, {Addr("198.18.1.2")}},
            LocalInterface{"wlan0", kIfWlan, {Addr("198.18.2.2")}}};
  }

  // The initial subflow's tuple as the local stack sends it (local -> remote).
  virtual FourTuple Wire() const { return LocalTuple(); }
  // Extra checks on every forged packet, before it is recorded.
  virtual void CheckForged(const Seen& /*forged*/) {}

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
      CheckForged(s);
      s.ifindex = f.ifindex;
      forged_.push_back(s);
    }
    actions.Clear();
  }
  // The local stack's packets (LOCAL_OUT) and the peer's on a wire tuple (local -> remote).
  Seen Out(const Seg& s) { return Run(Hook::kLocalOut, Build(Wire(), s)); }
  Seen In(const FourTuple& wire, const Seg& s) {
    return Run(Hook::kPreRouting, Build(wire.Reversed(), s));
  }
  Seen In(const Seg& s) { return In(Wire(), s); }
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

}  // namespace mproxy::mptcp::harness
