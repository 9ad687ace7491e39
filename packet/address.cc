#include "packet/address.h"

#include <arpa/inet.h>

#include <algorithm>

namespace mproxy::packet {
namespace {

// splitmix64 finalizer: cheap, and good enough to spread addresses that differ in a few bits
// across hash buckets.
constexpr uint64_t Mix(uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  x ^= x >> 31;
  return x;
}

uint64_t Load64(Bytes b, size_t off) {
  uint32_t hi = 0, lo = 0;
  (void)Load32(b, off, hi);
  (void)Load32(b, off + 4, lo);
  return (uint64_t{hi} << 32) | lo;
}

}  // namespace

std::optional<IpAddress> IpAddress::V4(Bytes b) {
  if (b.size() != 4) return std::nullopt;
  IpAddress a;
  std::copy(b.begin(), b.end(), a.bytes_.begin());
  return a;
}

std::optional<IpAddress> IpAddress::V6(Bytes b) {
  if (b.size() != 16) return std::nullopt;
  IpAddress a;
  a.family_ = IpFamily::kV6;
  std::copy(b.begin(), b.end(), a.bytes_.begin());
  return a;
}

std::optional<IpAddress> IpAddress::Parse(std::string_view text) {
  if (text.size() >= INET6_ADDRSTRLEN) return std::nullopt;
  char buf[INET6_ADDRSTRLEN] = {};
  std::copy(text.begin(), text.end(), buf);
  IpAddress a;
  if (inet_pton(AF_INET, buf, a.bytes_.data()) == 1) return a;
  if (inet_pton(AF_INET6, buf, a.bytes_.data()) == 1) {
    a.family_ = IpFamily::kV6;
    return a;
  }
  return std::nullopt;
}

std::string IpAddress::ToString() const {
  char buf[INET6_ADDRSTRLEN] = {};
  if (inet_ntop(is_v4() ? AF_INET : AF_INET6, bytes_.data(), buf, sizeof(buf)) == nullptr) {
    return "?";
  }
  return buf;
}

size_t IpAddress::Hash() const {
  const Bytes all(bytes_.data(), bytes_.size());
  return static_cast<size_t>(
      Mix(Load64(all, 0) ^ Mix(Load64(all, 8) ^ static_cast<uint64_t>(family_))));
}

std::string FourTuple::ToString() const {
  auto end = [](const IpAddress& a, uint16_t port) {
    return (a.is_v6() ? "[" + a.ToString() + "]" : a.ToString()) + ":" + std::to_string(port);
  };
  return end(src, sport) + " -> " + end(dst, dport);
}

size_t FourTuple::Hash() const {
  return static_cast<size_t>(Mix(src.Hash() ^ Mix(dst.Hash() ^ ((uint64_t{sport} << 16) | dport))));
}

}  // namespace mproxy::packet
