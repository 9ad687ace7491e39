// IP addresses and TCP 4-tuples as plain values: comparable, hashable, printable. No syscalls
// (inet_pton/inet_ntop are pure libc formatting).
#pragma once

#include <array>
#include <compare>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "packet/bytes.h"

namespace mproxy::packet {

enum class IpFamily : uint8_t { kV4 = 4, kV6 = 6 };

class IpAddress {
 public:
  // The IPv4 unspecified address 0.0.0.0.
  constexpr IpAddress() = default;

  // `b` must hold exactly 4 bytes; anything else yields nullopt.
  [[nodiscard]] static std::optional<IpAddress> V4(Bytes b);
  // `b` must hold exactly 16 bytes; anything else yields nullopt.
  [[nodiscard]] static std::optional<IpAddress> V6(Bytes b);
  [[nodiscard]] static constexpr IpAddress V4(uint32_t host_order) {
    IpAddress a;
    for (int i = 0; i < 4; ++i) a.bytes_[i] = static_cast<uint8_t>(host_order >> (24 - 8 * i));
    return a;
  }
  // "198.18.0.1" or "2001:db8::1" (no brackets, no zone).
  [[nodiscard]] static std::optional<IpAddress> Parse(std::string_view text);

  [[nodiscard]] constexpr IpFamily family() const { return family_; }
  [[nodiscard]] constexpr bool is_v4() const { return family_ == IpFamily::kV4; }
  [[nodiscard]] constexpr bool is_v6() const { return family_ == IpFamily::kV6; }
  // fe80::/10 (RFC 4291 §2.5.6): needs a scope, meaningless beyond the link.
  [[nodiscard]] constexpr bool is_link_local_v6() const {
    return is_v6() && bytes_[0] == 0xfe && (bytes_[1] & 0xc0) == 0x80;
  }
  // Network-order bytes: 4 for IPv4, 16 for IPv6.
  [[nodiscard]] Bytes bytes() const { return Bytes(bytes_.data(), is_v4() ? 4 : 16); }
  [[nodiscard]] std::string ToString() const;

  friend constexpr auto operator<=>(const IpAddress&, const IpAddress&) = default;
  friend constexpr bool operator==(const IpAddress&, const IpAddress&) = default;

  [[nodiscard]] size_t Hash() const;

 private:
  // Declared first so the defaulted <=> orders IPv4 before IPv6. Unused bytes of an IPv4
  // address are zero, which keeps defaulted comparison and hashing exact.
  IpFamily family_ = IpFamily::kV4;
  std::array<uint8_t, 16> bytes_{};
};

// A TCP connection as seen in one packet: source and destination of *that packet*.
struct FourTuple {
  IpAddress src;
  IpAddress dst;
  uint16_t sport = 0;
  uint16_t dport = 0;

  // The tuple of packets flowing the other way.
  [[nodiscard]] FourTuple Reversed() const { return FourTuple{dst, src, dport, sport}; }
  // "198.18.0.1:1234 -> 198.18.0.2:80", IPv6 addresses in brackets.
  [[nodiscard]] std::string ToString() const;
  [[nodiscard]] size_t Hash() const;

  friend constexpr auto operator<=>(const FourTuple&, const FourTuple&) = default;
  friend constexpr bool operator==(const FourTuple&, const FourTuple&) = default;
};

}  // namespace mproxy::packet

template <>
struct std::hash<mproxy::packet::IpAddress> {
  size_t operator()(const mproxy::packet::IpAddress& a) const noexcept { return a.Hash(); }
};
template <>
struct std::hash<mproxy::packet::FourTuple> {
  size_t operator()(const mproxy::packet::FourTuple& t) const noexcept { return t.Hash(); }
};
