// mproxyd's side of the MPTCP engine: building it from the command line and its control commands
// ("conn show"). Kept apart from the engine so mptcp/ stays free of JSON and sockets.
#pragma once

#include <memory>
#include <optional>
#include <string_view>

#include "mptcp/engine.h"
#include "packet/engine.h"
#include "packet/result.h"
#include "proxy/control_server.h"

namespace mproxy::proxy {

struct EngineOptions;

Result<std::unique_ptr<packet::Engine>> MakeMptcpEngine(const EngineOptions& options);
struct EngineContext;
void RegisterMptcpCommands(packet::Engine& engine, CommandRegistry& registry,
                           EngineContext& context);

// One connection as `mproxyctl conn show` reports it (without its subflows).
nlohmann::json ConnectionJson(const mptcp::Connection& c);
nlohmann::json SubflowJson(const mptcp::SubflowInfo& s);
nlohmann::json HandoverStatusJson(const mptcp::HandoverStatus& s, packet::Time now);
// "1a2b3c4d" (optionally 0x-prefixed, 1 to 8 hex digits) -> token.
std::optional<uint32_t> ParseToken(std::string_view text);

}  // namespace mproxy::proxy
