// The TCP <-> MPTCP v1 conversion engine (seed §2.3, §3.1, §3.3; mptcp/DESIGN.md). Sans-I/O:
// packets in, verdicts/rewrites and forged packets out, time passed in, keys from the injected Rng.
//
// One engine serves a host: packets the local stack sends (LOCAL_OUT) are converted to MPTCP on
// the wire, packets from the network (PRE_ROUTING) are converted back to plain TCP. Connections the
// local stack opens (active) and accepts (passive) are both handled.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "mptcp/ack_projection.h"
#include "mptcp/connection.h"
#include "mptcp/counters.h"
#include "mptcp/options.h"
#include "packet/address.h"
#include "packet/engine.h"
#include "packet/result.h"
#include "packet/tcp_packet.h"

namespace mproxy::mptcp {

// Which connections announce our other addresses (ADD_ADDR, RFC 8684 §3.4.1; mptcp/DESIGN.md
// "Announcing our addresses").
enum class AnnounceMode : uint8_t {
  // Only where the peer opened the connection (we are the MP_CAPABLE passive side: a plain server
  // behind mproxyd, a native client). As the initiator we are the joiner; announcing would make a
  // native server with add_addr_accepted open duplicate subflows.
  kAuto,
  kAlways,
  kNever,
};
[[nodiscard]] std::string_view Name(AnnounceMode m);
[[nodiscard]] std::optional<AnnounceMode> ParseAnnounceMode(std::string_view s);

struct EngineConfig {
  // Convert connections with either port in this set; empty: every TCP connection queued to us.
  std::vector<uint16_t> ports;
  // Ask for DSS checksums (MP_CAPABLE flag A, RFC 8684 §3.3.1). Either side asking enables them.
  bool checksums = false;
  // Bytes our options add to a data segment; the MSS the local stack learns from the peer is
  // reduced by this much so segments still fit the path MTU after segmentation (architecture.md
  // pitfall 2). DSS with 64-bit DATA_ACK + 64-bit mapping + checksum = 28 bytes.
  uint16_t mss_reduction = 28;
  std::chrono::milliseconds handshake_timeout{75'000};
  // Like conntrack's established timeout (5 days): an idle connection is still a connection, and
  // forgetting it would let its next packets leave untranslated.
  std::chrono::milliseconds idle_timeout{5LL * 24 * 3600 * 1000};
  // MP_CAPABLE SYN retransmissions before the SYN goes out plain (Linux
  // net.mptcp.syn_retrans_before_tcp_fallback, interop §2.1).
  int mpc_syn_retries = 2;
  std::chrono::milliseconds close_linger{10'000};
  std::chrono::milliseconds fin_rto{200};
  int fin_retries = 8;
  // Join handshakes (RFC 8684 §3.2): the MP_JOIN SYN and the third ACK are retransmitted after
  // join_rto, doubling, join_retries times in all; then the join fails (like a TCP SYN).
  std::chrono::milliseconds join_rto{1'000};
  int join_retries = 5;
  // Subflows per connection, the initial one included (Linux caps extra subflows at 8): a peer
  // cannot make us hold unbounded join state.
  size_t max_subflows = 8;
  // Source ports of active joins. The engine's joins are invisible to the local stack's port
  // allocator, so they are drawn outside Linux's default ip_local_port_range (32768-60999): a
  // local connection would otherwise get a join's 4-tuple (mptcp/DESIGN.md "Subflows"). If the
  // host's range is changed to overlap this one, a local SYN on a join's tuple is dropped.
  uint16_t join_port_min = 61000;
  uint16_t join_port_max = 65535;
  // Our other addresses are announced (ADD_ADDR) on these connections once fully established.
  // An un-echoed ADD_ADDR is retransmitted after max(add_addr_rto, 2 x the handshake RTT),
  // doubling, add_addr_retries times (Linux: ADD_ADDR_RETRANS_MAX 3, interop §1.5), then given up.
  AnnounceMode announce = AnnounceMode::kAuto;
  std::chrono::milliseconds add_addr_rto{1'000};
  int add_addr_retries = 3;
};

// A local interface the engine may open subflows from. The daemon learns these from the kernel
// (names given on its command line) and refreshes them when addresses change.
struct LocalInterface {
  std::string name;  // "wlan0"
  uint32_t ifindex = 0;
  std::vector<packet::IpAddress> addresses;  // both families; the first of a family is used
};

enum class HandoverMode : uint8_t {
  // Seed §5.3: ensure a subflow on `to`, MP_PRIO backup on `from`'s subflows and regular on `to`'s,
  // move sending to `to`. `from` keeps working for retransmissions of what it carried.
  kMakeBeforeBreak,
  // Seed §5.4: `from` is treated as gone: REMOVE_ADDR for its address, a subflow on `to`, and
  // everything outstanding on `from` is retransmitted on `to`.
  kBreakBeforeMake,
};

struct HandoverRequest {
  std::string from;  // interface name
  std::string to;    // interface name
  HandoverMode mode = HandoverMode::kMakeBeforeBreak;
  std::optional<uint32_t> token;  // one connection (our local token); none: every established one
};

enum class HandoverState : uint8_t { kInProgress, kDone, kFailed };
[[nodiscard]] std::string_view Name(HandoverState s);

struct HandoverStatus {
  HandoverState state = HandoverState::kInProgress;
  size_t connections = 0;  // connections the request applies to
  size_t moved = 0;        // connections whose sending moved to `to`
  size_t failed = 0;       // connections where it could not (join refused, timed out, ...)
  packet::Time started{};
  std::optional<packet::Time> finished;
  std::string error;  // why, when failed
};

class Engine final : public packet::Engine {
 public:
  Engine(EngineConfig config, packet::Rng& rng);
  ~Engine() override;

  void OnPacket(packet::Time now, const packet::PacketMeta& meta, packet::MutableBytes pkt,
                packet::PacketOut& out, packet::Actions& actions) override;
  [[nodiscard]] std::optional<packet::Time> NextTimeout() const override;
  void OnTimer(packet::Time now, packet::Actions& actions) override;
  void ForEachCounter(const CounterVisitor& visit) const override { counters_.ForEach(visit); }

  [[nodiscard]] uint64_t counter(Counter c) const { return counters_.Get(c); }
  [[nodiscard]] size_t connection_count() const { return conns_.size(); }
  // Entries a RECV table (per subflow) keeps at most (MappingForSegment, CapRecvTable).
  static constexpr size_t kMaxRecvMappings = 1024;
  void ForEachConnection(const std::function<void(const Connection&)>& visit) const;
  // Every subflow of `c`, the initial one first.
  void ForEachSubflow(const Connection& c,
                      const std::function<void(const SubflowInfo&)>& visit) const;

  // Control plane (mproxyctl; proxy/mptcp_commands.cc). Sans-I/O like the data path: packets to
  // send come back in `actions`, progress is read back with HandoverStatusOf() after later packets
  // and timers. Errors are for requests that cannot start (unknown interface, no address of the
  // connection's family, no such connection).
  //
  // Forged packets (actions.forged[i].ifindex): a join subflow's leave by the interface it was
  // opened from (passive joins: the interface holding its local address, 0 if none); the initial
  // subflow's by 0 while it is the only one in use, then by the interface holding its address.
  // Rewritten verdict packets moved onto a join carry its source address: the kernel re-routes
  // them, so the host needs source-address routing (one table per interface).
  //
  // StartHandover: make-before-break is done when the new subflow gets its fourth ACK (the MP_PRIO
  // packets and the switch happen in that same OnPacket call), at once when an established
  // subflow on `to` exists already, or when the request covers no connection (connections = 0).
  // Break-before-make likewise, with REMOVE_ADDR instead of MP_PRIO. A join that times out
  // (join_rto doubling, join_retries tries: ~31 s by default), is refused or fails an HMAC check
  // counts as failed; the request ends kFailed if no connection moved, else kDone.
  //
  // SetInterfaces: the interfaces' current addresses. With `now` and `actions` (the daemon, on
  // every change) the announcements of live connections follow: ADD_ADDR for an address that
  // appeared, REMOVE_ADDR for an announced one that went. Without them (configuration before
  // traffic) nothing is signalled.
  void SetInterfaces(std::vector<LocalInterface> interfaces);
  void SetInterfaces(packet::Time now, std::vector<LocalInterface> interfaces,
                     packet::Actions& actions);
  [[nodiscard]] Result<uint64_t> StartHandover(packet::Time now, const HandoverRequest& request,
                                               packet::Actions& actions);
  [[nodiscard]] std::optional<HandoverStatus> HandoverStatusOf(uint64_t id) const;
  // Opens (or closes) a subflow of connection `token` from interface `ifname`.
  [[nodiscard]] Result<void> AddSubflow(packet::Time now, uint32_t token, std::string_view ifname,
                                        bool backup, packet::Actions& actions);
  [[nodiscard]] Result<void> RemoveSubflow(packet::Time now, uint32_t token,
                                           std::string_view ifname, packet::Actions& actions);

 private:
  using ConnMap = std::unordered_map<packet::FourTuple, std::unique_ptr<Connection>>;

  [[nodiscard]] bool Selected(const packet::FourTuple& t) const;
  void OnOutbound(packet::Time now, packet::TcpPacket& p, packet::PacketOut& out,
                  packet::Actions& actions);
  void OnInbound(packet::Time now, packet::TcpPacket& p, packet::PacketOut& out,
                 packet::Actions& actions);
  // An inbound ICMP frag-needed / packet-too-big about one of our segments, translated to the
  // local stack's view (mptcp/icmp.cc). False: not ICMP (the caller's malformed case).
  bool OnIcmp(packet::MutableBytes pkt, packet::PacketOut& out);
  // An outbound packet of connection `local` (the stack's tuple) after a translated PTB: see
  // mptcp/icmp.cc.
  void PmtuOutbound(const packet::FourTuple& local, packet::MutableBytes pkt,
                    packet::PacketOut& out);

  // Outbound, per state.
  void OutboundSyn(packet::Time now, packet::TcpPacket& p, packet::PacketOut& out);
  void OutboundSynAck(Connection& c, packet::TcpPacket& p, packet::PacketOut& out);
  void OutboundEstablished(Connection& c, packet::TcpPacket& p, packet::PacketOut& out);
  void OutboundRst(packet::Time now, Connection& c, packet::TcpPacket& p, packet::PacketOut& out,
                   packet::Actions& actions);

  // Inbound, per state.
  void InboundSyn(packet::Time now, packet::TcpPacket& p, const SegmentOptions& opts,
                  packet::PacketOut& out, packet::Actions& actions);
  void InboundSynAck(packet::Time now, Connection& c, packet::TcpPacket& p,
                     const SegmentOptions& opts, packet::PacketOut& out);
  void InboundEstablished(packet::Time now, Connection& c, packet::TcpPacket& p,
                          const SegmentOptions& opts, packet::PacketOut& out,
                          packet::Actions& actions);
  // The peer's DSS mapping into a RECV table (seed §3.3; the connection's on one path, the
  // subflow's with several), its DATA_FIN noted and the DSS checksum checked (RFC 8684 §3.3.1).
  // False: the segment must be dropped (counted: a conflicting mapping or a bad checksum).
  // The TSN offset a data segment at SSN offset `seg_off` maps to through `recv` (seed §3.3);
  // nullopt (counted) when no mapping covers its first byte or it spans two mappings.
  std::optional<uint64_t> MapToTsn(const MappingTable& recv, std::optional<uint64_t> seg_off,
                                   uint32_t len, uint64_t rx_san);
  bool TakePeerMapping(Connection& c, const Dss& dss, const packet::TcpPacket& p,
                       std::optional<uint64_t> seg_off, uint64_t rx_ssn_high, MappingTable& recv,
                       bool& rx_shifted);
  static bool LoneDss(const packet::TcpPacket& p, const SegmentOptions& opts);
  // RECV tables (seed §3.3) hold the peer's mappings until acknowledged; untrusted input must not
  // grow them without bound. A mapping is recorded only for payload of its own segment that it
  // covers (counted otherwise), and a table keeps at most kMaxRecvMappings entries.
  [[nodiscard]] bool MappingForSegment(uint32_t len, std::optional<uint64_t> seg_off,
                                       uint64_t ssn_off, uint32_t data_bytes);
  void CapRecvTable(MappingTable& t);
  // RFC 5961 §3.2: a RST resets only at exactly the receiver's next sequence number (`rcv_nxt`,
  // what we acknowledge; `rcv_high`, the highest received, like Linux's right-most SACK block);
  // elsewhere in the window it gets a challenge ACK; outside it is dropped.
  enum class RstCheck : uint8_t { kAccept, kChallenge, kDrop };
  [[nodiscard]] static RstCheck CheckRst(uint32_t seq, uint32_t rcv_nxt, uint32_t rcv_high,
                                         uint32_t window);
  // CheckRst for a RST on subflow `sf` (multipath or join), counted, challenge ACK forged; an
  // MP_FASTCLOSE with our key is authenticated by it and always accepted.
  bool SubflowRstAccepted(Connection& c, Subflow& sf, const packet::TcpPacket& p,
                          const SegmentOptions& opts, packet::Actions& actions);

  // Helpers.
  // The connection a non-SYN packet belongs to, if it is one we convert (counted otherwise:
  // unknown flow, or a flow that fell back and is passed untouched).
  Connection* Track(packet::Time now, const packet::FourTuple& key);
  [[nodiscard]] bool NewKey(Connection& c);
  [[nodiscard]] uint8_t MpcFlags(const Connection& c) const;
  [[nodiscard]] static bool RxIdentity(const Connection& c);
  // The mapping a tx segment [begin, begin+len(+FIN)) must carry: the one it was first sent under
  // if it lies inside it, else a new one (recorded).
  // `maps` are the mappings of the subflow the segment goes on, `ssn_off` where it goes there.
  const TxMapping& TxMappingFor(Connection& c, std::deque<TxMapping>& maps, uint64_t begin,
                                uint32_t len, bool fin, packet::Bytes payload, uint64_t ssn_off,
                                bool initial);
  Option MappingOption(const Connection& c, const TxMapping& m, std::optional<DssDataAck> data_ack);
  void MaybeClose(packet::Time now, Connection& c);
  void FallBack(Connection& c, Counter why);
  void Close(packet::Time now, Connection& c);
  void ClampMss(packet::TcpPacket& p);
  // Emits the rewritten packet; on failure counts and drops it (never passes a converted flow's
  // segment untranslated). Returns whether it was emitted.
  bool Emit(packet::TcpPacket& p, packet::PacketOut& out);
  void SendSubflowFin(packet::Time now, Connection& c, packet::Actions& actions);
  void SendSubflowAck(Connection& c, packet::Actions& actions);
  // The peer's ADD_ADDR (RFC 8684 §3.4.1, interop §1.5): a valid one is echoed on the subflow it
  // came on (`sf`; null: the initial subflow on the single-path fast path), an invalid HMAC is
  // counted and ignored, like Linux.
  void OnAddAddr(Connection& c, Subflow* sf, const AddAddr& a, packet::Actions& actions);
  // A segment on the initial subflow (single path) with a DSS DATA_ACK (64-bit, 32-bit when
  // `extra` needs the room) or, with `data_ack` false, without one.
  [[nodiscard]] std::optional<std::vector<uint8_t>> Forge(const Connection& c, uint32_t seq,
                                                          uint8_t flags,
                                                          const Option* extra = nullptr,
                                                          bool data_ack = true);
  void Schedule(Connection& c, packet::Time when);
  void Erase(Connection& c);

  // Subflows and handover (mptcp/subflow.cc, mptcp/control.cc).
  struct WireRef {
    Connection* conn = nullptr;
    Subflow* sf = nullptr;
  };
  struct HandoverJob {
    HandoverRequest request;
    HandoverStatus status;
    size_t pending = 0;
  };
  static void RecordLocalSyn(Connection& c, const packet::TcpPacket& p);
  static void RecordPeerSyn(Connection& c, const packet::TcpPacket& p);
  void MigrateToMulti(Connection& c);
  Subflow* SubflowById(Connection& c, uint32_t id);
  void SelectActive(Connection& c);
  uint8_t AddressId(const Connection& c, const packet::IpAddress& a);
  const LocalInterface* InterfaceByName(std::string_view name) const;
  const LocalInterface* InterfaceOf(const packet::IpAddress& a) const;
  // Whether `a` is or was an address of interface `name`: a link that went down loses its
  // addresses from the list the daemon passes in, but a break-before-make away from it must
  // still find the subflows that used them.
  [[nodiscard]] bool WasOn(std::string_view name, const packet::IpAddress& a) const;
  Connection* ConnectionByToken(uint32_t token);
  Result<Subflow*> OpenJoin(packet::Time now, Connection& c, const LocalInterface& iface,
                            bool backup, packet::Actions& actions);
  void SendJoinSyn(packet::Time now, Connection& c, Subflow& sf, packet::Actions& actions);
  void SendJoinThirdAck(packet::Time now, Connection& c, Subflow& sf, packet::Actions& actions);
  void SendJoinSynAck(packet::Time now, Connection& c, Subflow& sf, packet::Actions& actions);
  void InboundJoinSyn(packet::Time now, packet::TcpPacket& p, const SegmentOptions& opts,
                      packet::PacketOut& out, packet::Actions& actions);
  void InboundJoin(packet::Time now, Connection& c, Subflow& sf, packet::TcpPacket& p,
                   const SegmentOptions& opts, packet::PacketOut& out, packet::Actions& actions);
  void InboundMulti(packet::Time now, Connection& c, Subflow& sf, packet::TcpPacket& p,
                    const SegmentOptions& opts, packet::PacketOut& out, packet::Actions& actions);
  void OutboundMulti(packet::Time now, Connection& c, packet::TcpPacket& p, packet::PacketOut& out,
                     packet::Actions& actions);
  void JoinEstablished(packet::Time now, Connection& c, Subflow& sf, packet::Actions& actions);
  // Where a retransmission of `len` bytes at `ssn` on `orig` goes: `orig`, or null after `orig`
  // was retired because its head stopped being acknowledged (mptcp/DESIGN.md, "Subflows").
  Subflow* RetransmitTarget(packet::Time now, Connection& c, Subflow* orig, uint64_t ssn,
                            uint64_t len, packet::Actions& actions);
  // A retransmission straddling SEND table entries: forged piecewise on the subflows that own
  // its bytes (true). False when it lies in one entry (`to` null: the ordinary routing decides)
  // or all of it still goes to one subflow at contiguous SSNs (`to`, `ssn`: sent as it is).
  bool SendStraddle(packet::Time now, Connection& c, const packet::TcpPacket& p, uint64_t off,
                    std::optional<DssDataAck> data_ack, packet::PacketOut& out,
                    packet::Actions& actions, Subflow*& to, uint64_t& ssn);
  void SwitchTo(packet::Time now, Connection& c, Subflow& to, const HandoverJob* job,
                packet::Actions& actions);
  void FinishHandover(packet::Time now, Subflow& sf, bool ok, std::string_view error);
  // Forges a segment on subflow `sf` (wire tuple, its sequence spaces) with a DSS DATA_ACK and
  // the extra options given.
  bool ForgeOn(Connection& c, Subflow& sf, uint8_t flags, uint32_t seq,
               std::initializer_list<Option> extra, packet::Actions& actions,
               bool with_data_ack = true);
  void ForgeRstOn(Connection& c, Subflow& sf, uint8_t reason, packet::Actions& actions);
  void ForgeHandshakeRst(const packet::TcpPacket& p, packet::Actions& actions);
  void SendFinOn(packet::Time now, Connection& c, Subflow& sf, packet::Actions& actions);
  void CloseSubflow(packet::Time now, Connection& c, Subflow& sf);
  void FreeSubflow(Connection& c, Subflow& sf);
  void FreeSubflows(Connection& c);
  void PruneClosedJoins(Connection& c);
  void ResetJoins(Connection& c, packet::Actions& actions);
  void JoinTimers(packet::Time now, Connection& c, packet::Actions& actions);
  void MultiTimer(packet::Time now, Connection& c, packet::Actions& actions);
  [[nodiscard]] std::optional<packet::Time> SubflowDue(const Connection& c) const;
  void ArmSubflow(Connection& c, Subflow& sf, packet::Time when);
  void MaybeCloseMulti(packet::Time now, Connection& c);
  // The peer's SACK blocks on `sf` (SSN space) replaced by TSN blocks for the local stack; true
  // when there were any to report.
  bool ProjectPeerSack(const Connection& c, const Subflow& sf, packet::TcpPacket& p);
  bool FitOption(packet::TcpPacket& p, Option& opt);

  // Announcing our addresses (mptcp/announce.cc; RFC 8684 §3.4.1, §3.4.2).
  [[nodiscard]] bool WantsAnnounce(const Connection& c) const;
  // Brings the connection's announcements in line with the interfaces: ADD_ADDR for addresses
  // not announced yet, REMOVE_ADDR for announced ones that are gone.
  void Announce(packet::Time now, Connection& c, packet::Actions& actions);
  bool SendAddAddr(Connection& c, const Announcement& a, packet::Actions& actions);
  void AnnounceTimers(packet::Time now, Connection& c, packet::Actions& actions);
  void OnAddAddrEcho(Connection& c, const AddAddr& a);
  // The subflow signalling goes on: the active one, else any usable one (null on the single-path
  // fast path, or when none is usable).
  Subflow* SignalSubflow(Connection& c);
  // REMOVE_ADDR for `rm`'s IDs not removed before (Connection::removed_ids), on `sf` (null: the
  // initial subflow on the single-path fast path). False when nothing was sent.
  bool SendRemoveAddr(Connection& c, Subflow* sf, RemoveAddr rm, packet::Actions& actions);
  [[nodiscard]] SubflowInfo InfoOf(const Connection& c, const Subflow& sf) const;

  EngineConfig config_;
  packet::Rng& rng_;
  CounterSet<Counter, kCounterNames> counters_;
  AckProjector projector_;  // scratch for ProjectPeerSack (no allocation per ACK)
  ConnMap conns_;  // keyed by the local -> remote 4-tuple
  std::unordered_set<uint32_t> local_tokens_;
  std::set<std::pair<packet::Time, Connection*>> timers_;
  std::vector<LocalInterface> interfaces_;
  std::map<std::string, std::vector<packet::IpAddress>, std::less<>> known_addresses_;
  std::unordered_map<packet::FourTuple, WireRef> wire_;  // join subflows, local -> remote
  std::map<packet::IpAddress, uint8_t> address_ids_;     // our address IDs (>= 1, stable)
  std::map<uint64_t, HandoverJob> handovers_;
  uint64_t next_handover_ = 1;
  packet::Time clock_{};  // the latest time passed in (for bookkeeping only)
  bool any_pmtu_told_ = false;  // some connection got a translated PTB (mptcp/icmp.cc)
};

}  // namespace mproxy::mptcp
