// The parse -> transform -> emit core for TCP packets (architecture.md, practice 1).
//
//   auto p = ParseTcpPacket(bytes, meta);       // views into `bytes`, nothing copied but options
//   p->tcp.seq = ...; p->options.AddRaw(...);   // edit a value
//   EmitTcpPacket(*p, out);                     // new IP + TCP headers into out.head; the payload
//                                               // stays in the queued buffer (out.tail_offset)
//
// or, for same-size edits, patch the queued bytes directly (PatchSeq/PatchAck/...) and finish
// with FinishInPlace().
//
// Checksum policy (architecture.md, NFQUEUE pitfall 1):
//  - meta.csum_not_ready == false: the TCP checksum is valid (or deliberately left as the sender
//    made it). Edits update it incrementally (RFC 1624 eqn. 3) from the old header bytes to the
//    new ones; the payload is never summed. A packet whose checksum was wrong stays exactly as
//    wrong, so we never launder corruption into a valid-looking packet.
//  - meta.csum_not_ready == true (CHECKSUM_PARTIAL, typically GSO): the field holds only the
//    pseudo-header sum, and the kernel marks a mangled packet CHECKSUM_NONE, so a FULL checksum
//    over pseudo-header + new header + payload is written.
//  The IPv4 header checksum is always updated incrementally (only length/addresses change).
//
// Lengths (GSO, see IpParseOptions): the TCP payload is what the IP length says, or the rest of
// the buffer when the length came from the buffer. Bytes after the IP packet (a link-layer
// trailer) are preserved after the payload but excluded from lengths and checksums. On emit, an
// IPv4 total length / IPv6 payload length above 65535 is written as 0 (Linux BIG TCP convention,
// iph_set_totlen()) and only for packets whose length already came from the buffer; an unchanged
// length keeps the original field, so an unmodified re-emit is byte-exact. Note that the
// kernel's nfqnl_mangle() refuses to *grow* a packet beyond 0xFFFF bytes, so engines must not add
// option bytes to such packets.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "packet/address.h"
#include "packet/bytes.h"
#include "packet/engine.h"
#include "packet/ip.h"
#include "packet/parse_error.h"
#include "packet/result.h"
#include "packet/seq.h"
#include "packet/tcp.h"

namespace mproxy::packet {

struct TcpPacket {
  MutableBytes buffer;        // the whole queued packet (not owned)
  IpView ip;                  // ip.src/ip.dst may be edited (same family) before EmitTcpPacket
  TcpHeader tcp;              // editable; data_offset is recomputed by the emitter
  TcpOptionList options;      // editable
  size_t tcp_offset = 0;      // == ip.l4_offset
  size_t payload_offset = 0;  // in `buffer`, after the original TCP header
  size_t payload_len = 0;     // IP-length derived; trailer excluded
  bool csum_not_ready = false;
  bool gso = false;

  [[nodiscard]] Bytes payload() const { return Bytes(buffer).subspan(payload_offset, payload_len); }
  [[nodiscard]] size_t original_tcp_header_len() const { return payload_offset - tcp_offset; }
  [[nodiscard]] FourTuple tuple() const { return FourTuple{ip.src, ip.dst, tcp.sport, tcp.dport}; }
  // Sequence space the segment occupies: payload plus SYN and FIN (RFC 9293 §3.4).
  [[nodiscard]] uint32_t seq_len() const {
    return static_cast<uint32_t>(payload_len) + (tcp.has(tcp_flags::kSyn) ? 1u : 0u) +
           (tcp.has(tcp_flags::kFin) ? 1u : 0u);
  }
};

// Parses an IPv4/IPv6 TCP packet. Errors carry a ParseError (ReasonOf()); ClassOf() tells
// malformed IP / not TCP (incl. fragments) / malformed TCP header / malformed options apart.
[[nodiscard]] Result<TcpPacket> ParseTcpPacket(MutableBytes pkt, const PacketMeta& meta);
[[nodiscard]] Result<TcpPacket> ParseTcpPacket(MutableBytes pkt);  // valid checksum, no GSO

// Writes the new IP header (the original bytes with lengths, addresses and IPv4 header checksum
// updated; IPv4 options and IPv6 extension headers kept) and the new TCP header with its options
// into `head`; returns the number of bytes written. The payload that follows is
// p.buffer[p.payload_offset, end).
[[nodiscard]] Result<size_t> EmitTcpHeaders(const TcpPacket& p, MutableBytes head);

// EmitTcpHeaders into out.head and sets out: verdict accept, rewritten, head_len, tail_offset.
// On error `out` is left untouched (the caller's policy decides, usually: accept unchanged).
[[nodiscard]] Result<void> EmitTcpPacket(const TcpPacket& p, PacketOut& out);

// In-place same-size edits of p.buffer. Each keeps p.tcp / p.options in sync with the bytes and,
// unless p.csum_not_ready, updates the TCP checksum incrementally. Call FinishInPlace() after the
// last one.
void PatchSeq(TcpPacket& p, SubflowSeq seq);
void PatchAck(TcpPacket& p, SubflowSeq ack);
void PatchWindow(TcpPacket& p, uint16_t window);
// Overwrites the data of option `index` (same size). Only valid while p.options still has the
// layout it was parsed with (no structural edits); returns false otherwise.
bool PatchOptionData(TcpPacket& p, size_t index, Bytes data);
bool PatchMss(TcpPacket& p, uint16_t mss);  // MSS clamping (architecture.md, pitfall 2)
// Writes the full checksum when p.csum_not_ready and marks out.patched_in_place.
void FinishInPlace(TcpPacket& p, PacketOut& out);

// The checksum the TCP header of `p` should carry with the bytes currently in p.buffer, computed
// from scratch (pseudo-header + header + payload). For tests and for csum_not_ready packets.
[[nodiscard]] uint16_t FullTcpChecksum(const TcpPacket& p);
// Verifies the TCP checksum of a complete packet in `pkt` (parsed or not); false on any error.
[[nodiscard]] bool TcpChecksumOk(Bytes pkt);

// Builds a complete packet for the raw socket (forged MPTCP signalling): IPv4 (DF, TTL/hop limit
// `ttl`, ID 0) or IPv6 by the family of t.src, TCP header from `h` (data offset computed), the
// options, `payload`, all checksums. Fails on mixed families or options over 40 bytes.
[[nodiscard]] Result<std::vector<uint8_t>> BuildTcpPacket(const FourTuple& t, const TcpHeader& h,
                                                          const TcpOptionList& options,
                                                          Bytes payload, uint8_t ttl = 64);

}  // namespace mproxy::packet
