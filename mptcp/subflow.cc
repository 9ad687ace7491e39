// Join subflows and the multipath data path of the engine (RFC 8684 §3.2, §3.3; seed §3.2-§3.5;
// mptcp/DESIGN.md "Subflows"). The single-path code in engine.cc stays the fast path while only
// the initial subflow carries data; from MigrateToMulti() on every packet of the connection comes
// here.
#include <algorithm>
#include <array>
#include <limits>
#include <span>

#include "mptcp/crypto.h"
#include "mptcp/engine.h"
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

namespace {

// Retransmissions a non-active subflow gets without its subflow ACK moving before the ones after
// them go to the active subflow (the local stack's RTO backs off: 2 means ~3 RTOs of silence).
constexpr int kStaleRetransmissions = 2;
// A local segment further ahead than this is not given reserved SSN space for the bytes before
// it (seed §3.3): the local stack never has more than its send window in flight.
constexpr uint64_t kMaxReservedGap = uint64_t{16} << 20;
// How often MP_PRIO backup is repeated while data keeps arriving on a subflow we marked backup.
constexpr std::chrono::milliseconds kPrioRepeat{100};

bool SetTimestamps(packet::TcpOptionList& opts, packet::TimestampsOption ts) {
  auto i = opts.Find(tcp_opt::kTimestamps);
  if (!i) return false;
  std::array<uint8_t, 8> b{};
  for (int k = 0; k < 4; ++k) {
    b[k] = static_cast<uint8_t>(ts.tsval >> (24 - 8 * k));
    b[4 + k] = static_cast<uint8_t>(ts.tsecr >> (24 - 8 * k));
  }
  return opts.OverwriteData(*i, b);
}

// Records that [begin, end) (SSN offsets) of `sf` reached the local stack: the subflow ACK covers
// what arrived in order on this subflow; what lies above a hole is kept for SACK blocks and for
// routing duplicate ACKs (seed §3.4). Returns false when the segment lay above a hole.
constexpr size_t kMaxOooRanges = 16;  // more holes than this on one subflow: remember fewer

void AbsorbOoo(Subflow& sf) {
  auto& v = sf.rx_ooo;
  size_t i = 0;
  while (i < v.size() && v[i].first <= sf.rx_san) {
    sf.rx_san = std::max(sf.rx_san, v[i].second);
    ++i;
  }
  if (i > 0) v.erase(v.begin(), v.begin() + static_cast<long>(i));
}

bool NoteReceived(Subflow& sf, uint64_t begin, uint64_t end) {
  if (begin <= sf.rx_san) {
    sf.rx_san = std::max(sf.rx_san, end);
    AbsorbOoo(sf);
    return true;
  }
  auto& v = sf.rx_ooo;
  auto it = std::lower_bound(v.begin(), v.end(), std::make_pair(begin, uint64_t{0}));
  // Merge with the neighbours it touches or overlaps.
  if (it != v.begin() && std::prev(it)->second >= begin) --it;
  uint64_t b = begin, e = end;
  auto last = it;
  while (last != v.end() && last->first <= e) {
    b = std::min(b, last->first);
    e = std::max(e, last->second);
    ++last;
  }
  it = v.erase(it, last);
  v.insert(it, {b, e});
  if (v.size() > kMaxOooRanges) v.pop_back();  // forgetting a range only acknowledges less
  return false;
}

// Appends this subflow's own SACK blocks (RFC 2018, in its SSN space), highest range first (the
// most recent arrival, RFC 2018 §4, in the usual case of a hole below a run), as many as fit.
// Returns the number of blocks written (0 also when there is nothing to report).
size_t AddSubflowSack(packet::TcpOptionList& opts, const Subflow& sf) {
  if (!sf.sack || sf.rx_ooo.empty()) return 0;
  std::array<packet::SackBlock, 4> b{};
  size_t n = 0;
  for (auto it = sf.rx_ooo.rbegin(); it != sf.rx_ooo.rend() && n < b.size(); ++it) {
    b[n++] = packet::SackBlock{WireOf(sf.rx_isn, it->first), WireOf(sf.rx_isn, it->second)};
  }
  // Next to timestamps and a DSS DATA_ACK two blocks fit only without the padding NOPs (10 + 12
  // + 18 = 40 bytes): drop those before dropping a block (older holes matter for the sender's
  // scoreboard, RFC 2018 §4).
  for (; n > 0; --n) {
    if (opts.AddSack(std::span<const packet::SackBlock>(b.data(), n))) return n;
    opts.RemoveAll(tcp_opt::kNop);
    if (opts.AddSack(std::span<const packet::SackBlock>(b.data(), n))) return n;
  }
  return 0;
}

bool Alive(const Subflow& sf) {
  return sf.state == SubflowState::kEstablished || sf.state == SubflowState::kClosing;
}

bool InHandshake(const Subflow& sf) {
  return sf.state == SubflowState::kSynSent || sf.state == SubflowState::kPreEstablished ||
         sf.state == SubflowState::kSynReceived;
}

// Subflows that hold state the peer can still use, the initial one included.
size_t LiveSubflows(const Connection& c) {
  size_t n = c.multi ? 0 : 1;
  for (const auto& sf : c.subflows) n += sf->state != SubflowState::kClosed ? 1 : 0;
  return n;
}

bool HasAddress(const LocalInterface& i, const packet::IpAddress& a) {
  return std::find(i.addresses.begin(), i.addresses.end(), a) != i.addresses.end();
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Bookkeeping.

void Engine::RecordLocalSyn(Connection& c, const TcpPacket& p) {
  // Join subflows copy what the local stack negotiated: its segments and window fields move onto
  // them unchanged (RFC 7323 §2.2: the window field is scaled by the sender's announced shift).
  c.local_mss = p.options.Mss().value_or(0);
  const auto ws = p.options.WindowScale();
  c.local_ws = ws.has_value();
  c.local_wscale = ws.value_or(0);
  c.local_ts = p.options.Timestamps().has_value();
  c.local_sack = p.options.SackPermitted();
  c.syn_window = p.tcp.window;
  c.ttl = c.ttl == 0 ? 64 : c.ttl;
}

void Engine::RecordPeerSyn(Connection& c, const TcpPacket& p) {
  const auto ws = p.options.WindowScale();
  c.peer_ws = ws.has_value();
  c.peer_wscale = ws.value_or(0);
  c.peer_ts = p.options.Timestamps().has_value();
  c.peer_sack = p.options.SackPermitted();
}

void Engine::MigrateToMulti(Connection& c) {
  if (c.multi) return;
  // The initial subflow's state moves out of the connection into subflows[0] (mptcp/DESIGN.md):
  // from now on its SSNs are allocated through the SEND table like any other subflow's. Up to
  // here SSN == TSN on it, which is the SEND table entry [acked, tx_high) -> same offsets.
  auto init = std::make_unique<Subflow>();
  Subflow& s = *init;
  s.id = 0;
  s.initial = true;
  s.tuple = c.tuple;
  s.local_id = 0;
  s.remote_id = 0;
  s.state = SubflowState::kEstablished;
  s.joiner = c.role == Role::kActive;
  s.tx_isn = c.tx_isn;
  s.tx_ssn_next = c.tx_high;
  s.tx_san = c.tx_acked;  // (at least: its subflow ACK is never behind the DATA_ACK on one path)
  s.tx_maps = std::move(c.tx_maps);
  s.sfin_sent = c.tx_sfin_sent;
  s.sfin_acked = c.tx_sfin_acked;
  s.sfin_tries = c.tx_sfin_tries;
  if (c.tx_sfin_sent && !c.tx_sfin_acked) s.due = c.tx_sfin_due;
  s.rx_isn = c.rx_isn;
  s.recv = std::move(c.recv);
  s.rx_ssn_high = c.rx_ssn_high;
  s.rx_san = s.rx_san_sent = c.rx_san;
  s.rx_sfin = c.rx_sfin;
  s.rx_shifted = c.rx_shifted;
  s.ws = c.local_ws && c.peer_ws;
  s.peer_wscale = s.ws ? c.peer_wscale : 0;
  s.ts = c.local_ts && c.peer_ts;
  // The local stack negotiated SACK on the initial subflow; from now on the engine writes its
  // SACK blocks there itself, in SSN space (the stack's are in TSN space and are stripped).
  s.sack = c.local_sack && c.peer_sack;
  s.ts_recent = c.last_ts ? c.last_ts->tsecr : 0;
  s.ts_offset = 0;  // the local stack already knows this subflow's timestamps
  s.ts_offset_set = true;
  s.ttl = c.ttl;
  // Forged packets of the initial subflow leave by its interface once there are several (the
  // default route may point elsewhere after a handover).
  if (const LocalInterface* i = InterfaceOf(c.tuple.src)) s.ifindex = i->ifindex;
  s.bytes_tx = c.bytes_tx;
  s.bytes_rx = c.bytes_rx;
  if (c.tx_high > c.tx_acked) c.send.Assign(c.tx_acked, c.tx_acked, c.tx_high - c.tx_acked, 0);
  if (c.last_ts) {
    c.rx_ts_high = c.last_ts->tsecr;
    c.rx_ts_set = true;
  }
  Subflow* raw = init.get();
  // (push_back + rotate rather than insert at begin: g++ 12 -Wnull-dereference false positive.)
  c.subflows.push_back(std::move(init));
  std::rotate(c.subflows.begin(), c.subflows.end() - 1, c.subflows.end());
  c.active = raw;
  c.multi = true;
}

Subflow* Engine::SubflowById(Connection& c, uint32_t id) {
  for (auto& sf : c.subflows) {
    if (sf->id == id) return sf.get();
  }
  return nullptr;
}

void Engine::SelectActive(Connection& c) {
  // Our own priorities first (we are the one that decides handovers, seed §5.3), then the peer's
  // MP_PRIO (RFC 8684 §3.3.8), then stay where we are.
  Subflow* best = nullptr;
  int best_score = -1;
  for (auto& p : c.subflows) {
    Subflow& sf = *p;
    if (!sf.usable()) continue;
    const int score = (sf.backup_local ? 0 : 4) + (sf.backup_remote ? 0 : 2) + (&sf == c.active);
    if (score > best_score) {
      best = &sf;
      best_score = score;
    }
  }
  c.active = best;
}

uint8_t Engine::AddressId(const Connection& c, const packet::IpAddress& a) {
  if (a == c.tuple.src) return 0;  // RFC 8684 §3.4.1: ID 0 is the initial subflow's address
  auto it = address_ids_.find(a);
  if (it != address_ids_.end()) return it->second;
  const uint8_t id = static_cast<uint8_t>(std::min<size_t>(address_ids_.size() + 1, 255));
  address_ids_.emplace(a, id);
  return id;
}

const LocalInterface* Engine::InterfaceByName(std::string_view name) const {
  for (const auto& i : interfaces_) {
    if (i.name == name) return &i;
  }
  return nullptr;
}

const LocalInterface* Engine::InterfaceOf(const packet::IpAddress& a) const {
  for (const auto& i : interfaces_) {
    if (HasAddress(i, a)) return &i;
  }
  return nullptr;
}

Connection* Engine::ConnectionByToken(uint32_t token) {
  // Joins are rare next to data packets: a scan instead of a second index to keep in sync.
  if (!local_tokens_.contains(token)) return nullptr;
  for (auto& [t, c] : conns_) {
    if (c->local_token == token && c->state != ConnState::kFallback) return c.get();
  }
  return nullptr;
}

std::optional<Time> Engine::SubflowDue(const Connection& c) const {
  std::optional<Time> due;
  for (const auto& sf : c.subflows) {
    if (sf->due && (!due || *sf->due < *due)) due = sf->due;
  }
  // Our ADD_ADDR retransmissions (mptcp/announce.cc) share the connection's timer.
  if (c.announce_at && (!due || *c.announce_at < *due)) due = c.announce_at;
  for (const auto& a : c.announced) {
    if (a.due && (!due || *a.due < *due)) due = a.due;
  }
  return due;
}

void Engine::ArmSubflow(Connection& c, Subflow& sf, Time when) {
  sf.due = when;
  if (when < c.deadline) Schedule(c, when);
}

// ---------------------------------------------------------------------------------------------
// Forged segments on a subflow.

bool Engine::ForgeOn(Connection& c, Subflow& sf, uint8_t flags, uint32_t seq,
                     std::initializer_list<Option> extra, packet::Actions& actions,
                     bool with_data_ack) {
  packet::TcpHeader h;
  h.sport = sf.tuple.sport;
  h.dport = sf.tuple.dport;
  h.seq = seq;
  h.ack = (flags & tcp_flags::kAck) != 0 ? WireOf(sf.rx_isn, sf.rx_san) : 0;
  h.flags = flags;
  h.window = c.last_window;
  packet::TcpOptionList opts;
  if (sf.ts) {
    (void)opts.AddNop();
    (void)opts.AddNop();
    (void)opts.AddTimestamps({c.last_ts ? c.last_ts->tsval : 0, sf.ts_recent});
  }
  if (with_data_ack) {
    Dss dss;
    dss.data_ack = DssDataAck{c.remote_idsn + 1 + c.rx_dan, true};
    if (!AddMptcp(opts, dss)) counters_.Inc(Counter::kOptionSpace);
  }
  for (const Option& o : extra) {
    if (!AddMptcp(opts, o)) counters_.Inc(Counter::kOptionSpace);
  }
  if ((flags & (tcp_flags::kAck | tcp_flags::kRst | tcp_flags::kSyn)) == tcp_flags::kAck &&
      sf.sack && !sf.rx_ooo.empty()) {
    counters_.Inc(AddSubflowSack(opts, sf) > 0 ? Counter::kSackTx : Counter::kSackRoom);
  }
  auto pkt = packet::BuildTcpPacket(sf.tuple, h, opts, packet::Bytes{}, sf.ttl);
  if (!pkt) {
    counters_.Inc(Counter::kForgeError);
    return false;
  }
  actions.forged.push_back(packet::ForgedPacket{std::move(pkt.value()), sf.ifindex});
  if ((flags & tcp_flags::kAck) != 0) sf.rx_san_sent = std::max(sf.rx_san_sent, sf.rx_san);
  return true;
}

void Engine::ForgeRstOn(Connection& c, Subflow& sf, uint8_t reason, packet::Actions& actions) {
  // MP_TCPRST may only share a segment with MP_FAIL / MP_FASTCLOSE (interop §1.7): no DSS here.
  MpTcpRst rst;
  rst.reason = reason;
  const uint32_t seq = sf.state == SubflowState::kSynSent ? sf.tx_isn + 1 : SndNxt(sf);
  const uint8_t flags =
      sf.state == SubflowState::kSynSent ? tcp_flags::kRst : tcp_flags::kRst | tcp_flags::kAck;
  if (ForgeOn(c, sf, flags, seq, {rst}, actions, /*with_data_ack=*/false)) {
    counters_.Inc(Counter::kJoinRstTx);
  }
}

bool Engine::SubflowRstAccepted(Connection& c, Subflow& sf, const TcpPacket& p,
                                const SegmentOptions& opts, packet::Actions& actions) {
  if (opts.mp_fastclose && opts.mp_fastclose->receiver_key == c.local_key) return true;
  const uint8_t shift = sf.ws ? c.local_wscale : 0;  // the window fields we send on it
  switch (CheckRst(p.tcp.seq, WireOf(sf.rx_isn, sf.rx_san), WireOf(sf.rx_isn, sf.rx_ssn_high),
                   uint32_t{c.last_window} << std::min<uint8_t>(shift, 14))) {
    case RstCheck::kAccept:
      return true;
    case RstCheck::kChallenge:
      // RFC 5961 §3.2: the real peer answers our ACK with a RST at exactly its sequence number.
      counters_.Inc(Counter::kRstChallengeAck);
      (void)ForgeOn(c, sf, tcp_flags::kAck, SndNxt(sf), {}, actions);
      return false;
    case RstCheck::kDrop:
      counters_.Inc(Counter::kRstBadSeq);
      return false;
  }
  return false;
}

void Engine::ForgeHandshakeRst(const TcpPacket& p, packet::Actions& actions) {
  // The reset a TCP stack sends for an unacceptable segment (RFC 9293 §3.10.7.1) plus MP_TCPRST
  // reason 1, what Linux answers an unknown token or a bad HMAC with (interop §2.2).
  const FourTuple t = p.tuple().Reversed();
  packet::TcpHeader h;
  h.sport = t.sport;
  h.dport = t.dport;
  if (p.tcp.has(tcp_flags::kAck)) {
    h.seq = p.tcp.ack;
    h.flags = tcp_flags::kRst;
  } else {
    h.seq = 0;
    h.ack = p.tcp.seq + p.seq_len();
    h.flags = tcp_flags::kRst | tcp_flags::kAck;
  }
  packet::TcpOptionList opts;
  MpTcpRst rst;
  rst.reason = static_cast<uint8_t>(TcpRstReason::kMptcpError);
  (void)AddMptcp(opts, rst);
  auto pkt = packet::BuildTcpPacket(t, h, opts, packet::Bytes{});
  if (!pkt) {
    counters_.Inc(Counter::kForgeError);
    return;
  }
  const LocalInterface* i = InterfaceOf(t.src);
  actions.forged.push_back(packet::ForgedPacket{std::move(pkt.value()), i ? i->ifindex : 0});
  counters_.Inc(Counter::kJoinRstTx);
}

void Engine::SendFinOn(Time now, Connection& c, Subflow& sf, packet::Actions& actions) {
  // RFC 8684 §3.3.3: subflows close with a plain FIN (after the DATA_FIN is acknowledged, or when
  // only this subflow goes away). Retransmitted like the single-path subflow FIN.
  if (sf.sfin_acked) return;
  if (ForgeOn(c, sf, tcp_flags::kFin | tcp_flags::kAck, WireOf(sf.tx_isn, sf.tx_ssn_next), {},
              actions)) {
    counters_.Inc(sf.sfin_sent ? Counter::kSubflowFinRetransmit : Counter::kSubflowFinTx);
  }
  sf.sfin_sent = true;
  const auto backoff = config_.fin_rto * (1 << std::min(sf.sfin_tries, 10));
  ++sf.sfin_tries;
  ArmSubflow(c, sf, now + backoff);
}

void Engine::CloseSubflow(Time now, Connection& c, Subflow& sf) {
  (void)now;
  sf.state = SubflowState::kClosed;
  sf.gone = true;
  sf.due.reset();
  if (c.active == &sf) SelectActive(c);
}

void Engine::FinishHandover(Time now, Subflow& sf, bool ok, std::string_view error) {
  if (!sf.handover) return;
  auto it = handovers_.find(*sf.handover);
  sf.handover.reset();
  if (it == handovers_.end()) return;
  HandoverStatus& st = it->second.status;
  if (ok) {
    ++st.moved;
    counters_.Inc(Counter::kHandoverMoved);
  } else {
    ++st.failed;
    counters_.Inc(Counter::kHandoverFailed);
    if (st.error.empty()) st.error = std::string(error);
  }
  if (it->second.pending > 0 && --it->second.pending == 0) {
    st.state = st.failed > 0 && st.moved == 0 ? HandoverState::kFailed : HandoverState::kDone;
    st.finished = now;
  }
}

void Engine::FreeSubflow(Connection& c, Subflow& sf) {
  FinishHandover(clock_, sf, false, "subflow closed before it was established");
  if (!sf.initial) wire_.erase(sf.tuple);
  if (c.active == &sf) c.active = nullptr;
  auto it = std::find_if(c.subflows.begin(), c.subflows.end(),
                         [&](const auto& p) { return p.get() == &sf; });
  if (it != c.subflows.end()) c.subflows.erase(it);  // destroys sf
  if (c.multi && c.active == nullptr) SelectActive(c);
}

void Engine::PruneClosedJoins(Connection& c) {
  // Closed joins stay listed (and their tuple known, so that late packets on it are dropped, not
  // passed) for a while; a long-lived connection that keeps handing over, or a peer that keeps
  // joining and resetting, must not accumulate them. Called before a join is added (active or
  // passive), so a connection holds at most max_subflows live + kKeptClosed closed subflows.
  // The SEND table may still name them: a subflow it cannot find is one that is gone (fresh SSN
  // space on the active one).
  constexpr size_t kKeptClosed = 2;
  size_t closed = 0;
  for (const auto& sf : c.subflows) closed += !sf->initial && sf->state == SubflowState::kClosed;
  while (closed > kKeptClosed) {
    auto it = std::find_if(c.subflows.begin(), c.subflows.end(), [](const auto& sf) {
      return !sf->initial && sf->state == SubflowState::kClosed;
    });
    FreeSubflow(c, **it);
    --closed;
  }
}

void Engine::FreeSubflows(Connection& c) {
  for (auto& sf : c.subflows) {
    FinishHandover(clock_, *sf, false, "connection ended");
    if (!sf->initial) wire_.erase(sf->tuple);
  }
  c.subflows.clear();
  c.active = nullptr;
}

void Engine::ResetJoins(Connection& c, packet::Actions& actions) {
  std::vector<Subflow*> joins;
  for (auto& sf : c.subflows) {
    if (!sf->initial && sf->state != SubflowState::kClosed) joins.push_back(sf.get());
  }
  for (Subflow* sf : joins) {
    ForgeRstOn(c, *sf, static_cast<uint8_t>(TcpRstReason::kUnspecified), actions);
    if (InHandshake(*sf)) {
      FreeSubflow(c, *sf);
    } else {
      CloseSubflow(clock_, c, *sf);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Active joins (we send the MP_JOIN SYN; RFC 8684 §3.2, interop §1.3).

Result<Subflow*> Engine::OpenJoin(Time now, Connection& c, const LocalInterface& iface, bool backup,
                                  packet::Actions& actions) {
  if (c.state != ConnState::kEstablished || !c.remote_key_known) {
    return MakeError("subflow: connection is not established");
  }
  if (c.role == Role::kActive && !c.peer_dss_seen) {
    // The server accepts joins only once it has our third ACK (interop §2.6: MPJoinRejected
    // before that); its first DSS proves it has.
    return MakeError("subflow: connection is not fully established yet");
  }
  const packet::IpAddress* addr = nullptr;
  for (const auto& a : iface.addresses) {
    if (a.family() == c.tuple.src.family()) {
      addr = &a;
      break;
    }
  }
  if (addr == nullptr) {
    return MakeError("subflow: interface " + iface.name +
                     " has no address of the connection's family");
  }
  if (LiveSubflows(c) >= config_.max_subflows) {
    return MakeError("subflow: the connection has the maximum number of subflows");
  }
  PruneClosedJoins(c);
  // Source port: random in join_port_min..join_port_max (outside the local stack's ephemeral
  // range, EngineConfig), unused by any tuple we know (RFC 6056 §3.2 spirit).
  FourTuple t{*addr, c.tuple.dst, 0, c.tuple.dport};
  bool found = false;
  const uint32_t port_lo = std::min(config_.join_port_min, config_.join_port_max);
  const uint32_t port_span = std::max(config_.join_port_min, config_.join_port_max) - port_lo + 1;
  for (int attempt = 0; attempt < 64 && !found; ++attempt) {
    t.sport = static_cast<uint16_t>(port_lo + rng_.Next64() % port_span);
    found = !wire_.contains(t) && !conns_.contains(t);
  }
  if (!found) return MakeError("subflow: no free source port");
  auto fresh = std::make_unique<Subflow>();
  Subflow& sf = *fresh;
  sf.id = c.next_subflow_id++;
  sf.tuple = t;
  sf.ifindex = iface.ifindex;
  sf.local_id = AddressId(c, *addr);
  std::erase(c.removed_ids, sf.local_id);  // the MP_JOIN names the ID: live again (RFC 8684 §3.4.2)
  sf.joiner = true;
  sf.backup_local = backup;
  sf.state = SubflowState::kSynSent;
  sf.tx_isn = rng_.Next32();
  sf.local_nonce = rng_.Next32();
  sf.ts = c.local_ts && c.peer_ts;  // offered only if the initial subflow negotiated them
  sf.ttl = c.ttl;
  c.subflows.push_back(std::move(fresh));
  wire_[t] = WireRef{&c, &sf};
  SendJoinSyn(now, c, sf, actions);
  return &sf;
}

void Engine::SendJoinSyn(Time now, Connection& c, Subflow& sf, packet::Actions& actions) {
  packet::TcpHeader h;
  h.sport = sf.tuple.sport;
  h.dport = sf.tuple.dport;
  h.seq = sf.tx_isn;
  h.flags = tcp_flags::kSyn;
  h.window = c.syn_window != 0 ? c.syn_window : 65535;
  packet::TcpOptionList opts;
  // MSS: what the local stack announced, less the option bytes we add to its segments
  // (architecture.md pitfall 2). SACK-permitted when the local stack offered it: the engine
  // writes the join's SACK blocks itself from what arrived on it (AddSubflowSack), so the peer's
  // sender recovers several losses per RTT there (RFC 2018) instead of one per RTO.
  uint16_t mss = c.local_mss != 0 ? c.local_mss : 1460;
  if (mss > config_.mss_reduction + 64) mss = static_cast<uint16_t>(mss - config_.mss_reduction);
  (void)opts.AddMss(mss);
  if (c.local_sack) (void)opts.AddSackPermitted();
  if (sf.ts) {
    (void)opts.AddNop();
    (void)opts.AddNop();
    (void)opts.AddTimestamps({c.last_ts ? c.last_ts->tsval : 0, 0});
  }
  if (c.local_ws && c.peer_ws) {
    // The local stack's shift: its window fields move onto this subflow unchanged. Only when the
    // initial subflow negotiated scaling: otherwise the local stack writes unscaled windows
    // (RFC 7323 §2.2) and a shift offered here would make the peer multiply them.
    (void)opts.AddNop();
    (void)opts.AddWindowScale(c.local_wscale);
  }
  MpJoin join;
  join.form = MpJoin::Form::kSyn;
  join.backup = sf.backup_local;
  join.address_id = sf.local_id;
  join.token = c.remote_token;
  join.nonce = sf.local_nonce;
  if (!AddMptcp(opts, join)) counters_.Inc(Counter::kOptionSpace);
  auto pkt = packet::BuildTcpPacket(sf.tuple, h, opts, packet::Bytes{}, sf.ttl);
  if (!pkt) {
    counters_.Inc(Counter::kForgeError);
  } else {
    actions.forged.push_back(packet::ForgedPacket{std::move(pkt.value()), sf.ifindex});
    counters_.Inc(sf.tries == 0 ? Counter::kJoinSynTx : Counter::kJoinSynRetransmit);
  }
  ArmSubflow(c, sf, now + config_.join_rto * (1 << std::min(sf.tries, 10)));
  ++sf.tries;
}

void Engine::SendJoinThirdAck(Time now, Connection& c, Subflow& sf, packet::Actions& actions) {
  // Third ACK: MP_JOIN with the first 160 bits of HMAC-A (RFC 8684 §3.2, interop §1.3). Linux
  // retransmits it until the fourth ACK; so do we.
  auto hmac = JoinAckHmac(JoinSecrets{c.local_key, c.remote_key, sf.local_nonce, sf.remote_nonce});
  if (!hmac) {
    counters_.Inc(Counter::kForgeError);
    return;
  }
  MpJoin join;
  join.form = MpJoin::Form::kAck;
  join.hmac = hmac.value();
  if (ForgeOn(c, sf, tcp_flags::kAck, sf.tx_isn + 1, {join}, actions, /*with_data_ack=*/false)) {
    counters_.Inc(sf.tries == 0 ? Counter::kJoinAckTx : Counter::kJoinAckRetransmit);
  }
  ArmSubflow(c, sf, now + config_.join_rto * (1 << std::min(sf.tries, 10)));
  ++sf.tries;
}

// ---------------------------------------------------------------------------------------------
// Passive joins (the peer joins us; interop §2.2, rule 9).

void Engine::SendJoinSynAck(Time now, Connection& c, Subflow& sf, packet::Actions& actions) {
  auto hmac =
      JoinSynAckHmac(JoinSecrets{c.remote_key, c.local_key, sf.remote_nonce, sf.local_nonce});
  if (!hmac) {
    counters_.Inc(Counter::kForgeError);
    return;
  }
  packet::TcpHeader h;
  h.sport = sf.tuple.sport;
  h.dport = sf.tuple.dport;
  h.seq = sf.tx_isn;
  h.ack = sf.rx_isn + 1;
  h.flags = tcp_flags::kSyn | tcp_flags::kAck;
  h.window = c.syn_window != 0 ? c.syn_window : 65535;
  packet::TcpOptionList opts;
  uint16_t mss = c.local_mss != 0 ? c.local_mss : 1460;
  if (mss > config_.mss_reduction + 64) mss = static_cast<uint16_t>(mss - config_.mss_reduction);
  (void)opts.AddMss(mss);
  if (sf.sack) (void)opts.AddSackPermitted();
  if (sf.ts) {
    (void)opts.AddNop();
    (void)opts.AddNop();
    (void)opts.AddTimestamps({c.last_ts ? c.last_ts->tsval : 0, sf.ts_recent});
  }
  if (sf.ws) {
    (void)opts.AddNop();
    (void)opts.AddWindowScale(c.local_wscale);
  }
  MpJoin join;
  join.form = MpJoin::Form::kSynAck;
  join.backup = sf.backup_local;
  join.address_id = sf.local_id;
  join.truncated_hmac = hmac.value();
  join.nonce = sf.local_nonce;
  if (!AddMptcp(opts, join)) counters_.Inc(Counter::kOptionSpace);
  auto pkt = packet::BuildTcpPacket(sf.tuple, h, opts, packet::Bytes{}, sf.ttl);
  if (!pkt) {
    counters_.Inc(Counter::kForgeError);
  } else {
    actions.forged.push_back(packet::ForgedPacket{std::move(pkt.value()), sf.ifindex});
    counters_.Inc(Counter::kJoinSynAckTx);
  }
  ArmSubflow(c, sf, now + config_.join_rto * (1 << std::min(sf.tries, 10)));
  ++sf.tries;
}

void Engine::InboundJoinSyn(Time now, TcpPacket& p, const SegmentOptions& opts, PacketOut& out,
                            packet::Actions& actions) {
  out.verdict = packet::Verdict::kDrop;  // the local stack never sees an MP_JOIN SYN
  const FourTuple key = p.tuple().Reversed();
  const MpJoin& join = *opts.mp_join;
  if (join.form != MpJoin::Form::kSyn) {
    counters_.Inc(Counter::kJoinRejected);
    return;
  }
  counters_.Inc(Counter::kJoinSynRx);
  if (auto w = wire_.find(key); w != wire_.end()) {
    Subflow& sf = *w->second.sf;
    counters_.Inc(Counter::kJoinDupSyn);
    if (sf.state == SubflowState::kSynReceived && sf.rx_isn == p.tcp.seq) {
      SendJoinSynAck(now, *w->second.conn, sf, actions);  // our SYN/ACK was lost
    }
    return;
  }
  Connection* found = ConnectionByToken(join.token);
  if (found == nullptr || found->state != ConnState::kEstablished || !found->remote_key_known ||
      conns_.contains(key)) {
    // Linux: MPJoinNoTokenFound, RST + MP_TCPRST reason 1 (interop §2.2).
    counters_.Inc(Counter::kJoinRejected);
    if (found == nullptr) counters_.Inc(Counter::kJoinNoToken);
    ForgeHandshakeRst(p, actions);
    return;
  }
  Connection& c = *found;
  if (LiveSubflows(c) >= config_.max_subflows) {
    counters_.Inc(Counter::kJoinRejected);
    counters_.Inc(Counter::kJoinLimit);
    ForgeHandshakeRst(p, actions);
    return;
  }
  c.last_activity = now;
  PruneClosedJoins(c);
  auto fresh = std::make_unique<Subflow>();
  Subflow& sf = *fresh;
  sf.id = c.next_subflow_id++;
  sf.tuple = key;
  const LocalInterface* iface = InterfaceOf(key.src);
  sf.ifindex = iface ? iface->ifindex : 0;
  sf.local_id = AddressId(c, key.src);
  std::erase(c.removed_ids, sf.local_id);  // the address is in use again
  sf.remote_id = join.address_id;
  sf.backup_remote = join.backup;
  sf.state = SubflowState::kSynReceived;
  sf.rx_isn = p.tcp.seq;
  sf.tx_isn = rng_.Next32();
  sf.local_nonce = rng_.Next32();
  sf.remote_nonce = join.nonce;
  const auto ws = p.options.WindowScale();
  sf.ws = ws.has_value() && c.local_ws && c.peer_ws;  // as on the initial subflow (SendJoinSyn)
  sf.peer_wscale = sf.ws ? *ws : 0;
  sf.sack = c.local_sack && p.options.SackPermitted();  // our SACK blocks, see SendJoinSyn
  if (auto ts = p.options.Timestamps(); ts && c.local_ts && c.peer_ts) {
    sf.ts = true;
    sf.ts_recent = ts->tsval;
  }
  sf.ttl = c.ttl;
  c.subflows.push_back(std::move(fresh));
  wire_[key] = WireRef{&c, &sf};
  SendJoinSynAck(now, c, sf, actions);
}

// ---------------------------------------------------------------------------------------------
// Packets on a join subflow's wire tuple.

void Engine::InboundJoin(Time now, Connection& c, Subflow& sf, TcpPacket& p,
                         const SegmentOptions& opts, PacketOut& out, packet::Actions& actions) {
  c.last_activity = now;
  const bool syn = p.tcp.has(tcp_flags::kSyn), rst = p.tcp.has(tcp_flags::kRst);
  // No packet of a join subflow reaches the local stack untranslated: consumed ones are dropped.
  out.verdict = packet::Verdict::kDrop;
  switch (sf.state) {
    case SubflowState::kSynSent: {
      if (rst) {
        if (p.tcp.ack == sf.tx_isn + 1) {
          counters_.Inc(Counter::kJoinRefused);
          FinishHandover(now, sf, false, "join refused by the peer");
          FreeSubflow(c, sf);
        }
        return;
      }
      if (!syn || p.tcp.ack != sf.tx_isn + 1) return;
      if (!opts.mp_join || opts.mp_join->form != MpJoin::Form::kSynAck) {
        counters_.Inc(Counter::kJoinSynAckNoJoin);
        ForgeHandshakeRst(p, actions);
        FinishHandover(now, sf, false, "SYN/ACK without MP_JOIN");
        FreeSubflow(c, sf);
        return;
      }
      const JoinSecrets s{c.local_key, c.remote_key, sf.local_nonce, opts.mp_join->nonce};
      if (!JoinSynAckHmacValid(s, opts.mp_join->truncated_hmac)) {
        // Linux: MPJoinSynAckHMacFailure, RST + MP_TCPRST reason 1 (interop §2.2).
        counters_.Inc(Counter::kJoinSynAckBadHmac);
        ForgeHandshakeRst(p, actions);
        FinishHandover(now, sf, false, "bad SYN/ACK HMAC");
        FreeSubflow(c, sf);
        return;
      }
      counters_.Inc(Counter::kJoinSynAckRx);
      sf.rx_isn = p.tcp.seq;
      sf.remote_nonce = opts.mp_join->nonce;
      sf.remote_id = opts.mp_join->address_id;
      sf.backup_remote = opts.mp_join->backup;
      const auto ws = p.options.WindowScale();
      sf.ws = ws.has_value() && c.local_ws && c.peer_ws;
      sf.peer_wscale = sf.ws ? *ws : 0;
      sf.sack = c.local_sack && p.options.SackPermitted();
      if (auto ts = p.options.Timestamps(); ts && sf.ts) {
        sf.ts_recent = ts->tsval;
      } else {
        sf.ts = false;
      }
      sf.state = SubflowState::kPreEstablished;
      sf.tries = 0;
      SendJoinThirdAck(now, c, sf, actions);
      return;
    }
    case SubflowState::kPreEstablished: {
      if (syn) {
        if (p.tcp.seq == sf.rx_isn) SendJoinThirdAck(now, c, sf, actions);  // our ACK was lost
        return;
      }
      if (rst && p.tcp.seq != sf.rx_isn + 1) {
        counters_.Inc(Counter::kRstBadSeq);  // RFC 5961 §3.2: not at the only acceptable seq
        return;
      }
      if (rst) {
        counters_.Inc(Counter::kJoinRefused);  // e.g. MPJoinRejected: RST reason 3 (interop §2.2)
        FinishHandover(now, sf, false, "join reset by the peer");
        FreeSubflow(c, sf);
        return;
      }
      if (!opts.dss || !opts.dss->data_ack) {
        // Interop §1.3: the fourth ACK is a segment with a DSS DATA_ACK; nothing else counts.
        counters_.Inc(Counter::kJoinPreEstDrop);
        return;
      }
      counters_.Inc(Counter::kJoinFourthAckRx);
      if (auto ts = p.options.Timestamps(); ts && sf.ts) sf.ts_recent = ts->tsval;
      JoinEstablished(now, c, sf, actions);
      if (p.payload_len == 0 && !p.tcp.has(tcp_flags::kFin)) return;  // the bare fourth ACK
      MigrateToMulti(c);
      InboundMulti(now, c, sf, p, opts, out, actions);
      return;
    }
    case SubflowState::kSynReceived: {
      if (syn) return;
      if (rst && p.tcp.seq != sf.rx_isn + 1) {
        counters_.Inc(Counter::kRstBadSeq);  // RFC 5961 §3.2: not at the only acceptable seq
        return;
      }
      if (rst) {
        FreeSubflow(c, sf);
        return;
      }
      if (!p.tcp.has(tcp_flags::kAck) || p.tcp.ack != sf.tx_isn + 1) return;
      if (!opts.mp_join || opts.mp_join->form != MpJoin::Form::kAck) {
        counters_.Inc(Counter::kJoinAckNoJoin);
        ForgeHandshakeRst(p, actions);
        FreeSubflow(c, sf);
        return;
      }
      const JoinSecrets s{c.remote_key, c.local_key, sf.remote_nonce, sf.local_nonce};
      if (!JoinAckHmacValid(s, opts.mp_join->hmac)) {
        // Linux: MPJoinAckHMacFailure, RST + MP_TCPRST reason 1 (interop §2.2).
        counters_.Inc(Counter::kJoinAckBadHmac);
        ForgeHandshakeRst(p, actions);
        FreeSubflow(c, sf);
        return;
      }
      counters_.Inc(Counter::kJoinAckRx);
      if (auto ts = p.options.Timestamps(); ts && sf.ts) sf.ts_recent = ts->tsval;
      JoinEstablished(now, c, sf, actions);
      // The fourth ACK, at once (interop rule 9): the joiner sends no data before it.
      if (ForgeOn(c, sf, tcp_flags::kAck, SndNxt(sf), {}, actions)) {
        counters_.Inc(Counter::kJoinFourthAckTx);
      }
      if (p.payload_len > 0) {
        MigrateToMulti(c);
        InboundMulti(now, c, sf, p, opts, out, actions);
      }
      return;
    }
    case SubflowState::kEstablished:
    case SubflowState::kClosing:
      if (syn) {
        // E.g. a delayed duplicate of the peer's SYN/ACK: its sequence number is in the join's
        // space and it has nothing for the local stack. A SYN on a synchronized connection is
        // answered with an ACK and dropped (RFC 9293 §3.10.7.4, RFC 5961 §4.2).
        counters_.Inc(Counter::kSubflowSynDropped);
        (void)ForgeOn(c, sf, tcp_flags::kAck, SndNxt(sf), {}, actions);
        return;
      }
      if (!sf.joiner && opts.mp_join && opts.mp_join->form == MpJoin::Form::kAck &&
          p.payload_len == 0) {
        // The joiner retransmits its third ACK until it has the fourth (interop §1.3): ours was
        // lost, send it again.
        if (ForgeOn(c, sf, tcp_flags::kAck, SndNxt(sf), {}, actions)) {
          counters_.Inc(Counter::kJoinFourthAckTx);
        }
        return;
      }
      // A blind RST must not end the fast path either (checked again in InboundMulti: idempotent).
      if (rst && !SubflowRstAccepted(c, sf, p, opts, actions)) return;
      // The first packet a join carries after its handshake ends the single-path fast path.
      MigrateToMulti(c);
      InboundMulti(now, c, sf, p, opts, out, actions);
      if (conns_.contains(c.tuple)) MaybeCloseMulti(now, c);
      return;
    case SubflowState::kClosed:
      if (c.multi && p.payload_len > 0 && !syn && !rst) {
        // Data the peer sent before it learnt that we left this subflow (break-before-make away
        // from a path that still works, e.g. `handover A B` then `handover B A --break`): its
        // mapping is known, so it still reaches the local stack instead of waiting for the
        // peer's reinjection (seed §5.4). Nothing is sent on the subflow for it.
        counters_.Inc(Counter::kSubflowClosedData);
        InboundMulti(now, c, sf, p, opts, out, actions);
        return;
      }
      counters_.Inc(Counter::kSubflowClosedPackets);
      return;
  }
}

void Engine::JoinEstablished(Time now, Connection& c, Subflow& sf, packet::Actions& actions) {
  sf.state = SubflowState::kEstablished;
  sf.due.reset();
  sf.tries = 0;
  counters_.Inc(Counter::kJoinEstablished);
  if (!sf.handover) return;
  auto it = handovers_.find(*sf.handover);
  if (it != handovers_.end()) SwitchTo(now, c, sf, &it->second, actions);
  FinishHandover(now, sf, true, "");
}

void Engine::SwitchTo(Time now, Connection& c, Subflow& to, const HandoverJob* job,
                      packet::Actions& actions) {
  MigrateToMulti(c);  // sending moves off the initial subflow: SEND table from now on
  const LocalInterface* from =
      job != nullptr && !job->request.from.empty() ? InterfaceByName(job->request.from) : nullptr;
  auto on_from = [&](const Subflow& sf) {
    return &sf != &to && (from == nullptr || WasOn(from->name, sf.tuple.src));
  };
  if (job != nullptr && job->request.mode == HandoverMode::kBreakBeforeMake) {
    // Seed §5.4: tell the peer the old address is gone (REMOVE_ADDR on the new subflow).
    RemoveAddr rm;
    for (auto& sf : c.subflows) {
      if (!sf->gone || !on_from(*sf) || rm.count >= kMaxRemoveIds) continue;
      // An older subflow from the new one's own address (e.g. a join closed before, with an
      // empty `from`): REMOVE_ADDR names addresses, and the peer would close the new subflow
      // too (RFC 8684 §3.4.2).
      if (sf->local_id == to.local_id) continue;
      if (std::find(rm.ids.begin(), rm.ids.begin() + rm.count, sf->local_id) !=
          rm.ids.begin() + rm.count) {
        continue;
      }
      rm.ids[rm.count++] = sf->local_id;
    }
    if (rm.count > 0 && SendRemoveAddr(c, &to, rm, actions)) counters_.Inc(Counter::kRemoveAddrTx);
  } else {
    // Seed §5.3: MP_PRIO applies to the subflow it is sent on (interop §1.6), so each subflow
    // gets its own: backup on `from`'s, regular on the new one.
    for (auto& sf : c.subflows) {
      if (!sf->usable() || !on_from(*sf)) continue;
      sf->backup_local = true;
      sf->prio_sent = now;
      MpPrio prio;
      prio.backup = true;
      if (ForgeOn(c, *sf, tcp_flags::kAck, SndNxt(*sf), {prio}, actions)) {
        counters_.Inc(Counter::kMpPrioTx);
      }
    }
  }
  to.backup_local = false;
  MpPrio prio;
  prio.backup = false;
  if (ForgeOn(c, to, tcp_flags::kAck, SndNxt(to), {prio}, actions)) {
    counters_.Inc(Counter::kMpPrioTx);
  }
  c.active = &to;
}

// ---------------------------------------------------------------------------------------------
// The multipath data path.

Subflow* Engine::RetransmitTarget(Time now, Connection& c, Subflow* orig, uint64_t ssn,
                                  uint64_t len, packet::Actions& actions) {
  // Staleness is judged per range, by the subflow's own ACK progress: only retransmissions of
  // the subflow's head (the SSN its peer acknowledges next) count. Go-back-N recovery resends
  // every lost segment once, which says nothing about the path; the head resent again and again
  // while the subflow ACK stays put does (review #1).
  if (ssn <= orig->tx_san && orig->tx_san < ssn + len) ++orig->retx_no_progress;
  if (orig == c.active || c.active == nullptr || !c.active->usable() ||
      orig->retx_no_progress <= kStaleRetransmissions) {
    return orig;
  }
  // The old path of a make-before-break stopped acknowledging (seed §3.3: "no longer
  // available"). It is retired for good, not merely skipped: its SSN ranges move to the active
  // subflow, so it could never deliver in order again. The peer learns it (RST with MP_TCPRST,
  // RFC 8684 §3.6, "unacceptable performance"), and gone keeps StartHandover / SelectActive off it.
  counters_.Inc(Counter::kTxStaleSubflow);
  ForgeRstOn(c, *orig, static_cast<uint8_t>(TcpRstReason::kUnacceptablePerformance), actions);
  CloseSubflow(now, c, *orig);
  return nullptr;
}

bool Engine::SendStraddle(Time now, Connection& c, const TcpPacket& p, uint64_t off,
                          std::optional<DssDataAck> data_ack, PacketOut& out,
                          packet::Actions& actions, Subflow*& routed, uint64_t& routed_ssn) {
  routed = nullptr;
  const uint64_t len = p.payload_len;
  const uint64_t end = off + len;
  const MapEntry* first = c.send.Find(off);
  if (first != nullptr && end <= first->src_end()) return false;  // one entry: ordinary path
  if (first == nullptr &&
      (c.send.empty() || c.send.entries().front().src >= end || c.send.src_end() <= off)) {
    return false;  // touches no sent entry: new data (or acknowledged bytes) for the active one
  }
  struct Piece {
    uint64_t begin, end;
    Subflow* sf;
    uint64_t ssn;
  };
  std::vector<Piece> pieces;
  for (uint64_t cur = off; cur < end;) {
    const MapEntry* e = cur < c.tx_high ? c.send.Find(cur) : nullptr;
    uint64_t pend = end;
    Subflow* to = nullptr;
    uint64_t ssn = 0;
    if (e != nullptr) {
      pend = std::min(end, e->src_end());
      Subflow* owner = SubflowById(c, e->tag);
      if (owner != nullptr && owner->usable()) {
        ssn = e->dst + (cur - e->src);
        to = RetransmitTarget(now, c, owner, ssn, pend - cur, actions);
      }
    } else {
      // Unmapped: acknowledged and forgotten below, or new data above what was sent.
      for (const MapEntry& n : c.send.entries()) {
        if (n.src > cur) {
          pend = std::min(end, n.src);
          break;
        }
      }
      if (cur < c.tx_acked) {
        // DATA_ACKed already: the peer has these bytes, no subflow needs them again.
        cur = std::min(pend, c.tx_acked);
        continue;
      }
    }
    if (to == nullptr && c.active != nullptr && c.active->usable()) {
      // Its subflow is gone (its SSN space is never needed again) or the bytes are new: fresh
      // SSN space on the active subflow.
      to = c.active;
      ssn = to->tx_ssn_next;
      if (c.send.Insert(cur, ssn, pend - cur, to->id) == InsertResult::kConflict) {
        c.send.Assign(cur, ssn, pend - cur, to->id);
      }
      to->tx_ssn_next += pend - cur;
      if (cur < c.tx_high) counters_.Inc(Counter::kTxMovedSubflow);
    }
    if (to == nullptr) {
      counters_.Inc(Counter::kNoSubflow);  // the local stack sends these bytes again
    } else if (!pieces.empty() && pieces.back().sf == to && pieces.back().end == cur &&
               pieces.back().ssn + (cur - pieces.back().begin) == ssn) {
      pieces.back().end = pend;
    } else {
      pieces.push_back(Piece{cur, pend, to, ssn});
    }
    cur = pend;
  }

  if (pieces.size() == 1 && pieces[0].begin == off && pieces[0].end == end) {
    // One subflow, contiguous SSNs (e.g. its own tail plus new data): the queued packet goes.
    routed = pieces[0].sf;
    routed_ssn = pieces[0].ssn;
    return false;
  }
  // The queued packet cannot be shortened through its verdict (its payload is passed on from
  // the queued buffer as it is), so every piece is forged and the original dropped. GSO packets
  // are cut to segments the path takes (the forged packets bypass segmentation offload).
  const bool fin = p.tcp.has(tcp_flags::kFin);
  const uint64_t chunk = p.gso ? std::max<uint64_t>(536, c.local_mss > config_.mss_reduction + 536u
                                                             ? c.local_mss - config_.mss_reduction
                                                             : 536u)
                               : len;
  const std::optional<packet::TimestampsOption> ts = p.options.Timestamps();
  const packet::Bytes payload = p.payload();
  for (const Piece& pc : pieces) {
    Subflow& sf = *pc.sf;
    for (uint64_t a = pc.begin; a < pc.end;) {
      const uint64_t b = std::min(pc.end, a + chunk);
      const bool last = b == end;
      const uint64_t ssn = pc.ssn + (a - pc.begin);
      const packet::Bytes data = payload.subspan(a - off, b - a);
      packet::TcpHeader h = p.tcp;
      h.sport = sf.tuple.sport;
      h.dport = sf.tuple.dport;
      h.seq = WireOf(sf.tx_isn, ssn);
      if (p.tcp.has(tcp_flags::kAck)) h.ack = WireOf(sf.rx_isn, sf.rx_san);
      h.flags = static_cast<uint8_t>(p.tcp.flags & ~tcp_flags::kFin);  // FIN: the DATA_FIN
      h.checksum = 0;
      packet::TcpOptionList opts;
      if (ts && sf.ts) {
        (void)opts.AddNop();
        (void)opts.AddNop();
        (void)opts.AddTimestamps({ts->tsval, sf.ts_recent});
      }
      Option opt = MappingOption(c,
                                 TxMappingFor(c, sf.tx_maps, a, static_cast<uint32_t>(b - a),
                                              fin && last, data, ssn, sf.initial),
                                 data_ack);
      if (!AddMptcp(opts, opt)) {
        counters_.Inc(Counter::kOptionSpace);
        a = b;
        continue;
      }
      if (p.tcp.has(tcp_flags::kAck) && sf.sack && !sf.rx_ooo.empty()) {
        counters_.Inc(AddSubflowSack(opts, sf) > 0 ? Counter::kSackTx : Counter::kSackRoom);
      }
      auto pkt = packet::BuildTcpPacket(sf.tuple, h, opts, data, sf.ttl);
      if (!pkt) {
        counters_.Inc(Counter::kForgeError);
      } else {
        actions.forged.push_back(packet::ForgedPacket{std::move(pkt.value()), sf.ifindex});
        sf.bytes_tx += b - a;
        if (p.tcp.has(tcp_flags::kAck)) sf.rx_san_sent = std::max(sf.rx_san_sent, sf.rx_san);
      }
      a = b;
    }
  }
  if (end > c.tx_high) {
    c.bytes_tx += end - std::max(c.tx_high, off);
    c.tx_high = end;
  }
  if (fin) {
    if (!c.tx_fin) counters_.Inc(Counter::kDataFinTx);
    c.tx_fin = end;
  }
  c.last_window = p.tcp.window;
  if (ts) {
    packet::TimestampsOption t = c.last_ts.value_or(*ts);
    t.tsval = ts->tsval;
    c.last_ts = t;
  }
  counters_.Inc(Counter::kTxStraddleSplit);
  out.verdict = packet::Verdict::kDrop;
  return true;
}

bool Engine::FitOption(TcpPacket& p, Option& opt) {
  // Same room-making order as the single-path path (engine.cc): NOPs, 32-bit DATA_ACK, SACK.
  if (AddMptcp(p.options, opt)) return true;
  p.options.RemoveAll(tcp_opt::kNop);
  if (AddMptcp(p.options, opt)) return true;
  if (Dss* d = std::get_if<Dss>(&opt); d != nullptr && d->data_ack && d->data_ack->is64) {
    d->data_ack->is64 = false;
    d->data_ack->value &= 0xffffffffu;
    if (AddMptcp(p.options, opt)) return true;
  }
  return false;
}

void Engine::OutboundMulti(Time now, Connection& c, TcpPacket& p, PacketOut& out,
                           packet::Actions& actions) {
  const uint32_t len = static_cast<uint32_t>(p.payload_len);
  const bool fin = p.tcp.has(tcp_flags::kFin);
  const bool rst = p.tcp.has(tcp_flags::kRst);
  if (p.payload_len > 0xfffe) {
    counters_.Inc(Counter::kTooLarge);
    out.verdict = packet::Verdict::kDrop;
    return;
  }
  const std::optional<uint64_t> seq_off = OffsetOf(p.tcp.seq, c.tx_isn, c.tx_high);

  // DATA_ACK from the TCP ACK (seed §3.4); each subflow acknowledges the bytes it carried whose
  // data the local stack acknowledged (seed §3.5, one table per subflow).
  std::optional<DssDataAck> data_ack;
  if (p.tcp.has(tcp_flags::kAck)) {
    if (auto tan = OffsetOf(p.tcp.ack, c.rx_isn, c.rx_dan)) c.rx_dan = std::max(c.rx_dan, *tan);
    const uint64_t data_limit = std::min(c.rx_dan, c.rx_data_fin.value_or(kNoLimit));
    const bool data_fin_acked = c.rx_data_fin && c.rx_dan > *c.rx_data_fin;
    for (auto& s : c.subflows) {
      Subflow& sf = *s;
      if (InHandshake(sf)) continue;
      // What arrived in order on the subflow (rx_san, NoteReceived), or further where the local
      // stack's DATA_ACK covers bytes this subflow's mappings carry (delivered another way).
      // Never beyond the highest SSN received: a bulk mapping (Linux maps up to 64 KiB at once)
      // covers bytes the peer has not sent on this subflow yet, whose data the local stack may
      // already have from another subflow (a reinjection after break-before-make), and an ACK
      // above the peer's SND.NXT is ignored (RFC 9293 §3.10.7.4), which stalls the subflow.
      uint64_t san =
          std::max(sf.rx_san, std::min(sf.recv.AckedPrefix(sf.rx_san, data_limit), sf.rx_ssn_high));
      // A subflow FIN is acknowledged once the DATA_FIN is (RFC 8684 §3.3.3), or at once when the
      // peer closed only this subflow.
      if (sf.rx_sfin && san == *sf.rx_sfin &&
          (data_fin_acked || sf.state == SubflowState::kClosing)) {
        ++san;
      }
      sf.rx_san = san;
      AbsorbOoo(sf);
      sf.recv.ForgetBelow(std::min(sf.rx_san, sf.rx_ssn_high));
    }
    data_ack = DssDataAck{c.remote_idsn + 1 + c.rx_dan, true};
  }

  // Which subflow, and where on it (SEND table, seed §3.3).
  Subflow* sf = nullptr;
  uint64_t ssn = 0;
  if (rst) {
    sf = !c.subflows.empty() && Alive(*c.subflows[0]) && !c.subflows[0]->gone ? c.subflows[0].get()
                                                                              : c.active;
  } else if (seq_off && len > 0) {
    const uint64_t off = *seq_off;
    // Seed §3.3: an SSN range stays with the subflow that first carried it while that subflow is
    // usable (the peer's TCP receiver there waits for exactly those bytes); a segment the local
    // stack collapsed across entries (RTO) is therefore sent piecewise, never moved whole.
    Subflow* routed = nullptr;
    uint64_t routed_ssn = 0;
    if (off < c.tx_high &&
        SendStraddle(now, c, p, off, data_ack, out, actions, routed, routed_ssn)) {
      return;
    }
    const MapEntry* e = off < c.tx_high ? c.send.Find(off) : nullptr;
    Subflow* orig = e != nullptr && off + len <= e->src_end() ? SubflowById(c, e->tag) : nullptr;
    if (orig != nullptr && orig->usable()) {
      orig = RetransmitTarget(now, c, orig, e->dst + (off - e->src), len, actions);
    }
    if (routed != nullptr) {
      // Routed (and recorded in the SEND table) piece by piece, all onto one subflow.
      sf = routed;
      ssn = routed_ssn;
    } else if (orig != nullptr && orig->usable()) {
      // A retransmission goes where it first went, at the same SSNs.
      sf = orig;
      ssn = e->dst + (off - e->src);
      counters_.Inc(Counter::kTxSameSubflow);
    } else if (c.active != nullptr) {
      // New data, or a retransmission whose subflow is gone (retired, removed, or left by a
      // break-before-make: its SSN space is never needed again): fresh SSN space on the active
      // one (a new mapping for the same DSNs).
      sf = c.active;
      ssn = sf->tx_ssn_next;
      if (off > c.tx_high) {
        // Seed §3.3: a segment that overtook earlier local data (e.g. one lost before our hook)
        // gets the SSNs it would have had; the gap keeps its SSN space on this subflow (a SEND
        // entry for bytes not seen yet), so the late bytes land there, and the mapping stays
        // monotonous instead of the Figure 5 curve the ACK translation has to untangle.
        const uint64_t gap = off - c.tx_high;
        if (gap <= kMaxReservedGap &&
            c.send.Insert(c.tx_high, ssn, gap, sf->id) != InsertResult::kConflict) {
          ssn += gap;
          sf->tx_ssn_next += gap;
          counters_.Inc(Counter::kTxGapReserved);
        } else {
          counters_.Inc(Counter::kTxGapNotReserved);
        }
      }
      if (c.send.Insert(off, ssn, len, sf->id) == InsertResult::kConflict) {
        c.send.Assign(off, ssn, len, sf->id);
      }
      sf->tx_ssn_next += len;
      if (off < c.tx_high) counters_.Inc(Counter::kTxMovedSubflow);
    }
  } else {
    // Pure ACK or lone FIN: on the active subflow, unless only another subflow's ACK advanced
    // (a pure ACK without news on a subflow is a duplicate ACK to its sender, seed §3.4).
    // Seed §3.4: a duplicate ACK goes only where it means something: a subflow that received
    // payload above a hole (its sender needs dupacks/SACK to recover there, not on the active
    // subflow, whose sender would retransmit spuriously).
    sf = c.active;
    if (!fin && sf != nullptr && sf->rx_san <= sf->rx_san_sent) {
      Subflow* holed = nullptr;
      Subflow* news = nullptr;
      for (auto& s : c.subflows) {
        if (!Alive(*s) || s->gone) continue;
        if (news == nullptr && s->rx_san > s->rx_san_sent) news = s.get();
        if (holed == nullptr && !s->rx_ooo.empty()) holed = s.get();
      }
      if (news != nullptr) {
        sf = news;
      } else if (holed != nullptr && sf->rx_ooo.empty()) {
        sf = holed;
      }
    }
  }
  if (rst && (sf == nullptr || !(Alive(*sf) && !sf->gone))) {
    // Nothing left to carry the abort: the connection ends here all the same.
    counters_.Inc(Counter::kRstTx);
    ResetJoins(c, actions);
    Close(now, c);
    out.verdict = packet::Verdict::kDrop;
    return;
  }
  if (sf == nullptr || !(Alive(*sf) && !sf->gone)) {
    // Break-before-make before the new subflow is up, or every subflow closed: the local stack
    // retransmits what it sent (RTO) once there is somewhere to send it.
    counters_.Inc(Counter::kNoSubflow);
    out.verdict = packet::Verdict::kDrop;
    return;
  }

  if (rst) {
    // Local abort: MP_FASTCLOSE + MP_TCPRST on this subflow (interop §1.6), RST on every other.
    counters_.Inc(Counter::kRstTx);
    for (auto& s : c.subflows) {
      if (s.get() != sf && (Alive(*s) || InHandshake(*s)) && !s->gone) {
        ForgeRstOn(c, *s, static_cast<uint8_t>(TcpRstReason::kUnspecified), actions);
      }
    }
    p.options.RemoveAll(tcp_opt::kMptcp);
    p.options.RemoveAll(tcp_opt::kSack);
    MpFastclose fc;
    fc.receiver_key = c.remote_key;
    MpTcpRst r;
    r.reason = static_cast<uint8_t>(TcpRstReason::kUnspecified);
    if (AddMptcp(p.options, fc)) counters_.Inc(Counter::kFastcloseTx);
    (void)AddMptcp(p.options, r);
    p.ip.src = sf->tuple.src;
    p.ip.dst = sf->tuple.dst;
    p.tcp.sport = sf->tuple.sport;
    p.tcp.dport = sf->tuple.dport;
    p.tcp.seq = SndNxt(*sf);
    if (p.tcp.has(tcp_flags::kAck)) p.tcp.ack = WireOf(sf->rx_isn, sf->rx_san);
    Close(now, c);
    Emit(p, out);
    return;
  }

  Option opt;
  bool have_opt = true;
  if (seq_off && (len > 0 || fin)) {
    if (len > 0 && *seq_off + len > c.tx_high) {
      const uint64_t fresh = *seq_off + len - std::max(c.tx_high, *seq_off);
      c.bytes_tx += fresh;
      c.tx_high = *seq_off + len;
    }
    if (len > 0) sf->bytes_tx += len;
    if (fin) {
      if (!c.tx_fin) counters_.Inc(Counter::kDataFinTx);
      c.tx_fin = *seq_off + len;
    }
    opt = MappingOption(
        c, TxMappingFor(c, sf->tx_maps, *seq_off, len, fin, p.payload(), ssn, sf->initial),
        data_ack);
  } else if (data_ack) {
    Dss dss;
    dss.data_ack = data_ack;
    opt = dss;
    counters_.Inc(Counter::kDssTx);
  } else {
    have_opt = false;
  }

  // Onto the subflow: its tuple and sequence spaces (seed §3.2, §3.3).
  p.ip.src = sf->tuple.src;
  p.ip.dst = sf->tuple.dst;
  p.tcp.sport = sf->tuple.sport;
  p.tcp.dport = sf->tuple.dport;
  if (len > 0) {
    p.tcp.seq = WireOf(sf->tx_isn, ssn);
  } else {
    // An empty segment sits at the subflow's next sequence number, except a keepalive probe
    // (RFC 9293 §3.8.4: one below it), which must stay one below so that the peer answers it.
    const uint32_t local_nxt = WireOf(c.tx_isn, c.tx_high + (c.tx_fin ? 1 : 0));
    p.tcp.seq = SndNxt(*sf) - (p.tcp.seq == local_nxt - 1 && !fin ? 1 : 0);
  }
  if (p.tcp.has(tcp_flags::kAck)) p.tcp.ack = WireOf(sf->rx_isn, sf->rx_san);
  p.tcp.flags = static_cast<uint8_t>(p.tcp.flags & ~tcp_flags::kFin);
  c.last_window = p.tcp.window;
  if (auto ts = p.options.Timestamps()) {
    packet::TimestampsOption t = c.last_ts.value_or(*ts);
    t.tsval = ts->tsval;
    c.last_ts = t;
    if (sf->ts) {
      // tsval stays the local stack's clock; tsecr echoes what this subflow's peer sent.
      (void)SetTimestamps(p.options, {ts->tsval, sf->ts_recent});
    } else {
      p.options.RemoveAll(tcp_opt::kTimestamps);
    }
  }
  // SACK blocks are in TSN space; with several subflows they cannot be passed as they are.
  if (p.options.RemoveAll(tcp_opt::kSack) > 0) counters_.Inc(Counter::kSackStripped);
  p.options.RemoveAll(tcp_opt::kMptcp);
  if (have_opt && !FitOption(p, opt)) {
    counters_.Inc(Counter::kOptionSpace);
    out.verdict = packet::Verdict::kDrop;
    return;
  }
  if (p.tcp.has(tcp_flags::kAck) && sf->sack && !sf->rx_ooo.empty()) {
    counters_.Inc(AddSubflowSack(p.options, *sf) > 0 ? Counter::kSackTx : Counter::kSackRoom);
  }
  if (p.tcp.has(tcp_flags::kAck)) sf->rx_san_sent = std::max(sf->rx_san_sent, sf->rx_san);

  // Seed §3.4: one subflow ACK for every subflow that contributed to the TCP ACK's increment;
  // and each pure ACK of the local stack is repeated (a duplicate ACK, with SACK where
  // negotiated) on every subflow holding payload above a hole, so that its sender sees the
  // dupacks a TCP receiver would send there and fast-retransmits instead of waiting for its RTO.
  const bool pure_ack = len == 0 && !fin && p.tcp.has(tcp_flags::kAck);
  for (auto& s : c.subflows) {
    if (s.get() == sf || !Alive(*s) || s->gone) continue;
    const bool news = s->rx_san > s->rx_san_sent;
    if (!news && !(pure_ack && !s->rx_ooo.empty())) continue;
    if (ForgeOn(c, *s, tcp_flags::kAck, SndNxt(*s), {}, actions)) {
      counters_.Inc(news ? Counter::kSideAckTx : Counter::kDupAckTx);
    }
  }
  Emit(p, out);
}

void Engine::InboundMulti(Time now, Connection& c, Subflow& sf, TcpPacket& p,
                          const SegmentOptions& opts, PacketOut& out, packet::Actions& actions) {
  const uint32_t len = static_cast<uint32_t>(p.payload_len);
  const bool rst = p.tcp.has(tcp_flags::kRst);
  const bool sfin = p.tcp.has(tcp_flags::kFin);
  bool deliver_fin = false;
  bool ack_advanced = false;
  out.Reset();
  if (rst && !SubflowRstAccepted(c, sf, p, opts, actions)) {
    out.verdict = packet::Verdict::kDrop;  // RFC 5961 §3.2, before anything in it is used
    return;
  }

  const std::optional<packet::TimestampsOption> ts = p.options.Timestamps();
  if (ts) sf.ts_recent = ts->tsval;

  // MP_PRIO rides on a pure ACK, which nothing retransmits: if the one that made this subflow a
  // backup was lost, the peer keeps scheduling new data here at full rate (seen on the real
  // kernel under load). Data still arriving on a subflow we marked backup gets the MP_PRIO
  // again, at most every kPrioRepeat (the first repeats cover data that was in flight; Linux
  // applies a repeated MP_PRIO idempotently, RFC 8684 §3.3.8).
  if (len > 0 && sf.backup_local && sf.usable() && now - sf.prio_sent >= kPrioRepeat) {
    sf.prio_sent = now;
    MpPrio prio;
    prio.backup = true;
    if (ForgeOn(c, sf, tcp_flags::kAck, SndNxt(sf), {prio}, actions)) {
      counters_.Inc(Counter::kMpPrioRepeated);
    }
  }

  // With several subflows there is no clean fallback to plain TCP (RFC 8684 §3.7, interop §1.8:
  // Linux resets instead): such segments are dropped, counted.
  const bool infinite = opts.dss && opts.dss->mapping && opts.dss->mapping->infinite();
  const bool silent = len > 0 && !opts.dss && !opts.mp_capable && !rst;
  if (opts.mp_fail) counters_.Inc(Counter::kMpFailRx);
  if (infinite || silent || opts.mp_fail) {
    counters_.Inc(Counter::kMultiFallback);
    out.verdict = packet::Verdict::kDrop;
    return;
  }
  if (opts.add_addr && !rst && Alive(sf) && !sf.gone) OnAddAddr(c, &sf, *opts.add_addr, actions);
  bool fastclose = false;
  if (opts.mp_fastclose) {
    if (opts.mp_fastclose->receiver_key == c.local_key) {
      counters_.Inc(Counter::kFastcloseRx);
      fastclose = true;
    } else {
      counters_.Inc(Counter::kFastcloseBadKey);
    }
  }
  // Signalling (RFC 8684 §3.3.8 MP_PRIO, §3.4.2 REMOVE_ADDR).
  if (opts.mp_prio) {
    counters_.Inc(Counter::kMpPrioRx);
    sf.backup_remote = opts.mp_prio->backup;
    if (!sf.backup_remote && !sf.backup_local && sf.usable()) {
      // The peer asks for this subflow now (seed §5.3: how a handover is signalled); its MP_PRIO
      // backup on the old one may have been lost with the old path.
      c.active = &sf;
    } else {
      SelectActive(c);
    }
  }
  if (opts.remove_addr) {
    counters_.Inc(Counter::kRemoveAddrRx);
    for (uint8_t id : opts.remove_addr->list()) {
      for (auto& s : c.subflows) {
        if (s.get() != &sf && s->remote_id == id && s->state != SubflowState::kClosed) {
          CloseSubflow(now, c, *s);
        }
      }
    }
    SelectActive(c);
  }
  if (sf.initial && opts.mp_capable && opts.mp_capable->is_ack_form() &&
      opts.mp_capable->form != MpCapable::Form::kAck && opts.mp_capable->data_len > 0) {
    if (sf.recv.Insert(0, 0, opts.mp_capable->data_len) == InsertResult::kConflict) {
      counters_.Inc(Counter::kMappingConflict);
    }
  }

  const Dss* dss = opts.dss ? &*opts.dss : nullptr;
  if (dss != nullptr) counters_.Inc(Counter::kDssRx);
  const std::optional<uint64_t> seg_off = OffsetOf(p.tcp.seq, sf.rx_isn, sf.rx_ssn_high);
  std::optional<uint64_t> pkt_dan;
  if (dss != nullptr && dss->data_ack) {
    if (c.role == Role::kActive) c.peer_dss_seen = true;
    const DataSeq base(c.local_idsn + 1);
    const DataSeq dan =
        dss->data_ack->is64
            ? DataSeq(dss->data_ack->value)
            : packet::Expand32(base + c.tx_acked, static_cast<uint32_t>(dss->data_ack->value));
    const int64_t off = dan - base;
    const uint64_t sent = c.tx_high + (c.tx_fin ? 1 : 0);
    if (off >= 0 && static_cast<uint64_t>(off) > sent) {
      counters_.Inc(Counter::kDataAckBeyondSent);
    } else if (off >= 0) {
      pkt_dan = static_cast<uint64_t>(off);
      if (*pkt_dan > c.tx_acked) {
        c.tx_acked = *pkt_dan;
        ack_advanced = true;
        // DATA_ACKed bytes are never retransmitted: their routes and mappings can go.
        c.send.ForgetBelow(c.tx_acked);
        for (auto& s : c.subflows) {
          while (!s->tx_maps.empty() && s->tx_maps.front().end() <= c.tx_acked) {
            s->tx_maps.pop_front();
          }
        }
      }
    }
  } else if (!rst) {
    counters_.Inc(Counter::kNoDataAck);
  }

  if (dss != nullptr && dss->mapping &&
      !TakePeerMapping(c, *dss, p, seg_off, sf.rx_ssn_high, sf.recv, sf.rx_shifted)) {
    out.verdict = packet::Verdict::kDrop;
    return;
  }

  // Towards the local stack: the TCP-side tuple (seed §3.2).
  p.ip.src = c.tuple.dst;
  p.ip.dst = c.tuple.src;
  p.tcp.sport = c.tuple.dport;
  p.tcp.dport = c.tuple.sport;

  const uint64_t rcv_nxt = std::max(c.rx_dan, c.rx_dsn_high + (c.rx_fin_delivered ? 1 : 0));
  if (rst && !fastclose) {
    // A reset of this subflow only (RFC 8684 §3.3.5: MP_TCPRST says why): the connection lives
    // on while another subflow does.
    counters_.Inc(Counter::kSubflowRstRx);
    CloseSubflow(now, c, sf);
    bool any = false;
    for (auto& s : c.subflows) any = any || (Alive(*s) && !s->gone) || InHandshake(*s);
    if (any) {
      out.verdict = packet::Verdict::kDrop;
      return;
    }
  }
  if (fastclose || rst) {
    counters_.Inc(Counter::kRstRx);
    p.tcp.flags = tcp_flags::kRst | tcp_flags::kAck;
    p.tcp.seq = WireOf(c.rx_isn, rcv_nxt);
    p.tcp.ack = WireOf(c.tx_isn, c.tx_acked);
    p.options.RemoveAll(tcp_opt::kMptcp);
    p.options.RemoveAll(tcp_opt::kSack);
    for (auto& s : c.subflows) {
      if (s->state != SubflowState::kClosed) CloseSubflow(now, c, *s);
    }
    Close(now, c);
    Emit(p, out);
    return;
  }

  if (len > 0 && seg_off && *seg_off + len <= sf.rx_san && Alive(sf) && !sf.gone) {
    // A retransmission of bytes this subflow already acknowledged (our ACK was lost or late):
    // answer it on this subflow (seed §3.4: "a payload retransmission has traveled in opposite
    // direction on this subflow"), as a TCP receiver answers an old segment (RFC 9293 §3.10.7.4).
    if (ForgeOn(c, sf, tcp_flags::kAck, SndNxt(sf), {}, actions)) {
      counters_.Inc(Counter::kRxDupAckTx);
    }
  }
  if (len > 0) {
    const std::optional<uint64_t> mapped = MapToTsn(sf.recv, seg_off, len, sf.rx_san);
    if (!mapped) {
      out.verdict = packet::Verdict::kDrop;
      return;
    }
    const uint64_t tsn_off = *mapped;
    p.tcp.seq = WireOf(c.rx_isn, tsn_off);
    sf.rx_ssn_high = std::max(sf.rx_ssn_high, *seg_off + len);
    if (!NoteReceived(sf, *seg_off, *seg_off + len)) counters_.Inc(Counter::kRxOutOfOrder);
    sf.bytes_rx += len;
    if (tsn_off + len > c.rx_dsn_high) {
      c.bytes_rx += tsn_off + len - std::max(c.rx_dsn_high, tsn_off);
      c.rx_dsn_high = tsn_off + len;
    }
    if (c.rx_data_fin && tsn_off + len == *c.rx_data_fin) deliver_fin = true;
    if (sf.gone && sf.rx_san > sf.rx_san_sent &&
        ForgeOn(c, sf, tcp_flags::kAck, SndNxt(sf), {}, actions)) {
      // Data on a subflow we left (break-before-make, or removed): the path works after all and
      // the peer still has to drain what it queued there (its REMOVE_ADDR handling shuts the
      // subflow down behind that data). Without ACKs its window never opens and the rest waits
      // for the peer's MPTCP-level retransmission timer. Only ACKs go out on it, no data.
      counters_.Inc(Counter::kGoneSubflowAckTx);
    }
  } else if (dss != nullptr && dss->data_fin && c.rx_data_fin) {
    p.tcp.seq = WireOf(c.rx_isn, *c.rx_data_fin);
    deliver_fin = true;
  } else if (seg_off) {
    // Keep an empty segment's position relative to the stream head (engine.cc explains why).
    const uint64_t pos = *seg_off - (sf.rx_sfin && *seg_off > *sf.rx_sfin ? 1 : 0);
    const int64_t delta = static_cast<int64_t>(pos - sf.rx_ssn_high);
    p.tcp.seq = WireOf(c.rx_isn,
                       c.rx_dsn_high + static_cast<uint64_t>(delta) + (c.rx_fin_delivered ? 1 : 0));
  }
  // An empty segment with no position in this subflow's space (before its ISN + 1) would reach
  // the local stack with the subflow's raw sequence number: dropped below, once its ACK and
  // signalling have been taken into account.
  const bool unmapped = len == 0 && !deliver_fin && !seg_off;

  bool sfin_only = false;
  if (sfin && seg_off) {
    const uint64_t at = *seg_off + len;
    if (!sf.rx_sfin) counters_.Inc(Counter::kSubflowFinRx);
    sf.rx_sfin = at;
    sfin_only = len == 0 && !deliver_fin;
    if (!c.rx_data_fin && !sf.sfin_sent && sf.state == SubflowState::kEstablished) {
      // The peer closes just this subflow (RFC 8684 §3.3.3 leaves subflows independent): answer
      // with our FIN on it, keep the connection, move sending elsewhere.
      counters_.Inc(Counter::kSubflowClosedRx);
      sf.state = SubflowState::kClosing;
      if (sf.rx_san >= at) sf.rx_san = at + 1;
      const bool was_active = c.active == &sf;
      sf.gone = true;  // nothing new is sent on it
      SendFinOn(now, c, sf, actions);
      if (was_active) SelectActive(c);
    } else if (c.tx_fin_acked && !sf.sfin_sent && sf.state == SubflowState::kEstablished) {
      SendFinOn(now, c, sf, actions);  // our DATA_FIN is done: this subflow closes too
    } else if (sf.gone && sf.state == SubflowState::kClosed && len > 0 && sf.rx_san >= at) {
      // The peer shuts a subflow we left down behind its data (its REMOVE_ADDR handling):
      // acknowledge that FIN too, or it retransmits it until its own timeout.
      sf.rx_san = at + 1;
      if (ForgeOn(c, sf, tcp_flags::kAck, SndNxt(sf), {}, actions)) {
        counters_.Inc(Counter::kGoneSubflowAckTx);
      }
    }
  }
  if (deliver_fin) {
    p.tcp.flags = static_cast<uint8_t>(p.tcp.flags | tcp_flags::kFin);
    c.rx_fin_delivered = true;
  } else {
    p.tcp.flags = static_cast<uint8_t>(p.tcp.flags & ~tcp_flags::kFin);
  }

  const uint32_t wire_ack = p.tcp.ack;
  if (p.tcp.has(tcp_flags::kAck)) {
    if (auto san = OffsetOf(wire_ack, sf.tx_isn, sf.tx_san); san && *san > sf.tx_san) {
      sf.tx_san = *san;
      sf.retx_no_progress = 0;
    }
  }
  if (pkt_dan && *pkt_dan < c.tx_acked) counters_.Inc(Counter::kStaleDataAck);
  p.tcp.ack = WireOf(c.tx_isn, pkt_dan.value_or(c.tx_acked));
  // Our forged subflow FIN is acknowledged by the subflow ACK.
  if (sf.sfin_sent && !sf.sfin_acked &&
      !packet::Before(packet::SubflowSeq(wire_ack),
                      packet::SubflowSeq(WireOf(sf.tx_isn, sf.tx_ssn_next + 1)))) {
    sf.sfin_acked = true;
    sf.due.reset();
    if (sf.state == SubflowState::kClosing && sf.rx_sfin) sf.state = SubflowState::kClosed;
  }
  if (len == 0 && !deliver_fin && !sfin && sf.usable() && (unmapped || *seg_off < sf.rx_san) &&
      (unmapped || &sf != c.active)) {
    // A keepalive or zero-window probe: one below what we acknowledged on this subflow
    // (RFC 9293 §3.8.4), sent so that the receiver answers with an ACK. The local stack's ACKs go
    // on the active subflow, so only that one's probes may be left to it; the others' are
    // answered here, on their own subflow, or the peer's keepalive resets an idle backup path.
    if (ForgeOn(c, sf, tcp_flags::kAck, SndNxt(sf), {}, actions)) {
      counters_.Inc(Counter::kProbeAckTx);
    }
  }
  if (unmapped) {
    counters_.Inc(Counter::kSubflowSeqUnmapped);
    out.verdict = packet::Verdict::kDrop;
    return;
  }
  if (c.tx_fin && c.tx_acked > *c.tx_fin && !c.tx_fin_acked) {
    // RFC 8684 §3.3.3: after the DATA_FIN is acknowledged, every subflow closes.
    c.tx_fin_acked = true;
    for (auto& s : c.subflows) {
      if (s->state == SubflowState::kEstablished && !s->gone) SendFinOn(now, c, *s, actions);
    }
  }
  p.options.RemoveAll(tcp_opt::kMptcp);
  const bool sack_news = ProjectPeerSack(c, sf, p);

  // A duplicate ACK that brings SACK blocks is news: it is how the local stack learns of a loss
  // on this subflow (fast retransmit instead of an RTO), whichever subflow it came on.
  const bool no_news = len == 0 && !deliver_fin && !ack_advanced && !sack_news;
  if (sfin_only && !ack_advanced) {
    if (sf.rx_sfin &&
        ((c.rx_data_fin && c.rx_dan > *c.rx_data_fin) || sf.state != SubflowState::kEstablished)) {
      sf.rx_san = std::max(sf.rx_san, *sf.rx_sfin + 1);
      if (sf.rx_san > sf.rx_san_sent && ForgeOn(c, sf, tcp_flags::kAck, SndNxt(sf), {}, actions)) {
        counters_.Inc(Counter::kSubflowAckTx);
      }
    }
    out.verdict = packet::Verdict::kDrop;
    return;
  }
  if (no_news && c.tx_fin_acked) {
    counters_.Inc(Counter::kSubflowOnlyConsumed);
    out.verdict = packet::Verdict::kDrop;
    return;
  }
  if (no_news && (opts.add_addr || opts.remove_addr || opts.mp_prio)) {
    counters_.Inc(Counter::kSignalConsumed);
    out.verdict = packet::Verdict::kDrop;
    return;
  }
  if (no_news && &sf != c.active) {
    // It would be a duplicate ACK to the local stack, which could fast-retransmit on it.
    counters_.Inc(Counter::kNonActiveAckConsumed);
    out.verdict = packet::Verdict::kDrop;
    return;
  }

  // Window: the local stack scales it by the initial subflow's shift (RFC 7323 §2.3).
  const uint8_t init_shift = c.local_ws && c.peer_ws ? c.peer_wscale : 0;
  if (sf.peer_wscale != init_shift) {
    const uint64_t bytes = uint64_t{p.tcp.window} << std::min<uint8_t>(sf.peer_wscale, 14);
    p.tcp.window = static_cast<uint16_t>(
        std::min<uint64_t>(bytes >> std::min<uint8_t>(init_shift, 14), 0xffff));
    counters_.Inc(Counter::kWindowRescaled);
  }
  // Timestamps: each subflow's peer clock has its own offset (Linux: per address pair); the local
  // stack must see one monotonic sequence or PAWS drops segments (RFC 7323 §5).
  if (ts) {
    if (!sf.ts_offset_set) {
      sf.ts_offset = c.rx_ts_set ? c.rx_ts_high - ts->tsval : 0;
      sf.ts_offset_set = true;
    }
    uint32_t tsval = ts->tsval + sf.ts_offset;
    if (c.rx_ts_set && static_cast<int32_t>(tsval - c.rx_ts_high) < 0) {
      sf.ts_offset += c.rx_ts_high - tsval;
      tsval = c.rx_ts_high;
      counters_.Inc(Counter::kTsOffsetAdjusted);
    }
    c.rx_ts_high = tsval;
    c.rx_ts_set = true;
    (void)SetTimestamps(p.options, {tsval, ts->tsecr});
  }
  Emit(p, out);
}

bool Engine::ProjectPeerSack(const Connection& c, const Subflow& sf, TcpPacket& p) {
  std::array<packet::SackBlock, 4> wire{};
  const size_t n = p.options.SackBlocks(wire);
  // Removed even when unparsable: the blocks speak of SSNs, never of the local stack's TSNs.
  if (p.options.RemoveAll(tcp_opt::kSack) > 0 && n == 0) counters_.Inc(Counter::kSackStripped);
  if (n == 0) return false;
  // The peer's SACK blocks speak about this subflow's SSN space; the local stack (our sender)
  // knows only TSNs. Seed §3.5: project them through the SEND table restricted to this subflow
  // (tag = subflow id): a TSN is reported only if the bytes this subflow carried for it arrived.
  // The subflow's cumulative ACK is deliberately not a block here (window 0): after a
  // make-before-break the new subflow's data overtakes the old one's queue, and reporting it
  // would make the local stack's RACK declare the old path's in-flight data lost (spurious
  // retransmissions); the DATA_ACK already carries the cumulative part (seed §3.4). Measured
  // (bench/handover.sh pp_mbb, 5 runs each): with the cumulative block the sender retransmitted
  // 3400-6200 segments per run and the new path's limiter dropped 98-226 packets; without it
  // 640-1260 and 13-45.
  const bool local_sack = c.local_sack && c.peer_sack;
  if (local_sack && p.tcp.has(tcp_flags::kAck)) {
    AckInfo in;
    in.cum = sf.tx_san;
    for (size_t i = 0; i < n; ++i) {
      const auto l = OffsetOf(wire[i].left, sf.tx_isn, sf.tx_san);
      const auto r = OffsetOf(wire[i].right, sf.tx_isn, sf.tx_san);
      if (l && r && *r > *l) in.AddSack(Interval{*l, *r});
    }
    const uint64_t tcp_ack = c.tx_acked;
    AckProjectionOptions opt;
    opt.window = 0;
    opt.max_sack_blocks = p.options.Timestamps() ? 3 : 4;
    const ProjectedAck out =
        projector_.Project(c.send, ProjectionDirection::kDstToSrc, sf.id, in, tcp_ack, opt);
    std::array<packet::SackBlock, 4> blocks{};
    size_t m = 0;
    for (const Interval& b : out.ack.sack_blocks()) {
      blocks[m++] = packet::SackBlock{WireOf(c.tx_isn, b.begin), WireOf(c.tx_isn, b.end)};
    }
    // Blocks reaching down to the DATA_ACK extend the projected cumulative ACK; the TCP ACK stays
    // the DATA_ACK (what the peer acknowledged at data level), the rest is reported as a block.
    if (out.advanced && m < opt.max_sack_blocks) {
      blocks[m++] =
          packet::SackBlock{WireOf(c.tx_isn, tcp_ack), WireOf(c.tx_isn, out.ack.cum)};
    }
    while (m > 0 && !p.options.AddSack(std::span<const packet::SackBlock>(blocks.data(), m))) --m;
    if (m > 0) {
      counters_.Inc(Counter::kSackProjected);
      return true;
    }
  }
  counters_.Inc(Counter::kSackStripped);
  return false;
}

void Engine::MaybeCloseMulti(Time now, Connection& c) {
  // The connection is done once every subflow that carried the close is closed both ways.
  if (c.state != ConnState::kEstablished || !c.tx_fin_acked || !c.rx_fin_delivered) return;
  for (const auto& s : c.subflows) {
    const Subflow& sf = *s;
    if (sf.state == SubflowState::kClosed || InHandshake(sf) || sf.gone) continue;
    if (!sf.sfin_acked || !sf.rx_sfin || sf.rx_san <= *sf.rx_sfin) return;
  }
  Close(now, c);
}

// ---------------------------------------------------------------------------------------------
// Timers.

void Engine::JoinTimers(Time now, Connection& c, packet::Actions& actions) {
  std::vector<uint32_t> due;
  for (const auto& sf : c.subflows) {
    if (sf->due && *sf->due <= now) due.push_back(sf->id);
  }
  for (uint32_t id : due) {
    Subflow* sf = SubflowById(c, id);
    if (sf == nullptr) continue;
    sf->due.reset();
    switch (sf->state) {
      case SubflowState::kSynSent:
      case SubflowState::kPreEstablished:
      case SubflowState::kSynReceived:
        if (sf->tries >= config_.join_retries) {
          counters_.Inc(Counter::kJoinTimeout);
          if (sf->state == SubflowState::kPreEstablished) {
            ForgeRstOn(c, *sf, static_cast<uint8_t>(TcpRstReason::kMptcpError), actions);
          }
          FinishHandover(now, *sf, false, "join timed out");
          FreeSubflow(c, *sf);
        } else if (sf->state == SubflowState::kSynSent) {
          SendJoinSyn(now, c, *sf, actions);
        } else if (sf->state == SubflowState::kPreEstablished) {
          SendJoinThirdAck(now, c, *sf, actions);
        } else {
          SendJoinSynAck(now, c, *sf, actions);
        }
        break;
      case SubflowState::kEstablished:
      case SubflowState::kClosing:
        if (sf->sfin_sent && !sf->sfin_acked) {
          if (sf->sfin_tries >= config_.fin_retries) {
            counters_.Inc(Counter::kTimeoutFin);
            CloseSubflow(now, c, *sf);
          } else {
            SendFinOn(now, c, *sf, actions);
          }
        }
        break;
      case SubflowState::kClosed:
        break;
    }
  }
}

void Engine::MultiTimer(Time now, Connection& c, packet::Actions& actions) {
  JoinTimers(now, c, actions);
  AnnounceTimers(now, c, actions);
  if (now - c.last_activity >= config_.idle_timeout) {
    counters_.Inc(Counter::kTimeoutIdle);
    Erase(c);
    return;
  }
  MaybeCloseMulti(now, c);
  if (c.state == ConnState::kEstablished) {
    // Every subflow closed (FINs given up, resets): nothing can carry the connection any more.
    bool open = false;
    for (const auto& s : c.subflows) open = open || s->state != SubflowState::kClosed;
    if (!open) Close(now, c);
  }
  if (c.state != ConnState::kEstablished) return;  // Close() armed the linger timer
  Time next = c.last_activity + config_.idle_timeout;
  if (auto due = SubflowDue(c)) next = std::min(next, *due);
  Schedule(c, next);
}

}  // namespace mproxy::mptcp
