#include "packet/address.h"

#include <gtest/gtest.h>

#include <unordered_set>

namespace mproxy::packet {
namespace {

TEST(IpAddressTest, ParseAndFormat) {
  const auto a = IpAddress::Parse("198.18.0.1");
  ASSERT_TRUE(a);
  EXPECT_TRUE(a->is_v4());
  EXPECT_EQ(a->bytes().size(), 4u);
  EXPECT_EQ(a->ToString(), "198.18.0.1");
  EXPECT_EQ(*a, IpAddress::V4(0xc6120001));

  const auto b = IpAddress::Parse("2001:db8::1");
  ASSERT_TRUE(b);
  EXPECT_TRUE(b->is_v6());
  EXPECT_EQ(b->bytes().size(), 16u);
  EXPECT_EQ(b->ToString(), "2001:db8::1");

  EXPECT_FALSE(IpAddress::Parse(""));
  EXPECT_FALSE(IpAddress::Parse("198.18.0.256"));
  EXPECT_FALSE(IpAddress::Parse("2001:db8::1%eth0"));
  EXPECT_FALSE(IpAddress::Parse(std::string(100, '1')));
}

TEST(IpAddressTest, FromBytes) {
  const uint8_t four[4] = {198, 18, 0, 1};
  const uint8_t sixteen[16] = {0x20, 0x01, 0x0d, 0xb8};
  EXPECT_EQ(IpAddress::V4(four)->ToString(), "198.18.0.1");
  EXPECT_EQ(IpAddress::V6(sixteen)->ToString(), "2001:db8::");
  EXPECT_FALSE(IpAddress::V4(sixteen));
  EXPECT_FALSE(IpAddress::V6(four));
}

TEST(IpAddressTest, FamiliesNeverCompareEqual) {
  // ::c612:1 and 198.18.0.1 share nothing but must not collide either way.
  const auto v4 = *IpAddress::Parse("0.0.0.0");
  const auto v6 = *IpAddress::Parse("::");
  EXPECT_NE(v4, v6);
  EXPECT_LT(v4, v6);
  EXPECT_NE(v4.Hash(), v6.Hash());
}

TEST(FourTupleTest, ReversedAndHash) {
  FourTuple t{*IpAddress::Parse("198.18.0.1"), *IpAddress::Parse("198.18.0.2"), 40000, 80};
  const FourTuple r = t.Reversed();
  EXPECT_EQ(r.src, t.dst);
  EXPECT_EQ(r.dport, 40000);
  EXPECT_EQ(r.Reversed(), t);
  EXPECT_NE(r, t);
  EXPECT_EQ(t.ToString(), "198.18.0.1:40000 -> 198.18.0.2:80");
  FourTuple t6{*IpAddress::Parse("2001:db8::1"), *IpAddress::Parse("2001:db8::2"), 1, 2};
  EXPECT_EQ(t6.ToString(), "[2001:db8::1]:1 -> [2001:db8::2]:2");

  std::unordered_set<FourTuple> set;
  for (uint16_t p = 0; p < 1000; ++p) {
    set.insert(FourTuple{t.src, t.dst, p, 80});
    set.insert(FourTuple{t.src, t.dst, p, 80}.Reversed());
  }
  EXPECT_EQ(set.size(), 2000u);
}

}  // namespace
}  // namespace mproxy::packet
