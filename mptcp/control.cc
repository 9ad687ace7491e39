// Control-plane entry points of the engine (handover, subflows; seed §5.3, §5.4). Sans-I/O like
// the data path: packets to send come back in `actions`, progress is read with HandoverStatusOf().
#include <algorithm>

#include "mptcp/engine.h"

namespace mproxy::mptcp {

std::string_view Name(SubflowState s) {
  switch (s) {
    case SubflowState::kSynSent:
      return "syn-sent";
    case SubflowState::kPreEstablished:
      return "pre-established";
    case SubflowState::kSynReceived:
      return "syn-received";
    case SubflowState::kEstablished:
      return "established";
    case SubflowState::kClosing:
      return "closing";
    case SubflowState::kClosed:
      return "closed";
  }
  return "?";
}

std::string_view Name(HandoverState s) {
  switch (s) {
    case HandoverState::kInProgress:
      return "in-progress";
    case HandoverState::kDone:
      return "done";
    case HandoverState::kFailed:
      return "failed";
  }
  return "?";
}

SubflowInfo Engine::InfoOf(const Connection& c, const Subflow& sf) const {
  SubflowInfo i;
  i.local_id = sf.local_id;
  i.remote_id = sf.remote_id;
  i.tuple = sf.tuple;
  if (const LocalInterface* iface = InterfaceOf(sf.tuple.src)) i.ifname = iface->name;
  i.state = sf.state;
  i.initial = sf.initial;
  i.backup_local = sf.backup_local;
  i.backup_remote = sf.backup_remote;
  i.active = c.multi && c.active == &sf;
  i.bytes_tx = sf.bytes_tx;
  i.bytes_rx = sf.bytes_rx;
  return i;
}

void Engine::ForEachSubflow(const Connection& c,
                            const std::function<void(const SubflowInfo&)>& visit) const {
  if (!c.multi) {
    // Single path: the initial subflow still lives in the connection's fields.
    SubflowInfo initial;
    initial.tuple = c.tuple;
    if (const LocalInterface* iface = InterfaceOf(c.tuple.src)) initial.ifname = iface->name;
    initial.initial = true;
    initial.active = true;
    initial.state =
        c.state == ConnState::kClosed ? SubflowState::kClosed : SubflowState::kEstablished;
    initial.bytes_tx = c.bytes_tx;
    initial.bytes_rx = c.bytes_rx;
    visit(initial);
  }
  for (const auto& sf : c.subflows) visit(InfoOf(c, *sf));
}

void Engine::SetInterfaces(std::vector<LocalInterface> interfaces) {
  // Remembered per name (bounded): addresses vanish from the list when a link goes down, which
  // is exactly when a break-before-make away from it is asked for (seed §5.4).
  constexpr size_t kKeptAddresses = 16;
  for (const auto& i : interfaces) {
    auto& known = known_addresses_[i.name];
    for (const auto& a : i.addresses) {
      if (std::find(known.begin(), known.end(), a) != known.end()) continue;
      if (known.size() >= kKeptAddresses) known.erase(known.begin());
      known.push_back(a);
    }
  }
  interfaces_ = std::move(interfaces);
}

bool Engine::WasOn(std::string_view name, const packet::IpAddress& a) const {
  if (const LocalInterface* i = InterfaceByName(name);
      i != nullptr &&
      std::find(i->addresses.begin(), i->addresses.end(), a) != i->addresses.end()) {
    return true;
  }
  auto it = known_addresses_.find(name);
  if (it == known_addresses_.end()) return false;
  // An address that moved to another interface since belongs to that one now.
  const LocalInterface* now_on = InterfaceOf(a);
  if (now_on != nullptr && now_on->name != name) return false;
  return std::find(it->second.begin(), it->second.end(), a) != it->second.end();
}

Result<uint64_t> Engine::StartHandover(packet::Time now, const HandoverRequest& request,
                                       packet::Actions& actions) {
  clock_ = now;
  const LocalInterface* to = InterfaceByName(request.to);
  if (to == nullptr) return MakeError("handover: unknown interface " + request.to);
  const LocalInterface* from = nullptr;
  if (!request.from.empty()) {
    from = InterfaceByName(request.from);
    if (from == nullptr) return MakeError("handover: unknown interface " + request.from);
  }
  auto has_family = [&](const Connection& c) {
    return std::any_of(to->addresses.begin(), to->addresses.end(), [&](const packet::IpAddress& a) {
      return a.family() == c.tuple.src.family();
    });
  };
  std::vector<Connection*> targets;
  if (request.token) {
    Connection* c = ConnectionByToken(*request.token);
    if (c == nullptr || c->state != ConnState::kEstablished || !c->remote_key_known) {
      return MakeError("handover: no established connection with that token");
    }
    if (!has_family(*c)) {
      return MakeError("handover: interface " + request.to +
                       " has no address of the connection's family");
    }
    targets.push_back(c);
  } else {
    for (auto& [t, c] : conns_) {
      if (c->state == ConnState::kEstablished && c->remote_key_known) targets.push_back(c.get());
    }
  }
  // Finished requests are kept for HandoverStatusOf() until many newer ones exist.
  constexpr size_t kKeptHandovers = 256;
  for (auto it = handovers_.begin();
       handovers_.size() >= kKeptHandovers && it != handovers_.end();) {
    it = it->second.status.state != HandoverState::kInProgress ? handovers_.erase(it)
                                                               : std::next(it);
  }
  const uint64_t id = next_handover_++;
  HandoverJob& job = handovers_[id];
  job.request = request;
  job.status.started = now;
  job.status.connections = targets.size();
  counters_.Inc(Counter::kHandoverStarted);
  auto on_from = [&](const Subflow& sf) {
    return from == nullptr ? std::none_of(to->addresses.begin(), to->addresses.end(),
                                          [&](const auto& a) { return a == sf.tuple.src; })
                           : WasOn(from->name, sf.tuple.src);
  };
  for (Connection* cp : targets) {
    Connection& c = *cp;
    if (!has_family(c)) {
      ++job.status.failed;
      counters_.Inc(Counter::kHandoverFailed);
      if (job.status.error.empty()) job.status.error = "no address of the connection's family";
      continue;
    }
    // The latest request decides where the connection goes: a join still under way for an
    // earlier handover no longer switches sending when it completes (it stays as a spare subflow,
    // or is reset below if this request leaves its interface).
    for (auto& sf : c.subflows) {
      if (!sf->handover) continue;
      counters_.Inc(Counter::kHandoverSuperseded);
      FinishHandover(now, *sf, false, "superseded by a later handover");
    }
    if (request.mode == HandoverMode::kBreakBeforeMake) {
      // Seed §5.4: the old path is treated as gone at once; what it carried and was not
      // DATA_ACKed is retransmitted by the local stack and moves to fresh SSNs on the new one.
      MigrateToMulti(c);
      std::vector<Subflow*> half_open;
      for (auto& sf : c.subflows) {
        if (!on_from(*sf) || sf->state == SubflowState::kClosed || sf->gone) continue;
        if (sf->state == SubflowState::kSynSent || sf->state == SubflowState::kSynReceived ||
            sf->state == SubflowState::kPreEstablished) {
          half_open.push_back(sf.get());  // a join on the path being left: abandon it
          continue;
        }
        sf->gone = true;
        sf->state = SubflowState::kClosed;
        sf->due.reset();
      }
      for (Subflow* sf : half_open) {
        // The peer may hold it established already (after our third ACK): tell it, in case the
        // path still works (handover A->B then at once B->A --break).
        ForgeRstOn(c, *sf, static_cast<uint8_t>(TcpRstReason::kUnspecified), actions);
        FreeSubflow(c, *sf);
      }
      SelectActive(c);
    }
    Subflow* existing = nullptr;
    for (auto& sf : c.subflows) {
      if (sf->usable() && std::find(to->addresses.begin(), to->addresses.end(), sf->tuple.src) !=
                              to->addresses.end()) {
        existing = sf.get();
      }
    }
    if (existing != nullptr) {
      SwitchTo(now, c, *existing, &job, actions);
      ++job.status.moved;
      counters_.Inc(Counter::kHandoverMoved);
      continue;
    }
    Subflow* joining = nullptr;  // a join on `to` already under way (AddSubflow, or a retry)
    for (auto& sf : c.subflows) {
      if ((sf->state == SubflowState::kSynSent || sf->state == SubflowState::kPreEstablished) &&
          sf->joiner && !sf->handover &&
          std::find(to->addresses.begin(), to->addresses.end(), sf->tuple.src) !=
              to->addresses.end()) {
        joining = sf.get();
      }
    }
    if (joining != nullptr) {
      joining->handover = id;
      ++job.pending;
      continue;
    }
    auto sf = OpenJoin(now, c, *to, false, actions);
    if (!sf) {
      ++job.status.failed;
      counters_.Inc(Counter::kHandoverFailed);
      if (job.status.error.empty()) job.status.error = sf.error().message;
      continue;
    }
    sf.value()->handover = id;
    ++job.pending;
  }
  if (job.pending == 0) {
    job.status.state = job.status.failed > 0 && job.status.moved == 0 ? HandoverState::kFailed
                                                                      : HandoverState::kDone;
    job.status.finished = now;
  }
  return id;
}

std::optional<HandoverStatus> Engine::HandoverStatusOf(uint64_t id) const {
  auto it = handovers_.find(id);
  if (it == handovers_.end()) return std::nullopt;
  return it->second.status;
}

Result<void> Engine::AddSubflow(packet::Time now, uint32_t token, std::string_view ifname,
                                bool backup, packet::Actions& actions) {
  clock_ = now;
  Connection* c = ConnectionByToken(token);
  if (c == nullptr) return MakeError("subflow add: no connection with that token");
  const LocalInterface* iface = InterfaceByName(ifname);
  if (iface == nullptr) return MakeError("subflow add: unknown interface " + std::string(ifname));
  auto sf = OpenJoin(now, *c, *iface, backup, actions);
  if (!sf) return sf.error();
  return {};
}

Result<void> Engine::RemoveSubflow(packet::Time now, uint32_t token, std::string_view ifname,
                                   packet::Actions& actions) {
  clock_ = now;
  Connection* c = ConnectionByToken(token);
  if (c == nullptr) return MakeError("subflow del: no connection with that token");
  const LocalInterface* iface = InterfaceByName(ifname);
  if (iface == nullptr) return MakeError("subflow del: unknown interface " + std::string(ifname));
  // Closing an established subflow is a multipath operation (SEND table, active choice).
  for (auto& sf : c->subflows) {
    if (sf->state == SubflowState::kEstablished) {
      MigrateToMulti(*c);
      break;
    }
  }
  auto on_iface = [&](const Subflow& sf) {
    return std::find(iface->addresses.begin(), iface->addresses.end(), sf.tuple.src) !=
           iface->addresses.end();
  };
  std::vector<Subflow*> victims;
  bool other_left = false;
  for (auto& sf : c->subflows) {
    if (sf->state == SubflowState::kClosed) continue;
    if (on_iface(*sf)) {
      victims.push_back(sf.get());
    } else if (sf->usable()) {
      other_left = true;
    }
  }
  if (victims.empty()) return MakeError("subflow del: no subflow on " + std::string(ifname));
  if (!other_left && c->multi) return MakeError("subflow del: it is the last subflow");
  for (Subflow* sf : victims) {
    if (sf->state == SubflowState::kSynSent || sf->state == SubflowState::kSynReceived ||
        sf->state == SubflowState::kPreEstablished) {
      ForgeRstOn(*c, *sf, static_cast<uint8_t>(TcpRstReason::kUnspecified), actions);
      FreeSubflow(*c, *sf);
      continue;
    }
    // RFC 8684 §3.3.3: a subflow closes with FIN; the data it carried and was not DATA_ACKed is
    // retransmitted by the local stack and goes to another subflow (SEND table rule).
    sf->gone = true;
    sf->state = SubflowState::kClosing;
    if (c->active == sf) SelectActive(*c);
    SendFinOn(now, *c, *sf, actions);
  }
  return {};
}

}  // namespace mproxy::mptcp
