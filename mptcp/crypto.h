// MPTCP v1 cryptography (RFC 8684 §3.1, §3.2, §3.4.1) and the DSS checksum (§3.3.1).
//
// Keys are 64-bit numbers; wherever the RFC hashes a key it hashes its 8 big-endian bytes, and
// "Key-A || Key-B" is 16 bytes in that order (interop §1.1, §1.3). Nonces are 4 big-endian bytes.
//
// SHA-256 and HMAC-SHA256 come from OpenSSL 3 libcrypto (EVP_MD / EVP_MAC, fetched once and
// reused per thread). The functions are reentrant and thread-safe. They do not allocate in this
// code, but OpenSSL 3.0 itself still mallocs a few small blocks per digest/MAC (provider context
// re-initialisation); none of these run per data packet — only per connection (token/IDSN), per
// join and per ADD_ADDR. The per-packet DSS checksum is plain arithmetic (packet/checksum.h).
//
// OpenSSL failures (no SHA-256 provider, out of memory) are returned as errors: the engine then
// cannot speak MPTCP for that connection and should fall back/pass it and count it.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>

#include "packet/bytes.h"
#include "packet/result.h"
#include "packet/seq.h"

namespace mproxy::mptcp {

using Sha256Digest = std::array<uint8_t, 32>;

// ---------------------------------------------------------------------------------------------
// Key -> token and IDSN (RFC 8684 §3.1, interop §1.1)

struct KeyDerivation {
  uint32_t token = 0;  // most significant 32 bits of SHA-256(key): identifies the connection
  uint64_t idsn = 0;   // least significant 64 bits: the first DSN sent with this key is idsn + 1
  friend bool operator==(const KeyDerivation&, const KeyDerivation&) = default;
};

[[nodiscard]] Result<KeyDerivation> DeriveFromKey(uint64_t key);

// ---------------------------------------------------------------------------------------------
// MP_JOIN (RFC 8684 §3.2, interop §1.3)

// The primitive both HMACs use (Linux mptcp_crypto_hmac_sha()):
// HMAC-SHA256(key = key1 || key2, msg = message).
[[nodiscard]] Result<Sha256Digest> HmacSha256(uint64_t key1, uint64_t key2, packet::Bytes message);

// The secrets of one join. A = joiner (sends the MP_JOIN SYN), B = the peer it joins (receives
// the SYN and answers with the SYN/ACK). Named by role so that the key order of each HMAC (the
// sender of the HMAC first) is fixed here and cannot be mixed up by a caller.
struct JoinSecrets {
  uint64_t joiner_key = 0;      // Key-A
  uint64_t listener_key = 0;    // Key-B
  uint32_t joiner_nonce = 0;    // R-A (MP_JOIN SYN)
  uint32_t listener_nonce = 0;  // R-B (MP_JOIN SYN/ACK)
};

// HMAC-B = HMAC(Key-B || Key-A, R-B || R-A); the SYN/ACK carries its first 64 bits, returned as
// the big-endian number MpJoin::truncated_hmac holds.
[[nodiscard]] Result<uint64_t> JoinSynAckHmac(const JoinSecrets& s);
// HMAC-A = HMAC(Key-A || Key-B, R-A || R-B); the third ACK carries its first 160 bits.
[[nodiscard]] Result<std::array<uint8_t, 20>> JoinAckHmac(const JoinSecrets& s);

// Constant-time checks of received values; false also when the HMAC cannot be computed.
[[nodiscard]] bool JoinSynAckHmacValid(const JoinSecrets& s, uint64_t received);
[[nodiscard]] bool JoinAckHmacValid(const JoinSecrets& s, std::span<const uint8_t, 20> received);

// ---------------------------------------------------------------------------------------------
// ADD_ADDR (RFC 8684 §3.4.1, interop §1.5)

// HMAC-SHA256(key = Key-sender || Key-receiver, msg = address_id || address (4 or 16 bytes) ||
// port (2 bytes, 0 when the option carries none)), LAST 8 bytes ("rightmost 64 bits"), as the
// big-endian number AddAddr::hmac holds. To check a received ADD_ADDR: sender = the peer.
// `address` must be 4 or 16 bytes (packet::IpAddress::bytes()), else an error.
[[nodiscard]] Result<uint64_t> AddAddrHmac(uint64_t sender_key, uint64_t receiver_key,
                                           uint8_t address_id, packet::Bytes address,
                                           uint16_t port);
[[nodiscard]] bool AddAddrHmacValid(uint64_t sender_key, uint64_t receiver_key, uint8_t address_id,
                                    packet::Bytes address, uint16_t port, uint64_t received);

// ---------------------------------------------------------------------------------------------
// DSS checksum (RFC 8684 §3.3.1, interop §1.4)
//
// One's-complement sum (the TCP algorithm) over the pseudo-header
//   DSN (64, always the full DSN) | SSN (32) | data-level length (16) | checksum (16, zero)
// followed by the mapped payload; the field is the complement of the folded sum. A mapping may
// span several segments, so the payload part is accumulated separately (DssPayloadSum) and
// combined with the pseudo-header at the end. The data-level length includes the DATA_FIN's +1
// but the payload is only the real bytes; a DATA_FIN-only mapping has an empty payload. The
// MP_CAPABLE+data form uses the same checksum with DSN = IDSN(Key-A) + 1 and SSN = 1.

// Running sum over the payload of one mapping, fed in stream order. Chunks of any length are
// fine: a chunk that starts at an odd offset of the mapping has its sum byte-swapped (RFC 1071
// §2(B)), so Add(a); Add(b) equals Add(a ++ b) for every split.
class DssPayloadSum {
 public:
  void Add(packet::Bytes chunk);
  // Partial sum (packet::checksum vocabulary: not folded, not complemented).
  [[nodiscard]] uint32_t sum() const { return sum_; }
  [[nodiscard]] uint64_t bytes() const { return bytes_; }

 private:
  uint32_t sum_ = 0;
  uint64_t bytes_ = 0;
};

// The checksum field for a mapping whose payload sum is `payload_sum` (DssPayloadSum::sum(), or
// packet::checksum::Sum() of the whole payload).
[[nodiscard]] uint16_t DssChecksum(packet::DataSeq dsn, uint32_t ssn, uint16_t data_len,
                                   uint32_t payload_sum);
[[nodiscard]] uint16_t DssChecksum(packet::DataSeq dsn, uint32_t ssn, uint16_t data_len,
                                   packet::Bytes payload);
// Receiver check: the pseudo-header with the received checksum in the zero slot plus the payload
// sums to 0xFFFF.
[[nodiscard]] bool DssChecksumValid(packet::DataSeq dsn, uint32_t ssn, uint16_t data_len,
                                    uint16_t checksum, uint32_t payload_sum);

}  // namespace mproxy::mptcp
