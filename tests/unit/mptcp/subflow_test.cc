// Join subflows and handover in the MPTCP engine (RFC 8684 §3.2, seed §3.2-§3.5, §5.3, §5.4).
// The engine sits between a scripted local TCP stack and a scripted native-like MPTCP peer; every
// output is parsed back. HMACs are recomputed here from the RFC formulas (HMAC-SHA256 over the
// keys and nonces), not through the engine's join code.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <map>
#include <set>
#include <tuple>
#include <utility>

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

std::array<uint8_t, 20> FullHmac(uint64_t key1, uint64_t key2, uint32_t n1, uint32_t n2) {
  auto m = Nonces(n1, n2);
  auto d = HmacSha256(key1, key2, m);
  EXPECT_TRUE(d.ok());
  std::array<uint8_t, 20> h{};
  std::copy_n(d.value().begin(), 20, h.begin());
  return h;
}

class SubflowTest : public harness::EngineHarness {
 protected:
  SubflowTest() : EngineHarness(DefaultConfig(), DefaultInterfaces()) {}
};

TEST_F(SubflowTest, HandoverForgesMpJoinSynGolden) {
  ASSERT_NO_FATAL_FAILURE(Establish());
  const FourTuple w = StartJoin();
  EXPECT_EQ(join_syn_.ifindex, kIfWlan);
  EXPECT_TRUE(join_syn_.checksum_ok);
  EXPECT_EQ(w.src, Addr("198.18.2.2"));
  EXPECT_EQ(w.dst, LocalTuple().dst);
  EXPECT_EQ(w.dport, 5201);
  EXPECT_GE(w.sport, 61000);  // outside the local stack's ephemeral range (EngineConfig)
  EXPECT_EQ(join_syn_.tcp.flags, tcp_flags::kSyn);
  EXPECT_EQ(join_syn_.options.Mss(), 1460 - 28);
  EXPECT_EQ(join_syn_.options.WindowScale(), kLocalWs);  // the local stack's shift
  // The local stack offered SACK; the engine writes the join's SACK blocks itself.
  EXPECT_TRUE(join_syn_.options.SackPermitted());
  ASSERT_TRUE(join_syn_.options.Timestamps());
  // Interop §1.3: 1e 0c 1b ID | Token-B | R-A; our address ID for wlan0's address is 1.
  ASSERT_EQ(join_syn_.mptcp_raw.size(), 1u);
  const uint32_t token_b = DeriveFromKey(kKeyB)->token;
  std::vector<uint8_t> golden = {0x1e,
                                 0x0c,
                                 0x10,
                                 0x01,
                                 static_cast<uint8_t>(token_b >> 24),
                                 static_cast<uint8_t>(token_b >> 16),
                                 static_cast<uint8_t>(token_b >> 8),
                                 static_cast<uint8_t>(token_b),
                                 static_cast<uint8_t>(nonce_a_ >> 24),
                                 static_cast<uint8_t>(nonce_a_ >> 16),
                                 static_cast<uint8_t>(nonce_a_ >> 8),
                                 static_cast<uint8_t>(nonce_a_)};
  EXPECT_EQ(join_syn_.mptcp_raw[0], golden);
  auto st = engine_.HandoverStatusOf(handover_);
  ASSERT_TRUE(st);
  EXPECT_EQ(st->state, HandoverState::kInProgress);
  EXPECT_EQ(st->connections, 1u);
  auto sfs = Subflows();
  ASSERT_EQ(sfs.size(), 2u);
  EXPECT_TRUE(sfs[0].initial);
  EXPECT_EQ(sfs[0].ifname, "eth0");
  EXPECT_EQ(sfs[1].state, SubflowState::kSynSent);
  EXPECT_EQ(sfs[1].ifname, "wlan0");
  EXPECT_EQ(sfs[1].local_id, 1);
  EXPECT_EQ(engine_.counter(Counter::kJoinSynTx), 1u);
}

TEST_F(SubflowTest, JoinSynIsRetransmittedThenTheHandoverFails) {
  ASSERT_NO_FATAL_FAILURE(Establish());
  (void)StartJoin();
  Tick(std::chrono::milliseconds(1000));
  auto f = TakeForged();
  ASSERT_EQ(f.size(), 1u);
  EXPECT_EQ(f[0].tcp.seq, join_syn_.tcp.seq);
  EXPECT_EQ(f[0].mptcp_raw, join_syn_.mptcp_raw);
  Tick(std::chrono::seconds(100));
  EXPECT_EQ(engine_.counter(Counter::kJoinSynRetransmit), 4u);
  EXPECT_EQ(engine_.counter(Counter::kJoinTimeout), 1u);
  auto st = engine_.HandoverStatusOf(handover_);
  ASSERT_TRUE(st);
  EXPECT_EQ(st->state, HandoverState::kFailed);
  EXPECT_EQ(st->failed, 1u);
  EXPECT_EQ(Subflows().size(), 1u);  // the join's state is freed; the connection lives on
  EXPECT_EQ(engine_.connection_count(), 1u);
}

TEST_F(SubflowTest, ThirdAckCarriesHmacAGolden) {
  ASSERT_NO_FATAL_FAILURE(Establish());
  const FourTuple w = StartJoin();
  Seen sa = In(w, {.seq = kIsnJ,
                   .ack = join_syn_.tcp.seq + 1,
                   .flags = tcp_flags::kSyn | tcp_flags::kAck,
                   .mss = 1400,
                   .ws = kPeerJoinWs,
                   .ts = TimestampsOption{90000, 1003},
                   .mptcp = {PeerSynAck(TruncatedHmac(kKeyB, key_a_, kNonceB, nonce_a_))}});
  EXPECT_EQ(sa.verdict, Verdict::kDrop);  // never reaches the local stack
  auto f = TakeForged();
  ASSERT_EQ(f.size(), 1u);
  const Seen third = f[0];
  EXPECT_EQ(third.tuple, w);
  EXPECT_EQ(third.ifindex, kIfWlan);
  EXPECT_TRUE(third.checksum_ok);
  EXPECT_EQ(third.tcp.flags, tcp_flags::kAck);
  EXPECT_EQ(third.tcp.seq, join_syn_.tcp.seq + 1);
  EXPECT_EQ(third.tcp.ack, kIsnJ + 1);
  ASSERT_TRUE(third.options.Timestamps());
  EXPECT_EQ(third.options.Timestamps()->tsecr, 90000u);
  // Interop §1.3: 1e 18 10 00 | first 20 bytes of HMAC(Key-A || Key-B, R-A || R-B).
  ASSERT_EQ(third.mptcp_raw.size(), 1u);
  std::vector<uint8_t> golden = {0x1e, 0x18, 0x10, 0x00};
  auto h = FullHmac(key_a_, kKeyB, nonce_a_, kNonceB);
  golden.insert(golden.end(), h.begin(), h.end());
  EXPECT_EQ(third.mptcp_raw[0], golden);
  EXPECT_EQ(Subflows()[1].state, SubflowState::kPreEstablished);

  // Until the fourth ACK: the third ACK is retransmitted, and no data goes on the join.
  Seen d = Out({.seq = kIsnA + 101,
                .ack = kIsnB + 101,
                .ts = TimestampsOption{1004, 5010},
                .payload = Payload(50, 3)});
  EXPECT_EQ(d.tuple, LocalTuple());
  EXPECT_EQ(d.tcp.seq, kIsnA + 101);
  Tick(std::chrono::milliseconds(1000));
  f = TakeForged();
  ASSERT_EQ(f.size(), 1u);
  EXPECT_EQ(f[0].mptcp_raw[0], golden);
  // A segment without DATA_ACK is not the fourth ACK.
  Seen noack = In(w, {.seq = kIsnJ + 1, .ack = join_syn_.tcp.seq + 1});
  EXPECT_EQ(noack.verdict, Verdict::kDrop);
  EXPECT_EQ(engine_.counter(Counter::kJoinPreEstDrop), 1u);
  EXPECT_EQ(Subflows()[1].state, SubflowState::kPreEstablished);
}

TEST_F(SubflowTest, BadSynAckHmacIsReset) {
  ASSERT_NO_FATAL_FAILURE(Establish());
  const FourTuple w = StartJoin();
  Seen sa = In(w, {.seq = kIsnJ,
                   .ack = join_syn_.tcp.seq + 1,
                   .flags = tcp_flags::kSyn | tcp_flags::kAck,
                   .mptcp = {PeerSynAck(TruncatedHmac(kKeyB, key_a_, kNonceB, nonce_a_) ^ 1)}});
  EXPECT_EQ(sa.verdict, Verdict::kDrop);
  auto f = TakeForged();
  ASSERT_EQ(f.size(), 1u);
  EXPECT_EQ(f[0].tuple, w);
  EXPECT_TRUE(f[0].tcp.has(tcp_flags::kRst));
  EXPECT_EQ(f[0].tcp.seq, join_syn_.tcp.seq + 1);
  ASSERT_TRUE(f[0].mp.mp_tcprst);
  EXPECT_EQ(f[0].mp.mp_tcprst->reason, 1);  // MPTCP-specific error (interop §2.2)
  EXPECT_EQ(engine_.counter(Counter::kJoinSynAckBadHmac), 1u);
  EXPECT_EQ(Subflows().size(), 1u);
  EXPECT_EQ(engine_.HandoverStatusOf(handover_)->state, HandoverState::kFailed);
  // A late packet on the freed tuple is not ours any more (and never a crash).
  (void)In(w, {.seq = kIsnJ + 1, .ack = join_syn_.tcp.seq + 1, .mptcp = {PeerDss(100)}});
}

TEST_F(SubflowTest, FourthAckSwitchesWithMpPrio) {
  ASSERT_NO_FATAL_FAILURE(Establish());
  const FourTuple w = JoinAndHandover();
  auto f = TakeForged();
  // MP_PRIO backup on the old subflow, regular on the new one, each next to a DSS DATA_ACK.
  ASSERT_EQ(f.size(), 2u);
  EXPECT_EQ(f[0].tuple, LocalTuple());
  EXPECT_EQ(f[0].ifindex, kIfEth);  // forged on the initial subflow: out of its interface
  ASSERT_TRUE(f[0].mp.mp_prio && f[0].mp.dss && f[0].mp.dss->data_ack);
  EXPECT_TRUE(f[0].mp.mp_prio->backup);
  EXPECT_EQ(f[0].mptcp_raw[1], (std::vector<uint8_t>{0x1e, 0x03, 0x51}));
  EXPECT_EQ(f[1].tuple, w);
  EXPECT_EQ(f[1].ifindex, kIfWlan);
  ASSERT_TRUE(f[1].mp.mp_prio && f[1].mp.dss);
  EXPECT_FALSE(f[1].mp.mp_prio->backup);
  EXPECT_EQ(f[1].mp.dss->data_ack->value, idsn_b_ + 1 + 100);
  EXPECT_EQ(f[1].tcp.ack, kIsnJ + 1);
  auto st = engine_.HandoverStatusOf(handover_);
  ASSERT_TRUE(st);
  EXPECT_EQ(st->state, HandoverState::kDone);
  EXPECT_EQ(st->moved, 1u);
  ASSERT_TRUE(st->finished);
  auto sfs = Subflows();
  ASSERT_EQ(sfs.size(), 2u);
  EXPECT_TRUE(sfs[0].backup_local);
  EXPECT_FALSE(sfs[0].active);
  EXPECT_TRUE(sfs[1].active);
  EXPECT_EQ(sfs[1].state, SubflowState::kEstablished);
}

TEST_F(SubflowTest, MpPrioBackupIsRepeatedWhileDataKeepsComingOnTheOldSubflow) {
  // MP_PRIO travels on a pure ACK that nothing retransmits. If the peer keeps sending new data on
  // the subflow we made a backup, it did not get it: repeat it there, at most every 100 ms.
  ASSERT_NO_FATAL_FAILURE(Establish());
  (void)JoinAndHandover();
  TakeForged();
  auto prios_on_initial = [&] {
    size_t n = 0;
    for (const auto& f : TakeForged()) {
      if (f.tuple == LocalTuple() && f.mp.mp_prio && f.mp.mp_prio->backup) ++n;
    }
    return n;
  };
  now_ += std::chrono::milliseconds(150);
  (void)In({.seq = kIsnB + 101,
            .ack = kIsnA + 101,
            .mptcp = {PeerDss(100, {{100, 10}}, 100)},
            .payload = Payload(10, 1)});
  EXPECT_EQ(prios_on_initial(), 1u);
  now_ += std::chrono::milliseconds(50);  // within the repeat interval: not again
  (void)In({.seq = kIsnB + 111,
            .ack = kIsnA + 101,
            .mptcp = {PeerDss(100, {{110, 10}}, 110)},
            .payload = Payload(10, 2)});
  EXPECT_EQ(prios_on_initial(), 0u);
  now_ += std::chrono::milliseconds(100);
  (void)In({.seq = kIsnB + 121,
            .ack = kIsnA + 101,
            .mptcp = {PeerDss(100, {{120, 10}}, 120)},
            .payload = Payload(10, 3)});
  EXPECT_EQ(prios_on_initial(), 1u);
  EXPECT_EQ(engine_.counter(Counter::kMpPrioRepeated), 2u);
  // Pure ACKs on it (no data) never trigger it.
  now_ += std::chrono::milliseconds(200);
  (void)In({.seq = kIsnB + 131, .ack = kIsnA + 101, .mptcp = {PeerDss(100)}});
  EXPECT_EQ(prios_on_initial(), 0u);
}

TEST_F(SubflowTest, NewDataMovesOldRetransmissionsStay) {
  ASSERT_NO_FATAL_FAILURE(Establish());
  // Offsets 100..200 go out on eth0 and are not acknowledged before the handover.
  (void)Out({.seq = kIsnA + 101, .ack = kIsnB + 101, .payload = Payload(100, 1)});
  const FourTuple w = JoinAndHandover();
  TakeForged();
  const uint32_t jisn = join_syn_.tcp.seq;
  // New data (tx offsets 200..400): on the join, SSN from 1, DSN continuing the stream.
  Seen d1 = Out({.seq = kIsnA + 201,
                 .ack = kIsnB + 101,
                 .window = 321,
                 .ts = TimestampsOption{1010, 5010},
                 .sack = {{kIsnB + 200, kIsnB + 300}},
                 .payload = Payload(200, 4)});
  EXPECT_EQ(d1.verdict, Verdict::kAccept);
  EXPECT_TRUE(d1.checksum_ok);
  EXPECT_EQ(d1.tuple, w);
  EXPECT_EQ(d1.tcp.seq, jisn + 1);
  EXPECT_EQ(d1.tcp.ack, kIsnJ + 1);
  EXPECT_EQ(d1.tcp.window, 321);  // same shift as the local stack's
  EXPECT_EQ(d1.payload, Payload(200, 4));
  ASSERT_TRUE(d1.options.Timestamps());
  EXPECT_EQ(d1.options.Timestamps()->tsval, 1010u);
  EXPECT_EQ(d1.options.Timestamps()->tsecr, 90001u);  // the join's last tsval from the peer
  EXPECT_FALSE(d1.options.Find(tcp_opt::kSack));
  ASSERT_TRUE(d1.mp.dss && d1.mp.dss->mapping);
  EXPECT_EQ(d1.mp.dss->mapping->dsn, idsn_a_ + 1 + 200);
  EXPECT_EQ(d1.mp.dss->mapping->ssn, 1u);
  EXPECT_EQ(d1.mp.dss->mapping->data_len, 200);
  EXPECT_EQ(d1.mp.dss->data_ack->value, idsn_b_ + 1 + 100);
  Seen d2 = Out({.seq = kIsnA + 401, .ack = kIsnB + 101, .payload = Payload(100, 5)});
  EXPECT_EQ(d2.tcp.seq, jisn + 201);
  EXPECT_EQ(d2.mp.dss->mapping->ssn, 201u);
  EXPECT_EQ(d2.mp.dss->mapping->dsn, idsn_a_ + 1 + 400);
  // A retransmission of pre-handover bytes (offset 100..200) stays on the initial subflow at its
  // old SSNs, with the mapping it had.
  Seen r0 = Out({.seq = kIsnA + 101, .ack = kIsnB + 101, .payload = Payload(100, 1)});
  EXPECT_EQ(r0.tuple, LocalTuple());
  EXPECT_EQ(r0.tcp.seq, kIsnA + 101);
  EXPECT_EQ(r0.mp.dss->mapping->ssn, 101u);
  EXPECT_EQ(r0.mp.dss->mapping->dsn, idsn_a_ + 1 + 100);
  // A retransmission of join bytes stays on the join.
  Seen r1 = Out({.seq = kIsnA + 201, .ack = kIsnB + 101, .payload = Payload(200, 4)});
  EXPECT_EQ(r1.tuple, w);
  EXPECT_EQ(r1.tcp.seq, jisn + 1);
  // The old path goes silent (no subflow ACK moves there): after two retransmissions on it, the
  // next one of its bytes goes to the active subflow at fresh SSNs, same DSNs.
  Seen r2 = Out({.seq = kIsnA + 101, .ack = kIsnB + 101, .payload = Payload(100, 1)});
  EXPECT_EQ(r2.tuple, LocalTuple());
  Seen r3 = Out({.seq = kIsnA + 101, .ack = kIsnB + 101, .payload = Payload(100, 1)});
  EXPECT_EQ(r3.tuple, w);
  EXPECT_EQ(r3.tcp.seq, jisn + 301);
  EXPECT_EQ(r3.mp.dss->mapping->ssn, 301u);
  EXPECT_EQ(r3.mp.dss->mapping->dsn, idsn_a_ + 1 + 100);
  EXPECT_EQ(engine_.counter(Counter::kTxStaleSubflow), 1u);
  EXPECT_EQ(engine_.counter(Counter::kTxSameSubflow), 3u);
  // Pure ACKs sit at the join's next SSN; a keepalive probe one below it.
  Seen pa = Out({.seq = kIsnA + 501, .ack = kIsnB + 101});
  EXPECT_EQ(pa.tuple, w);
  EXPECT_EQ(pa.tcp.seq, jisn + 401);
  Seen ka = Out({.seq = kIsnA + 500, .ack = kIsnB + 101});
  EXPECT_EQ(ka.tcp.seq, jisn + 400);
  // The peer acknowledges on the join: the local stack gets the DATA_ACK as its ACK, on its tuple.
  Seen a = In(w, {.seq = kIsnJ + 1,
                  .ack = jisn + 301,
                  .window = 100,
                  .ts = TimestampsOption{90050, 1010},
                  .mptcp = {PeerDss(500)}});
  EXPECT_EQ(a.verdict, Verdict::kAccept);
  EXPECT_EQ(a.tuple, LocalTuple().Reversed());
  EXPECT_EQ(a.tcp.ack, kIsnA + 501);
  EXPECT_EQ(a.tcp.window, 100 >> (kPeerWs - kPeerJoinWs));  // rescaled to the initial's shift
  EXPECT_EQ(a.mp.dss, std::nullopt);
  EXPECT_TRUE(a.checksum_ok);
  auto sfs = Subflows();
  EXPECT_EQ(sfs[1].bytes_tx, 600u);  // 200 + 100 + the 200 and 100 retransmitted
}

TEST_F(SubflowTest, InboundDataOnJoinIsDeliveredAtItsTsn) {
  ASSERT_NO_FATAL_FAILURE(Establish());
  const FourTuple w = JoinAndHandover();
  TakeForged();
  // The peer sends stream bytes 100..200 on the join, at join SSN 1 (wrapping 2^32 at once).
  Seen r = In(w, {.seq = kIsnJ + 1,
                  .ack = join_syn_.tcp.seq + 1,
                  .ts = TimestampsOption{90100, 1003},
                  .mptcp = {PeerDss(100, {{100, 100}}, 0)},
                  .payload = Payload(100, 6)});
  EXPECT_EQ(r.verdict, Verdict::kAccept);
  EXPECT_TRUE(r.checksum_ok);
  EXPECT_EQ(r.tuple, LocalTuple().Reversed());
  EXPECT_EQ(r.tcp.seq, kIsnB + 101);
  EXPECT_EQ(r.tcp.ack, kIsnA + 101);
  EXPECT_EQ(r.payload, Payload(100, 6));
  EXPECT_TRUE(r.mptcp_raw.empty());
  ASSERT_TRUE(r.options.Timestamps());
  // The peer's join clock (90100) is far from its initial one (5010): the local stack sees a
  // continuation of the initial subflow's sequence, never a step back (PAWS, RFC 7323 §5).
  const uint32_t t1 = r.options.Timestamps()->tsval;
  EXPECT_EQ(t1, 5010u);
  Seen r2 = In(w, {.seq = kIsnJ + 101,
                   .ack = join_syn_.tcp.seq + 1,
                   .ts = TimestampsOption{90110, 1003},
                   .mptcp = {PeerDss(100, {{200, 50}}, 100)},
                   .payload = Payload(50, 7)});
  EXPECT_EQ(r2.tcp.seq, kIsnB + 201);
  EXPECT_EQ(r2.options.Timestamps()->tsval, t1 + 10);
  // A late segment on the initial subflow with its (lower) clock: still not behind.
  Seen r3 = In({.seq = kIsnB + 101,
                .ack = kIsnA + 101,
                .ts = TimestampsOption{5015, 1003},
                .mptcp = {PeerDss(100, {{250, 10}}, 100)},
                .payload = Payload(10, 8)});
  EXPECT_EQ(r3.tcp.seq, kIsnB + 251);
  EXPECT_GE(static_cast<int32_t>(r3.options.Timestamps()->tsval - (t1 + 10)), 0);
  // The local ACK of all of it: goes on the active join, and the initial subflow, which carried
  // bytes 250..260, gets its own subflow ACK (seed §3.4).
  Seen ack = Out({.seq = kIsnA + 101, .ack = kIsnB + 261, .ts = TimestampsOption{1020, 5015}});
  EXPECT_EQ(ack.tuple, w);
  EXPECT_EQ(ack.tcp.ack, kIsnJ + 151);
  EXPECT_EQ(ack.mp.dss->data_ack->value, idsn_b_ + 1 + 260);
  auto f = TakeForged();
  ASSERT_EQ(f.size(), 1u);
  EXPECT_EQ(f[0].tuple, LocalTuple());
  EXPECT_EQ(f[0].tcp.ack, kIsnB + 111);
  EXPECT_EQ(f[0].mp.dss->data_ack->value, idsn_b_ + 1 + 260);
  EXPECT_EQ(engine_.counter(Counter::kSideAckTx), 1u);
  // An ACK with no news from the (now backup) initial subflow is not a duplicate ACK for the
  // local stack.
  Seen dup = In({.seq = kIsnB + 111, .ack = kIsnA + 101, .mptcp = {PeerDss(100)}});
  EXPECT_EQ(dup.verdict, Verdict::kDrop);
  EXPECT_EQ(engine_.counter(Counter::kNonActiveAckConsumed), 1u);
  // SACK blocks from the join are in its subflow space: removed before the local stack.
  Seen sack = In(w, {.seq = kIsnJ + 151,
                     .ack = join_syn_.tcp.seq + 1,
                     .ts = TimestampsOption{90120, 1020},
                     .sack = {{join_syn_.tcp.seq + 1, join_syn_.tcp.seq + 2}},
                     .mptcp = {PeerDss(100)}});
  EXPECT_EQ(sack.verdict, Verdict::kAccept);  // the active subflow's duplicate ACK is passed
  EXPECT_FALSE(sack.options.Find(tcp_opt::kSack));
  EXPECT_TRUE(sack.options.Timestamps());
}

TEST_F(SubflowTest, PeerClosingTheJoinKeepsTheConnection) {
  ASSERT_NO_FATAL_FAILURE(Establish());
  const FourTuple w = JoinAndHandover();
  TakeForged();
  const uint32_t jisn = join_syn_.tcp.seq;
  Seen fin = In(w, {.seq = kIsnJ + 1,
                    .ack = jisn + 1,
                    .flags = tcp_flags::kAck | tcp_flags::kFin,
                    .mptcp = {PeerDss(100)}});
  EXPECT_EQ(fin.verdict, Verdict::kDrop);
  auto f = TakeForged();
  ASSERT_EQ(f.size(), 1u);  // our FIN, acknowledging theirs
  EXPECT_EQ(f[0].tuple, w);
  EXPECT_TRUE(f[0].tcp.has(tcp_flags::kFin));
  EXPECT_EQ(f[0].tcp.ack, kIsnJ + 2);
  EXPECT_EQ(engine_.counter(Counter::kSubflowClosedRx), 1u);
  // New data goes back to the initial subflow, at the SSN after what it carried.
  Seen d = Out({.seq = kIsnA + 101, .ack = kIsnB + 101, .payload = Payload(10, 9)});
  EXPECT_EQ(d.tuple, LocalTuple());
  EXPECT_EQ(d.tcp.seq, kIsnA + 101);
  EXPECT_EQ(d.mp.dss->mapping->dsn, idsn_a_ + 1 + 100);
  (void)In(w, {.seq = kIsnJ + 2, .ack = jisn + 2, .mptcp = {PeerDss(100)}});
  auto sfs = Subflows();
  ASSERT_EQ(sfs.size(), 2u);
  EXPECT_EQ(sfs[1].state, SubflowState::kClosed);
  EXPECT_TRUE(sfs[0].active);
  EXPECT_EQ(engine_.connection_count(), 1u);
}

TEST_F(SubflowTest, PeerResettingTheJoinKeepsTheConnection) {
  ASSERT_NO_FATAL_FAILURE(Establish());
  const FourTuple w = JoinAndHandover();
  TakeForged();
  MpTcpRst why;
  why.reason = 5;  // unacceptable performance
  Seen rst = In(w, {.seq = kIsnJ + 1,
                    .ack = join_syn_.tcp.seq + 1,
                    .flags = tcp_flags::kRst | tcp_flags::kAck,
                    .mptcp = {why}});
  EXPECT_EQ(rst.verdict, Verdict::kDrop);  // the local stack's connection is not reset
  EXPECT_EQ(engine_.counter(Counter::kSubflowRstRx), 1u);
  EXPECT_EQ(Conn()->state, ConnState::kEstablished);
  auto sfs = Subflows();
  EXPECT_EQ(sfs[1].state, SubflowState::kClosed);
  EXPECT_TRUE(sfs[0].active);
  Seen d = Out({.seq = kIsnA + 101, .ack = kIsnB + 101, .payload = Payload(10, 9)});
  EXPECT_EQ(d.tuple, LocalTuple());
  // A reset of the last subflow is the connection's end: the local stack sees it.
  Seen last =
      In({.seq = kIsnB + 101, .ack = kIsnA + 111, .flags = tcp_flags::kRst | tcp_flags::kAck});
  EXPECT_EQ(last.verdict, Verdict::kAccept);
  EXPECT_TRUE(last.tcp.has(tcp_flags::kRst));
  EXPECT_EQ(last.tuple, LocalTuple().Reversed());
  EXPECT_EQ(last.tcp.seq, kIsnB + 101);
  EXPECT_EQ(Conn()->state, ConnState::kClosed);
}

TEST_F(SubflowTest, ConnectionCloseSendsFinOnEverySubflowAndFreesState) {
  ASSERT_NO_FATAL_FAILURE(Establish());
  const FourTuple w = JoinAndHandover();
  TakeForged();
  const uint32_t jisn = join_syn_.tcp.seq;
  // Local FIN with 10 bytes: a DATA_FIN on the active join (mapping length 10 + 1).
  Seen fin = Out({.seq = kIsnA + 101,
                  .ack = kIsnB + 101,
                  .flags = tcp_flags::kAck | tcp_flags::kFin,
                  .payload = Payload(10, 1)});
  EXPECT_EQ(fin.tuple, w);
  EXPECT_FALSE(fin.tcp.has(tcp_flags::kFin));
  ASSERT_TRUE(fin.mp.dss && fin.mp.dss->mapping);
  EXPECT_TRUE(fin.mp.dss->data_fin);
  EXPECT_EQ(fin.mp.dss->mapping->data_len, 11);
  // The peer's DATA_ACK covers it (arriving on the initial subflow): FIN on both subflows.
  Seen acked = In({.seq = kIsnB + 101, .ack = kIsnA + 101, .mptcp = {PeerDss(111)}});
  EXPECT_EQ(acked.tcp.ack, kIsnA + 112);
  auto f = TakeForged();
  ASSERT_EQ(f.size(), 2u);
  std::map<uint16_t, Seen> fins;
  for (auto& s : f) {
    EXPECT_TRUE(s.tcp.has(tcp_flags::kFin));
    fins[s.tuple.sport] = s;
  }
  ASSERT_TRUE(fins.contains(w.sport) && fins.contains(LocalTuple().sport));
  EXPECT_EQ(fins[w.sport].tcp.seq, jisn + 11);
  EXPECT_EQ(fins[LocalTuple().sport].tcp.seq, kIsnA + 101);
  // Unacknowledged subflow FINs are retransmitted.
  Tick(std::chrono::milliseconds(200));
  EXPECT_EQ(TakeForged().size(), 2u);
  // The peer acks both FINs, sends its DATA_FIN on the join, then FINs on both subflows.
  (void)In({.seq = kIsnB + 101, .ack = kIsnA + 102, .mptcp = {PeerDss(111)}});
  (void)In(w, {.seq = kIsnJ + 1, .ack = jisn + 12, .mptcp = {PeerDss(111)}});
  Dss pfin = PeerDss(111);
  pfin.mapping = DssMapping{idsn_b_ + 1 + 100, true, 0, 1, {}};
  pfin.data_fin = true;
  Seen rfin = In(w, {.seq = kIsnJ + 1, .ack = jisn + 12, .mptcp = {pfin}});
  EXPECT_TRUE(rfin.tcp.has(tcp_flags::kFin));
  EXPECT_EQ(rfin.tcp.seq, kIsnB + 101);
  EXPECT_EQ(rfin.tuple, LocalTuple().Reversed());
  (void)Out({.seq = kIsnA + 112, .ack = kIsnB + 102});
  TakeForged();
  Seen s1 = In(w, {.seq = kIsnJ + 1,
                   .ack = jisn + 12,
                   .flags = tcp_flags::kAck | tcp_flags::kFin,
                   .mptcp = {PeerDss(111)}});
  Seen s2 = In({.seq = kIsnB + 101,
                .ack = kIsnA + 102,
                .flags = tcp_flags::kAck | tcp_flags::kFin,
                .mptcp = {PeerDss(111)}});
  EXPECT_EQ(s1.verdict, Verdict::kDrop);
  EXPECT_EQ(s2.verdict, Verdict::kDrop);
  f = TakeForged();
  ASSERT_EQ(f.size(), 2u);  // each subflow FIN acknowledged on its subflow
  EXPECT_EQ(Conn()->state, ConnState::kClosed);
  Tick(std::chrono::seconds(11));
  EXPECT_EQ(engine_.connection_count(), 0u);
  // The join's wire tuple is forgotten too: a late packet there is an unknown flow.
  const uint64_t before = engine_.counter(Counter::kNoConnection);
  (void)In(w, {.seq = kIsnJ + 2, .ack = jisn + 12, .mptcp = {PeerDss(111)}});
  EXPECT_EQ(engine_.counter(Counter::kNoConnection), before + 1);
}

TEST_F(SubflowTest, LocalRstResetsEverySubflow) {
  ASSERT_NO_FATAL_FAILURE(Establish());
  const FourTuple w = JoinAndHandover();
  TakeForged();
  Seen r =
      Out({.seq = kIsnA + 101, .ack = kIsnB + 101, .flags = tcp_flags::kRst | tcp_flags::kAck});
  EXPECT_TRUE(r.tcp.has(tcp_flags::kRst));
  EXPECT_TRUE(r.mp.mp_fastclose);
  EXPECT_TRUE(r.mp.mp_tcprst);
  auto f = TakeForged();
  ASSERT_EQ(f.size(), 1u);
  EXPECT_NE(f[0].tuple, r.tuple);
  EXPECT_TRUE(f[0].tuple == w || f[0].tuple == LocalTuple());
  EXPECT_TRUE(f[0].tcp.has(tcp_flags::kRst));
  EXPECT_EQ(Conn()->state, ConnState::kClosed);
}

TEST_F(SubflowTest, BreakBeforeMakeRetransmitsOnTheNewSubflow) {
  ASSERT_NO_FATAL_FAILURE(Establish());
  // 100 more bytes on eth0 that the peer never acknowledges (the path broke).
  (void)Out({.seq = kIsnA + 101, .ack = kIsnB + 101, .payload = Payload(100, 3)});
  const FourTuple w = StartJoin(HandoverMode::kBreakBeforeMake);
  // Nothing may leave on the old path any more, and the new one is not up yet.
  Seen lost = Out({.seq = kIsnA + 101, .ack = kIsnB + 101, .payload = Payload(100, 3)});
  EXPECT_EQ(lost.verdict, Verdict::kDrop);
  EXPECT_EQ(engine_.counter(Counter::kNoSubflow), 1u);
  Seen sa = In(w, {.seq = kIsnJ,
                   .ack = join_syn_.tcp.seq + 1,
                   .flags = tcp_flags::kSyn | tcp_flags::kAck,
                   .ws = kPeerJoinWs,
                   .ts = TimestampsOption{90000, 1003},
                   .mptcp = {PeerSynAck(TruncatedHmac(kKeyB, key_a_, kNonceB, nonce_a_))}});
  EXPECT_EQ(sa.verdict, Verdict::kDrop);
  TakeForged();
  (void)In(w, {.seq = kIsnJ + 1,
               .ack = join_syn_.tcp.seq + 1,
               .ts = TimestampsOption{90001, 1003},
               .mptcp = {PeerDss(100)}});
  auto f = TakeForged();
  // REMOVE_ADDR for the old address (ID 0: the initial subflow's) on the new subflow.
  bool rm = false;
  for (auto& s : f) {
    EXPECT_EQ(s.tuple, w);
    if (s.mp.remove_addr) {
      rm = true;
      EXPECT_EQ(s.mp.remove_addr->count, 1);
      EXPECT_EQ(s.mp.remove_addr->ids[0], 0);
    }
  }
  EXPECT_TRUE(rm);
  EXPECT_EQ(engine_.HandoverStatusOf(handover_)->state, HandoverState::kDone);
  // The local stack's RTO retransmission of offsets 100..200: fresh SSN space on the new subflow,
  // the same DSNs.
  Seen re = Out({.seq = kIsnA + 101, .ack = kIsnB + 101, .payload = Payload(100, 3)});
  EXPECT_EQ(re.tuple, w);
  EXPECT_EQ(re.tcp.seq, join_syn_.tcp.seq + 1);
  EXPECT_EQ(re.mp.dss->mapping->ssn, 1u);
  EXPECT_EQ(re.mp.dss->mapping->dsn, idsn_a_ + 1 + 100);
  EXPECT_EQ(engine_.counter(Counter::kTxMovedSubflow), 1u);
  Seen next = Out({.seq = kIsnA + 201, .ack = kIsnB + 101, .payload = Payload(50, 4)});
  EXPECT_EQ(next.tcp.seq, join_syn_.tcp.seq + 101);
  EXPECT_EQ(next.mp.dss->mapping->dsn, idsn_a_ + 1 + 200);
  // The peer's DATA_ACK on the new subflow maps back to the local stack's sequence space.
  Seen a = In(w, {.seq = kIsnJ + 1, .ack = join_syn_.tcp.seq + 151, .mptcp = {PeerDss(250)}});
  EXPECT_EQ(a.tcp.ack, kIsnA + 251);
  auto sfs = Subflows();
  EXPECT_EQ(sfs[0].state, SubflowState::kClosed);
  EXPECT_TRUE(sfs[1].active);
}

// Break-before-make right after the link went down: the daemon's interface list no longer holds
// the old interface's address, yet its subflows must be found (the bench stalled otherwise: no
// REMOVE_ADDR, the peer kept sending on the dead path).
TEST_F(SubflowTest, BreakBeforeMakeFindsTheSubflowsOfADownedInterface) {
  ASSERT_NO_FATAL_FAILURE(Establish());
  engine_.SetInterfaces(
      {LocalInterface{"eth0", kIfEth, {}}, LocalInterface{"wlan0", kIfWlan, {Addr("198.18.2.2")}}});
  const FourTuple w = JoinAndHandover(HandoverMode::kBreakBeforeMake);
  bool rm = false;
  for (auto& f : TakeForged()) rm = rm || (f.tuple == w && f.mp.remove_addr);
  EXPECT_TRUE(rm);
  EXPECT_EQ(engine_.counter(Counter::kRemoveAddrTx), 1u);
  auto sfs = Subflows();
  ASSERT_EQ(sfs.size(), 2u);
  EXPECT_EQ(sfs[0].state, SubflowState::kClosed);
  EXPECT_TRUE(sfs[1].active);
}

// `handover eth0 wlan0` then at once `handover wlan0 eth0 --break`: the later request wins. The
// join under way on wlan0 is reset and freed, the first request no longer switches anything.
TEST_F(SubflowTest, LaterBreakBeforeMakeSupersedesAJoinUnderWay) {
  ASSERT_NO_FATAL_FAILURE(Establish());
  const FourTuple w = StartJoin();
  const uint64_t first = handover_;
  Actions a;
  auto id = engine_.StartHandover(
      now_, HandoverRequest{"wlan0", "eth0", HandoverMode::kBreakBeforeMake, {}}, a);
  ASSERT_TRUE(id.ok());
  Collect(a);
  bool rst = false;
  for (auto& f : TakeForged()) rst = rst || (f.tuple == w && f.tcp.has(tcp_flags::kRst));
  EXPECT_TRUE(rst);
  EXPECT_EQ(engine_.counter(Counter::kHandoverSuperseded), 1u);
  EXPECT_EQ(engine_.HandoverStatusOf(first)->state, HandoverState::kFailed);
  EXPECT_EQ(engine_.HandoverStatusOf(id.value())->state, HandoverState::kDone);
  // A late SYN/ACK of the freed join switches nothing; the data stays on eth0.
  (void)In(w, {.seq = kIsnJ,
               .ack = join_syn_.tcp.seq + 1,
               .flags = tcp_flags::kSyn | tcp_flags::kAck,
               .mptcp = {PeerSynAck(TruncatedHmac(kKeyB, key_a_, kNonceB, nonce_a_))}});
  Seen d = Out({.seq = kIsnA + 101, .ack = kIsnB + 101, .payload = Payload(100, 3)});
  EXPECT_EQ(d.verdict, Verdict::kAccept);
  EXPECT_EQ(d.tuple, LocalTuple());
}

// The peer maps 64 KiB at once on the join but has sent only 1000 bytes there; the local stack
// acknowledges more (it had those bytes from the old path). The subflow ACK must stop at what
// the join carried: Linux ignores an ACK above its SND.NXT, and the subflow stalled.
TEST_F(SubflowTest, SubflowAckNeverPassesTheHighestSsnReceived) {
  ASSERT_NO_FATAL_FAILURE(Establish());
  const FourTuple w = JoinAndHandover();
  TakeForged();
  Seen d = In(w, {.seq = kIsnJ + 1,
                  .ack = join_syn_.tcp.seq + 1,
                  .ts = TimestampsOption{90002, 1003},
                  .mptcp = {PeerDss(100, {{100, 60000}}, 0)},
                  .payload = Payload(1000, 5)});
  ASSERT_EQ(d.verdict, Verdict::kAccept);
  EXPECT_EQ(d.tcp.seq, kIsnB + 101);
  Seen ack =
      Out({.seq = kIsnA + 101, .ack = kIsnB + 101 + 5000, .ts = TimestampsOption{1004, 90002}});
  ASSERT_EQ(ack.tuple, w);
  EXPECT_EQ(ack.tcp.ack, kIsnJ + 1 + 1000);
  for (auto& f : TakeForged()) {
    if (f.tuple == w) {
      EXPECT_EQ(f.tcp.ack, kIsnJ + 1 + 1000);
    }
  }
}

// Seed §3.4 after a make-before-break: a segment is lost on the old (initial) subflow, the next
// one arrives there. The local stack's duplicate ACK must reach the old subflow (not only the
// active one), with a SACK block in the old subflow's SSN space, so that its sender
// fast-retransmits instead of waiting for its RTO; and the subflow ACK of the join still follows
// what arrived on the join although the local stack's cumulative ACK is stuck at the hole.
TEST_F(SubflowTest, DuplicateAcksAndSackGoToTheSubflowWithTheHole) {
  ASSERT_NO_FATAL_FAILURE(Establish());
  const FourTuple w = JoinAndHandover();
  TakeForged();
  // Offsets 100..1100 lost on the initial subflow; 1100..1600 arrives there.
  Seen late = In({.seq = kIsnB + 1 + 1100,
                  .ack = kIsnA + 101,
                  .ts = TimestampsOption{5020, 1003},
                  .mptcp = {PeerDss(100, {{1100, 500}}, 1100)},
                  .payload = Payload(500, 6)});
  ASSERT_EQ(late.verdict, Verdict::kAccept);
  EXPECT_EQ(engine_.counter(Counter::kRxOutOfOrder), 1u);
  // New data on the join (offsets 1600..2600 of the stream, the join's first bytes).
  Seen j = In(w, {.seq = kIsnJ + 1,
                  .ack = join_syn_.tcp.seq + 1,
                  .ts = TimestampsOption{90002, 1003},
                  .mptcp = {PeerDss(100, {{1600, 1000}}, 0)},
                  .payload = Payload(1000, 7)});
  ASSERT_EQ(j.verdict, Verdict::kAccept);
  // The local stack's duplicate ACK (cumulative ACK at the hole).
  Seen dup = Out({.seq = kIsnA + 101, .ack = kIsnB + 101, .ts = TimestampsOption{1004, 90002}});
  std::vector<Seen> all = TakeForged();
  all.push_back(dup);
  bool on_join = false, on_old = false;
  for (auto& s : all) {
    if (s.tuple == w) {
      on_join = true;
      EXPECT_EQ(s.tcp.ack, kIsnJ + 1 + 1000);  // the join's bytes are acknowledged
    }
    if (s.tuple == LocalTuple()) {
      on_old = true;
      EXPECT_EQ(s.tcp.ack, kIsnB + 101);  // the hole
      std::array<SackBlock, 4> b{};
      ASSERT_EQ(s.options.SackBlocks(b), 1u);
      EXPECT_EQ(b[0].left, kIsnB + 1 + 1100);
      EXPECT_EQ(b[0].right, kIsnB + 1 + 1600);
    }
  }
  EXPECT_TRUE(on_join);
  EXPECT_TRUE(on_old);
  EXPECT_GE(engine_.counter(Counter::kSackTx), 1u);
  // The retransmission fills the hole: the old subflow's ACK jumps over the SACKed range.
  (void)In({.seq = kIsnB + 1 + 100,
            .ack = kIsnA + 101,
            .ts = TimestampsOption{5030, 1003},
            .mptcp = {PeerDss(100, {{100, 1000}}, 100)},
            .payload = Payload(1000, 8)});
  Seen cum =
      Out({.seq = kIsnA + 101, .ack = kIsnB + 101 + 2500, .ts = TimestampsOption{1005, 5030}});
  all = TakeForged();
  all.push_back(cum);
  bool old_acked = false;
  for (auto& s : all) {
    if (s.tuple == LocalTuple()) {
      old_acked = s.tcp.ack == kIsnB + 1 + 1600;
      std::array<SackBlock, 4> b{};
      EXPECT_EQ(s.options.SackBlocks(b), 0u);
    }
  }
  EXPECT_TRUE(old_acked);
}

// Seed §3.3: a local segment that overtakes earlier data (the earlier one lost before our hook)
// gets the SSNs it would have had; the late bytes fill the reserved space on the same subflow.
TEST_F(SubflowTest, OutOfOrderLocalSegmentsKeepTheMappingMonotonous) {
  ASSERT_NO_FATAL_FAILURE(Establish());
  const FourTuple w = JoinAndHandover();
  TakeForged();
  const uint32_t jisn = join_syn_.tcp.seq;
  Seen a = Out({.seq = kIsnA + 101, .ack = kIsnB + 101, .payload = Payload(100, 1)});
  ASSERT_EQ(a.tuple, w);
  EXPECT_EQ(a.tcp.seq, jisn + 1);
  // Offsets 300..400 before 200..300.
  Seen c = Out({.seq = kIsnA + 301, .ack = kIsnB + 101, .payload = Payload(100, 3)});
  ASSERT_EQ(c.tuple, w);
  EXPECT_EQ(c.tcp.seq, jisn + 201);
  ASSERT_TRUE(c.mp.dss && c.mp.dss->mapping);
  EXPECT_EQ(c.mp.dss->mapping->ssn, 201u);
  EXPECT_EQ(c.mp.dss->mapping->dsn, idsn_a_ + 1 + 300);
  EXPECT_EQ(engine_.counter(Counter::kTxGapReserved), 1u);
  Seen b = Out({.seq = kIsnA + 201, .ack = kIsnB + 101, .payload = Payload(100, 2)});
  ASSERT_EQ(b.tuple, w);
  EXPECT_EQ(b.tcp.seq, jisn + 101);
  ASSERT_TRUE(b.mp.dss && b.mp.dss->mapping);
  EXPECT_EQ(b.mp.dss->mapping->ssn, 101u);
  EXPECT_EQ(b.mp.dss->mapping->dsn, idsn_a_ + 1 + 200);
  // Then new data continues after the highest: SSN 300.
  Seen d = Out({.seq = kIsnA + 401, .ack = kIsnB + 101, .payload = Payload(100, 4)});
  EXPECT_EQ(d.tcp.seq, jisn + 301);
  EXPECT_EQ(engine_.counter(Counter::kTxMovedSubflow), 0u);
}

// The local stack is the sender: the peer's SACK blocks on a subflow (its SSN space) reach the
// local stack as TSN blocks through the SEND table (seed §3.5), or the stack never fast-retransmits
// a loss on a join and waits for its RTO (measured: 0.5 s stalls in PROXY <-> PROXY handovers).
TEST_F(SubflowTest, PeerSackOnAJoinIsProjectedToTheLocalStack) {
  ASSERT_NO_FATAL_FAILURE(Establish());
  const FourTuple w = JoinAndHandover();
  TakeForged();
  const uint32_t jisn = join_syn_.tcp.seq;
  // Stream offsets 100..700 go out on the join as three segments: SSN offsets 0..600.
  for (uint32_t off = 100; off < 700; off += 200) {
    Seen d = Out({.seq = kIsnA + 1 + off,
                  .ack = kIsnB + 101,
                  .ts = TimestampsOption{1010, 5010},
                  .payload = Payload(200, 4)});
    ASSERT_EQ(d.tuple, w);
  }
  // The first one is lost: the peer's duplicate subflow ACK SACKs SSN 200..600 (wire +1) and
  // carries a D-SACK-like block below its cumulative ACK, which must not be forwarded.
  // (No timestamps on this one: two blocks and the DSS fill the option space.)
  Seen a = In(w, {.seq = kIsnJ + 1,
                  .ack = jisn + 1,
                  .sack = {{jisn - 99, jisn + 1}, {jisn + 201, jisn + 601}},
                  .mptcp = {PeerDss(100)}});
  ASSERT_EQ(a.verdict, Verdict::kAccept);  // a duplicate ACK, but one with news
  EXPECT_EQ(a.tuple, LocalTuple().Reversed());
  EXPECT_EQ(a.tcp.ack, kIsnA + 101);
  EXPECT_TRUE(a.checksum_ok);
  std::array<SackBlock, 4> b{};
  ASSERT_EQ(a.options.SackBlocks(b), 1u);
  EXPECT_EQ(b[0].left, kIsnA + 1 + 300);
  EXPECT_EQ(b[0].right, kIsnA + 1 + 700);
  EXPECT_EQ(engine_.counter(Counter::kSackProjected), 1u);
  // The same SSNs SACKed on the initial subflow mean nothing there (it carried none of them):
  // stripped, and the empty duplicate ACK from a non-active subflow is consumed as before.
  Seen o = In({.seq = kIsnB + 101,
               .ack = kIsnA + 101,
               .ts = TimestampsOption{5060, 1010},
               .sack = {{kIsnA + 201, kIsnA + 601}},
               .mptcp = {PeerDss(100)}});
  EXPECT_EQ(o.verdict, Verdict::kDrop);
  EXPECT_EQ(engine_.counter(Counter::kSackProjected), 1u);
  EXPECT_GE(engine_.counter(Counter::kSackStripped), 1u);
  // Once the retransmission fills the hole the cumulative ACK covers everything: no blocks.
  Seen r = Out({.seq = kIsnA + 101, .ack = kIsnB + 101, .payload = Payload(200, 4)});
  ASSERT_EQ(r.tuple, w);
  EXPECT_EQ(r.tcp.seq, jisn + 1);  // same subflow, same SSNs (seed §3.2)
  Seen c = In(w, {.seq = kIsnJ + 1,
                  .ack = jisn + 601,
                  .ts = TimestampsOption{90060, 1010},
                  .mptcp = {PeerDss(700)}});
  ASSERT_EQ(c.verdict, Verdict::kAccept);
  EXPECT_EQ(c.tcp.ack, kIsnA + 701);
  EXPECT_EQ(c.options.SackBlocks(b), 0u);
}

// `handover eth0 wlan0`, then `handover wlan0 eth0 --break` while wlan0 still works: what the peer
// had already sent on the join still reaches the local stack (its mapping is known), instead of
// being dropped until the peer reinjects it.
TEST_F(SubflowTest, DataOnASubflowLeftByBreakBeforeMakeIsStillDelivered) {
  ASSERT_NO_FATAL_FAILURE(Establish());
  const FourTuple w = JoinAndHandover();
  Actions a;
  ASSERT_TRUE(engine_
                  .StartHandover(
                      now_, HandoverRequest{"wlan0", "eth0", HandoverMode::kBreakBeforeMake, {}}, a)
                  .ok());
  Collect(a);
  TakeForged();
  ASSERT_EQ(Subflows()[1].state, SubflowState::kClosed);
  Seen d = In(w, {.seq = kIsnJ + 1,
                  .ack = join_syn_.tcp.seq + 1,
                  .ts = TimestampsOption{90002, 1003},
                  .mptcp = {PeerDss(100, {{100, 700}}, 0)},
                  .payload = Payload(700, 9)});
  EXPECT_EQ(d.verdict, Verdict::kAccept);
  EXPECT_EQ(d.tuple, LocalTuple().Reversed());
  EXPECT_EQ(d.tcp.seq, kIsnB + 101);
  EXPECT_EQ(engine_.counter(Counter::kSubflowClosedData), 1u);
  // Only its ACK goes out there, so that the peer can drain what it queued on the subflow.
  auto f = TakeForged();
  ASSERT_EQ(f.size(), 1u);
  EXPECT_EQ(f[0].tuple, w);
  EXPECT_EQ(f[0].tcp.ack, kIsnJ + 1 + 700);
  EXPECT_EQ(f[0].tcp.seq, join_syn_.tcp.seq + 1);
  EXPECT_EQ(f[0].payload.size(), 0u);
  EXPECT_EQ(engine_.counter(Counter::kGoneSubflowAckTx), 1u);
  // The peer shuts it down behind its last data (FIN with data): the FIN is acknowledged too.
  Seen last = In(w, {.seq = kIsnJ + 1 + 700,
                     .ack = join_syn_.tcp.seq + 1,
                     .flags = tcp_flags::kAck | tcp_flags::kFin,
                     .ts = TimestampsOption{90003, 1003},
                     .mptcp = {PeerDss(100, {{800, 300}}, 700)},
                     .payload = Payload(300, 10)});
  EXPECT_EQ(last.verdict, Verdict::kAccept);
  EXPECT_FALSE(last.tcp.has(tcp_flags::kFin));  // a subflow FIN is not the DATA_FIN
  f = TakeForged();
  ASSERT_FALSE(f.empty());
  EXPECT_EQ(f.back().tuple, w);
  EXPECT_EQ(f.back().tcp.ack, kIsnJ + 1 + 1000 + 1);
}

// RFC 8684 §3.4.1, interop §1.5: a valid ADD_ADDR (Linux: on a pure ACK, no DSS) is echoed with
// E=1 and no HMAC next to a DSS DATA_ACK; one with a wrong HMAC is counted and ignored.
TEST_F(SubflowTest, AddAddrIsEchoedAndABadHmacIgnored) {
  ASSERT_NO_FATAL_FAILURE(Establish());
  AddAddr a;
  a.address_id = 1;
  a.address = Addr("198.18.4.2");
  auto h = AddAddrHmac(kKeyB, key_a_, 1, a.address.bytes(), 0);
  ASSERT_TRUE(h.ok());
  a.hmac = h.value() ^ 1;
  Seen bad = In(
      {.seq = kIsnB + 101, .ack = kIsnA + 101, .ts = TimestampsOption{5011, 1003}, .mptcp = {a}});
  EXPECT_EQ(bad.verdict, Verdict::kDrop);  // signalling, not for the local stack
  EXPECT_TRUE(TakeForged().empty());
  EXPECT_EQ(engine_.counter(Counter::kAddAddrBadHmac), 1u);
  a.hmac = h.value();
  (void)In(
      {.seq = kIsnB + 101, .ack = kIsnA + 101, .ts = TimestampsOption{5012, 1003}, .mptcp = {a}});
  auto f = TakeForged();
  ASSERT_EQ(f.size(), 1u);
  EXPECT_EQ(f[0].tuple, LocalTuple());
  EXPECT_TRUE(f[0].checksum_ok);
  ASSERT_TRUE(f[0].mp.add_addr && f[0].mp.dss && f[0].mp.dss->data_ack);
  EXPECT_TRUE(f[0].mp.add_addr->echo);
  EXPECT_EQ(f[0].tcp.ack, kIsnB + 101);
  // Interop §1.5 example form: 1e 08 31 01 c6 12 04 02.
  EXPECT_EQ(f[0].mptcp_raw[1], (std::vector<uint8_t>{0x1e, 0x08, 0x31, 0x01, 198, 18, 4, 2}));
  EXPECT_EQ(engine_.counter(Counter::kAddAddrRx), 1u);
  EXPECT_EQ(engine_.counter(Counter::kAddAddrEchoTx), 1u);
  // After a handover the echo goes on the subflow the ADD_ADDR came on.
  const FourTuple w = JoinAndHandover();
  TakeForged();
  (void)In(w, {.seq = kIsnJ + 1,
               .ack = join_syn_.tcp.seq + 1,
               .ts = TimestampsOption{90002, 1003},
               .mptcp = {a}});
  f = TakeForged();
  ASSERT_EQ(f.size(), 1u);
  EXPECT_EQ(f[0].tuple, w);
  ASSERT_TRUE(f[0].mp.add_addr);
  EXPECT_TRUE(f[0].mp.add_addr->echo);
  EXPECT_EQ(engine_.counter(Counter::kAddAddrEchoTx), 2u);
}

// Two holes on the old subflow: both SACK blocks fit next to timestamps and the DSS once the
// padding NOPs go (10 + 12 + 18 = 40 bytes), most recent first (RFC 2018 §4).
TEST_F(SubflowTest, TwoSackBlocksFitNextToTimestampsAndDss) {
  ASSERT_NO_FATAL_FAILURE(Establish());
  (void)JoinAndHandover();
  TakeForged();
  for (uint64_t off : {1100, 2100}) {  // 100..1100 and 1600..2100 lost
    Seen late = In({.seq = kIsnB + 1 + static_cast<uint32_t>(off),
                    .ack = kIsnA + 101,
                    .ts = TimestampsOption{5020, 1003},
                    .mptcp = {PeerDss(100, {{off, 500}}, static_cast<uint32_t>(off))},
                    .payload = Payload(500, 6)});
    ASSERT_EQ(late.verdict, Verdict::kAccept);
  }
  Seen dup = Out({.seq = kIsnA + 101, .ack = kIsnB + 101, .ts = TimestampsOption{1004, 5020}});
  std::vector<Seen> all = TakeForged();
  all.push_back(dup);
  bool seen = false;
  for (auto& s : all) {
    if (s.tuple != LocalTuple()) continue;
    seen = true;
    EXPECT_TRUE(s.checksum_ok);
    EXPECT_TRUE(s.options.Timestamps());
    ASSERT_TRUE(s.mp.dss && s.mp.dss->data_ack);
    std::array<SackBlock, 4> b{};
    ASSERT_EQ(s.options.SackBlocks(b), 2u);
    EXPECT_EQ(b[0].left, kIsnB + 1 + 2100);
    EXPECT_EQ(b[0].right, kIsnB + 1 + 2600);
    EXPECT_EQ(b[1].left, kIsnB + 1 + 1100);
    EXPECT_EQ(b[1].right, kIsnB + 1 + 1600);
  }
  EXPECT_TRUE(seen);
}

TEST_F(SubflowTest, HandoverWithoutConnectionsIsDoneAtOnce) {
  Actions a;
  auto id = engine_.StartHandover(now_, HandoverRequest{"eth0", "wlan0", {}, {}}, a);
  ASSERT_TRUE(id.ok());
  auto st = engine_.HandoverStatusOf(id.value());
  ASSERT_TRUE(st);
  EXPECT_EQ(st->state, HandoverState::kDone);
  EXPECT_EQ(st->connections, 0u);
  EXPECT_FALSE(engine_.StartHandover(now_, HandoverRequest{"eth0", "nope", {}, {}}, a).ok());
  EXPECT_FALSE(engine_.StartHandover(now_, HandoverRequest{"eth0", "wlan0", {}, 42}, a).ok());
  EXPECT_FALSE(engine_.AddSubflow(now_, 42, "wlan0", false, a).ok());
}

TEST_F(SubflowTest, NoAddressOfTheFamilyIsAnError) {
  ASSERT_NO_FATAL_FAILURE(Establish());
  engine_.SetInterfaces({LocalInterface{"eth0", kIfEth, {Addr("198.18.1.2")}},
                         LocalInterface{"wlan0", kIfWlan, {Addr("2001:db8::2")}}});
  Actions a;
  EXPECT_FALSE(engine_.AddSubflow(now_, token_a_, "wlan0", false, a).ok());
  EXPECT_FALSE(engine_.StartHandover(now_, HandoverRequest{"eth0", "wlan0", {}, token_a_}, a).ok());
  EXPECT_TRUE(a.forged.empty());
}

TEST_F(SubflowTest, AddSubflowAsBackupThenRemoveIt) {
  ASSERT_NO_FATAL_FAILURE(Establish());
  Actions a;
  ASSERT_TRUE(engine_.AddSubflow(now_, token_a_, "wlan0", /*backup=*/true, a).ok());
  Collect(a);
  auto f = TakeForged();
  ASSERT_EQ(f.size(), 1u);
  ASSERT_EQ(f[0].mptcp_raw.size(), 1u);
  EXPECT_EQ(f[0].mptcp_raw[0][2], 0x11);  // subtype 1, B = 1 (interop §1.3)
  const FourTuple w = f[0].tuple;
  join_syn_ = f[0];
  nonce_a_ = f[0].mp.mp_join->nonce;
  (void)In(w, {.seq = kIsnJ,
               .ack = join_syn_.tcp.seq + 1,
               .flags = tcp_flags::kSyn | tcp_flags::kAck,
               .ws = kPeerJoinWs,
               .ts = TimestampsOption{90000, 1003},
               .mptcp = {PeerSynAck(TruncatedHmac(kKeyB, key_a_, kNonceB, nonce_a_))}});
  (void)In(w, {.seq = kIsnJ + 1,
               .ack = join_syn_.tcp.seq + 1,
               .ts = TimestampsOption{90001, 1003},
               .mptcp = {PeerDss(100)}});
  TakeForged();
  // A backup subflow without a handover: sending stays on the initial subflow.
  auto sfs = Subflows();
  ASSERT_EQ(sfs.size(), 2u);
  EXPECT_TRUE(sfs[0].active);
  EXPECT_TRUE(sfs[1].backup_local);
  EXPECT_EQ(sfs[1].state, SubflowState::kEstablished);
  // While only the initial subflow carries data, the single-path fast path stays: SSN == TSN,
  // SACK passed, inbound lone DSS left in place.
  EXPECT_FALSE(Conn()->multi);
  Seen d = Out({.seq = kIsnA + 101, .ack = kIsnB + 101, .payload = Payload(10, 1)});
  EXPECT_EQ(d.tuple, LocalTuple());
  EXPECT_EQ(d.tcp.seq, kIsnA + 101);  // the initial subflow's SSNs still equal the TSNs
  Seen sack = Out({.seq = kIsnA + 111,
                   .ack = kIsnB + 101,
                   .ts = TimestampsOption{1010, 5010},
                   .sack = {{kIsnB + 200, kIsnB + 300}}});
  EXPECT_TRUE(sack.options.Find(tcp_opt::kSack));
  const uint64_t kept = engine_.counter(Counter::kInboundKeptDss);
  (void)In({.seq = kIsnB + 101,
            .ack = kIsnA + 111,
            .ts = TimestampsOption{5020, 1010},
            .mptcp = {PeerDss(110, {{100, 10}}, 100)},
            .payload = Payload(10, 2)});
  EXPECT_EQ(engine_.counter(Counter::kInboundKeptDss), kept + 1);
  EXPECT_FALSE(Conn()->multi);
  EXPECT_FALSE(engine_.AddSubflow(now_, token_a_, "nope", false, a).ok());
  // Removing it: a FIN on it, the connection stays.
  ASSERT_TRUE(engine_.RemoveSubflow(now_, token_a_, "wlan0", a).ok());
  Collect(a);
  f = TakeForged();
  ASSERT_EQ(f.size(), 1u);
  EXPECT_EQ(f[0].tuple, w);
  EXPECT_TRUE(f[0].tcp.has(tcp_flags::kFin));
  EXPECT_EQ(Subflows()[1].state, SubflowState::kClosing);
  // The last subflow cannot be removed.
  EXPECT_FALSE(engine_.RemoveSubflow(now_, token_a_, "eth0", a).ok());
}

TEST_F(SubflowTest, IdleBackupJoinClosesWithTheConnection) {
  ASSERT_NO_FATAL_FAILURE(Establish());
  Actions a;
  ASSERT_TRUE(engine_.AddSubflow(now_, token_a_, "wlan0", /*backup=*/true, a).ok());
  Collect(a);
  join_syn_ = TakeForged()[0];
  const FourTuple w = join_syn_.tuple;
  nonce_a_ = join_syn_.mp.mp_join->nonce;
  (void)In(w, {.seq = kIsnJ,
               .ack = join_syn_.tcp.seq + 1,
               .flags = tcp_flags::kSyn | tcp_flags::kAck,
               .mptcp = {PeerSynAck(TruncatedHmac(kKeyB, key_a_, kNonceB, nonce_a_))}});
  (void)In(w, {.seq = kIsnJ + 1, .ack = join_syn_.tcp.seq + 1, .mptcp = {PeerDss(100)}});
  TakeForged();
  ASSERT_FALSE(Conn()->multi);
  (void)Out({.seq = kIsnA + 101, .ack = kIsnB + 101, .flags = tcp_flags::kAck | tcp_flags::kFin});
  (void)In({.seq = kIsnB + 101, .ack = kIsnA + 101, .mptcp = {PeerDss(101)}});
  auto f = TakeForged();
  ASSERT_EQ(f.size(), 2u);  // the subflow FIN on the initial subflow and on the idle join
  EXPECT_EQ(f[0].tuple, LocalTuple());
  EXPECT_EQ(f[1].tuple, w);
  EXPECT_TRUE(f[1].tcp.has(tcp_flags::kFin));
  EXPECT_EQ(f[1].tcp.seq, join_syn_.tcp.seq + 1);
  // The peer's FIN on the join after its DATA_FIN: acknowledged there, never delivered.
  Dss pfin = PeerDss(101);
  pfin.mapping = DssMapping{idsn_b_ + 1 + 100, true, 0, 1, {}};
  pfin.data_fin = true;
  Seen rfin = In({.seq = kIsnB + 101, .ack = kIsnA + 102, .mptcp = {pfin}});
  EXPECT_TRUE(rfin.tcp.has(tcp_flags::kFin));
  (void)Out({.seq = kIsnA + 102, .ack = kIsnB + 102});
  TakeForged();
  Seen jfin = In(w, {.seq = kIsnJ + 1,
                     .ack = join_syn_.tcp.seq + 2,
                     .flags = tcp_flags::kAck | tcp_flags::kFin,
                     .mptcp = {PeerDss(101)}});
  EXPECT_EQ(jfin.verdict, Verdict::kDrop);
  f = TakeForged();
  ASSERT_EQ(f.size(), 1u);
  EXPECT_EQ(f[0].tuple, w);
  EXPECT_EQ(f[0].tcp.ack, kIsnJ + 2);
}

TEST_F(SubflowTest, HandoverBackUsesTheExistingSubflow) {
  ASSERT_NO_FATAL_FAILURE(Establish());
  const FourTuple w = JoinAndHandover();
  TakeForged();
  (void)Out({.seq = kIsnA + 101, .ack = kIsnB + 101, .payload = Payload(50, 1)});  // on the join
  Actions a;
  auto id = engine_.StartHandover(now_, HandoverRequest{"wlan0", "eth0", {}, {}}, a);
  ASSERT_TRUE(id.ok());
  Collect(a);
  // No new join: the initial subflow is still there (as backup); MP_PRIO flips both at once.
  auto f = TakeForged();
  ASSERT_EQ(f.size(), 2u);
  EXPECT_EQ(f[0].tuple, w);
  EXPECT_TRUE(f[0].mp.mp_prio && f[0].mp.mp_prio->backup);
  EXPECT_EQ(f[1].tuple, LocalTuple());
  EXPECT_TRUE(f[1].mp.mp_prio && !f[1].mp.mp_prio->backup);
  auto st = engine_.HandoverStatusOf(id.value());
  EXPECT_EQ(st->state, HandoverState::kDone);
  EXPECT_EQ(st->moved, 1u);
  // New data continues on the initial subflow after the SSNs it already used.
  Seen d = Out({.seq = kIsnA + 151, .ack = kIsnB + 101, .payload = Payload(20, 2)});
  EXPECT_EQ(d.tuple, LocalTuple());
  EXPECT_EQ(d.tcp.seq, kIsnA + 101);
  EXPECT_EQ(d.mp.dss->mapping->ssn, 101u);
  EXPECT_EQ(d.mp.dss->mapping->dsn, idsn_a_ + 1 + 150);
  auto sfs = Subflows();
  EXPECT_TRUE(sfs[0].active);
  EXPECT_EQ(sfs[0].bytes_tx, 120u);
  EXPECT_EQ(sfs[1].bytes_tx, 50u);
}

TEST_F(SubflowTest, MalformedAndUnexpectedJoinPacketsNeverCrash) {
  ASSERT_NO_FATAL_FAILURE(Establish());
  const FourTuple w = JoinAndHandover();
  TakeForged();
  // Mutations of valid packets on both subflows and from the local stack: every outcome is a
  // verdict (and counted), never a crash; accepted inbound packets of the flow always carry the
  // TCP-side tuple and sequence spaces.
  Xoshiro256 r(42);
  const std::vector<std::vector<uint8_t>> seeds = {
      Build(w.Reversed(), {.seq = kIsnJ + 1,
                           .ack = join_syn_.tcp.seq + 1,
                           .ts = TimestampsOption{90100, 1003},
                           .mptcp = {PeerDss(100, {{100, 100}}, 0)},
                           .payload = Payload(100, 6)}),
      Build(w.Reversed(), {.seq = kIsnJ + 1,
                           .ack = join_syn_.tcp.seq + 1,
                           .flags = tcp_flags::kAck | tcp_flags::kFin,
                           .mptcp = {PeerDss(100)}}),
      Build(w.Reversed(), {.seq = kIsnJ,
                           .ack = join_syn_.tcp.seq + 1,
                           .flags = tcp_flags::kSyn | tcp_flags::kAck,
                           .mptcp = {PeerSynAck(1)}}),
      Build(LocalTuple().Reversed(), {.seq = kIsnB + 101,
                                      .ack = kIsnA + 101,
                                      .mptcp = {PeerDss(100, {{100, 10}}, 100)},
                                      .payload = Payload(10, 1)}),
  };
  // First each valid packet once, inbound (the FIN last: it closes the join), then mutations.
  constexpr std::array<size_t, 4> kValidFirst = {2, 0, 3, 1};
  int join_checked = 0;
  for (int i = -4; i < 3000; ++i) {
    const bool valid = i < 0;
    std::vector<uint8_t> pkt =
        seeds[valid ? kValidFirst[static_cast<size_t>(i + 4)] : r.Below(seeds.size())];
    const int flips = valid ? 0 : 1 + static_cast<int>(r.Below(4));
    for (int k = 0; k < flips; ++k) {
      // Keep the IP header mostly intact so the TCP part is what gets exercised.
      const size_t at = 20 + r.Below(pkt.size() - 20);
      pkt[at] = static_cast<uint8_t>(r.Next64());
    }
    PacketOut out;
    Actions a;
    PacketMeta meta;
    meta.hook = !valid && r.Below(4) == 0 ? Hook::kLocalOut : Hook::kPreRouting;
    std::vector<uint8_t> copy = pkt;
    engine_.OnPacket(now_, meta, MutableBytes(copy), out, a);
    auto in = ParseTcpPacket(MutableBytes(pkt));
    const bool ours =
        in.ok() && (in->tuple() == w.Reversed() || in->tuple() == LocalTuple().Reversed());
    if (meta.hook == Hook::kPreRouting && out.verdict == Verdict::kAccept && ours &&
        Conn() != nullptr) {
      // Every accepted packet of the converted flow (malformed ones pass by policy, and are not
      // ours), rewritten or left in place, is in the TCP side's terms: its tuple, a TSN and a
      // TAN. The join's spaces are far from the local stack's (kIsnJ vs kIsnB, a random ISN vs
      // kIsnA), so a wire value passed through shows.
      std::vector<uint8_t> res = copy;
      if (out.rewritten) {
        res.assign(out.head.begin(), out.head.begin() + static_cast<long>(out.head_len));
        res.insert(res.end(), copy.begin() + static_cast<long>(out.tail_offset), copy.end());
      }
      auto p = ParseTcpPacket(MutableBytes(res));
      ASSERT_TRUE(p.ok());
      EXPECT_EQ(p->tuple(), LocalTuple().Reversed()) << "delivered on another tuple, i=" << i;
      if (p->tcp.has(tcp_flags::kAck)) {
        // The TAN comes from a DATA_ACK, never beyond what the local stack sent.
        EXPECT_LE(p->tcp.ack - (kIsnA + 1), Conn()->tx_high + 1) << "ack untranslated, i=" << i;
      }
      if (in->tuple() == w.Reversed()) {
        ++join_checked;
        EXPECT_NE(p->tcp.seq, in->tcp.seq) << "join seq passed untranslated, i=" << i;
        if (in->tcp.has(tcp_flags::kAck)) {
          EXPECT_NE(p->tcp.ack, in->tcp.ack) << "join ack passed untranslated, i=" << i;
        }
      }
    }
    now_ += std::chrono::milliseconds(1);
  }
  EXPECT_GT(join_checked, 0);
}

TEST_F(SubflowTest, JoinLimitIsEnforced) {
  ASSERT_NO_FATAL_FAILURE(Establish());
  Actions a;
  for (int i = 0; i < 7; ++i)
    ASSERT_TRUE(engine_.AddSubflow(now_, token_a_, "wlan0", false, a).ok());
  EXPECT_FALSE(engine_.AddSubflow(now_, token_a_, "wlan0", false, a).ok());
  Collect(a);
  std::set<uint16_t> ports;
  for (auto& f : TakeForged()) ports.insert(f.tuple.sport);
  EXPECT_EQ(ports.size(), 7u);  // a fresh source port for each
}

TEST_F(SubflowTest, Ipv6JoinUsesTheInterfacesV6Address) {
  engine_.SetInterfaces(
      {LocalInterface{"eth0", kIfEth, {Addr("198.18.1.2"), Addr("2001:db8:1::2")}},
       LocalInterface{"wlan0", kIfWlan, {Addr("198.18.2.2"), Addr("2001:db8:2::2")}}});
  const FourTuple t{Addr("2001:db8:1::2"), Addr("2001:db8:3::2"), 40001, 5201};
  (void)Run(Hook::kLocalOut, Build(t, {.seq = kIsnA,
                                       .flags = tcp_flags::kSyn,
                                       .mss = 1440,
                                       .ws = kLocalWs,
                                       .ts = TimestampsOption{1, 0}}));
  MpCapable synack;
  synack.form = MpCapable::Form::kSynAck;
  synack.sender_key = kKeyB;
  (void)Run(Hook::kPreRouting, Build(t.Reversed(), {.seq = kIsnB,
                                                    .ack = kIsnA + 1,
                                                    .flags = tcp_flags::kSyn | tcp_flags::kAck,
                                                    .mss = 1440,
                                                    .ws = kPeerWs,
                                                    .ts = TimestampsOption{2, 1},
                                                    .mptcp = {synack}}));
  ASSERT_NE(Conn(), nullptr);
  idsn_a_ = DeriveFromKey(Conn()->local_key)->idsn;
  idsn_b_ = DeriveFromKey(kKeyB)->idsn;
  Actions a;
  // Not before the server's first DSS: it would refuse the join (interop §2.6).
  EXPECT_FALSE(engine_.AddSubflow(now_, Conn()->local_token, "wlan0", false, a).ok());
  (void)Run(Hook::kPreRouting, Build(t.Reversed(), {.seq = kIsnB + 1,
                                                    .ack = kIsnA + 1,
                                                    .ts = TimestampsOption{3, 1},
                                                    .mptcp = {PeerDss(0)}}));
  auto id = engine_.StartHandover(now_, HandoverRequest{"eth0", "wlan0", {}, {}}, a);
  ASSERT_TRUE(id.ok());
  Collect(a);
  auto f = TakeForged();
  ASSERT_EQ(f.size(), 1u);
  EXPECT_EQ(f[0].tuple.src, Addr("2001:db8:2::2"));
  EXPECT_EQ(f[0].tuple.dst, t.dst);
  EXPECT_TRUE(f[0].checksum_ok);
  EXPECT_EQ(f[0].options.Mss(), 1440 - 28);
  ASSERT_TRUE(f[0].mp.mp_join);
  EXPECT_EQ(f[0].mp.mp_join->token, DeriveFromKey(kKeyB)->token);
}

TEST_F(SubflowTest, HandoverAdoptsAJoinUnderWay) {
  ASSERT_NO_FATAL_FAILURE(Establish());
  Actions a;
  ASSERT_TRUE(engine_.AddSubflow(now_, token_a_, "wlan0", /*backup=*/true, a).ok());
  auto id = engine_.StartHandover(now_, HandoverRequest{"eth0", "wlan0", {}, {}}, a);
  ASSERT_TRUE(id.ok());
  Collect(a);
  auto f = TakeForged();
  ASSERT_EQ(f.size(), 1u);  // one join, not two
  EXPECT_EQ(engine_.HandoverStatusOf(id.value())->state, HandoverState::kInProgress);
  const FourTuple w = f[0].tuple;
  join_syn_ = f[0];
  nonce_a_ = f[0].mp.mp_join->nonce;
  (void)In(w, {.seq = kIsnJ,
               .ack = join_syn_.tcp.seq + 1,
               .flags = tcp_flags::kSyn | tcp_flags::kAck,
               .mptcp = {PeerSynAck(TruncatedHmac(kKeyB, key_a_, kNonceB, nonce_a_))}});
  (void)In(w, {.seq = kIsnJ + 1, .ack = join_syn_.tcp.seq + 1, .mptcp = {PeerDss(100)}});
  EXPECT_EQ(engine_.HandoverStatusOf(id.value())->state, HandoverState::kDone);
  auto sfs = Subflows();
  EXPECT_FALSE(sfs[1].backup_local);  // MP_PRIO made it regular
  EXPECT_TRUE(sfs[1].active);
}

TEST_F(SubflowTest, LocalRstWithNoUsableSubflowStillEndsTheConnection) {
  ASSERT_NO_FATAL_FAILURE(Establish());
  (void)StartJoin(HandoverMode::kBreakBeforeMake);
  Seen r =
      Out({.seq = kIsnA + 101, .ack = kIsnB + 101, .flags = tcp_flags::kRst | tcp_flags::kAck});
  EXPECT_EQ(r.verdict, Verdict::kDrop);
  auto f = TakeForged();
  ASSERT_EQ(f.size(), 1u);  // the join in its handshake is reset
  EXPECT_TRUE(f[0].tcp.has(tcp_flags::kRst));
  EXPECT_EQ(Conn()->state, ConnState::kClosed);
  EXPECT_EQ(engine_.HandoverStatusOf(handover_)->state, HandoverState::kFailed);
  Tick(std::chrono::seconds(11));
  EXPECT_EQ(engine_.connection_count(), 0u);
}

TEST(MappingTableAssign, ReplacesWhatItCoversAndKeepsTheInvariants) {
  MappingTable t;
  ASSERT_EQ(t.Insert(0, 0, 300, 0), InsertResult::kInserted);  // one entry on subflow 0
  // A retransmission of [100, 200) moved to subflow 1 at its SSN 0: three pieces.
  t.Assign(100, 0, 100, 1);
  ASSERT_EQ(t.size(), 3u);
  EXPECT_EQ(t.entries()[0], (MapEntry{0, 0, 100, 0}));
  EXPECT_EQ(t.entries()[1], (MapEntry{100, 0, 100, 1}));
  EXPECT_EQ(t.entries()[2], (MapEntry{200, 200, 100, 0}));
  // New data right after on subflow 1 merges with its piece only where contiguous.
  t.Assign(300, 100, 50, 1);
  EXPECT_EQ(t.size(), 4u);
  // Assigning the same piece back merges the neighbours again.
  t.Assign(100, 100, 100, 0);
  ASSERT_EQ(t.size(), 2u);
  EXPECT_EQ(t.entries()[0], (MapEntry{0, 0, 300, 0}));
  EXPECT_EQ(t.entries()[1], (MapEntry{300, 100, 50, 1}));
  // Covering several entries at once.
  t.Assign(50, 1000, 280, 2);
  ASSERT_EQ(t.size(), 3u);
  EXPECT_EQ(t.entries()[0], (MapEntry{0, 0, 50, 0}));
  EXPECT_EQ(t.entries()[1], (MapEntry{50, 1000, 280, 2}));
  EXPECT_EQ(t.entries()[2], (MapEntry{330, 130, 20, 1}));
  EXPECT_EQ(t.Map(329), 1279u);
  t.Assign(10, 5, 0, 3);  // empty: no change
  EXPECT_EQ(t.size(), 3u);
}

// ---------------------------------------------------------------------------------------------
// Passive joins: a native client (the peer, key B) joins us.

class PassiveJoinTest : public SubflowTest {
 protected:
  void EstablishPassive() {
    MpCapable syn;
    (void)In({.seq = kIsnB,
              .flags = tcp_flags::kSyn,
              .mss = 1460,
              .ws = kPeerWs,
              .ts = TimestampsOption{5000, 0},
              .mptcp = {syn}});
    Seen sa = Out({.seq = kIsnA,
                   .ack = kIsnB + 1,
                   .flags = tcp_flags::kSyn | tcp_flags::kAck,
                   .mss = 1460,
                   .ws = kLocalWs,
                   .ts = TimestampsOption{1000, 5000}});
    ASSERT_TRUE(sa.mp.mp_capable);
    key_a_ = sa.mp.mp_capable->sender_key;
    idsn_a_ = DeriveFromKey(key_a_)->idsn;
    idsn_b_ = DeriveFromKey(kKeyB)->idsn;
    token_a_ = DeriveFromKey(key_a_)->token;
    MpCapable ack;
    ack.form = MpCapable::Form::kAck;
    ack.sender_key = kKeyB;
    ack.receiver_key = key_a_;
    (void)In(
        {.seq = kIsnB + 1, .ack = kIsnA + 1, .ts = TimestampsOption{5001, 1000}, .mptcp = {ack}});
    ASSERT_EQ(Conn()->state, ConnState::kEstablished);
    TakeForged();
  }
  // The peer joins from 198.18.4.2 to our initial address.
  FourTuple JoinTuple() { return FourTuple{LocalTuple().src, Addr("198.18.4.2"), 5201, 45000}; }
  MpJoin PeerSyn(uint32_t token) {
    MpJoin j;
    j.form = MpJoin::Form::kSyn;
    j.address_id = 3;
    j.token = token;
    j.nonce = kNonceB;
    return j;
  }
};

TEST_F(PassiveJoinTest, SynAckHmacAndFourthAck) {
  ASSERT_NO_FATAL_FAILURE(EstablishPassive());
  const FourTuple w = JoinTuple();
  // Note the tuple: our side is the LocalTuple's source (port 40000 is the peer's there); here the
  // connection was opened by the peer, so the wire tuple is ours:5201 <- peer:45000.
  Seen syn = In(w, {.seq = kIsnJ,
                    .flags = tcp_flags::kSyn,
                    .mss = 1400,
                    .ws = kPeerJoinWs,
                    .ts = TimestampsOption{70000, 0},
                    .mptcp = {PeerSyn(token_a_)}});
  EXPECT_EQ(syn.verdict, Verdict::kDrop);  // never reaches the local stack
  auto f = TakeForged();
  ASSERT_EQ(f.size(), 1u);
  const Seen sa = f[0];
  EXPECT_EQ(sa.tuple, w);
  EXPECT_TRUE(sa.checksum_ok);
  EXPECT_EQ(sa.tcp.flags, tcp_flags::kSyn | tcp_flags::kAck);
  EXPECT_EQ(sa.tcp.ack, kIsnJ + 1);
  EXPECT_EQ(sa.options.WindowScale(), kLocalWs);
  ASSERT_TRUE(sa.mp.mp_join);
  const uint32_t nonce = sa.mp.mp_join->nonce;
  // HMAC-B = HMAC(Key-B || Key-A, R-B || R-A) where B = us (the listener), A = the joiner.
  EXPECT_EQ(sa.mp.mp_join->truncated_hmac, TruncatedHmac(key_a_, kKeyB, nonce, kNonceB));
  EXPECT_EQ(sa.mp.mp_join->address_id, 0);  // our initial address
  EXPECT_EQ(engine_.counter(Counter::kJoinSynRx), 1u);
  // Third ACK with HMAC-A = HMAC(Key-A || Key-B, R-A || R-B), A = the joiner (the peer).
  MpJoin third;
  third.form = MpJoin::Form::kAck;
  third.hmac = FullHmac(kKeyB, key_a_, kNonceB, nonce);
  Seen t = In(w, {.seq = kIsnJ + 1,
                  .ack = sa.tcp.seq + 1,
                  .ts = TimestampsOption{70001, 1000},
                  .mptcp = {third}});
  EXPECT_EQ(t.verdict, Verdict::kDrop);
  f = TakeForged();
  ASSERT_EQ(f.size(), 1u);  // the fourth ACK, at once
  EXPECT_EQ(f[0].tuple, w);
  ASSERT_TRUE(f[0].mp.dss && f[0].mp.dss->data_ack);
  EXPECT_FALSE(f[0].mp.dss->mapping);
  EXPECT_EQ(f[0].tcp.seq, sa.tcp.seq + 1);
  EXPECT_EQ(f[0].tcp.ack, kIsnJ + 1);
  // Our fourth ACK was lost: the joiner repeats its third ACK, and gets another one.
  Seen t2 = In(w, {.seq = kIsnJ + 1,
                   .ack = sa.tcp.seq + 1,
                   .ts = TimestampsOption{70002, 1000},
                   .mptcp = {third}});
  EXPECT_EQ(t2.verdict, Verdict::kDrop);
  auto again = TakeForged();
  ASSERT_EQ(again.size(), 1u);
  EXPECT_EQ(again[0].tuple, w);
  EXPECT_TRUE(again[0].mp.dss && again[0].mp.dss->data_ack);
  EXPECT_EQ(engine_.counter(Counter::kJoinFourthAckTx), 2u);
  EXPECT_FALSE(Conn()->multi);  // still nothing but the handshake on the join
  auto sfs = Subflows();
  ASSERT_EQ(sfs.size(), 2u);
  EXPECT_EQ(sfs[1].state, SubflowState::kEstablished);
  EXPECT_EQ(sfs[1].remote_id, 3);
  EXPECT_FALSE(sfs[1].active);
  // Data from the native client on the join: delivered to the local stack's tuple.
  Seen d = In(w, {.seq = kIsnJ + 1,
                  .ack = sa.tcp.seq + 1,
                  .ts = TimestampsOption{70010, 1000},
                  .mptcp = {PeerDss(0, {{0, 40}}, 0)},
                  .payload = Payload(40, 1)});
  EXPECT_EQ(d.verdict, Verdict::kAccept);
  EXPECT_EQ(d.tuple, LocalTuple().Reversed());
  EXPECT_EQ(d.tcp.seq, kIsnB + 1);
  EXPECT_EQ(d.payload, Payload(40, 1));
  // The peer makes the join its regular path and the initial a backup (MP_PRIO): our local
  // stack's data follows.
  MpPrio backup;
  backup.backup = true;
  (void)In({.seq = kIsnB + 1, .ack = kIsnA + 1, .mptcp = {PeerDss(0), backup}});
  Seen o = Out({.seq = kIsnA + 1, .ack = kIsnB + 41, .payload = Payload(30, 2)});
  EXPECT_EQ(o.tuple, w);
  EXPECT_EQ(o.tcp.seq, sa.tcp.seq + 1);
  EXPECT_EQ(o.tcp.ack, kIsnJ + 41);
  EXPECT_EQ(o.mp.dss->mapping->dsn, idsn_a_ + 1);
}

TEST_F(PassiveJoinTest, UnknownTokenAndBadHmacAreReset) {
  ASSERT_NO_FATAL_FAILURE(EstablishPassive());
  const FourTuple w = JoinTuple();
  Seen syn = In(w, {.seq = kIsnJ, .flags = tcp_flags::kSyn, .mptcp = {PeerSyn(token_a_ ^ 1)}});
  EXPECT_EQ(syn.verdict, Verdict::kDrop);
  auto f = TakeForged();
  ASSERT_EQ(f.size(), 1u);
  EXPECT_TRUE(f[0].tcp.has(tcp_flags::kRst));
  EXPECT_EQ(f[0].tcp.ack, kIsnJ + 1);
  ASSERT_TRUE(f[0].mp.mp_tcprst);
  EXPECT_EQ(f[0].mp.mp_tcprst->reason, 1);
  EXPECT_EQ(engine_.counter(Counter::kJoinNoToken), 1u);

  (void)In(w, {.seq = kIsnJ, .flags = tcp_flags::kSyn, .mptcp = {PeerSyn(token_a_)}});
  f = TakeForged();
  ASSERT_EQ(f.size(), 1u);
  MpJoin third;
  third.form = MpJoin::Form::kAck;
  third.hmac = FullHmac(kKeyB, key_a_, kNonceB, f[0].mp.mp_join->nonce);
  third.hmac[0] ^= 1;
  Seen t = In(w, {.seq = kIsnJ + 1, .ack = f[0].tcp.seq + 1, .mptcp = {third}});
  EXPECT_EQ(t.verdict, Verdict::kDrop);
  f = TakeForged();
  ASSERT_EQ(f.size(), 1u);
  EXPECT_TRUE(f[0].tcp.has(tcp_flags::kRst));
  ASSERT_TRUE(f[0].mp.mp_tcprst);
  EXPECT_EQ(f[0].mp.mp_tcprst->reason, 1);
  EXPECT_EQ(engine_.counter(Counter::kJoinAckBadHmac), 1u);
  EXPECT_EQ(Subflows().size(), 1u);
}

TEST_F(SubflowTest, JoinsOfferNoWindowScaleWhenTheInitialSubflowHasNone) {
  // Local SYN offers WS 7, the peer's SYN/ACK has no WS: the local stack writes unscaled windows
  // (RFC 7323 §2.2), so a join must not announce a shift either.
  (void)Out({.seq = kIsnA,
             .flags = tcp_flags::kSyn,
             .window = 64240,
             .mss = 1460,
             .ws = kLocalWs,
             .ts = TimestampsOption{1000, 0}});
  MpCapable synack;
  synack.form = MpCapable::Form::kSynAck;
  synack.sender_key = kKeyB;
  (void)In({.seq = kIsnB,
            .ack = kIsnA + 1,
            .flags = tcp_flags::kSyn | tcp_flags::kAck,
            .mss = 1460,
            .ts = TimestampsOption{5000, 1000},
            .mptcp = {synack}});
  ASSERT_NE(Conn(), nullptr);
  key_a_ = Conn()->local_key;
  token_a_ = Conn()->local_token;
  idsn_a_ = DeriveFromKey(key_a_)->idsn;
  idsn_b_ = DeriveFromKey(kKeyB)->idsn;
  (void)Out({.seq = kIsnA + 1, .ack = kIsnB + 1, .ts = TimestampsOption{1001, 5000}});
  (void)In({.seq = kIsnB + 1,
            .ack = kIsnA + 1,
            .ts = TimestampsOption{5010, 1001},
            .mptcp = {PeerDss(0)}});
  TakeForged();
  // Active join: no WS in the MP_JOIN SYN; a WS in the SYN/ACK anyway is not used.
  const FourTuple w = StartJoin();
  EXPECT_FALSE(join_syn_.options.WindowScale().has_value());
  (void)In(w, {.seq = kIsnJ,
               .ack = join_syn_.tcp.seq + 1,
               .flags = tcp_flags::kSyn | tcp_flags::kAck,
               .ws = kPeerJoinWs,
               .ts = TimestampsOption{90000, 1001},
               .mptcp = {PeerSynAck(TruncatedHmac(kKeyB, key_a_, kNonceB, nonce_a_))}});
  (void)In(w, {.seq = kIsnJ + 1,
               .ack = join_syn_.tcp.seq + 1,
               .ts = TimestampsOption{90001, 1001},
               .mptcp = {PeerDss(0)}});
  TakeForged();
  // The peer's window on the join is unscaled like the initial's: passed as it is.
  Seen a = In(w, {.seq = kIsnJ + 1,
                  .ack = join_syn_.tcp.seq + 1,
                  .window = 1234,
                  .ts = TimestampsOption{90002, 1001},
                  .mptcp = {PeerDss(0)}});
  EXPECT_EQ(a.verdict, Verdict::kAccept);
  EXPECT_EQ(a.tcp.window, 1234);
  EXPECT_EQ(engine_.counter(Counter::kWindowRescaled), 0u);
  // Passive join (the peer joins us) with a WS in its SYN: our SYN/ACK carries none.
  MpJoin pj;
  pj.form = MpJoin::Form::kSyn;
  pj.address_id = 3;
  pj.token = token_a_;
  pj.nonce = kNonceB;
  const FourTuple pw{LocalTuple().src, Addr("198.18.4.2"), 40000, 5201};
  (void)In(pw, {.seq = kIsnJ, .flags = tcp_flags::kSyn, .ws = kPeerJoinWs, .mptcp = {pj}});
  auto f = TakeForged();
  ASSERT_EQ(f.size(), 1u);
  EXPECT_TRUE(f[0].tcp.has(tcp_flags::kSyn));
  EXPECT_FALSE(f[0].options.WindowScale().has_value());
}

TEST_F(SubflowTest, BreakBeforeMakeNeverRemovesTheNewSubflowsOwnAddress) {
  ASSERT_NO_FATAL_FAILURE(Establish());
  // A first join from wlan0 (address ID 1), reset by the peer: closed, gone.
  const FourTuple w1 = JoinAndHandover();
  TakeForged();
  (void)In(
      w1,
      {.seq = kIsnJ + 1, .ack = join_syn_.tcp.seq + 1, .flags = tcp_flags::kRst | tcp_flags::kAck});
  ASSERT_EQ(Subflows()[1].state, SubflowState::kClosed);
  // Break-before-make to wlan0 with no `from`: every subflow not on wlan0 is the old path.
  Actions a;
  auto id = engine_.StartHandover(
      now_, HandoverRequest{"", "wlan0", HandoverMode::kBreakBeforeMake, {}}, a);
  ASSERT_TRUE(id.ok());
  Collect(a);
  auto f = TakeForged();
  ASSERT_EQ(f.size(), 1u);
  join_syn_ = f[0];
  nonce_a_ = f[0].mp.mp_join->nonce;
  const FourTuple w2 = f[0].tuple;
  ASSERT_NE(w2, w1);
  EXPECT_EQ(f[0].mp.mp_join->address_id, 1);  // the same address as the closed join
  (void)In(w2, {.seq = kIsnJ,
                .ack = join_syn_.tcp.seq + 1,
                .flags = tcp_flags::kSyn | tcp_flags::kAck,
                .mptcp = {PeerSynAck(TruncatedHmac(kKeyB, key_a_, kNonceB, nonce_a_))}});
  (void)In(w2, {.seq = kIsnJ + 1, .ack = join_syn_.tcp.seq + 1, .mptcp = {PeerDss(100)}});
  int rm = 0;
  for (auto& s : TakeForged()) {
    if (!s.mp.remove_addr) continue;
    ++rm;
    EXPECT_EQ(s.tuple, w2);
    ASSERT_EQ(s.mp.remove_addr->count, 1);  // the initial subflow's address only
    EXPECT_EQ(s.mp.remove_addr->ids[0], 0);
  }
  EXPECT_EQ(rm, 1);
  EXPECT_EQ(engine_.HandoverStatusOf(id.value())->state, HandoverState::kDone);
}

TEST_F(SubflowTest, JoinPortNeverHijacksALocalConnection) {
  ASSERT_NO_FATAL_FAILURE(Establish());
  const FourTuple w = JoinAndHandover();
  TakeForged();
  EXPECT_GE(w.sport, 61000);  // not a port Linux's default ip_local_port_range hands out
  // The local stack (unaware of the raw-socket join) picks the same 4-tuple anyway (an explicit
  // bind, or a widened port range): its SYN is refused, not converted under the join's tuple.
  Seen syn = Run(Hook::kLocalOut, Build(w, {.seq = 777, .flags = tcp_flags::kSyn, .mss = 1460}));
  EXPECT_EQ(syn.verdict, Verdict::kDrop);
  EXPECT_EQ(engine_.counter(Counter::kJoinTupleInUse), 1u);
  EXPECT_EQ(engine_.connection_count(), 1u);
  // A SYN/ACK on that tuple is the join's business: never delivered to the old connection.
  MpCapable synack;
  synack.form = MpCapable::Form::kSynAck;
  synack.sender_key = 0x1234;
  Seen r = In(w, {.seq = 5555,
                  .ack = 778,
                  .flags = tcp_flags::kSyn | tcp_flags::kAck,
                  .mss = 1460,
                  .mptcp = {synack}});
  EXPECT_EQ(r.verdict, Verdict::kDrop);
  EXPECT_EQ(engine_.counter(Counter::kSubflowSynDropped), 1u);
  EXPECT_EQ(engine_.counter(Counter::kJoinSynRx), 0u);
  // Nor does a peer's SYN on the join's tuple open a connection the join would shadow.
  MpCapable mpc;
  Seen psyn = In(w, {.seq = 6666, .flags = tcp_flags::kSyn, .mss = 1460, .mptcp = {mpc}});
  EXPECT_EQ(psyn.verdict, Verdict::kDrop);
  EXPECT_EQ(engine_.counter(Counter::kJoinTupleInUse), 2u);
  EXPECT_EQ(engine_.connection_count(), 1u);
  // Once the join is closed its tuple is free: the local SYN's retransmission is converted.
  (void)In(w, {.seq = kIsnJ + 1, .flags = tcp_flags::kRst});
  ASSERT_EQ(Subflows()[1].state, SubflowState::kClosed);
  Seen again = Run(Hook::kLocalOut, Build(w, {.seq = 777, .flags = tcp_flags::kSyn, .mss = 1460}));
  EXPECT_EQ(again.verdict, Verdict::kAccept);
  EXPECT_TRUE(again.mp.mp_capable);
  EXPECT_EQ(engine_.connection_count(), 2u);
  EXPECT_EQ(engine_.counter(Counter::kJoinTupleInUse), 2u);
}

TEST_F(SubflowTest, SynOnAnEstablishedJoinIsAnsweredWithAnAckNeverDelivered) {
  ASSERT_NO_FATAL_FAILURE(Establish());
  const FourTuple w = JoinAndHandover();
  TakeForged();
  // A delayed duplicate of the peer's SYN/ACK: the join's raw ISN must not reach the local stack.
  Seen r = In(w, {.seq = kIsnJ,
                  .ack = join_syn_.tcp.seq + 1,
                  .flags = tcp_flags::kSyn | tcp_flags::kAck,
                  .mptcp = {PeerSynAck(TruncatedHmac(kKeyB, key_a_, kNonceB, nonce_a_))}});
  EXPECT_EQ(r.verdict, Verdict::kDrop);
  EXPECT_EQ(engine_.counter(Counter::kSubflowSynDropped), 1u);
  auto f = TakeForged();
  ASSERT_EQ(f.size(), 1u);  // RFC 5961 §4.2: an ACK on the join
  EXPECT_EQ(f[0].tuple, w);
  EXPECT_EQ(f[0].tcp.flags, tcp_flags::kAck);
  EXPECT_EQ(f[0].tcp.seq, join_syn_.tcp.seq + 1);
  EXPECT_EQ(f[0].tcp.ack, kIsnJ + 1);
  EXPECT_EQ(Subflows()[1].state, SubflowState::kEstablished);
  // An empty segment whose seq lies before the join's ISN + 1 has no TSN: dropped, not passed
  // with the join's sequence number.
  Seen e = In(w, {.seq = kIsnJ - 5, .ack = join_syn_.tcp.seq + 1, .mptcp = {PeerDss(100)}});
  EXPECT_EQ(e.verdict, Verdict::kDrop);
  EXPECT_EQ(engine_.counter(Counter::kSubflowSeqUnmapped), 1u);
  // The join keeps working.
  Seen d = In(w, {.seq = kIsnJ + 1,
                  .ack = join_syn_.tcp.seq + 1,
                  .mptcp = {PeerDss(100, {{100, 10}}, 0)},
                  .payload = Payload(10, 6)});
  EXPECT_EQ(d.verdict, Verdict::kAccept);
  EXPECT_EQ(d.tuple, LocalTuple().Reversed());
  EXPECT_EQ(d.tcp.seq, kIsnB + 101);
}

TEST_F(SubflowTest, KeepaliveOnEverySubflowIsAnswered) {
  ASSERT_NO_FATAL_FAILURE(Establish());
  const FourTuple w = JoinAndHandover();
  TakeForged();
  // The peer's keepalive on the initial (now backup) subflow: seq = what we acknowledged - 1, no
  // data. It is no news for the local stack, but the peer needs its ACK on that subflow.
  Seen k = In({.seq = kIsnB + 100,
               .ack = kIsnA + 101,
               .ts = TimestampsOption{6000, 1003},
               .mptcp = {PeerDss(100)}});
  EXPECT_EQ(k.verdict, Verdict::kDrop);
  auto f = TakeForged();
  ASSERT_EQ(f.size(), 1u);
  EXPECT_EQ(f[0].tuple, LocalTuple());
  EXPECT_EQ(f[0].tcp.flags, tcp_flags::kAck);
  EXPECT_EQ(f[0].tcp.seq, kIsnA + 101);
  EXPECT_EQ(f[0].tcp.ack, kIsnB + 101);
  ASSERT_TRUE(f[0].options.Timestamps());
  EXPECT_EQ(f[0].options.Timestamps()->tsecr, 6000u);
  EXPECT_TRUE(f[0].mp.dss && f[0].mp.dss->data_ack);
  EXPECT_EQ(engine_.counter(Counter::kProbeAckTx), 1u);
  // A keepalive on the active join before it received anything sits at its ISN: it has no TSN,
  // so the local stack cannot answer it; we do.
  Seen kj = In(w, {.seq = kIsnJ, .ack = join_syn_.tcp.seq + 1, .mptcp = {PeerDss(100)}});
  EXPECT_EQ(kj.verdict, Verdict::kDrop);
  f = TakeForged();
  ASSERT_EQ(f.size(), 1u);
  EXPECT_EQ(f[0].tuple, w);
  EXPECT_EQ(f[0].tcp.ack, kIsnJ + 1);
  EXPECT_EQ(engine_.counter(Counter::kProbeAckTx), 2u);
  // Once the join carried data, its keepalive is the local stack's (its ACK goes on the join):
  // delivered one below the local rcv_nxt, not answered twice.
  (void)In(w, {.seq = kIsnJ + 1,
               .ack = join_syn_.tcp.seq + 1,
               .mptcp = {PeerDss(100, {{100, 10}}, 0)},
               .payload = Payload(10, 6)});
  (void)Out({.seq = kIsnA + 101, .ack = kIsnB + 111});
  TakeForged();
  Seen ka = In(w, {.seq = kIsnJ + 10, .ack = join_syn_.tcp.seq + 1, .mptcp = {PeerDss(100)}});
  EXPECT_EQ(ka.verdict, Verdict::kAccept);
  EXPECT_EQ(ka.tuple, LocalTuple().Reversed());
  EXPECT_EQ(ka.tcp.seq, kIsnB + 110);
  EXPECT_TRUE(TakeForged().empty());
  EXPECT_EQ(engine_.counter(Counter::kProbeAckTx), 2u);
}

TEST_F(SubflowTest, RstOnTheInitialSubflowNeedsItsExactSequenceNumber) {
  ASSERT_NO_FATAL_FAILURE(Establish());
  // RFC 5961 §3.2 on the single path. Out of window: dropped, nothing answered.
  Seen blind = In({.seq = kIsnB + 0x40000000, .ack = 0, .flags = tcp_flags::kRst});
  EXPECT_EQ(blind.verdict, Verdict::kDrop);
  EXPECT_TRUE(TakeForged().empty());
  EXPECT_EQ(engine_.counter(Counter::kRstBadSeq), 1u);
  EXPECT_EQ(Conn()->state, ConnState::kEstablished);
  // In the window (500 << 7 bytes) but not at rcv_nxt: a challenge ACK, dropped.
  Seen near = In({.seq = kIsnB + 101 + 1000, .ack = kIsnA + 101, .flags = tcp_flags::kRst});
  EXPECT_EQ(near.verdict, Verdict::kDrop);
  auto f = TakeForged();
  ASSERT_EQ(f.size(), 1u);
  EXPECT_EQ(f[0].tuple, LocalTuple());
  EXPECT_EQ(f[0].tcp.flags, tcp_flags::kAck);
  EXPECT_EQ(f[0].tcp.seq, kIsnA + 101);
  EXPECT_EQ(f[0].tcp.ack, kIsnB + 101);
  EXPECT_EQ(engine_.counter(Counter::kRstChallengeAck), 1u);
  EXPECT_EQ(Conn()->state, ConnState::kEstablished);
  // The peer's answer to it, at exactly rcv_nxt: the local stack gets the RST.
  Seen exact = In({.seq = kIsnB + 101, .ack = kIsnA + 101, .flags = tcp_flags::kRst});
  EXPECT_EQ(exact.verdict, Verdict::kAccept);
  EXPECT_TRUE(exact.tcp.has(tcp_flags::kRst));
  EXPECT_EQ(exact.tcp.seq, kIsnB + 101);
  EXPECT_EQ(Conn()->state, ConnState::kClosed);
}

TEST_F(SubflowTest, RstOnAJoinNeedsItsExactSequenceNumber) {
  ASSERT_NO_FATAL_FAILURE(Establish());
  const FourTuple w = JoinAndHandover();
  TakeForged();
  // The join received nothing yet: rcv_nxt is its ISN + 1. Out of window: dropped.
  Seen blind = In(w, {.seq = kIsnJ + 0x40000000, .flags = tcp_flags::kRst});
  EXPECT_EQ(blind.verdict, Verdict::kDrop);
  EXPECT_TRUE(TakeForged().empty());
  EXPECT_EQ(engine_.counter(Counter::kRstBadSeq), 1u);
  EXPECT_EQ(Subflows()[1].state, SubflowState::kEstablished);
  // In window: a challenge ACK on the join.
  Seen near = In(w, {.seq = kIsnJ + 1 + 100, .flags = tcp_flags::kRst});
  EXPECT_EQ(near.verdict, Verdict::kDrop);
  auto f = TakeForged();
  ASSERT_EQ(f.size(), 1u);
  EXPECT_EQ(f[0].tuple, w);
  EXPECT_EQ(f[0].tcp.flags, tcp_flags::kAck);
  EXPECT_EQ(f[0].tcp.seq, join_syn_.tcp.seq + 1);
  EXPECT_EQ(f[0].tcp.ack, kIsnJ + 1);
  EXPECT_EQ(engine_.counter(Counter::kRstChallengeAck), 1u);
  EXPECT_EQ(Subflows()[1].state, SubflowState::kEstablished);
  // The same on the initial subflow once multipath (its rcv_nxt: kIsnB + 101).
  Seen iblind = In({.seq = kIsnB + 0x40000000, .flags = tcp_flags::kRst});
  EXPECT_EQ(iblind.verdict, Verdict::kDrop);
  EXPECT_TRUE(TakeForged().empty());
  EXPECT_EQ(engine_.counter(Counter::kRstBadSeq), 2u);
  Seen inear = In({.seq = kIsnB + 102, .flags = tcp_flags::kRst});
  EXPECT_EQ(inear.verdict, Verdict::kDrop);
  f = TakeForged();
  ASSERT_EQ(f.size(), 1u);
  EXPECT_EQ(f[0].tuple, LocalTuple());
  EXPECT_EQ(f[0].tcp.ack, kIsnB + 101);
  EXPECT_EQ(engine_.counter(Counter::kRstChallengeAck), 2u);
  EXPECT_EQ(Subflows()[0].state, SubflowState::kEstablished);
  // Exact: the join closes, the connection lives on the initial subflow.
  Seen exact = In(w, {.seq = kIsnJ + 1, .flags = tcp_flags::kRst});
  EXPECT_EQ(exact.verdict, Verdict::kDrop);
  EXPECT_EQ(Subflows()[1].state, SubflowState::kClosed);
  EXPECT_EQ(Conn()->state, ConnState::kEstablished);
  EXPECT_EQ(engine_.counter(Counter::kSubflowRstRx), 1u);
}

TEST_F(SubflowTest, RstDuringAJoinHandshakeNeedsItsExactSequenceNumber) {
  ASSERT_NO_FATAL_FAILURE(Establish());
  const FourTuple w = StartJoin();
  (void)In(w, {.seq = kIsnJ,
               .ack = join_syn_.tcp.seq + 1,
               .flags = tcp_flags::kSyn | tcp_flags::kAck,
               .mptcp = {PeerSynAck(TruncatedHmac(kKeyB, key_a_, kNonceB, nonce_a_))}});
  TakeForged();
  ASSERT_EQ(Subflows()[1].state, SubflowState::kPreEstablished);
  (void)In(w, {.seq = kIsnJ + 77, .flags = tcp_flags::kRst});
  EXPECT_EQ(engine_.counter(Counter::kRstBadSeq), 1u);
  EXPECT_EQ(Subflows()[1].state, SubflowState::kPreEstablished);
  (void)In(w, {.seq = kIsnJ + 1, .flags = tcp_flags::kRst});  // e.g. MPJoinRejected
  EXPECT_EQ(engine_.counter(Counter::kJoinRefused), 1u);
  EXPECT_EQ(Subflows().size(), 1u);
}

TEST_F(PassiveJoinTest, ClosedPassiveJoinsDoNotAccumulate) {
  ASSERT_NO_FATAL_FAILURE(EstablishPassive());
  // A peer that keeps joining and resetting (50 times, each from a new port) must not make us
  // hold state for every closed join: at most max_subflows live + 2 closed are kept.
  for (int k = 0; k < 50; ++k) {
    FourTuple w{LocalTuple().src, Addr("198.18.4.2"), 5201, static_cast<uint16_t>(45000 + k)};
    (void)In(w, {.seq = kIsnJ, .flags = tcp_flags::kSyn, .mptcp = {PeerSyn(token_a_)}});
    auto f = TakeForged();
    ASSERT_EQ(f.size(), 1u);
    const uint32_t nonce = f[0].mp.mp_join->nonce;
    MpJoin third;
    third.form = MpJoin::Form::kAck;
    third.hmac = FullHmac(kKeyB, key_a_, kNonceB, nonce);
    (void)In(w, {.seq = kIsnJ + 1, .ack = f[0].tcp.seq + 1, .mptcp = {third}});
    TakeForged();
    (void)In(w, {.seq = kIsnJ + 1, .ack = f[0].tcp.seq + 1, .flags = tcp_flags::kRst});
    TakeForged();
    ASSERT_LE(Subflows().size(), 1u + 2u + 1u);  // initial + kept closed + the one just closed
  }
  EXPECT_EQ(engine_.counter(Counter::kSubflowRstRx), 50u);
  EXPECT_EQ(engine_.counter(Counter::kJoinLimit), 0u);
  // The freed joins' tuples are forgotten (an unknown flow), the kept ones still dropped.
  const uint64_t before = engine_.counter(Counter::kNoConnection);
  (void)In(FourTuple{LocalTuple().src, Addr("198.18.4.2"), 5201, 45000},
           {.seq = kIsnJ + 1, .ack = 1, .mptcp = {PeerDss(0)}});
  EXPECT_EQ(engine_.counter(Counter::kNoConnection), before + 1);
  Seen late = In(FourTuple{LocalTuple().src, Addr("198.18.4.2"), 5201, 45049},
                 {.seq = kIsnJ + 1, .ack = 1, .mptcp = {PeerDss(0)}});
  EXPECT_EQ(late.verdict, Verdict::kDrop);
  EXPECT_EQ(Conn()->state, ConnState::kEstablished);
}

TEST_F(SubflowTest, RecvTablesRecordOnlyMappingsOfTheirOwnPayload) {
  ASSERT_NO_FATAL_FAILURE(Establish());
  auto largest = [&] {
    size_t n = Conn()->recv.size();
    for (auto& sf : Conn()->subflows) n = std::max(n, sf->recv.size());
    return n;
  };
  // Single path: empty segments whose DSS carries a mapping map nothing (interop §1.4).
  for (uint32_t k = 0; k < 1000; ++k) {
    (void)In({.seq = kIsnB + 101,
              .ack = kIsnA + 101,
              .mptcp = {PeerDss(100, {{1000 + 2 * k, 1}}, 1000 + 2 * k)}});
  }
  EXPECT_EQ(largest(), 0u);
  const FourTuple w = JoinAndHandover();
  TakeForged();
  // Multipath, on the join: the same.
  for (uint32_t k = 0; k < 20000; ++k) {
    (void)In(w, {.seq = kIsnJ + 1,
                 .ack = join_syn_.tcp.seq + 1,
                 .mptcp = {PeerDss(100, {{1000 + 2 * k, 1}}, 1000 + 2 * k)}});
  }
  EXPECT_EQ(largest(), 0u);
  // A data segment whose mapping does not cover it: the mapping is not recorded, the data has
  // none and is dropped (the peer retransmits it with its own).
  Seen d = In(w, {.seq = kIsnJ + 1,
                  .ack = join_syn_.tcp.seq + 1,
                  .mptcp = {PeerDss(100, {{100, 10}}, 50)},
                  .payload = Payload(10, 6)});
  EXPECT_EQ(d.verdict, Verdict::kDrop);
  EXPECT_EQ(largest(), 0u);
  EXPECT_EQ(engine_.counter(Counter::kMappingNotOwn), 21001u);
  // Its own mapping: delivered.
  Seen ok = In(w, {.seq = kIsnJ + 1,
                   .ack = join_syn_.tcp.seq + 1,
                   .mptcp = {PeerDss(100, {{100, 10}}, 0)},
                   .payload = Payload(10, 6)});
  EXPECT_EQ(ok.verdict, Verdict::kAccept);
  EXPECT_EQ(ok.tcp.seq, kIsnB + 101);
}

TEST_F(SubflowTest, RecvTableIsCappedAndStillFillsItsHoles) {
  ASSERT_NO_FATAL_FAILURE(Establish());
  const FourTuple w = JoinAndHandover();
  TakeForged();
  // 1-byte segments with a hole after each: every one is its own RECV entry.
  const uint32_t n = static_cast<uint32_t>(Engine::kMaxRecvMappings) + 100;
  for (uint32_t k = 0; k < n; ++k) {
    (void)In(w, {.seq = kIsnJ + 1 + 2 * k,
                 .ack = join_syn_.tcp.seq + 1,
                 .mptcp = {PeerDss(100, {{100 + 2 * k, 1}}, 2 * k)},
                 .payload = Payload(1, 1)});
  }
  auto join_table = [&] { return Conn()->subflows[1]->recv.size(); };
  EXPECT_EQ(join_table(), Engine::kMaxRecvMappings);
  EXPECT_EQ(engine_.counter(Counter::kRecvTableFull), 100u);  // the farthest ones went
  // A byte filling the first hole is still mapped (it merges its neighbours) and delivered.
  Seen fill = In(w, {.seq = kIsnJ + 2,
                     .ack = join_syn_.tcp.seq + 1,
                     .mptcp = {PeerDss(100, {{101, 1}}, 1)},
                     .payload = Payload(1, 2)});
  EXPECT_EQ(fill.verdict, Verdict::kAccept);
  EXPECT_EQ(fill.tcp.seq, kIsnB + 102);
  EXPECT_EQ(join_table(), Engine::kMaxRecvMappings - 1);  // three entries became one
  EXPECT_EQ(Conn()->subflows[1]->recv.entries()[0], (MapEntry{0, 100, 3, 0}));
}

// Review #1 (a): an RTO retransmission that the local stack collapsed across bytes first sent on
// two subflows is sent piecewise on the subflows that own them, at their SSNs: moving it whole to
// the active subflow would leave a hole on the initial subflow's SSN space forever.
TEST_F(SubflowTest, ReviewStraddlingRetransmissionLeavesHoleOnActive) {
  ASSERT_NO_FATAL_FAILURE(Establish());
  (void)Out({.seq = kIsnA + 101, .ack = kIsnB + 101, .payload = Payload(100, 1)});  // eth0
  const FourTuple w = JoinAndHandover();
  TakeForged();
  const uint32_t jisn = join_syn_.tcp.seq;
  Seen d = Out({.seq = kIsnA + 201, .ack = kIsnB + 101, .payload = Payload(100, 2)});  // join SSN 1
  EXPECT_EQ(d.tuple, w);
  EXPECT_EQ(d.tcp.seq, jisn + 1);
  // RTO: the local stack collapses [100,300) into one retransmission.
  std::vector<uint8_t> both = Payload(100, 1);
  auto p2 = Payload(100, 2);
  both.insert(both.end(), p2.begin(), p2.end());
  Seen r = Out({.seq = kIsnA + 101, .ack = kIsnB + 101, .payload = both});
  EXPECT_EQ(r.verdict, Verdict::kDrop);  // replaced by one forged segment per owning subflow
  auto f = TakeForged();
  ASSERT_EQ(f.size(), 2u);
  EXPECT_EQ(f[0].tuple, LocalTuple());
  EXPECT_EQ(f[0].tcp.seq, kIsnA + 101);
  EXPECT_EQ(f[0].payload, Payload(100, 1));
  EXPECT_TRUE(f[0].checksum_ok);
  ASSERT_TRUE(f[0].mp.dss && f[0].mp.dss->mapping);
  EXPECT_EQ(f[0].mp.dss->mapping->ssn, 101u);
  EXPECT_EQ(f[0].mp.dss->mapping->dsn, idsn_a_ + 1 + 100);
  EXPECT_EQ(f[1].tuple, w);
  EXPECT_EQ(f[1].tcp.seq, jisn + 1);
  EXPECT_EQ(f[1].payload, Payload(100, 2));
  EXPECT_TRUE(f[1].checksum_ok);
  ASSERT_TRUE(f[1].mp.dss && f[1].mp.dss->mapping);
  EXPECT_EQ(f[1].mp.dss->mapping->ssn, 1u);
  EXPECT_EQ(f[1].mp.dss->mapping->dsn, idsn_a_ + 1 + 200);
  EXPECT_EQ(engine_.counter(Counter::kTxStraddleSplit), 1u);
  EXPECT_EQ(engine_.counter(Counter::kTxMovedSubflow), 0u);
  // Now the original join bytes [200,300) (join SSN 1..101) are retransmitted alone: same SSNs.
  Seen r2 = Out({.seq = kIsnA + 201, .ack = kIsnB + 101, .payload = Payload(100, 2)});
  EXPECT_EQ(r2.tuple, w);
  EXPECT_EQ(r2.tcp.seq, jisn + 1) << "subflow hole at join SSN 1..101 is never filled";
  // And the initial subflow's bytes stay there too.
  Seen r3 = Out({.seq = kIsnA + 101, .ack = kIsnB + 101, .payload = Payload(100, 1)});
  EXPECT_EQ(r3.tuple, LocalTuple());
  EXPECT_EQ(r3.tcp.seq, kIsnA + 101);
}

// Review #1 (b): go-back-N recovery retransmits each lost segment once; staleness is decided by
// retransmissions of the subflow's own head (its first unacknowledged SSN), not by the number of
// retransmissions routed there, so a healthy path keeps its segments.
TEST_F(SubflowTest, ReviewStaleHeuristicMovesHealthyPathsSegments) {
  ASSERT_NO_FATAL_FAILURE(Establish());
  // Three segments on eth0 before the handover, none acknowledged yet.
  for (int i = 0; i < 3; ++i)
    (void)Out({.seq = kIsnA + 101 + 100 * static_cast<uint32_t>(i),
               .ack = kIsnB + 101,
               .payload = Payload(100, static_cast<uint8_t>(i))});
  const FourTuple w = JoinAndHandover();
  TakeForged();
  // The local stack's RTO (go-back-N) retransmits them back to back, once each.
  std::vector<Seen> r;
  for (int i = 0; i < 3; ++i)
    r.push_back(Out({.seq = kIsnA + 101 + 100 * static_cast<uint32_t>(i),
                     .ack = kIsnB + 101,
                     .payload = Payload(100, static_cast<uint8_t>(i))}));
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(r[i].tuple, LocalTuple()) << "a first retransmission was moved off a live path";
    EXPECT_EQ(r[i].tcp.seq, kIsnA + 101 + 100 * static_cast<uint32_t>(i));
  }
  EXPECT_EQ(engine_.counter(Counter::kTxStaleSubflow), 0u);
  EXPECT_EQ(engine_.counter(Counter::kTxMovedSubflow), 0u);
  // Back to eth0 (make-before-break onto the existing, still usable initial subflow).
  Actions a;
  ASSERT_TRUE(engine_
                  .StartHandover(
                      now_, HandoverRequest{"wlan0", "eth0", HandoverMode::kMakeBeforeBreak, {}}, a)
                  .ok());
  Collect(a);
  TakeForged();
  Seen n = Out({.seq = kIsnA + 401, .ack = kIsnB + 101, .payload = Payload(100, 9)});
  EXPECT_EQ(n.tuple, LocalTuple());
  ASSERT_TRUE(n.mp.dss && n.mp.dss->mapping);
  EXPECT_EQ(n.mp.dss->mapping->ssn, 401u);  // right after eth0's own bytes: no SSN hole there
  Seen again = Out({.seq = kIsnA + 301, .ack = kIsnB + 101, .payload = Payload(100, 2)});
  EXPECT_EQ(again.tuple, LocalTuple());
  EXPECT_EQ(again.tcp.seq, kIsnA + 301);
  EXPECT_NE(w, LocalTuple());
}

// A segment over the active subflow's own tail and new data stays one segment there (the
// queued packet, not forged pieces): its SSNs are contiguous on that subflow.
TEST_F(SubflowTest, TailPlusNewDataOnActiveIsSentAsItIs) {
  ASSERT_NO_FATAL_FAILURE(Establish());
  (void)Out({.seq = kIsnA + 101, .ack = kIsnB + 101, .payload = Payload(100, 1)});  // eth0
  const FourTuple w = JoinAndHandover();
  TakeForged();
  const uint32_t jisn = join_syn_.tcp.seq;
  (void)Out({.seq = kIsnA + 201, .ack = kIsnB + 101, .payload = Payload(100, 2)});  // join SSN 1
  Seen r = Out({.seq = kIsnA + 201, .ack = kIsnB + 101, .payload = Payload(200, 3)});
  EXPECT_EQ(r.verdict, Verdict::kAccept);
  EXPECT_EQ(r.tuple, w);
  EXPECT_EQ(r.tcp.seq, jisn + 1);
  EXPECT_EQ(r.payload.size(), 200u);
  EXPECT_TRUE(TakeForged().empty());
  EXPECT_EQ(engine_.counter(Counter::kTxStraddleSplit), 0u);
  Seen n = Out({.seq = kIsnA + 401, .ack = kIsnB + 101, .payload = Payload(100, 4)});
  EXPECT_EQ(n.tuple, w);
  EXPECT_EQ(n.tcp.seq, jisn + 201);
}

// Review #1: a subflow declared stale is retired for good (RST + MP_TCPRST 5, closed, gone):
// its SSN ranges moved to the active subflow, so it could never deliver in order again.
TEST_F(SubflowTest, ReviewStaleSubflowIsRetiredForGood) {
  ASSERT_NO_FATAL_FAILURE(Establish());
  (void)Out({.seq = kIsnA + 101, .ack = kIsnB + 101, .payload = Payload(100, 1)});  // eth0
  const FourTuple w = JoinAndHandover();
  TakeForged();
  const uint32_t jisn = join_syn_.tcp.seq;
  // eth0's head is retransmitted twice without its subflow ACK moving: still eth0.
  for (int i = 0; i < 2; ++i) {
    Seen r = Out({.seq = kIsnA + 101, .ack = kIsnB + 101, .payload = Payload(100, 1)});
    EXPECT_EQ(r.tuple, LocalTuple());
    EXPECT_EQ(r.tcp.seq, kIsnA + 101);
  }
  EXPECT_TRUE(TakeForged().empty());
  // The third: eth0 is retired and the bytes go to the join at fresh SSNs.
  Seen r3 = Out({.seq = kIsnA + 101, .ack = kIsnB + 101, .payload = Payload(100, 1)});
  EXPECT_EQ(r3.tuple, w);
  EXPECT_EQ(r3.tcp.seq, jisn + 1);
  EXPECT_EQ(engine_.counter(Counter::kTxStaleSubflow), 1u);
  auto f = TakeForged();
  ASSERT_EQ(f.size(), 1u);
  EXPECT_EQ(f[0].tuple, LocalTuple());
  EXPECT_TRUE(f[0].tcp.has(tcp_flags::kRst));
  ASSERT_TRUE(f[0].mp.mp_tcprst);
  EXPECT_EQ(f[0].mp.mp_tcprst->reason,
            static_cast<uint8_t>(TcpRstReason::kUnacceptablePerformance));
  for (const SubflowInfo& i : Subflows()) {
    if (i.initial) {
      EXPECT_EQ(i.state, SubflowState::kClosed);
      EXPECT_FALSE(i.active);
    }
  }
  // Nothing goes to eth0 any more: its bytes stay on the join, where they now live.
  Seen r4 = Out({.seq = kIsnA + 101, .ack = kIsnB + 101, .payload = Payload(100, 1)});
  EXPECT_EQ(r4.tuple, w);
  EXPECT_EQ(r4.tcp.seq, jisn + 1);
  // A make-before-break back to eth0 does not reuse the retired subflow.
  Actions a;
  (void)engine_.StartHandover(
      now_, HandoverRequest{"wlan0", "eth0", HandoverMode::kMakeBeforeBreak, {}}, a);
  Collect(a);
  for (const Seen& s : TakeForged()) EXPECT_NE(s.tuple, LocalTuple());
  Seen n = Out({.seq = kIsnA + 201, .ack = kIsnB + 101, .payload = Payload(100, 2)});
  EXPECT_NE(n.tuple, LocalTuple());
}

}  // namespace
}  // namespace mproxy::mptcp

namespace mproxy::mptcp {
namespace {

using namespace packet;  // NOLINT(google-build-using-namespace): test brevity

// ---------------------------------------------------------------------------------------------
// Deterministic end-to-end simulation: two engines (the mobile host's, active, and the server's,
// passive), each in front of a small scripted TCP stack, connected by a two-path network. A
// handover happens in the middle of a two-way transfer; the byte streams the stacks receive must
// be exactly the ones the other side sent, and the timestamps they see must never go backwards.

// A minimal TCP endpoint: go-back-N on timeout, in-order reception, cumulative ACKs, timestamps.
class ScriptedTcp {
 public:
  ScriptedTcp(FourTuple tuple, bool client, uint32_t isn, std::vector<uint8_t> data)
      : tuple_(tuple), client_(client), isn_(isn), out_(std::move(data)) {}

  std::vector<std::vector<uint8_t>> Output(int tick) {
    std::vector<std::vector<uint8_t>> pkts;
    clock_ = static_cast<uint32_t>(tick);
    if (client_ && state_ == State::kClosed) {
      state_ = State::kSynSent;
      syn_at_ = tick;
      pkts.push_back(Segment(isn_, 0, tcp_flags::kSyn, {}));
      return pkts;
    }
    if (state_ == State::kSynSent && tick - syn_at_ > 1000) {
      syn_at_ = tick;
      pkts.push_back(Segment(isn_, 0, tcp_flags::kSyn, {}));
    }
    if (state_ == State::kSynRcvd && need_ack_) {
      need_ack_ = false;
      pkts.push_back(Segment(isn_, irs_ + 1, tcp_flags::kSyn | tcp_flags::kAck, {}));
    }
    if (state_ != State::kEstablished) return pkts;
    if (una_ < nxt_ && tick - progress_at_ > 300) {
      nxt_ = una_;  // RTO: go back to the first unacknowledged byte
      progress_at_ = tick;
      ++rtos_;
    }
    while (nxt_ < out_.size() && nxt_ < una_ + 8 * kMss) {
      const size_t n = std::min<size_t>(kMss, out_.size() - nxt_);
      std::vector<uint8_t> chunk(out_.begin() + static_cast<long>(nxt_),
                                 out_.begin() + static_cast<long>(nxt_ + n));
      pkts.push_back(
          Segment(isn_ + 1 + static_cast<uint32_t>(nxt_), Ack(), tcp_flags::kAck, chunk));
      if (nxt_ == una_) progress_at_ = tick;
      nxt_ += n;
      need_ack_ = false;
    }
    if (close_ && una_ == out_.size() && !fin_acked_ && (!fin_sent_ || tick - fin_at_ > 300)) {
      if (fin_sent_) ++rtos_;
      fin_sent_ = true;
      fin_at_ = tick;
      need_ack_ = false;
      pkts.push_back(Segment(isn_ + 1 + static_cast<uint32_t>(out_.size()), Ack(),
                             tcp_flags::kAck | tcp_flags::kFin, {}));
    }
    if (need_ack_) {
      need_ack_ = false;
      pkts.push_back(Segment(isn_ + 1 + static_cast<uint32_t>(nxt_) + (fin_sent_ ? 1 : 0), Ack(),
                             tcp_flags::kAck, {}));
    }
    return pkts;
  }

  void Input(std::vector<uint8_t> bytes, int tick) {
    auto p = ParseTcpPacket(MutableBytes(bytes));
    ASSERT_TRUE(p.ok());
    EXPECT_EQ(p->tuple(), tuple_.Reversed()) << "a packet for another tuple reached the stack";
    EXPECT_TRUE(TcpChecksumOk(bytes));
    if (auto ts = p->options.Timestamps()) {
      if (ts_seen_ && static_cast<int32_t>(ts->tsval - ts_recent_) < 0) ++paws_;
      ts_recent_ = ts->tsval;
      ts_seen_ = true;
    }
    const TcpHeader& h = p->tcp;
    if (h.has(tcp_flags::kRst)) {
      ++rsts_;
      return;
    }
    if (h.has(tcp_flags::kSyn)) {
      irs_ = h.seq;
      if (client_ && state_ == State::kSynSent && h.has(tcp_flags::kAck)) {
        state_ = State::kEstablished;
        need_ack_ = true;
      } else if (!client_) {
        state_ = State::kSynRcvd;
        need_ack_ = true;
      }
      return;
    }
    if (state_ == State::kSynRcvd && h.has(tcp_flags::kAck) && h.ack == isn_ + 1) {
      state_ = State::kEstablished;
    }
    if (state_ != State::kEstablished) return;
    if (h.has(tcp_flags::kAck)) {
      int64_t acked = static_cast<int32_t>(h.ack - (isn_ + 1));
      if (fin_sent_ && acked == static_cast<int64_t>(out_.size()) + 1) {
        fin_acked_ = true;
        acked = static_cast<int64_t>(out_.size());
      }
      if (acked > static_cast<int64_t>(una_) && acked <= static_cast<int64_t>(out_.size())) {
        una_ = static_cast<uint64_t>(acked);
        progress_at_ = tick;
        if (nxt_ < una_) nxt_ = una_;
      }
    }
    const Bytes pl = p->payload();
    if (!pl.empty()) {
      const int64_t off = static_cast<int32_t>(h.seq - (irs_ + 1));
      const int64_t have = static_cast<int64_t>(in_.size());
      if (off <= have && off + static_cast<int64_t>(pl.size()) > have) {
        in_.insert(in_.end(), pl.begin() + (have - off), pl.end());
      }
      need_ack_ = true;
    }
    if (h.has(tcp_flags::kFin)) {
      const int64_t off = static_cast<int32_t>(h.seq - (irs_ + 1));
      if (off + static_cast<int64_t>(pl.size()) == static_cast<int64_t>(in_.size())) {
        fin_rcvd_ = true;
      }
      need_ack_ = true;
    }
  }

  // Sends a FIN once everything is acknowledged (and then counts as done only when both FINs are).
  void CloseWhenDone() { close_ = true; }
  [[nodiscard]] bool fin_rcvd() const { return fin_rcvd_; }
  [[nodiscard]] const std::vector<uint8_t>& received() const { return in_; }
  [[nodiscard]] const std::vector<uint8_t>& sent() const { return out_; }
  [[nodiscard]] bool done() const {
    return una_ == out_.size() && (!close_ || (fin_acked_ && fin_rcvd_));
  }
  [[nodiscard]] int paws() const { return paws_; }
  [[nodiscard]] int rsts() const { return rsts_; }
  [[nodiscard]] int rtos() const { return rtos_; }

 private:
  static constexpr size_t kMss = 1000;
  enum class State { kClosed, kSynSent, kSynRcvd, kEstablished };
  uint32_t Ack() const {
    return irs_ + 1 + static_cast<uint32_t>(in_.size()) + (fin_rcvd_ ? 1 : 0);
  }
  std::vector<uint8_t> Segment(uint32_t seq, uint32_t ack, uint8_t flags, Bytes payload) {
    TcpHeader h;
    h.sport = tuple_.sport;
    h.dport = tuple_.dport;
    h.seq = seq;
    h.ack = ack;
    h.flags = flags;
    h.window = 0xffff;
    TcpOptionList o;
    if ((flags & tcp_flags::kSyn) != 0) {
      EXPECT_TRUE(o.AddMss(1460));
      EXPECT_TRUE(o.AddSackPermitted());
    }
    EXPECT_TRUE(o.AddNop() && o.AddNop() && o.AddTimestamps({clock_, ts_recent_}));
    if ((flags & tcp_flags::kSyn) != 0) {
      EXPECT_TRUE(o.AddNop() && o.AddWindowScale(7));
    }
    auto pkt = BuildTcpPacket(tuple_, h, o, payload);
    EXPECT_TRUE(pkt.ok());
    return pkt.value();
  }

  FourTuple tuple_;
  bool client_;
  uint32_t isn_, irs_ = 0;
  State state_ = State::kClosed;
  std::vector<uint8_t> out_, in_;
  uint64_t una_ = 0, nxt_ = 0;
  int syn_at_ = 0, progress_at_ = 0;
  bool need_ack_ = false;
  bool close_ = false, fin_sent_ = false, fin_acked_ = false, fin_rcvd_ = false;
  int fin_at_ = 0;
  uint32_t clock_ = 0, ts_recent_ = 0;
  bool ts_seen_ = false;
  int paws_ = 0, rsts_ = 0, rtos_ = 0;
};

class Simulation {
 public:
  explicit Simulation(uint64_t seed, size_t up = 300'000, size_t down = 200'000)
      : rng_a_(seed),
        rng_b_(seed + 1),
        loss_rng_(seed * 7 + 3),
        a_(Cfg(), rng_a_),
        b_(Cfg(), rng_b_),
        stack_a_(FourTuple{Eth(), Server(), 40000, 5201}, true, 0x10000000, Data(up, 1)),
        stack_b_(FourTuple{Server(), Eth(), 5201, 40000}, false, 0xfffff000, Data(down, 2)) {
    a_.SetInterfaces({LocalInterface{"eth0", 2, {Eth()}}, LocalInterface{"wlan0", 3, {Wlan()}}});
    b_.SetInterfaces({LocalInterface{"lan0", 5, {Server()}}});
  }
  static IpAddress Eth() { return *IpAddress::Parse("198.18.1.2"); }
  static IpAddress Wlan() { return *IpAddress::Parse("198.18.2.2"); }
  static IpAddress Server() { return *IpAddress::Parse("198.18.3.2"); }
  static EngineConfig Cfg() {
    EngineConfig c;
    c.ports = {5201};
    return c;
  }
  static std::vector<uint8_t> Data(size_t n, uint64_t seed) {
    Xoshiro256 r(seed);
    std::vector<uint8_t> v(n);
    for (auto& b : v) b = static_cast<uint8_t>(r.Next64());
    return v;
  }

  // Runs until both transfers are complete (or `max_ticks`); `at` is called once per tick.
  // Continues from the current tick; with `until_done` false it runs all `max_ticks`.
  void Run(int max_ticks, const std::function<void(int)>& at, bool until_done = true) {
    for (const int end = tick_ + max_ticks; ++tick_ <= end;) {
      now_ = Time{} + std::chrono::milliseconds(tick_);
      at(tick_);
      for (auto& pkt : stack_a_.Output(tick_)) Through(a_, Hook::kLocalOut, std::move(pkt));
      for (auto& pkt : stack_b_.Output(tick_)) Through(b_, Hook::kLocalOut, std::move(pkt));
      auto wire = std::exchange(wire_, {});
      for (auto& pkt : wire) Deliver(std::move(pkt));
      for (Engine* e : {&a_, &b_}) {
        while (e->NextTimeout() && *e->NextTimeout() <= now_) {
          Actions act;
          e->OnTimer(now_, act);
          for (auto& f : act.forged) Send(std::move(f.bytes));
        }
      }
      if (until_done && stack_a_.done() && stack_b_.done() &&
          stack_a_.received() == stack_b_.sent() && stack_b_.received() == stack_a_.sent()) {
        return;
      }
    }
  }

  void Inject(Actions& act) {
    for (auto& f : act.forged) Send(std::move(f.bytes));
    act.Clear();
  }
  // A path going down or up as mproxyd tells the engine (proxy/interface_manager.cc
  // LocalInterfaces): a down interface keeps its entry, with no address. kRemoved: a down
  // interface is not listed at all (what a caller other than the daemon might do).
  enum class Downed { kEmptied, kRemoved };
  void SetLinks(bool eth, bool wlan, Downed how) {
    eth_up = eth;
    wlan_up = wlan;
    std::vector<LocalInterface> list;
    for (auto [name, ifindex, addr, up] :
         {std::tuple{"eth0", 2u, Eth(), eth}, std::tuple{"wlan0", 3u, Wlan(), wlan}}) {
      if (up) {
        list.push_back(LocalInterface{name, ifindex, {addr}});
      } else if (how == Downed::kEmptied) {
        list.push_back(LocalInterface{name, ifindex, {}});
      }
    }
    a_.SetInterfaces(std::move(list));
  }
  // The `from` of a break-before-make away from `name` after SetLinks(): the engine knows no
  // interface by a name it is no longer given (StartHandover: "unknown interface"), so a caller
  // that removes names leaves everything not on `to` instead (no `from`).
  std::string From(const std::string& name, const std::string& to, Downed how) {
    if (how == Downed::kEmptied) return name;
    Actions act;
    auto r =
        a_.StartHandover(now_, HandoverRequest{name, to, HandoverMode::kBreakBeforeMake, {}}, act);
    EXPECT_FALSE(r.ok());
    if (!r.ok()) {
      EXPECT_EQ(r.error().message, "handover: unknown interface " + name);
    }
    EXPECT_TRUE(act.forged.empty());
    return "";
  }
  Engine& a() { return a_; }
  Engine& b() { return b_; }
  ScriptedTcp& stack_a() { return stack_a_; }
  ScriptedTcp& stack_b() { return stack_b_; }
  Time now() const { return now_; }
  int tick() const { return tick_; }
  bool eth_up = true, wlan_up = true;
  uint32_t loss_per_mille = 0;                       // random loss on both paths
  uint64_t wire_bytes_eth = 0, wire_bytes_wlan = 0;  // TCP payload per path

 private:
  void Through(Engine& e, Hook hook, std::vector<uint8_t> pkt) {
    PacketOut out;
    Actions act;
    PacketMeta meta;
    meta.hook = hook;
    e.OnPacket(now_, meta, MutableBytes(pkt), out, act);
    for (auto& f : act.forged) Send(std::move(f.bytes));
    if (out.verdict == Verdict::kDrop) return;
    std::vector<uint8_t> result;
    if (out.rewritten) {
      result.assign(out.head.begin(), out.head.begin() + static_cast<long>(out.head_len));
      result.insert(result.end(), pkt.begin() + static_cast<long>(out.tail_offset), pkt.end());
    } else {
      result = std::move(pkt);
    }
    if (hook == Hook::kLocalOut) {
      Send(std::move(result));
    } else if (&e == &a_) {
      stack_a_.Input(std::move(result), tick_);
    } else {
      stack_b_.Input(std::move(result), tick_);
    }
  }
  void Send(std::vector<uint8_t> pkt) { wire_.push_back(std::move(pkt)); }
  void Deliver(std::vector<uint8_t> pkt) {
    auto p = ParseTcpPacket(MutableBytes(pkt));
    ASSERT_TRUE(p.ok());
    EXPECT_TRUE(TcpChecksumOk(pkt));
    const bool eth = p->ip.src == Eth() || p->ip.dst == Eth();
    if (eth && !eth_up) return;  // the path is broken
    if (!eth && !wlan_up) return;
    if (loss_per_mille > 0 && loss_rng_.Below(1000) < loss_per_mille) return;
    (eth ? wire_bytes_eth : wire_bytes_wlan) += p->payload_len;
    Arrived(*p);
    const bool to_a = p->ip.dst == Eth() || p->ip.dst == Wlan();
    Through(to_a ? a_ : b_, Hook::kPreRouting, std::move(pkt));
  }

  // Review #15: the peer's TCP receiver of every subflow, in order, as the kernel's is: what
  // arrived on each wire direction (sequence offsets from its SYN). Bytes above a hole that the
  // sender's subflow never fills mean that subflow can never make progress again (review #1).
  void Arrived(const TcpPacket& p) {
    WireRx* rx = nullptr;
    for (auto& r : rx_) {
      if (r.tuple == p.tuple()) rx = &r;
    }
    if (rx == nullptr) {
      rx_.emplace_back();
      rx_.back().tuple = p.tuple();
      rx = &rx_.back();
    }
    if (p.tcp.has(tcp_flags::kRst)) rx->rst = true;
    if (p.tcp.has(tcp_flags::kSyn)) {
      rx->isn = p.tcp.seq;
      rx->have_isn = true;
      return;
    }
    if (!rx->have_isn || p.payload_len == 0) return;
    const uint64_t b = static_cast<uint32_t>(p.tcp.seq - rx->isn - 1);
    const uint64_t e = b + p.payload_len;
    if (b > rx->nxt) {
      rx->ooo.emplace_back(b, e);
      std::sort(rx->ooo.begin(), rx->ooo.end());
      return;
    }
    rx->nxt = std::max(rx->nxt, e);
    while (!rx->ooo.empty() && rx->ooo.front().first <= rx->nxt) {
      rx->nxt = std::max(rx->nxt, rx->ooo.front().second);
      rx->ooo.erase(rx->ooo.begin());
    }
  }

 public:
  struct WireRx {
    FourTuple tuple;  // sender -> receiver
    bool have_isn = false, rst = false;
    uint32_t isn = 0;
    uint64_t nxt = 0;                                // in-order point (RCV.NXT offset)
    std::vector<std::pair<uint64_t, uint64_t>> ooo;  // arrived above a hole
  };
  const std::vector<WireRx>& wire_rx() const { return rx_; }

 private:
  std::vector<WireRx> rx_;
  Xoshiro256 rng_a_, rng_b_, loss_rng_;
  Engine a_, b_;
  ScriptedTcp stack_a_, stack_b_;
  std::vector<std::vector<uint8_t>> wire_;
  Time now_{};
  int tick_ = 0;
};

// Review #15: a subflow that is still established at its sender must have no hole left at its
// receiver: every SSN it was given is sent there again until it arrives (seed §3.3).
void ExpectNoStuckSubflow(Simulation& s) {
  for (const auto& rx : s.wire_rx()) {
    if (rx.ooo.empty() || rx.rst) continue;
    const bool from_a = rx.tuple.src == Simulation::Eth() || rx.tuple.src == Simulation::Wlan();
    Engine& e = from_a ? s.a() : s.b();
    bool live = false;
    e.ForEachConnection([&](const Connection& c) {
      e.ForEachSubflow(c, [&](const SubflowInfo& i) {
        if (i.tuple == rx.tuple && i.state == SubflowState::kEstablished) live = true;
      });
    });
    EXPECT_FALSE(live) << "subflow " << (from_a ? "a->b " : "b->a ") << rx.tuple.sport << "->"
                       << rx.tuple.dport << " waits at offset " << rx.nxt << " below "
                       << rx.ooo.front().first << ": a hole its sender never fills";
  }
}

void ExpectExact(Simulation& s) {
  ExpectNoStuckSubflow(s);
  EXPECT_TRUE(s.stack_a().done());
  EXPECT_TRUE(s.stack_b().done());
  EXPECT_TRUE(s.stack_b().received() == s.stack_a().sent())
      << "server got " << s.stack_b().received().size() << " of " << s.stack_a().sent().size();
  EXPECT_TRUE(s.stack_a().received() == s.stack_b().sent())
      << "client got " << s.stack_a().received().size() << " of " << s.stack_b().sent().size();
  EXPECT_EQ(s.stack_a().paws(), 0);
  EXPECT_EQ(s.stack_b().paws(), 0);
  EXPECT_EQ(s.stack_a().rsts(), 0);
  EXPECT_EQ(s.stack_b().rsts(), 0);
}

TEST(SubflowSimulation, MakeBeforeBreakHandoverMidTransfer) {
  for (uint64_t seed : {1, 2, 3}) {
    Simulation s(seed);
    std::optional<uint64_t> id;
    uint64_t eth_before = 0;
    s.Run(20'000, [&](int tick) {
      if (tick == 40) {
        Actions act;
        auto r = s.a().StartHandover(s.now(), HandoverRequest{"eth0", "wlan0", {}, {}}, act);
        ASSERT_TRUE(r.ok());
        id = r.value();
        EXPECT_EQ(act.forged.size(), 1u);  // the MP_JOIN SYN
        s.Inject(act);
      }
      if (id && eth_before == 0 && s.a().HandoverStatusOf(*id)->state == HandoverState::kDone) {
        eth_before = s.wire_bytes_eth;
      }
    });
    SCOPED_TRACE(seed);
    ExpectExact(s);
    ASSERT_TRUE(id);
    auto st = s.a().HandoverStatusOf(*id);
    ASSERT_TRUE(st);
    EXPECT_EQ(st->state, HandoverState::kDone);
    EXPECT_EQ(st->moved, 1u);
    EXPECT_EQ(s.a().counter(Counter::kJoinEstablished), 1u);
    EXPECT_EQ(s.b().counter(Counter::kJoinEstablished), 1u);
    EXPECT_EQ(s.b().counter(Counter::kMpPrioRx), 2u);
    // Once the handover is done, new data goes on the new path; the old one only carries what
    // was already in flight (one window of each side's at most).
    EXPECT_GT(s.wire_bytes_wlan, 100'000u) << "eth " << eth_before << " -> " << s.wire_bytes_eth;
    EXPECT_LE(s.wire_bytes_eth - eth_before, 16'000u);
    EXPECT_EQ(s.a().counter(Counter::kNoMapping), 0u);
    EXPECT_EQ(s.b().counter(Counter::kNoMapping), 0u);
    EXPECT_EQ(s.a().counter(Counter::kMappingConflict), 0u);
    EXPECT_EQ(s.b().counter(Counter::kMappingConflict), 0u);
  }
}

// The break-before-make cases below tell the engine about the link going down before asking for
// the handover, as mproxyd does (review #14): the subflows of the interface left must be found by
// the addresses it had, not the ones it has now.
using Downed = Simulation::Downed;
constexpr std::array kDownedWays{Downed::kEmptied, Downed::kRemoved};
const char* Name(Downed how) { return how == Downed::kEmptied ? "emptied" : "removed"; }
constexpr std::array kHandoverVariants{std::pair{HandoverMode::kMakeBeforeBreak, Downed::kEmptied},
                                       std::pair{HandoverMode::kBreakBeforeMake, Downed::kEmptied},
                                       std::pair{HandoverMode::kBreakBeforeMake, Downed::kRemoved}};

TEST(SubflowSimulation, CloseAfterHandoverFreesBothEngines) {
  for (uint64_t seed : {30, 31, 32}) {
    for (const auto& variant : kHandoverVariants) {
      // (Not a structured binding: clang 14 cannot capture one in the lambdas below.)
      const HandoverMode mode = variant.first;
      const Downed how = variant.second;
      Simulation s(seed);
      s.loss_per_mille = seed == 30 ? 0 : 10;
      s.stack_a().CloseWhenDone();
      s.stack_b().CloseWhenDone();
      std::optional<uint64_t> id;
      s.Run(200'000, [&](int) {
        bool a_up = false, b_up = false;
        s.a().ForEachConnection([&](const Connection& c) {
          a_up = c.state == ConnState::kEstablished && c.peer_dss_seen;
        });
        s.b().ForEachConnection(
            [&](const Connection& c) { b_up = c.state == ConnState::kEstablished; });
        if (!id && a_up && b_up && s.tick() >= 30) {
          std::string from = "eth0";
          if (mode == HandoverMode::kBreakBeforeMake) {
            s.SetLinks(false, true, how);
            from = s.From("eth0", "wlan0", how);
          }
          Actions act;
          auto r = s.a().StartHandover(s.now(), HandoverRequest{from, "wlan0", mode, {}}, act);
          ASSERT_TRUE(r.ok());
          id = r.value();
          s.Inject(act);
        }
      });
      SCOPED_TRACE(testing::Message()
                   << "seed " << seed << " mode " << static_cast<int>(mode) << " " << Name(how));
      ExpectExact(s);
      EXPECT_TRUE(s.stack_a().fin_rcvd());
      EXPECT_TRUE(s.stack_b().fin_rcvd());
      ASSERT_TRUE(id);
      EXPECT_EQ(s.a().HandoverStatusOf(*id)->moved, 1u);
      // Subflow FINs, their ACKs, the linger: then nothing is left on either side.
      s.Run(
          30'000, [](int) {}, /*until_done=*/false);
      EXPECT_EQ(s.a().connection_count(), 0u);
      EXPECT_EQ(s.b().connection_count(), 0u);
      EXPECT_EQ(s.a().counter(Counter::kTimeoutIdle), 0u);
      EXPECT_EQ(s.b().counter(Counter::kTimeoutIdle), 0u);
      EXPECT_GE(s.a().counter(Counter::kSubflowFinTx),
                mode == HandoverMode::kMakeBeforeBreak ? 2u : 1u);
      EXPECT_EQ(s.stack_a().rsts() + s.stack_b().rsts(), 0);
      if (seed == 30) {
        // Without loss every subflow FIN is answered: no give-up.
        EXPECT_EQ(s.a().counter(Counter::kTimeoutFin), 0u);
        EXPECT_EQ(s.b().counter(Counter::kTimeoutFin), 0u);
      }
      if (getenv("SIM_DEBUG") != nullptr) {
        std::printf("seed %d mode %d finTO %d/%d closed %d/%d sfin %d/%d\n", static_cast<int>(seed),
                    static_cast<int>(mode), static_cast<int>(s.a().counter(Counter::kTimeoutFin)),
                    static_cast<int>(s.b().counter(Counter::kTimeoutFin)),
                    static_cast<int>(s.a().counter(Counter::kClosed)),
                    static_cast<int>(s.b().counter(Counter::kClosed)),
                    static_cast<int>(s.a().counter(Counter::kSubflowFinTx)),
                    static_cast<int>(s.b().counter(Counter::kSubflowFinTx)));
      }
    }
  }
}

TEST(SubflowSimulation, OldPathDiesDuringMakeBeforeBreak) {
  // The user asked for make-before-break, but the old path dies as the handover starts: what was
  // in flight there (and its MP_PRIO) is lost. Retransmissions leave the silent old subflow.
  for (uint64_t seed : {40, 41, 42}) {
    Simulation s(seed);
    std::optional<uint64_t> id;
    s.Run(200'000, [&](int tick) {
      if (tick == 40) {
        s.SetLinks(false, true, Downed::kEmptied);  // what mproxyd tells the engine
        Actions act;
        auto r = s.a().StartHandover(s.now(), HandoverRequest{"eth0", "wlan0", {}, {}}, act);
        ASSERT_TRUE(r.ok());
        id = r.value();
        s.Inject(act);
      }
    });
    SCOPED_TRACE(seed);
    ExpectExact(s);
    ASSERT_TRUE(id);
    EXPECT_EQ(s.a().HandoverStatusOf(*id)->state, HandoverState::kDone);
    EXPECT_GT(s.a().counter(Counter::kTxStaleSubflow), 0u);
    EXPECT_GT(s.b().counter(Counter::kTxStaleSubflow), 0u);
  }
}

TEST(SubflowSimulation, RepeatedBreakBeforeMakeHandovers) {
  // Back and forth between the interfaces, the path left behind breaking each time: the state
  // per connection stays bounded and the streams stay exact.
  for (Downed how : kDownedWays) {
    SCOPED_TRACE(Name(how));
    Simulation s(50, 3'000'000, 2'000'000);
    std::optional<uint64_t> id;
    int handovers = 0, last = 0;
    size_t max_listed = 0;
    s.Run(400'000, [&](int tick) {
      if (s.a().connection_count() == 1) {
        size_t n = 0;
        s.a().ForEachConnection([&](const Connection& c) {
          s.a().ForEachSubflow(c, [&](const SubflowInfo&) { ++n; });
        });
        max_listed = std::max(max_listed, n);
      }
      const bool idle = !id || s.a().HandoverStatusOf(*id)->state != HandoverState::kInProgress;
      if (idle && handovers < 8 && tick - last >= 60) {
        const bool to_wlan = handovers % 2 == 0;
        s.SetLinks(!to_wlan, to_wlan, how);
        const std::string to = to_wlan ? "wlan0" : "eth0";
        const std::string from = s.From(to_wlan ? "eth0" : "wlan0", to, how);
        Actions act;
        auto r = s.a().StartHandover(
            s.now(), HandoverRequest{from, to, HandoverMode::kBreakBeforeMake, {}}, act);
        ASSERT_TRUE(r.ok());
        if (id) {
          EXPECT_EQ(s.a().HandoverStatusOf(*id)->state, HandoverState::kDone);
        }
        id = r.value();
        s.Inject(act);
        ++handovers;
        last = tick;
      }
    });
    ExpectExact(s);
    EXPECT_EQ(handovers, 8);
    EXPECT_LE(max_listed, 5u);  // initial + new + old + at most two closed ones kept
    EXPECT_EQ(s.a().counter(Counter::kJoinEstablished), 8u);
    EXPECT_EQ(s.b().counter(Counter::kJoinEstablished), 8u);
  }
}

TEST(SubflowSimulation, HandoverUnderLoss) {
  for (uint64_t seed = 6; seed < 26; ++seed) {
    for (const auto& variant : kHandoverVariants) {
      // (Not a structured binding: clang 14 cannot capture one in the lambdas below.)
      const HandoverMode mode = variant.first;
      const Downed how = variant.second;
      Simulation s(seed);
      s.loss_per_mille = 20;
      std::optional<uint64_t> id;
      s.Run(200'000, [&](int tick) {
        // (Both ends must have completed the MP_CAPABLE handshake: until the passive side has
        // the client's key from the third ACK it cannot check a join, RFC 8684 §3.1/§3.2.)
        bool established = false, b_established = false;
        s.a().ForEachConnection([&](const Connection& c) {
          established = c.state == ConnState::kEstablished && c.peer_dss_seen;
        });
        s.b().ForEachConnection(
            [&](const Connection& c) { b_established = c.state == ConnState::kEstablished; });
        established = established && b_established;
        if (!id && established && tick >= 20 + static_cast<int>(seed)) {
          std::string from = "eth0";
          if (mode == HandoverMode::kBreakBeforeMake) {
            s.SetLinks(false, true, how);
            from = s.From("eth0", "wlan0", how);
          }
          Actions act;
          auto r = s.a().StartHandover(s.now(), HandoverRequest{from, "wlan0", mode, {}}, act);
          ASSERT_TRUE(r.ok());
          id = r.value();
          s.Inject(act);
        }
      });
      SCOPED_TRACE(testing::Message()
                   << "seed " << seed << " mode " << static_cast<int>(mode) << " " << Name(how));
      ExpectExact(s);
      if (getenv("SIM_DEBUG") != nullptr) {
        std::printf("seed %lu mode %d ticks %d rto %d/%d eth %lu wlan %lu moved %lu/%lu\n",
                    static_cast<unsigned long>(seed), static_cast<int>(mode), s.tick(),
                    s.stack_a().rtos(), s.stack_b().rtos(),
                    static_cast<unsigned long>(s.wire_bytes_eth),
                    static_cast<unsigned long>(s.wire_bytes_wlan),
                    static_cast<unsigned long>(s.a().counter(Counter::kTxMovedSubflow)),
                    static_cast<unsigned long>(s.b().counter(Counter::kTxMovedSubflow)));
      }
      ASSERT_TRUE(id);
      EXPECT_EQ(s.a().HandoverStatusOf(*id)->state, HandoverState::kDone);
      EXPECT_EQ(s.a().HandoverStatusOf(*id)->moved, 1u);
      EXPECT_GT(s.wire_bytes_wlan, 0u);
      EXPECT_EQ(s.a().counter(Counter::kMappingConflict), 0u);
      EXPECT_EQ(s.b().counter(Counter::kMappingConflict), 0u);
    }
  }
}

TEST(SubflowSimulation, BreakBeforeMakeHandoverMidTransfer) {
  for (uint64_t seed : {4, 5}) {
    for (Downed how : kDownedWays) {
      Simulation s(seed);
      std::optional<uint64_t> id;
      s.Run(60'000, [&](int tick) {
        if (tick == 40) {
          s.SetLinks(false, true, how);  // the old path breaks, then the handover is requested
          const std::string from = s.From("eth0", "wlan0", how);
          Actions act;
          auto r = s.a().StartHandover(
              s.now(), HandoverRequest{from, "wlan0", HandoverMode::kBreakBeforeMake, {}}, act);
          ASSERT_TRUE(r.ok());
          id = r.value();
          ASSERT_EQ(act.forged.size(), 1u);
          s.Inject(act);  // the MP_JOIN SYN leaves through the wire like any forged packet
        }
      });
      SCOPED_TRACE(testing::Message() << "seed " << seed << " " << Name(how));
      ExpectExact(s);
      ASSERT_TRUE(id);
      EXPECT_EQ(s.a().HandoverStatusOf(*id)->state, HandoverState::kDone);
      EXPECT_EQ(s.b().counter(Counter::kRemoveAddrRx), 1u);
      EXPECT_GT(s.a().counter(Counter::kTxMovedSubflow) + s.b().counter(Counter::kTxMovedSubflow),
                0u);
    }
  }
}

}  // namespace
}  // namespace mproxy::mptcp
