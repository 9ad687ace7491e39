#include "mptcp/ack_projection.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <initializer_list>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "mptcp/mapping_table.h"

namespace mproxy::mptcp {
namespace {

using Iv = std::pair<uint64_t, uint64_t>;  // gtest prints pairs; Interval has no printer
constexpr auto kFwd = ProjectionDirection::kSrcToDst;
constexpr auto kBwd = ProjectionDirection::kDstToSrc;

AckInfo MakeAck(uint64_t cum, std::initializer_list<Interval> sack = {}) {
  AckInfo a;
  a.cum = cum;
  for (const Interval& b : sack) EXPECT_TRUE(a.AddSack(b));
  return a;
}

std::vector<Iv> Sacks(const ProjectedAck& p) {
  std::vector<Iv> v;
  for (const Interval& b : p.ack.sack_blocks()) v.emplace_back(b.begin, b.end);
  return v;
}

std::vector<uint32_t> Tags(const ProjectedAck& p) {
  auto t = p.contributing_tags();
  return {t.begin(), t.end()};
}

AckProjectionOptions NoSackOut() {
  AckProjectionOptions o;
  o.max_sack_blocks = 0;
  return o;
}

// ---------------------------------------------------------------------------------------------
// Seed Figure 5, monotonous mapping: reverse lookup is exact and the projection agrees with it.
//
// SEND table (src = TSN offset, dst = SSN offset, tag = subflow) after a make-before-break
// handover from subflow 1 to subflow 2; the ACK arrives on subflow 2 (kDstToSrc, tag 2):
//
//   TSN      0 ............ 1000 .............................. 2000
//            [ sub 1: SSN 0..1000 )[ sub 2: SSN 0 ............ 1000 )
//   TAN = lookupTSN(SAN - 1) + 1 = SAN + 1000 on subflow 2.
TEST(AckProjection, Figure5MonotonousReverseLookupIsExact) {
  MappingTable send;
  ASSERT_EQ(send.Insert(0, 0, 1000, 1), InsertResult::kInserted);
  ASSERT_EQ(send.Insert(1000, 0, 1000, 2), InsertResult::kInserted);
  AckProjector proj;

  // Subflow 1's data is acknowledged (prev = 1000). SAN 600 on subflow 2 -> TAN 1600.
  ProjectedAck r = proj.Project(send, kBwd, 2, MakeAck(600), 1000);
  EXPECT_EQ(r.ack.cum, 1600u);
  EXPECT_TRUE(r.advanced);
  EXPECT_EQ(Tags(r), std::vector<uint32_t>{2});
  EXPECT_TRUE(Sacks(r).empty());

  // With SACK the blocks translate one to one and keep the receiver's order (RFC 2018 §4).
  r = proj.Project(send, kBwd, 2, MakeAck(600, {{900, 950}, {700, 800}}), 1000);
  EXPECT_EQ(r.ack.cum, 1600u);
  EXPECT_EQ(Sacks(r), (std::vector<Iv>{{1900, 1950}, {1700, 1800}}));

  // Subflow 1's ACK has not arrived (prev = 0): subflow 2 alone proves nothing below TSN 1000,
  // so the TCP ACK is a duplicate carrying what subflow 2 delivered as a SACK block (seed §3.4:
  // during handover both subflows must contribute).
  r = proj.Project(send, kBwd, 2, MakeAck(600), 0);
  EXPECT_EQ(r.ack.cum, 0u);
  EXPECT_FALSE(r.advanced);
  EXPECT_TRUE(Tags(r).empty());
  EXPECT_EQ(Sacks(r), (std::vector<Iv>{{1000, 1600}}));
  // ... and subflow 1's ACK then advances TAN through its own bytes only.
  r = proj.Project(send, kBwd, 1, MakeAck(1000), 0);
  EXPECT_EQ(r.ack.cum, 1000u);
  EXPECT_EQ(Tags(r), std::vector<uint32_t>{1});
}

// Monotonous mapping with an SSN byte skipped: the two pieces project to adjacent TSN intervals
// that must be merged into one block, exactly what lookup(SAN - 1) + 1 gives.
//
//   SSN   0 ....... 100 | 101 ........ 201          (src = SSN, dst = TSN: a RECV-style table)
//   TSN   0 ....... 100   100 ........ 200
TEST(AckProjection, Figure5MonotonousWithSkippedSsnMergesAdjacentPieces) {
  MappingTable t;
  ASSERT_EQ(t.Insert(0, 0, 100), InsertResult::kInserted);
  ASSERT_EQ(t.Insert(101, 100, 100), InsertResult::kInserted);
  AckProjector proj;
  // {SAN, lookupTSN(SAN - 1) + 1}; SSN 100 is unmapped, so SAN 101 proves TSN [0, 100) only.
  const std::pair<uint64_t, uint64_t> cases[] = {
      {50, 50}, {100, 100}, {101, 100}, {150, 149}, {201, 200}};
  for (const auto& [san, tan] : cases) {
    ProjectedAck r = proj.Project(t, kFwd, std::nullopt, MakeAck(san), 0);
    EXPECT_EQ(r.ack.cum, tan) << san;
    EXPECT_TRUE(Sacks(r).empty()) << san;
  }
  EXPECT_EQ(*t.Map(149) + 1, 149u);
  EXPECT_EQ(*t.Map(200) + 1, 200u);
}

// Seed Figure 5, non-monotonous mapping after break-before-make. Subflow A carried TSN [0, 200)
// and broke; TSN [0, 100) had been acknowledged (prev = 100). On the new subflow B the TCP sender's
// new data went out first, then its retransmission of [100, 200), then more new data. The table is
// keyed by B's SSN (src) with TSN as destination (seed Figure 5 plots exactly this curve):
//
//   SSN (B)  0 ........ 50 ................ 150 ................ 250
//   TSN     [200 .. 250)[100 ........... 200)[250 ........... 350)
//            new data    retransmission      new data
TEST(AckProjection, Figure5NonMonotonousBreakBeforeMake) {
  MappingTable b;
  ASSERT_EQ(b.Insert(0, 200, 50), InsertResult::kInserted);
  ASSERT_EQ(b.Insert(50, 100, 100), InsertResult::kInserted);
  ASSERT_EQ(b.Insert(150, 250, 100), InsertResult::kInserted);
  AckProjector proj;
  const uint64_t prev = 100;

  // 5a without SACK, SAN = 50:  delivered SSN [0,50) -> TSN [200,250).
  //   TSN  100 ....... 200 [####) 250
  // lookup(49) + 1 = 250 would acknowledge the lost retransmission [100, 200). The projection
  // keeps TAN = 100 (a duplicate ACK) and, if the TCP side allows SACK, reports [200, 250).
  EXPECT_EQ(*b.Map(49) + 1, 250u);
  ProjectedAck r = proj.Project(b, kFwd, std::nullopt, MakeAck(50), prev, NoSackOut());
  EXPECT_EQ(r.ack.cum, 100u);
  EXPECT_FALSE(r.advanced);
  EXPECT_TRUE(Sacks(r).empty());
  EXPECT_EQ(r.unreported_blocks, 1u);
  r = proj.Project(b, kFwd, std::nullopt, MakeAck(50), prev);
  EXPECT_EQ(r.ack.cum, 100u);
  EXPECT_EQ(Sacks(r), (std::vector<Iv>{{200, 250}}));

  // 5a without SACK, SAN = 150:  SSN [0,150) -> TSN [200,250) ∪ [100,200) = [100, 250).
  // lookup(149) + 1 = 200 is too conservative; the projection acknowledges up to 250.
  EXPECT_EQ(*b.Map(149) + 1, 200u);
  r = proj.Project(b, kFwd, std::nullopt, MakeAck(150), prev);
  EXPECT_EQ(r.ack.cum, 250u);
  EXPECT_TRUE(r.advanced);
  EXPECT_TRUE(Sacks(r).empty());

  // 5b with SACK: SAN = 50, SACK [150, 200) (the retransmission was lost):
  //   SSN  [##)......[##)
  //   TSN  100 ....... 200 [## cum ##)[## sack ##) 300  -> adjacent, one block [200, 300)
  r = proj.Project(b, kFwd, std::nullopt, MakeAck(50, {{150, 200}}), prev);
  EXPECT_EQ(r.ack.cum, 100u);
  EXPECT_EQ(Sacks(r), (std::vector<Iv>{{200, 300}}));

  // 5b with SACK: SAN = 0, SACK [50, 150) (the first new data was lost, the retransmission
  // arrived). The subflow ACK does not move, yet the TCP ACK advances to 200, past anything a
  // lookup of SAN could give.
  r = proj.Project(b, kFwd, std::nullopt, MakeAck(0, {{50, 150}}), prev);
  EXPECT_EQ(r.ack.cum, 200u);
  EXPECT_TRUE(r.advanced);
  EXPECT_TRUE(Sacks(r).empty());

  // Everything delivered: TAN 350.
  r = proj.Project(b, kFwd, std::nullopt, MakeAck(250), prev);
  EXPECT_EQ(r.ack.cum, 350u);
}

// The same situation seen through the SEND table (src = TSN, dst = SSN, tag = subflow), the
// direction the engine uses for SAN -> TAN (kDstToSrc, filtered by the subflow the ACK came on):
//
//   TSN   0 ...... 100 ........ 200 .... 250 ..... 300
//         [A: 0..100)[B: 50..150 )[B: 0..50)[B: 150..200)
//
// B's SSN space overlaps A's numerically, so without the tag filter an ACK on B would "prove"
// A's bytes too.
TEST(AckProjection, Figure5SendTableBreakBeforeMakeNeedsTagFilter) {
  MappingTable send;
  ASSERT_EQ(send.Insert(0, 0, 100, /*tag=*/1), InsertResult::kInserted);
  ASSERT_EQ(send.Insert(100, 50, 100, 2), InsertResult::kInserted);
  ASSERT_EQ(send.Insert(200, 0, 50, 2), InsertResult::kInserted);
  ASSERT_EQ(send.Insert(250, 150, 50, 2), InsertResult::kInserted);
  AckProjector proj;

  // SAN_B = 100, A's ACK never arrived (prev = 0): B's SSN [0,100) -> TSN [200,250) ∪ [100,150).
  ProjectedAck r = proj.Project(send, kBwd, 2, MakeAck(100), 0);
  EXPECT_EQ(r.ack.cum, 0u);
  EXPECT_EQ(Sacks(r), (std::vector<Iv>{{100, 150}, {200, 250}}));  // cumulative block: ascending
  // Unfiltered, A's SSN [0,100) would claim TSN [0,100): wrong.
  r = proj.Project(send, kBwd, std::nullopt, MakeAck(100), 0);
  EXPECT_EQ(r.ack.cum, 150u);

  // With A's data acknowledged (prev = 100): TSN [100,150) -> TAN 150, SACK [200, 250).
  r = proj.Project(send, kBwd, 2, MakeAck(100), 100);
  EXPECT_EQ(r.ack.cum, 150u);
  EXPECT_EQ(Sacks(r), (std::vector<Iv>{{200, 250}}));
  EXPECT_EQ(Tags(r), std::vector<uint32_t>{2});
  // SAN_B = 100 plus SACK [150, 200): TSN [250, 300) joins [200, 250) -> SACK [200, 300), ranked
  // first because it holds the most recently reported data.
  r = proj.Project(send, kBwd, 2, MakeAck(100, {{150, 200}}), 100);
  EXPECT_EQ(r.ack.cum, 150u);
  EXPECT_EQ(Sacks(r), (std::vector<Iv>{{200, 300}}));
}

// TCP segments reordered before the proxy (seed §3.3): contiguous SSN allocation makes the
// TSN -> SSN mapping non-monotonous on a single subflow.
//
//   TSN   0 ...... 100 ...... 200 ...... 300
//         [SSN 0..100)[SSN 200..300)[SSN 100..200)
TEST(AckProjection, Figure5ReorderedSegmentsSendTable) {
  MappingTable send;
  ASSERT_EQ(send.Insert(0, 0, 100, 1), InsertResult::kInserted);
  ASSERT_EQ(send.Insert(200, 100, 100, 1), InsertResult::kInserted);
  ASSERT_EQ(send.Insert(100, 200, 100, 1), InsertResult::kInserted);
  AckProjector proj;

  // SAN 200: SSN [0,200) -> TSN [0,100) ∪ [200,300). lookup(199) + 1 = 300 would acknowledge
  // TSN [100,200), which sits at SSN [200,300) and is not delivered.
  ProjectedAck r = proj.Project(send, kBwd, 1, MakeAck(200), 0);
  EXPECT_EQ(r.ack.cum, 100u);
  EXPECT_EQ(Sacks(r), (std::vector<Iv>{{200, 300}}));
  // SAN 200 + SACK [250, 300): TSN [150, 200) merges with [200, 300).
  r = proj.Project(send, kBwd, 1, MakeAck(200, {{250, 300}}), 0);
  EXPECT_EQ(r.ack.cum, 100u);
  EXPECT_EQ(Sacks(r), (std::vector<Iv>{{150, 300}}));
  // SAN 100 + SACK [200, 300): TSN [0, 200) -> TAN 200 although SAN stopped at 100.
  r = proj.Project(send, kBwd, 1, MakeAck(100, {{200, 300}}), 0);
  EXPECT_EQ(r.ack.cum, 200u);
  EXPECT_TRUE(Sacks(r).empty());
  // Without SACK the answer is the conservative one of Figure 5a.
  r = proj.Project(send, kBwd, 1, MakeAck(100), 0);
  EXPECT_EQ(r.ack.cum, 100u);
  r = proj.Project(send, kBwd, 1, MakeAck(300), 100);
  EXPECT_EQ(r.ack.cum, 300u);
}

// Seed §3.4's example: TSN = DSN, one octet per segment, alternating subflows. A TCP ACK of 13
// increments the acknowledged data over both subflows, so both get a subflow ACK; a subflow that
// carried none of the newly acknowledged data gets none.
//
//   TSN    10      11      12
//          sf1:5   sf2:3   sf1:6          (data_to_subflow: src = TSN offset, dst = SSN offset)
TEST(AckProjection, TcpAckToSubflowAcksSeedExample) {
  MappingTable d2s;
  ASSERT_EQ(d2s.Insert(10, 5, 1, 1), InsertResult::kInserted);
  ASSERT_EQ(d2s.Insert(11, 3, 1, 2), InsertResult::kInserted);
  ASSERT_EQ(d2s.Insert(12, 6, 1, 1), InsertResult::kInserted);
  AckProjector proj;

  std::vector<SubflowAck> sf = {{1, 5, {}}, {2, 3, {}}, {3, 0, {}}};
  proj.ProjectToSubflows(d2s, MakeAck(13), sf);
  EXPECT_EQ(sf[0].out.ack.cum, 7u);
  EXPECT_TRUE(sf[0].out.advanced);
  EXPECT_EQ(sf[1].out.ack.cum, 4u);
  EXPECT_TRUE(sf[1].out.advanced);
  EXPECT_EQ(sf[2].out.ack.cum, 0u);
  EXPECT_FALSE(sf[2].out.advanced);

  // TAN 11: only subflow 1 contributed.
  sf = {{1, 5, {}}, {2, 3, {}}};
  proj.ProjectToSubflows(d2s, MakeAck(11), sf);
  EXPECT_EQ(sf[0].out.ack.cum, 6u);
  EXPECT_TRUE(sf[0].out.advanced);
  EXPECT_EQ(sf[1].out.ack.cum, 3u);
  EXPECT_FALSE(sf[1].out.advanced);

  // TAN 10 + SACK [12, 13): subflow 1's byte 6 is SACKed, subflow 2's byte 3 stays unacknowledged
  // (its data, TSN 11, is not delivered).
  sf = {{1, 5, {}}, {2, 3, {}}};
  proj.ProjectToSubflows(d2s, MakeAck(10, {{12, 13}}), sf);
  EXPECT_EQ(sf[0].out.ack.cum, 5u);
  EXPECT_FALSE(sf[0].out.advanced);
  EXPECT_EQ(Sacks(sf[0].out), (std::vector<Iv>{{6, 7}}));
  EXPECT_EQ(sf[1].out.ack.cum, 3u);
  EXPECT_TRUE(Sacks(sf[1].out).empty());
}

// ---------------------------------------------------------------------------------------------
// Edge cases.

TEST(AckProjection, EmptyTable) {
  MappingTable t;
  AckProjector proj;
  for (auto dir : {kFwd, kBwd}) {
    ProjectedAck r = proj.Project(t, dir, std::nullopt, MakeAck(500, {{600, 700}}), 42);
    EXPECT_EQ(r.ack.cum, 42u);
    EXPECT_FALSE(r.advanced);
    EXPECT_TRUE(Sacks(r).empty());
    EXPECT_EQ(r.unreported_blocks, 0u);
  }
  std::vector<SubflowAck> sf = {{1, 7, {}}};
  proj.ProjectToSubflows(t, MakeAck(500), sf);
  EXPECT_EQ(sf[0].out.ack.cum, 7u);
  EXPECT_FALSE(sf[0].out.advanced);
  proj.ProjectToSubflows(t, MakeAck(500), std::span<SubflowAck>{});  // no subflows: no-op
}

//   S   0 ..... 100 (gap) 150 ...... 250
//   T   0 ..... 100       100 ...... 200
TEST(AckProjection, CumInsideUnmappedGap) {
  MappingTable t;
  ASSERT_EQ(t.Insert(0, 0, 100), InsertResult::kInserted);
  ASSERT_EQ(t.Insert(150, 100, 100), InsertResult::kInserted);
  AckProjector proj;
  EXPECT_EQ(proj.Project(t, kFwd, std::nullopt, MakeAck(120), 0).ack.cum, 100u);
  EXPECT_EQ(proj.Project(t, kFwd, std::nullopt, MakeAck(200), 0).ack.cum, 150u);
  // Backwards (ACK in T = dst space, result in src space): the T-cum 120 covers S [0, 100) and
  // S [150, 170); S [100, 150) is unmapped, so the src-space cum stops at 100 and [150,170) is a
  // SACK block. Unmapped bytes are never acknowledged.
  ProjectedAck r = proj.Project(t, kBwd, std::nullopt, MakeAck(120), 0);
  EXPECT_EQ(r.ack.cum, 100u);
  EXPECT_EQ(Sacks(r), (std::vector<Iv>{{150, 170}}));
}

TEST(AckProjection, WindowLargerThanCumAndBoundedWindows) {
  MappingTable t;
  ASSERT_EQ(t.Insert(0, 1000, 100), InsertResult::kInserted);
  AckProjector proj;
  AckProjectionOptions o;
  o.window = 1000;  // > cum: the cumulative block is [0, cum)
  EXPECT_EQ(proj.Project(t, kFwd, std::nullopt, MakeAck(50), 1000, o).ack.cum, 1050u);
  o.window = 20;  // [30, 50) -> [1030, 1050): prev 1000 not inside -> duplicate, SACK block
  ProjectedAck r = proj.Project(t, kFwd, std::nullopt, MakeAck(50), 1000, o);
  EXPECT_EQ(r.ack.cum, 1000u);
  EXPECT_EQ(Sacks(r), (std::vector<Iv>{{1030, 1050}}));
  EXPECT_EQ(proj.Project(t, kFwd, std::nullopt, MakeAck(50), 1030, o).ack.cum, 1050u);
  o.window = 0;  // the cumulative ACK proves nothing; only SACK blocks count
  r = proj.Project(t, kFwd, std::nullopt, MakeAck(50, {{60, 70}}), 1000, o);
  EXPECT_EQ(r.ack.cum, 1000u);
  EXPECT_EQ(Sacks(r), (std::vector<Iv>{{1060, 1070}}));
  // cum = 0: empty cumulative block, whatever the window.
  r = proj.Project(t, kFwd, std::nullopt, MakeAck(0), 1000);
  EXPECT_EQ(r.ack.cum, 1000u);
  EXPECT_TRUE(Sacks(r).empty());
}

// The documented limit of a bounded window (seed's rwind): preimages further than `window` below
// the S-cum are not looked at again, so a non-monotonous mapping can stall where the unbounded
// default completes.
//   S  0 ...... 10 ...... 20
//   T  [10 .. 20)[0 .. 10)
TEST(AckProjection, BoundedWindowLosesOldPreimages) {
  MappingTable t;
  ASSERT_EQ(t.Insert(0, 10, 10), InsertResult::kInserted);
  ASSERT_EQ(t.Insert(10, 0, 10), InsertResult::kInserted);
  AckProjector proj;
  AckProjectionOptions rwind;
  rwind.window = 10;
  ProjectedAck r = proj.Project(t, kFwd, std::nullopt, MakeAck(10), 0, rwind);
  EXPECT_EQ(r.ack.cum, 0u);
  EXPECT_EQ(Sacks(r), (std::vector<Iv>{{10, 20}}));
  EXPECT_EQ(proj.Project(t, kFwd, std::nullopt, MakeAck(20), 0, rwind).ack.cum, 10u);
  EXPECT_EQ(proj.Project(t, kFwd, std::nullopt, MakeAck(20), 0).ack.cum, 20u);
}

TEST(AckProjection, OverlappingBlocksAndDsack) {
  MappingTable t;
  ASSERT_EQ(t.Insert(0, 0, 1000), InsertResult::kInserted);
  AckProjector proj;
  // Overlapping SACK blocks, one reaching below cum (a D-SACK, RFC 2883), one above.
  ProjectedAck r =
      proj.Project(t, kFwd, std::nullopt, MakeAck(100, {{50, 80}, {200, 300}, {250, 400}}), 0);
  EXPECT_EQ(r.ack.cum, 100u);
  EXPECT_EQ(Sacks(r), (std::vector<Iv>{{200, 400}}));
  // A SACK block overlapping the cumulative block and extending it.
  r = proj.Project(t, kFwd, std::nullopt, MakeAck(100, {{90, 150}}), 0);
  EXPECT_EQ(r.ack.cum, 150u);
  EXPECT_TRUE(Sacks(r).empty());
}

//   S  0 .. 10 .. 20        50 .. 60    70 .. 80
//   T  [10..20)[0..10)     [100..110)  [110..120)
TEST(AckProjection, AdjacentPiecesMerge) {
  MappingTable t;
  ASSERT_EQ(t.Insert(0, 10, 10), InsertResult::kInserted);
  ASSERT_EQ(t.Insert(10, 0, 10), InsertResult::kInserted);
  ASSERT_EQ(t.Insert(50, 100, 10), InsertResult::kInserted);
  ASSERT_EQ(t.Insert(70, 110, 10), InsertResult::kInserted);
  AckProjector proj;
  ProjectedAck r = proj.Project(t, kFwd, std::nullopt, MakeAck(20, {{50, 60}, {70, 80}}), 0);
  EXPECT_EQ(r.ack.cum, 20u);
  EXPECT_EQ(Sacks(r), (std::vector<Iv>{{100, 120}}));
  EXPECT_EQ(r.unreported_blocks, 0u);
}

TEST(AckProjection, PrevAtIntervalEdges) {
  MappingTable t;
  ASSERT_EQ(t.Insert(0, 100, 50), InsertResult::kInserted);  // S [0,50) -> T [100,150)
  AckProjector proj;
  const AckInfo in = MakeAck(50);
  ProjectedAck r = proj.Project(t, kFwd, std::nullopt, in, 100);  // left edge
  EXPECT_EQ(r.ack.cum, 150u);
  EXPECT_TRUE(r.advanced);
  r = proj.Project(t, kFwd, std::nullopt, in, 120);  // inside
  EXPECT_EQ(r.ack.cum, 150u);
  r = proj.Project(t, kFwd, std::nullopt, in, 150);  // right edge: no advance, nothing to SACK
  EXPECT_EQ(r.ack.cum, 150u);
  EXPECT_FALSE(r.advanced);
  EXPECT_TRUE(Sacks(r).empty());
  r = proj.Project(t, kFwd, std::nullopt, in, 99);  // one byte short: duplicate ACK + SACK
  EXPECT_EQ(r.ack.cum, 99u);
  EXPECT_FALSE(r.advanced);
  EXPECT_EQ(Sacks(r), (std::vector<Iv>{{100, 150}}));
  r = proj.Project(t, kFwd, std::nullopt, in, 151);  // above everything: duplicate, no SACK
  EXPECT_EQ(r.ack.cum, 151u);
  EXPECT_TRUE(Sacks(r).empty());
}

// 64-bit offsets: S around 2^32 (a 32-bit sequence number would have wrapped here), T far above.
TEST(AckProjection, LargeOffsets) {
  constexpr uint64_t k32 = uint64_t{1} << 32;
  constexpr uint64_t kBig = (uint64_t{1} << 62) + 12345;
  MappingTable t;
  ASSERT_EQ(t.Insert(k32 - 100, kBig, 200, 3), InsertResult::kInserted);
  ASSERT_EQ(t.Insert(k32 + 100, kBig - 1000, 50, 4), InsertResult::kInserted);
  AckProjector proj;
  ProjectedAck r = proj.Project(t, kFwd, std::nullopt, MakeAck(k32 + 10), kBig);
  EXPECT_EQ(r.ack.cum, kBig + 110);
  EXPECT_EQ(Tags(r), std::vector<uint32_t>{3});
  r = proj.Project(t, kFwd, std::nullopt, MakeAck(k32 + 150), kBig - 1000);
  EXPECT_EQ(r.ack.cum, kBig - 950);
  EXPECT_EQ(Sacks(r), (std::vector<Iv>{{kBig, kBig + 200}}));
  // Backwards (ACK in dst space) with a bounded window: [kBig - 100, kBig + 100) reaches the
  // first entry only; the SACK block hits the second.
  AckProjectionOptions w200;
  w200.window = 200;
  r = proj.Project(t, kBwd, std::nullopt, MakeAck(kBig + 100, {{kBig - 990, kBig - 980}}),
                   k32 - 100, w200);
  EXPECT_EQ(r.ack.cum, k32);
  EXPECT_EQ(Sacks(r), (std::vector<Iv>{{k32 + 110, k32 + 120}}));
  // Near the top of the 64-bit range.
  constexpr uint64_t kTop = ~uint64_t{0} - 1000;
  MappingTable top;
  ASSERT_EQ(top.Insert(kTop, 7, 500), InsertResult::kInserted);
  r = proj.Project(top, kFwd, std::nullopt, MakeAck(kTop + 500), 7);
  EXPECT_EQ(r.ack.cum, 507u);
  r = proj.Project(top, kBwd, std::nullopt, MakeAck(300), kTop);
  EXPECT_EQ(r.ack.cum, kTop + 293);
}

TEST(AckProjection, MalformedBlocksIgnoredAndCounted) {
  MappingTable t;
  ASSERT_EQ(t.Insert(0, 0, 1000), InsertResult::kInserted);
  AckProjector proj;
  ProjectedAck r =
      proj.Project(t, kFwd, std::nullopt, MakeAck(100, {{500, 400}, {300, 300}, {600, 700}}), 0);
  EXPECT_EQ(r.ack.cum, 100u);
  EXPECT_EQ(r.ignored_blocks, 2u);
  EXPECT_EQ(Sacks(r), (std::vector<Iv>{{600, 700}}));
  // num_sack beyond capacity is clamped rather than read out of bounds.
  AckInfo bad = MakeAck(100);
  bad.num_sack = 99;
  EXPECT_EQ(bad.sack_blocks().size(), kMaxSackBlocks);
  EXPECT_FALSE(MakeAck(0, {{1, 2}, {3, 4}, {5, 6}, {7, 8}}).AddSack({9, 10}));
}

TEST(AckProjection, SackOrderAndLimit) {
  MappingTable t;
  ASSERT_EQ(t.Insert(0, 0, 1000), InsertResult::kInserted);
  AckProjector proj;
  // Monotonous: the receiver's order is kept (most recent first, RFC 2018 §4).
  AckInfo in = MakeAck(100, {{500, 600}, {300, 400}, {700, 800}, {150, 200}});
  ProjectedAck r = proj.Project(t, kFwd, std::nullopt, in, 0);
  EXPECT_EQ(Sacks(r), (std::vector<Iv>{{500, 600}, {300, 400}, {700, 800}, {150, 200}}));
  AckProjectionOptions three;
  three.max_sack_blocks = 3;  // timestamps take the room of the fourth block
  r = proj.Project(t, kFwd, std::nullopt, in, 0, three);
  EXPECT_EQ(Sacks(r), (std::vector<Iv>{{500, 600}, {300, 400}, {700, 800}}));
  EXPECT_EQ(r.unreported_blocks, 1u);
  AckProjectionOptions many;
  many.max_sack_blocks = 17;  // clamped to 4
  EXPECT_EQ(Sacks(proj.Project(t, kFwd, std::nullopt, in, 0, many)).size(), 4u);

  // Non-monotonous: runs coming only from the cumulative block rank after the SACK blocks, in
  // ascending order; more runs than slots -> the oldest are dropped.
  //   S  0..10 10..20 20..30 30..40 40..50 | 60..70
  //   T  90    70     50     30     10     | 200
  MappingTable nm;
  for (uint64_t i = 0; i < 5; ++i) {
    ASSERT_EQ(nm.Insert(i * 10, 90 - 20 * i, 10), InsertResult::kInserted);
  }
  ASSERT_EQ(nm.Insert(60, 200, 10), InsertResult::kInserted);
  r = proj.Project(nm, kFwd, std::nullopt, MakeAck(50, {{60, 70}}), 0);
  EXPECT_EQ(r.ack.cum, 0u);
  EXPECT_EQ(Sacks(r), (std::vector<Iv>{{200, 210}, {10, 20}, {30, 40}, {50, 60}}));
  EXPECT_EQ(r.unreported_blocks, 2u);  // [70, 80) and [90, 100)
}

TEST(AckProjection, ContributingTagsTruncated) {
  MappingTable t;
  for (uint64_t i = 0; i < 10; ++i) {
    ASSERT_EQ(t.Insert(i * 10, i * 10, 10, /*tag=*/static_cast<uint32_t>(9 - i)),
              InsertResult::kInserted);
  }
  AckProjector proj;
  ProjectedAck r = proj.Project(t, kFwd, std::nullopt, MakeAck(100), 0);
  EXPECT_EQ(r.ack.cum, 100u);
  EXPECT_EQ(r.num_tags, kMaxContributingTags);
  EXPECT_TRUE(r.tags_truncated);
  std::vector<uint32_t> tags = Tags(r);
  EXPECT_TRUE(std::is_sorted(tags.begin(), tags.end()));
  r = proj.Project(t, kFwd, std::nullopt, MakeAck(30), 0);
  EXPECT_EQ(Tags(r), (std::vector<uint32_t>{7, 8, 9}));
  EXPECT_FALSE(r.tags_truncated);
  // Pieces below prev do not contribute.
  r = proj.Project(t, kFwd, std::nullopt, MakeAck(30), 10);
  EXPECT_EQ(Tags(r), (std::vector<uint32_t>{7, 8}));
}

// ---------------------------------------------------------------------------------------------
// Randomized property tests against a per-byte reference model.
//
// The model works on single bytes: a relation of (S-byte, T-byte, tag) triples taken from the
// generator's own list of inserted pieces (not from the table), the set of S-bytes the receiver
// delivered, and the ACK a receiver would send for it. It checks that the projection is exact:
//   SAFETY:        every T-byte in [prev, cum) and in every SACK block has a preimage that is
//                  really delivered (checked against the true delivered set, not just the ACK);
//   COMPLETENESS:  cum = max{X >= prev : every T-byte in [prev, X) has a preimage in D}, with
//                  D = [cum_S - min(window, cum_S), cum_S) ∪ (reported SACK blocks); and every
//                  interval of the image of D above cum is reported when it fits;
//   ORDER/LIMIT:   the reported blocks are the top max_sack_blocks intervals by (rank, offset);
//   MONOTONIC:     cum >= prev;
//   TAGS:          the tags of D's preimages of [prev, cum).
// The corollary the engine relies on -- once every S-byte is delivered and the window covers the
// S-cum, the T-cum reaches the first T-byte without a mapped preimage -- is checked separately.

constexpr uint64_t kSpan = 512;  // model S- and T-bytes live in [base, base + kSpan)

struct Triple {
  uint64_t s = 0;
  uint64_t t = 0;
  uint32_t tag = 0;
};

struct Piece {
  uint64_t src, dst, len;
  uint32_t tag;
};

std::vector<Triple> Relation(const std::vector<Piece>& pieces, ProjectionDirection dir,
                             std::optional<uint32_t> tag) {
  std::vector<Triple> rel;
  for (const Piece& p : pieces) {
    if (tag && p.tag != *tag) continue;
    for (uint64_t k = 0; k < p.len; ++k) {
      if (dir == kFwd) {
        rel.push_back({p.src + k, p.dst + k, p.tag});
      } else {
        rel.push_back({p.dst + k, p.src + k, p.tag});
      }
    }
  }
  return rel;
}

// Table keyed by S with arbitrary destinations: monotonous runs, retransmission overlaps (several
// S-bytes onto one T-byte), jumps leaving T holes, S gaps, several tags.
std::vector<Piece> GenArbitrary(std::mt19937_64& rng, uint64_t base) {
  std::vector<Piece> out;
  uint64_t s = base, t_next = base;
  uint32_t tag = static_cast<uint32_t>(rng() % 3);
  while (s < base + 300) {
    uint64_t len = 1 + rng() % 24;
    const uint64_t mode = rng() % 10;
    if (mode == 0) {  // S gap: unmapped S bytes
      s += len;
      continue;
    }
    uint64_t dst;
    if (mode <= 5) {
      dst = t_next;
    } else if (mode <= 7) {  // retransmission: back onto already mapped T
      dst = base + rng() % (t_next - base + 1);
    } else {  // jump ahead, leaving a T hole a later piece may fill
      dst = t_next + 1 + rng() % 30;
    }
    if (dst >= base + kSpan) continue;
    len = std::min(len, base + kSpan - dst);
    t_next = std::max(t_next, dst + len);
    if (rng() % 4 == 0) tag = static_cast<uint32_t>(rng() % 3);
    out.push_back({s, dst, len, tag});
    s += len;
  }
  return out;
}

// SEND-table shape: src = TSN (the stream cut into segments, sent in a locally shuffled order,
// some never sent), dst = per-subflow SSN allocated contiguously in sending order (sometimes with
// an SSN gap), tag = subflow.
std::vector<Piece> GenSendTable(std::mt19937_64& rng, uint64_t base) {
  std::vector<std::pair<uint64_t, uint64_t>> segs;
  for (uint64_t t = base; t < base + 400;) {
    uint64_t len = 1 + rng() % 30;
    segs.emplace_back(t, len);
    t += len;
  }
  for (size_t i = 0; i + 1 < segs.size(); ++i) {
    if (rng() % 4 == 0) std::swap(segs[i], segs[std::min(segs.size() - 1, i + 1 + rng() % 3)]);
  }
  uint64_t ssn[3] = {base, base, base};
  uint32_t tag = 0;
  std::vector<Piece> out;
  for (const auto& [t, len] : segs) {
    if (rng() % 10 == 0) continue;  // never sent: TSN hole in the table
    if (rng() % 6 == 0) tag = static_cast<uint32_t>(rng() % 3);
    if (rng() % 12 == 0 && ssn[tag] < base + 440) ssn[tag] += 1 + rng() % 5;  // stay < kSpan
    out.push_back({t, ssn[tag], len, tag});
    ssn[tag] += len;
  }
  return out;
}

MappingTable BuildTable(const std::vector<Piece>& pieces) {
  MappingTable t;
  for (const Piece& p : pieces) {
    EXPECT_NE(t.Insert(p.src, p.dst, p.len, p.tag), InsertResult::kConflict);
  }
  return t;
}

// delivered[i] <=> S-byte base + i delivered; bytes below base count as delivered.
std::vector<bool> GenDelivered(std::mt19937_64& rng) {
  std::vector<bool> d(kSpan);
  const uint64_t p_prefix = rng() % 4;  // how likely long delivered stretches are
  bool on = rng() % 2 == 0;
  for (uint64_t i = 0; i < kSpan; ++i) {
    if (rng() % (on ? 8 + 8 * p_prefix : 10) == 0) on = !on;
    d[i] = on;
  }
  return d;
}

struct ReceiverAck {
  AckInfo ack;
  size_t malformed = 0;
};

// The ACK a real receiver sends: cum = first undelivered byte, SACK = up to four delivered runs
// above it in an arbitrary "recency" order; sometimes a D-SACK first block below cum and sometimes
// a malformed block.
ReceiverAck MakeReceiverAck(std::mt19937_64& rng, const std::vector<bool>& delivered,
                            uint64_t base) {
  ReceiverAck r;
  uint64_t i = 0;
  while (i < kSpan && delivered[i]) ++i;
  r.ack.cum = base + i;
  std::vector<Interval> runs;
  for (; i < kSpan; ++i) {
    if (!delivered[i]) continue;
    uint64_t j = i;
    while (j < kSpan && delivered[j]) ++j;
    runs.push_back({base + i, base + j});
    i = j;
  }
  std::shuffle(runs.begin(), runs.end(), rng);
  if (r.ack.cum > base && rng() % 8 == 0) {
    uint64_t lo = base + rng() % (r.ack.cum - base);
    uint64_t hi = lo + 1 + rng() % (r.ack.cum - lo);
    r.ack.AddSack({lo, hi});
  }
  for (const Interval& run : runs) {
    if (!r.ack.AddSack(run)) break;
  }
  if (rng() % 16 == 0 && r.ack.num_sack > 0) {
    size_t at = rng() % r.ack.num_sack;
    uint64_t x = base + rng() % kSpan;
    r.ack.sack[at] = {x + rng() % 3, x};  // end <= begin
    r.malformed = 1;
  }
  return r;
}

struct ModelResult {
  uint64_t cum = 0;
  std::vector<Iv> sacks;
  size_t unreported = 0;
  std::vector<uint32_t> tags;
  std::vector<bool> truly;  // T-byte has a really delivered preimage
};

ModelResult Model(const std::vector<Triple>& rel, uint64_t base, const std::vector<bool>& delivered,
                  const AckInfo& in, uint64_t prev, const AckProjectionOptions& opt) {
  struct B {
    Interval iv;
    uint8_t rank;
  };
  std::vector<B> blocks;
  for (size_t i = 0; i < std::min(in.num_sack, kMaxSackBlocks); ++i) {
    if (in.sack[i].end > in.sack[i].begin) blocks.push_back({in.sack[i], static_cast<uint8_t>(i)});
  }
  uint64_t lo = in.cum >= opt.window ? in.cum - opt.window : 0;
  blocks.push_back({{lo, in.cum}, static_cast<uint8_t>(kMaxSackBlocks)});

  ModelResult m;
  std::vector<bool> rd(kSpan, false);
  std::vector<int> rank(kSpan, 99);
  m.truly.assign(kSpan, false);
  for (const Triple& x : rel) {
    const uint64_t ti = x.t - base;
    if (x.s >= base && x.s < base + kSpan && delivered[x.s - base]) m.truly[ti] = true;
    for (const B& b : blocks) {
      if (x.s >= b.iv.begin && x.s < b.iv.end) {
        rd[ti] = true;
        rank[ti] = std::min<int>(rank[ti], b.rank);
      }
    }
  }
  auto in_d = [&](uint64_t s) {
    return std::any_of(blocks.begin(), blocks.end(),
                       [&](const B& b) { return s >= b.iv.begin && s < b.iv.end; });
  };
  m.cum = prev;
  while (m.cum < base + kSpan && rd[m.cum - base]) ++m.cum;
  std::set<uint32_t> tags;
  for (const Triple& x : rel) {
    if (x.t >= prev && x.t < m.cum && in_d(x.s)) tags.insert(x.tag);
  }
  m.tags.assign(tags.begin(), tags.end());
  std::vector<std::pair<int, Iv>> runs;
  for (uint64_t t = m.cum; t < base + kSpan; ++t) {
    if (!rd[t - base]) continue;
    uint64_t e = t;
    int r = 99;
    while (e < base + kSpan && rd[e - base]) r = std::min(r, rank[e++ - base]);
    runs.push_back({r, {t, e}});
    t = e;
  }
  std::stable_sort(runs.begin(), runs.end(),
                   [](const auto& a, const auto& b) { return a.first < b.first; });
  const size_t n = std::min({runs.size(), opt.max_sack_blocks, kMaxSackBlocks});
  for (size_t i = 0; i < n; ++i) m.sacks.push_back(runs[i].second);
  m.unreported = runs.size() - n;
  return m;
}

void ExpectMatchesModel(const ModelResult& m, const ProjectedAck& r, uint64_t base, uint64_t prev,
                        const std::string& ctx) {
  ASSERT_GE(r.ack.cum, prev) << ctx;  // monotonic
  ASSERT_LE(r.ack.cum, base + kSpan) << ctx;
  // Safety, against the true delivered set.
  for (uint64_t t = std::max(prev, base); t < r.ack.cum; ++t) {
    ASSERT_TRUE(m.truly[t - base]) << ctx << " acknowledges undelivered T-byte " << t;
  }
  for (const Interval& b : r.ack.sack_blocks()) {
    ASSERT_GT(b.begin, r.ack.cum) << ctx;
    ASSERT_LE(b.end, base + kSpan) << ctx;
    for (uint64_t t = b.begin; t < b.end; ++t) {
      ASSERT_TRUE(m.truly[t - base]) << ctx << " SACKs undelivered T-byte " << t;
    }
  }
  // Completeness / exactness.
  EXPECT_EQ(r.ack.cum, m.cum) << ctx;
  EXPECT_EQ(r.advanced, m.cum > prev) << ctx;
  EXPECT_EQ(Sacks(r), m.sacks) << ctx;
  EXPECT_EQ(r.unreported_blocks, m.unreported) << ctx;
  EXPECT_EQ(Tags(r), m.tags) << ctx;
  EXPECT_FALSE(r.tags_truncated) << ctx;
}

uint64_t PickBase(std::mt19937_64& rng) {
  static constexpr uint64_t kBases[] = {0, (uint64_t{1} << 32) - 200, (uint64_t{1} << 40) + 17,
                                        uint64_t{1} << 62};
  return kBases[rng() % std::size(kBases)];
}

AckProjectionOptions PickOptions(std::mt19937_64& rng, uint64_t cum, uint64_t base) {
  AckProjectionOptions o;
  if (rng() % 2 == 0) o.window = rng() % 3 == 0 ? 0 : rng() % (cum - base + 40);
  o.max_sack_blocks = rng() % 3 == 0 ? rng() % 6 : kMaxSackBlocks;
  return o;
}

// prev: the stream start, a random byte, or the edge of a projected interval.
uint64_t PickPrev(std::mt19937_64& rng, uint64_t base, const ProjectedAck& hint) {
  switch (rng() % 4) {
    case 0:
      return base;
    case 1:
      if (hint.ack.num_sack > 0) {
        const Interval& b = hint.ack.sack[rng() % hint.ack.num_sack];
        return rng() % 2 ? b.begin : b.end;
      }
      return hint.ack.cum;
    default:
      return base + rng() % (kSpan + 1);
  }
}

TEST(AckProjection, RandomAgainstByteModel) {
  std::mt19937_64 rng(20240521);
  AckProjector proj;
  int checked = 0;
  for (int round = 0; round < 4000; ++round) {
    const uint64_t base = PickBase(rng);
    const bool send_shape = rng() % 2 == 0;
    const std::vector<Piece> pieces =
        send_shape ? GenSendTable(rng, base) : GenArbitrary(rng, base);
    const MappingTable table = BuildTable(pieces);
    const ProjectionDirection dir = rng() % 2 == 0 ? kFwd : kBwd;
    std::optional<uint32_t> tag;
    if (rng() % 3 != 0) tag = static_cast<uint32_t>(rng() % 3);
    const std::vector<Triple> rel = Relation(pieces, dir, tag);
    const std::vector<bool> delivered = GenDelivered(rng);
    const ReceiverAck ra = MakeReceiverAck(rng, delivered, base);
    const AckProjectionOptions opt = PickOptions(rng, ra.ack.cum, base);
    // A first projection from the stream start supplies interval edges for prev.
    const ProjectedAck hint = proj.Project(table, dir, tag, ra.ack, base, opt);
    const uint64_t prev = PickPrev(rng, base, hint);

    const ProjectedAck r = proj.Project(table, dir, tag, ra.ack, prev, opt);
    const std::string ctx = "round " + std::to_string(round);
    ExpectMatchesModel(Model(rel, base, delivered, ra.ack, prev, opt), r, base, prev, ctx);
    EXPECT_EQ(r.ignored_blocks, ra.malformed) << ctx;
    ++checked;

    // Cross-check with the independently tested conservative walk: without SACK, with the
    // unbounded window and no tag filter, the backwards projection is MappingTable::AckedPrefix
    // (what the single-path engine uses for TAN -> SAN today).
    if (dir == kBwd && !tag) {
      const ProjectedAck plain = proj.Project(table, kBwd, std::nullopt, MakeAck(ra.ack.cum), prev);
      EXPECT_EQ(plain.ack.cum, std::max(prev, table.AckedPrefix(prev, ra.ack.cum))) << ctx;
    }
    if (HasFatalFailure()) return;
  }
  EXPECT_EQ(checked, 4000);
}

// The brief's completeness statement, exactly: every S-byte delivered (cum_S = base + kSpan, no
// SACK needed) and a window covering [base, cum_S) -> the T-cum reaches the first T-byte at or
// above prev that has no mapped preimage (in the tag's subgraph). With a window that stops short
// of some needed preimage it may stop earlier, but never acknowledges an unmapped byte.
TEST(AckProjection, RandomAllDeliveredReachesFirstUnmapped) {
  std::mt19937_64 rng(7);
  AckProjector proj;
  for (int round = 0; round < 2000; ++round) {
    const uint64_t base = PickBase(rng);
    const std::vector<Piece> pieces =
        rng() % 2 == 0 ? GenSendTable(rng, base) : GenArbitrary(rng, base);
    const MappingTable table = BuildTable(pieces);
    const ProjectionDirection dir = rng() % 2 == 0 ? kFwd : kBwd;
    std::optional<uint32_t> tag;
    if (rng() % 2 == 0) tag = static_cast<uint32_t>(rng() % 3);
    std::vector<bool> mapped(kSpan, false);
    for (const Triple& x : Relation(pieces, dir, tag)) mapped[x.t - base] = true;
    const uint64_t prev = base + (rng() % 2 == 0 ? 0 : rng() % kSpan);
    uint64_t x = prev;
    while (x < base + kSpan && mapped[x - base]) ++x;

    AckProjectionOptions opt;
    const uint64_t cum = base + kSpan;
    if (rng() % 2 == 0) opt.window = kSpan + rng() % 1000;  // >= cum - base: covers every byte
    const ProjectedAck r = proj.Project(table, dir, tag, MakeAck(cum), prev, opt);
    ASSERT_EQ(r.ack.cum, x) << "round " << round;
    EXPECT_EQ(r.advanced, x > prev);

    AckProjectionOptions short_window;
    short_window.window = rng() % kSpan;
    const ProjectedAck s = proj.Project(table, dir, tag, MakeAck(cum), prev, short_window);
    ASSERT_LE(s.ack.cum, x) << "round " << round;
    ASSERT_GE(s.ack.cum, prev);
  }
}

// A connection's life: bytes are delivered a few runs at a time, every ACK is projected with the
// previous result as prev. Each step is exact against the model; T-cum never decreases; with the
// unbounded window the final ACK reaches the first T-byte without a mapped preimage.
TEST(AckProjection, RandomAckSequencesAreMonotonicAndComplete) {
  std::mt19937_64 rng(99);
  AckProjector proj;
  for (int round = 0; round < 300; ++round) {
    const uint64_t base = PickBase(rng);
    const std::vector<Piece> pieces =
        rng() % 2 == 0 ? GenSendTable(rng, base) : GenArbitrary(rng, base);
    const MappingTable table = BuildTable(pieces);
    const ProjectionDirection dir = rng() % 2 == 0 ? kFwd : kBwd;
    std::optional<uint32_t> tag;
    if (rng() % 2 == 0) tag = static_cast<uint32_t>(rng() % 3);
    const std::vector<Triple> rel = Relation(pieces, dir, tag);
    AckProjectionOptions opt;
    opt.max_sack_blocks = 1 + rng() % 4;

    std::vector<bool> delivered(kSpan, false);
    uint64_t prev = base;
    for (int step = 0; step < 40; ++step) {
      for (int k = 0; k < 3; ++k) {
        uint64_t at = rng() % kSpan, len = 1 + rng() % 25;
        for (uint64_t i = at; i < std::min(kSpan, at + len); ++i) delivered[i] = true;
      }
      if (step == 39) delivered.assign(kSpan, true);
      const ReceiverAck ra = MakeReceiverAck(rng, delivered, base);
      const ProjectedAck r = proj.Project(table, dir, tag, ra.ack, prev, opt);
      const std::string ctx = "round " + std::to_string(round) + " step " + std::to_string(step);
      ExpectMatchesModel(Model(rel, base, delivered, ra.ack, prev, opt), r, base, prev, ctx);
      if (HasFatalFailure()) return;
      prev = r.ack.cum;
    }
    std::vector<bool> mapped(kSpan, false);
    for (const Triple& x : rel) mapped[x.t - base] = true;
    uint64_t x = base;
    while (x < base + kSpan && mapped[x - base]) ++x;
    EXPECT_EQ(prev, x) << "round " << round;
  }
}

// TCP ACK -> subflow ACKs against the model, per subflow, and against Project with a tag filter.
TEST(AckProjection, RandomProjectToSubflows) {
  std::mt19937_64 rng(12345);
  AckProjector proj;
  AckProjector reference;
  for (int round = 0; round < 1500; ++round) {
    const uint64_t base = PickBase(rng);
    // data_to_subflow: src = data offset (the TCP ACK's space), dst = SSN offset, tag = subflow.
    const std::vector<Piece> pieces =
        rng() % 3 == 0 ? GenArbitrary(rng, base) : GenSendTable(rng, base);
    const MappingTable table = BuildTable(pieces);
    const std::vector<bool> delivered = GenDelivered(rng);
    const ReceiverAck ra = MakeReceiverAck(rng, delivered, base);
    const AckProjectionOptions opt = PickOptions(rng, ra.ack.cum, base);

    std::vector<SubflowAck> sf;
    for (uint32_t tag : {2u, 0u, 7u, 1u}) {  // 7: a subflow with no data in the table
      ProjectedAck hint = reference.Project(table, kFwd, tag, ra.ack, base, opt);
      sf.push_back({tag, PickPrev(rng, base, hint), {}});
    }
    proj.ProjectToSubflows(table, ra.ack, sf, opt);
    for (const SubflowAck& s : sf) {
      const std::string ctx = "round " + std::to_string(round) + " tag " + std::to_string(s.tag);
      const ProjectedAck want = reference.Project(table, kFwd, s.tag, ra.ack, s.prev, opt);
      EXPECT_EQ(s.out.ack.cum, want.ack.cum) << ctx;
      EXPECT_EQ(Sacks(s.out), Sacks(want)) << ctx;
      EXPECT_EQ(s.out.advanced, want.advanced) << ctx;
      EXPECT_EQ(s.out.ignored_blocks, ra.malformed) << ctx;
      const std::vector<Triple> rel = Relation(pieces, kFwd, s.tag);
      ExpectMatchesModel(Model(rel, base, delivered, ra.ack, s.prev, opt), s.out, base, s.prev,
                         ctx);
      if (s.out.advanced) {
        EXPECT_EQ(Tags(s.out), std::vector<uint32_t>{s.tag}) << ctx;
      }
      if (HasFatalFailure()) return;
    }
  }
}

}  // namespace
}  // namespace mproxy::mptcp
