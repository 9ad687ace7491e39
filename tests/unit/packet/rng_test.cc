#include "packet/rng.h"

#include <gtest/gtest.h>

#include <chrono>
#include <set>

namespace mproxy::packet {
namespace {

TEST(RngTest, SplitMix64KnownValues) {
  // Reference outputs of splitmix64 seeded with 0 (Vigna's splitmix64.c).
  SplitMix64 r(0);
  EXPECT_EQ(r.Next64(), 0xe220a8397b1dcdafULL);
  EXPECT_EQ(r.Next64(), 0x6e789e6aa1b965f4ULL);
  EXPECT_EQ(r.Next64(), 0x06c45d188009454fULL);
}

TEST(RngTest, DeterministicPerSeed) {
  Xoshiro256 a(42), b(42), c(43);
  bool differs = false;
  for (int i = 0; i < 100; ++i) {
    const uint64_t x = a.Next64();
    EXPECT_EQ(x, b.Next64());
    differs |= x != c.Next64();
  }
  EXPECT_TRUE(differs);
}

TEST(RngTest, BelowStaysInRange) {
  Xoshiro256 r(1);
  std::set<uint64_t> seen;
  for (int i = 0; i < 10000; ++i) {
    const uint64_t v = r.Below(10);
    ASSERT_LT(v, 10u);
    seen.insert(v);
  }
  EXPECT_EQ(seen.size(), 10u);
  Rng& as_interface = r;
  (void)as_interface.Next32();
}

TEST(FakeClockTest, MovesOnlyWhenTold) {
  FakeClock c;
  const Time t0 = c.Now();
  EXPECT_EQ(c.Now(), t0);
  c.Advance(std::chrono::milliseconds(250));
  EXPECT_EQ(c.Now() - t0, std::chrono::milliseconds(250));
  c.Set(Time{} + std::chrono::seconds(5));
  EXPECT_EQ(c.Now().time_since_epoch(), std::chrono::seconds(5));
}

}  // namespace
}  // namespace mproxy::packet
