// mproxyctl: talks to a running mproxyd over its control socket.
//
//   mproxyctl [-s SOCKET] [-j [-p]] status | stats | help | conn show
//   mproxyctl handover FROM TO [--break] [--conn TOKEN] [--timeout S]
//   mproxyctl handover status ID
//   mproxyctl subflow add IF --conn TOKEN [--backup]  |  subflow del IF --conn TOKEN
//
// Exit codes: 0 ok, 1 the daemon answered with an error (or the answer was unreadable), 2 usage
// error, 3 daemon not running (no socket, nobody listening, no answer), 4 permission denied,
// 5 handover finished without moving every connection, 6 handover not finished at --timeout.
#include <chrono>
#include <iostream>
#include <string>
#include <thread>

#include "cli/control_client.h"
#include "cli/ctl_commands.h"
#include "cli/ctl_parse.h"
#include "cli/handover.h"
#include "cli/output.h"

namespace mc = mproxy::cli;

int main(int argc, char** argv) {
  const mc::CtlParse parsed = mc::ParseCtlCommandLine(argc, argv);
  std::cout << parsed.out;
  std::cerr << parsed.err;
  if (!parsed.invocation) return parsed.exit_code;
  const mc::CtlInvocation& inv = *parsed.invocation;

  auto client = mc::ControlClient::Connect(inv.socket_path);
  if (!client) {
    std::cerr << "mproxyctl: " << client.error().message << "\n";
    return mc::ExitCodeFor(client.error());
  }

  if (inv.command->name == "handover") {
    mc::HandoverFollow f;
    f.call = [&](const mc::Request& r) { return client->Call(r, inv.timeout); };
    f.now = [] { return std::chrono::steady_clock::now(); };
    f.sleep = [](std::chrono::milliseconds d) { std::this_thread::sleep_for(d); };
    f.timeout = inv.follow_timeout;
    const mc::HandoverOutcome o = mc::FollowHandover(f, inv.request);
    if (inv.json && !o.data.is_null()) mc::Print(std::cout, o.data, {inv.json, inv.pretty});
    if (o.exit_code == mc::kExitOk) {
      if (!inv.json) std::cout << o.message << "\n";
    } else {
      std::cerr << "mproxyctl: " << o.message << "\n";
    }
    return o.exit_code;
  }

  auto response = client->Call(inv.request, inv.timeout);
  if (!response) {
    std::cerr << "mproxyctl: " << response.error().message << "\n";
    return mc::ExitCodeFor(response.error());
  }
  if (!response->ok) {
    std::cerr << "mproxyctl: " << response->error << "\n";
    return mc::kExitDaemonError;
  }
  mc::Print(std::cout, response->data, {inv.json, inv.pretty});
  return mc::kExitOk;
}
