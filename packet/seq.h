// Sequence number types.
//
// SubflowSeq: a 32-bit TCP sequence or acknowledgement number (RFC 9293 §3.4). It wraps, so it
// deliberately has no operator< and cannot key an ordered map: "a before b" only means something
// for numbers less than 2^31 apart (serial number arithmetic, RFC 1982 §3.2). Compare with
// Before/After/AtOrBefore/AtOrAfter, measure with the signed distance `a - b`.
//
// DataSeq: a 64-bit MPTCP data sequence number (RFC 8684 §3.3). It is ordered for convenience
// (maps, sorting within one connection), but the DSN space is modular too and the IDSN is a hash
// output (RFC 8684 §3.3.1), so a connection may cross 2^64. Code that must be wrap-safe uses the
// DataSeq overloads of Before/After (signed 64-bit difference, like Linux before64()) or, better,
// stream offsets `dsn - (idsn + 1)` (mptcp/DESIGN.md).
#pragma once

#include <compare>
#include <cstdint>
#include <functional>

namespace mproxy::packet {

class SubflowSeq {
 public:
  constexpr SubflowSeq() = default;
  constexpr explicit SubflowSeq(uint32_t v) : v_(v) {}

  [[nodiscard]] constexpr uint32_t value() const { return v_; }

  friend constexpr bool operator==(SubflowSeq, SubflowSeq) = default;

  constexpr SubflowSeq& operator+=(uint32_t n) {
    v_ += n;
    return *this;
  }
  constexpr SubflowSeq& operator-=(uint32_t n) {
    v_ -= n;
    return *this;
  }
  [[nodiscard]] friend constexpr SubflowSeq operator+(SubflowSeq a, uint32_t n) { return a += n; }
  [[nodiscard]] friend constexpr SubflowSeq operator-(SubflowSeq a, uint32_t n) { return a -= n; }
  // Signed distance from b to a: the two's-complement reading of (a - b) mod 2^32, so it is
  // INT32_MIN when the numbers are exactly 2^31 apart.
  [[nodiscard]] friend constexpr int32_t operator-(SubflowSeq a, SubflowSeq b) {
    return static_cast<int32_t>(a.v_ - b.v_);  // modular conversion (C++20)
  }

 private:
  uint32_t v_ = 0;
};

// a precedes b (RFC 1982 serial arithmetic; Linux before()). For numbers exactly 2^31 apart both
// Before(a, b) and Before(b, a) hold: such a comparison is undefined by RFC 1982 and a caller
// that can reach it has a window larger than TCP allows (RFC 7323 §2.3 caps it at 2^30).
[[nodiscard]] constexpr bool Before(SubflowSeq a, SubflowSeq b) { return (a - b) < 0; }
[[nodiscard]] constexpr bool After(SubflowSeq a, SubflowSeq b) { return Before(b, a); }
[[nodiscard]] constexpr bool AtOrBefore(SubflowSeq a, SubflowSeq b) { return !After(a, b); }
[[nodiscard]] constexpr bool AtOrAfter(SubflowSeq a, SubflowSeq b) { return !Before(a, b); }
// x lies in the half-open window [begin, begin + len). Wrap-safe for any len (no ordering needed).
[[nodiscard]] constexpr bool InWindow(SubflowSeq x, SubflowSeq begin, uint32_t len) {
  return x.value() - begin.value() < len;
}

class DataSeq {
 public:
  constexpr DataSeq() = default;
  constexpr explicit DataSeq(uint64_t v) : v_(v) {}

  [[nodiscard]] constexpr uint64_t value() const { return v_; }
  [[nodiscard]] constexpr uint32_t low32() const { return static_cast<uint32_t>(v_); }

  friend constexpr auto operator<=>(DataSeq, DataSeq) = default;

  constexpr DataSeq& operator+=(uint64_t n) {
    v_ += n;
    return *this;
  }
  constexpr DataSeq& operator-=(uint64_t n) {
    v_ -= n;
    return *this;
  }
  [[nodiscard]] friend constexpr DataSeq operator+(DataSeq a, uint64_t n) { return a += n; }
  [[nodiscard]] friend constexpr DataSeq operator-(DataSeq a, uint64_t n) { return a -= n; }
  // Signed distance from b to a modulo 2^64 (the offset of a from b when a is not before b).
  [[nodiscard]] friend constexpr int64_t operator-(DataSeq a, DataSeq b) {
    return static_cast<int64_t>(a.v_ - b.v_);
  }

 private:
  uint64_t v_ = 0;
};

// Wrap-safe comparisons on the 64-bit DSN space (Linux before64()/after64()).
[[nodiscard]] constexpr bool Before(DataSeq a, DataSeq b) { return (a - b) < 0; }
[[nodiscard]] constexpr bool After(DataSeq a, DataSeq b) { return Before(b, a); }
[[nodiscard]] constexpr bool AtOrBefore(DataSeq a, DataSeq b) { return !After(a, b); }
[[nodiscard]] constexpr bool AtOrAfter(DataSeq a, DataSeq b) { return !Before(a, b); }

// Widens a 32-bit DSN (DSS without the 'm' flag, RFC 8684 §3.3.1) to the 64-bit value nearest to
// `reference` whose low 32 bits are `low32`; the same result as Linux __mptcp_expand_seq(),
// including its tie rule (exactly 2^31 away: the candidate in the reference's 2^32 block moves
// up when low32 < reference.low32(), down otherwise). Arithmetic is modulo 2^64, like DSNs.
[[nodiscard]] constexpr DataSeq Expand32(DataSeq reference, uint32_t low32) {
  const uint32_t ref32 = reference.low32();
  const uint64_t same_block = (reference.value() & ~uint64_t{0xffffffff}) | low32;
  if (low32 < ref32 && Before(SubflowSeq(ref32), SubflowSeq(low32))) {
    return DataSeq(same_block + (uint64_t{1} << 32));  // low32 wrapped past 2^32
  }
  if (low32 > ref32 && After(SubflowSeq(ref32), SubflowSeq(low32))) {
    return DataSeq(same_block - (uint64_t{1} << 32));  // low32 is from before the wrap
  }
  return DataSeq(same_block);
}

}  // namespace mproxy::packet

template <>
struct std::hash<mproxy::packet::SubflowSeq> {
  size_t operator()(mproxy::packet::SubflowSeq s) const noexcept {
    return std::hash<uint32_t>{}(s.value());
  }
};
template <>
struct std::hash<mproxy::packet::DataSeq> {
  size_t operator()(mproxy::packet::DataSeq s) const noexcept {
    return std::hash<uint64_t>{}(s.value());
  }
};
