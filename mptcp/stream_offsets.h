// Small helpers shared by the single-path (engine.cc) and multipath (subflow.cc) halves of the
// engine: 32-bit wire numbers <-> 64-bit stream offsets (mptcp/DESIGN.md "Sequence spaces"), and
// appending an MPTCP option to a TCP option list.
#pragma once

#include <array>
#include <cstdint>
#include <limits>
#include <optional>

#include "mptcp/connection.h"
#include "mptcp/options.h"
#include "packet/bytes.h"
#include "packet/seq.h"
#include "packet/tcp.h"

namespace mproxy::mptcp {

inline constexpr uint64_t kNoLimit = std::numeric_limits<uint64_t>::max();

// Offset of the 32-bit wire number `seq` in a stream whose first byte has number isn + 1,
// widened to 64 bits near `ref` (a recent offset of the same stream). nullopt for positions
// before the first byte (the SYN itself, or a keepalive probe right after the handshake).
inline std::optional<uint64_t> OffsetOf(uint32_t seq, uint32_t isn, uint64_t ref) {
  const packet::DataSeq wide = packet::Expand32(packet::DataSeq(ref), seq - (isn + 1));
  if (static_cast<int64_t>(wide.value()) < 0) return std::nullopt;
  return wide.value();
}

// The 32-bit wire number of stream offset `off` (inverse of OffsetOf, modulo 2^32).
inline uint32_t WireOf(uint32_t isn, uint64_t off) { return isn + 1 + static_cast<uint32_t>(off); }

// The next sequence number we send on join or multipath subflow `sf` (our FIN, once forged, took
// one).
inline uint32_t SndNxt(const Subflow& sf) {
  return WireOf(sf.tx_isn, sf.tx_ssn_next + (sf.sfin_sent ? 1 : 0));
}

// The same for the initial subflow on the single-path fast path (the connection's own fields):
// after the local stack's data, its FIN (the DATA_FIN) and our subflow FIN.
inline uint32_t InitialSndNxt(const Connection& c) {
  if (c.tx_fin) return WireOf(c.tx_isn, *c.tx_fin + (c.tx_sfin_sent ? 1 : 0));
  return WireOf(c.tx_isn, c.tx_high);
}

// Appends an MPTCP option (kind 30) to a TCP option list; false if it does not fit in 40 bytes.
inline bool AddMptcp(packet::TcpOptionList& opts, const Option& o) {
  std::array<uint8_t, 40> buf{};
  packet::ByteWriter w(buf);
  if (!Emit(o, w) || w.offset() < 2) return false;
  return opts.AddRaw(kMptcpOptionKind, packet::Bytes(buf).subspan(2, w.offset() - 2));
}

}  // namespace mproxy::mptcp
