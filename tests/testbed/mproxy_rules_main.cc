// mproxy_rules: install, remove or sweep mproxy's iptables rules by hand (and the driver of
// tests/netns/iptables_rules_test.sh). The same code path as mproxyd: iptables/rule_plan.h and
// iptables/executor.h.
//
//   mproxy_rules plan   --ports 80,443 --queue 3        # print the iptables-restore texts
//   mproxy_rules apply  --ports 80,443 --queue 3 --prefix MPT
//   mproxy_rules remove --ports 80,443 --queue 3 --prefix MPT   # same options as apply
//   mproxy_rules stale  --prefix MPT                    # what a restarting daemon does first
#include <CLI/CLI.hpp>
#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include "iptables/executor.h"
#include "iptables/rule_plan.h"

namespace ipt = mproxy::iptables;

int main(int argc, char** argv) {
  CLI::App app{"Install, remove or sweep mproxy's iptables rules (raw table, chains <prefix>-*)"};
  app.require_subcommand(1, 1);
  ipt::RuleConfig cfg;
  std::string fail = "open";
  std::string mark = "0x4d50";
  bool no4 = false, no6 = false;
  auto add_common = [&](CLI::App* sub) {
    sub->add_option("--prefix", cfg.prefix, "chain name prefix")->capture_default_str();
  };
  auto add_plan = [&](CLI::App* sub) {
    add_common(sub);
    sub->add_option("--ports", cfg.ports, "TCP ports to intercept (src or dst); none = all TCP")
        ->delimiter(',');
    sub->add_option("--queue", cfg.queue_num, "NFQUEUE number")->capture_default_str();
    sub->add_option("--mark", mark, "skip mark (packets with all these bits are never queued)")
        ->capture_default_str();
    sub->add_option("--exclude", cfg.exclude_ifaces, "interfaces never queued (lo always)")
        ->delimiter(',');
    sub->add_option("--fail", fail, "open | closed (closed: only SYNs bypass a dead daemon)")
        ->check(CLI::IsMember({"open", "closed"}))
        ->capture_default_str();
    sub->add_flag("--no-ipv4", no4, "leave IPv4 alone");
    sub->add_flag("--no-ipv6", no6, "leave IPv6 alone");
  };
  CLI::App* plan_cmd = app.add_subcommand("plan", "print the install/remove texts");
  CLI::App* apply_cmd = app.add_subcommand("apply", "install the rules");
  CLI::App* remove_cmd =
      app.add_subcommand("remove", "remove rules installed by apply (same options)");
  CLI::App* stale_cmd =
      app.add_subcommand("stale", "remove every <prefix>-* chain and jump to one");
  for (CLI::App* s : {plan_cmd, apply_cmd, remove_cmd}) add_plan(s);
  add_common(stale_cmd);
  stale_cmd->add_flag("--no-ipv4", no4, "leave IPv4 alone");
  stale_cmd->add_flag("--no-ipv6", no6, "leave IPv6 alone");
  CLI11_PARSE(app, argc, argv);

  cfg.ipv4 = !no4;
  cfg.ipv6 = !no6;
  cfg.fail = fail == "closed" ? ipt::FailPolicy::kClosedEstablished : ipt::FailPolicy::kOpen;
  try {
    cfg.skip_mark = static_cast<uint32_t>(std::stoul(mark, nullptr, 0));
  } catch (const std::exception&) {
    std::cerr << "mproxy_rules: bad --mark '" << mark << "'\n";
    return 2;
  }
  if (auto v = ipt::Validate(cfg); !v.ok()) {
    std::cerr << "mproxy_rules: " << v.error().message << "\n";
    return 2;
  }
  ipt::ExecutorOptions opts;
  opts.ipv4 = cfg.ipv4;
  opts.ipv6 = cfg.ipv6;
  ipt::Executor ex(cfg.prefix, opts);
  const ipt::RulePlan plan = ipt::BuildPlan(cfg);

  if (*plan_cmd) {
    std::cout << "# install IPv4\n"
              << plan.install_v4 << "# install IPv6\n"
              << plan.install_v6 << "# remove IPv4\n"
              << plan.remove_v4 << "# remove IPv6\n"
              << plan.remove_v6;
    return 0;
  }
  if (*apply_cmd) {
    if (auto r = ex.Apply(plan); !r.ok()) {
      std::cerr << "mproxy_rules: apply: " << r.error().message << "\n";
      return 1;
    }
    return 0;
  }
  if (*remove_cmd) {
    if (auto r = ex.Remove(plan); !r.ok()) {
      std::cerr << "mproxy_rules: remove: " << r.error().message << "\n";
      return 1;
    }
    return 0;
  }
  auto r = ex.RemoveStale();
  if (!r.ok()) {
    std::cerr << "mproxy_rules: stale: " << r.error().message << "\n";
    return 1;
  }
  std::cout << "removed " << *r << " chain(s)\n";
  return 0;
}
