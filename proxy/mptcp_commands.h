// mproxyd's side of the MPTCP engine: building it from the command line and its control commands
// ("conn show"). Kept apart from the engine so mptcp/ stays free of JSON and sockets.
#pragma once

#include <memory>

#include "mptcp/engine.h"
#include "packet/engine.h"
#include "packet/result.h"
#include "proxy/control_server.h"

namespace mproxy::proxy {

struct EngineOptions;

Result<std::unique_ptr<packet::Engine>> MakeMptcpEngine(const EngineOptions& options);
void RegisterMptcpCommands(packet::Engine& engine, CommandRegistry& registry);

// One connection as `mproxyctl conn show` reports it.
nlohmann::json ConnectionJson(const mptcp::Connection& c);

}  // namespace mproxy::proxy
