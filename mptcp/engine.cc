#include "mptcp/engine.h"

#include <algorithm>
#include <array>
#include <limits>

#include "mptcp/crypto.h"
#include "mptcp/options.h"
#include "mptcp/stream_offsets.h"
#include "packet/checksum.h"

namespace mproxy::mptcp {

using packet::DataSeq;
using packet::FourTuple;
using packet::PacketOut;
using packet::TcpPacket;
using packet::Time;
namespace tcp_flags = packet::tcp_flags;
namespace tcp_opt = packet::tcp_opt;

std::string_view Name(ConnState s) {
  switch (s) {
    case ConnState::kSynSent: return "syn-sent";
    case ConnState::kSynReceived: return "syn-received";
    case ConnState::kEstablished: return "established";
    case ConnState::kFallback: return "fallback";
    case ConnState::kClosed: return "closed";
  }
  return "?";
}
std::string_view Name(Role r) { return r == Role::kActive ? "active" : "passive"; }

namespace {

SegmentOptions ParseMptcp(const TcpPacket& p) {
  SegmentOptionsBuilder b(SegmentFlags{p.tcp.has(tcp_flags::kSyn), p.tcp.has(tcp_flags::kAck),
                                       p.tcp.has(tcp_flags::kRst), p.payload_len > 0});
  for (size_t i = 0; i < p.options.size(); ++i) {
    packet::TcpOptionView v = p.options[i];
    if (v.kind == tcp_opt::kMptcp) b.Add(v.raw);
  }
  return b.options();
}

bool IsOutbound(packet::Hook h) {
  return h == packet::Hook::kLocalOut || h == packet::Hook::kPostRouting;
}

}  // namespace

Engine::Engine(EngineConfig config, packet::Rng& rng) : config_(std::move(config)), rng_(rng) {}
Engine::~Engine() = default;

bool Engine::Selected(const FourTuple& t) const {
  if (config_.ports.empty()) return true;
  for (uint16_t port : config_.ports) {
    if (t.sport == port || t.dport == port) return true;
  }
  return false;
}

void Engine::ForEachConnection(const std::function<void(const Connection&)>& visit) const {
  for (const auto& [tuple, c] : conns_) visit(*c);
}

void Engine::OnPacket(Time now, const packet::PacketMeta& meta, packet::MutableBytes pkt,
                      PacketOut& out, packet::Actions& actions) {
  counters_.Inc(Counter::kPackets);
  clock_ = now;
  out.Reset();
  auto parsed = packet::ParseTcpPacket(pkt, meta);
  if (!parsed) {
    if (!IsOutbound(meta.hook) && OnIcmp(pkt, out)) return;  // path MTU (mptcp/icmp.cc)
    // Not ours to judge: non-TCP, fragments and malformed packets pass unchanged. The rules only
    // queue selected TCP ports (and path-MTU ICMP, above), so this is rare and never a converted
    // flow's packet.
    counters_.Inc(Counter::kMalformed);
    return;
  }
  TcpPacket& p = *parsed;
  if (IsOutbound(meta.hook)) {
    // After a translated frag-needed (mptcp/icmp.cc), the stack's route holds the lowered MTU.
    const std::optional<FourTuple> pmtu = any_pmtu_told_ ? std::optional(p.tuple()) : std::nullopt;
    OnOutbound(now, p, out, actions);
    if (pmtu) PmtuOutbound(*pmtu, pkt, out);
  } else {
    OnInbound(now, p, out, actions);
  }
}

// ---------------------------------------------------------------------------------------------
// Outbound: local TCP stack -> wire.

void Engine::OnOutbound(Time now, TcpPacket& p, PacketOut& out, packet::Actions& actions) {
  const FourTuple t = p.tuple();
  if (!Selected(t)) {
    counters_.Inc(Counter::kNotSelected);
    return;
  }
  const bool syn = p.tcp.has(tcp_flags::kSyn), ack = p.tcp.has(tcp_flags::kAck);
  if (syn && !ack) {
    OutboundSyn(now, p, out);
    return;
  }
  Connection* found = Track(now, t);
  if (found == nullptr) return;
  Connection& c = *found;
  if (syn) {  // SYN/ACK of a passive connection
    if (c.role == Role::kPassive) OutboundSynAck(c, p, out);
    return;
  }
  if (c.state == ConnState::kSynSent || c.state == ConnState::kSynReceived) {
    if (p.tcp.has(tcp_flags::kRst)) {
      // The local stack refuses or aborts the half-open connection: let the RST through as is.
      counters_.Inc(Counter::kHandshakeRst);
      Erase(c);
      return;
    }
    // Nothing else can leave before the handshake finished on the wire. Fail closed.
    out.verdict = packet::Verdict::kDrop;
    return;
  }
  if (c.multi) {
    OutboundMulti(now, c, p, out, actions);
    return;
  }
  if (p.tcp.has(tcp_flags::kRst)) {
    OutboundRst(now, c, p, out, actions);
    return;
  }
  OutboundEstablished(c, p, out);
  if (c.announce && !c.announce_started && !c.announce_at && c.state == ConnState::kEstablished) {
    // Our third ACK (or first data) is on its way: announce from the timer, after its verdict.
    c.announce_at = now;
    if (now < c.deadline) Schedule(c, now);
  }
  MaybeClose(now, c);
  (void)actions;
}

Connection* Engine::Track(Time now, const FourTuple& key) {
  auto it = conns_.find(key);
  if (it == conns_.end()) {
    counters_.Inc(Counter::kNoConnection);
    return nullptr;
  }
  Connection& c = *it->second;
  c.last_activity = now;
  if (c.state == ConnState::kFallback) {
    counters_.Inc(Counter::kFallbackPackets);
    return nullptr;
  }
  return &c;
}

bool Engine::NewKey(Connection& c) {
  // RFC 8684 §3.1: a random non-zero 64-bit key whose token is unique on this host (Linux retries
  // until it is, mptcp_token_new_connect()).
  for (int attempt = 0; attempt < 16; ++attempt) {
    uint64_t key = rng_.Next64();
    if (key == 0) continue;
    auto d = DeriveFromKey(key);
    if (!d) return false;
    if (local_tokens_.contains(d->token)) continue;
    c.local_key = key;
    c.local_token = d->token;
    c.local_idsn = d->idsn;
    local_tokens_.insert(d->token);
    return true;
  }
  return false;
}

uint8_t Engine::MpcFlags(const Connection& c) const {
  // H: HMAC-SHA256 (the only v1 algorithm). A: checksums. C: "do not join my initial
  // address/port" (RFC 8684 §3.1): the mobile host is the joiner (mptcp/subflow.cc); a native
  // server must not open subflows towards a client behind NAT. Joins that arrive anyway (another
  // mproxyd, a native client) are still answered (passive joins). C forbids joins to the initial
  // address only: the addresses we announce (mptcp/announce.cc) may be joined, and Linux does
  // (mptcp_announce_test.sh).
  return static_cast<uint8_t>(kMpcFlagHmacSha256 | kMpcFlagNoJoinInitial |
                              (c.checksums ? kMpcFlagChecksum : 0));
}

void Engine::OutboundSyn(Time now, TcpPacket& p, PacketOut& out) {
  const FourTuple t = p.tuple();
  if (auto w = wire_.empty() ? wire_.end() : wire_.find(t); w != wire_.end()) {
    // The local stack chose a join's 4-tuple (it cannot see our raw-socket joins): its packets
    // would be taken for the join's and the peer would see a SYN on an established subflow.
    // Refused until the join is gone (a closed one only kept its tuple for late packets: it
    // goes now); the local stack retries its SYN (EngineConfig join ports).
    if (w->second.sf->state != SubflowState::kClosed) {
      counters_.Inc(Counter::kJoinTupleInUse);
      out.verdict = packet::Verdict::kDrop;
      return;
    }
    FreeSubflow(*w->second.conn, *w->second.sf);
  }
  auto it = conns_.find(t);
  if (it != conns_.end()) {
    Connection& old = *it->second;
    if (old.role == Role::kActive && old.tx_isn == p.tcp.seq &&
        (old.state == ConnState::kSynSent || old.state == ConnState::kFallback)) {
      if (old.state == ConnState::kFallback) return;  // already retrying as plain TCP
      counters_.Inc(Counter::kSynRetransmit);
      if (++old.syn_tries > 1 + config_.mpc_syn_retries) {
        // Like Linux (syn_retrans_before_tcp_fallback, interop §2.1): a middlebox may be dropping
        // MP_CAPABLE SYNs, so the next SYNs go out plain. The state stays as a marker until the
        // handshake timer, so the retransmissions stay plain too.
        counters_.Inc(Counter::kFallbackSynRetrans);
        local_tokens_.erase(old.local_token);
        old.state = ConnState::kFallback;
        return;
      }
    } else {
      Erase(old);  // the 4-tuple is being reused by a new connection
      it = conns_.end();
    }
  }
  Connection* c = nullptr;
  if (it == conns_.end()) {
    auto fresh = std::make_unique<Connection>();
    fresh->tuple = t;
    fresh->role = Role::kActive;
    fresh->state = ConnState::kSynSent;
    fresh->tx_isn = p.tcp.seq;
    fresh->syn_tries = 1;
    fresh->checksums = config_.checksums;
    fresh->created = fresh->last_activity = now;
    RecordLocalSyn(*fresh, p);
    if (!NewKey(*fresh)) {
      counters_.Inc(Counter::kKeyGenFailed);
      return;  // plain TCP
    }
    c = fresh.get();
    conns_.emplace(t, std::move(fresh));
    Schedule(*c, now + config_.handshake_timeout);
    counters_.Inc(Counter::kActiveOpen);
  } else {
    c = it->second.get();
  }
  // RFC 8684 §3.1: the v1 SYN carries no key, only version and flags (interop §1.2: 1e 04 01 01).
  MpCapable mpc;
  mpc.form = MpCapable::Form::kSyn;
  mpc.flags = static_cast<uint8_t>(kMpcFlagHmacSha256 | (config_.checksums ? kMpcFlagChecksum : 0));
  if (!AddMptcp(p.options, mpc)) {
    counters_.Inc(Counter::kOptionSpace);
    Erase(*c);  // no room for MP_CAPABLE: the connection stays plain TCP
    return;
  }
  Emit(p, out);
}

void Engine::OutboundSynAck(Connection& c, TcpPacket& p, PacketOut& out) {
  if (c.state != ConnState::kSynReceived) return;  // late retransmission: Linux ignores its options
  c.tx_isn = p.tcp.seq;
  RecordLocalSyn(c, p);
  // Header values for what we forge before the local stack's first segment after the handshake
  // (our ADD_ADDR goes out right after the third ACK): its tsval (a 0 would fail the peer's PAWS
  // check, RFC 7323 §5) and its window, scaled as a non-SYN segment's field is (RFC 7323 §2.2).
  if (auto ts = p.options.Timestamps()) {
    packet::TimestampsOption t = c.last_ts.value_or(*ts);
    t.tsval = ts->tsval;
    c.last_ts = t;
  }
  const uint8_t shift = c.local_ws && c.peer_ws ? std::min<uint8_t>(c.local_wscale, 14) : 0;
  c.last_window = static_cast<uint16_t>(std::max<uint32_t>(uint32_t{p.tcp.window} >> shift, 1));
  // The responder's key travels in the SYN/ACK (RFC 8684 §3.1); A echoes a checksum request.
  MpCapable mpc;
  mpc.form = MpCapable::Form::kSynAck;
  mpc.flags = MpcFlags(c);
  mpc.sender_key = c.local_key;
  if (!AddMptcp(p.options, mpc)) {
    counters_.Inc(Counter::kOptionSpace);
    FallBack(c, Counter::kOptionSpace);
    return;
  }
  Emit(p, out);
}

void Engine::OutboundRst(Time now, Connection& c, TcpPacket& p, PacketOut& out,
                         packet::Actions& actions) {
  ResetJoins(c, actions);  // joins still in their handshake
  // A local RST aborts the whole connection: MP_FASTCLOSE with the receiver's key plus MP_TCPRST on
  // the RST (interop §1.6: what Linux emits in mptcp_do_fastclose(); seed §3.1 maps RST <->
  // MP_FASTCLOSE).
  counters_.Inc(Counter::kRstTx);
  // The peer accepts a RST only at exactly its rcv_nxt (RFC 5961): after a DATA_FIN whose subflow
  // FIN is not sent yet, the subflow is one behind the TCP sequence space.
  if (auto off = OffsetOf(p.tcp.seq, c.tx_isn, c.tx_high);
      off && c.tx_fin && *off > *c.tx_fin && !c.tx_sfin_sent) {
    p.tcp.seq -= 1;
  }
  p.options.RemoveAll(tcp_opt::kMptcp);
  if (c.remote_key_known) {
    MpFastclose fc;
    fc.receiver_key = c.remote_key;
    MpTcpRst rst;
    rst.reason = static_cast<uint8_t>(TcpRstReason::kUnspecified);
    if (AddMptcp(p.options, fc)) counters_.Inc(Counter::kFastcloseTx);
    (void)AddMptcp(p.options, rst);
  }
  Close(now, c);
  Emit(p, out);
}

bool Engine::RxIdentity(const Connection& c) {
  // On the initial subflow the peer's SSN and DSN offsets coincide until it reinjects data at new
  // subflow sequence numbers (MPTCP-level retransmission). Only while they coincide can the flow
  // be handed over to plain TCP (RFC 8684 §3.7) or SACK blocks be passed through untranslated.
  // (A flag, not a scan of the RECV table: acknowledged entries are forgotten, the shift is not.)
  return !c.rx_shifted;
}

const TxMapping& Engine::TxMappingFor(Connection& c, std::deque<TxMapping>& maps, uint64_t begin,
                                      uint32_t len, bool fin, packet::Bytes payload,
                                      uint64_t ssn_off, bool initial) {
  const uint64_t end = begin + len + (fin ? 1 : 0);
  while (!maps.empty() && maps.front().end() <= c.tx_acked) maps.pop_front();
  // The mapping that holds `begin`, if any (the deque is sorted by offset and gap-free in
  // practice, so this is a short backwards scan from the end for new data).
  auto it = std::upper_bound(maps.begin(), maps.end(), begin,
                             [](uint64_t b, const TxMapping& m) { return b < m.off; });
  if (it != maps.begin()) {
    const TxMapping& m = *std::prev(it);
    // (A mapping belongs to the subflow bytes it was sent at: a retransmission moved to other
    // subflow bytes needs a new one.)
    if (begin < m.end() && end <= m.end() && (len == 0 || m.ssn_off + (begin - m.off) == ssn_off)) {
      counters_.Inc(Counter::kTxMappingReused);
      return m;
    }
  }
  TxMapping fresh;
  fresh.off = begin;
  fresh.len = len;
  fresh.fin = fin;
  fresh.ssn_off = ssn_off;
  // MP_CAPABLE + data for the first data byte until the peer's first DSS; Linux lets a DATA_FIN
  // take precedence (mptcp_established_options_mp()).
  fresh.mpc =
      initial && c.role == Role::kActive && !c.peer_dss_seen && begin == 0 && len > 0 && !fin;
  if (c.checksums) {
    if (fresh.mpc) {
      fresh.checksum = DssChecksum(DataSeq(c.local_idsn + 1), 1, static_cast<uint16_t>(len), payload);
    } else {
      fresh.checksum = DssChecksum(DataSeq(c.local_idsn + 1 + begin),
                                   len > 0 ? static_cast<uint32_t>(ssn_off + 1) : 0u,
                                   static_cast<uint16_t>(len + (fin ? 1 : 0)), payload);
    }
  }
  // Drop what the new mapping overlaps (a retransmission straddling two mappings: Linux may refuse
  // it, but there is no better mapping to send; counted).
  auto first = std::lower_bound(maps.begin(), maps.end(), begin,
                                [](const TxMapping& m, uint64_t b) { return m.end() <= b; });
  auto last = first;
  while (last != maps.end() && last->off < end) ++last;
  if (first != last) counters_.Inc(Counter::kTxRemapped);
  it = maps.erase(first, last);
  return *maps.insert(it, fresh);
}

Option Engine::MappingOption(const Connection& c, const TxMapping& m,
                             std::optional<DssDataAck> data_ack) {
  if (m.mpc && !c.peer_dss_seen) {
    MpCapable mpc;
    mpc.form = c.checksums ? MpCapable::Form::kAckDataCsum : MpCapable::Form::kAckData;
    mpc.flags = MpcFlags(c);
    mpc.sender_key = c.local_key;
    mpc.receiver_key = c.remote_key;
    mpc.data_len = static_cast<uint16_t>(m.len);
    mpc.checksum = m.checksum.value_or(0);
    counters_.Inc(Counter::kMpcDataTx);
    return mpc;
  }
  // The implicit MP_CAPABLE mapping is DSN IDSN+1, SSN 1, length L: the same as this DSS, so a
  // retransmission after the peer's first DSS carries an identical mapping.
  Dss dss;
  dss.data_ack = data_ack;
  DssMapping map;
  map.dsn64 = true;
  map.dsn = c.local_idsn + 1 + m.off;
  // DATA_FIN on an empty segment: SSN 0, length 1 (interop §1.4, mptcp_write_data_fin()).
  map.ssn = m.len > 0 ? static_cast<uint32_t>(m.ssn_off + 1) : 0u;
  map.data_len = static_cast<uint16_t>(m.len + (m.fin ? 1 : 0));
  map.checksum = m.checksum;
  dss.mapping = map;
  dss.data_fin = m.fin;
  counters_.Inc(Counter::kDssTx);
  return dss;
}

void Engine::OutboundEstablished(Connection& c, TcpPacket& p, PacketOut& out) {
  const uint32_t len = static_cast<uint32_t>(p.payload_len);
  const bool fin = p.tcp.has(tcp_flags::kFin);
  if (p.payload_len > 0xfffe) {
    // A data-level length is 16 bits (RFC 8684 §3.3): one mapping cannot cover this segment.
    counters_.Inc(Counter::kTooLarge);
    out.verdict = packet::Verdict::kDrop;
    return;
  }
  std::optional<uint64_t> seq_off = OffsetOf(p.tcp.seq, c.tx_isn, c.tx_high);

  // DATA_ACK from the TCP ACK. The peer's bytes sit at the same offset in TSN and DSN space, so the
  // local cumulative ACK is the DATA_ACK (seed §3.4); the subflow ACK only covers subflow bytes
  // whose data is acknowledged, projected through the peer's mappings (seed §3.5).
  std::optional<DssDataAck> data_ack;
  if (p.tcp.has(tcp_flags::kAck)) {
    if (auto tan = OffsetOf(p.tcp.ack, c.rx_isn, c.rx_dan)) {
      c.rx_dan = std::max(c.rx_dan, *tan);
      const uint64_t data_limit = std::min(c.rx_dan, c.rx_data_fin.value_or(kNoLimit));
      uint64_t san = std::max(c.rx_san, c.recv.AckedPrefix(c.rx_san, data_limit));
      // The peer's subflow FIN is acknowledged once its DATA_FIN is (RFC 8684 §3.3.3).
      if (c.rx_sfin && san == *c.rx_sfin && c.rx_data_fin && c.rx_dan > *c.rx_data_fin) ++san;
      c.rx_san = san;
      c.recv.ForgetBelow(san);
      p.tcp.ack = WireOf(c.rx_isn, san);
    }
    data_ack = DssDataAck{c.remote_idsn + 1 + c.rx_dan, true};
  }
  // SACK blocks are in TSN space; the wire wants subflow numbers. They coincide until the peer
  // reinjects on this subflow; after that, drop them rather than SACK the wrong bytes.
  if (!RxIdentity(c) && p.options.Find(tcp_opt::kSack)) {
    p.options.RemoveAll(tcp_opt::kSack);
    counters_.Inc(Counter::kSackStripped);
  }

  Option opt;
  bool have_opt = true;
  if (seq_off && (len > 0 || fin)) {
    // One path: the segment's SSN offset is its TSN offset (DESIGN.md, SSN allocation).
    const TxMapping& m =
        TxMappingFor(c, c.tx_maps, *seq_off, len, fin, p.payload(), *seq_off, /*initial=*/true);
    opt = MappingOption(c, m, data_ack);
  } else if (c.role == Role::kActive && !c.peer_dss_seen) {
    // Third ACK and every pure ACK until the peer's first DSS: MP_CAPABLE ACK with both keys
    // (RFC 8684 §3.1), so a lost third ACK is repaired by the next one.
    MpCapable mpc;
    mpc.form = MpCapable::Form::kAck;
    mpc.flags = MpcFlags(c);
    mpc.sender_key = c.local_key;
    mpc.receiver_key = c.remote_key;
    opt = mpc;
    counters_.Inc(Counter::kMpcAckTx);
  } else if (data_ack) {
    Dss dss;
    dss.data_ack = data_ack;
    opt = dss;
    counters_.Inc(Counter::kDssTx);
  } else {
    have_opt = false;
  }

  if (seq_off) {
    if (len > 0 && *seq_off + len > c.tx_high) {
      c.bytes_tx += *seq_off + len - std::max(c.tx_high, *seq_off);
      c.tx_high = *seq_off + len;
    }
    if (fin) {
      if (!c.tx_fin) counters_.Inc(Counter::kDataFinTx);
      c.tx_fin = *seq_off + len;
    }
    // The local FIN became a DATA_FIN: it takes a DSN but no subflow sequence number until the
    // forged subflow FIN is sent, so later segments move back by one on the subflow.
    if (c.tx_fin && *seq_off > *c.tx_fin && !c.tx_sfin_sent) p.tcp.seq -= 1;
  }
  p.tcp.flags = static_cast<uint8_t>(p.tcp.flags & ~tcp_flags::kFin);

  c.last_window = p.tcp.window;
  if (auto ts = p.options.Timestamps()) {
    packet::TimestampsOption t = c.last_ts.value_or(*ts);
    t.tsval = ts->tsval;
    c.last_ts = t;
  }

  p.options.RemoveAll(tcp_opt::kMptcp);
  if (have_opt && !AddMptcp(p.options, opt)) {
    // Make room (option space is 40 bytes, interop §1.7): padding NOPs first, then a 32-bit
    // DATA_ACK, then SACK blocks one by one. Timestamps are kept (PAWS, RTT).
    p.options.RemoveAll(tcp_opt::kNop);
    bool ok = AddMptcp(p.options, opt);
    if (!ok) {
      if (Dss* d = std::get_if<Dss>(&opt); d != nullptr && d->data_ack && d->data_ack->is64) {
        d->data_ack->is64 = false;
        d->data_ack->value &= 0xffffffffu;
        ok = AddMptcp(p.options, opt);
      }
    }
    while (!ok) {
      auto i = p.options.Find(tcp_opt::kSack);
      if (!i) break;
      std::array<packet::SackBlock, 4> blocks{};
      size_t n = p.options.SackBlocks(blocks);
      counters_.Inc(Counter::kSackDropped);
      p.options.RemoveAt(*i);
      // RFC 2018 §4: the first block reports the most recent data; keep the first ones.
      if (n > 1) (void)p.options.AddSack(std::span<const packet::SackBlock>(blocks.data(), n - 1));
      ok = AddMptcp(p.options, opt);
    }
    if (!ok) {
      counters_.Inc(Counter::kOptionSpace);
      out.verdict = packet::Verdict::kDrop;  // never send a converted flow's segment unmapped
      return;
    }
  }
  Emit(p, out);
}

// ---------------------------------------------------------------------------------------------
// Inbound: wire -> local TCP stack.

void Engine::OnInbound(Time now, TcpPacket& p, PacketOut& out, packet::Actions& actions) {
  const FourTuple key = p.tuple().Reversed();  // local -> remote
  if (!Selected(key)) {
    counters_.Inc(Counter::kNotSelected);
    return;
  }
  const SegmentOptions opts = ParseMptcp(p);
  for (size_t s = 0; s < opts.status_count.size(); ++s) {
    if (s != static_cast<size_t>(OptionStatus::kAccepted) && opts.status_count[s] > 0) {
      counters_.Inc(Counter::kOptionIgnored, opts.status_count[s]);
    }
  }
  const bool syn = p.tcp.has(tcp_flags::kSyn), ack = p.tcp.has(tcp_flags::kAck);
  if (syn && !ack) {
    InboundSyn(now, p, opts, out, actions);
    return;
  }
  if (!wire_.empty()) {
    // Join subflows have their own wire tuples (one hash lookup only once some exist).
    if (auto w = wire_.find(key); w != wire_.end()) {
      InboundJoin(now, *w->second.conn, *w->second.sf, p, opts, out, actions);
      return;
    }
  }
  Connection* found = Track(now, key);
  if (found == nullptr) return;
  Connection& c = *found;
  if (syn) {
    if (c.role == Role::kActive) InboundSynAck(now, c, p, opts, out);
    return;
  }
  if (!c.multi && !c.subflows.empty() && (opts.mp_prio || opts.remove_addr)) {
    // The peer steers between subflows (RFC 8684 §3.3.8, §3.4.2): that needs the multipath
    // state even if only the initial subflow carried data so far.
    MigrateToMulti(c);
  }
  if (c.multi) {
    InboundMulti(now, c, *c.subflows[0], p, opts, out, actions);
    if (conns_.contains(key)) MaybeCloseMulti(now, c);
    return;
  }
  if (c.state == ConnState::kSynSent) {
    if (p.tcp.has(tcp_flags::kRst) && p.tcp.ack == c.tx_isn + 1) {
      // Connection refused (or the listener rejects MPTCP): the local stack must see it at once.
      counters_.Inc(Counter::kHandshakeRst);
      Erase(c);
      return;
    }
    out.verdict = packet::Verdict::kDrop;  // not a valid reply to our SYN
    return;
  }
  if (c.state == ConnState::kSynReceived) {
    if (p.tcp.has(tcp_flags::kRst)) {
      counters_.Inc(Counter::kHandshakeRst);
      Erase(c);
      return;
    }
    // Third ACK of a passive open: MP_CAPABLE ACK (20) or MP_CAPABLE + data (22/24) carrying
    // both keys, ours echoed (RFC 8684 §3.1). Without it Linux falls back (MPCapableFallbackACK),
    // and so do we.
    if (!opts.mp_capable || !opts.mp_capable->is_ack_form()) {
      FallBack(c, Counter::kFallbackNoMpcAck);
      return;
    }
    if (opts.mp_capable->receiver_key != c.local_key) {
      counters_.Inc(Counter::kBadAckKeys);
      FallBack(c, Counter::kFallbackNoMpcAck);
      return;
    }
    c.remote_key = opts.mp_capable->sender_key;
    auto d = DeriveFromKey(c.remote_key);
    if (!d) {
      counters_.Inc(Counter::kKeyGenFailed);
      FallBack(c, Counter::kFallbackNoMpcAck);
      return;
    }
    c.remote_token = d->token;
    c.remote_idsn = d->idsn;
    c.remote_key_known = true;
    // The Linux server takes the client's A flag from this packet (interop §1.2).
    c.checksums = c.checksums || opts.mp_capable->checksum_required();
    c.state = ConnState::kEstablished;
    counters_.Inc(Counter::kConverted);
    c.handshake_rtt = now - c.created;  // SYN to third ACK: one round trip (and the accept)
    Schedule(c, now + config_.idle_timeout);
    // Both keys known and confirmed: our other addresses are announced from the timer, after
    // this segment's verdict (mptcp/announce.cc).
    c.announce = WantsAnnounce(c);
    if (c.announce) {
      c.announce_at = now;
      Schedule(c, now);
    }
  }
  InboundEstablished(now, c, p, opts, out, actions);
  if (conns_.contains(key)) MaybeClose(now, c);
}

void Engine::ClampMss(TcpPacket& p) {
  // The local stack sizes its segments from the MSS the peer announced; our options must still
  // fit after segmentation (architecture.md, NFQUEUE pitfall 2).
  if (auto mss = p.options.Mss(); mss && *mss > config_.mss_reduction + 64) {
    if (p.options.SetMss(static_cast<uint16_t>(*mss - config_.mss_reduction))) {
      counters_.Inc(Counter::kMssClamped);
    }
  }
}

void Engine::InboundSyn(Time now, TcpPacket& p, const SegmentOptions& opts, PacketOut& out,
                        packet::Actions& actions) {
  const FourTuple key = p.tuple().Reversed();
  if (opts.mp_join) {
    // A join (RFC 8684 §3.2, interop §2.2): answered by us, never handed to the local stack (it
    // would open a ghost connection).
    InboundJoinSyn(now, p, opts, out, actions);
    return;
  }
  if (!wire_.empty() && wire_.contains(key)) {
    // A plain or MP_CAPABLE SYN on a join's tuple: the local stack has no socket there (it would
    // answer with a RST on the join's tuple), and a connection under this key would be shadowed
    // by the join (wire_ is looked up first). Also for a closed join: its tuple is kept so that
    // late packets on it are dropped, not passed.
    counters_.Inc(Counter::kJoinTupleInUse);
    out.verdict = packet::Verdict::kDrop;
    return;
  }
  auto it = conns_.find(key);
  if (it != conns_.end() && it->second->role == Role::kPassive &&
      it->second->rx_isn == p.tcp.seq && it->second->state != ConnState::kSynReceived) {
    // A duplicate of the SYN that opened this connection: the local stack answers it with a
    // challenge ACK; the connection's state must survive it.
    counters_.Inc(Counter::kSynRetransmit);
    p.options.RemoveAll(tcp_opt::kMptcp);
    ClampMss(p);
    Emit(p, out);
    return;
  }
  if (!opts.mp_capable || opts.mp_capable->form != MpCapable::Form::kSyn) {
    counters_.Inc(Counter::kPassivePlainSyn);
    return;  // plain TCP client: untouched
  }
  Connection* c = nullptr;
  if (it != conns_.end() && it->second->role == Role::kPassive &&
      it->second->state == ConnState::kSynReceived && it->second->rx_isn == p.tcp.seq) {
    c = it->second.get();
    counters_.Inc(Counter::kSynRetransmit);
  } else {
    if (it != conns_.end()) Erase(*it->second);
    auto fresh = std::make_unique<Connection>();
    fresh->tuple = key;
    fresh->role = Role::kPassive;
    fresh->state = ConnState::kSynReceived;
    fresh->rx_isn = p.tcp.seq;
    fresh->created = fresh->last_activity = now;
    fresh->checksums = config_.checksums || opts.mp_capable->checksum_required();
    RecordPeerSyn(*fresh, p);
    if (!NewKey(*fresh)) {
      counters_.Inc(Counter::kKeyGenFailed);
      return;
    }
    c = fresh.get();
    conns_.emplace(key, std::move(fresh));
    Schedule(*c, now + config_.handshake_timeout);
    counters_.Inc(Counter::kPassiveOpen);
  }
  if (auto ts = p.options.Timestamps()) c->last_ts = packet::TimestampsOption{0, ts->tsval};
  p.options.RemoveAll(tcp_opt::kMptcp);
  ClampMss(p);
  Emit(p, out);
}

void Engine::InboundSynAck(Time now, Connection& c, TcpPacket& p, const SegmentOptions& opts,
                           PacketOut& out) {
  if (c.state == ConnState::kSynSent) {
    if (p.tcp.ack != c.tx_isn + 1) {
      out.verdict = packet::Verdict::kDrop;  // not an answer to our SYN
      return;
    }
    if (!opts.mp_capable || opts.mp_capable->form != MpCapable::Form::kSynAck) {
      FallBack(c, Counter::kFallbackNoMpcSynAck);  // peer is plain TCP (RFC 8684 §3.1)
      return;
    }
    auto d = DeriveFromKey(opts.mp_capable->sender_key);
    if (!d || opts.mp_capable->sender_key == 0) {
      counters_.Inc(Counter::kBadSynAckMpc);
      FallBack(c, Counter::kFallbackNoMpcSynAck);
      return;
    }
    c.remote_key = opts.mp_capable->sender_key;
    c.remote_token = d->token;
    c.remote_idsn = d->idsn;
    c.remote_key_known = true;
    c.checksums = config_.checksums || opts.mp_capable->checksum_required();
    c.rx_isn = p.tcp.seq;
    RecordPeerSyn(c, p);
    c.state = ConnState::kEstablished;
    counters_.Inc(Counter::kConverted);
    c.handshake_rtt = now - c.created;
    // Announcing (--announce always) waits for our third ACK (OnOutbound): before it the native
    // server has no connection an ADD_ADDR could belong to.
    c.announce = WantsAnnounce(c);
    Schedule(c, now + config_.idle_timeout);
  } else if (p.tcp.seq != c.rx_isn) {
    out.verdict = packet::Verdict::kDrop;  // a different SYN/ACK for an established flow
    return;
  }
  if (auto ts = p.options.Timestamps()) {
    packet::TimestampsOption t = c.last_ts.value_or(*ts);
    t.tsecr = ts->tsval;
    c.last_ts = t;
  }
  p.options.RemoveAll(tcp_opt::kMptcp);
  ClampMss(p);
  Emit(p, out);
}

void Engine::InboundEstablished(Time now, Connection& c, TcpPacket& p, const SegmentOptions& opts,
                                PacketOut& out, packet::Actions& actions) {
  const uint32_t len = static_cast<uint32_t>(p.payload_len);
  const bool rst = p.tcp.has(tcp_flags::kRst);
  const bool sfin = p.tcp.has(tcp_flags::kFin);
  const packet::TcpHeader wire = p.tcp;  // as received, for the keep-as-is check below
  const bool lone_dss = LoneDss(p, opts);
  bool deliver_fin = false;
  bool ack_advanced = false;

  if (rst && !(opts.mp_fastclose && opts.mp_fastclose->receiver_key == c.local_key)) {
    // RFC 5961 §3.2 before anything in the segment is used: a blind RST must guess the exact
    // subflow sequence number (it is delivered below at the local stack's rcv_nxt, which the
    // local stack would accept from anyone). An MP_FASTCLOSE with our key is authenticated by it.
    const uint8_t shift = c.local_ws && c.peer_ws ? c.local_wscale : 0;
    switch (CheckRst(p.tcp.seq, WireOf(c.rx_isn, c.rx_san), WireOf(c.rx_isn, c.rx_ssn_high),
                     uint32_t{c.last_window} << std::min<uint8_t>(shift, 14))) {
      case RstCheck::kAccept:
        break;
      case RstCheck::kChallenge: {
        counters_.Inc(Counter::kRstChallengeAck);
        const uint32_t seq = c.tx_fin && c.tx_sfin_sent ? WireOf(c.tx_isn, *c.tx_fin + 1)
                             : c.tx_fin                 ? WireOf(c.tx_isn, *c.tx_fin)
                                                        : WireOf(c.tx_isn, c.tx_high);
        if (auto pkt = Forge(c, seq, tcp_flags::kAck)) {
          actions.forged.push_back(packet::ForgedPacket{std::move(*pkt), 0});
        }
        out.verdict = packet::Verdict::kDrop;
        return;
      }
      case RstCheck::kDrop:
        counters_.Inc(Counter::kRstBadSeq);
        out.verdict = packet::Verdict::kDrop;
        return;
    }
  }

  if (auto ts = p.options.Timestamps()) {
    packet::TimestampsOption t = c.last_ts.value_or(*ts);
    t.tsecr = ts->tsval;
    c.last_ts = t;
  }

  // The peer fell back to plain TCP (RFC 8684 §3.7): an infinite mapping, MP_FAIL, or data with no
  // MPTCP option at all. On the initial subflow TSN == SSN, so while the peer never reinjected the
  // flow continues as plain TCP; otherwise the sequence spaces differ and it cannot.
  const bool infinite = opts.dss && opts.dss->mapping && opts.dss->mapping->infinite();
  const bool silent = len > 0 && !opts.dss && !opts.mp_capable && !rst;
  if (opts.mp_fail) counters_.Inc(Counter::kMpFailRx);
  if (infinite || silent || opts.mp_fail) {
    if (!RxIdentity(c)) {
      counters_.Inc(Counter::kFallbackImpossible);
      out.verdict = packet::Verdict::kDrop;
      return;
    }
    FallBack(c, infinite       ? Counter::kFallbackInfiniteMap
                : opts.mp_fail ? Counter::kFallbackMpFail
                               : Counter::kFallbackPeerNoDss);
    p.options.RemoveAll(tcp_opt::kMptcp);
    Emit(p, out);
    return;
  }

  // MP_FASTCLOSE is honoured only with our own key (interop §1.6, Linux checks
  // msk->local_key == rcvr_key); it resets the connection.
  bool fastclose = false;
  if (opts.add_addr && !rst && c.remote_key_known) OnAddAddr(c, nullptr, *opts.add_addr, actions);
  if (opts.mp_fastclose) {
    if (opts.mp_fastclose->receiver_key == c.local_key) {
      counters_.Inc(Counter::kFastcloseRx);
      fastclose = true;
    } else {
      counters_.Inc(Counter::kFastcloseBadKey);
    }
  }

  // The third ACK repeated, or MP_CAPABLE + data: an implicit mapping DSN = IDSN + 1, SSN 1
  // (interop §1.2, Linux mpc_map).
  if (opts.mp_capable && opts.mp_capable->is_ack_form()) {
    if (opts.mp_capable->form != MpCapable::Form::kAck && opts.mp_capable->data_len > 0) {
      if (c.recv.Insert(0, 0, opts.mp_capable->data_len) == InsertResult::kConflict) {
        counters_.Inc(Counter::kMappingConflict);
      }
    }
  }

  const Dss* dss = opts.dss ? &*opts.dss : nullptr;
  if (dss != nullptr) counters_.Inc(Counter::kDssRx);
  // Where the segment sits in the peer's subflow stream (an offset, widened near the highest seen).
  const std::optional<uint64_t> seg_off = OffsetOf(p.tcp.seq, c.rx_isn, c.rx_ssn_high);
  // The DATA_ACK of this packet as a tx offset, if it is usable.
  std::optional<uint64_t> pkt_dan;
  if (dss != nullptr && dss->data_ack) {
    if (c.role == Role::kActive) c.peer_dss_seen = true;
    const DataSeq base(c.local_idsn + 1);
    const DataSeq dan = dss->data_ack->is64
                            ? DataSeq(dss->data_ack->value)
                            : packet::Expand32(base + c.tx_acked,
                                               static_cast<uint32_t>(dss->data_ack->value));
    const int64_t off = dan - base;
    const uint64_t sent = c.tx_high + (c.tx_fin ? 1 : 0);
    if (off >= 0 && static_cast<uint64_t>(off) > sent) {
      counters_.Inc(Counter::kDataAckBeyondSent);  // ignored, like Linux
    } else if (off >= 0) {
      pkt_dan = static_cast<uint64_t>(off);
      if (*pkt_dan > c.tx_acked) {
        c.tx_acked = *pkt_dan;
        ack_advanced = true;
      }
    }
  } else if (!rst) {
    counters_.Inc(Counter::kNoDataAck);
  }

  // The peer's mapping goes into the RECV table (seed §3.3).
  if (dss != nullptr && dss->mapping &&
      !TakePeerMapping(c, *dss, p, seg_off, c.rx_ssn_high, c.recv, c.rx_shifted)) {
    out.verdict = packet::Verdict::kDrop;
    return;
  }

  // The local stack's next expected byte, as far as we know it.
  const uint64_t rcv_nxt = std::max(c.rx_dan, c.rx_dsn_high + (c.rx_fin_delivered ? 1 : 0));
  if (fastclose || rst) {
    // Deliver a RST the local stack accepts: RFC 5961 wants seq == rcv_nxt.
    counters_.Inc(Counter::kRstRx);
    p.tcp.flags = tcp_flags::kRst | tcp_flags::kAck;
    p.tcp.seq = WireOf(c.rx_isn, rcv_nxt);
    p.tcp.ack = WireOf(c.tx_isn, c.tx_acked);
    p.options.RemoveAll(tcp_opt::kMptcp);
    Close(now, c);
    Emit(p, out);
    return;
  }

  // Data: SSN -> DSN through the RECV table -> TSN (seed §3.3).
  if (len > 0) {
    const std::optional<uint64_t> mapped = MapToTsn(c.recv, seg_off, len, c.rx_san);
    if (!mapped) {
      out.verdict = packet::Verdict::kDrop;
      return;
    }
    const uint64_t tsn_off = *mapped;
    p.tcp.seq = WireOf(c.rx_isn, tsn_off);
    c.rx_ssn_high = std::max(c.rx_ssn_high, *seg_off + len);
    if (tsn_off + len > c.rx_dsn_high) {
      c.bytes_rx += tsn_off + len - std::max(c.rx_dsn_high, tsn_off);
      c.rx_dsn_high = tsn_off + len;
    }
    if (c.rx_data_fin && tsn_off + len == *c.rx_data_fin) deliver_fin = true;
  } else if (dss != nullptr && dss->data_fin && c.rx_data_fin) {
    // DATA_FIN on an empty segment: a TCP FIN at the DATA_FIN's position (seed §3.1).
    p.tcp.seq = WireOf(c.rx_isn, *c.rx_data_fin);
    deliver_fin = true;
  } else if (seg_off) {
    // Empty segment: keep its position relative to the stream head (a keepalive probe sits one
    // below), moved from subflow to TSN space. The two differ after a reinjection, and by the FINs:
    // the DATA_FIN took a TSN (the local stack's FIN) but no SSN, the peer's subflow FIN an SSN
    // but no TSN. Off by one, the local stack sees rcv_nxt - 1, out of window: it drops the segment
    // unread, ACK included (TCPACKSkippedSeq), and a half-closed upload stalls.
    const uint64_t pos = *seg_off - (c.rx_sfin && *seg_off > *c.rx_sfin ? 1 : 0);
    const int64_t delta = static_cast<int64_t>(pos - c.rx_ssn_high);
    p.tcp.seq = WireOf(c.rx_isn, c.rx_dsn_high + static_cast<uint64_t>(delta) +
                                     (c.rx_fin_delivered ? 1 : 0));
  }

  // The peer's subflow FIN (RFC 8684 §3.3.3: it follows the DATA_FIN exchange). It closes only the
  // subflow; the local stack saw the connection's FIN when the DATA_FIN arrived.
  bool sfin_only = false;
  if (sfin && seg_off) {
    const uint64_t at = *seg_off + len;
    if (!c.rx_sfin) counters_.Inc(Counter::kSubflowFinRx);
    c.rx_sfin = at;
    sfin_only = (len == 0 && !deliver_fin);
  }
  if (deliver_fin) {
    p.tcp.flags = static_cast<uint8_t>(p.tcp.flags | tcp_flags::kFin);
    c.rx_fin_delivered = true;
  } else {
    p.tcp.flags = static_cast<uint8_t>(p.tcp.flags & ~tcp_flags::kFin);
  }

  // The local stack's ACK number comes from the DATA_ACK (seed §3.4; RFC 8684 §3.3.2). A reordered
  // older DATA_ACK is delivered as the old ACK it is: its window is relative to it, and moving it
  // to the newest ACK would stretch the peer's window (Linux then drops data: NoDSSInWindow).
  const uint32_t wire_ack = p.tcp.ack;
  if (pkt_dan && *pkt_dan < c.tx_acked) counters_.Inc(Counter::kStaleDataAck);
  if (pkt_dan || c.peer_dss_seen || c.tx_acked > 0 || c.role == Role::kPassive) {
    p.tcp.ack = WireOf(c.tx_isn, pkt_dan.value_or(c.tx_acked));
  }
  // Our forged subflow FIN is acknowledged by the subflow ACK (the local stack never saw it).
  if (c.tx_sfin_sent && !c.tx_sfin_acked && c.tx_fin &&
      !packet::Before(packet::SubflowSeq(wire_ack),
                      packet::SubflowSeq(WireOf(c.tx_isn, *c.tx_fin + 1)))) {
    c.tx_sfin_acked = true;
  }
  if (c.tx_fin && c.tx_acked > *c.tx_fin && !c.tx_fin_acked) {
    c.tx_fin_acked = true;
    SendSubflowFin(now, c, actions);
  }
  p.options.RemoveAll(tcp_opt::kMptcp);

  if (sfin_only && !ack_advanced) {
    // Nothing for the local stack; acknowledge the subflow FIN ourselves once the DATA_FIN it
    // follows is acknowledged (otherwise the next local ACK carries it).
    if (c.rx_data_fin && c.rx_dan > *c.rx_data_fin) SendSubflowAck(c, actions);
    out.verdict = packet::Verdict::kDrop;
  } else if (len == 0 && !deliver_fin && !ack_advanced && c.tx_fin_acked) {
    // After its FIN is acknowledged the local stack needs only the peer's data and FIN. An empty
    // segment with no news (typically the ACK of our forged subflow FIN) may reach a socket that
    // is already closed, which answers with a RST.
    counters_.Inc(Counter::kSubflowOnlyConsumed);
    out.verdict = packet::Verdict::kDrop;
  } else if (len == 0 && !deliver_fin && !ack_advanced &&
             (opts.add_addr || opts.remove_addr || opts.mp_prio)) {
    // Signalling carried on a duplicate ACK is for us, not for the local stack (seed §3.1): passing
    // it would look like a duplicate ACK and could trigger a fast retransmit.
    counters_.Inc(Counter::kSignalConsumed);
    out.verdict = packet::Verdict::kDrop;
  } else {
    if (sfin_only && c.rx_data_fin && c.rx_dan > *c.rx_data_fin) SendSubflowAck(c, actions);
    if (lone_dss && wire.seq == p.tcp.seq && wire.ack == p.tcp.ack &&
        wire.flags == p.tcp.flags && wire.window == p.tcp.window) {
      // On a single path with SSN == TSN and DATA_ACK == subflow ACK the translation changes
      // nothing the local stack reads: leaving the packet as it is spares the kernel a copy of it
      // (architecture.md, verdict payloads) and keeps its CHECKSUM_PARTIAL. The DSS left in it is
      // an unknown option kind to a plain TCP socket, which skips it (RFC 9293 §3.1).
      counters_.Inc(Counter::kInboundKeptDss);
      out.Reset();
    } else {
      Emit(p, out);
    }
  }
}

Engine::RstCheck Engine::CheckRst(uint32_t seq, uint32_t rcv_nxt, uint32_t rcv_high,
                                  uint32_t window) {
  if (seq == rcv_nxt || seq == rcv_high) return RstCheck::kAccept;
  // In window as Linux's tcp_sequence() sees a RST: rcv_nxt < seq <= rcv_nxt + window.
  return seq - rcv_nxt <= window ? RstCheck::kChallenge : RstCheck::kDrop;
}

bool Engine::MappingForSegment(uint32_t len, std::optional<uint64_t> seg_off, uint64_t ssn_off,
                               uint32_t data_bytes) {
  // Linux uses a DSS mapping only for the skb it arrived on, which it must cover
  // (get_mapping_status(): DSSNoMatchTCP otherwise, interop §1.4); one on an empty segment maps
  // nothing (only its DATA_FIN counts). Recording such mappings would let every empty segment
  // add a table entry that stays until acknowledged.
  if (len > 0 && seg_off && *seg_off >= ssn_off && *seg_off - ssn_off < data_bytes) return true;
  counters_.Inc(Counter::kMappingNotOwn);
  return false;
}

void Engine::CapRecvTable(MappingTable& t) {
  // Entries are pieces between holes of the receive window, normally a handful. Past the cap the
  // farthest go first (like a receiver pruning its out-of-order queue): their data is dropped
  // (MpNoMapping) and retransmitted with its mapping; the ones that fill holes stay.
  while (t.size() > kMaxRecvMappings) {
    t.DropLast();
    counters_.Inc(Counter::kRecvTableFull);
  }
}

std::optional<uint64_t> Engine::MapToTsn(const MappingTable& recv, std::optional<uint64_t> seg_off,
                                         uint32_t len, uint64_t rx_san) {
  const MapEntry* e = seg_off ? recv.Find(*seg_off) : nullptr;
  if (e == nullptr) {
    // (Entirely below what we acknowledged: a spurious retransmission the local stack has.)
    if (!(seg_off && *seg_off + len <= rx_san)) counters_.Inc(Counter::kNoMapping);
    return std::nullopt;
  }
  if (*seg_off + len > e->src_end()) {
    counters_.Inc(Counter::kSpansMappings);
    return std::nullopt;
  }
  return e->dst + (*seg_off - e->src);
}

bool Engine::TakePeerMapping(Connection& c, const Dss& dss, const TcpPacket& p,
                             std::optional<uint64_t> seg_off, uint64_t rx_ssn_high,
                             MappingTable& recv, bool& rx_shifted) {
  const uint32_t len = static_cast<uint32_t>(p.payload_len);
  const DssMapping& m = *dss.mapping;
  const DataSeq base(c.remote_idsn + 1);
  const DataSeq dsn = m.dsn64 ? DataSeq(m.dsn)
                              : packet::Expand32(base + c.rx_dsn_high, static_cast<uint32_t>(m.dsn));
  const int64_t dsn_off = dsn - base;
  if (dsn_off < 0) return true;
  const uint32_t data_bytes = m.data_len - (dss.data_fin ? 1u : 0u);
  // The relative SSN is 32 bits on the wire; the table is keyed by 64-bit offsets.
  const uint64_t ssn_off = packet::Expand32(DataSeq(rx_ssn_high), m.ssn - 1u).value();
  if (dss.data_fin) {
    if (!c.rx_data_fin) counters_.Inc(Counter::kDataFinRx);
    c.rx_data_fin = static_cast<uint64_t>(dsn_off) + data_bytes;
  }
  if (data_bytes > 0 && m.ssn > 0 && MappingForSegment(len, seg_off, ssn_off, data_bytes)) {
    switch (recv.Insert(ssn_off, static_cast<uint64_t>(dsn_off), data_bytes)) {
      case InsertResult::kInserted:
        counters_.Inc(Counter::kMappingRx);
        if (ssn_off != static_cast<uint64_t>(dsn_off)) rx_shifted = true;
        CapRecvTable(recv);
        break;
      case InsertResult::kDuplicate: break;
      case InsertResult::kConflict:
        // A mapping may not change for bytes already mapped (Linux DSSNotMatching). Passing the
        // segment could deliver bytes at the wrong place: drop it.
        counters_.Inc(Counter::kMappingConflict);
        return false;
    }
  }
  if (c.checksums && len > 0) {
    if (!m.checksum) {
      counters_.Inc(Counter::kCsumMissing);
      return false;
    }
    if (seg_off && *seg_off == ssn_off && data_bytes == len) {
      if (!DssChecksumValid(dsn, m.ssn, m.data_len, *m.checksum,
                            packet::checksum::Sum(p.payload()))) {
        counters_.Inc(Counter::kCsumBad);
        return false;
      }
    } else {
      counters_.Inc(Counter::kCsumUnverified);
    }
  }
  return true;
}

bool Engine::LoneDss(const TcpPacket& p, const SegmentOptions& opts) {
  // Only a lone, accepted DSS may stay in a packet for the local stack: every other MPTCP option
  // (MP_CAPABLE with data, signalling, MP_FAIL, FASTCLOSE) is acted on or must not reach it.
  size_t kind30 = 0;
  for (size_t i = 0; i < p.options.size(); ++i) {
    if (p.options[i].kind == tcp_opt::kMptcp) ++kind30;
  }
  return kind30 == 1 && opts.dss && !opts.mp_capable && !opts.mp_join && !opts.add_addr &&
         !opts.remove_addr && !opts.mp_prio && !opts.mp_fail && !opts.mp_fastclose &&
         !opts.mp_tcprst;
}

void Engine::MaybeClose(Time now, Connection& c) {
  // Both directions are done once our subflow FIN is acknowledged and we acknowledged the peer's.
  if (c.state == ConnState::kEstablished && c.tx_sfin_acked && c.rx_sfin && c.rx_san > *c.rx_sfin) {
    Close(now, c);
  }
}

// ---------------------------------------------------------------------------------------------
// Forged segments.

std::optional<std::vector<uint8_t>> Engine::Forge(const Connection& c, uint32_t seq, uint8_t flags,
                                                  const Option* extra, bool data_ack) {
  packet::TcpHeader h;
  h.sport = c.tuple.sport;
  h.dport = c.tuple.dport;
  h.seq = seq;
  h.ack = WireOf(c.rx_isn, c.rx_san);
  h.flags = flags;
  h.window = c.last_window;
  packet::TcpOptionList opts;
  if (c.last_ts) {
    (void)opts.AddNop();
    (void)opts.AddNop();
    (void)opts.AddTimestamps(*c.last_ts);
  }
  Dss dss;
  dss.data_ack = DssDataAck{c.remote_idsn + 1 + c.rx_dan, true};
  if (extra != nullptr && opts.byte_size() + EncodedLength(dss) + EncodedLength(*extra) > 40) {
    // An IPv6 ADD_ADDR echo (20 bytes) next to timestamps fits only with a 32-bit DATA_ACK.
    dss.data_ack = DssDataAck{(c.remote_idsn + 1 + c.rx_dan) & 0xffffffffu, false};
  }
  if (data_ack) (void)AddMptcp(opts, dss);
  if (extra != nullptr && !AddMptcp(opts, *extra)) counters_.Inc(Counter::kOptionSpace);
  auto pkt = packet::BuildTcpPacket(c.tuple, h, opts, packet::Bytes{}, c.ttl);
  if (!pkt) {
    counters_.Inc(Counter::kForgeError);
    return std::nullopt;
  }
  return std::move(pkt.value());
}

void Engine::SendSubflowFin(Time now, Connection& c, packet::Actions& actions) {
  // RFC 8684 §3.3.3: once the DATA_FIN is acknowledged the subflow closes with a plain FIN. The
  // local stack's FIN became the DATA_FIN, so the subflow FIN is ours to send and retransmit.
  if (!c.tx_fin || c.tx_sfin_acked) return;
  if (auto pkt = Forge(c, WireOf(c.tx_isn, *c.tx_fin), tcp_flags::kFin | tcp_flags::kAck)) {
    actions.forged.push_back(packet::ForgedPacket{std::move(*pkt), 0});
    counters_.Inc(c.tx_sfin_sent ? Counter::kSubflowFinRetransmit : Counter::kSubflowFinTx);
  }
  if (!c.tx_sfin_sent) {
    // Joins that never carried data (the fast path still runs) close with the initial subflow.
    for (auto& sf : c.subflows) {
      if (sf->state == SubflowState::kEstablished && !sf->gone) SendFinOn(now, c, *sf, actions);
    }
  }
  c.tx_sfin_sent = true;
  const auto backoff = config_.fin_rto * (1 << std::min(c.tx_sfin_tries, 10));
  ++c.tx_sfin_tries;
  c.tx_sfin_due = now + backoff;
  Schedule(c, std::min(c.tx_sfin_due, c.last_activity + config_.idle_timeout));
}

void Engine::OnAddAddr(Connection& c, Subflow* sf, const AddAddr& a, packet::Actions& actions) {
  if (a.echo) {
    OnAddAddrEcho(c, a);  // stops the retransmission of ours (mptcp/announce.cc)
    return;
  }
  // Interop §1.5: HMAC(Key-sender || Key-receiver, ID || address || port (0 when absent)), last
  // 8 bytes; the sender is the peer.
  if (!AddAddrHmacValid(c.remote_key, c.local_key, a.address_id, a.address.bytes(),
                        a.port.value_or(0), a.hmac)) {
    counters_.Inc(Counter::kAddAddrBadHmac);  // Linux ignores it silently (no echo)
    return;
  }
  counters_.Inc(Counter::kAddAddrRx);
  // RFC 8684 §3.4.1: the receiver echoes it (E=1, no HMAC) or the peer retransmits it; Linux
  // sends it on a pure ACK and accepts the echo next to a DSS DATA_ACK (interop §1.5). The
  // address is not used for joins: the proxy decides where subflows go (seed §5).
  AddAddr echo = a;
  echo.echo = true;
  echo.hmac = 0;
  if (sf != nullptr) {
    bool ok = false;
    if (EncodedLength(Option{echo}) > 8 && sf->ts) {
      // IPv6 next to timestamps: a 32-bit DATA_ACK leaves room (10 + 8 + 20 bytes).
      Dss dss;
      dss.data_ack = DssDataAck{(c.remote_idsn + 1 + c.rx_dan) & 0xffffffffu, false};
      ok = ForgeOn(c, *sf, tcp_flags::kAck,
                   WireOf(sf->tx_isn, sf->tx_ssn_next + (sf->sfin_sent ? 1 : 0)), {dss, echo},
                   actions, /*with_data_ack=*/false);
    } else {
      ok = ForgeOn(c, *sf, tcp_flags::kAck,
                   WireOf(sf->tx_isn, sf->tx_ssn_next + (sf->sfin_sent ? 1 : 0)), {echo}, actions);
    }
    if (ok) counters_.Inc(Counter::kAddAddrEchoTx);
    return;
  }
  const uint32_t seq = InitialSndNxt(c);
  const Option opt{echo};
  if (auto pkt = Forge(c, seq, tcp_flags::kAck, &opt)) {
    actions.forged.push_back(packet::ForgedPacket{std::move(*pkt), 0});
    counters_.Inc(Counter::kAddAddrEchoTx);
  }
}

void Engine::SendSubflowAck(Connection& c, packet::Actions& actions) {
  if (!c.rx_sfin) return;
  c.rx_san = std::max(c.rx_san, *c.rx_sfin + 1);
  if (auto pkt = Forge(c, InitialSndNxt(c), tcp_flags::kAck)) {
    actions.forged.push_back(packet::ForgedPacket{std::move(*pkt), 0});
    counters_.Inc(Counter::kSubflowAckTx);
  }
}

// ---------------------------------------------------------------------------------------------
// Lifecycle and timers.

bool Engine::Emit(TcpPacket& p, PacketOut& out) {
  if (auto r = packet::EmitTcpPacket(p, out); !r) {
    // A converted flow's segment that cannot be rewritten must not reach the other side
    // untranslated (architecture.md pitfall 8).
    counters_.Inc(Counter::kEmitError);
    out.verdict = packet::Verdict::kDrop;
    return false;
  }
  return true;
}

void Engine::FallBack(Connection& c, Counter why) {
  counters_.Inc(why);
  // Sequence numbers are identical on the initial subflow, so a fallen-back flow needs no state:
  // forget it and let its packets pass untouched (counted as kNoConnection from now on).
  Erase(c);
}

void Engine::Close(Time now, Connection& c) {
  if (c.state == ConnState::kClosed) return;
  c.state = ConnState::kClosed;
  counters_.Inc(Counter::kClosed);
  Schedule(c, now + config_.close_linger);
}

void Engine::Schedule(Connection& c, Time when) {
  timers_.erase({c.deadline, &c});
  c.deadline = when;
  timers_.insert({when, &c});
}

void Engine::Erase(Connection& c) {
  timers_.erase({c.deadline, &c});
  FreeSubflows(c);
  local_tokens_.erase(c.local_token);
  counters_.Inc(Counter::kFreed);
  conns_.erase(c.tuple);  // destroys c
}

std::optional<Time> Engine::NextTimeout() const {
  if (timers_.empty()) return std::nullopt;
  return timers_.begin()->first;
}

void Engine::OnTimer(Time now, packet::Actions& actions) {
  clock_ = now;
  while (!timers_.empty() && timers_.begin()->first <= now) {
    Connection& c = *timers_.begin()->second;
    switch (c.state) {
      case ConnState::kSynSent:
      case ConnState::kSynReceived:
        counters_.Inc(Counter::kTimeoutHandshake);
        Erase(c);
        break;
      case ConnState::kFallback:
      case ConnState::kClosed:
        Erase(c);
        break;
      case ConnState::kEstablished:
        if (c.multi) {
          MultiTimer(now, c, actions);
          break;
        }
        JoinTimers(now, c, actions);
        AnnounceTimers(now, c, actions);
        if (c.tx_sfin_sent && !c.tx_sfin_acked && now >= c.tx_sfin_due) {
          if (c.tx_sfin_tries >= config_.fin_retries) {
            counters_.Inc(Counter::kTimeoutFin);
            Close(now, c);
          } else {
            SendSubflowFin(now, c, actions);
          }
        } else if (now - c.last_activity >= config_.idle_timeout) {
          counters_.Inc(Counter::kTimeoutIdle);
          Erase(c);
        } else {
          Time next = c.last_activity + config_.idle_timeout;
          if (c.tx_sfin_sent && !c.tx_sfin_acked) next = std::min(next, c.tx_sfin_due);
          if (auto due = SubflowDue(c)) next = std::min(next, *due);
          Schedule(c, next);
        }
        break;
    }
  }
}

}  // namespace mproxy::mptcp
