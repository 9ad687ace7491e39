#include "proxy/mptcp_commands.h"

#include <cstdio>
#include <random>
#include <string>

#include "proxy/engines.h"

namespace mproxy::proxy {
namespace {

// Keys must be unpredictable to the network (RFC 8684 §3.1: they authenticate joins), so the
// daemon's Rng is seeded from the OS; the engine itself only sees the packet::Rng interface.
class SystemRng final : public packet::Rng {
 public:
  SystemRng() {
    std::random_device rd;
    std::seed_seq seed{rd(), rd(), rd(), rd(), rd(), rd(), rd(), rd()};
    engine_.seed(seed);
  }
  uint64_t Next64() override { return engine_(); }

 private:
  std::mt19937_64 engine_;
};

// The engine keeps a reference to its Rng: own both together.
class OwnedMptcpEngine final : public packet::Engine {
 public:
  explicit OwnedMptcpEngine(mptcp::EngineConfig config) : engine_(std::move(config), rng_) {}
  void OnPacket(packet::Time now, const packet::PacketMeta& meta, packet::MutableBytes pkt,
                packet::PacketOut& out, packet::Actions& actions) override {
    engine_.OnPacket(now, meta, pkt, out, actions);
  }
  [[nodiscard]] std::optional<packet::Time> NextTimeout() const override {
    return engine_.NextTimeout();
  }
  void OnTimer(packet::Time now, packet::Actions& actions) override { engine_.OnTimer(now, actions); }
  void ForEachCounter(const CounterVisitor& visit) const override { engine_.ForEachCounter(visit); }
  [[nodiscard]] const mptcp::Engine& engine() const { return engine_; }

 private:
  SystemRng rng_;
  mptcp::Engine engine_;
};

std::string Hex32(uint32_t v) {
  char buf[11];
  std::snprintf(buf, sizeof buf, "%08x", v);
  return buf;
}

}  // namespace

Result<std::unique_ptr<packet::Engine>> MakeMptcpEngine(const EngineOptions& options) {
  mptcp::EngineConfig config;
  config.ports = options.ports;
  config.checksums = options.checksums;
  return std::unique_ptr<packet::Engine>(std::make_unique<OwnedMptcpEngine>(std::move(config)));
}

nlohmann::json ConnectionJson(const mptcp::Connection& c) {
  nlohmann::json j;
  j["local"] = c.tuple.src.ToString() + ":" + std::to_string(c.tuple.sport);
  j["remote"] = c.tuple.dst.ToString() + ":" + std::to_string(c.tuple.dport);
  j["role"] = std::string(mptcp::Name(c.role));
  j["state"] = std::string(mptcp::Name(c.state));
  j["local_token"] = Hex32(c.local_token);
  j["remote_token"] = c.remote_key_known ? Hex32(c.remote_token) : std::string("-");
  j["checksums"] = c.checksums;
  j["bytes_tx"] = c.bytes_tx;
  j["bytes_rx"] = c.bytes_rx;
  return j;
}

void RegisterMptcpCommands(packet::Engine& engine, CommandRegistry& registry) {
  auto* owned = dynamic_cast<OwnedMptcpEngine*>(&engine);
  if (owned == nullptr) return;
  registry.Register("conn show", "list converted connections", [owned](const nlohmann::json&) {
    nlohmann::json list = nlohmann::json::array();
    owned->engine().ForEachConnection(
        [&](const mptcp::Connection& c) { list.push_back(ConnectionJson(c)); });
    return cli::Response::Ok(nlohmann::json{{"connections", std::move(list)}});
  });
}

}  // namespace mproxy::proxy
