// RuleInstaller backed by iptables/: the rule plan (pure text) applied with iptables-restore.
#pragma once

#include <memory>

#include "iptables/executor.h"
#include "iptables/rule_plan.h"
#include "packet/result.h"
#include "proxy/packet_io.h"

namespace mproxy::proxy {

class IptablesRuleInstaller final : public RuleInstaller {
 public:
  // Validates the config (iptables::Validate) and builds the plan once, so Install() and Remove()
  // use the same text.
  static Result<std::unique_ptr<IptablesRuleInstaller>> Create(
      const iptables::RuleConfig& config, iptables::ExecutorOptions options = {});

  Result<void> Install() override { return executor_.Apply(plan_); }
  Result<void> Remove() override { return executor_.Remove(plan_); }
  Result<int> RemoveStale() override { return executor_.RemoveStale(); }

  [[nodiscard]] const iptables::RulePlan& plan() const { return plan_; }

 private:
  IptablesRuleInstaller(iptables::RulePlan plan, iptables::Executor executor)
      : plan_(std::move(plan)), executor_(std::move(executor)) {}
  iptables::RulePlan plan_;
  iptables::Executor executor_;
};

}  // namespace mproxy::proxy
