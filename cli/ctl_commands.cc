#include "cli/ctl_commands.h"

#include <array>

namespace mproxy::cli {
namespace {

// Later rows (issue 4): {"conn show", ...}, {"handover", ..., kHandoverArgs} with
// kHandoverArgs = {{"from", "interface to leave"}, {"to", "interface to move to"}},
// {"subflow add", ...}, {"subflow del", ...}.
constexpr std::array<CtlCommand, 4> kCommands{{
    {"status", "daemon pid, uptime, engine, queue, rules and packets seen", {}},
    {"stats",
     "all counters: nfqueue, kernel queue (/proc drops), raw sender, engine, control socket",
     {}},
    {"help", "list the commands the running daemon understands", {}},
    {"conn show", "converted connections: tuple, role, state, tokens, bytes (mptcp engine)", {}},
}};

}  // namespace

std::span<const CtlCommand> CtlCommands() { return kCommands; }

const CtlCommand* FindCtlCommand(std::string_view name) {
  for (const CtlCommand& c : kCommands) {
    if (c.name == name) return &c;
  }
  return nullptr;
}

std::vector<std::string> CommandWords(std::string_view name) {
  std::vector<std::string> words;
  while (!name.empty()) {
    const size_t sp = name.find(' ');
    words.emplace_back(name.substr(0, sp));
    if (sp == std::string_view::npos) break;
    name.remove_prefix(sp + 1);
  }
  return words;
}

Request MakeRequest(const CtlCommand& cmd, const std::vector<std::string>& values) {
  Request r;
  r.command = std::string(cmd.name);
  r.args = nlohmann::json::object();
  for (size_t i = 0; i < cmd.args.size() && i < values.size(); ++i) {
    r.args[std::string(cmd.args[i].name)] = values[i];
  }
  return r;
}

}  // namespace mproxy::cli
