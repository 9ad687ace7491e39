#include "mptcp/mapping_table.h"

#include <algorithm>

namespace mproxy::mptcp {
namespace {

// Same linear piece: equal (dst - src) in modular arithmetic and the same tag.
bool SamePiece(const MapEntry& a, uint64_t src, uint64_t dst, uint32_t tag) {
  return a.tag == tag && a.dst - a.src == dst - src;
}

}  // namespace

InsertResult MappingTable::Insert(uint64_t src, uint64_t dst, uint64_t len, uint32_t tag) {
  if (len == 0) return InsertResult::kDuplicate;
  // Fast path: the stream grows at its end with the same piece (one entry between handovers).
  if (!entries_.empty()) {
    MapEntry& back = entries_.back();
    if (src == back.src_end() && SamePiece(back, src, dst, tag)) {
      back.len += len;
      return InsertResult::kInserted;
    }
  }
  const uint64_t end = src + len;
  auto first = std::partition_point(entries_.begin(), entries_.end(),
                                    [src](const MapEntry& e) { return e.src_end() <= src; });
  // Collect the unmapped gaps of [src, end) and verify the mapped parts agree.
  MapEntry gaps[2 + 16];
  size_t ngaps = 0;
  bool overflow = false;
  uint64_t pos = src;
  for (auto it = first; it != entries_.end() && it->src < end; ++it) {
    if (!SamePiece(*it, src, dst, tag)) return InsertResult::kConflict;
    if (it->src > pos) {
      if (ngaps < std::size(gaps)) {
        gaps[ngaps++] = MapEntry{pos, dst + (pos - src), it->src - pos, tag};
      } else {
        overflow = true;
      }
    }
    pos = std::max(pos, it->src_end());
  }
  if (pos < end) {
    if (ngaps < std::size(gaps)) {
      gaps[ngaps++] = MapEntry{pos, dst + (pos - src), end - pos, tag};
    } else {
      overflow = true;
    }
  }
  if (ngaps == 0 && !overflow) return InsertResult::kDuplicate;
  if (overflow) {
    // Pathological fragmentation: the range agrees with every piece it touches, so replace them
    // all by one entry covering the union.
    auto last = first;
    uint64_t lo = src, hi = end;
    while (last != entries_.end() && last->src < end) {
      lo = std::min(lo, last->src);
      hi = std::max(hi, last->src_end());
      ++last;
    }
    size_t idx = static_cast<size_t>(first - entries_.begin());
    entries_.erase(first, last);
    entries_.insert(entries_.begin() + static_cast<std::ptrdiff_t>(idx),
                    MapEntry{lo, dst + (lo - src), hi - lo, tag});
    MergeAround(idx);
    return InsertResult::kInserted;
  }
  for (size_t g = 0; g < ngaps; ++g) {
    auto at = std::partition_point(entries_.begin(), entries_.end(),
                                   [&](const MapEntry& e) { return e.src < gaps[g].src; });
    size_t idx = static_cast<size_t>(at - entries_.begin());
    entries_.insert(at, gaps[g]);
    MergeAround(idx);
  }
  return InsertResult::kInserted;
}

void MappingTable::Assign(uint64_t src, uint64_t dst, uint64_t len, uint32_t tag) {
  if (len == 0) return;
  const uint64_t end = src + len;
  std::vector<MapEntry> kept;
  kept.reserve(entries_.size() + 2);
  for (const MapEntry& e : entries_) {
    if (e.src_end() <= src || e.src >= end) {
      kept.push_back(e);
      continue;
    }
    if (e.src < src) kept.push_back(MapEntry{e.src, e.dst, src - e.src, e.tag});
    if (e.src_end() > end) {
      kept.push_back(MapEntry{end, e.dst + (end - e.src), e.src_end() - end, e.tag});
    }
  }
  entries_ = std::move(kept);
  auto at = std::partition_point(entries_.begin(), entries_.end(),
                                 [&](const MapEntry& e) { return e.src < src; });
  size_t idx = static_cast<size_t>(at - entries_.begin());
  entries_.insert(at, MapEntry{src, dst, len, tag});
  MergeAround(idx);
}

void MappingTable::MergeAround(size_t i) {
  // Merge with the right neighbour, then the left one.
  if (i + 1 < entries_.size()) {
    MapEntry& a = entries_[i];
    const MapEntry& b = entries_[i + 1];
    if (a.src_end() == b.src && SamePiece(a, b.src, b.dst, b.tag)) {
      a.len += b.len;
      entries_.erase(entries_.begin() + static_cast<std::ptrdiff_t>(i) + 1);
    }
  }
  if (i > 0 && i < entries_.size()) {
    MapEntry& a = entries_[i - 1];
    const MapEntry& b = entries_[i];
    if (a.src_end() == b.src && SamePiece(a, b.src, b.dst, b.tag)) {
      a.len += b.len;
      entries_.erase(entries_.begin() + static_cast<std::ptrdiff_t>(i));
    }
  }
}

const MapEntry* MappingTable::Find(uint64_t src) const {
  auto it = std::partition_point(entries_.begin(), entries_.end(),
                                 [src](const MapEntry& e) { return e.src_end() <= src; });
  if (it == entries_.end() || it->src > src) return nullptr;
  return &*it;
}

std::optional<uint64_t> MappingTable::Map(uint64_t src) const {
  const MapEntry* e = Find(src);
  if (e == nullptr) return std::nullopt;
  return e->dst + (src - e->src);
}

void MappingTable::Project(Interval source, std::vector<Interval>& out) const {
  if (source.end <= source.begin) return;
  auto it = std::partition_point(entries_.begin(), entries_.end(), [&](const MapEntry& e) {
    return e.src_end() <= source.begin;
  });
  for (; it != entries_.end() && it->src < source.end; ++it) {
    uint64_t b = std::max(source.begin, it->src);
    uint64_t e = std::min(source.end, it->src_end());
    out.push_back(Interval{it->dst + (b - it->src), it->dst + (e - it->src)});
  }
}

uint64_t MappingTable::AckedPrefix(uint64_t from, uint64_t dst_limit) const {
  uint64_t pos = from;
  auto it = std::partition_point(entries_.begin(), entries_.end(),
                                 [pos](const MapEntry& e) { return e.src_end() <= pos; });
  for (; it != entries_.end(); ++it) {
    if (it->src > pos) break;  // unmapped gap: nothing beyond it can be acknowledged
    uint64_t d = it->dst + (pos - it->src);
    if (d >= dst_limit) break;
    uint64_t avail = it->src_end() - pos;
    uint64_t can = std::min(avail, dst_limit - d);
    pos += can;
    if (can < avail) break;
  }
  return pos;
}

void MappingTable::ForgetBelow(uint64_t src) {
  auto it = std::partition_point(entries_.begin(), entries_.end(),
                                 [src](const MapEntry& e) { return e.src_end() <= src; });
  entries_.erase(entries_.begin(), it);
  if (!entries_.empty() && entries_.front().src < src) {
    MapEntry& f = entries_.front();
    uint64_t cut = src - f.src;
    f.src += cut;
    f.dst += cut;
    f.len -= cut;
  }
}

}  // namespace mproxy::mptcp
