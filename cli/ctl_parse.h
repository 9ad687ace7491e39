// mproxyctl's command line, parsed into what to send (kept out of main() so argument parsing is
// unit-tested: tests/unit/cli/ctl_parse_test.cc). The parser is built from the command table
// (cli/ctl_commands.h): one nested CLI11 subcommand per word, positionals and options per row.
#pragma once

#include <chrono>
#include <optional>
#include <string>

#include "cli/control_protocol.h"
#include "cli/ctl_commands.h"

namespace mproxy::cli {

struct CtlInvocation {
  std::string socket_path = "/run/mproxy/mproxyd.sock";
  bool json = false;
  bool pretty = false;
  std::chrono::milliseconds timeout{5000};  // -t: per answer of the daemon
  const CtlCommand* command = nullptr;
  Request request;
  // `handover`: how long to follow it (--timeout S, default 10 s).
  std::chrono::milliseconds follow_timeout{10'000};
};

struct CtlParse {
  std::optional<CtlInvocation> invocation;  // set: run it
  // Otherwise: print `out` (help, version) and `err` (usage errors), exit with this code.
  int exit_code = kExitOk;
  std::string out;
  std::string err;
};

// argv[0] is the program name. MPROXY_SOCKET from the environment is the default of -s.
CtlParse ParseCtlCommandLine(int argc, const char* const* argv);

}  // namespace mproxy::cli
