#include "cli/ctl_commands.h"

#include <array>
#include <cerrno>

namespace mproxy::cli {
namespace {

constexpr CtlArg kHandoverArgs[] = {{"from", "interface to leave (e.g. wlan0)"},
                                    {"to", "interface to move to (e.g. eth1)"}};
constexpr CtlOption kHandoverOptions[] = {
    {"--break", "break",
     "break-before-make: FROM is gone, retransmit what it carried on TO (default: "
     "make-before-break, FROM stays as a backup)",
     false},
    {"--conn", "conn", "only this connection (its local_token from `conn show`)", true},
    {"--timeout", "",
     "seconds to wait for the handover to finish (default 10); then exit 6 (it may still finish "
     "in the daemon)",
     true},
};
constexpr CtlArg kHandoverStatusArgs[] = {{"id", "handover id printed by `handover`"}};
constexpr CtlArg kSubflowArgs[] = {{"ifname", "local interface of the subflow"}};
constexpr CtlOption kSubflowAddOptions[] = {
    {"--conn", "conn", "the connection (its local_token from `conn show`); required", true},
    {"--backup", "backup", "open it as a backup subflow (MP_JOIN B flag)", false},
};
constexpr CtlOption kSubflowDelOptions[] = {
    {"--conn", "conn", "the connection (its local_token from `conn show`); required", true},
};

constexpr std::array<CtlCommand, 8> kCommands{{
    {"status", "daemon pid, uptime, engine, queue, rules, managed interfaces and packets seen", {}},
    {"stats",
     "all counters: nfqueue, kernel queue (/proc drops), raw sender, engine, control socket",
     {}},
    {"help", "list the commands the running daemon understands", {}},
    {"conn show",
     "converted connections: tuple, role, state, tokens, bytes, and their subflows (mptcp engine)",
     {}},
    {"handover",
     "move connections from FROM to TO and wait until it is done: prints the time it took and how "
     "many connections moved; exit 0 only when every connection moved",
     kHandoverArgs, kHandoverOptions},
    {"handover status", "progress of a handover started earlier", kHandoverStatusArgs},
    {"subflow add", "open a subflow of a connection from an interface", kSubflowArgs,
     kSubflowAddOptions},
    {"subflow del", "close a connection's subflow on an interface", kSubflowArgs,
     kSubflowDelOptions},
}};

}  // namespace

int ExitCodeFor(const Error& e) {
  switch (e.code) {
    case EACCES:
    case EPERM:
      return kExitPermission;
    case ENAMETOOLONG:
      return kExitUsage;
    case EPROTO:
      return kExitDaemonError;
    default:
      // ENOENT, ECONNREFUSED, ETIMEDOUT, ECONNRESET, ...: no usable daemon at that socket.
      return kExitNotRunning;
  }
}

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

Request MakeRequest(const CtlCommand& cmd, const std::vector<std::string>& values,
                    const nlohmann::json& options) {
  Request r;
  r.command = std::string(cmd.name);
  r.args = nlohmann::json::object();
  for (size_t i = 0; i < cmd.args.size() && i < values.size(); ++i) {
    r.args[std::string(cmd.args[i].name)] = values[i];
  }
  for (const CtlOption& o : cmd.options) {
    if (o.key.empty() || !options.is_object()) continue;
    const std::string key(o.key);
    if (options.contains(key)) r.args[key] = options[key];
  }
  return r;
}

}  // namespace mproxy::cli
