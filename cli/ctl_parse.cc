#include "cli/ctl_parse.h"

#include <CLI/CLI.hpp>
#include <map>
#include <sstream>
#include <string>
#include <vector>

namespace mproxy::cli {
namespace {

struct Leaf {
  const CtlCommand* cmd;
  CLI::App* app;
  std::vector<std::string> values;
  std::vector<std::string> option_values;  // per cmd->options entry (valued ones)
  std::vector<int> flag_counts;            // per cmd->options entry (flags: times given)
};

}  // namespace

CtlParse ParseCtlCommandLine(int argc, const char* const* argv) {
  CtlParse result;
  CLI::App app{"mproxyctl: query and steer a running mproxyd"};
  app.footer(
      "Exit codes: 0 ok, 1 the daemon answered with an error, 2 usage error, 3 mproxyd not "
      "running, 4 permission denied, 5 handover finished without moving every connection, "
      "6 handover not finished within --timeout.");
  std::string socket_path = "/run/mproxy/mproxyd.sock";
  bool json = false;
  bool pretty = false;
  double timeout_s = 5.0;
  app.add_option("-s,--socket", socket_path, "mproxyd's control socket")
      ->envname("MPROXY_SOCKET")
      ->capture_default_str();
  app.add_flag("-j,--json", json, "print the answer as JSON");
  app.add_flag("-p,--pretty", pretty, "indent JSON output (with -j)");
  app.add_option("-t,--timeout", timeout_s, "seconds to wait for each answer of the daemon")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.require_subcommand(1);

  // Build the parser from the command table: one (nested) subcommand per word. A word can be
  // both a command and a group ("handover" and "handover status"): one CLI11 app serves both.
  std::vector<Leaf> leaves;
  leaves.reserve(CtlCommands().size());
  std::map<std::string, CLI::App*> apps;  // "conn" -> its subcommand
  std::map<std::string, bool> is_leaf;
  for (const CtlCommand& cmd : CtlCommands()) {
    const auto words = CommandWords(cmd.name);
    CLI::App* parent = &app;
    std::string path;
    for (size_t i = 0; i < words.size(); ++i) {
      path += (path.empty() ? "" : " ") + words[i];
      const bool last = i + 1 == words.size();
      auto it = apps.find(path);
      if (it == apps.end()) {
        CLI::App* a =
            parent->add_subcommand(words[i], last ? std::string(cmd.help) : words[i] + " commands");
        if (!last) a->require_subcommand(1);
        it = apps.emplace(path, a).first;
      } else if (last) {
        // A group that is also a command: its subcommands become optional.
        it->second->description(std::string(cmd.help));
        it->second->require_subcommand(0, 1);
      }
      if (last) is_leaf[path] = true;
      if (!last && is_leaf.count(path) != 0) it->second->require_subcommand(0, 1);
      parent = it->second;
    }
    leaves.push_back({&cmd, parent, std::vector<std::string>(cmd.args.size()),
                      std::vector<std::string>(cmd.options.size()),
                      std::vector<int>(cmd.options.size())});
  }
  for (Leaf& leaf : leaves) {
    for (size_t i = 0; i < leaf.cmd->args.size(); ++i) {
      // Not ->required(): a command that is also a group ("handover") would then demand its
      // positionals for its subcommands too; missing ones are reported after parsing.
      leaf.app->add_option(std::string(leaf.cmd->args[i].name), leaf.values[i],
                           std::string(leaf.cmd->args[i].help));
    }
    for (size_t i = 0; i < leaf.cmd->options.size(); ++i) {
      const CtlOption& o = leaf.cmd->options[i];
      if (o.takes_value) {
        leaf.app->add_option(std::string(o.flag), leaf.option_values[i], std::string(o.help));
      } else {
        leaf.app->add_flag(std::string(o.flag), leaf.flag_counts[i], std::string(o.help));
      }
    }
  }

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    std::ostringstream out, err;
    const int rc = app.exit(e, out, err);
    result.exit_code = rc == 0 ? kExitOk : kExitUsage;
    result.out = out.str();
    result.err = err.str();
    return result;
  }

  Leaf* chosen = nullptr;
  for (Leaf& leaf : leaves) {
    // The deepest parsed command wins: "handover status" over "handover".
    if (leaf.app->parsed() &&
        (leaf.app->get_subcommands().empty() || leaf.app->get_subcommands()[0] == nullptr)) {
      chosen = &leaf;
    }
  }
  if (chosen == nullptr) {
    result.exit_code = kExitUsage;
    result.err = "mproxyctl: no command given\n" + app.help();
    return result;
  }
  const auto usage = [&](const std::string& msg) {
    result.exit_code = kExitUsage;
    result.err = "mproxyctl " + std::string(chosen->cmd->name) + ": " + msg + "\nRun 'mproxyctl " +
                 std::string(chosen->cmd->name) + " --help' for more information.\n";
    return result;
  };
  for (size_t i = 0; i < chosen->cmd->args.size(); ++i) {
    if (chosen->values[i].empty()) {
      return usage(std::string(chosen->cmd->args[i].name) + " is required");
    }
  }
  nlohmann::json options = nlohmann::json::object();
  double follow_timeout_s = 10.0;
  for (size_t i = 0; i < chosen->cmd->options.size(); ++i) {
    const CtlOption& o = chosen->cmd->options[i];
    const bool given = chosen->app->count(std::string(o.flag)) > 0;
    if (o.key.empty()) {
      if (o.flag == "--timeout" && given) {
        try {
          follow_timeout_s = std::stod(chosen->option_values[i]);
        } catch (const std::exception&) {
          follow_timeout_s = -1;
        }
        if (!(follow_timeout_s > 0)) return usage("--timeout must be a positive number of seconds");
      }
      continue;
    }
    if (o.takes_value) {
      if (given) options[std::string(o.key)] = chosen->option_values[i];
    } else {
      options[std::string(o.key)] = chosen->flag_counts[i] > 0;
    }
  }
  // subflow add/del act on one connection: without --conn there is nothing to address.
  if (chosen->cmd->name.starts_with("subflow") && !options.contains("conn")) {
    return usage("--conn TOKEN is required (the local_token column of `mproxyctl conn show`)");
  }

  CtlInvocation inv;
  inv.socket_path = socket_path;
  inv.json = json;
  inv.pretty = pretty;
  inv.timeout = std::chrono::milliseconds(static_cast<int64_t>(timeout_s * 1000));
  inv.command = chosen->cmd;
  inv.request = MakeRequest(*chosen->cmd, chosen->values, options);
  inv.follow_timeout = std::chrono::milliseconds(static_cast<int64_t>(follow_timeout_s * 1000));
  result.invocation = std::move(inv);
  return result;
}

}  // namespace mproxy::cli
