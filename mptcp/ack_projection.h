// ACK number projection (seed §3.5, Figure 5b): translates an acknowledgement -- a cumulative ACK
// plus up to four SACK blocks (RFC 2018) -- from one offset space S into another space T through
// the mapping graph of a MappingTable, so that the result never acknowledges a T-byte that was not
// delivered and acknowledges every T-byte whose delivery the incoming ACK proves.
//
// Why not a reverse lookup: after break-before-make the TSN<->SSN mapping is non-monotonous
// (seed §3.3: retransmissions of the old subflow's data mixed with new data on the new subflow).
// TAN = lookup(SAN - 1) + 1 then acknowledges TSNs that were never delivered (Figure 5a), and the
// conservative alternative throws away information. Projecting *sets* of delivered bytes is exact
// for every mapping curve (seed §3.5).
//
// The rule, for an ACK (cum, SACK blocks B1..Bk) in S and the T-cumulative ACK `prev` sent last:
//   1. D = [cum - min(window, cum), cum) ∪ B1 ∪ ... ∪ Bk        (S-bytes the ACK proves delivered;
//      the cumulative ACK is "one more SACK block", seed §3.5; blocks with end <= begin ignored)
//   2. P = image of D under the mapping (unmapped S-bytes contribute nothing), as a union of
//      maximal T-intervals (overlapping and adjacent pieces merged).
//   3. new cum = right edge of the P-interval that contains prev (prev at its left edge, inside,
//      or at its right edge); prev when there is none (a duplicate ACK).
//      Equivalently: new cum = max{X >= prev : [prev, X) ⊆ P}.
//   4. The P-intervals strictly above new cum become the T-SACK blocks, at most max_sack_blocks.
//      The incoming S-SACK blocks are not forwarded as such; they are replaced by these.
//
// SACK block order (RFC 2018 §4: the first block reports the most recently received data, later
// blocks repeat the most recently reported ones). Each T-interval is ranked by the first incoming
// S-SACK block that contributed a byte to it (B1 = rank 0, ... ; the cumulative block ranks last);
// blocks are emitted by (rank, ascending T offset), and when more than max_sack_blocks exist the
// lowest-ranked (most recent) ones are kept. With a monotonous mapping this reproduces the
// receiver's own block order exactly (the projection is transparent); intervals that come only from
// the cumulative block (a non-monotonous mapping, or T holes carried by another subflow) report
// data the receiver considered old, so they go last. The blocks are disjoint, non-adjacent and
// above new cum, so a sender never mistakes one for a D-SACK (RFC 2883 §4).
//
// Completeness (what "never miss an acknowledgement" means here, precisely): the result is exact
// with respect to D -- new cum = max{X >= prev : [prev, X) ⊆ P}, and if P has at most
// max_sack_blocks intervals above new cum all of them are reported. Hence, end to end: once every
// T-byte in [prev, X) has a mapped preimage that is (a) below the S-cum and at or above
// cum - window, or (b) inside one of the (at most 4) SACK blocks the receiver reported in this
// ACK, the projected T-cum reaches X. Delivered S-runs the receiver could not fit into its four
// blocks are invisible to this ACK; they count once the S-cum passes them *and* they are within the
// window. With a bounded window (the seed's rwind) T-bytes whose only preimages sit further than
// `window` below the S-cum are never projected again, which can stall a non-monotonous mapping
// (S[0,10)->T[10,20) delivered, then S[10,20)->T[0,10): with window 10 the second ACK yields
// T-cum 10, never 20). The default window is therefore unbounded: the work is bounded by the
// table's entries, not by bytes, and the callers trim the tables (ForgetBelow).
//
// Directions. The ACK may live in the table's source space or in its destination space:
//  - kDstToSrc (S = dst, T = src): e.g. a subflow ACK (SAN + SACK in SSN offsets) on subflow k,
//    translated to a TCP ACK through the SEND table (src = TSN offset, dst = SSN offset, tag = k);
//    or the local stack's ACK (TSN = DSN offsets) translated to a subflow ACK through that
//    subflow's RECV table (src = SSN offset, dst = DSN offset). The entries are scanned by
//    destination (the table is sorted by source only): O(log E + E' * blocks) where E' counts the
//    entries whose source range reaches above prev -- entries below prev cannot change the result.
//  - kSrcToDst (S = src, T = dst): the ACK is in the space the table is keyed by:
//    O(blocks * log E + pieces). ProjectToSubflows uses it for the "TCP ACK -> subflow ACKs" step
//    of seed §3.4 with a table keyed by TCP-side data offsets (src = TSN offset, dst = SSN offset,
//    tag = subflow).
//  Projected pieces are sorted (pieces * log pieces); with one entry between handovers there are at
//  most five pieces.
//
// Offsets are 64-bit stream offsets (mptcp/DESIGN.md): callers expand 32-bit wire numbers first,
// and offsets + lengths never wrap 2^64. No allocation per ACK once the projector's scratch buffer
// has grown to the largest piece count seen (it is reused).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>
#include <span>
#include <vector>

#include "mptcp/mapping_table.h"

namespace mproxy::mptcp {

// RFC 2018 §3: at most four blocks fit into the 40 option bytes (three next to timestamps).
inline constexpr size_t kMaxSackBlocks = 4;
// Linux caps a connection at 8 subflows (net.mptcp pm limits), so a contribution list this long
// is never truncated in practice; ProjectedAck::tags_truncated says when it is.
inline constexpr size_t kMaxContributingTags = 8;
inline constexpr uint64_t kUnboundedWindow = std::numeric_limits<uint64_t>::max();

// An acknowledgement in one offset space: every byte below `cum` and inside every SACK block is
// delivered. SACK blocks are half-open [begin, end) offsets, in the order the receiver sent them.
struct AckInfo {
  uint64_t cum = 0;
  std::array<Interval, kMaxSackBlocks> sack{};
  size_t num_sack = 0;

  // Appends a block; false (nothing changed) when all kMaxSackBlocks slots are used.
  bool AddSack(Interval block);
  [[nodiscard]] std::span<const Interval> sack_blocks() const;
};

enum class ProjectionDirection : uint8_t {
  kSrcToDst,  // the ACK is in the table's source space, the result in its destination space
  kDstToSrc,  // the ACK is in the table's destination space, the result in its source space
};

struct AckProjectionOptions {
  // How far below the incoming cumulative ACK the projection looks: the cumulative ACK counts as
  // the block [cum - window, cum) (seed §3.5 uses the receive window). See the completeness note
  // above for why the default is unbounded.
  uint64_t window = kUnboundedWindow;
  // T-SACK blocks to emit, clamped to kMaxSackBlocks: 0 when the T side did not negotiate SACK,
  // 3 when timestamps share the option space.
  size_t max_sack_blocks = kMaxSackBlocks;
};

struct ProjectedAck {
  AckInfo ack;            // the acknowledgement in T: cumulative ACK and T-SACK blocks
  bool advanced = false;  // ack.cum > prev (otherwise a duplicate ACK, seed §3.5)
  // Tags (subflows) of the S-bytes that proved the increment [prev, ack.cum): "one subflow ACK
  // for every subflow that contributed to the increment" (seed §3.4). Distinct, ascending.
  std::array<uint32_t, kMaxContributingTags> tags{};
  size_t num_tags = 0;
  bool tags_truncated = false;   // more distinct tags than kMaxContributingTags
  size_t ignored_blocks = 0;     // incoming SACK blocks with end <= begin (malformed), skipped
  size_t unreported_blocks = 0;  // T-intervals above ack.cum left out by max_sack_blocks

  [[nodiscard]] std::span<const uint32_t> contributing_tags() const;
};

// One subflow of ProjectToSubflows: the caller fills `tag` and `prev`, the projector fills `out`.
struct SubflowAck {
  uint32_t tag = 0;   // subflow id (MapEntry::tag)
  uint64_t prev = 0;  // the subflow cumulative ACK last sent on it, as an SSN offset
  ProjectedAck out;
};

// Holds a scratch buffer so that the per-ACK path does not allocate; otherwise stateless (the
// "previous ACK" is a parameter). One per engine; not thread-safe.
class AckProjector {
 public:
  // Projects `in` (in S) into T; `prev` is the T-cumulative ACK sent last. `tag` restricts the
  // mapping graph to entries with that tag: a subflow ACK speaks only about its own subflow's
  // sequence space, so the SEND table must be filtered by the subflow it arrived on.
  // To seed the projection with a cumulative ACK already known in T (a DATA_ACK, seed §3.4), pass
  // max(prev, that ACK) as `prev`.
  [[nodiscard]] ProjectedAck Project(const MappingTable& table, ProjectionDirection direction,
                                     std::optional<uint32_t> tag, const AckInfo& in, uint64_t prev,
                                     const AckProjectionOptions& options = {});

  // "TCP ACK -> subflow ACKs" (seed §3.4): `in` is the local stack's ACK in TCP-side data offsets;
  // `data_to_subflow` maps data offsets (src) to subflow offsets (dst) with tag = subflow id. For
  // every entry of `subflows` this computes that subflow's cumulative ACK and SACK blocks
  // (= Project(data_to_subflow, kSrcToDst, tag, in, prev)): a subflow byte is acknowledged only
  // if its data byte is, and only subflows whose `out.advanced` is set deserve a forged subflow
  // ACK -- acknowledging others would send them congestion signals (seed §3.4).
  // For the per-subflow RECV tables of the rx path (src = SSN, dst = DSN) call Project with
  // kDstToSrc once per subflow instead: a data-keyed table cannot hold a reinjection of the same
  // data on two subflows (MappingTable source ranges never overlap).
  void ProjectToSubflows(const MappingTable& data_to_subflow, const AckInfo& in,
                         std::span<SubflowAck> subflows, const AckProjectionOptions& options = {});

 private:
  struct Piece {
    uint64_t begin = 0;  // T-interval [begin, end)
    uint64_t end = 0;
    uint32_t tag = 0;
    uint8_t rank = 0;  // index of the incoming S block it came from (cumulative block last)
  };
  struct Block {
    Interval iv;
    uint8_t rank = 0;
  };
  using Blocks = std::array<Block, kMaxSackBlocks + 1>;

  static size_t CollectBlocks(const AckInfo& in, uint64_t window, Blocks& blocks, size_t& ignored);
  void ProjectForward(const MappingTable& table, std::optional<uint32_t> tag,
                      std::span<const Block> blocks, uint64_t floor);
  void ProjectBackward(const MappingTable& table, std::optional<uint32_t> tag,
                       std::span<const Block> blocks, uint64_t floor);
  // Steps 2-4 of the rule over pieces sorted by begin.
  static void Finish(std::span<const Piece> pieces, uint64_t prev, size_t max_sack,
                     ProjectedAck& out);

  std::vector<Piece> pieces_;
};

}  // namespace mproxy::mptcp
