// The contract between the I/O shell (proxy/) and a sans-I/O engine (mptcp/, splice/,
// passthrough). An engine never performs a syscall: time comes in as a parameter, randomness
// through an injected Rng, and everything it wants done comes back as actions.
//
//   kernel --NFQUEUE--> proxy --OnPacket(now, meta, bytes, out, actions)--> engine
//   kernel <--verdict (out)--  proxy <-- forged packets (actions.forged) via the raw socket
//   proxy arms a timerfd at NextTimeout() and calls OnTimer(now, actions) when it fires.
#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <vector>

#include "packet/bytes.h"
#include "packet/counters.h"

namespace mproxy::packet {

// Monotonic time. Engines only compare and subtract instants; the epoch is irrelevant, so tests
// use Time{} + offsets and the daemon uses steady_clock.
using Time = std::chrono::steady_clock::time_point;
using Duration = std::chrono::steady_clock::duration;

class Clock {
 public:
  virtual ~Clock() = default;
  [[nodiscard]] virtual Time Now() const = 0;
};

class Rng {
 public:
  virtual ~Rng() = default;
  virtual uint64_t Next64() = 0;
  uint32_t Next32() { return static_cast<uint32_t>(Next64()); }
};

// Netfilter hook the packet was queued at (values of enum nf_inet_hooks).
enum class Hook : uint8_t { kPreRouting = 0, kLocalIn = 1, kForward = 2, kLocalOut = 3, kPostRouting = 4 };

struct PacketMeta {
  Hook hook = Hook::kLocalOut;
  uint32_t ifindex_in = 0;   // 0 when unknown
  uint32_t ifindex_out = 0;  // 0 when unknown
  uint32_t mark = 0;
  // NFQA_SKB_CSUMNOTREADY: the L4 checksum field holds only the pseudo-header sum (CHECKSUM_PARTIAL,
  // typically GSO). A rewritten packet then needs a *full* checksum, never an incremental one
  // (architecture.md, NFQUEUE pitfall 1).
  bool csum_not_ready = false;
  bool gso = false;  // NFQA_SKB_GSO: larger than the MTU, segmented by the kernel after the verdict
};

enum class Verdict : uint8_t { kAccept, kDrop };

// Largest rewritten header block an engine may produce: IPv6 with extension headers plus a full
// TCP header with 40 option bytes fits with room to spare.
inline constexpr size_t kMaxHeadBytes = 512;

// What to do with the queued packet.
//  - verdict kDrop: drop it.
//  - verdict kAccept, rewritten == false: pass the original bytes (possibly patched in place by
//    the engine, see `patched_in_place`).
//  - verdict kAccept, rewritten == true: the packet handed back is head[0, head_len) followed by
//    original[tail_offset, end). The proxy sends it as an iovec, so the payload is never copied.
struct PacketOut {
  Verdict verdict = Verdict::kAccept;
  bool rewritten = false;
  bool patched_in_place = false;  // engine modified the original bytes without changing the size
  size_t head_len = 0;
  size_t tail_offset = 0;
  std::array<uint8_t, kMaxHeadBytes> head{};

  void Reset() {
    verdict = Verdict::kAccept;
    rewritten = patched_in_place = false;
    head_len = tail_offset = 0;
  }
};

// A complete IP packet (IPv4 or IPv6, by its version nibble) to send from the raw socket. The
// proxy marks it so our own queue rules skip it.
struct ForgedPacket {
  std::vector<uint8_t> bytes;
  uint32_t ifindex = 0;  // 0: let routing decide; else leave through this interface
};

struct Actions {
  std::vector<ForgedPacket> forged;
  void Clear() { forged.clear(); }
};

class Engine {
 public:
  virtual ~Engine() = default;
  // `pkt` is the whole IP packet as queued; the engine may patch it in place.
  virtual void OnPacket(Time now, const PacketMeta& meta, MutableBytes pkt, PacketOut& out,
                        Actions& actions) = 0;
  [[nodiscard]] virtual std::optional<Time> NextTimeout() const = 0;
  virtual void OnTimer(Time now, Actions& actions) = 0;
  virtual void ForEachCounter(const CounterVisitor& visit) const = 0;
};

}  // namespace mproxy::packet
