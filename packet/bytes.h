// Bounds-checked big-endian byte access. Every read or write of packet bytes in mproxy goes
// through ByteReader / ByteWriter: nothing casts packet memory to a struct (see DEVELOPERS.md).
//
// Contract: a failed read returns false/nullopt and leaves the reader *poisoned* (ok() == false,
// every later read fails too), so a parser can do a run of reads and check once at the end, like
// QUICHE's QuicheDataReader. Writers behave the same way.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>

namespace mproxy::packet {

using Bytes = std::span<const uint8_t>;
using MutableBytes = std::span<uint8_t>;

class ByteReader {
 public:
  explicit ByteReader(Bytes data) : data_(data) {}

  [[nodiscard]] bool ok() const { return ok_; }
  [[nodiscard]] size_t offset() const { return pos_; }
  [[nodiscard]] size_t remaining() const { return ok_ ? data_.size() - pos_ : 0; }
  [[nodiscard]] bool empty() const { return remaining() == 0; }

  [[nodiscard]] std::optional<uint8_t> U8() {
    if (!Need(1)) return std::nullopt;
    return data_[pos_++];
  }
  [[nodiscard]] std::optional<uint16_t> U16() {
    if (!Need(2)) return std::nullopt;
    uint16_t v = static_cast<uint16_t>((data_[pos_] << 8) | data_[pos_ + 1]);
    pos_ += 2;
    return v;
  }
  [[nodiscard]] std::optional<uint32_t> U32() {
    if (!Need(4)) return std::nullopt;
    uint32_t v = 0;
    for (int i = 0; i < 4; ++i) v = (v << 8) | data_[pos_ + i];
    pos_ += 4;
    return v;
  }
  [[nodiscard]] std::optional<uint64_t> U64() {
    if (!Need(8)) return std::nullopt;
    uint64_t v = 0;
    for (int i = 0; i < 8; ++i) v = (v << 8) | data_[pos_ + i];
    pos_ += 8;
    return v;
  }
  // Returns the next n bytes as a view into the underlying buffer.
  [[nodiscard]] std::optional<Bytes> Take(size_t n) {
    if (!Need(n)) return std::nullopt;
    Bytes v = data_.subspan(pos_, n);
    pos_ += n;
    return v;
  }
  [[nodiscard]] bool Skip(size_t n) { return Need(n) && ((pos_ += n), true); }
  // Everything not yet read (empty when poisoned).
  [[nodiscard]] Bytes Rest() const { return ok_ ? data_.subspan(pos_) : Bytes{}; }

 private:
  bool Need(size_t n) {
    if (!ok_ || n > data_.size() - pos_) {
      ok_ = false;
      return false;
    }
    return true;
  }
  Bytes data_;
  size_t pos_ = 0;
  bool ok_ = true;
};

class ByteWriter {
 public:
  explicit ByteWriter(MutableBytes out) : out_(out) {}

  [[nodiscard]] bool ok() const { return ok_; }
  [[nodiscard]] size_t offset() const { return pos_; }
  [[nodiscard]] size_t remaining() const { return ok_ ? out_.size() - pos_ : 0; }
  // The bytes written so far.
  [[nodiscard]] MutableBytes Written() const { return out_.first(pos_); }

  bool U8(uint8_t v) { return Put(&v, 1); }
  bool U16(uint16_t v) {
    const uint8_t b[2] = {static_cast<uint8_t>(v >> 8), static_cast<uint8_t>(v)};
    return Put(b, 2);
  }
  bool U32(uint32_t v) {
    uint8_t b[4];
    for (int i = 0; i < 4; ++i) b[i] = static_cast<uint8_t>(v >> (24 - 8 * i));
    return Put(b, 4);
  }
  bool U64(uint64_t v) {
    uint8_t b[8];
    for (int i = 0; i < 8; ++i) b[i] = static_cast<uint8_t>(v >> (56 - 8 * i));
    return Put(b, 8);
  }
  bool Append(Bytes b) { return Put(b.data(), b.size()); }
  bool Fill(uint8_t v, size_t n) {
    if (!Need(n)) return false;
    for (size_t i = 0; i < n; ++i) out_[pos_ + i] = v;
    pos_ += n;
    return true;
  }

 private:
  bool Need(size_t n) {
    if (!ok_ || n > out_.size() - pos_) {
      ok_ = false;
      return false;
    }
    return true;
  }
  bool Put(const uint8_t* p, size_t n) {
    if (!Need(n)) return false;
    for (size_t i = 0; i < n; ++i) out_[pos_ + i] = p[i];
    pos_ += n;
    return true;
  }
  MutableBytes out_;
  size_t pos_ = 0;
  bool ok_ = true;
};

// Fixed-offset accessors for patching fields in place (checksums, lengths) after a view has
// validated the region. They are still bounds-checked: out of range reads yield 0 and writes do
// nothing, and return false, so a logic error cannot turn into memory corruption.
[[nodiscard]] inline bool Load16(Bytes b, size_t off, uint16_t& v) {
  if (off > b.size() || b.size() - off < 2) return false;
  v = static_cast<uint16_t>((b[off] << 8) | b[off + 1]);
  return true;
}
[[nodiscard]] inline bool Load32(Bytes b, size_t off, uint32_t& v) {
  if (off > b.size() || b.size() - off < 4) return false;
  v = (uint32_t{b[off]} << 24) | (uint32_t{b[off + 1]} << 16) | (uint32_t{b[off + 2]} << 8) |
      b[off + 3];
  return true;
}
inline bool Store16(MutableBytes b, size_t off, uint16_t v) {
  if (off > b.size() || b.size() - off < 2) return false;
  b[off] = static_cast<uint8_t>(v >> 8);
  b[off + 1] = static_cast<uint8_t>(v);
  return true;
}
inline bool Store32(MutableBytes b, size_t off, uint32_t v) {
  if (off > b.size() || b.size() - off < 4) return false;
  for (int i = 0; i < 4; ++i) b[off + i] = static_cast<uint8_t>(v >> (24 - 8 * i));
  return true;
}

}  // namespace mproxy::packet
