#include "packet/parse_error.h"

#include <array>

namespace mproxy::packet {
namespace {

constexpr std::array<std::string_view, static_cast<size_t>(ParseError::kCount)> kNames{
    "ok",
    "ip: truncated",
    "ip: bad version",
    "ipv4: IHL < 5",
    "ipv4: total length < header length",
    "ipv6: bad extension header",
    "ipv6: too many extension headers",
    "not tcp",
    "ip fragment",
    "tcp: truncated",
    "tcp: bad data offset",
    "tcp option: truncated",
    "tcp option: length 0 or 1",
    "tcp option: wrong length for kind",
    "tcp options: more than 40 bytes",
    "emit: headers too large",
    "emit: ip length overflow",
    "emit: output too small",
    "emit: ipv6 routing header with segments left",
    "emit: address family changed",
};

}  // namespace

std::string_view ParseErrorName(ParseError e) {
  const auto i = static_cast<size_t>(e);
  return i < kNames.size() ? kNames[i] : "unknown";
}

ParseErrorClass ClassOf(ParseError e) {
  switch (e) {
    case ParseError::kNone:
    case ParseError::kCount:
      return ParseErrorClass::kNone;
    case ParseError::kIpTruncated:
    case ParseError::kIpBadVersion:
    case ParseError::kIpv4BadIhl:
    case ParseError::kIpv4BadTotalLength:
    case ParseError::kIpv6BadExtHeader:
    case ParseError::kIpv6TooManyExtHeaders:
      return ParseErrorClass::kMalformedIp;
    case ParseError::kNotTcp:
    case ParseError::kIpFragment:
      return ParseErrorClass::kNotTcp;
    case ParseError::kTcpTruncated:
    case ParseError::kTcpBadDataOffset:
      return ParseErrorClass::kMalformedTcp;
    case ParseError::kOptionTruncated:
    case ParseError::kOptionBadLength:
    case ParseError::kOptionBadFixedLength:
    case ParseError::kOptionsTooLong:
      return ParseErrorClass::kMalformedOptions;
    case ParseError::kHeadTooLarge:
    case ParseError::kLengthOverflow:
    case ParseError::kOutputTooSmall:
    case ParseError::kFamilyChanged:
      return ParseErrorClass::kEmit;
    case ParseError::kIpv6RoutingInFlight:
      return ParseErrorClass::kUnsupported;
  }
  return ParseErrorClass::kNone;
}

}  // namespace mproxy::packet
