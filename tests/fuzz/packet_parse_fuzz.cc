// Fuzzes the parse -> edit -> emit core (packet/tcp_packet.h) on arbitrary bytes taken as an IP
// packet. Invariants (a violation traps):
//  - parsing never crashes, whatever the bytes and metadata;
//  - re-emitting an unmodified parse reproduces the input exactly (checksum valid mode);
//  - an edited packet re-parses, keeps its payload, and has a valid TCP checksum whenever the
//    input had one (incremental path) or the full checksum was computed (csum_not_ready path);
//  - the option codec round-trips whatever it accepts.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "packet/tcp.h"
#include "packet/tcp_packet.h"

namespace {

using namespace mproxy::packet;  // NOLINT(google-build-using-namespace): fuzz harness

void Check(bool ok) {
  if (!ok) __builtin_trap();
}

std::vector<uint8_t> Assemble(const PacketOut& out, const std::vector<uint8_t>& original) {
  std::vector<uint8_t> v(out.head.begin(), out.head.begin() + static_cast<ptrdiff_t>(out.head_len));
  v.insert(v.end(), original.begin() + static_cast<ptrdiff_t>(out.tail_offset), original.end());
  return v;
}

void FuzzOne(const uint8_t* data, size_t size, bool csum_not_ready, bool gso) {
  std::vector<uint8_t> pkt(data, data + size);
  PacketMeta meta;
  meta.csum_not_ready = csum_not_ready;
  meta.gso = gso;
  auto p = ParseTcpPacket(pkt, meta);
  if (!p) {
    Check(ClassOf(ReasonOf(p.error())) != ParseErrorClass::kNone);
    return;
  }
  Check(p->payload_offset + p->payload_len <= pkt.size());
  const bool was_valid = !gso && TcpChecksumOk(pkt);

  // 1. Unmodified re-emit.
  PacketOut out;
  if (!EmitTcpPacket(*p, out).ok()) return;  // e.g. IPv6 extension headers beyond 512 bytes
  const auto same = Assemble(out, pkt);
  if (!csum_not_ready) Check(same == pkt);

  // 2. Edits derived from the input: seq/ack/window, an option added, one removed.
  const uint8_t knob = data[size / 2];
  p->tcp.seq += 0x01000193u * knob;
  p->tcp.ack ^= knob;
  p->tcp.window = static_cast<uint16_t>(p->tcp.window + knob);
  if ((knob & 1) && !p->options.empty()) p->options.RemoveAt(knob % p->options.size());
  if (knob & 2) (void)p->options.AddRaw(tcp_opt::kMptcp, Bytes(data, knob % 9));
  if (knob & 4) (void)p->options.AddNop();
  if (!EmitTcpPacket(*p, out).ok()) return;  // e.g. length overflow: the caller passes unchanged
  auto edited = Assemble(out, pkt);
  auto q = ParseTcpPacket(edited, meta);
  Check(q.ok());
  Check(q->payload_len == p->payload_len);
  Check(q->tcp.seq == p->tcp.seq && q->tcp.window == p->tcp.window);
  Check(q->options.byte_size() == p->options.EncodedSize());
  if (!gso && (was_valid || csum_not_ready)) Check(TcpChecksumOk(edited));

  // 3. In-place patches on a fresh copy.
  std::vector<uint8_t> copy(data, data + size);
  auto r = ParseTcpPacket(copy, meta);
  Check(r.ok());
  PatchSeq(*r, SubflowSeq(r->tcp.seq + knob));
  PatchWindow(*r, static_cast<uint16_t>(knob * 257));
  (void)PatchMss(*r, 1200);
  PacketOut in_place;
  FinishInPlace(*r, in_place);
  Check(in_place.patched_in_place);
  if (!gso && (was_valid || csum_not_ready)) Check(TcpChecksumOk(copy));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) {
    std::vector<uint8_t> empty;
    Check(!ParseTcpPacket(empty).ok());
    return 0;
  }
  FuzzOne(data, size, false, false);
  FuzzOne(data, size, true, false);
  FuzzOne(data, size, false, true);
  FuzzOne(data, size, true, true);

  // The option codec on the raw bytes as an option area.
  const size_t n = size < kTcpMaxOptionBytes ? size : kTcpMaxOptionBytes;
  auto l = TcpOptionList::Parse(Bytes(data, n));
  if (l) {
    std::vector<uint8_t> out(l->EncodedSize());
    ByteWriter w(out);
    Check(l->Emit(w) && w.offset() == out.size());
    Check(std::equal(data, data + n, out.begin()));
  }
  return 0;
}
