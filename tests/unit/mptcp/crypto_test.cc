#include "mptcp/crypto.h"

#include <gtest/gtest.h>

#include <array>
#include <cstdint>
#include <random>
#include <thread>
#include <vector>

#include "mptcp/options.h"
#include "packet/checksum.h"

namespace mproxy::mptcp {
namespace {

using packet::Bytes;
using packet::DataSeq;

// Keys of the real capture in interop §1.2 (client Key-A, server Key-B).
constexpr uint64_t kKeyA = 0x511f0ebfef7218bfu;
constexpr uint64_t kKeyB = 0xe87dbb19ae352345u;

// -----------------------------------------------------------------------------------------------
// Token and IDSN (RFC 8684 §3.1). Vectors computed independently with python3:
//   python3 -c "import hashlib; h=hashlib.sha256(K.to_bytes(8,'big')).digest();
//               print(h[:4].hex(), h[24:].hex())"
// for K in (0x511f0ebfef7218bf, 0xe87dbb19ae352345, 1, 0xffffffffffffffff).

TEST(KeyDerivationTest, TokenAndIdsnVectors) {
  struct Vector {
    uint64_t key;
    uint32_t token;
    uint64_t idsn;
  } vectors[] = {
      {kKeyA, 0xf7c59f30u, 0xa28a7cfd0f7e4f49u},
      {kKeyB, 0xd37fb4f4u, 0x5fb157104216fe43u},
      {1, 0xcd266215u, 0x19ec509083d00a50u},
      {0xffffffffffffffffu, 0x12a3ae44u, 0x57fb595bbbacf0cau},
  };
  for (const Vector& v : vectors) {
    const Result<KeyDerivation> d = DeriveFromKey(v.key);
    ASSERT_TRUE(d.ok()) << d.error().message;
    EXPECT_EQ(d->token, v.token) << std::hex << v.key;
    EXPECT_EQ(d->idsn, v.idsn) << std::hex << v.key;
  }
}

TEST(KeyDerivationTest, RealCaptureFirstDsnIsIdsnPlusOne) {
  // interop §1.2 / §1.4: the Linux client's first mapping starts at IDSN(Key-A) + 1; the same
  // value appears as DSN in the golden DSS of options_test.cc.
  const Result<KeyDerivation> d = DeriveFromKey(kKeyA);
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->idsn + 1, 0xa28a7cfd0f7e4f4au);
}

TEST(KeyDerivationTest, ThreadsGetTheSameAnswer) {
  std::vector<std::thread> threads;
  std::array<KeyDerivation, 4> results{};
  for (size_t i = 0; i < results.size(); ++i) {
    threads.emplace_back([&results, i] {
      for (int n = 0; n < 100; ++n) {
        Result<KeyDerivation> d = DeriveFromKey(kKeyB);
        if (d.ok()) results[i] = *d;
      }
    });
  }
  for (std::thread& t : threads) t.join();
  for (const KeyDerivation& d : results)
    EXPECT_EQ(d, (KeyDerivation{0xd37fb4f4u, 0x5fb157104216fe43u}));
}

// -----------------------------------------------------------------------------------------------
// MP_JOIN HMACs (RFC 8684 §3.2, interop §1.3). A = joiner (Key-A, R-A), B = listener.
// python3 -c "import hmac,hashlib; kA=0x511f0ebfef7218bf; kB=0xe87dbb19ae352345;
//   rA=0x01020304; rB=0xa0b0c0d0; b=lambda x,n: x.to_bytes(n,'big');
//   print(hmac.new(b(kB,8)+b(kA,8), b(rB,4)+b(rA,4), hashlib.sha256).hexdigest());  # HMAC-B
//   print(hmac.new(b(kA,8)+b(kB,8), b(rA,4)+b(rB,4), hashlib.sha256).hexdigest())"  # HMAC-A

constexpr JoinSecrets kJoin{kKeyA, kKeyB, 0x01020304u, 0xa0b0c0d0u};
constexpr std::array<uint8_t, 32> kHmacB = {
    0xbb, 0x13, 0xa9, 0x15, 0xcf, 0x31, 0x92, 0x6d, 0x18, 0x18, 0x7d, 0x5f, 0x79, 0xca, 0xe9, 0x64,
    0x1b, 0x69, 0x04, 0xe3, 0xbf, 0x9c, 0x4a, 0x66, 0x01, 0xe3, 0x98, 0xe8, 0x2f, 0x39, 0x9e, 0xdf};
constexpr std::array<uint8_t, 32> kHmacA = {
    0x35, 0x3d, 0xed, 0x03, 0xc4, 0xf8, 0x27, 0x6f, 0x37, 0x03, 0x03, 0x46, 0x48, 0xc0, 0x3b, 0x6e,
    0x77, 0x9e, 0xbe, 0x16, 0xb5, 0x72, 0x8b, 0x6b, 0xd9, 0x92, 0x4a, 0xb3, 0xed, 0x6f, 0x8d, 0x68};

TEST(JoinHmacTest, PrimitiveKeyAndMessageOrder) {
  const std::array<uint8_t, 8> msg_b = {0xa0, 0xb0, 0xc0, 0xd0, 0x01, 0x02, 0x03, 0x04};
  const Result<Sha256Digest> b = HmacSha256(kKeyB, kKeyA, msg_b);
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b.value(), kHmacB);
  const std::array<uint8_t, 8> msg_a = {0x01, 0x02, 0x03, 0x04, 0xa0, 0xb0, 0xc0, 0xd0};
  const Result<Sha256Digest> a = HmacSha256(kKeyA, kKeyB, msg_a);
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a.value(), kHmacA);
}

TEST(JoinHmacTest, SynAckTruncatedHmacB) {
  const Result<uint64_t> t = JoinSynAckHmac(kJoin);
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t.value(), 0xbb13a915cf31926du);  // leftmost 64 bits of HMAC-B
  EXPECT_TRUE(JoinSynAckHmacValid(kJoin, 0xbb13a915cf31926du));
  EXPECT_FALSE(JoinSynAckHmacValid(kJoin, 0xbb13a915cf31926cu));
  // Swapping the roles must change the value (key order matters).
  const JoinSecrets swapped{kKeyB, kKeyA, 0xa0b0c0d0u, 0x01020304u};
  EXPECT_FALSE(JoinSynAckHmacValid(swapped, 0xbb13a915cf31926du));
}

TEST(JoinHmacTest, ThirdAckHmacA) {
  const Result<std::array<uint8_t, 20>> h = JoinAckHmac(kJoin);
  ASSERT_TRUE(h.ok());
  for (size_t i = 0; i < 20; ++i) EXPECT_EQ(h.value()[i], kHmacA[i]) << i;  // leftmost 160 bits
  std::array<uint8_t, 20> received{};
  for (size_t i = 0; i < 20; ++i) received[i] = kHmacA[i];
  EXPECT_TRUE(JoinAckHmacValid(kJoin, received));
  received[19] ^= 1;
  EXPECT_FALSE(JoinAckHmacValid(kJoin, received));
}

TEST(JoinHmacTest, GoldenJoinOptionsCarryTheseValues) {
  // The golden MP_JOIN SYN/ACK and ACK bytes in options_test.cc carry exactly these HMACs.
  MpJoin synack;
  synack.form = MpJoin::Form::kSynAck;
  synack.truncated_hmac = JoinSynAckHmac(kJoin).value();
  synack.nonce = kJoin.listener_nonce;
  std::array<uint8_t, 16> buf{};
  packet::ByteWriter w(buf);
  ASSERT_TRUE(synack.Emit(w));
  const std::array<uint8_t, 16> expected = {0x1e, 0x10, 0x10, 0x00, 0xbb, 0x13, 0xa9, 0x15,
                                            0xcf, 0x31, 0x92, 0x6d, 0xa0, 0xb0, 0xc0, 0xd0};
  EXPECT_EQ(buf, expected);
}

// -----------------------------------------------------------------------------------------------
// ADD_ADDR HMAC (RFC 8684 §3.4.1, interop §1.5): last 8 bytes of
// HMAC(Key-sender || Key-receiver, id || addr || port16).
// python3 -c "import hmac,hashlib; kA=0x511f0ebfef7218bf; kB=0xe87dbb19ae352345;
//   b=lambda x,n: x.to_bytes(n,'big'); H=lambda k1,k2,m: hmac.new(b(k1,8)+b(k2,8), m,
//   hashlib.sha256).digest()[-8:].hex();
//   print(H(kB,kA, bytes([1,198,18,2,2,0,0])));        # id 1, 198.18.2.2, no port
//   print(H(kB,kA, bytes([2,198,18,2,2])+b(8080,2)));  # id 2, port 8080
//   import ipaddress; a=ipaddress.ip_address('2001:db8::1').packed;
//   print(H(kA,kB, bytes([3])+a+b(0,2)))"              # id 3, v6, sent by A

TEST(AddAddrHmacTest, Vectors) {
  const std::array<uint8_t, 4> v4 = {198, 18, 2, 2};
  Result<uint64_t> h = AddAddrHmac(kKeyB, kKeyA, 1, v4, 0);
  ASSERT_TRUE(h.ok());
  EXPECT_EQ(*h, 0xe3b0844a5e1aacd3u);
  h = AddAddrHmac(kKeyB, kKeyA, 2, v4, 8080);
  ASSERT_TRUE(h.ok());
  EXPECT_EQ(*h, 0x70b80b7a24a89aa5u);
  const packet::IpAddress v6 = *packet::IpAddress::Parse("2001:db8::1");
  h = AddAddrHmac(kKeyA, kKeyB, 3, v6.bytes(), 0);
  ASSERT_TRUE(h.ok());
  EXPECT_EQ(*h, 0x773400b7bac80c38u);

  EXPECT_TRUE(AddAddrHmacValid(kKeyB, kKeyA, 1, v4, 0, 0xe3b0844a5e1aacd3u));
  EXPECT_FALSE(AddAddrHmacValid(kKeyA, kKeyB, 1, v4, 0, 0xe3b0844a5e1aacd3u));  // key order
  EXPECT_FALSE(AddAddrHmacValid(kKeyB, kKeyA, 1, v4, 1, 0xe3b0844a5e1aacd3u));  // port 1 != none
}

TEST(AddAddrHmacTest, RejectsOddAddressSizes) {
  const std::array<uint8_t, 5> bad{};
  EXPECT_FALSE(AddAddrHmac(kKeyA, kKeyB, 1, bad, 0).ok());
  EXPECT_FALSE(AddAddrHmac(kKeyA, kKeyB, 1, Bytes{}, 0).ok());
  EXPECT_FALSE(AddAddrHmacValid(kKeyA, kKeyB, 1, bad, 0, 0));
}

TEST(AddAddrHmacTest, GoldenOptionsCarryTheseValues) {
  // The port and v6 ADD_ADDR goldens in options_test.cc were built from these values.
  const ParsedOption p =
      ParseOption(std::vector<uint8_t>{0x1e, 0x12, 0x30, 0x02, 198, 18, 2, 2, 0x1f, 0x90, 0x70,
                                       0xb8, 0x0b, 0x7a, 0x24, 0xa8, 0x9a, 0xa5});
  ASSERT_TRUE(p.ok());
  const AddAddr& a = std::get<AddAddr>(p.option);
  EXPECT_TRUE(
      AddAddrHmacValid(kKeyB, kKeyA, a.address_id, a.address.bytes(), a.port.value_or(0), a.hmac));
}

// -----------------------------------------------------------------------------------------------
// DSS checksum (RFC 8684 §3.3.1, interop §1.4)

TEST(DssChecksumTest, HandComputed) {
  // DSN 0x0000000100000002, SSN 1, length 4, payload 01 02 03 04. 16-bit words:
  //   0000 0001 0000 0002 | 0000 0001 | 0004 | 0000 | 0102 0304
  //   sum = 1 + 2 + 1 + 4 + 0x0102 + 0x0304 = 0x040e   -> checksum ~0x040e = 0xfbf1
  const std::array<uint8_t, 4> payload = {1, 2, 3, 4};
  EXPECT_EQ(DssChecksum(DataSeq(0x0000000100000002u), 1, 4, payload), 0xfbf1);
  // Odd payload 01 02 03: the last byte is padded as the high byte of a word (0x0300).
  //   sum = 1 + 2 + 1 + 3 + 0x0102 + 0x0300 = 0x0409   -> 0xfbf6
  const std::array<uint8_t, 3> odd = {1, 2, 3};
  EXPECT_EQ(DssChecksum(DataSeq(0x0000000100000002u), 1, 3, odd), 0xfbf6);
}

// python3 -c "import struct
// def cs(dsn,ssn,ln,p):
//   d=struct.pack('>QIHH',dsn,ssn,ln,0)+p; d+=b'\0'*(len(d)%2)
//   s=sum(struct.unpack('>%dH'%(len(d)//2),d))
//   while s>>16: s=(s&0xffff)+(s>>16)
//   return (~s)&0xffff
// print(hex(cs(0xa28a7cfd0f7e4f4a,1,769,bytes(range(256))*3+b'\xff')),
//       hex(cs(0xa28a7cfd0f7e4f4a+769,0,1,b'')))"
std::vector<uint8_t> Payload769() {
  std::vector<uint8_t> p;
  for (int r = 0; r < 3; ++r) {
    for (int i = 0; i < 256; ++i) p.push_back(static_cast<uint8_t>(i));
  }
  p.push_back(0xff);
  return p;
}

TEST(DssChecksumTest, PythonVectors) {
  const std::vector<uint8_t> p = Payload769();
  EXPECT_EQ(DssChecksum(DataSeq(0xa28a7cfd0f7e4f4au), 1, 769, p), 0x3eed);
  // DATA_FIN-only mapping: the pseudo-header alone (interop §1.4).
  EXPECT_EQ(DssChecksum(DataSeq(0xa28a7cfd0f7e4f4au + 769), 0, 1, Bytes{}), 0x7ead);
}

TEST(DssChecksumTest, VerifyIdentity) {
  const std::vector<uint8_t> p = Payload769();
  const DataSeq dsn(0xa28a7cfd0f7e4f4au);
  const uint32_t sum = packet::checksum::Sum(p);
  const uint16_t c = DssChecksum(dsn, 1, 769, sum);
  EXPECT_TRUE(DssChecksumValid(dsn, 1, 769, c, sum));
  EXPECT_FALSE(DssChecksumValid(dsn, 1, 769, static_cast<uint16_t>(c + 1), sum));
  EXPECT_FALSE(DssChecksumValid(dsn + 1, 1, 769, c, sum));
  EXPECT_FALSE(DssChecksumValid(dsn, 2, 769, c, sum));
  EXPECT_FALSE(DssChecksumValid(dsn, 1, 770, c, sum));
  // The full DSN is covered even when only its low 32 bits travel in the option.
  EXPECT_FALSE(DssChecksumValid(DataSeq(dsn.value() ^ (uint64_t{1} << 40)), 1, 769, c, sum));
}

TEST(DssChecksumTest, AccumulatesAcrossSegmentsAtAnySplit) {
  // A mapping spanning several segments: the sum of the pieces, whatever their (odd) sizes,
  // equals the sum of the whole payload.
  std::mt19937 rng(7);
  std::vector<uint8_t> p(3001);
  for (uint8_t& b : p) b = static_cast<uint8_t>(rng());
  const DataSeq dsn(0x0123456789abcdefu);
  const uint16_t whole = DssChecksum(dsn, 1000, 3001, p);
  for (int trial = 0; trial < 200; ++trial) {
    DssPayloadSum acc;
    size_t off = 0;
    while (off < p.size()) {
      const size_t n = std::min<size_t>(p.size() - off, rng() % 700);
      acc.Add(Bytes(p).subspan(off, n));
      off += n;
    }
    EXPECT_EQ(acc.bytes(), p.size());
    EXPECT_EQ(DssChecksum(dsn, 1000, 3001, acc.sum()), whole) << trial;
    EXPECT_TRUE(DssChecksumValid(dsn, 1000, 3001, whole, acc.sum()));
  }
}

TEST(DssChecksumTest, OneByteChunks) {
  const std::vector<uint8_t> p = Payload769();
  DssPayloadSum acc;
  for (uint8_t b : p) acc.Add(Bytes(&b, 1));
  EXPECT_EQ(DssChecksum(DataSeq(0xa28a7cfd0f7e4f4au), 1, 769, acc.sum()), 0x3eed);
}

}  // namespace
}  // namespace mproxy::mptcp
