// The engines mproxyd can run, by name (--engine). One table used for parsing the flag, for its
// help text and for wiring each engine's own control commands into the daemon's registry.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "mptcp/engine.h"
#include "packet/engine.h"
#include "packet/result.h"
#include "proxy/control_server.h"

namespace mproxy::proxy {

// What the command line tells an engine (grows with the engines).
struct EngineOptions {
  std::vector<uint16_t> ports;  // TCP ports selected for conversion (empty: all TCP)
  bool checksums = false;       // ask for DSS checksums (RFC 8684 §3.3.1; mptcp engine)
  // Source ports of the mptcp engine's own joins (outside the host's ip_local_port_range).
  uint16_t join_port_min = 61000, join_port_max = 65535;
  // Which connections announce our other addresses (ADD_ADDR; mptcp engine, --announce).
  mptcp::AnnounceMode announce = mptcp::AnnounceMode::kAuto;
};

// What the daemon gives an engine's control commands, and what they give back. Control requests
// are handled outside the data path (a control-socket wake-up), so a handler that makes the engine
// forge packets (a handover's MP_JOIN SYN, an MP_PRIO) needs the daemon to send them and to re-arm
// the timer at the engine's new deadline.
struct EngineContext {
  // Set by the daemon.
  std::function<packet::Time()> now;
  // Sends actions.forged through the raw sender, clears them, re-arms the engine timer.
  std::function<void(packet::Actions&)> emit;
  // Set by register_commands when the engine manages subflows: receives the managed interfaces
  // (--interfaces) at start and whenever their addresses change.
  std::function<void(std::vector<mptcp::LocalInterface>)> set_interfaces;
};

struct EngineSpec {
  std::string_view name;
  std::string_view help;
  Result<std::unique_ptr<packet::Engine>> (*make)(const EngineOptions& options);
  // Adds the engine's commands ("conn show", "handover", ...) to the daemon; may be null. `engine`
  // is the object make() returned; it and `context` outlive the registry's use of them.
  void (*register_commands)(packet::Engine& engine, CommandRegistry& registry,
                            EngineContext& context);
};

std::span<const EngineSpec> Engines();
const EngineSpec* FindEngine(std::string_view name);
// "a, b, c" for help texts.
std::string EngineNames();

}  // namespace mproxy::proxy
