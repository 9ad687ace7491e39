#include "mptcp/ack_projection.h"

#include <algorithm>

namespace mproxy::mptcp {

bool AckInfo::AddSack(Interval block) {
  if (num_sack >= sack.size()) return false;
  sack[num_sack++] = block;
  return true;
}

std::span<const Interval> AckInfo::sack_blocks() const {
  return {sack.data(), std::min(num_sack, sack.size())};
}

std::span<const uint32_t> ProjectedAck::contributing_tags() const {
  return {tags.data(), std::min(num_tags, tags.size())};
}

size_t AckProjector::CollectBlocks(const AckInfo& in, uint64_t window, Blocks& blocks,
                                   size_t& ignored) {
  size_t n = 0;
  ignored = 0;
  const std::span<const Interval> sack = in.sack_blocks();
  for (size_t i = 0; i < sack.size(); ++i) {
    // A block with end <= begin is malformed (or a wrapped 32-bit block the caller expanded
    // inconsistently); it proves nothing, so it is skipped and reported for the caller's counter.
    if (sack[i].end <= sack[i].begin) {
      ++ignored;
      continue;
    }
    // Rank = the block's position in the receiver's list: RFC 2018 §4 puts the most recent first.
    blocks[n++] = Block{sack[i], static_cast<uint8_t>(i)};
  }
  // Seed §3.5: the cumulative ACK is one more SACK block, [cum - window, cum). It ranks after every
  // incoming SACK block (see the order note in the header).
  const uint64_t lo = in.cum - std::min(window, in.cum);
  if (lo < in.cum) blocks[n++] = Block{{lo, in.cum}, static_cast<uint8_t>(kMaxSackBlocks)};
  return n;
}

// S = src: one binary search per block, then the entries it overlaps, in source order. Pieces that
// end at or below `floor` cannot affect the result (they lie below every prev considered).
void AckProjector::ProjectForward(const MappingTable& table, std::optional<uint32_t> tag,
                                  std::span<const Block> blocks, uint64_t floor) {
  const std::vector<MapEntry>& es = table.entries();
  for (const Block& blk : blocks) {
    auto it = std::partition_point(es.begin(), es.end(),
                                   [&](const MapEntry& e) { return e.src_end() <= blk.iv.begin; });
    for (; it != es.end() && it->src < blk.iv.end; ++it) {
      if (tag && it->tag != *tag) continue;
      const uint64_t b = std::max(blk.iv.begin, it->src);
      const uint64_t e = std::min(blk.iv.end, it->src_end());
      const uint64_t tb = it->dst + (b - it->src);
      const uint64_t te = it->dst + (e - it->src);
      if (te <= floor) continue;
      pieces_.push_back(Piece{tb, te, it->tag, blk.rank});
    }
  }
}

// S = dst: the table is sorted by source (= T) only, so the entries are scanned by destination.
// T-bytes below `floor` (= prev) are already acknowledged, which lets the scan start at the first
// entry reaching above it; the callers trim acknowledged entries (ForgetBelow), so this is the
// handful of in-flight entries.
void AckProjector::ProjectBackward(const MappingTable& table, std::optional<uint32_t> tag,
                                   std::span<const Block> blocks, uint64_t floor) {
  const std::vector<MapEntry>& es = table.entries();
  auto it = std::partition_point(es.begin(), es.end(),
                                 [floor](const MapEntry& e) { return e.src_end() <= floor; });
  for (; it != es.end(); ++it) {
    if (tag && it->tag != *tag) continue;
    for (const Block& blk : blocks) {
      const uint64_t lo = std::max(blk.iv.begin, it->dst);
      const uint64_t hi = std::min(blk.iv.end, it->dst_end());
      if (lo >= hi) continue;
      pieces_.push_back(
          Piece{it->src + (lo - it->dst), it->src + (hi - it->dst), it->tag, blk.rank});
    }
  }
}

void AckProjector::Finish(std::span<const Piece> pieces, uint64_t prev, size_t max_sack,
                          ProjectedAck& out) {
  max_sack = std::min(max_sack, kMaxSackBlocks);
  out.ack = AckInfo{};
  out.ack.cum = prev;
  out.num_tags = 0;
  out.tags_truncated = false;
  out.unreported_blocks = 0;

  // Selected T-SACK candidates, kept sorted by (rank, begin). Runs arrive in ascending begin, so a
  // new run goes after every kept run of the same or a lower rank.
  struct Run {
    Interval iv;
    uint8_t rank = 0;
  };
  std::array<Run, kMaxSackBlocks> kept{};
  size_t nkept = 0;
  auto emit = [&](const Run& r) {
    if (r.iv.begin == prev) {
      // Only the first run can start at prev (runs are disjoint and separated, and every piece was
      // clipped to >= prev): prev lies inside or at the left edge of this P-interval, so its right
      // edge is the new cumulative ACK (seed §3.5). A P-interval ending exactly at prev was clipped
      // away: its right edge is prev, no advance.
      out.ack.cum = r.iv.end;
      return;
    }
    size_t pos = nkept;
    while (pos > 0 && kept[pos - 1].rank > r.rank) --pos;
    if (pos >= max_sack) {
      ++out.unreported_blocks;
      return;
    }
    if (nkept == max_sack) {
      ++out.unreported_blocks;  // the last (oldest) kept run falls out
    } else {
      ++nkept;
    }
    for (size_t i = nkept - 1; i > pos; --i) kept[i] = kept[i - 1];
    kept[pos] = r;
  };

  // Union of the pieces, clipped to [prev, inf): bytes below prev are acknowledged already, and the
  // clip makes "prev inside, at the left or at the right edge" the single test begin == prev.
  // max(begin, prev) is monotone in begin, so the clipped pieces stay sorted.
  Run cur;
  bool have = false;
  for (const Piece& p : pieces) {
    if (p.end <= prev) continue;
    const uint64_t b = std::max(p.begin, prev);
    if (have && b <= cur.iv.end) {  // overlapping or adjacent: one block ([a,b) ∪ [b,c) = [a,c))
      cur.iv.end = std::max(cur.iv.end, p.end);
      cur.rank = std::min(cur.rank, p.rank);
      continue;
    }
    if (have) emit(cur);
    cur = Run{{b, p.end}, p.rank};
    have = true;
  }
  if (have) emit(cur);

  for (size_t i = 0; i < nkept; ++i) out.ack.sack[i] = kept[i].iv;
  out.ack.num_sack = nkept;
  out.advanced = out.ack.cum > prev;
  if (!out.advanced) return;

  // Contributors (seed §3.4): every piece with a byte in [prev, cum). Such a piece starts inside
  // the run that produced cum, so it lies entirely within the increment.
  for (const Piece& p : pieces) {
    if (p.end <= prev || std::max(p.begin, prev) >= out.ack.cum) continue;
    uint32_t* end = out.tags.data() + out.num_tags;
    uint32_t* at = std::lower_bound(out.tags.data(), end, p.tag);
    if (at != end && *at == p.tag) continue;
    if (out.num_tags == out.tags.size()) {
      out.tags_truncated = true;
      continue;
    }
    std::copy_backward(at, end, end + 1);
    *at = p.tag;
    ++out.num_tags;
  }
}

ProjectedAck AckProjector::Project(const MappingTable& table, ProjectionDirection direction,
                                   std::optional<uint32_t> tag, const AckInfo& in, uint64_t prev,
                                   const AckProjectionOptions& options) {
  ProjectedAck out;
  Blocks blocks;
  const size_t n = CollectBlocks(in, options.window, blocks, out.ignored_blocks);
  const std::span<const Block> used(blocks.data(), n);
  pieces_.clear();
  if (direction == ProjectionDirection::kSrcToDst) {
    ProjectForward(table, tag, used, prev);
  } else {
    ProjectBackward(table, tag, used, prev);
  }
  std::sort(pieces_.begin(), pieces_.end(),
            [](const Piece& a, const Piece& b) { return a.begin < b.begin; });
  Finish(pieces_, prev, options.max_sack_blocks, out);
  return out;
}

void AckProjector::ProjectToSubflows(const MappingTable& data_to_subflow, const AckInfo& in,
                                     std::span<SubflowAck> subflows,
                                     const AckProjectionOptions& options) {
  if (subflows.empty()) return;
  Blocks blocks;
  size_t ignored = 0;
  const size_t n = CollectBlocks(in, options.window, blocks, ignored);
  uint64_t floor = subflows.front().prev;
  for (const SubflowAck& s : subflows) floor = std::min(floor, s.prev);
  // One pass over the table for all subflows; the pieces are then grouped by tag.
  pieces_.clear();
  ProjectForward(data_to_subflow, std::nullopt, std::span<const Block>(blocks.data(), n), floor);
  auto by_tag_begin = [](const Piece& a, const Piece& b) {
    return a.tag != b.tag ? a.tag < b.tag : a.begin < b.begin;
  };
  std::sort(pieces_.begin(), pieces_.end(), by_tag_begin);
  for (SubflowAck& s : subflows) {
    auto lo = std::partition_point(pieces_.begin(), pieces_.end(),
                                   [&](const Piece& p) { return p.tag < s.tag; });
    auto hi =
        std::partition_point(lo, pieces_.end(), [&](const Piece& p) { return p.tag == s.tag; });
    s.out = ProjectedAck{};
    s.out.ignored_blocks = ignored;
    Finish(std::span<const Piece>(lo, hi), s.prev, options.max_sack_blocks, s.out);
  }
}

}  // namespace mproxy::mptcp
