#include "proxy/mptcp_commands.h"

#include <charconv>
#include <chrono>
#include <cstdio>
#include <memory>
#include <optional>
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
  void OnTimer(packet::Time now, packet::Actions& actions) override {
    engine_.OnTimer(now, actions);
  }
  void ForEachCounter(const CounterVisitor& visit) const override { engine_.ForEachCounter(visit); }
  [[nodiscard]] const mptcp::Engine& engine() const { return engine_; }
  mptcp::Engine& engine() { return engine_; }

 private:
  SystemRng rng_;
  mptcp::Engine engine_;
};

std::string Hex32(uint32_t v) {
  char buf[11];
  std::snprintf(buf, sizeof buf, "%08x", v);
  return buf;
}

// Argument readers: a request comes from any client, so every member is type-checked and a
// wrong one is a clear error, never an exception escaping to the registry's catch-all.
Result<std::string> StringArg(const nlohmann::json& args, const char* name) {
  if (!args.is_object() || !args.contains(name) || !args[name].is_string() ||
      args[name].get<std::string>().empty()) {
    return MakeError(std::string("missing or empty argument '") + name + "'", EINVAL);
  }
  return args[name].get<std::string>();
}

// A flag: absent = false; a JSON bool, or "true"/"false"/"1"/"0" from a positional word.
Result<bool> BoolArg(const nlohmann::json& args, const char* name) {
  if (!args.is_object() || !args.contains(name) || args[name].is_null()) return false;
  const auto& v = args[name];
  if (v.is_boolean()) return v.get<bool>();
  if (v.is_string()) {
    const auto s = v.get<std::string>();
    if (s == "true" || s == "1") return true;
    if (s == "false" || s == "0") return false;
  }
  return MakeError(std::string("argument '") + name + "' must be true or false", EINVAL);
}

Result<uint32_t> TokenArg(const nlohmann::json& args, const char* name) {
  auto s = StringArg(args, name);
  if (!s) return s.error();
  auto t = ParseToken(*s);
  if (!t) {
    return MakeError(std::string("argument '") + name + "': '" + *s +
                         "' is not a connection token (hex, as `conn show` prints local_token)",
                     EINVAL);
  }
  return *t;
}

cli::Response Fail(const Error& e) { return cli::Response::Fail(e.message); }

}  // namespace

Result<std::unique_ptr<packet::Engine>> MakeMptcpEngine(const EngineOptions& options) {
  mptcp::EngineConfig config;
  config.ports = options.ports;
  config.checksums = options.checksums;
  config.join_port_min = options.join_port_min;
  config.join_port_max = options.join_port_max;
  config.announce = options.announce;
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

nlohmann::json SubflowJson(const mptcp::SubflowInfo& s) {
  nlohmann::json j;
  j["interface"] = s.ifname.empty() ? std::string("-") : s.ifname;
  j["local"] = s.tuple.src.ToString() + ":" + std::to_string(s.tuple.sport);
  j["remote"] = s.tuple.dst.ToString() + ":" + std::to_string(s.tuple.dport);
  j["state"] = std::string(mptcp::Name(s.state));
  j["local_id"] = s.local_id;
  j["remote_id"] = s.remote_id;
  j["initial"] = s.initial;
  j["active"] = s.active;
  j["backup"] = s.backup_local;
  j["backup_remote"] = s.backup_remote;
  j["bytes_tx"] = s.bytes_tx;
  j["bytes_rx"] = s.bytes_rx;
  return j;
}

nlohmann::json HandoverStatusJson(const mptcp::HandoverStatus& s, packet::Time now) {
  const packet::Time end = s.finished.value_or(now);
  const auto elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(end - s.started);
  nlohmann::json j;
  j["state"] = std::string(mptcp::Name(s.state));
  j["connections"] = s.connections;
  j["moved"] = s.moved;
  j["failed"] = s.failed;
  j["elapsed_ms"] = elapsed.count();
  j["error"] = s.error.empty() ? nlohmann::json(nullptr) : nlohmann::json(s.error);
  return j;
}

std::optional<uint32_t> ParseToken(std::string_view text) {
  if (text.size() > 2 && text[0] == '0' && (text[1] == 'x' || text[1] == 'X'))
    text.remove_prefix(2);
  if (text.empty() || text.size() > 8) return std::nullopt;
  uint32_t v = 0;
  for (char ch : text) {
    uint32_t d;
    if (ch >= '0' && ch <= '9') {
      d = static_cast<uint32_t>(ch - '0');
    } else if (ch >= 'a' && ch <= 'f') {
      d = static_cast<uint32_t>(ch - 'a' + 10);
    } else if (ch >= 'A' && ch <= 'F') {
      d = static_cast<uint32_t>(ch - 'A' + 10);
    } else {
      return std::nullopt;
    }
    v = (v << 4) | d;
  }
  return v;
}

void RegisterMptcpCommands(packet::Engine& engine, CommandRegistry& registry,
                           EngineContext& context) {
  auto* owned = dynamic_cast<OwnedMptcpEngine*>(&engine);
  if (owned == nullptr) return;
  mptcp::Engine* eng = &owned->engine();
  EngineContext* ctx = &context;
  // The daemon's view of the managed interfaces, kept here too so a request naming an interface
  // that cannot carry a subflow gets a message that says why (down, unknown, not managed) instead
  // of the engine's generic refusal.
  auto known = std::make_shared<std::optional<std::vector<mptcp::LocalInterface>>>();
  context.set_interfaces = [eng, ctx, known](std::vector<mptcp::LocalInterface> interfaces) {
    *known = interfaces;
    // Live connections follow: ADD_ADDR for a new address, REMOVE_ADDR for an announced one
    // that went (mptcp/announce.cc).
    packet::Actions actions;
    eng->SetInterfaces(ctx->now ? ctx->now() : packet::Time{}, std::move(interfaces), actions);
    if (!actions.forged.empty()) ctx->emit(actions);
  };
  const auto usable = [known](const std::string& what, const std::string& name) -> Result<void> {
    if (!known->has_value()) {
      return MakeError(what + ": no managed interfaces (start mproxyd with --interfaces)", EINVAL);
    }
    for (const mptcp::LocalInterface& i : **known) {
      if (i.name != name) continue;
      if (i.ifindex == 0) return MakeError(what + ": interface " + name + " is gone", ENODEV);
      if (i.addresses.empty()) {
        return MakeError(what + ": interface " + name +
                             " has no usable address (down, no carrier or no global address)",
                         ENETDOWN);
      }
      return {};
    }
    return MakeError(what + ": " + name + " is not a managed interface (mproxyd --interfaces)",
                     EINVAL);
  };

  registry.Register(
      "conn show", "list converted connections with their subflows", [eng](const nlohmann::json&) {
        nlohmann::json list = nlohmann::json::array();
        eng->ForEachConnection([&](const mptcp::Connection& c) {
          nlohmann::json j = ConnectionJson(c);
          nlohmann::json subflows = nlohmann::json::array();
          eng->ForEachSubflow(
              c, [&](const mptcp::SubflowInfo& s) { subflows.push_back(SubflowJson(s)); });
          j["subflows"] = std::move(subflows);
          list.push_back(std::move(j));
        });
        return cli::Response::Ok(nlohmann::json{{"connections", std::move(list)}});
      });

  registry.Register(
      "handover",
      "move connections from one interface to another: args from, to, break (bool), conn (token)",
      [eng, ctx, usable](const nlohmann::json& args) {
        mptcp::HandoverRequest req;
        auto from = StringArg(args, "from");
        if (!from) return Fail(from.error());
        auto to = StringArg(args, "to");
        if (!to) return Fail(to.error());
        if (*from == *to) {
          return cli::Response::Fail("handover: from and to are the same interface");
        }
        auto brk = BoolArg(args, "break");
        if (!brk) return Fail(brk.error());
        req.from = *from;
        req.to = *to;
        req.mode =
            *brk ? mptcp::HandoverMode::kBreakBeforeMake : mptcp::HandoverMode::kMakeBeforeBreak;
        if (args.is_object() && args.contains("conn") && !args["conn"].is_null()) {
          auto token = TokenArg(args, "conn");
          if (!token) return Fail(token.error());
          req.token = *token;
        }
        // `from` may well be down (break-before-make is for exactly that); `to` must work.
        if (auto ok = usable("handover", *to); !ok) return Fail(ok.error());
        packet::Actions actions;
        auto id = eng->StartHandover(ctx->now(), req, actions);
        // Whatever the engine forged goes out even when it then refused (it never should, but a
        // forged packet left in `actions` would otherwise be lost silently).
        ctx->emit(actions);
        if (!id) return Fail(id.error());
        return cli::Response::Ok(nlohmann::json{{"id", *id}});
      });

  registry.Register(
      "handover status",
      "progress of a handover: args id; state, connections, moved, failed, "
      "elapsed_ms, error",
      [eng, ctx](const nlohmann::json& args) {
        std::optional<uint64_t> id;
        if (args.is_object() && args.contains("id")) {
          const auto& v = args["id"];
          if (v.is_number_unsigned()) id = v.get<uint64_t>();
          if (v.is_number_integer() && !v.is_number_unsigned() && v.get<int64_t>() >= 0) {
            id = static_cast<uint64_t>(v.get<int64_t>());
          }
          if (v.is_string()) {
            const std::string s = v.get<std::string>();
            uint64_t n = 0;
            auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), n);
            if (ec == std::errc{} && p == s.data() + s.size()) id = n;
          }
        }
        if (!id) return cli::Response::Fail("missing or invalid argument 'id'");
        auto st = eng->HandoverStatusOf(*id);
        if (!st) {
          return cli::Response::Fail("no handover with id " + std::to_string(*id));
        }
        nlohmann::json j = HandoverStatusJson(*st, ctx->now());
        j["id"] = *id;
        return cli::Response::Ok(std::move(j));
      });

  const auto subflow = [eng, ctx, usable](bool add) {
    return [eng, ctx, add, usable](const nlohmann::json& args) {
      auto token = TokenArg(args, "conn");
      if (!token) return Fail(token.error());
      auto ifname = StringArg(args, "ifname");
      if (!ifname) return Fail(ifname.error());
      auto backup = BoolArg(args, "backup");
      if (!backup) return Fail(backup.error());
      // Closing a subflow on an interface that went away is legitimate; opening one is not.
      if (add) {
        if (auto ok = usable("subflow add", *ifname); !ok) return Fail(ok.error());
      }
      packet::Actions actions;
      auto r = add ? eng->AddSubflow(ctx->now(), *token, *ifname, *backup, actions)
                   : eng->RemoveSubflow(ctx->now(), *token, *ifname, actions);
      ctx->emit(actions);
      if (!r) return Fail(r.error());
      return cli::Response::Ok(
          nlohmann::json{{"conn", Hex32(*token)}, {"interface", *ifname}, {"done", true}});
    };
  };
  registry.Register("subflow add",
                    "open a subflow of a connection from an interface: args conn, ifname, backup",
                    subflow(true));
  registry.Register("subflow del",
                    "close a connection's subflow on an interface: args conn, ifname",
                    subflow(false));
}

}  // namespace mproxy::proxy
