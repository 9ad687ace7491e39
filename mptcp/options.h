// MPTCP v1 option codec (RFC 8684 §3, TCP option kind 30).
//
// Parse -> typed value -> emit, on the bytes of one option exactly as the TCP option codec hands
// them over: kind (30), length, subtype byte, body. Padding NOPs are outside the option (interop
// §1) and are the TCP option codec's business; Emit() writes exactly EncodedLength() bytes.
//
// Which bytes are accepted is Linux's receive parser, not the RFC's grammar: lengths must match
// the kernel's table exactly (interop §1 table), MP_CAPABLE must pass the SHA-256/B-bit check,
// REMOVE_ADDR carries at most 8 IDs, MP_PRIO is the 3-byte v1 form. Everything Linux would
// silently ignore is reported as a non-kAccepted OptionStatus (never an error, never a crash), so
// the engine can count it and treat the segment exactly as the kernel would.
//
// Values are wire values. In particular the 32-bit forms of DATA_ACK and DSN carry the low 32
// bits only (RFC 8684 §3.3); the engine widens them with packet::Expand32. Fields a form does not
// carry are zero after Parse and ignored by Emit, so Parse(Emit(x)) == x for canonical values.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>
#include <variant>

#include "packet/address.h"
#include "packet/bytes.h"

namespace mproxy::mptcp {

inline constexpr uint8_t kMptcpOptionKind = 30;  // RFC 8684 §3 (IANA TCP option kind)
inline constexpr uint8_t kMptcpVersion = 1;      // RFC 8684; v0 (RFC 6824) is ignored by Linux

// The high nibble of the third option byte (RFC 8684 §3, Table 1 / IANA registry).
enum class Subtype : uint8_t {
  kMpCapable = 0x0,
  kMpJoin = 0x1,
  kDss = 0x2,
  kAddAddr = 0x3,
  kRemoveAddr = 0x4,
  kMpPrio = 0x5,
  kMpFail = 0x6,
  kMpFastclose = 0x7,
  kMpTcpRst = 0x8,
  kMpExperimental = 0xf,
};

// ---------------------------------------------------------------------------------------------
// MP_CAPABLE (RFC 8684 §3.1, interop §1.2)

// Flag bits of the fourth byte ("A B C D E F G H").
inline constexpr uint8_t kMpcFlagChecksum = 0x80;       // A: DSS checksums required
inline constexpr uint8_t kMpcFlagExtensibility = 0x40;  // B: must be 0 (Linux ignores the option)
inline constexpr uint8_t kMpcFlagNoJoinInitial = 0x20;  // C: do not join my initial address/port
inline constexpr uint8_t kMpcFlagHmacSha256 = 0x01;     // H: must be 1; D..G must be 0

// Linux mptcp_cap_flag_sha256() plus the B check: (flags & 0x1F) == H and B == 0.
[[nodiscard]] constexpr bool MpcFlagsValid(uint8_t flags) {
  return (flags & 0x1f) == kMpcFlagHmacSha256 && (flags & kMpcFlagExtensibility) == 0;
}

struct MpCapable {
  static constexpr Subtype kSubtype = Subtype::kMpCapable;
  // The form is the option length; Linux requires the exact length for the segment type.
  enum class Form : uint8_t {
    kSyn,          // 4: no key (v1 sends keys only from the SYN/ACK on)
    kSynAck,       // 12: sender_key = Key-B
    kAck,          // 20: sender_key = Key-A, receiver_key = Key-B
    kAckData,      // 22: + data_len (implicit mapping DSN = IDSN(Key-A) + 1, SSN 1)
    kAckDataCsum,  // 24: + data_len, checksum
  };
  Form form = Form::kSyn;
  uint8_t version = kMptcpVersion;  // 4 bits; a SYN may carry >= 1, every other form exactly 1
  uint8_t flags = kMpcFlagHmacSha256;
  uint64_t sender_key = 0;    // kSynAck and the ACK forms: the key of whoever sends the option
  uint64_t receiver_key = 0;  // ACK forms
  uint16_t data_len = 0;      // kAckData, kAckDataCsum
  uint16_t checksum = 0;      // kAckDataCsum (the field as on the wire)

  [[nodiscard]] bool checksum_required() const { return (flags & kMpcFlagChecksum) != 0; }
  [[nodiscard]] bool is_ack_form() const { return form >= Form::kAck; }
  [[nodiscard]] size_t EncodedLength() const;
  // Every Emit() writes EncodedLength() bytes, or returns false and writes nothing when `w` has
  // too little room or the value is not encodable (e.g. a version above 15).
  [[nodiscard]] bool Emit(packet::ByteWriter& w) const;
  friend bool operator==(const MpCapable&, const MpCapable&) = default;
};

// ---------------------------------------------------------------------------------------------
// MP_JOIN (RFC 8684 §3.2, interop §1.3)

inline constexpr size_t kJoinAckHmacLen = 20;  // 160-bit HMAC in the third ACK

struct MpJoin {
  static constexpr Subtype kSubtype = Subtype::kMpJoin;
  enum class Form : uint8_t {
    kSyn,     // 12: backup, address_id, token (of the receiver's key), nonce
    kSynAck,  // 16: backup, address_id, truncated_hmac (first 64 bits), nonce
    kAck,     // 24: hmac (first 160 bits)
  };
  Form form = Form::kSyn;
  bool backup = false;                          // kSyn, kSynAck
  uint8_t address_id = 0;                       // kSyn, kSynAck
  uint32_t token = 0;                           // kSyn
  uint32_t nonce = 0;                           // kSyn, kSynAck
  uint64_t truncated_hmac = 0;                  // kSynAck: the first 8 HMAC bytes read big-endian
  std::array<uint8_t, kJoinAckHmacLen> hmac{};  // kAck

  [[nodiscard]] size_t EncodedLength() const;
  [[nodiscard]] bool Emit(packet::ByteWriter& w) const;
  friend bool operator==(const MpJoin&, const MpJoin&) = default;
};

// ---------------------------------------------------------------------------------------------
// DSS (RFC 8684 §3.3, interop §1.4)

// Flag bits of the fourth byte ("rsv F m M a A"); the three reserved bits are masked on receipt.
inline constexpr uint8_t kDssFlagDataAck = 0x01;    // A
inline constexpr uint8_t kDssFlagDataAck64 = 0x02;  // a
inline constexpr uint8_t kDssFlagMapping = 0x04;    // M
inline constexpr uint8_t kDssFlagDsn64 = 0x08;      // m
inline constexpr uint8_t kDssFlagDataFin = 0x10;    // F
inline constexpr uint8_t kDssFlagMask = 0x1f;

struct DssDataAck {
  uint64_t value = 0;  // is64 ? the DATA_ACK : its low 32 bits (Emit writes only those then)
  bool is64 = false;
  friend bool operator==(const DssDataAck&, const DssDataAck&) = default;
};

struct DssMapping {
  uint64_t dsn = 0;  // dsn64 ? the DSN : its low 32 bits (widen with packet::Expand32)
  bool dsn64 = false;
  uint32_t ssn = 0;       // relative to the subflow ISN (the first payload byte has SSN 1)
  uint16_t data_len = 0;  // 0 = infinite mapping (RFC 8684 §3.7); includes the DATA_FIN's +1
  std::optional<uint16_t> checksum;  // present iff the option carried one (RFC 8684 §3.3.1)

  [[nodiscard]] bool infinite() const { return data_len == 0; }
  friend bool operator==(const DssMapping&, const DssMapping&) = default;
};

struct Dss {
  static constexpr Subtype kSubtype = Subtype::kDss;
  std::optional<DssDataAck> data_ack;
  std::optional<DssMapping> mapping;
  bool data_fin = false;  // F: the DATA_FIN occupies the last DSN of the mapping (§3.3.3)

  [[nodiscard]] size_t EncodedLength() const;
  [[nodiscard]] bool Emit(packet::ByteWriter& w) const;
  friend bool operator==(const Dss&, const Dss&) = default;
};

// Length of a DSS with these flags, without the optional checksum (Linux computes the expected
// option size from the flags the same way; a +2 checksum variant is also accepted).
[[nodiscard]] constexpr size_t DssBaseLength(uint8_t flags) {
  size_t len = 4;
  if (flags & kDssFlagDataAck) len += (flags & kDssFlagDataAck64) ? 8 : 4;
  if (flags & kDssFlagMapping) len += ((flags & kDssFlagDsn64) ? 8 : 4) + 4 + 2;
  return len;
}

// ---------------------------------------------------------------------------------------------
// ADD_ADDR (RFC 8684 §3.4.1, interop §1.5)

struct AddAddr {
  static constexpr Subtype kSubtype = Subtype::kAddAddr;
  bool echo = false;  // E: echo of a received ADD_ADDR, carries no HMAC
  uint8_t address_id = 0;
  // v1 has no IPVer field: the family follows from the option length (interop §1.5).
  packet::IpAddress address;
  std::optional<uint16_t> port;
  uint64_t hmac = 0;  // !echo: the last 8 HMAC bytes read big-endian (mptcp::AddAddrHmac)

  [[nodiscard]] size_t EncodedLength() const;
  [[nodiscard]] bool Emit(packet::ByteWriter& w) const;
  friend bool operator==(const AddAddr&, const AddAddr&) = default;
};

// ---------------------------------------------------------------------------------------------
// REMOVE_ADDR (RFC 8684 §3.4.2), MP_PRIO (§3.3.8), MP_FAIL (§3.7), MP_FASTCLOSE (§3.5),
// MP_TCPRST (§3.6); interop §1.6.

inline constexpr size_t kMaxRemoveIds = 8;  // Linux MPTCP_RM_IDS_MAX; longer lists are ignored

struct RemoveAddr {
  static constexpr Subtype kSubtype = Subtype::kRemoveAddr;
  uint8_t count = 0;                         // 1..kMaxRemoveIds
  std::array<uint8_t, kMaxRemoveIds> ids{};  // ids[count..] stay zero

  [[nodiscard]] std::span<const uint8_t> list() const {
    return std::span<const uint8_t>(ids).first(count <= kMaxRemoveIds ? count : kMaxRemoveIds);
  }
  [[nodiscard]] size_t EncodedLength() const;
  [[nodiscard]] bool Emit(packet::ByteWriter& w) const;
  friend bool operator==(const RemoveAddr&, const RemoveAddr&) = default;
};

// v1 MP_PRIO has no address ID and applies to the subflow it arrives on.
struct MpPrio {
  static constexpr Subtype kSubtype = Subtype::kMpPrio;
  bool backup = false;

  [[nodiscard]] size_t EncodedLength() const { return 3; }
  [[nodiscard]] bool Emit(packet::ByteWriter& w) const;
  friend bool operator==(const MpPrio&, const MpPrio&) = default;
};

struct MpFail {
  static constexpr Subtype kSubtype = Subtype::kMpFail;
  uint64_t dsn = 0;  // always 64-bit: the start of the failed mapping

  [[nodiscard]] size_t EncodedLength() const { return 12; }
  [[nodiscard]] bool Emit(packet::ByteWriter& w) const;
  friend bool operator==(const MpFail&, const MpFail&) = default;
};

struct MpFastclose {
  static constexpr Subtype kSubtype = Subtype::kMpFastclose;
  uint64_t receiver_key = 0;  // the key of the host receiving the option (Linux checks it)

  [[nodiscard]] size_t EncodedLength() const { return 12; }
  [[nodiscard]] bool Emit(packet::ByteWriter& w) const;
  friend bool operator==(const MpFastclose&, const MpFastclose&) = default;
};

inline constexpr uint8_t kTcpRstFlagTransient = 0x1;  // T; U V W (0x8 0x4 0x2) are unassigned

// MP_TCPRST reason codes (RFC 8684 §3.6, uapi/linux/mptcp.h).
enum class TcpRstReason : uint8_t {
  kUnspecified = 0,
  kMptcpError = 1,
  kNoResources = 2,
  kAdminProhibited = 3,
  kTooMuchOutstanding = 4,
  kUnacceptablePerformance = 5,
  kMiddleboxInterference = 6,
};

struct MpTcpRst {
  static constexpr Subtype kSubtype = Subtype::kMpTcpRst;
  uint8_t flags = 0;   // low nibble of the third byte: U V W T
  uint8_t reason = 0;  // TcpRstReason, other values are passed through as received

  [[nodiscard]] bool transient() const { return (flags & kTcpRstFlagTransient) != 0; }
  [[nodiscard]] size_t EncodedLength() const { return 4; }
  [[nodiscard]] bool Emit(packet::ByteWriter& w) const;
  friend bool operator==(const MpTcpRst&, const MpTcpRst&) = default;
};

// ---------------------------------------------------------------------------------------------
// Any option

using Option = std::variant<MpCapable, MpJoin, Dss, AddAddr, RemoveAddr, MpPrio, MpFail,
                            MpFastclose, MpTcpRst>;

[[nodiscard]] Subtype SubtypeOf(const Option& option);
// Bytes Emit() writes, kind and length included, padding excluded (budget the 40-byte option
// space with this plus the TCP codec's NOP padding).
[[nodiscard]] size_t EncodedLength(const Option& option);
// Writes the option (kind 30, length, body). False, with nothing written, when out of room or
// not encodable (a REMOVE_ADDR with 0 or more than 8 IDs, an MP_CAPABLE version above 15, an
// MP_TCPRST flags value above 15). To put it into a packet::TcpOptionList, emit into a buffer
// and hand bytes [2, n) to AddRaw(kMptcpOptionKind, ...).
[[nodiscard]] bool Emit(const Option& option, packet::ByteWriter& w);

// What happened to one kind-30 option. kAccepted is the only status under which Linux acts on
// the option; every other one means "silently ignored" (Linux never resets or falls back because
// an option is malformed, it just does not see it). The enum doubles as a counter index
// (packet/counters.h): CounterSet<OptionStatus, kOptionStatusNames>.
enum class OptionStatus : size_t {
  kAccepted,
  kNotMptcp,        // fewer than 2 bytes or kind != 30 (caller bug rather than peer input)
  kBadLength,       // length byte != bytes given, or a length Linux does not accept (interop §1)
  kBadVersion,      // MP_CAPABLE version: SYN < 1, other forms != 1
  kBadFlags,        // MP_CAPABLE flags fail (flags & 0x1F) == 0x01 && B == 0
  kUnknownSubtype,  // subtypes 0x9..0xe
  kExperimental,    // MP_EXPERIMENTAL (0xf)
  // Only from SegmentOptionsBuilder (they depend on the segment, not on the option bytes):
  kWrongSegment,   // MP_CAPABLE form not the one the TCP flags call for; MP_TCPRST without RST
  kDuplicate,      // a second option of a subtype already accepted on this segment
  kNotCombinable,  // not allowed together with an option accepted before it (interop §1.7)
  kCount
};

inline constexpr std::array<std::string_view, static_cast<size_t>(OptionStatus::kCount)>
    kOptionStatusNames{
        "MptcpOptAccepted",      "MptcpOptNotMptcp",     "MptcpOptBadLength",
        "MptcpOptBadVersion",    "MptcpOptBadFlags",     "MptcpOptUnknownSubtype",
        "MptcpOptExperimental",  "MptcpOptWrongSegment", "MptcpOptDuplicate",
        "MptcpOptNotCombinable",
    };

struct ParsedOption {
  OptionStatus status = OptionStatus::kNotMptcp;
  Option option;  // meaningful only when ok()

  [[nodiscard]] bool ok() const { return status == OptionStatus::kAccepted; }
};

// Parses one option: `bytes` is the whole option (kind, length, body), its size the length byte.
// Context-free: the MP_CAPABLE form follows from the length alone; SegmentOptionsBuilder adds the
// checks that depend on the TCP flags. Never reads outside `bytes`; any input is safe.
[[nodiscard]] ParsedOption ParseOption(packet::Bytes bytes);

// ---------------------------------------------------------------------------------------------
// One segment's MPTCP options as Linux acts on them (interop §1.7).

// What the receive-side checks need to know about the TCP segment carrying the options.
struct SegmentFlags {
  bool syn = false;
  bool ack = false;
  bool rst = false;
  bool has_payload = false;  // TCP payload length > 0
};

// The options Linux would act on, at most one per subtype.
struct SegmentOptions {
  std::optional<MpCapable> mp_capable;
  std::optional<MpJoin> mp_join;
  std::optional<Dss> dss;
  std::optional<AddAddr> add_addr;
  std::optional<RemoveAddr> remove_addr;
  std::optional<MpPrio> mp_prio;
  std::optional<MpFail> mp_fail;
  std::optional<MpFastclose> mp_fastclose;
  std::optional<MpTcpRst> mp_tcprst;
  // How many kind-30 options ended with each status (feed the engine's counters).
  std::array<uint8_t, static_cast<size_t>(OptionStatus::kCount)> status_count{};

  [[nodiscard]] bool empty() const;  // no option accepted
  [[nodiscard]] uint8_t count(OptionStatus s) const { return status_count[static_cast<size_t>(s)]; }
};

// Feeds the kind-30 options of one segment, in wire order, and keeps what Linux would act on:
//  - MP_CAPABLE only in the form the segment calls for (Linux mptcp_parse_option() computes the
//    expected length from the TCP flags): SYN -> 4, SYN/ACK -> 12, ACK without payload -> 20,
//    with payload -> 22 or 24; MP_TCPRST only on a segment with RST;
//  - a second option of an accepted subtype is ignored (first one wins);
//  - an option that may not share a segment with one accepted before it is ignored, per the
//    interop §1.7 table (a symmetric relation; see kCombinablePairs in options.cc).
// The first two rules are in Linux's parser. The last two are interop §1.7 as written; note that
// mptcp_parse_option() of the 6.x/master trees itself has no such check (each valid option sets
// its bit, a later one of the same subtype overwrites the fields of the earlier one) and the §1.7
// table equals the combinations Linux *sends* (mptcp_write_options()). Segments from a Linux
// peer are read the same either way; for anything else this is our stated policy.
// Allocation-free; usable with any TCP option iterator.
class SegmentOptionsBuilder {
 public:
  explicit SegmentOptionsBuilder(SegmentFlags flags) : flags_(flags) {}

  // Returns the option's status (also tallied in options().status_count).
  OptionStatus Add(packet::Bytes option_bytes);
  [[nodiscard]] const SegmentOptions& options() const { return out_; }

 private:
  SegmentFlags flags_;
  SegmentOptions out_;
  uint16_t accepted_classes_ = 0;  // bit per co-occurrence class (options.cc)
};

// Convenience: the result of feeding every element of `kind30_options` to a builder.
[[nodiscard]] SegmentOptions ParseSegmentOptions(SegmentFlags flags,
                                                 std::span<const packet::Bytes> kind30_options);

}  // namespace mproxy::mptcp
