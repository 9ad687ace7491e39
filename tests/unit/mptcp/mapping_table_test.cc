#include "mptcp/mapping_table.h"

#include <gtest/gtest.h>

#include <map>
#include <random>

namespace mproxy::mptcp {
namespace {

void ExpectInvariants(const MappingTable& t) {
  const auto& es = t.entries();
  for (size_t i = 0; i < es.size(); ++i) {
    EXPECT_GT(es[i].len, 0u);
    if (i > 0) {
      EXPECT_LE(es[i - 1].src_end(), es[i].src) << "overlap or unsorted at " << i;
      bool mergeable = es[i - 1].src_end() == es[i].src && es[i - 1].tag == es[i].tag &&
                       es[i - 1].dst - es[i - 1].src == es[i].dst - es[i].src;
      EXPECT_FALSE(mergeable) << "unmerged neighbours at " << i;
    }
  }
}

TEST(MappingTable, SingleEntryBetweenHandovers) {
  MappingTable t;
  for (uint64_t off = 0; off < 100 * 1448; off += 1448) {
    EXPECT_EQ(t.Insert(off, off + 1000, 1448), InsertResult::kInserted);
  }
  ASSERT_EQ(t.size(), 1u);
  EXPECT_EQ(t.entries()[0], (MapEntry{0, 1000, 144800, 0}));
  EXPECT_EQ(t.Map(5000), 6000u);
  EXPECT_FALSE(t.Map(144800).has_value());
}

TEST(MappingTable, DuplicateAndConflict) {
  MappingTable t;
  ASSERT_EQ(t.Insert(100, 5000, 50), InsertResult::kInserted);
  EXPECT_EQ(t.Insert(110, 5010, 10), InsertResult::kDuplicate);
  EXPECT_EQ(t.Insert(110, 6010, 10), InsertResult::kConflict);
  EXPECT_EQ(t.Insert(100, 5000, 50, /*tag=*/2), InsertResult::kConflict);
  // Partially new, partially identical: only the new part is added.
  EXPECT_EQ(t.Insert(140, 5040, 30), InsertResult::kInserted);
  ASSERT_EQ(t.size(), 1u);
  EXPECT_EQ(t.entries()[0].len, 70u);
  ExpectInvariants(t);
}

TEST(MappingTable, OutOfOrderFillsGapAndMerges) {
  MappingTable t;
  ASSERT_EQ(t.Insert(0, 0, 10), InsertResult::kInserted);
  ASSERT_EQ(t.Insert(20, 20, 10), InsertResult::kInserted);
  EXPECT_EQ(t.size(), 2u);
  EXPECT_FALSE(t.Map(15).has_value());
  ASSERT_EQ(t.Insert(10, 10, 10), InsertResult::kInserted);
  EXPECT_EQ(t.size(), 1u);
  ExpectInvariants(t);
}

// Seed Figure 5: a non-monotonous TSN->SSN mapping after break-before-make. Source = SSN space,
// destination = TSN space. Subflow bytes 0..3 carry TSN 0..3, then the TCP sender's retransmission of
// TSN 2..3 and new data 4..5 arrive on the new subflow bytes 4..7.
TEST(MappingTable, Figure5NonMonotonousProjection) {
  MappingTable t;
  ASSERT_EQ(t.Insert(0, 0, 4), InsertResult::kInserted);
  ASSERT_EQ(t.Insert(4, 2, 4), InsertResult::kInserted);
  ASSERT_EQ(t.size(), 2u);
  // Plain reverse lookup of SAN-1 = 5 gives TSN 3: "too aggressive" if TSN 4 were missing; the
  // projection of the whole acknowledged SSN block [0, 6) instead gives TSN blocks [0,4) and [2,4).
  std::vector<Interval> out;
  t.Project({0, 6}, out);
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0], (Interval{0, 4}));
  EXPECT_EQ(out[1], (Interval{2, 4}));
  // Conservative monotone ack: source bytes acknowledged only while their destination < limit.
  EXPECT_EQ(t.AckedPrefix(0, 4), 6u);  // SSN 4,5 carry TSN 2,3 (< 4): acknowledged too
  EXPECT_EQ(t.AckedPrefix(0, 3), 3u);
  EXPECT_EQ(t.AckedPrefix(0, 0), 0u);
}

TEST(MappingTable, AckedPrefixStopsAtGap) {
  MappingTable t;
  ASSERT_EQ(t.Insert(0, 100, 10), InsertResult::kInserted);
  ASSERT_EQ(t.Insert(20, 120, 10), InsertResult::kInserted);
  EXPECT_EQ(t.AckedPrefix(0, 1000), 10u);
  EXPECT_EQ(t.AckedPrefix(5, 1000), 10u);
  EXPECT_EQ(t.AckedPrefix(20, 125), 25u);
}

TEST(MappingTable, ForgetBelowTrims) {
  MappingTable t;
  ASSERT_EQ(t.Insert(0, 100, 10), InsertResult::kInserted);
  ASSERT_EQ(t.Insert(20, 50, 10, 1), InsertResult::kInserted);
  t.ForgetBelow(5);
  ASSERT_EQ(t.size(), 2u);
  EXPECT_EQ(t.entries()[0], (MapEntry{5, 105, 5, 0}));
  t.ForgetBelow(25);
  ASSERT_EQ(t.size(), 1u);
  EXPECT_EQ(t.entries()[0], (MapEntry{25, 55, 5, 1}));
  t.ForgetBelow(1000);
  EXPECT_TRUE(t.empty());
}

// Property test against a per-byte reference model over a small space.
TEST(MappingTable, RandomAgainstByteModel) {
  std::mt19937_64 rng(42);
  for (int round = 0; round < 200; ++round) {
    MappingTable t;
    std::map<uint64_t, std::pair<uint64_t, uint32_t>> model;  // src byte -> (dst, tag)
    for (int op = 0; op < 40; ++op) {
      uint64_t src = rng() % 200, len = 1 + rng() % 30, tag = rng() % 2;
      // Mostly consistent pieces (delta from a small set), sometimes conflicting ones.
      uint64_t delta = (rng() % 3) * 1000;
      uint64_t dst = src + delta;
      bool expect_conflict = false, all_dup = true;
      for (uint64_t b = src; b < src + len; ++b) {
        auto it = model.find(b);
        if (it == model.end()) {
          all_dup = false;
        } else if (it->second != std::make_pair(b + delta, static_cast<uint32_t>(tag))) {
          expect_conflict = true;
        }
      }
      InsertResult r = t.Insert(src, dst, len, static_cast<uint32_t>(tag));
      if (expect_conflict) {
        EXPECT_EQ(r, InsertResult::kConflict);
      } else if (all_dup) {
        EXPECT_EQ(r, InsertResult::kDuplicate);
      } else {
        EXPECT_EQ(r, InsertResult::kInserted);
        for (uint64_t b = src; b < src + len; ++b) model[b] = {b + delta, static_cast<uint32_t>(tag)};
      }
      ExpectInvariants(t);
    }
    for (uint64_t b = 0; b < 260; ++b) {
      auto it = model.find(b);
      auto m = t.Map(b);
      ASSERT_EQ(m.has_value(), it != model.end()) << b;
      if (m) {
        EXPECT_EQ(*m, it->second.first);
        EXPECT_EQ(t.Find(b)->tag, it->second.second);
      }
    }
    // AckedPrefix against the model: walk bytes while mapped and below the limit.
    for (int q = 0; q < 20; ++q) {
      uint64_t from = rng() % 200, limit = rng() % 2300;
      uint64_t pos = from;
      while (model.count(pos) && model[pos].first < limit) ++pos;
      EXPECT_EQ(t.AckedPrefix(from, limit), pos);
      // Project against the model: concatenated projected bytes equal the mapped bytes in order.
      uint64_t b = rng() % 200, e = b + rng() % 60;
      std::vector<Interval> out;
      t.Project({b, e}, out);
      std::vector<uint64_t> got, want;
      for (auto& iv : out)
        for (uint64_t x = iv.begin; x < iv.end; ++x) got.push_back(x);
      for (uint64_t x = b; x < e; ++x)
        if (model.count(x)) want.push_back(model[x].first);
      EXPECT_EQ(got, want);
    }
  }
}

}  // namespace
}  // namespace mproxy::mptcp
