// Path MTU discovery through the engine (RFC 1191, RFC 8201; mptcp/DESIGN.md "Path MTU").
//
// A router's ICMP "fragmentation needed" / "packet too big" quotes the segment as it was on the
// wire: a subflow's tuple and subflow sequence number (SSN), with our MPTCP options in it. The
// local stack looks the socket up by the quoted addresses and ports (tcp_v4_err(), tcp_v6_err())
// and drops the message unless the quoted sequence number lies in its [snd_una, snd_nxt] (TSN
// space). So an inbound message about one of our outbound segments is translated to the local
// stack's view: the connection's TCP-side tuple, the SSN mapped back to a TSN through the SEND
// table (seed §3.3), and an MTU lowered by what our options may add to a segment. The outer
// header is left alone: the socket lookup uses only the quote, and the outer destination (a join's
// local address) is one of ours, so the message is still delivered locally.
#include "packet/icmp.h"

#include <algorithm>

#include "mptcp/engine.h"
#include "mptcp/stream_offsets.h"

namespace mproxy::mptcp {

using packet::FourTuple;
using packet::PacketOut;

namespace {

// Most bytes our rewrite adds to a local data segment. The TCP option area is at most 40 bytes
// (RFC 9293 §3.1), and we fill it at most: a DSS with a 64-bit DATA_ACK, a 64-bit DSN, SSN,
// data-level length and checksum is 4 + 8 + 8 + 4 + 2 + 2 = 28 bytes (RFC 8684 §3.3,
// Dss::EncodedLength()), and on a multipath subflow AddSubflowSack() may put a SACK block (10 + 2
// NOPs) next to it on a data segment too. A stack that sends timestamps already spent 12 of the 40
// (10 + 2 NOPs, which FitOption() may reclaim), so we add at most 40 - 12 = 28 (the MSS clamp,
// EngineConfig::mss_reduction); without timestamps at most 40. An ACK-only rewrite (DSS DATA_ACK,
// 8 or 12 bytes, and subflow SACK blocks) also stays within the 40 but carries no payload: at most
// 60 + 40 bytes (IPv6), below any MTU, so it never sets the bound.
constexpr uint32_t kOptionArea = 40;
constexpr uint32_t kStackTimestampBytes = 12;
// Below this Linux clamps the learnt MTU itself (ip_rt_min_pmtu 552; RFC 791's 68 is the floor of
// what the field may mean): lowering it further buys nothing.
constexpr uint32_t kMinUsefulMtu = 68;

}  // namespace

bool Engine::OnIcmp(packet::MutableBytes pkt, packet::PacketOut& out) {
  packet::IcmpParse parsed = packet::ParseIcmpPtb(pkt);
  switch (parsed.kind) {
    case packet::IcmpKind::kNotIcmp:
      return false;
    case packet::IcmpKind::kOther:
      counters_.Inc(Counter::kIcmpOther);
      return true;
    case packet::IcmpKind::kMalformed:
      counters_.Inc(Counter::kIcmpPtbRx);
      counters_.Inc(Counter::kIcmpMalformed);
      return true;
    case packet::IcmpKind::kPtbOtherProtocol:
      counters_.Inc(Counter::kIcmpPtbRx);
      counters_.Inc(Counter::kIcmpPtbNotOurs);
      return true;
    case packet::IcmpKind::kPacketTooBig:
      break;
  }
  counters_.Inc(Counter::kIcmpPtbRx);
  packet::IcmpPtb& m = parsed.ptb;
  if (!packet::IcmpChecksumOk(pkt, m)) {
    // The local stack drops it too (icmp_rcv() checksum check); never hand it a valid one.
    counters_.Inc(Counter::kIcmpMalformed);
    return true;
  }

  // The quoted segment left us: its source is our (wire) side. Joins have their own wire tuples,
  // the initial subflow has the connection's.
  Connection* c = nullptr;
  Subflow* sf = nullptr;
  if (!wire_.empty()) {
    if (auto w = wire_.find(m.quoted); w != wire_.end()) {
      c = w->second.conn;
      sf = w->second.sf;
    }
  }
  if (c == nullptr) {
    if (auto it = conns_.find(m.quoted); it != conns_.end()) {
      c = it->second.get();
      if (c->multi && !c->subflows.empty()) sf = c->subflows[0].get();
    }
  }
  // Only converted connections carry our options and our sequence numbers: a fallen-back or
  // half-open one is plain TCP (or a handshake the stack sized itself), the message is right as is.
  if (c == nullptr || (c->state != ConnState::kEstablished && c->state != ConnState::kClosed)) {
    counters_.Inc(Counter::kIcmpPtbNotOurs);
    return true;
  }

  // SSN -> TSN. On one path SSN == TSN on the initial subflow (mptcp/DESIGN.md); with several the
  // SEND table maps tx offsets to SSN offsets tagged by subflow; one entry holds a given SSN.
  std::optional<uint32_t> tsn;
  if (sf == nullptr) {
    tsn = m.seq;
  } else if (auto ssn = OffsetOf(m.seq, sf->tx_isn, sf->tx_ssn_next)) {
    for (const MapEntry& e : c->send.entries()) {
      if (e.tag == sf->id && *ssn >= e.dst && *ssn < e.dst_end()) {
        tsn = WireOf(c->tx_isn, e.src + (*ssn - e.dst));
        break;
      }
    }
  }
  if (!tsn) {
    // Acknowledged already (forgotten from the SEND table) or a forged segment of ours: the local
    // stack's snd_una (what the DATA_ACK made it) passes its window check, and the MTU is what
    // matters.
    counters_.Inc(Counter::kIcmpPtbSeqUnmapped);
    tsn = WireOf(c->tx_isn, c->tx_acked);
  }

  const bool ts = c->local_ts && c->peer_ts;
  const uint32_t growth = kOptionArea - (ts ? kStackTimestampBytes : 0);
  uint32_t mtu = m.mtu;
  if (mtu > growth + kMinUsefulMtu) mtu -= growth;
  if (m.family() == packet::IpFamily::kV6 && m.mtu >= packet::kIpv6MinMtu &&
      mtu < packet::kIpv6MinMtu) {
    // Linux ignores a packet-too-big below the IPv6 minimum (tcp_v6_err()); 1280 at least lowers
    // the stack's MTU that far (a path of less than 1280 + `growth` stays too small, counted).
    mtu = packet::kIpv6MinMtu;
    counters_.Inc(Counter::kIcmpPtbV6Floor);
  }
  const packet::QuoteRewrite r{c->tuple, *tsn, mtu};
  if (!packet::RewriteIcmpPtb(pkt, m, r)) {
    counters_.Inc(Counter::kIcmpMalformed);
    return true;
  }
  out.patched_in_place = true;
  counters_.Inc(Counter::kIcmpPtbTranslated);
  if (c->tuple.dst.is_v4() && (c->pmtu_told == 0 || mtu < c->pmtu_told)) {
    c->pmtu_told = mtu;
    any_pmtu_told_ = true;
  }
  return true;
}

// The MTU we told the stack lands in its route to the connection's destination (a PMTU exception,
// tcp_v4_mtu_reduced()), and the kernel applies that route's MTU to our rewritten packets too
// (ip_finish_output() after the verdict): a segment sized for it plus our options no longer fits,
// is refused locally with a frag-needed over lo, which would lower the MTU by `growth` again, and
// again (measured: 1252 -> 552 within a second after a handover back to wlan0). The exception
// only concerns packets leaving with the stack's own addresses — the initial subflow; a join's
// packets use their own route. Those get DF cleared when they exceed the told MTU, so the kernel
// fragments them locally instead (RFC 791 §3.2) — the path itself carried them before, they are
// at most `growth` bytes over. IPv4 only (IPv6 has no DF; see mptcp/DESIGN.md "Path MTU").
void Engine::PmtuOutbound(const FourTuple& local, packet::MutableBytes pkt, PacketOut& out) {
  if (out.verdict != packet::Verdict::kAccept) return;
  auto it = conns_.find(local);
  if (it == conns_.end() || it->second->pmtu_told == 0) return;
  const Connection& c = *it->second;
  packet::MutableBytes ip =
      out.rewritten ? packet::MutableBytes(out.head.data(), out.head_len) : pkt;
  const size_t total = out.rewritten
                           ? out.head_len + (pkt.size() - std::min(pkt.size(), out.tail_offset))
                           : pkt.size();
  if (total <= c.pmtu_told || ip.size() < packet::kIpv4MinHeader || (ip[0] >> 4) != 4) return;
  const packet::Bytes src = packet::Bytes(ip).subspan(12, 4),
                      dst = packet::Bytes(ip).subspan(16, 4);
  if (!std::equal(src.begin(), src.end(), c.tuple.src.bytes().begin()) ||
      !std::equal(dst.begin(), dst.end(), c.tuple.dst.bytes().begin())) {
    return;  // on a join
  }
  if (packet::ClearIpv4Df(ip)) {
    if (!out.rewritten) out.patched_in_place = true;
    counters_.Inc(Counter::kPmtuDfCleared);
  }
}

}  // namespace mproxy::mptcp
