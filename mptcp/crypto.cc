#include "mptcp/crypto.h"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include <optional>

#include "packet/checksum.h"

namespace mproxy::mptcp {
namespace {

using packet::ByteReader;
using packet::Bytes;
using packet::ByteWriter;

// Per-thread OpenSSL objects. Fetching an algorithm is the expensive part of an OpenSSL 3 call
// (a provider lookup under a lock), so it happens once per thread; the contexts are reused
// (EVP_DigestInit_ex2 / EVP_MAC_init re-initialise them in place).
class CryptoContext {
 public:
  CryptoContext() = default;
  CryptoContext(const CryptoContext&) = delete;
  CryptoContext& operator=(const CryptoContext&) = delete;
  ~CryptoContext() {
    EVP_MAC_CTX_free(mac_ctx_);
    EVP_MAC_free(mac_);
    EVP_MD_CTX_free(md_ctx_);
    EVP_MD_free(md_);
  }

  static CryptoContext& ForThisThread() {
    thread_local CryptoContext ctx;
    return ctx;
  }

  [[nodiscard]] bool Sha256(Bytes data, Sha256Digest& out) {
    if (!EnsureDigest()) return false;
    unsigned int len = 0;
    return EVP_DigestInit_ex2(md_ctx_, md_, nullptr) == 1 &&
           EVP_DigestUpdate(md_ctx_, data.data(), data.size()) == 1 &&
           EVP_DigestFinal_ex(md_ctx_, out.data(), &len) == 1 && len == out.size();
  }

  [[nodiscard]] bool HmacSha256(Bytes key, Bytes message, Sha256Digest& out) {
    if (!EnsureMac()) return false;
    size_t len = 0;
    return EVP_MAC_init(mac_ctx_, key.data(), key.size(), nullptr) == 1 &&
           EVP_MAC_update(mac_ctx_, message.data(), message.size()) == 1 &&
           EVP_MAC_final(mac_ctx_, out.data(), &len, out.size()) == 1 && len == out.size();
  }

 private:
  // Lazily, and retried on the next call after a failure (e.g. a transient allocation failure).
  bool EnsureDigest() {
    if (md_ctx_ != nullptr) return true;
    if (md_ == nullptr) md_ = EVP_MD_fetch(nullptr, "SHA256", nullptr);
    if (md_ == nullptr) return false;
    md_ctx_ = EVP_MD_CTX_new();
    return md_ctx_ != nullptr;
  }

  bool EnsureMac() {
    if (mac_ctx_ != nullptr) return true;
    if (mac_ == nullptr) mac_ = EVP_MAC_fetch(nullptr, "HMAC", nullptr);
    if (mac_ == nullptr) return false;
    EVP_MAC_CTX* ctx = EVP_MAC_CTX_new(mac_);
    if (ctx == nullptr) return false;
    char digest[] = "SHA256";
    const OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
        OSSL_PARAM_construct_end(),
    };
    if (EVP_MAC_CTX_set_params(ctx, params) != 1) {
      EVP_MAC_CTX_free(ctx);
      return false;
    }
    mac_ctx_ = ctx;
    return true;
  }

  EVP_MD* md_ = nullptr;
  EVP_MD_CTX* md_ctx_ = nullptr;
  EVP_MAC* mac_ = nullptr;
  EVP_MAC_CTX* mac_ctx_ = nullptr;
};

// Key-1 || Key-2 as 16 big-endian bytes (RFC 8684 §3.2: "the keys are concatenated").
std::array<uint8_t, 16> KeyPair(uint64_t key1, uint64_t key2) {
  std::array<uint8_t, 16> k{};
  ByteWriter w(k);
  w.U64(key1);
  w.U64(key2);
  return k;
}

std::array<uint8_t, 8> NoncePair(uint32_t nonce1, uint32_t nonce2) {
  std::array<uint8_t, 8> m{};
  ByteWriter w(m);
  w.U32(nonce1);
  w.U32(nonce2);
  return m;
}

uint64_t Be64At(const Sha256Digest& d, size_t offset) {
  ByteReader r(Bytes(d).subspan(offset, 8));
  return r.U64().value_or(0);
}

}  // namespace

Result<KeyDerivation> DeriveFromKey(uint64_t key) {
  std::array<uint8_t, 8> k{};
  ByteWriter w(k);
  w.U64(key);
  Sha256Digest h{};
  if (!CryptoContext::ForThisThread().Sha256(k, h)) {
    return MakeError("mptcp: SHA-256 of the key failed (OpenSSL)");
  }
  // RFC 8684 §3.1: token = most significant 32 bits, IDSN = least significant 64 bits of the hash
  // (Linux mptcp_crypto_key_sha(): H[0..3] and H[24..31]).
  ByteReader r(h);
  KeyDerivation d;
  d.token = r.U32().value_or(0);
  d.idsn = Be64At(h, 24);
  return d;
}

Result<Sha256Digest> HmacSha256(uint64_t key1, uint64_t key2, Bytes message) {
  const std::array<uint8_t, 16> key = KeyPair(key1, key2);
  Sha256Digest out{};
  if (!CryptoContext::ForThisThread().HmacSha256(key, message, out)) {
    return MakeError("mptcp: HMAC-SHA256 failed (OpenSSL)");
  }
  return out;
}

Result<uint64_t> JoinSynAckHmac(const JoinSecrets& s) {
  // Sent by B: B's key and nonce first (RFC 8684 §3.2; Linux subflow_generate_hmac(local, remote,
  // local nonce, remote nonce) on the listener).
  const std::array<uint8_t, 8> msg = NoncePair(s.listener_nonce, s.joiner_nonce);
  Result<Sha256Digest> h = HmacSha256(s.listener_key, s.joiner_key, msg);
  if (!h) return h.error();
  return Be64At(*h, 0);  // truncated to the leftmost 64 bits
}

Result<std::array<uint8_t, 20>> JoinAckHmac(const JoinSecrets& s) {
  // Sent by A: A's key and nonce first.
  const std::array<uint8_t, 8> msg = NoncePair(s.joiner_nonce, s.listener_nonce);
  Result<Sha256Digest> h = HmacSha256(s.joiner_key, s.listener_key, msg);
  if (!h) return h.error();
  std::array<uint8_t, 20> out{};
  for (size_t i = 0; i < out.size(); ++i) out[i] = (*h)[i];  // leftmost 160 bits
  return out;
}

namespace {
// Compares as bytes in constant time: an HMAC check must not leak, through its timing, how many
// leading bytes of a forged value were right.
bool EqualConstantTime(uint64_t x, uint64_t y) {
  std::array<uint8_t, 8> a{}, b{};
  ByteWriter wa(a), wb(b);
  wa.U64(x);
  wb.U64(y);
  return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}
}  // namespace

bool JoinSynAckHmacValid(const JoinSecrets& s, uint64_t received) {
  const Result<uint64_t> expected = JoinSynAckHmac(s);
  if (!expected) return false;
  return EqualConstantTime(expected.value(), received);
}

bool JoinAckHmacValid(const JoinSecrets& s, std::span<const uint8_t, 20> received) {
  const Result<std::array<uint8_t, 20>> expected = JoinAckHmac(s);
  if (!expected) return false;
  return CRYPTO_memcmp(expected.value().data(), received.data(), received.size()) == 0;
}

Result<uint64_t> AddAddrHmac(uint64_t sender_key, uint64_t receiver_key, uint8_t address_id,
                             Bytes address, uint16_t port) {
  if (address.size() != 4 && address.size() != 16) {
    return MakeError("mptcp: ADD_ADDR HMAC needs a 4- or 16-byte address");
  }
  // id (1) || address (4/16) || port (2): at most 19 bytes (Linux add_addr_generate_hmac()).
  std::array<uint8_t, 19> msg{};
  ByteWriter w(msg);
  w.U8(address_id);
  w.Append(address);
  w.U16(port);  // RFC 8684 §3.4.1: zero when the option carries no port
  Result<Sha256Digest> h = HmacSha256(sender_key, receiver_key, w.Written());
  if (!h) return h.error();
  // The rightmost 64 bits (interop §1.5: H[24..31]).
  return Be64At(*h, 24);
}

bool AddAddrHmacValid(uint64_t sender_key, uint64_t receiver_key, uint8_t address_id, Bytes address,
                      uint16_t port, uint64_t received) {
  const Result<uint64_t> expected =
      AddAddrHmac(sender_key, receiver_key, address_id, address, port);
  if (!expected) return false;
  return EqualConstantTime(expected.value(), received);
}

// ---------------------------------------------------------------------------------------------
// DSS checksum

namespace {

// Sum of the 16-byte pseudo-header DSN(64) | SSN(32) | length(16) | checksum slot(16).
uint32_t PseudoHeaderSum(packet::DataSeq dsn, uint32_t ssn, uint16_t data_len, uint16_t slot) {
  std::array<uint8_t, 16> h{};
  ByteWriter w(h);
  w.U64(dsn.value());
  w.U32(ssn);
  w.U16(data_len);
  w.U16(slot);
  return packet::checksum::Sum(h);
}

}  // namespace

void DssPayloadSum::Add(Bytes chunk) {
  uint32_t s = packet::checksum::Sum(chunk);
  if (bytes_ % 2 == 1) {
    // The chunk starts in the low byte of a 16-bit word of the mapping: every byte of it sits
    // one position later than Sum() assumed, which in one's-complement arithmetic is a byte swap
    // of the folded sum (RFC 1071 §2(B)).
    const uint16_t f = packet::checksum::Fold(s);
    s = static_cast<uint16_t>((f << 8) | (f >> 8));
  }
  sum_ = packet::checksum::AddSums(sum_, s);
  bytes_ += chunk.size();
}

uint16_t DssChecksum(packet::DataSeq dsn, uint32_t ssn, uint16_t data_len, uint32_t payload_sum) {
  return packet::checksum::Finish(
      packet::checksum::AddSums(PseudoHeaderSum(dsn, ssn, data_len, 0), payload_sum));
}

uint16_t DssChecksum(packet::DataSeq dsn, uint32_t ssn, uint16_t data_len, Bytes payload) {
  return DssChecksum(dsn, ssn, data_len, packet::checksum::Sum(payload));
}

bool DssChecksumValid(packet::DataSeq dsn, uint32_t ssn, uint16_t data_len, uint16_t checksum,
                      uint32_t payload_sum) {
  // The received checksum goes into the pseudo-header's zero slot, never after odd-length data
  // (interop §1.4), so the payload's byte positions are unaffected.
  return packet::checksum::IsValidSum(
      packet::checksum::AddSums(PseudoHeaderSum(dsn, ssn, data_len, checksum), payload_sum));
}

}  // namespace mproxy::mptcp
