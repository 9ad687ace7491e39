// Fuzzes the MPTCP conversion engine (mptcp/engine.h) as a whole: a sequence of packets from both
// sides, timer expiries and control-plane requests (handover, subflow add/del), with a fixed Rng so
// a crash reproduces. This is where hostile wire input meets the connection and subflow state
// machines, the SEND/RECV tables and the option writer.
//
// Input: records until the input ends.
//   op 0x00-0x3f: a packet queued at LOCAL_OUT (0x20 set: CHECKSUM_PARTIAL, as GSO packets come),
//   op 0x40-0x7f: a packet queued at PRE_ROUTING (0x60 likewise),
//                 then a 16-bit big-endian length and that many packet bytes;
//   op 0x80-0xbf: time advances by (op & 0x3f) * 25 ms, then the engine's timers run;
//   op 0xc0-0xff: a control request on the first connection: (op & 3) 0 make-before-break
//                 wlan0 -> eth1, 1 break-before-make eth1 -> wlan0, 2 subflow add eth1, 3 del.
// Invariants (a violation traps): nothing crashes or reads out of bounds (ASan/UBSan); a verdict's
// head fits its buffer and its tail offset lies inside the packet; every rewritten packet and every
// forged packet parses as IP/TCP again with a correct TCP checksum (a rewritten one whenever its
// input had one, or came CHECKSUM_PARTIAL).
#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "mptcp/engine.h"
#include "packet/rng.h"
#include "packet/tcp_packet.h"

namespace {

using namespace mproxy;  // NOLINT(google-build-using-namespace): fuzz harness

void Check(bool ok) {
  if (!ok) __builtin_trap();
}

packet::IpAddress Ip(const char* s) { return *packet::IpAddress::Parse(s); }

void CheckForged(const packet::Actions& actions) {
  for (const packet::ForgedPacket& f : actions.forged) {
    std::vector<uint8_t> copy = f.bytes;
    Check(packet::ParseTcpPacket(copy).ok());
    Check(packet::TcpChecksumOk(f.bytes));
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  packet::SplitMix64 rng(20261201);
  mptcp::EngineConfig config;
  config.ports = {5201};
  mptcp::Engine engine(config, rng);
  engine.SetInterfaces({{"wlan0", 2, {Ip("198.18.1.2"), Ip("2001:db8:1::2")}},
                        {"eth1", 3, {Ip("198.18.2.2"), Ip("2001:db8:2::2")}}});
  packet::Time now{};
  packet::PacketOut out;
  packet::Actions actions;
  size_t i = 0;
  while (i < size) {
    const uint8_t op = data[i++];
    actions.Clear();
    if (op < 0x80) {
      if (size - i < 2) break;
      const size_t len = std::min<size_t>((size_t{data[i]} << 8) | data[i + 1], size - i - 2);
      i += 2;
      std::vector<uint8_t> pkt(data + i, data + i + len);
      i += len;
      packet::PacketMeta meta;
      meta.hook = op < 0x40 ? packet::Hook::kLocalOut : packet::Hook::kPreRouting;
      meta.csum_not_ready = (op & 0x20) != 0;
      // A rewrite updates a valid checksum incrementally (it stays valid) and writes a full one
      // for CHECKSUM_PARTIAL packets; a checksum that was wrong may stay wrong.
      const bool csum_was_ok = packet::TcpChecksumOk(pkt);
      engine.OnPacket(now, meta, pkt, out, actions);
      Check(out.head_len <= out.head.size());
      if (out.verdict == packet::Verdict::kAccept && out.rewritten) {
        Check(out.tail_offset <= pkt.size());
        std::vector<uint8_t> result(out.head.begin(), out.head.begin() + out.head_len);
        result.insert(result.end(), pkt.begin() + static_cast<std::ptrdiff_t>(out.tail_offset),
                      pkt.end());
        Check(packet::ParseTcpPacket(result, packet::PacketMeta{}).ok());
        if (meta.csum_not_ready || csum_was_ok) Check(packet::TcpChecksumOk(result));
      }
    } else if (op < 0xc0) {
      now += std::chrono::milliseconds(25 * (op & 0x3f));
      if (auto next = engine.NextTimeout(); next && *next <= now) engine.OnTimer(now, actions);
    } else if (op >= 0xf0) {
      // eth1's addresses go or come back: REMOVE_ADDR / ADD_ADDR of announcing connections.
      const bool up = (op & 1) != 0;
      std::vector<packet::IpAddress> eth1;
      if (up) eth1 = {Ip("198.18.2.2"), Ip("2001:db8:2::2")};
      engine.SetInterfaces(now, {{"wlan0", 2, {Ip("198.18.1.2"), Ip("2001:db8:1::2")}},
                                 {"eth1", 3, eth1}},
                           actions);
    } else {
      uint32_t token = 0;
      engine.ForEachConnection([&](const mptcp::Connection& c) {
        if (token == 0) token = c.local_token;
      });
      switch (op & 3) {
        case 0:
          (void)engine.StartHandover(now, {"wlan0", "eth1", mptcp::HandoverMode::kMakeBeforeBreak, {}},
                                     actions);
          break;
        case 1:
          (void)engine.StartHandover(now, {"eth1", "wlan0", mptcp::HandoverMode::kBreakBeforeMake, {}},
                                     actions);
          break;
        case 2: (void)engine.AddSubflow(now, token, "eth1", (op & 4) != 0, actions); break;
        case 3: (void)engine.RemoveSubflow(now, token, "eth1", actions); break;
      }
    }
    CheckForged(actions);
    // Listing state must always work (mproxyctl conn show runs between any two packets).
    engine.ForEachConnection([&](const mptcp::Connection& c) {
      engine.ForEachSubflow(c, [](const mptcp::SubflowInfo&) {});
    });
  }
  return 0;
}
