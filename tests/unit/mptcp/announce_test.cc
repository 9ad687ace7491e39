// Announcing our own addresses (mptcp/announce.cc; RFC 8684 §3.4.1 ADD_ADDR, §3.4.2 REMOVE_ADDR,
// interop §1.5). The engine sits between a scripted local TCP stack and a scripted native-like
// MPTCP client (the peer opened the connection); every forged packet is parsed back and its
// checksum checked. The ADD_ADDR HMAC is recomputed here with OpenSSL's HMAC() directly, not
// through mptcp/crypto.
#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <algorithm>
#include <chrono>

#include "engine_harness.h"
#include "mptcp/crypto.h"
#include "mptcp/engine.h"
#include "mptcp/options.h"
#include "packet/checksum.h"
#include "packet/rng.h"
#include "packet/tcp_packet.h"

namespace mproxy::mptcp {
namespace {

using namespace packet;   // NOLINT(google-build-using-namespace): test brevity
using namespace harness;  // NOLINT(google-build-using-namespace): the shared harness
using std::chrono::milliseconds;

// From engine_harness.h: kKeyB is the native client's key, kIsnA the plain server's ISN (the
// local stack), kIsnJ the client's ISN on its join.

// RFC 8684 §3.4.1 computed independently of mptcp/crypto: HMAC-SHA256 with key
// Key-sender || Key-receiver (8 big-endian bytes each) over ID || address || port (0x0000 when the
// option has none); the option carries the rightmost 64 bits.
std::array<uint8_t, 8> OpensslAddAddrHmac(uint64_t sender, uint64_t receiver, uint8_t id,
                                          Bytes addr) {
  std::array<uint8_t, 16> key{};
  for (int i = 0; i < 8; ++i) {
    key[i] = static_cast<uint8_t>(sender >> (56 - 8 * i));
    key[8 + i] = static_cast<uint8_t>(receiver >> (56 - 8 * i));
  }
  std::vector<uint8_t> msg;
  msg.push_back(id);
  msg.insert(msg.end(), addr.begin(), addr.end());
  msg.push_back(0);
  msg.push_back(0);
  std::array<uint8_t, 32> md{};
  unsigned int md_len = 0;
  EXPECT_NE(HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()), msg.data(), msg.size(),
                 md.data(), &md_len),
            nullptr);
  EXPECT_EQ(md_len, 32u);
  std::array<uint8_t, 8> last{};
  std::copy(md.begin() + 24, md.end(), last.begin());
  return last;
}

struct Family {
  FourTuple tuple;  // local (the plain server behind mproxyd) -> remote (the native client)
  IpAddress other;  // our second interface's address of the same family
  IpAddress join_src;
};

Family V4() {
  return {FourTuple{Addr("198.18.1.2"), Addr("198.18.3.2"), 5201, 40000}, Addr("198.18.2.2"),
          Addr("198.18.3.2")};
}
Family V6() {
  return {FourTuple{Addr("2001:db8:1::2"), Addr("2001:db8:3::2"), 5201, 40000},
          Addr("2001:db8:2::2"), Addr("2001:db8:3::2")};
}

class AnnounceTest : public harness::EngineHarness {
 protected:
  explicit AnnounceTest(AnnounceMode mode = AnnounceMode::kAuto)
      : EngineHarness(Config(mode), Interfaces(true)) {}
  static EngineConfig Config(AnnounceMode mode) {
    EngineConfig c;
    c.ports = {5201};
    c.announce = mode;
    return c;
  }
  // eth0 carries the initial subflow; wlan0 is the one to announce (both families each; the
  // link-local one never goes out).
  static std::vector<LocalInterface> Interfaces(bool with_wlan) {
    std::vector<LocalInterface> v{LocalInterface{
        "eth0", kIfEth, {Addr("198.18.1.2"), Addr("2001:db8:1::2"), Addr("fe80::1")}}};
    if (with_wlan) {
      v.push_back(LocalInterface{"wlan0", kIfWlan, {Addr("198.18.2.2"), Addr("2001:db8:2::2")}});
    } else {
      v.push_back(LocalInterface{"wlan0", kIfWlan, {}});
    }
    return v;
  }

  FourTuple Wire() const override { return fam_.tuple; }
  void CheckForged(const Seen& s) override {
    EXPECT_TRUE(s.parsed);
    EXPECT_TRUE(s.checksum_ok);  // every forged packet
    EXPECT_LE(s.option_bytes, 40u);
  }
  static std::vector<const Seen*> AddAddrs(const std::vector<Seen>& v) {
    std::vector<const Seen*> r;
    for (const auto& s : v) {
      if (s.mp.add_addr) r.push_back(&s);
    }
    return r;
  }

  // The native client connects to us (MP_CAPABLE SYN, our SYN/ACK, its third ACK) `rtt` apart.
  void EstablishPassive(bool ts = true, Duration rtt = milliseconds(0)) {
    MpCapable syn;
    (void)In({.seq = kIsnB,
              .flags = tcp_flags::kSyn,
              .mss = 1460,
              .ts = ts ? std::optional(TimestampsOption{5000, 0}) : std::nullopt,
              .mptcp = {syn}});
    Seen sa = Out({.seq = kIsnA,
                   .ack = kIsnB + 1,
                   .flags = tcp_flags::kSyn | tcp_flags::kAck,
                   .mss = 1460,
                   .ts = ts ? std::optional(TimestampsOption{1000, 5000}) : std::nullopt});
    ASSERT_TRUE(sa.mp.mp_capable);
    key_a_ = sa.mp.mp_capable->sender_key;
    idsn_a_ = DeriveFromKey(key_a_)->idsn;
    idsn_b_ = DeriveFromKey(kKeyB)->idsn;
    token_a_ = DeriveFromKey(key_a_)->token;
    now_ += rtt;
    MpCapable ack;
    ack.form = MpCapable::Form::kAck;
    ack.sender_key = kKeyB;
    ack.receiver_key = key_a_;
    (void)In({.seq = kIsnB + 1,
              .ack = kIsnA + 1,
              .ts = ts ? std::optional(TimestampsOption{5001, 1000}) : std::nullopt,
              .mptcp = {ack}});
    ASSERT_NE(Conn(), nullptr);
    ASSERT_EQ(Conn()->state, ConnState::kEstablished);
    EXPECT_TRUE(TakeForged().empty());  // the ADD_ADDR waits for the timer (after this verdict)
  }

  // The echo a Linux client sends (E=1, same ID and address, no HMAC) next to a DSS DATA_ACK.
  void Echo(uint8_t id, const IpAddress& addr) {
    AddAddr e;
    e.echo = true;
    e.address_id = id;
    e.address = addr;
    Dss d;
    d.data_ack = DssDataAck{(idsn_a_ + 1) & 0xffffffffu, false};
    (void)In(
        {.seq = kIsnB + 1, .ack = kIsnA + 1, .ts = TimestampsOption{5002, 1000}, .mptcp = {d, e}});
  }

  Family fam_ = V4();
};

// Golden bytes: 1e 10 30 ID address(4) HMAC(8) (interop §1.5), on a pure ACK at the stack's
// SND.NXT with timestamps and a 64-bit DSS DATA_ACK beside it (12 + 12 + 16 = 40 bytes).
TEST_F(AnnounceTest, PassiveSideAnnouncesTheOtherIpv4AddressWithItsHmac) {
  ASSERT_NO_FATAL_FAILURE(EstablishPassive());
  Tick(milliseconds(0));
  auto f = TakeForged();
  ASSERT_EQ(f.size(), 1u);  // 198.18.2.2 only: not the initial address, not the other family
  const Seen& s = f[0];
  EXPECT_EQ(s.tuple, fam_.tuple);
  EXPECT_EQ(s.tcp.flags, tcp_flags::kAck);
  EXPECT_EQ(s.payload_len, 0u);
  EXPECT_EQ(s.tcp.seq, kIsnA + 1);
  EXPECT_EQ(s.tcp.ack, kIsnB + 1);
  EXPECT_EQ(s.ifindex, 0u);  // single path: routing decides, like the stack's own segments
  ASSERT_TRUE(s.options.Timestamps());
  EXPECT_EQ(s.options.Timestamps()->tsval, 1000u);
  EXPECT_EQ(s.options.Timestamps()->tsecr, 5001u);
  EXPECT_EQ(s.tcp.window, 500);  // the SYN/ACK's (no window scaling): never a zero window
  ASSERT_TRUE(s.mp.dss && s.mp.dss->data_ack);
  EXPECT_TRUE(s.mp.dss->data_ack->is64);
  EXPECT_EQ(s.mp.dss->data_ack->value, idsn_b_ + 1);
  ASSERT_TRUE(s.mp.add_addr);
  const uint8_t id = s.mp.add_addr->address_id;
  EXPECT_GE(id, 1);  // 0 is the initial subflow's address (RFC 8684 §3.4.1)
  const auto hmac = OpensslAddAddrHmac(key_a_, kKeyB, id, fam_.other.bytes());
  std::vector<uint8_t> golden{0x1e, 0x10, 0x30, id, 198, 18, 2, 2};
  golden.insert(golden.end(), hmac.begin(), hmac.end());
  ASSERT_EQ(s.mptcp_raw.size(), 2u);
  EXPECT_EQ(s.mptcp_raw[1], golden);
  // The engine's own check of a received ADD_ADDR agrees (sender = us, receiver = the peer).
  EXPECT_TRUE(AddAddrHmacValid(key_a_, kKeyB, id, fam_.other.bytes(), 0, s.mp.add_addr->hmac));
  EXPECT_EQ(engine_.counter(Counter::kAddAddrTx), 1u);
}

// IPv6 next to timestamps: 12 + 28 = 40 bytes, no room for a DSS; Linux sends it that way too
// and takes a non-echo ADD_ADDR as the ack that completes its MP_CAPABLE handshake.
TEST_F(AnnounceTest, Ipv6WithTimestampsGoesAloneWithoutDss) {
  fam_ = V6();
  ASSERT_NO_FATAL_FAILURE(EstablishPassive());
  Tick(milliseconds(0));
  auto f = TakeForged();
  ASSERT_EQ(f.size(), 1u);
  const Seen& s = f[0];
  EXPECT_EQ(s.tuple, fam_.tuple);
  EXPECT_TRUE(s.options.Timestamps());
  EXPECT_FALSE(s.mp.dss);
  EXPECT_EQ(s.option_bytes, 40u);
  ASSERT_TRUE(s.mp.add_addr);
  const uint8_t id = s.mp.add_addr->address_id;
  const auto hmac = OpensslAddAddrHmac(key_a_, kKeyB, id, fam_.other.bytes());
  std::vector<uint8_t> golden{0x1e, 0x1c, 0x30, id};
  const auto a = fam_.other.bytes();
  golden.insert(golden.end(), a.begin(), a.end());
  golden.insert(golden.end(), hmac.begin(), hmac.end());
  ASSERT_EQ(s.mptcp_raw.size(), 1u);
  EXPECT_EQ(s.mptcp_raw[0], golden);
}

TEST_F(AnnounceTest, Ipv6WithoutTimestampsCarriesA64BitDataAck) {
  fam_ = V6();
  ASSERT_NO_FATAL_FAILURE(EstablishPassive(/*ts=*/false));
  Tick(milliseconds(0));
  auto f = TakeForged();
  ASSERT_EQ(f.size(), 1u);
  EXPECT_FALSE(f[0].options.Timestamps());
  ASSERT_TRUE(f[0].mp.dss && f[0].mp.dss->data_ack);
  EXPECT_TRUE(f[0].mp.dss->data_ack->is64);
  ASSERT_TRUE(f[0].mp.add_addr);
  EXPECT_EQ(f[0].mp.add_addr->address, fam_.other);
  EXPECT_EQ(f[0].option_bytes, 40u);
}

// Retransmitted after 1 s, 2 s, 4 s (3 times, Linux ADD_ADDR_RETRANS_MAX), then given up.
TEST_F(AnnounceTest, RetransmittedWithBackoffThenGivenUp) {
  ASSERT_NO_FATAL_FAILURE(EstablishPassive());
  const Time t0 = now_;
  Tick(milliseconds(0));
  ASSERT_EQ(AddAddrs(TakeForged()).size(), 1u);
  std::vector<Duration> at;
  for (int i = 0; i < 40; ++i) {
    Tick(milliseconds(500));
    auto f = TakeForged();
    for (const Seen* s : AddAddrs(f)) {
      at.push_back(now_ - t0);
      EXPECT_EQ(s->mp.add_addr->address, fam_.other);
      EXPECT_FALSE(s->mp.add_addr->echo);
    }
  }
  EXPECT_EQ(at,
            (std::vector<Duration>{milliseconds(1000), milliseconds(3000), milliseconds(7000)}));
  EXPECT_EQ(engine_.counter(Counter::kAddAddrTx), 1u);
  EXPECT_EQ(engine_.counter(Counter::kAddAddrRetx), 3u);
  EXPECT_EQ(engine_.counter(Counter::kAddAddrGaveUp), 1u);
  EXPECT_EQ(engine_.counter(Counter::kAddAddrEchoRx), 0u);
}

// First retransmission after max(1 s, 2 x RTT): on a 800 ms path, 1.6 s.
TEST_F(AnnounceTest, FirstRetransmissionWaitsTwoRoundTrips) {
  ASSERT_NO_FATAL_FAILURE(EstablishPassive(true, milliseconds(800)));
  const Time t0 = now_;
  Tick(milliseconds(0));
  ASSERT_EQ(AddAddrs(TakeForged()).size(), 1u);
  Tick(milliseconds(1599));
  EXPECT_TRUE(AddAddrs(TakeForged()).empty());
  Tick(milliseconds(1));
  EXPECT_EQ(AddAddrs(TakeForged()).size(), 1u);
  EXPECT_EQ(now_ - t0, milliseconds(1600));
}

TEST_F(AnnounceTest, EchoStopsTheRetransmission) {
  ASSERT_NO_FATAL_FAILURE(EstablishPassive());
  Tick(milliseconds(0));
  auto f = TakeForged();
  ASSERT_EQ(f.size(), 1u);
  const uint8_t id = f[0].mp.add_addr->address_id;
  // An echo of something else (another ID; our address with the wrong ID) changes nothing.
  Echo(static_cast<uint8_t>(id + 1), fam_.other);
  Echo(id, Addr("198.18.9.9"));
  EXPECT_EQ(engine_.counter(Counter::kAddAddrEchoRx), 2u);
  Tick(milliseconds(1000));
  EXPECT_EQ(AddAddrs(TakeForged()).size(), 1u);  // still retransmitted
  Echo(id, fam_.other);
  EXPECT_EQ(engine_.counter(Counter::kAddAddrEchoRx), 3u);
  TakeForged();
  Tick(std::chrono::seconds(60));
  EXPECT_TRUE(AddAddrs(TakeForged()).empty());
  EXPECT_EQ(engine_.counter(Counter::kAddAddrRetx), 1u);
  EXPECT_EQ(engine_.counter(Counter::kAddAddrGaveUp), 0u);
  ASSERT_EQ(Conn()->announced.size(), 1u);
  EXPECT_TRUE(Conn()->announced[0].echoed);
}

TEST_F(AnnounceTest, LostAddressGetsRemoveAddrAndAReturningOneIsAnnouncedAgain) {
  ASSERT_NO_FATAL_FAILURE(EstablishPassive());
  Tick(milliseconds(0));
  auto f = TakeForged();
  ASSERT_EQ(f.size(), 1u);
  const uint8_t id = f[0].mp.add_addr->address_id;
  Echo(id, fam_.other);
  TakeForged();
  // wlan0 loses its addresses: REMOVE_ADDR for the announced ID (RFC 8684 §3.4.2), once.
  Actions a;
  engine_.SetInterfaces(now_, Interfaces(false), a);
  Collect(a);
  f = TakeForged();
  ASSERT_EQ(f.size(), 1u);
  ASSERT_TRUE(f[0].mp.remove_addr);
  ASSERT_EQ(f[0].mp.remove_addr->count, 1);
  EXPECT_EQ(f[0].mp.remove_addr->ids[0], id);
  EXPECT_EQ(f[0].mptcp_raw.back(), (std::vector<uint8_t>{0x1e, 0x04, 0x40, id}));
  EXPECT_TRUE(f[0].mp.dss && f[0].mp.dss->data_ack);
  EXPECT_EQ(f[0].tuple, fam_.tuple);
  EXPECT_EQ(engine_.counter(Counter::kAnnounceRemoveTx), 1u);
  engine_.SetInterfaces(now_, Interfaces(false), a);  // no change: nothing more
  Collect(a);
  EXPECT_TRUE(TakeForged().empty());
  Tick(std::chrono::seconds(30));
  EXPECT_TRUE(TakeForged().empty());  // nothing left to retransmit
  // The address comes back: announced again with the same ID, retransmitted until echoed.
  engine_.SetInterfaces(now_, Interfaces(true), a);
  Collect(a);
  f = TakeForged();
  ASSERT_EQ(f.size(), 1u);
  ASSERT_TRUE(f[0].mp.add_addr);
  EXPECT_EQ(f[0].mp.add_addr->address_id, id);
  EXPECT_EQ(f[0].mp.add_addr->address, fam_.other);
  EXPECT_EQ(engine_.counter(Counter::kAddAddrTx), 2u);
  Tick(milliseconds(1000));
  EXPECT_EQ(AddAddrs(TakeForged()).size(), 1u);
  // ... and lost again: a second REMOVE_ADDR for it is due (it was announced again).
  engine_.SetInterfaces(now_, Interfaces(false), a);
  Collect(a);
  f = TakeForged();
  ASSERT_EQ(f.size(), 1u);
  EXPECT_TRUE(f[0].mp.remove_addr);
}

TEST_F(AnnounceTest, NewAddressOnALiveConnectionIsAnnounced) {
  engine_.SetInterfaces(Interfaces(false));
  ASSERT_NO_FATAL_FAILURE(EstablishPassive());
  Tick(milliseconds(0));
  EXPECT_TRUE(TakeForged().empty());  // nothing else to announce yet
  Actions a;
  engine_.SetInterfaces(now_, Interfaces(true), a);
  Collect(a);
  auto f = TakeForged();
  ASSERT_EQ(f.size(), 1u);
  ASSERT_TRUE(f[0].mp.add_addr);
  EXPECT_EQ(f[0].mp.add_addr->address, fam_.other);
  EXPECT_EQ(engine_.counter(Counter::kAddAddrTx), 1u);
}

// The peer joins the announced address: the subflow gets the announced ID, wlan0 as interface,
// and our SYN/ACK names that ID (a later REMOVE_ADDR or MP_PRIO refers to the same).
TEST_F(AnnounceTest, PassiveJoinToTheAnnouncedAddressGetsItsId) {
  ASSERT_NO_FATAL_FAILURE(EstablishPassive());
  Tick(milliseconds(0));
  auto f = TakeForged();
  ASSERT_EQ(f.size(), 1u);
  const uint8_t id = f[0].mp.add_addr->address_id;
  Echo(id, fam_.other);
  TakeForged();
  const FourTuple w{fam_.other, fam_.join_src, 5201, 45000};
  MpJoin j;
  j.form = MpJoin::Form::kSyn;
  j.address_id = 0;
  j.token = token_a_;
  j.nonce = kNonceB;
  Seen syn = In(w, {.seq = kIsnJ,
                    .flags = tcp_flags::kSyn,
                    .mss = 1400,
                    .ts = TimestampsOption{70000, 0},
                    .mptcp = {j}});
  EXPECT_EQ(syn.verdict, Verdict::kDrop);
  f = TakeForged();
  ASSERT_EQ(f.size(), 1u);
  ASSERT_TRUE(f[0].mp.mp_join);
  EXPECT_EQ(f[0].tuple, w);
  EXPECT_EQ(f[0].mp.mp_join->address_id, id);
  EXPECT_EQ(f[0].ifindex, kIfWlan);
  const uint32_t nonce = f[0].mp.mp_join->nonce;
  MpJoin third;
  third.form = MpJoin::Form::kAck;
  const auto m = Nonces(kNonceB, nonce);
  auto h = HmacSha256(kKeyB, key_a_, m);
  ASSERT_TRUE(h.ok());
  std::copy_n(h.value().begin(), 20, third.hmac.begin());
  (void)In(w, {.seq = kIsnJ + 1,
               .ack = f[0].tcp.seq + 1,
               .ts = TimestampsOption{70001, 1000},
               .mptcp = {third}});
  f = TakeForged();
  ASSERT_EQ(f.size(), 1u);  // the fourth ACK
  auto sfs = Subflows();
  ASSERT_EQ(sfs.size(), 2u);
  EXPECT_EQ(sfs[1].state, SubflowState::kEstablished);
  EXPECT_EQ(sfs[1].local_id, id);
  EXPECT_EQ(sfs[1].ifname, "wlan0");
  EXPECT_EQ(sfs[1].tuple, w);
  EXPECT_EQ(engine_.counter(Counter::kJoinAckRx), 1u);
}

// One REMOVE_ADDR per ID: break-before-make away from the joined address sends it, the address
// disappearing afterwards does not repeat it; a new join to it makes the ID live again.
TEST_F(AnnounceTest, RemoveAddrIsSentOncePerIdUntilTheIdIsUsedAgain) {
  ASSERT_NO_FATAL_FAILURE(EstablishPassive());
  Tick(milliseconds(0));
  auto f = TakeForged();
  ASSERT_EQ(f.size(), 1u);
  const uint8_t id = f[0].mp.add_addr->address_id;
  Echo(id, fam_.other);
  TakeForged();
  uint16_t port = 45000;
  uint32_t isn = kIsnJ;
  auto join = [&]() {
    const FourTuple w{fam_.other, fam_.join_src, 5201, port++};
    MpJoin j;
    j.form = MpJoin::Form::kSyn;
    j.token = token_a_;
    j.nonce = kNonceB;
    (void)In(w, {.seq = isn,
                 .flags = tcp_flags::kSyn,
                 .mss = 1400,
                 .ts = TimestampsOption{70000, 0},
                 .mptcp = {j}});
    auto sa = TakeForged();
    ASSERT_EQ(sa.size(), 1u);
    ASSERT_TRUE(sa[0].mp.mp_join);
    EXPECT_EQ(sa[0].mp.mp_join->address_id, id);
    MpJoin third;
    third.form = MpJoin::Form::kAck;
    auto h = HmacSha256(kKeyB, key_a_, Nonces(kNonceB, sa[0].mp.mp_join->nonce));
    ASSERT_TRUE(h.ok());
    std::copy_n(h.value().begin(), 20, third.hmac.begin());
    (void)In(w, {.seq = isn + 1,
                 .ack = sa[0].tcp.seq + 1,
                 .ts = TimestampsOption{70001, 1000},
                 .mptcp = {third}});
    isn += 100000;
    TakeForged();
  };
  auto removes = [&](const std::vector<Seen>& v) {
    std::vector<uint8_t> ids;
    for (const auto& s : v) {
      if (s.mp.remove_addr) {
        for (uint8_t i : s.mp.remove_addr->list()) ids.push_back(i);
      }
    }
    return ids;
  };
  ASSERT_NO_FATAL_FAILURE(join());
  Actions a;
  auto leave_wlan = [&]() {
    auto bbm = engine_.StartHandover(
        now_, HandoverRequest{"wlan0", "eth0", HandoverMode::kBreakBeforeMake, {}}, a);
    ASSERT_TRUE(bbm.ok());
    Collect(a);
  };
  ASSERT_NO_FATAL_FAILURE(leave_wlan());
  EXPECT_EQ(removes(TakeForged()), std::vector<uint8_t>{id});
  // The peer joins the address again (its MP_JOIN makes the ID live again), we leave it again.
  ASSERT_NO_FATAL_FAILURE(join());
  ASSERT_NO_FATAL_FAILURE(leave_wlan());
  EXPECT_EQ(removes(TakeForged()), std::vector<uint8_t>{id});
  EXPECT_EQ(engine_.counter(Counter::kRemoveAddrTx), 2u);
  // wlan0's address goes: the peer was told already.
  engine_.SetInterfaces(now_, Interfaces(false), a);
  Collect(a);
  EXPECT_TRUE(removes(TakeForged()).empty());
  EXPECT_EQ(engine_.counter(Counter::kAnnounceRemoveTx), 0u);
  // It comes back: announced again (the ID is live again), so its next loss is told.
  engine_.SetInterfaces(now_, Interfaces(true), a);
  Collect(a);
  EXPECT_EQ(AddAddrs(TakeForged()).size(), 1u);
  engine_.SetInterfaces(now_, Interfaces(false), a);
  Collect(a);
  EXPECT_EQ(removes(TakeForged()), std::vector<uint8_t>{id});
  EXPECT_EQ(engine_.counter(Counter::kAnnounceRemoveTx), 1u);
}

// Multipath: a retransmission goes on a usable subflow, with its wire tuple and sequence spaces.
TEST_F(AnnounceTest, RetransmissionAfterMigrationGoesOnAUsableSubflow) {
  ASSERT_NO_FATAL_FAILURE(EstablishPassive());
  Tick(milliseconds(0));
  TakeForged();
  // The peer makes the initial subflow a backup: the connection takes the multipath path.
  MpPrio backup;
  backup.backup = true;
  Dss d;
  d.data_ack = DssDataAck{idsn_a_ + 1, true};
  // A join first, so MP_PRIO has something to move to.
  const FourTuple w{fam_.other, fam_.join_src, 5201, 45000};
  MpJoin j;
  j.form = MpJoin::Form::kSyn;
  j.token = token_a_;
  j.nonce = kNonceB;
  (void)In(w, {.seq = kIsnJ,
               .flags = tcp_flags::kSyn,
               .mss = 1400,
               .ts = TimestampsOption{70000, 0},
               .mptcp = {j}});
  auto f = TakeForged();
  ASSERT_EQ(f.size(), 1u);
  const uint32_t nonce = f[0].mp.mp_join->nonce;
  const uint32_t join_isn = f[0].tcp.seq;
  MpJoin third;
  third.form = MpJoin::Form::kAck;
  auto h = HmacSha256(kKeyB, key_a_, Nonces(kNonceB, nonce));
  ASSERT_TRUE(h.ok());
  std::copy_n(h.value().begin(), 20, third.hmac.begin());
  (void)In(w, {.seq = kIsnJ + 1,
               .ack = join_isn + 1,
               .ts = TimestampsOption{70001, 1000},
               .mptcp = {third}});
  (void)In({.seq = kIsnB + 1,
            .ack = kIsnA + 1,
            .ts = TimestampsOption{5003, 1000},
            .mptcp = {d, backup}});
  ASSERT_TRUE(Conn()->multi);
  TakeForged();
  Tick(milliseconds(1000));
  auto adds = TakeForged();
  auto aa = AddAddrs(adds);
  ASSERT_EQ(aa.size(), 1u);
  EXPECT_EQ(aa[0]->mp.add_addr->address, fam_.other);
  EXPECT_EQ(aa[0]->tcp.flags, tcp_flags::kAck);
  EXPECT_TRUE(aa[0]->mp.dss && aa[0]->mp.dss->data_ack);
  EXPECT_TRUE(aa[0]->tuple == w || aa[0]->tuple == fam_.tuple);
  EXPECT_EQ(engine_.counter(Counter::kAddAddrRetx), 1u);
}

class AnnounceModeTest : public AnnounceTest, public ::testing::WithParamInterface<AnnounceMode> {
 protected:
  AnnounceModeTest() : AnnounceTest(GetParam()) {}

  // We open the connection (the mobile host case): SYN, the native server's SYN/ACK, our third
  // ACK.
  void EstablishActive() {
    (void)Out(
        {.seq = kIsnA, .flags = tcp_flags::kSyn, .mss = 1460, .ts = TimestampsOption{1000, 0}});
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
    // Nothing before our third ACK: the server has no connection yet for an ADD_ADDR.
    Tick(milliseconds(0));
    EXPECT_TRUE(TakeForged().empty());
    Seen third = Out({.seq = kIsnA + 1, .ack = kIsnB + 1, .ts = TimestampsOption{1001, 5000}});
    EXPECT_TRUE(third.mp.mp_capable);
  }
};

TEST_P(AnnounceModeTest, WhoAnnounces) {
  const AnnounceMode mode = GetParam();
  fam_ = V4();
  ASSERT_NO_FATAL_FAILURE(EstablishActive());
  Tick(milliseconds(0));
  auto f = TakeForged();
  EXPECT_EQ(AddAddrs(f).size(), mode == AnnounceMode::kAlways ? 1u : 0u);
  if (!f.empty() && f[0].mp.add_addr) {
    EXPECT_EQ(f[0].mp.add_addr->address, fam_.other);
    EXPECT_TRUE(AddAddrHmacValid(key_a_, kKeyB, f[0].mp.add_addr->address_id, fam_.other.bytes(), 0,
                                 f[0].mp.add_addr->hmac));
  }
  Tick(std::chrono::seconds(30));
  f = TakeForged();
  EXPECT_EQ(AddAddrs(f).size(), mode == AnnounceMode::kAlways ? 3u : 0u);
}

TEST_P(AnnounceModeTest, PassiveSide) {
  const AnnounceMode mode = GetParam();
  ASSERT_NO_FATAL_FAILURE(EstablishPassive());
  Tick(milliseconds(0));
  EXPECT_EQ(AddAddrs(TakeForged()).size(), mode == AnnounceMode::kNever ? 0u : 1u);
  EXPECT_EQ(engine_.counter(Counter::kAddAddrTx), mode == AnnounceMode::kNever ? 0u : 1u);
}

INSTANTIATE_TEST_SUITE_P(Modes, AnnounceModeTest,
                         ::testing::Values(AnnounceMode::kAuto, AnnounceMode::kAlways,
                                           AnnounceMode::kNever),
                         [](const auto& p) { return std::string(Name(p.param)); });

TEST(AnnounceModeNames, ParseAndName) {
  for (AnnounceMode m : {AnnounceMode::kAuto, AnnounceMode::kAlways, AnnounceMode::kNever}) {
    EXPECT_EQ(ParseAnnounceMode(Name(m)), m);
  }
  EXPECT_FALSE(ParseAnnounceMode("sometimes"));
}

}  // namespace
}  // namespace mproxy::mptcp
