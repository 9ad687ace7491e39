#include "packet/checksum.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <vector>

namespace mproxy::packet::checksum {
namespace {

// Byte-at-a-time reference straight from RFC 1071 §4.1.
uint32_t ReferenceSum(Bytes d, uint32_t initial = 0) {
  uint64_t s = initial;
  size_t i = 0;
  for (; i + 1 < d.size(); i += 2) s += (uint32_t{d[i]} << 8) | d[i + 1];
  if (i < d.size()) s += uint32_t{d[i]} << 8;
  while (s >> 32) s = (s & 0xffffffff) + (s >> 32);
  return static_cast<uint32_t>(s);
}

TEST(ChecksumTest, Rfc1071Example) {
  // RFC 1071 §3 numerical example: 00 01 f2 03 f4 f5 f6 f7 sums to ddf2.
  const std::vector<uint8_t> d = {0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7};
  EXPECT_EQ(Fold(Sum(d)), 0xddf2);
  EXPECT_EQ(Finish(Sum(d)), 0x220d);
}

TEST(ChecksumTest, OddTrailingBytePaddedLow) {
  const std::vector<uint8_t> d = {0x12, 0x34, 0x56};
  EXPECT_EQ(Fold(Sum(d)), 0x1234 + 0x5600);
}

TEST(ChecksumTest, EmptyIsInitial) {
  EXPECT_EQ(Sum(Bytes{}, 0x1234), 0x1234u);
  EXPECT_EQ(Fold(Sum(Bytes{})), 0);
}

TEST(ChecksumTest, Ipv4HeaderGolden) {
  // A classic IPv4 header (checksum b861 well known from textbook examples).
  const std::vector<uint8_t> h = {0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11,
                                  0xb8, 0x61, 0xc0, 0xa8, 0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7};
  EXPECT_TRUE(IsValidSum(Sum(h)));
  std::vector<uint8_t> z = h;
  z[10] = z[11] = 0;
  EXPECT_EQ(Finish(Sum(z)), 0xb861);
}

TEST(ChecksumTest, MatchesReferenceForAllLengthsAndOffsets) {
  std::mt19937_64 rng(1);
  std::vector<uint8_t> buf(600);
  for (auto& b : buf) b = static_cast<uint8_t>(rng());
  for (size_t off = 0; off < 9; ++off) {
    for (size_t len = 0; off + len <= buf.size(); ++len) {
      Bytes d(buf.data() + off, len);
      ASSERT_EQ(Fold(Sum(d, 0x1ffff)), Fold(ReferenceSum(d, 0x1ffff))) << off << " " << len;
    }
  }
}

TEST(ChecksumTest, AllOnesLargeBuffer) {
  // Worst case for carries: 64 KB of 0xff.
  std::vector<uint8_t> d(65536 + 7, 0xff);
  EXPECT_EQ(Fold(Sum(d)), Fold(ReferenceSum(d)));
  EXPECT_EQ(Fold(Sum(d, 0xffffffff)), Fold(ReferenceSum(d, 0xffffffff)));
}

TEST(ChecksumTest, ChainingAtEvenBoundaries) {
  std::mt19937_64 rng(2);
  std::vector<uint8_t> d(1001);
  for (auto& b : d) b = static_cast<uint8_t>(rng());
  for (size_t cut = 0; cut <= d.size(); cut += 2) {
    Bytes all(d);
    EXPECT_EQ(Fold(Sum(all.subspan(cut), Sum(all.first(cut)))), Fold(Sum(all)));
  }
}

TEST(ChecksumTest, FoldAndAddSums) {
  EXPECT_EQ(Fold(0), 0);
  EXPECT_EQ(Fold(0xffff), 0xffff);
  EXPECT_EQ(Fold(0x10000), 1);
  EXPECT_EQ(Fold(0xffffffff), 0xffff);
  EXPECT_EQ(AddSums(0xffffffff, 1), 1u);
  EXPECT_EQ(Finish(0xffff), 0);
}

TEST(ChecksumTest, PseudoHeaderV4) {
  const uint8_t src[4] = {192, 0, 2, 1}, dst[4] = {198, 51, 100, 2};
  // Reference: the 12-byte pseudo-header as bytes.
  const std::vector<uint8_t> ph = {192, 0, 2, 1, 198, 51, 100, 2, 0, 6, 0x01, 0x2c};
  EXPECT_EQ(Fold(PseudoHeaderSumV4(src, dst, 6, 300)), Fold(ReferenceSum(ph)));
  // A >16-bit length sums like its two 16-bit halves.
  const std::vector<uint8_t> ph2 = {192, 0, 2, 1, 198, 51, 100, 2, 0, 6, 0x00, 0x01, 0x00, 0x10};
  EXPECT_EQ(Fold(PseudoHeaderSumV4(src, dst, 6, 0x10010)), Fold(ReferenceSum(ph2)));
}

TEST(ChecksumTest, PseudoHeaderV6) {
  uint8_t src[16] = {0x20, 0x01, 0x0d, 0xb8}, dst[16] = {0x20, 0x01, 0x0d, 0xb8};
  src[15] = 1;
  dst[15] = 2;
  std::vector<uint8_t> ph(src, src + 16);
  ph.insert(ph.end(), dst, dst + 16);
  const uint8_t tail[8] = {0, 0, 0x05, 0xdc, 0, 0, 0, 6};
  ph.insert(ph.end(), tail, tail + 8);
  EXPECT_EQ(Fold(PseudoHeaderSumV6(src, dst, 6, 1500)), Fold(ReferenceSum(ph)));
}

TEST(ChecksumTest, IncrementalMatchesFullOnRandomEdits) {
  std::mt19937_64 rng(3);
  for (int iter = 0; iter < 5000; ++iter) {
    std::vector<uint8_t> d(2 + rng() % 200);
    for (auto& b : d) b = static_cast<uint8_t>(rng());
    d[0] = d[1] = 0;  // checksum field at offset 0
    const uint16_t c = Finish(Sum(d));
    d[0] = static_cast<uint8_t>(c >> 8);
    d[1] = static_cast<uint8_t>(c);
    ASSERT_TRUE(IsValidSum(Sum(d)));
    // Edit one 16-bit word, one 32-bit word, and a range, all at even offsets >= 2.
    const size_t words = (d.size() - 2) / 2;
    if (words == 0) continue;
    const size_t w = 2 + 2 * (rng() % words);
    const uint16_t old16 = static_cast<uint16_t>((d[w] << 8) | d[w + 1]);
    const uint16_t new16 = static_cast<uint16_t>(rng());
    d[w] = static_cast<uint8_t>(new16 >> 8);
    d[w + 1] = static_cast<uint8_t>(new16);
    uint16_t csum = IncrementalUpdate(static_cast<uint16_t>((d[0] << 8) | d[1]), old16, new16);
    d[0] = static_cast<uint8_t>(csum >> 8);
    d[1] = static_cast<uint8_t>(csum);
    ASSERT_TRUE(IsValidSum(Sum(d))) << iter;
    std::vector<uint8_t> z = d;
    z[0] = z[1] = 0;
    ASSERT_EQ(csum, Finish(Sum(z))) << iter;  // bit-exact, not just equivalent

    if (words >= 2) {
      const size_t w32 = 2 + 2 * (rng() % (words - 1));
      uint32_t old32 = 0;
      ASSERT_TRUE(Load32(d, w32, old32));
      const uint32_t new32 = static_cast<uint32_t>(rng());
      ASSERT_TRUE(Store32(d, w32, new32));
      csum = IncrementalUpdate32(csum, old32, new32);
      ASSERT_TRUE(Store16(d, 0, csum));
      ASSERT_TRUE(IsValidSum(Sum(d))) << iter;
    }
    // Range edit.
    const size_t start = 2 + 2 * (rng() % words);
    const size_t len = rng() % (d.size() - start + 1);
    std::vector<uint8_t> before(d.begin() + static_cast<ptrdiff_t>(start),
                                d.begin() + static_cast<ptrdiff_t>(start + len));
    for (size_t i = 0; i < len; ++i) d[start + i] = static_cast<uint8_t>(rng());
    csum = UpdateRange(csum, before, Bytes(d).subspan(start, len));
    ASSERT_TRUE(Store16(d, 0, csum));
    ASSERT_TRUE(IsValidSum(Sum(d))) << iter;
    z = d;
    z[0] = z[1] = 0;
    ASSERT_EQ(csum, Finish(Sum(z))) << iter;
  }
}

TEST(ChecksumTest, NoChangeKeepsFieldExactly) {
  for (uint32_t c : {0x0000u, 0xffffu, 0x1234u}) {
    EXPECT_EQ(IncrementalUpdate(static_cast<uint16_t>(c), 0xabcd, 0xabcd), c);
    EXPECT_EQ(IncrementalUpdate32(static_cast<uint16_t>(c), 0xdeadbeef, 0xdeadbeef), c);
    EXPECT_EQ(ReplaceSum(static_cast<uint16_t>(c), 0, 0xffff), c);  // both one's-complement zero
  }
}

TEST(ChecksumTest, Rfc1624Example) {
  // RFC 1624 §4: HC = 0xdd2f, m = 0x5555 -> m' = 0x3285 gives HC' = 0x0000.
  EXPECT_EQ(IncrementalUpdate(0xdd2f, 0x5555, 0x3285), 0x0000);
}

}  // namespace
}  // namespace mproxy::packet::checksum
