#include "packet/seq.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <type_traits>
#include <unordered_set>

namespace mproxy::packet {
namespace {

// SubflowSeq must not be totally ordered (DEVELOPERS.md): no operator<.
template <typename T>
concept LessComparable = requires(T a, T b) {
  a < b;
};
static_assert(!LessComparable<SubflowSeq>);
static_assert(LessComparable<DataSeq>);

struct WrapCase {
  uint32_t a;
  uint32_t b;
  bool before;   // Before(a, b)
  int32_t diff;  // a - b
};

TEST(SubflowSeqTest, WrapTable) {
  const WrapCase cases[] = {
      {0, 1, true, -1},
      {1, 0, false, 1},
      {0xffffffff, 0, true, -1},  // across 2^32
      {0, 0xffffffff, false, 1},
      {0xfffffff0, 0x10, true, -0x20},
      {0x10, 0xfffffff0, false, 0x20},
      {0x7fffffff, 0, false, 0x7fffffff},
      {0, 0x7fffffff, true, -0x7fffffff},
      {0x80000001, 0, true, -0x7fffffff},  // more than 2^31 ahead reads as behind
      {5, 5, false, 0},
  };
  for (const auto& c : cases) {
    const SubflowSeq a(c.a), b(c.b);
    EXPECT_EQ(Before(a, b), c.before) << std::hex << c.a << " " << c.b;
    EXPECT_EQ(a - b, c.diff) << std::hex << c.a << " " << c.b;
    EXPECT_EQ(After(b, a), c.before);
    EXPECT_EQ(AtOrBefore(a, b), c.before || c.a == c.b);
    EXPECT_EQ(AtOrAfter(a, b), !c.before);
    EXPECT_EQ(b + static_cast<uint32_t>(c.diff), a);
  }
}

TEST(SubflowSeqTest, ExactlyHalfSpaceApartIsBeforeBothWays) {
  // RFC 1982 leaves this undefined; we document that both directions read as "before".
  const SubflowSeq a(0), b(0x80000000);
  EXPECT_EQ(a - b, INT32_MIN);
  EXPECT_TRUE(Before(a, b));
  EXPECT_TRUE(Before(b, a));
}

TEST(SubflowSeqTest, ArithmeticWraps) {
  SubflowSeq s(0xfffffffe);
  s += 3;
  EXPECT_EQ(s.value(), 1u);
  EXPECT_EQ((s - 2u).value(), 0xffffffffu);
  EXPECT_EQ((SubflowSeq(0xffffffff) + 1u).value(), 0u);
}

TEST(SubflowSeqTest, InWindow) {
  EXPECT_TRUE(InWindow(SubflowSeq(0xfffffffe), SubflowSeq(0xfffffff0), 0x20));
  EXPECT_TRUE(InWindow(SubflowSeq(5), SubflowSeq(0xfffffff0), 0x20));
  EXPECT_FALSE(InWindow(SubflowSeq(0x10), SubflowSeq(0xfffffff0), 0x20));  // half-open end
  EXPECT_FALSE(InWindow(SubflowSeq(0xffffffef), SubflowSeq(0xfffffff0), 0x20));
  EXPECT_FALSE(InWindow(SubflowSeq(1), SubflowSeq(1), 0));
}

TEST(SubflowSeqTest, RandomPropertiesAgainstInt64Model) {
  std::mt19937_64 rng(7);
  for (int i = 0; i < 100000; ++i) {
    const int64_t base = static_cast<int64_t>(rng() >> 1);
    const int64_t delta =
        static_cast<int64_t>(rng() % (uint64_t{1} << 31)) - ((int64_t{1} << 31) - 1);
    const SubflowSeq b(static_cast<uint32_t>(base));
    const SubflowSeq a(static_cast<uint32_t>(base + delta));
    ASSERT_EQ(a - b, delta);
    ASSERT_EQ(Before(a, b), delta < 0);
    ASSERT_EQ(After(a, b), delta > 0);
  }
}

TEST(DataSeqTest, OrderingAndArithmetic) {
  EXPECT_LT(DataSeq(1), DataSeq(2));
  EXPECT_EQ(DataSeq(10) - DataSeq(4), 6);
  EXPECT_EQ(DataSeq(4) - DataSeq(10), -6);
  EXPECT_EQ((DataSeq(~uint64_t{0}) + 1).value(), 0u);
  // Wrap-aware helpers across 2^64.
  EXPECT_TRUE(Before(DataSeq(~uint64_t{0}), DataSeq(0)));
  EXPECT_TRUE(After(DataSeq(1), DataSeq(~uint64_t{0})));
  EXPECT_TRUE(AtOrBefore(DataSeq(3), DataSeq(3)));
  EXPECT_EQ(DataSeq(0x1234567890abcdefULL).low32(), 0x90abcdefu);
  std::unordered_set<DataSeq> set{DataSeq(1), DataSeq(1), DataSeq(2)};
  EXPECT_EQ(set.size(), 2u);
}

struct ExpandCase {
  uint64_t reference;
  uint32_t low32;
  uint64_t expected;
};

TEST(DataSeqTest, Expand32WrapTable) {
  const ExpandCase cases[] = {
      {0x0000000100000000, 0x00000010, 0x0000000100000010},  // same block
      {0x00000001fffffff0, 0x00000010, 0x0000000200000010},  // low32 wrapped forward
      {0x0000000200000010, 0xfffffff0, 0x00000001fffffff0},  // retransmission from before wrap
      {0x0000000180000000, 0x00000000, 0x0000000200000000},  // exactly 2^31 below: Linux goes up
      {0x0000000100000000, 0x80000000, 0x0000000080000000},  // exactly 2^31 above: Linux goes down
      {0x0000000100000000, 0x7fffffff, 0x000000017fffffff},
      {0x0000000000000005, 0xfffffff0, 0xfffffffffffffff0},  // below 0 wraps the 64-bit space
      {0xfffffffffffffff0, 0x00000005, 0x0000000000000005},  // and above 2^64 as well
      {0, 0, 0},
  };
  for (const auto& c : cases) {
    EXPECT_EQ(Expand32(DataSeq(c.reference), c.low32).value(), c.expected)
        << std::hex << c.reference << " " << c.low32;
  }
}

// Literal transcription of Linux __mptcp_expand_seq() (net/mptcp/options.c) as the model.
uint64_t LinuxExpand(uint64_t old_seq, uint64_t cur_seq) {
  const uint32_t old32 = static_cast<uint32_t>(old_seq);
  const uint32_t cur32 = static_cast<uint32_t>(cur_seq);
  auto before = [](uint32_t s1, uint32_t s2) { return static_cast<int32_t>(s1 - s2) < 0; };
  cur_seq = (old_seq & 0xffffffff00000000ULL) + cur32;
  if (cur32 < old32 && before(old32, cur32)) return cur_seq + (1ULL << 32);
  if (cur32 > old32 && before(cur32, old32)) return cur_seq - (1ULL << 32);
  return cur_seq;
}

TEST(DataSeqTest, Expand32MatchesLinuxAndIsNearest) {
  std::mt19937_64 rng(11);
  for (int i = 0; i < 200000; ++i) {
    uint64_t ref = rng();
    if (i % 4 == 0) ref = (ref & 0xffffffff00000000ULL) | (0xffffffffULL - (rng() & 0xff));
    if (i % 4 == 1) ref &= 0xffffffff000000ffULL;
    const uint32_t low = (i % 3 == 0) ? static_cast<uint32_t>(ref + (rng() % 4096) - 2048)
                                      : static_cast<uint32_t>(rng());
    const DataSeq got = Expand32(DataSeq(ref), low);
    ASSERT_EQ(got.value(), LinuxExpand(ref, low)) << std::hex << ref << " " << low;
    ASSERT_EQ(got.low32(), low);
    const int64_t dist = got - DataSeq(ref);
    ASSERT_LE(dist, int64_t{1} << 31);
    ASSERT_GE(dist, -(int64_t{1} << 31));
  }
}

}  // namespace
}  // namespace mproxy::packet
