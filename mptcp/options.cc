#include "mptcp/options.h"

#include <array>
#include <optional>
#include <type_traits>
#include <variant>

namespace mproxy::mptcp {
namespace {

using packet::ByteReader;
using packet::Bytes;
using packet::ByteWriter;

// The first word of every MPTCP option: kind, length, subtype<<4 | nibble, one more byte. Linux
// builds it with mptcp_option(subtype, len, nibble, field) (interop §1).
void PutHeader(ByteWriter& w, size_t len, Subtype subtype, uint8_t nibble, uint8_t field) {
  w.U8(kMptcpOptionKind);
  w.U8(static_cast<uint8_t>(len));
  w.U8(static_cast<uint8_t>((static_cast<uint8_t>(subtype) << 4) | (nibble & 0x0f)));
  w.U8(field);
}

// The option length of each MpCapable::Form and MpJoin::Form, in enum order (interop §1 table;
// Linux TCPOLEN_MPTCP_MPC_* and TCPOLEN_MPTCP_MPJ_*).
constexpr std::array<uint8_t, 5> kMpcLengths = {4, 12, 20, 22, 24};
constexpr std::array<uint8_t, 3> kJoinLengths = {12, 16, 24};

template <typename Form, size_t N>
std::optional<Form> FormOfLength(const std::array<uint8_t, N>& lengths, size_t len) {
  for (size_t i = 0; i < N; ++i) {
    if (lengths[i] == len) return static_cast<Form>(i);
  }
  return std::nullopt;
}

template <typename Form, size_t N>
size_t LengthOfForm(const std::array<uint8_t, N>& lengths, Form form) {
  const auto i = static_cast<size_t>(form);
  return i < N ? lengths[i] : 0;
}

// Parsers below run after ParseOption() has checked kind, length byte == bytes.size() >= 3, and
// read the subtype byte `b2`; `r` stands on the fourth byte. Each one checks the exact length
// first, as Linux does, so every later read is in bounds; r.ok() is still checked at the end.

OptionStatus ParseMpCapable(ByteReader& r, size_t len, uint8_t b2, Option& out) {
  const std::optional<MpCapable::Form> form = FormOfLength<MpCapable::Form>(kMpcLengths, len);
  if (!form) return OptionStatus::kBadLength;
  MpCapable m;
  m.form = *form;
  // Linux is "gentle vs future versions on the initial syn" (answers v1); every later MP_CAPABLE
  // must be exactly v1 (interop §1.2). A v0 option is thereby ignored and the peer gets plain TCP.
  m.version = b2 & 0x0f;
  if (m.form == MpCapable::Form::kSyn ? m.version < kMptcpVersion : m.version != kMptcpVersion) {
    return OptionStatus::kBadVersion;
  }
  m.flags = r.U8().value_or(0);
  if (!MpcFlagsValid(m.flags)) return OptionStatus::kBadFlags;
  if (m.form != MpCapable::Form::kSyn) m.sender_key = r.U64().value_or(0);
  if (m.is_ack_form()) m.receiver_key = r.U64().value_or(0);
  if (m.form == MpCapable::Form::kAckData || m.form == MpCapable::Form::kAckDataCsum) {
    m.data_len = r.U16().value_or(0);
  }
  if (m.form == MpCapable::Form::kAckDataCsum) m.checksum = r.U16().value_or(0);
  if (!r.ok()) return OptionStatus::kBadLength;
  out = m;
  return OptionStatus::kAccepted;
}

OptionStatus ParseMpJoin(ByteReader& r, size_t len, uint8_t b2, Option& out) {
  const std::optional<MpJoin::Form> form = FormOfLength<MpJoin::Form>(kJoinLengths, len);
  if (!form) return OptionStatus::kBadLength;
  MpJoin j;
  j.form = *form;
  switch (j.form) {
    case MpJoin::Form::kSyn:
      j.backup = (b2 & 0x01) != 0;
      j.address_id = r.U8().value_or(0);
      j.token = r.U32().value_or(0);
      j.nonce = r.U32().value_or(0);
      break;
    case MpJoin::Form::kSynAck:
      j.backup = (b2 & 0x01) != 0;
      j.address_id = r.U8().value_or(0);
      j.truncated_hmac = r.U64().value_or(0);
      j.nonce = r.U32().value_or(0);
      break;
    case MpJoin::Form::kAck: {
      // The nibble and the fourth byte are reserved in the third ACK (RFC 8684 §3.2).
      if (!r.Skip(1)) return OptionStatus::kBadLength;
      const std::optional<Bytes> hmac = r.Take(kJoinAckHmacLen);
      if (!hmac) return OptionStatus::kBadLength;
      for (size_t i = 0; i < kJoinAckHmacLen; ++i) j.hmac[i] = (*hmac)[i];
      break;
    }
  }
  if (!r.ok()) return OptionStatus::kBadLength;
  out = j;
  return OptionStatus::kAccepted;
}

OptionStatus ParseDss(ByteReader& r, size_t len, Option& out) {
  // Reserved flag bits are masked, like Linux (MPTCP_DSS_FLAG_MASK); the nibble of the third byte
  // is reserved too and not looked at.
  const uint8_t flags = r.U8().value_or(0) & kDssFlagMask;
  const size_t expected = DssBaseLength(flags);
  // Linux accepts the expected length with or without 2 checksum bytes (whether a checksum must
  // be there is decided later against the negotiation, RFC 8684 §3.3.0 -> DssFallback).
  if (len != expected && len != expected + 2) return OptionStatus::kBadLength;
  Dss d;
  d.data_fin = (flags & kDssFlagDataFin) != 0;
  if (flags & kDssFlagDataAck) {
    const bool is64 = (flags & kDssFlagDataAck64) != 0;
    d.data_ack = DssDataAck{is64 ? r.U64().value_or(0) : r.U32().value_or(0), is64};
  }
  if (flags & kDssFlagMapping) {
    DssMapping m;
    m.dsn64 = (flags & kDssFlagDsn64) != 0;
    m.dsn = m.dsn64 ? r.U64().value_or(0) : r.U32().value_or(0);
    m.ssn = r.U32().value_or(0);
    m.data_len = r.U16().value_or(0);
    if (len == expected + 2) m.checksum = r.U16().value_or(0);
    d.mapping = m;
  }
  // Without a mapping, 2 trailing bytes are accepted and ignored by Linux (the checksum is read
  // only inside the mapping branch), so they are not represented here either.
  if (!r.ok()) return OptionStatus::kBadLength;
  out = d;
  return OptionStatus::kAccepted;
}

OptionStatus ParseAddAddr(ByteReader& r, size_t len, uint8_t b2, Option& out) {
  AddAddr a;
  a.echo = (b2 & 0x01) != 0;
  // v1 has no IPVer field: the family and the port follow from the length (interop §1.5).
  const size_t hmac_len = a.echo ? 0 : 8;
  size_t addr_len = 0;
  if (len == 4 + 4 + hmac_len || len == 4 + 4 + 2 + hmac_len) {
    addr_len = 4;
  } else if (len == 4 + 16 + hmac_len || len == 4 + 16 + 2 + hmac_len) {
    addr_len = 16;
  } else {
    return OptionStatus::kBadLength;
  }
  a.address_id = r.U8().value_or(0);
  const std::optional<Bytes> addr = r.Take(addr_len);
  if (!addr) return OptionStatus::kBadLength;
  const std::optional<packet::IpAddress> ip =
      addr_len == 4 ? packet::IpAddress::V4(*addr) : packet::IpAddress::V6(*addr);
  if (!ip) return OptionStatus::kBadLength;
  a.address = *ip;
  if (len == 4 + addr_len + 2 + hmac_len) a.port = r.U16().value_or(0);
  if (!a.echo) a.hmac = r.U64().value_or(0);
  if (!r.ok()) return OptionStatus::kBadLength;
  out = a;
  return OptionStatus::kAccepted;
}

OptionStatus ParseRemoveAddr(ByteReader& r, size_t len, Option& out) {
  if (len < 4 || len > 3 + kMaxRemoveIds) return OptionStatus::kBadLength;
  RemoveAddr rm;
  rm.count = static_cast<uint8_t>(len - 3);
  for (size_t i = 0; i < rm.count; ++i) rm.ids[i] = r.U8().value_or(0);
  if (!r.ok()) return OptionStatus::kBadLength;
  out = rm;
  return OptionStatus::kAccepted;
}

OptionStatus ParseMpPrio(size_t len, uint8_t b2, Option& out) {
  // Exactly 3: the 4-byte form with an address ID is RFC 6824 (v0) and Linux ignores it.
  if (len != 3) return OptionStatus::kBadLength;
  out = MpPrio{(b2 & 0x01) != 0};
  return OptionStatus::kAccepted;
}

OptionStatus ParseKeyOrDsn(ByteReader& r, size_t len, uint64_t& value) {
  if (len != 12) return OptionStatus::kBadLength;
  if (!r.Skip(1)) return OptionStatus::kBadLength;  // reserved
  value = r.U64().value_or(0);
  return r.ok() ? OptionStatus::kAccepted : OptionStatus::kBadLength;
}

OptionStatus ParseMpTcpRst(ByteReader& r, size_t len, uint8_t b2, Option& out) {
  if (len != 4) return OptionStatus::kBadLength;
  MpTcpRst rst;
  rst.flags = b2 & 0x0f;
  rst.reason = r.U8().value_or(0);
  if (!r.ok()) return OptionStatus::kBadLength;
  out = rst;
  return OptionStatus::kAccepted;
}

// Emit() helpers: all encoders first check the room, so a failed Emit writes nothing.
bool HasRoom(const ByteWriter& w, size_t len) { return w.ok() && w.remaining() >= len; }

}  // namespace

// ---------------------------------------------------------------------------------------------
// Parse

ParsedOption ParseOption(Bytes bytes) {
  ParsedOption p;
  if (bytes.size() < 2 || bytes[0] != kMptcpOptionKind) {
    p.status = OptionStatus::kNotMptcp;
    return p;
  }
  if (bytes[1] != bytes.size() || bytes.size() < 3) {
    p.status = OptionStatus::kBadLength;
    return p;
  }
  const size_t len = bytes.size();
  ByteReader r(bytes);
  if (!r.Skip(2)) {
    p.status = OptionStatus::kBadLength;
    return p;
  }
  const uint8_t b2 = r.U8().value_or(0);
  switch (static_cast<Subtype>(b2 >> 4)) {
    case Subtype::kMpCapable:
      p.status = ParseMpCapable(r, len, b2, p.option);
      break;
    case Subtype::kMpJoin:
      p.status = ParseMpJoin(r, len, b2, p.option);
      break;
    case Subtype::kDss:
      p.status = ParseDss(r, len, p.option);
      break;
    case Subtype::kAddAddr:
      p.status = ParseAddAddr(r, len, b2, p.option);
      break;
    case Subtype::kRemoveAddr:
      p.status = ParseRemoveAddr(r, len, p.option);
      break;
    case Subtype::kMpPrio:
      p.status = ParseMpPrio(len, b2, p.option);
      break;
    case Subtype::kMpFail: {
      MpFail f;
      p.status = ParseKeyOrDsn(r, len, f.dsn);
      if (p.ok()) p.option = f;
      break;
    }
    case Subtype::kMpFastclose: {
      MpFastclose f;
      p.status = ParseKeyOrDsn(r, len, f.receiver_key);
      if (p.ok()) p.option = f;
      break;
    }
    case Subtype::kMpTcpRst:
      p.status = ParseMpTcpRst(r, len, b2, p.option);
      break;
    case Subtype::kMpExperimental:
      p.status = OptionStatus::kExperimental;
      break;
    default:
      p.status = OptionStatus::kUnknownSubtype;
      break;
  }
  if (!p.ok()) p.option = MpCapable{};  // never expose a half-filled value
  return p;
}

// ---------------------------------------------------------------------------------------------
// Emit

size_t MpCapable::EncodedLength() const { return LengthOfForm(kMpcLengths, form); }

bool MpCapable::Emit(ByteWriter& w) const {
  const size_t len = EncodedLength();
  if (len == 0 || version > 0x0f || !HasRoom(w, len)) return false;
  PutHeader(w, len, kSubtype, version, flags);
  if (form != Form::kSyn) w.U64(sender_key);
  if (is_ack_form()) w.U64(receiver_key);
  if (form == Form::kAckData || form == Form::kAckDataCsum) w.U16(data_len);
  if (form == Form::kAckDataCsum) w.U16(checksum);
  return w.ok();
}

size_t MpJoin::EncodedLength() const { return LengthOfForm(kJoinLengths, form); }

bool MpJoin::Emit(ByteWriter& w) const {
  const size_t len = EncodedLength();
  if (len == 0 || !HasRoom(w, len)) return false;
  switch (form) {
    case Form::kSyn:
      PutHeader(w, len, kSubtype, backup ? 1 : 0, address_id);
      w.U32(token);
      w.U32(nonce);
      break;
    case Form::kSynAck:
      PutHeader(w, len, kSubtype, backup ? 1 : 0, address_id);
      w.U64(truncated_hmac);
      w.U32(nonce);
      break;
    case Form::kAck:
      PutHeader(w, len, kSubtype, 0, 0);
      w.Append(hmac);
      break;
  }
  return w.ok();
}

size_t Dss::EncodedLength() const {
  size_t len = 4;
  if (data_ack) len += data_ack->is64 ? 8 : 4;
  if (mapping) len += (mapping->dsn64 ? 8 : 4) + 4 + 2 + (mapping->checksum ? 2 : 0);
  return len;
}

bool Dss::Emit(ByteWriter& w) const {
  const size_t len = EncodedLength();
  if (!HasRoom(w, len)) return false;
  uint8_t flags = data_fin ? kDssFlagDataFin : 0;
  if (data_ack) flags |= kDssFlagDataAck | (data_ack->is64 ? kDssFlagDataAck64 : 0);
  if (mapping) flags |= kDssFlagMapping | (mapping->dsn64 ? kDssFlagDsn64 : 0);
  PutHeader(w, len, kSubtype, 0, flags);
  if (data_ack) {
    // The 32-bit form carries the low 32 bits (RFC 8684 §3.3; Linux data_ack32).
    if (data_ack->is64) {
      w.U64(data_ack->value);
    } else {
      w.U32(static_cast<uint32_t>(data_ack->value));
    }
  }
  if (mapping) {
    if (mapping->dsn64) {
      w.U64(mapping->dsn);
    } else {
      w.U32(static_cast<uint32_t>(mapping->dsn));
    }
    w.U32(mapping->ssn);
    w.U16(mapping->data_len);
    if (mapping->checksum) w.U16(*mapping->checksum);
  }
  return w.ok();
}

size_t AddAddr::EncodedLength() const {
  return 4 + address.bytes().size() + (port ? 2 : 0) + (echo ? 0 : 8);
}

bool AddAddr::Emit(ByteWriter& w) const {
  const size_t len = EncodedLength();
  if (!HasRoom(w, len)) return false;
  PutHeader(w, len, kSubtype, echo ? 1 : 0, address_id);
  w.Append(address.bytes());
  if (port) w.U16(*port);
  // RFC 8684 §3.4.1: an echo carries no HMAC.
  if (!echo) w.U64(hmac);
  return w.ok();
}

size_t RemoveAddr::EncodedLength() const { return 3 + count; }

bool RemoveAddr::Emit(ByteWriter& w) const {
  // Linux ignores an empty list or more than MPTCP_RM_IDS_MAX IDs; never produce one.
  if (count == 0 || count > kMaxRemoveIds) return false;
  const size_t len = EncodedLength();
  if (!HasRoom(w, len)) return false;
  w.U8(kMptcpOptionKind);
  w.U8(static_cast<uint8_t>(len));
  w.U8(static_cast<uint8_t>(static_cast<uint8_t>(kSubtype) << 4));
  w.Append(list());
  return w.ok();
}

bool MpPrio::Emit(ByteWriter& w) const {
  if (!HasRoom(w, 3)) return false;
  w.U8(kMptcpOptionKind);
  w.U8(3);
  w.U8(static_cast<uint8_t>((static_cast<uint8_t>(kSubtype) << 4) | (backup ? 1 : 0)));
  return w.ok();
}

bool MpFail::Emit(ByteWriter& w) const {
  if (!HasRoom(w, 12)) return false;
  PutHeader(w, 12, kSubtype, 0, 0);
  w.U64(dsn);
  return w.ok();
}

bool MpFastclose::Emit(ByteWriter& w) const {
  if (!HasRoom(w, 12)) return false;
  PutHeader(w, 12, kSubtype, 0, 0);
  w.U64(receiver_key);
  return w.ok();
}

bool MpTcpRst::Emit(ByteWriter& w) const {
  if (flags > 0x0f || !HasRoom(w, 4)) return false;
  PutHeader(w, 4, kSubtype, flags, reason);
  return w.ok();
}

Subtype SubtypeOf(const Option& option) {
  return std::visit([](const auto& o) { return std::decay_t<decltype(o)>::kSubtype; }, option);
}

size_t EncodedLength(const Option& option) {
  return std::visit([](const auto& o) { return o.EncodedLength(); }, option);
}

bool Emit(const Option& option, ByteWriter& w) {
  return std::visit([&w](const auto& o) { return o.Emit(w); }, option);
}

// ---------------------------------------------------------------------------------------------
// Co-occurrence (interop §1.7)

namespace {

// The MP_CAPABLE ACK forms may share a segment with RM_ADDR, the SYN forms with nothing, so the
// two get separate classes.
enum Class : uint8_t {
  kClassMpcSyn,
  kClassMpcAck,
  kClassJoin,
  kClassDss,
  kClassAddAddr,
  kClassRemoveAddr,
  kClassPrio,
  kClassFail,
  kClassFastclose,
  kClassTcpRst,
  kClassCount
};

constexpr uint16_t Bit(Class c) { return static_cast<uint16_t>(1u << c); }

// The pairs of interop §1.7 ("may follow"). The table there is symmetric, so one list of pairs
// gives both directions.
struct Pair {
  Class a, b;
};
constexpr Pair kCombinablePairs[] = {
    {kClassMpcAck, kClassRemoveAddr},  {kClassJoin, kClassRemoveAddr},
    {kClassJoin, kClassPrio},          {kClassDss, kClassAddAddr},
    {kClassDss, kClassRemoveAddr},     {kClassDss, kClassPrio},
    {kClassDss, kClassFastclose},      {kClassDss, kClassFail},
    {kClassAddAddr, kClassRemoveAddr}, {kClassAddAddr, kClassPrio},
    {kClassRemoveAddr, kClassPrio},    {kClassFastclose, kClassTcpRst},
    {kClassTcpRst, kClassFail},
};

constexpr std::array<uint16_t, kClassCount> MakeCombinable() {
  std::array<uint16_t, kClassCount> m{};
  for (const Pair& p : kCombinablePairs) {
    m[p.a] = static_cast<uint16_t>(m[p.a] | Bit(p.b));
    m[p.b] = static_cast<uint16_t>(m[p.b] | Bit(p.a));
  }
  return m;
}
// kCombinable[c]: the classes an option of class c may share a segment with.
constexpr std::array<uint16_t, kClassCount> kCombinable = MakeCombinable();

Class ClassOf(const Option& option) {
  switch (SubtypeOf(option)) {
    case Subtype::kMpCapable:
      return std::get<MpCapable>(option).is_ack_form() ? kClassMpcAck : kClassMpcSyn;
    case Subtype::kMpJoin:
      return kClassJoin;
    case Subtype::kDss:
      return kClassDss;
    case Subtype::kAddAddr:
      return kClassAddAddr;
    case Subtype::kRemoveAddr:
      return kClassRemoveAddr;
    case Subtype::kMpPrio:
      return kClassPrio;
    case Subtype::kMpFail:
      return kClassFail;
    case Subtype::kMpFastclose:
      return kClassFastclose;
    case Subtype::kMpTcpRst:
      return kClassTcpRst;
    case Subtype::kMpExperimental:
      break;
  }
  return kClassCount;  // unreachable: Option holds no experimental alternative
}

// Linux mptcp_parse_option() derives the MP_CAPABLE length it accepts from the TCP flags (the
// "strict size checking" branch): SYN 4, SYN/ACK 12, then 20 without and 22 (or 24 with a
// checksum) with payload.
bool MpcFormFits(MpCapable::Form form, SegmentFlags f) {
  using Form = MpCapable::Form;
  if (f.syn) return form == (f.ack ? Form::kSynAck : Form::kSyn);
  if (f.has_payload) return form == Form::kAckData || form == Form::kAckDataCsum;
  return form == Form::kAck;
}

// The slot of SegmentOptions that holds each option type.
std::optional<MpCapable>& SlotFor(SegmentOptions& s, const MpCapable&) { return s.mp_capable; }
std::optional<MpJoin>& SlotFor(SegmentOptions& s, const MpJoin&) { return s.mp_join; }
std::optional<Dss>& SlotFor(SegmentOptions& s, const Dss&) { return s.dss; }
std::optional<AddAddr>& SlotFor(SegmentOptions& s, const AddAddr&) { return s.add_addr; }
std::optional<RemoveAddr>& SlotFor(SegmentOptions& s, const RemoveAddr&) { return s.remove_addr; }
std::optional<MpPrio>& SlotFor(SegmentOptions& s, const MpPrio&) { return s.mp_prio; }
std::optional<MpFail>& SlotFor(SegmentOptions& s, const MpFail&) { return s.mp_fail; }
std::optional<MpFastclose>& SlotFor(SegmentOptions& s, const MpFastclose&) {
  return s.mp_fastclose;
}
std::optional<MpTcpRst>& SlotFor(SegmentOptions& s, const MpTcpRst&) { return s.mp_tcprst; }

}  // namespace

bool SegmentOptions::empty() const {
  return !mp_capable && !mp_join && !dss && !add_addr && !remove_addr && !mp_prio && !mp_fail &&
         !mp_fastclose && !mp_tcprst;
}

OptionStatus SegmentOptionsBuilder::Add(Bytes option_bytes) {
  const ParsedOption p = ParseOption(option_bytes);
  OptionStatus status = p.status;
  if (p.ok()) {
    const Subtype subtype = SubtypeOf(p.option);
    const Class cls = ClassOf(p.option);
    if (subtype == Subtype::kMpCapable &&
        !MpcFormFits(std::get<MpCapable>(p.option).form, flags_)) {
      status = OptionStatus::kWrongSegment;
    } else if (subtype == Subtype::kMpTcpRst && !flags_.rst) {
      // Linux parses MP_TCPRST only on a segment with the TCP RST flag (interop §1 table).
      status = OptionStatus::kWrongSegment;
    } else {
      status = std::visit(
          [this, cls](const auto& o) {
            auto& slot = SlotFor(out_, o);
            if (slot) return OptionStatus::kDuplicate;
            if ((accepted_classes_ & ~kCombinable[cls]) != 0) return OptionStatus::kNotCombinable;
            slot = o;
            accepted_classes_ = static_cast<uint16_t>(accepted_classes_ | Bit(cls));
            return OptionStatus::kAccepted;
          },
          p.option);
    }
  }
  uint8_t& n = out_.status_count[static_cast<size_t>(status)];
  if (n != UINT8_MAX) ++n;  // at most 20 options fit in 40 bytes; saturate anyway
  return status;
}

SegmentOptions ParseSegmentOptions(SegmentFlags flags,
                                   std::span<const packet::Bytes> kind30_options) {
  SegmentOptionsBuilder b(flags);
  for (const packet::Bytes& o : kind30_options) b.Add(o);
  return b.options();
}

}  // namespace mproxy::mptcp
