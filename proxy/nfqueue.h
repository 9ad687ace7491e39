// NFQUEUE over libmnl: receive queued packets in batches, send all verdicts of a batch in one
// sendmsg, reference rewritten payloads in place with an iovec. Every rule here comes from the
// measurements in shared/reference/architecture.md ("NFQUEUE pitfalls"):
//   1. NFQA_CFG_F_GSO always; NFQA_SKB_CSUMNOTREADY is surfaced as PacketMeta::csum_not_ready.
//   3. A truncated copy (NFQA_CAP_LEN != payload length) only ever gets a plain verdict.
//   4. Tens of MB of receive buffer, a long queue, NETLINK_NO_ENOBUFS, ENOBUFS counted, and the
//      kernel's own drop counters (/proc/net/netfilter/nfnetlink_queue) exported.
//   5. Several packets per receive (recvmmsg), all verdicts of a batch in one sendmsg, rewritten
//      packets sent as header block + payload referenced in the receive buffer.
//
// The message builder (VerdictBatch), the packet message parser (ParsePacketMessage) and the /proc
// parser are pure functions of bytes so they are unit-tested without a kernel.
#pragma once

#include <sys/socket.h>
#include <sys/uio.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "packet/counters.h"
#include "packet/engine.h"
#include "packet/result.h"
#include "proxy/packet_io.h"

struct nlmsghdr;
struct mnl_socket;

namespace mproxy::proxy {

// NFQA_PAYLOAD is an nlattr whose 16-bit length includes its 4-byte header, so no verdict can
// carry more than 65,531 bytes (the same bound as the kernel's copy range, NFQNL_MAX_COPY_RANGE).
// Engines must keep rewritten packets within it; a larger one is dropped and counted, because
// neither passing it unmodified nor truncating it is correct for a rewritten flow (pitfall 8).
inline constexpr size_t kMaxVerdictPayload = 0xffff - 4;

enum class NfqCounter : size_t {
  kReceived,              // packet messages parsed into QueuedPackets
  kBatches,               // ReceiveBatch calls that returned at least one packet
  kDatagrams,             // netlink datagrams received
  kVerdictAccept,         // plain accept (original bytes untouched)
  kVerdictDrop,           // drop
  kVerdictModified,       // accept with NFQA_PAYLOAD (rewritten or patched in place)
  kTruncated,             // NFQA_CAP_LEN != payload length (pitfall 3)
  kTruncatedForcedPlain,  // a modified verdict asked for a truncated packet, sent as plain accept
  kNoPayload,             // packet message without NFQA_PAYLOAD
  kOversizeDropped,       // rewritten packet larger than kMaxVerdictPayload, dropped
  kInvalidRewrite,        // PacketOut with head_len/tail_offset out of range (engine bug), dropped
  kMalformed,             // packet message without a usable NFQA_PACKET_HDR (cannot be verdicted)
  kBadAttribute,          // attribute with an unexpected length, ignored
  kUnknownMessage,        // other netlink message types
  kVerdictRejected,       // NLMSG_ERROR from the kernel for one of our verdicts
  kMessageTruncated,      // datagram larger than a receive slot (MSG_TRUNC); should never happen
  kSetupAccepted,         // packets that arrived while the queue was being configured, accepted
  kEnobufs,               // recv() reported ENOBUFS: the kernel dropped messages for us
  kRecvErrors,            // other recv() errors
  kSendmsgCalls,          // verdict sendmsg() calls
  kSendErrors,            // failed verdict sendmsg() calls
  kSendErrorVerdicts,     // verdicts lost in failed sendmsg() calls
  kCount
};
inline constexpr std::array<std::string_view, static_cast<size_t>(NfqCounter::kCount)>
    kNfqCounterNames{
        "NfqReceived",      "NfqBatches",          "NfqDatagrams",       "NfqVerdictAccept",
        "NfqVerdictDrop",   "NfqVerdictModified",  "NfqTruncated",       "NfqTruncatedForcedPlain",
        "NfqNoPayload",     "NfqOversizeDropped",  "NfqInvalidRewrite",  "NfqMalformed",
        "NfqBadAttribute",  "NfqUnknownMessage",   "NfqVerdictRejected", "NfqMessageTruncated",
        "NfqSetupAccepted", "NfqEnobufs",          "NfqRecvErrors",      "NfqSendmsgCalls",
        "NfqSendErrors",    "NfqSendErrorVerdicts"};
using NfqCounters = CounterSet<NfqCounter, kNfqCounterNames>;

// ---------------------------------------------------------------------------------------------
// Pure parts.

enum class ParseStatus {
  kPacket,     // `out` holds a packet that needs a verdict
  kMalformed,  // no usable NFQA_PACKET_HDR: nothing can be verdicted
};

// Parses one NFQNL_MSG_PACKET message (the caller has checked nlmsg_type and that the message lies
// within the received bytes). Lenient by design: an attribute with a wrong length is ignored and
// counted in `bad_attributes` rather than failing the message, because a packet we cannot verdict
// stays stuck in the kernel queue. `out.payload` aliases the message memory.
ParseStatus ParsePacketMessage(const nlmsghdr* nlh, QueuedPacket& out, uint64_t& bad_attributes);

// Builds NFQNL_MSG_VERDICT messages for one batch as a list of iovecs, in sendmsg-sized units.
// Header blocks live in an internal buffer; payload pieces are referenced, never copied, and must
// stay valid until the batch is sent. Consecutive header blocks are merged into one iovec, so a
// batch of plain verdicts is a single contiguous buffer.
class VerdictBatch {
 public:
  // A unit (one sendmsg) holds at most `max_iov` iovecs (UIO_MAXIOV is 1024) and `max_bytes` bytes
  // (netlink_sendmsg() refuses a message larger than the socket's sndbuf, and the kernel allocates
  // the whole unit as one skb, so units stay moderate).
  explicit VerdictBatch(uint16_t queue_num, size_t max_iov = 1024, size_t max_bytes = 1 << 20);

  void Clear();
  // Appends a verdict (NF_ACCEPT / NF_DROP) for packet `id` without payload: the kernel keeps the
  // packet as it is.
  void AddPlain(uint32_t id, uint32_t nf_verdict);
  // Appends a verdict whose NFQA_PAYLOAD is `copied` followed by `referenced`. `copied` (a
  // rewritten header block, at most a few hundred bytes) is copied into the batch; `referenced`
  // (the payload in the receive buffer) is only pointed to and must stay valid until the batch is
  // sent (pitfall 5: saves two copies of every payload byte). Returns false, appending nothing,
  // when the total exceeds kMaxVerdictPayload.
  [[nodiscard]] bool AddWithPayload(uint32_t id, uint32_t nf_verdict, packet::Bytes copied,
                                    packet::Bytes referenced);

  [[nodiscard]] size_t messages() const { return messages_; }
  [[nodiscard]] bool empty() const { return messages_ == 0; }
  // Materialises the iovecs; call after the last Add and before units()/unit(). Adding after
  // Finish() requires Clear() first.
  void Finish();
  [[nodiscard]] size_t units() const { return unit_iov_begin_.size(); }
  [[nodiscard]] std::span<const iovec> unit(size_t i) const;
  // Verdict messages in unit i (for counting what a failed sendmsg lost).
  [[nodiscard]] size_t unit_messages(size_t i) const { return unit_messages_[i]; }

 private:
  struct Piece {
    const uint8_t* external = nullptr;  // nullptr: bytes at scratch_[offset]
    size_t offset = 0;
    size_t len = 0;
  };
  // Starts a new unit unless a message of `pieces` iovecs and `bytes` bytes fits the current one.
  void ReserveUnit(size_t pieces, size_t bytes);
  // Appends nlmsghdr + nfgenmsg + NFQA_VERDICT_HDR (+ the NFQA_PAYLOAD attribute header for a
  // payload of payload_len bytes) to scratch_; returns its offset.
  size_t PutHeader(uint32_t id, uint32_t nf_verdict, std::optional<size_t> payload_len);

  uint16_t queue_num_;
  size_t max_iov_;
  size_t max_bytes_;
  uint32_t seq_ = 0;
  size_t messages_ = 0;
  std::vector<uint8_t> scratch_;
  std::vector<Piece> pieces_;
  std::vector<size_t> unit_piece_begin_;  // index into pieces_ where each unit starts
  std::vector<size_t> unit_messages_;
  size_t unit_pieces_ = 0, unit_bytes_ = 0;
  std::vector<iovec> iov_;
  std::vector<size_t> unit_iov_begin_;
};

// One line of /proc/net/netfilter/nfnetlink_queue (per network namespace).
struct KernelQueueStats {
  uint32_t queue_num = 0;
  uint32_t peer_portid = 0;  // netlink port id of the bound socket (usually the daemon's pid)
  uint32_t queue_total = 0;  // packets waiting for a verdict now
  uint32_t copy_mode = 0;
  uint32_t copy_range = 0;
  uint32_t queue_dropped = 0;  // dropped because the queue was full (queue_maxlen)
  uint32_t user_dropped = 0;   // dropped because the netlink socket buffer was full (ENOBUFS)
  uint32_t id_sequence = 0;    // last packet id
};

// Parses the whole file; lines that do not parse are skipped.
std::vector<KernelQueueStats> ParseNfnetlinkQueueProc(std::string_view text);
// Reads the file and returns the line for `queue_num` (nullopt: queue not bound in this netns).
Result<std::optional<KernelQueueStats>> ReadKernelQueueStats(
    uint16_t queue_num, const std::string& path = "/proc/net/netfilter/nfnetlink_queue");
void VisitKernelQueueStats(const KernelQueueStats& s, const CounterVisitor& visit);

// ---------------------------------------------------------------------------------------------
// The kernel adapter.

struct NfqueueOptions {
  uint16_t queue_num = 0;
  uint32_t queue_maxlen = 16384;  // pitfall 4: 4k-64k
  bool gso = true;                // pitfall 1: always on outside of tests
  // NFQA_CFG_F_FAIL_OPEN: accept instead of drop when the queue is full. Does not protect a
  // rewriter's converted flows (pitfall 8); the daemon ties it to --fail-policy.
  bool fail_open = true;
  int rcvbuf_bytes = 32 << 20;  // pitfall 4: tens of MB (the kernel doubles it)
  int sndbuf_bytes = 4 << 20;   // must hold one sendmsg unit of verdicts with payloads
  size_t max_batch = 64;        // packets per ReceiveBatch (one recvmmsg)
};

class NfqueueSource final : public PacketQueue {
 public:
  // Opens the netlink socket and binds the queue. Errors name the cause (no privilege, queue bound
  // by another process, kernel without nfnetlink_queue).
  static Result<std::unique_ptr<NfqueueSource>> Open(const NfqueueOptions& options);
  ~NfqueueSource() override;
  NfqueueSource(const NfqueueSource&) = delete;
  NfqueueSource& operator=(const NfqueueSource&) = delete;

  [[nodiscard]] int fd() const override;
  Result<std::span<QueuedPacket>> ReceiveBatch() override;
  void SetVerdict(const QueuedPacket& pkt, const packet::PacketOut& out) override;
  Result<void> FlushVerdicts() override;
  void ForEachCounter(const CounterVisitor& visit) const override;

  [[nodiscard]] uint16_t queue_num() const { return options_.queue_num; }
  [[nodiscard]] int rcvbuf_granted() const { return rcvbuf_granted_; }
  [[nodiscard]] int sndbuf_granted() const { return sndbuf_granted_; }
  [[nodiscard]] const NfqCounters& counters() const { return counters_; }

 private:
  explicit NfqueueSource(const NfqueueOptions& options);
  Result<void> Setup();
  Result<void> SendConfig(std::span<uint8_t> msg, const char* what);
  void HandleDatagram(uint8_t* data, size_t len);
  void HandleError(const nlmsghdr* nlh);

  NfqueueOptions options_;
  mnl_socket* nl_ = nullptr;
  int rcvbuf_granted_ = 0;
  int sndbuf_granted_ = 0;
  uint32_t config_seq_ = 0;
  // Receive slots: each holds one datagram of up to kSlotBytes (one packet message, payload
  // capped at the copy range). recvmmsg fills several per syscall (pitfall 5).
  std::vector<uint8_t> slots_;
  std::vector<struct mmsghdr> mmsg_;
  std::vector<iovec> slot_iov_;
  std::vector<QueuedPacket> batch_;
  VerdictBatch verdicts_;
  uint64_t max_batch_seen_ = 0;
  NfqCounters counters_;
};

}  // namespace mproxy::proxy
