#include "proxy/engines.h"

#include "proxy/mptcp_commands.h"

#include <vector>

#include "proxy/passthrough_engine.h"

namespace mproxy::proxy {
namespace {

Result<std::unique_ptr<packet::Engine>> MakePassthrough(const EngineOptions&) {
  return std::unique_ptr<packet::Engine>(std::make_unique<PassthroughEngine>());
}
Result<std::unique_ptr<packet::Engine>> MakePassthroughRewrite(const EngineOptions&) {
  PassthroughEngine::Options o;
  o.send_back = true;
  return std::unique_ptr<packet::Engine>(std::make_unique<PassthroughEngine>(o));
}
Result<std::unique_ptr<packet::Engine>> MakePassthroughPlain(const EngineOptions&) {
  PassthroughEngine::Options o;
  o.reemit = false;
  return std::unique_ptr<packet::Engine>(std::make_unique<PassthroughEngine>(o));
}

const std::vector<EngineSpec>& Table() {
  static const std::vector<EngineSpec> table = {
      {"passthrough",
       "parses every packet, re-emits TCP ones, verifies them byte-exact, accepts the original",
       &MakePassthrough, nullptr},
      {"passthrough-rewrite",
       "like passthrough, but every re-emit goes back in the verdict (the rewrite I/O path)",
       &MakePassthroughRewrite, nullptr},
      {"passthrough-plain",
       "accepts every packet with a plain verdict (the queue's own cost, nothing rewritten)",
       &MakePassthroughPlain, nullptr},
      {"mptcp", "converts the selected TCP connections to MPTCP v1 on the wire (mptcp/DESIGN.md)",
       &MakeMptcpEngine, &RegisterMptcpCommands},
  };
  return table;
}

}  // namespace

std::span<const EngineSpec> Engines() { return Table(); }

const EngineSpec* FindEngine(std::string_view name) {
  for (const EngineSpec& e : Table()) {
    if (e.name == name) return &e;
  }
  return nullptr;
}

std::string EngineNames() {
  std::string s;
  for (const EngineSpec& e : Table()) {
    if (!s.empty()) s += ", ";
    s += e.name;
  }
  return s;
}

}  // namespace mproxy::proxy
