// The engines mproxyd can run, by name (--engine). One table used for parsing the flag, for its
// help text and for wiring each engine's own control commands into the daemon's registry.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "packet/engine.h"
#include "packet/result.h"
#include "proxy/control_server.h"

namespace mproxy::proxy {

// What the command line tells an engine (grows with the engines).
struct EngineOptions {
  std::vector<uint16_t> ports;  // TCP ports selected for conversion (empty: all TCP)
  bool checksums = false;       // ask for DSS checksums (RFC 8684 §3.3.1; mptcp engine)
};

struct EngineSpec {
  std::string_view name;
  std::string_view help;
  Result<std::unique_ptr<packet::Engine>> (*make)(const EngineOptions& options);
  // Adds the engine's commands ("conn show", "handover", ...) to the daemon; may be null. `engine`
  // is the object make() returned and outlives the registry's use of it.
  void (*register_commands)(packet::Engine& engine, CommandRegistry& registry);
};

std::span<const EngineSpec> Engines();
const EngineSpec* FindEngine(std::string_view name);
// "a, b, c" for help texts.
std::string EngineNames();

}  // namespace mproxy::proxy
