#include "proxy/nfqueue.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <libmnl/libmnl.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_queue.h>
#include <linux/netlink.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cstring>

#include "packet/bytes.h"
#include "proxy/log.h"
#include "proxy/sys.h"

// The libmnl-based half of libnetfilter_queue. Its header drags in the legacy libnfnetlink API and
// its own (older) copy of the nfnetlink_queue UAPI; the kernel header above wins the include guard.
#include <libnetfilter_queue/libnetfilter_queue.h>

namespace mproxy::proxy {
namespace {

constexpr size_t Align4(size_t n) { return (n + 3) & ~size_t{3}; }

// Sizes of the fixed netlink pieces, spelled out so no libmnl/netlink macro (several contain
// C-style casts) is needed.
constexpr size_t kNlmsgHdrLen = Align4(sizeof(nlmsghdr));  // 16
constexpr size_t kNfgenHdrLen = Align4(sizeof(nfgenmsg));  // 4
constexpr size_t kAttrHdrLen = Align4(sizeof(nlattr));     // 4
constexpr size_t kVerdictAttrLen = kAttrHdrLen + 8;        // struct nfqnl_msg_verdict_hdr
constexpr size_t kVerdictHeaderLen = kNlmsgHdrLen + kNfgenHdrLen + kVerdictAttrLen;

// One received datagram never exceeds this: a packet message is its attributes (well under 1 KiB)
// plus at most NFQNL_MAX_COPY_RANGE payload bytes.
constexpr size_t kSlotBytes = 65536 + 4096;

constexpr uint16_t NfqMsgType(uint8_t msg) {
  return static_cast<uint16_t>((NFNL_SUBSYS_QUEUE << 8) | msg);
}

// Upper bound of attribute types we keep (the UAPI grows; unknown types are ignored).
constexpr int kMaxAttr = 32;

struct AttrTable {
  std::array<const nlattr*, kMaxAttr + 1> tb{};
  const uint8_t* end = nullptr;  // nlh + nlmsg_len
  uint64_t beyond_end = 0;
};

int CollectAttr(const nlattr* attr, void* data) {
  auto* t = static_cast<AttrTable*>(data);
  // libmnl bounds the walk by the *aligned* message length; an attribute reaching into the
  // padding after an unaligned nlmsg_len would read bytes that are not part of the message.
  const auto* begin = reinterpret_cast<const uint8_t*>(attr);
  if (attr->nla_len > t->end - begin) {
    ++t->beyond_end;
    return MNL_CB_OK;
  }
  const int type = mnl_attr_get_type(attr);
  if (type >= 0 && type <= kMaxAttr) t->tb[type] = attr;
  return MNL_CB_OK;
}

packet::Bytes AttrBytes(const nlattr* attr) {
  return {static_cast<const uint8_t*>(mnl_attr_get_payload(attr)), mnl_attr_get_payload_len(attr)};
}

// A __be32 attribute; wrong length → nullopt (counted by the caller).
std::optional<uint32_t> AttrBe32(const nlattr* attr) {
  if (attr == nullptr) return std::nullopt;
  packet::ByteReader r(AttrBytes(attr));
  auto v = r.U32();
  if (!v || !r.empty()) return std::nullopt;
  return v;
}

Result<void> SetIntOpt(int fd, int level, int name, int value, const char* what) {
  if (setsockopt(fd, level, name, &value, sizeof(value)) < 0) return SysError(what);
  return {};
}

// Sets a socket buffer, forcing past the sysctl limit when we have CAP_NET_ADMIN; returns what the
// kernel granted (it reports double the requested size, the doubling covering its overhead).
int SetBuffer(int fd, int force_opt, int opt, int bytes) {
  if (setsockopt(fd, SOL_SOCKET, force_opt, &bytes, sizeof(bytes)) < 0) {
    (void)setsockopt(fd, SOL_SOCKET, opt, &bytes, sizeof(bytes));
  }
  int granted = 0;
  socklen_t len = sizeof(granted);
  if (getsockopt(fd, SOL_SOCKET, opt, &granted, &len) < 0) return 0;
  return granted;
}

const uint8_t kZeroPad[4] = {0, 0, 0, 0};

}  // namespace

// ---------------------------------------------------------------------------------------------
// ParsePacketMessage

ParseStatus ParsePacketMessage(const nlmsghdr* nlh, QueuedPacket& out, uint64_t& bad_attributes) {
  out = QueuedPacket{};
  if (nlh->nlmsg_len < kNlmsgHdrLen + kNfgenHdrLen) return ParseStatus::kMalformed;
  // Our own attribute walk instead of nfq_nlmsg_parse(): that one fails the whole message on one
  // attribute of unexpected length, and a message we cannot verdict leaves its packet stuck in the
  // kernel queue until the queue is unbound. Here such attributes are ignored and counted.
  AttrTable table;
  table.end = reinterpret_cast<const uint8_t*>(nlh) + nlh->nlmsg_len;
  if (mnl_attr_parse(nlh, sizeof(nfgenmsg), CollectAttr, &table) < 0) {
    return ParseStatus::kMalformed;
  }
  bad_attributes += table.beyond_end;
  const auto& tb = table.tb;

  // struct nfqnl_msg_packet_hdr: __be32 packet_id, __be16 hw_protocol, __u8 hook (packed).
  if (tb[NFQA_PACKET_HDR] == nullptr) return ParseStatus::kMalformed;
  packet::ByteReader hdr(AttrBytes(tb[NFQA_PACKET_HDR]));
  const auto id = hdr.U32();
  const auto proto = hdr.U16();
  const auto hook = hdr.U8();
  if (!hdr.ok()) return ParseStatus::kMalformed;
  out.id = *id;
  out.hw_protocol = *proto;
  out.meta.hook = static_cast<packet::Hook>(*hook);

  auto u32 = [&](int type, uint32_t& field) {
    if (tb[type] == nullptr) return false;
    const auto v = AttrBe32(tb[type]);
    if (!v) {
      ++bad_attributes;
      return false;
    }
    field = *v;
    return true;
  };
  u32(NFQA_MARK, out.meta.mark);
  u32(NFQA_IFINDEX_INDEV, out.meta.ifindex_in);
  u32(NFQA_IFINDEX_OUTDEV, out.meta.ifindex_out);
  uint32_t skb_info = 0;
  if (u32(NFQA_SKB_INFO, skb_info)) {
    // Pitfall 1: a CHECKSUM_PARTIAL packet carries only the pseudo-header sum in its TCP checksum
    // field; the engine must then compute a full checksum after rewriting.
    out.meta.csum_not_ready = (skb_info & NFQA_SKB_CSUMNOTREADY) != 0;
    out.meta.gso = (skb_info & NFQA_SKB_GSO) != 0;
  }

  if (tb[NFQA_PAYLOAD] != nullptr) {
    out.has_payload = true;
    out.payload = {static_cast<uint8_t*>(mnl_attr_get_payload(tb[NFQA_PAYLOAD])),
                   mnl_attr_get_payload_len(tb[NFQA_PAYLOAD])};
  }
  out.cap_len = static_cast<uint32_t>(out.payload.size());
  uint32_t cap_len = 0;
  // Pitfall 3: the kernel adds NFQA_CAP_LEN (the real length) when it copied less than the whole
  // packet (GSO super-packets beyond 65,531 bytes, copy range).
  if (u32(NFQA_CAP_LEN, cap_len) && cap_len != out.payload.size()) {
    out.truncated = true;
    out.cap_len = cap_len;
  }
  return ParseStatus::kPacket;
}

// ---------------------------------------------------------------------------------------------
// VerdictBatch

VerdictBatch::VerdictBatch(uint16_t queue_num, size_t max_iov, size_t max_bytes)
    : queue_num_(queue_num), max_iov_(std::max<size_t>(max_iov, 4)), max_bytes_(max_bytes) {}

void VerdictBatch::Clear() {
  messages_ = 0;
  scratch_.clear();
  pieces_.clear();
  unit_piece_begin_.clear();
  unit_messages_.clear();
  unit_pieces_ = unit_bytes_ = 0;
  iov_.clear();
  unit_iov_begin_.clear();
}

void VerdictBatch::ReserveUnit(size_t pieces, size_t bytes) {
  if (unit_piece_begin_.empty() || unit_pieces_ + pieces > max_iov_ ||
      unit_bytes_ + bytes > max_bytes_) {
    unit_piece_begin_.push_back(pieces_.size());
    unit_messages_.push_back(0);
    unit_pieces_ = unit_bytes_ = 0;
  }
  unit_pieces_ += pieces;
  unit_bytes_ += bytes;
  ++unit_messages_.back();
  ++messages_;
}

size_t VerdictBatch::PutHeader(uint32_t id, uint32_t nf_verdict,
                               std::optional<size_t> payload_len) {
  // Built in an aligned local buffer and then appended: inside scratch_ a header may start at any
  // offset (a copied head block can have any length), and nlmsghdr/nlattr stores need alignment.
  alignas(nlmsghdr) std::array<uint8_t, kVerdictHeaderLen + kAttrHdrLen> tmp{};
  nlmsghdr* nlh = nfq_nlmsg_put(reinterpret_cast<char*>(tmp.data()), NFQNL_MSG_VERDICT, queue_num_);
  nlh->nlmsg_seq = ++seq_;
  nfq_nlmsg_verdict_put(nlh, static_cast<int>(id), static_cast<int>(nf_verdict));
  size_t len = kVerdictHeaderLen;
  if (payload_len) {
    // The NFQA_PAYLOAD header only; its data follows in the next pieces. nlmsg_len counts the
    // whole attribute including its padding, as mnl_attr_put() would.
    const size_t attr_len = kAttrHdrLen + *payload_len;
    auto* attr = static_cast<nlattr*>(mnl_nlmsg_get_payload_tail(nlh));
    attr->nla_type = NFQA_PAYLOAD;
    attr->nla_len = static_cast<uint16_t>(attr_len);
    nlh->nlmsg_len = static_cast<uint32_t>(kVerdictHeaderLen + Align4(attr_len));
    len += kAttrHdrLen;
  }
  const size_t off = scratch_.size();
  scratch_.insert(scratch_.end(), tmp.begin(), tmp.begin() + static_cast<std::ptrdiff_t>(len));
  return off;
}

void VerdictBatch::AddPlain(uint32_t id, uint32_t nf_verdict) {
  ReserveUnit(1, kVerdictHeaderLen);
  const size_t off = PutHeader(id, nf_verdict, std::nullopt);
  pieces_.push_back({nullptr, off, kVerdictHeaderLen});
}

bool VerdictBatch::AddWithPayload(uint32_t id, uint32_t nf_verdict, packet::Bytes copied,
                                  packet::Bytes referenced) {
  const size_t payload_len = copied.size() + referenced.size();
  if (payload_len > kMaxVerdictPayload) return false;
  const size_t attr_len = kAttrHdrLen + payload_len;
  const size_t pad = Align4(attr_len) - attr_len;
  ReserveUnit(3, kVerdictHeaderLen + Align4(attr_len));

  // Header block: nlmsghdr, nfgenmsg, NFQA_VERDICT_HDR, the NFQA_PAYLOAD attribute header and the
  // copied bytes, contiguous in scratch_.
  const size_t off = PutHeader(id, nf_verdict, payload_len);
  scratch_.insert(scratch_.end(), copied.begin(), copied.end());
  pieces_.push_back({nullptr, off, kVerdictHeaderLen + kAttrHdrLen + copied.size()});
  if (!referenced.empty()) pieces_.push_back({referenced.data(), 0, referenced.size()});
  if (pad != 0) {
    // The padding goes to scratch_ so it merges with the next message's header into one iovec.
    const size_t pad_off = scratch_.size();
    scratch_.insert(scratch_.end(), kZeroPad, kZeroPad + pad);
    pieces_.push_back({nullptr, pad_off, pad});
  }
  return true;
}

void VerdictBatch::Finish() {
  iov_.clear();
  unit_iov_begin_.clear();
  for (size_t u = 0; u < unit_piece_begin_.size(); ++u) {
    const size_t begin = unit_piece_begin_[u];
    const size_t end = u + 1 < unit_piece_begin_.size() ? unit_piece_begin_[u + 1] : pieces_.size();
    unit_iov_begin_.push_back(iov_.size());
    bool last_scratch = false;
    size_t last_scratch_end = 0;
    for (size_t i = begin; i < end; ++i) {
      const Piece& p = pieces_[i];
      if (p.external == nullptr) {
        if (last_scratch && last_scratch_end == p.offset) {
          iov_.back().iov_len += p.len;
        } else {
          iov_.push_back({scratch_.data() + p.offset, p.len});
        }
        last_scratch = true;
        last_scratch_end = p.offset + p.len;
      } else {
        // iovec is not const-correct; the kernel only reads from it in sendmsg().
        iov_.push_back({const_cast<uint8_t*>(p.external), p.len});
        last_scratch = false;
      }
    }
  }
}

std::span<const iovec> VerdictBatch::unit(size_t i) const {
  const size_t begin = unit_iov_begin_[i];
  const size_t end = i + 1 < unit_iov_begin_.size() ? unit_iov_begin_[i + 1] : iov_.size();
  return std::span<const iovec>(iov_).subspan(begin, end - begin);
}

// ---------------------------------------------------------------------------------------------
// /proc/net/netfilter/nfnetlink_queue

std::vector<KernelQueueStats> ParseNfnetlinkQueueProc(std::string_view text) {
  // Kernel seq_show(): queue_num peer_portid queue_total copy_mode copy_range queue_dropped
  // queue_user_dropped id_sequence 1 — whitespace separated, one queue per line.
  std::vector<KernelQueueStats> out;
  while (!text.empty()) {
    const size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view{} : text.substr(nl + 1);

    std::array<uint32_t, 8> f{};
    size_t n = 0;
    const char* p = line.data();
    const char* end = line.data() + line.size();
    bool bad = false;
    while (n < f.size()) {
      while (p < end && (*p == ' ' || *p == '\t')) ++p;
      if (p == end) break;
      auto [next, ec] = std::from_chars(p, end, f[n]);
      if (ec != std::errc{} || (next < end && *next != ' ' && *next != '\t')) {
        bad = true;
        break;
      }
      p = next;
      ++n;
    }
    if (bad || n < f.size()) continue;
    out.push_back({f[0], f[1], f[2], f[3], f[4], f[5], f[6], f[7]});
  }
  return out;
}

Result<std::optional<KernelQueueStats>> ReadKernelQueueStats(uint16_t queue_num,
                                                             const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) {
    // The file exists only once nfnetlink_queue is loaded; absent means no queue at all.
    if (errno == ENOENT) return std::optional<KernelQueueStats>{};
    return SysError("opening " + path);
  }
  std::string text;
  std::array<char, 4096> buf;
  for (;;) {
    const ssize_t n = ::read(fd.get(), buf.data(), buf.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return SysError("reading " + path);
    if (n == 0) break;
    text.append(buf.data(), static_cast<size_t>(n));
    if (text.size() > (1 << 20)) break;  // one line per queue; 64k queues fit easily
  }
  for (const auto& s : ParseNfnetlinkQueueProc(text)) {
    if (s.queue_num == queue_num) return std::optional<KernelQueueStats>(s);
  }
  return std::optional<KernelQueueStats>{};
}

void VisitKernelQueueStats(const KernelQueueStats& s, const CounterVisitor& visit) {
  visit("queue_num", s.queue_num);
  visit("peer_portid", s.peer_portid);
  visit("queue_total", s.queue_total);
  visit("copy_mode", s.copy_mode);
  visit("copy_range", s.copy_range);
  visit("queue_dropped", s.queue_dropped);
  visit("user_dropped", s.user_dropped);
  visit("id_sequence", s.id_sequence);
}

// ---------------------------------------------------------------------------------------------
// NfqueueSource

NfqueueSource::NfqueueSource(const NfqueueOptions& options)
    : options_(options), verdicts_(options.queue_num) {
  if (options_.max_batch == 0) options_.max_batch = 1;
}

NfqueueSource::~NfqueueSource() {
  if (nl_ == nullptr) return;
  // Closing the socket unbinds the queue; the kernel drops whatever is still queued for us (the
  // daemon drains the queue after removing its rules, before it gets here).
  mnl_socket_close(nl_);
}

int NfqueueSource::fd() const { return mnl_socket_get_fd(nl_); }

Result<std::unique_ptr<NfqueueSource>> NfqueueSource::Open(const NfqueueOptions& options) {
  std::unique_ptr<NfqueueSource> src(new NfqueueSource(options));
  if (auto r = src->Setup(); !r) return r.error();
  return src;
}

Result<void> NfqueueSource::Setup() {
  const std::string qname = "NFQUEUE " + std::to_string(options_.queue_num);
  nl_ = mnl_socket_open2(NETLINK_NETFILTER, SOCK_CLOEXEC);
  if (nl_ == nullptr) {
    return SysError("opening a NETLINK_NETFILTER socket (is nfnetlink available?)");
  }
  if (mnl_socket_bind(nl_, 0, MNL_SOCKET_AUTOPID) < 0) return SysError("binding netlink socket");
  const int fd = mnl_socket_get_fd(nl_);

  // Pitfall 4: without NETLINK_NO_ENOBUFS an overrun turns into a recv() error; with it the kernel
  // just drops (visible as user_dropped in /proc), which we export instead.
  if (auto r = SetIntOpt(fd, SOL_NETLINK, NETLINK_NO_ENOBUFS, 1, "NETLINK_NO_ENOBUFS"); !r) {
    MPROXY_LOG(kWarn) << r.error().message << " (ENOBUFS will be counted)";
  }
  // Error reports for rejected verdicts then carry only the header, not a 64 KiB payload echo.
  if (auto r = SetIntOpt(fd, SOL_NETLINK, NETLINK_CAP_ACK, 1, "NETLINK_CAP_ACK"); !r) {
    MPROXY_LOG(kDebug) << r.error().message;
  }
  rcvbuf_granted_ = SetBuffer(fd, SO_RCVBUFFORCE, SO_RCVBUF, options_.rcvbuf_bytes);
  if (rcvbuf_granted_ < options_.rcvbuf_bytes) {
    MPROXY_LOG(kWarn) << "netlink receive buffer is only " << rcvbuf_granted_ << " bytes (asked "
                      << options_.rcvbuf_bytes << "); bursts will be dropped (pitfall 4)";
  }
  sndbuf_granted_ = SetBuffer(fd, SO_SNDBUFFORCE, SO_SNDBUF, options_.sndbuf_bytes);
  // netlink_sendmsg() rejects len > sk_sndbuf - 32 with EMSGSIZE; keep units well inside.
  const size_t unit_bytes =
      std::clamp<size_t>(static_cast<size_t>(std::max(sndbuf_granted_, 0)) / 2, 128 << 10, 1 << 20);
  verdicts_ = VerdictBatch(options_.queue_num, 1024, unit_bytes);

  slots_.resize(options_.max_batch * kSlotBytes);
  slot_iov_.resize(options_.max_batch);
  mmsg_.resize(options_.max_batch);
  for (size_t i = 0; i < options_.max_batch; ++i) {
    slot_iov_[i] = {slots_.data() + i * kSlotBytes, kSlotBytes};
    mmsg_[i] = {};
    mmsg_[i].msg_hdr.msg_iov = &slot_iov_[i];
    mmsg_[i].msg_hdr.msg_iovlen = 1;
  }
  batch_.reserve(options_.max_batch);

  alignas(nlmsghdr) std::array<uint8_t, 256> buf{};
  {
    nlmsghdr* nlh =
        nfq_nlmsg_put(reinterpret_cast<char*>(buf.data()), NFQNL_MSG_CONFIG, options_.queue_num);
    nfq_nlmsg_cfg_put_cmd(nlh, AF_INET, NFQNL_CFG_CMD_BIND);
    if (auto r = SendConfig({buf.data(), nlh->nlmsg_len}, "binding"); !r) {
      Error e = r.error();
      // The kernel answers EPERM both without CAP_NET_ADMIN and when another socket owns the
      // queue (nfqnl_recv_config: peer_portid mismatch); /proc tells the two apart.
      auto st = ReadKernelQueueStats(options_.queue_num);
      const bool taken = st && st->has_value() && (*st)->peer_portid != mnl_socket_get_portid(nl_);
      if (taken || e.code == EBUSY) {
        e.message = "binding " + qname + ": the queue is already bound by another process";
        if (taken) {
          e.message +=
              " (netlink port id " + std::to_string((*st)->peer_portid) + ", usually its pid)";
        }
        e.message += "; choose another --queue-num or stop the other daemon";
        e.code = EBUSY;
      } else if (e.code == EPERM) {
        e.message =
            "binding " + qname + ": operation not permitted (mproxyd needs root or CAP_NET_ADMIN)";
      }
      return e;
    }
  }
  {
    buf.fill(0);
    nlmsghdr* nlh =
        nfq_nlmsg_put(reinterpret_cast<char*>(buf.data()), NFQNL_MSG_CONFIG, options_.queue_num);
    // 0xffff: the kernel clamps the copy range to NFQNL_MAX_COPY_RANGE (65,531); larger packets
    // arrive truncated and are caught by the NFQA_CAP_LEN check (pitfall 3).
    nfq_nlmsg_cfg_put_params(nlh, NFQNL_COPY_PACKET, 0xffff);
    nfq_nlmsg_cfg_put_qmaxlen(nlh, options_.queue_maxlen);
    uint32_t flags = 0;
    if (options_.gso) flags |= NFQA_CFG_F_GSO;
    if (options_.fail_open) flags |= NFQA_CFG_F_FAIL_OPEN;
    // The mask names both flags, so "off" is set explicitly too.
    mnl_attr_put_u32(nlh, NFQA_CFG_FLAGS, htonl(flags));
    mnl_attr_put_u32(nlh, NFQA_CFG_MASK, htonl(NFQA_CFG_F_GSO | NFQA_CFG_F_FAIL_OPEN));
    if (auto r = SendConfig({buf.data(), nlh->nlmsg_len}, "configuring"); !r) {
      Error e = r.error();
      e.message = "configuring " + qname + " (copy mode, queue length " +
                  std::to_string(options_.queue_maxlen) + ", GSO/fail-open flags): " + e.message;
      return e;
    }
  }
  const int fl = fcntl(fd, F_GETFL);
  if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) return SysError("O_NONBLOCK on netlink");
  // Packets that raced the configuration (stale rules pointing at this queue) were answered with a
  // plain accept in SendConfig(): the daemon has no flow state yet, so nothing can be translated.
  if (!verdicts_.empty()) (void)FlushVerdicts();
  return {};
}

// Sends one config message with NLM_F_ACK and waits for the kernel's answer. The kernel processes
// a netlink message synchronously inside sendmsg(), so the ack is already queued when it returns.
Result<void> NfqueueSource::SendConfig(std::span<uint8_t> msg, const char* what) {
  auto* nlh = reinterpret_cast<nlmsghdr*>(msg.data());
  nlh->nlmsg_flags |= NLM_F_ACK;
  nlh->nlmsg_seq = ++config_seq_;
  if (mnl_socket_sendto(nl_, msg.data(), msg.size()) < 0) {
    return SysError(std::string(what) + " NFQUEUE " + std::to_string(options_.queue_num));
  }
  const int fd = mnl_socket_get_fd(nl_);
  uint8_t* buf = slots_.data();  // slot 0; no batch is in flight during setup
  for (int tries = 0; tries < 1024; ++tries) {
    const ssize_t n = recv(fd, buf, kSlotBytes, MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EINTR || errno == ENOBUFS) continue;
      if (errno == EAGAIN) return MakeError("no acknowledgement from the kernel", ETIMEDOUT);
      return SysError("receiving the kernel's acknowledgement");
    }
    int len = static_cast<int>(n);
    for (auto* m = reinterpret_cast<const nlmsghdr*>(buf); mnl_nlmsg_ok(m, len);
         m = mnl_nlmsg_next(m, &len)) {
      if (m->nlmsg_type == NLMSG_ERROR && m->nlmsg_seq == config_seq_) {
        packet::ByteReader r(
            {static_cast<const uint8_t*>(mnl_nlmsg_get_payload(m)), m->nlmsg_len - kNlmsgHdrLen});
        auto bytes = r.Take(sizeof(int));
        if (!bytes) return MakeError("short netlink acknowledgement", EPROTO);
        int err = 0;
        std::memcpy(&err, bytes->data(), sizeof(err));  // host-order int (struct nlmsgerr)
        if (err == 0) return {};
        return SysError(std::string(what) + " NFQUEUE " + std::to_string(options_.queue_num), -err);
      }
      if (m->nlmsg_type == NfqMsgType(NFQNL_MSG_PACKET)) {
        QueuedPacket p;
        uint64_t bad = 0;
        if (ParsePacketMessage(m, p, bad) == ParseStatus::kPacket) {
          verdicts_.AddPlain(p.id, NF_ACCEPT);
          counters_.Inc(NfqCounter::kSetupAccepted);
        }
      }
    }
  }
  return MakeError("no acknowledgement from the kernel", ETIMEDOUT);
}

void NfqueueSource::HandleError(const nlmsghdr* nlh) {
  // struct nlmsgerr: int error, then the offending message's header. error == 0 is an ack, which we
  // never ask for on verdicts.
  packet::ByteReader r(
      {static_cast<const uint8_t*>(mnl_nlmsg_get_payload(nlh)), nlh->nlmsg_len - kNlmsgHdrLen});
  auto bytes = r.Take(sizeof(int));
  if (!bytes) {
    counters_.Inc(NfqCounter::kUnknownMessage);
    return;
  }
  int err = 0;
  std::memcpy(&err, bytes->data(), sizeof(err));
  if (err == 0) return;
  counters_.Inc(NfqCounter::kVerdictRejected);
  static RateLimited limit(std::chrono::seconds(1));
  if (limit.Allow()) {
    MPROXY_LOG(kWarn) << "kernel rejected a verdict: " << std::strerror(-err);
  }
}

void NfqueueSource::HandleDatagram(uint8_t* data, size_t len) {
  // A hand-written walk rather than mnl_cb_run(): that stops at the first NLMSG_ERROR and would
  // drop the packet messages after it in the same buffer.
  int left = static_cast<int>(len);
  for (auto* nlh = reinterpret_cast<const nlmsghdr*>(data); mnl_nlmsg_ok(nlh, left);
       nlh = mnl_nlmsg_next(nlh, &left)) {
    if (nlh->nlmsg_type == NfqMsgType(NFQNL_MSG_PACKET)) {
      QueuedPacket& p = batch_.emplace_back();
      uint64_t bad = 0;
      const ParseStatus st = ParsePacketMessage(nlh, p, bad);
      counters_.Inc(NfqCounter::kBadAttribute, bad);
      if (st != ParseStatus::kPacket) {
        batch_.pop_back();
        counters_.Inc(NfqCounter::kMalformed);
        continue;
      }
      counters_.Inc(NfqCounter::kReceived);
      if (p.truncated) counters_.Inc(NfqCounter::kTruncated);
      if (!p.has_payload) counters_.Inc(NfqCounter::kNoPayload);
    } else if (nlh->nlmsg_type == NLMSG_ERROR) {
      HandleError(nlh);
    } else if (nlh->nlmsg_type != NLMSG_NOOP && nlh->nlmsg_type != NLMSG_DONE) {
      counters_.Inc(NfqCounter::kUnknownMessage);
    }
  }
}

Result<std::span<QueuedPacket>> NfqueueSource::ReceiveBatch() {
  // The previous batch's payloads may still be referenced by unsent verdicts.
  if (!verdicts_.empty()) (void)FlushVerdicts();
  batch_.clear();
  const int fd = mnl_socket_get_fd(nl_);
  int n = -1;
  for (int attempt = 0; attempt < 3; ++attempt) {
    for (auto& m : mmsg_) m.msg_hdr.msg_flags = 0;
    // One syscall for up to max_batch datagrams (pitfall 5); nfnetlink_queue sends each packet as
    // its own datagram.
    n = recvmmsg(fd, mmsg_.data(), static_cast<unsigned>(mmsg_.size()), MSG_DONTWAIT, nullptr);
    if (n >= 0) break;
    if (errno == EAGAIN) return std::span<QueuedPacket>{};
    if (errno == EINTR) continue;
    if (errno == ENOBUFS) {
      // The kernel dropped messages for us (only reported without NETLINK_NO_ENOBUFS); the socket
      // keeps working, so count it and read on (pitfall 4).
      counters_.Inc(NfqCounter::kEnobufs);
      continue;
    }
    counters_.Inc(NfqCounter::kRecvErrors);
    return SysError("receiving from NFQUEUE");
  }
  if (n < 0) return std::span<QueuedPacket>{};
  counters_.Inc(NfqCounter::kDatagrams, static_cast<uint64_t>(n));
  for (int i = 0; i < n; ++i) {
    const auto& m = mmsg_[static_cast<size_t>(i)];
    if ((m.msg_hdr.msg_flags & MSG_TRUNC) != 0) {
      counters_.Inc(NfqCounter::kMessageTruncated);
      continue;
    }
    HandleDatagram(slots_.data() + static_cast<size_t>(i) * kSlotBytes, m.msg_len);
  }
  if (!batch_.empty()) {
    counters_.Inc(NfqCounter::kBatches);
    max_batch_seen_ = std::max<uint64_t>(max_batch_seen_, batch_.size());
  }
  return std::span<QueuedPacket>(batch_);
}

void NfqueueSource::SetVerdict(const QueuedPacket& pkt, const packet::PacketOut& out) {
  if (out.verdict == packet::Verdict::kDrop) {
    verdicts_.AddPlain(pkt.id, NF_DROP);
    counters_.Inc(NfqCounter::kVerdictDrop);
    return;
  }
  if (!out.rewritten && !out.patched_in_place) {
    verdicts_.AddPlain(pkt.id, NF_ACCEPT);
    counters_.Inc(NfqCounter::kVerdictAccept);
    return;
  }
  if (pkt.truncated || !pkt.has_payload) {
    // Pitfall 3: returning bytes for a truncated copy would cut the packet to the copy.
    verdicts_.AddPlain(pkt.id, NF_ACCEPT);
    counters_.Inc(NfqCounter::kTruncatedForcedPlain);
    counters_.Inc(NfqCounter::kVerdictAccept);
    return;
  }
  packet::Bytes copied;
  packet::Bytes referenced;
  if (out.rewritten) {
    if (out.head_len > out.head.size() || out.tail_offset > pkt.payload.size()) {
      // An engine bug. Passing the original is not safe for a flow whose numbers are rewritten
      // (pitfall 8), so drop; TCP retransmits.
      verdicts_.AddPlain(pkt.id, NF_DROP);
      counters_.Inc(NfqCounter::kInvalidRewrite);
      counters_.Inc(NfqCounter::kVerdictDrop);
      return;
    }
    copied = packet::Bytes(out.head.data(), out.head_len);
    referenced = packet::Bytes(pkt.payload).subspan(out.tail_offset);
  } else {
    referenced = pkt.payload;
  }
  if (!verdicts_.AddWithPayload(pkt.id, NF_ACCEPT, copied, referenced)) {
    verdicts_.AddPlain(pkt.id, NF_DROP);
    counters_.Inc(NfqCounter::kOversizeDropped);
    counters_.Inc(NfqCounter::kVerdictDrop);
    return;
  }
  counters_.Inc(NfqCounter::kVerdictModified);
}

Result<void> NfqueueSource::FlushVerdicts() {
  if (verdicts_.empty()) return {};
  verdicts_.Finish();
  const int fd = mnl_socket_get_fd(nl_);
  sockaddr_nl kernel{};
  kernel.nl_family = AF_NETLINK;
  Result<void> result;
  for (size_t u = 0; u < verdicts_.units(); ++u) {
    const auto iov = verdicts_.unit(u);
    msghdr msg{};
    msg.msg_name = &kernel;
    msg.msg_namelen = sizeof(kernel);
    msg.msg_iov = const_cast<iovec*>(iov.data());
    msg.msg_iovlen = iov.size();
    ssize_t rc;
    do {
      rc = sendmsg(fd, &msg, 0);
    } while (rc < 0 && errno == EINTR);
    counters_.Inc(NfqCounter::kSendmsgCalls);
    if (rc < 0) {
      counters_.Inc(NfqCounter::kSendErrors);
      counters_.Inc(NfqCounter::kSendErrorVerdicts, verdicts_.unit_messages(u));
      if (result.ok()) result = SysError("sending NFQUEUE verdicts");
    }
  }
  verdicts_.Clear();
  return result;
}

void NfqueueSource::ForEachCounter(const CounterVisitor& visit) const {
  counters_.ForEach(visit);
  visit("NfqMaxBatch", max_batch_seen_);
  visit("NfqRcvbufBytes", static_cast<uint64_t>(std::max(rcvbuf_granted_, 0)));
}

}  // namespace mproxy::proxy
