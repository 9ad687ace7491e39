// Applies and removes a RulePlan with `iptables-restore -w --noflush` / `ip6tables-restore -w
// --noflush` (text on stdin, no shell). One restore call is one transaction, so each family is
// installed or removed atomically; nothing outside the plan's text and our <prefix>-* chains is
// ever named.
//
// Daemon lifecycle:
//   Executor ex(config.prefix);
//   ex.RemoveStale();              // a crashed run may have left its chains (and would make Apply
//   ex.Apply(BuildPlan(config));   //  fail or double the hook jumps)
//   ...                            // run
//   ex.Remove(plan);               // clean stop
//
// Errors name the command and carry the tool's stderr plus, when the tool points at "line N" of
// its input, that line.
#pragma once

#include <chrono>
#include <string>
#include <string_view>

#include "iptables/rule_plan.h"
#include "iptables/save_parser.h"
#include "packet/result.h"

namespace mproxy::iptables {

struct ExecutorOptions {
  // Tool names (PATH, then /usr/sbin and /sbin) or paths; tests substitute fakes.
  std::string iptables_restore = "iptables-restore";
  std::string ip6tables_restore = "ip6tables-restore";
  std::string iptables_save = "iptables-save";
  std::string ip6tables_save = "ip6tables-save";
  // Families RemoveStale() sweeps (Apply/Remove follow the plan: an empty text is skipped).
  bool ipv4 = true, ipv6 = true;
  std::chrono::milliseconds timeout{30000};  // per tool run; -w alone would wait forever
};

class Executor {
 public:
  explicit Executor(std::string prefix, ExecutorOptions options = {});

  // Installs install_v4 then install_v6. If IPv6 fails after IPv4 succeeded, the IPv4 part is
  // removed again (best effort) so a failed Apply leaves nothing behind.
  Result<void> Apply(const RulePlan& plan);

  // Removes what Apply installed. If the plan's removal text fails for a family (someone deleted
  // one of our rules by hand, or the plan differs from what is installed), falls back to the stale
  // sweep for that family, so a clean stop still leaves no chain of ours; fails only if that fails.
  Result<void> Remove(const RulePlan& plan);

  // Removes every chain named <prefix>-* and every jump to one, in every table of the enabled
  // families (iptables-save, FindStale, iptables-restore). Returns how many chains were removed.
  // Retries once when the restore fails (the ruleset may have changed between save and restore).
  Result<int> RemoveStale();

  // One family's sweep; also what Remove() falls back to.
  Result<int> RemoveStale(Family family);

  [[nodiscard]] const std::string& prefix() const { return prefix_; }

 private:
  Result<void> Restore(Family family, std::string_view text);
  Result<std::string> Save(Family family);

  std::string prefix_;
  ExecutorOptions opt_;
};

}  // namespace mproxy::iptables
