#include "proxy/passthrough_engine.h"

#include <algorithm>

#include "packet/parse_error.h"
#include "packet/tcp_packet.h"

namespace mproxy::proxy {
namespace {

// TCP checksum field offset inside the TCP header (RFC 9293 §3.1).
constexpr size_t kTcpChecksumOffset = 16;

}  // namespace

void PassthroughEngine::OnPacket(packet::Time /*now*/, const packet::PacketMeta& meta,
                                 packet::MutableBytes pkt, packet::PacketOut& out,
                                 packet::Actions& /*actions*/) {
  out.Reset();  // accept unchanged unless a re-emit succeeds below
  counters_.Inc(PassCounter::kSeen);
  if (meta.gso) counters_.Inc(PassCounter::kGso);
  if (meta.csum_not_ready) counters_.Inc(PassCounter::kCsumNotReady);
  if (!pkt.empty()) {
    if (pkt[0] >> 4 == 4) counters_.Inc(PassCounter::kIpv4);
    if (pkt[0] >> 4 == 6) counters_.Inc(PassCounter::kIpv6);
  }

  auto p = packet::ParseTcpPacket(pkt, meta);
  if (!p) {
    const packet::ParseError reason = packet::ReasonOf(p.error());
    switch (packet::ClassOf(reason)) {
      case packet::ParseErrorClass::kNotTcp:
        counters_.Inc(reason == packet::ParseError::kIpFragment ? PassCounter::kFragment
                                                                : PassCounter::kNonTcp);
        break;
      case packet::ParseErrorClass::kMalformedTcp:
        counters_.Inc(PassCounter::kMalformedTcp);
        break;
      case packet::ParseErrorClass::kMalformedOptions:
        counters_.Inc(PassCounter::kMalformedOptions);
        break;
      case packet::ParseErrorClass::kUnsupported:
        counters_.Inc(PassCounter::kUnsupported);
        break;
      case packet::ParseErrorClass::kMalformedIp:
      case packet::ParseErrorClass::kEmit:
      case packet::ParseErrorClass::kNone:
        counters_.Inc(PassCounter::kMalformedIp);
        break;
    }
    return;
  }
  counters_.Inc(PassCounter::kTcp);
  if (!options_.reemit) return;

  if (!packet::EmitTcpPacket(*p, out).ok()) {
    counters_.Inc(PassCounter::kReemitFailed);
    out.Reset();
    return;
  }
  // An unmodified re-emit must reproduce the original headers. With CHECKSUM_PARTIAL the TCP
  // checksum field legitimately changes (pseudo-header sum -> full checksum), so it is exempt.
  const packet::Bytes orig = packet::Bytes(pkt).first(p->payload_offset);
  bool same = out.head_len == orig.size() && out.tail_offset == p->payload_offset;
  for (size_t i = 0; same && i < orig.size(); ++i) {
    const bool csum_byte =
        i >= p->tcp_offset + kTcpChecksumOffset && i < p->tcp_offset + kTcpChecksumOffset + 2;
    if (out.head[i] != orig[i] && !(meta.csum_not_ready && csum_byte)) same = false;
  }
  if (!same) {
    counters_.Inc(PassCounter::kReemitMismatch);
    out.Reset();
    return;
  }
  counters_.Inc(PassCounter::kReemitted);
  if (options_.send_back) {
    counters_.Inc(PassCounter::kSentBack);
  } else {
    out.Reset();
  }
}

}  // namespace mproxy::proxy
