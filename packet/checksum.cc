#include "packet/checksum.h"

#include <bit>
#include <cstring>

namespace mproxy::packet::checksum {
namespace {

// Reads 8 bytes as a native-endian word. memcpy of bytes into an integer is not a cast of packet
// memory to a struct: it has no alignment or aliasing requirement and compiles to one load.
inline uint64_t LoadNative64(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

// acc += v with end-around carry (one's-complement addition in 64 bits). Since 2^16 - 1 divides
// 2^64 - 1, folding a 64-bit one's-complement sum down to 16 bits gives the 16-bit sum.
inline uint64_t Add64(uint64_t acc, uint64_t v) {
  acc += v;
  return acc + (acc < v ? 1 : 0);
}

// Native 64-bit one's-complement sum of `data`, the odd tail zero-padded *in memory order* so the
// byte-order-independence argument of RFC 1071 §2(B) holds for the tail too.
uint64_t NativeSum64(const uint8_t* p, size_t n) {
  uint64_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
  // Four independent accumulators keep the add-with-carry chains short.
  while (n >= 32) {
    a0 = Add64(a0, LoadNative64(p));
    a1 = Add64(a1, LoadNative64(p + 8));
    a2 = Add64(a2, LoadNative64(p + 16));
    a3 = Add64(a3, LoadNative64(p + 24));
    p += 32;
    n -= 32;
  }
  uint64_t acc = Add64(Add64(a0, a1), Add64(a2, a3));
  while (n >= 8) {
    acc = Add64(acc, LoadNative64(p));
    p += 8;
    n -= 8;
  }
  if (n > 0) {
    uint8_t tail[8] = {};
    std::memcpy(tail, p, n);
    acc = Add64(acc, LoadNative64(tail));
  }
  return acc;
}

// 64-bit one's-complement sum -> 16 bits, still in native byte order.
inline uint16_t Fold64(uint64_t acc) {
  uint64_t s = (acc & 0xffffffffu) + (acc >> 32);  // <= 33 bits
  s = (s & 0xffffu) + (s >> 16);                   // <= 18 bits
  s = (s & 0xffffu) + (s >> 16);                   // <= 17 bits
  s = (s & 0xffffu) + (s >> 16);                   // 16 bits
  return static_cast<uint16_t>(s);
}

}  // namespace

uint32_t Sum(Bytes data, uint32_t initial) {
  uint16_t s = Fold64(NativeSum64(data.data(), data.size()));
  if constexpr (std::endian::native == std::endian::little) {
    s = static_cast<uint16_t>((s >> 8) | (s << 8));
  }
  return AddSums(initial, s);
}

uint32_t PseudoHeaderSumV4(Bytes src4, Bytes dst4, uint8_t protocol, uint32_t l4_len) {
  uint32_t s = Sum(src4);
  s = Sum(dst4, s);
  s = AddSums(s, protocol);
  return AddSums(s, l4_len);
}

uint32_t PseudoHeaderSumV6(Bytes src16, Bytes dst16, uint8_t next_header, uint32_t l4_len) {
  uint32_t s = Sum(src16);
  s = Sum(dst16, s);
  s = AddSums(s, next_header);
  return AddSums(s, l4_len);
}

uint16_t ReplaceSum(uint16_t old_csum, uint32_t old_sum, uint32_t new_sum) {
  // 0x0000 and 0xffff are both one's-complement zero.
  auto normalized = [](uint32_t sum) -> uint16_t {
    const uint16_t f = Fold(sum);
    return f == 0 ? 0xffff : f;
  };
  const uint16_t old_folded = normalized(old_sum);
  const uint16_t new_folded = normalized(new_sum);
  // Equal sums mean the checksummed value did not change: keep the field bit-exact.
  if (old_folded == new_folded) return old_csum;
  uint32_t s = static_cast<uint16_t>(~old_csum);
  s = AddSums(s, static_cast<uint16_t>(~old_folded));
  s = AddSums(s, new_folded);
  return Finish(s);
}

uint16_t IncrementalUpdate(uint16_t old_csum, uint16_t old_word, uint16_t new_word) {
  return ReplaceSum(old_csum, old_word, new_word);
}

uint16_t IncrementalUpdate32(uint16_t old_csum, uint32_t old_value, uint32_t new_value) {
  return ReplaceSum(old_csum, (old_value >> 16) + (old_value & 0xffff),
                    (new_value >> 16) + (new_value & 0xffff));
}

}  // namespace mproxy::packet::checksum
