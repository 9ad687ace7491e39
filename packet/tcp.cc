#include "packet/tcp.h"

#include <algorithm>

namespace mproxy::packet {
namespace {

Error Fail(ParseError e) { return MakeParseError(e); }

// The required total length of a kind this codec validates, or 0 for "any length >= 2".
// SACK is variable and checked separately.
constexpr uint8_t FixedLength(uint8_t kind) {
  switch (kind) {
    case tcp_opt::kMss:
      return 4;
    case tcp_opt::kWindowScale:
      return 3;
    case tcp_opt::kSackPermitted:
      return 2;
    case tcp_opt::kTimestamps:
      return 10;
    default:
      return 0;
  }
}

// RFC 2018 §3: 2 + 8n bytes with 1 <= n <= 4 (n = 4 only without timestamps, but that is the
// sender's budget, not a format rule).
constexpr bool ValidSackLength(size_t len) { return len >= 10 && len <= 34 && (len - 2) % 8 == 0; }

}  // namespace

// --- Fixed header -------------------------------------------------------------------------------

Result<TcpHeader> ParseTcpHeader(Bytes l4) {
  ByteReader r(l4);
  TcpHeader h;
  const auto sport = r.U16();
  const auto dport = r.U16();
  const auto seq = r.U32();
  const auto ack = r.U32();
  const auto off = r.U8();
  const auto flags = r.U8();
  const auto window = r.U16();
  const auto csum = r.U16();
  const auto urg = r.U16();
  if (!r.ok()) return Fail(ParseError::kTcpTruncated);
  h.sport = *sport;
  h.dport = *dport;
  h.seq = *seq;
  h.ack = *ack;
  h.data_offset = static_cast<uint8_t>(*off >> 4);
  h.reserved = static_cast<uint8_t>(*off & 0x0f);
  h.flags = *flags;
  h.window = *window;
  h.checksum = *csum;
  h.urgent = *urg;
  // RFC 9293 §3.1: data offset counts 32-bit words, at least 5; it must stay inside the segment.
  if (h.data_offset < 5 || h.header_len() > l4.size()) return Fail(ParseError::kTcpBadDataOffset);
  return h;
}

bool WriteTcpHeader(const TcpHeader& h, ByteWriter& w) {
  w.U16(h.sport);
  w.U16(h.dport);
  w.U32(h.seq);
  w.U32(h.ack);
  w.U8(static_cast<uint8_t>((h.data_offset << 4) | (h.reserved & 0x0f)));
  w.U8(h.flags);
  w.U16(h.window);
  w.U16(h.checksum);
  w.U16(h.urgent);
  return w.ok();
}

// --- Option list --------------------------------------------------------------------------------

Result<TcpOptionList> TcpOptionList::Parse(Bytes area) {
  if (area.size() > kMaxBytes) return Fail(ParseError::kOptionsTooLong);
  TcpOptionList list;
  std::copy(area.begin(), area.end(), list.bytes_.begin());
  list.used_ = static_cast<uint8_t>(area.size());
  size_t pos = 0;
  while (pos < area.size()) {
    const uint8_t kind = area[pos];
    size_t len = 1;
    if (kind == tcp_opt::kEol) {
      // RFC 9293 §3.2: end of the option list; what follows is padding. Keep it verbatim.
      len = area.size() - pos;
    } else if (kind != tcp_opt::kNop) {
      if (area.size() - pos < 2) return Fail(ParseError::kOptionTruncated);
      len = area[pos + 1];
      if (len < 2) return Fail(ParseError::kOptionBadLength);
      if (len > area.size() - pos) return Fail(ParseError::kOptionTruncated);
      const uint8_t fixed = FixedLength(kind);
      if ((fixed != 0 && len != fixed) || (kind == tcp_opt::kSack && !ValidSackLength(len))) {
        return Fail(ParseError::kOptionBadFixedLength);
      }
    }
    list.entries_[list.count_++] =
        Entry{kind, static_cast<uint8_t>(pos), static_cast<uint8_t>(len)};
    pos += len;
  }
  return list;
}

TcpOptionView TcpOptionList::operator[](size_t i) const {
  if (i >= count_) return {};
  const Entry& e = entries_[i];
  TcpOptionView v;
  v.kind = e.kind;
  v.raw = Bytes(bytes_.data() + e.offset, e.len);
  v.data = DataOf(i);
  return v;
}

Bytes TcpOptionList::DataOf(size_t i) const {
  const Entry& e = entries_[i];
  if (e.kind == tcp_opt::kEol || e.kind == tcp_opt::kNop) return {};
  return Bytes(bytes_.data() + e.offset + 2, e.len - 2u);
}

std::optional<size_t> TcpOptionList::Find(uint8_t kind) const {
  for (size_t i = 0; i < count_; ++i) {
    if (entries_[i].kind == kind) return i;
  }
  return std::nullopt;
}

std::optional<uint16_t> TcpOptionList::Mss() const {
  const auto i = Find(tcp_opt::kMss);
  uint16_t v = 0;
  if (!i || !Load16(DataOf(*i), 0, v)) return std::nullopt;
  return v;
}

std::optional<uint8_t> TcpOptionList::WindowScale() const {
  const auto i = Find(tcp_opt::kWindowScale);
  if (!i) return std::nullopt;
  const Bytes d = DataOf(*i);
  if (d.size() != 1) return std::nullopt;
  return d[0];
}

bool TcpOptionList::SackPermitted() const { return Find(tcp_opt::kSackPermitted).has_value(); }

std::optional<TimestampsOption> TcpOptionList::Timestamps() const {
  const auto i = Find(tcp_opt::kTimestamps);
  TimestampsOption ts;
  if (!i || !Load32(DataOf(*i), 0, ts.tsval) || !Load32(DataOf(*i), 4, ts.tsecr)) {
    return std::nullopt;
  }
  return ts;
}

size_t TcpOptionList::SackBlocks(std::array<SackBlock, 4>& out) const {
  const auto i = Find(tcp_opt::kSack);
  if (!i) return 0;
  const Bytes d = DataOf(*i);
  size_t n = 0;
  for (; n < out.size() && (n + 1) * 8 <= d.size(); ++n) {
    (void)Load32(d, n * 8, out[n].left);
    (void)Load32(d, n * 8 + 4, out[n].right);
  }
  return n;
}

size_t TcpOptionList::InsertPosition() const {
  return count_ > 0 && entries_[count_ - 1].kind == tcp_opt::kEol ? count_ - 1u : count_;
}

bool TcpOptionList::Insert(size_t pos, uint8_t kind, Bytes data, bool with_length) {
  const size_t len = with_length ? 2 + data.size() : 1;
  if (pos > count_ || count_ >= kMaxOptions || len > kMaxBytes - used_ || len > 255) return false;
  const size_t at = pos < count_ ? entries_[pos].offset : used_;
  // Shift the bytes and entries that follow.
  std::copy_backward(bytes_.begin() + static_cast<ptrdiff_t>(at),
                     bytes_.begin() + static_cast<ptrdiff_t>(used_),
                     bytes_.begin() + static_cast<ptrdiff_t>(used_ + len));
  for (size_t i = count_; i > pos; --i) {
    entries_[i] = entries_[i - 1];
    entries_[i].offset = static_cast<uint8_t>(entries_[i].offset + len);
  }
  bytes_[at] = kind;
  if (with_length) {
    bytes_[at + 1] = static_cast<uint8_t>(len);
    std::copy(data.begin(), data.end(), bytes_.begin() + static_cast<ptrdiff_t>(at + 2));
  }
  entries_[pos] = Entry{kind, static_cast<uint8_t>(at), static_cast<uint8_t>(len)};
  ++count_;
  used_ = static_cast<uint8_t>(used_ + len);
  return true;
}

void TcpOptionList::RemoveAt(size_t i) {
  if (i >= count_) return;
  const size_t at = entries_[i].offset, len = entries_[i].len;
  std::copy(bytes_.begin() + static_cast<ptrdiff_t>(at + len),
            bytes_.begin() + static_cast<ptrdiff_t>(used_),
            bytes_.begin() + static_cast<ptrdiff_t>(at));
  for (size_t j = i; j + 1 < count_; ++j) {
    entries_[j] = entries_[j + 1];
    entries_[j].offset = static_cast<uint8_t>(entries_[j].offset - len);
  }
  --count_;
  used_ = static_cast<uint8_t>(used_ - len);
}

size_t TcpOptionList::RemoveAll(uint8_t kind) {
  size_t removed = 0;
  for (size_t i = count_; i > 0; --i) {
    if (entries_[i - 1].kind == kind) {
      RemoveAt(i - 1);
      ++removed;
    }
  }
  return removed;
}

bool TcpOptionList::AddRaw(uint8_t kind, Bytes data) {
  if (kind == tcp_opt::kEol || kind == tcp_opt::kNop) return false;  // they have no length byte
  return Insert(InsertPosition(), kind, data, true);
}

bool TcpOptionList::AddNop() { return Insert(InsertPosition(), tcp_opt::kNop, {}, false); }

bool TcpOptionList::AddMss(uint16_t mss) {
  const uint8_t d[2] = {static_cast<uint8_t>(mss >> 8), static_cast<uint8_t>(mss)};
  return AddRaw(tcp_opt::kMss, d);
}

bool TcpOptionList::AddWindowScale(uint8_t shift) {
  const uint8_t d[1] = {shift};
  return AddRaw(tcp_opt::kWindowScale, d);
}

bool TcpOptionList::AddSackPermitted() { return AddRaw(tcp_opt::kSackPermitted, {}); }

bool TcpOptionList::AddTimestamps(TimestampsOption ts) {
  uint8_t d[8];
  (void)Store32(d, 0, ts.tsval);
  (void)Store32(d, 4, ts.tsecr);
  return AddRaw(tcp_opt::kTimestamps, d);
}

bool TcpOptionList::AddSack(std::span<const SackBlock> blocks) {
  if (blocks.empty() || blocks.size() > 4) return false;
  uint8_t d[32];
  for (size_t i = 0; i < blocks.size(); ++i) {
    (void)Store32(d, i * 8, blocks[i].left);
    (void)Store32(d, i * 8 + 4, blocks[i].right);
  }
  return AddRaw(tcp_opt::kSack, Bytes(d, blocks.size() * 8));
}

bool TcpOptionList::Replace(size_t i, uint8_t kind, Bytes data) {
  if (i >= count_ || kind == tcp_opt::kEol || kind == tcp_opt::kNop) return false;
  const size_t old_len = entries_[i].len;
  if (2 + data.size() > kMaxBytes - used_ + old_len) return false;
  // Copy the data first: `data` may point into this list.
  uint8_t tmp[kMaxBytes];
  std::copy(data.begin(), data.end(), tmp);
  RemoveAt(i);
  return Insert(i, kind, Bytes(tmp, data.size()), true);
}

bool TcpOptionList::OverwriteData(size_t i, Bytes data) {
  if (i >= count_) return false;
  const Bytes d = DataOf(i);
  if (d.size() != data.size()) return false;
  std::copy(data.begin(), data.end(), bytes_.begin() + (d.data() - bytes_.data()));
  return true;
}

bool TcpOptionList::SetMss(uint16_t mss) {
  const auto i = Find(tcp_opt::kMss);
  const uint8_t d[2] = {static_cast<uint8_t>(mss >> 8), static_cast<uint8_t>(mss)};
  return i && OverwriteData(*i, d);
}

bool TcpOptionList::Emit(ByteWriter& w) const {
  if (used_ > kMaxBytes) return false;
  w.Append(Bytes(bytes_.data(), used_));
  const bool ends_in_eol = count_ > 0 && entries_[count_ - 1].kind == tcp_opt::kEol;
  // After EOL padding is zero (RFC 9293 §3.2); otherwise NOPs keep the list parseable.
  w.Fill(ends_in_eol ? tcp_opt::kEol : tcp_opt::kNop, EncodedSize() - used_);
  return w.ok();
}

bool operator==(const TcpOptionList& a, const TcpOptionList& b) {
  if (a.count_ != b.count_ || a.used_ != b.used_) return false;
  for (size_t i = 0; i < a.count_; ++i) {
    if (a.entries_[i].kind != b.entries_[i].kind || a.entries_[i].len != b.entries_[i].len) {
      return false;
    }
  }
  return std::equal(a.bytes_.begin(), a.bytes_.begin() + a.used_, b.bytes_.begin());
}

}  // namespace mproxy::packet
