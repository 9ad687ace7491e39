#include "iptables/executor.h"

#include <utility>
#include <vector>

#include "iptables/subprocess.h"

namespace mproxy::iptables {
namespace {

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ' || s.back() == '\r')) {
    s.remove_suffix(1);
  }
  return s;
}

// iptables-restore reports "line N failed" (N counts input lines from 1): quote that line, since
// the tool's own message rarely says what was wrong with it.
std::string OffendingLine(std::string_view err, std::string_view input) {
  size_t pos = err.find("line ");
  if (pos == std::string_view::npos) return "";
  pos += 5;
  size_t n = 0;
  bool any = false;
  while (pos < err.size() && err[pos] >= '0' && err[pos] <= '9' && n < 1000000) {
    n = n * 10 + static_cast<size_t>(err[pos++] - '0');
    any = true;
  }
  if (!any || n == 0) return "";
  size_t start = 0;
  for (size_t i = 1; i < n; ++i) {
    start = input.find('\n', start);
    if (start == std::string_view::npos) return "";
    ++start;
  }
  std::string_view line = input.substr(start, input.find('\n', start) - start);
  return std::string(line);
}

const char* FamilyName(Family f) { return f == Family::kIpv4 ? "IPv4" : "IPv6"; }

}  // namespace

Executor::Executor(std::string prefix, ExecutorOptions options)
    : prefix_(std::move(prefix)), opt_(std::move(options)) {}

Result<void> Executor::Restore(Family family, std::string_view text) {
  std::vector<std::string> argv = {
      family == Family::kIpv4 ? opt_.iptables_restore : opt_.ip6tables_restore, "-w", "--noflush"};
  auto r = RunTool(argv, text, opt_.timeout);
  if (!r.ok()) return r.error();
  if (r->status != 0) {
    std::string msg = JoinArgv(argv) + " failed (status " + std::to_string(r->status) +
                      "): " + std::string(Trim(r->err));
    if (std::string line = OffendingLine(r->err, text); !line.empty()) {
      msg += " [input: " + line + "]";
    }
    return MakeError(std::move(msg));
  }
  return {};
}

Result<std::string> Executor::Save(Family family) {
  std::vector<std::string> argv = {family == Family::kIpv4 ? opt_.iptables_save
                                                           : opt_.ip6tables_save};
  auto r = RunTool(argv, "", opt_.timeout);
  if (!r.ok()) return r.error();
  if (r->status != 0) {
    return MakeError(JoinArgv(argv) + " failed (status " + std::to_string(r->status) +
                     "): " + std::string(Trim(r->err)));
  }
  return std::move(r->out);
}

Result<void> Executor::Apply(const RulePlan& plan) {
  if (!plan.install_v4.empty()) {
    if (auto r = Restore(Family::kIpv4, plan.install_v4); !r.ok()) return r;
  }
  if (!plan.install_v6.empty()) {
    if (auto r = Restore(Family::kIpv6, plan.install_v6); !r.ok()) {
      if (!plan.install_v4.empty()) {
        Error e = r.error();
        if (auto undo = Restore(Family::kIpv4, plan.remove_v4); !undo.ok()) {
          e.message += "; rolling back IPv4 also failed: " + undo.error().message;
        }
        return e;
      }
      return r;
    }
  }
  return {};
}

Result<void> Executor::Remove(const RulePlan& plan) {
  std::string failures;
  for (auto [family, text] :
       {std::pair{Family::kIpv4, &plan.remove_v4}, std::pair{Family::kIpv6, &plan.remove_v6}}) {
    if (text->empty()) continue;
    auto r = Restore(family, *text);
    if (r.ok()) continue;
    auto swept = RemoveStale(family);
    if (!swept.ok()) {
      failures += std::string(failures.empty() ? "" : "; ") + FamilyName(family) + ": " +
                  r.error().message + "; sweep: " + swept.error().message;
    }
  }
  if (!failures.empty()) return MakeError("iptables: removing rules failed: " + failures);
  return {};
}

Result<int> Executor::RemoveStale(Family family) {
  Result<void> last;
  for (int attempt = 0; attempt < 2; ++attempt) {
    auto dump = Save(family);
    if (!dump.ok()) return dump.error();
    StaleSet set = FindStale(*dump, prefix_);
    if (set.empty()) return 0;
    last = Restore(family, BuildRemoval(set));
    if (last.ok()) return static_cast<int>(set.chain_count());
  }
  return last.error();
}

Result<int> Executor::RemoveStale() {
  int total = 0;
  for (auto [family, on] :
       {std::pair{Family::kIpv4, opt_.ipv4}, std::pair{Family::kIpv6, opt_.ipv6}}) {
    if (!on) continue;
    auto r = RemoveStale(family);
    if (!r.ok()) return r.error();
    total += *r;
  }
  return total;
}

}  // namespace mproxy::iptables
