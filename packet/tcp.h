// TCP header view and option codec (RFC 9293 §3.1, §3.2).
//
// TcpOptionList keeps every option of a parsed header, NOPs and EOL included, in a fixed inline
// buffer (no heap allocation per packet), so emitting an unedited list reproduces the option area
// byte for byte. Options the codec does not interpret (MPTCP, kind 30; anything unknown) are
// preserved exactly; the mptcp/ module parses kind 30 itself.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>

#include "packet/bytes.h"
#include "packet/parse_error.h"
#include "packet/result.h"
#include "packet/seq.h"

namespace mproxy::packet {

inline constexpr size_t kTcpMinHeader = 20;
inline constexpr size_t kTcpMaxHeader = 60;
inline constexpr size_t kTcpMaxOptionBytes = 40;  // data offset is 4 bits of 32-bit words

// TCP flags, byte 13 of the header.
namespace tcp_flags {
inline constexpr uint8_t kFin = 0x01;
inline constexpr uint8_t kSyn = 0x02;
inline constexpr uint8_t kRst = 0x04;
inline constexpr uint8_t kPsh = 0x08;
inline constexpr uint8_t kAck = 0x10;
inline constexpr uint8_t kUrg = 0x20;
inline constexpr uint8_t kEce = 0x40;
inline constexpr uint8_t kCwr = 0x80;
}  // namespace tcp_flags

// The fixed 20 bytes, host order. seq/ack are raw 32-bit values; use seq_num()/ack_num() for the
// wrap-aware SubflowSeq type.
struct TcpHeader {
  uint16_t sport = 0;
  uint16_t dport = 0;
  uint32_t seq = 0;
  uint32_t ack = 0;
  uint8_t data_offset = 5;  // header length in 32-bit words (5..15)
  uint8_t reserved = 0;     // low nibble of byte 12 (reserved bits + AE, RFC 9768), kept verbatim
  uint8_t flags = 0;        // tcp_flags
  uint16_t window = 0;
  uint16_t checksum = 0;
  uint16_t urgent = 0;

  [[nodiscard]] size_t header_len() const { return size_t{data_offset} * 4; }
  [[nodiscard]] SubflowSeq seq_num() const { return SubflowSeq(seq); }
  [[nodiscard]] SubflowSeq ack_num() const { return SubflowSeq(ack); }
  [[nodiscard]] bool has(uint8_t f) const { return (flags & f) == f; }
};

// Parses the fixed header of the TCP segment `l4` (checks 20 <= data offset * 4 <= l4.size()).
[[nodiscard]] Result<TcpHeader> ParseTcpHeader(Bytes l4);
// Writes the 20 fixed bytes (data_offset and checksum as given).
bool WriteTcpHeader(const TcpHeader& h, ByteWriter& w);

namespace tcp_opt {
inline constexpr uint8_t kEol = 0;
inline constexpr uint8_t kNop = 1;
inline constexpr uint8_t kMss = 2;            // RFC 9293 §3.2, length 4
inline constexpr uint8_t kWindowScale = 3;    // RFC 7323 §2.2, length 3
inline constexpr uint8_t kSackPermitted = 4;  // RFC 2018 §2, length 2
inline constexpr uint8_t kSack = 5;           // RFC 2018 §3, length 2 + 8n, n = 1..4
inline constexpr uint8_t kTimestamps = 8;     // RFC 7323 §3.2, length 10
inline constexpr uint8_t kMptcp = 30;         // RFC 8684 §2, parsed by mptcp/
}  // namespace tcp_opt

struct SackBlock {
  uint32_t left = 0;   // first sequence number of the block
  uint32_t right = 0;  // sequence number following the block
};
struct TimestampsOption {
  uint32_t tsval = 0;
  uint32_t tsecr = 0;
};

// One option inside a TcpOptionList. For EOL, `raw` covers the EOL byte and every byte after it
// in the option area (padding, normally zero), so re-emission is exact.
struct TcpOptionView {
  uint8_t kind = 0;
  Bytes raw;   // kind, length and data as on the wire
  Bytes data;  // the bytes after kind and length (empty for EOL and NOP)
};

class TcpOptionList {
 public:
  static constexpr size_t kMaxBytes = kTcpMaxOptionBytes;
  static constexpr size_t kMaxOptions = kMaxBytes;  // worst case: all NOPs

  TcpOptionList() = default;

  // Parses an option area (the bytes between the fixed header and the data offset). Fails, with
  // the reason, on a length byte of 0 or 1, an option running past the area, or a wrong length
  // for a kind whose length is fixed. (Linux stops parsing at such an option and keeps the
  // packet; we report it so the caller can pass the packet unchanged and count it.)
  [[nodiscard]] static Result<TcpOptionList> Parse(Bytes area);

  [[nodiscard]] size_t size() const { return count_; }
  [[nodiscard]] bool empty() const { return count_ == 0; }
  [[nodiscard]] TcpOptionView operator[](size_t i) const;
  // Bytes the options occupy, unpadded / padded to a multiple of 4.
  [[nodiscard]] size_t byte_size() const { return used_; }
  [[nodiscard]] size_t EncodedSize() const { return (used_ + 3) & ~size_t{3}; }

  // Index of the first option of `kind`, if any.
  [[nodiscard]] std::optional<size_t> Find(uint8_t kind) const;

  // Typed accessors for the kinds this codec validates (nullopt/false when absent).
  [[nodiscard]] std::optional<uint16_t> Mss() const;
  [[nodiscard]] std::optional<uint8_t> WindowScale() const;
  [[nodiscard]] bool SackPermitted() const;
  [[nodiscard]] std::optional<TimestampsOption> Timestamps() const;
  // Up to 4 SACK blocks (RFC 2018 §3); returns the count written to `out`.
  size_t SackBlocks(std::array<SackBlock, 4>& out) const;

  // Editing. Every call fails (returns false, list unchanged) rather than exceed 40 bytes.
  // Appended options go before a trailing EOL, if the list has one.
  bool AddRaw(uint8_t kind, Bytes data);  // kind, length = 2 + data.size(), data
  bool AddNop();
  bool AddMss(uint16_t mss);
  bool AddWindowScale(uint8_t shift);
  bool AddSackPermitted();
  bool AddTimestamps(TimestampsOption ts);
  bool AddSack(std::span<const SackBlock> blocks);  // 1..4 blocks
  // Replaces option i by kind/data (any size, subject to the 40-byte limit).
  bool Replace(size_t i, uint8_t kind, Bytes data);
  // Overwrites the data of option i with `data` of the same size.
  bool OverwriteData(size_t i, Bytes data);
  bool SetMss(uint16_t mss);  // changes an existing MSS option; false if there is none
  void RemoveAt(size_t i);
  size_t RemoveAll(uint8_t kind);  // returns how many were removed
  void Clear() { count_ = 0, used_ = 0; }

  // Writes the options, padded with NOPs to a multiple of 4 (zero bytes if the list ends in EOL,
  // RFC 9293 §3.2), into `w`. Writes exactly EncodedSize() bytes.
  bool Emit(ByteWriter& w) const;

  friend bool operator==(const TcpOptionList& a, const TcpOptionList& b);

 private:
  struct Entry {
    uint8_t kind;
    uint8_t offset;  // into bytes_
    uint8_t len;     // total length on the wire (EOL: through the end of the area)
  };
  bool Insert(size_t pos, uint8_t kind, Bytes data, bool with_length);
  [[nodiscard]] size_t InsertPosition() const;
  [[nodiscard]] Bytes DataOf(size_t i) const;

  std::array<uint8_t, kMaxBytes> bytes_{};
  std::array<Entry, kMaxOptions> entries_{};
  uint8_t count_ = 0;
  uint8_t used_ = 0;
};

}  // namespace mproxy::packet
