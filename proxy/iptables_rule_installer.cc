#include "proxy/iptables_rule_installer.h"

#include <utility>

namespace mproxy::proxy {

Result<std::unique_ptr<IptablesRuleInstaller>> IptablesRuleInstaller::Create(
    const iptables::RuleConfig& config, iptables::ExecutorOptions options) {
  if (auto r = iptables::Validate(config); !r) {
    Error e = r.error();
    e.message = "rule configuration: " + e.message;
    return e;
  }
  // The stale sweep covers exactly the families we manage.
  options.ipv4 = config.ipv4;
  options.ipv6 = config.ipv6;
  return std::unique_ptr<IptablesRuleInstaller>(new IptablesRuleInstaller(
      iptables::BuildPlan(config), iptables::Executor(config.prefix, std::move(options))));
}

}  // namespace mproxy::proxy
