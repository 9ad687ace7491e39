// mproxyctl's command table: one entry per command, used both to build the command-line parser
// (and so its --help) and to name the request sent to the daemon (systemd/iproute2-style verb
// tables). A command is one or more words ("status", "conn show", "subflow add"); its wire name is
// the same words joined by single spaces; positional arguments and options become args
// {name: value}.
//
// Adding a command = one row here + one handler registered in the daemon's CommandRegistry.
#pragma once

#include <map>
#include <nlohmann/json.hpp>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "cli/control_protocol.h"
#include "packet/result.h"

namespace mproxy::cli {

// mproxyctl's exit codes (README "Running the daemon"; the footer of `mproxyctl --help`).
inline constexpr int kExitOk = 0;
inline constexpr int kExitDaemonError = 1;  // the daemon answered with an error
inline constexpr int kExitUsage = 2;
inline constexpr int kExitNotRunning = 3;  // no socket, nobody listening, no answer
inline constexpr int kExitPermission = 4;
inline constexpr int kExitIncomplete = 5;  // handover finished but not for every connection
inline constexpr int kExitTimeout = 6;     // handover still in progress at --timeout
// The exit code for a failed connect/call (the ControlClient error codes).
int ExitCodeFor(const Error& e);

struct CtlArg {
  std::string_view name;  // key in the request's args
  std::string_view help;
};

struct CtlOption {
  std::string_view flag;  // CLI11 name(s): "--conn", "-b,--backup"
  std::string_view key;   // key in the request's args; empty: used by mproxyctl only
  std::string_view help;
  bool takes_value = false;  // false: a flag, sent as true/false
};

struct CtlCommand {
  std::string_view name;  // words joined by single spaces
  std::string_view help;
  std::span<const CtlArg> args;  // positional, all required, in order
  std::span<const CtlOption> options = {};
};

std::span<const CtlCommand> CtlCommands();
const CtlCommand* FindCtlCommand(std::string_view name);
// The command's words ("conn show" -> {"conn", "show"}).
std::vector<std::string> CommandWords(std::string_view name);
// The request for `cmd` with its positional values (values.size() == cmd.args.size()) and the
// options given (key -> value: strings for valued options, bools for flags; client-only options
// are left out).
Request MakeRequest(const CtlCommand& cmd, const std::vector<std::string>& values,
                    const nlohmann::json& options = nlohmann::json::object());

}  // namespace mproxy::cli
