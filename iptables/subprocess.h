// Running the iptables tools: posix_spawn (no shell, so nothing in a rule is ever interpreted),
// input fed on stdin, stdout and stderr collected, a wall-clock limit.
//
// Safe to call from a daemon: stdin is a socketpair written with MSG_NOSIGNAL, so a tool that
// exits early cannot SIGPIPE the caller; the child starts with an empty signal mask and default
// dispositions (a daemon that blocks signals for signalfd would otherwise hand that to the tool).
// The caller must not reap children with waitpid(-1, ...) concurrently.
#pragma once

#include <chrono>
#include <string>
#include <string_view>
#include <vector>

#include "packet/result.h"

namespace mproxy::iptables {

struct ToolOutput {
  int status = 0;  // exit code, or 128 + signal number when the tool was killed
  std::string out, err;
};

// argv[0] is looked up in PATH and, when that fails and it holds no '/', in /usr/sbin and /sbin
// (where distributions put iptables; a daemon's PATH may lack them). An Error means the tool could
// not be started or timed out (then it is killed); a non-zero exit is reported in `status`.
Result<ToolOutput> RunTool(const std::vector<std::string>& argv, std::string_view input,
                           std::chrono::milliseconds timeout);

// "a b c" for messages.
std::string JoinArgv(const std::vector<std::string>& argv);

}  // namespace mproxy::iptables
