// Reason codes for everything the packet/ parsers and emitters refuse. They travel in
// mproxy::Error::code (packet parsing has no errno to report), so a caller can map a failed
// Result to a counter without string matching: ReasonOf(result.error()).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "packet/result.h"

namespace mproxy::packet {

enum class ParseError : uint8_t {
  kNone = 0,
  // IP layer (RFC 791, RFC 8200).
  kIpTruncated,            // shorter than the fixed header, IHL, or the IP length field says
  kIpBadVersion,           // version nibble is neither 4 nor 6
  kIpv4BadIhl,             // IHL < 5
  kIpv4BadTotalLength,     // total length < IHL * 4
  kIpv6BadExtHeader,       // an extension header overruns the payload, or Hop-by-Hop not first
  kIpv6TooManyExtHeaders,  // more than kMaxIpv6ExtHeaders
  // Well-formed, but not something the TCP rewriter touches.
  kNotTcp,      // L4 protocol is not TCP (including ESP and No Next Header)
  kIpFragment,  // any IPv4/IPv6 fragment: the TCP header or payload is incomplete
  // TCP header (RFC 9293 §3.1).
  kTcpTruncated,      // fewer than 20 bytes of L4 data
  kTcpBadDataOffset,  // data offset < 5 or beyond the L4 data
  // TCP options (RFC 9293 §3.2).
  kOptionTruncated,       // kind without length byte, or length past the option area
  kOptionBadLength,       // length byte 0 or 1
  kOptionBadFixedLength,  // wrong length for MSS/WS/SACK-permitted/SACK/Timestamps
  kOptionsTooLong,        // more than 40 option bytes (emit side or editing)
  // Emit side.
  kHeadTooLarge,    // rewritten headers do not fit PacketOut::head
  kLengthOverflow,  // new IP length not representable
  kOutputTooSmall,  // caller-provided output buffer too small
  // IPv6 Routing header with Segments Left > 0: the TCP pseudo-header uses the final destination
  // inside the routing header (RFC 8200 §8.1), which we do not compute; refused where it matters
  // (full checksum, address rewrite).
  kIpv6RoutingInFlight,
  kFamilyChanged,  // address family of a rewritten packet differs from the original
  kCount,
};

[[nodiscard]] std::string_view ParseErrorName(ParseError e);

// Which counter bucket a reason belongs to.
enum class ParseErrorClass : uint8_t {
  kNone,
  kMalformedIp,
  kNotTcp,
  kMalformedTcp,
  kMalformedOptions,
  kUnsupported,  // well-formed, but a correct rewrite cannot be produced (see the reason)
  kEmit,
};
[[nodiscard]] ParseErrorClass ClassOf(ParseError e);

[[nodiscard]] inline Error MakeParseError(ParseError e) {
  return Error{static_cast<int>(e), std::string(ParseErrorName(e))};
}
// The reason carried by an Error from packet/ (kNone if the code is out of range).
[[nodiscard]] inline ParseError ReasonOf(const Error& e) {
  return e.code > 0 && e.code < static_cast<int>(ParseError::kCount)
             ? static_cast<ParseError>(e.code)
             : ParseError::kNone;
}

}  // namespace mproxy::packet
