// The small interfaces between the daemon's event loop and the kernel-facing adapters, so the loop
// can be driven by fakes in unit tests (architecture.md: "thin adapters behind small interfaces").
//
//   PacketQueue   — NfqueueSource (proxy/nfqueue.h): queued packets in, verdicts out.
//   PacketSender  — RawSender (proxy/raw_socket.h): forged packets out.
//   RuleInstaller — IptablesRuleInstaller (proxy/iptables_rule_installer.h): the netfilter rules.
#pragma once

#include <cstdint>
#include <span>

#include "packet/bytes.h"
#include "packet/counters.h"
#include "packet/engine.h"
#include "packet/result.h"

namespace mproxy::proxy {

// One packet taken from the queue. `payload` points into the queue's receive buffer and stays
// valid (and writable: the engine may patch it in place) until the next ReceiveBatch().
struct QueuedPacket {
  uint32_t id = 0;           // NFQUEUE packet id, echoed in the verdict
  uint16_t hw_protocol = 0;  // host order: ETH_P_IP / ETH_P_IPV6
  packet::PacketMeta meta;   // meta.hook is the netfilter hook it was queued at
  packet::MutableBytes payload;
  // The kernel copied only part of the packet (NFQA_CAP_LEN != payload length, architecture.md
  // NFQUEUE pitfall 3). Such a packet must only ever get a plain accept/drop: a verdict carrying
  // bytes would replace the whole packet with its truncated copy.
  bool truncated = false;
  uint32_t cap_len = 0;      // original length when truncated, else payload.size()
  bool has_payload = false;  // NFQA_PAYLOAD was present
};

class PacketQueue {
 public:
  virtual ~PacketQueue() = default;
  // Readable when packets are waiting (for epoll).
  [[nodiscard]] virtual int fd() const = 0;
  // Takes whatever is ready now, without blocking (possibly nothing). Kernel-side drops (ENOBUFS)
  // are counted, not errors; an Error means the receive itself failed (also counted).
  virtual Result<std::span<QueuedPacket>> ReceiveBatch() = 0;
  // Queues the verdict for `pkt` (from the current batch); sent by FlushVerdicts().
  virtual void SetVerdict(const QueuedPacket& pkt, const packet::PacketOut& out) = 0;
  // Sends every queued verdict (pitfall 5: all verdicts of a batch in one sendmsg).
  virtual Result<void> FlushVerdicts() = 0;
  virtual void ForEachCounter(const CounterVisitor& visit) const = 0;
};

class PacketSender {
 public:
  virtual ~PacketSender() = default;
  virtual Result<void> Send(const packet::ForgedPacket& pkt) = 0;
  virtual void ForEachCounter(const CounterVisitor& visit) const = 0;
};

// The netfilter rules that steer packets into our queue. Start order in the daemon: RemoveStale()
// (a crashed run may have left rules behind), Install(); at stop: Remove().
class RuleInstaller {
 public:
  virtual ~RuleInstaller() = default;
  virtual Result<void> Install() = 0;
  virtual Result<void> Remove() = 0;
  // Removes rules left by an earlier run; returns how many rule sets/chains were removed.
  virtual Result<int> RemoveStale() = 0;
};

}  // namespace mproxy::proxy
