// Piecewise mapping between two 64-bit offset spaces, the data structure behind the SEND and
// RECV tables of the seed (§3.3) and the ACK projection (§3.5).
//
// Offsets, not wire numbers: every space is counted in bytes since its stream start (the SYN), so
// 32-bit wrap-around never reaches this table (callers expand with packet::Expand32 first), and
// entries can be kept sorted (architecture.md, "mapping tables are keyed by 64-bit offsets").
//
// Invariants (checked by tests/unit/mptcp/mapping_table_test.cc):
//  - entries are sorted by `src` and never overlap in the source space;
//  - every entry has len > 0;
//  - two entries adjacent in the source space with the same tag and the same (dst - src) delta
//    are always merged, so between handovers the table holds a single entry (seed §3.3);
//  - the destination ranges may overlap (a retransmission mapped to new subflow bytes) or run
//    backwards (non-monotonous mappings after break-before-make, seed §3.3 Figure 5).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <vector>

namespace mproxy::mptcp {

struct Interval {
  uint64_t begin = 0;  // inclusive
  uint64_t end = 0;    // exclusive
  friend bool operator==(const Interval&, const Interval&) = default;
};

struct MapEntry {
  uint64_t src = 0;
  uint64_t dst = 0;
  uint64_t len = 0;
  uint32_t tag = 0;  // SEND table: the subflow id; RECV table: unused (0)
  [[nodiscard]] uint64_t src_end() const { return src + len; }
  [[nodiscard]] uint64_t dst_end() const { return dst + len; }
  friend bool operator==(const MapEntry&, const MapEntry&) = default;
};

enum class InsertResult {
  kInserted,    // new source range recorded (possibly merged with a neighbour)
  kDuplicate,   // the whole range was already mapped identically
  kConflict,    // part of the range is already mapped differently; nothing changed
};

class MappingTable {
 public:
  // Records src[src, src+len) -> dst[dst, dst+len) with `tag`. Parts already mapped identically are
  // accepted; a different mapping for an already mapped source byte is a conflict (RFC 8684 §3.3.1:
  // a mapping may not change once established — Linux counts DSSNotMatching).
  InsertResult Insert(uint64_t src, uint64_t dst, uint64_t len, uint32_t tag = 0);

  // Records src[src, src+len) -> dst[dst, dst+len) with `tag`, replacing whatever mapped any part
  // of that source range before. For the SEND table only: a retransmission whose original subflow
  // is gone is sent again at new subflow bytes (seed §3.3), so its old mapping no longer applies.
  void Assign(uint64_t src, uint64_t dst, uint64_t len, uint32_t tag = 0);

  // The entry covering source offset `src`, if any.
  [[nodiscard]] const MapEntry* Find(uint64_t src) const;
  [[nodiscard]] std::optional<uint64_t> Map(uint64_t src) const;

  // Projects the source interval [begin, end) into the destination space: appends one interval per
  // mapped piece, in source order (unmapped pieces are skipped). Seed §3.5 Figure 5b.
  void Project(Interval source, std::vector<Interval>& out) const;

  // Walks the source space upwards from `from` while every byte maps below `dst_limit` in the
  // destination space, and returns the first source offset where that stops: the largest cumulative
  // ACK in the source space that acknowledges only destination bytes < dst_limit. Monotonous ACK
  // translation for one subflow (seed §3.5, Figure 5a's conservative lookup): it never
  // acknowledges a source byte whose destination is not yet acknowledged.
  [[nodiscard]] uint64_t AckedPrefix(uint64_t from, uint64_t dst_limit) const;

  // Drops everything below source offset `src` (acknowledged, can no longer be retransmitted).
  void ForgetBelow(uint64_t src);
  // Drops the entry with the highest source offsets (a bounded table sheds the farthest first).
  void DropLast() {
    if (!entries_.empty()) entries_.pop_back();
  }

  [[nodiscard]] const std::vector<MapEntry>& entries() const { return entries_; }
  [[nodiscard]] bool empty() const { return entries_.empty(); }
  [[nodiscard]] size_t size() const { return entries_.size(); }
  // Highest mapped source offset + 1 (0 when empty).
  [[nodiscard]] uint64_t src_end() const { return entries_.empty() ? 0 : entries_.back().src_end(); }

 private:
  void MergeAround(size_t i);
  std::vector<MapEntry> entries_;
};

}  // namespace mproxy::mptcp
