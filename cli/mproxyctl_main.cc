// mproxyctl: talks to a running mproxyd over its control socket.
//
//   mproxyctl [-s SOCKET] [-j [-p]] status | stats | help
//
// Exit codes: 0 ok, 1 the daemon answered with an error (or the answer was unreadable), 2 usage
// error, 3 daemon not running (no socket, nobody listening, no answer), 4 permission denied.
#include <CLI/CLI.hpp>
#include <cerrno>
#include <chrono>
#include <iostream>
#include <map>
#include <string>
#include <vector>

#include "cli/control_client.h"
#include "cli/ctl_commands.h"
#include "cli/output.h"

namespace {

namespace mc = mproxy::cli;

constexpr int kExitOk = 0;
constexpr int kExitDaemonError = 1;
constexpr int kExitUsage = 2;
constexpr int kExitNotRunning = 3;
constexpr int kExitPermission = 4;

int ExitCodeFor(const mproxy::Error& e) {
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

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"mproxyctl: query and steer a running mproxyd"};
  app.footer(
      "Exit codes: 0 ok, 1 the daemon answered with an error, 2 usage error, 3 mproxyd not "
      "running, 4 permission denied.");
  std::string socket_path = "/run/mproxy/mproxyd.sock";
  bool json = false;
  bool pretty = false;
  double timeout_s = 5.0;
  app.add_option("-s,--socket", socket_path, "mproxyd's control socket")
      ->envname("MPROXY_SOCKET")
      ->capture_default_str();
  app.add_flag("-j,--json", json, "print the answer as JSON");
  app.add_flag("-p,--pretty", pretty, "indent JSON output (with -j)");
  app.add_option("-t,--timeout", timeout_s, "seconds to wait for the daemon")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.require_subcommand(1);

  // Build the parser from the command table: one (nested) subcommand per word.
  struct Leaf {
    const mc::CtlCommand* cmd;
    CLI::App* app;
    std::vector<std::string> values;
  };
  std::vector<Leaf> leaves;
  leaves.reserve(mc::CtlCommands().size());
  std::map<std::string, CLI::App*> groups;  // "conn" -> its subcommand
  for (const mc::CtlCommand& cmd : mc::CtlCommands()) {
    const auto words = mc::CommandWords(cmd.name);
    CLI::App* parent = &app;
    std::string path;
    for (size_t i = 0; i + 1 < words.size(); ++i) {
      path += (path.empty() ? "" : " ") + words[i];
      auto it = groups.find(path);
      if (it == groups.end()) {
        CLI::App* g = parent->add_subcommand(words[i], words[i] + " commands");
        g->require_subcommand(1);
        it = groups.emplace(path, g).first;
      }
      parent = it->second;
    }
    CLI::App* sub = parent->add_subcommand(words.back(), std::string(cmd.help));
    leaves.push_back({&cmd, sub, std::vector<std::string>(cmd.args.size())});
  }
  for (Leaf& leaf : leaves) {
    for (size_t i = 0; i < leaf.cmd->args.size(); ++i) {
      leaf.app
          ->add_option(std::string(leaf.cmd->args[i].name), leaf.values[i],
                       std::string(leaf.cmd->args[i].help))
          ->required();
    }
  }

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);
    return rc == 0 ? kExitOk : kExitUsage;
  }

  const Leaf* chosen = nullptr;
  for (const Leaf& leaf : leaves) {
    if (leaf.app->parsed()) chosen = &leaf;
  }
  if (chosen == nullptr) {
    std::cerr << "mproxyctl: no command given\n" << app.help();
    return kExitUsage;
  }

  const auto timeout = std::chrono::milliseconds(static_cast<int64_t>(timeout_s * 1000));
  auto client = mc::ControlClient::Connect(socket_path);
  if (!client) {
    std::cerr << "mproxyctl: " << client.error().message << "\n";
    return ExitCodeFor(client.error());
  }
  auto response = client->Call(mc::MakeRequest(*chosen->cmd, chosen->values), timeout);
  if (!response) {
    std::cerr << "mproxyctl: " << response.error().message << "\n";
    return ExitCodeFor(response.error());
  }
  if (!response->ok) {
    std::cerr << "mproxyctl: " << response->error << "\n";
    return kExitDaemonError;
  }
  mc::Print(std::cout, response->data, {json, pretty});
  return kExitOk;
}
