// mproxyctl's command table: one entry per command, used both to build the command-line parser
// (and so its --help) and to name the request sent to the daemon (systemd/iproute2-style verb
// tables). A command is one or more words ("status", "conn show", "subflow add"); its wire name is
// the same words joined by single spaces; positional arguments become args {name: value}.
//
// Adding a command = one row here + one handler registered in the daemon's CommandRegistry.
#pragma once

#include <nlohmann/json.hpp>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "cli/control_protocol.h"

namespace mproxy::cli {

struct CtlArg {
  std::string_view name;  // key in the request's args
  std::string_view help;
};

struct CtlCommand {
  std::string_view name;  // words joined by single spaces
  std::string_view help;
  std::span<const CtlArg> args;  // positional, all required, in order
};

std::span<const CtlCommand> CtlCommands();
const CtlCommand* FindCtlCommand(std::string_view name);
// The command's words ("conn show" -> {"conn", "show"}).
std::vector<std::string> CommandWords(std::string_view name);
// The request for `cmd` with its positional values (values.size() == cmd.args.size()).
Request MakeRequest(const CtlCommand& cmd, const std::vector<std::string>& values);

}  // namespace mproxy::cli
