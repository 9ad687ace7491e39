// delayline: a one-way delay for the namespaced testbed, because this kernel has no netem.
//
// Bound to an NFQUEUE number inside a namespace (tests/testbed/testbed.sh tb_delay installs
// `iptables -t mangle -A POSTROUTING -o IF -j NFQUEUE --queue-num K` after this prints "ready"),
// it holds every packet for a fixed time and then accepts it. The kernel keeps the packets; we
// only see metadata:
//   - NFQNL_COPY_META: no packet bytes cross to user space, so GSO super-packets of 64 KB cost the
//     same as a pure ACK; NFQA_CFG_F_GSO keeps them unsegmented (architecture.md, pitfall 1).
//   - Order is preserved and verdicts are batched for free: every packet gets the same delay, so
//     the packets due at any instant are exactly a prefix of the kernel's queue, and one
//     NFQNL_MSG_VERDICT_BATCH (accept every id up to N, wrap-safe in the kernel) releases them all.
//   - Large receive buffer + NETLINK_NO_ENOBUFS and a long queue (pitfall 4): at 10 Gbit/s a 30 ms
//     line holds ~37 MB in flight, a few hundred GSO packets or thousands of MTU packets.
// On SIGTERM/SIGINT every held packet is released before exit, so removing a delay never drops.
//
// Self-contained on purpose (libmnl + libnetfilter_queue only) rather than built on
// proxy/nfqueue.h: that source copies packet bytes (the rewriter needs them) and answers per
// packet, and the testbed must keep building while the daemon's modules change.
#include <arpa/inet.h>
#include <libmnl/libmnl.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nfnetlink_queue.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <deque>
#include <string>
#include <vector>

// After the kernel UAPI header (libnetfilter_queue ships an older copy of it).
#include <libnetfilter_queue/libnetfilter_queue.h>

namespace {

volatile sig_atomic_t g_stop = 0;
void OnSignal(int) { g_stop = 1; }

int64_t NowNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1000000000 + ts.tv_nsec;
}

struct Held {
  uint32_t id;
  int64_t due_ns;
};

struct Stats {
  uint64_t received = 0, released = 0, verdict_msgs = 0, max_held = 0, enobufs = 0, errors = 0;
};

class DelayLine {
 public:
  DelayLine(uint16_t queue, int64_t delay_ns) : queue_(queue), delay_ns_(delay_ns) {}
  ~DelayLine() {
    if (nl_ != nullptr) mnl_socket_close(nl_);
  }

  bool Open(uint32_t maxlen, int rcvbuf) {
    nl_ = mnl_socket_open(NETLINK_NETFILTER);
    if (nl_ == nullptr || mnl_socket_bind(nl_, 0, MNL_SOCKET_AUTOPID) < 0) {
      std::perror("delayline: netlink socket");
      return false;
    }
    portid_ = mnl_socket_get_portid(nl_);
    int fd = mnl_socket_get_fd(nl_);
    // FORCE needs CAP_NET_ADMIN (we have it: NFQUEUE needs it too); plain SO_RCVBUF is capped.
    if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof rcvbuf) != 0) {
      setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    }
    int one = 1;
    mnl_socket_setsockopt(nl_, NETLINK_NO_ENOBUFS, &one, sizeof one);

    char buf[MNL_SOCKET_BUFFER_SIZE];
    nlmsghdr* nlh = nfq_nlmsg_put(buf, NFQNL_MSG_CONFIG, queue_);
    nfq_nlmsg_cfg_put_cmd(nlh, AF_UNSPEC, NFQNL_CFG_CMD_BIND);
    if (!SendConfig(nlh, "bind queue")) return false;
    nlh = nfq_nlmsg_put(buf, NFQNL_MSG_CONFIG, queue_);
    nfq_nlmsg_cfg_put_params(nlh, NFQNL_COPY_META, 0);
    nfq_nlmsg_cfg_put_qmaxlen(nlh, maxlen);
    mnl_attr_put_u32(nlh, NFQA_CFG_FLAGS, htonl(NFQA_CFG_F_GSO));
    mnl_attr_put_u32(nlh, NFQA_CFG_MASK, htonl(NFQA_CFG_F_GSO));
    return SendConfig(nlh, "configure queue");
  }

  // Returns false on a fatal error.
  bool Run() {
    int fd = mnl_socket_get_fd(nl_);
    sigset_t empty;
    sigemptyset(&empty);
    std::vector<char> buf(1 << 16);
    while (!g_stop) {
      timespec ts{}, *tsp = nullptr;
      if (!held_.empty()) {
        int64_t wait = std::max<int64_t>(0, held_.front().due_ns - NowNs());
        ts = {static_cast<time_t>(wait / 1000000000), static_cast<long>(wait % 1000000000)};
        tsp = &ts;
      }
      pollfd p{fd, POLLIN, 0};
      int r = ppoll(&p, 1, tsp, &empty);  // signals are blocked except while we wait here
      if (r < 0 && errno != EINTR) {
        std::perror("delayline: ppoll");
        return false;
      }
      if (r > 0) {
        // Drain what is there now; bounded so releases are not starved under load.
        for (int i = 0; i < 256; ++i) {
          ssize_t n = recv(fd, buf.data(), buf.size(), MSG_DONTWAIT);
          if (n < 0) {
            if (errno == EAGAIN || errno == EINTR) break;
            if (errno == ENOBUFS) {
              ++stats_.enobufs;
              continue;
            }
            std::perror("delayline: recv");
            return false;
          }
          const int64_t due = NowNs() + delay_ns_;
          due_for_batch_ = due;
          mnl_cb_run(buf.data(), static_cast<size_t>(n), 0, portid_, &DelayLine::OnMessage, this);
        }
      }
      // 20 us of slack: one wake-up releases packets that are due within a scheduler tick anyway.
      Release(NowNs() + 20000);
    }
    Release(INT64_MAX);
    return true;
  }

  const Stats& stats() const { return stats_; }

 private:
  bool SendConfig(nlmsghdr* nlh, const char* what) {
    nlh->nlmsg_flags |= NLM_F_ACK;
    nlh->nlmsg_seq = ++seq_;
    if (mnl_socket_sendto(nl_, nlh, nlh->nlmsg_len) < 0) {
      std::fprintf(stderr, "delayline: %s: %s\n", what, std::strerror(errno));
      return false;
    }
    char buf[MNL_SOCKET_BUFFER_SIZE];
    ssize_t n = mnl_socket_recvfrom(nl_, buf, sizeof buf);
    if (n < 0 || mnl_cb_run(buf, static_cast<size_t>(n), seq_, portid_, nullptr, nullptr) < 0) {
      std::fprintf(stderr, "delayline: %s (queue %u): %s\n", what, queue_, std::strerror(errno));
      return false;
    }
    return true;
  }

  static int OnMessage(const nlmsghdr* nlh, void* data) {
    auto* self = static_cast<DelayLine*>(data);
    if (NFNL_MSG_TYPE(nlh->nlmsg_type) != NFQNL_MSG_PACKET) return MNL_CB_OK;
    nlattr* attr[NFQA_MAX + 1] = {};
    if (nfq_nlmsg_parse(nlh, attr) < 0 || attr[NFQA_PACKET_HDR] == nullptr ||
        mnl_attr_get_payload_len(attr[NFQA_PACKET_HDR]) < sizeof(nfqnl_msg_packet_hdr)) {
      ++self->stats_.errors;
      return MNL_CB_OK;
    }
    nfqnl_msg_packet_hdr ph;
    std::memcpy(&ph, mnl_attr_get_payload(attr[NFQA_PACKET_HDR]), sizeof ph);
    self->held_.push_back({ntohl(ph.packet_id), self->due_for_batch_});
    ++self->stats_.received;
    self->stats_.max_held = std::max<uint64_t>(self->stats_.max_held, self->held_.size());
    return MNL_CB_OK;
  }

  void Release(int64_t until_ns) {
    size_t n = 0;
    while (n < held_.size() && held_[n].due_ns <= until_ns) ++n;
    if (n == 0) return;
    char buf[MNL_SOCKET_BUFFER_SIZE];
    nlmsghdr* nlh = nfq_nlmsg_put(buf, NFQNL_MSG_VERDICT_BATCH, queue_);
    nfq_nlmsg_verdict_put(nlh, static_cast<int>(held_[n - 1].id), NF_ACCEPT);
    if (mnl_socket_sendto(nl_, nlh, nlh->nlmsg_len) < 0) {
      ++stats_.errors;  // the packets stay queued; the next release covers them again
      return;
    }
    ++stats_.verdict_msgs;
    stats_.released += n;
    held_.erase(held_.begin(), held_.begin() + static_cast<std::ptrdiff_t>(n));
  }

  uint16_t queue_;
  int64_t delay_ns_;
  mnl_socket* nl_ = nullptr;
  uint32_t portid_ = 0;
  uint32_t seq_ = 0;
  int64_t due_for_batch_ = 0;
  std::deque<Held> held_;
  Stats stats_;
};

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Delay every packet of an NFQUEUE by a fixed time, preserving order"};
  uint16_t queue = 0;
  double delay_ms = 0;
  uint32_t maxlen = 65536;
  int rcvbuf = 64 << 20;
  app.add_option("--queue,-q", queue, "NFQUEUE number")->required();
  app.add_option("--delay-ms,-d", delay_ms, "one-way delay in milliseconds")
      ->required()
      ->check(CLI::Range(0.0, 60000.0));
  app.add_option("--maxlen", maxlen, "kernel queue length (packets)")->capture_default_str();
  app.add_option("--rcvbuf", rcvbuf, "netlink receive buffer (bytes)")->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  sigset_t block;
  sigemptyset(&block);
  sigaddset(&block, SIGTERM);
  sigaddset(&block, SIGINT);
  sigprocmask(SIG_BLOCK, &block, nullptr);
  struct sigaction sa {};
  sa.sa_handler = OnSignal;
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGINT, &sa, nullptr);

  DelayLine line(queue, static_cast<int64_t>(delay_ms * 1e6));
  if (!line.Open(maxlen, rcvbuf)) return 1;
  std::printf("ready queue=%u delay_ms=%g\n", queue, delay_ms);
  std::fflush(stdout);
  bool ok = line.Run();
  const Stats& s = line.stats();
  std::fprintf(
      stderr,
      "delayline: queue=%u received=%llu released=%llu verdict_msgs=%llu max_held=%llu "
      "enobufs=%llu errors=%llu\n",
      queue, static_cast<unsigned long long>(s.received),
      static_cast<unsigned long long>(s.released), static_cast<unsigned long long>(s.verdict_msgs),
      static_cast<unsigned long long>(s.max_held), static_cast<unsigned long long>(s.enobufs),
      static_cast<unsigned long long>(s.errors));
  return ok ? 0 : 1;
}
