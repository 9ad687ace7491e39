// The Internet checksum (RFC 1071): the 16-bit one's-complement of the one's-complement sum of
// the data taken as big-endian 16-bit words. Used for the IPv4 header (RFC 791), TCP (RFC 9293
// §3.1, over a pseudo-header), and the MPTCP DSS checksum (RFC 8684 §3.3.1).
//
// Vocabulary used throughout:
//   - a *sum* (uint32_t) is a partial one's-complement sum, not yet folded to 16 bits. Sums can be
//     added with AddSums() in any order.
//   - Fold(sum) reduces a sum to 16 bits with end-around carry; Finish(sum) = ~Fold(sum) is the
//     value that goes into a checksum field.
//
// Sums are over 16-bit words starting at even offsets of the checksummed data. Chaining
// Sum(b, Sum(a)) equals Sum(a ++ b) only when a has even length; an odd trailing byte is padded
// with a zero low byte (RFC 1071 §4.1). Every header and option area in TCP/IP has even length, so
// the packet code always splits at even offsets.
#pragma once

#include <cstdint>

#include "packet/bytes.h"

namespace mproxy::packet::checksum {

// One's-complement sum of `data` plus `initial`. Processes 8 bytes per step with a 64-bit
// accumulator (RFC 1071 §2(B): the sum is byte-order independent, so it is computed on native
// words and byte-swapped once at the end). Hot path: runs over whole GSO payloads (up to ~64 KB).
[[nodiscard]] uint32_t Sum(Bytes data, uint32_t initial = 0);

// Adds two partial sums with end-around carry (so the result never overflows).
[[nodiscard]] constexpr uint32_t AddSums(uint32_t a, uint32_t b) {
  const uint32_t s = a + b;
  return s + (s < a ? 1u : 0u);
}

// Folds a sum to 16 bits with end-around carry. Fold(x) is 0 only when x == 0.
[[nodiscard]] constexpr uint16_t Fold(uint32_t sum) {
  sum = (sum & 0xffffu) + (sum >> 16);
  sum = (sum & 0xffffu) + (sum >> 16);
  return static_cast<uint16_t>(sum);
}

// The value for a checksum field: the one's complement of the folded sum.
[[nodiscard]] constexpr uint16_t Finish(uint32_t sum) { return static_cast<uint16_t>(~Fold(sum)); }

// Sum of a region whose checksum field is valid is 0xffff (i.e. Finish() == 0).
[[nodiscard]] constexpr bool IsValidSum(uint32_t sum) { return Fold(sum) == 0xffff; }

// Pseudo-header sums (RFC 9293 §3.1 for IPv4, RFC 8200 §8.1 for IPv6). `l4_len` is the TCP header
// plus payload length. The IPv4 pseudo-header length field is 16 bits on the wire, but its sum
// is the same whether the length is added as one 32-bit number or as two words, so a 32-bit
// length (GSO super-packets, see tcp_packet.h) is accepted for both families.
// `src`/`dst` must be 4 (IPv4) or 16 (IPv6) bytes; other sizes contribute whatever they hold.
[[nodiscard]] uint32_t PseudoHeaderSumV4(Bytes src4, Bytes dst4, uint8_t protocol, uint32_t l4_len);
[[nodiscard]] uint32_t PseudoHeaderSumV6(Bytes src16, Bytes dst16, uint8_t next_header,
                                         uint32_t l4_len);

// RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m'). Updates checksum field `old_csum` after the 16-bit word
// at an even offset changed from `old_word` to `new_word`. When nothing changed the field is
// returned unchanged (eqn. 3 would otherwise map 0xffff to 0x0000), so an unmodified re-emit is
// byte-exact.
[[nodiscard]] uint16_t IncrementalUpdate(uint16_t old_csum, uint16_t old_word, uint16_t new_word);

// The same for a 32-bit field at an even offset (sequence and acknowledgement numbers).
[[nodiscard]] uint16_t IncrementalUpdate32(uint16_t old_csum, uint32_t old_value,
                                           uint32_t new_value);

// General RFC 1624 form: the checksummed data contributed `old_sum` and now contributes
// `new_sum` (e.g. Sum() of a header before and after an edit, pseudo-header included). Valid for
// edits that do not shift the rest of the data by an odd number of bytes.
[[nodiscard]] uint16_t ReplaceSum(uint16_t old_csum, uint32_t old_sum, uint32_t new_sum);

// Updates `old_csum` for a byte range that changed from `old_bytes` to `new_bytes` (same size,
// starting at an even offset of the checksummed data).
[[nodiscard]] inline uint16_t UpdateRange(uint16_t old_csum, Bytes old_bytes, Bytes new_bytes) {
  return ReplaceSum(old_csum, Sum(old_bytes), Sum(new_bytes));
}

}  // namespace mproxy::packet::checksum
