// Fuzzes the ICMP frag-needed / packet-too-big view and rewrite (packet/icmp.h) on arbitrary
// bytes taken as an IP packet, and the MPTCP engine's handling of them (inbound, no connection).
// Invariants (a violation traps):
//  - classification never crashes or reads outside the buffer;
//  - a parsed message's offsets lie inside the buffer and the quote holds 8 TCP bytes;
//  - a rewrite changes only the quote's addresses, ports, seq, its IPv4 header checksum, the MTU
//    and the ICMP checksum; the result re-parses with the new values and a valid checksum, and
//    the quoted IPv4 header checksum stays valid if it was;
//  - the engine leaves a message that is not about one of its connections byte-identical.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "mptcp/engine.h"
#include "packet/checksum.h"
#include "packet/icmp.h"
#include "packet/rng.h"

namespace {

using namespace mproxy::packet;  // NOLINT(google-build-using-namespace): fuzz harness

void Check(bool ok) {
  if (!ok) __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::vector<uint8_t> pkt(data, data + size);
  const IcmpParse r = ParseIcmpPtb(pkt);
  if (r.kind == IcmpKind::kPacketTooBig) {
    IcmpPtb m = r.ptb;
    Check(m.icmp_offset + m.icmp_len <= pkt.size());
    Check(m.quote_tcp_offset + m.quote_tcp_len == m.icmp_offset + m.icmp_len);
    Check(m.quote_tcp_len >= kQuotedL4Bytes);
    const bool quote_ip_ok =
        m.family() != IpFamily::kV4 ||
        checksum::IsValidSum(checksum::Sum(Bytes(pkt).subspan(m.quote_offset, m.quote_ip_len)));
    const auto before = pkt;
    const uint8_t knob = size > 0 ? data[size / 2] : 0;
    FourTuple t = m.quoted;
    t.sport = static_cast<uint16_t>(t.sport + knob);
    t.dst = t.src;
    const uint32_t mtu = m.family() == IpFamily::kV4 ? (m.mtu * 7u + knob) & 0xffffu : m.mtu + knob;
    Check(RewriteIcmpPtb(pkt, m, QuoteRewrite{t, m.seq ^ (0x01000193u * knob), mtu}));
    Check(pkt.size() == before.size());
    const IcmpParse again = ParseIcmpPtb(pkt);
    Check(again.kind == IcmpKind::kPacketTooBig);
    Check(again.ptb.quoted == t && again.ptb.mtu == mtu && again.ptb.seq == m.seq);
    Check(IcmpChecksumOk(pkt, again.ptb));
    if (m.family() == IpFamily::kV4 && quote_ip_ok) {
      Check(
          checksum::IsValidSum(checksum::Sum(Bytes(pkt).subspan(m.quote_offset, m.quote_ip_len))));
    }
    // Nothing outside the edited fields changed.
    const size_t q = m.quote_offset, tcp = m.quote_tcp_offset, icmp = m.icmp_offset;
    const size_t a = m.family() == IpFamily::kV4 ? q + 12 : q + 8;
    const size_t a_end = m.family() == IpFamily::kV4 ? q + 20 : q + 40;
    for (size_t i = 0; i < pkt.size(); ++i) {
      const bool edited = (i >= icmp + 2 && i < icmp + 8) || (i >= a && i < a_end) ||
                          (m.family() == IpFamily::kV4 && (i == q + 10 || i == q + 11)) ||
                          (i >= tcp && i < tcp + 8);
      if (!edited) Check(pkt[i] == before[i]);
    }
  }

  // The engine without connections: every ICMP passes unchanged.
  if (r.kind == IcmpKind::kNotIcmp) return 0;  // TCP and the rest: mptcp_engine_fuzz's business
  SplitMix64 rng(1);
  mproxy::mptcp::Engine engine(mproxy::mptcp::EngineConfig{}, rng);
  std::vector<uint8_t> in(data, data + size);
  PacketMeta meta;
  meta.hook = Hook::kPreRouting;
  PacketOut out;
  Actions actions;
  engine.OnPacket(Time{}, meta, MutableBytes(in), out, actions);
  Check(out.verdict == Verdict::kAccept && !out.rewritten && actions.forged.empty());
  Check(in == std::vector<uint8_t>(data, data + size));
  return 0;
}
