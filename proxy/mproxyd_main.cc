// mproxyd: the packet-rewriting daemon. Runs in the foreground, logs to stderr, stops cleanly
// (rules removed, queue drained) on SIGTERM or SIGINT.
//
//   mproxyd --engine passthrough --ports 5201,8080 --queue-num 0
//   mproxyd --engine mptcp --ports 5201 --interfaces wlan0,eth1   # subflows + policy routing
//
// Exit codes: 0 clean stop, 1 startup or runtime failure (the message says which step), 2 usage.
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <charconv>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include "iptables/rule_plan.h"
#include "proxy/daemon.h"
#include "proxy/engines.h"
#include "proxy/interface_manager.h"
#include "proxy/iptables_rule_installer.h"
#include "proxy/log.h"
#include "proxy/route_netlink.h"

#ifndef MPROXY_VERSION
#define MPROXY_VERSION "unknown"
#endif

namespace {

namespace px = mproxy::proxy;
namespace ipt = mproxy::iptables;

constexpr int kExitFailure = 1;
constexpr int kExitUsage = 2;

// "0x4d50", "19792", "0600" (octal with a leading 0 when base is 0).
bool ParseUnsigned(std::string_view s, unsigned long& out, int base = 0) {
  if (base == 0) {
    if (s.size() > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
      base = 16;
      s.remove_prefix(2);
    } else if (s.size() > 1 && s[0] == '0') {
      base = 8;
      s.remove_prefix(1);
    } else {
      base = 10;
    }
  }
  if (s.empty()) return false;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out, base);
  return ec == std::errc{} && p == s.data() + s.size();
}

// The engine's joins use source ports the kernel does not know about: if the host hands the same
// ports to local sockets, a local connection can be refused (its SYN on a join's tuple is dropped).
void WarnIfJoinPortsOverlapLocalRange(unsigned long lo, unsigned long hi) {
  std::ifstream in("/proc/sys/net/ipv4/ip_local_port_range");
  unsigned long a = 0, b = 0;
  if (!(in >> a >> b)) return;
  if (lo <= b && a <= hi) {
    MPROXY_LOG(kWarn) << "--join-ports " << lo << "-" << hi
                      << " overlaps net.ipv4.ip_local_port_range " << a << "-" << b
                      << ": local connections may collide with joins";
  }
}

// Effective capability bit from /proc/self/status (CapEff is a hex mask).
bool HasCapability(int cap) {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("CapEff:", 0) != 0) continue;
    unsigned long long mask = 0;
    std::string_view hex(line);
    hex.remove_prefix(7);
    while (!hex.empty() && (hex.front() == '\t' || hex.front() == ' ')) hex.remove_prefix(1);
    std::from_chars(hex.data(), hex.data() + hex.size(), mask, 16);
    return ((mask >> cap) & 1) != 0;
  }
  return geteuid() == 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "mproxyd: NFQUEUE packet rewriter (plain TCP <-> MPTCP v1). Runs in the foreground, logs to "
      "stderr, stops cleanly on SIGTERM/SIGINT (rules removed, queue drained)."};
  app.set_version_flag("--version", MPROXY_VERSION);
  app.footer(
      "Exit codes: 0 clean stop, 1 startup or runtime failure, 2 usage error.\n"
      "Control it with mproxyctl (same --control-socket).");

  std::string engine = "passthrough";
  uint16_t queue_num = 0;
  uint32_t queue_maxlen = 16384;
  size_t batch = 64;
  int rcvbuf = 32 << 20;
  bool no_gso = false;
  std::vector<uint16_t> ports;
  bool all_tcp = false;
  std::vector<std::string> exclude;
  std::string skip_mark = "0x4d50";
  std::string fail_policy = "open";
  bool no_ipv4 = false, no_ipv6 = false;
  std::string prefix = "MPROXY";
  bool no_rules = false;
  std::string control_socket = "/run/mproxy/mproxyd.sock";
  std::string control_mode = "0600";
  std::string log_level = "info";
  bool checksums = false;
  std::string join_ports = "61000-65535";
  std::string announce = "auto";
  std::vector<std::string> interfaces;
  std::string table_base = "0x4d50";
  std::string rule_priority = "0x4d50";
  std::string route_mark_mask = "0x00ff0000";
  bool no_policy_routing = false;

  app.add_option("--engine", engine,
                 "packet engine: " + px::EngineNames() + " (more engines register themselves)")
      ->capture_default_str();
  app.add_option("--queue-num", queue_num, "NFQUEUE number to bind (one daemon per queue)")
      ->capture_default_str();
  app.add_option("--queue-maxlen", queue_maxlen,
                 "kernel queue length in packets; beyond it packets are dropped (or accepted with "
                 "--fail-policy open)")
      ->check(CLI::Range(1u, 1u << 20))
      ->capture_default_str();
  app.add_option("--batch", batch, "packets received per recvmmsg and verdicted per sendmsg")
      ->check(CLI::Range(size_t{1}, size_t{1024}))
      ->capture_default_str();
  app.add_option("--rcvbuf", rcvbuf, "netlink receive buffer in bytes (forced past rmem_max)")
      ->check(CLI::Range(1 << 16, 1 << 30))
      ->capture_default_str();
  app.add_flag("--no-gso", no_gso,
               "do not ask for GSO super-packets (debugging only: ~10x fewer Gbit/s)");
  app.add_option("--ports", ports,
                 "TCP ports to intercept, either direction, comma separated (e.g. 5201,8080)")
      ->delimiter(',');
  app.add_flag("--all-tcp", all_tcp,
               "intercept all TCP instead of --ports (never loopback; use with care)");
  app.add_option("--exclude-iface", exclude,
                 "interfaces whose packets are never queued, comma separated (lo always is)")
      ->delimiter(',');
  app.add_option("--skip-mark", skip_mark,
                 "packet mark of our own raw-socket packets; the rules let packets carrying all "
                 "these bits through")
      ->capture_default_str();
  app.add_option("--fail-policy", fail_policy,
                 "open: a dead or overloaded daemon lets packets through unchanged "
                 "(--queue-bypass, NFQA_CFG_F_FAIL_OPEN); closed: only SYNs bypass, converted "
                 "flows are dropped rather than leaked untranslated")
      ->check(CLI::IsMember({"open", "closed"}))
      ->capture_default_str();
  app.add_flag("--no-ipv4", no_ipv4, "leave IPv4 alone (no rules, no raw socket)");
  app.add_flag("--no-ipv6", no_ipv6, "leave IPv6 alone (no rules, no raw socket)");
  app.add_option("--rule-prefix", prefix,
                 "name prefix of our iptables chains (<prefix>-PRE, -OUT, -Q); stale ones are "
                 "removed at start")
      ->capture_default_str();
  app.add_flag("--no-rules", no_rules,
               "do not install iptables rules (steer packets to the queue yourself)");
  app.add_option("--control-socket", control_socket, "Unix socket for mproxyctl")
      ->capture_default_str();
  app.add_option("--control-socket-mode", control_mode,
                 "file mode of the control socket (octal); the default allows root only")
      ->capture_default_str();
  app.add_flag("--checksums", checksums,
               "mptcp engine: ask the peer for DSS checksums (RFC 8684 §3.3.1); either side asking "
               "enables them");
  app.add_option("--join-ports", join_ports,
                 "mptcp engine: source ports of the joins it opens, MIN-MAX; keep them outside the "
                 "host's net.ipv4.ip_local_port_range (the kernel does not know them)")
      ->capture_default_str();
  app.add_option("--announce", announce,
                 "mptcp engine: announce the --interfaces' other addresses with ADD_ADDR. auto: on "
                 "connections the peer opened (a native client may join them); always: also on "
                 "ours (a native server with add_addr_accepted would open duplicate subflows); "
                 "never")
      ->check(CLI::IsMember({"auto", "always", "never"}))
      ->capture_default_str();
  app.add_option("--interfaces", interfaces,
                 "interfaces subflows may use, comma separated (e.g. wlan0,eth1); their addresses "
                 "are followed through rtnetlink and each gets policy routing of its own (below). "
                 "Empty: no subflow management")
      ->delimiter(',');
  app.add_option("--route-table-base", table_base,
                 "routing table of the i-th --interfaces entry is this + i (a range of 32 tables "
                 "that is ours: stale routes in it are removed at start)")
      ->capture_default_str();
  app.add_option(
         "--rule-priority-base", rule_priority,
         "ip rules of the i-th interface ('from <addr>' and 'fwmark') get priority this + i "
         "(ours: a rule in this range of 32 pointing at our tables is removed at start)")
      ->capture_default_str();
  app.add_option("--route-mark-mask", route_mark_mask,
                 "mark bits selecting an interface's table: the i-th interface has mark (i+1) "
                 "shifted into this mask ('fwmark M/mask lookup <table>'); must not overlap "
                 "--skip-mark")
      ->capture_default_str();
  app.add_flag("--no-policy-routing", no_policy_routing,
               "follow the --interfaces' addresses but install no routes or rules (route subflows "
               "yourself)");
  app.add_option("--log-level", log_level, "error, warn, info or debug")
      ->check(CLI::IsMember({"error", "warn", "info", "debug"}))
      ->capture_default_str();

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);
    return rc == 0 ? 0 : kExitUsage;
  }

  auto usage = [](const std::string& msg) {
    std::cerr << "mproxyd: " << msg << "\nRun with --help for more information.\n";
    return kExitUsage;
  };
  if (auto level = px::ParseLogLevel(log_level); level) px::SetLogLevel(*level);
  const px::EngineSpec* spec = px::FindEngine(engine);
  if (spec == nullptr) {
    return usage("unknown engine '" + engine + "' (available: " + px::EngineNames() + ")");
  }
  if (ports.empty() && !all_tcp && !no_rules) {
    // Pitfall 9: queue only what needs rewriting, never all traffic by accident.
    return usage("--ports is required (or --all-tcp to intercept every TCP port)");
  }
  if (!ports.empty() && all_tcp) return usage("--ports and --all-tcp exclude each other");
  unsigned long mark = 0;
  if (!ParseUnsigned(skip_mark, mark) || mark == 0 || mark > 0xffffffffUL) {
    return usage("--skip-mark must be a non-zero 32-bit number (e.g. 0x4d50)");
  }
  unsigned long mode = 0;
  if (!ParseUnsigned(control_mode, mode, 8) || mode > 0777) {
    return usage("--control-socket-mode must be an octal file mode (e.g. 0600)");
  }
  if (no_ipv4 && no_ipv6) return usage("--no-ipv4 and --no-ipv6 leave nothing to do");
  unsigned long join_min = 0, join_max = 0;
  if (const auto dash = join_ports.find('-');
      dash == std::string::npos || !ParseUnsigned(join_ports.substr(0, dash), join_min) ||
      !ParseUnsigned(join_ports.substr(dash + 1), join_max) || join_min == 0 ||
      join_min > join_max || join_max > 65535) {
    return usage("--join-ports must be MIN-MAX within 1-65535 (e.g. 61000-65535)");
  }
  WarnIfJoinPortsOverlapLocalRange(join_min, join_max);
  px::RoutingConfig routing;
  {
    unsigned long tb = 0, prio = 0, mask = 0;
    if (!ParseUnsigned(table_base, tb) || tb > 0xffffffffUL) {
      return usage("--route-table-base must be a 32-bit number");
    }
    if (!ParseUnsigned(rule_priority, prio) || prio > 0xffffffffUL) {
      return usage("--rule-priority-base must be a 32-bit number");
    }
    if (!ParseUnsigned(route_mark_mask, mask) || mask > 0xffffffffUL) {
      return usage("--route-mark-mask must be a 32-bit number");
    }
    routing.table_base = static_cast<uint32_t>(tb);
    routing.priority_base = static_cast<uint32_t>(prio);
    routing.mark_mask = static_cast<uint32_t>(mask);
    routing.ipv4 = !no_ipv4;
    routing.ipv6 = !no_ipv6;
  }
  for (size_t i = 0; i < interfaces.size(); ++i) {
    if (interfaces[i].empty() || interfaces[i].size() >= 16) {
      return usage("--interfaces: '" + interfaces[i] + "' is not an interface name");
    }
    for (size_t j = 0; j < i; ++j) {
      if (interfaces[j] == interfaces[i]) return usage("--interfaces: " + interfaces[i] + " twice");
    }
  }
  if (!interfaces.empty() && !no_policy_routing) {
    if (auto r = px::ValidateRouting(routing, interfaces.size(), static_cast<uint32_t>(mark)); !r) {
      return usage(r.error().message);
    }
  }

  // Say it plainly up front instead of failing on the first privileged syscall.
  constexpr int kCapNetAdmin = 12, kCapNetRaw = 13;
  if (!HasCapability(kCapNetAdmin) || !HasCapability(kCapNetRaw)) {
    std::cerr << "mproxyd: must run as root (needs CAP_NET_ADMIN for NFQUEUE and iptables, "
                 "CAP_NET_RAW for raw sockets)\n";
    return kExitFailure;
  }

  const bool closed = fail_policy == "closed";
  px::DaemonConfig cfg;
  cfg.engine_name = engine;
  cfg.queue.queue_num = queue_num;
  cfg.queue.queue_maxlen = queue_maxlen;
  cfg.queue.max_batch = batch;
  cfg.queue.rcvbuf_bytes = rcvbuf;
  cfg.queue.gso = !no_gso;
  // Pitfall 8: fail-open does not protect converted flows; "closed" turns it off in the kernel too.
  cfg.queue.fail_open = !closed;
  cfg.raw.mark = static_cast<uint32_t>(mark);
  cfg.raw.ipv4 = !no_ipv4;
  cfg.raw.ipv6 = !no_ipv6;
  cfg.control.path = control_socket;
  cfg.control.mode = static_cast<mode_t>(mode);
  cfg.status_extra = {{"ports", ports}, {"fail_policy", fail_policy}};
  if (!interfaces.empty()) {
    cfg.status_extra["policy_routing"] = no_policy_routing ? "off" : "on";
  }

  px::EngineOptions eopt;
  eopt.ports = ports;
  eopt.checksums = checksums;
  eopt.join_port_min = static_cast<uint16_t>(join_min);
  eopt.join_port_max = static_cast<uint16_t>(join_max);
  eopt.announce =
      mproxy::mptcp::ParseAnnounceMode(announce).value_or(mproxy::mptcp::AnnounceMode::kAuto);
  auto eng = spec->make(eopt);
  if (!eng) {
    std::cerr << "mproxyd: engine " << engine << ": " << eng.error().message << "\n";
    return kExitFailure;
  }
  px::DaemonDeps deps;
  deps.engine = std::move(eng.value());

  if (!no_rules) {
    ipt::RuleConfig rc;
    rc.prefix = prefix;
    rc.queue_num = queue_num;
    rc.skip_mark = static_cast<uint32_t>(mark);
    rc.ports = ports;
    rc.exclude_ifaces = exclude;
    rc.ipv4 = !no_ipv4;
    rc.ipv6 = !no_ipv6;
    rc.fail = closed ? ipt::FailPolicy::kClosedEstablished : ipt::FailPolicy::kOpen;
    auto installer = px::IptablesRuleInstaller::Create(rc);
    if (!installer) return usage(installer.error().message);
    deps.rules = std::move(installer.value());
  }

  if (!interfaces.empty()) {
    auto nl = px::MnlRouteNetlink::Open();
    if (!nl) {
      std::cerr << "mproxyd: " << nl.error().message << "\n";
      return kExitFailure;
    }
    px::InterfaceManagerOptions io;
    io.names = interfaces;
    io.routing = routing;
    io.policy_routing = !no_policy_routing;
    deps.interfaces = std::make_unique<px::InterfaceManager>(std::move(io), std::move(nl.value()));
  }

  px::Daemon daemon(std::move(cfg), std::move(deps));
  if (spec->register_commands != nullptr) {
    spec->register_commands(daemon.engine(), daemon.commands(), daemon.engine_context());
  }
  if (auto r = daemon.Start(); !r) {
    std::cerr << "mproxyd: " << r.error().message << "\n";
    return kExitFailure;
  }
  auto run = daemon.Run();
  if (!run) MPROXY_LOG(kError) << "event loop failed: " << run.error().message;
  auto stop = daemon.Stop();
  if (!run || !stop) return kExitFailure;
  return 0;
}
