// Destination selection for forged packets (the socket part needs root and is exercised by the
// namespaced tests).
#include "proxy/raw_socket.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <sys/time.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "packet/tcp_packet.h"

namespace mproxy::proxy {
namespace {

std::vector<uint8_t> Ipv4(const char* dst, const char* src = "198.18.2.2") {
  std::vector<uint8_t> p(40, 0);
  p[0] = 0x45;
  in_addr a{};
  inet_pton(AF_INET, dst, &a);
  std::memcpy(&p[16], &a, 4);
  inet_pton(AF_INET, src, &a);
  std::memcpy(&p[12], &a, 4);
  return p;
}

std::vector<uint8_t> Ipv6(const char* dst, const char* src = "2001:db8:2::2") {
  std::vector<uint8_t> p(60, 0);
  p[0] = 0x60;
  in6_addr a{};
  inet_pton(AF_INET6, dst, &a);
  std::memcpy(&p[24], &a, 16);
  inet_pton(AF_INET6, src, &a);
  std::memcpy(&p[8], &a, 16);
  return p;
}

TEST(ForgedDestination, SourceIsTakenFromTheHeader) {
  // The source goes into IP_PKTINFO / IPV6_PKTINFO so that policy routing by source applies.
  auto d4 = ForgedDestination(Ipv4("198.18.3.2", "198.18.2.2"), 0);
  ASSERT_TRUE(d4.ok());
  char buf[INET6_ADDRSTRLEN];
  EXPECT_STREQ(inet_ntop(AF_INET, d4->source.data(), buf, sizeof(buf)), "198.18.2.2");
  auto d6 = ForgedDestination(Ipv6("2001:db8:3::2", "2001:db8:2::2"), 0);
  ASSERT_TRUE(d6.ok());
  EXPECT_STREQ(inet_ntop(AF_INET6, d6->source.data(), buf, sizeof(buf)), "2001:db8:2::2");
}

TEST(ForgedDestination, Ipv4) {
  auto d = ForgedDestination(Ipv4("198.18.0.2"), 0);
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->family, AF_INET);
  sockaddr_in sin{};
  std::memcpy(&sin, &d->addr, sizeof(sin));
  char buf[INET_ADDRSTRLEN];
  EXPECT_STREQ(inet_ntop(AF_INET, &sin.sin_addr, buf, sizeof(buf)), "198.18.0.2");
  EXPECT_EQ(d->addr_len, sizeof(sockaddr_in));
}

TEST(ForgedDestination, Ipv6GlobalHasNoScope) {
  auto d = ForgedDestination(Ipv6("2001:db8::2"), 5);
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->family, AF_INET6);
  sockaddr_in6 sin6{};
  std::memcpy(&sin6, &d->addr, sizeof(sin6));
  char buf[INET6_ADDRSTRLEN];
  EXPECT_STREQ(inet_ntop(AF_INET6, &sin6.sin6_addr, buf, sizeof(buf)), "2001:db8::2");
  EXPECT_EQ(sin6.sin6_scope_id, 0u);
}

TEST(ForgedDestination, Ipv6LinkLocalGetsTheInterfaceAsScope) {
  auto d = ForgedDestination(Ipv6("fe80::1"), 5);
  ASSERT_TRUE(d.ok());
  sockaddr_in6 sin6{};
  std::memcpy(&sin6, &d->addr, sizeof(sin6));
  EXPECT_EQ(sin6.sin6_scope_id, 5u);
}

TEST(ForgedDestination, RejectsShortAndNonIp) {
  EXPECT_FALSE(ForgedDestination({}, 0).ok());
  auto v4 = Ipv4("198.18.0.2");
  for (size_t n = 0; n < 20; ++n) {
    EXPECT_FALSE(ForgedDestination(packet::Bytes(v4).first(n), 0).ok()) << n;
  }
  auto v6 = Ipv6("2001:db8::1");
  for (size_t n = 0; n < 40; ++n) {
    EXPECT_FALSE(ForgedDestination(packet::Bytes(v6).first(n), 0).ok()) << n;
  }
  v4[0] = 0x55;
  EXPECT_FALSE(ForgedDestination(v4, 0).ok());
}

}  // namespace
}  // namespace mproxy::proxy

namespace mproxy::proxy {
namespace {

// Internet checksum over `data` plus an initial sum (for the IPv6 UDP pseudo-header).
uint16_t Checksum(const std::vector<uint8_t>& data, uint32_t sum) {
  for (size_t i = 0; i + 1 < data.size(); i += 2) sum += (data[i] << 8) | data[i + 1];
  if (data.size() % 2 != 0) sum += data.back() << 8;
  while ((sum >> 16) != 0) sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<uint16_t>(~sum);
}

// A UDP socket on loopback; returns its port.
UniqueFd UdpListener(int family, uint16_t& port) {
  UniqueFd fd(socket(family, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  sockaddr_storage ss{};
  socklen_t len;
  if (family == AF_INET) {
    sockaddr_in sin{};
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    std::memcpy(&ss, &sin, sizeof(sin));
    len = sizeof(sin);
  } else {
    sockaddr_in6 sin6{};
    sin6.sin6_family = AF_INET6;
    sin6.sin6_addr = in6addr_loopback;
    std::memcpy(&ss, &sin6, sizeof(sin6));
    len = sizeof(sin6);
  }
  EXPECT_EQ(bind(fd.get(), reinterpret_cast<sockaddr*>(&ss), len), 0);
  EXPECT_EQ(getsockname(fd.get(), reinterpret_cast<sockaddr*>(&ss), &len), 0);
  uint16_t p;
  std::memcpy(&p, reinterpret_cast<uint8_t*>(&ss) + 2, 2);  // sin_port / sin6_port
  port = ntohs(p);
  timeval tv{1, 0};
  setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  return fd;
}

std::vector<uint8_t> Udp(uint16_t dport, const std::string& text) {
  std::array<uint8_t, 64> buf{};
  packet::ByteWriter w(buf);
  w.U16(12345);  // source port
  w.U16(dport);
  w.U16(static_cast<uint16_t>(8 + text.size()));
  w.U16(0);  // checksum, filled in by the caller where needed
  for (char c : text) w.U8(static_cast<uint8_t>(c));
  EXPECT_TRUE(w.ok());
  const auto out = w.Written();
  return {out.begin(), out.end()};
}

// Needs CAP_NET_RAW/CAP_NET_ADMIN; only touches the loopback interface.
TEST(RawSender, SendsBothFamiliesOverLoopback) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root";
  auto sender = RawSender::Open({});
  ASSERT_TRUE(sender.ok()) << sender.error().message;

  uint16_t port4 = 0, port6 = 0;
  UniqueFd l4 = UdpListener(AF_INET, port4);
  UniqueFd l6 = UdpListener(AF_INET6, port6);

  // IPv4: the kernel fills in the header checksum and total length for IP_HDRINCL; UDP checksum
  // 0 means "none" in IPv4.
  std::vector<uint8_t> v4 = {0x45, 0, 0,   0, 0, 0, 0x40, 0, 64, 17,
                             0,    0, 127, 0, 0, 1, 127,  0, 0,  1};
  const auto u4 = Udp(port4, "hello4");
  v4.insert(v4.end(), u4.begin(), u4.end());
  v4[2] = static_cast<uint8_t>(v4.size() >> 8);
  v4[3] = static_cast<uint8_t>(v4.size());
  // ifindex 1 is loopback: exercises the IP_PKTINFO path.
  ASSERT_TRUE((*sender)->Send({v4, 1}).ok());

  // IPv6: UDP checksum is mandatory (pseudo-header: ::1, ::1, length, next header 17).
  auto u6 = Udp(port6, "hello6");
  const uint32_t pseudo = 1 + 1 + static_cast<uint32_t>(u6.size()) + 17;
  const uint16_t c = Checksum(u6, pseudo);
  u6[6] = static_cast<uint8_t>(c >> 8);
  u6[7] = static_cast<uint8_t>(c);
  std::vector<uint8_t> v6(40, 0);
  v6[0] = 0x60;
  v6[4] = static_cast<uint8_t>(u6.size() >> 8);
  v6[5] = static_cast<uint8_t>(u6.size());
  v6[6] = 17;
  v6[7] = 64;
  v6[23] = 1;  // src ::1
  v6[39] = 1;  // dst ::1
  v6.insert(v6.end(), u6.begin(), u6.end());
  ASSERT_TRUE((*sender)->Send({v6, 1}).ok());

  char buf[64];
  ssize_t n = recv(l4.get(), buf, sizeof(buf), 0);
  ASSERT_EQ(n, 6);
  EXPECT_EQ(std::string(buf, 6), "hello4");
  n = recv(l6.get(), buf, sizeof(buf), 0);
  ASSERT_EQ(n, 6);
  EXPECT_EQ(std::string(buf, 6), "hello6");
  EXPECT_EQ((*sender)->counters().Get(RawCounter::kSent4), 1u);
  EXPECT_EQ((*sender)->counters().Get(RawCounter::kSent6), 1u);

  // Garbage is counted, not sent.
  EXPECT_FALSE((*sender)->Send({{0x10, 0x00}, 0}).ok());
  EXPECT_EQ((*sender)->counters().Get(RawCounter::kBadPacket), 1u);
}

// A real send, for tests/netns/routing_test.sh (skipped unless it sets the environment): forges a
// TCP SYN from MPROXY_FORGE_SRC to MPROXY_FORGE_DST:MPROXY_FORGE_PORT through RawSender with
// ifindex MPROXY_FORGE_IFINDEX (default 0), so the script can see which interface it leaves by.
TEST(RawSenderLive, ForgedSynFromEnvironment) {
  const char* src = std::getenv("MPROXY_FORGE_SRC");
  const char* dst = std::getenv("MPROXY_FORGE_DST");
  if (src == nullptr || dst == nullptr) GTEST_SKIP() << "MPROXY_FORGE_SRC/DST not set";
  const char* port = std::getenv("MPROXY_FORGE_PORT");
  const char* ifindex = std::getenv("MPROXY_FORGE_IFINDEX");
  packet::FourTuple t;
  auto s = packet::IpAddress::Parse(src);
  auto d = packet::IpAddress::Parse(dst);
  ASSERT_TRUE(s && d) << src << " " << dst;
  t.src = *s;
  t.dst = *d;
  t.sport = 40000;
  t.dport = static_cast<uint16_t>(port != nullptr ? std::atoi(port) : 9999);
  packet::TcpHeader h;
  h.sport = t.sport;
  h.dport = t.dport;
  h.seq = 1;
  h.flags = 0x02;  // SYN
  h.window = 1000;
  auto pkt = packet::BuildTcpPacket(t, h, {}, {});
  ASSERT_TRUE(pkt.ok()) << pkt.error().message;
  auto sender = RawSender::Open({});
  ASSERT_TRUE(sender.ok()) << sender.error().message;
  packet::ForgedPacket f{std::move(pkt.value()),
                         static_cast<uint32_t>(ifindex != nullptr ? std::atoi(ifindex) : 0)};
  auto r = (*sender)->Send(f);
  ASSERT_TRUE(r.ok()) << r.error().message;
}

}  // namespace
}  // namespace mproxy::proxy
