// The kernel-free parts of proxy/nfqueue: packet message parsing (messages built with libmnl the
// way nfnetlink_queue builds them), the batched verdict builder (flattened and re-parsed), and the
// /proc/net/netfilter/nfnetlink_queue parser.
#include "proxy/nfqueue.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <libmnl/libmnl.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_queue.h>
#include <linux/netlink.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <numeric>
#include <vector>

namespace mproxy::proxy {
namespace {

constexpr uint16_t kPacketMsgType = (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET;
constexpr uint16_t kVerdictMsgType = (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_VERDICT;

// What the kernel's __nfqnl_build_packet_message() puts in a packet message (the parts we read).
struct SyntheticPacket {
  uint32_t id = 42;
  uint16_t hw_protocol = 0x0800;
  uint8_t hook = 3;  // LOCAL_OUT
  std::optional<uint32_t> mark;
  std::optional<uint32_t> indev, outdev;
  std::optional<uint32_t> skb_info;
  std::optional<uint32_t> cap_len;
  std::optional<std::vector<uint8_t>> payload = std::vector<uint8_t>(60, 0xab);
  bool with_header = true;
  size_t header_len = 7;                 // sizeof(struct nfqnl_msg_packet_hdr), packed
  std::optional<uint16_t> bad_mark_len;  // a NFQA_MARK attribute of the wrong size
};

class MessageBuffer {
 public:
  MessageBuffer() : storage_(70000 / 4 + 1) {}
  nlmsghdr* Build(const SyntheticPacket& s) {
    std::fill(storage_.begin(), storage_.end(), 0);
    nlmsghdr* nlh = mnl_nlmsg_put_header(storage_.data());
    nlh->nlmsg_type = kPacketMsgType;
    auto* nfg = static_cast<nfgenmsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(nfgenmsg)));
    nfg->nfgen_family = AF_UNSPEC;
    nfg->version = NFNETLINK_V0;
    nfg->res_id = htons(0);
    if (s.with_header) {
      uint8_t hdr[8];
      const uint32_t id = htonl(s.id);
      const uint16_t proto = htons(s.hw_protocol);
      std::memcpy(hdr, &id, 4);
      std::memcpy(hdr + 4, &proto, 2);
      hdr[6] = s.hook;
      hdr[7] = 0;
      mnl_attr_put(nlh, NFQA_PACKET_HDR, s.header_len, hdr);
    }
    if (s.mark) mnl_attr_put_u32(nlh, NFQA_MARK, htonl(*s.mark));
    if (s.bad_mark_len) {
      std::vector<uint8_t> junk(*s.bad_mark_len, 1);
      mnl_attr_put(nlh, NFQA_MARK, junk.size(), junk.data());
    }
    if (s.indev) mnl_attr_put_u32(nlh, NFQA_IFINDEX_INDEV, htonl(*s.indev));
    if (s.outdev) mnl_attr_put_u32(nlh, NFQA_IFINDEX_OUTDEV, htonl(*s.outdev));
    if (s.cap_len) mnl_attr_put_u32(nlh, NFQA_CAP_LEN, htonl(*s.cap_len));
    if (s.skb_info) mnl_attr_put_u32(nlh, NFQA_SKB_INFO, htonl(*s.skb_info));
    if (s.payload) mnl_attr_put(nlh, NFQA_PAYLOAD, s.payload->size(), s.payload->data());
    return nlh;
  }

 private:
  std::vector<uint32_t> storage_;  // uint32_t: aligned for nlmsghdr
};

TEST(ParsePacketMessage, ReadsEveryField) {
  SyntheticPacket s;
  s.id = 0x01020304;
  s.hw_protocol = 0x86dd;
  s.hook = 0;  // PRE_ROUTING
  s.mark = 0x4d50;
  s.indev = 7;
  s.outdev = 9;
  s.skb_info = NFQA_SKB_CSUMNOTREADY | NFQA_SKB_GSO;
  s.payload = std::vector<uint8_t>{1, 2, 3, 4, 5};
  MessageBuffer buf;
  const nlmsghdr* nlh = buf.Build(s);

  QueuedPacket p;
  uint64_t bad = 0;
  ASSERT_EQ(ParsePacketMessage(nlh, p, bad), ParseStatus::kPacket);
  EXPECT_EQ(bad, 0u);
  EXPECT_EQ(p.id, 0x01020304u);
  EXPECT_EQ(p.hw_protocol, 0x86dd);
  EXPECT_EQ(p.meta.hook, packet::Hook::kPreRouting);
  EXPECT_EQ(p.meta.mark, 0x4d50u);
  EXPECT_EQ(p.meta.ifindex_in, 7u);
  EXPECT_EQ(p.meta.ifindex_out, 9u);
  EXPECT_TRUE(p.meta.csum_not_ready);
  EXPECT_TRUE(p.meta.gso);
  ASSERT_TRUE(p.has_payload);
  EXPECT_FALSE(p.truncated);
  EXPECT_EQ(p.cap_len, 5u);
  ASSERT_EQ(p.payload.size(), 5u);
  EXPECT_EQ(p.payload[0], 1);
  EXPECT_EQ(p.payload[4], 5);
  // The payload aliases the message (zero copy, and writable for in-place patching).
  const auto* base = reinterpret_cast<const uint8_t*>(nlh);
  EXPECT_GT(p.payload.data(), base);
  EXPECT_LT(p.payload.data(), base + nlh->nlmsg_len);
}

TEST(ParsePacketMessage, DefaultsWhenOptionalAttributesAreAbsent) {
  SyntheticPacket s;
  MessageBuffer buf;
  QueuedPacket p;
  uint64_t bad = 0;
  ASSERT_EQ(ParsePacketMessage(buf.Build(s), p, bad), ParseStatus::kPacket);
  EXPECT_EQ(p.meta.hook, packet::Hook::kLocalOut);
  EXPECT_EQ(p.meta.mark, 0u);
  EXPECT_EQ(p.meta.ifindex_in, 0u);
  EXPECT_FALSE(p.meta.csum_not_ready);
  EXPECT_FALSE(p.meta.gso);
  EXPECT_FALSE(p.truncated);
}

TEST(ParsePacketMessage, CsumNotReadyWithoutGso) {
  SyntheticPacket s;
  s.skb_info = NFQA_SKB_CSUMNOTREADY;
  MessageBuffer buf;
  QueuedPacket p;
  uint64_t bad = 0;
  ASSERT_EQ(ParsePacketMessage(buf.Build(s), p, bad), ParseStatus::kPacket);
  EXPECT_TRUE(p.meta.csum_not_ready);
  EXPECT_FALSE(p.meta.gso);
}

// Pitfall 3: the kernel adds NFQA_CAP_LEN with the real length when it copied less.
TEST(ParsePacketMessage, CapLenLargerThanPayloadMeansTruncated) {
  SyntheticPacket s;
  s.payload = std::vector<uint8_t>(1000, 7);
  s.cap_len = 70000;
  MessageBuffer buf;
  QueuedPacket p;
  uint64_t bad = 0;
  ASSERT_EQ(ParsePacketMessage(buf.Build(s), p, bad), ParseStatus::kPacket);
  EXPECT_TRUE(p.truncated);
  EXPECT_EQ(p.cap_len, 70000u);
  EXPECT_EQ(p.payload.size(), 1000u);
}

TEST(ParsePacketMessage, CapLenEqualToPayloadIsNotTruncated) {
  SyntheticPacket s;
  s.payload = std::vector<uint8_t>(1000, 7);
  s.cap_len = 1000;
  MessageBuffer buf;
  QueuedPacket p;
  uint64_t bad = 0;
  ASSERT_EQ(ParsePacketMessage(buf.Build(s), p, bad), ParseStatus::kPacket);
  EXPECT_FALSE(p.truncated);
}

TEST(ParsePacketMessage, MissingOrShortPacketHeaderIsMalformed) {
  MessageBuffer buf;
  QueuedPacket p;
  uint64_t bad = 0;
  SyntheticPacket none;
  none.with_header = false;
  EXPECT_EQ(ParsePacketMessage(buf.Build(none), p, bad), ParseStatus::kMalformed);
  SyntheticPacket shorty;
  shorty.header_len = 6;  // no hook byte
  EXPECT_EQ(ParsePacketMessage(buf.Build(shorty), p, bad), ParseStatus::kMalformed);
}

TEST(ParsePacketMessage, BadAttributeIsIgnoredAndCounted) {
  SyntheticPacket s;
  s.bad_mark_len = 2;
  MessageBuffer buf;
  QueuedPacket p;
  uint64_t bad = 0;
  ASSERT_EQ(ParsePacketMessage(buf.Build(s), p, bad), ParseStatus::kPacket);
  EXPECT_EQ(bad, 1u);
  EXPECT_EQ(p.meta.mark, 0u);
  EXPECT_EQ(p.id, 42u);  // still verdictable
}

TEST(ParsePacketMessage, NoPayload) {
  SyntheticPacket s;
  s.payload.reset();
  MessageBuffer buf;
  QueuedPacket p;
  uint64_t bad = 0;
  ASSERT_EQ(ParsePacketMessage(buf.Build(s), p, bad), ParseStatus::kPacket);
  EXPECT_FALSE(p.has_payload);
  EXPECT_TRUE(p.payload.empty());
}

// Every prefix of a message (nlmsg_len cut short, as a damaged datagram would be) parses without
// reading past nlmsg_len: either malformed or a packet whose payload lies inside the prefix.
TEST(ParsePacketMessage, EveryPrefixIsSafe) {
  SyntheticPacket s;
  s.mark = 1;
  s.indev = 2;
  s.skb_info = 3;
  s.cap_len = 100;
  s.payload = std::vector<uint8_t>(100, 9);
  MessageBuffer buf;
  nlmsghdr* nlh = buf.Build(s);
  const uint32_t full = nlh->nlmsg_len;
  for (uint32_t len = 0; len <= full; ++len) {
    nlh->nlmsg_len = len;
    QueuedPacket p;
    uint64_t bad = 0;
    if (ParsePacketMessage(nlh, p, bad) == ParseStatus::kPacket) {
      const auto* base = reinterpret_cast<const uint8_t*>(nlh);
      EXPECT_LE(p.payload.data() + p.payload.size(), base + len) << len;
    }
  }
}

// --- VerdictBatch ---------------------------------------------------------------------------

struct ParsedVerdict {
  uint16_t type = 0;
  uint16_t flags = 0;
  uint16_t res_id = 0;
  uint32_t verdict = 0;
  uint32_t id = 0;
  bool has_payload = false;
  std::vector<uint8_t> payload;
};

std::vector<uint8_t> Flatten(std::span<const iovec> iov) {
  std::vector<uint8_t> out;
  for (const iovec& v : iov) {
    const auto* p = static_cast<const uint8_t*>(v.iov_base);
    out.insert(out.end(), p, p + v.iov_len);
  }
  return out;
}

// Parses a flattened sendmsg buffer the way the kernel's netlink_rcv_skb() walks it.
std::vector<ParsedVerdict> ParseVerdicts(std::vector<uint8_t> bytes) {
  std::vector<uint32_t> aligned((bytes.size() + 3) / 4);
  std::memcpy(aligned.data(), bytes.data(), bytes.size());
  std::vector<ParsedVerdict> out;
  int len = static_cast<int>(bytes.size());
  for (auto* nlh = reinterpret_cast<const nlmsghdr*>(aligned.data()); mnl_nlmsg_ok(nlh, len);
       nlh = mnl_nlmsg_next(nlh, &len)) {
    ParsedVerdict v;
    v.type = nlh->nlmsg_type;
    v.flags = nlh->nlmsg_flags;
    EXPECT_EQ(nlh->nlmsg_len % 4, 0u);
    const auto* nfg = static_cast<const nfgenmsg*>(mnl_nlmsg_get_payload(nlh));
    v.res_id = ntohs(nfg->res_id);
    EXPECT_EQ(nfg->version, NFNETLINK_V0);
    std::array<const nlattr*, NFQA_MAX + 1> tb{};
    mnl_attr_parse(
        nlh, sizeof(nfgenmsg),
        [](const nlattr* a, void* data) {
          static_cast<const nlattr**>(data)[mnl_attr_get_type(a)] = a;
          return MNL_CB_OK;
        },
        tb.data());
    if (tb[NFQA_VERDICT_HDR] != nullptr) {
      EXPECT_EQ(mnl_attr_get_payload_len(tb[NFQA_VERDICT_HDR]), 8u);
      uint32_t w[2];
      std::memcpy(w, mnl_attr_get_payload(tb[NFQA_VERDICT_HDR]), 8);
      v.verdict = ntohl(w[0]);
      v.id = ntohl(w[1]);
    }
    if (tb[NFQA_PAYLOAD] != nullptr) {
      v.has_payload = true;
      const auto* p = static_cast<const uint8_t*>(mnl_attr_get_payload(tb[NFQA_PAYLOAD]));
      v.payload.assign(p, p + mnl_attr_get_payload_len(tb[NFQA_PAYLOAD]));
    }
    out.push_back(std::move(v));
  }
  EXPECT_EQ(len, 0) << "trailing bytes after the last message";
  return out;
}

std::vector<ParsedVerdict> ParseAll(VerdictBatch& b) {
  b.Finish();
  std::vector<uint8_t> all;
  for (size_t u = 0; u < b.units(); ++u) {
    auto bytes = Flatten(b.unit(u));
    all.insert(all.end(), bytes.begin(), bytes.end());
  }
  return ParseVerdicts(all);
}

TEST(VerdictBatch, PlainVerdictsAreOneContiguousBuffer) {
  VerdictBatch b(7);
  for (uint32_t id = 1; id <= 50; ++id) b.AddPlain(id, id % 5 == 0 ? NF_DROP : NF_ACCEPT);
  EXPECT_EQ(b.messages(), 50u);
  b.Finish();
  ASSERT_EQ(b.units(), 1u);
  EXPECT_EQ(b.unit(0).size(), 1u);  // merged: one iovec, one sendmsg
  const auto v = ParseVerdicts(Flatten(b.unit(0)));
  ASSERT_EQ(v.size(), 50u);
  for (uint32_t i = 0; i < 50; ++i) {
    EXPECT_EQ(v[i].type, kVerdictMsgType);
    EXPECT_EQ(v[i].flags, NLM_F_REQUEST);  // no ACK: errors still come back as NLMSG_ERROR
    EXPECT_EQ(v[i].res_id, 7);
    EXPECT_EQ(v[i].id, i + 1);
    EXPECT_EQ(v[i].verdict, (i + 1) % 5 == 0 ? uint32_t{NF_DROP} : uint32_t{NF_ACCEPT});
    EXPECT_FALSE(v[i].has_payload);
  }
}

TEST(VerdictBatch, PayloadIsHeadCopiedPlusTailReferenced) {
  std::vector<uint8_t> original(1001);  // odd length: the attribute needs padding
  std::iota(original.begin(), original.end(), uint8_t{0});
  const std::vector<uint8_t> head = {0xde, 0xad, 0xbe, 0xef, 0x01};
  VerdictBatch b(3);
  b.AddPlain(1, NF_ACCEPT);
  ASSERT_TRUE(b.AddWithPayload(2, NF_ACCEPT, head, packet::Bytes(original).subspan(40)));
  b.AddPlain(3, NF_DROP);
  b.Finish();
  ASSERT_EQ(b.units(), 1u);
  const auto iov = b.unit(0);
  // [hdr1 + hdr2 + head] [tail, referenced] [pad + hdr3]
  ASSERT_EQ(iov.size(), 3u);
  EXPECT_EQ(iov[1].iov_base, original.data() + 40);  // zero copy (pitfall 5)
  EXPECT_EQ(iov[1].iov_len, original.size() - 40);

  const auto v = ParseVerdicts(Flatten(iov));
  ASSERT_EQ(v.size(), 3u);
  EXPECT_EQ(v[0].id, 1u);
  EXPECT_FALSE(v[0].has_payload);
  EXPECT_EQ(v[1].id, 2u);
  EXPECT_EQ(v[1].verdict, uint32_t{NF_ACCEPT});
  ASSERT_TRUE(v[1].has_payload);
  std::vector<uint8_t> expect = head;
  expect.insert(expect.end(), original.begin() + 40, original.end());
  EXPECT_EQ(v[1].payload, expect);
  EXPECT_EQ(v[2].id, 3u);
  EXPECT_EQ(v[2].verdict, uint32_t{NF_DROP});
}

TEST(VerdictBatch, PatchedInPlaceReferencesWholePacket) {
  std::vector<uint8_t> pkt(64, 0x55);
  VerdictBatch b(0);
  ASSERT_TRUE(b.AddWithPayload(9, NF_ACCEPT, {}, pkt));
  const auto v = ParseAll(b);
  ASSERT_EQ(v.size(), 1u);
  EXPECT_EQ(v[0].payload, pkt);
}

TEST(VerdictBatch, PaddingBytesAreZero) {
  std::vector<uint8_t> pkt(3, 0xff);
  VerdictBatch b(0);
  ASSERT_TRUE(b.AddWithPayload(1, NF_ACCEPT, {}, pkt));
  b.Finish();
  const auto bytes = Flatten(b.unit(0));
  // header 32 + attr hdr 4 + 3 payload + 1 pad
  ASSERT_EQ(bytes.size(), 40u);
  EXPECT_EQ(bytes[39], 0);
}

TEST(VerdictBatch, OversizePayloadIsRefused) {
  std::vector<uint8_t> big(kMaxVerdictPayload);
  const std::vector<uint8_t> head(1, 0);
  VerdictBatch b(0);
  EXPECT_TRUE(b.AddWithPayload(1, NF_ACCEPT, {}, big));
  EXPECT_FALSE(b.AddWithPayload(2, NF_ACCEPT, head, big));
  EXPECT_EQ(b.messages(), 1u);
  const auto v = ParseAll(b);
  ASSERT_EQ(v.size(), 1u);
  EXPECT_EQ(v[0].payload.size(), kMaxVerdictPayload);
}

TEST(VerdictBatch, SplitsIntoUnitsAtMessageBoundariesByIovecCount) {
  std::vector<uint8_t> pkt(101, 1);
  VerdictBatch b(0, /*max_iov=*/4, /*max_bytes=*/1 << 20);
  for (uint32_t id = 0; id < 10; ++id) ASSERT_TRUE(b.AddWithPayload(id, NF_ACCEPT, {}, pkt));
  b.Finish();
  EXPECT_GT(b.units(), 1u);
  size_t total = 0;
  uint32_t next_id = 0;
  for (size_t u = 0; u < b.units(); ++u) {
    EXPECT_LE(b.unit(u).size(), 4u);
    const auto v = ParseVerdicts(Flatten(b.unit(u)));  // each unit is whole messages
    EXPECT_EQ(v.size(), b.unit_messages(u));
    for (const auto& m : v) EXPECT_EQ(m.id, next_id++);
    total += v.size();
  }
  EXPECT_EQ(total, 10u);
}

TEST(VerdictBatch, SplitsIntoUnitsByBytes) {
  std::vector<uint8_t> pkt(1000, 1);
  VerdictBatch b(0, 1024, /*max_bytes=*/2500);
  for (uint32_t id = 0; id < 7; ++id) ASSERT_TRUE(b.AddWithPayload(id, NF_ACCEPT, {}, pkt));
  b.Finish();
  EXPECT_EQ(b.units(), 4u);  // two ~1036-byte messages per unit
  for (size_t u = 0; u < b.units(); ++u) {
    EXPECT_LE(Flatten(b.unit(u)).size(), 2500u);
  }
}

TEST(VerdictBatch, ClearStartsOver) {
  VerdictBatch b(0);
  b.AddPlain(1, NF_ACCEPT);
  b.Finish();
  b.Clear();
  EXPECT_TRUE(b.empty());
  b.AddPlain(2, NF_ACCEPT);
  const auto v = ParseAll(b);
  ASSERT_EQ(v.size(), 1u);
  EXPECT_EQ(v[0].id, 2u);
}

// --- /proc/net/netfilter/nfnetlink_queue ------------------------------------------------------

TEST(ParseNfnetlinkQueueProc, KernelFormat) {
  // seq_show(): "%5u %6u %-2u %5u %5u %5u %5u %5u %2d\n" (field widths vary between kernels).
  const std::string text =
      "    0   4242 3     2 65531     0     0    17  1\n"
      "    5 123456 0     2 65531    12    34 99999  1\n";
  const auto q = ParseNfnetlinkQueueProc(text);
  ASSERT_EQ(q.size(), 2u);
  EXPECT_EQ(q[0].queue_num, 0u);
  EXPECT_EQ(q[0].peer_portid, 4242u);
  EXPECT_EQ(q[0].queue_total, 3u);
  EXPECT_EQ(q[0].copy_mode, 2u);
  EXPECT_EQ(q[0].copy_range, 65531u);
  EXPECT_EQ(q[0].id_sequence, 17u);
  EXPECT_EQ(q[1].queue_num, 5u);
  EXPECT_EQ(q[1].queue_dropped, 12u);
  EXPECT_EQ(q[1].user_dropped, 34u);
  EXPECT_EQ(q[1].id_sequence, 99999u);
}

TEST(ParseNfnetlinkQueueProc, SkipsGarbage) {
  EXPECT_TRUE(ParseNfnetlinkQueueProc("").empty());
  EXPECT_TRUE(ParseNfnetlinkQueueProc("\n\n").empty());
  EXPECT_TRUE(ParseNfnetlinkQueueProc("1 2 3").empty());                        // too few fields
  EXPECT_TRUE(ParseNfnetlinkQueueProc("a b c d e f g h 1").empty());            // not numbers
  EXPECT_TRUE(ParseNfnetlinkQueueProc("1 2 3 4 5 6 7 -8 1").empty());           // negative
  EXPECT_TRUE(ParseNfnetlinkQueueProc("1 2 3 4 5 6 7 99999999999 1").empty());  // > u32
  const auto q = ParseNfnetlinkQueueProc("junk\n1 2 3 4 5 6 7 8 1");            // no final newline
  ASSERT_EQ(q.size(), 1u);
  EXPECT_EQ(q[0].id_sequence, 8u);
}

TEST(ReadKernelQueueStats, FindsOurQueueInAFile) {
  char path[] = "/tmp/mproxy-nfq-proc-XXXXXX";
  const int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  const std::string text = "    1   10 0 2 65531 0 0 5 1\n    3   11 0 2 65531 7 8 9 1\n";
  ASSERT_EQ(write(fd, text.data(), text.size()), static_cast<ssize_t>(text.size()));
  close(fd);
  auto s = ReadKernelQueueStats(3, path);
  ASSERT_TRUE(s.ok());
  ASSERT_TRUE(s->has_value());
  EXPECT_EQ((*s)->queue_dropped, 7u);
  EXPECT_EQ((*s)->user_dropped, 8u);
  auto none = ReadKernelQueueStats(2, path);
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->has_value());
  unlink(path);
  auto missing = ReadKernelQueueStats(3, "/nonexistent/nfnetlink_queue");
  ASSERT_TRUE(missing.ok());
  EXPECT_FALSE(missing->has_value());
}

}  // namespace
}  // namespace mproxy::proxy
