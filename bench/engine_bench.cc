// Per-packet cost of the engines (Google Benchmark), to set against the NFQUEUE round trip
// (architecture.md: a bare queue adds ~15-30 us per traversal on veth). The baseline in the same
// run is the passthrough work every engine does anyway: parse the packet and re-emit its headers.
//
//   build/bench/engine_bench                       # all
//   build/bench/engine_bench --benchmark_filter=Mptcp
#include <benchmark/benchmark.h>

#include <vector>

#include "mptcp/crypto.h"
#include "mptcp/engine.h"
#include "mptcp/options.h"
#include "packet/rng.h"
#include "packet/tcp_packet.h"

namespace {

using namespace mproxy;          // NOLINT(google-build-using-namespace)
using namespace mproxy::packet;  // NOLINT(google-build-using-namespace)

constexpr uint32_t kIsnA = 1000, kIsnB = 9000;
constexpr uint64_t kKeyB = 0x0102030405060708ULL;

FourTuple Local() {
  return FourTuple{*IpAddress::Parse("198.18.1.2"), *IpAddress::Parse("198.18.3.2"), 40000, 5201};
}

std::vector<uint8_t> Build(const FourTuple& t, uint32_t seq, uint32_t ack, uint8_t flags,
                           size_t payload, const std::vector<mptcp::Option>& mp = {}) {
  TcpHeader h;
  h.sport = t.sport;
  h.dport = t.dport;
  h.seq = seq;
  h.ack = ack;
  h.flags = flags;
  h.window = 1000;
  TcpOptionList o;
  (void)o.AddNop();
  (void)o.AddNop();
  (void)o.AddTimestamps({1, 2});
  if (flags & tcp_flags::kSyn) (void)o.AddMss(1460);
  for (const auto& m : mp) {
    std::array<uint8_t, 40> buf{};
    ByteWriter w(buf);
    (void)mptcp::Emit(m, w);
    (void)o.AddRaw(mptcp::kMptcpOptionKind, Bytes(buf).subspan(2, w.offset() - 2));
  }
  std::vector<uint8_t> data(payload, 0x5a);
  return BuildTcpPacket(t, h, o, data).value();
}

// An engine with one established connection whose peer has already sent a DSS.
struct Established {
  SplitMix64 rng{1};
  mptcp::Engine engine{mptcp::EngineConfig{.ports = {5201}}, rng};
  PacketOut out;
  Actions actions;
  uint64_t idsn_a = 0, idsn_b = 0;

  void Run(Hook hook, MutableBytes pkt) {
    PacketMeta meta;
    meta.hook = hook;
    engine.OnPacket(Time{}, meta, pkt, out, actions);
    actions.Clear();
  }
  void Run(Hook hook, std::vector<uint8_t> pkt) { Run(hook, MutableBytes(pkt)); }
  Established() {
    Run(Hook::kLocalOut, Build(Local(), kIsnA, 0, tcp_flags::kSyn, 0));
    mptcp::MpCapable sa;
    sa.form = mptcp::MpCapable::Form::kSynAck;
    sa.sender_key = kKeyB;
    Run(Hook::kPreRouting,
        Build(Local().Reversed(), kIsnB, kIsnA + 1, tcp_flags::kSyn | tcp_flags::kAck, 0, {sa}));
    engine.ForEachConnection([&](const mptcp::Connection& c) { idsn_a = c.local_idsn; });
    idsn_b = mptcp::DeriveFromKey(kKeyB)->idsn;
    mptcp::Dss d;
    d.data_ack = mptcp::DssDataAck{idsn_a + 1, true};
    Run(Hook::kPreRouting, Build(Local().Reversed(), kIsnB + 1, kIsnA + 1, tcp_flags::kAck, 0, {d}));
  }
};

// Baseline: parse + re-emit unchanged (the passthrough engine's work).
void BM_ParseEmit(benchmark::State& state) {
  auto pkt = Build(Local(), kIsnA + 1, kIsnB + 1, tcp_flags::kAck, static_cast<size_t>(state.range(0)));
  PacketOut out;
  for (auto _ : state) {
    auto p = ParseTcpPacket(MutableBytes(pkt));
    benchmark::DoNotOptimize(EmitTcpPacket(*p, out).ok());
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_ParseEmit)->Arg(1448)->Arg(64000);

// The engine rewrites through PacketOut's head (it never patches the queued bytes), so a ring of
// prebuilt packets can be replayed without copying. After one lap the segments repeat, which the
// engine treats as retransmissions: the same lookups, the same mapping.
constexpr size_t kRing = 256;

// Outbound data segment: DATA_ACK + mapping added (the common case in bulk upload).
void BM_MptcpOutboundData(benchmark::State& state) {
  Established e;
  const size_t len = static_cast<size_t>(state.range(0));
  std::vector<std::vector<uint8_t>> ring;
  for (size_t i = 0; i < kRing; ++i) {
    ring.push_back(Build(Local(), kIsnA + 1 + static_cast<uint32_t>(i * len), kIsnB + 1,
                         tcp_flags::kAck, len));
  }
  size_t i = 0;
  for (auto _ : state) e.Run(Hook::kLocalOut, MutableBytes(ring[i++ % kRing]));
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_MptcpOutboundData)->Arg(1448)->Arg(64000);

// Inbound data segment: DSS parsed, RECV table updated, options stripped, seq/ack mapped.
void BM_MptcpInboundData(benchmark::State& state) {
  Established e;
  const size_t len = static_cast<size_t>(state.range(0));
  std::vector<std::vector<uint8_t>> ring;
  for (size_t i = 0; i < kRing; ++i) {
    const uint64_t off = i * len;
    mptcp::Dss d;
    d.data_ack = mptcp::DssDataAck{e.idsn_a + 1, true};
    d.mapping = mptcp::DssMapping{e.idsn_b + 1 + off, true, static_cast<uint32_t>(off + 1),
                                  static_cast<uint16_t>(len), std::nullopt};
    ring.push_back(Build(Local().Reversed(), kIsnB + 1 + static_cast<uint32_t>(off), kIsnA + 1,
                         tcp_flags::kAck, len, {d}));
  }
  size_t i = 0;
  for (auto _ : state) e.Run(Hook::kPreRouting, MutableBytes(ring[i++ % kRing]));
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_MptcpInboundData)->Arg(1448)->Arg(64000);

// Outbound pure ACK (bulk download): DATA_ACK and the subflow ACK projection.
void BM_MptcpOutboundAck(benchmark::State& state) {
  Established e;
  auto pkt = Build(Local(), kIsnA + 1, kIsnB + 1, tcp_flags::kAck, 0);
  for (auto _ : state) e.Run(Hook::kLocalOut, MutableBytes(pkt));
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_MptcpOutboundAck);

}  // namespace

BENCHMARK_MAIN();
