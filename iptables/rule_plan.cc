#include "iptables/rule_plan.h"

#include <algorithm>
#include <cstdio>

#include "iptables/save_parser.h"

namespace mproxy::iptables {
namespace {

bool IsAlpha(char c) { return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z'); }
bool IsDigit(char c) { return c >= '0' && c <= '9'; }

std::string Hex(uint32_t v) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%x", v);
  return buf;
}

// The hook jump for inbound path-MTU messages: ICMP "fragmentation needed" (type 3 code 4, RFC
// 1191) and ICMPv6 "packet too big" (type 2, RFC 8201), nothing else. The engine translates the
// ones about our segments (mptcp/icmp.cc).
std::string PtbHookSpec(const RuleConfig& c, Family f) {
  const std::string match = f == Family::kIpv4 ? "-p icmp -m icmp --icmp-type 3/4"
                                               : "-p ipv6-icmp -m icmp6 --icmpv6-type 2";
  return "PREROUTING " + match + " -m comment --comment " + std::string(kRuleComment) + " -j " +
         PtbChain(c.prefix);
}

// One family's install text. The TCP rules are textually identical for both (loopback is "lo" in
// both, -p tcp skips IPv6 extension headers in ip6tables); the ICMP hook differs.
std::string InstallText(const RuleConfig& c, const std::vector<uint16_t>& ports, Family f) {
  const std::string pre = PreChain(c.prefix), out = OutChain(c.prefix), q = QueueChain(c.prefix);
  const std::string ptb = PtbChain(c.prefix);
  const std::string mark = "-m mark --mark " + Hex(c.skip_mark) + "/" + Hex(c.skip_mark);
  std::string t = "*raw\n";
  t += ":" + pre + " - [0:0]\n";
  t += ":" + out + " - [0:0]\n";
  t += ":" + q + " - [0:0]\n";
  t += ":" + ptb + " - [0:0]\n";

  for (const auto& [chain, dir] : {std::pair{pre, "-i"}, std::pair{out, "-o"}}) {
    // Loopback first (pitfall 9): local traffic never needs rewriting. In raw OUTPUT the route is
    // already chosen, so -o names the real egress interface (traffic to our own addresses is "lo").
    t += "-A " + chain + " " + dir + " lo -j RETURN\n";
    for (const auto& ifname : c.exclude_ifaces) {
      if (ifname == "lo") continue;
      t += "-A " + chain + " " + dir + " " + ifname + " -j RETURN\n";
    }
    // Packets from our raw socket (SO_MARK) are already translated: never queue them, and keep
    // them out of conntrack like the flows they belong to.
    t += "-A " + chain + " " + mark + " -j CT --notrack\n";
    t += "-A " + chain + " " + mark + " -j RETURN\n";
    if (ports.empty()) {
      t += "-A " + chain + " -p tcp -j " + q + "\n";
    } else {
      for (size_t i = 0; i < ports.size(); i += kMultiportMax) {
        std::string list;
        for (size_t j = i; j < std::min(ports.size(), i + kMultiportMax); ++j) {
          if (!list.empty()) list += ",";
          list += std::to_string(ports[j]);
        }
        // --ports matches either the source or the destination port: both directions of a flow.
        t += "-A " + chain + " -p tcp -m multiport --ports " + list + " -j " + q + "\n";
      }
    }
  }

  const std::string nfq = "-j NFQUEUE --queue-num " + std::to_string(c.queue_num);
  // Path MTU messages: never loopback-excluded, because a rewritten segment re-routed onto a
  // smaller-MTU interface gets its frag-needed from this host itself, over lo (ip_fragment() ->
  // icmp_send()). Always --queue-bypass, whatever the fail policy: a dead daemon must not
  // black-hole path MTU discovery of plain flows. Not NOTRACKed: conntrack only relates them.
  for (const auto& ifname : c.exclude_ifaces) {
    if (ifname == "lo") continue;
    t += "-A " + ptb + " -i " + ifname + " -j RETURN\n";
  }
  t += "-A " + ptb + " " + nfq + " --queue-bypass\n";

  // Conntrack must not see rewritten sequence numbers (pitfall 7).
  t += "-A " + q + " -j CT --notrack\n";
  if (c.fail == FailPolicy::kClosedEstablished) {
    // Pitfall 8: only handshake packets (SYN and SYN/ACK) may skip a dead daemon, so new
    // connections still open; every other packet of a selected flow is dropped rather than leaked
    // untranslated. (Without conntrack - NOTRACK, pitfall 7 - we cannot tell converted flows
    // apart, so plain flows opened while the daemon is down stall after their handshake.)
    t += "-A " + q + " -p tcp --tcp-flags SYN,RST SYN " + nfq + " --queue-bypass\n";
    t += "-A " + q + " " + nfq + "\n";
  } else {
    t += "-A " + q + " " + nfq + " --queue-bypass\n";
  }

  const std::string tag = "-p tcp -m comment --comment " + std::string(kRuleComment);
  t += "-A PREROUTING " + tag + " -j " + pre + "\n";
  t += "-A OUTPUT " + tag + " -j " + out + "\n";
  t += "-A " + PtbHookSpec(c, f) + "\n";
  t += "COMMIT\n";
  return t;
}

// Removal mirrors the install exactly (the hooks by rule spec, then our chains), in the same
// format the stale sweep emits, so both paths are exercised by the same restore grammar.
std::string RemoveText(const RuleConfig& c, Family f) {
  const std::string tag = "-p tcp -m comment --comment " + std::string(kRuleComment);
  StaleSet s;
  StaleTable& raw = s.tables.emplace_back();
  raw.table = "raw";
  raw.jumps = {"PREROUTING " + tag + " -j " + PreChain(c.prefix),
               "OUTPUT " + tag + " -j " + OutChain(c.prefix), PtbHookSpec(c, f)};
  raw.chains = {PreChain(c.prefix), OutChain(c.prefix), QueueChain(c.prefix), PtbChain(c.prefix)};
  return BuildRemoval(s);
}

}  // namespace

std::string PreChain(std::string_view prefix) { return std::string(prefix) + "-PRE"; }
std::string OutChain(std::string_view prefix) { return std::string(prefix) + "-OUT"; }
std::string QueueChain(std::string_view prefix) { return std::string(prefix) + "-Q"; }
std::string PtbChain(std::string_view prefix) { return std::string(prefix) + "-PTB"; }

Result<void> Validate(const RuleConfig& c) {
  if (c.prefix.empty() || c.prefix.size() > kMaxPrefixLen || !IsAlpha(c.prefix[0])) {
    return MakeError("iptables: prefix must be 1.." + std::to_string(kMaxPrefixLen) +
                     " characters starting with a letter: '" + c.prefix + "'");
  }
  for (char ch : c.prefix) {
    // No '-': a chain is ours iff it is <prefix>-<suffix>, which must stay unambiguous between
    // daemons with different prefixes (e.g. "MPROXY" must never sweep "MPROXY-T"'s chains).
    if (!IsAlpha(ch) && !IsDigit(ch) && ch != '_') {
      return MakeError("iptables: prefix may hold only letters, digits and '_': '" + c.prefix +
                       "'");
    }
  }
  if (c.skip_mark == 0) return MakeError("iptables: skip_mark must be non-zero");
  if (!c.ipv4 && !c.ipv6) return MakeError("iptables: neither IPv4 nor IPv6 enabled");
  for (uint16_t p : c.ports) {
    if (p == 0) return MakeError("iptables: port 0 cannot be intercepted");
  }
  for (const auto& ifname : c.exclude_ifaces) {
    // IFNAMSIZ - 1; '+' (iptables' wildcard) is allowed on purpose.
    bool bad = ifname.empty() || ifname.size() > 15 || ifname[0] == '-' || ifname[0] == '!';
    for (char ch : ifname) {
      bad = bad || ch <= ' ' || ch == '/' || ch == '"' || ch == '\'' || ch == '\\' || ch > '~';
    }
    if (bad) return MakeError("iptables: bad interface name '" + ifname + "'");
  }
  return {};
}

RulePlan BuildPlan(const RuleConfig& c) {
  std::vector<uint16_t> ports = c.ports;
  std::sort(ports.begin(), ports.end());
  ports.erase(std::unique(ports.begin(), ports.end()), ports.end());
  RulePlan plan;
  if (c.ipv4) {
    plan.install_v4 = InstallText(c, ports, Family::kIpv4);
    plan.remove_v4 = RemoveText(c, Family::kIpv4);
  }
  if (c.ipv6) {
    plan.install_v6 = InstallText(c, ports, Family::kIpv6);
    plan.remove_v6 = RemoveText(c, Family::kIpv6);
  }
  return plan;
}

}  // namespace mproxy::iptables
