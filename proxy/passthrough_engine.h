// The passthrough engine: accepts every packet, but sends each TCP packet through the whole
// parse -> emit path of packet/tcp_packet.h (rewritten head + payload referenced in place), so
// the daemon's rewrite machinery (iovec verdicts, checksum policy, GSO lengths) runs end to end
// without any protocol logic. It is the baseline for measuring the queue's own cost and the
// canary for the rewrite path: an unmodified re-emit must reproduce the original header bytes.
//
// Policy: malformed, non-TCP, fragmented or unsupported packets are accepted unchanged and
// counted. A re-emit that fails or differs from the original is counted and the ORIGINAL packet
// is accepted instead (never send bytes we know to be wrong). No timers.
#pragma once

#include <array>
#include <cstddef>
#include <optional>
#include <string_view>

#include "packet/counters.h"
#include "packet/engine.h"

namespace mproxy::proxy {

enum class PassCounter : size_t {
  kSeen,
  kIpv4,
  kIpv6,
  kTcp,
  kNonTcp,    // well-formed, not TCP
  kFragment,  // IPv4/IPv6 fragments (TCP or not)
  kMalformedIp,
  kMalformedTcp,
  kMalformedOptions,
  kUnsupported,  // e.g. IPv6 routing header in flight with CHECKSUM_PARTIAL
  kGso,
  kCsumNotReady,
  kReemitted,       // TCP packets handed back as head + tail
  kReemitFailed,    // the emitter refused (original accepted)
  kReemitMismatch,  // re-emitted header differed from the original (original accepted)
  kSentBack,        // verified re-emit returned in the verdict (send_back)
  kCount,
};

inline constexpr std::array<std::string_view, static_cast<size_t>(PassCounter::kCount)>
    kPassCounterNames{
        "PassSeen",        "PassIpv4",         "PassIpv6",
        "PassTcp",         "PassNonTcp",       "PassFragment",
        "PassMalformedIp", "PassMalformedTcp", "PassMalformedOptions",
        "PassUnsupported", "PassGso",          "PassCsumNotReady",
        "PassReemitted",   "PassReemitFailed", "PassReemitMismatch",
        "PassSentBack",
    };

using PassCounters = CounterSet<PassCounter, kPassCounterNames>;

class PassthroughEngine final : public packet::Engine {
 public:
  struct Options {
    // false: parse and count only, accept every packet unchanged (no verdict payload at all).
    bool reemit = true;
    // true: a verified re-emit goes back in the verdict (iovec path, the kernel copies and
    // re-linearizes the packet and drops CHECKSUM_PARTIAL). false: a re-emit that reproduces the
    // original is verified and then the original is accepted, as any engine does for a packet it
    // did not change; that is the queue's cost with our parse/emit path on every packet.
    bool send_back = false;
  };

  PassthroughEngine() = default;
  explicit PassthroughEngine(Options options) : options_(options) {}

  void OnPacket(packet::Time now, const packet::PacketMeta& meta, packet::MutableBytes pkt,
                packet::PacketOut& out, packet::Actions& actions) override;
  [[nodiscard]] std::optional<packet::Time> NextTimeout() const override { return std::nullopt; }
  void OnTimer(packet::Time /*now*/, packet::Actions& /*actions*/) override {}
  void ForEachCounter(const CounterVisitor& visit) const override { counters_.ForEach(visit); }

  [[nodiscard]] const PassCounters& counters() const { return counters_; }

 private:
  Options options_;
  PassCounters counters_;
};

}  // namespace mproxy::proxy
