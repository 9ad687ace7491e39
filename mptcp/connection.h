// Per-connection state of the MPTCP engine (mptcp/DESIGN.md). Plain data: the engine owns the
// logic. All stream positions are 64-bit offsets from the first data byte of a direction, so the
// 32-bit wire numbers never need an order (packet/seq.h).
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "mptcp/mapping_table.h"
#include "packet/address.h"
#include "packet/engine.h"
#include "packet/tcp.h"

namespace mproxy::mptcp {

enum class Role : uint8_t { kActive, kPassive };
enum class ConnState : uint8_t {
  kSynSent,      // active: MP_CAPABLE SYN sent, waiting for the SYN/ACK
  kSynReceived,  // passive: peer's MP_CAPABLE SYN delivered, waiting for the third ACK
  kEstablished,  // converting
  kFallback,     // plain TCP, passed untouched (RFC 8684 §3.7)
  kClosed,       // both directions finished or reset; lingering for late packets
};
[[nodiscard]] std::string_view Name(ConnState s);
[[nodiscard]] std::string_view Name(Role r);

// A mapping we put on the wire for local data (tx). Retransmissions of any part of it must carry
// it again unchanged: Linux only accepts an identical mapping while one is in use
// (get_mapping_status(), DSSNotMatching), and the local stack retransmits parts of the GSO
// super-packets it sent whole.
struct TxMapping {
  uint64_t off = 0;  // tx offset of the first byte
  uint32_t len = 0;  // data bytes (the DATA_FIN, if any, follows them)
  bool fin = false;  // carries the DATA_FIN
  bool mpc = false;  // sent as MP_CAPABLE + data (implicit mapping, RFC 8684 §3.1)
  std::optional<uint16_t> checksum;
  uint64_t ssn_off = 0;  // subflow offset of the first byte (== off on the single-path subflow)
  [[nodiscard]] uint64_t end() const { return off + len + (fin ? 1 : 0); }
};

// One TCP subflow of a connection on the wire (RFC 8684 §3.2). The initial subflow shares the
// connection's TCP-side tuple; join subflows have their own wire tuple and sequence spaces, and
// the engine rewrites addresses, ports and sequence numbers between them and the TCP side.
enum class SubflowState : uint8_t {
  kSynSent,       // active join: MP_JOIN SYN sent, waiting for the SYN/ACK
  kPreEstablished,  // active join: third ACK sent, waiting for the fourth ACK (no data yet)
  kSynReceived,   // passive join: our SYN/ACK sent, waiting for the third ACK
  kEstablished,   // may carry data
  kClosing,       // FIN or RST exchanged on this subflow; the connection lives on
  kClosed,
};
[[nodiscard]] std::string_view Name(SubflowState s);

// The fields below are the contract with proxy/ (conn show); the engine may keep more.
struct SubflowInfo {
  uint8_t local_id = 0;          // our address ID (0: the initial address, RFC 8684 §3.4.1)
  uint8_t remote_id = 0;         // the peer's address ID
  packet::FourTuple tuple;       // wire tuple, local -> remote
  std::string ifname;            // local interface ("" when not known)
  SubflowState state = SubflowState::kSynSent;
  bool initial = false;          // the MP_CAPABLE subflow
  bool backup_local = false;     // we asked the peer to use it only as backup (MP_PRIO / B flag)
  bool backup_remote = false;    // the peer asked us to
  bool active = false;           // new local data is sent on it
  uint64_t bytes_tx = 0, bytes_rx = 0;  // payload bytes sent/received on this subflow
};

// Engine state of one subflow once the connection has more than one (mptcp/DESIGN.md, "Subflows").
// Offsets count from the subflow's ISN + 1 in each direction, like the connection's.
struct Subflow {
  uint32_t id = 0;  // 0: the initial subflow; the SEND table's tag
  bool initial = false;
  packet::FourTuple tuple;  // wire tuple, local -> remote
  uint32_t ifindex = 0;     // interface forged packets leave from (0: routing decides)
  uint8_t local_id = 0, remote_id = 0;
  SubflowState state = SubflowState::kSynSent;
  bool joiner = false;         // we sent the MP_JOIN SYN
  bool backup_local = false;   // we asked the peer to treat it as backup
  bool backup_remote = false;  // the peer asked us to
  bool gone = false;           // break-before-make / removed: nothing more is sent on it
  uint32_t local_nonce = 0, remote_nonce = 0;
  int tries = 0;                  // handshake packets sent (SYN, SYN/ACK or third ACK)
  std::optional<packet::Time> due;  // next handshake retransmission or FIN retransmission
  std::optional<uint64_t> handover;  // the handover request waiting for this subflow

  // tx: our bytes on this subflow.
  uint32_t tx_isn = 0;
  uint64_t tx_ssn_next = 0;  // subflow offset after the last byte allocated (SEND table)
  uint64_t tx_san = 0;       // the peer's subflow ACK on it, as an offset
  int retx_no_progress = 0;  // retransmissions routed here since its subflow ACK last moved
  packet::Time prio_sent{};  // when MP_PRIO backup last went out on it (repeated while data comes)
  std::deque<TxMapping> tx_maps;  // mappings sent on this subflow, not yet DATA_ACKed
  bool sfin_sent = false, sfin_acked = false;
  int sfin_tries = 0;

  // rx: the peer's bytes on this subflow.
  uint32_t rx_isn = 0;
  MappingTable recv;         // SSN offset -> DSN offset (seed §3.3 RECV table)
  uint64_t rx_ssn_high = 0;  // highest SSN offset + 1 received
  uint64_t rx_san = 0;       // subflow ACK as an offset (what we acknowledge)
  uint64_t rx_san_sent = 0;  // subflow ACK last put on the wire on this subflow
  // SSN ranges delivered to the local stack above rx_san ([begin, end), sorted, disjoint): a hole
  // on this subflow. The subflow ACK covers what arrived on the subflow in order, like a TCP
  // receiver's (RFC 8684 §3.3.6: subflow ACKs are per subflow, DATA_ACK says what the stack has);
  // these ranges become its SACK blocks and make the local stack's duplicate ACKs go here (seed
  // §3.4).
  std::vector<std::pair<uint64_t, uint64_t>> rx_ooo;
  bool sack = false;  // SACK negotiated on this subflow (RFC 2018)
  std::optional<uint64_t> rx_sfin;  // SSN offset of the peer's FIN on this subflow
  bool rx_shifted = false;

  // Header fields of this subflow (RFC 7323): what the peer negotiated on it.
  uint8_t peer_wscale = 0;       // the peer's shift on this subflow (0 without window scaling)
  bool ws = false;               // window scaling in use on this subflow
  bool ts = false;               // timestamps negotiated on this subflow
  uint32_t ts_recent = 0;        // last tsval received (our tsecr on this subflow)
  uint32_t ts_offset = 0;        // added to the peer's tsval before it reaches the local stack
  bool ts_offset_set = false;
  uint8_t ttl = 64;

  uint64_t bytes_tx = 0, bytes_rx = 0;
  [[nodiscard]] bool usable() const { return state == SubflowState::kEstablished && !gone; }
};

// One of our addresses announced to the peer with ADD_ADDR (RFC 8684 §3.4.1; mptcp/DESIGN.md
// "Announcing our addresses"). Retransmitted until the peer echoes it, like Linux does.
struct Announcement {
  uint8_t id = 0;  // our address ID: the one MP_JOIN, REMOVE_ADDR and `conn show` use for it
  packet::IpAddress address;
  int tries = 0;                    // ADD_ADDRs sent, the first one included
  std::optional<packet::Time> due;  // next retransmission (none: echoed or given up)
  bool echoed = false;
};

struct Connection {
  packet::FourTuple tuple;  // local -> remote; the TCP-side and the initial subflow's tuple
  Role role = Role::kActive;
  ConnState state = ConnState::kSynSent;

  uint64_t local_key = 0, remote_key = 0;
  uint32_t local_token = 0, remote_token = 0;
  uint64_t local_idsn = 0, remote_idsn = 0;
  bool remote_key_known = false;
  bool checksums = false;      // negotiated (either side set A)
  bool peer_dss_seen = false;  // peer sent a DSS with DATA_ACK: MPC+data no longer needed

  // tx: local stack -> peer. Offset 0 is the byte after the local SYN (TSN = tx_isn + 1).
  uint32_t tx_isn = 0;
  uint64_t tx_high = 0;   // highest offset + 1 the local stack has sent (FIN excluded)
  uint64_t tx_acked = 0;  // peer's DATA_ACK as a tx offset
  std::optional<uint64_t> tx_fin;  // offset of the DATA_FIN (= the local FIN's TSN offset)
  bool tx_fin_acked = false;
  bool tx_sfin_sent = false;
  bool tx_sfin_acked = false;
  int tx_sfin_tries = 0;
  packet::Time tx_sfin_due{};
  std::deque<TxMapping> tx_maps;  // sorted, not yet DATA_ACKed
  int syn_tries = 0;              // MP_CAPABLE SYNs sent (active)

  // rx: peer -> local stack. Offset 0 is the byte after the peer's SYN (TSN = SSN = rx_isn + 1);
  // DSN offsets count from the peer's IDSN + 1.
  uint32_t rx_isn = 0;
  MappingTable recv;          // peer's mappings on the initial subflow: SSN offset -> DSN offset
  uint64_t rx_ssn_high = 0;   // highest SSN offset + 1 received
  uint64_t rx_dsn_high = 0;   // highest DSN offset + 1 delivered
  uint64_t rx_dan = 0;        // DATA_ACK we last sent, as a DSN offset
  uint64_t rx_san = 0;        // subflow ACK we last sent, as an SSN offset
  std::optional<uint64_t> rx_data_fin;  // DSN offset of the peer's DATA_FIN
  std::optional<uint64_t> rx_sfin;      // SSN offset of the peer's subflow FIN
  bool rx_fin_delivered = false;        // the local stack got the TCP FIN for the DATA_FIN
  bool rx_shifted = false;  // the peer mapped some DSN at a different SSN offset (reinjection)

  // Last header values seen, for forged segments (subflow FIN and its ACK).
  uint16_t last_window = 0;
  std::optional<packet::TimestampsOption> last_ts;  // tsval from the local stack, tsecr from peer
  uint8_t ttl = 64;

  // Subflows (issue 4). Until `multi` the initial subflow lives in the fields above and `subflows`
  // holds only joins still in their handshake; from the first established join on, subflows[0] is
  // the initial subflow (its state moved out of the fields above) and every packet goes through the
  // multipath path: SEND table, per-subflow RECV tables, tuple rewriting.
  bool multi = false;
  std::vector<std::unique_ptr<Subflow>> subflows;
  Subflow* active = nullptr;  // multi: where new local data goes (null: nowhere usable yet)
  uint32_t next_subflow_id = 1;
  MappingTable send;  // multi: tx offset -> SSN offset, tag = subflow id (seed §3.3 SEND table)
  // Header values of the handshake, for join subflows (RFC 7323 §2.2: window fields the local
  // stack writes are scaled by the shift it announced; those it reads by the peer's).
  uint16_t local_mss = 0;      // MSS in the local stack's SYN (or SYN/ACK)
  uint8_t local_wscale = 0;    // its window scale shift (0: none)
  bool local_ws = false;
  uint8_t peer_wscale = 0;     // the peer's shift on the initial subflow
  bool local_ts = false, peer_ts = false;  // timestamps in the local SYN / the peer's SYN
  bool local_sack = false, peer_sack = false;  // SACK-permitted in the local SYN / the peer's
  bool peer_ws = false;
  uint32_t rx_ts_high = 0;     // multi: highest tsval delivered to the local stack
  bool rx_ts_set = false;
  uint16_t syn_window = 0;

  // Our other addresses announced on this connection (EngineConfig::announce). `announce_at`: when
  // the (re)computation of what to announce is due (set once the connection is fully
  // established). `removed_ids`: address IDs we sent REMOVE_ADDR for, so none goes out twice
  // (break-before-make and a lost address may both name one).
  bool announce = false;
  bool announce_started = false;  // the first Announce() ran
  std::optional<packet::Time> announce_at;
  std::vector<Announcement> announced;
  std::vector<uint8_t> removed_ids;
  packet::Duration handshake_rtt{};  // SYN to SYN/ACK (active) or to the third ACK (passive)

  packet::Time created{};
  packet::Time last_activity{};
  packet::Time deadline{};  // the engine's timer for this connection
  uint64_t bytes_tx = 0, bytes_rx = 0;
  // The lowest path MTU we told the local stack (translated frag-needed / packet-too-big; 0: none).
  // Its route to tuple.dst now holds that value, which the kernel also applies to our rewritten
  // packets on the initial subflow (mptcp/icmp.cc).
  uint32_t pmtu_told = 0;
};

}  // namespace mproxy::mptcp
