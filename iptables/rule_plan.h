// The netfilter rules mproxyd needs, as iptables-restore text (pure; golden-tested in
// tests/unit/iptables/rule_plan_test.cc). Applied and removed by iptables/executor.h.
//
// Shape of the ruleset (same for IPv4 and IPv6, all in the `raw` table):
//
//   raw PREROUTING  -p tcp -m comment --comment mproxy -j <P>-PRE   (appended: packets from the
//   net) raw OUTPUT      -p tcp -m comment --comment mproxy -j <P>-OUT   (appended: local stack)
//   <P>-PRE / <P>-OUT:  loopback and excluded interfaces  -> RETURN
//                       (mark & skip_mark) == skip_mark   -> CT --notrack, RETURN (our raw socket)
//                       selected ports (or all TCP)       -> <P>-Q
//   <P>-Q:              CT --notrack, then NFQUEUE --queue-num N [--queue-bypass]
//   raw PREROUTING  -p icmp --icmp-type 3/4 (v4) / -p ipv6-icmp --icmpv6-type 2 (v6)
//                   -m comment --comment mproxy -j <P>-PTB   (path MTU, RFC 1191 / RFC 8201)
//   <P>-PTB:            excluded interfaces -> RETURN (not lo), NFQUEUE --queue-num N --queue-bypass
//
// Why the raw table: it runs before conntrack (priority -300 vs -200), so the queued flows can be
// NOTRACKed there; conntrack would otherwise judge rewritten sequence numbers INVALID
// (architecture.md, NFQUEUE pitfall 7). Queueing in raw OUTPUT still works for a rewriter because
// nf_reinject() re-routes LOCAL_OUT packets whose addresses or mark changed in user space.
// NFQUEUE is terminal: an accepted packet continues with the next hook, not the next raw rule,
// which is why the hooks are appended after whatever the host already has in raw.
//
// Fail policy (pitfall 8): with kOpen every queue rule has --queue-bypass, so a dead daemon passes
// traffic untouched. With kClosedEstablished only pure SYNs bypass (new connections are not
// black-holed while the daemon is down); every other selected packet is queued without bypass and
// therefore dropped when nobody listens: a converted flow fails closed instead of leaking
// untranslated sequence numbers.
//
// Nothing outside chains named <prefix>-* is created; the only edits to foreign chains are the three
// appended jumps (two TCP, one ICMP), tagged with the comment "mproxy". Install text assumes none of
// our chains exist: call Executor::RemoveStale() before Executor::Apply().
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "packet/result.h"

namespace mproxy::iptables {

enum class Family { kIpv4, kIpv6 };
enum class FailPolicy { kOpen, kClosedEstablished };

struct RuleConfig {
  std::string prefix =
      "MPROXY";  // every chain we create is <prefix>-<suffix>; nothing else touched
  uint16_t queue_num = 0;
  uint32_t skip_mark =
      0x4d50;  // (mark & skip_mark) == skip_mark: our raw-socket packets, never queued
  std::vector<uint16_t> ports;  // TCP ports to intercept (either src or dst port); empty = all TCP
  std::vector<std::string> exclude_ifaces;  // never queue these (loopback "lo" is always excluded)
  bool ipv4 = true, ipv6 = true;
  FailPolicy fail = FailPolicy::kOpen;
};

// iptables-restore --noflush inputs; an empty string means "nothing to do for this family".
struct RulePlan {
  std::string install_v4, install_v6, remove_v4, remove_v6;
};

// The comment carried by the hook jumps (visible in iptables-save, a human's hint of who owns
// them).
inline constexpr std::string_view kRuleComment = "mproxy";
// xt chain names are at most 28 characters (XT_EXTENSION_MAXNAMELEN - 1); our longest suffix is
// "-OUT"/"-PRE" (4), so a prefix can have up to 24.
inline constexpr size_t kMaxPrefixLen = 24;
// -m multiport takes at most 15 ports per rule (XT_MULTI_PORTS).
inline constexpr size_t kMultiportMax = 15;

// Checks what BuildPlan assumes: prefix of [A-Za-z0-9_] (starting with a letter, so it cannot look
// like an option or a builtin chain), skip_mark != 0 (a zero mask would match every packet),
// interface names of 1..15 characters without whitespace, quotes or '/', no port 0, at least one
// family enabled.
Result<void> Validate(const RuleConfig& config);

// The chain names derived from a prefix.
std::string PreChain(std::string_view prefix);
std::string OutChain(std::string_view prefix);
std::string QueueChain(std::string_view prefix);
std::string PtbChain(std::string_view prefix);  // inbound path-MTU ICMP (see BuildPlan)

// Pure: the same config always yields the same text. Ports are sorted and de-duplicated; a
// disabled family gets empty strings. Precondition: Validate(config).ok().
RulePlan BuildPlan(const RuleConfig& config);

}  // namespace mproxy::iptables
