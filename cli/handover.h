// `mproxyctl handover FROM TO`: start a handover, then poll `handover status` until it is done,
// failed, or the timeout passes. Kept apart from main() with the transport, clock and sleep
// injected, so every outcome and its exit code is unit-tested (tests/unit/cli/handover_test.cc).
#pragma once

#include <chrono>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>

#include "cli/control_protocol.h"
#include "packet/result.h"

namespace mproxy::cli {

struct HandoverOutcome {
  int exit_code = 0;    // kExit* of cli/ctl_commands.h
  std::string message;  // one line for humans ("handover wlan0 -> eth1 done in 12 ms: ...")
  nlohmann::json data;  // what -j prints: the last status plus from, to, took_ms
};

struct HandoverFollow {
  // Sends one request on the open control connection.
  std::function<Result<Response>(const Request&)> call;
  std::function<std::chrono::steady_clock::time_point()> now;
  std::function<void(std::chrono::milliseconds)> sleep;
  std::chrono::milliseconds timeout{10'000};
  // 10 ms: a make-before-break handover completes within one RTT of the join, and a status call
  // costs a few microseconds in the daemon.
  std::chrono::milliseconds poll{10};
};

// `start` is the "handover" request (args from, to, break, conn). Exit codes: 0 every connection
// moved (or there was none to move); 1 the daemon refused the handover or a status request;
// 5 finished without moving every connection (state failed, failed > 0 or moved < connections);
// 6 still in progress at the timeout; 3/4 as for any command when the daemon goes away.
HandoverOutcome FollowHandover(const HandoverFollow& f, const Request& start);

}  // namespace mproxy::cli
